/*
 * Options in one jansson form: the key=val and JSON parsers, dotted
 * access, typed getters, and flatten/crumple.  Numbers and sizes from the
 * command line are in util/opts-num.c.
 */
#include "util/opts.h"

#include <stdio.h>

/* A growing string for opts_to_string. */
struct sbuf {
    char *s;
    size_t len, cap;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = MAX(b->cap * 2, b->len + n + 1);
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
    sbuf_add(b, s, strlen(s));
}

static char *dup_n(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Keys and list indexes. */

/* Whether seg[0..len) is a list index: digits, no leading zero but "0". */
static bool parse_index(const char *seg, size_t len, size_t *index)
{
    size_t v = 0;

    if (len == 0 || len > 9 || (len > 1 && seg[0] == '0')) {
        return false;   /* nine digits bound it far below SIZE_MAX */
    }
    for (size_t i = 0; i < len; i++) {
        if (seg[i] < '0' || seg[i] > '9') {
            return false;
        }
        v = v * 10 + (size_t)(seg[i] - '0');
    }
    *index = v;
    return true;
}

/*
 * Every part of a dotted key is non-empty, and the key is UTF-8 (checked
 * first so that opts_set_dotted fails before it creates anything).
 */
static int check_dotted(const char *key, struct err *err)
{
    json_t *probe = json_string(key);

    if (!probe) {
        err_set(err, "Parameter name '%s' is not valid UTF-8", key);
        return -EINVAL;
    }
    json_decref(probe);
    if (*key == '\0') {
        err_set(err, "Empty parameter name");
        return -EINVAL;
    }
    for (const char *p = key; *p; p++) {
        if (*p == '.' && (p == key || p[1] == '\0' || p[1] == '.')) {
            err_set(err, "Parameter name '%s' has an empty component", key);
            return -EINVAL;
        }
    }
    return 0;
}

/* check_dotted, and only the characters key=val input allows. */
static int check_key(const char *key, struct err *err)
{
    int ret = check_dotted(key, err);
    if (ret < 0) {
        return ret;
    }
    for (const char *p = key; *p; p++) {
        /* ASCII only, whatever the locale says isalnum() is. */
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_';
        if (!ok && (unsigned char)*p >= 0x80) {
            err_set(err, "Parameter name '%s' contains a non-ASCII character", key);
            return -EINVAL;
        }
        if (!ok) {
            err_set(err, "Parameter name '%s' contains the invalid character '%c'", key, *p);
            return -EINVAL;
        }
    }
    return 0;
}

/* The dotted name of member key (or item i when key is NULL) under prefix. */
static char *child_name(const char *prefix, const char *key, size_t i)
{
    if (prefix && *prefix) {
        return key ? xasprintf("%s.%s", prefix, key) : xasprintf("%s.%zu", prefix, i);
    }
    return key ? xstrdup(key) : xasprintf("%zu", i);
}

static bool is_container(const json_t *v)
{
    return json_is_object(v) || json_is_array(v);
}

static size_t container_size(const json_t *v)
{
    return json_is_object(v) ? json_object_size(v) : json_array_size(v);
}

/* The member or item of node named by seg[0..len), or NULL. */
static json_t *child_get(json_t *node, const char *seg, size_t len)
{
    size_t index;

    if (json_is_object(node)) {
        return json_object_getn(node, seg, len);
    }
    if (json_is_array(node) && parse_index(seg, len, &index)) {
        return json_array_get(node, index);
    }
    return NULL;
}

/*
 * Add v (stolen) as the part seg[0..len) of key under node, where nothing
 * is yet; an array takes only its next index.
 */
static int child_put(json_t *node, const char *key, const char *seg, size_t len, json_t *v,
                     struct err *err)
{
    int path_len = seg > key ? (int)(seg - key - 1) : 0;   /* names node */
    size_t index;

    if (json_is_object(node)) {
        /* Fails only without memory: key was checked for UTF-8. */
        return json_object_setn_new(node, seg, len, v) < 0 ? -ENOMEM : 0;
    }
    if (parse_index(seg, len, &index) && index == json_array_size(node)) {
        json_array_append_new(node, v);
        return 0;
    }
    json_decref(v);
    err_set(err, "List parameter '%.*s' has no index '%.*s'", path_len, key, (int)len, seg);
    return -EINVAL;
}

/* The error for dotted_key landing where existing already is. */
static int existing_error(const char *key, const json_t *existing, struct err *err)
{
    if (json_is_object(existing) && json_object_size(existing)) {
        void *it = json_object_iter((json_t *)existing);
        err_set(err, "Parameter '%s' is both a value and a prefix of '%s.%s'", key, key,
                json_object_iter_key(it));
    } else if (json_is_array(existing) && json_array_size(existing)) {
        err_set(err, "Parameter '%s' is both a value and a prefix of '%s.0'", key, key);
    } else {
        err_set(err, "Duplicate parameter '%s'", key);
    }
    return -EINVAL;
}

int opts_set_dotted(json_t *obj, const char *dotted_key, json_t *val, struct err *err)
{
    const char *seg = dotted_key;
    json_t *node = obj;
    int ret = check_dotted(dotted_key, err);

    if (ret == 0 && !val) {
        /* Typically json_string() of a string that is not UTF-8. */
        err_set(err, "Parameter '%s' has no value", dotted_key);
        return -EINVAL;
    }
    while (ret == 0) {
        size_t len = strcspn(seg, ".");
        json_t *child = child_get(node, seg, len);

        if (seg[len] == '\0') {
            if (child) {
                ret = existing_error(dotted_key, child, err);
                break;
            }
            return child_put(node, dotted_key, seg, len, val, err);
        }
        if (!child) {
            child = json_object();
            ret = child_put(node, dotted_key, seg, len, child, err);
        } else if (!is_container(child)) {
            err_set(err, "Parameter '%.*s' is both a value and a prefix of '%s'",
                    (int)(seg + len - dotted_key), dotted_key, dotted_key);
            ret = -EINVAL;
        }
        node = child;
        seg += len + 1;
    }
    json_decref(val);
    return ret;
}

/* The container holding dotted_key's last part, and that part. */
static json_t *parent_of(json_t *obj, const char *dotted_key, const char **last)
{
    const char *seg = dotted_key;
    json_t *node = obj;

    for (;;) {
        size_t len = strcspn(seg, ".");
        if (seg[len] == '\0') {
            *last = seg;
            return node;
        }
        node = child_get(node, seg, len);
        if (!node) {
            return NULL;
        }
        seg += len + 1;
    }
}

json_t *opts_get(json_t *obj, const char *dotted_key)
{
    const char *last;
    json_t *parent = parent_of(obj, dotted_key, &last);

    return parent ? child_get(parent, last, strlen(last)) : NULL;
}

int opts_del(json_t *obj, const char *dotted_key)
{
    const char *last;
    json_t *parent = parent_of(obj, dotted_key, &last);
    size_t index;

    if (parent && json_is_object(parent)) {
        return json_object_del(parent, last) ? -ENOENT : 0;
    }
    if (parent && json_is_array(parent) && parse_index(last, strlen(last), &index)) {
        return json_array_remove(parent, index) ? -ENOENT : 0;
    }
    return -ENOENT;
}

/* Lists: objects keyed 0..n-1 become arrays. */

/*
 * 1 if obj's keys are all indexes 0..n-1 (n > 0), 0 if none is an index,
 * -EINVAL when they mix or leave a gap.
 */
static int list_shape(json_t *obj, const char *path, struct err *err)
{
    size_t n = json_object_size(obj), indexes = 0, index;
    bool *seen = xcalloc(n ? n : 1, sizeof(bool));
    const char *key;
    json_t *v;
    int ret = 0;

    json_object_foreach(obj, key, v) {
        if (parse_index(key, strlen(key), &index)) {
            indexes++;
            if (index < n) {
                seen[index] = true;
            }
        }
    }
    if (indexes && indexes < n) {
        err_set(err, "Parameter '%s' mixes list indexes with names", path);
        ret = -EINVAL;
    } else if (indexes) {
        size_t missing = 0;
        while (missing < n && seen[missing]) {
            missing++;
        }
        if (missing < n) {
            err_set(err, "List parameter '%s' has no index %zu", path, missing);
            ret = -EINVAL;
        } else {
            ret = 1;
        }
    }
    free(seen);
    return ret;
}

static json_t *object_to_array(json_t *obj)
{
    size_t n = json_object_size(obj);
    json_t *arr = json_array();
    char key[24];

    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%zu", i);
        json_array_append(arr, json_object_get(obj, key));
    }
    return arr;
}

