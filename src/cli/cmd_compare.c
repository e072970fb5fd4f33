/*
 * `pfor compare`: the article's experiment, as pfor's main job.
 *
 * With no arguments: start the mock API in this process on an ephemeral
 * loopback port with 10 ms of latency, POST the article's sweep of request
 * counts (5 .. 10,000) through a process pool, a thread pool (Python's
 * default worker counts) and the event-driven mode, print a table as it
 * goes, and write CSV, JSON and the line graph (SVG and PNG, gnuplot) into
 * results/.  `--workload cpu` runs the CPU-bound counterpart instead.
 * docs/compare.md explains how to read the output.
 *
 * Exit status: 0 when every request (or task) succeeded and every file was
 * written; 1 when requests failed (one summary line on stderr says why),
 * the CPU check failed, or a file could not be written; 2 on bad input
 * (one line on stderr).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "compare.h"

static const uint64_t article_sizes[] = {5, 10, 50, 100, 500, 1000, 2500, 5000, 10000};
static const uint64_t quick_sizes[] = {5, 10, 50, 100, 500};

#define DEFAULT_LATENCY   0.010
#define DEFAULT_IN_FLIGHT 500
#define DEFAULT_BOUND     3000000 /* the OpenMP anchor's: 216,816 primes */
#define QUICK_BOUND       1000000
#define DEFAULT_TASKS     64

static void usage(FILE *out)
{
    fputs("usage: pfor compare [options]\n"
          "\n"
          "Time the same loop of HTTP POST requests through a process pool, a thread pool\n"
          "and an event-driven loop (libcurl multi), as in the article's section 6; or,\n"
          "with --workload cpu, a CPU-bound kernel.  With no options: the built-in mock API\n"
          "with 10 ms of latency, 5..10000 requests, all outputs into results/.\n"
          "\n"
          "what to run:\n"
          "  --workload http|cpu   I/O-bound requests (default) or counting primes\n"
          "  --executors LIST      of sequential,processes,threads,event,mpi (mpi: under\n"
          "                        mpirun; default processes,threads,event; cpu:\n"
          "                        sequential,processes,threads)\n"
          "  --sizes LIST          request counts (default 5,10,50,100,500,1000,2500,5000,\n"
          "                        10000; --quick: 5,10,50,100,500)\n"
          "  --workers N|LIST      workers of every executor, or a sweep like 1,2,4,8\n"
          "                        (default: Python's, processes = cores, threads =\n"
          "                        min(32, cores + 4); cpu: 1 .. 2 x cores)\n"
          "  --in-flight N         event-driven mode: transfers at once (default: --workers\n"
          "                        when given, else 500)\n"
          "  --event-loops N       event-driven mode: epoll loops sharing them, a thread\n"
          "                        each (default: one per core)\n"
          "  --quick               a short run (under 20 s)\n"
          "  --reps N              run each measurement N times, keep the median (default 1)\n"
          "\n"
          "the API:\n"
          "  --latency D|D..D      the built-in server's delay per request (default 10ms;\n"
          "                        the article's is 200ms); with --url, the API's expected\n"
          "                        latency, used only for the ideal lines\n"
          "  --error-rate F|P%     built-in server: fraction answered 500 (default 0)\n"
          "  --port N              built-in server's port (default 0: a free one)\n"
          "  --url URL             POST to this API instead of the built-in server\n"
          "  --timeout D           per request (default 30s)\n"
          "  --body JSON           request body; {n} becomes the request number\n"
          "\n"
          "cpu workload:\n"
          "  --bound N             count the primes below N (default 3000000; --quick\n"
          "                        1000000)\n"
          "  --tasks N             in this many ranges (default 64)\n"
          "\n"
          "output (default: all of them, into --out):\n"
          "  --out DIR             results folder (default results)\n"
          "  --csv FILE            the rows as CSV\n"
          "  --json FILE           machine, parameters, rows and failures as JSON\n"
          "  --plot FILE           the graph, FILE.svg or FILE.png (gnuplot)\n"
          "  --help                this text\n"
          "\n"
          "Exit status: 0 all went well, 1 requests failed (a summary says why), 2 bad input.\n",
          out);
}

