/*
 * What only the shared-memory backend has: names, ownership and modes, refusing
 * segments it did not create, growth and its limit, refs across fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict/engine.h"
#include "dict_util.h"
#include "test.h"

static void uniq(char *buf, size_t cap, const char *what)
{
    static int n;
    snprintf(buf, cap, "%s-%d-%d", what, (int)getpid(), ++n);
}

static bool shm_exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/pfor-dict-%s", name);
    return access(path, F_OK) == 0;
}

static int wait_child(pid_t pid)
{
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

TEST(dict_shm_owner_close_removes_name)
{
    char name[64], path[300];
    uniq(name, sizeof name, "own");
    pf_dict *d, *other;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    ASSERT(shm_exists(name));
    snprintf(path, sizeof path, "/dev/shm/pfor-dict-%s", name);
    struct stat sb;
    ASSERT_EQ(stat(path, &sb), 0);
    ASSERT_EQ(sb.st_mode & 07777, 0600);
    ASSERT_EQ(sb.st_uid, geteuid());
    ASSERT_STREQ(pf_dict_name(d), name);
    ASSERT_OK(pf_dict_set_str(d, "k", "v"));

    /* A second handle is not the owner: its close leaves the name. */
    ASSERT_OK(pf_dict_open_shm(&other, name));
    pf_dict_close(other);
    ASSERT(shm_exists(name));

    /* A forked child's copy of the owner handle does not unlink either. */
    pid_t pid = fork();
    if (pid == 0) {
        pf_dict_close(d);
        _exit(0);
    }
    ASSERT_EQ(wait_child(pid), 0);
    ASSERT(shm_exists(name));

    /* The owner's close removes the name; open handles keep working. */
    ASSERT_OK(pf_dict_open_shm(&other, name));
    pf_dict_close(d);
    ASSERT(!shm_exists(name));
    char *s;
    ASSERT_OK(pf_dict_get_str(other, "k", &s));
    ASSERT_STREQ(s, "v");
    free(s);
    ASSERT_OK(pf_dict_set_str(other, "k2", "v2"));
    pf_dict_close(other);
    ASSERT_ERR(pf_dict_open_shm(&other, name), PF_ENOTFOUND);
    ASSERT(other == NULL);
}

TEST(dict_shm_exclusive_create)
{
    char name[64];
    uniq(name, sizeof name, "excl");
    pf_dict *d, *d2 = NULL;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    ASSERT_ERR(pf_dict_create_shm(&d2, name, NULL), PF_EEXIST);
    ASSERT(d2 == NULL);
    pf_dict_close(d);
    ASSERT_OK(pf_dict_create_shm(&d2, name, NULL)); /* free again */
    pf_dict_close(d2);
}

/* Pre-create the segment the way an attacker (or a stale file) would. */
static int precreate(const char *name, mode_t mode, size_t size, int fill)
{
    char path[300];
    snprintf(path, sizeof path, "/pfor-dict-%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, mode);
    ASSERT(fd >= 0);
    ASSERT_EQ(fchmod(fd, mode), 0);
    if (size) {
        ASSERT_EQ(ftruncate(fd, (off_t)size), 0);
        char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT(p != MAP_FAILED);
        memset(p, fill, size);
        munmap(p, size);
    }
    return fd;
}

static void unlink_name(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/pfor-dict-%s", name);
    shm_unlink(path);
}

TEST(dict_shm_refuses_foreign_segments)
{
    char name[64];
    pf_dict *d = NULL;
    uniq(name, sizeof name, "evil");
    pf__dict_open_wait_ns = 100000000; /* 0.1 s for a creator that never finishes */

    /* Someone else's mode: refused, and the name cannot be taken over. */
    int fd = precreate(name, 0644, 65536, 0);
    ASSERT_ERR(pf_dict_open_shm(&d, name), PF_EPERM);
    ASSERT_ERR(pf_dict_create_shm(&d, name, NULL), PF_EEXIST);
    ASSERT(d == NULL);

    /* Another user's segment (made ours to chown only because tests run as
     * root; as any other user the open would fail the same way). */
    ASSERT_EQ(fchmod(fd, 0600), 0);
    if (geteuid() == 0) {
        ASSERT_EQ(fchown(fd, 65534, 65534), 0);
        ASSERT_ERR(pf_dict_open_shm(&d, name), PF_EPERM);
        ASSERT_ERR(pf_dict_remove_shm(name), PF_EPERM);
        ASSERT_EQ(fchown(fd, 0, 0), 0);
    }

    /* Ours, 0600, but not a dict: garbage, then a zeroed header (a creator
     * that died before writing it). */
    char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT(p != MAP_FAILED);
    memset(p, 0x5a, 65536);
    ASSERT_ERR(pf_dict_open_shm(&d, name), PF_ECORRUPT);
    memcpy(p, "PFORDICT", 8); /* right magic, wrong everything else */
    ASSERT_ERR(pf_dict_open_shm(&d, name), PF_ECORRUPT);
    memset(p, 0, 65536);
    ASSERT_ERR(pf_dict_open_shm(&d, name), PF_EBUSY);
    munmap(p, 65536);
    ASSERT_EQ(ftruncate(fd, 0), 0);
    ASSERT_ERR(pf_dict_open_shm(&d, name), PF_EBUSY);
    ASSERT(d == NULL);
    close(fd);
    ASSERT_OK(pf_dict_remove_shm(name));
    ASSERT(!shm_exists(name));
    unlink_name(name);
}

TEST(dict_shm_names)
{
    pf_dict *d = NULL;
    char longname[PF_DICT_MAX_NAME + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *bad[] = {"", "a/b", "x y", "../x", "\xc3\xa9", longname};
    for (size_t i = 0; i < PF__ARRAY_SIZE(bad); i++) {
        ASSERT_ERR(pf_dict_create_shm(&d, bad[i], NULL), PF_EINVAL);
        ASSERT_ERR(pf_dict_open_shm(&d, bad[i]), PF_EINVAL);
    }
    longname[PF_DICT_MAX_NAME] = '\0';
    longname[0] = 'A' + (char)(getpid() % 26);
    ASSERT_OK(pf_dict_create_shm(&d, longname, NULL));
    pf_dict_close(d);
    ASSERT_ERR(pf_dict_open_shm(&d, "no-such-dict-here"), PF_ENOTFOUND);
    ASSERT_ERR(pf_dict_remove_shm("no-such-dict-here"), PF_ENOTFOUND);
    ASSERT_ERR(pf_dict_open_shm(&d, NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_create_shm(NULL, "x", NULL), PF_EINVAL);
    pf_dict_opts o = {.stripes = 5};
    ASSERT_ERR(pf_dict_create_shm(&d, "x-opts", &o), PF_EINVAL);

    /* No name: a fresh unique one, removed by the owner's close. */
    pf_dict *a, *b;
    ASSERT_OK(pf_dict_create_shm(&a, NULL, NULL));
    ASSERT_OK(pf_dict_create_shm(&b, NULL, NULL));
    ASSERT(strcmp(pf_dict_name(a), pf_dict_name(b)) != 0);
    ASSERT(shm_exists(pf_dict_name(a)));
    pf_dict *a2;
    ASSERT_OK(pf_dict_open_shm(&a2, pf_dict_name(a)));
    pf_dict_close(a2);
    pf_dict_close(a);
    pf_dict_close(b);
}

TEST(dict_shm_growth_limit_is_enospc)
{
    char name[64], msg[256];
    uniq(name, sizeof name, "full");
    pf_dict_opts o = {.stripes = 16, .max_bytes = pf__eng_fixed_size(16) + (512 << 10)};
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, &o));
    char val[100];
    memset(val, 'v', sizeof val);
    int n = 0, rc;
    for (;; n++) {
        rc = pf_dict_set(d, &n, sizeof n, val, sizeof val);
        if (rc)
            break;
        ASSERT(n < 100000);
    }
    ASSERT_ERR(rc, PF_ENOSPC);
    ASSERT(n > 1000);
    /* The refused insert left nothing behind, and everything before it is there. */
    ASSERT_ERR(pf_dict_contains(d, &n, sizeof n), PF_ENOTFOUND);
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, n);
    for (int i = 0; i < n; i++)
        ASSERT_OK(pf_dict_contains(d, &i, sizeof i));
    char *big = calloc(1, 200000);
    ASSERT_ERR(pf_dict_set(d, "big", 3, big, 200000), PF_ENOSPC);
    free(big);
    ASSERT_EQ(pf__eng_size(pf__dict_engine(d)), o.max_bytes);
    /* Space freed by deletes is used again. */
    for (int i = 0; i < n; i += 2)
        ASSERT_OK(pf_dict_delete(d, &i, sizeof i));
    for (int i = 0; i < n / 4; i++) {
        int k = -1 - i;
        ASSERT_OK(pf_dict_set(d, &k, sizeof k, val, sizeof val));
    }
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
    pf_dict_close(d);
}

