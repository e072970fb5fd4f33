/*
 * Executor and future semantics, the same on every executor kind.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "tasks.h"

static pf_executor *make(pf_kind kind, int workers)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = workers};
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    ASSERT(ex != NULL);
    return ex;
}

static void squares(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    enum { N = 200 };
    pf_future *fs[N];
    for (int64_t i = 0; i < N; i++)
        ASSERT_OK(pf_submit(ex, task_square, &i, sizeof i, &fs[i]));
    for (int64_t i = 0; i < N; i++) {
        const void *data;
        size_t len;
        ASSERT_OK(pf_future_result(fs[i], PF_FOREVER, &data, &len));
        ASSERT_EQ(len, 8);
        int64_t v;
        memcpy(&v, data, sizeof v);
        ASSERT_EQ(v, i * i);
        ASSERT(pf_future_done(fs[i]));
        ASSERT(!pf_future_cancelled(fs[i]));
        /* result may be asked again: the same bytes */
        const void *again;
        ASSERT_OK(pf_future_result(fs[i], 0, &again, NULL));
        ASSERT(again == data);
        pf_future_release(fs[i]);
    }
    pf_progress p;
    ASSERT_OK(pf_executor_progress(ex, &p));
    ASSERT_EQ(p.submitted, N);
    ASSERT_EQ(p.done, N);
    ASSERT_EQ(p.failed, 0);
    ASSERT_EQ(p.running, 0);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(squares)

