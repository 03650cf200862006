/* I/O accounting for block backends. */
#include "block/stats.h"

uint64_t blk_stats_bucket_limit(int i)
{
    if (i >= BLK_LAT_BUCKETS - 1) {
        return UINT64_MAX;
    }
    return 1000ULL << i;
}

static int bucket_of(uint64_t ns)
{
    if (ns < 1000) {
        return 0;
    }
    int b = 64 - clz64(ns / 1000);   /* 1..2 us -> 1, 2..4 us -> 2, ... */
    return b < BLK_LAT_BUCKETS - 1 ? b : BLK_LAT_BUCKETS - 1;
}

void blk_stats_account(struct blk_stats *s, enum blk_acct_type type, uint64_t bytes,
                       int64_t start_ns, int ret)
{
    struct blk_acct_counters *c = &s->c[type];
    int64_t now = clock_ns();
    uint64_t ns = now > start_ns ? (uint64_t)(now - start_ns) : 0;

    atomic_store_explicit(&s->last_access_ns, now, memory_order_relaxed);
    if (ret < 0) {
        atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&c->ops, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->total_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->latency[bucket_of(ns)], 1, memory_order_relaxed);
}

void blk_stats_invalid(struct blk_stats *s, enum blk_acct_type type)
{
    atomic_fetch_add_explicit(&s->c[type].invalid, 1, memory_order_relaxed);
}

static json_t *histogram_json(const struct blk_acct_counters *c)
{
    json_t *bounds = json_array();
    json_t *bins = json_array();
    for (int i = 0; i < BLK_LAT_BUCKETS; i++) {
        if (i < BLK_LAT_BUCKETS - 1) {
            json_array_append_new(bounds, json_integer((json_int_t)blk_stats_bucket_limit(i)));
        }
        json_array_append_new(bins, json_integer((json_int_t)atomic_load(&c->latency[i])));
    }
    return json_pack("{s:o, s:o}", "boundaries", bounds, "bins", bins);
}

json_t *blk_stats_to_json(const struct blk_stats *s)
{
    const struct blk_acct_counters *rd = &s->c[BLK_ACCT_READ];
    const struct blk_acct_counters *wr = &s->c[BLK_ACCT_WRITE];
    const struct blk_acct_counters *fl = &s->c[BLK_ACCT_FLUSH];
    const struct blk_acct_counters *un = &s->c[BLK_ACCT_UNMAP];
    int64_t last = atomic_load(&s->last_access_ns);
    json_t *o = json_object();

#define PUT(key, val) json_object_set_new(o, key, json_integer((json_int_t)(val)))
    PUT("rd_bytes", atomic_load(&rd->bytes));
    PUT("wr_bytes", atomic_load(&wr->bytes));
    PUT("unmap_bytes", atomic_load(&un->bytes));
    PUT("rd_operations", atomic_load(&rd->ops));
    PUT("wr_operations", atomic_load(&wr->ops));
    PUT("flush_operations", atomic_load(&fl->ops));
    PUT("unmap_operations", atomic_load(&un->ops));
    PUT("rd_total_time_ns", atomic_load(&rd->total_ns));
    PUT("wr_total_time_ns", atomic_load(&wr->total_ns));
    PUT("flush_total_time_ns", atomic_load(&fl->total_ns));
    PUT("unmap_total_time_ns", atomic_load(&un->total_ns));
    PUT("wr_highest_offset", atomic_load(&s->wr_highest_offset));
    PUT("rd_merged", 0);
    PUT("wr_merged", 0);
    PUT("unmap_merged", 0);
    PUT("failed_rd_operations", atomic_load(&rd->failed));
    PUT("failed_wr_operations", atomic_load(&wr->failed));
    PUT("failed_flush_operations", atomic_load(&fl->failed));
    PUT("failed_unmap_operations", atomic_load(&un->failed));
    PUT("invalid_rd_operations", atomic_load(&rd->invalid));
    PUT("invalid_wr_operations", atomic_load(&wr->invalid));
    PUT("invalid_flush_operations", atomic_load(&fl->invalid));
    PUT("invalid_unmap_operations", atomic_load(&un->invalid));
    if (last) {
        PUT("idle_time_ns", clock_ns() - last);
    }
#undef PUT
    json_object_set_new(o, "account_invalid", json_true());
    json_object_set_new(o, "account_failed", json_true());
    json_object_set_new(o, "timed_stats", json_array());
    json_object_set_new(o, "rd_latency_histogram", histogram_json(rd));
    json_object_set_new(o, "wr_latency_histogram", histogram_json(wr));
    json_object_set_new(o, "flush_latency_histogram", histogram_json(fl));
    return o;
}
