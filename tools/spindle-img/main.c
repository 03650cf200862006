/* spindle-img: the subcommand table and what subcommands share. */
#include "img.h"

#include <stdarg.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/iothread.h"
#include "util/opts.h"

struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
};

static const struct subcommand subcommands[] = {
    { "bench", img_bench,
      "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
      "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
      "[-t cache] [-w] [-U] filename" },
    { "check", img_check,
      "check [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] "
      "[-U] filename" },
    { "convert", img_convert,
      "convert [--image-opts] [--target-image-opts] [--target-is-zero] [-U] [-C] [-c] [-p] "
      "[-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] "
      "[-o options] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] "
      "filename [filename2 [...]] output_filename" },
    { "create", img_create,
      "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename "
      "[size]" },
    { "info", img_info,
      "info [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename" },
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

int img_parse_size(const char *arg, int64_t *out)
{
    uint64_t v;
    if (parse_size(arg, &v) < 0 || v > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    *out = (int64_t)v;
    return 0;
}

struct block_backend *img_open(const struct image_open *o)
{
    struct err err = { 0 };
    struct block_backend *blk = image_open(o, &err);
    if (!blk) {
        img_error("%s", err.msg);
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

static void help(void)
{
    printf("spindle-img: disk image utility (qemu-img compatible)\n\n"
           "usage: spindle-img [standard options] command [command options]\n\n"
           "Command syntax:\n");
    for (size_t i = 0; i < ARRAY_SIZE(subcommands); i++) {
        printf("  %s\n", subcommands[i].usage);
    }
}

int main(int argc, char **argv)
{
    struct err err = { 0 };

    log_set_program("spindle-img");
    if (argc < 2) {
        img_error("Not enough arguments");
        fprintf(stderr, "Try 'spindle-img --help' for more information\n");
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        help();
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("spindle-img version 0.1 (qemu-img compatible)\n");
        return 0;
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
        iothread_destroy_all();
        return ret;
    }
    img_error("Command not found: %s", argv[1]);
    return 1;
}
