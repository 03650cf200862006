/*
 * spindle-img measure: the file size a new image of the output format
 * needs, for --size N or for the data of an existing image, as qemu-img
 * measure prints it ("required size", "fully allocated size" and, when
 * both sides can hold persistent bitmaps, "bitmaps size"; or JSON).
 *
 * qcow2 measures through its driver's hook.  raw needs its virtual size,
 * rounded to sectors, whatever is allocated: a raw file is its data.
 */
#include "img.h"

#include "qcow2/qcow2.h"
#include "util/opts.h"

struct measure_args {
    struct image_open o;
    const char *out_fmt;
    char *options;
    int64_t size;           /* -1: from the image */
    bool json;
};

static bool known_key(const struct block_driver *drv, const char *key)
{
    /* The file protocol's, which qemu-img adds to every format's. */
    if (!strcmp(key, "nocow") || !strcmp(key, "extent_size_hint")) {
        return true;
    }
    for (const struct bdrv_create_opt *o = drv->create_opts; o && o->name; o++) {
        if (!strcmp(o->name, key)) {
            return true;
        }
    }
    for (int i = 0; drv->create_option_help && drv->create_option_help[i]; i += 2) {
        if (!strcmp(drv->create_option_help[i], key)) {
            return true;
        }
    }
    return false;
}

/* A value of the type the option table gives it; qemu's sentence otherwise. */
static bool typed_ok(const struct block_driver *drv, json_t *opts, const char *key)
{
    uint64_t n;
    bool b;
    for (const struct bdrv_create_opt *o = drv->create_opts; o && o->name; o++) {
        if (strcmp(o->name, key)) {
            continue;
        }
        if (o->type == BDRV_OPT_BOOL && opts_get_bool(opts, key, &b, NULL) == -EINVAL) {
            img_error("Parameter '%s' expects 'on' or 'off'", key);
            return false;
        }
        if (o->type == BDRV_OPT_SIZE && opts_get_size(opts, key, &n, NULL) == -EINVAL) {
            img_error("Parameter '%s' expects a non-negative number below 2^64", key);
            fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                    "tera-, peta-\nand exabytes, respectively.\n");
            return false;
        }
        if (o->type == BDRV_OPT_NUMBER && opts_get_uint(opts, key, &n, NULL) == -EINVAL) {
            img_error("Parameter '%s' expects a number", key);
            return false;
        }
    }
    return true;
}

/* The -o list as the format's creation options; NULL after qemu-img's messages. */
static json_t *parse_options(const struct block_driver *drv, const char *str)
{
    struct err err = { 0 };
    if (img_is_help_option(str)) {
        /* measure has no option help: qemu-img takes the word for a parameter. */
        img_error("Invalid parameter '%s'", strstr(str, "help") ? "help" : "?");
        img_error("Invalid options for file format '%s'", drv->format_name);
        return NULL;
    }
    json_t *opts = str ? opts_parse(str, NULL, &err) : json_object();
    json_t *flat = opts ? opts_flatten(opts) : NULL, *val;
    const char *key;
    bool ok = opts != NULL;
    if (!opts) {
        img_error("%s", err.msg);
    }
    json_object_foreach(flat, key, val) {
        if (!ok) {
            break;
        }
        if (!known_key(drv, key)) {
            img_error("Invalid parameter '%s'", key);
            ok = false;
        } else {
            ok = typed_ok(drv, opts, key);
        }
    }
    json_decref(flat);
    if (!ok) {
        img_error("Invalid options for file format '%s'", drv->format_name);
        json_decref(opts);
        return NULL;
    }
    return opts;
}

static int measure_raw(json_t *opts, struct block_node *in_bs, struct qcow2_measure *m,
                       struct err *err)
{
    uint64_t size = 0;
    if (in_bs) {
        int64_t len = bnode_getlength(in_bs);
        if (len < 0) {
            return err_set_errno(err, (int)len, "Unable to get image size");
        }
        size = (uint64_t)len;
    } else {
        opts_get_size(opts, "size", &size, NULL);
        size = ALIGN_UP(size, BDRV_SECTOR_SIZE);
    }
    *m = (struct qcow2_measure){ .required = size, .fully_allocated = size };
    return 0;
}

