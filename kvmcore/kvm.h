/*
 * The VM: /dev/kvm, the VM file descriptor, memory slots, the in-kernel
 * irqchip and PIT, GSI routing (the PC's IOAPIC/PIC pins plus one MSI
 * route per MSI-X vector in use), irqfds and ioeventfds.
 *
 * Routing, irqfd and ioeventfd calls may come from any thread (vCPU
 * threads reprogramming MSI-X vectors or BARs, the main thread); a mutex
 * keeps the routing table consistent.
 */
#ifndef SPINDLE_KVMCORE_KVM_H
#define SPINDLE_KVMCORE_KVM_H

#include <pthread.h>
#include <linux/kvm.h>

#include "util/error.h"
#include "util/osdep.h"

struct kvm_vm {
    int sys_fd;                  /* /dev/kvm */
    int vm_fd;
    int vcpu_mmap_size;
    int max_vcpus;
    bool cap_ioeventfd_any_length;
    bool cap_immediate_exit;
    bool cap_signal_msi;
    unsigned next_slot;
    /* The PICs, IOAPIC and PIT as created, for a machine reset. */
    struct kvm_irqchip chips0[3];
    struct kvm_pit_state2 pit0;

    pthread_mutex_t irq_lock;    /* protects everything below */
    struct kvm_irq_routing_entry *routes;
    unsigned nr_routes, max_routes;
    unsigned max_gsi;            /* KVM_CAP_IRQ_ROUTING */
    uint8_t *gsi_used;           /* MSI GSIs handed out, by gsi */
};

/*
 * Open /dev/kvm and create a VM with the in-kernel irqchip (PIC, IOAPIC,
 * local APICs), the PIT, and the PC's default interrupt routing.
 * On failure everything is released and err says why.
 */
int kvm_vm_open(struct kvm_vm *vm, struct err *err);
void kvm_vm_close(struct kvm_vm *vm);

/* Put the PICs, the IOAPIC and the PIT back as they were created (reset). */
int kvm_vm_reset_chips(struct kvm_vm *vm, struct err *err);

/* Whether /dev/kvm can be opened for read and write. */
bool kvm_available(void);

/* Map [gpa, gpa+size) to hva in a new memory slot. */
int kvm_vm_add_memory(struct kvm_vm *vm, uint64_t gpa, uint64_t size, void *hva,
                      struct err *err);

/* Drive an IOAPIC/PIC input (gsi < 24) to level (0 or 1). */
int kvm_vm_irq_line(struct kvm_vm *vm, unsigned gsi, int level);

/*
 * MSI routes: a GSI that, when an irqfd bound to it fires, delivers the
 * message (address, data).  Returns the GSI or a negative errno.
 */
int kvm_vm_msi_route_add(struct kvm_vm *vm, uint64_t addr, uint32_t data);
int kvm_vm_msi_route_set(struct kvm_vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
void kvm_vm_msi_route_del(struct kvm_vm *vm, unsigned gsi);

/* Deliver one MSI now. */
int kvm_vm_signal_msi(struct kvm_vm *vm, uint64_t addr, uint32_t data);

/* Bind (or unbind) eventfd fd to gsi: a write to fd raises it. */
int kvm_vm_irqfd(struct kvm_vm *vm, int fd, unsigned gsi, bool assign);

/*
 * Bind (or unbind) eventfd fd to guest writes of len bytes at addr (MMIO
 * when mmio, else a port): such writes signal fd and never reach user
 * space.  len 0 matches a write of any length (MMIO only, where KVM
 * offers it; callers fall back to 2).
 */
int kvm_vm_ioeventfd(struct kvm_vm *vm, int fd, uint64_t addr, unsigned len, bool mmio,
                     bool assign);

#endif
