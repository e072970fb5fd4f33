/*
 * map, parallel_for and parallel_reduce on every executor kind.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "tasks.h"

static pf_executor *make(pf_kind kind, int workers)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = workers};
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    return ex;
}

/* --- map ------------------------------------------------------------------ */

struct collect {
    int64_t *out;
    size_t n, emitted, next_expected;
    bool ordered;
    int failures;
    size_t stop_at; /* emit returns 99 at this index (SIZE_MAX: never) */
};

static int collect_emit(void *user, size_t index, int status, const void *data, size_t len,
                        const char *errmsg)
{
    struct collect *c = user;
    ASSERT(index < c->n);
    if (c->ordered)
        ASSERT_EQ(index, c->next_expected);
    c->next_expected = index + 1;
    if (status == PF_OK) {
        ASSERT_EQ(len, 8);
        memcpy(&c->out[index], data, 8);
    } else {
        ASSERT(errmsg != NULL && errmsg[0]);
        c->out[index] = -1;
        c->failures++;
    }
    c->emitted++;
    return index == c->stop_at ? 99 : 0;
}

static void map_squares(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    enum { N = 5000 };
    int64_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = i;
    const size_t chunks[] = {0, 1, 7, 1000};
    for (int unordered = 0; unordered < 2; unordered++) {
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            memset(out, 0xff, N * sizeof *out);
            struct collect c = {.out = out, .n = N, .ordered = !unordered, .stop_at = SIZE_MAX};
            pf_map_opts o = {.chunksize = chunks[k], .unordered = unordered};
            ASSERT_OK(pf_map_array(ex, task_square, in, N, sizeof *in, collect_emit, &c, &o));
            ASSERT_EQ(c.emitted, N);
            for (int i = 0; i < N; i++)
                ASSERT_EQ(out[i], (int64_t)i * i);
        }
    }
    free(in);
    free(out);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(map_squares)

/* Fails on multiples of 10. */
static int task_picky(pf_task *t, const void *arg, size_t len)
{
    int64_t x;
    memcpy(&x, arg, sizeof x);
    if (x % 10 == 0)
        return pf_task_fail(t, 10, "%lld is a multiple of ten", (long long)x);
    return task_square(t, arg, len);
}
PF_REGISTER(task_picky)

