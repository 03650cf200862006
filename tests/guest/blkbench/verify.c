/* verify.c: the block pattern and the generation table; see verify.h. */
#include "lib.h"
#include "mem.h"
#include "verify.h"

#define MAGIC 0x31484342424b4c42ull    /* "BLKBBCH1" little-endian */

struct vhdr {
    uint64_t magic;
    uint64_t offset;
    uint32_t gen;
    uint32_t seed;
    uint64_t check;
};

static struct vtable table;
static int table_valid;

/* splitmix64's finaliser: spreads every input bit over the output. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hdr_check(const struct vhdr *h)
{
    return mix(h->magic ^ mix(h->offset ^ mix((uint64_t)h->gen << 32 | h->seed)));
}

static uint64_t stream_seed(uint64_t offset, uint32_t gen, uint32_t seed)
{
    uint64_t s = mix(offset * 0x9e3779b97f4a7c15ull ^ ((uint64_t)gen << 32 | seed));
    return s ? s : 1;                   /* xorshift must not start at 0 */
}

static inline uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void verify_fill(void *buf, uint32_t bs, uint64_t offset, uint32_t gen, uint32_t seed)
{
    struct vhdr *h = buf;
    uint64_t *w = buf, s = stream_seed(offset, gen, seed);

    h->magic = MAGIC;
    h->offset = offset;
    h->gen = gen;
    h->seed = seed;
    h->check = hdr_check(h);
    for (uint32_t i = sizeof(*h) / 8; i < bs / 8; i++)
        w[i] = xorshift64(&s);
}

int verify_check(const void *buf, uint32_t bs, uint64_t offset, uint32_t gen,
                 uint32_t seed, struct vmismatch *m)
{
    const struct vhdr *h = buf;
    const uint64_t *w = buf;

    m->offset = offset;
    m->expect_gen = gen;
    m->found_magic = h->magic;
    m->found_offset = h->offset;
    m->found_gen = h->gen;
    m->found_seed = h->seed;
    m->first_bad_byte = 0;
    if (gen == GEN_ANY) {
        gen = h->gen;
        seed = h->seed;
    }
    if (h->magic != MAGIC || h->offset != offset || h->gen != gen ||
        h->seed != seed || h->check != hdr_check(h))
        return -1;

    uint64_t s = stream_seed(offset, gen, seed);
    for (uint32_t i = sizeof(*h) / 8; i < bs / 8; i++)
        if (w[i] != xorshift64(&s)) {
            m->first_bad_byte = i * 8;
            return -1;
        }
    return 0;
}

struct vtable *vtable_get(int dev, uint64_t base, uint64_t nblocks, uint32_t bs,
                          uint32_t seed, int create, int *nomem)
{
    *nomem = 0;
    if (table_valid && table.dev == dev && table.base == base &&
        table.nblocks == nblocks && table.bs == bs)
        return &table;
    if (!create)
        return NULL;
    table_valid = 0;
    mem_top_reset();
    uint32_t *gen = mem_alloc_top(nblocks * sizeof(uint32_t), 4096);
    if (!gen) {
        *nomem = 1;
        return NULL;
    }
    memset(gen, 0, nblocks * sizeof(uint32_t));
    table = (struct vtable){ dev, base, nblocks, bs, seed, gen };
    table_valid = 1;
    return &table;
}
