/* Coroutines, their queues and locks, within a thread and across iothreads. */
#include "tests/unit/harness.h"

#include "util/aio.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/thread-pool.h"

static void record(void *opaque)
{
    int *log = opaque;
    log[log[0] + 1] = 1;
    log[0]++;
    co_yield();
    log[log[0] + 1] = 2;
    log[0]++;
}

static void test_enter_yield_return(void)
{
    int log[8] = { 0 };
    struct coroutine *co = co_create(record, log);
    CU_ASSERT_PTR_NULL(co_self());
    co_enter(co);
    CU_ASSERT_EQUAL(log[0], 1);
    CU_ASSERT_EQUAL(log[1], 1);
    co_enter(co);
    CU_ASSERT_EQUAL(log[0], 2);
    CU_ASSERT_EQUAL(log[2], 2);
    CU_ASSERT_PTR_NULL(co_self());
}

struct nest {
    struct coroutine *outer, *inner;
    int steps;
};

static void nest_inner(void *opaque)
{
    struct nest *n = opaque;
    CU_ASSERT_PTR_EQUAL(co_self(), n->inner);
    n->steps++;
    co_yield();       /* back to outer, not to the thread */
    n->steps++;
}

static void nest_outer(void *opaque)
{
    struct nest *n = opaque;
    n->inner = co_create(nest_inner, n);
    co_enter(n->inner);
    CU_ASSERT_PTR_EQUAL(co_self(), n->outer);
    CU_ASSERT_EQUAL(n->steps, 1);
    co_enter(n->inner);
    CU_ASSERT_EQUAL(n->steps, 2);
}

static void test_nested(void)
{
    struct nest n = { 0 };
    n.outer = co_create(nest_outer, &n);
    co_enter(n.outer);
    CU_ASSERT_EQUAL(n.steps, 2);
}

/* Coroutines are pooled: many short ones reuse a few stacks. */
static void nothing(void *opaque)
{
}

static void test_pool_reuse(void)
{
    uint64_t before = co_stat_stacks_allocated();
    for (int i = 0; i < 10000; i++) {
        co_enter(co_create(nothing, NULL));
    }
    CU_ASSERT(co_stat_stacks_allocated() - before <= 1);
}

/* Deep recursion within a stack, to show a real stack is there. */
static int recurse(int n)
{
    volatile char buf[256];
    buf[0] = (char)n;
    return n == 0 ? buf[0] : recurse(n - 1) + 1;
}

static void deep(void *opaque)
{
    *(int *)opaque = recurse(1000);
}

static void test_stack_depth(void)
{
    int r = 0;
    co_enter(co_create(deep, &r));
    CU_ASSERT_EQUAL(r, 1000);
}

struct qtest {
    struct co_queue q;
    int order[8];
    int n;
};

struct qwaiter {
    struct qtest *t;
    int id;
};

static void queue_waiter(void *opaque)
{
    struct qwaiter *w = opaque;
    co_queue_wait(&w->t->q, NULL);
    w->t->order[w->t->n++] = w->id;
}

static void test_queue_order(void)
{
    struct qtest t = { .n = 0 };
    struct qwaiter w[4];
    co_queue_init(&t.q);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct qwaiter){ &t, i };
        co_enter(co_create(queue_waiter, &w[i]));
    }
    CU_ASSERT_EQUAL(t.n, 0);
    CU_ASSERT_TRUE(co_queue_next(&t.q));
    /* Woken from outside a coroutine: it runs from the loop, not on our stack. */
    CU_ASSERT_EQUAL(t.n, 0);
    aio_poll(aio_main_context(), false);
    CU_ASSERT_EQUAL(t.n, 1);
    co_queue_restart_all(&t.q);
    aio_poll(aio_main_context(), false);
    CU_ASSERT_EQUAL(t.n, 4);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(t.order[i], i);
    }
    CU_ASSERT_FALSE(co_queue_next(&t.q));
}

/* A wake-up from inside a coroutine runs the woken one right after it yields. */
struct wake_inside {
    struct coroutine *sleeper;
    int stage;
};

static void sleeper(void *opaque)
{
    struct wake_inside *w = opaque;
    co_yield();
    CU_ASSERT_EQUAL(w->stage, 2);
    w->stage = 3;
}

static void waker(void *opaque)
{
    struct wake_inside *w = opaque;
    co_wake(w->sleeper);
    CU_ASSERT_EQUAL(w->stage, 1);   /* not yet: we are still running */
    w->stage = 2;
}

