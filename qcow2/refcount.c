/*
 * Refcounts: a two-level structure (the refcount table in memory, refcount
 * blocks in the cache) of refcount_bits-wide counters, one per host cluster.
 *
 * Allocation is first fit from free_cluster_index.  Clusters past what
 * the refcount table covers, or in the range of a missing refcount block,
 * count as free.  Before counting new clusters, every refcount block they
 * need must exist: a missing block is placed at the first cluster of its
 * own range (it describes itself), and a table too small for the clusters
 * is replaced by a larger one at the end of what the old one covered,
 * followed by new blocks that describe the new table and themselves.
 * Either step may take the clusters the caller had found, so allocation
 * searches again after it.
 */
#include "qcow2/qcow2-int.h"

#include "util/log.h"

/* ---- Entries of any width ----------------------------------------------------- */

uint64_t qcow2_rb_get(const struct qcow2_state *s, const void *block, uint64_t index)
{
    const uint8_t *b = block;
    switch (s->refcount_order) {
    case 0:
        return (b[index / 8] >> (index % 8)) & 0x1;
    case 1:
        return (b[index / 4] >> (2 * (index % 4))) & 0x3;
    case 2:
        return (b[index / 2] >> (4 * (index % 2))) & 0xf;
    case 3:
        return b[index];
    case 4:
        return ld_be16(b + index * 2);
    case 5:
        return ld_be32(b + index * 4);
    default:
        return ld_be64(b + index * 8);
    }
}

void qcow2_rb_set(const struct qcow2_state *s, void *block, uint64_t index, uint64_t value)
{
    uint8_t *b = block;
    unsigned shift;
    switch (s->refcount_order) {
    case 0:
        shift = index % 8;
        b[index / 8] = (b[index / 8] & ~(0x1 << shift)) | ((value & 0x1) << shift);
        break;
    case 1:
        shift = 2 * (index % 4);
        b[index / 4] = (b[index / 4] & ~(0x3 << shift)) | ((value & 0x3) << shift);
        break;
    case 2:
        shift = 4 * (index % 2);
        b[index / 2] = (b[index / 2] & ~(0xf << shift)) | ((value & 0xf) << shift);
        break;
    case 3:
        b[index] = (uint8_t)value;
        break;
    case 4:
        st_be16(b + index * 2, (uint16_t)value);
        break;
    case 5:
        st_be32(b + index * 4, (uint32_t)value);
        break;
    default:
        st_be64(b + index * 8, value);
        break;
    }
}

/* ---- Open and close ------------------------------------------------------------ */

void qcow2_reftable_note_used(struct qcow2_state *s)
{
    uint32_t n = s->refcount_table_size;
    while (n && !s->refcount_table[n - 1]) {
        n--;
    }
    s->reftable_used = n;
}

int qcow2_refcount_init(struct qcow2_state *s, int64_t file_size, int flags, struct err *err)
{
    uint64_t bytes = (uint64_t)s->refcount_table_size * 8;
    const char *name = bnode_describe(s->bs);
    s->refcount_table = xmalloc(bytes);
    int ret = bnode_co_pread(s->bs->file, s->refcount_table_offset, bytes, s->refcount_table, 0);
    if (ret < 0) {
        return err_set_errno(err, ret, "%s: cannot read the refcount table", name);
    }
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t e = be64toh(s->refcount_table[i]);
        s->refcount_table[i] = e;
        if (!e || (flags & BDRV_O_CHECK)) {
            continue;
        }
        uint64_t off = e & REFT_OFFSET_MASK;
        const char *why = NULL;
        if (e & REFT_RESERVED_MASK) {
            why = "has reserved bits set";
        } else if (off & (s->cluster_size - 1)) {
            why = "is not cluster aligned";
        } else if (off + s->cluster_size > (uint64_t)file_size) {
            why = "is past the end of the file";
        } else if (off < s->cluster_size) {
            why = "overlaps the header";
        } else if (s->l1_size && ranges_overlap(off, s->cluster_size, s->l1_table_offset,
                                                (uint64_t)s->l1_size * 8)) {
            why = "overlaps the active L1 table";
        } else if (ranges_overlap(off, s->cluster_size, s->refcount_table_offset, bytes)) {
            why = "overlaps the refcount table";
        }
        if (why) {
            err_set(err, "%s: refcount block %u at offset 0x%" PRIx64 " %s", name, i, off, why);
            return -EINVAL;
        }
    }
    qcow2_reftable_note_used(s);
    s->free_cluster_index = 0;
    return 0;
}

