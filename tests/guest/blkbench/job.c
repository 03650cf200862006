/* job.c: the fio-like engine; see job.h and tests/guest/README.md. */
#include "blk.h"
#include "blkbench.h"
#include "io.h"
#include "job.h"
#include "lib.h"
#include "mem.h"
#include "serial.h"
#include "stats.h"
#include "tsc.h"
#include "verify.h"

#define MAX_REPORTED      8     /* mismatches / I/O errors printed per job */
#define RANDOM_TRIES      8     /* picks before a random job waits a round */
#define WATCHDOG_MS       10    /* how often in-flight requests are aged */

enum kind { K_READ, K_WRITE, K_FLUSH };
enum phase { PH_MAIN, PH_VERIFY };

struct slot_state {
    uint64_t tsc;               /* submitted at */
    uint64_t block;             /* index in the job's region */
    uint32_t gen;               /* write: new gen; read: expected (or GEN_ANY) */
    uint8_t kind;
    uint8_t busy;
    uint8_t check;              /* verify this read */
};

struct sub {
    struct job *job;
    struct vblk_queue *q;
    uint64_t first, nblocks;    /* this sub-job's slice, in blocks */
    uint64_t next;              /* sequential cursor, relative to first */
    uint64_t issued, budget;    /* size-based: stop after budget */
    uint64_t prng;
    int stop;                   /* nothing more to issue this phase */
    unsigned inflight, nfree;
    uint16_t *free;
    struct slot_state *ss;
    uint8_t *bufs;
    unsigned writes_since_flush;
    uint64_t t_start, t_last;
    uint64_t rate_ticks;        /* rate_iops: TSC ticks between two requests */
    uint64_t ios, bytes, flushes, errors, verify_errors, checked;
    struct hist *hist;
};

struct job {
    int index;
    const struct job_opts *o;
    struct vblk *dev;
    enum phase phase;
    uint64_t deadline;          /* time-based main phase */
    uint64_t timeout_ticks;
    struct vtable *vt;          /* NULL: no verify, or no table (GEN_ANY) */
    int self_check;             /* verify without a table */
    unsigned reported;
    unsigned nsubs;
    struct sub subs[VBLK_MAX_QUEUES];
};

uint64_t first_io_tsc;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t block_offset(const struct job *j, uint64_t block)
{
    return j->o->offset + block * j->o->bs;
}

/* ---- issuing ---- */

static int pick_block(struct sub *s, uint64_t *block)
{
    struct job *j = s->job;
    uint32_t *gen = j->vt ? j->vt->gen : NULL;

    if (j->phase == PH_VERIFY) {
        /* Every block with a known generation, in order. */
        while (s->next < s->nblocks && (!gen[s->first + s->next] ||
               (gen[s->first + s->next] & GEN_MASK) == GEN_UNKNOWN))
            s->next++;
        if (s->next == s->nblocks) {
            s->stop = 1;
            return 0;
        }
        *block = s->first + s->next++;
        return 1;
    }
    if (rw_is_random(j->o->rw)) {
        for (int t = 0; t < RANDOM_TRIES; t++) {
            *block = s->first + xorshift(&s->prng) % s->nblocks;
            if (!gen || !(gen[*block] & GEN_INFLIGHT))
                return 1;
        }
        return 0;               /* all picks busy: try after completions */
    }
    *block = s->first + s->next;
    if (gen && (gen[*block] & GEN_INFLIGHT))
        return 0;               /* wrapped onto our own tail: wait */
    if (++s->next == s->nblocks)
        s->next = 0;
    return 1;
}

static int main_phase_done(struct sub *s, uint64_t now)
{
    if (s->job->o->runtime_ms)
        return (int64_t)(now - s->job->deadline) >= 0;
    return s->issued >= s->budget;
}

static enum kind pick_kind(struct sub *s)
{
    const struct job_opts *o = s->job->o;

    if (s->job->phase == PH_VERIFY)
        return K_READ;
    switch (o->rw) {
    case RW_WRITE:
    case RW_RANDWRITE:
        return K_WRITE;
    case RW_RANDRW:
        return xorshift(&s->prng) % 100 < o->rwmixread ? K_READ : K_WRITE;
    default:
        return K_READ;
    }
}

