/*
 * Thread pool and pf_map edge cases: tasks that end or cancel their own
 * thread, chunks that stop at their cancel flag, and shutdown(wait) racing
 * another shutdown's cancelled futures or a task's destroy.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/core.h"
#include "tasks.h"

static pf_executor *make_threads(int workers)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = workers};
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    return ex;
}

static int task_square_i32(pf_task *t, const void *arg, size_t len)
{
    int32_t x;
    if (len != sizeof x)
        return 1;
    memcpy(&x, arg, sizeof x);
    x *= x;
    return pf_task_set_result(t, &x, sizeof x);
}

static int task_pthread_exit(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    pthread_exit(NULL);
}

/* A task that ends its worker thread fails its future (it does not hang),
 * and the pool goes on running tasks with the thread it has left. */
TEST(thr_task_that_exits_its_thread_fails_and_the_pool_goes_on)
{
    pf_executor *ex = make_threads(1);
    pf_future *dead = NULL;
    ASSERT_OK(pf_submit(ex, task_pthread_exit, NULL, 0, &dead));
    pf_future *next = submit_i32(ex, task_square_i32, 7); /* queued behind it */
    ASSERT_OK(pf_future_wait(dead, 10 * pf_test_scale()));
    ASSERT_ERR(pf_future_result(dead, 0, NULL, NULL), PF_EWORKERDIED);
    ASSERT_OK(pf_future_wait(next, 10 * pf_test_scale()));
    ASSERT_EQ(result_i32(next), 49);
    pf_future_release(dead);
    pf_future_release(next);
    pf_executor_destroy(ex);
}

/* The thread a task ended cannot be replaced (pthread_create fails) and it
 * was the pool's only one: what was queued fails, and a later submit starts
 * a thread in the vacant slot instead of queueing with no one to run it. */
/* A pool of `workers` threads, one of whose slots a task left vacant. */
static pf_executor *pool_with_a_vacant_slot(int workers)
{
    pf_executor *ex = make_threads(workers);
    atomic_store(&pf__tp_fail_respawns, 1);
    pf_future *dead = NULL;
    ASSERT_OK(pf_submit(ex, task_pthread_exit, NULL, 0, &dead));
    ASSERT_OK(pf_future_wait(dead, 10 * pf_test_scale()));
    ASSERT_ERR(pf_future_result(dead, 0, NULL, NULL), PF_EWORKERDIED);
    ASSERT_EQ(atomic_load(&pf__tp_fail_respawns), 0); /* the refusal was used */
    pf_future_release(dead);
    return ex;
}

TEST(thr_last_thread_ended_without_replacement_a_submit_restarts_it)
{
    pf_executor *ex = pool_with_a_vacant_slot(1);
    for (int32_t i = 1; i <= 3; i++) {
        pf_future *next = submit_i32(ex, task_square_i32, i);
        if (pf_future_wait(next, 10 * pf_test_scale()) != PF_OK)
            FAIL("task %d never ran: no thread took it", (int)i);
        ASSERT_EQ(result_i32(next), i * i);
        pf_future_release(next);
    }
    pf_executor_destroy(ex);
}

/* Two slots, one left vacant: the pool gets back to two threads (a task
 * that waits for a second one to run beside it ends). */
struct rendezvous {
    atomic_int arrived;
};

static int task_meet(pf_task *t, const void *arg, size_t len)
{
    struct rendezvous *r;
    if (len != sizeof r)
        return 1;
    memcpy(&r, arg, sizeof r);
    atomic_fetch_add(&r->arrived, 1);
    for (int i = 0; i < 20000 && atomic_load(&r->arrived) < 2; i++)
        usleep(500);
    int32_t met = atomic_load(&r->arrived) >= 2;
    return pf_task_set_result(t, &met, sizeof met);
}

