/* virtio-blk over a block backend; see virtio-blk.h. */
#include "dataplane/virtio-blk.h"

#include <stdio.h>
#include <unistd.h>

#include "dataplane/virtqueue.h"
#include "util/aio.h"
#include "util/completion.h"
#include "util/log.h"

#define VBLK_SEG_MAX        254     /* data buffers per request we offer */
#define VBLK_IOV_MAX        (VBLK_SEG_MAX + 8)   /* + header, status, region splits */
#define VBLK_DISCARD_SEGS   32
#define VBLK_MAX_SECTORS    (BDRV_REQUEST_MAX_BYTES / 512)

struct vblk_outhdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

struct vblk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;                 /* bit 0: unmap (write zeroes only) */
};

struct vblk_queue;

struct vblk_req {
    struct vblk_queue *q;
    struct vq_elem elem;
    struct vblk_outhdr hdr;
    struct qiov qiov;
    struct list_node link;          /* the queue's free list */
    struct iovec iov[VBLK_IOV_MAX];
};

struct vblk_queue {
    struct vblk *dev;
    unsigned index;
    struct aio_context *ctx;
    struct vq vq;
    bool running;                   /* between start and stop */
    bool polled;                    /* the loop busy-polls us: kicks are off */
    bool stopping;
    struct aio_fd_handler *kick;
    struct aio_poller *poller;
    struct aio_bh *notify_bh;
    atomic_uint inflight;
    struct completion *idle;        /* signalled when stopping and inflight reaches 0 */
    struct list_node free_reqs;     /* only touched on ctx's thread */
    atomic_uint_fast64_t requests;
};

struct vblk {
    struct virtio_dev vdev;
    struct virtio_dev_ops ops;
    struct vblk_config cfg;
    char *name;
    char serial[VIRTIO_BLK_ID_BYTES];
    struct vblk_queue *queues;
    atomic_bool writeback;          /* the driver's config.writeback */
};

static struct vblk *of(struct virtio_dev *d)
{
    return container_of(d, struct vblk, vdev);
}

/* ---- Requests ---------------------------------------------------------- */

static struct vblk_req *req_get(struct vblk_queue *q)
{
    struct vblk_req *r = list_first(&q->free_reqs, struct vblk_req, link);
    if (r) {
        list_del(&r->link);
    } else {
        r = xmalloc(sizeof(*r));
        list_init(&r->link);
        r->q = q;
        r->elem.iov = r->iov;
        r->elem.max = VBLK_IOV_MAX;
        qiov_init(&r->qiov, VBLK_IOV_MAX);
    }
    return r;
}

static void req_put(struct vblk_req *r)
{
    qiov_reset(&r->qiov);
    list_add_head(&r->q->free_reqs, &r->link);
}

/* The request is over: let a stop() waiting for the queue to go quiet see it. */
static void req_done(struct vblk_queue *q)
{
    if (atomic_fetch_sub(&q->inflight, 1) == 1 && q->stopping && q->idle) {
        completion_signal(q->idle);
    }
}

static void notify_bh(void *opaque)
{
    struct vblk_queue *q = opaque;
    vq_notify(&q->vq);
}

/* Write the status byte (the chain's last byte) and give the chain back. */
static void req_complete(struct vblk_req *r, uint8_t status, uint32_t data_len)
{
    struct vblk_queue *q = r->q;
    struct vq_elem *e = &r->elem;
    if (!q->stopping) {
        /* The status is the last writable byte; the chain was checked to have one. */
        struct iovec *last = &e->iov[e->out_num + e->in_num - 1];
        ((uint8_t *)last->iov_base)[last->iov_len - 1] = status;
        vq_push(&q->vq, e, data_len + 1);
        /* One interrupt for everything completed in this loop iteration. */
        aio_bh_schedule(q->notify_bh);
    }
    req_put(r);
    req_done(q);
}

