/* stream and intermediate commit: the backing-chain jobs; see chain.h. */
#include "blockjobs/chain.h"

#include "block/driver.h"
#include "util/log.h"

#define CHAIN_CHUNK ((int64_t)(4 * MiB))

struct block_node *bnode_find_overlay(struct block_node *bs)
{
    struct bdrv_child *c;
    list_for_each(c, &bs->parents, child_link) {
        if (c->parent && c->role == BDRV_CHILD_BACKING) {
            return c->parent;
        }
    }
    return NULL;
}

struct change_backing_co {
    struct block_node *bs;
    const char *file, *fmt;
    int ret;
};

static void change_backing_entry(void *opaque)
{
    struct change_backing_co *c = opaque;
    c->ret = c->bs->drv->co_change_backing_file(c->bs, c->file, c->fmt);
}

int bnode_write_backing_header(struct block_node *bs, const char *backing_file,
                               const char *backing_fmt, struct err *err)
{
    struct block_node *fmt_bs = bnode_skip_filters(bs);
    if (!fmt_bs->drv->co_change_backing_file) {
        err_set(err, "%s: the '%s' format cannot record a backing file", bnode_describe(fmt_bs),
                bnode_format_name(fmt_bs));
        return -ENOTSUP;
    }
    struct change_backing_co c = { fmt_bs, backing_file, backing_fmt, 0 };
    co_run_sync(change_backing_entry, &c);
    if (c.ret < 0) {
        return err_set_errno(err, c.ret, "%s: cannot write the new backing file name",
                             bnode_describe(fmt_bs));
    }
    pstrcpy(fmt_bs->backing_file, sizeof(fmt_bs->backing_file), backing_file);
    pstrcpy(fmt_bs->backing_format, sizeof(fmt_bs->backing_format), backing_fmt);
    return 0;
}

int bnode_change_backing(struct block_node *bs, struct block_node *base, const char *backing_file,
                         struct err *err)
{
    struct block_node *fmt_bs = bnode_skip_filters(bs);
    const char *file = backing_file ? backing_file : (base ? base->filename : "");
    const char *fmt = base ? bnode_format_name(bnode_skip_filters(base)) : "";

    if (!fmt_bs->drv->co_change_backing_file && !base && !fmt_bs->backing_file[0]) {
        return 0;   /* nothing to record, nothing to unlink */
    }
    int ret = bnode_write_backing_header(fmt_bs, file, fmt, err);
    if (ret < 0) {
        return ret;
    }
    bnode_drained_begin(fmt_bs);
    bnode_set_backing(fmt_bs, base);
    bnode_drained_end(fmt_bs);
    return 0;
}

/* Make a backing node writable for the job's life (commit's base). */
static int make_writable(struct block_node *bs, bool *was_ro, struct err *err)
{
    *was_ro = bs->read_only;
    if (!bs->read_only) {
        return 0;
    }
    if (!bs->drv->reopen_rw) {
        err_set(err, "Cannot make '%s' writable", bnode_describe(bs));
        return -ENOTSUP;
    }
    int ret = bs->drv->reopen_rw(bs, true, err);
    if (ret == 0) {
        bs->read_only = false;
        bs->open_flags |= BDRV_O_RDWR;
    }
    return ret;
}

static void make_read_only(struct block_node *bs)
{
    struct err err = { 0 };
    if (bs->drv->reopen_rw && bs->drv->reopen_rw(bs, false, &err) == 0) {
        bs->read_only = true;
        bs->open_flags &= ~BDRV_O_RDWR;
    }
}

/* An error in a chain job: report fails it, stop pauses it (then retry), ignore skips. */
static bool retry_after_error(struct job *job, bool is_read, int ret, int *out)
{
    enum blk_error_action a = job_error_action(job, is_read, ret);
    if (a == BLK_ERROR_ACTION_REPORT) {
        *out = ret;
        return false;
    }
    return a == BLK_ERROR_ACTION_STOP;
}

/* ---- stream ------------------------------------------------------------ */

struct stream_job {
    struct block_job common;
    struct block_node *base;
    char *backing_file;
    struct bdrv_child *child;       /* our handle on bs for copy-on-read */
};

