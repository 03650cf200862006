/*
 * Stackful coroutines on pooled, guard-paged stacks.
 *
 * Switching is co_switch() in co-switch.S.  Each thread keeps the running
 * coroutine and the list of coroutines woken from coroutine context; those
 * run as soon as control is back on the thread's own stack, so a wake-up
 * inside a coroutine costs no trip through the event loop.
 */
#include "util/coroutine.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/log.h"

#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CO_ASAN 1
#endif
#endif

#ifdef CO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "spindle's coroutine switch is written for x86-64"
#endif

#define CO_STACK_SIZE   (1u << 20)
#define CO_POOL_LOCAL   64      /* spare coroutines kept per thread */
#define CO_POOL_GLOBAL  512     /* and shared between threads */

enum co_state { CO_IDLE, CO_RUNNING, CO_YIELDED, CO_DONE };

struct coroutine {
    void *sp;                        /* saved stack pointer while not running */
    co_entry_fn *fn;
    void *opaque;
    struct coroutine *caller;        /* who entered us; NULL: the thread */
    struct aio_context *ctx;
    void *stack;                     /* mapping, guard page first */
    size_t stack_size;
    enum co_state state;
    atomic_bool scheduled;           /* queued for entry by co_wake */
    struct coroutine *sched_next;    /* aio_co_schedule's list */
    struct list_node link;           /* a co_queue, the wake list, or a pool */
#ifdef CO_ASAN
    void *fake_stack;
    const void *caller_bottom;
    size_t caller_size;
#endif
};

void co_switch(void **from_sp, void *to_sp);
void co_trampoline(void);
void co_entry(struct coroutine *co) __attribute__((noreturn, used));

struct co_thread {
    bool init;
    struct coroutine *current;
    void *sp;                        /* the thread stack's saved pointer */
    struct list_node woken;          /* woken from coroutine context */
    bool draining;
    struct list_node pool;
    unsigned pool_size;
#ifdef CO_ASAN
    void *fake_stack;
#endif
};

static THREAD_LOCAL struct co_thread co_thread;

static pthread_mutex_t global_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_node global_pool = LIST_HEAD_INIT(global_pool);
static unsigned global_pool_size;
static atomic_uint_fast64_t stacks_allocated;

static struct co_thread *this_thread(void)
{
    struct co_thread *t = &co_thread;
    if (unlikely(!t->init)) {
        list_init(&t->woken);
        list_init(&t->pool);
        t->init = true;
    }
    return t;
}

static void co_free_stack(struct coroutine *co);

static void NORETURN co_bug(const char *what)
{
    /* A broken invariant of the runtime itself, never bad input. */
    fprintf(stderr, "spindle: coroutine bug: %s\n", what);
    abort();
}

void co_thread_exit(void)
{
    struct co_thread *t = &co_thread;
    if (!t->init) {
        return;
    }
    /* The spare coroutines of a thread that ends would be lost with its TLS. */
    while (!list_empty(&t->pool)) {
        struct coroutine *co = list_entry(t->pool.next, struct coroutine, link);
        list_del(&co->link);
        co_free_stack(co);
    }
    t->pool_size = 0;
}

uint64_t co_stat_stacks_allocated(void)
{
    return atomic_load(&stacks_allocated);
}

/* ---- Stacks and the pool ----------------------------------------------- */

static struct coroutine *co_alloc(void)
{
    struct co_thread *t = this_thread();
    struct coroutine *co = NULL;

    if (!list_empty(&t->pool)) {
        co = list_entry(t->pool.next, struct coroutine, link);
        list_del(&co->link);
        t->pool_size--;
        return co;
    }
    pthread_mutex_lock(&global_pool_lock);
    if (!list_empty(&global_pool)) {
        co = list_entry(global_pool.next, struct coroutine, link);
        list_del(&co->link);
        global_pool_size--;
    }
    pthread_mutex_unlock(&global_pool_lock);
    if (co) {
        return co;
    }

