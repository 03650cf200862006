/* Hierarchical dirty bitmaps: every call, its edges, and a randomized model check. */
#include "tests/unit/harness.h"

#include <stdio.h>

#include "util/hbitmap.h"

/* Every dirty offset the iterator yields, into out (at most max); returns how many. */
static size_t iter_all(const struct hbitmap *hb, uint64_t first, int64_t *out, size_t max)
{
    struct hbitmap_iter it;
    size_t n = 0;
    int64_t off;

    hbitmap_iter_init(&it, hb, first);
    while ((off = hbitmap_iter_next(&it)) >= 0) {
        if (n < max) {
            out[n] = off;
        }
        n++;
    }
    return n;
}

static void test_new_free(void)
{
    struct hbitmap *hb = hbitmap_new(1 * MiB, 16);

    CU_ASSERT_PTR_NOT_NULL_FATAL(hb);
    CU_ASSERT_EQUAL(hbitmap_size(hb), 1 * MiB);
    CU_ASSERT_EQUAL(hbitmap_granularity_shift(hb), 16);
    CU_ASSERT_TRUE(hbitmap_empty(hb));
    CU_ASSERT_EQUAL(hbitmap_count(hb), 0);
    CU_ASSERT_FALSE(hbitmap_get(hb, 0));
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, UINT64_MAX), -1);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, UINT64_MAX), 0);
    hbitmap_free(hb);
    hbitmap_free(NULL);

    /* Out of range: offsets are int64_t, shifts fit a 64-bit item count. */
    CU_ASSERT_PTR_NULL(hbitmap_new(1, 64));
    CU_ASSERT_PTR_NULL(hbitmap_new((uint64_t)INT64_MAX + 1, 0));
    hb = hbitmap_new(INT64_MAX, 63);
    CU_ASSERT_PTR_NOT_NULL(hb);
    hbitmap_free(hb);
}

static void test_zero_size(void)
{
    struct hbitmap *hb = hbitmap_new(0, 9);
    struct hbitmap_iter it;
    uint64_t s = 7, c = 7;
    uint8_t buf[8] = { 0 };

    hbitmap_set(hb, 0, 100);
    CU_ASSERT_TRUE(hbitmap_empty(hb));
    CU_ASSERT_EQUAL(hbitmap_count(hb), 0);
    CU_ASSERT_FALSE(hbitmap_get(hb, 0));
    hbitmap_reset(hb, 0, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, UINT64_MAX), -1);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, UINT64_MAX), -1);
    CU_ASSERT_FALSE(hbitmap_next_dirty_area(hb, 0, UINT64_MAX, UINT64_MAX, &s, &c));
    CU_ASSERT_EQUAL(s, 7);
    hbitmap_iter_init(&it, hb, 0);
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), -1);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 0, UINT64_MAX), 0);
    hbitmap_serialize_part(hb, buf, 0, UINT64_MAX);
    hbitmap_deserialize_ones(hb, 0, UINT64_MAX);
    hbitmap_deserialize_finish(hb);
    CU_ASSERT_TRUE(hbitmap_empty(hb));

    hbitmap_truncate(hb, 1000);
    hbitmap_set(hb, 999, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 1000 - 512);
    hbitmap_truncate(hb, 0);
    CU_ASSERT_TRUE(hbitmap_empty(hb));
    CU_ASSERT_EQUAL(hbitmap_count(hb), 0);
    hbitmap_free(hb);
}

static void test_set_get_granules(void)
{
    struct hbitmap *hb = hbitmap_new(1000, 3);

    /* One item dirties its whole granule of 8. */
    hbitmap_set(hb, 13, 1);
    CU_ASSERT_FALSE(hbitmap_get(hb, 7));
    for (uint64_t i = 8; i < 16; i++) {
        CU_ASSERT_TRUE(hbitmap_get(hb, i));
    }
    CU_ASSERT_FALSE(hbitmap_get(hb, 16));
    CU_ASSERT_EQUAL(hbitmap_count(hb), 8);

    /* A range touching two granules at its ends dirties both. */
    hbitmap_set(hb, 31, 2);
    CU_ASSERT_TRUE(hbitmap_get(hb, 24));
    CU_ASSERT_TRUE(hbitmap_get(hb, 39));
    CU_ASSERT_EQUAL(hbitmap_count(hb), 24);

    /* Setting again changes nothing; count is not double counted. */
    hbitmap_set(hb, 8, 8);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 24);
    CU_ASSERT_FALSE(hbitmap_empty(hb));

    /* count 0 and past-the-end starts do nothing. */
    hbitmap_set(hb, 100, 0);
    hbitmap_set(hb, 1000, 5);
    hbitmap_set(hb, UINT64_MAX, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 24);
    CU_ASSERT_FALSE(hbitmap_get(hb, 1000));
    CU_ASSERT_FALSE(hbitmap_get(hb, UINT64_MAX));
    hbitmap_free(hb);
}