/* Writers draw their lanes from the dict itself: the first four writer
 * processes get four distinct lanes, whatever their process ids.  Three
 * short-lived processes before each writer make the writers' ids (usually)
 * equal modulo 4, which put them all on one lane when the lane was the
 * thread id mod 4. */
TEST(dict_shm_first_writers_get_distinct_lanes)
{
    char name[64];
    uniq(name, sizeof name, "lanes");
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    unsigned seen = 0;
    for (int w = 0; w < 4; w++) {
        for (int k = 0; k < 3; k++) {
            pid_t spacer = fork();
            if (spacer == 0)
                _exit(0);
            ASSERT_EQ(wait_child(spacer), 0);
        }
        pid_t pid = fork();
        if (pid == 0) {
            if (pf_dict_set(d, &w, sizeof w, "x", 1))
                _exit(100);
            _exit(10 + (int)pf__eng_lane(pf__dict_engine(d)));
        }
        int code = wait_child(pid);
        ASSERT(code >= 10 && code < 14);
        seen |= 1u << (code - 10);
    }
    ASSERT_EQ(seen, 0xfu);
    pf_dict_close(d);
}

TEST(dict_shm_grows_across_processes)
{
    char name[64], msg[256];
    uniq(name, sizeof name, "grow");
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    uint64_t size0 = pf__eng_size(pf__dict_engine(d));
    enum { N = 60000 };
    pid_t pid = fork();
    if (pid == 0) {
        /* Like an unrelated process: open by name, not the inherited handle. */
        pf_dict *c;
        if (pf_dict_open_shm(&c, name))
            _exit(1);
        for (int i = 0; i < N; i++) {
            char v[40];
            int vl = snprintf(v, sizeof v, "value %d", i);
            if (pf_dict_set(c, &i, sizeof i, v, (size_t)vl))
                _exit(2);
        }
        pf_dict_close(c);
        _exit(0);
    }
    ASSERT_EQ(wait_child(pid), 0);
    ASSERT(pf__eng_size(pf__dict_engine(d)) > size0);
    ASSERT(pf__eng_grows(pf__dict_engine(d)) > 0);
    for (int i = 0; i < N; i++) {
        char v[40], got[40];
        size_t n;
        int vl = snprintf(v, sizeof v, "value %d", i);
        ASSERT_OK(pf_dict_get(d, &i, sizeof i, got, sizeof got, &n));
        ASSERT(n == (size_t)vl && memcmp(got, v, n) == 0);
    }
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
    pf_dict_close(d);
}