/* --- options --------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void parse_executors(struct cmp_config *c, const char *val)
{
    memset(c->exec_on, 0, sizeof c->exec_on);
    c->n_exec = 0;
    const char *p = val;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int found = -1;
        for (int e = 0; e < CMP_N_EXEC; e++)
            if (strlen(cmp_exec_names[e]) == len && strncmp(p, cmp_exec_names[e], len) == 0)
                found = e;
        if (found < 0) {
            char names[128] = "";
            for (int e = 0; e < CMP_N_EXEC; e++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", e ? ", " : "",
                         cmp_exec_names[e]);
            pf_cli_usage_error("compare: --executors wants a list of %s; not '%s'", names, val);
        }
        if (c->exec_on[found])
            pf_cli_usage_error("compare: --executors lists '%s' twice", cmp_exec_names[found]);
        c->exec_on[found] = true;
        c->exec_order[c->n_exec++] = (enum cmp_exec)found;
        if (!comma)
            break;
        p = comma + 1;
    }
}

struct seen {
    bool workload, executors, sizes, latency, error_rate, port, url, workers, in_flight, timeout,
        body, bound, tasks, event_loops;
};

static void parse_args(int argc, char **argv, struct cmp_config *c, struct seen *seen)
{
    static const char *const with_value[] = {
        "--workload", "--executors", "--sizes",   "--latency", "--error-rate", "--port",  "--url",
        "--workers",  "--in-flight", "--timeout", "--body",    "--bound",      "--tasks", "--out",
        "--json",     "--csv",       "--plot",    "--reps",    "--event-loops"};
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--quick") == 0) {
            c->quick = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            pf_cli_usage_error("compare: unexpected argument '%s' (try 'pfor compare --help')",
                               arg);
        char name[32];
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        if (n >= sizeof name)
            pf_cli_usage_error("compare: unknown option '%s' (try 'pfor compare --help')", arg);
        memcpy(name, arg, n);
        name[n] = '\0';
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            known = known || strcmp(name, with_value[k]) == 0;
        if (!known)
            pf_cli_usage_error("compare: unknown option '%s' (try 'pfor compare --help')", name);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                pf_cli_usage_error("compare: option %s needs a value", name);
            val = argv[++i];
        }

        uint64_t u;
        double d;
        if (strcmp(name, "--workload") == 0) {
            if (strcmp(val, "http") == 0)
                c->workload = CMP_HTTP;
            else if (strcmp(val, "cpu") == 0)
                c->workload = CMP_CPU;
            else
                pf_cli_usage_error("compare: --workload wants http or cpu, not '%s'", val);
            seen->workload = true;
        } else if (strcmp(name, "--executors") == 0) {
            parse_executors(c, val);
            seen->executors = true;
        } else if (strcmp(name, "--sizes") == 0) {
            if (pf_cli_parse_u64_list(val, 1, 10000000, c->sizes, CMP_MAX_SIZES, &c->n_sizes) != 0)
                pf_cli_usage_error("compare: --sizes wants a list of request counts 1..10000000 "
                                   "like 5,10,50, not '%s'",
                                   val);
            seen->sizes = true;
        } else if (strcmp(name, "--latency") == 0) {
            if (pf_cli_parse_latency(val, &c->latency_lo, &c->latency_hi) != 0)
                pf_cli_usage_error("compare: --latency wants a duration like 200ms or a range "
                                   "like 150ms..250ms, not '%s'",
                                   val);
            seen->latency = true;
        } else if (strcmp(name, "--error-rate") == 0) {
            if (pf_cli_parse_fraction(val, &c->error_rate) != 0)
                pf_cli_usage_error("compare: --error-rate wants a fraction 0..1 or a percentage "
                                   "like 5%%, not '%s'",
                                   val);
            seen->error_rate = true;
        } else if (strcmp(name, "--port") == 0) {
            if (pf_cli_parse_u64(val, 0, 65535, &u) != 0)
                pf_cli_usage_error("compare: --port wants 0..65535, not '%s'", val);
            c->port = (uint16_t)u;
            seen->port = true;
        } else if (strcmp(name, "--url") == 0) {
            pf_http_config probe;
            if (pf_http_config_init(&probe, val) != PF_OK)
                pf_cli_usage_error("compare: --url wants an http:// or https:// URL of at most "
                                   "%d bytes, not '%s'",
                                   PF_HTTP_URL_MAX - 1, val);
            url = val;
            seen->url = true;
        } else if (strcmp(name, "--workers") == 0) {
            if (pf_cli_parse_u64_list(val, 1, PF_MAX_WORKERS, c->workers, CMP_MAX_WORKERS,
                                      &c->n_workers) != 0)
                pf_cli_usage_error("compare: --workers wants a count or a list of counts "
                                   "1..%d like 1,2,4,8, not '%s'",
                                   PF_MAX_WORKERS, val);
            seen->workers = true;
        } else if (strcmp(name, "--in-flight") == 0) {
            if (pf_cli_parse_u64(val, 1, 100000, &c->in_flight) != 0)
                pf_cli_usage_error("compare: --in-flight wants 1..100000, not '%s'", val);
            seen->in_flight = true;
        } else if (strcmp(name, "--event-loops") == 0) {
            if (pf_cli_parse_u64(val, 1, PF_HTTP_MULTI_MAX_THREADS, &c->event_loops) != 0)
                pf_cli_usage_error("compare: --event-loops wants 1..%d, not '%s'",
                                   PF_HTTP_MULTI_MAX_THREADS, val);
            seen->event_loops = true;
        } else if (strcmp(name, "--timeout") == 0) {
            if (pf_cli_parse_duration(val, &d) != 0 || d <= 0)
                pf_cli_usage_error("compare: --timeout wants a duration like 30s, not '%s'", val);
            c->http.timeout = d;
            seen->timeout = true;
        } else if (strcmp(name, "--body") == 0) {
            if (pf_http_config_set_body(&c->http, val) != PF_OK)
                pf_cli_usage_error("compare: --body is longer than %d bytes", PF_HTTP_BODY_MAX - 1);
            seen->body = true;
        } else if (strcmp(name, "--bound") == 0) {
            if (pf_cli_parse_u64(val, 10, 100000000, &c->bound) != 0)
                pf_cli_usage_error("compare: --bound wants 10..100000000, not '%s'", val);
            seen->bound = true;
        } else if (strcmp(name, "--tasks") == 0) {
            if (pf_cli_parse_u64(val, 1, 100000, &c->tasks) != 0)
                pf_cli_usage_error("compare: --tasks wants 1..100000, not '%s'", val);
            seen->tasks = true;
        } else if (strcmp(name, "--reps") == 0) {
            if (pf_cli_parse_u64(val, 1, CMP_MAX_REPS, &c->reps) != 0)
                pf_cli_usage_error("compare: --reps wants 1..%d, not '%s'", CMP_MAX_REPS, val);
        } else if (strcmp(name, "--out") == 0) {
            if (!*val)
                pf_cli_usage_error("compare: --out wants a folder");
            c->out_dir = val;
        } else if (strcmp(name, "--json") == 0 || strcmp(name, "--csv") == 0) {
            if (!*val)
                pf_cli_usage_error("compare: %s wants a file name", name);
            if (name[2] == 'j')
                c->json_path = val;
            else
                c->csv_path = val;
        } else { /* --plot */
            if (!ends_with(val, ".svg") && !ends_with(val, ".png"))
                pf_cli_usage_error("compare: --plot wants a file name ending in .svg or .png, "
                                   "not '%s'",
                                   val);
            c->plot_path = val;
        }
    }
    if (url) {
        /* The body (or its default) set so far is kept. */
        char body[PF_HTTP_BODY_MAX];
        memcpy(body, c->http.body, sizeof body);
        double timeout = c->http.timeout;
        (void)pf_http_config_init(&c->http, url);
        if (seen->body)
            memcpy(c->http.body, body, sizeof body);
        c->http.timeout = timeout;
        c->builtin = false;
    }
}

