/* The mirror job and its filter; see mirror.h. */
#include "blockjobs/mirror.h"

#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "util/log.h"

#define MIRROR_DEFAULT_GRANULARITY (64 * KiB)
#define MIRROR_DEFAULT_BUF_SIZE    (16 * MiB)
#define MIRROR_MAX_OP_BYTES        (1 * MiB)
#define MIRROR_MAX_OPS             16
#define MIRROR_IDLE_NS             (100 * 1000 * 1000LL)   /* sleep when in sync */
#define MIRROR_CHECK_NS            (1000 * 1000 * 1000LL)  /* convergence looked at every */
#define MIRROR_STALLED_CHECKS      3                       /* not shrinking: write-blocking */

struct mirror_job;

/* A range being copied (or, in write-blocking mode, written by the guest). */
struct mirror_op {
    struct mirror_job *s;
    int64_t offset, bytes;
    bool active;
    struct co_queue waiters;
    struct list_node link;
};

/* The filter's state: which job it belongs to (NULL once the job has let go). */
struct mirror_top {
    struct mirror_job *job;
};

struct mirror_job {
    struct block_job common;
    struct block_node *source;
    struct block_node *target;
    struct block_node *filter;
    struct block_backend *source_blk, *target_blk;
    struct bdrv_dirty_bitmap *dirty;
    enum mirror_sync sync;
    enum mirror_copy_mode copy_mode;
    bool auto_switched;
    bool is_active_commit;
    bool target_is_zero;
    uint32_t granularity;
    uint64_t buf_size, buf_used;
    bool should_complete;            /* job-complete: pivot after the final sync */
    bool soft_cancel;                /* cancel after READY: finish without pivot */
    bool in_drain;
    int ret;                         /* first error an op hit (reported) */
    int ops_in_flight;
    uint64_t bytes_in_flight;
    pthread_mutex_t ops_lock;        /* ops: guest writes come from iothreads */
    struct list_node ops;
    _Atomic int active_error;        /* a write-blocking target write failed */
    struct co_queue op_done;
    int64_t cursor;                  /* where the next copy looks for dirty data */
    int64_t last_check_ns;           /* convergence: when dirty data was last measured */
    uint64_t last_dirty;
    int stalled_checks;
    bool base_was_read_only;         /* active commit: the base was reopened writable */
};

static const struct block_driver bdrv_mirror_top;

int mirror_sync_parse(const char *s, enum mirror_sync *out)
{
    if (!strcmp(s, "full")) {
        *out = MIRROR_SYNC_FULL;
    } else if (!strcmp(s, "top")) {
        *out = MIRROR_SYNC_TOP;
    } else if (!strcmp(s, "none")) {
        *out = MIRROR_SYNC_NONE;
    } else {
        return -EINVAL;
    }
    return 0;
}

int mirror_copy_mode_parse(const char *s, enum mirror_copy_mode *out)
{
    if (!strcmp(s, "background")) {
        *out = MIRROR_COPY_BACKGROUND;
    } else if (!strcmp(s, "write-blocking")) {
        *out = MIRROR_COPY_WRITE_BLOCKING;
    } else {
        return -EINVAL;
    }
    return 0;
}

static struct mirror_job *of(struct job *job)
{
    return (struct mirror_job *)job;
}

/* ---- Ops: copies and active writes never overlap ----------------------- */

static struct mirror_op *find_conflict(struct mirror_job *s, int64_t offset, int64_t bytes)
{
    struct mirror_op *op;
    list_for_each(op, &s->ops, link) {
        if (ranges_overlap(op->offset, op->bytes, offset, bytes)) {
            return op;
        }
    }
    return NULL;
}

