/*
 * The request path: every read, write, zero write, discard, flush and
 * status query on a node goes through here on its way to the driver.
 *
 * Here requests are counted in flight (for drain), tracked (so overlapping
 * requests that must not interleave wait for each other), padded to the
 * driver's request alignment (read-modify-write for writes, serialised so
 * two unaligned writes into one block cannot tear it), split at the
 * driver's maximum transfer, zero-filled past the end of the node, and
 * shown to before-write notifiers.
 */
#include "block/debug-events.h"
#include "block/driver.h"
#include "block/io-internal.h"

#include "util/aio.h"
#include "util/log.h"

#define ZERO_BOUNCE_MAX (1 * MiB)

/* ---- In-flight counting ------------------------------------------------ */

void bnode_inc_in_flight(struct block_node *bs)
{
    atomic_fetch_add(&bs->in_flight, 1);
}

void bnode_dec_in_flight(struct block_node *bs)
{
    if (atomic_fetch_sub(&bs->in_flight, 1) == 1 && atomic_load(&bs->quiesce_counter)) {
        aio_wait_kick();
    }
}

/* ---- Tracked requests -------------------------------------------------- */

static void tracked_begin(struct tracked_req *req, struct block_node *bs, int64_t offset,
                          int64_t bytes, bool is_write)
{
    *req = (struct tracked_req){
        .bs = bs,
        .offset = offset,
        .bytes = bytes,
        .overlap_offset = offset,
        .overlap_bytes = bytes,
        .is_write = is_write,
    };
    co_queue_init(&req->waiters);
    pthread_mutex_lock(&bs->reqs_lock);
    list_add_tail(&bs->tracked_reqs, &req->link);
    pthread_mutex_unlock(&bs->reqs_lock);
}

static void tracked_end(struct tracked_req *req)
{
    struct block_node *bs = req->bs;
    pthread_mutex_lock(&bs->reqs_lock);
    if (req->serialising) {
        atomic_fetch_sub(&bs->serialising_in_flight, 1);
    }
    list_del(&req->link);
    co_queue_restart_all(&req->waiters);
    pthread_mutex_unlock(&bs->reqs_lock);
}

/* Widen the request's overlap range to whole blocks of align and serialise it. */
void tracked_mark_serialising(struct tracked_req *req, uint64_t align)
{
    int64_t start = ALIGN_DOWN(req->offset, (int64_t)align);
    int64_t end = ALIGN_UP(req->offset + req->bytes, (int64_t)align);

    pthread_mutex_lock(&req->bs->reqs_lock);
    if (!req->serialising) {
        atomic_fetch_add(&req->bs->serialising_in_flight, 1);
        req->serialising = true;
    }
    req->overlap_offset = MIN(req->overlap_offset, start);
    req->overlap_bytes = MAX(req->overlap_offset + req->overlap_bytes, end) - req->overlap_offset;
    pthread_mutex_unlock(&req->bs->reqs_lock);
}

static struct tracked_req *find_conflict(struct tracked_req *self)
{
    struct tracked_req *req;
    list_for_each(req, &self->bs->tracked_reqs, link) {
        if (req == self || (!req->serialising && !self->serialising)) {
            continue;
        }
        if (!ranges_overlap(req->overlap_offset, req->overlap_bytes, self->overlap_offset,
                            self->overlap_bytes)) {
            continue;
        }
        /*
         * A request that waits for something itself will look again when
         * it wakes and then wait for us: going on avoids a deadlock.
         */
        if (!req->waiting_for) {
            return req;
        }
    }
    return NULL;
}

/* Wait until no overlapping request conflicts with this one. */
void coroutine_fn tracked_wait_serialising(struct tracked_req *self)
{
    struct block_node *bs = self->bs;
    if (!atomic_load(&bs->serialising_in_flight)) {
        return;
    }
    pthread_mutex_lock(&bs->reqs_lock);
    struct tracked_req *other;
    while ((other = find_conflict(self))) {
        self->waiting_for = other;
        co_queue_wait(&other->waiters, &bs->reqs_lock);
        self->waiting_for = NULL;
    }
    pthread_mutex_unlock(&bs->reqs_lock);
}

/* ---- Checks ------------------------------------------------------------ */

static int check_request(struct block_node *bs, int64_t offset, int64_t bytes)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (offset < 0 || bytes < 0 || bytes > BDRV_REQUEST_MAX_BYTES ||
        offset > BDRV_MAX_LENGTH - bytes) {
        return -EIO;
    }
    return 0;
}

static int check_write(struct block_node *bs)
{
    return bs->read_only ? -EPERM : 0;
}

/* ---- Padding to the request alignment ---------------------------------- */

