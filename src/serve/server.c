/*
 * The mock API server (include/pfor/serve.h) on libmicrohttpd (MHD).
 *
 * Threads: MHD's internal epoll thread pool (opts.threads, one per CPU by
 * default) parses HTTP and runs on_request(); one pf__timer thread resumes
 * delayed connections.  Nothing else.
 *
 * A request's life (on_request is called several times per request, always
 * on the MHD thread that owns the connection):
 *   1. headers received: route.  For anything but POST /api/users the
 *      answer (404, 405, /health) is fixed here and sent at step 3, which
 *      keeps the connection alive.  A Content-Length over max_body is
 *      answered at once (MHD then closes the connection unread).
 *   2. body pieces: copied into struct request, up to max_body; past it
 *      (a chunked body has no length up front) the rest is dropped and the
 *      answer will be 413.  Other routes drop their body.  Either way a
 *      chunked body past 2 * max_body in all is cut off (MHD_NO).
 *   3. body complete: the answer (201, 400 or 500) is built now.  With a
 *      latency, the connection is suspended (MHD_suspend_connection) and
 *      handed to the timer, which resumes it when the delay is over; MHD
 *      then calls on_request once more and the stored answer is queued.
 *
 * Invariant for shutdown: a suspended connection is always either in the
 * timer's heap or about to be resumed by the handler that suspended it
 * (when pf__timer_add fails).  pf__timer_shutdown fires the whole heap, so
 * after it no connection stays suspended, as MHD_stop_daemon requires.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "pfor/serve.h"
#include "platform/sync.h"
#include "serve/serve_internal.h"

#define DEFAULT_BIND            "127.0.0.1"
#define DEFAULT_MAX_BODY        ((size_t)1 << 20)
#define MAX_MAX_BODY            ((size_t)1 << 30)
#define DEFAULT_MAX_CONNECTIONS 16384u
#define MAX_MAX_CONNECTIONS     (1u << 20)
#define MAX_THREADS             256u
#define MAX_LATENCY_S           86400.0
/* listen() clamps this to net.core.somaxconn (4096 on current kernels). */
#define LISTEN_BACKLOG          65535
/* Seconds an idle or stalled (not suspended) connection is kept open.
 * This is also what frees a connection whose client half-closed in the
 * middle of a request: MHD's edge-triggered epoll loop does not always
 * notice that EOF. */
#define DEFAULT_IDLE_TIMEOUT_S  60u
#define MAX_IDLE_TIMEOUT_S      86400u
/* MHD's memory pool per connection (request line, headers, I/O buffers):
 * half MHD's default, so that 10,000 connections cost ~160 MiB, not ~320;
 * request headers still fit up to several KiB (MHD answers 431 past that). */
#define CONNECTION_POOL_BYTES   ((size_t)16 * 1024)
/* First allocation for a body without Content-Length, and the most that
 * is allocated up front for one with a Content-Length; bodies grow by
 * doubling from there, up to max_body. */
#define BODY_INITIAL_CAP        1024
#define BODY_MAX_PREALLOC       (64 * 1024)

#define API_PATH    "/api/users"
#define HEALTH_PATH "/health"

#define JSON_TYPE "application/json"

struct pf_server {
    struct MHD_Daemon *daemon; /* immutable after start */
    pf__timer *timer;          /* immutable; NULL when latency_max == 0 */
    uint16_t port;             /* immutable */
    double latency_min;        /* immutable, seconds */
    double latency_max;        /* immutable, seconds */
    double error_rate;         /* immutable */
    size_t max_body;           /* immutable */
    /* The atomics below only need atomicity, not ordering with other
     * memory: relaxed everywhere. */
    _Atomic uint64_t rng;     /* splitmix64's Weyl counter */
    _Atomic uint64_t next_id; /* last id handed out */
    _Atomic uint64_t n_requests, n_created, n_client_errors, n_server_errors;
    /* Delayed answers queued before they were due, other than by a stop:
     * always 0 unless the timer's lead is not waited out (tests read it). */
    _Atomic uint64_t n_early;
};

