/* I/O vector helpers. */
#include "util/iov.h"

void qiov_init(struct qiov *q, int hint)
{
    if (hint < 1) {
        hint = 1;
    }
    q->iov = xmalloc(sizeof(*q->iov) * hint);
    q->niov = 0;
    q->nalloc = hint;
    q->size = 0;
}

void qiov_init_buf(struct qiov *q, void *buf, size_t len)
{
    q->local.iov_base = buf;
    q->local.iov_len = len;
    q->iov = &q->local;
    q->niov = 1;
    q->nalloc = 0;
    q->size = len;
}

void qiov_init_external(struct qiov *q, struct iovec *iov, int niov)
{
    q->iov = iov;
    q->niov = niov;
    q->nalloc = 0;
    q->size = iov_size(iov, niov);
}

void qiov_destroy(struct qiov *q)
{
    if (q->nalloc) {
        free(q->iov);
    }
    q->iov = NULL;
    q->niov = q->nalloc = 0;
    q->size = 0;
}

void qiov_reset(struct qiov *q)
{
    q->niov = 0;
    q->size = 0;
}

void qiov_add(struct qiov *q, void *base, size_t len)
{
    if (!len) {
        return;
    }
    /* Merge with the previous element when contiguous. */
    if (q->niov && (char *)q->iov[q->niov - 1].iov_base + q->iov[q->niov - 1].iov_len == base) {
        q->iov[q->niov - 1].iov_len += len;
        q->size += len;
        return;
    }
    if (q->niov == q->nalloc) {
        q->nalloc = q->nalloc ? 2 * q->nalloc : 4;
        q->iov = xrealloc(q->iov, sizeof(*q->iov) * q->nalloc);
    }
    q->iov[q->niov].iov_base = base;
    q->iov[q->niov].iov_len = len;
    q->niov++;
    q->size += len;
}

void qiov_concat(struct qiov *dst, const struct qiov *src, size_t offset, size_t bytes)
{
    for (int i = 0; i < src->niov && bytes; i++) {
        size_t len = src->iov[i].iov_len;
        if (offset >= len) {
            offset -= len;
            continue;
        }
        size_t n = MIN(len - offset, bytes);
        qiov_add(dst, (char *)src->iov[i].iov_base + offset, n);
        bytes -= n;
        offset = 0;
    }
}

size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset, void *buf, size_t bytes)
{
    size_t done = 0;
    for (int i = 0; i < niov && done < bytes; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t n = MIN(iov[i].iov_len - offset, bytes - done);
        memcpy((char *)buf + done, (char *)iov[i].iov_base + offset, n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset, const void *buf,
                    size_t bytes)
{
    size_t done = 0;
    for (int i = 0; i < niov && done < bytes; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t n = MIN(iov[i].iov_len - offset, bytes - done);
        memcpy((char *)iov[i].iov_base + offset, (const char *)buf + done, n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t iov_memset(const struct iovec *iov, int niov, size_t offset, int c, size_t bytes)
{
    size_t done = 0;
    for (int i = 0; i < niov && done < bytes; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t n = MIN(iov[i].iov_len - offset, bytes - done);
        memset((char *)iov[i].iov_base + offset, c, n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t iov_size(const struct iovec *iov, int niov)
{
    size_t n = 0;
    for (int i = 0; i < niov; i++) {
        n += iov[i].iov_len;
    }
    return n;
}

bool qiov_is_zero(const struct qiov *q, size_t offset, size_t bytes)
{
    for (int i = 0; i < q->niov && bytes; i++) {
        size_t len = q->iov[i].iov_len;
        if (offset >= len) {
            offset -= len;
            continue;
        }
        size_t n = MIN(len - offset, bytes);
        if (!buffer_is_zero((char *)q->iov[i].iov_base + offset, n)) {
            return false;
        }
        bytes -= n;
        offset = 0;
    }
    return true;
}

bool qiov_is_aligned(const struct qiov *q, size_t offset, size_t bytes, size_t align)
{
    for (int i = 0; i < q->niov && bytes; i++) {
        size_t len = q->iov[i].iov_len;
        if (offset >= len) {
            offset -= len;
            continue;
        }
        uintptr_t base = (uintptr_t)q->iov[i].iov_base + offset;
        size_t n = MIN(len - offset, bytes);
        if (base % align || n % align) {
            return false;
        }
        bytes -= n;
        offset = 0;
    }
    return true;
}

int iov_slice(const struct iovec *src, int nsrc, size_t offset, size_t bytes,
              struct iovec *out, int max)
{
    int n = 0;
    for (int i = 0; i < nsrc && bytes; i++) {
        size_t len = src[i].iov_len;
        if (offset >= len) {
            offset -= len;
            continue;
        }
        if (n == max) {
            return -1;
        }
        size_t c = MIN(len - offset, bytes);
        out[n].iov_base = (char *)src[i].iov_base + offset;
        out[n].iov_len = c;
        n++;
        bytes -= c;
        offset = 0;
    }
    return n;
}
