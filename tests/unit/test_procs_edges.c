/*
 * Process-pool edge cases: large results abandoned by a dying or failing
 * task, stopped workers, tasks that close the pool's descriptors, a killed
 * fork server, descriptors after many restarts, shutdown with cancels.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "procs/procs.h" /* pf__pp_collect_gap_hook */
#include "tasks.h"

static pf_executor *pool(int workers)
{
    pf_executor_opts o = {.max_workers = workers};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, &o));
    return ex;
}

static pf_future *submit_timed(pf_executor *ex, pf_task_fn fn, int32_t x, double timeout)
{
    pf_submit_opts so = {.timeout = timeout};
    pf_future *f;
    ASSERT_OK(pf_submit_ex(ex, fn, &x, sizeof x, &so, &f));
    return f;
}

/* Bytes of memory the (single) pool's memfd holds. */
static long long pool_shm_bytes(void)
{
    DIR *d = opendir("/proc/self/fd");
    ASSERT(d != NULL);
    long long bytes = -1;
    for (struct dirent *e; (e = readdir(d));) {
        char path[300], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        struct stat st;
        if (strstr(link, "memfd:pfor-pool") && stat(path, &st) == 0)
            bytes = (long long)st.st_blocks * 512;
    }
    closedir(d);
    ASSERT(bytes >= 0);
    return bytes;
}

static int count_fds(int pid)
{
    /* Only descriptors below the soft RLIMIT_NOFILE count: a program cannot
     * have others, and a tool it runs under (valgrind) keeps its own above
     * the limit it reports.  pid shares this process's limit (a child). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.' && strtoull(e->d_name, NULL, 10) < rl.rlim_cur;
    closedir(d);
    return n;
}

/* The fork server: our child named pfor-forksrv. */
static int fork_server_pid(void)
{
    DIR *d = opendir("/proc");
    ASSERT(d != NULL);
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *close_paren = strrchr(buf, ')');
        int ppid = 0;
        char state = 0;
        if (close_paren && sscanf(close_paren + 2, "%c %d", &state, &ppid) == 2 &&
            ppid == getpid() && state != 'Z' && strstr(buf, "(pfor-forksrv)"))
            found = pid;
    }
    closedir(d);
    ASSERT(found > 0);
    return found;
}

#define BIG_RESULT (64u << 20)

/* Fills a 64 MiB result, then stops as its argument says: 0 sleeps (to be
 * killed for its time limit), 1 fails, 2 returns a non-zero code. */
static int task_big_result_then(pf_task *t, const void *arg, size_t len)
{
    (void)len;
    int32_t how;
    memcpy(&how, arg, sizeof how);
    unsigned char *p = pf_task_result_buffer(t, BIG_RESULT);
    if (!p)
        return pf_task_fail(t, PF_ENOMEM, "no room");
    memset(p, 0x5a, BIG_RESULT);
    if (how == 1)
        return pf_task_fail(t, 9, "failed after filling its result");
    if (how == 2)
        return 9;
    pf_test_sleep_ms(10000);
    return 0;
}

/* A large result that is never delivered (the worker was killed while it
 * held it, or the task failed) must not keep its pages in the pool's shared
 * memory: 64 MiB per worker index, for the pool's whole life, otherwise. */
TEST(abandoned_large_results_release_their_memory)
{
    pf_executor *ex = pool(1);
    pf_future *warm = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_EQ(result_i32(warm), 1);
    pf_future_release(warm);
    long long before = pool_shm_bytes();
    for (int32_t how = 0; how < 3; how++) {
        pf_future *f = submit_timed(ex, task_big_result_then, how, 1.0 * pf_test_scale());
        ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL),
                   how == 0 ? PF_ETASKTIMEOUT : PF_ETASK);
        pf_future_release(f);
        /* A later task on the same (maybe replaced) worker index. */
        pf_future *g = submit_i32(ex, task_sleep_ms, 1);
        ASSERT_EQ(result_i32(g), 1);
        pf_future_release(g);
        long long after = pool_shm_bytes();
        if (after > before + (2 << 20))
            FAIL("case %d: the pool's memory grew from %lld to %lld bytes", how, before, after);
    }
    pf_executor_destroy(ex);
}

