/*
 * Hierarchical dirty bitmaps: granule bits at level 0, and above them
 * levels that say which words of the level below are not zero.
 *
 * Invariants, kept by every call except the deserialize ones (which leave
 * them to hbitmap_deserialize_finish):
 *  - bit j of word i at level L+1 is set iff word i*64+j of level L != 0;
 *  - bits past the last granule (and past the last word of a level) are 0;
 *  - set_bits is the number of bits set at level 0.
 */
#include "util/hbitmap.h"

#define BITS_PER_WORD 64
#define WORD_SHIFT 6

/* 2^64 granules need 11 levels (64^11 > 2^64); one to spare. */
#define HB_MAX_LEVELS 12

#define NO_BIT UINT64_MAX

struct hbitmap {
    uint64_t size;          /* items */
    uint64_t nbits;         /* granules */
    unsigned shift;         /* log2 of the items per granule */
    unsigned nlevels;
    uint64_t set_bits;      /* granules set at level 0 */
    uint64_t nwords[HB_MAX_LEVELS];
    uint64_t *levels[HB_MAX_LEVELS];
};

static uint64_t words_for(uint64_t bits)
{
    /* Not (bits + 63) / 64: bits may be close to 2^64. */
    return (bits >> WORD_SHIFT) + ((bits & (BITS_PER_WORD - 1)) != 0);
}

static uint64_t granules_for(uint64_t size, unsigned shift)
{
    uint64_t mask = (1ULL << shift) - 1;
    return (size >> shift) + ((size & mask) != 0);
}

static int popcount64(uint64_t v)
{
    return __builtin_popcountll(v);
}

static bool test_bit(const uint64_t *words, uint64_t bit)
{
    return (words[bit >> WORD_SHIFT] >> (bit & (BITS_PER_WORD - 1))) & 1;
}

/* Bits [lo, hi] of a word, 0 <= lo <= hi <= 63. */
static uint64_t word_mask(unsigned lo, unsigned hi)
{
    return (~0ULL << lo) & (~0ULL >> (BITS_PER_WORD - 1 - hi));
}

/* Set or clear bits [first, last] of words; returns how many changed. */
static uint64_t bits_update(uint64_t *words, uint64_t first, uint64_t last, bool set)
{
    uint64_t fw = first >> WORD_SHIFT, lw = last >> WORD_SHIFT;
    uint64_t changed = 0;

    for (uint64_t i = fw; i <= lw; i++) {
        unsigned lo = i == fw ? first & (BITS_PER_WORD - 1) : 0;
        unsigned hi = i == lw ? last & (BITS_PER_WORD - 1) : BITS_PER_WORD - 1;
        uint64_t mask = word_mask(lo, hi);
        uint64_t old = words[i];

        if (set) {
            changed += popcount64(mask & ~old);
            words[i] = old | mask;
        } else {
            changed += popcount64(mask & old);
            words[i] = old & ~mask;
        }
    }
    return changed;
}

/*
 * The granules [*first, *last] that items [start, start+count) touch,
 * clipped to the size; false when there are none.
 */
static bool item_range(const struct hbitmap *hb, uint64_t start, uint64_t count,
                       uint64_t *first, uint64_t *last)
{
    if (count == 0 || start >= hb->size) {
        return false;
    }
    uint64_t end = start + MIN(count, hb->size - start);
    *first = start >> hb->shift;
    *last = (end - 1) >> hb->shift;
    return true;
}

/* Size the levels for hb->nbits granules and allocate the upper ones, clean. */
static void alloc_upper_levels(struct hbitmap *hb)
{
    unsigned l = 0;

    hb->nwords[0] = MAX(words_for(hb->nbits), 1);
    while (hb->nwords[l] > 1) {
        hb->nwords[l + 1] = words_for(hb->nwords[l]);
        l++;
        hb->levels[l] = xcalloc(hb->nwords[l], sizeof(uint64_t));
    }
    hb->nlevels = l + 1;
}

static void free_upper_levels(struct hbitmap *hb)
{
    for (unsigned l = 1; l < hb->nlevels; l++) {
        free(hb->levels[l]);
        hb->levels[l] = NULL;
    }
}

/* Recompute the upper levels and set_bits from level 0. */
static void rebuild(struct hbitmap *hb)
{
    hb->set_bits = 0;
    for (uint64_t i = 0; i < hb->nwords[0]; i++) {
        hb->set_bits += popcount64(hb->levels[0][i]);
    }
    for (unsigned l = 1; l < hb->nlevels; l++) {
        const uint64_t *below = hb->levels[l - 1];
        uint64_t *words = hb->levels[l];

        memset(words, 0, hb->nwords[l] * sizeof(uint64_t));
        for (uint64_t i = 0; i < hb->nwords[l - 1]; i++) {
            if (below[i]) {
                words[i >> WORD_SHIFT] |= 1ULL << (i & (BITS_PER_WORD - 1));
            }
        }
    }
}