static void test_shift0(void)
{
    struct hbitmap *hb = hbitmap_new(200, 0);

    hbitmap_set(hb, 63, 2);
    CU_ASSERT_FALSE(hbitmap_get(hb, 62));
    CU_ASSERT_TRUE(hbitmap_get(hb, 63));
    CU_ASSERT_TRUE(hbitmap_get(hb, 64));
    CU_ASSERT_FALSE(hbitmap_get(hb, 65));
    CU_ASSERT_EQUAL(hbitmap_count(hb), 2);
    hbitmap_set(hb, 199, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 3);
    hbitmap_reset(hb, 64, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 2);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 64, 200), 199);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 63, 200), 64);
    hbitmap_free(hb);
}

static void test_last_partial_granule(void)
{
    /* 7 granules of 16; the last covers items 96..99 only. */
    struct hbitmap *hb = hbitmap_new(100, 4);

    hbitmap_set(hb, 99, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 4);
    CU_ASSERT_TRUE(hbitmap_get(hb, 96));
    CU_ASSERT_FALSE(hbitmap_get(hb, 100));
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, 1000), 96);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 98, 1000), 98);

    /* Clipping: a count past the end, and start + count past 2^64. */
    hbitmap_set(hb, 90, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 100 - 80);
    hbitmap_set(hb, 0, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 100);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, UINT64_MAX), -1);

    hbitmap_reset(hb, 97, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 96);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, UINT64_MAX), 96);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 99, UINT64_MAX), 99);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, 96), -1);
    hbitmap_free(hb);
}

static void test_reset_partial(void)
{
    struct hbitmap *hb = hbitmap_new(4096, 9);

    hbitmap_set(hb, 0, 4096);
    /* Touching two bytes of a granule clears all 512 of them (documented). */
    hbitmap_reset(hb, 1000, 2);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 4096 - 512);
    CU_ASSERT_FALSE(hbitmap_get(hb, 512));
    CU_ASSERT_FALSE(hbitmap_get(hb, 1023));
    CU_ASSERT_TRUE(hbitmap_get(hb, 511));
    CU_ASSERT_TRUE(hbitmap_get(hb, 1024));
    /* Straddling a boundary clears both granules. */
    hbitmap_reset(hb, 2047, 2);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 4096 - 3 * 512);
    hbitmap_reset(hb, 4000, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 4096 - 4 * 512);
    hbitmap_reset_all(hb);
    CU_ASSERT_TRUE(hbitmap_empty(hb));
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, UINT64_MAX), -1);
    hbitmap_free(hb);
}

/* Bits at word and level boundaries of a three-level bitmap. */
static void test_level_boundaries(void)
{
    const uint64_t size = 64 * 64 * 64 + 5;   /* four levels, shift 0 */
    const uint64_t marks[] = { 0, 63, 64, 4095, 4096, 4097, 262143, 262144, size - 1 };
    struct hbitmap *hb = hbitmap_new(size, 0);
    int64_t got[16];

    for (size_t i = 0; i < ARRAY_SIZE(marks); i++) {
        hbitmap_set(hb, marks[i], 1);
    }
    CU_ASSERT_EQUAL(hbitmap_count(hb), ARRAY_SIZE(marks));
    CU_ASSERT_EQUAL_FATAL(iter_all(hb, 0, got, 16), ARRAY_SIZE(marks));
    for (size_t i = 0; i < ARRAY_SIZE(marks); i++) {
        CU_ASSERT_EQUAL(got[i], (int64_t)marks[i]);
        CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, marks[i], size), (int64_t)marks[i]);
        if (i + 1 < ARRAY_SIZE(marks)) {
            CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, marks[i] + 1, size), (int64_t)marks[i + 1]);
        }
    }
    /* Clearing one bit of a word keeps the summary of its neighbour. */
    hbitmap_reset(hb, 4096, 1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 4096, size), 4097);
    hbitmap_reset(hb, 4097, 1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 4096, size), 262143);
    /* A wide reset across levels empties the summaries too. */
    hbitmap_reset(hb, 1, size - 2);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 2);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 1, size), (int64_t)(size - 1));
    hbitmap_reset(hb, size - 1, 1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 1, size), -1);
    /* A wide set, then a reset that leaves a bit in both end words. */
    hbitmap_set(hb, 0, size);
    hbitmap_reset(hb, 100, 200000);
    CU_ASSERT_EQUAL(hbitmap_count(hb), size - 200000);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 100, size), 200100);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, size), 100);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 200100, size), -1);
    hbitmap_free(hb);
}

