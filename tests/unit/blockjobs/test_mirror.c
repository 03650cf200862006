/*
 * The mirror job on real files: a full copy that reaches READY while the
 * "guest" (a backend, like a device's) keeps writing, then complete (the
 * guest's backend ends up on the target) or cancel after READY (the target
 * is a consistent copy and the guest stays); write-blocking mode; a target
 * that fails (report and stop policies); and a background mirror that
 * cannot keep up switching itself to write-blocking.
 */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <unistd.h>

#include "block/backend.h"
#include "blockjobs/mirror.h"

#define DISK (4 * MiB)

static int ready_events, completed_events, cancelled_events, error_events;

static void on_ready(struct job *job)
{
    ready_events++;
}

static void on_completed(struct job *job)
{
    completed_events++;
}

static void on_cancelled(struct job *job)
{
    cancelled_events++;
}

static void on_error(struct job *job, bool is_read, const char *action)
{
    error_events++;
}

static const struct job_listener listener = {
    .ready = on_ready, .completed = on_completed, .cancelled = on_cancelled,
    .io_error = on_error,
};

static char *make_file(const char *name)
{
    char *path = test_tmpfile(name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CU_ASSERT_FATAL(fd >= 0 && ftruncate(fd, DISK) == 0);
    close(fd);
    return path;
}

static struct block_node *open_node(const char *name, const char *path, json_t *extra)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}}", "node-name", name, "driver", "raw",
                          "file", "driver", "file", "filename", path);
    if (extra) {
        json_object_update(o, extra);
        json_decref(extra);
    }
    struct block_node *bs = bnode_open(NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    if (!bs) {
        printf("# open %s: %s\n", name, err.msg);
    }
    return bs;
}

struct fixture {
    char *spath, *tpath;
    struct block_node *source, *target;
    struct block_backend *guest;     /* what a device would hold */
};

static void fixture_init(struct fixture *f, json_t *target_extra)
{
    memset(f, 0, sizeof(*f));
    f->spath = make_file("src.raw");
    f->tpath = make_file("tgt.raw");
    f->source = open_node("src", f->spath, NULL);
    f->target = open_node("tgt", f->tpath, target_extra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->source);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->target);
    f->guest = blk_new("guest0");
    CU_ASSERT_EQUAL(blk_insert_node(f->guest, f->source, NULL), 0);
    /* Data in the first half; the second half stays zero. */
    uint8_t *buf = xmalloc(DISK / 2);
    for (size_t i = 0; i < DISK / 2; i++) {
        buf[i] = (uint8_t)(i * 7 + i / 4096);
    }
    CU_ASSERT_EQUAL(blk_pwrite(f->guest, 0, DISK / 2, buf, 0), 0);
    free(buf);
    ready_events = completed_events = cancelled_events = error_events = 0;
}

static void fixture_free(struct fixture *f)
{
    blk_unref(f->guest);
    bnode_unref(f->source);
    bnode_unref(f->target);
    unlink(f->spath);
    unlink(f->tpath);
    free(f->spath);
    free(f->tpath);
}

static bool files_equal(const char *a, const char *b)
{
    uint8_t *x = xmalloc(DISK), *y = xmalloc(DISK);
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    bool same = full_pread(fa, x, DISK, 0) == 0 && full_pread(fb, y, DISK, 0) == 0 &&
                memcmp(x, y, DISK) == 0;
    close(fa);
    close(fb);
    free(x);
    free(y);
    return same;
}

static void poll_until(bool (*cond)(void *), void *opaque)
{
    int64_t deadline = clock_ns() + 10000000000LL;
    while (!cond(opaque) && clock_ns() < deadline) {
        aio_poll(aio_main_context(), true);
    }
}

static bool is_ready(void *opaque)
{
    return job_is_ready(opaque);
}

static bool is_gone(void *opaque)
{
    return job_find(opaque) == NULL;
}

static bool is_write_blocking(void *opaque)
{
    json_t *q = job_query(opaque);
    bool wb = !strcmp(json_string_value(json_object_get(q, "copy-mode")), "write-blocking") &&
              json_is_true(json_object_get(q, "x-copy-mode-auto-switched"));
    json_decref(q);
    return wb;
}

static bool is_paused(void *opaque)
{
    struct job *job = opaque;
    return job->status == JOB_STATUS_PAUSED || job->status == JOB_STATUS_STANDBY;
}

static struct block_job *start(struct fixture *f, enum mirror_copy_mode mode, int64_t speed,
                               enum job_error_policy on_target)
{
    struct err err = { 0 };
    struct mirror_params p = {
        .job_id = "m0", .source = f->source, .target = f->target, .sync = MIRROR_SYNC_FULL,
        .copy_mode = mode, .speed = speed, .on_target_error = on_target,
        .auto_finalize = true, .auto_dismiss = true,
    };
    struct block_job *bj = mirror_start(&p, &err);
    if (!bj) {
        printf("# mirror_start: %s\n", err.msg);
    }
    return bj;
}

