/*
 * spindle-img convert: copy one or more images (concatenated) into a new
 * image of any format.
 *
 * The source is walked in chunks classified by block status: zero chunks
 * are skipped when the target reads as zeroes already, else written as
 * zero writes; data chunks are read and written, with runs of at least
 * -S bytes of zeroes inside them skipped the same way.  -m coroutines copy
 * chunks at once; writes stay in order unless -W.
 */
#include "img.h"

#include <unistd.h>

#include "block/dirty-bitmap.h"
#include "block/driver.h"
#include "qcow2/qcow2.h"
#include "util/opts.h"

#define CHUNK_MAX   (2 * MiB)

/* CHUNK_BACKING: unallocated in the source's top layer; the target's backing file has it. */
enum chunk_kind { CHUNK_DATA, CHUNK_ZERO, CHUNK_BACKING };

struct convert {
    struct block_backend **src;
    int64_t *src_size;
    int nsrc;
    int64_t total;
    struct block_backend *target;
    bool target_zero_init;
    bool in_order;
    bool compress;
    int64_t cluster_size;          /* compression: chunks are whole target clusters */
    bool target_has_backing;       /* -B: copy only what the source's top layer has */
    int64_t target_backing_size;   /* past it the target reads zeroes anyway */
    bool salvage;
    int64_t min_sparse;
    int64_t chunk_max;

    int64_t next;                  /* the next byte to hand out */
    struct co_mutex next_lock;     /* block status may yield: one claim at a time */
    int64_t wr_next;               /* in-order writes: the next byte to write */
    struct co_queue wr_waiters;
    int running;
    int ret;
    int64_t done_bytes;
    struct img_progress progress;
};

/* The source and the offset inside it for a byte of the concatenation. */
static int source_of(struct convert *s, int64_t off, int64_t *src_off)
{
    for (int i = 0; i < s->nsrc; i++) {
        if (off < s->src_size[i]) {
            *src_off = off;
            return i;
        }
        off -= s->src_size[i];
    }
    return -1;
}

/* Claim the next chunk: where, how long, and whether it holds data. */
static int coroutine_fn next_chunk(struct convert *s, int64_t *off, int64_t *len,
                                   enum chunk_kind *kind)
{
    if (s->next >= s->total) {
        return 0;
    }
    int64_t src_off = 0;
    int i = source_of(s, s->next, &src_off);
    int64_t n = MIN(s->chunk_max, s->src_size[i] - src_off);
    int64_t pnum;
    struct block_node *bs = blk_node(s->src[i]);
    struct block_node *base = s->target_has_backing ? bnode_backing_bs(bs) : NULL;

    int ret = bnode_co_block_status_above(bs, base, true, src_off, n, &pnum, NULL, NULL, NULL);
    if (ret < 0) {
        img_error("error while reading block status at offset %" PRId64 ": %s", s->next,
                  strerror(-ret));
        return ret;
    }
    *off = s->next;
    *len = MAX(MIN(pnum, n), 1);
    if (s->target_has_backing && !(ret & BDRV_BLOCK_ALLOCATED)) {
        *kind = CHUNK_BACKING;
    } else if (ret & BDRV_BLOCK_ZERO) {
        bool past_backing = s->target_has_backing && *off >= s->target_backing_size;
        *kind = past_backing ? CHUNK_BACKING : CHUNK_ZERO;
    } else {
        *kind = CHUNK_DATA;
    }
    if (s->compress) {
        /* Compressed clusters are written whole: a short run counts as data. */
        if (*len < s->cluster_size) {
            *len = MIN(s->cluster_size, s->total - *off);
            *kind = CHUNK_DATA;
        } else {
            *len = ALIGN_DOWN(*len, s->cluster_size);
        }
    }
    s->next += *len;
    return 1;
}

static int coroutine_fn read_chunk(struct convert *s, int64_t off, int64_t len, uint8_t *buf)
{
    int64_t done = 0;
    while (done < len) {
        int64_t src_off = 0;
        int i = source_of(s, off + done, &src_off);
        int64_t n = MIN(len - done, s->src_size[i] - src_off);
        int ret = blk_co_pread(s->src[i], src_off, n, buf + done, 0);
        if (ret < 0) {
            if (!s->salvage) {
                img_error("error while reading at byte %" PRId64 ": %s", off + done,
                          strerror(-ret));
                return ret;
            }
            /* --salvage: what cannot be read is copied as zeroes. */
            log_warn("error while reading at byte %" PRId64 ": %s; writing zeroes instead",
                     off + done, strerror(-ret));
            memset(buf + done, 0, n);
        }
        done += n;
    }
    return 0;
}

