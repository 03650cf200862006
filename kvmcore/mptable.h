/*
 * The Intel MultiProcessor table (MP spec 1.4) in the BIOS area: how a
 * guest without ACPI finds the vCPUs (their APIC IDs 0..N-1), the IOAPIC,
 * and how ISA and PCI interrupts are wired to it.
 */
#ifndef SPINDLE_KVMCORE_MPTABLE_H
#define SPINDLE_KVMCORE_MPTABLE_H

#include "kvmcore/ram.h"

struct kvm_pci_irq {
    uint8_t slot;             /* PCI device number on bus 0 */
    uint8_t pin;              /* 0 = INTA .. 3 = INTD */
    uint8_t gsi;              /* IOAPIC input */
};

/* Write the table at KVM_BIOS_START; returns the bytes used or -errno. */
int kvm_mptable_write(struct kvm_ram *ram, unsigned nr_cpus, uint32_t cpu_signature,
                      uint32_t cpu_features, const struct kvm_pci_irq *pci, unsigned nr_pci,
                      struct err *err);

#endif
