/*
 * job.h: running one job of the command line.
 *
 * A job has numjobs sub-jobs, one per virtqueue of its device, each with
 * its own slice of the region; the single vCPU drives them round-robin:
 * reap completions, refill up to iodepth, publish (kick only if asked).
 */
#ifndef BLKBENCH_JOB_H
#define BLKBENCH_JOB_H

#include <stdint.h>
#include "options.h"

/* TSC at the first completed request of the whole run; 0 before. */
extern uint64_t first_io_tsc;

/*
 * Run job number index and print its BLKBENCH-PHASE and BLKBENCH-RESULT
 * lines.  Returns EXIT_OK or EXIT_JOB_ERROR; exits by itself on the errors
 * that leave nothing to report (bad option for this device, timeout, RAM).
 */
int job_run(int index, const struct job_opts *o);

#endif
