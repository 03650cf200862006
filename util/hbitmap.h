/*
 * Hierarchical dirty bitmaps.
 *
 * An hbitmap tracks which parts of a range of `size` items (bytes of a
 * disk) are dirty, one bit per granule of 2^granularity_shift items.  The
 * granule bits (level 0) sit under a pyramid of summary levels: bit j of
 * word i at level L+1 is set exactly when word i*64+j of level L is not
 * zero.  Finding the next dirty granule therefore walks up and down
 * log64(granules) words instead of scanning, so iterating a sparse bitmap
 * of a 1 TiB disk (16M granules of 64 KiB) costs what its dirty granules
 * cost.  Memory is size / granule / 8 bytes plus about 1/63 of that.
 *
 * Ranges are (start, count) in items.  A range touching only part of a
 * granule touches that whole granule; ranges running past the end are
 * clipped to it, and start + count may exceed UINT64_MAX (it is clipped,
 * never wrapped).  Offsets come back as int64_t, so size is at most
 * INT64_MAX.
 *
 * Not thread-safe: callers serialize access to one bitmap.  Reading calls
 * may run concurrently with each other.
 */
#ifndef SPINDLE_UTIL_HBITMAP_H
#define SPINDLE_UTIL_HBITMAP_H

#include "util/osdep.h"

struct hbitmap;

/*
 * A clean bitmap of size items (size <= INT64_MAX) at one bit per
 * 2^granularity_shift items (granularity_shift <= 63).  NULL when either
 * is out of range.  Running out of memory aborts, as every allocation in
 * spindle does: callers keep size / granule sane.
 */
struct hbitmap *hbitmap_new(uint64_t size, unsigned granularity_shift);
void hbitmap_free(struct hbitmap *hb);

uint64_t hbitmap_size(const struct hbitmap *hb);
unsigned hbitmap_granularity_shift(const struct hbitmap *hb);

/* Mark dirty every granule that [start, start+count) touches. */
void hbitmap_set(struct hbitmap *hb, uint64_t start, uint64_t count);

/*
 * Mark clean every granule that [start, start+count) touches, including
 * granules it covers only in part: the dirty state of the rest of such a
 * granule is lost.  Callers that must not lose it (a guest write landing
 * in half a granule) pass granule-aligned ranges; the last granule may be
 * cut short by the end of the bitmap.
 */
void hbitmap_reset(struct hbitmap *hb, uint64_t start, uint64_t count);
void hbitmap_reset_all(struct hbitmap *hb);

/* Whether the granule holding item is dirty (false past the end). */
bool hbitmap_get(const struct hbitmap *hb, uint64_t item);

/*
 * Dirty items: dirty granules times the granule size, the last granule
 * counted only up to size.  O(1).
 */
uint64_t hbitmap_count(const struct hbitmap *hb);
bool hbitmap_empty(const struct hbitmap *hb);

/*
 * The first dirty item in [start, end), or -1: start itself when its
 * granule is dirty, otherwise the start of the next dirty granule.  end is
 * clipped to the size.
 */
int64_t hbitmap_next_dirty(const struct hbitmap *hb, uint64_t start, uint64_t end);

/* The same for clean items.  Linear in the granules it skips. */
int64_t hbitmap_next_zero(const struct hbitmap *hb, uint64_t start, uint64_t end);

/*
 * The first dirty run in [start, end), cut to at most max_count items:
 * *area_start is where it begins (start itself or a granule boundary) and
 * *area_count how long it is.  False, with the outputs untouched, when
 * [start, end) holds nothing dirty or max_count is 0.
 */
bool hbitmap_next_dirty_area(const struct hbitmap *hb, uint64_t start, uint64_t end,
                             uint64_t max_count, uint64_t *area_start,
                             uint64_t *area_count);

/*
 * Walks the dirty granules in order.  The iterator holds only a position:
 * the bitmap may change between calls, and the walk sees changes ahead of
 * that position but not behind it.
 */
struct hbitmap_iter {
    const struct hbitmap *hb;
    uint64_t next_bit;   /* the next granule to look at */
    uint64_t first;      /* no offset below this is returned */
};

void hbitmap_iter_init(struct hbitmap_iter *it, const struct hbitmap *hb, uint64_t first);

/*
 * The offset of the next dirty granule (its first item, or first for the
 * granule that holds first), or -1 when there is none.
 */
int64_t hbitmap_iter_next(struct hbitmap_iter *it);

/*
 * Change the size (new_size above INT64_MAX is taken as INT64_MAX).
 * Shrinking drops the granules past the new end.  Growing adds clean
 * granules, but the granule that straddled the old end keeps its state
 * and so the items it gains read dirty: erring toward dirty never loses a
 * write.
 */
void hbitmap_truncate(struct hbitmap *hb, uint64_t new_size);

/*
 * result = a | b.  All three must have the same size and granularity
 * (false, nothing changed, when they do not); result may be a or b.
 */
bool hbitmap_merge(const struct hbitmap *a, const struct hbitmap *b, struct hbitmap *result);

struct hbitmap *hbitmap_copy(const struct hbitmap *hb);

/*
 * Serialization, as persistent bitmaps store it (qcow2): one bit per
 * granule, bit i of a part in bit (i % 8) of byte i / 8.  A part covers
 * the granules that [start, start+count) touches and takes whole 64-bit
 * words, so parts split at multiples of hbitmap_serialization_align()
 * items are contiguous pieces of one stream.
 *
 * Deserializing writes granule bits only: call hbitmap_deserialize_finish()
 * after the last deserialize call and before any other call on hb.
 */

/* Items per 64 granules (capped at 2^63 for shifts of 57 and more). */
uint64_t hbitmap_serialization_align(const struct hbitmap *hb);

/* Bytes a part takes: its granules rounded up to 64, divided by 8. */
uint64_t hbitmap_serialization_size(const struct hbitmap *hb, uint64_t start, uint64_t count);

/* Write the part to buf (serialization_size bytes; bits past the end are 0). */
void hbitmap_serialize_part(const struct hbitmap *hb, uint8_t *buf, uint64_t start,
                            uint64_t count);

/* Load the part from buf (padding bits past the end are ignored). */
void hbitmap_deserialize_part(struct hbitmap *hb, const uint8_t *buf, uint64_t start,
                              uint64_t count);
/* Mark the part clean / dirty without a buffer (qcow2's all-zero / all-one clusters). */
void hbitmap_deserialize_zeroes(struct hbitmap *hb, uint64_t start, uint64_t count);
void hbitmap_deserialize_ones(struct hbitmap *hb, uint64_t start, uint64_t count);

/* Rebuild the summary levels and the count from the granule bits. */
void hbitmap_deserialize_finish(struct hbitmap *hb);

#endif
