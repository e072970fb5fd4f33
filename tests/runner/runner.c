/*
 * The test runner: every TEST() in its own process, with a time limit and
 * leak checks.
 *
 *   pfor-tests [--list] [--timeout SECONDS] [--exclude PATTERN]... [PATTERN...]
 *
 * PATTERN selects tests whose name or file contains it; --exclude leaves out
 * those whose name or file contains its pattern.  The runner is a
 * child subreaper, so processes that a test leaves behind become the
 * runner's children when the test ends: any still alive after a grace
 * period fail the test ("leaked processes") and are killed.  /dev/shm names
 * containing "pfor" that appear during a test fail it too.  Where it may
 * (root), the runner gives itself a /dev/shm of its own (a private mount
 * namespace with a fresh tmpfs there), so that what other programs on the
 * machine create meanwhile is neither blamed on a test nor hidden from it;
 * PF_TEST_SHARED_DEV_SHM=1 keeps the machine's.
 * Exit status: 0 if every selected test passed, 1 otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h> /* RUNNING_ON_VALGRIND: no code outside valgrind */
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "test.h"

#define MAX_TESTS 1024
#define SHM_MAX   256

struct test_entry {
    const char *name;
    const char *file;
    pf_test_fn fn;
};

static struct test_entry tests[MAX_TESTS];
static int n_tests;

void pf_test_register(const char *name, pf_test_fn fn, const char *file)
{
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    const char *base = strrchr(file, '/');
    tests[n_tests++] = (struct test_entry){name, base ? base + 1 : file, fn};
}

void pf_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "    FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

void pf_test_skip(const char *why)
{
    fprintf(stderr, "    SKIP: %s\n", why);
    fflush(stderr);
    _exit(77);
}

double pf_test_scale(void)
{
    const char *s = getenv("PF_TEST_TIMEOUT_SCALE");
    double v = s ? atof(s) : 1.0;
    return v < 1.0 ? 1.0 : v;
}