static void submit(struct sub *s, unsigned slot, enum kind k, uint64_t block, uint64_t now)
{
    struct job *j = s->job;
    struct slot_state *st = &s->ss[slot];
    uint8_t *buf = s->bufs + (size_t)slot * j->o->bs;
    uint32_t type = k == K_READ ? VIRTIO_BLK_T_IN :
                    k == K_WRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_FLUSH;

    st->kind = (uint8_t)k;
    st->block = block;
    st->busy = 1;
    st->check = 0;
    if (k != K_FLUSH && j->vt) {
        uint32_t *g = &j->vt->gen[block];
        if (k == K_WRITE) {
            st->gen = gen_next(*g);
            verify_fill(buf, j->o->bs, block_offset(j, block), st->gen, j->vt->seed);
        } else {
            st->gen = *g & GEN_MASK;
            st->check = st->gen && st->gen != GEN_UNKNOWN;
        }
        *g |= GEN_INFLIGHT;
    } else if (k == K_READ && j->self_check) {
        st->gen = GEN_ANY;
        st->check = 1;
    }
    st->tsc = now;
    vblk_submit(s->q, slot, type, k == K_FLUSH ? 0 : block_offset(j, block),
                buf, k == K_FLUSH ? 0 : j->o->bs);
    s->inflight++;
}

/* Issue one request if there is one to issue now; 0 otherwise. */
static int issue_one(struct sub *s, uint64_t now)
{
    struct job *j = s->job;
    uint64_t block = 0;

    if (s->stop)
        return 0;
    if (j->phase == PH_MAIN && main_phase_done(s, now)) {
        s->stop = 1;
        return 0;
    }
    /* Paced: the n-th request of the phase waits for its moment, as fio's rate_iops. */
    if (j->phase == PH_MAIN && s->rate_ticks && s->issued * s->rate_ticks > now - s->t_start)
        return 0;
    if (j->phase == PH_MAIN && j->o->flush_every &&
        s->writes_since_flush >= j->o->flush_every) {
        s->writes_since_flush = 0;
        submit(s, s->free[--s->nfree], K_FLUSH, 0, now);
        return 1;
    }
    enum kind k = pick_kind(s);
    if (!pick_block(s, &block))
        return 0;
    if (k == K_WRITE)
        s->writes_since_flush++;
    s->issued++;
    submit(s, s->free[--s->nfree], k, block, now);
    return 1;
}

/* ---- completion ---- */

static void report_mismatch(struct sub *s, const struct vmismatch *m)
{
    char expect[12] = "any";

    if (m->expect_gen != GEN_ANY)
        ksnprintf(expect, sizeof(expect), "%u", m->expect_gen);
    kprintf("BLKBENCH-VERIFY-ERROR job=%d queue=%u offset=%lu expected_gen=%s "
            "found_magic=0x%lx found_offset=%lu found_gen=%u found_seed=%u "
            "first_bad_byte=%u\n", s->job->index, s->q->vr.index, m->offset,
            expect, m->found_magic, m->found_offset, m->found_gen,
            m->found_seed, m->first_bad_byte);
}

static void complete_data(struct sub *s, struct slot_state *st, uint8_t status,
                          const uint8_t *buf)
{
    struct job *j = s->job;
    uint32_t *g = j->vt ? &j->vt->gen[st->block] : NULL;

    if (status != VIRTIO_BLK_S_OK) {
        s->errors++;
        if (j->reported++ < MAX_REPORTED)
            kprintf("BLKBENCH-IOERROR job=%d queue=%u %s offset=%lu status=%u\n",
                    j->index, s->q->vr.index, st->kind == K_WRITE ? "write" : "read",
                    block_offset(j, st->block), status);
        if (g)
            *g = st->kind == K_WRITE ? GEN_UNKNOWN : *g & GEN_MASK;
        return;
    }
    if (st->kind == K_WRITE) {
        if (g)
            *g = st->gen;
        return;
    }
    if (g)
        *g &= GEN_MASK;
    if (st->check) {
        struct vmismatch m;
        s->checked++;
        if (verify_check(buf, j->o->bs, block_offset(j, st->block), st->gen,
                         j->vt ? j->vt->seed : 0, &m) < 0) {
            s->verify_errors++;
            if (j->reported++ < MAX_REPORTED)
                report_mismatch(s, &m);
        }
    }
}

