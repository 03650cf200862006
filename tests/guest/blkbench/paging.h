/*
 * paging.h: extending the identity map from CPL3.
 *
 * entry.S maps the low 4 GiB.  A 64-bit BAR that firmware placed above
 * 4 GiB is mapped here by writing new entries into the (user-accessible)
 * page tables.  Only not-present entries become present, and x86 never
 * caches a not-present translation, so no TLB flush (a CPL0 instruction)
 * is needed.
 */
#ifndef BLKBENCH_PAGING_H
#define BLKBENCH_PAGING_H

#include <stdint.h>

/* Identity-map [paddr, paddr + len) uncached if not mapped yet.  0 or -1. */
int paging_map_mmio(uint64_t paddr, uint64_t len);

#endif
