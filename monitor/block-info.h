/*
 * What QMP reports about nodes and backends, in QEMU's shapes:
 * BlockDeviceInfo (query-named-block-nodes, and query-block's "inserted"),
 * ImageInfo (its "image", with "backing-image" down the chain unless
 * flat), BlockInfo (one entry of query-block), BlockStats (query-blockstats).
 */
#ifndef SPINDLE_MONITOR_BLOCK_INFO_H
#define SPINDLE_MONITOR_BLOCK_INFO_H

#include <jansson.h>

#include "block/backend.h"

/* ImageInfo of bs: virtual-size, filename, format, actual-size, ... */
json_t *mon_image_info(struct block_node *bs, bool flat, struct err *err);

/*
 * BlockDeviceInfo of bs; blk (may be NULL) is the backend it is seen
 * through, which decides cache.writeback.
 */
json_t *mon_block_device_info(struct block_backend *blk, struct block_node *bs, bool flat,
                              struct err *err);

/* BlockInfo of a backend: device, qdev, type, removable, locked, inserted, io-status. */
json_t *mon_block_info(struct block_backend *blk, struct err *err);

/*
 * BlockStats: of a backend (blk set: its accounting, "device", "qdev") or
 * of a node alone (blk NULL: a node keeps no accounting but its highest
 * written offset), with "parent" (the node's file child) and "backing".
 */
json_t *mon_block_stats(struct block_backend *blk, struct block_node *bs);

/* Whether query-block and query-blockstats list blk: named, or used by a device. */
bool mon_backend_is_listed(struct block_backend *blk);

void qmp_block_info_register(void);

#endif
