/*
 * What the article's examples share: the API they POST to, and the task
 * that makes one request.  Header-only, for the examples in this folder.
 *
 * The article POSTs `data` to a public test API (POST /api/users -> 201
 * Created).  With no argument, the examples start pfor's own mock of that
 * API in-process on a loopback port, answering after ARTICLE_LATENCY_MS;
 * pass a URL to use another server.
 */
#ifndef ARTICLE_H
#define ARTICLE_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pfor/pfor.h"
#include "pfor/serve.h"

#ifndef ARTICLE_REQUESTS
#define ARTICLE_REQUESTS 100 /* the article makes 500, at 200 ms each */
#endif
#define ARTICLE_LATENCY_MS 20

/* The article's `data`. */
static const char article_data[] = "{\"name\": \"morpheus\", \"job\": \"leader\"}";

static inline double article_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The API's URL: argv[1], or the built-in mock started into *server. */
static const char *article_api(int argc, char **argv, pf_server **server)
{
    static char url[256];
    *server = NULL;
    if (argc > 1)
        return argv[1];
    pf_serve_opts o = {.latency_min = ARTICLE_LATENCY_MS / 1000.0,
                       .latency_max = ARTICLE_LATENCY_MS / 1000.0};
    int rc = pf_server_start(server, &o);
    if (rc != 0) {
        fprintf(stderr, "cannot start the mock API: %s\n", pf_strerror(rc));
        exit(1);
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/users", pf_server_port(*server));
    return url;
}

/* Per-worker state: one libcurl handle, so each worker keeps its connection
 * open from one request to the next. */
static pthread_once_t article_curl_once = PTHREAD_ONCE_INIT;
static struct curl_slist *article_headers; /* set once, the same for every handle */

static inline void article_curl_global(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    article_headers = curl_slist_append(NULL, "Content-Type: application/json");
}

static inline size_t article_discard(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    (void)user;
    return size * n;
}

/* A pfor worker initializer: arg is the URL (a C string). */
static inline int article_worker_init(void **state, const void *arg, size_t len, int index)
{
    (void)len;
    (void)index;
    pthread_once(&article_curl_once, article_curl_global);
    CURL *curl = curl_easy_init();
    if (!curl)
        return 1;
    curl_easy_setopt(curl, CURLOPT_URL, (const char *)arg);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, article_headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, article_data);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, article_discard);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    *state = curl;
    return 0;
}

static inline void article_worker_fini(void *state, int index)
{
    (void)index;
    curl_easy_cleanup(state);
}

/* One POST with the worker's handle: 0 with the HTTP status, or the task
 * failed with libcurl's reason. */
static inline int article_post(pf_task *t, long *status)
{
    CURL *curl = pf_task_worker_state(t);
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK)
        return pf_task_fail(t, (int)rc, "%s", curl_easy_strerror(rc));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* The article's post_req(data): POST, and give back the status code. */
static inline int post_req(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    long status = 0;
    int rc = article_post(t, &status);
    if (rc != 0)
        return rc;
    int32_t code = (int32_t)status;
    return pf_task_set_result(t, &code, sizeof code);
}

/* The article's loop, on any executor: submit every request, then collect
 * the status codes.  Returns how many got 201. */
static inline int article_loop(pf_kind kind, int workers, const char *url, int n)
{
    pf_executor_opts o = {.max_workers = workers,
                          .initializer = article_worker_init,
                          .finalizer = article_worker_fini,
                          .init_arg = url,
                          .init_arg_len = strlen(url) + 1};
    pf_executor *ex;
    int rc = pf_executor_create(&ex, kind, &o);
    if (rc != 0) {
        fprintf(stderr, "executor: %s\n", pf_strerror(rc));
        exit(1);
    }
    pf_future **futures = calloc((size_t)n, sizeof *futures);
    for (int i = 0; i < n; i++) /* futures.append(executor.submit(post_req, data)) */
        pf_submit(ex, post_req, &i, sizeof i, &futures[i]);
    int created = 0;
    for (int i = 0; i < n; i++) { /* future.result() */
        const void *status;
        if (pf_future_result(futures[i], PF_FOREVER, &status, NULL) == 0)
            created += *(const int32_t *)status == 201;
        else if (i == 0) { /* the article's advice: look at one result */
            pf_error_info info;
            pf_future_error(futures[i], &info);
            fprintf(stderr, "request failed: %s\n", info.message);
        }
        pf_future_release(futures[i]);
    }
    free(futures);
    pf_executor_destroy(ex);
    return created;
}

/* Print a dict whose keys are request numbers as Python prints it:
 * {0: 201, 1: 201, ...}, in key order. */
struct article_entry {
    long key;
    long value;
};

static inline int article_collect(void *user, const void *key, size_t klen, const void *val,
                                  size_t vlen)
{
    struct article_entry **cursor = user;
    char k[32] = {0}, v[32] = {0};
    memcpy(k, key, klen < 31 ? klen : 31);
    memcpy(v, val, vlen < 31 ? vlen : 31);
    (*cursor)->key = atol(k);
    (*cursor)->value = atol(v);
    (*cursor)++;
    return 0;
}

static inline int article_by_key(const void *a, const void *b)
{
    long x = ((const struct article_entry *)a)->key, y = ((const struct article_entry *)b)->key;
    return (x > y) - (x < y);
}

static inline void article_print_dict(pf_dict *d)
{
    size_t n = 0;
    pf_dict_len(d, &n);
    struct article_entry *all = calloc(n + 1, sizeof *all), *cursor = all;
    pf_dict_foreach(d, article_collect, &cursor);
    n = (size_t)(cursor - all);
    qsort(all, n, sizeof *all, article_by_key);
    printf("{");
    for (size_t i = 0; i < n; i++)
        printf("%s%ld: %ld", i ? ", " : "", all[i].key, all[i].value);
    printf("}\n");
    free(all);
}

#endif /* ARTICLE_H */