static void result_sizes(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    const uint64_t sizes[] = {0, 1, 255, 256, 257, 4096, 1 << 20, 64ull << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        pf_future *f;
        ASSERT_OK(pf_submit(ex, task_sized_result, &sizes[k], 8, &f));
        const unsigned char *data;
        size_t len;
        ASSERT_OK(pf_future_result(f, PF_FOREVER, (const void **)&data, &len));
        ASSERT_EQ(len, sizes[k]);
        for (uint64_t i = 0; i < len; i++)
            if (data[i] != (unsigned char)((i * 7 + 3) & 0xff))
                FAIL("size %llu: byte %llu wrong", (unsigned long long)sizes[k],
                     (unsigned long long)i);
        pf_future_release(f);
    }
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(result_sizes)

static void argument_sizes(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    const size_t sizes[] = {0, 1, 192, 193, 5000, 3 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *arg = malloc(sizes[k] + 1);
        for (size_t i = 0; i < sizes[k]; i++)
            arg[i] = (unsigned char)((i * 7 + 3) & 0xff);
        pf_future *f;
        ASSERT_OK(pf_submit(ex, task_check_arg, arg, sizes[k], &f));
        memset(arg, 0, sizes[k]); /* the executor has its own copy */
        free(arg);
        const void *data;
        size_t len;
        ASSERT_OK(pf_future_result(f, PF_FOREVER, &data, &len));
        uint64_t n;
        ASSERT_EQ(len, sizeof n);
        memcpy(&n, data, sizeof n);
        ASSERT_EQ(n, sizes[k]);
        pf_future_release(f);
    }
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(argument_sizes)

static void task_errors(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    pf_future *f1 = submit_i32(ex, task_fail, 7);
    pf_future *f2 = submit_i32(ex, task_return_code, -99);
    pf_future *f3 = submit_i32(ex, task_square, 1); /* wrong size: the task says so */
    const void *data = (void *)1;
    size_t len = 1;
    ASSERT_ERR(pf_future_result(f1, PF_FOREVER, &data, &len), PF_ETASK);
    ASSERT(data == NULL && len == 0);
    pf_error_info info;
    ASSERT_OK(pf_future_error(f1, &info));
    ASSERT_EQ(info.code, PF_ETASK);
    ASSERT_EQ(info.task_code, 42);
    ASSERT_STREQ(info.message, "bad input 7");
    ASSERT_ERR(pf_future_result(f2, PF_FOREVER, NULL, NULL), PF_ETASK);
    ASSERT_OK(pf_future_error(f2, &info));
    ASSERT_EQ(info.task_code, -99);
    ASSERT_STREQ(info.message, "task returned -99");
    ASSERT_ERR(pf_future_result(f3, PF_FOREVER, NULL, NULL), PF_ETASK);
    ASSERT_OK(pf_future_error(f3, &info));
    ASSERT_EQ(info.task_code, PF_EINVAL);
    ASSERT_STREQ(info.message, "want 8 bytes, got 4");
    pf_progress p;
    pf_executor_progress(ex, &p);
    ASSERT_EQ(p.failed, 3);
    pf_future_release(f1);
    pf_future_release(f2);
    pf_future_release(f3);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(task_errors)

static void take_hands_over_once(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    int64_t x = 12;
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_square, &x, sizeof x, &f));
    void *data;
    size_t len;
    ASSERT_OK(pf_future_take(f, PF_FOREVER, &data, &len));
    ASSERT_EQ(len, 8);
    ASSERT_EQ(*(int64_t *)data, 144);
    free(data);
    ASSERT_ERR(pf_future_take(f, PF_FOREVER, &data, &len), PF_EALREADY);
    ASSERT(data == NULL);
    ASSERT_ERR(pf_future_result(f, 0, NULL, NULL), PF_EALREADY);
    ASSERT_ERR(pf_future_take(f, 0, NULL, NULL), PF_EINVAL);
    pf_future_release(f);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(take_hands_over_once)

static void result_timeout(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    pf_future *f = submit_i32(ex, task_sleep_ms, 300);
    ASSERT_ERR(pf_future_result(f, 0.01, NULL, NULL), PF_ETIMEDOUT);
    ASSERT_ERR(pf_future_wait(f, 0), PF_ETIMEDOUT);
    ASSERT(!pf_future_done(f));
    ASSERT_OK(pf_future_wait(f, PF_FOREVER));
    ASSERT_EQ(result_i32(f), 300);
    pf_future_release(f);
    pf_executor_destroy(ex);
}
FOR_POOLS(result_timeout)

static int calls[8];
static void note_call(pf_future *f, void *user)
{
    ASSERT(pf_future_done(f));
    int i = (int)(intptr_t)user;
    /* Callbacks added before completion run in order, in the completing
     * thread.  One added after it runs at once in the adding thread, maybe
     * while those still run (as in Python): no order check for it. */
    for (int j = 0; j < i && i < 3; j++)
        ASSERT_EQ(calls[j], 1);
    calls[i]++;
}

static void callbacks(pf_kind kind)
{
    memset(calls, 0, sizeof calls);
    pf_executor *ex = make(kind, 1);
    pf_future *f = submit_i32(ex, task_sleep_ms, kind == PF_SEQUENTIAL ? 0 : 100);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(pf_future_add_done_callback(f, note_call, (void *)(intptr_t)i));
    ASSERT_OK(pf_future_wait(f, PF_FOREVER));
    /* added after done: runs now in this thread, or after the others on the
     * finishing thread if it still runs them */
    ASSERT_OK(pf_future_add_done_callback(f, note_call, (void *)(intptr_t)3));
    pf_executor_destroy(ex); /* the callbacks have run by the time the pool is gone */
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(calls[i], 1);
    ASSERT_ERR(pf_future_add_done_callback(f, NULL, NULL), PF_EINVAL);
    pf_future_release(f);
}
FOR_EACH_KIND(callbacks)

static void as_completed_order(pf_kind kind)
{
    pf_executor *ex = make(kind, 4);
    const int32_t ms[] = {400, 10, 200, 100};
    pf_future *fs[4];
    for (int i = 0; i < 4; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, ms[i]);
    pf_as_completed *ac;
    ASSERT_OK(pf_as_completed_create(&ac, fs, 4));
    for (int i = 0; i < 4; i++)
        pf_future_release(fs[i]); /* the set holds its own references */
    int32_t order[4];
    for (int i = 0; i < 4; i++) {
        pf_future *f;
        ASSERT_OK(pf_as_completed_next(ac, PF_FOREVER, &f));
        order[i] = result_i32(f);
    }
    pf_future *f = (pf_future *)1;
    ASSERT_ERR(pf_as_completed_next(ac, PF_FOREVER, &f), PF_EEOF);
    ASSERT(f == NULL);
    if (kind == PF_SEQUENTIAL) {
        for (int i = 0; i < 4; i++) /* finished in submission order */
            ASSERT_EQ(order[i], ms[i]);
    } else {
        ASSERT_EQ(order[0], 10);
        ASSERT_EQ(order[1], 100);
        ASSERT_EQ(order[2], 200);
        ASSERT_EQ(order[3], 400);
    }
    pf_as_completed_destroy(ac);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(as_completed_order)

static void as_completed_timeout_and_add(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    pf_future *slow = submit_i32(ex, task_sleep_ms, 300);
    pf_as_completed *ac;
    ASSERT_OK(pf_as_completed_create(&ac, &slow, 1));
    ASSERT_ERR(pf_as_completed_add(ac, slow), PF_EINVAL); /* already in */
    pf_future *got;
    ASSERT_ERR(pf_as_completed_next(ac, 0.02, &got), PF_ETIMEDOUT);
    pf_future *fast = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_OK(pf_as_completed_add(ac, fast));
    ASSERT_OK(pf_as_completed_next(ac, PF_FOREVER, &got));
    ASSERT(got == fast);
    ASSERT_OK(pf_as_completed_next(ac, PF_FOREVER, &got));
    ASSERT(got == slow);
    ASSERT_ERR(pf_as_completed_next(ac, 0, &got), PF_EEOF);
    pf_as_completed_destroy(ac);
    pf_future_release(slow);
    pf_future_release(fast);
    pf_executor_destroy(ex);
}
FOR_POOLS(as_completed_timeout_and_add)

static void wait_modes(pf_kind kind)
{
    pf_executor *ex = make(kind, 3);
    pf_future *fs[3];
    fs[0] = submit_i32(ex, task_sleep_ms, 400);
    fs[1] = submit_i32(ex, task_sleep_ms, 30);
    fs[2] = submit_i32(ex, task_fail, 1);
    size_t n_done = 99;
    ASSERT_OK(pf_wait(fs, 3, PF_FIRST_EXCEPTION, PF_FOREVER, &n_done));
    ASSERT(pf_future_done(fs[2]));
    ASSERT_GE(n_done, 1);
    ASSERT_OK(pf_wait(fs, 2, PF_FIRST_COMPLETED, PF_FOREVER, &n_done));
    ASSERT(pf_future_done(fs[1]));
    ASSERT_ERR(pf_wait(fs, 3, PF_ALL_COMPLETED, 0.01, &n_done), PF_ETIMEDOUT);
    ASSERT_EQ(n_done, 2);
    ASSERT_OK(pf_wait(fs, 3, PF_ALL_COMPLETED, PF_FOREVER, &n_done));
    ASSERT_EQ(n_done, 3);
    /* a future listed twice counts once */
    pf_future *twice[2] = {fs[0], fs[0]};
    ASSERT_OK(pf_wait(twice, 2, PF_ALL_COMPLETED, 0, &n_done));
    ASSERT_EQ(n_done, 1);
    ASSERT_OK(pf_wait(NULL, 0, PF_ALL_COMPLETED, 0, NULL));
    ASSERT_ERR(pf_wait(fs, 3, (pf_return_when)9, 0, NULL), PF_EINVAL);
    for (int i = 0; i < 3; i++)
        pf_future_release(fs[i]);
    pf_executor_destroy(ex);
}
FOR_POOLS(wait_modes)

static void cancel_pending(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    pf_future *busy = submit_i32(ex, task_sleep_ms, 300);
    char path[64];
    snprintf(path, sizeof path, "/tmp/pfor-test-cancel-%d", (int)getpid());
    unlink(path);
    pf_future *victim;
    ASSERT_OK(pf_submit(ex, task_touch, path, strlen(path) + 1, &victim));
    ASSERT_OK(pf_future_cancel(victim));
    ASSERT(pf_future_cancelled(victim));
    ASSERT_OK(pf_future_cancel(victim)); /* cancelled already: still yes */
    ASSERT_ERR(pf_future_result(victim, PF_FOREVER, NULL, NULL), PF_ECANCELLED);
    ASSERT_EQ(result_i32(busy), 300);
    ASSERT_ERR(pf_future_cancel(busy), PF_EBUSY); /* done */
    pf_executor_destroy(ex);
    ASSERT(access(path, F_OK) != 0); /* it never ran */
    pf_future_release(busy);
    pf_future_release(victim);
}
FOR_POOLS(cancel_pending)

static _Atomic int finalized;

static int init_counter(void **state, const void *arg, size_t len, int index)
{
    (void)index;
    ASSERT_EQ(len, sizeof(int));
    int *mine = malloc(sizeof *mine); /* one state per worker */
    *mine = *(const int *)arg;
    *state = mine;
    return 0;
}

static void fini_counter(void *state, int index)
{
    (void)index;
    ASSERT_EQ(*(int *)state, 77);
    free(state);
    finalized++;
}

static void initializer_state(pf_kind kind)
{
    int init_value = 77;
    pf_executor_opts o = {.max_workers = 2,
                          .initializer = init_counter,
                          .finalizer = fini_counter,
                          .init_arg = &init_value,
                          .init_arg_len = sizeof init_value};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    init_value = 0; /* copied at create */
    for (int i = 0; i < 8; i++) {
        pf_future *f;
        ASSERT_OK(pf_submit(ex, task_worker_info, NULL, 0, &f));
        const int32_t *out;
        size_t len;
        ASSERT_OK(pf_future_result(f, PF_FOREVER, (const void **)&out, &len));
        ASSERT_EQ(len, 8);
        ASSERT(out[0] >= 0 && out[0] < 2);
        ASSERT_EQ(out[1], 77);
        pf_future_release(f);
    }
    pf_executor_destroy(ex);
    /* Finalizers ran in this process for threads and the sequential
     * executor; a process worker's ran in that worker (it checked 77). */
    if (kind != PF_PROCESSES)
        ASSERT_GE(finalized, 1);
}
FOR_EACH_KIND(initializer_state)

static void initializer_failure(pf_kind kind)
{
    pf_executor_opts o = {.max_workers = 2, .initializer = init_fails};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    pf_future *f = NULL;
    int rc = pf_submit(ex, task_noop, NULL, 0, &f);
    if (rc == PF_OK) { /* the failure may not be known yet at submit */
        ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_EINITFAILED);
        pf_error_info info;
        ASSERT_OK(pf_future_error(f, &info));
        ASSERT_EQ(info.task_code, INIT_FAIL_CODE);
        char want[64];
        snprintf(want, sizeof want, "initializer returned %d", INIT_FAIL_CODE);
        ASSERT(strstr(info.message, want) != NULL);
        pf_future_release(f);
    } else {
        ASSERT_ERR(rc, PF_EINITFAILED);
    }
    /* once known, submits are refused */
    for (int i = 0; i < 200; i++) {
        rc = pf_submit(ex, task_noop, NULL, 0, &f);
        if (rc != PF_OK)
            break;
        ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_EINITFAILED);
        pf_future_release(f);
        pf_test_sleep_ms(5);
    }
    ASSERT_ERR(rc, PF_EINITFAILED);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(initializer_failure)

static void shutdown_rules(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    pf_future *first = submit_i32(ex, task_sleep_ms, kind == PF_SEQUENTIAL ? 0 : 200);
    pf_future *queued = submit_i32(ex, task_sleep_ms, 1);
    while (kind != PF_SEQUENTIAL && !pf_future_running(first))
        pf_test_sleep_ms(1); /* running tasks are not cancelled by shutdown */
    ASSERT_OK(pf_executor_shutdown(ex, false, true));
    pf_future *late = (pf_future *)1;
    ASSERT_ERR(pf_submit(ex, task_noop, NULL, 0, &late), PF_ESHUTDOWN);
    ASSERT(late == NULL);
    ASSERT_OK(pf_executor_shutdown(ex, true, false)); /* again, and wait */
    ASSERT_EQ(result_i32(first), kind == PF_SEQUENTIAL ? 0 : 200);
    if (kind == PF_SEQUENTIAL)
        ASSERT_EQ(result_i32(queued), 1); /* it ran inside pf_submit */
    else
        ASSERT_ERR(pf_future_result(queued, 0, NULL, NULL), PF_ECANCELLED);
    pf_executor_destroy(ex);
    /* futures outlive their executor */
    ASSERT(pf_future_done(first));
    pf_future_release(first);
    pf_future_release(queued);
}
FOR_EACH_KIND(shutdown_rules)

static void fire_and_forget(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    for (int i = 0; i < 100; i++)
        ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, NULL));
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    pf_progress p;
    ASSERT_OK(pf_executor_progress(ex, &p));
    ASSERT_EQ(p.done, 100);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(fire_and_forget)

static void submit_by_name(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    pf_future *f;
    int32_t ms = 3;
    ASSERT_OK(pf_submit_named(ex, "task_sleep_ms", &ms, sizeof ms, &f));
    ASSERT_EQ(result_i32(f), 3);
    pf_future_release(f);
    ASSERT_ERR(pf_submit_named(ex, "no_such_task", NULL, 0, &f), PF_ENOTREG);
    ASSERT(f == NULL);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(submit_by_name)

static void bad_input(pf_kind kind)
{
    pf_executor *ex = make(kind, 1);
    pf_future *f = (pf_future *)1;
    ASSERT_ERR(pf_submit(ex, NULL, NULL, 0, &f), PF_EINVAL);
    ASSERT(f == NULL);
    ASSERT_ERR(pf_submit(ex, task_noop, NULL, 5, &f), PF_EINVAL);
    ASSERT_ERR(pf_submit(NULL, task_noop, NULL, 0, &f), PF_EINVAL);
    pf_submit_opts so = {.timeout = NAN};
    ASSERT_ERR(pf_submit_ex(ex, task_noop, NULL, 0, &so, &f), PF_EINVAL);
    ASSERT_ERR(pf_future_result(NULL, 0, NULL, NULL), PF_EINVAL);
    ASSERT_ERR(pf_future_wait(NULL, 0), PF_EINVAL);
    ASSERT_ERR(pf_future_cancel(NULL), PF_EINVAL);
    ASSERT(!pf_future_done(NULL));
    pf_error_info info;
    ASSERT_ERR(pf_future_error(NULL, &info), PF_EINVAL);
    pf_future_release(NULL);
    ASSERT_ERR(pf_executor_progress(NULL, NULL), PF_EINVAL);
    ASSERT_ERR(pf_executor_shutdown(NULL, true, false), PF_EINVAL);
    pf_as_completed *ac = (pf_as_completed *)1;
    ASSERT_ERR(pf_as_completed_create(&ac, NULL, 3), PF_EINVAL);
    ASSERT(ac == NULL);
    pf_future *slow = submit_i32(ex, task_sleep_ms, kind == PF_SEQUENTIAL ? 0 : 500);
    pf_future *dup[2] = {slow, slow};
    ASSERT_ERR(pf_as_completed_create(&ac, dup, 2), PF_EINVAL);
    if (kind != PF_SEQUENTIAL)
        ASSERT_ERR(pf_future_error(slow, &info), PF_EBUSY); /* not done yet */
    pf_future_release(slow);
    pf_executor_destroy(ex);
    pf_executor_destroy(NULL);
}
FOR_EACH_KIND(bad_input)

TEST(executor_create_rejects_bad_options)
{
    pf_executor *ex = (pf_executor *)1;
    ASSERT_ERR(pf_executor_create(NULL, PF_THREADS, NULL), PF_EINVAL);
    ASSERT_ERR(pf_executor_create(&ex, (pf_kind)0, NULL), PF_EINVAL);
    ASSERT(ex == NULL);
    ASSERT_ERR(pf_executor_create(&ex, (pf_kind)77, NULL), PF_EINVAL);
    pf_executor_opts o = {.max_workers = 0}; /* no workers: an error, as in Python */
    ASSERT_ERR(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    ASSERT_ERR(pf_executor_create(&ex, PF_PROCESSES, &o), PF_EINVAL);
    o.max_workers = -2;
    ASSERT_ERR(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    o.max_workers = PF_MAX_WORKERS + 1;
    ASSERT_ERR(pf_executor_create(&ex, PF_PROCESSES, &o), PF_EINVAL);
    o.max_workers = 1 << 30;
    ASSERT_ERR(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    o = (pf_executor_opts){.max_workers = 1, .init_arg_len = 4}; /* NULL init_arg */
    ASSERT_ERR(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    o = (pf_executor_opts){.max_workers = 1, .task_timeout = -1};
    ASSERT_ERR(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    o = (pf_executor_opts){.max_workers = 1, .task_timeout = NAN};
    ASSERT_ERR(pf_executor_create(&ex, PF_PROCESSES, &o), PF_EINVAL);
    ASSERT(ex == NULL);
    /* the default, said two ways */
    o = PF_EXECUTOR_OPTS_DEFAULT;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    ASSERT_EQ(pf_executor_max_workers(ex), pf_default_workers(PF_THREADS));
    pf_executor_destroy(ex);
    o.max_workers = PF_DEFAULT_WORKERS;
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, &o));
    ASSERT_EQ(pf_executor_max_workers(ex), pf_default_workers(PF_PROCESSES));
    pf_executor_destroy(ex);
}

TEST(executor_defaults_follow_python)
{
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    ASSERT_EQ(pf_default_workers(PF_THREADS), cpus + 4 < 32 ? cpus + 4 : 32);
    ASSERT_EQ(pf_default_workers(PF_PROCESSES), cpus);
    ASSERT_EQ(pf_default_workers(PF_SEQUENTIAL), 1);
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, NULL));
    ASSERT_EQ(pf_executor_max_workers(ex), pf_default_workers(PF_THREADS));
    ASSERT_EQ(pf_executor_kind(ex), PF_THREADS);
    pf_executor_destroy(ex);
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, NULL));
    ASSERT_EQ(pf_executor_max_workers(ex), cpus);
    pf_executor_destroy(ex);
    pf_kind k;
    ASSERT_OK(pf_kind_parse("processes", &k));
    ASSERT_EQ(k, PF_PROCESSES);
    ASSERT_ERR(pf_kind_parse("gpu", &k), PF_EINVAL);
    ASSERT_STREQ(pf_kind_name(PF_THREADS), "threads");
}

/* --- thread pool: initializer failure and time limits against destroy ----- */

/* Polls *flag for up to `seconds` (scaled): whether it became non-zero.  A
 * hang in the library becomes a failed assertion, not a runner timeout. */
static bool wait_flag(_Atomic int *flag, double seconds)
{
    for (int ms = 0; ms < seconds * 1000 * pf_test_scale(); ms++) {
        if (atomic_load(flag))
            return true;
        pf_test_sleep_ms(1);
    }
    return atomic_load(flag) != 0;
}

/* The threads of this process (the runner's, a sanitizer's included). */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    ASSERT(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void *no_op_thread(void *arg)
{
    return arg;
}

/* The thread count before a pool starts.  One thread is started and joined
 * first: a sanitizer may start a helper thread of its own with the first. */
static int threads_baseline(void)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, no_op_thread, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    return count_threads();
}

/* Whether the threads a pool left behind have all gone within `seconds`. */
static bool threads_back_to(int n, double seconds)
{
    for (int ms = 0; ms < seconds * 1000 * pf_test_scale(); ms++) {
        if (count_threads() <= n)
            return true;
        pf_test_sleep_ms(1);
    }
    return false;
}

static _Atomic int init_go;

/* Fails, once the test says so and a moment later. */
static int init_fail_on_go(void **state, const void *arg, size_t len, int index)
{
    (void)state;
    (void)arg;
    (void)len;
    (void)index;
    while (!atomic_load(&init_go))
        pf_test_sleep_ms(1);
    pf_test_sleep_ms(2);
    return 9;
}

/* A submit checks `broken` up front, then copies its argument: a worker whose
 * initializer fails meanwhile empties the queue and leaves, and with
 * max_workers reached no thread would be left to run or fail a task queued
 * after that.  The pool must refuse it or fail it.  A 32 MiB argument makes
 * the copy outlast the failure. */
TEST(threads_submit_racing_initializer_failure_ends)
{
    const size_t big_len = 32u << 20;
    char *big = malloc(big_len);
    ASSERT(big != NULL);
    memset(big, 1, big_len);
    for (int round = 0; round < 3; round++) {
        atomic_store(&init_go, 0);
        pf_executor_opts o = {.max_workers = 1, .initializer = init_fail_on_go};
        pf_executor *ex;
        ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
        pf_future *first, *late = NULL;
        ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, &first)); /* starts the one worker */
        atomic_store(&init_go, 1);
        int rc = pf_submit(ex, task_noop, big, big_len, &late);
        if (rc == PF_OK) {
            if (pf_future_wait(late, 10 * pf_test_scale()) != PF_OK)
                FAIL("round %d: a task submitted as the initializer failed never finished", round);
            ASSERT_ERR(pf_future_result(late, 0, NULL, NULL), PF_EINITFAILED);
            pf_future_release(late);
        } else {
            ASSERT_ERR(rc, PF_EINITFAILED);
            ASSERT(late == NULL);
        }
        ASSERT_ERR(pf_future_result(first, 10 * pf_test_scale(), NULL, NULL), PF_EINITFAILED);
        pf_future_release(first);
        pf_executor_destroy(ex);
    }
    free(big);
}

