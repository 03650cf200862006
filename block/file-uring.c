/*
 * The io_uring engine: each request is an SQE on the calling thread's
 * ring, submitted with everything else prepared in the same loop iteration.
 */
#include "block/file-engine.h"

#include <linux/fs.h>

#include "util/aio.h"

struct uring_req {
    struct aio_completion comp;
    struct coroutine *co;
    int res;
};

static void uring_done(struct aio_completion *c, int res, uint32_t flags)
{
    struct uring_req *r = container_of(c, struct uring_req, comp);
    r->res = res;
    co_wake(r->co);
}

/* Put the SQE prepared by prep on this thread's ring and wait for its CQE. */
static int coroutine_fn uring_submit_wait(struct io_uring_sqe *sqe, struct uring_req *r)
{
    r->comp.cb = uring_done;
    r->co = co_self();
    io_uring_sqe_set_data(sqe, &r->comp);
    co_yield();
    return r->res;
}

static ssize_t coroutine_fn uring_co_rw(int fd, int64_t offset, const struct iovec *iov,
                                        int niov, bool write, int rw_flags)
{
    struct io_uring_sqe *sqe = aio_get_sqe(aio_context_current());
    struct uring_req r;

    /* A single buffer avoids the kernel copying an iovec array. */
    if (niov == 1) {
        if (write) {
            io_uring_prep_write(sqe, fd, iov->iov_base, iov->iov_len, offset);
        } else {
            io_uring_prep_read(sqe, fd, iov->iov_base, iov->iov_len, offset);
        }
    } else if (write) {
        io_uring_prep_writev(sqe, fd, iov, niov, offset);
    } else {
        io_uring_prep_readv(sqe, fd, iov, niov, offset);
    }
    sqe->rw_flags = rw_flags;
    return uring_submit_wait(sqe, &r);
}

static int coroutine_fn uring_co_fdatasync(int fd)
{
    struct io_uring_sqe *sqe = aio_get_sqe(aio_context_current());
    struct uring_req r;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    return uring_submit_wait(sqe, &r);
}

static int coroutine_fn uring_co_fallocate(int fd, int mode, int64_t offset, int64_t len)
{
    struct io_uring_sqe *sqe = aio_get_sqe(aio_context_current());
    struct uring_req r;
    io_uring_prep_fallocate(sqe, fd, mode, offset, len);
    return uring_submit_wait(sqe, &r);
}

const struct file_engine file_engine_io_uring = {
    .name = "io_uring",
    .co_rw = uring_co_rw,
    .co_fdatasync = uring_co_fdatasync,
    .co_fallocate = uring_co_fallocate,
};
