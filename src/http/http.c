/*
 * The HTTP workload on libcurl: the per-worker client, the task that POSTs
 * one request, and the pieces the event-driven runner (multi.c) shares.
 *
 * One client is one curl easy handle in a multi handle of its own.  curl
 * keeps the connection open after a request (HTTP/1.1 keep-alive) in the
 * multi handle's cache and reuses it for the next one, so a worker that runs
 * many requests opens one connection, unless the server closes it.  The
 * handle's options are set once; a request formats its body and drives the
 * transfer through curl's socket interface, waiting in poll() here
 * (client_perform) rather than in curl_easy_perform: curl then knows which
 * socket is ready and skips the poll it would make to find out, and waits
 * without the wake-up pipe of its own multi handle (two system calls fewer
 * per request, at 64 workers a few per cent of the client's CPU).
 *
 * Failures are data, not events: whatever happens to a request becomes its
 * pf_http_record (and, for a task, a failed future with a message); nothing
 * here aborts or retries.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http/http_internal.h"

/* --- libcurl, once per process ------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc; /* written once under global_once, read after it */

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK ? PF_OK : PF_EHTTP;
}

int pf__http_global_init(void)
{
    PF__CHECK(pthread_once(&global_once, global_init_once) == 0);
    return global_rc;
}

int pf_http_init(void)
{
    return pf__http_global_init();
}

const char *pf_http_version(void)
{
    return curl_version();
}

/* --- configuration ------------------------------------------------------- */

int pf_http_config_init(pf_http_config *cfg, const char *url)
{
    if (!cfg)
        return PF_EINVAL;
    /* url may lie inside *cfg (re-initialising with cfg->url): check and
     * copy it before *cfg is zeroed. */
    char copy[sizeof cfg->url];
    size_t len = url ? strnlen(url, sizeof copy) : 0;
    bool ok = len > 0 && len < sizeof copy &&
              (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0);
    if (ok)
        memcpy(copy, url, len + 1);
    memset(cfg, 0, sizeof *cfg);
    if (!ok)
        return PF_EINVAL;
    memcpy(cfg->url, copy, len + 1);
    memcpy(cfg->body, PF_HTTP_DEFAULT_BODY, sizeof PF_HTTP_DEFAULT_BODY);
    return PF_OK;
}

int pf_http_config_set_body(pf_http_config *cfg, const char *body_template)
{
    if (!cfg || !body_template || strlen(body_template) >= sizeof cfg->body)
        return PF_EINVAL;
    /* memmove: the template may be cfg->body itself. */
    memmove(cfg->body, body_template, strlen(body_template) + 1);
    return PF_OK;
}

static bool timeout_ok(double s)
{
    return isfinite(s) && s >= 0 && s <= 86400.0;
}

int pf__http_config_check(const pf_http_config *cfg)
{
    if (!cfg || !memchr(cfg->url, '\0', sizeof cfg->url) ||
        !memchr(cfg->body, '\0', sizeof cfg->body))
        return PF_EINVAL;
    if (strncasecmp(cfg->url, "http://", 7) != 0 && strncasecmp(cfg->url, "https://", 8) != 0)
        return PF_EINVAL;
    if (!timeout_ok(cfg->timeout) || !timeout_ok(cfg->connect_timeout))
        return PF_EINVAL;
    return PF_OK;
}

static long timeout_ms(const pf_http_config *cfg)
{
    double s = cfg->timeout > 0 ? cfg->timeout : 30.0;
    long ms = (long)ceil(s * 1000.0);
    return ms > 0 ? ms : 1;
}

static long connect_timeout_ms(const pf_http_config *cfg)
{
    double s = cfg->connect_timeout > 0 ? cfg->connect_timeout : 5.0;
    long ms = (long)ceil(s * 1000.0);
    long all = timeout_ms(cfg);
    return ms < 1 ? 1 : (ms > all ? all : ms);
}

struct curl_slist *pf__http_headers(void)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (!h)
        return NULL;
    /* No "Expect: 100-continue" round trip, whatever the body's size. */
    struct curl_slist *h2 = curl_slist_append(h, "Expect:");
    if (!h2) {
        curl_slist_free_all(h);
        return NULL;
    }
    return h2;
}

/* Does the environment name a proxy for curl to use? */
static bool env_has_proxy(void)
{
    static const char *const vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                       "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < PF__ARRAY_SIZE(vars); i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return true;
    }
    return false;
}

