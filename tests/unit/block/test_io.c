/*
 * The request path against an in-memory model: aligned and unaligned
 * reads and writes at 512 and 4096 byte alignment, splitting at the
 * maximum transfer, zero writes, discard, reads past the end, concurrent
 * unaligned writes from coroutines and from two iothreads (which must not
 * tear each other's blocks), flush deduplication, write notifiers and drain.
 *
 * The disk is "memdisk", a test driver that checks every request it gets
 * against the limits it declared and can yield inside requests.
 */
#include "tests/unit/harness.h"

#include <stdio.h>

#include "block/backend.h"
#include "block/driver.h"
#include "util/aio.h"
#include "util/iothread.h"
#include "util/opts.h"

/* ---- memdisk ----------------------------------------------------------- */

struct memdisk {
    uint8_t *data;
    int64_t size;
    uint64_t align, max_transfer;
    bool yield;                     /* sleep inside every request */
    pthread_mutex_t lock;
    atomic_int violations;          /* requests that broke the declared limits */
    atomic_int flushes;
    atomic_int in_driver;
};

static const char *const memdisk_keys[] = { "size", "align", "max-transfer", "yield", NULL };

static int memdisk_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    struct memdisk *m = bs->opaque;
    uint64_t size = 1 * MiB, align = 1, max = 0;
    bool yield = false;
    opts_get_size(options, "size", &size, err);
    opts_get_uint(options, "align", &align, err);
    opts_get_size(options, "max-transfer", &max, err);
    opts_get_bool(options, "yield", &yield, err);
    m->size = (int64_t)size;
    m->align = align;
    m->max_transfer = max;
    m->yield = yield;
    m->data = xzalloc(size);
    pthread_mutex_init(&m->lock, NULL);
    bnode_set_size(bs, m->size);
    return 0;
}

static void memdisk_close(struct block_node *bs)
{
    struct memdisk *m = bs->opaque;
    free(m->data);
    pthread_mutex_destroy(&m->lock);
}

static void memdisk_limits(struct block_node *bs)
{
    struct memdisk *m = bs->opaque;
    bs->bl.request_alignment = (uint32_t)m->align;
    bs->bl.max_transfer = m->max_transfer;
}

static void check_limits(struct memdisk *m, int64_t offset, int64_t bytes)
{
    if (offset % m->align || bytes % m->align || bytes == 0 ||
        (m->max_transfer && (uint64_t)bytes > m->max_transfer) || offset + bytes > m->size) {
        atomic_fetch_add(&m->violations, 1);
    }
}

static void coroutine_fn maybe_yield(struct memdisk *m)
{
    if (m->yield) {
        co_sleep_ns(1000);
    }
}

static int coroutine_fn memdisk_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                       struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct memdisk *m = bs->opaque;
    check_limits(m, offset, bytes);
    atomic_fetch_add(&m->in_driver, 1);
    maybe_yield(m);
    pthread_mutex_lock(&m->lock);
    qiov_from_buf(qiov, qiov_offset, m->data + offset, bytes);
    pthread_mutex_unlock(&m->lock);
    atomic_fetch_sub(&m->in_driver, 1);
    return 0;
}

static int coroutine_fn memdisk_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                        struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct memdisk *m = bs->opaque;
    check_limits(m, offset, bytes);
    atomic_fetch_add(&m->in_driver, 1);
    maybe_yield(m);
    pthread_mutex_lock(&m->lock);
    qiov_to_buf(qiov, qiov_offset, m->data + offset, bytes);
    pthread_mutex_unlock(&m->lock);
    atomic_fetch_sub(&m->in_driver, 1);
    return 0;
}

static int coroutine_fn memdisk_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    struct memdisk *m = bs->opaque;
    check_limits(m, offset, bytes);
    pthread_mutex_lock(&m->lock);
    memset(m->data + offset, 0, bytes);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int coroutine_fn memdisk_flush(struct block_node *bs)
{
    struct memdisk *m = bs->opaque;
    atomic_fetch_add(&m->flushes, 1);
    return 0;
}

static const struct block_driver bdrv_memdisk = {
    .format_name = "memdisk",
    .protocol_name = "memdisk",
    .instance_size = sizeof(struct memdisk),
    .option_keys = memdisk_keys,
    .open = memdisk_open,
    .close = memdisk_close,
    .refresh_limits = memdisk_limits,
    .co_preadv = memdisk_preadv,
    .co_pwritev = memdisk_pwritev,
    .co_pdiscard = memdisk_pdiscard,
    .co_flush_to_disk = memdisk_flush,
};

