/* One-shot completions waited for from any thread. */
#include "util/completion.h"

#include "util/aio.h"

void completion_init(struct completion *c)
{
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    atomic_store(&c->done, false);
}

void completion_destroy(struct completion *c)
{
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
}

void completion_signal(struct completion *c)
{
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->done, true);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    aio_wait_kick();
}

void completion_wait(struct completion *c)
{
    if (aio_in_main_thread()) {
        AIO_WAIT_WHILE(!atomic_load(&c->done));
        return;
    }
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->done)) {
        pthread_cond_wait(&c->cond, &c->lock);
    }
    pthread_mutex_unlock(&c->lock);
}