static void coroutine_fn op_begin(struct mirror_job *s, struct mirror_op *op, int64_t offset,
                                  int64_t bytes, bool active)
{
    struct mirror_op *other;
    pthread_mutex_lock(&s->ops_lock);
    while ((other = find_conflict(s, offset, bytes))) {
        co_queue_wait(&other->waiters, &s->ops_lock);
    }
    *op = (struct mirror_op){ .s = s, .offset = offset, .bytes = bytes, .active = active };
    co_queue_init(&op->waiters);
    list_add_tail(&s->ops, &op->link);
    pthread_mutex_unlock(&s->ops_lock);
}

static void op_end(struct mirror_op *op)
{
    struct mirror_job *s = op->s;
    pthread_mutex_lock(&s->ops_lock);
    list_del(&op->link);
    co_queue_restart_all(&op->waiters);
    pthread_mutex_unlock(&s->ops_lock);
}

/* ---- Background copies ------------------------------------------------- */

/*
 * An error in a copy: the range stays dirty (it is copied again later) and
 * the job's policy decides whether the job fails.
 */
static void copy_failed(struct mirror_job *s, int64_t offset, int64_t bytes, bool is_read,
                        int ret)
{
    bdrv_set_dirty_bitmap(s->dirty, offset, bytes);
    enum blk_error_action a = job_error_action(&s->common.job, is_read, ret);
    if (a == BLK_ERROR_ACTION_REPORT && !s->ret) {
        s->ret = ret;
    }
}

struct copy {
    struct mirror_job *s;
    int64_t offset, bytes;
};

static void coroutine_fn copy_co(void *opaque)
{
    struct copy *c = opaque;
    struct mirror_job *s = c->s;
    struct mirror_op op;
    int64_t pnum = 0;
    int ret;

    op_begin(s, &op, c->offset, c->bytes, false);
    /* Ranges that read as zeroes become zero writes, and no read at all. */
    int status = bnode_co_block_status_above(s->source, NULL, true, c->offset, c->bytes, &pnum,
                                             NULL, NULL, NULL);
    if (status >= 0 && (status & BDRV_BLOCK_ZERO) && pnum >= c->bytes) {
        ret = blk_co_pwrite_zeroes(s->target_blk, c->offset, c->bytes, BDRV_REQ_MAY_UNMAP);
        if (ret < 0) {
            copy_failed(s, c->offset, c->bytes, false, ret);
        }
    } else {
        void *buf = blk_blockalign(s->target_blk, c->bytes);
        ret = blk_co_pread(s->source_blk, c->offset, c->bytes, buf, 0);
        if (ret < 0) {
            copy_failed(s, c->offset, c->bytes, true, ret);
        } else {
            ret = blk_co_pwrite(s->target_blk, c->offset, c->bytes, buf, 0);
            if (ret < 0) {
                copy_failed(s, c->offset, c->bytes, false, ret);
            }
        }
        free(buf);
    }
    if (ret == 0) {
        job_progress_update(&s->common.job, (uint64_t)c->bytes);
    }
    op_end(&op);
    s->ops_in_flight--;
    s->bytes_in_flight -= (uint64_t)c->bytes;
    s->buf_used -= (uint64_t)c->bytes;
    co_queue_restart_all(&s->op_done);
    free(c);
}

/*
 * Start copying the next dirty run after the cursor: its bits are cleared
 * now, so writes that land during the copy dirty it again.  Returns the
 * bytes started, 0 when nothing is dirty.
 */
static int64_t coroutine_fn start_copy(struct mirror_job *s, int64_t size)
{
    int64_t start, bytes;
    uint64_t max = MIN(MIRROR_MAX_OP_BYTES, s->buf_size - s->buf_used);
    max = MAX(ALIGN_DOWN(max, s->granularity), s->granularity);

    if (!bdrv_dirty_bitmap_next_dirty_area(s->dirty, s->cursor, size, (int64_t)max, &start,
                                           &bytes)) {
        /* Past the last dirty run: start over from the beginning. */
        s->cursor = 0;
        if (!bdrv_dirty_bitmap_next_dirty_area(s->dirty, 0, size, (int64_t)max, &start,
                                               &bytes)) {
            return 0;
        }
    }
    bytes = MIN(bytes, size - start);
    bdrv_reset_dirty_bitmap(s->dirty, start, bytes);
    s->cursor = start + bytes;
    struct copy *c = xmalloc(sizeof(*c));
    *c = (struct copy){ s, start, bytes };
    s->ops_in_flight++;
    s->bytes_in_flight += (uint64_t)bytes;
    s->buf_used += (uint64_t)bytes;
    co_enter(co_create(copy_co, c));
    return bytes;
}

