/*
 * Concurrency proofs.  Many threads and many processes increment shared
 * counters through every read-modify-write path (incr, update_fn, a cas loop)
 * and the totals come out exact on every backend: the lost update of Python's
 * manager dict cannot happen.  Readers and iterators running beside writers
 * never see a torn entry.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict_util.h"
#include "test.h"

#define COUNTERS 8

struct work {
    pf_dict_ref ref;
    int incrs, fns, cases; /* operations per worker of each kind */
};

static int plus_one(void *arg, const void *old, size_t old_len, const void **nv, size_t *nl)
{
    char *buf = arg;
    int64_t v = 0;
    if (old && !pf__dict_parse_i64(old, old_len, &v))
        return PF_EINVAL;
    *nl = pf__dict_format_i64(v + 1, buf);
    *nv = buf;
    return PF_DICT_SET;
}

static int cas_increment(pf_dict *d, const char *key)
{
    for (;;) {
        char old[32], new[32];
        size_t n = 0;
        int64_t v = 0;
        int rc = pf_dict_get(d, key, strlen(key), old, sizeof old, &n);
        if (rc && rc != PF_ENOTFOUND)
            return rc;
        if (rc == 0 && !pf__dict_parse_i64(old, n, &v))
            return PF_EINVAL;
        size_t nn = pf__dict_format_i64(v + 1, new);
        bool sw;
        rc = pf_dict_cas(d, key, strlen(key), rc ? NULL : old, rc ? 0 : n, new, nn, &sw);
        if (rc || sw)
            return rc;
    }
}

/* One worker's share; returns 0 or the first error. */
static int do_work(const struct work *w, int id)
{
    pf_dict *d;
    int rc = pf_dict_from_ref(&d, &w->ref);
    if (rc)
        return rc;
    char buf[32], key[16];
    for (int i = 0; i < w->incrs && !rc; i++) {
        snprintf(key, sizeof key, "c%d", (i + id) % COUNTERS);
        rc = pf_dict_incr(d, key, strlen(key), 1, NULL);
    }
    for (int i = 0; i < w->fns && !rc; i++)
        rc = pf_dict_update_fn(d, "fn", 2, plus_one, buf);
    for (int i = 0; i < w->cases && !rc; i++)
        rc = cas_increment(d, "cas");
    pf_dict_close(d);
    return rc;
}

struct thr {
    const struct work *w;
    int id, rc;
};

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    t->rc = do_work(t->w, t->id);
    return NULL;
}

