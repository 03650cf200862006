/*
 * Consistency check and repair, as `qemu-img check [-r leaks|all]`.
 *
 * Every reference in the image (header, L1 tables active and of
 * snapshots, L2 tables, data and compressed clusters, the snapshot table,
 * the refcount table and blocks, bitmap directory, tables and data) is
 * counted into an array, one counter per cluster of the file; then the
 * array is compared with the refcount blocks, a block at a time.  With
 * -r leaks, refcounts too high are lowered; with -r all, refcounts too low
 * are raised, and when the refcount structure itself is broken it is
 * rebuilt from the array at the end of the file.  Last, the COPIED flags
 * of the active tables are checked against the refcounts (-r all fixes
 * them).  Messages go to stderr in qemu-img's words.
 *
 * Runs with s->lock held; the caches are written first so the tables on
 * disk are current.
 */
#include "qcow2/qcow2-int.h"

#include <stdio.h>

#include "util/log.h"

struct check {
    struct qcow2_state *s;
    struct bdrv_check_result *res;
    int fix;
    uint32_t *counts;            /* references per cluster of the file */
    uint64_t nb_clusters;        /* clusters the file has */
    bool rebuild;                /* the refcount structure needs rebuilding */
    uint64_t next_contiguous;    /* fragmentation: where the next data cluster would be */
    uint8_t *l2buf;
};

/* Count one reference to every cluster [offset, offset + size) touches. */
static bool inc_refs(struct check *c, uint64_t offset, uint64_t size)
{
    struct qcow2_state *s = c->s;
    if (!size) {
        return true;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + size - 1) >> s->cluster_bits;
    if (last >= c->nb_clusters) {
        return false;
    }
    for (uint64_t i = first; i <= last; i++) {
        if (c->counts[i] != UINT32_MAX) {
            c->counts[i]++;
        }
    }
    return true;
}

/* ---- L1 and L2 tables ----------------------------------------------------------- */

static int fix_l2_entry(struct check *c, uint64_t l2_offset, uint32_t idx, uint64_t entry,
                        uint64_t bitmap)
{
    struct qcow2_state *s = c->s;
    uint32_t start = idx & ~(s->l2_slice_size - 1);
    uint64_t *slice;
    int ret = qcow2_cache_get(s->l2_cache, l2_offset + (uint64_t)start * s->l2_entry_size,
                              (void **)&slice);
    if (ret < 0) {
        return ret;
    }
    qcow2_l2_set(s, slice, idx - start, entry, bitmap);
    qcow2_cache_mark_dirty(s->l2_cache, slice);
    qcow2_cache_put(s->l2_cache, (void **)&slice);
    return 0;
}

