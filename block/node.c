/*
 * Nodes and the graph: the driver registry, opening nodes from options,
 * child edges, reference counts, and replacing a node under its parents.
 * Everything here runs on the main thread.
 */
#include "block/driver.h"

#include <ctype.h>
#include <libgen.h>
#include <stdio.h>

#include "block/dirty-bitmap.h"
#include "block/drain-internal.h"
#include "util/aio.h"
#include "util/log.h"
#include "util/opts.h"

#define MAX_DRIVERS   32
#define PROBE_BYTES   2048

static const struct block_driver *drivers[MAX_DRIVERS];
static int ndrivers;
static struct list_node all_nodes = LIST_HEAD_INIT(all_nodes);
static unsigned auto_name_counter;

/* Keys every node accepts, whatever its driver. */
static const char *const generic_keys[] = {
    "driver", "node-name", "read-only", "auto-read-only", "cache", "discard",
    "detect-zeroes", "force-share", NULL,
};

/* ---- The driver registry ----------------------------------------------- */

void bdrv_register(const struct block_driver *drv)
{
    if (ndrivers == MAX_DRIVERS) {
        fprintf(stderr, "spindle: too many block drivers registered\n");
        abort();
    }
    drivers[ndrivers++] = drv;
}

const struct block_driver *bdrv_find_driver(const char *format_name)
{
    for (int i = 0; i < ndrivers; i++) {
        if (!strcmp(drivers[i]->format_name, format_name)) {
            return drivers[i];
        }
    }
    return NULL;
}

void bdrv_foreach_driver(void (*fn)(const struct block_driver *drv, void *opaque),
                         void *opaque)
{
    for (int i = 0; i < ndrivers; i++) {
        fn(drivers[i], opaque);
    }
}

/*
 * The protocol a filename names: "proto:rest" or "proto://..." for a
 * registered protocol, else "file".  A name like "my:disk.img" whose prefix
 * is no protocol is a plain file.
 */
const struct block_driver *bdrv_find_protocol(const char *filename, struct err *err)
{
    const char *colon = strchr(filename, ':');
    const char *slash = strchr(filename, '/');

    if (colon && (!slash || colon < slash)) {
        size_t len = colon - filename;
        for (int i = 0; i < ndrivers; i++) {
            const char *p = drivers[i]->protocol_name;
            if (p && strlen(p) == len && !strncmp(p, filename, len)) {
                return drivers[i];
            }
        }
    }
    const struct block_driver *file = bdrv_find_driver("file");
    if (!file) {
        err_set(err, "no driver for the 'file' protocol is built in");
    }
    return file;
}

/* ---- Node names -------------------------------------------------------- */

static bool node_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 31 || !isalpha((unsigned char)name[0])) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = name[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_') {
            return false;
        }
    }
    return true;
}

struct block_node *bnode_find(const char *node_name)
{
    struct block_node *bs;
    if (!node_name) {
        return NULL;
    }
    list_for_each(bs, &all_nodes, all_link) {
        if (!strcmp(bs->node_name, node_name)) {
            return bs;
        }
    }
    return NULL;
}

int bnode_foreach(int (*fn)(struct block_node *bs, void *opaque), void *opaque)
{
    struct block_node *bs, *tmp;
    list_for_each_safe(bs, tmp, &all_nodes, all_link) {
        int ret = fn(bs, opaque);
        if (ret) {
            return ret;
        }
    }
    return 0;
}

static int set_node_name(struct block_node *bs, const char *name, struct err *err)
{
    if (!name) {
        snprintf(bs->node_name, sizeof(bs->node_name), "#block%03u", auto_name_counter++);
        return 0;
    }
    if (!node_name_valid(name)) {
        err_set(err, "Invalid node-name: '%s' (a letter, then letters, digits, '-', '.', '_'; "
                "at most 31 characters)", name);
        return -EINVAL;
    }
    if (bnode_find(name)) {
        err_set(err, "Duplicate nodes with node-name='%s'", name);
        return -EEXIST;
    }
    pstrcpy(bs->node_name, sizeof(bs->node_name), name);
    return 0;
}

/* ---- Children ---------------------------------------------------------- */