static void on_done(void *ctx, unsigned slot, uint8_t status)
{
    struct sub *s = ctx;
    struct slot_state *st = &s->ss[slot];
    uint64_t now = rdtsc();

    if (!first_io_tsc)
        first_io_tsc = now;
    if (st->kind == K_FLUSH) {
        s->flushes++;
        if (status != VIRTIO_BLK_S_OK) {
            s->errors++;
            if (s->job->reported++ < MAX_REPORTED)
                kprintf("BLKBENCH-IOERROR job=%d queue=%u flush status=%u\n",
                        s->job->index, s->q->vr.index, status);
        }
    } else {
        complete_data(s, st, status, s->bufs + (size_t)slot * s->job->o->bs);
        if (s->job->phase == PH_MAIN) {     /* the verify pass is not measured */
            s->ios++;
            s->bytes += s->job->o->bs;
            hist_add(s->hist, now - st->tsc);
        }
    }
    st->busy = 0;
    s->inflight--;
    s->free[s->nfree++] = (uint16_t)slot;
    s->t_last = now;
}

/* ---- the loop ---- */

static void __attribute__((noreturn)) timed_out(struct sub *s, unsigned slot, uint64_t now)
{
    struct slot_state *st = &s->ss[slot];
    static const char *const names[] = { "read", "write", "flush" };

    kprintf("BLKBENCH-ERROR job=%d dev=%d queue=%u: %s at offset %lu did not complete "
            "in %lu ms (device status 0x%x, %u in flight)\n", s->job->index,
            s->job->dev->index, s->q->vr.index, names[st->kind],
            block_offset(s->job, st->block), tsc_to_ms(now - st->tsc),
            vpci_status(&s->job->dev->vp), s->inflight);
    blkbench_exit(EXIT_DEVICE);
}

static void watchdog(struct job *j, uint64_t now)
{
    if (j->dev->broken)
        fatal(EXIT_DEVICE, "job=%d dev=%d: device broken, giving up", j->index,
              j->dev->index);
    for (unsigned i = 0; i < j->nsubs; i++) {
        struct sub *s = &j->subs[i];
        for (unsigned k = 0; k < j->o->iodepth && s->inflight; k++)
            if (s->ss[k].busy && now - s->ss[k].tsc > j->timeout_ticks)
                timed_out(s, k, now);
    }
    if (vpci_status(&j->dev->vp) & VIRTIO_STATUS_NEEDS_RESET)
        fatal(EXIT_DEVICE, "job=%d dev=%d: device set DEVICE_NEEDS_RESET", j->index,
              j->dev->index);
}

static void run_phase(struct job *j, enum phase ph)
{
    uint64_t now = rdtsc(), next_watch = now + ms_to_tsc(WATCHDOG_MS);
    int active = 1;

    j->phase = ph;
    j->deadline = now + ms_to_tsc(j->o->runtime_ms);
    for (unsigned i = 0; i < j->nsubs; i++) {
        struct sub *s = &j->subs[i];
        s->next = s->issued = 0;
        s->budget = s->nblocks;
        s->stop = 0;
        s->t_start = s->t_last = now;
        /* The rate is the job's: each queue takes its share. */
        s->rate_ticks = j->o->rate_iops ? ms_to_tsc(1000) * j->nsubs / j->o->rate_iops : 0;
    }
    while (active) {
        active = 0;
        for (unsigned i = 0; i < j->nsubs; i++) {
            struct sub *s = &j->subs[i];
            vblk_poll(s->q, on_done, s);
            now = rdtsc();
            while (s->nfree && issue_one(s, now))
                ;
            vblk_kick(s->q);
            active |= s->inflight || !s->stop;
        }
        if ((int64_t)(now - next_watch) >= 0) {
            watchdog(j, now);
            next_watch = now + ms_to_tsc(WATCHDOG_MS);
        }
    }
}

/* ---- setup and results ---- */

static int setup_sub(struct job *j, struct sub *s, unsigned i, uint64_t nblocks)
{
    const struct job_opts *o = j->o;
    unsigned depth = o->iodepth;

    memset(s, 0, sizeof(*s));
    s->job = j;
    s->q = &j->dev->q[i];
    s->first = nblocks * i / j->nsubs;
    s->nblocks = nblocks * (i + 1) / j->nsubs - s->first;
    s->prng = (uint64_t)(o->seed ? o->seed : rdtsc()) * 0x9e3779b97f4a7c15ull + i + 1;
    if (vblk_queue_reserve(s->q, o->bs, depth) < 0)
        return -1;
    s->free = mem_alloc(sizeof(*s->free) * depth, 8);
    s->ss = mem_zalloc(sizeof(*s->ss) * depth, 64);
    s->hist = mem_zalloc(sizeof(*s->hist), 64);
    s->bufs = mem_alloc((size_t)depth * o->bs, 4096);
    if (!s->free || !s->ss || !s->hist || !s->bufs)
        fatal(EXIT_NOMEM, "job=%d: not enough guest RAM for iodepth=%u bs=%u "
              "(%lu MiB free)", j->index, depth, o->bs, mem_free_bytes() >> 20);
    for (unsigned k = 0; k < depth; k++)
        s->free[k] = (uint16_t)(depth - 1 - k);
    s->nfree = depth;
    /* Writes without verify still carry non-trivial data. */
    if (!o->verify && rw_writes(o->rw))
        for (unsigned k = 0; k < depth; k++)
            verify_fill(s->bufs + (size_t)k * o->bs, o->bs, k, 1, 1);
    return 0;
}

