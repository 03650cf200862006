/* Live snapshots: new overlays on top of running nodes; see overlay.h. */
#include "block/overlay.h"

#include <unistd.h>

#include "block/driver.h"
#include "util/log.h"

int bnode_append_overlay(struct block_node *top, struct block_node *overlay, struct err *err)
{
    struct block_node *fmt = bnode_skip_filters(overlay);
    if (!fmt->drv->supports_backing) {
        err_set(err, "The overlay does not support backing images");
        return -ENOTSUP;
    }
    if (fmt->backing) {
        err_set(err, "The overlay already has a backing image");
        return -EEXIST;
    }
    if (overlay == top || bnode_chain_contains(top, overlay)) {
        err_set(err, "The overlay is already in use");
        return -EBUSY;
    }
    if (bnode_getlength(overlay) < bnode_getlength(top)) {
        err_set(err, "The overlay is smaller than the image it would cover");
        return -EINVAL;
    }
    bnode_ref(top);
    bnode_drained_begin(top);
    bnode_drained_begin(overlay);
    bnode_set_backing(fmt, top);
    /* overlay's own backing edge comes from below `to`, so it stays on top. */
    bnode_replace_node(top, overlay, err);
    bnode_drained_end(overlay);
    bnode_drained_end(top);
    bnode_unref(top);
    trace("bnode_snapshot", "%s over %s", overlay->node_name, top->node_name);
    return 0;
}

struct block_node *bnode_snapshot_sync(struct block_node *top, const char *snapshot_file,
                                       const char *format, const char *node_name,
                                       bool existing, struct err *err)
{
    const char *fmt = format ? format : "qcow2";
    struct block_node *top_fmt = bnode_skip_filters(top);
    bool created = false;

    if (node_name && bnode_find(node_name)) {
        err_set(err, "Duplicate nodes with node-name='%s'", node_name);
        return NULL;
    }
    if (!existing) {
        /* The backing image is open and locked here: the size comes from it, not a reopen. */
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:b}", "filename", snapshot_file, "size",
                              (json_int_t)bnode_getlength(top), "backing_file",
                              top_fmt->filename, "backing_fmt", bnode_format_name(top_fmt),
                              "x-unsafe-backing", true);
        int ret = bdrv_create(fmt, o, err);
        json_decref(o);
        if (ret < 0) {
            err_prepend(err, "%s: ", snapshot_file);
            return NULL;
        }
        created = true;
    } else if (access(snapshot_file, F_OK) < 0) {
        err_set(err, "Could not open '%s': No such file or directory", snapshot_file);
        return NULL;
    }
    /* Opened without its backing: the running node becomes it. */
    json_t *o = json_pack("{s:s, s:n}", "driver", fmt, "backing");
    if (node_name) {
        json_object_set_new(o, "node-name", json_string(node_name));
    }
    struct block_node *overlay = bnode_open(snapshot_file, o, BDRV_O_RDWR, err);
    json_decref(o);
    if (!overlay || bnode_append_overlay(top, overlay, err) < 0) {
        if (overlay) {
            bnode_unref(overlay);
        }
        if (created) {
            unlink(snapshot_file);
        }
        return NULL;
    }
    return overlay;
}
