/* PCI bus 0 and its host bridge; see pci.h. */
#include "kvmcore/pci.h"

#include <stdio.h>

#include "kvmcore/layout.h"
#include "util/log.h"

#define CF8_ENABLE 0x80000000u

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device,
                  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id,
                  const struct pci_dev_ops *ops, void *opaque)
{
    memset(d, 0, sizeof(*d));
    d->slot = -1;
    pstrcpy(d->name, sizeof(d->name), name);
    d->ops = ops;
    d->opaque = opaque;
    put16(d->config + PCI_VENDOR_ID, vendor);
    put16(d->config + PCI_DEVICE_ID, device);
    d->config[PCI_REVISION_ID] = 1;
    d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    put16(d->config + PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
    put16(d->config + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
    put16(d->config + PCI_SUBSYSTEM_ID, subsys_id);
    /* Command: I/O, memory, bus master, SERR, INTx disable are writable. */
    put16(d->wmask + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                                  PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    d->next_cap = 0x40;
}

int pci_dev_add_bar(struct pci_dev *d, unsigned bar, uint64_t size, bool is64, bool prefetch,
                    const struct kvm_bus_ops *ops, void *opaque, struct err *err)
{
    if (bar > 5 || (is64 && bar == 5) || !is_power_of_2(size) || size < 16 ||
        (!is64 && size > 2 * GiB) || d->bars[bar].size || (bar > 0 && d->bars[bar - 1].is64)) {
        err_set(err, "%s: bad BAR %u of %" PRIu64 " bytes", d->name, bar, size);
        return -EINVAL;
    }
    struct pci_bar *b = &d->bars[bar];
    b->size = size;
    b->is64 = is64;
    b->prefetch = prefetch;
    b->ops = ops;
    b->opaque = opaque;
    uint32_t flags = (is64 ? PCI_BAR_MEM_64 : 0) | (prefetch ? PCI_BAR_PREFETCH : 0);
    put32(d->config + PCI_BASE_ADDRESS_0 + 4 * bar, flags);
    put32(d->wmask + PCI_BASE_ADDRESS_0 + 4 * bar, (uint32_t)~(size - 1) & ~0xfu);
    if (is64) {
        put32(d->wmask + PCI_BASE_ADDRESS_0 + 4 * (bar + 1), (uint32_t)(~(size - 1) >> 32));
    }
    return 0;
}

uint8_t pci_dev_add_cap(struct pci_dev *d, uint8_t id, uint8_t len)
{
    unsigned off = ALIGN_UP(d->next_cap, 4u);
    if (off + len > PCI_CONFIG_SIZE || len < 2) {
        return 0;
    }
    d->config[off] = id;
    d->config[off + 1] = 0;
    if (d->last_cap) {
        d->config[d->last_cap + 1] = (uint8_t)off;
    } else {
        d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
        d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    }
    d->last_cap = (uint8_t)off;
    d->next_cap = (uint8_t)(off + len);
    return (uint8_t)off;
}

uint64_t pci_dev_bar_addr(const struct pci_dev *d, unsigned bar)
{
    uint64_t a = get32(d->config + PCI_BASE_ADDRESS_0 + 4 * bar) & ~0xfULL;
    if (d->bars[bar].is64) {
        a |= (uint64_t)get32(d->config + PCI_BASE_ADDRESS_0 + 4 * (bar + 1)) << 32;
    }
    return a;
}

/* Make the BAR's MMIO range match its register and the memory enable bit. */
static void update_bar(struct pci_dev *d, unsigned bar)
{
    struct pci_bar *b = &d->bars[bar];
    if (!b->size) {
        return;
    }
    uint16_t cmd = (uint16_t)(d->config[PCI_COMMAND] | d->config[PCI_COMMAND + 1] << 8);
    uint64_t addr = pci_dev_bar_addr(d, bar);
    bool want = (cmd & PCI_COMMAND_MEMORY) && addr && addr + b->size > addr &&
                addr + b->size <= (1ULL << 46);
    if (b->mapped && (!want || addr != b->mapped_addr)) {
        kvm_bus_del(d->host->mmio, b->mapped_addr, b->opaque);
        b->mapped = false;
        if (d->ops && d->ops->bar_mapped) {
            d->ops->bar_mapped(d, bar, b->mapped_addr, false);
        }
    }
    if (want && !b->mapped) {
        struct err err = { 0 };
        if (kvm_bus_add(d->host->mmio, addr, b->size, b->ops, b->opaque, d->name, &err) < 0) {
            /* A BAR over another range decodes nothing, as it would conflict on real hardware. */
            log_debug("%s: BAR %u not mapped: %s", d->name, bar, err.msg);
            return;
        }
        b->mapped = true;
        b->mapped_addr = addr;
        if (d->ops && d->ops->bar_mapped) {
            d->ops->bar_mapped(d, bar, addr, true);
        }
    }
}

static void update_bars(struct pci_dev *d)
{
    for (unsigned bar = 0; bar < 6; bar++) {
        update_bar(d, bar);
    }
}

uint32_t pci_config_read(struct pci_dev *d, uint32_t off, unsigned size)
{
    uint32_t v = 0;
    if (off >= PCI_CONFIG_SIZE || off + size > PCI_CONFIG_SIZE || (size != 1 && size != 2 &&
        size != 4) || (off & (size - 1))) {
        return 0xffffffffu >> (32 - 8 * (size > 4 ? 4 : size ? size : 1));
    }
    if (d->ops && d->ops->config_read && d->ops->config_read(d, off, size, &v)) {
        return v;
    }
    memcpy(&v, d->config + off, size);
    return v;
}

void pci_config_write(struct pci_dev *d, uint32_t off, uint32_t val, unsigned size)
{
    if (off >= PCI_CONFIG_SIZE || off + size > PCI_CONFIG_SIZE || (size != 1 && size != 2 &&
        size != 4) || (off & (size - 1))) {
        return;
    }
    uint16_t old_cmd = (uint16_t)(d->config[PCI_COMMAND] | d->config[PCI_COMMAND + 1] << 8);
    for (unsigned i = 0; i < size; i++) {
        uint8_t m = d->wmask[off + i];
        uint8_t b = (uint8_t)(val >> (8 * i));
        d->config[off + i] = (uint8_t)((d->config[off + i] & ~m) | (b & m));
    }
    uint16_t cmd = (uint16_t)(d->config[PCI_COMMAND] | d->config[PCI_COMMAND + 1] << 8);
    if (ranges_overlap(off, size, PCI_COMMAND, 2) &&
        ((cmd ^ old_cmd) & PCI_COMMAND_MEMORY)) {
        update_bars(d);
    } else if (ranges_overlap(off, size, PCI_BASE_ADDRESS_0, 24)) {
        unsigned bar = (off - PCI_BASE_ADDRESS_0) / 4;
        /* The high half of a 64-bit BAR belongs to the BAR below it. */
        if (bar > 0 && d->bars[bar - 1].is64) {
            bar--;
        }
        update_bar(d, bar);
    }
    if (d->ops && d->ops->config_written) {
        d->ops->config_written(d, off, size);
    }
}

/* ---- The host bridge ----------------------------------------------------- */

static struct pci_dev *lookup(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn)
{
    if (bus != 0 || fn != 0 || dev >= PCI_MAX_SLOTS) {
        return NULL;
    }
    return h->devs[dev];
}

static uint64_t cf8_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_host *h = opaque;
    uint64_t v = ~0ULL;
    pthread_mutex_lock(&h->lock);
    if (off == 0 && size == 4) {
        v = h->cf8;
    } else if (off >= 4 && off - 4 + size <= 4) {
        uint32_t a = h->cf8;
        struct pci_dev *d = (a & CF8_ENABLE) ?
                            lookup(h, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7) : NULL;
        if (d) {
            v = pci_config_read(d, (a & 0xfc) | (uint32_t)(off - 4), size);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return v;
}

static void cf8_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct pci_host *h = opaque;
    if (off == 1 && size == 1) {
        if (h->rcr_write) {
            h->rcr_write(h->rcr_opaque, (uint8_t)val);
        }
        return;
    }
    pthread_mutex_lock(&h->lock);
    if (off == 0 && size == 4) {
        h->cf8 = (uint32_t)val & 0x80fffffcu;
    } else if (off >= 4 && off - 4 + size <= 4) {
        uint32_t a = h->cf8;
        struct pci_dev *d = (a & CF8_ENABLE) ?
                            lookup(h, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7) : NULL;
        if (d) {
            pci_config_write(d, (a & 0xfc) | (uint32_t)(off - 4), (uint32_t)val, size);
        }
    }
    pthread_mutex_unlock(&h->lock);
}

const struct kvm_bus_ops pci_host_cf8_ops = { .read = cf8_read, .write = cf8_write };

static uint64_t ecam_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_host *h = opaque;
    uint64_t v = ~0ULL;
    unsigned reg = off & 0xfff;
    if (size > 4) {
        return v;
    }
    pthread_mutex_lock(&h->lock);
    struct pci_dev *d = lookup(h, (unsigned)(off >> 20), (off >> 15) & 0x1f, (off >> 12) & 7);
    if (d) {
        v = reg < PCI_CONFIG_SIZE ? pci_config_read(d, reg, size) : 0;
    }
    pthread_mutex_unlock(&h->lock);
    return v;
}

static void ecam_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct pci_host *h = opaque;
    unsigned reg = off & 0xfff;
    if (size > 4) {
        return;
    }
    pthread_mutex_lock(&h->lock);
    struct pci_dev *d = lookup(h, (unsigned)(off >> 20), (off >> 15) & 0x1f, (off >> 12) & 7);
    if (d && reg < PCI_CONFIG_SIZE) {
        pci_config_write(d, reg, (uint32_t)val, size);
    }
    pthread_mutex_unlock(&h->lock);
}

const struct kvm_bus_ops pci_host_ecam_ops = { .read = ecam_read, .write = ecam_write };

int pci_host_init(struct pci_host *h, struct kvm_bus *pio, struct kvm_bus *mmio,
                  struct err *err)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    h->mmio = mmio;
    h->next_bar_addr = KVM_PCI_MMIO_START;
    /* A generic PCIe host bridge (Red Hat's ID, which Linux knows no quirks for). */
    pci_dev_init(&h->bridge, "pci-host", 0x1b36, 0x0008, 0x060000, 0x1af4, 0x1100, NULL, NULL);
    int ret = pci_host_add_dev(h, &h->bridge, 0, err);
    if (ret == 0 && pio) {
        ret = kvm_bus_add(pio, 0xcf8, 8, &pci_host_cf8_ops, h, "pci-config", err);
    }
    if (ret == 0 && mmio) {
        ret = kvm_bus_add(mmio, KVM_ECAM_BASE, KVM_ECAM_SIZE, &pci_host_ecam_ops, h, "pci-ecam",
                          err);
    }
    return ret;
}

