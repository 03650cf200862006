/*
 * stream, intermediate commit, active commit and backup on qcow2 chains
 * (base <- mid <- top): the data ends up where it should, the graph and
 * the image headers say the new backing, and the guest's view never
 * changes.  Backup keeps the point in time while the guest writes.
 */
#include "tests/unit/harness.h"

#include <unistd.h>

#include "block/backend.h"
#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "block/overlay.h"
#include "blockjobs/backup.h"
#include "blockjobs/chain.h"
#include "blockjobs/mirror.h"

#define DISK (4 * MiB)

struct chain {
    char *path[3];                   /* base, mid, top */
    struct block_node *top;
    struct block_backend *guest;
    uint8_t model[DISK];
};

static void create_qcow2(const char *path, const char *backing)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:I}", "filename", path, "size", (json_int_t)DISK);
    if (backing) {
        json_object_set_new(o, "backing_file", json_string(backing));
        json_object_set_new(o, "backing_fmt", json_string("qcow2"));
    }
    int ret = bdrv_create("qcow2", o, &err);
    if (ret < 0) {
        printf("# create %s: %s\n", path, err.msg);
    }
    json_decref(o);
    CU_ASSERT_EQUAL_FATAL(ret, 0);
}

static struct block_backend *open_image(const char *path, bool writable)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s}", "driver", "qcow2");
    struct block_backend *blk = blk_new_open("guest", path, o, writable ? BDRV_O_RDWR : 0, &err);
    json_decref(o);
    if (!blk) {
        printf("# open %s: %s\n", path, err.msg);
    }
    return blk;
}

