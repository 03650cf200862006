/* options.c: the command-line parser; see options.h. */
#include "lib.h"
#include "options.h"
#include "serial.h"

#define MAX_WORD 128

static const char *const rw_names[] = {
    [RW_READ] = "read", [RW_WRITE] = "write", [RW_RANDREAD] = "randread",
    [RW_RANDWRITE] = "randwrite", [RW_RANDRW] = "randrw",
};

const char *rw_name(enum rw_mode rw)
{
    return rw_names[rw];
}

static const struct job_opts defaults = {
    .rw = RW_RANDREAD, .rwmixread = 50, .bs = 4096, .iodepth = 1,
    .numjobs = 1, .timeout_ms = 30000,
};

/* Decimal with an optional binary suffix k/m/g/t (and "b" or "ib" after it). */
static int parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (~0ull - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    unsigned shift = 0;
    switch (*p | 0x20) {
    case 'k': shift = 10; p++; break;
    case 'm': shift = 20; p++; break;
    case 'g': shift = 30; p++; break;
    case 't': shift = 40; p++; break;
    default: break;
    }
    if (shift && (*p | 0x20) == 'i')
        p++;
    if (*p && (*p | 0x20) == 'b')
        p++;
    if (*p || (shift && v >> (64 - shift)))
        return -1;
    *out = v << shift;
    return 0;
}

/* Seconds, or with a suffix: "ms", "s", "m". */
static int parse_time_ms(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (!*p || !strcmp(p, "s"))
        *out = v * 1000;
    else if (!strcmp(p, "ms"))
        *out = v;
    else if (!strcmp(p, "m"))
        *out = v * 60000;
    else
        return -1;
    return 0;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    return parse_size(s, out) < 0 || *out > max ? -1 : 0;
}

static int set_rw(struct job_opts *j, const char *v)
{
    for (unsigned i = 0; i < ARRAY_SIZE(rw_names); i++)
        if (!strcmp(v, rw_names[i])) {
            j->rw = (enum rw_mode)i;
            return 0;
        }
    return -1;
}

/* Apply key=value to j; -1 when the key is unknown or the value bad. */
static int set_option(struct job_opts *j, const char *key, const char *v)
{
    uint64_t n;

    if (!strcmp(key, "rw") || !strcmp(key, "readwrite"))
        return set_rw(j, v);
    if (!strcmp(key, "verify")) {
        if (strcmp(v, "pattern") && strcmp(v, "none") && strcmp(v, "0"))
            return -1;
        j->verify = !strcmp(v, "pattern");
        return 0;
    }
    if (!strcmp(key, "runtime"))
        return parse_time_ms(v, &j->runtime_ms);
    if (!strcmp(key, "timeout"))
        return parse_time_ms(v, &j->timeout_ms) < 0 || !j->timeout_ms ? -1 : 0;
    if (!strcmp(key, "startdelay"))
        return parse_time_ms(v, &j->startdelay_ms);
    if (!strcmp(key, "size"))
        return parse_size(v, &j->size);
    if (!strcmp(key, "offset"))
        return parse_size(v, &j->offset) < 0 || j->offset % 512 ? -1 : 0;
    if (!strcmp(key, "bs")) {
        if (parse_size(v, &n) < 0 || n < 512 || n % 512 || n > (16u << 20))
            return -1;
        j->bs = (uint32_t)n;
        return 0;
    }
    struct { const char *key; unsigned *dst; uint64_t min, max; } u[] = {
        { "rwmixread", &j->rwmixread, 0, 100 },
        { "iodepth", &j->iodepth, 1, 1024 },
        { "numjobs", &j->numjobs, 1, 16 },
        { "flush", &j->flush_every, 0, 1u << 30 },
        { "rate_iops", &j->rate_iops, 0, 100000000 },
    };
    for (unsigned i = 0; i < ARRAY_SIZE(u); i++)
        if (!strcmp(key, u[i].key)) {
            if (parse_uint(v, u[i].max, &n) < 0 || n < u[i].min)
                return -1;
            *u[i].dst = (unsigned)n;
            return 0;
        }
    if (!strcmp(key, "dev")) {
        if (parse_uint(v, 7, &n) < 0)
            return -1;
        j->dev = (int)n;
        return 0;
    }
    if (!strcmp(key, "seed")) {
        if (parse_uint(v, 0xffffffffu, &n) < 0)
            return -1;
        j->seed = (uint32_t)n;
        return 0;
    }
    return -1;
}

int options_parse(const char *cmdline, struct job_opts *jobs, int *njobs)
{
    const char *p = cmdline;
    int n = 0, words = 0;

    jobs[0] = defaults;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        char word[MAX_WORD];
        unsigned len = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (len + 1 >= sizeof(word)) {
                kprintf("BLKBENCH-ERROR command line: a word is longer than %u "
                        "characters\n", MAX_WORD - 1);
                return -1;
            }
            word[len++] = *p++;
        }
        word[len] = '\0';
        if (!strcmp(word, "--")) {
            if (words == 0)
                continue;           /* an empty job: ignore */
            if (++n == MAX_JOBS) {
                kprintf("BLKBENCH-ERROR command line: more than %d jobs\n", MAX_JOBS);
                return -1;
            }
            jobs[n] = defaults;
            words = 0;
            continue;
        }
        char *eq = word;
        while (*eq && *eq != '=')
            eq++;
        if (!*eq || eq == word || !eq[1]) {
            kprintf("BLKBENCH-ERROR command line: job %d: expected key=value, got \"%s\"\n",
                    n, word);
            return -1;
        }
        *eq = '\0';
        if (set_option(&jobs[n], word, eq + 1) < 0) {
            kprintf("BLKBENCH-ERROR command line: job %d: bad option %s=%s\n",
                    n, word, eq + 1);
            return -1;
        }
        words++;
    }
    *njobs = words ? n + 1 : n;
    return 0;
}