/* Count the clusters one L2 table references; active tables get repairs and statistics. */
static int check_l2(struct check *c, uint64_t l2_offset, bool active)
{
    struct qcow2_state *s = c->s;
    struct bdrv_check_result *res = c->res;
    int ret = bnode_co_pread(s->bs->file, l2_offset, s->cluster_size, c->l2buf, 0);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        res->check_errors++;
        return ret;
    }
    const uint64_t *t = (const uint64_t *)c->l2buf;
    /* Fragmentation is counted within one L2 table, as qemu-img counts it. */
    c->next_contiguous = 0;
    for (uint32_t i = 0; i < s->l2_size; i++) {
        uint64_t e = l2_get_entry(s, t, i);
        uint64_t b = l2_get_bitmap(s, t, i);
        if (!e && !b) {
            continue;
        }
        if (e & QCOW_OFLAG_COMPRESSED) {
            if (qcow2_has_data_file(s)) {
                fprintf(stderr, "ERROR compressed cluster %u with data file, entry=0x%" PRIx64
                        "\n", i, e);
                res->corruptions++;
                continue;
            }
            if (e & QCOW_OFLAG_COPIED) {
                fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set "
                        "for compressed clusters\n", e & s->cluster_offset_mask);
                if (active && (c->fix & BDRV_FIX_ERRORS) &&
                    fix_l2_entry(c, l2_offset, i, e & ~QCOW_OFLAG_COPIED, b) == 0) {
                    res->corruptions_fixed++;
                } else {
                    res->corruptions++;
                }
            }
            if (s->ext_l2 && b) {
                fprintf(stderr, "ERROR compressed cluster %u with non-zero subcluster "
                        "allocation bitmap, entry=0x%" PRIx64 "\n", i, e);
                res->corruptions++;
            }
            uint64_t coff, csize;
            qcow2_parse_compressed(s, e, &coff, &csize);
            if (active) {
                res->allocated_clusters++;
                res->compressed_clusters++;
                /* Compressed clusters sit anywhere: fragmented by nature. */
                res->fragmented_clusters++;
            }
            uint64_t start = coff & ~511ULL;
            if (!inc_refs(c, start, coff + csize - start)) {
                fprintf(stderr, "ERROR compressed cluster data at 0x%" PRIx64 " is beyond the "
                        "end of the image\n", coff);
                res->corruptions++;
            }
            continue;
        }
        uint64_t reserved = s->ext_l2 ? (L2E_RESERVED_MASK | QCOW_OFLAG_ZERO)
                                      : L2E_RESERVED_MASK;
        if (e & reserved) {
            fprintf(stderr, "ERROR found l2 entry with reserved bits set: 0x%" PRIx64 "\n", e);
            res->corruptions++;
        }
        if (s->ext_l2 && (b & (b >> 32) & L2_BITMAP_ALL_ALLOC)) {
            fprintf(stderr, "ERROR invalid subcluster allocation bitmap, entry=0x%" PRIx64
                    " bitmap=0x%" PRIx64 "\n", e, b);
            if (active && (c->fix & BDRV_FIX_ERRORS) &&
                fix_l2_entry(c, l2_offset, i, e, b & ~(b >> 32 & L2_BITMAP_ALL_ALLOC)) == 0) {
                res->corruptions_fixed++;
            } else {
                res->corruptions++;
            }
        }
        uint64_t off = e & L2E_OFFSET_MASK;
        if (!off || qcow2_has_data_file(s)) {
            if (active && qcow2_entry_has_host(s, e)) {
                res->allocated_clusters++;
            }
            continue;
        }
        if (off & (s->cluster_size - 1)) {
            bool repair = active && (c->fix & BDRV_FIX_ERRORS) && s->version >= 3;
            fprintf(stderr, "%s offset=%" PRIx64 ": Cluster is not properly aligned; L2 entry "
                    "corrupted.\n", repair ? "Repairing" : "ERROR", off);
            /* The data cannot be found: make the cluster read as zeroes. */
            if (repair && fix_l2_entry(c, l2_offset, i, s->ext_l2 ? 0 : QCOW_OFLAG_ZERO,
                                       s->ext_l2 ? L2_BITMAP_ALL_ZERO : 0) == 0) {
                res->corruptions_fixed++;
            } else {
                res->corruptions++;
            }
            continue;
        }
        if (!inc_refs(c, off, s->cluster_size)) {
            bool repair = active && (c->fix & BDRV_FIX_ERRORS) && s->version >= 3;
            fprintf(stderr, "%s offset=%" PRIx64 ": Cluster is beyond the end of the image; "
                    "L2 entry corrupted.\n", repair ? "Repairing" : "ERROR", off);
            /* Past the end it read as zeroes: keep it reading so. */
            if (repair && fix_l2_entry(c, l2_offset, i, s->ext_l2 ? 0 : QCOW_OFLAG_ZERO,
                                       s->ext_l2 ? L2_BITMAP_ALL_ZERO : 0) == 0) {
                res->corruptions_fixed++;
            } else {
                res->corruptions++;
            }
            continue;
        }
        if (active) {
            res->allocated_clusters++;
            if (c->next_contiguous && off != c->next_contiguous) {
                res->fragmented_clusters++;
            }
            c->next_contiguous = off + s->cluster_size;
        }
    }
    return 0;
}

