/*
 * Argument schemas of QMP commands, as data.
 *
 * A command's arguments are a table of struct mon_arg (name, type,
 * optional), ended by an entry whose name is NULL:
 *
 *     static const struct mon_arg resize_args[] = {
 *         { .name = "node-name", .type = MON_T_STR, .optional = true },
 *         { .name = "size", .type = MON_T_INT },
 *         { .name = NULL },
 *     };
 *
 * The dispatcher checks a request's "arguments" against it before the
 * handler runs, so handlers read members whose presence and JSON types
 * are already right.  Objects
 * nest (members), arrays have an element type (elem), alternates list the
 * types they accept (alts, ended by an entry of type MON_T_END), enums
 * list their values.
 *
 * The sentences are QEMU's, with the member's full path ("options.size",
 * "bitmaps[0].name"), checked in table order, unknown members last:
 *   Parameter 'X' is missing
 *   Parameter 'X' is unexpected
 *   Invalid parameter type for 'X', expected: T   (integer, string, boolean,
 *                                                  number, object, array, or
 *                                                  the alternate's name)
 *   Parameter 'X' does not accept value 'V'
 *   Parameter 'X' expects uint32_t | uint64 | size
 */
#ifndef SPINDLE_MONITOR_SCHEMA_H
#define SPINDLE_MONITOR_SCHEMA_H

#include <jansson.h>

#include "util/error.h"

enum mon_type {
    MON_T_END = 0,        /* ends a list of alternatives */
    MON_T_STR,
    MON_T_INT,            /* int64 */
    MON_T_U32,
    MON_T_U64,
    MON_T_SIZE,           /* a byte count (uint64) */
    MON_T_BOOL,
    MON_T_NUMBER,         /* integer or real */
    MON_T_ANY,
    MON_T_ENUM,           /* a string from values */
    MON_T_OBJECT,         /* members; open: members not listed are allowed */
    MON_T_ARRAY,          /* of elem */
    MON_T_ALT,            /* one of alts, chosen by the JSON type */
};

struct mon_arg {
    const char *name;                 /* NULL ends a member list */
    enum mon_type type;
    bool optional;
    bool open;                        /* MON_T_OBJECT: unknown members are passed on */
    const struct mon_arg *members;    /* MON_T_OBJECT */
    const struct mon_arg *elem;       /* MON_T_ARRAY: one entry */
    const struct mon_arg *alts;       /* MON_T_ALT: ended by type MON_T_END */
    const char *const *values;        /* MON_T_ENUM: NULL-terminated */
    const char *type_name;            /* MON_T_ALT: its name in messages */
};

/*
 * Check obj (an object) against members; open allows members that are not
 * listed.  0, or -EINVAL with err set to the first problem.
 */
int mon_args_check(const struct mon_arg *members, bool open, json_t *obj, struct err *err);

/* Whether name is among values (a NULL-terminated list). */
bool mon_enum_has(const char *const *values, const char *name);

#endif
