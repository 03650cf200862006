/*
 * tsc.h: time from rdtsc.  rdtsc runs natively at CPL3 (no exit), so it is
 * the only clock blkbench uses; tsc_calibrate() finds its frequency once.
 */
#ifndef BLKBENCH_TSC_H
#define BLKBENCH_TSC_H

#include <stdint.h>

extern uint64_t tsc_khz;

/* KVM's pvclock page (enabled by ring 0 in setup.c). */
struct pvclock_time {
    uint32_t version;           /* odd while KVM updates the page */
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul; /* ns = ((ticks << shift) * mul) >> 32 */
    int8_t tsc_shift;
    uint8_t flags;
    uint8_t pad[2];
};

extern struct pvclock_time kvmclock;
extern int kvmclock_enabled;

/* Find tsc_khz; prints BLKBENCH-INFO tsc_khz=N source=S.  0 or -1. */
int tsc_calibrate(void);

uint64_t tsc_to_ns(uint64_t ticks);
uint64_t tsc_to_us(uint64_t ticks);
uint64_t tsc_to_ms(uint64_t ticks);
uint64_t ms_to_tsc(uint64_t ms);

/* Busy-wait; CPL3 cannot halt. */
void tsc_delay_ms(uint64_t ms);

#endif
