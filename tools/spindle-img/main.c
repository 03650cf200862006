/* spindle-img: the subcommand table and what subcommands share. */
#include "img.h"

#include <stdarg.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/iothread.h"
#include "block/driver.h"
#include "util/opts.h"

struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
};

static const struct subcommand subcommands[] = {
    { "amend", img_amend,
      "amend [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename" },
    { "bench", img_bench,
      "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
      "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
      "[-t cache] [-w] [-U] filename" },
    { "bitmap", img_bitmap,
      "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
      "[-b source_file [-F source_fmt]] [-g granularity] [--image-opts | -f fmt] "
      "filename bitmap" },
    { "check", img_check,
      "check [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] "
      "[-U] filename" },
    { "commit", img_commit,
      "commit [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] "
      "filename" },
    { "compare", img_compare,
      "compare [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] "
      "filename1 filename2" },
    { "convert", img_convert,
      "convert [--image-opts] [--target-image-opts] [--target-is-zero] [--bitmaps] [-U] [-c] [-p] "
      "[-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] "
      "[-o options] [-S sparse_size] [-m num_coroutines] [-W] [--salvage] "
      "filename [filename2 [...]] output_filename" },
    { "create", img_create,
      "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename "
      "[size]" },
    { "dd", img_dd,
      "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
      "[skip=blocks] [osize=bytes] if=input of=output" },
    { "info", img_info,
      "info [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename" },
    { "map", img_map,
      "map [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] "
      "[--output=ofmt] [-U] filename" },
    { "measure", img_measure,
      "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--image-opts] "
      "[-f fmt] [-l snapshot_param] filename]" },
    { "snapshot", img_snapshot,
      "snapshot [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] "
      "filename" },
    { "rebase", img_rebase,
      "rebase [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] "
      "-b backing_file [-F backing_fmt] filename" },
    { "resize", img_resize,
      "resize [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
      "filename [+ | -]size" },
};

void img_error(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "spindle-img: %s\n", msg);
}

int img_usage_error(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    img_error("%s", msg);
    fprintf(stderr, "Try 'spindle-img --help' for more information\n");
    return 1;
}

int img_bad_option(int c, char **argv)
{
    /* getopt leaves optind past the word that held the bad option. */
    const char *word = optind > 0 ? argv[optind - 1] : "";
    if (c == ':') {
        return img_usage_error("missing argument for option '%s'", word);
    }
    return img_usage_error("unrecognized option '%s'", word);
}

int img_parse_output(const char *arg, bool *json)
{
    if (!strcmp(arg, "json")) {
        *json = true;
    } else if (!strcmp(arg, "human")) {
        *json = false;
    } else {
        img_error("--output must be used with human or json as argument.");
        return -EINVAL;
    }
    return 0;
}

int img_cvtnum(const char *what, const char *arg, int64_t min, int64_t max, int64_t *out)
{
    uint64_t v;
    int ret = parse_size(arg, &v);
    if (ret < 0 && ret != -ERANGE) {
        img_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", what);
        img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return ret;
    }
    if (ret == -ERANGE || v > (uint64_t)max || (int64_t)v < min) {
        img_error("Invalid %s specified. Must be between %" PRId64 " and %" PRId64 ".", what,
                  min, max);
        return -ERANGE;
    }
    *out = (int64_t)v;
    return 0;
}

int img_parse_size(const char *arg, int64_t *out)
{
    uint64_t v;
    if (parse_size(arg, &v) < 0 || v > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    *out = (int64_t)v;
    return 0;
}

int img_add_options(char **options, const char *arg)
{
    /*
     * Joined with ',' later: a list that starts with ',' or ends in an odd
     * number of them would swallow or escape the separator.
     */
    size_t len = strlen(arg), commas = 0;
    while (commas < len && arg[len - 1 - commas] == ',') {
        commas++;
    }
    if (!arg[0] || arg[0] == ',' || commas % 2) {
        img_error("Invalid option list: %s", arg);
        return -EINVAL;
    }
    char *joined = *options ? xasprintf("%s,%s", *options, arg) : xstrdup(arg);
    free(*options);
    *options = joined;
    return 0;
}

bool img_is_help_option(const char *options)
{
    if (!options) {
        return false;
    }
    /* "help" or "?" as one element of the list. */
    char *copy = xstrdup(options), *save = NULL;
    bool found = false;
    for (char *tok = strtok_r(copy, ",", &save); tok && !found; tok = strtok_r(NULL, ",", &save)) {
        found = !strcmp(tok, "help") || !strcmp(tok, "?");
    }
    free(copy);
    return found;
}

const char *img_opt_type_name(enum bdrv_opt_type t)
{
    switch (t) {
    case BDRV_OPT_BOOL:
        return "bool (on/off)";
    case BDRV_OPT_NUMBER:
        return "num";
    case BDRV_OPT_SIZE:
        return "size";
    default:
        return "str";
    }
}

const char *img_open_reason(const char *filename, const char *msg)
{
    size_t n = strlen(filename);
    if (!strncmp(msg, filename, n) && !strncmp(msg + n, ": ", 2)) {
        return msg + n + 2;
    }
    return msg;
}

struct block_backend *img_open(const struct image_open *o)
{
    struct err err = { 0 };
    struct block_backend *blk = image_open(o, &err);
    if (!blk) {
        /* qemu-img's form: the image as given, then the block layer's sentence. */
        img_error("Could not open '%s': %s", o->filename, img_open_reason(o->filename, err.msg));
    }
    return blk;
}

static void print_json_value(json_t *v, int indent)
{
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object(v)) {
        bool first = true;
        printf("{\n");
        json_object_foreach(v, key, item) {
            json_t *kj = json_string(key);
            char *k = json_dumps(kj, JSON_ENCODE_ANY);
            printf("%s%*s%s: ", first ? "" : ",\n", indent + 4, "", k);
            free(k);
            json_decref(kj);
            print_json_value(item, indent + 4);
            first = false;
        }
        printf("%s%*s}", first ? "" : "\n", indent, "");
    } else if (json_is_array(v)) {
        printf("[\n");
        json_array_foreach(v, i, item) {
            printf("%s%*s", i ? ",\n" : "", indent + 4, "");
            print_json_value(item, indent + 4);
        }
        printf("%s%*s]", json_array_size(v) ? "\n" : "", indent, "");
    } else {
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        printf("%s", text);
        free(text);
    }
}

