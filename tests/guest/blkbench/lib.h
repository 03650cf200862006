/* lib.h: the few libc functions a freestanding program still needs. */
#ifndef BLKBENCH_LIB_H
#define BLKBENCH_LIB_H

#include <stddef.h>
#include <stdint.h>

/* GCC may emit calls to these four even with -ffreestanding. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

#define ARRAY_SIZE(a)      (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a)     (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define IS_POW2(x)         ((x) && !((x) & ((x) - 1)))
#define MIN(a, b)          ((a) < (b) ? (a) : (b))
#define MAX(a, b)          ((a) > (b) ? (a) : (b))

#endif
