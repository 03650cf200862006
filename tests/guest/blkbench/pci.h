/*
 * pci.h: PCI configuration space through ports 0xCF8/0xCFC (mechanism #1),
 * enumeration of bus 0, and BAR discovery/assignment.
 */
#ifndef BLKBENCH_PCI_H
#define BLKBENCH_PCI_H

#include <stdint.h>

#define PCI_BDF(b, d, f)  ((uint32_t)((b) << 8 | (d) << 3 | (f)))
#define PCI_BUS(bdf)      ((bdf) >> 8)
#define PCI_DEV(bdf)      (((bdf) >> 3) & 0x1f)
#define PCI_FN(bdf)       ((bdf) & 7)

#define PCI_VENDOR_ID     0x00
#define PCI_DEVICE_ID     0x02
#define PCI_COMMAND       0x04
#define PCI_STATUS        0x06
#define PCI_HEADER_TYPE   0x0e
#define PCI_BAR0          0x10
#define PCI_CAP_PTR       0x34

#define PCI_CMD_IO        0x0001
#define PCI_CMD_MEM       0x0002
#define PCI_CMD_MASTER    0x0004
#define PCI_CMD_INTX_OFF  0x0400
#define PCI_STATUS_CAPS   0x0010
#define PCI_CAP_VENDOR    0x09

uint8_t pci_read8(uint32_t bdf, unsigned reg);
uint16_t pci_read16(uint32_t bdf, unsigned reg);
uint32_t pci_read32(uint32_t bdf, unsigned reg);
void pci_write16(uint32_t bdf, unsigned reg, uint16_t v);
void pci_write32(uint32_t bdf, unsigned reg, uint32_t v);

/* Call fn for every function on bus 0, in device/function order. */
void pci_for_each(void (*fn)(uint32_t bdf, uint16_t vendor, uint16_t device, void *ctx),
                  void *ctx);

/* Offset of the next capability with id after offset from (0: first); 0 if none. */
unsigned pci_find_cap(uint32_t bdf, uint8_t id, unsigned from);

/*
 * Physical address of memory BAR bar (0..5) of bdf, assigning every
 * unassigned memory BAR of the function first when none is programmed (no
 * firmware ran: spindle-vm).  Returns 0 for an absent or I/O BAR.
 */
uint64_t pci_bar_address(uint32_t bdf, unsigned bar);

/* Program BARs that read as 0 from the free window; map 64-bit ones. 0 or -1. */
int pci_setup_bars(uint32_t bdf);

#endif
