/*
 * spindle-sd: the storage daemon; see sd.h.  This file is its life: start
 * (daemonize, apply the options, write the pidfile), the main loop, and an
 * orderly end.
 */
#include "sd.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "blockjobs/job.h"
#include "monitor/monitor.h"
#include "util/aio.h"
#include "util/iothread.h"
#include "util/log.h"
#include "util/runstate.h"

static int signal_fd = -1;
static struct aio_fd_handler *signal_handler;

static void signal_ready(void *opaque)
{
    struct signalfd_siginfo si;
    if (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
        runstate_request_shutdown(SHUTDOWN_CAUSE_HOST_SIGNAL);
    }
}

/*
 * --daemonize: the parent waits until the child has started (or failed)
 * and exits with its verdict; the child goes on in a new session.  Called
 * before any thread or ring exists.  Returns the pipe the child reports on.
 */
static int daemonize(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        log_error("--daemonize: %s", strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("--daemonize: cannot fork: %s", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        char status = 1;
        close(fds[1]);
        if (read(fds[0], &status, 1) != 1) {
            status = 1;      /* the child died before it was ready */
        }
        _exit(status);
    }
    close(fds[0]);
    setsid();
    return fds[1];
}

/* The child is ready: tell the parent, and let go of the terminal. */
static void daemon_ready(int fd)
{
    char ok = 0;
    if (write(fd, &ok, 1) != 1) {
        log_warn("--daemonize: cannot tell the parent: %s", strerror(errno));
    }
    close(fd);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
}

/* The pidfile, locked so that a second daemon with the same file refuses to start. */
static int write_pidfile(const char *path, struct err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return err_set_errno(err, -errno, "Cannot open pid file '%s'", path);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return err_set_errno(err, -e, "Cannot lock pid file '%s'", path);
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
        int e = errno;
        close(fd);
        return err_set_errno(err, -e, "Failed to write pid file '%s'", path);
    }
    return fd;      /* kept open: the lock lasts as long as the daemon */
}

static void block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static void cleanup(int pid_fd, const char *pidfile)
{
    mon_cleanup();
    job_cancel_sync_all();
    blockdev_close_all();
    iothread_destroy_all();
    aio_del_fd_handler(signal_handler);
    if (signal_fd >= 0) {
        close(signal_fd);
    }
    if (pid_fd >= 0) {
        unlink(pidfile);
        close(pid_fd);
    }
    /* Let deleted fd handlers finish freeing. */
    while (aio_poll(aio_main_context(), false)) {
    }
}

int main(int argc, char **argv)
{
    struct sd_config cfg;
    struct err err = { 0 };
    int status_fd = -1, pid_fd = -1;

    log_set_program(argv[0]);
    if (getenv("SPINDLE_DEBUG")) {
        log_set_level(LOG_DEBUG);
    }
    if (sd_config_parse(&cfg, argc, argv, &err) < 0) {
        log_error("%s", err.msg);
        sd_config_free(&cfg);
        return 1;
    }
    if (cfg.help || cfg.version) {
        if (cfg.help) {
            sd_usage(stdout);
        } else {
            printf("spindle-sd (spindle) 0.1: qemu-storage-daemon's command line, "
                   "QMP of QEMU 7.2\n");
        }
        sd_config_free(&cfg);
        return 0;
    }
    if (cfg.daemonize) {
        status_fd = daemonize();
    }
    block_signals();
    if (aio_main_init(&err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    if (signal_fd >= 0) {
        signal_handler = aio_set_fd_handler(aio_main_context(), signal_fd, signal_ready, NULL,
                                            NULL);
    }
    runstate_init(RUN_STATE_RUNNING);
    mon_init();

    int ret = 0;
    for (size_t i = 0; i < cfg.nr_opts && ret == 0; i++) {
        ret = sd_apply(&cfg, &cfg.opts[i], &err);
    }
    if (ret == 0 && cfg.pidfile) {
        pid_fd = write_pidfile(cfg.pidfile, &err);
        ret = pid_fd < 0 ? pid_fd : 0;
    }
    if (ret < 0) {
        log_error("%s", err.msg);
        cleanup(pid_fd, cfg.pidfile);
        sd_config_free(&cfg);
        return 1;
    }
    if (status_fd >= 0) {
        daemon_ready(status_fd);
    }

    while (!runstate_shutdown_requested()) {
        aio_poll(aio_main_context(), true);
    }
    /* A shutdown asked for on another thread reaches the main thread here at the latest. */
    runstate_request_shutdown(SHUTDOWN_CAUSE_NONE);

    cleanup(pid_fd, cfg.pidfile);
    sd_config_free(&cfg);
    return 0;
}
