/*
 * The qcow2 driver: open (header, options, caches, tables, repair of a
 * dirty image), close, flush, and what `info` shows.  The data path is in
 * rw.c, creation and resizing in create.c, check in check.c.
 */
#include "qcow2/qcow2-int.h"

#include <stdio.h>

#include "util/log.h"
#include "util/opts.h"

#define DEFAULT_L2_CACHE_MAX_SIZE   (32 * MiB)
#define MIN_L2_CACHE_ENTRIES        2
#define MIN_REFCOUNT_CACHE_CLUSTERS 4
#define DEFAULT_CACHE_CLEAN_INTERVAL 600

static const char *const qcow2_keys[] = {
    "lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other",
    "discard-no-unref", "overlap-check", "cache-size", "l2-cache-size", "l2-cache-entry-size",
    "refcount-cache-size", "cache-clean-interval", NULL,
};

/* ---- Options -------------------------------------------------------------------- */

struct cache_sizes {
    uint64_t l2, l2_entry, refcount;
};

/* QEMU's rules for cache-size, l2-cache-size, refcount-cache-size and their defaults. */
static int read_cache_sizes(struct qcow2_state *s, json_t *opts, struct cache_sizes *c,
                            struct err *err)
{
    uint64_t combined = 0;
    /* Enough to map the whole disk: one L2 entry per guest cluster. */
    uint64_t max_l2_cache = ALIGN_UP(size_to_clusters(s, s->size) * s->l2_entry_size,
                                     (uint64_t)s->cluster_size);
    uint64_t min_refcount = (uint64_t)MIN_REFCOUNT_CACHE_CLUSTERS * s->cluster_size;
    int r;

    r = opts_get_size(opts, "cache-size", &combined, err);
    if (r == -EINVAL) {
        return r;
    }
    bool combined_set = r == 0;
    r = opts_get_size(opts, "l2-cache-size", &c->l2, err);
    if (r == -EINVAL) {
        return r;
    }
    bool l2_set = r == 0;
    r = opts_get_size(opts, "refcount-cache-size", &c->refcount, err);
    if (r == -EINVAL) {
        return r;
    }
    bool rc_set = r == 0;
    c->l2_entry = s->cluster_size;
    r = opts_get_size(opts, "l2-cache-entry-size", &c->l2_entry, err);
    if (r == -EINVAL) {
        return r;
    }
    bool entry_set = r == 0;

    if (combined_set) {
        if (l2_set && rc_set) {
            err_set(err, "cache-size, l2-cache-size and refcount-cache-size may not be set at "
                    "the same time");
            return -EINVAL;
        } else if (l2_set && c->l2 > combined) {
            err_set(err, "l2-cache-size may not exceed cache-size");
            return -EINVAL;
        } else if (rc_set && c->refcount > combined) {
            err_set(err, "refcount-cache-size may not exceed cache-size");
            return -EINVAL;
        }
        if (l2_set) {
            c->refcount = combined - c->l2;
        } else if (rc_set) {
            c->l2 = combined - c->refcount;
        } else if (combined >= max_l2_cache + min_refcount) {
            /* As much as possible for L2 tables, the rest for refcount blocks. */
            c->l2 = max_l2_cache;
            c->refcount = combined - c->l2;
        } else {
            c->refcount = MIN(combined, min_refcount);
            c->l2 = combined - c->refcount;
        }
    } else {
        if (!l2_set) {
            c->l2 = MIN(max_l2_cache, (uint64_t)DEFAULT_L2_CACHE_MAX_SIZE);
        }
        if (!rc_set) {
            c->refcount = min_refcount;
        }
    }
    /* A cache that cannot hold the whole disk works better with small entries. */
    if (c->l2 < max_l2_cache && !entry_set) {
        c->l2_entry = MIN((uint64_t)s->cluster_size, 4096);
    }
    if (c->l2_entry < 512 || c->l2_entry > s->cluster_size || !is_power_of_2(c->l2_entry) ||
        (s->ext_l2 && c->l2_entry < 1024)) {
        err_set(err, "L2 cache entry size must be a power of two between %d and the cluster "
                "size (%u)", s->ext_l2 ? 1024 : 512, s->cluster_size);
        return -EINVAL;
    }
    if (c->l2 > INT32_MAX || c->refcount > INT32_MAX) {
        err_set(err, "%s cache size too big", c->l2 > INT32_MAX ? "L2" : "Refcount");
        return -EINVAL;
    }
    return 0;
}

