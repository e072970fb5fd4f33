/*
 * Dicts with executors: a shared dict written by tasks of every kind (the
 * article's section 4), and combining returned pairs at the end (section 5).
 */
#include <stdio.h>
#include <unistd.h>

#include "tasks.h"

static pf_executor *make(pf_kind kind, int workers)
{
    pf_executor *ex;
    pf_executor_opts o = {.max_workers = workers};
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    return ex;
}

/* --- a shared dict passed to tasks by reference -------------------------- */

struct shared_arg {
    pf_dict_ref ref;
    int32_t request;
};

/* d[request] = 201, and d["count"] += 1 */
static int task_store_status(pf_task *t, const void *arg, size_t len)
{
    if (len != sizeof(struct shared_arg))
        return pf_task_fail(t, PF_EINVAL, "bad argument");
    const struct shared_arg *a = arg;
    pf_dict *d;
    int rc = pf_dict_from_ref(&d, &a->ref);
    if (rc)
        return pf_task_fail(t, rc, "from_ref: %s", pf_strerror(rc));
    char key[16];
    snprintf(key, sizeof key, "%d", (int)a->request);
    rc = pf_dict_set_i64(d, key, strlen(key), 201);
    if (rc == PF_OK)
        rc = pf_dict_incr(d, PF_DICT_STR("count"), 1, NULL);
    pf_dict_close(d);
    return rc ? pf_task_fail(t, rc, "dict: %s", pf_strerror(rc)) : 0;
}

static void shared_dict_from_tasks(pf_kind kind, bool dict_first)
{
    enum { N = 400 };
    char name[64];
    snprintf(name, sizeof name, "exec-%d-%d", (int)getpid(), (int)kind);
    pf_dict *d = NULL;
    pf_executor *ex;
    if (dict_first) /* created before the pool: inherited by no one, opened by name */
        ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    ex = make(kind, 2);
    if (!dict_first) /* created after the workers exist */
        ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    struct shared_arg a;
    ASSERT_OK(pf_dict_ref_get(d, &a.ref));
    for (int i = 0; i < N; i++) {
        a.request = i;
        ASSERT_OK(pf_submit(ex, task_store_status, &a, sizeof a, NULL));
    }
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    pf_progress p;
    pf_executor_progress(ex, &p);
    ASSERT_EQ(p.failed, 0);
    pf_executor_destroy(ex);
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, N + 1);
    int64_t count, status;
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("count"), &count));
    ASSERT_EQ(count, N); /* no lost update */
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("399"), &status));
    ASSERT_EQ(status, 201);
    ASSERT_OK(pf_dict_check(d, NULL, 0));
    pf_dict_close(d);
}

TEST(shared_dict_from_process_pool_created_before)
{
    shared_dict_from_tasks(PF_PROCESSES, true);
}
TEST(shared_dict_from_process_pool_created_after)
{
    shared_dict_from_tasks(PF_PROCESSES, false);
}
TEST(shared_dict_from_thread_pool)
{
    shared_dict_from_tasks(PF_THREADS, false);
}
TEST(shared_dict_from_sequential)
{
    shared_dict_from_tasks(PF_SEQUENTIAL, false);
}

TEST(local_dict_ref_works_on_threads_not_processes)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_open_local(&d, NULL));
    struct shared_arg a = {.request = 7};
    ASSERT_OK(pf_dict_ref_get(d, &a.ref));
    pf_executor *ex = make(PF_THREADS, 2);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_store_status, &a, sizeof a, &f));
    ASSERT_OK(pf_future_result(f, PF_FOREVER, NULL, NULL));
    pf_future_release(f);
    pf_executor_destroy(ex);
    ex = make(PF_PROCESSES, 1);
    ASSERT_OK(pf_submit(ex, task_store_status, &a, sizeof a, &f));
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASK);
    pf_error_info info;
    pf_future_error(f, &info);
    ASSERT_EQ(info.task_code, PF_ENOTSUP); /* a local dict cannot cross processes */
    pf_future_release(f);
    pf_executor_destroy(ex);
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 2);
    pf_dict_close(d);
}

/* --- combining at the end ------------------------------------------------ */

/* key: the residue of x modulo 10 as text; value: x as decimal text */
static int task_pair_mod10(pf_task *t, const void *arg, size_t len)
{
    int32_t x;
    if (len != sizeof x)
        return pf_task_fail(t, PF_EINVAL, "bad argument");
    memcpy(&x, arg, sizeof x);
    if (x == 13)
        return pf_task_fail(t, 13, "unlucky");
    char key[8], val[16];
    snprintf(key, sizeof key, "%d", (int)(x % 10));
    snprintf(val, sizeof val, "%d", (int)x);
    return pf_task_return_pair(t, key, strlen(key), val, strlen(val));
}
PF_REGISTER(task_pair_mod10)

