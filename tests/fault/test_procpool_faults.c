/*
 * The process pool under faults: dying workers, overrunning tasks, killed
 * parents, Ctrl-C, recycling, retries, forks from threaded programs, and
 * the races and limits around them (failing initializers, failed spawns,
 * cancels racing a worker's death, signals, nested pools, huge arguments).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/tasks.h"
#include "procs/procs.h" /* test hooks, pf__submit_owned */

static pf_executor *pool(int workers, const pf_executor_opts *extra)
{
    pf_executor_opts o = extra ? *extra : (pf_executor_opts){0};
    o.max_workers = workers;
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, &o));
    return ex;
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
            any = any || pf_test_pid_running(pids[i]);
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
    ASSERT(pf_test_pid_running(pids[0]) && pf_test_pid_running(pids[1]));
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

/* A slot's argument area holds 4 GiB: more would spill into the next slot's
 * and overwrite another task's argument.  The buffer is handed over
 * (pf__submit_owned: pf_submit would copy it in the front end first) and
 * never touched, so never backed by memory: the pool must refuse it without
 * copying it to shared memory. */
TEST(argument_over_4gib_is_refused_not_spilled)
{
    pf_executor *ex = pool(1, NULL);
    size_t big = (size_t)PF__ARG_STRIDE + 1;
    void *arg = malloc(big);
    if (!arg) {
        pf_executor_destroy(ex);
        SKIP("no 4 GiB of address space for the argument");
    }
    pf_future *f = (pf_future *)1;
    ASSERT_ERR(pf__submit_owned(ex, task_noop, arg, big, -1, &f), PF_ETOOBIG); /* frees arg */
    ASSERT(f == NULL);
    /* Refused before a byte of it is read: here no byte can be. */
    void *none = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT(none != MAP_FAILED);
    ASSERT_ERR(pf_submit(ex, task_noop, none, big, &f), PF_ETOOBIG);
    munmap(none, big);
    pf_future *g = submit_i32(ex, task_sleep_ms, 3); /* the pool goes on */
    ASSERT_EQ(result_i32(g), 3);
    pf_future_release(g);
    pf_executor_destroy(ex);
}

static void on_sigusr1(int sig)
{
    (void)sig;
}

static _Atomic int pester_stop, destroy_done;

static void *pester(void *arg)
{
    (void)arg;
    while (!atomic_load(&pester_stop)) {
        kill(getpid(), SIGUSR1);
        usleep(20);
    }
    return NULL;
}

static void *destroyer(void *ex)
{
    pf_executor_destroy(ex);
    atomic_store(&destroy_done, 1);
    return NULL;
}

/* A handler without SA_RESTART, and signals landing on the collector while it
 * waits for the fork server at destroy: its recv() fails with EINTR, and the
 * EOF after that must end the wait, not spin on the stale errno.  (Timing
 * decides whether a signal lands there; the next test forces the stale
 * errno.)  Fewer rounds in slow builds: valgrind runs one thread at a time. */
TEST(signals_on_the_collector_do_not_hang_destroy)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1; /* no SA_RESTART */
    ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ASSERT_OK(pf_init());
    int rounds = (int)(20 / pf_test_scale());
    for (int round = 0; round < (rounds > 2 ? rounds : 2); round++) {
        pf_executor *ex = pool(2, NULL); /* its collector takes SIGUSR1 ... */
        pf_future *f = submit_i32(ex, task_sleep_ms, 1);
        ASSERT_EQ(result_i32(f), 1);
        pf_future_release(f);
        ASSERT_OK(pthread_sigmask(SIG_BLOCK, &usr1, NULL)); /* ... and no other thread */
        atomic_store(&pester_stop, 0);
        atomic_store(&destroy_done, 0);
        pthread_t pt, dt;
        ASSERT_OK(pthread_create(&pt, NULL, pester, NULL));
        ASSERT_OK(pthread_create(&dt, NULL, destroyer, ex));
        for (int ms = 0; !atomic_load(&destroy_done); ms++) {
            if (ms > 5000 * pf_test_scale())
                FAIL("round %d: pf_executor_destroy still runs after 5 s", round);
            pf_test_sleep_ms(1);
        }
        atomic_store(&pester_stop, 1);
        pthread_join(pt, NULL);
        pthread_join(dt, NULL);
        ASSERT_OK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL));
    }
    pf_fini();
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

