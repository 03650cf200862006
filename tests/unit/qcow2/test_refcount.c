/*
 * Refcounts: entries of every width (1 to 64 bits) packed as the format
 * says, cluster allocation with first-fit free-space search (freed
 * clusters are found again), refcount blocks made on demand and a growing
 * refcount table (small clusters and 64-bit refcounts grow it fast),
 * compressed-byte allocation sharing clusters, overflow and underflow, and
 * the driver's own check agreeing at the end.
 */
#include "qcow2-test.h"

static void test_entry_widths(void)
{
    struct qcow2_state s = { 0 };
    uint8_t block[512];
    for (uint32_t order = 0; order <= 6; order++) {
        s.refcount_order = order;
        uint32_t bits = 1U << order;
        uint64_t max = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
        uint64_t n = sizeof(block) * 8 / bits;
        memset(block, 0, sizeof(block));
        for (uint64_t i = 0; i < n; i += 3) {
            qcow2_rb_set(&s, block, i, (i * 2654435761u) & max);
        }
        bool ok = true;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t want = i % 3 ? 0 : (i * 2654435761u) & max;
            ok &= qcow2_rb_get(&s, block, i) == want;
        }
        CU_ASSERT_TRUE(ok);
        qcow2_rb_set(&s, block, n - 1, max);
        CU_ASSERT_EQUAL(qcow2_rb_get(&s, block, n - 1), max);
        qcow2_rb_set(&s, block, n - 1, 0);
        CU_ASSERT_EQUAL(qcow2_rb_get(&s, block, n - 1), 0);
    }
    /* Sub-byte entries start at the least significant bit. */
    s.refcount_order = 0;
    memset(block, 0, sizeof(block));
    qcow2_rb_set(&s, block, 1, 1);
    CU_ASSERT_EQUAL(block[0], 0x02);
    s.refcount_order = 2;
    memset(block, 0, sizeof(block));
    qcow2_rb_set(&s, block, 1, 0xa);
    CU_ASSERT_EQUAL(block[0], 0xa0);
    s.refcount_order = 4;
    memset(block, 0, sizeof(block));
    qcow2_rb_set(&s, block, 0, 0x1234);
    CU_ASSERT_EQUAL(block[0], 0x12);
    CU_ASSERT_EQUAL(block[1], 0x34);
}

/* ---- Allocation on images ---------------------------------------------------------- */

#define RUNS 300

struct alloc_run {
    int64_t off[RUNS];
    uint64_t len[RUNS];
    int n;
    int ret;
    unsigned seed;
};

static void allocate_runs(struct qcow2_state *s, void *opaque)
{
    struct alloc_run *a = opaque;
    for (a->n = 0; a->n < RUNS; a->n++) {
        uint64_t len = ((rand_r(&a->seed) % 7) + 1) * (uint64_t)s->cluster_size;
        int64_t off = qcow2_alloc_clusters(s, len, NULL);
        if (off < 0) {
            a->ret = (int)off;
            return;
        }
        a->off[a->n] = off;
        a->len[a->n] = len;
    }
}

static void free_every_other(struct qcow2_state *s, void *opaque)
{
    struct alloc_run *a = opaque;
    for (int i = 0; i < a->n; i += 2) {
        qcow2_free_clusters(s, (uint64_t)a->off[i], a->len[i], QCOW2_DISCARD_NEVER);
    }
}

struct refs {
    uint64_t off, len, min, max;
    int ret;
};

static void refcount_range(struct qcow2_state *s, void *opaque)
{
    struct refs *r = opaque;
    r->min = UINT64_MAX;
    r->max = 0;
    for (uint64_t c = r->off >> s->cluster_bits; c < (r->off + r->len) >> s->cluster_bits; c++) {
        uint64_t rc;
        r->ret |= qcow2_get_refcount(s, c, &rc);
        r->min = MIN(r->min, rc);
        r->max = MAX(r->max, rc);
    }
}


struct one {
    uint64_t size;
    int64_t off;
};

