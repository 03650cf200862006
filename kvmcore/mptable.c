/* The MP table; see mptable.h. */
#include "kvmcore/mptable.h"

#include "kvmcore/layout.h"

#define MP_SPEC_REV     4
#define APIC_VERSION    0x14
#define IOAPIC_VERSION  0x11
#define BUS_PCI         0
#define BUS_ISA         1

enum { MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_IOINTR, MP_LINTR };
enum { INT_INT = 0, INT_NMI = 1, INT_EXTINT = 3 };

/* PCI interrupts: active low, level triggered. */
#define FLAGS_PCI 0x000f

struct writer {
    uint8_t *base, *p, *end;
    unsigned entries;
};

static void put(struct writer *w, const void *src, size_t len)
{
    if (w->p + len <= w->end) {
        memcpy(w->p, src, len);
    }
    w->p += len;
}

static void put8(struct writer *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put16(struct writer *w, uint16_t v)
{
    put(w, &v, 2);
}

static void put32(struct writer *w, uint32_t v)
{
    put(w, &v, 4);
}

static uint8_t checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++) {
        sum = (uint8_t)(sum + p[i]);
    }
    return (uint8_t)(0 - sum);
}

static void intr(struct writer *w, uint8_t type, uint8_t irqtype, uint16_t flags, uint8_t bus,
                 uint8_t src, uint8_t dst, uint8_t pin)
{
    put8(w, type);
    put8(w, irqtype);
    put16(w, flags);
    put8(w, bus);
    put8(w, src);
    put8(w, dst);
    put8(w, pin);
    w->entries++;
}

int kvm_mptable_write(struct kvm_ram *ram, unsigned nr_cpus, uint32_t cpu_signature,
                      uint32_t cpu_features, const struct kvm_pci_irq *pci, unsigned nr_pci,
                      struct err *err)
{
    const size_t room = KVM_BIOS_END - KVM_BIOS_START;
    uint8_t *area = kvm_ram_ptr(ram, KVM_BIOS_START, room);
    if (!area || nr_cpus == 0 || nr_cpus > 254) {
        err_set(err, "cannot build an MP table for %u vCPUs", nr_cpus);
        return -EINVAL;
    }
    memset(area, 0, room);

    /* The floating pointer, then the configuration table right after it. */
    uint8_t *fp = area;
    uint64_t table_addr = KVM_BIOS_START + 16;
    struct writer w = { .base = area + 16, .p = area + 16, .end = area + room };

    put(&w, "PCMP", 4);
    put16(&w, 0);                 /* base table length, below */
    put8(&w, MP_SPEC_REV);
    put8(&w, 0);                  /* checksum, below */
    put(&w, "SPINDLE ", 8);
    put(&w, "SPINDLE-VM  ", 12);
    put32(&w, 0);                 /* OEM table */
    put16(&w, 0);
    put16(&w, 0);                 /* entry count, below */
    put32(&w, (uint32_t)KVM_LAPIC_ADDR);
    put16(&w, 0);                 /* extended table */
    put8(&w, 0);
    put8(&w, 0);

    for (unsigned i = 0; i < nr_cpus; i++) {
        put8(&w, MP_PROCESSOR);
        put8(&w, (uint8_t)i);
        put8(&w, APIC_VERSION);
        put8(&w, (uint8_t)(0x01 | (i == 0 ? 0x02 : 0)));   /* enabled, boot processor */
        put32(&w, cpu_signature);
        put32(&w, cpu_features);
        put32(&w, 0);
        put32(&w, 0);
        w.entries++;
    }
    put8(&w, MP_BUS);
    put8(&w, BUS_PCI);
    put(&w, "PCI   ", 6);
    w.entries++;
    put8(&w, MP_BUS);
    put8(&w, BUS_ISA);
    put(&w, "ISA   ", 6);
    w.entries++;

    uint8_t ioapic_id = (uint8_t)nr_cpus;
    put8(&w, MP_IOAPIC);
    put8(&w, ioapic_id);
    put8(&w, IOAPIC_VERSION);
    put8(&w, 0x01);               /* enabled */
    put32(&w, (uint32_t)KVM_IOAPIC_ADDR);
    w.entries++;

    /* ISA IRQs: IRQ 0 arrives on pin 2, the rest on their own pins. */
    for (unsigned irq = 0; irq < 16; irq++) {
        if (irq == 2) {
            continue;
        }
        intr(&w, MP_IOINTR, INT_INT, 0, BUS_ISA, (uint8_t)irq, ioapic_id,
             (uint8_t)(irq == 0 ? 2 : irq));
    }
    for (unsigned i = 0; i < nr_pci; i++) {
        intr(&w, MP_IOINTR, INT_INT, FLAGS_PCI, BUS_PCI,
             (uint8_t)((pci[i].slot << 2) | (pci[i].pin & 3)), ioapic_id, pci[i].gsi);
    }
    intr(&w, MP_LINTR, INT_EXTINT, 0, BUS_ISA, 0, 0xff, 0);
    intr(&w, MP_LINTR, INT_NMI, 0, BUS_ISA, 0, 0xff, 1);

    size_t len = (size_t)(w.p - w.base);
    if (w.p > w.end || len > 0xffff) {
        err_set(err, "the MP table for %u vCPUs does not fit in the BIOS area", nr_cpus);
        return -ENOSPC;
    }
    uint16_t len16 = (uint16_t)len, count = (uint16_t)w.entries;
    memcpy(w.base + 4, &len16, 2);
    memcpy(w.base + 34, &count, 2);
    w.base[7] = checksum(w.base, len);

    memcpy(fp, "_MP_", 4);
    uint32_t ptr = (uint32_t)table_addr;
    memcpy(fp + 4, &ptr, 4);
    fp[8] = 1;                    /* length in 16-byte units */
    fp[9] = MP_SPEC_REV;
    fp[10] = 0;
    memset(fp + 11, 0, 5);        /* feature byte 1 = 0: a configuration table follows */
    fp[10] = checksum(fp, 16);
    return (int)(16 + len);
}