static void run_threads(const struct work *w, int nthreads)
{
    pthread_t th[16];
    struct thr t[16];
    for (int i = 0; i < nthreads; i++) {
        t[i] = (struct thr){w, i, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        ASSERT_OK(t[i].rc);
    }
}

static void run_processes(const struct work *w, int nprocs, int threads_each)
{
    pid_t pids[16];
    for (int i = 0; i < nprocs; i++) {
        fflush(NULL);
        pids[i] = fork();
        ASSERT(pids[i] >= 0);
        if (pids[i] == 0) {
            if (threads_each <= 1)
                _exit(do_work(w, i) ? 1 : 0);
            pthread_t th[8];
            struct thr t[8];
            for (int k = 0; k < threads_each; k++) {
                t[k] = (struct thr){w, i * threads_each + k, 0};
                pthread_create(&th[k], NULL, thr_main, &t[k]);
            }
            int bad = 0;
            for (int k = 0; k < threads_each; k++) {
                pthread_join(th[k], NULL);
                bad |= t[k].rc != 0;
            }
            _exit(bad);
        }
    }
    for (int i = 0; i < nprocs; i++) {
        int st;
        ASSERT_EQ(waitpid(pids[i], &st, 0), pids[i]);
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

static void verify(pf_dict *d, const struct work *w, int workers)
{
    int64_t total = 0, v;
    for (int c = 0; c < COUNTERS; c++) {
        char key[16];
        snprintf(key, sizeof key, "c%d", c);
        ASSERT_OK(pf_dict_get_i64(d, key, strlen(key), &v));
        total += v;
    }
    ASSERT_EQ(total, (int64_t)w->incrs * workers);
    ASSERT_OK(pf_dict_get_i64(d, "fn", 2, &v));
    ASSERT_EQ(v, (int64_t)w->fns * workers);
    ASSERT_OK(pf_dict_get_i64(d, "cas", 3, &v));
    ASSERT_EQ(v, (int64_t)w->cases * workers);
    char msg[256];
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
}

static int scaled(int n)
{
    int s = (int)(n / pf_test_scale());
    return s < 10 ? 10 : s;
}

TEST(dict_local_threads_exact_sums)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_open_local(&d, NULL));
    struct work w = {.incrs = scaled(20000), .fns = scaled(5000), .cases = scaled(2000)};
    ASSERT_OK(pf_dict_ref_get(d, &w.ref));
    run_threads(&w, 8);
    verify(d, &w, 8);
    pf_dict_close(d);
}

TEST(dict_shm_threads_exact_sums)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, NULL, NULL));
    struct work w = {.incrs = scaled(20000), .fns = scaled(5000), .cases = scaled(2000)};
    ASSERT_OK(pf_dict_ref_get(d, &w.ref));
    run_threads(&w, 8);
    verify(d, &w, 8);
    pf_dict_close(d);
}

TEST(dict_shm_processes_exact_sums)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, NULL, NULL));
    struct work w = {.incrs = scaled(20000), .fns = scaled(5000), .cases = scaled(2000)};
    ASSERT_OK(pf_dict_ref_get(d, &w.ref));
    /* 4 processes of 2 threads each, the parent's handle idle meanwhile. */
    run_processes(&w, 4, 2);
    verify(d, &w, 8);
    pf_dict_close(d);
}

TEST(dict_redis_processes_exact_sums)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    pf_dict *d;
    ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", r.port, "counters", NULL));
    struct work w = {.incrs = scaled(2000), .fns = scaled(300), .cases = scaled(300)};
    ASSERT_OK(pf_dict_ref_get(d, &w.ref));
    /* The parent's handle (and its connection) exist before the fork: each child
     * must get a connection of its own. */
    ASSERT_OK(pf_dict_set_i64(d, "fn", 2, 0));
    run_processes(&w, 4, 1);
    run_threads(&w, 2);
    verify(d, &w, 6);
    pf_dict_close(d);
    pf_test_redis_stop(&r);
}

TEST(dict_redis_unix_socket_and_threads)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    pf_dict *d;
    ASSERT_OK(pf_dict_open_redis(&d, r.sock, 0, "via-unix", NULL));
    struct work w = {.incrs = scaled(1000), .fns = scaled(100), .cases = scaled(100)};
    ASSERT_OK(pf_dict_ref_get(d, &w.ref));
    run_threads(&w, 4); /* one cached handle, one connection, four threads */
    verify(d, &w, 4);
    pf_dict_close(d);
    pf_test_redis_stop(&r);
}

/* ------------------------------------------------------------ torn entries -- */

/* A self-checking value: 8 bytes of version v, then (v % 300) bytes, all equal
 * to the low byte of v ^ key id. */
static size_t make_value(char *buf, uint64_t v, unsigned id)
{
    size_t n = 8 + v % 300;
    memcpy(buf, &v, 8);
    memset(buf + 8, (int)((v ^ id) & 0xff), n - 8);
    return n;
}

static bool value_ok(const void *key, size_t klen, const void *val, size_t vlen)
{
    unsigned id;
    uint64_t v;
    if (klen != sizeof id || vlen < 8)
        return false;
    memcpy(&id, key, sizeof id);
    memcpy(&v, val, 8);
    if (vlen != 8 + v % 300)
        return false;
    const unsigned char *p = val;
    for (size_t i = 8; i < vlen; i++)
        if (p[i] != ((v ^ id) & 0xff))
            return false;
    return true;
}