static int coroutine_fn stream_run(struct job *job, struct err *err)
{
    struct stream_job *s = (struct stream_job *)job;
    struct block_node *bs = s->common.bs;
    struct block_node *below = bnode_backing_bs(bs);
    int64_t len = bnode_getlength(bs);

    job_progress_set_remaining(job, (uint64_t)len);
    for (int64_t off = 0; below && off < len;) {
        if (job_pause_point(job)) {
            return -ECANCELED;
        }
        int64_t n = MIN(CHAIN_CHUNK, len - off), pnum;
        int ret = bnode_co_is_allocated_above(bs, bs, true, off, n, &pnum);
        if (ret == 0) {
            /* Not in bs: is it somewhere above base? */
            ret = bnode_co_is_allocated_above(below, s->base, false, off, pnum, &pnum);
            if (ret > 0) {
                ret = bnode_co_copy_on_read(s->child, off, pnum);
                if (ret < 0) {
                    int out = 0;
                    if (retry_after_error(job, false, ret, &out)) {
                        continue;
                    }
                    if (out < 0) {
                        err_set_errno(err, out, "stream: copying at %" PRId64 " failed", off);
                        return out;
                    }
                }
            }
        }
        if (ret < 0) {
            err_set_errno(err, ret, "stream: reading the allocation at %" PRId64 " failed", off);
            return ret;
        }
        off += pnum;
        job_progress_update(job, (uint64_t)pnum);
        job_throttle(job, (uint64_t)pnum);
    }
    return 0;
}

static int stream_prepare(struct job *job, struct err *err)
{
    struct stream_job *s = (struct stream_job *)job;
    return bnode_change_backing(s->common.bs, s->base, s->backing_file, err);
}

static void stream_clean(struct job *job)
{
    struct stream_job *s = (struct stream_job *)job;
    if (s->child) {
        bnode_detach_child(s->child);
        s->child = NULL;
    }
}

static void stream_free(struct job *job)
{
    struct stream_job *s = (struct stream_job *)job;
    if (s->base) {
        bnode_unref(s->base);
    }
    free(s->backing_file);
    block_job_release(&s->common);
}

static const struct job_driver stream_driver = {
    .type = "stream",
    .instance_size = sizeof(struct stream_job),
    .run = stream_run,
    .prepare = stream_prepare,
    .clean = stream_clean,
    .free = stream_free,
};

struct block_job *stream_start(const struct stream_params *p, struct err *err)
{
    if (p->base && !bnode_chain_contains(p->bs, p->base)) {
        err_set(err, "Node '%s' is not a backing image of '%s'", p->base->node_name,
                p->bs->node_name);
        return NULL;
    }
    if (p->bs->read_only) {
        err_set(err, "Node '%s' is read-only", p->bs->node_name);
        return NULL;
    }
    struct stream_job *s = (struct stream_job *)block_job_create(
        &stream_driver, p->job_id, p->bs, p->speed, p->auto_finalize, p->auto_dismiss, err);
    if (!s) {
        return NULL;
    }
    s->base = p->base;
    if (s->base) {
        bnode_ref(s->base);
    }
    s->backing_file = p->backing_file ? xstrdup(p->backing_file) : NULL;
    s->common.job.on_source_error = p->on_error;
    s->common.job.on_target_error = p->on_error;
    s->child = bnode_root_attach(p->bs, "stream", NULL, s);
    job_start(&s->common.job);
    return &s->common;
}

/* ---- intermediate commit ----------------------------------------------- */

struct commit_job {
    struct block_job common;         /* common.bs is top */
    struct block_node *base;
    struct block_node *overlay;
    char *backing_file;
    struct block_backend *top_blk, *base_blk;
    bool base_was_ro;
};

