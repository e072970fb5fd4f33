/*
 * Executor benchmark: the figures the anchors measure for Python's
 * concurrent.futures / multiprocessing.Pool and OpenMP, measured on pfor the
 * same way (2 workers, median of --reps).  One JSON object per line, like
 * the anchors:
 *   {"bench": "executors", "metric": ..., "value": ..., "unit": ..., "min": ..., "max": ...}
 *
 *   executor_bench [--reps N] [--workers W] [--n-tasks N] [--n-roundtrip N]
 *                  [--n-map N] [--prime-bound B] [--empty-n E]
 *
 * Never asserts on speed; it checks the answers (prime counts, map output)
 * and exits non-zero if one is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pfor/pfor.h"

#define MAXREPS 15

static int reps = 3, workers = 2;
static const char *only; /* run only the parts whose name contains this */

static bool want(const char *name)
{
    return !only || strstr(name, only);
}
static long n_tasks = 200000, n_roundtrip = 20000, n_map = 2000000, prime_bound = 3000000,
            empty_n = 10000000;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void emit(const char *metric, const double *v, const char *unit, const char *extra)
{
    double s[MAXREPS];
    memcpy(s, v, sizeof(double) * (size_t)reps);
    qsort(s, (size_t)reps, sizeof(double), cmp_d);
    double med = reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]);
    printf("{\"bench\": \"executors\", \"metric\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", "
           "\"min\": %.6g, \"max\": %.6g, \"reps\": %d, \"workers\": %d%s%s}\n",
           metric, med, unit, s[0], s[reps - 1], reps, workers, extra ? ", " : "",
           extra ? extra : "");
    fflush(stdout);
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "executor_bench: %s: %s\n", what, pf_strerror(rc));
    exit(1);
}

static int noop(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    return 0;
}

static int ident(pf_task *t, const void *arg, size_t len)
{
    return pf_task_set_result(t, arg, len);
}

static pf_executor *make(pf_kind kind, int w)
{
    pf_executor *ex;
    pf_executor_opts o = {.max_workers = w};
    int rc = pf_executor_create(&ex, kind, &o);
    if (rc)
        die("create", rc);
    /* warm up: start every worker */
    pf_future *fs[256];
    for (int i = 0; i < 256; i++)
        pf_submit(ex, noop, NULL, 0, &fs[i]);
    for (int i = 0; i < 256; i++) {
        pf_future_wait(fs[i], PF_FOREVER);
        pf_future_release(fs[i]);
    }
    return ex;
}

/* submit n empty tasks, then take every result (Python's submit_all). */
static void bench_submit_all(pf_kind kind, const char *tag)
{
    double v[MAXREPS];
    pf_future **fs = malloc((size_t)n_tasks * sizeof *fs);
    for (int r = 0; r < reps; r++) {
        pf_executor *ex = make(kind, workers);
        double t0 = now();
        for (long i = 0; i < n_tasks; i++) {
            int rc = pf_submit(ex, noop, NULL, 0, &fs[i]);
            if (rc)
                die("submit", rc);
        }
        for (long i = 0; i < n_tasks; i++) {
            int rc = pf_future_result(fs[i], PF_FOREVER, NULL, NULL);
            if (rc)
                die("result", rc);
            pf_future_release(fs[i]);
        }
        v[r] = (double)n_tasks / (now() - t0);
        pf_executor_destroy(ex);
    }
    free(fs);
    char metric[96], extra[64];
    snprintf(metric, sizeof metric, "%s_submit_all_then_result_throughput", tag);
    snprintf(extra, sizeof extra, "\"n\": %ld", n_tasks);
    emit(metric, v, "tasks/s", extra);
}

/* one task at a time: submit, wait for its result. */
static void bench_roundtrip(pf_kind kind, const char *tag)
{
    double v[MAXREPS];
    for (int r = 0; r < reps; r++) {
        pf_executor *ex = make(kind, workers);
        double t0 = now();
        for (long i = 0; i < n_roundtrip; i++) {
            pf_future *f;
            int rc = pf_submit(ex, noop, NULL, 0, &f);
            if (rc || (rc = pf_future_result(f, PF_FOREVER, NULL, NULL)))
                die("roundtrip", rc);
            pf_future_release(f);
        }
        v[r] = (now() - t0) / (double)n_roundtrip * 1e6;
        pf_executor_destroy(ex);
    }
    char metric[96], extra[64];
    snprintf(metric, sizeof metric, "%s_submit_result_roundtrip_latency", tag);
    snprintf(extra, sizeof extra, "\"n\": %ld", n_roundtrip);
    emit(metric, v, "us/task", extra);
}

struct map_check {
    long seen;
    int bad;
};

static int map_emit(void *user, size_t index, int status, const void *data, size_t len,
                    const char *msg)
{
    (void)msg;
    struct map_check *c = user;
    int64_t x;
    if (status || len != sizeof x)
        c->bad = 1;
    else if (memcpy(&x, data, sizeof x), x != (int64_t)index)
        c->bad = 1;
    c->seen++;
    return 0;
}

