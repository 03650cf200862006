/*
 * Block jobs: jobs that move data between nodes (mirror, stream, commit,
 * backup).  What they share: the node they are named after (QEMU's
 * "device"), backends for their own I/O that keep working inside the
 * drained sections the job itself opens, the byte length of the work, and
 * their entry in query-block-jobs.
 */
#ifndef SPINDLE_BLOCKJOBS_BLOCK_JOB_H
#define SPINDLE_BLOCKJOBS_BLOCK_JOB_H

#include "blockjobs/job.h"

struct block_job {
    struct job job;
    struct block_node *bs;            /* the node the job is about (a reference) */
    char *device;                     /* "device" in events: the backend or node name */
    int64_t len;                      /* for events: the work in bytes */
};

/*
 * A block job on bs.  id NULL: the device (backend) name or node name, as
 * QEMU does.  Returns NULL with err.
 */
struct block_job *block_job_create(const struct job_driver *driver, const char *id,
                                   struct block_node *bs, int64_t speed, bool auto_finalize,
                                   bool auto_dismiss, struct err *err);

/*
 * A backend on bs for the job's own I/O: not held back by drained
 * sections (the job drains nodes itself when it changes the graph).
 */
struct block_backend *block_job_backend(struct block_job *bj, struct block_node *bs,
                                        bool writable, struct err *err);

/* The name of a node for messages and "device": its backend's, else its own. */
const char *block_job_device_name(struct block_node *bs);

/* Drop what block_job_create took; a driver's free() calls it last. */
void block_job_release(struct block_job *bj);

/* The query-block-jobs entry. */
json_t *block_job_query(struct block_job *bj);

/* A node a running block job is using (so commands refuse to touch it), or NULL. */
struct block_job *block_job_using(struct block_node *bs);

#endif
