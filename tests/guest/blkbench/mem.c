/* mem.c: the two-ended bump allocator over one RAM region (see mem.h). */
#include "blkbench.h"
#include "io.h"
#include "lib.h"
#include "mem.h"
#include "pvh.h"
#include "serial.h"

#define FOUR_GIB   0x100000000ull
#define ONE_MIB    0x100000ull
#define SIXTEEN_MIB 0x1000000ull

extern char __image_end[];

static uintptr_t region_lo, region_hi;  /* the region: [lo, hi) */
static uintptr_t bottom, top;           /* next free byte from each end */

/* Clip [a, a+len) to [image end, 4 GiB); keep it if it is the biggest. */
static void consider(uint64_t a, uint64_t len)
{
    uint64_t lo = a, hi = a + len;

    if (lo < (uintptr_t)__image_end)
        lo = (uintptr_t)__image_end;
    if (hi > FOUR_GIB)
        hi = FOUR_GIB;
    if (hi > lo && hi - lo > region_hi - region_lo) {
        region_lo = lo;
        region_hi = hi;
    }
}

static int from_pvh_memmap(const struct hvm_start_info *si)
{
    if (!si || si->magic != HVM_START_MAGIC || si->version < 1 ||
        !si->memmap_paddr || !si->memmap_entries)
        return -1;
    const struct hvm_memmap_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries; i++)
        if (e[i].type == HVM_MEMMAP_RAM)
            consider(e[i].addr, e[i].size);
    return region_hi > region_lo ? 0 : -1;
}

static uint8_t cmos_read(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

/* The PC CMOS sizes: 0x34/0x35 in 64 KiB units above 16 MiB, else 0x30/0x31 in KiB above 1 MiB. */
static int from_cmos(void)
{
    uint64_t above16 = (uint64_t)(cmos_read(0x34) | cmos_read(0x35) << 8) << 16;
    uint64_t above1 = (uint64_t)(cmos_read(0x30) | cmos_read(0x31) << 8) << 10;

    if (above16)
        consider(ONE_MIB, SIXTEEN_MIB - ONE_MIB + above16);
    else if (above1)
        consider(ONE_MIB, above1);
    return region_hi > region_lo ? 0 : -1;
}

int mem_init(const void *start_info)
{
    const char *src = "pvh-memmap";

    if (from_pvh_memmap(start_info) < 0) {
        src = "cmos";
        if (from_cmos() < 0)
            return -1;
    }
    region_lo = ALIGN_UP(region_lo, 4096);
    bottom = region_lo;
    top = region_hi & ~(uintptr_t)4095;
    kprintf("BLKBENCH-INFO mem source=%s base=0x%lx size_mib=%lu\n", src,
            (unsigned long)region_lo, (unsigned long)((top - bottom) >> 20));
    return 0;
}

void *mem_alloc(size_t size, size_t align)
{
    uintptr_t p = ALIGN_UP(bottom, align);

    if (p > top || top - p < size)
        return NULL;
    bottom = p + size;
    return (void *)p;
}

void *mem_zalloc(size_t size, size_t align)
{
    void *p = mem_alloc(size, align);

    if (p)
        memset(p, 0, size);
    return p;
}

uintptr_t mem_mark(void)
{
    return bottom;
}

void mem_release(uintptr_t mark)
{
    bottom = mark;
}

void *mem_alloc_top(size_t size, size_t align)
{
    if (top - bottom < size)
        return NULL;
    uintptr_t p = (top - size) & ~(uintptr_t)(align - 1);
    if (p < bottom)
        return NULL;
    top = p;
    return (void *)p;
}

void mem_top_reset(void)
{
    top = region_hi & ~(uintptr_t)4095;
}

uint64_t mem_free_bytes(void)
{
    return top - bottom;
}
