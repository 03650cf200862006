/*
 * Persistent dirty bitmaps: the bitmaps extension, the bitmap directory,
 * bitmap tables and bitmap data.
 *
 * On open the bitmaps are loaded into bdrv_dirty_bitmaps of the node
 * (persistent; disabled unless their auto flag is set; inconsistent when
 * their in_use flag says an earlier user did not store them).  A writable
 * open sets in_use on them in the image, as QEMU does, so a crash leaves
 * them marked inconsistent.  On close (and through the bitmaps_store hook)
 * every persistent bitmap is written: its dirty parts into new clusters,
 * a new table, a new directory, then the header; the old clusters are
 * freed last.  The directory on disk is mirrored in s->bm_dir.
 */
#include "qcow2/qcow2-int.h"

#include <stdio.h>

#include "block/dirty-bitmap.h"
#include "util/hbitmap.h"
#include "util/log.h"

#define DIR_ENTRY_HEADER 24

static const char *image_name(const struct qcow2_state *s)
{
    return bnode_describe(s->bs);
}

static uint64_t dir_entry_size(size_t name_len, uint32_t extra)
{
    return ALIGN_UP(DIR_ENTRY_HEADER + extra + name_len, 8);
}

void qcow2_bitmap_list_free(struct qcow2_bitmap_entry *list, uint32_t n)
{
    for (uint32_t i = 0; i < n && list; i++) {
        free(list[i].name);
        free(list[i].extra_data);
    }
    free(list);
}

/* ---- The extension and the directory ---------------------------------------------- */

int qcow2_read_bitmap_ext(struct qcow2_state *s, const uint8_t *data, uint32_t len,
                          int64_t file_size, struct err *err)
{
    if (len != 24) {
        err_set(err, "%s: bitmaps extension has length %u, not 24", image_name(s), len);
        return -EINVAL;
    }
    if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
        log_warn("%s: a program lacking bitmap support modified this file, so all bitmaps are "
                 "now considered inconsistent; some clusters may be leaked (run 'qemu-img "
                 "check -r' to fix it)", image_name(s));
        return 0;
    }
    uint32_t nb = ld_be32(data);
    uint32_t reserved = ld_be32(data + 4);
    uint64_t size = ld_be64(data + 8);
    uint64_t off = ld_be64(data + 16);
    if (reserved) {
        err_set(err, "%s: bitmaps extension: the reserved field is not zero", image_name(s));
        return -EINVAL;
    }
    if (nb == 0 || nb > QCOW2_MAX_BITMAPS) {
        err_set(err, "%s: bitmaps extension: %u bitmaps (1 to 65535 are allowed)",
                image_name(s), nb);
        return -EINVAL;
    }
    if (size == 0 || size > QCOW2_MAX_BITMAP_DIR) {
        err_set(err, "%s: bitmap directory of %" PRIu64 " bytes exceeds the maximum of %llu",
                image_name(s), size, (unsigned long long)QCOW2_MAX_BITMAP_DIR);
        return -EINVAL;
    }
    if (off & (s->cluster_size - 1)) {
        err_set(err, "%s: bitmap directory offset 0x%" PRIx64 " is not cluster aligned",
                image_name(s), off);
        return -EINVAL;
    }
    if (off < s->cluster_size || off + size > (uint64_t)file_size) {
        err_set(err, "%s: bitmap directory at 0x%" PRIx64 " (%" PRIu64 " bytes) is not inside "
                "the file", image_name(s), off, size);
        return -EINVAL;
    }
    s->nb_bitmaps = nb;
    s->bitmap_directory_size = size;
    s->bitmap_directory_offset = off;
    return 0;
}

