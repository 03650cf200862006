/* The machine and its lifecycle; see machine.h. */
#include "kvmcore/machine.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "blockjobs/job.h"
#include "kvmcore/layout.h"
#include "kvmcore/mptable.h"
#include "util/iothread.h"
#include "util/log.h"

#if defined(__has_include)
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void wake_main(void *opaque)
{
}

/* Pausing, resuming and ending the VM for util/runstate.h (QMP stop, cont, quit). */
static const struct runstate_machine_ops machine_ops;

void kvm_machine_request_exit(struct kvm_machine *m, int status, bool error, const char *why,
                              enum shutdown_cause cause)
{
    pthread_mutex_lock(&m->exit_lock);
    if (!atomic_load(&m->exit_requested)) {
        m->exit_status = status;
        m->exit_is_error = error;
        m->exit_msg = why ? xstrdup(why) : NULL;
        m->exit_cause = cause;
        atomic_store(&m->exit_requested, true);
    }
    pthread_mutex_unlock(&m->exit_lock);
    aio_bh_schedule_oneshot(aio_main_context(), wake_main, NULL);
}

void kvm_machine_add_dev(struct kvm_machine *m, struct kvm_machine_dev *d)
{
    list_add_tail(&m->devs, &d->link);
}

/* ---- Events from vCPUs and devices -------------------------------------- */

static void vcpu_request_exit(void *opaque, int status, const char *why)
{
    /* A powered-off guest, or one that broke its vCPU. */
    kvm_machine_request_exit(opaque, status, status != KVM_EXIT_STATUS_OK, why,
                             status == KVM_EXIT_STATUS_OK ? SHUTDOWN_CAUSE_GUEST_SHUTDOWN
                                                          : SHUTDOWN_CAUSE_HOST_ERROR);
}

static void guest_reset(void *opaque)
{
    struct kvm_machine *m = opaque;
    if (m->cfg->no_reboot) {
        kvm_machine_request_exit(m, KVM_EXIT_STATUS_OK, false, NULL, SHUTDOWN_CAUSE_GUEST_RESET);
    } else {
        atomic_store(&m->reset_requested, true);
        aio_bh_schedule_oneshot(aio_main_context(), wake_main, NULL);
    }
}

static void guest_debug_exit(void *opaque, int status)
{
    kvm_machine_request_exit(opaque, status, false, NULL, SHUTDOWN_CAUSE_GUEST_SHUTDOWN);
}

static void rcr_write(void *opaque, uint8_t val)
{
    struct kvm_machine *m = opaque;
    kvm_pc_reset_control(&m->pc, val);
}

static void console_quit(void *opaque)
{
    kvm_machine_request_exit(opaque, KVM_EXIT_STATUS_OK, false, "terminated by Ctrl-A x",
                             SHUTDOWN_CAUSE_HOST_UI);
}

static void signal_ready(void *opaque)
{
    struct kvm_machine *m = opaque;
    struct signalfd_siginfo si;
    if (read(m->signal_fd, &si, sizeof(si)) == sizeof(si)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "terminating on signal %u", si.ssi_signo);
        kvm_machine_request_exit(m, KVM_EXIT_STATUS_OK, false, msg, SHUTDOWN_CAUSE_HOST_SIGNAL);
    }
}

int kvm_machine_create_debug_exit(struct kvm_machine *m, struct kvm_device_cfg *dev,
                                  struct err *err);

int kvm_machine_create_debug_exit(struct kvm_machine *m, struct kvm_device_cfg *dev,
                                  struct err *err)
{
    const struct kvm_debug_exit_cfg *c = dev->cfg;
    return kvm_pc_add_debug_exit(&m->pc, &m->pio, c->iobase, c->iosize, err);
}

/* ---- Building ------------------------------------------------------------ */

static int open_serial(struct kvm_machine *m, struct err *err)
{
    const struct kvm_config *c = m->cfg;
    int out = -1, in = -1;
    m->serial_out_fd = -1;
    switch (c->serial) {
    case KVM_SERIAL_NONE:
        return 0;
    case KVM_SERIAL_NULL:
        break;
    case KVM_SERIAL_STDIO:
        out = STDOUT_FILENO;
        in = STDIN_FILENO;
        break;
    case KVM_SERIAL_FILE:
        out = open(c->serial_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0) {
            return err_set_errno(err, -errno, "-serial file:%s", c->serial_file);
        }
        m->serial_out_fd = out;
        break;
    }
    int ret = kvm_serial_init(&m->serial, &m->vm, &m->pio, KVM_COM1_BASE, KVM_IRQ_COM1, out, in,
                              err);
    if (ret < 0) {
        return ret;
    }
    m->serial.in_is_console = in >= 0 && isatty(in);
    m->serial.quit = console_quit;
    m->serial.quit_opaque = m;
    m->has_serial = true;
    return 0;
}