static void test_next_dirty_zero(void)
{
    struct hbitmap *hb = hbitmap_new(10000, 6);

    hbitmap_set(hb, 640, 128);            /* granules 10, 11 */
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, 10000), 640);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 700, 10000), 700);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 768, 10000), -1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, 640), -1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, 641), 640);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 700, 700), -1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 800, 700), -1);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 640, 10000), 768);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 700, 768), -1);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 5, 10000), 5);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 20000, UINT64_MAX), -1);
    hbitmap_free(hb);
}

static void test_next_dirty_area(void)
{
    struct hbitmap *hb = hbitmap_new(1 * MiB, 12);
    uint64_t s = 1, c = 1;

    hbitmap_set(hb, 8192, 5 * 4096);      /* 8K .. 28K */
    hbitmap_set(hb, 100 * 4096, 4096);
    CU_ASSERT_TRUE(hbitmap_next_dirty_area(hb, 0, UINT64_MAX, UINT64_MAX, &s, &c));
    CU_ASSERT_EQUAL(s, 8192);
    CU_ASSERT_EQUAL(c, 5 * 4096);
    /* Starting inside the run. */
    CU_ASSERT_TRUE(hbitmap_next_dirty_area(hb, 10000, UINT64_MAX, UINT64_MAX, &s, &c));
    CU_ASSERT_EQUAL(s, 10000);
    CU_ASSERT_EQUAL(c, 8192 + 5 * 4096 - 10000);
    /* Cut by max_count and by end. */
    CU_ASSERT_TRUE(hbitmap_next_dirty_area(hb, 0, UINT64_MAX, 100, &s, &c));
    CU_ASSERT_EQUAL(s, 8192);
    CU_ASSERT_EQUAL(c, 100);
    CU_ASSERT_TRUE(hbitmap_next_dirty_area(hb, 0, 9000, UINT64_MAX, &s, &c));
    CU_ASSERT_EQUAL(s, 8192);
    CU_ASSERT_EQUAL(c, 9000 - 8192);
    /* The next run. */
    CU_ASSERT_TRUE(hbitmap_next_dirty_area(hb, 8192 + 5 * 4096, UINT64_MAX, 1, &s, &c));
    CU_ASSERT_EQUAL(s, 100 * 4096);
    CU_ASSERT_EQUAL(c, 1);
    /* None, and max_count 0: false, outputs untouched. */
    s = c = 77;
    CU_ASSERT_FALSE(hbitmap_next_dirty_area(hb, 0, 8192, UINT64_MAX, &s, &c));
    CU_ASSERT_FALSE(hbitmap_next_dirty_area(hb, 0, UINT64_MAX, 0, &s, &c));
    CU_ASSERT_FALSE(hbitmap_next_dirty_area(hb, 101 * 4096, UINT64_MAX, 1, &s, &c));
    CU_ASSERT_EQUAL(s, 77);
    CU_ASSERT_EQUAL(c, 77);
    /* A run reaching the end of the bitmap. */
    hbitmap_set(hb, 1 * MiB - 1, 1);
    CU_ASSERT_TRUE(hbitmap_next_dirty_area(hb, 101 * 4096, UINT64_MAX, UINT64_MAX, &s, &c));
    CU_ASSERT_EQUAL(s, 1 * MiB - 4096);
    CU_ASSERT_EQUAL(c, 4096);
    hbitmap_free(hb);
}

static void test_iter(void)
{
    struct hbitmap *hb = hbitmap_new(1 * MiB, 9);
    struct hbitmap_iter it;
    int64_t got[8];

    hbitmap_set(hb, 1000, 1);    /* granule 1 (512..1023) */
    hbitmap_set(hb, 5000, 700);  /* granules 9, 10, 11 */
    CU_ASSERT_EQUAL_FATAL(iter_all(hb, 0, got, 8), 4);
    CU_ASSERT_EQUAL(got[0], 512);
    CU_ASSERT_EQUAL(got[1], 4608);
    CU_ASSERT_EQUAL(got[2], 5120);
    CU_ASSERT_EQUAL(got[3], 5632);
    /* first inside a dirty granule is returned as is, never less. */
    CU_ASSERT_EQUAL_FATAL(iter_all(hb, 5200, got, 8), 2);
    CU_ASSERT_EQUAL(got[0], 5200);
    CU_ASSERT_EQUAL(got[1], 5632);
    CU_ASSERT_EQUAL(iter_all(hb, 1 * MiB, got, 8), 0);
    CU_ASSERT_EQUAL(iter_all(hb, UINT64_MAX, got, 8), 0);

    /* Changes ahead of the position are seen; at the end it stays at -1. */
    hbitmap_iter_init(&it, hb, 0);
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), 512);
    hbitmap_reset(hb, 4608, 512);
    hbitmap_set(hb, 2048, 1);
    hbitmap_set(hb, 0, 1);        /* behind: not seen */
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), 2048);
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), 5120);
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), 5632);
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), -1);
    CU_ASSERT_EQUAL(hbitmap_iter_next(&it), -1);
    hbitmap_free(hb);
}

