/*
 * Guest to host mapping: the L1 table (in memory) and L2 tables (cached in
 * slices).  Lookups, the lock-free lookup for cached slices, choosing host
 * clusters for writes (in place, reusing a host cluster, or new clusters
 * with copy-on-write regions around the data), linking them in once the
 * data is written, zero clusters and discard.
 *
 * Everything but qcow2_peek_host_offset runs under s->lock.
 */
#include "qcow2/qcow2-int.h"

#include "util/log.h"

/* ---- Entries -------------------------------------------------------------------- */

void qcow2_l2_set(struct qcow2_state *s, uint64_t *slice, uint32_t idx, uint64_t entry,
                  uint64_t bitmap)
{
    pthread_mutex_lock(&s->map_lock);
    slice[idx * (s->l2_entry_size / 8)] = htobe64(entry);
    if (s->ext_l2) {
        slice[idx * 2 + 1] = htobe64(bitmap);
    }
    pthread_mutex_unlock(&s->map_lock);
}

enum qcow2_sc_type qcow2_sc_type(const struct qcow2_state *s, uint64_t entry, uint64_t bitmap,
                                 uint32_t sc_index)
{
    if (entry & QCOW_OFLAG_COMPRESSED) {
        return QCOW2_SC_COMPRESSED;
    }
    bool host = (entry & L2E_OFFSET_MASK) ||
                (qcow2_has_data_file(s) && (entry & QCOW_OFLAG_COPIED));
    if (s->ext_l2) {
        if (bitmap & (bitmap >> 32) & L2_BITMAP_ALL_ALLOC) {
            return QCOW2_SC_INVALID;
        }
        if (bitmap & (1ULL << sc_index)) {
            return host ? QCOW2_SC_NORMAL : QCOW2_SC_INVALID;
        }
        if (bitmap & (1ULL << (sc_index + 32))) {
            return host ? QCOW2_SC_ZERO_ALLOC : QCOW2_SC_ZERO;
        }
        return host ? QCOW2_SC_UNALLOC_ALLOC : QCOW2_SC_UNALLOC;
    }
    if (entry & QCOW_OFLAG_ZERO) {
        return host ? QCOW2_SC_ZERO_ALLOC : QCOW2_SC_ZERO;
    }
    return host ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOC;
}

uint64_t qcow2_slice_bytes_left(const struct qcow2_state *s, uint64_t offset)
{
    uint64_t end_cluster = ((offset >> s->cluster_bits) | (s->l2_slice_size - 1)) + 1;
    return (end_cluster << s->cluster_bits) - offset;
}

/* ---- The L1 table ------------------------------------------------------------------ */

int qcow2_write_l1_entry(struct qcow2_state *s, uint32_t idx)
{
    uint64_t buf[64];
    uint32_t start = ALIGN_DOWN(idx, 64u);
    uint32_t n = MIN(64u, s->l1_size - start);
    for (uint32_t i = 0; i < n; i++) {
        buf[i] = htobe64(s->l1_table[start + i]);
    }
    return qcow2_write_meta(s, QCOW2_OL_ACTIVE_L1, s->l1_table_offset + (uint64_t)start * 8,
                            buf, (uint64_t)n * 8);
}

int qcow2_grow_l1_table(struct qcow2_state *s, uint64_t min_size, bool exact)
{
    uint64_t new_size;

    if (min_size <= s->l1_size) {
        return 0;
    }
    if (exact) {
        new_size = min_size;
    } else {
        new_size = MAX(1, s->l1_size);
        while (new_size < min_size) {
            new_size = (new_size * 3 + 1) / 2;
        }
    }
    if (new_size * 8 > QCOW2_MAX_L1_BYTES) {
        new_size = QCOW2_MAX_L1_BYTES / 8;
        if (new_size < min_size) {
            return -EFBIG;
        }
    }
    uint64_t bytes = new_size * 8;
    int64_t off = qcow2_alloc_clusters(s, bytes, NULL);
    if (off < 0) {
        return (int)off;
    }
    /* The new table's refcounts, then the table, then the header. */
    int ret = qcow2_cache_flush(s->rb_cache);
    uint64_t *table = xzalloc(ALIGN_UP(bytes, (uint64_t)s->cluster_size));
    for (uint32_t i = 0; i < s->l1_size; i++) {
        table[i] = htobe64(s->l1_table[i]);
    }
    if (ret == 0) {
        ret = qcow2_write_meta(s, 0, (uint64_t)off, table, bytes);
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        uint8_t hdr[12];
        st_be32(hdr, (uint32_t)new_size);
        st_be64(hdr + 4, (uint64_t)off);
        ret = qcow2_write_meta(s, QCOW2_OL_MAIN_HEADER, 36, hdr, sizeof(hdr));
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret < 0) {
        free(table);
        qcow2_free_clusters(s, (uint64_t)off, bytes, QCOW2_DISCARD_OTHER);
        return ret;
    }
    for (uint64_t i = 0; i < new_size; i++) {
        table[i] = be64toh(table[i]);
    }
    uint64_t old_off = s->l1_table_offset;
    uint64_t old_bytes = (uint64_t)s->l1_size * 8;
    pthread_mutex_lock(&s->map_lock);
    uint64_t *old = s->l1_table;
    s->l1_table = table;
    s->l1_size = (uint32_t)new_size;
    s->l1_table_offset = (uint64_t)off;
    pthread_mutex_unlock(&s->map_lock);
    free(old);
    trace("qcow2_grow_l1", "%" PRIu64 " entries at 0x%" PRIx64, new_size, (uint64_t)off);
    if (old_bytes) {
        qcow2_free_clusters(s, old_off, old_bytes, QCOW2_DISCARD_OTHER);
    }
    return 0;
}

