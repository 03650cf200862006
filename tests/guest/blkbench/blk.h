/*
 * blk.h: virtio-blk devices (virtio 1.2, section 5.2) over virtio-pci.
 *
 * A request occupies one "slot" of its queue.  A slot owns a fixed set of
 * descriptors (header, data segments, status) or, with indirect
 * descriptors, one ring descriptor and its own indirect table, so there is
 * no free-descriptor list: the slot number is the request tag, and the used
 * ring's id maps straight back to it.
 */
#ifndef BLKBENCH_BLK_H
#define BLKBENCH_BLK_H

#include <stdint.h>
#include "virtio.h"
#include "vring.h"

#define VBLK_MAX_DEVICES   8
#define VBLK_MAX_QUEUES    16
#define VBLK_MAX_SEGS      64
#define VBLK_QUEUE_SIZE    1024     /* upper bound; the device may offer less */

#define VIRTIO_BLK_T_IN    0
#define VIRTIO_BLK_T_OUT   1
#define VIRTIO_BLK_T_FLUSH 4

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9
#define VIRTIO_BLK_F_MQ       12

struct vblk_slot {
    struct {
        uint32_t type;
        uint32_t ioprio;
        uint64_t sector;
    } hdr;                      /* device reads */
    uint8_t status;             /* device writes */
};

struct vblk;

struct vblk_queue {
    struct vring vr;
    struct vblk *dev;
    struct vblk_slot *slots;    /* vr.size of them */
    struct vring_desc *itables; /* with indirect: per_slot entries per slot */
    uint16_t nslots;            /* usable after vblk_queue_reserve */
    uint16_t per_slot;          /* descriptors per request */
    int indirect;
};

struct vblk {
    struct virtio_pci vp;
    int index;
    uint64_t capacity;          /* bytes */
    uint32_t blk_size;
    uint32_t seg_bytes;         /* largest data descriptor (size_max) */
    uint32_t seg_max;           /* most data descriptors per request */
    uint16_t nqueues;
    int read_only;
    int broken;                 /* the device did something impossible */
    struct vblk_queue q[VBLK_MAX_QUEUES];
};

extern struct vblk vblk_devices[VBLK_MAX_DEVICES];
extern int vblk_count;

/* Find and initialise every virtio-blk function on bus 0. */
void vblk_probe_all(void);

/*
 * Lay out q's slots for requests of up to max_len bytes, depth at a time.
 * Allocates indirect tables from the bottom arena (released with the job).
 * 0, or -1 after printing why.  The queue must be idle.
 */
int vblk_queue_reserve(struct vblk_queue *q, uint32_t max_len, unsigned depth);

/* Queue a request in a free slot; visible to the device after vblk_kick. */
void vblk_submit(struct vblk_queue *q, unsigned slot, uint32_t type,
                 uint64_t offset, void *buf, uint32_t len);

static inline void vblk_kick(struct vblk_queue *q)
{
    vring_publish(&q->vr);
}

typedef void vblk_done_fn(void *ctx, unsigned slot, uint8_t status);

/* Hand every completed request to done; returns how many. */
unsigned vblk_poll(struct vblk_queue *q, vblk_done_fn *done, void *ctx);

#endif