static int create_devices(struct kvm_machine *m, struct err *err)
{
    for (unsigned i = 0; i < m->cfg->nr_devices; i++) {
        struct kvm_device_cfg *d = &m->cfg->devices[i];
        int ret = d->type->create(m, d, err);
        if (ret < 0) {
            if (!err_isset(err)) {
                err_set(err, "-device %s: cannot create it", d->type->name);
            }
            return ret;
        }
    }
    return 0;
}

static int load_kernel(struct kvm_machine *m, struct vcpu_boot_state *bs, struct err *err)
{
    const struct kvm_config *c = m->cfg;
    int ret = kvm_boot_read_file(c->kernel, "kernel", &m->kernel, err);
    if (ret < 0) {
        return ret;
    }
    if (c->initrd) {
        ret = kvm_boot_read_file(c->initrd, "initrd", &m->initrd, err);
        if (ret < 0) {
            return ret;
        }
    }
    struct kvm_boot_opts o = {
        .kernel = m->kernel,
        .initrd = m->initrd,
        .cmdline = c->append,
    };
    ret = kvm_boot_load(&m->ram, &o, bs, &m->boot, err);
    /* The images are in guest RAM now; keep no second copy. */
    kvm_boot_image_free(&m->kernel);
    kvm_boot_image_free(&m->initrd);
    return ret;
}

static int write_mptable(struct kvm_machine *m, struct err *err)
{
    struct kvm_pci_irq irqs[PCI_MAX_SLOTS];
    unsigned n = 0;
    for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        struct pci_dev *d = m->pci.devs[slot];
        if (d) {
            irqs[n++] = (struct kvm_pci_irq){ .slot = (uint8_t)slot, .pin = 0,
                                              .gsi = (uint8_t)d->gsi };
        }
    }
    struct kvm_cpuid_entry2 *l1 = kvm_cpuid_find(m->cpuid, 1, 0);
    int ret = kvm_mptable_write(&m->ram, m->cfg->smp, l1 ? l1->eax : 0, l1 ? l1->edx : 0, irqs,
                                n, err);
    return ret < 0 ? ret : 0;
}

static int create_vcpus(struct kvm_machine *m, const struct vcpu_boot_state *bs,
                        struct err *err)
{
    m->env = (struct vcpu_env){
        .vm = &m->vm, .pio = &m->pio, .mmio = &m->mmio,
        .request_exit = vcpu_request_exit, .opaque = m,
    };
    m->vcpus = xcalloc(m->cfg->smp, sizeof(*m->vcpus));
    for (unsigned i = 0; i < m->cfg->smp; i++) {
        m->vcpus[i].fd = -1;
    }
    for (unsigned i = 0; i < m->cfg->smp; i++) {
        struct kvm_cpuid2 *c = kvm_cpuid_for_vcpu(m->cpuid, i, m->cfg->smp);
        int ret = vcpu_create(&m->vcpus[i], &m->env, i, c, err);
        free(c);
        if (ret < 0) {
            return ret;
        }
        m->nr_vcpus++;
    }
    return vcpu_set_boot_state(&m->vcpus[0], bs, err);
}

