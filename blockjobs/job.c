/* The job core: states, verbs, pauses, speed, finalization; see job.h. */
#include "blockjobs/job.h"

#include <stdio.h>

#include "util/log.h"

static struct list_node jobs = LIST_HEAD_INIT(jobs);
static struct job_listener listener;

static const char *const status_names[JOB_STATUS__MAX] = {
    "undefined", "created", "running", "paused", "ready", "standby",
    "waiting", "pending", "aborting", "concluded", "null",
};

static const char *const verb_names[JOB_VERB__MAX] = {
    "cancel", "pause", "resume", "set-speed", "complete", "finalize", "dismiss",
};

/* transitions[from][to]: QEMU's job state machine. */
static const bool transitions[JOB_STATUS__MAX][JOB_STATUS__MAX] = {
    /*                          U  C  R  P  Y  S  W  D  X  E  N */
    [JOB_STATUS_UNDEFINED] = { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
    [JOB_STATUS_CREATED]   = { 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1 },
    [JOB_STATUS_RUNNING]   = { 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0 },
    [JOB_STATUS_PAUSED]    = { 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 },
    [JOB_STATUS_READY]     = { 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0 },
    [JOB_STATUS_STANDBY]   = { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
    [JOB_STATUS_WAITING]   = { 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0 },
    [JOB_STATUS_PENDING]   = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
    [JOB_STATUS_ABORTING]  = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
    [JOB_STATUS_CONCLUDED] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 },
    [JOB_STATUS_NULL]      = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
};

/* verbs[verb][status]: which commands a job accepts in which state. */
static const bool verbs[JOB_VERB__MAX][JOB_STATUS__MAX] = {
    /*                          U  C  R  P  Y  S  W  D  X  E  N */
    [JOB_VERB_CANCEL]      = { 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 },
    [JOB_VERB_PAUSE]       = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_RESUME]      = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_SET_SPEED]   = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_COMPLETE]    = { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
    [JOB_VERB_FINALIZE]    = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
    [JOB_VERB_DISMISS]     = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 },
};

const char *job_status_name(enum job_status s)
{
    return (unsigned)s < JOB_STATUS__MAX ? status_names[s] : "undefined";
}

const char *job_verb_name(enum job_verb v)
{
    return (unsigned)v < JOB_VERB__MAX ? verb_names[v] : "?";
}

int job_error_policy_parse(const char *s, enum job_error_policy *out)
{
    static const char *const names[] = { "report", "ignore", "enospc", "stop" };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!strcmp(s, names[i])) {
            *out = (enum job_error_policy)i;
            return 0;
        }
    }
    return -EINVAL;
}

void job_set_listener(const struct job_listener *l)
{
    listener = *l;
}

static void job_state_transition(struct job *job, enum job_status to)
{
    enum job_status from = job->status;
    if (!transitions[from][to]) {
        /* A bug in a driver or here, never the user's doing: log, do not crash. */
        log_error("job '%s': illegal transition %s -> %s", job->id, job_status_name(from),
                  job_status_name(to));
    }
    job->status = to;
    trace("job_status", "%s: %s -> %s", job->id, job_status_name(from), job_status_name(to));
    if (from != to && listener.status_change) {
        listener.status_change(job);
    }
}

static int job_apply_verb(struct job *job, enum job_verb verb, struct err *err)
{
    if (verbs[verb][job->status]) {
        return 0;
    }
    err_set(err, "Job '%s' in state '%s' cannot accept command verb '%s'", job->id,
            job_status_name(job->status), job_verb_name(verb));
    return -EPERM;
}

/* ---- Lifetime ---------------------------------------------------------- */

struct job *job_find(const char *id)
{
    struct job *job;
    list_for_each(job, &jobs, link) {
        if (!strcmp(job->id, id)) {
            return job;
        }
    }
    return NULL;
}

int job_foreach(int (*fn)(struct job *job, void *opaque), void *opaque)
{
    struct job *job, *tmp;
    list_for_each_safe(job, tmp, &jobs, link) {
        int ret = fn(job, opaque);
        if (ret) {
            return ret;
        }
    }
    return 0;
}

