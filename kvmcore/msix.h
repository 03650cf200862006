/*
 * MSI-X for a PCI function: the capability, the vector table and the
 * pending-bit array, wired to KVM.
 *
 * Interrupt sources are eventfds (a virtqueue's call_fd, the config-change
 * fd), each bound to a vector.  While a vector is usable (MSI-X enabled,
 * function not masked, vector not masked) its sources are KVM irqfds on an
 * MSI route carrying the vector's message, so a write to the eventfd
 * interrupts the guest without leaving the kernel.  Masking a vector
 * detaches its irqfds; what the sources signal meanwhile is collected into
 * the vector's pending bit (when the guest reads the PBA, or unmasks), and
 * unmasking re-attaches them and delivers a pending message once.
 *
 * Table and PBA accesses come from vCPU threads, bindings from the
 * transport; a mutex covers the state.
 */
#ifndef SPINDLE_KVMCORE_MSIX_H
#define SPINDLE_KVMCORE_MSIX_H

#include <pthread.h>

#include "kvmcore/kvm.h"
#include "kvmcore/pci.h"

#define PCI_MSIX_NO_VECTOR 0xffff
#define PCI_MSIX_MAX_VECTORS 2048
#define PCI_MSIX_ENTRY_SIZE 16

struct pci_msix_vector {
    uint32_t entry[4];       /* address lo, address hi, data, vector control */
    int gsi;                 /* the MSI route, -1 until first needed */
    bool pending;
};

struct pci_msix_source {
    int fd;                  /* -1: unused */
    uint16_t vector;         /* PCI_MSIX_NO_VECTOR: none */
    int attached_gsi;        /* the irqfd's GSI, -1 when detached */
};

struct pci_msix {
    pthread_mutex_t lock;
    struct pci_dev *dev;
    struct kvm_vm *vm;       /* NULL in unit tests: routes and irqfds are only tracked */
    uint8_t cap;             /* capability offset in config space */
    unsigned nvec;
    struct pci_msix_vector *vec;
    unsigned nsrc;
    struct pci_msix_source *src;
    bool enabled, masked;    /* the control word's enable and function-mask bits */
    uint64_t fired;          /* messages delivered by unmasking (tests) */
};

/*
 * Add the capability to d: nvec vectors, the table at table_off and the
 * PBA at pba_off in BAR bar (the caller routes that BAR's accesses to
 * pci_msix_table_* / pci_msix_pba_read).  nsrc sources can be bound.
 */
int pci_msix_init(struct pci_msix *x, struct pci_dev *d, struct kvm_vm *vm, unsigned nvec,
                  unsigned bar, uint32_t table_off, uint32_t pba_off, unsigned nsrc,
                  struct err *err);
void pci_msix_cleanup(struct pci_msix *x);

/* Bind source idx to (fd, vector); fd -1 or vector NO_VECTOR unbinds. */
void pci_msix_bind(struct pci_msix *x, unsigned idx, int fd, uint16_t vector);

/* The table and PBA, offsets relative to their starts. */
uint64_t pci_msix_table_read(struct pci_msix *x, uint64_t off, unsigned size);
void pci_msix_table_write(struct pci_msix *x, uint64_t off, uint64_t val, unsigned size);
uint64_t pci_msix_pba_read(struct pci_msix *x, uint64_t off, unsigned size);

/* Config space was written at [off, off+size): pick up the control word. */
void pci_msix_config_written(struct pci_msix *x, uint32_t off, unsigned size);

/* Function-level reset: every vector masked, MSI-X disabled, nothing pending. */
void pci_msix_reset(struct pci_msix *x);

/* Whether vector v is masked (by itself, the function mask, or MSI-X being off). */
bool pci_msix_is_masked(struct pci_msix *x, unsigned v);

/* Bytes of table and of PBA for nvec vectors. */
static inline uint32_t pci_msix_table_size(unsigned nvec)
{
    return nvec * PCI_MSIX_ENTRY_SIZE;
}

static inline uint32_t pci_msix_pba_size(unsigned nvec)
{
    return (uint32_t)(DIV_ROUND_UP(nvec, 64) * 8);
}

#endif
