/*
 * mem.h: guest RAM.  One usable region below 4 GiB is chosen at start
 * (from the PVH memory map, else CMOS); allocations come from its bottom
 * (per-job arenas: mark and release) and its top (state that outlives a
 * job: the verify generation table).  Everything is identity-mapped, so a
 * pointer is also the physical address a device is given.
 */
#ifndef BLKBENCH_MEM_H
#define BLKBENCH_MEM_H

#include <stddef.h>
#include <stdint.h>

/* Read the memory map; prints one BLKBENCH-INFO line.  0 or -1. */
int mem_init(const void *start_info);

/* size bytes aligned to align (a power of two); NULL when RAM runs out. */
void *mem_alloc(size_t size, size_t align);
void *mem_zalloc(size_t size, size_t align);
uintptr_t mem_mark(void);
void mem_release(uintptr_t mark);

/* From the top; mem_top_reset() frees everything allocated there. */
void *mem_alloc_top(size_t size, size_t align);
void mem_top_reset(void);

uint64_t mem_free_bytes(void);

#endif
