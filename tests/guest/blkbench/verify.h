/*
 * verify.h: verify=pattern.
 *
 * Every block written carries a 32-byte header (magic, byte offset,
 * generation, seed, header check) and then 64-bit words from a xorshift
 * stream seeded by (offset, generation, seed).  A block is therefore
 * checkable on its own, and a torn or misplaced write shows up.
 *
 * The table holds, per block of the job's region, the generation last
 * written (0: never; GEN_UNKNOWN: a write failed, content undefined) and an
 * in-flight bit, so that no block ever has two writes, or a write and a
 * verified read, outstanding at once.  It lives in the top arena and is
 * kept across jobs while device, region and bs match.
 */
#ifndef BLKBENCH_VERIFY_H
#define BLKBENCH_VERIFY_H

#include <stdint.h>

#define GEN_INFLIGHT  0x80000000u
#define GEN_UNKNOWN   0x7fffffffu
#define GEN_MASK      0x7fffffffu
#define GEN_ANY       0xffffffffu   /* verify_check: accept any generation */

struct vtable {
    int dev;
    uint64_t base;              /* region start, bytes */
    uint64_t nblocks;
    uint32_t bs;
    uint32_t seed;
    uint32_t *gen;
};

/* Expected vs found, for the first few mismatches a job prints. */
struct vmismatch {
    uint64_t offset;
    uint32_t expect_gen;
    uint64_t found_magic;
    uint64_t found_offset;
    uint32_t found_gen;
    uint32_t found_seed;
    uint32_t first_bad_byte;
};

/*
 * The table for this region: the current one if it matches, else a new
 * zeroed one (replacing it) when create is set, else NULL.  NULL also when
 * RAM is short; *nomem says which.
 */
struct vtable *vtable_get(int dev, uint64_t base, uint64_t nblocks, uint32_t bs,
                          uint32_t seed, int create, int *nomem);

/* Next generation after g (1..GEN_UNKNOWN-1, wrapping, never 0). */
static inline uint32_t gen_next(uint32_t g)
{
    g = (g & GEN_MASK) + 1;
    return g >= GEN_UNKNOWN ? 1 : g;
}

void verify_fill(void *buf, uint32_t bs, uint64_t offset, uint32_t gen, uint32_t seed);

/*
 * 0 when buf holds what verify_fill wrote for (offset, gen, seed); with
 * gen == GEN_ANY, any generation and seed the header claims.  Else fills m.
 */
int verify_check(const void *buf, uint32_t bs, uint64_t offset, uint32_t gen,
                 uint32_t seed, struct vmismatch *m);

#endif