bool pf_test_valgrind(void)
{
    return RUNNING_ON_VALGRIND != 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- helpers also used by tests ------------------------------------------ */

static int parent_of(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* pid (comm) state ppid ...; comm may hold spaces and parens */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    char state;
    int ppid;
    if (sscanf(p + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    if (state == 'Z')
        return -2; /* a zombie is not alive */
    return ppid;
}

/* Fill pids[] with live children of `pid`; returns how many (max cap). */
static int list_children(int pid, int *pids, int cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int p = atoi(e->d_name);
        if (p <= 0)
            continue;
        if (parent_of(p) == pid) {
            if (n < cap)
                pids[n] = p;
            n++;
        }
    }
    closedir(d);
    return n < cap ? n : cap;
}

int pf_test_count_children(int pid)
{
    int pids[4096];
    return list_children(pid, pids, 4096);
}

static int shm_names(const char *needle, char names[][NAME_MAX + 1], int cap)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, needle))
            continue;
        if (names && n < cap)
            snprintf(names[n], NAME_MAX + 1, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

int pf_test_count_shm(const char *needle)
{
    return shm_names(needle, NULL, 0);
}

void pf_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

bool pf_test_pid_running(int pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the state follows the last ')': the name may hold any bytes */
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* --- running one test ----------------------------------------------------- */

static void kill_descendants(int pid)
{
    int kids[1024];
    int n = list_children(pid, kids, 1024);
    for (int i = 0; i < n; i++) {
        kill(kids[i], SIGSTOP); /* freeze first so it cannot fork more */
        kill_descendants(kids[i]);
        kill(kids[i], SIGKILL);
        kill(kids[i], SIGCONT);
    }
}

static void reap_all(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static bool in_list(char names[][NAME_MAX + 1], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static char shm_before[SHM_MAX][NAME_MAX + 1], shm_after[SHM_MAX][NAME_MAX + 1];

/* Returns 0 pass, 1 fail, 77 skip. */
static int run_one(const struct test_entry *t, double timeout_s)
{
    int n_before = shm_names("pfor", shm_before, SHM_MAX);
    fflush(NULL);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        alarm(0);
        t->fn();
        fflush(NULL);
        _exit(0);
    }
    setpgid(pid, pid);
    /* Wait on a pidfd where there is one (valgrind 3.19 has no pidfd_open and
     * warns at every call: the 5 ms waitpid loop below then). */
    int pfd = pf_test_valgrind() ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
    int status = 0;
    bool timed_out = false;
    for (;;) {
        if (pfd >= 0) {
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            double left = t0 + timeout_s - now_s();
            int r = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0) {
                timed_out = true;
                break;
            }
        }
        pid_t w = waitpid(pid, &status, pfd >= 0 ? 0 : WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            perror("waitpid");
            return 1;
        }
        if (pfd < 0) {
            if (now_s() - t0 > timeout_s) {
                timed_out = true;
                break;
            }
            pf_test_sleep_ms(5);
        }
    }
    if (pfd >= 0)
        close(pfd);
    int result = 0;
    if (timed_out) {
        fprintf(stderr, "    FAIL: timed out after %.0f s\n", timeout_s);
        kill(-pid, SIGKILL);
        kill_descendants(pid);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        result = 1;
    } else if (WIFSIGNALED(status)) {
        fprintf(stderr, "    FAIL: crashed with signal %d (%s)\n", WTERMSIG(status),
                strsignal(WTERMSIG(status)));
        result = 1;
    } else if (WEXITSTATUS(status) == 77) {
        result = 77;
    } else if (WEXITSTATUS(status) != 0) {
        result = 1;
    }

    /* Orphans of the test are now our children: give them a moment to go. */
    double grace = 3.0 * pf_test_scale(), g0 = now_s();
    int kids[256], n_kids;
    for (;;) {
        reap_all();
        n_kids = list_children(getpid(), kids, 256);
        if (n_kids == 0 || now_s() - g0 > grace)
            break;
        pf_test_sleep_ms(10);
    }
    if (n_kids > 0) {
        fprintf(stderr, "    FAIL: %d process(es) still alive after the test ended:", n_kids);
        for (int i = 0; i < n_kids; i++)
            fprintf(stderr, " %d", kids[i]);
        fputc('\n', stderr);
        for (int i = 0; i < n_kids; i++) {
            kill_descendants(kids[i]);
            kill(kids[i], SIGKILL);
        }
        pf_test_sleep_ms(50);
        reap_all();
        if (result != 77)
            result = 1;
    }

    int n_after = shm_names("pfor", shm_after, SHM_MAX);
    for (int i = 0; i < n_after; i++) {
        if (in_list(shm_before, n_before, shm_after[i]))
            continue;
        fprintf(stderr, "    FAIL: shared-memory object left behind: /dev/shm/%s\n", shm_after[i]);
        int dir = open("/dev/shm", O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
            unlinkat(dir, shm_after[i], 0);
            close(dir);
        }
        result = 1;
    }
    double dt = now_s() - t0;
    printf("%s %s (%s, %.2f s)\n",
           result == 0    ? "ok  "
           : result == 77 ? "skip"
                          : "FAIL",
           t->name, t->file, dt);
    fflush(stdout);
    return result;
}

/* --exclude patterns (at most MAX_EXCLUDES). */
#define MAX_EXCLUDES 16
static const char *excludes[MAX_EXCLUDES];
static int n_excludes;

static bool matches(const struct test_entry *t, const char *pattern)
{
    return strstr(t->name, pattern) || strstr(t->file, pattern);
}

/* Run t: it matches a PATTERN (or none was given) and no --exclude. */
static bool selected(const struct test_entry *t, int argc, char **argv, int first)
{
    for (int i = 0; i < n_excludes; i++)
        if (matches(t, excludes[i]))
            return false;
    if (first >= argc)
        return true;
    for (int i = first; i < argc; i++)
        if (matches(t, argv[i]))
            return true;
    return false;
}

/* A /dev/shm seen by this runner and its tests only; false where that is
 * not allowed (not root), and the machine's is used. */
static bool private_dev_shm(void)
{
    const char *keep = getenv("PF_TEST_SHARED_DEV_SHM");
    if ((keep && *keep && strcmp(keep, "0") != 0) || unshare(CLONE_NEWNS) != 0)
        return false;
    /* our mounts must not propagate back to the machine's namespace */
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("pfor-tests", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
        return false; /* still the machine's /dev/shm, seen from a namespace of our own */
    return true;
}

int main(int argc, char **argv)
{
    double timeout = 120.0;
    bool list = false;
    int first = 1;
    while (first < argc && argv[first][0] == '-') {
        if (strcmp(argv[first], "--list") == 0) {
            list = true;
            first++;
        } else if (strcmp(argv[first], "--timeout") == 0 && first + 1 < argc) {
            timeout = atof(argv[first + 1]);
            first += 2;
        } else if (strcmp(argv[first], "--exclude") == 0 && first + 1 < argc &&
                   n_excludes < MAX_EXCLUDES) {
            excludes[n_excludes++] = argv[first + 1];
            first += 2;
        } else {
            fprintf(stderr,
                    "usage: %s [--list] [--timeout SECONDS] [--exclude PATTERN]... "
                    "[PATTERN...]\n",
                    argv[0]);
            return 2;
        }
    }
    timeout *= pf_test_scale();
    if (list) {
        for (int i = 0; i < n_tests; i++)
            if (selected(&tests[i], argc, argv, first))
                printf("%s (%s)\n", tests[i].name, tests[i].file);
        return 0;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        perror("prctl(PR_SET_CHILD_SUBREAPER)");
    if (!private_dev_shm())
        fprintf(stderr, "note: tests share the machine's /dev/shm (not root): another program's "
                        "pfor objects created meanwhile would be blamed on a test\n");
    signal(SIGPIPE, SIG_IGN);

    int passed = 0, failed = 0, skipped = 0;
    double t0 = now_s();
    const char *failures[MAX_TESTS];
    for (int i = 0; i < n_tests; i++) {
        if (!selected(&tests[i], argc, argv, first))
            continue;
        int r = run_one(&tests[i], timeout);
        if (r == 0)
            passed++;
        else if (r == 77)
            skipped++;
        else
            failures[failed++] = tests[i].name;
    }
    printf("\n%d passed, %d failed, %d skipped in %.1f s\n", passed, failed, skipped, now_s() - t0);
    for (int i = 0; i < failed; i++)
        printf("  failed: %s\n", failures[i]);
    if (skipped && !getenv("PF_TEST_ALLOW_SKIP")) {
        printf("skipped tests count as failures (set PF_TEST_ALLOW_SKIP=1 to allow)\n");
        return 1;
    }
    return failed ? 1 : 0;
}
