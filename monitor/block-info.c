/* What QMP reports about nodes and backends; see block-info.h. */
#include "monitor/block-info.h"

#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "monitor/command.h"

json_t *mon_image_info(struct block_node *bs, bool flat, struct err *err)
{
    json_t *o = json_object();
    json_object_set_new(o, "virtual-size", json_integer(bnode_getlength(bs)));
    json_object_set_new(o, "filename", json_string(bs->filename));
    json_object_set_new(o, "format", json_string(bnode_format_name(bs)));
    json_object_set_new(o, "dirty-flag", json_boolean(bs->drv->is_dirty && bs->drv->is_dirty(bs)));
    int64_t actual = bnode_get_allocated_file_size(bs);
    if (actual >= 0) {
        json_object_set_new(o, "actual-size", json_integer(actual));
    }
    int64_t cluster = bs->drv->get_cluster_size ? bs->drv->get_cluster_size(bs) : 0;
    if (cluster > 0) {
        json_object_set_new(o, "cluster-size", json_integer(cluster));
    }
    json_t *specific = bnode_get_specific_info(bs, err);
    if (err_isset(err)) {
        json_decref(o);
        return NULL;
    }
    if (specific) {
        json_object_set_new(o, "format-specific", specific);
    }
    if (bs->backing_file[0]) {
        const char *base = bs->file ? bs->file->bs->filename : bs->filename;
        char *full = bdrv_resolve_relative(base, bs->backing_file);
        json_object_set_new(o, "backing-filename", json_string(bs->backing_file));
        json_object_set_new(o, "full-backing-filename", json_string(full));
        free(full);
        if (bs->backing_format[0]) {
            json_object_set_new(o, "backing-filename-format", json_string(bs->backing_format));
        }
        struct block_node *backing = bnode_backing_bs(bs);
        if (!flat && backing) {
            json_t *b = mon_image_info(backing, false, err);
            if (!b) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, "backing-image", b);
        }
    }
    return o;
}

static const char *detect_zeroes_name(int mode)
{
    switch (mode) {
    case BDRV_DETECT_ZEROES_ON:
        return "on";
    case BDRV_DETECT_ZEROES_UNMAP:
        return "unmap";
    default:
        return "off";
    }
}

json_t *mon_block_device_info(struct block_backend *blk, struct block_node *bs, bool flat,
                              struct err *err)
{
    json_t *image = mon_image_info(bs, flat, err);
    if (!image) {
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(bs->filename));
    if (bs->node_name[0]) {
        json_object_set_new(o, "node-name", json_string(bs->node_name));
    }
    json_object_set_new(o, "ro", json_boolean(bs->read_only));
    json_object_set_new(o, "drv", json_string(bnode_format_name(bs)));
    if (bs->backing_file[0]) {
        json_object_set_new(o, "backing_file", json_string(bs->backing_file));
    }
    int depth = 0;
    for (struct block_node *b = bnode_backing_bs(bs); b; b = bnode_backing_bs(b)) {
        depth++;
    }
    json_object_set_new(o, "backing_file_depth", json_integer(depth));
    json_object_set_new(o, "encrypted", json_false());
    json_object_set_new(o, "detect_zeroes", json_string(detect_zeroes_name(bs->detect_zeroes)));
    /* Throttling reports its limits here once it exists: none yet. */
    static const char *const limits[] = { "bps", "bps_rd", "bps_wr", "iops", "iops_rd",
                                          "iops_wr" };
    for (size_t i = 0; i < ARRAY_SIZE(limits); i++) {
        json_object_set_new(o, limits[i], json_integer(0));
    }
    json_object_set_new(o, "image", image);
    json_object_set_new(o, "cache", json_pack("{s:b, s:b, s:b}", "writeback",
                                              blk ? blk_write_cache_enabled(blk) : true,
                                              "direct", !!(bs->open_flags & BDRV_O_NOCACHE),
                                              "no-flush", !!(bs->open_flags & BDRV_O_NO_FLUSH)));
    json_object_set_new(o, "write_threshold", json_integer(0));
    json_t *bitmaps = bdrv_dirty_bitmaps_info(bs);
    size_t n = json_array_size(bitmaps);
    if (n) {
        /* Newest first, as QEMU lists them. */
        json_t *newest_first = json_array();
        for (size_t i = n; i-- > 0;) {
            json_array_append(newest_first, json_array_get(bitmaps, i));
        }
        json_object_set_new(o, "dirty-bitmaps", newest_first);
    }
    json_decref(bitmaps);
    return o;
}

bool mon_backend_is_listed(struct block_backend *blk)
{
    return blk_name(blk)[0] || blk_dev_name(blk);
}