TEST(dict_shm_refs_across_fork)
{
    char name[64];
    uniq(name, sizeof name, "ref");
    /* A worker forked before the dict exists, as a process-pool worker is:
     * it gets the ref's bytes through a pipe. */
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t early = fork();
    if (early == 0) {
        pf_dict_ref ref;
        if (read(fds[0], &ref, sizeof ref) != (ssize_t)sizeof ref)
            _exit(1);
        pf_dict *first = NULL;
        for (int i = 0; i < 100; i++) {
            pf_dict *h;
            if (pf_dict_from_ref(&h, &ref))
                _exit(2);
            if (first && h != first)
                _exit(3); /* cached: one open per process */
            first = h;
            if (pf_dict_incr(h, "n", 1, 1, NULL))
                _exit(4);
            pf_dict_close(h);
        }
        _exit(0);
    }
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    pf_dict_ref ref;
    ASSERT_OK(pf_dict_ref_get(d, &ref));
    ASSERT_EQ(write(fds[1], &ref, sizeof ref), (ssize_t)sizeof ref);
    /* Children forked after: the inherited cache state is fine too. */
    pf_dict *mine;
    ASSERT_OK(pf_dict_from_ref(&mine, &ref));
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            for (int i = 0; i < 100; i++) {
                pf_dict *h;
                if (pf_dict_from_ref(&h, &ref) || pf_dict_incr(h, "n", 1, 1, NULL))
                    _exit(1);
                pf_dict_close(h);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 3; k++)
        ASSERT_EQ(wait_child(kids[k]), 0);
    ASSERT_EQ(wait_child(early), 0);
    close(fds[0]);
    close(fds[1]);
    int64_t n;
    ASSERT_OK(pf_dict_get_i64(d, "n", 1, &n));
    ASSERT_EQ(n, 400);
    pf_dict_close(mine);

    /* Once the owner closed it, the ref finds nothing, even when a new dict
     * takes the same name. */
    pf_dict_close(d);
    pf_dict *h = NULL;
    ASSERT_ERR(pf_dict_from_ref(&h, &ref), PF_ENOTFOUND);
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    ASSERT_ERR(pf_dict_from_ref(&h, &ref), PF_ENOTFOUND);
    ASSERT(h == NULL);
    pf_dict_close(d);
}

TEST(dict_local_ref_stays_in_its_process)
{
    pf_dict *d, *h = NULL;
    ASSERT_OK(pf_dict_open_local(&d, NULL));
    pf_dict_ref ref;
    ASSERT_OK(pf_dict_ref_get(d, &ref));
    ASSERT_OK(pf_dict_from_ref(&h, &ref));
    ASSERT(h == d);
    pid_t pid = fork();
    if (pid == 0) {
        pf_dict *c = NULL;
        _exit(pf_dict_from_ref(&c, &ref) == PF_ENOTSUP && c == NULL ? 0 : 1);
    }
    ASSERT_EQ(wait_child(pid), 0);
    /* The ref keeps the dict alive until it is closed too. */
    pf_dict_close(d);
    ASSERT_OK(pf_dict_set_str(h, "still", "here"));
    pf_dict_close(h);
    ASSERT_ERR(pf_dict_from_ref(&h, &ref), PF_ENOTFOUND);
}

TEST(dict_shm_survives_its_owner)
{
    char name[64];
    uniq(name, sizeof name, "orphan");
    pid_t pid = fork();
    if (pid == 0) {
        pf_dict *d;
        if (pf_dict_create_shm(&d, name, NULL) || pf_dict_set_str(d, "k", "v"))
            _exit(1);
        _exit(0); /* dies without closing */
    }
    ASSERT_EQ(wait_child(pid), 0);
    ASSERT(shm_exists(name));
    pf_dict *d;
    ASSERT_OK(pf_dict_open_shm(&d, name));
    char *s;
    ASSERT_OK(pf_dict_get_str(d, "k", &s));
    ASSERT_STREQ(s, "v");
    free(s);
    pf_dict_close(d);
    ASSERT(shm_exists(name)); /* not the owner */
    ASSERT_OK(pf_dict_remove_shm(name));
    ASSERT(!shm_exists(name));
}

/* A segment scribbled on (by a stray write of a process of the same user)
 * gives PF_ECORRUPT, never a crash, a write through a bad offset or an
 * mprotect outside the reservation.  One word at a time; each operation runs
 * in a child on a fresh dict so that a crash is seen as a signal.  Expected
 * per operation (get, foreach, clear, check, set of a new key): 'C' corrupt,
 * '0' success, '*' either. */
static int visit_nothing(void *u, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)u, (void)k, (void)kl, (void)v, (void)vl;
    return 0;
}

/* A one-stripe shm dict named after `what` (the name into name) holding 20
 * entries "k0".."k19": the target of the scribbling tests below. */
#define SCRIBBLE_MAX_BYTES (64ull << 20)

static pf_dict *small_dict_to_scribble_on(char *name, size_t cap, const char *what)
{
    uniq(name, cap, what);
    pf_dict_opts o = {.stripes = 1, .max_bytes = SCRIBBLE_MAX_BYTES};
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, &o));
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        ASSERT_OK(pf_dict_set_str(d, k, "value"));
    }
    return d;
}

static int scribbled_op(pf_dict *d, int op)
{
    char buf[64], msg[200];
    switch (op) {
    case 0:
        return pf_dict_get(d, "k1", 2, buf, sizeof buf, NULL);
    case 1:
        return pf_dict_foreach(d, visit_nothing, NULL);
    case 2:
        return pf_dict_clear(d);
    case 3:
        return pf_dict_check(d, msg, sizeof msg);
    default:
        return pf_dict_set_str(d, "a-new-key", "v");
    }
}