struct hbitmap *hbitmap_new(uint64_t size, unsigned granularity_shift)
{
    if (size > INT64_MAX || granularity_shift >= BITS_PER_WORD) {
        return NULL;
    }
    struct hbitmap *hb = xzalloc(sizeof(*hb));
    hb->size = size;
    hb->shift = granularity_shift;
    hb->nbits = granules_for(size, granularity_shift);
    alloc_upper_levels(hb);
    hb->levels[0] = xcalloc(hb->nwords[0], sizeof(uint64_t));
    return hb;
}

void hbitmap_free(struct hbitmap *hb)
{
    if (!hb) {
        return;
    }
    free_upper_levels(hb);
    free(hb->levels[0]);
    free(hb);
}

uint64_t hbitmap_size(const struct hbitmap *hb)
{
    return hb->size;
}

unsigned hbitmap_granularity_shift(const struct hbitmap *hb)
{
    return hb->shift;
}

/* Set granules [first, last] and the summary bits above them. */
static void set_bits(struct hbitmap *hb, uint64_t first, uint64_t last)
{
    uint64_t changed = bits_update(hb->levels[0], first, last, true);

    hb->set_bits += changed;
    /*
     * Every word of the range now has a bit set, so the whole range of
     * summary bits above is set.  Once a level had them all already, the
     * levels above are right too.
     */
    for (unsigned l = 1; l < hb->nlevels && changed; l++) {
        first >>= WORD_SHIFT;
        last >>= WORD_SHIFT;
        changed = bits_update(hb->levels[l], first, last, true);
    }
}

/* Clear granules [first, last] and the summary bits of words left empty. */
static void clear_bits(struct hbitmap *hb, uint64_t first, uint64_t last)
{
    uint64_t changed = bits_update(hb->levels[0], first, last, false);

    hb->set_bits -= changed;
    for (unsigned l = 0; l + 1 < hb->nlevels && changed; l++) {
        /*
         * Words strictly inside the range are now zero; the two at its
         * ends may still hold bits outside it and keep their summary bit.
         */
        uint64_t fw = first >> WORD_SHIFT, lw = last >> WORD_SHIFT;
        bool keep_first = hb->levels[l][fw] != 0;
        bool keep_last = hb->levels[l][lw] != 0;

        if (fw == lw) {
            if (keep_first) {
                break;
            }
        } else {
            fw += keep_first;
            lw -= keep_last;
            if (fw > lw) {
                break;
            }
        }
        first = fw;
        last = lw;
        changed = bits_update(hb->levels[l + 1], first, last, false);
    }
}

void hbitmap_set(struct hbitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (item_range(hb, start, count, &first, &last)) {
        set_bits(hb, first, last);
    }
}

void hbitmap_reset(struct hbitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (item_range(hb, start, count, &first, &last)) {
        clear_bits(hb, first, last);
    }
}

void hbitmap_reset_all(struct hbitmap *hb)
{
    for (unsigned l = 0; l < hb->nlevels; l++) {
        memset(hb->levels[l], 0, hb->nwords[l] * sizeof(uint64_t));
    }
    hb->set_bits = 0;
}

bool hbitmap_get(const struct hbitmap *hb, uint64_t item)
{
    return item < hb->size && test_bit(hb->levels[0], item >> hb->shift);
}

uint64_t hbitmap_count(const struct hbitmap *hb)
{
    if (hb->set_bits == 0) {
        return 0;
    }
    uint64_t last = hb->nbits - 1;
    if (!test_bit(hb->levels[0], last)) {
        return hb->set_bits << hb->shift;
    }
    /* The last granule counts only up to the size; this order cannot overflow. */
    return ((hb->set_bits - 1) << hb->shift) + (hb->size - (last << hb->shift));
}

bool hbitmap_empty(const struct hbitmap *hb)
{
    return hb->set_bits == 0;
}

/*
 * The first set granule at or after bit, or NO_BIT.  Climbs while the
 * rest of the current word is empty, then descends along first set bits,
 * which the invariant guarantees lead to a set granule.
 */
static uint64_t find_set(const struct hbitmap *hb, uint64_t bit)
{
    unsigned l = 0;
    uint64_t pos = bit;
    uint64_t word;

    for (;;) {
        uint64_t wi = pos >> WORD_SHIFT;
        if (wi < hb->nwords[l]) {
            word = hb->levels[l][wi] & (~0ULL << (pos & (BITS_PER_WORD - 1)));
            if (word) {
                break;
            }
        }
        if (++l == hb->nlevels) {
            return NO_BIT;
        }
        /* The rest of word wi is empty: continue with word wi+1, a bit above. */
        pos = wi + 1;
    }
    pos = (pos & ~(uint64_t)(BITS_PER_WORD - 1)) + ctz64(word);
    while (l > 0) {
        l--;
        pos = (pos << WORD_SHIFT) + ctz64(hb->levels[l][pos]);
    }
    return pos;
}

