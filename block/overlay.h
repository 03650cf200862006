/*
 * Live snapshots: put a new overlay image on top of a node while the
 * guest runs (QMP blockdev-snapshot and blockdev-snapshot-sync).  The
 * overlay's backing becomes the node, and every user of the node (a
 * device, a job, a node above) uses the overlay instead, in one drained
 * step; from then on writes land in the overlay.
 */
#ifndef SPINDLE_BLOCK_OVERLAY_H
#define SPINDLE_BLOCK_OVERLAY_H

#include "block/block.h"

/* overlay: an open node with no backing yet.  Main thread. */
int bnode_append_overlay(struct block_node *top, struct block_node *overlay, struct err *err);

/*
 * Create snapshot_file (format, default qcow2) backed by top's image,
 * unless existing (then it must already be such an image), open it as
 * node_name (NULL: automatic) and append it over top.  Returns the new
 * node with one reference for the caller (the monitor keeps it, as it
 * keeps nodes from blockdev-add), or NULL with err.
 */
struct block_node *bnode_snapshot_sync(struct block_node *top, const char *snapshot_file,
                                       const char *format, const char *node_name,
                                       bool existing, struct err *err);

#endif
