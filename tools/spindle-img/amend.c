/*
 * spindle-img amend: change creation options of an existing image through
 * its format's amend hook (qcow2: compat, refcount_bits, lazy_refcounts,
 * data_file, data_file_raw, size; backing_file/backing_fmt only to the
 * values they have, as qemu-img 7.2, which points to rebase).  Options the
 * format cannot amend are refused by name before the image is touched;
 * those only creation knows say so.
 */
#include "img.h"

#include "block/driver.h"
#include "qcow2/qcow2.h"
#include "util/opts.h"

struct amend_args {
    struct image_open o;
    char *options;
    bool quiet, progress, force;
};

/* qemu-img's "Amend options for '<fmt>':", sorted by name. */
static int print_amend_help(const char *fmt, const struct bdrv_create_opt *opts)
{
    printf("Amend options for '%s':\n", fmt);
    for (const struct bdrv_create_opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof(left), "%s=<%s>", o->name, img_opt_type_name(o->type));
        printf("  %-22s - %s\n", left, o->help);
    }
    return 0;
}

/* The amend options of a format, or NULL after qemu-img's message. */
static const struct bdrv_create_opt *amend_opts_of(const char *fmt)
{
    if (!bdrv_find_driver(fmt)) {
        img_error("Unknown file format '%s'", fmt);
        return NULL;
    }
    if (strcmp(fmt, "qcow2")) {
        img_error("Format driver '%s' does not support option amendment", fmt);
        return NULL;
    }
    return qcow2_amend_options();
}

static bool in_table(const struct bdrv_create_opt *t, const char *key)
{
    for (; t && t->name; t++) {
        if (!strcmp(t->name, key)) {
            return true;
        }
    }
    return false;
}

/* The -o list, every key one the format amends; NULL after the message. */
static json_t *parse_amend_options(const char *fmt, const struct bdrv_create_opt *opts,
                                   const char *str)
{
    struct err err = { 0 };
    json_t *o = opts_parse(str, NULL, &err);
    if (!o) {
        img_error("%s", err.msg);
        return NULL;
    }
    json_t *flat = opts_flatten(o), *val;
    const char *key;
    json_object_foreach(flat, key, val) {
        if (in_table(opts, key)) {
            continue;
        }
        img_error("Invalid parameter '%s'", key);
        const struct block_driver *drv = bdrv_find_driver(fmt);
        if (drv && in_table(drv->create_opts, key)) {
            fprintf(stderr, "This option is only supported for image creation\n");
        }
        json_decref(flat);
        json_decref(o);
        return NULL;
    }
    json_decref(flat);
    return o;
}

static int run_amend(struct amend_args *a)
{
    int flags;
    bool writethrough;
    if (bdrv_parse_cache_mode(a->o.cache, &flags, &writethrough) < 0) {
        img_error("Invalid cache option: %s", a->o.cache);
        return 1;
    }
    if (img_is_help_option(a->options) && !a->o.filename) {
        const struct bdrv_create_opt *opts = amend_opts_of(a->o.fmt);
        return opts ? print_amend_help(a->o.fmt, opts) : 1;
    }
    struct block_backend *blk = img_open(&a->o);
    if (!blk) {
        return 1;
    }
    struct block_node *bs = bnode_skip_filters(blk_node(blk));
    const char *fmt = bnode_format_name(bs);
    const struct bdrv_create_opt *opts = amend_opts_of(fmt);
    json_t *o = NULL;
    int ret = 1;
    if (opts && img_is_help_option(a->options)) {
        ret = print_amend_help(fmt, opts);
    } else if (opts && (o = parse_amend_options(fmt, opts, a->options))) {
        struct img_progress progress;
        struct err err = { 0 };
        img_progress_init(&progress, a->progress && !a->quiet);
        bnode_drained_begin(bs);
        ret = qcow2_get_ops(bs)->amend(bs, o, a->force, &err) < 0;
        bnode_drained_end(bs);
        img_progress_end(&progress);
        if (ret) {
            const char *why = err.msg;
            img_error("%s", why);
            if (!strcmp(why, "Cannot amend the backing file")) {
                fprintf(stderr, "You can use 'spindle-img rebase' instead.\n");
            }
        }
    }
    json_decref(o);
    blk_unref(blk);
    return ret;
}

int img_amend(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force", no_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 },
    };
    struct amend_args a = { .o = { .writable = true, .cache = "writeback" } };
    int c, ret;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (img_add_options(&a.options, optarg) < 0) {
                free(a.options);
                return 1;
            }
            break;
        case 'f':
            a.o.fmt = optarg;
            break;
        case 't':
            a.o.cache = optarg;
            break;
        case 'p':
            a.progress = true;
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'I':
            a.o.image_opts = true;
            break;
        case 'F':
            a.force = true;
            break;
        case 'h':
            free(a.options);
            return img_help();
        default:
            free(a.options);
            return img_bad_option(c, argv);
        }
    }
    if (!a.options) {
        return img_usage_error("Must specify options (-o)");
    }
    if (optind < argc - 1) {
        free(a.options);
        return img_usage_error("Expecting one image file name");
    }
    a.o.filename = optind < argc ? argv[optind] : NULL;
    if (!a.o.filename && !(img_is_help_option(a.options) && a.o.fmt)) {
        free(a.options);
        return img_usage_error("Expecting one image file name");
    }
    ret = run_amend(&a);
    free(a.options);
    return ret;
}
