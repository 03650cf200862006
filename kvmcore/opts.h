/*
 * QEMU's key=value,key=value option syntax: ",," stands for a literal
 * comma in a value; the first element may omit its key (the implied key:
 * "driver" for -device, "qom-type" for -object, "type" for -machine).
 * Keys are kept in order; a repeated key is an error.
 */
#ifndef SPINDLE_KVMCORE_OPTS_H
#define SPINDLE_KVMCORE_OPTS_H

#include <jansson.h>

#include "util/error.h"
#include "util/osdep.h"

struct kvm_opt {
    char *key;
    char *value;
    bool used;              /* looked up by the consumer (to find unknown keys) */
};

struct kvm_opts {
    unsigned n;
    struct kvm_opt *opt;
};

/* Parse s; implied_key may be NULL (then every element needs a key). */
int kvm_opts_parse(struct kvm_opts *o, const char *s, const char *implied_key,
                   const char *what, struct err *err);
void kvm_opts_free(struct kvm_opts *o);

/* The value of key (marking it used), or NULL. */
const char *kvm_opts_get(struct kvm_opts *o, const char *key);

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

/*
 * Turn dotted keys into a nested JSON object of strings
 * ("file.filename=x" -> {"file": {"filename": "x"}}).  New reference.
 */
json_t *kvm_opts_to_json(const struct kvm_opts *o, const char *what, struct err *err);

/* Parse a bool word: on/off/yes/no/true/false; -EINVAL otherwise. */
int kvm_parse_bool(const char *s, bool *out);
/* Parse an unsigned integer (decimal, 0x hex); -EINVAL on junk or overflow. */
int kvm_parse_u64(const char *s, uint64_t *out);

#endif
