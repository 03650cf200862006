/*
 * The native engine: Linux AIO (libaio) with one io_context per thread.
 * Requests prepared in one loop iteration are submitted together by one
 * io_submit when the loop flushes; completions are signalled on an eventfd
 * and reaped in user space batches.
 */
#include "block/file-engine.h"

#include <libaio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/log.h"

#define LAIO_MAX_EVENTS 1024

struct laio_req {
    struct iocb iocb;
    struct coroutine *co;
    long res;
    struct list_node link;       /* waiting for io_submit */
};

struct laio_state {
    io_context_t io_ctx;
    int efd;
    struct aio_context *ctx;
    struct aio_fd_handler *handler;
    struct aio_flush flush;
    struct list_node pending;    /* prepared, not yet submitted */
    int in_kernel;               /* submitted, not yet completed */
};

/*
 * The completion ring the kernel shares with us at the io_context address:
 * reading it directly saves an io_getevents system call per batch.  Only a
 * ring with the known magic and no incompatible features is read this way.
 */
static void laio_flush(struct aio_flush *f);

struct aio_ring_header {
    unsigned id;
    unsigned nr;
    unsigned head;
    unsigned tail;
    unsigned magic;
    unsigned compat_features;
    unsigned incompat_features;
    unsigned header_length;
};

#define AIO_RING_MAGIC 0xa10a10a1u

static void laio_finish(struct laio_state *s, struct io_event *ev)
{
    struct laio_req *r = container_of(ev->obj, struct laio_req, iocb);
    /* res is bytes or -errno; res2 carries nothing for files. */
    r->res = (long)ev->res;
    s->in_kernel--;
    co_wake(r->co);
    /*
     * The woken request usually issued its successor: submit it now rather
     * than after the whole batch, so the device does not idle (as io_uring
     * completions do in aio.c).
     */
    if (!list_empty(&s->pending)) {
        laio_flush(&s->flush);
    }
}

/* Reap from the shared ring; false when it cannot be read in user space. */
static bool laio_reap_ring(struct laio_state *s)
{
    struct aio_ring_header *ring = (struct aio_ring_header *)s->io_ctx;
    if (ring->magic != AIO_RING_MAGIC || ring->incompat_features) {
        return false;
    }
    struct io_event *events = (struct io_event *)(ring + 1);
    for (;;) {
        unsigned head = ring->head % ring->nr;
        unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE) % ring->nr;
        if (head == tail) {
            return true;
        }
        /* Take the events up to the tail (or the end of the ring), then free the slots. */
        unsigned n = tail > head ? tail - head : ring->nr - head;
        struct io_event batch[64];
        n = MIN(n, (unsigned)ARRAY_SIZE(batch));
        memcpy(batch, &events[head], n * sizeof(batch[0]));
        __atomic_store_n(&ring->head, (head + n) % ring->nr, __ATOMIC_RELEASE);
        for (unsigned i = 0; i < n; i++) {
            laio_finish(s, &batch[i]);
        }
    }
}

static void laio_complete(void *opaque)
{
    struct laio_state *s = opaque;
    uint64_t count;

    if (read(s->efd, &count, sizeof(count)) < 0 && errno != EAGAIN) {
        log_error("libaio eventfd read failed: %s", strerror(errno));
    }
    if (!laio_reap_ring(s)) {
        struct io_event events[64];
        struct timespec zero = { 0, 0 };
        int n;
        while ((n = io_getevents(s->io_ctx, 0, ARRAY_SIZE(events), events, &zero)) > 0) {
            for (int i = 0; i < n; i++) {
                laio_finish(s, &events[i]);
            }
        }
    }
    /* Room in the kernel again: push what waited. */
    if (!list_empty(&s->pending)) {
        aio_queue_flush(s->ctx, &s->flush);
    }
}

/* Submit everything prepared so far, as far as the kernel takes it. */
static void laio_flush(struct aio_flush *f)
{
    struct laio_state *s = container_of(f, struct laio_state, flush);
    struct iocb *batch[128];

    while (!list_empty(&s->pending) && s->in_kernel < LAIO_MAX_EVENTS) {
        int n = 0;
        struct laio_req *r;
        list_for_each(r, &s->pending, link) {
            if (n == (int)ARRAY_SIZE(batch) || s->in_kernel + n == LAIO_MAX_EVENTS) {
                break;
            }
            batch[n++] = &r->iocb;
        }
        int ret = io_submit(s->io_ctx, n, batch);
        if (ret == -EAGAIN) {
            return;      /* retried when a completion frees a slot */
        }
        if (ret < 0) {
            /* Fail the first request; the rest are tried again. */
            r = list_entry(s->pending.next, struct laio_req, link);
            list_del(&r->link);
            r->res = ret;
            co_wake(r->co);
            continue;
        }
        for (int i = 0; i < ret; i++) {
            r = container_of(batch[i], struct laio_req, iocb);
            list_del(&r->link);
        }
        s->in_kernel += ret;
    }
}

static void laio_state_free(void *data)
{
    struct laio_state *s = data;
    aio_del_fd_handler(s->handler);
    io_destroy(s->io_ctx);
    close(s->efd);
    free(s);
}

static struct laio_state *laio_get(int *err)
{
    struct aio_context *ctx = aio_context_current();
    struct laio_state *s = aio_get_slot(ctx, AIO_SLOT_LINUX_AIO);
    if (s) {
        return s;
    }
    s = xzalloc(sizeof(*s));
    int ret = io_setup(LAIO_MAX_EVENTS, &s->io_ctx);
    if (ret < 0) {
        *err = ret;
        free(s);
        return NULL;
    }
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        *err = -errno;
        io_destroy(s->io_ctx);
        free(s);
        return NULL;
    }
    s->ctx = ctx;
    list_init(&s->pending);
    aio_flush_init(&s->flush, laio_flush);
    s->handler = aio_set_fd_handler(ctx, s->efd, laio_complete, NULL, s);
    aio_set_slot(ctx, AIO_SLOT_LINUX_AIO, s, laio_state_free);
    return s;
}

static long coroutine_fn laio_submit_wait(struct laio_req *r)
{
    int err = 0;
    struct laio_state *s = laio_get(&err);
    if (!s) {
        return err;
    }
    io_set_eventfd(&r->iocb, s->efd);
    r->co = co_self();
    list_add_tail(&s->pending, &r->link);
    aio_queue_flush(s->ctx, &s->flush);
    co_yield();
    return r->res;
}

static ssize_t coroutine_fn native_co_rw(int fd, int64_t offset, const struct iovec *iov,
                                         int niov, bool write, int rw_flags)
{
    struct laio_req r;
    memset(&r, 0, sizeof(r));
    if (write) {
        io_prep_pwritev(&r.iocb, fd, iov, niov, offset);
    } else {
        io_prep_preadv(&r.iocb, fd, iov, niov, offset);
    }
    r.iocb.aio_rw_flags = rw_flags;
    return laio_submit_wait(&r);
}

const struct file_engine file_engine_native = {
    .name = "native",
    .co_rw = native_co_rw,
    .co_fdatasync = file_threads_co_fdatasync,
    .co_fallocate = file_threads_co_fallocate,
};
