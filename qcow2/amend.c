/*
 * Amend: changing creation options of an existing image (measure.c
 * computes what a new one would need).
 *
 * Amend checks everything it can before it changes anything, then works
 * in qemu's order: upgrade to v3 first (the other changes may need it), a
 * new refcount width, the data file options, lazy refcounts, the size, and
 * a downgrade to v2 last (once what v2 cannot hold is gone).
 *
 * A new refcount width builds a second refcount structure past the end
 * of what is in use, counting every cluster (and itself) at the new
 * width, and switches to it with one header write; the old table and
 * blocks are then simply free.  A crash before the switch leaves the old
 * structure in place and the new one leaked.
 *
 * A downgrade turns zero clusters (v3 only) back into data: with no
 * backing file an unpreallocated zero cluster simply becomes unallocated;
 * otherwise the cluster gets zeroed data, in place when the cluster is
 * referenced only there, else in a new cluster (a cluster shared with a
 * snapshot keeps what the snapshot reads).
 */
#include "qcow2/qcow2-int.h"

#include "block/backend.h"
#include "block/dirty-bitmap.h"
#include "util/log.h"
#include "util/opts.h"

static const struct bdrv_create_opt qcow2_amend_opts[] = {
    { "backing_file", BDRV_OPT_STRING, NULL, "File name of a base image", false },
    { "backing_fmt", BDRV_OPT_STRING, NULL, "Image format of the base image", false },
    { "compat", BDRV_OPT_STRING, NULL, "Compatibility level (v2 [0.10] or v3 [1.1])", false },
    { "data_file", BDRV_OPT_STRING, NULL, "File name of an external data file", false },
    { "data_file_raw", BDRV_OPT_BOOL, NULL,
      "The external data file must stay valid as a raw image", false },
    { "encrypt.iter-time", BDRV_OPT_NUMBER, NULL, "Time to spend in PBKDF in milliseconds", false },
    { "encrypt.keyslot", BDRV_OPT_NUMBER, NULL,
      "Select a single keyslot to modify explicitly", false },
    { "encrypt.new-secret", BDRV_OPT_STRING, NULL,
      "New secret to set in the matching keyslots. Empty string to erase", false },
    { "encrypt.old-secret", BDRV_OPT_STRING, NULL,
      "Select all keyslots that match this password", false },
    { "encrypt.state", BDRV_OPT_STRING, NULL,
      "Select new state of affected keyslots (active/inactive)", false },
    { "lazy_refcounts", BDRV_OPT_BOOL, NULL, "Postpone refcount updates", false },
    { "refcount_bits", BDRV_OPT_NUMBER, NULL, "Width of a reference count entry in bits", false },
    { "size", BDRV_OPT_SIZE, NULL, "Virtual disk size", false },
    { NULL, 0, NULL, NULL, false },
};

const struct bdrv_create_opt *qcow2_amend_options(void)
{
    return qcow2_amend_opts;
}

struct amend {
    struct qcow2_state *s;
    int version;                 /* wanted */
    uint64_t size;               /* 0: unchanged */
    const char *backing_file, *backing_fmt;   /* NULL: not given */
    bool lazy;
    uint32_t refcount_order;
    const char *data_file;       /* NULL: not given */
    bool data_file_raw;
    bool force;
    struct err *err;
    int ret;
};

static const char *image_name(const struct qcow2_state *s)
{
    return bnode_describe(s->bs);
}

/* ---- Reading the options ------------------------------------------------------------ */

static int check_keys(json_t *options, struct err *err)
{
    json_t *flat = opts_flatten(options);
    const char *key;
    json_t *val;
    int ret = 0;
    json_object_foreach(flat, key, val) {
        bool known = false;
        for (const struct bdrv_create_opt *o = qcow2_amend_opts; !known && o->name; o++) {
            known = !strcmp(key, o->name);
        }
        if (!known) {
            err_set(err, "Invalid parameter '%s'", key);
            ret = -EINVAL;
            break;
        }
    }
    json_decref(flat);
    return ret;
}

