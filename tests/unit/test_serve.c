/*
 * The mock API server (include/pfor/serve.h) and `pfor serve`, driven with
 * libcurl and raw sockets on 127.0.0.1, ephemeral ports only.
 *
 * Assertions are on behaviour: statuses, bodies, counters, and lower bounds
 * of latency.  Every loop is bounded in count and in time.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "internal.h"
#include "platform/sync.h"
#include "serve/serve_internal.h"
#include "test.h"

/* --- helpers --------------------------------------------------------------- */

static double now_s(void)
{
    return (double)pf__now_ns() / 1e9;
}

static pf_server *start_server(const pf_serve_opts *opts)
{
    pf_server *s = NULL;
    ASSERT_OK(pf_server_start(&s, opts));
    ASSERT(s != NULL);
    ASSERT(pf_server_port(s) != 0);
    return s;
}

struct reply {
    long status;
    char body[16384];
    size_t body_len;
    char content_type[128];
    char allow[128];
    double seconds;
    long connects; /* new connections this transfer opened */
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t k = size * n, room = sizeof r->body - 1 - r->body_len;
    size_t take = k < room ? k : room;
    memcpy(r->body + r->body_len, p, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    return k;
}

/* Keep "Allow" and "Content-Type" header values. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t k = size * n;
    char line[256];
    size_t len = k < sizeof line - 1 ? k : sizeof line - 1;
    memcpy(line, p, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "Allow: ", 7) == 0)
        snprintf(r->allow, sizeof r->allow, "%.100s", line + 7);
    if (strncasecmp(line, "Content-Type: ", 14) == 0)
        snprintf(r->content_type, sizeof r->content_type, "%.100s", line + 14);
    return k;
}

/* A chunked body of `left` bytes of 'a' (no Content-Length). */
static size_t read_chunked(char *p, size_t size, size_t n, void *ud)
{
    size_t *left = ud;
    size_t k = size * n < *left ? size * n : *left;
    memset(p, 'a', k);
    *left -= k;
    return k;
}

static void easy_setup(CURL *c, uint16_t port, const char *method, const char *path,
                       const char *body, struct reply *out, struct curl_slist **hdrs)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(30000 * pf_test_scale()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    *hdrs = curl_slist_append(*hdrs, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, body ? "POST" : "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
}

/* One request on an easy handle (reused: keep-alive).  Returns the status. */
static long http_on(CURL *c, uint16_t port, const char *method, const char *path, const char *body,
                    struct reply *out)
{
    memset(out, 0, sizeof *out);
    curl_easy_reset(c); /* options go, the open connection stays */
    struct curl_slist *hdrs;
    easy_setup(c, port, method, path, body, out, &hdrs);
    double t0 = now_s();
    CURLcode rc = curl_easy_perform(c);
    out->seconds = now_s() - t0;
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK)
        FAIL("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &out->connects);
    return out->status;
}

static long http(uint16_t port, const char *method, const char *path, const char *body,
                 struct reply *out)
{
    CURL *c = curl_easy_init();
    ASSERT(c != NULL);
    long st = http_on(c, port, method, path, body, out);
    curl_easy_cleanup(c);
    return st;
}

static long post(uint16_t port, const char *body, struct reply *out)
{
    return http(port, "POST", "/api/users", body, out);
}

/* Under ASan, fail on memory leaked so far (tests end with _exit, which
 * skips LeakSanitizer's own check at exit). */
static void check_no_leaks(void)
{
#if defined(__SANITIZE_ADDRESS__)
    if (__lsan_do_recoverable_leak_check() != 0)
        FAIL("memory leaked (see LeakSanitizer's report above)");
#endif
}

/* Raise the soft descriptor limit to the hard one; returns the new limit. */
static long raise_nofile(void)
{
    struct rlimit rl;
    ASSERT(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

/* Initialise libcurl, and run a server once, before counting descriptors
 * or threads: whatever a first use opens for good (libcurl's state, TSan's
 * background thread) is then in the "before" figures too. */
static void warm_up(void)
{
    ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    pf_serve_opts o = {.latency_max = 0.001};
    pf_server *s = start_server(&o);
    struct reply r;
    ASSERT_EQ(post(pf_server_port(s), "{}", &r), 201);
    pf_server_stop(s);
}

static int count_fds(void)
{
    int n = 0;
    char path[64];
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (access(path, F_OK) == 0)
            n++;
    }
    return n;
}

/* Send `data` on a fresh TCP connection, half-close, read what comes back
 * (at most cap - 1 bytes, NUL-terminated) until the server closes or the
 * time runs out.  Returns bytes read; *closed says the server closed. */
static size_t raw_exchange(uint16_t port, const void *data, size_t len, char *out, size_t cap,
                           bool *closed)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    /* The server may close before taking everything: that is allowed. */
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    size_t got = 0;
    *closed = false;
    double deadline = now_s() + 5.0 * pf_test_scale();
    while (now_s() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r <= 0) {
            *closed = true; /* EOF or reset */
            break;
        }
        size_t take = (size_t)r < cap - 1 - got ? (size_t)r : cap - 1 - got;
        memcpy(out + got, tmp, take);
        got += take;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

/* --- the API --------------------------------------------------------------- */

TEST(serve_post_echoes_input_with_id_and_created_at)
{
    pf_server *s = start_server(NULL);
    uint16_t port = pf_server_port(s);
    struct reply r;
    ASSERT_EQ(post(port, "{\"name\":\"morpheus\",\"job\":\"leader\"}", &r), 201);
    ASSERT(strncmp(r.content_type, "application/json", 16) == 0);

    json_t *o = json_loads(r.body, 0, NULL);
    ASSERT(o && json_is_object(o));
    ASSERT_STREQ(json_string_value(json_object_get(o, "name")), "morpheus");
    ASSERT_STREQ(json_string_value(json_object_get(o, "job")), "leader");
    ASSERT_STREQ(json_string_value(json_object_get(o, "id")), "1");
    const char *when = json_string_value(json_object_get(o, "createdAt"));
    ASSERT(when != NULL);
    /* 2026-11-26T15:00:00.000Z */
    ASSERT_EQ(strlen(when), 24);
    struct tm tm = {0};
    int ms = -1;
    char z = 0;
    ASSERT_EQ(sscanf(when, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z),
              8);
    ASSERT_EQ(z, 'Z');
    ASSERT(ms >= 0 && ms <= 999);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    double skew = difftime(timegm(&tm), time(NULL));
    ASSERT(fabs(skew) < 120); /* the server's clock is this machine's */
    json_decref(o);

    /* ids go up; nested values come back as sent; an "id" sent is replaced */
    ASSERT_EQ(post(port, "{\"id\":\"mine\",\"tags\":[\"a\",{\"b\":null}],\"n\":1.5}", &r), 201);
    o = json_loads(r.body, 0, NULL);
    ASSERT(o != NULL);
    ASSERT_STREQ(json_string_value(json_object_get(o, "id")), "2");
    json_t *tags = json_object_get(o, "tags");
    ASSERT(json_is_array(tags) && json_array_size(tags) == 2);
    ASSERT(json_is_null(json_object_get(json_array_get(tags, 1), "b")));
    ASSERT(json_real_value(json_object_get(o, "n")) == 1.5);
    json_decref(o);

    ASSERT_EQ(post(port, "{}", &r), 201);
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.requests, 3);
    ASSERT_EQ(st.created, 3);
    ASSERT_EQ(st.client_errors, 0);
    ASSERT_EQ(st.server_errors, 0);
    pf_server_stop(s);
    check_no_leaks();
}

TEST(serve_ephemeral_ports_are_distinct)
{
    pf_server *a = start_server(NULL);
    pf_serve_opts o = {.port = 0, .bind_addr = "127.0.0.1"};
    pf_server *b = start_server(&o);
    ASSERT_NE(pf_server_port(a), pf_server_port(b));
    ASSERT_EQ(pf_server_port(NULL), 0);
    struct reply r;
    ASSERT_EQ(http(pf_server_port(b), "GET", "/health", NULL, &r), 200);
    ASSERT_STREQ(r.body, "{\"status\":\"ok\"}");
    pf_server_stop(a);
    pf_server_stop(b);
}

TEST(serve_ipv6_loopback)
{
    pf_serve_opts o = {.bind_addr = "::1"};
    pf_server *s = NULL;
    int rc = pf_server_start(&s, &o);
    if (rc != PF_OK)
        SKIP("no IPv6 loopback here");
    char url[128];
    snprintf(url, sizeof url, "http://[::1]:%u/health", pf_server_port(s));
    CURL *c = curl_easy_init();
    struct reply r = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    ASSERT_EQ(r.status, 200);
    pf_server_stop(s);
}

TEST(serve_keeps_connections_alive)
{
    pf_server *s = start_server(NULL);
    uint16_t port = pf_server_port(s);
    CURL *c = curl_easy_init();
    struct reply r;
    long connects = 0;
    /* Every kind of answer but 413 keeps the connection. */
    ASSERT_EQ(http_on(c, port, "POST", "/api/users", "{\"a\":1}", &r), 201);
    connects += r.connects;
    ASSERT_EQ(http_on(c, port, "GET", "/health", NULL, &r), 200);
    connects += r.connects;
    ASSERT_EQ(http_on(c, port, "GET", "/nope", NULL, &r), 404);
    connects += r.connects;
    ASSERT_EQ(http_on(c, port, "POST", "/api/users", "not json", &r), 400);
    connects += r.connects;
    ASSERT_EQ(http_on(c, port, "GET", "/api/users", NULL, &r), 405);
    connects += r.connects;
    ASSERT_EQ(http_on(c, port, "POST", "/api/users", "{\"b\":2}", &r), 201);
    connects += r.connects;
    curl_easy_cleanup(c);
    ASSERT_EQ(connects, 1);
    pf_server_stop(s);
}

TEST(serve_fixed_latency_is_respected)
{
    pf_serve_opts o = {.latency_min = 0.15, .latency_max = 0.15};
    pf_server *s = start_server(&o);
    struct reply r;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(post(pf_server_port(s), "{\"i\":1}", &r), 201);
        ASSERT(r.seconds >= 0.15);
    }
    /* Failures are delayed too: they come from the same handler. */
    ASSERT_EQ(post(pf_server_port(s), "[]", &r), 400);
    ASSERT(r.seconds >= 0.15);
    pf_server_stop(s);
}

/* The timer resumes a lightly loaded server's connections up to
 * PF__TIMER_LEAD_NS before their deadline; the answer itself must still wait
 * for it.  The server counts answers queued early; the client sees each
 * answer's first byte no sooner than the latency after its transfer began
 * (which precedes the request's arrival).  Without the handler's wait both
 * fail: the client's bound by only 5-20 us, the counter always. */
TEST(serve_answers_never_leave_before_the_latency)
{
    pf_serve_opts o = {.latency_min = 0.002, .latency_max = 0.002};
    pf_server *s = start_server(&o);
    CURL *c = curl_easy_init();
    ASSERT(c != NULL);
    struct reply r;
    for (int i = 0; i < 40; i++) {
        ASSERT_EQ(http_on(c, pf_server_port(s), "POST", "/api/users", "{\"i\":1}", &r), 201);
        curl_off_t first_byte_us = 0;
        curl_easy_getinfo(c, CURLINFO_STARTTRANSFER_TIME_T, &first_byte_us);
        ASSERT_GE(first_byte_us, 2000);
    }
    ASSERT_EQ(pf__server_early_answers(s), 0);
    curl_easy_cleanup(c);
    pf_server_stop(s);
}

TEST(serve_ranged_latency_stays_within_bounds)
{
    pf_serve_opts o = {.latency_min = 0.05, .latency_max = 0.12};
    pf_server *s = start_server(&o);
    uint16_t port = pf_server_port(s);
    /* 16 at once through the multi interface: each takes >= the minimum. */
    enum { N = 16 };
    CURLM *m = curl_multi_init();
    CURL *e[N];
    struct reply r[N];
    struct curl_slist *h[N];
    for (int i = 0; i < N; i++) {
        e[i] = curl_easy_init();
        memset(&r[i], 0, sizeof r[i]);
        easy_setup(e[i], port, "POST", "/api/users", "{\"k\":true}", &r[i], &h[i]);
        curl_multi_add_handle(m, e[i]);
    }
    int running = 1;
    double deadline = now_s() + 30 * pf_test_scale();
    while (running && now_s() < deadline) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    ASSERT_EQ(running, 0);
    for (int i = 0; i < N; i++) {
        double total = 0;
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &r[i].status);
        curl_easy_getinfo(e[i], CURLINFO_TOTAL_TIME, &total);
        ASSERT_EQ(r[i].status, 201);
        ASSERT(total >= 0.05);
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        curl_slist_free_all(h[i]);
    }
    curl_multi_cleanup(m);
    pf_server_stop(s);
}