static int task_sleep_then_exit(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    int32_t ms;
    memcpy(&ms, arg, len < sizeof ms ? len : sizeof ms);
    pf_test_sleep_ms(ms);
    _exit(3);
}

static void set_stale_eintr(pf_future *f, void *user)
{
    (void)f;
    (void)user;
    errno = EINTR; /* as left by a call a signal interrupted */
}

/* The same without signals, every time: the collector handles the worker's
 * death, sees the pool done and runs the future's callback (on its own
 * thread), which leaves errno at EINTR just before the collector waits for
 * the fork server's EOF. */
TEST(stale_eintr_from_a_callback_does_not_hang_destroy)
{
    pf_executor *ex = pool(1, NULL);
    pf_future *f = submit_i32(ex, task_sleep_then_exit, (int32_t)(200 * pf_test_scale()));
    ASSERT_OK(pf_future_add_done_callback(f, set_stale_eintr, NULL));
    ASSERT(!pf_future_done(f));
    atomic_store(&destroy_done, 0);
    pthread_t dt;
    ASSERT_OK(pthread_create(&dt, NULL, destroyer, ex));
    for (int ms = 0; !atomic_load(&destroy_done); ms++) {
        if (ms > 5000 * pf_test_scale())
            FAIL("pf_executor_destroy still runs after 5 s");
        pf_test_sleep_ms(1);
    }
    pthread_join(dt, NULL);
    ASSERT_ERR(pf_future_result(f, 0, NULL, NULL), PF_EWORKERDIED);
    pf_future_release(f);
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

/* A submit that passed the front end's "broken" check just before the
 * worker's initializer failed: copying its 64 MiB argument takes far longer
 * than the worker takes to start and fail, so the pool learns it is broken
 * (and fails what it holds) in between.  The task must be refused or fail,
 * never wait forever, and destroy must return. */
TEST(submit_racing_a_failing_initializer_never_waits_forever)
{
    enum { BIG = 64 << 20 };
    char *arg = malloc(BIG);
    ASSERT(arg != NULL);
    memset(arg, 1, BIG);
    for (int round = 0; round < 3; round++) {
        pf_executor_opts o = {.initializer = init_fails};
        pf_executor *ex = pool(1, &o);
        pf_future *f;
        int rc = pf_submit(ex, task_noop, arg, BIG, &f);
        if (rc == PF_OK) {
            if (pf_future_wait(f, 5 * pf_test_scale()) != PF_OK)
                FAIL("round %d: a task accepted as the initializer failed never finishes", round);
            ASSERT_ERR(pf_future_result(f, 0, NULL, NULL), PF_EINITFAILED);
            pf_error_info info;
            ASSERT_OK(pf_future_error(f, &info));
            ASSERT_EQ(info.task_code, INIT_FAIL_CODE);
            pf_future_release(f);
        } else {
            ASSERT_ERR(rc, PF_EINITFAILED);
        }
        /* From now on every submit is refused or fails the same way. */
        for (int i = 0; i < 50; i++) {
            rc = pf_submit(ex, task_noop, NULL, 0, &f);
            if (rc != PF_OK) {
                ASSERT_ERR(rc, PF_EINITFAILED);
                continue;
            }
            ASSERT_ERR(pf_future_result(f, 5 * pf_test_scale(), NULL, NULL), PF_EINITFAILED);
            pf_future_release(f);
        }
        pf_executor_destroy(ex);
    }
    free(arg);
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

/* A process pool inside a process-pool task: the worker inherited the fork
 * server's state as it was when the program started the server (with its
 * lock held); it must start a fork server of its own, not block. */
static int task_nested_pool(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int32_t out[2] = {-1, -1};
    pf_executor_opts o = {.max_workers = 1};
    pf_executor *inner;
    int rc = pf_executor_create(&inner, PF_PROCESSES, &o);
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "inner create: %s", pf_err_name(rc));
    pf_future *f;
    rc = pf_submit(inner, task_getpid, NULL, 0, &f);
    if (rc == PF_OK) {
        const void *d;
        rc = pf_future_result(f, PF_FOREVER, &d, NULL);
        if (rc == PF_OK)
            memcpy(&out[1], d, sizeof out[1]);
        pf_future_release(f);
    }
    pf_executor_destroy(inner);
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "inner task: %s", pf_err_name(rc));
    out[0] = (int32_t)getpid();
    return pf_task_set_result(t, out, sizeof out);
}