int kvm_machine_init(struct kvm_machine *m, struct kvm_config *cfg, struct err *err)
{
    struct vcpu_boot_state bs;
    int ret;

    memset(m, 0, sizeof(*m));
    m->cfg = cfg;
    m->signal_fd = -1;
    m->serial_out_fd = -1;
    list_init(&m->devs);
    pthread_mutex_init(&m->exit_lock, NULL);
    kvm_bus_init(&m->pio, "I/O port");
    kvm_bus_init(&m->mmio, "MMIO");
    m->start_ns = clock_ns();

    for (unsigned i = 0; i < cfg->nr_iothreads; i++) {
        if (!iothread_create(cfg->iothreads[i].id, &cfg->iothreads[i].opts, err)) {
            return -EINVAL;
        }
    }
    ret = kvm_vm_open(&m->vm, err);
    if (ret < 0) {
        return ret;
    }
    m->vm_open = true;
    if ((int)cfg->smp > m->vm.max_vcpus) {
        err_set(err, "-smp %u: KVM allows at most %d vCPUs here", cfg->smp, m->vm.max_vcpus);
        return -EINVAL;
    }
    ret = kvm_ram_alloc(&m->ram, cfg->ram_size, cfg->mem_path, err);
    if (ret < 0) {
        return ret;
    }
    if (cfg->mem_prealloc && madvise(m->ram.hva, m->ram.size, MADV_POPULATE_WRITE) < 0) {
        memset(m->ram.hva, 0, m->ram.size);
    }
    ret = kvm_ram_map(&m->ram, &m->vm, err);
    if (ret < 0) {
        return ret;
    }
    m->cpuid = kvm_cpuid_build(&m->vm, &cfg->cpu_model, cfg->smp, err);
    if (!m->cpuid) {
        return -EINVAL;
    }
    struct kvm_pc_events ev = { .reset = guest_reset, .debug_exit = guest_debug_exit,
                                .opaque = m };
    ret = kvm_pc_io_init(&m->pc, &m->pio, m->ram.low_size, m->ram.high_size, &ev, err);
    if (ret < 0) {
        return ret;
    }
    m->pc_ready = true;
    ret = open_serial(m, err);
    if (ret < 0) {
        return ret;
    }
    ret = pci_host_init(&m->pci, &m->pio, &m->mmio, err);
    if (ret < 0) {
        return ret;
    }
    m->pci_ready = true;
    m->pci.rcr_write = rcr_write;
    m->pci.rcr_opaque = m;
    ret = kvm_storage_open(&m->storage, cfg, err);
    m->storage_open = true;
    if (ret < 0) {
        return ret;
    }
    ret = create_devices(m, err);
    if (ret < 0) {
        return ret;
    }
    ret = pci_host_assign_bars(&m->pci, err);
    if (ret < 0) {
        return ret;
    }
    ret = load_kernel(m, &bs, err);
    if (ret < 0) {
        return ret;
    }
    ret = write_mptable(m, err);
    if (ret < 0) {
        return ret;
    }
    ret = create_vcpus(m, &bs, err);
    if (ret < 0) {
        return ret;
    }
    runstate_init(cfg->start_paused ? RUN_STATE_PRELAUNCH : RUN_STATE_RUNNING);
    runstate_set_machine(&machine_ops, m);
    return 0;
}

/* ---- Running --------------------------------------------------------------- */

static bool vcpus_running(struct kvm_machine *m)
{
    for (unsigned i = 0; i < m->nr_vcpus; i++) {
        if (m->vcpus[i].started && !atomic_load(&m->vcpus[i].exited)) {
            return true;
        }
    }
    return false;
}

/*
 * Stop every vCPU.  The main loop keeps running meanwhile: a vCPU may be
 * inside a device callback that waits for it (a virtio reset).
 */
static void rekick(void *opaque)
{
    struct kvm_machine *m = opaque;
    for (unsigned i = 0; i < m->nr_vcpus; i++) {
        vcpu_kick_stop(&m->vcpus[i]);
    }
    /* Again soon: without KVM_CAP_IMMEDIATE_EXIT a kick can come too early. */
    aio_timer_mod(&m->rekick_timer, clock_ns() + 10 * 1000 * 1000);
}

static void stop_vcpus(struct kvm_machine *m)
{
    if (m->stopping_vcpus) {
        /* Called from the main loop that an outer call runs (QMP stop during a reboot). */
        AIO_WAIT_WHILE(vcpus_running(m));
        return;
    }
    m->stopping_vcpus = true;
    aio_timer_init(&m->rekick_timer, aio_main_context(), rekick, m);
    rekick(m);
    AIO_WAIT_WHILE(vcpus_running(m));
    aio_timer_del(&m->rekick_timer);
    for (unsigned i = 0; i < m->nr_vcpus; i++) {
        vcpu_join(&m->vcpus[i]);
    }
    m->stopping_vcpus = false;
}

