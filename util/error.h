/*
 * Sentences for people.  Data paths return a negative errno; at the
 * configuration and management edge an optional `struct err *` (always the
 * last parameter, NULL when the caller does not care) carries one sentence
 * that names the object: "disk.qcow2: L2 table offset 0x7f0000 is not
 * cluster aligned".  The first sentence set wins; callers may prepend the
 * context they know ("opening 'x': ").
 */
#ifndef SPINDLE_UTIL_ERROR_H
#define SPINDLE_UTIL_ERROR_H

#include "util/osdep.h"

struct err {
    bool set;
    char msg[1024];
};

/* Set the sentence unless one is set already.  err may be NULL. */
void err_set(struct err *err, const char *fmt, ...) PRINTF_FMT(2, 3);

/* Same, with ": <strerror(-errnum)>" appended; returns errnum. */
int err_set_errno(struct err *err, int errnum, const char *fmt, ...) PRINTF_FMT(3, 4);

/* Put text in front of an existing sentence (does nothing when unset). */
void err_prepend(struct err *err, const char *fmt, ...) PRINTF_FMT(2, 3);

static inline bool err_isset(const struct err *err)
{
    return err && err->set;
}

static inline void err_clear(struct err *err)
{
    if (err) {
        err->set = false;
        err->msg[0] = '\0';
    }
}

/* Copy src into dst (if dst is not set yet). */
void err_propagate(struct err *dst, const struct err *src);

#endif