char *pf__http_noproxy(void)
{
    if (!env_has_proxy())
        return strdup("");
    /* A proxy from the environment must never see loopback requests (the
     * built-in mock API); any other host follows the environment.  All of
     * 127.0.0.0/8 is loopback (curl >= 7.86 reads CIDR; 127.0.0.1 for older
     * ones, which take the entry for a host name). */
    static const char loopback[] = "127.0.0.0/8,127.0.0.1,localhost,::1";
    const char *env = getenv("no_proxy");
    if (!env || !*env)
        env = getenv("NO_PROXY");
    /* "*" turns proxies off for every host, but only as the whole list
     * (curl's rule): added to ours it would match nothing. */
    if (env && strcmp(env, "*") == 0)
        return strdup("");
    size_t n = sizeof loopback + (env ? strlen(env) + 1 : 0);
    char *s = malloc(n);
    if (!s)
        return NULL;
    if (env && *env)
        snprintf(s, n, "%s,%s", loopback, env);
    else
        memcpy(s, loopback, sizeof loopback);
    return s;
}

/* --- one transfer -------------------------------------------------------- */

/* Keep the first bytes of the answer's body (for error messages), drop the
 * rest. */
static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct pf__http_xfer *x = ud;
    size_t k = size * n;
    size_t room = PF__HTTP_SNIPPET - x->snippet_len;
    size_t take = k < room ? k : room;
    memcpy(x->snippet + x->snippet_len, p, take);
    x->snippet_len += take;
    x->snippet[x->snippet_len] = '\0';
    return k;
}

/* Bytes needed for the body of any request number: each "{n}" (3 bytes)
 * becomes at most 20 digits. */
static size_t body_capacity(const char *tpl)
{
    size_t tokens = 0;
    for (const char *p = strstr(tpl, "{n}"); p; p = strstr(p + 3, "{n}"))
        tokens++;
    return strlen(tpl) + tokens * 17 + 1;
}

/* curl: open a connection's socket close-on-exec, so that a program this
 * process starts does not inherit it (the event loop installs its own
 * callback, which does the same and also watches the socket). */
static curl_socket_t open_socket_cloexec(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)userp;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

int pf__http_xfer_init(struct pf__http_xfer *x, const pf_http_config *cfg,
                       struct curl_slist *headers, const char *noproxy)
{
    memset(x, 0, sizeof *x);
    x->body_cap = body_capacity(cfg->body);
    x->body = malloc(x->body_cap);
    x->easy = curl_easy_init();
    if (!x->body || !x->easy) {
        int rc = x->body ? PF_EHTTP : PF_ENOMEM;
        pf__http_xfer_free(x);
        return rc;
    }
    CURL *e = x->easy;
    CURLcode cc = CURLE_OK;
    /* Each setopt can only fail for out of memory or a build without the
     * feature; the first failure is kept. */
#define SET(opt, val)                               \
    do {                                            \
        if (cc == CURLE_OK)                         \
            cc = curl_easy_setopt(e, (opt), (val)); \
    } while (0)
    SET(CURLOPT_URL, cfg->url);
    SET(CURLOPT_HTTPHEADER, headers);
    if (*noproxy)
        SET(CURLOPT_NOPROXY, noproxy);
    else {
        /* No proxy: none is configured.  The empty no-proxy list too, or
         * curl reads no_proxy and NO_PROXY from the environment on every
         * request (getenv scans the whole environment each time). */
        SET(CURLOPT_PROXY, "");
        SET(CURLOPT_NOPROXY, "");
    }
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_USERAGENT, "pfor/" PF_VERSION_STRING);
    SET(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for time-outs: threads */
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms(cfg));
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms(cfg));
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_POSTFIELDS, x->body);
    SET(CURLOPT_POSTFIELDSIZE, 0L);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_socket_cloexec);
#undef SET
    if (cc != CURLE_OK) {
        pf__http_xfer_free(x);
        return pf__http_easy_rc(cc);
    }
    return PF_OK;
}

void pf__http_xfer_free(struct pf__http_xfer *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    free(x->body);
    x->easy = NULL;
    x->body = NULL;
}