/* Count an L1 table's L2 tables and what they reference. */
static int check_l1(struct check *c, const uint64_t *l1, uint32_t l1_size, bool active)
{
    struct qcow2_state *s = c->s;
    struct bdrv_check_result *res = c->res;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t e = l1[i];
        if (!e) {
            continue;
        }
        if (e & L1E_RESERVED_MASK) {
            fprintf(stderr, "ERROR found L1 entry with reserved bits set: 0x%" PRIx64 "\n", e);
            res->corruptions++;
        }
        uint64_t l2 = e & L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        if (l2 & (s->cluster_size - 1)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 "
                    "entry corrupted\n", l2);
            res->corruptions++;
            continue;
        }
        if (!inc_refs(c, l2, s->cluster_size)) {
            bool repair = active && (c->fix & BDRV_FIX_ERRORS);
            fprintf(stderr, "%s l2_offset=%" PRIx64 ": Table is beyond the end of the image; "
                    "L1 entry corrupted\n", repair ? "Repairing" : "ERROR", l2);
            /* It read as an empty table: an empty L1 entry says the same. */
            if (repair) {
                pthread_mutex_lock(&s->map_lock);
                s->l1_table[i] = 0;
                pthread_mutex_unlock(&s->map_lock);
                if (qcow2_write_l1_entry(s, i) == 0) {
                    res->corruptions_fixed++;
                    continue;
                }
            }
            res->corruptions++;
            continue;
        }
        int ret = check_l2(c, l2, active);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* ---- Everything else ------------------------------------------------------------- */

static int inc_cb(void *opaque, uint64_t offset, uint64_t size)
{
    struct check *c = opaque;
    if (!inc_refs(c, offset, size)) {
        fprintf(stderr, "ERROR bitmap cluster 0x%" PRIx64 " is beyond the end of the image\n",
                offset);
        c->res->corruptions++;
    }
    return 0;
}

static int check_snapshots(struct check *c)
{
    struct qcow2_state *s = c->s;
    struct bdrv_check_result *res = c->res;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t bytes = (uint64_t)sn->l1_size * 8;
        if ((sn->l1_table_offset & (s->cluster_size - 1)) || bytes > QCOW2_MAX_L1_BYTES) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not "
                    "cluster aligned or too large; snapshot table entry corrupted\n",
                    sn->id_str, sn->name, sn->l1_table_offset);
            res->corruptions++;
            continue;
        }
        if (!bytes) {
            continue;
        }
        if (!inc_refs(c, sn->l1_table_offset, bytes)) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is beyond "
                    "the end of the image\n", sn->id_str, sn->name, sn->l1_table_offset);
            res->corruptions++;
            continue;
        }
        uint64_t *l1 = xmalloc(bytes);
        int ret = bnode_co_pread(s->bs->file, sn->l1_table_offset, bytes, l1, 0);
        if (ret < 0) {
            free(l1);
            res->check_errors++;
            return ret;
        }
        for (uint32_t j = 0; j < sn->l1_size; j++) {
            l1[j] = be64toh(l1[j]);
        }
        ret = check_l1(c, l1, sn->l1_size, false);
        free(l1);
        if (ret < 0) {
            return ret;
        }
    }
    if (s->nb_snapshots && !inc_refs(c, s->snapshots_offset, s->snapshots_size)) {
        fprintf(stderr, "ERROR snapshot table at 0x%" PRIx64 " is beyond the end of the image\n",
                s->snapshots_offset);
        res->corruptions++;
    }
    return 0;
}

