/*
 * The io_uring event loop.  See aio.h for what a context serves.
 *
 * Waking a sleeping loop from another thread follows the usual protocol:
 * the loop sets notify_me, then looks at its queues once more before it
 * sleeps; a producer queues first, then reads notify_me and writes the
 * eventfd only if the loop may be asleep.  A read of that eventfd is always
 * armed on the ring, so a write ends io_uring_enter().
 */
#include "util/aio.h"

#include <poll.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif
#include <pthread.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/completion.h"
#include "util/coroutine.h"
#include "util/log.h"

#define RING_ENTRIES        512
#define POLL_NS_INITIAL     4000
#define POLL_GROW_DEFAULT   2
#define POLL_SHRINK_DEFAULT 2

/* user_data tag for the loop's own SQEs (notifier, fd polls, cancels). */
#define UD_INTERNAL 1ULL

enum {
    BH_SCHEDULED = 1,
    BH_DELETED   = 2,
    BH_ONESHOT   = 4,
};

struct aio_bh {
    struct aio_context *ctx;
    aio_bh_fn *cb;
    void *opaque;
    atomic_uint flags;
    struct aio_bh *next;
};

struct aio_fd_handler {
    struct aio_completion comp;
    struct aio_context *ctx;
    int fd;
    aio_fd_fn *io_read;
    aio_fd_fn *io_write;
    void *opaque;
    bool armed;          /* a poll SQE is outstanding */
    bool in_cb;
    bool deleted;
};

struct aio_poller {
    struct list_node link;
    struct aio_context *ctx;
    bool (*poll)(void *opaque);
    void (*poll_begin)(void *opaque);
    void (*poll_end)(void *opaque);
    void *opaque;
    bool deleted;
};

struct aio_context {
    struct io_uring ring;
    unsigned sq_prepared;            /* SQEs prepared, not yet submitted */
    unsigned io_inflight;            /* aio_get_sqe SQEs awaiting their CQE */

    int notify_fd;
    uint64_t notify_buf;
    struct aio_completion notify_comp;
    atomic_int notify_me;
    atomic_bool notified;

    _Atomic(struct aio_bh *) bh_head;    /* pushed by any thread */
    struct aio_bh *bh_local;             /* taken, not yet run (FIFO) */
    struct aio_bh **bh_local_tail;

    _Atomic(struct coroutine *) co_head; /* scheduled from other threads */
    struct coroutine *co_local;

    struct list_node timers;             /* sorted by expiry */
    struct list_node pollers;
    unsigned poller_walkers;
    bool pollers_dirty;
    bool poll_started;
    int64_t poll_ns, poll_max_ns, poll_grow, poll_shrink;

    struct list_node flushes;

    void *slots[AIO_SLOT_NR];
    void (*slot_free[AIO_SLOT_NR])(void *data);
};

static THREAD_LOCAL struct aio_context *current_ctx;
static struct aio_context *main_ctx;
static pthread_t main_thread;
atomic_int aio_wait_waiters;

static void ignore_cb(struct aio_completion *c, int res, uint32_t flags)
{
}

static struct aio_completion ignore_comp = { .cb = ignore_cb };

/* ---- Contexts ---------------------------------------------------------- */

static struct io_uring_sqe *internal_sqe(struct aio_context *ctx, struct aio_completion *c)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ctx->ring);
    if (!sqe) {
        io_uring_submit(&ctx->ring);
        ctx->sq_prepared = 0;
        sqe = io_uring_get_sqe(&ctx->ring);
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_INTERNAL);
    ctx->sq_prepared++;
    return sqe;
}

static void arm_notifier(struct aio_context *ctx)
{
    struct io_uring_sqe *sqe = internal_sqe(ctx, &ctx->notify_comp);
    io_uring_prep_read(sqe, ctx->notify_fd, &ctx->notify_buf, sizeof(ctx->notify_buf), 0);
}

