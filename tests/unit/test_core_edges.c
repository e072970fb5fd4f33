/*
 * The shared core: the sequential executor run re-entrantly, the per-task
 * time limit's conversion, the spin budget's parsing, and the order of
 * done-callbacks added while others run.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"
#include "platform/sync.h"
#include "tasks.h"

/* --- the sequential executor, re-entered from its own task --------------- */

static _Atomic int seq_fini_calls;

static int seq_init(void **state, const void *arg, size_t len, int index)
{
    (void)arg;
    (void)len;
    (void)index;
    int *s = malloc(sizeof *s);
    ASSERT(s != NULL);
    *s = 7;
    *state = s;
    return 0;
}

static void seq_fini(void *state, int index)
{
    (void)index;
    free(state);
    atomic_fetch_add(&seq_fini_calls, 1);
}

/* Shuts its own executor down, then uses its worker state. */
static int shutdown_own(pf_task *t, const void *arg, size_t len, bool wait)
{
    ASSERT_EQ(len, sizeof(pf_executor *));
    pf_executor *ex;
    memcpy(&ex, arg, sizeof ex);
    ASSERT_OK(pf_executor_shutdown(ex, wait, false));
    if (atomic_load(&seq_fini_calls) != 0)
        return pf_task_fail(t, 1, "the finalizer ran while a task of the worker runs");
    int v = *(int *)pf_task_worker_state(t); /* the state must still be there */
    return pf_task_set_result(t, &v, sizeof v);
}

static int task_shutdown_own(pf_task *t, const void *arg, size_t len)
{
    return shutdown_own(t, arg, len, true);
}

/* Without wait: the task holds the executor's (recursive) lock already. */
static int task_shutdown_own_no_wait(pf_task *t, const void *arg, size_t len)
{
    return shutdown_own(t, arg, len, false);
}

/* Submits task_shutdown_own to its own executor (nested), then checks the
 * worker is still initialised for the rest of this outer task. */
static int task_nested_shutdown(pf_task *t, const void *arg, size_t len)
{
    ASSERT_EQ(len, sizeof(pf_executor *));
    pf_executor *ex;
    memcpy(&ex, arg, sizeof ex); /* the argument bytes need not be aligned */
    pf_future *inner = NULL;
    int rc = pf_submit(ex, task_shutdown_own, arg, len, &inner);
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "nested submit: %s", pf_strerror(rc));
    rc = pf_future_result(inner, 0, NULL, NULL); /* ran inside pf_submit */
    pf_future_release(inner);
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "inner task: %s", pf_strerror(rc));
    if (atomic_load(&seq_fini_calls) != 0)
        return pf_task_fail(t, 2, "the finalizer ran while the outer task runs");
    int v = *(int *)pf_task_worker_state(t);
    return pf_task_set_result(t, &v, sizeof v);
}

static pf_executor *seq_with_state(void)
{
    atomic_store(&seq_fini_calls, 0);
    pf_executor_opts o = {.max_workers = 1, .initializer = seq_init, .finalizer = seq_fini};
    pf_executor *ex = NULL;
    ASSERT_OK(pf_executor_create(&ex, PF_SEQUENTIAL, &o));
    return ex;
}

/* Run fn (it shuts its own sequential executor down, from a task) and check
 * that the finalizer ran once, after the outermost task returned. */
static void check_shutdown_from_a_task(pf_task_fn fn)
{
    pf_executor *ex = seq_with_state();
    pf_future *f;
    ASSERT_OK(pf_submit(ex, fn, &ex, sizeof ex, &f));
    pf_error_info info;
    ASSERT_OK(pf_future_error(f, &info));
    if (info.code != PF_OK)
        FAIL("task failed: %s", info.message);
    ASSERT_EQ(atomic_load(&seq_fini_calls), 1); /* once the task returned */
    ASSERT_ERR(pf_submit(ex, task_noop, NULL, 0, NULL), PF_ESHUTDOWN);
    pf_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&seq_fini_calls), 1); /* not again */
    pf_future_release(f);
}

/* The finalizer runs "after the worker's last task": a task that shuts its
 * sequential executor down is still that worker's task, so the finalizer
 * (which frees the state the task may still use) waits until it returns. */
TEST(core_seq_task_shutting_down_its_executor_keeps_state_until_it_returns)
{
    check_shutdown_from_a_task(task_shutdown_own);
}

/* The same from a nested task: the finalizer waits for the outermost one. */
TEST(core_seq_nested_task_shutting_down_waits_for_the_outer_task)
{
    check_shutdown_from_a_task(task_nested_shutdown);
}

/* The same with shutdown(wait = false) from the task. */
TEST(core_seq_task_shutting_down_without_wait_keeps_state_until_it_returns)
{
    check_shutdown_from_a_task(task_shutdown_own_no_wait);
}

/* Destroys the executor given as user data (a done-callback). */
static void destroy_executor_cb(pf_future *f, void *ex)
{
    ASSERT(pf_future_done(f));
    pf_executor_destroy(ex);
}