void img_print_json(json_t *v)
{
    print_json_value(v, 0);
    printf("\n");
}

int img_compare_buffers(const uint8_t *a, const uint8_t *b, int64_t bytes, int64_t *pnum)
{
    int64_t i = MIN(bytes, BDRV_SECTOR_SIZE);
    int differ = memcmp(a, b, (size_t)i) != 0;
    while (i < bytes) {
        int64_t n = MIN(bytes - i, BDRV_SECTOR_SIZE);
        if ((memcmp(a + i, b + i, (size_t)n) != 0) != differ) {
            break;
        }
        i += n;
    }
    *pnum = i;
    return differ;
}

void img_progress_init(struct img_progress *p, bool requested)
{
    p->enabled = requested && isatty(STDOUT_FILENO);
    p->last = -1;
    img_progress_update(p, 0);
}

void img_progress_update(struct img_progress *p, double fraction)
{
    double pct = fraction * 100.0;
    if (!p->enabled || (pct - p->last < 1.0 && pct < 100.0 && p->last >= 0)) {
        return;
    }
    p->last = pct;
    printf("    (%.2f/100%%)\r", pct);
    fflush(stdout);
}

void img_progress_end(struct img_progress *p)
{
    if (p->enabled) {
        p->last = -1;
        img_progress_update(p, 1.0);
        printf("\n");
    }
}

static void print_format(const struct block_driver *drv, void *opaque)
{
    printf(" %s", drv->format_name);
}

int img_help(void)
{
    printf("spindle-img version " SPINDLE_IMG_VERSION "\n"
           "usage: spindle-img [standard options] command [command options]\n"
           "spindle disk image utility: qemu-img's commands over spindle's block layer\n"
           "\n"
           "    '-h', '--help'       display this help and exit\n"
           "    '-V', '--version'    output version information and exit\n"
           "\n"
           "Command syntax:\n");
    for (size_t i = 0; i < ARRAY_SIZE(subcommands); i++) {
        printf("  %s\n", subcommands[i].usage);
    }
    printf("\n"
           "Command parameters:\n"
           "  'filename' is a disk image filename; 'fmt' its format (probed when not given)\n"
           "  'cache' is the cache mode of the image written: 'none', 'writeback' (the\n"
           "    default but for convert), 'writethrough', 'directsync' or 'unsafe' (the\n"
           "    default for convert); 'src_cache' the same for images only read\n"
           "  'size' is in bytes, with an optional suffix k, M, G, T, P or E (powers of 1024)\n"
           "  'options' is a comma separated name=value list of format options; '-o help'\n"
           "    lists those of the format\n"
           "  'snapshot_param' is 'snapshot.id=[ID],snapshot.name=[NAME]' or '[ID_OR_NAME]'\n"
           "  '-u' unsafe: rebase rewrites only the header; create does not open the backing\n"
           "  '-p' shows progress (on a terminal); '-q' prints nothing but errors\n"
           "  '--output' human or json\n"
           "\n"
           "Parameters to bitmap subcommand:\n"
           "  'bitmap' is the name of the bitmap to change by the actions given, in order\n"
           "  '-g granularity' is the granularity of '--add'; '-b source' and '-F src_fmt'\n"
           "       name the image that '--merge' sources come from\n"
           "\n"
           "Parameters to check subcommand:\n"
           "  '-r leaks' repairs leaked clusters only, '-r all' every kind of error\n"
           "\n"
           "Parameters to snapshot subcommand:\n"
           "  '-a' applies, '-c' creates, '-d' deletes and '-l' lists internal snapshots\n"
           "\n"
           "Parameters to compare subcommand:\n"
           "  '-f' and '-F' are the formats of the two images; '-s' strict mode also fails\n"
           "       on a size or allocation difference\n"
           "\n"
           "Parameters to dd subcommand:\n"
           "  'bs=BYTES' block size (default: 512), 'count=N' input blocks to copy,\n"
           "  'skip=N' input blocks to skip, 'if=FILE' input, 'of=FILE' output,\n"
           "  'osize=BYTES' the output's size (not in qemu-img)\n"
           "\n"
           "Supported formats:");
    bdrv_foreach_driver(print_format, NULL);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    struct err err = { 0 };

    log_set_program("spindle-img");
    if (argc < 2) {
        return img_usage_error("Not enough arguments");
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        return img_help();
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("spindle-img version " SPINDLE_IMG_VERSION "\n");
        return 0;
    }
    if (argv[1][0] == '-') {
        return img_usage_error("unrecognized option '%s'", argv[1]);
    }
    for (size_t i = 0; i < ARRAY_SIZE(subcommands); i++) {
        if (strcmp(argv[1], subcommands[i].name)) {
            continue;
        }
        if (aio_main_init(&err) < 0) {
            img_error("%s", err.msg);
            return 1;
        }
        /* Subcommands parse their own options from argv[1] on. */
        optind = 1;
        int ret = subcommands[i].fn(argc - 1, argv + 1);
        fflush(stdout);
        iothread_destroy_all();
        return ret;
    }
    return img_usage_error("Command not found: %s", argv[1]);
}
