/*
 * Deterministic kills.  A forked child runs one operation on a shm dict with a
 * pause point armed (pf__dict_pause_at): it stops itself exactly there, and the
 * parent SIGKILLs it.  Then the parent (and a fresh process) must find: no lock
 * stuck, the structure whole (pf_dict_check, which also proves no block leaked),
 * and the interrupted operation either not done at all (killed before its
 * commit) or done entirely (killed during or after it).
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict/engine.h"
#include "dict_util.h"
#include "test.h"

enum op { OP_SET, OP_DEL, OP_GET, OP_CLEAR };

/* Wait until child pid stops itself at `point`, then SIGKILL it. */
static void kill_stopped(pid_t pid, int point)
{
    int st;
    ASSERT_EQ(waitpid(pid, &st, WUNTRACED), pid);
    if (!WIFSTOPPED(st))
        FAIL("the child did not stop at point %d (status %#x)", point, st);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* Run op on key/val in a child that stops at `point`; kill it there. */
static void kill_at(pf_dict *d, int point, enum op op, const char *key, const void *val,
                    size_t vlen)
{
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        atomic_store(&pf__dict_pause_at, point);
        char buf[64];
        switch (op) {
        case OP_SET:
            pf_dict_set(d, key, strlen(key), val, vlen);
            break;
        case OP_DEL:
            pf_dict_delete(d, key, strlen(key));
            break;
        case OP_GET:
            pf_dict_get(d, key, strlen(key), buf, sizeof buf, NULL);
            break;
        case OP_CLEAR:
            pf_dict_clear(d);
            break;
        }
        _exit(3); /* the point was never reached */
    }
    kill_stopped(pid, point);
}

/* pf_dict_set_many(items, n) in a child that stops at the (skip + 1)-th pass
 * through `point`; kill it there. */
static void kill_batch_at(pf_dict *d, int point, int skip, const pf_dict_item *items, size_t n)
{
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        atomic_store(&pf__dict_pause_skip, skip);
        atomic_store(&pf__dict_pause_at, point);
        pf_dict_set_many(d, items, n);
        _exit(3);
    }
    kill_stopped(pid, point);
}

/* A fresh process opens the dict by name and checks it: it must be able to
 * take every lock (none is stuck) and find the structure whole. */
static void check_fresh(const char *name)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)(20 * pf_test_scale()));
        pf_dict *c;
        char msg[256];
        if (pf_dict_open_shm(&c, name))
            _exit(1);
        int rc = pf_dict_check(c, msg, sizeof msg);
        if (rc)
            fprintf(stderr, "check: %s\n", msg);
        _exit(rc ? 2 : 0);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void check_here(pf_dict *d)
{
    char msg[256];
    int rc = pf_dict_check(d, msg, sizeof msg);
    if (rc)
        FAIL("pf_dict_check: %s", msg);
}

static void expect(pf_dict *d, const char *key, const char *want)
{
    char buf[64];
    size_t n;
    int rc = pf_dict_get(d, key, strlen(key), buf, sizeof buf, &n);
    if (!want) {
        ASSERT_ERR(rc, PF_ENOTFOUND);
        return;
    }
    ASSERT_OK(rc);
    if (n != strlen(want) || memcmp(buf, want, n) != 0)
        FAIL("%s = \"%.*s\", want \"%s\"", key, (int)n, buf, want);
}

static pf_dict *fresh(unsigned stripes)
{
    pf_dict *d;
    pf_dict_opts o = {.stripes = stripes};
    ASSERT_OK(pf_dict_create_shm(&d, NULL, &o));
    return d;
}

static uint64_t repairs(pf_dict *d)
{
    return pf__eng_repairs(pf__dict_engine(d));
}

/* Single-stripe dicts with a key in them already, so that the first commit
 * an operation reaches is its own (not its stripe's first table). */