static _Atomic int task_ended, task_saw_cancel, cb_checked, cb_saw_task_end, cb_shutdown_rc,
    cb_done;

static void reset_flags(void)
{
    atomic_store(&task_ended, 0);
    atomic_store(&task_saw_cancel, 0);
    atomic_store(&cb_checked, 0);
    atomic_store(&cb_saw_task_end, 0);
    atomic_store(&cb_shutdown_rc, 1);
    atomic_store(&cb_done, 0);
}

/* Sleeps its int32 milliseconds without looking at the cancel flag. */
static int task_sleep_then_note(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    ASSERT_EQ(len, sizeof(int32_t));
    pf_test_sleep_ms(*(const int32_t *)arg);
    atomic_store(&task_ended, 1);
    return 0;
}

/* Polls pf_task_cancelled() for up to 30 s. */
static int task_poll_cancel(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    for (int i = 0; i < 30000 && !pf_task_cancelled(t); i++)
        pf_test_sleep_ms(1);
    atomic_store(&task_saw_cancel, pf_task_cancelled(t));
    atomic_store(&task_ended, 1);
    return 0;
}

/* Done-callback of a timed-out future: it runs on the pool's watchdog. */
static void shutdown_and_destroy(pf_future *f, void *ex)
{
    ASSERT_ERR(pf_future_result(f, 0, NULL, NULL), PF_ETASKTIMEOUT);
    atomic_store(&cb_shutdown_rc, pf_executor_shutdown(ex, true, false));
    pf_executor_destroy(ex);
    atomic_store(&cb_done, 1);
}

