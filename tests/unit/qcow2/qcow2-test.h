/*
 * What the qcow2 suites share: making an image with qemu-img's options,
 * opening it as a node, and running driver internals in a coroutine with
 * the metadata lock held.
 */
#ifndef SPINDLE_TESTS_UNIT_QCOW2_TEST_H
#define SPINDLE_TESTS_UNIT_QCOW2_TEST_H

#include "tests/unit/harness.h"

#include <stdio.h>

#include "block/backend.h"
#include "qcow2/qcow2-int.h"
#include "util/opts.h"

/* Create path as `create -f qcow2 -o opts path size` would; 0 or -errno. */
static inline int qt_create(const char *path, const char *opts, int64_t size)
{
    struct err err = { 0 };
    json_t *o = opts && opts[0] ? opts_parse(opts, NULL, &err) : json_object();
    if (!o) {
        return -EINVAL;
    }
    json_object_set_new(o, "filename", json_string(path));
    json_object_set_new(o, "size", json_integer(size));
    int ret = bdrv_create("qcow2", o, &err);
    if (ret < 0) {
        printf("# create %s: %s\n", path, err.msg);
    }
    json_decref(o);
    return ret;
}

/* A writable backend on the image (extra: more blockdev options, or NULL). */
static inline struct block_backend *qt_open(const char *path, json_t *extra, struct err *err)
{
    json_t *o = extra ? json_deep_copy(extra) : json_object();
    json_object_set_new(o, "driver", json_string("qcow2"));
    struct block_backend *blk = blk_new_open("", path, o, BDRV_O_RDWR | BDRV_O_UNMAP, err);
    json_decref(o);
    return blk;
}

static inline struct qcow2_state *qt_state(struct block_backend *blk)
{
    return blk_node(blk)->opaque;
}

struct qt_call {
    struct qcow2_state *s;
    void (*fn)(struct qcow2_state *s, void *opaque);
    void *opaque;
};

static inline void qt_call_entry(void *opaque)
{
    struct qt_call *c = opaque;
    co_mutex_lock(&c->s->lock);
    c->fn(c->s, c->opaque);
    co_mutex_unlock(&c->s->lock);
}

/* Run fn(s, opaque) in a coroutine holding s->lock. */
static inline void qt_locked(struct qcow2_state *s, void (*fn)(struct qcow2_state *s, void *),
                             void *opaque)
{
    struct qt_call c = { s, fn, opaque };
    co_run_sync(qt_call_entry, &c);
}

struct qt_check {
    struct block_node *bs;
    struct bdrv_check_result res;
    int fix;
    int ret;
};

static inline void qt_check_entry(void *opaque)
{
    struct qt_check *c = opaque;
    c->ret = c->bs->drv->co_check(c->bs, &c->res, c->fix);
}

/* Whether the driver's own check finds the image clean. */
static inline bool qt_clean(struct block_backend *blk)
{
    struct qt_check c = { .bs = blk_node(blk) };
    blk_flush(blk);
    co_run_sync(qt_check_entry, &c);
    if (c.ret || c.res.corruptions || c.res.leaks || c.res.check_errors) {
        printf("# check: ret %d, %d corruptions, %d leaks, %d errors\n", c.ret,
               c.res.corruptions, c.res.leaks, c.res.check_errors);
        return false;
    }
    return true;
}

#endif