void qcow2_refcount_close(struct qcow2_state *s)
{
    free(s->refcount_table);
    s->refcount_table = NULL;
}

/* ---- Lookup ---------------------------------------------------------------------- */

static uint64_t block_offset(const struct qcow2_state *s, uint64_t table_index)
{
    if (table_index >= s->refcount_table_size) {
        return 0;
    }
    return s->refcount_table[table_index] & REFT_OFFSET_MASK;
}

int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster_index, uint64_t *refcount)
{
    uint64_t off = block_offset(s, cluster_index >> s->rb_bits);
    void *block;
    if (!off) {
        *refcount = 0;
        return 0;
    }
    int ret = qcow2_cache_get(s->rb_cache, off, &block);
    if (ret < 0) {
        return ret;
    }
    *refcount = qcow2_rb_get(s, block, cluster_index & (s->rb_size - 1));
    qcow2_cache_put(s->rb_cache, &block);
    return 0;
}

bool qcow2_take_fresh(struct qcow2_state *s, uint64_t offset, uint64_t size)
{
    bool fresh = offset >= s->fresh_from;
    if (offset + size > s->fresh_from && s->fresh_from != UINT64_MAX) {
        s->fresh_from = offset + size;
    }
    return fresh;
}

/* The first run of n free clusters from free_cluster_index. */
static int find_free(struct qcow2_state *s, uint64_t n, uint64_t *out)
{
    uint64_t start = s->free_cluster_index, cur = start, run = 0;
    uint64_t max_index = QCOW2_MAX_HOST_OFFSET >> s->cluster_bits;

    while (run < n) {
        if (cur + (n - run) > max_index) {
            return -EFBIG;
        }
        uint64_t ti = cur >> s->rb_bits;
        uint64_t block_end = (ti + 1) << s->rb_bits;
        uint64_t off = block_offset(s, ti);
        if (!off) {
            /* No block: the whole range is free. */
            run += block_end - cur;
            cur = block_end;
            continue;
        }
        void *block;
        int ret = qcow2_cache_get(s->rb_cache, off, &block);
        if (ret < 0) {
            return ret;
        }
        for (; cur < block_end && run < n; cur++) {
            if (qcow2_rb_get(s, block, cur & (s->rb_size - 1)) == 0) {
                run++;
            } else {
                run = 0;
                start = cur + 1;
            }
        }
        qcow2_cache_put(s->rb_cache, &block);
    }
    *out = start;
    return 0;
}

/* ---- New refcount blocks and a larger table ------------------------------------- */

static int write_reftable_entry(struct qcow2_state *s, uint64_t index)
{
    uint64_t v = htobe64(s->refcount_table[index]);
    return qcow2_write_meta(s, QCOW2_OL_REFCOUNT_TABLE, s->refcount_table_offset + index * 8,
                            &v, sizeof(v));
}