static int coroutine_fn commit_run(struct job *job, struct err *err)
{
    struct commit_job *s = (struct commit_job *)job;
    struct block_node *top = s->common.bs;
    int64_t len = bnode_getlength(top);
    int64_t base_len = bnode_getlength(s->base);
    void *buf = blk_blockalign(s->base_blk, CHAIN_CHUNK);
    int ret = 0;

    /* The base must hold everything top shows. */
    if (base_len < len) {
        ret = blk_co_truncate(s->base_blk, len, false, PREALLOC_MODE_OFF, 0, err);
        if (ret < 0) {
            free(buf);
            return ret;
        }
    }
    job_progress_set_remaining(job, (uint64_t)len);
    for (int64_t off = 0; off < len;) {
        if (job_pause_point(job)) {
            ret = -ECANCELED;
            break;
        }
        int64_t n = MIN(CHAIN_CHUNK, len - off), pnum;
        ret = bnode_co_is_allocated_above(top, s->base, false, off, n, &pnum);
        if (ret < 0) {
            err_set_errno(err, ret, "commit: reading the allocation at %" PRId64 " failed", off);
            break;
        }
        if (ret > 0) {
            bool is_read = true;
            ret = blk_co_pread(s->top_blk, off, pnum, buf, 0);
            if (ret == 0) {
                is_read = false;
                ret = blk_co_pwrite(s->base_blk, off, pnum, buf, 0);
            }
            if (ret < 0) {
                int out = 0;
                if (retry_after_error(job, is_read, ret, &out)) {
                    continue;
                }
                if (out < 0) {
                    err_set_errno(err, out, "commit: copying at %" PRId64 " failed", off);
                    ret = out;
                    break;
                }
            }
        }
        ret = 0;
        off += pnum;
        job_progress_update(job, (uint64_t)pnum);
        job_throttle(job, (uint64_t)pnum);
    }
    if (ret == 0) {
        ret = blk_co_flush(s->base_blk);
    }
    free(buf);
    return ret;
}

static int commit_prepare(struct job *job, struct err *err)
{
    struct commit_job *s = (struct commit_job *)job;
    /* The layer above top now reads from base; top and what lay between go. */
    return bnode_change_backing(s->overlay, s->base, s->backing_file, err);
}

static void commit_clean(struct job *job)
{
    struct commit_job *s = (struct commit_job *)job;
    if (s->top_blk) {
        blk_unref(s->top_blk);
        s->top_blk = NULL;
    }
    if (s->base_blk) {
        blk_unref(s->base_blk);
        s->base_blk = NULL;
    }
    if (s->base_was_ro) {
        make_read_only(s->base);
    }
}

static void commit_free(struct job *job)
{
    struct commit_job *s = (struct commit_job *)job;
    bnode_unref(s->base);
    if (s->overlay) {
        bnode_unref(s->overlay);
    }
    free(s->backing_file);
    block_job_release(&s->common);
}

static const struct job_driver commit_driver = {
    .type = "commit",
    .instance_size = sizeof(struct commit_job),
    .run = commit_run,
    .prepare = commit_prepare,
    .clean = commit_clean,
    .free = commit_free,
};

struct block_job *commit_start(const struct commit_params *p, struct err *err)
{
    struct block_node *overlay = bnode_find_overlay(p->top);
    if (!overlay) {
        err_set(err, "Node '%s' is the active layer: commit it with an active commit",
                p->top->node_name);
        return NULL;
    }
    if (!bnode_chain_contains(p->top, p->base)) {
        err_set(err, "Base '%s' is not in the backing chain of top '%s'", p->base->node_name,
                p->top->node_name);
        return NULL;
    }
    bool was_ro;
    if (make_writable(p->base, &was_ro, err) < 0) {
        return NULL;
    }
    struct commit_job *s = (struct commit_job *)block_job_create(
        &commit_driver, p->job_id, p->top, p->speed, p->auto_finalize, p->auto_dismiss, err);
    if (!s) {
        if (was_ro) {
            make_read_only(p->base);
        }
        return NULL;
    }
    s->base = p->base;
    bnode_ref(s->base);
    s->overlay = overlay;
    bnode_ref(overlay);
    s->base_was_ro = was_ro;
    s->backing_file = p->backing_file ? xstrdup(p->backing_file) : NULL;
    s->common.job.on_source_error = p->on_error;
    s->common.job.on_target_error = p->on_error;
    s->top_blk = block_job_backend(&s->common, p->top, false, err);
    s->base_blk = s->top_blk ? block_job_backend(&s->common, p->base, true, err) : NULL;
    if (!s->base_blk) {
        s->common.job.auto_dismiss = true;
        job_user_cancel(&s->common.job, true, NULL);
        return NULL;
    }
    job_start(&s->common.job);
    return &s->common;
}
