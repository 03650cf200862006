/* vCPU threads and their exits; see vcpu.h. */
#include "kvmcore/vcpu.h"

#include <signal.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/log.h"

#define SIG_KICK SIGUSR1

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

#define CR0_PE 0x00000001ULL
#define CR0_ET 0x00000010ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x00000020ULL
#define EFER_LME 0x00000100ULL
#define EFER_LMA 0x00000400ULL

static void kick_handler(int sig)
{
    (void)sig;
}

void vcpu_signals_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;     /* no SA_RESTART: KVM_RUN must return EINTR */
    sigaction(SIG_KICK, &sa, NULL);
}

static int vcpu_ioctl(struct vcpu *v, unsigned long req, void *arg)
{
    int ret;
    do {
        ret = ioctl(v->fd, req, arg);
    } while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : ret;
}

static int setup_lapic(struct vcpu *v, struct err *err)
{
    struct kvm_lapic_state lapic;
    int ret = vcpu_ioctl(v, KVM_GET_LAPIC, &lapic);
    if (ret < 0) {
        return err_set_errno(err, ret, "vCPU %u: KVM_GET_LAPIC failed", v->index);
    }
    uint32_t lint0, lint1;
    memcpy(&lint0, &lapic.regs[APIC_LVT_LINT0], 4);
    memcpy(&lint1, &lapic.regs[APIC_LVT_LINT1], 4);
    lint0 = (lint0 & ~0x10700u) | (APIC_MODE_EXTINT << 8);
    lint1 = (lint1 & ~0x10700u) | (APIC_MODE_NMI << 8);
    memcpy(&lapic.regs[APIC_LVT_LINT0], &lint0, 4);
    memcpy(&lapic.regs[APIC_LVT_LINT1], &lint1, 4);
    ret = vcpu_ioctl(v, KVM_SET_LAPIC, &lapic);
    if (ret < 0) {
        return err_set_errno(err, ret, "vCPU %u: KVM_SET_LAPIC failed", v->index);
    }
    return 0;
}

int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned index,
                const struct kvm_cpuid2 *cpuid, struct err *err)
{
    int ret;

    memset(v, 0, sizeof(*v));
    v->index = index;
    v->env = env;
    v->fd = ioctl(env->vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (v->fd < 0) {
        v->fd = -1;
        return err_set_errno(err, -errno, "vCPU %u: KVM_CREATE_VCPU failed", index);
    }
    v->run_size = (size_t)env->vm->vcpu_mmap_size;
    void *run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (run == MAP_FAILED) {
        ret = err_set_errno(err, -errno, "vCPU %u: cannot map its kvm_run", index);
        goto fail;
    }
    v->run = run;
    ret = vcpu_ioctl(v, KVM_SET_CPUID2, (void *)cpuid);
    if (ret < 0) {
        err_set_errno(err, ret, "vCPU %u: KVM_SET_CPUID2 failed", index);
        goto fail;
    }
    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    ret = vcpu_ioctl(v, KVM_SET_FPU, &fpu);
    if (ret < 0) {
        err_set_errno(err, ret, "vCPU %u: KVM_SET_FPU failed", index);
        goto fail;
    }
    ret = setup_lapic(v, err);
    if (ret < 0) {
        goto fail;
    }
    v->lapic0 = xmalloc(sizeof(*v->lapic0));
    if (vcpu_ioctl(v, KVM_GET_LAPIC, v->lapic0) < 0 || vcpu_ioctl(v, KVM_GET_REGS, &v->regs0) < 0 ||
        vcpu_ioctl(v, KVM_GET_SREGS, &v->sregs0) < 0) {
        ret = err_set_errno(err, -errno, "vCPU %u: cannot read its initial state", index);
        goto fail;
    }
    return 0;

fail:
    vcpu_destroy(v);
    return ret;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool long_code)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->db = long_code ? 0 : 1;
    s->s = 1;
    s->l = long_code ? 1 : 0;
    s->g = 1;
}

