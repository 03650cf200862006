/*
 * The job commands and events: block-stream, block-commit,
 * blockdev-mirror, drive-mirror, blockdev-backup, blockdev-snapshot(-sync),
 * block-job-*, job-*, query-block-jobs, query-jobs, with QEMU's argument
 * names and reply shapes; the job core's listener becomes
 * JOB_STATUS_CHANGE and the BLOCK_JOB_* events.
 */
#include "monitor/qmp-job.h"

#include "block/blockdev.h"
#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "block/overlay.h"
#include "blockjobs/backup.h"
#include "blockjobs/chain.h"
#include "blockjobs/mirror.h"
#include "monitor/command.h"
#include "monitor/event.h"
#include "monitor/schema.h"
#include "util/log.h"

/* ---- Events ------------------------------------------------------------ */

static struct mon_job_progress progress_of(struct job *job)
{
    return (struct mon_job_progress){
        .type = job->driver->type,
        .device = job->id,
        .len = (int64_t)job->progress_total,
        .offset = (int64_t)job->progress_current,
        .speed = (int64_t)job->speed,
    };
}

static void ev_status(struct job *job)
{
    mon_event_job_status_change(job->id, job_status_name(job->status));
}

static void ev_ready(struct job *job)
{
    struct mon_job_progress p = progress_of(job);
    mon_event_block_job_ready(&p);
}

static void ev_pending(struct job *job)
{
    mon_event_block_job_pending(job->driver->type, job->id);
}

static void ev_completed(struct job *job)
{
    struct mon_job_progress p = progress_of(job);
    mon_event_block_job_completed(&p, job->error);
}

static void ev_cancelled(struct job *job)
{
    struct mon_job_progress p = progress_of(job);
    mon_event_block_job_cancelled(&p);
}

static void ev_error(struct job *job, bool is_read, const char *action)
{
    mon_event_block_job_error(job->id, is_read, action);
}

static const struct job_listener monitor_listener = {
    .status_change = ev_status,
    .ready = ev_ready,
    .pending = ev_pending,
    .completed = ev_completed,
    .cancelled = ev_cancelled,
    .io_error = ev_error,
};

/* ---- Arguments --------------------------------------------------------- */

static const char *const on_error_values[] = { "report", "ignore", "enospc", "stop", "auto",
                                               NULL };
static const char *const mirror_sync_values[] = { "top", "full", "none", "incremental",
                                                  "bitmap", NULL };
static const char *const copy_mode_values[] = { "background", "write-blocking", NULL };
static const char *const mode_values[] = { "existing", "absolute-paths", NULL };

static const char *arg_str(json_t *args, const char *name)
{
    return json_string_value(json_object_get(args, name));
}

static bool arg_bool(json_t *args, const char *name, bool dflt)
{
    json_t *v = json_object_get(args, name);
    return v ? json_is_true(v) : dflt;
}

static int64_t arg_int(json_t *args, const char *name, int64_t dflt)
{
    json_t *v = json_object_get(args, name);
    return v ? (int64_t)json_integer_value(v) : dflt;
}

static enum job_error_policy arg_policy(json_t *args, const char *name)
{
    enum job_error_policy p = JOB_ERROR_REPORT;
    const char *s = arg_str(args, name);
    if (s && strcmp(s, "auto")) {
        job_error_policy_parse(s, &p);
    }
    return p;
}

/* A node named by "device": a backend's name, else a node name (as QEMU). */
static struct block_node *lookup_device(const char *device, struct mon_err *err)
{
    struct err e = { 0 };
    struct block_node *bs = blockdev_lookup(device, NULL, &e);
    if (!bs) {
        bs = bnode_find(device);
    }
    if (!bs) {
        mon_err_set(err, MON_ERR_GENERIC, "Cannot find device='%s' nor node-name='%s'", device,
                    device);
    }
    return bs;
}

static struct block_node *lookup_node(const char *name, struct mon_err *err)
{
    struct block_node *bs = bnode_find(name);
    if (!bs) {
        mon_err_set(err, MON_ERR_GENERIC, "Cannot find device='' nor node-name='%s'", name);
    }
    return bs;
}