static void bench_map(pf_kind kind, const char *tag, size_t chunk, bool unordered)
{
    int64_t *items = malloc((size_t)n_map * sizeof *items);
    for (long i = 0; i < n_map; i++)
        items[i] = i;
    double v[MAXREPS];
    for (int r = 0; r < reps; r++) {
        pf_executor *ex = make(kind, workers);
        struct map_check c = {0, 0};
        pf_map_opts o = {.chunksize = chunk, .unordered = unordered};
        double t0 = now();
        int rc = pf_map_array(ex, ident, items, (size_t)n_map, sizeof *items, map_emit, &c, &o);
        v[r] = (double)n_map / (now() - t0);
        if (rc || c.seen != n_map || (c.bad && !unordered))
            die("map output", rc ? rc : PF_ECORRUPT);
        pf_executor_destroy(ex);
    }
    free(items);
    char metric[128], extra[96];
    snprintf(metric, sizeof metric, "%s_map%s_chunksize_%s_throughput", tag,
             unordered ? "_unordered" : "", chunk ? (chunk == 256 ? "256" : "?") : "auto");
    snprintf(extra, sizeof extra, "\"n\": %ld", n_map);
    emit(metric, v, "items/s", extra);
}

/* The OpenMP anchor's kernel, verbatim in behaviour: odd trial division. */
static inline int is_prime(long n)
{
    if (n < 2)
        return 0;
    if (n < 4)
        return 1;
    if ((n & 1) == 0)
        return 0;
    for (long d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return 0;
    return 1;
}

static int primes_body(size_t b, size_t e, const void *ctx, void *acc)
{
    (void)ctx;
    long c = 0;
    for (size_t n = b; n < e; n++)
        c += is_prime((long)n);
    *(long *)acc += c;
    return 0;
}

static void add_long(void *acc, const void *other)
{
    *(long *)acc += *(const long *)other;
}

static double primes_seconds(pf_kind kind, int w, pf_schedule sched, size_t chunk)
{
    pf_executor *ex = make(kind, w);
    long count = 0;
    pf_for_opts o = {.schedule = sched, .chunk = chunk, .grain = 1};
    double t0 = now();
    int rc = pf_parallel_reduce(ex, 2, (size_t)prime_bound, primes_body, NULL, 0, &count,
                                sizeof count, add_long, &o);
    double dt = now() - t0;
    if (rc || (prime_bound == 3000000 && count != 216816))
        die("primes count", rc ? rc : PF_ECORRUPT);
    pf_executor_destroy(ex);
    return dt;
}

static void bench_primes(pf_kind kind, const char *tag, pf_schedule sched, size_t chunk,
                         const char *sched_name)
{
    double one[MAXREPS], two[MAXREPS], speed[MAXREPS];
    for (int r = 0; r < reps; r++) {
        one[r] = primes_seconds(kind, 1, sched, chunk);
        two[r] = primes_seconds(kind, 2, sched, chunk);
        speed[r] = one[r] / two[r];
    }
    char metric[128], extra[128];
    snprintf(extra, sizeof extra, "\"bound\": %ld, \"schedule\": \"%s\"", prime_bound, sched_name);
    snprintf(metric, sizeof metric, "%s_primes_%s_1worker_seconds", tag, sched_name);
    emit(metric, one, "s", extra);
    snprintf(metric, sizeof metric, "%s_primes_%s_2worker_seconds", tag, sched_name);
    emit(metric, two, "s", extra);
    snprintf(metric, sizeof metric, "%s_primes_%s_2worker_speedup", tag, sched_name);
    emit(metric, speed, "x", extra);
}

/* Combining at the end: each item becomes {str(x): str(x)} (like the
 * anchor's worker returning a one-pair dict), merged into one local dict. */
static int pair_task(pf_task *t, const void *arg, size_t len)
{
    int64_t x;
    memcpy(&x, arg, sizeof x);
    (void)len;
    char key[24];
    int n = snprintf(key, sizeof key, "%lld", (long long)x);
    return pf_task_return_pair(t, key, (size_t)n, key, (size_t)n);
}

static void bench_combine(size_t chunk, const char *tag, long n)
{
    int64_t *items = malloc((size_t)n * sizeof *items);
    for (long i = 0; i < n; i++)
        items[i] = i;
    double v[MAXREPS];
    for (int r = 0; r < reps; r++) {
        pf_executor *ex = make(PF_PROCESSES, workers);
        pf_dict *d;
        if (pf_dict_open_local(&d, NULL))
            die("dict", PF_ENOMEM);
        pf_map_opts o = {.chunksize = chunk};
        double t0 = now();
        int rc =
            pf_dict_combine(d, ex, pair_task, items, (size_t)n, sizeof *items, PF_COMBINE_LAST, &o);
        v[r] = (double)n / (now() - t0);
        size_t len = 0;
        pf_dict_len(d, &len);
        if (rc || (long)len != n)
            die("combine", rc ? rc : PF_ECORRUPT);
        pf_dict_close(d);
        pf_executor_destroy(ex);
    }
    free(items);
    char metric[96], extra[64];
    snprintf(metric, sizeof metric, "processes_combine_%s_throughput", tag);
    snprintf(extra, sizeof extra, "\"n\": %ld", n);
    emit(metric, v, "items/s", extra);
}

/* The article's own shape: one future per item, then d.update(f.result()). */
static void bench_combine_futures(long n)
{
    double v[MAXREPS];
    pf_future **fs = malloc((size_t)n * sizeof *fs);
    for (int r = 0; r < reps; r++) {
        pf_executor *ex = make(PF_PROCESSES, workers);
        pf_dict *d;
        if (pf_dict_open_local(&d, NULL))
            die("dict", PF_ENOMEM);
        double t0 = now();
        for (long i = 0; i < n; i++) {
            int64_t x = i;
            int rc = pf_submit(ex, pair_task, &x, sizeof x, &fs[i]);
            if (rc)
                die("submit", rc);
        }
        for (long i = 0; i < n; i++) {
            int rc = pf_dict_merge_result(d, fs[i], PF_COMBINE_LAST);
            if (rc)
                die("merge", rc);
            pf_future_release(fs[i]);
        }
        v[r] = (double)n / (now() - t0);
        pf_dict_close(d);
        pf_executor_destroy(ex);
    }
    free(fs);
    char extra[64];
    snprintf(extra, sizeof extra, "\"n\": %ld", n);
    emit("processes_combine_submit_per_item_throughput", v, "items/s", extra);
}

static int empty_body(size_t b, size_t e, void *ctx)
{
    (void)ctx;
    for (size_t i = b; i < e; i++)
        __asm__ volatile("");
    return 0;
}

static void bench_empty_loop(void)
{
    double v[MAXREPS];
    for (int r = 0; r < reps; r++) {
        pf_executor *ex = make(PF_THREADS, workers);
        pf_for_opts o = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = 1, .grain = 1};
        double t0 = now();
        int rc = pf_parallel_for(ex, 0, (size_t)empty_n, empty_body, NULL, 0, &o);
        v[r] = (now() - t0) / (double)empty_n * 1e9;
        if (rc)
            die("empty loop", rc);
        pf_executor_destroy(ex);
    }
    char extra[64];
    snprintf(extra, sizeof extra, "\"n\": %ld, \"schedule\": \"dynamic,1\"", empty_n);
    emit("threads_empty_loop_dynamic1_ns_per_iter", v, "ns/iter", extra);
}