static void coroutine_fn wait_for_op(struct mirror_job *s)
{
    co_queue_wait(&s->op_done, NULL);
}

static void coroutine_fn wait_all_ops(struct mirror_job *s)
{
    while (s->ops_in_flight > 0) {
        wait_for_op(s);
    }
}

/*
 * A background mirror that keeps losing ground switches to write-blocking:
 * once a second the dirty data is measured, and three measures in a row
 * that did not shrink (before READY) are enough.
 */
static void check_convergence(struct mirror_job *s, uint64_t dirty)
{
    int64_t now = clock_ns();
    if (s->copy_mode != MIRROR_COPY_BACKGROUND || job_is_ready(&s->common.job)) {
        return;
    }
    if (!s->last_check_ns) {
        s->last_check_ns = now;
        s->last_dirty = dirty;
        return;
    }
    if (now - s->last_check_ns < MIRROR_CHECK_NS) {
        return;
    }
    s->stalled_checks = dirty && dirty >= s->last_dirty ? s->stalled_checks + 1 : 0;
    s->last_check_ns = now;
    s->last_dirty = dirty;
    if (s->stalled_checks >= MIRROR_STALLED_CHECKS) {
        s->copy_mode = MIRROR_COPY_WRITE_BLOCKING;
        s->auto_switched = true;
        log_info("job '%s': the mirror is not converging; guest writes now go to the target "
                 "too (copy-mode write-blocking)", s->common.job.id);
    }
}

/* ---- The initial dirty map --------------------------------------------- */

/*
 * full: everything the source holds data for is dirty, and what reads as
 * zeroes is zeroed on the target (unless it is known to read so already);
 * top: only what the top layer allocates; none: nothing.
 */
static int coroutine_fn dirty_init(struct mirror_job *s, int64_t size)
{
    struct block_node *base = s->sync == MIRROR_SYNC_TOP ? bnode_backing_bs(s->source) : NULL;

    if (s->sync == MIRROR_SYNC_NONE) {
        return 0;
    }
    for (int64_t off = 0; off < size;) {
        int64_t pnum;
        if (job_pause_point(&s->common.job)) {
            return -ECANCELED;
        }
        int64_t n = MIN(size - off, (int64_t)GiB);
        int ret;
        if (s->sync == MIRROR_SYNC_TOP) {
            ret = bnode_co_is_allocated_above(s->source, base, false, off, n, &pnum);
            if (ret < 0) {
                return ret;
            }
            if (ret) {
                bdrv_set_dirty_bitmap(s->dirty, off, pnum);
            }
        } else {
            ret = bnode_co_block_status_above(s->source, NULL, true, off, n, &pnum, NULL, NULL,
                                              NULL);
            if (ret < 0) {
                return ret;
            }
            if (!(ret & BDRV_BLOCK_ZERO)) {
                bdrv_set_dirty_bitmap(s->dirty, off, pnum);
            } else if (!s->target_is_zero) {
                ret = blk_co_pwrite_zeroes(s->target_blk, off, pnum, BDRV_REQ_MAY_UNMAP);
                if (ret < 0) {
                    return ret;
                }
            }
        }
        if (pnum <= 0) {
            return -EIO;
        }
        off += pnum;
    }
    return 0;
}