static void test_wake_from_coroutine(void)
{
    struct wake_inside w = { .stage = 0 };
    w.sleeper = co_create(sleeper, &w);
    co_enter(w.sleeper);
    w.stage = 1;
    co_enter(co_create(waker, &w));
    CU_ASSERT_EQUAL(w.stage, 3);
}

/* ---- Across threads ---------------------------------------------------- */

struct xwake {
    struct coroutine *co;
    atomic_int woken;
};

static void xwake_bh(void *opaque)
{
    struct xwake *x = opaque;
    co_wake(x->co);      /* on the iothread: schedules onto main */
}

static void xwake_co(void *opaque)
{
    struct xwake *x = opaque;
    CU_ASSERT_PTR_EQUAL(co_context(co_self()), aio_main_context());
    co_yield();
    CU_ASSERT_PTR_EQUAL(aio_context_current(), aio_main_context());
    atomic_store(&x->woken, 1);
}

static void test_cross_thread_wake(void)
{
    struct err err = { 0 };
    struct iothread *t = iothread_create("xw", NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct xwake x = { .woken = 0 };
    x.co = co_create(xwake_co, &x);
    co_enter(x.co);
    aio_bh_schedule_oneshot(iothread_ctx(t), xwake_bh, &x);
    while (!atomic_load(&x.woken)) {
        aio_poll(aio_main_context(), true);
    }
    iothread_destroy(t);
}

/*
 * A co_mutex contended by coroutines on two iothreads: the critical section
 * yields in the middle, and no two holders may ever overlap.
 */
#define MUTEX_COS   8
#define MUTEX_ITERS 400

struct mtest {
    struct co_mutex m;
    atomic_int inside;
    atomic_int overlaps;
    long counter;
    atomic_int finished;
};

static void mutex_worker(void *opaque)
{
    struct mtest *t = opaque;
    for (int i = 0; i < MUTEX_ITERS; i++) {
        co_mutex_lock(&t->m);
        if (atomic_fetch_add(&t->inside, 1) != 0) {
            atomic_fetch_add(&t->overlaps, 1);
        }
        long c = t->counter;
        if (i % 3 == 0) {
            co_sleep_ns(0);    /* yield inside the critical section */
        }
        t->counter = c + 1;
        atomic_fetch_sub(&t->inside, 1);
        co_mutex_unlock(&t->m);
    }
    atomic_fetch_add(&t->finished, 1);
    aio_wait_kick();
}

static void start_mutex_workers(void *opaque)
{
    for (int i = 0; i < MUTEX_COS; i++) {
        co_enter(co_create(mutex_worker, opaque));
    }
}

static void test_mutex_two_iothreads(void)
{
    struct err err = { 0 };
    struct mtest t = { .counter = 0 };
    co_mutex_init(&t.m);
    struct iothread *a = iothread_create("ma", NULL, &err);
    struct iothread *b = iothread_create("mb", NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    aio_bh_schedule_oneshot(iothread_ctx(a), start_mutex_workers, &t);
    aio_bh_schedule_oneshot(iothread_ctx(b), start_mutex_workers, &t);
    AIO_WAIT_WHILE(atomic_load(&t.finished) < 2 * MUTEX_COS);
    CU_ASSERT_EQUAL(t.counter, 2L * MUTEX_COS * MUTEX_ITERS);
    CU_ASSERT_EQUAL(atomic_load(&t.overlaps), 0);
    iothread_destroy(a);
    iothread_destroy(b);
    co_mutex_destroy(&t.m);
}

/* Readers share, writers exclude everyone, across two iothreads. */
struct rwtest {
    struct co_rwlock l;
    atomic_int readers, writers, bad, max_readers, finished;
};

static void rw_worker(void *opaque)
{
    struct rwtest *t = opaque;
    for (int i = 0; i < 300; i++) {
        bool write = (i % 5) == 0;
        if (write) {
            co_rwlock_wrlock(&t->l);
            if (atomic_fetch_add(&t->writers, 1) != 0 || atomic_load(&t->readers)) {
                atomic_fetch_add(&t->bad, 1);
            }
            co_sleep_ns(0);
            atomic_fetch_sub(&t->writers, 1);
        } else {
            co_rwlock_rdlock(&t->l);
            int r = atomic_fetch_add(&t->readers, 1) + 1;
            if (atomic_load(&t->writers)) {
                atomic_fetch_add(&t->bad, 1);
            }
            int m = atomic_load(&t->max_readers);
            while (r > m && !atomic_compare_exchange_weak(&t->max_readers, &m, r)) {
            }
            co_sleep_ns(0);
            atomic_fetch_sub(&t->readers, 1);
        }
        co_rwlock_unlock(&t->l);
    }
    atomic_fetch_add(&t->finished, 1);
    aio_wait_kick();
}

static void start_rw_workers(void *opaque)
{
    for (int i = 0; i < 6; i++) {
        co_enter(co_create(rw_worker, opaque));
    }
}

static void test_rwlock_two_iothreads(void)
{
    struct err err = { 0 };
    struct rwtest t;
    memset(&t, 0, sizeof(t));
    co_rwlock_init(&t.l);
    struct iothread *a = iothread_create("ra", NULL, &err);
    struct iothread *b = iothread_create("rb", NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    aio_bh_schedule_oneshot(iothread_ctx(a), start_rw_workers, &t);
    aio_bh_schedule_oneshot(iothread_ctx(b), start_rw_workers, &t);
    AIO_WAIT_WHILE(atomic_load(&t.finished) < 12);
    CU_ASSERT_EQUAL(atomic_load(&t.bad), 0);
    CU_ASSERT(atomic_load(&t.max_readers) > 1);
    iothread_destroy(a);
    iothread_destroy(b);
    co_rwlock_destroy(&t.l);
}

/* co_sleep_ns wakes sleepers in deadline order, not too early. */
struct sleeper_rec {
    int64_t ns;
    int *order;
    int *n;
    int id;
    int64_t woke_after;
};

static void sleep_co(void *opaque)
{
    struct sleeper_rec *s = opaque;
    int64_t start = clock_ns();
    co_sleep_ns(s->ns);
    s->woke_after = clock_ns() - start;
    s->order[(*s->n)++] = s->id;
}

static void test_sleep_order(void)
{
    int order[3], n = 0;
    struct sleeper_rec s[3] = {
        { 30000000, order, &n, 2, 0 },
        { 10000000, order, &n, 0, 0 },
        { 20000000, order, &n, 1, 0 },
    };
    for (int i = 0; i < 3; i++) {
        co_enter(co_create(sleep_co, &s[i]));
    }
    while (n < 3) {
        aio_poll(aio_main_context(), true);
    }
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(order[i], i);
        CU_ASSERT(s[i].woke_after >= s[i].ns);
    }
}

static int pool_fn(void *opaque)
{
    return *(int *)opaque * 2;
}

struct pool_test {
    int in, out;
};

static void pool_co(void *opaque)
{
    struct pool_test *p = opaque;
    p->out = thread_pool_co_run(pool_fn, &p->in);
}

static void test_thread_pool(void)
{
    struct pool_test p[16];
    for (int i = 0; i < 16; i++) {
        p[i].in = i;
        p[i].out = -1;
    }
    int done;
    do {
        done = 0;
        static bool started;
        if (!started) {
            for (int i = 0; i < 16; i++) {
                co_enter(co_create(pool_co, &p[i]));
            }
            started = true;
        }
        for (int i = 0; i < 16; i++) {
            done += p[i].out >= 0;
        }
        if (done < 16) {
            aio_poll(aio_main_context(), true);
        }
    } while (done < 16);
    for (int i = 0; i < 16; i++) {
        CU_ASSERT_EQUAL(p[i].out, 2 * i);
    }
}

struct sync_arg {
    int v;
};

static void sync_fn(void *opaque)
{
    struct sync_arg *a = opaque;
    co_sleep_ns(1000);
    a->v = 42;
}

static void test_run_sync(void)
{
    struct sync_arg a = { 0 };
    co_run_sync(sync_fn, &a);
    CU_ASSERT_EQUAL(a.v, 42);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("coroutine", NULL, NULL);
    CU_add_test(s, "enter_yield_return", test_enter_yield_return);
    CU_add_test(s, "nested", test_nested);
    CU_add_test(s, "pool_reuse", test_pool_reuse);
    CU_add_test(s, "stack_depth", test_stack_depth);
    CU_add_test(s, "queue_order", test_queue_order);
    CU_add_test(s, "wake_from_coroutine", test_wake_from_coroutine);
    CU_add_test(s, "cross_thread_wake", test_cross_thread_wake);
    CU_add_test(s, "mutex_two_iothreads", test_mutex_two_iothreads);
    CU_add_test(s, "rwlock_two_iothreads", test_rwlock_two_iothreads);
    CU_add_test(s, "sleep_order", test_sleep_order);
    CU_add_test(s, "thread_pool", test_thread_pool);
    CU_add_test(s, "run_sync", test_run_sync);
}
