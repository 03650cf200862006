/* Options in one jansson form, and the command line's sizes and numbers. */
#include "tests/unit/harness.h"

#include <ctype.h>
#include <stdio.h>

#include "util/opts.h"

/* Whether str parses (with implied) to the same value as the JSON text want. */
static bool parses_to(const char *str, const char *implied, const char *want)
{
    struct err err = { 0 };
    json_t *got = opts_parse(str, implied, &err);
    json_t *exp = json_loads(want, 0, NULL);
    bool ok = got && exp && json_equal(got, exp);

    if (!ok) {
        char *text = got ? json_dumps(got, JSON_SORT_KEYS) : NULL;
        printf("# '%s' parsed to %s (%s), want %s\n", str, text ? text : "NULL", err.msg, want);
        free(text);
    }
    json_decref(got);
    json_decref(exp);
    return ok;
}

/* Whether str fails to parse with exactly the sentence want. */
static bool fails_with(const char *str, const char *implied, const char *want)
{
    struct err err = { 0 };
    json_t *got = opts_parse(str, implied, &err);
    bool ok = !got && err.set && !strcmp(err.msg, want);

    if (!ok) {
        printf("# '%s': got '%s', want '%s'\n", str, err.msg, want);
    }
    json_decref(got);
    return ok;
}