TEST(dict_shm_scribbled_segment_is_corrupt_not_a_crash)
{
    static const struct {
        const char *what;
        const char *expect; /* get foreach clear check set */
    } cases[] = {
        {"table", "CCCCC"},         {"chunk", "00*CC"}, {"top", "00*C*"},
        {"top+full lane", "***CC"}, {"size", "***C*"},  {"class", "*CCC*"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int op = 0; op < 5; op++) {
            char name[64];
            pf_dict *d = small_dict_to_scribble_on(name, sizeof name, "scribble");
            pf__eng *e = pf__dict_engine(d);
            uint64_t magic = *(uint64_t *)e->base;
            for (unsigned l = 0; l < 4; l++) { /* every lane: the child draws its own */
                uint64_t *cur = pf__eng_word_for_tests(e, PF__EW_CHUNK_CUR, 0, l);
                uint64_t *end = pf__eng_word_for_tests(e, PF__EW_CHUNK_END, 0, l);
                if (c == 1) {
                    *cur = 0x7ff000000000ull;
                    *end = 0x7ff000100000ull;
                } else if (c == 3) { /* the next insert needs a new chunk ... */
                    *cur = *end;
                }
            }
            switch (c) {
            case 0:
                *pf__eng_word_for_tests(e, PF__EW_TABLE, 0, 0) = 0x7ff000000000ull;
                break;
            case 2:
                *pf__eng_word_for_tests(e, PF__EW_TOP, 0, 0) = 0x7ff000000000ull;
                break;
            case 3: /* ... from a top inside the header */
                *pf__eng_word_for_tests(e, PF__EW_TOP, 0, 0) = 0;
                break;
            case 4:
                *pf__eng_word_for_tests(e, PF__EW_SIZE, 0, 0) = SCRIBBLE_MAX_BYTES + (64ull << 20);
                break;
            case 5: { /* the class byte of one entry: 200 of 103 classes */
                uint64_t *meta = pf__eng_word_for_tests(e, PF__EW_ENTRY_META, 0, 0);
                ASSERT(meta != NULL);
                *meta = (*meta & ~(0xffull << 32)) | 200ull << 32;
                break;
            }
            }
            pid_t pid = fork();
            ASSERT(pid >= 0);
            if (pid == 0) {
                int rc = scribbled_op(d, op);
                _exit(rc == PF_OK ? 0 : rc == PF_ECORRUPT ? 1 : 3);
            }
            int code = wait_child(pid);
            char want = cases[c].expect[op], msg[200];
            bool header_whole = *(uint64_t *)e->base == magic; /* nothing written over it */
            int check = pf_dict_check(d, msg, sizeof msg);
            pf_dict_close(d);
            ASSERT(!shm_exists(name));
            if (code > 1 || (want == 'C' && code != 1) || (want == '0' && code != 0))
                FAIL("scribbled %s, operation %d: child exit %d, want %c", cases[c].what, op, code,
                     want);
            ASSERT(header_whole);
            ASSERT_ERR(check, PF_ECORRUPT);
        }
    }
}

/* Run op(d, arg) in a child, bounded by 5 s (scaled): 0 for PF_OK, 1 for
 * PF_ECORRUPT, what the child made of other outcomes (see the callers), 128 +
 * a signal, or -1 if it still ran (a hang: killed).  The child's data segment
 * is limited in plain builds, so that a walk that never ends (which collects
 * what it saw) fails soon instead of filling the machine's memory. */
static int run_op_bounded(int (*op)(pf_dict *, int), pf_dict *d, int arg)
{
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        struct rlimit rl = {1ull << 30, 1ull << 30};
        setrlimit(RLIMIT_DATA, &rl);
#endif
        _exit(op(d, arg));
    }
    uint64_t limit_ms = (uint64_t)(5000 * pf_test_scale());
    for (uint64_t ms = 0;; ms += 5) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (ms > limit_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(5000);
    }
}

static int item_seen(void *u, size_t i, int status, const void *v, size_t vl)
{
    (void)u, (void)i, (void)status, (void)v, (void)vl;
    return 0;
}

static int update_to_u(void *arg, const void *old, size_t old_len, const void **nv, size_t *nl)
{
    (void)arg, (void)old, (void)old_len;
    *nv = "u";
    *nl = 1;
    return PF_DICT_SET;
}

/* One public operation of the dict (numbered as in the expectations of
 * dict_shm_scribbled_lock_is_corrupt_not_an_abort). */
static int public_op(pf_dict *d, int op)
{
    char buf[64], msg[200];
    size_t n;
    bool flag;
    pf_dict_item items[3] = {{"m1", 2, "v", 1}, {"m2", 2, "v", 1}, {"k1", 2, NULL, 0}};
    switch (op) {
    case 0:
        return pf_dict_get(d, "k1", 2, buf, sizeof buf, NULL);
    case 1:
        return pf_dict_len(d, &n);
    case 2:
        return pf_dict_set_str(d, "a-new-key", "v");
    case 3:
        return pf_dict_set_str(d, "k1", "VALUE"); /* the same length: in place */
    case 4:
        return pf_dict_delete(d, "k2", 2);
    case 5:
        return pf_dict_incr(d, "n", 1, 1, NULL);
    case 6:
        return pf_dict_cas(d, "c", 1, NULL, 0, "x", 1, &flag);
    case 7:
        return pf_dict_get_or_insert(d, "g", 1, "x", 1, NULL, NULL, &flag);
    case 8:
        return pf_dict_update_fn(d, "u", 1, update_to_u, NULL);
    case 9:
        return pf_dict_set_many(d, items, 2);
    case 10:
        return pf_dict_get_many(d, items, 3, item_seen, NULL);
    case 11:
        return pf_dict_foreach(d, visit_nothing, NULL);
    case 12: {
        pf_dict_iter *it;
        int rc = pf_dict_iter_open(d, &it);
        if (rc == 0)
            rc = pf_dict_iter_next(it, NULL, NULL, NULL, NULL);
        pf_dict_iter_close(it);
        return rc;
    }
    case 13:
        return pf_dict_clear(d);
    default:
        return pf_dict_check(d, msg, sizeof msg);
    }
}

/* A child's verdict on one operation: 0 success, 1 PF_ECORRUPT and the dict
 * says so from then on (a lock-free get and len too), 3 another code, 4
 * PF_ECORRUPT once only.  (pf_dict_check reports what it finds without
 * marking the dict: the test's emptied lanes may be what it finds first.) */
static int public_op_verdict(pf_dict *d, int op)
{
    int rc = public_op(d, op);
    if (rc == PF_OK)
        return 0;
    if (rc != PF_ECORRUPT)
        return 3;
    if (op == 14)
        return 1;
    char buf[64];
    size_t n;
    return pf_dict_get(d, "k1", 2, buf, sizeof buf, NULL) == PF_ECORRUPT &&
                   pf_dict_len(d, &n) == PF_ECORRUPT
               ? 1
               : 4;
}