static void combine_rules(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    enum { N = 100 };
    int32_t in[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    int64_t v;
    pf_dict *d;

    ASSERT_OK(pf_dict_open_local(&d, NULL));
    /* one task fails (13): its pair is missing, the rest merge */
    ASSERT_ERR(pf_dict_combine(d, ex, task_pair_mod10, in, N, sizeof *in, PF_COMBINE_LAST, NULL),
               PF_ETASK);
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("3"), &v));
    ASSERT_EQ(v, 93); /* input order: the last one wins, whoever finished last */
    pf_dict_close(d);

    ASSERT_OK(pf_dict_open_local(&d, NULL));
    pf_dict_combine(d, ex, task_pair_mod10, in, N, sizeof *in, PF_COMBINE_FIRST, NULL);
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("3"), &v));
    ASSERT_EQ(v, 3);
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("0"), &v));
    ASSERT_EQ(v, 0);
    pf_dict_close(d);

    ASSERT_OK(pf_dict_open_local(&d, NULL));
    pf_dict_combine(d, ex, task_pair_mod10, in, N, sizeof *in, PF_COMBINE_SUM, NULL);
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("3"), &v));
    ASSERT_EQ(v, 3 + 23 + 33 + 43 + 53 + 63 + 73 + 83 + 93); /* 13 failed */
    pf_dict_close(d);

    ASSERT_OK(pf_dict_open_local(&d, NULL));
    ASSERT_ERR(pf_dict_combine(d, ex, task_pair_mod10, in, N, sizeof *in, PF_COMBINE_ERROR, NULL),
               PF_EEXIST);
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 10); /* stopped at the first duplicate (x = 10) */
    pf_dict_close(d);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(combine_rules)

/* A worker-local dict, returned whole: ten entries per task. */
static int task_return_local_dict(pf_task *t, const void *arg, size_t len)
{
    int32_t x;
    memcpy(&x, arg, sizeof x);
    (void)len;
    pf_dict *local;
    int rc = pf_dict_open_local(&local, NULL);
    for (int i = 0; i < 10 && rc == PF_OK; i++) {
        char key[32];
        snprintf(key, sizeof key, "%d.%d", (int)x, i);
        rc = pf_dict_set_i64(local, key, strlen(key), x * 10 + i);
    }
    if (rc == PF_OK)
        rc = pf_task_return_dict(t, local);
    pf_dict_close(local);
    return rc;
}
PF_REGISTER(task_return_local_dict)

/* Twenty integer values and one that is not. */
static int task_return_mixed_dict(pf_task *t, const void *arg, size_t len)
{
    (void)arg, (void)len;
    pf_dict *local;
    int rc = pf_dict_open_local(&local, NULL);
    for (int i = 0; i < 20 && rc == PF_OK; i++) {
        char key[32];
        snprintf(key, sizeof key, "n%d", i);
        rc = pf_dict_set_i64(local, key, strlen(key), i);
    }
    if (rc == PF_OK)
        rc = pf_dict_set_str(local, "not-a-number", "x");
    if (rc == PF_OK)
        rc = pf_task_return_dict(t, local);
    pf_dict_close(local);
    return rc;
}
PF_REGISTER(task_return_mixed_dict)

static void combine_local_dicts_and_futures(pf_kind kind)
{
    pf_executor *ex = make(kind, 2);
    pf_dict *d;
    char name[64];
    snprintf(name, sizeof name, "combine-%d-%d", (int)getpid(), (int)kind);
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL)); /* any backend can be the target */
    enum { N = 20 };
    pf_future *fs[N];
    for (int32_t i = 0; i < N; i++)
        ASSERT_OK(pf_submit(ex, task_return_local_dict, &i, sizeof i, &fs[i]));
    for (int i = 0; i < N; i++) { /* the article's loop over futures + update */
        ASSERT_OK(pf_dict_merge_result(d, fs[i], PF_COMBINE_LAST));
        pf_future_release(fs[i]);
    }
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, N * 10);
    int64_t v;
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("19.9"), &v));
    ASSERT_EQ(v, 199);
    /* a result that is not pairs */
    int32_t ms = 1;
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_sleep_ms, &ms, sizeof ms, &f));
    ASSERT_ERR(pf_dict_merge_result(d, f, PF_COMBINE_LAST), PF_EPROTO);
    ASSERT_ERR(pf_dict_merge_result(d, f, (pf_combine_rule)9), PF_EINVAL);
    ASSERT_ERR(pf_dict_merge_result(NULL, f, PF_COMBINE_LAST), PF_EINVAL);
    pf_future_release(f);
    /* a result one of whose values cannot be summed changes nothing (whatever
     * order its pairs come in) */
    pf_dict *sums;
    ASSERT_OK(pf_dict_open_local(&sums, NULL));
    ASSERT_OK(pf_submit(ex, task_return_mixed_dict, NULL, 0, &f));
    ASSERT_ERR(pf_dict_merge_result(sums, f, PF_COMBINE_SUM), PF_EINVAL);
    ASSERT_OK(pf_dict_len(sums, &len));
    ASSERT_EQ(len, 0);
    ASSERT_OK(pf_dict_merge_result(sums, f, PF_COMBINE_LAST)); /* the same pairs, no sum */
    ASSERT_OK(pf_dict_len(sums, &len));
    ASSERT_EQ(len, 21);
    pf_future_release(f);
    pf_dict_close(sums);
    pf_dict_close(d);
    pf_executor_destroy(ex);
}
FOR_EACH_KIND(combine_local_dicts_and_futures)