static int task_raise(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)len;
    int32_t sig;
    memcpy(&sig, arg, sizeof sig);
    raise(sig);
    pf_test_sleep_ms(10000);
    return 0;
}

/* A task that stops its worker (SIGSTOP, SIGTSTP) is still killed at its
 * deadline, and the pool goes on and shuts down. */
TEST(stopped_worker_times_out_and_pool_goes_on)
{
    pf_executor *ex = pool(2);
    pf_future *a = submit_timed(ex, task_raise, SIGSTOP, 0.3);
    pf_future *b = submit_timed(ex, task_raise, SIGTSTP, 0.3);
    ASSERT_ERR(pf_future_result(a, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    ASSERT_ERR(pf_future_result(b, PF_FOREVER, NULL, NULL), PF_ETASKTIMEOUT);
    pf_future_release(a);
    pf_future_release(b);
    pf_future *c = submit_i32(ex, task_sleep_ms, 3);
    ASSERT_EQ(result_i32(c), 3);
    pf_future_release(c);
    /* One stopped without a limit: cancelling it kills it. */
    pf_future *d = submit_i32(ex, task_raise, SIGSTOP);
    while (!pf_future_running(d))
        pf_test_sleep_ms(5);
    pf_test_sleep_ms(50);
    ASSERT_OK(pf_future_cancel(d));
    pf_future_release(d);
    pf_executor_destroy(ex);
    ASSERT_EQ(pf_test_count_children(getpid()), 0);
}

/* Closes every descriptor from 3 up, then sleeps its argument's ms and
 * returns it. */
static int task_close_fds_then_sleep(pf_task *t, const void *arg, size_t len)
{
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    return task_sleep_ms(t, arg, len);
}

/* A task that closes the worker's descriptors (the pool's memfd and
 * eventfd) must not strand its result: the collector, asleep, is woken. */
TEST(task_closing_the_pools_descriptors_does_not_strand_results)
{
    pf_executor *ex = pool(1);
    pf_future *f = submit_i32(ex, task_close_fds_then_sleep, 300);
    const void *d;
    int rc = pf_future_result(f, 10.0 * pf_test_scale(), &d, NULL);
    ASSERT(rc == PF_OK || rc == PF_EWORKERDIED);
    if (rc == PF_OK)
        ASSERT_EQ(*(const int32_t *)d, 300);
    pf_future_release(f);
    /* The pool goes on. */
    pf_future *g = submit_i32(ex, task_sleep_ms, 200);
    ASSERT_EQ(result_i32(g), 200);
    pf_future_release(g);
    pf_executor_destroy(ex);
}

/* Killing the fork server fails the pool's tasks instead of hanging. */
TEST(killed_fork_server_fails_tasks_instead_of_hanging)
{
    pf_executor *ex = pool(2);
    pf_future *warm = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_EQ(result_i32(warm), 1);
    pf_future_release(warm);
    enum { N = 600 };
    pf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, 100);
    pf_test_sleep_ms(50);
    ASSERT_OK(kill(fork_server_pid(), SIGKILL));
    for (int i = 0; i < N; i++) {
        int rc = pf_future_result(fs[i], 20.0 * pf_test_scale(), NULL, NULL);
        ASSERT(rc == PF_OK || rc == PF_EWORKERDIED);
        pf_future_release(fs[i]);
    }
    pf_future *late;
    int rc = pf_submit(ex, task_noop, NULL, 0, &late);
    ASSERT(rc != PF_OK);
    pf_executor_destroy(ex);
    /* A new pool works again (a new fork server) or says why not. */
    pf_executor *ex2;
    pf_executor_opts o = {.max_workers = 1};
    rc = pf_executor_create(&ex2, PF_PROCESSES, &o);
    if (rc == PF_OK) {
        pf_future *g = submit_i32(ex2, task_sleep_ms, 2);
        ASSERT_EQ(result_i32(g), 2);
        pf_future_release(g);
        pf_executor_destroy(ex2);
    }
}

/* Shared with the workers (MAP_SHARED): the last task's worker and start. */
struct lost_page {
    _Atomic int started;
    _Atomic int pid;
};
static struct lost_page *lost;
static _Atomic int gap_armed, gap_entered, gap_release;

/* Records its worker's pid and that it started, then sleeps until the fork
 * server's death takes its worker along. */
static int task_mark_then_sleep(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    atomic_store(&lost->pid, (int)getpid());
    atomic_store(&lost->started, 1);
    pf_test_sleep_ms(60000);
    return 0;
}

/* The collector, between draining the completion rings and reading the
 * fork server's messages: held here once armed, until the test releases
 * it (bounded, so a broken test cannot hang the collector for ever). */
static void collect_gap(void)
{
    if (!atomic_load(&gap_armed))
        return;
    atomic_store(&gap_armed, 0);
    atomic_store(&gap_entered, 1);
    for (int ms = 0; !atomic_load(&gap_release) && ms < 30000 * pf_test_scale(); ms++)
        pf_test_sleep_ms(1);
}

/* Results that workers published (DONE) but that the collector has not
 * collected yet when it learns that the fork server died are delivered;
 * only the task still running fails.  The hook holds the collector in the
 * one place where that happens on its own only by chance: after it drained
 * the rings, before it reads the server's hang-up. */
TEST(results_published_before_the_fork_server_dies_are_delivered)
{
    lost = mmap(NULL, sizeof *lost, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(lost != MAP_FAILED);
    pf__pp_collect_gap_hook = collect_gap; /* before the collector starts: no race */
    pf_executor *ex = pool(1);
    pf_future *warm = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_EQ(result_i32(warm), 1);
    pf_future_release(warm);

    atomic_store(&gap_armed, 1);
    pf_future *w = submit_i32(ex, task_sleep_ms, 2); /* its completion starts a round, at least */
    for (int ms = 0; !atomic_load(&gap_entered); ms++) {
        if (ms > 10000 * pf_test_scale())
            FAIL("the collector never reached the hook");
        pf_test_sleep_ms(1);
    }
    /* One worker takes tasks in order: once the last one started, those
     * before it are DONE (inline results, one in the worker's window) and
     * small and big, at least, are not collected. */
    pf_future *small = submit_i32(ex, task_sleep_ms, 3);
    uint64_t big_len = 64 << 10;
    pf_future *big, *last;
    ASSERT_OK(pf_submit(ex, task_sized_result, &big_len, sizeof big_len, &big));
    ASSERT_OK(pf_submit(ex, task_mark_then_sleep, NULL, 0, &last));
    for (int ms = 0; !atomic_load(&lost->started); ms++) {
        if (ms > 10000 * pf_test_scale())
            FAIL("the last task never started");
        pf_test_sleep_ms(1);
    }
    /* Kill the server and wait until it and its worker are gone: the
     * hang-up is then waiting on the pool's channel. */
    int server = fork_server_pid(), worker = atomic_load(&lost->pid);
    ASSERT_OK(kill(server, SIGKILL));
    for (int ms = 0; pf_test_pid_running(server) || pf_test_pid_running(worker); ms++) {
        if (ms > 10000 * pf_test_scale())
            FAIL("the fork server or its worker outlived SIGKILL");
        pf_test_sleep_ms(1);
    }
    atomic_store(&gap_release, 1);

    double limit = 20.0 * pf_test_scale();
    pf_future *done[3] = {w, small, big};
    const void *d;
    size_t n;
    for (int i = 0; i < 3; i++) {
        int rc = pf_future_result(done[i], limit, &d, &n);
        if (rc != PF_OK)
            FAIL("result %d, published before the fork server died, was lost: %s", i,
                 pf_err_name(rc));
    }
    ASSERT_EQ(result_i32(w), 2);
    ASSERT_EQ(result_i32(small), 3);
    ASSERT_OK(pf_future_result(big, limit, &d, &n));
    ASSERT_EQ(n, big_len);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(((const unsigned char *)d)[i], (unsigned char)((i * 7 + 3) & 0xff));
    ASSERT_ERR(pf_future_result(last, limit, NULL, NULL), PF_EWORKERDIED);
    pf_future_release(w);
    pf_future_release(small);
    pf_future_release(big);
    pf_future_release(last);
    pf_future *late;
    ASSERT(pf_submit(ex, task_noop, NULL, 0, &late) != PF_OK);
    pf_executor_destroy(ex); /* joins the collector */
    pf__pp_collect_gap_hook = NULL;
    munmap(lost, sizeof *lost);
}

static int task_count_fds(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int32_t n = count_fds(getpid()) - 1; /* opendir's own */
    return pf_task_set_result(t, &n, sizeof n);
}

/* Restarting workers many times, in a program with several pools, leaks no
 * descriptor: not in the program, not in the fork server, and a worker
 * holds only stdio and its own pool's two. */
TEST(worker_restarts_leak_no_descriptors)
{
    pf_executor *other = pool(1); /* its descriptors must not reach ex's workers */
    pf_executor *ex = pool(2);
    pf_future *w = submit_i32(ex, task_count_fds, 0);
    int32_t worker_fds = result_i32(w);
    pf_future_release(w);
    ASSERT_LE(worker_fds, 5);
    int fs = fork_server_pid();
    int mine = count_fds(getpid()), server = count_fds(fs);
    for (int round = 0; round < 3; round++) {
        pf_executor *tmp = pool(1);
        for (int i = 0; i < 10; i++) {
            pf_future *f = submit_i32(i % 2 ? ex : tmp, task_crash, CRASH_EXIT7);
            ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_EWORKERDIED);
            pf_future_release(f);
        }
        pf_executor_destroy(tmp);
    }
    w = submit_i32(ex, task_count_fds, 0);
    ASSERT_EQ(result_i32(w), worker_fds);
    pf_future_release(w);
    ASSERT_EQ(count_fds(getpid()), mine);
    ASSERT_EQ(count_fds(fs), server);
    pf_executor_destroy(ex);
    pf_executor_destroy(other);
}

/* shutdown(cancel_futures) with hundreds of queued tasks, some cancelled by
 * another path at the same time: every future ends, nothing hangs. */
TEST(shutdown_cancelling_many_queued_futures)
{
    pf_executor *ex = pool(2);
    enum { N = 1500 };
    pf_future **fs = calloc(N, sizeof *fs);
    ASSERT(fs != NULL);
    for (int i = 0; i < N; i++)
        fs[i] = submit_i32(ex, task_sleep_ms, i < 4 ? 200 : 1);
    for (int i = N - 1; i >= N / 2; i -= 3)
        pf_future_cancel(fs[i]);
    ASSERT_OK(pf_executor_shutdown(ex, true, true));
    int ok = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        ASSERT(pf_future_done(fs[i]));
        int rc = pf_future_result(fs[i], 0, NULL, NULL);
        if (rc == PF_OK)
            ok++;
        else {
            ASSERT_ERR(rc, PF_ECANCELLED);
            cancelled++;
        }
        pf_future_release(fs[i]);
    }
    ASSERT_EQ(ok + cancelled, N);
    ASSERT_GE(cancelled, N / 2);
    free(fs);
    pf_executor_destroy(ex);
}

