/*
 * main.c: blkbench at CPL3, from entry.S's iretq to the debug-exit port.
 *
 * Order matters for boot_to_first_io: only what the first request needs
 * happens before it (serial, memory map, TSC, command line, PCI probe).
 */
#include <stdarg.h>
#include "blk.h"
#include "blkbench.h"
#include "io.h"
#include "job.h"
#include "lib.h"
#include "mem.h"
#include "options.h"
#include "pvh.h"
#include "serial.h"
#include "tsc.h"

#define CMDLINE_MAX 4096

void blkbench_main(void) __attribute__((noreturn));

extern char __bss_zero_start[], __bss_zero_end[];

static char cmdline[CMDLINE_MAX];
static struct job_opts jobs[MAX_JOBS];

void blkbench_exit(int status)
{
    kprintf("BLKBENCH-DONE status=%d\n", status);
    outw(DEBUG_EXIT_PORT, (uint16_t)status);
    /* Still here: no isa-debug-exit.  Ring 0 parks the vCPU with HLT. */
    __asm__ volatile("int $32");
    for (;;)
        cpu_relax();
}

void fatal(int status, const char *fmt, ...)
{
    va_list ap;

    kprintf("BLKBENCH-ERROR ");
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kprintf("\n");
    blkbench_exit(status);
}

/* The loader should have zeroed .bss; a VMM that did not gets away with it. */
static void clear_bss(void)
{
    memset(__bss_zero_start, 0, (size_t)(__bss_zero_end - __bss_zero_start));
}

/* Nothing may interrupt us: IF is 0 anyway, and the 8259s stay masked. */
static void mask_pic(void)
{
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

static const struct hvm_start_info *read_start_info(void)
{
    const struct hvm_start_info *si = (const void *)(uintptr_t)pvh_start_info;

    if (!si || si->magic != HVM_START_MAGIC) {
        kprintf("BLKBENCH-INFO no valid hvm_start_info at 0x%lx; empty command line\n",
                pvh_start_info);
        return NULL;
    }
    if (si->cmdline_paddr) {
        const char *src = (const char *)(uintptr_t)si->cmdline_paddr;
        size_t n = 0;
        while (n + 1 < sizeof(cmdline) && src[n])
            n++;
        memcpy(cmdline, src, n);
        cmdline[n] = '\0';
    }
    return si;
}

static void __attribute__((noreturn)) run_jobs(int njobs)
{
    int status = EXIT_OK;

    for (int i = 0; i < njobs; i++) {
        if (job_run(i, &jobs[i]) != EXIT_OK)
            status = EXIT_JOB_ERROR;
        if (i == 0 && first_io_tsc)
            kprintf("BLKBENCH-INFO boot_to_first_io_us=%lu\n",
                    tsc_to_us(first_io_tsc - boot_tsc));
    }
    blkbench_exit(status);
}

void blkbench_main(void)
{
    uint64_t main_tsc = rdtsc();
    int njobs;

    clear_bss();
    serial_init();
    mask_pic();
    kprintf("\nBLKBENCH-INFO blkbench starting at CPL3 paging=%s\n",
            paging_1g ? "1g" : "2m");
    const struct hvm_start_info *si = read_start_info();
    kprintf("BLKBENCH-INFO cmdline=\"%s\"\n", cmdline);
    if (mem_init(si) < 0)
        fatal(EXIT_NOMEM, "no usable RAM found (no PVH memory map, no CMOS sizes)");
    if (tsc_calibrate() < 0)
        fatal(EXIT_DEVICE, "cannot determine the TSC frequency (no CPUID leaf, no PIT)");
    kprintf("BLKBENCH-INFO ring0_us=%lu\n", tsc_to_us(main_tsc - boot_tsc));
    if (options_parse(cmdline, jobs, &njobs) < 0)
        blkbench_exit(EXIT_USAGE);
    if (njobs == 0) {
        /* An empty command line: a one-second smoke test. */
        options_parse("rw=randread bs=4k iodepth=1 runtime=1", jobs, &njobs);
    }
    vblk_probe_all();
    if (vblk_count == 0)
        fatal(EXIT_DEVICE, "no virtio-blk device found on PCI bus 0");
    kprintf("BLKBENCH-INFO devices=%d setup_us=%lu\n", vblk_count,
            tsc_to_us(rdtsc() - boot_tsc));
    run_jobs(njobs);
}