/* A lock whose bytes a stray write overwrote (pthreads answers EINVAL) makes
 * every operation that takes it report PF_ECORRUPT and mark the dict, never
 * abort; operations that need no lock go on until the damage is found.  One
 * dict per operation, each run in a child.  The global lock is taken only for
 * a new chunk: every lane's chunk is used up first.  Expected per operation
 * of public_op: 'C' corrupt, '0' success. */
TEST(dict_shm_scribbled_lock_is_corrupt_not_an_abort)
{
    static const struct {
        const char *what;
        const char *expect;
    } cases[] = {
        {"stripe lock", "00CCCCCCCC0CCCC"},
        {"global lock", "00C00CCCCC0000C"},
    };
    for (size_t c = 0; c < PF__ARRAY_SIZE(cases); c++) {
        for (int op = 0; op < 15; op++) {
            char name[64], msg[200];
            pf_dict *d = small_dict_to_scribble_on(name, sizeof name, "lock");
            pf__eng *e = pf__dict_engine(d);
            if (c == 1) {
                for (unsigned l = 0; l < 4; l++)
                    *pf__eng_word_for_tests(e, PF__EW_CHUNK_CUR, 0, l) =
                        *pf__eng_word_for_tests(e, PF__EW_CHUNK_END, 0, l);
            }
            enum pf__eng_word w = c == 0 ? PF__EW_STRIPE_LOCK : PF__EW_GLOBAL_LOCK;
            memset(pf__eng_word_for_tests(e, w, 0, 0), 0xff, sizeof(pthread_mutex_t));
            int code = run_op_bounded(public_op_verdict, d, op);
            int check = pf_dict_check(d, msg, sizeof msg);
            pf_dict_close(d);
            ASSERT(!shm_exists(name));
            char want = cases[c].expect[op];
            if ((want == 'C' && code != 1) || (want == '0' && code != 0))
                FAIL("scribbled %s, operation %d: child exit %d, want %c", cases[c].what, op, code,
                     want);
            ASSERT_ERR(check, PF_ECORRUPT);
        }
    }
}

/* The update function runs under the stripe lock: it overwrites that lock,
 * all of it (an unknown kind: EINVAL) or only its owner word (another thread's
 * id: EPERM, and the lock looks held from then on). */
struct overwrite {
    void *lock;
    int how;
};

static int overwrite_own_lock(void *arg, const void *old, size_t old_len, const void **nv,
                              size_t *nl)
{
    (void)old, (void)old_len, (void)nv, (void)nl;
    struct overwrite *o = arg;
    if (o->how == 0)
        memset(o->lock, 0xff, sizeof(pthread_mutex_t));
    else
        *(uint32_t *)o->lock = 1; /* glibc: the lock word, owner tid 1 (init) */
    return PF_DICT_KEEP;
}

/* A stripe lock overwritten while held: its unlock fails, which is
 * PF_ECORRUPT, not an abort; later operations say PF_ECORRUPT too, a write
 * included (it does not sleep on a lock that looks held for good).  glibc
 * keeps such a lock on the thread's robust list and writes through it at the
 * thread's next robust lock, so closing the dict keeps its mapping: another
 * dict still works afterwards.  (ThreadSanitizer reports an unlock that
 * answers EINVAL as a misuse itself: that case is left to the other builds.) */
TEST(dict_shm_lock_overwritten_while_held_is_corrupt)
{
#if defined(__SANITIZE_THREAD__)
    const int first = 1;
#else
    const int first = 0;
#endif
    for (int how = first; how < 2; how++) {
        char name[64], other[64], buf[16];
        uniq(name, sizeof name, "held");
        uniq(other, sizeof other, "held-other");
        pf_dict_opts o = {.stripes = 1};
        pf_dict *d, *d2;
        ASSERT_OK(pf_dict_create_shm(&d, name, &o));
        ASSERT_OK(pf_dict_set_str(d, "k1", "value"));
        struct overwrite ow = {pf__eng_word_for_tests(pf__dict_engine(d), PF__EW_STRIPE_LOCK, 0, 0),
                               how};
        ASSERT_ERR(pf_dict_update_fn(d, "k1", 2, overwrite_own_lock, &ow), PF_ECORRUPT);
        ASSERT_ERR(pf_dict_get(d, "k1", 2, buf, sizeof buf, NULL), PF_ECORRUPT);
        ASSERT_ERR(pf_dict_set_str(d, "k1", "other"), PF_ECORRUPT);
        pf_dict_close(d);
        ASSERT(!shm_exists(name));
        for (int i = 0; i < 3; i++) { /* robust locks of this thread, the old one listed */
            ASSERT_OK(pf_dict_create_shm(&d2, other, &o));
            ASSERT_OK(pf_dict_set_str(d2, "k", "v"));
            char *s;
            ASSERT_OK(pf_dict_get_str(d2, "k", &s));
            ASSERT_STREQ(s, "v");
            free(s);
            pf_dict_close(d2);
            ASSERT(!shm_exists(other));
        }
    }
}

/* A local dict's locks are private, but a stray write of the process can hit
 * them all the same: PF_ECORRUPT, and a fork() (whose handlers take every
 * lock of every local dict) goes on. */
TEST(dict_local_scribbled_lock_is_corrupt_not_an_abort)
{
    pf_dict_opts o = {.stripes = 1};
    pf_dict *d;
    char buf[16];
    ASSERT_OK(pf_dict_open_local(&d, &o));
    ASSERT_OK(pf_dict_set_str(d, "k1", "value"));
    memset(pf__eng_word_for_tests(pf__dict_engine(d), PF__EW_STRIPE_LOCK, 0, 0), 0xff,
           sizeof(pthread_mutex_t));
    ASSERT_ERR(pf_dict_set_str(d, "k2", "value"), PF_ECORRUPT);
    ASSERT_ERR(pf_dict_get(d, "k1", 2, buf, sizeof buf, NULL), PF_ECORRUPT);
#if !defined(__SANITIZE_THREAD__) /* it reports pthread_mutex_lock of an overwritten mutex */
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0)
        _exit(pf_dict_set_str(d, "k3", "v") == PF_ECORRUPT ? 0 : 1);
    ASSERT_EQ(wait_child(pid), 0);