struct req_pad {
    uint8_t *buf;            /* bounce for the head block, then the tail block */
    size_t buf_len;
    int64_t head;            /* bytes of padding before the caller's data */
    int64_t tail;            /* bytes of padding after it */
    bool one_block;          /* head and tail are the same block */
    struct qiov qiov;
};

/*
 * If [*offset, *offset+*bytes) is not aligned, widen it to whole blocks and
 * build a vector: head padding, the caller's data, tail padding.  (Zero
 * writes reach here aligned: bnode_co_pwrite_zeroes splits off the edges.)
 */
static bool pad_request(struct block_node *bs, int64_t *offset, int64_t *bytes,
                        struct qiov *qiov, size_t qiov_offset, struct req_pad *pad)
{
    int64_t align = bs->bl.request_alignment;
    int64_t start = ALIGN_DOWN(*offset, align);
    int64_t end = ALIGN_UP(*offset + *bytes, align);

    memset(pad, 0, sizeof(*pad));
    if (start == *offset && end == *offset + *bytes) {
        return false;
    }
    pad->head = *offset - start;
    pad->tail = end - (*offset + *bytes);
    pad->one_block = end - start == align;
    pad->buf_len = pad->one_block ? align : 2 * align;
    pad->buf = bnode_blockalign(bs, pad->buf_len);

    qiov_init(&pad->qiov, qiov->niov + 2);
    if (pad->head) {
        qiov_add(&pad->qiov, pad->buf, pad->head);
    }
    qiov_concat(&pad->qiov, qiov, qiov_offset, *bytes);
    if (pad->tail) {
        uint8_t *tail_block = pad->one_block ? pad->buf : pad->buf + align;
        qiov_add(&pad->qiov, tail_block + align - pad->tail, pad->tail);
    }
    *offset = start;
    *bytes = end - start;
    return true;
}

static void pad_free(struct req_pad *pad)
{
    if (pad->buf) {
        qiov_destroy(&pad->qiov);
        free(pad->buf);
    }
}

/* ---- Reads ------------------------------------------------------------- */

static uint64_t max_transfer(struct block_node *bs)
{
    uint64_t max = BDRV_REQUEST_MAX_BYTES;
    if (bs->bl.max_transfer && bs->bl.max_transfer < max) {
        max = bs->bl.max_transfer;
    }
    return ALIGN_DOWN(max, bs->bl.request_alignment);
}