/* Options that belong to the other workload, or to the built-in server. */
static void check_combinations(const struct cmp_config *c, const struct seen *s)
{
    if (c->workload == CMP_CPU) {
        const char *bad = s->sizes         ? "--sizes"
                          : s->latency     ? "--latency"
                          : s->error_rate  ? "--error-rate"
                          : s->port        ? "--port"
                          : s->url         ? "--url"
                          : s->in_flight   ? "--in-flight"
                          : s->event_loops ? "--event-loops"
                          : s->timeout     ? "--timeout"
                          : s->body        ? "--body"
                                           : NULL;
        if (bad)
            pf_cli_usage_error("compare: %s is for --workload http", bad);
        if (c->exec_on[CMP_EVENT])
            pf_cli_usage_error("compare: the event-driven mode is for --workload http (cpu runs "
                               "sequential, processes, threads)");
        return;
    }
    if (s->bound || s->tasks)
        pf_cli_usage_error("compare: %s is for --workload cpu", s->bound ? "--bound" : "--tasks");
    if (s->url && (s->error_rate || s->port))
        pf_cli_usage_error("compare: %s is for the built-in server, not --url",
                           s->error_rate ? "--error-rate" : "--port");
}

/* --- the machine ------------------------------------------------------------ */

static void describe_machine(struct cmp_results *res)
{
    res->cores = pf_default_workers(PF_PROCESSES);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(res->os, sizeof res->os, "%.40s %.60s %.20s", u.sysname, u.release, u.machine);
    else
        snprintf(res->os, sizeof res->os, "unknown");
    snprintf(res->cpu_model, sizeof res->cpu_model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
                const char *v = strchr(line, ':') + 1;
                while (*v == ' ' || *v == '\t')
                    v++;
                snprintf(res->cpu_model, sizeof res->cpu_model, "%.*s", (int)strcspn(v, "\n"), v);
                break;
            }
        }
        fclose(f);
    }
    res->loadavg = NAN;
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &res->loadavg) != 1)
            res->loadavg = NAN;
        fclose(la);
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(res->started_utc, sizeof res->started_utc, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Raise the soft descriptor limit to the hard one; return the soft limit. */
static uint64_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > (1u << 20))
            want = 1u << 20;
        if (want > rl.rlim_cur) {
            rlim_t old = rl.rlim_cur;
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                rl.rlim_cur = old;
        }
    }
    return rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)rl.rlim_cur;
}

/* The first folder make_dirs created ("" if none): what undo_made_dirs
 * removes again when the run stops before anything was measured. */
static char made_top[4096];

/* mkdir -p; 0 or -1 with errno. */
static int make_dirs(const char *path)
{
    char buf[sizeof made_top];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char end = *p;
        *p = '\0';
        if (mkdir(buf, 0777) == 0) {
            if (!made_top[0])
                memcpy(made_top, buf, strlen(buf) + 1);
        } else if (errno != EEXIST) {
            return -1;
        }
        if (!end)
            return 0;
        *p = '/';
    }
}

/* The folder make_dirs was asked for, while a refusal (exit before the
 * first measurement) should still remove what it made. */
static char made_for[sizeof made_top];

/* Remove the folders make_dirs created for made_for, deepest first (rmdir:
 * only while they are empty), so that a run refused before it measured
 * anything leaves nothing behind.  Registered with atexit; a no-op once
 * keep_made_dirs() was called. */
static void undo_made_dirs(void)
{
    if (!made_top[0] || !made_for[0])
        return;
    char buf[sizeof made_top];
    snprintf(buf, sizeof buf, "%s", made_for);
    for (size_t top = strlen(made_top);;) {
        while (strlen(buf) > 1 && buf[strlen(buf) - 1] == '/')
            buf[strlen(buf) - 1] = '\0';
        if (strlen(buf) < top || rmdir(buf) != 0 || strlen(buf) == top)
            break;
        char *slash = strrchr(buf, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    made_top[0] = '\0';
}

/* The run goes ahead: the folders stay. */
static void keep_made_dirs(void)
{
    made_for[0] = '\0';
}

/* --- the table ------------------------------------------------------------- */

static void fmt_num(char *buf, size_t size, double v, const char *fmt)
{
    if (isnan(v))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, fmt, v);
}

static void print_machine(const struct cmp_results *res)
{
    printf("machine: %d cores, %s", res->cores, res->os);
    if (!isnan(res->loadavg))
        printf(", load average %.2f at the start", res->loadavg);
    printf("\n\n");
}

static void print_header(const struct cmp_config *c, const struct cmp_results *res, bool go)
{
    if (c->workload == CMP_HTTP) {
        if (c->builtin) {
            char lat[64];
            if (c->latency_lo == c->latency_hi)
                snprintf(lat, sizeof lat, "%g ms", c->latency_lo * 1e3);
            else
                snprintf(lat, sizeof lat, "%g..%g ms", c->latency_lo * 1e3, c->latency_hi * 1e3);
            printf("pfor compare: POST %s (built-in mock API, latency %s", c->http.url, lat);
            if (c->error_rate > 0)
                printf(", error rate %g", c->error_rate);
            printf(")\n");
        } else {
            printf("pfor compare: POST %s", c->http.url);
            if (c->latency_known)
                printf(" (expected latency %g ms)", (c->latency_lo + c->latency_hi) / 2 * 1e3);
            printf("\n");
        }
        print_machine(res);
        if (!go) {
            printf("the API did not answer a first request (%s); nothing was measured\n",
                   res->reasons[0].message);
            fflush(stdout);
            return;
        }
        printf("%-10s %7s %8s %9s %9s %8s %8s %7s %9s %10s\n", "executor", "workers", "requests",
               "wall s", "req/s", "p50 ms", "p99 ms", "errors", "ideal s", "ideal/wall");
    } else {
        printf("pfor compare --workload cpu: count the primes below %llu in %llu tasks "
               "(expect %llu)\n",
               (unsigned long long)c->bound, (unsigned long long)c->tasks,
               (unsigned long long)res->expected_primes);
        print_machine(res);
        printf("%-10s %7s %6s %9s %8s %10s %9s %7s\n", "executor", "workers", "tasks", "wall s",
               "speedup", "ideal/wall", "primes", "check");
    }
    fflush(stdout);
}

static void print_row(const struct cmp_config *c, const struct cmp_row *r)
{
    char wall[32], rate[32], p50[32], p99[32], ideal[32], eff[32];
    fmt_num(wall, sizeof wall, r->wall_s, "%.3f");
    fmt_num(eff, sizeof eff, r->efficiency, "%.3f");
    if (c->workload == CMP_HTTP) {
        fmt_num(rate, sizeof rate, r->rate, "%.1f");
        fmt_num(p50, sizeof p50, r->p50_ms, "%.2f");
        fmt_num(p99, sizeof p99, r->p99_ms, "%.2f");
        fmt_num(ideal, sizeof ideal, r->ideal_s, "%.3f");
        printf("%-10s %7d %8llu %9s %9s %8s %8s %7llu %9s %10s\n", cmp_exec_names[r->exec],
               r->workers, (unsigned long long)r->n, wall, rate, p50, p99,
               (unsigned long long)r->errors, ideal, eff);
    } else {
        char sp[32];
        fmt_num(sp, sizeof sp, r->speedup, "%.2f");
        printf("%-10s %7d %6llu %9s %8s %10s %9llu %7s\n", cmp_exec_names[r->exec], r->workers,
               (unsigned long long)r->n, wall, sp, eff, (unsigned long long)r->primes,
               r->primes_ok ? "ok" : "WRONG");
    }
    fflush(stdout);
}

static struct cmp_row *new_row(struct cmp_results *res)
{
    if (res->n_rows == res->cap_rows) {
        size_t cap = res->cap_rows ? res->cap_rows * 2 : 64;
        struct cmp_row *v = realloc(res->rows, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "pfor: compare: out of memory\n");
            exit(1);
        }
        res->rows = v;
        res->cap_rows = cap;
    }
    return &res->rows[res->n_rows++];
}

