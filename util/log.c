/* Messages for people on stderr, and named trace points. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static const char *program = "spindle";
static enum log_level max_level = LOG_INFO;

/* 0: not read yet, 1: tracing off, 2: some trace points on. */
static atomic_int trace_state;
static char trace_spec[512];

void log_set_program(const char *name)
{
    const char *slash = strrchr(name, '/');
    program = slash ? slash + 1 : name;
}

const char *log_program(void)
{
    return program;
}

void log_set_level(enum log_level level)
{
    max_level = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "", "warning: ", "", "debug: " };
    char line[2048];
    va_list ap;

    if (level > max_level) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One write per message, so lines from threads do not interleave. */
    fprintf(stderr, "%s: %s%s\n", program, names[level], line);
}

static void trace_init(void)
{
    const char *env = getenv("SPINDLE_TRACE");
    if (env && *env) {
        pstrcpy(trace_spec, sizeof(trace_spec), env);
        atomic_store(&trace_state, 2);
    } else {
        atomic_store(&trace_state, 1);
    }
}

bool trace_enabled(const char *name)
{
    int state = atomic_load_explicit(&trace_state, memory_order_relaxed);
    if (state == 0) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, trace_init);
        state = atomic_load(&trace_state);
    }
    if (state == 1) {
        return false;
    }
    if (!strcmp(trace_spec, "all")) {
        return true;
    }
    const char *p = trace_spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len && !strncmp(name, p, len)) {
            return true;
        }
        if (!end) {
            break;
        }
        p = end + 1;
    }
    return false;
}

void trace_emit(const char *name, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%.6f %s %s\n", clock_ns() / 1e9, name, line);
}
