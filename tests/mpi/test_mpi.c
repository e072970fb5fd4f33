/*
 * The PF_MPI executor under mpirun (tests/mpi/run.sh starts it):
 *
 *   pfor-mpi-tests semantics   every future operation, loops, combining,
 *                              failing and unregistered tasks, large results,
 *                              uneven durations (3 ranks or more)
 *   pfor-mpi-tests kill        a worker rank SIGKILLed mid-run
 *   pfor-mpi-tests kill-last   the same, the victim being the last rank
 *   pfor-mpi-tests kill-idle   a worker rank SIGKILLed between executors:
 *                              pf_mpi_finalize still ends (the rank is taken
 *                              for dead, nobody calls MPI_Finalize)
 *   pfor-mpi-tests kill-sending
 *                              a worker rank SIGKILLed while its large result
 *                              is on the way to rank 0
 *   pfor-mpi-tests redis HOST PORT
 *                              tasks on every worker rank share a live redis
 *                              dict with rank 0 (run.sh starts the server)
 *
 * Rank 0 checks; worker ranks never get past pf_mpi_init().  Each check
 * prints a line; the exit status is the number of failed checks (capped).
 * With $PFOR_MPI_TEST_PIDS set, every rank appends its pid to that file
 * first (run.sh checks that none outlives the run).
 */
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h" /* pf__submit_owned: a 2 GiB argument without copying it */
#include "pfor/dict.h"
#include "pfor/mpi.h"
#include "pfor/pfor.h"

static int failures;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                     \
        }                                                                   \
    } while (0)
#define CHECK_RC(expr, want)                                                             \
    do {                                                                                 \
        int rc_ = (expr);                                                                \
        if (rc_ != (want)) {                                                             \
            fprintf(stderr, "FAIL %s:%d: %s = %s, want %s\n", __FILE__, __LINE__, #expr, \
                    pf_err_name(rc_), pf_err_name(want));                                \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The dead_after the ranks run with (run.sh sets $PFOR_MPI_DEAD_AFTER), ms. */
static int dead_after_ms(void)
{
    const char *v = getenv("PFOR_MPI_DEAD_AFTER");
    double d = v ? atof(v) : 0;
    return (int)((d > 0 ? d : 3.0) * 1000);
}

/* ------------------------------------------------------------ tasks -- */

static int square(pf_task *t, const void *arg, size_t len)
{
    int64_t x;
    if (len != sizeof x)
        return pf_task_fail(t, PF_EINVAL, "bad argument");
    memcpy(&x, arg, sizeof x);
    x *= x;
    return pf_task_set_result(t, &x, sizeof x);
}
PF_REGISTER(square)

/* Sleeps arg ms, returns the rank that ran it. */
static int nap(pf_task *t, const void *arg, size_t len)
{
    int32_t ms = 0;
    if (len == sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    sleep_ms(ms);
    int32_t rank = pf_mpi_rank();
    return pf_task_set_result(t, &rank, sizeof rank);
}
PF_REGISTER(nap)

/* Rank 1 is slow (20 ms a task), the others fast (1 ms). */
static int uneven(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int32_t rank = pf_mpi_rank();
    sleep_ms(rank == 1 ? 20 : 1);
    return pf_task_set_result(t, &rank, sizeof rank);
}
PF_REGISTER(uneven)

static int fails(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return pf_task_fail(t, 42, "boom on rank %d", pf_mpi_rank());
}
PF_REGISTER(fails)

static int big(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    size_t n = 8u << 20;
    unsigned char *p = pf_task_result_buffer(t, n);
    if (!p)
        return pf_task_fail(t, PF_ENOMEM, "no buffer");
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7);
    return 0;
}
PF_REGISTER(big)

static int not_registered(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    return 0;
}

static int word_pair(pf_task *t, const void *arg, size_t len)
{
    int32_t i;
    memcpy(&i, arg, len < sizeof i ? len : sizeof i);
    char key[32];
    int klen = snprintf(key, sizeof key, "k%d", i % 10);
    char val[32];
    int vlen = snprintf(val, sizeof val, "%d", 1);
    return pf_task_return_pair(t, key, (size_t)klen, val, (size_t)vlen);
}
PF_REGISTER(word_pair)

static int sum_range(size_t b, size_t e, const void *ctx, void *acc)
{
    int64_t k;
    memcpy(&k, ctx, sizeof k);
    int64_t s = 0;
    for (size_t i = b; i < e; i++)
        s += (int64_t)i * k;
    *(int64_t *)acc += s;
    return 0;
}
PF_REGISTER(sum_range)

static void add_i64(void *acc, const void *other)
{
    *(int64_t *)acc += *(const int64_t *)other;
}

static int kill_my_rank(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    sleep_ms(50);
    raise(SIGKILL);
    return 0;
}
PF_REGISTER(kill_my_rank)

/* Kills its rank if that is rank `arg` (after 50 ms); else returns its rank. */
static int kill_rank(pf_task *t, const void *arg, size_t len)
{
    int32_t victim = -1;
    if (len == sizeof victim)
        memcpy(&victim, arg, sizeof victim);
    sleep_ms(50);
    int32_t rank = pf_mpi_rank();
    if (rank == victim)
        raise(SIGKILL);
    return pf_task_set_result(t, &rank, sizeof rank);
}
PF_REGISTER(kill_rank)

/* Returns {its rank, its pid}. */
static int rank_and_pid(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    sleep_ms(20);
    int32_t v[2] = {pf_mpi_rank(), (int32_t)getpid()};
    return pf_task_set_result(t, v, sizeof v);
}
PF_REGISTER(rank_and_pid)

/* A task sharing a redis dict with rank 0 and the other ranks: it waits
 * (bounded) until rank 0 has set "go", which rank 0 does only once every
 * task was submitted, then counts itself in "hits" and in "rank:<its rank>"
 * with atomic increments, and leaves its mark in "task:<index>". */
struct redis_job {
    pf_dict_ref ref;
    int32_t index;
};

static int redis_count(pf_task *t, const void *arg, size_t len)
{
    struct redis_job job;
    if (len != sizeof job)
        return pf_task_fail(t, PF_EINVAL, "want a struct redis_job, got %zu bytes", len);
    memcpy(&job, arg, sizeof job);
    pf_dict *d;
    int rc = pf_dict_from_ref(&d, &job.ref);
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "pf_dict_from_ref: %s", pf_strerror(rc));
    for (int i = 0; i < 10000 && (rc = pf_dict_contains(d, PF_DICT_STR("go"))) == PF_ENOTFOUND; i++)
        sleep_ms(1);
    int32_t rank = pf_mpi_rank();
    char key[32];
    snprintf(key, sizeof key, "rank:%d", (int)rank);
    if (rc == PF_OK)
        rc = pf_dict_incr(d, PF_DICT_STR("hits"), 1, NULL);
    if (rc == PF_OK)
        rc = pf_dict_incr(d, key, strlen(key), 1, NULL);
    snprintf(key, sizeof key, "task:%d", (int)job.index);
    if (rc == PF_OK)
        rc = pf_dict_set(d, key, strlen(key), &rank, sizeof rank);
    pf_dict_close(d);
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "redis dict: %s", pf_strerror(rc));
    return pf_task_set_result(t, &rank, sizeof rank);
}
PF_REGISTER(redis_count)