/* A timed-out future's callbacks run on the watchdog thread, which must act
 * as a pool thread: shutdown(wait) answers PF_EBUSY, destroy returns. */
TEST(threads_timeout_callback_destroys_pool)
{
    reset_flags();
    int threads_before = threads_baseline();
    double limit = 0.1 * pf_test_scale();
    pf_executor_opts o = {.max_workers = 1, .task_timeout = limit};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_future *f = submit_i32(ex, task_sleep_then_note, (int32_t)(3000 * limit));
    ASSERT_OK(pf_future_add_done_callback(f, shutdown_and_destroy, ex));
    ASSERT_ERR(pf_future_result(f, 10 * pf_test_scale(), NULL, NULL), PF_ETASKTIMEOUT);
    if (!wait_flag(&cb_done, 10))
        FAIL("pf_executor_destroy() in a timeout's callback never returned");
    ASSERT_ERR(atomic_load(&cb_shutdown_rc), PF_EBUSY);
    pf_future_release(f);
    ASSERT(wait_flag(&task_ended, 10));
    if (!threads_back_to(threads_before, 10))
        FAIL("the pool's threads did not all leave: %d > %d", count_threads(), threads_before);
}

static _Atomic int outside_done, outside_rc;

static void destroy_in_callback(pf_future *f, void *ex)
{
    (void)f;
    pf_executor_destroy(ex);
    atomic_store(&cb_done, 1);
}

