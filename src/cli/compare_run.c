/*
 * `pfor compare`: one measurement at a time.
 *
 * HTTP on an executor is the article's loop, written with pfor: create the
 * executor (each worker's initializer makes its curl handle), submit one
 * pf_http_post_task per request, take the futures as they complete, shut
 * the executor down.  The wall time covers all of that, like the Python
 * anchors' `with ...Executor() as ex:` block.  The event-driven mode is one
 * call to pf_http_run_multi.  The CPU workload counts primes in ranges.
 *
 * The progress bar is drawn from the executor's counters
 * (pf_executor_progress) by the thread that waits for the results, at most
 * ten times a second, and only when stderr is a terminal.  That thread
 * sleeps otherwise: a done-callback per future counts down and wakes it
 * once at the end (struct countdown).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compare.h"

const char *const cmp_exec_names[CMP_N_EXEC] = {"sequential", "processes", "threads", "event",
                                                "mpi"};

double cmp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- the progress bar ---------------------------------------------------- */

void cmp_progress_draw(struct cmp_progress *p, uint64_t done, uint64_t total, uint64_t failed,
                       bool force)
{
    if (!p->enabled)
        return;
    uint64_t now = (uint64_t)(cmp_now() * 1e9);
    if (!force && now - p->last_ns < 100000000u)
        return;
    p->last_ns = now;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    size_t fill = total ? (size_t)(done * WIDTH / total) : WIDTH;
    for (size_t i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r\033[K  %s [%s] %llu/%llu", p->label, bar, (unsigned long long)done,
            (unsigned long long)total);
    if (failed)
        fprintf(stderr, ", %llu failed", (unsigned long long)failed);
    fflush(stderr);
}

void cmp_progress_clear(struct cmp_progress *p)
{
    if (!p->enabled)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
}

/* --- helpers ------------------------------------------------------------- */

int cmp_default_workers(const struct cmp_config *c, enum cmp_exec exec)
{
    switch (exec) {
    case CMP_SEQUENTIAL:
        return 1;
    case CMP_PROCESSES:
        return pf_default_workers(PF_PROCESSES);
    case CMP_THREADS:
        return pf_default_workers(PF_THREADS);
    case CMP_MPI:
        return cmp_mpi_workers();
    default:
        return (int)c->in_flight;
    }
}

size_t cmp_worker_list_asked(const struct cmp_config *c, enum cmp_exec exec, uint64_t *out)
{
    if (exec == CMP_SEQUENTIAL) {
        out[0] = 1;
        return 1;
    }
    if (exec == CMP_MPI) { /* the job's ranks decide: one line, none without mpirun */
        out[0] = (uint64_t)cmp_mpi_workers();
        return out[0] ? 1 : 0;
    }
    if (c->n_workers && (exec != CMP_EVENT || c->event_uses_workers)) {
        memcpy(out, c->workers, c->n_workers * sizeof *out);
        return c->n_workers;
    }
    if (c->workload == CMP_CPU) {
        int cores = pf_default_workers(PF_PROCESSES);
        size_t n = 0;
        for (int w = 1; w <= 2 * cores && n < CMP_MAX_WORKERS; w++)
            out[n++] = (uint64_t)w;
        return n;
    }
    out[0] = (uint64_t)cmp_default_workers(c, exec);
    return 1;
}

/* Descriptors below the limit kept for everything else: stdio, the fork
 * server's channel, the server's epoll and listening sockets, the timer,
 * a pool's memfd and eventfd (about 16 measured), with room to spare. */
#define FD_RESERVE 64

uint64_t cmp_conn_cap(const struct cmp_config *c, enum cmp_exec exec)
{
    if (c->workload != CMP_HTTP || c->fd_limit == 0)
        return UINT64_MAX;
    /* Descriptors one worker (event: one transfer) holds in this process,
     * counted in /proc/PID/fd with libcurl 7.88: a thread has its
     * connection and the wake-up socket pair of its client's multi handle
     * (3); an event transfer
     * its connection (1); a process's connection is in the worker (0).
     * The built-in server holds the other end of each connection here. */
    uint64_t per, reserve = FD_RESERVE;
    switch (exec) {
    case CMP_THREADS:
        per = 3;
        break;
    case CMP_EVENT:
        per = 1;
        reserve += 4 * c->event_loops; /* each loop's epoll and multi handle */
        break;
    case CMP_PROCESSES:
        per = 0;
        break;
    default: /* sequential: one connection; mpi: the ranks' are elsewhere */
        return UINT64_MAX;
    }
    if (c->builtin)
        per++;
    if (per == 0)
        return UINT64_MAX;
    uint64_t room = c->fd_limit > reserve + 32 ? c->fd_limit - reserve : 32;
    uint64_t cap = room / per;
    return cap > 0 ? cap : 1;
}

size_t cmp_worker_list(const struct cmp_config *c, enum cmp_exec exec, uint64_t *out)
{
    uint64_t asked[CMP_MAX_WORKERS];
    size_t n_asked = cmp_worker_list_asked(c, exec, asked);
    uint64_t cap = cmp_conn_cap(c, exec);
    size_t n = 0;
    for (size_t i = 0; i < n_asked; i++) {
        uint64_t w = asked[i] < cap ? asked[i] : cap;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = out[k] == w;
        if (!dup)
            out[n++] = w;
    }
    return n;
}

static pf_kind kind_of(enum cmp_exec e)
{
    switch (e) {
    case CMP_SEQUENTIAL:
        return PF_SEQUENTIAL;
    case CMP_PROCESSES:
        return PF_PROCESSES;
    case CMP_MPI:
        return PF_MPI;
    default:
        return PF_THREADS;
    }
}

void cmp_reason_add(struct cmp_results *res, int code, int task_code, const char *message,
                    const char *where)
{
    for (size_t i = 0; i < res->n_reasons; i++) {
        struct cmp_reason *r = &res->reasons[i];
        if (r->code == code && r->task_code == task_code) {
            r->count++;
            return;
        }
    }
    if (res->n_reasons == CMP_MAX_REASONS) {
        res->other_failures++;
        return;
    }
    struct cmp_reason *r = &res->reasons[res->n_reasons++];
    r->code = code;
    r->task_code = task_code;
    r->count = 1;
    snprintf(r->where, sizeof r->where, "%s", where);
    snprintf(r->message, sizeof r->message, "%s", message);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles of the n latencies (sorted in place). */
static void percentiles(double *lat, size_t n, struct cmp_row *row)
{
    if (n == 0)
        return;
    qsort(lat, n, sizeof *lat, cmp_double);
    size_t i50 = (size_t)ceil(0.50 * (double)n) - 1;
    size_t i99 = (size_t)ceil(0.99 * (double)n) - 1;
    row->p50_ms = lat[i50] * 1e3;
    row->p99_ms = lat[i99] * 1e3;
}

static void row_init(struct cmp_row *row, enum cmp_exec exec, int workers, uint64_t n)
{
    *row = (struct cmp_row){.exec = exec,
                            .workers = workers,
                            .n = n,
                            .p50_ms = NAN,
                            .p99_ms = NAN,
                            .ideal_s = NAN,
                            .efficiency = NAN,
                            .speedup = NAN};
}

static void where_of(char *buf, size_t size, enum cmp_exec exec, int workers, uint64_t n)
{
    snprintf(buf, size, "%s, %d %s, N=%llu", cmp_exec_names[exec], workers,
             exec == CMP_EVENT ? "in flight" : "workers", (unsigned long long)n);
}

/*
 * Waiting for a measurement's futures.  A done-callback counts them down and
 * wakes the waiting thread once, when the last one finishes (or every 0.1 s
 * to draw the progress bar), rather than once per future: at tens of
 * thousands of requests a second, per-future wake-ups of a collector would
 * cost the pool a noticeable share of two cores.
 */
struct countdown {
    pthread_mutex_t lock;
    pthread_cond_t all_done; /* on the monotonic clock */
    _Atomic uint64_t left;   /* futures not finished, plus one until armed */
    bool done;               /* lock */
};

static void countdown_init(struct countdown *cd)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&cd->all_done, &a);
    pthread_condattr_destroy(&a);
    pthread_mutex_init(&cd->lock, NULL);
    atomic_init(&cd->left, 1); /* the guard: released by countdown_wait */
    cd->done = false;
}

