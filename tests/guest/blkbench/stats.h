/*
 * stats.h: latency histogram, log-linear in TSC ticks: values below 64 have
 * a bucket each; above, each power of two is split into 32 buckets, so a
 * percentile is exact to within 1/32 (3%).  Integer arithmetic only.
 */
#ifndef BLKBENCH_STATS_H
#define BLKBENCH_STATS_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS) * (1 << HIST_SUB_BITS) + (2 << HIST_SUB_BITS))

struct hist {
    uint64_t count;
    uint64_t sum;               /* ticks */
    uint64_t max;
    uint64_t bucket[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t ticks);
void hist_merge(struct hist *into, const struct hist *from);

/* The per_mille-th per-mille value in ticks (500: median, 990: p99). */
uint64_t hist_percentile(const struct hist *h, unsigned per_mille);

#endif
