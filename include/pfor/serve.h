/*
 * pfor's built-in mock API: a real HTTP/1.1 server (libmicrohttpd) to point
 * parallel loops of HTTP requests at.
 *
 *   POST /api/users   201 Created, the request's JSON object echoed with an
 *                     "id" (a per-server counter, as a string) and a
 *                     "createdAt" (UTC ISO-8601 with milliseconds), in the
 *                     style of the public test APIs:
 *                     {"name":"morpheus","job":"leader","id":"1",
 *                      "createdAt":"2026-11-26T15:00:00.000Z"}
 *                     400 if the body is not a JSON object, 413 if it is
 *                     longer than max_body, 500 for the injected error rate.
 *   GET /health       200 {"status":"ok"}, at once (for readiness probes)
 *   anything else     404; another method on a known path: 405
 *
 * Every answer to POST /api/users (201, 400 and 500) comes after the
 * configured latency, without a thread per connection: the connection is
 * suspended and one timer thread resumes it (docs/serve.md).
 *
 * The server runs on its own threads from pf_server_start() until
 * pf_server_stop(); every function here is thread-safe.
 */
#ifndef PFOR_SERVE_H
#define PFOR_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "pfor/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_server pf_server;

/* Options.  All zero means the defaults. */
typedef struct pf_serve_opts {
    const char *bind_addr;    /* numeric IPv4 or IPv6 address; NULL: "127.0.0.1" */
    uint16_t port;            /* 0: an ephemeral port (see pf_server_port) */
    double latency_min;       /* seconds before each answer to POST /api/users, */
    double latency_max;       /* uniform in [min, max]; 0 <= min <= max <= 86400 */
    double error_rate;        /* 0..1: fraction of POST /api/users answered 500 */
    size_t max_body;          /* bytes; 0: 1 MiB; larger bodies get 413; <= 1 GiB */
    unsigned max_connections; /* 0: 16384; at most 1048576 */
    unsigned threads;         /* server threads; 0: one per CPU; at most 256 */
    /* Seconds before a connection that is idle, or stalled mid-request, is
     * closed; 0: 60; at most 86400.  Waiting out the latency is not idle. */
    unsigned idle_timeout_s;
} pf_serve_opts;

/* Counts since the server started.  requests counts every request that
 * reached the application (all of the others are included in it);
 * malformed HTTP that the HTTP library rejects itself is not counted. */
typedef struct pf_server_stats {
    uint64_t requests;      /* requests answered (any status) */
    uint64_t created;       /* 201 */
    uint64_t client_errors; /* 4xx */
    uint64_t server_errors; /* 5xx (the injected errors) */
} pf_server_stats;

/* Bind, listen and start serving; *out gets the server (NULL on error).
 * opts may be NULL (all defaults).  Returns PF_EINVAL for a NULL out or an
 * option out of range (NaN, latency_min > latency_max, error_rate outside
 * [0, 1], a bind address that is not numeric or not of this machine,
 * multicast and broadcast ones included),
 * PF_EADDRINUSE if the port is taken, PF_EPERM if binding it is not
 * allowed, PF_ENOMEM, or PF_ESYS. */
PF_EXTERN int pf_server_start(pf_server **out, const pf_serve_opts *opts);

/* The port the server listens on (the chosen one when opts.port was 0);
 * 0 for NULL. */
PF_EXTERN uint16_t pf_server_port(const pf_server *s);

/* A snapshot of the counters into *out.  PF_EINVAL if s or out is NULL.
 * The four counters are read one by one while requests go on, so they
 * agree with each other only once the server is idle. */
PF_EXTERN int pf_server_stats_get(const pf_server *s, pf_server_stats *out);

/* Stop serving and free everything: requests still waiting out their
 * latency are released at once (answered, if libmicrohttpd still sends the
 * answer, or their connection is closed), then the listening socket and
 * every connection are closed and every thread is joined.  Answers given
 * while stopping are not in stats taken before.  NULL is fine.  Do not use
 * s afterwards, nor call this twice, nor from two threads. */
PF_EXTERN void pf_server_stop(pf_server *s);

#ifdef __cplusplus
}
#endif
#endif /* PFOR_SERVE_H */