void pci_host_cleanup(struct pci_host *h)
{
    pthread_mutex_destroy(&h->lock);
}

int pci_host_add_dev(struct pci_host *h, struct pci_dev *d, int slot, struct err *err)
{
    if (slot < 0) {
        for (slot = 1; slot < PCI_MAX_SLOTS && h->devs[slot]; slot++) {
        }
        if (slot == PCI_MAX_SLOTS) {
            err_set(err, "%s: PCI bus 0 is full (32 slots)", d->name);
            return -ENOSPC;
        }
    } else if (slot >= PCI_MAX_SLOTS || h->devs[slot]) {
        err_set(err, "%s: PCI slot %d is taken or does not exist", d->name, slot);
        return -EBUSY;
    }
    d->host = h;
    d->slot = slot;
    if (slot > 0) {
        d->gsi = 16 + (unsigned)slot % 8;
        d->config[PCI_INTERRUPT_PIN] = 1;      /* INTA */
        d->config[PCI_INTERRUPT_LINE] = (uint8_t)d->gsi;
    }
    h->devs[slot] = d;
    return 0;
}

void pci_host_reset(struct pci_host *h)
{
    pthread_mutex_lock(&h->lock);
    h->cf8 = 0;
    for (unsigned slot = 0; slot < PCI_MAX_SLOTS; slot++) {
        struct pci_dev *d = h->devs[slot];
        if (!d) {
            continue;
        }
        memcpy(d->config, d->config0, PCI_CONFIG_SIZE);
        update_bars(d);
        if (d->ops && d->ops->reset) {
            d->ops->reset(d);
        }
    }
    pthread_mutex_unlock(&h->lock);
}

