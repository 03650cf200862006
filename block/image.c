/* Opening images from command-line style arguments. */
#include "block/image.h"

#include "util/opts.h"

json_t *image_open_options(const struct image_open *o, int *flags, bool *writethrough,
                           struct err *err)
{
    json_t *opts;

    *flags = o->writable ? BDRV_O_RDWR : 0;
    *writethrough = false;
    if (o->cache && bdrv_parse_cache_mode(o->cache, flags, writethrough) < 0) {
        err_set(err, "Invalid cache option: %s", o->cache);
        return NULL;
    }
    if (o->force_share) {
        if (o->writable) {
            err_set(err, "force-share=on can only be used with read-only images");
            return NULL;
        }
        *flags |= BDRV_O_FORCE_SHARE;
    }
    *flags |= (o->no_backing ? BDRV_O_NO_BACKING : 0) | (o->check ? BDRV_O_CHECK : 0) |
              (o->metadata_only ? BDRV_O_NO_IO : 0) | (o->unmap ? BDRV_O_UNMAP : 0);

    if (o->image_opts) {
        if (o->fmt) {
            err_set(err, "--image-opts and --format are mutually exclusive");
            return NULL;
        }
        opts = opts_parse(o->filename, "file", err);
        if (!opts) {
            return NULL;
        }
    } else {
        opts = json_object();
        if (o->fmt) {
            json_object_set_new(opts, "driver", json_string(o->fmt));
        }
    }
    if (o->aio) {
        /* The aio mode belongs to the protocol node: file.aio. */
        struct err e = { 0 };
        json_t *file = json_object_get(opts, "file");
        if (json_is_object(file)) {
            json_object_set_new(file, "aio", json_string(o->aio));
        } else if (!file) {
            if (opts_set_dotted(opts, "file.aio", json_string(o->aio), &e) < 0) {
                err_propagate(err, &e);
                json_decref(opts);
                return NULL;
            }
        }
    }
    if (o->cache) {
        bdrv_cache_flags_to_options(opts, *flags);
    }
    return opts;
}

struct block_backend *image_open(const struct image_open *o, struct err *err)
{
    int flags;
    bool writethrough;
    json_t *opts = image_open_options(o, &flags, &writethrough, err);
    if (!opts) {
        return NULL;
    }
    struct block_backend *blk = blk_new_open("", o->image_opts ? NULL : o->filename, opts,
                                             flags, err);
    json_decref(opts);
    if (!blk) {
        return NULL;
    }
    blk_set_write_cache(blk, !writethrough);
    return blk;
}
