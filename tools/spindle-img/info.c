/* spindle-img info */
#include "img.h"

#include <time.h>

#include "block/driver.h"
#include "qcow2/qcow2.h"
#include "util/opts.h"

/* The info object of one image, in qemu-img's key order. */
static json_t *image_info(struct block_node *bs, const char *filename, struct err *err)
{
    json_t *o = json_object();
    if (bs->backing_file[0] && bs->backing_format[0]) {
        json_object_set_new(o, "backing-filename-format", json_string(bs->backing_format));
    }
    json_t *snapshots = img_snapshots_json(bs);
    if (snapshots) {
        json_object_set_new(o, "snapshots", snapshots);
    }
    json_object_set_new(o, "virtual-size", json_integer(bnode_getlength(bs)));
    json_object_set_new(o, "filename", json_string(filename));
    int64_t cluster = bs->drv->get_cluster_size ? bs->drv->get_cluster_size(bs) : 0;
    if (cluster > 0) {
        json_object_set_new(o, "cluster-size", json_integer(cluster));
    }
    json_object_set_new(o, "format", json_string(bnode_format_name(bs)));
    int64_t actual = bnode_get_allocated_file_size(bs);
    if (actual >= 0) {
        json_object_set_new(o, "actual-size", json_integer(actual));
    }
    json_t *specific = bnode_get_specific_info(bs, err);
    if (err_isset(err)) {
        json_decref(o);
        return NULL;
    }
    if (specific) {
        json_object_set_new(o, "format-specific", specific);
    }
    if (bs->backing_file[0]) {
        char *full = bdrv_resolve_relative(filename, bs->backing_file);
        json_object_set_new(o, "full-backing-filename", json_string(full));
        json_object_set_new(o, "backing-filename", json_string(bs->backing_file));
        free(full);
    }
    json_object_set_new(o, "dirty-flag",
                        json_boolean(bs->drv->is_dirty && bs->drv->is_dirty(bs)));
    return o;
}

/* qemu-img prints format-specific data as "key: value" lines, nested by 4. */
static void print_human_value(const char *key, json_t *val, int indent);

static void print_human_object(json_t *obj, int indent)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        print_human_value(key, val, indent);
    }
}

static void print_human_value(const char *key, json_t *val, int indent)
{
    if (key) {
        /* qemu-img shows "compression-type" as "compression type". */
        printf("%*s", indent, "");
        for (const char *p = key; *p; p++) {
            putchar(*p == '-' ? ' ' : *p);
        }
        printf(":");
    }
    if (json_is_object(val)) {
        printf("\n");
        print_human_object(val, indent + 4);
    } else if (json_is_array(val)) {
        size_t i;
        json_t *item;
        printf("\n");
        json_array_foreach(val, i, item) {
            printf("%*s[%zu]:", indent + 4, "", i);
            if (json_is_object(item)) {
                printf("\n");
                print_human_object(item, indent + 8);
            } else {
                print_human_value(NULL, item, 0);
            }
        }
    } else if (json_is_string(val)) {
        printf(" %s\n", json_string_value(val));
    } else if (json_is_boolean(val)) {
        printf(" %s\n", json_is_true(val) ? "true" : "false");
    } else if (json_is_integer(val)) {
        printf(" %" JSON_INTEGER_FORMAT "\n", json_integer_value(val));
    } else {
        printf("\n");
    }
}

static void print_human(json_t *o)
{
    char vsize[32], dsize[32];
    int64_t virt = json_integer_value(json_object_get(o, "virtual-size"));
    format_size((uint64_t)virt, vsize, sizeof(vsize));
    json_t *actual = json_object_get(o, "actual-size");
    if (actual) {
        format_size((uint64_t)json_integer_value(actual), dsize, sizeof(dsize));
    } else {
        pstrcpy(dsize, sizeof(dsize), "unavailable");
    }
    printf("image: %s\n", json_string_value(json_object_get(o, "filename")));
    printf("file format: %s\n", json_string_value(json_object_get(o, "format")));
    printf("virtual size: %s (%" PRId64 " bytes)\n", vsize, virt);
    printf("disk size: %s\n", dsize);
    json_t *cluster = json_object_get(o, "cluster-size");
    if (cluster) {
        printf("cluster_size: %" JSON_INTEGER_FORMAT "\n", json_integer_value(cluster));
    }
    if (json_is_true(json_object_get(o, "dirty-flag"))) {
        printf("cleanly shut down: no\n");
    }
    json_t *backing = json_object_get(o, "backing-filename");
    if (backing) {
        const char *full = json_string_value(json_object_get(o, "full-backing-filename"));
        printf("backing file: %s", json_string_value(backing));
        if (full && strcmp(full, json_string_value(backing))) {
            printf(" (actual path: %s)", full);
        }
        printf("\n");
        json_t *bfmt = json_object_get(o, "backing-filename-format");
        if (bfmt) {
            printf("backing file format: %s\n", json_string_value(bfmt));
        }
    }
    img_print_snapshot_table(json_object_get(o, "snapshots"));
    json_t *specific = json_object_get(o, "format-specific");
    if (specific) {
        printf("Format specific information:\n");
        print_human_object(json_object_get(specific, "data"), 4);
    }
}

int img_info(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, 'o' },
        { "backing-chain", no_argument, NULL, 'B' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { .no_backing = true, .metadata_only = true };
    const char *output = NULL;
    bool json = false, chain = false;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.fmt = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'B':
            chain = true;
            break;
        case 'I':
            o.image_opts = true;
            break;
        case 'U':
            o.force_share = true;
            break;
        case 'h':
            return img_help();
        default:
            return img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    if (output && img_parse_output(output, &json) < 0) {
        return 1;
    }

    json_t *list = json_array();
    char *filename = xstrdup(argv[optind]);
    char *fmt = o.fmt ? xstrdup(o.fmt) : NULL;
    int ret = 0;
    while (filename) {
        o.filename = filename;
        o.fmt = fmt;
        struct block_backend *blk = img_open(&o);
        if (!blk) {
            ret = 1;
            break;
        }
        struct block_node *bs = blk_node(blk);
        struct err err = { 0 };
        json_t *info = image_info(bs, filename, &err);
        if (!info) {
            img_error("%s", err.msg);
            blk_unref(blk);
            ret = 1;
            break;
        }
        json_array_append_new(list, info);
        char *next = NULL, *next_fmt = NULL;
        if (chain && bs->backing_file[0]) {
            next = bdrv_resolve_relative(filename, bs->backing_file);
            next_fmt = bs->backing_format[0] ? xstrdup(bs->backing_format) : NULL;
        }
        blk_unref(blk);
        free(filename);
        free(fmt);
        filename = next;
        fmt = next_fmt;
        o.image_opts = false;
    }
    free(filename);
    free(fmt);
    if (ret == 0) {
        if (json) {
            json_t *out = chain ? list : json_array_get(list, 0);
            img_print_json(out);
        } else {
            size_t i;
            json_t *item;
            json_array_foreach(list, i, item) {
                if (i) {
                    printf("\n");
                }
                print_human(item);
            }
        }
    }
    json_decref(list);
    return ret;
}
