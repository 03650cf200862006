/*
 * mirror: copy a node that is in use to a target node while the guest
 * keeps writing, until the two are in sync (READY); then, on
 * job-complete, switch every user of the source onto the target in one
 * drained step.  Cancelled after READY, the target stays behind as a
 * consistent copy of the moment of cancellation.
 *
 * A filter node (mirror_top) sits above the source for the job's life:
 * in background copy mode it only passes requests through (the source's
 * dirty bitmap records guest writes and the job copies them later); in
 * write-blocking mode guest writes also go to the target before they
 * complete.  A background mirror that does not converge (its dirty data
 * does not shrink over several passes) switches itself to write-blocking
 * and says so in query-jobs ("copy-mode").
 *
 * Active commit is a mirror from the active layer into its base, whose
 * completion drops the layers in between.
 */
#ifndef SPINDLE_BLOCKJOBS_MIRROR_H
#define SPINDLE_BLOCKJOBS_MIRROR_H

#include "blockjobs/block-job.h"

enum mirror_sync {
    MIRROR_SYNC_FULL,           /* everything the source reads */
    MIRROR_SYNC_TOP,            /* what the top layer allocates (the target shares the backing) */
    MIRROR_SYNC_NONE,           /* only what is written from now on */
};

enum mirror_copy_mode {
    MIRROR_COPY_BACKGROUND,
    MIRROR_COPY_WRITE_BLOCKING,
};

struct mirror_params {
    const char *job_id;             /* NULL: the device name */
    struct block_node *source;      /* the node the guest uses */
    struct block_node *target;      /* must be at least as large */
    enum mirror_sync sync;
    uint32_t granularity;           /* 0: 64 KiB (or the target's cluster size) */
    uint64_t buf_size;              /* 0: 16 MiB */
    int64_t speed;
    enum job_error_policy on_source_error, on_target_error;
    enum mirror_copy_mode copy_mode;
    bool target_is_zero;            /* skip zeroing what already reads as zeroes */
    bool auto_finalize, auto_dismiss;
    bool is_active_commit;          /* target is a backing node of source */
    const char *filter_node_name;   /* NULL: automatic */
};

int mirror_sync_parse(const char *s, enum mirror_sync *out);
int mirror_copy_mode_parse(const char *s, enum mirror_copy_mode *out);

/* Start a mirror job (running on return), or NULL with err. */
struct block_job *mirror_start(const struct mirror_params *p, struct err *err);

#endif