/* The writable buffers minus the status byte, as r->qiov. */
static void in_data_qiov(struct vblk_req *r)
{
    struct qiov in;
    qiov_init_external(&in, r->elem.iov + r->elem.out_num, (int)r->elem.in_num);
    qiov_concat(&r->qiov, &in, 0, r->elem.in_len - 1);
}

/* The readable buffers after the header, as r->qiov. */
static void out_data_qiov(struct vblk_req *r)
{
    struct qiov out;
    qiov_init_external(&out, r->elem.iov, (int)r->elem.out_num);
    qiov_concat(&r->qiov, &out, sizeof(r->hdr), r->elem.out_len - sizeof(r->hdr));
}

static bool range_ok(struct vblk *b, uint64_t sector, uint64_t bytes)
{
    uint32_t lbs = b->cfg.logical_block_size;
    int64_t cap = blk_getlength(b->cfg.blk);
    if (sector > (uint64_t)INT64_MAX / 512 || bytes % lbs || (sector * 512) % lbs) {
        return false;
    }
    return cap >= 0 && sector * 512 <= (uint64_t)cap && bytes <= (uint64_t)cap - sector * 512;
}

/*
 * Run one I/O with the backend's error policy: report (IOERR), ignore
 * (success), or stop (the VM stops; the request retries when it resumes).
 */
static int coroutine_fn do_io(struct vblk_req *r, bool is_read,
                              int (*io)(struct vblk_req *r))
{
    struct block_backend *blk = r->q->dev->cfg.blk;
    for (;;) {
        int ret = io(r);
        if (ret >= 0) {
            return 0;
        }
        enum blk_error_action action = blk_get_error_action(blk, is_read, -ret);
        blk_error_action(blk, action, is_read, -ret);
        if (action == BLK_ERROR_ACTION_IGNORE) {
            return 0;
        }
        if (action == BLK_ERROR_ACTION_REPORT || blk_co_wait_for_resume(blk) < 0) {
            return ret;
        }
    }
}

static int coroutine_fn io_read(struct vblk_req *r)
{
    return blk_co_preadv(r->q->dev->cfg.blk, (int64_t)(r->hdr.sector * 512),
                         (int64_t)r->qiov.size, &r->qiov, 0);
}

static int coroutine_fn io_write(struct vblk_req *r)
{
    return blk_co_pwritev(r->q->dev->cfg.blk, (int64_t)(r->hdr.sector * 512),
                          (int64_t)r->qiov.size, &r->qiov, 0);
}

static int coroutine_fn io_flush(struct vblk_req *r)
{
    return blk_co_flush(r->q->dev->cfg.blk);
}