static void print_result(struct job *j, const char *queue, const struct hist *h,
                         uint64_t ios, uint64_t bytes, uint64_t ticks, uint64_t kicks,
                         uint64_t flushes, uint64_t errors, uint64_t verify_errors)
{
    const struct job_opts *o = j->o;
    uint64_t ms = tsc_to_ms(ticks), us = tsc_to_us(ticks);
    uint64_t iops = us ? ios * 1000000 / us : 0;
    uint64_t bw = us ? bytes / 1024 * 1000000 / us : 0;

    kprintf("BLKBENCH-RESULT job=%d dev=%d queue=%s rw=%s bs=%u iodepth=%u ios=%lu "
            "runtime_ms=%lu iops=%lu bw_kib=%lu lat_mean_ns=%lu lat_p50_ns=%lu "
            "lat_p99_ns=%lu lat_p999_ns=%lu lat_max_ns=%lu flushes=%lu kicks=%lu "
            "errors=%lu verify_errors=%lu\n",
            j->index, j->dev->index, queue, rw_name(o->rw), o->bs, o->iodepth, ios,
            ms, iops, bw, h->count ? tsc_to_ns(h->sum / h->count) : 0,
            tsc_to_ns(hist_percentile(h, 500)), tsc_to_ns(hist_percentile(h, 990)),
            tsc_to_ns(hist_percentile(h, 999)), tsc_to_ns(h->max), flushes, kicks,
            errors, verify_errors);
}

/* main_ticks and kicks: per sub-job, over the main phase only. */
static void report(struct job *j, const uint64_t *kicks, const uint64_t *main_ticks)
{
    struct hist *all = mem_zalloc(sizeof(*all), 64);
    uint64_t ios = 0, bytes = 0, ticks = 0, nkicks = 0, fl = 0, err = 0, verr = 0;

    for (unsigned i = 0; i < j->nsubs; i++) {
        struct sub *s = &j->subs[i];
        char q[8];
        uint64_t k = kicks[i];
        ksnprintf(q, sizeof(q), "%u", i);
        print_result(j, q, s->hist, s->ios, s->bytes, main_ticks[i], k, s->flushes,
                     s->errors, s->verify_errors);
        if (all)
            hist_merge(all, s->hist);
        ios += s->ios;
        bytes += s->bytes;
        ticks = MAX(ticks, main_ticks[i]);
        nkicks += k;
        fl += s->flushes;
        err += s->errors;
        verr += s->verify_errors;
    }
    if (j->nsubs > 1 && all)
        print_result(j, "all", all, ios, bytes, ticks, nkicks, fl, err, verr);
}