static int listify(json_t *node, const char *path, struct err *err);

/* Listify child (named by path) and return what replaces it (new ref), or NULL. */
static json_t *listify_child(json_t *child, const char *path, struct err *err)
{
    if (!is_container(child)) {
        return json_incref(child);
    }
    if (listify(child, path, err) < 0) {
        return NULL;
    }
    int shape = json_is_object(child) ? list_shape(child, path, err) : 0;
    if (shape < 0) {
        return NULL;
    }
    return shape ? object_to_array(child) : json_incref(child);
}

/* Turn every index-keyed object below node into an array, depth first. */
static int listify(json_t *node, const char *path, struct err *err)
{
    size_t n = container_size(node);
    void *it = json_is_object(node) ? json_object_iter(node) : NULL;

    for (size_t i = 0; i < n; i++) {
        json_t *child = it ? json_object_iter_value(it) : json_array_get(node, i);
        char *child_path = child_name(path, it ? json_object_iter_key(it) : NULL, i);
        json_t *repl = listify_child(child, child_path, err);

        free(child_path);
        if (!repl) {
            return -EINVAL;
        }
        if (it) {
            json_object_iter_set_new(node, it, repl);
            it = json_object_iter_next(node, it);
        } else {
            json_array_set_new(node, i, repl);
        }
    }
    return 0;
}