static int start_vcpus(struct kvm_machine *m, struct err *err)
{
    for (unsigned i = 0; i < m->nr_vcpus; i++) {
        int ret = vcpu_start(&m->vcpus[i], err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* The guest reset the machine: boot it again.  Main thread. */
static int reboot(struct kvm_machine *m, struct err *err)
{
    struct vcpu_boot_state bs;
    int ret;

    m->rebooting = true;
    stop_vcpus(m);
    m->reboots++;
    log_debug("reboot %u, %.3f s after start", m->reboots, (clock_ns() - m->start_ns) / 1e9);
    pci_host_reset(&m->pci);
    if (m->has_serial) {
        kvm_serial_reset(&m->serial);
    }
    ret = kvm_vm_reset_chips(&m->vm, err);
    if (ret == 0) {
        ret = load_kernel(m, &bs, err);
    }
    if (ret == 0) {
        ret = write_mptable(m, err);
    }
    for (unsigned i = 0; ret == 0 && i < m->nr_vcpus; i++) {
        ret = vcpu_reset(&m->vcpus[i], i == 0 ? &bs : NULL, err);
    }
    /* Paused meanwhile (QMP stop): cont starts the rebooted vCPUs. */
    m->rebooting = false;
    if (ret == 0 && runstate_is_running()) {
        ret = start_vcpus(m, err);
    }
    if (ret < 0) {
        err_prepend(err, "cannot reboot the guest: ");
    }
    return ret;
}

/* ---- The run state's machine (QMP stop, cont, quit) ---------------------- */

static void machine_pause(void *opaque)
{
    stop_vcpus(opaque);
}

static int machine_resume(void *opaque, struct err *err)
{
    struct kvm_machine *m = opaque;
    if (atomic_load(&m->exit_requested)) {
        err_set(err, "the VM is shutting down");
        return -ESHUTDOWN;
    }
    if (m->rebooting || m->stopping_vcpus) {
        err_set(err, "the VM is rebooting; try again");
        return -EBUSY;
    }
    int ret = start_vcpus(m, err);
    if (ret < 0) {
        /* Some may have started: all or none. */
        stop_vcpus(m);
    }
    return ret;
}

static void machine_shutdown(void *opaque, enum shutdown_cause cause)
{
    kvm_machine_request_exit(opaque, KVM_EXIT_STATUS_OK, false, NULL, cause);
}

static const struct runstate_machine_ops machine_ops = {
    .pause = machine_pause,
    .resume = machine_resume,
    .shutdown = machine_shutdown,
};

int kvm_machine_run(struct kvm_machine *m)
{
    struct err err = { 0 };
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    m->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->signal_fd >= 0) {
        m->signal_handler = aio_set_fd_handler(aio_main_context(), m->signal_fd, signal_ready,
                                               NULL, m);
    }
    /* With -S the vCPUs wait for QMP cont. */
    if (runstate_is_running() && start_vcpus(m, &err) < 0) {
        kvm_machine_request_exit(m, KVM_EXIT_STATUS_SETUP, true, err.msg,
                                 SHUTDOWN_CAUSE_HOST_ERROR);
    }
    for (;;) {
        while (!atomic_load(&m->exit_requested) && !atomic_load(&m->reset_requested)) {
            aio_poll(aio_main_context(), true);
        }
        if (atomic_load(&m->exit_requested)) {
            break;
        }
        atomic_store(&m->reset_requested, false);
        err_clear(&err);
        if (reboot(m, &err) < 0) {
            kvm_machine_request_exit(m, KVM_EXIT_STATUS_SETUP, true, err.msg,
                                     SHUTDOWN_CAUSE_HOST_ERROR);
        }
    }
    /* The run state ends too (the SHUTDOWN event), unless QMP quit began it. */
    runstate_request_shutdown(m->exit_cause);
    stop_vcpus(m);
    /* SPINDLE_DEBUG=1: where each vCPU stood, and how often it left the kernel. */
    for (unsigned i = 0; i < m->nr_vcpus; i++) {
        char where[256];
        vcpu_describe(&m->vcpus[i], where, sizeof(where));
        log_debug("vCPU %u stopped at %s after %" PRIu64 " exits (%" PRIu64 " port, %" PRIu64
                  " MMIO), %.3f s after start", i, where, m->vcpus[i].nr_exits,
                  m->vcpus[i].nr_io, m->vcpus[i].nr_mmio, (clock_ns() - m->start_ns) / 1e9);
    }

    pthread_mutex_lock(&m->exit_lock);
    if (m->exit_msg) {
        if (m->exit_is_error) {
            log_error("%s", m->exit_msg);
        } else {
            log_info("%s", m->exit_msg);
        }
    }
    int status = m->exit_status;
    pthread_mutex_unlock(&m->exit_lock);
    return status;
}

void kvm_machine_cleanup(struct kvm_machine *m)
{
    struct kvm_machine_dev *d, *tmp;

    runstate_set_machine(NULL, NULL);
    /* vCPUs first: nothing may touch a device while it goes. */
    stop_vcpus(m);
    /* Jobs next: a mirror's filter stands between a device and its disk. */
    job_cancel_sync_all();
    list_for_each(d, &m->devs, link) {
        if (d->stop) {
            d->stop(d);
        }
    }
    list_for_each_safe(d, tmp, &m->devs, link) {
        list_del(&d->link);
        d->destroy(d);
    }
    if (m->storage_open) {
        kvm_storage_close(&m->storage);
        m->storage_open = false;
    }
    for (unsigned i = 0; i < m->nr_vcpus; i++) {
        vcpu_destroy(&m->vcpus[i]);
    }
    free(m->vcpus);
    m->vcpus = NULL;
    m->nr_vcpus = 0;
    iothread_destroy_all();
    if (m->signal_handler) {
        aio_del_fd_handler(m->signal_handler);
    }
    if (m->signal_fd >= 0) {
        close(m->signal_fd);
    }
    if (m->has_serial) {
        kvm_serial_cleanup(&m->serial);
    }
    if (m->serial_out_fd >= 0) {
        close(m->serial_out_fd);
    }
    if (m->pci_ready) {
        pci_host_cleanup(&m->pci);
    }
    if (m->pc_ready) {
        kvm_pc_io_cleanup(&m->pc);
    }
    free(m->cpuid);
    kvm_boot_image_free(&m->kernel);
    kvm_boot_image_free(&m->initrd);
    if (m->vm_open) {
        kvm_vm_close(&m->vm);
    }
    kvm_ram_free(&m->ram);
    kvm_bus_destroy(&m->pio);
    kvm_bus_destroy(&m->mmio);
    free(m->exit_msg);
    pthread_mutex_destroy(&m->exit_lock);
    /* Let queued callbacks (deleted fd handlers) finish freeing. */
    while (aio_poll(aio_main_context(), false)) {
    }
}

/* ---- The program ----------------------------------------------------------- */

static struct termios saved_tty;
static bool tty_raw;

static void restore_tty(void)
{
    if (tty_raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
        tty_raw = false;
    }
}

/* A raw console, as QEMU's -nographic: keys go to the guest, Ctrl-A x quits. */
static void make_tty_raw(void)
{
    struct termios t;
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0) {
        return;
    }
    t = saved_tty;
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(restore_tty);
    }
}