enum phase {
    PH_READING,   /* collecting the body */
    PH_TOO_LARGE, /* the body passed max_body: dropping the rest, then 413 */
    PH_DELAYED,   /* suspended with its answer in resp, until the timer resumes it */
};

/* One request.  Only the MHD thread that owns the connection touches it
 * (the timer thread sees the connection only). */
struct request {
    bool is_api;      /* POST /api/users; otherwise the fixed answer below, body dropped */
    enum phase phase; /* is_api only */
    char *body;       /* PH_READING: len bytes of body so far, in cap bytes */
    size_t len, cap;
    size_t dropped;            /* PH_TOO_LARGE or !is_api: body bytes dropped */
    struct MHD_Response *resp; /* PH_DELAYED: the answer (owned) */
    unsigned status;           /* PH_DELAYED or !is_api: the answer's status */
    const char *fixed_body;    /* !is_api: static body of the answer */
    const char *allow;         /* !is_api: Allow header value, or NULL */
    uint64_t arrived_ns;       /* headers parsed: the latency counts from here */
    uint64_t due_ns;           /* PH_DELAYED: when the answer is due */
};

/* --- small helpers -------------------------------------------------------- */

static uint64_t next_random(struct pf_server *s)
{
    /* splitmix64: each caller takes a distinct point of the Weyl sequence,
     * so concurrent threads never share a state. */
    uint64_t z = atomic_fetch_add_explicit(&s->rng, 0x9E3779B97F4A7C15u, memory_order_relaxed) +
                 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double random_unit(struct pf_server *s)
{
    return (double)(next_random(s) >> 11) * 0x1.0p-53;
}

static void count_answer(struct pf_server *s, unsigned status)
{
    atomic_fetch_add_explicit(&s->n_requests, 1, memory_order_relaxed);
    if (status == MHD_HTTP_CREATED)
        atomic_fetch_add_explicit(&s->n_created, 1, memory_order_relaxed);
    else if (status >= 400 && status < 500)
        atomic_fetch_add_explicit(&s->n_client_errors, 1, memory_order_relaxed);
    else if (status >= 500)
        atomic_fetch_add_explicit(&s->n_server_errors, 1, memory_order_relaxed);
}

/* "2026-11-26T15:00:00.000Z" into buf (at least 32 bytes). */
static void utc_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* A response over a static JSON body, or NULL when out of memory. */
static struct MHD_Response *static_json(const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE) != MHD_YES) {
        MHD_destroy_response(r);
        r = NULL;
    }
    return r;
}

/* Queue r (which this consumes) and count it.  MHD_NO closes the connection. */
static enum MHD_Result send_answer(struct pf_server *s, struct MHD_Connection *conn,
                                   unsigned status, struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES)
        count_answer(s, status);
    return ok;
}

/* An immediate answer with a static body; `allow` adds an Allow header. */
static enum MHD_Result send_static(struct pf_server *s, struct MHD_Connection *conn,
                                   unsigned status, const char *body, const char *allow)
{
    struct MHD_Response *r = static_json(body);
    if (r && allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) {
        MHD_destroy_response(r);
        r = NULL;
    }
    return send_answer(s, conn, status, r);
}

static const char BODY_HEALTH[] = "{\"status\":\"ok\"}";
static const char BODY_NOT_FOUND[] = "{\"error\":\"not found\"}";
static const char BODY_NOT_ALLOWED[] = "{\"error\":\"method not allowed\"}";
static const char BODY_TOO_LARGE[] = "{\"error\":\"request body too large\"}";
static const char BODY_BAD_JSON[] = "{\"error\":\"the body must be a JSON object\"}";
static const char BODY_INJECTED[] = "{\"error\":\"internal server error (injected)\"}";

/* jansson allocated the text with its own allocator: free it with that. */
static void free_json_text(void *text)
{
    json_free_t free_fn;
    json_get_alloc_funcs(NULL, &free_fn);
    free_fn(text);
}