TEST(serve_body_over_limit_is_413)
{
    pf_serve_opts o = {.max_body = 1000};
    pf_server *s = start_server(&o);
    uint16_t port = pf_server_port(s);
    /* exactly the limit: accepted */
    char body[1002];
    memset(body, 'x', sizeof body);
    memcpy(body, "{\"a\":\"", 6);
    memcpy(body + 1000 - 2, "\"}", 3); /* 1000 bytes + NUL */
    ASSERT_EQ(strlen(body), 1000);
    struct reply r;
    ASSERT_EQ(post(port, body, &r), 201);
    /* one byte more (Content-Length): 413 before the body is read */
    memcpy(body + 1000 - 2, "x\"}", 4);
    ASSERT_EQ(strlen(body), 1001);
    ASSERT_EQ(post(port, body, &r), 413);
    ASSERT(strstr(r.body, "too large") != NULL);

    /* chunked, no Content-Length: counted as it comes, 413 at its end */
    CURL *c = curl_easy_init();
    size_t left = 1500;
    memset(&r, 0, sizeof r);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    hdrs = curl_slist_append(hdrs, "Expect:");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/users", port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_chunked);
    curl_easy_setopt(c, CURLOPT_READDATA, &left);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(30000 * pf_test_scale()));
    ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    ASSERT_EQ(r.status, 413);
    /* a huge chunked body is cut off: an error or a 413, never a hang */
    left = 50 * 1000 * 1000;
    memset(&r, 0, sizeof r);
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        ASSERT_EQ(r.status, 413);
    }
    ASSERT(left > 0); /* it did not take all 50 MB */
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);

    ASSERT_EQ(post(port, "{\"still\":\"here\"}", &r), 201);
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.created, 2);
    ASSERT_GE(st.client_errors, 2);
    pf_server_stop(s);
    check_no_leaks();
}