static void countdown_release(struct countdown *cd)
{
    /* acq_rel: the last release sees every other's, and the waiter that
     * reads `done` under the lock sees the whole count. */
    if (atomic_fetch_sub_explicit(&cd->left, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_lock(&cd->lock);
        cd->done = true;
        pthread_cond_signal(&cd->all_done);
        pthread_mutex_unlock(&cd->lock);
    }
}

static void on_future_done(pf_future *f, void *user)
{
    (void)f;
    countdown_release(user);
}

/* Count f (call before it can finish its callback). */
static void countdown_watch(struct countdown *cd, pf_future *f)
{
    atomic_fetch_add_explicit(&cd->left, 1, memory_order_relaxed);
    if (pf_future_add_done_callback(f, on_future_done, cd) != PF_OK) {
        (void)pf_future_wait(f, PF_FOREVER); /* cannot happen on a live future */
        countdown_release(cd);
    }
}

/* Wait until every watched future has finished, drawing the bar from ex's
 * counters meanwhile; then free the countdown. */
static void countdown_wait(struct countdown *cd, pf_executor *ex, uint64_t total,
                           struct cmp_progress *pb)
{
    countdown_release(cd); /* the guard */
    pthread_mutex_lock(&cd->lock);
    while (!cd->done) {
        if (!pb->enabled) {
            pthread_cond_wait(&cd->all_done, &cd->lock);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        (void)pthread_cond_timedwait(&cd->all_done, &cd->lock, &ts);
        pf_progress p;
        if (!cd->done && pf_executor_progress(ex, &p) == PF_OK)
            cmp_progress_draw(pb, p.done, total, p.failed, false);
    }
    pthread_mutex_unlock(&cd->lock);
    pthread_cond_destroy(&cd->all_done);
    pthread_mutex_destroy(&cd->lock);
}

/* Every task of a measurement is submitted: shut ex down at once, as
 * Python's `with` block does when its body ends, so that workers left
 * without a task leave (an HTTP worker runs its finalizer) while the last
 * tasks still run; wait for the watched futures, then destroy ex. */
static void finish_pool(struct countdown *cd, pf_executor *ex, uint64_t total,
                        struct cmp_progress *pb)
{
    (void)pf_executor_shutdown(ex, false, false);
    countdown_wait(cd, ex, total, pb);
    pf_executor_destroy(ex);
}

/* --- HTTP ---------------------------------------------------------------- */

struct event_progress {
    struct cmp_progress *pb;
    uint64_t total;
};

static void on_event_progress(size_t done, size_t failed, void *user)
{
    struct event_progress *ep = user;
    cmp_progress_draw(ep->pb, done, ep->total, failed, done == ep->total);
}

static void fail_all(struct cmp_results *res, struct cmp_row *row, uint64_t n, int code,
                     const char *message, const char *where)
{
    for (uint64_t i = 0; i < n; i++)
        cmp_reason_add(res, code, 0, message, where);
    row->errors = n;
}

static void run_event(const struct cmp_config *c, int in_flight, uint64_t n, struct cmp_row *row,
                      struct cmp_results *res, struct cmp_progress *pb, double *lat, size_t *n_lat,
                      const char *where)
{
    pf_http_record *recs = calloc(n ? n : 1, sizeof *recs);
    if (!recs) {
        fail_all(res, row, n, PF_ENOMEM, "out of memory", where);
        return;
    }
    struct event_progress ep = {pb, n};
    /* Without a bar to draw, no progress calls: the loops then keep no
     * shared counts (one lock less per request). */
    pf_http_multi_opts mo = {.progress = pb->enabled ? on_event_progress : NULL,
                             .progress_user = &ep,
                             .threads = (int)c->event_loops};
    double t0 = cmp_now();
    int rc = pf_http_run_multi(&c->http, n, (size_t)in_flight, &mo, recs);
    row->wall_s = cmp_now() - t0;
    if (rc != PF_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "the event-driven loop failed: %s", pf_strerror(rc));
        fail_all(res, row, n, rc, msg, where);
    } else {
        for (uint64_t i = 0; i < n; i++) {
            const pf_http_record *r = &recs[i];
            if (r->error == 0) {
                lat[(*n_lat)++] = r->seconds;
                continue;
            }
            char what[120], msg[256];
            pf_http_describe(r, what, sizeof what);
            snprintf(msg, sizeof msg, "%s: POST %.100s", what, c->http.url);
            cmp_reason_add(res, PF_ETASK, r->curl_code == 0 ? r->status : r->error, msg, where);
            row->errors++;
        }
    }
    free(recs);
}

static void run_pool(const struct cmp_config *c, enum cmp_exec exec, int workers, uint64_t n,
                     struct cmp_row *row, struct cmp_results *res, struct cmp_progress *pb,
                     double *lat, size_t *n_lat, const char *where)
{
    pf_future **fs = calloc(n ? n : 1, sizeof *fs);
    if (!fs) {
        fail_all(res, row, n, PF_ENOMEM, "out of memory", where);
        return;
    }
    pf_executor_opts o = {.max_workers = workers,
                          .initializer = pf_http_worker_init,
                          .finalizer = pf_http_worker_fini,
                          .init_arg = &c->http,
                          .init_arg_len = sizeof c->http};
    double t0 = cmp_now();
    pf_executor *ex;
    int rc = pf_executor_create(&ex, kind_of(exec), &o);
    if (rc != PF_OK) {
        row->wall_s = cmp_now() - t0;
        char msg[256];
        snprintf(msg, sizeof msg, "cannot create the %s executor: %s", cmp_exec_names[exec],
                 pf_strerror(rc));
        fail_all(res, row, n, rc, msg, where);
        free(fs);
        return;
    }
    struct countdown cd;
    countdown_init(&cd);
    size_t n_fs = 0;
    for (uint64_t i = 0; i < n; i++) {
        pf_future *f = NULL;
        rc = pf_submit(ex, pf_http_post_task, &i, sizeof i, &f);
        if (rc != PF_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "cannot submit: %s", pf_strerror(rc));
            cmp_reason_add(res, rc, 0, msg, where);
            row->errors++;
            continue;
        }
        fs[n_fs++] = f;
        countdown_watch(&cd, f);
        if (exec == CMP_SEQUENTIAL) /* it ran inside pf_submit */
            cmp_progress_draw(pb, i + 1, n, 0, i + 1 == n);
    }
    finish_pool(&cd, ex, n, pb);
    row->wall_s = cmp_now() - t0;

    for (size_t i = 0; i < n_fs; i++) {
        const void *data;
        size_t len;
        rc = pf_future_result(fs[i], 0, &data, &len);
        if (rc == PF_OK && len == sizeof(pf_http_record)) {
            pf_http_record r;
            memcpy(&r, data, sizeof r);
            lat[(*n_lat)++] = r.seconds;
        } else {
            pf_error_info info;
            if (pf_future_error(fs[i], &info) != PF_OK || info.code == PF_OK) {
                info = (pf_error_info){.code = rc};
                snprintf(info.message, sizeof info.message, "%s", pf_strerror(rc));
            }
            if (!info.message[0])
                snprintf(info.message, sizeof info.message, "%s", pf_strerror(info.code));
            cmp_reason_add(res, info.code, info.task_code, info.message, where);
            row->errors++;
        }
        pf_future_release(fs[i]);
    }
    free(fs);
}