/* ---- L2 tables ------------------------------------------------------------------- */

static uint32_t slice_bytes(const struct qcow2_state *s)
{
    return s->l2_slice_size * s->l2_entry_size;
}

/*
 * A new L2 table for L1 entry l1_index: a copy of the old one when it is
 * shared with a snapshot, else empty.  Written before the L1 entry points
 * at it, after the refcount of its cluster.
 */
static int l2_allocate(struct qcow2_state *s, uint32_t l1_index)
{
    uint64_t old = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    int64_t off = qcow2_alloc_clusters(s, s->cluster_size, NULL);
    uint32_t nslices = s->l2_size / s->l2_slice_size;
    int ret = 0;

    if (off < 0) {
        return (int)off;
    }
    trace("qcow2_l2_allocate", "L1 entry %u at 0x%" PRIx64 " (from 0x%" PRIx64 ")", l1_index,
          (uint64_t)off, old);
    for (uint32_t i = 0; i < nslices && ret == 0; i++) {
        void *slice, *old_slice = NULL;
        if (old) {
            ret = qcow2_cache_get(s->l2_cache, old + (uint64_t)i * slice_bytes(s), &old_slice);
            if (ret < 0) {
                break;
            }
        }
        ret = qcow2_cache_get_empty(s->l2_cache, (uint64_t)off + (uint64_t)i * slice_bytes(s),
                                    &slice);
        if (ret < 0) {
            qcow2_cache_put(s->l2_cache, &old_slice);
            break;
        }
        pthread_mutex_lock(&s->map_lock);
        if (old_slice) {
            memcpy(slice, old_slice, slice_bytes(s));
        } else {
            memset(slice, 0, slice_bytes(s));
        }
        pthread_mutex_unlock(&s->map_lock);
        qcow2_cache_mark_dirty(s->l2_cache, slice);
        qcow2_cache_put(s->l2_cache, &slice);
        qcow2_cache_put(s->l2_cache, &old_slice);
    }
    if (ret == 0) {
        ret = qcow2_cache_set_dependency(s->l2_cache, s->rb_cache);
    }
    if (ret == 0) {
        ret = qcow2_cache_flush(s->l2_cache);
    }
    if (ret < 0) {
        qcow2_free_clusters(s, (uint64_t)off, s->cluster_size, QCOW2_DISCARD_NEVER);
        return ret;
    }
    uint64_t old_entry = s->l1_table[l1_index];
    pthread_mutex_lock(&s->map_lock);
    s->l1_table[l1_index] = (uint64_t)off | QCOW_OFLAG_COPIED;
    pthread_mutex_unlock(&s->map_lock);
    ret = qcow2_write_l1_entry(s, l1_index);
    if (ret < 0) {
        pthread_mutex_lock(&s->map_lock);
        s->l1_table[l1_index] = old_entry;
        pthread_mutex_unlock(&s->map_lock);
        qcow2_free_clusters(s, (uint64_t)off, s->cluster_size, QCOW2_DISCARD_NEVER);
        return ret;
    }
    if (old) {
        qcow2_free_clusters(s, old, s->cluster_size, QCOW2_DISCARD_OTHER);
    }
    return 0;
}

