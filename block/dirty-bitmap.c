/* Dirty bitmaps of nodes: creation, marking from the write path, merging. */
#include "block/dirty-bitmap.h"

#include "block/io-internal.h"
#include "util/hbitmap.h"
#include "util/log.h"

#define DEFAULT_GRANULARITY (64 * KiB)

static unsigned granularity_shift(uint32_t granularity)
{
    return (unsigned)ctz64(granularity);
}

uint32_t bdrv_default_bitmap_granularity(struct block_node *bs)
{
    (void)bs;
    return DEFAULT_GRANULARITY;
}

struct bdrv_dirty_bitmap *bdrv_find_dirty_bitmap(struct block_node *bs, const char *name)
{
    struct bdrv_dirty_bitmap *bm, *found = NULL;
    pthread_mutex_lock(&bs->dirty_lock);
    list_for_each(bm, &bs->dirty_bitmaps, link) {
        if (bm->name && !strcmp(bm->name, name)) {
            found = bm;
            break;
        }
    }
    pthread_mutex_unlock(&bs->dirty_lock);
    return found;
}

struct bdrv_dirty_bitmap *bdrv_create_dirty_bitmap(struct block_node *bs, uint32_t granularity,
                                                   const char *name, struct err *err)
{
    if (!granularity) {
        granularity = bdrv_default_bitmap_granularity(bs);
    }
    if (!is_power_of_2(granularity) || granularity < 512 || granularity > (1u << 31)) {
        err_set(err, "Granularity must be power of 2 between 512 and 2147483648");
        return NULL;
    }
    if (name && strlen(name) > 1023) {
        err_set(err, "Bitmap name is too long");
        return NULL;
    }
    if (name && bdrv_find_dirty_bitmap(bs, name)) {
        err_set(err, "Bitmap already exists: %s", name);
        return NULL;
    }
    int64_t size = bnode_getlength(bs);
    if (size < 0) {
        err_set_errno(err, (int)size, "%s: cannot get the size", bnode_describe(bs));
        return NULL;
    }
    struct bdrv_dirty_bitmap *bm = xzalloc(sizeof(*bm));
    bm->bs = bs;
    bm->name = name ? xstrdup(name) : NULL;
    bm->granularity = granularity;
    bm->bitmap = hbitmap_new((uint64_t)size, granularity_shift(granularity));
    pthread_mutex_lock(&bs->dirty_lock);
    list_add_tail(&bs->dirty_bitmaps, &bm->link);
    pthread_mutex_unlock(&bs->dirty_lock);
    return bm;
}

static void bitmap_free(struct bdrv_dirty_bitmap *bm)
{
    hbitmap_free(bm->bitmap);
    free(bm->name);
    free(bm);
}

void bdrv_release_dirty_bitmap(struct bdrv_dirty_bitmap *bm)
{
    if (!bm) {
        return;
    }
    struct block_node *bs = bm->bs;
    pthread_mutex_lock(&bs->dirty_lock);
    list_del(&bm->link);
    pthread_mutex_unlock(&bs->dirty_lock);
    if (bm->successor) {
        bdrv_release_dirty_bitmap(bm->successor);
    }
    bitmap_free(bm);
}

int bdrv_dirty_bitmap_foreach(struct block_node *bs,
                              int (*fn)(struct bdrv_dirty_bitmap *bm, void *opaque),
                              void *opaque)
{
    struct bdrv_dirty_bitmap *bm, *tmp;
    /* Main thread: the list changes only there, so no lock across the calls. */
    list_for_each_safe(bm, tmp, &bs->dirty_bitmaps, link) {
        int ret = fn(bm, opaque);
        if (ret) {
            return ret;
        }
    }
    return 0;
}

/* ---- From the request path --------------------------------------------- */

void bnode_dirty_set(struct block_node *bs, int64_t offset, int64_t bytes)
{
    struct bdrv_dirty_bitmap *bm;
    if (list_empty(&bs->dirty_bitmaps)) {
        return;
    }
    pthread_mutex_lock(&bs->dirty_lock);
    list_for_each(bm, &bs->dirty_bitmaps, link) {
        if (!bm->disabled) {
            hbitmap_set(bm->bitmap, offset, bytes);
        }
    }
    pthread_mutex_unlock(&bs->dirty_lock);
}

