/*
 * Batches on every backend: pf_dict_set_many applies pairs of one key in their
 * order (the last one wins) even when a batch spans several of the engine's
 * windows and is reordered by stripe; empty keys and values; pf_dict_get_many
 * calls back in order, for values bigger than its first buffer too; and
 * batches from two processes (shm) or two threads (local) at once, on the
 * same keys, leave every key holding one writer's whole value.
 */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict_util.h"
#include "test.h"

enum { N = 3000, KEYS = 700 };

static char keys[N][16], vals[N][16];
static pf_dict_item items[N];

/* Pair i sets key "d-(i % KEYS)" to "i". */
static void fill_dups(void)
{
    for (int i = 0; i < N; i++) {
        size_t kl = (size_t)snprintf(keys[i], sizeof keys[i], "d-%d", i % KEYS);
        size_t vl = (size_t)snprintf(vals[i], sizeof vals[i], "%d", i);
        items[i] = (pf_dict_item){keys[i], kl, vals[i], vl};
    }
}

static void expect_last_wins(pf_dict *d)
{
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, KEYS);
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "d-%d", k);
        int64_t v;
        ASSERT_OK(pf_dict_get_i64(d, key, strlen(key), &v));
        int last = k + (N - 1 - k) / KEYS * KEYS; /* the last i with i % KEYS == k */
        if (v != last)
            FAIL("%s = %lld, want %d (the batch's last pair for it)", key, (long long)v, last);
    }
}

struct order {
    size_t next;
    int bad;
};

/* get_many: index runs 0, 1, 2, ...; item i's value is i's decimal text
 * padded with 'x' to 10 + 97 * (i % 7) bytes (some past the first buffer). */
static int in_order(void *u, size_t index, int status, const void *val, size_t vlen)
{
    struct order *o = u;
    char want[800];
    size_t wl = 10 + 97 * (index % 7);
    memset(want, 'x', wl);
    memcpy(want, vals[index], strlen(vals[index]));
    if (index != o->next++ || status != 0 || vlen != wl || memcmp(val, want, wl) != 0)
        o->bad++;
    return 0;
}

