/*
 * The file driver's I/O engines: one per aio mode.  An engine moves bytes
 * between an fd and an iovec and knows nothing of nodes; the driver
 * (file.c) handles alignment bounces, short transfers and retries.
 *
 * Every call is coroutine_fn and completes on the calling thread: the
 * io_uring engine submits on the calling thread's ring, the native engine
 * on the calling thread's libaio context, the threads engine hands the
 * call to the thread pool.
 */
#ifndef SPINDLE_BLOCK_FILE_ENGINE_H
#define SPINDLE_BLOCK_FILE_ENGINE_H

#include <sys/uio.h>
#include "util/coroutine.h"

struct file_engine {
    const char *name;                /* "io_uring", "native", "threads" */
    /* Bytes transferred (possibly short), or -errno.  rw_flags: RWF_DSYNC. */
    ssize_t (*co_rw)(int fd, int64_t offset, const struct iovec *iov, int niov, bool write,
                     int rw_flags);
    int (*co_fdatasync)(int fd);
    int (*co_fallocate)(int fd, int mode, int64_t offset, int64_t len);
};

extern const struct file_engine file_engine_io_uring;
extern const struct file_engine file_engine_native;
extern const struct file_engine file_engine_threads;

/* Thread-pool implementations, shared by the engines that lack their own. */
int coroutine_fn file_threads_co_fdatasync(int fd);
int coroutine_fn file_threads_co_fallocate(int fd, int mode, int64_t offset, int64_t len);
/* Run an ioctl (BLKDISCARD, BLKZEROOUT) on the thread pool. */
int coroutine_fn file_threads_co_ioctl(int fd, unsigned long req, void *arg);

#endif