int pci_host_assign_bars(struct pci_host *h, struct err *err)
{
    pthread_mutex_lock(&h->lock);
    for (unsigned slot = 0; slot < PCI_MAX_SLOTS; slot++) {
        struct pci_dev *d = h->devs[slot];
        if (!d) {
            continue;
        }
        bool any = false;
        for (unsigned bar = 0; bar < 6; bar++) {
            struct pci_bar *b = &d->bars[bar];
            if (!b->size) {
                continue;
            }
            uint64_t a = ALIGN_UP(h->next_bar_addr, b->size);
            if (a + b->size > KVM_PCI_MMIO_END) {
                pthread_mutex_unlock(&h->lock);
                err_set(err, "%s: no room for BAR %u (%" PRIu64 " bytes) in the PCI window",
                        d->name, bar, b->size);
                return -ENOSPC;
            }
            h->next_bar_addr = a + b->size;
            uint32_t flags = get32(d->config + PCI_BASE_ADDRESS_0 + 4 * bar) & 0xf;
            put32(d->config + PCI_BASE_ADDRESS_0 + 4 * bar, (uint32_t)a | flags);
            if (b->is64) {
                put32(d->config + PCI_BASE_ADDRESS_0 + 4 * (bar + 1), (uint32_t)(a >> 32));
            }
            any = true;
        }
        if (any) {
            uint16_t cmd = (uint16_t)(d->config[PCI_COMMAND] | d->config[PCI_COMMAND + 1] << 8);
            pci_config_write(d, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY, 2);
            update_bars(d);
        }
        memcpy(d->config0, d->config, PCI_CONFIG_SIZE);
    }
    pthread_mutex_unlock(&h->lock);
    return 0;
}