/* `method path` with a chunked body of `size` bytes on a fresh connection.
 * Returns the status, or 0 when no answer came (the connection was cut). */
static long chunked_request(uint16_t port, const char *method, const char *path, size_t size)
{
    CURL *c = curl_easy_init();
    ASSERT(c != NULL);
    struct reply r = {0};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    hdrs = curl_slist_append(hdrs, "Expect:");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    if (strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_chunked);
    curl_easy_setopt(c, CURLOPT_READDATA, &size);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(30000 * pf_test_scale()));
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    return r.status;
}

/* Other routes drop their body, but a chunked one over max_body still gets
 * the route's answer (as POST /api/users gets its 413), not a cut
 * connection: up to max_body more bytes are drained first. */
TEST(serve_other_routes_answer_a_chunked_body_over_the_limit)
{
    pf_serve_opts o = {.max_body = 1000};
    pf_server *s = start_server(&o);
    uint16_t port = pf_server_port(s);
    ASSERT_EQ(chunked_request(port, "POST", "/nope", 500), 404);
    ASSERT_EQ(chunked_request(port, "POST", "/nope", 1500), 404);
    ASSERT_EQ(chunked_request(port, "PUT", "/api/users", 1500), 405);
    ASSERT_EQ(chunked_request(port, "POST", "/health", 1500), 405);
    ASSERT_EQ(chunked_request(port, "POST", "/api/users", 1500), 413);
    /* far past the limit: cut off, never a hang nor all of it read */
    ASSERT_EQ(chunked_request(port, "POST", "/nope", 50 * 1000 * 1000), 0);
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.client_errors, 5);
    pf_server_stop(s);
    check_no_leaks();
}

