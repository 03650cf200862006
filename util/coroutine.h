/*
 * Stackful coroutines.
 *
 * A coroutine runs on its own guard-paged stack (pooled, so creating one on
 * the I/O path is a list pop) and switches with a few instructions of
 * assembly, never a system call.  A coroutine belongs to the aio_context
 * of the thread that created it and only ever runs on that thread: waking
 * it from another thread schedules it there.
 *
 * Functions that may yield are "coroutine_fn": they must be called from
 * coroutine context.  Their names carry `_co_` or their contract says so.
 */
#ifndef SPINDLE_UTIL_COROUTINE_H
#define SPINDLE_UTIL_COROUTINE_H

#include <pthread.h>
#include "util/list.h"
#include "util/osdep.h"

/* Marks functions that may yield; for readers, the compiler ignores it. */
#define coroutine_fn

struct aio_context;
struct coroutine;

typedef void co_entry_fn(void *opaque);

/*
 * A new coroutine that will run fn(opaque) when first entered.  Its home
 * is the calling thread's aio_context, which must exist.
 */
struct coroutine *co_create(co_entry_fn *fn, void *opaque);

/*
 * Run co on this thread until it yields or returns.  co must belong to
 * this thread's context and must not be running.  A coroutine that
 * returns is released.
 */
void co_enter(struct coroutine *co);

/* Give control back to whoever entered this coroutine.  coroutine_fn. */
void coroutine_fn co_yield(void);

/* The running coroutine, or NULL on a thread's own stack. */
struct coroutine *co_self(void);

static inline bool co_in_coroutine(void)
{
    return co_self() != NULL;
}

/* The context a coroutine belongs to. */
struct aio_context *co_context(const struct coroutine *co);

/*
 * Make a yielded coroutine run again; callable from any thread.
 * On its home thread outside coroutine context it is entered at once; from
 * inside a coroutine it runs as soon as the current one yields; from
 * another thread it is scheduled on its home context.
 */
void co_wake(struct coroutine *co);

/* Sleep for ns nanoseconds on this coroutine's context.  coroutine_fn. */
void coroutine_fn co_sleep_ns(int64_t ns);

/*
 * Run fn(opaque) in a new coroutine and poll this thread's context until
 * it returns.  Called from coroutine context, it just calls fn.  This is
 * how tools and tests drive coroutine_fn code synchronously.
 */
void co_run_sync(co_entry_fn *fn, void *opaque);

/* Internal: the scheduling list link used by aio_co_schedule. */
struct coroutine *co_sched_next(struct coroutine *co);
void co_set_sched_next(struct coroutine *co, struct coroutine *next);
/* Internal: called by the home context when a scheduled coroutine is due. */
void co_enter_scheduled(struct coroutine *co);

/* Free this thread's spare coroutines; threads that ran coroutines call it last. */
void co_thread_exit(void);

/* Statistics for tests: coroutines created by new stack allocation. */
uint64_t co_stat_stacks_allocated(void);

/* ---- Waiting queues ---------------------------------------------------- */

/*
 * A queue of coroutines waiting for something.  The queue itself is
 * protected by the caller's lock: a pthread mutex, a co_mutex, or none
 * when every user runs on one thread.
 */
struct co_queue {
    struct list_node waiters;
};

void co_queue_init(struct co_queue *q);
bool co_queue_empty(const struct co_queue *q);

/* Wait until woken; lock (may be NULL) is dropped while waiting.  coroutine_fn. */
void coroutine_fn co_queue_wait(struct co_queue *q, pthread_mutex_t *lock);
struct co_mutex;
void coroutine_fn co_queue_wait_co_mutex(struct co_queue *q, struct co_mutex *m);

/*
 * Wake the first waiter; false if there was none.  Caller holds the lock.
 * The woken coroutine runs after the caller: when the calling coroutine
 * yields, or (called outside a coroutine) from the event loop, never on the
 * caller's stack while it still holds the lock.
 */
bool co_queue_next(struct co_queue *q);
/* Wake every waiter.  Caller holds the lock. */
void co_queue_restart_all(struct co_queue *q);

/* ---- Locks ------------------------------------------------------------- */

/*
 * A mutex for coroutines, safe across threads: a contended lock yields
 * instead of blocking the thread, and ownership is handed to the first
 * waiter in order.
 */
struct co_mutex {
    pthread_mutex_t lock;    /* protects the fields below */
    bool locked;
    struct coroutine *holder;
    struct list_node waiters;
};

void co_mutex_init(struct co_mutex *m);
void co_mutex_destroy(struct co_mutex *m);
void coroutine_fn co_mutex_lock(struct co_mutex *m);
/* Take the lock only if it is free; never yields. */
bool co_mutex_trylock(struct co_mutex *m);
void co_mutex_unlock(struct co_mutex *m);

/* A fair reader/writer lock for coroutines, safe across threads. */
struct co_rwlock {
    pthread_mutex_t lock;
    int readers;             /* holders in read mode */
    bool writer;             /* a holder in write mode */
    struct list_node waiters;
};

void co_rwlock_init(struct co_rwlock *l);
void co_rwlock_destroy(struct co_rwlock *l);
void coroutine_fn co_rwlock_rdlock(struct co_rwlock *l);
void coroutine_fn co_rwlock_wrlock(struct co_rwlock *l);
/* Turn a write lock into a read lock, letting queued readers in. */
void co_rwlock_downgrade(struct co_rwlock *l);
void co_rwlock_unlock(struct co_rwlock *l);

#endif
