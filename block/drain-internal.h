/* Between node.c (the edges) and drain.c: a parent edge enters or leaves a drain. */
#ifndef SPINDLE_BLOCK_DRAIN_INTERNAL_H
#define SPINDLE_BLOCK_DRAIN_INTERNAL_H

#include "block/block.h"

/* The parent behind edge c (a node, or a backend or job through its class) is drained once more. */
void bnode_parent_drained_begin(struct bdrv_child *c);
void bnode_parent_drained_end(struct bdrv_child *c);

#endif
