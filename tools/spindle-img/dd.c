/*
 * spindle-img dd: copy part of an image into a new one, with qemu-img dd's
 * operands (if= of= bs= count= skip=) and arithmetic: count limits the
 * input from its start (skip is taken off that), the output is created
 * with the size that is left, and every block is read and written whole
 * (no zero detection), so a qcow2 output ends up fully allocated as
 * qemu-img dd's does.  A skip past the end is reported and leaves an
 * empty output, like dd(1).
 *
 * osize=N (not in qemu-img 7.2) creates the output with that virtual size
 * instead; the copy is then cut at it.
 */
#include "img.h"

#include "util/opts.h"

struct dd_args {
    const char *in, *out, *fmt, *out_fmt;
    int64_t bs, count, skip, osize;
    bool has_count, has_skip, has_osize, image_opts, force_share;
};

/* One "key=value" operand; 0, or 1 after qemu-img's message. */
static int parse_operand(struct dd_args *a, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        img_error("unrecognized operand %s", arg);
        return 1;
    }
    size_t klen = (size_t)(eq - arg);
    const char *val = eq + 1;
#define KEY(k) (klen == strlen(k) && !strncmp(arg, k, klen))
    if (KEY("bs")) {
        return img_cvtnum("bs", val, 1, INT32_MAX, &a->bs) < 0;
    } else if (KEY("count")) {
        a->has_count = true;
        return img_cvtnum("count", val, 0, INT64_MAX, &a->count) < 0;
    } else if (KEY("skip")) {
        a->has_skip = true;
        return img_cvtnum("skip", val, 0, INT64_MAX, &a->skip) < 0;
    } else if (KEY("osize")) {
        a->has_osize = true;
        return img_cvtnum("osize", val, 0, INT64_MAX, &a->osize) < 0;
    } else if (KEY("if")) {
        a->in = val;
    } else if (KEY("of")) {
        a->out = val;
    } else {
        img_error("unrecognized operand %.*s", (int)klen, arg);
        return 1;
    }
#undef KEY
    return 0;
}

static int parse_args(int argc, char **argv, struct dd_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    *a = (struct dd_args){ .bs = 512, .out_fmt = "raw" };
    while ((c = getopt_long(argc, argv, ":hf:O:U", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            a->fmt = optarg;
            break;
        case 'O':
            a->out_fmt = optarg;
            break;
        case 'U':
            a->force_share = true;
            break;
        case 'I':
            a->image_opts = true;
            break;
        case 'h':
            img_help();
            return 0;
        default:
            return img_bad_option(c, argv);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (parse_operand(a, argv[i])) {
            return 1;
        }
    }
    if (!a->in || !a->out) {
        img_error("Must specify both input and output files");
        return 1;
    }
    return -1;
}

static int create_output(const struct dd_args *a, int64_t size)
{
    struct err err = { 0 };
    const struct block_driver *drv = bdrv_find_driver(a->out_fmt);
    if (!drv) {
        img_error("Unknown file format");
        return -EINVAL;
    }
    if (!drv->co_create) {
        img_error("Format driver '%s' does not support image creation", a->out_fmt);
        return -ENOTSUP;
    }
    json_t *opts = json_object();
    json_object_set_new(opts, "filename", json_string(a->out));
    json_object_set_new(opts, "size", json_integer(size));
    int ret = bdrv_create(a->out_fmt, opts, &err);
    json_decref(opts);
    if (ret < 0) {
        img_error("%s: error while creating output image: %s", a->out, err.msg);
    }
    return ret;
}

static int copy(struct block_backend *in, struct block_backend *out, int64_t in_pos,
                int64_t end, int64_t bs)
{
    uint8_t *buf = blk_blockalign(in, (size_t)bs);
    int ret = 0;
    for (int64_t out_pos = 0; in_pos < end && ret == 0;) {
        int64_t n = MIN(bs, end - in_pos);
        ret = blk_pread(in, in_pos, n, buf, 0);
        if (ret < 0) {
            img_error("error while reading from input image file: %s", strerror(-ret));
            break;
        }
        ret = blk_pwrite(out, out_pos, n, buf, 0);
        if (ret < 0) {
            img_error("error while writing to output image file: %s", strerror(-ret));
        }
        in_pos += n;
        out_pos += n;
    }
    free(buf);
    return ret;
}

static int run_dd(const struct dd_args *a)
{
    struct image_open io = { .filename = a->in, .fmt = a->fmt, .image_opts = a->image_opts,
                             .force_share = a->force_share };
    struct block_backend *in = img_open(&io), *out = NULL;
    if (!in) {
        return 1;
    }
    int64_t size = blk_getlength(in);
    int ret = -EIO;
    if (size < 0) {
        img_error("Failed to get size for '%s'", a->in);
        goto out;
    }
    if (a->has_count && a->count <= INT64_MAX / a->bs && a->count * a->bs < size) {
        size = a->count * a->bs;
    }
    bool past_end = a->has_skip && (a->skip > INT64_MAX / a->bs || size < a->skip * a->bs);
    int64_t in_pos = past_end ? size : a->skip * a->bs;
    int64_t out_size = a->has_osize ? a->osize : size - in_pos;
    if ((ret = create_output(a, out_size)) < 0) {
        goto out;
    }
    struct image_open oo = { .filename = a->out, .fmt = a->out_fmt, .writable = true };
    if (!(out = img_open(&oo))) {
        ret = -EIO;
        goto out;
    }
    if (past_end) {
        img_error("%s: cannot skip to specified offset", a->in);
    }
    ret = copy(in, out, in_pos, MIN(size, in_pos + out_size), a->bs);
out:
    if (out) {
        blk_unref(out);
    }
    blk_unref(in);
    return ret < 0;
}

int img_dd(int argc, char **argv)
{
    struct dd_args a;
    int ret = parse_args(argc, argv, &a);
    return ret >= 0 ? ret : run_dd(&a);
}
