/*
 * options.h: the job list, parsed from the kernel command line.
 *
 *   key=value key=value ... [ -- key=value ... ]...
 *
 * Each " -- " starts the next job; jobs run one after another.  See
 * tests/guest/README.md for every key.
 */
#ifndef BLKBENCH_OPTIONS_H
#define BLKBENCH_OPTIONS_H

#include <stdint.h>

#define MAX_JOBS 32

enum rw_mode { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW };

struct job_opts {
    enum rw_mode rw;
    unsigned rwmixread;         /* percent of reads in randrw */
    uint32_t bs;
    unsigned iodepth;
    uint64_t size;              /* 0: to the end of the device */
    uint64_t offset;
    uint64_t runtime_ms;        /* 0: size-based */
    unsigned numjobs;           /* queues, one sub-job each */
    int dev;
    int verify;                 /* verify=pattern */
    unsigned flush_every;       /* a FLUSH every N writes; 0: never */
    uint32_t seed;              /* 0: from the TSC */
    uint64_t timeout_ms;        /* per request */
    uint64_t startdelay_ms;
    unsigned rate_iops;         /* main phase: at most this many requests/s; 0: no cap */
};

/* 0, or -1 after printing BLKBENCH-ERROR with the offending word. */
int options_parse(const char *cmdline, struct job_opts *jobs, int *njobs);

const char *rw_name(enum rw_mode rw);

static inline int rw_is_random(enum rw_mode rw)
{
    return rw == RW_RANDREAD || rw == RW_RANDWRITE || rw == RW_RANDRW;
}

static inline int rw_writes(enum rw_mode rw)
{
    return rw == RW_WRITE || rw == RW_RANDWRITE || rw == RW_RANDRW;
}

#endif
