/*
 * The run state: stop and cont drive the registered machine and tell the
 * notifiers, stopping twice or continuing a running program changes
 * nothing, a stop asked for on another thread happens on the main loop,
 * the first shutdown's cause wins and a shut-down program cannot continue.
 */
#include "tests/unit/harness.h"

#include <pthread.h>
#include <stdio.h>

#include "util/aio.h"
#include "util/runstate.h"

static int pauses, resumes, shutdowns;
static enum shutdown_cause last_cause;
static bool fail_resume;

static void m_pause(void *opaque)
{
    pauses++;
}

static int m_resume(void *opaque, struct err *err)
{
    if (fail_resume) {
        err_set(err, "no vCPU today");
        return -EIO;
    }
    resumes++;
    return 0;
}

static void m_shutdown(void *opaque, enum shutdown_cause cause)
{
    shutdowns++;
    last_cause = cause;
}

static const struct runstate_machine_ops ops = { m_pause, m_resume, m_shutdown };

static char changes[256];

static void changed(struct runstate_notifier *n, enum run_state old, enum run_state new_state)
{
    size_t l = strlen(changes);
    snprintf(changes + l, sizeof(changes) - l, "%s%s>%s", l ? " " : "", run_state_name(old),
             run_state_name(new_state));
}

static struct runstate_notifier notifier = { .changed = changed };

static void reset(enum run_state initial)
{
    runstate_init(initial);
    runstate_set_machine(&ops, NULL);
    pauses = resumes = shutdowns = 0;
    fail_resume = false;
    changes[0] = '\0';
}

static int setup(void)
{
    runstate_add_notifier(&notifier);
    return 0;
}

static int teardown(void)
{
    runstate_remove_notifier(&notifier);
    runstate_set_machine(NULL, NULL);
    runstate_init(RUN_STATE_RUNNING);
    return 0;
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(run_state_name(RUN_STATE_PRELAUNCH), "prelaunch");
    CU_ASSERT_STRING_EQUAL(run_state_name(RUN_STATE_IO_ERROR), "io-error");
    CU_ASSERT_STRING_EQUAL(shutdown_cause_name(SHUTDOWN_CAUSE_HOST_QMP_QUIT), "host-qmp-quit");
    CU_ASSERT_STRING_EQUAL(shutdown_cause_name(SHUTDOWN_CAUSE_GUEST_RESET), "guest-reset");
    CU_ASSERT_TRUE(shutdown_cause_is_guest(SHUTDOWN_CAUSE_GUEST_SHUTDOWN));
    CU_ASSERT_FALSE(shutdown_cause_is_guest(SHUTDOWN_CAUSE_HOST_SIGNAL));
}

static void test_stop_cont(void)
{
    struct err err = { 0 };
    reset(RUN_STATE_RUNNING);
    runstate_stop(RUN_STATE_PAUSED);
    runstate_stop(RUN_STATE_PAUSED);
    CU_ASSERT_EQUAL(runstate_get(), RUN_STATE_PAUSED);
    CU_ASSERT_EQUAL(pauses, 1);
    CU_ASSERT_EQUAL(runstate_cont(&err), 0);
    CU_ASSERT_EQUAL(runstate_cont(&err), 0);
    CU_ASSERT_TRUE(runstate_is_running());
    CU_ASSERT_EQUAL(resumes, 1);
    CU_ASSERT_STRING_EQUAL(changes, "running>paused paused>running");

    /* A machine that cannot resume stays paused, and says why. */
    runstate_stop(RUN_STATE_IO_ERROR);
    fail_resume = true;
    CU_ASSERT_EQUAL(runstate_cont(&err), -EIO);
    CU_ASSERT_STRING_EQUAL(err.msg, "no vCPU today");
    CU_ASSERT_EQUAL(runstate_get(), RUN_STATE_IO_ERROR);
}

static void test_prelaunch(void)
{
    struct err err = { 0 };
    reset(RUN_STATE_PRELAUNCH);
    CU_ASSERT_FALSE(runstate_is_running());
    /* stop before the start changes nothing, as QEMU's. */
    runstate_stop(RUN_STATE_PAUSED);
    CU_ASSERT_EQUAL(runstate_get(), RUN_STATE_PRELAUNCH);
    CU_ASSERT_EQUAL(pauses, 0);
    CU_ASSERT_EQUAL(runstate_cont(&err), 0);
    CU_ASSERT_EQUAL(resumes, 1);
    CU_ASSERT_STRING_EQUAL(changes, "prelaunch>running");
}

static void *stop_from_thread(void *opaque)
{
    runstate_request_stop(RUN_STATE_IO_ERROR);
    return NULL;
}

static void test_stop_from_thread(void)
{
    pthread_t t;
    reset(RUN_STATE_RUNNING);
    pthread_create(&t, NULL, stop_from_thread, NULL);
    pthread_join(t, NULL);
    CU_ASSERT_TRUE(runstate_is_running());     /* not behind the main loop's back */
    for (int i = 0; i < 100 && runstate_is_running(); i++) {
        aio_poll(aio_main_context(), false);
    }
    CU_ASSERT_EQUAL(runstate_get(), RUN_STATE_IO_ERROR);
    CU_ASSERT_EQUAL(pauses, 1);
}

static void *shutdown_from_thread(void *opaque)
{
    runstate_request_shutdown(SHUTDOWN_CAUSE_GUEST_SHUTDOWN);
    return NULL;
}

static void test_shutdown(void)
{
    struct err err = { 0 };
    pthread_t t;
    reset(RUN_STATE_RUNNING);
    pthread_create(&t, NULL, shutdown_from_thread, NULL);
    pthread_join(t, NULL);
    CU_ASSERT_TRUE(runstate_shutdown_requested());
    /* The main thread's own request loses to the first, and processes it now. */
    runstate_request_shutdown(SHUTDOWN_CAUSE_HOST_QMP_QUIT);
    CU_ASSERT_EQUAL(runstate_get(), RUN_STATE_SHUTDOWN);
    CU_ASSERT_EQUAL(runstate_shutdown_cause(), SHUTDOWN_CAUSE_GUEST_SHUTDOWN);
    aio_poll(aio_main_context(), false);
    CU_ASSERT_EQUAL(shutdowns, 1);
    CU_ASSERT_EQUAL(last_cause, SHUTDOWN_CAUSE_GUEST_SHUTDOWN);
    CU_ASSERT_STRING_EQUAL(changes, "running>shutdown");
    CU_ASSERT_EQUAL(runstate_cont(&err), -EBUSY);
    CU_ASSERT_STRING_EQUAL(err.msg, "Resetting the Virtual Machine is required");
    runstate_stop(RUN_STATE_PAUSED);
    CU_ASSERT_EQUAL(runstate_get(), RUN_STATE_SHUTDOWN);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("runstate", setup, teardown);
    CU_add_test(s, "names", test_names);
    CU_add_test(s, "stop_cont", test_stop_cont);
    CU_add_test(s, "prelaunch", test_prelaunch);
    CU_add_test(s, "stop_from_thread", test_stop_from_thread);
    CU_add_test(s, "shutdown", test_shutdown);
}
