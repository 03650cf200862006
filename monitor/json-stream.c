/* QMP input framing; see json-stream.h. */
#include "monitor/json-stream.h"

#include <stdio.h>

enum {
    JS_TOP,          /* between tokens (inside a container when depth > 0) */
    JS_STRING,       /* inside a string */
    JS_ESCAPE,       /* after a backslash inside a string */
    JS_LITERAL,      /* a number or keyword that is a whole top-level value */
};

void mon_json_stream_init(struct mon_json_stream *s, size_t max_bytes)
{
    memset(s, 0, sizeof(*s));
    s->max = max_bytes;
    s->state = JS_TOP;
}

void mon_json_stream_destroy(struct mon_json_stream *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

bool mon_json_stream_pending(const struct mon_json_stream *s)
{
    return s->len > 0;
}

static void reset(struct mon_json_stream *s)
{
    s->len = 0;
    s->depth = 0;
    s->state = JS_TOP;
    s->string_is_value = false;
}

static int append(struct mon_json_stream *s, const char *p, size_t n)
{
    if (s->len + n > s->max) {
        return -EMSGSIZE;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        s->buf = xrealloc(s->buf, cap);
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

static int append_c(struct mon_json_stream *s, char c)
{
    return append(s, &c, 1);
}

static void fail(struct mon_json_stream *s, mon_json_value_fn *fn, void *opaque,
                 const char *msg)
{
    reset(s);
    fn(opaque, NULL, msg);
}

/* The collected text is one whole value: parse it and hand it over. */
static void emit(struct mon_json_stream *s, mon_json_value_fn *fn, void *opaque)
{
    json_error_t jerr;
    json_t *v = json_loadb(s->buf, s->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    reset(s);
    if (v) {
        fn(opaque, v, NULL);
    } else {
        char msg[256];
        snprintf(msg, sizeof(msg), "JSON parse error, %s", jerr.text);
        fn(opaque, NULL, msg);
    }
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Bytes that end a top-level number or keyword. */
static bool ends_literal(unsigned char c)
{
    return is_blank(c) || strchr("{}[]\"',:", c) != NULL;
}

int mon_json_stream_feed(struct mon_json_stream *s, const char *data, size_t len,
                         mon_json_value_fn *fn, void *opaque)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        bool in_string = s->state == JS_STRING || s->state == JS_ESCAPE;
        char msg[64];
        int ret = 0;

        if (c == 0xff || (c < 0x20 && (in_string || !is_blank(c)))) {
            snprintf(msg, sizeof(msg), "JSON parse error, invalid character 0x%02x", c);
            fail(s, fn, opaque, msg);
            continue;
        }
        switch (s->state) {
        case JS_LITERAL:
            if (!ends_literal(c)) {
                ret = append_c(s, (char)c);
                break;
            }
            emit(s, fn, opaque);
            i--;             /* this byte starts whatever comes next */
            break;
        case JS_ESCAPE:
            /* \' is QEMU's extension: a plain quote in JSON. */
            ret = c == '\'' ? append_c(s, '\'') : append(s, (const char[]){ '\\', (char)c }, 2);
            s->state = JS_STRING;
            break;
        case JS_STRING:
            if (c == (unsigned char)s->quote) {
                ret = append_c(s, '"');
                s->state = JS_TOP;
                if (ret == 0 && s->string_is_value) {
                    emit(s, fn, opaque);
                }
            } else if (c == '\\') {
                s->state = JS_ESCAPE;
            } else if (c == '"') {
                ret = append(s, "\\\"", 2);     /* inside a 'single-quoted' string */
            } else {
                ret = append_c(s, (char)c);
            }
            break;
        case JS_TOP:
            if (c == '"' || c == '\'') {
                s->quote = (char)c;
                s->state = JS_STRING;
                s->string_is_value = s->depth == 0;
                ret = append_c(s, '"');
            } else if (c == '{' || c == '[') {
                if (s->depth == MON_JSON_MAX_DEPTH) {
                    fail(s, fn, opaque, "JSON parse error, nesting too deep");
                    continue;
                }
                s->depth++;
                ret = append_c(s, (char)c);
            } else if (c == '}' || c == ']' || ((c == ',' || c == ':') && s->depth == 0)) {
                if (s->depth == 0) {
                    snprintf(msg, sizeof(msg), "JSON parse error, stray '%c'", c);
                    fail(s, fn, opaque, msg);
                    continue;
                }
                s->depth--;
                ret = append_c(s, (char)c);
                if (ret == 0 && s->depth == 0) {
                    emit(s, fn, opaque);
                }
            } else if (s->depth > 0) {
                ret = append_c(s, (char)c);
            } else if (!is_blank(c)) {
                s->state = JS_LITERAL;
                ret = append_c(s, (char)c);
            }
            break;
        }
        if (ret < 0) {
            reset(s);
            return ret;
        }
    }
    return 0;
}