TEST(serve_body_not_a_json_object_is_400)
{
    pf_server *s = start_server(NULL);
    uint16_t port = pf_server_port(s);
    static const char *const bad[] = {
        "",        "not json",  "[1,2]", "\"str\"",  "42",       "null",
        "{\"a\":", "{\"a\" 1}", "{}{}",  "{\"a\":1", "\xff\xfe", "{\"a\":\"\\ud800\"}",
    };
    struct reply r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(post(port, bad[i], &r), 400);
        json_t *o = json_loads(r.body, 0, NULL);
        ASSERT(o && json_is_string(json_object_get(o, "error")));
        json_decref(o);
    }
    /* deep nesting is refused by the parser's depth limit, not a crash */
    enum { DEPTH = 100000 };
    char *deep = malloc(2 * DEPTH + 16);
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < DEPTH; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    ASSERT_EQ(post(port, deep, &r), 400);
    free(deep);

    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.client_errors, sizeof bad / sizeof bad[0] + 1);
    ASSERT_EQ(st.created, 0);
    ASSERT_EQ(post(port, "{\"ok\":1}", &r), 201);
    pf_server_stop(s);
    check_no_leaks();
}

TEST(serve_unknown_path_404_wrong_method_405)
{
    pf_server *s = start_server(NULL);
    uint16_t port = pf_server_port(s);
    struct reply r;
    ASSERT_EQ(http(port, "GET", "/nope", NULL, &r), 404);
    ASSERT_EQ(http(port, "POST", "/api/users/1", "{}", &r), 404);
    ASSERT_EQ(http(port, "POST", "/", "{}", &r), 404);
    ASSERT_EQ(http(port, "GET", "/api/users", NULL, &r), 405);
    ASSERT_STREQ(r.allow, "POST");
    ASSERT_EQ(http(port, "PUT", "/api/users", "{}", &r), 405);
    ASSERT_EQ(http(port, "DELETE", "/api/users", NULL, &r), 405);
    ASSERT_EQ(http(port, "GET", "/health", NULL, &r), 200);
    ASSERT_EQ(http(port, "HEAD", "/health", NULL, &r), 200);
    ASSERT_EQ(http(port, "DELETE", "/health", NULL, &r), 405);
    ASSERT_STREQ(r.allow, "GET, HEAD");
    /* the query string is not part of the path */
    ASSERT_EQ(http(port, "POST", "/api/users?x=1", "{}", &r), 201);
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.requests, 10);
    ASSERT_EQ(st.client_errors, 7);
    pf_server_stop(s);
}