void bnode_dirty_truncate(struct block_node *bs, int64_t size)
{
    struct bdrv_dirty_bitmap *bm;
    pthread_mutex_lock(&bs->dirty_lock);
    list_for_each(bm, &bs->dirty_bitmaps, link) {
        hbitmap_truncate(bm->bitmap, (uint64_t)size);
    }
    pthread_mutex_unlock(&bs->dirty_lock);
}

/* ---- Bits -------------------------------------------------------------- */

void bdrv_set_dirty_bitmap(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t bytes)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    hbitmap_set(bm->bitmap, offset, bytes);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
}

void bdrv_reset_dirty_bitmap(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t bytes)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    hbitmap_reset(bm->bitmap, offset, bytes);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
}

void bdrv_clear_dirty_bitmap(struct bdrv_dirty_bitmap *bm)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    hbitmap_reset_all(bm->bitmap);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
}

bool bdrv_dirty_bitmap_get(struct bdrv_dirty_bitmap *bm, int64_t offset)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    bool dirty = hbitmap_get(bm->bitmap, offset);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    return dirty;
}

uint64_t bdrv_get_dirty_count(struct bdrv_dirty_bitmap *bm)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    uint64_t n = hbitmap_count(bm->bitmap);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    return n;
}

int64_t bdrv_dirty_bitmap_next_dirty(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t end)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    int64_t r = hbitmap_next_dirty(bm->bitmap, offset, end);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    return r;
}

int64_t bdrv_dirty_bitmap_next_zero(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t end)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    int64_t r = hbitmap_next_zero(bm->bitmap, offset, end);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    return r;
}

bool bdrv_dirty_bitmap_next_dirty_area(struct bdrv_dirty_bitmap *bm, int64_t offset,
                                       int64_t end, int64_t max_bytes, int64_t *area_start,
                                       int64_t *area_bytes)
{
    uint64_t s, n;
    pthread_mutex_lock(&bm->bs->dirty_lock);
    bool found = hbitmap_next_dirty_area(bm->bitmap, offset, end, max_bytes, &s, &n);
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    if (found) {
        *area_start = (int64_t)s;
        *area_bytes = (int64_t)n;
    }
    return found;
}

void bdrv_enable_dirty_bitmap(struct bdrv_dirty_bitmap *bm)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    bm->disabled = false;
    pthread_mutex_unlock(&bm->bs->dirty_lock);
}

void bdrv_disable_dirty_bitmap(struct bdrv_dirty_bitmap *bm)
{
    pthread_mutex_lock(&bm->bs->dirty_lock);
    bm->disabled = true;
    pthread_mutex_unlock(&bm->bs->dirty_lock);
}

int bdrv_dirty_bitmap_check_user(struct bdrv_dirty_bitmap *bm, struct err *err)
{
    const char *name = bm->name ? bm->name : "(anonymous)";
    if (bm->busy) {
        err_set(err, "Bitmap '%s' is currently in use by another operation and cannot be used",
                name);
        return -EBUSY;
    }
    if (bm->readonly) {
        err_set(err, "Bitmap '%s' is readonly and cannot be modified", name);
        return -EPERM;
    }
    if (bm->inconsistent) {
        err_set(err, "Bitmap '%s' is inconsistent and cannot be used (try "
                "block-dirty-bitmap-remove to delete this bitmap from disk)", name);
        return -EINVAL;
    }
    return 0;
}

/* dest |= src for bitmaps of different granularity: widen src's runs. */
static void merge_widened(struct hbitmap *dest, struct hbitmap *src, uint64_t size)
{
    struct hbitmap_iter it;
    int64_t pos;
    uint64_t g = 1ULL << hbitmap_granularity_shift(src);
    hbitmap_iter_init(&it, src, 0);
    while ((pos = hbitmap_iter_next(&it)) >= 0 && (uint64_t)pos < size) {
        hbitmap_set(dest, (uint64_t)pos, MIN(g, size - (uint64_t)pos));
    }
}