static int by_wall(const void *a, const void *b)
{
    const struct cmp_row *x = a, *y = b;
    return (x->wall_s > y->wall_s) - (x->wall_s < y->wall_s);
}

/* Run one measurement --reps times; *row gets the repetition with the
 * median wall time, with the errors of all of them. */
static void measure(const struct cmp_config *c, enum cmp_exec exec, int workers, uint64_t size,
                    struct cmp_row *row, struct cmp_results *res, struct cmp_progress *pb)
{
    struct cmp_row runs[CMP_MAX_REPS];
    uint64_t errors = 0;
    for (uint64_t r = 0; r < c->reps; r++) {
        int rc = c->workload == CMP_CPU ? cmp_run_cpu(c, exec, workers, &runs[r], res, pb)
                                        : cmp_run_http(c, exec, workers, size, &runs[r], res, pb);
        if (rc != PF_OK) {
            fprintf(stderr, "pfor: compare: out of memory\n");
            exit(1);
        }
        errors += runs[r].errors;
    }
    qsort(runs, c->reps, sizeof runs[0], by_wall);
    *row = runs[(c->reps - 1) / 2];
    row->errors = errors;
    row->reps = (int)c->reps;
    row->wall_min_s = runs[0].wall_s;
    row->wall_max_s = runs[c->reps - 1].wall_s;
    for (uint64_t r = 0; r < c->reps; r++)
        row->primes_ok = row->primes_ok && runs[r].primes_ok;
}

/* Requests (or tasks) the sweep will make. */
static uint64_t planned(const struct cmp_config *c)
{
    uint64_t total = 0;
    for (size_t k = 0; k < c->n_exec; k++) {
        uint64_t ws[CMP_MAX_WORKERS];
        size_t n_ws = cmp_worker_list(c, c->exec_order[k], ws);
        if (c->workload == CMP_CPU) {
            total += n_ws * c->tasks * c->reps;
            continue;
        }
        for (size_t s = 0; s < c->n_sizes; s++)
            total += n_ws * c->sizes[s] * c->reps;
    }
    return total;
}

/* With --url, one request first.  An API that cannot be reached at all (no
 * name, no connection, no answer in time) would make each request of the
 * sweep wait out its time limit, for hours; then nothing is measured and
 * every planned request is reported failed, with the probe's reason.  An
 * API that answers, whatever the status, is measured.  True to go on. */
static bool probe(const struct cmp_config *c, struct cmp_results *res)
{
    pf_http_client *cl;
    pf_http_record rec = {0};
    char msg[256];
    int rc = pf_http_client_create(&cl, &c->http);
    if (rc == PF_OK) {
        rc = pf_http_client_post(cl, 0, &rec, msg, sizeof msg);
        pf_http_client_destroy(cl);
    } else {
        snprintf(msg, sizeof msg, "cannot make an HTTP client: %s", pf_strerror(rc));
    }
    if (rc == PF_OK || rc == PF_EHTTP) /* an answer, or a connection that broke */
        return true;
    uint64_t n = planned(c);
    cmp_reason_add(res, PF_ETASK, rc, msg, "the probe before the sweep");
    res->reasons[0].count = n;
    res->requests = res->failed = n;
    return false;
}

/* --- the summaries ------------------------------------------------------- */

/* HTTP: at the largest size every executor ran, how much faster the
 * fastest one was. */