static int coroutine_fn write_zeroes(struct convert *s, int64_t off, int64_t len)
{
    if (s->target_zero_init) {
        return 0;
    }
    return blk_co_pwrite_zeroes(s->target, off, len, BDRV_REQ_MAY_UNMAP);
}

/*
 * Write a data chunk, skipping (or zero-writing) aligned runs of at least
 * min_sparse zero bytes.
 */
static int coroutine_fn write_data(struct convert *s, int64_t off, int64_t len, uint8_t *buf)
{
    int flags = 0;
    if (s->compress) {
        /* Whole clusters: only a chunk of nothing but zeroes may be left out. */
        if (s->min_sparse && buffer_is_zero(buf, len)) {
            return write_zeroes(s, off, len);
        }
        return blk_co_pwrite(s->target, off, len, buf, BDRV_REQ_WRITE_COMPRESSED);
    }
    if (!s->min_sparse) {
        return blk_co_pwrite(s->target, off, len, buf, flags);
    }
    int64_t pos = 0;
    while (pos < len) {
        /* Extend a run of pieces that are all zero or all data. */
        int64_t piece = MIN(s->min_sparse - (off + pos) % s->min_sparse, len - pos);
        bool zero = piece == s->min_sparse && buffer_is_zero(buf + pos, piece);
        int64_t end = pos + piece;
        while (end < len) {
            int64_t p = MIN(s->min_sparse, len - end);
            bool z = p == s->min_sparse && buffer_is_zero(buf + end, p);
            if (z != zero) {
                break;
            }
            end += p;
        }
        int ret = zero ? write_zeroes(s, off + pos, end - pos)
                       : blk_co_pwrite(s->target, off + pos, end - pos, buf + pos, flags);
        if (ret < 0) {
            return ret;
        }
        pos = end;
    }
    return 0;
}

static void coroutine_fn wait_turn(struct convert *s, int64_t off)
{
    while (s->in_order && s->wr_next != off && !s->ret) {
        co_queue_wait(&s->wr_waiters, NULL);
    }
}

static void finish_turn(struct convert *s, int64_t off, int64_t len)
{
    if (s->in_order) {
        s->wr_next = off + len;
        co_queue_restart_all(&s->wr_waiters);
    }
    s->done_bytes += len;
    img_progress_update(&s->progress, s->total ? (double)s->done_bytes / s->total : 1.0);
}

static void convert_worker(void *opaque)
{
    struct convert *s = opaque;
    uint8_t *buf = blk_blockalign(s->target, s->chunk_max);

    while (!s->ret) {
        int64_t off, len;
        enum chunk_kind kind;
        co_mutex_lock(&s->next_lock);
        int ret = next_chunk(s, &off, &len, &kind);
        co_mutex_unlock(&s->next_lock);
        if (ret <= 0) {
            s->ret = s->ret ? s->ret : ret;
            break;
        }
        ret = kind == CHUNK_DATA ? read_chunk(s, off, len, buf) : 0;
        wait_turn(s, off);
        if (ret == 0 && !s->ret && kind != CHUNK_BACKING) {
            ret = kind == CHUNK_DATA ? write_data(s, off, len, buf) : write_zeroes(s, off, len);
            if (ret < 0) {
                img_error("error while writing at byte %" PRId64 ": %s", off, strerror(-ret));
            }
        }
        if (ret < 0 && !s->ret) {
            s->ret = ret;
            co_queue_restart_all(&s->wr_waiters);
            break;
        }
        finish_turn(s, off, len);
    }
    free(buf);
    s->running--;
    co_queue_restart_all(&s->wr_waiters);
}

/* ---- --bitmaps: the source's persistent bitmaps, copied after the data ------ */

struct bitmap_copy {
    struct block_node *dst;
    bool skip_broken;
};

/* Refused before anything is written, as qemu-img does. */
static int check_one_bitmap(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    struct bitmap_copy *c = opaque;
    if (bm->name && bm->persistent && bm->inconsistent && !c->skip_broken) {
        img_error("Cannot copy inconsistent bitmap '%s'", bm->name);
        fprintf(stderr, "Try --skip-broken-bitmaps, or use 'spindle-img bitmap --remove' to "
                "delete it\n");
        return -EINVAL;
    }
    return 0;
}

