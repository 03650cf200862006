/*
 * The event loop: timers fire in deadline order, bottom halves scheduled
 * from many threads all run (and wake a sleeping loop), fd handlers are
 * level-triggered and stop when removed, pollers run in the busy-poll
 * window with begin/end around it, and the window adapts.
 */
#include "tests/unit/harness.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/iothread.h"

static struct aio_context *ctx(void)
{
    return aio_main_context();
}

/* ---- Timers ------------------------------------------------------------ */

struct tick {
    int *order;
    int *n;
    int id;
};

static void tick_cb(void *opaque)
{
    struct tick *t = opaque;
    t->order[(*t->n)++] = t->id;
}

static void test_timer_order(void)
{
    int order[4], n = 0;
    struct tick ticks[4];
    struct aio_timer timers[4];
    int64_t now = clock_ns();
    int64_t delays[4] = { 4000000, 1000000, 3000000, 2000000 };

    for (int i = 0; i < 4; i++) {
        ticks[i] = (struct tick){ order, &n, i };
        aio_timer_init(&timers[i], ctx(), tick_cb, &ticks[i]);
        aio_timer_mod(&timers[i], now + delays[i]);
    }
    /* Re-arming moves a timer: 2 now goes last. */
    aio_timer_mod(&timers[2], now + 5000000);
    while (n < 4) {
        aio_poll(ctx(), true);
    }
    CU_ASSERT_EQUAL(order[0], 1);
    CU_ASSERT_EQUAL(order[1], 3);
    CU_ASSERT_EQUAL(order[2], 0);
    CU_ASSERT_EQUAL(order[3], 2);
    CU_ASSERT(clock_ns() - now >= 5000000);
}

static void test_timer_del(void)
{
    int order[1], n = 0;
    struct tick t = { order, &n, 7 };
    struct aio_timer timer;
    aio_timer_init(&timer, ctx(), tick_cb, &t);
    aio_timer_mod(&timer, clock_ns() + 1000000);
    CU_ASSERT_TRUE(aio_timer_pending(&timer));
    aio_timer_del(&timer);
    CU_ASSERT_FALSE(aio_timer_pending(&timer));
    int64_t until = clock_ns() + 3000000;
    while (clock_ns() < until) {
        aio_poll(ctx(), false);
    }
    CU_ASSERT_EQUAL(n, 0);
}

/* ---- Bottom halves ----------------------------------------------------- */

#define BH_THREADS 4
#define BH_PER_THREAD 2000

static atomic_int bh_count;

static void count_bh(void *opaque)
{
    atomic_fetch_add(&bh_count, 1);
}

static void *bh_thread(void *opaque)
{
    for (int i = 0; i < BH_PER_THREAD; i++) {
        aio_bh_schedule_oneshot(ctx(), count_bh, NULL);
    }
    return NULL;
}

