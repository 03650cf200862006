/*
 * Options in one form.
 *
 * Every configuration input — qemu-img's `-o key=val,...`, dotted
 * `--blockdev driver=qcow2,file.filename=x`, JSON `--blockdev '{...}'`,
 * and QMP arguments — becomes one jansson object, and consumers read it
 * through the getters below whatever its origin: a key=val value is a JSON
 * string until a getter decides its type, a JSON value keeps its own.
 *
 * Dotted keys name nested members ("file.filename" is member "filename"
 * of object "file"), and a segment that is a list index ("server.0.host")
 * names an item of a JSON array: key=val input whose object keys are all
 * indexes 0..n-1 becomes an array, so `server.0.host=a,server.1.host=b`
 * and `{"server":[{"host":"a"},{"host":"b"}]}` parse to the same thing.
 *
 * Errors are one sentence in `err` (util/error.h) and a negative errno.
 */
#ifndef SPINDLE_UTIL_OPTS_H
#define SPINDLE_UTIL_OPTS_H

#include <jansson.h>

#include "util/error.h"
#include "util/osdep.h"

/*
 * Parse "key=val,key2=val2" into a new object.
 *  - ",," inside a value is a literal comma; a value runs to the next
 *    single comma and may contain '='.  One trailing comma is allowed.
 *  - Keys are dotted names whose parts are letters, digits, '-' and '_';
 *    dotted keys nest, index parts make arrays (see above).
 *  - A first element without '=' is the value of implied_key ("qcow2,size=1G"
 *    with implied_key "driver"); with implied_key NULL it is an error.
 *  - A string whose first non-blank character is '{' is JSON and must be
 *    one object; its values keep their JSON types, its keys are taken as
 *    they are (no dotted nesting), duplicate keys are refused.
 * Errors: an empty key or key part, a bad character in a key, a duplicate
 * key, a key used both as a value and as a prefix ("a=1,a.b=2"), a list
 * with a gap or mixed with names, a value that is not UTF-8, bad JSON
 * (with jansson's line and column), a JSON value that is not an object,
 * and text after the JSON object.
 */
json_t *opts_parse(const char *str, const char *implied_key, struct err *err);

/*
 * Put val at dotted_key inside obj, creating intermediate objects; steals
 * val, also on failure.  Never overwrites: a key that exists already, or
 * a value where a prefix of dotted_key needs an object, is -EINVAL with
 * err set, and obj is left as it was.  An index part one past the end of
 * an existing array appends.  val NULL (a failed json_string()) is -EINVAL.
 */
int opts_set_dotted(json_t *obj, const char *dotted_key, json_t *val, struct err *err);

/* The value at dotted_key (a borrowed reference), or NULL if absent. */
json_t *opts_get(json_t *obj, const char *dotted_key);

/* Remove the value at dotted_key: 0, or -ENOENT if absent. */
int opts_del(json_t *obj, const char *dotted_key);

/*
 * Typed getters.  Each accepts the JSON type and the string a key=val
 * value would have, returns 0 and fills *out, -ENOENT if the key is
 * absent (*out untouched, err untouched), or -EINVAL with
 * "Parameter 'KEY' expects a boolean" (number, size, string) otherwise.
 *  str:  JSON string only (*out points into obj).
 *  bool: true/false, or "on", "off", "yes", "no", "true", "false".
 *  int:  JSON integer, or a string as parse_int64 takes it.
 *  uint: JSON integer >= 0, or a string as parse_uint64 takes it.
 *  size: JSON integer >= 0, or a string as parse_size takes it.
 */
int opts_get_str(json_t *obj, const char *key, const char **out, struct err *err);
int opts_get_bool(json_t *obj, const char *key, bool *out, struct err *err);
int opts_get_int(json_t *obj, const char *key, int64_t *out, struct err *err);
int opts_get_uint(json_t *obj, const char *key, uint64_t *out, struct err *err);
int opts_get_size(json_t *obj, const char *key, uint64_t *out, struct err *err);

/*
 * Check that every key of obj is one of allowed (NULL-terminated);
 * nested objects are not descended.  The first stranger, in obj's order,
 * is -EINVAL with "<what>: Invalid parameter 'x'" ("Invalid parameter
 * 'x'" when what is NULL).
 */
int opts_check_keys(json_t *obj, const char *const *allowed, const char *what,
                    struct err *err);

/*
 * obj back as "key=val,..." with dotted keys, sorted by key, ',' in values
 * doubled.  Booleans print as on/off, numbers in decimal, null as "null";
 * empty objects and arrays have no key=val form and are left out, and
 * keys are written as they are (JSON keys that key=val cannot spell, such
 * as "a b", do not parse back).  The caller frees the string.
 */
char *opts_to_string(json_t *obj);

/*
 * A new object with every nested member of obj at its dotted key (array
 * items at their index); leaf values are shared with obj, empty objects
 * and arrays stay as (new, empty) values.
 */
json_t *opts_flatten(json_t *obj);

/*
 * The reverse: a new nested object from dotted keys (values that are
 * objects or arrays are crumpled too), index-keyed objects made arrays.
 * NULL with err set on conflicts, as opts_parse reports them.
 */
json_t *opts_crumple(json_t *flat, struct err *err);

/*
 * Sizes and numbers from the command line, as qemu-img takes them.
 *
 * parse_size: optional leading blanks and '+', then decimal digits with
 * an optional fraction and an optional suffix — k, M, G, T, P, E (powers
 * of 1024, any case) or b/B (bytes) — or "0x" and hex digits (no fraction,
 * no suffix).  A fraction needs a multiplying suffix ("1.5" is refused,
 * "1.0" is 1) and is exact, rounded to the nearest byte, half up ("1.1k"
 * is 1126).  -EINVAL for anything else, -ERANGE above INT64_MAX.
 */
int parse_size(const char *str, uint64_t *out);

/*
 * The whole string as one integer: decimal, or hex after "0x"/"0X";
 * parse_int64 takes a leading '-'.  No blanks, no '+', no suffix.
 * -EINVAL if it is not such a number, -ERANGE if it does not fit.
 */
int parse_int64(const char *str, int64_t *out);
int parse_uint64(const char *str, uint64_t *out);

/*
 * bytes as qemu-img prints sizes: "%.3g" of the number in the largest
 * binary unit that keeps it under 1000 ("512 B", "1 GiB", "1.5 KiB",
 * "0.977 GiB" for 1000 MiB), including qemu-img's "1e+03 GiB" for 999.5
 * GiB and up, where %.3g rounds to 1000.  buf of FORMAT_SIZE_LEN is
 * enough; a shorter one gets a cut, terminated string.
 */
#define FORMAT_SIZE_LEN 16
void format_size(uint64_t bytes, char *buf, size_t len);

#endif
