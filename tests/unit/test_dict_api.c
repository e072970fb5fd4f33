/*
 * The dict API on every backend: each suite below is one function over a
 * pf_dict *, run on a local dict, a shm dict and a redis dict (a private
 * redis-server started by the test).  Every operation, every documented error.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict_util.h"
#include "test.h"

/* ------------------------------------------------------------------ suites -- */

static void suite_basic(pf_dict *d)
{
    char buf[64];
    size_t n = 99;
    ASSERT_ERR(pf_dict_get(d, "nope", 4, buf, sizeof buf, &n), PF_ENOTFOUND);
    ASSERT_EQ(n, 0);
    ASSERT_ERR(pf_dict_contains(d, "k", 1), PF_ENOTFOUND);
    ASSERT_ERR(pf_dict_delete(d, "k", 1), PF_ENOTFOUND);

    ASSERT_OK(pf_dict_set(d, "k", 1, "value", 5));
    ASSERT_OK(pf_dict_contains(d, "k", 1));
    ASSERT_OK(pf_dict_get(d, "k", 1, buf, sizeof buf, &n));
    ASSERT_EQ(n, 5);
    ASSERT(memcmp(buf, "value", 5) == 0);

    /* Replace with a longer and then a shorter value. */
    char big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    ASSERT_OK(pf_dict_set(d, "k", 1, big, sizeof big));
    void *p = NULL;
    ASSERT_OK(pf_dict_get_alloc(d, "k", 1, &p, &n));
    ASSERT_EQ(n, sizeof big);
    ASSERT(memcmp(p, big, sizeof big) == 0);
    free(p);
    /* Too small a buffer: the length needed comes back. */
    ASSERT_ERR(pf_dict_get(d, "k", 1, buf, sizeof buf, &n), PF_ETOOBIG);
    ASSERT_EQ(n, sizeof big);
    ASSERT_ERR(pf_dict_get(d, "k", 1, NULL, 0, &n), PF_ETOOBIG);
    ASSERT_EQ(n, sizeof big);
    ASSERT_OK(pf_dict_set(d, "k", 1, "v2", 2));
    ASSERT_OK(pf_dict_get(d, "k", 1, buf, 2, &n));
    ASSERT_EQ(n, 2);
    ASSERT(memcmp(buf, "v2", 2) == 0);

    /* Empty key, empty value, binary bytes with NULs. */
    ASSERT_OK(pf_dict_set(d, NULL, 0, NULL, 0));
    ASSERT_OK(pf_dict_get(d, "", 0, buf, sizeof buf, &n));
    ASSERT_EQ(n, 0);
    p = NULL;
    ASSERT_OK(pf_dict_get_alloc(d, "", 0, &p, &n));
    ASSERT(p != NULL);
    ASSERT_EQ(n, 0);
    free(p);
    const char bk[] = {0, 1, 0, 2}, bv[] = {0, 0, 'x', 0};
    ASSERT_OK(pf_dict_set(d, bk, sizeof bk, bv, sizeof bv));
    ASSERT_OK(pf_dict_get(d, bk, sizeof bk, buf, sizeof buf, &n));
    ASSERT_EQ(n, 4);
    ASSERT(memcmp(buf, bv, 4) == 0);
    ASSERT_ERR(pf_dict_contains(d, bk, 3), PF_ENOTFOUND);

    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 3);
    ASSERT_OK(pf_dict_delete(d, "k", 1));
    ASSERT_ERR(pf_dict_get(d, "k", 1, buf, sizeof buf, &n), PF_ENOTFOUND);
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 2);

    /* Many keys: tables grow, every key is still there. */
    for (int i = 0; i < 5000; i++) {
        char k[32], v[32];
        int kl = snprintf(k, sizeof k, "key-%d", i), vl = snprintf(v, sizeof v, "val-%d", i * 3);
        ASSERT_OK(pf_dict_set(d, k, (size_t)kl, v, (size_t)vl));
    }
    for (int i = 0; i < 5000; i += 3) {
        char k[32];
        int kl = snprintf(k, sizeof k, "key-%d", i);
        ASSERT_OK(pf_dict_delete(d, k, (size_t)kl));
    }
    for (int i = 0; i < 5000; i++) {
        char k[32], v[32];
        int kl = snprintf(k, sizeof k, "key-%d", i), vl = snprintf(v, sizeof v, "val-%d", i * 3);
        int rc = pf_dict_get(d, k, (size_t)kl, buf, sizeof buf, &n);
        if (i % 3 == 0) {
            ASSERT_ERR(rc, PF_ENOTFOUND);
        } else {
            ASSERT_OK(rc);
            ASSERT_EQ(n, vl);
            ASSERT(memcmp(buf, v, n) == 0);
        }
    }
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 2 + 5000 - 1667);
    char msg[256];
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));

    ASSERT_OK(pf_dict_clear(d));
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, 0);
    ASSERT_ERR(pf_dict_contains(d, "key-1", 5), PF_ENOTFOUND);
    ASSERT_OK(pf_dict_set(d, "after", 5, "clear", 5));
    ASSERT_OK(pf_dict_contains(d, "after", 5));
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
}