/* Per-worker state: an initializer that sets it, a task that reads it. */
static int init_state(void **state, const void *arg, size_t len, int index)
{
    (void)index;
    int32_t *v = malloc(sizeof *v);
    if (!v || len != sizeof *v)
        return 1;
    memcpy(v, arg, sizeof *v);
    *state = v;
    return 0;
}
PF_REGISTER(init_state)

static void fini_state(void *state, int index)
{
    (void)index;
    free(state);
}
PF_REGISTER(fini_state)

static int read_state(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int32_t *v = pf_task_worker_state(t);
    if (!v)
        return pf_task_fail(t, PF_EINVAL, "no worker state");
    return pf_task_set_result(t, v, sizeof *v);
}
PF_REGISTER(read_state)

/* A 2 GiB result, never touched (so it takes no memory): over the limit of
 * one MPI message. */
static int huge_result(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return pf_task_result_buffer(t, (size_t)1 << 31) ? 0 : pf_task_fail(t, PF_ENOMEM, "no");
}
PF_REGISTER(huge_result)

/* No argument in, no result out. */
static int empty_result(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    return len == 0 ? 0 : pf_task_fail(t, PF_EINVAL, "got %zu bytes", len);
}
PF_REGISTER(empty_result)

/* Returns a 16 MiB result after arg ms, and kills its rank 200 ms after
 * returning it (from a thread of its own): the rank dies while its result
 * is still on the way to rank 0. */
static void *kill_later(void *arg)
{
    (void)arg;
    sleep_ms(200);
    raise(SIGKILL);
    return NULL;
}