static void notifier_cb(struct aio_completion *c, int res, uint32_t flags)
{
    struct aio_context *ctx = container_of(c, struct aio_context, notify_comp);
    atomic_store(&ctx->notified, false);
    arm_notifier(ctx);
}

struct aio_context *aio_context_new(struct err *err)
{
    struct aio_context *ctx = xzalloc(sizeof(*ctx));
    struct io_uring_params p = { 0 };

    int ret = io_uring_queue_init_params(RING_ENTRIES, &ctx->ring, &p);
    if (ret < 0) {
        err_set_errno(err, ret, "cannot set up an io_uring (needs Linux 5.11 or later)");
        free(ctx);
        return NULL;
    }
    ctx->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ctx->notify_fd < 0) {
        err_set_errno(err, -errno, "cannot create the event loop's eventfd");
        io_uring_queue_exit(&ctx->ring);
        free(ctx);
        return NULL;
    }
    ctx->notify_comp.cb = notifier_cb;
    ctx->bh_local_tail = &ctx->bh_local;
    list_init(&ctx->timers);
    list_init(&ctx->pollers);
    list_init(&ctx->flushes);
    ctx->poll_grow = POLL_GROW_DEFAULT;
    ctx->poll_shrink = POLL_SHRINK_DEFAULT;
    arm_notifier(ctx);
    return ctx;
}

void aio_context_free(struct aio_context *ctx)
{
    if (!ctx) {
        return;
    }
    /* Run what is still queued so oneshot BHs free their memory. */
    while (aio_poll(ctx, false)) {
    }
    for (int i = 0; i < AIO_SLOT_NR; i++) {
        if (ctx->slots[i] && ctx->slot_free[i]) {
            ctx->slot_free[i](ctx->slots[i]);
        }
    }
    while (aio_poll(ctx, false)) {
    }
    struct aio_poller *p, *tmp;
    list_for_each_safe(p, tmp, &ctx->pollers, link) {
        list_del(&p->link);
        free(p);
    }
    io_uring_queue_exit(&ctx->ring);
    close(ctx->notify_fd);
    if (current_ctx == ctx) {
        current_ctx = NULL;
    }
    free(ctx);
}

void aio_context_attach_thread(struct aio_context *ctx)
{
    current_ctx = ctx;
}

struct aio_context *aio_context_current(void)
{
    return current_ctx;
}

int aio_main_init(struct err *err)
{
    if (main_ctx) {
        return 0;
    }
    main_ctx = aio_context_new(err);
    if (!main_ctx) {
        return -ENOSYS;
    }
    main_thread = pthread_self();
    aio_context_attach_thread(main_ctx);
    return 0;
}

struct aio_context *aio_main_context(void)
{
    return main_ctx;
}

bool aio_in_main_thread(void)
{
    return main_ctx && current_ctx == main_ctx;
}

void aio_notify(struct aio_context *ctx)
{
    smp_mb();
    if (atomic_load(&ctx->notify_me) && !atomic_exchange(&ctx->notified, true)) {
        uint64_t one = 1;
        /* EAGAIN means the counter is already non-zero: the loop wakes anyway. */
        if (write(ctx->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            log_error("cannot wake an event loop: %s", strerror(errno));
        }
    }
}

void *aio_get_slot(struct aio_context *ctx, enum aio_slot slot)
{
    return ctx->slots[slot];
}

void aio_set_slot(struct aio_context *ctx, enum aio_slot slot, void *data,
                  void (*free_fn)(void *data))
{
    ctx->slots[slot] = data;
    ctx->slot_free[slot] = free_fn;
}

/* ---- io_uring ---------------------------------------------------------- */

struct io_uring_sqe *aio_get_sqe(struct aio_context *ctx)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ctx->ring);
    if (unlikely(!sqe)) {
        io_uring_submit(&ctx->ring);
        ctx->sq_prepared = 0;
        sqe = io_uring_get_sqe(&ctx->ring);
    }
    ctx->sq_prepared++;
    ctx->io_inflight++;
    return sqe;
}