    co = xzalloc(sizeof(*co));
    long page = sysconf(_SC_PAGESIZE);
    co->stack_size = CO_STACK_SIZE;
    co->stack = mmap(NULL, co->stack_size + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (co->stack == MAP_FAILED) {
        fprintf(stderr, "spindle: cannot map a coroutine stack: %s\n", strerror(errno));
        abort();
    }
    /* The guard page below the stack turns an overflow into a fault. */
    if (mprotect(co->stack, page, PROT_NONE) < 0) {
        fprintf(stderr, "spindle: cannot protect a coroutine guard page: %s\n",
                strerror(errno));
        abort();
    }
    co->stack = (char *)co->stack + page;
    list_init(&co->link);
    atomic_fetch_add(&stacks_allocated, 1);
    return co;
}

static void co_free_stack(struct coroutine *co)
{
    long page = sysconf(_SC_PAGESIZE);
    munmap((char *)co->stack - page, co->stack_size + page);
    free(co);
}

static void co_release(struct coroutine *co)
{
    struct co_thread *t = this_thread();

    co->state = CO_IDLE;
    if (t->pool_size < CO_POOL_LOCAL) {
        list_add_head(&t->pool, &co->link);
        t->pool_size++;
        return;
    }
    pthread_mutex_lock(&global_pool_lock);
    if (global_pool_size < CO_POOL_GLOBAL) {
        list_add_head(&global_pool, &co->link);
        global_pool_size++;
        co = NULL;
    }
    pthread_mutex_unlock(&global_pool_lock);
    if (co) {
        co_free_stack(co);
    }
}

/* ---- Switching --------------------------------------------------------- */

static inline void asan_start(void **fake_save, struct coroutine *to, struct coroutine *from)
{
#ifdef CO_ASAN
    if (to) {
        __sanitizer_start_switch_fiber(fake_save, to->stack, to->stack_size);
    } else {
        __sanitizer_start_switch_fiber(fake_save, from->caller_bottom, from->caller_size);
    }
#else
    (void)fake_save;
    (void)to;
    (void)from;
#endif
}

static inline void asan_finish(void *fake_save, struct coroutine *in)
{
#ifdef CO_ASAN
    if (in) {
        __sanitizer_finish_switch_fiber(fake_save, &in->caller_bottom, &in->caller_size);
    } else {
        __sanitizer_finish_switch_fiber(fake_save, NULL, NULL);
    }
#else
    (void)fake_save;
    (void)in;
#endif
}

/* Build the first frame so that co_switch "returns" into co_trampoline. */
static void co_prepare_stack(struct coroutine *co)
{
    uintptr_t top = ((uintptr_t)co->stack + co->stack_size - 32) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 64);
    uint32_t mxcsr;
    uint16_t fpucw;

    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    memset(sp, 0, 64);
    memcpy(&sp[0], &mxcsr, 4);
    memcpy((char *)&sp[0] + 4, &fpucw, 2);
    sp[5] = (uint64_t)(uintptr_t)co;                 /* %rbx */
    sp[7] = (uint64_t)(uintptr_t)co_trampoline;      /* return address */
    co->sp = sp;
}

void co_entry(struct coroutine *co)
{
    asan_finish(NULL, co);
    co->fn(co->opaque);

    /* Done: go back to the caller for good; it releases us. */
    struct co_thread *t = this_thread();
    struct coroutine *caller = co->caller;
    co->state = CO_DONE;
    t->current = caller;
    asan_start(NULL, caller, co);
    void *dummy;
    co_switch(&dummy, caller ? caller->sp : t->sp);
    __builtin_unreachable();
}

struct coroutine *co_create(co_entry_fn *fn, void *opaque)
{
    struct aio_context *ctx = aio_context_current();
    if (!ctx) {
        co_bug("co_create on a thread without an aio_context");
    }
    struct coroutine *co = co_alloc();
    co->fn = fn;
    co->opaque = opaque;
    co->ctx = ctx;
    co->caller = NULL;
    co->state = CO_IDLE;
    atomic_store(&co->scheduled, false);
    co->sched_next = NULL;
    co_prepare_stack(co);
    return co;
}

static void co_run_woken(struct co_thread *t);

void co_enter(struct coroutine *co)
{
    struct co_thread *t = this_thread();
    struct coroutine *self = t->current;

    if (co->state == CO_RUNNING || co->state == CO_DONE) {
        co_bug("entering a coroutine that is running or finished");
    }
    if (co->ctx != aio_context_current()) {
        co_bug("entering a coroutine on a thread that is not its home");
    }
    co->caller = self;
    co->state = CO_RUNNING;
    t->current = co;

#ifdef CO_ASAN
    void **fake_save = self ? &self->fake_stack : &t->fake_stack;
    asan_start(fake_save, co, NULL);
#endif
    co_switch(self ? &self->sp : &t->sp, co->sp);
#ifdef CO_ASAN
    asan_finish(*fake_save, NULL);
#endif

    /* Back here: co yielded or returned; t->current is self again. */
    if (co->state == CO_DONE) {
        co_release(co);
    }
    if (!self) {
        co_run_woken(t);
    }
}

void coroutine_fn co_yield(void)
{
    struct co_thread *t = this_thread();
    struct coroutine *co = t->current;
    if (!co) {
        co_bug("co_yield outside a coroutine");
    }
    struct coroutine *caller = co->caller;

    co->state = CO_YIELDED;
    t->current = caller;
#ifdef CO_ASAN
    asan_start(&co->fake_stack, caller, co);
#endif
    co_switch(&co->sp, caller ? caller->sp : t->sp);
#ifdef CO_ASAN
    asan_finish(co->fake_stack, co);
#endif
}