static void prepare(struct job *j, int index, const struct job_opts *o)
{
    memset(j, 0, sizeof(*j));
    j->index = index;
    j->o = o;
    if (o->dev >= vblk_count || vblk_devices[o->dev].broken)
        fatal(EXIT_DEVICE, "job=%d: dev=%d: no such working virtio-blk device "
              "(%d found)", index, o->dev, vblk_count);
    j->dev = &vblk_devices[o->dev];
    if (o->numjobs > j->dev->nqueues)
        fatal(EXIT_USAGE, "job=%d: numjobs=%u but dev=%d has %u queue(s)", index,
              o->numjobs, o->dev, j->dev->nqueues);
    if (rw_writes(o->rw) && j->dev->read_only)
        fatal(EXIT_USAGE, "job=%d: rw=%s on read-only dev=%d", index, rw_name(o->rw),
              o->dev);
    if (o->flush_every && !vpci_has(&j->dev->vp, VIRTIO_BLK_F_FLUSH))
        fatal(EXIT_USAGE, "job=%d: flush=%u but dev=%d does not offer FLUSH", index,
              o->flush_every, o->dev);
    if (o->offset >= j->dev->capacity)
        fatal(EXIT_USAGE, "job=%d: offset=%lu is beyond capacity %lu", index,
              o->offset, j->dev->capacity);
    uint64_t size = o->size ? o->size : j->dev->capacity - o->offset;
    if (size > j->dev->capacity - o->offset)
        fatal(EXIT_USAGE, "job=%d: offset+size=%lu is beyond capacity %lu", index,
              o->offset + size, j->dev->capacity);
    uint64_t nblocks = size / o->bs;
    j->nsubs = o->numjobs;
    if (nblocks < j->nsubs)
        fatal(EXIT_USAGE, "job=%d: size=%lu holds fewer than numjobs blocks of bs=%u",
              index, size, o->bs);
    j->timeout_ticks = ms_to_tsc(o->timeout_ms);
    if (o->verify) {
        int nomem;
        uint32_t seed = o->seed ? o->seed : (uint32_t)(rdtsc() * 0x9e3779b1u) | 1;
        j->vt = vtable_get(o->dev, o->offset, nblocks, o->bs, seed, rw_writes(o->rw),
                           &nomem);
        if (nomem)
            fatal(EXIT_NOMEM, "job=%d: not enough guest RAM for a %lu-block verify "
                  "table", index, nblocks);
        j->self_check = !j->vt;
        if (j->self_check)
            kprintf("BLKBENCH-INFO job=%d verify: no table for this region from an "
                    "earlier job; every block read must be a valid pattern block\n",
                    index);
    }
    for (unsigned i = 0; i < j->nsubs; i++)
        if (setup_sub(j, &j->subs[i], i, nblocks) < 0)
            fatal(EXIT_USAGE, "job=%d: cannot lay out queue %u", index, i);
}

static uint64_t sum_verify_pass(struct job *j, uint64_t *checked)
{
    uint64_t verr = 0;

    *checked = 0;
    for (unsigned i = 0; i < j->nsubs; i++) {
        verr += j->subs[i].verify_errors;
        *checked += j->subs[i].checked;
    }
    return verr;
}

int job_run(int index, const struct job_opts *o)
{
    struct job *j;
    uintptr_t mark = mem_mark();
    uint64_t kicks[VBLK_MAX_QUEUES], main_ticks[VBLK_MAX_QUEUES];
    int status = EXIT_OK;

    j = mem_alloc(sizeof(*j), 64);
    if (!j)
        fatal(EXIT_NOMEM, "job=%d: out of guest RAM", index);
    prepare(j, index, o);
    for (unsigned i = 0; i < j->nsubs; i++)
        kicks[i] = j->subs[i].q->vr.kicks;

    if (o->startdelay_ms) {
        kprintf("BLKBENCH-PHASE job=%d delay start\n", index);
        tsc_delay_ms(o->startdelay_ms);
    }
    const char *name = o->rw == RW_WRITE || o->rw == RW_RANDWRITE ? "write" : "run";
    kprintf("BLKBENCH-PHASE job=%d %s start\n", index, name);
    run_phase(j, PH_MAIN);
    for (unsigned i = 0; i < j->nsubs; i++) {
        main_ticks[i] = j->subs[i].t_last - j->subs[i].t_start;
        kicks[i] = j->subs[i].q->vr.kicks - kicks[i];
    }

    if (o->verify && j->vt && rw_writes(o->rw)) {
        uint64_t v0, checked0, v1, checked1, t0 = rdtsc();
        v0 = sum_verify_pass(j, &checked0);
        kprintf("BLKBENCH-PHASE job=%d verify start\n", index);
        run_phase(j, PH_VERIFY);
        v1 = sum_verify_pass(j, &checked1);
        kprintf("BLKBENCH-INFO job=%d verify blocks=%lu verify_errors=%lu runtime_ms=%lu\n",
                index, checked1 - checked0, v1 - v0, tsc_to_ms(rdtsc() - t0));
    } else if (o->verify) {
        uint64_t checked, verr = sum_verify_pass(j, &checked);
        kprintf("BLKBENCH-INFO job=%d verify blocks=%lu verify_errors=%lu\n", index,
                checked, verr);
    }
    kprintf("BLKBENCH-PHASE job=%d done\n", index);
    report(j, kicks, main_ticks);

    for (unsigned i = 0; i < j->nsubs; i++)
        if (j->subs[i].errors || j->subs[i].verify_errors)
            status = EXIT_JOB_ERROR;
    mem_release(mark);
    return status;
}
