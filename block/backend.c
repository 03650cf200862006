/* Block backends: the front of the block layer. */
#include "block/backend.h"

#include <stdio.h>

#include "block/driver.h"
#include "util/aio.h"
#include "util/log.h"

struct block_backend {
    char *name;
    char *dev_name;
    int refcnt;
    struct bdrv_child *root;
    bool writethrough;
    bool allow_write_beyond_eof;
    bool disable_queuing;

    atomic_uint in_flight;
    atomic_int quiesce_counter;
    pthread_mutex_t queue_lock;
    struct co_queue queued;          /* requests held while drained */
    struct co_queue stopped;         /* requests held after an error with action stop */
    unsigned stop_gen;               /* bumped when they are released */
    bool stop_retry;                 /* how they were released */

    struct blk_stats stats;
    enum blk_error_policy on_read_error, on_write_error;
    _Atomic int iostatus;
    struct throttle_group_member *tgm;
    struct list_node link;
};

static struct list_node backends = LIST_HEAD_INIT(backends);
static struct blk_error_listener error_listener;

/* ---- Lifetime ---------------------------------------------------------- */

struct block_backend *blk_new(const char *name)
{
    struct block_backend *blk = xzalloc(sizeof(*blk));
    blk->name = xstrdup(name ? name : "");
    blk->refcnt = 1;
    pthread_mutex_init(&blk->queue_lock, NULL);
    co_queue_init(&blk->queued);
    co_queue_init(&blk->stopped);
    blk->on_read_error = BLOCKDEV_ON_ERROR_REPORT;
    blk->on_write_error = BLOCKDEV_ON_ERROR_ENOSPC;
    list_add_tail(&backends, &blk->link);
    return blk;
}

struct block_backend *blk_new_open(const char *name, const char *filename, json_t *options,
                                   int flags, struct err *err)
{
    struct block_node *bs = bnode_open(filename, options, flags, err);
    if (!bs) {
        return NULL;
    }
    struct block_backend *blk = blk_new(name);
    blk_insert_node(blk, bs, err);
    bnode_unref(bs);
    return blk;
}

void blk_ref(struct block_backend *blk)
{
    blk->refcnt++;
}

void blk_unref(struct block_backend *blk)
{
    if (!blk || --blk->refcnt > 0) {
        return;
    }
    if (blk->root) {
        blk_drain(blk);
        blk_remove_node(blk);
    }
    list_del(&blk->link);
    pthread_mutex_destroy(&blk->queue_lock);
    free(blk->name);
    free(blk->dev_name);
    free(blk);
}

/* ---- The root edge ----------------------------------------------------- */

static void root_drained_begin(struct bdrv_child *c)
{
    struct block_backend *blk = c->opaque;
    atomic_fetch_add(&blk->quiesce_counter, 1);
}

static void root_drained_end(struct bdrv_child *c)
{
    struct block_backend *blk = c->opaque;
    if (atomic_fetch_sub(&blk->quiesce_counter, 1) == 1) {
        pthread_mutex_lock(&blk->queue_lock);
        co_queue_restart_all(&blk->queued);
        pthread_mutex_unlock(&blk->queue_lock);
    }
}

static bool root_drained_poll(struct bdrv_child *c)
{
    struct block_backend *blk = c->opaque;
    return atomic_load(&blk->in_flight) > 0;
}

static const char *root_describe(struct bdrv_child *c)
{
    struct block_backend *blk = c->opaque;
    return blk->name[0] ? blk->name : "an anonymous block backend";
}

static const struct bdrv_child_class root_class = {
    .drained_begin = root_drained_begin,
    .drained_end = root_drained_end,
    .drained_poll = root_drained_poll,
    .describe = root_describe,
};

int blk_insert_node(struct block_backend *blk, struct block_node *bs, struct err *err)
{
    if (blk->root) {
        err_set(err, "block backend '%s' already has a node", blk->name);
        return -EBUSY;
    }
    blk->root = bnode_root_attach(bs, "root", &root_class, blk);
    return 0;
}

