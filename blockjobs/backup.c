/* The backup job: copy-before-write plus a background copy; see backup.h. */
#include "blockjobs/backup.h"

#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "util/hbitmap.h"
#include "util/log.h"

#define BACKUP_CLUSTER_DEFAULT (64 * KiB)

struct backup_job {
    struct block_job common;
    struct block_node *source, *target;
    struct block_backend *source_blk, *target_blk;
    struct bdrv_write_notifier before_write;
    bool notifier_on;
    enum backup_sync sync;
    struct bdrv_dirty_bitmap *user_bitmap;
    int64_t cluster;
    int64_t len;

    /*
     * Clusters still to copy, and those being copied now; guest writes
     * come from iothreads, so both are under lock.
     */
    pthread_mutex_t lock;
    struct hbitmap *todo;
    struct list_node in_flight;
    _Atomic int cbw_error;           /* a copy-before-write failed */
};

struct backup_op {
    struct list_node link;
    int64_t cluster;
    struct co_queue waiters;
};

int backup_sync_parse(const char *s, enum backup_sync *out)
{
    if (!strcmp(s, "full")) {
        *out = BACKUP_SYNC_FULL;
    } else if (!strcmp(s, "top")) {
        *out = BACKUP_SYNC_TOP;
    } else if (!strcmp(s, "incremental") || !strcmp(s, "bitmap")) {
        *out = BACKUP_SYNC_INCREMENTAL;
    } else if (!strcmp(s, "none")) {
        *out = BACKUP_SYNC_NONE;
    } else {
        return -EINVAL;
    }
    return 0;
}

/*
 * Copy one cluster unless it is copied already; waits for a copy of it
 * that is under way.  Any thread.  0, or -errno (the cluster stays to do;
 * *is_read says whether reading the source failed).
 */
static int coroutine_fn copy_cluster(struct backup_job *s, int64_t cluster, bool *is_read)
{
    struct backup_op *op;
    int64_t offset = cluster * s->cluster;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        bool busy = false;
        list_for_each(op, &s->in_flight, link) {
            if (op->cluster == cluster) {
                co_queue_wait(&op->waiters, &s->lock);
                busy = true;
                break;
            }
        }
        if (!busy) {
            break;
        }
    }
    if (!hbitmap_get(s->todo, (uint64_t)offset)) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    hbitmap_reset(s->todo, (uint64_t)offset, (uint64_t)s->cluster);
    struct backup_op mine = { .cluster = cluster };
    co_queue_init(&mine.waiters);
    list_add_tail(&s->in_flight, &mine.link);
    pthread_mutex_unlock(&s->lock);

    int64_t bytes = MIN(s->cluster, s->len - offset);
    int ret;
    *is_read = false;
    int64_t pnum;
    int status = bnode_co_block_status_above(s->source, NULL, true, offset, bytes, &pnum, NULL,
                                             NULL, NULL);
    if (status >= 0 && (status & BDRV_BLOCK_ZERO) && pnum >= bytes) {
        ret = blk_co_pwrite_zeroes(s->target_blk, offset, bytes, BDRV_REQ_MAY_UNMAP);
    } else {
        void *buf = blk_blockalign(s->target_blk, bytes);
        /*
         * Inside a guest's write (copy-before-write) that may itself be a
         * serialising read-modify-write of this range: do not wait for it.
         */
        ret = blk_co_pread(s->source_blk, offset, bytes, buf, BDRV_REQ_NO_SERIALISING);
        if (ret == 0) {
            ret = blk_co_pwrite(s->target_blk, offset, bytes, buf, 0);
        } else {
            *is_read = true;
        }
        free(buf);
    }

    pthread_mutex_lock(&s->lock);
    if (ret != 0) {
        hbitmap_set(s->todo, (uint64_t)offset, (uint64_t)s->cluster);
    }
    list_del(&mine.link);
    co_queue_restart_all(&mine.waiters);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Copy-before-write: before a guest write lands, its clusters' old data goes out. */
