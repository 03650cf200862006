/*
 * virtio.h: the virtio-pci modern transport (virtio 1.2, section 4.1).
 *
 * The device is found through its vendor capabilities (common, notify, ISR,
 * device config); legacy I/O BARs are never touched.  Interrupts are never
 * used: MSI-X vectors are left at VIRTIO_MSI_NO_VECTOR and INTx is disabled
 * in the command register, and the driver polls used rings.
 */
#ifndef BLKBENCH_VIRTIO_H
#define BLKBENCH_VIRTIO_H

#include <stdint.h>
#include "vring.h"

#define VIRTIO_VENDOR            0x1af4

#define VIRTIO_STATUS_ACK        0x01
#define VIRTIO_STATUS_DRIVER     0x02
#define VIRTIO_STATUS_DRIVER_OK  0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED     0x80

#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32

struct virtio_pci {
    uint32_t bdf;
    uintptr_t common;           /* struct virtio_pci_common_cfg */
    uintptr_t notify;           /* notify region base */
    uint32_t notify_mult;       /* notify_off_multiplier */
    uintptr_t isr;
    uintptr_t device;           /* device-specific configuration */
    uint64_t features;          /* negotiated */
};

/* Find the capabilities, set up BARs; 0, or -1 after printing why. */
int vpci_probe(struct virtio_pci *vp, uint32_t bdf);

/* Reset, ACKNOWLEDGE|DRIVER, and offer (device & wanted); requires must be
 * offered.  0, or -1 after printing why. */
int vpci_negotiate(struct virtio_pci *vp, uint64_t wanted, uint64_t required);

uint16_t vpci_num_queues(struct virtio_pci *vp);

/* Allocate and enable queue idx with at most max_size entries.  0 or -1. */
int vpci_queue_setup(struct virtio_pci *vp, uint16_t idx, uint16_t max_size,
                     struct vring *vr);

void vpci_driver_ok(struct virtio_pci *vp);
uint8_t vpci_status(struct virtio_pci *vp);
void vpci_fail(struct virtio_pci *vp);

/* Device config reads; callers loop on vpci_config_generation(). */
uint8_t vpci_config_generation(struct virtio_pci *vp);
uint8_t vpci_cfg8(struct virtio_pci *vp, unsigned off);
uint16_t vpci_cfg16(struct virtio_pci *vp, unsigned off);
uint32_t vpci_cfg32(struct virtio_pci *vp, unsigned off);
uint64_t vpci_cfg64(struct virtio_pci *vp, unsigned off);

static inline int vpci_has(const struct virtio_pci *vp, unsigned bit)
{
    return (vp->features >> bit) & 1;
}

#endif
