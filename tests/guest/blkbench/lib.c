/*
 * lib.c: memset/memcpy and friends.  Byte loops with 8-byte fast paths: the
 * hot data paths (pattern fill and check in verify.c) work on words
 * themselves, so these only need to be correct and not silly.
 */
#include "lib.h"

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    uint64_t w = 0x0101010101010101ull * (unsigned char)c;

    while (n && ((uintptr_t)p & 7)) {
        *p++ = (unsigned char)c;
        n--;
    }
    for (; n >= 8; n -= 8, p += 8)
        *(uint64_t *)p = w;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;

    if ((((uintptr_t)dp | (uintptr_t)sp) & 7) == 0)
        for (; n >= 8; n -= 8, dp += 8, sp += 8)
            *(uint64_t *)dp = *(const uint64_t *)sp;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;

    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;

    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] - y[i];
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b || !*a)
            return (unsigned char)*a - (unsigned char)*b;
    }
    return 0;
}
