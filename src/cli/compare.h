/*
 * `pfor compare`: what its files share.
 *
 *   cmd_compare.c   options, the sweep, the table, the summary, exit status
 *   compare_run.c   one measurement (an executor, a worker count, a size),
 *                   the CPU kernel, the progress bar
 *   compare_out.c   CSV, JSON and the gnuplot plots
 */
#ifndef PF_CLI_COMPARE_H
#define PF_CLI_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pfor/pfor.h"

enum cmp_workload { CMP_HTTP = 0, CMP_CPU = 1 };

/* The executors of the comparison, in the order of the article's graph. */
enum cmp_exec { CMP_SEQUENTIAL = 0, CMP_PROCESSES, CMP_THREADS, CMP_EVENT, CMP_MPI, CMP_N_EXEC };

/* Worker ranks x threads per rank when this `pfor` runs under mpirun with
 * MPI support; 0 otherwise (main.c). */
int cmp_mpi_workers(void);

extern const char *const cmp_exec_names[CMP_N_EXEC];

#define CMP_MAX_SIZES   64
#define CMP_MAX_WORKERS 64
#define CMP_MAX_REASONS 8
#define CMP_MAX_REPS    15

/* Everything the options decided.  Immutable once the sweep starts. */
struct cmp_config {
    enum cmp_workload workload;
    bool exec_on[CMP_N_EXEC];
    enum cmp_exec exec_order[CMP_N_EXEC]; /* as listed on the command line */
    size_t n_exec;
    uint64_t sizes[CMP_MAX_SIZES]; /* HTTP: requests per measurement */
    size_t n_sizes;
    uint64_t workers[CMP_MAX_WORKERS]; /* set or swept; n_workers 0: per-kind defaults */
    size_t n_workers;
    uint64_t in_flight;      /* event-driven mode's transfers at once */
    uint64_t event_loops;    /* event-driven mode's loops (threads); default one per core */
    bool event_uses_workers; /* --workers without --in-flight: event follows --workers */
    uint64_t fd_limit;       /* HTTP: RLIMIT_NOFILE once raised; 0: no cap (cmp_conn_cap) */
    bool quick;
    uint64_t reps; /* repetitions per measurement; the median is kept */
    /* HTTP */
    bool builtin;                  /* the in-process mock API, else --url */
    double latency_lo, latency_hi; /* the built-in server's; with --url, as told */
    bool latency_known;            /* false: --url without --latency (no ideal) */
    double error_rate;
    uint16_t port;
    pf_http_config http; /* URL (set once the server listens), body, time limits */
    /* CPU */
    uint64_t bound; /* count the primes below this */
    uint64_t tasks; /* split into this many ranges */
    /* output */
    const char *out_dir;
    const char *csv_path, *json_path, *plot_path; /* NULL: not written */
    bool plot_svg_default, plot_png_default;      /* the default run's two plots */
    char csv_buf[4096], json_buf[4096], svg_buf[4096], png_buf[4096];
};

/* One line of the table: one executor, worker count and size. */
struct cmp_row {
    enum cmp_exec exec;
    int workers;   /* threads/processes; in-flight transfers for event */
    uint64_t n;    /* HTTP: requests; CPU: tasks */
    double wall_s; /* executor created .. shut down (event: the whole run) */
    double rate;   /* HTTP: requests/s; CPU: tasks/s */
    double p50_ms; /* request latency, successful requests; NAN if none */
    double p99_ms;
    uint64_t errors;   /* failed requests (or tasks), over all repetitions */
    int reps;          /* repetitions; the row is the one with the median wall */
    double wall_min_s; /* over the repetitions */
    double wall_max_s;
    double ideal_s;    /* HTTP: ceil(n / workers) x latency; NAN if unknown or 0 */
    double efficiency; /* ideal / wall (CPU: speedup / workers); NAN if unknown */
    /* CPU */
    uint64_t primes; /* the count the tasks returned */
    bool primes_ok;  /* equals the sieve's count */
    double speedup;  /* sequential wall / this wall; NAN without a sequential row */
};

