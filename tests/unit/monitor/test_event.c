/*
 * Events: the object and its wire text (timestamp split into seconds and
 * microseconds, "data" left out when empty, CRLF), delivery on the main
 * thread at once, events from other threads queued and delivered in order
 * (and before the next main-thread event), and the shapes of the job and
 * I/O error events.
 */
#include "tests/unit/harness.h"

#include <pthread.h>
#include <stdio.h>

#include "block/backend.h"
#include "monitor/event.h"
#include "monitor/server.h"
#include "util/aio.h"

static json_t *seen;

static void sink(json_t *event, void *opaque)
{
    json_array_append(seen, event);
}

static int setup(void)
{
    mon_event_init();
    mon_event_set_sink(sink, NULL);
    return 0;
}

static int teardown(void)
{
    mon_event_cleanup();
    return 0;
}

static void reset_seen(void)
{
    json_decref(seen);
    seen = json_array();
}

static const char *seen_name(size_t i)
{
    return json_string_value(json_object_get(json_array_get(seen, i), "event"));
}

/* Whether v serialises to exactly the compact, sorted JSON text want. */
static bool json_is(json_t *v, const char *want)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    bool ok = t && !strcmp(t, want);
    if (!ok) {
        printf("# got %s, want %s\n", t ? t : "NULL", want);
    }
    free(t);
    return ok;
}

static void test_build_and_text(void)
{
    json_t *ev = mon_event_build("STOP", NULL, 1258551470802384123LL);
    CU_ASSERT(json_is(ev, "{\"event\":\"STOP\",\"timestamp\":{\"microseconds\":802384,"
                          "\"seconds\":1258551470}}"));
    size_t len;
    char *text = mon_message_text(ev, false, &len);
    CU_ASSERT_STRING_EQUAL(text, "{\"timestamp\": {\"seconds\": 1258551470, \"microseconds\": "
                                 "802384}, \"event\": \"STOP\"}\r\n");
    CU_ASSERT_EQUAL(len, strlen(text));
    free(text);
    json_decref(ev);

    ev = mon_event_build("SHUTDOWN", json_pack("{s:b, s:s}", "guest", 0, "reason", "host-qmp-quit"),
                         5000);
    text = mon_message_text(ev, false, &len);
    CU_ASSERT_STRING_EQUAL(text, "{\"timestamp\": {\"seconds\": 0, \"microseconds\": 5}, "
                                 "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, "
                                 "\"reason\": \"host-qmp-quit\"}}\r\n");
    free(text);
    /* Pretty: indented, still one CRLF at the end; output is ASCII. */
    json_object_set_new(json_object_get(ev, "data"), "note", json_string("caf\xc3\xa9"));
    text = mon_message_text(ev, true, &len);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n    \"event\": \"SHUTDOWN\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "caf\\u00E9"));
    CU_ASSERT_EQUAL(strcmp(text + len - 3, "}\r\n"), 0);
    free(text);
    json_decref(ev);

    /* No wall clock: both -1, as the spec says. */
    ev = mon_event_build("X", NULL, -1);
    CU_ASSERT(json_is(json_object_get(ev, "timestamp"), "{\"microseconds\":-1,\"seconds\":-1}"));
    json_decref(ev);
}

static void test_main_thread_now(void)
{
    reset_seen();
    int64_t before = clock_realtime_ns() / 1000;
    mon_event_emit("RESUME", NULL);
    int64_t after = clock_realtime_ns() / 1000;
    CU_ASSERT_EQUAL(json_array_size(seen), 1);
    json_t *ts = json_object_get(json_array_get(seen, 0), "timestamp");
    int64_t us = json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
                 json_integer_value(json_object_get(ts, "microseconds"));
    CU_ASSERT(us >= before && us <= after);
    CU_ASSERT_PTR_NULL(json_object_get(json_array_get(seen, 0), "data"));
}

static void *emit_from_thread(void *opaque)
{
    for (int i = 0; i < 5; i++) {
        mon_event_emit("BLOCK_IO_ERROR", json_pack("{s:i}", "n", i));
    }
    return NULL;
}

