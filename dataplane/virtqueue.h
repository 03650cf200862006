/*
 * The device side of a virtio split ring (virtio 1.2, 2.7), over guest
 * memory, for whatever transport set it up.
 *
 * Everything the driver wrote is untrusted: every descriptor is checked
 * against the ring size and guest memory, chains are bounded and loops
 * caught, indirect tables are checked like rings, and an avail index that
 * runs ahead of the ring breaks the queue.  A broken queue serves nothing
 * more; the caller marks the device DEVICE_NEEDS_RESET.
 *
 * A vq is used by one thread at a time (the iothread serving it), except
 * vq_push/vq_notify, which take vq->lock, so request coroutines on that
 * thread and completions may interleave freely.
 */
#ifndef SPINDLE_DATAPLANE_VIRTQUEUE_H
#define SPINDLE_DATAPLANE_VIRTQUEUE_H

#include <pthread.h>
#include <sys/uio.h>

#include "dataplane/virtio.h"
#include "util/error.h"

#define VRING_DESC_F_NEXT          1
#define VRING_DESC_F_WRITE         2
#define VRING_DESC_F_INDIRECT      4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];          /* then used_event */
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[];  /* then avail_event */
};

/*
 * One popped request: the chain's buffers as host iovecs, the
 * device-readable ones (out) first, then the device-writable ones (in).
 */
struct vq_elem {
    uint16_t head;
    unsigned out_num, in_num;
    size_t out_len, in_len;
    unsigned max;             /* room in iov */
    struct iovec *iov;
};

struct vq {
    const struct guest_mem *mem;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t size;
    uint16_t last_avail;      /* next avail entry to pop */
    uint16_t used_idx;        /* our copy of used->idx */
    uint16_t signalled_used;  /* used->idx when we last interrupted */
    bool signalled_valid;
    bool event_idx;
    bool indirect;
    bool broken;
    int call_fd;
    pthread_mutex_t lock;     /* vq_push, vq_notify */
    char what[48];            /* "virtio-blk0 queue 1", for messages */
};

/*
 * Map the rings of setup into guest memory and start at setup->avail_base.
 * Fails (with a sentence) when a ring part lies outside guest memory.
 */
int vq_init(struct vq *vq, const struct guest_mem *mem, const struct virtio_queue_setup *setup,
            uint64_t features, const char *what, struct err *err);
void vq_destroy(struct vq *vq);

/* Whether the driver made entries available that we have not popped. */
bool vq_has_work(struct vq *vq);

/*
 * Pop the next chain into elem (whose iov array has room for elem->max
 * buffers).  1: popped; 0: nothing available; -EINVAL: the chain broke the
 * rules (the queue is now broken, vq->broken says so, and a message was
 * logged naming what was wrong).
 */
int vq_pop(struct vq *vq, struct vq_elem *elem);

/* Give back a popped chain having written len bytes into it; published at once. */
void vq_push(struct vq *vq, const struct vq_elem *elem, uint32_t len);

/* Interrupt the driver if it wants one for what was pushed since the last time. */
void vq_notify(struct vq *vq);

/*
 * Ask for (true) or stop asking for (false) the driver's kicks.  After
 * enabling, call vq_has_work() again: an entry may have come in between.
 */
void vq_set_notification(struct vq *vq, bool enable);

#endif