/* DISCARD and WRITE_ZEROES carry an array of ranges after the header. */
static uint8_t coroutine_fn do_ranges(struct vblk_req *r, bool zeroes)
{
    struct vblk *b = r->q->dev;
    struct vblk_range ranges[VBLK_DISCARD_SEGS];
    size_t payload = r->elem.out_len - sizeof(r->hdr);
    size_t n = payload / sizeof(struct vblk_range);

    if (payload % sizeof(struct vblk_range) || n == 0 || n > VBLK_DISCARD_SEGS) {
        return VIRTIO_BLK_S_UNSUPP;
    }
    iov_to_buf(r->elem.iov, (int)r->elem.out_num, sizeof(r->hdr), ranges, payload);
    for (size_t i = 0; i < n; i++) {
        struct vblk_range *g = &ranges[i];
        /* Discard has no flags; write zeroes only "unmap". */
        if (g->flags & ~(zeroes ? 1u : 0u)) {
            return VIRTIO_BLK_S_UNSUPP;
        }
        uint64_t bytes = (uint64_t)g->num_sectors * 512;
        if (g->num_sectors > VBLK_MAX_SECTORS || !range_ok(b, g->sector, bytes)) {
            return VIRTIO_BLK_S_IOERR;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct vblk_range *g = &ranges[i];
        int64_t off = (int64_t)(g->sector * 512), bytes = (int64_t)g->num_sectors * 512;
        int ret;
        for (;;) {
            ret = zeroes ? blk_co_pwrite_zeroes(b->cfg.blk, off, bytes,
                                                (g->flags & 1) ? BDRV_REQ_MAY_UNMAP : 0)
                         : blk_co_pdiscard(b->cfg.blk, off, bytes);
            if (ret >= 0 || !zeroes) {
                break;
            }
            enum blk_error_action a = blk_get_error_action(b->cfg.blk, false, -ret);
            blk_error_action(b->cfg.blk, a, false, -ret);
            if (a == BLK_ERROR_ACTION_IGNORE) {
                ret = 0;
                break;
            }
            if (a == BLK_ERROR_ACTION_REPORT || blk_co_wait_for_resume(b->cfg.blk) < 0) {
                break;
            }
        }
        /* A failed discard is not an error the guest can act on. */
        if (ret < 0 && zeroes) {
            return VIRTIO_BLK_S_IOERR;
        }
    }
    return VIRTIO_BLK_S_OK;
}

static void coroutine_fn vblk_req_co(void *opaque)
{
    struct vblk_req *r = opaque;
    struct vblk *b = r->q->dev;
    uint8_t status = VIRTIO_BLK_S_OK;
    uint32_t data_len = 0;

    switch (r->hdr.type) {
    case VIRTIO_BLK_T_IN:
        in_data_qiov(r);
        if (!range_ok(b, r->hdr.sector, r->qiov.size) || r->qiov.size > BDRV_REQUEST_MAX_BYTES) {
            status = VIRTIO_BLK_S_IOERR;
            blk_stats_invalid(blk_get_stats(b->cfg.blk), BLK_ACCT_READ);
        } else if (do_io(r, true, io_read) < 0) {
            status = VIRTIO_BLK_S_IOERR;
        } else {
            data_len = (uint32_t)r->qiov.size;
        }
        break;
    case VIRTIO_BLK_T_OUT:
        out_data_qiov(r);
        if (b->cfg.read_only) {
            status = VIRTIO_BLK_S_IOERR;
        } else if (!range_ok(b, r->hdr.sector, r->qiov.size) ||
                   r->qiov.size > BDRV_REQUEST_MAX_BYTES) {
            status = VIRTIO_BLK_S_IOERR;
            blk_stats_invalid(blk_get_stats(b->cfg.blk), BLK_ACCT_WRITE);
        } else if (do_io(r, false, io_write) < 0) {
            status = VIRTIO_BLK_S_IOERR;
        }
        break;
    case VIRTIO_BLK_T_FLUSH:
        if (do_io(r, false, io_flush) < 0) {
            status = VIRTIO_BLK_S_IOERR;
        }
        break;
    case VIRTIO_BLK_T_GET_ID:
        data_len = (uint32_t)MIN(r->elem.in_len - 1, (size_t)VIRTIO_BLK_ID_BYTES);
        iov_from_buf(r->elem.iov + r->elem.out_num, (int)r->elem.in_num, 0, b->serial, data_len);
        break;
    case VIRTIO_BLK_T_DISCARD:
        status = b->cfg.discard && !b->cfg.read_only ? do_ranges(r, false)
                                                      : VIRTIO_BLK_S_UNSUPP;
        break;
    case VIRTIO_BLK_T_WRITE_ZEROES:
        status = b->cfg.write_zeroes && !b->cfg.read_only ? do_ranges(r, true)
                                                           : VIRTIO_BLK_S_UNSUPP;
        break;
    default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    req_complete(r, status, data_len);
}

/*
 * Pop and start every request waiting on the queue.  A chain without a
 * readable header or a writable status byte breaks the device: there is no
 * way to answer it.
 */
static bool process_queue(struct vblk_queue *q)
{
    bool progress = false;

    while (q->running) {
        struct vblk_req *r = req_get(q);
        int ret = vq_pop(&q->vq, &r->elem);
        if (ret <= 0) {
            req_put(r);
            if (ret < 0) {
                virtio_dev_needs_reset(&q->dev->vdev);
            }
            break;
        }
        progress = true;
        atomic_fetch_add(&q->requests, 1);
        if (r->elem.out_len < sizeof(r->hdr) || r->elem.in_len < 1) {
            log_warn("%s: queue %u: a request without a header or a status byte; the device "
                     "needs a reset", q->dev->name, q->index);
            q->vq.broken = true;
            req_put(r);
            virtio_dev_needs_reset(&q->dev->vdev);
            break;
        }
        iov_to_buf(r->elem.iov, (int)r->elem.out_num, 0, &r->hdr, sizeof(r->hdr));
        atomic_fetch_add(&q->inflight, 1);
        co_enter(co_create(vblk_req_co, r));
    }
    return progress;
}

/* ---- Being woken: kicks and polling ------------------------------------ */

/*
 * Serve the queue.  Unless a poller watches it, the driver's kicks stay
 * off while we work and are asked for again afterwards; with EVENT_IDX
 * that also moves avail_event past what we popped, so the next entry
 * kicks.  Then look once more: an entry may have come in between.
 */
static void serve(struct vblk_queue *q)
{
    do {
        if (!q->polled) {
            vq_set_notification(&q->vq, false);
        }
        process_queue(q);
        if (!q->polled) {
            vq_set_notification(&q->vq, true);
        }
    } while (q->running && vq_has_work(&q->vq));
}

static void kick_ready(void *opaque)
{
    struct vblk_queue *q = opaque;
    uint64_t v;
    if (read(q->dev->vdev.queues[q->index].kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        return;
    }
    serve(q);
}

static bool poll_queue(void *opaque)
{
    struct vblk_queue *q = opaque;
    if (!vq_has_work(&q->vq)) {
        return false;
    }
    serve(q);
    return true;
}

/* While the loop busy-polls the queue, the driver need not kick at all. */
static void poll_begin(void *opaque)
{
    struct vblk_queue *q = opaque;
    q->polled = true;
    vq_set_notification(&q->vq, false);
}

static void poll_end(void *opaque)
{
    struct vblk_queue *q = opaque;
    q->polled = false;
    vq_set_notification(&q->vq, true);
}

/* ---- Start and stop (on the queue's own loop) --------------------------- */

static void queue_attach(void *opaque)
{
    struct vblk_queue *q = opaque;
    q->notify_bh = aio_bh_new(q->ctx, notify_bh, q);
    q->kick = aio_set_fd_handler(q->ctx, q->dev->vdev.queues[q->index].kick_fd, kick_ready,
                                 NULL, q);
    q->poller = aio_add_poller(q->ctx, poll_queue, poll_begin, poll_end, q);
    q->running = true;
    /* Requests made available before DRIVER_OK are served now. */
    process_queue(q);
}

static void queue_detach(void *opaque)
{
    struct vblk_queue *q = opaque;
    q->running = false;
    q->stopping = true;
    aio_del_poller(q->poller);
    aio_del_fd_handler(q->kick);
    q->poller = NULL;
    q->kick = NULL;
}

static void queue_free_state(void *opaque)
{
    struct vblk_queue *q = opaque;
    aio_bh_delete(q->notify_bh);
    q->notify_bh = NULL;
    while (!list_empty(&q->free_reqs)) {
        struct vblk_req *r = list_entry(q->free_reqs.next, struct vblk_req, link);
        list_del(&r->link);
        qiov_destroy(&r->qiov);
        free(r);
    }
}

static struct aio_context *queue_ctx(struct vblk *b, unsigned i)
{
    struct aio_context *ctx = b->cfg.queue_ctx ? b->cfg.queue_ctx[i] : NULL;
    return ctx ? ctx : aio_main_context();
}

static void vblk_stop(struct virtio_dev *d);

static int vblk_start(struct virtio_dev *d)
{
    struct vblk *b = of(d);
    char what[64];

    for (unsigned i = 0; i < d->num_queues; i++) {
        struct vblk_queue *q = &b->queues[i];
        memset(q, 0, sizeof(*q));
        q->dev = b;
        q->index = i;
        q->ctx = queue_ctx(b, i);
        list_init(&q->free_reqs);
        if (!d->queues[i].enabled) {
            continue;
        }
        struct err err = { 0 };
        snprintf(what, sizeof(what), "%s queue %u", b->name, i);
        if (vq_init(&q->vq, d->mem, &d->queues[i], d->guest_features, what, &err) < 0) {
            log_warn("%s", err.msg);
            for (unsigned j = 0; j < i; j++) {
                vq_destroy(&b->queues[j].vq);
            }
            return -EFAULT;
        }
    }
    blk_set_write_cache(b->cfg.blk, atomic_load(&b->writeback));
    for (unsigned i = 0; i < d->num_queues; i++) {
        if (b->queues[i].vq.size) {
            aio_run_on(b->queues[i].ctx, queue_attach, &b->queues[i]);
        }
    }
    return 0;
}

static void vblk_stop(struct virtio_dev *d)
{
    struct vblk *b = of(d);
    for (unsigned i = 0; i < d->num_queues; i++) {
        struct vblk_queue *q = &b->queues[i];
        if (!q->vq.size) {
            continue;
        }
        struct completion idle;
        completion_init(&idle);
        q->idle = &idle;
        aio_run_on(q->ctx, queue_detach, q);
        /* Requests held by a stop error would wait forever: give them up. */
        blk_resume_stopped(b->cfg.blk, false);
        if (atomic_load(&q->inflight)) {
            completion_wait(&idle);
        }
        q->idle = NULL;
        completion_destroy(&idle);
        aio_run_on(q->ctx, queue_free_state, q);
        d->queues[i].avail_base = q->vq.last_avail;
        vq_destroy(&q->vq);
    }
}

/* ---- Features and config space ----------------------------------------- */

static uint64_t vblk_features(struct virtio_dev *d)
{
    struct vblk *b = of(d);
    uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) |
                 VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
                 VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
                 VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE);
    if (b->cfg.num_queues > 1) {
        f |= VIRTIO_BIT(VIRTIO_BLK_F_MQ);
    }
    if (b->cfg.read_only) {
        f |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
    }
    if (b->cfg.discard) {
        f |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD);
    }
    if (b->cfg.write_zeroes) {
        f |= VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
    }
    return f;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void vblk_read_config(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    struct vblk *b = of(d);
    uint8_t cfg[VIRTIO_BLK_CONFIG_SIZE];
    int64_t bytes = blk_getlength(b->cfg.blk);
    uint64_t capacity = bytes > 0 ? (uint64_t)bytes / 512 : 0;
    uint32_t lbs = b->cfg.logical_block_size, pbs = b->cfg.physical_block_size;

    memset(cfg, 0, sizeof(cfg));
    memcpy(cfg + 0, &capacity, 8);
    put32(cfg + 12, MIN((uint32_t)VBLK_SEG_MAX, b->cfg.queue_size - 2));   /* seg_max */
    put32(cfg + 20, lbs);                                            /* blk_size */
    cfg[24] = (uint8_t)ctz64(pbs / lbs);                             /* physical_block_exp */
    put16(cfg + 26, (uint16_t)(pbs / lbs));                          /* min_io_size */
    cfg[32] = atomic_load(&b->writeback);                            /* writeback */
    put16(cfg + 34, (uint16_t)b->cfg.num_queues);                    /* num_queues */
    put32(cfg + 36, VBLK_MAX_SECTORS);                               /* max_discard_sectors */
    put32(cfg + 40, VBLK_DISCARD_SEGS);                              /* max_discard_seg */
    put32(cfg + 44, lbs / 512);                                      /* discard alignment */
    put32(cfg + 48, VBLK_MAX_SECTORS);                               /* max_write_zeroes_sectors */
    put32(cfg + 52, VBLK_DISCARD_SEGS);                              /* max_write_zeroes_seg */
    cfg[56] = 1;                                                     /* write_zeroes_may_unmap */
    if (off < sizeof(cfg) && len <= sizeof(cfg) - off) {
        memcpy(buf, cfg + off, len);
    } else {
        memset(buf, 0, len);
    }
}

static void vblk_write_config(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
    struct vblk *b = of(d);
    /* Only the writeback byte is writable (VIRTIO_BLK_F_CONFIG_WCE). */
    if (off <= 32 && off + len > 32) {
        bool wb = ((const uint8_t *)buf)[32 - off] != 0;
        atomic_store(&b->writeback, wb);
        blk_set_write_cache(b->cfg.blk, wb);
    }
}

static void vblk_release(struct virtio_dev *d)
{
    struct vblk *b = of(d);
    blk_unref(b->cfg.blk);
    free(b->cfg.queue_ctx);
    free(b->queues);
    free(b->name);
    free(b);
}

struct vblk *vblk_new(const struct vblk_config *cfg, struct err *err)
{
    uint32_t lbs = cfg->logical_block_size ? cfg->logical_block_size : 512;
    uint32_t pbs = cfg->physical_block_size ? cfg->physical_block_size : lbs;

    if (!is_power_of_2(lbs) || lbs < 512 || lbs > 32768 || !is_power_of_2(pbs) || pbs < lbs) {
        err_set(err, "%s: block sizes must be powers of two, 512 to 32768, physical >= logical",
                cfg->name);
        return NULL;
    }
    if (cfg->num_queues < 1 || cfg->num_queues > 1024 || cfg->queue_size < 4 ||
        cfg->queue_size > 1024) {
        err_set(err, "%s: num-queues must be 1..1024 and queue-size 4..1024", cfg->name);
        return NULL;
    }
    struct vblk *b = xzalloc(sizeof(*b));
    b->cfg = *cfg;
    b->cfg.logical_block_size = lbs;
    b->cfg.physical_block_size = pbs;
    b->name = xstrdup(cfg->name);
    b->cfg.name = b->name;
    b->cfg.serial = NULL;
    if (cfg->serial) {
        /* GET_ID: up to 20 bytes, not terminated when all are used. */
        memcpy(b->serial, cfg->serial, MIN(strlen(cfg->serial), sizeof(b->serial)));
    }
    b->cfg.queue_ctx = xcalloc(cfg->num_queues, sizeof(*b->cfg.queue_ctx));
    if (cfg->queue_ctx) {
        memcpy(b->cfg.queue_ctx, cfg->queue_ctx, cfg->num_queues * sizeof(*cfg->queue_ctx));
    }
    b->queues = xcalloc(cfg->num_queues, sizeof(*b->queues));
    atomic_store(&b->writeback, blk_write_cache_enabled(cfg->blk));
    blk_ref(cfg->blk);

    b->ops = (struct virtio_dev_ops){
        .name = b->name,
        .device_id = VIRTIO_ID_BLOCK,
        .config_size = VIRTIO_BLK_CONFIG_SIZE,
        .max_queues = (uint16_t)cfg->num_queues,
        .max_queue_size = (uint16_t)cfg->queue_size,
        .features = vblk_features,
        .read_config = vblk_read_config,
        .write_config = vblk_write_config,
        .start = vblk_start,
        .stop = vblk_stop,
        .release = vblk_release,
    };
    b->vdev.ops = &b->ops;
    return b;
}

struct virtio_dev *vblk_virtio_dev(struct vblk *b)
{
    return &b->vdev;
}

uint64_t vblk_requests(struct vblk *b, unsigned queue)
{
    return queue < b->cfg.num_queues ? atomic_load(&b->queues[queue].requests) : 0;
}
