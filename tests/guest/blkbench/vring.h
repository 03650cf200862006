/*
 * vring.h: split virtqueues (virtio 1.2, section 2.7), driver side, polled.
 *
 * Notification rules, since they decide how many VM exits a request costs:
 *  - driver -> device (kicks): after publishing a batch, the driver writes
 *    the notify register only if the device asked for it: with EVENT_IDX,
 *    when the new avail index passes the device's avail_event; without it,
 *    unless the device set VIRTQ_USED_F_NO_NOTIFY.  A device that polls the
 *    ring keeps asking for nothing, and gets no kicks at all.
 *  - device -> driver (interrupts): never wanted.  With EVENT_IDX the
 *    driver keeps used_event half the index space ahead of what it has
 *    consumed; without it, VIRTQ_AVAIL_F_NO_INTERRUPT stays set.
 */
#ifndef BLKBENCH_VRING_H
#define BLKBENCH_VRING_H

#include <stdint.h>

#define VRING_DESC_F_NEXT      1
#define VRING_DESC_F_WRITE     2
#define VRING_DESC_F_INDIRECT  4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];            /* then: uint16_t used_event */
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[];  /* then: uint16_t avail_event */
};

struct vring {
    uint16_t size;
    uint16_t mask;
    uint16_t index;             /* queue number, the value a kick writes */
    int event_idx;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uintptr_t notify;           /* this queue's notify address */
    uint16_t avail_idx;         /* next avail index (not yet published) */
    uint16_t published_idx;     /* avail->idx as last written */
    uint16_t last_used;         /* next used entry to consume */
    uint64_t kicks;             /* notify writes, for the results */
};

/* Allocate the three parts (zeroed, page-aligned) for size entries. */
int vring_alloc(struct vring *vr, uint16_t size, int event_idx);

/* Queue a descriptor chain head; invisible to the device until vring_publish. */
static inline void vring_push(struct vring *vr, uint16_t head)
{
    vr->avail->ring[vr->avail_idx & vr->mask] = head;
    vr->avail_idx++;
}

/* Make pushed heads visible and kick if the device wants to know. */
void vring_publish(struct vring *vr);

/* Next used element, or 0 when there is none. */
int vring_pop_used(struct vring *vr, uint32_t *id, uint32_t *len);

/* After a batch of pops: keep the device from wanting to interrupt. */
void vring_quiet(struct vring *vr);

#endif
