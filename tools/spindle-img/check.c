/*
 * spindle-img check: qemu-img check's options, messages, JSON and exit
 * codes (0 clean, 1 check failed, 2 corruptions, 3 leaks, 63 the format
 * cannot be checked).  The format driver does the work (co_check) and
 * prints the details of what it finds on stderr.
 */
#include "img.h"

#include "block/driver.h"

struct check_co {
    struct block_node *bs;
    struct bdrv_check_result *res;
    int fix;
    int ret;
};

static void check_entry(void *opaque)
{
    struct check_co *c = opaque;
    c->ret = c->bs->drv->co_check(c->bs, c->res, c->fix);
}

static int run_check(struct block_node *bs, struct bdrv_check_result *res, int fix)
{
    struct check_co c = { bs, res, fix, 0 };
    memset(res, 0, sizeof(*res));
    co_run_sync(check_entry, &c);
    return c.ret;
}

static void print_human(const struct bdrv_check_result *r, bool quiet)
{
    if (quiet) {
        return;
    }
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions) {
            printf("\n%d errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        }
        if (r->leaks) {
            printf("\n%d leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        }
        if (r->check_errors) {
            printf("\n%d internal errors have occurred during the check.\n", r->check_errors);
        }
    }
    if (r->total_clusters && r->allocated_clusters) {
        printf("%" PRId64 "/%" PRId64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    }
    if (r->image_end_offset) {
        printf("Image end offset: %" PRId64 "\n", r->image_end_offset);
    }
}

static void put_nonzero(json_t *o, const char *key, int64_t v)
{
    if (v) {
        json_object_set_new(o, key, json_integer(v));
    }
}

static void print_json(const struct bdrv_check_result *r, const char *filename,
                       const char *format)
{
    json_t *o = json_object();
    put_nonzero(o, "image-end-offset", r->image_end_offset);
    put_nonzero(o, "total-clusters", r->total_clusters);
    json_object_set_new(o, "check-errors", json_integer(r->check_errors));
    put_nonzero(o, "corruptions", r->corruptions);
    put_nonzero(o, "leaks", r->leaks);
    put_nonzero(o, "corruptions-fixed", r->corruptions_fixed);
    put_nonzero(o, "leaks-fixed", r->leaks_fixed);
    put_nonzero(o, "allocated-clusters", r->allocated_clusters);
    put_nonzero(o, "fragmented-clusters", r->fragmented_clusters);
    put_nonzero(o, "compressed-clusters", r->compressed_clusters);
    json_object_set_new(o, "filename", json_string(filename));
    json_object_set_new(o, "format", json_string(format));
    img_print_json(o);
    json_decref(o);
}

int img_check(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, 'o' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { .check = true, .no_backing = true };
    bool json = false, quiet = false;
    int fix = 0, c;

    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.fmt = optarg;
            break;
        case 'r':
            if (!strcmp(optarg, "leaks")) {
                fix = BDRV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS;
            } else {
                img_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                          optarg);
                return 1;
            }
            break;
        case 'o':
            if (!strcmp(optarg, "json")) {
                json = true;
            } else if (strcmp(optarg, "human")) {
                img_error("--output must be used with human or json as argument.");
                return 1;
            }
            break;
        case 'T':
            o.cache = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            o.force_share = true;
            break;
        case 'I':
            o.image_opts = true;
            break;
        case 'h':
            printf("usage: spindle-img check [--image-opts] [-q] [-f fmt] [--output=ofmt] "
                   "[-r [leaks | all]] [-T src_cache] [-U] filename\n");
            return 0;
        default:
            img_error("invalid option");
            return 1;
        }
    }
    if (optind != argc - 1) {
        img_error("Expecting one image file name");
        return 1;
    }
    if (fix && o.force_share) {
        img_error("--force-share/-U is not allowed when checking with -r");
        return 1;
    }
    const char *filename = argv[optind];
    o.filename = filename;
    o.writable = fix != 0;
    struct block_backend *blk = img_open(&o);
    if (!blk) {
        return 1;
    }
    struct block_node *bs = blk_node(blk);
    if (!bs->drv->co_check) {
        img_error("This image format does not support checks");
        blk_unref(blk);
        return 63;
    }
    struct bdrv_check_result r;
    int ret = run_check(bs, &r, fix);
    if (ret == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        int leaks_fixed = r.leaks_fixed, corruptions_fixed = r.corruptions_fixed;
        if (!json && !quiet) {
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %d leaked clusters\n    %d corruptions\n\n"
                   "Double checking the fixed image now...\n", leaks_fixed, corruptions_fixed);
        }
        ret = run_check(bs, &r, 0);
        r.leaks_fixed = leaks_fixed;
        r.corruptions_fixed = corruptions_fixed;
    }
    if (ret == 0) {
        if (json) {
            print_json(&r, filename, bnode_format_name(bs));
        } else {
            print_human(&r, quiet);
        }
    }
    blk_unref(blk);
    if (ret < 0 || r.check_errors) {
        if (ret < 0) {
            img_error("Check failed: %s", strerror(-ret));
        } else {
            img_error("Check failed");
        }
        return 1;
    }
    return r.corruptions ? 2 : r.leaks ? 3 : 0;
}