int qcow2_get_l2_slice(struct qcow2_state *s, uint64_t offset, bool allocate,
                       uint64_t **slice, uint32_t *slice_index)
{
    uint64_t l1_index = offset_to_l1_index(s, offset);
    int ret;

    *slice = NULL;
    if (l1_index >= s->l1_size) {
        if (!allocate) {
            return 0;
        }
        ret = qcow2_grow_l1_table(s, l1_index + 1, false);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t l1e = s->l1_table[l1_index];
    uint64_t l2_offset = l1e & L1E_OFFSET_MASK;
    if (l2_offset & (s->cluster_size - 1)) {
        qcow2_signal_corruption(s, "L2 table offset 0x%" PRIx64 " is not cluster aligned "
                                "(L1 index %" PRIu64 ")", l2_offset, l1_index);
        return -EIO;
    }
    if (allocate && (!l2_offset || !(l1e & QCOW_OFLAG_COPIED))) {
        ret = l2_allocate(s, (uint32_t)l1_index);
        if (ret < 0) {
            return ret;
        }
        l2_offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    }
    if (!l2_offset) {
        return 0;
    }
    uint32_t l2_index = offset_to_l2_index(s, offset);
    uint32_t start = l2_index & ~(s->l2_slice_size - 1);
    ret = qcow2_cache_get(s->l2_cache, l2_offset + (uint64_t)start * s->l2_entry_size,
                          (void **)slice);
    if (ret < 0) {
        return ret;
    }
    *slice_index = l2_index - start;
    return 0;
}

/* ---- Lookups --------------------------------------------------------------------- */

static bool type_has_host(enum qcow2_sc_type t)
{
    return t == QCOW2_SC_NORMAL || t == QCOW2_SC_ZERO_ALLOC || t == QCOW2_SC_UNALLOC_ALLOC;
}

/*
 * How many subclusters from (idx, sc) share the type first and, where
 * there is host data, contiguous host clusters; at most max.  entries holds
 * n L2 entries (raw, big-endian, l2_entry_size each) starting at idx.
 */
static uint64_t run_length(const struct qcow2_state *s, const uint64_t *entries, uint32_t n,
                           uint32_t sc, uint64_t max, enum qcow2_sc_type first)
{
    uint32_t words = s->l2_entry_size / 8;
    uint64_t host = be64toh(entries[0]) & L2E_OFFSET_MASK;
    uint64_t count = 0;

    for (uint32_t i = 0; i < n; i++) {
        uint64_t entry = be64toh(entries[i * words]);
        uint64_t bitmap = s->ext_l2 ? be64toh(entries[i * words + 1]) : 0;
        if (i && type_has_host(first) &&
            ((entry & L2E_OFFSET_MASK) != host + (uint64_t)i * s->cluster_size ||
             ((entry ^ be64toh(entries[0])) & QCOW_OFLAG_COPIED))) {
            break;
        }
        for (uint32_t j = i ? 0 : sc; j < s->sc_per_cluster; j++) {
            if (qcow2_sc_type(s, entry, bitmap, j) != first) {
                return count;
            }
            if (++count == max) {
                return count;
            }
        }
        if (first == QCOW2_SC_COMPRESSED) {
            break;
        }
    }
    return count;
}

/* Classify offset from the entries of its slice; -EIO for a corrupt entry. */
static int classify(struct qcow2_state *s, const uint64_t *entries, uint32_t n,
                    uint64_t offset, uint64_t *bytes, uint64_t *host_offset,
                    enum qcow2_sc_type *type, uint64_t *entry_out, bool report)
{
    uint64_t entry = be64toh(entries[0]);
    uint64_t bitmap = s->ext_l2 ? be64toh(entries[1]) : 0;
    uint32_t sc = offset_to_sc_index(s, offset);
    enum qcow2_sc_type t = qcow2_sc_type(s, entry, bitmap, sc);

    if (t == QCOW2_SC_INVALID) {
        if (report) {
            qcow2_signal_corruption(s, "invalid L2 entry 0x%" PRIx64 " (bitmap 0x%" PRIx64
                                    ") for guest offset 0x%" PRIx64, entry, bitmap, offset);
        }
        return -EIO;
    }
    if (type_has_host(t) && (entry & L2E_OFFSET_MASK & (s->cluster_size - 1))) {
        if (report) {
            qcow2_signal_corruption(s, "L2 entry for guest offset 0x%" PRIx64 " points at "
                                    "host offset 0x%" PRIx64 ", which is not cluster aligned",
                                    start_of_cluster(s, offset),
                                    (uint64_t)(entry & L2E_OFFSET_MASK));
        }
        return -EIO;
    }
    uint64_t in_sc = offset & (s->sc_size - 1);
    uint64_t max = (in_sc + *bytes + s->sc_size - 1) >> s->sc_bits;
    uint64_t run = run_length(s, entries, n, sc, max, t);
    *bytes = MIN(*bytes, (run << s->sc_bits) - in_sc);
    *type = t;
    *entry_out = entry;
    if (t == QCOW2_SC_COMPRESSED) {
        *host_offset = entry;
    } else if (type_has_host(t)) {
        *host_offset = (entry & L2E_OFFSET_MASK) + offset_into_cluster(s, offset);
    } else {
        *host_offset = 0;
    }
    return 0;
}

/* Clusters of the slice a lookup of bytes at offset needs to see. */
static uint32_t clusters_needed(const struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                                uint32_t slice_index)
{
    uint64_t n = (offset_into_cluster(s, offset) + bytes + s->cluster_size - 1) >>
                 s->cluster_bits;
    return (uint32_t)MIN(n, (uint64_t)(s->l2_slice_size - slice_index));
}

/* For an offset with no L2 table: the bytes up to the end of that table's range. */
static uint64_t unallocated_span(const struct qcow2_state *s, uint64_t offset, uint64_t bytes)
{
    uint64_t l2_span = 1ULL << (s->l2_bits + s->cluster_bits);
    uint64_t end = ALIGN_DOWN(offset, l2_span) + l2_span;
    return MIN(bytes, end - offset);
}

int qcow2_get_host_offset(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                          uint64_t *host_offset, enum qcow2_sc_type *type,
                          uint64_t *entry_out)
{
    uint64_t *slice;
    uint32_t idx;
    uint64_t entry;

    *bytes = MIN(*bytes, qcow2_slice_bytes_left(s, offset));
    int ret = qcow2_get_l2_slice(s, offset, false, &slice, &idx);
    if (ret < 0) {
        return ret;
    }
    if (!slice) {
        *bytes = unallocated_span(s, offset, *bytes);
        *type = QCOW2_SC_UNALLOC;
        *host_offset = 0;
        if (entry_out) {
            *entry_out = 0;
        }
        return 0;
    }
    uint32_t n = clusters_needed(s, offset, *bytes, idx);
    ret = classify(s, slice + idx * (s->l2_entry_size / 8), n, offset, bytes, host_offset, type,
                   &entry, true);
    qcow2_cache_put(s->l2_cache, (void **)&slice);
    if (entry_out) {
        *entry_out = entry;
    }
    return ret;
}

#define PEEK_MAX_CLUSTERS 64

bool qcow2_peek_host_offset(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                            uint64_t *host_offset, enum qcow2_sc_type *type,
                            uint64_t *entry_out)
{
    uint64_t entries[PEEK_MAX_CLUSTERS * 2];
    uint64_t l1_index = offset_to_l1_index(s, offset);
    uint64_t entry;
    uint64_t n_bytes = MIN(*bytes, qcow2_slice_bytes_left(s, offset));
    uint32_t l2_index = offset_to_l2_index(s, offset);
    uint32_t start = l2_index & ~(s->l2_slice_size - 1);
    uint32_t idx = l2_index - start;
    uint32_t n = MIN(clusters_needed(s, offset, n_bytes, idx), PEEK_MAX_CLUSTERS);
    uint32_t words = s->l2_entry_size / 8;
    bool hit = false;

    pthread_mutex_lock(&s->map_lock);
    if (l1_index < s->l1_size) {
        uint64_t l2_offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
        if (l2_offset && !(l2_offset & (s->cluster_size - 1))) {
            hit = qcow2_cache_peek(s->l2_cache, l2_offset + (uint64_t)start * s->l2_entry_size,
                                   idx * words, n * words, entries);
        }
    }
    pthread_mutex_unlock(&s->map_lock);
    if (!hit) {
        return false;
    }
    n_bytes = MIN(n_bytes, ((uint64_t)n << s->cluster_bits) - offset_into_cluster(s, offset));
    if (classify(s, entries, n, offset, &n_bytes, host_offset, type, &entry, false) < 0) {
        return false;
    }
    *bytes = n_bytes;
    if (entry_out) {
        *entry_out = entry;
    }
    return true;
}

/* ---- In-flight allocations ---------------------------------------------------------- */

/*
 * Wait for allocations touching the clusters of [offset, offset + *bytes),
 * or cut *bytes short of one that starts later.  Returns true if it
 * waited (the caller looks at the L2 table again).
 */
static bool handle_dependencies(struct qcow2_state *s, uint64_t offset, uint64_t *bytes)
{
    uint64_t start = start_of_cluster(s, offset);
    uint64_t end = ALIGN_UP(offset + *bytes, (uint64_t)s->cluster_size);
    struct qcow2_alloc *a;

    list_for_each(a, &s->allocs, link) {
        uint64_t a_start = a->guest_offset;
        uint64_t a_end = a_start + ((uint64_t)a->nb_clusters << s->cluster_bits);
        if (!ranges_overlap(start, end - start, a_start, a_end - a_start)) {
            continue;
        }
        if (a_start <= start) {
            co_queue_wait_co_mutex(&a->waiters, &s->lock);
            return true;
        }
        *bytes = a_start - offset;
        end = a_start;
    }
    return false;
}

void qcow2_wait_allocs(struct qcow2_state *s, uint64_t offset, uint64_t bytes)
{
    uint64_t start = start_of_cluster(s, offset);
    uint64_t end = ALIGN_UP(offset + bytes, (uint64_t)s->cluster_size);
    struct qcow2_alloc *a;
again:
    list_for_each(a, &s->allocs, link) {
        uint64_t a_len = (uint64_t)a->nb_clusters << s->cluster_bits;
        if (ranges_overlap(start, end - start, a->guest_offset, a_len)) {
            co_queue_wait_co_mutex(&a->waiters, &s->lock);
            goto again;
        }
    }
}

void qcow2_alloc_done(struct qcow2_state *s, struct qcow2_alloc *m)
{
    list_del(&m->link);
    co_queue_restart_all(&m->waiters);
}

/* ---- Choosing where a write goes --------------------------------------------------- */

/* Whether the (sub)clusters of [a, b) in this cluster can be written where they are. */
static bool in_place(const struct qcow2_state *s, uint64_t entry, uint64_t bitmap, uint64_t a,
                     uint64_t b)
{
    if (!(entry & QCOW_OFLAG_COPIED) || (entry & QCOW_OFLAG_COMPRESSED)) {
        return false;
    }
    for (uint32_t sc = a >> s->sc_bits; sc <= (b - 1) >> s->sc_bits; sc++) {
        if (qcow2_sc_type(s, entry, bitmap, sc) != QCOW2_SC_NORMAL) {
            return false;
        }
    }
    return true;
}

/* Whether the host cluster stays (only its state changes): it is ours alone. */
static bool can_keep(const struct qcow2_state *s, uint64_t entry)
{
    if (!(entry & QCOW_OFLAG_COPIED) || (entry & QCOW_OFLAG_COMPRESSED)) {
        return false;
    }
    return (entry & L2E_OFFSET_MASK) || qcow2_has_data_file(s);
}

/* Whether subcluster sc of the old entry holds data a new cluster must copy. */
static bool data_bearing(const struct qcow2_state *s, uint64_t entry, uint64_t bitmap,
                         uint32_t sc)
{
    enum qcow2_sc_type t = qcow2_sc_type(s, entry, bitmap, sc);
    return t == QCOW2_SC_NORMAL || t == QCOW2_SC_COMPRESSED;
}

/*
 * The copy-on-write regions of m: before the data in its first cluster
 * (first/first_bm: that cluster's entry) and after it in its last.
 */
static void calculate_cow(struct qcow2_state *s, struct qcow2_alloc *m, uint64_t first,
                          uint64_t first_bm, uint64_t last, uint64_t last_bm)
{
    uint64_t a = m->data_off;                           /* in the first cluster */
    uint64_t last_start = (uint64_t)(m->nb_clusters - 1) << s->cluster_bits;
    uint64_t e = m->data_off + m->data_len - last_start; /* in the last cluster, (0, cs] */
    uint64_t head = 0, tail = s->cluster_size;

    if (s->ext_l2) {
        uint32_t sca = a >> s->sc_bits;
        head = a;
        if ((a & (s->sc_size - 1)) &&
            !(m->keep_old && qcow2_sc_type(s, first, first_bm, sca) == QCOW2_SC_NORMAL)) {
            head = (uint64_t)sca << s->sc_bits;
        }
        if (!m->keep_old) {
            for (uint32_t j = 0; j < sca; j++) {
                if (data_bearing(s, first, first_bm, j)) {
                    head = (uint64_t)j << s->sc_bits;
                    break;
                }
            }
        }
        uint32_t sce = (e - 1) >> s->sc_bits;
        tail = e;
        if ((e & (s->sc_size - 1)) &&
            !(m->keep_old && qcow2_sc_type(s, last, last_bm, sce) == QCOW2_SC_NORMAL)) {
            tail = (uint64_t)(sce + 1) << s->sc_bits;
        }
        if (!m->keep_old) {
            for (uint32_t j = s->sc_per_cluster - 1; j > sce; j--) {
                if (data_bearing(s, last, last_bm, j)) {
                    tail = (uint64_t)(j + 1) << s->sc_bits;
                    break;
                }
            }
        }
    }
    m->cow_start_off = head;
    m->cow_start_len = a - head;
    m->cow_end_off = last_start + e;
    m->cow_end_len = tail - e;
}

static struct qcow2_alloc *alloc_new(uint64_t guest, uint64_t host, int nb, bool keep_old,
                                     bool fresh, uint64_t data_off, uint64_t data_len)
{
    struct qcow2_alloc *m = xzalloc(sizeof(*m));
    m->guest_offset = guest;
    m->host_offset = host;
    m->nb_clusters = nb;
    m->keep_old = keep_old;
    m->fresh = fresh;
    m->data_off = data_off;
    m->data_len = data_len;
    co_queue_init(&m->waiters);
    list_init(&m->link);
    return m;
}

int qcow2_alloc_host_offset(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                            uint64_t *host_offset, struct qcow2_alloc **m)
{
    uint64_t *slice;
    uint32_t idx;
    int ret;

    *m = NULL;
    for (;;) {
        *bytes = MIN(*bytes, qcow2_slice_bytes_left(s, offset));
        if (!handle_dependencies(s, offset, bytes)) {
            break;
        }
    }
    ret = qcow2_get_l2_slice(s, offset, true, &slice, &idx);
    if (ret < 0) {
        return ret;
    }
    uint64_t in_cluster = offset_into_cluster(s, offset);
    uint64_t guest = start_of_cluster(s, offset);
    uint32_t avail = clusters_needed(s, offset, *bytes, idx);
    uint64_t e0 = l2_get_entry(s, slice, idx);
    uint64_t b0 = l2_get_bitmap(s, slice, idx);
    uint64_t end0 = MIN((uint64_t)s->cluster_size, in_cluster + *bytes);

    if (!(e0 & QCOW_OFLAG_COMPRESSED)) {
        enum qcow2_sc_type t = qcow2_sc_type(s, e0, b0, offset_to_sc_index(s, offset));
        if (t == QCOW2_SC_INVALID || ((e0 & L2E_OFFSET_MASK) & (s->cluster_size - 1))) {
            qcow2_signal_corruption(s, "invalid L2 entry 0x%" PRIx64 " for guest offset 0x%"
                                    PRIx64, e0, guest);
            qcow2_cache_put(s->l2_cache, (void **)&slice);
            return -EIO;
        }
    }

    /* 1. In place: a run of clusters that are ours and allocated where written. */
    if (in_place(s, e0, b0, in_cluster, end0)) {
        uint64_t host = e0 & L2E_OFFSET_MASK;
        uint32_t n = 1;
        uint64_t left = *bytes - (end0 - in_cluster);
        while (n < avail && left) {
            uint64_t e = l2_get_entry(s, slice, idx + n);
            uint64_t b = l2_get_bitmap(s, slice, idx + n);
            uint64_t len = MIN(left, (uint64_t)s->cluster_size);
            if ((e & L2E_OFFSET_MASK) != host + ((uint64_t)n << s->cluster_bits) ||
                !in_place(s, e, b, 0, len)) {
                break;
            }
            left -= len;
            n++;
        }
        *bytes -= left;
        *host_offset = host + in_cluster;
        qcow2_cache_put(s->l2_cache, (void **)&slice);
        return 0;
    }

    /* 2. The host cluster stays, only its (sub)cluster state changes: one cluster. */
    if (can_keep(s, e0)) {
        uint64_t host = qcow2_has_data_file(s) ? guest : (e0 & L2E_OFFSET_MASK);
        *bytes = end0 - in_cluster;
        *m = alloc_new(guest, host, 1, true, false, in_cluster, *bytes);
        calculate_cow(s, *m, e0, b0, e0, b0);
        *host_offset = host + in_cluster;
        qcow2_cache_put(s->l2_cache, (void **)&slice);
        list_add_tail(&s->allocs, &(*m)->link);
        return 0;
    }

    /* 3. New clusters for a run of clusters that all need them. */
    uint32_t n = 1;
    uint64_t left = *bytes - (end0 - in_cluster);
    while (n < avail && left) {
        uint64_t e = l2_get_entry(s, slice, idx + n);
        if (can_keep(s, e)) {
            break;
        }
        left -= MIN(left, (uint64_t)s->cluster_size);
        n++;
    }
    *bytes -= left;
    uint64_t last = l2_get_entry(s, slice, idx + n - 1);
    uint64_t last_bm = l2_get_bitmap(s, slice, idx + n - 1);
    qcow2_cache_put(s->l2_cache, (void **)&slice);

    uint64_t host;
    bool fresh = false;
    if (qcow2_has_data_file(s)) {
        host = guest;
    } else {
        int64_t off = qcow2_alloc_clusters(s, (uint64_t)n << s->cluster_bits, &fresh);
        if (off < 0) {
            return (int)off;
        }
        host = (uint64_t)off;
    }
    *m = alloc_new(guest, host, (int)n, false, fresh, in_cluster, *bytes);
    calculate_cow(s, *m, e0, b0, last, last_bm);
    *host_offset = host + in_cluster;
    list_add_tail(&s->allocs, &(*m)->link);
    trace("qcow2_alloc", "guest 0x%" PRIx64 " -> host 0x%" PRIx64 " (%u clusters%s)", guest,
          host, n, fresh ? ", fresh" : "");
    return 0;
}

/* ---- Linking ------------------------------------------------------------------------ */

/* Alloc bits for subclusters [from, to) of a cluster. */
static uint64_t sc_range_bits(uint32_t from, uint32_t to)
{
    if (to <= from) {
        return 0;
    }
    uint64_t upto = to >= 32 ? L2_BITMAP_ALL_ALLOC : (1ULL << to) - 1;
    return upto & ~((1ULL << from) - 1);
}

int qcow2_alloc_link(struct qcow2_state *s, struct qcow2_alloc *m)
{
    uint64_t *slice;
    uint32_t idx;
    int ret;

    if (s->use_lazy_refcounts) {
        ret = qcow2_mark_dirty(s);
        if (ret < 0) {
            return ret;
        }
    }
    if (!m->keep_old && qcow2_need_accurate_refcounts(s) && !qcow2_has_data_file(s)) {
        ret = qcow2_cache_set_dependency(s->l2_cache, s->rb_cache);
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_get_l2_slice(s, m->guest_offset, true, &slice, &idx);
    if (ret < 0) {
        return ret;
    }
    uint64_t *old = xmalloc(sizeof(*old) * m->nb_clusters);
    int nold = 0;
    uint32_t first_sc = (uint32_t)(m->cow_start_off >> s->sc_bits);
    uint64_t last_start = (uint64_t)(m->nb_clusters - 1) << s->cluster_bits;
    uint64_t end_in_last = m->cow_end_off + m->cow_end_len - last_start;
    uint32_t end_sc = (uint32_t)((end_in_last + s->sc_size - 1) >> s->sc_bits);

    for (int i = 0; i < m->nb_clusters; i++) {
        uint64_t oe = l2_get_entry(s, slice, idx + i);
        uint64_t ob = l2_get_bitmap(s, slice, idx + i);
        uint64_t host = m->host_offset + ((uint64_t)i << s->cluster_bits);
        uint64_t ne = host | QCOW_OFLAG_COPIED;
        uint64_t nb = 0;
        if (s->ext_l2) {
            uint32_t from = i == 0 ? first_sc : 0;
            uint32_t to = i == m->nb_clusters - 1 ? end_sc : s->sc_per_cluster;
            uint64_t alloc = sc_range_bits(from, to);
            nb = m->keep_old ? ob : (ob & L2_BITMAP_ALL_ZERO);
            if (oe & QCOW_OFLAG_COMPRESSED) {
                nb = 0;
            }
            if (m->prealloc) {
                /* Reserved, not written: reads still go to the backing file. */
                alloc = 0;
            }
            nb = (nb | alloc) & ~(alloc << 32);
        }
        qcow2_l2_set(s, slice, idx + i, ne, nb);
        if (!m->keep_old && qcow2_entry_has_host(s, oe)) {
            old[nold++] = oe;
        }
    }
    qcow2_cache_mark_dirty(s->l2_cache, slice);
    qcow2_cache_put(s->l2_cache, (void **)&slice);
    /* The old clusters lose this reference only once the L2 table no longer has it. */
    for (int i = 0; i < nold; i++) {
        qcow2_free_any_cluster(s, old[i], QCOW2_DISCARD_NEVER);
    }
    free(old);
    return 0;
}

void qcow2_alloc_abort(struct qcow2_state *s, struct qcow2_alloc *m)
{
    if (!m->keep_old && !qcow2_has_data_file(s)) {
        qcow2_free_clusters(s, m->host_offset, (uint64_t)m->nb_clusters << s->cluster_bits,
                            QCOW2_DISCARD_NEVER);
    }
}

/* ---- Zero clusters and discard ---------------------------------------------------- */

/* Zero whole clusters [idx, idx + n) of a slice. */
static void zero_in_slice(struct qcow2_state *s, uint64_t *slice, uint32_t idx, uint32_t n,
                          int flags)
{
    bool dirty = false;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t oe = l2_get_entry(s, slice, idx + i);
        uint64_t ob = l2_get_bitmap(s, slice, idx + i);
        bool compressed = oe & QCOW_OFLAG_COMPRESSED;
        bool has_host = qcow2_entry_has_host(s, oe);
        bool unmap = compressed || ((flags & BDRV_REQ_MAY_UNMAP) && has_host &&
                                    !qcow2_has_data_file(s));
        uint64_t ne = unmap ? 0 : oe;
        uint64_t nb = ob;
        if (s->ext_l2) {
            nb = L2_BITMAP_ALL_ZERO;
        } else {
            ne |= QCOW_OFLAG_ZERO;
        }
        if (ne == oe && nb == ob) {
            continue;
        }
        qcow2_l2_set(s, slice, idx + i, ne, nb);
        dirty = true;
        if (unmap) {
            qcow2_free_any_cluster(s, oe, QCOW2_DISCARD_REQUEST);
        }
    }
    if (dirty) {
        qcow2_cache_mark_dirty(s->l2_cache, slice);
    }
}

/* Zero subclusters [from, to) of one cluster (extended L2; host cluster kept). */
static int zero_subclusters(struct qcow2_state *s, uint64_t *slice, uint32_t idx, uint32_t from,
                            uint32_t to)
{
    uint64_t oe = l2_get_entry(s, slice, idx);
    uint64_t ob = l2_get_bitmap(s, slice, idx);
    if (oe & QCOW_OFLAG_COMPRESSED) {
        return -ENOTSUP;
    }
    uint64_t bits = sc_range_bits(from, to);
    uint64_t nb = (ob & ~bits) | (bits << 32);
    if (nb != ob) {
        qcow2_l2_set(s, slice, idx, oe, nb);
        qcow2_cache_mark_dirty(s->l2_cache, slice);
    }
    return 0;
}

int qcow2_zero_clusters(struct qcow2_state *s, uint64_t offset, uint64_t bytes, int flags)
{
    uint64_t end = offset + bytes;
    bool backing = s->bs->backing != NULL;
    int ret;

    if (s->use_lazy_refcounts) {
        ret = qcow2_mark_dirty(s);
        if (ret < 0) {
            return ret;
        }
    }
    while (offset < end) {
        uint64_t n = MIN(end - offset, qcow2_slice_bytes_left(s, offset));
        qcow2_wait_allocs(s, offset, n);
        uint64_t *slice;
        uint32_t idx;
        /* Without a backing file, a range with no L2 table reads as zeroes already. */
        ret = qcow2_get_l2_slice(s, offset, backing || qcow2_data_file_is_raw(s), &slice,
                                 &idx);
        if (ret < 0) {
            return ret;
        }
        if (slice) {
            uint64_t pos = offset, limit = offset + n;
            while (pos < limit && ret == 0) {
                uint64_t in = offset_into_cluster(s, pos);
                uint32_t i = idx + (uint32_t)((start_of_cluster(s, pos) -
                                               start_of_cluster(s, offset)) >> s->cluster_bits);
                if (in == 0 && (limit - pos >= s->cluster_size || limit >= s->size)) {
                    /* Whole clusters (the last may be cut by the end of the disk). */
                    uint64_t k = (limit - pos) >> s->cluster_bits;
                    if (((limit - pos) & (s->cluster_size - 1)) && limit >= s->size) {
                        k++;
                    }
                    zero_in_slice(s, slice, i, (uint32_t)k, flags);
                    pos += MIN(k << s->cluster_bits, limit - pos);
                } else if (s->ext_l2) {
                    uint64_t len = MIN(limit - pos, s->cluster_size - in);
                    uint32_t from = in >> s->sc_bits;
                    uint32_t to = (uint32_t)((in + len + s->sc_size - 1) >> s->sc_bits);
                    ret = zero_subclusters(s, slice, i, from, to);
                    pos += len;
                } else {
                    ret = -ENOTSUP;
                }
            }
            qcow2_cache_put(s->l2_cache, (void **)&slice);
            if (ret < 0) {
                return ret;
            }
        }
        offset += n;
    }
    return 0;
}

int qcow2_discard_clusters(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                           enum qcow2_discard_type type, bool full)
{
    uint64_t end = offset + bytes;
    int ret;

    if (s->use_lazy_refcounts) {
        ret = qcow2_mark_dirty(s);
        if (ret < 0) {
            return ret;
        }
    }
    while (offset < end) {
        uint64_t n = MIN(end - offset, qcow2_slice_bytes_left(s, offset));
        qcow2_wait_allocs(s, offset, n);
        uint64_t *slice;
        uint32_t idx;
        /* Over a backing file even unallocated clusters must become zero clusters. */
        bool need_table = !full && s->bs->backing && s->version >= 3;
        ret = qcow2_get_l2_slice(s, offset, need_table, &slice, &idx);
        if (ret < 0) {
            return ret;
        }
        if (slice) {
            bool l1_shared = !(s->l1_table[offset_to_l1_index(s, offset)] & QCOW_OFLAG_COPIED);
            if (l1_shared) {
                /* Changing a table a snapshot shares needs our own copy first. */
                qcow2_cache_put(s->l2_cache, (void **)&slice);
                ret = qcow2_get_l2_slice(s, offset, true, &slice, &idx);
                if (ret < 0) {
                    return ret;
                }
            }
            uint32_t count = (uint32_t)DIV_ROUND_UP(n, (uint64_t)s->cluster_size);
            bool dirty = false;
            for (uint32_t i = 0; i < count; i++) {
                uint64_t oe = l2_get_entry(s, slice, idx + i);
                uint64_t ob = l2_get_bitmap(s, slice, idx + i);
                bool allocated = qcow2_entry_has_host(s, oe) ||
                                 (!s->ext_l2 && (oe & QCOW_OFLAG_ZERO)) ||
                                 (s->ext_l2 && ob);
                bool keep = !full && s->discard_no_unref && type == QCOW2_DISCARD_REQUEST &&
                            !(oe & QCOW_OFLAG_COMPRESSED) && qcow2_entry_has_host(s, oe);
                uint64_t ne, nb;
                if (full) {
                    ne = nb = 0;
                } else if (keep) {
                    ne = s->ext_l2 ? oe : oe | QCOW_OFLAG_ZERO;
                    nb = s->ext_l2 ? L2_BITMAP_ALL_ZERO : 0;
                } else if (s->bs->backing || allocated) {
                    if (s->ext_l2) {
                        ne = 0;
                        nb = L2_BITMAP_ALL_ZERO;
                    } else {
                        ne = s->version >= 3 ? QCOW_OFLAG_ZERO : 0;
                        nb = 0;
                    }
                } else {
                    continue;
                }
                if (ne == oe && nb == ob) {
                    continue;
                }
                qcow2_l2_set(s, slice, idx + i, ne, nb);
                dirty = true;
                if (keep) {
                    uint64_t host = qcow2_has_data_file(s) ? start_of_cluster(s, offset) +
                                    ((uint64_t)i << s->cluster_bits) : (oe & L2E_OFFSET_MASK);
                    if (s->discard_passthrough[type]) {
                        bnode_co_pdiscard(s->data_file, host, s->cluster_size);
                    }
                } else if (qcow2_entry_has_host(s, oe)) {
                    qcow2_free_any_cluster(s, oe, type);
                }
            }
            if (dirty) {
                qcow2_cache_mark_dirty(s->l2_cache, slice);
            }
            qcow2_cache_put(s->l2_cache, (void **)&slice);
        }
        offset += n;
    }
    return 0;
}

/* ---- Compressed clusters ---------------------------------------------------------- */

int qcow2_alloc_compressed(struct qcow2_state *s, uint64_t offset, uint64_t csize,
                           uint64_t *host_offset)
{
    uint64_t *slice;
    uint32_t idx;
    int ret = qcow2_get_l2_slice(s, offset, true, &slice, &idx);
    if (ret < 0) {
        return ret;
    }
    uint64_t e = l2_get_entry(s, slice, idx);
    qcow2_cache_put(s->l2_cache, (void **)&slice);
    if (qcow2_entry_has_host(s, e)) {
        /* Compressed data never overwrites anything (as in QEMU). */
        return -EEXIST;
    }
    int64_t off = qcow2_alloc_bytes(s, csize);
    if (off < 0) {
        return (int)off;
    }
    if ((uint64_t)off + csize > s->cluster_offset_mask) {
        qcow2_free_clusters(s, (uint64_t)off, csize, QCOW2_DISCARD_NEVER);
        return -EFBIG;
    }
    *host_offset = (uint64_t)off;
    return 0;
}

int qcow2_link_compressed(struct qcow2_state *s, uint64_t offset, uint64_t coffset,
                          uint64_t csize)
{
    uint64_t *slice;
    uint32_t idx;
    if (s->use_lazy_refcounts) {
        int ret = qcow2_mark_dirty(s);
        if (ret < 0) {
            return ret;
        }
    }
    int ret = qcow2_get_l2_slice(s, offset, true, &slice, &idx);
    if (ret < 0) {
        return ret;
    }
    uint64_t sectors = ((coffset + csize - 1) >> 9) - (coffset >> 9);
    uint64_t entry = QCOW_OFLAG_COMPRESSED | (sectors << s->csize_shift) | coffset;
    qcow2_l2_set(s, slice, idx, entry, 0);
    qcow2_cache_mark_dirty(s->l2_cache, slice);
    qcow2_cache_put(s->l2_cache, (void **)&slice);
    return 0;
}
