/*
 * setup.c: the only C that runs at ring 0.
 *
 * ring0_setup() runs once, from entry.S, before the drop to CPL3: it writes
 * the TSS descriptor (the TSS carries RSP0 and the I/O bitmap) and a 33-entry IDT (the 32 exception vectors, plus
 * VEC_HALT for CPL3 to stop the vCPU), and turns kvmclock on when KVM offers it.  External interrupts need no gates:
 * CPL3 runs with IF=0 and masks the PIC anyway.
 *
 * ring0_exception() reports an unexpected exception on the serial console
 * and exits with EXIT_EXCEPTION.  It is slow (emulated), which is fine on
 * the way out.
 */
#include <stdint.h>
#include "blkbench.h"
#include "gdt.h"
#include "io.h"
#include "serial.h"
#include "tsc.h"

/*
 * Ports 0..IOMAP_PORTS-1 are open to CPL3 through the TSS I/O permission
 * bitmap.  IOPL=3 alone would do on hardware, but kvm_pvm runs guest CPL3
 * with the host's IOPL=0 and emulates the resulting #GP against the guest's
 * bitmap, so the bitmap is what makes serial, PCI config and debug-exit work
 * here.  0xD00 covers everything blkbench touches (0x3F8, 0x501, 0xCF8).
 */
#define IOMAP_PORTS 0xd00

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
    uint8_t iomap[IOMAP_PORTS / 8 + 1];     /* 0 = allowed; last byte 0xff */
} __attribute__((packed));

struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t type;           /* P | DPL | 0xE (64-bit interrupt gate) */
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t reserved;
} __attribute__((packed));

/* What exc_common hands over: our two pushes, then the CPU's frame. */
struct exc_frame {
    uint64_t vector;
    uint64_t error;
    uint64_t rip;
    uint64_t cs;
    uint64_t rflags;
    uint64_t rsp;
    uint64_t ss;
};

void ring0_setup(void);
void ring0_exception(struct exc_frame *f) __attribute__((noreturn));

extern uint64_t gdt[];
extern char exc_stubs[], halt_stub[], ring0_stack_top[];

/* Initialised data, so the bitmap is valid without zeroing .bss at ring 0. */
static struct tss64 tss __attribute__((aligned(16))) = {
    .iomap_base = __builtin_offsetof(struct tss64, iomap),
    .iomap[IOMAP_PORTS / 8] = 0xff,
};
static struct idt_gate idt[NR_IDT_VECTORS]
    __attribute__((section(".bss.ring0"), aligned(16)));

static void set_gate(unsigned vec, void *handler, unsigned dpl)
{
    uint64_t a = (uintptr_t)handler;

    idt[vec].off_lo = (uint16_t)a;
    idt[vec].sel = SEL_KCODE;
    idt[vec].ist = 0;
    idt[vec].type = (uint8_t)(0x8e | (dpl << 5));
    idt[vec].off_mid = (uint16_t)(a >> 16);
    idt[vec].off_hi = (uint32_t)(a >> 32);
    idt[vec].reserved = 0;
}

static void set_tss_descriptor(void)
{
    uint64_t base = (uintptr_t)&tss;
    uint64_t limit = sizeof(tss) - 1;

    gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
                       (0x89ull << 40) |              /* present, 64-bit TSS */
                       (((limit >> 16) & 0xf) << 48) | ((base >> 24 & 0xff) << 56);
    gdt[SEL_TSS / 8 + 1] = base >> 32;
}

/*
 * kvmclock: KVM publishes the guest TSC's exact frequency (as a scale factor)
 * in a page whose address the guest writes to an MSR.  WRMSR is privileged,
 * so ring 0 does that one write; tsc.c reads the page from CPL3.  This saves
 * the 20 ms PIT calibration on every boot under KVM.
 */
#define KVM_SIG_EBX 0x4b4d564bu     /* "KVMKVMKVM\0\0\0" */
#define KVM_SIG_ECX 0x564b4d56u
#define KVM_SIG_EDX 0x0000004du
#define KVM_FEATURE_CLOCKSOURCE   0
#define KVM_FEATURE_CLOCKSOURCE2  3
#define MSR_KVM_SYSTEM_TIME       0x12
#define MSR_KVM_SYSTEM_TIME_NEW   0x4b564d01

struct pvclock_time kvmclock __attribute__((section(".bss.ring0"), aligned(64)));
int kvmclock_enabled __attribute__((section(".bss.ring0")));  /* not cleared at CPL3 */

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static void kvmclock_enable(void)
{
    uint32_t r[4];

    cpuid(1, 0, r);
    if (!(r[2] & (1u << 31)))               /* no hypervisor */
        return;
    cpuid(0x40000000, 0, r);
    if (r[1] != KVM_SIG_EBX || r[2] != KVM_SIG_ECX || r[3] != KVM_SIG_EDX ||
        r[0] < 0x40000001)
        return;
    cpuid(0x40000001, 0, r);
    if (r[0] & (1u << KVM_FEATURE_CLOCKSOURCE2))
        wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uintptr_t)&kvmclock | 1);
    else if (r[0] & (1u << KVM_FEATURE_CLOCKSOURCE))
        wrmsr(MSR_KVM_SYSTEM_TIME, (uintptr_t)&kvmclock | 1);
    else
        return;
    kvmclock_enabled = 1;
}

void ring0_setup(void)
{
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (uintptr_t)idt };

    tss.rsp[0] = (uintptr_t)ring0_stack_top;   /* CPL3 -> CPL0 stack */
    set_tss_descriptor();
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS));

    for (unsigned v = 0; v < NR_EXC_VECTORS; v++)
        set_gate(v, exc_stubs + 16 * v, 0);
    set_gate(VEC_HALT, halt_stub, 3);
    __asm__ volatile("lidt %0" : : "m"(idtr));
    kvmclock_enable();
}

void ring0_exception(struct exc_frame *f)
{
    uint64_t cr2;

    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    kprintf("\nBLKBENCH-ERROR unexpected exception vector=%lu error=0x%lx "
            "rip=0x%lx cs=0x%lx rsp=0x%lx rflags=0x%lx cr2=0x%lx\n",
            f->vector, f->error, f->rip, f->cs, f->rsp, f->rflags, cr2);
    kprintf("BLKBENCH-DONE status=%d\n", EXIT_EXCEPTION);
    outw(DEBUG_EXIT_PORT, EXIT_EXCEPTION);
    for (;;)
        __asm__ volatile("cli; hlt");
}