/* Check one directory entry against the format and QEMU's limits. */
static const char *bad_entry(struct qcow2_state *s, const struct qcow2_bitmap_entry *e,
                             int64_t file_size)
{
    uint64_t phys = (uint64_t)e->table_size * s->cluster_size;
    if (e->type != BME_TYPE_DIRTY) {
        return "is not a dirty tracking bitmap";
    }
    if (e->granularity_bits < BME_MIN_GRANULARITY_BITS ||
        e->granularity_bits > BME_MAX_GRANULARITY_BITS) {
        return "has an unsupported granularity";
    }
    if (e->flags & BME_RESERVED_FLAGS) {
        return "has reserved flags set";
    }
    if (e->table_size == 0 || e->table_size > BME_MAX_TABLE_SIZE || phys > BME_MAX_PHYS_SIZE) {
        return "has a bitmap table of invalid size";
    }
    if (s->size > ((phys * 8) << e->granularity_bits)) {
        return "has a bitmap table too small for the disk";
    }
    if ((e->table_offset & (s->cluster_size - 1)) || e->table_offset < s->cluster_size ||
        e->table_offset + (uint64_t)e->table_size * 8 > (uint64_t)file_size) {
        return "has a bitmap table outside the file or not cluster aligned";
    }
    return NULL;
}

int coroutine_fn qcow2_read_bitmap_directory(struct qcow2_state *s,
                                             struct qcow2_bitmap_entry **list, uint32_t *n,
                                             struct err *err)
{
    *list = NULL;
    *n = 0;
    if (!s->nb_bitmaps) {
        return 0;
    }
    uint64_t size = s->bitmap_directory_size;
    uint8_t *dir = xmalloc(size);
    int ret = bnode_co_pread(s->bs->file, s->bitmap_directory_offset, size, dir, 0);
    if (ret < 0) {
        free(dir);
        return err_set_errno(err, ret, "%s: cannot read the bitmap directory", image_name(s));
    }
    int64_t file_size = bnode_getlength(s->bs->file->bs);
    struct qcow2_bitmap_entry *l = xcalloc(s->nb_bitmaps, sizeof(*l));
    uint64_t off = 0;
    uint32_t i;
    for (i = 0; i < s->nb_bitmaps; i++) {
        if (size - off < DIR_ENTRY_HEADER) {
            break;
        }
        const uint8_t *p = dir + off;
        struct qcow2_bitmap_entry *e = &l[i];
        e->table_offset = ld_be64(p);
        e->table_size = ld_be32(p + 8);
        e->flags = ld_be32(p + 12);
        e->type = p[16];
        e->granularity_bits = p[17];
        uint16_t name_len = ld_be16(p + 18);
        e->extra_data_size = ld_be32(p + 20);
        uint64_t esize = dir_entry_size(name_len, e->extra_data_size);
        if (name_len == 0 || name_len > BME_MAX_NAME_SIZE || e->extra_data_size > size ||
            esize > size - off) {
            err_set(err, "%s: bitmap directory entry %u at 0x%" PRIx64 " has an invalid name "
                    "or size", image_name(s), i, s->bitmap_directory_offset + off);
            ret = -EINVAL;
            goto fail;
        }
        if (e->extra_data_size) {
            e->extra_data = xmalloc(e->extra_data_size);
            memcpy(e->extra_data, p + DIR_ENTRY_HEADER, e->extra_data_size);
        }
        e->name = xmalloc(name_len + 1);
        memcpy(e->name, p + DIR_ENTRY_HEADER + e->extra_data_size, name_len);
        e->name[name_len] = '\0';
        const char *why = bad_entry(s, e, file_size);
        if (why) {
            err_set(err, "%s: bitmap '%s' %s", image_name(s), e->name, why);
            ret = -EINVAL;
            goto fail;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (!strcmp(l[j].name, e->name)) {
                err_set(err, "%s: bitmap name '%s' appears twice", image_name(s), e->name);
                ret = -EINVAL;
                goto fail;
            }
        }
        off += esize;
    }
    if (i < s->nb_bitmaps || off != size) {
        err_set(err, "%s: the bitmap directory size (%" PRIu64 ") does not match its %u "
                "entries", image_name(s), size, s->nb_bitmaps);
        ret = -EINVAL;
        goto fail;
    }
    free(dir);
    *list = l;
    *n = s->nb_bitmaps;
    return 0;
fail:
    free(dir);
    qcow2_bitmap_list_free(l, s->nb_bitmaps);
    return ret;
}

