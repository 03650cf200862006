/*
 * spindle-io's stress command: random writes, zero writes and discards
 * from several iothreads at once, several requests in flight on each,
 * checked against a model afterwards.
 *
 *   stress [-t threads] [-q depth] [-n ops] [-s seed] [-b block] [-o model.raw]
 *
 * The disk is cut into stripes of STRIPE_BLOCKS blocks, dealt round-robin
 * to the threads x depth workers; a worker only touches its own stripes,
 * so the final content is deterministic even though stripes of different
 * workers share clusters and L2 tables (what the test is about).  Every
 * block holds a pattern that depends on the op and the position in the
 * block; discarded blocks are "unknown" until written again (a format may
 * ignore a discard).  With -o the expected content (unknown blocks taken
 * from the image) is also written to a raw file, for qemu-img compare.
 */
#include "stress.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/iothread.h"
#include "util/opts.h"

#define STRIPE_BLOCKS 3
#define UNKNOWN (-1)

struct stress {
    struct block_backend *blk;
    int64_t size;
    int64_t block;
    int64_t nblocks;
    int workers;                 /* threads * depth */
    int ops;
    unsigned seed;
    int *model;                  /* per block: 0 zeroes, >0 pattern id, UNKNOWN */
    pthread_mutex_t lock;        /* pending and waiters */
    int pending;
    struct co_queue waiters;
    atomic_int failures;
};

struct worker {
    struct stress *st;
    int id;
    struct aio_context *ctx;
};

static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void fill(uint8_t *buf, int64_t len, int pattern)
{
    for (int64_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(pattern * 31 + i * 7);
    }
}

/* The stripes of worker id, and how many there are. */
static int64_t stripes_of(const struct stress *st, int id)
{
    int64_t total = DIV_ROUND_UP(st->nblocks, STRIPE_BLOCKS);
    return total / st->workers + (id < total % st->workers);
}

static void coroutine_fn worker_co(void *opaque)
{
    struct worker *w = opaque;
    struct stress *st = w->st;
    uint64_t rnd = (uint64_t)st->seed * 2654435761u + (uint64_t)w->id * 97 + 1;
    int64_t nstripes = stripes_of(st, w->id);
    uint8_t *buf = blk_blockalign(st->blk, STRIPE_BLOCKS * st->block);

    for (int op = 0; op < st->ops && nstripes > 0; op++) {
        int64_t stripe = (int64_t)(next_rand(&rnd) % nstripes) * st->workers + w->id;
        int64_t first = stripe * STRIPE_BLOCKS;
        int64_t avail = MIN((int64_t)STRIPE_BLOCKS, st->nblocks - first);
        int64_t skip = (int64_t)(next_rand(&rnd) % avail);
        int64_t count = 1 + (int64_t)(next_rand(&rnd) % (avail - skip));
        int64_t off = (first + skip) * st->block, len = count * st->block;
        int kind = (int)(next_rand(&rnd) % 100);
        int pattern = w->id * 1000003 + op + 1;
        int ret, value;
        if (kind < 70) {
            fill(buf, len, pattern);
            ret = blk_co_pwrite(st->blk, off, len, buf, 0);
            value = pattern;
        } else if (kind < 85) {
            ret = blk_co_pwrite_zeroes(st->blk, off, len, kind < 78 ? BDRV_REQ_MAY_UNMAP : 0);
            value = 0;
        } else {
            ret = blk_co_pdiscard(st->blk, off, len);
            value = UNKNOWN;
        }
        if (ret < 0) {
            fprintf(stderr, "stress: %s at %" PRId64 " (%" PRId64 " bytes) failed: %s\n",
                    kind < 70 ? "write" : kind < 85 ? "zero write" : "discard", off, len,
                    strerror(-ret));
            atomic_fetch_add(&st->failures, 1);
            value = UNKNOWN;
        }
        for (int64_t b = first + skip; b < first + skip + count; b++) {
            st->model[b] = value;
        }
    }
    free(buf);
    pthread_mutex_lock(&st->lock);
    if (--st->pending == 0) {
        co_queue_restart_all(&st->waiters);
    }
    pthread_mutex_unlock(&st->lock);
}

static void start_worker(void *opaque)
{
    co_enter(co_create(worker_co, opaque));
}