static void count_progress(const pf_progress *p, void *user)
{
    (void)p;
    atomic_fetch_add((_Atomic int *)user, 1);
}

/* Re-entrancy without a defect found: a sequential task that submits to its
 * own executor runs nested; a done-callback added after completion runs at
 * once in this thread and may destroy the executor; the future outlives it. */
TEST(core_seq_callback_destroys_executor_and_future_outlives_it)
{
    static _Atomic int progress_calls;
    atomic_store(&progress_calls, 0);
    pf_executor_opts o = {
        .max_workers = 1, .progress = count_progress, .progress_user = (void *)&progress_calls};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_SEQUENTIAL, &o));
    pf_future *f = submit_i32(ex, task_sleep_ms, 0);
    ASSERT(pf_future_done(f)); /* ran inside pf_submit */
    ASSERT_EQ(atomic_load(&progress_calls), 1);
    ASSERT_OK(pf_future_add_done_callback(f, destroy_executor_cb, ex));
    ASSERT_EQ(result_i32(f), 0);
    ASSERT(!pf_future_running(f));
    ASSERT_ERR(pf_future_cancel(f), PF_EBUSY);
    pf_future_release(f);
}

/* --- shutdown without wait while another thread's task runs -------------- */

static _Atomic int seq_task_started, seq_task_go, seq_shutdown_returned;
static pf_executor *seq_ex;

static bool core_wait_flag(_Atomic int *flag, double seconds)
{
    for (int ms = 0; ms < seconds * 1000 * pf_test_scale(); ms++) {
        if (atomic_load(flag))
            return true;
        pf_test_sleep_ms(1);
    }
    return atomic_load(flag) != 0;
}

/* Runs until the test says go (at most 30 s). */
static int task_until_go(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    atomic_store(&seq_task_started, 1);
    for (int i = 0; i < 30000 && !atomic_load(&seq_task_go); i++)
        pf_test_sleep_ms(1);
    return 0;
}

static void *submit_until_go(void *arg)
{
    pf_future **f = arg;
    ASSERT_OK(pf_submit(seq_ex, task_until_go, NULL, 0, f));
    return NULL;
}

/* Lets the task go if the shutdown has not returned in time (the test then
 * fails), so that a shutdown that waits for the task cannot hang the test. */
static void *release_if_stuck(void *arg)
{
    (void)arg;
    if (!core_wait_flag(&seq_shutdown_returned, 10))
        atomic_store(&seq_task_go, 1);
    return NULL;
}

/* pf_executor_shutdown(wait = false) returns without waiting, also on the
 * sequential executor while a task of it runs in another thread; later
 * submits are refused, and the finalizer runs once, after that task. */
TEST(core_seq_shutdown_without_wait_does_not_wait_for_a_running_task)
{
    pf_executor *ex = seq_with_state();
    seq_ex = ex;
    atomic_store(&seq_task_started, 0);
    atomic_store(&seq_task_go, 0);
    atomic_store(&seq_shutdown_returned, 0);
    pthread_t guard, th;
    ASSERT_OK(pthread_create(&guard, NULL, release_if_stuck, NULL));
    pf_future *f = NULL;
    ASSERT_OK(pthread_create(&th, NULL, submit_until_go, &f));
    ASSERT(core_wait_flag(&seq_task_started, 10));
    ASSERT_OK(pf_executor_shutdown(ex, false, false));
    bool in_time = atomic_load(&seq_task_go) == 0;
    atomic_store(&seq_shutdown_returned, 1);
    int late = pf_submit(ex, task_noop, NULL, 0, NULL);
    int fini_early = atomic_load(&seq_fini_calls);
    atomic_store(&seq_task_go, 1);
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_OK(pthread_join(guard, NULL));
    if (!in_time)
        FAIL("shutdown(wait = false) waited for a task running in another thread");
    ASSERT_ERR(late, PF_ESHUTDOWN);
    ASSERT_EQ(fini_early, 0); /* not while the task runs */
    ASSERT_OK(pf_future_result(f, 0, NULL, NULL));
    pf_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&seq_fini_calls), 1);
    pf_future_release(f);
}

/* --- the per-task time limit --------------------------------------------- */

/* A positive time limit is a limit, however small: it must not round down to
 * 0, which means "no limit".  The task sleeps 100 ms; on threads the pool
 * fails its future at the deadline without waiting for it. */
TEST(core_tiny_positive_task_timeout_is_a_limit)
{
    pf_executor *ex;
    pf_executor_opts o = {.max_workers = 1};
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_submit_opts so = {.timeout = 1e-10};
    int32_t ms = 100;
    pf_future *f;
    ASSERT_OK(pf_submit_ex(ex, task_sleep_ms, &ms, sizeof ms, &so, &f));
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(f);
    pf_executor_destroy(ex);

    /* the executor's default limit, the same */
    o.task_timeout = 1e-10;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    f = submit_i32(ex, task_sleep_ms, ms);
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(f);
    pf_executor_destroy(ex);
}