static void guest_writes(struct fixture *f, uint8_t pattern, int n)
{
    uint8_t buf[8192];
    memset(buf, pattern, sizeof(buf));
    for (int i = 0; i < n; i++) {
        int64_t off = (int64_t)((i * 40961) % (DISK - 8192)) & ~511LL;
        CU_ASSERT_EQUAL(blk_pwrite(f->guest, off, 8192, buf, 0), 0);
    }
}

static void test_complete_pivots(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    struct block_job *bj = start(&f, MIRROR_COPY_BACKGROUND, 0, JOB_ERROR_REPORT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    /* The guest now goes through the mirror's filter. */
    CU_ASSERT_STRING_EQUAL(bnode_format_name(blk_node(f.guest)), "mirror_top");
    guest_writes(&f, 0xa1, 20);
    poll_until(is_ready, &bj->job);
    CU_ASSERT_TRUE(job_is_ready(&bj->job));
    CU_ASSERT_EQUAL(ready_events, 1);
    guest_writes(&f, 0xb2, 20);        /* after READY: still copied */
    CU_ASSERT_EQUAL(job_complete(&bj->job, &err), 0);
    poll_until(is_gone, "m0");
    CU_ASSERT_PTR_NULL(job_find("m0"));
    CU_ASSERT_EQUAL(completed_events, 1);
    /* Pivoted: the guest's backend is on the target, which holds everything. */
    CU_ASSERT_PTR_EQUAL(blk_node(f.guest), f.target);
    CU_ASSERT_TRUE(files_equal(f.spath, f.tpath));
    fixture_free(&f);
}

static void test_cancel_after_ready_keeps_copy(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    struct block_job *bj = start(&f, MIRROR_COPY_BACKGROUND, 0, JOB_ERROR_REPORT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    poll_until(is_ready, &bj->job);
    guest_writes(&f, 0xc3, 10);
    CU_ASSERT_EQUAL(job_user_cancel(&bj->job, false, &err), 0);
    poll_until(is_gone, "m0");
    /* QEMU's rule: cancelling a ready mirror completes it without the switch. */
    CU_ASSERT_EQUAL(completed_events, 1);
    CU_ASSERT_EQUAL(cancelled_events, 0);
    CU_ASSERT_PTR_EQUAL(blk_node(f.guest), f.source);
    CU_ASSERT_TRUE(files_equal(f.spath, f.tpath));
    fixture_free(&f);
}

static void test_cancel_before_ready(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    /* Slow enough not to be ready before the cancel. */
    struct block_job *bj = start(&f, MIRROR_COPY_BACKGROUND, 256 * 1024, JOB_ERROR_REPORT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    CU_ASSERT_FALSE(job_is_ready(&bj->job));
    CU_ASSERT_EQUAL(job_user_cancel(&bj->job, false, &err), 0);
    poll_until(is_gone, "m0");
    CU_ASSERT_EQUAL(cancelled_events, 1);
    CU_ASSERT_PTR_EQUAL(blk_node(f.guest), f.source);   /* the filter is gone again */
    fixture_free(&f);
}

static void test_write_blocking(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    struct block_job *bj = start(&f, MIRROR_COPY_WRITE_BLOCKING, 0, JOB_ERROR_REPORT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    guest_writes(&f, 0xd4, 50);
    poll_until(is_ready, &bj->job);
    guest_writes(&f, 0xe5, 50);
    CU_ASSERT_EQUAL(job_complete(&bj->job, &err), 0);
    poll_until(is_gone, "m0");
    CU_ASSERT_PTR_EQUAL(blk_node(f.guest), f.target);
    CU_ASSERT_TRUE(files_equal(f.spath, f.tpath));
    fixture_free(&f);
}

static void test_target_error_report(void)
{
    struct fixture f;
    json_t *dbg = json_pack("{s:s, s:{s:s, s:{s:s, s:s}}, s:[{s:s, s:i}]}",
                            "driver", "raw", "file", "driver", "blkdebug", "image", "driver",
                            "file", "filename", "placeholder", "inject-error", "event",
                            "pwritev", "errno", 5);
    fixture_init(&f, NULL);
    /* Reopen the target behind a blkdebug filter that fails every write. */
    bnode_unref(f.target);
    json_t *img = json_object_get(json_object_get(dbg, "file"), "image");
    json_object_set_new(img, "filename", json_string(f.tpath));
    json_t *inj = json_object_get(dbg, "inject-error");
    json_object_set(json_object_get(dbg, "file"), "inject-error", inj);
    json_object_del(dbg, "inject-error");
    json_object_set_new(dbg, "node-name", json_string("tgt"));
    struct err err = { 0 };
    f.target = bnode_open(NULL, dbg, BDRV_O_RDWR, &err);
    json_decref(dbg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.target);

    struct block_job *bj = start(&f, MIRROR_COPY_BACKGROUND, 0, JOB_ERROR_REPORT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    poll_until(is_gone, "m0");
    CU_ASSERT_EQUAL(completed_events, 1);       /* BLOCK_JOB_COMPLETED with an error */
    CU_ASSERT(error_events >= 1);
    CU_ASSERT_PTR_EQUAL(blk_node(f.guest), f.source);
    fixture_free(&f);
}

static void test_target_error_stop(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    bnode_unref(f.target);
    char *json = xasprintf("{\"node-name\":\"tgt\",\"driver\":\"raw\",\"file\":{\"driver\":"
                           "\"blkdebug\",\"image\":{\"driver\":\"file\",\"filename\":\"%s\"},"
                           "\"inject-error\":[{\"event\":\"pwritev\",\"errno\":28,"
                           "\"once\":true}]}}", f.tpath);
    json_t *o = json_loads(json, 0, NULL);
    free(json);
    f.target = bnode_open(NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.target);
    /* enospc: stop on ENOSPC; the job pauses until resumed, then retries. */
    struct block_job *bj = start(&f, MIRROR_COPY_BACKGROUND, 0, JOB_ERROR_ENOSPC);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    poll_until(is_paused, &bj->job);
    CU_ASSERT(is_paused(&bj->job));
    CU_ASSERT_EQUAL(error_events, 1);
    CU_ASSERT_EQUAL(job_user_resume(&bj->job, &err), 0);
    poll_until(is_ready, &bj->job);
    CU_ASSERT_TRUE(job_is_ready(&bj->job));
    CU_ASSERT_EQUAL(job_complete(&bj->job, &err), 0);
    poll_until(is_gone, "m0");
    CU_ASSERT_TRUE(files_equal(f.spath, f.tpath));
    fixture_free(&f);
}

/* A guest that dirties more per pass than a slow mirror copies. */
struct hammer {
    struct fixture *f;
    bool stop;
    int writes;
};

static void hammer_co(void *opaque)
{
    struct hammer *h = opaque;
    uint8_t buf[65536];
    memset(buf, 0x5f, sizeof(buf));
    while (!h->stop) {
        int64_t off = (int64_t)((h->writes * 65536LL * 7) % DISK);
        blk_co_pwrite(h->f->guest, off, sizeof(buf), buf, 0);
        h->writes++;
        co_sleep_ns(200000);
    }
}

static void test_auto_write_blocking(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    struct hammer h = { &f, false, 0 };
    co_enter(co_create(hammer_co, &h));
    /* 1 MiB/s: far less than the ~300 MiB/s of dirty data the guest makes. */
    struct block_job *bj = start(&f, MIRROR_COPY_BACKGROUND, 1 * MiB, JOB_ERROR_REPORT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    poll_until(is_write_blocking, &bj->job);
    CU_ASSERT_TRUE(is_write_blocking(&bj->job));
    CU_ASSERT_FALSE(job_is_ready(&bj->job));
    /* Writes now reach the target as they happen: the rest converges. */
    CU_ASSERT_EQUAL(job_set_speed(&bj->job, 0, &err), 0);
    poll_until(is_ready, &bj->job);
    CU_ASSERT_TRUE(job_is_ready(&bj->job));
    h.stop = true;
    CU_ASSERT_EQUAL(job_complete(&bj->job, &err), 0);
    poll_until(is_gone, "m0");
    CU_ASSERT_TRUE(files_equal(f.spath, f.tpath));
    fixture_free(&f);
}

static void test_bad_params(void)
{
    struct fixture f;
    struct err err = { 0 };
    fixture_init(&f, NULL);
    struct mirror_params p = { .job_id = "bad", .source = f.source, .target = f.source };
    CU_ASSERT_PTR_NULL(mirror_start(&p, &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Can't mirror node into itself");
    err_clear(&err);
    p.target = f.target;
    p.granularity = 3000;
    CU_ASSERT_PTR_NULL(mirror_start(&p, &err));
    CU_ASSERT(strstr(err.msg, "granularity") != NULL);
    CU_ASSERT_PTR_EQUAL(blk_node(f.guest), f.source);
    fixture_free(&f);
}

void test_register(void)
{
    job_set_listener(&listener);
    CU_pSuite s = CU_add_suite("mirror", NULL, NULL);
    CU_add_test(s, "complete_pivots", test_complete_pivots);
    CU_add_test(s, "cancel_after_ready_keeps_copy", test_cancel_after_ready_keeps_copy);
    CU_add_test(s, "cancel_before_ready", test_cancel_before_ready);
    CU_add_test(s, "write_blocking", test_write_blocking);
    CU_add_test(s, "target_error_report", test_target_error_report);
    CU_add_test(s, "target_error_stop", test_target_error_stop);
    CU_add_test(s, "auto_write_blocking", test_auto_write_blocking);
    CU_add_test(s, "bad_params", test_bad_params);
}