static int task_init_fini(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int rc = pf_init();
    if (rc != PF_OK)
        return pf_task_fail(t, rc, "pf_init: %s", pf_err_name(rc));
    pf_fini();
    return 0;
}

TEST(process_pool_and_pf_init_inside_a_worker)
{
    pf_executor *ex = pool(1, NULL);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_nested_pool, NULL, 0, &f));
    const void *d;
    size_t len;
    int rc = pf_future_result(f, 10 * pf_test_scale(), &d, &len);
    if (rc == PF_ETIMEDOUT)
        FAIL("a process pool created in a worker blocks");
    ASSERT_OK(rc);
    ASSERT_EQ(len, 2 * sizeof(int32_t));
    int32_t pids[2];
    memcpy(pids, d, sizeof pids);
    ASSERT(pids[0] > 0 && pids[1] > 0 && pids[0] != pids[1] && pids[0] != getpid());
    pf_future_release(f);
    ASSERT_OK(pf_submit(ex, task_init_fini, NULL, 0, &f));
    rc = pf_future_result(f, 10 * pf_test_scale(), NULL, NULL);
    if (rc == PF_ETIMEDOUT)
        FAIL("pf_init/pf_fini in a worker block");
    ASSERT_OK(rc);
    pf_future_release(f);
    pf_executor_destroy(ex);
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

/* Shared with the workers: mapped before the fork server starts. */
static _Atomic int *task_starts;
static pf_executor *gap_pool;

static int task_count_and_sleep(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    atomic_fetch_add(task_starts, 1);
    pf_test_sleep_ms(20000);
    return 0;
}

/* Runs in pf_future_cancel between the kill and the finish: let the killed
 * worker's death be handled (no task running), then give a wrongly requeued
 * task time to start again. */
static void cancel_gap(void)
{
    pf_progress pr = {0};
    for (int ms = 0; ms < 5000 * pf_test_scale(); ms++) {
        pf_executor_progress(gap_pool, &pr);
        if (pr.running == 0 || atomic_load(task_starts) > 1)
            break;
        pf_test_sleep_ms(1);
    }
    for (int ms = 0; ms < 200 * pf_test_scale() && atomic_load(task_starts) < 2; ms++)
        pf_test_sleep_ms(1);
}

/* The cancel of a running task and the report of its killed worker's death:
 * however they interleave, the future ends cancelled, finished once, and
 * the task never runs again. */