static void *outside_shutdown(void *ex)
{
    atomic_store(&outside_rc, pf_executor_shutdown(ex, true, false));
    atomic_store(&outside_done, 1);
    return NULL;
}

/* shutdown(wait) from outside is joining the pool's threads when a timed-out
 * task's callback, on the watchdog, destroys the pool: neither waits for the
 * other (the watchdog does not wait to join what the outside call joins),
 * and the outside call's pool stays alive until it returns. */
TEST(threads_outside_shutdown_racing_destroy_from_a_callback)
{
    reset_flags();
    atomic_store(&outside_done, 0);
    int threads_before = threads_baseline();
    pf_executor_opts o = {.max_workers = 2, .task_timeout = 0.05 * pf_test_scale()};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_wait_cancel, NULL, 0, &f));
    ASSERT_OK(pf_future_add_done_callback(f, destroy_in_callback, ex));
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, outside_shutdown, ex), 0); /* joins while the task runs */
    if (!wait_flag(&outside_done, 10))
        FAIL("shutdown(wait) and the callback's destroy wait for each other");
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_OK(atomic_load(&outside_rc));
    ASSERT(wait_flag(&cb_done, 10));
    ASSERT_ERR(pf_future_result(f, 0, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(f);
    if (!threads_back_to(threads_before, 10))
        FAIL("the pool's threads did not all leave: %d > %d", count_threads(), threads_before);
}

static void wait_task_then_destroy(pf_future *f, void *ex)
{
    (void)f;
    /* The task's flag is up before its callbacks run: it stops meanwhile. */
    atomic_store(&cb_saw_task_end, wait_flag(&task_ended, 2));
    atomic_store(&cb_checked, 1);
    pf_executor_destroy(ex);
    atomic_store(&cb_done, 1);
}

/* A timed-out task that stops at pf_task_cancelled() is flagged before its
 * future's callbacks run, so a callback that waits for it (destroy does)
 * does not wait forever. */
TEST(threads_timeout_flags_task_before_callbacks)
{
    reset_flags();
    int threads_before = threads_baseline();
    pf_executor_opts o = {.max_workers = 2, .task_timeout = 0.1 * pf_test_scale()};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_poll_cancel, NULL, 0, &f));
    ASSERT_OK(pf_future_add_done_callback(f, wait_task_then_destroy, ex));
    ASSERT_ERR(pf_future_result(f, 10 * pf_test_scale(), NULL, NULL), PF_ETASKTIMEOUT);
    ASSERT(wait_flag(&cb_checked, 10));
    if (!atomic_load(&cb_saw_task_end))
        FAIL("the timed-out task was not flagged cancelled while its callbacks ran");
    ASSERT(atomic_load(&task_saw_cancel));
    if (!wait_flag(&cb_done, 10))
        FAIL("pf_executor_destroy() in a timeout's callback never returned");
    pf_future_release(f);
    if (!threads_back_to(threads_before, 10))
        FAIL("the pool's threads did not all leave: %d > %d", count_threads(), threads_before);
}

