/*
 * Opening images the way qemu-img and qemu-io do: a filename with an
 * optional format (-f), or with --image-opts a key=val / JSON string of
 * blockdev options; a cache mode (-t none|writeback|...); an aio mode
 * (-i); -U to share with other processes.
 */
#ifndef SPINDLE_BLOCK_IMAGE_H
#define SPINDLE_BLOCK_IMAGE_H

#include "block/backend.h"

struct image_open {
    const char *filename;     /* or the options string with image_opts */
    const char *fmt;          /* NULL: probe */
    bool image_opts;
    const char *cache;        /* NULL: writeback */
    const char *aio;          /* NULL: the driver's default */
    bool writable;
    bool force_share;
    bool no_backing;
    bool check;               /* BDRV_O_CHECK: tolerate inconsistency */
    bool metadata_only;       /* BDRV_O_NO_IO */
    bool unmap;               /* discard=unmap (qemu-io's default) */
};

/* A backend on the image, or NULL with err set to one sentence. */
struct block_backend *image_open(const struct image_open *o, struct err *err);

/* The options object for o (new reference), or NULL with err. */
json_t *image_open_options(const struct image_open *o, int *flags, bool *writethrough,
                           struct err *err);

#endif
