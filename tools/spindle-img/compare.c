/*
 * spindle-img compare: whether two images show the same content.  Exit
 * codes as qemu-img's: 0 identical, 1 different, 2 an image could not be
 * opened (or bad arguments past parsing), 3 block status failed, 4 a read
 * failed.  Runs that read as zeroes in both are skipped by block status;
 * a run allocated in one image only must read as zeroes there.  Past the
 * end of the shorter image the longer must read as zeroes, unless -s
 * (strict), which also fails on any difference in size or block status.
 */
#include "img.h"

#include "block/driver.h"

#define COMPARE_BUF ((int64_t)(2 * MiB))

struct side {
    struct block_backend *blk;
    const char *filename;
    int64_t size;
    uint8_t *buf;
};

struct compare {
    struct side a, b;
    bool quiet, strict;
    struct img_progress progress;
    int64_t progress_total;
};

/* The offset of the first sector holding a non-zero byte, or -1. */
static int64_t first_nonzero_sector(const uint8_t *buf, int64_t n)
{
    for (int64_t i = 0; i < n; i += BDRV_SECTOR_SIZE) {
        if (!buffer_is_zero(buf + i, (size_t)MIN(BDRV_SECTOR_SIZE, n - i))) {
            return i;
        }
    }
    return -1;
}

static void say(const struct compare *c, const char *fmt, int64_t offset)
{
    if (!c->quiet) {
        printf(fmt, offset);
    }
}

static int read_side(struct side *s, int64_t offset, int64_t bytes, uint8_t *buf)
{
    int ret = blk_pread(s->blk, offset, bytes, buf, 0);
    if (ret < 0) {
        img_error("Error while reading offset %" PRId64 " of %s: %s", offset, s->filename,
                  strerror(-ret));
        return 4;
    }
    return 0;
}

/* [offset, offset+bytes) of s must read as zeroes: 0, 1 (mismatch) or 4. */
static int check_zero(struct compare *c, struct side *s, int64_t offset, int64_t bytes)
{
    int ret = read_side(s, offset, bytes, c->a.buf);
    if (ret) {
        return ret;
    }
    int64_t idx = first_nonzero_sector(c->a.buf, bytes);
    if (idx >= 0) {
        say(c, "Content mismatch at offset %" PRId64 "!\n", offset + idx);
        return 1;
    }
    return 0;
}

/* Both allocate [offset, offset+bytes): compare the bytes. */
static int check_same(struct compare *c, int64_t offset, int64_t bytes)
{
    int ret = read_side(&c->a, offset, bytes, c->a.buf);
    if (!ret) {
        ret = read_side(&c->b, offset, bytes, c->b.buf);
    }
    if (ret) {
        return ret;
    }
    int64_t pnum;
    int differ = img_compare_buffers(c->a.buf, c->b.buf, bytes, &pnum);
    if (differ || pnum != bytes) {
        say(c, "Content mismatch at offset %" PRId64 "!\n", offset + (differ ? 0 : pnum));
        return 1;
    }
    return 0;
}

static int status(struct side *s, int64_t offset, int64_t *pnum)
{
    int ret = bnode_block_status_above(blk_node(s->blk), NULL, true, offset, s->size - offset,
                                       pnum, NULL, NULL, NULL);
    if (ret < 0) {
        img_error("Sector allocation test failed for %s", s->filename);
    }
    return ret;
}

static void advance(struct compare *c, int64_t *offset, int64_t chunk)
{
    *offset += chunk;
    img_progress_update(&c->progress, (double)*offset / (double)c->progress_total);
}

/* The common part of both images. */
static int compare_common(struct compare *c, int64_t end, int64_t *offset)
{
    while (*offset < end) {
        int64_t pnum1, pnum2;
        int st1 = status(&c->a, *offset, &pnum1);
        int st2 = st1 < 0 ? 0 : status(&c->b, *offset, &pnum2);
        if (st1 < 0 || st2 < 0) {
            return 3;
        }
        int64_t chunk = MIN(MIN(pnum1, pnum2), COMPARE_BUF);
        bool alloc1 = st1 & BDRV_BLOCK_ALLOCATED, alloc2 = st2 & BDRV_BLOCK_ALLOCATED;
        int ret = 0;
        if (c->strict && st1 != st2) {
            say(c, "Strict mode: Offset %" PRId64 " block status mismatch!\n", *offset);
            return 1;
        }
        if ((st1 & BDRV_BLOCK_ZERO) && (st2 & BDRV_BLOCK_ZERO)) {
            chunk = MIN(pnum1, pnum2);         /* zeroes in both: nothing to read */
        } else if (alloc1 && alloc2) {
            ret = check_same(c, *offset, chunk);
        } else if (alloc1 != alloc2) {
            ret = check_zero(c, alloc1 ? &c->a : &c->b, *offset, chunk);
        } else {
            chunk = MIN(pnum1, pnum2);         /* neither chain has it: zeroes */
        }
        if (ret) {
            return ret;
        }
        advance(c, offset, chunk);
    }
    return 0;
}

