/*
 * QMP input framing: values split across any number of reads, several in
 * one read, top-level scalars, strings that hold brackets and escapes,
 * QEMU's single quotes; errors (control characters, 0xff, stray brackets,
 * bad JSON, nesting) are reported once and the stream goes on; a value
 * over the size limit stops the stream.
 */
#include "tests/unit/harness.h"

#include <stdio.h>

#include "monitor/json-stream.h"

/* What the stream handed out: values as compact JSON text, errors as "!error". */
struct got {
    char items[32][256];
    int n;
};

static void collect(void *opaque, json_t *value, const char *error)
{
    struct got *g = opaque;
    if (g->n == 32) {
        return;
    }
    if (value) {
        char *t = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        snprintf(g->items[g->n++], 256, "%s", t);
        free(t);
        json_decref(value);
    } else {
        snprintf(g->items[g->n++], 256, "!%s", error);
    }
}

/* Feed text in pieces of step bytes (0: all at once). */
static int feed(struct mon_json_stream *s, struct got *g, const char *text, size_t len,
                size_t step)
{
    if (!step) {
        return mon_json_stream_feed(s, text, len, collect, g);
    }
    for (size_t i = 0; i < len; i += step) {
        int ret = mon_json_stream_feed(s, text + i, MIN(step, len - i), collect, g);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Whether text, fed in every piece size from 1 up and all at once, yields want[]. */
static bool yields(const char *text, const char *const *want, int nwant)
{
    size_t len = strlen(text);
    for (size_t step = 0; step <= MIN(len, 9); step++) {
        struct mon_json_stream s;
        struct got g = { .n = 0 };
        mon_json_stream_init(&s, 4096);
        int ret = feed(&s, &g, text, len, step);
        mon_json_stream_destroy(&s);
        bool ok = ret == 0 && g.n == nwant;
        for (int i = 0; ok && i < nwant; i++) {
            ok = !strncmp(g.items[i], want[i], strlen(want[i]));
        }
        if (!ok) {
            printf("# step %zu of '%s': got %d items:", step, text, g.n);
            for (int i = 0; i < g.n; i++) {
                printf(" [%s]", g.items[i]);
            }
            printf("\n");
            return false;
        }
    }
    return true;
}

#define YIELDS(text, ...)                                                          \
    yields(text, (const char *const[]){ __VA_ARGS__ },                           \
           (int)ARRAY_SIZE(((const char *const[]){ __VA_ARGS__ })))

static void test_whole_and_split(void)
{
    CU_ASSERT(YIELDS("{\"execute\": \"query-version\"}\n", "{\"execute\":\"query-version\"}"));
    CU_ASSERT(YIELDS("  {\"a\":[1,{\"b\":[]}],\"c\":{}}  ", "{\"a\":[1,{\"b\":[]}],\"c\":{}}"));
    /* No newline needed: a value ends with its closing bracket. */
    CU_ASSERT(YIELDS("{\"a\":1}", "{\"a\":1}"));
    CU_ASSERT(YIELDS("{\"a\":\n1\r\n}\n", "{\"a\":1}"));
}

static void test_concatenated(void)
{
    CU_ASSERT(YIELDS("{\"a\":1}{\"b\":2}\n{\"c\":3} [4]", "{\"a\":1}", "{\"b\":2}", "{\"c\":3}",
                     "[4]"));
    CU_ASSERT(YIELDS("{}{}{}", "{}", "{}", "{}"));
}

static void test_scalars(void)
{
    CU_ASSERT(YIELDS("\"str\"", "\"str\""));
    CU_ASSERT(YIELDS("123 true\nnull{}", "123", "true", "null", "{}"));
    CU_ASSERT(YIELDS("-1.5e3,", "-1500", "!JSON parse error"));
    /* A number without anything after it is not known to be complete yet. */
    CU_ASSERT(YIELDS("42"));
    CU_ASSERT(YIELDS("nope ", "!JSON parse error"));
}

static void test_strings(void)
{
    CU_ASSERT(YIELDS("{\"a\":\"}{][\"}", "{\"a\":\"}{][\"}"));
    CU_ASSERT(YIELDS("{\"a\":\"q\\\"}\\\\\"}", "{\"a\":\"q\\\"}\\\\\"}"));
    CU_ASSERT(YIELDS("{\"u\":\"\\u00e9\"}", "{\"u\":\"é\"}"));
    /* QEMU's single quotes, with \' and a bare double quote inside. */
    CU_ASSERT(YIELDS("{'execute':'stop'}", "{\"execute\":\"stop\"}"));
    CU_ASSERT(YIELDS("{'a':'it\\'s \"x\"'}", "{\"a\":\"it's \\\"x\\\"\"}"));
    CU_ASSERT(YIELDS("'top'", "\"top\""));
}

static void test_errors_recover(void)
{
    /* A raw newline in a string: QEMU's "{\"foo\n" case; the next command works. */
    CU_ASSERT(YIELDS("{\"foo\n{\"execute\":\"x\"}", "!JSON parse error, invalid character 0x0a",
                     "{\"execute\":\"x\"}"));
    /* A control character resets a half-sent value (QMP's reset). */
    CU_ASSERT(YIELDS("{\"execute\": \x01{\"a\":1}", "!JSON parse error, invalid character 0x01",
                     "{\"a\":1}"));
    CU_ASSERT(YIELDS("{\"a\" \xff{\"a\":1}", "!JSON parse error, invalid character 0xff",
                     "{\"a\":1}"));
    CU_ASSERT(YIELDS("]}{\"a\":1}", "!JSON parse error, stray ']'",
                     "!JSON parse error, stray '}'", "{\"a\":1}"));
    CU_ASSERT(YIELDS("{\"a\":}\n{\"b\":1}", "!JSON parse error", "{\"b\":1}"));
    CU_ASSERT(YIELDS("{\"a\":[}]\n", "!JSON parse error"));
    CU_ASSERT(YIELDS("{\"a\":1,\"a\":2}", "!JSON parse error"));
    CU_ASSERT(YIELDS("{\"a\":\"\xc3\x28\"}", "!JSON parse error"));
}

static void test_depth(void)
{
    struct mon_json_stream s;
    struct got g = { .n = 0 };
    char deep[MON_JSON_MAX_DEPTH + 2];
    memset(deep, '[', sizeof(deep));
    mon_json_stream_init(&s, 1 << 20);
    CU_ASSERT_EQUAL(mon_json_stream_feed(&s, deep, sizeof(deep), collect, &g), 0);
    CU_ASSERT_EQUAL(g.n, 1);
    CU_ASSERT_STRING_EQUAL(g.items[0], "!JSON parse error, nesting too deep");
    /* The brackets after the error open a new value. */
    CU_ASSERT_TRUE(mon_json_stream_pending(&s));
    mon_json_stream_destroy(&s);
}

static void test_size_limit(void)
{
    struct mon_json_stream s;
    struct got g = { .n = 0 };
    char big[300];
    mon_json_stream_init(&s, 256);
    /* 200 bytes of a string: fine. */
    snprintf(big, sizeof(big), "{\"a\":\"%0200d\"}", 0);
    CU_ASSERT_EQUAL(mon_json_stream_feed(&s, big, strlen(big), collect, &g), 0);
    CU_ASSERT_EQUAL(g.n, 1);
    /* 290 bytes: refused, however it arrives, and the stream is left empty. */
    snprintf(big, sizeof(big), "{\"a\":\"%0280d\"}", 0);
    CU_ASSERT_EQUAL(mon_json_stream_feed(&s, big, 100, collect, &g), 0);
    CU_ASSERT_EQUAL(mon_json_stream_feed(&s, big + 100, strlen(big) - 100, collect, &g),
                    -EMSGSIZE);
    CU_ASSERT_EQUAL(g.n, 1);
    CU_ASSERT_FALSE(mon_json_stream_pending(&s));
    mon_json_stream_destroy(&s);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("monitor_json_stream", NULL, NULL);
    CU_add_test(s, "whole_and_split", test_whole_and_split);
    CU_add_test(s, "concatenated", test_concatenated);
    CU_add_test(s, "scalars", test_scalars);
    CU_add_test(s, "strings", test_strings);
    CU_add_test(s, "errors_recover", test_errors_recover);
    CU_add_test(s, "depth", test_depth);
    CU_add_test(s, "size_limit", test_size_limit);
}
