/*
 * PCI bus 0: a host bridge at 00:00.0, configuration space through ports
 * 0xcf8/0xcfc (mechanism #1) and through ECAM at KVM_ECAM_BASE, and
 * type-0 functions with memory BARs.
 *
 * There is no firmware, so spindle-vm assigns every BAR itself at startup
 * (pci_host_assign_bars) from the window below 4 GiB, and turns memory
 * decoding on.  The guest may size BARs (write all ones, read the mask),
 * move them and toggle decoding: the core moves the BAR's MMIO range and
 * tells the device (bar_mapped), which moves its ioeventfds.
 *
 * Configuration accesses from all vCPUs are serialised by the host's lock;
 * device hooks run under it.
 */
#ifndef SPINDLE_KVMCORE_PCI_H
#define SPINDLE_KVMCORE_PCI_H

#include <pthread.h>

#include "kvmcore/bus.h"
#include "util/error.h"

#define PCI_MAX_SLOTS        32
#define PCI_CONFIG_SIZE      256

/* Config space registers. */
#define PCI_VENDOR_ID        0x00
#define PCI_DEVICE_ID        0x02
#define PCI_COMMAND          0x04
#define PCI_STATUS           0x06
#define PCI_REVISION_ID      0x08
#define PCI_CLASS_PROG       0x09
#define PCI_CLASS_DEVICE     0x0a
#define PCI_HEADER_TYPE      0x0e
#define PCI_BASE_ADDRESS_0   0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID     0x2e
#define PCI_ROM_ADDRESS      0x30
#define PCI_CAPABILITY_LIST  0x34
#define PCI_INTERRUPT_LINE   0x3c
#define PCI_INTERRUPT_PIN    0x3d

#define PCI_COMMAND_IO       0x0001
#define PCI_COMMAND_MEMORY   0x0002
#define PCI_COMMAND_MASTER   0x0004
#define PCI_COMMAND_SERR     0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST  0x0010

#define PCI_BAR_MEM_64       0x04
#define PCI_BAR_PREFETCH     0x08

#define PCI_CAP_ID_VNDR      0x09
#define PCI_CAP_ID_MSIX      0x11

struct pci_host;
struct pci_dev;

struct pci_dev_ops {
    /* After a config write the core applied (capability registers live here). Optional. */
    void (*config_written)(struct pci_dev *d, uint32_t off, unsigned size);
    /*
     * BAR bar now decodes at addr (mapped) or stopped decoding (!mapped, addr
     * is where it was).  Optional.
     */
    void (*bar_mapped)(struct pci_dev *d, unsigned bar, uint64_t addr, bool mapped);
    /*
     * Config reads of registers the device computes (capability data).
     * Optional; returns false to read the stored bytes.
     */
    bool (*config_read)(struct pci_dev *d, uint32_t off, unsigned size, uint32_t *val);
    /* A machine reset, after config space is back to its power-on bytes. Optional. */
    void (*reset)(struct pci_dev *d);
};

struct pci_bar {
    uint64_t size;               /* 0: not implemented; else a power of 2 >= 16 */
    bool is64, prefetch;
    const struct kvm_bus_ops *ops;
    void *opaque;
    bool mapped;                 /* registered on the MMIO bus */
    uint64_t mapped_addr;
};

struct pci_dev {
    struct pci_host *host;
    int slot;                    /* device number on bus 0, -1 before added */
    char name[32];
    const struct pci_dev_ops *ops;
    void *opaque;
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE];   /* bits the guest may write */
    uint8_t config0[PCI_CONFIG_SIZE]; /* as pci_host_assign_bars left it, for resets */
    struct pci_bar bars[6];
    uint8_t next_cap;            /* where the next capability goes */
    uint8_t last_cap;            /* the last capability added, 0 for none */
    unsigned gsi;                /* INTx: the IOAPIC input of its INTA */
};

/* Fill the header of a type-0 function. */
void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device,
                  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id,
                  const struct pci_dev_ops *ops, void *opaque);
/* A memory BAR of size bytes (a power of 2 >= 16) served by ops. */
int pci_dev_add_bar(struct pci_dev *d, unsigned bar, uint64_t size, bool is64, bool prefetch,
                    const struct kvm_bus_ops *ops, void *opaque, struct err *err);
/* Append a capability of len bytes; returns its offset, or 0 when full. */
uint8_t pci_dev_add_cap(struct pci_dev *d, uint8_t id, uint8_t len);

/* The current decode address of a BAR (whatever the guest last wrote). */
uint64_t pci_dev_bar_addr(const struct pci_dev *d, unsigned bar);

/* Config space accesses (size 1, 2 or 4, naturally aligned); under the host lock. */
uint32_t pci_config_read(struct pci_dev *d, uint32_t off, unsigned size);
void pci_config_write(struct pci_dev *d, uint32_t off, uint32_t val, unsigned size);

/* ---- The host bridge ----------------------------------------------------- */

struct pci_host {
    pthread_mutex_t lock;
    struct kvm_bus *mmio;
    struct pci_dev *devs[PCI_MAX_SLOTS];
    struct pci_dev bridge;
    uint32_t cf8;                /* the address register */
    uint64_t next_bar_addr;
    /* A byte write to 0xcf9 (the PC reset control register). Optional. */
    void (*rcr_write)(void *opaque, uint8_t val);
    void *rcr_opaque;
};

/* The host bridge at 00:00.0, ports 0xcf8-0xcff on pio, ECAM on mmio. */
int pci_host_init(struct pci_host *h, struct kvm_bus *pio, struct kvm_bus *mmio,
                  struct err *err);
void pci_host_cleanup(struct pci_host *h);
/* Put d in slot (or the first free one when slot < 0). */
int pci_host_add_dev(struct pci_host *h, struct pci_dev *d, int slot, struct err *err);
/* Assign every BAR from the window below 4 GiB and enable decoding. */
int pci_host_assign_bars(struct pci_host *h, struct err *err);

/*
 * A machine reset: every function's config space back to what
 * pci_host_assign_bars left (BARs where spindle-vm put them, decoding on,
 * capabilities off), then each device's reset hook.
 */
void pci_host_reset(struct pci_host *h);

/* Mechanism #1 and ECAM, exposed for tests. */
extern const struct kvm_bus_ops pci_host_cf8_ops;
extern const struct kvm_bus_ops pci_host_ecam_ops;

#endif