static int task_exit_zero(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    exit(0); /* atexit handlers and stdio: a worker is a fork of the program */
}

/* exit(0) in a task, unlike returning, is a death: reported, and the index
 * restarted, not taken for a retiring worker. */
TEST(task_calling_exit_zero_is_a_reported_death)
{
    pf_executor *ex = pool(1);
    for (int i = 0; i < 3; i++) {
        pf_future *f;
        ASSERT_OK(pf_submit(ex, task_exit_zero, NULL, 0, &f));
        ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_EWORKERDIED);
        pf_error_info info;
        ASSERT_OK(pf_future_error(f, &info));
        ASSERT_EQ(info.exit_status, 0);
        ASSERT_EQ(info.signal, 0);
        pf_future_release(f);
    }
    pf_future *g = submit_i32(ex, task_sleep_ms, 2);
    ASSERT_EQ(result_i32(g), 2);
    pf_future_release(g);
    pf_executor_destroy(ex);
}

/* A task that scribbles on its own slot: an inline result of 8 bytes whose
 * length word (before the bytes, in the same slot) it then raises. */
static int task_scribble_result_len(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    unsigned char *r = pf_task_result_buffer(t, 8);
    if (!r)
        return 1;
    memset(r, 7, 8);
    struct pf__slot *slot = (struct pf__slot *)(r - offsetof(struct pf__slot, result_inline));
    slot->result_len = 1u << 20;
    return 0;
}