static void test_bh_from_threads(void)
{
    pthread_t th[BH_THREADS];
    atomic_store(&bh_count, 0);
    for (int i = 0; i < BH_THREADS; i++) {
        pthread_create(&th[i], NULL, bh_thread, NULL);
    }
    /* Blocking polls: each must be woken by the eventfd, never hang. */
    while (atomic_load(&bh_count) < BH_THREADS * BH_PER_THREAD) {
        aio_poll(ctx(), true);
    }
    for (int i = 0; i < BH_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    CU_ASSERT_EQUAL(atomic_load(&bh_count), BH_THREADS * BH_PER_THREAD);
}

struct resched {
    struct aio_bh *bh;
    int runs;
};

static void resched_cb(void *opaque)
{
    struct resched *r = opaque;
    if (++r->runs < 5) {
        aio_bh_schedule(r->bh);
    }
}

static void test_bh_reschedule_and_dedup(void)
{
    struct resched r = { 0 };
    r.bh = aio_bh_new(ctx(), resched_cb, &r);
    aio_bh_schedule(r.bh);
    aio_bh_schedule(r.bh);      /* already scheduled: runs once */
    aio_poll(ctx(), false);
    CU_ASSERT_EQUAL(r.runs, 1);
    while (r.runs < 5) {
        aio_poll(ctx(), true);
    }
    CU_ASSERT_EQUAL(r.runs, 5);
    aio_bh_delete(r.bh);
    aio_poll(ctx(), false);
}

static void test_bh_delete_scheduled(void)
{
    struct resched r = { 0 };
    r.bh = aio_bh_new(ctx(), resched_cb, &r);
    aio_bh_schedule(r.bh);
    aio_bh_delete(r.bh);        /* dropped: never runs */
    aio_poll(ctx(), false);
    CU_ASSERT_EQUAL(r.runs, 0);
}

/* A blocking poll on an iothread is woken by a BH from the main thread. */
static void set_flag(void *opaque)
{
    atomic_store((atomic_int *)opaque, 1);
    aio_wait_kick();
}

static void test_bh_wakes_iothread(void)
{
    struct err err = { 0 };
    struct iothread *t = iothread_create("bhwake", NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    usleep(20000);          /* let it go to sleep */
    atomic_int flag = 0;
    aio_bh_schedule_oneshot(iothread_ctx(t), set_flag, &flag);
    AIO_WAIT_WHILE(!atomic_load(&flag));
    CU_ASSERT_EQUAL(atomic_load(&flag), 1);
    iothread_destroy(t);
}

/* ---- fd handlers ------------------------------------------------------- */

struct pipe_reader {
    int fd;
    int reads;
    int bytes;
    bool consume_one;
};

static void pipe_read_cb(void *opaque)
{
    struct pipe_reader *r = opaque;
    char buf[64];
    r->reads++;
    ssize_t n = read(r->fd, buf, r->consume_one ? 1 : sizeof(buf));
    if (n > 0) {
        r->bytes += (int)n;
    }
}

static void test_fd_handler_level(void)
{
    int p[2];
    CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
    struct pipe_reader r = { .fd = p[0], .consume_one = true };
    struct aio_fd_handler *h = aio_set_fd_handler(ctx(), p[0], pipe_read_cb, NULL, &r);
    CU_ASSERT_EQUAL(write(p[1], "abc", 3), 3);
    /* Level-triggered: a reader taking one byte at a time is called again. */
    while (r.bytes < 3) {
        aio_poll(ctx(), true);
    }
    CU_ASSERT_EQUAL(r.reads, 3);
    aio_del_fd_handler(h);
    CU_ASSERT_EQUAL(write(p[1], "d", 1), 1);
    for (int i = 0; i < 10; i++) {
        aio_poll(ctx(), false);
    }
    CU_ASSERT_EQUAL(r.bytes, 3);   /* removed: not called any more */
    close(p[0]);
    close(p[1]);
}

/* ---- Pollers ----------------------------------------------------------- */

/*
 * A fake device: work arrives every ~50 us; like a virtqueue it kicks an
 * eventfd only while its consumer is not polling it.
 */
struct poll_state {
    int efd;
    atomic_bool polling;
    atomic_int pending;
    int begins, by_poll, by_kick;
};

static bool take_work(struct poll_state *p)
{
    int n = atomic_load(&p->pending);
    while (n > 0 && !atomic_compare_exchange_weak(&p->pending, &n, n - 1)) {
    }
    return n > 0;
}

static bool poll_fn(void *opaque)
{
    struct poll_state *p = opaque;
    bool found = false;
    while (take_work(p)) {
        p->by_poll++;
        found = true;
    }
    return found;
}

static void poll_begin(void *opaque)
{
    struct poll_state *p = opaque;
    p->begins++;
    atomic_store(&p->polling, true);
}

static void poll_end(void *opaque)
{
    struct poll_state *p = opaque;
    atomic_store(&p->polling, false);
}

static void kick_cb(void *opaque)
{
    struct poll_state *p = opaque;
    uint64_t v;
    if (read(p->efd, &v, sizeof(v)) < 0) {
        return;
    }
    while (take_work(p)) {
        p->by_kick++;
    }
}

static void *producer(void *opaque)
{
    struct poll_state *p = opaque;
    for (int i = 0; i < 400; i++) {
        atomic_fetch_add(&p->pending, 1);
        smp_mb();
        if (!atomic_load(&p->polling)) {
            uint64_t one = 1;
            if (write(p->efd, &one, sizeof(one)) < 0) {
                break;
            }
        }
        usleep(50);
    }
    return NULL;
}

static void test_poller_window(void)
{
    struct aio_context *c = aio_context_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    struct aio_context *saved = aio_context_current();
    aio_context_attach_thread(c);
    aio_set_poll_params(c, 500000, 2, 2);

    struct poll_state p = { .efd = eventfd(0, EFD_NONBLOCK) };
    struct aio_fd_handler *h = aio_set_fd_handler(c, p.efd, kick_cb, NULL, &p);
    struct aio_poller *poller = aio_add_poller(c, poll_fn, poll_begin, poll_end, &p);
    pthread_t th;
    pthread_create(&th, NULL, producer, &p);
    int64_t deadline = clock_ns() + 10000000000LL;
    while (p.by_poll + p.by_kick < 400 && clock_ns() < deadline) {
        aio_poll(c, true);
    }
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(p.by_poll + p.by_kick, 400);
    /* The window grew until polling found most of the work. */
    CU_ASSERT(p.begins >= 1);
    CU_ASSERT(p.by_poll > p.by_kick);
    CU_ASSERT(aio_poll_ns(c) > 0);
    aio_del_poller(poller);
    aio_del_fd_handler(h);
    aio_poll(c, false);
    close(p.efd);
    aio_context_attach_thread(saved);
    aio_context_free(c);
}

static void run_on_fn(void *opaque)
{
    *(struct aio_context **)opaque = aio_context_current();
}

static void test_run_on(void)
{
    struct err err = { 0 };
    struct iothread *t = iothread_create("runon", NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct aio_context *seen = NULL;
    aio_run_on(iothread_ctx(t), run_on_fn, &seen);
    CU_ASSERT_PTR_EQUAL(seen, iothread_ctx(t));
    iothread_destroy(t);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("aio", NULL, NULL);
    CU_add_test(s, "timer_order", test_timer_order);
    CU_add_test(s, "timer_del", test_timer_del);
    CU_add_test(s, "bh_from_threads", test_bh_from_threads);
    CU_add_test(s, "bh_reschedule_and_dedup", test_bh_reschedule_and_dedup);
    CU_add_test(s, "bh_delete_scheduled", test_bh_delete_scheduled);
    CU_add_test(s, "bh_wakes_iothread", test_bh_wakes_iothread);
    CU_add_test(s, "fd_handler_level", test_fd_handler_level);
    CU_add_test(s, "poller_window", test_poller_window);
    CU_add_test(s, "run_on", test_run_on);
}
