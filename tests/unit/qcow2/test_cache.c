/*
 * The metadata cache: least-recently-used eviction (dirty victims written
 * back first), cleaning of unused entries, and the writeback order that
 * keeps an image consistent at every flush.  A recording filter between
 * qcow2 and its file logs every write and flush, and the log is checked:
 *   - an L2 table written after refcount blocks were written has a flush
 *     between them (new clusters are counted before they are used),
 *   - an L1 entry is written only after a flush that follows the L2 table
 *     it points to,
 *   - a refcount block that drops references is written only after a
 *     flush that follows the L2 table that stopped using them.
 */
#include "qcow2-test.h"

#include "block/driver.h"

/* ---- A filter that records writes and flushes ------------------------------------ */

#define LOG_MAX 8192

struct rec_entry {
    char kind;            /* 'W' write, 'F' flush */
    uint64_t off, len;
};

static struct rec_entry rec_log[LOG_MAX];
static int rec_n;
static bool rec_on;

static void rec_add(char kind, uint64_t off, uint64_t len)
{
    if (rec_on && rec_n < LOG_MAX) {
        rec_log[rec_n++] = (struct rec_entry){ kind, off, len };
    }
}

static int rec_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    if (!bnode_open_child(bs, options, "file", NULL, BDRV_CHILD_FILE, flags, false, err)) {
        return -EINVAL;
    }
    bnode_set_size(bs, bnode_getlength(bs->file->bs));
    return 0;
}

static int64_t rec_getlength(struct block_node *bs)
{
    return bnode_refresh_length(bs->file->bs);
}

static int coroutine_fn rec_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                   struct qiov *qiov, size_t qoff, int flags)
{
    return bnode_co_preadv(bs->file, offset, bytes, qiov, qoff, flags);
}

static int coroutine_fn rec_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                    struct qiov *qiov, size_t qoff, int flags)
{
    rec_add('W', offset, bytes);
    int ret = bnode_co_pwritev(bs->file, offset, bytes, qiov, qoff, flags);
    bnode_set_size(bs, MAX(bnode_size(bs), offset + bytes));
    return ret;
}

static int coroutine_fn rec_pwrite_zeroes(struct block_node *bs, int64_t offset, int64_t bytes,
                                          int flags)
{
    rec_add('W', offset, bytes);
    return bnode_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn rec_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    return bnode_co_pdiscard(bs->file, offset, bytes);
}

static int coroutine_fn rec_flush(struct block_node *bs)
{
    rec_add('F', 0, 0);
    return 0;
}

static int coroutine_fn rec_truncate(struct block_node *bs, int64_t offset, bool exact,
                                     enum prealloc_mode prealloc, int flags, struct err *err)
{
    return bnode_co_truncate(bs->file, offset, exact, prealloc, flags, err);
}

static const struct block_driver bdrv_rec = {
    .format_name = "test-recorder",
    .is_filter = true,
    .open = rec_open,
    .getlength = rec_getlength,
    .co_preadv = rec_preadv,
    .co_pwritev = rec_pwritev,
    .co_pwrite_zeroes = rec_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP,
    .co_pdiscard = rec_pdiscard,
    .co_flush_to_disk = rec_flush,
    .co_truncate = rec_truncate,
};

BLOCK_DRIVER_REGISTER(bdrv_rec)

/* qcow2 over the recorder over the file. */
static struct block_backend *open_recorded(const char *path, const char *extra)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:{s:s, s:{s:s, s:s}}}", "driver", "qcow2", "file", "driver",
                          "test-recorder", "file", "driver", "file", "filename", path);
    if (extra) {
        json_t *e = opts_parse(extra, NULL, &err);
        json_object_update(o, e);
        json_decref(e);
    }
    struct block_backend *blk = blk_new_open("", NULL, o, BDRV_O_RDWR | BDRV_O_UNMAP, &err);
    if (!blk) {
        printf("# open: %s\n", err.msg);
    }
    json_decref(o);
    return blk;
}

