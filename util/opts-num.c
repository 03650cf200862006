/*
 * Sizes and integers from the command line, and sizes for people, with
 * qemu-img's rules (declared in util/opts.h).  The rules were checked
 * against qemu-img 7.2 by hand; where this differs, it is on purpose:
 *  - "0x10k" (a suffix on hex) is refused, as QEMU 8 refuses it (7.2
 *    took it with a deprecation warning);
 *  - fractions are exact: qemu-img goes through a double, which is off by
 *    up to a few hundred bytes with the E suffix ("7.9E" is ...110 here,
 *    ...136 there; 7.9 * 2^60 is ...110.4), a fraction of a byte with P,
 *    and much less below, where the two agree but on pathological
 *    inputs ("1.9999999999999999999k" is 2048 here, 1024 in 7.2);
 *  - a number too big with a suffix is -ERANGE as in newer QEMU (7.2 said
 *    -EINVAL).
 */
#include "util/opts.h"

#include <ctype.h>
#include <stdio.h>

/* The value of c as a digit in base (10 or 16), or -1. */
static int digit_value(char c, unsigned base)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (base == 16 && isxdigit((unsigned char)c)) {
        return tolower((unsigned char)c) - 'a' + 10;
    }
    return -1;
}

/*
 * The digits at *p in base, at least one (-EINVAL if none, *p unmoved).
 * On overflow all digits are still consumed, so that the caller can tell
 * trailing garbage (-EINVAL) from a number too big (-ERANGE).
 */
static int read_digits(const char **p, unsigned base, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    bool overflow = false;
    int d;

    for (; (d = digit_value(*s, base)) >= 0; s++) {
        if (v > (UINT64_MAX - (unsigned)d) / base) {
            overflow = true;
        } else {
            v = v * base + (unsigned)d;
        }
    }
    if (s == *p) {
        return -EINVAL;
    }
    *p = s;
    *out = v;
    return overflow ? -ERANGE : 0;
}

/* A whole string of decimal, or hex after 0x, digits. */
static int parse_unsigned(const char *s, uint64_t *out)
{
    unsigned base = 10;
    uint64_t v;
    int ret;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    ret = read_digits(&s, base, &v);
    if (ret == -EINVAL || *s) {
        return -EINVAL;
    }
    *out = v;   /* callers keep their own output untouched on -ERANGE */
    return ret;
}

int parse_uint64(const char *str, uint64_t *out)
{
    uint64_t v;
    int ret = parse_unsigned(str, &v);

    if (ret == 0) {
        *out = v;
    }
    return ret;
}

int parse_int64(const char *str, int64_t *out)
{
    bool neg = str[0] == '-';
    uint64_t v;
    int ret = parse_unsigned(str + neg, &v);

    if (ret < 0) {
        return ret;
    }
    if (v > (uint64_t)INT64_MAX + neg) {
        return -ERANGE;
    }
    /* -(int64_t)v would overflow for INT64_MIN; negate in unsigned instead. */
    *out = neg ? (int64_t)(~v + 1) : (int64_t)v;
    return 0;
}

/* log2 of the multiplier a size suffix stands for, or -1. */
static int suffix_shift(char c)
{
    switch (tolower((unsigned char)c)) {
    case 'b':
        return 0;
    case 'k':
        return 10;
    case 'm':
        return 20;
    case 'g':
        return 30;
    case 't':
        return 40;
    case 'p':
        return 50;
    case 'e':
        return 60;
    default:
        return -1;
    }
}

/*
 * 0.<digits> * 2^shift rounded to the nearest integer, half up, exactly:
 * double the decimal fraction shift times, collecting what carries out
 * of it, then round on the first digit left.
 */
static uint64_t scale_fraction(const char *digits, size_t n, unsigned shift)
{
    uint8_t *d = xmalloc(n ? n : 1);
    uint64_t whole = 0;

    for (size_t i = 0; i < n; i++) {
        d[i] = (uint8_t)(digits[i] - '0');
    }
    for (unsigned k = 0; k < shift; k++) {
        unsigned carry = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned v = d[i] * 2u + carry;
            d[i] = (uint8_t)(v % 10);
            carry = v / 10;
        }
        whole = whole * 2 + carry;
    }
    bool round_up = n > 0 && d[0] >= 5;
    free(d);
    return whole + round_up;
}

/* "0x..." after the sign: hex digits to the end, nothing else. */
static int parse_hex_size(const char *p, uint64_t *out)
{
    uint64_t v;
    int ret = read_digits(&p, 16, &v);

    if (ret == -EINVAL || *p) {
        return -EINVAL;
    }
    if (ret < 0 || v > INT64_MAX) {
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int parse_size(const char *str, uint64_t *out)
{
    const char *p = str, *frac = "";
    size_t frac_len = 0;
    uint64_t whole;
    int shift = 0;

    /* Blanks and '+' in front are what strtoull takes, and so qemu-img. */
    while (isspace((unsigned char)*p)) {
        p++;
    }
    p += *p == '+';
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        return parse_hex_size(p + 2, out);
    }
    int ret = read_digits(&p, 10, &whole);
    if (ret == -EINVAL) {
        return -EINVAL;
    }
    if (*p == '.') {
        frac = ++p;
        frac_len = strspn(p, "0123456789");
        p += frac_len;
    }
    if (*p) {
        shift = suffix_shift(*p);
        if (shift < 0 || p[1]) {
            return -EINVAL;
        }
    }
    bool has_fraction = strspn(frac, "0") < frac_len;
    if (has_fraction && shift == 0) {
        return -EINVAL;   /* a fraction of a byte */
    }
    if (ret < 0 || whole > (uint64_t)INT64_MAX >> shift) {
        return -ERANGE;
    }
    uint64_t v = whole << shift;
    if (has_fraction) {
        uint64_t f = scale_fraction(frac, frac_len, (unsigned)shift);
        if (f > (uint64_t)INT64_MAX - v) {
            return -ERANGE;
        }
        v += f;
    }
    *out = v;
    return 0;
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)bytes;
    unsigned i = 0;

    /*
     * Step up a unit once the number reaches 1000 of the current one, so
     * 1000 MiB reads "0.977 GiB" as in qemu-img, not "1e+03 MiB".  Both
     * sides are doubles as there, so the choice matches near 2^64 too.
     */
    while (i + 1 < ARRAY_SIZE(units) && v >= 1000.0 * (double)(1ULL << (10 * i))) {
        i++;
    }
    snprintf(buf, len, "%.3g %s", v / (double)(1ULL << (10 * i)), units[i]);
}