void pf__http_xfer_prepare(struct pf__http_xfer *x, const pf_http_config *cfg, uint64_t n)
{
    char num[24];
    int numlen = snprintf(num, sizeof num, "%llu", (unsigned long long)n);
    const char *tpl = cfg->body;
    size_t out = 0;
    /* body_cap was sized for 20 digits per token: this cannot overflow. */
    for (const char *p = tpl; *p;) {
        const char *tok = strstr(p, "{n}");
        size_t lit = tok ? (size_t)(tok - p) : strlen(p);
        memcpy(x->body + out, p, lit);
        out += lit;
        if (!tok)
            break;
        memcpy(x->body + out, num, (size_t)numlen);
        out += (size_t)numlen;
        p = tok + 3;
    }
    PF__CHECK(out < x->body_cap);
    x->body[out] = '\0';
    x->body_len = out;
    /* The pointer is the same every time; the size changes.  Setting a
     * size on a live handle never fails. */
    (void)curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)out);
    x->errbuf[0] = '\0';
    x->snippet[0] = '\0';
    x->snippet_len = 0;
    x->start_ns = pf__now_ns();
}

static int classify(CURLcode cc, long status)
{
    switch (cc) {
    case CURLE_OK:
        return status >= 200 && status < 300 ? PF_OK : PF_EHTTP;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return PF_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return PF_ETIMEDOUT;
    default:
        return PF_EHTTP;
    }
}

void pf__http_record_from(struct pf__http_xfer *x, CURLcode cc, pf_http_record *rec)
{
    uint64_t end_ns = pf__now_ns();
    long status = 0, conns = 0;
    (void)curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    (void)curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &conns);
    memset(rec, 0, sizeof *rec);
    rec->status = (int32_t)status;
    rec->curl_code = (int32_t)cc;
    rec->connects = (int32_t)conns;
    rec->worker = -1;
    rec->seconds = (double)(end_ns - x->start_ns) / 1e9;
    rec->error = classify(cc, status);
}

static const char *transport_what(const pf_http_record *r)
{
    switch (r->curl_code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "cannot resolve the host";
    case CURLE_COULDNT_CONNECT:
        return "cannot connect";
    case CURLE_OPERATION_TIMEDOUT:
        return "timed out";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return "connection lost";
    default:
        return "transfer failed";
    }
}

const char *pf_http_describe(const pf_http_record *r, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    if (!r) {
        snprintf(buf, size, "(no record)");
    } else if (r->curl_code == CURLE_OK) {
        snprintf(buf, size, "HTTP %d", (int)r->status);
    } else {
        snprintf(buf, size, "%s (%s)", transport_what(r),
                 curl_easy_strerror((CURLcode)r->curl_code));
    }
    return buf;
}

void pf__http_message(const struct pf__http_xfer *x, const pf_http_record *rec,
                      const pf_http_config *cfg, char *buf, size_t size)
{
    if (rec->curl_code == CURLE_OK) {
        /* An answer that is not 2xx: its status and the start of its body. */
        char body[PF__HTTP_SNIPPET + 1];
        size_t k = 0;
        for (size_t i = 0; i < x->snippet_len && k < sizeof body - 1; i++) {
            char ch = x->snippet[i];
            body[k++] = (ch == '\n' || ch == '\r' || ch == '\t') ? ' ' : ch;
        }
        body[k] = '\0';
        snprintf(buf, size, "HTTP %d from %.80s%s%s", (int)rec->status, cfg->url, k ? ": " : "",
                 body);
    } else {
        snprintf(buf, size, "%s: POST %.80s: %s", transport_what(rec), cfg->url,
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror((CURLcode)rec->curl_code));
    }
}

/* --- curl's timer ----------------------------------------------------------- */

void pf__http_timer_set(uint64_t *timer_ns, long timeout_ms)
{
    *timer_ns = timeout_ms < 0 ? UINT64_MAX : pf__now_ns() + (uint64_t)timeout_ms * 1000000u;
}

int pf__http_wait_ms(uint64_t timer_ns)
{
    uint64_t now = pf__now_ns();
    if (timer_ns <= now)
        return 0;
    uint64_t left = timer_ns - now; /* no timer (UINT64_MAX): huge */
    return left >= 1000000000u ? 1000 : (int)((left + 999999u) / 1000000u);
}

unsigned pf__http_poll_events(int what)
{
    return ((what & CURL_POLL_IN) ? POLLIN : 0u) | ((what & CURL_POLL_OUT) ? POLLOUT : 0u);
}