TEST(serve_error_rate_one_fails_all_zero_fails_none)
{
    struct reply r;
    pf_serve_opts o = {.error_rate = 1.0};
    pf_server *s = start_server(&o);
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(post(pf_server_port(s), "{\"a\":1}", &r), 500);
        json_t *j = json_loads(r.body, 0, NULL);
        ASSERT(j && json_is_string(json_object_get(j, "error")));
        json_decref(j);
    }
    /* bad input is still the client's fault */
    ASSERT_EQ(post(pf_server_port(s), "nope", &r), 400);
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.server_errors, 20);
    ASSERT_EQ(st.created, 0);
    pf_server_stop(s);

    o.error_rate = 0.0;
    s = start_server(&o);
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(post(pf_server_port(s), "{\"a\":1}", &r), 201);
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.server_errors, 0);
    ASSERT_EQ(st.created, 20);
    pf_server_stop(s);

    /* 0.5: both kinds show up in 100 tries (chance of not: 2^-99) */
    o.error_rate = 0.5;
    s = start_server(&o);
    CURL *c = curl_easy_init();
    for (int i = 0; i < 100; i++)
        http_on(c, pf_server_port(s), "POST", "/api/users", "{\"a\":1}", &r);
    curl_easy_cleanup(c);
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.created + st.server_errors, 100);
    ASSERT(st.created > 0 && st.server_errors > 0);
    pf_server_stop(s);
    check_no_leaks();
}

TEST(serve_port_in_use_is_eaddrinuse)
{
    pf_server *a = start_server(NULL);
    pf_serve_opts o = {.port = pf_server_port(a)};
    pf_server *b = (pf_server *)0x1;
    ASSERT_ERR(pf_server_start(&b, &o), PF_EADDRINUSE);
    ASSERT(b == NULL);
    /* the first one is unharmed */
    struct reply r;
    ASSERT_EQ(http(pf_server_port(a), "GET", "/health", NULL, &r), 200);
    pf_server_stop(a);
}

TEST(serve_bad_options_are_einval)
{
    pf_server *s = (pf_server *)0x1;
    ASSERT_ERR(pf_server_start(NULL, NULL), PF_EINVAL);
    pf_serve_opts bad[] = {
        {.latency_min = 0.2, .latency_max = 0.1},
        {.latency_min = -1, .latency_max = 0},
        {.latency_min = NAN, .latency_max = 1},
        {.latency_max = INFINITY},
        {.latency_max = 1e9},
        {.error_rate = 1.5},
        {.error_rate = -0.1},
        {.error_rate = NAN},
        {.bind_addr = "localhost"},
        {.bind_addr = "not an address"},
        {.bind_addr = ""},
        {.bind_addr = "256.1.1.1"},
        /* numeric, but bind() refuses them with EINVAL: an IPv4-mapped
         * address on a v6-only socket, a link-local one without a scope */
        {.bind_addr = "::ffff:127.0.0.1"},
        {.bind_addr = "fe80::1"},
        {.threads = 100000},
        {.max_connections = 100000000},
        {.max_body = (size_t)1 << 40},
        {.idle_timeout_s = 86401},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = (pf_server *)0x1;
        int rc = pf_server_start(&s, &bad[i]);
        if (rc != PF_EINVAL)
            FAIL("case %zu: got %s, want PF_EINVAL", i, pf_err_name(rc));
        ASSERT(s == NULL);
    }
    pf_server_stats st;
    ASSERT_ERR(pf_server_stats_get(NULL, &st), PF_EINVAL);
    s = start_server(NULL);
    ASSERT_ERR(pf_server_stats_get(s, NULL), PF_EINVAL);
    pf_server_stop(s);
    pf_server_stop(NULL);
}

/* Linux lets a TCP socket bind a multicast or broadcast address, but no
 * connection can ever reach it: such an address is not one of this machine,
 * so it is PF_EINVAL rather than a server that listens for nobody. */
TEST(serve_multicast_or_broadcast_bind_is_einval)
{
    /* 127.255.255.255: the broadcast address of lo's 127.0.0.0/8 on every
     * Linux machine, a subnet's broadcast that only the routing table knows */
    const char *addrs[] = {"224.0.0.1",       "239.255.255.250", "255.255.255.255",
                           "127.255.255.255", "ff02::1",         "ff05::2"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        pf_serve_opts o = {.bind_addr = addrs[i]};
        pf_server *s = (pf_server *)0x1;
        int rc = pf_server_start(&s, &o);
        if (rc != PF_EINVAL) {
            pf_server_stop(rc == PF_OK ? s : NULL);
            FAIL("%s: got %s, want PF_EINVAL", addrs[i], pf_err_name(rc));
        }
        ASSERT(s == NULL);
    }
    /* The wildcard addresses still bind. */
    pf_serve_opts any = {.bind_addr = "0.0.0.0"};
    pf_server_stop(start_server(&any));
}

