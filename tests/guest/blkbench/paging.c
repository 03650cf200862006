/* paging.c: see paging.h. */
#include "blkbench.h"
#include "lib.h"
#include "mem.h"
#include "paging.h"
#include "serial.h"

#define PTE_P     0x001ull
#define PTE_RW    0x002ull
#define PTE_US    0x004ull
#define PTE_PWT   0x008ull
#define PTE_PCD   0x010ull
#define PTE_PS    0x080ull
#define PTE_ADDR  0x000ffffffffff000ull
#define PTE_DIR   (PTE_P | PTE_RW | PTE_US)
#define PTE_MMIO  (PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_PWT | PTE_PCD)

#define LOW_MAPPED 0x100000000ull   /* entry.S's static map */
#define GIB        (1ull << 30)
#define TWO_MIB    (1ull << 21)

extern uint64_t pml4[];

/* The table that entry idx of tbl points to, allocated if absent. */
static uint64_t *next_table(uint64_t *tbl, unsigned idx)
{
    if (!(tbl[idx] & PTE_P)) {
        uint64_t *t = mem_zalloc(4096, 4096);
        if (!t)
            return NULL;
        tbl[idx] = (uintptr_t)t | PTE_DIR;
    }
    return (uint64_t *)(uintptr_t)(tbl[idx] & PTE_ADDR);
}

static int map_one(uint64_t a)
{
    uint64_t *pdpt = next_table(pml4, (a >> 39) & 511);
    if (!pdpt)
        return -1;
    unsigned i3 = (a >> 30) & 511;
    if (paging_1g) {
        if (!(pdpt[i3] & PTE_P))
            pdpt[i3] = (a & ~(GIB - 1)) | PTE_MMIO;
        return 0;
    }
    uint64_t *pd = next_table(pdpt, i3);
    if (!pd)
        return -1;
    unsigned i2 = (a >> 21) & 511;
    if (!(pd[i2] & PTE_P))
        pd[i2] = (a & ~(TWO_MIB - 1)) | PTE_MMIO;
    return 0;
}

int paging_map_mmio(uint64_t paddr, uint64_t len)
{
    uint64_t step = paging_1g ? GIB : TWO_MIB;

    if (paddr + len <= LOW_MAPPED)
        return 0;
    if (paddr + len < paddr || (paddr + len) >> 48) {
        kprintf("BLKBENCH-ERROR cannot map 0x%lx+0x%lx\n", paddr, len);
        return -1;
    }
    for (uint64_t a = paddr & ~(step - 1); a < paddr + len; a += step)
        if (a >= LOW_MAPPED && map_one(a) < 0) {
            kprintf("BLKBENCH-ERROR out of memory for page tables\n");
            return -1;
        }
    return 0;
}
