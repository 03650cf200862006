/* One sentence for people, carried out of configuration calls. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>

static void err_vset(struct err *err, const char *fmt, va_list ap)
{
    if (!err || err->set) {
        return;
    }
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    err->set = true;
}

void err_set(struct err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, fmt, ap);
    va_end(ap);
}

int err_set_errno(struct err *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    if (!err || err->set) {
        return errnum;
    }
    va_start(ap, fmt);
    err_vset(err, fmt, ap);
    va_end(ap);
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof(err->msg) - len, ": %s",
             strerror(errnum < 0 ? -errnum : errnum));
    return errnum;
}

void err_prepend(struct err *err, const char *fmt, ...)
{
    char prefix[512], old[sizeof(err->msg)];
    va_list ap;
    if (!err || !err->set) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    pstrcpy(old, sizeof(old), err->msg);
    size_t n = pstrcpy(err->msg, sizeof(err->msg), prefix);
    if (n < sizeof(err->msg)) {
        pstrcpy(err->msg + n, sizeof(err->msg) - n, old);
    }
}

void err_propagate(struct err *dst, const struct err *src)
{
    if (dst && !dst->set && src && src->set) {
        *dst = *src;
    }
}