/* A persistent bitmap of the same name, granularity, bits and state on the target. */
static int copy_one_bitmap(struct bdrv_dirty_bitmap *bm, void *opaque)
{
    struct bitmap_copy *c = opaque;
    struct err err = { 0 };
    if (!bm->name || !bm->persistent) {
        return 0;
    }
    if (bm->inconsistent) {
        fprintf(stderr, "spindle-img: warning: Skipping inconsistent bitmap '%s'\n", bm->name);
        return 0;
    }
    const struct qcow2_format_ops *ops = qcow2_get_ops(c->dst);
    struct bdrv_dirty_bitmap *copy = NULL;
    if (ops->bitmap_can_store(c->dst, bm->name, bm->granularity, &err) == 0) {
        copy = bdrv_create_dirty_bitmap(c->dst, bm->granularity, bm->name, &err);
    }
    if (!copy) {
        img_error("Failed to create bitmap %s: %s", bm->name, err.msg);
        return -EINVAL;
    }
    copy->persistent = true;
    if (bdrv_merge_dirty_bitmap(copy, bm, &err) < 0) {
        img_error("Failed to populate bitmap %s: %s", bm->name, err.msg);
        bdrv_release_dirty_bitmap(copy);
        return -EINVAL;
    }
    if (bm->disabled) {
        bdrv_disable_dirty_bitmap(copy);
    }
    return 0;
}

static int copy_bitmaps(struct convert *s, bool skip_broken)
{
    struct bitmap_copy c = { bnode_skip_filters(blk_node(s->target)), skip_broken };
    return bdrv_dirty_bitmap_foreach(bnode_skip_filters(blk_node(s->src[0])), copy_one_bitmap,
                                     &c);
}

/* Before anything is created: the source can have bitmaps, and none is broken. */
static int check_bitmaps(struct convert *s, bool skip_broken)
{
    struct block_node *src = bnode_skip_filters(blk_node(s->src[0]));
    if (!qcow2_get_ops(src)) {
        img_error("Source lacks bitmap support");
        return -ENOTSUP;
    }
    struct bitmap_copy c = { NULL, skip_broken };
    return bdrv_dirty_bitmap_foreach(src, check_one_bitmap, &c);
}

/* ---- Options and setup ------------------------------------------------- */

struct convert_args {
    const char *fmt, *out_fmt, *cache, *src_cache, *out_opts, *backing, *backing_fmt;
    bool image_opts, target_image_opts, skip_create, quiet, progress, force_share;
    bool target_is_zero, compress, salvage, unordered, bitmaps, skip_broken_bitmaps;
    int64_t min_sparse;
    int num_coroutines;
    char **filenames;
    int nfiles;
    const char *out_filename;
};