void aio_submit(struct aio_context *ctx)
{
    if (ctx->sq_prepared) {
        int ret = io_uring_submit(&ctx->ring);
        if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR) {
            log_error("io_uring submission failed: %s", strerror(-ret));
        }
        ctx->sq_prepared = io_uring_sq_ready(&ctx->ring);
    }
}

/* Run the callback of every CQE that is ready; no system call. */
static bool reap_cqes(struct aio_context *ctx)
{
    bool progress = false;
    struct io_uring_cqe *cqe;

    /* One at a time, marking each seen first: callbacks may poll again. */
    while (io_uring_peek_cqe(&ctx->ring, &cqe) == 0 && cqe) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        io_uring_cqe_seen(&ctx->ring, cqe);

        struct aio_completion *c = (struct aio_completion *)(uintptr_t)(ud & ~UD_INTERNAL);
        if (!(ud & UD_INTERNAL)) {
            ctx->io_inflight--;
        }
        if (c) {
            c->cb(c, res, flags);
            /*
             * A completion usually starts the next request: send it now.
             * Holding it for a batch measurably lowers throughput at depth
             * (the device idles while the rest of the batch is handled).
             */
            aio_submit(ctx);
        }
        progress = true;
    }
    return progress;
}

/* ---- Bottom halves ----------------------------------------------------- */

struct aio_bh *aio_bh_new(struct aio_context *ctx, aio_bh_fn *cb, void *opaque)
{
    struct aio_bh *bh = xzalloc(sizeof(*bh));
    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    return bh;
}

static void bh_push(struct aio_bh *bh)
{
    struct aio_context *ctx = bh->ctx;
    struct aio_bh *old = atomic_load(&ctx->bh_head);
    do {
        bh->next = old;
    } while (!atomic_compare_exchange_weak(&ctx->bh_head, &old, bh));
    aio_notify(ctx);
}

void aio_bh_schedule(struct aio_bh *bh)
{
    unsigned old = atomic_fetch_or(&bh->flags, BH_SCHEDULED);
    if (!(old & BH_SCHEDULED)) {
        bh_push(bh);
    }
}

void aio_bh_delete(struct aio_bh *bh)
{
    if (!bh) {
        return;
    }
    /* The loop frees it when it reaches it; push it if it is not queued. */
    unsigned old = atomic_fetch_or(&bh->flags, BH_SCHEDULED | BH_DELETED);
    if (!(old & BH_SCHEDULED)) {
        bh_push(bh);
    }
}

void aio_bh_schedule_oneshot(struct aio_context *ctx, aio_bh_fn *cb, void *opaque)
{
    struct aio_bh *bh = aio_bh_new(ctx, cb, opaque);
    atomic_store(&bh->flags, BH_ONESHOT | BH_SCHEDULED);
    bh_push(bh);
}

/* Move newly pushed BHs to the local FIFO, oldest first. */
static void bh_take(struct aio_context *ctx)
{
    struct aio_bh *list = atomic_exchange(&ctx->bh_head, NULL);
    struct aio_bh *rev = NULL;
    while (list) {
        struct aio_bh *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        struct aio_bh *next = rev->next;
        rev->next = NULL;
        *ctx->bh_local_tail = rev;
        ctx->bh_local_tail = &rev->next;
        rev = next;
    }
}

/* Run every BH queued so far.  Re-entrant: a nested aio_poll continues the FIFO. */
static bool run_bhs(struct aio_context *ctx)
{
    bool progress = false;

    bh_take(ctx);
    while (ctx->bh_local) {
        struct aio_bh *bh = ctx->bh_local;
        ctx->bh_local = bh->next;
        if (!ctx->bh_local) {
            ctx->bh_local_tail = &ctx->bh_local;
        }
        unsigned flags = atomic_fetch_and(&bh->flags, ~(unsigned)BH_SCHEDULED);
        if (flags & BH_DELETED) {
            free(bh);
            continue;
        }
        bh->cb(bh->opaque);
        if (flags & BH_ONESHOT) {
            free(bh);
        }
        progress = true;
    }
    return progress;
}