/* 1 TiB at 64 KiB: 16M granules, a few dirty, walked without scanning. */
static void test_sparse_huge(void)
{
    struct hbitmap *hb = hbitmap_new(1 * TiB, 16);
    const uint64_t marks[] = { 0, 3 * GiB + 5, 512 * GiB, 1 * TiB - 1 };
    int64_t got[8];

    for (size_t i = 0; i < ARRAY_SIZE(marks); i++) {
        hbitmap_set(hb, marks[i], 1);
    }
    CU_ASSERT_EQUAL(hbitmap_count(hb), 4 * 64 * KiB);
    CU_ASSERT_EQUAL_FATAL(iter_all(hb, 0, got, 8), 4);
    for (size_t i = 0; i < ARRAY_SIZE(marks); i++) {
        CU_ASSERT_EQUAL(got[i], (int64_t)ALIGN_DOWN(marks[i], 64 * KiB));
    }
    /* Many walks cost little: each is a climb and a descent. */
    int64_t sum = 0;
    for (int i = 0; i < 100000; i++) {
        sum += hbitmap_next_dirty(hb, 64 * KiB, 1 * TiB) == (int64_t)(3 * GiB);
    }
    CU_ASSERT_EQUAL(sum, 100000);
    hbitmap_free(hb);
}

static void test_large_shifts(void)
{
    struct hbitmap *hb = hbitmap_new(INT64_MAX, 63);   /* a single granule */
    uint8_t buf[8];

    CU_ASSERT_EQUAL(hbitmap_serialization_align(hb), 1ULL << 63);
    hbitmap_set(hb, INT64_MAX - 1, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), INT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 5, UINT64_MAX), 5);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, UINT64_MAX), -1);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 0, UINT64_MAX), 8);
    hbitmap_serialize_part(hb, buf, 0, UINT64_MAX);
    CU_ASSERT_EQUAL(buf[0], 1);
    hbitmap_truncate(hb, 10);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 10);
    hbitmap_free(hb);

    /* Two granules of 2^62; the second one is one item short. */
    hb = hbitmap_new(INT64_MAX, 62);
    hbitmap_set(hb, 1ULL << 62, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), (1ULL << 62) - 1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 0, UINT64_MAX), (int64_t)(1ULL << 62));
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 0, UINT64_MAX), 0);
    CU_ASSERT_EQUAL(hbitmap_next_zero(hb, 1ULL << 62, UINT64_MAX), -1);
    hbitmap_set(hb, 0, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_count(hb), INT64_MAX);
    hbitmap_reset(hb, 0, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), (1ULL << 62) - 1);
    hbitmap_free(hb);

    hb = hbitmap_new(1 * TiB, 57);
    CU_ASSERT_EQUAL(hbitmap_serialization_align(hb), 1ULL << 63);
    hbitmap_free(hb);
    hb = hbitmap_new(1 * TiB, 56);
    CU_ASSERT_EQUAL(hbitmap_serialization_align(hb), 1ULL << 62);
    hbitmap_free(hb);
}

static void test_truncate(void)
{
    struct hbitmap *hb = hbitmap_new(1000, 4);   /* last granule 992..999 */

    hbitmap_set(hb, 0, 16);
    hbitmap_set(hb, 500, 1);
    hbitmap_set(hb, 999, 1);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 16 + 16 + 8);

    /* Shrink inside a granule: it survives, cut to the new end. */
    hbitmap_truncate(hb, 504);
    CU_ASSERT_EQUAL(hbitmap_size(hb), 504);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 16 + 8);
    CU_ASSERT_FALSE(hbitmap_get(hb, 999));

    /* Grow: the straddling granule keeps its state, the rest is clean. */
    hbitmap_truncate(hb, 1000000);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 16 + 16);
    CU_ASSERT_TRUE(hbitmap_get(hb, 511));
    CU_ASSERT_FALSE(hbitmap_get(hb, 512));
    CU_ASSERT_FALSE(hbitmap_get(hb, 999));   /* dropped by the shrink */
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 512, UINT64_MAX), -1);
    hbitmap_set(hb, 999999, 1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 512, UINT64_MAX), 999984);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 16 + 16 + 16);

    /* Shrink across levels, then grow again: nothing comes back. */
    hbitmap_truncate(hb, 10);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 10);
    hbitmap_truncate(hb, 1000000);
    CU_ASSERT_EQUAL(hbitmap_count(hb), 16);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 16, UINT64_MAX), -1);
    hbitmap_free(hb);

    /* Sizes past INT64_MAX are taken as INT64_MAX. */
    hb = hbitmap_new(1 * TiB, 40);
    hbitmap_set(hb, 0, 1);
    hbitmap_truncate(hb, UINT64_MAX);
    CU_ASSERT_EQUAL(hbitmap_size(hb), INT64_MAX);
    hbitmap_set(hb, INT64_MAX - 1, 1);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(hb, 1ULL << 40, UINT64_MAX),
                    (int64_t)ALIGN_DOWN((uint64_t)INT64_MAX, 1ULL << 40));
    CU_ASSERT_EQUAL(hbitmap_count(hb), (1ULL << 40) * 2 - 1);
    hbitmap_free(hb);
}