int cmp_run_http(const struct cmp_config *c, enum cmp_exec exec, int workers, uint64_t n,
                 struct cmp_row *row, struct cmp_results *res, struct cmp_progress *pb)
{
    row_init(row, exec, workers, n);
    char where[64];
    where_of(where, sizeof where, exec, workers, n);
    snprintf(pb->label, sizeof pb->label, "%-10s %5d %-9s", cmp_exec_names[exec], workers,
             exec == CMP_EVENT ? "in flight" : "workers");
    pb->last_ns = 0;
    double *lat = malloc((n ? n : 1) * sizeof *lat);
    if (!lat)
        return PF_ENOMEM;
    size_t n_lat = 0;
    if (exec == CMP_EVENT)
        run_event(c, workers, n, row, res, pb, lat, &n_lat, where);
    else
        run_pool(c, exec, workers, n, row, res, pb, lat, &n_lat, where);
    cmp_progress_clear(pb);
    percentiles(lat, n_lat, row);
    free(lat);
    row->rate = row->wall_s > 0 ? (double)n / row->wall_s : NAN;
    /* No ideal without a latency: unknown, or 0 (then any wall time is
     * all overhead, and ideal/wall says nothing).  No efficiency when every
     * request failed: how fast requests fail says nothing either. */
    double mean = (c->latency_lo + c->latency_hi) / 2;
    if (c->latency_known && mean > 0) {
        uint64_t w = exec == CMP_SEQUENTIAL ? 1 : (uint64_t)workers;
        row->ideal_s = (double)((n + w - 1) / w) * mean;
        if (row->wall_s > 0 && row->errors < n)
            row->efficiency = row->ideal_s / row->wall_s;
    }
    res->requests += n;
    res->failed += row->errors;
    return PF_OK;
}

