/*
 * QMP commands: the table, and the dispatch of one request to one reply.
 *
 * A command is data: its name, its argument schema (monitor/schema.h) and
 * a handler.  Modules register tables of them (mon_cmd_register) when the
 * monitor starts; the dispatcher does everything QMP asks of every command
 * — the request's shape, capabilities negotiation, the lookup, the
 * argument check — so a handler only sees arguments that passed its
 * schema.
 *
 * Handlers run on the main thread, one at a time (server.c dispatches
 * requests of all clients in turn and never two at once), outside
 * coroutine context.  They may run the main loop (drain, co_run_sync): the
 * server reads and queues other requests meanwhile, delivers events, and
 * copes with the requesting client going away.
 *
 * A handler returns the "return" value (a new reference; an empty object
 * when a command returns nothing) or NULL with err set.  The error class
 * is GenericError unless the handler picks another (mon_err_set).
 *
 * How a module adds commands (the block jobs will, in monitor/qmp-job.c):
 *
 *     static const struct mon_arg stream_args[] = {
 *         { .name = "job-id", .type = MON_T_STR, .optional = true },
 *         { .name = "device", .type = MON_T_STR },
 *         { .name = "speed", .type = MON_T_INT, .optional = true },
 *         { .name = NULL },
 *     };
 *     static json_t *qmp_block_stream(struct mon_session *s, json_t *args,
 *                                     struct mon_err *err) { ... }
 *     static const struct mon_cmd job_cmds[] = {
 *         { "block-stream", qmp_block_stream, stream_args, 0 },
 *         ...
 *     };
 *     void qmp_job_register(void)
 *     {
 *         mon_cmd_register(job_cmds, ARRAY_SIZE(job_cmds));
 *     }
 *
 * and one line calling qmp_job_register() in mon_init (monitor.c).
 */
#ifndef SPINDLE_MONITOR_COMMAND_H
#define SPINDLE_MONITOR_COMMAND_H

#include <jansson.h>

#include "monitor/schema.h"
#include "util/error.h"

/* QMP's error classes. */
enum mon_err_class {
    MON_ERR_GENERIC,              /* GenericError */
    MON_ERR_COMMAND_NOT_FOUND,    /* CommandNotFound */
    MON_ERR_DEVICE_NOT_FOUND,     /* DeviceNotFound */
    MON_ERR_DEVICE_NOT_ACTIVE,    /* DeviceNotActive: no job on that device */
    MON_ERR_KVM_MISSING_CAP,      /* KVMMissingCap */
};

const char *mon_err_class_name(enum mon_err_class cls);

/*
 * A handler's error: a class and one sentence.  Pass &e->err to functions
 * that take a struct err; the class stays GenericError.
 */
struct mon_err {
    enum mon_err_class cls;
    struct err err;
};

void mon_err_set(struct mon_err *e, enum mon_err_class cls, const char *fmt, ...)
    PRINTF_FMT(3, 4);

/* One client's protocol state. */
struct mon_session {
    bool negotiated;              /* qmp_capabilities done: commands run, events flow */
};

typedef json_t *mon_cmd_fn(struct mon_session *s, json_t *args, struct mon_err *err);

enum {
    MON_CMD_PRECAP    = 1 << 0,   /* runs before capabilities negotiation (qmp_capabilities) */
    MON_CMD_ARGS_OPEN = 1 << 1,   /* members the schema does not list reach the handler */
};

struct mon_cmd {
    const char *name;
    mon_cmd_fn *fn;
    const struct mon_arg *args;   /* NULL: takes no arguments */
    unsigned flags;               /* MON_CMD_* */
};

/*
 * Add n commands (the table must outlive the monitor).  A name registered
 * twice is a programming error: logged, and the second one ignored.
 */
void mon_cmd_register(const struct mon_cmd *cmds, size_t n);
const struct mon_cmd *mon_cmd_find(const char *name);
/* Every command, in registration order. */
void mon_cmd_foreach(void (*fn)(const struct mon_cmd *c, void *opaque), void *opaque);
/* Forget every command (tests, and mon_cleanup). */
void mon_cmd_unregister_all(void);

/*
 * Run one request (any JSON value a client sent) and return the reply
 * object, {"return": ...} or {"error": {...}} with the request's "id"
 * when it had one.  Never NULL.
 */
json_t *mon_dispatch(struct mon_session *s, json_t *request);

/* {"error": {"class": ..., "desc": desc}} (with "id" when id is not NULL). */
json_t *mon_error_reply(enum mon_err_class cls, const char *desc, json_t *id);

#endif
