/* qmp_capabilities, query-version, query-commands; see qmp-control.h. */
#include "monitor/qmp-control.h"

#include "monitor/command.h"
#include "util/osdep.h"

json_t *qmp_version_info(void)
{
    return json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "major", MON_QEMU_MAJOR, "minor",
                     MON_QEMU_MINOR, "micro", MON_QEMU_MICRO, "package", MON_PACKAGE);
}

static const char *const qmp_capability_names[] = { "oob", NULL };

static const struct mon_arg capabilities_args[] = {
    { .name = "enable", .type = MON_T_ARRAY, .optional = true,
      .elem = &(const struct mon_arg){ .name = "enable", .type = MON_T_ENUM,
                                       .values = qmp_capability_names } },
    { .name = NULL },
};

static json_t *qmp_capabilities(struct mon_session *s, json_t *args, struct mon_err *err)
{
    size_t i;
    json_t *cap;
    json_array_foreach(json_object_get(args, "enable"), i, cap) {
        /* The only capability QMP defines is one this server does not offer. */
        mon_err_set(err, MON_ERR_GENERIC, "Capability '%s' not available",
                    json_string_value(cap));
        return NULL;
    }
    s->negotiated = true;
    return json_object();
}

static json_t *qmp_query_version(struct mon_session *s, json_t *args, struct mon_err *err)
{
    return qmp_version_info();
}

static void add_name(const struct mon_cmd *c, void *opaque)
{
    json_array_append_new(opaque, json_pack("{s:s}", "name", c->name));
}

static json_t *qmp_query_commands(struct mon_session *s, json_t *args, struct mon_err *err)
{
    json_t *list = json_array();
    mon_cmd_foreach(add_name, list);
    return list;
}

static const struct mon_cmd control_cmds[] = {
    { "qmp_capabilities", qmp_capabilities, capabilities_args, MON_CMD_PRECAP },
    { "query-version", qmp_query_version, NULL, 0 },
    { "query-commands", qmp_query_commands, NULL, 0 },
};

void qmp_control_register(void)
{
    mon_cmd_register(control_cmds, ARRAY_SIZE(control_cmds));
}
