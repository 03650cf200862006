/*
 * Clusters, L2 entries and subclusters: the type of a (sub)cluster from its
 * entry and bitmap, compressed descriptors, index arithmetic, and what
 * writes, zero writes and discards leave in the L2 table of a real image
 * (standard and extended entries).
 */
#include "qcow2-test.h"

/* A state with only the geometry filled in, for the pure functions. */
static void geometry(struct qcow2_state *s, uint32_t cluster_bits, bool ext_l2)
{
    memset(s, 0, sizeof(*s));
    s->cluster_bits = cluster_bits;
    s->cluster_size = 1U << cluster_bits;
    s->ext_l2 = ext_l2;
    s->l2_entry_size = ext_l2 ? 16 : 8;
    s->l2_bits = cluster_bits - (ext_l2 ? 4 : 3);
    s->l2_size = 1U << s->l2_bits;
    s->l2_slice_size = s->l2_size;
    s->sc_per_cluster = ext_l2 ? 32 : 1;
    s->sc_size = s->cluster_size / s->sc_per_cluster;
    s->sc_bits = ctz64(s->sc_size);
    s->csize_shift = 62 - (cluster_bits - 8);
    s->csize_mask = (1ULL << (cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (1ULL << s->csize_shift) - 1;
}

static void test_standard_types(void)
{
    struct qcow2_state s;
    struct block_node bs = { 0 };
    struct bdrv_child file = { 0 };
    geometry(&s, 16, false);
    s.bs = &bs;
    bs.file = &file;
    s.data_file = &file;
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0, 0, 0), QCOW2_SC_UNALLOC);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, QCOW_OFLAG_ZERO, 0, 0), QCOW2_SC_ZERO);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0x50000 | QCOW_OFLAG_ZERO, 0, 0), QCOW2_SC_ZERO_ALLOC);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0x50000 | QCOW_OFLAG_COPIED, 0, 0), QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0x50000, 0, 0), QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, QCOW_OFLAG_COMPRESSED | 0x12345, 0, 0),
                    QCOW2_SC_COMPRESSED);
    /* Offset 0 with COPIED means a host cluster only with an external data file. */
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, QCOW_OFLAG_COPIED, 0, 0), QCOW2_SC_UNALLOC);
    struct bdrv_child data = { 0 };
    s.data_file = &data;
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, QCOW_OFLAG_COPIED, 0, 0), QCOW2_SC_NORMAL);
}

static void test_extended_types(void)
{
    struct qcow2_state s;
    struct block_node bs = { 0 };
    struct bdrv_child file = { 0 };
    geometry(&s, 16, true);
    s.bs = &bs;
    bs.file = &file;
    s.data_file = &file;
    uint64_t host = 0x50000 | QCOW_OFLAG_COPIED;
    uint64_t bitmap = (1ULL << 3) | (1ULL << (5 + 32));   /* sc 3 allocated, sc 5 zero */
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, host, bitmap, 3), QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, host, bitmap, 5), QCOW2_SC_ZERO_ALLOC);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, host, bitmap, 4), QCOW2_SC_UNALLOC_ALLOC);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0, 1ULL << (31 + 32), 31), QCOW2_SC_ZERO);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0, 0, 0), QCOW2_SC_UNALLOC);
    /* Allocated and zero at once, or allocated without a host cluster: invalid. */
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, host, (1ULL << 7) | (1ULL << 39), 0), QCOW2_SC_INVALID);
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, 0, 1ULL << 2, 2), QCOW2_SC_INVALID);
    /* Compressed clusters have no subclusters. */
    CU_ASSERT_EQUAL(qcow2_sc_type(&s, QCOW_OFLAG_COMPRESSED | 0x1000, 0, 17),
                    QCOW2_SC_COMPRESSED);
}

