/*
 * The event loop: one aio_context per thread, built on io_uring.
 *
 * A context owns an io_uring and serves, from its thread only:
 *   - completions of the I/O that this thread submitted on its ring,
 *   - fd handlers (multishot poll SQEs),
 *   - timers (CLOCK_MONOTONIC, nanoseconds),
 *   - bottom halves, which any thread may schedule (an eventfd wakes us),
 *   - coroutines scheduled from other threads,
 *   - pollers, run in an adaptive busy-poll window before the loop sleeps
 *     (QEMU's poll-max-ns: the window grows while polling finds work and
 *     shrinks when the loop ends up sleeping anyway).
 *
 * Everything but aio_bh_schedule, aio_notify and aio_co_schedule must be
 * called on the context's own thread.
 */
#ifndef SPINDLE_UTIL_AIO_H
#define SPINDLE_UTIL_AIO_H

#include <liburing.h>
#include "util/error.h"
#include "util/list.h"
#include "util/osdep.h"

struct aio_context;
struct coroutine;

/*
 * Anything that puts an SQE on a ring embeds one of these and passes its
 * address as user_data; cb runs on the ring's thread with the CQE's result
 * (a negative errno on failure) and flags.
 */
struct aio_completion {
    void (*cb)(struct aio_completion *c, int res, uint32_t cqe_flags);
};

/* ---- Contexts ---------------------------------------------------------- */

/* A new context; it becomes the current one of whichever thread attaches it. */
struct aio_context *aio_context_new(struct err *err);
void aio_context_free(struct aio_context *ctx);

/* Make ctx the current context of the calling thread. */
void aio_context_attach_thread(struct aio_context *ctx);

/* The calling thread's context, or NULL. */
struct aio_context *aio_context_current(void);

/*
 * The main thread's context: created and attached by aio_main_init(),
 * which programs and tests call first thing on their main thread.
 */
int aio_main_init(struct err *err);
struct aio_context *aio_main_context(void);
bool aio_in_main_thread(void);

/*
 * Run one iteration: timers, bottom halves, scheduled coroutines and I/O
 * completions that are ready; if blocking and none were, busy-poll for up
 * to the poll window and then sleep until something happens.  Returns
 * whether any callback ran.  May be nested (a callback may call it).
 */
bool aio_poll(struct aio_context *ctx, bool blocking);

/* Wake the context's thread if it sleeps.  Any thread. */
void aio_notify(struct aio_context *ctx);

/* ---- io_uring ---------------------------------------------------------- */

/*
 * An SQE on ctx's ring (ctx must be the caller's context).  It is submitted
 * together with every other SQE prepared in this loop iteration, when the
 * loop next polls, so requests issued together go to the kernel in one
 * system call.  Never NULL: a full queue is submitted first.
 */
struct io_uring_sqe *aio_get_sqe(struct aio_context *ctx);

/* Submit prepared SQEs now rather than at the next poll. */
void aio_submit(struct aio_context *ctx);

/* ---- Bottom halves ----------------------------------------------------- */

struct aio_bh;
typedef void aio_bh_fn(void *opaque);

struct aio_bh *aio_bh_new(struct aio_context *ctx, aio_bh_fn *cb, void *opaque);
/* Run cb soon on the BH's context.  Any thread; no-op while already scheduled. */
void aio_bh_schedule(struct aio_bh *bh);
/* Free the BH (a scheduled run is dropped).  The BH's own thread. */
void aio_bh_delete(struct aio_bh *bh);
/* Run cb(opaque) once, soon, on ctx.  Any thread. */
void aio_bh_schedule_oneshot(struct aio_context *ctx, aio_bh_fn *cb, void *opaque);

/* ---- Timers ------------------------------------------------------------ */

struct aio_timer {
    struct list_node link;
    struct aio_context *ctx;
    int64_t expire_ns;       /* CLOCK_MONOTONIC; -1 when not armed */
    void (*cb)(void *opaque);
    void *opaque;
};