TEST(thr_vacant_slot_is_refilled_to_the_pool_size)
{
    pf_executor *ex = pool_with_a_vacant_slot(2);
    struct rendezvous r = {0};
    struct rendezvous *rp = &r;
    pf_future *a = NULL, *b = NULL;
    ASSERT_OK(pf_submit(ex, task_meet, &rp, sizeof rp, &a));
    ASSERT_OK(pf_submit(ex, task_meet, &rp, sizeof rp, &b));
    ASSERT_OK(pf_future_wait(a, 30 * pf_test_scale()));
    ASSERT_OK(pf_future_wait(b, 30 * pf_test_scale()));
    ASSERT_EQ(result_i32(a), 1); /* both ran at once: two threads */
    ASSERT_EQ(result_i32(b), 1);
    pf_future_release(a);
    pf_future_release(b);
    pf_executor_destroy(ex);
}

/* The same with a time limit: the watchdog must not wait forever for a
 * thread that is gone, so destroy returns. */
TEST(thr_timed_task_that_exits_its_thread_lets_destroy_return)
{
    pf_executor *ex = make_threads(2);
    pf_submit_opts so = {.timeout = 30};
    pf_future *dead = NULL;
    ASSERT_OK(pf_submit_ex(ex, task_pthread_exit, NULL, 0, &so, &dead));
    ASSERT_OK(pf_future_wait(dead, 10 * pf_test_scale()));
    ASSERT_ERR(pf_future_result(dead, 0, NULL, NULL), PF_EWORKERDIED);
    pf_future_release(dead);
    pf_executor_destroy(ex); /* hung: the watchdog saw the task as running */
}

static int task_cancel_self(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    pthread_cancel(pthread_self());
    int32_t one = 1;
    return pf_task_set_result(t, &one, sizeof one);
}

struct after_cancel {
    pf_executor *ex;
    atomic_int done;
    int32_t value;
};

static void *submit_after_cancel(void *arg)
{
    struct after_cancel *a = arg;
    pf_future *f = submit_i32(a->ex, task_square_i32, 5);
    a->value = result_i32(f);
    pf_future_release(f);
    atomic_store(&a->done, 1);
    return NULL;
}

/* A task that cancels its own thread must not take the pool down with it
 * (the worker used to act on the cancel in its cond_wait, holding the pool
 * lock, and every later submit hung). */
TEST(thr_task_that_cancels_its_thread_does_not_wedge_the_pool)
{
    pf_executor *ex = make_threads(1);
    pf_future *f = NULL;
    ASSERT_OK(pf_submit(ex, task_cancel_self, NULL, 0, &f));
    ASSERT_OK(pf_future_wait(f, 10 * pf_test_scale()));
    pf_future_release(f);
    pf_test_sleep_ms(50); /* let the worker reach its wait for work */
    struct after_cancel a = {.ex = ex};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, submit_after_cancel, &a), 0);
    for (int i = 0; i < 1000 * pf_test_scale() && !atomic_load(&a.done); i++)
        pf_test_sleep_ms(10);
    if (!atomic_load(&a.done))
        FAIL("a submit after a self-cancelling task never completed");
    pthread_join(th, NULL);
    ASSERT_EQ(a.value, 25);
    pf_executor_destroy(ex);
}

/* pf_map stopped early cancels the chunk that runs: the chunk stops at its
 * cancel flag between items instead of running all the rest. */
static atomic_int late_items;

static int task_item_waits_for_cancel(pf_task *t, const void *arg, size_t len)
{
    (void)len;
    int64_t x;
    memcpy(&x, arg, sizeof x);
    if (x == 50) {
        for (int i = 0; i < 10000 && !pf_task_cancelled(t); i++)
            pf_test_sleep_ms(1);
    } else if (x > 50) {
        atomic_fetch_add(&late_items, 1);
    }
    return pf_task_set_result(t, &x, sizeof x);
}

static int stop_at_first(void *user, size_t index, int status, const void *data, size_t len,
                         const char *errmsg)
{
    (void)user, (void)index, (void)status, (void)data, (void)len, (void)errmsg;
    return 99;
}

