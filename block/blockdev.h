/*
 * Nodes that the user adds by name: --blockdev (spindle-sd), -blockdev
 * (spindle-vm) and QMP blockdev-add all come here, with the same options
 * object (util/opts' one form), and the user removes them again with
 * blockdev-del.  This module holds the user's reference to each of them
 * ("owned by the monitor" in QEMU's words), and closes them all, flushed,
 * when the program ends.
 *
 * blockdev-create's work is here too: make the image that QMP's
 * BlockdevCreateOptions describe.
 *
 * Main thread.
 */
#ifndef SPINDLE_BLOCK_BLOCKDEV_H
#define SPINDLE_BLOCK_BLOCKDEV_H

#include "block/block.h"

/*
 * Open a node graph from options (borrowed): "driver" and "node-name" are
 * required at the top ("'node-name' must be specified for the root node"),
 * the rest is what bnode_open takes.  Opened read-write unless "read-only"
 * says otherwise.  The user's reference is held here; the node is returned
 * borrowed, or NULL with err set.
 */
struct block_node *blockdev_add(json_t *options, struct err *err);

/*
 * Close a node blockdev_add opened.  Refused, with QEMU's sentences, when
 * no node has that name, when it was not added by the user, when a device
 * or export uses it, or when other nodes still hold it (it has parents).
 * The node is flushed first.
 */
int blockdev_del(const char *node_name, struct err *err);

/*
 * Take over the caller's reference to a node the user did not add by
 * blockdev_add but must be able to blockdev-del (a snapshot overlay that
 * nothing else holds).
 */
void blockdev_adopt(struct block_node *bs);

/* Whether bs was added by blockdev_add and not deleted since. */
bool blockdev_is_user_node(const struct block_node *bs);

/* Flush and drop every node blockdev_add holds, newest first (program exit). */
void blockdev_close_all(void);

/*
 * The node a QMP command names by device (a backend's name) or node-name,
 * QEMU's lookup: a backend by device first, then a node by node_name
 * (either may be NULL).  NULL with "Cannot find device='...' nor
 * node-name='...'" or "Device '...' has no medium".
 */
struct block_node *blockdev_lookup(const char *device, const char *node_name, struct err *err);

/*
 * blockdev-create: create the image options describes (QMP's
 * BlockdevCreateOptions: "driver" and that driver's members).
 *   file:    filename, size, [preallocation]: the file itself.
 *   raw:     file (a node name or a node's options), size: the file node
 *            is resized to size (raw has no metadata; QEMU has no raw
 *            variant, spindle takes one).
 *   formats: the driver's co_create gets QMP's members under its own
 *            (qemu-img -o) names ("cluster-size" is cluster_size, "version"
 *            compat), "file" as the name of the protocol node to format
 *            (inline options are opened for the time of the call), and
 *            "data-file" as a file name.  qcow2 formats that node in place.
 *   others:  the driver's co_create gets the members but "driver".
 * Drivers without co_create: "Driver does not support blockdev-create".
 *
 * blockdev_co_create is the work itself (coroutine_fn): the job that
 * blockdev-create becomes later runs it from its coroutine.  Today the
 * command runs blockdev_create, which runs it to completion synchronously.
 */
int coroutine_fn blockdev_co_create(json_t *options, struct err *err);
int blockdev_create(json_t *options, struct err *err);

#endif