int bdrv_merge_dirty_bitmap(struct bdrv_dirty_bitmap *dest, struct bdrv_dirty_bitmap *src,
                            struct err *err)
{
    int ret = bdrv_dirty_bitmap_check_user(dest, err);
    if (ret < 0) {
        return ret;
    }
    if (src->inconsistent) {
        err_set(err, "Bitmap '%s' is inconsistent and cannot be used",
                src->name ? src->name : "(anonymous)");
        return -EINVAL;
    }
    if (dest->bs != src->bs) {
        /* Different nodes: lock both in a fixed order. */
        struct block_node *a = dest->bs < src->bs ? dest->bs : src->bs;
        struct block_node *b = dest->bs < src->bs ? src->bs : dest->bs;
        pthread_mutex_lock(&a->dirty_lock);
        pthread_mutex_lock(&b->dirty_lock);
    } else {
        pthread_mutex_lock(&dest->bs->dirty_lock);
    }
    uint64_t size = hbitmap_size(dest->bitmap);
    if (hbitmap_size(src->bitmap) == size &&
        hbitmap_granularity_shift(src->bitmap) == hbitmap_granularity_shift(dest->bitmap)) {
        hbitmap_merge(dest->bitmap, src->bitmap, dest->bitmap);
    } else {
        merge_widened(dest->bitmap, src->bitmap, MIN(size, hbitmap_size(src->bitmap)));
    }
    pthread_mutex_unlock(&dest->bs->dirty_lock);
    if (dest->bs != src->bs) {
        pthread_mutex_unlock(&src->bs->dirty_lock);
    }
    return 0;
}

/* ---- Successors -------------------------------------------------------- */

int bdrv_dirty_bitmap_create_successor(struct bdrv_dirty_bitmap *bm, struct err *err)
{
    if (bm->successor) {
        err_set(err, "Cannot create a successor for a bitmap that already has one");
        return -EBUSY;
    }
    struct bdrv_dirty_bitmap *child = bdrv_create_dirty_bitmap(bm->bs, bm->granularity, NULL,
                                                               err);
    if (!child) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&bm->bs->dirty_lock);
    child->disabled = bm->disabled;
    bm->disabled = true;     /* the successor records from now on */
    bm->busy = true;
    bm->successor = child;
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    return 0;
}

void bdrv_dirty_bitmap_abdicate(struct bdrv_dirty_bitmap *bm)
{
    struct bdrv_dirty_bitmap *child = bm->successor;
    if (!child) {
        return;
    }
    pthread_mutex_lock(&bm->bs->dirty_lock);
    /* The successor's bits become bm's: the old ones were copied out. */
    struct hbitmap *old = bm->bitmap;
    bm->bitmap = child->bitmap;
    child->bitmap = old;
    bm->disabled = child->disabled;
    bm->busy = false;
    bm->successor = NULL;
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    bdrv_release_dirty_bitmap(child);
}

void bdrv_dirty_bitmap_reclaim(struct bdrv_dirty_bitmap *bm)
{
    struct bdrv_dirty_bitmap *child = bm->successor;
    if (!child) {
        return;
    }
    pthread_mutex_lock(&bm->bs->dirty_lock);
    hbitmap_merge(bm->bitmap, child->bitmap, bm->bitmap);
    bm->disabled = child->disabled;
    bm->busy = false;
    bm->successor = NULL;
    pthread_mutex_unlock(&bm->bs->dirty_lock);
    bdrv_release_dirty_bitmap(child);
}

struct hbitmap *bdrv_dirty_bitmap_hbitmap(struct bdrv_dirty_bitmap *bm)
{
    return bm->bitmap;
}

json_t *bdrv_dirty_bitmaps_info(struct block_node *bs)
{
    json_t *list = json_array();
    struct bdrv_dirty_bitmap *bm;
    pthread_mutex_lock(&bs->dirty_lock);
    list_for_each(bm, &bs->dirty_bitmaps, link) {
        json_t *o = json_object();
        if (bm->name) {
            json_object_set_new(o, "name", json_string(bm->name));
        }
        json_object_set_new(o, "recording", json_boolean(!bm->disabled));
        json_object_set_new(o, "persistent", json_boolean(bm->persistent));
        json_object_set_new(o, "busy", json_boolean(bm->busy));
        json_object_set_new(o, "count", json_integer((json_int_t)hbitmap_count(bm->bitmap)));
        json_object_set_new(o, "granularity", json_integer(bm->granularity));
        if (bm->inconsistent) {
            json_object_set_new(o, "inconsistent", json_true());
        }
        json_array_append_new(list, o);
    }
    pthread_mutex_unlock(&bs->dirty_lock);
    return list;
}
