/*
 * Drain: quiescing a node (its parents stop sending, its requests finish),
 * a subtree, or every node.  A drained section may nest; new edges into a
 * drained node drain the new parent as often (node.c calls the two below).
 * Main thread; from a coroutine the drain is handed to the main loop.
 */
#include "block/driver.h"

#include "block/drain-internal.h"
#include "util/aio.h"
#include "util/log.h"

static void do_drained_begin(struct block_node *bs);
static void do_drained_end(struct block_node *bs);

void bnode_parent_drained_begin(struct bdrv_child *c)
{
    if (c->parent) {
        do_drained_begin(c->parent);
    } else if (c->klass && c->klass->drained_begin) {
        c->klass->drained_begin(c);
    }
}

void bnode_parent_drained_end(struct bdrv_child *c)
{
    if (c->parent) {
        do_drained_end(c->parent);
    } else if (c->klass && c->klass->drained_end) {
        c->klass->drained_end(c);
    }
}

static void do_drained_begin(struct block_node *bs)
{
    struct bdrv_child *c;
    atomic_fetch_add(&bs->quiesce_counter, 1);
    list_for_each(c, &bs->parents, child_link) {
        bnode_parent_drained_begin(c);
    }
}

static void do_drained_end(struct block_node *bs)
{
    struct bdrv_child *c;
    if (atomic_load(&bs->quiesce_counter) <= 0) {
        log_error("%s: drained section ended more often than begun", bnode_describe(bs));
        return;
    }
    list_for_each(c, &bs->parents, child_link) {
        bnode_parent_drained_end(c);
    }
    atomic_fetch_sub(&bs->quiesce_counter, 1);
}

/* Whether requests are still in bs or on their way down from above. */
static bool drain_poll(struct block_node *bs)
{
    struct bdrv_child *c;
    if (atomic_load(&bs->in_flight)) {
        return true;
    }
    list_for_each(c, &bs->parents, child_link) {
        if (c->parent) {
            if (drain_poll(c->parent)) {
                return true;
            }
        } else if (c->klass && c->klass->drained_poll && c->klass->drained_poll(c)) {
            return true;
        }
    }
    return false;
}

/*
 * A coroutine cannot run the loop it lives on: it hands the drain to a
 * bottom half and yields until the BH has waited.
 */
struct co_drain {
    struct block_node *bs;
    bool begin;
    struct coroutine *co;
};

static void co_drain_bh(void *opaque)
{
    struct co_drain *d = opaque;
    if (d->begin) {
        bnode_drained_begin(d->bs);
    } else {
        bnode_drained_end(d->bs);
    }
    co_wake(d->co);
}

static bool drain_from_coroutine(struct block_node *bs, bool begin)
{
    if (!co_in_coroutine()) {
        return false;
    }
    struct co_drain d = { bs, begin, co_self() };
    aio_bh_schedule_oneshot(aio_main_context(), co_drain_bh, &d);
    co_yield();
    return true;
}

void bnode_drained_begin(struct block_node *bs)
{
    if (drain_from_coroutine(bs, true)) {
        return;
    }
    do_drained_begin(bs);
    AIO_WAIT_WHILE(drain_poll(bs));
}

void bnode_drained_end(struct block_node *bs)
{
    if (drain_from_coroutine(bs, false)) {
        return;
    }
    do_drained_end(bs);
}

static void subtree_begin(struct block_node *bs)
{
    struct bdrv_child *c;
    do_drained_begin(bs);
    list_for_each(c, &bs->children, parent_link) {
        subtree_begin(c->bs);
    }
}

static bool subtree_poll(struct block_node *bs)
{
    struct bdrv_child *c;
    if (drain_poll(bs)) {
        return true;
    }
    list_for_each(c, &bs->children, parent_link) {
        if (subtree_poll(c->bs)) {
            return true;
        }
    }
    return false;
}

static void subtree_end(struct block_node *bs)
{
    struct bdrv_child *c;
    list_for_each(c, &bs->children, parent_link) {
        subtree_end(c->bs);
    }
    do_drained_end(bs);
}

void bnode_subtree_drained_begin(struct block_node *bs)
{
    subtree_begin(bs);
    AIO_WAIT_WHILE(subtree_poll(bs));
}

void bnode_subtree_drained_end(struct block_node *bs)
{
    subtree_end(bs);
}

static int begin_one(struct block_node *bs, void *opaque)
{
    (void)opaque;
    do_drained_begin(bs);
    return 0;
}

static int busy_one(struct block_node *bs, void *opaque)
{
    (void)opaque;
    return drain_poll(bs);
}

static int end_one(struct block_node *bs, void *opaque)
{
    (void)opaque;
    do_drained_end(bs);
    return 0;
}

void bnode_drain_all_begin(void)
{
    bnode_foreach(begin_one, NULL);
    while (bnode_foreach(busy_one, NULL)) {
        aio_poll(aio_main_context(), true);
    }
}

void bnode_drain_all_end(void)
{
    bnode_foreach(end_one, NULL);
}

bool bnode_is_drained(const struct block_node *bs)
{
    return atomic_load((atomic_int *)&bs->quiesce_counter) > 0;
}