/* Write a new, empty refcount block at off and point table entry ti at it. */
static int install_refblock(struct qcow2_state *s, uint64_t ti, uint64_t off, bool self)
{
    void *block;
    trace("qcow2_alloc_refblock", "entry %" PRIu64 " at 0x%" PRIx64, ti, off);
    int ret = qcow2_cache_get_empty(s->rb_cache, off, &block);
    if (ret < 0) {
        return ret;
    }
    memset(block, 0, s->cluster_size);
    if (self) {
        qcow2_rb_set(s, block, (off >> s->cluster_bits) & (s->rb_size - 1), 1);
    }
    qcow2_cache_mark_dirty(s->rb_cache, block);
    qcow2_cache_put(s->rb_cache, &block);
    qcow2_take_fresh(s, off, s->cluster_size);
    if (!self) {
        /* Counted in another (existing) block: that count must be durable first too. */
        ret = qcow2_update_refcount(s, off, s->cluster_size, 1, QCOW2_DISCARD_NEVER);
        if (ret < 0) {
            qcow2_cache_discard(s->rb_cache, off);
            return ret;
        }
    }
    /* The block must be on disk before the table points at it. */
    ret = qcow2_cache_flush(s->rb_cache);
    if (ret < 0) {
        qcow2_cache_discard(s->rb_cache, off);
        return ret;
    }
    pthread_mutex_lock(&s->map_lock);
    s->refcount_table[ti] = off;
    pthread_mutex_unlock(&s->map_lock);
    ret = write_reftable_entry(s, ti);
    pthread_mutex_lock(&s->map_lock);
    if (ret < 0) {
        s->refcount_table[ti] = 0;
    }
    qcow2_reftable_note_used(s);
    pthread_mutex_unlock(&s->map_lock);
    if (ret < 0) {
        qcow2_cache_discard(s->rb_cache, off);
    }
    return ret;
}

static int grow_reftable(struct qcow2_state *s, uint64_t ti);

/*
 * A block for the (missing) table entry ti, outside the clusters
 * [avoid, avoid + n) the caller is about to allocate.  Where it can, the
 * block goes in the range it covers and counts itself; when the caller's
 * clusters fill the rest of that range, it goes after them and is counted
 * by the block there (made first if missing).  Returns 0, or 1 when the
 * refcount table was replaced (the caller searches again), or -errno.
 */
static int alloc_refblock(struct qcow2_state *s, uint64_t ti, uint64_t avoid, uint64_t n)
{
    uint64_t lo = ti << s->rb_bits, hi = lo + s->rb_size;
    uint64_t x = lo;

    if (ti == 0) {
        qcow2_signal_corruption(s, "refcount block 0 is missing");
        return -EIO;
    }
    if (x >= avoid && x < avoid + n) {
        x = avoid + n;
    }
    if (x < hi) {
        /* Every refcount of the range is 0 without a block: x is free. */
        return install_refblock(s, ti, x << s->cluster_bits, true);
    }
    /* After the caller's clusters: the first free one from there. */
    uint64_t saved = s->free_cluster_index;
    s->free_cluster_index = avoid + n;
    uint64_t y;
    int ret = find_free(s, 1, &y);
    s->free_cluster_index = saved;
    if (ret < 0) {
        return ret;
    }
    uint64_t tj = y >> s->rb_bits;
    if (tj >= s->refcount_table_size) {
        ret = grow_reftable(s, tj);
        return ret < 0 ? ret : 1;
    }
    if (!(s->refcount_table[tj] & REFT_OFFSET_MASK)) {
        ret = alloc_refblock(s, tj, avoid, n);
        if (ret != 0) {
            return ret;
        }
        /* y may hold that block now: look again. */
        return alloc_refblock(s, ti, avoid, n);
    }
    return install_refblock(s, ti, y << s->cluster_bits, false);
}

/* Table clusters for at least entries entries: grown by half at a time, as QEMU does. */
static uint64_t next_table_clusters(struct qcow2_state *s, uint64_t entries)
{
    uint64_t per_cluster = s->cluster_size / 8;
    uint64_t min = DIV_ROUND_UP(entries, per_cluster);
    uint64_t n = MAX(1, ((uint64_t)s->refcount_table_size * 8) >> s->cluster_bits);
    while (n < min) {
        n = (n * 3 + 1) / 2;
    }
    return n;
}

