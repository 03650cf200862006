/*
 * The null protocol, with QEMU's null-co semantics: a disk of `size` bytes
 * (default 1 GiB) that accepts every write and, with read-zeroes=on, reads
 * zeroes (otherwise reads leave the buffer as it was, for benchmarks that
 * measure the I/O path alone).  latency-ns delays every request.
 */
#include "block/driver.h"

#include "util/opts.h"

struct null_state {
    uint64_t latency_ns;
    bool read_zeroes;
};

static const char *const null_keys[] = { "filename", "size", "latency-ns", "read-zeroes", NULL };

static int null_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    struct null_state *s = bs->opaque;
    uint64_t size = 1 * GiB;
    const char *filename;

    if (opts_get_str(options, "filename", &filename, NULL) == 0 && strcmp(filename, "") &&
        strcmp(filename, "null-co://") && strcmp(filename, "null-aio://")) {
        err_set(err, "The only allowed filename for this driver is '%s://'",
                bs->drv->format_name);
        return -EINVAL;
    }
    if (opts_get_size(options, "size", &size, err) == -EINVAL ||
        opts_get_uint(options, "latency-ns", &s->latency_ns, err) == -EINVAL ||
        opts_get_bool(options, "read-zeroes", &s->read_zeroes, err) == -EINVAL) {
        return -EINVAL;
    }
    if (size > (uint64_t)INT64_MAX) {
        err_set(err, "size is too large");
        return -EINVAL;
    }
    bnode_set_size(bs, (int64_t)size);
    return 0;
}

static void coroutine_fn null_delay(struct null_state *s)
{
    if (s->latency_ns) {
        co_sleep_ns((int64_t)s->latency_ns);
    }
}

static int coroutine_fn null_co_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                       struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct null_state *s = bs->opaque;
    if (s->read_zeroes) {
        qiov_memset(qiov, qiov_offset, 0, bytes);
    }
    null_delay(s);
    return 0;
}

static int coroutine_fn null_co_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                        struct qiov *qiov, size_t qiov_offset, int flags)
{
    null_delay(bs->opaque);
    return 0;
}

static int coroutine_fn null_co_pwrite_zeroes(struct block_node *bs, int64_t offset,
                                              int64_t bytes, int flags)
{
    null_delay(bs->opaque);
    return 0;
}

static int coroutine_fn null_co_flush(struct block_node *bs)
{
    null_delay(bs->opaque);
    return 0;
}

static int coroutine_fn null_co_block_status(struct block_node *bs, bool want_zero,
                                             int64_t offset, int64_t bytes, int64_t *pnum,
                                             int64_t *map, struct block_node **file)
{
    struct null_state *s = bs->opaque;
    *pnum = bytes;
    *map = offset;
    *file = bs;
    return BDRV_BLOCK_OFFSET_VALID | (s->read_zeroes ? BDRV_BLOCK_ZERO : 0);
}

static int null_parse_filename(const char *filename, json_t *options, struct err *err)
{
    json_object_set_new(options, "filename", json_string(filename));
    return 0;
}

static const struct block_driver bdrv_null_co = {
    .format_name = "null-co",
    .protocol_name = "null-co",
    .instance_size = sizeof(struct null_state),
    .option_keys = null_keys,
    .parse_filename = null_parse_filename,
    .open = null_open,
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
    .co_flush_to_disk = null_co_flush,
    .co_block_status = null_co_block_status,
};

BLOCK_DRIVER_REGISTER(bdrv_null_co)

/* null-aio: the same disk under QEMU's other name for it. */
static const struct block_driver bdrv_null_aio = {
    .format_name = "null-aio",
    .protocol_name = "null-aio",
    .instance_size = sizeof(struct null_state),
    .option_keys = null_keys,
    .parse_filename = null_parse_filename,
    .open = null_open,
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
    .co_flush_to_disk = null_co_flush,
    .co_block_status = null_co_block_status,
};

BLOCK_DRIVER_REGISTER(bdrv_null_aio)
