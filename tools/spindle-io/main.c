/*
 * spindle-io: a qemu-io-like tester.  Opens one image and runs the -c
 * commands in order:
 *
 *   read  [-P pat] [-q] OFF LEN          read; with -P verify every byte
 *   readv [-P pat] [-q] OFF LEN [LEN..]  the same through several buffers
 *   write [-P pat] [-z [-u]] [-f] [-q] OFF LEN
 *                                        write a pattern (default 0xcd),
 *                                        zeroes (-z, -u: may unmap), FUA (-f)
 *   writev [-P pat] [-f] [-q] OFF LEN [LEN..]
 *   discard [-q] OFF LEN
 *   flush
 *   aio_read [-P pat] [-q] OFF LEN       start a read and go on
 *   aio_write [-P pat] [-z] [-q] OFF LEN start a write and go on
 *   aio_flush                            wait for every aio request
 *   map                                  allocation of the whole image
 *   truncate SIZE
 *   length
 *   stress [-t threads] [-q depth] [-n ops] [-s seed] [-b block] [-o model.raw]
 *                                        random writes, zero writes and discards
 *                                        from several iothreads, checked against
 *                                        a model (see stress.c)
 *
 * A failed command or a pattern mismatch is reported and makes the exit
 * status 1; the remaining commands still run, as in qemu-io.
 */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "block/backend.h"
#include "block/image.h"
#include "util/aio.h"
#include "util/log.h"
#include "util/opts.h"

#include "stress.h"

#define MAX_ARGS 64

struct io_state {
    struct block_backend *blk;
    int failures;
    int aio_in_flight;
    struct co_queue aio_waiters;
};

struct cmd_opts {
    int pattern;          /* -1: none given */
    bool zero, unmap, fua, quiet;
    int argc;             /* positional arguments after the options */
    char **argv;
};

static void print_rate(const char *verb, int64_t bytes, int64_t offset, int64_t ns, int ops,
                       bool quiet)
{
    char size[32];
    double secs = ns / 1e9;
    if (quiet) {
        return;
    }
    format_size((uint64_t)bytes, size, sizeof(size));
    printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", verb, bytes, bytes,
           offset);
    printf("%s, %d ops; %02d:%05.2f (%.3f MiB/sec and %.4f ops/sec)\n", size, ops,
           (int)(secs / 60), secs - 60 * (int)(secs / 60),
           secs > 0 ? bytes / secs / MiB : 0.0, secs > 0 ? ops / secs : 0.0);
}

static int parse_cmd_opts(int argc, char **argv, const char *allowed, struct cmd_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->pattern = -1;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        char c = argv[i][1];
        if (!strchr(allowed, c) || argv[i][2]) {
            fprintf(stderr, "%s: invalid option -- '%s'\n", argv[0], argv[i] + 1);
            return -EINVAL;
        }
        switch (c) {
        case 'P': {
            int64_t v;
            if (i + 1 >= argc || parse_int64(argv[i + 1], &v) < 0 || v < 0 || v > 255) {
                fprintf(stderr, "%s: -P expects a byte value\n", argv[0]);
                return -EINVAL;
            }
            o->pattern = (int)v;
            i++;
            break;
        }
        case 'z':
            o->zero = true;
            break;
        case 'u':
            o->unmap = true;
            break;
        case 'f':
            o->fua = true;
            break;
        case 'q':
            o->quiet = true;
            break;
        }
    }
    o->argc = argc - i;
    o->argv = argv + i;
    return 0;
}

static int parse_off_len(const char *cmd, char **argv, int64_t *off, int64_t *len)
{
    uint64_t a, b;
    if (parse_size(argv[0], &a) < 0 || a > INT64_MAX) {
        fprintf(stderr, "%s: invalid offset '%s'\n", cmd, argv[0]);
        return -EINVAL;
    }
    if (parse_size(argv[1], &b) < 0 || b > INT64_MAX) {
        fprintf(stderr, "%s: invalid length '%s'\n", cmd, argv[1]);
        return -EINVAL;
    }
    *off = (int64_t)a;
    *len = (int64_t)b;
    return 0;
}

/* Where buf differs from the pattern, or -1. */
static int64_t pattern_mismatch(const uint8_t *buf, int64_t len, int pattern)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != (uint8_t)pattern) {
            return i;
        }
    }
    return -1;
}

/* ---- Synchronous commands (run inside the command coroutine) ----------- */