/* The first clear granule in [bit, last], or NO_BIT; last < nbits. */
static uint64_t find_zero(const struct hbitmap *hb, uint64_t bit, uint64_t last)
{
    const uint64_t *words = hb->levels[0];
    uint64_t wi = bit >> WORD_SHIFT, lw = last >> WORD_SHIFT;
    uint64_t inv = ~words[wi] & (~0ULL << (bit & (BITS_PER_WORD - 1)));

    /* No summary of clean words exists, so this one scans. */
    while (!inv) {
        if (++wi > lw) {
            return NO_BIT;
        }
        inv = ~words[wi];
    }
    uint64_t pos = (wi << WORD_SHIFT) + ctz64(inv);
    return pos <= last ? pos : NO_BIT;
}

/* The item where granule bit begins, but not before start. */
static int64_t granule_item(const struct hbitmap *hb, uint64_t bit, uint64_t start)
{
    return (int64_t)MAX(bit << hb->shift, start);
}

int64_t hbitmap_next_dirty(const struct hbitmap *hb, uint64_t start, uint64_t end)
{
    end = MIN(end, hb->size);
    if (start >= end) {
        return -1;
    }
    uint64_t bit = find_set(hb, start >> hb->shift);
    if (bit == NO_BIT) {
        return -1;
    }
    int64_t item = granule_item(hb, bit, start);
    return (uint64_t)item < end ? item : -1;
}

int64_t hbitmap_next_zero(const struct hbitmap *hb, uint64_t start, uint64_t end)
{
    end = MIN(end, hb->size);
    if (start >= end) {
        return -1;
    }
    uint64_t bit = find_zero(hb, start >> hb->shift, (end - 1) >> hb->shift);
    return bit == NO_BIT ? -1 : granule_item(hb, bit, start);
}

bool hbitmap_next_dirty_area(const struct hbitmap *hb, uint64_t start, uint64_t end,
                             uint64_t max_count, uint64_t *area_start,
                             uint64_t *area_count)
{
    end = MIN(end, hb->size);
    if (max_count == 0) {
        return false;
    }
    int64_t first = hbitmap_next_dirty(hb, start, end);
    if (first < 0) {
        return false;
    }
    uint64_t s = (uint64_t)first;
    uint64_t limit = max_count >= end - s ? end : s + max_count;
    int64_t zero = hbitmap_next_zero(hb, s, limit);

    *area_start = s;
    *area_count = (zero < 0 ? limit : (uint64_t)zero) - s;
    return true;
}

void hbitmap_iter_init(struct hbitmap_iter *it, const struct hbitmap *hb, uint64_t first)
{
    it->hb = hb;
    it->first = first;
    it->next_bit = first < hb->size ? first >> hb->shift : hb->nbits;
}

int64_t hbitmap_iter_next(struct hbitmap_iter *it)
{
    const struct hbitmap *hb = it->hb;

    if (it->next_bit >= hb->nbits) {
        return -1;
    }
    uint64_t bit = find_set(hb, it->next_bit);
    if (bit == NO_BIT) {
        it->next_bit = hb->nbits;
        return -1;
    }
    it->next_bit = bit + 1;
    return granule_item(hb, bit, it->first);
}

void hbitmap_truncate(struct hbitmap *hb, uint64_t new_size)
{
    new_size = MIN(new_size, (uint64_t)INT64_MAX);
    uint64_t old_words = hb->nwords[0];
    uint64_t nbits = granules_for(new_size, hb->shift);

    /* Drop granules past the new end first, so none survive a later grow. */
    if (nbits < hb->nbits) {
        bits_update(hb->levels[0], nbits, hb->nbits - 1, false);
    }
    free_upper_levels(hb);
    hb->size = new_size;
    hb->nbits = nbits;
    alloc_upper_levels(hb);
    hb->levels[0] = xrealloc(hb->levels[0], hb->nwords[0] * sizeof(uint64_t));
    if (hb->nwords[0] > old_words) {
        memset(hb->levels[0] + old_words, 0,
               (hb->nwords[0] - old_words) * sizeof(uint64_t));
    }
    rebuild(hb);
}