TEST(map_stopped_early_stops_the_running_chunk_at_its_cancel_flag)
{
    pf_executor *ex = make_threads(2);
    enum { N = 100 };
    int64_t in[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    for (int unordered = 0; unordered < 2; unordered++) {
        atomic_store(&late_items, 0);
        pf_map_opts o = {.chunksize = 50, .max_in_flight = 2, .unordered = unordered};
        /* unordered: the first chunk to finish is 0..49, the other waits */
        ASSERT_EQ(pf_map_array(ex, task_item_waits_for_cancel, in, N, sizeof in[0], stop_at_first,
                               NULL, &o),
                  99);
        ASSERT_EQ(atomic_load(&late_items), 0);
    }
    pf_executor_destroy(ex);
}

/* A timed-out chunk stops at its flag too: its worker is free again soon
 * instead of running every remaining item for a result nobody takes. */
static int task_item_slow_first(pf_task *t, const void *arg, size_t len)
{
    (void)len;
    int64_t x;
    memcpy(&x, arg, sizeof x);
    if (x == 0) {
        for (int i = 0; i < 10000 && !pf_task_cancelled(t); i++)
            pf_test_sleep_ms(1);
    } else {
        atomic_fetch_add(&late_items, 1);
    }
    return pf_task_set_result(t, &x, sizeof x);
}

static int count_emit(void *user, size_t index, int status, const void *data, size_t len,
                      const char *errmsg)
{
    (void)index, (void)data, (void)len, (void)errmsg;
    if (status == PF_ETASKTIMEOUT)
        (*(int *)user)++;
    return 0;
}

TEST(map_timed_out_chunk_stops_at_its_flag)
{
    pf_executor *ex = make_threads(1);
    enum { N = 40 };
    int64_t in[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    atomic_store(&late_items, 0);
    int timed_out = 0;
    pf_map_opts o = {.chunksize = N, .timeout = 0.05};
    ASSERT_ERR(
        pf_map_array(ex, task_item_slow_first, in, N, sizeof in[0], count_emit, &timed_out, &o),
        PF_ETASKTIMEOUT);
    ASSERT_EQ(timed_out, N);
    pf_executor_destroy(ex); /* joins the worker: the chunk has ended */
    ASSERT_EQ(atomic_load(&late_items), 0);
}

/* --- shutdown(wait) returns only when the whole pool is done -------------- */

/* Polls *flag for up to `seconds` (scaled): whether it became non-zero. */
static bool sd_wait_flag(_Atomic int *flag, double seconds)
{
    for (int ms = 0; ms < seconds * 1000 * pf_test_scale(); ms++) {
        if (atomic_load(flag))
            return true;
        pf_test_sleep_ms(1);
    }
    return atomic_load(flag) != 0;
}

/* How long a test's pool code is held up to show that shutdown(wait) waits
 * for it (a shutdown that does not wait returns well before that). */
#define SD_HOLD_S 0.5

static _Atomic int sd_gate, sd_in_cb, sd_cb_done, sd_waiter_returned, sd_go_destroy, sd_destroyed,
    sd_task_ended;
static pf_executor *sd_ex;

static int task_wait_sd_gate(pf_task *t, const void *arg, size_t len)
{
    (void)t, (void)arg, (void)len;
    sd_wait_flag(&sd_gate, 10);
    return 0;
}

/* A done-callback of a future that shutdown(cancel_futures) cancels: holds
 * that shutdown's batch up until the other shutdown(wait) returned (which
 * it must not do meanwhile) or SD_HOLD_S passed. */
static void hold_the_batch(pf_future *f, void *user)
{
    (void)f, (void)user;
    atomic_store(&sd_in_cb, 1);
    sd_wait_flag(&sd_waiter_returned, SD_HOLD_S);
    atomic_store(&sd_cb_done, 1);
}

static void *cancel_futures_shutdown(void *ex)
{
    ASSERT_OK(pf_executor_shutdown(ex, false, true));
    return NULL;
}

/* shutdown(wait) returns once every future of the pool is finished, also
 * while another thread's shutdown(cancel_futures) is still finishing the
 * futures it took off the queue (their callbacks run there). */
TEST(thr_shutdown_wait_waits_for_another_shutdowns_cancelled_batch)
{
    pf_executor *ex = make_threads(1);
    pf_future *busy, *a, *b;
    ASSERT_OK(pf_submit(ex, task_wait_sd_gate, NULL, 0, &busy));
    for (int ms = 0; ms < 10000 * pf_test_scale() && !pf_future_running(busy); ms++)
        pf_test_sleep_ms(1);
    ASSERT(pf_future_running(busy)); /* so a and b stay queued */
    ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, &a));
    ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, &b));
    ASSERT_OK(pf_future_add_done_callback(a, hold_the_batch, NULL));
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, cancel_futures_shutdown, ex), 0);
    if (!sd_wait_flag(&sd_in_cb, 10))
        FAIL("shutdown(cancel_futures) never ran the cancelled future's callback");
    atomic_store(&sd_gate, 1); /* the worker can leave now */
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    bool b_done = pf_future_done(b), cb_done = atomic_load(&sd_cb_done);
    atomic_store(&sd_waiter_returned, 1);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    if (!b_done || !cb_done)
        FAIL("shutdown(wait) returned while another shutdown was cancelling the queue "
             "(b done: %d, callback returned: %d)",
             b_done, cb_done);
    ASSERT(pf_future_cancelled(a));
    ASSERT(pf_future_cancelled(b));
    ASSERT_OK(pf_future_result(busy, 0, NULL, NULL));
    pf_future_release(busy);
    pf_future_release(a);
    pf_future_release(b);
    pf_executor_destroy(ex);
}

