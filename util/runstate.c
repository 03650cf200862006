/* The run state; see runstate.h. */
#include "util/runstate.h"

#include <pthread.h>

#include "util/aio.h"
#include "util/log.h"

static const char *const state_names[RUN_STATE__MAX] = {
    [RUN_STATE_PRELAUNCH] = "prelaunch",
    [RUN_STATE_RUNNING] = "running",
    [RUN_STATE_PAUSED] = "paused",
    [RUN_STATE_IO_ERROR] = "io-error",
    [RUN_STATE_INTERNAL_ERROR] = "internal-error",
    [RUN_STATE_SHUTDOWN] = "shutdown",
};

static const char *const cause_names[SHUTDOWN_CAUSE__MAX] = {
    [SHUTDOWN_CAUSE_NONE] = "none",
    [SHUTDOWN_CAUSE_HOST_ERROR] = "host-error",
    [SHUTDOWN_CAUSE_HOST_QMP_QUIT] = "host-qmp-quit",
    [SHUTDOWN_CAUSE_HOST_SIGNAL] = "host-signal",
    [SHUTDOWN_CAUSE_HOST_UI] = "host-ui",
    [SHUTDOWN_CAUSE_GUEST_SHUTDOWN] = "guest-shutdown",
    [SHUTDOWN_CAUSE_GUEST_RESET] = "guest-reset",
    [SHUTDOWN_CAUSE_GUEST_PANIC] = "guest-panic",
};

static atomic_int state = RUN_STATE_RUNNING;
static const struct runstate_machine_ops *machine_ops;
static void *machine_opaque;
static struct list_node notifiers = LIST_HEAD_INIT(notifiers);
/* A stop or cont is under way (the machine's pause may run the main loop). */
static bool changing;

static pthread_mutex_t shutdown_lock = PTHREAD_MUTEX_INITIALIZER;
static bool shutdown_requested;    /* under shutdown_lock */
static enum shutdown_cause shutdown_cause_value;
static bool shutdown_done;         /* main thread only */

const char *run_state_name(enum run_state s)
{
    return (unsigned)s < RUN_STATE__MAX ? state_names[s] : "debug";
}

const char *shutdown_cause_name(enum shutdown_cause c)
{
    return (unsigned)c < SHUTDOWN_CAUSE__MAX ? cause_names[c] : "none";
}

bool shutdown_cause_is_guest(enum shutdown_cause c)
{
    return c == SHUTDOWN_CAUSE_GUEST_SHUTDOWN || c == SHUTDOWN_CAUSE_GUEST_RESET ||
           c == SHUTDOWN_CAUSE_GUEST_PANIC;
}

enum run_state runstate_get(void)
{
    return (enum run_state)atomic_load(&state);
}

bool runstate_is_running(void)
{
    return runstate_get() == RUN_STATE_RUNNING;
}

void runstate_set_machine(const struct runstate_machine_ops *ops, void *opaque)
{
    machine_ops = ops;
    machine_opaque = opaque;
}

void runstate_add_notifier(struct runstate_notifier *n)
{
    list_add_tail(&notifiers, &n->link);
}

void runstate_remove_notifier(struct runstate_notifier *n)
{
    if (list_linked(&n->link)) {
        list_del(&n->link);
    }
}

static void set_state(enum run_state new_state)
{
    enum run_state old = runstate_get();
    struct runstate_notifier *n;

    atomic_store(&state, new_state);
    trace("runstate", "%s -> %s", run_state_name(old), run_state_name(new_state));
    list_for_each(n, &notifiers, link) {
        n->changed(n, old, new_state);
    }
}

void runstate_init(enum run_state initial)
{
    atomic_store(&state, initial);
    pthread_mutex_lock(&shutdown_lock);
    shutdown_requested = false;
    shutdown_cause_value = SHUTDOWN_CAUSE_NONE;
    pthread_mutex_unlock(&shutdown_lock);
    shutdown_done = false;
    changing = false;
}

static void stop_bh(void *opaque)
{
    runstate_stop((enum run_state)(intptr_t)opaque);
}

void runstate_stop(enum run_state why)
{
    if (changing) {
        /* Inside another stop or cont's pause: look again when it is done. */
        aio_bh_schedule_oneshot(aio_main_context(), stop_bh, (void *)(intptr_t)why);
        return;
    }
    if (!runstate_is_running()) {
        return;
    }
    changing = true;
    if (machine_ops && machine_ops->pause) {
        machine_ops->pause(machine_opaque);
    }
    changing = false;
    /* A shutdown may have come in while the machine paused: it wins. */
    if (runstate_is_running()) {
        set_state(why);
    }
}

int runstate_cont(struct err *err)
{
    enum run_state s = runstate_get();

    if (s == RUN_STATE_RUNNING) {
        return 0;
    }
    if (s == RUN_STATE_SHUTDOWN || s == RUN_STATE_INTERNAL_ERROR) {
        err_set(err, "Resetting the Virtual Machine is required");
        return -EBUSY;
    }
    if (changing) {
        err_set(err, "The machine is being stopped; try again");
        return -EBUSY;
    }
    if (machine_ops && machine_ops->resume) {
        changing = true;
        int ret = machine_ops->resume(machine_opaque, err);
        changing = false;
        if (ret < 0) {
            return ret;
        }
    }
    set_state(RUN_STATE_RUNNING);
    return 0;
}

void runstate_request_stop(enum run_state why)
{
    if (aio_in_main_thread()) {
        runstate_stop(why);
    } else {
        aio_bh_schedule_oneshot(aio_main_context(), stop_bh, (void *)(intptr_t)why);
    }
}

/* On the main thread: enter SHUTDOWN once, tell everyone, end the machine. */
static void process_shutdown(void *opaque)
{
    enum shutdown_cause cause;

    if (shutdown_done) {
        return;
    }
    pthread_mutex_lock(&shutdown_lock);
    cause = shutdown_cause_value;
    pthread_mutex_unlock(&shutdown_lock);
    shutdown_done = true;
    set_state(RUN_STATE_SHUTDOWN);
    if (machine_ops && machine_ops->shutdown) {
        machine_ops->shutdown(machine_opaque, cause);
    }
}

void runstate_request_shutdown(enum shutdown_cause cause)
{
    pthread_mutex_lock(&shutdown_lock);
    if (!shutdown_requested) {
        shutdown_requested = true;
        shutdown_cause_value = cause;
    }
    pthread_mutex_unlock(&shutdown_lock);
    if (aio_in_main_thread()) {
        process_shutdown(NULL);
    } else {
        aio_bh_schedule_oneshot(aio_main_context(), process_shutdown, NULL);
        aio_notify(aio_main_context());
    }
}

bool runstate_shutdown_requested(void)
{
    pthread_mutex_lock(&shutdown_lock);
    bool r = shutdown_requested;
    pthread_mutex_unlock(&shutdown_lock);
    return r;
}

enum shutdown_cause runstate_shutdown_cause(void)
{
    pthread_mutex_lock(&shutdown_lock);
    enum shutdown_cause c = shutdown_cause_value;
    pthread_mutex_unlock(&shutdown_lock);
    return c;
}