/* Count the refcount blocks; a broken one means rebuilding. */
static void check_refblocks(struct check *c)
{
    struct qcow2_state *s = c->s;
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t e = s->refcount_table[i];
        uint64_t off = e & REFT_OFFSET_MASK;
        if (!e) {
            continue;
        }
        if (e & REFT_RESERVED_MASK) {
            fprintf(stderr, "ERROR refcount table entry %u has reserved bits set\n", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off & (s->cluster_size - 1)) {
            fprintf(stderr, "ERROR refcount block %u is not cluster aligned; refcount table "
                    "entry corrupted\n", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (!inc_refs(c, off, s->cluster_size)) {
            fprintf(stderr, "ERROR refcount block %u is outside image\n", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (c->counts[off >> s->cluster_bits] != 1) {
            fprintf(stderr, "ERROR refcount block %u refcount=%u\n", i,
                    c->counts[off >> s->cluster_bits]);
            c->res->corruptions++;
            c->rebuild = true;
        }
    }
}

static int calculate(struct check *c)
{
    struct qcow2_state *s = c->s;
    memset(c->counts, 0, c->nb_clusters * sizeof(*c->counts));
    c->next_contiguous = 0;
    inc_refs(c, 0, s->cluster_size);
    int ret = check_l1(c, s->l1_table, s->l1_size, true);
    if (ret < 0) {
        return ret;
    }
    if (s->l1_size && !inc_refs(c, s->l1_table_offset, (uint64_t)s->l1_size * 8)) {
        fprintf(stderr, "ERROR active L1 table is beyond the end of the image\n");
        c->res->corruptions++;
    }
    ret = check_snapshots(c);
    if (ret < 0) {
        return ret;
    }
    if (!inc_refs(c, s->refcount_table_offset, (uint64_t)s->refcount_table_size * 8)) {
        fprintf(stderr, "ERROR refcount table is beyond the end of the image\n");
        c->res->corruptions++;
        c->rebuild = true;
    }
    if (s->crypto_offset || s->crypto_length) {
        inc_refs(c, s->crypto_offset, s->crypto_length);
    }
    ret = qcow2_bitmaps_for_each_cluster(s, inc_cb, c);
    if (ret < 0) {
        fprintf(stderr, "ERROR cannot read the bitmap directory: %s\n", strerror(-ret));
        c->res->check_errors++;
        return ret;
    }
    check_refblocks(c);
    return 0;
}

/* ---- Comparing with the refcount blocks ----------------------------------------- */

static int compare(struct check *c, uint64_t *highest)
{
    struct qcow2_state *s = c->s;
    struct bdrv_check_result *res = c->res;
    /* Past the end of the file nothing is referenced, but refcounts may say otherwise. */
    uint64_t end = MAX(c->nb_clusters, (uint64_t)s->reftable_used << s->rb_bits);
    *highest = 0;
    for (uint64_t base = 0; base < end; base += s->rb_size) {
        uint64_t ti = base >> s->rb_bits;
        uint64_t off = ti < s->refcount_table_size ? s->refcount_table[ti] & REFT_OFFSET_MASK
                                                   : 0;
        bool usable = off && !(off & (s->cluster_size - 1)) &&
                      (off >> s->cluster_bits) < c->nb_clusters;
        void *block = NULL;
        if (base >= c->nb_clusters && !usable) {
            continue;
        }
        if (usable) {
            int ret = qcow2_cache_get(s->rb_cache, off, &block);
            if (ret < 0) {
                fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n", base,
                        strerror(-ret));
                res->check_errors++;
                continue;
            }
        }
        uint64_t stop = MIN(base + s->rb_size, end);
        for (uint64_t i = base; i < stop; i++) {
            uint64_t disk = block ? qcow2_rb_get(s, block, i - base) : 0;
            uint64_t want = i < c->nb_clusters ? c->counts[i] : 0;
            if (disk || want) {
                *highest = i;
            }
            if (disk == want) {
                continue;
            }
            int *fixed = NULL;
            if (disk == 0 || !block) {
                c->rebuild = true;
            } else if (disk > want && (c->fix & BDRV_FIX_LEAKS)) {
                fixed = &res->leaks_fixed;
            } else if (disk < want && (c->fix & BDRV_FIX_ERRORS)) {
                fixed = &res->corruptions_fixed;
            }
            fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64
                    "\n", fixed ? "Repairing" : disk < want ? "ERROR" : "Leaked", i, disk,
                    want);
            if (fixed && want <= s->refcount_max) {
                qcow2_rb_set(s, block, i - base, want);
                qcow2_cache_mark_dirty(s->rb_cache, block);
                (*fixed)++;
                if (want == 0 && i < s->free_cluster_index) {
                    s->free_cluster_index = i;
                }
                continue;
            }
            if (disk < want) {
                res->corruptions++;
            } else {
                res->leaks++;
            }
        }
        qcow2_cache_put(s->rb_cache, &block);
    }
    return 0;
}

/* ---- Rebuilding the refcount structure ------------------------------------------ */

static int rebuild(struct check *c)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size;
    uint64_t per_table_cluster = cs / 8;

    fprintf(stderr, "Rebuilding refcount structure\n");
    /* The old structure is dropped: it no longer counts. */
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t off = s->refcount_table[i] & REFT_OFFSET_MASK;
        uint64_t idx = off >> s->cluster_bits;
        if (off && !(off & (cs - 1)) && idx < c->nb_clusters && c->counts[idx]) {
            c->counts[idx]--;
        }
    }
    uint64_t t_first = s->refcount_table_offset >> s->cluster_bits;
    uint64_t t_n = ((uint64_t)s->refcount_table_size * 8) >> s->cluster_bits;
    for (uint64_t i = t_first; i < t_first + t_n && i < c->nb_clusters; i++) {
        if (c->counts[i]) {
            c->counts[i]--;
        }
    }
    uint64_t end = c->nb_clusters;
    while (end && !c->counts[end - 1]) {
        end--;
    }
    for (uint64_t i = 0; i < end; i++) {
        if (c->counts[i] > s->refcount_max) {
            fprintf(stderr, "ERROR cluster %" PRIu64 " has more references (%u) than the "
                    "refcount width allows\n", i, c->counts[i]);
            c->res->check_errors++;
            return -ERANGE;
        }
    }
    /* New blocks, then the table, from cluster `end` on; they count themselves. */
    uint64_t area = end, nb_blocks = 0, tc = 1;
    for (int iter = 0; iter < 64; iter++) {
        uint64_t area_end = area + nb_blocks + tc;
        uint64_t ranges = DIV_ROUND_UP(area_end, (uint64_t)s->rb_size);
        uint64_t need = 0;
        for (uint64_t r = 0; r < ranges; r++) {
            uint64_t lo = r << s->rb_bits, hi = MIN(lo + s->rb_size, end);
            bool nz = lo < area_end && lo + s->rb_size > area;
            for (uint64_t i = lo; !nz && i < hi; i++) {
                nz = c->counts[i] != 0;
            }
            need += nz;
        }
        uint64_t new_tc = DIV_ROUND_UP(ranges, per_table_cluster);
        if (need == nb_blocks && new_tc == tc) {
            break;
        }
        nb_blocks = MAX(need, nb_blocks);
        tc = MAX(new_tc, tc);
    }
    uint64_t area_end = area + nb_blocks + tc;
    uint64_t ranges = DIV_ROUND_UP(area_end, (uint64_t)s->rb_size);
    if (tc * cs > QCOW2_MAX_REFTABLE_BYTES) {
        c->res->check_errors++;
        return -EFBIG;
    }
    uint64_t *table = xzalloc(tc * cs);
    uint8_t *block = xmalloc(cs);
    uint64_t next_block = area;
    int ret = 0;
    for (uint64_t r = 0; r < ranges && ret == 0; r++) {
        uint64_t lo = r << s->rb_bits;
        memset(block, 0, cs);
        bool nz = false;
        for (uint64_t i = lo; i < lo + s->rb_size; i++) {
            uint64_t v = i < end ? c->counts[i] : 0;
            if (i >= area && i < area_end) {
                v = 1;
            }
            if (v) {
                qcow2_rb_set(s, block, i - lo, v);
                nz = true;
            }
        }
        if (!nz) {
            continue;
        }
        table[r] = htobe64(next_block << s->cluster_bits);
        ret = bnode_co_pwrite(s->bs->file, next_block << s->cluster_bits, cs, block, 0);
        next_block++;
    }
    free(block);
    uint64_t table_off = (area + nb_blocks) << s->cluster_bits;
    if (ret == 0) {
        ret = bnode_co_pwrite(s->bs->file, table_off, tc * cs, table, 0);
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        uint8_t hdr[12];
        st_be64(hdr, table_off);
        st_be32(hdr + 8, (uint32_t)tc);
        ret = bnode_co_pwrite(s->bs->file, 48, sizeof(hdr), hdr, 0);
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret < 0) {
        free(table);
        fprintf(stderr, "ERROR writing the rebuilt refcount structure: %s\n", strerror(-ret));
        c->res->check_errors++;
        return ret;
    }
    /* Forget every cached block: they all belonged to the old structure. */
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t off = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (off && !(off & (cs - 1))) {
            qcow2_cache_discard(s->rb_cache, off);
        }
    }
    for (uint64_t i = 0; i < tc * per_table_cluster; i++) {
        table[i] = be64toh(table[i]);
    }
    pthread_mutex_lock(&s->map_lock);
    uint64_t *old = s->refcount_table;
    s->refcount_table = table;
    s->refcount_table_offset = table_off;
    s->refcount_table_size = (uint32_t)(tc * per_table_cluster);
    qcow2_reftable_note_used(s);
    pthread_mutex_unlock(&s->map_lock);
    free(old);
    s->free_cluster_index = 0;
    qcow2_take_fresh(s, area << s->cluster_bits, (area_end - area) << s->cluster_bits);
    return 0;
}

