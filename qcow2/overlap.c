/*
 * Overlap checks and corruption.
 *
 * No write may land on a metadata structure it does not belong to: every
 * metadata write (qcow2_write_meta) and every data write is checked first
 * against the structures the overlap-check mode selects (QEMU's names and
 * default, "cached": all but inactive L2 tables, which need reads).  A hit
 * means the metadata that chose the offset is corrupt: the image is marked
 * corrupt (the header's corrupt bit, when writable), the write fails with
 * -EIO, and further writes are refused until `check -r all` repairs it.
 */
#include "qcow2/qcow2-int.h"

#include <stdarg.h>
#include <stdio.h>

#include "util/log.h"

static const struct {
    const char *name;
    int mode;
} modes[] = {
    { "none", QCOW2_OL_NONE },
    { "constant", QCOW2_OL_CONSTANT },
    { "cached", QCOW2_OL_CACHED },
    { "all", QCOW2_OL_ALL },
};

int qcow2_overlap_mode_parse(const char *name, int *mode)
{
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        if (!strcmp(name, modes[i].name)) {
            *mode = modes[i].mode;
            return 0;
        }
    }
    return -EINVAL;
}

const char *qcow2_overlap_name(int bit)
{
    switch (bit) {
    case QCOW2_OL_MAIN_HEADER:
        return "the qcow2 header";
    case QCOW2_OL_ACTIVE_L1:
        return "the active L1 table";
    case QCOW2_OL_ACTIVE_L2:
        return "an active L2 table";
    case QCOW2_OL_REFCOUNT_TABLE:
        return "the refcount table";
    case QCOW2_OL_REFCOUNT_BLOCK:
        return "a refcount block";
    case QCOW2_OL_SNAPSHOT_TABLE:
        return "the snapshot table";
    case QCOW2_OL_INACTIVE_L1:
        return "an inactive L1 table";
    case QCOW2_OL_INACTIVE_L2:
        return "an inactive L2 table";
    case QCOW2_OL_BITMAP_DIR:
        return "the bitmap directory";
    }
    return "metadata";
}

static bool hits(uint64_t off, uint64_t size, uint64_t start, uint64_t len)
{
    return len && ranges_overlap(off, size, start, len);
}

/* An inactive L1 table's L2 tables (read from the image; "all" mode only). */
static bool inactive_l2_hit(struct qcow2_state *s, uint64_t off, uint64_t size)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t bytes = (uint64_t)sn->l1_size * 8;
        if (!bytes) {
            continue;
        }
        uint64_t *l1 = xmalloc(bytes);
        if (bnode_co_pread(s->bs->file, sn->l1_table_offset, bytes, l1, 0) < 0) {
            free(l1);
            continue;
        }
        for (uint32_t j = 0; j < sn->l1_size; j++) {
            uint64_t l2 = be64toh(l1[j]) & L1E_OFFSET_MASK;
            if (l2 && hits(off, size, l2, s->cluster_size)) {
                free(l1);
                return true;
            }
        }
        free(l1);
    }
    return false;
}