static int read_options(struct qcow2_state *s, json_t *opts, int flags, struct err *err)
{
    const char *str;
    bool b;
    uint64_t v;
    int r;

    s->use_lazy_refcounts = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    r = opts_get_bool(opts, "lazy-refcounts", &b, err);
    if (r == -EINVAL) {
        return r;
    }
    if (r == 0) {
        if (b && s->version < 3) {
            err_set(err, "Lazy refcounts require a qcow2 image with at least qemu 1.1 "
                    "compatibility level");
            return -EINVAL;
        }
        s->use_lazy_refcounts = b;
    }
    s->discard_passthrough[QCOW2_DISCARD_NEVER] = false;
    s->discard_passthrough[QCOW2_DISCARD_ALWAYS] = true;
    s->discard_passthrough[QCOW2_DISCARD_REQUEST] = flags & BDRV_O_UNMAP;
    s->discard_passthrough[QCOW2_DISCARD_SNAPSHOT] = true;
    s->discard_passthrough[QCOW2_DISCARD_OTHER] = false;
    static const struct {
        const char *key;
        int type;
    } pass[] = {
        { "pass-discard-request", QCOW2_DISCARD_REQUEST },
        { "pass-discard-snapshot", QCOW2_DISCARD_SNAPSHOT },
        { "pass-discard-other", QCOW2_DISCARD_OTHER },
    };
    for (size_t i = 0; i < ARRAY_SIZE(pass); i++) {
        r = opts_get_bool(opts, pass[i].key, &b, err);
        if (r == -EINVAL) {
            return r;
        }
        if (r == 0) {
            s->discard_passthrough[pass[i].type] = b;
        }
    }
    r = opts_get_bool(opts, "discard-no-unref", &b, err);
    if (r == -EINVAL) {
        return r;
    }
    s->discard_no_unref = r == 0 && b;
    if (s->discard_no_unref && s->version < 3) {
        err_set(err, "discard-no-unref is only supported since qcow2 version 3");
        return -EINVAL;
    }
    s->overlap_check = QCOW2_OL_CACHED;
    r = opts_get_str(opts, "overlap-check", &str, err);
    if (r == -EINVAL) {
        return r;
    }
    if (r == 0 && qcow2_overlap_mode_parse(str, &s->overlap_check) < 0) {
        err_set(err, "Unsupported value '%s' for qcow2 option 'overlap-check'. Allowed are any "
                "of the following: none, constant, cached, all", str);
        return -EINVAL;
    }
    s->cache_clean_interval = DEFAULT_CACHE_CLEAN_INTERVAL;
    r = opts_get_uint(opts, "cache-clean-interval", &v, err);
    if (r == -EINVAL) {
        return r;
    }
    if (r == 0) {
        if (v > UINT32_MAX) {
            err_set(err, "Cache clean interval too big");
            return -EINVAL;
        }
        s->cache_clean_interval = v;
    }
    return 0;
}

/* ---- The cache-clean timer --------------------------------------------------------- */

static void arm_clean_timer(struct qcow2_state *s);

static void clean_entry(void *opaque)
{
    struct qcow2_state *s = opaque;
    co_mutex_lock(&s->lock);
    qcow2_cache_clean_unused(s->l2_cache);
    qcow2_cache_clean_unused(s->rb_cache);
    bool rearm = !s->closing;
    co_mutex_unlock(&s->lock);
    if (rearm) {
        arm_clean_timer(s);
    }
}

static void clean_timer_cb(void *opaque)
{
    struct qcow2_state *s = opaque;
    if (!s->closing) {
        co_enter(co_create(clean_entry, s));
    }
}

static void arm_clean_timer(struct qcow2_state *s)
{
    if (!s->cache_clean_interval || !aio_in_main_thread()) {
        return;
    }
    if (!s->clean_timer_armed) {
        aio_timer_init(&s->clean_timer, aio_main_context(), clean_timer_cb, s);
        s->clean_timer_armed = true;
    }
    aio_timer_mod(&s->clean_timer, clock_ns() + (int64_t)s->cache_clean_interval * 1000000000LL);
}

