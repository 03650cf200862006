/*
 * The raw format: the guest sees its file's bytes, optionally a window of
 * them (`offset`, `size`), which lets one file hold several disks.
 */
#include "block/driver.h"

#include "util/opts.h"

struct raw_state {
    uint64_t offset;
    uint64_t size;
    bool has_size;
};

static const char *const raw_keys[] = { "offset", "size", NULL };

static int raw_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    struct raw_state *s = bs->opaque;

    if (!bnode_open_child(bs, options, "file", NULL, BDRV_CHILD_FILE, flags, false, err)) {
        return -EINVAL;
    }
    if (opts_get_size(options, "offset", &s->offset, err) == -EINVAL) {
        return -EINVAL;
    }
    int ret = opts_get_size(options, "size", &s->size, err);
    if (ret == -EINVAL) {
        return ret;
    }
    s->has_size = ret == 0;
    int64_t file_size = bnode_getlength(bs->file->bs);
    if (file_size < 0) {
        return err_set_errno(err, (int)file_size, "%s: cannot get the file size",
                             bnode_describe(bs));
    }
    if (s->offset > (uint64_t)file_size) {
        err_set(err, "The sum of offset (%" PRIu64 ") and size (0) has to be smaller or equal "
                "to the actual size of the containing file (%" PRId64 ")", s->offset, file_size);
        return -EINVAL;
    }
    if (s->has_size && s->offset + s->size > (uint64_t)file_size) {
        err_set(err, "The sum of offset (%" PRIu64 ") and size (%" PRIu64 ") has to be smaller "
                "or equal to the actual size of the containing file (%" PRId64 ")", s->offset,
                s->size, file_size);
        return -EINVAL;
    }
    if (s->has_size && s->size % BDRV_SECTOR_SIZE) {
        err_set(err, "Specified size is not a multiple of %d", BDRV_SECTOR_SIZE);
        return -EINVAL;
    }
    bnode_set_size(bs, s->has_size ? (int64_t)s->size : file_size - (int64_t)s->offset);
    return 0;
}

static bool raw_has_zero_init(struct block_node *bs)
{
    return bnode_has_zero_init(bs->file->bs);
}

static int64_t raw_getlength(struct block_node *bs)
{
    struct raw_state *s = bs->opaque;
    if (s->has_size) {
        return s->size;
    }
    int64_t len = bnode_refresh_length(bs->file->bs);
    return len < 0 ? len : MAX(0, len - (int64_t)s->offset);
}

static void raw_refresh_limits(struct block_node *bs)
{
    struct block_limits *f = &bs->file->bs->bl;
    /* Offsets pass through shifted: keep the file's alignment only if the shift keeps it. */
    struct raw_state *s = bs->opaque;
    if (s->offset % f->request_alignment == 0) {
        bs->bl.request_alignment = f->request_alignment;
    }
    bs->bl.min_mem_alignment = f->min_mem_alignment;
    bs->bl.opt_mem_alignment = f->opt_mem_alignment;
}

/* The request must stay inside the window when a size is set. */
static int raw_adjust(struct block_node *bs, int64_t *offset, int64_t bytes)
{
    struct raw_state *s = bs->opaque;
    if (s->has_size && (*offset > (int64_t)s->size || bytes > (int64_t)s->size - *offset)) {
        return -EINVAL;
    }
    *offset += s->offset;
    return 0;
}

static int coroutine_fn raw_co_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                      struct qiov *qiov, size_t qiov_offset, int flags)
{
    int ret = raw_adjust(bs, &offset, bytes);
    return ret < 0 ? ret : bnode_co_preadv(bs->file, offset, bytes, qiov, qiov_offset, flags);
}

static int coroutine_fn raw_co_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                       struct qiov *qiov, size_t qiov_offset, int flags)
{
    int ret = raw_adjust(bs, &offset, bytes);
    return ret < 0 ? ret : bnode_co_pwritev(bs->file, offset, bytes, qiov, qiov_offset, flags);
}

static int coroutine_fn raw_co_pwrite_zeroes(struct block_node *bs, int64_t offset,
                                             int64_t bytes, int flags)
{
    int ret = raw_adjust(bs, &offset, bytes);
    return ret < 0 ? ret : bnode_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn raw_co_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    int ret = raw_adjust(bs, &offset, bytes);
    return ret < 0 ? ret : bnode_co_pdiscard(bs->file, offset, bytes);
}

static int coroutine_fn raw_co_block_status(struct block_node *bs, bool want_zero,
                                            int64_t offset, int64_t bytes, int64_t *pnum,
                                            int64_t *map, struct block_node **file)
{
    struct raw_state *s = bs->opaque;
    *pnum = bytes;
    *map = offset + s->offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int coroutine_fn raw_co_truncate(struct block_node *bs, int64_t offset, bool exact,
                                        enum prealloc_mode prealloc, int flags,
                                        struct err *err)
{
    struct raw_state *s = bs->opaque;
    if (s->has_size) {
        err_set(err, "%s: cannot resize a raw image with an explicit size", bnode_describe(bs));
        return -ENOTSUP;
    }
    return bnode_co_truncate(bs->file, offset + s->offset, exact, prealloc, flags, err);
}

/* Raw has no state of its own to change: its file does. */
static int raw_reopen_rw(struct block_node *bs, bool writable, struct err *err)
{
    return bnode_reopen_rw(bs->file->bs, writable, err);
}

/* Raw matches anything, weakly: every other format wins over it. */
static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return 1;
}

static int coroutine_fn raw_co_create(json_t *options, struct err *err)
{
    const struct block_driver *file = bdrv_find_driver("file");
    return file->co_create(options, err);
}

static const char *const raw_create_help[] = {
    "size", "Virtual disk size",
    "preallocation", "Preallocation mode (allowed values: off, falloc, full)",
    NULL,
};

static const struct block_driver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(struct raw_state),
    .is_format = true,
    .option_keys = raw_keys,
    .probe = raw_probe,
    .open = raw_open,
    .co_create = raw_co_create,
    .create_option_help = raw_create_help,
    .has_zero_init = raw_has_zero_init,
    .getlength = raw_getlength,
    .refresh_limits = raw_refresh_limits,
    .co_preadv = raw_co_preadv,
    .co_pwritev = raw_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK,
    .co_pdiscard = raw_co_pdiscard,
    .co_block_status = raw_co_block_status,
    .co_truncate = raw_co_truncate,
    .reopen_rw = raw_reopen_rw,
};

BLOCK_DRIVER_REGISTER(bdrv_raw)