static pf_executor *own_pool;
static _Atomic int destroy_go;

/* Destroys the pool it runs on, once the test says so. */
static int task_destroy_own_pool(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    ASSERT(wait_flag(&destroy_go, 10));
    pf_executor_destroy(own_pool);
    return 0;
}

/* A task may destroy its own pool; the watchdog of a pool with a time limit
 * must not hold that up (it waits for the very task that destroys). */
TEST(threads_task_destroys_pool_with_time_limit)
{
    int threads_before = threads_baseline();
    atomic_store(&destroy_go, 1);
    pf_executor_opts o = {.max_workers = 2, .task_timeout = 60};
    ASSERT_OK(pf_executor_create(&own_pool, PF_THREADS, &o));
    pf_future *f;
    ASSERT_OK(pf_submit(own_pool, task_destroy_own_pool, NULL, 0, &f));
    if (pf_future_wait(f, 10 * pf_test_scale()) != PF_OK)
        FAIL("pf_executor_destroy() from a task of a pool with a time limit never returned");
    ASSERT_OK(pf_future_result(f, 0, NULL, NULL));
    pf_future_release(f);
    if (!threads_back_to(threads_before, 10))
        FAIL("the pool's threads did not all leave: %d > %d", count_threads(), threads_before);
}

/* After a task destroyed its pool, the queued tasks still run, with their
 * limits enforced by a watchdog that nobody is left to join: it must leave
 * on its own once they are done. */