/* Parsing. */

static json_t *parse_json(const char *str, struct err *err)
{
    json_error_t jerr;
    json_t *v = json_loads(str, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &jerr);

    if (!v) {
        err_set(err, "Invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                jerr.text);
        return NULL;
    }
    /* With the EOF check off, position is how far the decoder read. */
    const char *rest = str + jerr.position;
    rest += strspn(rest, " \t\r\n");
    if (*rest) {
        err_set(err, "Unexpected text after the JSON object: '%.40s'", rest);
        json_decref(v);
        return NULL;
    }
    return v;   /* it began with '{', so it is an object */
}

/* Copy a value up to a single ',' or the end, undoubling ",,"; *p moves past it. */
static char *read_value(const char **p)
{
    const char *s = *p;
    char *out = xmalloc(strlen(s) + 1), *o = out;

    while (*s) {
        if (*s == ',') {
            if (s[1] != ',') {
                s++;
                break;
            }
            s++;
        }
        *o++ = *s++;
    }
    *o = '\0';
    *p = s;
    return out;
}

/* One key=val (or implied value) element at *p; *p moves past it. */
static int parse_element(json_t *obj, const char **p, const char *implied_key, struct err *err)
{
    const char *s = *p;
    size_t klen = strcspn(s, "=,");
    char *key;
    int ret;

    if (s[klen] == '=' || klen == 0) {
        key = dup_n(s, klen);    /* an empty one fails check_key */
        s += klen + 1;
    } else if (implied_key) {
        key = xstrdup(implied_key);
    } else {
        err_set(err, "Expected '=' after parameter '%.*s'", (int)klen, s);
        return -EINVAL;
    }
    ret = check_key(key, err);
    if (ret == 0) {
        char *value = read_value(&s);
        json_t *v = json_string(value);
        if (!v) {
            err_set(err, "Parameter '%s' has a value that is not valid UTF-8", key);
            ret = -EINVAL;
        } else {
            ret = opts_set_dotted(obj, key, v, err);
        }
        free(value);
    }
    free(key);
    *p = s;
    return ret;
}

static json_t *parse_keyval(const char *str, const char *implied_key, struct err *err)
{
    json_t *obj = json_object();
    const char *p = str;

    while (*p) {
        if (parse_element(obj, &p, p == str ? implied_key : NULL, err) < 0) {
            goto fail;
        }
    }
    if (listify(obj, "", err) < 0) {
        goto fail;
    }
    return obj;

fail:
    json_decref(obj);
    return NULL;
}

json_t *opts_parse(const char *str, const char *implied_key, struct err *err)
{
    const char *p = str + strspn(str, " \t\r\n");

    if (*p == '{') {
        return parse_json(p, err);
    }
    return parse_keyval(str, implied_key, err);
}

/* Typed getters. */

static int bad_value(const char *key, const char *what, struct err *err)
{
    err_set(err, "Parameter '%s' expects %s", key, what);
    return -EINVAL;
}

int opts_get_str(json_t *obj, const char *key, const char **out, struct err *err)
{
    json_t *v = opts_get(obj, key);

    if (!v) {
        return -ENOENT;
    }
    if (!json_is_string(v)) {
        return bad_value(key, "a string", err);
    }
    *out = json_string_value(v);
    return 0;
}

int opts_get_bool(json_t *obj, const char *key, bool *out, struct err *err)
{
    static const char *const yes[] = { "on", "yes", "true" };
    static const char *const no[] = { "off", "no", "false" };
    json_t *v = opts_get(obj, key);

    if (!v) {
        return -ENOENT;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!strcmp(s, yes[i]) || !strcmp(s, no[i])) {
            *out = !strcmp(s, yes[i]);
            return 0;
        }
    }
    return bad_value(key, "a boolean", err);
}

int opts_get_int(json_t *obj, const char *key, int64_t *out, struct err *err)
{
    json_t *v = opts_get(obj, key);
    int64_t n;

    if (!v) {
        return -ENOENT;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && parse_int64(json_string_value(v), &n) == 0) {
        *out = n;
        return 0;
    }
    return bad_value(key, "a number", err);
}