static int big_then_die(pf_task *t, const void *arg, size_t len)
{
    int32_t ms = 0;
    if (len == sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    sleep_ms(ms);
    size_t n = 16u << 20;
    unsigned char *p = pf_task_result_buffer(t, n);
    if (!p)
        return pf_task_fail(t, PF_ENOMEM, "no buffer");
    memset(p, 7, n);
    pthread_t th;
    if (pthread_create(&th, NULL, kill_later, NULL) != 0)
        raise(SIGKILL);
    return 0;
}
PF_REGISTER(big_then_die)

/* ------------------------------------------------------------ helpers -- */

static pf_future *submit_i32(pf_executor *ex, pf_task_fn fn, int32_t v)
{
    pf_future *f = NULL;
    CHECK_RC(pf_submit(ex, fn, &v, sizeof v, &f), PF_OK);
    return f;
}

static int32_t result_i32(pf_future *f)
{
    const void *data;
    size_t len;
    int rc = pf_future_result(f, PF_FOREVER, &data, &len);
    if (rc != PF_OK || len != sizeof(int32_t)) {
        pf_error_info info;
        pf_future_error(f, &info);
        fprintf(stderr, "  result: %s (%s)\n", pf_err_name(rc), info.message);
        failures++;
        return -1;
    }
    int32_t v;
    memcpy(&v, data, sizeof v);
    return v;
}

static _Atomic int callbacks_run;

static void count_callback(pf_future *f, void *user)
{
    (void)f;
    (void)user;
    callbacks_run++;
}

struct seen {
    size_t n;
    int bad;
};

static int check_square(void *user, size_t index, int status, const void *data, size_t len,
                        const char *msg)
{
    (void)msg;
    struct seen *s = user;
    int64_t v;
    if (status || len != sizeof v)
        s->bad++;
    else if (memcpy(&v, data, sizeof v), v != (int64_t)(index * index))
        s->bad++;
    s->n++;
    return 0;
}

/* ------------------------------------------------------------ checks -- */

/* pf_executor_destroy from a done-callback (which runs on rank 0's engine
 * thread, where destroy cannot wait): the engine keeps the executor until
 * its last tasks are done and its ranks have let it go, and the tasks still
 * queued run.  Before, destroy freed it while the engine still walked it
 * (a use-after-free that ASan reports). */
static pthread_t main_thread;
static _Atomic int destroyed_in_callback; /* 1: on the main thread, 2: on another */

static void destroy_executor(pf_future *f, void *user)
{
    (void)f;
    pf_executor_destroy(user);
    destroyed_in_callback = pthread_equal(pthread_self(), main_thread) ? 1 : 2;
}

static void destroy_from_callback(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_future *first = submit_i32(ex, nap, 300);
    enum { REST = 8 };
    pf_future *rest[REST];
    for (int i = 0; i < REST; i++) /* more than the ranks take at once: some wait */
        rest[i] = submit_i32(ex, nap, 100);
    CHECK_RC(pf_future_add_done_callback(first, destroy_executor, ex), PF_OK);
    /* ex belongs to the callback from here on */
    CHECK(result_i32(first) >= 1);
    for (int i = 0; i < REST; i++) {
        CHECK(result_i32(rest[i]) >= 1);
        pf_future_release(rest[i]);
    }
    pf_future_release(first);
    for (int i = 0; i < 500 && !destroyed_in_callback; i++)
        sleep_ms(10);
    CHECK(destroyed_in_callback == 2);
    /* the engine goes on: a new executor runs tasks */
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_future *again = submit_i32(ex, nap, 1);
    CHECK(result_i32(again) >= 1);
    pf_future_release(again);
    pf_executor_destroy(ex);
    CHECK(pf_mpi_live_workers() == size - 1);
    printf("ok executor destroyed from its own done-callback\n");
}

/* A done-callback that keeps rank 0's engine busy for longer than dead_after
 * while every rank has work: the ranks' heartbeats wait in MPI meanwhile,
 * so no rank may be taken for dead (before, every busy rank was). */
static void sleepy_callback(pf_future *f, void *user)
{
    (void)f;
    sleep_ms(*(const int *)user);
}

static void long_callback(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    static int cb_ms;
    cb_ms = dead_after_ms() + 800;
    enum { N = 8 };
    pf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit_i32(ex, nap, 300);
    CHECK_RC(pf_future_add_done_callback(fs[0], sleepy_callback, &cb_ms), PF_OK);
    for (int i = 0; i < N; i++) {
        CHECK(result_i32(fs[i]) >= 1); /* not PF_ERANKDIED */
        pf_future_release(fs[i]);
    }
    CHECK(pf_mpi_live_workers() == size - 1);
    pf_executor_destroy(ex);
    printf("ok a %d ms done-callback on the engine thread kills no rank\n", cb_ms);
}

/* A task past its time limit runs on on its rank; destroying the executor
 * waits for it there, and the rank keeps sending heartbeats meanwhile, so
 * it is not taken for dead (before, it fell silent and was). */
static void timeout_then_destroy(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_submit_opts so = {.timeout = 0.2};
    int32_t ms = dead_after_ms() + 1000;
    pf_future *late = NULL;
    CHECK_RC(pf_submit_ex(ex, nap, &ms, sizeof ms, &so, &late), PF_OK);
    CHECK_RC(pf_future_result(late, 5, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(late);
    pf_executor_destroy(ex); /* returns once the rank's task has ended */
    CHECK(pf_mpi_live_workers() == size - 1);
    /* and the rank still runs tasks */
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_future *fs[6];
    int per_rank[64] = {0};
    for (int i = 0; i < 6; i++)
        fs[i] = submit_i32(ex, nap, 50);
    for (int i = 0; i < 6; i++) {
        int32_t r = result_i32(fs[i]);
        if (r > 0 && r < 64)
            per_rank[r]++;
        pf_future_release(fs[i]);
    }
    for (int r = 1; r < size && r < 64; r++)
        CHECK(per_rank[r] > 0);
    pf_executor_destroy(ex);
    printf("ok destroy after a task overran its time limit: %d ms on its rank, no rank lost\n",
           (int)ms);
}

/* An argument of 2 GiB does not fit one MPI message: pf_submit says
 * PF_ETOOBIG at once (before, it was accepted and its future never ended).
 * The buffer is malloc()ed but never touched, so it takes no memory, and it
 * is handed over (pf__submit_owned), not copied. */
static void too_big_argument(void)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    size_t huge = (size_t)1 << 31;
    void *arg = malloc(huge);
    CHECK(arg != NULL);
    if (arg) {
        pf_future *f = NULL;
        CHECK_RC(pf__submit_owned(ex, square, arg, huge, -1, &f), PF_ETOOBIG); /* frees arg */
        CHECK(f == NULL);
        if (f) { /* the bug: it would never end, and nor would destroy */
            fprintf(stderr, "FAIL: a 2 GiB argument was accepted; giving up\n");
            fflush(NULL);
            _exit(3);
        }
    }
    /* the executor is unharmed */
    int64_t v = 12;
    pf_future *g = NULL;
    CHECK_RC(pf_submit(ex, square, &v, sizeof v, &g), PF_OK);
    CHECK_RC(pf_future_result(g, PF_FOREVER, NULL, NULL), PF_OK);
    pf_future_release(g);
    pf_executor_destroy(ex);
    printf("ok a 2 GiB argument is refused with PF_ETOOBIG\n");
}

/* Sizes at the limits: nothing in and out, and a result too big for one
 * MPI message (its future fails with PF_ETOOBIG, the rank goes on). */
static void size_limits(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_future *f = NULL;
    const void *data = &f;
    size_t len = 1;
    CHECK_RC(pf_submit(ex, empty_result, NULL, 0, &f), PF_OK);
    CHECK_RC(pf_future_result(f, 30, &data, &len), PF_OK);
    CHECK(len == 0);
    pf_future_release(f);
    CHECK_RC(pf_submit(ex, huge_result, NULL, 0, &f), PF_OK);
    CHECK_RC(pf_future_result(f, 30, NULL, NULL), PF_ETOOBIG);
    pf_error_info info = {0};
    CHECK_RC(pf_future_error(f, &info), PF_OK);
    CHECK(strstr(info.message, "too big") != NULL);
    pf_future_release(f);
    f = submit_i32(ex, nap, 1);
    CHECK(result_i32(f) >= 1);
    pf_future_release(f);
    pf_executor_destroy(ex);
    CHECK(pf_mpi_live_workers() == size - 1);
    printf("ok empty argument and result; a 2 GiB result fails with PF_ETOOBIG\n");
}

/* pf_future_cancel on a queued future while pf_executor_shutdown with
 * cancel_futures is failing the queue (held in a done-callback of the first
 * one): the future ends cancelled once, and every other queued one too.
 * Before, the shutdown's batch was a queue whose futures still said "in a
 * queue": the cancel unlinked one from the executor's own queue, which then
 * pointed into the batch (the futures after it were sent and ran), and both
 * paths released the queue's reference (a use-after-free). */
static _Atomic int hold_state; /* 1: the callback holds the shutdown, 2: let go */
static _Atomic int shutdown_rc;

static void hold_shutdown(pf_future *f, void *user)
{
    (void)f;
    (void)user;
    hold_state = 1;
    for (int i = 0; i < 500 && hold_state != 2; i++)
        sleep_ms(10);
}

static void *shutdown_cancelling(void *ex)
{
    shutdown_rc = pf_executor_shutdown(ex, false, true);
    return NULL;
}

static void cancel_during_shutdown(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    int cap = (size - 1) * 3; /* 1 thread + 2 prefetched per rank */
    pf_future *busy[64];
    for (int i = 0; i < cap; i++)
        busy[i] = submit_i32(ex, nap, 400);
    sleep_ms(100); /* the engine has sent them all: the next ones wait */
    enum { Q = 4 };
    pf_future *q[Q];
    for (int i = 0; i < Q; i++)
        q[i] = submit_i32(ex, nap, 1);
    CHECK_RC(pf_future_add_done_callback(q[0], hold_shutdown, NULL), PF_OK);
    hold_state = 0;
    shutdown_rc = 1;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, shutdown_cancelling, ex) == 0);
    for (int i = 0; i < 500 && hold_state != 1; i++)
        sleep_ms(10);
    CHECK(hold_state == 1);
    CHECK_RC(pf_future_cancel(q[1]), PF_OK);
    hold_state = 2;
    pthread_join(t, NULL);
    CHECK_RC(shutdown_rc, PF_OK);
    for (int i = 0; i < Q; i++) {
        CHECK_RC(pf_future_result(q[i], 10, NULL, NULL), PF_ECANCELLED);
        pf_future_release(q[i]);
    }
    for (int i = 0; i < cap; i++) {
        CHECK(result_i32(busy[i]) >= 1);
        pf_future_release(busy[i]);
    }
    pf_executor_destroy(ex);
    CHECK(pf_mpi_live_workers() == size - 1);
    printf(
        "ok pf_future_cancel during shutdown(cancel_futures): each queued future cancelled once\n");
}