static int get_bool(json_t *o, const char *key, bool *out, struct err *err)
{
    int r = opts_get_bool(o, key, out, NULL);
    if (r == -EINVAL) {
        err_set(err, "Parameter '%s' expects 'on' or 'off'", key);
    }
    return r == -ENOENT ? 0 : r;
}

static int get_str(json_t *o, const char *key, const char **out, struct err *err)
{
    int r = opts_get_str(o, key, out, err);
    return r == -ENOENT ? 0 : r;
}

static int read_compat(json_t *o, struct amend *a, struct err *err)
{
    const char *compat = NULL;
    int r = get_str(o, "compat", &compat, err);
    if (r < 0 || !compat) {
        return r;
    }
    if (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) {
        a->version = 2;
    } else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3")) {
        a->version = 3;
    } else {
        err_set(err, "Unknown compatibility level %s", compat);
        return -EINVAL;
    }
    return 0;
}

static int read_refcount_bits(json_t *o, struct amend *a, struct err *err)
{
    uint64_t bits;
    int r = opts_get_uint(o, "refcount_bits", &bits, err);
    if (r == -ENOENT) {
        return 0;
    }
    if (r < 0) {
        return r;
    }
    if (bits == 0 || bits > 64 || (bits & (bits - 1))) {
        err_set(err, "Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    a->refcount_order = (uint32_t)ctz64(bits);
    return 0;
}

static int read_data_file(json_t *o, struct amend *a, struct err *err)
{
    struct qcow2_state *s = a->s;
    int r = get_str(o, "data_file", &a->data_file, err);
    if (r == 0 && a->data_file && !qcow2_has_data_file(s)) {
        err_set(err, "data-file can only be set for images that use an external data file");
        return -EINVAL;
    }
    if (r == 0) {
        r = get_bool(o, "data_file_raw", &a->data_file_raw, err);
    }
    if (r == 0 && a->data_file_raw && !qcow2_data_file_is_raw(s)) {
        err_set(err, "data-file-raw cannot be set on existing images");
        return -EINVAL;
    }
    return r;
}

static int read_encrypt(json_t *o, struct qcow2_state *s, struct err *err)
{
    if (!opts_get(o, "encrypt")) {
        return 0;
    }
    if (s->crypt_method == QCOW2_CRYPT_NONE) {
        err_set(err, "Can't amend encryption options - encryption not present");
        return -EINVAL;
    }
    if (s->crypt_method != QCOW2_CRYPT_LUKS) {
        err_set(err, "Only LUKS encryption options can be amended");
        return -ENOTSUP;
    }
    err_set(err, "%s: changing LUKS keyslots is not supported", image_name(s));
    return -ENOTSUP;
}

static int read_options(json_t *o, struct amend *a, struct err *err)
{
    struct qcow2_state *s = a->s;
    uint64_t size = 0;
    int r = check_keys(o, err);
    if (r == 0) {
        r = read_compat(o, a, err);
    }
    if (r == 0) {
        r = opts_get_size(o, "size", &size, err);
        r = r == -ENOENT ? 0 : r;
        a->size = size;
    }
    if (r == 0) {
        r = get_str(o, "backing_file", &a->backing_file, err);
    }
    if (r == 0) {
        r = get_str(o, "backing_fmt", &a->backing_fmt, err);
    }
    if (r == 0) {
        r = read_encrypt(o, s, err);
    }
    if (r == 0) {
        r = get_bool(o, "lazy_refcounts", &a->lazy, err);
    }
    if (r == 0) {
        r = read_refcount_bits(o, a, err);
    }
    if (r == 0) {
        r = read_data_file(o, a, err);
    }
    return r;
}

/* NULL and "" are both "none" for the header's backing file name. */
static bool same_name(const char *given, const char *have)
{
    return !strcmp(given ? given : "", have) && (given != NULL) == (have[0] != 0);
}

static bool has_persistent_bitmaps(struct qcow2_state *s);

/* Everything that would make the amendment fail halfway, before any of it is done. */
static int preflight(struct amend *a, struct err *err)
{
    struct qcow2_state *s = a->s;
    struct block_node *bs = s->bs;
    if (a->refcount_order != s->refcount_order && a->version < 3 && a->refcount_order != 4) {
        err_set(err, "Refcount widths other than 16 bits require compatibility level 1.1 or "
                "above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    if ((a->backing_file || a->backing_fmt) &&
        (!same_name(a->backing_file, bs->backing_file) ||
         !same_name(a->backing_fmt, bs->backing_format))) {
        err_set(err, "Cannot amend the backing file");
        return -EINVAL;
    }
    if (a->lazy && !s->use_lazy_refcounts && a->version < 3) {
        err_set(err, "Lazy refcounts only supported with compatibility level 1.1 and above "
                "(use compat=1.1 or greater)");
        return -EINVAL;
    }
    if (a->version >= (int)s->version) {
        return 0;
    }
    /* The downgrade's conditions, on the image as the steps before leave it. */
    uint64_t size = a->size ? a->size : s->size;
    if (a->refcount_order != 4) {
        err_set(err, "compat=0.10 requires refcount_bits=16");
        return -ENOTSUP;
    }
    if (qcow2_has_data_file(s)) {
        err_set(err, "Cannot downgrade an image with a data file");
        return -ENOTSUP;
    }
    uint64_t incompat = s->incompat & ~QCOW2_INCOMPAT_DIRTY;
    if (incompat) {
        err_set(err, "Cannot downgrade an image with incompatible features 0x%" PRIx64 " set",
                incompat);
        return -ENOTSUP;
    }
    if (s->crypt_method == QCOW2_CRYPT_LUKS) {
        err_set(err, "%s: cannot downgrade an image with LUKS encryption", image_name(s));
        return -ENOTSUP;
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (s->snapshots[i].vm_state_size > UINT32_MAX || s->snapshots[i].disk_size != size) {
            err_set(err, "Internal snapshots prevent downgrade of image");
            return -ENOTSUP;
        }
    }
    if (has_persistent_bitmaps(s) && !a->force) {
        err_set(err, "%s: cannot downgrade an image with persistent bitmaps (v2 cannot store "
                "them; --force removes them)", image_name(s));
        return -ENOTSUP;
    }
    return 0;
}

/* ---- Persistent bitmaps (dropped by a forced downgrade) ------------------------------ */

static int find_persistent(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    *(char **)opaque = bm->persistent && bm->name ? xstrdup(bm->name) : NULL;
    return *(char **)opaque != NULL;
}

static bool has_persistent_bitmaps(struct qcow2_state *s)
{
    char *name = NULL;
    bdrv_dirty_bitmap_foreach(s->bs, find_persistent, &name);
    free(name);
    return s->bm_dir_n || name;
}

static int remove_bitmaps(struct qcow2_state *s, struct err *err)
{
    char *name = NULL;
    while (bdrv_dirty_bitmap_foreach(s->bs, find_persistent, &name), name) {
        int ret = qcow2_bitmap_remove(s->bs, name, err);
        free(name);
        name = NULL;
        if (ret < 0) {
            return ret;
        }
    }
    while (s->bm_dir_n) {
        /* Stored but not loaded (inconsistent ones, say). */
        char *stored = xstrdup(s->bm_dir[0].name);
        int ret = qcow2_bitmap_remove(s->bs, stored, err);
        free(stored);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* ---- A new refcount width ------------------------------------------------------------ */

/* The layout of the new structure from cluster `area` on: blocks, then the table. */
static void plan_refcounts(const struct qcow2_state *s, const uint64_t *counts, uint64_t end,
                           uint32_t rb_bits, uint64_t *nb_blocks, uint64_t *tc)
{
    uint64_t per_table_cluster = s->cluster_size / 8;
    uint64_t rb_size = 1ULL << rb_bits;
    *nb_blocks = 0;
    *tc = 1;
    for (int iter = 0; iter < 64; iter++) {
        uint64_t area_end = end + *nb_blocks + *tc;
        uint64_t ranges = DIV_ROUND_UP(area_end, rb_size);
        uint64_t need = 0;
        for (uint64_t r = 0; r < ranges; r++) {
            uint64_t lo = r << rb_bits, hi = MIN(lo + rb_size, end);
            bool nz = lo + rb_size > end;   /* covers part of the new structure */
            for (uint64_t i = lo; !nz && i < hi; i++) {
                nz = counts[i] != 0;
            }
            need += nz;
        }
        uint64_t new_tc = DIV_ROUND_UP(ranges, per_table_cluster);
        if (need == *nb_blocks && new_tc == *tc) {
            return;
        }
        *nb_blocks = MAX(need, *nb_blocks);
        *tc = MAX(new_tc, *tc);
    }
}

/* Every cluster's refcount, without the references of the refcount structure itself. */
static int count_without_refcounts(struct qcow2_state *s, uint64_t **out, uint64_t *end_out)
{
    int64_t area_end = qcow2_refcount_area_end(s);
    if (area_end < 0) {
        return (int)area_end;
    }
    uint64_t nb = (uint64_t)area_end >> s->cluster_bits;
    uint64_t *counts = xcalloc(MAX(nb, 1), sizeof(*counts));
    for (uint64_t i = 0; i < nb; i++) {
        int ret = qcow2_get_refcount(s, i, &counts[i]);
        if (ret < 0) {
            free(counts);
            return ret;
        }
    }
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t idx = (s->refcount_table[i] & REFT_OFFSET_MASK) >> s->cluster_bits;
        if (idx && idx < nb && counts[idx]) {
            counts[idx]--;
        }
    }
    uint64_t t_first = s->refcount_table_offset >> s->cluster_bits;
    uint64_t t_n = ((uint64_t)s->refcount_table_size * 8) >> s->cluster_bits;
    for (uint64_t i = t_first; i < t_first + t_n && i < nb; i++) {
        if (counts[i]) {
            counts[i]--;
        }
    }
    /*
     * Not trimmed to the last cluster still in use: the new structure goes
     * past the old one, which stays intact until the header switches.
     */
    *out = counts;
    *end_out = nb;
    return 0;
}

/* Write the blocks and the table of the new structure; returns the table's offset. */
static int write_refcounts(struct qcow2_state *s, const uint64_t *counts, uint64_t end,
                           uint32_t order, uint64_t nb_blocks, uint64_t tc, uint64_t **table_out)
{
    struct qcow2_state w = { .refcount_order = order };   /* for qcow2_rb_set at the new width */
    uint64_t cs = s->cluster_size;
    uint32_t rb_bits = s->cluster_bits + 3 - order;
    uint64_t rb_size = 1ULL << rb_bits;
    uint64_t area_end = end + nb_blocks + tc;
    uint64_t ranges = DIV_ROUND_UP(area_end, rb_size);
    uint64_t *table = xzalloc(tc * cs);
    uint8_t *block = bnode_blockalign(s->bs->file->bs, cs);
    uint64_t next = end;
    int ret = 0;
    for (uint64_t r = 0; r < ranges && ret == 0; r++) {
        uint64_t lo = r << rb_bits;
        bool nz = false;
        memset(block, 0, cs);
        for (uint64_t i = lo; i < lo + rb_size; i++) {
            uint64_t v = i < end ? counts[i] : (i < area_end ? 1 : 0);
            if (v) {
                qcow2_rb_set(&w, block, i - lo, v);
                nz = true;
            }
        }
        if (!nz) {
            continue;
        }
        table[r] = htobe64(next << s->cluster_bits);
        ret = qcow2_write_meta(s, 0, next << s->cluster_bits, block, cs);
        next++;
    }
    free(block);
    uint64_t table_off = (end + nb_blocks) << s->cluster_bits;
    if (ret == 0) {
        ret = qcow2_write_meta(s, 0, table_off, table, tc * cs);
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret < 0) {
        free(table);
        return ret;
    }
    for (uint64_t i = 0; i < tc * cs / 8; i++) {
        table[i] = be64toh(table[i]);
    }
    *table_out = table;
    return 0;
}

/* Switch s to the new structure: header first, then the state in memory. */
static int install_refcounts(struct qcow2_state *s, uint32_t order, uint64_t *table,
                             uint64_t table_off, uint64_t tc)
{
    struct qcow2_state saved = *s;
    int ret = qcow2_cache_empty(s->rb_cache);   /* every cached block is of the old width */
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&s->map_lock);
    s->refcount_order = order;
    s->refcount_bits = 1U << order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ULL << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - order;
    s->rb_size = 1U << s->rb_bits;
    s->refcount_table = table;
    s->refcount_table_offset = table_off;
    s->refcount_table_size = (uint32_t)(tc * s->cluster_size / 8);
    qcow2_reftable_note_used(s);
    pthread_mutex_unlock(&s->map_lock);
    ret = qcow2_update_header(s);
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret < 0) {
        /* The old structure is still the one on disk (or the header is lost anyway). */
        pthread_mutex_lock(&s->map_lock);
        s->refcount_order = saved.refcount_order;
        s->refcount_bits = saved.refcount_bits;
        s->refcount_max = saved.refcount_max;
        s->rb_bits = saved.rb_bits;
        s->rb_size = saved.rb_size;
        s->refcount_table = saved.refcount_table;
        s->refcount_table_offset = saved.refcount_table_offset;
        s->refcount_table_size = saved.refcount_table_size;
        qcow2_reftable_note_used(s);
        pthread_mutex_unlock(&s->map_lock);
        free(table);
        return ret;
    }
    free(saved.refcount_table);
    s->free_cluster_index = 0;
    return 0;
}

static int change_refcount_order(struct qcow2_state *s, uint32_t order, struct err *err)
{
    uint64_t *counts = NULL, end = 0, nb_blocks, tc, *table = NULL;
    uint64_t max = order == 6 ? UINT64_MAX : (1ULL << (1U << order)) - 1;
    int ret = qcow2_cache_flush(s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_flush(s->rb_cache);
    }
    if (ret == 0) {
        ret = count_without_refcounts(s, &counts, &end);
    }
    if (ret < 0) {
        return err_set_errno(err, ret, "%s: cannot read the refcounts", image_name(s));
    }
    for (uint64_t i = 0; i < end; i++) {
        if (counts[i] > max) {
            err_set(err, "Cannot decrease refcount entry width to %u bits: Cluster at offset "
                    "0x%" PRIx64 " has a refcount of %" PRIu64, 1U << order,
                    i << s->cluster_bits, counts[i]);
            free(counts);
            return -EINVAL;
        }
    }
    plan_refcounts(s, counts, end, s->cluster_bits + 3 - order, &nb_blocks, &tc);
    if (tc * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
        free(counts);
        err_set(err, "%s: the refcount table at %u bits would be too large", image_name(s),
                1U << order);
        return -EFBIG;
    }
    ret = write_refcounts(s, counts, end, order, nb_blocks, tc, &table);
    free(counts);
    if (ret == 0) {
        qcow2_take_fresh(s, end << s->cluster_bits, (nb_blocks + tc) << s->cluster_bits);
        ret = install_refcounts(s, order, table, (end + nb_blocks) << s->cluster_bits, tc);
    }
    if (ret < 0) {
        return err_set_errno(err, ret, "%s: cannot write the new refcount structure",
                             image_name(s));
    }
    return 0;
}

/* ---- Downgrading: zero clusters back into data ------------------------------------ */

/* Zeroed data for the zero cluster whose entry is e; the new entry. */
static int zeroed_cluster(struct qcow2_state *s, uint64_t e, uint64_t *out)
{
    uint64_t host = e & L2E_OFFSET_MASK, rc = 0;
    int ret = host ? qcow2_get_refcount(s, host >> s->cluster_bits, &rc) : 0;
    if (ret < 0) {
        return ret;
    }
    if (!host && !s->bs->backing_file[0]) {
        *out = 0;        /* unallocated reads zeroes too */
        return 0;
    }
    uint64_t target = host;
    if (!host || rc != 1) {
        int64_t off = qcow2_alloc_clusters(s, s->cluster_size, NULL);
        if (off < 0) {
            return (int)off;
        }
        target = (uint64_t)off;
    }
    ret = qcow2_pre_write_check(s, 0, target, s->cluster_size);
    if (ret == 0) {
        ret = bnode_co_pwrite_zeroes(s->bs->file, (int64_t)target, s->cluster_size, 0);
    }
    if (ret < 0) {
        if (target != host) {
            qcow2_free_clusters(s, target, s->cluster_size, QCOW2_DISCARD_OTHER);
        }
        return ret;
    }
    if (host && target != host && rc) {
        /* Shared (a snapshot's): the other owners keep it. */
        qcow2_free_clusters(s, host, s->cluster_size, QCOW2_DISCARD_OTHER);
    }
    *out = target | QCOW_OFLAG_COPIED;
    return 0;
}

static int expand_l2_table(struct qcow2_state *s, uint64_t l2_off)
{
    uint64_t slice_bytes = (uint64_t)s->l2_slice_size * s->l2_entry_size;
    uint32_t slices = s->l2_size / s->l2_slice_size;
    for (uint32_t sl = 0; sl < slices; sl++) {
        uint64_t *slice;
        int ret = qcow2_cache_get(s->l2_cache, l2_off + sl * slice_bytes, (void **)&slice);
        if (ret < 0) {
            return ret;
        }
        for (uint32_t j = 0; j < s->l2_slice_size && ret == 0; j++) {
            uint64_t e = l2_get_entry(s, slice, j), n = 0;
            if ((e & QCOW_OFLAG_COMPRESSED) || !(e & QCOW_OFLAG_ZERO)) {
                continue;
            }
            ret = zeroed_cluster(s, e, &n);
            if (ret == 0) {
                qcow2_l2_set(s, slice, j, n, 0);
                qcow2_cache_mark_dirty(s->l2_cache, slice);
            }
        }
        qcow2_cache_put(s->l2_cache, (void **)&slice);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int expand_l1(struct qcow2_state *s, const uint64_t *l1, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2 = l1[i] & L1E_OFFSET_MASK;
        int ret = l2 ? expand_l2_table(s, l2) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int expand_zero_clusters(struct qcow2_state *s)
{
    int ret = expand_l1(s, s->l1_table, s->l1_size);
    for (uint32_t i = 0; i < s->nb_snapshots && ret == 0; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t *l1 = xmalloc(MAX((uint64_t)sn->l1_size * 8, 8));
        ret = bnode_co_pread(s->bs->file, sn->l1_table_offset, (int64_t)sn->l1_size * 8, l1, 0);
        for (uint32_t j = 0; j < sn->l1_size; j++) {
            l1[j] = be64toh(l1[j]);
        }
        if (ret == 0) {
            ret = expand_l1(s, l1, sn->l1_size);
        }
        free(l1);
    }
    /* Refcounts before the tables that point at new clusters. */
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        ret = qcow2_cache_flush(s->rb_cache);
    }
    if (ret == 0) {
        ret = qcow2_cache_flush(s->l2_cache);
    }
    return ret;
}

static int downgrade(struct qcow2_state *s, struct err *err)
{
    int ret = qcow2_mark_clean(s);
    if (ret < 0) {
        return err_set_errno(err, ret, "Failed to make the image clean");
    }
    ret = expand_zero_clusters(s);
    if (ret < 0) {
        return err_set_errno(err, ret, "Failed to turn zero into data clusters");
    }
    uint64_t compat = s->compat, autoclear = s->autoclear;
    s->version = 2;
    s->compat = 0;
    s->autoclear = 0;
    s->use_lazy_refcounts = false;
    ret = qcow2_update_header(s);
    if (ret < 0) {
        s->version = 3;
        s->compat = compat;
        s->autoclear = autoclear;
        return err_set_errno(err, ret, "Failed to update the image header");
    }
    return 0;
}

/* ---- The steps ------------------------------------------------------------------------ */

static int upgrade(struct qcow2_state *s, struct err *err)
{
    s->version = 3;
    s->compat = 0;
    s->autoclear = 0;
    s->header_tail_len = 0;
    int ret = qcow2_update_header(s);
    if (ret < 0) {
        s->version = 2;
        return err_set_errno(err, ret, "Failed to update the image header");
    }
    return 0;
}

static int set_lazy_refcounts(struct qcow2_state *s, bool on, struct err *err)
{
    if (!on) {
        int ret = qcow2_mark_clean(s);
        if (ret < 0) {
            return err_set_errno(err, ret, "Failed to make the image clean");
        }
    }
    uint64_t compat = s->compat;
    s->compat = on ? compat | QCOW2_COMPAT_LAZY_REFCOUNTS : compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS;
    int ret = qcow2_update_header(s);
    if (ret < 0) {
        s->compat = compat;
        return err_set_errno(err, ret, "Failed to update the image header");
    }
    s->use_lazy_refcounts = on;
    return 0;
}

static int set_data_file(struct qcow2_state *s, const struct amend *a, struct err *err)
{
    if (!a->data_file && a->data_file_raw == qcow2_data_file_is_raw(s)) {
        return 0;
    }
    if (!a->data_file_raw) {
        s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_RAW;
    }
    if (a->data_file) {
        free(s->data_file_name);
        s->data_file_name = a->data_file[0] ? xstrdup(a->data_file) : NULL;
    }
    int ret = qcow2_update_header(s);
    if (ret < 0) {
        return err_set_errno(err, ret, "Failed to update the image header");
    }
    return 0;
}

/* Everything before the size: upgrade, refcount width, data file, lazy refcounts. */
static void before_resize_entry(void *opaque)
{
    struct amend *a = opaque;
    struct qcow2_state *s = a->s;
    co_mutex_lock(&s->lock);
    a->ret = 0;
    if (a->version > (int)s->version) {
        a->ret = upgrade(s, a->err);
    }
    if (a->ret == 0 && a->refcount_order != s->refcount_order) {
        a->ret = change_refcount_order(s, a->refcount_order, a->err);
    }
    if (a->ret == 0) {
        a->ret = set_data_file(s, a, a->err);
    }
    if (a->ret == 0 && a->lazy != s->use_lazy_refcounts) {
        a->ret = set_lazy_refcounts(s, a->lazy, a->err);
    }
    co_mutex_unlock(&s->lock);
}

static void downgrade_entry(void *opaque)
{
    struct amend *a = opaque;
    co_mutex_lock(&a->s->lock);
    a->ret = downgrade(a->s, a->err);
    co_mutex_unlock(&a->s->lock);
}

/* The size through a backend of our own, as a user's resize would go. */
static int resize(struct block_node *bs, uint64_t size, struct err *err)
{
    struct block_backend *blk = blk_new("");
    int ret = blk_insert_node(blk, bs, err);
    if (ret == 0) {
        blk_set_disable_request_queuing(blk, true);   /* the caller drained bs */
        ret = blk_truncate(blk, (int64_t)size, true, PREALLOC_MODE_OFF, 0, err);
    }
    blk_unref(blk);
    return ret;
}

int qcow2_amend(struct block_node *bs, json_t *options, bool force, struct err *err)
{
    bs = bnode_skip_filters(bs);
    struct qcow2_state *s = bs->opaque;
    struct amend a = { .s = s, .version = (int)s->version, .lazy = s->use_lazy_refcounts,
                       .refcount_order = s->refcount_order,
                       .data_file_raw = qcow2_data_file_is_raw(s), .force = force, .err = err };
    int ret = read_options(options, &a, err);
    if (ret == 0) {
        ret = preflight(&a, err);
    }
    if (ret < 0) {
        return ret;
    }
    if (bs->read_only) {
        err_set(err, "%s: the image is read-only", image_name(s));
        return -EPERM;
    }
    co_run_sync(before_resize_entry, &a);
    if (a.ret < 0) {
        return a.ret;
    }
    if (a.size && a.size != s->size && (ret = resize(bs, a.size, err)) < 0) {
        return ret;
    }
    if (a.version < (int)s->version) {
        if (has_persistent_bitmaps(s) && (ret = remove_bitmaps(s, err)) < 0) {
            return ret;
        }
        co_run_sync(downgrade_entry, &a);
    }
    return a.ret;
}
