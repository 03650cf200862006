/*
 * Dispatch: the request's shape, capabilities negotiation, lookup, the
 * argument check before the handler, error classes, and "id" echoed back.
 */
#include "tests/unit/harness.h"

#include <stdio.h>

#include "monitor/command.h"
#include "monitor/qmp-control.h"

static int handler_calls;

static const struct mon_arg echo_args[] = {
    { .name = "x", .type = MON_T_INT },
    { .name = "tag", .type = MON_T_STR, .optional = true },
    { .name = NULL },
};

static json_t *cmd_echo(struct mon_session *s, json_t *args, struct mon_err *err)
{
    handler_calls++;
    return json_pack("{s:O}", "x", json_object_get(args, "x"));
}

static json_t *cmd_no_device(struct mon_session *s, json_t *args, struct mon_err *err)
{
    mon_err_set(err, MON_ERR_DEVICE_NOT_FOUND, "Device '%s' not found", "d9");
    return NULL;
}

static json_t *cmd_silent(struct mon_session *s, json_t *args, struct mon_err *err)
{
    return NULL;
}

static const struct mon_arg open_args[] = {
    { .name = "driver", .type = MON_T_STR },
    { .name = NULL },
};

static json_t *cmd_open(struct mon_session *s, json_t *args, struct mon_err *err)
{
    return json_integer((json_int_t)json_object_size(args));
}

static const struct mon_cmd test_cmds[] = {
    { "x-echo", cmd_echo, echo_args, 0 },
    { "x-no-device", cmd_no_device, NULL, 0 },
    { "x-silent", cmd_silent, NULL, 0 },
    { "x-open", cmd_open, open_args, MON_CMD_ARGS_OPEN },
};

static int setup(void)
{
    qmp_control_register();
    mon_cmd_register(test_cmds, ARRAY_SIZE(test_cmds));
    return 0;
}

static int teardown(void)
{
    mon_cmd_unregister_all();
    return 0;
}