TEST(threads_task_destroys_pool_then_queued_task_times_out)
{
    reset_flags();
    int threads_before = threads_baseline();
    atomic_store(&destroy_go, 0);
    pf_executor_opts o = {.max_workers = 1};
    ASSERT_OK(pf_executor_create(&own_pool, PF_THREADS, &o));
    pf_future *first, *queued;
    ASSERT_OK(pf_submit(own_pool, task_destroy_own_pool, NULL, 0, &first));
    pf_submit_opts so = {.timeout = 0.1 * pf_test_scale()};
    ASSERT_OK(pf_submit_ex(own_pool, task_poll_cancel, NULL, 0, &so, &queued));
    atomic_store(&destroy_go, 1);
    ASSERT_OK(pf_future_result(first, 10 * pf_test_scale(), NULL, NULL));
    ASSERT_ERR(pf_future_result(queued, 10 * pf_test_scale(), NULL, NULL), PF_ETASKTIMEOUT);
    ASSERT(wait_flag(&task_ended, 10));
    ASSERT(atomic_load(&task_saw_cancel));
    pf_future_release(first);
    pf_future_release(queued);
    if (!threads_back_to(threads_before, 10))
        FAIL("the pool's threads did not all leave: %d > %d", count_threads(), threads_before);
}

/* --- as_completed with several consumers ---------------------------------- */

static pf_as_completed *shared_ac;

struct consumer {
    pthread_t th;
    int rc;
    pf_future *got;
};

static void *consume_one(void *arg)
{
    struct consumer *c = arg;
    c->rc = pf_as_completed_next(shared_ac, 30 * pf_test_scale(), &c->got);
    return NULL;
}

/* Two threads wait in as_completed_next on a set whose one future is still
 * pending; a future that is done already is added.  One consumer gets it;
 * the other must go on waiting for the pending one, not answer PF_EEOF from
 * the count of futures it read before the add. */
