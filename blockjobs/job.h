/*
 * Jobs: long-running operations driven from the monitor, with QEMU's state
 * machine, verbs and events, so QMP clients written for QEMU work.
 *
 *   created -> running -> (ready <-> standby) -> waiting -> pending -> concluded -> null
 *                 \-> paused -/                     \-> aborting -/
 *
 * A job is a coroutine on the main loop running driver->run().  It calls
 * job_pause_point() between chunks of work (where pauses and drained
 * sections take effect), job_sleep_ns() to honour its speed limit, and
 * job_transition_to_ready() once it has converged (mirror).  When run()
 * returns, the job waits (transactions later), goes pending, and is
 * finalized (prepare, then commit or abort, then clean) automatically or by
 * job-finalize; it concludes, and is dismissed automatically or by
 * job-dismiss.  Everything here runs on the main thread.
 *
 * Events go to a listener (the monitor sets one): JOB_STATUS_CHANGE on every
 * transition, and the BLOCK_JOB_* ones.
 */
#ifndef SPINDLE_BLOCKJOBS_JOB_H
#define SPINDLE_BLOCKJOBS_JOB_H

#include "block/backend.h"
#include "util/aio.h"
#include "util/coroutine.h"

enum job_status {
    JOB_STATUS_UNDEFINED,
    JOB_STATUS_CREATED,
    JOB_STATUS_RUNNING,
    JOB_STATUS_PAUSED,
    JOB_STATUS_READY,
    JOB_STATUS_STANDBY,
    JOB_STATUS_WAITING,
    JOB_STATUS_PENDING,
    JOB_STATUS_ABORTING,
    JOB_STATUS_CONCLUDED,
    JOB_STATUS_NULL,
    JOB_STATUS__MAX,
};

enum job_verb {
    JOB_VERB_CANCEL,
    JOB_VERB_PAUSE,
    JOB_VERB_RESUME,
    JOB_VERB_SET_SPEED,
    JOB_VERB_COMPLETE,
    JOB_VERB_FINALIZE,
    JOB_VERB_DISMISS,
    JOB_VERB__MAX,
};

/* on-source-error / on-target-error. */
enum job_error_policy {
    JOB_ERROR_REPORT,
    JOB_ERROR_IGNORE,
    JOB_ERROR_ENOSPC,
    JOB_ERROR_STOP,
};

struct job;

struct job_driver {
    const char *type;                 /* "mirror", "commit", "stream", "backup" */
    size_t instance_size;             /* the driver's struct, starting with struct job */

    /* Required.  The work; 0 or -errno.  A cancelled job should return soon. */
    int coroutine_fn (*run)(struct job *job, struct err *err);
    /* job-complete in the ready state (mirror's switch over).  Optional. */
    void (*complete)(struct job *job, struct err *err);
    /*
     * cancel: return true if the job handles it itself without failing
     * (mirror after READY without force: finish as a consistent copy).
     * Optional.
     */
    bool (*cancel)(struct job *job, bool force);
    /* Finalizing: prepare may fail (then abort runs); commit or abort, then clean. */
    int (*prepare)(struct job *job, struct err *err);
    void (*commit)(struct job *job);
    void (*abort)(struct job *job);
    void (*clean)(struct job *job);
    /* Free the driver's own state.  Optional. */
    void (*free)(struct job *job);
    /* query-jobs / query-block-jobs extras (mirror's copy mode).  Optional. */
    void (*query)(struct job *job, json_t *info);
};

struct job {
    const struct job_driver *driver;
    char *id;
    enum job_status status;
    struct coroutine *co;
    int refcnt;
    bool auto_finalize, auto_dismiss;

    int pause_count;                  /* > 0: pause at the next pause point */
    bool user_paused;
    bool paused;                      /* parked in a pause point */
    bool busy;                        /* false while sleeping or paused */
    bool cancelled, force_cancel;
    bool deferred;                    /* run() returned; finalization pending */
    int ret;
    char *error;                      /* the failure's sentence */

    uint64_t progress_current, progress_total;
    uint64_t speed;                   /* bytes/s, 0: unlimited */
    int64_t next_ok_ns;               /* the speed limit lets us go on from then */
    struct aio_timer sleep_timer;

    enum job_error_policy on_source_error, on_target_error;
    struct list_node link;
};

/* What hears about jobs (the monitor); all optional. */
struct job_listener {
    void (*status_change)(struct job *job);
    void (*ready)(struct job *job);
    void (*pending)(struct job *job);
    void (*completed)(struct job *job);     /* BLOCK_JOB_COMPLETED (error in job->error) */
    void (*cancelled)(struct job *job);     /* BLOCK_JOB_CANCELLED */
    void (*io_error)(struct job *job, bool is_read, const char *action);
};

void job_set_listener(const struct job_listener *l);

const char *job_status_name(enum job_status s);
const char *job_verb_name(enum job_verb v);
int job_error_policy_parse(const char *s, enum job_error_policy *out);

/*
 * A job in the created state (ids are unique among jobs).  flags:
 * auto_finalize/auto_dismiss as given.  Returns the job (with one
 * reference held by the job list) or NULL with err.
 */
struct job *job_create(const struct job_driver *driver, const char *id, bool auto_finalize,
                       bool auto_dismiss, struct err *err);
/* Start running it. */
void job_start(struct job *job);

struct job *job_find(const char *id);
/* Every job, in creation order; fn returns non-zero to stop. */
int job_foreach(int (*fn)(struct job *job, void *opaque), void *opaque);

void job_ref(struct job *job);
void job_unref(struct job *job);

/* ---- Verbs (main thread; err says why a verb is not allowed now) ------- */

int job_user_pause(struct job *job, struct err *err);
int job_user_resume(struct job *job, struct err *err);
int job_user_cancel(struct job *job, bool force, struct err *err);
int job_complete(struct job *job, struct err *err);
int job_finalize(struct job *job, struct err *err);
int job_dismiss(struct job *job, struct err *err);
int job_set_speed(struct job *job, int64_t speed, struct err *err);

/* Internal pauses, for drained sections: nest and need no user action. */
void job_pause(struct job *job);
void job_resume(struct job *job);

/* Cancel every job and wait until all are gone (program exit). */
void job_cancel_sync_all(void);
/* Run the loop until the job concludes (tests, tools). */
void job_wait_concluded(struct job *job);

/* ---- For job drivers (in the job's coroutine) ------------------------- */

/* Park here while paused; returns whether the job was cancelled. */
bool coroutine_fn job_pause_point(struct job *job);
/* Sleep ns (wakes early on cancel, pause, complete); then a pause point. */
void coroutine_fn job_sleep_ns(struct job *job, int64_t ns);
/* Account bytes against the speed limit and sleep as long as it says. */
void coroutine_fn job_throttle(struct job *job, uint64_t bytes);
/* Wake a sleeping job (from any code on the main thread). */
void job_enter(struct job *job);

bool job_is_cancelled(const struct job *job);
bool job_is_ready(const struct job *job);
void job_transition_to_ready(struct job *job);
void job_progress_update(struct job *job, uint64_t done);
void job_progress_set_remaining(struct job *job, uint64_t remaining);
void job_progress_increase_remaining(struct job *job, uint64_t delta);

/*
 * An I/O error inside a job: what its policy says to do.  REPORT: fail the
 * job (return the error); IGNORE: go on; STOP: the job pauses (status
 * paused) until the user resumes it, then the caller retries.  Emits
 * BLOCK_JOB_ERROR.
 */
enum blk_error_action job_error_action(struct job *job, bool is_read, int error);

/* The job's entry for query-jobs. */
json_t *job_query(struct job *job);

#endif