static void test_merge(void)
{
    struct hbitmap *a = hbitmap_new(100000, 3);
    struct hbitmap *b = hbitmap_new(100000, 3);
    struct hbitmap *r = hbitmap_new(100000, 3);
    struct hbitmap *other_size = hbitmap_new(100001, 3);
    struct hbitmap *other_gran = hbitmap_new(100000, 4);

    hbitmap_set(a, 0, 8);
    hbitmap_set(a, 50000, 100);
    hbitmap_set(b, 4, 8);
    hbitmap_set(b, 99999, 1);
    hbitmap_set(r, 77777, 1);   /* overwritten */
    CU_ASSERT_TRUE(hbitmap_merge(a, b, r));
    CU_ASSERT_EQUAL(hbitmap_count(r), 16 + 104 + 8);
    CU_ASSERT_FALSE(hbitmap_get(r, 77777));
    CU_ASSERT_EQUAL(hbitmap_next_dirty(r, 10000, UINT64_MAX), 50000);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(r, 60000, UINT64_MAX), 99992);

    /* In place, both ways. */
    CU_ASSERT_TRUE(hbitmap_merge(a, b, a));
    CU_ASSERT_EQUAL(hbitmap_count(a), hbitmap_count(r));
    CU_ASSERT_TRUE(hbitmap_merge(b, a, b));
    CU_ASSERT_EQUAL(hbitmap_count(b), hbitmap_count(r));
    CU_ASSERT_EQUAL(hbitmap_next_dirty(b, 10000, UINT64_MAX), 50000);

    CU_ASSERT_FALSE(hbitmap_merge(a, other_size, a));
    CU_ASSERT_FALSE(hbitmap_merge(a, other_gran, a));
    CU_ASSERT_FALSE(hbitmap_merge(a, b, other_gran));
    CU_ASSERT_EQUAL(hbitmap_count(a), hbitmap_count(r));
    hbitmap_free(a);
    hbitmap_free(b);
    hbitmap_free(r);
    hbitmap_free(other_size);
    hbitmap_free(other_gran);
}

static void test_copy(void)
{
    struct hbitmap *hb = hbitmap_new(5 * MiB, 9);
    struct hbitmap *copy;

    hbitmap_set(hb, 1 * MiB, 4096);
    copy = hbitmap_copy(hb);
    CU_ASSERT_EQUAL(hbitmap_size(copy), 5 * MiB);
    CU_ASSERT_EQUAL(hbitmap_granularity_shift(copy), 9);
    CU_ASSERT_EQUAL(hbitmap_count(copy), 4096);
    hbitmap_reset_all(hb);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(copy, 0, UINT64_MAX), (int64_t)(1 * MiB));
    hbitmap_set(copy, 0, 1);
    CU_ASSERT_FALSE(hbitmap_get(hb, 0));
    hbitmap_free(hb);
    hbitmap_free(copy);
}

static void test_serialize_layout(void)
{
    struct hbitmap *hb = hbitmap_new(200 * 512, 9);   /* 200 granules */
    uint8_t buf[32];

    CU_ASSERT_EQUAL(hbitmap_serialization_align(hb), 64 * 512);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 0, UINT64_MAX), 32);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 0, 64 * 512), 8);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 0, 1), 8);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 192 * 512, UINT64_MAX), 8);
    CU_ASSERT_EQUAL(hbitmap_serialization_size(hb, 200 * 512, 1), 0);

    /* Bit i of the stream is bit i % 8 of byte i / 8. */
    hbitmap_set(hb, 0, 1);
    hbitmap_set(hb, 9 * 512, 1);
    hbitmap_set(hb, 63 * 512, 2 * 512);
    hbitmap_set(hb, 199 * 512, 1);
    memset(buf, 0xaa, sizeof(buf));
    hbitmap_serialize_part(hb, buf, 0, UINT64_MAX);
    const uint8_t want[32] = {
        [0] = 0x01, [1] = 0x02, [7] = 0x80, [8] = 0x01, [24] = 0x80,
    };
    CU_ASSERT_EQUAL(memcmp(buf, want, 32), 0);

    /* A part that starts off a word boundary starts the stream at its granule. */
    memset(buf, 0xaa, sizeof(buf));
    hbitmap_serialize_part(hb, buf, 63 * 512, 3 * 512);
    CU_ASSERT_EQUAL(buf[0], 0x03);
    for (int i = 1; i < 8; i++) {
        CU_ASSERT_EQUAL(buf[i], 0);
    }
    hbitmap_free(hb);
}