int opts_get_uint(json_t *obj, const char *key, uint64_t *out, struct err *err)
{
    json_t *v = opts_get(obj, key);
    uint64_t n;

    if (!v) {
        return -ENOENT;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && parse_uint64(json_string_value(v), &n) == 0) {
        *out = n;
        return 0;
    }
    return bad_value(key, "a number", err);
}

int opts_get_size(json_t *obj, const char *key, uint64_t *out, struct err *err)
{
    json_t *v = opts_get(obj, key);
    uint64_t n;

    if (!v) {
        return -ENOENT;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && parse_size(json_string_value(v), &n) == 0) {
        *out = n;
        return 0;
    }
    return bad_value(key, "a size", err);
}

int opts_check_keys(json_t *obj, const char *const *allowed, const char *what,
                    struct err *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key)) {
            i++;
        }
        if (allowed[i]) {
            continue;
        }
        if (what) {
            err_set(err, "%s: Invalid parameter '%s'", what, key);
        } else {
            err_set(err, "Invalid parameter '%s'", key);
        }
        return -EINVAL;
    }
    return 0;
}

/* Flatten and crumple. */

/* A leaf to store: empty containers fresh, so later stores never touch the source. */
static json_t *leaf_copy(json_t *v)
{
    if (json_is_object(v)) {
        return json_object();
    }
    return json_is_array(v) ? json_array() : json_incref(v);
}

/* Call fn(full dotted key, leaf) for every leaf below node. */
typedef int leaf_fn(const char *key, json_t *leaf, void *opaque);

static int walk_leaves(json_t *node, const char *prefix, leaf_fn *fn, void *opaque)
{
    size_t n = container_size(node);
    void *it = json_is_object(node) ? json_object_iter(node) : NULL;
    int ret = 0;

    for (size_t i = 0; i < n && ret == 0; i++) {
        json_t *child = it ? json_object_iter_value(it) : json_array_get(node, i);
        char *full = child_name(prefix, it ? json_object_iter_key(it) : NULL, i);

        if (is_container(child) && container_size(child)) {
            ret = walk_leaves(child, full, fn, opaque);
        } else {
            ret = fn(full, child, opaque);
        }
        free(full);
        it = it ? json_object_iter_next(node, it) : NULL;
    }
    return ret;
}

static int flatten_leaf(const char *key, json_t *leaf, void *opaque)
{
    json_object_set_new(opaque, key, leaf_copy(leaf));
    return 0;
}

json_t *opts_flatten(json_t *obj)
{
    json_t *flat = json_object();

    walk_leaves(obj, NULL, flatten_leaf, flat);
    return flat;
}

struct crumple {
    json_t *out;
    struct err *err;
};

static int crumple_leaf(const char *key, json_t *leaf, void *opaque)
{
    struct crumple *c = opaque;
    return opts_set_dotted(c->out, key, leaf_copy(leaf), c->err);
}

json_t *opts_crumple(json_t *flat, struct err *err)
{
    struct crumple c = { .out = json_object(), .err = err };

    if (walk_leaves(flat, NULL, crumple_leaf, &c) < 0 || listify(c.out, "", err) < 0) {
        json_decref(c.out);
        return NULL;
    }
    return c.out;
}

/* to_string. */

static void add_value(struct sbuf *b, json_t *v)
{
    char num[32];

    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (const char *comma; (comma = strchr(s, ',')); s = comma + 1) {
            sbuf_add(b, s, (size_t)(comma - s));
            sbuf_puts(b, ",,");
        }
        sbuf_puts(b, s);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sbuf_puts(b, num);
    } else if (json_is_boolean(v)) {
        sbuf_puts(b, json_is_true(v) ? "on" : "off");
    } else {
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        sbuf_puts(b, text ? text : "");
        free(text);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *opts_to_string(json_t *obj)
{
    json_t *flat = opts_flatten(obj);
    size_t n = json_object_size(flat), i = 0;
    const char **keys = xcalloc(n ? n : 1, sizeof(*keys));
    struct sbuf b = { .s = xstrdup(""), .cap = 1 };
    const char *key;
    json_t *v;

    json_object_foreach(flat, key, v) {
        keys[i++] = key;
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    for (i = 0; i < n; i++) {
        v = json_object_get(flat, keys[i]);
        if (is_container(v)) {
            continue;   /* empty: no key=val form */
        }
        if (b.len) {
            sbuf_puts(&b, ",");
        }
        sbuf_puts(&b, keys[i]);
        sbuf_puts(&b, "=");
        add_value(&b, v);
    }
    free(keys);
    json_decref(flat);
    return b.s;
}
