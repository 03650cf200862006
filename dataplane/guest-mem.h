/*
 * Guest memory as a device sees it: a few regions of guest-physical
 * addresses, each mapped somewhere in this process.  kvmcore builds one
 * from the VM's RAM; the vhost-user server builds one from the client's
 * memory table (regions it mmap'ed from the client's fds).
 *
 * A guest_mem is immutable once shared with a device: to change the map,
 * build a new one and hand it over (vhost-user SET_MEM_TABLE does that
 * with the device stopped).  Lookups therefore need no lock and may run on
 * any thread.
 */
#ifndef SPINDLE_DATAPLANE_GUEST_MEM_H
#define SPINDLE_DATAPLANE_GUEST_MEM_H

#include "util/error.h"
#include "util/osdep.h"

#define GUEST_MEM_MAX_REGIONS 16

struct guest_mem_region {
    uint64_t gpa;            /* first guest-physical address */
    uint64_t size;           /* bytes; > 0 */
    void *hva;               /* where gpa is mapped in this process */
    int fd;                  /* the backing file (memfd, hugetlbfs), or -1 */
    uint64_t fd_offset;      /* offset of gpa in fd */
};

struct guest_mem {
    unsigned nregions;
    struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

void guest_mem_init(struct guest_mem *mem);

/*
 * Add a region.  Refuses (with a sentence) a zero size, a range that wraps
 * past 2^64, one that overlaps a region already there, and a full table.
 */
int guest_mem_add(struct guest_mem *mem, const struct guest_mem_region *r, struct err *err);

/*
 * The host address of [gpa, gpa+len), only if the whole range lies inside
 * one region; else NULL (out of range, crossing a region's end, or wrapping
 * past 2^64).  len 0 is treated as 1.  Any thread.
 */
void *guest_mem_map(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* The region holding gpa, or NULL. */
const struct guest_mem_region *guest_mem_find(const struct guest_mem *mem, uint64_t gpa);

#endif