/* --- CPU ----------------------------------------------------------------- */

struct prime_range {
    uint64_t lo, hi;
};

/* Trial division by odd numbers: deliberately plain, the same work in every
 * executor (and close to the OpenMP anchor's kernel). */
static bool is_prime(uint64_t v)
{
    if (v < 2)
        return false;
    if (v < 4)
        return true;
    if (v % 2 == 0)
        return false;
    for (uint64_t d = 3; d * d <= v; d += 2)
        if (v % d == 0)
            return false;
    return true;
}

static int count_primes_task(pf_task *t, const void *arg, size_t len)
{
    struct prime_range r;
    if (len != sizeof r)
        return pf_task_fail(t, PF_EINVAL, "count_primes: want a range, got %zu bytes", len);
    memcpy(&r, arg, sizeof r);
    uint64_t count = 0;
    for (uint64_t v = r.lo; v < r.hi; v++)
        count += is_prime(v);
    return pf_task_set_result(t, &count, sizeof count);
}
PF_REGISTER(count_primes_task) /* by id on MPI ranks */

uint64_t cmp_sieve_count(uint64_t bound)
{
    if (bound < 3)
        return 0;
    unsigned char *composite = calloc(bound, 1);
    if (!composite)
        return UINT64_MAX;
    uint64_t count = 0;
    for (uint64_t i = 2; i < bound; i++) {
        if (composite[i])
            continue;
        count++;
        for (uint64_t j = i * i; j < bound; j += i)
            composite[j] = 1;
    }
    free(composite);
    return count;
}

