/*
 * Block backends: what a device, an export, a job or a tool holds to do
 * I/O on a node graph.  The backend adds what belongs to the user of a
 * disk rather than to the disk: the write cache setting (writethrough
 * turns every write into FUA), bounds checks against the disk size,
 * accounting, the error policy, queuing of new requests while the graph
 * below is drained, and (later) throttling.
 */
#ifndef SPINDLE_BLOCK_BACKEND_H
#define SPINDLE_BLOCK_BACKEND_H

#include "block/block.h"
#include "block/stats.h"

struct block_backend;
struct throttle_group_member;

/* rerror / werror: what to do when a request fails. */
enum blk_error_policy {
    BLOCKDEV_ON_ERROR_REPORT,   /* fail the request */
    BLOCKDEV_ON_ERROR_IGNORE,   /* pretend it succeeded */
    BLOCKDEV_ON_ERROR_ENOSPC,   /* stop on ENOSPC, report anything else */
    BLOCKDEV_ON_ERROR_STOP,     /* stop the VM; the device retries on resume */
    BLOCKDEV_ON_ERROR_AUTO,     /* the default: report (enospc for werror in QEMU's -drive) */
};

enum blk_error_action {
    BLK_ERROR_ACTION_REPORT,
    BLK_ERROR_ACTION_IGNORE,
    BLK_ERROR_ACTION_STOP,
};

enum blk_iostatus {
    BLK_IOSTATUS_OK,
    BLK_IOSTATUS_FAILED,
    BLK_IOSTATUS_NOSPACE,
};

int blk_error_policy_parse(const char *s, enum blk_error_policy *out);
const char *blk_error_action_name(enum blk_error_action a);

/*
 * Who hears about failed requests and stops (the VM, the monitor's
 * BLOCK_IO_ERROR event).  Set once by the program; called on the thread of
 * the failed request.
 */
struct blk_error_listener {
    void (*io_error)(struct block_backend *blk, enum blk_error_action action, bool is_read,
                     int error, void *opaque);
    void *opaque;
};
void blk_set_error_listener(const struct blk_error_listener *l);

/* A backend with no node yet; name may be "" (anonymous). */
struct block_backend *blk_new(const char *name);
/* Open filename/options (see bnode_open) and make a backend of it. */
struct block_backend *blk_new_open(const char *name, const char *filename, json_t *options,
                                   int flags, struct err *err);
void blk_ref(struct block_backend *blk);
void blk_unref(struct block_backend *blk);

int blk_insert_node(struct block_backend *blk, struct block_node *bs, struct err *err);
void blk_remove_node(struct block_backend *blk);

struct block_node *blk_node(const struct block_backend *blk);
struct bdrv_child *blk_root(const struct block_backend *blk);
const char *blk_name(const struct block_backend *blk);
struct block_backend *blk_find(const char *name);
int blk_foreach(int (*fn)(struct block_backend *blk, void *opaque), void *opaque);

/* Write cache: false makes every write FUA (cache=writethrough/directsync). */
void blk_set_write_cache(struct block_backend *blk, bool enable);
bool blk_write_cache_enabled(const struct block_backend *blk);

/* Allow writes past the end (image creation formats the whole file). */
void blk_set_allow_write_beyond_eof(struct block_backend *blk, bool allow);
/* Jobs must not queue behind their own drained sections. */
void blk_set_disable_request_queuing(struct block_backend *blk, bool disable);

void blk_set_on_error(struct block_backend *blk, enum blk_error_policy rerror,
                      enum blk_error_policy werror);
/* What to do about a failed request (the device acts on STOP). */
enum blk_error_action blk_get_error_action(struct block_backend *blk, bool is_read, int error);
/* Record the decision: iostatus, the listener (event, VM stop). */
void blk_error_action(struct block_backend *blk, enum blk_error_action action, bool is_read,
                      int error);
enum blk_iostatus blk_iostatus(const struct block_backend *blk);

/*
 * rerror/werror=stop: a request whose error action was STOP waits here
 * until the user resumes the VM (returns 0: retry it) or its device gives
 * up on it, as on a reset (returns -ECANCELED).  coroutine_fn.
 */
int coroutine_fn blk_co_wait_for_resume(struct block_backend *blk);
/* Wake the requests waiting after a STOP, to retry or to cancel.  Any thread. */
void blk_resume_stopped(struct block_backend *blk, bool retry);
/* The VM continues: every backend's stopped requests retry. */
void blk_resume_all_stopped(void);
void blk_iostatus_reset(struct block_backend *blk);

struct blk_stats *blk_get_stats(struct block_backend *blk);

/* The device or export using it, for query-block ("qdev"). */
void blk_set_dev_name(struct block_backend *blk, const char *dev);
const char *blk_dev_name(const struct block_backend *blk);

/* Throttling (block/throttle-groups.c) attaches here. */
void blk_set_throttle(struct block_backend *blk, struct throttle_group_member *tgm);
struct throttle_group_member *blk_get_throttle(const struct block_backend *blk);

/* ---- Requests (coroutine_fn) ------------------------------------------- */

int coroutine_fn blk_co_preadv(struct block_backend *blk, int64_t offset, int64_t bytes,
                               struct qiov *qiov, int flags);
int coroutine_fn blk_co_pwritev(struct block_backend *blk, int64_t offset, int64_t bytes,
                                struct qiov *qiov, int flags);
int coroutine_fn blk_co_pwrite_zeroes(struct block_backend *blk, int64_t offset,
                                      int64_t bytes, int flags);
int coroutine_fn blk_co_pdiscard(struct block_backend *blk, int64_t offset, int64_t bytes);
int coroutine_fn blk_co_flush(struct block_backend *blk);
int coroutine_fn blk_co_truncate(struct block_backend *blk, int64_t offset, bool exact,
                                 enum prealloc_mode prealloc, int flags, struct err *err);
int coroutine_fn blk_co_pread(struct block_backend *blk, int64_t offset, int64_t bytes,
                              void *buf, int flags);
int coroutine_fn blk_co_pwrite(struct block_backend *blk, int64_t offset, int64_t bytes,
                               const void *buf, int flags);

int64_t blk_getlength(struct block_backend *blk);
void *blk_blockalign(struct block_backend *blk, size_t size);

/* ---- Synchronous forms for tools and tests ----------------------------- */

int blk_pread(struct block_backend *blk, int64_t offset, int64_t bytes, void *buf, int flags);
int blk_pwrite(struct block_backend *blk, int64_t offset, int64_t bytes, const void *buf,
               int flags);
int blk_pwrite_zeroes(struct block_backend *blk, int64_t offset, int64_t bytes, int flags);
int blk_pdiscard(struct block_backend *blk, int64_t offset, int64_t bytes);
int blk_flush(struct block_backend *blk);
int blk_truncate(struct block_backend *blk, int64_t offset, bool exact,
                 enum prealloc_mode prealloc, int flags, struct err *err);

/* Drained sections from the backend's side (main thread). */
void blk_drain(struct block_backend *blk);

#endif
