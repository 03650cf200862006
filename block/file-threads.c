/* The threads engine: plain system calls on the thread pool. */
#include "block/file-engine.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/thread-pool.h"

struct pool_rw {
    int fd;
    int64_t offset;
    const struct iovec *iov;
    int niov;
    bool write;
    int rw_flags;
};

static int pool_rw_fn(void *opaque)
{
    struct pool_rw *p = opaque;
    ssize_t n;
    do {
        if (p->write) {
            n = pwritev2(p->fd, p->iov, p->niov, p->offset, p->rw_flags);
        } else {
            n = preadv2(p->fd, p->iov, p->niov, p->offset, p->rw_flags);
        }
    } while (n < 0 && errno == EINTR);
    /* Transfers are capped below 2 GiB by the request path, so an int holds them. */
    return n < 0 ? -errno : (int)n;
}

static ssize_t coroutine_fn threads_co_rw(int fd, int64_t offset, const struct iovec *iov,
                                          int niov, bool write, int rw_flags)
{
    struct pool_rw p = { fd, offset, iov, niov, write, rw_flags };
    return thread_pool_co_run(pool_rw_fn, &p);
}

static int fdatasync_fn(void *opaque)
{
    int fd = *(int *)opaque;
    return fdatasync(fd) < 0 ? -errno : 0;
}

int coroutine_fn file_threads_co_fdatasync(int fd)
{
    return thread_pool_co_run(fdatasync_fn, &fd);
}

struct pool_falloc {
    int fd, mode;
    int64_t offset, len;
};

static int fallocate_fn(void *opaque)
{
    struct pool_falloc *p = opaque;
    return fallocate(p->fd, p->mode, p->offset, p->len) < 0 ? -errno : 0;
}

int coroutine_fn file_threads_co_fallocate(int fd, int mode, int64_t offset, int64_t len)
{
    struct pool_falloc p = { fd, mode, offset, len };
    return thread_pool_co_run(fallocate_fn, &p);
}

struct pool_ioctl {
    int fd;
    unsigned long req;
    void *arg;
};

static int ioctl_fn(void *opaque)
{
    struct pool_ioctl *p = opaque;
    return ioctl(p->fd, p->req, p->arg) < 0 ? -errno : 0;
}

int coroutine_fn file_threads_co_ioctl(int fd, unsigned long req, void *arg)
{
    struct pool_ioctl p = { fd, req, arg };
    return thread_pool_co_run(ioctl_fn, &p);
}

const struct file_engine file_engine_threads = {
    .name = "threads",
    .co_rw = threads_co_rw,
    .co_fdatasync = file_threads_co_fdatasync,
    .co_fallocate = file_threads_co_fallocate,
};
