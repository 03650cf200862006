/* The device side of a virtio split ring; see virtqueue.h. */
#include "dataplane/virtqueue.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "util/log.h"

/* Driver-written fields are read once each, through these. */
static inline uint16_t read16(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint16_t read16_acquire(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static uint16_t *used_event(struct vq *vq)
{
    return &vq->avail->ring[vq->size];
}

static uint16_t *avail_event(struct vq *vq)
{
    return (uint16_t *)&vq->used->ring[vq->size];
}

int vq_init(struct vq *vq, const struct guest_mem *mem, const struct virtio_queue_setup *setup,
            uint64_t features, const char *what, struct err *err)
{
    memset(vq, 0, sizeof(*vq));
    pstrcpy(vq->what, sizeof(vq->what), what);
    uint64_t n = setup->size;
    if (n == 0 || n > VIRTIO_QUEUE_SIZE_MAX) {
        err_set(err, "%s: queue size %" PRIu64 " is out of range", what, n);
        return -EINVAL;
    }
    /* Each part with its trailing event field, whether or not EVENT_IDX is on. */
    vq->desc = guest_mem_map(mem, setup->desc, n * sizeof(struct vring_desc));
    vq->avail = guest_mem_map(mem, setup->avail, 6 + 2 * n);
    vq->used = guest_mem_map(mem, setup->used, 6 + 8 * n);
    if (!vq->desc || !vq->avail || !vq->used) {
        err_set(err, "%s: the %s ring at 0x%" PRIx64 " is outside guest memory", what,
                !vq->desc ? "descriptor" : !vq->avail ? "available" : "used",
                !vq->desc ? setup->desc : !vq->avail ? setup->avail : setup->used);
        return -EFAULT;
    }
    if ((setup->desc & 15) || (setup->avail & 1) || (setup->used & 3)) {
        err_set(err, "%s: the rings are not aligned as the virtio spec requires", what);
        return -EINVAL;
    }
    vq->mem = mem;
    vq->size = (uint16_t)n;
    vq->last_avail = setup->avail_base;
    vq->used_idx = read16(&vq->used->idx);
    vq->event_idx = features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
    vq->indirect = features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
    vq->call_fd = setup->call_fd;
    pthread_mutex_init(&vq->lock, NULL);
    return 0;
}

void vq_destroy(struct vq *vq)
{
    if (vq->size) {
        pthread_mutex_destroy(&vq->lock);
        vq->size = 0;
    }
}

static int vq_break(struct vq *vq, const char *fmt, ...) PRINTF_FMT(2, 3);

static int vq_break(struct vq *vq, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!vq->broken) {
        /* One line per queue: a hostile guest must not be able to flood the log. */
        log_warn("%s: %s; the device needs a reset", vq->what, why);
        vq->broken = true;
    }
    return -EINVAL;
}

/* Check the avail index and return how many entries are waiting. */
static int avail_count(struct vq *vq)
{
    uint16_t idx = read16_acquire(&vq->avail->idx);
    uint16_t n = (uint16_t)(idx - vq->last_avail);
    if (n > vq->size) {
        return vq_break(vq, "the available index moved from %u to %u, more than the %u "
                        "entries of the ring", vq->last_avail, idx, vq->size);
    }
    return n;
}

bool vq_has_work(struct vq *vq)
{
    return !vq->broken && read16(&vq->avail->idx) != vq->last_avail;
}

/*
 * Append the guest buffer [addr, addr+len) to elem, as one iovec per guest
 * memory region it touches.
 */
static int add_buffer(struct vq *vq, struct vq_elem *elem, uint64_t addr, uint32_t len,
                      bool writable)
{
    if (writable ? elem->in_len + len < elem->in_len : elem->out_len + len < elem->out_len) {
        return vq_break(vq, "a chain is longer than 4 GiB");
    }
    while (len) {
        const struct guest_mem_region *r = guest_mem_find(vq->mem, addr);
        if (!r) {
            return vq_break(vq, "a buffer at 0x%" PRIx64 " is outside guest memory", addr);
        }
        uint64_t in_region = r->gpa + r->size - addr;
        uint32_t n = (uint32_t)MIN((uint64_t)len, in_region);
        if (elem->out_num + elem->in_num == elem->max) {
            return vq_break(vq, "a chain has more than %u buffers", elem->max);
        }
        struct iovec *iov = &elem->iov[elem->out_num + elem->in_num];
        iov->iov_base = guest_mem_map(vq->mem, addr, n);
        iov->iov_len = n;
        if (writable) {
            elem->in_num++;
            elem->in_len += n;
        } else {
            elem->out_num++;
            elem->out_len += n;
        }
        addr += n;
        len -= n;
    }
    return 0;
}

/* Walk the chain starting at desc[i] of a table of n descriptors. */
static int walk_table(struct vq *vq, struct vring_desc *table, unsigned n, uint16_t i,
                      bool nested, struct vq_elem *elem)
{
    for (unsigned steps = 0;; steps++) {
        if (i >= n) {
            return vq_break(vq, "descriptor index %u is past the table of %u", i, n);
        }
        if (steps >= n) {
            return vq_break(vq, "a descriptor chain loops");
        }
        struct vring_desc d;
        memcpy(&d, &table[i], sizeof(d));     /* one read: the guest may change it */
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (nested || !vq->indirect) {
                return vq_break(vq, nested ? "an indirect table points to another one"
                                           : "an indirect descriptor was not negotiated");
            }
            if ((d.flags & VRING_DESC_F_NEXT) || d.len == 0 ||
                d.len % sizeof(struct vring_desc) ||
                d.len / sizeof(struct vring_desc) > VIRTIO_QUEUE_SIZE_MAX) {
                return vq_break(vq, "an indirect descriptor has a bad length %u or flags", d.len);
            }
            struct vring_desc *sub = guest_mem_map(vq->mem, d.addr, d.len);
            if (!sub) {
                return vq_break(vq, "an indirect table at 0x%" PRIx64 " is outside guest memory",
                                d.addr);
            }
            return walk_table(vq, sub, d.len / sizeof(struct vring_desc), 0, true, elem);
        }
        bool writable = d.flags & VRING_DESC_F_WRITE;
        if (!writable && elem->in_num) {
            return vq_break(vq, "a device-readable buffer follows a device-writable one");
        }
        if (d.len && add_buffer(vq, elem, d.addr, d.len, writable) < 0) {
            return -EINVAL;
        }
        if (!(d.flags & VRING_DESC_F_NEXT)) {
            return 0;
        }
        i = d.next;
    }
}