/* Aligned read: split at max_transfer, zero-fill past the end of the node. */
int coroutine_fn bnode_aligned_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                      struct qiov *qiov, size_t qiov_offset, int flags)
{
    const struct block_driver *drv = bs->drv;
    int64_t align = bs->bl.request_alignment;
    int64_t size = bnode_size(bs);
    int64_t readable = ALIGN_UP(MAX(0, size - offset), align);
    int64_t chunk = max_transfer(bs);
    int64_t done = 0;

    if (!drv->co_preadv) {
        return -ENOTSUP;
    }
    while (done < MIN(bytes, readable)) {
        int64_t n = MIN(MIN(bytes, readable) - done, chunk);
        int ret = drv->co_preadv(bs, offset + done, n, qiov, qiov_offset + done, 0);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    if (done < bytes) {
        qiov_memset(qiov, qiov_offset + done, 0, bytes - done);
    }
    return 0;
}

int coroutine_fn bnode_co_preadv(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                 struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct block_node *bs = child->bs;
    struct tracked_req req;
    struct req_pad pad;
    int ret = check_request(bs, offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    bnode_inc_in_flight(bs);
    bool padded = pad_request(bs, &offset, &bytes, qiov, qiov_offset, &pad);
    if (padded) {
        qiov = &pad.qiov;
        qiov_offset = 0;
    }
    tracked_begin(&req, bs, offset, bytes, false);
    if (flags & BDRV_REQ_SERIALISING) {
        tracked_mark_serialising(&req, bs->bl.request_alignment);
    }
    if (!(flags & BDRV_REQ_NO_SERIALISING)) {
        tracked_wait_serialising(&req);
    }
    ret = bnode_aligned_preadv(bs, offset, bytes, qiov, qiov_offset, flags);
    tracked_end(&req);
    pad_free(&pad);
    bnode_dec_in_flight(bs);
    return ret;
}

/* ---- Writes ------------------------------------------------------------ */

static int coroutine_fn run_write_notifiers(struct block_node *bs, int64_t offset,
                                            int64_t bytes, int flags)
{
    struct bdrv_write_notifier *n;
    if (flags & BDRV_REQ_NO_NOTIFY) {
        return 0;
    }
    list_for_each(n, &bs->write_notifiers, link) {
        int ret = n->before_write(n, bs, offset, bytes, flags);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Bookkeeping after a successful write, zero write or discard. */
static void write_done(struct block_node *bs, int64_t offset, int64_t bytes)
{
    int64_t end = offset + bytes;
    atomic_fetch_add(&bs->write_gen, 1);
    int64_t high = atomic_load(&bs->wr_highest_offset);
    while (end > high && !atomic_compare_exchange_weak(&bs->wr_highest_offset, &high, end)) {
    }
    /* A protocol grows when written past its end. */
    if (bs->drv->protocol_name) {
        int64_t size = atomic_load(&bs->size);
        while (end > size && !atomic_compare_exchange_weak(&bs->size, &size, end)) {
        }
    }
    bnode_dirty_set(bs, offset, bytes);
}

static int coroutine_fn driver_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                       struct qiov *qiov, size_t qiov_offset, int flags)
{
    const struct block_driver *drv = bs->drv;
    int64_t chunk = max_transfer(bs);
    int drv_flags = flags & drv->supported_write_flags;

    if (!drv->co_pwritev) {
        return -ENOTSUP;
    }
    for (int64_t done = 0; done < bytes;) {
        int64_t n = MIN(bytes - done, chunk);
        int ret = drv->co_pwritev(bs, offset + done, n, qiov, qiov_offset + done, drv_flags);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

/* Whether a FUA request needs a flush after it (the driver cannot do FUA). */
static bool needs_fua_flush(struct block_node *bs, int flags)
{
    unsigned supported = (flags & BDRV_REQ_ZERO_WRITE) ? bs->drv->supported_zero_flags
                                                       : bs->drv->supported_write_flags;
    return (flags & BDRV_REQ_FUA) && !(supported & BDRV_REQ_FUA);
}

/* Write zero buffers where the driver cannot write zeroes efficiently. */
static int coroutine_fn write_zero_buffers(struct block_node *bs, int64_t offset, int64_t bytes,
                                           int flags)
{
    size_t len = MIN((uint64_t)bytes, ZERO_BOUNCE_MAX);
    len = MIN(len, max_transfer(bs));
    void *buf = bnode_blockalign(bs, len);
    int ret = 0;

    memset(buf, 0, len);
    for (int64_t done = 0; done < bytes && ret == 0;) {
        int64_t n = MIN(bytes - done, (int64_t)len);
        struct qiov q;
        qiov_init_buf(&q, buf, n);
        ret = driver_pwritev(bs, offset + done, n, &q, 0, flags & bs->drv->supported_write_flags);
        done += n;
    }
    free(buf);
    return ret;
}

/* Aligned zero write: the driver's fast path, else zero buffers. */
static int coroutine_fn driver_pwrite_zeroes(struct block_node *bs, int64_t offset,
                                             int64_t bytes, int flags)
{
    const struct block_driver *drv = bs->drv;
    int64_t align = MAX(bs->bl.pwrite_zeroes_alignment, bs->bl.request_alignment);
    int64_t max = bs->bl.max_pwrite_zeroes ? (int64_t)bs->bl.max_pwrite_zeroes
                                           : BDRV_REQUEST_MAX_BYTES;

    max = MAX(ALIGN_DOWN(max, align), align);
    while (bytes > 0) {
        int64_t n = bytes;
        /* Pieces: up to the next boundary, whole aligned runs, the rest. */
        if (offset % align) {
            n = MIN(n, align - offset % align);
        } else if (n > align && (offset + n) % align) {
            n -= (offset + n) % align;
        }
        n = MIN(n, max);

        int ret = -ENOTSUP;
        if (drv->co_pwrite_zeroes) {
            int zflags = flags & drv->supported_zero_flags;
            ret = drv->co_pwrite_zeroes(bs, offset, n, zflags & ~BDRV_REQ_NO_FALLBACK);
        }
        if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
            ret = write_zero_buffers(bs, offset, n, flags);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

/* An aligned write that holds its tracked request: notifiers, then the driver. */
static int coroutine_fn aligned_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                        struct qiov *qiov, size_t qiov_offset, int flags)
{
    int ret = run_write_notifiers(bs, offset, bytes, flags);
    if (ret < 0) {
        return ret;
    }
    if (bs->detect_zeroes != BDRV_DETECT_ZEROES_OFF && !(flags & BDRV_REQ_ZERO_WRITE) &&
        qiov_is_zero(qiov, qiov_offset, bytes)) {
        flags |= BDRV_REQ_ZERO_WRITE;
        if (bs->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
    }
    if (flags & BDRV_REQ_ZERO_WRITE) {
        bnode_debug_event(bs, BLKDBG_PWRITEV_ZERO);
        ret = driver_pwrite_zeroes(bs, offset, bytes, flags);
    } else {
        bnode_debug_event(bs, BLKDBG_PWRITEV);
        ret = driver_pwritev(bs, offset, bytes, qiov, qiov_offset, flags);
    }
    bnode_debug_event(bs, BLKDBG_PWRITEV_DONE);
    if (ret == 0) {
        /* Count the write first, so the flush that makes it durable is not skipped. */
        write_done(bs, offset, bytes);
        if (needs_fua_flush(bs, flags)) {
            ret = bnode_co_flush(bs);
        }
    }
    return ret;
}

/* Read the head and tail blocks a padded write keeps. */
static int coroutine_fn pad_read_edges(struct block_node *bs, int64_t offset, int64_t bytes,
                                       struct req_pad *pad)
{
    int64_t align = bs->bl.request_alignment;
    struct qiov q;
    int ret;

    if (pad->head || pad->one_block) {
        bnode_debug_event(bs, BLKDBG_PWRITEV_RMW_HEAD);
        qiov_init_buf(&q, pad->buf, align);
        ret = bnode_aligned_preadv(bs, offset, align, &q, 0, 0);
        bnode_debug_event(bs, BLKDBG_PWRITEV_RMW_AFTER_HEAD);
        if (ret < 0) {
            return ret;
        }
    }
    if (pad->tail && !pad->one_block) {
        bnode_debug_event(bs, BLKDBG_PWRITEV_RMW_TAIL);
        qiov_init_buf(&q, pad->buf + align, align);
        ret = bnode_aligned_preadv(bs, offset + bytes - align, align, &q, 0, 0);
        bnode_debug_event(bs, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/*
 * A write, or with qiov NULL and BDRV_REQ_ZERO_WRITE an aligned zero write.
 * Unaligned writes become serialised read-modify-writes of whole blocks.
 */
static int coroutine_fn do_pwritev(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                   struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct block_node *bs = child->bs;
    struct tracked_req req;
    struct req_pad pad;
    int ret = check_request(bs, offset, bytes);

    if (ret < 0 || (ret = check_write(bs)) < 0 || bytes == 0) {
        return ret;
    }
    bnode_inc_in_flight(bs);
    bool padded = pad_request(bs, &offset, &bytes, qiov, qiov_offset, &pad);
    tracked_begin(&req, bs, offset, bytes, true);
    if (padded || (flags & BDRV_REQ_SERIALISING)) {
        /* Nobody may touch these blocks between our read and our write. */
        tracked_mark_serialising(&req, bs->bl.request_alignment);
    }
    tracked_wait_serialising(&req);
    if (padded) {
        ret = pad_read_edges(bs, offset, bytes, &pad);
        if (ret == 0) {
            ret = aligned_pwritev(bs, offset, bytes, &pad.qiov, 0, flags);
        }
    } else {
        ret = aligned_pwritev(bs, offset, bytes, qiov, qiov_offset, flags);
    }
    tracked_end(&req);
    pad_free(&pad);
    bnode_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bnode_co_pwritev(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                  struct qiov *qiov, size_t qiov_offset, int flags)
{
    return do_pwritev(child, offset, bytes, qiov, qiov_offset, flags & ~BDRV_REQ_ZERO_WRITE);
}

/* Write explicit zeroes to a piece smaller than one aligned block. */
static int coroutine_fn zero_piece(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                   int flags)
{
    void *buf = xzalloc(bytes);
    struct qiov q;
    qiov_init_buf(&q, buf, bytes);
    int ret = do_pwritev(child, offset, bytes, &q, 0, flags & BDRV_REQ_FUA);
    free(buf);
    return ret;
}

int coroutine_fn bnode_co_pwrite_zeroes(struct bdrv_child *child, int64_t offset,
                                        int64_t bytes, int flags)
{
    struct block_node *bs = child->bs;
    int64_t align = bs->bl.request_alignment;
    int64_t end = offset + bytes;
    int ret = check_request(bs, offset, bytes);

    if (ret < 0 || (ret = check_write(bs)) < 0 || bytes == 0) {
        return ret;
    }
    if (!(bs->open_flags & BDRV_O_UNMAP)) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    /* Unaligned edges are small ordinary writes; the aligned middle is a zero write. */
    int64_t mid_start = MIN(ALIGN_UP(offset, align), end);
    int64_t mid_end = MAX(ALIGN_DOWN(end, align), mid_start);
    if (mid_start > offset) {
        ret = zero_piece(child, offset, mid_start - offset, flags);
    }
    if (ret == 0 && mid_end > mid_start) {
        ret = do_pwritev(child, mid_start, mid_end - mid_start, NULL, 0,
                         flags | BDRV_REQ_ZERO_WRITE);
    }
    if (ret == 0 && end > mid_end) {
        ret = zero_piece(child, mid_end, end - mid_end, flags);
    }
    return ret;
}

/* ---- Copy-on-read ------------------------------------------------------ */

int coroutine_fn bnode_co_copy_on_read(struct bdrv_child *child, int64_t offset, int64_t bytes)
{
    struct block_node *bs = child->bs;
    struct tracked_req req;
    int64_t align = bs->bl.request_alignment;
    int ret = check_request(bs, offset, bytes);

    if (ret < 0 || (ret = check_write(bs)) < 0 || bytes == 0) {
        return ret;
    }
    int64_t start = ALIGN_DOWN(offset, align);
    int64_t end = MIN(ALIGN_UP(offset + bytes, align), ALIGN_UP(bnode_size(bs), align));
    bnode_inc_in_flight(bs);
    tracked_begin(&req, bs, start, end - start, true);
    tracked_mark_serialising(&req, align);
    tracked_wait_serialising(&req);

    void *buf = NULL;
    size_t buf_len = 0;
    for (int64_t off = start; ret >= 0 && off < end;) {
        int64_t pnum;
        ret = bnode_co_is_allocated_above(bs, bs, true, off, end - off, &pnum);
        if (ret < 0) {
            break;
        }
        pnum = MIN(ALIGN_UP(pnum, align), end - off);
        if (ret == 0) {
            if ((size_t)pnum > buf_len) {
                free(buf);
                buf_len = (size_t)pnum;
                buf = bnode_blockalign(bs, buf_len);
            }
            struct qiov q;
            qiov_init_buf(&q, buf, pnum);
            ret = bnode_aligned_preadv(bs, off, pnum, &q, 0, 0);
            if (ret == 0) {
                bnode_debug_event(bs, BLKDBG_COR_WRITE);
                ret = aligned_pwritev(bs, off, pnum, &q, 0, BDRV_REQ_NO_NOTIFY);
            }
        }
        off += pnum;
    }
    free(buf);
    tracked_end(&req);
    bnode_dec_in_flight(bs);
    return ret < 0 ? ret : 0;
}

/* ---- Discard ----------------------------------------------------------- */

int coroutine_fn bnode_co_pdiscard(struct bdrv_child *child, int64_t offset, int64_t bytes)
{
    struct block_node *bs = child->bs;
    const struct block_driver *drv = bs->drv;
    struct tracked_req req;
    int ret = check_request(bs, offset, bytes);

    if (ret < 0 || (ret = check_write(bs)) < 0) {
        return ret;
    }
    if (bytes == 0 || !(bs->open_flags & BDRV_O_UNMAP) || !drv->co_pdiscard) {
        return 0;    /* discard is advisory */
    }
    /* Only whole blocks can be discarded. */
    int64_t align = bs->bl.request_alignment;
    int64_t start = ALIGN_UP(offset, align);
    int64_t end = ALIGN_DOWN(offset + bytes, align);
    if (end <= start) {
        return 0;
    }
    int64_t dalign = MAX((int64_t)bs->bl.pdiscard_alignment, align);
    int64_t max = bs->bl.max_pdiscard ? (int64_t)bs->bl.max_pdiscard : BDRV_REQUEST_MAX_BYTES;
    max = MAX(ALIGN_DOWN(max, dalign), dalign);

    bnode_inc_in_flight(bs);
    tracked_begin(&req, bs, start, end - start, true);
    tracked_wait_serialising(&req);
    ret = run_write_notifiers(bs, start, end - start, 0);
    for (int64_t off = start; ret == 0 && off < end;) {
        int64_t n = end - off;
        /* Pieces up to a discard boundary, whole runs, then the rest. */
        if (off % dalign) {
            n = MIN(n, dalign - off % dalign);
        } else if (n > dalign && (off + n) % dalign) {
            n -= (off + n) % dalign;
        }
        n = MIN(n, max);
        ret = drv->co_pdiscard(bs, off, n);
        if (ret == -ENOTSUP) {
            ret = 0;
        }
        off += n;
    }
    if (ret == 0) {
        write_done(bs, start, end - start);
    }
    tracked_end(&req);
    bnode_dec_in_flight(bs);
    return ret;
}

/* ---- Flush ------------------------------------------------------------- */

int coroutine_fn bnode_co_flush(struct block_node *bs)
{
    const struct block_driver *drv = bs->drv;
    struct bdrv_child *c;
    int ret = 0;

    if (!drv) {
        return -ENOMEDIUM;
    }
    bnode_inc_in_flight(bs);
    co_mutex_lock(&bs->flush_lock);
    uint64_t gen = atomic_load(&bs->write_gen);
    if (gen == bs->flushed_gen) {
        goto out;       /* nothing written since the last flush */
    }
    if (drv->co_flush_to_os) {
        bnode_debug_event(bs, BLKDBG_FLUSH_TO_OS);
        ret = drv->co_flush_to_os(bs);
        if (ret < 0) {
            goto out;
        }
    }
    if (drv->co_flush_to_disk && !(bs->open_flags & BDRV_O_NO_FLUSH)) {
        bnode_debug_event(bs, BLKDBG_FLUSH_TO_DISK);
        ret = drv->co_flush_to_disk(bs);
        if (ret < 0) {
            goto out;
        }
    }
    /* What we wrote into our children must be durable too. */
    list_for_each(c, &bs->children, parent_link) {
        if (!c->bs->read_only) {
            ret = bnode_co_flush(c->bs);
            if (ret < 0) {
                goto out;
            }
        }
    }
    bs->flushed_gen = gen;
out:
    co_mutex_unlock(&bs->flush_lock);
    bnode_dec_in_flight(bs);
    return ret;
}

/* ---- Block status ------------------------------------------------------ */

int64_t bnode_getlength(struct block_node *bs)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    return bnode_size(bs);
}

int64_t bnode_refresh_length(struct block_node *bs)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->drv->getlength) {
        int64_t len = bs->drv->getlength(bs);
        if (len < 0) {
            return len;
        }
        bnode_set_size(bs, len);
    }
    return bnode_size(bs);
}

/* Refine a ZERO-less answer from the file below (RECURSE). */
static int coroutine_fn refine_from_file(struct block_node *file, int64_t map, int64_t *pnum,
                                         int ret)
{
    int64_t file_pnum;
    int ret2 = bnode_co_block_status(file, true, map, *pnum, &file_pnum, NULL, NULL);
    if (ret2 < 0) {
        return ret;
    }
    if ((ret2 & BDRV_BLOCK_EOF) && (!file_pnum || (ret2 & BDRV_BLOCK_ZERO))) {
        /* Reads past the end of the file return zeroes. */
        return ret | BDRV_BLOCK_ZERO;
    }
    *pnum = MIN(*pnum, file_pnum);
    return ret | (ret2 & BDRV_BLOCK_ZERO);
}

int coroutine_fn bnode_co_block_status(struct block_node *bs, bool want_zero, int64_t offset,
                                       int64_t bytes, int64_t *pnum, int64_t *map,
                                       struct block_node **file)
{
    const struct block_driver *drv = bs->drv;
    int64_t local_map = 0;
    struct block_node *local_file = NULL;
    int ret;

    if (!drv) {
        return -ENOMEDIUM;
    }
    int64_t total = bnode_getlength(bs);
    if (total < 0) {
        return (int)total;
    }
    if (offset < 0 || bytes < 0) {
        return -EINVAL;
    }
    if (offset >= total) {
        *pnum = 0;
        return BDRV_BLOCK_EOF;
    }
    bytes = MIN(bytes, total - offset);

    if (!drv->co_block_status) {
        *pnum = bytes;
        if (bs->file && (drv->is_format || drv->is_filter)) {
            ret = BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
            local_file = bs->file->bs;
        } else {
            ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
            local_file = bs;
        }
        local_map = offset;
    } else {
        int64_t align = bs->bl.request_alignment;
        int64_t aligned_off = ALIGN_DOWN(offset, align);
        int64_t aligned_bytes = ALIGN_UP(offset + bytes, align) - aligned_off;
        bnode_inc_in_flight(bs);
        ret = drv->co_block_status(bs, want_zero, aligned_off, aligned_bytes, pnum, &local_map,
                                   &local_file);
        bnode_dec_in_flight(bs);
        if (ret < 0) {
            return ret;
        }
        if (*pnum <= offset - aligned_off) {
            return -EIO;    /* the driver made no progress */
        }
        *pnum -= offset - aligned_off;
        *pnum = MIN(*pnum, bytes);
        local_map += offset - aligned_off;
    }

    if (ret & BDRV_BLOCK_RAW) {
        ret = bnode_co_block_status(local_file, want_zero, local_map, *pnum, pnum, map, file);
        if (ret >= 0 && offset + *pnum == total) {
            ret |= BDRV_BLOCK_EOF;
        }
        return ret;
    }
    if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
        ret |= BDRV_BLOCK_ALLOCATED;
    } else if (want_zero && drv->supports_backing) {
        struct block_node *backing = bnode_backing_bs(bs);
        /* Unallocated with nothing (or nothing this far) below reads as zeroes. */
        if (!backing || bnode_getlength(backing) <= offset) {
            ret |= BDRV_BLOCK_ZERO;
        }
    }
    if (want_zero && (ret & BDRV_BLOCK_RECURSE) && (ret & BDRV_BLOCK_OFFSET_VALID) &&
        local_file && local_file != bs && !(ret & BDRV_BLOCK_ZERO)) {
        ret = refine_from_file(local_file, local_map, pnum, ret);
    }
    ret &= ~BDRV_BLOCK_RECURSE;
    if (offset + *pnum == total) {
        ret |= BDRV_BLOCK_EOF;
    }
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

int coroutine_fn bnode_co_block_status_above(struct block_node *top, struct block_node *base,
                                             bool want_zero, int64_t offset, int64_t bytes,
                                             int64_t *pnum, int64_t *map,
                                             struct block_node **file, int *depth)
{
    int d = 0;
    int ret = 0;
    int64_t total = bnode_getlength(top);

    if (total < 0) {
        return (int)total;
    }
    if (offset >= total) {
        *pnum = 0;
        if (depth) {
            *depth = 0;
        }
        return BDRV_BLOCK_EOF;
    }
    bytes = MIN(bytes, total - offset);
    for (struct block_node *p = top; p && p != base; p = bnode_backing_bs(p), d++) {
        int64_t n;
        if (p != top && bnode_getlength(p) <= offset) {
            /* Past the end of a shorter backing layer: zeroes, decided here. */
            *pnum = bytes;
            if (depth) {
                *depth = d;
            }
            return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED;
        }
        ret = bnode_co_block_status(p, want_zero, offset, bytes, &n, map, file);
        if (ret < 0) {
            return ret;
        }
        *pnum = n;
        if (ret & BDRV_BLOCK_ALLOCATED) {
            if (depth) {
                *depth = d;
            }
            ret &= ~BDRV_BLOCK_EOF;
            if (offset + *pnum == total) {
                ret |= BDRV_BLOCK_EOF;
            }
            return ret;
        }
        bytes = n;      /* the next layer answers only for this run */
    }
    if (depth) {
        *depth = d;
    }
    ret &= ~BDRV_BLOCK_EOF;
    if (offset + *pnum == total) {
        ret |= BDRV_BLOCK_EOF;
    }
    return ret;
}

int coroutine_fn bnode_co_is_allocated_above(struct block_node *top, struct block_node *base,
                                             bool include_base, int64_t offset, int64_t bytes,
                                             int64_t *pnum)
{
    struct block_node *p = top;
    int64_t n = bytes;

    for (;;) {
        int64_t pn;
        if (p != top && bnode_getlength(p) <= offset) {
            /* Reads past a shorter layer's end return zeroes: it decides them. */
            *pnum = n;
            return 1;
        }
        int ret = bnode_co_block_status(p, false, offset, n, &pn, NULL, NULL);
        if (ret < 0) {
            return ret;
        }
        if (ret & BDRV_BLOCK_EOF && pn == 0) {
            *pnum = 0;
            return 0;
        }
        if (ret & BDRV_BLOCK_ALLOCATED) {
            *pnum = pn;
            return 1;
        }
        n = pn;
        if (p == base) {
            break;
        }
        struct block_node *next = bnode_backing_bs(p);
        if (!next || (next == base && !include_base) || (!base && !next)) {
            break;
        }
        p = next;
    }
    *pnum = n;
    return 0;
}

/* ---- Truncate ---------------------------------------------------------- */

int prealloc_mode_parse(const char *s, enum prealloc_mode *out)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!strcmp(s, names[i])) {
            *out = (enum prealloc_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *prealloc_mode_name(enum prealloc_mode m)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    return (unsigned)m < ARRAY_SIZE(names) ? names[m] : "?";
}

int coroutine_fn bnode_co_truncate(struct bdrv_child *child, int64_t offset, bool exact,
                                   enum prealloc_mode prealloc, int flags, struct err *err)
{
    struct block_node *bs = child->bs;
    struct tracked_req req;

    if (!bs->drv) {
        err_set(err, "No medium inserted");
        return -ENOMEDIUM;
    }
    if (offset < 0) {
        err_set(err, "Image size cannot be negative");
        return -EINVAL;
    }
    if (offset > BDRV_MAX_LENGTH) {
        err_set(err, "Image size too large; max is %" PRId64 " bytes", (int64_t)BDRV_MAX_LENGTH);
        return -EFBIG;
    }
    if (bs->read_only) {
        err_set(err, "%s: image is read-only", bnode_describe(bs));
        return -EPERM;
    }
    if (!bs->drv->co_truncate) {
        err_set(err, "%s: the '%s' driver cannot resize images", bnode_describe(bs),
                bs->drv->format_name);
        return -ENOTSUP;
    }
    int64_t old = bnode_getlength(bs);
    if (old < 0) {
        err_set_errno(err, (int)old, "%s: cannot get the image size", bnode_describe(bs));
        return (int)old;
    }
    bnode_inc_in_flight(bs);
    /* Everything from the lower of the two ends on is being changed. */
    int64_t start = MIN(old, offset);
    tracked_begin(&req, bs, start, BDRV_MAX_LENGTH - start, true);
    tracked_mark_serialising(&req, 1);
    tracked_wait_serialising(&req);
    int ret;
    if ((flags & BDRV_REQ_GROW_ONLY) && bs->drv->getlength && bs->drv->getlength(bs) >= offset) {
        /* Writes past the old end made it long enough while we waited: cut nothing. */
        tracked_end(&req);
        bnode_dec_in_flight(bs);
        return 0;
    }
    ret = bs->drv->co_truncate(bs, offset, exact, prealloc, flags & ~BDRV_REQ_GROW_ONLY, err);
    if (ret == 0) {
        int64_t len = bs->drv->getlength ? bs->drv->getlength(bs) : offset;
        bnode_set_size(bs, len >= 0 ? len : offset);
        atomic_fetch_add(&bs->write_gen, 1);
        bnode_dirty_truncate(bs, offset);
    } else if (!err_isset(err)) {
        err_set_errno(err, ret, "%s: cannot resize to %" PRId64 " bytes", bnode_describe(bs),
                      offset);
    }
    tracked_end(&req);
    bnode_dec_in_flight(bs);
    return ret;
}

/* ---- Buffers and convenience forms ------------------------------------- */

void *bnode_blockalign(struct block_node *bs, size_t size)
{
    size_t align = MAX(bs->bl.opt_mem_alignment, bs->bl.min_mem_alignment);
    align = MAX(align, sizeof(void *));
    return xmemalign(align, ALIGN_UP(size ? size : 1, align));
}

int coroutine_fn bnode_co_pread(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                void *buf, int flags)
{
    struct qiov q;
    qiov_init_buf(&q, buf, bytes);
    return bnode_co_preadv(child, offset, bytes, &q, 0, flags);
}

int coroutine_fn bnode_co_pwrite(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                 const void *buf, int flags)
{
    struct qiov q;
    qiov_init_buf(&q, (void *)buf, bytes);
    return bnode_co_pwritev(child, offset, bytes, &q, 0, flags);
}

struct sync_rw {
    struct bdrv_child *child;
    struct block_node *bs;
    int64_t offset, bytes;
    void *buf;
    int flags;
    bool write;
    int ret;
};

static void sync_rw_entry(void *opaque)
{
    struct sync_rw *s = opaque;
    if (s->write) {
        s->ret = bnode_co_pwrite(s->child, s->offset, s->bytes, s->buf, s->flags);
    } else {
        s->ret = bnode_co_pread(s->child, s->offset, s->bytes, s->buf, s->flags);
    }
}

int bnode_pread(struct bdrv_child *child, int64_t offset, int64_t bytes, void *buf, int flags)
{
    struct sync_rw s = { .child = child, .offset = offset, .bytes = bytes, .buf = buf,
                         .flags = flags };
    co_run_sync(sync_rw_entry, &s);
    return s.ret;
}

int bnode_pwrite(struct bdrv_child *child, int64_t offset, int64_t bytes, const void *buf,
                 int flags)
{
    struct sync_rw s = { .child = child, .offset = offset, .bytes = bytes, .buf = (void *)buf,
                         .flags = flags, .write = true };
    co_run_sync(sync_rw_entry, &s);
    return s.ret;
}

static void sync_flush_entry(void *opaque)
{
    struct sync_rw *s = opaque;
    s->ret = bnode_co_flush(s->bs);
}

int bnode_flush(struct block_node *bs)
{
    struct sync_rw s = { .bs = bs };
    co_run_sync(sync_flush_entry, &s);
    return s.ret;
}

struct sync_status {
    struct block_node *top, *base;
    bool want_zero;
    int64_t offset, bytes;
    int64_t *pnum, *map;
    struct block_node **file;
    int *depth;
    int ret;
};

static void sync_status_entry(void *opaque)
{
    struct sync_status *s = opaque;
    s->ret = bnode_co_block_status_above(s->top, s->base, s->want_zero, s->offset, s->bytes,
                                         s->pnum, s->map, s->file, s->depth);
}

int bnode_block_status_above(struct block_node *top, struct block_node *base, bool want_zero,
                             int64_t offset, int64_t bytes, int64_t *pnum, int64_t *map,
                             struct block_node **file, int *depth)
{
    struct sync_status s = { top, base, want_zero, offset, bytes, pnum, map, file, depth, 0 };
    co_run_sync(sync_status_entry, &s);
    return s.ret;
}

/* ---- Notifiers --------------------------------------------------------- */

void bnode_add_write_notifier(struct block_node *bs, struct bdrv_write_notifier *n)
{
    list_add_tail(&bs->write_notifiers, &n->link);
}

void bnode_remove_write_notifier(struct bdrv_write_notifier *n)
{
    list_del(&n->link);
}