/* ---- Coroutines scheduled from other threads --------------------------- */

void aio_co_schedule(struct aio_context *ctx, struct coroutine *co)
{
    struct coroutine *old = atomic_load(&ctx->co_head);
    do {
        co_set_sched_next(co, old);
    } while (!atomic_compare_exchange_weak(&ctx->co_head, &old, co));
    aio_notify(ctx);
}

/* Move coroutines scheduled by other threads to the local FIFO, oldest first. */
static void co_take(struct aio_context *ctx)
{
    struct coroutine *list = atomic_exchange(&ctx->co_head, NULL);
    struct coroutine *fifo = NULL;

    while (list) {
        struct coroutine *next = co_sched_next(list);
        co_set_sched_next(list, fifo);
        fifo = list;
        list = next;
    }
    if (!ctx->co_local) {
        ctx->co_local = fifo;
        return;
    }
    struct coroutine *tail = ctx->co_local;
    while (co_sched_next(tail)) {
        tail = co_sched_next(tail);
    }
    co_set_sched_next(tail, fifo);
}

/* Re-entrant like run_bhs: a nested aio_poll continues the same FIFO. */
static bool run_scheduled_coroutines(struct aio_context *ctx)
{
    bool progress = false;

    if (atomic_load_explicit(&ctx->co_head, memory_order_relaxed)) {
        co_take(ctx);
    }
    while (ctx->co_local) {
        struct coroutine *co = ctx->co_local;
        ctx->co_local = co_sched_next(co);
        co_set_sched_next(co, NULL);
        co_enter_scheduled(co);
        progress = true;
    }
    return progress;
}

/* ---- Timers ------------------------------------------------------------ */

void aio_timer_init(struct aio_timer *t, struct aio_context *ctx,
                    void (*cb)(void *opaque), void *opaque)
{
    list_init(&t->link);
    t->ctx = ctx;
    t->expire_ns = -1;
    t->cb = cb;
    t->opaque = opaque;
}

void aio_timer_del(struct aio_timer *t)
{
    if (list_linked(&t->link)) {
        list_del(&t->link);
    }
    t->expire_ns = -1;
}

void aio_timer_mod(struct aio_timer *t, int64_t expire_ns)
{
    struct aio_timer *pos;

    aio_timer_del(t);
    t->expire_ns = expire_ns;
    list_for_each(pos, &t->ctx->timers, link) {
        if (pos->expire_ns > expire_ns) {
            list_add_before(&pos->link, &t->link);
            return;
        }
    }
    list_add_tail(&t->ctx->timers, &t->link);
}

static bool run_timers(struct aio_context *ctx)
{
    bool progress = false;
    int64_t now = -1;

    while (!list_empty(&ctx->timers)) {
        struct aio_timer *t = list_entry(ctx->timers.next, struct aio_timer, link);
        if (now < 0 || t->expire_ns > now) {
            now = clock_ns();
            if (t->expire_ns > now) {
                break;
            }
        }
        aio_timer_del(t);
        t->cb(t->opaque);
        progress = true;
    }
    return progress;
}

/* Nanoseconds until the first timer, or -1 for none. */
static int64_t next_timer_ns(struct aio_context *ctx)
{
    if (list_empty(&ctx->timers)) {
        return -1;
    }
    struct aio_timer *t = list_entry(ctx->timers.next, struct aio_timer, link);
    int64_t delta = t->expire_ns - clock_ns();
    return delta > 0 ? delta : 0;
}

/* ---- fd handlers ------------------------------------------------------- */

static void fd_arm(struct aio_fd_handler *h)
{
    unsigned mask = (h->io_read ? POLLIN : 0) | (h->io_write ? POLLOUT : 0);
    struct io_uring_sqe *sqe = internal_sqe(h->ctx, &h->comp);
    io_uring_prep_poll_add(sqe, h->fd, mask);
    h->armed = true;
}