static void http_summary(const struct cmp_config *c, const struct cmp_results *res)
{
    /* Executors that ran nothing (mpi outside mpirun: skipped with a
     * reason) take no part. */
    bool ran[CMP_N_EXEC] = {false};
    size_t n_ran = 0;
    for (size_t k = 0; k < c->n_exec; k++) {
        for (size_t r = 0; r < res->n_rows && !ran[k]; r++)
            ran[k] = res->rows[r].exec == c->exec_order[k];
        n_ran += ran[k];
    }
    uint64_t size = 0;
    for (size_t i = 0; i < c->n_sizes; i++) {
        bool all = true;
        for (size_t k = 0; k < c->n_exec; k++) {
            bool has = !ran[k];
            for (size_t r = 0; r < res->n_rows; r++)
                has =
                    has || (res->rows[r].exec == c->exec_order[k] && res->rows[r].n == c->sizes[i]);
            all = all && has;
        }
        if (all && c->sizes[i] > size)
            size = c->sizes[i];
    }
    if (size == 0 || n_ran < 2)
        return;
    /* A row where every request failed is not ranked: how fast requests
     * fail says nothing about the executor. */
    const struct cmp_row *best[CMP_N_EXEC] = {NULL};
    size_t ranked = 0;
    for (size_t r = 0; r < res->n_rows; r++) {
        const struct cmp_row *row = &res->rows[r];
        if (row->n != size || row->errors >= row->n * (uint64_t)row->reps || !(row->wall_s > 0))
            continue;
        ranked += !best[row->exec];
        if (!best[row->exec] || row->wall_s < best[row->exec]->wall_s)
            best[row->exec] = row;
    }
    if (ranked < 2)
        return;
    const struct cmp_row *fastest = NULL;
    for (int e = 0; e < CMP_N_EXEC; e++)
        if (best[e] && (!fastest || best[e]->wall_s < fastest->wall_s))
            fastest = best[e];
    printf("\nat %llu requests:", (unsigned long long)size);
    bool listed = false;
    for (size_t k = 0; k < c->n_exec; k++) {
        int e = c->exec_order[k];
        if (best[e])
            printf("%s %s %.3f s", listed ? "," : "", cmp_exec_names[e], best[e]->wall_s);
        else if (ran[k])
            printf("%s %s every request failed", listed ? "," : "", cmp_exec_names[e]);
        listed |= best[e] || ran[k]; /* a skipped executor (mpi outside mpirun) is left out */
    }
    printf("\n%s was fastest:", cmp_exec_names[fastest->exec]);
    bool first = true;
    for (size_t k = 0; k < c->n_exec; k++) {
        const struct cmp_row *row = best[c->exec_order[k]];
        if (!row || row == fastest)
            continue;
        printf("%s %.1fx faster than %s", first ? "" : ",", row->wall_s / fastest->wall_s,
               cmp_exec_names[row->exec]);
        first = false;
    }
    printf("\n");
}

static void cpu_summary(const struct cmp_results *res)
{
    const struct cmp_row *best[CMP_N_EXEC] = {NULL};
    for (size_t r = 0; r < res->n_rows; r++) {
        const struct cmp_row *row = &res->rows[r];
        if (!isnan(row->speedup) && (!best[row->exec] || row->speedup > best[row->exec]->speedup))
            best[row->exec] = row;
    }
    if (!best[CMP_PROCESSES] && !best[CMP_THREADS])
        return;
    printf("\nbest speedup on %d cores:", res->cores);
    bool first = true;
    for (int e = CMP_PROCESSES; e <= CMP_THREADS; e++) {
        if (!best[e])
            continue;
        printf("%s %s %.2fx with %d worker%s", first ? "" : ",", cmp_exec_names[e],
               best[e]->speedup, best[e]->workers, best[e]->workers == 1 ? "" : "s");
        first = false;
    }
    printf("\n");
    /* Scaling: the best time of each pool against its own one-worker time. */
    double scale[CMP_N_EXEC] = {0};
    for (int e = CMP_PROCESSES; e <= CMP_THREADS; e++) {
        double one = NAN, fastest = INFINITY;
        for (size_t r = 0; r < res->n_rows; r++) {
            const struct cmp_row *row = &res->rows[r];
            if (row->exec != (enum cmp_exec)e || row->errors > 0)
                continue;
            if (row->workers == 1)
                one = row->wall_s;
            fastest = fmin(fastest, row->wall_s);
        }
        scale[e] = isnan(one) || fastest <= 0 ? 0 : one / fastest;
    }
    double most = fmax(scale[CMP_PROCESSES], scale[CMP_THREADS]);
    if (most == 0)
        return;
    if (most < 1.2) {
        printf("no pool ran much faster with more workers than with one: were the other cores "
               "busy? (load average %.2f at the start)\n",
               res->loadavg);
    } else if (scale[CMP_PROCESSES] > 0 && scale[CMP_THREADS] > 0) {
        if (scale[CMP_PROCESSES] >= 1.2 && scale[CMP_THREADS] >= 0.9 * scale[CMP_PROCESSES])
            printf("threads scaled like processes (%.2fx and %.2fx over one worker): C threads "
                   "run in parallel, there is no interpreter lock\n",
                   scale[CMP_THREADS], scale[CMP_PROCESSES]);
        else
            printf("threads scaled %.2fx over one worker, processes %.2fx\n", scale[CMP_THREADS],
                   scale[CMP_PROCESSES]);
    }
}

/* CPU: speedup against sequential (or, without it, against the same
 * executor with one worker), and the ideal time base / min(workers, cores).
 * A row with failed tasks has none, and is no base: how fast tasks fail
 * says nothing about the executor. */
static void cpu_speedups(struct cmp_results *res)
{
    double seq = NAN;
    for (size_t r = 0; r < res->n_rows; r++)
        if (res->rows[r].exec == CMP_SEQUENTIAL && res->rows[r].errors == 0)
            seq = res->rows[r].wall_s;
    for (size_t r = 0; r < res->n_rows; r++) {
        struct cmp_row *row = &res->rows[r];
        double base = seq;
        if (isnan(base))
            for (size_t k = 0; k < res->n_rows; k++)
                if (res->rows[k].exec == row->exec && res->rows[k].workers == 1 &&
                    res->rows[k].errors == 0)
                    base = res->rows[k].wall_s;
        if (isnan(base) || row->wall_s <= 0 || row->errors > 0)
            continue;
        row->speedup = base / row->wall_s;
        int w = row->workers < res->cores ? row->workers : res->cores;
        row->ideal_s = base / (w > 0 ? w : 1);
        row->efficiency = row->ideal_s / row->wall_s;
    }
}