TEST(as_completed_next_sees_futures_added_while_it_waits)
{
    pf_executor *ex = make(PF_THREADS, 1);
    pf_executor *seq = make(PF_SEQUENTIAL, 1);
    pf_future *pending = submit_i32(ex, task_wait_cancel, 0);
    ASSERT_OK(pf_as_completed_create(&shared_ac, &pending, 1));
    struct consumer c[2] = {{.rc = 1}, {.rc = 1}};
    for (int i = 0; i < 2; i++)
        ASSERT_OK(pthread_create(&c[i].th, NULL, consume_one, &c[i]));
    pf_test_sleep_ms(100); /* both are asleep in next() (if not, it passes anyway) */
    pf_future *done = submit_i32(seq, task_sleep_ms, 0); /* ran inside pf_submit */
    ASSERT_OK(pf_as_completed_add(shared_ac, done));
    pf_test_sleep_ms(50); /* the consumer that did not get `done` looks again */
    ASSERT_ERR(pf_future_cancel(pending), PF_EBUSY); /* running: flagged, it returns */
    for (int i = 0; i < 2; i++)
        ASSERT_OK(pthread_join(c[i].th, NULL));
    for (int i = 0; i < 2; i++)
        if (c[i].rc != PF_OK)
            FAIL("consumer %d: %s while a future had not come out", i, pf_err_name(c[i].rc));
    ASSERT((c[0].got == done && c[1].got == pending) || (c[0].got == pending && c[1].got == done));
    pf_future *none;
    ASSERT_ERR(pf_as_completed_next(shared_ac, 0, &none), PF_EEOF);
    pf_as_completed_destroy(shared_ac);
    pf_future_release(pending);
    pf_future_release(done);
    pf_executor_destroy(ex);
    pf_executor_destroy(seq);
}

/* --- cancel while shutdown(cancel_futures) cancels the queue -------------- */

static _Atomic int cancel_in_cb_rc = 1;

/* Done-callback of the first queued future: shutdown(cancel_futures) runs it
 * in the middle of cancelling the queue; the second future is then still
 * pending, and bound to end cancelled. */
static void cancel_next_in_cb(pf_future *f, void *next)
{
    ASSERT(pf_future_cancelled(f));
    atomic_store(&cancel_in_cb_rc, pf_future_cancel(next));
}

/* pf_future_cancel of a pending future says 0 ("now cancelled") when it ends
 * cancelled, even if shutdown(cancel_futures) is cancelling it meanwhile. */
TEST(threads_cancel_racing_shutdown_cancel_futures_says_cancelled)
{
    pf_executor *ex = make(PF_THREADS, 1);
    pf_future *busy = submit_i32(ex, task_wait_cancel, 0);
    while (!pf_future_running(busy))
        pf_test_sleep_ms(1);
    pf_future *a = submit_i32(ex, task_noop, 0), *b = submit_i32(ex, task_noop, 0);
    ASSERT_OK(pf_future_add_done_callback(a, cancel_next_in_cb, b));
    ASSERT_OK(pf_executor_shutdown(ex, false, true)); /* runs a's callback here */
    ASSERT(pf_future_cancelled(a));
    ASSERT(pf_future_cancelled(b));
    ASSERT_ERR(atomic_load(&cancel_in_cb_rc), PF_OK);
    ASSERT_ERR(pf_future_cancel(busy), PF_EBUSY); /* running: flagged */
    ASSERT_EQ(result_i32(busy), 1);
    pf_executor_destroy(ex);
    pf_future_release(a);
    pf_future_release(b);
    pf_future_release(busy);
}

/* --- progress snapshots --------------------------------------------------- */

static pf_executor *progress_ex;
static _Atomic int progress_stop;
static _Atomic long progress_bad;

static void *poll_progress(void *arg)
{
    (void)arg;
    while (!atomic_load(&progress_stop)) {
        pf_progress p;
        ASSERT_OK(pf_executor_progress(progress_ex, &p));
        if (p.done > p.submitted || p.failed + p.cancelled > p.done)
            atomic_fetch_add(&progress_bad, 1);
    }
    return NULL;
}

/* failed and cancelled are "of done": a snapshot taken while tasks fail
 * never shows more failures than finished tasks. */
TEST(threads_progress_snapshot_counts_failures_among_done)
{
    progress_ex = make(PF_THREADS, 2);
    atomic_store(&progress_stop, 0);
    atomic_store(&progress_bad, 0);
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, poll_progress, NULL));
    long n = (long)(100000 / pf_test_scale());
    for (long i = 0; i < n; i++)
        ASSERT_OK(pf_submit(progress_ex, task_return_code, &(int32_t){3}, 4, NULL));
    ASSERT_OK(pf_executor_shutdown(progress_ex, true, false));
    atomic_store(&progress_stop, 1);
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(atomic_load(&progress_bad), 0);
    pf_progress p;
    ASSERT_OK(pf_executor_progress(progress_ex, &p));
    ASSERT_EQ(p.done, n);
    ASSERT_EQ(p.failed, n);
    pf_executor_destroy(progress_ex);
}