TEST(dict_kill_holding_lock_before_any_change)
{
    pf_dict *d = fresh(1);
    ASSERT_OK(pf_dict_set_str(d, "k", "old"));
    kill_at(d, PF__DP_LOCKED, OP_SET, "k", "new", 3);
    expect(d, "k", "old"); /* a lock-free read needs no lock */
    check_fresh(pf_dict_name(d));
    ASSERT(repairs(d) >= 1);
    ASSERT_OK(pf_dict_set_str(d, "k", "newer"));
    expect(d, "k", "newer");
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_after_filling_a_new_block)
{
    pf_dict *d = fresh(1);
    ASSERT_OK(pf_dict_set_str(d, "k", "old"));
    /* Insert of a new key, block taken from the stripe's bump chunk. */
    kill_at(d, PF__DP_FILLED, OP_SET, "n", "new", 3);
    expect(d, "n", NULL);
    check_here(d); /* the reserved block went back: accounting is exact */
    /* An insert whose block comes off a free list: the kill lands after the
     * new contents overwrote the free-list link, which the repair restores. */
    char v40[40];
    memset(v40, 'x', sizeof v40);
    ASSERT_OK(pf_dict_set(d, "k", 1, v40, sizeof v40)); /* bigger class: "old"'s block is freed */
    kill_at(d, PF__DP_FILLED, OP_SET, "m", "abc", 3);   /* pops that block */
    check_fresh(pf_dict_name(d));
    expect(d, "m", NULL);
    /* A small replacement is done in place, inside the commit record. */
    kill_at(d, PF__DP_TX_HALF, OP_SET, "k", "in-place", 8);
    expect(d, "k", "in-place");
    for (int i = 0; i < 100; i++) /* the free list still works */
        ASSERT_OK(pf_dict_set(d, "k", 1, "abc", 3));
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_halfway_through_a_commit)
{
    pf_dict *d = fresh(1);
    ASSERT_OK(pf_dict_set_str(d, "k", "old"));
    ASSERT_OK(pf_dict_set_str(d, "gone", "x"));
    /* Half the commit record applied: the next holder applies the rest. */
    kill_at(d, PF__DP_TX_HALF, OP_SET, "k", "new", 3);
    expect(d, "k", "new");
    kill_at(d, PF__DP_TX_HALF, OP_SET, "fresh", "v", 1);
    expect(d, "fresh", "v");
    kill_at(d, PF__DP_TX_HALF, OP_DEL, "gone", NULL, 0);
    expect(d, "gone", NULL);
    check_fresh(pf_dict_name(d));
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 2);
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_after_commit_with_seqlock_odd)
{
    pf_dict *d = fresh(1);
    ASSERT_OK(pf_dict_set_str(d, "a", "b"));
    kill_at(d, PF__DP_COMMITTED, OP_SET, "k", "new", 3);
    /* The seqlock is left odd: a reader must not spin forever; it takes the
     * lock, which repairs, and reads the committed value. */
    expect(d, "k", "new");
    check_fresh(pf_dict_name(d));
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_during_table_growth)
{
    pf_dict *d = fresh(1); /* one stripe: the 7th key grows its 8-slot table */
    char k[8];
    for (int i = 0; i < 6; i++) {
        snprintf(k, sizeof k, "k%d", i);
        ASSERT_OK(pf_dict_set_str(d, k, "v"));
    }
    kill_at(d, PF__DP_REHASH_FILLED, OP_SET, "k6", "v", 1);
    expect(d, "k6", NULL);
    check_fresh(pf_dict_name(d)); /* the new table's block was reclaimed */
    for (int i = 6; i < 200; i++) {
        snprintf(k, sizeof k, "k%d", i);
        ASSERT_OK(pf_dict_set_str(d, k, "v"));
    }
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "k%d", i);
        expect(d, k, "v");
    }
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_during_segment_growth)
{
    pf_dict *d = fresh(4);
    char *big = malloc(300 << 10);
    memset(big, 'b', 300 << 10);
    uint64_t size0 = pf__eng_size(pf__dict_engine(d));
    /* A big value needs a chunk of its own and the segment to grow: killed
     * after posix_fallocate, before the new size is published. */
    kill_at(d, PF__DP_GROW, OP_SET, "big", big, 300 << 10);
    ASSERT_EQ(pf__eng_size(pf__dict_engine(d)), size0);
    check_fresh(pf_dict_name(d));
    /* Killed half way through handing the chunk to the stripe. */
    kill_at(d, PF__DP_GTX_HALF, OP_SET, "big", big, 300 << 10);
    ASSERT_ERR(pf_dict_contains(d, "big", 3), PF_ENOTFOUND);
    check_here(d); /* the chunk is owned by the stripe and on its free list */
    ASSERT_OK(pf_dict_set(d, "big", 3, big, 300 << 10));
    void *p;
    size_t n;
    ASSERT_OK(pf_dict_get_alloc(d, "big", 3, &p, &n));
    ASSERT(n == 300 << 10 && memcmp(p, big, n) == 0);
    free(p);
    free(big);
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_the_repairer)
{
    pf_dict *d = fresh(1);
    ASSERT_OK(pf_dict_set_str(d, "k", "old"));
    kill_at(d, PF__DP_TX_HALF, OP_SET, "k", "new", 3);
    uint64_t r0 = repairs(d);
    /* A reader finds the stripe's seqlock odd, takes the lock, starts the
     * repair... and is killed in the middle of it. */
    kill_at(d, PF__DP_REPAIR, OP_GET, "k", NULL, 0);
    ASSERT(repairs(d) > r0);
    /* The next holder repairs again, from the start. */
    expect(d, "k", "new");
    check_fresh(pf_dict_name(d));
    check_here(d);
    pf_dict_close(d);
}

