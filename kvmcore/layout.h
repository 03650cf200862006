/*
 * The machine's physical address map and the fixed places of boot data.
 *
 *   0x00000000  RAM (low): 0..0x9fc00 usable, the EBDA and 0xf0000..0xfffff
 *               (MP table) reserved in the memory map; boot data below 1 MiB
 *   0x00100000  RAM: the kernel and the rest of low RAM, up to
 *               min(RAM size, KVM_LOW_RAM_MAX)
 *   0xc0000000  the MMIO hole: the PCI window spindle-vm assigns BARs from
 *   0xe0000000  PCI ECAM (MMCONFIG), 256 buses x 1 MiB; only bus 0 has devices
 *   0xfec00000  IOAPIC (in KVM)
 *   0xfee00000  local APICs (in KVM)
 *   0xfeffc000  KVM's real-mode TSS and identity map pages (Intel)
 *   4 GiB       RAM (high): whatever did not fit below the hole
 */
#ifndef SPINDLE_KVMCORE_LAYOUT_H
#define SPINDLE_KVMCORE_LAYOUT_H

#include "util/osdep.h"

#define KVM_LOW_RAM_MAX        0xc0000000ULL   /* the hole starts here */
#define KVM_HIGH_RAM_START     0x100000000ULL

#define KVM_PCI_MMIO_START     0xc0000000ULL
#define KVM_PCI_MMIO_END       0xe0000000ULL   /* exclusive */
#define KVM_ECAM_BASE          0xe0000000ULL
#define KVM_ECAM_SIZE          0x10000000ULL
#define KVM_IOAPIC_ADDR        0xfec00000ULL
#define KVM_LAPIC_ADDR         0xfee00000ULL
#define KVM_IDENTITY_MAP_ADDR  0xfeffc000ULL   /* one page */
#define KVM_TSS_ADDR           0xfeffd000ULL   /* three pages */

/* Boot data in low RAM (below the 640 KiB line). */
#define KVM_BOOT_GDT           0x00000500ULL   /* bzImage: the boot GDT */
#define KVM_BOOT_START_INFO    0x00001000ULL   /* PVH: hvm_start_info, memmap, modules */
#define KVM_BOOT_PARAMS        0x00007000ULL   /* bzImage: the zero page */
#define KVM_BOOT_PML4          0x00009000ULL   /* bzImage: identity page tables */
#define KVM_BOOT_PDPT          0x0000a000ULL
#define KVM_BOOT_PD            0x0000b000ULL   /* four pages: 4 GiB of 2 MiB pages */
#define KVM_BOOT_CMDLINE       0x00020000ULL
#define KVM_BOOT_CMDLINE_MAX   0x00010000ULL   /* bytes, with the NUL */
#define KVM_EBDA_START         0x0009fc00ULL
#define KVM_BIOS_START         0x000f0000ULL   /* reserved: the MP table lives here */
#define KVM_BIOS_END           0x00100000ULL
#define KVM_KERNEL_MIN         0x00100000ULL   /* nothing of a kernel loads below 1 MiB */

/* Interrupt wiring. */
#define KVM_IOAPIC_PINS        24
#define KVM_IRQ_COM1           4
#define KVM_FIRST_MSI_GSI      KVM_IOAPIC_PINS

#endif
