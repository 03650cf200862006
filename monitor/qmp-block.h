/*
 * Nodes over QMP: blockdev-add, blockdev-del, blockdev-create and
 * block_resize.  The work is the block layer's (block/blockdev.h, the same
 * path --blockdev and -blockdev take); this module holds the QMP schemas:
 * the members every node has, those of the drivers spindle has (file, raw,
 * null-co), and those of blockdev-create per driver (file, raw, qcow2).
 * Drivers without a schema here are checked by the block layer alone.
 */
#ifndef SPINDLE_MONITOR_QMP_BLOCK_H
#define SPINDLE_MONITOR_QMP_BLOCK_H

void qmp_block_register(void);

#endif
