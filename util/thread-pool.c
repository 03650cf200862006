/* Worker threads that run blocking functions for coroutines. */
#include "util/thread-pool.h"

#include <pthread.h>
#include <time.h>

#include "util/list.h"
#include "util/log.h"

#define IDLE_EXIT_NS (10LL * 1000000000LL)

struct pool_job {
    struct list_node link;
    int (*fn)(void *opaque);
    void *opaque;
    int ret;
    struct coroutine *co;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static struct list_node pool_jobs = LIST_HEAD_INIT(pool_jobs);
static int workers, idle_workers, max_workers = 64;

void thread_pool_set_max_workers(int n)
{
    pthread_mutex_lock(&pool_lock);
    max_workers = n > 0 ? n : 1;
    pthread_mutex_unlock(&pool_lock);
}

int thread_pool_max_workers(void)
{
    return max_workers;
}

static void *worker_main(void *opaque)
{
    pthread_setname_np(pthread_self(), "pool-worker");
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        while (list_empty(&pool_jobs)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += IDLE_EXIT_NS / 1000000000LL;
            idle_workers++;
            int ret = pthread_cond_timedwait(&pool_cond, &pool_lock, &until);
            idle_workers--;
            if (ret == ETIMEDOUT && list_empty(&pool_jobs)) {
                workers--;
                pthread_mutex_unlock(&pool_lock);
                return NULL;
            }
        }
        struct pool_job *job = list_entry(pool_jobs.next, struct pool_job, link);
        list_del(&job->link);
        pthread_mutex_unlock(&pool_lock);

        job->ret = job->fn(job->opaque);
        co_wake(job->co);

        pthread_mutex_lock(&pool_lock);
    }
}

int coroutine_fn thread_pool_co_run(int (*fn)(void *opaque), void *opaque)
{
    struct pool_job job = { .fn = fn, .opaque = opaque, .co = co_self() };
    bool spawn = false;

    pthread_mutex_lock(&pool_lock);
    list_add_tail(&pool_jobs, &job.link);
    if (idle_workers == 0 && workers < max_workers) {
        workers++;
        spawn = true;
    } else {
        pthread_cond_signal(&pool_cond);
    }
    pthread_mutex_unlock(&pool_lock);

    if (spawn) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int ret = pthread_create(&th, &attr, worker_main, NULL);
        pthread_attr_destroy(&attr);
        if (ret) {
            pthread_mutex_lock(&pool_lock);
            workers--;
            bool none = workers == 0;
            if (none) {
                list_del(&job.link);
            }
            pthread_mutex_unlock(&pool_lock);
            if (none) {
                log_error("cannot start a worker thread: %s", strerror(ret));
                return -ret;
            }
        }
    }
    co_yield();
    return job.ret;
}