/* Replace the refcount table by one with an entry for index ti. */
static int grow_reftable(struct qcow2_state *s, uint64_t ti)
{
    uint64_t cs = s->cluster_size;
    uint64_t old_size = s->refcount_table_size;
    uint64_t cov_bits = s->rb_bits + s->cluster_bits;
    uint64_t area_start;

    if (cov_bits >= 64 || old_size > (QCOW2_MAX_HOST_OFFSET >> cov_bits)) {
        return -EFBIG;
    }
    area_start = old_size << cov_bits;
    uint64_t nb = 1, tc = next_table_clusters(s, ti + 1);
    for (int iter = 0;; iter++) {
        uint64_t area_end = area_start + (nb + tc) * cs;
        uint64_t idx_end = ((area_end - 1) >> cov_bits) + 1;
        uint64_t new_nb = idx_end - old_size;
        uint64_t new_tc = next_table_clusters(s, MAX(ti + 1, idx_end));
        if (new_nb == nb && new_tc == tc) {
            break;
        }
        nb = MAX(nb, new_nb);
        tc = MAX(tc, new_tc);
        if (iter > 64) {
            return -EFBIG;
        }
    }
    if (tc * cs > QCOW2_MAX_REFTABLE_BYTES) {
        log_error("%s: the refcount table would exceed 8 MiB", bnode_describe(s->bs));
        return -EFBIG;
    }
    uint64_t area_end = area_start + (nb + tc) * cs;
    if (area_end > QCOW2_MAX_HOST_OFFSET) {
        return -EFBIG;
    }
    uint64_t new_size = tc * cs / 8;
    uint64_t table_offset = area_start + nb * cs;
    trace("qcow2_grow_reftable", "%" PRIu64 " -> %" PRIu64 " entries at 0x%" PRIx64,
          old_size, new_size, table_offset);

    /* The new blocks count the area: themselves and the table. */
    uint8_t *block = bnode_blockalign(s->bs->file->bs, cs);
    int ret = 0;
    for (uint64_t k = 0; k < nb && ret == 0; k++) {
        uint64_t first = (old_size + k) << s->rb_bits;
        memset(block, 0, cs);
        for (uint64_t c = area_start >> s->cluster_bits; c < area_end >> s->cluster_bits; c++) {
            if (c >= first && c < first + s->rb_size) {
                qcow2_rb_set(s, block, c - first, 1);
            }
        }
        ret = qcow2_write_meta(s, 0, area_start + k * cs, block, cs);
    }
    free(block);
    uint64_t *table = NULL;
    if (ret == 0) {
        table = xzalloc(tc * cs);
        for (uint64_t i = 0; i < old_size; i++) {
            table[i] = htobe64(s->refcount_table[i]);
        }
        for (uint64_t k = 0; k < nb; k++) {
            table[old_size + k] = htobe64(area_start + k * cs);
        }
        ret = qcow2_write_meta(s, 0, table_offset, table, tc * cs);
    }
    qcow2_take_fresh(s, area_start, area_end - area_start);
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        uint8_t hdr[12];
        st_be64(hdr, table_offset);
        st_be32(hdr + 8, (uint32_t)tc);
        ret = qcow2_write_meta(s, QCOW2_OL_MAIN_HEADER, 48, hdr, sizeof(hdr));
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret < 0) {
        free(table);
        return ret;
    }
    uint64_t old_offset = s->refcount_table_offset;
    uint64_t old_bytes = old_size * 8;
    for (uint64_t i = 0; i < new_size; i++) {
        table[i] = be64toh(table[i]);
    }
    /* Data writes check overlaps under map_lock: swap the table under it. */
    pthread_mutex_lock(&s->map_lock);
    uint64_t *old_table = s->refcount_table;
    s->refcount_table = table;
    s->refcount_table_offset = table_offset;
    s->refcount_table_size = (uint32_t)new_size;
    qcow2_reftable_note_used(s);
    pthread_mutex_unlock(&s->map_lock);
    free(old_table);
    qcow2_free_clusters(s, old_offset, old_bytes, QCOW2_DISCARD_OTHER);
    return 0;
}