static int coroutine_fn backup_before_write(struct bdrv_write_notifier *n, struct block_node *bs,
                                            int64_t offset, int64_t bytes, int flags)
{
    struct backup_job *s = container_of(n, struct backup_job, before_write);
    int64_t first = offset / s->cluster, last = (offset + bytes - 1) / s->cluster;

    for (int64_t c = first; c <= last; c++) {
        bool is_read;
        int ret = copy_cluster(s, c, &is_read);
        if (ret < 0) {
            /*
             * The guest's write must not destroy data we could not save:
             * fail it, and let the job see the error.
             */
            int zero = 0;
            atomic_compare_exchange_strong(&s->cbw_error, &zero, ret);
            return ret;
        }
    }
    return 0;
}

static int coroutine_fn init_todo(struct backup_job *s)
{
    switch (s->sync) {
    case BACKUP_SYNC_FULL:
        hbitmap_set(s->todo, 0, (uint64_t)s->len);
        return 0;
    case BACKUP_SYNC_NONE:
        return 0;
    case BACKUP_SYNC_INCREMENTAL: {
        int64_t off = 0, start, bytes;
        while (bdrv_dirty_bitmap_next_dirty_area(s->user_bitmap, off, s->len, s->len, &start,
                                                 &bytes)) {
            hbitmap_set(s->todo, (uint64_t)start, (uint64_t)bytes);
            off = start + bytes;
        }
        return 0;
    }
    case BACKUP_SYNC_TOP: {
        struct block_node *base = bnode_backing_bs(s->source);
        for (int64_t off = 0; off < s->len;) {
            int64_t pnum;
            int ret = bnode_co_is_allocated_above(s->source, base, false, off, s->len - off,
                                                  &pnum);
            if (ret < 0) {
                return ret;
            }
            if (ret) {
                hbitmap_set(s->todo, (uint64_t)off, (uint64_t)pnum);
            }
            off += pnum;
        }
        return 0;
    }
    }
    return 0;
}

static int coroutine_fn backup_run(struct job *job, struct err *err)
{
    struct backup_job *s = (struct backup_job *)job;
    int ret = init_todo(s);
    if (ret < 0) {
        err_set_errno(err, ret, "backup: cannot read the source's allocation");
        return ret;
    }
    pthread_mutex_lock(&s->lock);
    job_progress_set_remaining(job, hbitmap_count(s->todo));
    pthread_mutex_unlock(&s->lock);

    for (;;) {
        if (job_pause_point(job)) {
            return -ECANCELED;
        }
        int cbw = atomic_exchange(&s->cbw_error, 0);
        if (cbw < 0 && job_error_action(job, false, cbw) == BLK_ERROR_ACTION_REPORT) {
            err_set_errno(err, cbw, "backup: copy-before-write failed");
            return cbw;
        }
        pthread_mutex_lock(&s->lock);
        int64_t next = hbitmap_next_dirty(s->todo, 0, (uint64_t)s->len);
        uint64_t left = hbitmap_count(s->todo);
        pthread_mutex_unlock(&s->lock);
        if (next < 0) {
            if (!list_empty(&s->in_flight)) {
                job_sleep_ns(job, 1000000);
                continue;
            }
            break;
        }
        job_progress_set_remaining(job, left);
        bool is_read;
        ret = copy_cluster(s, next / s->cluster, &is_read);
        if (ret < 0) {
            enum blk_error_action a = job_error_action(job, is_read, ret);
            if (a == BLK_ERROR_ACTION_REPORT) {
                err_set_errno(err, ret, "backup: copying at %" PRId64 " failed", next);
                return ret;
            }
            if (a == BLK_ERROR_ACTION_IGNORE) {
                pthread_mutex_lock(&s->lock);
                hbitmap_reset(s->todo, (uint64_t)next, (uint64_t)s->cluster);
                pthread_mutex_unlock(&s->lock);
            }
            continue;
        }
        job_progress_update(job, (uint64_t)s->cluster);
        job_throttle(job, (uint64_t)s->cluster);
    }
    return blk_co_flush(s->target_blk);
}

static void remove_notifier(struct backup_job *s)
{
    if (s->notifier_on) {
        bnode_drained_begin(s->source);
        bnode_remove_write_notifier(&s->before_write);
        bnode_drained_end(s->source);
        s->notifier_on = false;
    }
}