/* --- the spin budget ------------------------------------------------------ */

/* PFOR_SPIN_NS is a count of nanoseconds: a negative value is not one and
 * must be ignored (the default), not wrapped by strtoull to the 10 ms cap.
 * Each test runs in its own process, so the budget is read fresh here. */
TEST(core_negative_spin_budget_is_ignored)
{
    ASSERT_OK(setenv("PFOR_SPIN_NS", "-1", 1));
    uint64_t want = pf__ncpus() > 1 ? 50000 : 0;
    ASSERT_EQ(pf__spin_budget_ns(), want);
}

/* --- done-callbacks: the order they were added in ------------------------- */

/* Polls *flag for up to `seconds` (scaled); whether it became non-zero.  A
 * broken order becomes a failed assertion, never a hang. */
static bool cb_wait_flag(_Atomic int *flag, double seconds)
{
    for (int ms = 0; ms < seconds * 1000 * pf_test_scale(); ms++) {
        if (atomic_load(flag))
            return true;
        pf_test_sleep_ms(1);
    }
    return atomic_load(flag) != 0;
}

static _Atomic int cb_gate, cb_first_running, cb_second_added, cb_n_calls, cb_n_noted, cb_order[4];

static int task_wait_gate(pf_task *t, const void *arg, size_t len)
{
    (void)t, (void)arg, (void)len;
    cb_wait_flag(&cb_gate, 10);
    return 0;
}

static void note_order(pf_future *f, void *user)
{
    (void)f;
    int n = atomic_fetch_add(&cb_n_calls, 1);
    if (n < 4)
        atomic_store(&cb_order[n], (int)(intptr_t)user);
    atomic_fetch_add(&cb_n_noted, 1); /* after the store: the test reads it then */
}

/* The first callback: it runs on the worker once the future is done, and
 * holds the worker there until the test thread has added the second one. */
static void first_waits_for_second(pf_future *f, void *user)
{
    atomic_store(&cb_first_running, 1);
    cb_wait_flag(&cb_second_added, 10);
    note_order(f, user);
}

/* A callback added while the finishing thread still runs earlier ones (the
 * future is done already) runs after them, not at once in the adding
 * thread: callbacks run in the order they were added. */
TEST(core_callback_added_while_callbacks_run_keeps_order)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = 1};
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_wait_gate, NULL, 0, &f));
    ASSERT_OK(pf_future_add_done_callback(f, first_waits_for_second, (void *)1));
    atomic_store(&cb_gate, 1);
    if (!cb_wait_flag(&cb_first_running, 10))
        FAIL("the first callback never ran");
    ASSERT(pf_future_done(f));
    ASSERT_OK(pf_future_add_done_callback(f, note_order, (void *)2));
    atomic_store(&cb_second_added, 1);
    for (int ms = 0; ms < 10000 * pf_test_scale() && atomic_load(&cb_n_noted) < 2; ms++)
        pf_test_sleep_ms(1);
    ASSERT_EQ(atomic_load(&cb_n_noted), 2);
    ASSERT_EQ(atomic_load(&cb_order[0]), 1);
    ASSERT_EQ(atomic_load(&cb_order[1]), 2);
    /* The worker is joined, so its callback run is over: one added now
     * runs at once, in this thread. */
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    ASSERT_OK(pf_future_add_done_callback(f, note_order, (void *)3));
    ASSERT_EQ(atomic_load(&cb_n_noted), 3);
    ASSERT_EQ(atomic_load(&cb_order[2]), 3);
    pf_future_release(f);
    pf_executor_destroy(ex);
}

/* Notes itself, then adds note_order(3) to its own future. */
static void note_then_add_third(pf_future *f, void *user)
{
    note_order(f, user);
    ASSERT_OK(pf_future_add_done_callback(f, note_order, (void *)3));
}

/* A callback that adds another to its own future: the new one runs after
 * every callback added before it (on the same thread, once they return). */
TEST(core_callback_added_by_a_callback_runs_after_the_earlier_ones)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = 1};
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_wait_gate, NULL, 0, &f));
    ASSERT_OK(pf_future_add_done_callback(f, note_then_add_third, (void *)1));
    ASSERT_OK(pf_future_add_done_callback(f, note_order, (void *)2));
    atomic_store(&cb_gate, 1);
    ASSERT_OK(pf_executor_shutdown(ex, true, false)); /* the worker's callbacks have run */
    ASSERT_EQ(atomic_load(&cb_n_noted), 3);
    ASSERT_EQ(atomic_load(&cb_order[0]), 1);
    ASSERT_EQ(atomic_load(&cb_order[1]), 2);
    ASSERT_EQ(atomic_load(&cb_order[2]), 3);
    pf_future_release(f);
    pf_executor_destroy(ex);
}