static void map_item_errors_and_early_stop(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    enum { N = 300 };
    int64_t in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i + 1;
    struct collect c = {.out = out, .n = N, .ordered = true, .stop_at = SIZE_MAX};
    pf_map_opts o = {.chunksize = 16};
    ASSERT_ERR(pf_map_array(ex, task_picky, in, N, 8, collect_emit, &c, &o), PF_ETASK);
    ASSERT_EQ(c.emitted, N);
    ASSERT_EQ(c.failures, N / 10);
    ASSERT_EQ(out[8], 81);
    ASSERT_EQ(out[9], -1);
    /* early stop: the emit callback's value comes back, nothing after it */
    c = (struct collect){.out = out, .n = N, .ordered = true, .stop_at = 50};
    ASSERT_EQ(pf_map_array(ex, task_square, in, N, 8, collect_emit, &c, &o), 99);
    ASSERT_EQ(c.emitted, 51);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(map_item_errors_and_early_stop)

struct stream {
    size_t n, produced, emitted, max_outstanding;
    int64_t value;
};

static int stream_next(void *user, size_t index, const void **arg, size_t *len)
{
    struct stream *s = user;
    if (index >= s->n)
        return PF_EEOF;
    ASSERT_EQ(index, s->produced);
    s->produced++;
    size_t outstanding = s->produced - s->emitted;
    if (outstanding > s->max_outstanding)
        s->max_outstanding = outstanding;
    s->value = (int64_t)index;
    *arg = &s->value;
    *len = sizeof s->value;
    return PF_OK;
}

static int stream_emit(void *user, size_t index, int status, const void *data, size_t len,
                       const char *errmsg)
{
    (void)errmsg;
    struct stream *s = user;
    ASSERT_OK(status);
    ASSERT_EQ(len, 8);
    int64_t v;
    memcpy(&v, data, 8);
    ASSERT_EQ(v, (int64_t)index * (int64_t)index);
    s->emitted++;
    return 0;
}

static void map_stream_is_bounded(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    for (int unordered = 0; unordered < 2; unordered++) {
        struct stream s = {.n = 200000};
        pf_map_opts o = {.chunksize = 100, .max_in_flight = 4, .unordered = unordered};
        ASSERT_OK(pf_map(ex, task_square, stream_next, stream_emit, &s, &o));
        ASSERT_EQ(s.emitted, s.n);
        /* never more than the window of chunks read ahead */
        ASSERT_LE(s.max_outstanding, 4 * 100 + 100);
    }
    /* unordered early stop: chunks still out are withdrawn and waited for */
    int64_t in[1000], out[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = i;
    struct collect c = {.out = out, .n = 1000, .ordered = false, .stop_at = 10};
    pf_map_opts o = {.chunksize = 3, .unordered = true};
    ASSERT_EQ(pf_map_array(ex, task_square, in, 1000, 8, collect_emit, &c, &o), 99);
    ASSERT_LE(c.emitted, 1000);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(map_stream_is_bounded)

/* Crashes its worker on 13. */
static int task_unlucky(pf_task *t, const void *arg, size_t len)
{
    int64_t x;
    memcpy(&x, arg, sizeof x);
    if (x == 13)
        raise(SIGSEGV);
    return task_square(t, arg, len);
}

TEST(map_survives_a_crashing_item_on_processes)
{
    pf_executor *ex = make(PF_PROCESSES, 2);
    enum { N = 100 };
    int64_t in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    struct collect c = {.out = out, .n = N, .ordered = true, .stop_at = SIZE_MAX};
    pf_map_opts o = {.chunksize = 10};
    ASSERT_ERR(pf_map_array(ex, task_unlucky, in, N, 8, collect_emit, &c, &o), PF_EWORKERDIED);
    ASSERT_EQ(c.failures, 10); /* the crashing chunk's items */
    for (int i = 0; i < N; i++)
        ASSERT_EQ(out[i], i >= 10 && i < 20 ? -1 : (int64_t)i * i);
    pf_executor_destroy(ex);
}

TEST(map_rejects_bad_input)
{
    pf_executor *ex = make(PF_THREADS, 1);
    int64_t x = 1;
    struct collect c = {.out = &x, .n = 1, .stop_at = SIZE_MAX};
    ASSERT_ERR(pf_map_array(NULL, task_square, &x, 1, 8, collect_emit, &c, NULL), PF_EINVAL);
    ASSERT_ERR(pf_map_array(ex, NULL, &x, 1, 8, collect_emit, &c, NULL), PF_EINVAL);
    ASSERT_ERR(pf_map_array(ex, task_square, NULL, 1, 8, collect_emit, &c, NULL), PF_EINVAL);
    ASSERT_ERR(pf_map_array(ex, task_square, &x, 1, 8, NULL, &c, NULL), PF_EINVAL);
    ASSERT_ERR(pf_map(ex, task_square, NULL, collect_emit, &c, NULL), PF_EINVAL);
    pf_map_opts o = {.timeout = -1};
    ASSERT_ERR(pf_map_array(ex, task_square, &x, 1, 8, collect_emit, &c, &o), PF_EINVAL);
    ASSERT_OK(pf_map_array(ex, task_square, NULL, 0, 8, collect_emit, &c, NULL));
    pf_executor_destroy(ex);
}

/* pf_map's timeout has pf_submit_ex's bounds: above 1e9 s (where timeout * 1e9
 * no longer fits the nanosecond deadline), infinite or NaN is PF_EINVAL, before
 * any item runs. */
TEST(map_rejects_timeouts_that_pf_submit_ex_rejects)
{
    pf_executor *ex = make(PF_THREADS, 2);
    int64_t in[4] = {1, 2, 3, 4}, out[4];
    const double bad[] = {1e9 * 1.5, 1e12, 1e30, INFINITY, NAN, -1};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct collect c = {.out = out, .n = 4, .ordered = true, .stop_at = SIZE_MAX};
        pf_map_opts o = {.timeout = bad[k], .chunksize = 1};
        ASSERT_ERR(pf_map_array(ex, task_square, in, 4, 8, collect_emit, &c, &o), PF_EINVAL);
        ASSERT_EQ(c.emitted, 0);
        if (bad[k] > 0) { /* the same value is refused by pf_submit_ex */
            pf_submit_opts so = {.timeout = bad[k]};
            pf_future *f;
            ASSERT_ERR(pf_submit_ex(ex, task_square, in, 8, &so, &f), PF_EINVAL);
        }
    }
    struct collect c = {.out = out, .n = 4, .ordered = true, .stop_at = SIZE_MAX};
    pf_map_opts o = {.timeout = 1e9, .chunksize = 1}; /* the largest accepted */
    ASSERT_OK(pf_map_array(ex, task_square, in, 4, 8, collect_emit, &c, &o));
    ASSERT_EQ(c.emitted, 4);
    ASSERT_EQ(out[3], 16);
    pf_executor_destroy(ex);
}

/* --- parallel_for and parallel_reduce ------------------------------------- */

struct sum {
    uint64_t total;
    uint64_t count;
};

static int sum_body(size_t b, size_t e, const void *ctx, void *acc)
{
    const uint64_t *scale = ctx;
    struct sum *s = acc;
    for (size_t i = b; i < e; i++) {
        s->total += i * *scale;
        s->count++;
    }
    return 0;
}
PF_REGISTER(sum_body)

static void sum_combine(void *acc, const void *other)
{
    struct sum *a = acc;
    const struct sum *b = other;
    a->total += b->total;
    a->count += b->count;
}

static void reduce_every_schedule(pf_kind kind)
{
    pf_executor *ex = make(kind, 3);
    const size_t n = 100003;
    uint64_t scale = 3;
    const pf_schedule schedules[] = {PF_SCHEDULE_AUTO, PF_SCHEDULE_STATIC, PF_SCHEDULE_DYNAMIC,
                                     PF_SCHEDULE_GUIDED};
    const size_t chunks[] = {0, 1, 977};
    for (size_t s = 0; s < 4; s++) {
        for (size_t k = 0; k < 3; k++) {
            if (chunks[k] == 1 && kind == PF_PROCESSES)
                continue; /* a task per iteration: correct, but slow for a unit test */
            struct sum acc = {0, 0};
            pf_for_opts o = {.schedule = schedules[s], .chunk = chunks[k]};
            ASSERT_OK(pf_parallel_reduce(ex, 7, n, sum_body, &scale, sizeof scale, &acc, sizeof acc,
                                         sum_combine, &o));
            ASSERT_EQ(acc.count, n - 7);
            ASSERT_EQ(acc.total, 3 * ((uint64_t)n * (n - 1) / 2 - 21));
        }
    }
    struct sum acc = {0, 0};
    ASSERT_OK(pf_parallel_reduce(ex, 5, 5, sum_body, &scale, sizeof scale, &acc, sizeof acc,
                                 sum_combine, NULL));
    ASSERT_EQ(acc.count, 0);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(reduce_every_schedule)

static int is_prime(uint64_t x)
{
    if (x < 2)
        return 0;
    for (uint64_t d = 2; d * d <= x; d++)
        if (x % d == 0)
            return 0;
    return 1;
}

static int count_primes(size_t b, size_t e, const void *ctx, void *acc)
{
    (void)ctx;
    for (size_t i = b; i < e; i++)
        *(uint64_t *)acc += (uint64_t)is_prime(i);
    return 0;
}
PF_REGISTER(count_primes)

static void add_u64(void *acc, const void *other)
{
    *(uint64_t *)acc += *(const uint64_t *)other;
}

static void primes_kernel(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    uint64_t n = 0;
    ASSERT_OK(
        pf_parallel_reduce(ex, 0, 200000, count_primes, NULL, 0, &n, sizeof n, add_u64, NULL));
    ASSERT_EQ(n, 17984); /* pi(200000) */
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(primes_kernel)

static int fill_body(size_t b, size_t e, void *ctx)
{
    _Atomic int *seen = ctx;
    for (size_t i = b; i < e; i++)
        seen[i]++;
    return 0;
}

static void for_covers_each_index_once(pf_kind kind)
{
    pf_executor *ex = make(kind, 4);
    enum { N = 20011 };
    _Atomic int *seen = calloc(N, sizeof *seen);
    const pf_schedule schedules[] = {PF_SCHEDULE_AUTO, PF_SCHEDULE_STATIC, PF_SCHEDULE_DYNAMIC,
                                     PF_SCHEDULE_GUIDED};
    for (int s = 0; s < 4; s++) {
        for (size_t chunk = 0; chunk < 3; chunk++) {
            pf_for_opts o = {.schedule = schedules[s], .chunk = chunk * 50, .grain = 1};
            ASSERT_OK(pf_parallel_for(ex, 0, N, fill_body, (void *)seen, 0, &o));
            for (int i = 0; i < N; i++)
                ASSERT_EQ(seen[i], 1);
            memset((void *)seen, 0, N * sizeof *seen);
        }
    }
    free((void *)seen);
    pf_executor_destroy(ex);
}
/* The dynamic schedule's shares: a participant whose share runs out takes
 * half of another's.  Iterations of the first share are slow, so the others
 * run out first and steal from it (which participant ran what is not
 * observable here): every index still runs once, and no call of the body
 * covers more than a chunk. */
struct steal_ctx {
    _Atomic int *seen;
    size_t n, chunk;
    _Atomic int too_long; /* calls wider than a chunk */
};

static int steal_body(size_t b, size_t e, void *ctx)
{
    struct steal_ctx *c = ctx;
    if (e - b > c->chunk)
        c->too_long++;
    for (size_t i = b; i < e; i++) {
        if (i < c->n / 16) { /* slow: about a microsecond */
            volatile uint64_t x = i;
            for (int k = 0; k < 300; k++)
                x = x * 2862933555777941757ull + 3037000493ull;
        }
        c->seen[i]++;
    }
    return 0;
}

TEST(dynamic_shares_under_uneven_work_cover_each_index_once)
{
    enum { N = 30011 };
    struct steal_ctx c = {.seen = calloc(N, sizeof(_Atomic int)), .n = N};
    ASSERT(c.seen != NULL);
    const int workers[] = {2, 3, 5, 8}; /* 8: more shares than fit in the job */
    const size_t chunks[] = {1, 3, 64};
    for (size_t w = 0; w < 4; w++) {
        pf_executor *ex = make(PF_THREADS, workers[w]);
        for (size_t k = 0; k < 3; k++) {
            c.chunk = chunks[k];
            pf_for_opts o = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = chunks[k], .grain = 1};
            ASSERT_OK(pf_parallel_for(ex, 0, N, steal_body, &c, 0, &o));
            for (int i = 0; i < N; i++)
                ASSERT_EQ(c.seen[i], 1);
            ASSERT_EQ(c.too_long, 0);
            memset((void *)c.seen, 0, N * sizeof *c.seen);
        }
        pf_executor_destroy(ex);
    }
    free((void *)c.seen);
}

TEST(for_covers_each_index_once_threads)
{
    for_covers_each_index_once(PF_THREADS);
}
TEST(for_covers_each_index_once_sequential)
{
    for_covers_each_index_once(PF_SEQUENTIAL);
}

static int failing_body(size_t b, size_t e, void *ctx)
{
    (void)ctx;
    for (size_t i = b; i < e; i++)
        if (i == 777)
            return 42;
    return 0;
}
PF_REGISTER(failing_body)

static void for_body_error(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    pf_for_opts o = {.chunk = 100};
    ASSERT_EQ(pf_parallel_for(ex, 0, 10000, failing_body, NULL, 0, &o), 42);
    ASSERT_OK(pf_parallel_for(ex, 0, 777, failing_body, NULL, 0, &o));
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(for_body_error)

static _Atomic long other_threads;
static pthread_t caller;

static int note_thread(size_t b, size_t e, void *ctx)
{
    (void)b;
    (void)e;
    (void)ctx;
    if (!pthread_equal(pthread_self(), caller))
        other_threads++;
    return 0;
}

TEST(tiny_loops_run_inline)
{
    pf_executor *ex = make(PF_THREADS, 4);
    caller = pthread_self();
    /* An explicit grain: ranges up to it run in the caller, always. */
    pf_for_opts o = {.grain = 1000};
    for (int i = 0; i < 100; i++)
        ASSERT_OK(pf_parallel_for(ex, 0, 1000, note_thread, NULL, 0, &o));
    ASSERT_EQ(other_threads, 0);
    /* The automatic grain measures: a loop of a few empty iterations
     * finishes within the probe.  Instrumented builds (scale > 1) are too
     * slow for the measurement to mean anything, so only the plain build
     * checks it. */
    if (pf_test_scale() == 1.0) {
        for (int i = 0; i < 100; i++)
            ASSERT_OK(pf_parallel_for(ex, 0, 8, note_thread, NULL, 0, NULL));
        ASSERT_EQ(other_threads, 0);
    }
    pf_progress p;
    pf_executor_progress(ex, &p);
    ASSERT_EQ(p.submitted, 0); /* the pool was never woken */
    pf_executor_destroy(ex);
}

struct nested {
    pf_executor *ex;
    uint64_t result;
};

static int nested_task(pf_task *t, const void *arg, size_t len)
{
    (void)len;
    pf_executor *ex;
    memcpy(&ex, arg, sizeof ex);
    uint64_t n = 0;
    pf_for_opts o = {.grain = 1, .chunk = 10};
    int rc = pf_parallel_reduce(ex, 0, 5000, count_primes, NULL, 0, &n, sizeof n, add_u64, &o);
    if (rc)
        return pf_task_fail(t, rc, "inner loop failed");
    return pf_task_set_result(t, &n, sizeof n);
}

TEST(parallel_for_inside_a_pool_task_does_not_deadlock)
{
    pf_executor *ex = make(PF_THREADS, 2);
    pf_future *fs[6];
    for (int i = 0; i < 6; i++) /* more outer tasks than threads */
        ASSERT_OK(pf_submit(ex, nested_task, &ex, sizeof ex, &fs[i]));
    for (int i = 0; i < 6; i++) {
        const void *d;
        ASSERT_OK(pf_future_result(fs[i], PF_FOREVER, &d, NULL));
        ASSERT_EQ(*(const uint64_t *)d, 669); /* pi(5000) */
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
}

TEST(loops_reject_bad_input)
{
    pf_executor *ex = make(PF_THREADS, 2);
    uint64_t acc = 0;
    ASSERT_ERR(pf_parallel_for(ex, 5, 4, fill_body, NULL, 0, NULL), PF_EINVAL);
    ASSERT_ERR(pf_parallel_for(ex, 0, 4, NULL, NULL, 0, NULL), PF_EINVAL);
    ASSERT_ERR(pf_parallel_for(NULL, 0, 4, fill_body, NULL, 0, NULL), PF_EINVAL);
    ASSERT_ERR(pf_parallel_for(ex, 0, 4, fill_body, NULL, 8, NULL), PF_EINVAL);
    pf_for_opts bad = {.schedule = (pf_schedule)9};
    ASSERT_ERR(pf_parallel_for(ex, 0, 4, fill_body, NULL, 0, &bad), PF_EINVAL);
    ASSERT_ERR(pf_parallel_reduce(ex, 0, 4, count_primes, NULL, 0, &acc, 0, add_u64, NULL),
               PF_EINVAL);
    ASSERT_ERR(pf_parallel_reduce(ex, 0, 4, count_primes, NULL, 0, NULL, 8, add_u64, NULL),
               PF_EINVAL);
    ASSERT_ERR(pf_parallel_reduce(ex, 0, 4, count_primes, NULL, 0, &acc, 8, NULL, NULL), PF_EINVAL);
    ASSERT_OK(pf_parallel_for(ex, 3, 3, fill_body, NULL, 0, NULL));
    pf_executor_destroy(ex);
}

/* --- chunk sizes and ranges at the edge of size_t ------------------------- */

struct span {
    size_t begin, end;
};

struct span_acc {
    uint64_t calls, count, offsets, bad; /* bad: calls outside [begin, end) or empty */
};

static int span_body(size_t b, size_t e, const void *ctx, void *acc)
{
    const struct span *sp = ctx;
    struct span_acc *a = acc;
    a->calls++;
    if (b < sp->begin || e > sp->end || b >= e) {
        a->bad++;
        return 0;
    }
    for (size_t i = b; i < e; i++) {
        a->count++;
        a->offsets += i - sp->begin;
    }
    return 0;
}
PF_REGISTER(span_body)

static void span_combine(void *acc, const void *other)
{
    struct span_acc *a = acc;
    const struct span_acc *o = other;
    a->calls += o->calls;
    a->count += o->count;
    a->offsets += o->offsets;
    a->bad += o->bad;
}

/* A chunk of any size, SIZE_MAX included, and a range ending at SIZE_MAX:
 * every call of the body stays inside [begin, end), and every index runs once
 * (count and sum of offsets).  `i + chunk` used to wrap: calls below begin
 * and reversed ranges. */
static void huge_chunks_and_ranges_near_size_max(pf_kind kind)
{
    pf_executor *ex = make(kind, 3);
    enum { N = 1000 };
    const struct span spans[] = {{100, 100 + N}, {SIZE_MAX - N, SIZE_MAX}};
    const size_t chunks[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX / 2 + 1, N, N - 1, 7};
    const pf_schedule schedules[] = {PF_SCHEDULE_AUTO, PF_SCHEDULE_STATIC, PF_SCHEDULE_DYNAMIC,
                                     PF_SCHEDULE_GUIDED};
    for (size_t sp = 0; sp < 2; sp++) {
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            for (size_t s = 0; s < 4; s++) {
                for (size_t grain = 0; grain < 2; grain++) { /* 0: the inline probe first */
                    struct span_acc acc = {0};
                    pf_for_opts o = {.schedule = schedules[s], .chunk = chunks[k], .grain = grain};
                    ASSERT_OK(pf_parallel_reduce(ex, spans[sp].begin, spans[sp].end, span_body,
                                                 &spans[sp], sizeof spans[sp], &acc, sizeof acc,
                                                 span_combine, &o));
                    ASSERT_EQ(acc.bad, 0);
                    ASSERT_EQ(acc.count, N);
                    ASSERT_EQ(acc.offsets, (uint64_t)N * (N - 1) / 2);
                    if (chunks[k] >= N && schedules[s] == PF_SCHEDULE_DYNAMIC && grain)
                        ASSERT_EQ(acc.calls, 1); /* a chunk bigger than the range: one call */
                }
            }
        }
    }
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(huge_chunks_and_ranges_near_size_max)

/* --- time limits ----------------------------------------------------------- */

/* The executor's task_timeout bounds each call of the body, not the loop;
 * the loop returns only after every call of the body has returned.  The
 * bodies sleep the int in ctx (copied to process workers) per iteration. */
static _Atomic int slow_active; /* threads: calls of the body running now */
static _Atomic long slow_calls; /* threads: calls started */

static int slow_body(size_t b, size_t e, void *ctx)
{
    slow_active++;
    slow_calls++;
    for (size_t i = b; i < e; i++)
        pf_test_sleep_ms(*(const int *)ctx);
    slow_active--;
    return 0;
}
PF_REGISTER(slow_body)

static int slow_count(size_t b, size_t e, const void *ctx, void *acc)
{
    slow_active++;
    slow_calls++;
    for (size_t i = b; i < e; i++) {
        pf_test_sleep_ms(*(const int *)ctx);
        ++*(uint64_t *)acc;
    }
    slow_active--;
    return 0;
}
PF_REGISTER(slow_count)

static pf_executor *make_limited(pf_kind kind, double task_timeout)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = 2, .task_timeout = task_timeout};
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    return ex;
}

/* Nothing of the loop may run once it has returned (before the fix, a
 * helper timed out by the watchdog ran on, on the caller's freed frame). */
static void assert_loop_is_over(void)
{
    ASSERT_EQ(slow_active, 0);
    long calls = slow_calls;
    pf_test_sleep_ms(100);
    ASSERT_EQ(slow_calls, calls);
    ASSERT_EQ(slow_active, 0);
}

/* A call that overruns the limit fails the loop with PF_ETASKTIMEOUT, on
 * threads (timed, the call runs to its end) as on processes (killed). */
static void loop_call_over_the_time_limit_fails_it(pf_kind kind)
{
    pf_executor *ex = make_limited(kind, 0.02);
    int ms = 60; /* every call overruns */
    pf_for_opts o = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = 1, .grain = 1};
    ASSERT_ERR(pf_parallel_for(ex, 0, 10, slow_body, &ms, sizeof ms, &o), PF_ETASKTIMEOUT);
    if (kind == PF_THREADS)
        assert_loop_is_over();
    uint64_t acc = 0;
    ASSERT_ERR(
        pf_parallel_reduce(ex, 0, 20, slow_count, &ms, sizeof ms, &acc, sizeof acc, add_u64, &o),
        PF_ETASKTIMEOUT);
    if (kind == PF_THREADS) {
        uint64_t at_return = acc;
        assert_loop_is_over();
        ASSERT_EQ(acc, at_return); /* no helper combined into it after the return */
        ASSERT_LE(acc, 20);
    }
    pf_executor_destroy(ex);
}
FOR_POOLS(loop_call_over_the_time_limit_fails_it)

/* Calls well within the limit: the loop succeeds with the full result, even
 * though each participant (a helper task among them) works for longer than
 * the limit in all. */
TEST(loop_longer_than_the_time_limit_succeeds_on_threads)
{
    double limit = 0.05 * pf_test_scale();
    pf_executor *ex = make_limited(PF_THREADS, limit);
    int ms = 1;
    const size_t n = (size_t)(160 * pf_test_scale()); /* about 1.6 limits per participant */
    pf_for_opts o = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = 1, .grain = 1};
    uint64_t acc = 0;
    ASSERT_OK(
        pf_parallel_reduce(ex, 0, n, slow_count, &ms, sizeof ms, &acc, sizeof acc, add_u64, &o));
    ASSERT_EQ(acc, n);
    assert_loop_is_over();
    ASSERT_EQ(acc, n);
    ASSERT_OK(pf_parallel_for(ex, 0, n, slow_body, &ms, sizeof ms, &o));
    assert_loop_is_over();
    pf_executor_destroy(ex);
}

/* --- registered names ------------------------------------------------------ */

/* A program's own tasks named like the library's internal ones. */
static int chunk_task(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return pf_task_set_result(t, "mine", 5);
}
PF_REGISTER(chunk_task)

static int map_chunk_task(pf_task *t, const void *arg, size_t len)
{
    return chunk_task(t, arg, len);
}
PF_REGISTER(map_chunk_task)

/* The loops' chunk tasks are registered under reserved names, so a program's
 * task called "chunk_task" or "map_chunk_task" registers and runs by name
 * (before, one of each pair of registrations failed). */
TEST(loop_chunk_tasks_have_reserved_names)
{
    const char *names[] = {"pf.for_chunk", "pf.map_chunk"};
    for (int k = 0; k < 2; k++) {
        pf_fn fn = NULL;
        const char *name = NULL;
        ASSERT_OK(pf_lookup(names[k], &fn));
        ASSERT_OK(pf_registered_name(fn, &name, NULL));
        ASSERT_STREQ(name, names[k]);
        /* reserved: a program cannot take one first, nor another "pf." name */
        ASSERT_ERR(pf_register(names[k], (pf_fn)chunk_task), PF_EINVAL);
    }
    ASSERT_ERR(pf_register("pf.mine", (pf_fn)chunk_task), PF_EINVAL);
    const pf_fn mine[] = {(pf_fn)chunk_task, (pf_fn)map_chunk_task};
    const char *mine_names[] = {"chunk_task", "map_chunk_task"};
    pf_executor *ex = make(PF_THREADS, 1);
    for (int k = 0; k < 2; k++) {
        pf_fn fn = NULL;
        ASSERT_OK(pf_lookup(mine_names[k], &fn));
        ASSERT(fn == mine[k]);
        pf_future *f;
        ASSERT_OK(pf_submit_named(ex, mine_names[k], NULL, 0, &f));
        const void *d;
        ASSERT_OK(pf_future_result(f, PF_FOREVER, &d, NULL));
        ASSERT_STREQ((const char *)d, "mine");
        pf_future_release(f);
    }
    pf_executor_destroy(ex);
}

/* --- sizes no object can have ---------------------------------------------- */

/* A ctx_len over the process pool's argument limit (ctx travels with every
 * chunk task) is PF_ETOOBIG before any byte of ctx is read, as with
 * pf_submit.  The chunk argument's size used to wrap for the largest values
 * (a small buffer, then a copy of SIZE_MAX bytes into it), and the others
 * were copied from ctx before the executor refused them. */
TEST(loop_ctx_len_over_the_argument_limit_is_refused_on_processes)
{
    pf_executor *ex = make(PF_PROCESSES, 2);
    _Atomic int seen[10] = {0};
    const size_t lens[] = {SIZE_MAX, SIZE_MAX - 40, (size_t)5 << 30};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        uint64_t acc = 0;
        ASSERT_ERR(pf_parallel_for(ex, 0, 10, fill_body, (void *)seen, lens[k], NULL), PF_ETOOBIG);
        ASSERT_ERR(pf_parallel_reduce(ex, 0, 10, count_primes, seen, lens[k], &acc, sizeof acc,
                                      add_u64, NULL),
                   PF_ETOOBIG);
        ASSERT_EQ(acc, 0);
    }
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(seen[i], 0);
    pf_executor_destroy(ex);
}