static void test_serialize_round_trip(void)
{
    struct hbitmap *src = hbitmap_new(1 * MiB + 300, 8);  /* 4098 granules */
    struct hbitmap *dst = hbitmap_new(1 * MiB + 300, 8);
    uint64_t align = hbitmap_serialization_align(src);
    uint8_t buf[64 * 8];

    hbitmap_set(src, 0, 300);
    hbitmap_set(src, 70000, 9999);
    hbitmap_set(src, 1 * MiB + 299, 1);
    hbitmap_set(dst, 500000, 100);   /* overwritten by the parts */
    /* Parts of 8 words, the last one short, as qcow2 writes clusters. */
    for (uint64_t off = 0; off < hbitmap_size(src); off += 8 * align) {
        uint64_t sz = hbitmap_serialization_size(src, off, 8 * align);
        CU_ASSERT_FATAL(sz <= sizeof(buf));
        hbitmap_serialize_part(src, buf, off, 8 * align);
        hbitmap_deserialize_part(dst, buf, off, 8 * align);
    }
    hbitmap_deserialize_finish(dst);
    CU_ASSERT_EQUAL(hbitmap_count(dst), hbitmap_count(src));
    struct hbitmap_iter it_src, it_dst;
    int64_t want, got;
    hbitmap_iter_init(&it_src, src, 0);
    hbitmap_iter_init(&it_dst, dst, 0);
    do {
        want = hbitmap_iter_next(&it_src);
        got = hbitmap_iter_next(&it_dst);
        CU_ASSERT_EQUAL_FATAL(got, want);
    } while (want >= 0);
    CU_ASSERT_FALSE(hbitmap_get(dst, 500000));

    /* Padding bits past the end of the bitmap are ignored. */
    memset(buf, 0xff, sizeof(buf));
    hbitmap_deserialize_part(dst, buf, 4096 * 256, UINT64_MAX);
    hbitmap_deserialize_finish(dst);
    CU_ASSERT_EQUAL(hbitmap_count(dst), hbitmap_count(src) + 256);

    /* Zeroes and ones, then finish. */
    hbitmap_deserialize_ones(dst, 0, UINT64_MAX);
    hbitmap_deserialize_zeroes(dst, 256, 1 * MiB);
    hbitmap_deserialize_finish(dst);
    CU_ASSERT_EQUAL(hbitmap_count(dst), 256 + 44);
    CU_ASSERT_EQUAL(hbitmap_next_dirty(dst, 256, UINT64_MAX), (int64_t)(1 * MiB + 256));
    hbitmap_free(src);
    hbitmap_free(dst);
}

/*
 * The randomized check: a plain array of one bool per granule is the
 * model; every operation runs on both and the answers must agree.
 */
struct model {
    struct hbitmap *hb;
    uint64_t size, orig_size, nbits, gran;
    unsigned shift;
    bool *bits;
    uint64_t set;
    uint64_t rng;
    int op;
};

static uint64_t rnd(struct model *m)
{
    /* xorshift64*: small, fast, and repeatable from the seed. */
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    return m->rng * 2685821657736338717ULL;
}

static uint64_t rnd_below(struct model *m, uint64_t n)
{
    return n ? rnd(m) % n : 0;
}

/* An offset biased toward granule and word edges, sometimes past the end. */
static uint64_t rnd_offset(struct model *m)
{
    uint64_t span = m->size + m->gran * 2 + 1;
    switch (rnd_below(m, 4)) {
    case 0: {
        uint64_t g = rnd_below(m, m->nbits + 2) & ~63ULL;
        return g * m->gran + rnd_below(m, 3) - 1;
    }
    case 1:
        return rnd_below(m, m->nbits + 1) * m->gran;
    default:
        return rnd_below(m, span);
    }
}

static uint64_t rnd_count(struct model *m)
{
    switch (rnd_below(m, 8)) {
    case 0:
        return UINT64_MAX;
    case 1:
        return 0;
    case 2:
        return rnd_below(m, m->size + 1);
    default:
        return rnd_below(m, m->gran * 130 + 1);
    }
}

/* The granule range [*first, *last] of an item range, clipped; false if empty. */
static bool model_range(const struct model *m, uint64_t start, uint64_t count,
                        uint64_t *first, uint64_t *last)
{
    if (count == 0 || start >= m->size) {
        return false;
    }
    uint64_t end = start + MIN(count, m->size - start);
    *first = start / m->gran;
    *last = (end - 1) / m->gran;
    return true;
}