int vcpu_set_boot_state(struct vcpu *v, const struct vcpu_boot_state *bs, struct err *err)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    int ret = vcpu_ioctl(v, KVM_GET_SREGS, &sregs);
    if (ret < 0) {
        return err_set_errno(err, ret, "vCPU %u: KVM_GET_SREGS failed", v->index);
    }
    bool lm = bs->mode == VCPU_BOOT_LONG64;
    flat_segment(&sregs.cs, lm ? 0x10 : 0x08, 0xb, lm);
    flat_segment(&sregs.ds, lm ? 0x18 : 0x10, 0x3, false);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    if (lm) {
        sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
        sregs.cr3 = bs->cr3;
        sregs.cr4 = CR4_PAE;
        sregs.efer = EFER_LME | EFER_LMA;
        sregs.gdt.base = bs->gdt_base;
        sregs.gdt.limit = bs->gdt_limit;
    } else {
        sregs.cr0 = CR0_PE | CR0_ET;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    ret = vcpu_ioctl(v, KVM_SET_SREGS, &sregs);
    if (ret < 0) {
        return err_set_errno(err, ret, "vCPU %u: KVM_SET_SREGS failed", v->index);
    }
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = bs->rip;
    regs.rbx = bs->rbx;
    regs.rsi = bs->rsi;
    ret = vcpu_ioctl(v, KVM_SET_REGS, &regs);
    if (ret < 0) {
        return err_set_errno(err, ret, "vCPU %u: KVM_SET_REGS failed", v->index);
    }
    return 0;
}

/* ---- Exits ------------------------------------------------------------- */