#endif
    ASSERT_ERR(pf_dict_clear(d), PF_ECORRUPT);
    pf_dict_close(d);
}

/* A dead holder's commit record, scribbled to store over the stripe's own
 * lock, is refused by the repair (PF_ECORRUPT) instead of applied: the lock
 * stays whole, so its consistent/unlock never fail. */
TEST(dict_shm_repair_never_writes_over_a_lock)
{
    char name[64], msg[200], buf[16];
    uniq(name, sizeof name, "redo");
    pf_dict_opts o = {.stripes = 1};
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, &o));
    ASSERT_OK(pf_dict_set_str(d, "k1", "value"));
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) { /* dies holding the stripe lock, nothing changed */
        atomic_store(&pf__dict_pause_at, PF__DP_LOCKED);
        pf_dict_set_str(d, "k2", "value");
        _exit(3);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, WUNTRACED), pid);
    ASSERT(WIFSTOPPED(st));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    pf__eng *e = pf__dict_engine(d);
    uint64_t *tx = pf__eng_word_for_tests(e, PF__EW_TX, 0, 3);
    uint64_t *lock = pf__eng_word_for_tests(e, PF__EW_STRIPE_LOCK, 0, 0);
    tx[2] = (uint64_t)((char *)lock - e->base); /* one store: over the lock word */
    tx[3] = ~0ull;
    tx[1] = 1;
    tx[0] = 1;                                                  /* active */
    ASSERT_ERR(pf_dict_set_str(d, "k3", "value"), PF_ECORRUPT); /* repairs, and refuses */
    ASSERT_ERR(pf_dict_get(d, "k1", 2, buf, sizeof buf, NULL), PF_ECORRUPT);
    ASSERT_ERR(pf_dict_check(d, msg, sizeof msg), PF_ECORRUPT);
    ASSERT_NE(*lock & 0xffffffffu, 0xffffffffu);
    pf_dict_close(d);
    ASSERT(!shm_exists(name));
}

/* pf_dict_check on a free list that loops: PF_ECORRUPT, at once, even with
 * the stripe's `owned` (which bounded the walk before) raised as far as it
 * goes.  Free blocks come from deleted entries; the last one's link is
 * pointed back at the first (or the first's at itself). */
static int check_op(pf_dict *d, int unused)
{
    (void)unused;
    char msg[200];
    int rc = pf_dict_check(d, msg, sizeof msg);
    return rc == PF_OK ? 0 : rc == PF_ECORRUPT ? (strstr(msg, "loops") ? 1 : 5) : 3;
}

TEST(dict_shm_check_ends_on_a_free_list_cycle)
{
    for (int c = 0; c < 2; c++) {
        char name[64], msg[200];
        uniq(name, sizeof name, "cycle");
        pf_dict_opts o = {.stripes = 1};
        pf_dict *d;
        ASSERT_OK(pf_dict_create_shm(&d, name, &o));
        for (int i = 0; i < 20; i++)
            ASSERT_OK(pf_dict_set(d, &i, sizeof i, "value", 5));
        for (int i = 0; i < 10; i++)
            ASSERT_OK(pf_dict_delete(d, &i, sizeof i));
        ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
        pf__eng *e = pf__dict_engine(d);
        uint64_t *head = NULL;
        for (unsigned cls = 0; !head; cls++) {
            uint64_t *h = pf__eng_word_for_tests(e, PF__EW_FREE_HEAD, 0, cls);
            ASSERT(h != NULL); /* a list holds the deleted entries */
            if (*h)
                head = h;
        }
        uint64_t *last = (uint64_t *)(e->base + *head);
        int len = 1;
        while (*last) {
            last = (uint64_t *)(e->base + *last);
            len++;
        }
        ASSERT_EQ(len, 10);
        if (c == 0)
            *last = *head;
        else
            *(uint64_t *)(e->base + *head) = *head;
        *pf__eng_word_for_tests(e, PF__EW_OWNED, 0, 0) = ~0ull;
        int code = run_op_bounded(check_op, d, 0);
        pf_dict_close(d);
        ASSERT(!shm_exists(name));
        if (code != 1)
            FAIL("free list %s: check child exit %d, want 1 (PF_ECORRUPT, \"loops\")",
                 c == 0 ? "cycle" : "self-loop", code);
    }
}

/* A write that grows the table with a scribbled count ends, with
 * PF_ECORRUPT: a count so big that doubling the capacity up to twice it
 * would wrap, or so small (with enough tombstones to ask for a rebuild)
 * that the new table cannot hold the entries the old one has. */
static int set_new_key(pf_dict *d, int unused)
{
    (void)unused;
    int rc = pf_dict_set_str(d, "a-new-key", "v");
    return rc == PF_OK ? 0 : rc == PF_ECORRUPT ? 1 : 3;
}

TEST(dict_shm_scribbled_counts_do_not_hang_a_write)
{
    for (int c = 0; c < 2; c++) {
        char name[64], msg[200];
        uniq(name, sizeof name, "count");
        pf_dict_opts o = {.stripes = 1};
        pf_dict *d;
        ASSERT_OK(pf_dict_create_shm(&d, name, &o));
        for (int i = 0; i < 20; i++)
            ASSERT_OK(pf_dict_set(d, &i, sizeof i, "value", 5));
        pf__eng *e = pf__dict_engine(d);
        uint64_t *count = pf__eng_word_for_tests(e, PF__EW_COUNT, 0, 0);
        if (c == 0) {
            *count = ~0ull - 1;
        } else {
            *count = 0;
            *pf__eng_word_for_tests(e, PF__EW_TOMBS, 0, 0) =
                *pf__eng_word_for_tests(e, PF__EW_CAP, 0, 0);
        }
        int code = run_op_bounded(set_new_key, d, 0);
        int check = pf_dict_check(d, msg, sizeof msg);
        pf_dict_close(d);
        ASSERT(!shm_exists(name));
        if (code != 1)
            FAIL("count %s: set child exit %d, want 1 (PF_ECORRUPT)", c == 0 ? "huge" : "zero",
                 code);
        ASSERT_ERR(check, PF_ECORRUPT);
    }
}