/* Whether [off, off+len) of the log entry e touches [start, start+n). */
static bool touches(const struct rec_entry *e, uint64_t start, uint64_t n)
{
    return e->kind == 'W' && ranges_overlap(e->off, e->len, start, n);
}

/*
 * Every write to `later` that follows a write to `earlier` has a flush in
 * between.  Returns the number of violations.
 */
static int flush_between(uint64_t earlier, uint64_t earlier_len, uint64_t later,
                         uint64_t later_len)
{
    int bad = 0;
    int last_early = -1, last_flush = -1;
    for (int i = 0; i < rec_n; i++) {
        const struct rec_entry *e = &rec_log[i];
        if (e->kind == 'F') {
            last_flush = i;
        } else if (touches(e, later, later_len) && last_early >= 0 && last_flush < last_early) {
            bad++;
        }
        if (touches(e, earlier, earlier_len)) {
            last_early = i;
        }
    }
    return bad;
}

static int writes_to(uint64_t off, uint64_t len)
{
    int n = 0;
    for (int i = 0; i < rec_n; i++) {
        n += touches(&rec_log[i], off, len);
    }
    return n;
}

/* The image: header 0, reftable 0x10000, refblock 0x20000, L1 0x30000. */
#define REFBLOCK 0x20000
#define L1       0x30000
#define L2       0x40000

static void test_order_allocation(void)
{
    char *path = test_tmpfile("order1.qcow2");
    CU_ASSERT_EQUAL_FATAL(qt_create(path, NULL, 64 * MiB), 0);
    struct block_backend *blk = open_recorded(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    uint8_t buf[4096];
    memset(buf, 1, sizeof(buf));
    rec_n = 0;
    rec_on = true;
    /* A new L2 table (then the L1 entry), a new data cluster, then more data clusters. */
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4096, buf, 0), 0);
    for (int i = 1; i < 10; i++) {
        CU_ASSERT_EQUAL(blk_pwrite(blk, (int64_t)i * 65536, 4096, buf, 0), 0);
    }
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    rec_on = false;
    CU_ASSERT_TRUE(writes_to(REFBLOCK, 65536) > 0);
    CU_ASSERT_TRUE(writes_to(L2, 65536) > 0);
    CU_ASSERT_EQUAL(writes_to(L1, 65536), 1);
    CU_ASSERT_EQUAL(flush_between(REFBLOCK, 65536, L2, 65536), 0);
    CU_ASSERT_EQUAL(flush_between(L2, 65536, L1, 65536), 0);
    /* The L1 entry is written only once the L2 table is on disk. */
    int first_l1 = -1, first_l2 = -1;
    for (int i = 0; i < rec_n; i++) {
        if (touches(&rec_log[i], L1, 65536) && first_l1 < 0) {
            first_l1 = i;
        }
        if (touches(&rec_log[i], L2, 65536) && first_l2 < 0) {
            first_l2 = i;
        }
    }
    CU_ASSERT_TRUE(first_l2 >= 0 && first_l2 < first_l1);
    /* The many data allocations cost no extra flushes before the final one. */
    int flushes = 0;
    for (int i = first_l1 + 1; i < rec_n; i++) {
        flushes += rec_log[i].kind == 'F';
    }
    CU_ASSERT_TRUE(flushes <= 3);
    CU_ASSERT_TRUE(qt_clean(blk));
    blk_unref(blk);
    free(path);
}

