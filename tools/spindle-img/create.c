/* spindle-img create */
#include "img.h"

#include "block/driver.h"
#include "util/opts.h"

static int cmp_opt(const void *a, const void *b)
{
    return strcmp((*(const struct bdrv_create_opt *const *)a)->name,
                  (*(const struct bdrv_create_opt *const *)b)->name);
}

static void print_create_help(const char *fmt)
{
    const struct block_driver *drv = bdrv_find_driver(fmt);
    if (!drv) {
        img_error("Unknown file format '%s'", fmt);
        return;
    }
    if (drv->create_opts) {
        /* qemu-img's form: sorted by name, with the type. */
        size_t n = 0, total = 0;
        while (drv->create_opts[total].name) {
            total++;
        }
        const struct bdrv_create_opt **sorted = xcalloc(total, sizeof(*sorted));
        for (size_t i = 0; i < total; i++) {
            if (!drv->create_opts[i].protocol) {
                sorted[n++] = &drv->create_opts[i];
            }
        }
        qsort(sorted, n, sizeof(*sorted), cmp_opt);
        printf("Supported %s options:\n", fmt);
        for (size_t i = 0; i < n; i++) {
            char left[64];
            snprintf(left, sizeof(left), "%s=<%s>", sorted[i]->name,
                     img_opt_type_name(sorted[i]->type));
            printf("  %-22s - %s\n", left, sorted[i]->help);
        }
        free(sorted);
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
        return;
    }
    printf("Supported %s options:\n", fmt);
    for (int i = 0; drv->create_option_help && drv->create_option_help[i]; i += 2) {
        printf("  %-22s - %s\n", drv->create_option_help[i], drv->create_option_help[i + 1]);
    }
    printf("\nThe protocol level may support further options.\n"
           "Specify the target filename to include those options.\n");
}

/* A string value as qemu-img prints it: commas doubled. */
static void print_escaped(const char *str)
{
    for (const char *p = str; *p; p++) {
        if (*p == ',') {
            putchar(',');
        }
        putchar(*p);
    }
}

/* One option of a driver's table: given values first, then the default. */
static void print_table_opt(const struct bdrv_create_opt *o, json_t *val)
{
    uint64_t n;
    if (!val) {
        if (o->def) {
            printf(" %s=%s", o->name, o->def);
        }
        return;
    }
    json_t *tmp = json_object();
    json_object_set(tmp, "v", val);
    printf(" %s=", o->name);
    if ((o->type == BDRV_OPT_SIZE && opts_get_size(tmp, "v", &n, NULL) == 0) ||
        (o->type == BDRV_OPT_NUMBER && opts_get_uint(tmp, "v", &n, NULL) == 0)) {
        printf("%" PRIu64, n);
    } else if (json_is_string(val)) {
        if (o->type == BDRV_OPT_STRING) {
            print_escaped(json_string_value(val));
        } else {
            printf("%s", json_string_value(val));
        }
    } else if (json_is_boolean(val)) {
        printf("%s", json_is_true(val) ? "on" : "off");
    } else {
        char *str = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%s", str);
        free(str);
    }
    json_decref(tmp);
}

/* Refuse keys the driver's table does not know, as qemu-img does before formatting. */
static int check_table_keys(const struct block_driver *drv, json_t *opts, struct err *err)
{
    json_t *flat = opts_flatten(opts);
    const char *key;
    json_t *val;
    int ret = 0;
    json_object_foreach(flat, key, val) {
        bool known = !strcmp(key, "filename") || !strcmp(key, "x-unsafe-backing");
        for (const struct bdrv_create_opt *o = drv->create_opts; !known && o->name; o++) {
            known = !strcmp(key, o->name);
        }
        if (!known) {
            err_set(err, "Invalid parameter '%s'", key);
            ret = -EINVAL;
            break;
        }
    }
    json_decref(flat);
    return ret;
}

/* "fmt=raw size=N key=val ..." as qemu-img prints it. */
static void print_formatting(const char *filename, const char *fmt, json_t *opts)
{
    const char *key;
    json_t *val;
    const struct block_driver *drv = bdrv_find_driver(fmt);
    printf("Formatting '%s', fmt=%s", filename, fmt);
    if (drv && drv->create_opts) {
        for (const struct bdrv_create_opt *o = drv->create_opts; o->name; o++) {
            print_table_opt(o, opts_get(opts, o->name));
        }
        printf("\n");
        fflush(stdout);
        return;
    }
    json_t *size = json_object_get(opts, "size");
    if (size) {
        printf(" size=%" JSON_INTEGER_FORMAT, json_integer_value(size));
    }
    json_object_foreach(opts, key, val) {
        if (!strcmp(key, "size") || !strcmp(key, "filename")) {
            continue;
        }
        if (json_is_string(val)) {
            printf(" %s=%s", key, json_string_value(val));
        } else {
            char *s = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
            printf(" %s=%s", key, s);
            free(s);
        }
    }
    printf("\n");
    fflush(stdout);
}