struct bdrv_child *bnode_child(struct block_node *bs, const char *name)
{
    struct bdrv_child *c;
    list_for_each(c, &bs->children, parent_link) {
        if (!strcmp(c->name, name)) {
            return c;
        }
    }
    return NULL;
}

/* A new edge into a drained node drains its parent as often. */
static void child_link_to(struct bdrv_child *c, struct block_node *bs)
{
    c->bs = bs;
    list_add_tail(&bs->parents, &c->child_link);
    for (int i = 0; i < atomic_load(&bs->quiesce_counter); i++) {
        bnode_parent_drained_begin(c);
    }
}

static void child_unlink(struct bdrv_child *c)
{
    struct block_node *bs = c->bs;
    list_del(&c->child_link);
    for (int i = 0; i < atomic_load(&bs->quiesce_counter); i++) {
        bnode_parent_drained_end(c);
    }
    c->bs = NULL;
}

static void set_shortcuts(struct block_node *parent)
{
    struct bdrv_child *c;
    parent->file = NULL;
    parent->backing = NULL;
    list_for_each(c, &parent->children, parent_link) {
        if (c->role == BDRV_CHILD_FILE && !parent->file) {
            parent->file = c;
        } else if (c->role == BDRV_CHILD_BACKING) {
            parent->backing = c;
        }
    }
}

struct bdrv_child *bnode_attach_child(struct block_node *parent, struct block_node *child_bs,
                                      const char *name, enum bdrv_child_role role)
{
    struct bdrv_child *c = xzalloc(sizeof(*c));
    c->name = xstrdup(name);
    c->parent = parent;
    c->role = role;
    bnode_ref(child_bs);
    list_add_tail(&parent->children, &c->parent_link);
    child_link_to(c, child_bs);
    set_shortcuts(parent);
    return c;
}

struct bdrv_child *bnode_root_attach(struct block_node *bs, const char *name,
                                     const struct bdrv_child_class *klass, void *opaque)
{
    struct bdrv_child *c = xzalloc(sizeof(*c));
    c->name = xstrdup(name);
    c->klass = klass;
    c->opaque = opaque;
    c->role = BDRV_CHILD_ROOT;
    list_init(&c->parent_link);
    bnode_ref(bs);
    child_link_to(c, bs);
    return c;
}

void bnode_detach_child(struct bdrv_child *c)
{
    if (!c) {
        return;
    }
    struct block_node *bs = c->bs;
    struct block_node *parent = c->parent;
    child_unlink(c);
    if (parent) {
        list_del(&c->parent_link);
        set_shortcuts(parent);
    }
    free(c->name);
    free(c);
    bnode_unref(bs);
}

void bnode_child_replace(struct bdrv_child *c, struct block_node *new_bs)
{
    struct block_node *old = c->bs;
    if (old == new_bs) {
        return;
    }
    bnode_ref(new_bs);
    child_unlink(c);
    child_link_to(c, new_bs);
    if (c->klass && c->klass->changed) {
        c->klass->changed(c);
    }
    bnode_unref(old);
}

/* Whether node is bs or below it. */
static bool is_in_subtree(struct block_node *node, struct block_node *bs)
{
    struct bdrv_child *c;
    if (node == bs) {
        return true;
    }
    list_for_each(c, &bs->children, parent_link) {
        if (is_in_subtree(node, c->bs)) {
            return true;
        }
    }
    return false;
}

int bnode_replace_node(struct block_node *from, struct block_node *to, struct err *err)
{
    struct bdrv_child *c, *tmp;

    if (from == to) {
        return 0;
    }
    bnode_ref(from);
    list_for_each_safe(c, tmp, &from->parents, child_link) {
        /* An edge from to's own subtree would close a cycle: leave it. */
        if (c->parent && is_in_subtree(c->parent, to)) {
            continue;
        }
        bnode_child_replace(c, to);
    }
    bnode_unref(from);
    return 0;
}

int bnode_reopen_rw(struct block_node *bs, bool writable, struct err *err)
{
    if (writable == !bs->read_only) {
        return 0;
    }
    int ret;
    if (bs->drv->reopen_rw) {
        ret = bs->drv->reopen_rw(bs, writable, err);
    } else if (bs->drv->is_filter && bs->file) {
        /* A filter keeps no state of its own about it: its child does. */
        ret = bnode_reopen_rw(bs->file->bs, writable, err);
    } else {
        err_set(err, "Cannot make '%s' %s", bnode_describe(bs),
                writable ? "writable" : "read-only");
        return -ENOTSUP;
    }
    if (ret < 0) {
        return ret;
    }
    bs->read_only = !writable;
    bs->open_flags = writable ? bs->open_flags | BDRV_O_RDWR : bs->open_flags & ~BDRV_O_RDWR;
    return 0;
}