bool hbitmap_merge(const struct hbitmap *a, const struct hbitmap *b, struct hbitmap *result)
{
    if (a->size != b->size || a->size != result->size ||
        a->shift != b->shift || a->shift != result->shift) {
        return false;
    }
    /* A word is non-zero in a | b iff it is in a or in b: every level ORs. */
    uint64_t added = 0;
    for (uint64_t i = 0; i < a->nwords[0]; i++) {
        uint64_t word = a->levels[0][i] | b->levels[0][i];
        added += popcount64(word & ~a->levels[0][i]);
        result->levels[0][i] = word;
    }
    for (unsigned l = 1; l < a->nlevels; l++) {
        for (uint64_t i = 0; i < a->nwords[l]; i++) {
            result->levels[l][i] = a->levels[l][i] | b->levels[l][i];
        }
    }
    result->set_bits = a->set_bits + added;
    return true;
}

struct hbitmap *hbitmap_copy(const struct hbitmap *hb)
{
    struct hbitmap *copy = xmalloc(sizeof(*copy));

    *copy = *hb;
    for (unsigned l = 0; l < hb->nlevels; l++) {
        size_t bytes = hb->nwords[l] * sizeof(uint64_t);
        copy->levels[l] = xmalloc(bytes);
        memcpy(copy->levels[l], hb->levels[l], bytes);
    }
    return copy;
}

/* Serialization. */

uint64_t hbitmap_serialization_align(const struct hbitmap *hb)
{
    /* 64 << shift overflows from shift 58; 2^63 still divides every granule start. */
    if (hb->shift >= 63 - WORD_SHIFT) {
        return 1ULL << 63;
    }
    return (uint64_t)BITS_PER_WORD << hb->shift;
}

uint64_t hbitmap_serialization_size(const struct hbitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (!item_range(hb, start, count, &first, &last)) {
        return 0;
    }
    return words_for(last - first + 1) * sizeof(uint64_t);
}

/* len (1..64) granule bits starting at granule bit, in the low bits. */
static uint64_t extract_bits(const struct hbitmap *hb, uint64_t bit, unsigned len)
{
    const uint64_t *words = hb->levels[0];
    uint64_t wi = bit >> WORD_SHIFT;
    unsigned off = bit & (BITS_PER_WORD - 1);
    uint64_t v = words[wi] >> off;

    if (off && off + len > BITS_PER_WORD) {
        v |= words[wi + 1] << (BITS_PER_WORD - off);
    }
    return len == BITS_PER_WORD ? v : v & ((1ULL << len) - 1);
}

/* Store the low len (1..64) bits of v at granule bit; the bits exist. */
static void deposit_bits(struct hbitmap *hb, uint64_t bit, unsigned len, uint64_t v)
{
    uint64_t *words = hb->levels[0];
    uint64_t wi = bit >> WORD_SHIFT;
    unsigned off = bit & (BITS_PER_WORD - 1);
    uint64_t mask = len == BITS_PER_WORD ? ~0ULL : (1ULL << len) - 1;

    v &= mask;
    words[wi] = (words[wi] & ~(mask << off)) | (v << off);
    if (off && off + len > BITS_PER_WORD) {
        unsigned spill = BITS_PER_WORD - off;
        words[wi + 1] = (words[wi + 1] & ~(mask >> spill)) | (v >> spill);
    }
}

static void store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

void hbitmap_serialize_part(const struct hbitmap *hb, uint8_t *buf, uint64_t start,
                            uint64_t count)
{
    uint64_t first, last;

    if (!item_range(hb, start, count, &first, &last)) {
        return;
    }
    uint64_t n = last - first + 1;
    for (uint64_t k = 0; k < words_for(n); k++) {
        uint64_t done = k << WORD_SHIFT;
        unsigned len = (unsigned)MIN(n - done, BITS_PER_WORD);
        store_le64(buf + k * 8, extract_bits(hb, first + done, len));
    }
}

void hbitmap_deserialize_part(struct hbitmap *hb, const uint8_t *buf, uint64_t start,
                              uint64_t count)
{
    uint64_t first, last;

    if (!item_range(hb, start, count, &first, &last)) {
        return;
    }
    uint64_t n = last - first + 1;
    for (uint64_t k = 0; k < words_for(n); k++) {
        uint64_t done = k << WORD_SHIFT;
        unsigned len = (unsigned)MIN(n - done, BITS_PER_WORD);
        deposit_bits(hb, first + done, len, load_le64(buf + k * 8));
    }
}

void hbitmap_deserialize_zeroes(struct hbitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (item_range(hb, start, count, &first, &last)) {
        bits_update(hb->levels[0], first, last, false);
    }
}

void hbitmap_deserialize_ones(struct hbitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (item_range(hb, start, count, &first, &last)) {
        bits_update(hb->levels[0], first, last, true);
    }
}

void hbitmap_deserialize_finish(struct hbitmap *hb)
{
    rebuild(hb);
}