int cmp_run_cpu(const struct cmp_config *c, enum cmp_exec exec, int workers, struct cmp_row *row,
                struct cmp_results *res, struct cmp_progress *pb)
{
    uint64_t n = c->tasks;
    row_init(row, exec, workers, n);
    char where[64];
    where_of(where, sizeof where, exec, workers, n);
    snprintf(pb->label, sizeof pb->label, "%-10s %5d workers", cmp_exec_names[exec], workers);
    pb->last_ns = 0;
    pf_future **fs = calloc(n, sizeof *fs);
    if (!fs)
        return PF_ENOMEM;
    pf_executor_opts o = {.max_workers = workers};
    double t0 = cmp_now();
    pf_executor *ex;
    int rc = pf_executor_create(&ex, kind_of(exec), &o);
    if (rc != PF_OK) {
        /* Its tasks failed: counted like any other failure (exit status 1,
         * the summary says why).  wall_s stays 0: no speedup. */
        char msg[256];
        snprintf(msg, sizeof msg, "cannot create the %s executor: %s", cmp_exec_names[exec],
                 pf_strerror(rc));
        fail_all(res, row, n, rc, msg, where);
        free(fs);
        res->requests += n;
        res->failed += row->errors;
        return PF_OK;
    }
    struct countdown cd;
    countdown_init(&cd);
    size_t n_fs = 0;
    for (uint64_t i = 0; i < n; i++) {
        struct prime_range r = {c->bound * i / n, c->bound * (i + 1) / n};
        rc = pf_submit(ex, count_primes_task, &r, sizeof r, &fs[n_fs]);
        if (rc != PF_OK) {
            cmp_reason_add(res, rc, 0, pf_strerror(rc), where);
            row->errors++;
            continue;
        }
        countdown_watch(&cd, fs[n_fs]);
        n_fs++;
        if (exec == CMP_SEQUENTIAL)
            cmp_progress_draw(pb, i + 1, n, 0, i + 1 == n);
    }
    finish_pool(&cd, ex, n, pb);
    row->wall_s = cmp_now() - t0;
    cmp_progress_clear(pb);
    for (size_t i = 0; i < n_fs; i++) {
        const void *data;
        size_t len;
        rc = pf_future_result(fs[i], 0, &data, &len);
        if (rc == PF_OK && len == sizeof(uint64_t)) {
            uint64_t k;
            memcpy(&k, data, sizeof k);
            row->primes += k;
        } else {
            pf_error_info info = {.code = rc};
            (void)pf_future_error(fs[i], &info);
            cmp_reason_add(res, info.code, info.task_code,
                           info.message[0] ? info.message : pf_strerror(info.code), where);
            row->errors++;
        }
        pf_future_release(fs[i]);
    }
    free(fs);
    row->primes_ok = row->errors == 0 && row->primes == res->expected_primes;
    if (!row->primes_ok && row->errors == 0) /* failed tasks: the failure summary says so */
        res->cpu_wrong = true;
    row->rate = row->wall_s > 0 ? (double)n / row->wall_s : NAN;
    res->requests += n;
    res->failed += row->errors;
    return PF_OK;
}