json_t *mon_block_info(struct block_backend *blk, struct err *err)
{
    const char *dev = blk_dev_name(blk);
    json_t *o = json_object();
    json_object_set_new(o, "device", json_string(blk_name(blk)));
    if (dev) {
        json_object_set_new(o, "qdev", json_string(dev));
    }
    json_object_set_new(o, "type", json_string("unknown"));
    /* Without a device the medium could be changed: QEMU calls that removable. */
    json_object_set_new(o, "removable", json_boolean(!dev));
    json_object_set_new(o, "locked", json_false());
    struct block_node *bs = blk_node(blk);
    if (bs) {
        json_t *inserted = mon_block_device_info(blk, bs, false, err);
        if (!inserted) {
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "inserted", inserted);
    }
    if (dev) {
        static const char *const names[] = { "ok", "failed", "nospace" };
        json_object_set_new(o, "io-status", json_string(names[blk_iostatus(blk)]));
    }
    return o;
}

/* ---- Statistics -------------------------------------------------------- */

/* A node's own statistics: none but the highest offset written. */
static json_t *node_stats(struct block_node *bs)
{
    struct blk_stats zero;
    memset(&zero, 0, sizeof(zero));
    atomic_store(&zero.wr_highest_offset, atomic_load(&bs->wr_highest_offset));
    json_t *o = blk_stats_to_json(&zero);
    json_object_set_new(o, "account_invalid", json_false());
    json_object_set_new(o, "account_failed", json_false());
    json_object_del(o, "rd_latency_histogram");
    json_object_del(o, "wr_latency_histogram");
    json_object_del(o, "flush_latency_histogram");
    return o;
}

static json_t *node_level_stats(struct block_node *bs, bool with_backing)
{
    json_t *o = json_object();
    if (bs->node_name[0]) {
        json_object_set_new(o, "node-name", json_string(bs->node_name));
    }
    json_object_set_new(o, "stats", node_stats(bs));
    if (bs->file) {
        json_object_set_new(o, "parent", node_level_stats(bs->file->bs, with_backing));
    }
    if (with_backing && bs->backing) {
        json_object_set_new(o, "backing", node_level_stats(bs->backing->bs, with_backing));
    }
    return o;
}

json_t *mon_block_stats(struct block_backend *blk, struct block_node *bs)
{
    if (!blk) {
        return node_level_stats(bs, false);
    }
    json_t *o = bs ? node_level_stats(bs, true) : json_object();
    json_object_set_new(o, "device", json_string(blk_name(blk)));
    if (blk_dev_name(blk)) {
        json_object_set_new(o, "qdev", json_string(blk_dev_name(blk)));
    }
    json_object_set_new(o, "stats", blk_stats_to_json(blk_get_stats(blk)));
    return o;
}

/* ---- Commands ---------------------------------------------------------- */

struct list_ctx {
    json_t *list;
    bool flat;
    struct err *err;
};

static int add_block_info(struct block_backend *blk, void *opaque)
{
    struct list_ctx *l = opaque;
    if (!mon_backend_is_listed(blk)) {
        return 0;
    }
    json_t *info = mon_block_info(blk, l->err);
    if (!info) {
        return -EIO;
    }
    json_array_append_new(l->list, info);
    return 0;
}

static json_t *qmp_query_block(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct list_ctx l = { json_array(), false, &err->err };
    if (blk_foreach(add_block_info, &l) < 0) {
        json_decref(l.list);
        return NULL;
    }
    return l.list;
}

static int add_node_info(struct block_node *bs, void *opaque)
{
    struct list_ctx *l = opaque;
    json_t *info = mon_block_device_info(NULL, bs, l->flat, l->err);
    if (!info) {
        return -EIO;
    }
    /* Newest first, as QEMU lists them. */
    json_array_insert_new(l->list, 0, info);
    return 0;
}

static const struct mon_arg named_nodes_args[] = {
    { .name = "flat", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static json_t *qmp_query_named_block_nodes(struct mon_session *s, json_t *args,
                                           struct mon_err *err)
{
    struct list_ctx l = { json_array(), json_is_true(json_object_get(args, "flat")),
                          &err->err };
    if (bnode_foreach(add_node_info, &l) < 0) {
        json_decref(l.list);
        return NULL;
    }
    return l.list;
}

static int add_backend_stats(struct block_backend *blk, void *opaque)
{
    if (mon_backend_is_listed(blk)) {
        json_array_append_new(opaque, mon_block_stats(blk, blk_node(blk)));
    }
    return 0;
}

static int add_node_stats(struct block_node *bs, void *opaque)
{
    json_array_append_new(opaque, mon_block_stats(NULL, bs));
    return 0;
}

static const struct mon_arg blockstats_args[] = {
    { .name = "query-nodes", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static json_t *qmp_query_blockstats(struct mon_session *s, json_t *args, struct mon_err *err)
{
    json_t *list = json_array();
    if (json_is_true(json_object_get(args, "query-nodes"))) {
        bnode_foreach(add_node_stats, list);
    } else {
        blk_foreach(add_backend_stats, list);
    }
    return list;
}

static const struct mon_cmd block_info_cmds[] = {
    { "query-block", qmp_query_block, NULL, 0 },
    { "query-named-block-nodes", qmp_query_named_block_nodes, named_nodes_args, 0 },
    { "query-blockstats", qmp_query_blockstats, blockstats_args, 0 },
};

void qmp_block_info_register(void)
{
    mon_cmd_register(block_info_cmds, ARRAY_SIZE(block_info_cmds));
}