int pf__http_cselect(unsigned revents)
{
    int flags = 0;
    if (revents & (POLLIN | POLLHUP))
        flags |= CURL_CSELECT_IN;
    if (revents & POLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (revents & (POLLERR | POLLNVAL))
        flags |= CURL_CSELECT_ERR;
    return flags;
}

int pf__http_easy_rc(CURLcode cc)
{
    return cc == CURLE_OK ? PF_OK : cc == CURLE_OUT_OF_MEMORY ? PF_ENOMEM : PF_EHTTP;
}

int pf__http_multi_rc(CURLMcode mc)
{
    return mc == CURLM_OK ? PF_OK : mc == CURLM_OUT_OF_MEMORY ? PF_ENOMEM : PF_EHTTP;
}

/* --- the client, the worker initializer and the task --------------------- */

/* The most sockets curl watches at once for one transfer: the connection,
 * another address while connecting (happy eyeballs), a resolver's pipe. */
#define CLIENT_MAX_SOCKETS 8

/* A client belongs to one thread at a time (a worker's state). */
struct pf_http_client {
    pf_http_config cfg; /* immutable after create */
    struct curl_slist *headers;
    char *noproxy;
    struct pf__http_xfer x;
    CURLM *multi; /* holds x.easy during a post, and the kept-alive connection */
    /* What curl watches during a post (its socket callback keeps these). */
    struct pollfd watch[CLIENT_MAX_SOCKETS];
    nfds_t nwatch;
    uint64_t timer_ns; /* when curl wants socket_action(TIMEOUT); UINT64_MAX: no timer */
};

static int client_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    pf_http_client *c = userp;
    nfds_t i = 0;
    while (i < c->nwatch && c->watch[i].fd != s)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < c->nwatch)
            c->watch[i] = c->watch[--c->nwatch];
        return 0;
    }
    if (i == c->nwatch) {
        if (i == CLIENT_MAX_SOCKETS) {
            /* curl ends the transfer with an error; say why. */
            snprintf(c->x.errbuf, sizeof c->x.errbuf, "more than %d sockets at once",
                     CLIENT_MAX_SOCKETS);
            return -1;
        }
        c->watch[c->nwatch++] = (struct pollfd){.fd = s};
    }
    c->watch[i].events = (short)pf__http_poll_events(what);
    return 0;
}

static int client_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    pf__http_timer_set(&((pf_http_client *)userp)->timer_ns, timeout_ms);
    return 0;
}

/* Run the prepared transfer of c to its end; its result code.  A failure of
 * the loop itself (never expected: poll failing, curl's multi interface
 * refusing) ends the transfer as CURLE_FAILED_INIT or CURLE_OUT_OF_MEMORY,
 * with the reason in the error buffer where we know it: the request is
 * recorded as failed, like any other. */
static CURLcode client_perform(pf_http_client *c)
{
    c->nwatch = 0;
    c->timer_ns = UINT64_MAX;
    bool poll_failed = false;
    int running = 1;
    CURLMcode mc = curl_multi_add_handle(c->multi, c->x.easy);
    if (mc == CURLM_OK)
        mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    while (mc == CURLM_OK && running > 0) {
        int r = poll(c->watch, c->nwatch, pf__http_wait_ms(c->timer_ns));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            snprintf(c->x.errbuf, sizeof c->x.errbuf, "poll: %s", strerror(errno));
            poll_failed = true;
            break;
        }
        /* A copy: curl changes the watch list while it acts. */
        struct pollfd ready[CLIENT_MAX_SOCKETS];
        nfds_t nready = 0;
        for (nfds_t i = 0; i < c->nwatch; i++)
            if (c->watch[i].revents)
                ready[nready++] = c->watch[i];
        for (nfds_t i = 0; i < nready && mc == CURLM_OK; i++)
            mc = curl_multi_socket_action(c->multi, ready[i].fd,
                                          pf__http_cselect((unsigned short)ready[i].revents),
                                          &running);
        if (mc == CURLM_OK && running > 0 && c->timer_ns <= pf__now_ns()) {
            c->timer_ns = UINT64_MAX;
            mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
    }
    /* The one transfer's result; none only if the loop gave up. */
    CURLcode cc = CURLE_FAILED_INIT;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)))
        if (m->msg == CURLMSG_DONE)
            cc = m->data.result;
    if (mc == CURLM_OUT_OF_MEMORY)
        cc = CURLE_OUT_OF_MEMORY;
    else if (mc != CURLM_OK || poll_failed)
        cc = CURLE_FAILED_INIT;
    (void)curl_multi_remove_handle(c->multi, c->x.easy); /* fine if never added */
    return cc;
}