int qcow2_check_overlap(struct qcow2_state *s, int ign, uint64_t offset, uint64_t size)
{
    int chk = s->overlap_check & ~ign;
    if (!chk || !size) {
        return 0;
    }
    /* Structures take whole clusters: compare at that granularity. */
    uint64_t off = start_of_cluster(s, offset);
    size = ALIGN_UP(offset + size, (uint64_t)s->cluster_size) - off;

    if ((chk & QCOW2_OL_MAIN_HEADER) && off < s->cluster_size) {
        return QCOW2_OL_MAIN_HEADER;
    }
    if ((chk & QCOW2_OL_ACTIVE_L1) &&
        hits(off, size, s->l1_table_offset, (uint64_t)s->l1_size * 8)) {
        return QCOW2_OL_ACTIVE_L1;
    }
    if ((chk & QCOW2_OL_REFCOUNT_TABLE) &&
        hits(off, size, s->refcount_table_offset, (uint64_t)s->refcount_table_size * 8)) {
        return QCOW2_OL_REFCOUNT_TABLE;
    }
    if ((chk & QCOW2_OL_SNAPSHOT_TABLE) && s->nb_snapshots &&
        hits(off, size, s->snapshots_offset, s->snapshots_size)) {
        return QCOW2_OL_SNAPSHOT_TABLE;
    }
    if (chk & QCOW2_OL_INACTIVE_L1) {
        for (uint32_t i = 0; i < s->nb_snapshots; i++) {
            if (hits(off, size, s->snapshots[i].l1_table_offset,
                     (uint64_t)s->snapshots[i].l1_size * 8)) {
                return QCOW2_OL_INACTIVE_L1;
            }
        }
    }
    if ((chk & QCOW2_OL_BITMAP_DIR) && s->nb_bitmaps &&
        hits(off, size, s->bitmap_directory_offset, s->bitmap_directory_size)) {
        return QCOW2_OL_BITMAP_DIR;
    }
    if (chk & QCOW2_OL_ACTIVE_L2) {
        for (uint32_t i = 0; i < s->l1_size; i++) {
            uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
            if (l2 && hits(off, size, l2, s->cluster_size)) {
                return QCOW2_OL_ACTIVE_L2;
            }
        }
    }
    if (chk & QCOW2_OL_REFCOUNT_BLOCK) {
        for (uint32_t i = 0; i < s->reftable_used; i++) {
            uint64_t rb = s->refcount_table[i] & REFT_OFFSET_MASK;
            if (rb && hits(off, size, rb, s->cluster_size)) {
                return QCOW2_OL_REFCOUNT_BLOCK;
            }
        }
    }
    if ((chk & QCOW2_OL_INACTIVE_L2) && inactive_l2_hit(s, off, size)) {
        return QCOW2_OL_INACTIVE_L2;
    }
    return 0;
}

static int write_corrupt_bit(struct qcow2_state *s)
{
    uint8_t v[8];
    s->incompat |= QCOW2_INCOMPAT_CORRUPT;
    st_be64(v, s->incompat);
    int ret = bnode_co_pwrite(s->bs->file, 72, 8, v, 0);
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    return ret;
}

void qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (s->corrupt_signalled) {
        trace("qcow2_corruption", "%s: %s", bnode_describe(s->bs), msg);
        return;
    }
    s->corrupt_signalled = true;
    bool writable = !s->bs->read_only && s->version >= 3 && co_in_coroutine();
    log_error("%s: %s; %s (further corruption messages are suppressed)",
              bnode_describe(s->bs), msg,
              writable ? "marking the image as corrupt: writes are refused until "
                         "'qemu-img check -r all' repairs it"
                       : "the image is corrupt");
    if (writable && !(s->bs->open_flags & BDRV_O_CHECK)) {
        write_corrupt_bit(s);
    }
}

int qcow2_pre_write_check(struct qcow2_state *s, int ign, uint64_t offset, uint64_t size)
{
    int hit = qcow2_check_overlap(s, ign, offset, size);
    if (hit) {
        qcow2_signal_corruption(s, "preventing an invalid write at 0x%" PRIx64 " (%" PRIu64
                                " bytes): it overlaps %s", offset, size,
                                qcow2_overlap_name(hit));
        return -EIO;
    }
    return 0;
}

int qcow2_write_meta(struct qcow2_state *s, int ign, uint64_t offset, const void *buf,
                     uint64_t len)
{
    if (s->corrupt_signalled && !(s->bs->open_flags & BDRV_O_CHECK)) {
        return -EIO;
    }
    int ret = qcow2_pre_write_check(s, ign, offset, len);
    if (ret < 0) {
        return ret;
    }
    return bnode_co_pwrite(s->bs->file, (int64_t)offset, (int64_t)len, buf, 0);
}
