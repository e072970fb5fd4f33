/*
 * Executor stress: a million tiny tasks, ten thousand futures through
 * as_completed, concurrent submitters, cancel and crash storms.
 * Counts are full size in the plain build and divided by the runner's time
 * scale in sanitizer builds (which run 3-10x slower).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "../unit/tasks.h"

static long scaled(long n)
{
    return (long)((double)n / pf_test_scale());
}

static pf_executor *make(pf_kind kind, int workers)
{
    pf_executor *ex;
    pf_executor_opts o = {.max_workers = workers};
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    return ex;
}

static void million_tiny_tasks(pf_kind kind)
{
    long n = scaled(1000000);
    pf_executor *ex = make(kind, 2);
    for (long i = 0; i < n; i++)
        ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, NULL));
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    pf_progress p;
    ASSERT_OK(pf_executor_progress(ex, &p));
    ASSERT_EQ(p.submitted, n);
    ASSERT_EQ(p.done, n);
    ASSERT_EQ(p.failed, 0);
    ASSERT_EQ(p.running, 0);
    pf_executor_destroy(ex);
}
FOR_POOLS(million_tiny_tasks)

static void ten_thousand_through_as_completed(pf_kind kind)
{
    enum { N = 10000 };
    pf_executor *ex = make(kind, 4);
    pf_future **fs = malloc(N * sizeof *fs);
    for (int i = 0; i < N; i++) {
        int64_t x = i;
        ASSERT_OK(pf_submit(ex, task_square, &x, sizeof x, &fs[i]));
    }
    pf_as_completed *ac;
    ASSERT_OK(pf_as_completed_create(&ac, fs, N));
    char *seen = calloc(N, 1);
    for (int k = 0; k < N; k++) {
        pf_future *f;
        ASSERT_OK(pf_as_completed_next(ac, PF_FOREVER, &f));
        ASSERT(pf_future_done(f));
        const void *d;
        size_t len;
        ASSERT_OK(pf_future_result(f, 0, &d, &len));
        int64_t v;
        memcpy(&v, d, sizeof v);
        /* which input was it?  the result's square root */
        int64_t r = 0;
        while (r * r < v)
            r++;
        ASSERT(r < N && r * r == v);
        ASSERT(fs[r] == f);
        ASSERT_EQ(seen[r], 0);
        seen[r] = 1;
    }
    pf_future *none;
    ASSERT_ERR(pf_as_completed_next(ac, 0, &none), PF_EEOF);
    pf_as_completed_destroy(ac);
    for (int i = 0; i < N; i++)
        pf_future_release(fs[i]);
    free(fs);
    free(seen);
    pf_executor_destroy(ex);
}
FOR_POOLS(ten_thousand_through_as_completed)

struct submitter {
    pf_executor *ex;
    int id;
    long n;
    long sum;
};

static void *submit_loop(void *arg)
{
    struct submitter *s = arg;
    pf_future **fs = malloc((size_t)s->n * sizeof *fs);
    for (long i = 0; i < s->n; i++) {
        int64_t x = s->id * 1000 + i % 1000;
        if (pf_submit(s->ex, task_square, &x, sizeof x, &fs[i]) != 0)
            abort();
    }
    for (long i = 0; i < s->n; i++) {
        const void *d;
        if (pf_future_result(fs[i], PF_FOREVER, &d, NULL) != 0)
            abort();
        s->sum += *(const int64_t *)d;
        pf_future_release(fs[i]);
    }
    free(fs);
    return NULL;
}

static void concurrent_submitters(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    enum { T = 4 };
    long n = scaled(20000);
    pthread_t th[T];
    struct submitter s[T];
    for (int t = 0; t < T; t++) {
        s[t] = (struct submitter){.ex = ex, .id = t, .n = n};
        ASSERT_OK(pthread_create(&th[t], NULL, submit_loop, &s[t]));
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        long want = 0;
        for (long i = 0; i < n; i++) {
            long x = t * 1000 + i % 1000;
            want += x * x;
        }
        ASSERT_EQ(s[t].sum, want);
    }
    pf_executor_destroy(ex);
}
FOR_POOLS(concurrent_submitters)

static void cancel_storm(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    long n = scaled(5000);
    pf_future **fs = malloc((size_t)n * sizeof *fs);
    pf_future *gate = submit_i32(ex, task_sleep_ms, 200); /* keeps the others pending */
    for (long i = 0; i < n; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, 0);
    long cancelled = 0;
    for (long i = 0; i < n; i += 2)
        cancelled += pf_future_cancel(fs[i]) == PF_OK;
    ASSERT_EQ(cancelled, (n + 1) / 2);
    for (long i = 0; i < n; i++) {
        int rc = pf_future_result(fs[i], PF_FOREVER, NULL, NULL);
        ASSERT_ERR(rc, i % 2 == 0 ? PF_ECANCELLED : PF_OK);
        pf_future_release(fs[i]);
    }
    pf_progress p;
    pf_executor_progress(ex, &p);
    ASSERT_EQ(p.cancelled, (n + 1) / 2);
    ASSERT_EQ(result_i32(gate), 200);
    pf_future_release(gate);
    free(fs);
    pf_executor_destroy(ex);
}
FOR_POOLS(cancel_storm)

/* Crashes when the argument is a multiple of 7. */
static int task_flaky(pf_task *t, const void *arg, size_t len)
{
    int32_t x;
    memcpy(&x, arg, sizeof x);
    if (len == sizeof x && x % 7 == 0)
        raise(SIGSEGV);
    return pf_task_set_result(t, &x, sizeof x);
}

TEST(crash_storm_on_processes)
{
    pf_executor *ex = make(PF_PROCESSES, 2);
    long n = scaled(1500);
    pf_future **fs = malloc((size_t)n * sizeof *fs);
    for (long i = 0; i < n; i++)
        fs[i] = submit_i32(ex, task_flaky, (int32_t)i);
    for (long i = 0; i < n; i++) {
        if (i % 7 == 0) {
            ASSERT_ERR(pf_future_result(fs[i], PF_FOREVER, NULL, NULL), PF_EWORKERDIED);
        } else {
            ASSERT_EQ(result_i32(fs[i]), i);
        }
        pf_future_release(fs[i]);
    }
    free(fs);
    pf_executor_destroy(ex);
}

static _Atomic long progress_calls;
static _Atomic long progress_last_done;

static void on_progress(const pf_progress *p, void *user)
{
    ASSERT(user == &progress_calls);
    ASSERT(p->done <= p->submitted);
    progress_calls++;
    /* Workers call this at once: keep the largest with a CAS (a plain
     * read-then-write could put a smaller count back over a larger one). */
    long d = (long)p->done, seen = progress_last_done;
    while (d > seen && !atomic_compare_exchange_weak(&progress_last_done, &seen, d)) {
    }
}

static void progress_hook(pf_kind kind)
{
    pf_executor_opts o = {
        .max_workers = 2, .progress = on_progress, .progress_user = &progress_calls};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    for (int i = 0; i < 500; i++)
        ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, NULL));
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    ASSERT_EQ(progress_calls, 500); /* once per finished task */
    ASSERT_EQ(progress_last_done, 500);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(progress_hook)