void bnode_set_backing(struct block_node *bs, struct block_node *backing)
{
    if (bs->backing && backing) {
        bnode_child_replace(bs->backing, backing);
    } else if (bs->backing) {
        bnode_detach_child(bs->backing);
    } else if (backing) {
        bnode_attach_child(bs, backing, "backing", BDRV_CHILD_BACKING);
    }
}

struct block_node *bnode_skip_filters(struct block_node *bs)
{
    while (bs && bs->drv->is_filter && bs->file) {
        bs = bs->file->bs;
    }
    return bs;
}

struct block_node *bnode_backing_bs(struct block_node *bs)
{
    bs = bnode_skip_filters(bs);
    return bs && bs->backing ? bs->backing->bs : NULL;
}

bool bnode_chain_contains(struct block_node *top, struct block_node *base)
{
    for (struct block_node *bs = bnode_backing_bs(top); bs; bs = bnode_backing_bs(bs)) {
        if (bs == base || bnode_skip_filters(bs) == base) {
            return true;
        }
    }
    return false;
}

/* ---- Cache modes ------------------------------------------------------- */

int bdrv_parse_cache_mode(const char *mode, int *flags, bool *writethrough)
{
    *flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    if (!strcmp(mode, "off") || !strcmp(mode, "none")) {
        *flags |= BDRV_O_NOCACHE;
        *writethrough = false;
    } else if (!strcmp(mode, "directsync")) {
        *flags |= BDRV_O_NOCACHE;
        *writethrough = true;
    } else if (!strcmp(mode, "writeback")) {
        *writethrough = false;
    } else if (!strcmp(mode, "unsafe")) {
        *flags |= BDRV_O_NO_FLUSH;
        *writethrough = false;
    } else if (!strcmp(mode, "writethrough")) {
        *writethrough = true;
    } else {
        return -EINVAL;
    }
    return 0;
}

void bdrv_cache_flags_to_options(json_t *options, int flags)
{
    json_t *cache = json_object_get(options, "cache");
    if (!json_is_object(cache)) {
        cache = json_object();
        json_object_set_new(options, "cache", cache);
    }
    json_object_set_new(cache, "direct", json_boolean(flags & BDRV_O_NOCACHE));
    json_object_set_new(cache, "no-flush", json_boolean(flags & BDRV_O_NO_FLUSH));
}

/* ---- Opening ----------------------------------------------------------- */

static struct block_node *node_new(const struct block_driver *drv)
{
    struct block_node *bs = xzalloc(sizeof(*bs));
    bs->drv = drv;
    bs->opaque = drv->instance_size ? xzalloc(drv->instance_size) : NULL;
    bs->refcnt = 1;
    list_init(&bs->children);
    list_init(&bs->parents);
    list_init(&bs->tracked_reqs);
    list_init(&bs->write_notifiers);
    list_init(&bs->dirty_bitmaps);
    list_init(&bs->all_link);
    pthread_mutex_init(&bs->reqs_lock, NULL);
    pthread_mutex_init(&bs->dirty_lock, NULL);
    co_mutex_init(&bs->flush_lock);
    return bs;
}

static void node_free(struct block_node *bs)
{
    pthread_mutex_destroy(&bs->reqs_lock);
    pthread_mutex_destroy(&bs->dirty_lock);
    co_mutex_destroy(&bs->flush_lock);
    json_decref(bs->options);
    free(bs->opaque);
    free(bs);
}

/* Read the generic options every node has into bs and flags. */
static int parse_generic_options(struct block_node *bs, json_t *opts, int *flags,
                                 struct err *err)
{
    bool b;
    const char *s;
    int ret;

