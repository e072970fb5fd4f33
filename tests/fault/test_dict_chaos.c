/*
 * Chaos: forked children run a million operations in total on one shm dict
 * (sets of values from 4 bytes to 20 KiB, deletes, increments of a shared
 * counter; the segment grows meanwhile) while the parent SIGKILLs them at
 * random instants and starts them again.
 *
 * Every child keeps a log, in memory shared with the parent, of what the dict
 * must hold: the acknowledged version of each of its keys (keys are per child,
 * so the log alone decides their state), and an "in flight" note written
 * before each operation and cleared after its success.  A killed child's note
 * leaves one key whose state may be either the old or the new one: the next
 * incarnation (or the parent at the end) reads the dict to tell which, and
 * anything else is a lost or invented write.  The shared counter must end
 * between the sum of acknowledged increments and that plus the increments in
 * flight at the kills.  At the end: pf_dict_check passes (no leaked block),
 * a fresh process can take every lock, and every key holds exactly what its
 * log says.
 */
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict/engine.h"
#include "dict_util.h"
#include "test.h"

#define SLOTS 4     /* children alive at a time */
#define KEYS  1500  /* keys per child */
#define BIG   20000 /* bytes of the occasional big value */

struct slot_log {
    /* Written by the slot's current child only; read by the next incarnation and
     * the parent after the child is dead.  volatile keeps the stores in order. */
    volatile uint32_t ver[KEYS];          /* acknowledged version, 0: absent */
    volatile uint32_t vcounter;           /* last version handed out */
    volatile uint32_t pend_key, pend_ver; /* the operation in flight (pend_ver 0: delete) */
    volatile uint32_t pend_active;
    volatile uint32_t incr_pend;
    volatile int64_t incr_acked, incr_uncertain;
    volatile int64_t acked_ops;
    volatile uint32_t failed; /* a child saw a wrong value: the message is in why */
    char why[200];
};

struct shared {
    atomic_long claimed; /* operations handed out to children */
    long total;
    struct slot_log slot[SLOTS];
};

static size_t value_of(char *buf, unsigned s, unsigned k, uint32_t v)
{
    size_t n = (v % 97 == 0) ? BIG : 4 + (v * 37u + k) % 200;
    memcpy(buf, &v, 4);
    memset(buf + 4, (int)((s * 31 + k + v) & 0xff), n - 4);
    return n;
}

static void key_of(char *key, unsigned s, unsigned k)
{
    snprintf(key, 16, "s%u-%u", s, k);
}

/* Does the dict hold version v (0: absent) at key k of slot s? */
static int holds(pf_dict *d, unsigned s, unsigned k, uint32_t v, char *buf, char *want)
{
    char key[16];
    size_t n;
    key_of(key, s, k);
    int rc = pf_dict_get(d, key, strlen(key), buf, BIG, &n);
    if (rc == PF_ENOTFOUND)
        return v == 0;
    if (rc)
        return -1;
    if (v == 0)
        return 0;
    size_t wn = value_of(want, s, k, v);
    return n == wn && memcmp(buf, want, n) == 0;
}

/* Settle the operation a killed incarnation left in flight. */
static int settle(pf_dict *d, struct slot_log *L, unsigned s, char *buf, char *want)
{
    if (L->incr_pend) {
        L->incr_uncertain++;
        L->incr_pend = 0;
    }
    if (!L->pend_active)
        return 0;
    unsigned k = L->pend_key;
    int now_new = holds(d, s, k, L->pend_ver, buf, want);
    int now_old = holds(d, s, k, L->ver[k], buf, want);
    if (now_new == 1)
        L->ver[k] = L->pend_ver;
    else if (now_old != 1) {
        snprintf(L->why, sizeof L->why, "slot %u key %u: neither version %u nor %u", s, k,
                 L->pend_ver, L->ver[k]);
        return -1;
    }
    L->pend_active = 0;
    return 0;
}

static void fail_child(struct slot_log *L, const char *fmt, unsigned a, unsigned b, int rc)
{
    snprintf(L->why, sizeof L->why, fmt, a, b, pf_err_name(rc));
    L->failed = 1;
    _exit(10);
}

static void child(struct shared *sh, unsigned s, const pf_dict_ref *ref, uint64_t seed)
{
    struct slot_log *L = &sh->slot[s];
    pf_dict *d;
    static char buf[BIG], want[BIG], val[BIG];
    int orc = pf_dict_from_ref(&d, ref);
    if (orc)
        fail_child(L, "slot %u (incarnation %u): pf_dict_from_ref gave %s", s, 0, orc);
    if (settle(d, L, s, buf, want)) {
        L->failed = 1;
        _exit(11);
    }
    uint64_t x = seed | 1;
    char key[16];
    while (atomic_fetch_add(&sh->claimed, 1) < sh->total) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned k = (unsigned)(x >> 40) % KEYS, dice = (unsigned)(x >> 20) % 100;
        key_of(key, s, k);
        if (dice < 25) {
            L->incr_pend = 1;
            int rc = pf_dict_incr(d, "total", 5, 1, NULL);
            if (rc)
                fail_child(L, "slot %u: incr failed %u %s", s, 0, rc);
            L->incr_acked++;
            L->incr_pend = 0;
        } else if (dice < 40) {
            uint32_t had = L->ver[k];
            L->pend_key = k;
            L->pend_ver = 0;
            L->pend_active = 1;
            int rc = pf_dict_delete(d, key, strlen(key));
            if (rc == 0 ? had == 0 : (rc != PF_ENOTFOUND || had != 0))
                fail_child(L, "slot %u key %u: delete gave %s", s, k, rc);
            L->ver[k] = 0;
            L->pend_active = 0;
        } else if (dice < 45) {
            int h = holds(d, s, k, L->ver[k], buf, want);
            if (h != 1)
                fail_child(L, "slot %u key %u: get does not match the log%s", s, k, 0);
        } else {
            uint32_t v = ++L->vcounter;
            size_t n = value_of(val, s, k, v);
            L->pend_key = k;
            L->pend_ver = v;
            L->pend_active = 1;
            int rc = pf_dict_set(d, key, strlen(key), val, n);
            if (rc)
                fail_child(L, "slot %u key %u: set failed %s", s, k, rc);
            L->ver[k] = v;
            L->pend_active = 0;
        }
        L->acked_ops++;
    }
    _exit(0);
}

