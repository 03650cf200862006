/* key=value,... option strings; see opts.h. */
#include "kvmcore/opts.h"

#include <ctype.h>

int kvm_parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true")) {
        *out = true;
    } else if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false")) {
        *out = false;
    } else {
        return -EINVAL;
    }
    return 0;
}

int kvm_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !isdigit((unsigned char)*s)) {
        return -EINVAL;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static void add(struct kvm_opts *o, char *key, char *value)
{
    o->opt = xrealloc(o->opt, (o->n + 1) * sizeof(*o->opt));
    o->opt[o->n++] = (struct kvm_opt){ .key = key, .value = value };
}

/* The length of a JSON array or object at s, brackets balanced; 0 if unbalanced. */
static size_t json_span(const char *s)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\' && s[i + 1]) {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if ((c == ']' || c == '}') && --depth == 0) {
            return i + 1;
        }
    }
    return 0;
}

/*
 * One element up to an unescaped comma; ",," becomes ",".  A value that is
 * a JSON array or object (key=[...]) runs to its closing bracket, commas and
 * all, so iothread-vq-mapping=[{...},{...}] needs no escaping.
 */
static char *take_element(const char **p)
{
    size_t cap = strlen(*p) + 1, n = 0;
    char *out = xmalloc(cap);
    const char *s = *p;
    const char *eq = strchr(s, '=');
    const char *comma = strchr(s, ',');
    if (eq && (!comma || eq < comma) && (eq[1] == '[' || eq[1] == '{')) {
        size_t span = json_span(eq + 1);
        if (span && (eq[1 + span] == ',' || eq[1 + span] == '\0')) {
            size_t len = (size_t)(eq + 1 + span - s);
            memcpy(out, s, len);
            out[len] = '\0';
            *p = s + len + (s[len] == ',');
            return out;
        }
    }
    while (*s) {
        if (*s == ',') {
            if (s[1] == ',') {
                out[n++] = ',';
                s += 2;
                continue;
            }
            s++;
            break;
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    *p = s;
    return out;
}

int kvm_opts_parse(struct kvm_opts *o, const char *s, const char *implied_key,
                   const char *what, struct err *err)
{
    memset(o, 0, sizeof(*o));
    const char *p = s;
    bool first = true;
    if (!*s) {
        err_set(err, "%s: an empty argument", what);
        return -EINVAL;
    }
    while (*p || first) {
        char *elem = take_element(&p);
        char *eq = strchr(elem, '=');
        char *key, *value;
        if (!eq) {
            if (first && implied_key) {
                key = xstrdup(implied_key);
                value = elem;
            } else if (*elem) {
                /* QEMU's shorthand for a boolean: "key" means key=on. */
                key = elem;
                value = xstrdup("on");
            } else {
                free(elem);
                first = false;
                continue;
            }
        } else {
            *eq = '\0';
            if (!*elem) {
                err_set(err, "%s: '=%s' has no key", what, eq + 1);
                free(elem);
                kvm_opts_free(o);
                return -EINVAL;
            }
            key = xstrdup(elem);
            value = xstrdup(eq + 1);
            free(elem);
        }
        for (unsigned i = 0; i < o->n; i++) {
            if (!strcmp(o->opt[i].key, key)) {
                err_set(err, "%s: property '%s' is given twice", what, key);
                free(key);
                free(value);
                kvm_opts_free(o);
                return -EINVAL;
            }
        }
        add(o, key, value);
        first = false;
    }
    return 0;
}

void kvm_opts_free(struct kvm_opts *o)
{
    for (unsigned i = 0; i < o->n; i++) {
        free(o->opt[i].key);
        free(o->opt[i].value);
    }
    free(o->opt);
    o->opt = NULL;
    o->n = 0;
}

const char *kvm_opts_get(struct kvm_opts *o, const char *key)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (!strcmp(o->opt[i].key, key)) {
            o->opt[i].used = true;
            return o->opt[i].value;
        }
    }
    return NULL;
}

int kvm_opts_get_bool(struct kvm_opts *o, const char *key, bool *out, const char *what,
                      struct err *err)
{
    const char *v = kvm_opts_get(o, key);
    if (!v) {
        return 0;
    }
    if (kvm_parse_bool(v, out) < 0) {
        err_set(err, "%s: property '%s' takes on or off, not '%s'", what, key, v);
        return -EINVAL;
    }
    return 1;
}

int kvm_opts_get_u64(struct kvm_opts *o, const char *key, uint64_t min, uint64_t max,
                     uint64_t *out, const char *what, struct err *err)
{
    const char *v = kvm_opts_get(o, key);
    uint64_t n;
    if (!v) {
        return 0;
    }
    if (kvm_parse_u64(v, &n) < 0) {
        err_set(err, "%s: property '%s' takes a number, not '%s'", what, key, v);
        return -EINVAL;
    }
    if (n < min || n > max) {
        err_set(err, "%s: property '%s' must be between %" PRIu64 " and %" PRIu64 ", not %s",
                what, key, min, max, v);
        return -EINVAL;
    }
    *out = n;
    return 1;
}

int kvm_opts_get_size(struct kvm_opts *o, const char *key, uint64_t *out, const char *what,
                      struct err *err)
{
    const char *v = kvm_opts_get(o, key);
    if (!v) {
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    uint64_t mult = 1;
    if (!errno && end != v && isdigit((unsigned char)*v)) {
        switch (*end) {
        case '\0': break;
        case 'k': case 'K': mult = KiB; end++; break;
        case 'M': case 'm': mult = MiB; end++; break;
        case 'G': case 'g': mult = GiB; end++; break;
        case 'T': case 't': mult = TiB; end++; break;
        default: mult = 0; break;
        }
        if (mult && !*end && n <= UINT64_MAX / mult) {
            *out = n * mult;
            return 1;
        }
    }
    err_set(err, "%s: property '%s' takes a size, not '%s'", what, key, v);
    return -EINVAL;
}

int kvm_opts_check_unused(struct kvm_opts *o, const char *what, struct err *err)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (!o->opt[i].used) {
            err_set(err, "%s: unknown property '%s'", what, o->opt[i].key);
            return -EINVAL;
        }
    }
    return 0;
}

json_t *kvm_opts_to_json(const struct kvm_opts *o, const char *what, struct err *err)
{
    json_t *root = json_object();
    for (unsigned i = 0; i < o->n; i++) {
        char *path = xstrdup(o->opt[i].key);
        json_t *obj = root;
        char *seg = path, *dot;
        while ((dot = strchr(seg, '.'))) {
            *dot = '\0';
            json_t *child = json_object_get(obj, seg);
            if (!*seg || (child && !json_is_object(child))) {
                err_set(err, "%s: key '%s' conflicts with another", what, o->opt[i].key);
                free(path);
                json_decref(root);
                return NULL;
            }
            if (!child) {
                child = json_object();
                json_object_set_new(obj, seg, child);
            }
            obj = child;
            seg = dot + 1;
        }
        if (!*seg || json_object_get(obj, seg)) {
            err_set(err, "%s: key '%s' conflicts with another", what, o->opt[i].key);
            free(path);
            json_decref(root);
            return NULL;
        }
        json_object_set_new(obj, seg, json_string(o->opt[i].value));
        free(path);
    }
    return root;
}
