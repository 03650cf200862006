/* Nodes the user adds and removes by name, and blockdev-create; see blockdev.h. */
#include "block/blockdev.h"

#include "block/backend.h"
#include "block/driver.h"
#include "util/log.h"
#include "util/opts.h"

/* The user's nodes, oldest first; each entry holds one reference. */
static struct block_node **user_nodes;
static size_t nr_user_nodes;

static ssize_t user_index(const struct block_node *bs)
{
    for (size_t i = 0; i < nr_user_nodes; i++) {
        if (user_nodes[i] == bs) {
            return (ssize_t)i;
        }
    }
    return -1;
}

bool blockdev_is_user_node(const struct block_node *bs)
{
    return user_index(bs) >= 0;
}

struct block_node *blockdev_add(json_t *options, struct err *err)
{
    const char *node_name = json_string_value(json_object_get(options, "node-name"));

    if (!json_is_object(options)) {
        err_set(err, "blockdev options must be an object");
        return NULL;
    }
    if (!node_name || !*node_name) {
        err_set(err, "'node-name' must be specified for the root node");
        return NULL;
    }
    struct block_node *bs = bnode_open(NULL, options, BDRV_O_RDWR, err);
    if (!bs) {
        return NULL;
    }
    blockdev_adopt(bs);
    return bs;
}

void blockdev_adopt(struct block_node *bs)
{
    user_nodes = xrealloc(user_nodes, (nr_user_nodes + 1) * sizeof(*user_nodes));
    user_nodes[nr_user_nodes++] = bs;
}

/* Whether a device, export or job (a parent that is not a node) holds bs. */
static bool has_root_parent(struct block_node *bs)
{
    struct bdrv_child *c;
    list_for_each(c, &bs->parents, child_link) {
        if (!c->parent) {
            return true;
        }
    }
    return false;
}

static void flush_node(struct block_node *bs)
{
    int ret = bnode_flush(bs);
    if (ret < 0) {
        log_error("%s: flushing before closing failed: %s", bnode_describe(bs), strerror(-ret));
    }
}

static void drop_user_node(size_t i)
{
    struct block_node *bs = user_nodes[i];
    memmove(&user_nodes[i], &user_nodes[i + 1], (nr_user_nodes - i - 1) * sizeof(*user_nodes));
    nr_user_nodes--;
    if (!nr_user_nodes) {
        free(user_nodes);
        user_nodes = NULL;
    }
    flush_node(bs);
    bnode_unref(bs);
}

int blockdev_del(const char *node_name, struct err *err)
{
    struct block_node *bs = bnode_find(node_name);

    if (!bs) {
        err_set(err, "Failed to find node with node-name='%s'", node_name);
        return -ENOENT;
    }
    if (has_root_parent(bs)) {
        err_set(err, "Node %s is in use", node_name);
        return -EBUSY;
    }
    ssize_t i = user_index(bs);
    if (i < 0) {
        err_set(err, "Node %s is not owned by the monitor", node_name);
        return -EPERM;
    }
    if (bs->refcnt > 1) {
        err_set(err, "Block device %s is in use", node_name);
        return -EBUSY;
    }
    drop_user_node((size_t)i);
    return 0;
}

void blockdev_close_all(void)
{
    while (nr_user_nodes) {
        drop_user_node(nr_user_nodes - 1);
    }
}

struct block_node *blockdev_lookup(const char *device, const char *node_name, struct err *err)
{
    if (device) {
        struct block_backend *blk = blk_find(device);
        if (blk) {
            struct block_node *bs = blk_node(blk);
            if (!bs) {
                err_set(err, "Device '%s' has no medium", device);
            }
            return bs;
        }
    }
    if (node_name) {
        struct block_node *bs = bnode_find(node_name);
        if (bs) {
            return bs;
        }
    }
    err_set(err, "Cannot find device='%s' nor node-name='%s'", device ? device : "",
            node_name ? node_name : "");
    return NULL;
}

/* ---- blockdev-create --------------------------------------------------- */

/* raw: the image is its file node at the right size. */
static int coroutine_fn raw_create(json_t *options, struct err *err)
{
    json_t *file = json_object_get(options, "file");
    struct block_node *bs;
    uint64_t size;

    int ret = opts_get_size(options, "size", &size, err);
    if (ret == -ENOENT) {
        err_set(err, "Parameter 'size' is missing");
    }
    if (ret < 0) {
        return -EINVAL;
    }
    if (json_is_string(file)) {
        bs = bnode_find(json_string_value(file));
        if (!bs) {
            err_set(err, "Cannot find device='' nor node-name='%s'", json_string_value(file));
            return -ENOENT;
        }
        bnode_ref(bs);
    } else if (json_is_object(file)) {
        bs = bnode_open(NULL, file, BDRV_O_RDWR, err);
        if (!bs) {
            return -EINVAL;
        }
    } else {
        err_set(err, "Parameter 'file' is missing");
        return -EINVAL;
    }
    struct bdrv_child *c = bnode_root_attach(bs, "create", NULL, NULL);
    ret = bnode_co_truncate(c, (int64_t)size, true, PREALLOC_MODE_OFF, 0, err);
    if (ret == 0) {
        ret = bnode_co_flush(bs);
        if (ret < 0) {
            err_set_errno(err, ret, "%s: cannot flush", bnode_describe(bs));
        }
    }
    bnode_detach_child(c);
    bnode_unref(bs);
    return ret;
}

