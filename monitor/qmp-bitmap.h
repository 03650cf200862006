/*
 * Dirty bitmaps over QMP: block-dirty-bitmap-add, -remove, -clear,
 * -enable, -disable, -merge (QEMU's names, arguments and sentences).
 *
 * "persistent": true is passed on to the bitmap (the format stores it in
 * the image when the node closes), for nodes whose format can store
 * bitmaps (qcow2); elsewhere it is refused as QEMU refuses it.
 */
#ifndef SPINDLE_MONITOR_QMP_BITMAP_H
#define SPINDLE_MONITOR_QMP_BITMAP_H

void qmp_bitmap_register(void);

#endif