static void model_fill(struct model *m, uint64_t start, uint64_t count, bool v)
{
    uint64_t first, last;
    if (!model_range(m, start, count, &first, &last)) {
        return;
    }
    for (uint64_t i = first; i <= last; i++) {
        m->set += v && !m->bits[i];
        m->set -= !v && m->bits[i];
        m->bits[i] = v;
    }
}

static uint64_t model_count(const struct model *m)
{
    if (m->set && m->bits[m->nbits - 1]) {
        return (m->set - 1) * m->gran + (m->size - (m->nbits - 1) * m->gran);
    }
    return m->set * m->gran;
}

static int64_t model_next(const struct model *m, uint64_t start, uint64_t end, bool v)
{
    end = MIN(end, m->size);
    for (uint64_t i = start; i < end; i = (i / m->gran + 1) * m->gran) {
        if (m->bits[i / m->gran] == v) {
            return (int64_t)i;
        }
    }
    return -1;
}

#define MCHECK(m, cond)                                                      \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("# model mismatch at op %d (size %" PRIu64 ", shift %u)\n", \
                   (m)->op, (m)->size, (m)->shift);                          \
            CU_FAIL_FATAL(#cond);                                            \
        }                                                                    \
    } while (0)

static void model_check_all(struct model *m)
{
    struct hbitmap_iter it;
    uint64_t first = rnd_offset(m);
    int64_t want = model_next(m, first, UINT64_MAX, true);

    hbitmap_iter_init(&it, m->hb, first);
    for (;;) {
        int64_t got = hbitmap_iter_next(&it);
        MCHECK(m, got == want);
        if (got < 0) {
            break;
        }
        want = model_next(m, ((uint64_t)got / m->gran + 1) * m->gran, UINT64_MAX, true);
    }
}

static void model_serialize(struct model *m)
{
    uint64_t align = hbitmap_serialization_align(m->hb);
    uint64_t start = rnd_below(m, m->nbits / 64 + 1) * align;
    uint64_t count = rnd_below(m, 4) ? (rnd_below(m, 3) + 1) * align : UINT64_MAX;
    uint64_t sz = hbitmap_serialization_size(m->hb, start, count);
    uint64_t first, last;
    uint8_t *buf = xmalloc(sz);

    hbitmap_serialize_part(m->hb, buf, start, count);
    if (model_range(m, start, count, &first, &last)) {
        MCHECK(m, sz == DIV_ROUND_UP(last - first + 1, 64) * 8);
        for (uint64_t i = 0; i < sz * 8; i++) {
            bool want = first + i <= last && m->bits[first + i];
            MCHECK(m, ((buf[i / 8] >> (i % 8)) & 1) == want);
        }
    } else {
        MCHECK(m, sz == 0);
    }
    /* Clear the part, then load it back: nothing may change. */
    hbitmap_deserialize_zeroes(m->hb, start, count);
    hbitmap_deserialize_part(m->hb, buf, start, count);
    hbitmap_deserialize_finish(m->hb);
    free(buf);
}

/* Shrink or grow around the original size; the model keeps common granules. */
static void model_truncate(struct model *m)
{
    uint64_t size = rnd_below(m, m->orig_size * 2 + 2);
    uint64_t nbits = DIV_ROUND_UP(size, m->gran);

    hbitmap_truncate(m->hb, size);
    m->bits = xrealloc(m->bits, (nbits ? nbits : 1) * sizeof(bool));
    if (nbits > m->nbits) {
        memset(m->bits + m->nbits, 0, (nbits - m->nbits) * sizeof(bool));
    }
    m->size = size;
    m->nbits = nbits;
    m->set = 0;
    for (uint64_t i = 0; i < nbits; i++) {
        m->set += m->bits[i];
    }
    MCHECK(m, hbitmap_size(m->hb) == size);
}

/* A copy merged into a clean bitmap must iterate like the model. */
static void model_copy_merge(struct model *m)
{
    struct hbitmap *orig = m->hb;
    struct hbitmap *copy = hbitmap_copy(orig);
    struct hbitmap *merged = hbitmap_new(m->size, m->shift);

    MCHECK(m, hbitmap_merge(merged, copy, merged));
    hbitmap_free(copy);
    m->hb = merged;
    model_check_all(m);
    MCHECK(m, hbitmap_count(merged) == model_count(m));
    m->hb = orig;
    hbitmap_free(merged);
}

static void model_misc(struct model *m, uint64_t start, uint64_t count)
{
    switch (rnd_below(m, 30)) {
    case 0:
        model_truncate(m);
        break;
    case 1:
        hbitmap_reset_all(m->hb);
        model_fill(m, 0, UINT64_MAX, false);
        break;
    case 2:
    case 3:
        model_copy_merge(m);
        break;
    default:
        hbitmap_set(m->hb, start, count);
        model_fill(m, start, count, true);
        break;
    }
}