static void suite_limits(pf_dict *d)
{
    size_t len0, len;
    char *big = malloc(PF_DICT_MAX_VALUE + 2);
    ASSERT(big);
    memset(big, 'b', PF_DICT_MAX_VALUE + 2);
    ASSERT_OK(pf_dict_len(d, &len0));
    /* Exactly at the limits: fine. */
    ASSERT_OK(pf_dict_set(d, big, PF_DICT_MAX_KEY, "x", 1));
    ASSERT_OK(pf_dict_set(d, "v", 1, big, PF_DICT_MAX_VALUE));
    void *p;
    size_t n;
    ASSERT_OK(pf_dict_get_alloc(d, "v", 1, &p, &n));
    ASSERT_EQ(n, PF_DICT_MAX_VALUE);
    ASSERT(memcmp(p, big, n) == 0);
    free(p);
    ASSERT_OK(pf_dict_len(d, &len0));
    /* One over: PF_ETOOBIG and nothing written. */
    ASSERT_ERR(pf_dict_set(d, big, PF_DICT_MAX_KEY + 1, "x", 1), PF_ETOOBIG);
    ASSERT_ERR(pf_dict_set(d, "w", 1, big, PF_DICT_MAX_VALUE + 1), PF_ETOOBIG);
    ASSERT_ERR(pf_dict_contains(d, "w", 1), PF_ENOTFOUND);
    ASSERT_ERR(pf_dict_get(d, big, PF_DICT_MAX_KEY + 1, NULL, 0, NULL), PF_ETOOBIG);
    ASSERT_ERR(pf_dict_incr(d, big, PF_DICT_MAX_KEY + 1, 1, NULL), PF_ETOOBIG);
    ASSERT_ERR(pf_dict_get_or_insert(d, "w", 1, big, PF_DICT_MAX_VALUE + 1, NULL, NULL, NULL),
               PF_ETOOBIG);
    ASSERT_ERR(pf_dict_cas(d, "w", 1, NULL, 0, big, PF_DICT_MAX_VALUE + 1, NULL), PF_ETOOBIG);
    pf_dict_item items[3] = {
        {"a", 1, "1", 1}, {"b", 1, big, PF_DICT_MAX_VALUE + 1}, {"c", 1, "3", 1}};
    ASSERT_ERR(pf_dict_set_many(d, items, 3), PF_ETOOBIG);
    ASSERT_ERR(pf_dict_contains(d, "a", 1), PF_ENOTFOUND);
    /* The replaced value is untouched by a refused replacement. */
    ASSERT_ERR(pf_dict_set(d, "v", 1, big, PF_DICT_MAX_VALUE + 1), PF_ETOOBIG);
    ASSERT_ERR(pf_dict_get(d, "v", 1, NULL, 0, &n), PF_ETOOBIG);
    ASSERT_EQ(n, PF_DICT_MAX_VALUE);
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, len0);
    /* Bad pointers. */
    ASSERT_ERR(pf_dict_set(d, NULL, 3, "x", 1), PF_EINVAL);
    ASSERT_ERR(pf_dict_set(d, "k", 1, NULL, 3), PF_EINVAL);
    ASSERT_ERR(pf_dict_set(NULL, "k", 1, "x", 1), PF_EINVAL);
    ASSERT_ERR(pf_dict_get(d, "k", 1, NULL, 5, NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_get_alloc(d, "k", 1, NULL, NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_len(d, NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_update_fn(d, "k", 1, NULL, NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_foreach(d, NULL, NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_get_many(d, items, 1, NULL, NULL), PF_EINVAL);
    free(big);
}

struct fn_arg {
    const char *set;
    int ret;
    int calls;
    size_t big;
};

static int fn_cb(void *arg, const void *old, size_t old_len, const void **nv, size_t *nl)
{
    struct fn_arg *a = arg;
    (void)old;
    (void)old_len;
    a->calls++;
    if (a->big) {
        *nv = "x";
        *nl = a->big;
        return PF_DICT_SET;
    }
    if (a->set) {
        *nv = a->set;
        *nl = strlen(a->set);
    }
    return a->ret;
}

/* Append "+" to the old value (or start at "+"). */
static int append_plus(void *arg, const void *old, size_t old_len, const void **nv, size_t *nl)
{
    char *buf = arg;
    memcpy(buf, old ? old : "", old ? old_len : 0);
    buf[old ? old_len : 0] = '+';
    *nv = buf;
    *nl = (old ? old_len : 0) + 1;
    return PF_DICT_SET;
}

static void suite_rmw(pf_dict *d)
{
    int64_t v = 7;
    ASSERT_OK(pf_dict_incr(d, "c", 1, 5, &v));
    ASSERT_EQ(v, 5);
    ASSERT_OK(pf_dict_incr(d, "c", 1, -12, &v));
    ASSERT_EQ(v, -7);
    ASSERT_OK(pf_dict_incr(d, "c", 1, 0, NULL));
    char buf[32];
    size_t n;
    ASSERT_OK(pf_dict_get(d, "c", 1, buf, sizeof buf, &n));
    ASSERT_EQ(n, 2);
    ASSERT(memcmp(buf, "-7", 2) == 0); /* decimal text on every backend */
    ASSERT_OK(pf_dict_get_i64(d, "c", 1, &v));
    ASSERT_EQ(v, -7);
    ASSERT_OK(pf_dict_set_i64(d, "m", 1, INT64_MAX));
    ASSERT_ERR(pf_dict_incr(d, "m", 1, 1, &v), PF_EINVAL); /* overflow */
    ASSERT_OK(pf_dict_get_i64(d, "m", 1, &v));
    ASSERT_EQ(v, INT64_MAX);
    ASSERT_OK(pf_dict_set_i64(d, "m", 1, INT64_MIN));
    ASSERT_OK(pf_dict_get_i64(d, "m", 1, &v));
    ASSERT(v == INT64_MIN);
    ASSERT_OK(pf_dict_set(d, "s", 1, "abc", 3));
    ASSERT_ERR(pf_dict_incr(d, "s", 1, 1, &v), PF_EINVAL);
    ASSERT_ERR(pf_dict_get_i64(d, "s", 1, &v), PF_EINVAL);
    ASSERT_OK(pf_dict_set(d, "s", 1, "007", 3));
    ASSERT_ERR(pf_dict_incr(d, "s", 1, 1, &v), PF_EINVAL);
    ASSERT_OK(pf_dict_get(d, "s", 1, buf, sizeof buf, &n));
    ASSERT(n == 3 && memcmp(buf, "007", 3) == 0); /* unchanged */
    ASSERT_ERR(pf_dict_get_i64(d, "none", 4, &v), PF_ENOTFOUND);

    /* cas */
    bool sw = true;
    ASSERT_OK(pf_dict_cas(d, "x", 1, "a", 1, "b", 1, &sw));
    ASSERT(!sw); /* absent, expected "a" */
    ASSERT_OK(pf_dict_cas(d, "x", 1, NULL, 0, "a", 1, &sw));
    ASSERT(sw); /* absent -> "a" */
    ASSERT_OK(pf_dict_cas(d, "x", 1, NULL, 0, "z", 1, &sw));
    ASSERT(!sw); /* present now */
    ASSERT_OK(pf_dict_cas(d, "x", 1, "b", 1, "c", 1, &sw));
    ASSERT(!sw);
    ASSERT_OK(pf_dict_cas(d, "x", 1, "a", 1, "bb", 2, &sw));
    ASSERT(sw);
    ASSERT_OK(pf_dict_get(d, "x", 1, buf, sizeof buf, &n));
    ASSERT(n == 2 && memcmp(buf, "bb", 2) == 0);
    ASSERT_OK(pf_dict_cas(d, "x", 1, "b", 1, NULL, 0, &sw));
    ASSERT(!sw); /* prefix is not equal */
    ASSERT_OK(pf_dict_cas(d, "x", 1, "bb", 2, NULL, 0, &sw));
    ASSERT(sw); /* delete */
    ASSERT_ERR(pf_dict_contains(d, "x", 1), PF_ENOTFOUND);
    ASSERT_OK(pf_dict_cas(d, "e", 1, NULL, 0, "", 0, &sw));
    ASSERT(sw);
    ASSERT_OK(pf_dict_cas(d, "e", 1, "", 0, "1", 1, &sw));
    ASSERT(sw); /* empty value is not absent */

    /* get_or_insert */
    void *cur = NULL;
    bool ins = false;
    ASSERT_OK(pf_dict_get_or_insert(d, "g", 1, "first", 5, &cur, &n, &ins));
    ASSERT(ins);
    ASSERT(n == 5 && memcmp(cur, "first", 5) == 0);
    free(cur);
    ASSERT_OK(pf_dict_get_or_insert(d, "g", 1, "second", 6, &cur, &n, &ins));
    ASSERT(!ins);
    ASSERT(n == 5 && memcmp(cur, "first", 5) == 0);
    free(cur);
    ASSERT_OK(pf_dict_get_or_insert(d, "g2", 2, "v", 1, NULL, NULL, NULL));
    ASSERT_OK(pf_dict_contains(d, "g2", 2));

    /* update_fn */
    struct fn_arg a = {.set = "new", .ret = PF_DICT_SET};
    ASSERT_OK(pf_dict_update_fn(d, "u", 1, fn_cb, &a));
    ASSERT_OK(pf_dict_get(d, "u", 1, buf, sizeof buf, &n));
    ASSERT(n == 3 && memcmp(buf, "new", 3) == 0);
    a = (struct fn_arg){.ret = PF_DICT_KEEP};
    ASSERT_OK(pf_dict_update_fn(d, "u", 1, fn_cb, &a));
    ASSERT_OK(pf_dict_contains(d, "u", 1));
    a = (struct fn_arg){.ret = PF_ECANCELLED};
    ASSERT_ERR(pf_dict_update_fn(d, "u", 1, fn_cb, &a), PF_ECANCELLED);
    ASSERT_OK(pf_dict_get(d, "u", 1, buf, sizeof buf, &n));
    ASSERT(n == 3 && memcmp(buf, "new", 3) == 0);
    a = (struct fn_arg){.big = PF_DICT_MAX_VALUE + 1};
    ASSERT_ERR(pf_dict_update_fn(d, "u", 1, fn_cb, &a), PF_ETOOBIG);
    ASSERT_OK(pf_dict_get(d, "u", 1, buf, sizeof buf, &n));
    ASSERT(n == 3 && memcmp(buf, "new", 3) == 0);
    a = (struct fn_arg){.ret = PF_DICT_DELETE};
    ASSERT_OK(pf_dict_update_fn(d, "u", 1, fn_cb, &a));
    ASSERT_ERR(pf_dict_contains(d, "u", 1), PF_ENOTFOUND);
    a = (struct fn_arg){.ret = PF_DICT_DELETE};
    ASSERT_OK(pf_dict_update_fn(d, "u", 1, fn_cb, &a)); /* deleting nothing is fine */
    a = (struct fn_arg){.ret = 17};
    ASSERT_ERR(pf_dict_update_fn(d, "u", 1, fn_cb, &a), PF_EINVAL);
    char ab[16];
    for (int i = 0; i < 5; i++)
        ASSERT_OK(pf_dict_update_fn(d, "p", 1, append_plus, ab));
    ASSERT_OK(pf_dict_get(d, "p", 1, buf, sizeof buf, &n));
    ASSERT(n == 5 && memcmp(buf, "+++++", 5) == 0);

    /* C strings */
    ASSERT_OK(pf_dict_set_str(d, "name", "pfor"));
    char *s = NULL;
    ASSERT_OK(pf_dict_get_str(d, "name", &s));
    ASSERT_STREQ(s, "pfor");
    free(s);
    ASSERT_ERR(pf_dict_get_str(d, "nobody", &s), PF_ENOTFOUND);
    ASSERT(s == NULL);
    ASSERT_OK(pf_dict_incr(d, PF_DICT_STR("hits"), 2, NULL));
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("hits"), &v));
    ASSERT_EQ(v, 2);
    char msg[256];
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
}

struct sum {
    int64_t n, total;
    int stop_after;
};

static int visit_sum(void *u, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct sum *s = u;
    int64_t v;
    ASSERT(klen > 2 && memcmp(key, "b-", 2) == 0);
    ASSERT(pf__dict_parse_i64(val, vlen, &v));
    s->n++;
    s->total += v;
    return s->stop_after && s->n == s->stop_after ? 42 : 0;
}

struct got {
    int found, missing;
    int64_t total;
};

static int got_cb(void *u, size_t index, int status, const void *val, size_t vlen)
{
    struct got *g = u;
    if (status == PF_ENOTFOUND) {
        ASSERT(index % 2 == 1);
        g->missing++;
        return 0;
    }
    ASSERT_OK(status);
    int64_t v;
    ASSERT(pf__dict_parse_i64(val, vlen, &v));
    ASSERT_EQ(v, (int64_t)index / 2);
    g->found++;
    g->total += v;
    return 0;
}

static void suite_batch(pf_dict *d, pf_dict *other)
{
    enum { N = 3000 };
    static char keys[N][16], vals[N][24];
    static pf_dict_item items[N];
    for (int i = 0; i < N; i++) {
        size_t kl = (size_t)snprintf(keys[i], sizeof keys[i], "b-%d", i);
        size_t vl = (size_t)snprintf(vals[i], sizeof vals[i], "%d", i);
        items[i] = (pf_dict_item){keys[i], kl, vals[i], vl};
    }
    ASSERT_OK(pf_dict_set_many(d, items, N));
    ASSERT_OK(pf_dict_set_many(d, items, 0));
    size_t len;
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, N);

    /* get_many: even indexes exist (b-0, b-1, ... as i/2), odd ones do not. */
    static char qk[2 * N][16];
    static pf_dict_item q[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        size_t kl = (size_t)snprintf(qk[i], sizeof qk[i], i % 2 ? "zz-%d" : "b-%d", i / 2);
        q[i] = (pf_dict_item){qk[i], kl, NULL, 0};
    }
    struct got g = {0};
    ASSERT_OK(pf_dict_get_many(d, q, 2 * N, got_cb, &g));
    ASSERT_EQ(g.found, N);
    ASSERT_EQ(g.missing, N);
    ASSERT_EQ(g.total, (int64_t)N * (N - 1) / 2);

    /* foreach: every entry once; an early stop returns the callback's value. */
    struct sum s = {0};
    ASSERT_OK(pf_dict_foreach(d, visit_sum, &s));
    ASSERT_EQ(s.n, N);
    ASSERT_EQ(s.total, (int64_t)N * (N - 1) / 2);
    s = (struct sum){.stop_after = 10};
    ASSERT_EQ(pf_dict_foreach(d, visit_sum, &s), 42);
    ASSERT_EQ(s.n, 10);

    /* The iterator gives the same. */
    pf_dict_iter *it;
    ASSERT_OK(pf_dict_iter_open(d, &it));
    const void *k, *v;
    size_t kl, vl;
    int64_t cnt = 0, tot = 0;
    int rc;
    while ((rc = pf_dict_iter_next(it, &k, &kl, &v, &vl)) == 0) {
        int64_t x;
        ASSERT(pf__dict_parse_i64(v, vl, &x));
        cnt++;
        tot += x;
    }
    ASSERT_ERR(rc, PF_EEOF);
    ASSERT_ERR(pf_dict_iter_next(it, &k, &kl, &v, &vl), PF_EEOF);
    pf_dict_iter_close(it);
    pf_dict_iter_close(NULL);
    ASSERT_EQ(cnt, N);
    ASSERT_EQ(tot, (int64_t)N * (N - 1) / 2);

    /* update: merge into another dict (of another backend), then back. */
    ASSERT_OK(pf_dict_set(other, "b-0", 3, "999", 3));
    ASSERT_OK(pf_dict_set(other, "b-extra", 7, "5", 1));
    ASSERT_OK(pf_dict_update(other, d));
    ASSERT_OK(pf_dict_len(other, &len));
    ASSERT_EQ(len, N + 1);
    int64_t x;
    ASSERT_OK(pf_dict_get_i64(other, "b-0", 3, &x));
    ASSERT_EQ(x, 0); /* d's value won */
    ASSERT_OK(pf_dict_update(d, other));
    ASSERT_OK(pf_dict_len(d, &len));
    ASSERT_EQ(len, N + 1);
    ASSERT_OK(pf_dict_update(d, d));
    ASSERT_OK(pf_dict_clear(other));
    ASSERT_OK(pf_dict_clear(d));
    s = (struct sum){0};
    ASSERT_OK(pf_dict_foreach(d, visit_sum, &s));
    ASSERT_EQ(s.n, 0);
}

static void suite_refs(pf_dict *d)
{
    pf_dict_ref ref;
    ASSERT_OK(pf_dict_ref_get(d, &ref));
    pf_dict *a = NULL, *b = NULL;
    ASSERT_OK(pf_dict_from_ref(&a, &ref));
    ASSERT_OK(pf_dict_from_ref(&b, &ref));
    ASSERT(a == b || pf_dict_backend_of(d) == PF_DICT_LOCAL); /* cached */
    ASSERT_EQ(pf_dict_backend_of(a), pf_dict_backend_of(d));
    ASSERT_OK(pf_dict_set(a, "via-ref", 7, "1", 1));
    ASSERT_OK(pf_dict_contains(d, "via-ref", 7));
    pf_dict_close(a);
    pf_dict_close(b);
    ASSERT_OK(pf_dict_contains(d, "via-ref", 7));
    pf_dict_ref bad = ref;
    bad.bytes[0] ^= 0xff;
    ASSERT_ERR(pf_dict_from_ref(&a, &bad), PF_EINVAL);
    ASSERT(a == NULL);
    ASSERT_ERR(pf_dict_ref_get(NULL, &ref), PF_EINVAL);
}

/* ------------------------------------------------------------------- tests -- */

static void run_all(pf_dict_backend b)
{
    pf_test_redis r = {0};
    pf_dict *d = pf_test_dict_open(b, &r, NULL);
    suite_basic(d);
    suite_limits(d);
    ASSERT_OK(pf_dict_clear(d));
    suite_rmw(d);
    ASSERT_OK(pf_dict_clear(d));
    pf_dict *other = pf_test_dict_open(b == PF_DICT_LOCAL ? PF_DICT_SHM : PF_DICT_LOCAL, &r, NULL);
    suite_batch(d, other);
    pf_dict_close(other);
    suite_refs(d);
    ASSERT(pf_dict_backend_of(d) == b);
    ASSERT((pf_dict_name(d) == NULL) == (b == PF_DICT_LOCAL));
    pf_dict_close(d);
    pf_dict_close(NULL);
    pf_test_redis_stop(&r);
}

TEST(dict_local_api)
{
    run_all(PF_DICT_LOCAL);
}

TEST(dict_shm_api)
{
    run_all(PF_DICT_SHM);
}

TEST(dict_redis_api)
{
    run_all(PF_DICT_REDIS);
}

TEST(dict_local_options)
{
    pf_dict *d = NULL;
    pf_dict_opts o = {.stripes = 3};
    ASSERT_ERR(pf_dict_open_local(&d, &o), PF_EINVAL);
    ASSERT(d == NULL);
    o = (pf_dict_opts){.stripes = 8192};
    ASSERT_ERR(pf_dict_open_local(&d, &o), PF_EINVAL);
    o = (pf_dict_opts){.max_bytes = PF_DICT_LIMIT_MAX_BYTES + 1};
    ASSERT_ERR(pf_dict_open_local(&d, &o), PF_EINVAL);
    o = (pf_dict_opts){.max_bytes = 4096};
    ASSERT_ERR(pf_dict_open_local(&d, &o), PF_EINVAL);
    ASSERT_ERR(pf_dict_open_local(NULL, NULL), PF_EINVAL);
    /* One stripe works too. */
    o = (pf_dict_opts){.stripes = 1};
    ASSERT_OK(pf_dict_open_local(&d, &o));
    for (int i = 0; i < 2000; i++)
        ASSERT_OK(pf_dict_incr(d, &i, sizeof i, i, NULL));
    char msg[200];
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));
    pf_dict_close(d);
}

