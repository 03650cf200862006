/*
 * The machine: a VM with RAM, vCPUs, the PC devices, the serial console,
 * PCI bus 0 and the -device list, booted from -kernel, and its lifecycle.
 *
 * The main thread builds it, starts the vCPU threads (unless -S) and runs
 * the main aio_context until something ends the VM (isa-debug-exit, a reset with
 * -no-reboot, a fatal vCPU exit, a signal, Ctrl-A x); then it stops every
 * vCPU (stop flag, immediate_exit and a signal), stops the devices and
 * returns the exit status.  A reset without -no-reboot reboots: vCPUs
 * stopped, devices, interrupt controllers and vCPUs back to their power-on
 * state, the kernel files read and loaded again (RAM is not cleared, as on
 * QEMU), vCPUs started.
 *
 * The machine is the run state's machine (util/runstate.h): QMP stop joins
 * the vCPU threads (their state stays in KVM), cont starts them again, quit
 * ends the VM like a signal does.
 */
#ifndef SPINDLE_KVMCORE_MACHINE_H
#define SPINDLE_KVMCORE_MACHINE_H

#include <pthread.h>

#include "kvmcore/boot.h"
#include "kvmcore/bus.h"
#include "kvmcore/config.h"
#include "kvmcore/storage.h"
#include "kvmcore/kvm.h"
#include "kvmcore/pc.h"
#include "kvmcore/pci.h"
#include "kvmcore/ram.h"
#include "kvmcore/serial.h"
#include "kvmcore/vcpu.h"
#include "util/aio.h"
#include "util/runstate.h"

struct vpci;

/* Something -device created that the machine must stop and free at the end. */
struct kvm_machine_dev {
    struct list_node link;
    char *name;
    void (*stop)(struct kvm_machine_dev *d);       /* optional: before vCPUs are freed */
    void (*destroy)(struct kvm_machine_dev *d);
    void *opaque;
};

struct kvm_machine {
    struct kvm_config *cfg;
    struct kvm_vm vm;
    bool vm_open;
    struct kvm_ram ram;
    struct kvm_bus pio, mmio;
    struct vcpu_env env;
    struct vcpu *vcpus;
    unsigned nr_vcpus;
    struct kvm_cpuid2 *cpuid;
    struct kvm_pc_io pc;
    bool pc_ready;
    struct kvm_serial serial;
    bool has_serial;
    int serial_out_fd;            /* owned when the output is a file */
    struct pci_host pci;
    struct kvm_storage storage;   /* -blockdev nodes and -drive backends */
    bool storage_open;
    bool pci_ready;
    struct list_node devs;        /* struct kvm_machine_dev */
    struct kvm_boot_image kernel, initrd;
    struct kvm_boot_info boot;

    pthread_mutex_t exit_lock;
    atomic_bool exit_requested;
    atomic_bool reset_requested;  /* the guest asked for a reboot */
    unsigned reboots;
    int exit_status;
    char *exit_msg;
    bool exit_is_error;
    enum shutdown_cause exit_cause;   /* for the SHUTDOWN event */
    int signal_fd;
    struct aio_fd_handler *signal_handler;
    int64_t start_ns;
    struct aio_timer rekick_timer;
    bool stopping_vcpus;          /* stop_vcpus is running (it runs the main loop) */
    bool rebooting;
};

/* Build the VM from cfg (which must outlive m).  Main thread. */
int kvm_machine_init(struct kvm_machine *m, struct kvm_config *cfg, struct err *err);
/* Start the vCPUs and run the main loop until the VM ends; the exit status. */
int kvm_machine_run(struct kvm_machine *m);
void kvm_machine_cleanup(struct kvm_machine *m);

/*
 * End the VM: the first request wins.  why (may be NULL) is printed to
 * stderr (as an error when error is set); cause is what the SHUTDOWN
 * event reports.  Any thread.
 */
void kvm_machine_request_exit(struct kvm_machine *m, int status, bool error, const char *why,
                              enum shutdown_cause cause);

/* Hand a device to the machine for stopping and freeing at the end. */
void kvm_machine_add_dev(struct kvm_machine *m, struct kvm_machine_dev *d);

/*
 * What a program adds around the machine: the QMP monitor (monitor/vm.h).
 * Both optional.
 *   start: the machine is built and its run state set (prelaunch with -S,
 *          else running; vCPUs not started yet): listen on cfg->qmp.
 *   stop:  the VM has ended (the SHUTDOWN event is out): flush and close,
 *          before the machine is torn down.
 */
struct kvm_vm_hooks {
    int (*start)(struct kvm_machine *m, struct err *err);
    void (*stop)(struct kvm_machine *m);
};

/*
 * The whole program spindle-vm: parse argv, build, run, clean up.  The exit
 * status.  hooks may be NULL (then -qmp is refused).
 */
int kvm_vm_main(int argc, char **argv, const struct kvm_vm_hooks *hooks);

#endif
