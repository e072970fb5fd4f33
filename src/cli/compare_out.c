/*
 * `pfor compare`: the files.  CSV (one row per measurement, the machine in
 * every row so that a row stands alone), JSON (machine, parameters, rows,
 * failures; jansson) and the plots (a generated gnuplot script run as a
 * child process; its data inline as datablocks, so the script is the whole
 * story and is kept next to the plot for anyone who wants to restyle it).
 *
 * Every function prints one line "pfor: compare: ..." and returns -1 when
 * it cannot write its file; the caller decides what that means for the
 * exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compare.h"

extern char **environ;

/* --- stop signals while the files are written ----------------------------- */

/* SIGINT, SIGTERM, SIGHUP or SIGQUIT in the middle of the files would end the
 * program with a temporary file beside a result and gnuplot still running,
 * orphaned, drawing into another.  Between cmp_files_begin and
 * cmp_files_end such a signal is only noted: the file being written is
 * finished or removed, gnuplot is killed and reaped, and cmp_files_end then
 * ends the program by that signal.  A signal that was ignored stays
 * ignored. */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static bool stop_caught[sizeof stop_signals / sizeof stop_signals[0]];
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

void cmp_files_begin(void)
{
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++) {
        struct sigaction old, sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        stop_caught[i] = sigaction(stop_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
                         sigaction(stop_signals[i], &sa, NULL) == 0;
    }
}

bool cmp_stop_requested(void)
{
    return stop_signal != 0;
}

void cmp_files_end(void)
{
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++)
        if (stop_caught[i])
            signal(stop_signals[i], SIG_DFL);
    int sig = stop_signal;
    if (!sig)
        return;
    fflush(stdout);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    raise(sig); /* default action now: ends the program */
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* --- CSV ----------------------------------------------------------------- */

/* A number, or an empty field for NAN. */
static void csv_num(FILE *f, double v, const char *fmt)
{
    fputc(',', f);
    if (!isnan(v))
        fprintf(f, fmt, v);
}

