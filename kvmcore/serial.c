/* The 16550A UART; see serial.h. */
#include "kvmcore/serial.h"

#include <unistd.h>

#include "util/log.h"

/* Register offsets. */
#define UART_RBR_THR 0
#define UART_IER     1
#define UART_IIR_FCR 2
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7

#define IER_RDI   0x01        /* received data available */
#define IER_THRI  0x02        /* transmitter holding register empty */
#define IER_RLSI  0x04        /* receiver line status */

#define IIR_NONE  0x01
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_FIFO  0xc0        /* FIFOs enabled */

#define FCR_ENABLE 0x01
#define FCR_CLR_RX 0x02

#define LCR_DLAB  0x80

#define MCR_DTR   0x01
#define MCR_RTS   0x02
#define MCR_OUT1  0x04
#define MCR_OUT2  0x08
#define MCR_LOOP  0x10

#define LSR_DR    0x01
#define LSR_THRE  0x20
#define LSR_TEMT  0x40

#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80

#define CTRL_A    0x01

static uint8_t iir(struct kvm_serial *s)
{
    uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
    if ((s->ier & IER_RDI) && s->rx_count) {
        return fifo | IIR_RDI;
    }
    if ((s->ier & IER_THRI) && s->thr_ipending) {
        return fifo | IIR_THRI;
    }
    return fifo | IIR_NONE;
}

/* Drive the interrupt line; OUT2 gates it, as on a PC. */
static void update_irq(struct kvm_serial *s)
{
    bool level = !(iir(s) & IIR_NONE) && (s->mcr & MCR_OUT2);
    if (level != s->irq_level) {
        s->irq_level = level;
        if (s->vm) {
            kvm_vm_irq_line(s->vm, s->irq, level);
        }
    }
}

static void rx_push(struct kvm_serial *s, uint8_t c)
{
    if (s->rx_count == KVM_SERIAL_FIFO) {
        return;   /* overrun: dropped */
    }
    s->rx[(s->rx_head + s->rx_count) % KVM_SERIAL_FIFO] = c;
    s->rx_count++;
}

static void transmit(struct kvm_serial *s, uint8_t c)
{
    if (s->mcr & MCR_LOOP) {
        rx_push(s, c);
        return;
    }
    s->tx_bytes++;
    if (s->out_fd >= 0) {
        /*
         * No retry on EINTR: the only signal a vCPU gets is its stop kick,
         * and a reader that stopped reading must not keep the VM from ending.
         */
        ssize_t n = write(s->out_fd, &c, 1);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            log_debug("serial: cannot write output: %s", strerror(errno));
        }
    }
}

static uint64_t serial_read(void *opaque, uint64_t off, unsigned size)
{
    struct kvm_serial *s = opaque;
    uint8_t v = 0xff;
    bool resume = false;

    pthread_mutex_lock(&s->lock);
    switch (off) {
    case UART_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            v = s->dll;
        } else if (s->rx_count) {
            v = s->rx[s->rx_head];
            s->rx_head = (s->rx_head + 1) % KVM_SERIAL_FIFO;
            s->rx_count--;
            resume = s->resume_bh && !s->in_handler && !s->in_eof;
        } else {
            v = 0;
        }
        break;
    case UART_IER:
        v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
        break;
    case UART_IIR_FCR:
        v = iir(s);
        /* Reading IIR while it reports THR empty clears that interrupt. */
        if ((v & 0x0f) == IIR_THRI) {
            s->thr_ipending = false;
        }
        break;
    case UART_LCR:
        v = s->lcr;
        break;
    case UART_MCR:
        v = s->mcr;
        break;
    case UART_LSR:
        v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0) | s->lsr_extra;
        break;
    case UART_MSR:
        if (s->mcr & MCR_LOOP) {
            v = ((s->mcr & MCR_DTR) ? MSR_DSR : 0) | ((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
                ((s->mcr & MCR_OUT1) ? MSR_RI : 0) | ((s->mcr & MCR_OUT2) ? MSR_DCD : 0);
        } else {
            v = MSR_DCD | MSR_DSR | MSR_CTS;
        }
        break;
    case UART_SCR:
        v = s->scr;
        break;
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    if (resume) {
        aio_bh_schedule(s->resume_bh);
    }
    return v;
}

static void serial_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct kvm_serial *s = opaque;
    uint8_t v = (uint8_t)val;

    pthread_mutex_lock(&s->lock);
    switch (off) {
    case UART_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
        } else {
            transmit(s, v);
            /* Sent at once: the holding register is empty again. */
            s->thr_ipending = true;
        }
        break;
    case UART_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
        } else {
            /* Enabling the THR-empty interrupt with THR empty raises it. */
            if ((v & IER_THRI) && !(s->ier & IER_THRI)) {
                s->thr_ipending = true;
            }
            s->ier = v & 0x0f;
        }
        break;
    case UART_IIR_FCR:
        s->fcr = v & 0xc9;
        if (v & FCR_CLR_RX) {
            s->rx_count = 0;
        }
        break;
    case UART_LCR:
        s->lcr = v;
        break;
    case UART_MCR:
        s->mcr = v & 0x1f;
        break;
    case UART_SCR:
        s->scr = v;
        break;
    default:
        break;
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