static void print_measure(const struct qcow2_measure *m, bool json)
{
    if (!json) {
        printf("required size: %" PRIu64 "\n", m->required);
        printf("fully allocated size: %" PRIu64 "\n", m->fully_allocated);
        if (m->has_bitmaps) {
            printf("bitmaps size: %" PRIu64 "\n", m->bitmaps);
        }
        return;
    }
    /* qemu-img's key order. */
    json_t *o = json_object();
    if (m->has_bitmaps) {
        json_object_set_new(o, "bitmaps", json_integer((json_int_t)m->bitmaps));
    }
    json_object_set_new(o, "required", json_integer((json_int_t)m->required));
    json_object_set_new(o, "fully-allocated", json_integer((json_int_t)m->fully_allocated));
    img_print_json(o);
    json_decref(o);
}

static int run_measure(struct measure_args *a)
{
    struct block_backend *in = NULL;
    json_t *opts = NULL;
    int ret = 1;
    if (a->o.filename && !(in = img_open(&a->o))) {
        return 1;
    }
    const struct block_driver *drv = bdrv_find_driver(a->out_fmt);
    if (!drv) {
        img_error("Unknown file format '%s'", a->out_fmt);
    } else if (!drv->co_create) {
        img_error("Format driver '%s' does not support image creation", a->out_fmt);
    } else if ((opts = parse_options(drv, a->options))) {
        struct qcow2_measure m;
        struct err err = { 0 };
        struct block_node *in_bs = in ? blk_node(in) : NULL;
        if (a->size >= 0) {
            json_object_set_new(opts, "size", json_integer(a->size));
        }
        int r;
        if (!strcmp(drv->format_name, "qcow2")) {
            r = qcow2_measure(opts, in_bs, &m, &err);
        } else if (!strcmp(drv->format_name, "raw")) {
            r = measure_raw(opts, in_bs, &m, &err);
        } else {
            r = -ENOTSUP;
            err_set(&err, "Block driver '%s' does not support size measurement",
                    drv->format_name);
        }
        if (r < 0) {
            img_error("%s", err.msg);
        } else {
            print_measure(&m, a->json);
            ret = 0;
        }
    }
    json_decref(opts);
    if (in) {
        blk_unref(in);
    }
    return ret;
}

enum { OPT_SIZE = 256, OPT_OUTPUT, OPT_OBJECT };

static int parse_args(int argc, char **argv, struct measure_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            a->o.fmt = optarg;
            break;
        case 'O':
            a->out_fmt = optarg;
            break;
        case 'o':
            if (img_add_options(&a->options, optarg) < 0) {
                return 1;
            }
            break;
        case 'l':
            img_error("Measuring an internal snapshot (-l) is not supported by spindle-img");
            return 1;
        case 'U':
            a->o.force_share = true;
            break;
        case 'I':
            a->o.image_opts = true;
            break;
        case OPT_OUTPUT:
            if (img_parse_output(optarg, &a->json) < 0) {
                return 1;
            }
            break;
        case OPT_SIZE:
            if (img_cvtnum("image size", optarg, 0, INT64_MAX, &a->size) < 0) {
                return 1;
            }
            break;
        case 'h':
            img_help();
            return 0;
        default:
            return img_bad_option(c, argv);
        }
    }
    if (argc - optind > 1) {
        img_error("At most one filename argument is allowed.");
        return 1;
    }
    a->o.filename = optind < argc ? argv[optind] : NULL;
    if (a->o.filename && a->size >= 0) {
        img_error("--size N cannot be used together with a filename.");
        return 1;
    }
    if (!a->o.filename && a->size < 0) {
        img_error("Either --size N or one filename must be specified.");
        return 1;
    }
    return -1;
}

int img_measure(int argc, char **argv)
{
    struct measure_args a = { .out_fmt = "raw", .size = -1 };
    int ret = parse_args(argc, argv, &a);
    if (ret < 0) {
        ret = run_measure(&a);
    }
    free(a.options);
    return ret;
}
