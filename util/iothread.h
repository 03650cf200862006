/*
 * IOthreads: named threads, each running one aio_context until destroyed.
 * Devices and exports bind their queues to an iothread by its id
 * (`-object iothread,id=io0,poll-max-ns=32768`).
 */
#ifndef SPINDLE_UTIL_IOTHREAD_H
#define SPINDLE_UTIL_IOTHREAD_H

#include "util/aio.h"
#include "util/error.h"

struct iothread;

struct iothread_opts {
    int64_t poll_max_ns;     /* -1: the default (32768), 0: never busy-poll */
    int64_t poll_grow;       /* 0: default */
    int64_t poll_shrink;     /* 0: default */
    int cpu;                 /* -1: no affinity */
};

#define IOTHREAD_POLL_MAX_NS_DEFAULT 32768

void iothread_opts_default(struct iothread_opts *o);

/* Start a thread with its own context; ids are unique. */
struct iothread *iothread_create(const char *id, const struct iothread_opts *opts,
                                 struct err *err);
/* Stop the thread (after its queued work) and free it.  Main thread. */
void iothread_destroy(struct iothread *t);
void iothread_destroy_all(void);

struct iothread *iothread_find(const char *id);
const char *iothread_id(const struct iothread *t);
struct aio_context *iothread_ctx(const struct iothread *t);
/* The kernel's thread id, for `query-iothreads`. */
int iothread_tid(const struct iothread *t);
/* The options it was created with (poll_max_ns -1 stands for the default). */
const struct iothread_opts *iothread_get_opts(const struct iothread *t);

/* Call fn(t, opaque) for every iothread, in creation order. */
void iothread_foreach(void (*fn)(struct iothread *t, void *opaque), void *opaque);

#endif
