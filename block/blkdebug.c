/*
 * blkdebug: a filter that injects errors, with QEMU's options so tests
 * written for QEMU work:
 *
 *   driver=blkdebug, image=<child>,
 *   inject-error=[{event, state?, iotype?, errno?=5, sector?, once?, immediately?}],
 *   set-state=[{event, state?, new_state}],
 *   align, max-transfer, opt-write-zero, max-write-zero, opt-discard, max-discard
 *
 * When a named event happens (block/debug-events.h: drivers and the request
 * path announce them), its inject-error rules whose state matches become
 * active; the next request of a matching type (and covering `sector`, if
 * given) fails with errno: at once with `immediately`, else after one trip
 * through the event loop.  A `once` rule disappears after failing one
 * request; other active rules keep failing requests.  set-state rules move
 * the node's state (it starts at 1).  The filename form is
 * "blkdebug::IMAGE" (config files are not supported: use the options).
 */
#include "block/debug-events.h"
#include "block/driver.h"

#include "util/aio.h"
#include "util/log.h"
#include "util/opts.h"

enum {
    IOTYPE_READ = 1 << 0,
    IOTYPE_WRITE = 1 << 1,
    IOTYPE_WRITE_ZEROES = 1 << 2,
    IOTYPE_DISCARD = 1 << 3,
    IOTYPE_FLUSH = 1 << 4,
    IOTYPE_BLOCK_STATUS = 1 << 5,
    IOTYPE_ALL = (1 << 6) - 1,
};

struct rule {
    struct list_node link;       /* in rules[event] */
    struct list_node active;     /* in the active list when armed */
    bool inject;                 /* inject-error, else set-state */
    int state;                   /* 0: any */
    int error;
    int64_t offset;              /* -1: any */
    bool once, immediately;
    unsigned iotypes;
    int new_state;
};

struct blkdebug {
    pthread_mutex_t lock;
    int state;
    struct list_node rules[BLKDBG__MAX];
    struct list_node active;
    uint64_t align, max_transfer, opt_write_zero, max_write_zero, opt_discard, max_discard;
};

/* x-image-filename: the IMAGE of "blkdebug::IMAGE", opened as a file. */
static const char *const blkdebug_keys[] = {
    "image", "x-image-filename", "config", "align", "max-transfer", "opt-write-zero",
    "max-write-zero", "opt-discard", "max-discard", "inject-error", "set-state", NULL,
};

static const char *const event_names[BLKDBG__MAX] = {
    "l1_update", "l1_grow.alloc_table", "l1_grow.write_table", "l1_grow.activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc.cow_read", "l2_alloc.write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load", "reftable_grow",
    "reftable_update", "refblock_load", "refblock_update", "refblock_update_part",
    "refblock_alloc", "refblock_alloc.hookup", "refblock_alloc.write",
    "refblock_alloc.write_blocks", "refblock_alloc.write_table", "refblock_alloc.switch_table",
    "cluster_alloc", "cluster_alloc_bytes", "cluster_free", "flush_to_os", "flush_to_disk",
    "pwritev_rmw.head", "pwritev_rmw.after_head", "pwritev_rmw.tail",
    "pwritev_rmw.after_tail", "pwritev", "pwritev_zero", "pwritev_done",
    "empty_image_prepare", "l1_shrink.write_table", "l1_shrink.free_l2_clusters", "cor_write",
    "cluster_alloc_space", "none",
};

const char *blkdbg_event_name(enum blkdbg_event e)
{
    return (unsigned)e < BLKDBG__MAX ? event_names[e] : NULL;
}

int blkdbg_event_lookup(const char *name)
{
    for (int i = 0; i < BLKDBG__MAX; i++) {
        if (!strcmp(event_names[i], name)) {
            return i;
        }
    }
    return -1;
}

extern const struct block_driver bdrv_blkdebug;

void bnode_debug_event(struct block_node *bs, int event)
{
    if (bs && bs->drv && bs->drv->debug_event && event >= 0 && event < BLKDBG__MAX) {
        bs->drv->debug_event(bs, event);
    }
}

/* ---- Rules ------------------------------------------------------------- */

