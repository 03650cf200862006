#include "blkbench.h"
#include "io.h"
#include "serial.h"
#include "lib.h"

void blkbench_main(void) __attribute__((noreturn));

void blkbench_exit(int status)
{
    kprintf("BLKBENCH-DONE status=%d\n", status);
    outw(DEBUG_EXIT_PORT, (uint16_t)status);
    __asm__ volatile("int $32");
    for (;;)
        ;
}

void blkbench_main(void)
{
    uint64_t t = rdtsc();
    serial_init();
    kprintf("hello from cpl3: boot_tsc=%lu now=%lu 1g=%u si=0x%lx\n", boot_tsc, t, paging_1g, pvh_start_info);
    blkbench_exit(0);
}