/* --- workers killed while they write ------------------------------------ */

#include <pthread.h>
#include <signal.h>

enum { CHAOS_INCRS = 3000 };

/* Record this worker's pid, then CHAOS_INCRS increments spread over keys. */
static int task_chaos(pf_task *t, const void *arg, size_t len)
{
    if (len != sizeof(struct shared_arg))
        return pf_task_fail(t, PF_EINVAL, "bad argument");
    const struct shared_arg *a = arg;
    pf_dict *d;
    int rc = pf_dict_from_ref(&d, &a->ref);
    if (rc)
        return pf_task_fail(t, rc, "from_ref");
    char key[32];
    snprintf(key, sizeof key, "pid%d", pf_task_worker_index(t));
    rc = pf_dict_set_i64(d, key, strlen(key), getpid());
    for (int i = 0; i < CHAOS_INCRS && rc == PF_OK; i++) {
        snprintf(key, sizeof key, "k%d", (int)((a->request * 7919 + i) % 64));
        rc = pf_dict_incr(d, key, strlen(key), 1, NULL);
        if (rc == PF_OK)
            rc = pf_dict_incr(d, PF_DICT_STR("total"), 1, NULL);
    }
    pf_dict_close(d);
    return rc ? pf_task_fail(t, rc, "dict: %s", pf_strerror(rc)) : 0;
}

struct killer {
    pf_dict *d;
    _Atomic int stop;
    int kills;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    unsigned seed = 12345;
    while (!k->stop) {
        pf_test_sleep_ms(1 + (int)(rand_r(&seed) % 4));
        char key[16];
        snprintf(key, sizeof key, "pid%d", (int)(rand_r(&seed) % 2));
        int64_t pid;
        if (pf_dict_get_i64(k->d, key, strlen(key), &pid) == PF_OK && pid > 0 &&
            kill((pid_t)pid, SIGKILL) == 0)
            k->kills++;
    }
    return NULL;
}

TEST(process_pool_workers_killed_while_writing_leave_the_dict_whole)
{
    char name[64];
    snprintf(name, sizeof name, "chaos-pool-%d", (int)getpid());
    pf_executor *ex = make(PF_PROCESSES, 2); /* before the killer thread: the fork rule */
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    struct killer k = {.d = d};
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, killer_main, &k));
    enum { N = 300 };
    pf_future *fs[N];
    struct shared_arg a;
    ASSERT_OK(pf_dict_ref_get(d, &a.ref));
    for (int i = 0; i < N; i++) {
        a.request = i;
        ASSERT_OK(pf_submit(ex, task_chaos, &a, sizeof a, &fs[i]));
    }
    int ok = 0, died = 0;
    for (int i = 0; i < N; i++) {
        int rc = pf_future_result(fs[i], PF_FOREVER, NULL, NULL);
        if (rc == PF_OK)
            ok++;
        else if (rc == PF_EWORKERDIED)
            died++;
        else
            FAIL("task %d: %s", i, pf_err_name(rc));
        pf_future_release(fs[i]);
    }
    k.stop = 1;
    pthread_join(th, NULL);
    pf_executor_destroy(ex);
    ASSERT_EQ(ok + died, N);
    char msg[256];
    if (pf_dict_check(d, msg, sizeof msg) != PF_OK)
        FAIL("dict damaged after %d kills: %s", k.kills, msg);
    int64_t total, sum = 0;
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("total"), &total));
    for (int i = 0; i < 64; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        int64_t v = 0;
        pf_dict_get_i64(d, key, strlen(key), &v);
        sum += v;
    }
    /* every finished task's increments are there; a killed one left 0..all */
    ASSERT_GE(total, (int64_t)ok * CHAOS_INCRS);
    ASSERT_LE(total, (int64_t)(ok + died) * CHAOS_INCRS);
    /* each key increment comes before its total increment: a kill between
     * the two leaves the keys one ahead, at most once per killed task */
    ASSERT_GE(sum, total);
    ASSERT_LE(sum - total, died);
    ASSERT_GE(died, 1); /* the test did kill workers mid-task */
    /* no lock is left held: every stripe still takes writes */
    for (int i = 0; i < 64; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        ASSERT_OK(pf_dict_incr(d, key, strlen(key), 1, NULL));
    }
    pf_dict_close(d);
}
