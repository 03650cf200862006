/* virtio.c: the virtio-pci modern transport; see virtio.h. */
#include "io.h"
#include "lib.h"
#include "mem.h"
#include "pci.h"
#include "serial.h"
#include "virtio.h"

/* struct virtio_pci_cap field offsets, relative to the capability. */
#define CAP_CFG_TYPE    3
#define CAP_BAR         4
#define CAP_OFFSET      8
#define CAP_LENGTH      12
#define CAP_NOTIFY_MULT 16

#define CFG_COMMON      1
#define CFG_NOTIFY      2
#define CFG_ISR         3
#define CFG_DEVICE      4

/* struct virtio_pci_common_cfg */
#define COMMON_DFSELECT   0x00
#define COMMON_DF         0x04
#define COMMON_GFSELECT   0x08
#define COMMON_GF         0x0c
#define COMMON_MSIX       0x10
#define COMMON_NUMQ       0x12
#define COMMON_STATUS     0x14
#define COMMON_CFGGEN     0x15
#define COMMON_Q_SELECT   0x16
#define COMMON_Q_SIZE     0x18
#define COMMON_Q_MSIX     0x1a
#define COMMON_Q_ENABLE   0x1c
#define COMMON_Q_NOFF     0x1e
#define COMMON_Q_DESC     0x20
#define COMMON_Q_AVAIL    0x28
#define COMMON_Q_USED     0x30

#define VIRTIO_MSI_NO_VECTOR 0xffff
#define RESET_SPIN_MAX       1000000

#define PRI_BDF "%02x:%02x.%x"
#define BDF_ARGS(b) PCI_BUS(b), PCI_DEV(b), PCI_FN(b)

static uintptr_t cap_address(uint32_t bdf, unsigned cap)
{
    unsigned bar = pci_read8(bdf, cap + CAP_BAR);
    if (bar > 5)
        return 0;
    uint64_t base = pci_bar_address(bdf, bar);
    return base ? (uintptr_t)(base + pci_read32(bdf, cap + CAP_OFFSET)) : 0;
}

int vpci_probe(struct virtio_pci *vp, uint32_t bdf)
{
    memset(vp, 0, sizeof(*vp));
    vp->bdf = bdf;
    if (pci_setup_bars(bdf) < 0)
        return -1;
    for (unsigned cap = pci_find_cap(bdf, PCI_CAP_VENDOR, 0); cap;
         cap = pci_find_cap(bdf, PCI_CAP_VENDOR, cap)) {
        uint8_t type = pci_read8(bdf, cap + CAP_CFG_TYPE);
        uintptr_t *slot = type == CFG_COMMON ? &vp->common :
                          type == CFG_NOTIFY ? &vp->notify :
                          type == CFG_ISR ? &vp->isr :
                          type == CFG_DEVICE ? &vp->device : NULL;
        if (!slot || *slot)         /* the first of each type is preferred */
            continue;
        *slot = cap_address(bdf, cap);
        if (type == CFG_NOTIFY)
            vp->notify_mult = pci_read32(bdf, cap + CAP_NOTIFY_MULT);
    }
    if (!vp->common || !vp->notify || !vp->device) {
        kprintf("BLKBENCH-ERROR virtio " PRI_BDF ": no modern interface "
                "(common/notify/device capabilities missing)\n", BDF_ARGS(bdf));
        return -1;
    }
    return 0;
}

uint8_t vpci_status(struct virtio_pci *vp)
{
    return mmio_read8(vp->common + COMMON_STATUS);
}

static void add_status(struct virtio_pci *vp, uint8_t bits)
{
    mmio_write8(vp->common + COMMON_STATUS, (uint8_t)(vpci_status(vp) | bits));
}

void vpci_fail(struct virtio_pci *vp)
{
    add_status(vp, VIRTIO_STATUS_FAILED);
}

static uint64_t device_features(struct virtio_pci *vp)
{
    uint64_t f;

    mmio_write32(vp->common + COMMON_DFSELECT, 0);
    f = mmio_read32(vp->common + COMMON_DF);
    mmio_write32(vp->common + COMMON_DFSELECT, 1);
    return f | (uint64_t)mmio_read32(vp->common + COMMON_DF) << 32;
}