/* Why requests failed, grouped. */
struct cmp_reason {
    int code;      /* pf code of the future (PF_ETASK, PF_EWORKERDIED, ...) */
    int task_code; /* the task's code: HTTP status or PF_ECONNECT, ... */
    uint64_t count;
    char where[64];    /* the first measurement it happened in */
    char message[256]; /* the first message */
};

struct cmp_results {
    struct cmp_row *rows;
    size_t n_rows, cap_rows;
    struct cmp_reason reasons[CMP_MAX_REASONS];
    size_t n_reasons;
    uint64_t other_failures; /* failures of a kind past CMP_MAX_REASONS */
    uint64_t requests, failed;
    uint64_t expected_primes;
    bool cpu_wrong; /* some count differed from the sieve's */
    /* the machine */
    int cores;
    double loadavg; /* 1-minute load average at the start; NAN if unknown */
    char os[160];
    char cpu_model[128];
    char started_utc[32];
    double total_s;
};

/* The progress bar on stderr (only when stderr is a terminal). */
struct cmp_progress {
    bool enabled;
    uint64_t last_ns;
    char label[64];
};

void cmp_progress_draw(struct cmp_progress *p, uint64_t done, uint64_t total, uint64_t failed,
                       bool force);
void cmp_progress_clear(struct cmp_progress *p);

/* The worker count of `exec` when --workers is not given. */
int cmp_default_workers(const struct cmp_config *c, enum cmp_exec exec);

/* The worker counts to run `exec` with as the options ask (at most
 * CMP_MAX_WORKERS), before the descriptor cap. */
size_t cmp_worker_list_asked(const struct cmp_config *c, enum cmp_exec exec, uint64_t *out);

/* The most workers (event: transfers in flight) `exec` can run with inside
 * c->fd_limit: each holds descriptors in this process (its connection, and
 * the built-in server's end of it); UINT64_MAX when nothing caps it (CPU,
 * fd_limit 0, processes against --url, sequential, mpi). */
uint64_t cmp_conn_cap(const struct cmp_config *c, enum cmp_exec exec);

/* The worker counts `exec` really runs with: cmp_worker_list_asked, each
 * lowered to cmp_conn_cap, without repeats.  What the table, the JSON and
 * the planned-request count use. */
size_t cmp_worker_list(const struct cmp_config *c, enum cmp_exec exec, uint64_t *out);

/* Run one HTTP measurement into *row (failures grouped into res). */
int cmp_run_http(const struct cmp_config *c, enum cmp_exec exec, int workers, uint64_t n,
                 struct cmp_row *row, struct cmp_results *res, struct cmp_progress *pb);
/* Run one CPU measurement into *row. */
int cmp_run_cpu(const struct cmp_config *c, enum cmp_exec exec, int workers, struct cmp_row *row,
                struct cmp_results *res, struct cmp_progress *pb);
/* The number of primes below `bound`, by a sieve (the check). */
uint64_t cmp_sieve_count(uint64_t bound);

/* Record one failure of a kind; `where` says which measurement. */
void cmp_reason_add(struct cmp_results *res, int code, int task_code, const char *message,
                    const char *where);

/* Around the writing of the files: SIGINT, SIGTERM, SIGHUP and SIGQUIT
 * (where not ignored) are held off, so that no temporary file or gnuplot is
 * left behind; cmp_files_end ends the program by such a signal if one
 * came.  cmp_stop_requested: one came (skip what is left to write). */
void cmp_files_begin(void);
bool cmp_stop_requested(void);
void cmp_files_end(void);

/* Files.  Each returns 0, or -1 after printing one line on stderr. */
int cmp_write_csv(const struct cmp_config *c, const struct cmp_results *res, const char *path);
int cmp_write_json(const struct cmp_config *c, const struct cmp_results *res, const char *path);
/* svg and/or png (either may be NULL). */
/* The gnuplot script's name for a plot FILE.svg / FILE.png: FILE.gp, beside
 * it.  false if it does not fit in cap bytes. */
bool cmp_plot_script_name(const char *plot, char *buf, size_t cap);
int cmp_plot(const struct cmp_config *c, const struct cmp_results *res, const char *svg,
             const char *png);

/* Seconds on the monotonic clock. */
double cmp_now(void);

#endif /* PF_CLI_COMPARE_H */
