/*
 * pci.c: configuration mechanism #1 and BARs.
 *
 * Every config access is two port exits, so enumeration reads the vendor ID
 * alone first and only reads more of functions that exist.
 */
#include "io.h"
#include "lib.h"
#include "paging.h"
#include "pci.h"
#include "serial.h"

#define PCI_ADDR_PORT 0xcf8
#define PCI_DATA_PORT 0xcfc

/*
 * Where blkbench puts 32-bit BARs when nothing assigned them: below the
 * IOAPIC/LAPIC/HPET/firmware area.  The 64-bit ones go there too (their high
 * half 0), so nothing above 4 GiB is needed in that case.
 */
#define BAR_WINDOW_START 0xc0000000ull
#define BAR_WINDOW_END   0xfec00000ull

static uint64_t bar_window_next = BAR_WINDOW_START;

static void select_reg(uint32_t bdf, unsigned reg)
{
    outl(PCI_ADDR_PORT, 0x80000000u | bdf << 8 | (reg & 0xfc));
}

uint32_t pci_read32(uint32_t bdf, unsigned reg)
{
    select_reg(bdf, reg);
    return inl(PCI_DATA_PORT);
}

uint16_t pci_read16(uint32_t bdf, unsigned reg)
{
    select_reg(bdf, reg);
    return inw((uint16_t)(PCI_DATA_PORT + (reg & 2)));
}

uint8_t pci_read8(uint32_t bdf, unsigned reg)
{
    select_reg(bdf, reg);
    return inb((uint16_t)(PCI_DATA_PORT + (reg & 3)));
}

void pci_write16(uint32_t bdf, unsigned reg, uint16_t v)
{
    select_reg(bdf, reg);
    outw((uint16_t)(PCI_DATA_PORT + (reg & 2)), v);
}

void pci_write32(uint32_t bdf, unsigned reg, uint32_t v)
{
    select_reg(bdf, reg);
    outl(PCI_DATA_PORT, v);
}

void pci_for_each(void (*fn)(uint32_t, uint16_t, uint16_t, void *), void *ctx)
{
    for (unsigned dev = 0; dev < 32; dev++) {
        for (unsigned f = 0; f < 8; f++) {
            uint32_t bdf = PCI_BDF(0, dev, f);
            uint32_t id = pci_read32(bdf, PCI_VENDOR_ID);
            if ((id & 0xffff) == 0xffff) {
                if (f == 0)
                    break;          /* no device: no other functions either */
                continue;
            }
            fn(bdf, (uint16_t)id, (uint16_t)(id >> 16), ctx);
            if (f == 0 && !(pci_read8(bdf, PCI_HEADER_TYPE) & 0x80))
                break;              /* single-function device */
        }
    }
}

unsigned pci_find_cap(uint32_t bdf, uint8_t id, unsigned from)
{
    unsigned off, guard = 0;

    if (!(pci_read16(bdf, PCI_STATUS) & PCI_STATUS_CAPS))
        return 0;
    off = from ? pci_read8(bdf, from + 1) : pci_read8(bdf, PCI_CAP_PTR);
    while (off >= 0x40 && guard++ < 48) {   /* guard: a looped list */
        off &= 0xfc;
        if (pci_read8(bdf, off) == id)
            return off;
        off = pci_read8(bdf, off + 1);
    }
    return 0;
}

static int bar_is_io(uint32_t lo)    { return lo & 1; }
static int bar_is_64(uint32_t lo)    { return (lo & 6) == 4; }

uint64_t pci_bar_address(uint32_t bdf, unsigned bar)
{
    uint32_t lo = pci_read32(bdf, PCI_BAR0 + 4 * bar);
    uint64_t a = lo & ~0xfull;

    if (bar_is_io(lo))
        return 0;
    if (bar_is_64(lo) && bar < 5)
        a |= (uint64_t)pci_read32(bdf, PCI_BAR0 + 4 * (bar + 1)) << 32;
    return a;
}

/* Size a memory BAR the standard way: write all ones, read the mask back. */
static uint64_t bar_size(uint32_t bdf, unsigned bar, int is64)
{
    unsigned reg = PCI_BAR0 + 4 * bar;
    uint32_t lo = pci_read32(bdf, reg), hi, mlo, mhi = 0;

    pci_write32(bdf, reg, 0xffffffffu);
    mlo = pci_read32(bdf, reg) & ~0xfu;
    pci_write32(bdf, reg, lo);
    if (is64) {
        hi = pci_read32(bdf, reg + 4);
        pci_write32(bdf, reg + 4, 0xffffffffu);
        mhi = pci_read32(bdf, reg + 4);
        pci_write32(bdf, reg + 4, hi);
    }
    if (!is64)
        return mlo ? (uint32_t)(~mlo + 1) : 0;     /* 0: unimplemented BAR */
    uint64_t mask = (uint64_t)mhi << 32 | mlo;
    return mask ? ~mask + 1 : 0;
}

int pci_setup_bars(uint32_t bdf)
{
    uint16_t cmd = pci_read16(bdf, PCI_COMMAND);

    /* No decoding while BARs are sized or moved. */
    pci_write16(bdf, PCI_COMMAND, cmd & ~(PCI_CMD_MEM | PCI_CMD_IO));
    for (unsigned bar = 0; bar < 6; bar++) {
        uint32_t lo = pci_read32(bdf, PCI_BAR0 + 4 * bar);
        int is64 = bar_is_64(lo);
        if (bar_is_io(lo))
            continue;
        uint64_t a = pci_bar_address(bdf, bar);
        uint64_t size = bar_size(bdf, bar, is64);
        if (size && !a) {
            a = ALIGN_UP(bar_window_next, size);
            if (a + size > BAR_WINDOW_END) {
                kprintf("BLKBENCH-ERROR pci %02x:%02x.%x: no room for BAR%u (%lu bytes)\n",
                        PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf), bar, size);
                return -1;
            }
            bar_window_next = a + size;
            pci_write32(bdf, PCI_BAR0 + 4 * bar, (uint32_t)a);
            if (is64)
                pci_write32(bdf, PCI_BAR0 + 4 * (bar + 1), 0);
        }
        if (size && paging_map_mmio(a, size) < 0)
            return -1;
        if (is64)
            bar++;
    }
    pci_write16(bdf, PCI_COMMAND,
                (uint16_t)(cmd | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF));
    return 0;
}