static void sleep_timer_cb(void *opaque)
{
    job_enter(opaque);
}

struct job *job_create(const struct job_driver *driver, const char *id, bool auto_finalize,
                       bool auto_dismiss, struct err *err)
{
    if (!id || !*id) {
        err_set(err, "A job needs an id");
        return NULL;
    }
    if (job_find(id)) {
        err_set(err, "Job ID '%s' already in use", id);
        return NULL;
    }
    struct job *job = xzalloc(MAX(driver->instance_size, sizeof(struct job)));
    job->driver = driver;
    job->id = xstrdup(id);
    job->refcnt = 1;
    job->auto_finalize = auto_finalize;
    job->auto_dismiss = auto_dismiss;
    job->busy = false;
    aio_timer_init(&job->sleep_timer, aio_main_context(), sleep_timer_cb, job);
    list_add_tail(&jobs, &job->link);
    job_state_transition(job, JOB_STATUS_CREATED);
    return job;
}

void job_ref(struct job *job)
{
    job->refcnt++;
}

void job_unref(struct job *job)
{
    if (--job->refcnt > 0) {
        return;
    }
    aio_timer_del(&job->sleep_timer);
    if (job->driver->free) {
        job->driver->free(job);
    }
    free(job->error);
    free(job->id);
    free(job);
}

static void job_remove(struct job *job)
{
    job_state_transition(job, JOB_STATUS_NULL);
    list_del(&job->link);
    job_unref(job);
}

/* ---- Finalization ------------------------------------------------------ */

static void job_conclude(struct job *job)
{
    job_state_transition(job, JOB_STATUS_CONCLUDED);
    if (job->cancelled && job->ret == -ECANCELED) {
        if (listener.cancelled) {
            listener.cancelled(job);
        }
    } else if (listener.completed) {
        listener.completed(job);
    }
    if (job->auto_dismiss) {
        job_remove(job);
    }
}

static void job_set_error(struct job *job, int ret, const struct err *err)
{
    if (job->error || ret >= 0) {
        return;
    }
    job->error = xstrdup(err_isset(err) ? err->msg : strerror(-ret));
}

/* prepare, then commit or abort, then clean; the job concludes. */
static void job_finalize_now(struct job *job)
{
    struct err err = { 0 };
    if (job->ret == 0 && job->driver->prepare) {
        int ret = job->driver->prepare(job, &err);
        if (ret < 0) {
            job->ret = ret;
            job_set_error(job, ret, &err);
        }
    }
    if (job->ret == 0) {
        if (job->driver->commit) {
            job->driver->commit(job);
        }
    } else {
        if (job->status != JOB_STATUS_ABORTING) {
            job_state_transition(job, JOB_STATUS_ABORTING);
        }
        if (job->driver->abort) {
            job->driver->abort(job);
        }
    }
    if (job->driver->clean) {
        job->driver->clean(job);
    }
    job_conclude(job);
}

/* run() returned: wait, go pending, and finalize (now, or on job-finalize). */
static void job_completed_bh(void *opaque)
{
    struct job *job = opaque;
    if (job->ret == 0 && job->cancelled) {
        job->ret = -ECANCELED;
    }
    if (job->ret < 0) {
        job_state_transition(job, JOB_STATUS_ABORTING);
        job_finalize_now(job);
    } else {
        job_state_transition(job, JOB_STATUS_WAITING);
        job_state_transition(job, JOB_STATUS_PENDING);
        if (listener.pending) {
            listener.pending(job);
        }
        if (job->auto_finalize) {
            job_finalize_now(job);
        }
    }
    job_unref(job);
}

static void job_co_entry(void *opaque)
{
    struct job *job = opaque;
    struct err err = { 0 };

    job->busy = true;
    int ret = job->driver->run(job, &err);
    job->ret = ret;
    job_set_error(job, ret, &err);
    job->busy = false;
    job->deferred = true;
    job->co = NULL;
    /* Graph changes happen outside the job's coroutine, from the loop. */
    aio_bh_schedule_oneshot(aio_main_context(), job_completed_bh, job);
}