/* ---- The job ----------------------------------------------------------- */

static int coroutine_fn mirror_run(struct job *job, struct err *err)
{
    struct mirror_job *s = of(job);
    int64_t size = bnode_getlength(s->source);
    int ret = dirty_init(s, size);

    if (ret < 0) {
        if (ret != -ECANCELED) {
            err_set_errno(err, ret, "mirror: cannot read the source's allocation");
        }
        return ret;
    }
    for (;;) {
        int aerr = atomic_exchange(&s->active_error, 0);
        if (aerr < 0) {
            copy_failed(s, 0, 0, false, aerr);
        }
        if (s->ret < 0) {
            ret = s->ret;
            break;
        }
        if (job_is_cancelled(job)) {
            ret = -ECANCELED;
            break;
        }
        uint64_t dirty = bdrv_get_dirty_count(s->dirty);
        job_progress_set_remaining(job, s->bytes_in_flight + dirty);
        check_convergence(s, dirty);

        bool room = s->ops_in_flight < MIRROR_MAX_OPS && s->buf_used < s->buf_size;
        if (dirty > 0 && room) {
            int64_t started = start_copy(s, size);
            if (started > 0) {
                job_throttle(job, (uint64_t)started);
                continue;
            }
        }
        if (dirty == 0 && s->ops_in_flight == 0) {
            if (!job_is_ready(job)) {
                job_transition_to_ready(job);
            }
            if (s->should_complete || s->soft_cancel) {
                if (s->in_drain) {
                    ret = 0;
                    break;
                }
                /* The final round: no guest write may come in from here on. */
                bnode_drained_begin(s->source);
                s->in_drain = true;
                continue;
            }
        }
        if (s->ops_in_flight > 0) {
            wait_for_op(s);
        } else {
            job_sleep_ns(job, dirty ? 0 : MIRROR_IDLE_NS);
        }
    }
    wait_all_ops(s);
    if (ret == 0) {
        ret = blk_co_flush(s->target_blk);
        if (ret < 0) {
            err_set_errno(err, ret, "mirror: cannot flush the target");
        }
    } else if (s->ret < 0) {
        err_set_errno(err, ret, "mirror: an I/O error stopped the job");
    }
    return ret;
}

static void mirror_complete(struct job *job, struct err *err)
{
    struct mirror_job *s = of(job);
    if (!job_is_ready(job)) {
        err_set(err, "The active block job '%s' cannot be completed", job->id);
        return;
    }
    s->should_complete = true;
}

static bool mirror_cancel(struct job *job, bool force)
{
    struct mirror_job *s = of(job);
    /* After READY a plain cancel leaves a consistent copy: finish, no pivot. */
    if (!force && job_is_ready(job)) {
        s->soft_cancel = true;
        return true;
    }
    return false;
}

/*
 * Take the filter out (once): its parents go to `to` (the source again,
 * or the target on completion).  Drained, so no guest write is inside it.
 */
static void remove_filter(struct mirror_job *s, struct block_node *to)
{
    if (!s->filter) {
        return;
    }
    struct mirror_top *t = s->filter->opaque;
    if (!t->job) {
        return;
    }
    bnode_drained_begin(s->filter);
    bnode_drained_begin(to);
    t->job = NULL;
    bnode_replace_node(s->filter, to, NULL);
    bnode_drained_end(to);
    bnode_drained_end(s->filter);
}

static int mirror_prepare(struct job *job, struct err *err)
{
    struct mirror_job *s = of(job);
    if (s->should_complete && !s->soft_cancel) {
        int64_t src = bnode_getlength(s->source), tgt = bnode_getlength(s->target);
        if (tgt < src) {
            err_set(err, "mirror: the target (%" PRId64 " bytes) is smaller than the source "
                    "(%" PRId64 " bytes)", tgt, src);
            return -EINVAL;
        }
    }
    return 0;
}