TEST(serve_garbage_input_gets_400_or_close_and_server_lives)
{
    /* A request cut short by a half-close is not always noticed (see
     * server.c): the idle timeout closes it. */
    pf_serve_opts o = {.max_body = 4096, .idle_timeout_s = 1};
    pf_server *s = start_server(&o);
    uint16_t port = pf_server_port(s);
    char out[512];
    bool closed;

    static const char *const fixed[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "POST /api/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a\":",
        "GET /health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
        "\r\n\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        size_t got = raw_exchange(port, fixed[i], strlen(fixed[i]), out, sizeof out, &closed);
        /* Either an HTTP error answer (400; 505 for the version), or the
         * connection closed. */
        if (got > 0 && strncmp(out, "HTTP/1.1 4", 10) != 0 && strncmp(out, "HTTP/1.1 505", 12) != 0)
            FAIL("case %zu: unexpected answer '%.40s'", i, out);
        if (got == 0 && !closed)
            FAIL("case %zu: no answer and the connection stays open", i);
    }
    /* a header far past the connection's memory: 431 (or close) */
    size_t big = 100000;
    char *hdr = malloc(big + 64);
    int n = snprintf(hdr, 64, "GET /health HTTP/1.1\r\nX-A: ");
    memset(hdr + n, 'a', big);
    memcpy(hdr + n + big, "\r\n\r\n", 4);
    size_t got = raw_exchange(port, hdr, (size_t)n + big + 4, out, sizeof out, &closed);
    ASSERT(got == 0 || strncmp(out, "HTTP/1.1 4", 10) == 0);
    free(hdr);

    /* random bytes, some after a valid-looking request line */
    uint64_t x = 0x9E3779B97F4A7C15u;
    char junk[3000];
    for (int round = 0; round < 40; round++) {
        size_t len = 1 + (size_t)(x % sizeof junk);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (char)x;
        }
        if (round % 2)
            memcpy(junk, "POST /api/users HTTP/1.1\r\n", len < 26 ? len : 26);
        if (round < 4) {
            got = raw_exchange(port, junk, len, out, sizeof out, &closed);
            ASSERT(closed || strncmp(out, "HTTP/1.1 ", 9) == 0);
        } else {
            /* send and hang up at once, reading nothing */
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            ASSERT(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
            (void)send(fd, junk, len, MSG_NOSIGNAL);
            close(fd);
        }
    }

    struct reply r;
    ASSERT_EQ(post(port, "{\"after\":\"garbage\"}", &r), 201);
    ASSERT_EQ(http(port, "GET", "/health", NULL, &r), 200);
    pf_server_stop(s);
    check_no_leaks();
}

/* --- concurrency and shutdown ---------------------------------------------- */

TEST(serve_many_concurrent_connections_with_latency)
{
    long limit = raise_nofile();
    /* each connection costs one descriptor on each side, both in this process */
    int n = (int)PF__MIN(1500L, (limit - 200) / 2);
    if (n < 100)
        SKIP("RLIMIT_NOFILE too low for this test");
    pf_serve_opts o = {.latency_min = 0.1, .latency_max = 0.1};
    pf_server *s = start_server(&o);
    uint16_t port = pf_server_port(s);
    int threads_before = pf__thread_count();

    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n);
    CURL **e = calloc((size_t)n, sizeof *e);
    struct reply *r = calloc((size_t)n, sizeof *r);
    struct curl_slist **h = calloc((size_t)n, sizeof *h);
    for (int i = 0; i < n; i++) {
        e[i] = curl_easy_init();
        easy_setup(e[i], port, "POST", "/api/users", "{\"name\":\"neo\"}", &r[i], &h[i]);
        curl_easy_setopt(e[i], CURLOPT_FRESH_CONNECT, 1L);
        curl_multi_add_handle(m, e[i]);
    }
    int running = 1, max_threads = 0;
    double t0 = now_s(), deadline = t0 + 60 * pf_test_scale();
    while (running && now_s() < deadline) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 50, NULL);
        max_threads = PF__MAX(max_threads, pf__thread_count());
    }
    ASSERT_EQ(running, 0);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &r[i].status);
        if (r[i].status == 201)
            ok++;
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        curl_slist_free_all(h[i]);
    }
    curl_multi_cleanup(m);
    free(e);
    free(r);
    free(h);
    ASSERT_EQ(ok, n);
    ASSERT(now_s() - t0 >= 0.1);
    /* No thread per connection: the server's threads did not grow with n. */
    ASSERT_LE(max_threads, threads_before + 8);

    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.created, n);
    pf_server_stop(s);
    check_no_leaks();
}

TEST(serve_stop_with_requests_still_delayed)
{
    warm_up();
    int fds_before = count_fds();
    int threads_before = pf__thread_count();
    /* A latency far longer than the test may run: stop must not wait it out. */
    pf_serve_opts o = {.latency_min = 3600, .latency_max = 3600, .threads = 2};
    pf_server *s = start_server(&o);
    uint16_t port = pf_server_port(s);
    enum { N = 50 };
    CURLM *m = curl_multi_init();
    CURL *e[N];
    struct reply r[N];
    struct curl_slist *h[N];
    for (int i = 0; i < N; i++) {
        e[i] = curl_easy_init();
        memset(&r[i], 0, sizeof r[i]);
        easy_setup(e[i], port, "POST", "/api/users", "{\"wait\":1}", &r[i], &h[i]);
        curl_multi_add_handle(m, e[i]);
    }
    /* Let the requests reach the server and be suspended. */
    int running = 1;
    double until = now_s() + 0.5;
    while (now_s() < until) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    ASSERT_EQ(running, N); /* all still waiting */
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.requests, 0);

    double t0 = now_s();
    pf_server_stop(s);
    /* Not a speed check: 3600 s of latency were not waited out. */
    ASSERT(now_s() - t0 < 600);

    /* Every client gets an answer or sees its connection closed. */
    double deadline = now_s() + 30 * pf_test_scale();
    while (running && now_s() < deadline) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    ASSERT_EQ(running, 0);
    for (int i = 0; i < N; i++) {
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        curl_slist_free_all(h[i]);
    }
    curl_multi_cleanup(m);
    /* Every descriptor and thread of the server is gone. */
    ASSERT_EQ(count_fds(), fds_before);
    ASSERT_EQ(pf__thread_count(), threads_before);
    check_no_leaks();
}

