/*
 * serial.c: COM1 at 0x3F8, polled, plus the printf that everything uses.
 *
 * Each port access from CPL3 costs ~50 us on the project's machines (kvm_pvm
 * emulates the #GP against the TSS I/O bitmap, then exits to the VMM), so the
 * status register is read once per 16 bytes (the 16550A FIFO depth), not
 * before every byte: a 70-character line costs ~4.5 ms.  (rep outsb was
 * tried: kvm_pvm emulates it one byte, one exit, at a time; no gain.)
 */
#include <stdint.h>
#include "io.h"
#include "lib.h"
#include "serial.h"

#define COM1        0x3f8
#define UART_THR    0
#define UART_IER    1
#define UART_FCR    2
#define UART_LCR    3
#define UART_MCR    4
#define UART_LSR    5
#define UART_DLL    0
#define UART_DLM    1
#define LSR_THRE    0x20
#define FIFO_DEPTH  16
#define SPIN_LIMIT  100000   /* give up on a UART that never drains */

void serial_init(void)
{
    outb(COM1 + UART_IER, 0x00);    /* no interrupts: we poll */
    outb(COM1 + UART_LCR, 0x80);    /* DLAB to set the divisor */
    outb(COM1 + UART_DLL, 0x01);    /* 115200 baud */
    outb(COM1 + UART_DLM, 0x00);
    outb(COM1 + UART_LCR, 0x03);    /* 8N1 */
    outb(COM1 + UART_FCR, 0x07);    /* enable and clear the FIFOs */
    outb(COM1 + UART_MCR, 0x03);    /* DTR, RTS; OUT2 off keeps IRQ4 quiet */
}

static void wait_thre(void)
{
    for (unsigned i = 0; i < SPIN_LIMIT; i++) {
        if (inb(COM1 + UART_LSR) & LSR_THRE)
            return;
        cpu_relax();
    }
}

void serial_write(const char *s, unsigned long len)
{
    unsigned room = 0;

    for (unsigned long i = 0; i < len; i++) {
        if (s[i] == '\n') {
            if (room == 0) {
                wait_thre();
                room = FIFO_DEPTH;
            }
            outb(COM1 + UART_THR, '\r');
            room--;
        }
        if (room == 0) {
            wait_thre();
            room = FIFO_DEPTH;
        }
        outb(COM1 + UART_THR, (uint8_t)s[i]);
        room--;
    }
}

void serial_putc(char c)
{
    serial_write(&c, 1);
}

/* ---- formatting ---- */

struct outbuf {
    char *buf;
    unsigned long size;
    unsigned long len;
};

static void put(struct outbuf *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_num(struct outbuf *o, uint64_t v, unsigned base, int upper,
                    int neg, int width, char pad, int left)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    if (neg)
        tmp[n++] = '-';
    if (!left) {
        /* Zero padding goes after the sign, space padding before it. */
        if (pad == '0' && neg) {
            put(o, '-');
            n--;
            width--;
        }
        for (int w = n; w < width; w++)
            put(o, pad);
    }
    while (n > 0)
        put(o, tmp[--n]);
}

static void format(struct outbuf *o, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int left = 0, width = 0, lng = 0;
        for (;; fmt++) {
            if (*fmt == '0')
                pad = '0';
            else if (*fmt == '-')
                left = 1;
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng++;
            fmt++;
        }
        unsigned long start = o->len;
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(o, v < 0 ? (uint64_t)-v : (uint64_t)v, 10, 0, v < 0,
                    left ? 0 : width, pad, left);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_num(o, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', 0,
                    left ? 0 : width, pad, left);
            break;
        }
        case 'p':
            put(o, '0');
            put(o, 'x');
            put_num(o, (uintptr_t)va_arg(ap, void *), 16, 0, 0, 0, ' ', 0);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int n = (int)strlen(s);
            if (!left)
                for (int w = n; w < width; w++)
                    put(o, ' ');
            while (*s)
                put(o, *s++);
            break;
        }
        case 'c':
            put(o, (char)va_arg(ap, int));
            break;
        case '%':
            put(o, '%');
            break;
        case '\0':
            return;
        default:
            put(o, '%');
            put(o, *fmt);
            break;
        }
        if (left)
            while (o->len - start < (unsigned long)width)
                put(o, ' ');
    }
}

int ksnprintf(char *buf, unsigned long size, const char *fmt, ...)
{
    struct outbuf o = { buf, size, 0 };
    va_list ap;

    va_start(ap, fmt);
    format(&o, fmt, ap);
    va_end(ap);
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

void kvprintf(const char *fmt, va_list ap)
{
    char buf[512];
    struct outbuf o = { buf, sizeof(buf), 0 };

    format(&o, fmt, ap);
    serial_write(buf, o.len < sizeof(buf) ? o.len : sizeof(buf) - 1);
}

void kprintf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
