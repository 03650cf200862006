/*
 * Measure: how large a new qcow2 file must be, by the arithmetic qemu-img
 * measure uses, so the two print the same numbers.
 *
 * Fully allocated: the header cluster, every L2 table and the L1 table of
 * the virtual size, every data cluster, and the refcount blocks and table
 * that count all of that and themselves (a fixed point).  Required: the
 * same metadata with only the data clusters the source has (every cluster
 * when the new image is to have a backing file, or is preallocated with
 * falloc or full).  Bitmaps: the source's persistent bitmaps, each as if
 * every bit were set, with its table, and the directory.
 */
#include "qcow2/qcow2-int.h"

#include "block/dirty-bitmap.h"
#include "util/opts.h"

struct measure_opts {
    uint64_t size;
    uint64_t cluster_size;
    bool extended_l2;
    int version;
    uint32_t refcount_order;
    enum prealloc_mode prealloc;
    bool backing;
};

/* Refcount blocks and table clusters that count `clusters` clusters and themselves. */
static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                       uint32_t refcount_order)
{
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t per_block = cluster_size * 8 >> refcount_order;
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cluster_size;
}

/* The file of an image of size bytes with every cluster allocated. */
static uint64_t prealloc_size(uint64_t size, uint64_t cluster_size, uint32_t refcount_order,
                              bool extended_l2)
{
    uint64_t l2e = extended_l2 ? 16 : 8;
    uint64_t aligned = ALIGN_UP(size, cluster_size);
    uint64_t meta = cluster_size;                                  /* the header */
    uint64_t nl2e = ALIGN_UP(aligned / cluster_size, cluster_size / l2e);
    meta += nl2e * l2e;                                            /* L2 tables */
    uint64_t nl1e = ALIGN_UP(nl2e * l2e / cluster_size, cluster_size / 8);
    meta += nl1e * 8;                                              /* the L1 table */
    meta += refcount_metadata_size((meta + aligned) / cluster_size, cluster_size,
                                   refcount_order);
    return meta + aligned;
}