int pf_http_client_create(pf_http_client **out, const pf_http_config *cfg)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (pf__http_config_check(cfg) != PF_OK)
        return PF_EINVAL;
    int rc = pf__http_global_init();
    if (rc != PF_OK)
        return rc;
    pf_http_client *c = calloc(1, sizeof *c);
    if (!c)
        return PF_ENOMEM;
    c->cfg = *cfg;
    c->headers = pf__http_headers();
    c->noproxy = pf__http_noproxy();
    if (!c->headers || !c->noproxy) {
        rc = PF_ENOMEM;
        goto fail;
    }
    rc = pf__http_xfer_init(&c->x, &c->cfg, c->headers, c->noproxy);
    if (rc != PF_OK)
        goto fail;
    c->multi = curl_multi_init();
    if (!c->multi) {
        rc = PF_EHTTP;
        goto fail;
    }
    CURLMcode mc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, client_on_socket);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, client_on_timer);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    rc = pf__http_multi_rc(mc);
    if (rc != PF_OK)
        goto fail;
    *out = c;
    return PF_OK;
fail:
    pf__http_xfer_free(&c->x);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
    free(c->noproxy);
    free(c);
    return rc;
}

void pf_http_client_destroy(pf_http_client *c)
{
    if (!c)
        return;
    pf__http_xfer_free(&c->x);
    curl_multi_cleanup(c->multi); /* closes the kept-alive connection */
    curl_slist_free_all(c->headers);
    free(c->noproxy);
    free(c);
}

int pf_http_client_post(pf_http_client *c, uint64_t n, pf_http_record *rec, char *msg,
                        size_t msg_size)
{
    if (msg && msg_size)
        msg[0] = '\0';
    if (!c || !rec)
        return PF_EINVAL;
    pf__http_xfer_prepare(&c->x, &c->cfg, n);
    CURLcode cc = client_perform(c);
    pf__http_record_from(&c->x, cc, rec);
    if (rec->error && msg && msg_size)
        pf__http_message(&c->x, rec, &c->cfg, msg, msg_size);
    return rec->error;
}

int pf_http_worker_init(void **state, const void *arg, size_t arg_len, int worker_index)
{
    (void)worker_index;
    if (!state)
        return PF_EINVAL;
    *state = NULL;
    if (!arg || arg_len != sizeof(pf_http_config))
        return PF_EINVAL;
    /* A copy: the argument's bytes need not be aligned for the struct. */
    pf_http_config cfg;
    memcpy(&cfg, arg, sizeof cfg);
    pf_http_client *c;
    int rc = pf_http_client_create(&c, &cfg);
    if (rc != PF_OK)
        return rc;
    *state = c;
    return PF_OK;
}

void pf_http_worker_fini(void *state, int worker_index)
{
    (void)worker_index;
    pf_http_client_destroy(state);
}

int pf_http_post_task(pf_task *t, const void *arg, size_t arg_len)
{
    pf_http_client *c = pf_task_worker_state(t);
    if (!c)
        return pf_task_fail(t, PF_EINVAL,
                            "pf_http_post_task: this worker has no HTTP client (create the "
                            "executor with initializer pf_http_worker_init)");
    uint64_t n;
    /* A task may call this directly, with any argument: check it is there. */
    if (!arg || arg_len != sizeof n)
        return pf_task_fail(t, PF_EINVAL,
                            "pf_http_post_task: want a uint64_t request number, got %zu bytes%s",
                            arg_len, arg ? "" : " at NULL");
    memcpy(&n, arg, sizeof n);
    pf_http_record rec;
    char msg[256];
    int rc = pf_http_client_post(c, n, &rec, msg, sizeof msg);
    rec.worker = pf_task_worker_index(t);
    if (rc != PF_OK) {
        /* An answer that is not 2xx gives its status as the task's code. */
        int code = rec.curl_code == CURLE_OK ? (int)rec.status : rec.error;
        return pf_task_fail(t, code, "%s", msg);
    }
    return pf_task_set_result(t, &rec, sizeof rec);
}
PF_REGISTER(pf_http_post_task)
/* MPI ranks find the initializer and finalizer by id too. */
PF_REGISTER(pf_http_worker_init)
PF_REGISTER(pf_http_worker_fini)