/* pf_mpi_finalize from a done-callback (rank 0's engine thread) cannot wait
 * for the engine: it does nothing (before, pthread_join on itself failed and
 * the program aborted), and the engine goes on. */
static _Atomic int finalize_in_callback;

static void finalize_from_callback(pf_future *f, void *user)
{
    (void)f;
    (void)user;
    pf_mpi_finalize();
    finalize_in_callback = 1;
}

static void finalize_in_done_callback(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_future *f = submit_i32(ex, nap, 1);
    CHECK_RC(pf_future_add_done_callback(f, finalize_from_callback, NULL), PF_OK);
    CHECK(result_i32(f) >= 1);
    pf_future_release(f);
    for (int i = 0; i < 500 && !finalize_in_callback; i++)
        sleep_ms(10);
    CHECK(finalize_in_callback == 1);
    f = submit_i32(ex, nap, 1); /* the engine still runs tasks */
    CHECK(result_i32(f) >= 1);
    pf_future_release(f);
    pf_executor_destroy(ex);
    CHECK(pf_mpi_live_workers() == size - 1);
    printf("ok pf_mpi_finalize from a done-callback does nothing\n");
}

/* A worker rank SIGKILLed while it has no work (between executors): only
 * pf_mpi_finalize can notice, and it must still end, taking the rank for
 * dead and skipping MPI_Finalize everywhere (before, rank 0 waited in
 * MPI_Finalize forever).  The check is that mpirun ends, with status 0. */
