/*
 * The run state of the program: whether the guest runs, is paused, or the
 * program is ending, with QEMU's names for each state (query-status) and
 * for the causes of a shutdown (the SHUTDOWN event's "reason").
 *
 * It lives below the block layer and the VMM so that every part can use it:
 * a VMM registers the machine it pauses and resumes (runstate_set_machine),
 * the block layer asks for a stop when a request fails with the `stop`
 * error policy (runstate_request_stop, from any thread), the monitor turns
 * stop / cont / quit into calls here and the changes into STOP, RESUME and
 * SHUTDOWN events (a notifier).  Without a machine (the storage daemon)
 * the state still changes and notifiers still run: pausing then only means
 * what the notifiers make of it.
 *
 * Changes happen on the main thread; reading the state is safe anywhere.
 */
#ifndef SPINDLE_UTIL_RUNSTATE_H
#define SPINDLE_UTIL_RUNSTATE_H

#include "util/error.h"
#include "util/list.h"
#include "util/osdep.h"

/* A subset of QEMU's RunState, with its names. */
enum run_state {
    RUN_STATE_PRELAUNCH,      /* built, not started yet (-S) */
    RUN_STATE_RUNNING,
    RUN_STATE_PAUSED,         /* stopped by the user (stop) */
    RUN_STATE_IO_ERROR,       /* stopped by a failed request under rerror/werror=stop */
    RUN_STATE_INTERNAL_ERROR, /* a vCPU failed */
    RUN_STATE_SHUTDOWN,       /* the program is ending */
    RUN_STATE__MAX,
};

/* QEMU's ShutdownCause, with its names. */
enum shutdown_cause {
    SHUTDOWN_CAUSE_NONE,
    SHUTDOWN_CAUSE_HOST_ERROR,       /* an error prevents further use of the guest */
    SHUTDOWN_CAUSE_HOST_QMP_QUIT,    /* quit */
    SHUTDOWN_CAUSE_HOST_SIGNAL,      /* SIGINT, SIGTERM, SIGHUP */
    SHUTDOWN_CAUSE_HOST_UI,          /* the console's Ctrl-A x */
    SHUTDOWN_CAUSE_GUEST_SHUTDOWN,   /* the guest powered off (or wrote isa-debug-exit) */
    SHUTDOWN_CAUSE_GUEST_RESET,      /* the guest reset with -no-reboot */
    SHUTDOWN_CAUSE_GUEST_PANIC,
    SHUTDOWN_CAUSE__MAX,
};

const char *run_state_name(enum run_state s);
const char *shutdown_cause_name(enum shutdown_cause c);
/* Whether the guest asked for it (the SHUTDOWN event's "guest"). */
bool shutdown_cause_is_guest(enum shutdown_cause c);

enum run_state runstate_get(void);
bool runstate_is_running(void);

/*
 * What pauses and resumes a machine; registered by a VMM (opaque is its
 * machine).  Every callback runs on the main thread.
 *   pause:    stop every vCPU; returns once none runs guest code.
 *   resume:   start them again (0, or -errno with err set).
 *   shutdown: end the VM soon (the machine's main loop returns); called
 *             once, with the cause of the first shutdown request.
 */
struct runstate_machine_ops {
    void (*pause)(void *opaque);
    int (*resume)(void *opaque, struct err *err);
    void (*shutdown)(void *opaque, enum shutdown_cause cause);
};

/* ops NULL: no machine (again). */
void runstate_set_machine(const struct runstate_machine_ops *ops, void *opaque);

/*
 * Hears every change, on the main thread, after the change: `changed` with
 * the old and new state (for a shutdown, new is RUN_STATE_SHUTDOWN and
 * runstate_shutdown_cause() says why).  Notifiers run in the order they
 * were added.  A notifier may not add or remove notifiers.
 */
struct runstate_notifier {
    struct list_node link;
    void (*changed)(struct runstate_notifier *n, enum run_state old, enum run_state new_state);
};

void runstate_add_notifier(struct runstate_notifier *n);
void runstate_remove_notifier(struct runstate_notifier *n);

/*
 * The state the program starts in (PRELAUNCH or RUNNING); notifies no one.
 * Also forgets an earlier shutdown, so tests may start over.  Main thread.
 */
void runstate_init(enum run_state initial);

/*
 * Stop: if running, pause the machine and enter `why` (PAUSED or
 * IO_ERROR), then notify.  Not running: nothing changes (as QEMU's stop).
 * Main thread.
 */
void runstate_stop(enum run_state why);

/*
 * Continue from PRELAUNCH, PAUSED or IO_ERROR: resume the machine, enter
 * RUNNING, notify.  Running already: 0, nothing happens.  Refused (-EBUSY,
 * err set) while shutting down or after an internal error, which need a
 * reset.  Main thread.
 */
int runstate_cont(struct err *err);

/* A stop from any thread (a failed request); done soon on the main thread. */
void runstate_request_stop(enum run_state why);

/*
 * End the program: the first request's cause wins.  On the main thread the
 * state becomes SHUTDOWN at once (notifiers run, the machine's shutdown is
 * called); from another thread that happens soon on the main thread.
 * Calling it again, or once the program ends anyway, is harmless.
 */
void runstate_request_shutdown(enum shutdown_cause cause);
bool runstate_shutdown_requested(void);
enum shutdown_cause runstate_shutdown_cause(void);

#endif
