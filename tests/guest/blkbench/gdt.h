/* Segment selectors shared by entry.S and setup.c. */
#ifndef BLKBENCH_GDT_H
#define BLKBENCH_GDT_H

#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_UDATA   0x18    /* used with RPL 3: 0x1b */
#define SEL_UCODE   0x20    /* used with RPL 3: 0x23 */
#define SEL_TSS     0x28    /* 16-byte system descriptor */

#define NR_EXC_VECTORS  32
#define VEC_HALT        32  /* DPL-3 gate: CPL3 asks ring 0 to stop the vCPU */
#define NR_IDT_VECTORS  33

#define RING0_STACK_SIZE  16384
#define USER_STACK_SIZE   65536

#endif