static int visit_stop_with(void *u, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    return *(int *)u;
}

/* pf_dict_foreach returns what stopped it: the callback's value, whatever it
 * is, even the code the iterator uses for its end. */
TEST(dict_foreach_returns_the_callbacks_stop_value)
{
    char name[64];
    uniq(name, sizeof name, "stop");
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    ASSERT_OK(pf_dict_set_str(d, "k", "v"));
    const int codes[] = {1, -7, PF_ECANCELLED, PF_EEOF};
    for (size_t i = 0; i < PF__ARRAY_SIZE(codes); i++) {
        int stop = codes[i];
        ASSERT_EQ(pf_dict_foreach(d, visit_stop_with, &stop), stop);
    }
    pf_dict_close(d);
}

/* Run fn(name) in a child; FAIL if it is still running after 2 s (scaled):
 * the name operations must never block on what another user put there. */
static int run_bounded(void (*fn)(const char *), const char *name)
{
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        fn(name);
        _exit(0);
    }
    uint64_t limit_ms = (uint64_t)(2000 * pf_test_scale());
    for (uint64_t ms = 0;; ms += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (ms > limit_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1; /* hung */
        }
        usleep(10000);
    }
}

static void remove_expect_eperm(const char *name)
{
    _exit(pf_dict_remove_shm(name) == PF_EPERM ? 0 : 1);
}

static void open_expect_eperm(const char *name)
{
    pf_dict *d = NULL;
    _exit(pf_dict_open_shm(&d, name) == PF_EPERM && d == NULL ? 0 : 1);
}

/* The owner's close, after someone removed its name and put a FIFO there:
 * it must neither block nor remove the FIFO. */
static void owner_close_over_fifo(const char *name)
{
    char path[300];
    pf_dict *d;
    if (pf_dict_create_shm(&d, name, NULL) || pf_dict_remove_shm(name))
        _exit(2);
    snprintf(path, sizeof path, "/dev/shm/pfor-dict-%s", name);
    if (mkfifo(path, 0666) != 0)
        _exit(3);
    pf_dict_close(d);
    _exit(access(path, F_OK) == 0 ? 0 : 4);
}

/* What another user may put under a dict's name in the world-writable /dev/shm
 * (a FIFO, a symlink, a directory) is refused with PF_EPERM: never a hang
 * (opening a FIFO to read waits for a writer), never followed. */