/* ---- Open ------------------------------------------------------------------------- */

static int load_l1(struct qcow2_state *s, int64_t file_size, int flags, struct err *err)
{
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    const char *name = bnode_describe(s->bs);
    s->l1_table = xzalloc(MAX(bytes, 8));
    if (!bytes) {
        return 0;
    }
    int ret = bnode_co_pread(s->bs->file, s->l1_table_offset, bytes, s->l1_table, 0);
    if (ret < 0) {
        return err_set_errno(err, ret, "%s: cannot read the L1 table", name);
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = be64toh(s->l1_table[i]);
        s->l1_table[i] = e;
        if (!e || (flags & BDRV_O_CHECK)) {
            continue;
        }
        uint64_t off = e & L1E_OFFSET_MASK;
        const char *why = NULL;
        if (e & L1E_RESERVED_MASK) {
            why = "has reserved bits set";
        } else if (off & (s->cluster_size - 1)) {
            why = "is not cluster aligned";
        } else if (off + s->cluster_size > (uint64_t)file_size &&
                   off >= (uint64_t)file_size) {
            why = "is past the end of the file";
        } else if (off && off < s->cluster_size) {
            why = "overlaps the header";
        } else if (off && ranges_overlap(off, s->cluster_size, s->l1_table_offset, bytes)) {
            why = "overlaps the active L1 table";
        } else if (off && ranges_overlap(off, s->cluster_size, s->refcount_table_offset,
                                         (uint64_t)s->refcount_table_size * 8)) {
            why = "overlaps the refcount table";
        }
        if (why) {
            err_set(err, "%s: L1 entry %u (L2 table offset 0x%" PRIx64 ") %s", name, i, off,
                    why);
            return -EINVAL;
        }
    }
    return 0;
}

static int open_data_file(struct qcow2_state *s, json_t *options, int flags, struct err *err)
{
    struct block_node *bs = s->bs;
    bool has_opt = json_object_get(options, "data-file") != NULL;

    if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
        if (has_opt) {
            err_set(err, "'data-file' can only be set for images with an external data file");
            return -EINVAL;
        }
        s->data_file = bs->file;
        return 0;
    }
    char *path = NULL;
    if (!has_opt) {
        if (!s->data_file_name) {
            err_set(err, "%s: 'data-file' is required for this image", bnode_describe(bs));
            return -EINVAL;
        }
        path = bdrv_resolve_relative(bs->file->bs->filename, s->data_file_name);
    }
    s->data_file = bnode_open_child(bs, options, "data-file", path, BDRV_CHILD_DATA,
                                    flags, false, err);
    free(path);
    if (!s->data_file) {
        err_prepend(err, "%s: cannot open the external data file: ", bnode_describe(bs));
        return -EINVAL;
    }
    return 0;
}

static int create_caches(struct qcow2_state *s, json_t *options, struct err *err)
{
    struct cache_sizes c;
    int ret = read_cache_sizes(s, options, &c, err);
    if (ret < 0) {
        return ret;
    }
    s->l2_slice_size = (uint32_t)(c.l2_entry / s->l2_entry_size);
    int l2_entries = (int)MAX(c.l2 / c.l2_entry, (uint64_t)MIN_L2_CACHE_ENTRIES);
    int rb_entries = (int)MAX(c.refcount / s->cluster_size, (uint64_t)MIN_REFCOUNT_CACHE_CLUSTERS);
    s->l2_cache = qcow2_cache_new(s, l2_entries, (uint32_t)c.l2_entry, QCOW2_OL_ACTIVE_L2, true,
                                  "L2 table");
    s->rb_cache = qcow2_cache_new(s, rb_entries, s->cluster_size, QCOW2_OL_REFCOUNT_BLOCK,
                                  false, "refcount block");
    return 0;
}