/* Write pattern p to [off, off+len) of one layer, and into the model. */
static void write_layer(struct chain *c, const char *path, int64_t off, int64_t len, uint8_t p)
{
    struct block_backend *blk = open_image(path, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    uint8_t *buf = xmalloc(len);
    memset(buf, p, len);
    CU_ASSERT_EQUAL(blk_pwrite(blk, off, len, buf, 0), 0);
    memcpy(c->model + off, buf, len);
    free(buf);
    blk_unref(blk);
}

static void chain_init(struct chain *c)
{
    memset(c, 0, sizeof(*c));
    const char *names[3] = { "base.qcow2", "mid.qcow2", "top.qcow2" };
    for (int i = 0; i < 3; i++) {
        c->path[i] = test_tmpfile(names[i]);
        unlink(c->path[i]);
        create_qcow2(c->path[i], i ? c->path[i - 1] : NULL);
    }
    /* Each layer owns a different piece; some overlap. */
    write_layer(c, c->path[0], 0, 2 * MiB, 0x11);
    write_layer(c, c->path[1], 1 * MiB, 1 * MiB, 0x22);
    write_layer(c, c->path[2], 1536 * KiB, 64 * KiB, 0x33);
    c->guest = open_image(c->path[2], true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->guest);
    c->top = blk_node(c->guest);
}

static void chain_free(struct chain *c)
{
    blk_unref(c->guest);
    for (int i = 0; i < 3; i++) {
        unlink(c->path[i]);
        free(c->path[i]);
    }
}

static bool guest_matches_model(struct chain *c)
{
    uint8_t *buf = xmalloc(DISK);
    bool ok = blk_pread(c->guest, 0, DISK, buf, 0) == 0 && memcmp(buf, c->model, DISK) == 0;
    free(buf);
    return ok;
}

static void wait_gone(const char *id)
{
    int64_t deadline = clock_ns() + 20000000000LL;
    while (job_find(id) && clock_ns() < deadline) {
        aio_poll(aio_main_context(), true);
    }
    CU_ASSERT_PTR_NULL(job_find(id));
}

static void test_stream_all(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct stream_params p = { .job_id = "s0", .bs = c.top, .auto_finalize = true,
                               .auto_dismiss = true };
    CU_ASSERT_PTR_NOT_NULL_FATAL(stream_start(&p, &err));
    wait_gone("s0");
    /* top stands alone now, in the graph and in its header. */
    CU_ASSERT_PTR_NULL(c.top->backing);
    CU_ASSERT_STRING_EQUAL(c.top->backing_file, "");
    CU_ASSERT_TRUE(guest_matches_model(&c));
    blk_unref(c.guest);
    c.guest = open_image(c.path[2], false);
    CU_ASSERT_PTR_NULL(blk_node(c.guest)->backing);
    CU_ASSERT_TRUE(guest_matches_model(&c));
    chain_free(&c);
}

static void test_stream_to_base(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct block_node *base = bnode_backing_bs(bnode_backing_bs(c.top));
    struct stream_params p = { .job_id = "s1", .bs = c.top, .base = base, .auto_finalize = true,
                               .auto_dismiss = true };
    CU_ASSERT_PTR_NOT_NULL_FATAL(stream_start(&p, &err));
    /* Guest writes during the stream are never overwritten by older data. */
    uint8_t buf[65536];
    memset(buf, 0x44, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pwrite(c.guest, 1 * MiB, sizeof(buf), buf, 0), 0);
    memcpy(c.model + 1 * MiB, buf, sizeof(buf));
    wait_gone("s1");
    CU_ASSERT_PTR_EQUAL(bnode_backing_bs(c.top), base);
    CU_ASSERT_STRING_EQUAL(c.top->backing_file, base->filename);
    CU_ASSERT_TRUE(guest_matches_model(&c));
    chain_free(&c);
}

static void test_commit_intermediate(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct block_node *mid = bnode_backing_bs(c.top);
    struct block_node *base = bnode_backing_bs(mid);
    struct commit_params p = { .job_id = "c0", .top = mid, .base = base, .auto_finalize = true,
                               .auto_dismiss = true };
    CU_ASSERT_PTR_NOT_NULL_FATAL(commit_start(&p, &err));
    wait_gone("c0");
    CU_ASSERT_PTR_EQUAL(bnode_backing_bs(c.top), base);
    CU_ASSERT_TRUE(base->read_only);
    CU_ASSERT_TRUE(guest_matches_model(&c));
    /* base alone now holds mid's data. */
    struct block_backend *b = open_image(c.path[0], false);
    uint8_t buf[4096];
    CU_ASSERT_EQUAL(blk_pread(b, 1 * MiB, sizeof(buf), buf, 0), 0);
    CU_ASSERT_EQUAL(buf[0], 0x22);
    blk_unref(b);
    chain_free(&c);
}

static void test_commit_refuses_active_layer(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct commit_params p = { .job_id = "c1", .top = c.top,
                               .base = bnode_backing_bs(c.top) };
    CU_ASSERT_PTR_NULL(commit_start(&p, &err));
    CU_ASSERT(strstr(err.msg, "is the active layer") != NULL);
    chain_free(&c);
}

static void test_active_commit(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct block_node *base = bnode_backing_bs(bnode_backing_bs(c.top));
    bnode_ref(base);
    struct mirror_params p = { .job_id = "ac", .source = c.top, .target = base,
                               .sync = MIRROR_SYNC_TOP, .is_active_commit = true,
                               .auto_finalize = true, .auto_dismiss = true };
    /* Active commit copies what the layers above base hold: everything not in base. */
    p.sync = MIRROR_SYNC_FULL;
    struct block_job *bj = mirror_start(&p, &err);
    if (!bj) {
        printf("# %s\n", err.msg);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    int64_t deadline = clock_ns() + 10000000000LL;
    while (!job_is_ready(&bj->job) && clock_ns() < deadline) {
        aio_poll(aio_main_context(), true);
    }
    uint8_t buf[4096];
    memset(buf, 0x55, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pwrite(c.guest, 3 * MiB, sizeof(buf), buf, 0), 0);
    memcpy(c.model + 3 * MiB, buf, sizeof(buf));
    CU_ASSERT_EQUAL(job_complete(&bj->job, &err), 0);
    wait_gone("ac");
    /* The guest is on base now, writable, with everything. */
    CU_ASSERT_PTR_EQUAL(blk_node(c.guest), base);
    CU_ASSERT_FALSE(base->read_only);
    CU_ASSERT_TRUE(guest_matches_model(&c));
    bnode_unref(base);
    chain_free(&c);
}

/* An active commit that cannot start leaves its base as it found it: read-only. */
static void test_active_commit_refused_keeps_base_read_only(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct block_node *base = bnode_backing_bs(bnode_backing_bs(c.top));
    CU_ASSERT_TRUE_FATAL(base->read_only);
    /* A slow backup holds the job id the commit asks for. */
    char *tpath = test_tmpfile("dup.qcow2");
    unlink(tpath);
    create_qcow2(tpath, NULL);
    struct block_backend *tblk = open_image(tpath, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tblk);
    struct backup_params bp = { .job_id = "dup", .source = c.top, .target = blk_node(tblk),
                                .sync = BACKUP_SYNC_FULL, .speed = 64 * KiB,
                                .auto_finalize = true, .auto_dismiss = true };
    struct block_job *first = backup_start(&bp, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(first);
    struct mirror_params p = { .job_id = "dup", .source = c.top, .target = base,
                               .sync = MIRROR_SYNC_FULL, .is_active_commit = true,
                               .auto_finalize = true, .auto_dismiss = true };
    CU_ASSERT_PTR_NULL(mirror_start(&p, &err));
    CU_ASSERT_TRUE(err_isset(&err));
    CU_ASSERT_TRUE(base->read_only);
    CU_ASSERT_FALSE(base->open_flags & BDRV_O_RDWR);
    job_user_cancel(&first->job, true, NULL);
    wait_gone("dup");
    blk_unref(tblk);
    unlink(tpath);
    free(tpath);
    chain_free(&c);
}

static void test_backup_point_in_time(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    char *tpath = test_tmpfile("backup.qcow2");
    unlink(tpath);
    create_qcow2(tpath, NULL);
    struct block_backend *tblk = open_image(tpath, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tblk);
    uint8_t *at_start = xmalloc(DISK);
    memcpy(at_start, c.model, DISK);

    struct backup_params p = { .job_id = "b0", .source = c.top, .target = blk_node(tblk),
                               .sync = BACKUP_SYNC_FULL, .speed = 8 * MiB,
                               .auto_finalize = true, .auto_dismiss = true };
    CU_ASSERT_PTR_NOT_NULL_FATAL(backup_start(&p, &err));
    /* The guest overwrites everything while the (slow) backup runs. */
    uint8_t buf[65536];
    memset(buf, 0x66, sizeof(buf));
    for (int64_t off = 0; off < (int64_t)DISK; off += (int64_t)sizeof(buf)) {
        CU_ASSERT_EQUAL(blk_pwrite(c.guest, off, sizeof(buf), buf, 0), 0);
    }
    wait_gone("b0");
    uint8_t *got = xmalloc(DISK);
    CU_ASSERT_EQUAL(blk_pread(tblk, 0, DISK, got, 0), 0);
    CU_ASSERT(memcmp(got, at_start, DISK) == 0);
    free(got);
    free(at_start);
    blk_unref(tblk);
    unlink(tpath);
    free(tpath);
    chain_free(&c);
}

static void test_backup_incremental(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct bdrv_dirty_bitmap *bm = bdrv_create_dirty_bitmap(c.top, 64 * KiB, "inc0", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bm);
    uint8_t buf[65536];
    memset(buf, 0x77, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pwrite(c.guest, 2 * MiB, sizeof(buf), buf, 0), 0);
    char *tpath = test_tmpfile("inc.qcow2");
    unlink(tpath);
    create_qcow2(tpath, NULL);
    struct block_backend *tblk = open_image(tpath, true);
    struct backup_params p = { .job_id = "b1", .source = c.top, .target = blk_node(tblk),
                               .sync = BACKUP_SYNC_INCREMENTAL, .bitmap = bm,
                               .auto_finalize = true, .auto_dismiss = true };
    CU_ASSERT_PTR_NOT_NULL_FATAL(backup_start(&p, &err));
    wait_gone("b1");
    /* Only the dirty cluster went out; the bitmap is clean again. */
    uint8_t got[65536];
    CU_ASSERT_EQUAL(blk_pread(tblk, 2 * MiB, sizeof(got), got, 0), 0);
    CU_ASSERT_EQUAL(got[0], 0x77);
    CU_ASSERT_EQUAL(blk_pread(tblk, 0, sizeof(got), got, 0), 0);
    CU_ASSERT_TRUE(buffer_is_zero(got, sizeof(got)));
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(bm), 0);
    CU_ASSERT_FALSE(bm->busy);
    bdrv_release_dirty_bitmap(bm);
    blk_unref(tblk);
    unlink(tpath);
    free(tpath);
    chain_free(&c);
}

/* A live snapshot, then an active commit of it back down: the "snapshot merge". */
static void test_snapshot_then_merge(void)
{
    struct chain c;
    struct err err = { 0 };
    chain_init(&c);
    struct block_node *old_top = c.top;
    char *snap = test_tmpfile("snap.qcow2");
    unlink(snap);
    struct block_node *overlay = bnode_snapshot_sync(c.top, snap, NULL, "snap0", false, &err);
    if (!overlay) {
        printf("# %s\n", err.msg);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(overlay);
    CU_ASSERT_PTR_EQUAL(blk_node(c.guest), overlay);
    CU_ASSERT_PTR_EQUAL(bnode_backing_bs(overlay), old_top);
    CU_ASSERT_STRING_EQUAL(overlay->backing_file, old_top->filename);
    CU_ASSERT_TRUE(guest_matches_model(&c));
    /* New writes land in the overlay only. */
    uint8_t buf[4096];
    memset(buf, 0x88, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pwrite(c.guest, 0, sizeof(buf), buf, 0), 0);
    memcpy(c.model, buf, sizeof(buf));
    int64_t pnum;
    CU_ASSERT_EQUAL(bnode_block_status_above(old_top, NULL, true, 0, 4096, &pnum, NULL, NULL,
                                             NULL) & BDRV_BLOCK_ZERO, 0);
    /* Merge it back: active commit of the overlay into the old top. */
    struct mirror_params p = { .job_id = "merge", .source = overlay, .target = old_top,
                               .sync = MIRROR_SYNC_TOP, .is_active_commit = true,
                               .auto_finalize = true, .auto_dismiss = true };
    struct block_job *bj = mirror_start(&p, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bj);
    int64_t deadline = clock_ns() + 10000000000LL;
    while (!job_is_ready(&bj->job) && clock_ns() < deadline) {
        aio_poll(aio_main_context(), true);
    }
    CU_ASSERT_EQUAL(job_complete(&bj->job, &err), 0);
    wait_gone("merge");
    CU_ASSERT_PTR_EQUAL(blk_node(c.guest), old_top);
    CU_ASSERT_TRUE(guest_matches_model(&c));
    bnode_unref(overlay);
    unlink(snap);
    free(snap);
    chain_free(&c);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("chain", NULL, NULL);
    CU_add_test(s, "stream_all", test_stream_all);
    CU_add_test(s, "stream_to_base", test_stream_to_base);
    CU_add_test(s, "commit_intermediate", test_commit_intermediate);
    CU_add_test(s, "commit_refuses_active_layer", test_commit_refuses_active_layer);
    CU_add_test(s, "active_commit", test_active_commit);
    CU_add_test(s, "active_commit_refused_keeps_base_read_only",
                test_active_commit_refused_keeps_base_read_only);
    CU_add_test(s, "backup_point_in_time", test_backup_point_in_time);
    CU_add_test(s, "backup_incremental", test_backup_incremental);
    CU_add_test(s, "snapshot_then_merge", test_snapshot_then_merge);
}
