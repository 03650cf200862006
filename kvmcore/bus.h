/*
 * An address space of emulated registers: one for I/O ports, one for
 * MMIO.  A device registers a range with read/write callbacks; a vCPU exit
 * is dispatched to the range holding its address, with the offset into it.
 *
 * Ranges may be added, moved and removed while vCPUs run (a guest moving
 * a BAR).  The lookup holds a read lock only to copy the range; the
 * callback runs unlocked, so a callback may itself change the bus.  A
 * device's opaque must stay valid until every vCPU has stopped.
 */
#ifndef SPINDLE_KVMCORE_BUS_H
#define SPINDLE_KVMCORE_BUS_H

#include <pthread.h>

#include "util/error.h"
#include "util/osdep.h"

/*
 * Callbacks get the offset into the range and the access size (1, 2, 4 or
 * 8; little-endian values).  read returns the value; unused high bits are
 * ignored.  They run on vCPU threads, several at once.
 */
struct kvm_bus_ops {
    uint64_t (*read)(void *opaque, uint64_t off, unsigned size);
    void (*write)(void *opaque, uint64_t off, uint64_t val, unsigned size);
};

struct kvm_bus_range {
    uint64_t base, size;
    const struct kvm_bus_ops *ops;
    void *opaque;
    const char *name;
};

struct kvm_bus {
    const char *name;                 /* "I/O port", "MMIO" */
    pthread_rwlock_t lock;
    struct kvm_bus_range *ranges;     /* sorted by base, disjoint */
    unsigned n, cap;
};

void kvm_bus_init(struct kvm_bus *bus, const char *name);
void kvm_bus_destroy(struct kvm_bus *bus);

/* Register [base, base+size); refuses an empty range or one that overlaps. */
int kvm_bus_add(struct kvm_bus *bus, uint64_t base, uint64_t size,
                const struct kvm_bus_ops *ops, void *opaque, const char *name,
                struct err *err);
/* Remove the range that starts at base and belongs to opaque; -ENOENT if none. */
int kvm_bus_del(struct kvm_bus *bus, uint64_t base, void *opaque);

/*
 * Dispatch an access of len bytes at addr.  false when no range holds it
 * (reads then see all ones, as on a PC).
 */
bool kvm_bus_read(struct kvm_bus *bus, uint64_t addr, void *data, unsigned len);
bool kvm_bus_write(struct kvm_bus *bus, uint64_t addr, const void *data, unsigned len);

#endif