/* ---- COPIED flags ------------------------------------------------------------------ */

static int check_copied(struct check *c)
{
    struct qcow2_state *s = c->s;
    struct bdrv_check_result *res = c->res;
    bool repair = c->fix & BDRV_FIX_ERRORS;

    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1_table[i];
        uint64_t l2 = e & L1E_OFFSET_MASK;
        if (!l2 || (l2 & (s->cluster_size - 1))) {
            continue;
        }
        uint64_t rc;
        int ret = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
        if (ret < 0) {
            res->check_errors++;
            continue;
        }
        if ((rc == 1) != !!(e & QCOW_OFLAG_COPIED)) {
            fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%" PRIx64
                    " refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", i, e, rc);
            if (repair) {
                pthread_mutex_lock(&s->map_lock);
                s->l1_table[i] = rc == 1 ? e | QCOW_OFLAG_COPIED : e & ~QCOW_OFLAG_COPIED;
                pthread_mutex_unlock(&s->map_lock);
                if (qcow2_write_l1_entry(s, i) == 0) {
                    res->corruptions_fixed++;
                } else {
                    res->check_errors++;
                }
            } else {
                res->corruptions++;
            }
        }
        for (uint32_t sl = 0; sl < s->l2_size; sl += s->l2_slice_size) {
            uint64_t *slice;
            ret = qcow2_cache_get(s->l2_cache, l2 + (uint64_t)sl * s->l2_entry_size,
                                  (void **)&slice);
            if (ret < 0) {
                res->check_errors++;
                break;
            }
            for (uint32_t j = 0; j < s->l2_slice_size; j++) {
                uint64_t le = l2_get_entry(s, slice, j);
                uint64_t off = le & L2E_OFFSET_MASK;
                if ((le & QCOW_OFLAG_COMPRESSED) || (off & (s->cluster_size - 1))) {
                    continue;
                }
                if (qcow2_has_data_file(s)) {
                    /* Data file clusters: refcount 1 implied for every allocated one. */
                    continue;
                }
                if (!off) {
                    if (le & QCOW_OFLAG_COPIED) {
                        rc = 0;
                    } else {
                        continue;
                    }
                } else if ((off >> s->cluster_bits) < c->nb_clusters) {
                    if (qcow2_get_refcount(s, off >> s->cluster_bits, &rc) < 0) {
                        res->check_errors++;
                        continue;
                    }
                } else {
                    continue;
                }
                if ((rc == 1) != !!(le & QCOW_OFLAG_COPIED)) {
                    fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64
                            " refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", le, rc);
                    if (repair) {
                        uint64_t ne = rc == 1 ? le | QCOW_OFLAG_COPIED
                                              : le & ~QCOW_OFLAG_COPIED;
                        qcow2_l2_set(s, slice, j, ne, l2_get_bitmap(s, slice, j));
                        qcow2_cache_mark_dirty(s->l2_cache, slice);
                        res->corruptions_fixed++;
                    } else {
                        res->corruptions++;
                    }
                }
            }
            qcow2_cache_put(s->l2_cache, (void **)&slice);
        }
    }
    return 0;
}

