/*
 * Coroutine stack switch for x86-64 (System V).  Saves the callee-saved
 * registers on the current stack, stores the stack pointer in *from_sp and
 * resumes the stack at to_sp.  No system call.  The SSE and x87 control
 * words are callee-saved too, but nothing in spindle changes them, so they
 * are left alone (as most coroutine switches do).
 *
 *   void co_switch(void **from_sp, void *to_sp);
 *
 * A new coroutine's stack is built by coroutine.c so that the first switch
 * "returns" into co_trampoline with the coroutine pointer in %rbx.
 */
    .text
    .globl  co_switch
    .hidden co_switch
    .type   co_switch, @function
co_switch:
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .size   co_switch, .-co_switch

    .globl  co_trampoline
    .hidden co_trampoline
    .type   co_trampoline, @function
co_trampoline:
    movq    %rbx, %rdi
    call    co_entry
    ud2
    .size   co_trampoline, .-co_trampoline

    .section .note.GNU-stack, "", @progbits