static json_t *must_parse(const char *str)
{
    json_t *obj = opts_parse(str, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
    return obj;
}

static void test_parse_basic(void)
{
    CU_ASSERT(parses_to("a=1,b=two", NULL, "{\"a\":\"1\",\"b\":\"two\"}"));
    CU_ASSERT(parses_to("", NULL, "{}"));
    CU_ASSERT(parses_to("a=", NULL, "{\"a\":\"\"}"));
    CU_ASSERT(parses_to("a=b=c", NULL, "{\"a\":\"b=c\"}"));
    CU_ASSERT(parses_to("a=1,", NULL, "{\"a\":\"1\"}"));
    CU_ASSERT(parses_to("x-y_Z9=1", NULL, "{\"x-y_Z9\":\"1\"}"));
    /* Blanks are part of values; types are left to the getters. */
    CU_ASSERT(parses_to("a= 1 ,b=true", NULL, "{\"a\":\" 1 \",\"b\":\"true\"}"));
}

static void test_parse_escapes(void)
{
    CU_ASSERT(parses_to("a=x,,y,b=2", NULL, "{\"a\":\"x,y\",\"b\":\"2\"}"));
    CU_ASSERT(parses_to("a=,,x", NULL, "{\"a\":\",x\"}"));
    CU_ASSERT(parses_to("a=1,,,,b", NULL, "{\"a\":\"1,,b\"}"));
    CU_ASSERT(parses_to("a=1,,", NULL, "{\"a\":\"1,\"}"));
    CU_ASSERT(parses_to("a=1,,,b=2", NULL, "{\"a\":\"1,\",\"b\":\"2\"}"));
    CU_ASSERT(parses_to("filename=/tmp/a,,b.img", NULL, "{\"filename\":\"/tmp/a,b.img\"}"));
}

static void test_parse_nesting(void)
{
    CU_ASSERT(parses_to("driver=qcow2,file.filename=x,file.aio=io_uring", NULL,
                        "{\"driver\":\"qcow2\",\"file\":{\"filename\":\"x\",\"aio\":\"io_uring\"}}"));
    CU_ASSERT(parses_to("a.b.c.d=1,a.b.e=2", NULL,
                        "{\"a\":{\"b\":{\"c\":{\"d\":\"1\"},\"e\":\"2\"}}}"));
    /* Index parts make arrays, in index order whatever the input order. */
    CU_ASSERT(parses_to("server.1.host=b,server.0.host=a,server.0.port=24007", NULL,
                        "{\"server\":[{\"host\":\"a\",\"port\":\"24007\"},{\"host\":\"b\"}]}"));
    CU_ASSERT(parses_to("x.0=a,x.1=b", NULL, "{\"x\":[\"a\",\"b\"]}"));
    CU_ASSERT(parses_to("x.0.0=a,x.0.1=b", NULL, "{\"x\":[[\"a\",\"b\"]]}"));
    /* "01" is a name, not an index. */
    CU_ASSERT(parses_to("x.01=a", NULL, "{\"x\":{\"01\":\"a\"}}"));
}

static void test_parse_implied(void)
{
    CU_ASSERT(parses_to("qcow2,size=1G", "driver", "{\"driver\":\"qcow2\",\"size\":\"1G\"}"));
    CU_ASSERT(parses_to("qcow2", "driver", "{\"driver\":\"qcow2\"}"));
    CU_ASSERT(parses_to("a,,b,size=1", "driver", "{\"driver\":\"a,b\",\"size\":\"1\"}"));
    CU_ASSERT(parses_to("size=1", "driver", "{\"size\":\"1\"}"));
    CU_ASSERT(parses_to("x", "file.filename", "{\"file\":{\"filename\":\"x\"}}"));
    CU_ASSERT(fails_with("qcow2,size=1G", NULL, "Expected '=' after parameter 'qcow2'"));
    CU_ASSERT(fails_with("driver=x,qcow2", "driver", "Expected '=' after parameter 'qcow2'"));
    CU_ASSERT(fails_with("qcow2,driver=raw", "driver", "Duplicate parameter 'driver'"));
}

static void test_parse_errors(void)
{
    CU_ASSERT(fails_with("=1", NULL, "Empty parameter name"));
    CU_ASSERT(fails_with(",a=1", NULL, "Empty parameter name"));
    CU_ASSERT(fails_with("a=1,=2", NULL, "Empty parameter name"));
    CU_ASSERT(fails_with("a..b=1", NULL, "Parameter name 'a..b' has an empty component"));
    CU_ASSERT(fails_with("a.=1", NULL, "Parameter name 'a.' has an empty component"));
    CU_ASSERT(fails_with(".a=1", NULL, "Parameter name '.a' has an empty component"));
    CU_ASSERT(fails_with("a b=1", NULL, "Parameter name 'a b' contains the invalid character ' '"));
    CU_ASSERT(fails_with("a/b=1", NULL, "Parameter name 'a/b' contains the invalid character '/'"));
    CU_ASSERT(fails_with("\xc3\xa9=1", NULL, "Parameter name '\xc3\xa9' contains a non-ASCII character"));
    CU_ASSERT(fails_with("a=1,b", NULL, "Expected '=' after parameter 'b'"));
    CU_ASSERT(fails_with("a=1,a=2", NULL, "Duplicate parameter 'a'"));
    CU_ASSERT(fails_with("f.x=1,f.x=2", NULL, "Duplicate parameter 'f.x'"));
    CU_ASSERT(fails_with("a=1,a.b=2", NULL, "Parameter 'a' is both a value and a prefix of 'a.b'"));
    CU_ASSERT(fails_with("a.b=2,a=1", NULL, "Parameter 'a' is both a value and a prefix of 'a.b'"));
    CU_ASSERT(fails_with("a.b.c=1,a.b=2", NULL,
                         "Parameter 'a.b' is both a value and a prefix of 'a.b.c'"));
    CU_ASSERT(fails_with("x.0=a,x.2=b", NULL, "List parameter 'x' has no index 1"));
    CU_ASSERT(fails_with("a.b.1=x", NULL, "List parameter 'a.b' has no index 0"));
    CU_ASSERT(fails_with("x.0=a,x.y=b", NULL, "Parameter 'x' mixes list indexes with names"));
    CU_ASSERT(fails_with("s.0.x.1=a", NULL, "List parameter 's.0.x' has no index 0"));
    CU_ASSERT(fails_with("a=\xff", NULL, "Parameter 'a' has a value that is not valid UTF-8"));
}

static void test_parse_json(void)
{
    CU_ASSERT(parses_to("{\"driver\":\"qcow2\",\"size\":1073741824,\"ro\":true,"
                        "\"file\":{\"filename\":\"x\"},\"l\":[1,{\"b\":null}],\"r\":1.5}",
                        NULL,
                        "{\"driver\":\"qcow2\",\"size\":1073741824,\"ro\":true,"
                        "\"file\":{\"filename\":\"x\"},\"l\":[1,{\"b\":null}],\"r\":1.5}"));
    CU_ASSERT(parses_to("  \n{\"a\":1}  \n", "driver", "{\"a\":1}"));
    /* JSON keys are taken as they are: no dotted nesting. */
    CU_ASSERT(parses_to("{\"a.b\":1}", NULL, "{\"a.b\":1}"));
    CU_ASSERT(fails_with("{\"a\":1", NULL,
                         "Invalid JSON at line 1, column 6: '}' expected near end of file"));
    CU_ASSERT(fails_with("{\n\"a\": 1,\n\"a\": 2}", NULL,
                         "Invalid JSON at line 3, column 3: duplicate object key near '\"a\"'"));
    CU_ASSERT(fails_with("{\"a\":1} x", NULL, "Unexpected text after the JSON object: 'x'"));
    CU_ASSERT(fails_with("{\"a\":1}}", NULL, "Unexpected text after the JSON object: '}'"));
    /* Not JSON unless it starts with '{'. */
    CU_ASSERT(fails_with("[1]", NULL, "Expected '=' after parameter '[1]'"));
}

static void test_set_dotted(void)
{
    json_t *obj = json_object();
    struct err err = { 0 };

    CU_ASSERT_EQUAL(opts_set_dotted(obj, "a.b.c", json_integer(1), &err), 0);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "a.b.d", json_string("x"), &err), 0);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "top", json_true(), &err), 0);
    CU_ASSERT_EQUAL(json_integer_value(opts_get(obj, "a.b.c")), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(opts_get(obj, "a.b.d")), "x");
    CU_ASSERT_FALSE(err.set);

    /* Conflicts steal val all the same (valgrind sees a leak otherwise). */
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "a.b.c", json_integer(2), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Duplicate parameter 'a.b.c'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "a.b.c.d", json_integer(2), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'a.b.c' is both a value and a prefix of 'a.b.c.d'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "a", json_integer(2), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'a' is both a value and a prefix of 'a.b'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "", json_integer(2), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Empty parameter name");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "a..b", json_integer(2), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter name 'a..b' has an empty component");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "bad.\xff", json_integer(2), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter name 'bad.\xff' is not valid UTF-8");
    CU_ASSERT_PTR_NULL(opts_get(obj, "bad"));   /* a failure leaves obj as it was */
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s", json_string("\xff"), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 's' has no value");
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "z", json_integer(2), NULL), 0);
    json_decref(obj);
}

static void test_set_dotted_lists(void)
{
    json_t *obj = must_parse("s.0.host=a");
    struct err err = { 0 };

    /* One past the end appends; further is refused. */
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s.1.host", json_string("b"), &err), 0);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s.0.port", json_string("1"), &err), 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(opts_get(obj, "s.1.host")), "b");
    CU_ASSERT_EQUAL(json_array_size(opts_get(obj, "s")), 2);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s.3", json_string("c"), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "List parameter 's' has no index '3'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s.x.y", json_string("c"), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "List parameter 's' has no index 'x'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s.0", json_string("c"), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 's.0' is both a value and a prefix of 's.0.host'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_set_dotted(obj, "s.0.host.x", json_string("c"), &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg,
                           "Parameter 's.0.host' is both a value and a prefix of 's.0.host.x'");
    json_decref(obj);
}