/* The answer to a complete POST /api/users body: 201 with the echo, 400,
 * or an injected 500.  NULL (out of memory) closes the connection. */
static struct MHD_Response *build_answer(struct pf_server *s, const struct request *rq,
                                         unsigned *status)
{
    json_t *obj = NULL;
    if (rq->len > 0)
        obj = json_loadb(rq->body, rq->len, 0, NULL);
    if (!obj || !json_is_object(obj)) {
        json_decref(obj);
        *status = MHD_HTTP_BAD_REQUEST;
        return static_json(BODY_BAD_JSON);
    }
    /* Validation first: a bad body is the client's fault whatever the rate. */
    if (s->error_rate > 0 && random_unit(s) < s->error_rate) {
        json_decref(obj);
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return static_json(BODY_INJECTED);
    }
    char id[24], when[32];
    uint64_t n = atomic_fetch_add_explicit(&s->next_id, 1, memory_order_relaxed) + 1;
    snprintf(id, sizeof id, "%" PRIu64, n);
    utc_timestamp(when, sizeof when);
    struct MHD_Response *r = NULL;
    char *text = NULL;
    /* Keys the client sent with these names are replaced, in place. */
    if (json_object_set_new(obj, "id", json_string(id)) != 0 ||
        json_object_set_new(obj, "createdAt", json_string(when)) != 0)
        goto out;
    text = json_dumps(obj, JSON_COMPACT);
    if (!text)
        goto out;
    r = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free_json_text);
    if (!r) {
        free_json_text(text);
        goto out;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE) != MHD_YES) {
        MHD_destroy_response(r);
        r = NULL;
        goto out;
    }
    *status = MHD_HTTP_CREATED;
out:
    json_decref(obj);
    return r;
}

/* --- the MHD callbacks ---------------------------------------------------- */

/* Timer thread: the delay of the request on this connection is over. */
static void resume_connection(void *item)
{
    MHD_resume_connection(item);
}

/* First call of a request: headers are in, no body yet.  Answering here
 * makes MHD close the connection after the answer (the body, if any, is
 * never read), so this is kept for bodies over the limit; everything else
 * is answered on the last call, which keeps the connection alive. */
static enum MHD_Result on_headers(struct pf_server *s, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **req_cls)
{
    struct request *rq = calloc(1, sizeof *rq);
    if (!rq)
        return MHD_NO;
    rq->arrived_ns = pf__now_ns();
    if (strcmp(url, API_PATH) == 0 && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
        rq->is_api = true;
    } else if (strcmp(url, API_PATH) == 0) {
        rq->status = MHD_HTTP_METHOD_NOT_ALLOWED;
        rq->fixed_body = BODY_NOT_ALLOWED;
        rq->allow = "POST";
    } else if (strcmp(url, HEALTH_PATH) != 0) {
        rq->status = MHD_HTTP_NOT_FOUND;
        rq->fixed_body = BODY_NOT_FOUND;
    } else if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp(method, MHD_HTTP_METHOD_HEAD) == 0) {
        rq->status = MHD_HTTP_OK;
        rq->fixed_body = BODY_HEALTH;
    } else {
        rq->status = MHD_HTTP_METHOD_NOT_ALLOWED;
        rq->fixed_body = BODY_NOT_ALLOWED;
        rq->allow = "GET, HEAD";
    }

    /* MHD has already rejected a malformed Content-Length with 400. */
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        errno = 0;
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno || end == cl || v > s->max_body) {
            enum MHD_Result ok =
                rq->is_api ? send_static(s, conn, MHD_HTTP_CONTENT_TOO_LARGE, BODY_TOO_LARGE, NULL)
                           : send_static(s, conn, rq->status, rq->fixed_body, rq->allow);
            free(rq);
            return ok;
        }
        if (rq->is_api && v > 0) {
            /* The announced size, but not more than BODY_MAX_PREALLOC before
             * the bytes are really there: a claim costs no memory. */
            size_t cap = PF__MIN((size_t)v, (size_t)BODY_MAX_PREALLOC);
            rq->body = malloc(cap);
            if (!rq->body) {
                free(rq);
                return MHD_NO;
            }
            rq->cap = cap;
        }
    }
    *req_cls = rq;
    return MHD_YES;
}