/* A job of any kind, by id, or QEMU's DeviceNotActive error. */
static struct job *lookup_job(const char *id, struct mon_err *err)
{
    struct job *job = job_find(id);
    if (!job) {
        mon_err_set(err, MON_ERR_DEVICE_NOT_ACTIVE, "Block job '%s' not found", id);
    }
    return job;
}

#define JOB_COMMON_ARGS                                                              \
    { .name = "job-id", .type = MON_T_STR, .optional = true },                       \
    { .name = "speed", .type = MON_T_INT, .optional = true },                        \
    { .name = "auto-finalize", .type = MON_T_BOOL, .optional = true },               \
    { .name = "auto-dismiss", .type = MON_T_BOOL, .optional = true }

/* ---- block-stream ------------------------------------------------------ */

static const struct mon_arg stream_args[] = {
    JOB_COMMON_ARGS,
    { .name = "device", .type = MON_T_STR },
    { .name = "base", .type = MON_T_STR, .optional = true },
    { .name = "base-node", .type = MON_T_STR, .optional = true },
    { .name = "bottom", .type = MON_T_STR, .optional = true },
    { .name = "backing-file", .type = MON_T_STR, .optional = true },
    { .name = "on-error", .type = MON_T_ENUM, .optional = true, .values = on_error_values },
    { .name = "filter-node-name", .type = MON_T_STR, .optional = true },
    { .name = NULL },
};

/* A node of bs's chain named by its image file name (QEMU's "base": a file name). */
static struct block_node *chain_node_by_file(struct block_node *bs, const char *file)
{
    for (struct block_node *p = bnode_backing_bs(bs); p; p = bnode_backing_bs(p)) {
        if (!strcmp(bnode_skip_filters(p)->filename, file)) {
            return p;
        }
    }
    return NULL;
}

static json_t *qmp_block_stream(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *bs = lookup_device(arg_str(args, "device"), err);
    struct block_node *base = NULL;
    if (!bs) {
        return NULL;
    }
    if ((arg_str(args, "base") != NULL) + (arg_str(args, "base-node") != NULL) +
            (arg_str(args, "bottom") != NULL) > 1) {
        mon_err_set(err, MON_ERR_GENERIC, "'base', 'base-node' and 'bottom' are mutually "
                    "exclusive");
        return NULL;
    }
    if (arg_str(args, "base")) {
        base = chain_node_by_file(bs, arg_str(args, "base"));
        if (!base) {
            mon_err_set(err, MON_ERR_GENERIC, "Can't find '%s' in the backing chain",
                        arg_str(args, "base"));
            return NULL;
        }
    } else if (arg_str(args, "base-node")) {
        base = lookup_node(arg_str(args, "base-node"), err);
        if (!base) {
            return NULL;
        }
    } else if (arg_str(args, "bottom")) {
        struct block_node *bottom = lookup_node(arg_str(args, "bottom"), err);
        if (!bottom) {
            return NULL;
        }
        base = bnode_backing_bs(bottom);
    }
    if (arg_str(args, "filter-node-name")) {
        mon_err_set(err, MON_ERR_GENERIC, "block-stream: filter-node-name is not supported");
        return NULL;
    }
    struct stream_params p = {
        .job_id = arg_str(args, "job-id"), .bs = bnode_skip_filters(bs), .base = base,
        .backing_file = arg_str(args, "backing-file"), .speed = arg_int(args, "speed", 0),
        .on_error = arg_policy(args, "on-error"),
        .auto_finalize = arg_bool(args, "auto-finalize", true),
        .auto_dismiss = arg_bool(args, "auto-dismiss", true),
    };
    return stream_start(&p, &err->err) ? json_object() : NULL;
}

/* ---- block-commit ------------------------------------------------------ */

static const struct mon_arg commit_args[] = {
    JOB_COMMON_ARGS,
    { .name = "device", .type = MON_T_STR },
    { .name = "base", .type = MON_T_STR, .optional = true },
    { .name = "base-node", .type = MON_T_STR, .optional = true },
    { .name = "top", .type = MON_T_STR, .optional = true },
    { .name = "top-node", .type = MON_T_STR, .optional = true },
    { .name = "backing-file", .type = MON_T_STR, .optional = true },
    { .name = "on-error", .type = MON_T_ENUM, .optional = true, .values = on_error_values },
    { .name = "filter-node-name", .type = MON_T_STR, .optional = true },
    { .name = NULL },
};

