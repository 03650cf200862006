/*
 * A test double: a virtio-blk device over a buffer in memory, behind the
 * transport-free interface of dataplane/virtio.h, so the virtio-pci
 * transport can be exercised end to end (blkbench enumerates it,
 * negotiates, sets up queues, kicks through ioeventfds and reads back what
 * it wrote) before the real dataplane/virtio-blk and the block layer exist.
 *
 *   -device x-test-blk-pci[,size=64M][,num-queues=N][,queue-size=N]
 *           [,iothread=ID][,ioeventfd=on|off][,id=ID]
 *
 * Each queue is served on an iothread (the named one, or one of its own),
 * woken by the queue's kick eventfd.  It implements just enough of the
 * split ring and of virtio-blk (IN, OUT, FLUSH, GET_ID; INDIRECT_DESC,
 * EVENT_IDX, MQ, FLUSH, BLK_SIZE) for blkbench; bad descriptors mark the
 * device NEEDS_RESET.  Not for production: that is dataplane/virtio-blk.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dataplane/virtio.h"
#include "kvmcore/config.h"
#include "kvmcore/machine.h"
#include "kvmcore/virtio-pci.h"
#include "tests/vmm/vmm.h"
#include "util/iothread.h"
#include "util/log.h"

#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9
#define VIRTIO_BLK_F_MQ       12

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1

#define MAX_SEGS 256

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct testblk_cfg {
    uint64_t size;
    unsigned num_queues, queue_size;
    char *iothread;
    bool ioeventfd;
};

struct testblk;

struct tq {
    struct testblk *t;
    unsigned index;
    struct aio_context *ctx;
    struct aio_fd_handler *h;
    struct vring_desc *desc;
    uint16_t *avail;             /* flags, idx, ring[size], used_event */
    uint16_t *used;              /* flags, idx, {u32 id, u32 len}[size], avail_event */
    uint16_t size;
    uint16_t last_avail;
    bool broken;
    uint64_t requests;
};

struct testblk {
    struct virtio_dev vdev;
    struct virtio_dev_ops ops;
    struct kvm_machine_dev mdev;
    struct vpci *pci;
    struct testblk_cfg cfg;
    uint8_t *data;
    struct iothread *own_iothread;
    struct aio_context *ctx;
    struct tq *q;
};

/* ---- Run a function on another context and wait (any thread) ------------ */

struct call {
    void (*fn)(void *opaque);
    void *opaque;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void call_bh(void *opaque)
{
    struct call *c = opaque;
    c->fn(c->opaque);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void run_and_wait(struct aio_context *ctx, void (*fn)(void *), void *opaque)
{
    if (aio_context_current() == ctx) {
        fn(opaque);
        return;
    }
    struct call c = { .fn = fn, .opaque = opaque };
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    aio_bh_schedule_oneshot(ctx, call_bh, &c);
    pthread_mutex_lock(&c.lock);
    while (!c.done) {
        pthread_cond_wait(&c.cond, &c.lock);
    }
    pthread_mutex_unlock(&c.lock);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
}

/* ---- The split ring, device side ---------------------------------------- */

struct seg {
    uint8_t *p;
    uint32_t len;
    bool write;
};

static void fail(struct tq *q, const char *why)
{
    if (!q->broken) {
        log_warn("x-test-blk-pci: queue %u: %s", q->index, why);
        q->broken = true;
        virtio_dev_needs_reset(&q->t->vdev);
    }
}

/* Collect the chain at head into segs; -1 on a malformed chain. */
static int walk(struct tq *q, uint16_t head, struct seg *segs, unsigned *nsegs)
{
    const struct guest_mem *mem = q->t->vdev.mem;
    struct vring_desc *table = q->desc;
    unsigned table_size = q->size, n = 0, steps = 0;
    uint16_t i = head;
    bool indirect = false;

    for (;;) {
        if (i >= table_size || ++steps > table_size + 1) {
            fail(q, "descriptor index out of range or a loop");
            return -1;
        }
        struct vring_desc d = table[i];
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect || (d.len % sizeof(struct vring_desc)) || d.len == 0) {
                fail(q, "bad indirect descriptor");
                return -1;
            }
            table = guest_mem_map(mem, d.addr, d.len);
            if (!table) {
                fail(q, "indirect table outside guest memory");
                return -1;
            }
            table_size = d.len / sizeof(struct vring_desc);
            indirect = true;
            i = 0;
            steps = 0;
            continue;
        }
        if (n == MAX_SEGS) {
            fail(q, "too many segments");
            return -1;
        }
        uint8_t *p = guest_mem_map(mem, d.addr, d.len);
        if (!p) {
            fail(q, "buffer outside guest memory");
            return -1;
        }
        segs[n++] = (struct seg){ .p = p, .len = d.len, .write = d.flags & VRING_DESC_F_WRITE };
        if (!(d.flags & VRING_DESC_F_NEXT)) {
            break;
        }
        i = d.next;
    }
    *nsegs = n;
    return 0;
}

