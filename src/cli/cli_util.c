/*
 * Argument parsing shared by the subcommands.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void pf_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("pfor: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(PF_CLI_EXIT_USAGE);
}

/* A plain decimal at the start of s: digits, then optionally '.' and
 * digits; *end after it.  strtod alone would also take leading spaces, a
 * sign, hex, exponents, "inf" and "nan".  0 or -1. */
static int parse_decimal(const char *s, double *v, const char **end)
{
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s)
        return -1;
    if (*p == '.') {
        const char *frac = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == frac)
            return -1;
    }
    char buf[64];
    if ((size_t)(p - s) >= sizeof buf)
        return -1;
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = '\0';
    errno = 0;
    *v = strtod(buf, NULL);
    if (errno || !isfinite(*v))
        return -1;
    *end = p;
    return 0;
}

int pf_cli_parse_duration(const char *s, double *seconds)
{
    if (!s)
        return -1;
    const char *end;
    double v;
    if (parse_decimal(s, &v, &end) != 0)
        return -1;
    double unit;
    if (*end == '\0' || strcmp(end, "s") == 0)
        unit = 1.0;
    else if (strcmp(end, "ms") == 0)
        unit = 1e-3;
    else if (strcmp(end, "us") == 0)
        unit = 1e-6;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        unit = 60.0;
    else
        return -1;
    v *= unit;
    if (v > 86400.0) /* a day is more than any latency or timeout we mean */
        return -1;
    *seconds = v;
    return 0;
}

int pf_cli_parse_latency(const char *s, double *lo, double *hi)
{
    if (!s)
        return -1;
    const char *dots = strstr(s, "..");
    if (!dots) {
        if (pf_cli_parse_duration(s, lo) != 0)
            return -1;
        *hi = *lo;
        return 0;
    }
    char first[64];
    size_t n = (size_t)(dots - s);
    if (n == 0 || n >= sizeof first)
        return -1;
    memcpy(first, s, n);
    first[n] = '\0';
    double a, b;
    if (pf_cli_parse_duration(first, &a) != 0 || pf_cli_parse_duration(dots + 2, &b) != 0 || a > b)
        return -1;
    *lo = a;
    *hi = b;
    return 0;
}

int pf_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int pf_cli_parse_u64_list(const char *s, uint64_t min, uint64_t max, uint64_t *out, size_t cap,
                          size_t *n)
{
    if (!s || !*s)
        return -1;
    size_t count = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item || count == cap)
            return -1;
        memcpy(item, p, len);
        item[len] = '\0';
        if (pf_cli_parse_u64(item, min, max, &out[count]) != 0)
            return -1;
        count++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *n = count;
    return 0;
}

int pf_cli_parse_fraction(const char *s, double *out)
{
    if (!s)
        return -1;
    const char *end;
    double v;
    if (parse_decimal(s, &v, &end) != 0)
        return -1;
    if (strcmp(end, "%") == 0)
        v /= 100.0;
    else if (*end != '\0')
        return -1;
    if (v < 0 || v > 1)
        return -1;
    *out = v;
    return 0;
}