void aio_timer_init(struct aio_timer *t, struct aio_context *ctx,
                    void (*cb)(void *opaque), void *opaque);
/* Arm (or re-arm) for an absolute CLOCK_MONOTONIC time in ns. */
void aio_timer_mod(struct aio_timer *t, int64_t expire_ns);
void aio_timer_del(struct aio_timer *t);
static inline bool aio_timer_pending(const struct aio_timer *t)
{
    return t->expire_ns >= 0;
}

/* ---- File descriptors -------------------------------------------------- */

struct aio_fd_handler;
typedef void aio_fd_fn(void *opaque);

/*
 * Call io_read / io_write (either may be NULL) whenever fd is readable /
 * writable, level-triggered.
 */
struct aio_fd_handler *aio_set_fd_handler(struct aio_context *ctx, int fd,
                                          aio_fd_fn *io_read, aio_fd_fn *io_write,
                                          void *opaque);
/* Stop watching; the callbacks are not called after this returns. */
void aio_del_fd_handler(struct aio_fd_handler *h);

/* ---- Busy polling ------------------------------------------------------ */

struct aio_poller;

/*
 * poll() looks for work and does it, returning whether it found any; it
 * runs in the busy-poll window.  poll_begin/poll_end (optional) bracket a
 * window, so a device can suppress its notifications while it is polled.
 */
struct aio_poller *aio_add_poller(struct aio_context *ctx, bool (*poll)(void *opaque),
                                  void (*poll_begin)(void *opaque),
                                  void (*poll_end)(void *opaque), void *opaque);
void aio_del_poller(struct aio_poller *p);

/* poll-max-ns (0 disables polling), poll-grow and poll-shrink (0: defaults). */
void aio_set_poll_params(struct aio_context *ctx, int64_t max_ns, int64_t grow,
                         int64_t shrink);
int64_t aio_poll_ns(const struct aio_context *ctx);

/* ---- Deferred flushes (plugging) --------------------------------------- */

/*
 * An engine that batches work (libaio iocbs, thread-pool jobs) queues a
 * flush once per batch; the loop runs it before it next sleeps or polls.
 */
struct aio_flush {
    struct list_node link;
    void (*cb)(struct aio_flush *f);
};

void aio_flush_init(struct aio_flush *f, void (*cb)(struct aio_flush *f));
void aio_queue_flush(struct aio_context *ctx, struct aio_flush *f);

/* ---- Per-context state of other modules -------------------------------- */

/*
 * Engines that need state per thread (a libaio context and its eventfd)
 * keep it in a slot of the thread's context; free runs when the context
 * is freed.
 */
enum aio_slot {
    AIO_SLOT_LINUX_AIO,
    AIO_SLOT_NR,
};

void *aio_get_slot(struct aio_context *ctx, enum aio_slot slot);
void aio_set_slot(struct aio_context *ctx, enum aio_slot slot, void *data,
                  void (*free_fn)(void *data));

/* ---- Coroutines -------------------------------------------------------- */

/* Enter co on ctx from its loop.  Any thread. */
void aio_co_schedule(struct aio_context *ctx, struct coroutine *co);

/* ---- Waiting on the main thread ---------------------------------------- */

/*
 * AIO_WAIT_WHILE(cond): on the main thread, run the main loop until cond is
 * false.  Code on other threads that may make cond false calls
 * aio_wait_kick() afterwards, so the main loop wakes to look.
 */
extern atomic_int aio_wait_waiters;
void aio_wait_kick(void);

#define AIO_WAIT_WHILE(cond)                                    \
    do {                                                        \
        atomic_fetch_add(&aio_wait_waiters, 1);                 \
        while (cond) {                                          \
            aio_poll(aio_main_context(), true);                 \
        }                                                       \
        atomic_fetch_sub(&aio_wait_waiters, 1);                 \
    } while (0)

/*
 * Run fn(opaque) on ctx's thread and wait for it to return.  Any thread;
 * the main thread keeps running its loop while it waits.
 */
void aio_run_on(struct aio_context *ctx, void (*fn)(void *opaque), void *opaque);

#endif
