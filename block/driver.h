/*
 * What a block driver implements.  One `static const struct block_driver`
 * per driver, registered with BLOCK_DRIVER_REGISTER().
 *
 * The contract, unless a callback says otherwise:
 *   - co_* callbacks run in a coroutine, on whatever thread issued the
 *     request; drivers are thread-safe (several iothreads may call at once).
 *   - offset and bytes are multiples of bl.request_alignment, bytes is at
 *     most bl.max_transfer (when set) and never 0, and the request lies
 *     within BDRV_REQUEST_MAX_BYTES.  Buffers are aligned to
 *     bl.min_mem_alignment only if the driver set that.
 *   - Reads past the end of a node are never sent to the driver: the
 *     request path zero-fills them.
 *   - Return 0 or a negative errno.
 *   - open/close/create/truncate with err: a sentence naming the image.
 *   - Every callback not marked required may be NULL.
 */
#ifndef SPINDLE_BLOCK_DRIVER_H
#define SPINDLE_BLOCK_DRIVER_H

#include "block/block.h"

/* One line of `check`'s result, as qemu-img check reports it. */
struct bdrv_check_result {
    int corruptions;
    int leaks;
    int check_errors;
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset;
    int64_t allocated_clusters;
    int64_t total_clusters;
    int64_t fragmented_clusters;
    int64_t compressed_clusters;
};

/*
 * One option of co_create, as `create` prints it in its "Formatting ..."
 * line (in table order: given values, else defaults) and in `-o help`.
 */
enum bdrv_opt_type {
    BDRV_OPT_STRING,
    BDRV_OPT_BOOL,
    BDRV_OPT_NUMBER,
    BDRV_OPT_SIZE,
};

struct bdrv_create_opt {
    const char *name;
    enum bdrv_opt_type type;
    const char *def;          /* printed when not given; NULL: not printed */
    const char *help;
    bool protocol;            /* the protocol's option, passed through (not in -o help) */
};

enum bdrv_check_mode {
    BDRV_FIX_LEAKS  = 1,
    BDRV_FIX_ERRORS = 2,
};

struct block_driver {
    /* Required: the name in "driver": "..." and `-f`. */
    const char *format_name;
    /* Bytes of driver state allocated with each node (bs->opaque). */
    size_t instance_size;

    /* Protocols: the URL scheme or filename prefix ("file", "null-co"). */
    const char *protocol_name;
    bool is_format;                  /* has a file child and may be probed */
    bool is_filter;                  /* passes requests to its file child */
    bool supports_backing;           /* has (or may have) a backing child */

    /* Keys open() reads from its options, besides the generic ones. */
    const char *const *option_keys;