void job_start(struct job *job)
{
    job_ref(job);              /* held until finalization has run */
    job->co = co_create(job_co_entry, job);
    job_state_transition(job, JOB_STATUS_RUNNING);
    co_enter(job->co);
}

/* ---- Pausing, sleeping, waking ----------------------------------------- */

void job_enter(struct job *job)
{
    aio_timer_del(&job->sleep_timer);
    if (job->co && !job->busy && !job->deferred) {
        job->busy = true;
        co_wake(job->co);
    }
}

bool coroutine_fn job_pause_point(struct job *job)
{
    if (job->pause_count > 0 && !job->cancelled) {
        enum job_status back = job->status;
        job_state_transition(job, back == JOB_STATUS_READY ? JOB_STATUS_STANDBY
                                                           : JOB_STATUS_PAUSED);
        job->paused = true;
        while (job->pause_count > 0 && !job->cancelled) {
            job->busy = false;
            co_yield();
        }
        job->paused = false;
        job_state_transition(job, back);
    }
    return job->cancelled;
}

void coroutine_fn job_sleep_ns(struct job *job, int64_t ns)
{
    if (!job->cancelled && job->pause_count == 0) {
        aio_timer_mod(&job->sleep_timer, clock_ns() + ns);
        job->busy = false;
        co_yield();
        aio_timer_del(&job->sleep_timer);
    }
    job_pause_point(job);
}

/*
 * The speed limit: every byte of work moves the earliest time the job may
 * go on by 1/speed seconds.  A job that fell behind gets no credit to burst
 * with, so the rate holds over any window.
 */
void coroutine_fn job_throttle(struct job *job, uint64_t bytes)
{
    if (!job->speed) {
        job_pause_point(job);
        return;
    }
    int64_t now = clock_ns();
    if (job->next_ok_ns < now) {
        job->next_ok_ns = now;
    }
    job->next_ok_ns += (int64_t)((double)bytes * 1e9 / (double)job->speed);
    job_sleep_ns(job, job->next_ok_ns - now);
}

void job_pause(struct job *job)
{
    job->pause_count++;
}

void job_resume(struct job *job)
{
    if (job->pause_count > 0 && --job->pause_count == 0 && job->paused) {
        job_enter(job);
    }
}

/* ---- Verbs ------------------------------------------------------------- */

int job_user_pause(struct job *job, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_PAUSE, err);
    if (ret < 0) {
        return ret;
    }
    if (job->user_paused) {
        err_set(err, "Job '%s' is already paused", job->id);
        return -EBUSY;
    }
    job->user_paused = true;
    job_pause(job);
    return 0;
}

int job_user_resume(struct job *job, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_RESUME, err);
    if (ret < 0) {
        return ret;
    }
    if (!job->user_paused) {
        err_set(err, "Can't resume a job that was not paused");
        return -EINVAL;
    }
    job->user_paused = false;
    job_resume(job);
    return 0;
}

int job_user_cancel(struct job *job, bool force, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_CANCEL, err);
    if (ret < 0) {
        return ret;
    }
    if (job->status == JOB_STATUS_CREATED) {
        /* Never started: conclude now. */
        job->cancelled = true;
        job->ret = -ECANCELED;
        job_state_transition(job, JOB_STATUS_ABORTING);
        job_finalize_now(job);
        return 0;
    }
    if (job->status == JOB_STATUS_PENDING) {
        job->cancelled = true;
        job->ret = -ECANCELED;
        job_finalize_now(job);
        return 0;
    }
    if (!(job->driver->cancel && job->driver->cancel(job, force))) {
        job->cancelled = true;
        job->force_cancel |= force;
    }
    if (job->user_paused) {
        job->user_paused = false;
        job->pause_count--;
    }
    job_enter(job);
    return 0;
}

