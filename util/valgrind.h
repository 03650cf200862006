/*
 * Telling valgrind's memcheck what it cannot see: the kernel filling
 * buffers through io_uring (no system call names the buffer, so memcheck
 * would think a read left it uninitialised).  No-ops without valgrind.
 */
#ifndef SPINDLE_UTIL_VALGRIND_H
#define SPINDLE_UTIL_VALGRIND_H

#include <sys/uio.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
static inline void mem_mark_defined_iov(const struct iovec *iov, int niov, size_t bytes)
{
    for (int i = 0; i < niov && bytes; i++) {
        size_t n = iov[i].iov_len < bytes ? iov[i].iov_len : bytes;
        VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, n);
        bytes -= n;
    }
}
#else
static inline void mem_mark_defined_iov(const struct iovec *iov, int niov, size_t bytes)
{
    (void)iov;
    (void)niov;
    (void)bytes;
}
#endif

#endif