static void killed_idle_rank(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    enum { N = 20 };
    pf_future *fs[N];
    for (int i = 0; i < N; i++)
        CHECK_RC(pf_submit(ex, rank_and_pid, NULL, 0, &fs[i]), PF_OK);
    int32_t victim = size - 1, pid = -1;
    for (int i = 0; i < N; i++) {
        const void *data;
        size_t len;
        int32_t v[2] = {0, 0};
        CHECK_RC(pf_future_result(fs[i], PF_FOREVER, &data, &len), PF_OK);
        if (len == sizeof v)
            memcpy(v, data, sizeof v);
        if (v[0] == victim)
            pid = v[1];
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
    CHECK(pid > 0);
    if (pid > 0)
        CHECK(kill(pid, SIGKILL) == 0);
    sleep_ms(500);
    CHECK(pf_mpi_live_workers() == size - 1); /* idle: nobody noticed yet */
    printf("ok killed rank %d (pid %d) while idle\n", (int)victim, (int)pid);
}

static void semantics(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    CHECK(pf_executor_kind(ex) == PF_MPI);
    CHECK(pf_executor_max_workers(ex) == size - 1);

    /* submit / result */
    pf_future *fs[50];
    for (int64_t i = 0; i < 50; i++)
        CHECK_RC(pf_submit(ex, square, &i, sizeof i, &fs[i]), PF_OK);
    for (int64_t i = 0; i < 50; i++) {
        const void *d;
        size_t len;
        CHECK_RC(pf_future_result(fs[i], PF_FOREVER, &d, &len), PF_OK);
        int64_t v = -1;
        if (len == sizeof v)
            memcpy(&v, d, sizeof v);
        CHECK(v == i * i);
        CHECK(pf_future_done(fs[i]));
        pf_future_release(fs[i]);
    }
    printf("ok submit/result over %d worker ranks\n", size - 1);

    /* result with a timeout, done */
    pf_future *slow = submit_i32(ex, nap, 300);
    CHECK_RC(pf_future_result(slow, 0.01, NULL, NULL), PF_ETIMEDOUT);
    CHECK(!pf_future_done(slow));
    CHECK(result_i32(slow) >= 1);
    CHECK(pf_future_done(slow));
    pf_future_release(slow);
    printf("ok result timeout and done\n");

    /* cancel: fill every rank's slots with long naps, then one more waits */
    int cap = (size - 1) * 3; /* 1 thread + 2 prefetched per rank */
    pf_future *busy[64];
    for (int i = 0; i < cap; i++)
        busy[i] = submit_i32(ex, nap, 400);
    sleep_ms(100); /* the engine has sent them all */
    pf_future *waiting = submit_i32(ex, nap, 1);
    CHECK_RC(pf_future_cancel(waiting), PF_OK);
    CHECK(pf_future_cancelled(waiting));
    CHECK_RC(pf_future_result(waiting, 0, NULL, NULL), PF_ECANCELLED);
    CHECK_RC(pf_future_cancel(busy[0]), PF_EBUSY); /* on a rank: cannot be stopped */
    for (int i = 0; i < cap; i++) {
        CHECK(result_i32(busy[i]) >= 1);
        pf_future_release(busy[i]);
    }
    pf_future_release(waiting);
    printf("ok cancel (pending cancelled, sent refused)\n");

    /* done-callbacks */
    callbacks_run = 0;
    for (int i = 0; i < 10; i++) {
        fs[i] = submit_i32(ex, nap, 1);
        CHECK_RC(pf_future_add_done_callback(fs[i], count_callback, NULL), PF_OK);
    }
    for (int i = 0; i < 10; i++) {
        pf_future_wait(fs[i], PF_FOREVER);
        pf_future_release(fs[i]);
    }
    for (int i = 0; i < 100 && callbacks_run < 10; i++)
        sleep_ms(10);
    CHECK(callbacks_run == 10);
    printf("ok done-callbacks\n");

    /* as_completed: a short task submitted last comes out first */
    pf_future *longer = submit_i32(ex, nap, 500);
    pf_future *shorter = submit_i32(ex, nap, 10);
    pf_future *two[2] = {longer, shorter};
    pf_as_completed *ac;
    CHECK_RC(pf_as_completed_create(&ac, two, 2), PF_OK);
    pf_future *first = NULL, *second = NULL;
    CHECK_RC(pf_as_completed_next(ac, 10, &first), PF_OK);
    CHECK_RC(pf_as_completed_next(ac, 10, &second), PF_OK);
    CHECK(first == shorter && second == longer);
    pf_as_completed_destroy(ac);

    /* wait: FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED */
    size_t n_done = 0;
    pf_future *a = submit_i32(ex, nap, 400), *b = submit_i32(ex, nap, 5);
    pf_future *ab[2] = {a, b};
    CHECK_RC(pf_wait(ab, 2, PF_FIRST_COMPLETED, 10, &n_done), PF_OK);
    CHECK(pf_future_done(b) && n_done >= 1);
    pf_future *c = NULL;
    CHECK_RC(pf_submit(ex, fails, NULL, 0, &c), PF_OK);
    pf_future *ac2[2] = {a, c};
    CHECK_RC(pf_wait(ac2, 2, PF_FIRST_EXCEPTION, 10, &n_done), PF_OK);
    CHECK(pf_future_done(c));
    CHECK_RC(pf_wait(ab, 2, PF_ALL_COMPLETED, 10, &n_done), PF_OK);
    CHECK(n_done == 2);
    pf_future_release(a);
    pf_future_release(b);
    pf_future_release(longer);
    pf_future_release(shorter);
    printf("ok as_completed and wait\n");

    /* a failing task: its code and message come back */
    pf_error_info info;
    CHECK_RC(pf_future_result(c, PF_FOREVER, NULL, NULL), PF_ETASK);
    CHECK_RC(pf_future_error(c, &info), PF_OK);
    CHECK(info.task_code == 42);
    CHECK(strstr(info.message, "boom on rank") != NULL);
    pf_future_release(c);
    printf("ok failing task: %s\n", info.message);

    /* an unregistered function cannot cross */
    pf_future *u = NULL;
    CHECK_RC(pf_submit(ex, not_registered, NULL, 0, &u), PF_ENOTREG);
    CHECK(u == NULL);
    printf("ok unregistered function refused\n");

    /* an 8 MiB result */
    pf_future *g = NULL;
    CHECK_RC(pf_submit(ex, big, NULL, 0, &g), PF_OK);
    const void *data;
    size_t len = 0;
    CHECK_RC(pf_future_result(g, PF_FOREVER, &data, &len), PF_OK);
    CHECK(len == 8u << 20);
    int wrong = 0;
    for (size_t i = 0; i < len; i++)
        wrong += ((const unsigned char *)data)[i] != (unsigned char)(i * 7);
    CHECK(wrong == 0);
    pf_future_release(g);
    printf("ok 8 MiB result\n");

    /* per-task time limit: fails at once, the rank answers later */
    pf_submit_opts so = {.timeout = 0.1};
    int32_t ms = 600;
    pf_future *late = NULL;
    CHECK_RC(pf_submit_ex(ex, nap, &ms, sizeof ms, &so, &late), PF_OK);
    CHECK_RC(pf_future_result(late, 5, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(late);
    printf("ok task time limit\n");

    /* map, in order and unordered */
    int64_t items[1000];
    for (int i = 0; i < 1000; i++)
        items[i] = i;
    struct seen s = {0, 0};
    CHECK_RC(pf_map_array(ex, square, items, 1000, sizeof *items, check_square, &s, NULL), PF_OK);
    CHECK(s.n == 1000 && s.bad == 0);
    struct seen s2 = {0, 0};
    pf_map_opts mo = {.chunksize = 7, .unordered = true};
    CHECK_RC(pf_map_array(ex, square, items, 1000, sizeof *items, check_square, &s2, &mo), PF_OK);
    CHECK(s2.n == 1000 && s2.bad == 0);
    printf("ok map (ordered, unordered)\n");

    /* parallel_reduce */
    int64_t k = 3, total = 0;
    pf_for_opts fo = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = 1000};
    CHECK_RC(pf_parallel_reduce(ex, 0, 100000, sum_range, &k, sizeof k, &total, sizeof total,
                                add_i64, &fo),
             PF_OK);
    CHECK(total == 3 * (int64_t)99999 * 100000 / 2);
    printf("ok parallel_reduce\n");

    /* combining at the end */
    pf_dict *d;
    CHECK_RC(pf_dict_open_local(&d, NULL), PF_OK);
    int32_t nums[200];
    for (int i = 0; i < 200; i++)
        nums[i] = i;
    CHECK_RC(pf_dict_combine(d, ex, word_pair, nums, 200, sizeof *nums, PF_COMBINE_SUM, NULL),
             PF_OK);
    size_t n_keys = 0;
    CHECK_RC(pf_dict_len(d, &n_keys), PF_OK);
    CHECK(n_keys == 10);
    int64_t hits = 0;
    CHECK_RC(pf_dict_get_i64(d, "k3", 2, &hits), PF_OK);
    CHECK(hits == 20);
    pf_dict_close(d);
    printf("ok combining at the end (pf_dict_combine, SUM)\n");

    /* uneven durations: dynamic dispatch gives the fast ranks more */
    if (size >= 3) {
        int per_rank[64] = {0};
        pf_future *u2[60];
        for (int i = 0; i < 60; i++)
            u2[i] = submit_i32(ex, uneven, 0);
        for (int i = 0; i < 60; i++) {
            int32_t r = result_i32(u2[i]);
            if (r > 0 && r < 64)
                per_rank[r]++;
            pf_future_release(u2[i]);
        }
        CHECK(per_rank[1] < per_rank[2]);
        printf("ok uneven durations: slow rank 1 ran %d, fast rank 2 ran %d\n", per_rank[1],
               per_rank[2]);
    }

    CHECK_RC(pf_executor_shutdown(ex, true, false), PF_OK);
    pf_future *after = NULL;
    CHECK_RC(pf_submit(ex, square, NULL, 0, &after), PF_ESHUTDOWN);
    pf_executor_destroy(ex);

    /* a second executor, with per-worker state from a registered initializer */
    int32_t seed = 1234;
    pf_executor_opts o = PF_EXECUTOR_OPTS_DEFAULT;
    o.initializer = init_state;
    o.finalizer = fini_state;
    o.init_arg = &seed;
    o.init_arg_len = sizeof seed;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, &o), PF_OK);
    pf_future *st = NULL;
    CHECK_RC(pf_submit(ex, read_state, NULL, 0, &st), PF_OK);
    CHECK(result_i32(st) == 1234);
    pf_future_release(st);
    pf_executor_destroy(ex);
    printf("ok worker initializer and state\n");

    destroy_from_callback(size);
    long_callback(size);
    timeout_then_destroy(size);
    too_big_argument();
    size_limits(size);
    cancel_during_shutdown(size);
    finalize_in_done_callback(size);
}

