/*
 * pvh.h: the PVH boot ABI's start-of-day structures, as described by Xen's
 * public/arch-x86/hvm/start_info.h (version 1 adds the memory map).
 */
#ifndef BLKBENCH_PVH_H
#define BLKBENCH_PVH_H

#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;      /* version >= 1 */
    uint32_t memmap_entries;    /* version >= 1 */
    uint32_t reserved;
};

struct hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;              /* 1 = RAM, as in E820 */
    uint32_t reserved;
};

#define HVM_MEMMAP_RAM 1

#endif
