/*
 * Dirty bitmaps: which parts of a node were written since a point in
 * time, at a granularity.  The request path marks every enabled bitmap of
 * a node after each write, zero write and discard.  Mirror and backup use
 * anonymous ones; users create named ones (QMP block-dirty-bitmap-add),
 * and qcow2 stores persistent ones in the image.
 *
 * Thread-safe: the bits and the node's list are under bs->dirty_lock.
 */
#ifndef SPINDLE_BLOCK_DIRTY_BITMAP_H
#define SPINDLE_BLOCK_DIRTY_BITMAP_H

#include "block/block.h"

struct hbitmap;

struct bdrv_dirty_bitmap {
    struct block_node *bs;
    char *name;                       /* NULL: anonymous (a job's) */
    struct hbitmap *bitmap;
    uint32_t granularity;             /* bytes per bit, a power of two */
    bool disabled;                    /* not recording writes */
    bool busy;                        /* a job or export uses it: users may not change it */
    bool persistent;                  /* stored in the image at close */
    bool inconsistent;                /* the image was not closed cleanly while in use */
    bool readonly;                    /* from a read-only image: may not change */
    struct bdrv_dirty_bitmap *successor;  /* records writes while a backup uses this one */
    struct list_node link;
};

/* granularity 0: the default for the node (64 KiB, or the cluster size). */
struct bdrv_dirty_bitmap *bdrv_create_dirty_bitmap(struct block_node *bs, uint32_t granularity,
                                                   const char *name, struct err *err);
void bdrv_release_dirty_bitmap(struct bdrv_dirty_bitmap *bm);
struct bdrv_dirty_bitmap *bdrv_find_dirty_bitmap(struct block_node *bs, const char *name);
/* Every bitmap of bs in creation order; fn returns non-zero to stop. */
int bdrv_dirty_bitmap_foreach(struct block_node *bs,
                              int (*fn)(struct bdrv_dirty_bitmap *bm, void *opaque),
                              void *opaque);
uint32_t bdrv_default_bitmap_granularity(struct block_node *bs);

void bdrv_set_dirty_bitmap(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t bytes);
void bdrv_reset_dirty_bitmap(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t bytes);
void bdrv_clear_dirty_bitmap(struct bdrv_dirty_bitmap *bm);
bool bdrv_dirty_bitmap_get(struct bdrv_dirty_bitmap *bm, int64_t offset);
uint64_t bdrv_get_dirty_count(struct bdrv_dirty_bitmap *bm);
int64_t bdrv_dirty_bitmap_next_dirty(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t end);
int64_t bdrv_dirty_bitmap_next_zero(struct bdrv_dirty_bitmap *bm, int64_t offset, int64_t end);
bool bdrv_dirty_bitmap_next_dirty_area(struct bdrv_dirty_bitmap *bm, int64_t offset,
                                       int64_t end, int64_t max_bytes, int64_t *area_start,
                                       int64_t *area_bytes);

void bdrv_enable_dirty_bitmap(struct bdrv_dirty_bitmap *bm);
void bdrv_disable_dirty_bitmap(struct bdrv_dirty_bitmap *bm);

/*
 * Check that a user may change bm (not busy, not read-only, not
 * inconsistent); err names it.
 */
int bdrv_dirty_bitmap_check_user(struct bdrv_dirty_bitmap *bm, struct err *err);

/* dest |= src (same granularity not required: src bits are widened). */
int bdrv_merge_dirty_bitmap(struct bdrv_dirty_bitmap *dest, struct bdrv_dirty_bitmap *src,
                            struct err *err);

/*
 * Successors, for incremental backup: while a backup copies what bm says
 * is dirty, new writes go to a successor.  On success the successor
 * replaces bm (abdicate); on failure it is merged back (reclaim).
 */
int bdrv_dirty_bitmap_create_successor(struct bdrv_dirty_bitmap *bm, struct err *err);
void bdrv_dirty_bitmap_abdicate(struct bdrv_dirty_bitmap *bm);
void bdrv_dirty_bitmap_reclaim(struct bdrv_dirty_bitmap *bm);

/* The raw bits, for persistence (see hbitmap's serialization). */
struct hbitmap *bdrv_dirty_bitmap_hbitmap(struct bdrv_dirty_bitmap *bm);

/* The "dirty-bitmaps" array of query-block for bs. */
json_t *bdrv_dirty_bitmaps_info(struct block_node *bs);

#endif