/* A worker rank SIGKILLed while it runs tasks: its tasks fail with
 * PF_ERANKDIED naming it, the other ranks finish the rest and take new work,
 * and mpirun ends.  victim < 0: whichever rank takes kill_my_rank (the
 * first); else that rank, through copies of kill_rank spread over all. */
static void killed_rank(int size, int victim)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    pf_future *fs[30];
    for (int i = 0; i < 30; i++)
        fs[i] = submit_i32(ex, nap, 20);
    enum { KILLERS = 8 };
    pf_future *k[KILLERS] = {NULL};
    if (victim < 0)
        CHECK_RC(pf_submit(ex, kill_my_rank, NULL, 0, &k[0]), PF_OK);
    else
        for (int i = 0; i < KILLERS; i++)
            k[i] = submit_i32(ex, kill_rank, victim);
    int ok = 0, died = 0;
    for (int i = 0; i < 30; i++) {
        int rc = pf_future_result(fs[i], 60, NULL, NULL);
        ok += rc == PF_OK;
        died += rc == PF_ERANKDIED;
        pf_future_release(fs[i]);
    }
    pf_error_info info = {0};
    int killers_died = 0;
    for (int i = 0; i < KILLERS && k[i]; i++) {
        const void *data;
        size_t len;
        int rc = pf_future_result(k[i], 60, &data, &len);
        if (rc == PF_ERANKDIED) {
            killers_died++;
            CHECK_RC(pf_future_error(k[i], &info), PF_OK);
            CHECK(strstr(info.message, "MPI rank") != NULL);
        } else {
            CHECK_RC(rc, PF_OK); /* ran on a rank that is not the victim */
            int32_t rank = -1;
            if (len == sizeof rank)
                memcpy(&rank, data, sizeof rank);
            CHECK(rank != victim);
        }
        pf_future_release(k[i]);
    }
    CHECK(killers_died >= 1);
    if (victim > 0) {
        char name[32];
        snprintf(name, sizeof name, "MPI rank %d ", victim);
        CHECK(strstr(info.message, name) != NULL);
    }
    CHECK(ok + died == 30);
    CHECK(ok >= 15);
    CHECK(pf_mpi_live_workers() == size - 2);
    /* the live ranks go on */
    for (int i = 0; i < 10; i++)
        fs[i] = submit_i32(ex, nap, 1);
    for (int i = 0; i < 10; i++) {
        int32_t rank = result_i32(fs[i]);
        CHECK(rank >= 1 && (victim < 0 || rank != victim));
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
    printf("ok killed rank%s: %d tasks done, %d failed with PF_ERANKDIED (%s)\n",
           victim > 0 ? " (the last)" : "", ok, died + killers_died, info.message);
}