struct coroutine *co_self(void)
{
    return co_thread.current;
}

struct aio_context *co_context(const struct coroutine *co)
{
    return co->ctx;
}

/* Enter the coroutines woken from coroutine context, oldest first. */
static void co_run_woken(struct co_thread *t)
{
    if (t->draining) {
        return;     /* an outer co_enter is already emptying the list */
    }
    t->draining = true;
    while (!list_empty(&t->woken)) {
        struct coroutine *co = list_entry(t->woken.next, struct coroutine, link);
        list_del(&co->link);
        atomic_store(&co->scheduled, false);
        co_enter(co);
    }
    t->draining = false;
}

void co_wake(struct coroutine *co)
{
    if (atomic_exchange(&co->scheduled, true)) {
        co_bug("a coroutine was woken twice before it ran");
    }
    if (co->ctx != aio_context_current()) {
        aio_co_schedule(co->ctx, co);
        return;
    }
    struct co_thread *t = this_thread();
    if (t->current) {
        list_add_tail(&t->woken, &co->link);
        return;
    }
    atomic_store(&co->scheduled, false);
    co_enter(co);
    co_run_woken(t);
}

void co_enter_scheduled(struct coroutine *co)
{
    atomic_store(&co->scheduled, false);
    co_enter(co);
}

struct coroutine *co_sched_next(struct coroutine *co)
{
    return co->sched_next;
}

void co_set_sched_next(struct coroutine *co, struct coroutine *next)
{
    co->sched_next = next;
}

/* ---- Sleeping and synchronous callers ---------------------------------- */

static void co_sleep_cb(void *opaque)
{
    co_wake(opaque);
}

void coroutine_fn co_sleep_ns(int64_t ns)
{
    struct coroutine *co = co_self();
    struct aio_timer timer;

    aio_timer_init(&timer, co->ctx, co_sleep_cb, co);
    aio_timer_mod(&timer, clock_ns() + (ns > 0 ? ns : 0));
    co_yield();
}

struct co_sync {
    co_entry_fn *fn;
    void *opaque;
    bool done;
};

static void co_sync_entry(void *opaque)
{
    struct co_sync *s = opaque;
    s->fn(s->opaque);
    s->done = true;
}

void co_run_sync(co_entry_fn *fn, void *opaque)
{
    if (co_in_coroutine()) {
        fn(opaque);
        return;
    }
    struct co_sync s = { .fn = fn, .opaque = opaque };
    struct aio_context *ctx = aio_context_current();
    co_enter(co_create(co_sync_entry, &s));
    while (!s.done) {
        aio_poll(ctx, true);
    }
}

/* ---- Queues ------------------------------------------------------------ */

void co_queue_init(struct co_queue *q)
{
    list_init(&q->waiters);
}

bool co_queue_empty(const struct co_queue *q)
{
    return list_empty(&q->waiters);
}

void coroutine_fn co_queue_wait(struct co_queue *q, pthread_mutex_t *lock)
{
    struct coroutine *self = co_self();
    list_add_tail(&q->waiters, &self->link);
    if (lock) {
        pthread_mutex_unlock(lock);
    }
    /*
     * A waker on another thread can only schedule us on our home context,
     * which is this thread: we are entered again after this yield.
     */
    co_yield();
    if (lock) {
        pthread_mutex_lock(lock);
    }
}

void coroutine_fn co_queue_wait_co_mutex(struct co_queue *q, struct co_mutex *m)
{
    struct coroutine *self = co_self();
    list_add_tail(&q->waiters, &self->link);
    co_mutex_unlock(m);
    co_yield();
    co_mutex_lock(m);
}

/*
 * Wake without entering on this stack: the caller still holds the lock the
 * woken coroutine takes again, so it must run only after the caller is done.
 */
static void co_wake_deferred(struct coroutine *co)
{
    if (co->ctx == aio_context_current() && !co_self()) {
        if (atomic_exchange(&co->scheduled, true)) {
            co_bug("a coroutine was woken twice before it ran");
        }
        aio_co_schedule(co->ctx, co);
        return;
    }
    co_wake(co);
}

bool co_queue_next(struct co_queue *q)
{
    if (list_empty(&q->waiters)) {
        return false;
    }
    struct coroutine *co = list_entry(q->waiters.next, struct coroutine, link);
    list_del(&co->link);
    co_wake_deferred(co);
    return true;
}

void co_queue_restart_all(struct co_queue *q)
{
    while (co_queue_next(q)) {
    }
}

/* ---- co_mutex ---------------------------------------------------------- */

void co_mutex_init(struct co_mutex *m)
{
    pthread_mutex_init(&m->lock, NULL);
    m->locked = false;
    m->holder = NULL;
    list_init(&m->waiters);
}

