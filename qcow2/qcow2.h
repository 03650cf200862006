/*
 * What the qcow2 driver offers beyond struct block_driver: internal
 * snapshots, persistent dirty bitmaps, amend and measure.  spindle-img's
 * snapshot, bitmap, amend and measure subcommands (and the monitor) call
 * these through qcow2_get_ops().
 *
 * Every hook runs on the main thread, outside coroutine context (it runs
 * its own), with the node drained by the caller where it says so; returns
 * 0 or a negative errno with err set to one sentence naming the image.
 */
#ifndef SPINDLE_QCOW2_QCOW2_H
#define SPINDLE_QCOW2_QCOW2_H

#include "block/block.h"

/* One internal snapshot, as `qemu-img snapshot -l` and `info` show it. */
struct qcow2_snapshot_info {
    char *id;                 /* "1", "2", ... */
    char *name;               /* the tag */
    uint64_t vm_state_size;   /* bytes of VM state saved with it (0: none) */
    uint32_t date_sec;        /* when it was taken */
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;   /* guest run time at that point */
    uint64_t icount;          /* UINT64_MAX: not recorded */
    uint64_t disk_size;       /* virtual size when it was taken */
};

void qcow2_snapshot_info_free(struct qcow2_snapshot_info *list, int n);

/* What `qemu-img measure` prints: bytes. */
struct qcow2_measure {
    uint64_t required;        /* for the allocated data of the source (or size) */
    uint64_t fully_allocated; /* with every cluster allocated */
    uint64_t bitmaps;         /* for the source's persistent bitmaps */
    bool has_bitmaps;
};

struct qcow2_format_ops {
    /* ---- Snapshots ---- */

    /* The snapshot table, in order; *list is freed with qcow2_snapshot_info_free. */
    int (*snapshot_list)(struct block_node *bs, struct qcow2_snapshot_info **list, int *n,
                         struct err *err);
    /*
     * Take a snapshot of the current disk state.  sn->name is required;
     * sn->id may be NULL (the next free number is used); dates and clocks
     * are stored as given.  Node writable and drained.
     */
    int (*snapshot_create)(struct block_node *bs, const struct qcow2_snapshot_info *sn,
                           struct err *err);
    /*
     * Make the snapshot whose id or name is id_or_name (ids tried first)
     * the current disk state.  Node writable and drained.
     */
    int (*snapshot_apply)(struct block_node *bs, const char *id_or_name, struct err *err);
    /* Delete the snapshot matching id and/or name (one may be NULL).  Drained. */
    int (*snapshot_delete)(struct block_node *bs, const char *id, const char *name,
                           struct err *err);

    /* ---- Persistent dirty bitmaps ---- */

    /*
     * Whether a persistent bitmap of this name and granularity can be added
     * (a bdrv_dirty_bitmap made persistent is then written at close and
     * flush).  Checks the version, the count, the name and the granularity.
     */
    int (*bitmap_can_store)(struct block_node *bs, const char *name, uint32_t granularity,
                            struct err *err);
    /* Remove a persistent bitmap from the image and release it.  Writable. */
    int (*bitmap_remove)(struct block_node *bs, const char *name, struct err *err);
    /* Write every persistent bitmap to the image now.  Writable, drained. */
    int (*bitmaps_store)(struct block_node *bs, struct err *err);

    /* ---- Commit ---- */

    /*
     * Empty the image: every cluster unallocated again, so it reads what its
     * backing file reads (qemu-img commit does this to the top image).
     * Snapshots keep their clusters.  Writable, drained.
     */
    int (*make_empty)(struct block_node *bs, struct err *err);

    /* ---- Amend and measure ---- */

    /*
     * Change creation options of an open image: compat (0.10|1.1|v2|v3),
     * refcount_bits, lazy_refcounts, backing_file, backing_fmt, data_file,
     * data_file_raw, size.  Others are refused by name.  force allows
     * dropping persistent bitmaps when downgrading.  Writable, drained.
     */
    int (*amend)(struct block_node *bs, json_t *options, bool force, struct err *err);
    /*
     * Space a new qcow2 image with creation options opts ("size", ...) needs
     * to hold in_bs's data (in_bs NULL: an empty image of opts' size).
     */
    int (*measure)(json_t *opts, struct block_node *in_bs, struct qcow2_measure *out,
                   struct err *err);
};

/*
 * The measure hook, which needs no qcow2 node (--size N): opts are
 * creation options ("size", "cluster_size", "compat", "refcount_bits",
 * "extended_l2", "preallocation", "backing_file"); in_bs any node or NULL.
 */
int qcow2_measure(json_t *opts, struct block_node *in_bs, struct qcow2_measure *out,
                  struct err *err);

/* The options the amend hook takes, sorted by name ("-o help"). */
const struct bdrv_create_opt *qcow2_amend_options(void);

/* The hooks when bs is a qcow2 node (filters above it skipped), else NULL. */
const struct qcow2_format_ops *qcow2_get_ops(struct block_node *bs);

#endif
