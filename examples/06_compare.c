/*
 * Section 6 of the article, in C: "Comparing Performance of MultiProcessing,
 * MultiThreading (making API requests)".
 *
 * The same POST requests go to an API through a process pool, a thread pool
 * and, new here, one event-driven loop with many requests in flight, and
 * each is timed.  The API is pfor's mock, started in this process with
 * 50 ms of latency per request, so the example needs no network.
 *
 *   ./build/examples/06_compare          (about 5 s)
 *
 * `pfor compare` is the full version of this: the article's sizes, a
 * table, CSV/JSON and the graph (docs/compare.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pfor/pfor.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The article's post_req(data), on an executor: one task per request.
 * Each worker's initializer opens the worker's HTTP client once (one
 * connection, kept alive); the task returns the status.  Returns how many
 * requests got 201. */
static int post_all(pf_kind kind, const pf_http_config *cfg, uint64_t n)
{
    pf_executor_opts o = {.max_workers = PF_DEFAULT_WORKERS, /* Python's defaults */
                          .initializer = pf_http_worker_init,
                          .finalizer = pf_http_worker_fini,
                          .init_arg = cfg,
                          .init_arg_len = sizeof *cfg};
    pf_executor *ex;
    if (pf_executor_create(&ex, kind, &o) != 0)
        return -1;
    pf_future **fs = calloc(n, sizeof *fs);
    for (uint64_t i = 0; i < n; i++) /* executor.submit(post_req, data) */
        pf_submit(ex, pf_http_post_task, &i, sizeof i, &fs[i]);
    int ok = 0;
    for (uint64_t i = 0; i < n; i++) { /* future.result() */
        const void *res;
        size_t len;
        if (pf_future_result(fs[i], PF_FOREVER, &res, &len) == 0 &&
            ((const pf_http_record *)res)->status == 201)
            ok++;
        pf_future_release(fs[i]);
    }
    free(fs);
    pf_executor_destroy(ex); /* the end of the `with` block */
    return ok;
}

/* The same requests from one thread, all in flight at once. */
static int post_all_event_driven(const pf_http_config *cfg, uint64_t n)
{
    pf_http_record *recs = calloc(n, sizeof *recs);
    int ok = 0;
    if (pf_http_run_multi(cfg, n, 500, NULL, recs) == 0)
        for (uint64_t i = 0; i < n; i++)
            ok += recs[i].status == 201;
    free(recs);
    return ok;
}

int main(void)
{
    /* First, while the program has one thread: process pools fork their
     * workers from a server started here (the mock API starts threads). */
    if (pf_init() != 0)
        return 1;

    pf_serve_opts so = {.latency_min = 0.050, .latency_max = 0.050};
    pf_server *srv;
    if (pf_server_start(&srv, &so) != 0) {
        fprintf(stderr, "cannot start the mock API\n");
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/users", pf_server_port(srv));
    pf_http_config cfg;
    pf_http_config_init(&cfg, url); /* body: {"id": N, "name": "item-N", "tags": [...]} */

    printf("POST %s, 50 ms per request; processes: %d workers, threads: %d\n\n", url,
           pf_default_workers(PF_PROCESSES), pf_default_workers(PF_THREADS));
    printf("%9s %12s %12s %12s\n", "requests", "processes", "threads", "event");
    const uint64_t sizes[] = {5, 10, 50, 100}; /* the article goes on to 10,000 */
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        double t0 = now();
        int ok_p = post_all(PF_PROCESSES, &cfg, n);
        double t1 = now();
        int ok_t = post_all(PF_THREADS, &cfg, n);
        double t2 = now();
        int ok_e = post_all_event_driven(&cfg, n);
        double t3 = now();
        printf("%9llu %10.3f s %10.3f s %10.3f s", (unsigned long long)n, t1 - t0, t2 - t1,
               t3 - t2);
        if ((uint64_t)ok_p != n || (uint64_t)ok_t != n || (uint64_t)ok_e != n)
            printf("   (201s: %d, %d, %d)", ok_p, ok_t, ok_e);
        printf("\n");
    }
    printf("\nThe threads win over the processes only because they are more (I/O waits,\n"
           "not CPU); one event loop with every request in flight beats both.\n");
    pf_server_stop(srv);
    return 0;
}