/*
 * One-shot polls re-armed after every callback give level-triggered
 * handlers: an fd still readable completes the next poll at once.
 */
static void fd_cb(struct aio_completion *c, int res, uint32_t flags)
{
    struct aio_fd_handler *h = container_of(c, struct aio_fd_handler, comp);

    h->armed = false;
    if (h->deleted) {
        free(h);
        return;
    }
    if (res < 0) {
        /* A poll cannot fail for a valid fd; do not spin on a broken one. */
        log_error("polling fd %d failed: %s", h->fd, strerror(-res));
        return;
    }
    h->in_cb = true;
    if ((res & (POLLIN | POLLHUP | POLLERR)) && h->io_read) {
        h->io_read(h->opaque);
    }
    if (!h->deleted && (res & (POLLOUT | POLLHUP | POLLERR)) && h->io_write) {
        h->io_write(h->opaque);
    }
    h->in_cb = false;
    if (h->deleted) {
        free(h);
    } else {
        fd_arm(h);
    }
}

struct aio_fd_handler *aio_set_fd_handler(struct aio_context *ctx, int fd,
                                          aio_fd_fn *io_read, aio_fd_fn *io_write,
                                          void *opaque)
{
    struct aio_fd_handler *h = xzalloc(sizeof(*h));
    h->comp.cb = fd_cb;
    h->ctx = ctx;
    h->fd = fd;
    h->io_read = io_read;
    h->io_write = io_write;
    h->opaque = opaque;
    fd_arm(h);
    return h;
}

void aio_del_fd_handler(struct aio_fd_handler *h)
{
    if (!h) {
        return;
    }
    h->deleted = true;
    if (h->armed) {
        /* The cancelled poll's CQE frees h. */
        struct io_uring_sqe *sqe = internal_sqe(h->ctx, &ignore_comp);
        io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&h->comp | UD_INTERNAL);
        aio_submit(h->ctx);
    } else if (!h->in_cb) {
        free(h);
    }
}

/* ---- Pollers ----------------------------------------------------------- */

struct aio_poller *aio_add_poller(struct aio_context *ctx, bool (*poll)(void *opaque),
                                  void (*poll_begin)(void *opaque),
                                  void (*poll_end)(void *opaque), void *opaque)
{
    struct aio_poller *p = xzalloc(sizeof(*p));
    p->poll = poll;
    p->poll_begin = poll_begin;
    p->poll_end = poll_end;
    p->opaque = opaque;
    p->ctx = ctx;
    list_add_tail(&ctx->pollers, &p->link);
    if (ctx->poll_started && poll_begin) {
        poll_begin(opaque);
    }
    return p;
}

void aio_del_poller(struct aio_poller *p)
{
    if (!p) {
        return;
    }
    struct aio_context *ctx = p->ctx;
    if (ctx->poll_started && p->poll_end && !p->deleted) {
        p->poll_end(p->opaque);
    }
    p->deleted = true;
    if (ctx->poller_walkers) {
        ctx->pollers_dirty = true;
    } else {
        list_del(&p->link);
        free(p);
    }
}

static void pollers_cleanup(struct aio_context *ctx)
{
    struct aio_poller *p, *tmp;
    if (ctx->poller_walkers || !ctx->pollers_dirty) {
        return;
    }
    list_for_each_safe(p, tmp, &ctx->pollers, link) {
        if (p->deleted) {
            list_del(&p->link);
            free(p);
        }
    }
    ctx->pollers_dirty = false;
}

static bool run_pollers(struct aio_context *ctx)
{
    bool progress = false;
    struct aio_poller *p;

    ctx->poller_walkers++;
    list_for_each(p, &ctx->pollers, link) {
        if (!p->deleted && p->poll(p->opaque)) {
            progress = true;
        }
    }
    ctx->poller_walkers--;
    pollers_cleanup(ctx);
    return progress;
}

