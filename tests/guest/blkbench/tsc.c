/*
 * tsc.c: TSC frequency.
 *
 * In order of trust:
 *  1. CPUID 0x40000010 (hypervisor timing leaf: EAX = TSC kHz), which KVM
 *     VMMs fill in with the frequency the guest's TSC really runs at;
 *  2. kvmclock: KVM's scale factor from TSC ticks to ns, which it derives
 *     from the TSC frequency it set up for the guest (setup.c enables it);
 *  3. CPUID 0x15 (TSC/crystal ratio times the crystal frequency);
 *  4. the PIT: channel 2 counts down a known number of 1.193182 MHz ticks
 *     (ports 0x42/0x43, gate and output on port 0x61) while we read the TSC;
 *  5. CPUID 0x16 (nominal base MHz), a guess that is right on most Intel parts.
 * The PIT costs ~CAL_MS of boot time and two VM exits per poll, so it is
 * only used when the CPUID leaves are silent.
 */
#include "io.h"
#include "serial.h"
#include "tsc.h"

#define PIT_HZ       1193182ull
#define CAL_MS       20
#define PIT_POLL_MAX 2000000u     /* no PIT: OUT2 never rises; give up */

uint64_t tsc_khz;

static uint64_t from_hypervisor_leaf(void)
{
    uint32_t r[4];

    cpuid(1, 0, r);
    if (!(r[2] & (1u << 31)))               /* not under a hypervisor */
        return 0;
    cpuid(0x40000000, 0, r);
    if (r[0] < 0x40000010)
        return 0;
    cpuid(0x40000010, 0, r);
    return r[0];
}

/* ticks -> ns is ((ticks << shift) * mul) >> 32, so Hz = 1e9 * 2^32 / (mul * 2^shift). */
static uint64_t from_kvmclock(void)
{
    volatile struct pvclock_time *pv = &kvmclock;
    uint32_t v, mul;
    int8_t shift;

    if (!kvmclock_enabled)
        return 0;
    do {
        v = pv->version;
        barrier();
        mul = pv->tsc_to_system_mul;
        shift = pv->tsc_shift;
        barrier();
    } while ((v & 1) || v != pv->version);
    if (!v || !mul)
        return 0;
    unsigned __int128 num = (unsigned __int128)1000000 << 32;    /* kHz */
    if (shift >= 0)
        return (uint64_t)(num / ((uint64_t)mul << shift));
    return (uint64_t)((num << -shift) / mul);
}

static uint64_t from_leaf_15(void)
{
    uint32_t r[4];

    cpuid(0, 0, r);
    if (r[0] < 0x15)
        return 0;
    cpuid(0x15, 0, r);
    if (!r[0] || !r[1] || !r[2])
        return 0;
    return (uint64_t)r[2] * r[1] / r[0] / 1000;
}

static uint64_t from_leaf_16(void)
{
    uint32_t r[4];

    cpuid(0, 0, r);
    if (r[0] < 0x16)
        return 0;
    cpuid(0x16, 0, r);
    return (uint64_t)(r[0] & 0xffff) * 1000;
}

static uint64_t from_pit(void)
{
    uint32_t count = (uint32_t)(PIT_HZ * CAL_MS / 1000);
    uint64_t t0, t1;
    unsigned polls = 0;

    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));  /* gate on, speaker off */
    outb(0x43, 0xb0);           /* channel 2, lo/hi byte, mode 0, binary */
    outb(0x42, (uint8_t)count);
    outb(0x42, (uint8_t)(count >> 8));
    t0 = rdtsc();
    while (!(inb(0x61) & 0x20))                         /* OUT2 rises at 0 */
        if (++polls > PIT_POLL_MAX)
            return 0;
    t1 = rdtsc();
    if (polls < 2)              /* OUT2 was stuck high: no working PIT */
        return 0;
    return (t1 - t0) * PIT_HZ / count / 1000;
}

int tsc_calibrate(void)
{
    const char *src = "cpuid-40000010";

    tsc_khz = from_hypervisor_leaf();
    if (!tsc_khz) {
        src = "kvmclock";
        tsc_khz = from_kvmclock();
    }
    if (!tsc_khz) {
        src = "cpuid-15";
        tsc_khz = from_leaf_15();
    }
    if (!tsc_khz) {
        src = "pit";
        tsc_khz = from_pit();
    }
    if (!tsc_khz) {
        src = "cpuid-16";
        tsc_khz = from_leaf_16();
    }
    if (!tsc_khz)
        return -1;
    kprintf("BLKBENCH-INFO tsc_khz=%lu source=%s\n", tsc_khz, src);
    return 0;
}

uint64_t tsc_to_ns(uint64_t ticks)
{
    return (uint64_t)((unsigned __int128)ticks * 1000000 / tsc_khz);
}

uint64_t tsc_to_us(uint64_t ticks)
{
    return (uint64_t)((unsigned __int128)ticks * 1000 / tsc_khz);
}

uint64_t tsc_to_ms(uint64_t ticks)
{
    return ticks / tsc_khz;
}

uint64_t ms_to_tsc(uint64_t ms)
{
    return ms * tsc_khz;
}

void tsc_delay_ms(uint64_t ms)
{
    uint64_t end = rdtsc() + ms_to_tsc(ms);

    while ((int64_t)(rdtsc() - end) < 0)
        cpu_relax();
}
