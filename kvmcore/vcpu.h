/*
 * vCPUs: one thread each, blocking in KVM_RUN and dispatching port and MMIO
 * exits to the buses.  Exits that mean the guest is broken (an internal
 * error of KVM's emulator, a triple fault, a failed entry) end the VM
 * through the environment's request_exit with a sentence naming the vCPU,
 * the exit and RIP.
 *
 * Stopping: vcpu_kick_stop() sets the stop flag, immediate_exit and sends
 * the thread SIGUSR1, so a vCPU inside KVM_RUN or about to enter it comes
 * back at once; vcpu_join() waits for the thread.
 */
#ifndef SPINDLE_KVMCORE_VCPU_H
#define SPINDLE_KVMCORE_VCPU_H

#include <pthread.h>

#include "kvmcore/bus.h"
#include "kvmcore/kvm.h"
#include "util/error.h"

/* Exit statuses of spindle-vm that are not the guest's (debug-exit's are odd). */
#define KVM_EXIT_STATUS_OK          0
#define KVM_EXIT_STATUS_SETUP       1    /* bad command line, cannot start */
#define KVM_EXIT_STATUS_GUEST_ERROR 2    /* the guest crashed the vCPU */

struct vcpu;

struct vcpu_env {
    struct kvm_vm *vm;
    struct kvm_bus *pio;
    struct kvm_bus *mmio;
    /*
     * End the VM with this exit status; why (may be NULL) is a sentence for
     * stderr.  Called on the vCPU's thread; the vCPU stops right after.
     */
    void (*request_exit)(void *opaque, int status, const char *why);
    void *opaque;
};

struct vcpu {
    unsigned index;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    const struct vcpu_env *env;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool exited;
    /* The state KVM created it with (and its LAPIC as firmware leaves it), for resets. */
    struct kvm_regs regs0;
    struct kvm_sregs sregs0;
    struct kvm_lapic_state *lapic0;
    /* Exit counters, for statistics. */
    uint64_t nr_io, nr_mmio, nr_exits;
};

/* How a vCPU starts (the boot loader decides). */
enum vcpu_boot_mode {
    VCPU_BOOT_PROTECTED32,   /* PVH: 32-bit flat protected mode, paging off */
    VCPU_BOOT_LONG64,        /* Linux 64-bit boot protocol: long mode, identity paging */
};

struct vcpu_boot_state {
    enum vcpu_boot_mode mode;
    uint64_t rip;
    uint64_t rbx;            /* PVH: the hvm_start_info address */
    uint64_t rsi;            /* Linux: the boot_params address */
    uint64_t cr3;            /* LONG64: the identity page tables */
    uint64_t gdt_base;       /* LONG64: a GDT with code at 0x10, data at 0x18 */
    uint16_t gdt_limit;
};

/*
 * Create vCPU index with cpuid (already fixed up for it), and program its
 * local APIC the way PC firmware leaves it (LINT0 ExtINT, LINT1 NMI).
 */
int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned index,
                const struct kvm_cpuid2 *cpuid, struct err *err);
/* Registers for the boot vCPU (the others wait for INIT/SIPI). */
int vcpu_set_boot_state(struct vcpu *v, const struct vcpu_boot_state *bs, struct err *err);
/*
 * A machine reset: back to the state the vCPU was created in (registers,
 * local APIC, FPU, paravirtual MSRs, pending events), waiting for INIT/SIPI
 * unless bs says how it boots.  The vCPU's thread must have stopped.
 */
int vcpu_reset(struct vcpu *v, const struct vcpu_boot_state *bs, struct err *err);
/* Start the vCPU's thread; also after vcpu_join, to resume a paused vCPU as it was. */
int vcpu_start(struct vcpu *v, struct err *err);
/* Ask the vCPU to stop (any thread, idempotent). */
void vcpu_kick_stop(struct vcpu *v);
/* Wait for a stopped vCPU's thread. */
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

/* "RIP 0x... (64-bit mode, ...)" for messages; the vCPU must not be running. */
void vcpu_describe(struct vcpu *v, char *buf, size_t size);

/* Install the kick signal's handler; once per process, before vcpu_start. */
void vcpu_signals_init(void);

#endif