static int parse_args(int argc, char **argv, struct convert_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "target-image-opts", no_argument, NULL, 'J' },
        { "target-is-zero", no_argument, NULL, 'Z' },
        { "salvage", no_argument, NULL, 'V' },
        { "force-share", no_argument, NULL, 'U' },
        { "bitmaps", no_argument, NULL, 'M' },
        { "skip-broken-bitmaps", no_argument, NULL, 'K' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    int64_t v;

    *a = (struct convert_args){ .out_fmt = "raw", .cache = "unsafe", .src_cache = "writeback",
                                .min_sparse = 4096, .num_coroutines = 8 };
    while ((c = getopt_long(argc, argv, ":hf:O:B:F:Cco:l:S:pt:T:qnm:WUr:", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 'f':
            a->fmt = optarg;
            break;
        case 'O':
            a->out_fmt = optarg;
            break;
        case 'B':
            a->backing = optarg;
            break;
        case 'F':
            a->backing_fmt = optarg;
            break;
        case 'c':
            a->compress = true;
            break;
        case 'o':
            a->out_opts = optarg;
            break;
        case 'S':
            if (img_parse_size(optarg, &v) < 0 || v < 0 || v > 32 * (int64_t)MiB ||
                (v && v % 512)) {
                img_error("Invalid buffer size for sparse output specified. Valid sizes are "
                          "multiples of 512 up to 32M.");
                return -EINVAL;
            }
            a->min_sparse = v;
            break;
        case 'p':
            a->progress = true;
            break;
        case 't':
            a->cache = optarg;
            break;
        case 'T':
            a->src_cache = optarg;
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'n':
            a->skip_create = true;
            break;
        case 'm':
            if (parse_int64(optarg, &v) < 0 || v < 1 || v > 16) {
                img_error("Invalid number of coroutines. Allowed number of coroutines is "
                          "between 1 and 16");
                return -EINVAL;
            }
            a->num_coroutines = (int)v;
            break;
        case 'W':
            a->unordered = true;
            break;
        case 'U':
            a->force_share = true;
            break;
        case 'I':
            a->image_opts = true;
            break;
        case 'J':
            a->target_image_opts = true;
            break;
        case 'Z':
            a->target_is_zero = true;
            break;
        case 'M':
            a->bitmaps = true;
            break;
        case 'K':
            a->skip_broken_bitmaps = true;
            break;
        case 'V':
            a->salvage = true;
            break;
        case 'C':
            img_error("Copy offloading (-C) is not supported by spindle-img");
            return -ENOTSUP;
        case 'l':
            img_error("Converting from an internal snapshot (-l) needs the qcow2 driver's "
                      "snapshot support");
            return -ENOTSUP;
        case 'r':
            img_error("Rate limiting (-r) is not supported by convert");
            return -ENOTSUP;
        case 'h':
            printf("usage: spindle-img convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] "
                   "[-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] "
                   "[-S sparse_size] [-m num_coroutines] [-W] [--target-is-zero] "
                   "[--bitmaps [--skip-broken-bitmaps]] "
                   "filename [filename2 [...]] output_filename\n");
            return 1;
        case ':':
            img_error("option requires an argument -- '%c'", optopt);
            return -EINVAL;
        default:
            img_error("invalid option -- '%c'", optopt);
            return -EINVAL;
        }
    }
    if (argc - optind < 2) {
        img_error("Must specify image file name");
        return -EINVAL;
    }
    if (a->target_is_zero && !a->skip_create) {
        img_error("--target-is-zero requires use of -n flag");
        return -EINVAL;
    }
    if (a->skip_broken_bitmaps && !a->bitmaps) {
        img_error("Use of --skip-broken-bitmaps requires --bitmaps");
        return -EINVAL;
    }
    if (a->bitmaps && argc - optind > 2) {
        img_error("Copying bitmaps only possible with single source");
        return -EINVAL;
    }
    if (a->backing && argc - optind > 2) {
        img_error("-B makes no sense when concatenating multiple input images");
        return -EINVAL;
    }
    if (a->target_image_opts && !a->skip_create) {
        img_error("--target-image-opts requires use of -n flag");
        return -EINVAL;
    }
    a->filenames = argv + optind;
    a->nfiles = argc - optind - 1;
    a->out_filename = argv[argc - 1];
    return 0;
}

static int open_sources(struct convert *s, const struct convert_args *a)
{
    s->nsrc = a->nfiles;
    s->src = xcalloc(s->nsrc, sizeof(*s->src));
    s->src_size = xcalloc(s->nsrc, sizeof(*s->src_size));
    for (int i = 0; i < s->nsrc; i++) {
        struct image_open o = { .filename = a->filenames[i], .fmt = a->fmt,
                                .image_opts = a->image_opts, .cache = a->src_cache,
                                .force_share = a->force_share };
        s->src[i] = img_open(&o);
        if (!s->src[i]) {
            return -EINVAL;
        }
        s->src_size[i] = blk_getlength(s->src[i]);
        if (s->src_size[i] < 0) {
            img_error("Could not get size of %s: %s", a->filenames[i],
                      strerror((int)-s->src_size[i]));
            return (int)s->src_size[i];
        }
        s->total += s->src_size[i];
    }
    return 0;
}

static int create_target(struct convert *s, const struct convert_args *a)
{
    struct err err = { 0 };
    json_t *opts = a->out_opts ? opts_parse(a->out_opts, NULL, &err) : json_object();
    if (!opts) {
        img_error("Invalid options for file format '%s': %s", a->out_fmt, err.msg);
        return -EINVAL;
    }
    json_object_set_new(opts, "filename", json_string(a->out_filename));
    json_object_set_new(opts, "size", json_integer(s->total));
    if (a->backing) {
        json_object_set_new(opts, "backing_file", json_string(a->backing));
        if (a->backing_fmt) {
            json_object_set_new(opts, "backing_fmt", json_string(a->backing_fmt));
        } else if (!json_object_get(opts, "backing_fmt")) {
            img_error("Use of backing file requires explicit backing format");
            json_decref(opts);
            return -EINVAL;
        }
    }
    int ret = bdrv_create(a->out_fmt, opts, &err);
    json_decref(opts);
    if (ret < 0) {
        img_error("%s: error while converting %s: %s", a->out_filename, a->out_fmt, err.msg);
    }
    return ret;
}

static int open_target(struct convert *s, const struct convert_args *a)
{
    struct image_open o = { .filename = a->out_filename, .fmt = a->out_fmt,
                            .image_opts = a->target_image_opts, .cache = a->cache,
                            .writable = true, .unmap = true };
    if (a->target_image_opts) {
        o.fmt = NULL;
    }
    s->target = img_open(&o);
    if (!s->target) {
        return -EINVAL;
    }
    int64_t size = blk_getlength(s->target);
    if (a->skip_create && size < s->total) {
        img_error("error while converting %s: Output image is smaller than the input "
                  "(%" PRId64 " < %" PRId64 " bytes)", a->out_fmt, size, s->total);
        return -EINVAL;
    }
    struct block_node *bs = blk_node(s->target);
    s->target_zero_init = a->target_is_zero ||
                          (!a->skip_create && !a->backing && bnode_has_zero_init(bs));
    if (a->compress) {
        if (!(bs->drv->supported_write_flags & BDRV_REQ_WRITE_COMPRESSED) ||
            !bs->drv->get_cluster_size || bs->drv->get_cluster_size(bs) <= 0) {
            img_error("Compression not supported for this file format");
            return -ENOTSUP;
        }
        s->cluster_size = bs->drv->get_cluster_size(bs);
    }
    if (a->bitmaps && !qcow2_get_ops(bnode_skip_filters(bs))) {
        img_error("Format driver '%s' does not support bitmaps", bnode_format_name(bs));
        return -ENOTSUP;
    }
    s->target_has_backing = a->backing != NULL;
    if (s->target_has_backing) {
        struct block_node *tb = bnode_backing_bs(bs);
        s->target_backing_size = tb ? bnode_getlength(tb) : 0;
    }
    return 0;
}

int img_convert(int argc, char **argv)
{
    struct convert_args a;
    struct convert s = { 0 };
    int ret = parse_args(argc, argv, &a);
    if (ret) {
        return 1;
    }
    bool created = false;
    ret = open_sources(&s, &a);
    if (ret == 0 && a.bitmaps) {
        ret = check_bitmaps(&s, a.skip_broken_bitmaps);
    }
    if (ret == 0 && !a.skip_create) {
        ret = create_target(&s, &a);
        created = ret == 0;
    }
    if (ret == 0) {
        ret = open_target(&s, &a);
    }
    if (ret == 0) {
        /*
         * Compressed writes are not kept in order: compressing is the work,
         * and in order it would run one cluster at a time (qemu-img's default).
         * The clusters land in the order their compression finishes.
         */
        s.in_order = !a.unordered && !a.compress;
        s.compress = a.compress;
        s.salvage = a.salvage;
        s.min_sparse = a.min_sparse;
        s.chunk_max = CHUNK_MAX;
        co_queue_init(&s.wr_waiters);
        co_mutex_init(&s.next_lock);
        img_progress_init(&s.progress, a.progress && !a.quiet);
        s.running = a.num_coroutines;
        for (int i = 0; i < a.num_coroutines; i++) {
            co_enter(co_create(convert_worker, &s));
        }
        while (s.running > 0) {
            aio_poll(aio_main_context(), true);
        }
        co_mutex_destroy(&s.next_lock);
        ret = s.ret;
        if (ret == 0 && a.bitmaps) {
            ret = copy_bitmaps(&s, a.skip_broken_bitmaps);
        }
        if (ret == 0) {
            ret = blk_flush(s.target);
            if (ret < 0) {
                img_error("error while flushing %s: %s", a.out_filename, strerror(-ret));
            }
        }
        img_progress_end(&s.progress);
    }
    if (s.target) {
        blk_unref(s.target);
    }
    /* Leave no half-written image behind that we created ourselves. */
    if (ret < 0 && created) {
        unlink(a.out_filename);
    }
    for (int i = 0; i < s.nsrc; i++) {
        if (s.src[i]) {
            blk_unref(s.src[i]);
        }
    }
    free(s.src);
    free(s.src_size);
    return ret < 0 ? 1 : 0;
}