static int failure_summary(const struct cmp_config *c, const struct cmp_results *res)
{
    if (res->failed == 0)
        return 0;
    const char *what = c->workload == CMP_HTTP ? "requests" : "tasks";
    const struct cmp_reason *top = NULL;
    for (size_t i = 0; i < res->n_reasons; i++)
        if (!top || res->reasons[i].count > top->count)
            top = &res->reasons[i];
    if (res->failed == res->requests)
        fprintf(stderr, "pfor: compare: all %llu %s failed", (unsigned long long)res->failed, what);
    else
        fprintf(stderr, "pfor: compare: %llu of %llu %s failed", (unsigned long long)res->failed,
                (unsigned long long)res->requests, what);
    if (top && top->count == res->failed)
        fprintf(stderr, ": %s", top->message);
    else if (top)
        fprintf(stderr, ", %llu of them: %s", (unsigned long long)top->count, top->message);
    fputc('\n', stderr);
    for (size_t i = 0; i < res->n_reasons; i++) {
        const struct cmp_reason *r = &res->reasons[i];
        if (r != top)
            fprintf(stderr, "pfor: compare:   and %llu: %s (first in %s)\n",
                    (unsigned long long)r->count, r->message, r->where);
    }
    if (res->other_failures)
        fprintf(stderr, "pfor: compare:   and %llu of other kinds\n",
                (unsigned long long)res->other_failures);
    return 1;
}

/* --- the command --------------------------------------------------------- */

static void set_defaults(struct cmp_config *c)
{
    memset(c, 0, sizeof *c);
    c->workload = CMP_HTTP;
    c->builtin = true;
    c->latency_lo = c->latency_hi = DEFAULT_LATENCY;
    c->in_flight = DEFAULT_IN_FLIGHT;
    /* a loop per core: one loop's libcurl work is what limits it */
    int cores = pf_default_workers(PF_PROCESSES);
    c->event_loops =
        (uint64_t)(cores < PF_HTTP_MULTI_MAX_THREADS ? cores : PF_HTTP_MULTI_MAX_THREADS);
    c->reps = 1;
    c->out_dir = "results";
    (void)pf_http_config_init(&c->http, "http://127.0.0.1/");
    c->http.timeout = 30.0;
}

static void finish_defaults(struct cmp_config *c, const struct seen *s)
{
    if (!s->executors) {
        c->n_exec = 0;
        memset(c->exec_on, 0, sizeof c->exec_on);
        static const enum cmp_exec http_order[] = {CMP_PROCESSES, CMP_THREADS, CMP_EVENT};
        static const enum cmp_exec cpu_order[] = {CMP_SEQUENTIAL, CMP_PROCESSES, CMP_THREADS};
        const enum cmp_exec *order = c->workload == CMP_HTTP ? http_order : cpu_order;
        for (int i = 0; i < 3; i++) {
            c->exec_order[c->n_exec++] = order[i];
            c->exec_on[order[i]] = true;
        }
    }
    if (c->workload == CMP_CPU) {
        /* sequential first: it is every speedup's baseline */
        for (size_t i = 1; i < c->n_exec; i++)
            if (c->exec_order[i] == CMP_SEQUENTIAL) {
                memmove(&c->exec_order[1], &c->exec_order[0], i * sizeof c->exec_order[0]);
                c->exec_order[0] = CMP_SEQUENTIAL;
            }
        if (!s->bound)
            c->bound = c->quick ? QUICK_BOUND : DEFAULT_BOUND;
        if (!s->tasks)
            c->tasks = DEFAULT_TASKS;
        return;
    }
    if (!s->sizes) {
        const uint64_t *src = c->quick ? quick_sizes : article_sizes;
        c->n_sizes = c->quick ? sizeof quick_sizes / sizeof quick_sizes[0]
                              : sizeof article_sizes / sizeof article_sizes[0];
        memcpy(c->sizes, src, c->n_sizes * sizeof *src);
    }
    c->latency_known = c->builtin || s->latency;
    if (!c->builtin && !s->latency)
        c->latency_lo = c->latency_hi = 0;
    /* --workers sets the event-driven mode's transfers too, unless
     * --in-flight says otherwise. */
    c->event_uses_workers = s->workers && !s->in_flight;
}

/* The folder of path into dir ("." or "/" where it has none); returns the
 * last component. */
static const char *dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == path)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    return slash ? slash + 1 : path;
}

/* True if a and b (each passed by check_output) name one regular file, so
 * that writing one would overwrite the other: the same file, or the same
 * name in the same folder however spelt.  Names of other files (/dev/null,
 * /dev/stdout) are written in place, one after the other, and may repeat. */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    bool has_a = stat(a, &sa) == 0, has_b = stat(b, &sb) == 0;
    if ((has_a && !S_ISREG(sa.st_mode)) || (has_b && !S_ISREG(sb.st_mode)))
        return false;
    if (has_a && has_b)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char da[PATH_MAX], db[PATH_MAX];
    const char *ba = dir_of(a, da, sizeof da), *bb = dir_of(b, db, sizeof db);
    return strcmp(ba, bb) == 0 && stat(da, &sa) == 0 && stat(db, &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A file the run will write (named by --csv, --json or --plot, or one of
 * the files that --out gets) must be writable where it is named, checked
 * before the run rather than found out after it: its folder exists and
 * takes new files, the name is not a folder, and both the name and the one
 * it is first written under (NAME.PID.tmp, compare_out.c) fit the system's
 * limits.  A name that exists and is not a regular file (/dev/stdout, a
 * link) is written in place: then that file must be writable.  `opt` is
 * the option the name came from. */
static void check_output(const char *opt, const char *path)
{
    char suffix[32];
    size_t n_suffix = (size_t)snprintf(suffix, sizeof suffix, ".%ld.tmp", (long)getpid());
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) /* or a link to one */
        pf_cli_usage_error("compare: %s: '%s' is a folder", opt, path);
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (access(path, W_OK) != 0)
            pf_cli_usage_error("compare: %s: cannot write '%s': %s", opt, path, strerror(errno));
        return;
    }
    if (strlen(path) + n_suffix >= PATH_MAX)
        pf_cli_usage_error("compare: %s: the name '%.40s...' is too long (%zu bytes, written "
                           "first as NAME%s: at most %d in all)",
                           opt, path, strlen(path), suffix, PATH_MAX - 1);
    char dir[PATH_MAX];
    const char *base = dir_of(path, dir, sizeof dir);
    if (access(dir, W_OK | X_OK) != 0)
        pf_cli_usage_error("compare: %s: cannot write '%s': %s", opt, path, strerror(errno));
    long name_max = pathconf(dir, _PC_NAME_MAX);
    if (name_max <= 0)
        name_max = NAME_MAX;
    if (strlen(base) + n_suffix > (size_t)name_max)
        pf_cli_usage_error("compare: %s: the file name '%.40s...' is too long (%zu bytes, "
                           "written first as NAME%s: at most %ld in all)",
                           opt, base, strlen(base), suffix, name_max);
}