static void suite(pf_dict_backend b)
{
    pf_test_redis r = {0};
    pf_dict *d = pf_test_dict_open(b, &r, NULL);
    fill_dups();
    ASSERT_OK(pf_dict_set_many(d, items, N));
    expect_last_wins(d);
    /* Again, the other way round: now the first pairs are the last ones. */
    for (int i = 0; i < N / 2; i++) {
        pf_dict_item t = items[i];
        items[i] = items[N - 1 - i];
        items[N - 1 - i] = t;
    }
    ASSERT_OK(pf_dict_set_many(d, items, N));
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "d-%d", k);
        int64_t v;
        ASSERT_OK(pf_dict_get_i64(d, key, strlen(key), &v));
        ASSERT_EQ(v, k); /* pair N-1-k..., reversed: key k's last pair is i = k */
    }

    /* NULL key and value pointers with zero lengths: the empty key and value. */
    pf_dict_item empty[3] = {{NULL, 0, "a", 1}, {"e", 1, NULL, 0}, {NULL, 0, NULL, 0}};
    ASSERT_OK(pf_dict_set_many(d, empty, 3));
    char buf[8];
    size_t n = 99;
    ASSERT_OK(pf_dict_get(d, "", 0, buf, sizeof buf, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(pf_dict_get(d, "e", 1, buf, sizeof buf, &n));
    ASSERT_EQ(n, 0);

    /* get_many in order, values from 10 to 592 bytes. */
    ASSERT_OK(pf_dict_clear(d));
    static char big[N][800];
    for (int i = 0; i < N; i++) {
        size_t wl = 10 + 97 * (size_t)(i % 7);
        snprintf(vals[i], sizeof vals[i], "%d", i);
        memset(big[i], 'x', wl);
        memcpy(big[i], vals[i], strlen(vals[i]));
        size_t kl = (size_t)snprintf(keys[i], sizeof keys[i], "g-%d", i);
        items[i] = (pf_dict_item){keys[i], kl, big[i], wl};
    }
    ASSERT_OK(pf_dict_set_many(d, items, N));
    struct order o = {0, 0};
    ASSERT_OK(pf_dict_get_many(d, items, N, in_order, &o));
    ASSERT_EQ(o.next, N);
    ASSERT_EQ(o.bad, 0);
    if (b != PF_DICT_REDIS) {
        char msg[256];
        int rc = pf_dict_check(d, msg, sizeof msg);
        if (rc)
            FAIL("pf_dict_check: %s", msg);
    }
    pf_dict_close(d);
    pf_test_redis_stop(&r);
}

TEST(dict_batch_local)
{
    suite(PF_DICT_LOCAL);
}

TEST(dict_batch_shm)
{
    suite(PF_DICT_SHM);
}

TEST(dict_batch_redis)
{
    suite(PF_DICT_REDIS);
}

/* Writer w's batches: every key "c-<k>" (k < KEYS) set to "<w>:<round>:<k>"
 * padded to 24 bytes with '.', one batch of KEYS pairs per round, in an order
 * that differs by round and writer. */
enum { ROUNDS = 20 };

static int write_rounds(pf_dict *d, int w)
{
    static __thread char kb[KEYS][16], vb[KEYS][24];
    static __thread pf_dict_item it[KEYS];
    for (int round = 0; round < ROUNDS; round++) {
        for (int j = 0; j < KEYS; j++) {
            int k = (j * 7 + round * 31 + w * 13) % KEYS;
            size_t kl = (size_t)snprintf(kb[j], sizeof kb[j], "c-%d", k);
            memset(vb[j], '.', sizeof vb[j]);
            int vl = snprintf(vb[j], sizeof vb[j], "%d:%d:%d", w, round, k);
            vb[j][vl] = '.';
            it[j] = (pf_dict_item){kb[j], kl, vb[j], sizeof vb[j]};
        }
        int rc = pf_dict_set_many(d, it, KEYS);
        if (rc)
            return rc;
    }
    return 0;
}

static void expect_whole(pf_dict *d)
{
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, KEYS);
    for (int k = 0; k < KEYS; k++) {
        char key[16], v[32];
        size_t n;
        snprintf(key, sizeof key, "c-%d", k);
        ASSERT_OK(pf_dict_get(d, key, strlen(key), v, sizeof v, &n));
        ASSERT_EQ(n, 24);
        int w, round, kk;
        v[n] = 0;
        if (sscanf(v, "%d:%d:%d", &w, &round, &kk) != 3 || kk != k || w < 0 || w > 1 || round < 0 ||
            round >= ROUNDS)
            FAIL("%s = \"%s\": not a whole last-round value of one writer", key, v);
    }
    char msg[256];
    int rc = pf_dict_check(d, msg, sizeof msg);
    if (rc)
        FAIL("pf_dict_check: %s", msg);
}

TEST(dict_batch_two_processes_same_keys)
{
    pf_dict *d = pf_test_dict_open(PF_DICT_SHM, NULL, NULL);
    pid_t pid[2];
    for (int w = 0; w < 2; w++) {
        fflush(NULL);
        pid[w] = fork();
        ASSERT(pid[w] >= 0);
        if (pid[w] == 0) {
            alarm((unsigned)(60 * pf_test_scale()));
            _exit(write_rounds(d, w) ? 1 : 0);
        }
    }
    for (int w = 0; w < 2; w++) {
        int st;
        ASSERT_EQ(waitpid(pid[w], &st, 0), pid[w]);
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    expect_whole(d);
    pf_dict_close(d);
}

struct writer {
    pf_dict *d;
    int w, rc;
};

static void *writer_main(void *arg)
{
    struct writer *t = arg;
    t->rc = write_rounds(t->d, t->w);
    return NULL;
}

TEST(dict_batch_two_threads_same_keys)
{
    pf_dict *d = pf_test_dict_open(PF_DICT_LOCAL, NULL, NULL);
    pthread_t th[2];
    struct writer t[2];
    for (int w = 0; w < 2; w++) {
        t[w] = (struct writer){d, w, -1};
        ASSERT_EQ(pthread_create(&th[w], NULL, writer_main, &t[w]), 0);
    }
    for (int w = 0; w < 2; w++) {
        ASSERT_EQ(pthread_join(th[w], NULL), 0);
        ASSERT_OK(t[w].rc);
    }
    expect_whole(d);
    pf_dict_close(d);
}
