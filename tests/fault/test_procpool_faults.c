/*
 * The process pool under faults: dying workers, overrunning tasks, killed
 * parents, Ctrl-C, recycling, retries, and forks from threaded programs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/tasks.h"

static pf_executor *pool(int workers, const pf_executor_opts *extra)
{
    pf_executor_opts o = extra ? *extra : (pf_executor_opts){0};
    o.max_workers = workers;
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, &o));
    return ex;
}

/* Alive and not a zombie (orphans become the test runner's zombies). */
static bool pid_alive(int pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z';
}

/* Each way a worker can die fails only the task it ran, with the details. */
static void crash_kind(int kind, int want_signal, int want_exit)
{
    pf_executor *ex = pool(2, NULL);
    enum { N = 40 };
    pf_future *before[N], *after[N];
    for (int i = 0; i < N; i++)
        before[i] = submit_i32(ex, task_sleep_ms, 1);
    pf_future *victim = submit_i32(ex, task_crash, kind);
    for (int i = 0; i < N; i++)
        after[i] = submit_i32(ex, task_sleep_ms, 2);
    ASSERT_ERR(pf_future_result(victim, PF_FOREVER, NULL, NULL), PF_EWORKERDIED);
    pf_error_info info;
    ASSERT_OK(pf_future_error(victim, &info));
    ASSERT_EQ(info.code, PF_EWORKERDIED);
    ASSERT_EQ(info.signal, want_signal);
    ASSERT_EQ(info.exit_status, want_exit);
    ASSERT(info.pid > 0);
    ASSERT(info.worker_index == 0 || info.worker_index == 1);
    ASSERT(strstr(info.message, "worker") != NULL);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(result_i32(before[i]), 1);
        ASSERT_EQ(result_i32(after[i]), 2);
        pf_future_release(before[i]);
        pf_future_release(after[i]);
    }
    /* The dead worker was replaced: the pool still runs on two workers. */
    pf_future *a = submit_i32(ex, task_sleep_ms, 100), *b = submit_i32(ex, task_sleep_ms, 100);
    ASSERT_EQ(result_i32(a) + result_i32(b), 200);
    pf_future_release(a);
    pf_future_release(b);
    pf_future_release(victim);
    pf_executor_destroy(ex);
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

TEST(worker_segfault_fails_only_its_task)
{
    crash_kind(CRASH_SEGV, SIGSEGV, -1);
}

TEST(worker_abort_fails_only_its_task)
{
    crash_kind(CRASH_ABORT, SIGABRT, -1);
}

TEST(worker_exit_fails_only_its_task)
{
    crash_kind(CRASH_EXIT7, 0, 7);
}

TEST(worker_sigkill_fails_only_its_task)
{
    crash_kind(CRASH_SIGKILL, SIGKILL, -1);
}

TEST(worker_killed_from_outside)
{
    pf_executor *ex = pool(2, NULL);
    /* Learn a worker's pid, then kill it while it sleeps in a task. */
    pf_future *who = submit_i32(ex, task_getpid, 0);
    int pid = result_i32(who);
    pf_future_release(who);
    ASSERT(pid != getpid());
    pf_future *sleepers[4];
    for (int i = 0; i < 4; i++)
        sleepers[i] = submit_i32(ex, task_sleep_ms, 300);
    pf_test_sleep_ms(100);
    ASSERT_OK(kill(pid, SIGKILL));
    int died = 0, fine = 0;
    for (int i = 0; i < 4; i++) {
        const void *d;
        int rc = pf_future_result(sleepers[i], PF_FOREVER, &d, NULL);
        if (rc == PF_EWORKERDIED) {
            pf_error_info info;
            pf_future_error(sleepers[i], &info);
            ASSERT_EQ(info.pid, pid);
            ASSERT_EQ(info.signal, SIGKILL);
            died++;
        } else {
            ASSERT_OK(rc);
            fine++;
        }
        pf_future_release(sleepers[i]);
    }
    ASSERT_EQ(died, 1);
    ASSERT_EQ(fine, 3);
    pf_executor_destroy(ex);
}

/* Deadlines of tasks claimed while the collector checks or falls asleep:
 * a burst of overrunning timed tasks between quick ones.  A deadline the
 * collector missed would let its task finish normally after 1 s. */