/* Read the header cluster: the first bytes give the cluster size. */
static int read_header_cluster(struct qcow2_state *s, int64_t file_size, uint8_t **buf,
                               size_t *len, struct err *err)
{
    const char *name = bnode_describe(s->bs);
    uint8_t first[512];
    if (file_size < QCOW2_V2_HEADER_LEN) {
        err_set(err, "%s: not a qcow2 image (the file is %" PRId64 " bytes long)", name,
                file_size);
        return -EINVAL;
    }
    size_t n = (size_t)MIN(file_size, (int64_t)sizeof(first));
    int ret = bnode_co_pread(s->bs->file, 0, n, first, 0);
    if (ret < 0) {
        return err_set_errno(err, ret, "%s: cannot read the header", name);
    }
    uint32_t bits = ld_be32(first + 20);
    if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS) {
        /* Let the header parser give the sentence. */
        bits = QCOW2_MIN_CLUSTER_BITS;
    }
    *len = (size_t)MIN(file_size, (int64_t)1 << bits);
    *buf = xzalloc(*len);
    ret = bnode_co_pread(s->bs->file, 0, *len, *buf, 0);
    if (ret < 0) {
        free(*buf);
        *buf = NULL;
        return err_set_errno(err, ret, "%s: cannot read the header", name);
    }
    return 0;
}

static void free_state(struct qcow2_state *s)
{
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->rb_cache);
    s->l2_cache = s->rb_cache = NULL;
    free(s->l1_table);
    s->l1_table = NULL;
    qcow2_refcount_close(s);
    qcow2_free_snapshots(s);
    qcow2_bitmap_list_free(s->bm_dir, s->bm_dir_n);
    s->bm_dir = NULL;
    s->bm_dir_n = 0;
    qcow2_free_header_state(s);
    free(s->zero_cluster);
    s->zero_cluster = NULL;
    pthread_mutex_destroy(&s->map_lock);
    co_mutex_destroy(&s->lock);
    co_mutex_destroy(&s->grow_lock);
}

