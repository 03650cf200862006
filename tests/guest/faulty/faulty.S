/*
 * faulty.S: a tiny PVH guest that misbehaves on purpose, for spindle-vm's
 * integration tests.  The first letter of the command line picks what it
 * does after printing "FAULTY <letter>" on COM1:
 *
 *   t  triple fault: an empty IDT, then ud2
 *   i  KVM internal error: jump into MMIO space with no memory behind it,
 *      so KVM's emulator cannot fetch the instruction
 *   r  reset through the i8042 (port 0x64, 0xfe)
 *   e  write 0x2a to isa-debug-exit (spindle-vm exits with 0x55)
 *   h  halt with interrupts off, forever
 *   b  boot twice: on the first boot leave a mark in RAM (which a reset
 *      keeps) and reset through the i8042; on the second, exit as e
 *   k  time 20000 16-bit writes to RAM, then to 0xc0007000 (the notify
 *      address of queue 0 of the first virtio device spindle-vm places),
 *      and print both TSC deltas in hex: "KICK ram=... mmio=..."; exit as e
 *   c  print "CPUID x2apic=N xsave=N pdpe1gb=N" (what -cpu left), then exit as e
 *
 * 32-bit protected mode, paging off, as the PVH entry leaves it; %ebx
 * points at hvm_start_info (cmdline_paddr at offset 24).
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define COM1 0x3f8

    .section .note.pvh, "a"
    .balign 4
    .long 4
    .long 4
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long _start

    .text
    .code32
    .globl _start
_start:
    movl 24(%ebx), %esi             /* the command line */
    movzbl (%esi), %ecx             /* the mode letter */
    movl $banner, %esi
1:  lodsb
    testb %al, %al
    jz 2f
    movw $COM1, %dx
    outb %al, %dx
    jmp 1b
2:  movb %cl, %al
    outb %al, %dx
    movb $'\n', %al
    outb %al, %dx

    cmpb $'t', %cl
    je triple
    cmpb $'i', %cl
    je internal
    cmpb $'r', %cl
    je reset
    cmpb $'e', %cl
    je debug_exit
    cmpb $'c', %cl
    je cpuid_report
    cmpb $'b', %cl
    je boot_twice
    cmpb $'k', %cl
    je kick_bench
halt:
    cli
    hlt
    jmp halt

triple:
    lidt idt_empty
    ud2

internal:
    movl $0xd0000000, %eax
    jmp *%eax

boot_twice:
    cmpl $0x544f4f42, 0x800000      /* "BOOT": the mark of a first boot */
    je debug_exit
    movl $0x544f4f42, 0x800000
reset:
    movb $0xfe, %al
    outb %al, $0x64
    jmp halt

/* Print the string at %esi on COM1. */
puts:
    movw $COM1, %dx
1:  lodsb
    testb %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  ret

/* Print '0' or '1' for bit %cl of %edi. */
putbit:
    movl %edi, %eax
    shrl %cl, %eax
    andb $1, %al
    addb $'0', %al
    movw $COM1, %dx
    outb %al, %dx
    ret

/* Print %eax as 8 hex digits. */
puthex:
    movl %eax, %ebx
    movl $8, %ecx
1:  roll $4, %ebx
    movl %ebx, %eax
    andl $0xf, %eax
    movb hexdigits(%eax), %al
    movw $COM1, %dx
    outb %al, %dx
    loop 1b
    ret

#define KICK_ITERS 20000
kick_bench:
    movl $0xf0000, %esp
    rdtsc
    movl %eax, %esi
    movl $KICK_ITERS, %ecx
1:  movw $0, 0x900000
    loop 1b
    rdtsc
    subl %esi, %eax
    movl %eax, %edi                 /* RAM loop ticks */
    rdtsc
    movl %eax, %esi
    movl $KICK_ITERS, %ecx
1:  movw $0, 0xc0007000
    loop 1b
    rdtsc
    subl %esi, %eax
    pushl %eax                      /* MMIO loop ticks */
    pushl %edi
    movl $msg_kick, %esi
    call puts
    popl %eax
    call puthex
    movl $msg_mmio, %esi
    call puts
    popl %eax
    call puthex
    movb $'\n', %al
    movw $COM1, %dx
    outb %al, %dx
    jmp debug_exit

cpuid_report:
    movl $0xf0000, %esp             /* a stack in low RAM for the calls */
    movl $1, %eax
    cpuid
    movl %ecx, %edi
    movl $msg_x2apic, %esi
    call puts
    movb $21, %cl
    call putbit
    movl $msg_xsave, %esi
    call puts
    movb $26, %cl
    call putbit
    movl $0x80000001, %eax
    cpuid
    movl %edx, %edi
    movl $msg_1g, %esi
    call puts
    movb $26, %cl
    call putbit
    movb $'\n', %al
    outb %al, %dx
    jmp debug_exit

debug_exit:
    movb $0x2a, %al
    movw $0x501, %dx
    outb %al, %dx
    jmp halt

    .data
banner:
    .asciz "FAULTY "
msg_x2apic:
    .asciz "CPUID x2apic="
msg_1g:
    .asciz " pdpe1gb="
msg_xsave:
    .asciz " xsave="
msg_kick:
    .asciz "KICK ram=0x"
msg_mmio:
    .asciz " mmio=0x"
hexdigits:
    .ascii "0123456789abcdef"
    .balign 8
idt_empty:
    .word 0
    .long 0