static int read_opts(json_t *o, struct measure_opts *m, struct err *err)
{
    const char *str;
    uint64_t v;
    *m = (struct measure_opts){ .cluster_size = 1U << QCOW2_DEFAULT_CLUSTER_BITS,
                                .version = 3, .refcount_order = 4 };
    if (opts_get_size(o, "size", &v, NULL) == 0) {
        m->size = v;
    }
    if (opts_get_bool(o, "extended_l2", &m->extended_l2, err) == -EINVAL) {
        return -EINVAL;
    }
    int r = opts_get_size(o, "cluster_size", &v, err);
    if (r == -EINVAL) {
        return r;
    }
    if (r == 0) {
        m->cluster_size = v;
    }
    if (!is_power_of_2(m->cluster_size) || m->cluster_size < 512 ||
        m->cluster_size > 2 * MiB) {
        err_set(err, "Cluster size must be a power of two between 512 and 2048k");
        return -EINVAL;
    }
    if (m->extended_l2 && m->cluster_size < (1U << QCOW2_EXTL2_MIN_CLUSTER_BITS)) {
        err_set(err, "Extended L2 entries are only supported with cluster sizes of at least "
                "16384 bytes");
        return -EINVAL;
    }
    if (opts_get_str(o, "compat", &str, NULL) == 0) {
        if (!strcmp(str, "0.10") || !strcmp(str, "v2")) {
            m->version = 2;
        } else if (!strcmp(str, "1.1") || !strcmp(str, "v3")) {
            m->version = 3;
        } else {
            err_set(err, "Invalid compatibility level: '%s'", str);
            return -EINVAL;
        }
    }
    r = opts_get_uint(o, "refcount_bits", &v, NULL);
    if (r == -EINVAL || (r == 0 && (!is_power_of_2(v) || v > 64))) {
        err_set(err, "Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    if (r == 0) {
        m->refcount_order = (uint32_t)ctz64(v);
    }
    if (m->version < 3 && m->refcount_order != 4) {
        err_set(err, "Different refcount widths than 16 bits require compatibility level 1.1 "
                "or above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    if (opts_get_str(o, "preallocation", &str, NULL) == 0 &&
        (prealloc_mode_parse(str, &m->prealloc) < 0)) {
        err_set(err, "invalid parameter value: %s", str);
        return -EINVAL;
    }
    bool encryption = false;
    opts_get_bool(o, "encryption", &encryption, NULL);
    if (encryption || opts_get(o, "encrypt")) {
        err_set(err, "encrypted qcow2 images are not supported yet");
        return -ENOTSUP;
    }
    m->backing = opts_get_str(o, "backing_file", &str, NULL) == 0;
    return 0;
}

/* Bytes of in_bs's data that a new image without a backing file must hold. */
static int data_required(struct block_node *in_bs, uint64_t ssize, uint64_t cluster_size,
                         uint64_t *required, struct err *err)
{
    int64_t pnum;
    for (uint64_t off = 0; off < ssize; off += (uint64_t)pnum) {
        int ret = bnode_block_status_above(in_bs, NULL, true, (int64_t)off,
                                           (int64_t)(ssize - off), &pnum, NULL, NULL, NULL);
        if (ret < 0) {
            return err_set_errno(err, ret, "Unable to get block status");
        }
        if (pnum <= 0) {
            break;
        }
        if (ret & BDRV_BLOCK_ZERO) {
            continue;     /* reads as zeroes without a backing file: nothing to store */
        }
        if ((ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED)) ==
            (BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED)) {
            /* To the end of the cluster; the next step starts at a cluster boundary. */
            pnum = (int64_t)(ALIGN_UP(off + (uint64_t)pnum, cluster_size) - off);
            *required += off % cluster_size + (uint64_t)pnum;
        }
    }
    return 0;
}

struct bitmaps_size {
    uint64_t cluster_size, disk_size, bytes, dir;
};

static int add_bitmap(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    struct bitmaps_size *b = opaque;
    if (!bm->persistent || !bm->name) {
        return 0;
    }
    uint64_t bits = DIV_ROUND_UP(b->disk_size, bm->granularity);
    uint64_t clusters = DIV_ROUND_UP(DIV_ROUND_UP(bits, 8), b->cluster_size);
    b->bytes += clusters * b->cluster_size;                  /* all of it allocated */
    b->bytes += ALIGN_UP(clusters * 8, b->cluster_size);     /* its table */
    b->dir += ALIGN_UP(24 + strlen(bm->name), 8);            /* its directory entry */
    return 0;
}

/* Whether bs (a format node) is a qcow2 image that can hold persistent bitmaps. */
static bool stores_bitmaps(struct block_node *bs)
{
    if (!qcow2_get_ops(bs)) {
        return false;
    }
    const struct qcow2_state *s = bnode_skip_filters(bs)->opaque;
    return s->version >= 3;
}

int qcow2_measure(json_t *opts, struct block_node *in_bs, struct qcow2_measure *out,
                  struct err *err)
{
    struct measure_opts m;
    int ret = read_opts(opts, &m, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t l2e = m.extended_l2 ? 16 : 8;
    uint64_t virtual_size = ALIGN_UP(m.size, m.cluster_size), required = 0;
    uint64_t l2_tables = DIV_ROUND_UP(virtual_size / m.cluster_size, m.cluster_size / l2e);
    if (l2_tables * 8 > QCOW2_MAX_L1_BYTES) {
        err_set(err, "The image size is too large (try using a larger cluster size)");
        return -EFBIG;
    }
    if (in_bs) {
        int64_t ssize = bnode_getlength(in_bs);
        if (ssize < 0) {
            return err_set_errno(err, (int)ssize, "Unable to get image size");
        }
        virtual_size = ALIGN_UP((uint64_t)ssize, m.cluster_size);
        if (m.backing) {
            /* The new backing file may share nothing with the source: count it all. */
            required = virtual_size;
        } else if ((ret = data_required(in_bs, (uint64_t)ssize, m.cluster_size, &required,
                                        err)) < 0) {
            return ret;
        }
    }
    if (m.prealloc == PREALLOC_MODE_FULL || m.prealloc == PREALLOC_MODE_FALLOC) {
        required = virtual_size;
    }
    *out = (struct qcow2_measure){ 0 };
    out->fully_allocated = prealloc_size(virtual_size, m.cluster_size, m.refcount_order,
                                         m.extended_l2);
    /* The metadata of the fully allocated image stays counted: an overestimate. */
    out->required = out->fully_allocated - virtual_size + required;
    out->has_bitmaps = m.version >= 3 && in_bs && stores_bitmaps(in_bs);
    if (out->has_bitmaps) {
        int64_t disk = bnode_getlength(in_bs);
        struct bitmaps_size b = { m.cluster_size, disk > 0 ? (uint64_t)disk : 0, 0, 0 };
        bdrv_dirty_bitmap_foreach(bnode_skip_filters(in_bs), add_bitmap, &b);
        out->bitmaps = b.bytes + ALIGN_UP(b.dir, m.cluster_size);
    }
    return 0;
}