int vpci_negotiate(struct virtio_pci *vp, uint64_t wanted, uint64_t required)
{
    unsigned spins = 0;

    mmio_write8(vp->common + COMMON_STATUS, 0);          /* reset */
    while (vpci_status(vp) != 0)
        if (++spins > RESET_SPIN_MAX) {
            kprintf("BLKBENCH-ERROR virtio " PRI_BDF ": reset did not complete\n",
                    BDF_ARGS(vp->bdf));
            return -1;
        }
    add_status(vp, VIRTIO_STATUS_ACK);
    add_status(vp, VIRTIO_STATUS_DRIVER);

    uint64_t offered = device_features(vp);
    if ((offered & required) != required) {
        kprintf("BLKBENCH-ERROR virtio " PRI_BDF ": device features 0x%lx lack "
                "required 0x%lx\n", BDF_ARGS(vp->bdf), offered, required);
        vpci_fail(vp);
        return -1;
    }
    vp->features = offered & (wanted | required);
    mmio_write32(vp->common + COMMON_GFSELECT, 0);
    mmio_write32(vp->common + COMMON_GF, (uint32_t)vp->features);
    mmio_write32(vp->common + COMMON_GFSELECT, 1);
    mmio_write32(vp->common + COMMON_GF, (uint32_t)(vp->features >> 32));
    add_status(vp, VIRTIO_STATUS_FEATURES_OK);
    if (!(vpci_status(vp) & VIRTIO_STATUS_FEATURES_OK)) {
        kprintf("BLKBENCH-ERROR virtio " PRI_BDF ": device refused features 0x%lx\n",
                BDF_ARGS(vp->bdf), vp->features);
        vpci_fail(vp);
        return -1;
    }
    mmio_write16(vp->common + COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
    return 0;
}

uint16_t vpci_num_queues(struct virtio_pci *vp)
{
    return mmio_read16(vp->common + COMMON_NUMQ);
}

int vpci_queue_setup(struct virtio_pci *vp, uint16_t idx, uint16_t max_size,
                     struct vring *vr)
{
    uintptr_t c = vp->common;

    mmio_write16(c + COMMON_Q_SELECT, idx);
    uint16_t size = mmio_read16(c + COMMON_Q_SIZE);
    if (size == 0) {
        kprintf("BLKBENCH-ERROR virtio " PRI_BDF ": queue %u does not exist\n",
                BDF_ARGS(vp->bdf), idx);
        return -1;
    }
    /* Split rings need a power of two; the device's maximum may not be one. */
    uint16_t n = 1;
    while ((unsigned)n * 2 <= MIN(size, max_size))
        n = (uint16_t)(n * 2);
    if (vring_alloc(vr, n, vpci_has(vp, VIRTIO_F_EVENT_IDX)) < 0) {
        kprintf("BLKBENCH-ERROR out of memory for virtqueue %u\n", idx);
        return -1;
    }
    uint16_t noff = mmio_read16(c + COMMON_Q_NOFF);
    vr->notify = vp->notify + (uintptr_t)noff * vp->notify_mult;
    vr->index = idx;

    mmio_write16(c + COMMON_Q_SIZE, n);
    mmio_write16(c + COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
    mmio_write64(c + COMMON_Q_DESC, (uintptr_t)vr->desc);
    mmio_write64(c + COMMON_Q_AVAIL, (uintptr_t)vr->avail);
    mmio_write64(c + COMMON_Q_USED, (uintptr_t)vr->used);
    mmio_write16(c + COMMON_Q_ENABLE, 1);
    return 0;
}

void vpci_driver_ok(struct virtio_pci *vp)
{
    add_status(vp, VIRTIO_STATUS_DRIVER_OK);
}

uint8_t vpci_config_generation(struct virtio_pci *vp)
{
    return mmio_read8(vp->common + COMMON_CFGGEN);
}

uint8_t vpci_cfg8(struct virtio_pci *vp, unsigned off)
{
    return mmio_read8(vp->device + off);
}

uint16_t vpci_cfg16(struct virtio_pci *vp, unsigned off)
{
    return mmio_read16(vp->device + off);
}

uint32_t vpci_cfg32(struct virtio_pci *vp, unsigned off)
{
    return mmio_read32(vp->device + off);
}

uint64_t vpci_cfg64(struct virtio_pci *vp, unsigned off)
{
    return mmio_read32(vp->device + off) |
           (uint64_t)mmio_read32(vp->device + off + 4) << 32;
}