int main(int argc, char **argv)
{
    pf_init();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--n-tasks") && i + 1 < argc)
            n_tasks = atol(argv[++i]);
        else if (!strcmp(argv[i], "--n-roundtrip") && i + 1 < argc)
            n_roundtrip = atol(argv[++i]);
        else if (!strcmp(argv[i], "--n-map") && i + 1 < argc)
            n_map = atol(argv[++i]);
        else if (!strcmp(argv[i], "--prime-bound") && i + 1 < argc)
            prime_bound = atol(argv[++i]);
        else if (!strcmp(argv[i], "--empty-n") && i + 1 < argc)
            empty_n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--reps N] [--workers W] [--n-tasks N] [--n-roundtrip N] "
                    "[--n-map N] [--prime-bound B] [--empty-n E] [--only PART]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > MAXREPS)
        reps = 3;
    if (want("threads_submit"))
        bench_submit_all(PF_THREADS, "threads");
    if (want("threads_roundtrip"))
        bench_roundtrip(PF_THREADS, "threads");
    if (want("processes_submit"))
        bench_submit_all(PF_PROCESSES, "processes");
    if (want("processes_roundtrip"))
        bench_roundtrip(PF_PROCESSES, "processes");
    if (want("processes_map")) {
        bench_map(PF_PROCESSES, "processes", 256, true);
        bench_map(PF_PROCESSES, "processes", 256, false);
        bench_map(PF_PROCESSES, "processes", 0, false);
    }
    if (want("threads_primes")) {
        bench_primes(PF_THREADS, "threads", PF_SCHEDULE_DYNAMIC, 1, "dynamic1");
        bench_primes(PF_THREADS, "threads", PF_SCHEDULE_AUTO, 0, "auto");
    }
    if (want("processes_primes"))
        bench_primes(PF_PROCESSES, "processes", PF_SCHEDULE_AUTO, 0, "auto");
    if (want("empty_loop"))
        bench_empty_loop();
    if (want("combine")) {
        bench_combine_futures(20000);
        bench_combine(256, "map_chunksize_256", 200000);
        bench_combine(0, "map_auto", 200000);
    }
    pf_fini();
    return 0;
}
