/*
 * Guest RAM: one shared mapping of a memfd (or of a file under -mem-path,
 * e.g. on hugetlbfs), so that a vhost-user back end can map the same pages
 * later.  Below 4 GiB it fills up to KVM_LOW_RAM_MAX; the rest continues at
 * 4 GiB.  The guest learns the layout from an e820-style memory map.
 */
#ifndef SPINDLE_KVMCORE_RAM_H
#define SPINDLE_KVMCORE_RAM_H

#include "dataplane/guest-mem.h"
#include "kvmcore/kvm.h"
#include "util/error.h"

#define KVM_RAM_MIN (16 * MiB)

struct kvm_ram {
    int fd;
    void *hva;                /* the whole RAM, size bytes */
    uint64_t size;
    uint64_t low_size;        /* at guest-physical 0 */
    uint64_t high_size;       /* at KVM_HIGH_RAM_START */
    uint64_t page_size;       /* of the backing file (huge pages on hugetlbfs) */
    struct guest_mem mem;     /* both parts, for devices */
};

/*
 * Allocate size bytes of RAM: from a memfd, or when mem_path is set from a
 * new (unlinked) file in that directory, or that file if it is one.
 */
int kvm_ram_alloc(struct kvm_ram *ram, uint64_t size, const char *mem_path, struct err *err);
/* Give the RAM to the VM (one or two memory slots). */
int kvm_ram_map(struct kvm_ram *ram, struct kvm_vm *vm, struct err *err);
void kvm_ram_free(struct kvm_ram *ram);

/* The host address of guest-physical [gpa, gpa+len), or NULL. */
static inline void *kvm_ram_ptr(const struct kvm_ram *ram, uint64_t gpa, uint64_t len)
{
    return guest_mem_map(&ram->mem, gpa, len);
}

/* Whether [gpa, gpa+len) is RAM. */
static inline bool kvm_ram_contains(const struct kvm_ram *ram, uint64_t gpa, uint64_t len)
{
    return guest_mem_map(&ram->mem, gpa, len) != NULL;
}

/* The e820 types. */
#define E820_RAM      1
#define E820_RESERVED 2

struct kvm_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

#define KVM_E820_MAX 8

/* The memory map the guest is told about; returns the number of entries. */
unsigned kvm_ram_e820(const struct kvm_ram *ram, struct kvm_e820_entry *e, unsigned max);

/*
 * Parse a -m size as QEMU does: a number with an optional suffix
 * (k, M, G, T; no suffix means MiB).  Returns bytes, or 0 if malformed.
 */
uint64_t kvm_parse_mem_size(const char *s);

#endif
