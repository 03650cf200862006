/* QMP events; see event.h. */
#include "monitor/event.h"

#include <pthread.h>

#include "block/backend.h"
#include "util/aio.h"
#include "util/list.h"
#include "util/log.h"

struct queued_event {
    struct list_node link;
    json_t *event;
};

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_node queue = LIST_HEAD_INIT(queue);   /* under queue_lock */
static struct aio_bh *deliver_bh;
static mon_event_sink_fn *sink;
static void *sink_opaque;

json_t *mon_event_build(const char *name, json_t *data, int64_t realtime_ns)
{
    json_t *ev = json_object();
    json_t *ts = json_object();
    if (realtime_ns < 0) {
        json_object_set_new(ts, "seconds", json_integer(-1));
        json_object_set_new(ts, "microseconds", json_integer(-1));
    } else {
        json_object_set_new(ts, "seconds", json_integer(realtime_ns / 1000000000));
        json_object_set_new(ts, "microseconds", json_integer(realtime_ns % 1000000000 / 1000));
    }
    json_object_set_new(ev, "timestamp", ts);
    json_object_set_new(ev, "event", json_string(name));
    if (data) {
        json_object_set_new(ev, "data", data);
    }
    return ev;
}

void mon_event_set_sink(mon_event_sink_fn *fn, void *opaque)
{
    sink = fn;
    sink_opaque = opaque;
}

static void deliver(json_t *ev)
{
    trace("qmp_event", "%s", json_string_value(json_object_get(ev, "event")));
    if (sink) {
        sink(ev, sink_opaque);
    }
    json_decref(ev);
}

/* Deliver everything queued by other threads, oldest first.  Main thread. */
static void deliver_queued(void *opaque)
{
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        struct queued_event *q = list_first(&queue, struct queued_event, link);
        if (q) {
            list_del(&q->link);
        }
        pthread_mutex_unlock(&queue_lock);
        if (!q) {
            return;
        }
        deliver(q->event);
        free(q);
    }
}

void mon_event_init(void)
{
    if (!deliver_bh) {
        deliver_bh = aio_bh_new(aio_main_context(), deliver_queued, NULL);
    }
}

void mon_event_cleanup(void)
{
    if (deliver_bh) {
        deliver_queued(NULL);
        aio_bh_delete(deliver_bh);
        deliver_bh = NULL;
    }
    sink = NULL;
}

void mon_event_emit(const char *name, json_t *data)
{
    json_t *ev = mon_event_build(name, data, clock_realtime_ns());

    if (!deliver_bh && !aio_in_main_thread()) {
        json_decref(ev);         /* no monitor started: nobody to tell */
        return;
    }
    if (aio_in_main_thread()) {
        deliver_queued(NULL);
        deliver(ev);
        return;
    }
    struct queued_event *q = xzalloc(sizeof(*q));
    q->event = ev;
    pthread_mutex_lock(&queue_lock);
    list_add_tail(&queue, &q->link);
    pthread_mutex_unlock(&queue_lock);
    aio_bh_schedule(deliver_bh);
}

/* ---- Block jobs ---------------------------------------------------------- */

void mon_event_job_status_change(const char *id, const char *status)
{
    mon_event_emit("JOB_STATUS_CHANGE", json_pack("{s:s, s:s}", "id", id, "status", status));
}

static json_t *progress_data(const struct mon_job_progress *p)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I}", "type", p->type, "device", p->device,
                     "len", (json_int_t)p->len, "offset", (json_int_t)p->offset,
                     "speed", (json_int_t)p->speed);
}

void mon_event_block_job_completed(const struct mon_job_progress *p, const char *error)
{
    json_t *data = progress_data(p);
    if (error) {
        json_object_set_new(data, "error", json_string(error));
    }
    mon_event_emit("BLOCK_JOB_COMPLETED", data);
}

void mon_event_block_job_cancelled(const struct mon_job_progress *p)
{
    mon_event_emit("BLOCK_JOB_CANCELLED", progress_data(p));
}

void mon_event_block_job_ready(const struct mon_job_progress *p)
{
    mon_event_emit("BLOCK_JOB_READY", progress_data(p));
}

void mon_event_block_job_pending(const char *type, const char *id)
{
    mon_event_emit("BLOCK_JOB_PENDING", json_pack("{s:s, s:s}", "type", type, "id", id));
}

void mon_event_block_job_error(const char *id, bool is_read, const char *action)
{
    mon_event_emit("BLOCK_JOB_ERROR", json_pack("{s:s, s:s, s:s}", "device", id, "operation",
                                                is_read ? "read" : "write", "action", action));
}

/* ---- The block layer ----------------------------------------------------- */

void mon_event_block_io_error(struct block_backend *blk, const char *action, bool is_read,
                              int error)
{
    struct block_node *bs = blk_node(blk);
    int e = error < 0 ? -error : error;
    json_t *data = json_object();

    json_object_set_new(data, "device", json_string(blk_name(blk)));
    if (bs) {
        json_object_set_new(data, "node-name", json_string(bs->node_name));
    }
    json_object_set_new(data, "operation", json_string(is_read ? "read" : "write"));
    json_object_set_new(data, "action", json_string(action));
    json_object_set_new(data, "nospace", json_boolean(e == ENOSPC));
    json_object_set_new(data, "reason", json_string(strerror(e)));
    mon_event_emit("BLOCK_IO_ERROR", data);
}