/* A result length that its place cannot hold fails that future with
 * PF_ECORRUPT (the parent read up to 1 MiB past the slot before), and the
 * pool goes on. */
TEST(scribbled_result_length_is_reported_not_read)
{
    pf_executor *ex = pool(1);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_scribble_result_len, NULL, 0, &f));
    ASSERT_ERR(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ECORRUPT);
    pf_error_info info;
    ASSERT_OK(pf_future_error(f, &info));
    ASSERT(strstr(info.message, "damaged") != NULL);
    pf_future_release(f);
    pf_future *g = submit_i32(ex, task_sleep_ms, 2);
    ASSERT_EQ(result_i32(g), 2);
    pf_future_release(g);
    pf_executor_destroy(ex);
}

/* The slot a task runs in, and its pool's shared header (at the start of
 * the control mapping, page-aligned, below the slots). */
static struct pf__slot *own_slot(pf_task *t, struct pf__shm_header **h)
{
    unsigned char *r = pf_task_result_buffer(t, 8);
    if (!r)
        return NULL;
    struct pf__slot *slot = (struct pf__slot *)(r - offsetof(struct pf__slot, result_inline));
    uintptr_t a = (uintptr_t)slot & ~(uintptr_t)4095;
    while (*(const uint64_t *)a != PF__SHM_MAGIC)
        a -= 4096;
    *h = (struct pf__shm_header *)a;
    return slot;
}

