/* stats.c: the log-linear histogram; see stats.h. */
#include "lib.h"
#include "stats.h"

#define SUB (1u << HIST_SUB_BITS)

/*
 * v < 2*SUB: bucket v.  Else with e = msb(v) - HIST_SUB_BITS the top
 * HIST_SUB_BITS+1 bits m = v >> e lie in [SUB, 2*SUB), and the bucket is
 * e*SUB + m, which continues the linear range without a gap.
 */
static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned e = 63 - (unsigned)__builtin_clzll(v) - HIST_SUB_BITS;
    return e * SUB + (unsigned)(v >> e);
}

/* The middle of bucket b, in ticks. */
static uint64_t bucket_value(unsigned b)
{
    if (b < 2 * SUB)
        return b;
    unsigned e = b / SUB - 1;
    uint64_t m = b - e * SUB;
    return (m << e) + ((1ull << e) >> 1);
}

void hist_add(struct hist *h, uint64_t ticks)
{
    h->count++;
    h->sum += ticks;
    if (ticks > h->max)
        h->max = ticks;
    h->bucket[bucket_of(ticks)]++;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    into->count += from->count;
    into->sum += from->sum;
    into->max = MAX(into->max, from->max);
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
}

uint64_t hist_percentile(const struct hist *h, unsigned per_mille)
{
    if (!h->count)
        return 0;
    uint64_t want = (h->count * per_mille + 999) / 1000, seen = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= want)
            return MIN(bucket_value(i), h->max);
    }
    return h->max;
}