static void test_order_free_then_allocate(void)
{
    char *path = test_tmpfile("order2.qcow2");
    CU_ASSERT_EQUAL_FATAL(qt_create(path, NULL, 64 * MiB), 0);
    struct block_backend *blk = open_recorded(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    uint8_t *buf = xmalloc(4 * 65536);
    memset(buf, 2, 4 * 65536);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4 * 65536, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    rec_n = 0;
    rec_on = true;
    /* Dropping references (refcount blocks wait for the L2 table) ... */
    CU_ASSERT_EQUAL(blk_pdiscard(blk, 65536, 2 * 65536), 0);
    /* ... then new ones (the L2 table waits for refcount blocks): a cycle, broken by a flush. */
    CU_ASSERT_EQUAL(blk_pwrite(blk, 20 * 65536, 65536, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    rec_on = false;
    CU_ASSERT_TRUE(writes_to(REFBLOCK, 65536) > 0);
    CU_ASSERT_TRUE(writes_to(L2, 65536) > 0);
    /* The L2 table without the discarded clusters precedes the block that frees them. */
    int first_l2 = -1, first_rb = -1, flush_between_them = 0;
    for (int i = 0; i < rec_n; i++) {
        if (touches(&rec_log[i], L2, 65536) && first_l2 < 0) {
            first_l2 = i;
        }
        if (touches(&rec_log[i], REFBLOCK, 65536) && first_rb < 0) {
            first_rb = i;
        }
    }
    for (int i = first_l2 + 1; i < first_rb; i++) {
        flush_between_them += rec_log[i].kind == 'F';
    }
    CU_ASSERT_TRUE(first_l2 >= 0 && first_l2 < first_rb);
    CU_ASSERT_TRUE(flush_between_them > 0);
    CU_ASSERT_TRUE(qt_clean(blk));
    free(buf);
    blk_unref(blk);
    free(path);
}

/* ---- Eviction ------------------------------------------------------------------------ */

struct evict {
    struct qcow2_cache *c;
    uint64_t off[5];
    bool present[5];
    int ret;
};

static void cache_round(struct qcow2_state *s, void *opaque)
{
    struct evict *e = opaque;
    void *t;
    /* A, B, C fill the three entries; A is used again; D must push out B. */
    int order[] = { 0, 1, 2, 0, 3 };
    for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
        e->ret |= qcow2_cache_get(e->c, e->off[order[i]], &t);
        if (order[i] == 2) {
            memset(t, 0x77, 512);
            qcow2_cache_mark_dirty(e->c, t);
        }
        qcow2_cache_put(e->c, &t);
    }
}

static void cache_round2(struct qcow2_state *s, void *opaque)
{
    struct evict *e = opaque;
    void *t;
    /* E then B: C (dirty) and A are the oldest now; C goes first and is written. */
    e->ret |= qcow2_cache_get(e->c, e->off[4], &t);
    qcow2_cache_put(e->c, &t);
    e->ret |= qcow2_cache_get(e->c, e->off[1], &t);
    qcow2_cache_put(e->c, &t);
    pthread_mutex_lock(&s->map_lock);
    for (int i = 0; i < 5; i++) {
        uint64_t w;
        e->present[i] = qcow2_cache_peek(e->c, e->off[i], 0, 1, &w);
    }
    pthread_mutex_unlock(&s->map_lock);
}

static void cache_clean(struct qcow2_state *s, void *opaque)
{
    struct evict *e = opaque;
    qcow2_cache_clean_unused(e->c);
    qcow2_cache_clean_unused(e->c);
    pthread_mutex_lock(&s->map_lock);
    for (int i = 0; i < 5; i++) {
        uint64_t w;
        e->present[i] = qcow2_cache_peek(e->c, e->off[i], 0, 1, &w);
    }
    pthread_mutex_unlock(&s->map_lock);
}

static void test_eviction(void)
{
    char *path = test_tmpfile("evict.qcow2");
    CU_ASSERT_EQUAL_FATAL(qt_create(path, NULL, 64 * MiB), 0);
    struct block_backend *blk = open_recorded(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct qcow2_state *s = qt_state(blk);
    /* Five data clusters stand in for tables: the cache does not care what it holds. */
    uint8_t *buf = xzalloc(5 * 65536);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 5 * 65536, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    struct evict e = { 0 };
    for (int i = 0; i < 5; i++) {
        uint64_t n = 65536, host, entry;
        enum qcow2_sc_type type;
        CU_ASSERT_TRUE(qcow2_peek_host_offset(s, (uint64_t)i * 65536, &n, &host, &type,
                                              &entry));
        e.off[i] = host;
    }
    e.c = qcow2_cache_new(s, 3, 65536, 0, false, "test");
    qt_locked(s, cache_round, &e);
    CU_ASSERT_EQUAL(e.ret, 0);

    /* (Looking with peek counts as a use: only at the end.) */
    rec_n = 0;
    rec_on = true;
    qt_locked(s, cache_round2, &e);
    rec_on = false;
    CU_ASSERT_EQUAL(e.ret, 0);
    CU_ASSERT_FALSE(e.present[0]);     /* evicted second, clean */
    CU_ASSERT_TRUE(e.present[1]);      /* evicted by D, read again */
    CU_ASSERT_FALSE(e.present[2]);     /* evicted first, dirty */
    CU_ASSERT_TRUE(e.present[3]);
    CU_ASSERT_TRUE(e.present[4]);
    CU_ASSERT_EQUAL(writes_to(e.off[2], 65536), 1);   /* the dirty victim, written back */
    CU_ASSERT_EQUAL(writes_to(e.off[0], 65536), 0);   /* the clean one, just dropped */
    CU_ASSERT_EQUAL(blk_pread(blk, 2 * 65536, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[0], 0x77);

    /* Entries unused over two clean intervals are dropped. */
    qt_locked(s, cache_clean, &e);
    CU_ASSERT_FALSE(e.present[1] || e.present[3] || e.present[4]);
    qcow2_cache_free(e.c);
    free(buf);
    blk_unref(blk);
    free(path);
}

/* The cache-size options, as QEMU reads them. */
static void test_cache_options(void)
{
    char *path = test_tmpfile("opts.qcow2");
    struct err err = { 0 };
    CU_ASSERT_EQUAL_FATAL(qt_create(path, NULL, 1 * GiB), 0);
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct qcow2_state *s = qt_state(blk);
    /* Default: the whole disk's L2 tables (1 GiB: 2 tables of 64 KiB), 4 refcount blocks. */
    CU_ASSERT_EQUAL(qcow2_cache_nb_entries(s->l2_cache), 2);
    CU_ASSERT_EQUAL(qcow2_cache_entry_size(s->l2_cache), 65536);
    CU_ASSERT_EQUAL(qcow2_cache_nb_entries(s->rb_cache), 4);
    blk_unref(blk);

    json_t *o = json_pack("{s:s, s:s}", "l2-cache-size", "64k", "l2-cache-entry-size", "4k");
    blk = qt_open(path, o, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    s = qt_state(blk);
    CU_ASSERT_EQUAL(qcow2_cache_nb_entries(s->l2_cache), 16);
    CU_ASSERT_EQUAL(qcow2_cache_entry_size(s->l2_cache), 4096);
    blk_unref(blk);

    o = json_pack("{s:s}", "cache-size", "1M");
    blk = qt_open(path, o, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    s = qt_state(blk);
    /* All L2 tables first (128 KiB), the rest for refcount blocks. */
    CU_ASSERT_EQUAL(qcow2_cache_nb_entries(s->l2_cache), 2);
    CU_ASSERT_EQUAL(qcow2_cache_nb_entries(s->rb_cache), 14);
    blk_unref(blk);

    err_clear(&err);
    o = json_pack("{s:s, s:s, s:s}", "cache-size", "1M", "l2-cache-size", "512k",
                  "refcount-cache-size", "512k");
    CU_ASSERT_PTR_NULL(qt_open(path, o, &err));
    json_decref(o);
    CU_ASSERT_STRING_EQUAL(err.msg, "cache-size, l2-cache-size and refcount-cache-size may not "
                           "be set at the same time");
    err_clear(&err);
    o = json_pack("{s:s}", "l2-cache-entry-size", "3000");
    CU_ASSERT_PTR_NULL(qt_open(path, o, &err));
    json_decref(o);
    CU_ASSERT_STRING_EQUAL(err.msg, "L2 cache entry size must be a power of two between 512 "
                           "and the cluster size (65536)");
    free(path);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("qcow2_cache", NULL, NULL);
    CU_add_test(s, "order_allocation", test_order_allocation);
    CU_add_test(s, "order_free_then_allocate", test_order_free_then_allocate);
    CU_add_test(s, "eviction", test_eviction);
    CU_add_test(s, "cache_options", test_cache_options);
}
