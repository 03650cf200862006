/* Guest-physical to host address lookups; see guest-mem.h. */
#include "dataplane/guest-mem.h"

void guest_mem_init(struct guest_mem *mem)
{
    memset(mem, 0, sizeof(*mem));
}

int guest_mem_add(struct guest_mem *mem, const struct guest_mem_region *r, struct err *err)
{
    if (r->size == 0) {
        err_set(err, "guest memory region at 0x%" PRIx64 " is empty", r->gpa);
        return -EINVAL;
    }
    if (r->gpa + r->size < r->gpa) {
        err_set(err, "guest memory region at 0x%" PRIx64 " of 0x%" PRIx64
                " bytes wraps past the end of the address space", r->gpa, r->size);
        return -EINVAL;
    }
    if (mem->nregions == GUEST_MEM_MAX_REGIONS) {
        err_set(err, "guest memory has more than %d regions", GUEST_MEM_MAX_REGIONS);
        return -ENOSPC;
    }
    for (unsigned i = 0; i < mem->nregions; i++) {
        const struct guest_mem_region *o = &mem->regions[i];
        if (ranges_overlap(r->gpa, r->size, o->gpa, o->size)) {
            err_set(err, "guest memory region 0x%" PRIx64 "+0x%" PRIx64
                    " overlaps region 0x%" PRIx64 "+0x%" PRIx64,
                    r->gpa, r->size, o->gpa, o->size);
            return -EEXIST;
        }
    }
    mem->regions[mem->nregions++] = *r;
    return 0;
}

const struct guest_mem_region *guest_mem_find(const struct guest_mem *mem, uint64_t gpa)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        const struct guest_mem_region *r = &mem->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size) {
            return r;
        }
    }
    return NULL;
}

void *guest_mem_map(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    if (len == 0) {
        len = 1;
    }
    const struct guest_mem_region *r = guest_mem_find(mem, gpa);
    if (!r) {
        return NULL;
    }
    /* Written so that nothing overflows: gpa - r->gpa < r->size here. */
    uint64_t off = gpa - r->gpa;
    if (len > r->size - off) {
        return NULL;
    }
    return (char *)r->hva + off;
}
