/*
 * The job core with a test driver that counts to a target, pausing and
 * sleeping as real jobs do: states and events in order, pause/resume
 * (user and internal), cancel in each state, verbs refused where QEMU
 * refuses them, manual finalize/dismiss, errors, and the speed limit.
 */
#include "tests/unit/harness.h"

#include "blockjobs/job.h"

struct counter {
    struct job job;
    int target, count;
    bool become_ready;
    bool completed;
    int fail_at;
    int chunk;               /* bytes accounted per step, for the speed limit */
    int prepared, committed, aborted, cleaned;
};

static char events[2048];

static void add_event(const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(events);
    snprintf(events + n, sizeof(events) - n, fmt, a, b);
}

static void on_status(struct job *job)
{
    add_event("%s:%s ", job->id, job_status_name(job->status));
}

static void on_completed(struct job *job)
{
    add_event("COMPLETED(%s%s) ", job->error ? job->error : "ok", "");
}

static void on_cancelled(struct job *job)
{
    add_event("CANCELLED%s%s ", "", "");
}

static void on_ready(struct job *job)
{
    add_event("READY%s%s ", "", "");
}

static const struct job_listener test_listener = {
    .status_change = on_status,
    .completed = on_completed,
    .cancelled = on_cancelled,
    .ready = on_ready,
};

static int coroutine_fn counter_run(struct job *job, struct err *err)
{
    struct counter *c = (struct counter *)job;
    job_progress_set_remaining(job, (uint64_t)c->target);
    while (c->count < c->target || (c->become_ready && !c->completed)) {
        if (job_is_cancelled(job)) {
            return -ECANCELED;
        }
        if (c->count < c->target) {
            c->count++;
            job_progress_update(job, 1);
            if (c->count == c->fail_at) {
                err_set(err, "counter: failed at %d", c->count);
                return -EIO;
            }
        } else if (!job_is_ready(job)) {
            job_transition_to_ready(job);
        }
        if (c->chunk) {
            job_throttle(job, (uint64_t)c->chunk);
        } else {
            job_sleep_ns(job, 100000);
        }
    }
    return 0;
}

static void counter_complete(struct job *job, struct err *err)
{
    ((struct counter *)job)->completed = true;
}

static int counter_prepare(struct job *job, struct err *err)
{
    ((struct counter *)job)->prepared++;
    return 0;
}

static void counter_commit(struct job *job)
{
    ((struct counter *)job)->committed++;
}

static void counter_abort(struct job *job)
{
    ((struct counter *)job)->aborted++;
}

static void counter_clean(struct job *job)
{
    ((struct counter *)job)->cleaned++;
}

static const struct job_driver counter_driver = {
    .type = "counter",
    .instance_size = sizeof(struct counter),
    .run = counter_run,
    .complete = counter_complete,
    .prepare = counter_prepare,
    .commit = counter_commit,
    .abort = counter_abort,
    .clean = counter_clean,
};

static struct counter *new_counter(const char *id, int target, bool auto_finalize,
                                   bool auto_dismiss)
{
    struct err err = { 0 };
    struct counter *c = (struct counter *)job_create(&counter_driver, id, auto_finalize,
                                                     auto_dismiss, &err);
    if (c) {
        c->target = target;
        job_ref(&c->job);     /* the test keeps its own reference */
    }
    return c;
}

static void run_until(struct job *job, enum job_status status)
{
    int64_t deadline = clock_ns() + 5000000000LL;
    while (job->status != status && clock_ns() < deadline) {
        aio_poll(aio_main_context(), true);
    }
}

static void test_run_to_completion(void)
{
    events[0] = '\0';
    struct counter *c = new_counter("j1", 20, true, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    job_start(&c->job);
    run_until(&c->job, JOB_STATUS_NULL);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_NULL);
    CU_ASSERT_EQUAL(c->count, 20);
    CU_ASSERT_EQUAL(c->job.progress_current, 20);
    CU_ASSERT_EQUAL(c->job.progress_total, 20);
    CU_ASSERT_EQUAL(c->prepared, 1);
    CU_ASSERT_EQUAL(c->committed, 1);
    CU_ASSERT_EQUAL(c->aborted, 0);
    CU_ASSERT_EQUAL(c->cleaned, 1);
    CU_ASSERT_STRING_EQUAL(events, "j1:created j1:running j1:waiting j1:pending "
                                   "j1:concluded COMPLETED(ok) j1:null ");
    CU_ASSERT_PTR_NULL(job_find("j1"));
    job_unref(&c->job);
}