    ret = opts_get_bool(opts, "read-only", &b, err);
    if (ret == 0 && b) {
        *flags &= ~BDRV_O_RDWR;
    } else if (ret == -EINVAL) {
        return ret;
    }
    ret = opts_get_bool(opts, "cache.direct", &b, err);
    if (ret == 0) {
        *flags = b ? *flags | BDRV_O_NOCACHE : *flags & ~BDRV_O_NOCACHE;
    } else if (ret == -EINVAL) {
        return ret;
    }
    ret = opts_get_bool(opts, "cache.no-flush", &b, err);
    if (ret == 0) {
        *flags = b ? *flags | BDRV_O_NO_FLUSH : *flags & ~BDRV_O_NO_FLUSH;
    } else if (ret == -EINVAL) {
        return ret;
    }
    ret = opts_get_bool(opts, "force-share", &b, err);
    if (ret == 0 && b) {
        *flags |= BDRV_O_FORCE_SHARE;
    } else if (ret == -EINVAL) {
        return ret;
    }
    ret = opts_get_str(opts, "discard", &s, err);
    if (ret == 0) {
        if (!strcmp(s, "unmap") || !strcmp(s, "on")) {
            *flags |= BDRV_O_UNMAP;
        } else if (!strcmp(s, "ignore") || !strcmp(s, "off")) {
            *flags &= ~BDRV_O_UNMAP;
        } else {
            err_set(err, "Invalid discard option '%s' (expected 'ignore' or 'unmap')", s);
            return -EINVAL;
        }
    } else if (ret == -EINVAL) {
        return ret;
    }
    bs->detect_zeroes = BDRV_DETECT_ZEROES_OFF;
    ret = opts_get_str(opts, "detect-zeroes", &s, err);
    if (ret == 0) {
        if (!strcmp(s, "off")) {
            bs->detect_zeroes = BDRV_DETECT_ZEROES_OFF;
        } else if (!strcmp(s, "on")) {
            bs->detect_zeroes = BDRV_DETECT_ZEROES_ON;
        } else if (!strcmp(s, "unmap")) {
            bs->detect_zeroes = BDRV_DETECT_ZEROES_UNMAP;
        } else {
            err_set(err, "Invalid detect-zeroes option '%s' (expected off, on or unmap)", s);
            return -EINVAL;
        }
        if (bs->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP && !(*flags & BDRV_O_UNMAP)) {
            err_set(err, "setting detect-zeroes to unmap is not allowed without "
                    "setting discard operation to unmap");
            return -EINVAL;
        }
    } else if (ret == -EINVAL) {
        return ret;
    }
    return 0;
}

/* Options a child inherits from its parent unless it sets them itself. */
static void inherit_options(json_t *child, int parent_flags, bool read_only)
{
    json_t *cache = json_object_get(child, "cache");
    if (!json_is_object(cache)) {
        cache = json_object();
        json_object_set_new(child, "cache", cache);
    }
    if (!json_object_get(cache, "direct")) {
        json_object_set_new(cache, "direct", json_boolean(parent_flags & BDRV_O_NOCACHE));
    }
    if (!json_object_get(cache, "no-flush")) {
        json_object_set_new(cache, "no-flush", json_boolean(parent_flags & BDRV_O_NO_FLUSH));
    }
    if (read_only && !json_object_get(child, "read-only")) {
        json_object_set_new(child, "read-only", json_true());
    }
    if ((parent_flags & BDRV_O_UNMAP) && !json_object_get(child, "discard")) {
        json_object_set_new(child, "discard", json_string("unmap"));
    }
}

/* Fill a protocol node's options from a filename ("proto:..." or a path). */
static int protocol_options(const char *filename, json_t *opts, struct err *err)
{
    const struct block_driver *proto = bdrv_find_protocol(filename, err);
    if (!proto) {
        return -ENOENT;
    }
    json_object_set_new(opts, "driver", json_string(proto->format_name));
    if (proto->parse_filename) {
        return proto->parse_filename(filename, opts, err);
    }
    const char *colon = strchr(filename, ':');
    const char *path = filename;
    if (proto->protocol_name && colon &&
        !strncmp(filename, proto->protocol_name, colon - filename)) {
        path = colon + 1;
    }
    json_object_set_new(opts, "filename", json_string(path));
    return 0;
}