/* Copy between the chain's readable (out) or writable (in) bytes and buf. */
static size_t chain_copy(struct seg *segs, unsigned n, bool write, size_t skip, uint8_t *buf,
                         size_t len, bool to_chain)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (segs[i].write != write) {
            continue;
        }
        if (skip >= segs[i].len) {
            skip -= segs[i].len;
            continue;
        }
        size_t chunk = MIN((size_t)segs[i].len - skip, len - done);
        if (to_chain) {
            memcpy(segs[i].p + skip, buf + done, chunk);
        } else {
            memcpy(buf + done, segs[i].p + skip, chunk);
        }
        done += chunk;
        skip = 0;
    }
    return done;
}

static size_t chain_len(struct seg *segs, unsigned n, bool write)
{
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        if (segs[i].write == write) {
            len += segs[i].len;
        }
    }
    return len;
}

/* One request; returns the bytes written into the chain. */
static uint32_t serve(struct tq *q, struct seg *segs, unsigned n)
{
    struct testblk *t = q->t;
    struct { uint32_t type, reserved; uint64_t sector; } hdr;
    size_t out = chain_len(segs, n, false), in = chain_len(segs, n, true);
    uint8_t status = VIRTIO_BLK_S_OK;

    if (out < sizeof(hdr) || in < 1) {
        fail(q, "request without header or status");
        return 0;
    }
    chain_copy(segs, n, false, 0, (uint8_t *)&hdr, sizeof(hdr), false);
    size_t in_data = in - 1;
    uint64_t off = hdr.sector * 512;
    switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
        if (off > t->cfg.size || in_data > t->cfg.size - off || in_data % 512) {
            status = VIRTIO_BLK_S_IOERR;
            in_data = 0;
        } else {
            chain_copy(segs, n, true, 0, t->data + off, in_data, true);
        }
        break;
    case VIRTIO_BLK_T_OUT: {
        size_t len = out - sizeof(hdr);
        in_data = 0;
        if (off > t->cfg.size || len > t->cfg.size - off || len % 512) {
            status = VIRTIO_BLK_S_IOERR;
        } else {
            chain_copy(segs, n, false, sizeof(hdr), t->data + off, len, false);
        }
        break;
    }
    case VIRTIO_BLK_T_FLUSH:
        in_data = 0;
        break;
    case VIRTIO_BLK_T_GET_ID: {
        uint8_t id[20] = "spindle-test-blk";
        in_data = MIN(in_data, sizeof(id));
        chain_copy(segs, n, true, 0, id, in_data, true);
        break;
    }
    default:
        in_data = 0;
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    chain_copy(segs, n, true, in - 1, &status, 1, true);
    return (uint32_t)(in_data + 1);
}