const struct kvm_bus_ops kvm_serial_ops = {
    .read = serial_read,
    .write = serial_write,
};

/* Console escapes: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A. */
static bool console_filter(struct kvm_serial *s, uint8_t c, bool *quit)
{
    if (!s->in_is_console) {
        return true;
    }
    if (s->escape) {
        s->escape = false;
        if (c == 'x' || c == 'X') {
            *quit = true;
            return false;
        }
        return c == CTRL_A;
    }
    if (c == CTRL_A) {
        s->escape = true;
        return false;
    }
    return true;
}

void kvm_serial_receive(struct kvm_serial *s, const uint8_t *buf, size_t len)
{
    bool quit = false;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < len; i++) {
        if (console_filter(s, buf[i], &quit)) {
            rx_push(s, buf[i]);
        }
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    if (quit && s->quit) {
        s->quit(s->quit_opaque);
    }
}

static void input_ready(void *opaque)
{
    struct kvm_serial *s = opaque;
    uint8_t buf[KVM_SERIAL_FIFO];

    pthread_mutex_lock(&s->lock);
    size_t room = KVM_SERIAL_FIFO - s->rx_count;
    pthread_mutex_unlock(&s->lock);
    if (room == 0) {
        /* The guest is not reading: stop watching until it does. */
        aio_del_fd_handler(s->in_handler);
        s->in_handler = NULL;
        return;
    }
    ssize_t n = read(s->in_fd, buf, room);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (n <= 0) {
        aio_del_fd_handler(s->in_handler);
        s->in_handler = NULL;
        s->in_eof = true;
        return;
    }
    kvm_serial_receive(s, buf, (size_t)n);
}

static void resume_input(void *opaque)
{
    struct kvm_serial *s = opaque;
    if (!s->in_handler && !s->in_eof && s->in_fd >= 0) {
        s->in_handler = aio_set_fd_handler(aio_main_context(), s->in_fd, input_ready, NULL, s);
    }
}

void kvm_serial_reset(struct kvm_serial *s)
{
    pthread_mutex_lock(&s->lock);
    s->ier = s->fcr = s->scr = s->dll = s->dlm = s->lsr_extra = 0;
    s->lcr = 0x03;
    s->mcr = MCR_OUT2;
    s->thr_ipending = false;
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

int kvm_serial_init(struct kvm_serial *s, struct kvm_vm *vm, struct kvm_bus *pio,
                    uint16_t base, unsigned irq, int out_fd, int in_fd, struct err *err)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->vm = vm;
    s->irq = irq;
    s->out_fd = out_fd;
    s->in_fd = in_fd;
    s->mcr = MCR_OUT2;
    s->lcr = 0x03;
    int ret = pio ? kvm_bus_add(pio, base, 8, &kvm_serial_ops, s, "serial", err) : 0;
    if (ret < 0) {
        pthread_mutex_destroy(&s->lock);
        return ret;
    }
    if (in_fd >= 0 && aio_main_context()) {
        s->resume_bh = aio_bh_new(aio_main_context(), resume_input, s);
        resume_input(s);
    }
    return 0;
}

void kvm_serial_cleanup(struct kvm_serial *s)
{
    if (s->in_handler) {
        aio_del_fd_handler(s->in_handler);
        s->in_handler = NULL;
    }
    if (s->resume_bh) {
        aio_bh_delete(s->resume_bh);
        s->resume_bh = NULL;
    }
    pthread_mutex_destroy(&s->lock);
}