/* ---- Entry points ---------------------------------------------------------------- */

int coroutine_fn qcow2_co_check_locked(struct qcow2_state *s, struct bdrv_check_result *res,
                                       int fix)
{
    struct check c = { .s = s, .res = res, .fix = fix };
    uint64_t highest = 0;
    int ret;

    memset(res, 0, sizeof(*res));
    int64_t file_size = bnode_getlength(s->bs->file->bs);
    if (file_size < 0) {
        res->check_errors++;
        return (int)file_size;
    }
    /* The tables on disk must be the current ones. */
    ret = qcow2_cache_write(s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_write(s->rb_cache);
    }
    if (ret < 0 && !fix) {
        res->check_errors++;
        return ret;
    }
    c.nb_clusters = size_to_clusters(s, (uint64_t)file_size);
    c.counts = xcalloc(MAX(c.nb_clusters, 1), sizeof(*c.counts));
    c.l2buf = bnode_blockalign(s->bs->file->bs, s->cluster_size);

    ret = calculate(&c);
    if (ret < 0) {
        goto out;
    }
    /* First only count: whether the structure must be rebuilt decides the repair. */
    struct bdrv_check_result pre = *res;
    c.fix = 0;
    compare(&c, &highest);
    c.fix = fix;
    if (c.rebuild && (fix & BDRV_FIX_ERRORS)) {
        struct bdrv_check_result counted = *res;
        ret = rebuild(&c);
        if (ret == 0) {
            /* Count again against the new structure (L2 repairs go to disk first). */
            ret = qcow2_cache_write(s->l2_cache);
        }
        if (ret < 0) {
            goto out;
        }
        memset(res, 0, sizeof(*res));
        c.rebuild = false;
        /* The new structure lies past the old end of the file. */
        file_size = bnode_getlength(s->bs->file->bs);
        c.nb_clusters = size_to_clusters(s, (uint64_t)MAX(file_size, 0));
        free(c.counts);
        c.counts = xcalloc(MAX(c.nb_clusters, 1), sizeof(*c.counts));
        ret = calculate(&c);
        if (ret == 0) {
            ret = compare(&c, &highest);
        }
        if (c.rebuild) {
            fprintf(stderr, "ERROR rebuilt refcount structure is still broken\n");
            res->check_errors++;
        }
        res->corruptions_fixed += pre.corruptions_fixed +
                                  MAX(0, counted.corruptions - res->corruptions);
        res->leaks_fixed += pre.leaks_fixed + MAX(0, counted.leaks - res->leaks);
    } else if (fix) {
        if (c.rebuild) {
            fprintf(stderr, "ERROR need to rebuild refcount structures\n");
            res->check_errors++;
            ret = -EIO;
            goto out;
        }
        if (res->leaks || res->corruptions) {
            *res = pre;
            ret = compare(&c, &highest);
        }
    }
    if (ret == 0) {
        ret = check_copied(&c);
    }
    if (fix && ret == 0) {
        ret = qcow2_cache_flush(s->l2_cache);
        if (ret == 0) {
            ret = qcow2_cache_flush(s->rb_cache);
        }
    }
    res->image_end_offset = (int64_t)(highest + 1) << s->cluster_bits;
    res->total_clusters = (int64_t)size_to_clusters(s, s->size);
out:
    free(c.counts);
    free(c.l2buf);
    return ret;
}

int coroutine_fn qcow2_co_check(struct block_node *bs, struct bdrv_check_result *res, int fix)
{
    struct qcow2_state *s = bs->opaque;
    co_mutex_lock(&s->lock);
    int ret = qcow2_co_check_locked(s, res, fix);
    if (ret == 0 && fix && !res->check_errors && !res->corruptions && !bs->read_only) {
        ret = qcow2_mark_clean(s);
        if (ret == 0 && (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
            /* Consistent again: writes may go on. */
            s->incompat &= ~QCOW2_INCOMPAT_CORRUPT;
            s->corrupt_signalled = false;
            ret = qcow2_update_header(s);
        }
    }
    co_mutex_unlock(&s->lock);
    return ret;
}