void blk_remove_node(struct block_backend *blk)
{
    struct bdrv_child *root = blk->root;
    if (!root) {
        return;
    }
    blk->root = NULL;
    bnode_detach_child(root);
}

struct block_node *blk_node(const struct block_backend *blk)
{
    return blk->root ? blk->root->bs : NULL;
}

struct bdrv_child *blk_root(const struct block_backend *blk)
{
    return blk->root;
}

const char *blk_name(const struct block_backend *blk)
{
    return blk->name;
}

struct block_backend *blk_find(const char *name)
{
    struct block_backend *blk;
    if (!name || !*name) {
        return NULL;
    }
    list_for_each(blk, &backends, link) {
        if (!strcmp(blk->name, name)) {
            return blk;
        }
    }
    return NULL;
}

int blk_foreach(int (*fn)(struct block_backend *blk, void *opaque), void *opaque)
{
    struct block_backend *blk, *tmp;
    list_for_each_safe(blk, tmp, &backends, link) {
        int ret = fn(blk, opaque);
        if (ret) {
            return ret;
        }
    }
    return 0;
}

/* ---- Settings ---------------------------------------------------------- */

void blk_set_write_cache(struct block_backend *blk, bool enable)
{
    blk->writethrough = !enable;
}

bool blk_write_cache_enabled(const struct block_backend *blk)
{
    return !blk->writethrough;
}

void blk_set_allow_write_beyond_eof(struct block_backend *blk, bool allow)
{
    blk->allow_write_beyond_eof = allow;
}

void blk_set_disable_request_queuing(struct block_backend *blk, bool disable)
{
    blk->disable_queuing = disable;
}

void blk_set_dev_name(struct block_backend *blk, const char *dev)
{
    free(blk->dev_name);
    blk->dev_name = dev ? xstrdup(dev) : NULL;
}

const char *blk_dev_name(const struct block_backend *blk)
{
    return blk->dev_name;
}

struct blk_stats *blk_get_stats(struct block_backend *blk)
{
    return &blk->stats;
}

void blk_set_throttle(struct block_backend *blk, struct throttle_group_member *tgm)
{
    blk->tgm = tgm;
}

struct throttle_group_member *blk_get_throttle(const struct block_backend *blk)
{
    return blk->tgm;
}

/* ---- Errors ------------------------------------------------------------ */