TEST(every_timed_task_is_stopped_at_its_deadline)
{
    pf_executor *ex = pool(2, NULL);
    pf_submit_opts so = {.timeout = 0.02};
    enum { N = 24 };
    pf_future *slow[N], *quick[N];
    int32_t ms = 1000;
    for (int i = 0; i < N; i++) {
        ASSERT_OK(pf_submit_ex(ex, task_sleep_ms, &ms, sizeof ms, &so, &slow[i]));
        quick[i] = submit_i32(ex, task_sleep_ms, i % 3);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_ERR(pf_future_result(slow[i], PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
        ASSERT_EQ(result_i32(quick[i]), i % 3);
        pf_future_release(slow[i]);
        pf_future_release(quick[i]);
    }
    pf_executor_destroy(ex);
}

TEST(task_timeout_kills_only_that_worker)
{
    pf_executor *ex = pool(2, NULL);
    pf_submit_opts so = {.timeout = 0.2};
    int32_t ms = 20000;
    pf_future *slow;
    ASSERT_OK(pf_submit_ex(ex, task_sleep_ms, &ms, sizeof ms, &so, &slow));
    pf_future *ok[10];
    for (int i = 0; i < 10; i++)
        ok[i] = submit_i32(ex, task_sleep_ms, 30);
    ASSERT_ERR(pf_future_result(slow, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    pf_error_info info;
    ASSERT_OK(pf_future_error(slow, &info));
    ASSERT_EQ(info.signal, SIGKILL);
    ASSERT(info.pid > 0);
    ASSERT(strstr(info.message, "time limit") != NULL);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(result_i32(ok[i]), 30);
        pf_future_release(ok[i]);
    }
    /* executor-wide limit: every task gets it */
    pf_future_release(slow);
    pf_executor_destroy(ex);

    pf_executor_opts o = {.task_timeout = 0.1};
    ex = pool(1, &o);
    pf_future *f = submit_i32(ex, task_sleep_ms, 20000);
    pf_future *g = submit_i32(ex, task_sleep_ms, 5);
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    ASSERT_EQ(result_i32(g), 5);
    pf_future_release(f);
    pf_future_release(g);
    pf_executor_destroy(ex);
}

TEST(cancel_running_task_kills_and_replaces_worker)
{
    pf_executor *ex = pool(1, NULL);
    pf_future *running = submit_i32(ex, task_sleep_ms, 20000);
    while (!pf_future_running(running))
        pf_test_sleep_ms(1);
    ASSERT_OK(pf_future_cancel(running));
    ASSERT(pf_future_cancelled(running));
    ASSERT_ERR(pf_future_result(running, 0, NULL, NULL), PF_ECANCELLED);
    /* the pool goes on with a new worker */
    pf_future *next = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_EQ(result_i32(next), 1);
    pf_future_release(next);
    pf_future_release(running);
    pf_executor_destroy(ex);
}

TEST(threads_cannot_kill_but_flag_and_time_out)
{
    pf_executor_opts o = {.max_workers = 1};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_THREADS, &o));
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_wait_cancel, NULL, 0, &f));
    while (!pf_future_running(f))
        pf_test_sleep_ms(1);
    ASSERT_ERR(pf_future_cancel(f), PF_EBUSY); /* running threads cannot be stopped */
    /* ... but the task saw the request and returned early */
    int32_t saw = result_i32(f);
    ASSERT_EQ(saw, 1);
    pf_future_release(f);

    pf_submit_opts so = {.timeout = 0.05};
    ASSERT_OK(pf_submit_ex(ex, task_wait_cancel, NULL, 0, &so, &f));
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(f);
    pf_executor_destroy(ex);
}

TEST(max_tasks_per_child_recycles_without_hanging)
{
    pf_executor_opts o = {.max_tasks_per_child = 1};
    pf_executor *ex = pool(2, &o);
    enum { N = 30 };
    pf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit_i32(ex, task_getpid, 0);
    int pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = result_i32(fs[i]);
        pf_future_release(fs[i]);
    }
    for (int i = 0; i < N; i++) /* each worker ran exactly one task */
        for (int j = i + 1; j < N; j++)
            ASSERT_NE(pids[i], pids[j]);
    pf_executor_destroy(ex);

    o.max_tasks_per_child = 3;
    ex = pool(2, &o);
    for (int i = 0; i < N; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, 1);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(result_i32(fs[i]), 1);
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
}