static inline uint16_t load_acquire16(uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void process(struct tq *q)
{
    bool event_idx = virtio_has_feature(&q->t->vdev, VIRTIO_F_EVENT_IDX);
    uint16_t used_before = q->used[1];
    struct seg segs[MAX_SEGS];
    unsigned n;

    while (!q->broken) {
        uint16_t avail_idx = load_acquire16(&q->avail[1]);
        if ((uint16_t)(avail_idx - q->last_avail) > q->size) {
            fail(q, "avail index ran ahead of the ring");
            return;
        }
        if (avail_idx == q->last_avail) {
            if (event_idx) {
                /* Ask for a kick at the next new entry, then look once more. */
                q->used[2 + 4 * q->size] = q->last_avail;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                if (load_acquire16(&q->avail[1]) != q->last_avail) {
                    continue;
                }
            }
            break;
        }
        uint16_t head = q->avail[2 + q->last_avail % q->size];
        if (walk(q, head, segs, &n) < 0) {
            return;
        }
        uint32_t len = serve(q, segs, n);

        uint16_t u = q->used[1];
        uint32_t *elem = (uint32_t *)(q->used + 2) + 2 * (u % q->size);
        elem[0] = head;
        elem[1] = len;
        __atomic_store_n(&q->used[1], (uint16_t)(u + 1), __ATOMIC_RELEASE);
        q->last_avail++;
        q->requests++;
    }
    uint16_t used_now = q->used[1];
    if (used_now == used_before) {
        return;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool notify;
    if (event_idx) {
        uint16_t used_event = q->avail[2 + q->size];
        notify = (uint16_t)(used_now - used_event - 1) < (uint16_t)(used_now - used_before);
    } else {
        notify = !(q->avail[0] & VRING_AVAIL_F_NO_INTERRUPT);
    }
    if (notify) {
        virtio_queue_notify(&q->t->vdev.queues[q->index]);
    }
}

static void kicked(void *opaque)
{
    struct tq *q = opaque;
    uint64_t v;
    if (read(q->t->vdev.queues[q->index].kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        return;
    }
    trace("testblk_kick", "queue %u avail %u last %u", q->index, q->avail[1], q->last_avail);
    process(q);
}

/* ---- The device ops ------------------------------------------------------ */

static struct testblk *of(struct virtio_dev *d)
{
    return container_of(d, struct testblk, vdev);
}

static uint64_t tb_features(struct virtio_dev *d)
{
    struct testblk *t = of(d);
    uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) |
                 VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
                 VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX);
    if (t->cfg.num_queues > 1) {
        f |= VIRTIO_BIT(VIRTIO_BLK_F_MQ);
    }
    return f;
}

static void tb_read_config(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    struct testblk *t = of(d);
    uint8_t cfg[0x40];
    memset(cfg, 0, sizeof(cfg));
    uint64_t sectors = t->cfg.size / 512;
    uint32_t seg_max = MAX_SEGS - 2, blk_size = 512;
    uint16_t nq = (uint16_t)t->cfg.num_queues;
    memcpy(cfg + 0, &sectors, 8);        /* capacity */
    memcpy(cfg + 12, &seg_max, 4);       /* seg_max */
    memcpy(cfg + 20, &blk_size, 4);      /* blk_size */
    memcpy(cfg + 34, &nq, 2);            /* num_queues */
    if (off < sizeof(cfg) && len <= sizeof(cfg) - off) {
        memcpy(buf, cfg + off, len);
    }
}

static void start_queue(void *opaque)
{
    struct tq *q = opaque;
    trace("testblk_start", "queue %u size %u", q->index, q->size);
    q->h = aio_set_fd_handler(q->ctx, q->t->vdev.queues[q->index].kick_fd, kicked, NULL, q);
    /* Requests queued before DRIVER_OK are served at once. */
    process(q);
}

static void stop_queue(void *opaque)
{
    struct tq *q = opaque;
    aio_del_fd_handler(q->h);
    q->h = NULL;
}

static int tb_start(struct virtio_dev *d)
{
    struct testblk *t = of(d);
    for (unsigned i = 0; i < d->num_queues; i++) {
        struct virtio_queue_setup *s = &d->queues[i];
        struct tq *q = &t->q[i];
        memset(q, 0, sizeof(*q));
        q->t = t;
        q->index = i;
        q->ctx = t->ctx;
        if (!s->enabled) {
            continue;
        }
        q->size = s->size;
        q->last_avail = s->avail_base;
        q->desc = guest_mem_map(d->mem, s->desc, (uint64_t)s->size * 16);
        q->avail = guest_mem_map(d->mem, s->avail, 6 + 2ULL * s->size);
        q->used = guest_mem_map(d->mem, s->used, 6 + 8ULL * s->size);
        if (!q->desc || !q->avail || !q->used) {
            return -EFAULT;
        }
    }
    for (unsigned i = 0; i < d->num_queues; i++) {
        if (t->q[i].size) {
            run_and_wait(t->ctx, start_queue, &t->q[i]);
        }
    }
    return 0;
}

static void tb_stop(struct virtio_dev *d)
{
    struct testblk *t = of(d);
    for (unsigned i = 0; i < d->num_queues; i++) {
        if (t->q[i].h) {
            run_and_wait(t->ctx, stop_queue, &t->q[i]);
        }
        d->queues[i].avail_base = t->q[i].last_avail;
    }
}

static void tb_release(struct virtio_dev *d)
{
    struct testblk *t = of(d);
    free(t->q);
    free(t->data);
    free(t->cfg.iothread);
    free(t->mdev.name);
    free(t);
}

static void mdev_stop(struct kvm_machine_dev *md)
{
    struct testblk *t = md->opaque;
    vpci_stop(t->pci);
}

static void mdev_destroy(struct kvm_machine_dev *md)
{
    struct testblk *t = md->opaque;
    vpci_destroy(t->pci);      /* releases t */
}

/* ---- -device x-test-blk-pci --------------------------------------------- */

static void cfg_free(void *p)
{
    struct testblk_cfg *c = p;
    if (c) {
        free(c->iothread);
        free(c);
    }
}

static int tb_parse(struct kvm_opts *p, void **out, const char *what, struct err *err)
{
    struct testblk_cfg *c = xzalloc(sizeof(*c));
    uint64_t size = 64 * MiB, nq = 1, qs = 256;
    const char *v;
    if (kvm_opts_get_size(p, "size", &size, what, err) < 0 ||
        kvm_opts_get_u64(p, "num-queues", 1, 64, &nq, what, err) < 0 ||
        kvm_opts_get_u64(p, "queue-size", 2, 1024, &qs, what, err) < 0) {
        cfg_free(c);
        return -EINVAL;
    }
    if (size == 0 || size % 512 || size > 4 * GiB) {
        err_set(err, "%s: size must be a multiple of 512 up to 4G", what);
        cfg_free(c);
        return -EINVAL;
    }
    if ((v = kvm_opts_get(p, "iothread"))) {
        c->iothread = xstrdup(v);
    }
    c->ioeventfd = true;
    if (kvm_opts_get_bool(p, "ioeventfd", &c->ioeventfd, what, err) < 0) {
        cfg_free(c);
        return -EINVAL;
    }
    c->size = size;
    c->num_queues = (unsigned)nq;
    c->queue_size = (unsigned)qs;
    *out = c;
    return 0;
}

static int tb_create(struct kvm_machine *m, struct kvm_device_cfg *dev, struct err *err)
{
    static unsigned count;
    const struct testblk_cfg *c = dev->cfg;
    struct testblk *t = xzalloc(sizeof(*t));
    char name[32];

    t->cfg = *c;
    t->cfg.iothread = c->iothread ? xstrdup(c->iothread) : NULL;
    snprintf(name, sizeof(name), "x-test-blk%u", count++);
    if (c->iothread) {
        struct iothread *io = iothread_find(c->iothread);
        if (!io) {
            err_set(err, "-device x-test-blk-pci: iothread '%s' does not exist", c->iothread);
            tb_release(&t->vdev);
            return -EINVAL;
        }
        t->ctx = iothread_ctx(io);
    } else {
        t->own_iothread = iothread_create(name, NULL, err);
        if (!t->own_iothread) {
            tb_release(&t->vdev);
            return -EINVAL;
        }
        t->ctx = iothread_ctx(t->own_iothread);
    }
    t->data = xzalloc(c->size);
    t->q = xcalloc(c->num_queues, sizeof(*t->q));
    t->ops = (struct virtio_dev_ops){
        .name = "x-test-blk",
        .device_id = VIRTIO_ID_BLOCK,
        .config_size = 0x40,
        .max_queues = (uint16_t)c->num_queues,
        .max_queue_size = (uint16_t)c->queue_size,
        .features = tb_features,
        .read_config = tb_read_config,
        .start = tb_start,
        .stop = tb_stop,
        .release = tb_release,
    };
    t->vdev.ops = &t->ops;
    t->pci = vpci_create(&m->pci, &m->vm, &m->ram.mem, &t->vdev, -1, name, err);
    if (!t->pci) {
        tb_release(&t->vdev);
        return -EINVAL;
    }
    vpci_set_ioeventfd(t->pci, c->ioeventfd);
    t->mdev.name = xstrdup(name);
    t->mdev.stop = mdev_stop;
    t->mdev.destroy = mdev_destroy;
    t->mdev.opaque = t;
    kvm_machine_add_dev(m, &t->mdev);
    return 0;
}

const struct kvm_dev_type testblk_type = {
    .name = "x-test-blk-pci",
    .parse = tb_parse,
    .create = tb_create,
    .free_cfg = cfg_free,
};