static void test_compressed_descriptor(void)
{
    struct qcow2_state s;
    uint64_t off, size;
    for (uint32_t bits = 9; bits <= 21; bits++) {
        geometry(&s, bits, false);
        /* Data at 0x1234567 taking 3 more sectors: 4 * 512 - (offset % 512) bytes. */
        uint64_t more = MIN(3, s.csize_mask);
        uint64_t entry = QCOW_OFLAG_COMPRESSED | (more << s.csize_shift) | 0x1234567;
        qcow2_parse_compressed(&s, entry, &off, &size);
        CU_ASSERT_EQUAL(off, 0x1234567);
        CU_ASSERT_EQUAL(size, (more + 1) * 512 - 0x167);
    }
    geometry(&s, 16, false);
    /* QEMU's limits: 2 MiB clusters keep compressed data below 512 TiB. */
    geometry(&s, 21, false);
    CU_ASSERT_EQUAL(s.cluster_offset_mask, (1ULL << 49) - 1);
}

static void test_index_arithmetic(void)
{
    struct qcow2_state s;
    geometry(&s, 16, false);
    CU_ASSERT_EQUAL(offset_to_l1_index(&s, 512 * MiB - 1), 0);
    CU_ASSERT_EQUAL(offset_to_l1_index(&s, 512 * MiB), 1);
    CU_ASSERT_EQUAL(offset_to_l2_index(&s, 512 * MiB + 3 * 65536 + 7), 3);
    CU_ASSERT_EQUAL(qcow2_l1_entries_for(16, 13, 1 * GiB), 2);
    CU_ASSERT_EQUAL(qcow2_l1_entries_for(16, 13, 1 * GiB + 1), 3);
    CU_ASSERT_EQUAL(size_to_clusters(&s, 65537), 2);
    s.l2_slice_size = 512;           /* 4 KiB slices */
    CU_ASSERT_EQUAL(qcow2_slice_bytes_left(&s, 0), 512 * 65536);
    CU_ASSERT_EQUAL(qcow2_slice_bytes_left(&s, 511 * 65536 + 100), 65536 - 100);
    geometry(&s, 16, true);
    CU_ASSERT_EQUAL(s.l2_size, 4096);
    CU_ASSERT_EQUAL(s.sc_size, 2048);
    CU_ASSERT_EQUAL(offset_to_sc_index(&s, 65536 + 5 * 2048 + 1), 5);
    CU_ASSERT_EQUAL(qcow2_l1_entries_for(16, 12, 1 * GiB), 4);
}

/* ---- On a real image ---------------------------------------------------------------- */

struct lookup {
    uint64_t offset, bytes, host, entry;
    enum qcow2_sc_type type;
    int ret;
};

static void lookup_locked(struct qcow2_state *s, void *opaque)
{
    struct lookup *l = opaque;
    l->ret = qcow2_get_host_offset(s, l->offset, &l->bytes, &l->host, &l->type, &l->entry);
}

static struct lookup look(struct block_backend *blk, uint64_t offset, uint64_t bytes)
{
    struct lookup l = { .offset = offset, .bytes = bytes };
    qt_locked(qt_state(blk), lookup_locked, &l);
    return l;
}

static void test_writes_standard(void)
{
    char *path = test_tmpfile("std.qcow2");
    struct err err = { 0 };
    uint8_t buf[8192];
    CU_ASSERT_EQUAL_FATAL(qt_create(path, NULL, 64 * MiB), 0);
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);

    struct lookup l = look(blk, 0, 64 * MiB);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_UNALLOC);
    CU_ASSERT_EQUAL(l.bytes, 64 * MiB);      /* no L2 table: the whole range at once */

    memset(buf, 0xab, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pwrite(blk, 65536 + 4096, 4096, buf, 0), 0);
    l = look(blk, 65536, 3 * 65536);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(l.bytes, 65536);
    CU_ASSERT_TRUE((l.entry & QCOW_OFLAG_COPIED) != 0);
    CU_ASSERT_EQUAL(l.host & 0xffff, 0);
    l = look(blk, 0, 65536);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_UNALLOC);

    /* Three contiguous clusters written at once: one run. */
    uint8_t *big = xmalloc(3 * 65536);
    memset(big, 0x11, 3 * 65536);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 10 * 65536, 3 * 65536, big, 0), 0);
    l = look(blk, 10 * 65536, 3 * 65536);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(l.bytes, 3 * 65536);
    free(big);

    /* A zero write of whole clusters keeps them (zero flag), with unmap drops them. */
    CU_ASSERT_EQUAL(blk_pwrite_zeroes(blk, 10 * 65536, 65536, 0), 0);
    l = look(blk, 10 * 65536, 65536);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_ZERO_ALLOC);
    CU_ASSERT_EQUAL(blk_pwrite_zeroes(blk, 11 * 65536, 65536, BDRV_REQ_MAY_UNMAP), 0);
    l = look(blk, 11 * 65536, 65536);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_ZERO);
    /* A write into the preallocated zero cluster keeps its host cluster. */
    uint64_t kept = look(blk, 10 * 65536, 1).host;
    CU_ASSERT_EQUAL(blk_pwrite(blk, 10 * 65536 + 512, 512, buf, 0), 0);
    l = look(blk, 10 * 65536, 1);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(l.host, kept);
    CU_ASSERT_EQUAL(blk_pread(blk, 10 * 65536, 2048, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[0], 0);
    CU_ASSERT_EQUAL(buf[512], 0xab);
    CU_ASSERT_EQUAL(buf[1024], 0);

    /* A discard leaves zero clusters in v3 (nothing below to show through). */
    CU_ASSERT_EQUAL(blk_pdiscard(blk, 12 * 65536, 65536), 0);
    l = look(blk, 12 * 65536, 65536);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_ZERO);
    CU_ASSERT_TRUE(qt_clean(blk));
    blk_unref(blk);
    free(path);
}