int blk_error_policy_parse(const char *s, enum blk_error_policy *out)
{
    static const char *const names[] = { "report", "ignore", "enospc", "stop", "auto" };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!strcmp(s, names[i])) {
            *out = (enum blk_error_policy)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *blk_error_action_name(enum blk_error_action a)
{
    switch (a) {
    case BLK_ERROR_ACTION_REPORT:
        return "report";
    case BLK_ERROR_ACTION_IGNORE:
        return "ignore";
    case BLK_ERROR_ACTION_STOP:
        return "stop";
    }
    return "report";
}

void blk_set_error_listener(const struct blk_error_listener *l)
{
    error_listener = *l;
}

void blk_set_on_error(struct block_backend *blk, enum blk_error_policy rerror,
                      enum blk_error_policy werror)
{
    blk->on_read_error = rerror == BLOCKDEV_ON_ERROR_AUTO ? BLOCKDEV_ON_ERROR_REPORT : rerror;
    blk->on_write_error = werror == BLOCKDEV_ON_ERROR_AUTO ? BLOCKDEV_ON_ERROR_ENOSPC : werror;
}

enum blk_error_action blk_get_error_action(struct block_backend *blk, bool is_read, int error)
{
    enum blk_error_policy p = is_read ? blk->on_read_error : blk->on_write_error;
    int e = error < 0 ? -error : error;

    switch (p) {
    case BLOCKDEV_ON_ERROR_ENOSPC:
        return e == ENOSPC ? BLK_ERROR_ACTION_STOP : BLK_ERROR_ACTION_REPORT;
    case BLOCKDEV_ON_ERROR_STOP:
        return BLK_ERROR_ACTION_STOP;
    case BLOCKDEV_ON_ERROR_IGNORE:
        return BLK_ERROR_ACTION_IGNORE;
    case BLOCKDEV_ON_ERROR_REPORT:
    case BLOCKDEV_ON_ERROR_AUTO:
        break;
    }
    return BLK_ERROR_ACTION_REPORT;
}

void blk_error_action(struct block_backend *blk, enum blk_error_action action, bool is_read,
                      int error)
{
    int e = error < 0 ? -error : error;
    if (action != BLK_ERROR_ACTION_IGNORE) {
        int expected = BLK_IOSTATUS_OK;
        atomic_compare_exchange_strong(&blk->iostatus, &expected,
                                       e == ENOSPC ? BLK_IOSTATUS_NOSPACE : BLK_IOSTATUS_FAILED);
    }
    if (error_listener.io_error) {
        error_listener.io_error(blk, action, is_read, e, error_listener.opaque);
    }
}

int coroutine_fn blk_co_wait_for_resume(struct block_backend *blk)
{
    pthread_mutex_lock(&blk->queue_lock);
    unsigned gen = blk->stop_gen;
    while (blk->stop_gen == gen) {
        co_queue_wait(&blk->stopped, &blk->queue_lock);
    }
    bool retry = blk->stop_retry;
    pthread_mutex_unlock(&blk->queue_lock);
    return retry ? 0 : -ECANCELED;
}

void blk_resume_stopped(struct block_backend *blk, bool retry)
{
    pthread_mutex_lock(&blk->queue_lock);
    if (!co_queue_empty(&blk->stopped)) {
        blk->stop_gen++;
        blk->stop_retry = retry;
        co_queue_restart_all(&blk->stopped);
        if (retry) {
            blk_iostatus_reset(blk);
        }
    }
    pthread_mutex_unlock(&blk->queue_lock);
}

void blk_resume_all_stopped(void)
{
    struct block_backend *blk;
    list_for_each(blk, &backends, link) {
        blk_resume_stopped(blk, true);
    }
}

enum blk_iostatus blk_iostatus(const struct block_backend *blk)
{
    return (enum blk_iostatus)atomic_load((_Atomic int *)&blk->iostatus);
}

void blk_iostatus_reset(struct block_backend *blk)
{
    atomic_store(&blk->iostatus, BLK_IOSTATUS_OK);
}

/* ---- Requests ---------------------------------------------------------- */

static void blk_inc_in_flight(struct block_backend *blk)
{
    atomic_fetch_add(&blk->in_flight, 1);
}

static void blk_dec_in_flight(struct block_backend *blk)
{
    if (atomic_fetch_sub(&blk->in_flight, 1) == 1) {
        aio_wait_kick();
    }
}

/* Hold a new request while the graph below is drained. */
static void coroutine_fn wait_while_drained(struct block_backend *blk)
{
    if (likely(!atomic_load(&blk->quiesce_counter)) || blk->disable_queuing) {
        return;
    }
    pthread_mutex_lock(&blk->queue_lock);
    while (atomic_load(&blk->quiesce_counter)) {
        blk_dec_in_flight(blk);
        co_queue_wait(&blk->queued, &blk->queue_lock);
        blk_inc_in_flight(blk);
    }
    pthread_mutex_unlock(&blk->queue_lock);
}

static int check_range(struct block_backend *blk, int64_t offset, int64_t bytes)
{
    if (!blk->root) {
        return -ENOMEDIUM;
    }
    if (offset < 0 || bytes < 0 || bytes > BDRV_REQUEST_MAX_BYTES) {
        return -EIO;
    }
    if (!blk->allow_write_beyond_eof) {
        int64_t len = bnode_getlength(blk->root->bs);
        if (len < 0) {
            return (int)len;
        }
        if (offset > len || len - offset < bytes) {
            return -EIO;
        }
    }
    return 0;
}

int coroutine_fn blk_co_preadv(struct block_backend *blk, int64_t offset, int64_t bytes,
                               struct qiov *qiov, int flags)
{
    blk_inc_in_flight(blk);
    wait_while_drained(blk);
    int ret = check_range(blk, offset, bytes);
    if (ret < 0) {
        blk_stats_invalid(&blk->stats, BLK_ACCT_READ);
        blk_dec_in_flight(blk);
        return ret;
    }
    int64_t start = clock_ns();
    ret = bnode_co_preadv(blk->root, offset, bytes, qiov, 0, flags);
    blk_stats_account(&blk->stats, BLK_ACCT_READ, bytes, start, ret);
    blk_dec_in_flight(blk);
    return ret;
}

static void note_write(struct block_backend *blk, int64_t end)
{
    int64_t high = atomic_load(&blk->stats.wr_highest_offset);
    while (end > high &&
           !atomic_compare_exchange_weak(&blk->stats.wr_highest_offset, &high, end)) {
    }
}

int coroutine_fn blk_co_pwritev(struct block_backend *blk, int64_t offset, int64_t bytes,
                                struct qiov *qiov, int flags)
{
    blk_inc_in_flight(blk);
    wait_while_drained(blk);
    int ret = check_range(blk, offset, bytes);
    if (ret < 0) {
        blk_stats_invalid(&blk->stats, BLK_ACCT_WRITE);
        blk_dec_in_flight(blk);
        return ret;
    }
    if (blk->writethrough) {
        flags |= BDRV_REQ_FUA;
    }
    int64_t start = clock_ns();
    ret = bnode_co_pwritev(blk->root, offset, bytes, qiov, 0, flags);
    blk_stats_account(&blk->stats, BLK_ACCT_WRITE, bytes, start, ret);
    if (ret == 0) {
        note_write(blk, offset + bytes);
    }
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_pwrite_zeroes(struct block_backend *blk, int64_t offset,
                                      int64_t bytes, int flags)
{
    blk_inc_in_flight(blk);
    wait_while_drained(blk);
    int ret = check_range(blk, offset, bytes);
    if (ret < 0) {
        blk_stats_invalid(&blk->stats, BLK_ACCT_WRITE);
        blk_dec_in_flight(blk);
        return ret;
    }
    if (blk->writethrough) {
        flags |= BDRV_REQ_FUA;
    }
    int64_t start = clock_ns();
    ret = bnode_co_pwrite_zeroes(blk->root, offset, bytes, flags);
    blk_stats_account(&blk->stats, BLK_ACCT_WRITE, bytes, start, ret);
    if (ret == 0) {
        note_write(blk, offset + bytes);
    }
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_pdiscard(struct block_backend *blk, int64_t offset, int64_t bytes)
{
    blk_inc_in_flight(blk);
    wait_while_drained(blk);
    int ret = check_range(blk, offset, bytes);
    if (ret < 0) {
        blk_stats_invalid(&blk->stats, BLK_ACCT_UNMAP);
        blk_dec_in_flight(blk);
        return ret;
    }
    int64_t start = clock_ns();
    ret = bnode_co_pdiscard(blk->root, offset, bytes);
    blk_stats_account(&blk->stats, BLK_ACCT_UNMAP, bytes, start, ret);
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_flush(struct block_backend *blk)
{
    blk_inc_in_flight(blk);
    wait_while_drained(blk);
    if (!blk->root) {
        blk_dec_in_flight(blk);
        return -ENOMEDIUM;
    }
    int64_t start = clock_ns();
    int ret = bnode_co_flush(blk->root->bs);
    blk_stats_account(&blk->stats, BLK_ACCT_FLUSH, 0, start, ret);
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_truncate(struct block_backend *blk, int64_t offset, bool exact,
                                 enum prealloc_mode prealloc, int flags, struct err *err)
{
    if (!blk->root) {
        err_set(err, "No medium inserted");
        return -ENOMEDIUM;
    }
    blk_inc_in_flight(blk);
    wait_while_drained(blk);
    int ret = bnode_co_truncate(blk->root, offset, exact, prealloc, flags, err);
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_pread(struct block_backend *blk, int64_t offset, int64_t bytes,
                              void *buf, int flags)
{
    struct qiov q;
    qiov_init_buf(&q, buf, bytes);
    return blk_co_preadv(blk, offset, bytes, &q, flags);
}

int coroutine_fn blk_co_pwrite(struct block_backend *blk, int64_t offset, int64_t bytes,
                               const void *buf, int flags)
{
    struct qiov q;
    qiov_init_buf(&q, (void *)buf, bytes);
    return blk_co_pwritev(blk, offset, bytes, &q, flags);
}

int64_t blk_getlength(struct block_backend *blk)
{
    return blk->root ? bnode_getlength(blk->root->bs) : -ENOMEDIUM;
}

void *blk_blockalign(struct block_backend *blk, size_t size)
{
    if (blk->root) {
        return bnode_blockalign(blk->root->bs, size);
    }
    return xmemalign(4096, size ? size : 1);
}

void blk_drain(struct block_backend *blk)
{
    if (blk->root) {
        bnode_drained_begin(blk->root->bs);
        bnode_drained_end(blk->root->bs);
    }
    AIO_WAIT_WHILE(atomic_load(&blk->in_flight) > 0);
}

/* ---- Synchronous forms ------------------------------------------------- */

enum sync_op { SYNC_READ, SYNC_WRITE, SYNC_ZEROES, SYNC_DISCARD, SYNC_FLUSH, SYNC_TRUNCATE };

struct blk_sync {
    struct block_backend *blk;
    enum sync_op op;
    int64_t offset, bytes;
    void *buf;
    int flags;
    bool exact;
    enum prealloc_mode prealloc;
    struct err *err;
    int ret;
};

static void blk_sync_entry(void *opaque)
{
    struct blk_sync *s = opaque;
    switch (s->op) {
    case SYNC_READ:
        s->ret = blk_co_pread(s->blk, s->offset, s->bytes, s->buf, s->flags);
        break;
    case SYNC_WRITE:
        s->ret = blk_co_pwrite(s->blk, s->offset, s->bytes, s->buf, s->flags);
        break;
    case SYNC_ZEROES:
        s->ret = blk_co_pwrite_zeroes(s->blk, s->offset, s->bytes, s->flags);
        break;
    case SYNC_DISCARD:
        s->ret = blk_co_pdiscard(s->blk, s->offset, s->bytes);
        break;
    case SYNC_FLUSH:
        s->ret = blk_co_flush(s->blk);
        break;
    case SYNC_TRUNCATE:
        s->ret = blk_co_truncate(s->blk, s->offset, s->exact, s->prealloc, s->flags, s->err);
        break;
    }
}

static int blk_sync(struct blk_sync *s)
{
    co_run_sync(blk_sync_entry, s);
    return s->ret;
}

int blk_pread(struct block_backend *blk, int64_t offset, int64_t bytes, void *buf, int flags)
{
    struct blk_sync s = { .blk = blk, .op = SYNC_READ, .offset = offset, .bytes = bytes,
                          .buf = buf, .flags = flags };
    return blk_sync(&s);
}

int blk_pwrite(struct block_backend *blk, int64_t offset, int64_t bytes, const void *buf,
               int flags)
{
    struct blk_sync s = { .blk = blk, .op = SYNC_WRITE, .offset = offset, .bytes = bytes,
                          .buf = (void *)buf, .flags = flags };
    return blk_sync(&s);
}

int blk_pwrite_zeroes(struct block_backend *blk, int64_t offset, int64_t bytes, int flags)
{
    struct blk_sync s = { .blk = blk, .op = SYNC_ZEROES, .offset = offset, .bytes = bytes,
                          .flags = flags };
    return blk_sync(&s);
}

int blk_pdiscard(struct block_backend *blk, int64_t offset, int64_t bytes)
{
    struct blk_sync s = { .blk = blk, .op = SYNC_DISCARD, .offset = offset, .bytes = bytes };
    return blk_sync(&s);
}

int blk_flush(struct block_backend *blk)
{
    struct blk_sync s = { .blk = blk, .op = SYNC_FLUSH };
    return blk_sync(&s);
}

int blk_truncate(struct block_backend *blk, int64_t offset, bool exact,
                 enum prealloc_mode prealloc, int flags, struct err *err)
{
    struct blk_sync s = { .blk = blk, .op = SYNC_TRUNCATE, .offset = offset, .exact = exact,
                          .prealloc = prealloc, .flags = flags, .err = err };
    return blk_sync(&s);
}