/* Write the directory list at off (size bytes, computed by the caller). */
static int coroutine_fn write_directory(struct qcow2_state *s,
                                        const struct qcow2_bitmap_entry *l, uint32_t n,
                                        uint64_t off, uint64_t size, int ign)
{
    uint8_t *dir = xzalloc(MAX(size, 1));
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct qcow2_bitmap_entry *e = &l[i];
        size_t name_len = strlen(e->name);
        uint8_t *p = dir + pos;
        st_be64(p, e->table_offset);
        st_be32(p + 8, e->table_size);
        st_be32(p + 12, e->flags);
        p[16] = e->type;
        p[17] = e->granularity_bits;
        st_be16(p + 18, (uint16_t)name_len);
        st_be32(p + 20, e->extra_data_size);
        if (e->extra_data_size) {
            memcpy(p + DIR_ENTRY_HEADER, e->extra_data, e->extra_data_size);
        }
        memcpy(p + DIR_ENTRY_HEADER + e->extra_data_size, e->name, name_len);
        pos += dir_entry_size(name_len, e->extra_data_size);
    }
    int ret = qcow2_write_meta(s, ign, off, dir, size);
    free(dir);
    return ret;
}

static uint64_t directory_size(const struct qcow2_bitmap_entry *l, uint32_t n)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        size += dir_entry_size(strlen(l[i].name), l[i].extra_data_size);
    }
    return size;
}

