/*
 * blkbench.h: what the whole guest shares: exit statuses, the boot facts
 * entry.S saved, and the way out.
 */
#ifndef BLKBENCH_H
#define BLKBENCH_H

#include <stdint.h>

/*
 * Exit statuses, written to isa-debug-exit (QEMU then exits with
 * status * 2 + 1) and printed on the BLKBENCH-DONE line.
 */
enum {
    EXIT_OK        = 0,   /* every job ran without I/O or verify errors */
    EXIT_JOB_ERROR = 1,   /* some request failed or some block did not verify */
    EXIT_USAGE     = 2,   /* bad command line */
    EXIT_DEVICE    = 3,   /* no device, device init failed, request timeout */
    EXIT_EXCEPTION = 4,   /* unexpected CPU exception (reported by ring 0) */
    EXIT_NOMEM     = 5,   /* guest RAM too small for what was asked */
};

#define DEBUG_EXIT_PORT 0x501

/* Saved by entry.S before anything else ran. */
extern uint64_t boot_tsc;
extern uint64_t pvh_start_info;
extern uint32_t paging_1g;

/* Print BLKBENCH-DONE, leave through isa-debug-exit, else halt for good. */
void blkbench_exit(int status) __attribute__((noreturn));

/* Print one "BLKBENCH-ERROR ..." line and exit with status. */
void fatal(int status, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

#endif