static void test_get_del(void)
{
    json_t *obj = must_parse("{\"a\":{\"b\":\"x\"},\"l\":[1,{\"c\":2}],\"s\":\"v\"}");

    CU_ASSERT_STRING_EQUAL(json_string_value(opts_get(obj, "a.b")), "x");
    CU_ASSERT_EQUAL(json_integer_value(opts_get(obj, "l.1.c")), 2);
    CU_ASSERT_TRUE(json_is_object(opts_get(obj, "a")));
    CU_ASSERT_PTR_NULL(opts_get(obj, "a.c"));
    CU_ASSERT_PTR_NULL(opts_get(obj, "a.b.c"));     /* through a string */
    CU_ASSERT_PTR_NULL(opts_get(obj, "l.2"));
    CU_ASSERT_PTR_NULL(opts_get(obj, "l.01"));
    CU_ASSERT_PTR_NULL(opts_get(obj, "l.x"));
    CU_ASSERT_PTR_NULL(opts_get(obj, "s.0"));
    CU_ASSERT_PTR_NULL(opts_get(obj, ""));
    CU_ASSERT_PTR_NULL(opts_get(obj, "x.y.z"));

    CU_ASSERT_EQUAL(opts_del(obj, "a.b"), 0);
    CU_ASSERT_PTR_NULL(opts_get(obj, "a.b"));
    CU_ASSERT_EQUAL(opts_del(obj, "a.b"), -ENOENT);
    CU_ASSERT_EQUAL(opts_del(obj, "l.0"), 0);
    CU_ASSERT_EQUAL(json_integer_value(opts_get(obj, "l.0.c")), 2);
    CU_ASSERT_EQUAL(opts_del(obj, "l.5"), -ENOENT);
    CU_ASSERT_EQUAL(opts_del(obj, "l.x"), -ENOENT);
    CU_ASSERT_EQUAL(opts_del(obj, "q.r"), -ENOENT);
    json_decref(obj);
}