/* buf = DIR/STEM.EXT; exit 2 if it does not fit. */
static void out_name(char *buf, size_t cap, const char *dir, const char *stem, const char *ext)
{
    if ((size_t)snprintf(buf, cap, "%s/%s.%s", dir, stem, ext) >= cap)
        pf_cli_usage_error("compare: --out: the folder name '%.40s...' is too long (%zu bytes)",
                           dir, strlen(dir));
}

/* The output paths: explicit ones, or all four into the results folder.
 * Either way each is checked (check_output) before anything runs. */
static void output_paths(struct cmp_config *c)
{
    if (c->csv_path || c->json_path || c->plot_path) {
        if (c->csv_path)
            check_output("--csv", c->csv_path);
        if (c->json_path)
            check_output("--json", c->json_path);
        char gp[sizeof c->svg_buf] = ""; /* the plot's script, written beside it */
        if (c->plot_path) {
            check_output("--plot", c->plot_path);
            if (!cmp_plot_script_name(c->plot_path, gp, sizeof gp))
                pf_cli_usage_error("compare: --plot: the name '%.40s...' is too long",
                                   c->plot_path);
            check_output("--plot (its .gp script)", gp);
        }
        /* No two of them may be one file: the last written would replace
         * the others, which `written:` would still list. */
        const char *opts[] = {"--csv", "--json", "--plot", "--plot's .gp script"};
        const char *names[] = {c->csv_path, c->json_path, c->plot_path, gp[0] ? gp : NULL};
        for (size_t i = 0; i < 4; i++)
            for (size_t k = i + 1; k < 4; k++)
                if (names[i] && names[k] && same_file(names[i], names[k]))
                    pf_cli_usage_error("compare: %s and %s name the same file '%s'", opts[i],
                                       opts[k], names[k]);
        return;
    }
    snprintf(made_for, sizeof made_for, "%s", c->out_dir);
    atexit(undo_made_dirs); /* until keep_made_dirs: any exit removes them */
    if (make_dirs(c->out_dir) != 0)
        pf_cli_usage_error("compare: cannot create the results folder '%s': %s", c->out_dir,
                           strerror(errno));
    struct stat st; /* make_dirs takes an existing name, whatever it is */
    if (stat(c->out_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        pf_cli_usage_error("compare: --out: '%s' is not a folder", c->out_dir);
    const char *stem = c->workload == CMP_HTTP ? "compare-http" : "compare-cpu";
    char gp[sizeof c->svg_buf];
    out_name(c->csv_buf, sizeof c->csv_buf, c->out_dir, stem, "csv");
    out_name(c->json_buf, sizeof c->json_buf, c->out_dir, stem, "json");
    out_name(c->svg_buf, sizeof c->svg_buf, c->out_dir, stem, "svg");
    out_name(c->png_buf, sizeof c->png_buf, c->out_dir, stem, "png");
    out_name(gp, sizeof gp, c->out_dir, stem, "gp"); /* the plots' script */
    const char *names[] = {c->csv_buf, c->json_buf, c->svg_buf, c->png_buf, gp};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_output("--out", names[i]);
    c->csv_path = c->csv_buf;
    c->json_path = c->json_buf;
    c->plot_svg_default = c->plot_png_default = true;
}

/* Workers (event: transfers in flight) that would need more descriptors
 * than RLIMIT_NOFILE allows run with as many as fit (cmp_worker_list):
 * past that, connections fail (EMFILE on either end), half a run's
 * requests with them.  One line for each executor this lowers. */
static void warn_fd_caps(const struct cmp_config *c)
{
    for (size_t k = 0; k < c->n_exec; k++) {
        enum cmp_exec e = c->exec_order[k];
        uint64_t asked[CMP_MAX_WORKERS], cap = cmp_conn_cap(c, e);
        size_t n = cmp_worker_list_asked(c, e, asked);
        char over[256] = "";
        for (size_t i = 0; i < n; i++)
            if (asked[i] > cap && strlen(over) + 24 < sizeof over)
                snprintf(over + strlen(over), sizeof over - strlen(over), "%s%llu",
                         over[0] ? ", " : "", (unsigned long long)asked[i]);
        if (over[0])
            fprintf(stderr,
                    "pfor: compare: %s: more than %llu %s need more descriptors than "
                    "RLIMIT_NOFILE (%llu) allows; running %llu instead of %s\n",
                    cmp_exec_names[e], (unsigned long long)cap,
                    e == CMP_EVENT ? "transfers in flight" : "workers",
                    (unsigned long long)c->fd_limit, (unsigned long long)cap, over);
    }
}

/* The built-in server's connection limit: every connection the run can
 * hold at once, twice over (the last measurement's may still be closing),
 * on whichever of its threads accepts them: libmicrohttpd splits the limit
 * evenly over its threads, one per core.  At least the server's default. */
static unsigned server_connections(const struct cmp_config *c, int cores)
{
    uint64_t most = 1;
    for (size_t k = 0; k < c->n_exec; k++) {
        uint64_t ws[CMP_MAX_WORKERS];
        size_t n = cmp_worker_list(c, c->exec_order[k], ws);
        for (size_t i = 0; i < n; i++)
            most = ws[i] > most ? ws[i] : most;
    }
    uint64_t want = 2 * most * (uint64_t)(cores > 0 ? cores : 1) + 64;
    if (want < 16384)
        want = 16384;
    if (want > (1u << 20))
        want = 1u << 20;
    return (unsigned)want;
}

int pf_cli_compare(int argc, char **argv)
{
    static struct cmp_config cfg; /* large (paths, the HTTP config): not on the stack */
    struct cmp_config *c = &cfg;
    struct seen seen = {0};
    set_defaults(c);
    parse_args(argc, argv, c, &seen);
    check_combinations(c, &seen);
    finish_defaults(c, &seen);
    output_paths(c);

    signal(SIGPIPE, SIG_IGN);
    uint64_t fds = raise_fd_limit();
    struct cmp_results res = {0};
    describe_machine(&res);
    struct cmp_progress pb = {.enabled = isatty(2) == 1};
    double t_start = cmp_now();

    pf_server *srv = NULL;
    if (c->workload == CMP_HTTP) {
        /* Connections hold descriptors: cap the worker counts to what fits. */
        c->fd_limit = fds;
        warn_fd_caps(c);
        if (c->builtin) {
            pf_serve_opts so = {.bind_addr = "127.0.0.1",
                                .port = c->port,
                                .latency_min = c->latency_lo,
                                .latency_max = c->latency_hi,
                                .error_rate = c->error_rate,
                                .max_connections = server_connections(c, res.cores)};
            int rc = pf_server_start(&srv, &so);
            if (rc == PF_EADDRINUSE)
                pf_cli_usage_error("compare: port %u on 127.0.0.1 is already in use", c->port);
            if (rc == PF_EPERM)
                pf_cli_usage_error("compare: not allowed to listen on port %u", c->port);
            if (rc != PF_OK) {
                fprintf(stderr, "pfor: compare: cannot start the built-in server: %s\n",
                        pf_strerror(rc));
                return 1;
            }
            char url[64];
            snprintf(url, sizeof url, "http://127.0.0.1:%u/api/users", pf_server_port(srv));
            memcpy(c->http.url, url, strlen(url) + 1);
        }
    } else {
        res.expected_primes = cmp_sieve_count(c->bound);
    }

    keep_made_dirs(); /* from here on a run writes its results (or says why not) */
    bool go = c->workload == CMP_CPU || c->builtin || probe(c, &res);
    print_header(c, &res, go);
    for (size_t k = 0; go && k < c->n_exec; k++) {
        enum cmp_exec exec = c->exec_order[k];
        uint64_t ws[CMP_MAX_WORKERS];
        size_t n_ws = cmp_worker_list(c, exec, ws);
        if (n_ws == 0 && exec == CMP_MPI)
            printf("mpi        skipped: not started by mpirun (try: mpirun -n 3 pfor compare "
                   "--executors processes,threads,mpi)\n");
        for (size_t w = 0; w < n_ws; w++) {
            int workers = (int)ws[w];
            if (c->workload == CMP_CPU) {
                struct cmp_row *row = new_row(&res);
                measure(c, exec, workers, 0, row, &res, &pb);
                cpu_speedups(&res);
                print_row(c, row);
                continue;
            }
            for (size_t s = 0; s < c->n_sizes; s++) {
                struct cmp_row *row = new_row(&res);
                measure(c, exec, workers, c->sizes[s], row, &res, &pb);
                print_row(c, row);
            }
        }
    }
    if (srv)
        pf_server_stop(srv);
    res.total_s = cmp_now() - t_start;

    if (c->workload == CMP_HTTP)
        http_summary(c, &res);
    else
        cpu_summary(&res);

    int status = 0;
    cmp_files_begin(); /* a stop signal from here on leaves no temporary file */
    bool csv_ok = c->csv_path && cmp_write_csv(c, &res, c->csv_path) == 0;
    bool json_ok =
        c->json_path && !cmp_stop_requested() && cmp_write_json(c, &res, c->json_path) == 0;
    if ((c->csv_path && !csv_ok) || (c->json_path && !json_ok))
        status = 1; /* said why */
    const char *svg = c->plot_svg_default                               ? c->svg_buf
                      : c->plot_path && ends_with(c->plot_path, ".svg") ? c->plot_path
                                                                        : NULL;
    const char *png = c->plot_png_default                               ? c->png_buf
                      : c->plot_path && ends_with(c->plot_path, ".png") ? c->plot_path
                                                                        : NULL;
    /* A plot asked for by name that is not drawn is a failure, with a line
     * saying why; by default a missing gnuplot is only a warning, and a run
     * that measured nothing has nothing to draw. */
    bool plotted = res.n_rows > 0 && cmp_plot(c, &res, svg, png) == 0;
    if (res.n_rows == 0 && c->plot_path)
        fprintf(stderr, "pfor: compare: nothing was measured, so %s was not drawn\n", c->plot_path);
    if (!plotted && c->plot_path)
        status = 1;
    cmp_files_end(); /* ends the program here if a stop signal came */
    printf("\nwritten:");
    if (csv_ok)
        printf(" %s", c->csv_path);
    if (json_ok)
        printf(" %s", c->json_path);
    if (plotted && svg)
        printf(" %s", svg);
    if (plotted && png)
        printf(" %s", png);
    if (!csv_ok && !json_ok && !plotted)
        printf(" nothing");
    printf("\n");
    fflush(stdout);

    if (failure_summary(c, &res))
        status = 1;
    if (res.cpu_wrong) {
        fprintf(stderr, "pfor: compare: a prime count differs from the sieve's %llu\n",
                (unsigned long long)res.expected_primes);
        status = 1;
    }
    free(res.rows);
    return status;
}