BLOCK_DRIVER_REGISTER(bdrv_memdisk)

static struct block_backend *memdisk_backend(int64_t size, unsigned align, uint64_t max_transfer,
                                             bool yield)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:b, s:s}", "driver", "memdisk", "size",
                          (json_int_t)size, "align", (json_int_t)align, "max-transfer",
                          (json_int_t)max_transfer, "yield", yield, "discard", "unmap");
    struct block_backend *blk = blk_new_open("", NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    if (!blk) {
        printf("# memdisk open failed: %s\n", err.msg);
    }
    return blk;
}

static struct memdisk *memdisk_of(struct block_backend *blk)
{
    return blk_node(blk)->opaque;
}

/* ---- Random single-threaded I/O against a model ------------------------ */

static uint32_t rnd_state;

static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

static void random_io(unsigned align, uint64_t max_transfer)
{
    const int64_t size = 256 * KiB;
    struct block_backend *blk = memdisk_backend(size, align, max_transfer, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    uint8_t *model = xzalloc(size);
    uint8_t *buf = xmalloc(size);
    int iters = test_sanitized() ? 400 : 2000;

    rnd_state = test_seed() | 1;
    for (int i = 0; i < iters; i++) {
        int64_t off = rnd() % size;
        int64_t len = 1 + rnd() % MIN(size - off, 20000);
        int op = rnd() % 4;
        if (op == 0) {
            /* Data from a misaligned address, to exercise the vector paths. */
            memset(buf + 1, (int)(rnd() & 0xff), len);
            CU_ASSERT_EQUAL_FATAL(blk_pwrite(blk, off, len, buf + 1, 0), 0);
            memcpy(model + off, buf + 1, len);
        } else if (op == 1) {
            CU_ASSERT_EQUAL_FATAL(blk_pwrite_zeroes(blk, off, len, 0), 0);
            memset(model + off, 0, len);
        } else {
            memset(buf, 0xee, len);
            CU_ASSERT_EQUAL_FATAL(blk_pread(blk, off, len, buf, 0), 0);
            CU_ASSERT_FATAL(memcmp(buf, model + off, len) == 0);
        }
    }
    CU_ASSERT_EQUAL(blk_pread(blk, 0, size, buf, 0), 0);
    CU_ASSERT(memcmp(buf, model, size) == 0);
    CU_ASSERT_EQUAL(atomic_load(&memdisk_of(blk)->violations), 0);
    blk_unref(blk);
    free(model);
    free(buf);
}

static void test_random_align1(void)
{
    random_io(1, 0);
}

static void test_random_align512(void)
{
    random_io(512, 0);
}

static void test_random_align4096(void)
{
    random_io(4096, 0);
}

static void test_random_max_transfer(void)
{
    random_io(512, 8192);
}

/* ---- Edges ------------------------------------------------------------- */

static void test_bounds(void)
{
    struct block_backend *blk = memdisk_backend(64 * KiB, 512, 0, false);
    uint8_t buf[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    /* The backend refuses requests past the end and negative offsets. */
    CU_ASSERT_EQUAL(blk_pread(blk, 64 * KiB - 512, 1024, buf, 0), -EIO);
    CU_ASSERT_EQUAL(blk_pwrite(blk, -512, 512, buf, 0), -EIO);
    CU_ASSERT_EQUAL(blk_pread(blk, 64 * KiB, 0, buf, 0), 0);
    /* The node itself zero-fills reads past its end. */
    struct bdrv_child *root = blk_root(blk);
    memset(buf, 0xff, sizeof(buf));
    CU_ASSERT_EQUAL(bnode_pread(root, 64 * KiB - 512, 1024, buf, 0), 0);
    CU_ASSERT_TRUE(buffer_is_zero(buf + 512, 512));
    CU_ASSERT_EQUAL(atomic_load(&memdisk_of(blk)->violations), 0);
    blk_unref(blk);
}

static void test_discard(void)
{
    struct block_backend *blk = memdisk_backend(64 * KiB, 4096, 0, false);
    uint8_t *buf = xmalloc(64 * KiB);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    memset(buf, 0x5a, 64 * KiB);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 64 * KiB, buf, 0), 0);
    /* Only the whole blocks inside the range are discarded. */
    CU_ASSERT_EQUAL(blk_pdiscard(blk, 1000, 10000), 0);
    CU_ASSERT_EQUAL(blk_pread(blk, 0, 64 * KiB, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[4095], 0x5a);
    CU_ASSERT_TRUE(buffer_is_zero(buf + 4096, 4096));
    CU_ASSERT_EQUAL(buf[8192], 0x5a);
    CU_ASSERT_EQUAL(atomic_load(&memdisk_of(blk)->violations), 0);
    blk_unref(blk);
    free(buf);
}

static void test_flush_dedup(void)
{
    struct block_backend *blk = memdisk_backend(64 * KiB, 512, 0, false);
    uint8_t buf[512] = { 1 };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct memdisk *m = memdisk_of(blk);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);     /* nothing new: no driver flush */
    CU_ASSERT_EQUAL(atomic_load(&m->flushes), 1);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    CU_ASSERT_EQUAL(atomic_load(&m->flushes), 2);
    /* Writethrough: every write flushes (FUA emulated by the request path). */
    blk_set_write_cache(blk, false);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(atomic_load(&m->flushes), 3);
    blk_unref(blk);
}