/*
 * Make sure every refcount block [offset, offset+len) needs exists.
 * Returns 0 when they all did, 1 when one was made (the caller searches
 * again: it may have taken the clusters the caller had in mind), or -errno.
 */
static int ensure_refblocks(struct qcow2_state *s, uint64_t offset, uint64_t len)
{
    uint64_t c0 = offset >> s->cluster_bits;
    uint64_t n = ((offset + len - 1) >> s->cluster_bits) - c0 + 1;
    uint64_t first = c0 >> s->rb_bits;
    uint64_t last = (c0 + n - 1) >> s->rb_bits;
    bool made = false;
    for (uint64_t ti = first; ti <= last; ti++) {
        if (ti >= s->refcount_table_size) {
            int ret = grow_reftable(s, ti);
            return ret < 0 ? ret : 1;
        }
        if (!(s->refcount_table[ti] & REFT_OFFSET_MASK)) {
            /* Placed outside [c0, c0 + n): the caller's clusters stay free. */
            int ret = alloc_refblock(s, ti, c0, n);
            if (ret != 0) {
                return ret;
            }
            made = true;
        }
    }
    /* New blocks may have used clusters after the run the caller counts on: check. */
    return made ? 1 : 0;
}

/* ---- Updates ----------------------------------------------------------------------- */

static void discard_range(struct qcow2_state *s, uint64_t offset, uint64_t len,
                          enum qcow2_discard_type type)
{
    if (!s->discard_passthrough[type] || !len) {
        return;
    }
    /* Advisory: a failure only means the space is not given back. */
    bnode_co_pdiscard(s->bs->file, offset, len);
}

/* Add addend to the refcount of every cluster [offset, offset+length) touches. */
static int update(struct qcow2_state *s, uint64_t offset, uint64_t length, int64_t addend,
                  enum qcow2_discard_type type, uint64_t *done)
{
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + length - 1) >> s->cluster_bits;
    uint64_t freed_start = 0, freed_len = 0;
    void *block = NULL;
    uint64_t block_ti = UINT64_MAX;
    int ret = 0;

    *done = 0;
    for (uint64_t c = first; c <= last; c++) {
        uint64_t ti = c >> s->rb_bits;
        if (ti != block_ti) {
            qcow2_cache_put(s->rb_cache, &block);
            uint64_t off = block_offset(s, ti);
            if (!off) {
                qcow2_signal_corruption(s, "cluster 0x%" PRIx64 " has no refcount block",
                                        c << s->cluster_bits);
                ret = -EIO;
                break;
            }
            ret = qcow2_cache_get(s->rb_cache, off, &block);
            if (ret < 0) {
                break;
            }
            block_ti = ti;
        }
        uint64_t idx = c & (s->rb_size - 1);
        uint64_t v = qcow2_rb_get(s, block, idx);
        uint64_t nv;
        if (addend < 0) {
            if (v < (uint64_t)-addend) {
                qcow2_signal_corruption(s, "refcount of cluster 0x%" PRIx64 " would drop "
                                        "below zero", c << s->cluster_bits);
                ret = -EIO;
                break;
            }
            nv = v - (uint64_t)-addend;
        } else {
            if (s->refcount_max - v < (uint64_t)addend) {
                ret = -ERANGE;
                break;
            }
            nv = v + (uint64_t)addend;
        }
        qcow2_rb_set(s, block, idx, nv);
        qcow2_cache_mark_dirty(s->rb_cache, block);
        (*done)++;
        if (nv == 0) {
            uint64_t coff = c << s->cluster_bits;
            if (c < s->free_cluster_index) {
                s->free_cluster_index = c;
            }
            /* A freed metadata cluster must not come back from a cache. */
            qcow2_cache_discard(s->l2_cache, coff);
            qcow2_cache_discard(s->rb_cache, coff);
            if (freed_len && freed_start + freed_len == coff) {
                freed_len += s->cluster_size;
            } else {
                discard_range(s, freed_start, freed_len, type);
                freed_start = coff;
                freed_len = s->cluster_size;
            }
        }
    }
    qcow2_cache_put(s->rb_cache, &block);
    discard_range(s, freed_start, freed_len, type);
    return ret;
}

