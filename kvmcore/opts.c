/* QEMU-style option strings over util/opts; see opts.h. */
#include "kvmcore/opts.h"

#include <ctype.h>
#include <stdio.h>

#include "util/opts.h"

int kvm_parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true")) {
        *out = true;
    } else if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false")) {
        *out = false;
    } else {
        return -EINVAL;
    }
    return 0;
}

int kvm_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !isdigit((unsigned char)*s)) {
        return -EINVAL;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static char *leaf_text(json_t *v)
{
    if (json_is_string(v)) {
        return xstrdup(json_string_value(v));
    }
    if (json_is_boolean(v)) {
        return xstrdup(json_is_true(v) ? "on" : "off");
    }
    if (json_is_integer(v)) {
        return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
    if (json_is_null(v)) {
        return xstrdup("null");
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *d = xstrdup(s ? s : "");
    free(s);
    return d;
}

int kvm_opts_from_json(struct kvm_opts *o, json_t *obj, struct err *err)
{
    memset(o, 0, sizeof(*o));
    o->obj = obj;
    json_t *flat = opts_flatten(obj);
    const char *key;
    json_t *v;
    o->opt = xcalloc(json_object_size(flat) + 1, sizeof(*o->opt));
    json_object_foreach(flat, key, v) {
        o->opt[o->n++] = (struct kvm_opt){ .key = xstrdup(key), .value = leaf_text(v) };
    }
    json_decref(flat);
    return 0;
}

int kvm_opts_parse(struct kvm_opts *o, const char *s, const char *implied_key,
                   const char *what, struct err *err)
{
    memset(o, 0, sizeof(*o));
    if (!*s) {
        err_set(err, "%s: an empty argument", what);
        return -EINVAL;
    }
    json_t *obj = opts_parse(s, implied_key, err);
    if (!obj) {
        err_prepend(err, "%s: ", what);
        return -EINVAL;
    }
    return kvm_opts_from_json(o, obj, err);
}

void kvm_opts_free(struct kvm_opts *o)
{
    for (unsigned i = 0; i < o->n; i++) {
        free(o->opt[i].key);
        free(o->opt[i].value);
    }
    free(o->opt);
    json_decref(o->obj);
    memset(o, 0, sizeof(*o));
}

const char *kvm_opts_get(struct kvm_opts *o, const char *key)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (!strcmp(o->opt[i].key, key)) {
            o->opt[i].used = true;
            return o->opt[i].value;
        }
    }
    return NULL;
}

json_t *kvm_opts_get_json(struct kvm_opts *o, const char *key)
{
    json_t *v = o->obj ? opts_get(o->obj, key) : NULL;
    size_t len = strlen(key);
    for (unsigned i = 0; v && i < o->n; i++) {
        const char *k = o->opt[i].key;
        if (!strncmp(k, key, len) && (k[len] == '\0' || k[len] == '.')) {
            o->opt[i].used = true;
        }
    }
    return v;
}

int kvm_opts_get_bool(struct kvm_opts *o, const char *key, bool *out, const char *what,
                      struct err *err)
{
    const char *v = kvm_opts_get(o, key);
    if (!v) {
        return 0;
    }
    if (kvm_parse_bool(v, out) < 0) {
        err_set(err, "%s: property '%s' takes on or off, not '%s'", what, key, v);
        return -EINVAL;
    }
    return 1;
}

int kvm_opts_get_u64(struct kvm_opts *o, const char *key, uint64_t min, uint64_t max,
                     uint64_t *out, const char *what, struct err *err)
{
    const char *v = kvm_opts_get(o, key);
    uint64_t n;
    if (!v) {
        return 0;
    }
    if (kvm_parse_u64(v, &n) < 0) {
        err_set(err, "%s: property '%s' takes a number, not '%s'", what, key, v);
        return -EINVAL;
    }
    if (n < min || n > max) {
        err_set(err, "%s: property '%s' must be between %" PRIu64 " and %" PRIu64 ", not %s",
                what, key, min, max, v);
        return -EINVAL;
    }
    *out = n;
    return 1;
}

int kvm_opts_get_size(struct kvm_opts *o, const char *key, uint64_t *out, const char *what,
                      struct err *err)
{
    const char *v = kvm_opts_get(o, key);
    if (!v) {
        return 0;
    }
    if (parse_size(v, out) < 0) {
        err_set(err, "%s: property '%s' takes a size, not '%s'", what, key, v);
        return -EINVAL;
    }
    return 1;
}

int kvm_opts_check_unused(struct kvm_opts *o, const char *what, struct err *err)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (!o->opt[i].used) {
            err_set(err, "%s: unknown property '%s'", what, o->opt[i].key);
            return -EINVAL;
        }
    }
    return 0;
}

json_t *kvm_opts_unused_json(struct kvm_opts *o, struct err *err)
{
    json_t *flat = opts_flatten(o->obj);
    for (unsigned i = 0; i < o->n; i++) {
        if (o->opt[i].used) {
            json_object_del(flat, o->opt[i].key);
        }
    }
    json_t *out = opts_crumple(flat, err);
    json_decref(flat);
    return out;
}