/* What a scribbling task does: argument = enum below. */
enum { SCRIBBLE_OWNER_DIE, SCRIBBLE_OWNER_SLEEP, SCRIBBLE_CQ_TAIL, SCRIBBLE_CQ_ENTRY };

static int task_scribble_shared(pf_task *t, const void *arg, size_t len)
{
    (void)len;
    int32_t what;
    memcpy(&what, arg, sizeof what);
    struct pf__shm_header *h;
    struct pf__slot *slot = own_slot(t, &h);
    if (!slot)
        return 1;
    int w = pf_task_worker_index(t);
    struct pf__shm_worker *sw = pf__shm_worker(h, w);
    uint32_t bad_owner = 1u << 20;
    switch (what) {
    case SCRIBBLE_OWNER_DIE:
        atomic_store(&slot->state, PF__SLOT_STATE(PF__SLOT_DONE, bad_owner));
        raise(SIGKILL);
        break;
    case SCRIBBLE_OWNER_SLEEP:
        atomic_store(&slot->state, PF__SLOT_STATE(PF__SLOT_RUNNING, bad_owner));
        pf_test_sleep_ms(300);
        break;
    case SCRIBBLE_CQ_TAIL:
        atomic_fetch_add(&sw->cq_tail, 1ull << 40);
        break;
    case SCRIBBLE_CQ_ENTRY: {
        uint64_t tail = atomic_load(&sw->cq_tail);
        atomic_store(&pf__shm_worker_cq(h, w)[tail & (h->cq_size - 1)], 0xfffffff0u);
        atomic_store(&sw->cq_tail, tail + 1);
        break;
    }
    }
    return pf_task_set_result(t, &what, sizeof what);
}

/* The pool goes on after a scribbler: a following task works. */
static void pool_goes_on(pf_executor *ex)
{
    pf_future *g = submit_i32(ex, task_sleep_ms, 2);
    ASSERT_EQ(result_i32(g), 2);
    pf_future_release(g);
}

/* A task that makes its slot's owner no worker of ours and dies: its
 * future fails with PF_EWORKERDIED (the death report skipped the slot
 * before, and the future never finished). */