/* Open the backing file (relative to the new image) for its size. */
static int64_t backing_file_size(const char *filename, const char *backing, json_t *opts,
                                 struct err *err)
{
    const char *bfmt = NULL;
    opts_get_str(opts, "backing_fmt", &bfmt, NULL);
    char *path = bdrv_resolve_relative(filename, backing);
    json_t *bopts = json_object();
    if (bfmt) {
        json_object_set_new(bopts, "driver", json_string(bfmt));
    }
    struct err e = { 0 };
    struct block_node *bs = bnode_open(path, bopts, BDRV_O_NO_BACKING | BDRV_O_NO_IO, &e);
    json_decref(bopts);
    free(path);
    if (!bs) {
        err_set(err, "%s; Could not open backing image.", e.msg);
        return -ENOENT;
    }
    int64_t size = bnode_getlength(bs);
    bnode_unref(bs);
    return size;
}

int img_create(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 'X' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw", *backing = NULL, *backing_fmt = NULL;
    char *options = NULL;
    bool quiet = false, unsafe = false;
    int c;

    while ((c = getopt_long(argc, argv, ":b:F:f:ho:qu", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'b':
            backing = optarg;
            break;
        case 'F':
            backing_fmt = optarg;
            break;
        case 'o': {
            /* Several -o accumulate, as in qemu-img. */
            char *joined = options ? xasprintf("%s,%s", options, optarg) : xstrdup(optarg);
            free(options);
            options = joined;
            break;
        }
        case 'q':
            quiet = true;
            break;
        case 'u':
            unsafe = true;
            break;
        case 'X':
            img_error("--object is not supported by spindle-img create");
            free(options);
            return 1;
        case 'h':
            printf("usage: spindle-img create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] "
                   "[-u] [-o options] filename [size]\n");
            free(options);
            return 0;
        case ':':
            img_error("option requires an argument -- '%c'", optopt);
            free(options);
            return 1;
        default:
            img_error("invalid option -- '%c'", optopt);
            free(options);
            return 1;
        }
    }
    if (options && !strcmp(options, "help")) {
        print_create_help(fmt);
        free(options);
        return 0;
    }
    if (optind >= argc) {
        img_error("Expecting image file name");
        free(options);
        return 1;
    }
    const char *filename = argv[optind++];
    struct err err = { 0 };
    json_t *opts = options ? opts_parse(options, NULL, &err) : json_object();
    free(options);
    if (!opts) {
        img_error("%s", err.msg);
        return 1;
    }
    int ret = 1;
    if (optind < argc) {
        int64_t size;
        if (img_parse_size(argv[optind++], &size) < 0) {
            img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes "
                      "for");
            img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            goto out;
        }
        json_object_set_new(opts, "size", json_integer(size));
    } else if (json_object_get(opts, "size")) {
        uint64_t size;
        if (opts_get_size(opts, "size", &size, &err) < 0) {
            img_error("%s", err.msg);
            goto out;
        }
        json_object_set_new(opts, "size", json_integer((json_int_t)size));
    }
    if (optind < argc) {
        img_error("Unexpected argument: %s", argv[optind]);
        goto out;
    }
    const struct block_driver *drv = bdrv_find_driver(fmt);
    if (!drv) {
        img_error("%s: Unknown file format '%s'", filename, fmt);
        goto out;
    }
    if (drv->create_opts && check_table_keys(drv, opts, &err) < 0) {
        img_error("%s: %s", filename, err.msg);
        goto out;
    }
    if (backing) {
        json_object_set_new(opts, "backing_file", json_string(backing));
    }
    if (backing_fmt) {
        json_object_set_new(opts, "backing_fmt", json_string(backing_fmt));
    }
    if (unsafe) {
        json_object_set_new(opts, "x-unsafe-backing", json_true());
    }
    const char *bfile = NULL;
    opts_get_str(opts, "backing_file", &bfile, NULL);
    if (!json_object_get(opts, "size") && !bfile) {
        img_error("Image creation needs a size parameter");
        goto out;
    }
    if (!json_object_get(opts, "size")) {
        /* The size of the backing file, as qemu-img prints it in the Formatting line. */
        int64_t size = backing_file_size(filename, bfile, opts, &err);
        if (size < 0) {
            img_error("%s: %s", filename, err.msg);
            goto out;
        }
        json_object_set_new(opts, "size", json_integer(size));
    }
    if (!quiet) {
        print_formatting(filename, fmt, opts);
    }
    json_object_set_new(opts, "filename", json_string(filename));
    if (bdrv_create(fmt, opts, &err) < 0) {
        img_error("%s: %s", filename, err.msg);
        goto out;
    }
    ret = 0;
out:
    json_decref(opts);
    return ret;
}