static int coroutine_fn header_sync(struct qcow2_state *s)
{
    int ret = qcow2_cache_flush(s->rb_cache);
    if (ret == 0) {
        ret = qcow2_update_header(s);
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    return ret;
}

/*
 * Put a new directory (list l, n entries; it takes ownership) in new
 * clusters, point the header at it, and free the old one.
 */
static int coroutine_fn replace_directory(struct qcow2_state *s, struct qcow2_bitmap_entry *l,
                                          uint32_t n)
{
    uint64_t size = directory_size(l, n);
    int64_t off = 0;
    int ret = 0;
    if (n) {
        off = qcow2_alloc_clusters(s, size, NULL);
        if (off < 0) {
            qcow2_bitmap_list_free(l, n);
            return (int)off;
        }
        ret = write_directory(s, l, n, (uint64_t)off, size, 0);
        if (ret < 0) {
            qcow2_free_clusters(s, (uint64_t)off, size, QCOW2_DISCARD_NEVER);
            qcow2_bitmap_list_free(l, n);
            return ret;
        }
    }
    uint64_t old_off = s->bitmap_directory_offset, old_size = s->bitmap_directory_size;
    uint32_t old_nb = s->nb_bitmaps;
    uint64_t old_autoclear = s->autoclear;
    s->nb_bitmaps = n;
    s->bitmap_directory_offset = (uint64_t)off;
    s->bitmap_directory_size = n ? size : 0;
    if (n) {
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    ret = header_sync(s);
    if (ret < 0) {
        s->nb_bitmaps = old_nb;
        s->bitmap_directory_offset = old_off;
        s->bitmap_directory_size = old_size;
        s->autoclear = old_autoclear;
        if (n) {
            qcow2_free_clusters(s, (uint64_t)off, size, QCOW2_DISCARD_NEVER);
        }
        qcow2_bitmap_list_free(l, n);
        return ret;
    }
    qcow2_bitmap_list_free(s->bm_dir, s->bm_dir_n);
    s->bm_dir = l;
    s->bm_dir_n = n;
    if (old_nb && old_size) {
        qcow2_free_clusters(s, old_off, old_size, QCOW2_DISCARD_OTHER);
    }
    return 0;
}

/* ---- Bitmap tables and data --------------------------------------------------------- */

static int coroutine_fn read_table(struct qcow2_state *s, const struct qcow2_bitmap_entry *e,
                                   uint64_t **table)
{
    uint64_t *t = xmalloc((uint64_t)e->table_size * 8);
    int ret = bnode_co_pread(s->bs->file, e->table_offset, (uint64_t)e->table_size * 8, t, 0);
    if (ret < 0) {
        free(t);
        return ret;
    }
    for (uint32_t i = 0; i < e->table_size; i++) {
        t[i] = be64toh(t[i]);
    }
    *table = t;
    return 0;
}

/* Free a bitmap's data clusters and its table. */
static void free_bitmap_clusters(struct qcow2_state *s, const struct qcow2_bitmap_entry *e,
                                 const uint64_t *table)
{
    for (uint32_t i = 0; table && i < e->table_size; i++) {
        uint64_t off = table[i] & BME_TABLE_ENTRY_OFFSET_MASK;
        if (off) {
            qcow2_free_clusters(s, off, s->cluster_size, QCOW2_DISCARD_OTHER);
        }
    }
    if (e->table_offset) {
        qcow2_free_clusters(s, e->table_offset, (uint64_t)e->table_size * 8,
                            QCOW2_DISCARD_OTHER);
    }
}

/* Bytes of the disk one cluster of bitmap data covers. */
static uint64_t cluster_coverage(const struct qcow2_state *s, uint32_t granularity_bits)
{
    return ((uint64_t)s->cluster_size * 8) << granularity_bits;
}

static int coroutine_fn load_data(struct qcow2_state *s, const struct qcow2_bitmap_entry *e,
                                  struct hbitmap *hb)
{
    uint64_t *table;
    int ret = read_table(s, e, &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t limit = cluster_coverage(s, e->granularity_bits);
    uint8_t *buf = xmalloc(s->cluster_size);
    for (uint32_t i = 0; i < e->table_size && ret == 0; i++) {
        uint64_t start = (uint64_t)i * limit;
        if (start >= s->size) {
            break;
        }
        uint64_t count = MIN(limit, s->size - start);
        uint64_t te = table[i];
        uint64_t off = te & BME_TABLE_ENTRY_OFFSET_MASK;
        if (te & BME_TABLE_ENTRY_RESERVED_MASK) {
            log_error("%s: bitmap '%s' table entry %u has reserved bits set", image_name(s),
                      e->name, i);
            ret = -EINVAL;
        } else if (!off) {
            if (te & BME_TABLE_ENTRY_FLAG_ALL_ONES) {
                hbitmap_deserialize_ones(hb, start, count);
            } else {
                hbitmap_deserialize_zeroes(hb, start, count);
            }
        } else if (off & (s->cluster_size - 1)) {
            log_error("%s: bitmap '%s' data offset 0x%" PRIx64 " is not cluster aligned",
                      image_name(s), e->name, off);
            ret = -EINVAL;
        } else {
            ret = bnode_co_pread(s->bs->file, off, s->cluster_size, buf, 0);
            if (ret == 0) {
                hbitmap_deserialize_part(hb, buf, start, count);
            }
        }
    }
    hbitmap_deserialize_finish(hb);
    free(buf);
    free(table);
    return ret;
}

/* Write hb's dirty parts into new clusters and a new table. */
static int coroutine_fn store_data(struct qcow2_state *s, struct qcow2_bitmap_entry *e,
                                   struct hbitmap *hb)
{
    uint64_t limit = cluster_coverage(s, e->granularity_bits);
    uint64_t tb_size = DIV_ROUND_UP(s->size, limit);
    if (tb_size == 0) {
        tb_size = 1;
    }
    if (tb_size > BME_MAX_TABLE_SIZE || tb_size * s->cluster_size > BME_MAX_PHYS_SIZE) {
        log_error("%s: bitmap '%s' is too big", image_name(s), e->name);
        return -EFBIG;
    }
    uint64_t *table = xzalloc(tb_size * 8);
    uint8_t *buf = bnode_blockalign(s->bs->file->bs, s->cluster_size);
    int ret = 0;
    int64_t next;
    uint64_t pos = 0;
    while (ret == 0 && pos < s->size &&
           (next = hbitmap_next_dirty(hb, pos, s->size)) >= 0) {
        uint64_t start = ALIGN_DOWN((uint64_t)next, limit);
        uint64_t end = MIN(s->size, start + limit);
        uint64_t bytes = hbitmap_serialization_size(hb, start, end - start);
        memset(buf, 0, s->cluster_size);
        hbitmap_serialize_part(hb, buf, start, end - start);
        (void)bytes;
        int64_t off = qcow2_alloc_clusters(s, s->cluster_size, NULL);
        if (off < 0) {
            ret = (int)off;
            break;
        }
        table[start / limit] = (uint64_t)off;
        ret = qcow2_write_meta(s, 0, (uint64_t)off, buf, s->cluster_size);
        pos = end;
    }
    free(buf);
    int64_t toff = -1;
    if (ret == 0) {
        toff = qcow2_alloc_clusters(s, tb_size * 8, NULL);
        ret = toff < 0 ? (int)toff : 0;
    }
    if (ret == 0) {
        uint64_t *be = xmalloc(tb_size * 8);
        for (uint64_t i = 0; i < tb_size; i++) {
            be[i] = htobe64(table[i]);
        }
        ret = qcow2_write_meta(s, 0, (uint64_t)toff, be, tb_size * 8);
        free(be);
    }
    if (ret < 0) {
        struct qcow2_bitmap_entry tmp = *e;
        tmp.table_size = (uint32_t)tb_size;
        tmp.table_offset = toff > 0 ? (uint64_t)toff : 0;
        free_bitmap_clusters(s, &tmp, table);
        free(table);
        return ret;
    }
    free(table);
    e->table_offset = (uint64_t)toff;
    e->table_size = (uint32_t)tb_size;
    return 0;
}

/* ---- Loading at open ----------------------------------------------------------------- */

int coroutine_fn qcow2_load_bitmaps(struct qcow2_state *s, struct err *err)
{
    struct block_node *bs = s->bs;
    struct err e = { 0 };
    int ret = qcow2_read_bitmap_directory(s, &s->bm_dir, &s->bm_dir_n, &e);
    if (ret < 0) {
        if (bs->open_flags & BDRV_O_CHECK) {
            /* check will report it. */
            log_warn("%s", e.msg);
            return 0;
        }
        err_propagate(err, &e);
        return ret;
    }
    if (bs->open_flags & BDRV_O_NO_IO) {
        return 0;
    }
    for (uint32_t i = 0; i < s->bm_dir_n; i++) {
        struct qcow2_bitmap_entry *d = &s->bm_dir[i];
        if (d->extra_data_size && !(d->flags & BME_FLAG_EXTRA_COMPAT)) {
            /* Unknown extra data we may not ignore: kept in the image, not used. */
            continue;
        }
        if (bdrv_find_dirty_bitmap(bs, d->name)) {
            continue;
        }
        struct bdrv_dirty_bitmap *bm = bdrv_create_dirty_bitmap(bs, 1U << d->granularity_bits,
                                                                d->name, err);
        if (!bm) {
            return -EINVAL;
        }
        bm->persistent = true;
        if (d->flags & BME_FLAG_IN_USE) {
            bm->inconsistent = true;
        } else {
            ret = load_data(s, d, bdrv_dirty_bitmap_hbitmap(bm));
            if (ret < 0) {
                err_set_errno(err, ret, "%s: cannot load bitmap '%s'", image_name(s), d->name);
                bdrv_release_dirty_bitmap(bm);
                return ret;
            }
        }
        bm->disabled = !(d->flags & BME_FLAG_AUTO);
        bm->readonly = bs->read_only;
    }
    return 0;
}

int coroutine_fn qcow2_bitmaps_mark_in_use(struct qcow2_state *s, struct err *err)
{
    bool change = false;
    for (uint32_t i = 0; i < s->bm_dir_n; i++) {
        struct bdrv_dirty_bitmap *bm = bdrv_find_dirty_bitmap(s->bs, s->bm_dir[i].name);
        if (bm && !bm->inconsistent && !(s->bm_dir[i].flags & BME_FLAG_IN_USE)) {
            s->bm_dir[i].flags |= BME_FLAG_IN_USE;
            change = true;
        }
        if (bm) {
            bm->readonly = false;
        }
    }
    if (!change) {
        return 0;
    }
    /* In place: first make the extension inconsistent, then rewrite it, then consistent. */
    s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    int ret = header_sync(s);
    if (ret == 0) {
        ret = write_directory(s, s->bm_dir, s->bm_dir_n, s->bitmap_directory_offset,
                              s->bitmap_directory_size, QCOW2_OL_BITMAP_DIR);
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
        ret = header_sync(s);
    }
    if (ret < 0) {
        err_set_errno(err, ret, "%s: cannot mark the bitmaps in use", image_name(s));
    }
    return ret;
}

/* ---- Storing ------------------------------------------------------------------------------ */

static int find_entry(const struct qcow2_bitmap_entry *l, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!strcmp(l[i].name, name)) {
            return (int)i;
        }
    }
    return -1;
}

static struct qcow2_bitmap_entry *copy_list(const struct qcow2_bitmap_entry *l, uint32_t n,
                                            uint32_t extra)
{
    struct qcow2_bitmap_entry *c = xcalloc(n + extra + 1, sizeof(*c));
    for (uint32_t i = 0; i < n; i++) {
        c[i] = l[i];
        c[i].name = xstrdup(l[i].name);
        if (l[i].extra_data_size) {
            c[i].extra_data = xmalloc(l[i].extra_data_size);
            memcpy(c[i].extra_data, l[i].extra_data, l[i].extra_data_size);
        }
    }
    return c;
}

struct store_ctx {
    struct qcow2_state *s;
    struct qcow2_bitmap_entry *list;
    uint32_t n;
    uint32_t cap;
    struct qcow2_bitmap_entry *drop;    /* old tables to free once the new directory is in */
    uint32_t ndrop;
    int ret;
    struct err *err;
};

static int store_one(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    struct store_ctx *c = opaque;
    struct qcow2_state *s = c->s;
    if (!bm->name || !bm->persistent || bm->inconsistent || bm->readonly) {
        return 0;
    }
    int i = find_entry(c->list, c->n, bm->name);
    if (i < 0) {
        if (c->n >= QCOW2_MAX_BITMAPS) {
            err_set(c->err, "%s: too many persistent bitmaps", image_name(s));
            return c->ret = -EFBIG;
        }
        if (c->n == c->cap) {
            c->cap = c->cap * 2 + 4;
            c->list = xrealloc(c->list, c->cap * sizeof(*c->list));
        }
        i = (int)c->n++;
        memset(&c->list[i], 0, sizeof(c->list[i]));
        c->list[i].name = xstrdup(bm->name);
        c->list[i].type = BME_TYPE_DIRTY;
    } else if (c->list[i].table_offset) {
        /* The old data is dropped once the new directory is on disk. */
        c->drop = xrealloc(c->drop, (c->ndrop + 1) * sizeof(*c->drop));
        c->drop[c->ndrop] = c->list[i];
        c->drop[c->ndrop].name = NULL;
        c->drop[c->ndrop].extra_data = NULL;
        c->ndrop++;
    }
    struct qcow2_bitmap_entry *e = &c->list[i];
    e->granularity_bits = (uint8_t)ctz64(bm->granularity);
    e->flags = (bm->disabled ? 0 : BME_FLAG_AUTO) |
               (e->extra_data_size ? (e->flags & BME_FLAG_EXTRA_COMPAT) : 0);
    e->table_offset = 0;
    e->table_size = 0;
    pthread_mutex_lock(&s->bs->dirty_lock);
    struct hbitmap *copy = hbitmap_copy(bdrv_dirty_bitmap_hbitmap(bm));
    pthread_mutex_unlock(&s->bs->dirty_lock);
    c->ret = store_data(s, e, copy);
    hbitmap_free(copy);
    if (c->ret < 0) {
        err_set_errno(c->err, c->ret, "%s: cannot store bitmap '%s'", image_name(s), bm->name);
    }
    return c->ret;
}

static int release_one(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    if (bm->persistent) {
        bdrv_release_dirty_bitmap(bm);
    }
    return 0;
}

static int count_persistent(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    return bm->persistent && bm->name ? 1 : 0;
}

int coroutine_fn qcow2_store_bitmaps(struct qcow2_state *s, bool release, struct err *err)
{
    struct block_node *bs = s->bs;
    if (!bdrv_dirty_bitmap_foreach(bs, count_persistent, NULL) && !s->bm_dir_n) {
        return 0;
    }
    if (bs->read_only) {
        if (release) {
            bdrv_dirty_bitmap_foreach(bs, release_one, NULL);
        }
        return 0;
    }
    if (s->version < 3) {
        err_set(err, "%s: cannot store dirty bitmaps in qcow2 v2 files", image_name(s));
        return -ENOTSUP;
    }
    struct store_ctx c = { .s = s, .err = err };
    c.list = copy_list(s->bm_dir, s->bm_dir_n, 0);
    c.n = c.cap = s->bm_dir_n;
    c.cap++;
    bdrv_dirty_bitmap_foreach(bs, store_one, &c);
    int ret = c.ret;
    if (ret == 0) {
        ret = replace_directory(s, c.list, c.n);
        c.list = NULL;
    }
    if (ret == 0) {
        for (uint32_t i = 0; i < c.ndrop; i++) {
            uint64_t *table = NULL;
            if (read_table(s, &c.drop[i], &table) == 0) {
                free_bitmap_clusters(s, &c.drop[i], table);
                free(table);
            }
        }
    }
    qcow2_bitmap_list_free(c.list, c.n);
    free(c.drop);
    if (ret == 0 && release) {
        bdrv_dirty_bitmap_foreach(bs, release_one, NULL);
    }
    return ret;
}

/* ---- Hooks ------------------------------------------------------------------------------- */

int qcow2_bitmap_can_store(struct block_node *bs, const char *name, uint32_t granularity,
                           struct err *err)
{
    bs = bnode_skip_filters(bs);
    struct qcow2_state *s = bs->opaque;
    const char *why = NULL;
    uint32_t gbits = is_power_of_2(granularity) ? (uint32_t)ctz64(granularity) : 0;
    char buf[160];

    if (s->version < 3) {
        why = "Cannot store dirty bitmaps in qcow2 v2 files";
    } else if (!is_power_of_2(granularity) || gbits > BME_MAX_GRANULARITY_BITS) {
        why = "Granularity exceeds maximum (2147483648 bytes)";
    } else if (gbits < BME_MIN_GRANULARITY_BITS) {
        why = "Granularity is under minimum (512 bytes)";
    } else if (s->size > (BME_MAX_PHYS_SIZE << gbits) ||
               s->size > ((uint64_t)BME_MAX_TABLE_SIZE * s->cluster_size << gbits)) {
        why = "Too much space will be occupied by the bitmap. Use larger granularity";
    } else if (strlen(name) > BME_MAX_NAME_SIZE) {
        why = "Name length exceeds maximum (1023 characters)";
    } else if (s->bm_dir_n >= QCOW2_MAX_BITMAPS) {
        why = "Maximum number of persistent bitmaps is already reached";
    } else if (s->bitmap_directory_size + dir_entry_size(strlen(name), 0) >
               QCOW2_MAX_BITMAP_DIR) {
        why = "Not enough space in the bitmap directory";
    } else if (find_entry(s->bm_dir, s->bm_dir_n, name) >= 0) {
        why = "Bitmap with the same name is already stored";
    }
    if (why) {
        snprintf(buf, sizeof(buf), "%s", why);
        err_set(err, "Can't make bitmap '%s' persistent in '%s': %s", name, bnode_describe(bs),
                buf);
        return -EINVAL;
    }
    return 0;
}

struct remove_op {
    struct qcow2_state *s;
    const char *name;
    struct err *err;
    int ret;
};

static void remove_entry(void *opaque)
{
    struct remove_op *op = opaque;
    struct qcow2_state *s = op->s;
    co_mutex_lock(&s->lock);
    int i = find_entry(s->bm_dir, s->bm_dir_n, op->name);
    if (i >= 0) {
        struct qcow2_bitmap_entry gone = s->bm_dir[i];
        struct qcow2_bitmap_entry *l = copy_list(s->bm_dir, s->bm_dir_n, 0);
        free(l[i].name);
        free(l[i].extra_data);
        memmove(&l[i], &l[i + 1], (s->bm_dir_n - (uint32_t)i - 1) * sizeof(*l));
        uint64_t *table = NULL;
        int tr = read_table(s, &gone, &table);
        op->ret = replace_directory(s, l, s->bm_dir_n - 1);
        if (op->ret == 0 && tr == 0) {
            free_bitmap_clusters(s, &gone, table);
        }
        free(table);
        if (op->ret < 0) {
            err_set_errno(op->err, op->ret, "%s: cannot remove bitmap '%s'", image_name(s),
                          op->name);
        }
    }
    co_mutex_unlock(&s->lock);
}

int qcow2_bitmap_remove(struct block_node *bs, const char *name, struct err *err)
{
    bs = bnode_skip_filters(bs);
    struct qcow2_state *s = bs->opaque;
    struct bdrv_dirty_bitmap *bm = bdrv_find_dirty_bitmap(bs, name);
    if (!bm && find_entry(s->bm_dir, s->bm_dir_n, name) < 0) {
        err_set(err, "Dirty bitmap '%s' not found", name);
        return -ENOENT;
    }
    if (bs->read_only) {
        err_set(err, "%s: the image is read-only", bnode_describe(bs));
        return -EPERM;
    }
    struct remove_op op = { s, name, err, 0 };
    co_run_sync(remove_entry, &op);
    if (op.ret == 0 && bm) {
        bdrv_release_dirty_bitmap(bm);
    }
    return op.ret;
}

struct store_op {
    struct qcow2_state *s;
    struct err *err;
    int ret;
};

static void store_entry(void *opaque)
{
    struct store_op *op = opaque;
    co_mutex_lock(&op->s->lock);
    op->ret = qcow2_store_bitmaps(op->s, false, op->err);
    if (op->ret == 0) {
        /* Still in use by us: mark them so again. */
        op->ret = qcow2_bitmaps_mark_in_use(op->s, op->err);
    }
    co_mutex_unlock(&op->s->lock);
}

int qcow2_bitmaps_store_hook(struct block_node *bs, struct err *err)
{
    bs = bnode_skip_filters(bs);
    struct store_op op = { bs->opaque, err, 0 };
    if (bs->read_only) {
        err_set(err, "%s: the image is read-only", bnode_describe(bs));
        return -EPERM;
    }
    co_run_sync(store_entry, &op);
    return op.ret;
}

int coroutine_fn qcow2_bitmaps_drop_all(struct qcow2_state *s)
{
    for (uint32_t i = 0; i < s->bm_dir_n; i++) {
        uint64_t *table = NULL;
        if (read_table(s, &s->bm_dir[i], &table) == 0) {
            free_bitmap_clusters(s, &s->bm_dir[i], table);
        }
        free(table);
    }
    return replace_directory(s, NULL, 0);
}

/* ---- Info and check ------------------------------------------------------------------ */

json_t *qcow2_bitmaps_info(struct qcow2_state *s)
{
    if (!s->bm_dir_n) {
        return NULL;
    }
    json_t *a = json_array();
    for (uint32_t i = 0; i < s->bm_dir_n; i++) {
        struct qcow2_bitmap_entry *e = &s->bm_dir[i];
        json_t *o = json_object();
        json_t *flags = json_array();
        if (e->flags & BME_FLAG_IN_USE) {
            json_array_append_new(flags, json_string("in-use"));
        }
        if (e->flags & BME_FLAG_AUTO) {
            json_array_append_new(flags, json_string("auto"));
        }
        json_object_set_new(o, "flags", flags);
        json_object_set_new(o, "name", json_string(e->name));
        json_object_set_new(o, "granularity", json_integer(1LL << e->granularity_bits));
        json_array_append_new(a, o);
    }
    return a;
}

int coroutine_fn qcow2_bitmaps_for_each_cluster(struct qcow2_state *s,
                                                int (*fn)(void *opaque, uint64_t offset,
                                                          uint64_t size),
                                                void *opaque)
{
    if (!s->nb_bitmaps) {
        return 0;
    }
    struct qcow2_bitmap_entry *l;
    uint32_t n;
    struct err err = { 0 };
    int ret = qcow2_read_bitmap_directory(s, &l, &n, &err);
    if (ret < 0) {
        fprintf(stderr, "ERROR %s\n", err.msg);
        return ret;
    }
    fn(opaque, s->bitmap_directory_offset, s->bitmap_directory_size);
    for (uint32_t i = 0; i < n && ret == 0; i++) {
        uint64_t *table;
        ret = read_table(s, &l[i], &table);
        if (ret < 0) {
            break;
        }
        fn(opaque, l[i].table_offset, (uint64_t)l[i].table_size * 8);
        for (uint32_t j = 0; j < l[i].table_size; j++) {
            uint64_t off = table[j] & BME_TABLE_ENTRY_OFFSET_MASK;
            if (off) {
                fn(opaque, off, s->cluster_size);
            }
        }
        free(table);
    }
    qcow2_bitmap_list_free(l, n);
    return ret;
}
