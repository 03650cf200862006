/*
 * Option strings as QEMU's -device, -object, -machine, -smp and -drive
 * take them, on top of util/opts: the string (key=val,... or a JSON
 * object) becomes the one jansson form the rest of spindle uses, and this
 * layer keeps, per dotted key, whether a consumer looked it up, so that
 * whatever is left is refused as "<what>: unknown property '<key>'".
 */
#ifndef SPINDLE_KVMCORE_OPTS_H
#define SPINDLE_KVMCORE_OPTS_H

#include <jansson.h>

#include "util/error.h"
#include "util/osdep.h"

struct kvm_opt {
    char *key;              /* dotted */
    char *value;            /* the value as text: strings as they are, on/off, decimal */
    bool used;              /* looked up by the consumer */
};

struct kvm_opts {
    json_t *obj;            /* the parsed object (util/opts form) */
    unsigned n;
    struct kvm_opt *opt;    /* every leaf, in order, at its dotted key */
};

/* Parse s (key=val,... or {JSON}); implied_key names a first bare element. */
int kvm_opts_parse(struct kvm_opts *o, const char *s, const char *implied_key,
                   const char *what, struct err *err);
/* The same from an object already parsed (steals obj). */
int kvm_opts_from_json(struct kvm_opts *o, json_t *obj, struct err *err);
void kvm_opts_free(struct kvm_opts *o);

/* The text of the leaf at key (marking it used), or NULL. */
const char *kvm_opts_get(struct kvm_opts *o, const char *key);
/* The JSON value at key, leaf or not (marking everything below it used), or NULL. */
json_t *kvm_opts_get_json(struct kvm_opts *o, const char *key);

/* Typed lookups: 0 (absent: *out untouched), 1 (set), or -EINVAL with err. */
int kvm_opts_get_bool(struct kvm_opts *o, const char *key, bool *out, const char *what,
                      struct err *err);
int kvm_opts_get_u64(struct kvm_opts *o, const char *key, uint64_t min, uint64_t max,
                     uint64_t *out, const char *what, struct err *err);
/* A size with an optional k/M/G/T suffix (bytes when no suffix). */
int kvm_opts_get_size(struct kvm_opts *o, const char *key, uint64_t *out, const char *what,
                      struct err *err);

/* The first key nobody looked up: "what: unknown property 'key'". */
int kvm_opts_check_unused(struct kvm_opts *o, const char *what, struct err *err);

/* A new object with the leaves nobody looked up (for a node's own options). */
json_t *kvm_opts_unused_json(struct kvm_opts *o, struct err *err);

/* Parse a bool word: on/off/yes/no/true/false; -EINVAL otherwise. */
int kvm_parse_bool(const char *s, bool *out);
/* Parse an unsigned integer (decimal, 0x hex); -EINVAL on junk or overflow. */
int kvm_parse_u64(const char *s, uint64_t *out);

#endif