struct bad_len_input {
    size_t emitted; /* first: count_emit's counter */
    int64_t x;
    size_t bad_at, len;
};

/* Item bad_at claims `len` bytes at a valid 8-byte object. */
static int bad_len_next(void *user, size_t index, const void **arg, size_t *len)
{
    struct bad_len_input *in = user;
    if (index > in->bad_at)
        return PF_EEOF;
    *arg = &in->x;
    *len = index == in->bad_at ? in->len : sizeof in->x;
    return PF_OK;
}

static int count_emit(void *user, size_t index, int status, const void *data, size_t len,
                      const char *errmsg)
{
    (void)index;
    (void)status;
    (void)data;
    (void)len;
    (void)errmsg;
    ++*(size_t *)user;
    return 0;
}

/* An item length no object can have stops the map with PF_ENOMEM (as a
 * result of that size does).  The chunk buffer's growth used to loop forever
 * once its doubled capacity wrapped to 0, or wrap the needed size and copy
 * SIZE_MAX bytes into a small buffer. */
static void map_item_length_beyond_any_object_fails(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    const size_t lens[] = {SIZE_MAX, SIZE_MAX - 4, SIZE_MAX / 2 + 2, (size_t)PTRDIFF_MAX + 1};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        for (size_t bad_at = 0; bad_at < 2; bad_at++) { /* 1: after an item in its chunk */
            struct bad_len_input in = {.x = 3, .bad_at = bad_at, .len = lens[k]};
            pf_map_opts o = {.chunksize = 2};
            ASSERT_ERR(pf_map(ex, task_square, bad_len_next, count_emit, &in, &o), PF_ENOMEM);
            ASSERT_EQ(in.emitted, 0);
        }
    }
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(map_item_length_beyond_any_object_fails)