static void test_writes_extended(void)
{
    char *path = test_tmpfile("ext.qcow2");
    struct err err = { 0 };
    uint8_t buf[4096];
    CU_ASSERT_EQUAL_FATAL(qt_create(path, "extended_l2=on", 64 * MiB), 0);
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    memset(buf, 0x5a, sizeof(buf));

    /* 1 KiB in subcluster 3 (2 KiB subclusters): only subcluster 3 is allocated. */
    CU_ASSERT_EQUAL(blk_pwrite(blk, 3 * 2048 + 512, 1024, buf, 0), 0);
    struct lookup l = look(blk, 3 * 2048, 2048);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(l.bytes, 2048);
    l = look(blk, 0, 3 * 2048);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_UNALLOC_ALLOC);
    CU_ASSERT_EQUAL(l.bytes, 3 * 2048);
    l = look(blk, 4 * 2048, 65536 - 4 * 2048);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_UNALLOC_ALLOC);
    CU_ASSERT_EQUAL(l.bytes, 65536 - 4 * 2048);
    CU_ASSERT_EQUAL(blk_pread(blk, 3 * 2048, 2048, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[0], 0);
    CU_ASSERT_EQUAL(buf[512], 0x5a);
    CU_ASSERT_EQUAL(buf[1536], 0);

    /* A zero write of subclusters 8..11 sets their zero bits and keeps the cluster. */
    CU_ASSERT_EQUAL(blk_pwrite_zeroes(blk, 8 * 2048, 4 * 2048, 0), 0);
    l = look(blk, 8 * 2048, 8 * 2048);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_ZERO_ALLOC);
    CU_ASSERT_EQUAL(l.bytes, 4 * 2048);

    /* Writing a subcluster next to allocated ones keeps the same host cluster. */
    uint64_t host = look(blk, 3 * 2048, 1).host - 3 * 2048;
    CU_ASSERT_EQUAL(blk_pwrite(blk, 4 * 2048, 2048, buf, 0), 0);
    l = look(blk, 3 * 2048, 2 * 2048);
    CU_ASSERT_EQUAL(l.type, QCOW2_SC_NORMAL);
    CU_ASSERT_EQUAL(l.bytes, 2 * 2048);
    CU_ASSERT_EQUAL(l.host, host + 3 * 2048);
    CU_ASSERT_TRUE(qt_clean(blk));
    blk_unref(blk);
    free(path);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("qcow2_cluster", NULL, NULL);
    CU_add_test(s, "standard_types", test_standard_types);
    CU_add_test(s, "extended_types", test_extended_types);
    CU_add_test(s, "compressed_descriptor", test_compressed_descriptor);
    CU_add_test(s, "index_arithmetic", test_index_arithmetic);
    CU_add_test(s, "writes_standard", test_writes_standard);
    CU_add_test(s, "writes_extended", test_writes_extended);
}