static const char *exit_name(uint32_t reason)
{
    static const char *const names[] = {
        [KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN",
        [KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
        [KVM_EXIT_IO] = "KVM_EXIT_IO",
        [KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
        [KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG",
        [KVM_EXIT_HLT] = "KVM_EXIT_HLT",
        [KVM_EXIT_MMIO] = "KVM_EXIT_MMIO",
        [KVM_EXIT_IRQ_WINDOW_OPEN] = "KVM_EXIT_IRQ_WINDOW_OPEN",
        [KVM_EXIT_SHUTDOWN] = "KVM_EXIT_SHUTDOWN",
        [KVM_EXIT_FAIL_ENTRY] = "KVM_EXIT_FAIL_ENTRY",
        [KVM_EXIT_INTR] = "KVM_EXIT_INTR",
        [KVM_EXIT_SET_TPR] = "KVM_EXIT_SET_TPR",
        [KVM_EXIT_TPR_ACCESS] = "KVM_EXIT_TPR_ACCESS",
        [KVM_EXIT_NMI] = "KVM_EXIT_NMI",
        [KVM_EXIT_INTERNAL_ERROR] = "KVM_EXIT_INTERNAL_ERROR",
        [KVM_EXIT_SYSTEM_EVENT] = "KVM_EXIT_SYSTEM_EVENT",
    };
    if (reason < ARRAY_SIZE(names) && names[reason]) {
        return names[reason];
    }
    return "an unexpected exit";
}

static const char *suberror_name(uint32_t sub)
{
    switch (sub) {
    case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure";
    case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions";
    case KVM_INTERNAL_ERROR_DELIVERY_EV: return "exit while delivering an event";
    case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "unexpected exit reason";
    default: return "unknown suberror";
    }
}

/* "RIP 0x... (64-bit mode, CR0 0x..., CR3 0x...)" for messages. */
void vcpu_describe(struct vcpu *v, char *buf, size_t size)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    if (vcpu_ioctl(v, KVM_GET_REGS, &regs) < 0 || vcpu_ioctl(v, KVM_GET_SREGS, &sregs) < 0) {
        snprintf(buf, size, "RIP unknown");
        return;
    }
    const char *mode = !(sregs.cr0 & CR0_PE) ? "real mode" :
                       sregs.cs.l ? "64-bit mode" :
                       sregs.cs.db ? "32-bit mode" : "16-bit protected mode";
    snprintf(buf, size, "RIP 0x%llx (%s, CPL %u, CR0 0x%llx, CR3 0x%llx, RSP 0x%llx)",
             (unsigned long long)regs.rip, mode, sregs.cs.selector & 3,
             (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
             (unsigned long long)regs.rsp);
}

static void fatal_exit(struct vcpu *v, const char *what)
{
    char cpu[256], msg[1024];
    vcpu_describe(v, cpu, sizeof(cpu));
    snprintf(msg, sizeof(msg), "vCPU %u: %s at %s; stopping the VM", v->index, what, cpu);
    v->env->request_exit(v->env->opaque, KVM_EXIT_STATUS_GUEST_ERROR, msg);
}

static void internal_error(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    char what[512];
    int n = snprintf(what, sizeof(what), "KVM_EXIT_INTERNAL_ERROR, suberror %u (%s)",
                     run->internal.suberror, suberror_name(run->internal.suberror));
    if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && run->emulation_failure.ndata &&
        (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
        unsigned len = MIN(run->emulation_failure.insn_size, 15u);
        n += snprintf(what + n, sizeof(what) - (size_t)n, ", instruction bytes");
        for (unsigned i = 0; i < len && n < (int)sizeof(what) - 4; i++) {
            n += snprintf(what + n, sizeof(what) - (size_t)n, " %02x",
                          run->emulation_failure.insn_bytes[i]);
        }
    } else if (run->internal.ndata) {
        unsigned nd = MIN(run->internal.ndata, 4u);
        n += snprintf(what + n, sizeof(what) - (size_t)n, ", data");
        for (unsigned i = 0; i < nd && n < (int)sizeof(what) - 20; i++) {
            n += snprintf(what + n, sizeof(what) - (size_t)n, " 0x%llx",
                          (unsigned long long)run->internal.data[i]);
        }
    }
    fatal_exit(v, what);
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    unsigned size = run->io.size;

    v->nr_io++;
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        bool handled;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            handled = kvm_bus_write(v->env->pio, run->io.port, data, size);
        } else {
            handled = kvm_bus_read(v->env->pio, run->io.port, data, size);
        }
        if (!handled) {
            log_debug("vCPU %u: %s of %u bytes at unassigned port 0x%x", v->index,
                      run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read", size,
                      run->io.port);
        }
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    unsigned len = run->mmio.len;
    bool handled;

    v->nr_mmio++;
    if (run->mmio.is_write) {
        handled = kvm_bus_write(v->env->mmio, run->mmio.phys_addr, run->mmio.data, len);
    } else {
        handled = kvm_bus_read(v->env->mmio, run->mmio.phys_addr, run->mmio.data, len);
    }
    if (!handled) {
        log_debug("vCPU %u: %s of %u bytes at unassigned address 0x%llx", v->index,
                  run->mmio.is_write ? "write" : "read", len,
                  (unsigned long long)run->mmio.phys_addr);
    }
}

/* Handle one exit; false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    char what[256];

    v->nr_exits++;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        /*
         * Only without an in-kernel local APIC does HLT come here; nothing
         * could wake the vCPU then, so sleep until the VM stops.
         */
        while (!atomic_load(&v->stop)) {
            pause();
        }
        return false;
    case KVM_EXIT_SHUTDOWN:
        fatal_exit(v, "the guest triple-faulted (KVM_EXIT_SHUTDOWN)");
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        internal_error(v);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what),
                 "KVM_EXIT_FAIL_ENTRY, hardware entry failure reason 0x%llx on host CPU %u",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
                 run->fail_entry.cpu);
        fatal_exit(v, what);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
            v->env->request_exit(v->env->opaque, KVM_EXIT_STATUS_OK, NULL);
            return false;
        }
        snprintf(what, sizeof(what), "KVM_EXIT_SYSTEM_EVENT of type %u", run->system_event.type);
        fatal_exit(v, what);
        return false;
    case KVM_EXIT_UNKNOWN:
        snprintf(what, sizeof(what), "KVM_EXIT_UNKNOWN, hardware exit reason 0x%llx",
                 (unsigned long long)run->hw.hardware_exit_reason);
        fatal_exit(v, what);
        return false;
    default:
        snprintf(what, sizeof(what), "%s (exit reason %u), which spindle-vm does not handle",
                 exit_name(run->exit_reason), run->exit_reason);
        fatal_exit(v, what);
        return false;
    }
}

static void *vcpu_thread(void *opaque)
{
    struct vcpu *v = opaque;
    char name[16];
    sigset_t set;

    snprintf(name, sizeof(name), "vcpu%u", v->index);
    pthread_setname_np(pthread_self(), name);
    sigemptyset(&set);
    sigaddset(&set, SIG_KICK);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    while (!atomic_load(&v->stop)) {
        int ret = ioctl(v->fd, KVM_RUN, 0);
        if (ret < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                v->run->immediate_exit = 0;
                continue;
            }
            char what[128];
            snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(errno));
            fatal_exit(v, what);
            break;
        }
        if (!handle_exit(v)) {
            break;
        }
    }
    atomic_store(&v->exited, true);
    /* The main loop may be waiting for this (it keeps running while vCPUs stop). */
    aio_wait_kick();
    return NULL;
}