int qcow2_update_refcount(struct qcow2_state *s, uint64_t offset, uint64_t length,
                          int64_t addend, enum qcow2_discard_type type)
{
    if (length == 0 || addend == 0) {
        return 0;
    }
    if (addend < 0) {
        /* Dropped references must be gone from the L2 tables on disk first. */
        int ret = qcow2_cache_set_dependency(s->rb_cache, s->l2_cache);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t done;
    int ret = update(s, offset, length, addend, type, &done);
    if (ret < 0 && done) {
        /* Undo what was done, so the refcounts stay as they were. */
        uint64_t undone;
        update(s, start_of_cluster(s, offset), done << s->cluster_bits, -addend,
               QCOW2_DISCARD_NEVER, &undone);
    }
    return ret;
}

void qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t size,
                         enum qcow2_discard_type type)
{
    int ret = qcow2_update_refcount(s, offset, size, -1, type);
    if (ret < 0) {
        log_error("%s: cannot free clusters at 0x%" PRIx64 " (%s); they leak until "
                  "'qemu-img check -r leaks'", bnode_describe(s->bs), offset, strerror(-ret));
    }
}

void qcow2_parse_compressed(const struct qcow2_state *s, uint64_t entry, uint64_t *coffset,
                            uint64_t *csize)
{
    uint64_t off = entry & s->cluster_offset_mask;
    uint64_t sectors = ((entry >> s->csize_shift) & s->csize_mask) + 1;
    *coffset = off;
    *csize = sectors * 512 - (off & 511);
}

void qcow2_free_any_cluster(struct qcow2_state *s, uint64_t entry,
                            enum qcow2_discard_type type)
{
    if (entry & QCOW_OFLAG_COMPRESSED) {
        uint64_t coff, csize;
        qcow2_parse_compressed(s, entry, &coff, &csize);
        uint64_t start = coff & ~511ULL;
        qcow2_free_clusters(s, start, coff + csize - start, type);
        return;
    }
    uint64_t off = entry & L2E_OFFSET_MASK;
    if (qcow2_has_data_file(s)) {
        /* Data file clusters are not counted; give the space back if asked to. */
        if ((entry & QCOW_OFLAG_COPIED) && s->discard_passthrough[type]) {
            bnode_co_pdiscard(s->data_file, off, s->cluster_size);
        }
        return;
    }
    if (off) {
        qcow2_free_clusters(s, off, s->cluster_size, type);
    }
}

/* ---- Allocation ----------------------------------------------------------------- */

int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t size, bool *fresh)
{
    uint64_t n = size_to_clusters(s, size);
    uint64_t start;
    for (int tries = 0;; tries++) {
        int ret = find_free(s, n, &start);
        if (ret < 0) {
            return ret;
        }
        ret = ensure_refblocks(s, start << s->cluster_bits, n << s->cluster_bits);
        if (ret < 0) {
            return ret;
        }
        if (ret == 0) {
            break;
        }
        if (tries > 1000) {
            return -EIO;
        }
    }
    uint64_t off = start << s->cluster_bits;
    int ret = qcow2_update_refcount(s, off, n << s->cluster_bits, 1, QCOW2_DISCARD_NEVER);
    if (ret < 0) {
        return ret;
    }
    if (start == s->free_cluster_index) {
        s->free_cluster_index = start + n;
    }
    bool f = qcow2_take_fresh(s, off, n << s->cluster_bits);
    if (fresh) {
        *fresh = f;
    }
    trace("qcow2_alloc_clusters", "%" PRIu64 " at 0x%" PRIx64 "%s", n, off, f ? " (fresh)" : "");
    return (int64_t)off;
}