/* --- more time limits -------------------------------------------------------- */

/* A thread pool of one worker: the caller runs every call of the body, and
 * the time limit still bounds each call (a chunk), not the loop.  The whole
 * range used to run as one call, which overran the limit. */
TEST(loop_on_one_thread_is_timed_per_chunk)
{
    double limit = 0.05 * pf_test_scale();
    pf_executor *ex = NULL;
    pf_executor_opts eo = {.max_workers = 1, .task_timeout = limit};
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &eo));
    int ms = 1;
    const size_t n = (size_t)(100 * pf_test_scale()); /* about 2 limits in all */
    for (size_t grain = 0; grain < 2; grain++) {      /* 0: the inline probe first */
        pf_for_opts o = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = 1, .grain = grain};
        uint64_t acc = 0;
        ASSERT_OK(pf_parallel_reduce(ex, 0, n, slow_count, &ms, sizeof ms, &acc, sizeof acc,
                                     add_u64, &o));
        ASSERT_EQ(acc, n);
        ASSERT_OK(pf_parallel_for(ex, 0, n, slow_body, &ms, sizeof ms, &o));
    }
    /* every schedule and chunk size, at the edge of size_t: each index once */
    const struct span sp = {SIZE_MAX - 1000, SIZE_MAX};
    const size_t chunks[] = {0, 7, SIZE_MAX};
    for (int s = PF_SCHEDULE_AUTO; s <= PF_SCHEDULE_GUIDED; s++) {
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            struct span_acc acc = {0};
            pf_for_opts o = {.schedule = (pf_schedule)s, .chunk = chunks[k], .grain = 1};
            ASSERT_OK(pf_parallel_reduce(ex, sp.begin, sp.end, span_body, &sp, sizeof sp, &acc,
                                         sizeof acc, span_combine, &o));
            ASSERT_EQ(acc.bad, 0);
            ASSERT_EQ(acc.count, 1000);
            ASSERT_EQ(acc.offsets, (uint64_t)1000 * 999 / 2);
        }
    }
    /* and a call over the limit still fails the loop */
    ms = (int)(limit * 1000 * 2);
    pf_for_opts o = {.chunk = 1, .grain = 1};
    ASSERT_ERR(pf_parallel_for(ex, 0, 3, slow_body, &ms, sizeof ms, &o), PF_ETASKTIMEOUT);
    pf_executor_destroy(ex);
}