static void mirror_commit(struct job *job)
{
    struct mirror_job *s = of(job);
    /* On completion every user of the source, through the filter, now uses the target. */
    remove_filter(s, s->should_complete && !s->soft_cancel ? s->target : s->source);
}

static void mirror_abort(struct job *job)
{
    struct mirror_job *s = of(job);
    remove_filter(s, s->source);
}

/* Undo an active commit's reopening of its base read-write. */
static void base_read_only_again(struct block_node *base)
{
    struct err err = { 0 };
    if (base->drv->reopen_rw && base->drv->reopen_rw(base, false, &err) == 0) {
        base->read_only = true;
        base->open_flags &= ~BDRV_O_RDWR;
    }
}

static void mirror_clean(struct job *job)
{
    struct mirror_job *s = of(job);
    if (s->in_drain) {
        bnode_drained_end(s->source);
        s->in_drain = false;
    }
    if (s->dirty) {
        bdrv_release_dirty_bitmap(s->dirty);
        s->dirty = NULL;
    }
    if (s->source_blk) {
        blk_unref(s->source_blk);
    }
    if (s->target_blk) {
        blk_unref(s->target_blk);
    }
    s->source_blk = s->target_blk = NULL;
    if (s->is_active_commit && s->base_was_read_only && job->ret < 0) {
        /* The base is read-only again unless it became the active layer. */
        base_read_only_again(s->target);
    }
    /*
     * The target goes before COMPLETED/CANCELLED is announced, as in QEMU:
     * a script that reacts to the event may reopen the same file at once.
     */
    if (s->filter) {
        bnode_unref(s->filter);
        s->filter = NULL;
    }
    if (s->target) {
        bnode_unref(s->target);
        s->target = NULL;
    }
}

static void mirror_free(struct job *job)
{
    struct mirror_job *s = of(job);
    if (s->filter) {
        bnode_unref(s->filter);
    }
    if (s->target) {
        bnode_unref(s->target);
    }
    bnode_unref(s->source);
    pthread_mutex_destroy(&s->ops_lock);
    block_job_release(&s->common);
}

static void mirror_query(struct job *job, json_t *info)
{
    struct mirror_job *s = of(job);
    json_object_set_new(info, "copy-mode",
                        json_string(s->copy_mode == MIRROR_COPY_WRITE_BLOCKING
                                        ? "write-blocking" : "background"));
    if (s->auto_switched) {
        json_object_set_new(info, "x-copy-mode-auto-switched", json_true());
    }
}

static const struct job_driver mirror_driver = {
    .type = "mirror",
    .instance_size = sizeof(struct mirror_job),
    .run = mirror_run,
    .complete = mirror_complete,
    .cancel = mirror_cancel,
    .prepare = mirror_prepare,
    .commit = mirror_commit,
    .abort = mirror_abort,
    .clean = mirror_clean,
    .free = mirror_free,
    .query = mirror_query,
};

static const struct job_driver commit_active_driver = {
    .type = "commit",
    .instance_size = sizeof(struct mirror_job),
    .run = mirror_run,
    .complete = mirror_complete,
    .cancel = mirror_cancel,
    .prepare = mirror_prepare,
    .commit = mirror_commit,
    .abort = mirror_abort,
    .clean = mirror_clean,
    .free = mirror_free,
    .query = mirror_query,
};

/* ---- The filter ---------------------------------------------------------- */

/*
 * A guest write in write-blocking mode: after the source, the target gets
 * the same data before the guest hears back; whole granules it covered
 * are then clean.  A failure to write the target leaves them dirty.
 */