static int parse_iotype(const char *s, unsigned *out)
{
    static const struct { const char *name; unsigned bit; } types[] = {
        { "read", IOTYPE_READ }, { "write", IOTYPE_WRITE },
        { "write-zeroes", IOTYPE_WRITE_ZEROES }, { "discard", IOTYPE_DISCARD },
        { "flush", IOTYPE_FLUSH }, { "block-status", IOTYPE_BLOCK_STATUS },
    };
    for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
        if (!strcmp(s, types[i].name)) {
            *out = types[i].bit;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_rule(struct blkdebug *s, json_t *o, bool inject, struct err *err)
{
    static const char *const inject_keys[] = { "event", "state", "iotype", "errno", "sector",
                                               "once", "immediately", NULL };
    static const char *const state_keys[] = { "event", "state", "new_state", NULL };
    const char *what = inject ? "inject-error" : "set-state";
    const char *ev;
    int64_t v;

    if (!json_is_object(o)) {
        err_set(err, "blkdebug: each %s entry must be an object", what);
        return -EINVAL;
    }
    if (opts_check_keys(o, inject ? inject_keys : state_keys, "blkdebug", err) < 0) {
        return -EINVAL;
    }
    if (opts_get_str(o, "event", &ev, err) < 0) {
        err_set(err, "blkdebug: %s needs an event", what);
        return -EINVAL;
    }
    int event = blkdbg_event_lookup(ev);
    if (event < 0) {
        err_set(err, "blkdebug: unknown event '%s'", ev);
        return -EINVAL;
    }
    struct rule *r = xzalloc(sizeof(*r));
    list_init(&r->active);
    r->inject = inject;
    r->error = EIO;
    r->offset = -1;
    r->iotypes = IOTYPE_ALL;
    int ret = 0;
    if (opts_get_int(o, "state", &v, err) == 0) {
        r->state = (int)v;
    }
    if (inject) {
        const char *t;
        if (opts_get_int(o, "errno", &v, err) == 0) {
            r->error = (int)v;
        }
        if (opts_get_int(o, "sector", &v, err) == 0) {
            r->offset = v * BDRV_SECTOR_SIZE;
        }
        if (opts_get_str(o, "iotype", &t, err) == 0 && parse_iotype(t, &r->iotypes) < 0) {
            err_set(err, "blkdebug: unknown iotype '%s'", t);
            ret = -EINVAL;
        }
        opts_get_bool(o, "once", &r->once, err);
        opts_get_bool(o, "immediately", &r->immediately, err);
    } else if (opts_get_int(o, "new_state", &v, err) == 0) {
        r->new_state = (int)v;
    } else {
        err_set(err, "blkdebug: set-state needs new_state");
        ret = -EINVAL;
    }
    if (ret < 0 || err_isset(err)) {
        free(r);
        return ret < 0 ? ret : -EINVAL;
    }
    list_add_tail(&s->rules[event], &r->link);
    return 0;
}

static int parse_rules(struct blkdebug *s, json_t *list, bool inject, struct err *err)
{
    size_t i;
    json_t *o;
    if (!list) {
        return 0;
    }
    if (!json_is_array(list)) {
        /* key=val form: a single rule given with dotted keys ("inject-error.0.event=..."). */
        err_set(err, "blkdebug: %s must be a list", inject ? "inject-error" : "set-state");
        return -EINVAL;
    }
    json_array_foreach(list, i, o) {
        int ret = parse_rule(s, o, inject, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static void blkdebug_event(struct block_node *bs, int event)
{
    struct blkdebug *s = bs->opaque;
    struct rule *r;

    pthread_mutex_lock(&s->lock);
    int new_state = s->state;
    bool injected = false;
    list_for_each(r, &s->rules[event], link) {
        if (r->state && r->state != s->state) {
            continue;
        }
        if (r->inject) {
            /* One armed rule at a time, as in QEMU. */
            if (!injected && list_empty(&s->active)) {
                list_add_head(&s->active, &r->active);
                injected = true;
            }
        } else {
            new_state = r->new_state;
        }
    }
    s->state = new_state;
    pthread_mutex_unlock(&s->lock);
}

/* The error to give this request, or 0; an armed `once` rule is used up. */
static int coroutine_fn rule_check(struct block_node *bs, int64_t offset, int64_t bytes,
                                   unsigned iotype)
{
    struct blkdebug *s = bs->opaque;
    struct rule *r, *hit = NULL;
    int error;
    bool immediately;

    if (list_empty(&s->active)) {
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    list_for_each(r, &s->active, active) {
        if (!(r->iotypes & iotype)) {
            continue;
        }
        if (r->offset >= 0 && !(r->offset >= offset && r->offset < offset + bytes)) {
            continue;
        }
        hit = r;
        break;
    }
    if (!hit) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    error = hit->error;
    immediately = hit->immediately;
    if (hit->once) {
        list_del(&hit->active);
        list_del(&hit->link);
        free(hit);
    }
    pthread_mutex_unlock(&s->lock);
    trace("blkdebug_inject", "%s: errno %d at %" PRId64 "+%" PRId64, bnode_describe(bs), error,
          offset, bytes);
    if (!immediately) {
        co_sleep_ns(0);
    }
    return -error;
}

/* ---- The driver -------------------------------------------------------- */

static int blkdebug_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    struct blkdebug *s = bs->opaque;
    const char *config;

    pthread_mutex_init(&s->lock, NULL);
    s->state = 1;
    list_init(&s->active);
    for (int i = 0; i < BLKDBG__MAX; i++) {
        list_init(&s->rules[i]);
    }
    if (opts_get_str(options, "config", &config, NULL) == 0 && *config) {
        err_set(err, "blkdebug: config files are not supported; give inject-error and "
                "set-state options instead");
        return -ENOTSUP;
    }
    if (parse_rules(s, json_object_get(options, "inject-error"), true, err) < 0 ||
        parse_rules(s, json_object_get(options, "set-state"), false, err) < 0) {
        return -EINVAL;
    }
    if (opts_get_size(options, "align", &s->align, err) == -EINVAL ||
        opts_get_size(options, "max-transfer", &s->max_transfer, err) == -EINVAL ||
        opts_get_size(options, "opt-write-zero", &s->opt_write_zero, err) == -EINVAL ||
        opts_get_size(options, "max-write-zero", &s->max_write_zero, err) == -EINVAL ||
        opts_get_size(options, "opt-discard", &s->opt_discard, err) == -EINVAL ||
        opts_get_size(options, "max-discard", &s->max_discard, err) == -EINVAL) {
        return -EINVAL;
    }
    if (s->align && (!is_power_of_2(s->align) || s->align > 64 * MiB)) {
        err_set(err, "blkdebug: align must be a power of two up to 64 MiB");
        return -EINVAL;
    }
    if (s->max_transfer && s->align && s->max_transfer % s->align) {
        err_set(err, "blkdebug: max-transfer must be a multiple of align");
        return -EINVAL;
    }
    const char *image_filename = NULL;
    opts_get_str(options, "x-image-filename", &image_filename, NULL);
    if (!bnode_open_child(bs, options, "image", image_filename, BDRV_CHILD_FILE, flags, false,
                          err)) {
        return -EINVAL;
    }
    bnode_set_size(bs, bnode_getlength(bs->file->bs));
    return 0;
}

static void blkdebug_close(struct block_node *bs)
{
    struct blkdebug *s = bs->opaque;
    for (int i = 0; i < BLKDBG__MAX; i++) {
        while (!list_empty(&s->rules[i])) {
            struct rule *r = list_entry(s->rules[i].next, struct rule, link);
            list_del(&r->link);
            free(r);
        }
    }
    pthread_mutex_destroy(&s->lock);
}

static void blkdebug_refresh_limits(struct block_node *bs)
{
    struct blkdebug *s = bs->opaque;
    const struct block_limits *f = &bs->file->bs->bl;
    bs->bl.request_alignment = MAX(f->request_alignment, (uint32_t)(s->align ? s->align : 1));
    bs->bl.max_transfer = s->max_transfer ? s->max_transfer : f->max_transfer;
    bs->bl.pwrite_zeroes_alignment = (uint32_t)s->opt_write_zero;
    bs->bl.max_pwrite_zeroes = s->max_write_zero;
    bs->bl.pdiscard_alignment = (uint32_t)s->opt_discard;
    bs->bl.max_pdiscard = s->max_discard;
    bs->bl.min_mem_alignment = f->min_mem_alignment;
    bs->bl.opt_mem_alignment = f->opt_mem_alignment;
}

static int64_t blkdebug_getlength(struct block_node *bs)
{
    return bnode_refresh_length(bs->file->bs);
}

static int coroutine_fn blkdebug_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                        struct qiov *qiov, size_t qiov_offset, int flags)
{
    int ret = rule_check(bs, offset, bytes, IOTYPE_READ);
    return ret ? ret : bnode_co_preadv(bs->file, offset, bytes, qiov, qiov_offset, flags);
}

static int coroutine_fn blkdebug_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                         struct qiov *qiov, size_t qiov_offset, int flags)
{
    int ret = rule_check(bs, offset, bytes, IOTYPE_WRITE);
    return ret ? ret : bnode_co_pwritev(bs->file, offset, bytes, qiov, qiov_offset, flags);
}

static int coroutine_fn blkdebug_pwrite_zeroes(struct block_node *bs, int64_t offset,
                                               int64_t bytes, int flags)
{
    int ret = rule_check(bs, offset, bytes, IOTYPE_WRITE_ZEROES);
    return ret ? ret : bnode_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn blkdebug_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    int ret = rule_check(bs, offset, bytes, IOTYPE_DISCARD);
    return ret ? ret : bnode_co_pdiscard(bs->file, offset, bytes);
}

static int coroutine_fn blkdebug_flush(struct block_node *bs)
{
    return rule_check(bs, 0, BDRV_MAX_LENGTH, IOTYPE_FLUSH);
}

static int coroutine_fn blkdebug_block_status(struct block_node *bs, bool want_zero,
                                              int64_t offset, int64_t bytes, int64_t *pnum,
                                              int64_t *map, struct block_node **file)
{
    int ret = rule_check(bs, offset, bytes, IOTYPE_BLOCK_STATUS);
    if (ret) {
        return ret;
    }
    *pnum = bytes;
    *map = offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int coroutine_fn blkdebug_truncate(struct block_node *bs, int64_t offset, bool exact,
                                          enum prealloc_mode prealloc, int flags,
                                          struct err *err)
{
    return bnode_co_truncate(bs->file, offset, exact, prealloc, flags, err);
}

/* "blkdebug:CONFIG:IMAGE"; CONFIG must be empty. */
static int blkdebug_parse_filename(const char *filename, json_t *options, struct err *err)
{
    const char *rest = filename + strlen("blkdebug:");
    const char *colon = strchr(rest, ':');
    if (!colon) {
        err_set(err, "blkdebug requires both config file and image path");
        return -EINVAL;
    }
    if (colon != rest) {
        err_set(err, "blkdebug: config files are not supported; use blkdebug::IMAGE with "
                "inject-error options");
        return -ENOTSUP;
    }
    json_object_set_new(options, "x-image-filename", json_string(colon + 1));
    return 0;
}

const struct block_driver bdrv_blkdebug = {
    .format_name = "blkdebug",
    .protocol_name = "blkdebug",
    .instance_size = sizeof(struct blkdebug),
    .is_filter = true,
    .option_keys = blkdebug_keys,
    .parse_filename = blkdebug_parse_filename,
    .open = blkdebug_open,
    .close = blkdebug_close,
    .refresh_limits = blkdebug_refresh_limits,
    .getlength = blkdebug_getlength,
    .co_preadv = blkdebug_preadv,
    .co_pwritev = blkdebug_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .co_pwrite_zeroes = blkdebug_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK,
    .co_pdiscard = blkdebug_pdiscard,
    .co_flush_to_disk = blkdebug_flush,
    .co_block_status = blkdebug_block_status,
    .co_truncate = blkdebug_truncate,
    .debug_event = blkdebug_event,
};

BLOCK_DRIVER_REGISTER(bdrv_blkdebug)
