/*
 * QMP input framing: a client's bytes in, whole JSON values out.
 *
 * QMP has no message delimiter: a client may send one object per line,
 * several on a line, or one across many reads.  The stream scans bytes as
 * they come, keeping only the state a JSON lexer needs (nesting depth,
 * inside a string, after a backslash), and hands each complete top-level
 * value to jansson.  As QEMU does, it also takes 'single-quoted' strings
 * (with \' for a quote inside), which it rewrites to double quotes.
 *
 * Errors, each reported once through the callback, after which the stream
 * starts afresh at the next byte:
 *   - a control character other than tab, CR and LF (inside a string too),
 *     or a 0xff byte: the way QMP clients reset a server's parser;
 *   - a closing bracket with nothing open; nesting beyond
 *     MON_JSON_MAX_DEPTH;
 *   - a value jansson refuses (bad syntax, bad UTF-8, duplicate keys).
 * A value longer than the stream's maximum is not an error the client can
 * recover from: feed returns -EMSGSIZE and the caller drops the client, so
 * a client cannot make the server hold more than that much of its input.
 */
#ifndef SPINDLE_MONITOR_JSON_STREAM_H
#define SPINDLE_MONITOR_JSON_STREAM_H

#include <jansson.h>

#include "util/osdep.h"

#define MON_JSON_MAX_DEPTH 1024

struct mon_json_stream {
    char *buf;               /* the value collected so far, as JSON text */
    size_t len, cap;
    size_t max;              /* bytes one value may take */
    int depth;               /* open '{' and '[' */
    int state;               /* internal: top level, string, escape, literal */
    char quote;              /* the quote of the string being read */
    bool string_is_value;    /* that string is a whole top-level value */
};

/*
 * Called for every complete value (value set, a new reference the callee
 * owns) or error (error set: "JSON parse error, ...").
 */
typedef void mon_json_value_fn(void *opaque, json_t *value, const char *error);

void mon_json_stream_init(struct mon_json_stream *s, size_t max_bytes);
void mon_json_stream_destroy(struct mon_json_stream *s);

/*
 * Scan len bytes.  Returns 0, or -EMSGSIZE once a value outgrows the
 * maximum (the rest of data is not scanned; the stream is left reset).
 */
int mon_json_stream_feed(struct mon_json_stream *s, const char *data, size_t len,
                         mon_json_value_fn *fn, void *opaque);

/* Whether part of a value is pending (bytes seen, value not complete). */
bool mon_json_stream_pending(const struct mon_json_stream *s);

#endif