static json_t *qmp_block_commit(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *active = lookup_device(arg_str(args, "device"), err);
    if (!active) {
        return NULL;
    }
    active = bnode_skip_filters(active);
    struct block_node *top = active, *base = NULL;
    if (arg_str(args, "top-node")) {
        top = lookup_node(arg_str(args, "top-node"), err);
    } else if (arg_str(args, "top")) {
        top = chain_node_by_file(active, arg_str(args, "top"));
        if (!top && !strcmp(active->filename, arg_str(args, "top"))) {
            top = active;
        }
        if (!top) {
            mon_err_set(err, MON_ERR_GENERIC, "Top image file %s not found",
                        arg_str(args, "top"));
        }
    }
    if (!top) {
        return NULL;
    }
    if (arg_str(args, "base-node")) {
        base = lookup_node(arg_str(args, "base-node"), err);
        if (!base) {
            return NULL;
        }
    } else if (arg_str(args, "base")) {
        base = chain_node_by_file(top, arg_str(args, "base"));
        if (!base) {
            mon_err_set(err, MON_ERR_GENERIC, "Can't find '%s' in the backing chain",
                        arg_str(args, "base"));
            return NULL;
        }
    } else {
        /* The default base is the bottom of the chain. */
        for (struct block_node *p = bnode_backing_bs(top); p; p = bnode_backing_bs(p)) {
            base = p;
        }
    }
    if (!base) {
        mon_err_set(err, MON_ERR_GENERIC, "There is no backing image");
        return NULL;
    }
    if (top == base) {
        mon_err_set(err, MON_ERR_GENERIC, "cannot commit an image into itself");
        return NULL;
    }
    if (!bnode_chain_contains(top, base)) {
        mon_err_set(err, MON_ERR_GENERIC, "Base '%s' is not in the backing chain of top '%s'",
                    base->node_name, top->node_name);
        return NULL;
    }
    const char *id = arg_str(args, "job-id");
    if (top == active) {
        /* Active commit: a mirror of the active layer into base. */
        struct mirror_params p = {
            .job_id = id, .source = top, .target = base, .sync = MIRROR_SYNC_FULL,
            .speed = arg_int(args, "speed", 0), .is_active_commit = true,
            .on_source_error = arg_policy(args, "on-error"),
            .on_target_error = arg_policy(args, "on-error"),
            .auto_finalize = arg_bool(args, "auto-finalize", true),
            .auto_dismiss = arg_bool(args, "auto-dismiss", true),
            .filter_node_name = arg_str(args, "filter-node-name"),
        };
        return mirror_start(&p, &err->err) ? json_object() : NULL;
    }
    struct commit_params p = {
        .job_id = id, .top = top, .base = base, .backing_file = arg_str(args, "backing-file"),
        .speed = arg_int(args, "speed", 0), .on_error = arg_policy(args, "on-error"),
        .auto_finalize = arg_bool(args, "auto-finalize", true),
        .auto_dismiss = arg_bool(args, "auto-dismiss", true),
    };
    return commit_start(&p, &err->err) ? json_object() : NULL;
}

/* ---- blockdev-mirror / drive-mirror ------------------------------------ */

#define MIRROR_COMMON_ARGS                                                             \
    JOB_COMMON_ARGS,                                                                   \
    { .name = "device", .type = MON_T_STR },                                           \
    { .name = "target", .type = MON_T_STR },                                           \
    { .name = "replaces", .type = MON_T_STR, .optional = true },                       \
    { .name = "sync", .type = MON_T_ENUM, .values = mirror_sync_values },              \
    { .name = "granularity", .type = MON_T_U32, .optional = true },                    \
    { .name = "buf-size", .type = MON_T_INT, .optional = true },                       \
    { .name = "on-source-error", .type = MON_T_ENUM, .optional = true,                 \
      .values = on_error_values },                                                     \
    { .name = "on-target-error", .type = MON_T_ENUM, .optional = true,                 \
      .values = on_error_values },                                                     \
    { .name = "filter-node-name", .type = MON_T_STR, .optional = true },               \
    { .name = "copy-mode", .type = MON_T_ENUM, .optional = true,                       \
      .values = copy_mode_values }