static int coroutine_fn active_write(struct mirror_job *s, struct block_node *bs, int64_t offset,
                                     int64_t bytes, struct qiov *qiov, size_t qiov_offset,
                                     int flags, bool zeroes)
{
    struct mirror_op op;
    op_begin(s, &op, offset, bytes, true);
    int ret = zeroes ? bnode_co_pwrite_zeroes(bs->file, offset, bytes, flags)
                     : bnode_co_pwritev(bs->file, offset, bytes, qiov, qiov_offset, flags);
    if (ret == 0 && s->target_blk) {
        struct qiov part;
        int tret;
        if (zeroes) {
            tret = blk_co_pwrite_zeroes(s->target_blk, offset, bytes, flags & BDRV_REQ_MAY_UNMAP);
        } else {
            qiov_init(&part, qiov->niov);
            qiov_concat(&part, qiov, qiov_offset, bytes);
            tret = blk_co_pwritev(s->target_blk, offset, bytes, &part, 0);
            qiov_destroy(&part);
        }
        int64_t g = s->granularity;
        int64_t start = ALIGN_UP(offset, g), end = ALIGN_DOWN(offset + bytes, g);
        if (tret == 0 && end > start) {
            bdrv_reset_dirty_bitmap(s->dirty, start, end - start);
        } else if (tret < 0) {
            /* The job's own coroutine applies the error policy (it is on another thread). */
            bdrv_set_dirty_bitmap(s->dirty, offset, bytes);
            int zero = 0;
            atomic_compare_exchange_strong(&s->active_error, &zero, tret);
        }
    }
    op_end(&op);
    return ret;
}

static struct mirror_job *active_job(struct block_node *bs)
{
    struct mirror_top *t = bs->opaque;
    struct mirror_job *s = t->job;
    return s && s->copy_mode == MIRROR_COPY_WRITE_BLOCKING && s->dirty ? s : NULL;
}

static int coroutine_fn top_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                   struct qiov *qiov, size_t qiov_offset, int flags)
{
    return bnode_co_preadv(bs->file, offset, bytes, qiov, qiov_offset, flags);
}

static int coroutine_fn top_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                    struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct mirror_job *s = active_job(bs);
    if (s) {
        return active_write(s, bs, offset, bytes, qiov, qiov_offset, flags, false);
    }
    return bnode_co_pwritev(bs->file, offset, bytes, qiov, qiov_offset, flags);
}

static int coroutine_fn top_pwrite_zeroes(struct block_node *bs, int64_t offset, int64_t bytes,
                                          int flags)
{
    struct mirror_job *s = active_job(bs);
    if (s) {
        return active_write(s, bs, offset, bytes, NULL, 0, flags, true);
    }
    return bnode_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn top_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    /* The source's dirty bitmap records the discard; the copy follows. */
    return bnode_co_pdiscard(bs->file, offset, bytes);
}

static void top_refresh_limits(struct block_node *bs)
{
    const struct block_limits *f = &bs->file->bs->bl;
    bs->bl.request_alignment = f->request_alignment;
    bs->bl.min_mem_alignment = f->min_mem_alignment;
    bs->bl.opt_mem_alignment = f->opt_mem_alignment;
}

static int64_t top_getlength(struct block_node *bs)
{
    return bnode_getlength(bs->file->bs);
}

static int top_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    err_set(err, "The mirror_top driver is internal to mirror jobs");
    return -EINVAL;
}

static const struct block_driver bdrv_mirror_top = {
    .format_name = "mirror_top",
    .instance_size = sizeof(struct mirror_top),
    .is_filter = true,
    .open = top_open,
    .refresh_limits = top_refresh_limits,
    .getlength = top_getlength,
    .co_preadv = top_preadv,
    .co_pwritev = top_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .co_pwrite_zeroes = top_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK,
    .co_pdiscard = top_pdiscard,
};

BLOCK_DRIVER_REGISTER(bdrv_mirror_top)

/* ---- Starting ------------------------------------------------------------ */

