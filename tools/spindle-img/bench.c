/*
 * spindle-img bench: qemu-img bench's options and output.  depth
 * coroutines each keep one request in flight; offsets advance by the step
 * and wrap so every request stays inside the image.
 */
#include "img.h"

#include "util/opts.h"

struct bench {
    struct block_backend *blk;
    uint8_t *buf;
    int64_t image_size, offset;
    int bufsize, step, depth;
    int count, issued, completed, in_flight;
    int flush_interval;
    bool write, drain_on_flush, draining;
    struct co_queue drain_waiters;   /* workers held while a drained flush runs */
    struct co_queue drain_done;      /* the flusher waiting for in_flight == 0 */
    int running;                     /* workers not yet finished */
    int ret;
};

struct bench_worker_arg {
    struct bench *b;
    int slot;                        /* which buffer of b->buf is ours */
};

static int64_t next_offset(struct bench *b)
{
    int64_t off = b->offset;
    b->offset += b->step;
    if (b->image_size <= b->bufsize) {
        b->offset = 0;
    } else {
        b->offset %= b->image_size - b->bufsize;
    }
    return off;
}

static void coroutine_fn maybe_flush(struct bench *b)
{
    if (!b->flush_interval || b->completed % b->flush_interval) {
        return;
    }
    if (b->drain_on_flush) {
        b->draining = true;
        while (b->in_flight) {
            co_queue_wait(&b->drain_done, NULL);
        }
    }
    int ret = blk_co_flush(b->blk);
    if (ret < 0 && !b->ret) {
        img_error("Failed flush request: %s", strerror(-ret));
        b->ret = ret;
    }
    if (b->drain_on_flush) {
        b->draining = false;
        co_queue_restart_all(&b->drain_waiters);
    }
}

static void bench_worker(void *opaque)
{
    struct bench_worker_arg *arg = opaque;
    struct bench *b = arg->b;
    uint8_t *buf = b->buf + (size_t)arg->slot * b->bufsize;

    while (b->issued < b->count && !b->ret) {
        while (b->draining) {
            co_queue_wait(&b->drain_waiters, NULL);
        }
        if (b->issued >= b->count) {
            break;
        }
        int64_t off = next_offset(b);
        b->issued++;
        b->in_flight++;
        int ret = b->write ? blk_co_pwrite(b->blk, off, b->bufsize, buf, 0)
                           : blk_co_pread(b->blk, off, b->bufsize, buf, 0);
        b->in_flight--;
        b->completed++;
        if (ret < 0 && !b->ret) {
            img_error("Failed request: %s", strerror(-ret));
            b->ret = ret;
        }
        if (b->draining && !b->in_flight) {
            co_queue_next(&b->drain_done);
        }
        maybe_flush(b);
    }
    b->running--;
}

static int parse_count(const char *arg, const char *what, int *out)
{
    int64_t v;
    if (parse_int64(arg, &v) < 0 || v < 0 || v > INT32_MAX) {
        img_error("Invalid %s specified", what);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

int img_bench(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, 'F' },
        { "image-opts", no_argument, NULL, 'I' },
        { "pattern", required_argument, NULL, 'P' },
        { "no-drain", no_argument, NULL, 'D' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct bench b = { .count = 75000, .depth = 64, .bufsize = 4096, .drain_on_flush = true };
    struct image_open o = { 0 };
    int64_t v;
    int pattern = 0, c;

    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_count(optarg, "request count", &b.count) < 0) {
                return 1;
            }
            break;
        case 'd':
            if (parse_count(optarg, "queue depth", &b.depth) < 0) {
                return 1;
            }
            break;
        case 'f':
            o.fmt = optarg;
            break;
        case 'n':
            o.aio = "native";
            break;
        case 'i':
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring")) {
                img_error("Invalid aio option: %s", optarg);
                return 1;
            }
            o.aio = optarg;
            break;
        case 'o':
            if (img_parse_size(optarg, &v) < 0) {
                img_error("Invalid offset specified");
                return 1;
            }
            b.offset = v;
            break;
        case 'q':
            break;    /* qemu-img bench prints its lines even with -q */
        case 's':
            if (img_parse_size(optarg, &v) < 0 || v > INT32_MAX || v == 0) {
                img_error("Invalid buffer size specified");
                return 1;
            }
            b.bufsize = (int)v;
            break;
        case 'S':
            if (img_parse_size(optarg, &v) < 0 || v > INT32_MAX) {
                img_error("Invalid step size specified");
                return 1;
            }
            b.step = (int)v;
            break;
        case 't':
            o.cache = optarg;
            break;
        case 'w':
            b.write = true;
            o.writable = true;
            break;
        case 'F':
            if (parse_count(optarg, "flush interval", &b.flush_interval) < 0) {
                return 1;
            }
            break;
        case 'P':
            if (parse_int64(optarg, &v) < 0 || v < 0 || v > 0xff) {
                img_error("Invalid pattern byte specified");
                return 1;
            }
            pattern = (int)v;
            break;
        case 'D':
            b.drain_on_flush = false;
            break;
        case 'I':
            o.image_opts = true;
            break;
        case 'U':
            o.force_share = true;
            break;
        case 'h':
            printf("usage: spindle-img bench [-c count] [-d depth] [-f fmt] "
                   "[--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] "
                   "[--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] "
                   "[-U] filename\n");
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
    if (!b.write && b.flush_interval) {
        img_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (b.flush_interval && b.flush_interval < b.depth) {
        img_error("Flush interval can't be smaller than depth");
        return 1;
    }
    if (b.depth < 1) {
        img_error("Invalid queue depth specified");
        return 1;
    }
    o.filename = argv[optind];
    b.blk = img_open(&o);
    if (!b.blk) {
        return 1;
    }
    b.image_size = blk_getlength(b.blk);
    b.step = b.step ? b.step : b.bufsize;
    printf("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %" PRId64
           ", step size %d)\n", b.count, b.write ? "write" : "read", b.bufsize, b.depth,
           b.offset, b.step);
    if (b.flush_interval) {
        printf("Sending flush every %d requests\n", b.flush_interval);
    }
    fflush(stdout);

    b.buf = blk_blockalign(b.blk, (size_t)b.depth * b.bufsize);
    memset(b.buf, pattern, (size_t)b.depth * b.bufsize);
    co_queue_init(&b.drain_waiters);
    co_queue_init(&b.drain_done);

    struct bench_worker_arg *args = xcalloc(b.depth, sizeof(*args));
    int64_t start = clock_ns();
    b.running = b.depth;
    for (int i = 0; i < b.depth; i++) {
        args[i] = (struct bench_worker_arg){ &b, i };
        co_enter(co_create(bench_worker, &args[i]));
    }
    while (b.running > 0) {
        aio_poll(aio_main_context(), true);
    }
    free(args);
    double secs = (clock_ns() - start) / 1e9;
    printf("Run completed in %3.3f seconds.\n", secs);
    free(b.buf);
    blk_unref(b.blk);
    return b.ret ? 1 : 0;
}