/* ---- Write notifiers --------------------------------------------------- */

struct notif {
    struct bdrv_write_notifier n;
    int calls;
    int64_t last_offset, last_bytes;
    int fail;
};

static int coroutine_fn notif_cb(struct bdrv_write_notifier *n, struct block_node *bs,
                                 int64_t offset, int64_t bytes, int flags)
{
    struct notif *t = container_of(n, struct notif, n);
    t->calls++;
    t->last_offset = offset;
    t->last_bytes = bytes;
    return t->fail;
}

static void test_write_notifier(void)
{
    struct block_backend *blk = memdisk_backend(64 * KiB, 512, 0, false);
    uint8_t buf[100] = { 0 };
    struct notif t = { .n.before_write = notif_cb };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    bnode_add_write_notifier(blk_node(blk), &t.n);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 1000, 100, buf, 0), 0);
    CU_ASSERT_EQUAL(t.calls, 1);
    /* Notifiers see the aligned range that is really written. */
    CU_ASSERT_EQUAL(t.last_offset, 512);
    CU_ASSERT_EQUAL(t.last_bytes, 1024);
    t.fail = -EIO;
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 100, buf, 0), -EIO);
    bnode_remove_write_notifier(&t.n);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 100, buf, 0), 0);
    CU_ASSERT_EQUAL(t.calls, 2);
    blk_unref(blk);
}

/* ---- Concurrent unaligned writes --------------------------------------- */

/*
 * Writers own interleaved 100-byte slots, so every aligned block is shared
 * by several writers: without serialised read-modify-write, one writer's
 * read of a block races another's write and loses it.
 */
#define SLOT 100
#define WRITERS 6

struct slot_writer {
    struct block_backend *blk;
    int id, rounds;
    atomic_int *done;
};

static void slot_writer_co(void *opaque)
{
    struct slot_writer *w = opaque;
    uint8_t buf[SLOT];
    int64_t size = blk_getlength(w->blk);
    for (int r = 0; r < w->rounds; r++) {
        memset(buf, (w->id * 37 + r) & 0xff, SLOT);
        for (int64_t off = (int64_t)w->id * SLOT; off + SLOT <= size; off += WRITERS * SLOT) {
            int ret = blk_co_pwrite(w->blk, off, SLOT, buf, 0);
            CU_ASSERT_EQUAL(ret, 0);
        }
    }
    atomic_fetch_add(w->done, 1);
    aio_wait_kick();
}

static void check_slots(struct block_backend *blk, int rounds)
{
    int64_t size = blk_getlength(blk);
    uint8_t *buf = xmalloc(size);
    CU_ASSERT_EQUAL_FATAL(blk_pread(blk, 0, size, buf, 0), 0);
    int bad = 0;
    for (int64_t off = 0; off + SLOT <= size; off += SLOT) {
        int id = (int)((off / SLOT) % WRITERS);
        uint8_t want = (id * 37 + rounds - 1) & 0xff;
        for (int i = 0; i < SLOT; i++) {
            bad += buf[off + i] != want;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(buf);
}

static void test_concurrent_unaligned(void)
{
    struct block_backend *blk = memdisk_backend(48 * KiB, 4096, 0, true);
    atomic_int done = 0;
    struct slot_writer w[WRITERS];
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct slot_writer){ blk, i, 3, &done };
        co_enter(co_create(slot_writer_co, &w[i]));
    }
    while (atomic_load(&done) < WRITERS) {
        aio_poll(aio_main_context(), true);
    }
    check_slots(blk, 3);
    CU_ASSERT_EQUAL(atomic_load(&memdisk_of(blk)->violations), 0);
    blk_unref(blk);
}

static void start_writer(void *opaque)
{
    co_enter(co_create(slot_writer_co, opaque));
}