static int coroutine_fn do_rw(struct io_state *s, int argc, char **argv, bool write,
                              bool vectored)
{
    struct cmd_opts o;
    int64_t off, len = 0;
    const char *allowed = write ? (vectored ? "Pfq" : "Pzufq") : "Pq";

    if (parse_cmd_opts(argc, argv, allowed, &o) < 0) {
        return -EINVAL;
    }
    int nlens = vectored ? o.argc - 1 : 1;
    if ((!vectored && o.argc != 2) || (vectored && o.argc < 2)) {
        fprintf(stderr, "%s: expects an offset and %s\n", argv[0],
                vectored ? "one or more lengths" : "a length");
        return -EINVAL;
    }
    int64_t lens[MAX_ARGS];
    for (int i = 0; i < nlens; i++) {
        char *pair[2] = { o.argv[0], o.argv[1 + i] };
        if (parse_off_len(argv[0], pair, &off, &lens[i]) < 0) {
            return -EINVAL;
        }
        len += lens[i];
    }
    uint8_t *buf = blk_blockalign(s->blk, len);
    memset(buf, o.pattern >= 0 ? o.pattern : (write ? 0xcd : 0), len);
    struct qiov q;
    qiov_init(&q, nlens);
    for (int i = 0, pos = 0; i < nlens; pos += lens[i], i++) {
        qiov_add(&q, buf + pos, lens[i]);
    }

    int64_t start = clock_ns();
    int ret;
    int flags = o.fua ? BDRV_REQ_FUA : 0;
    if (write && o.zero) {
        ret = blk_co_pwrite_zeroes(s->blk, off, len, flags | (o.unmap ? BDRV_REQ_MAY_UNMAP : 0));
    } else if (write) {
        ret = blk_co_pwritev(s->blk, off, len, &q, flags);
    } else {
        ret = blk_co_preadv(s->blk, off, len, &q, 0);
    }
    int64_t ns = clock_ns() - start;
    if (ret < 0) {
        fprintf(stderr, "%s failed: %s\n", write ? "write" : "read", strerror(-ret));
    } else if (!write && o.pattern >= 0) {
        int64_t bad = pattern_mismatch(buf, len, o.pattern);
        if (bad >= 0) {
            printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                   off + bad, len);
            ret = -EILSEQ;
        }
    }
    if (ret == 0) {
        print_rate(write ? "wrote" : "read", len, off, ns, 1, o.quiet);
    }
    qiov_destroy(&q);
    free(buf);
    return ret;
}

static int coroutine_fn do_discard(struct io_state *s, int argc, char **argv)
{
    struct cmd_opts o;
    int64_t off, len;
    if (parse_cmd_opts(argc, argv, "q", &o) < 0 || o.argc != 2 ||
        parse_off_len("discard", o.argv, &off, &len) < 0) {
        fprintf(stderr, "discard: expects an offset and a length\n");
        return -EINVAL;
    }
    int64_t start = clock_ns();
    int ret = blk_co_pdiscard(s->blk, off, len);
    if (ret < 0) {
        fprintf(stderr, "discard failed: %s\n", strerror(-ret));
        return ret;
    }
    print_rate("discard", len, off, clock_ns() - start, 1, o.quiet);
    return 0;
}

static int coroutine_fn do_map(struct io_state *s)
{
    struct block_node *bs = blk_node(s->blk);
    int64_t size = blk_getlength(s->blk);
    char a[32], b[32];

    for (int64_t off = 0; off < size;) {
        int64_t pnum;
        int ret = bnode_co_is_allocated_above(bs, NULL, false, off, size - off, &pnum);
        if (ret < 0) {
            fprintf(stderr, "map failed: %s\n", strerror(-ret));
            return ret;
        }
        if (pnum <= 0) {
            break;
        }
        /* Merge runs with the same answer. */
        int64_t run = pnum;
        while (off + run < size) {
            int64_t more;
            int r2 = bnode_co_is_allocated_above(bs, NULL, false, off + run, size - off - run,
                                                 &more);
            if (r2 != ret || more <= 0) {
                break;
            }
            run += more;
        }
        format_size((uint64_t)run, a, sizeof(a));
        format_size((uint64_t)off, b, sizeof(b));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", a, run,
               ret ? "    allocated" : "not allocated", b, off);
        off += run;
    }
    return 0;
}

/* ---- aio commands ------------------------------------------------------ */

struct aio_cmd {
    struct io_state *s;
    int argc;
    char *argv[MAX_ARGS];
};

static void aio_cmd_entry(void *opaque)
{
    struct aio_cmd *a = opaque;
    struct io_state *s = a->s;
    bool write = !strcmp(a->argv[0], "aio_write");
    int ret = do_rw(s, a->argc, a->argv, write, false);
    if (ret < 0) {
        s->failures++;
    }
    for (int i = 0; i < a->argc; i++) {
        free(a->argv[i]);
    }
    free(a);
    if (--s->aio_in_flight == 0) {
        co_queue_restart_all(&s->aio_waiters);
    }
}

static void start_aio(struct io_state *s, int argc, char **argv)
{
    struct aio_cmd *a = xzalloc(sizeof(*a));
    a->s = s;
    a->argc = argc;
    for (int i = 0; i < argc; i++) {
        a->argv[i] = xstrdup(argv[i]);
    }
    /* The aio names share the sync parsers: "aio_read" reads like "read". */
    s->aio_in_flight++;
    co_enter(co_create(aio_cmd_entry, a));
}

static void coroutine_fn wait_aio(struct io_state *s)
{
    while (s->aio_in_flight) {
        co_queue_wait(&s->aio_waiters, NULL);
    }
}

/* ---- Dispatch ---------------------------------------------------------- */