/* The format whose probe scores highest for the first bytes of file. */
static const struct block_driver *probe_format(struct block_node *file, const char *filename,
                                               struct err *err)
{
    size_t buflen = ALIGN_UP(PROBE_BYTES, file->bl.request_alignment);
    uint8_t *buf = bnode_blockalign(file, buflen);
    const struct block_driver *best = NULL;
    int best_score = 0;
    int64_t len = bnode_getlength(file);
    size_t n = len < 0 ? 0 : (size_t)MIN(len, PROBE_BYTES);

    memset(buf, 0, buflen);
    if (n) {
        struct bdrv_child *c = bnode_root_attach(file, "probe", NULL, NULL);
        int ret = bnode_pread(c, 0, ALIGN_UP(n, file->bl.request_alignment), buf, 0);
        bnode_detach_child(c);
        if (ret < 0) {
            err_set_errno(err, ret, "%s: cannot read the image to probe its format", filename);
            free(buf);
            return NULL;
        }
    }
    for (int i = 0; i < ndrivers; i++) {
        if (!drivers[i]->is_format || !drivers[i]->probe) {
            continue;
        }
        int score = drivers[i]->probe(buf, n, filename);
        if (score > best_score) {
            best_score = score;
            best = drivers[i];
        }
    }
    free(buf);
    if (!best) {
        err_set(err, "%s: cannot determine the image format", filename);
    }
    return best;
}

struct open_co {
    struct block_node *bs;
    json_t *opts;
    int flags;
    struct err *err;
    int ret;
};

static void open_entry(void *opaque)
{
    struct open_co *o = opaque;
    o->ret = o->bs->drv->open(o->bs, o->opts, o->flags, o->err);
}

static int open_backing(struct block_node *bs, json_t *opts, int flags, struct err *err);

/* Whether every key of opts is one a node of drv accepts. */
static int check_keys(struct block_node *bs, json_t *opts, struct err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach(opts, key, val) {
        bool ok = false;
        for (int i = 0; generic_keys[i] && !ok; i++) {
            ok = !strcmp(key, generic_keys[i]);
        }
        for (int i = 0; bs->drv->option_keys && bs->drv->option_keys[i] && !ok; i++) {
            ok = !strcmp(key, bs->drv->option_keys[i]);
        }
        if (!ok && (bnode_child(bs, key) || (!strcmp(key, "backing") && bs->drv->supports_backing) ||
                    (!strcmp(key, "file") && (bs->drv->is_format || bs->drv->is_filter)))) {
            ok = true;
        }
        if (!ok) {
            err_set(err, "Block driver '%s' does not support the option '%s'",
                    bs->drv->format_name, key);
            return -EINVAL;
        }
    }
    return 0;
}

static void default_limits(struct block_node *bs)
{
    memset(&bs->bl, 0, sizeof(bs->bl));
    bs->bl.request_alignment = 1;
    bs->bl.max_iov = IOV_MAX;
    bs->bl.min_mem_alignment = 1;
    bs->bl.opt_mem_alignment = 1;
}

/* The limits once the driver is open and its children are attached. */
static void refresh_limits(struct block_node *bs)
{
    struct bdrv_child *c;
    default_limits(bs);
    /* Buffers handed down must suit every child. */
    list_for_each(c, &bs->children, parent_link) {
        bs->bl.min_mem_alignment = MAX(bs->bl.min_mem_alignment, c->bs->bl.min_mem_alignment);
        bs->bl.opt_mem_alignment = MAX(bs->bl.opt_mem_alignment, c->bs->bl.opt_mem_alignment);
    }
    if (bs->drv->refresh_limits) {
        bs->drv->refresh_limits(bs);
    }
}

/*
 * Open a node from a complete options object (opts is ours: consumed).
 * filename only names the node in messages.
 */
static struct block_node *open_node(json_t *opts, const char *filename, int flags,
                                    struct err *err)
{
    const char *drvname = NULL;
    if (opts_get_str(opts, "driver", &drvname, err) < 0) {
        if (!err_isset(err)) {
            err_set(err, "Parameter 'driver' is missing");
        }
        json_decref(opts);
        return NULL;
    }
    const struct block_driver *drv = bdrv_find_driver(drvname);
    if (!drv) {
        err_set(err, "Unknown driver '%s'", drvname);
        json_decref(opts);
        return NULL;
    }