TEST(serve_start_stop_releases_everything)
{
    warm_up();
    int fds_before = count_fds();
    int threads_before = pf__thread_count();
    for (int i = 0; i < 20; i++) {
        pf_serve_opts o = {.latency_min = 0.001, .latency_max = 0.002, .threads = 1 + i % 3};
        pf_server *s = start_server(&o);
        if (i % 4 == 0) {
            struct reply r;
            ASSERT_EQ(post(pf_server_port(s), "{\"i\":1}", &r), 201);
        }
        pf_server_stop(s);
    }
    ASSERT_EQ(count_fds(), fds_before);
    ASSERT_EQ(pf__thread_count(), threads_before);
    check_no_leaks();
}

/* --- the delay timer ------------------------------------------------------- */

struct fired {
    pf__mutex lock;
    int n;
    uint64_t at[64];
    uintptr_t item[64];
};
static struct fired g_fired;

static void record_fire(void *item)
{
    pf__mutex_lock(&g_fired.lock);
    if (g_fired.n < 64) {
        g_fired.at[g_fired.n] = pf__now_ns();
        g_fired.item[g_fired.n] = (uintptr_t)item;
        g_fired.n++;
    }
    pf__mutex_unlock(&g_fired.lock);
}

TEST(serve_timer_fires_in_deadline_order_at_most_the_lead_early)
{
    pf__mutex_init(&g_fired.lock);
    pf__timer *t;
    ASSERT_OK(pf__timer_start(&t, 40, record_fire));
    /* Items 1..40, deadlines shuffled over 0..78 ms from `base`, which is far
     * enough ahead that all 40 are in before the first is due (they were due
     * from the first add on, and a slow add under ThreadSanitizer let the
     * timer fire a later deadline before an earlier one was even added). */
    uint64_t base = pf__now_ns() + (uint64_t)(50e6 * pf_test_scale());
    uint64_t deadline[41];
    for (uintptr_t i = 1; i <= 40; i++) {
        deadline[i] = base + ((i * 17) % 40) * 2000000u;
        ASSERT_OK(pf__timer_add(t, deadline[i], (void *)i));
    }
    for (int waited = 0; waited < 500; waited++) {
        pf__mutex_lock(&g_fired.lock);
        int n = g_fired.n;
        pf__mutex_unlock(&g_fired.lock);
        if (n == 40)
            break;
        pf_test_sleep_ms(10 * (int)pf_test_scale());
    }
    pf__timer_shutdown(t);
    ASSERT_EQ(g_fired.n, 40);
    for (int k = 0; k < 40; k++) {
        uintptr_t i = g_fired.item[k];
        ASSERT(g_fired.at[k] + PF__TIMER_LEAD_NS >= deadline[i]);
        if (k > 0)
            ASSERT(deadline[g_fired.item[k - 1]] <= deadline[i]);
    }
    ASSERT_ERR(pf__timer_add(t, base, (void *)1), PF_ESHUTDOWN);
    pf__timer_free(t);
}

TEST(serve_timer_shutdown_fires_pending_at_once)
{
    pf__mutex_init(&g_fired.lock);
    pf__timer *t;
    ASSERT_OK(pf__timer_start(&t, 8, record_fire));
    uint64_t far = pf__now_ns() + 3600ull * 1000000000u;
    for (uintptr_t i = 1; i <= 5; i++)
        ASSERT_OK(pf__timer_add(t, far, (void *)i));
    ASSERT_OK(pf__timer_add(t, far, (void *)6));
    ASSERT_OK(pf__timer_add(t, far, (void *)7));
    ASSERT_OK(pf__timer_add(t, far, (void *)8));
    ASSERT_ERR(pf__timer_add(t, far, (void *)9), PF_ENOSPC); /* capacity 8 */
    pf__timer_free(t);                                       /* shuts down: fires the 8 now */
    ASSERT_EQ(g_fired.n, 8);
    pf__timer_free(NULL);
    pf__timer_shutdown(NULL);
    ASSERT_ERR(pf__timer_start(NULL, 1, record_fire), PF_EINVAL);
    ASSERT_ERR(pf__timer_start(&t, 0, record_fire), PF_EINVAL);
    check_no_leaks();
}