static void alloc_one(struct qcow2_state *s, void *opaque)
{
    struct one *o = opaque;
    o->off = qcow2_alloc_clusters(s, o->size, NULL);
}

/*
 * Allocate runs, check they are disjoint and counted once, free half and
 * see the space found again, and leave the image with those runs leaked
 * on purpose (then free them) so check has something to agree with.
 */
static void allocation_case(const char *opts, const char *name)
{
    char *path = test_tmpfile(name);
    struct err err = { 0 };
    CU_ASSERT_EQUAL_FATAL(qt_create(path, opts, 16 * MiB), 0);
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct qcow2_state *s = qt_state(blk);
    uint32_t table_before = s->refcount_table_size;

    struct alloc_run *a = xzalloc(sizeof(*a));
    a->seed = test_seed();
    qt_locked(s, allocate_runs, a);
    CU_ASSERT_EQUAL(a->ret, 0);
    CU_ASSERT_EQUAL(a->n, RUNS);
    bool disjoint = true, counted = true;
    for (int i = 0; i < a->n; i++) {
        for (int j = 0; j < i; j++) {
            disjoint &= !ranges_overlap(a->off[i], a->len[i], a->off[j], a->len[j]);
        }
        struct refs r = { .off = (uint64_t)a->off[i], .len = a->len[i] };
        qt_locked(s, refcount_range, &r);
        counted &= r.ret == 0 && r.min == 1 && r.max == 1;
    }
    CU_ASSERT_TRUE(disjoint);
    CU_ASSERT_TRUE(counted);
    /* One big run: new refcount blocks, and past 16 MiB of 1 KiB clusters a bigger table. */
    struct one big = { .size = 20 * MiB };
    qt_locked(s, alloc_one, &big);
    CU_ASSERT_TRUE(big.off > 0);
    struct refs rb = { .off = (uint64_t)big.off, .len = big.size };
    qt_locked(s, refcount_range, &rb);
    CU_ASSERT_TRUE(rb.ret == 0 && rb.min == 1 && rb.max == 1);
    if (s->refcount_bits == 64 && s->cluster_size == 1024) {
        /* 128 entries per block, 128 blocks per table cluster: the table had to grow. */
        CU_ASSERT_TRUE(s->refcount_table_size > table_before);
    }

    /* Freed space is found again: first fit, nothing past the lowest freed run. */
    qt_locked(s, free_every_other, a);
    uint64_t lowest = UINT64_MAX;
    for (int i = 0; i < a->n; i += 2) {
        lowest = MIN(lowest, (uint64_t)a->off[i]);
    }
    struct one o = { .size = s->cluster_size };
    qt_locked(s, alloc_one, &o);
    /* (Lower holes exist when growth freed the old refcount table.) */
    CU_ASSERT_TRUE(o.off > 0 && (uint64_t)o.off <= lowest);

    /* What is allocated here is referenced by nothing: check calls them leaks. */
    struct qt_check c = { .bs = blk_node(blk) };
    blk_flush(blk);
    co_run_sync(qt_check_entry, &c);
    CU_ASSERT_EQUAL(c.ret, 0);
    CU_ASSERT_EQUAL(c.res.corruptions, 0);
    CU_ASSERT_TRUE(c.res.leaks > 0);
    c.fix = BDRV_FIX_LEAKS;
    co_run_sync(qt_check_entry, &c);
    CU_ASSERT_TRUE(c.res.leaks_fixed > 0);
    CU_ASSERT_TRUE(qt_clean(blk));

    /* And ordinary writes on top still work. */
    uint8_t *buf = xmalloc(MiB);
    memset(buf, 0x3c, MiB);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 3 * MiB, MiB, buf, 0), 0);
    memset(buf, 0, MiB);
    CU_ASSERT_EQUAL(blk_pread(blk, 3 * MiB, MiB, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[MiB - 1], 0x3c);
    CU_ASSERT_TRUE(qt_clean(blk));
    free(buf);
    free(a);
    blk_unref(blk);
    free(path);
}

