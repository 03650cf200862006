/* blockdev-add, blockdev-del, blockdev-create, block_resize; see qmp-block.h. */
#include "monitor/qmp-block.h"

#include <ctype.h>

#include "block/backend.h"
#include "block/blockdev.h"
#include "block/driver.h"
#include "monitor/command.h"

/* ---- Schemas (QEMU's BlockdevOptions and BlockdevCreateOptions) ---------- */

static const char *const discard_values[] = { "ignore", "unmap", NULL };
static const char *const detect_zeroes_values[] = { "off", "on", "unmap", NULL };
static const char *const aio_values[] = { "threads", "native", "io_uring", NULL };
static const char *const locking_values[] = { "off", "on", "auto", NULL };
static const char *const file_prealloc_values[] = { "off", "falloc", "full", NULL };
static const char *const prealloc_values[] = { "off", "metadata", "falloc", "full", NULL };
static const char *const qcow2_version_values[] = { "v2", "v3", NULL };
static const char *const compression_values[] = { "zlib", "zstd", NULL };

static const struct mon_arg cache_members[] = {
    { .name = "direct", .type = MON_T_BOOL, .optional = true },
    { .name = "no-flush", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

/* BlockdevRef: a node's name, or the options of a new node. */
static const struct mon_arg blockdev_ref_alts[] = {
    { .type = MON_T_STR },
    { .type = MON_T_OBJECT, .open = true },
    { .type = MON_T_END },
};

#define BLOCKDEV_REF(member, opt)                                                \
    { .name = member, .type = MON_T_ALT, .optional = opt,                        \
      .alts = blockdev_ref_alts, .type_name = "BlockdevRef" }

/* Members every node has (BlockdevOptions' base). */
#define BLOCKDEV_BASE                                                                      \
    { .name = "driver", .type = MON_T_STR },                                               \
    { .name = "node-name", .type = MON_T_STR, .optional = true },                          \
    { .name = "discard", .type = MON_T_ENUM, .optional = true, .values = discard_values }, \
    { .name = "cache", .type = MON_T_OBJECT, .optional = true, .members = cache_members }, \
    { .name = "read-only", .type = MON_T_BOOL, .optional = true },                         \
    { .name = "auto-read-only", .type = MON_T_BOOL, .optional = true },                    \
    { .name = "force-share", .type = MON_T_BOOL, .optional = true },                       \
    { .name = "detect-zeroes", .type = MON_T_ENUM, .optional = true,                       \
      .values = detect_zeroes_values }

static const struct mon_arg blockdev_base[] = { BLOCKDEV_BASE, { .name = NULL } };

static const struct mon_arg blockdev_file[] = {
    BLOCKDEV_BASE,
    { .name = "filename", .type = MON_T_STR },
    { .name = "aio", .type = MON_T_ENUM, .optional = true, .values = aio_values },
    { .name = "locking", .type = MON_T_ENUM, .optional = true, .values = locking_values },
    { .name = NULL },
};

static const struct mon_arg blockdev_raw[] = {
    BLOCKDEV_BASE,
    BLOCKDEV_REF("file", false),
    { .name = "offset", .type = MON_T_INT, .optional = true },
    { .name = "size", .type = MON_T_INT, .optional = true },
    { .name = NULL },
};

static const struct mon_arg blockdev_null[] = {
    BLOCKDEV_BASE,
    { .name = "size", .type = MON_T_INT, .optional = true },
    { .name = "latency-ns", .type = MON_T_U64, .optional = true },
    { .name = "read-zeroes", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static const struct {
    const char *driver;
    const struct mon_arg *members;
} blockdev_schemas[] = {
    { "file", blockdev_file },
    { "raw", blockdev_raw },
    { "null-co", blockdev_null },
};

static const struct mon_arg create_file[] = {
    { .name = "driver", .type = MON_T_STR },
    { .name = "filename", .type = MON_T_STR },
    { .name = "size", .type = MON_T_SIZE },
    { .name = "preallocation", .type = MON_T_ENUM, .optional = true,
      .values = file_prealloc_values },
    { .name = "nocow", .type = MON_T_BOOL, .optional = true },
    { .name = "extent-size-hint", .type = MON_T_SIZE, .optional = true },
    { .name = NULL },
};

static const struct mon_arg create_raw[] = {
    { .name = "driver", .type = MON_T_STR },
    BLOCKDEV_REF("file", false),
    { .name = "size", .type = MON_T_SIZE },
    { .name = NULL },
};

static const struct mon_arg create_qcow2[] = {
    { .name = "driver", .type = MON_T_STR },
    BLOCKDEV_REF("file", false),
    BLOCKDEV_REF("data-file", true),
    { .name = "data-file-raw", .type = MON_T_BOOL, .optional = true },
    { "extended-l2", MON_T_BOOL, .optional = true },
    { .name = "size", .type = MON_T_SIZE },
    { .name = "version", .type = MON_T_ENUM, .optional = true, .values = qcow2_version_values },
    { .name = "backing-file", .type = MON_T_STR, .optional = true },
    { .name = "backing-fmt", .type = MON_T_STR, .optional = true },
    { .name = "encrypt", .type = MON_T_OBJECT, .optional = true, .open = true },
    { .name = "cluster-size", .type = MON_T_SIZE, .optional = true },
    { .name = "preallocation", .type = MON_T_ENUM, .optional = true, .values = prealloc_values },
    { .name = "lazy-refcounts", .type = MON_T_BOOL, .optional = true },
    { .name = "refcount-bits", .type = MON_T_INT, .optional = true },
    { .name = "compression-type", .type = MON_T_ENUM, .optional = true,
      .values = compression_values },
    { .name = NULL },
};

#define CREATE_ARGS(options_members)                                             \
    (const struct mon_arg[]){                                                    \
        { .name = "job-id", .type = MON_T_STR },                                                 \
        { .name = "options", .type = MON_T_OBJECT, .members = options_members },                 \
        { .name = NULL },                                                                \
    }

static const struct {
    const char *driver;
    const struct mon_arg *args;
} create_schemas[] = {
    { "file", CREATE_ARGS(create_file) },
    { "raw", CREATE_ARGS(create_raw) },
    { "qcow2", CREATE_ARGS(create_qcow2) },
};

/* ---- blockdev-add, blockdev-del ---------------------------------------- */

static json_t *qmp_blockdev_add(struct mon_session *s, json_t *args, struct mon_err *err)
{
    const char *driver = json_string_value(json_object_get(args, "driver"));

    if (!bdrv_find_driver(driver)) {
        mon_err_set(err, MON_ERR_GENERIC, "Parameter 'driver' does not accept value '%s'",
                    driver);
        return NULL;
    }
    for (size_t i = 0; i < ARRAY_SIZE(blockdev_schemas); i++) {
        if (!strcmp(blockdev_schemas[i].driver, driver) &&
            mon_args_check(blockdev_schemas[i].members, false, args, &err->err) < 0) {
            return NULL;
        }
    }
    if (!blockdev_add(args, &err->err)) {
        return NULL;
    }
    return json_object();
}

static const struct mon_arg blockdev_del_args[] = {
    { .name = "node-name", .type = MON_T_STR },
    { .name = NULL },
};

static json_t *qmp_blockdev_del(struct mon_session *s, json_t *args, struct mon_err *err)
{
    if (blockdev_del(json_string_value(json_object_get(args, "node-name")), &err->err) < 0) {
        return NULL;
    }
    return json_object();
}

/* ---- blockdev-create --------------------------------------------------- */

static const struct mon_arg create_base_options[] = {
    { .name = "driver", .type = MON_T_STR },
    { .name = NULL },
};

static const struct mon_arg blockdev_create_args[] = {
    { .name = "job-id", .type = MON_T_STR },
    { .name = "options", .type = MON_T_OBJECT, .open = true, .members = create_base_options },
    { .name = NULL },
};

/* QEMU's rule for IDs: a letter, then letters, digits, '-', '.' and '_'. */
static bool id_wellformed(const char *id)
{
    if (!isalpha((unsigned char)id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

static json_t *qmp_blockdev_create(struct mon_session *s, json_t *args, struct mon_err *err)
{
    json_t *options = json_object_get(args, "options");
    const char *driver = json_string_value(json_object_get(options, "driver"));
    const char *job_id = json_string_value(json_object_get(args, "job-id"));
    const struct block_driver *drv = bdrv_find_driver(driver);

    if (!drv) {
        mon_err_set(err, MON_ERR_GENERIC,
                    "Parameter 'options.driver' does not accept value '%s'", driver);
        return NULL;
    }
    for (size_t i = 0; i < ARRAY_SIZE(create_schemas); i++) {
        if (!strcmp(create_schemas[i].driver, driver) &&
            mon_args_check(create_schemas[i].args, false, args, &err->err) < 0) {
            return NULL;
        }
    }
    if (!drv->co_create) {
        mon_err_set(err, MON_ERR_GENERIC, "Driver does not support blockdev-create");
        return NULL;
    }
    if (!id_wellformed(job_id)) {
        mon_err_set(err, MON_ERR_GENERIC, "Invalid job ID '%s'", job_id);
        return NULL;
    }
    /*
     * The job "create" of QEMU, run to its end before the reply: the
     * image exists when {} comes back, and an error comes back as this
     * command's error.  No JOB_STATUS_CHANGE is sent until the job core
     * runs blockdev_co_create in a job.
     */
    if (blockdev_create(options, &err->err) < 0) {
        return NULL;
    }
    return json_object();
}

/* ---- block_resize ------------------------------------------------------ */

static const struct mon_arg block_resize_args[] = {
    { .name = "device", .type = MON_T_STR, .optional = true },
    { .name = "node-name", .type = MON_T_STR, .optional = true },
    { .name = "size", .type = MON_T_INT },
    { .name = NULL },
};

static json_t *qmp_block_resize(struct mon_session *s, json_t *args, struct mon_err *err)
{
    const char *device = json_string_value(json_object_get(args, "device"));
    const char *node_name = json_string_value(json_object_get(args, "node-name"));
    json_int_t size = json_integer_value(json_object_get(args, "size"));

    struct block_node *bs = blockdev_lookup(device, node_name, &err->err);
    if (!bs) {
        return NULL;
    }
    if (size < 0) {
        mon_err_set(err, MON_ERR_GENERIC, "Parameter 'size' expects a >0 size");
        return NULL;
    }
    struct block_backend *blk = blk_new("");
    int ret = blk_insert_node(blk, bs, &err->err);
    if (ret == 0) {
        ret = blk_truncate(blk, size, false, PREALLOC_MODE_OFF, 0, &err->err);
    }
    blk_unref(blk);
    return ret < 0 ? NULL : json_object();
}

static const struct mon_cmd block_cmds[] = {
    { "blockdev-add", qmp_blockdev_add, blockdev_base, MON_CMD_ARGS_OPEN },
    { "blockdev-del", qmp_blockdev_del, blockdev_del_args, 0 },
    { "blockdev-create", qmp_blockdev_create, blockdev_create_args, 0 },
    { "block_resize", qmp_block_resize, block_resize_args, 0 },
};

void qmp_block_register(void)
{
    mon_cmd_register(block_cmds, ARRAY_SIZE(block_cmds));
}
