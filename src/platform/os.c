/*
 * Small OS helpers: clocks, CPU and thread counts, panics.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void pf__panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "pfor: internal invariant broken at %s:%d: %s (errno %d)\n", file, line, what,
            errno);
    abort();
}

uint64_t pf__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t pf__deadline_ns(double timeout_s)
{
    if (timeout_s < 0 || isnan(timeout_s) || timeout_s > 1e9)
        return UINT64_MAX;
    return pf__now_ns() + (uint64_t)(timeout_s * 1e9);
}

int pf__ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int pf__thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 0;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Threads:", 8) == 0) {
            n = atoi(line + 8);
            break;
        }
    }
    fclose(f);
    return n;
}

void pf__strlcpy(char *dst, const char *src, size_t size)
{
    if (size == 0)
        return;
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}
