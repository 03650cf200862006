/*
 * The small PC devices on I/O ports: the i8042's reset line (0x64 write
 * 0xfe), port 0x92's fast reset, the reset control register (0xcf9, whose
 * byte sits inside the PCI host's 0xcf8 dword and reaches us through it),
 * the POST port 0x80 (ignored), a CMOS/RTC with the memory sizes and the
 * host's time, and QEMU's isa-debug-exit (a write of v ends spindle-vm
 * with status (v << 1) | 1).
 */
#ifndef SPINDLE_KVMCORE_PC_H
#define SPINDLE_KVMCORE_PC_H

#include <pthread.h>

#include "kvmcore/bus.h"

struct kvm_pc_events {
    void (*reset)(void *opaque);                 /* the guest asked for a reset */
    void (*debug_exit)(void *opaque, int status);
    void *opaque;
};

struct kvm_pc_io {
    struct kvm_pc_events ev;
    pthread_mutex_t lock;
    uint8_t cmos_index;
    uint8_t cmos[128];
    uint16_t debug_exit_base, debug_exit_size;
};

#define KVM_DEBUG_EXIT_BASE 0x501
#define KVM_DEBUG_EXIT_SIZE 2

/* Register the devices; low_ram/high_ram feed the CMOS memory sizes. */
int kvm_pc_io_init(struct kvm_pc_io *pc, struct kvm_bus *pio, uint64_t low_ram,
                   uint64_t high_ram, const struct kvm_pc_events *ev, struct err *err);
/* -device isa-debug-exit,iobase=,iosize= */
int kvm_pc_add_debug_exit(struct kvm_pc_io *pc, struct kvm_bus *pio, uint16_t iobase,
                          uint16_t iosize, struct err *err);
/* A byte written to the reset control register 0xcf9: bit 2 resets. */
void kvm_pc_reset_control(struct kvm_pc_io *pc, uint8_t val);
void kvm_pc_io_cleanup(struct kvm_pc_io *pc);

#endif