TEST(scribbled_slot_owner_then_death_fails_the_future)
{
    pf_executor *ex = pool(1);
    pf_future *f = submit_i32(ex, task_scribble_shared, SCRIBBLE_OWNER_DIE);
    ASSERT_ERR(pf_future_result(f, 20.0, NULL, NULL), PF_EWORKERDIED);
    pf_future_release(f);
    pool_goes_on(ex);
    pf_executor_destroy(ex);
}

/* Cancelling a running task whose slot names no worker of ours: no kill
 * of an index past the workers (read and written out of bounds before);
 * the task finishes as it would have. */
TEST(cancel_with_scribbled_slot_owner_is_refused)
{
    pf_executor *ex = pool(1);
    pf_future *f = submit_i32(ex, task_scribble_shared, SCRIBBLE_OWNER_SLEEP);
    while (!pf_future_running(f))
        pf_test_sleep_ms(2);
    pf_test_sleep_ms(50); /* let it scribble */
    pf_future_cancel(f);
    int rc = pf_future_result(f, 20.0, NULL, NULL);
    ASSERT(rc == PF_OK || rc == PF_ECANCELLED);
    pf_future_release(f);
    pool_goes_on(ex);
    pf_executor_destroy(ex);
}

/* A completion ring tail raised by 2^40: the collector drains at most
 * cq_size entries, finds the worker's finished slots by a scan, and the
 * result arrives (it looped 2^40 times, or aborted on a stale entry). */
TEST(scribbled_completion_tail_is_survived)
{
    pf_executor *ex = pool(1);
    pf_future *f = submit_i32(ex, task_scribble_shared, SCRIBBLE_CQ_TAIL);
    ASSERT_EQ(result_i32(f), SCRIBBLE_CQ_TAIL);
    pf_future_release(f);
    pool_goes_on(ex);
    pool_goes_on(ex);
    pf_executor_destroy(ex);
}

/* A completion entry naming no slot is skipped (it aborted the parent). */
TEST(scribbled_completion_entry_is_skipped)
{
    pf_executor *ex = pool(1);
    pf_future *f = submit_i32(ex, task_scribble_shared, SCRIBBLE_CQ_ENTRY);
    ASSERT_EQ(result_i32(f), SCRIBBLE_CQ_ENTRY);
    pf_future_release(f);
    pool_goes_on(ex);
    pf_executor_destroy(ex);
}

/* Counts worker starts in a counter shared with the whole process tree (an
 * anonymous shared mapping made before the fork server starts); its
 * argument is the counter's address, the same in every process. */
static int init_count_starts(void **state, const void *arg, size_t len, int index)
{
    (void)state;
    (void)len;
    (void)index;
    _Atomic int *starts;
    memcpy(&starts, arg, sizeof starts);
    atomic_fetch_add(starts, 1);
    return 0;
}

/* shutdown(wait) while one task still runs: the idle workers leave, and are
 * not started again and again (each start running the initializer) until
 * that task ends. */
TEST(shutdown_does_not_restart_idle_workers_while_a_task_runs)
{
    _Atomic int *starts =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(starts != MAP_FAILED);
    pf_executor_opts o = {.max_workers = 3,
                          .initializer = init_count_starts,
                          .init_arg = &starts,
                          .init_arg_len = sizeof starts};
    pf_executor *ex;
    ASSERT_OK(pf_executor_create(&ex, PF_PROCESSES, &o));
    pf_future *f = submit_i32(ex, task_sleep_ms, 500);
    while (!pf_future_running(f))
        pf_test_sleep_ms(5);
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    ASSERT_EQ(result_i32(f), 500);
    pf_future_release(f);
    int n = atomic_load(starts);
    ASSERT_GE(n, 1);
    ASSERT_LE(n, 3);
    pf_executor_destroy(ex);
    munmap((void *)starts, 4096);
}

/* pid (our child) has ended, all its threads too, so it has closed its
 * descriptors: a zombie whose task list holds only itself.  (A sanitizer's
 * runtime may run threads of its own in it, which outlive the leader.) */
static bool is_zombie(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    ASSERT(d != NULL);
    int tasks = 0;
    for (struct dirent *e; (e = readdir(d));)
        tasks += e->d_name[0] != '.';
    closedir(d);
    if (tasks != 1)
        return false;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    ASSERT(f != NULL); /* our child: not reaped before we create a pool */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'Z';
}