int kvm_vm_main(int argc, char **argv, const struct kvm_vm_hooks *hooks)
{
    struct kvm_config cfg;
    struct kvm_machine m;
    struct err err = { 0 };
    sigset_t set;

    log_set_program(argv[0]);
    if (getenv("SPINDLE_DEBUG")) {
        log_set_level(LOG_DEBUG);
    }
    if (kvm_config_parse(&cfg, argc, argv, &err) < 0) {
        log_error("%s", err.msg);
        kvm_config_free(&cfg);
        return KVM_EXIT_STATUS_SETUP;
    }
    if (cfg.nr_qmp && (!hooks || !hooks->start)) {
        log_error("-qmp: this program has no QMP monitor");
        kvm_config_free(&cfg);
        return KVM_EXIT_STATUS_SETUP;
    }
    if (cfg.help || cfg.version) {
        if (cfg.help) {
            kvm_config_usage(stdout, log_program());
        } else {
            printf("spindle-vm (spindle) 0.1: a KVM monitor for storage work\n");
        }
        kvm_config_free(&cfg);
        return 0;
    }

    /* Signals: INT/TERM/HUP come through a signalfd; vCPUs unblock their kick. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    vcpu_signals_init();

    if (aio_main_init(&err) < 0) {
        log_error("%s", err.msg);
        kvm_config_free(&cfg);
        return KVM_EXIT_STATUS_SETUP;
    }
    int status = KVM_EXIT_STATUS_SETUP;
    bool hooked = false;
    int ret = kvm_machine_init(&m, &cfg, &err);
    if (ret == 0 && hooks && hooks->start) {
        hooked = true;
        ret = hooks->start(&m, &err);
    }
    if (ret < 0) {
        log_error("%s", err.msg);
    } else {
        if (cfg.serial == KVM_SERIAL_STDIO) {
            make_tty_raw();
        }
        status = kvm_machine_run(&m);
    }
    if (hooked && hooks->stop) {
        hooks->stop(&m);
    }
    kvm_machine_cleanup(&m);
    restore_tty();
    kvm_config_free(&cfg);
    return status;
}