void co_mutex_destroy(struct co_mutex *m)
{
    pthread_mutex_destroy(&m->lock);
}

void coroutine_fn co_mutex_lock(struct co_mutex *m)
{
    struct coroutine *self = co_self();

    pthread_mutex_lock(&m->lock);
    if (!m->locked) {
        m->locked = true;
        m->holder = self;
        pthread_mutex_unlock(&m->lock);
        return;
    }
    if (m->holder == self) {
        co_bug("co_mutex locked twice by one coroutine");
    }
    list_add_tail(&m->waiters, &self->link);
    pthread_mutex_unlock(&m->lock);
    co_yield();
    /* co_mutex_unlock handed the lock to us before waking us. */
}

bool co_mutex_trylock(struct co_mutex *m)
{
    bool taken = false;
    pthread_mutex_lock(&m->lock);
    if (!m->locked) {
        m->locked = true;
        m->holder = co_self();
        taken = true;
    }
    pthread_mutex_unlock(&m->lock);
    return taken;
}

void co_mutex_unlock(struct co_mutex *m)
{
    struct coroutine *next = NULL;

    pthread_mutex_lock(&m->lock);
    if (!m->locked) {
        co_bug("co_mutex unlocked while not locked");
    }
    if (!list_empty(&m->waiters)) {
        next = list_entry(m->waiters.next, struct coroutine, link);
        list_del(&next->link);
        m->holder = next;          /* hand over: the lock stays taken */
    } else {
        m->locked = false;
        m->holder = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    if (next) {
        co_wake(next);
    }
}

/* ---- co_rwlock --------------------------------------------------------- */

/* A waiter on a rwlock: the coroutine and the mode it asked for. */
struct rw_waiter {
    struct list_node link;
    struct coroutine *co;
    bool write;
};

void co_rwlock_init(struct co_rwlock *l)
{
    pthread_mutex_init(&l->lock, NULL);
    l->readers = 0;
    l->writer = false;
    list_init(&l->waiters);
}

void co_rwlock_destroy(struct co_rwlock *l)
{
    pthread_mutex_destroy(&l->lock);
}

/*
 * Grant the lock to waiters at the head of the queue while they fit: one
 * writer, or every reader up to the next writer.  Called with l->lock held;
 * the woken coroutines already own their share when they run.
 */
static void rw_grant(struct co_rwlock *l, struct list_node *wake)
{
    while (!list_empty(&l->waiters) && !l->writer) {
        struct rw_waiter *w = list_entry(l->waiters.next, struct rw_waiter, link);
        if (w->write) {
            if (l->readers) {
                break;
            }
            l->writer = true;
        } else {
            l->readers++;
        }
        list_del(&w->link);
        list_add_tail(wake, &w->link);
    }
}

static void rw_wake(struct list_node *wake)
{
    while (!list_empty(wake)) {
        struct rw_waiter *w = list_entry(wake->next, struct rw_waiter, link);
        list_del(&w->link);
        co_wake(w->co);
    }
}

static void coroutine_fn rw_lock(struct co_rwlock *l, bool write)
{
    struct rw_waiter w = { .co = co_self(), .write = write };

    pthread_mutex_lock(&l->lock);
    /* Queue behind earlier waiters so writers are not starved. */
    bool free_now = list_empty(&l->waiters) && !l->writer && (!write || !l->readers);
    if (free_now) {
        if (write) {
            l->writer = true;
        } else {
            l->readers++;
        }
        pthread_mutex_unlock(&l->lock);
        return;
    }
    list_add_tail(&l->waiters, &w.link);
    pthread_mutex_unlock(&l->lock);
    co_yield();
}

void coroutine_fn co_rwlock_rdlock(struct co_rwlock *l)
{
    rw_lock(l, false);
}

void coroutine_fn co_rwlock_wrlock(struct co_rwlock *l)
{
    rw_lock(l, true);
}

void co_rwlock_downgrade(struct co_rwlock *l)
{
    struct list_node wake = LIST_HEAD_INIT(wake);
    pthread_mutex_lock(&l->lock);
    l->writer = false;
    l->readers++;
    rw_grant(l, &wake);
    pthread_mutex_unlock(&l->lock);
    rw_wake(&wake);
}

void co_rwlock_unlock(struct co_rwlock *l)
{
    struct list_node wake = LIST_HEAD_INIT(wake);
    pthread_mutex_lock(&l->lock);
    if (l->writer) {
        l->writer = false;
    } else if (l->readers > 0) {
        l->readers--;
    } else {
        co_bug("co_rwlock unlocked while not locked");
    }
    rw_grant(l, &wake);
    pthread_mutex_unlock(&l->lock);
    rw_wake(&wake);
}