static int qcow2_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    struct qcow2_state *s = bs->opaque;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    int ret;

    s->bs = bs;
    co_mutex_init(&s->lock);
    co_mutex_init(&s->grow_lock);
    pthread_mutex_init(&s->map_lock, NULL);
    list_init(&s->allocs);
    list_init(&s->unknown_exts);
    if (!bnode_open_child(bs, options, "file", NULL, BDRV_CHILD_FILE, flags, false, err)) {
        ret = -EINVAL;
        goto fail;
    }
    int64_t file_size = bnode_getlength(bs->file->bs);
    if (file_size < 0) {
        ret = err_set_errno(err, (int)file_size, "%s: cannot get the file size",
                            bnode_describe(bs));
        goto fail;
    }
    ret = read_header_cluster(s, file_size, &hdr, &hdr_len, err);
    if (ret < 0) {
        goto fail;
    }
    ret = qcow2_read_header(s, hdr, hdr_len, file_size, flags, err);
    free(hdr);
    if (ret < 0) {
        goto fail;
    }
    ret = read_options(s, options, flags, err);
    if (ret < 0) {
        goto fail;
    }
    ret = open_data_file(s, options, flags, err);
    if (ret < 0) {
        goto fail;
    }
    if (qcow2_data_file_is_raw(s) && bs->backing_file[0]) {
        err_set(err, "%s: an image with a raw external data file cannot have a backing file",
                bnode_describe(bs));
        ret = -EINVAL;
        goto fail;
    }
    ret = create_caches(s, options, err);
    if (ret < 0) {
        goto fail;
    }
    ret = load_l1(s, file_size, flags, err);
    if (ret < 0) {
        goto fail;
    }
    ret = qcow2_refcount_init(s, file_size, flags, err);
    if (ret < 0) {
        goto fail;
    }
    ret = qcow2_read_snapshots(s, file_size, flags, err);
    if (ret < 0) {
        goto fail;
    }
    s->zero_cluster = xzalloc(s->cluster_size);
    /* Only for a plain file we may resize: not for devices or external data files. */
    s->grow_ahead = !bs->read_only && !qcow2_has_data_file(s) &&
                    bnode_has_zero_init(bs->file->bs) && bs->file->bs->drv->co_truncate &&
                    !(flags & BDRV_O_CHECK);
    s->falloc_end = (uint64_t)file_size;
    s->size_at_open = (uint64_t)file_size;
    s->fresh_from = bnode_has_zero_init(bs->file->bs) ? ALIGN_UP((uint64_t)file_size,
                                                                 (uint64_t)s->cluster_size)
                                                      : UINT64_MAX;
    bnode_set_size(bs, (int64_t)s->size);

    bool writable = !bs->read_only;
    bool update_header = false;
    if (writable && (s->incompat & QCOW2_INCOMPAT_DIRTY) && !(flags & BDRV_O_CHECK)) {
        /* An unclean shutdown with lazy refcounts: rebuild them, as check -r all. */
        struct bdrv_check_result res = { 0 };
        co_mutex_lock(&s->lock);
        ret = qcow2_co_check_locked(s, &res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS);
        if (ret == 0 && !res.check_errors) {
            ret = qcow2_mark_clean(s);
        }
        co_mutex_unlock(&s->lock);
        if (ret < 0 || res.check_errors) {
            err_set(err, "%s: could not repair the dirty image (%s)", bnode_describe(bs),
                    ret < 0 ? strerror(-ret) : "check errors");
            ret = ret < 0 ? ret : -EIO;
            goto fail;
        }
        log_info("%s: repaired the refcounts of a dirty image (%d leaks, %d corruptions fixed)",
                 bnode_describe(bs), res.leaks_fixed, res.corruptions_fixed);
    }
    if (writable && (s->autoclear & ~QCOW2_AUTOCLEAR_KNOWN)) {
        s->autoclear &= QCOW2_AUTOCLEAR_KNOWN;
        update_header = true;
    }
    if (s->nb_bitmaps || (writable && (s->autoclear & QCOW2_AUTOCLEAR_BITMAPS))) {
        ret = qcow2_load_bitmaps(s, err);
        if (ret < 0) {
            goto fail;
        }
    }
    if (writable && !(flags & BDRV_O_CHECK) && s->nb_bitmaps) {
        co_mutex_lock(&s->lock);
        ret = qcow2_bitmaps_mark_in_use(s, err);
        co_mutex_unlock(&s->lock);
        if (ret < 0) {
            goto fail;
        }
    }
    if (update_header) {
        co_mutex_lock(&s->lock);
        ret = qcow2_update_header(s);
        co_mutex_unlock(&s->lock);
        if (ret < 0) {
            err_set_errno(err, ret, "%s: cannot update the header", bnode_describe(bs));
            goto fail;
        }
    }
    arm_clean_timer(s);
    return 0;

fail:
    free_state(s);
    return ret < 0 ? ret : -EINVAL;
}

/* ---- Close and flush ---------------------------------------------------------------- */

static int coroutine_fn write_caches(struct qcow2_state *s)
{
    int ret = qcow2_cache_write(s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_write(s->rb_cache);
    }
    return ret;
}

/*
 * Cut the image file back to its last used cluster when writes grew it
 * ahead (rw.c): after the metadata is written back, so the refcounts are
 * the ones on disk.  Under s->lock.
 */