/* Read everything back and compare; optionally write the expected image. */
static int coroutine_fn verify(struct stress *st, const char *model_file)
{
    int64_t chunk = 256 * st->block;
    uint8_t *buf = blk_blockalign(st->blk, chunk);
    uint8_t *want = xmalloc(st->block);
    int64_t bad = 0, unknown = 0, first_bad = -1;
    int fd = -1;

    if (model_file) {
        fd = open(model_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || ftruncate(fd, st->size) < 0) {
            fprintf(stderr, "stress: cannot create %s: %s\n", model_file, strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            fd = -1;
        }
    }
    for (int64_t off = 0; off < st->size; off += chunk) {
        int64_t n = MIN(chunk, st->size - off);
        int ret = blk_co_pread(st->blk, off, n, buf, 0);
        if (ret < 0) {
            fprintf(stderr, "stress: read at %" PRId64 " failed: %s\n", off, strerror(-ret));
            bad++;
            continue;
        }
        for (int64_t p = 0; p < n; p += st->block) {
            int64_t b = (off + p) / st->block;
            int64_t len = MIN(st->block, n - p);
            int v = st->model[b];
            if (v == UNKNOWN) {
                unknown++;
            } else {
                if (v == 0) {
                    memset(want, 0, len);
                } else {
                    fill(want, len, v);
                }
                if (memcmp(want, buf + p, len)) {
                    if (first_bad < 0) {
                        first_bad = off + p;
                    }
                    bad++;
                }
            }
            if (fd >= 0 && !buffer_is_zero(buf + p, len)) {
                full_pwrite(fd, buf + p, len, off + p);
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    free(buf);
    free(want);
    if (bad) {
        printf("stress: %" PRId64 " blocks differ from the model (the first at offset %" PRId64
               ")\n", bad, first_bad);
        return -EILSEQ;
    }
    printf("stress: %" PRId64 " blocks match the model (%" PRId64 " discarded)\n",
           st->nblocks - unknown, unknown);
    return 0;
}

int coroutine_fn io_stress(struct block_backend *blk, int argc, char **argv)
{
    int threads = 2, depth = 4, ops = 1000;
    unsigned seed = 1;
    int64_t block = 4096;
    const char *model_file = NULL;
    int c;

    optind = 1;
    while ((c = getopt(argc, argv, "t:q:n:s:b:o:")) != -1) {
        int64_t v;
        switch (c) {
        case 't':
        case 'q':
        case 'n':
        case 's':
            if (parse_int64(optarg, &v) < 0 || v < 0 || v > 1000000000) {
                fprintf(stderr, "stress: bad number '%s'\n", optarg);
                return -EINVAL;
            }
            if (c == 't') {
                threads = (int)MAX(v, 1);
            } else if (c == 'q') {
                depth = (int)MAX(v, 1);
            } else if (c == 'n') {
                ops = (int)v;
            } else {
                seed = (unsigned)v;
            }
            break;
        case 'b': {
            uint64_t b;
            if (parse_size(optarg, &b) < 0 || b < 512 || b % 512 || b > 1 * MiB) {
                fprintf(stderr, "stress: bad block size '%s'\n", optarg);
                return -EINVAL;
            }
            block = (int64_t)b;
            break;
        }
        case 'o':
            model_file = optarg;
            break;
        default:
            fprintf(stderr, "usage: stress [-t threads] [-q depth] [-n ops] [-s seed] "
                    "[-b block] [-o model.raw]\n");
            return -EINVAL;
        }
    }
    struct stress st = { .blk = blk, .block = block, .ops = ops, .seed = seed };
    st.size = blk_getlength(blk);
    st.nblocks = DIV_ROUND_UP(st.size, block);
    st.workers = threads * depth;
    st.model = xcalloc(MAX(st.nblocks, 1), sizeof(*st.model));
    pthread_mutex_init(&st.lock, NULL);
    co_queue_init(&st.waiters);

    /* Blocks that hold data already are unknown until the stress writes them. */
    uint8_t *probe = blk_blockalign(blk, block);
    for (int64_t b = 0; b < st.nblocks; b++) {
        int64_t len = MIN(block, st.size - b * block);
        if (blk_co_pread(blk, b * block, len, probe, 0) < 0 || !buffer_is_zero(probe, len)) {
            st.model[b] = UNKNOWN;
        }
    }
    free(probe);

    struct iothread **io = xcalloc(threads, sizeof(*io));
    struct worker *w = xcalloc(st.workers, sizeof(*w));
    struct err err = { 0 };
    int ret = 0;
    for (int i = 0; i < threads; i++) {
        char id[32];
        snprintf(id, sizeof(id), "stress%d", i);
        io[i] = iothread_create(id, NULL, &err);
        if (!io[i]) {
            fprintf(stderr, "stress: %s\n", err.msg);
            ret = -EIO;
            threads = i;
            break;
        }
    }
    if (ret == 0) {
        st.pending = st.workers;
        int64_t start = clock_ns();
        for (int i = 0; i < st.workers; i++) {
            w[i] = (struct worker){ &st, i, iothread_ctx(io[i % threads]) };
            aio_bh_schedule_oneshot(w[i].ctx, start_worker, &w[i]);
        }
        pthread_mutex_lock(&st.lock);
        while (st.pending) {
            co_queue_wait(&st.waiters, &st.lock);
        }
        pthread_mutex_unlock(&st.lock);
        double secs = (clock_ns() - start) / 1e9;
        printf("stress: %d ops from %d threads x %d in flight in %.2f s\n", ops * st.workers,
               threads, depth, secs);
        ret = verify(&st, model_file);
        if (ret == 0 && atomic_load(&st.failures)) {
            ret = -EIO;
        }
    }
    for (int i = 0; i < threads; i++) {
        iothread_destroy(io[i]);
    }
    free(io);
    free(w);
    free(st.model);
    pthread_mutex_destroy(&st.lock);
    return ret;
}
