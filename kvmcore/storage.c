/* -blockdev and -drive: the VM's block graph. */
#include "kvmcore/storage.h"

#include "block/blockdev.h"
#include "util/opts.h"

/*
 * -blockdev nodes take the path QMP blockdev-add and spindle-sd's
 * --blockdev take (block/blockdev.h): the user's nodes, which
 * blockdev-del may remove and blockdev_close_all closes.
 */
static int open_blockdevs(const struct kvm_config *cfg, struct err *err)
{
    for (unsigned i = 0; i < cfg->nr_blockdevs; i++) {
        const struct kvm_blockdev_cfg *b = &cfg->blockdevs[i];
        if (!blockdev_add(b->options, err)) {
            err_prepend(err, "-blockdev node-name=%s: ", b->node_name ? b->node_name : "?");
            return -EINVAL;
        }
    }
    return 0;
}

/* A -drive: its options as a blockdev-style object, and the backend on it. */
static struct block_backend *open_drive(const struct kvm_drive_cfg *d, struct err *err)
{
    json_t *opts = d->options ? json_deep_copy(d->options) : json_object();
    int flags = d->read_only ? 0 : BDRV_O_RDWR;
    bool writethrough = false;
    struct block_backend *blk = NULL;

    if (d->format) {
        json_object_set_new(opts, "driver", json_string(d->format));
    }
    if (d->aio && opts_set_dotted(opts, "file.aio", json_string(d->aio), err) < 0) {
        goto out;
    }
    if (d->cache && bdrv_parse_cache_mode(d->cache, &flags, &writethrough) < 0) {
        err_set(err, "invalid cache option '%s'", d->cache);
        goto out;
    }
    bdrv_cache_flags_to_options(opts, flags);
    if (d->discard) {
        json_object_set_new(opts, "discard", json_string(d->discard));
    }
    if (d->detect_zeroes) {
        json_object_set_new(opts, "detect-zeroes", json_string(d->detect_zeroes));
    }
    enum blk_error_policy rerror = BLOCKDEV_ON_ERROR_AUTO, werror = BLOCKDEV_ON_ERROR_AUTO;
    const char *bad = NULL;
    if (d->rerror && blk_error_policy_parse(d->rerror, &rerror) < 0) {
        bad = d->rerror;
    } else if (d->werror && blk_error_policy_parse(d->werror, &werror) < 0) {
        bad = d->werror;
    }
    if (bad) {
        err_set(err, "invalid error policy '%s' (expected report, ignore, enospc, stop or auto)",
                bad);
        goto out;
    }
    blk = blk_new_open(d->id, d->file, opts, flags, err);
    if (blk) {
        blk_set_write_cache(blk, !writethrough);
        blk_set_on_error(blk, rerror, werror);
    }
out:
    json_decref(opts);
    return blk;
}

int kvm_storage_open(struct kvm_storage *st, const struct kvm_config *cfg, struct err *err)
{
    memset(st, 0, sizeof(*st));
    int ret = open_blockdevs(cfg, err);
    if (ret < 0) {
        return ret;
    }
    st->drives = xcalloc(cfg->nr_drives ? cfg->nr_drives : 1, sizeof(*st->drives));
    for (unsigned i = 0; i < cfg->nr_drives; i++) {
        st->drives[i] = open_drive(&cfg->drives[i], err);
        if (!st->drives[i]) {
            err_prepend(err, "-drive id=%s: ", cfg->drives[i].id);
            return -EINVAL;
        }
        st->nr_drives++;
    }
    return 0;
}

void kvm_storage_close(struct kvm_storage *st)
{
    for (unsigned i = 0; i < st->nr_drives; i++) {
        blk_flush(st->drives[i]);
        blk_unref(st->drives[i]);
    }
    /* -blockdev and blockdev-add nodes, newest first, flushed; devices are gone by now. */
    blockdev_close_all();
    free(st->drives);
    memset(st, 0, sizeof(*st));
}

struct block_backend *kvm_storage_backend(struct kvm_storage *st, const char *drive,
                                          const char *what, struct err *err)
{
    for (unsigned i = 0; i < st->nr_drives; i++) {
        if (!strcmp(blk_name(st->drives[i]), drive)) {
            blk_ref(st->drives[i]);
            return st->drives[i];
        }
    }
    struct block_node *bs = bnode_find(drive);
    if (!bs) {
        err_set(err, "%s: drive '%s' not found", what, drive);
        return NULL;
    }
    struct block_backend *blk = blk_new("");
    blk_insert_node(blk, bs, err);
    return blk;
}