/* Destroys the pool it runs on once the test says so, then runs on until
 * the outside shutdown(wait) returned (which it must not do meanwhile) or
 * SD_HOLD_S passed. */
static int task_destroy_then_linger(pf_task *t, const void *arg, size_t len)
{
    (void)t, (void)arg, (void)len;
    sd_wait_flag(&sd_go_destroy, 10);
    pf_executor_destroy(sd_ex);
    atomic_store(&sd_destroyed, 1);
    sd_wait_flag(&sd_waiter_returned, SD_HOLD_S);
    atomic_store(&sd_task_ended, 1);
    return 0;
}

/* Runs in the outside shutdown (it cancels this future) before that call
 * joins anyone: lets the task destroy the pool, and waits until it has. */
static void let_the_task_destroy(pf_future *f, void *user)
{
    (void)f, (void)user;
    atomic_store(&sd_go_destroy, 1);
    sd_wait_flag(&sd_destroyed, 10);
}

/* A task may destroy its own pool (its worker detaches itself) while a
 * shutdown(wait) from outside is under way: that call still returns only
 * once the task has finished. */
TEST(thr_shutdown_wait_waits_for_a_task_that_destroyed_the_pool)
{
    sd_ex = make_threads(1);
    pf_future *task, *queued;
    ASSERT_OK(pf_submit(sd_ex, task_destroy_then_linger, NULL, 0, &task));
    for (int ms = 0; ms < 10000 * pf_test_scale() && !pf_future_running(task); ms++)
        pf_test_sleep_ms(1);
    ASSERT(pf_future_running(task)); /* so `queued` stays queued */
    ASSERT_OK(pf_submit(sd_ex, task_noop, NULL, 0, &queued));
    ASSERT_OK(pf_future_add_done_callback(queued, let_the_task_destroy, NULL));
    int rc = pf_executor_shutdown(sd_ex, true, true); /* sd_ex is destroyed meanwhile */
    bool task_done = pf_future_done(task), ended = atomic_load(&sd_task_ended);
    atomic_store(&sd_waiter_returned, 1);
    ASSERT_OK(rc);
    ASSERT(atomic_load(&sd_destroyed));
    if (!task_done || !ended)
        FAIL("shutdown(wait) returned while a task that destroyed the pool still ran "
             "(future done: %d, task returned: %d)",
             task_done, ended);
    ASSERT_OK(pf_future_result(task, 0, NULL, NULL));
    ASSERT(pf_future_cancelled(queued));
    pf_future_release(task);
    pf_future_release(queued);
}