/* A fork server killed while pf_init() pins it is replaced by the next pool
 * (not reported as PF_ESYS until pf_fini), and is not left a zombie. */
TEST(killed_pinned_fork_server_is_replaced)
{
    ASSERT_OK(pf_init());
    pf_executor *ex = pool(1);
    pf_future *warm = submit_i32(ex, task_sleep_ms, 1);
    ASSERT_EQ(result_i32(warm), 1);
    pf_future_release(warm);
    int old = fork_server_pid();
    pf_future *f = submit_i32(ex, task_sleep_ms, 10000);
    ASSERT_OK(kill(old, SIGKILL));
    ASSERT_ERR(pf_future_result(f, 20.0 * pf_test_scale(), NULL, NULL), PF_EWORKERDIED);
    pf_future_release(f);
    pf_executor_destroy(ex);
    /* Until it has closed its descriptors: a pool created while it is dying
     * would be registered with it, and lost with it. */
    for (int i = 0; !is_zombie(old); i++) {
        if (i == (int)(2000 * pf_test_scale()))
            FAIL("the killed fork server (pid %d) did not end", old);
        pf_test_sleep_ms(5);
    }

    pf_executor *ex2;
    pf_executor_opts o = {.max_workers = 1};
    ASSERT_OK(pf_executor_create(&ex2, PF_PROCESSES, &o));
    pf_future *g = submit_i32(ex2, task_sleep_ms, 2);
    ASSERT_EQ(result_i32(g), 2);
    pf_future_release(g);
    ASSERT(fork_server_pid() != old);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", old);
    ASSERT(access(path, F_OK) != 0); /* reaped, not a zombie */
    pf_executor_destroy(ex2);
    pf_fini();
}

/* Returns 1 if the worker's descriptor 1 is a socket. */
static int task_fd1_is_socket(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    struct stat st;
    int32_t sock = fstat(1, &st) == 0 && S_ISSOCK(st.st_mode);
    return pf_task_set_result(t, &sock, sizeof sock);
}

/* A program that closed its standard descriptors: the fork server's own
 * descriptors then get those low numbers, and must not stay open there in
 * the server and in every worker (a task's printf would write into the
 * fork server's control socket). */
TEST(fork_server_descriptors_do_not_leak_into_stdio_numbers)
{
    int save1 = dup(1);
    ASSERT(save1 >= 0);
    close(0);
    close(1);
    pf_executor *ex = pool(1);    /* starts the fork server: its sockets get 0 and 1 */
    ASSERT_EQ(dup2(save1, 1), 1); /* 1 is free again in this process */
    close(save1);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_fd1_is_socket, NULL, 0, &f));
    int32_t sock = result_i32(f);
    pf_future_release(f);
    ASSERT_EQ(sock, 0);
    pf_executor_destroy(ex);
}

/* A process pool starts and runs tasks under a small limit on descriptors
 * (the fork server once moved its two to 100 and above first, which fails
 * below a limit of 101: no pool could start in such a process). */
TEST(pool_runs_under_a_descriptor_limit_of_16)
{
    if (pf_test_valgrind()) /* `make valgrind` leaves this test out */
        SKIP("valgrind does not really lower RLIMIT_NOFILE (it refuses a lower hard limit and "
             "only pretends to lower the soft one, keeping descriptors of its own above it)");
    struct rlimit rl = {16, 16}; /* this test's own process */
    ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    pf_executor *ex = pool(2);
    for (int64_t i = 1; i <= 4; i++) {
        pf_future *f;
        ASSERT_OK(pf_submit(ex, task_square, &i, sizeof i, &f));
        const void *data;
        size_t len;
        ASSERT_OK(pf_future_result(f, PF_FOREVER, &data, &len));
        int64_t sq = 0;
        ASSERT_EQ(len, sizeof sq);
        memcpy(&sq, data, sizeof sq);
        ASSERT_EQ(sq, i * i);
        pf_future_release(f);
    }
    pf_executor_destroy(ex);
}