static void give_back_grown(struct qcow2_state *s)
{
    if (!s->file_grown || s->corrupt_signalled || (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        /* A corrupt image's refcounts may miss clusters in use: cut nothing. */
        return;
    }
    int64_t end = qcow2_refcount_area_end(s);
    int64_t size = bnode_getlength(s->bs->file->bs);
    if (end < 0 || size < 0) {
        return;
    }
    end = MAX(end, (int64_t)s->size_at_open);
    if (end > 0 && size > end &&
        bnode_co_truncate(s->bs->file, end, false, PREALLOC_MODE_OFF, 0, NULL) == 0) {
        size = end;
    }
    s->falloc_end = size > 0 ? (uint64_t)size : 0;
    s->file_grown = false;
}

static void close_entry(void *opaque)
{
    struct qcow2_state *s = opaque;
    struct err err = { 0 };
    if (s->bs->read_only) {
        /* Nothing to write: the bitmaps loaded at open are only released. */
        co_mutex_lock(&s->lock);
        qcow2_store_bitmaps(s, true, &err);
        co_mutex_unlock(&s->lock);
        return;
    }
    co_mutex_lock(&s->lock);
    int ret = 0;
    if (!s->corrupt_signalled) {
        ret = qcow2_store_bitmaps(s, true, &err);
        if (ret < 0) {
            log_error("%s", err.msg);
        }
    }
    int r2 = write_caches(s);
    if (r2 == 0) {
        r2 = bnode_co_flush(s->bs->file->bs);
    }
    if (r2 == 0 && ret == 0 && !s->corrupt_signalled) {
        r2 = qcow2_mark_clean(s);
    }
    if (r2 < 0) {
        log_error("%s: cannot write metadata back on close: %s", bnode_describe(s->bs),
                  strerror(-r2));
    }
    if (r2 == 0) {
        give_back_grown(s);
    }
    co_mutex_unlock(&s->lock);
}

static void qcow2_close(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    s->closing = true;
    if (s->clean_timer_armed) {
        aio_timer_del(&s->clean_timer);
        s->clean_timer_armed = false;
    }
    co_run_sync(close_entry, s);
    free_state(s);
}

static int coroutine_fn qcow2_co_flush_to_os(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    co_mutex_lock(&s->lock);
    int ret = write_caches(s);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* ---- Information ------------------------------------------------------------------ */

static int64_t qcow2_getlength(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    return (int64_t)s->size;
}

static int64_t qcow2_get_cluster_size(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    return s->cluster_size;
}

static bool qcow2_is_dirty(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    return s->incompat & QCOW2_INCOMPAT_DIRTY;
}

static bool qcow2_has_zero_init(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    /* Preallocated images have every L2 table, others none: the first tells. */
    bool preallocated = s->l1_size > 0 && s->l1_table[0] != 0;
    if (!preallocated) {
        return true;
    }
    return bnode_has_zero_init(s->data_file->bs);
}

static json_t *qcow2_get_specific_info(struct block_node *bs, struct err *err)
{
    struct qcow2_state *s = bs->opaque;
    json_t *data = json_object();

    json_object_set_new(data, "compat", json_string(s->version == 2 ? "0.10" : "1.1"));
    json_object_set_new(data, "compression-type",
                        json_string(s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd"
                                                                                 : "zlib"));
    if (s->version >= 3) {
        json_object_set_new(data, "lazy-refcounts",
                            json_boolean(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS));
        json_t *bitmaps = qcow2_bitmaps_info(s);
        if (bitmaps) {
            json_object_set_new(data, "bitmaps", bitmaps);
        }
    }
    json_object_set_new(data, "refcount-bits", json_integer(s->refcount_bits));
    if (s->version >= 3) {
        if (qcow2_has_data_file(s) || (s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
            if (s->data_file_name) {
                json_object_set_new(data, "data-file", json_string(s->data_file_name));
            }
            json_object_set_new(data, "data-file-raw", json_boolean(qcow2_data_file_is_raw(s)));
        }
        json_object_set_new(data, "corrupt", json_boolean(s->incompat & QCOW2_INCOMPAT_CORRUPT));
        json_object_set_new(data, "extended-l2", json_boolean(s->ext_l2));
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("qcow2"));
    json_object_set_new(o, "data", data);
    return o;
}

static void qcow2_refresh_limits(struct block_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    bs->bl.request_alignment = 1;
    bs->bl.pwrite_zeroes_alignment = s->sc_size;
    bs->bl.pdiscard_alignment = s->cluster_size;
}

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len >= 8 && ld_be32(buf) == QCOW2_MAGIC && ld_be32(buf + 4) >= 2) {
        return 100;
    }
    return 0;
}

static int coroutine_fn qcow2_co_change_backing_file(struct block_node *bs,
                                                     const char *backing_file,
                                                     const char *backing_fmt)
{
    struct qcow2_state *s = bs->opaque;
    if (backing_file && backing_file[0] && qcow2_data_file_is_raw(s)) {
        return -EINVAL;
    }
    if ((backing_file && strlen(backing_file) > QCOW2_MAX_BACKING_NAME) ||
        (backing_fmt && strlen(backing_fmt) >= sizeof(bs->backing_format))) {
        return -EINVAL;
    }
    co_mutex_lock(&s->lock);
    char old_file[sizeof(bs->backing_file)], old_fmt[sizeof(bs->backing_format)];
    memcpy(old_file, bs->backing_file, sizeof(old_file));
    memcpy(old_fmt, bs->backing_format, sizeof(old_fmt));
    pstrcpy(bs->backing_file, sizeof(bs->backing_file), backing_file ? backing_file : "");
    pstrcpy(bs->backing_format, sizeof(bs->backing_format), backing_fmt ? backing_fmt : "");
    int ret = qcow2_update_header(s);
    if (ret < 0) {
        memcpy(bs->backing_file, old_file, sizeof(old_file));
        memcpy(bs->backing_format, old_fmt, sizeof(old_fmt));
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

struct reopen_co {
    struct qcow2_state *s;
    bool writable;
    struct err *err;
    int ret;
};

static void reopen_entry(void *opaque)
{
    struct reopen_co *r = opaque;
    struct qcow2_state *s = r->s;
    co_mutex_lock(&s->lock);
    if (!r->writable) {
        r->ret = qcow2_store_bitmaps(s, false, r->err);
        if (r->ret == 0) {
            r->ret = write_caches(s);
        }
        if (r->ret == 0) {
            r->ret = qcow2_mark_clean(s);
        }
        if (r->ret == 0) {
            give_back_grown(s);
        }
    } else if (s->nb_bitmaps) {
        r->ret = qcow2_bitmaps_mark_in_use(s, r->err);
    }
    co_mutex_unlock(&s->lock);
}

static int qcow2_reopen_rw(struct block_node *bs, bool writable, struct err *err)
{
    struct qcow2_state *s = bs->opaque;
    struct bdrv_child *c;
    if (writable == !bs->read_only) {
        return 0;
    }
    if (writable && (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        err_set(err, "%s: the image is marked corrupt; it cannot be made writable",
                bnode_describe(bs));
        return -EACCES;
    }
    struct reopen_co r = { s, writable, err, 0 };
    if (!writable) {
        co_run_sync(reopen_entry, &r);
        if (r.ret < 0) {
            return r.ret;
        }
    }
    list_for_each(c, &bs->children, parent_link) {
        if (c->role == BDRV_CHILD_BACKING || !c->bs->drv->reopen_rw) {
            continue;
        }
        int ret = c->bs->drv->reopen_rw(c->bs, writable, err);
        if (ret < 0) {
            return ret;
        }
        c->bs->read_only = !writable;
    }
    bs->read_only = !writable;
    if (writable) {
        co_run_sync(reopen_entry, &r);
    }
    return r.ret;
}

static const struct block_driver bdrv_qcow2 = {
    .format_name = "qcow2",
    .instance_size = sizeof(struct qcow2_state),
    .is_format = true,
    .supports_backing = true,
    .option_keys = qcow2_keys,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .co_create = qcow2_co_create,
    .create_opts = qcow2_create_opts,
    .has_zero_init = qcow2_has_zero_init,
    .getlength = qcow2_getlength,
    .refresh_limits = qcow2_refresh_limits,
    .co_preadv = qcow2_co_preadv,
    .co_pwritev = qcow2_co_pwritev,
    .supported_write_flags = BDRV_REQ_WRITE_COMPRESSED,
    .co_pwrite_zeroes = qcow2_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK,
    .co_pdiscard = qcow2_co_pdiscard,
    .co_flush_to_os = qcow2_co_flush_to_os,
    .co_block_status = qcow2_co_block_status,
    .co_truncate = qcow2_co_truncate,
    .get_specific_info = qcow2_get_specific_info,
    .get_cluster_size = qcow2_get_cluster_size,
    .is_dirty = qcow2_is_dirty,
    .co_check = qcow2_co_check,
    .co_change_backing_file = qcow2_co_change_backing_file,
    .reopen_rw = qcow2_reopen_rw,
    .format_ops = &qcow2_ops,
};

BLOCK_DRIVER_REGISTER(bdrv_qcow2)

const struct qcow2_format_ops *qcow2_get_ops(struct block_node *bs)
{
    bs = bnode_skip_filters(bs);
    return bs && bs->drv == &bdrv_qcow2 ? &qcow2_ops : NULL;
}