int job_complete(struct job *job, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_COMPLETE, err);
    if (ret < 0) {
        return ret;
    }
    if (job->cancelled || !job->driver->complete) {
        err_set(err, "The active block job '%s' cannot be completed", job->id);
        return -EINVAL;
    }
    job->driver->complete(job, err);
    if (err_isset(err)) {
        return -EINVAL;
    }
    job_enter(job);
    return 0;
}

int job_finalize(struct job *job, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_FINALIZE, err);
    if (ret < 0) {
        return ret;
    }
    job_finalize_now(job);
    return 0;
}

int job_dismiss(struct job *job, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_DISMISS, err);
    if (ret < 0) {
        return ret;
    }
    job_remove(job);
    return 0;
}

int job_set_speed(struct job *job, int64_t speed, struct err *err)
{
    int ret = job_apply_verb(job, JOB_VERB_SET_SPEED, err);
    if (ret < 0) {
        return ret;
    }
    if (speed < 0) {
        err_set(err, "Parameter 'speed' expects a non-negative value");
        return -EINVAL;
    }
    job->speed = (uint64_t)speed;
    job->next_ok_ns = 0;
    /* A job sleeping for the old limit re-evaluates now. */
    job_enter(job);
    return 0;
}

void job_cancel_sync_all(void)
{
    struct job *job, *tmp;
    list_for_each_safe(job, tmp, &jobs, link) {
        job_ref(job);
        if (job->status != JOB_STATUS_CONCLUDED) {
            job_user_cancel(job, true, NULL);
        }
        job->auto_dismiss = true;
        job_wait_concluded(job);
        if (job->status == JOB_STATUS_CONCLUDED) {
            job_remove(job);
        }
        job_unref(job);
    }
}

void job_wait_concluded(struct job *job)
{
    AIO_WAIT_WHILE(job->status != JOB_STATUS_CONCLUDED && job->status != JOB_STATUS_NULL &&
                   job->status != JOB_STATUS_PENDING);
}

/* ---- Progress and state ------------------------------------------------ */

bool job_is_cancelled(const struct job *job)
{
    return job->cancelled;
}

bool job_is_ready(const struct job *job)
{
    return job->status == JOB_STATUS_READY || job->status == JOB_STATUS_STANDBY;
}

void job_transition_to_ready(struct job *job)
{
    job_state_transition(job, JOB_STATUS_READY);
    if (listener.ready) {
        listener.ready(job);
    }
}

void job_progress_update(struct job *job, uint64_t done)
{
    job->progress_current += done;
}

void job_progress_set_remaining(struct job *job, uint64_t remaining)
{
    job->progress_total = job->progress_current + remaining;
}

void job_progress_increase_remaining(struct job *job, uint64_t delta)
{
    job->progress_total += delta;
}

enum blk_error_action job_error_action(struct job *job, bool is_read, int error)
{
    enum job_error_policy p = is_read ? job->on_source_error : job->on_target_error;
    int e = error < 0 ? -error : error;
    enum blk_error_action a = BLK_ERROR_ACTION_REPORT;

    if (p == JOB_ERROR_IGNORE) {
        a = BLK_ERROR_ACTION_IGNORE;
    } else if (p == JOB_ERROR_STOP || (p == JOB_ERROR_ENOSPC && e == ENOSPC)) {
        a = BLK_ERROR_ACTION_STOP;
    }
    if (listener.io_error) {
        listener.io_error(job, is_read, blk_error_action_name(a));
    }
    if (a == BLK_ERROR_ACTION_STOP) {
        /* Paused as if by the user: block-job-resume retries. */
        job->user_paused = true;
        job_pause(job);
    }
    return a;
}

json_t *job_query(struct job *job)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(job->id));
    json_object_set_new(o, "type", json_string(job->driver->type));
    json_object_set_new(o, "status", json_string(job_status_name(job->status)));
    json_object_set_new(o, "current-progress", json_integer((json_int_t)job->progress_current));
    json_object_set_new(o, "total-progress", json_integer((json_int_t)job->progress_total));
    if (job->error) {
        json_object_set_new(o, "error", json_string(job->error));
    }
    if (job->driver->query) {
        job->driver->query(job, o);
    }
    return o;
}