static void test_pause_resume_and_verbs(void)
{
    struct err err = { 0 };
    struct counter *c = new_counter("j2", 1000000, true, true);
    job_start(&c->job);
    CU_ASSERT_EQUAL(job_user_pause(&c->job, &err), 0);
    run_until(&c->job, JOB_STATUS_PAUSED);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_PAUSED);
    int at = c->count;
    for (int i = 0; i < 20; i++) {
        aio_poll(aio_main_context(), false);
    }
    CU_ASSERT_EQUAL(c->count, at);      /* really paused */
    CU_ASSERT(job_user_pause(&c->job, &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "Job 'j2' is already paused");
    err_clear(&err);
    CU_ASSERT(job_complete(&c->job, &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "Job 'j2' in state 'paused' cannot accept command verb "
                                    "'complete'");
    err_clear(&err);
    CU_ASSERT(job_dismiss(&c->job, &err) < 0);
    err_clear(&err);
    CU_ASSERT_EQUAL(job_user_resume(&c->job, &err), 0);
    run_until(&c->job, JOB_STATUS_RUNNING);
    CU_ASSERT(job_user_resume(&c->job, &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "Can't resume a job that was not paused");
    /* Cancel while running. */
    events[0] = '\0';
    CU_ASSERT_EQUAL(job_user_cancel(&c->job, false, &err), 0);
    run_until(&c->job, JOB_STATUS_NULL);
    CU_ASSERT_EQUAL(c->aborted, 1);
    CU_ASSERT_EQUAL(c->committed, 0);
    CU_ASSERT(strstr(events, "j2:aborting j2:concluded CANCELLED j2:null") != NULL);
    job_unref(&c->job);
}

static void test_cancel_paused_job(void)
{
    struct err err = { 0 };
    struct counter *c = new_counter("j3", 1000000, true, true);
    job_start(&c->job);
    job_user_pause(&c->job, &err);
    run_until(&c->job, JOB_STATUS_PAUSED);
    CU_ASSERT_EQUAL(job_user_cancel(&c->job, false, &err), 0);
    run_until(&c->job, JOB_STATUS_NULL);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_NULL);
    job_unref(&c->job);
}

static void test_ready_complete_manual_finalize(void)
{
    struct err err = { 0 };
    events[0] = '\0';
    struct counter *c = new_counter("j4", 5, false, false);
    c->become_ready = true;
    job_start(&c->job);
    run_until(&c->job, JOB_STATUS_READY);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_READY);
    /* Pausing a ready job is standby. */
    job_user_pause(&c->job, &err);
    run_until(&c->job, JOB_STATUS_STANDBY);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_STANDBY);
    job_user_resume(&c->job, &err);
    run_until(&c->job, JOB_STATUS_READY);
    CU_ASSERT_EQUAL(job_complete(&c->job, &err), 0);
    run_until(&c->job, JOB_STATUS_PENDING);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_PENDING);
    CU_ASSERT_EQUAL(c->prepared, 0);     /* waits for job-finalize */
    CU_ASSERT_EQUAL(job_finalize(&c->job, &err), 0);
    CU_ASSERT_EQUAL(c->job.status, JOB_STATUS_CONCLUDED);
    CU_ASSERT_EQUAL(c->committed, 1);
    CU_ASSERT_PTR_NOT_NULL(job_find("j4"));   /* no auto-dismiss */
    CU_ASSERT_EQUAL(job_dismiss(&c->job, &err), 0);
    CU_ASSERT_PTR_NULL(job_find("j4"));
    CU_ASSERT(strstr(events, "READY j4:standby j4:ready j4:waiting j4:pending j4:concluded "
                             "COMPLETED(ok) j4:null") != NULL);
    job_unref(&c->job);
}

static void test_failure(void)
{
    events[0] = '\0';
    struct counter *c = new_counter("j5", 10, true, true);
    c->fail_at = 3;
    job_start(&c->job);
    run_until(&c->job, JOB_STATUS_NULL);
    CU_ASSERT_EQUAL(c->aborted, 1);
    CU_ASSERT_EQUAL(c->prepared, 0);
    CU_ASSERT(strstr(events, "j5:aborting j5:concluded COMPLETED(counter: failed at 3)") != NULL);
    job_unref(&c->job);
}

static void test_duplicate_id(void)
{
    struct err err = { 0 };
    struct counter *c = new_counter("j6", 1000000, true, true);
    CU_ASSERT_PTR_NULL(job_create(&counter_driver, "j6", true, true, &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Job ID 'j6' already in use");
    /* Cancelled before it ever started. */
    CU_ASSERT_EQUAL(job_user_cancel(&c->job, false, &err), 0);
    CU_ASSERT_PTR_NULL(job_find("j6"));
    job_unref(&c->job);
}

static void test_speed(void)
{
    struct err err = { 0 };
    struct counter *c = new_counter("j7", 30, true, true);
    c->chunk = 100 * 1024;
    CU_ASSERT(job_set_speed(&c->job, -1, &err) < 0);
    /* 30 chunks of 100 KiB at 10 MiB/s: about 0.29 s. */
    CU_ASSERT_EQUAL(job_set_speed(&c->job, 10 * MiB, &err), 0);
    int64_t start = clock_ns();
    job_start(&c->job);
    run_until(&c->job, JOB_STATUS_NULL);
    double secs = (clock_ns() - start) / 1e9;
    double want = 30.0 * 100 * 1024 / (10 * MiB);
    CU_ASSERT(secs > want * 0.85);
    CU_ASSERT(secs < want * 1.5 + 0.05);
    job_unref(&c->job);
}

void test_register(void)
{
    job_set_listener(&test_listener);
    CU_pSuite s = CU_add_suite("job", NULL, NULL);
    CU_add_test(s, "run_to_completion", test_run_to_completion);
    CU_add_test(s, "pause_resume_and_verbs", test_pause_resume_and_verbs);
    CU_add_test(s, "cancel_paused_job", test_cancel_paused_job);
    CU_add_test(s, "ready_complete_manual_finalize", test_ready_complete_manual_finalize);
    CU_add_test(s, "failure", test_failure);
    CU_add_test(s, "duplicate_id", test_duplicate_id);
    CU_add_test(s, "speed", test_speed);
}
