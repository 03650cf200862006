/*
 * Logging and trace points.  Messages go to stderr prefixed with the
 * program name.  Trace points are named (`trace("qcow2_alloc", ...)`) and
 * print only when SPINDLE_TRACE holds a comma-separated list of name
 * prefixes ("qcow2_,job_") or "all".
 */
#ifndef SPINDLE_UTIL_LOG_H
#define SPINDLE_UTIL_LOG_H

#include "util/osdep.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_program(const char *name);
const char *log_program(void);
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) PRINTF_FMT(2, 3);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Whether the named trace point is enabled (cheap after the first call). */
bool trace_enabled(const char *name);
void trace_emit(const char *name, const char *fmt, ...) PRINTF_FMT(2, 3);

#define trace(name, ...)                       \
    do {                                       \
        if (unlikely(trace_enabled(name))) {   \
            trace_emit(name, __VA_ARGS__);     \
        }                                      \
    } while (0)

#endif
