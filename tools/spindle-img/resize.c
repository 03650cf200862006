/*
 * spindle-img resize: change the virtual size of an image, absolutely or
 * by +/- a size, with qemu-img's rules: shrinking needs --shrink, and
 * preallocation only applies to growing.  The size is the last argument
 * and is taken off before options are parsed, so "-1G" is not an option.
 */
#include "img.h"

#include "util/opts.h"

/* The size argument as qemu-img reads it: [+|-]size; 0 or -EINVAL after the message. */
static int parse_resize(const char *arg, int *relative, int64_t *n)
{
    uint64_t v;
    *relative = arg[0] == '+' ? 1 : arg[0] == '-' ? -1 : 0;
    if (*relative) {
        arg++;
    }
    int ret = arg[0] == '+' || arg[0] == '-' ? -EINVAL : parse_size(arg, &v);
    if (ret == -ERANGE || (ret == 0 && v > (uint64_t)INT64_MAX)) {
        img_error("Value '%s' is out of range for parameter 'size'", arg);
        return -ERANGE;
    }
    if (ret < 0) {
        img_error("Parameter 'size' expects a non-negative number below 2^64");
        fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                "tera-, peta-\nand exabytes, respectively.\n");
        return ret;
    }
    *n = (int64_t)v;
    return 0;
}

/* Whether the new size is one qemu-img would try; prints why not. */
static bool size_allowed(int64_t size, int64_t current, enum prealloc_mode prealloc, bool shrink)
{
    if (size <= 0) {
        img_error("New image size must be positive");
        return false;
    }
    if (size <= current && prealloc != PREALLOC_MODE_OFF) {
        img_error("Preallocation can only be used for growing images");
        return false;
    }
    if (size < current && !shrink) {
        img_error("Use the --shrink option to perform a shrink operation.");
        img_error("warning: Shrinking an image will delete all data beyond the shrunken "
                  "image's end. Before performing such an operation, make sure there is no "
                  "important data there.");
        return false;
    }
    return true;
}

static int do_resize(struct block_backend *blk, int relative, int64_t n,
                     enum prealloc_mode prealloc, bool shrink, bool quiet)
{
    int64_t current = blk_getlength(blk);
    if (current < 0) {
        img_error("Failed to inquire current image length: %s", strerror((int)-current));
        return 1;
    }
    int64_t size = relative ? current + relative * n : n;
    if (relative > 0 && size < current) {
        size = INT64_MAX;      /* wrapped: let the block layer refuse it */
    }
    if (!size_allowed(size, current, prealloc, shrink)) {
        return 1;
    }
    struct err err = { 0 };
    /* exact: a size that is not what was asked for is no success. */
    if (blk_truncate(blk, size, true, prealloc, 0, &err) < 0) {
        img_error("%s", err.msg);
        return 1;
    }
    if (!quiet) {
        printf("Image resized.\n");
    }
    return 0;
}

int img_resize(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "preallocation", required_argument, NULL, 'P' },
        { "shrink", no_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { .writable = true };
    enum prealloc_mode prealloc = PREALLOC_MODE_OFF;
    bool quiet = false, shrink = false;
    int c;

    if (argc < 3) {
        return img_usage_error("Not enough arguments");
    }
    const char *size_arg = argv[--argc];
    while ((c = getopt_long(argc, argv, ":f:hq", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'I':
            o.image_opts = true;
            break;
        case 'P':
            if (prealloc_mode_parse(optarg, &prealloc) < 0) {
                img_error("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        case 'S':
            shrink = true;
            break;
        case 'h':
            return img_help();
        default:
            return img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting image file name and size");
    }
    o.filename = argv[optind];
    int relative;
    int64_t n;
    if (parse_resize(size_arg, &relative, &n) < 0) {
        return 1;
    }
    struct block_backend *blk = img_open(&o);
    if (!blk) {
        return 1;
    }
    int ret = do_resize(blk, relative, n, prealloc, shrink, quiet);
    blk_unref(blk);
    return ret;
}