static void set_poll_started(struct aio_context *ctx, bool started)
{
    struct aio_poller *p;

    if (ctx->poll_started == started) {
        return;
    }
    ctx->poll_started = started;
    ctx->poller_walkers++;
    list_for_each(p, &ctx->pollers, link) {
        if (p->deleted) {
            continue;
        }
        if (started && p->poll_begin) {
            p->poll_begin(p->opaque);
        } else if (!started && p->poll_end) {
            p->poll_end(p->opaque);
        }
    }
    ctx->poller_walkers--;
    pollers_cleanup(ctx);
}

void aio_set_poll_params(struct aio_context *ctx, int64_t max_ns, int64_t grow,
                         int64_t shrink)
{
    ctx->poll_max_ns = max_ns > 0 ? max_ns : 0;
    ctx->poll_grow = grow > 0 ? grow : POLL_GROW_DEFAULT;
    ctx->poll_shrink = shrink > 0 ? shrink : POLL_SHRINK_DEFAULT;
    if (ctx->poll_ns > ctx->poll_max_ns) {
        ctx->poll_ns = ctx->poll_max_ns;
    }
}

int64_t aio_poll_ns(const struct aio_context *ctx)
{
    return ctx->poll_ns;
}

/*
 * QEMU's rule: a wait that polling would have covered keeps the window,
 * one longer than poll-max-ns shrinks it, one in between grows it.
 */
static void adjust_poll_window(struct aio_context *ctx, int64_t block_ns)
{
    if (block_ns <= ctx->poll_ns) {
        return;
    }
    if (block_ns > ctx->poll_max_ns) {
        int64_t ns = ctx->poll_shrink > 1 ? ctx->poll_ns / ctx->poll_shrink : 0;
        ctx->poll_ns = ns < POLL_NS_INITIAL ? 0 : ns;
    } else if (ctx->poll_ns < ctx->poll_max_ns) {
        int64_t ns = ctx->poll_ns ? ctx->poll_ns * ctx->poll_grow : POLL_NS_INITIAL;
        ctx->poll_ns = ns > ctx->poll_max_ns ? ctx->poll_max_ns : ns;
    }
}

/* ---- Deferred flushes -------------------------------------------------- */

void aio_flush_init(struct aio_flush *f, void (*cb)(struct aio_flush *f))
{
    list_init(&f->link);
    f->cb = cb;
}

void aio_queue_flush(struct aio_context *ctx, struct aio_flush *f)
{
    if (!list_linked(&f->link)) {
        list_add_tail(&ctx->flushes, &f->link);
    }
}

static void run_flushes(struct aio_context *ctx)
{
    while (!list_empty(&ctx->flushes)) {
        struct aio_flush *f = list_entry(ctx->flushes.next, struct aio_flush, link);
        list_del(&f->link);
        f->cb(f);
    }
}

/* ---- The loop ---------------------------------------------------------- */

static bool work_queued(struct aio_context *ctx)
{
    return atomic_load(&ctx->bh_head) || ctx->bh_local || atomic_load(&ctx->co_head) ||
           ctx->co_local || !list_empty(&ctx->flushes);
}

static bool dispatch(struct aio_context *ctx)
{
    bool progress = false;
    progress |= run_bhs(ctx);
    progress |= run_scheduled_coroutines(ctx);
    progress |= reap_cqes(ctx);
    progress |= run_timers(ctx);
    return progress;
}

/* Busy-poll pollers and the completion queue for up to the window. */
static bool poll_window(struct aio_context *ctx, int64_t start)
{
    set_poll_started(ctx, true);
    do {
        bool progress = false;
        if (!list_empty(&ctx->pollers)) {
            progress |= run_pollers(ctx);
        }
        if (io_uring_cq_ready(&ctx->ring)) {
            progress |= reap_cqes(ctx);
        }
        if (progress || work_queued(ctx)) {
            return true;
        }
        __builtin_ia32_pause();
    } while (clock_ns() - start < ctx->poll_ns);
    return false;
}