static const struct mon_arg blockdev_mirror_args[] = {
    MIRROR_COMMON_ARGS,
    { .name = NULL },
};

static const struct mon_arg drive_mirror_args[] = {
    MIRROR_COMMON_ARGS,
    { .name = "format", .type = MON_T_STR, .optional = true },
    { .name = "node-name", .type = MON_T_STR, .optional = true },
    { .name = "mode", .type = MON_T_ENUM, .optional = true, .values = mode_values },
    { .name = "unmap", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static json_t *start_mirror(json_t *args, struct block_node *source, struct block_node *target,
                            bool target_is_zero, struct mon_err *err)
{
    enum mirror_sync sync;
    enum mirror_copy_mode mode = MIRROR_COPY_BACKGROUND;
    if (mirror_sync_parse(arg_str(args, "sync"), &sync) < 0) {
        mon_err_set(err, MON_ERR_GENERIC, "Sync mode '%s' not supported",
                    arg_str(args, "sync"));
        return NULL;
    }
    if (arg_str(args, "copy-mode")) {
        mirror_copy_mode_parse(arg_str(args, "copy-mode"), &mode);
    }
    if (arg_str(args, "replaces")) {
        mon_err_set(err, MON_ERR_GENERIC, "mirror: 'replaces' is not supported");
        return NULL;
    }
    int64_t buf_size = arg_int(args, "buf-size", 0);
    if (buf_size < 0) {
        mon_err_set(err, MON_ERR_GENERIC, "Parameter 'buf-size' expects a positive value");
        return NULL;
    }
    struct mirror_params p = {
        .job_id = arg_str(args, "job-id"), .source = source, .target = target, .sync = sync,
        .granularity = (uint32_t)arg_int(args, "granularity", 0),
        .buf_size = (uint64_t)buf_size, .speed = arg_int(args, "speed", 0),
        .on_source_error = arg_policy(args, "on-source-error"),
        .on_target_error = arg_policy(args, "on-target-error"), .copy_mode = mode,
        .target_is_zero = target_is_zero,
        .auto_finalize = arg_bool(args, "auto-finalize", true),
        .auto_dismiss = arg_bool(args, "auto-dismiss", true),
        .filter_node_name = arg_str(args, "filter-node-name"),
    };
    return mirror_start(&p, &err->err) ? json_object() : NULL;
}

static json_t *qmp_blockdev_mirror(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *source = lookup_device(arg_str(args, "device"), err);
    struct block_node *target = source ? lookup_node(arg_str(args, "target"), err) : NULL;
    if (!target) {
        return NULL;
    }
    return start_mirror(args, source, target, false, err);
}

/*
 * drive-mirror: create (absolute-paths) or open (existing) the target
 * file, then mirror into it.  sync=top gives the new image the source's
 * backing file; full and none give it none.
 */
static json_t *qmp_drive_mirror(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *source = lookup_device(arg_str(args, "device"), err);
    if (!source) {
        return NULL;
    }
    struct block_node *src_fmt = bnode_skip_filters(source);
    const char *file = arg_str(args, "target");
    const char *fmt = arg_str(args, "format") ? arg_str(args, "format")
                                              : bnode_format_name(src_fmt);
    bool existing = arg_str(args, "mode") && !strcmp(arg_str(args, "mode"), "existing");
    struct block_node *backing = !strcmp(arg_str(args, "sync"), "top")
                                     ? bnode_backing_bs(src_fmt) : NULL;
    if (!existing) {
        json_t *o = json_pack("{s:s, s:I}", "filename", file,
                              "size", (json_int_t)bnode_getlength(source));
        if (backing) {
            json_object_set_new(o, "backing_file",
                                json_string(bnode_skip_filters(backing)->filename));
            json_object_set_new(o, "backing_fmt",
                                json_string(bnode_format_name(bnode_skip_filters(backing))));
            json_object_set_new(o, "x-unsafe-backing", json_true());
        }
        int ret = bdrv_create(fmt, o, &err->err);
        json_decref(o);
        if (ret < 0) {
            return NULL;
        }
    }
    json_t *o = json_pack("{s:s}", "driver", fmt);
    if (arg_str(args, "node-name")) {
        json_object_set_new(o, "node-name", json_string(arg_str(args, "node-name")));
    }
    /* The target shares the source's backing node rather than opening it again. */
    if (backing) {
        json_object_set_new(o, "backing", json_string(backing->node_name));
    } else {
        json_object_set_new(o, "backing", json_null());
    }
    /*
     * The target is opened as the source is (QEMU passes the source's open
     * flags on): O_DIRECT or not, flushes, unmap, and the file's aio mode.
     */
    struct block_node *src_file = src_fmt->file ? src_fmt->file->bs : NULL;
    int flags = BDRV_O_RDWR | ((src_fmt->open_flags | (src_file ? src_file->open_flags : 0)) &
                               (BDRV_O_NOCACHE | BDRV_O_NO_FLUSH | BDRV_O_UNMAP));
    json_t *src_file_opts = src_file ? src_file->options : NULL;
    json_t *aio = src_file_opts ? json_object_get(src_file_opts, "aio") : NULL;
    if (json_is_string(aio)) {
        json_object_set_new(o, "file", json_pack("{s:s, s:s, s:O}", "driver", "file",
                                                 "filename", file, "aio", aio));
    }
    struct block_node *target = bnode_open(file, o, flags, &err->err);
    json_decref(o);
    if (!target) {
        return NULL;
    }
    json_t *ret = start_mirror(args, source, target, !existing && bnode_has_zero_init(target),
                               err);
    bnode_unref(target);    /* the job holds it now */
    return ret;
}

/* ---- blockdev-backup --------------------------------------------------- */

static const struct mon_arg backup_args[] = {
    JOB_COMMON_ARGS,
    { .name = "device", .type = MON_T_STR },
    { .name = "target", .type = MON_T_STR },
    { .name = "sync", .type = MON_T_ENUM, .values = mirror_sync_values },
    { .name = "bitmap", .type = MON_T_STR, .optional = true },
    { .name = "bitmap-mode", .type = MON_T_STR, .optional = true },
    { .name = "compress", .type = MON_T_BOOL, .optional = true },
    { .name = "on-source-error", .type = MON_T_ENUM, .optional = true,
      .values = on_error_values },
    { .name = "on-target-error", .type = MON_T_ENUM, .optional = true,
      .values = on_error_values },
    { .name = "filter-node-name", .type = MON_T_STR, .optional = true },
    { .name = NULL },
};

static json_t *qmp_blockdev_backup(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *source = lookup_device(arg_str(args, "device"), err);
    struct block_node *target = source ? lookup_node(arg_str(args, "target"), err) : NULL;
    enum backup_sync sync;
    if (!target) {
        return NULL;
    }
    if (backup_sync_parse(arg_str(args, "sync"), &sync) < 0) {
        mon_err_set(err, MON_ERR_GENERIC, "Sync mode '%s' not supported",
                    arg_str(args, "sync"));
        return NULL;
    }
    if (arg_bool(args, "compress", false)) {
        mon_err_set(err, MON_ERR_GENERIC, "blockdev-backup: compress is not supported");
        return NULL;
    }
    const char *mode = arg_str(args, "bitmap-mode");
    if (mode && strcmp(mode, "on-success")) {
        mon_err_set(err, MON_ERR_GENERIC, "bitmap-mode '%s' is not supported (only on-success)",
                    mode);
        return NULL;
    }
    struct bdrv_dirty_bitmap *bm = NULL;
    if (arg_str(args, "bitmap")) {
        bm = bdrv_find_dirty_bitmap(bnode_skip_filters(source), arg_str(args, "bitmap"));
        if (!bm) {
            mon_err_set(err, MON_ERR_GENERIC, "Bitmap '%s' could not be found",
                        arg_str(args, "bitmap"));
            return NULL;
        }
    }
    struct backup_params p = {
        .job_id = arg_str(args, "job-id"), .source = source, .target = target, .sync = sync,
        .bitmap = bm, .speed = arg_int(args, "speed", 0),
        .on_source_error = arg_policy(args, "on-source-error"),
        .on_target_error = arg_policy(args, "on-target-error"),
        .auto_finalize = arg_bool(args, "auto-finalize", true),
        .auto_dismiss = arg_bool(args, "auto-dismiss", true),
    };
    return backup_start(&p, &err->err) ? json_object() : NULL;
}

/* ---- Snapshots --------------------------------------------------------- */

static const struct mon_arg snapshot_sync_args[] = {
    { .name = "device", .type = MON_T_STR, .optional = true },
    { .name = "node-name", .type = MON_T_STR, .optional = true },
    { .name = "snapshot-file", .type = MON_T_STR },
    { .name = "snapshot-node-name", .type = MON_T_STR, .optional = true },
    { .name = "format", .type = MON_T_STR, .optional = true },
    { .name = "mode", .type = MON_T_ENUM, .optional = true, .values = mode_values },
    { .name = NULL },
};

static json_t *qmp_snapshot_sync(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *top = blockdev_lookup(arg_str(args, "device"), arg_str(args, "node-name"),
                                             &err->err);
    if (!top) {
        return NULL;
    }
    bool existing = arg_str(args, "mode") && !strcmp(arg_str(args, "mode"), "existing");
    struct block_node *overlay = bnode_snapshot_sync(top, arg_str(args, "snapshot-file"),
                                                     arg_str(args, "format"),
                                                     arg_str(args, "snapshot-node-name"),
                                                     existing, &err->err);
    if (!overlay) {
        return NULL;
    }
    /* Held by top's former users; with none, the monitor keeps it, as an added node. */
    if (list_empty(&overlay->parents)) {
        blockdev_adopt(overlay);
    } else {
        bnode_unref(overlay);
    }
    return json_object();
}

static const struct mon_arg snapshot_args[] = {
    { .name = "node", .type = MON_T_STR },
    { .name = "overlay", .type = MON_T_STR },
    { .name = NULL },
};

static json_t *qmp_snapshot(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct block_node *top = blockdev_lookup(arg_str(args, "node"), arg_str(args, "node"),
                                             &err->err);
    struct block_node *overlay = top ? lookup_node(arg_str(args, "overlay"), err) : NULL;
    if (!overlay) {
        return NULL;
    }
    return bnode_append_overlay(top, overlay, &err->err) < 0 ? NULL : json_object();
}

/* ---- Job verbs --------------------------------------------------------- */

static const struct mon_arg device_arg[] = {
    { .name = "device", .type = MON_T_STR },
    { .name = NULL },
};

static const struct mon_arg device_force_args[] = {
    { .name = "device", .type = MON_T_STR },
    { .name = "force", .type = MON_T_BOOL, .optional = true },
    { .name = NULL },
};

static const struct mon_arg set_speed_args[] = {
    { .name = "device", .type = MON_T_STR },
    { .name = "speed", .type = MON_T_INT },
    { .name = NULL },
};

static const struct mon_arg id_arg[] = {
    { .name = "id", .type = MON_T_STR },
    { .name = NULL },
};

static json_t *verb_result(int ret)
{
    return ret < 0 ? NULL : json_object();
}

static json_t *qmp_block_job_set_speed(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct job *job = lookup_job(arg_str(args, "device"), err);
    return job ? verb_result(job_set_speed(job, arg_int(args, "speed", 0), &err->err)) : NULL;
}

static json_t *qmp_block_job_cancel(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct job *job = lookup_job(arg_str(args, "device"), err);
    return job ? verb_result(job_user_cancel(job, arg_bool(args, "force", false), &err->err))
               : NULL;
}

static json_t *qmp_block_job_pause(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct job *job = lookup_job(arg_str(args, "device"), err);
    return job ? verb_result(job_user_pause(job, &err->err)) : NULL;
}

static json_t *qmp_block_job_resume(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct job *job = lookup_job(arg_str(args, "device"), err);
    return job ? verb_result(job_user_resume(job, &err->err)) : NULL;
}

static json_t *qmp_block_job_complete(struct mon_session *s, json_t *args, struct mon_err *err)
{
    struct job *job = lookup_job(arg_str(args, "device"), err);
    return job ? verb_result(job_complete(job, &err->err)) : NULL;
}

static json_t *qmp_job_verb(json_t *args, struct mon_err *err,
                            int (*verb)(struct job *job, struct err *err))
{
    struct job *job = lookup_job(arg_str(args, "id"), err);
    return job ? verb_result(verb(job, &err->err)) : NULL;
}

static int cancel_soft(struct job *job, struct err *err)
{
    return job_user_cancel(job, false, err);
}

#define JOB_VERB(fn, verb)                                                           \
    static json_t *fn(struct mon_session *s, json_t *args, struct mon_err *err)      \
    {                                                                                \
        return qmp_job_verb(args, err, verb);                                        \
    }

JOB_VERB(qmp_job_pause, job_user_pause)
JOB_VERB(qmp_job_resume, job_user_resume)
JOB_VERB(qmp_job_cancel, cancel_soft)
JOB_VERB(qmp_job_complete, job_complete)
JOB_VERB(qmp_job_finalize, job_finalize)
JOB_VERB(qmp_job_dismiss, job_dismiss)

/* ---- Queries ----------------------------------------------------------- */

static int add_block_job(struct job *job, void *opaque)
{
    json_array_append_new(opaque, block_job_query((struct block_job *)job));
    return 0;
}

static json_t *qmp_query_block_jobs(struct mon_session *s, json_t *args, struct mon_err *err)
{
    json_t *list = json_array();
    job_foreach(add_block_job, list);
    return list;
}

static int add_job(struct job *job, void *opaque)
{
    json_array_append_new(opaque, job_query(job));
    return 0;
}

static json_t *qmp_query_jobs(struct mon_session *s, json_t *args, struct mon_err *err)
{
    json_t *list = json_array();
    job_foreach(add_job, list);
    return list;
}

static const struct mon_arg no_args[] = { { .name = NULL } };

static const struct mon_cmd job_cmds[] = {
    { "block-stream", qmp_block_stream, stream_args, 0 },
    { "block-commit", qmp_block_commit, commit_args, 0 },
    { "blockdev-mirror", qmp_blockdev_mirror, blockdev_mirror_args, 0 },
    { "drive-mirror", qmp_drive_mirror, drive_mirror_args, 0 },
    { "blockdev-backup", qmp_blockdev_backup, backup_args, 0 },
    { "blockdev-snapshot-sync", qmp_snapshot_sync, snapshot_sync_args, 0 },
    { "blockdev-snapshot", qmp_snapshot, snapshot_args, 0 },
    { "block-job-set-speed", qmp_block_job_set_speed, set_speed_args, 0 },
    { "block-job-cancel", qmp_block_job_cancel, device_force_args, 0 },
    { "block-job-pause", qmp_block_job_pause, device_arg, 0 },
    { "block-job-resume", qmp_block_job_resume, device_arg, 0 },
    { "block-job-complete", qmp_block_job_complete, device_arg, 0 },
    { "block-job-finalize", qmp_job_finalize, id_arg, 0 },
    { "block-job-dismiss", qmp_job_dismiss, id_arg, 0 },
    { "job-pause", qmp_job_pause, id_arg, 0 },
    { "job-resume", qmp_job_resume, id_arg, 0 },
    { "job-cancel", qmp_job_cancel, id_arg, 0 },
    { "job-complete", qmp_job_complete, id_arg, 0 },
    { "job-finalize", qmp_job_finalize, id_arg, 0 },
    { "job-dismiss", qmp_job_dismiss, id_arg, 0 },
    { "query-block-jobs", qmp_query_block_jobs, no_args, 0 },
    { "query-jobs", qmp_query_jobs, no_args, 0 },
};

void qmp_job_register(void)
{
    job_set_listener(&monitor_listener);
    mon_cmd_register(job_cmds, ARRAY_SIZE(job_cmds));
}
