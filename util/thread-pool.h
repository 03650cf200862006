/*
 * A pool of worker threads for work that blocks or burns CPU: the
 * aio=threads engine, fsync on some paths, compression.  Workers start on
 * demand up to a limit and exit after a while idle.
 */
#ifndef SPINDLE_UTIL_THREAD_POOL_H
#define SPINDLE_UTIL_THREAD_POOL_H

#include "util/coroutine.h"

/*
 * Run fn(opaque) on a worker and yield until it returns; returns its result.
 * coroutine_fn; the caller's coroutine resumes on its own thread.
 */
int coroutine_fn thread_pool_co_run(int (*fn)(void *opaque), void *opaque);

/* Most workers at once (default 64). */
void thread_pool_set_max_workers(int n);
int thread_pool_max_workers(void);

#endif