/*
 * Valgrind holds its big lock across io_uring_enter, so a thread sleeping
 * there would stop every other thread: under valgrind, sleep in ppoll on
 * the ring fd instead (it is readable when CQEs are ready).
 */
static int wait_in_ppoll(struct aio_context *ctx, int64_t timeout)
{
    struct pollfd pfd = { .fd = ctx->ring.ring_fd, .events = POLLIN };
    struct timespec ts = { timeout / 1000000000LL, timeout % 1000000000LL };
    io_uring_submit(&ctx->ring);
    int ret = ppoll(&pfd, 1, timeout >= 0 ? &ts : NULL, NULL);
    return ret < 0 ? -errno : 0;
}

/* Sleep in io_uring_enter until a CQE arrives or the next timer is due. */
static void wait_for_events(struct aio_context *ctx)
{
    atomic_store(&ctx->notify_me, 1);
    smp_mb();
    if (!work_queued(ctx)) {
        int64_t timeout = next_timer_ns(ctx);
        struct io_uring_cqe *cqe;
        int ret;
        if (RUNNING_ON_VALGRIND) {
            ret = wait_in_ppoll(ctx, timeout);
        } else if (timeout >= 0) {
            struct __kernel_timespec ts = {
                .tv_sec = timeout / 1000000000LL,
                .tv_nsec = timeout % 1000000000LL,
            };
            ret = io_uring_submit_and_wait_timeout(&ctx->ring, &cqe, 1, &ts, NULL);
        } else {
            ret = io_uring_submit_and_wait(&ctx->ring, 1);
        }
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            log_error("waiting on io_uring failed: %s", strerror(-ret));
        }
        ctx->sq_prepared = io_uring_sq_ready(&ctx->ring);
    }
    atomic_store(&ctx->notify_me, 0);
}

bool aio_poll(struct aio_context *ctx, bool blocking)
{
    bool progress = dispatch(ctx);

    if (ctx->poll_started) {
        progress |= run_pollers(ctx);
    }
    run_flushes(ctx);

    if (blocking && !progress) {
        int64_t start = clock_ns();
        aio_submit(ctx);
        bool pollable = !list_empty(&ctx->pollers) || ctx->io_inflight;
        if (ctx->poll_ns && pollable) {
            progress = poll_window(ctx, start);
        }
        if (!progress && ctx->poll_started) {
            /* Notifications come back on: look once more, then sleep. */
            set_poll_started(ctx, false);
            progress = run_pollers(ctx);
        }
        if (!progress && !work_queued(ctx)) {
            wait_for_events(ctx);
        }
        if (ctx->poll_max_ns) {
            adjust_poll_window(ctx, clock_ns() - start);
        }
        progress |= dispatch(ctx);
        run_flushes(ctx);
    }
    aio_submit(ctx);
    return progress;
}

/* ---- Waiting for other threads ----------------------------------------- */

static void aio_wait_bh(void *opaque)
{
}

void aio_wait_kick(void)
{
    smp_mb();
    if (atomic_load(&aio_wait_waiters) && main_ctx) {
        aio_bh_schedule_oneshot(main_ctx, aio_wait_bh, NULL);
    }
}

struct run_on {
    void (*fn)(void *opaque);
    void *opaque;
    struct completion done;
};

static void run_on_bh(void *opaque)
{
    struct run_on *r = opaque;
    r->fn(r->opaque);
    completion_signal(&r->done);
}

void aio_run_on(struct aio_context *ctx, void (*fn)(void *opaque), void *opaque)
{
    if (ctx == current_ctx) {
        fn(opaque);
        return;
    }
    struct run_on r = { .fn = fn, .opaque = opaque };
    completion_init(&r.done);
    aio_bh_schedule_oneshot(ctx, run_on_bh, &r);
    completion_wait(&r.done);
    completion_destroy(&r.done);
}