static void model_step(struct model *m)
{
    uint64_t start = rnd_offset(m), count = rnd_count(m);
    uint64_t end = rnd_below(m, 4) ? start + rnd_count(m) / 2 : UINT64_MAX;
    uint64_t as = 0, ac = 0;

    if (end < start) {
        end = UINT64_MAX;
    }
    switch (rnd_below(m, 10)) {
    case 0:
    case 1:
        hbitmap_set(m->hb, start, count);
        model_fill(m, start, count, true);
        break;
    case 2:
        hbitmap_reset(m->hb, start, count);
        model_fill(m, start, count, false);
        break;
    case 3:
        MCHECK(m, hbitmap_get(m->hb, start) == (start < m->size && m->bits[start / m->gran]));
        break;
    case 4:
        MCHECK(m, hbitmap_next_dirty(m->hb, start, end) == model_next(m, start, end, true));
        break;
    case 5:
        MCHECK(m, hbitmap_next_zero(m->hb, start, end) == model_next(m, start, end, false));
        break;
    case 6: {
        int64_t s = model_next(m, start, end, true);
        bool found = hbitmap_next_dirty_area(m->hb, start, end, count, &as, &ac);
        MCHECK(m, found == (s >= 0 && count > 0));
        if (found) {
            uint64_t lim = count >= MIN(end, m->size) - (uint64_t)s ? MIN(end, m->size)
                                                                    : (uint64_t)s + count;
            int64_t z = model_next(m, (uint64_t)s, lim, false);
            MCHECK(m, as == (uint64_t)s);
            MCHECK(m, ac == (z < 0 ? lim : (uint64_t)z) - (uint64_t)s);
        }
        break;
    }
    case 7:
        model_check_all(m);
        break;
    case 8:
        model_serialize(m);
        break;
    default:
        model_misc(m, start, count);
        break;
    }
    MCHECK(m, hbitmap_count(m->hb) == model_count(m));
    MCHECK(m, hbitmap_empty(m->hb) == (m->set == 0));
}

static void model_run(uint64_t size, unsigned shift, int ops, uint64_t seed)
{
    struct model m = { .size = size, .orig_size = size, .shift = shift, .gran = 1ULL << shift };

    m.rng = seed * 0x9e3779b97f4a7c15ULL + size + shift + 1;
    m.nbits = DIV_ROUND_UP(size, m.gran);
    m.bits = xcalloc(m.nbits ? m.nbits : 1, sizeof(bool));
    m.hb = hbitmap_new(size, shift);
    for (m.op = 0; m.op < ops; m.op++) {
        model_step(&m);
    }
    model_check_all(&m);
    hbitmap_free(m.hb);
    free(m.bits);
}

static void test_random_model(void)
{
    static const struct {
        uint64_t size;
        unsigned shift;
    } shapes[] = {
        { 1, 0 }, { 64, 0 }, { 65, 0 }, { 4096, 0 }, { 4097 * 3, 0 },
        { 1000, 3 }, { 64 * 64 * 7 + 3, 2 }, { 300000, 4 }, { 20000 * 512 + 100, 9 },
        { 100000, 16 }, { 5000 * 4096 - 1, 12 },
    };
    int ops = test_sanitized() ? 600 : 3000;
    uint64_t seed = test_seed();

    for (size_t i = 0; i < ARRAY_SIZE(shapes); i++) {
        model_run(shapes[i].size, shapes[i].shift, ops, seed + i);
    }
    /* Four levels; the model scans, so fewer operations. */
    model_run(64 * 64 * 64 + 1000, 0, ops / 10, seed + 100);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("hbitmap", NULL, NULL);
    CU_add_test(s, "new_free", test_new_free);
    CU_add_test(s, "zero_size", test_zero_size);
    CU_add_test(s, "set_get_granules", test_set_get_granules);
    CU_add_test(s, "shift0", test_shift0);
    CU_add_test(s, "last_partial_granule", test_last_partial_granule);
    CU_add_test(s, "reset_partial", test_reset_partial);
    CU_add_test(s, "level_boundaries", test_level_boundaries);
    CU_add_test(s, "next_dirty_zero", test_next_dirty_zero);
    CU_add_test(s, "next_dirty_area", test_next_dirty_area);
    CU_add_test(s, "iter", test_iter);
    CU_add_test(s, "sparse_huge", test_sparse_huge);
    CU_add_test(s, "large_shifts", test_large_shifts);
    CU_add_test(s, "truncate", test_truncate);
    CU_add_test(s, "merge", test_merge);
    CU_add_test(s, "copy", test_copy);
    CU_add_test(s, "serialize_layout", test_serialize_layout);
    CU_add_test(s, "serialize_round_trip", test_serialize_round_trip);
    CU_add_test(s, "random_model", test_random_model);
}