/* Past the end of the shorter image, the longer one must read as zeroes. */
static int compare_tail(struct compare *c, int64_t *offset)
{
    struct side *over = c->a.size > c->b.size ? &c->a : &c->b;
    while (*offset < over->size) {
        int64_t chunk;
        int st = status(over, *offset, &chunk);
        if (st < 0) {
            return 3;
        }
        if ((st & BDRV_BLOCK_ALLOCATED) && !(st & BDRV_BLOCK_ZERO)) {
            chunk = MIN(chunk, COMPARE_BUF);
            int ret = check_zero(c, over, *offset, chunk);
            if (ret) {
                return ret;
            }
        }
        advance(c, offset, chunk);
    }
    return 0;
}

static int run_compare(struct compare *c)
{
    struct side *sides[] = { &c->a, &c->b };
    for (int i = 0; i < 2; i++) {
        sides[i]->size = blk_getlength(sides[i]->blk);
        if (sides[i]->size < 0) {
            img_error("Can't get size of %s: %s", sides[i]->filename,
                      strerror((int)-sides[i]->size));
            return 4;
        }
        sides[i]->buf = blk_blockalign(sides[i]->blk, COMPARE_BUF);
    }
    c->progress_total = MAX(MAX(c->a.size, c->b.size), 1);
    if (c->strict && c->a.size != c->b.size) {
        say(c, "Strict mode: Image size mismatch!\n", 0);
        return 1;
    }
    int64_t offset = 0;
    int ret = compare_common(c, MIN(c->a.size, c->b.size), &offset);
    if (ret) {
        return ret;
    }
    if (c->a.size != c->b.size) {
        say(c, "Warning: Image size mismatch!\n", 0);
        ret = compare_tail(c, &offset);
        if (ret) {
            return ret;
        }
    }
    say(c, "Images are identical.\n", 0);
    return 0;
}

int img_compare(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o1 = { .cache = "writeback" }, o2;
    const char *fmt2 = NULL;
    struct compare c = { 0 };
    bool progress = false;
    int opt;

    while ((opt = getopt_long(argc, argv, ":hf:F:T:pqsU", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            o1.fmt = optarg;
            break;
        case 'F':
            fmt2 = optarg;
            break;
        case 'T':
            o1.cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            c.quiet = true;
            break;
        case 's':
            c.strict = true;
            break;
        case 'U':
            o1.force_share = true;
            break;
        case 'I':
            o1.image_opts = true;
            break;
        case 'h':
            return img_help();
        default:
            return img_bad_option(opt, argv);
        }
    }
    if (optind != argc - 2) {
        return img_usage_error("Expecting two image file names");
    }
    o2 = o1;
    o2.fmt = fmt2;
    o1.filename = c.a.filename = argv[optind];
    o2.filename = c.b.filename = argv[optind + 1];
    int flags;
    bool writethrough;
    if (bdrv_parse_cache_mode(o1.cache, &flags, &writethrough) < 0) {
        img_error("Invalid source cache option: %s", o1.cache);
        return 2;
    }
    img_progress_init(&c.progress, progress && !c.quiet);
    int ret = 2;
    c.a.blk = img_open(&o1);
    c.b.blk = c.a.blk ? img_open(&o2) : NULL;
    if (c.b.blk) {
        ret = run_compare(&c);
    }
    if (ret <= 1) {
        img_progress_end(&c.progress);
    }
    free(c.a.buf);
    free(c.b.buf);
    if (c.b.blk) {
        blk_unref(c.b.blk);
    }
    if (c.a.blk) {
        blk_unref(c.a.blk);
    }
    return ret;
}
