/* Named threads that each run an aio_context. */
#include "util/iothread.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/coroutine.h"
#include "util/list.h"
#include "util/log.h"

struct iothread {
    struct list_node link;
    char *id;
    struct aio_context *ctx;
    pthread_t thread;
    int tid;
    atomic_bool running;
    bool stopping;           /* set on the thread itself, by stop_bh */
    struct iothread_opts opts;
};

static struct list_node iothreads = LIST_HEAD_INIT(iothreads);
static pthread_mutex_t iothreads_lock = PTHREAD_MUTEX_INITIALIZER;

void iothread_opts_default(struct iothread_opts *o)
{
    o->poll_max_ns = -1;
    o->poll_grow = 0;
    o->poll_shrink = 0;
    o->cpu = -1;
}

static void *iothread_main(void *opaque)
{
    struct iothread *t = opaque;
    char name[16];

    snprintf(name, sizeof(name), "io-%s", t->id);
    pthread_setname_np(pthread_self(), name);
    aio_context_attach_thread(t->ctx);
    t->tid = (int)syscall(SYS_gettid);
    atomic_store(&t->running, true);
    aio_wait_kick();
    while (!t->stopping) {
        aio_poll(t->ctx, true);
    }
    aio_context_free(t->ctx);
    co_thread_exit();
    return NULL;
}

struct iothread *iothread_create(const char *id, const struct iothread_opts *opts,
                                 struct err *err)
{
    struct iothread_opts defaults;

    if (!id || !*id) {
        err_set(err, "an iothread needs an id");
        return NULL;
    }
    if (iothread_find(id)) {
        err_set(err, "iothread '%s' already exists", id);
        return NULL;
    }
    if (!opts) {
        iothread_opts_default(&defaults);
        opts = &defaults;
    }
    struct iothread *t = xzalloc(sizeof(*t));
    t->id = xstrdup(id);
    t->opts = *opts;
    t->ctx = aio_context_new(err);
    if (!t->ctx) {
        err_prepend(err, "iothread '%s': ", id);
        free(t->id);
        free(t);
        return NULL;
    }
    int64_t max_ns = opts->poll_max_ns < 0 ? IOTHREAD_POLL_MAX_NS_DEFAULT : opts->poll_max_ns;
    aio_set_poll_params(t->ctx, max_ns, opts->poll_grow, opts->poll_shrink);

    int ret = pthread_create(&t->thread, NULL, iothread_main, t);
    if (ret) {
        err_set_errno(err, ret, "iothread '%s': cannot start a thread", id);
        aio_context_free(t->ctx);
        free(t->id);
        free(t);
        return NULL;
    }
    if (opts->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(opts->cpu, &set);
        ret = pthread_setaffinity_np(t->thread, sizeof(set), &set);
        if (ret) {
            log_warn("iothread '%s': cannot bind to CPU %d: %s", id, opts->cpu, strerror(ret));
        }
    }
    if (aio_main_context() && aio_in_main_thread()) {
        AIO_WAIT_WHILE(!atomic_load(&t->running));
    }
    pthread_mutex_lock(&iothreads_lock);
    list_add_tail(&iothreads, &t->link);
    pthread_mutex_unlock(&iothreads_lock);
    return t;
}

static void stop_bh(void *opaque)
{
    struct iothread *t = opaque;
    t->stopping = true;
}

void iothread_destroy(struct iothread *t)
{
    if (!t) {
        return;
    }
    pthread_mutex_lock(&iothreads_lock);
    list_del(&t->link);
    pthread_mutex_unlock(&iothreads_lock);
    aio_bh_schedule_oneshot(t->ctx, stop_bh, t);
    pthread_join(t->thread, NULL);
    free(t->id);
    free(t);
}

void iothread_destroy_all(void)
{
    for (;;) {
        pthread_mutex_lock(&iothreads_lock);
        struct iothread *t = list_first(&iothreads, struct iothread, link);
        pthread_mutex_unlock(&iothreads_lock);
        if (!t) {
            return;
        }
        iothread_destroy(t);
    }
}

struct iothread *iothread_find(const char *id)
{
    struct iothread *t, *found = NULL;
    pthread_mutex_lock(&iothreads_lock);
    list_for_each(t, &iothreads, link) {
        if (!strcmp(t->id, id)) {
            found = t;
            break;
        }
    }
    pthread_mutex_unlock(&iothreads_lock);
    return found;
}

const char *iothread_id(const struct iothread *t)
{
    return t->id;
}

struct aio_context *iothread_ctx(const struct iothread *t)
{
    return t->ctx;
}

int iothread_tid(const struct iothread *t)
{
    return t->tid;
}

const struct iothread_opts *iothread_get_opts(const struct iothread *t)
{
    return &t->opts;
}

void iothread_foreach(void (*fn)(struct iothread *t, void *opaque), void *opaque)
{
    struct iothread *t;
    /* Iothreads are created and destroyed on the main thread only. */
    list_for_each(t, &iothreads, link) {
        fn(t, opaque);
    }
}