/* A thread forks while another is inside an operation on a local dict: the
 * fork waits for it, so the child's private copy holds the operation whole and
 * no lock of it held by a thread the child does not have. */
static atomic_int g_in_update;

static int slow_update(void *arg, const void *old, size_t old_len, const void **new_val,
                       size_t *new_len)
{
    (void)arg, (void)old, (void)old_len;
    atomic_store(&g_in_update, 1);
    usleep(200 * 1000);
    *new_val = "after";
    *new_len = 5;
    return PF_DICT_SET;
}

static atomic_int g_forked;

/* It stays alive until the parent forked: a thread that ended unjoined before
 * fork() is a leak to ThreadSanitizer in the child. */
static void *update_thread(void *d)
{
    int rc = pf_dict_update_fn(d, "k", 1, slow_update, NULL);
    while (!atomic_load(&g_forked))
        usleep(1000);
    return (void *)(intptr_t)rc;
}

TEST(dict_local_fork_during_an_operation)
{
    pf_dict *d;
    pf_dict_opts o = {.stripes = 1}; /* every key in the stripe being updated */
    ASSERT_OK(pf_dict_open_local(&d, &o));
    ASSERT_OK(pf_dict_set_str(d, "k", "before"));
    atomic_store(&g_in_update, 0);
    atomic_store(&g_forked, 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, update_thread, d), 0);
    while (!atomic_load(&g_in_update))
        usleep(1000);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        alarm(10); /* a child stuck on an inherited lock dies of SIGALRM */
        char *v = NULL;
        if (pf_dict_set_str(d, "other", "v") != PF_OK || pf_dict_get_str(d, "k", &v) != PF_OK)
            _exit(1);
        _exit(strcmp(v, "after") == 0 ? 0 : 2);
    }
    atomic_store(&g_forked, 1);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    void *rc;
    ASSERT_EQ(pthread_join(t, &rc), 0);
    ASSERT_EQ((intptr_t)rc, PF_OK);
    pf_dict_close(d);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
}
