/*
 * The mock API under load: thousands of concurrent connections, each held
 * by a ranged latency, some answered with injected errors; then a second
 * wave on the same connections (keep-alive).  Bounded in count and time;
 * asserts on answers, counters and thread counts, never on speed.
 */
#include <sys/resource.h>

#include <curl/curl.h>

#include "internal.h"
#include "test.h"

static double now_s(void)
{
    return (double)pf__now_ns() / 1e9;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Run every handle of m to completion or until the deadline; returns the
 * number still running and records the most threads seen. */
static int drive(CURLM *m, double deadline, int *max_threads)
{
    int running = 1;
    while (running && now_s() < deadline) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 50, NULL);
        *max_threads = PF__MAX(*max_threads, pf__thread_count());
    }
    return running;
}

TEST(serve_load_thousands_of_connections_under_latency)
{
    struct rlimit rl;
    ASSERT(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    long limit = rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
    /* client and server descriptors both live in this process */
    int n = (int)PF__MIN(4000L, (limit - 300) / 2);
    if (n < 500)
        SKIP("RLIMIT_NOFILE too low for this test");

    ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    pf_serve_opts o = {.latency_min = 0.15, .latency_max = 0.25, .error_rate = 0.1};
    pf_server *s = NULL;
    ASSERT_OK(pf_server_start(&s, &o));
    int threads_before = pf__thread_count();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/users", pf_server_port(s));

    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n); /* keep them for wave 2 */
    CURL **e = calloc((size_t)n, sizeof *e);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < n; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, "{\"name\":\"agent smith\",\"job\":\"agent\"}");
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, (long)(120000 * pf_test_scale()));
    }

    int max_threads = 0;
    long created = 0, failed = 0, reconnects = 0;
    for (int wave = 0; wave < 2; wave++) {
        for (int i = 0; i < n; i++)
            curl_multi_add_handle(m, e[i]);
        double t0 = now_s();
        ASSERT_EQ(drive(m, t0 + 120 * pf_test_scale(), &max_threads), 0);
        ASSERT(now_s() - t0 >= 0.15); /* nobody was answered before the latency */
        for (int i = 0; i < n; i++) {
            long status = 0;
            curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &status);
            if (status == 201)
                created++;
            else if (status == 500)
                failed++;
            else
                FAIL("wave %d, request %d: status %ld", wave, i, status);
            long connects = 0;
            curl_easy_getinfo(e[i], CURLINFO_NUM_CONNECTS, &connects);
            if (wave == 1)
                reconnects += connects;
            curl_multi_remove_handle(m, e[i]);
        }
    }
    for (int i = 0; i < n; i++)
        curl_easy_cleanup(e[i]);
    free(e);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);

    ASSERT_EQ(created + failed, 2 * n);
    ASSERT_EQ(reconnects, 0);               /* wave 2 went over wave 1's connections */
    ASSERT(failed > 0 && created > failed); /* ~10 % of 2n injected */
    pf_server_stats st;
    ASSERT_OK(pf_server_stats_get(s, &st));
    ASSERT_EQ(st.created, created);
    ASSERT_EQ(st.server_errors, failed);
    ASSERT_EQ(st.requests, 2 * n);
    ASSERT_EQ(st.client_errors, 0);
    /* n connections held at once, and the thread count did not follow n */
    ASSERT_LE(max_threads, threads_before + 8);
    pf_server_stop(s);
}
