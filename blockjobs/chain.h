/*
 * stream: pull the data of a backing chain up into the node above it, so
 * the chain below (down to base) is no longer needed; then bs's backing
 * becomes base (or nothing) and its image header says so.
 *
 * commit (intermediate): push the data of the layers from top down to base
 * into base; then the node above top takes base as its backing.  (Active
 * commit, when top is the active layer, is a mirror: see mirror.h.)
 */
#ifndef SPINDLE_BLOCKJOBS_CHAIN_H
#define SPINDLE_BLOCKJOBS_CHAIN_H

#include "blockjobs/block-job.h"

struct stream_params {
    const char *job_id;
    struct block_node *bs;            /* the layer that receives the data */
    struct block_node *base;          /* NULL: stream everything */
    const char *backing_file;         /* written into bs's header; NULL: base's filename */
    int64_t speed;
    enum job_error_policy on_error;
    bool auto_finalize, auto_dismiss;
};

struct block_job *stream_start(const struct stream_params *p, struct err *err);

struct commit_params {
    const char *job_id;
    struct block_node *top;           /* not the active layer */
    struct block_node *base;          /* below top in its backing chain */
    const char *backing_file;         /* written into the overlay of top; NULL: base's name */
    int64_t speed;
    enum job_error_policy on_error;
    bool auto_finalize, auto_dismiss;
};

struct block_job *commit_start(const struct commit_params *p, struct err *err);

/* The node whose backing child is bs (the layer above it), or NULL. */
struct block_node *bnode_find_overlay(struct block_node *bs);

/*
 * Make bs's backing base (NULL: none) in the graph and in its image header
 * (backing_file; NULL: base's filename).  Main thread, outside coroutines.
 */
int bnode_change_backing(struct block_node *bs, struct block_node *base, const char *backing_file,
                         struct err *err);

/*
 * Write backing_file and backing_fmt ("" for none) into bs's image header
 * only: the graph keeps its backing child (qemu-img rebase -u, which need
 * not open the new backing file).  -ENOTSUP for a format without backing
 * files, even to write "" (qemu's bdrv_change_backing_file).  Main thread,
 * outside coroutines.
 */
int bnode_write_backing_header(struct block_node *bs, const char *backing_file,
                               const char *backing_fmt, struct err *err);

#endif