TEST(cancel_racing_the_death_report_never_reruns_the_task)
{
    task_starts =
        mmap(NULL, sizeof *task_starts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(task_starts != MAP_FAILED);
    gap_pool = pool(1, NULL);
    pf__pp_cancel_gap_hook = cancel_gap;
    for (int round = 0; round < 3; round++) {
        atomic_store(task_starts, 0);
        pf_future *f;
        ASSERT_OK(pf_submit(gap_pool, task_count_and_sleep, NULL, 0, &f));
        for (int ms = 0; atomic_load(task_starts) == 0 || !pf_future_running(f); ms++) {
            if (ms > 10000 * pf_test_scale())
                FAIL("round %d: the task never started", round);
            pf_test_sleep_ms(1);
        }
        ASSERT_OK(pf_future_cancel(f));
        ASSERT(pf_future_cancelled(f));
        pf_future_release(f);
        pf_test_sleep_ms(50);
        ASSERT_EQ(atomic_load(task_starts), 1);
        pf_future *g = submit_i32(gap_pool, task_sleep_ms, 2); /* the pool goes on */
        ASSERT_EQ(result_i32(g), 2);
        pf_future_release(g);
    }
    pf__pp_cancel_gap_hook = NULL;
    pf_progress pr;
    ASSERT_OK(pf_executor_progress(gap_pool, &pr));
    ASSERT_EQ(pr.cancelled, 3);
    pf_executor_destroy(gap_pool);
    munmap(task_starts, sizeof *task_starts);
}

/* Spawns that fail (fork fails in the server: process limit, no memory)
 * fail the tasks that wait for a worker with PF_ESYS; the next submit asks
 * for a worker again, so no accepted task ever waits forever and the pool
 * recovers once forks work again. */
TEST(failed_spawns_never_strand_a_task)
{
    pf__fs_fail_spawns = 3; /* read by the fork server the first pool starts */
    pf_executor *ex = pool(1, NULL);
    int failed = 0, ok = 0;
    for (int i = 0; i < 6 && !ok; i++) {
        pf_future *f;
        ASSERT_OK(pf_submit(ex, task_getpid, NULL, 0, &f));
        if (pf_future_wait(f, 5 * pf_test_scale()) != PF_OK)
            FAIL("task %d waits for a worker nobody starts", i);
        int rc = pf_future_result(f, 0, NULL, NULL);
        if (rc == PF_OK) {
            ok++;
        } else {
            ASSERT_ERR(rc, PF_ESYS);
            pf_error_info info;
            ASSERT_OK(pf_future_error(f, &info));
            ASSERT(strstr(info.message, "could not start a worker process") != NULL);
            failed++;
        }
        pf_future_release(f);
    }
    ASSERT(failed >= 1 && failed <= 3);
    ASSERT_EQ(ok, 1);
    pf_future *fs[10];
    for (int i = 0; i < 10; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, i);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(result_i32(fs[i]), i);
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

/* The pool's requests to the fork server (a SPAWN per worker, and one per
 * worker that died) and the server's answers fill the channel both ways at
 * once: with the default socket buffers at ~500 workers, here (buffers of a
 * few messages) at 24.  Neither side may wait for the other: the server keeps
 * what it cannot send yet, and the pool reads answers while it asks. */
TEST(full_fork_server_channel_never_deadlocks)
{
    pf__fs_chan_buffer = 1; /* the kernel's minimum */
    pf_executor *ex = pool(24, NULL);
    pf__fs_chan_buffer = 0;
    enum { N = 24 };
    pf_future *fs[N];
    int32_t how = CRASH_EXIT7;
    for (int i = 0; i < N; i++) /* every worker dies: 24 respawns at once */
        ASSERT_OK(pf_submit(ex, task_crash, &how, sizeof how, &fs[i]));
    for (int i = 0; i < N; i++) {
        if (pf_future_wait(fs[i], 20 * pf_test_scale()) != PF_OK)
            FAIL("crashing task %d never finished: pool and fork server wait for each other", i);
        ASSERT_ERR(pf_future_result(fs[i], 0, NULL, NULL), PF_EWORKERDIED);
        pf_future_release(fs[i]);
    }
    for (int i = 0; i < N; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, i % 3);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(result_i32(fs[i]), i % 3);
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
}

static _Atomic int destroy_returned;

static void *destroy_in_thread(void *ex)
{
    pf_executor_destroy(ex);
    atomic_store(&destroy_returned, 1);
    return NULL;
}

/* A child the program forks (and that does not exec) holds copies of the
 * program's descriptors, the fork server's control socket among them: the
 * last pool's destroy, which stops the fork server, must not wait for that
 * child to end. */
TEST(forked_child_of_the_program_does_not_hang_destroy)
{
    pf_executor *ex = pool(1, NULL);
    pf_future *f = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_EQ(result_i32(f), 1);
    pf_future_release(f);
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        for (;;)
            pause();
    }
    pthread_t t;
    ASSERT_OK(pthread_create(&t, NULL, destroy_in_thread, ex));
    for (int i = 0; i < (int)(1000 * pf_test_scale()) && !atomic_load(&destroy_returned); i++)
        pf_test_sleep_ms(10);
    bool returned = atomic_load(&destroy_returned);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    pthread_join(t, NULL);
    if (!returned)
        FAIL("pf_executor_destroy waited for an unrelated child of the program");
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}
