/* query-iothreads; see qmp-misc.h. */
#include "monitor/qmp-misc.h"

#include "monitor/command.h"
#include "util/iothread.h"

static void add_iothread(struct iothread *t, void *opaque)
{
    const struct iothread_opts *o = iothread_get_opts(t);
    int64_t max_ns = o->poll_max_ns < 0 ? IOTHREAD_POLL_MAX_NS_DEFAULT : o->poll_max_ns;
    json_array_append_new(opaque, json_pack("{s:s, s:i, s:I, s:I, s:I, s:i}",
                                            "id", iothread_id(t),
                                            "thread-id", iothread_tid(t),
                                            "poll-max-ns", (json_int_t)max_ns,
                                            "poll-grow", (json_int_t)o->poll_grow,
                                            "poll-shrink", (json_int_t)o->poll_shrink,
                                            "aio-max-batch", 0));
}

static json_t *qmp_query_iothreads(struct mon_session *s, json_t *args, struct mon_err *err)
{
    json_t *list = json_array();
    iothread_foreach(add_iothread, list);
    return list;
}

static const struct mon_cmd misc_cmds[] = {
    { "query-iothreads", qmp_query_iothreads, NULL, 0 },
};

void qmp_misc_register(void)
{
    mon_cmd_register(misc_cmds, ARRAY_SIZE(misc_cmds));
}
