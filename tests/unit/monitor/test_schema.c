/*
 * Argument schemas: every way arguments can be wrong is refused with
 * QEMU's sentence and the member's full path — missing, unexpected,
 * mistyped, out of range, not in an enum — at the top level and nested in
 * objects, arrays and alternates; open objects pass unknown members on.
 */
#include "tests/unit/harness.h"

#include <stdio.h>

#include "monitor/schema.h"

static const char *const modes[] = { "off", "on", "unmap", NULL };

static const struct mon_arg cache_members[] = {
    { .name = "direct", .type = MON_T_BOOL, .optional = true },
    { .name = "no-flush", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static const struct mon_arg ref_members[] = {
    { .name = "node", .type = MON_T_STR },
    { .name = "name", .type = MON_T_STR },
    { .name = NULL },
};

static const struct mon_arg ref_alts[] = {
    { .type = MON_T_STR },
    { .type = MON_T_OBJECT, .members = ref_members },
    { .type = MON_T_END },
};

static const struct mon_arg ref = { .type = MON_T_ALT, .alts = ref_alts,
                                    .type_name = "BlockDirtyBitmapOrStr" };

static const struct mon_arg schema[] = {
    { .name = "name", .type = MON_T_STR },
    { .name = "size", .type = MON_T_INT, .optional = true },
    { .name = "granularity", .type = MON_T_U32, .optional = true },
    { .name = "bytes", .type = MON_T_SIZE, .optional = true },
    { .name = "count", .type = MON_T_U64, .optional = true },
    { .name = "ratio", .type = MON_T_NUMBER, .optional = true },
    { .name = "flag", .type = MON_T_BOOL, .optional = true },
    { .name = "mode", .type = MON_T_ENUM, .optional = true, .values = modes },
    { .name = "cache", .type = MON_T_OBJECT, .optional = true, .members = cache_members },
    { .name = "bitmaps", .type = MON_T_ARRAY, .optional = true, .elem = &ref },
    { .name = "extra", .type = MON_T_OBJECT, .optional = true, .open = true,
      .members = ref_members },
    { .name = "anything", .type = MON_T_ANY, .optional = true },
    { .name = NULL },
};

/* Whether the JSON text passes the schema (open: unknown members allowed). */
static bool passes(const char *text, bool open)
{
    struct err err = { 0 };
    json_t *o = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    int ret = mon_args_check(schema, open, o, &err);
    if (ret < 0) {
        printf("# %s: refused: %s\n", text, err.msg);
    }
    json_decref(o);
    return ret == 0;
}

/* Whether the JSON text is refused with exactly the sentence want. */
static bool refused(const char *text, const char *want)
{
    struct err err = { 0 };
    json_t *o = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    int ret = mon_args_check(schema, false, o, &err);
    bool ok = ret == -EINVAL && err.set && !strcmp(err.msg, want);
    if (!ok) {
        printf("# %s: got %d '%s', want '%s'\n", text, ret, err.msg, want);
    }
    json_decref(o);
    return ok;
}

static void test_accepts(void)
{
    CU_ASSERT(passes("{\"name\": \"a\"}", false));
    CU_ASSERT(passes("{\"name\": \"a\", \"size\": -5, \"granularity\": 4294967295, "
                     "\"bytes\": 0, \"count\": 9223372036854775807, \"ratio\": 1.5, "
                     "\"flag\": false, \"mode\": \"unmap\", \"cache\": {\"direct\": true}, "
                     "\"bitmaps\": [\"b0\", {\"node\": \"n\", \"name\": \"b1\"}], "
                     "\"extra\": {\"node\": \"n\", \"name\": \"x\", \"more\": [1]}, "
                     "\"anything\": null}", false));
    CU_ASSERT(passes("{\"name\": \"a\", \"ratio\": 2}", false));
    CU_ASSERT(passes("{\"name\": \"a\", \"cache\": {}, \"bitmaps\": []}", false));
    /* Open: strangers at the top pass; the listed members are still checked. */
    CU_ASSERT(passes("{\"name\": \"a\", \"filename\": \"x\", \"aio\": 3}", true));
    CU_ASSERT(refused("{\"name\": \"a\", \"filename\": \"x\"}",
                      "Parameter 'filename' is unexpected"));
}

static void test_missing(void)
{
    CU_ASSERT(refused("{}", "Parameter 'name' is missing"));
    CU_ASSERT(refused("{\"size\": 1}", "Parameter 'name' is missing"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bitmaps\": [{\"node\": \"n\"}]}",
                      "Parameter 'bitmaps[0].name' is missing"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bitmaps\": [\"x\", {\"name\": \"n\"}]}",
                      "Parameter 'bitmaps[1].node' is missing"));
    CU_ASSERT(refused("{\"name\": \"a\", \"extra\": {\"node\": \"n\"}}",
                      "Parameter 'extra.name' is missing"));
}

static void test_unexpected(void)
{
    CU_ASSERT(refused("{\"name\": \"a\", \"bogus\": 1}", "Parameter 'bogus' is unexpected"));
    CU_ASSERT(refused("{\"name\": \"a\", \"cache\": {\"direct\": true, \"writeback\": true}}",
                      "Parameter 'cache.writeback' is unexpected"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bitmaps\": [{\"node\": \"n\", \"name\": \"b\", "
                      "\"x\": 1}]}", "Parameter 'bitmaps[0].x' is unexpected"));
    /* Type errors of listed members come before strangers, as in QEMU. */
    CU_ASSERT(refused("{\"bogus\": 1, \"name\": 5}",
                      "Invalid parameter type for 'name', expected: string"));
}

static void test_mistyped(void)
{
    CU_ASSERT(refused("{\"name\": 1}", "Invalid parameter type for 'name', expected: string"));
    CU_ASSERT(refused("{\"name\": null}", "Invalid parameter type for 'name', expected: string"));
    CU_ASSERT(refused("{\"name\": \"a\", \"size\": \"1G\"}",
                      "Invalid parameter type for 'size', expected: integer"));
    CU_ASSERT(refused("{\"name\": \"a\", \"size\": 1.0}",
                      "Invalid parameter type for 'size', expected: integer"));
    CU_ASSERT(refused("{\"name\": \"a\", \"flag\": \"on\"}",
                      "Invalid parameter type for 'flag', expected: boolean"));
    CU_ASSERT(refused("{\"name\": \"a\", \"flag\": 1}",
                      "Invalid parameter type for 'flag', expected: boolean"));
    CU_ASSERT(refused("{\"name\": \"a\", \"ratio\": \"1\"}",
                      "Invalid parameter type for 'ratio', expected: number"));
    CU_ASSERT(refused("{\"name\": \"a\", \"mode\": 1}",
                      "Invalid parameter type for 'mode', expected: string"));
    CU_ASSERT(refused("{\"name\": \"a\", \"cache\": []}",
                      "Invalid parameter type for 'cache', expected: object"));
    CU_ASSERT(refused("{\"name\": \"a\", \"cache\": {\"direct\": 1}}",
                      "Invalid parameter type for 'cache.direct', expected: boolean"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bitmaps\": {}}",
                      "Invalid parameter type for 'bitmaps', expected: array"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bitmaps\": [5]}",
                      "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bitmaps\": [\"b\", {\"node\": 1, \"name\": \"x\"}]}",
                      "Invalid parameter type for 'bitmaps[1].node', expected: string"));
    CU_ASSERT(refused("{\"name\": \"a\", \"granularity\": \"4k\"}",
                      "Invalid parameter type for 'granularity', expected: integer"));
}

static void test_ranges_and_enums(void)
{
    CU_ASSERT(refused("{\"name\": \"a\", \"granularity\": -1}",
                      "Parameter 'granularity' expects uint32_t"));
    CU_ASSERT(refused("{\"name\": \"a\", \"granularity\": 4294967296}",
                      "Parameter 'granularity' expects uint32_t"));
    CU_ASSERT(refused("{\"name\": \"a\", \"granularity\": 1.5}",
                      "Parameter 'granularity' expects uint64"));
    CU_ASSERT(refused("{\"name\": \"a\", \"count\": -1}", "Parameter 'count' expects uint64"));
    CU_ASSERT(refused("{\"name\": \"a\", \"bytes\": -1}", "Parameter 'bytes' expects size"));
    CU_ASSERT(refused("{\"name\": \"a\", \"mode\": \"maybe\"}",
                      "Parameter 'mode' does not accept value 'maybe'"));
    CU_ASSERT(mon_enum_has(modes, "on"));
    CU_ASSERT_FALSE(mon_enum_has(modes, "On"));
}

static void test_no_arguments(void)
{
    struct err err = { 0 };
    json_t *empty = json_object();
    json_t *some = json_pack("{s:i}", "x", 1);
    json_t *list = json_array();

    /* A command without a schema takes no arguments at all. */
    CU_ASSERT_EQUAL(mon_args_check(NULL, false, empty, &err), 0);
    CU_ASSERT_EQUAL(mon_args_check(NULL, false, some, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'x' is unexpected");
    err_clear(&err);
    CU_ASSERT_EQUAL(mon_args_check(NULL, false, list, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "QMP input member 'arguments' must be an object");
    json_decref(empty);
    json_decref(some);
    json_decref(list);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("monitor_schema", NULL, NULL);
    CU_add_test(s, "accepts", test_accepts);
    CU_add_test(s, "missing", test_missing);
    CU_add_test(s, "unexpected", test_unexpected);
    CU_add_test(s, "mistyped", test_mistyped);
    CU_add_test(s, "ranges_and_enums", test_ranges_and_enums);
    CU_add_test(s, "no_arguments", test_no_arguments);
}