static int check_params(const struct mirror_params *p, struct err *err)
{
    if (p->source == p->target) {
        err_set(err, "Can't mirror node into itself");
        return -EINVAL;
    }
    if (p->granularity && (!is_power_of_2(p->granularity) || p->granularity < 512 ||
                           p->granularity > 64 * MiB)) {
        err_set(err, "Parameter 'granularity' expects a power of 2 between 512 and 64M");
        return -EINVAL;
    }
    if (p->buf_size && p->granularity && p->buf_size < p->granularity) {
        err_set(err, "Parameter 'buf-size' must be at least the granularity");
        return -EINVAL;
    }
    int64_t src = bnode_getlength(p->source), tgt = bnode_getlength(p->target);
    if (src < 0 || tgt < 0) {
        err_set(err, "Cannot get the size of the source or the target");
        return -EIO;
    }
    if (tgt < src) {
        err_set(err, "Source and target image have different sizes");
        return -EINVAL;
    }
    if (!p->is_active_commit && bnode_chain_contains(p->source, p->target)) {
        err_set(err, "The target is in the backing chain of the source");
        return -EINVAL;
    }
    return 0;
}

struct block_job *mirror_start(const struct mirror_params *p, struct err *err)
{
    if (check_params(p, err) < 0) {
        return NULL;
    }
    bool base_was_ro = false;
    if (p->is_active_commit && p->target->read_only) {
        if (!p->target->drv->reopen_rw || p->target->drv->reopen_rw(p->target, true, err) < 0) {
            if (!err_isset(err)) {
                err_set(err, "Cannot make the base '%s' writable", bnode_describe(p->target));
            }
            return NULL;
        }
        p->target->read_only = false;
        p->target->open_flags |= BDRV_O_RDWR;
        base_was_ro = true;
    }
    struct mirror_job *s = (struct mirror_job *)block_job_create(
        p->is_active_commit ? &commit_active_driver : &mirror_driver, p->job_id, p->source,
        p->speed, p->auto_finalize, p->auto_dismiss, err);
    if (!s) {
        if (base_was_ro) {
            base_read_only_again(p->target);
        }
        return NULL;
    }
    s->source = p->source;
    s->target = p->target;
    bnode_ref(s->source);
    bnode_ref(s->target);
    s->sync = p->sync;
    s->copy_mode = p->copy_mode;
    s->is_active_commit = p->is_active_commit;
    s->target_is_zero = p->target_is_zero;
    s->base_was_read_only = base_was_ro;
    s->granularity = p->granularity ? p->granularity : MIRROR_DEFAULT_GRANULARITY;
    s->buf_size = p->buf_size ? p->buf_size : MIRROR_DEFAULT_BUF_SIZE;
    s->buf_size = MAX(s->buf_size, s->granularity);
    s->common.job.on_source_error = p->on_source_error;
    s->common.job.on_target_error = p->on_target_error;
    list_init(&s->ops);
    pthread_mutex_init(&s->ops_lock, NULL);
    co_queue_init(&s->op_done);

    /* The filter goes above the source first: every user of the source moves to it. */
    s->filter = bnode_new_filter(&bdrv_mirror_top, s->source, p->filter_node_name, err);
    if (!s->filter) {
        goto fail;
    }
    ((struct mirror_top *)s->filter->opaque)->job = s;
    bnode_drained_begin(s->source);
    bnode_replace_node(s->source, s->filter, err);
    bnode_drained_end(s->source);

    s->source_blk = block_job_backend(&s->common, s->source, false, err);
    s->target_blk = s->source_blk ? block_job_backend(&s->common, s->target, true, err) : NULL;
    if (!s->target_blk) {
        goto fail;
    }
    s->dirty = bdrv_create_dirty_bitmap(s->source, s->granularity, NULL, err);
    if (!s->dirty) {
        goto fail;
    }
    job_start(&s->common.job);
    return &s->common;

fail:
    /* Never started: abort and clean undo what was set up, and the job goes. */
    s->common.job.auto_dismiss = true;
    job_user_cancel(&s->common.job, true, NULL);
    return NULL;
}