    struct block_node *bs = node_new(drv);
    bs->options = opts;
    const char *node_name = NULL;
    int ret = opts_get_str(opts, "node-name", &node_name, err);
    if (ret == -EINVAL || set_node_name(bs, node_name, err) < 0 ||
        parse_generic_options(bs, opts, &flags, err) < 0) {
        node_free(bs);
        return NULL;
    }
    bs->open_flags = flags;
    bs->read_only = !(flags & BDRV_O_RDWR);
    const char *fn = NULL;
    if (opts_get_str(opts, "filename", &fn, NULL) == 0) {
        pstrcpy(bs->filename, sizeof(bs->filename), fn);
    } else if (filename) {
        pstrcpy(bs->filename, sizeof(bs->filename), filename);
    }
    default_limits(bs);

    struct open_co o = { .bs = bs, .opts = opts, .flags = flags, .err = err };
    co_run_sync(open_entry, &o);
    if (o.ret < 0) {
        if (!err_isset(err)) {
            err_set_errno(err, o.ret, "Could not open '%s'", bs->filename);
        }
        goto fail_children;
    }
    /* A format node is called by its file's name in messages. */
    if (bs->file && !bs->filename[0]) {
        pstrcpy(bs->filename, sizeof(bs->filename), bs->file->bs->filename);
    }
    if (drv->supports_backing && !(flags & BDRV_O_NO_BACKING)) {
        ret = open_backing(bs, opts, flags, err);
        if (ret < 0) {
            if (drv->close) {
                drv->close(bs);
            }
            goto fail_children;
        }
    }
    ret = check_keys(bs, opts, err);
    if (ret < 0) {
        if (drv->close) {
            drv->close(bs);
        }
        goto fail_children;
    }
    refresh_limits(bs);
    if (drv->getlength) {
        int64_t len = drv->getlength(bs);
        if (len >= 0) {
            bnode_set_size(bs, len);
        }
    }
    list_add_tail(&all_nodes, &bs->all_link);
    trace("bnode_open", "%s driver=%s file=%s", bs->node_name, drv->format_name, bs->filename);
    return bs;

fail_children:
    while (!list_empty(&bs->children)) {
        bnode_detach_child(list_entry(bs->children.next, struct bdrv_child, parent_link));
    }
    node_free(bs);
    return NULL;
}

struct bdrv_child *bnode_open_child(struct block_node *bs, json_t *options, const char *name,
                                    const char *fallback_filename, enum bdrv_child_role role,
                                    int flags, bool allow_none, struct err *err)
{
    json_t *spec = json_object_get(options, name);
    struct block_node *child_bs;
    bool read_only = bs->read_only || role == BDRV_CHILD_BACKING;

    if (json_is_string(spec)) {
        /* A reference to a node that is already open. */
        child_bs = bnode_find(json_string_value(spec));
        if (!child_bs) {
            err_set(err, "Cannot find device='' nor node-name='%s'", json_string_value(spec));
            return NULL;
        }
        return bnode_attach_child(bs, child_bs, name, role);
    }
    if (json_is_null(spec) || (!spec && !fallback_filename)) {
        if (!allow_none) {
            err_set(err, "%s: a '%s' child is required", bnode_describe(bs), name);
        }
        return NULL;
    }
    if (spec && !json_is_object(spec)) {
        err_set(err, "Parameter '%s' expects an object or a node name", name);
        return NULL;
    }
    json_t *child_opts = spec ? json_deep_copy(spec) : json_object();
    inherit_options(child_opts, bs->open_flags, read_only);
    int child_flags = read_only ? flags & ~BDRV_O_RDWR : flags;
    child_flags &= ~(BDRV_O_NO_BACKING);
    const char *spec_filename = NULL;
    if (!json_object_get(child_opts, "driver") &&
        opts_get_str(child_opts, "filename", &spec_filename, NULL) == 0) {
        /* {"filename": ...} alone names the child as a filename would (file.filename=x). */
        fallback_filename = spec_filename;
    }
    if (!json_object_get(child_opts, "driver") && fallback_filename) {
        child_bs = bnode_open(fallback_filename, child_opts, child_flags |
                              (role == BDRV_CHILD_FILE ? BDRV_O_PROTOCOL : 0), err);
    } else {
        child_bs = bnode_open(NULL, child_opts, child_flags, err);
    }
    json_decref(child_opts);
    if (!child_bs) {
        return NULL;
    }
    struct bdrv_child *c = bnode_attach_child(bs, child_bs, name, role);
    bnode_unref(child_bs);
    return c;
}

