/*
 * spindle-img commit: copy what the top image and the layers below it (down
 * to, not including, the base) hold into the base, the immediate backing
 * file unless -b names one further down; then empty the top image so it
 * reads through to the base, unless -d (or -b, which implies it) keeps it.
 * The top's header is not changed: with -b the layers in between are
 * simply no longer needed, as with qemu-img.
 *
 * The copy runs on the block layer: ranges some layer above the base
 * allocates are read through the top and written into the base (zero
 * writes where they read as zeroes).  A failure leaves the top as it was,
 * so what it shows does not change; only the base holds part of the new
 * data, as after a failed qemu-img commit.
 */
#include "img.h"

#include <limits.h>
#include <time.h>

#include "qcow2/qcow2.h"

#define COMMIT_CHUNK ((int64_t)(2 * MiB))

struct commit {
    struct block_backend *top;       /* the chain, read through the top */
    struct block_backend *base;      /* our writer on the base node */
    struct block_node *top_bs, *base_bs;
    int64_t rate;                    /* bytes per second, 0: unlimited */
    int64_t copied;                  /* bytes written into the base so far */
    int64_t start_ns;
    struct img_progress progress;
};

/* Whether name means node, the backing file of the layer above it (named as written). */
static bool names_layer(const char *name, const char *written, struct block_node *node)
{
    if (!strcmp(name, written)) {
        return true;
    }
    char a[PATH_MAX], b[PATH_MAX];
    return realpath(name, a) && realpath(node->filename, b) && !strcmp(a, b);
}

/* The layer below top that name means, or NULL. */
static struct block_node *find_base(struct block_node *top, const char *name)
{
    for (struct block_node *p = bnode_skip_filters(top); p; p = bnode_backing_bs(p)) {
        struct block_node *below = bnode_backing_bs(p);
        if (below && names_layer(name, p->backing_file, below)) {
            return below;
        }
    }
    return NULL;
}

/* Hold the copy to -r bytes per second. */
static void throttle(struct commit *c)
{
    if (!c->rate) {
        return;
    }
    int64_t due = c->start_ns + (int64_t)((double)c->copied * 1e9 / (double)c->rate);
    int64_t now = clock_ns();
    if (due > now) {
        struct timespec ts = { (due - now) / 1000000000, (due - now) % 1000000000 };
        nanosleep(&ts, NULL);
    }
}

/* Copy [off, off+bytes) into the base: data, or zeroes where it reads so. */
static int copy_range(struct commit *c, int64_t off, int64_t bytes, bool zero, uint8_t *buf)
{
    if (zero) {
        return blk_pwrite_zeroes(c->base, off, bytes, BDRV_REQ_MAY_UNMAP);
    }
    int ret = blk_pread(c->top, off, bytes, buf, 0);
    return ret < 0 ? ret : blk_pwrite(c->base, off, bytes, buf, 0);
}

static int copy_to_base(struct commit *c, struct err *err)
{
    int64_t len = blk_getlength(c->top);
    int64_t base_len = blk_getlength(c->base);
    if (len < 0 || base_len < 0) {
        return err_set_errno(err, (int)MIN(len, base_len), "Could not get the image sizes");
    }
    /* The base must hold everything the top shows. */
    if (base_len < len && blk_truncate(c->base, len, false, PREALLOC_MODE_OFF, 0, err) < 0) {
        return -EIO;
    }
    uint8_t *buf = blk_blockalign(c->base, COMMIT_CHUNK);
    int ret = 0;
    c->start_ns = clock_ns();
    for (int64_t off = 0, pnum; off < len && ret == 0; off += pnum) {
        ret = bnode_block_status_above(c->top_bs, c->base_bs, true, off,
                                       MIN(COMMIT_CHUNK, len - off), &pnum, NULL, NULL, NULL);
        if (ret >= 0 && (ret & BDRV_BLOCK_ALLOCATED)) {
            ret = copy_range(c, off, pnum, ret & BDRV_BLOCK_ZERO, buf);
            c->copied += pnum;
            throttle(c);
        }
        ret = MIN(ret, 0);
        img_progress_update(&c->progress, (double)(off + pnum) / (double)len);
    }
    free(buf);
    if (ret == 0) {
        ret = blk_flush(c->base);
    }
    if (ret < 0) {
        err_set_errno(err, ret, "Block job failed");
    }
    return ret;
}

/* The top reads through to the base again: qcow2 frees its clusters; others cannot. */
static int empty_top(struct commit *c, struct err *err)
{
    const struct qcow2_format_ops *ops = qcow2_get_ops(c->top_bs);
    if (!ops) {
        return 0;
    }
    bnode_drained_begin(c->top_bs);
    int ret = ops->make_empty(c->top_bs, err);
    bnode_drained_end(c->top_bs);
    return ret;
}

static int run_commit(struct commit *c, const char *base_name, const char *filename, bool drop,
                      struct err *err)
{
    if (base_name) {
        c->base_bs = find_base(c->top_bs, base_name);
        if (!c->base_bs) {
            err_set(err, "Did not find '%s' in the backing chain of '%s'", base_name, filename);
            return -ENOENT;
        }
    } else {
        c->base_bs = bnode_backing_bs(bnode_skip_filters(c->top_bs));
        if (!c->base_bs) {
            err_set(err, "Image does not have a backing file");
            return -ENOENT;
        }
    }
    if (bnode_reopen_rw(c->base_bs, true, err) < 0) {
        return -EPERM;
    }
    c->base = blk_new("");
    int ret = blk_insert_node(c->base, c->base_bs, err);
    if (ret == 0) {
        ret = copy_to_base(c, err);
    }
    if (ret == 0 && !drop) {
        ret = empty_top(c, err);
    }
    return ret;
}

int img_commit(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { .writable = true, .unmap = true, .cache = "writeback" };
    struct commit c = { 0 };
    const char *base = NULL;
    bool progress = false, quiet = false, drop = false;
    int opt;

    while ((opt = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            o.fmt = optarg;
            break;
        case 't':
            o.cache = optarg;
            break;
        case 'b':
            base = optarg;
            drop = true;    /* the layers in between still need the top's data */
            break;
        case 'd':
            drop = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'r':
            if (img_cvtnum("rate limit", optarg, 0, INT64_MAX, &c.rate) < 0) {
                return 1;
            }
            break;
        case 'I':
            o.image_opts = true;
            break;
        case 'h':
            return img_help();
        default:
            return img_bad_option(opt, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    o.filename = argv[optind];
    int flags;
    bool writethrough;
    if (bdrv_parse_cache_mode(o.cache, &flags, &writethrough) < 0) {
        img_error("Invalid cache option: %s", o.cache);
        return 1;
    }
    c.top = img_open(&o);
    if (!c.top) {
        return 1;
    }
    c.top_bs = blk_node(c.top);
    img_progress_init(&c.progress, progress && !quiet);
    struct err err = { 0 };
    int ret = run_commit(&c, base, o.filename, drop, &err);
    img_progress_end(&c.progress);
    if (c.base) {
        blk_unref(c.base);
    }
    blk_unref(c.top);
    if (ret < 0) {
        img_error("%s", err.msg);
        return 1;
    }
    if (!quiet) {
        printf("Image committed.\n");
    }
    return 0;
}
