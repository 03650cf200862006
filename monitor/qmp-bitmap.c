/* block-dirty-bitmap-*; see qmp-bitmap.h. */
#include "monitor/qmp-bitmap.h"

#include "block/blockdev.h"
#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "monitor/command.h"

/* The node and bitmap a command names; NULL with QEMU's sentences. */
static struct bdrv_dirty_bitmap *lookup(const char *node, const char *name,
                                        struct block_node **pbs, struct err *err)
{
    struct block_node *bs = blockdev_lookup(node, node, err);
    if (!bs) {
        return NULL;
    }
    struct bdrv_dirty_bitmap *bm = bdrv_find_dirty_bitmap(bs, name);
    if (!bm) {
        err_set(err, "Dirty bitmap '%s' not found", name);
        return NULL;
    }
    if (pbs) {
        *pbs = bs;
    }
    return bm;
}

static const char *arg_str(json_t *args, const char *key)
{
    return json_string_value(json_object_get(args, key));
}

/* Formats that keep bitmaps in the image. */
static bool can_store_bitmaps(struct block_node *bs)
{
    return !strcmp(bnode_format_name(bs), "qcow2");
}

static const struct mon_arg add_args[] = {
    { .name = "node", .type = MON_T_STR },
    { .name = "name", .type = MON_T_STR },
    { .name = "granularity", .type = MON_T_U32, .optional = true },
    { .name = "persistent", .type = MON_T_BOOL, .optional = true },
    { .name = "disabled", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static json_t *qmp_bitmap_add(struct mon_session *s, json_t *args, struct mon_err *err)
{
    const char *node = arg_str(args, "node");
    const char *name = arg_str(args, "name");
    json_t *gran = json_object_get(args, "granularity");
    bool persistent = json_is_true(json_object_get(args, "persistent"));

    struct block_node *bs = blockdev_lookup(node, node, &err->err);
    if (!bs) {
        return NULL;
    }
    if (!*name) {
        mon_err_set(err, MON_ERR_GENERIC, "Bitmap name cannot be empty");
        return NULL;
    }
    uint64_t g = gran ? (uint64_t)json_integer_value(gran) : 0;
    if (gran && (g < 512 || !is_power_of_2(g))) {
        mon_err_set(err, MON_ERR_GENERIC, "Granularity must be power of 2 and at least 512");
        return NULL;
    }
    if (persistent && !can_store_bitmaps(bs)) {
        mon_err_set(err, MON_ERR_GENERIC, "Can't store persistent bitmaps to %s: %s",
                    bs->node_name, strerror(ENOTSUP));
        return NULL;
    }
    struct bdrv_dirty_bitmap *bm = bdrv_create_dirty_bitmap(bs, (uint32_t)g, name, &err->err);
    if (!bm) {
        return NULL;
    }
    bm->persistent = persistent;
    if (json_is_true(json_object_get(args, "disabled"))) {
        bdrv_disable_dirty_bitmap(bm);
    }
    return json_object();
}

static const struct mon_arg node_name_args[] = {
    { .name = "node", .type = MON_T_STR },
    { .name = "name", .type = MON_T_STR },
    { .name = NULL },
};

static json_t *qmp_bitmap_remove(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct bdrv_dirty_bitmap *bm = lookup(arg_str(args, "node"), arg_str(args, "name"), NULL,
                                          &err->err);
    if (!bm || bdrv_dirty_bitmap_check_user(bm, &err->err) < 0) {
        return NULL;
    }
    bdrv_release_dirty_bitmap(bm);
    return json_object();
}

static json_t *qmp_bitmap_clear(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct bdrv_dirty_bitmap *bm = lookup(arg_str(args, "node"), arg_str(args, "name"), NULL,
                                          &err->err);
    if (!bm || bdrv_dirty_bitmap_check_user(bm, &err->err) < 0) {
        return NULL;
    }
    bdrv_clear_dirty_bitmap(bm);
    return json_object();
}

/* Enabling and disabling need the bitmap unused, not writable (QEMU's ALLOW_RO). */
static int check_toggle(struct bdrv_dirty_bitmap *bm, struct err *err)
{
    if (bm->busy) {
        err_set(err, "Bitmap '%s' is currently in use by another operation and cannot be used",
                bm->name);
        return -EBUSY;
    }
    if (bm->inconsistent) {
        err_set(err, "Bitmap '%s' is inconsistent and cannot be used", bm->name);
        return -EINVAL;
    }
    return 0;
}

static json_t *qmp_bitmap_enable(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct bdrv_dirty_bitmap *bm = lookup(arg_str(args, "node"), arg_str(args, "name"), NULL,
                                          &err->err);
    if (!bm || check_toggle(bm, &err->err) < 0) {
        return NULL;
    }
    bdrv_enable_dirty_bitmap(bm);
    return json_object();
}

static json_t *qmp_bitmap_disable(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct bdrv_dirty_bitmap *bm = lookup(arg_str(args, "node"), arg_str(args, "name"), NULL,
                                          &err->err);
    if (!bm || check_toggle(bm, &err->err) < 0) {
        return NULL;
    }
    bdrv_disable_dirty_bitmap(bm);
    return json_object();
}

/* BlockDirtyBitmapOrStr: a bitmap of the target's node by name, or {node, name}. */
static const struct mon_arg bitmap_ref_members[] = {
    { .name = "node", .type = MON_T_STR },
    { .name = "name", .type = MON_T_STR },
    { .name = NULL },
};

static const struct mon_arg bitmap_ref_alts[] = {
    { .type = MON_T_STR },
    { .type = MON_T_OBJECT, .members = bitmap_ref_members },
    { .type = MON_T_END },
};

static const struct mon_arg merge_args[] = {
    { .name = "node", .type = MON_T_STR },
    { .name = "target", .type = MON_T_STR },
    { .name = "bitmaps", .type = MON_T_ARRAY,
      .elem = &(const struct mon_arg){ .type = MON_T_ALT, .alts = bitmap_ref_alts,
                                       .type_name = "BlockDirtyBitmapOrStr" } },
    { .name = NULL },
};

static json_t *qmp_bitmap_merge(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *bs;
    struct bdrv_dirty_bitmap *target = lookup(arg_str(args, "node"), arg_str(args, "target"),
                                              &bs, &err->err);
    json_t *sources = json_object_get(args, "bitmaps");
    size_t n = json_array_size(sources), i;
    json_t *ref;

    if (!target || bdrv_dirty_bitmap_check_user(target, &err->err) < 0) {
        return NULL;
    }
    /* Every source must exist before anything changes. */
    struct bdrv_dirty_bitmap **src = xcalloc(n ? n : 1, sizeof(*src));
    json_array_foreach(sources, i, ref) {
        if (json_is_string(ref)) {
            src[i] = bdrv_find_dirty_bitmap(bs, json_string_value(ref));
            if (!src[i]) {
                mon_err_set(err, MON_ERR_GENERIC, "Dirty bitmap '%s' not found",
                            json_string_value(ref));
            }
        } else {
            src[i] = lookup(arg_str(ref, "node"), arg_str(ref, "name"), NULL, &err->err);
        }
        if (!src[i]) {
            free(src);
            return NULL;
        }
        if (src[i]->inconsistent) {
            mon_err_set(err, MON_ERR_GENERIC, "Bitmap '%s' is inconsistent and cannot be used",
                        src[i]->name);
            free(src);
            return NULL;
        }
    }
    for (i = 0; i < n; i++) {
        if (bdrv_merge_dirty_bitmap(target, src[i], &err->err) < 0) {
            break;
        }
    }
    free(src);
    return err->err.set ? NULL : json_object();
}

static const struct mon_cmd bitmap_cmds[] = {
    { "block-dirty-bitmap-add", qmp_bitmap_add, add_args, 0 },
    { "block-dirty-bitmap-remove", qmp_bitmap_remove, node_name_args, 0 },
    { "block-dirty-bitmap-clear", qmp_bitmap_clear, node_name_args, 0 },
    { "block-dirty-bitmap-enable", qmp_bitmap_enable, node_name_args, 0 },
    { "block-dirty-bitmap-disable", qmp_bitmap_disable, node_name_args, 0 },
    { "block-dirty-bitmap-merge", qmp_bitmap_merge, merge_args, 0 },
};

void qmp_bitmap_register(void)
{
    mon_cmd_register(bitmap_cmds, ARRAY_SIZE(bitmap_cmds));
}
