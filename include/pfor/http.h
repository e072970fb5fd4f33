/*
 * The HTTP workload: POST a small JSON body to a URL through libcurl, the
 * I/O-bound loop of the article, from any executor or from one thread with
 * many transfers in flight.
 *
 * On an executor, each worker keeps one HTTP client (one curl handle, one
 * kept-alive connection), made by the worker initializer:
 *
 *     pf_http_config cfg;
 *     pf_http_config_init(&cfg, "http://127.0.0.1:8080/api/users");
 *     pf_executor_opts o = {.max_workers = PF_DEFAULT_WORKERS,
 *                           .initializer = pf_http_worker_init,
 *                           .finalizer = pf_http_worker_fini,
 *                           .init_arg = &cfg, .init_arg_len = sizeof cfg};
 *     pf_executor_create(&ex, PF_THREADS, &o);          // or PF_PROCESSES, ...
 *     uint64_t i = 7;                                   // the request number
 *     pf_submit(ex, pf_http_post_task, &i, sizeof i, &f);
 *     // f's result: a pf_http_record; a failed request fails f (PF_ETASK)
 *
 * The event-driven mode runs the same requests through libcurl's multi
 * interface in the calling thread, up to max_in_flight at once:
 *
 *     pf_http_record *recs = calloc(n, sizeof *recs);
 *     pf_http_run_multi(&cfg, n, 500, NULL, recs);
 *
 * A request never aborts a run: every failure (connection refused, time-out,
 * a non-2xx answer, a server that went away) is reported for that request
 * only.  Requests use HTTP/1.1 with keep-alive and TCP_NODELAY; proxies from
 * the environment are honoured except for loopback addresses.
 */
#ifndef PFOR_HTTP_H
#define PFOR_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "pfor/task.h"
#include "pfor/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_HTTP_URL_MAX  2048 /* bytes of a URL, with its terminating NUL */
#define PF_HTTP_BODY_MAX 1024 /* bytes of a body template, with its NUL */

/* The body of the article's requests: a small JSON object.  Each "{n}" in a
 * body template becomes the request's number. */
#define PF_HTTP_DEFAULT_BODY "{\"id\": {n}, \"name\": \"item-{n}\", \"tags\": [\"a\", \"b\"]}"

/* What every request of a run does.  Plain bytes without pointers, so that
 * it can be an executor's init_arg (copied to every worker, processes
 * included).  Fill it with pf_http_config_init(); zero timeouts mean the
 * defaults. */
typedef struct pf_http_config {
    char url[PF_HTTP_URL_MAX];   /* http:// or https:// */
    char body[PF_HTTP_BODY_MAX]; /* template; "{n}" -> request number */
    double timeout;              /* seconds for a whole request; 0: 30 */
    double connect_timeout;      /* seconds to connect; 0: 5 (never above timeout) */
} pf_http_config;

/* Zero *cfg and set its URL and the default body.  PF_EINVAL for a NULL
 * argument, a URL that is empty, too long or not http:// or https://. */
PF_EXTERN int pf_http_config_init(pf_http_config *cfg, const char *url);

/* Set the body template.  PF_EINVAL if it does not fit (PF_HTTP_BODY_MAX). */
PF_EXTERN int pf_http_config_set_body(pf_http_config *cfg, const char *body_template);

/* The outcome of one request. */
typedef struct pf_http_record {
    int32_t status;    /* the HTTP status, 0 when no answer came */
    int32_t error;     /* 0 for a 2xx answer; else PF_EHTTP (an answer that is not
                          2xx, or a connection lost mid-request), PF_ECONNECT (no
                          connection: refused, unresolvable) or PF_ETIMEDOUT */
    int32_t curl_code; /* libcurl's CURLcode for the transfer (0: CURLE_OK) */
    int32_t connects;  /* connections this request opened (0: it reused one) */
    int32_t worker;    /* the worker index that ran it (-1 in pf_http_run_multi) */
    int32_t reserved;  /* 0 */
    double seconds;    /* latency: from the start of the transfer to its end */
} pf_http_record;

/* One line describing a record into buf: "HTTP 201", "HTTP 500" for an
 * answer; else what failed and libcurl's words for it ("cannot connect
 * (...)", "timed out (...)", "connection lost (...)"); returns buf. */