static void backup_commit(struct job *job)
{
    struct backup_job *s = (struct backup_job *)job;
    remove_notifier(s);
    if (s->user_bitmap) {
        /* From now on the bitmap holds what changed since this backup. */
        bdrv_dirty_bitmap_abdicate(s->user_bitmap);
    }
}

static void backup_abort(struct job *job)
{
    struct backup_job *s = (struct backup_job *)job;
    remove_notifier(s);
    if (s->user_bitmap) {
        bdrv_dirty_bitmap_reclaim(s->user_bitmap);
    }
}

static void backup_clean(struct job *job)
{
    struct backup_job *s = (struct backup_job *)job;
    if (s->source_blk) {
        blk_unref(s->source_blk);
    }
    if (s->target_blk) {
        blk_unref(s->target_blk);
    }
    s->source_blk = s->target_blk = NULL;
    /* Released before the job's final event, so the target file can be reopened then. */
    if (s->target) {
        bnode_unref(s->target);
        s->target = NULL;
    }
}

static void backup_free(struct job *job)
{
    struct backup_job *s = (struct backup_job *)job;
    hbitmap_free(s->todo);
    pthread_mutex_destroy(&s->lock);
    if (s->target) {
        bnode_unref(s->target);
    }
    bnode_unref(s->source);
    block_job_release(&s->common);
}

static const struct job_driver backup_driver = {
    .type = "backup",
    .instance_size = sizeof(struct backup_job),
    .run = backup_run,
    .commit = backup_commit,
    .abort = backup_abort,
    .clean = backup_clean,
    .free = backup_free,
};

struct block_job *backup_start(const struct backup_params *p, struct err *err)
{
    if (p->source == p->target) {
        err_set(err, "Source and target cannot be the same");
        return NULL;
    }
    int64_t len = bnode_getlength(p->source), tlen = bnode_getlength(p->target);
    if (len < 0 || tlen < 0) {
        err_set(err, "Cannot get the size of the source or the target");
        return NULL;
    }
    if (tlen < len) {
        err_set(err, "The target is smaller than the source");
        return NULL;
    }
    if (p->sync == BACKUP_SYNC_INCREMENTAL && !p->bitmap) {
        err_set(err, "must provide a valid bitmap name for 'incremental' sync mode");
        return NULL;
    }
    if (p->bitmap && bdrv_dirty_bitmap_check_user(p->bitmap, err) < 0) {
        return NULL;
    }
    struct backup_job *s = (struct backup_job *)block_job_create(
        &backup_driver, p->job_id, p->source, p->speed, p->auto_finalize, p->auto_dismiss, err);
    if (!s) {
        return NULL;
    }
    s->source = p->source;
    s->target = p->target;
    bnode_ref(s->source);
    bnode_ref(s->target);
    s->sync = p->sync;
    s->len = len;
    s->cluster = BACKUP_CLUSTER_DEFAULT;
    if (p->bitmap) {
        s->cluster = MAX(s->cluster, (int64_t)p->bitmap->granularity);
    }
    s->todo = hbitmap_new((uint64_t)len, (unsigned)ctz64((uint64_t)s->cluster));
    pthread_mutex_init(&s->lock, NULL);
    list_init(&s->in_flight);
    s->common.job.on_source_error = p->on_source_error;
    s->common.job.on_target_error = p->on_target_error;
    s->source_blk = block_job_backend(&s->common, s->source, false, err);
    s->target_blk = s->source_blk ? block_job_backend(&s->common, s->target, true, err) : NULL;
    if (!s->target_blk) {
        s->common.job.auto_dismiss = true;
        job_user_cancel(&s->common.job, true, NULL);
        return NULL;
    }
    if (p->bitmap) {
        s->user_bitmap = p->bitmap;
        if (bdrv_dirty_bitmap_create_successor(p->bitmap, err) < 0) {
            s->user_bitmap = NULL;
            s->common.job.auto_dismiss = true;
            job_user_cancel(&s->common.job, true, NULL);
            return NULL;
        }
    }
    /* The point in time: from here on every guest write saves the old data first. */
    s->before_write.before_write = backup_before_write;
    bnode_drained_begin(s->source);
    bnode_add_write_notifier(s->source, &s->before_write);
    s->notifier_on = true;
    bnode_drained_end(s->source);
    job_start(&s->common.job);
    return &s->common;
}
