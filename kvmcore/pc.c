/* Small PC devices on I/O ports; see pc.h. */
#include "kvmcore/pc.h"

#include <time.h>

#include "kvmcore/layout.h"
#include "util/log.h"

/* ---- i8042 and the other reset lines ------------------------------------ */

#define I8042_DATA     0x60
#define I8042_CMD      0x64
#define I8042_RESET    0xfe

static uint64_t i8042_read(void *opaque, uint64_t off, unsigned size)
{
    return 0;    /* status: no data, input buffer empty */
}

static void i8042_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct kvm_pc_io *pc = opaque;
    /* One range covers 0x60-0x64; KVM's PIT answers 0x61 before it gets here. */
    if (off == I8042_CMD - I8042_DATA && (val & 0xff) == I8042_RESET) {
        pc->ev.reset(pc->ev.opaque);
    }
}

static const struct kvm_bus_ops i8042_ops = { .read = i8042_read, .write = i8042_write };

/* 0x92: System Control Port A; bit 0 is a fast reset, bit 1 the A20 gate (always on). */
static uint64_t port92_read(void *opaque, uint64_t off, unsigned size)
{
    return 0x02;
}

static void port92_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct kvm_pc_io *pc = opaque;
    if (val & 0x01) {
        pc->ev.reset(pc->ev.opaque);
    }
}

static const struct kvm_bus_ops port92_ops = { .read = port92_read, .write = port92_write };

/* Port 0x80: POST codes, and the classic I/O delay.  Ignored quietly. */
static uint64_t post_read(void *opaque, uint64_t off, unsigned size)
{
    return 0xff;
}

static void post_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
}

static const struct kvm_bus_ops post_ops = { .read = post_read, .write = post_write };

/* ---- CMOS and RTC ------------------------------------------------------ */

#define CMOS_INDEX 0x70

static uint8_t bcd(int v)
{
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint64_t cmos_read(void *opaque, uint64_t off, unsigned size)
{
    struct kvm_pc_io *pc = opaque;
    if (off == 0) {
        return 0xff;
    }
    pthread_mutex_lock(&pc->lock);
    unsigned idx = pc->cmos_index & 0x7f;
    uint8_t v = pc->cmos[idx];
    if (idx <= 9) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        static const int fields[] = { 0, -1, 1, -1, 2, -1, 3, 4, 5, 6 };
        int f = fields[idx];
        int val = f == 0 ? tm.tm_sec : f == 1 ? tm.tm_min : f == 2 ? tm.tm_hour :
                  f == 3 ? tm.tm_wday + 1 : f == 4 ? tm.tm_mday : f == 5 ? tm.tm_mon + 1 :
                  f == 6 ? tm.tm_year % 100 : 0;
        v = f < 0 ? 0 : bcd(val);
    } else if (idx == 0x32) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        v = bcd((tm.tm_year + 1900) / 100);
    }
    pthread_mutex_unlock(&pc->lock);
    return v;
}

static void cmos_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct kvm_pc_io *pc = opaque;
    pthread_mutex_lock(&pc->lock);
    if (off == 0) {
        pc->cmos_index = (uint8_t)val;
    } else {
        unsigned idx = pc->cmos_index & 0x7f;
        /* The clock and status registers A-D are read-only here. */
        if (idx > 0x0d) {
            pc->cmos[idx] = (uint8_t)val;
        }
    }
    pthread_mutex_unlock(&pc->lock);
}

static const struct kvm_bus_ops cmos_ops = { .read = cmos_read, .write = cmos_write };

static void cmos_init(struct kvm_pc_io *pc, uint64_t low_ram, uint64_t high_ram)
{
    pc->cmos[0x0a] = 0x26;               /* 32 kHz time base, no update in progress */
    pc->cmos[0x0b] = 0x02;               /* 24-hour, BCD */
    pc->cmos[0x0d] = 0x80;               /* valid RAM and time */
    /* Base memory in KiB (640). */
    pc->cmos[0x15] = 0x80;
    pc->cmos[0x16] = 0x02;
    /* Extended memory in KiB above 1 MiB, at most 0xffff. */
    uint64_t ext = low_ram > MiB ? (low_ram - MiB) / KiB : 0;
    ext = MIN(ext, 0xffffULL);
    pc->cmos[0x17] = pc->cmos[0x30] = (uint8_t)ext;
    pc->cmos[0x18] = pc->cmos[0x31] = (uint8_t)(ext >> 8);
    /* Memory above 16 MiB in 64 KiB units, at most 0xffff. */
    uint64_t above16 = low_ram > 16 * MiB ? (low_ram - 16 * MiB) / (64 * KiB) : 0;
    above16 = MIN(above16, 0xffffULL);
    pc->cmos[0x34] = (uint8_t)above16;
    pc->cmos[0x35] = (uint8_t)(above16 >> 8);
    /* Memory above 4 GiB in 64 KiB units (three bytes). */
    uint64_t high = high_ram / (64 * KiB);
    pc->cmos[0x5b] = (uint8_t)high;
    pc->cmos[0x5c] = (uint8_t)(high >> 8);
    pc->cmos[0x5d] = (uint8_t)(high >> 16);
}

/* ---- isa-debug-exit ---------------------------------------------------- */

static uint64_t debug_exit_read(void *opaque, uint64_t off, unsigned size)
{
    return 0;
}

static void debug_exit_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct kvm_pc_io *pc = opaque;
    pc->ev.debug_exit(pc->ev.opaque, (int)((val << 1) | 1));
}

static const struct kvm_bus_ops debug_exit_ops = {
    .read = debug_exit_read,
    .write = debug_exit_write,
};

int kvm_pc_add_debug_exit(struct kvm_pc_io *pc, struct kvm_bus *pio, uint16_t iobase,
                          uint16_t iosize, struct err *err)
{
    if (iosize == 0 || (uint32_t)iobase + iosize > 0x10000) {
        err_set(err, "isa-debug-exit: ports 0x%x+%u do not fit in the I/O space", iobase, iosize);
        return -EINVAL;
    }
    int ret = kvm_bus_add(pio, iobase, iosize, &debug_exit_ops, pc, "isa-debug-exit", err);
    if (ret < 0) {
        return ret;
    }
    pc->debug_exit_base = iobase;
    pc->debug_exit_size = iosize;
    return 0;
}

int kvm_pc_io_init(struct kvm_pc_io *pc, struct kvm_bus *pio, uint64_t low_ram,
                   uint64_t high_ram, const struct kvm_pc_events *ev, struct err *err)
{
    memset(pc, 0, sizeof(*pc));
    pc->ev = *ev;
    pthread_mutex_init(&pc->lock, NULL);
    cmos_init(pc, low_ram, high_ram);
    int ret = kvm_bus_add(pio, I8042_DATA, I8042_CMD - I8042_DATA + 1, &i8042_ops, pc, "i8042",
                          err);
    if (ret == 0) {
        ret = kvm_bus_add(pio, 0x80, 1, &post_ops, pc, "post", err);
    }
    if (ret == 0) {
        ret = kvm_bus_add(pio, 0x92, 1, &port92_ops, pc, "port92", err);
    }
    if (ret == 0) {
        ret = kvm_bus_add(pio, CMOS_INDEX, 2, &cmos_ops, pc, "cmos", err);
    }
    return ret;
}

void kvm_pc_reset_control(struct kvm_pc_io *pc, uint8_t val)
{
    if (val & 0x04) {
        pc->ev.reset(pc->ev.opaque);
    }
}

void kvm_pc_io_cleanup(struct kvm_pc_io *pc)
{
    pthread_mutex_destroy(&pc->lock);
}
