/*
 * Pieces of the request path that other parts of block/ (and format
 * drivers that serialise their own requests, like copy-on-read) use.
 */
#ifndef SPINDLE_BLOCK_IO_INTERNAL_H
#define SPINDLE_BLOCK_IO_INTERNAL_H

#include "block/block.h"

struct tracked_req {
    struct block_node *bs;
    int64_t offset, bytes;
    int64_t overlap_offset, overlap_bytes;   /* the range conflicts are checked on */
    bool serialising;
    bool is_write;
    struct co_queue waiters;                 /* requests waiting for this one */
    struct tracked_req *waiting_for;
    struct list_node link;
};

void bnode_inc_in_flight(struct block_node *bs);
void bnode_dec_in_flight(struct block_node *bs);

void tracked_mark_serialising(struct tracked_req *req, uint64_t align);
void coroutine_fn tracked_wait_serialising(struct tracked_req *req);

/* An aligned read straight to the driver (no tracking): for read-modify-write. */
int coroutine_fn bnode_aligned_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                      struct qiov *qiov, size_t qiov_offset, int flags);

/* Dirty bitmaps (dirty-bitmap.c): mark a written range, follow a resize. */
void bnode_dirty_set(struct block_node *bs, int64_t offset, int64_t bytes);
void bnode_dirty_truncate(struct block_node *bs, int64_t size);

#endif