/* A piece of the body.  MHD_NO closes the connection. */
static enum MHD_Result on_body_piece(struct pf_server *s, struct request *rq, const char *data,
                                     size_t n)
{
    if (!rq->is_api) {
        /* Nobody reads it.  As for a chunked body over the limit on the API
         * (below), up to 2 * max_body is drained so that the client gets
         * this route's answer; a body still going past that is cut off.
         * (With a Content-Length over max_body it was answered at once.)
         * No overflow: max_body <= 1 GiB. */
        rq->dropped += n;
        return rq->dropped > 2 * s->max_body ? MHD_NO : MHD_YES;
    }
    if (rq->phase == PH_READING && n > s->max_body - rq->len) {
        rq->phase = PH_TOO_LARGE;
        rq->dropped = rq->len;
        free(rq->body);
        rq->body = NULL;
        rq->len = rq->cap = 0;
    }
    if (rq->phase == PH_TOO_LARGE) {
        /* Drain up to max_body more bytes so that the client can read its
         * 413; a body still going past that is cut off. */
        rq->dropped += n; /* > max_body from here on */
        return rq->dropped - s->max_body > s->max_body ? MHD_NO : MHD_YES;
    }
    if (rq->len + n > rq->cap) {
        size_t cap = PF__MAX(rq->cap * 2, (size_t)BODY_INITIAL_CAP);
        cap = PF__MIN(PF__MAX(cap, rq->len + n), s->max_body);
        char *body = realloc(rq->body, cap);
        if (!body)
            return MHD_NO;
        rq->body = body;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    return MHD_YES;
}

/* The body is complete: answer now, or after the latency. */
static enum MHD_Result on_body_done(struct pf_server *s, struct MHD_Connection *conn,
                                    struct request *rq)
{
    unsigned status = 0;
    struct MHD_Response *r = build_answer(s, rq, &status);
    free(rq->body);
    rq->body = NULL;
    if (!r)
        return MHD_NO;
    if (s->timer) {
        double delay = s->latency_min + (s->latency_max - s->latency_min) * random_unit(s);
        uint64_t delay_ns = (uint64_t)(delay * 1e9);
        if (delay_ns > 0) {
            rq->phase = PH_DELAYED;
            rq->resp = r;
            rq->status = status;
            rq->due_ns = rq->arrived_ns + delay_ns;
            /* Suspend before the timer can see the connection, so that its
             * resume always follows the suspend. */
            MHD_suspend_connection(conn);
            if (pf__timer_add(s->timer, rq->due_ns, conn) != PF_OK)
                MHD_resume_connection(conn); /* stopping (or full): answer now */
            return MHD_YES;
        }
    }
    return send_answer(s, conn, status, r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct pf_server *s = cls;
    struct request *rq = *req_cls;
    (void)version;
    if (!rq)
        return on_headers(s, conn, url, method, req_cls);
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_body_piece(s, rq, upload_data, n);
    }
    if (!rq->is_api)
        return send_static(s, conn, rq->status, rq->fixed_body, rq->allow);
    switch (rq->phase) {
    case PH_READING:
        return on_body_done(s, conn, rq);
    case PH_TOO_LARGE:
        return send_static(s, conn, MHD_HTTP_CONTENT_TOO_LARGE, BODY_TOO_LARGE, NULL);
    case PH_DELAYED: {
        /* Called again after the timer resumed the connection. */
        struct MHD_Response *r = rq->resp;
        rq->resp = NULL;
        /* The timer resumes a lightly loaded server's connections a little
         * early, so that this thread's wake-up is over by the deadline; the
         * rest of the delay is waited out here.  (After a shutdown resumed
         * everything, a delay still far off is not.) */
        uint64_t now = pf__now_ns();
        if (rq->due_ns > now && rq->due_ns - now <= PF__TIMER_LEAD_NS) {
            pf__yield_until_ns(rq->due_ns);
            now = pf__now_ns();
        }
        if (now < rq->due_ns && !pf__timer_stopping(s->timer))
            atomic_fetch_add_explicit(&s->n_early, 1, memory_order_relaxed);
        return send_answer(s, conn, rq->status, r);
    }
    }
    return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode why)
{
    struct request *rq = *req_cls;
    (void)cls;
    (void)conn;
    (void)why;
    if (!rq)
        return;
    if (rq->resp)
        MHD_destroy_response(rq->resp);
    free(rq->body);
    free(rq);
    *req_cls = NULL;
}

/* --- start and stop ------------------------------------------------------- */

static int check_opts(const pf_serve_opts *o)
{
    if (!isfinite(o->latency_min) || !isfinite(o->latency_max) || o->latency_min < 0 ||
        o->latency_min > o->latency_max || o->latency_max > MAX_LATENCY_S)
        return PF_EINVAL;
    if (!(o->error_rate >= 0 && o->error_rate <= 1))
        return PF_EINVAL; /* NaN fails both comparisons */
    if (o->max_body > MAX_MAX_BODY || o->max_connections > MAX_MAX_CONNECTIONS ||
        o->threads > MAX_THREADS || o->idle_timeout_s > MAX_IDLE_TIMEOUT_S)
        return PF_EINVAL;
    return PF_OK;
}

static int errno_to_pf(int e)
{
    switch (e) {
    case EADDRINUSE:
        return PF_EADDRINUSE;
    case EACCES:
    case EPERM:
        return PF_EPERM;
    case EADDRNOTAVAIL:
        return PF_EINVAL; /* not an address of this machine */
    /* bind(): numeric but not bindable here (IPv4-mapped on a v6-only
     * socket, link-local without a scope, multicast); socket(): an IPv6
     * address where the kernel has no IPv6. */
    case EINVAL:
    case EAFNOSUPPORT:
        return PF_EINVAL;
    case ENOMEM:
    case ENOBUFS:
        return PF_ENOMEM;
    default:
        return PF_ESYS;
    }
}

/* Is `a` a broadcast address here: the limited one, or a subnet's (which only
 * the routing table knows)?  The kernel refuses to connect a UDP socket
 * without SO_BROADCAST to a broadcast address, with EACCES: ask it that way. */
static bool is_broadcast_v4(const struct sockaddr_in *a)
{
    if (a->sin_addr.s_addr == htonl(INADDR_BROADCAST))
        return true;
    if (a->sin_addr.s_addr == htonl(INADDR_ANY))
        return false;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false; /* cannot tell: bind() decides */
    struct sockaddr_in to = *a;
    to.sin_port = htons(9); /* any port: nothing is sent */
    bool bcast = connect(fd, (const struct sockaddr *)&to, sizeof to) != 0 && errno == EACCES;
    close(fd);
    return bcast;
}

/* Bind and listen on addr:port; *fd_out and *port_out (the real port). */
static int open_listener(const char *addr, uint16_t port, int *fd_out, uint16_t *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    } else {
        return PF_EINVAL;
    }
    /* Linux binds a TCP socket to a multicast or broadcast address, but no
     * connection can ever reach it there: not an address of this machine. */
    if (ss.ss_family == AF_INET ? IN_MULTICAST(ntohl(v4->sin_addr.s_addr)) || is_broadcast_v4(v4)
                                : IN6_IS_ADDR_MULTICAST(&v6->sin6_addr))
        return PF_EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno_to_pf(errno);
    int one = 1, rc;
    /* SO_REUSEADDR lets a restarted server take its port back from
     * TIME_WAIT connections; it never lets two listeners share a port.
     * TCP_NODELAY is inherited by accepted sockets. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        (ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        rc = errno_to_pf(errno);
        goto fail;
    }
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = errno_to_pf(errno);
        goto fail;
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    *fd_out = fd;
    return PF_OK;
fail:
    close(fd);
    return rc;
}

int pf_server_start(pf_server **out, const pf_serve_opts *opts)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    pf_serve_opts o = opts ? *opts : (pf_serve_opts){0};
    int rc = check_opts(&o);
    if (rc != PF_OK)
        return rc;
    unsigned max_conn = o.max_connections ? o.max_connections : DEFAULT_MAX_CONNECTIONS;
    unsigned threads = o.threads ? o.threads : (unsigned)pf__ncpus();
    threads = PF__MIN(threads, max_conn); /* MHD splits the limit over its threads */
    unsigned idle_timeout = o.idle_timeout_s ? o.idle_timeout_s : DEFAULT_IDLE_TIMEOUT_S;

    /* jansson seeds its hash function on first use; do it before our
     * threads exist rather than rely on its atomics (only the first call
     * in the process has an effect). */
    json_object_seed(0);

    int fd = -1;
    struct pf_server *s = calloc(1, sizeof *s);
    if (!s)
        return PF_ENOMEM;
    s->latency_min = o.latency_min;
    s->latency_max = o.latency_max;
    s->error_rate = o.error_rate;
    s->max_body = o.max_body ? o.max_body : DEFAULT_MAX_BODY;
    atomic_init(&s->rng, pf__now_ns() ^ (uint64_t)(uintptr_t)s);
    atomic_init(&s->next_id, 0);
    atomic_init(&s->n_requests, 0);
    atomic_init(&s->n_created, 0);
    atomic_init(&s->n_client_errors, 0);
    atomic_init(&s->n_server_errors, 0);

    rc = open_listener(o.bind_addr ? o.bind_addr : DEFAULT_BIND, o.port, &fd, &s->port);
    if (rc != PF_OK)
        goto fail;
    /* A connection holds at most one request, so at most max_conn wait. */
    if (o.latency_max > 0) {
        rc = pf__timer_start(&s->timer, max_conn, resume_connection);
        if (rc != PF_OK)
            goto fail;
    }
    struct stat before;
    PF__CHECK(fstat(fd, &before) == 0);
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
        on_request, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
        max_conn, MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        CONNECTION_POOL_BYTES, MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        /* Close the socket unless MHD did: the same inode means ours. */
        struct stat after;
        if (fstat(fd, &after) != 0 || after.st_ino != before.st_ino)
            fd = -1;
        rc = PF_ESYS;
        goto fail;
    }
    *out = s;
    return PF_OK;