/* --- shut-down executors ----------------------------------------------------- */

/* pf_parallel_for and pf_parallel_reduce on ex both fail with `code` and run
 * no call of the body, with the automatic grain and with one that would run
 * the loop inline. */
static void loops_are_refused(pf_executor *ex, int code)
{
    _Atomic int seen[100] = {0};
    for (size_t grain = 0; grain < 2; grain++) {
        pf_for_opts o = {.grain = grain ? 1000 : 0}; /* 1000: a loop that runs inline */
        ASSERT_ERR(pf_parallel_for(ex, 0, 100, fill_body, (void *)seen, 0, &o), code);
        uint64_t acc = 0;
        ASSERT_ERR(
            pf_parallel_reduce(ex, 0, 100, count_primes, NULL, 0, &acc, sizeof acc, add_u64, &o),
            code);
        ASSERT_EQ(acc, 0);
    }
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(seen[i], 0);
}

/* A loop on an executor that was shut down is refused with PF_ESHUTDOWN on
 * every kind, as pf_map and pf_submit are, and runs no body.  Threads and
 * the sequential executor used to run the whole loop in the caller (and
 * return 0) while a process pool refused it. */
static void loop_on_a_shut_down_executor_is_refused(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    loops_are_refused(ex, PF_ESHUTDOWN);
    /* like pf_map */
    int64_t in[3] = {1, 2, 3};
    size_t emitted = 0;
    ASSERT_ERR(pf_map_array(ex, task_square, in, 3, 8, count_emit, &emitted, NULL), PF_ESHUTDOWN);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(loop_on_a_shut_down_executor_is_refused)

/* Once a worker initializer has failed, a loop is refused with
 * PF_EINITFAILED on every kind, as every task is, and runs no body.  Threads
 * and the sequential executor used to run the whole loop in the caller (and
 * return 0) while a process pool failed it. */
static void loop_on_a_broken_executor_is_refused(pf_kind kind)
{
    pf_executor *ex = NULL;
    pf_executor_opts eo = {.max_workers = 2, .initializer = init_fails};
    ASSERT_OK(pf_executor_create(&ex, kind, &eo));
    /* the executor is known broken once a task has failed for it */
    pf_future *f = NULL;
    int rc = pf_submit(ex, task_noop, NULL, 0, &f);
    if (rc == PF_OK) {
        rc = pf_future_result(f, PF_FOREVER, NULL, NULL);
        pf_future_release(f);
    }
    ASSERT_ERR(rc, PF_EINITFAILED);
    loops_are_refused(ex, PF_EINITFAILED);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(loop_on_a_broken_executor_is_refused)

/* --- a body's error stops the loop, not the calls running -------------------- */

struct marker_ctx {
    int caller_pid;
    int slow_ms; /* the other calls' time */
};

static void marker_path(char *buf, size_t size, const struct marker_ctx *m, size_t b)
{
    snprintf(buf, size, "/tmp/pfor-test-loop-%d-%zu", m->caller_pid, b);
}

/* Call [0, 1) fails once the others have started; the others finish late and
 * leave a file behind (seen by the caller whatever the kind). */
static int fail_while_others_run(size_t b, size_t e, void *ctx)
{
    (void)e;
    const struct marker_ctx *m = ctx;
    if (b == 0) {
        pf_test_sleep_ms(m->slow_ms / 3);
        return 7;
    }
    pf_test_sleep_ms(m->slow_ms);
    char path[64];
    marker_path(path, sizeof path, m, b);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    return 0;
}
PF_REGISTER(fail_while_others_run)

/* A body's error stops the loop: no new chunk starts, and it returns once
 * every call of the body has returned, with the body's code.  The calls
 * running meanwhile run to their end on every kind: a process pool used to
 * cancel them with the chunks not started yet, which kills a running chunk's
 * worker in the middle of the body. */
static void loop_error_lets_running_calls_finish(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    struct marker_ctx m = {.caller_pid = (int)getpid(), .slow_ms = (int)(300 * pf_test_scale())};
    char path[64];
    marker_path(path, sizeof path, &m, 1);
    unlink(path);
    pf_for_opts o = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = 1, .grain = 1};
    ASSERT_EQ(pf_parallel_for(ex, 0, 2, fail_while_others_run, &m, sizeof m, &o), 7);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL); /* call [1, 2) returned before the loop did */
    fclose(f);
    unlink(path);
    pf_executor_destroy(ex);
}
FOR_POOLS(loop_error_lets_running_calls_finish)