int64_t qcow2_alloc_clusters_at(struct qcow2_state *s, uint64_t offset, int64_t n)
{
    if (n <= 0) {
        return 0;
    }
    for (int tries = 0; tries < 1000; tries++) {
        int64_t k = 0;
        while (k < n) {
            uint64_t rc;
            int ret = qcow2_get_refcount(s, (offset >> s->cluster_bits) + k, &rc);
            if (ret < 0) {
                return ret;
            }
            if (rc) {
                break;
            }
            k++;
        }
        if (k == 0) {
            return 0;
        }
        int ret = ensure_refblocks(s, offset, (uint64_t)k << s->cluster_bits);
        if (ret < 0) {
            return ret;
        }
        if (ret > 0) {
            continue;
        }
        ret = qcow2_update_refcount(s, offset, (uint64_t)k << s->cluster_bits, 1,
                                    QCOW2_DISCARD_NEVER);
        if (ret < 0) {
            return ret;
        }
        qcow2_take_fresh(s, offset, (uint64_t)k << s->cluster_bits);
        return k;
    }
    return -EIO;
}

int64_t qcow2_alloc_bytes(struct qcow2_state *s, uint64_t size)
{
    uint64_t off = s->free_byte_offset;
    uint64_t rc = 0;
    int ret;

    if (size == 0 || size > s->cluster_size) {
        return -EINVAL;
    }
    if (off) {
        ret = qcow2_get_refcount(s, off >> s->cluster_bits, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc == 0 || rc == s->refcount_max) {
            off = 0;
        }
    }
    uint64_t free_in = off ? s->cluster_size - offset_into_cluster(s, off) : 0;
    if (off && free_in >= size) {
        /* Another reference to the partly used cluster. */
        ret = qcow2_update_refcount(s, off, size, 1, QCOW2_DISCARD_NEVER);
        if (ret < 0) {
            return ret;
        }
    } else {
        int64_t next = -1;
        if (off) {
            /* Spill into the cluster right after, if it is free. */
            uint64_t after = start_of_cluster(s, off) + s->cluster_size;
            int64_t k = qcow2_alloc_clusters_at(s, after, 1);
            if (k < 0) {
                return k;
            }
            if (k == 1) {
                next = (int64_t)after;
                ret = qcow2_update_refcount(s, off, 1, 1, QCOW2_DISCARD_NEVER);
                if (ret < 0) {
                    qcow2_free_clusters(s, after, s->cluster_size, QCOW2_DISCARD_NEVER);
                    return ret;
                }
            }
        }
        if (next < 0) {
            int64_t fresh = qcow2_alloc_clusters(s, s->cluster_size, NULL);
            if (fresh < 0) {
                return fresh;
            }
            off = (uint64_t)fresh;
        }
    }
    int r = qcow2_cache_set_dependency(s->l2_cache, s->rb_cache);
    if (r < 0) {
        return r;
    }
    s->free_byte_offset = off + size;
    if (offset_into_cluster(s, s->free_byte_offset) == 0) {
        s->free_byte_offset = 0;
    }
    return (int64_t)off;
}

int64_t qcow2_refcount_area_end(struct qcow2_state *s)
{
    for (int64_t ti = (int64_t)s->reftable_used - 1; ti >= 0; ti--) {
        uint64_t off = block_offset(s, ti);
        if (!off) {
            continue;
        }
        void *block;
        int ret = qcow2_cache_get(s->rb_cache, off, &block);
        if (ret < 0) {
            return ret;
        }
        for (int64_t i = s->rb_size - 1; i >= 0; i--) {
            if (qcow2_rb_get(s, block, i)) {
                qcow2_cache_put(s->rb_cache, &block);
                return (((uint64_t)ti << s->rb_bits) + i + 1) << s->cluster_bits;
            }
        }
        qcow2_cache_put(s->rb_cache, &block);
    }
    return 0;
}