static int split_args(char *line, char **argv)
{
    int argc = 0;
    for (char *tok = strtok(line, " \t"); tok && argc < MAX_ARGS - 1; tok = strtok(NULL, " \t")) {
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    return argc;
}

static int coroutine_fn run_command(struct io_state *s, const char *cmdline)
{
    char *line = xstrdup(cmdline);
    char *argv[MAX_ARGS];
    int argc = split_args(line, argv);
    int ret = 0;

    if (argc == 0) {
        free(line);
        return 0;
    }
    const char *cmd = argv[0];
    if (!strcmp(cmd, "read") || !strcmp(cmd, "write")) {
        ret = do_rw(s, argc, argv, cmd[0] == 'w', false);
    } else if (!strcmp(cmd, "readv") || !strcmp(cmd, "writev")) {
        ret = do_rw(s, argc, argv, cmd[0] == 'w', true);
    } else if (!strcmp(cmd, "discard")) {
        ret = do_discard(s, argc, argv);
    } else if (!strcmp(cmd, "flush")) {
        ret = blk_co_flush(s->blk);
        if (ret < 0) {
            fprintf(stderr, "flush failed: %s\n", strerror(-ret));
        }
    } else if (!strcmp(cmd, "aio_read") || !strcmp(cmd, "aio_write")) {
        start_aio(s, argc, argv);
    } else if (!strcmp(cmd, "aio_flush")) {
        wait_aio(s);
        ret = blk_co_flush(s->blk);
    } else if (!strcmp(cmd, "map")) {
        ret = do_map(s);
    } else if (!strcmp(cmd, "stress")) {
        ret = io_stress(s->blk, argc, argv);
    } else if (!strcmp(cmd, "length")) {
        char size[32];
        format_size((uint64_t)blk_getlength(s->blk), size, sizeof(size));
        printf("%s\n", size);
    } else if (!strcmp(cmd, "truncate") && argc == 2) {
        uint64_t size;
        struct err err = { 0 };
        if (parse_size(argv[1], &size) < 0) {
            fprintf(stderr, "truncate: invalid size '%s'\n", argv[1]);
            ret = -EINVAL;
        } else {
            ret = blk_co_truncate(s->blk, (int64_t)size, false, PREALLOC_MODE_OFF, 0, &err);
            if (ret < 0) {
                fprintf(stderr, "truncate failed: %s\n", err.msg);
            }
        }
    } else {
        fprintf(stderr, "command '%s' not found\n", cmd);
        ret = -EINVAL;
    }
    free(line);
    return ret;
}

struct run_all {
    struct io_state *s;
    char **cmds;
    int ncmds;
};

static void run_all_entry(void *opaque)
{
    struct run_all *r = opaque;
    for (int i = 0; i < r->ncmds; i++) {
        if (run_command(r->s, r->cmds[i]) < 0) {
            r->s->failures++;
        }
    }
    wait_aio(r->s);
}

static void usage(void)
{
    printf("Usage: spindle-io [-f FMT] [--image-opts] [-t CACHE] [-i AIO] [-n] [-r] [-U] "
           "-c CMD... FILE\n"
           "Commands: read, readv, write, writev, discard, flush, aio_read, aio_write,\n"
           "          aio_flush, map, truncate, length, stress (see the source header)\n");
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'O' },
        { "format", required_argument, NULL, 'f' },
        { "cache", required_argument, NULL, 't' },
        { "aio", required_argument, NULL, 'i' },
        { "cmd", required_argument, NULL, 'c' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { .writable = true, .unmap = true };
    char **cmds = xcalloc(argc, sizeof(char *));
    int ncmds = 0, c;
    struct err err = { 0 };

    log_set_program(argv[0]);
    while ((c = getopt_long(argc, argv, "hf:t:i:c:nrU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.fmt = optarg;
            break;
        case 't':
            o.cache = optarg;
            break;
        case 'n':
            o.cache = "none";
            break;
        case 'i':
            o.aio = optarg;
            break;
        case 'c':
            cmds[ncmds++] = optarg;
            break;
        case 'r':
            o.writable = false;
            break;
        case 'U':
            o.force_share = true;
            break;
        case 'O':
            o.image_opts = true;
            break;
        case 'h':
            usage();
            free(cmds);
            return 0;
        default:
            usage();
            free(cmds);
            return 1;
        }
    }
    int status = 1;
    if (optind != argc - 1) {
        log_error("expected one image file name");
        goto out;
    }
    o.filename = argv[optind];
    if (o.force_share) {
        o.writable = false;
    }
    if (aio_main_init(&err) < 0) {
        log_error("%s", err.msg);
        goto out;
    }
    struct block_backend *blk = image_open(&o, &err);
    if (!blk) {
        log_error("%s", err.msg);
        goto out;
    }
    struct io_state s = { .blk = blk };
    co_queue_init(&s.aio_waiters);
    struct run_all r = { &s, cmds, ncmds };
    co_run_sync(run_all_entry, &r);
    blk_unref(blk);
    status = s.failures ? 1 : 0;
out:
    free(cmds);
    return status;
}