int vq_pop(struct vq *vq, struct vq_elem *elem)
{
    if (vq->broken) {
        return -EINVAL;
    }
    int n = avail_count(vq);
    if (n <= 0) {
        return n;
    }
    uint16_t head = read16(&vq->avail->ring[vq->last_avail % vq->size]);
    if (head >= vq->size) {
        return vq_break(vq, "the available ring names descriptor %u of %u", head, vq->size);
    }
    elem->head = head;
    elem->out_num = elem->in_num = 0;
    elem->out_len = elem->in_len = 0;
    if (walk_table(vq, vq->desc, vq->size, head, false, elem) < 0) {
        return -EINVAL;
    }
    vq->last_avail++;
    return 1;
}

void vq_push(struct vq *vq, const struct vq_elem *elem, uint32_t len)
{
    pthread_mutex_lock(&vq->lock);
    struct vring_used_elem *u = &vq->used->ring[vq->used_idx % vq->size];
    u->id = elem->head;
    u->len = len;
    vq->used_idx++;
    /* The entry before the index: a polling driver may look right away. */
    __atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vq->lock);
}

/* The virtio event-index rule: did we pass the index the driver named? */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

void vq_notify(struct vq *vq)
{
    bool notify;

    pthread_mutex_lock(&vq->lock);
    /* Our used index must be visible before we read the driver's wishes. */
    smp_mb();
    if (vq->event_idx) {
        uint16_t old = vq->signalled_used;
        bool valid = vq->signalled_valid;
        vq->signalled_used = vq->used_idx;
        vq->signalled_valid = true;
        notify = !valid || need_event(read16(used_event(vq)), vq->used_idx, old);
        if (valid && old == vq->used_idx) {
            notify = false;
        }
    } else {
        notify = !(read16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    }
    pthread_mutex_unlock(&vq->lock);
    if (notify && vq->call_fd >= 0) {
        uint64_t one = 1;
        if (write(vq->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            log_warn("%s: cannot signal the driver: %s", vq->what, strerror(errno));
        }
    }
}

void vq_set_notification(struct vq *vq, bool enable)
{
    if (vq->broken) {
        return;
    }
    if (vq->event_idx) {
        /*
         * The driver kicks when its new entries cover avail_event: enabled,
         * that is the next entry we will pop; disabled, one we already
         * popped, which no new batch can cover.
         */
        uint16_t event = enable ? vq->last_avail : (uint16_t)(vq->last_avail - 1);
        __atomic_store_n(avail_event(vq), event, __ATOMIC_RELAXED);
    } else {
        uint16_t flags = read16(&vq->used->flags);
        flags = enable ? flags & ~VRING_USED_F_NO_NOTIFY : flags | VRING_USED_F_NO_NOTIFY;
        __atomic_store_n(&vq->used->flags, flags, __ATOMIC_RELAXED);
    }
    if (enable) {
        /* Publish before the caller looks at the avail index again. */
        smp_mb();
    }
}
