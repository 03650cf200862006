/* query-status, stop, cont, quit and the run state's events; see qmp-runstate.h. */
#include "monitor/qmp-runstate.h"

#include "block/backend.h"
#include "monitor/command.h"
#include "monitor/event.h"
#include "util/log.h"
#include "util/runstate.h"

static json_t *qmp_query_status(struct mon_session *s, json_t *args, struct mon_err *err)
{
    enum run_state st = runstate_get();
    return json_pack("{s:s, s:b, s:b}", "status", run_state_name(st), "singlestep", 0,
                     "running", st == RUN_STATE_RUNNING);
}

static json_t *qmp_stop(struct mon_session *s, json_t *args, struct mon_err *err)
{
    runstate_stop(RUN_STATE_PAUSED);
    return json_object();
}

static int reset_iostatus(struct block_backend *blk, void *opaque)
{
    blk_iostatus_reset(blk);
    return 0;
}

static json_t *qmp_cont(struct mon_session *s, json_t *args, struct mon_err *err)
{
    blk_foreach(reset_iostatus, NULL);
    if (runstate_cont(&err->err) < 0) {
        return NULL;
    }
    return json_object();
}

static json_t *qmp_quit(struct mon_session *s, json_t *args, struct mon_err *err)
{
    runstate_request_shutdown(SHUTDOWN_CAUSE_HOST_QMP_QUIT);
    return json_object();
}

static const struct mon_cmd runstate_cmds[] = {
    { "query-status", qmp_query_status, NULL, 0 },
    { "stop", qmp_stop, NULL, 0 },
    { "cont", qmp_cont, NULL, 0 },
    { "quit", qmp_quit, NULL, 0 },
};

/* ---- Events ------------------------------------------------------------ */

static int flush_one(struct block_node *bs, void *opaque)
{
    int ret = bnode_flush(bs);
    if (ret < 0) {
        log_warn("%s: flush on stop failed: %s", bnode_describe(bs), strerror(-ret));
    }
    return 0;
}

static void runstate_changed(struct runstate_notifier *n, enum run_state old,
                             enum run_state new_state)
{
    switch (new_state) {
    case RUN_STATE_RUNNING:
        mon_event_emit("RESUME", NULL);
        /* Requests a `stop` error policy held (rerror/werror=stop) are retried now. */
        blk_resume_all_stopped();
        break;
    case RUN_STATE_SHUTDOWN: {
        enum shutdown_cause cause = runstate_shutdown_cause();
        mon_event_emit("SHUTDOWN", json_pack("{s:b, s:s}", "guest",
                                             shutdown_cause_is_guest(cause), "reason",
                                             shutdown_cause_name(cause)));
        break;
    }
    default:
        if (old == RUN_STATE_RUNNING) {
            mon_event_emit("STOP", NULL);
            bnode_drain_all_begin();
            bnode_drain_all_end();
            bnode_foreach(flush_one, NULL);
        }
        break;
    }
}

static struct runstate_notifier notifier = { .changed = runstate_changed };
static bool notifying;

void qmp_runstate_register(void)
{
    mon_cmd_register(runstate_cmds, ARRAY_SIZE(runstate_cmds));
    if (!notifying) {
        runstate_add_notifier(&notifier);
        notifying = true;
    }
}

void qmp_runstate_unregister(void)
{
    if (notifying) {
        runstate_remove_notifier(&notifier);
        notifying = false;
    }
}