/* A field in double quotes (doubling the quotes inside). */
static void csv_str(FILE *f, const char *s)
{
    fputs(",\"", f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Results files are written whole or not at all: under a new name beside
 * them, renamed into place once complete.  That name for `path`, into tmp;
 * false (tmp "") when `path` is written in place instead: it is a link or
 * not a regular file (/dev/stdout, a pipe), which a rename would replace, or
 * the new name would not fit. */
static bool temp_beside(const char *path, char *tmp, size_t cap)
{
    struct stat st;
    tmp[0] = '\0';
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return false;
    if ((size_t)snprintf(tmp, cap, "%s.%ld.tmp", path, (long)getpid()) < cap)
        return true;
    tmp[0] = '\0';
    return false;
}

/* Open `path` for writing as temp_beside says (tmp gets the new name, or ""):
 * the new file with mode 0666 less the umask, never through a link.  NULL,
 * with the reason printed, if it cannot be made. */
static FILE *open_output(const char *path, char *tmp, size_t cap)
{
    FILE *f;
    if (!temp_beside(path, tmp, cap)) {
        f = fopen(path, "w");
    } else {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f && fd >= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
        }
    }
    if (!f)
        fprintf(stderr, "pfor: compare: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

/* Close f (from open_output) and, if everything was written (`ok`, and no
 * stream error), put it in place; otherwise remove it and say why.  0 or -1. */
static int close_output(FILE *f, const char *tmp, const char *path, bool ok)
{
    errno = 0;
    ok = ok && !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (ok && (!tmp[0] || rename(tmp, path) == 0))
        return 0;
    int e = errno ? errno : EIO;
    if (tmp[0])
        unlink(tmp);
    fprintf(stderr, "pfor: compare: cannot write %s: %s\n", path, strerror(e));
    return -1;
}

int cmp_write_csv(const struct cmp_config *c, const struct cmp_results *res, const char *path)
{
    char tmp[4200];
    FILE *f = open_output(path, tmp, sizeof tmp);
    if (!f)
        return -1;
    if (c->workload == CMP_HTTP)
        fputs("executor,workers,requests,latency_ms,wall_s,requests_per_s,p50_ms,p99_ms,errors,"
              "ideal_s,efficiency,cores,os\n",
              f);
    else
        fputs("executor,workers,tasks,bound,wall_s,tasks_per_s,primes,primes_ok,speedup,"
              "ideal_s,efficiency,errors,cores,os\n",
              f);
    double lat_ms = c->latency_known ? (c->latency_lo + c->latency_hi) / 2 * 1e3 : NAN;
    for (size_t i = 0; i < res->n_rows; i++) {
        const struct cmp_row *r = &res->rows[i];
        fprintf(f, "%s,%d,%llu", cmp_exec_names[r->exec], r->workers, (unsigned long long)r->n);
        if (c->workload == CMP_HTTP) {
            csv_num(f, lat_ms, "%.6g");
            csv_num(f, r->wall_s, "%.6f");
            csv_num(f, r->rate, "%.2f");
            csv_num(f, r->p50_ms, "%.3f");
            csv_num(f, r->p99_ms, "%.3f");
            fprintf(f, ",%llu", (unsigned long long)r->errors);
            csv_num(f, r->ideal_s, "%.6f");
            csv_num(f, r->efficiency, "%.4f");
        } else {
            fprintf(f, ",%llu", (unsigned long long)c->bound);
            csv_num(f, r->wall_s, "%.6f");
            csv_num(f, r->rate, "%.2f");
            fprintf(f, ",%llu,%s", (unsigned long long)r->primes, r->primes_ok ? "true" : "false");
            csv_num(f, r->speedup, "%.4f");
            csv_num(f, r->ideal_s, "%.6f");
            csv_num(f, r->efficiency, "%.4f");
            fprintf(f, ",%llu", (unsigned long long)r->errors);
        }
        fprintf(f, ",%d", res->cores);
        csv_str(f, res->os);
        fputc('\n', f);
    }
    return close_output(f, tmp, path, true);
}

/* --- JSON ---------------------------------------------------------------- */

/* The length of the UTF-8 sequence at s (n bytes left), or 0 if none
 * starts there (overlong forms, surrogates and code points past U+10FFFF
 * included). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* A JSON string of s.  jansson refuses text that is not UTF-8 (a --body in
 * Latin-1, a message cut inside a character), and a refused value would
 * drop its field: each byte that starts no valid sequence becomes '?'. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    size_t n = strlen(s);
    char *buf = malloc(n + 1);
    if (!buf)
        return json_null();
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len == 0) {
            buf[i++] = '?';
            continue;
        }
        memcpy(buf + i, s + i, len);
        i += len;
    }
    buf[n] = '\0';
    v = json_string(buf);
    free(buf);
    return v ? v : json_null();
}

static json_t *num_or_null(double v)
{
    return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

static json_t *exec_list(const struct cmp_config *c)
{
    json_t *a = json_array();
    for (size_t i = 0; i < c->n_exec; i++)
        json_array_append_new(a, json_string(cmp_exec_names[c->exec_order[i]]));
    return a;
}

static json_t *workers_of(const struct cmp_config *c)
{
    json_t *o = json_object();
    for (size_t i = 0; i < c->n_exec; i++) {
        enum cmp_exec e = c->exec_order[i];
        uint64_t ws[CMP_MAX_WORKERS];
        size_t n = cmp_worker_list(c, e, ws);
        json_t *a = json_array();
        for (size_t k = 0; k < n; k++)
            json_array_append_new(a, json_integer((json_int_t)ws[k]));
        json_object_set_new(o, cmp_exec_names[e], a);
    }
    return o;
}

static json_t *parameters(const struct cmp_config *c, const struct cmp_results *res)
{
    json_t *p = json_object();
    json_object_set_new(p, "executors", exec_list(c));
    json_object_set_new(p, "workers", workers_of(c));
    json_object_set_new(p, "quick", json_boolean(c->quick));
    json_object_set_new(p, "reps", json_integer((json_int_t)c->reps));
    if (c->workload == CMP_CPU) {
        json_object_set_new(p, "kernel",
                            json_string("count the primes below bound by trial "
                                        "division, split into equal ranges"));
        json_object_set_new(p, "bound", json_integer((json_int_t)c->bound));
        json_object_set_new(p, "tasks", json_integer((json_int_t)c->tasks));
        json_object_set_new(p, "expected_primes", json_integer((json_int_t)res->expected_primes));
        return p;
    }
    json_object_set_new(p, "server", json_string(c->builtin ? "built-in" : "url"));
    json_object_set_new(p, "url", json_text(c->http.url));
    json_object_set_new(p, "method", json_string("POST"));
    json_object_set_new(p, "body_template", json_text(c->http.body));
    if (c->latency_known) {
        json_t *l = json_object();
        json_object_set_new(l, "min", json_real(c->latency_lo * 1e3));
        json_object_set_new(l, "max", json_real(c->latency_hi * 1e3));
        json_object_set_new(p, "latency_ms", l);
    } else {
        json_object_set_new(p, "latency_ms", json_null());
    }
    json_object_set_new(p, "error_rate", json_real(c->error_rate));
    json_object_set_new(p, "timeout_s", json_real(c->http.timeout));
    json_t *s = json_array();
    for (size_t i = 0; i < c->n_sizes; i++)
        json_array_append_new(s, json_integer((json_int_t)c->sizes[i]));
    json_object_set_new(p, "sizes", s);
    return p;
}

static json_t *row_json(const struct cmp_config *c, const struct cmp_row *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "executor", json_string(cmp_exec_names[r->exec]));
    json_object_set_new(o, "workers", json_integer(r->workers));
    json_object_set_new(o, "wall_s", num_or_null(r->wall_s));
    json_object_set_new(o, "reps", json_integer(r->reps));
    json_object_set_new(o, "wall_min_s", num_or_null(r->wall_min_s));
    json_object_set_new(o, "wall_max_s", num_or_null(r->wall_max_s));
    json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
    if (c->workload == CMP_HTTP) {
        json_object_set_new(o, "requests", json_integer((json_int_t)r->n));
        json_object_set_new(o, "requests_per_s", num_or_null(r->rate));
        json_object_set_new(o, "p50_ms", num_or_null(r->p50_ms));
        json_object_set_new(o, "p99_ms", num_or_null(r->p99_ms));
    } else {
        json_object_set_new(o, "tasks", json_integer((json_int_t)r->n));
        json_object_set_new(o, "tasks_per_s", num_or_null(r->rate));
        json_object_set_new(o, "primes", json_integer((json_int_t)r->primes));
        json_object_set_new(o, "primes_ok", json_boolean(r->primes_ok));
        json_object_set_new(o, "speedup", num_or_null(r->speedup));
    }
    json_object_set_new(o, "ideal_s", num_or_null(r->ideal_s));
    json_object_set_new(o, "efficiency", num_or_null(r->efficiency));
    return o;
}

int cmp_write_json(const struct cmp_config *c, const struct cmp_results *res, const char *path)
{
    json_t *root = json_object();
    json_object_set_new(root, "tool", json_string("pfor compare"));
    json_object_set_new(root, "pfor_version", json_string(PF_VERSION_STRING));
    json_object_set_new(root, "workload", json_string(c->workload == CMP_HTTP ? "http" : "cpu"));
    json_object_set_new(root, "started_utc", json_string(res->started_utc));
    json_object_set_new(root, "total_s", json_real(res->total_s));
    json_t *m = json_object();
    json_object_set_new(m, "cores", json_integer(res->cores));
    json_object_set_new(m, "os", json_text(res->os));
    json_object_set_new(m, "cpu", json_text(res->cpu_model));
    json_object_set_new(m, "loadavg_1m", num_or_null(res->loadavg));
    json_object_set_new(m, "libcurl", json_text(pf_http_version()));
    json_object_set_new(root, "machine", m);
    json_object_set_new(root, "parameters", parameters(c, res));
    json_t *rows = json_array();
    for (size_t i = 0; i < res->n_rows; i++)
        json_array_append_new(rows, row_json(c, &res->rows[i]));
    json_object_set_new(root, "results", rows);
    json_t *fail = json_object();
    json_object_set_new(fail, c->workload == CMP_HTTP ? "requests" : "tasks",
                        json_integer((json_int_t)res->requests));
    json_object_set_new(fail, "failed", json_integer((json_int_t)res->failed));
    json_t *reasons = json_array();
    for (size_t i = 0; i < res->n_reasons; i++) {
        const struct cmp_reason *r = &res->reasons[i];
        json_t *o = json_object();
        json_object_set_new(o, "count", json_integer((json_int_t)r->count));
        json_object_set_new(o, "code", json_string(pf_err_name(r->code)));
        json_object_set_new(o, "task_code", json_integer(r->task_code));
        json_object_set_new(o, "message", json_text(r->message));
        json_object_set_new(o, "first_in", json_text(r->where));
        json_array_append_new(reasons, o);
    }
    json_object_set_new(fail, "reasons", reasons);
    json_object_set_new(fail, "other", json_integer((json_int_t)res->other_failures));
    json_object_set_new(root, "failures", fail);
    char tmp[4200];
    FILE *f = open_output(path, tmp, sizeof tmp);
    if (!f) {
        json_decref(root);
        return -1;
    }
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(root);
    return close_output(f, tmp, path, rc == 0);
}

/* --- plots --------------------------------------------------------------- */

static const char *const exec_colors[CMP_N_EXEC] = {"#7f7f7f", "#d62728", "#1f77b4", "#2ca02c",
                                                    "#9467bd"};
static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};

/* A series: the rows of one executor with one worker count. */
struct series {
    enum cmp_exec exec;
    int workers;
    const char *color;
};

static size_t find_series(const struct cmp_results *res, struct series *out, size_t cap)
{
    size_t n = 0;
    int per_exec[CMP_N_EXEC] = {0};
    for (size_t i = 0; i < res->n_rows; i++) {
        const struct cmp_row *r = &res->rows[i];
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = out[k].exec == r->exec && out[k].workers == r->workers;
        if (!seen && n < cap) {
            out[n++] = (struct series){r->exec, r->workers, NULL};
            per_exec[r->exec]++;
        }
    }
    bool one_each = true;
    for (int e = 0; e < CMP_N_EXEC; e++)
        one_each = one_each && per_exec[e] <= 1;
    for (size_t k = 0; k < n; k++)
        out[k].color =
            one_each ? exec_colors[out[k].exec] : palette[k % (sizeof palette / sizeof palette[0])];
    return n;
}

/* The escape for c inside a gnuplot string in double quotes, or NULL if c
 * stands for itself.  (Single quotes, where '' is a quote, would be simpler,
 * but gnuplot 5.4 misreads a run of them, and a name that starts with one.) */
static const char *gp_escape(char c)
{
    switch (c) {
    case '\\':
        return "\\\\";
    case '"':
        return "\\\"";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    default:
        return NULL;
    }
}

/* A gnuplot string literal, in double quotes. */
static void gp_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        const char *e = gp_escape(*s);
        if (e)
            fputs(e, f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void series_title(char *buf, size_t size, const struct series *s)
{
    if (s->exec == CMP_SEQUENTIAL)
        snprintf(buf, size, "sequential");
    else
        snprintf(buf, size, "%s (%d %s)", cmp_exec_names[s->exec], s->workers,
                 s->exec == CMP_EVENT ? "in flight"
                 : s->workers == 1    ? "worker"
                                      : "workers");
}

static void write_http_data(FILE *f, const struct cmp_results *res, const struct series *ss,
                            size_t n_ss)
{
    for (size_t k = 0; k < n_ss; k++) {
        fprintf(f, "$s%zu << EOD\n", k);
        for (size_t i = 0; i < res->n_rows; i++) {
            const struct cmp_row *r = &res->rows[i];
            if (r->exec != ss[k].exec || r->workers != ss[k].workers)
                continue;
            fprintf(f, "%llu %.6g ", (unsigned long long)r->n, r->wall_s);
            if (isnan(r->ideal_s) || r->ideal_s <= 0)
                fputs("NaN\n", f);
            else
                fprintf(f, "%.6g\n", r->ideal_s);
        }
        fputs("EOD\n", f);
    }
}

static void write_http_plot(FILE *f, const struct cmp_config *c, const struct cmp_results *res,
                            const struct series *ss, size_t n_ss)
{
    char title[512];
    if (c->builtin)
        snprintf(title, sizeof title,
                 "pfor compare: POST requests to the built-in mock API, %g ms latency, %d cores",
                 (c->latency_lo + c->latency_hi) / 2 * 1e3, res->cores);
    else
        snprintf(title, sizeof title, "pfor compare: POST requests to %.200s, %d cores",
                 c->http.url, res->cores);
    fputs("set title ", f);
    gp_str(f, title);
    fputs("\nset xlabel 'number of requests'\nset ylabel 'wall time (s)'\n"
          "set logscale xy\nset grid xtics ytics mxtics mytics lc rgb '#e0e0e0'\n"
          "set key top left box opaque\nset format y '%g'\nset format x '%g'\n",
          f);
    bool any_ideal = false;
    double xmin = INFINITY, xmax = 0, ymin = INFINITY, ymax = 0;
    for (size_t i = 0; i < res->n_rows; i++) {
        const struct cmp_row *r = &res->rows[i];
        bool ideal = !isnan(r->ideal_s) && r->ideal_s > 0;
        any_ideal = any_ideal || ideal;
        xmin = fmin(xmin, (double)r->n);
        xmax = fmax(xmax, (double)r->n);
        if (r->wall_s > 0) {
            ymin = fmin(ymin, r->wall_s);
            ymax = fmax(ymax, r->wall_s);
        }
        if (ideal) {
            ymin = fmin(ymin, r->ideal_s);
            ymax = fmax(ymax, r->ideal_s);
        }
    }
    /* A margin around the points, so that nothing sits on an axis. */
    if (xmax > 0)
        fprintf(f, "set xrange [%.6g:%.6g]\n", xmin / 1.6, xmax * 1.6);
    if (ymax > 0)
        fprintf(f, "set yrange [%.6g:%.6g]\n", ymin / 2, ymax * 2);
    fputs("plot ", f);
    for (size_t k = 0; k < n_ss; k++) {
        char t[96];
        series_title(t, sizeof t, &ss[k]);
        fprintf(f, "%s$s%zu using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc rgb '%s' title ",
                k ? ", \\\n     " : "", k, ss[k].color);
        gp_str(f, t);
        if (any_ideal)
            fprintf(f, ", \\\n     $s%zu using 1:3 with lines lw 1.5 dt 2 lc rgb '%s' notitle", k,
                    ss[k].color);
    }
    if (any_ideal)
        fputs(", \\\n     NaN with lines lw 1.5 dt 2 lc rgb 'black' "
              "title 'ideal: ceil(N / workers) x latency'",
              f);
    fputc('\n', f);
}

static void write_cpu_data(FILE *f, const struct cmp_results *res, const struct series *ss,
                           size_t n_ss)
{
    int max_w = 1;
    for (size_t i = 0; i < res->n_rows; i++)
        max_w = res->rows[i].workers > max_w ? res->rows[i].workers : max_w;
    fputs("$ideal << EOD\n", f);
    for (int w = 1; w <= max_w; w++)
        fprintf(f, "%d %d\n", w, w < res->cores ? w : res->cores);
    fputs("EOD\n", f);
    /* One block per executor: workers, wall, speedup. */
    for (int e = 0; e < CMP_N_EXEC; e++) {
        bool any = false;
        for (size_t k = 0; k < n_ss; k++)
            any = any || ss[k].exec == (enum cmp_exec)e;
        if (!any)
            continue;
        fprintf(f, "$e%d << EOD\n", e);
        for (size_t i = 0; i < res->n_rows; i++) {
            const struct cmp_row *r = &res->rows[i];
            if (r->exec != (enum cmp_exec)e)
                continue;
            fprintf(f, "%d %.6g ", r->workers, r->wall_s);
            if (isnan(r->speedup))
                fputs("NaN\n", f);
            else
                fprintf(f, "%.6g\n", r->speedup);
        }
        fputs("EOD\n", f);
    }
}

static void write_cpu_plot(FILE *f, const struct cmp_config *c, const struct cmp_results *res,
                           const struct series *ss, size_t n_ss)
{
    int max_w = 1;
    double seq_wall = NAN, top_speedup = res->cores;
    for (size_t i = 0; i < res->n_rows; i++) {
        if (res->rows[i].workers > max_w)
            max_w = res->rows[i].workers;
        if (!isnan(res->rows[i].speedup))
            top_speedup = fmax(top_speedup, res->rows[i].speedup);
        if (res->rows[i].exec == CMP_SEQUENTIAL)
            seq_wall = res->rows[i].wall_s;
    }
    bool exec_present[CMP_N_EXEC] = {false};
    for (size_t k = 0; k < n_ss; k++)
        exec_present[ss[k].exec] = true;
    char title[256];
    snprintf(title, sizeof title,
             "pfor compare --workload cpu: primes below %llu in %llu tasks, %d cores",
             (unsigned long long)c->bound, (unsigned long long)c->tasks, res->cores);
    fputs("set multiplot layout 1,2 title ", f);
    gp_str(f, title);
    fprintf(f,
            "\nset grid lc rgb '#e0e0e0'\nset xlabel 'workers'\nset xrange [0.5:%d.5]\n"
            "set xtics 1\nset key top right box opaque\n",
            max_w);
    /* time against workers */
    fputs("set ylabel 'wall time (s)'\nset yrange [0:*]\nplot ", f);
    bool first = true;
    if (exec_present[CMP_SEQUENTIAL] && !isnan(seq_wall)) {
        fprintf(f, "%.6g with lines lw 2 dt 3 lc rgb '%s' title 'sequential'", seq_wall,
                exec_colors[CMP_SEQUENTIAL]);
        first = false;
    }
    for (int e = CMP_PROCESSES; e <= CMP_THREADS; e++) {
        if (!exec_present[e])
            continue;
        fprintf(f, "%s$e%d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title '%s'",
                first ? "" : ", \\\n     ", e, exec_colors[e], cmp_exec_names[e]);
        first = false;
    }
    fputc('\n', f);
    /* speedup against workers */
    fprintf(f,
            "set ylabel 'speedup over sequential'\nset yrange [0:%.3g]\n"
            "set key bottom right box opaque\n"
            "plot $ideal using 1:2 with lines lw 1.5 dt 2 lc rgb 'black' "
            "title 'ideal: min(workers, %d cores)'",
            top_speedup * 1.15, res->cores);
    for (int e = CMP_PROCESSES; e <= CMP_THREADS; e++) {
        if (!exec_present[e])
            continue;
        fprintf(f, ", \\\n     $e%d using 1:3 with linespoints lw 2 pt 7 lc rgb '%s' title '%s'", e,
                exec_colors[e], cmp_exec_names[e]);
    }
    fputs("\nunset multiplot\n", f);
}

/* The script's variables holding its two output names. */
static const char *const out_vars[2] = {"out_svg", "out_png"};

/* Write the script: data once, then one plot per output. */
static int write_script(const char *path, const struct cmp_config *c, const struct cmp_results *res,
                        const char *svg, const char *png, const char *png_terminal)
{
    char tmp[4200];
    FILE *f = open_output(path, tmp, sizeof tmp);
    if (!f)
        return -1;
    struct series ss[64];
    size_t n_ss = find_series(res, ss, 64);
    fputs("# gnuplot script written by `pfor compare`; run: gnuplot THIS_FILE\n", f);
    if (c->workload == CMP_HTTP)
        write_http_data(f, res, ss, n_ss);
    else
        write_cpu_data(f, res, ss, n_ss);
    const char *outs[2] = {svg, png};
    for (int k = 0; k < 2; k++) {
        if (!outs[k])
            continue;
        if (k == 0)
            fputs("set terminal svg size 1000,640 dynamic enhanced font 'Sans,13' "
                  "background rgb 'white'\n",
                  f);
        else
            fprintf(f,
                    "set terminal %s size 1200,768 enhanced font 'Sans,12' "
                    "background rgb 'white'\n",
                    png_terminal);
        /* `gnuplot -e "out_svg='...'"` redirects it (see cmp_plot); run
         * plainly, the script draws to the names given. */
        fprintf(f, "if (!exists(\"%s\")) %s = ", out_vars[k], out_vars[k]);
        gp_str(f, outs[k]);
        fprintf(f, "\nset output %s\n", out_vars[k]);
        if (c->workload == CMP_HTTP)
            write_http_plot(f, c, res, ss, n_ss);
        else
            write_cpu_plot(f, c, res, ss, n_ss);
        fputs("set output\nreset\n", f);
    }
    return close_output(f, tmp, path, true);
}

/* Append `name="value"; ` (gp_str's quoting) to buf, which has room for it:
 * twice the value's length, and 16 bytes. */
static void gp_assign(char *buf, size_t size, const char *name, const char *value)
{
    size_t n = strlen(buf);
    n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s=\"", name);
    for (; *value && n + 4 < size; value++) {
        const char *e = gp_escape(*value);
        if (e) {
            buf[n++] = e[0];
            buf[n++] = e[1];
        } else {
            buf[n++] = *value;
        }
    }
    snprintf(buf + n, n < size ? size - n : 0, "\"; ");
}

/* How long gnuplot may draw: PFOR_GNUPLOT_TIMEOUT seconds (0.1 to 86400),
 * else GNUPLOT_LIMIT_S.  A sweep's plots take well under a second; a
 * gnuplot that hangs must not hang the run. */
#define GNUPLOT_LIMIT_S 60.0
static double gnuplot_limit_s(void)
{
    const char *env = getenv("PFOR_GNUPLOT_TIMEOUT");
    char *end;
    double v = env && *env ? strtod(env, &end) : 0;
    return env && *env && !*end && v >= 0.1 && v <= 86400 ? v : GNUPLOT_LIMIT_S;
}

/* Run `gnuplot -e SETS script`, its stderr into errpath.  Exit status, -1
 * if it could not be started, -2 if a stop signal came meanwhile, -3 if it
 * ran past gnuplot_limit_s() (then gnuplot is killed and reaped). */
static int run_gnuplot(const char *script, const char *sets, const char *errpath)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {"gnuplot", "-e", (char *)sets, (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int status;
    double deadline = cmp_now() + gnuplot_limit_s();
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return -1;
        bool late = cmp_now() > deadline;
        if (stop_signal || late) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            return stop_signal ? -2 : -3;
        }
        struct timespec tick = {0, 5000000}; /* polled: a signal must not be missed */
        nanosleep(&tick, NULL);
    }
    if (stop_signal)
        return -2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The first line of gnuplot's complaint, for the one-line error. */
static void first_error_line(const char *errpath, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(errpath, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* skip gnuplot's echo of the offending line and its caret */
        if (strstr(line, "line ") || strstr(line, "rror")) {
            snprintf(buf, size, "%s", line);
            break;
        }
        if (!buf[0])
            snprintf(buf, size, "%s", line);
    }
    fclose(f);
}

bool cmp_plot_script_name(const char *plot, char *buf, size_t cap)
{
    const char *dot = strrchr(plot, '.');
    size_t stem = dot ? (size_t)(dot - plot) : strlen(plot);
    return (size_t)snprintf(buf, cap, "%.*s.gp", (int)stem, plot) < cap;
}

int cmp_plot(const struct cmp_config *c, const struct cmp_results *res, const char *svg,
             const char *png)
{
    if (!svg && !png)
        return 0;
    if (stop_signal)
        return -1;
    /* The script lives next to the first plot. */
    char script[4200], errpath[64];
    if (!cmp_plot_script_name(svg ? svg : png, script, sizeof script)) {
        fprintf(stderr, "pfor: compare: the plot's name is too long\n");
        return -1;
    }
    snprintf(errpath, sizeof errpath, "/tmp/pfor-gnuplot-XXXXXX");
    int efd = mkstemp(errpath);
    if (efd < 0) {
        fprintf(stderr, "pfor: compare: cannot make a temporary file: %s\n", strerror(errno));
        return -1;
    }
    close(efd);
    /* gnuplot draws into new names beside the plots, renamed into place
     * once it succeeded: a failed or interrupted run leaves no half image.
     * A name that is a link or a device is drawn to in place. */
    const char *outs[2] = {svg, png};
    /* sets: both assignments, each name twice its length in the worst case */
    char tmps[2][4200], sets[2 * (2 * 4200 + 16)] = "";
    for (int k = 0; k < 2; k++) {
        tmps[k][0] = '\0';
        if (outs[k] && temp_beside(outs[k], tmps[k], sizeof tmps[k]))
            gp_assign(sets, sizeof sets, out_vars[k], tmps[k]);
    }
    int rc = -1;
    const char *terms[] = {"pngcairo", "png"};
    for (int t = 0; t < 2; t++) {
        if (write_script(script, c, res, svg, png, terms[t]) != 0)
            break; /* said why */
        rc = run_gnuplot(script, sets, errpath);
        if (rc == -2)
            break; /* stopping: nothing to say */
        if (rc == -3) {
            fprintf(stderr,
                    "pfor: compare: gnuplot did not finish within %g s (killed); no plot "
                    "drawn\n",
                    gnuplot_limit_s());
            break;
        }
        if (rc == -1) {
            fprintf(stderr, "pfor: compare: cannot run gnuplot (install gnuplot-nox); no plot "
                            "drawn\n");
            break;
        }
        if (rc == 0 || !png)
            break; /* only the PNG terminal has a fallback */
    }
    if (rc > 0) {
        char why[512];
        first_error_line(errpath, why, sizeof why);
        fprintf(stderr, "pfor: compare: gnuplot failed (status %d): %s\n", rc, why);
    }
    unlink(errpath);
    for (int k = 0; k < 2; k++) {
        if (!tmps[k][0])
            continue;
        if (rc == 0 && rename(tmps[k], outs[k]) == 0)
            continue;
        if (rc == 0) {
            fprintf(stderr, "pfor: compare: cannot write %s: %s\n", outs[k], strerror(errno));
            rc = -1;
        }
        unlink(tmps[k]);
    }
    return rc == 0 ? 0 : -1;
}