/*
 * QMP's names for a format's creation options, and the driver's own (those
 * qemu-img create -o takes).  Members not listed keep their names.
 */
static const struct {
    const char *qmp, *driver;
} create_renames[] = {
    { "cluster-size", "cluster_size" }, { "lazy-refcounts", "lazy_refcounts" },
    { "refcount-bits", "refcount_bits" }, { "compression-type", "compression_type" },
    { "extended-l2", "extended_l2" }, { "backing-file", "backing_file" },
    { "backing-fmt", "backing_fmt" }, { "data-file-raw", "data_file_raw" },
    { "extent-size-hint", "extent_size_hint" }, { "version", "compat" },
};

/* A BlockdevRef's file name: a node's, or an inline protocol's "filename". */
static const char *ref_filename(json_t *ref)
{
    if (json_is_string(ref)) {
        struct block_node *bs = bnode_find(json_string_value(ref));
        return bs ? bs->filename : NULL;
    }
    return json_string_value(json_object_get(ref, "filename"));
}

/*
 * A format's options for its co_create from QMP's: renamed, "file" a node
 * name (inline options are opened as *temp, which the caller drops), and
 * "data-file" a file name.  NULL with err.
 */
static json_t *format_create_options(json_t *options, struct block_node **temp,
                                     struct err *err)
{
    json_t *opts = json_object();
    const char *key;
    json_t *val;

    *temp = NULL;
    json_object_foreach(options, key, val) {
        const char *name = key;
        if (!strcmp(key, "driver")) {
            continue;
        }
        if (!strcmp(key, "file") && json_is_object(val)) {
            *temp = bnode_open(NULL, val, BDRV_O_RDWR, err);
            if (!*temp) {
                json_decref(opts);
                return NULL;
            }
            json_object_set_new(opts, "file", json_string((*temp)->node_name));
            continue;
        }
        if (!strcmp(key, "data-file")) {
            const char *path = ref_filename(val);
            if (!path) {
                err_set(err, "data-file: give an existing node or a file's options");
                json_decref(opts);
                return NULL;
            }
            json_object_set_new(opts, "data_file", json_string(path));
            continue;
        }
        for (size_t i = 0; i < ARRAY_SIZE(create_renames); i++) {
            if (!strcmp(key, create_renames[i].qmp)) {
                name = create_renames[i].driver;
            }
        }
        json_object_set(opts, name, val);
    }
    /* QMP gives the size; QEMU does not open the backing file to learn it. */
    if (json_object_get(opts, "backing_file")) {
        json_object_set_new(opts, "x-unsafe-backing", json_true());
    }
    return opts;
}

int coroutine_fn blockdev_co_create(json_t *options, struct err *err)
{
    const char *driver = NULL;

    if (opts_get_str(options, "driver", &driver, err) < 0) {
        if (!err_isset(err)) {
            err_set(err, "Parameter 'driver' is missing");
        }
        return -EINVAL;
    }
    const struct block_driver *drv = bdrv_find_driver(driver);
    if (!drv) {
        err_set(err, "Unknown driver '%s'", driver);
        return -EINVAL;
    }
    if (!strcmp(driver, "raw")) {
        return raw_create(options, err);
    }
    if (!drv->co_create) {
        err_set(err, "Driver does not support blockdev-create");
        return -ENOTSUP;
    }
    json_t *opts;
    struct block_node *temp = NULL;
    if (drv->is_format) {
        opts = format_create_options(options, &temp, err);
        if (!opts) {
            return -EINVAL;
        }
    } else {
        opts = json_deep_copy(options);
        json_object_del(opts, "driver");
    }
    int ret = drv->co_create(opts, err);
    json_decref(opts);
    bnode_unref(temp);
    if (ret < 0 && !err_isset(err)) {
        err_set_errno(err, ret, "Could not create the image");
    }
    return ret;
}

struct create_co {
    json_t *options;
    struct err *err;
    int ret;
};

static void create_entry(void *opaque)
{
    struct create_co *c = opaque;
    c->ret = blockdev_co_create(c->options, c->err);
}

int blockdev_create(json_t *options, struct err *err)
{
    struct create_co c = { options, err, 0 };
    co_run_sync(create_entry, &c);
    return c.ret;
}