/* --- the CLI --------------------------------------------------------------- */

struct child {
    pid_t pid;
    int out, err; /* read ends of its stdout and stderr */
};

static struct child spawn_pfor(char *const argv[])
{
    int o[2], e[2];
    ASSERT(pipe2(o, O_CLOEXEC) == 0 && pipe2(e, O_CLOEXEC) == 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        execv("./pfor", argv);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    return (struct child){pid, o[0], e[0]};
}

/* Read from fd until EOF, a newline (if stop_at_newline) or the time limit. */
static size_t read_until(int fd, char *buf, size_t cap, bool stop_at_newline, double seconds)
{
    size_t got = 0;
    double deadline = now_s() + seconds * pf_test_scale();
    while (got < cap - 1 && now_s() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t r = read(fd, buf + got, 1);
        if (r <= 0)
            break;
        got++;
        if (stop_at_newline && buf[got - 1] == '\n')
            break;
    }
    buf[got] = '\0';
    return got;
}

/* waitpid with a time limit; kills the child when it is over.  Status or -1. */
static int wait_child(pid_t pid, double seconds)
{
    double deadline = now_s() + seconds * pf_test_scale();
    int status;
    while (now_s() < deadline) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return status;
        pf_test_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

TEST(serve_cli_serves_and_exits_0_on_sigterm)
{
    if (access("./pfor", X_OK) != 0)
        SKIP("./pfor not found (run the tests from the build directory)");
    char *argv[] = {"pfor", "serve", "--port", "0", "--latency", "10ms", NULL};
    struct child c = spawn_pfor(argv);
    char line[256];
    read_until(c.out, line, sizeof line, true, 10);
    unsigned port = 0;
    if (sscanf(line, "listening on http://127.0.0.1:%u\n", &port) != 1 || port == 0) {
        kill(c.pid, SIGKILL);
        FAIL("unexpected first line '%s'", line);
    }
    struct reply r;
    ASSERT_EQ(post((uint16_t)port, "{\"name\":\"trinity\"}", &r), 201);
    ASSERT(r.seconds >= 0.01);
    ASSERT_EQ(http((uint16_t)port, "GET", "/nope", NULL, &r), 404);
    ASSERT(kill(c.pid, SIGTERM) == 0);
    int status = wait_child(c.pid, 10);
    ASSERT(status != -1 && WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    char rest[256], err[512];
    read_until(c.out, rest, sizeof rest, false, 2);
    ASSERT_STREQ(rest, ""); /* exactly one line on stdout */
    read_until(c.err, err, sizeof err, false, 2);
    ASSERT_EQ(count_lines(err), 1);
    ASSERT(strstr(err, "2 requests") != NULL);
    ASSERT(strstr(err, "1 created") != NULL);
    close(c.out);
    close(c.err);
}

TEST(serve_cli_bad_input_exits_2_with_one_line)
{
    if (access("./pfor", X_OK) != 0)
        SKIP("./pfor not found (run the tests from the build directory)");
    pf_server *taken = start_server(NULL);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%u", pf_server_port(taken));
    char *cases[][8] = {
        {"pfor", "serve", "--latency", "abc", NULL},
        {"pfor", "serve", "--latency", "300ms..100ms", NULL},
        {"pfor", "serve", "--bogus", NULL},
        {"pfor", "serve", "--port", "70000", NULL},
        {"pfor", "serve", "--port", NULL},
        {"pfor", "serve", "--error-rate", "2", NULL},
        {"pfor", "serve", "--threads", "0", NULL},
        {"pfor", "serve", "--bind", "localhost", "--port", "0", NULL},
        {"pfor", "serve", "--bind", "fe80::1", "--port", "0", NULL},
        {"pfor", "serve", "stray", NULL},
        {"pfor", "serve", "--port", port_s, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct child c = spawn_pfor(cases[i]);
        int status = wait_child(c.pid, 10);
        char out[256], err[512];
        read_until(c.out, out, sizeof out, false, 1);
        read_until(c.err, err, sizeof err, false, 1);
        close(c.out);
        close(c.err);
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 2)
            FAIL("case %zu (%s %s): status %d, stderr '%s'", i, cases[i][2],
                 cases[i][3] ? cases[i][3] : "", status, err);
        ASSERT_STREQ(out, "");
        ASSERT_EQ(count_lines(err), 1);
        ASSERT(strncmp(err, "pfor: ", 6) == 0);
    }
    pf_server_stop(taken);
}

TEST(serve_cli_help_exits_0)
{
    if (access("./pfor", X_OK) != 0)
        SKIP("./pfor not found (run the tests from the build directory)");
    char *argv[] = {"pfor", "serve", "--help", NULL};
    struct child c = spawn_pfor(argv);
    int status = wait_child(c.pid, 10);
    char out[4096];
    read_until(c.out, out, sizeof out, false, 1);
    close(c.out);
    close(c.err);
    ASSERT(status != -1 && WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT(strstr(out, "--latency") != NULL);
}