/* Dispatch the JSON text; whether the reply is exactly want (compact, sorted keys). */
static bool replies(struct mon_session *s, const char *request, const char *want)
{
    json_t *req = json_loads(request, JSON_DECODE_ANY, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(req);
    json_t *reply = mon_dispatch(s, req);
    char *got = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
    bool ok = !strcmp(got, want);
    if (!ok) {
        printf("# %s\n#   got  %s\n#   want %s\n", request, got, want);
    }
    free(got);
    json_decref(reply);
    json_decref(req);
    return ok;
}

#define ERR(cls, desc) "{\"error\":{\"class\":\"" cls "\",\"desc\":\"" desc "\"}}"
#define ERR_ID(cls, desc, id) \
    "{\"error\":{\"class\":\"" cls "\",\"desc\":\"" desc "\"},\"id\":" id "}"

static void test_negotiation(void)
{
    struct mon_session s = { 0 };
    CU_ASSERT(replies(&s, "{\"execute\":\"query-version\",\"id\":1}",
                      ERR_ID("CommandNotFound",
                             "Expecting capabilities negotiation with 'qmp_capabilities'", "1")));
    CU_ASSERT(replies(&s, "{\"execute\":\"nope\"}",
                      ERR("CommandNotFound",
                          "Expecting capabilities negotiation with 'qmp_capabilities'")));
    CU_ASSERT(replies(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
                      ERR("GenericError", "Capability 'oob' not available")));
    CU_ASSERT(replies(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"x\"]}}",
                      ERR("GenericError", "Parameter 'enable[0]' does not accept value 'x'")));
    CU_ASSERT_FALSE(s.negotiated);
    CU_ASSERT(replies(&s, "{\"execute\":\"qmp_capabilities\",\"id\":\"a\"}",
                      "{\"id\":\"a\",\"return\":{}}"));
    CU_ASSERT_TRUE(s.negotiated);
    CU_ASSERT(replies(&s, "{\"execute\":\"qmp_capabilities\"}",
                      ERR("CommandNotFound",
                          "Capabilities negotiation is already complete, command ignored")));
    CU_ASSERT(replies(&s, "{\"execute\":\"query-version\"}",
                      "{\"return\":{\"package\":\"" MON_PACKAGE "\",\"qemu\":{\"major\":7,"
                      "\"micro\":0,\"minor\":2}}}"));
}

static void test_request_shape(void)
{
    struct mon_session s = { .negotiated = true };
    CU_ASSERT(replies(&s, "[1]", ERR("GenericError", "QMP input must be a JSON object")));
    CU_ASSERT(replies(&s, "\"x\"", ERR("GenericError", "QMP input must be a JSON object")));
    CU_ASSERT(replies(&s, "{}", ERR("GenericError", "QMP input lacks member 'execute'")));
    CU_ASSERT(replies(&s, "{\"id\":7}",
                      ERR_ID("GenericError", "QMP input lacks member 'execute'", "7")));
    CU_ASSERT(replies(&s, "{\"execute\":5}",
                      ERR("GenericError", "QMP input member 'execute' must be a string")));
    CU_ASSERT(replies(&s, "{\"execute\":\"x-echo\",\"arguments\":[1]}",
                      ERR("GenericError", "QMP input member 'arguments' must be an object")));
    CU_ASSERT(replies(&s, "{\"execute\":\"x-echo\",\"foo\":1}",
                      ERR("GenericError", "QMP input member 'foo' is unexpected")));
    /* No out-of-band execution here: exec-oob is just a stranger. */
    CU_ASSERT(replies(&s, "{\"exec-oob\":\"x-echo\"}",
                      ERR("GenericError", "QMP input member 'exec-oob' is unexpected")));
    CU_ASSERT(replies(&s, "{\"execute\":\"nope\",\"id\":{\"a\":[1,null]}}",
                      ERR_ID("CommandNotFound", "The command nope has not been found",
                             "{\"a\":[1,null]}")));
}

static void test_arguments_checked_first(void)
{
    struct mon_session s = { .negotiated = true };
    handler_calls = 0;
    CU_ASSERT(replies(&s, "{\"execute\":\"x-echo\"}",
                      ERR("GenericError", "Parameter 'x' is missing")));
    CU_ASSERT(replies(&s, "{\"execute\":\"x-echo\",\"arguments\":{\"x\":\"1\"}}",
                      ERR("GenericError", "Invalid parameter type for 'x', expected: integer")));
    CU_ASSERT(replies(&s, "{\"execute\":\"x-echo\",\"arguments\":{\"x\":1,\"y\":2}}",
                      ERR("GenericError", "Parameter 'y' is unexpected")));
    CU_ASSERT(replies(&s, "{\"execute\":\"query-version\",\"arguments\":{\"x\":1}}",
                      ERR("GenericError", "Parameter 'x' is unexpected")));
    CU_ASSERT_EQUAL(handler_calls, 0);
    CU_ASSERT(replies(&s,
                      "{\"execute\":\"x-echo\",\"arguments\":{\"x\":3,\"tag\":\"t\"},\"id\":[]}",
                      "{\"id\":[],\"return\":{\"x\":3}}"));
    CU_ASSERT_EQUAL(handler_calls, 1);
    /* Open commands get what the schema does not list. */
    CU_ASSERT(replies(&s,
                      "{\"execute\":\"x-open\",\"arguments\":{\"driver\":\"d\",\"a\":1,\"b\":2}}",
                      "{\"return\":3}"));
    CU_ASSERT(replies(&s, "{\"execute\":\"x-open\",\"arguments\":{\"a\":1}}",
                      ERR("GenericError", "Parameter 'driver' is missing")));
}

static void test_handler_errors(void)
{
    struct mon_session s = { .negotiated = true };
    CU_ASSERT(replies(&s, "{\"execute\":\"x-no-device\",\"id\":2}",
                      ERR_ID("DeviceNotFound", "Device 'd9' not found", "2")));
    CU_ASSERT(replies(&s, "{\"execute\":\"x-silent\"}",
                      ERR("GenericError", "x-silent failed without saying why")));
}

static void count(const struct mon_cmd *c, void *opaque)
{
    (*(int *)opaque)++;
}

static void test_table(void)
{
    struct mon_session s = { .negotiated = true };
    int n = 0;
    mon_cmd_foreach(count, &n);
    CU_ASSERT_EQUAL(n, 3 + (int)ARRAY_SIZE(test_cmds));
    /* A second registration of a name is ignored (and logged). */
    mon_cmd_register(test_cmds, 1);
    int m = 0;
    mon_cmd_foreach(count, &m);
    CU_ASSERT_EQUAL(m, n);
    CU_ASSERT_PTR_EQUAL(mon_cmd_find("x-echo"), &test_cmds[0]);
    CU_ASSERT_PTR_NULL(mon_cmd_find("x-nope"));
    CU_ASSERT(replies(&s, "{\"execute\":\"query-commands\"}",
                      "{\"return\":[{\"name\":\"qmp_capabilities\"},{\"name\":\"query-version\"},"
                      "{\"name\":\"query-commands\"},{\"name\":\"x-echo\"},"
                      "{\"name\":\"x-no-device\"},{\"name\":\"x-silent\"},"
                      "{\"name\":\"x-open\"}]}"));
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("monitor_command", setup, teardown);
    CU_add_test(s, "negotiation", test_negotiation);
    CU_add_test(s, "request_shape", test_request_shape);
    CU_add_test(s, "arguments_checked_first", test_arguments_checked_first);
    CU_add_test(s, "handler_errors", test_handler_errors);
    CU_add_test(s, "table", test_table);
}