PF_EXTERN const char *pf_http_describe(const pf_http_record *r, char *buf, size_t size);

/* Initialise libcurl (curl_global_init) now rather than at the first
 * request.  Optional; call it at the top of main(), before pf_init(), so
 * that the fork server and every worker process inherit an initialised
 * libcurl instead of paying for it each (milliseconds: the TLS library).
 * It starts no thread.  PF_OK or PF_EHTTP; safe to call again. */
PF_EXTERN int pf_http_init(void);

/* libcurl's version line ("libcurl/7.88.1 OpenSSL/3.0 ..."). */
PF_EXTERN const char *pf_http_version(void);

/*
 * A client: one curl handle and its connection, reused by every request.
 * Not thread-safe: one per thread (the worker initializer makes one per
 * worker).
 */
typedef struct pf_http_client pf_http_client;

/* Make a client for cfg (copied).  Initialises libcurl once per process
 * (thread-safe).  PF_EINVAL for a bad cfg, PF_ENOMEM, PF_EHTTP if libcurl
 * cannot start. */
PF_EXTERN int pf_http_client_create(pf_http_client **out, const pf_http_config *cfg);
/* Free a client and close its connection; NULL is a no-op. */
PF_EXTERN void pf_http_client_destroy(pf_http_client *c);

/* POST request number n: *rec gets the outcome (rec->worker is -1).
 * Returns 0 for a 2xx answer, else rec->error; `msg` (may be NULL) gets a
 * one-line explanation, with the start of the answer's body for a non-2xx. */
PF_EXTERN int pf_http_client_post(pf_http_client *c, uint64_t n, pf_http_record *rec, char *msg,
                                  size_t msg_size);

/* The executor initializer and finalizer: the worker's state is a
 * pf_http_client made from the pf_http_config passed as init_arg
 * (init_arg_len must be sizeof(pf_http_config)). */
PF_EXTERN int pf_http_worker_init(void **state, const void *arg, size_t arg_len, int worker_index);
PF_EXTERN void pf_http_worker_fini(void *state, int worker_index);

/* The task: its argument is the request number (a uint64_t).  Result: a
 * pf_http_record, for a 2xx answer.  Any other outcome fails the task
 * (pf_future_result gives PF_ETASK) with pf_error_info.task_code = the HTTP
 * status for an answer that is not 2xx, else PF_ECONNECT, PF_ETIMEDOUT or
 * PF_EHTTP, and a message that says what happened.  Needs the worker state
 * of pf_http_worker_init (PF_EINVAL without it).  Registered by name. */
PF_EXTERN int pf_http_post_task(pf_task *t, const void *arg, size_t arg_len);

/*
 * The event-driven mode.
 */

/* Called after each request; keep it short. */
typedef void (*pf_http_progress_fn)(size_t done, size_t failed, void *user);

#define PF_HTTP_MULTI_MAX_THREADS 256

typedef struct pf_http_multi_opts {
    /* Called after each request with the counts so far, one call at a time
     * (from the loop that finished it); may be NULL. */
    pf_http_progress_fn progress;
    void *progress_user;
    /* Event loops, each on a thread (the first on the calling one) with its
     * own multi handle and a share of max_in_flight; 0 or 1: one loop in the
     * calling thread.  One per core lets the client use every core. */
    int threads;
} pf_http_multi_opts;

/* POST requests 0 .. n-1 through curl multi handles driven by epoll loops
 * (one in the calling thread unless opts.threads says more), keeping up to
 * max_in_flight transfers running in all, each on its own kept-alive
 * connection, reused for the next request as soon as it is free.  records[i]
 * gets request i's outcome.  Returns 0 once every request has its record,
 * failed ones included; PF_EINVAL for a bad argument (n > 0 with NULL
 * records, max_in_flight 0 or over 100000, threads < 0 or over
 * PF_HTTP_MULTI_MAX_THREADS), PF_ENOMEM, PF_ESYS or PF_EHTTP when a loop
 * itself cannot run (then the others stop too).  opts may be NULL. */
PF_EXTERN int pf_http_run_multi(const pf_http_config *cfg, size_t n, size_t max_in_flight,
                                const pf_http_multi_opts *opts, pf_http_record *records);

#ifdef __cplusplus
}
#endif
#endif /* PFOR_HTTP_H */