int vcpu_start(struct vcpu *v, struct err *err)
{
    /* Again after a stop (QMP stop, then cont): the state stays in KVM. */
    atomic_store(&v->stop, false);
    atomic_store(&v->exited, false);
    if (v->run) {
        v->run->immediate_exit = 0;
    }
    int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (ret) {
        return err_set_errno(err, -ret, "vCPU %u: cannot start its thread", v->index);
    }
    v->started = true;
    return 0;
}

void vcpu_kick_stop(struct vcpu *v)
{
    atomic_store(&v->stop, true);
    if (v->run) {
        /* Seen by a KVM_RUN that starts after this: it returns EINTR at once. */
        atomic_thread_fence(memory_order_seq_cst);
        v->run->immediate_exit = 1;
    }
    if (v->started && !atomic_load(&v->exited)) {
        pthread_kill(v->thread, SIG_KICK);
    }
}

void vcpu_join(struct vcpu *v)
{
    if (!v->started) {
        return;
    }
    /* Kick again now and then: without KVM_CAP_IMMEDIATE_EXIT a kick can be missed. */
    while (!atomic_load(&v->exited)) {
        vcpu_kick_stop(v);
        usleep(1000);
    }
    pthread_join(v->thread, NULL);
    v->started = false;
}

/* Paravirtual and other MSRs a rebooting guest must find off, and PAT at its default. */
static const struct { uint32_t index; uint64_t value; } reset_msrs[] = {
    { 0x4b564d01, 0 },                   /* MSR_KVM_SYSTEM_TIME_NEW: kvmclock off */
    { 0x4b564d02, 0 },                   /* MSR_KVM_ASYNC_PF_EN */
    { 0x4b564d03, 0 },                   /* MSR_KVM_STEAL_TIME */
    { 0x4b564d04, 0 },                   /* MSR_KVM_PV_EOI_EN */
    { 0x00000012, 0 },                   /* MSR_KVM_SYSTEM_TIME (old) */
    { 0x00000277, 0x0007040600070406 },  /* IA32_PAT */
};

int vcpu_reset(struct vcpu *v, const struct vcpu_boot_state *bs, struct err *err)
{
    int ret;
    struct kvm_fpu fpu;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp = {
        .mp_state = v->index == 0 ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_UNINITIALIZED,
    };

    if ((ret = vcpu_ioctl(v, KVM_SET_REGS, &v->regs0)) < 0 ||
        (ret = vcpu_ioctl(v, KVM_SET_SREGS, &v->sregs0)) < 0 ||
        (ret = vcpu_ioctl(v, KVM_SET_LAPIC, v->lapic0)) < 0) {
        return err_set_errno(err, ret, "vCPU %u: cannot reset its registers", v->index);
    }
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    memset(&events, 0, sizeof(events));
    if ((ret = vcpu_ioctl(v, KVM_SET_FPU, &fpu)) < 0 ||
        (ret = vcpu_ioctl(v, KVM_SET_VCPU_EVENTS, &events)) < 0 ||
        (ret = vcpu_ioctl(v, KVM_SET_MP_STATE, &mp)) < 0) {
        return err_set_errno(err, ret, "vCPU %u: cannot reset its state", v->index);
    }
    /* One MSR at a time: KVM stops at the first it does not know. */
    for (size_t i = 0; i < ARRAY_SIZE(reset_msrs); i++) {
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } m;
        memset(&m, 0, sizeof(m));
        m.hdr.nmsrs = 1;
        m.e.index = reset_msrs[i].index;
        m.e.data = reset_msrs[i].value;
        vcpu_ioctl(v, KVM_SET_MSRS, &m);
    }
    atomic_store(&v->stop, false);
    atomic_store(&v->exited, false);
    v->run->immediate_exit = 0;
    return bs ? vcpu_set_boot_state(v, bs, err) : 0;
}

void vcpu_destroy(struct vcpu *v)
{
    free(v->lapic0);
    v->lapic0 = NULL;
    if (v->run) {
        munmap(v->run, v->run_size);
        v->run = NULL;
    }
    if (v->fd >= 0) {
        close(v->fd);
        v->fd = -1;
    }
}