char *bdrv_resolve_relative(const char *image_filename, const char *relative)
{
    if (relative[0] == '/' || strchr(relative, ':') || !strchr(image_filename, '/')) {
        return xstrdup(relative);
    }
    char *copy = xstrdup(image_filename);
    char *dir = dirname(copy);
    char *path = xasprintf("%s/%s", dir, relative);
    free(copy);
    return path;
}

/*
 * Open the backing chain: options["backing"] (null: none; a node name; an
 * object), else the backing file the image names, relative to the image.
 */
static int open_backing(struct block_node *bs, json_t *opts, int flags, struct err *err)
{
    json_t *spec = json_object_get(opts, "backing");
    char *path = NULL;

    if (bs->backing || json_is_null(spec)) {
        return 0;
    }
    if (!spec && !bs->backing_file[0]) {
        return 0;
    }
    json_t *backing_opts = json_object();
    if (spec) {
        json_object_set(backing_opts, "backing", spec);
    } else {
        json_t *b = json_object();
        path = bdrv_resolve_relative(bs->file ? bs->file->bs->filename : bs->filename,
                                     bs->backing_file);
        if (bs->backing_format[0]) {
            json_object_set_new(b, "driver", json_string(bs->backing_format));
            json_t *file = json_object();
            if (protocol_options(path, file, err) < 0) {
                json_decref(file);
                json_decref(b);
                json_decref(backing_opts);
                free(path);
                return -EINVAL;
            }
            json_object_set_new(b, "file", file);
        }
        json_object_set_new(backing_opts, "backing", b);
    }
    struct bdrv_child *c = bnode_open_child(bs, backing_opts, "backing",
                                            spec ? NULL : path, BDRV_CHILD_BACKING,
                                            flags & ~BDRV_O_RDWR, false, err);
    json_decref(backing_opts);
    if (!c) {
        err_prepend(err, "Could not open backing file: ");
        free(path);
        return -EINVAL;
    }
    free(path);
    return 0;
}

struct block_node *bnode_open(const char *filename, json_t *options, int flags,
                              struct err *err)
{
    json_t *opts = options ? json_deep_copy(options) : json_object();
    const char *drvname = NULL;
    opts_get_str(opts, "driver", &drvname, NULL);
    const struct block_driver *drv = drvname ? bdrv_find_driver(drvname) : NULL;

    if (drvname && !drv) {
        err_set(err, "Unknown driver '%s'", drvname);
        json_decref(opts);
        return NULL;
    }
    if (!filename) {
        if (!drvname) {
            err_set(err, "Parameter 'driver' is missing");
            json_decref(opts);
            return NULL;
        }
        return open_node(opts, NULL, flags, err);
    }

    /* A protocol node, by a driver given or from the filename. */
    if ((drv && drv->protocol_name) || (!drv && (flags & BDRV_O_PROTOCOL))) {
        if (!drv) {
            if (protocol_options(filename, opts, err) < 0) {
                json_decref(opts);
                return NULL;
            }
        } else if (!json_object_get(opts, "filename")) {
            json_object_set_new(opts, "filename", json_string(filename));
        }
        return open_node(opts, filename, flags, err);
    }

    /* A format node over a protocol node for filename. */
    json_t *file_spec = json_object_get(opts, "file");
    if (!file_spec) {
        file_spec = json_object();
        json_object_set_new(opts, "file", file_spec);
    }
    if (json_is_object(file_spec) && !json_object_get(file_spec, "driver")) {
        json_t *proto = json_object();
        if (protocol_options(filename, proto, err) < 0) {
            json_decref(proto);
            json_decref(opts);
            return NULL;
        }
        json_object_update_missing(file_spec, proto);
        json_decref(proto);
    }
    if (!drv) {
        /* Open the file first to read its first bytes, then hand it over. */
        json_t *file_opts = json_deep_copy(json_object_get(opts, "file"));
        inherit_options(file_opts, flags, !(flags & BDRV_O_RDWR));
        struct block_node *file = open_node(file_opts, filename, flags, err);
        if (!file) {
            json_decref(opts);
            return NULL;
        }
        drv = probe_format(file, filename, err);
        if (!drv) {
            bnode_unref(file);
            json_decref(opts);
            return NULL;
        }
        json_object_set_new(opts, "driver", json_string(drv->format_name));
        json_object_set_new(opts, "file", json_string(file->node_name));
        struct block_node *bs = open_node(opts, filename, flags, err);
        bnode_unref(file);
        return bs;
    }
    return open_node(opts, filename, flags, err);
}