static pid_t spawn(struct shared *sh, unsigned s, const pf_dict_ref *ref, uint64_t seed)
{
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0)
        child(sh, s, ref, seed);
    return pid;
}

TEST(dict_chaos_million_ops_with_random_kills)
{
    long total = (long)(1000000 / pf_test_scale());
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(sh != MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    sh->total = total;
    pf_dict *d;
    pf_dict_opts o = {.stripes = 16, .max_bytes = 256ull << 20};
    ASSERT_OK(pf_dict_create_shm(&d, NULL, &o));
    pf_dict_ref ref;
    ASSERT_OK(pf_dict_ref_get(d, &ref));
    uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    printf("    chaos seed %llu, %ld operations\n", (unsigned long long)seed, total);

    pid_t pids[SLOTS];
    for (unsigned s = 0; s < SLOTS; s++)
        pids[s] = spawn(sh, s, &ref, seed + s);
    unsigned alive = SLOTS, kills = 0, restarts = 0;
    uint64_t r = seed;
    while (alive) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        struct timespec ts = {0, (long)(20000 + (r >> 33) % 400000)}; /* 20 - 420 us */
        nanosleep(&ts, NULL);
        /* Reap children that finished their share (or failed). */
        for (unsigned s = 0; s < SLOTS; s++) {
            int st;
            if (pids[s] > 0 && waitpid(pids[s], &st, WNOHANG) == pids[s]) {
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    FAIL("child of slot %u ended with status %#x: %s", s, st, sh->slot[s].why);
                pids[s] = 0;
                alive--;
            }
        }
        if (!alive || atomic_load(&sh->claimed) >= total)
            continue;
        unsigned s = (unsigned)(r >> 17) % SLOTS;
        if (pids[s] <= 0)
            continue;
        kill(pids[s], SIGKILL);
        int st;
        ASSERT_EQ(waitpid(pids[s], &st, 0), pids[s]);
        if (WIFEXITED(st)) { /* it finished just before the kill */
            if (WEXITSTATUS(st) != 0)
                FAIL("child of slot %u failed: %s", s, sh->slot[s].why);
            pids[s] = 0;
            alive--;
            continue;
        }
        kills++;
        if (atomic_load(&sh->claimed) < total) {
            pids[s] = spawn(sh, s, &ref, r);
            restarts++;
        } else {
            pids[s] = 0;
            alive--;
        }
    }

    /* Nothing stuck: a fresh process takes every lock and finds the dict whole. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)(30 * pf_test_scale()));
        pf_dict *c;
        char msg[256];
        if (pf_dict_open_shm(&c, pf_dict_name(d)))
            _exit(1);
        int rc = pf_dict_check(c, msg, sizeof msg);
        if (rc)
            fprintf(stderr, "    check in a fresh process: %s\n", msg);
        _exit(rc ? 2 : 0);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* Every acknowledged write is there, with its value; nothing else is. */
    static char buf[BIG], want[BIG];
    int64_t acked = 0, uncertain = 0, ops = 0;
    size_t present = 0;
    for (unsigned s = 0; s < SLOTS; s++) {
        struct slot_log *L = &sh->slot[s];
        if (settle(d, L, s, buf, want))
            FAIL("%s", L->why);
        for (unsigned k = 0; k < KEYS; k++) {
            if (holds(d, s, k, L->ver[k], buf, want) != 1)
                FAIL("slot %u key %u does not hold version %u", s, k, L->ver[k]);
            present += L->ver[k] != 0;
        }
        acked += L->incr_acked;
        uncertain += L->incr_uncertain;
        ops += L->acked_ops;
    }
    int64_t counter;
    ASSERT_OK(pf_dict_get_i64(d, "total", 5, &counter));
    ASSERT_GE(counter, acked);
    ASSERT_LE(counter, acked + uncertain);
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, present + 1);
    char msg[256];
    int rc = pf_dict_check(d, msg, sizeof msg);
    if (rc)
        FAIL("pf_dict_check: %s", msg);
    uint64_t repairs = pf__eng_repairs(pf__dict_engine(d));
    printf("    %u kills, %u restarts, %llu lock repairs, %lld acknowledged operations, "
           "%zu keys, counter %lld (acked %lld, %lld in doubt), segment %llu KiB\n",
           kills, restarts, (unsigned long long)repairs, (long long)ops, present,
           (long long)counter, (long long)acked, (long long)uncertain,
           (unsigned long long)(pf__eng_size(pf__dict_engine(d)) >> 10));
    ASSERT(kills >= 10);
    ASSERT(ops >= total - kills); /* every claimed op but the killed ones was acknowledged */
    pf_dict_close(d);
    munmap(sh, sizeof *sh);
}