fail:
    if (fd >= 0)
        close(fd);
    pf__timer_free(s->timer);
    free(s);
    return rc;
}

uint16_t pf_server_port(const pf_server *s)
{
    return s ? s->port : 0;
}

uint64_t pf__server_early_answers(const pf_server *s)
{
    return atomic_load_explicit(&((const struct pf_server *)s)->n_early, memory_order_relaxed);
}

int pf_server_stats_get(const pf_server *s, pf_server_stats *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!s || !out)
        return PF_EINVAL;
    /* The counters are atomics in a const object: read through a cast. */
    struct pf_server *m = (struct pf_server *)s;
    out->requests = atomic_load_explicit(&m->n_requests, memory_order_relaxed);
    out->created = atomic_load_explicit(&m->n_created, memory_order_relaxed);
    out->client_errors = atomic_load_explicit(&m->n_client_errors, memory_order_relaxed);
    out->server_errors = atomic_load_explicit(&m->n_server_errors, memory_order_relaxed);
    return PF_OK;
}

void pf_server_stop(pf_server *s)
{
    if (!s)
        return;
    /* 1. Resume every delayed connection; handlers that delay from now on
     *    see PF_ESHUTDOWN and answer at once (see the invariant on top). */
    pf__timer_shutdown(s->timer);
    /* 2. Close the listening socket and every connection, join MHD's threads. */
    MHD_stop_daemon(s->daemon);
    /* 3. No thread can reach the timer any more. */
    pf__timer_free(s->timer);
    free(s);
}