    /* Probing a format: a score 0..100 for the first bytes of an image. */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);
    /* Protocols: turn "proto:..." or a URL into options (filename, host...). */
    int (*parse_filename)(const char *filename, json_t *options, struct err *err);

    /*
     * Required.  Open bs from options: read the driver's keys, open
     * children with bnode_open_child(), set bs->size (or provide
     * getlength) and, for formats with a backing file, bs->backing_file
     * and bs->backing_format.  Main thread, may yield (runs in a coroutine).
     */
    int (*open)(struct block_node *bs, json_t *options, int flags, struct err *err);
    /* Free the driver's state; children are detached by the caller after. */
    void (*close)(struct block_node *bs);

    /*
     * Create a new image from options: "filename" (or "file" for formats),
     * "size", and the driver's creation options (qemu-img create -o).
     * coroutine_fn.
     */
    int (*co_create)(json_t *options, struct err *err);
    /* The -o keys co_create accepts, for `create -o help`, with help text. */
    const char *const *create_option_help;
    /* Or, richer: the options in the order and form `create` prints them. */
    const struct bdrv_create_opt *create_opts;

    /* Whether a new image reads as zeroes everywhere (convert skips zeroes). */
    bool (*has_zero_init)(struct block_node *bs);

    int64_t (*getlength)(struct block_node *bs);
    int64_t (*get_allocated_file_size)(struct block_node *bs);
    /* Fill bs->bl; the defaults (alignment 1, no limits) are set before. */
    void (*refresh_limits)(struct block_node *bs);

    int (*co_preadv)(struct block_node *bs, int64_t offset, int64_t bytes,
                     struct qiov *qiov, size_t qiov_offset, int flags);
    /* flags: only those in supported_write_flags reach the driver. */
    int (*co_pwritev)(struct block_node *bs, int64_t offset, int64_t bytes,
                      struct qiov *qiov, size_t qiov_offset, int flags);
    unsigned supported_write_flags;
    /*
     * Write zeroes efficiently or return -ENOTSUP (the request path then
     * writes zero buffers unless BDRV_REQ_NO_FALLBACK).
     */
    int (*co_pwrite_zeroes)(struct block_node *bs, int64_t offset, int64_t bytes, int flags);
    unsigned supported_zero_flags;
    /* Advisory; -ENOTSUP is treated as success. */
    int (*co_pdiscard)(struct block_node *bs, int64_t offset, int64_t bytes);

    /* Write back the driver's own caches (metadata) to its children. */
    int (*co_flush_to_os)(struct block_node *bs);
    /* Make everything written so far durable (fdatasync). */
    int (*co_flush_to_disk)(struct block_node *bs);

    /*
     * Status of a prefix of [offset, offset+bytes): BDRV_BLOCK_* flags and
     * its length in *pnum.  With OFFSET_VALID, *map and *file give the
     * location; RAW means "the same range of *file at *map".  Without this
     * callback a node reports DATA|ALLOCATED (formats, filters: RAW).
     * offset and bytes are aligned to request_alignment (bytes may end at
     * the node's end).
     */
    int (*co_block_status)(struct block_node *bs, bool want_zero, int64_t offset,
                           int64_t bytes, int64_t *pnum, int64_t *map,
                           struct block_node **file);

    int (*co_truncate)(struct block_node *bs, int64_t offset, bool exact,
                       enum prealloc_mode prealloc, int flags, struct err *err);

    /* The format-specific info object ("format-specific" in qemu-img's JSON). */
    json_t *(*get_specific_info)(struct block_node *bs, struct err *err);
    /* Cluster size and similar for `info`: 0 when not applicable. */
    int64_t (*get_cluster_size)(struct block_node *bs);
    /* Whether the image is marked dirty (unclean shutdown) for info. */
    bool (*is_dirty)(struct block_node *bs);

    /* Consistency check and repair (qemu-img check). coroutine_fn. */
    int (*co_check)(struct block_node *bs, struct bdrv_check_result *res, int fix);

    /* Write a new backing file name/format into the image header. */
    int (*co_change_backing_file)(struct block_node *bs, const char *backing_file,
                                  const char *backing_fmt);

    /*
     * Make a read-only node writable or the reverse (commit needs its base
     * writable).  Main thread, drained.
     */
    int (*reopen_rw)(struct block_node *bs, bool writable, struct err *err);

    /* blkdebug: a named event happened above this node (bnode_debug_event). */
    void (*debug_event)(struct block_node *bs, int event);

    /* Format extensions (snapshots, bitmaps, amend) hang off this. */
    const void *format_ops;
};

void bdrv_register(const struct block_driver *drv);
const struct block_driver *bdrv_find_driver(const char *format_name);
const struct block_driver *bdrv_find_protocol(const char *filename, struct err *err);
/* Call fn for every registered driver. */
void bdrv_foreach_driver(void (*fn)(const struct block_driver *drv, void *opaque),
                         void *opaque);

#define BLOCK_DRIVER_REGISTER(drv)                                             \
    static void __attribute__((constructor)) register_##drv(void)              \
    {                                                                          \
        bdrv_register(&(drv));                                                 \
    }

/*
 * Create an image of any format from options (synchronous; runs the
 * driver's co_create in a coroutine).  format: driver name.
 */
int bdrv_create(const char *format, json_t *options, struct err *err);

/* ---- Helpers for drivers ----------------------------------------------- */

/* Set bs->size (and the shortcut drivers use for it). */
static inline void bnode_set_size(struct block_node *bs, int64_t size)
{
    atomic_store(&bs->size, size);
}

static inline int64_t bnode_size(const struct block_node *bs)
{
    return atomic_load((_Atomic int64_t *)&bs->size);
}

/* Paths: a backing file name relative to the directory of the image. */
char *bdrv_resolve_relative(const char *image_filename, const char *relative);

#endif
