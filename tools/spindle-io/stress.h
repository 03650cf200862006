/* spindle-io's stress command (stress.c). */
#ifndef SPINDLE_TOOLS_IO_STRESS_H
#define SPINDLE_TOOLS_IO_STRESS_H

#include "block/backend.h"

/* Run "stress [options]" (argv[0] is "stress") against blk; 0 when it matched the model. */
int coroutine_fn io_stress(struct block_backend *blk, int argc, char **argv);

#endif