/* Crashes the first time (no marker file), succeeds the second. */
static int task_crash_once(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)len;
    int fd = open(arg, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        raise(SIGKILL);
    }
    return 0;
}

TEST(retries_rerun_a_task_whose_worker_died)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/pfor-test-retry-%d", (int)getpid());
    unlink(path);
    pf_executor_opts o = {.max_retries = 1};
    pf_executor *ex = pool(1, &o);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_crash_once, path, strlen(path) + 1, &f));
    ASSERT_OK(pf_future_result(f, PF_FOREVER, NULL, NULL));
    pf_future_release(f);
    unlink(path);
    /* without retries it fails */
    pf_submit_opts so = {.max_retries = -1};
    ASSERT_OK(pf_submit_ex(ex, task_crash_once, path, strlen(path) + 1, &so, &f));
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_EWORKERDIED);
    pf_future_release(f);
    unlink(path);
    pf_executor_destroy(ex);
}

static int crashing_init(void **state, const void *arg, size_t len, int index)
{
    (void)state;
    (void)arg;
    (void)len;
    (void)index;
    raise(SIGSEGV);
    return 0;
}

TEST(crashing_initializer_breaks_the_pool_instead_of_looping)
{
    pf_executor_opts o = {.initializer = crashing_init};
    pf_executor *ex = pool(2, &o);
    pf_future *f;
    int rc = pf_submit(ex, task_noop, NULL, 0, &f);
    if (rc == PF_OK) {
        ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_EINITFAILED);
        pf_error_info info;
        pf_future_error(f, &info);
        ASSERT(strstr(info.message, "signal 11") != NULL);
        pf_future_release(f);
    } else {
        ASSERT_ERR(rc, PF_EINITFAILED);
    }
    pf_executor_destroy(ex);
}

/* A child process that runs a pool of `workers` sleeping tasks and writes
 * the worker pids to `fd`, then waits to be killed. */
static void child_with_pool(int fd, int workers)
{
    pf_executor_opts o = {.max_workers = workers};
    pf_executor *ex;
    if (pf_executor_create(&ex, PF_PROCESSES, &o) != 0)
        _exit(10);
    pf_future *fs[16];
    for (int i = 0; i < workers; i++)
        pf_submit(ex, task_getpid, NULL, 0, &fs[i]);
    /* distinct pids: keep workers busy so each answers once */
    for (int i = 0; i < workers; i++) {
        const void *d;
        size_t len;
        if (pf_future_result(fs[i], PF_FOREVER, &d, &len) != 0)
            _exit(11);
        if (write(fd, d, 4) != 4)
            _exit(12);
    }
    for (int i = 0; i < 8; i++)
        submit_i32(ex, task_sleep_ms, 60000);
    for (;;)
        pause();
}

static int read_pids(int fd, int *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (read(fd, &pids[i], 4) != 4)
            return -1;
    return 0;
}

static void wait_gone(const int *pids, int n)
{
    for (int tries = 0; tries < 500; tries++) {
        bool any = false;
        for (int i = 0; i < n; i++)
            any = any || pid_alive(pids[i]);
        if (!any)
            return;
        pf_test_sleep_ms(10);
    }
    FAIL("workers still alive 5 s after their parent died");
}

TEST(parent_sigkill_leaves_no_orphans)
{
    int pfd[2];
    ASSERT_OK(pipe(pfd));
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        close(pfd[0]);
        child_with_pool(pfd[1], 2);
    }
    close(pfd[1]);
    int pids[2];
    ASSERT_OK(read_pids(pfd[0], pids, 2));
    ASSERT(pid_alive(pids[0]) && pid_alive(pids[1]));
    ASSERT_OK(kill(child, SIGKILL));
    waitpid(child, NULL, 0);
    wait_gone(pids, 2);
    close(pfd[0]);
}