struct create_co {
    const struct block_driver *drv;
    json_t *opts;
    struct err *err;
    int ret;
};

static void create_entry(void *opaque)
{
    struct create_co *c = opaque;
    c->ret = c->drv->co_create(c->opts, c->err);
}

int bdrv_create(const char *format, json_t *options, struct err *err)
{
    const struct block_driver *drv = bdrv_find_driver(format);
    if (!drv) {
        err_set(err, "Unknown file format '%s'", format);
        return -EINVAL;
    }
    if (!drv->co_create) {
        err_set(err, "Format driver '%s' does not support image creation", format);
        return -ENOTSUP;
    }
    struct create_co c = { drv, options, err, 0 };
    co_run_sync(create_entry, &c);
    return c.ret;
}

struct block_node *bnode_new_filter(const struct block_driver *drv, struct block_node *child,
                                    const char *node_name, struct err *err)
{
    struct block_node *bs = node_new(drv);
    if (set_node_name(bs, node_name, err) < 0) {
        node_free(bs);
        return NULL;
    }
    bs->open_flags = child->open_flags;
    bs->read_only = child->read_only;
    bs->options = json_pack("{s:s}", "driver", drv->format_name);
    pstrcpy(bs->filename, sizeof(bs->filename), child->filename);
    bnode_attach_child(bs, child, "file", BDRV_CHILD_FILE);
    refresh_limits(bs);
    bnode_set_size(bs, bnode_getlength(child));
    list_add_tail(&all_nodes, &bs->all_link);
    return bs;
}

/* ---- Reference counts -------------------------------------------------- */

void bnode_ref(struct block_node *bs)
{
    bs->refcnt++;
}

static void node_close(struct block_node *bs)
{
    trace("bnode_close", "%s", bs->node_name);
    bnode_drained_begin(bs);
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    /* Bitmaps still here (users', left behind): the driver stored what it keeps. */
    while (!list_empty(&bs->dirty_bitmaps)) {
        bdrv_release_dirty_bitmap(
            list_first(&bs->dirty_bitmaps, struct bdrv_dirty_bitmap, link));
    }
    while (!list_empty(&bs->children)) {
        bnode_detach_child(list_entry(bs->children.next, struct bdrv_child, parent_link));
    }
    if (list_linked(&bs->all_link)) {
        list_del(&bs->all_link);
    }
    node_free(bs);
}

void bnode_unref(struct block_node *bs)
{
    if (!bs) {
        return;
    }
    if (--bs->refcnt == 0) {
        node_close(bs);
    }
}

/* ---- Information ------------------------------------------------------- */

const char *bnode_format_name(const struct block_node *bs)
{
    return bs->drv->format_name;
}

const char *bnode_describe(const struct block_node *bs)
{
    if (bs->filename[0]) {
        return bs->filename;
    }
    return bs->node_name;
}

json_t *bnode_get_specific_info(struct block_node *bs, struct err *err)
{
    if (!bs->drv->get_specific_info) {
        return NULL;
    }
    return bs->drv->get_specific_info(bs, err);
}

bool bnode_has_zero_init(struct block_node *bs)
{
    if (bs->drv->has_zero_init) {
        return bs->drv->has_zero_init(bs);
    }
    /* A filter or a plain format is as zero as its storage. */
    if (bs->file && (bs->drv->is_filter || !bs->drv->co_block_status)) {
        return bnode_has_zero_init(bs->file->bs);
    }
    return false;
}

int64_t bnode_get_allocated_file_size(struct block_node *bs)
{
    if (bs->drv->get_allocated_file_size) {
        return bs->drv->get_allocated_file_size(bs);
    }
    /* A format or filter uses what its storage uses. */
    if (bs->file) {
        return bnode_get_allocated_file_size(bs->file->bs);
    }
    return -ENOTSUP;
}