/* A worker rank that dies while its 16 MiB result is on the way to rank 0
 * (rank 0's engine is held in a done-callback meanwhile, so the message is
 * half taken in when the rank dies): rank 0 takes it for dead and goes on.
 * Before, its engine waited forever in MPI_Recv for the rest of the message:
 * no task was sent or answered again, and pf_executor_destroy never
 * returned. */
static void died_sending(int size)
{
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    static int cb_ms = 1500;
    pf_future *hold = submit_i32(ex, nap, 1);
    CHECK_RC(pf_future_add_done_callback(hold, sleepy_callback, &cb_ms), PF_OK);
    pf_future *f = submit_i32(ex, big_then_die, 300);
    CHECK_RC(pf_future_result(f, 60, NULL, NULL), PF_ERANKDIED);
    pf_future_release(f);
    pf_future_release(hold);
    /* the engine goes on: a new task runs on the rank left */
    f = submit_i32(ex, nap, 1);
    int rc = pf_future_result(f, 60, NULL, NULL);
    CHECK_RC(rc, PF_OK);
    if (rc == PF_ETIMEDOUT) { /* the bug: destroy would never return either */
        fprintf(stderr, "FAIL: rank 0's engine is stuck; giving up\n");
        fflush(NULL);
        _exit(3);
    }
    pf_future_release(f);
    pf_executor_destroy(ex);
    CHECK(pf_mpi_live_workers() == size - 2);
    printf("ok a rank that dies while its result is on the way is taken for dead\n");
}

/* Tasks on every worker rank and rank 0 share one redis dict live: rank 0
 * releases the tasks by writing "go" while they wait, and reads their
 * atomic counts while and after they run. */