static void test_alloc_16(void)
{
    allocation_case(NULL, "r16.qcow2");
}

static void test_alloc_1bit(void)
{
    allocation_case("refcount_bits=1,cluster_size=4k", "r1.qcow2");
}

static void test_alloc_64bit_small_clusters(void)
{
    allocation_case("refcount_bits=64,cluster_size=1k", "r64.qcow2");
}

static void test_alloc_512(void)
{
    allocation_case("cluster_size=512", "r512.qcow2");
}

/* ---- Limits ------------------------------------------------------------------------- */

struct update {
    uint64_t off;
    int64_t addend;
    int ret;
};

static void do_update(struct qcow2_state *s, void *opaque)
{
    struct update *u = opaque;
    u->ret = qcow2_update_refcount(s, u->off, s->cluster_size, u->addend, QCOW2_DISCARD_NEVER);
}

static void test_overflow_underflow(void)
{
    char *path = test_tmpfile("ovf.qcow2");
    struct err err = { 0 };
    CU_ASSERT_EQUAL_FATAL(qt_create(path, "refcount_bits=1", 16 * MiB), 0);
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct qcow2_state *s = qt_state(blk);
    /* The header has refcount 1, the most one bit holds. */
    struct update u = { .off = 0, .addend = 1 };
    qt_locked(s, do_update, &u);
    CU_ASSERT_EQUAL(u.ret, -ERANGE);
    struct refs r = { .off = 0, .len = s->cluster_size };
    qt_locked(s, refcount_range, &r);
    CU_ASSERT_EQUAL(r.max, 1);
    CU_ASSERT_TRUE(qt_clean(blk));
    blk_unref(blk);
    free(path);
}

/* ---- Compressed data shares clusters ------------------------------------------------ */

struct bytes {
    int64_t off[4];
};

static void alloc_bytes(struct qcow2_state *s, void *opaque)
{
    struct bytes *b = opaque;
    b->off[0] = qcow2_alloc_bytes(s, 1000);
    b->off[1] = qcow2_alloc_bytes(s, 3000);
    b->off[2] = qcow2_alloc_bytes(s, 4096);      /* does not fit: spills over */
    b->off[3] = qcow2_alloc_bytes(s, 100);
}

static void test_alloc_bytes(void)
{
    char *path = test_tmpfile("bytes.qcow2");
    struct err err = { 0 };
    CU_ASSERT_EQUAL_FATAL(qt_create(path, "cluster_size=4k", 16 * MiB), 0);
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct qcow2_state *s = qt_state(blk);
    struct bytes b;
    qt_locked(s, alloc_bytes, &b);
    CU_ASSERT_TRUE(b.off[0] > 0);
    CU_ASSERT_EQUAL(b.off[1], b.off[0] + 1000);
    CU_ASSERT_EQUAL(b.off[2], b.off[1] + 3000);
    CU_ASSERT_EQUAL(b.off[3], b.off[2] + 4096);
    /* The first cluster holds three pieces of data, the second two. */
    struct refs r = { .off = (uint64_t)b.off[0], .len = 4096 };
    qt_locked(s, refcount_range, &r);
    CU_ASSERT_EQUAL(r.max, 3);
    r = (struct refs){ .off = (uint64_t)b.off[0] + 4096, .len = 4096 };
    qt_locked(s, refcount_range, &r);
    CU_ASSERT_EQUAL(r.max, 2);
    blk_unref(blk);
    free(path);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("qcow2_refcount", NULL, NULL);
    CU_add_test(s, "entry_widths", test_entry_widths);
    CU_add_test(s, "alloc_16", test_alloc_16);
    CU_add_test(s, "alloc_1bit", test_alloc_1bit);
    CU_add_test(s, "alloc_64bit_small_clusters", test_alloc_64bit_small_clusters);
    CU_add_test(s, "alloc_512", test_alloc_512);
    CU_add_test(s, "overflow_underflow", test_overflow_underflow);
    CU_add_test(s, "alloc_bytes", test_alloc_bytes);
}