TEST(dict_kill_during_clear)
{
    pf_dict *d = fresh(2);
    for (int i = 0; i < 50; i++)
        ASSERT_OK(pf_dict_set(d, &i, sizeof i, "v", 1));
    kill_at(d, PF__DP_TX_HALF, OP_CLEAR, NULL, NULL, 0);
    check_fresh(pf_dict_name(d));
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT(len < 50);
    ASSERT_OK(pf_dict_clear(d));
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 0);
    check_here(d);
    pf_dict_close(d);
}

/* How many of keys "b0".."b9" hold "new" (the others must hold "old"). */
static int batch_news(pf_dict *d)
{
    int news = 0;
    for (int i = 0; i < 10; i++) {
        char k[8], buf[8];
        size_t n;
        snprintf(k, sizeof k, "b%d", i);
        ASSERT_OK(pf_dict_get(d, k, strlen(k), buf, sizeof buf, &n));
        if (n == 3 && memcmp(buf, "new", 3) == 0)
            news++;
        else if (n != 3 || memcmp(buf, "old", 3) != 0)
            FAIL("%s = \"%.*s\": neither old nor new", k, (int)n, buf);
    }
    return news;
}

/* A batch holds its stripe's lock across the pairs of the stripe (one
 * stripe: the whole batch), each pair its own commit.  Killed at the n-th
 * pair, the pairs before it are done, the n-th is done or not as for a
 * single set killed there, and the rest are not; the lock is recovered. */
TEST(dict_kill_in_the_middle_of_a_batch)
{
    pf_dict *d = fresh(1);
    static char keys[10][8];
    pf_dict_item olds[10], news[10];
    for (int i = 0; i < 10; i++) {
        size_t kl = (size_t)snprintf(keys[i], sizeof keys[i], "b%d", i);
        olds[i] = (pf_dict_item){keys[i], kl, "old", 3};
        news[i] = (pf_dict_item){keys[i], kl, "new", 3};
    }
    ASSERT_OK(pf_dict_set_many(d, olds, 10));
    /* Before any change of the first pair: nothing new. */
    kill_batch_at(d, PF__DP_LOCKED, 0, news, 10);
    ASSERT_EQ(batch_news(d), 0);
    check_fresh(pf_dict_name(d));
    /* Half way through the 5th pair's commit: the repair finishes it. */
    kill_batch_at(d, PF__DP_TX_HALF, 4, news, 10);
    check_fresh(pf_dict_name(d));
    ASSERT_EQ(batch_news(d), 5);
    ASSERT_OK(pf_dict_set_many(d, olds, 10));
    /* After the 3rd pair's commit, seqlock odd: 3 new. */
    kill_batch_at(d, PF__DP_COMMITTED, 2, news, 10);
    ASSERT_EQ(batch_news(d), 3);
    check_here(d);
    /* Inserts: the 3rd new key's block filled, not published: 2 inserted,
     * its block back where it came from (pf_dict_check counts every block). */
    static char ikeys[10][8];
    pf_dict_item ins[10];
    for (int i = 0; i < 10; i++) {
        size_t kl = (size_t)snprintf(ikeys[i], sizeof ikeys[i], "i%d", i);
        ins[i] = (pf_dict_item){ikeys[i], kl, "v", 1};
    }
    kill_batch_at(d, PF__DP_FILLED, 2, ins, 10);
    check_fresh(pf_dict_name(d));
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 12);
    ASSERT_OK(pf_dict_set_many(d, ins, 10));
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 20);
    check_here(d);
    pf_dict_close(d);
}
