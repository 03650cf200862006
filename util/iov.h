/*
 * I/O vectors.  A qiov is an iovec array with its total size; requests
 * travel down the graph as (offset, bytes, qiov, qiov_offset) so a layer can
 * address part of its caller's vector without copying it.
 */
#ifndef SPINDLE_UTIL_IOV_H
#define SPINDLE_UTIL_IOV_H

#include <sys/uio.h>
#include "util/osdep.h"

struct qiov {
    struct iovec *iov;
    int niov;
    int nalloc;             /* 0: iov is borrowed, not ours to free */
    size_t size;
    struct iovec local;     /* storage for the one-buffer case */
};

/* An empty vector with room for hint entries. */
void qiov_init(struct qiov *q, int hint);
/* A vector over one buffer; needs no qiov_destroy. */
void qiov_init_buf(struct qiov *q, void *buf, size_t len);
/* A vector that borrows an iovec array (not copied, not freed). */
void qiov_init_external(struct qiov *q, struct iovec *iov, int niov);
void qiov_destroy(struct qiov *q);
void qiov_reset(struct qiov *q);

void qiov_add(struct qiov *q, void *base, size_t len);
/* Append the [offset, offset+bytes) part of src (no data copied). */
void qiov_concat(struct qiov *dst, const struct qiov *src, size_t offset, size_t bytes);

/* Copy between a vector and a flat buffer; return the bytes copied. */
size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset, void *buf, size_t bytes);
size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset, const void *buf,
                    size_t bytes);
size_t iov_memset(const struct iovec *iov, int niov, size_t offset, int c, size_t bytes);
size_t iov_size(const struct iovec *iov, int niov);

static inline size_t qiov_to_buf(const struct qiov *q, size_t offset, void *buf, size_t bytes)
{
    return iov_to_buf(q->iov, q->niov, offset, buf, bytes);
}

static inline size_t qiov_from_buf(const struct qiov *q, size_t offset, const void *buf,
                                   size_t bytes)
{
    return iov_from_buf(q->iov, q->niov, offset, buf, bytes);
}

static inline size_t qiov_memset(const struct qiov *q, size_t offset, int c, size_t bytes)
{
    return iov_memset(q->iov, q->niov, offset, c, bytes);
}

/* Whether [offset, offset+bytes) of the vector is all zeroes. */
bool qiov_is_zero(const struct qiov *q, size_t offset, size_t bytes);

/* Whether every element's base and length is a multiple of align. */
bool qiov_is_aligned(const struct qiov *q, size_t offset, size_t bytes, size_t align);

/*
 * Fill out[] (at most max entries) with the iovecs covering [offset,
 * offset+bytes) of src; returns the number used, or -1 if more are needed.
 */
int iov_slice(const struct iovec *src, int nsrc, size_t offset, size_t bytes,
              struct iovec *out, int max);

#endif
