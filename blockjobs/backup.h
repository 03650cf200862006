/*
 * backup: copy a node as it was when the job started to a target node,
 * while the guest keeps writing.  Before a guest write reaches a cluster
 * the job has not copied yet, the old data is copied first
 * (copy-before-write, a before-write notifier on the source); the rest is
 * copied in the background.
 *
 * sync full copies everything, top only what the top layer allocates,
 * incremental (or bitmap) what a dirty bitmap marks; with incremental the
 * bitmap then records only the writes made since the job started (on
 * failure it keeps everything, as QEMU's bitmap-mode on-success).
 */
#ifndef SPINDLE_BLOCKJOBS_BACKUP_H
#define SPINDLE_BLOCKJOBS_BACKUP_H

#include "blockjobs/block-job.h"

struct bdrv_dirty_bitmap;

enum backup_sync {
    BACKUP_SYNC_FULL,
    BACKUP_SYNC_TOP,
    BACKUP_SYNC_INCREMENTAL,
    BACKUP_SYNC_NONE,
};

struct backup_params {
    const char *job_id;
    struct block_node *source;
    struct block_node *target;
    enum backup_sync sync;
    struct bdrv_dirty_bitmap *bitmap;    /* incremental: what to copy */
    int64_t speed;
    enum job_error_policy on_source_error, on_target_error;
    bool auto_finalize, auto_dismiss;
};

int backup_sync_parse(const char *s, enum backup_sync *out);
struct block_job *backup_start(const struct backup_params *p, struct err *err);

#endif
