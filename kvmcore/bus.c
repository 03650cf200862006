/* Port and MMIO dispatch; see bus.h. */
#include "kvmcore/bus.h"

void kvm_bus_init(struct kvm_bus *bus, const char *name)
{
    memset(bus, 0, sizeof(*bus));
    bus->name = name;
    pthread_rwlock_init(&bus->lock, NULL);
}

void kvm_bus_destroy(struct kvm_bus *bus)
{
    free(bus->ranges);
    bus->ranges = NULL;
    bus->n = bus->cap = 0;
    pthread_rwlock_destroy(&bus->lock);
}

int kvm_bus_add(struct kvm_bus *bus, uint64_t base, uint64_t size,
                const struct kvm_bus_ops *ops, void *opaque, const char *name,
                struct err *err)
{
    if (size == 0 || base + size < base) {
        err_set(err, "%s: bad %s range 0x%" PRIx64 "+0x%" PRIx64, name, bus->name, base, size);
        return -EINVAL;
    }
    pthread_rwlock_wrlock(&bus->lock);
    unsigned pos = 0;
    while (pos < bus->n && bus->ranges[pos].base < base) {
        pos++;
    }
    for (unsigned i = pos ? pos - 1 : 0; i < bus->n && i <= pos; i++) {
        const struct kvm_bus_range *r = &bus->ranges[i];
        if (ranges_overlap(base, size, r->base, r->size)) {
            pthread_rwlock_unlock(&bus->lock);
            err_set(err, "%s: %s range 0x%" PRIx64 "+0x%" PRIx64 " overlaps %s at 0x%" PRIx64,
                    name, bus->name, base, size, r->name, r->base);
            return -EBUSY;
        }
    }
    if (bus->n == bus->cap) {
        bus->cap = bus->cap ? bus->cap * 2 : 16;
        bus->ranges = xrealloc(bus->ranges, bus->cap * sizeof(*bus->ranges));
    }
    memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->n - pos) * sizeof(*bus->ranges));
    bus->ranges[pos] = (struct kvm_bus_range){
        .base = base, .size = size, .ops = ops, .opaque = opaque, .name = name,
    };
    bus->n++;
    pthread_rwlock_unlock(&bus->lock);
    return 0;
}

int kvm_bus_del(struct kvm_bus *bus, uint64_t base, void *opaque)
{
    int ret = -ENOENT;
    pthread_rwlock_wrlock(&bus->lock);
    for (unsigned i = 0; i < bus->n; i++) {
        if (bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
            memmove(&bus->ranges[i], &bus->ranges[i + 1],
                    (bus->n - i - 1) * sizeof(*bus->ranges));
            bus->n--;
            ret = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&bus->lock);
    return ret;
}

/* Copy out the range holding [addr, addr+len); binary search. */
static bool lookup(struct kvm_bus *bus, uint64_t addr, unsigned len, struct kvm_bus_range *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&bus->lock);
    unsigned lo = 0, hi = bus->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct kvm_bus_range *r = &bus->ranges[mid];
        if (addr < r->base) {
            hi = mid;
        } else if (addr - r->base >= r->size) {
            lo = mid + 1;
        } else {
            /* An access straddling the end goes nowhere. */
            if (len <= r->size - (addr - r->base)) {
                *out = *r;
                found = true;
            }
            break;
        }
    }
    pthread_rwlock_unlock(&bus->lock);
    return found;
}

bool kvm_bus_read(struct kvm_bus *bus, uint64_t addr, void *data, unsigned len)
{
    struct kvm_bus_range r;
    if (len == 0 || len > 8 || !lookup(bus, addr, len, &r) || !r.ops->read) {
        memset(data, 0xff, len > 8 ? 8 : len);
        return false;
    }
    uint64_t v = r.ops->read(r.opaque, addr - r.base, len);
    memcpy(data, &v, len);
    return true;
}

bool kvm_bus_write(struct kvm_bus *bus, uint64_t addr, const void *data, unsigned len)
{
    struct kvm_bus_range r;
    if (len == 0 || len > 8 || !lookup(bus, addr, len, &r)) {
        return false;
    }
    uint64_t v = 0;
    memcpy(&v, data, len);
    if (r.ops->write) {
        r.ops->write(r.opaque, addr - r.base, v, len);
    }
    return true;
}
