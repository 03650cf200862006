/*
 * QMP events:
 *
 *   {"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}
 *
 * sent to every client past capabilities negotiation ("data" is left out
 * when an event has none, as QEMU does for STOP and RESUME).  The
 * timestamp is the wall clock when the event was emitted.
 *
 * mon_event_emit may be called from any thread: an I/O error is reported
 * on the thread of the failed request, a job's progress on its iothread.
 * Events from other threads are queued and delivered on the main thread,
 * in the order they were emitted; an event emitted on the main thread
 * first delivers what is queued, so BLOCK_IO_ERROR goes out before the
 * STOP it causes.
 *
 * The events of block jobs, in QEMU's shapes, for the job module (which
 * sits in monitor/ as the QMP face of blockjobs/, hears the job core
 * through a listener the core offers, and calls these):
 *
 *   mon_event_job_status_change(id, "running");
 *   mon_event_block_job_ready(&(struct mon_job_progress){ "mirror", id, len, off, speed });
 *   mon_event_block_job_completed(&p, NULL or the error sentence);
 */
#ifndef SPINDLE_MONITOR_EVENT_H
#define SPINDLE_MONITOR_EVENT_H

#include <jansson.h>

#include "util/osdep.h"

/* Emit an event now; data (may be NULL: none) is stolen.  Any thread. */
void mon_event_emit(const char *name, json_t *data);

/* The event object for name/data at a wall-clock time (data stolen). */
json_t *mon_event_build(const char *name, json_t *data, int64_t realtime_ns);

/*
 * Where delivered events go: the server sends them to its clients.  The
 * sink runs on the main thread with a borrowed event object.  One sink;
 * NULL drops events.
 */
typedef void mon_event_sink_fn(json_t *event, void *opaque);
void mon_event_set_sink(mon_event_sink_fn *fn, void *opaque);

/* Start (main thread, once) and stop the cross-thread delivery. */
void mon_event_init(void);
void mon_event_cleanup(void);

/* ---- Block jobs (QEMU's JOB_STATUS_CHANGE and BLOCK_JOB_*) -------------- */

/* What BLOCK_JOB_COMPLETED, _CANCELLED and _READY report. */
struct mon_job_progress {
    const char *type;      /* JobType: "commit", "stream", "mirror", "backup", "create" */
    const char *device;    /* the job's id (QEMU's "device" for block jobs) */
    int64_t len;           /* total-progress */
    int64_t offset;        /* current-progress */
    int64_t speed;         /* bytes per second, 0: unlimited */
};

/* status: JobStatus ("created", "running", "paused", "ready", "standby",
 * "waiting", "pending", "aborting", "concluded", "null"). */
void mon_event_job_status_change(const char *id, const char *status);
/* error: NULL on success, else the sentence for "error". */
void mon_event_block_job_completed(const struct mon_job_progress *p, const char *error);
void mon_event_block_job_cancelled(const struct mon_job_progress *p);
void mon_event_block_job_ready(const struct mon_job_progress *p);
void mon_event_block_job_pending(const char *type, const char *id);
/* action: "ignore", "report" or "stop". */
void mon_event_block_job_error(const char *id, bool is_read, const char *action);

/* ---- The block layer ----------------------------------------------------- */

/*
 * BLOCK_IO_ERROR: device (the backend's name, "" if anonymous), node-name,
 * operation, action, nospace, reason.  Installed as the block layer's error
 * listener by mon_init; an action of "stop" also stops the VM (io-error).
 */
struct block_backend;
void mon_event_block_io_error(struct block_backend *blk, const char *action, bool is_read,
                              int error);

#endif
