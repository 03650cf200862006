/*
 * Small helpers every part of spindle uses: arithmetic on sizes and
 * alignments, container_of, branch hints, atomics shorthands.
 */
#ifndef SPINDLE_UTIL_OSDEP_H
#define SPINDLE_UTIL_OSDEP_H

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* n rounded down/up to a multiple of m; m need not be a power of two. */
#define ALIGN_DOWN(n, m) ((n) / (m) * (m))
#define ALIGN_UP(n, m)   ALIGN_DOWN((n) + (m) - 1, (m))
#define IS_ALIGNED(n, m) (ALIGN_DOWN((n), (m)) == (n))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

#define PRINTF_FMT(a, b) __attribute__((format(printf, a, b)))
#define WARN_UNUSED __attribute__((warn_unused_result))
#define NORETURN __attribute__((noreturn))

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static inline bool is_power_of_2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* log2 of a power of two. */
static inline int ctz64(uint64_t v)
{
    return v ? __builtin_ctzll(v) : 64;
}

static inline int clz64(uint64_t v)
{
    return v ? __builtin_clzll(v) : 64;
}

/* Smallest power of two >= v (v > 0). */
static inline uint64_t pow2_ceil(uint64_t v)
{
    return v <= 1 ? 1 : 1ULL << (64 - clz64(v - 1));
}

/* Whether [a, a+alen) and [b, b+blen) share a byte. */
static inline bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* A full memory barrier, for the notify protocols between threads. */
#define smp_mb() atomic_thread_fence(memory_order_seq_cst)

/* Per-thread variables. */
#define THREAD_LOCAL __thread

/* Allocate or die: memory exhaustion is not a recoverable input error. */
void *xmalloc(size_t n);
void *xzalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) PRINTF_FMT(1, 2);

/* Page-aligned memory for O_DIRECT buffers. */
void *xmemalign(size_t align, size_t n);

/* Whether the buffer is all zero bytes. */
bool buffer_is_zero(const void *buf, size_t len);

/* Monotonic clock in nanoseconds. */
int64_t clock_ns(void);
/* Wall clock in nanoseconds since the epoch. */
int64_t clock_realtime_ns(void);

/* Copy at most size-1 bytes and terminate; returns strlen(src). */
size_t pstrcpy(char *dst, size_t size, const char *src);

/* read/write every byte or fail with -errno (-EIO at an early end of file). */
int full_pread(int fd, void *buf, size_t len, off_t off);
int full_pwrite(int fd, const void *buf, size_t len, off_t off);
int full_write(int fd, const void *buf, size_t len);

#endif