TEST(ctrl_c_stops_pool_the_first_time)
{
    int pfd[2];
    ASSERT_OK(pipe(pfd));
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        setpgid(0, 0); /* like a shell job */
        close(pfd[0]);
        child_with_pool(pfd[1], 2);
    }
    setpgid(child, child);
    close(pfd[1]);
    int pids[2];
    ASSERT_OK(read_pids(pfd[0], pids, 2));
    /* The terminal sends SIGINT to the foreground process group. */
    ASSERT_OK(kill(-child, SIGINT));
    int status;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    wait_gone(pids, 2);
    close(pfd[0]);
}

static _Atomic int stop_spinning;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

static void *malloc_spinner(void *arg)
{
    (void)arg;
    while (!stop_spinning) {
        void *p = malloc(64 + (size_t)(rand() % 4096));
        free(p);
    }
    return NULL;
}

static void *lock_holder(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held); /* held forever, like a busy library's lock */
    while (!stop_spinning)
        pf_test_sleep_ms(1);
    pthread_mutex_unlock(&held);
    return NULL;
}

static int task_uses_malloc_and_lock(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    for (int i = 0; i < 1000; i++)
        free(malloc(100));
    /* The fork server started before the lock was taken: the worker's copy
     * of `held` is free. */
    if (pthread_mutex_trylock(&held) != 0)
        return pf_task_fail(t, 1, "inherited a held lock");
    pthread_mutex_unlock(&held);
    return 0;
}

TEST(fork_server_makes_threaded_programs_safe)
{
    ASSERT_OK(pf_init()); /* first thing, while single-threaded */
    pthread_t th[3];
    ASSERT_OK(pthread_create(&th[0], NULL, malloc_spinner, NULL));
    ASSERT_OK(pthread_create(&th[1], NULL, malloc_spinner, NULL));
    ASSERT_OK(pthread_create(&th[2], NULL, lock_holder, NULL));
    pf_test_sleep_ms(20);
    for (int round = 0; round < 3; round++) {
        pf_executor *ex = pool(2, NULL);
        pf_future *fs[20];
        for (int i = 0; i < 20; i++)
            ASSERT_OK(pf_submit(ex, task_uses_malloc_and_lock, NULL, 0, &fs[i]));
        for (int i = 0; i < 20; i++) {
            ASSERT_OK(pf_future_result(fs[i], PF_FOREVER, NULL, NULL));
            pf_future_release(fs[i]);
        }
        pf_executor_destroy(ex);
    }
    stop_spinning = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ(pf_test_count_children(getpid()), 1); /* just the fork server */
    pf_fini();
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

static void *sleeper(void *arg)
{
    (void)arg;
    while (!stop_spinning)
        pf_test_sleep_ms(1);
    return NULL;
}

TEST(process_pool_refuses_to_fork_from_threads_without_pf_init)
{
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, sleeper, NULL));
    pf_executor *ex = (pf_executor *)1;
#if !defined(__SANITIZE_THREAD__) /* TSan's own threads make counting impossible */
    ASSERT_ERR(pf_executor_create(&ex, PF_PROCESSES, NULL), PF_EFORKUNSAFE);
    ASSERT(ex == NULL);
#endif
    stop_spinning = 1;
    pthread_join(th, NULL);
    /* single-threaded again: fine */
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, NULL));
    pf_executor_destroy(ex);
}

TEST(no_process_outlives_its_executor)
{
    for (int round = 0; round < 3; round++) {
        pf_executor *ex = pool(3, NULL);
        pf_future *f = submit_i32(ex, task_crash, CRASH_SEGV);
        pf_future *g = submit_i32(ex, task_sleep_ms, 1);
        pf_future_wait(f, PF_FOREVER);
        pf_future_wait(g, PF_FOREVER);
        ASSERT(pf_test_count_children(getpid()) >= 1); /* the fork server */
        pf_executor_destroy(ex);
        ASSERT_EQ(pf_test_count_children(getpid()), 0);
        pf_future_release(f);
        pf_future_release(g);
    }
}

TEST(huge_result_is_an_error_not_a_crash)
{
    pf_executor *ex = pool(1, NULL);
    uint64_t n = 1ull << 40; /* a terabyte: more than memory allows */
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_sized_result, &n, sizeof n, &f));
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASK);
    pf_error_info info;
    pf_future_error(f, &info);
    ASSERT(strstr(info.message, "no room") != NULL);
    pf_future_release(f);
    pf_executor_destroy(ex);
}
