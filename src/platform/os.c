/*
 * Small OS helpers: clocks, CPU and thread counts, panics.
 */
#include <dirent.h>
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
    /* Count the threads that still run.  A thread that was just joined may
     * linger in /proc as a zombie for a moment; it holds no locks. */
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* gone meanwhile */
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
            continue;
        n++;
    }
    closedir(d);
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
