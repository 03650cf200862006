/*
 * A one-shot completion that any thread may wait for: the main thread
 * keeps its event loop running while it waits (so work it must do for the
 * signaller still happens); other threads block on a condition variable.
 */
#ifndef SPINDLE_UTIL_COMPLETION_H
#define SPINDLE_UTIL_COMPLETION_H

#include <pthread.h>
#include "util/osdep.h"

struct completion {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool done;
};

void completion_init(struct completion *c);
void completion_destroy(struct completion *c);
/* Mark done and wake the waiter.  Any thread. */
void completion_signal(struct completion *c);
/* Wait until done.  Any thread but one the signaller needs (see above). */
void completion_wait(struct completion *c);

#endif
