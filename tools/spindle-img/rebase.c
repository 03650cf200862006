/*
 * spindle-img rebase: give an image another backing file (or none with
 * -b "").  In safe mode every range the image does not allocate itself is
 * compared between the old and the new backing file, and where they
 * differ the old content is copied into the image first, so what the image
 * shows never changes, whenever it is interrupted.  Then the header (and
 * the graph) switch.  -u only rewrites the header and opens no backing.
 *
 * When the new backing file is already in the image's chain, only ranges
 * allocated above it can differ, and only those are read.
 */
#include "img.h"

#include "block/driver.h"
#include "blockjobs/chain.h"

#define REBASE_BUF ((int64_t)(2 * MiB))

struct rebase {
    struct block_backend *blk;           /* the image, with its old chain */
    struct block_node *bs;               /* its format node */
    struct block_backend *old_blk, *new_blk;
    struct block_node *prefix;           /* the new backing, when in the old chain */
    int64_t size, old_size, new_size;
    uint8_t *old_buf, *new_buf;
    struct img_progress progress;
};

struct rebase_args {
    const char *filename, *fmt, *cache, *src_cache, *backing, *backing_fmt;
    bool image_opts, unsafe, force_share, quiet, progress;
};

/* A backend reading node (an old backing layer already open). */
static struct block_backend *reader_on(struct block_node *node, const char *what,
                                       const char *name)
{
    struct err err = { 0 };
    struct block_backend *blk = blk_new("");
    if (blk_insert_node(blk, node, &err) < 0) {
        img_error("Could not reuse %s '%s': %s", what, name, err.msg);
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

/* The layer of bs's chain that path names, or NULL. */
static struct block_node *find_in_chain(struct block_node *bs, const char *path)
{
    char want[PATH_MAX];
    if (!realpath(path, want)) {
        return NULL;
    }
    for (struct block_node *p = bnode_backing_bs(bs); p; p = bnode_backing_bs(p)) {
        char have[PATH_MAX];
        if (realpath(bnode_skip_filters(p)->filename, have) && !strcmp(have, want)) {
            return p;
        }
    }
    return NULL;
}

/* The new backing file: a layer of the chain, or opened read-only beside it. */
static int open_new_backing(struct rebase *r, const struct rebase_args *a)
{
    char *path = bdrv_resolve_relative(r->bs->filename, a->backing);
    r->prefix = find_in_chain(r->bs, path);
    if (r->prefix) {
        r->new_blk = reader_on(r->prefix, "backing file", a->backing);
    } else {
        struct err err = { 0 };
        struct image_open o = { .filename = path, .fmt = a->backing_fmt, .cache = a->src_cache,
                                .force_share = a->force_share };
        r->new_blk = image_open(&o, &err);
        if (!r->new_blk) {
            img_error("Could not open new backing file '%s': %s", a->backing,
                      img_open_reason(path, err.msg));
        }
    }
    free(path);
    return r->new_blk ? 0 : -EINVAL;
}

/* Whether [off, off + *n) may differ: not in the image, and changed above the prefix. */
static int needs_compare(struct rebase *r, int64_t off, int64_t *n)
{
    struct block_node *backing = bnode_backing_bs(r->bs);
    int ret = bnode_block_status_above(r->bs, backing, false, off, *n, n, NULL, NULL, NULL);
    if (ret >= 0 && !(ret & BDRV_BLOCK_ALLOCATED) && r->prefix) {
        int64_t want = *n;
        ret = bnode_block_status_above(backing, r->prefix, false, off, want, n, NULL, NULL,
                                       NULL);
        if (ret >= 0 && *n == 0) {
            /* Past the end of the old backing file: its zeroes may hide the prefix's data. */
            *n = want;
            ret = 0;
        } else if (ret >= 0) {
            /* Unchanged since the prefix: old and new read the same. */
            ret ^= BDRV_BLOCK_ALLOCATED;
        }
    }
    if (ret < 0) {
        img_error("error while reading image metadata: %s", strerror(-ret));
        return ret;
    }
    return !(ret & BDRV_BLOCK_ALLOCATED);
}

/* What a backing file reads at [off, off + *n) (zeroes past its end; *n clamped to it). */
static int read_backing(struct block_backend *blk, int64_t size, int64_t off, int64_t *n,
                        uint8_t *buf, const char *which)
{
    if (!blk || off >= size) {
        memset(buf, 0, (size_t)*n);
        return 0;
    }
    *n = MIN(*n, size - off);
    int ret = blk_pread(blk, off, *n, buf, 0);
    if (ret < 0) {
        img_error("error while reading from %s backing file", which);
    }
    return ret;
}

/* Write what the old backing shows where the new one differs. */
static int copy_differences(struct rebase *r, int64_t off, int64_t n)
{
    bool old_zero = !r->old_blk || off >= r->old_size;
    for (int64_t done = 0, pnum; done < n; done += pnum) {
        if (!img_compare_buffers(r->old_buf + done, r->new_buf + done, n - done, &pnum)) {
            continue;
        }
        int ret = old_zero ? blk_pwrite_zeroes(r->blk, off + done, pnum, 0)
                           : blk_pwrite(r->blk, off + done, pnum, r->old_buf + done, 0);
        if (ret < 0) {
            img_error("Error while writing to COW image: %s", strerror(-ret));
            return ret;
        }
    }
    return 0;
}

static int copy_loop(struct rebase *r)
{
    for (int64_t off = 0, n; off < r->size; off += n) {
        n = MIN(REBASE_BUF, r->size - off);
        int ret = needs_compare(r, off, &n);
        if (ret > 0) {
            ret = read_backing(r->old_blk, r->old_size, off, &n, r->old_buf, "old");
            if (ret == 0) {
                ret = read_backing(r->new_blk, r->new_size, off, &n, r->new_buf, "new");
            }
            if (ret == 0) {
                ret = copy_differences(r, off, n);
            }
        }
        if (ret < 0) {
            return ret;
        }
        img_progress_update(&r->progress, (double)(off + n) / (double)r->size);
    }
    return 0;
}

static int safe_copy(struct rebase *r, const struct rebase_args *a)
{
    struct block_node *old = bnode_backing_bs(r->bs);
    if (old && !(r->old_blk = reader_on(old, "old backing file", old->filename))) {
        return -EINVAL;
    }
    if (a->backing[0] && open_new_backing(r, a) < 0) {
        return -EINVAL;
    }
    r->size = blk_getlength(r->blk);
    r->old_size = r->old_blk ? blk_getlength(r->old_blk) : 0;
    r->new_size = r->new_blk ? blk_getlength(r->new_blk) : 0;
    if (r->size < 0 || r->old_size < 0 || r->new_size < 0) {
        img_error("Could not get size of '%s': %s", a->filename,
                  strerror((int)-MIN(r->size, MIN(r->old_size, r->new_size))));
        return -EIO;
    }
    r->old_buf = blk_blockalign(r->blk, REBASE_BUF);
    r->new_buf = blk_blockalign(r->blk, REBASE_BUF);
    return copy_loop(r);
}

/* Point the header (and, in safe mode, the graph) at the new backing file. */
static int switch_backing(struct rebase *r, const struct rebase_args *a)
{
    struct err err = { 0 };
    int ret;
    if (a->backing[0] && !a->backing_fmt) {
        img_error("Could not change the backing file to '%s': backing format must be specified",
                  a->backing);
        return -EINVAL;
    }
    if (a->unsafe || !a->backing[0]) {
        ret = bnode_write_backing_header(r->bs, a->backing, a->backing[0] ? a->backing_fmt : "",
                                         &err);
    } else {
        ret = bnode_change_backing(r->bs, blk_node(r->new_blk), a->backing, &err);
    }
    if (ret == -ENOSPC) {
        img_error("Could not change the backing file to '%s': No space left in the file header",
                  a->backing);
    } else if (ret < 0) {
        img_error("Could not change the backing file to '%s': %s", a->backing, strerror(-ret));
    }
    return ret;
}

static int run_rebase(struct rebase *r, const struct rebase_args *a)
{
    struct image_open o = { .filename = a->filename, .fmt = a->fmt, .image_opts = a->image_opts,
                            .cache = a->cache, .writable = true, .no_backing = a->unsafe };
    int flags;
    bool writethrough;
    if (bdrv_parse_cache_mode(a->cache, &flags, &writethrough) < 0) {
        img_error("Invalid cache option: %s", a->cache);
        return -EINVAL;
    }
    if (bdrv_parse_cache_mode(a->src_cache, &flags, &writethrough) < 0) {
        img_error("Invalid source cache option: %s", a->src_cache);
        return -EINVAL;
    }
    r->blk = img_open(&o);
    if (!r->blk) {
        return -EINVAL;
    }
    r->bs = bnode_skip_filters(blk_node(r->blk));
    if (a->backing_fmt && !bdrv_find_driver(a->backing_fmt)) {
        img_error("Invalid format name: '%s'", a->backing_fmt);
        return -EINVAL;
    }
    int ret = a->unsafe ? 0 : safe_copy(r, a);
    return ret < 0 ? ret : switch_backing(r, a);
}

static int parse_args(int argc, char **argv, struct rebase_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    *a = (struct rebase_args){ .cache = "writeback", .src_cache = "writeback" };
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            a->fmt = optarg;
            break;
        case 'F':
            a->backing_fmt = optarg;
            break;
        case 'b':
            a->backing = optarg;
            break;
        case 'u':
            a->unsafe = true;
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
        case 'I':
            a->image_opts = true;
            break;
        case 'U':
            a->force_share = true;
            break;
        case 'h':
            img_help();
            return 0;
        default:
            return img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    if (!a->unsafe && !a->backing) {
        return img_usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
    }
    a->filename = argv[optind];
    a->backing = a->backing ? a->backing : "";
    return -1;
}

int img_rebase(int argc, char **argv)
{
    struct rebase_args a;
    struct rebase r = { 0 };
    int ret = parse_args(argc, argv, &a);
    if (ret >= 0) {
        return ret;
    }
    img_progress_init(&r.progress, a.progress && !a.quiet);
    ret = run_rebase(&r, &a);
    img_progress_end(&r.progress);
    free(r.old_buf);
    free(r.new_buf);
    if (r.new_blk) {
        blk_unref(r.new_blk);
    }
    if (r.old_blk) {
        blk_unref(r.old_blk);
    }
    if (r.blk) {
        blk_unref(r.blk);
    }
    return ret < 0;
}
