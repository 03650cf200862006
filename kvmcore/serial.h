/*
 * An 8250/16550A UART (COM1 at 0x3f8, IRQ 4) wired to file descriptors:
 * what the guest transmits is written to out_fd at once, byte by byte
 * (unbuffered, like QEMU's -serial stdio); what arrives on in_fd is
 * received, with the data-ready interrupt.  Transmission is instant, so
 * the transmitter is always empty.
 *
 * Registers are accessed from vCPU threads; input arrives on the main
 * thread's event loop.  A mutex covers the state.
 */
#ifndef SPINDLE_KVMCORE_SERIAL_H
#define SPINDLE_KVMCORE_SERIAL_H

#include <pthread.h>

#include "kvmcore/bus.h"
#include "kvmcore/kvm.h"
#include "util/aio.h"

#define KVM_SERIAL_FIFO 256
#define KVM_COM1_BASE   0x3f8

struct kvm_serial {
    pthread_mutex_t lock;
    struct kvm_vm *vm;            /* NULL: no interrupt line (unit tests) */
    unsigned irq;
    int out_fd;                   /* -1: output is dropped */
    int in_fd;                    /* -1: no input */
    bool in_is_console;           /* Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A */
    bool escape;                  /* Ctrl-A seen */
    void (*quit)(void *opaque);   /* Ctrl-A x; main thread */
    void *quit_opaque;

    uint8_t ier, lcr, mcr, lsr_extra, scr, dll, dlm, fcr;
    bool thr_ipending;            /* THR-empty interrupt pending */
    bool irq_level;
    uint8_t rx[KVM_SERIAL_FIFO];
    unsigned rx_head, rx_count;

    struct aio_fd_handler *in_handler;
    struct aio_bh *resume_bh;
    bool in_eof;
    uint64_t tx_bytes;
};

/*
 * Put a UART at port base with interrupt irq on bus.  in_fd is read on
 * the main thread's loop (which must exist) when >= 0.
 */
int kvm_serial_init(struct kvm_serial *s, struct kvm_vm *vm, struct kvm_bus *pio,
                    uint16_t base, unsigned irq, int out_fd, int in_fd, struct err *err);
/* Stop reading input and release everything (main thread, vCPUs stopped). */
void kvm_serial_cleanup(struct kvm_serial *s);

/* A machine reset: registers to their power-on values, input kept. */
void kvm_serial_reset(struct kvm_serial *s);

/* Feed bytes as if they arrived on in_fd (tests). */
void kvm_serial_receive(struct kvm_serial *s, const uint8_t *buf, size_t len);

extern const struct kvm_bus_ops kvm_serial_ops;

#endif