static void redis_shared(const char *host, int port)
{
    pf_dict *d;
    char name[64];
    snprintf(name, sizeof name, "pfor-mpi-test-%d", (int)getpid());
    int rc = pf_dict_open_redis(&d, host, port, name, NULL);
    CHECK_RC(rc, PF_OK);
    if (rc != PF_OK)
        return;
    CHECK_RC(pf_dict_clear(d), PF_OK);
    pf_executor *ex;
    CHECK_RC(pf_executor_create(&ex, PF_MPI, NULL), PF_OK);
    enum { N = 120 };
    struct redis_job job;
    CHECK_RC(pf_dict_ref_get(d, &job.ref), PF_OK);
    pf_future *fs[N];
    for (int i = 0; i < N; i++) {
        job.index = i;
        CHECK_RC(pf_submit(ex, redis_count, &job, sizeof job, &fs[i]), PF_OK);
    }
    /* the first tasks wait for "go": nothing is counted yet */
    sleep_ms(100);
    int64_t hits = -1;
    CHECK_RC(pf_dict_incr(d, PF_DICT_STR("hits"), 0, &hits), PF_OK);
    CHECK(hits == 0);
    CHECK_RC(pf_dict_set(d, PF_DICT_STR("go"), "1", 1), PF_OK);
    int per_rank[64] = {0};
    for (int i = 0; i < N; i++) {
        int32_t rank = result_i32(fs[i]);
        CHECK(rank >= 1 && rank < 64);
        if (rank >= 1 && rank < 64)
            per_rank[rank]++;
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
    CHECK_RC(pf_dict_incr(d, PF_DICT_STR("hits"), 0, &hits), PF_OK);
    CHECK(hits == N); /* no update lost across ranks */
    int ranks_used = 0;
    for (int r = 1; r < pf_mpi_size() && r < 64; r++) {
        char key[32];
        snprintf(key, sizeof key, "rank:%d", r);
        int64_t n = 0;
        if (per_rank[r] > 0) {
            CHECK_RC(pf_dict_incr(d, key, strlen(key), 0, &n), PF_OK);
            ranks_used++;
        }
        CHECK(n == per_rank[r]); /* what the dict says each rank did is what it did */
    }
    CHECK(ranks_used == pf_mpi_size() - 1);
    size_t len = 0;
    CHECK_RC(pf_dict_len(d, &len), PF_OK);
    CHECK(len == 1 + 1 + (size_t)ranks_used + N); /* hits, go, rank:*, task:* */
    CHECK_RC(pf_dict_clear(d), PF_OK);
    pf_dict_close(d);
    printf("ok redis dict shared live by rank 0 and %d worker ranks: %lld hits\n", ranks_used,
           (long long)hits);
}

static void *finalize_thread(void *arg)
{
    (void)arg;
    pf_mpi_finalize();
    return NULL;
}

int main(int argc, char **argv)
{
    const char *pids = getenv("PFOR_MPI_TEST_PIDS");
    if (pids && *pids) {
        FILE *fp = fopen(pids, "a");
        if (fp) {
            fprintf(fp, "%d\n", (int)getpid());
            fclose(fp);
        }
    }
    main_thread = pthread_self();
    /* Bad arguments are PF_EINVAL, and MPI is not started (before, a count
     * without its strings crashed inside MPI_Init_thread on every rank, and
     * half a pair started MPI). */
    int bad_count = 2;
    char *one_null[] = {argv[0], NULL, NULL};
    char **no_strings = NULL, **holey = one_null;
    int negative = -1;
    CHECK_RC(pf_mpi_init(&bad_count, &no_strings, NULL), PF_EINVAL);
    CHECK_RC(pf_mpi_init(&bad_count, &holey, NULL), PF_EINVAL);
    CHECK_RC(pf_mpi_init(&argc, NULL, NULL), PF_EINVAL);
    CHECK_RC(pf_mpi_init(NULL, &argv, NULL), PF_EINVAL);
    CHECK_RC(pf_mpi_init(&negative, &argv, NULL), PF_EINVAL);
    CHECK_RC(pf_mpi_init(&argc, &argv, &(pf_mpi_opts){.threads_per_rank = -1}), PF_EINVAL);
    CHECK_RC(pf_mpi_init(&argc, &argv, &(pf_mpi_opts){.dead_after = -1}), PF_EINVAL);
    int up = 1;
    MPI_Initialized(&up);
    CHECK(up == 0);
    int rc = pf_mpi_init(&argc, &argv, NULL); /* worker ranks stay in here */
    if (rc != PF_OK) {
        fprintf(stderr, "pf_mpi_init: %s\n", pf_strerror(rc));
        return 2;
    }
    printf("ok pf_mpi_init with bad arguments: PF_EINVAL, MPI not started\n");
    int size = pf_mpi_size();
    const char *mode = argc > 1 ? argv[1] : "semantics";
    if (size < 2) {
        fprintf(stderr, "run under mpirun with 2 ranks or more\n");
        pf_mpi_finalize();
        return 2;
    }
    if (strcmp(mode, "kill") == 0)
        killed_rank(size, -1);
    else if (strcmp(mode, "kill-last") == 0)
        killed_rank(size, size - 1);
    else if (strcmp(mode, "kill-idle") == 0)
        killed_idle_rank(size);
    else if (strcmp(mode, "kill-sending") == 0)
        died_sending(size);
    else if (strcmp(mode, "redis") == 0 && argc == 4)
        redis_shared(argv[2], atoi(argv[3]));
    else if (strcmp(mode, "semantics") == 0)
        semantics(size);
    else {
        fprintf(stderr, "usage: pfor-mpi-tests semantics|kill|kill-last|kill-idle|kill-sending|"
                        "redis HOST PORT\n");
        pf_mpi_finalize();
        return 2;
    }
    /* Three calls at once (two threads and this one): one finalizes, the
     * others return; none joins the engine a second time (that aborted). */
    pthread_t fin[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&fin[i], NULL, finalize_thread, NULL) == 0);
    pf_mpi_finalize();
    for (int i = 0; i < 2; i++)
        pthread_join(fin[i], NULL);
    printf("ok pf_mpi_finalize from three threads at once\n");
    /* MPI_Finalize ran only if no rank died (kill*: one did, and for
     * kill-idle only pf_mpi_finalize can have noticed); see pfor/mpi.h */
    int finalized = -1;
    MPI_Finalized(&finalized);
    CHECK(finalized == (strncmp(mode, "kill", 4) != 0));
    /* MPI cannot start again in this process: a clear error, no abort */
    CHECK_RC(pf_mpi_init(&argc, &argv, NULL), PF_EBUSY);
    CHECK(pf_mpi_rank() == 0);
    printf("ok pf_mpi_init after pf_mpi_finalize: PF_EBUSY\n");
    printf("%s: %d failed checks\n", mode, failures);
    return failures > 100 ? 100 : failures;
}
