/*
 * setup.c: the only C that runs at ring 0.
 *
 * ring0_setup() runs once, from entry.S, before the drop to CPL3: it writes
 * the TSS descriptor (the TSS carries RSP0 and the I/O bitmap) and a 33-entry IDT (the 32 exception vectors, plus
 * VEC_HALT for CPL3 to stop the vCPU).  External interrupts need no gates:
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
