/*
 * mpi_bench: the PF_MPI executor next to the process pool, in one run, on
 * this machine (bench/mpi_bench.sh runs it under mpirun).
 *
 *   mpirun -n R mpi_bench [--tasks N] [--reps K] [--only empty|sleep|primes]
 *
 * Rank 0 measures, for the MPI executor (R - 1 worker ranks, one thread
 * each) and for a process pool of R - 1 workers:
 *   - empty tasks: submit N, then wait for all; tasks/s;
 *   - tasks that sleep 1, 5 and 20 ms: wall time for N tasks (the ideal is
 *     ceil(N / workers) x duration); the MPI / processes ratio;
 *   - the primes kernel in 64 tasks: wall time.
 * One JSON line per figure (median of K).  Checks the answers, never the
 * speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pfor/mpi.h"
#include "pfor/pfor.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int empty(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    return 0;
}
PF_REGISTER(empty)

static int sleeper(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    int32_t us = 0;
    if (len == sizeof us)
        memcpy(&us, arg, sizeof us);
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    return 0;
}
PF_REGISTER(sleeper)

static int primes(pf_task *t, const void *arg, size_t len)
{
    uint64_t r[2];
    if (len != sizeof r)
        return pf_task_fail(t, PF_EINVAL, "bad range");
    memcpy(r, arg, sizeof r);
    uint64_t c = 0;
    for (uint64_t n = r[0]; n < r[1]; n++) {
        int p = n >= 2;
        for (uint64_t d = 2; p && d * d <= n; d++)
            p = n % d != 0;
        c += (uint64_t)p;
    }
    return pf_task_set_result(t, &c, sizeof c);
}
PF_REGISTER(primes)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Run n tasks of fn(arg) on a fresh executor; wall seconds, pool start included
 * for neither (created before the clock starts). */
static double run(pf_kind kind, int workers, pf_task_fn fn, const void *arg, size_t len, int n,
                  uint64_t *sum)
{
    pf_executor_opts o = PF_EXECUTOR_OPTS_DEFAULT;
    o.max_workers = workers;
    pf_executor *ex;
    if (pf_executor_create(&ex, kind, &o) != PF_OK) {
        fprintf(stderr, "cannot create %s\n", pf_kind_name(kind));
        exit(1);
    }
    /* warm up: every worker started */
    for (int i = 0; i < 4 * workers; i++) {
        pf_future *f;
        pf_submit(ex, empty, NULL, 0, &f);
        pf_future_wait(f, PF_FOREVER);
        pf_future_release(f);
    }
    pf_future **fs = malloc((size_t)n * sizeof *fs);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        const void *a = arg;
        uint64_t range[2];
        if (fn == primes) {
            range[0] = (uint64_t)i * 2000000 / (uint64_t)n;
            range[1] = (uint64_t)(i + 1) * 2000000 / (uint64_t)n;
            a = range;
            len = sizeof range;
        }
        if (pf_submit(ex, fn, a, len, &fs[i]) != PF_OK)
            exit(1);
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const void *d;
        size_t dl;
        if (pf_future_result(fs[i], PF_FOREVER, &d, &dl) != PF_OK)
            exit(1);
        if (dl == sizeof(uint64_t)) {
            uint64_t v;
            memcpy(&v, d, sizeof v);
            total += v;
        }
        pf_future_release(fs[i]);
    }
    double dt = now() - t0;
    free(fs);
    pf_executor_destroy(ex);
    if (sum)
        *sum = total;
    return dt;
}

static void emit(const char *metric, double v, const char *unit, int workers, int n)
{
    printf("{\"bench\": \"mpi\", \"metric\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", "
           "\"workers\": %d, \"n\": %d}\n",
           metric, v, unit, workers, n);
    fflush(stdout);
}

static double median_run(int reps, pf_kind kind, int w, pf_task_fn fn, const void *arg, size_t len,
                         int n)
{
    double v[32];
    for (int r = 0; r < reps; r++) {
        uint64_t sum = 0;
        v[r] = run(kind, w, fn, arg, len, n, &sum);
        if (fn == primes && sum != 148933) {
            fprintf(stderr, "primes: got %llu\n", (unsigned long long)sum);
            exit(1);
        }
    }
    qsort(v, (size_t)reps, sizeof *v, cmp_double);
    return v[reps / 2];
}

int main(int argc, char **argv)
{
    pf_init(); /* the fork server before MPI's threads */
    if (pf_mpi_init(&argc, &argv, NULL) != PF_OK)
        return 1;
    int n = 20000, reps = 3;
    const char *only = NULL; /* "empty", "sleep" or "primes": one measure */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
    }
    if (reps < 1 || reps > 31 || n < 1)
        return 2;
    int w = pf_mpi_size() - 1;
    if (w < 1) {
        fprintf(stderr, "run under mpirun with 2 ranks or more\n");
        return 2;
    }
    const pf_kind kinds[2] = {PF_MPI, PF_PROCESSES};
    const char *tag[2] = {"mpi", "processes"};
    for (int k = 0; k < 2 && (!only || !strcmp(only, "empty")); k++) {
        double s = median_run(reps, kinds[k], w, empty, NULL, 0, n);
        char m[96];
        snprintf(m, sizeof m, "%s_empty_tasks_per_s", tag[k]);
        emit(m, n / s, "tasks/s", w, n);
    }
    static const int32_t durations_us[] = {1000, 5000, 20000};
    for (size_t d = 0; d < 3 && (!only || !strcmp(only, "sleep")); d++) {
        int32_t us = durations_us[d];
        int nt = (int)(2000000 / us) * w / 2; /* about a second of work per worker... */
        if (nt < 4 * w)
            nt = 4 * w;
        for (int k = 0; k < 2; k++) {
            double s = median_run(reps, kinds[k], w, sleeper, &us, sizeof us, nt);
            char m[96];
            snprintf(m, sizeof m, "%s_sleep_%dms_seconds", tag[k], us / 1000);
            emit(m, s, "s", w, nt);
            snprintf(m, sizeof m, "%s_sleep_%dms_efficiency", tag[k], us / 1000);
            double ideal = (double)((nt + w - 1) / w) * us / 1e6;
            emit(m, ideal / s, "ideal/measured", w, nt);
        }
    }
    for (int k = 0; k < 2 && (!only || !strcmp(only, "primes")); k++) {
        double s = median_run(reps, kinds[k], w, primes, NULL, 0, 64);
        char m[96];
        snprintf(m, sizeof m, "%s_primes_2M_seconds", tag[k]);
        emit(m, s, "s", w, 64);
    }
    pf_mpi_finalize();
    return 0;
}