#define TORN_KEYS 2000

static void writer_loop(pf_dict *d, unsigned seed, atomic_int *stop, int max_rounds)
{
    char buf[400];
    uint64_t v = seed;
    for (int round = 0; !atomic_load(stop) && round < max_rounds; round++) {
        for (int i = 0; i < 200; i++) {
            v = v * 6364136223846793005ull + 1442695040888963407ull;
            unsigned id = (unsigned)(v >> 33) % TORN_KEYS;
            if ((v >> 20) % 5 == 0) {
                int rc = pf_dict_delete(d, &id, sizeof id);
                if (rc && rc != PF_ENOTFOUND)
                    FAIL("delete: %s", pf_err_name(rc));
            } else {
                size_t n = make_value(buf, v >> 8, id);
                ASSERT_OK(pf_dict_set(d, &id, sizeof id, buf, n));
            }
        }
    }
}

static int check_entry(void *u, const void *key, size_t klen, const void *val, size_t vlen)
{
    long *n = u;
    if (!value_ok(key, klen, val, vlen))
        FAIL("torn entry seen by the iterator (klen %zu, vlen %zu)", klen, vlen);
    (*n)++;
    return 0;
}

static void reader_rounds(pf_dict *d, int rounds)
{
    char buf[400];
    long seen = 0;
    for (int r = 0; r < rounds; r++) {
        ASSERT_OK(pf_dict_foreach(d, check_entry, &seen));
        for (unsigned id = 0; id < TORN_KEYS; id++) {
            size_t n;
            int rc = pf_dict_get(d, &id, sizeof id, buf, sizeof buf, &n);
            if (rc == PF_ENOTFOUND)
                continue;
            ASSERT_OK(rc);
            if (!value_ok(&id, sizeof id, buf, n))
                FAIL("torn value seen by get (key %u, vlen %zu)", id, n);
        }
    }
    ASSERT(seen > 0);
}

TEST(dict_shm_readers_never_see_torn_entries)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, NULL, &(pf_dict_opts){.stripes = 8}));
    static atomic_int never;
    writer_loop(d, 1, &never, 20); /* fill first */
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] == 0) {
            static atomic_int stop;
            writer_loop(d, 100 + (unsigned)i, &stop, 1 << 30);
            _exit(0);
        }
    }
    reader_rounds(d, scaled(60));
    for (int i = 0; i < 2; i++) {
        kill(pids[i], SIGKILL); /* even killed at any point, readers stay safe */
        waitpid(pids[i], NULL, 0);
    }
    reader_rounds(d, 2);
    char msg[256];
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
    pf_dict_close(d);
}

struct wthr {
    pf_dict *d;
    unsigned seed;
    atomic_int *stop;
};

static void *wthr_main(void *arg)
{
    struct wthr *w = arg;
    writer_loop(w->d, w->seed, w->stop, 1 << 30);
    return NULL;
}

static void threads_torn(pf_dict *d)
{
    static atomic_int stop;
    atomic_store(&stop, 0);
    writer_loop(d, 1, &stop, 20);
    pthread_t th[2];
    struct wthr w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (struct wthr){d, 200 + (unsigned)i, &stop};
        ASSERT_EQ(pthread_create(&th[i], NULL, wthr_main, &w[i]), 0);
    }
    reader_rounds(d, scaled(40));
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    char msg[256];
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
}

TEST(dict_local_readers_never_see_torn_entries)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_open_local(&d, &(pf_dict_opts){.stripes = 8}));
    threads_torn(d);
    pf_dict_close(d);
}

TEST(dict_shm_threads_never_see_torn_entries)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_create_shm(&d, NULL, &(pf_dict_opts){.stripes = 8}));
    threads_torn(d);
    pf_dict_close(d);
}
