/* Allocation, clocks and file helpers shared by every part. */
#include "util/osdep.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void NORETURN out_of_memory(size_t n)
{
    fprintf(stderr, "spindle: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        out_of_memory(n);
    }
    return p;
}

void *xzalloc(size_t n)
{
    return xcalloc(1, n);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        out_of_memory(n * size);
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        out_of_memory(n);
    }
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p) {
        out_of_memory(strlen(s));
    }
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p;
    va_start(ap, fmt);
    if (vasprintf(&p, fmt, ap) < 0) {
        out_of_memory(0);
    }
    va_end(ap);
    return p;
}

void *xmemalign(size_t align, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : align)) {
        out_of_memory(n);
    }
    return p;
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    /* Check the head byte-wise, the aligned middle by words. */
    while (len && ((uintptr_t)p & 7)) {
        if (*p++) {
            return false;
        }
        len--;
    }
    const uint64_t *w = (const uint64_t *)p;
    while (len >= 32) {
        if (w[0] | w[1] | w[2] | w[3]) {
            return false;
        }
        w += 4;
        len -= 32;
    }
    p = (const unsigned char *)w;
    while (len--) {
        if (*p++) {
            return false;
        }
    }
    return true;
}

int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t clock_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

size_t pstrcpy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (size) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

int full_pread(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            return -EIO;
        }
        p += r;
        off += r;
        len -= r;
    }
    return 0;
}

int full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t r = pwrite(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += r;
        off += r;
        len -= r;
    }
    return 0;
}

int full_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t r = write(fd, p, len);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += r;
        len -= r;
    }
    return 0;
}
