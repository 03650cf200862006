/* Argument schemas; see schema.h. */
#include "monitor/schema.h"

#include <stdio.h>

static int check_value(const struct mon_arg *a, json_t *v, const char *path, struct err *err);

bool mon_enum_has(const char *const *values, const char *name)
{
    for (size_t i = 0; values && values[i]; i++) {
        if (!strcmp(values[i], name)) {
            return true;
        }
    }
    return false;
}

static char *member_path(const char *prefix, const char *name)
{
    return prefix ? xasprintf("%s.%s", prefix, name) : xstrdup(name);
}

static int wrong_type(const char *path, const char *expected, struct err *err)
{
    err_set(err, "Invalid parameter type for '%s', expected: %s", path, expected);
    return -EINVAL;
}

static int check_members(const struct mon_arg *members, bool open, json_t *obj,
                         const char *prefix, struct err *err)
{
    for (const struct mon_arg *m = members; m && m->name; m++) {
        json_t *v = json_object_get(obj, m->name);
        char *path = member_path(prefix, m->name);
        int ret = 0;
        if (!v) {
            if (!m->optional) {
                err_set(err, "Parameter '%s' is missing", path);
                ret = -EINVAL;
            }
        } else {
            ret = check_value(m, v, path, err);
        }
        free(path);
        if (ret < 0) {
            return ret;
        }
    }
    if (open) {
        return 0;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool known = false;
        for (const struct mon_arg *m = members; m && m->name && !known; m++) {
            known = !strcmp(m->name, key);
        }
        if (!known) {
            char *path = member_path(prefix, key);
            err_set(err, "Parameter '%s' is unexpected", path);
            free(path);
            return -EINVAL;
        }
    }
    return 0;
}

/* QEMU's unsigned visitors: a non-number is a type error, a bad number a value error. */
static int check_unsigned(json_t *v, const char *path, uint64_t max, const char *what,
                          struct err *err)
{
    if (!json_is_number(v)) {
        return wrong_type(path, "integer", err);
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > max) {
        err_set(err, "Parameter '%s' expects %s", path, json_is_integer(v) ? what : "uint64");
        return -EINVAL;
    }
    return 0;
}

/* Whether v's JSON type is the one alternative a takes. */
static bool alt_matches(const struct mon_arg *a, json_t *v)
{
    switch (a->type) {
    case MON_T_STR:
    case MON_T_ENUM:
        return json_is_string(v);
    case MON_T_INT:
    case MON_T_U32:
    case MON_T_U64:
    case MON_T_SIZE:
    case MON_T_NUMBER:
        return json_is_number(v);
    case MON_T_BOOL:
        return json_is_boolean(v);
    case MON_T_OBJECT:
        return json_is_object(v);
    case MON_T_ARRAY:
        return json_is_array(v);
    case MON_T_ANY:
        return true;
    case MON_T_ALT:
    case MON_T_END:
        break;
    }
    return false;
}

static int check_value(const struct mon_arg *a, json_t *v, const char *path, struct err *err)
{
    switch (a->type) {
    case MON_T_STR:
        return json_is_string(v) ? 0 : wrong_type(path, "string", err);
    case MON_T_INT:
        return json_is_integer(v) ? 0 : wrong_type(path, "integer", err);
    case MON_T_U32:
        return check_unsigned(v, path, UINT32_MAX, "uint32_t", err);
    case MON_T_U64:
        return check_unsigned(v, path, INT64_MAX, "uint64", err);
    case MON_T_SIZE:
        return check_unsigned(v, path, INT64_MAX, "size", err);
    case MON_T_BOOL:
        return json_is_boolean(v) ? 0 : wrong_type(path, "boolean", err);
    case MON_T_NUMBER:
        return json_is_number(v) ? 0 : wrong_type(path, "number", err);
    case MON_T_ANY:
        return 0;
    case MON_T_ENUM:
        if (!json_is_string(v)) {
            return wrong_type(path, "string", err);
        }
        if (!mon_enum_has(a->values, json_string_value(v))) {
            err_set(err, "Parameter '%s' does not accept value '%s'", path, json_string_value(v));
            return -EINVAL;
        }
        return 0;
    case MON_T_OBJECT:
        if (!json_is_object(v)) {
            return wrong_type(path, "object", err);
        }
        return check_members(a->members, a->open, v, path, err);
    case MON_T_ARRAY: {
        if (!json_is_array(v)) {
            return wrong_type(path, "array", err);
        }
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            char *ipath = xasprintf("%s[%zu]", path, i);
            int ret = check_value(a->elem, item, ipath, err);
            free(ipath);
            if (ret < 0) {
                return ret;
            }
        }
        return 0;
    }
    case MON_T_ALT:
        for (const struct mon_arg *alt = a->alts; alt && alt->type != MON_T_END; alt++) {
            if (alt_matches(alt, v)) {
                return check_value(alt, v, path, err);
            }
        }
        return wrong_type(path, a->type_name ? a->type_name : "alternate", err);
    case MON_T_END:
        break;
    }
    err_set(err, "Parameter '%s' has no type in the schema", path);
    return -EINVAL;
}

int mon_args_check(const struct mon_arg *members, bool open, json_t *obj, struct err *err)
{
    if (!json_is_object(obj)) {
        err_set(err, "QMP input member 'arguments' must be an object");
        return -EINVAL;
    }
    return check_members(members, open, obj, NULL, err);
}
