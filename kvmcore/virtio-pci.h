/*
 * The virtio-pci modern transport (virtio 1.2, 4.1) for any device that
 * implements dataplane/virtio.h.
 *
 * Layout: BAR 4 (64-bit memory) holds the common configuration (0x0000),
 * the ISR (0x1000), the device configuration (0x2000) and the notification
 * area (0x3000, 4 bytes per queue: notify_off_multiplier 4, queue i at
 * 4 * i); BAR 1 holds the MSI-X table and PBA with one vector per queue
 * plus one.  Non-transitional IDs: 1af4:(1040 + device type), revision 1.
 *
 * Every queue has a kick eventfd, bound by KVM_IOEVENTFD to its notify
 * address whenever BAR 4 decodes (so a kick never leaves the kernel), and a
 * call eventfd, bound through MSI-X to its vector's irqfd.  The device gets
 * both in its virtio_queue_setup.  INTx is not offered as an interrupt path:
 * a driver uses MSI-X (Linux does) or polls (blkbench does).
 */
#ifndef SPINDLE_KVMCORE_VIRTIO_PCI_H
#define SPINDLE_KVMCORE_VIRTIO_PCI_H

#include <pthread.h>

#include "dataplane/virtio.h"
#include "kvmcore/msix.h"
#include "kvmcore/pci.h"

#define VPCI_BAR_MSIX        1
#define VPCI_BAR_CAPS        4
#define VPCI_COMMON_OFF      0x0000
#define VPCI_ISR_OFF         0x1000
#define VPCI_DEVICE_OFF      0x2000
#define VPCI_NOTIFY_OFF      0x3000
#define VPCI_NOTIFY_MULT     4
#define VPCI_COMMON_SIZE     0x3c
#define VPCI_MAX_QUEUES      1024

/* Common configuration offsets (struct virtio_pci_common_cfg). */
#define VPCI_DFSELECT        0x00
#define VPCI_DF              0x04
#define VPCI_GFSELECT        0x08
#define VPCI_GF              0x0c
#define VPCI_MSIX_CONFIG     0x10
#define VPCI_NUM_QUEUES      0x12
#define VPCI_STATUS          0x14
#define VPCI_CFG_GENERATION  0x15
#define VPCI_Q_SELECT        0x16
#define VPCI_Q_SIZE          0x18
#define VPCI_Q_MSIX          0x1a
#define VPCI_Q_ENABLE        0x1c
#define VPCI_Q_NOFF          0x1e
#define VPCI_Q_DESC          0x20
#define VPCI_Q_AVAIL         0x28
#define VPCI_Q_USED          0x30
#define VPCI_Q_NOTIF_DATA    0x38
#define VPCI_Q_RESET         0x3a

struct vpci {
    struct pci_dev pci;
    struct pci_msix msix;
    struct virtio_dev *vdev;
    struct kvm_vm *vm;            /* NULL in unit tests: no ioeventfds */
    pthread_mutex_t lock;         /* the transport lock of virtio.h */

    uint32_t dfselect, gfselect;
    uint64_t driver_features;     /* written so far; accepted at FEATURES_OK */
    uint16_t config_vector;
    uint16_t queue_select;
    _Atomic uint8_t status;
    _Atomic uint8_t config_generation;
    _Atomic uint8_t isr;
    bool started;
    int config_fd;                /* config-change interrupt source */

    uint8_t pci_cfg_cap;          /* VIRTIO_PCI_CAP_PCI_CFG offset */
    bool notify_mapped;
    uint64_t notify_base;         /* where the ioeventfds are bound */
    unsigned ioeventfd_len;
    bool no_ioeventfd;            /* ioeventfd=off: every kick exits to user space */
    atomic_uint_fast64_t user_kicks;   /* notify writes that reached user space */
};

/*
 * Put vdev on a new virtio-pci function in slot (-1: any) of host, with
 * guest memory mem.  The transport owns vdev's queue array; vdev stays the
 * caller's until vpci_destroy (which calls its release op).
 */
struct vpci *vpci_create(struct pci_host *host, struct kvm_vm *vm, struct guest_mem *mem,
                         struct virtio_dev *vdev, int slot, const char *name, struct err *err);
/*
 * ioeventfd=off (QEMU's property): notify writes exit to user space, which
 * signals the kick eventfd.  Before the BARs are assigned.
 */
static inline void vpci_set_ioeventfd(struct vpci *p, bool on)
{
    p->no_ioeventfd = !on;
}

/* Stop the device if it runs (VM shutdown); idempotent. */
void vpci_stop(struct vpci *p);
void vpci_destroy(struct vpci *p);

/* BAR 4 and BAR 1 accessors (the MMIO bus calls them; tests drive them directly). */
extern const struct kvm_bus_ops vpci_caps_ops;
extern const struct kvm_bus_ops vpci_msix_ops;

/* The BAR sizes for a device with nq queues. */
uint64_t vpci_caps_bar_size(unsigned nq);

#endif