static void test_other_thread_in_order(void)
{
    pthread_t t;
    reset_seen();
    pthread_create(&t, NULL, emit_from_thread, NULL);
    pthread_join(t, NULL);
    /* Queued, not delivered behind the main loop's back. */
    CU_ASSERT_EQUAL(json_array_size(seen), 0);
    /* A main-thread event delivers the queue first: the error before the STOP. */
    mon_event_emit("STOP", NULL);
    CU_ASSERT_EQUAL_FATAL(json_array_size(seen), 6);
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_STRING_EQUAL(seen_name((size_t)i), "BLOCK_IO_ERROR");
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(
                            json_object_get(json_array_get(seen, (size_t)i), "data"), "n")), i);
    }
    CU_ASSERT_STRING_EQUAL(seen_name(5), "STOP");

    /* Without a main-thread event the loop delivers them. */
    reset_seen();
    pthread_create(&t, NULL, emit_from_thread, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < 100 && json_array_size(seen) < 5; i++) {
        aio_poll(aio_main_context(), false);
    }
    CU_ASSERT_EQUAL(json_array_size(seen), 5);
}

static void test_job_events(void)
{
    reset_seen();
    struct mon_job_progress p = { "mirror", "job0", 1048576, 4096, 0 };
    mon_event_job_status_change("job0", "running");
    mon_event_block_job_ready(&p);
    mon_event_block_job_completed(&p, NULL);
    mon_event_block_job_completed(&p, "Input/output error");
    mon_event_block_job_cancelled(&p);
    mon_event_block_job_pending("mirror", "job0");
    mon_event_block_job_error("job0", true, "report");
    CU_ASSERT_EQUAL_FATAL(json_array_size(seen), 7);
    const char *want[] = {
        "{\"id\":\"job0\",\"status\":\"running\"}",
        "{\"device\":\"job0\",\"len\":1048576,\"offset\":4096,\"speed\":0,\"type\":\"mirror\"}",
        "{\"device\":\"job0\",\"len\":1048576,\"offset\":4096,\"speed\":0,\"type\":\"mirror\"}",
        "{\"device\":\"job0\",\"error\":\"Input/output error\",\"len\":1048576,\"offset\":4096,"
        "\"speed\":0,\"type\":\"mirror\"}",
        "{\"device\":\"job0\",\"len\":1048576,\"offset\":4096,\"speed\":0,\"type\":\"mirror\"}",
        "{\"id\":\"job0\",\"type\":\"mirror\"}",
        "{\"action\":\"report\",\"device\":\"job0\",\"operation\":\"read\"}",
    };
    const char *names[] = { "JOB_STATUS_CHANGE", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED",
                            "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_PENDING",
                            "BLOCK_JOB_ERROR" };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        CU_ASSERT_STRING_EQUAL(seen_name(i), names[i]);
        CU_ASSERT(json_is(json_object_get(json_array_get(seen, i), "data"), want[i]));
    }
}

static void test_block_io_error(void)
{
    struct err err = { 0 };
    reset_seen();
    json_t *o = json_pack("{s:s, s:s}", "driver", "null-co", "node-name", "null0");
    struct block_backend *blk = blk_new_open("disk0", NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    mon_event_block_io_error(blk, "stop", false, -ENOSPC);
    struct block_backend *anon = blk_new("");
    mon_event_block_io_error(anon, "report", true, EIO);
    CU_ASSERT_EQUAL_FATAL(json_array_size(seen), 2);
    CU_ASSERT(json_is(json_object_get(json_array_get(seen, 0), "data"),
                      "{\"action\":\"stop\",\"device\":\"disk0\",\"node-name\":\"null0\","
                      "\"nospace\":true,\"operation\":\"write\",\"reason\":\"No space left on "
                      "device\"}"));
    CU_ASSERT(json_is(json_object_get(json_array_get(seen, 1), "data"),
                      "{\"action\":\"report\",\"device\":\"\",\"nospace\":false,"
                      "\"operation\":\"read\",\"reason\":\"Input/output error\"}"));
    blk_unref(anon);
    blk_unref(blk);
    json_decref(seen);
    seen = NULL;
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("monitor_event", setup, teardown);
    CU_add_test(s, "build_and_text", test_build_and_text);
    CU_add_test(s, "main_thread_now", test_main_thread_now);
    CU_add_test(s, "other_thread_in_order", test_other_thread_in_order);
    CU_add_test(s, "job_events", test_job_events);
    CU_add_test(s, "block_io_error", test_block_io_error);
}
