/*
 * tsc.h: time from rdtsc.  rdtsc runs natively at CPL3 (no exit), so it is
 * the only clock blkbench uses; tsc_calibrate() finds its frequency once.
 */
#ifndef BLKBENCH_TSC_H
#define BLKBENCH_TSC_H

#include <stdint.h>

extern uint64_t tsc_khz;

/* Find tsc_khz; prints BLKBENCH-INFO tsc_khz=N source=S.  0 or -1. */
int tsc_calibrate(void);

uint64_t tsc_to_ns(uint64_t ticks);
uint64_t tsc_to_us(uint64_t ticks);
uint64_t tsc_to_ms(uint64_t ticks);
uint64_t ms_to_tsc(uint64_t ms);

/* Busy-wait; CPL3 cannot halt. */
void tsc_delay_ms(uint64_t ms);

#endif