TEST(dict_shm_names_that_are_not_segments)
{
    char name[64], path[300];
    uniq(name, sizeof name, "fifo");
    snprintf(path, sizeof path, "/dev/shm/pfor-dict-%s", name);
    ASSERT_EQ(mkfifo(path, 0600), 0);
    int remove_rc = run_bounded(remove_expect_eperm, name);
    int open_rc = run_bounded(open_expect_eperm, name);
    unlink(path);
    ASSERT_EQ(remove_rc, 0);
    ASSERT_EQ(open_rc, 0);

    int close_rc = run_bounded(owner_close_over_fifo, name);
    unlink(path);
    ASSERT_EQ(close_rc, 0);

    /* A symlink to a file of ours with the right owner and mode, and a directory. */
    char target[300];
    uniq(name, sizeof name, "link");
    snprintf(path, sizeof path, "/dev/shm/pfor-dict-%s", name);
    snprintf(target, sizeof target, "/dev/shm/pfor-target-%s", name);
    int fd = open(target, O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT_EQ(symlink(target, path), 0);
    pf_dict *d = NULL;
    int link_open = pf_dict_open_shm(&d, name);
    int link_remove = pf_dict_remove_shm(name);
    unlink(path);
    unlink(target);
    ASSERT_ERR(link_open, PF_EPERM);
    ASSERT_ERR(link_remove, PF_EPERM);
    ASSERT(d == NULL);

    ASSERT_EQ(mkdir(path, 0700), 0);
    int dir_open = pf_dict_open_shm(&d, name);
    int dir_remove = pf_dict_remove_shm(name);
    rmdir(path);
    ASSERT_ERR(dir_open, PF_EPERM);
    ASSERT_ERR(dir_remove, PF_EPERM);
}

/* The owner's close marks the dict destroyed, then removes the name.  An owner
 * killed between the two (or an open racing with its close) leaves a destroyed
 * dict under the name: opening it by name or by ref is PF_ENOTFOUND, as it is
 * once the name is gone, not a handle on a dict nobody will read. */
TEST(dict_shm_destroyed_dict_is_not_found)
{
    char name[64];
    uniq(name, sizeof name, "destroyed");
    pf_dict *d, *h = NULL;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    pf_dict_ref ref;
    ASSERT_OK(pf_dict_ref_get(d, &ref));
    pf__eng_set_destroyed(pf__dict_engine(d)); /* what the close does first */
    int by_name = pf_dict_open_shm(&h, name);
    pf_dict_close(h);
    h = NULL;
    int by_ref = pf_dict_from_ref(&h, &ref);
    pf_dict_close(h);
    pf_dict_close(d);
    ASSERT(!shm_exists(name));
    ASSERT_ERR(by_name, PF_ENOTFOUND);
    ASSERT_ERR(by_ref, PF_ENOTFOUND);
}

/* Descriptors open below RLIMIT_NOFILE (valgrind keeps its own above). */
static int count_fds(void)
{
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int n = 0;
    for (int fd = 0; fd < (int)rl.rlim_cur && fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

/* Every refused open gives back its descriptor and its mappings. */
TEST(dict_shm_refused_opens_leak_nothing)
{
    char name[64];
    uniq(name, sizeof name, "leak");
    pf__dict_open_wait_ns = 20000000;
    pf_dict *d, *h = NULL;
    ASSERT_OK(pf_dict_create_shm(&d, name, NULL));
    pf_dict_ref ref;
    ASSERT_OK(pf_dict_ref_get(d, &ref));
    pf_dict_ref bad = ref;
    bad.bytes[16] ^= 1; /* the nonce */
    int fds = count_fds();
    for (int i = 0; i < 50; i++)
        ASSERT_ERR(pf_dict_from_ref(&h, &bad), PF_ENOTFOUND);
    ASSERT_EQ(count_fds(), fds);
    /* A segment shorter than its published size is corrupt, not a SIGBUS. */
    pf__eng *e = pf__dict_engine(d);
    ASSERT_EQ(ftruncate(e->fd, (off_t)e->arena_off), 0);
    for (int i = 0; i < 50; i++)
        ASSERT_ERR(pf_dict_open_shm(&h, name), PF_ECORRUPT);
    ASSERT_EQ(count_fds(), fds);
    ASSERT(h == NULL);
    pf_dict_close(d);
}

static int fill_until_error(pf_dict *d, int tag, int *n)
{
    char val[3000];
    memset(val, 'v', sizeof val);
    for (*n = 0;; ++*n) {
        int k[2] = {tag, *n};
        int rc = pf_dict_set(d, k, sizeof k, val, (size_t)(*n % 7 == 0 ? 3000 : 100));
        if (rc)
            return rc;
        if (*n > 100000)
            return 0;
    }
}

/* A /dev/shm of 3 MiB (a mount namespace of its own, so the real one is never
 * filled): creating more than fits and growing past it are PF_ENOSPC, never a
 * SIGBUS, in the creator and in another process; the dict stays whole. */
TEST(dict_shm_full_dev_shm_is_enospc)
{
    if (geteuid() != 0)
        SKIP("needs root for a private /dev/shm");
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) ||
            mount("pfor-full", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=3m,mode=1777"))
            _exit(77);
        char msg[256];
        pf_dict *d, *big = NULL;
        /* 4096 stripes need more than 3 MiB before the first key. */
        pf_dict_opts huge = {.stripes = 4096};
        if (pf_dict_create_shm(&big, "full-big", &huge) != PF_ENOSPC || big)
            _exit(10);
        if (access("/dev/shm/pfor-dict-full-big", F_OK) == 0)
            _exit(11);
        pf_dict_opts o = {.stripes = 16};
        if (pf_dict_create_shm(&d, "full", &o))
            _exit(12);
        int n, rc = fill_until_error(d, 1, &n);
        if (rc != PF_ENOSPC || n < 100)
            _exit(13);
        if (pf_dict_check(d, msg, sizeof msg) || pf_dict_contains(d, (int[]){1, n}, 8) == 0)
            _exit(14);
        pid_t c = fork();
        if (c == 0) { /* another process, by name: its growth fails the same way */
            pf_dict *h;
            int m;
            if (pf_dict_open_shm(&h, "full"))
                _exit(1);
            _exit(fill_until_error(h, 2, &m) == PF_ENOSPC ? 0 : 2);
        }
        int st;
        if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(15);
        for (int i = 0; i < n; i++)
            if (pf_dict_contains(d, (int[]){1, i}, 8))
                _exit(16);
        if (pf_dict_check(d, msg, sizeof msg))
            _exit(17);
        pf_dict_close(d);
        _exit(access("/dev/shm/pfor-dict-full", F_OK) == 0 ? 18 : 0);
    }
    int code = wait_child(pid);
    if (code == 77)
        SKIP("cannot mount a private /dev/shm");
    ASSERT_EQ(code, 0);
}

/* A second name for one of this user's dicts (a hard link, which anyone may
 * make where fs.protected_hardlinks is 0) is refused: opening "b" must never
 * silently give the dict created as "a". */
TEST(dict_shm_refuses_a_hard_link_to_another_dict)
{
    char a[64], b[64], pa[300], pb[300];
    uniq(a, sizeof a, "linked");
    uniq(b, sizeof b, "link");
    snprintf(pa, sizeof pa, "/dev/shm/pfor-dict-%s", a);
    snprintf(pb, sizeof pb, "/dev/shm/pfor-dict-%s", b);
    pf_dict *d, *h = NULL;
    ASSERT_OK(pf_dict_create_shm(&d, a, NULL));
    ASSERT_EQ(link(pa, pb), 0);
    int rc = pf_dict_open_shm(&h, b);
    pf_dict_close(h);
    int removed = pf_dict_remove_shm(b); /* ours: the extra name can go */
    unlink(pb);
    pf_dict_close(d);
    ASSERT(!shm_exists(a));
    ASSERT_ERR(rc, PF_EPERM);
    ASSERT_OK(removed);
}

/* An iteration that met a damaged entry says PF_ECORRUPT, and so does every
 * later step: it never goes on to hand out the entries it had copied from the
 * damaged stripe before the damage (nor, after a transient error, copies a
 * stripe twice). */
TEST(dict_shm_iteration_stays_failed_after_corruption)
{
    char name[64];
    uniq(name, sizeof name, "iter");
    pf_dict_opts o = {.stripes = 1};
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, name, &o));
    for (int i = 0; i < 20; i++)
        ASSERT_OK(pf_dict_set(d, &i, sizeof i, "value", 5));
    /* The class byte of the table's last entry: the ones before it copy fine. */
    pf__eng *e = pf__dict_engine(d);
    uint64_t tab = *pf__eng_word_for_tests(e, PF__EW_TABLE, 0, 0);
    uint64_t cap = *pf__eng_word_for_tests(e, PF__EW_CAP, 0, 0);
    uint64_t *meta = NULL;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t sl = *(uint64_t *)(e->base + tab + 16 + i * 8);
        if (sl > 1)
            meta = (uint64_t *)(e->base + ((sl & 0xffffffffull) << 4) + 8);
    }
    ASSERT(meta != NULL);
    *meta = (*meta & ~(0xffull << 32)) | 200ull << 32;
    pf_dict_iter *it;
    ASSERT_OK(pf_dict_iter_open(d, &it));
    int first = pf_dict_iter_next(it, NULL, NULL, NULL, NULL);
    int second = pf_dict_iter_next(it, NULL, NULL, NULL, NULL);
    pf_dict_iter_close(it);
    pf_dict_close(d);
    ASSERT_ERR(first, PF_ECORRUPT);
    ASSERT_ERR(second, PF_ECORRUPT);
}
