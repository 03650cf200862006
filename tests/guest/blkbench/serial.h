/* serial.h: the polled COM1 console and a small printf. */
#ifndef BLKBENCH_SERIAL_H
#define BLKBENCH_SERIAL_H

#include <stdarg.h>

void serial_init(void);
void serial_putc(char c);
void serial_write(const char *s, unsigned long len);

/*
 * printf subset: %d %i %u %x %X %s %c %p %%, with flags '0' and '-', a
 * width, and the length modifiers l, ll and z.  Returns nothing: the
 * console cannot fail in a way the caller could handle.
 */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);
int ksnprintf(char *buf, unsigned long size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
