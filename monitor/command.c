/* The command table and the dispatch of requests; see command.h. */
#include "monitor/command.h"

#include <stdarg.h>
#include <stdio.h>

#include "util/log.h"

static const struct mon_cmd **cmds;
static size_t nr_cmds;

const char *mon_err_class_name(enum mon_err_class cls)
{
    switch (cls) {
    case MON_ERR_GENERIC:
        return "GenericError";
    case MON_ERR_COMMAND_NOT_FOUND:
        return "CommandNotFound";
    case MON_ERR_DEVICE_NOT_FOUND:
        return "DeviceNotFound";
    case MON_ERR_DEVICE_NOT_ACTIVE:
        return "DeviceNotActive";
    case MON_ERR_KVM_MISSING_CAP:
        return "KVMMissingCap";
    }
    return "GenericError";
}

void mon_err_set(struct mon_err *e, enum mon_err_class cls, const char *fmt, ...)
{
    va_list ap;
    if (!e || e->err.set) {
        return;
    }
    e->cls = cls;
    va_start(ap, fmt);
    vsnprintf(e->err.msg, sizeof(e->err.msg), fmt, ap);
    va_end(ap);
    e->err.set = true;
}

/* ---- The table --------------------------------------------------------- */

const struct mon_cmd *mon_cmd_find(const char *name)
{
    for (size_t i = 0; i < nr_cmds; i++) {
        if (!strcmp(cmds[i]->name, name)) {
            return cmds[i];
        }
    }
    return NULL;
}

void mon_cmd_register(const struct mon_cmd *table, size_t n)
{
    cmds = xrealloc(cmds, (nr_cmds + n) * sizeof(*cmds));
    for (size_t i = 0; i < n; i++) {
        if (mon_cmd_find(table[i].name)) {
            log_error("QMP command '%s' is registered twice", table[i].name);
            continue;
        }
        cmds[nr_cmds++] = &table[i];
    }
}

void mon_cmd_foreach(void (*fn)(const struct mon_cmd *c, void *opaque), void *opaque)
{
    for (size_t i = 0; i < nr_cmds; i++) {
        fn(cmds[i], opaque);
    }
}

void mon_cmd_unregister_all(void)
{
    free(cmds);
    cmds = NULL;
    nr_cmds = 0;
}

/* ---- Replies ----------------------------------------------------------- */

json_t *mon_error_reply(enum mon_err_class cls, const char *desc, json_t *id)
{
    json_t *reply = json_object();
    json_t *e = json_object();
    json_object_set_new(e, "class", json_string(mon_err_class_name(cls)));
    json_object_set_new(e, "desc", json_string(desc));
    json_object_set_new(reply, "error", e);
    if (id) {
        json_object_set(reply, "id", id);
    }
    return reply;
}

static json_t *return_reply(json_t *ret, json_t *id)
{
    json_t *reply = json_object();
    json_object_set_new(reply, "return", ret);
    if (id) {
        json_object_set(reply, "id", id);
    }
    return reply;
}

/* ---- Dispatch ---------------------------------------------------------- */

/*
 * The request's own shape, as QEMU checks it: members execute (a string),
 * arguments (an object) and id (anything), and nothing else.  exec-oob is
 * refused like any stranger: this server offers no out-of-band capability.
 */
static int check_request(json_t *req, const char **name, json_t **args, char *why, size_t len)
{
    const char *key;
    json_t *v;

    json_object_foreach(req, key, v) {
        if (!strcmp(key, "execute")) {
            if (!json_is_string(v)) {
                snprintf(why, len, "QMP input member 'execute' must be a string");
                return -EINVAL;
            }
            *name = json_string_value(v);
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(v)) {
                snprintf(why, len, "QMP input member 'arguments' must be an object");
                return -EINVAL;
            }
            *args = v;
        } else if (strcmp(key, "id")) {
            snprintf(why, len, "QMP input member '%s' is unexpected", key);
            return -EINVAL;
        }
    }
    if (!*name) {
        snprintf(why, len, "QMP input lacks member 'execute'");
        return -EINVAL;
    }
    return 0;
}

json_t *mon_dispatch(struct mon_session *s, json_t *req)
{
    const char *name = NULL;
    json_t *args = NULL;
    char why[256];

    if (!json_is_object(req)) {
        return mon_error_reply(MON_ERR_GENERIC, "QMP input must be a JSON object", NULL);
    }
    json_t *id = json_object_get(req, "id");
    if (check_request(req, &name, &args, why, sizeof(why)) < 0) {
        return mon_error_reply(MON_ERR_GENERIC, why, id);
    }

    const struct mon_cmd *cmd = mon_cmd_find(name);
    if (!s->negotiated && (!cmd || !(cmd->flags & MON_CMD_PRECAP))) {
        return mon_error_reply(MON_ERR_COMMAND_NOT_FOUND,
                               "Expecting capabilities negotiation with 'qmp_capabilities'", id);
    }
    if (s->negotiated && cmd && (cmd->flags & MON_CMD_PRECAP)) {
        return mon_error_reply(MON_ERR_COMMAND_NOT_FOUND,
                               "Capabilities negotiation is already complete, command ignored",
                               id);
    }
    if (!cmd) {
        snprintf(why, sizeof(why), "The command %s has not been found", name);
        return mon_error_reply(MON_ERR_COMMAND_NOT_FOUND, why, id);
    }

    struct mon_err err = { 0 };
    json_t *empty = NULL;
    if (!args) {
        args = empty = json_object();
    }
    json_t *ret = NULL;
    if (mon_args_check(cmd->args, cmd->flags & MON_CMD_ARGS_OPEN, args, &err.err) == 0) {
        trace("qmp_command", "%s", name);
        ret = cmd->fn(s, args, &err);
        if (!ret && !err.err.set) {
            mon_err_set(&err, MON_ERR_GENERIC, "%s failed without saying why", name);
        }
        if (ret && err.err.set) {
            json_decref(ret);
            ret = NULL;
        }
    }
    json_decref(empty);
    if (!ret) {
        return mon_error_reply(err.cls, err.err.msg, id);
    }
    return return_reply(ret, id);
}