static void test_concurrent_two_iothreads(void)
{
    struct err err = { 0 };
    struct block_backend *blk = memdisk_backend(48 * KiB, 512, 0, true);
    struct iothread *a = iothread_create("wa", NULL, &err);
    struct iothread *b = iothread_create("wb", NULL, &err);
    atomic_int done = 0;
    struct slot_writer w[WRITERS];
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct slot_writer){ blk, i, 3, &done };
        aio_bh_schedule_oneshot(iothread_ctx(i % 2 ? a : b), start_writer, &w[i]);
    }
    AIO_WAIT_WHILE(atomic_load(&done) < WRITERS);
    check_slots(blk, 3);
    CU_ASSERT_EQUAL(atomic_load(&memdisk_of(blk)->violations), 0);
    iothread_destroy(a);
    iothread_destroy(b);
    blk_unref(blk);
}

/* ---- Drain ------------------------------------------------------------- */

struct drain_io {
    struct block_backend *blk;
    int started, finished;
};

static void drain_io_co(void *opaque)
{
    struct drain_io *d = opaque;
    uint8_t buf[512];
    d->started++;
    CU_ASSERT_EQUAL(blk_co_pread(d->blk, 0, 512, buf, 0), 0);
    d->finished++;
}

static void test_drain(void)
{
    struct block_backend *blk = memdisk_backend(64 * KiB, 512, 0, true);
    struct drain_io d = { .blk = blk };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    for (int i = 0; i < 4; i++) {
        co_enter(co_create(drain_io_co, &d));
    }
    CU_ASSERT_EQUAL(d.finished, 0);
    CU_ASSERT(atomic_load(&bs->in_flight) > 0);
    bnode_drained_begin(bs);
    /* Drain returned: nothing is in flight. */
    CU_ASSERT_EQUAL(d.finished, 4);
    CU_ASSERT_EQUAL(atomic_load(&bs->in_flight), 0);
    /* A new request waits at the backend while drained. */
    co_enter(co_create(drain_io_co, &d));
    for (int i = 0; i < 20; i++) {
        aio_poll(aio_main_context(), false);
    }
    CU_ASSERT_EQUAL(d.started, 5);
    CU_ASSERT_EQUAL(d.finished, 4);
    CU_ASSERT_EQUAL(atomic_load(&memdisk_of(blk)->in_driver), 0);
    bnode_drained_end(bs);
    while (d.finished < 5) {
        aio_poll(aio_main_context(), true);
    }
    blk_unref(blk);
}

/* ---- Graph: replacing a node ------------------------------------------- */

static void test_replace_node(void)
{
    struct block_backend *a = memdisk_backend(64 * KiB, 1, 0, false);
    struct block_backend *b = memdisk_backend(64 * KiB, 1, 0, false);
    uint8_t x = 0x11, y = 0x22, r = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(blk_pwrite(a, 0, 1, &x, 0), 0);
    CU_ASSERT_EQUAL(blk_pwrite(b, 0, 1, &y, 0), 0);
    struct block_node *na = blk_node(a), *nb = blk_node(b);
    bnode_ref(na);
    bnode_drained_begin(na);
    bnode_drained_begin(nb);
    CU_ASSERT_EQUAL(bnode_replace_node(na, nb, NULL), 0);
    bnode_drained_end(nb);
    bnode_drained_end(na);
    /* a's backend now reads b's node. */
    CU_ASSERT_PTR_EQUAL(blk_node(a), nb);
    CU_ASSERT_EQUAL(blk_pread(a, 0, 1, &r, 0), 0);
    CU_ASSERT_EQUAL(r, 0x22);
    CU_ASSERT_EQUAL(atomic_load(&na->quiesce_counter), 0);
    CU_ASSERT_EQUAL(atomic_load(&nb->quiesce_counter), 0);
    blk_unref(a);
    blk_unref(b);
    bnode_unref(na);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("io", NULL, NULL);
    CU_add_test(s, "random_align1", test_random_align1);
    CU_add_test(s, "random_align512", test_random_align512);
    CU_add_test(s, "random_align4096", test_random_align4096);
    CU_add_test(s, "random_max_transfer", test_random_max_transfer);
    CU_add_test(s, "bounds", test_bounds);
    CU_add_test(s, "discard", test_discard);
    CU_add_test(s, "flush_dedup", test_flush_dedup);
    CU_add_test(s, "write_notifier", test_write_notifier);
    CU_add_test(s, "concurrent_unaligned", test_concurrent_unaligned);
    CU_add_test(s, "concurrent_two_iothreads", test_concurrent_two_iothreads);
    CU_add_test(s, "drain", test_drain);
    CU_add_test(s, "replace_node", test_replace_node);
}
