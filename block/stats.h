/*
 * Per-backend I/O accounting, as query-blockstats reports it: operations,
 * bytes, failures, total time, and a latency histogram per kind of request.
 * Updated with atomics from any thread.
 */
#ifndef SPINDLE_BLOCK_STATS_H
#define SPINDLE_BLOCK_STATS_H

#include <jansson.h>
#include "util/osdep.h"

enum blk_acct_type {
    BLK_ACCT_READ,
    BLK_ACCT_WRITE,
    BLK_ACCT_FLUSH,
    BLK_ACCT_UNMAP,
    BLK_ACCT_NR,
};

/* Latency buckets: [0, 1 us), [1, 2 us), [2, 4 us) ... and one open-ended. */
#define BLK_LAT_BUCKETS 26

struct blk_acct_counters {
    atomic_uint_fast64_t bytes;
    atomic_uint_fast64_t ops;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t invalid;
    atomic_uint_fast64_t total_ns;
    atomic_uint_fast64_t latency[BLK_LAT_BUCKETS];
};

struct blk_stats {
    struct blk_acct_counters c[BLK_ACCT_NR];
    _Atomic int64_t last_access_ns;
    _Atomic int64_t wr_highest_offset;
};

/* Account one finished request that started at start_ns. */
void blk_stats_account(struct blk_stats *s, enum blk_acct_type type, uint64_t bytes,
                       int64_t start_ns, int ret);
/* A request refused before it was issued (bad range, read-only). */
void blk_stats_invalid(struct blk_stats *s, enum blk_acct_type type);

/* The upper bound of latency bucket i in ns (UINT64_MAX for the last). */
uint64_t blk_stats_bucket_limit(int i);

/* The "stats" object of query-blockstats. */
json_t *blk_stats_to_json(const struct blk_stats *s);

#endif
