/*
 * entry.S: PVH entry, the switch to long mode, and the way down to CPL3.
 *
 * Every instruction here runs at CPL0, which the nested KVM of the project's
 * machines executes in its instruction emulator (~0.7 M instructions/s), so
 * this file does as little as it can: the page tables and GDT are static
 * data, there is no loop, and the only C at ring 0 (setup.c) fills a
 * 33-entry IDT and the TSS descriptor.  Everything else runs at CPL3.
 */
#include "gdt.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define PTE_P    0x001
#define PTE_RW   0x002
#define PTE_US   0x004
#define PTE_PS   0x080
#define PTE_LEAF (PTE_P | PTE_RW | PTE_US | PTE_PS)
#define PTE_DIR  (PTE_P | PTE_RW | PTE_US)

#define CR0_PE   0x00000001
#define CR0_WP   0x00010000
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

/*
 * The PVH note.  In a 64-bit ELF QEMU reads the entry as 8 bytes, so it is a
 * .quad; the segment is 4-aligned (see blkbench.ld).
 */
    .section .note.pvh, "a"
    .balign 4
    .long 4                         /* namesz: "Xen\0" */
    .long 8                         /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad pvh_start

/*
 * PVH start state: 32-bit protected mode, paging off, flat CS/DS/SS,
 * interrupts off, %ebx = physical address of struct hvm_start_info.
 */
    .section .text.entry, "ax"
    .code32
    .globl pvh_start
pvh_start:
    rdtsc                           /* the boot_to_first_io clock starts here */
    movl %eax, boot_tsc
    movl %edx, boot_tsc + 4
    movl %ebx, pvh_start_info
    movl $ring0_stack_top, %esp

    /* 1 GiB pages when CPUID.80000001h:EDX.Page1GB[26], else 2 MiB pages. */
    movl $0x80000001, %eax
    cpuid
    movl $(pdpt_2m + PTE_DIR), %eax
    btl $26, %edx
    jnc 1f
    movl $(pdpt_1g + PTE_DIR), %eax
    movl $1, paging_1g
1:  movl %eax, pml4

    movl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl $(CR0_PG | CR0_WP | CR0_PE), %eax
    movl %eax, %cr0
    lgdt gdt_desc
    ljmp $SEL_KCODE, $long_mode

    .code64
long_mode:
    movl $SEL_KDATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movq $ring0_stack_top, %rsp
    call ring0_setup                /* setup.c: TSS descriptor, IDT, ltr, lidt */

    /*
     * Down to CPL3 with IOPL=3 (serial, PCI config and the debug-exit port
     * work from ring 3) and IF=0: nothing here handles interrupts, and
     * nothing enables an interrupt source.
     */
    pushq $(SEL_UDATA | 3)
    pushq $user_stack_top
    pushq $0x3002                   /* IOPL=3, reserved bit 1, IF=0 */
    pushq $(SEL_UCODE | 3)
    pushq $user_entry
    iretq

/* CPL3 from here on. */
user_entry:
    movl $(SEL_UDATA | 3), %eax
    movl %eax, %ds
    movl %eax, %es
    call blkbench_main              /* main.c; never returns */
    ud2

/*
 * Exception stubs, 16 bytes apart so setup.c can compute their addresses.
 * Each pushes a dummy error code where the CPU pushes none, then the vector.
 */
#define HAS_ERRCODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || \
                        (v) == 21 || (v) == 29 || (v) == 30)
    .text
    .balign 16
    .globl exc_stubs
exc_stubs:
    vec = 0
    .rept NR_EXC_VECTORS
    .balign 16
    .if !HAS_ERRCODE(vec)
    pushq $0
    .endif
    pushq $vec
    jmp exc_common
    vec = vec + 1
    .endr

exc_common:
    movq %rsp, %rdi                 /* struct exc_frame * */
    andq $-16, %rsp
    call ring0_exception            /* setup.c; never returns */
    jmp halt_forever

/*
 * VEC_HALT: the last step of blkbench_exit() when no isa-debug-exit device
 * stopped the VM.  HLT with IF=0 parks the vCPU for good.
 */
    .balign 16
    .globl halt_stub
halt_stub:
halt_forever:
    cli
    hlt
    jmp halt_forever

/*
 * Static tables.  Identity map of the low 4 GiB (RAM and the 32-bit PCI hole)
 * with U/S set so CPL3 can reach it; paging.c maps 64-bit BARs above 4 GiB
 * on demand by adding entries from CPL3.
 */
    .section .data.pagetables, "aw"
    .balign 4096
    .globl pml4
pml4:
    .fill 512, 8, 0

    .globl pdpt_1g
pdpt_1g:
    i = 0
    .rept 4
    .quad (i << 30) + PTE_LEAF
    i = i + 1
    .endr
    .fill 508, 8, 0

    .globl pdpt_2m
pdpt_2m:
    i = 0
    .rept 4
    .quad pd_2m + (i << 12) + PTE_DIR
    i = i + 1
    .endr
    .fill 508, 8, 0

pd_2m:
    i = 0
    .rept 2048
    .quad (i << 21) + PTE_LEAF
    i = i + 1
    .endr

    .data
    .balign 8
    .globl boot_tsc, pvh_start_info, paging_1g
boot_tsc:        .quad 0
pvh_start_info:  .quad 0
paging_1g:       .long 0

    .balign 16
    .globl gdt
gdt:
    .quad 0                         /* null */
    .quad 0x00209a0000000000        /* SEL_KCODE: 64-bit, DPL0 */
    .quad 0x00cf92000000ffff        /* SEL_KDATA: DPL0 */
    .quad 0x00cff2000000ffff        /* SEL_UDATA: DPL3 */
    .quad 0x0020fa0000000000        /* SEL_UCODE: 64-bit, DPL3 */
    .quad 0, 0                      /* SEL_TSS: filled by setup.c */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .bss.stack, "aw", @nobits
    .balign 4096
    .globl ring0_stack_top
ring0_stack:
    .skip RING0_STACK_SIZE
ring0_stack_top:
user_stack:
    .skip USER_STACK_SIZE
user_stack_top:

    .section .note.GNU-stack, "", @progbits