static void test_get_str(void)
{
    json_t *obj = must_parse("{\"s\":\"v\",\"n\":5,\"f\":{\"name\":\"x\"}}");
    struct err err = { 0 };
    const char *out = "untouched";

    CU_ASSERT_EQUAL(opts_get_str(obj, "s", &out, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, "v");
    CU_ASSERT_EQUAL(opts_get_str(obj, "f.name", &out, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, "x");
    out = "untouched";
    CU_ASSERT_EQUAL(opts_get_str(obj, "missing", &out, &err), -ENOENT);
    CU_ASSERT_STRING_EQUAL(out, "untouched");
    CU_ASSERT_FALSE(err.set);
    CU_ASSERT_EQUAL(opts_get_str(obj, "n", &out, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'n' expects a string");
    CU_ASSERT_STRING_EQUAL(out, "untouched");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_get_str(obj, "f", &out, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'f' expects a string");
    CU_ASSERT_EQUAL(opts_get_str(obj, "n", &out, NULL), -EINVAL);
    json_decref(obj);
}

static void test_get_bool(void)
{
    static const struct {
        const char *text;
        int want;   /* 1, 0, or -1 for refused */
    } cases[] = {
        { "on", 1 }, { "yes", 1 }, { "true", 1 }, { "off", 0 }, { "no", 0 }, { "false", 0 },
        { "On", -1 }, { "1", -1 }, { "", -1 }, { "truely", -1 }, { " on", -1 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *obj = json_pack("{ss}", "b", cases[i].text);
        struct err err = { 0 };
        bool out = cases[i].want != 1;
        int ret = opts_get_bool(obj, "b", &out, &err);
        if (cases[i].want < 0) {
            CU_ASSERT_EQUAL(ret, -EINVAL);
            CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'b' expects a boolean");
        } else {
            CU_ASSERT_EQUAL(ret, 0);
            CU_ASSERT_EQUAL(out, cases[i].want);
        }
        json_decref(obj);
    }

    json_t *obj = must_parse("{\"t\":true,\"f\":false,\"n\":1,\"x\":{\"ro\":\"on\"}}");
    struct err err = { 0 };
    bool out = false;
    CU_ASSERT_EQUAL(opts_get_bool(obj, "t", &out, &err), 0);
    CU_ASSERT_TRUE(out);
    CU_ASSERT_EQUAL(opts_get_bool(obj, "f", &out, &err), 0);
    CU_ASSERT_FALSE(out);
    CU_ASSERT_EQUAL(opts_get_bool(obj, "x.ro", &out, &err), 0);
    CU_ASSERT_TRUE(out);
    CU_ASSERT_EQUAL(opts_get_bool(obj, "nope", &out, &err), -ENOENT);
    CU_ASSERT_EQUAL(opts_get_bool(obj, "n", &out, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'n' expects a boolean");
    json_decref(obj);
}

static void test_get_int_uint(void)
{
    json_t *obj = must_parse("{\"j\":-5,\"big\":9223372036854775807,\"r\":1.5,\"t\":true,"
                             "\"d\":\"42\",\"neg\":\"-42\",\"hex\":\"0x10\",\"nhex\":\"-0x10\","
                             "\"max\":\"9223372036854775807\",\"over\":\"9223372036854775808\","
                             "\"umax\":\"18446744073709551615\",\"k\":\"1k\",\"e\":\"\"}");
    struct err err = { 0 };
    int64_t i = 7;
    uint64_t u = 7;

    CU_ASSERT_EQUAL(opts_get_int(obj, "j", &i, &err), 0);
    CU_ASSERT_EQUAL(i, -5);
    CU_ASSERT_EQUAL(opts_get_int(obj, "big", &i, &err), 0);
    CU_ASSERT_EQUAL(i, INT64_MAX);
    CU_ASSERT_EQUAL(opts_get_int(obj, "d", &i, &err), 0);
    CU_ASSERT_EQUAL(i, 42);
    CU_ASSERT_EQUAL(opts_get_int(obj, "neg", &i, &err), 0);
    CU_ASSERT_EQUAL(i, -42);
    CU_ASSERT_EQUAL(opts_get_int(obj, "hex", &i, &err), 0);
    CU_ASSERT_EQUAL(i, 16);
    CU_ASSERT_EQUAL(opts_get_int(obj, "nhex", &i, &err), 0);
    CU_ASSERT_EQUAL(i, -16);
    CU_ASSERT_EQUAL(opts_get_int(obj, "max", &i, &err), 0);
    CU_ASSERT_EQUAL(i, INT64_MAX);
    CU_ASSERT_EQUAL(opts_get_int(obj, "missing", &i, &err), -ENOENT);
    CU_ASSERT_FALSE(err.set);
    i = 7;
    const char *bad_int[] = { "over", "r", "t", "k", "e", "umax" };
    for (size_t n = 0; n < ARRAY_SIZE(bad_int); n++) {
        char want[64];
        err_clear(&err);
        CU_ASSERT_EQUAL(opts_get_int(obj, bad_int[n], &i, &err), -EINVAL);
        snprintf(want, sizeof(want), "Parameter '%s' expects a number", bad_int[n]);
        CU_ASSERT_STRING_EQUAL(err.msg, want);
    }
    CU_ASSERT_EQUAL(i, 7);

    CU_ASSERT_EQUAL(opts_get_uint(obj, "umax", &u, &err), 0);
    CU_ASSERT_EQUAL(u, UINT64_MAX);
    CU_ASSERT_EQUAL(opts_get_uint(obj, "big", &u, &err), 0);
    CU_ASSERT_EQUAL(u, INT64_MAX);
    CU_ASSERT_EQUAL(opts_get_uint(obj, "hex", &u, &err), 0);
    CU_ASSERT_EQUAL(u, 16);
    CU_ASSERT_EQUAL(opts_get_uint(obj, "missing", &u, &err), -ENOENT);
    u = 7;
    const char *bad_uint[] = { "j", "neg", "nhex", "r", "t", "k", "e" };
    for (size_t n = 0; n < ARRAY_SIZE(bad_uint); n++) {
        char want[64];
        err_clear(&err);
        CU_ASSERT_EQUAL(opts_get_uint(obj, bad_uint[n], &u, &err), -EINVAL);
        snprintf(want, sizeof(want), "Parameter '%s' expects a number", bad_uint[n]);
        CU_ASSERT_STRING_EQUAL(err.msg, want);
    }
    CU_ASSERT_EQUAL(u, 7);
    json_decref(obj);
}

static void test_get_size(void)
{
    json_t *obj = must_parse("{\"j\":4096,\"neg\":-1,\"r\":1.5,\"f\":{\"size\":\"1x\"}}");
    json_t *kv = must_parse("size=1.5G,cluster_size=64k,plain=512,hex=0x200,bad=64kb");
    struct err err = { 0 };
    uint64_t out = 7;

    CU_ASSERT_EQUAL(opts_get_size(obj, "j", &out, &err), 0);
    CU_ASSERT_EQUAL(out, 4096);
    CU_ASSERT_EQUAL(opts_get_size(kv, "size", &out, &err), 0);
    CU_ASSERT_EQUAL(out, 1536 * MiB);
    CU_ASSERT_EQUAL(opts_get_size(kv, "cluster_size", &out, &err), 0);
    CU_ASSERT_EQUAL(out, 64 * KiB);
    CU_ASSERT_EQUAL(opts_get_size(kv, "plain", &out, &err), 0);
    CU_ASSERT_EQUAL(out, 512);
    CU_ASSERT_EQUAL(opts_get_size(kv, "hex", &out, &err), 0);
    CU_ASSERT_EQUAL(out, 512);
    CU_ASSERT_EQUAL(opts_get_size(kv, "missing", &out, &err), -ENOENT);
    CU_ASSERT_FALSE(err.set);
    out = 7;
    CU_ASSERT_EQUAL(opts_get_size(kv, "bad", &out, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'bad' expects a size");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_get_size(obj, "neg", &out, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'neg' expects a size");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_get_size(obj, "r", &out, &err), -EINVAL);
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_get_size(obj, "f.size", &out, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Parameter 'f.size' expects a size");
    CU_ASSERT_EQUAL(out, 7);
    json_decref(obj);
    json_decref(kv);
}

static void test_check_keys(void)
{
    static const char *const allowed[] = { "driver", "file", "size", NULL };
    static const char *const none[] = { NULL };
    json_t *ok = must_parse("driver=qcow2,file.zzz=1,size=1");
    json_t *bad = must_parse("driver=qcow2,sise=1,other=2");
    struct err err = { 0 };

    CU_ASSERT_EQUAL(opts_check_keys(ok, allowed, "qcow2", &err), 0);
    CU_ASSERT_FALSE(err.set);
    CU_ASSERT_EQUAL(opts_check_keys(bad, allowed, "qcow2", &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "qcow2: Invalid parameter 'sise'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_check_keys(bad, allowed, NULL, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Invalid parameter 'sise'");
    err_clear(&err);
    CU_ASSERT_EQUAL(opts_check_keys(ok, none, NULL, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "Invalid parameter 'driver'");
    json_decref(ok);
    ok = json_object();
    CU_ASSERT_EQUAL(opts_check_keys(ok, none, NULL, NULL), 0);
    json_decref(ok);
    json_decref(bad);
}

static bool to_string_is(const char *str, const char *want)
{
    json_t *obj = opts_parse(str, NULL, NULL);
    char *got = obj ? opts_to_string(obj) : NULL;
    bool ok = got && !strcmp(got, want);

    if (!ok) {
        printf("# to_string('%s') = '%s', want '%s'\n", str, got ? got : "NULL", want);
    }
    free(got);
    json_decref(obj);
    return ok;
}

static void test_to_string(void)
{
    CU_ASSERT(to_string_is("", ""));
    CU_ASSERT(to_string_is("b=2,a=x,,y,file.filename=f,file.aio=native",
                           "a=x,,y,b=2,file.aio=native,file.filename=f"));
    CU_ASSERT(to_string_is("a=,,,b=", "a=,,,b="));
    CU_ASSERT(to_string_is("s.1.h=b,s.0.h=a", "s.0.h=a,s.1.h=b"));
    CU_ASSERT(to_string_is("{\"i\":5,\"m\":-7,\"t\":true,\"f\":false,\"n\":null,\"r\":1.5,"
                           "\"s\":\"a,b\",\"l\":[\"x\",\"y\"],\"e\":{},\"ea\":[]}",
                           "f=off,i=5,l.0=x,l.1=y,m=-7,n=null,r=1.5,s=a,,b,t=on"));
}

/* parse(to_string(parse(s))) == parse(s). */
static bool round_trips(const char *str)
{
    json_t *a = opts_parse(str, NULL, NULL);
    char *text = a ? opts_to_string(a) : NULL;
    json_t *b = text ? opts_parse(text, NULL, NULL) : NULL;
    bool ok = a && b && json_equal(a, b);

    if (!ok) {
        printf("# '%s' did not round-trip (via '%s')\n", str, text ? text : "NULL");
    }
    free(text);
    json_decref(a);
    json_decref(b);
    return ok;
}

static void test_round_trip(void)
{
    CU_ASSERT(round_trips("driver=qcow2,file.driver=file,file.filename=/a,,b,,,c=,,"));
    CU_ASSERT(round_trips("s.0.host=a,s.0.port=1,s.1.host=b,x.0.0=1,x.0.1=,,"));
    CU_ASSERT(round_trips("a=,b===,c=,,,,,d=1,,"));
}

static void test_flatten_crumple(void)
{
    const char *nested_text =
        "{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"x\","
        "\"opts\":{\"a\":1}},\"s\":[{\"host\":\"a\"},{\"host\":\"b\",\"port\":2}],"
        "\"e\":{},\"ea\":[],\"n\":null}";
    const char *flat_text =
        "{\"driver\":\"qcow2\",\"file.driver\":\"file\",\"file.filename\":\"x\","
        "\"file.opts.a\":1,\"s.0.host\":\"a\",\"s.1.host\":\"b\",\"s.1.port\":2,"
        "\"e\":{},\"ea\":[],\"n\":null}";
    json_t *nested = json_loads(nested_text, 0, NULL);
    json_t *want_flat = json_loads(flat_text, 0, NULL);
    json_t *copy = json_deep_copy(nested);
    struct err err = { 0 };

    json_t *flat = opts_flatten(nested);
    CU_ASSERT_TRUE(json_equal(flat, want_flat));
    json_t *back = opts_crumple(flat, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_TRUE(json_equal(back, nested));
    /* Neither call changes its input. */
    CU_ASSERT_TRUE(json_equal(nested, copy));
    CU_ASSERT_TRUE(json_equal(flat, want_flat));
    /* Stores into the result never reach the input's empty containers. */
    CU_ASSERT_EQUAL(opts_set_dotted(back, "e.x", json_integer(1), &err), 0);
    CU_ASSERT_EQUAL(json_object_size(json_object_get(nested, "e")), 0);
    CU_ASSERT_EQUAL(json_object_size(json_object_get(flat, "e")), 0);
    json_decref(back);
    json_decref(flat);

    /* Crumple takes half-nested input too. */
    json_t *half = json_loads("{\"a\":{\"b.c\":1},\"a.d\":2,\"l\":{\"0\":\"x\"},\"l.1\":\"y\"}",
                              0, NULL);
    json_t *want = json_loads("{\"a\":{\"b\":{\"c\":1},\"d\":2},\"l\":[\"x\",\"y\"]}", 0, NULL);
    back = opts_crumple(half, &err);
    CU_ASSERT_TRUE(back && json_equal(back, want));
    json_decref(back);
    json_decref(half);
    json_decref(want);

    json_decref(nested);
    json_decref(want_flat);
    json_decref(copy);
}

static bool crumple_fails(const char *flat_text, const char *want)
{
    json_t *flat = json_loads(flat_text, 0, NULL);
    struct err err = { 0 };
    json_t *got = opts_crumple(flat, &err);
    bool ok = !got && !strcmp(err.msg, want);

    if (!ok) {
        printf("# crumple '%s': got '%s', want '%s'\n", flat_text, err.msg, want);
    }
    json_decref(got);
    json_decref(flat);
    return ok;
}

static void test_crumple_errors(void)
{
    CU_ASSERT(crumple_fails("{\"a\":1,\"a.b\":2}", "Parameter 'a' is both a value and a prefix of 'a.b'"));
    CU_ASSERT(crumple_fails("{\"a.b\":1,\"a\":2}", "Parameter 'a' is both a value and a prefix of 'a.b'"));
    CU_ASSERT(crumple_fails("{\"a\":{\"b\":1},\"a.b\":2}", "Duplicate parameter 'a.b'"));
    CU_ASSERT(crumple_fails("{\"x.0\":1,\"x.2\":2}", "List parameter 'x' has no index 1"));
    CU_ASSERT(crumple_fails("{\"x.0\":1,\"x.y\":2}", "Parameter 'x' mixes list indexes with names"));
    CU_ASSERT(crumple_fails("{\"a..b\":1}", "Parameter name 'a..b' has an empty component"));
    CU_ASSERT(crumple_fails("{\"\":1}", "Empty parameter name"));
}

/* Sizes: the table was checked against qemu-img 7.2 `create -f raw x SIZE`. */
static void test_parse_size(void)
{
    static const struct {
        const char *text;
        int ret;
        uint64_t want;
    } cases[] = {
        { "0", 0, 0 }, { "1", 0, 1 }, { "512", 0, 512 }, { "4096", 0, 4096 },
        { "4k", 0, 4096 }, { "64K", 0, 65536 }, { "1M", 0, 1 * MiB }, { "1m", 0, 1 * MiB },
        { "1g", 0, 1 * GiB }, { "2T", 0, 2 * TiB }, { "1t", 0, 1 * TiB },
        { "1P", 0, 1ULL << 50 }, { "1p", 0, 1ULL << 50 }, { "1E", 0, 1ULL << 60 },
        { "1e", 0, 1ULL << 60 }, { "7E", 0, 7ULL << 60 },
        { "1b", 0, 1 }, { "1B", 0, 1 }, { "512b", 0, 512 }, { "0b", 0, 0 },
        { "1.5G", 0, 1610612736 }, { "1.25G", 0, 1342177280 }, { "1.5g", 0, 1610612736 },
        { "1.5k", 0, 1536 }, { "1.5M", 0, 1572864 }, { "0.5k", 0, 512 }, { "0.5M", 0, 524288 },
        { "1.0k", 0, 1024 }, { "1.k", 0, 1024 }, { "1.0", 0, 1 }, { "1.", 0, 1 },
        { "1.0b", 0, 1 }, { "0.0", 0, 0 },
        { "1.1k", 0, 1126 }, { "1.2k", 0, 1229 }, { "1.7k", 0, 1741 }, { "1.333k", 0, 1365 },
        { "0.1k", 0, 102 }, { "100.1k", 0, 102502 }, { "1.5E", 0, 1729382256910270464 },
        { "1.00000000000000000001k", 0, 1024 },
        /*
         * Exact where qemu-img goes through a double: it says ...136 and
         * ...592 (26 and 1 bytes off 7.9 * 2^60 and 7.99999999999 * 2^60).
         */
        { "7.9E", 0, 9108079886394091110ULL }, { "7.99999999999E", 0, 9223372036843246593ULL },
        /* Exact halves round up; just under half rounds down. */
        { "0.00048828125k", 0, 1 }, { "0.00146484375k", 0, 2 }, { "0.0009765625k", 0, 1 },
        { "0.0001k", 0, 0 }, { "0.000488281249999999999999k", 0, 0 },
        { "1.9999999999999999999k", 0, 2048 },
        { "7.999999999999999999E", 0, INT64_MAX },
        { " 12", 0, 12 }, { "\t1k", 0, 1024 }, { "+1", 0, 1 }, { " +1", 0, 1 }, { "010", 0, 10 },
        { "08", 0, 8 },
        { "0x10", 0, 16 }, { "0X10", 0, 16 }, { " 0x10", 0, 16 }, { "+0x10", 0, 16 },
        { "0xab", 0, 171 }, { "0xAB", 0, 171 }, { "0x10b", 0, 267 },
        { "9223372036854775807", 0, INT64_MAX }, { "0x7fffffffffffffff", 0, INT64_MAX },
        { "9223372036854775808", -ERANGE, 0 }, { "99999999999999999999", -ERANGE, 0 },
        { "99999999999999999999k", -ERANGE, 0 },   /* 7.2: EINVAL; newer: ERANGE */ { "8E", -ERANGE, 0 }, { "8.0E", -ERANGE, 0 },
        { "16E", -ERANGE, 0 }, { "0xffffffffffffffff", -ERANGE, 0 }, { "0x8000000000000000", -ERANGE, 0 },
        { "0x1ffffffffffffffff", -ERANGE, 0 }, { "7.9999999999999999999E", -ERANGE, 0 },
        { "", -EINVAL, 0 }, { "-1", -EINVAL, 0 }, { "-0", -EINVAL, 0 }, { "- 1", -EINVAL, 0 },
        { "-0x10", -EINVAL, 0 }, { "++1", -EINVAL, 0 }, { "+-1", -EINVAL, 0 }, { "+ 1", -EINVAL, 0 },
        { "1e3", -EINVAL, 0 }, { "1.5", -EINVAL, 0 }, { "0.5", -EINVAL, 0 }, { "1.5b", -EINVAL, 0 },
        { "0.5b", -EINVAL, 0 }, { ".5k", -EINVAL, 0 }, { "12 ", -EINVAL, 0 }, { "1k ", -EINVAL, 0 },
        { "1 k", -EINVAL, 0 }, { "10x", -EINVAL, 0 }, { "1,5k", -EINVAL, 0 }, { "1kB", -EINVAL, 0 },
        { "1KiB", -EINVAL, 0 }, { "1Kb", -EINVAL, 0 }, { "1.5kb", -EINVAL, 0 }, { "1.5KB", -EINVAL, 0 },
        { "1.5 k", -EINVAL, 0 }, { "1..5k", -EINVAL, 0 }, { "1.5.k", -EINVAL, 0 }, { "1.-5k", -EINVAL, 0 },
        { "1.+5k", -EINVAL, 0 }, { "1. 5k", -EINVAL, 0 }, { "1.5e1k", -EINVAL, 0 }, { "1.0x1k", -EINVAL, 0 },
        { "1k1", -EINVAL, 0 }, { "0x", -EINVAL, 0 }, { "0x1.5k", -EINVAL, 0 }, { "0x10.0", -EINVAL, 0 },
        { "00x10", -EINVAL, 0 }, { "0x0x1", -EINVAL, 0 }, { "0xk", -EINVAL, 0 }, { "0xAg", -EINVAL, 0 },
        /* qemu-img 7.2 took a suffix on hex with a deprecation warning; QEMU 8 refuses it. */
        { "0x10k", -EINVAL, 0 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint64_t out = 12345;
        int ret = parse_size(cases[i].text, &out);
        if (ret != cases[i].ret || (ret == 0 && out != cases[i].want) ||
            (ret != 0 && out != 12345)) {
            printf("# parse_size('%s') = %d, %" PRIu64 "\n", cases[i].text, ret, out);
            CU_FAIL("parse_size case");
        }
    }
}

static void test_parse_int(void)
{
    static const struct {
        const char *text;
        int ret;
        int64_t want;
    } ints[] = {
        { "0", 0, 0 }, { "-0", 0, 0 }, { "42", 0, 42 }, { "-42", 0, -42 }, { "007", 0, 7 },
        { "0x10", 0, 16 }, { "0XfF", 0, 255 }, { "-0x10", 0, -16 },
        { "9223372036854775807", 0, INT64_MAX }, { "-9223372036854775808", 0, INT64_MIN },
        { "0x7fffffffffffffff", 0, INT64_MAX }, { "-0x8000000000000000", 0, INT64_MIN },
        { "9223372036854775808", -ERANGE, 0 }, { "-9223372036854775809", -ERANGE, 0 },
        { "99999999999999999999999", -ERANGE, 0 }, { "0x10000000000000000", -ERANGE, 0 },
        { "", -EINVAL, 0 }, { "-", -EINVAL, 0 }, { "+1", -EINVAL, 0 }, { " 1", -EINVAL, 0 },
        { "1 ", -EINVAL, 0 }, { "1k", -EINVAL, 0 }, { "--1", -EINVAL, 0 }, { "0x", -EINVAL, 0 },
        { "0xg", -EINVAL, 0 }, { "1.0", -EINVAL, 0 }, { "1e3", -EINVAL, 0 }, { "0b1", -EINVAL, 0 },
        { "99999999999999999999x", -EINVAL, 0 },
    };
    static const struct {
        const char *text;
        int ret;
        uint64_t want;
    } uints[] = {
        { "0", 0, 0 }, { "42", 0, 42 }, { "0x10", 0, 16 },
        { "18446744073709551615", 0, UINT64_MAX }, { "0xffffffffffffffff", 0, UINT64_MAX },
        { "18446744073709551616", -ERANGE, 0 }, { "0x10000000000000000", -ERANGE, 0 },
        { "-1", -EINVAL, 0 }, { "-0", -EINVAL, 0 }, { "", -EINVAL, 0 }, { "+1", -EINVAL, 0 },
        { " 1", -EINVAL, 0 }, { "1G", -EINVAL, 0 }, { "0x", -EINVAL, 0 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(ints); i++) {
        int64_t out = 12345;
        int ret = parse_int64(ints[i].text, &out);
        if (ret != ints[i].ret || out != (ret == 0 ? ints[i].want : 12345)) {
            printf("# parse_int64('%s') = %d, %" PRId64 "\n", ints[i].text, ret, out);
            CU_FAIL("parse_int64 case");
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(uints); i++) {
        uint64_t out = 12345;
        int ret = parse_uint64(uints[i].text, &out);
        if (ret != uints[i].ret || out != (ret == 0 ? uints[i].want : 12345)) {
            printf("# parse_uint64('%s') = %d, %" PRIu64 "\n", uints[i].text, ret, out);
            CU_FAIL("parse_uint64 case");
        }
    }
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*, seeded from the harness so a failure can be repeated. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/*
 * Random sizes with up to 18 fraction digits against a second, independent
 * computation in 128-bit integers: (whole * 10^d + frac) * 2^s / 10^d,
 * rounded half up.
 */
static void test_parse_size_random(void)
{
    static const char suffixes[] = "bkmgtpeKMGTPE";
    int rounds = test_sanitized() ? 2000 : 20000;

    rng_state = test_seed() * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < rounds; i++) {
        uint64_t whole = rnd() >> (rnd() % 64);
        unsigned digits = (unsigned)(rnd() % 19);
        uint64_t frac = 0, pow10 = 1;
        char text[64];
        int len;

        for (unsigned d = 0; d < digits; d++) {
            frac = frac * 10 + rnd() % 10;
            pow10 *= 10;
        }
        char suffix = suffixes[rnd() % (sizeof(suffixes) - 1)];
        unsigned shift = suffix == 'b' ? 0 : 10 * (unsigned)(strchr("kmgtpe", tolower(suffix)) - "kmgtpe" + 1);
        len = snprintf(text, sizeof(text), "%" PRIu64, whole);
        if (digits) {
            len += snprintf(text + len, sizeof(text) - (size_t)len, ".%0*" PRIu64, (int)digits, frac);
        }
        snprintf(text + len, sizeof(text) - (size_t)len, "%c", suffix);

        unsigned __int128 scaled = ((unsigned __int128)whole * pow10 + frac) << shift;
        unsigned __int128 want = (scaled + pow10 / 2) / pow10;
        bool whole_fits = whole <= (uint64_t)INT64_MAX >> shift;
        int want_ret = shift == 0 && frac ? -EINVAL
                       : (!whole_fits || want > INT64_MAX) ? -ERANGE : 0;
        uint64_t out = 0;
        int ret = parse_size(text, &out);

        if (ret != want_ret || (ret == 0 && out != (uint64_t)want)) {
            printf("# parse_size('%s') = %d, %" PRIu64 "; want %d, %" PRIu64 "\n", text, ret,
                   out, want_ret, (uint64_t)want);
            CU_FAIL_FATAL("parse_size random case");
        }
    }
}

/* Random objects of strings survive to_string and parse, commas and all. */
static void test_round_trip_random(void)
{
    static const char alphabet[] = "a,=.b, c,,";
    static const char *const keys[] = { "a", "b", "file.filename", "file.x-y", "s.0.h", "s.1.h", "z_9" };
    int rounds = test_sanitized() ? 200 : 2000;

    rng_state = test_seed() * 0x9e3779b97f4a7c15ULL + 2;
    for (int i = 0; i < rounds; i++) {
        json_t *obj = json_object();
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
            char value[16];
            size_t n = rnd() % sizeof(value);
            for (size_t c = 0; c < n; c++) {
                value[c] = alphabet[rnd() % (sizeof(alphabet) - 1)];
            }
            value[n] = '\0';
            if (rnd() % 3 == 0 || (!strcmp(keys[k], "s.1.h") && !opts_get(obj, "s.0"))) {
                continue;   /* s.1 only after s.0: a list has no gaps */
            }
            if (!strcmp(keys[k], "s.0.h")) {
                opts_set_dotted(obj, "s", json_array(), NULL);   /* then s.0 appends */
            }
            CU_ASSERT_EQUAL_FATAL(opts_set_dotted(obj, keys[k], json_string(value), NULL), 0);
        }
        char *text = opts_to_string(obj);
        json_t *back = opts_parse(text, NULL, NULL);
        json_t *flat = opts_flatten(obj);
        json_t *crumpled = opts_crumple(flat, NULL);
        bool ok = back && json_equal(back, obj) && crumpled && json_equal(crumpled, obj);
        if (!ok) {
            printf("# '%s' did not round-trip\n", text);
        }
        free(text);
        json_decref(back);
        json_decref(flat);
        json_decref(crumpled);
        json_decref(obj);
        CU_ASSERT_FATAL(ok);
    }
}

/* Human sizes: the table was checked against qemu-img 7.2 `info` of qcow2 images. */
static void test_format_size(void)
{
    static const struct {
        uint64_t bytes;
        const char *want;
    } cases[] = {
        { 0, "0 B" }, { 1, "1 B" }, { 512, "512 B" }, { 999, "999 B" }, { 1000, "0.977 KiB" },
        { 1023, "0.999 KiB" }, { 1024, "1 KiB" }, { 1536, "1.5 KiB" }, { 10240, "10 KiB" },
        { 102400, "100 KiB" }, { 1023488, "1e+03 KiB" }, { 1024000, "0.977 MiB" },
        { 1048064, "1 MiB" }, { 1048576, "1 MiB" }, { 1572864, "1.5 MiB" },
        { 123457024, "118 MiB" }, { 1048576000, "0.977 GiB" }, { 1072693248, "0.999 GiB" },
        { 1073741824, "1 GiB" }, { 1342177280, "1.25 GiB" }, { 1610612736, "1.5 GiB" },
        { 1127429120, "1.05 GiB" }, { 1079110656, "1.01 GiB" }, { 2142115328, "2 GiB" },
        { 2141041664, "1.99 GiB" }, { 10726681088ULL, "9.99 GiB" },
        { 107320495616ULL, "100 GiB" }, { 107309757952ULL, "99.9 GiB" },
        { 1073204953088ULL, "1e+03 GiB" }, { 1073097579008ULL, "999 GiB" },
        { 1099404253696ULL, "1 TiB" }, { 2199023255552ULL, "2 TiB" },
        { 1ULL << 50, "1 PiB" }, { 1ULL << 60, "1 EiB" }, { UINT64_MAX, "16 EiB" },
    };
    char buf[FORMAT_SIZE_LEN];

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        format_size(cases[i].bytes, buf, sizeof(buf));
        if (strcmp(buf, cases[i].want)) {
            printf("# format_size(%" PRIu64 ") = '%s', want '%s'\n", cases[i].bytes, buf,
                   cases[i].want);
            CU_FAIL("format_size case");
        }
    }
    /* A short buffer is cut, and still terminated. */
    char small[5];
    format_size(1536, small, sizeof(small));
    CU_ASSERT_STRING_EQUAL(small, "1.5 ");
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("opts", NULL, NULL);
    CU_add_test(s, "parse_basic", test_parse_basic);
    CU_add_test(s, "parse_escapes", test_parse_escapes);
    CU_add_test(s, "parse_nesting", test_parse_nesting);
    CU_add_test(s, "parse_implied", test_parse_implied);
    CU_add_test(s, "parse_errors", test_parse_errors);
    CU_add_test(s, "parse_json", test_parse_json);
    CU_add_test(s, "set_dotted", test_set_dotted);
    CU_add_test(s, "set_dotted_lists", test_set_dotted_lists);
    CU_add_test(s, "get_del", test_get_del);
    CU_add_test(s, "get_str", test_get_str);
    CU_add_test(s, "get_bool", test_get_bool);
    CU_add_test(s, "get_int_uint", test_get_int_uint);
    CU_add_test(s, "get_size", test_get_size);
    CU_add_test(s, "check_keys", test_check_keys);
    CU_add_test(s, "to_string", test_to_string);
    CU_add_test(s, "round_trip", test_round_trip);
    CU_add_test(s, "flatten_crumple", test_flatten_crumple);
    CU_add_test(s, "crumple_errors", test_crumple_errors);
    CU_add_test(s, "parse_size", test_parse_size);
    CU_add_test(s, "parse_size_random", test_parse_size_random);
    CU_add_test(s, "round_trip_random", test_round_trip_random);
    CU_add_test(s, "parse_int", test_parse_int);
    CU_add_test(s, "format_size", test_format_size);
}
