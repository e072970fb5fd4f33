/*
 * The dict front end: argument and limit checks shared by every backend, the
 * helpers (int64, C strings, batches, merge, iteration), handle lifetime, and
 * references (pf_dict_ref) with their per-process cache.
 *
 * Lifetime.  Every handle carries a reference count, changed under g_mu.
 * pf_dict_close drops one; the handle is destroyed at zero.  A local dict is
 * also in the registry (id -> handle) so that its refs resolve in this process.
 * Handles opened by pf_dict_from_ref are kept in the cache, which holds one
 * reference of its own, so the next from_ref of the same dict in this process
 * costs a lookup; a cached handle whose dict its owner destroyed is dropped once
 * no caller holds it.
 *
 * Fork: g_mu is taken and every local dict frozen around fork()
 * (pthread_atfork) so a child never inherits a lock held, nor a local dict with
 * an operation half done; the child's copies of shm handles stay valid (the
 * mapping is inherited), redis handles reconnect (their socket is the parent's).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict/engine.h"
#include "platform/sync.h"

atomic_int pf__dict_pause_at;
atomic_int pf__dict_pause_skip;

void pf__dict_pause(int point)
{
    (void)point;
    if (atomic_load_explicit(&pf__dict_pause_skip, memory_order_relaxed) > 0) {
        atomic_fetch_sub_explicit(&pf__dict_pause_skip, 1, memory_order_relaxed);
        return;
    }
    raise(SIGSTOP);
}

/* ------------------------------------------------------------------- refs -- */

#define REF_MAGIC   0x52444650u /* "PFDR" */
#define REF_VERSION 1u
#define REF_HDR     16 /* magic u32, version u16, backend u16, pid u32, pad u32 */

struct ref_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t backend;
    uint32_t pid; /* local refs: the process they belong to */
    uint32_t pad;
};

/* Guards: refs of every handle, the local registry and the ref cache. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

struct local_ent {
    uint64_t id;
    pf_dict *d;
};
static struct local_ent *g_local;   /* g_mu */
static size_t g_nlocal, g_caplocal; /* g_mu */
static uint64_t g_next_id = 1;      /* g_mu */

struct cache_ent {
    pf_dict_ref ref;
    pf_dict *d; /* holds one reference */
};
static struct cache_ent *g_cache;   /* g_mu */
static size_t g_ncache, g_capcache; /* g_mu */

/* Around fork(): g_mu, then every local dict (registered under g_mu, alive
 * while registered) frozen, so that the child's private copies hold no
 * half-done operation (see pf__eng_fork_freeze).  Engine operations never take
 * g_mu, so holding it while waiting for them cannot deadlock. */
static void fork_prepare(void)
{
    pf__mutex_lock(&g_mu);
    for (size_t i = 0; i < g_nlocal; i++)
        pf__eng_fork_freeze(pf__dict_engine(g_local[i].d));
}

static void fork_parent(void)
{
    for (size_t i = g_nlocal; i-- > 0;)
        pf__eng_fork_thaw(pf__dict_engine(g_local[i].d));
    pf__mutex_unlock(&g_mu);
}

static void fork_child(void)
{
    /* One thread here, the one that took the locks in fork_prepare (normal
     * mutexes: their unlock in the child is fine). */
    for (size_t i = g_nlocal; i-- > 0;)
        pf__eng_fork_thaw_child(pf__dict_engine(g_local[i].d));
    pf__dict_redis_atfork_child();
    pf__eng_atfork_child();
    pf__mutex_unlock(&g_mu);
}

static void once_init(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void lock_g(void)
{
    pthread_once(&g_once, once_init);
    pf__mutex_lock(&g_mu);
}

static void unlock_g(void)
{
    pf__mutex_unlock(&g_mu);
}

int pf__dict_local_register(pf_dict *d)
{
    int rc = 0;
    lock_g();
    if (g_nlocal == g_caplocal) {
        size_t nc = g_caplocal ? g_caplocal * 2 : 16;
        struct local_ent *n = realloc(g_local, nc * sizeof *n);
        if (!n) {
            rc = PF_ENOMEM;
            goto out;
        }
        g_local = n;
        g_caplocal = nc;
    }
    d->id = g_next_id++;
    g_local[g_nlocal++] = (struct local_ent){d->id, d};
out:
    unlock_g();
    return rc;
}

/* g_mu held. */
static void local_unregister_locked(pf_dict *d)
{
    for (size_t i = 0; i < g_nlocal; i++) {
        if (g_local[i].d == d) {
            g_local[i] = g_local[--g_nlocal];
            return;
        }
    }
}

void pf__dict_lock(void)
{
    lock_g();
}

void pf__dict_unlock(void)
{
    unlock_g();
}

/* g_mu held.  Remove cache entry i; returns its handle (the cache's reference is
 * the caller's to drop). */
static pf_dict *cache_remove_locked(size_t i)
{
    pf_dict *d = g_cache[i].d;
    g_cache[i] = g_cache[--g_ncache];
    d->cached = false;
    return d;
}

void pf_dict_close(pf_dict *d)
{
    if (!d)
        return;
    lock_g();
    int left = atomic_fetch_sub(&d->refs, 1) - 1;
    if (left == 1 && d->cached && d->ops->gone(d)) {
        /* Only the cache holds it and its dict is gone: drop it now. */
        for (size_t i = 0; i < g_ncache; i++) {
            if (g_cache[i].d == d) {
                cache_remove_locked(i);
                left = atomic_fetch_sub(&d->refs, 1) - 1;
                break;
            }
        }
    }
    if (left == 0 && d->backend == PF_DICT_LOCAL)
        local_unregister_locked(d);
    unlock_g();
    if (left == 0)
        d->ops->destroy(d);
}

int pf_dict_ref_get(pf_dict *d, pf_dict_ref *out)
{
    if (!out)
        return PF_EINVAL;
    memset(out, 0, sizeof *out);
    if (!d)
        return PF_EINVAL;
    struct ref_hdr h = {REF_MAGIC, REF_VERSION, (uint16_t)d->backend, 0, 0};
    if (d->backend == PF_DICT_LOCAL) {
        h.pid = (uint32_t)getpid();
        memcpy(out->bytes + REF_HDR, &d->id, sizeof d->id);
    } else {
        int rc = d->ops->ref_fill(d, out->bytes + REF_HDR, sizeof out->bytes - REF_HDR);
        if (rc) {
            memset(out, 0, sizeof *out);
            return rc;
        }
    }
    memcpy(out->bytes, &h, sizeof h);
    return 0;
}

static int open_from_ref(pf_dict **out, const struct ref_hdr *h, const pf_dict_ref *ref)
{
    if (h->backend == PF_DICT_SHM)
        return pf__dict_shm_from_ref(out, ref->bytes + REF_HDR);
    if (h->backend == PF_DICT_REDIS)
        return pf__dict_redis_from_ref(out, ref->bytes + REF_HDR, sizeof ref->bytes - REF_HDR);
    return PF_EINVAL;
}

int pf_dict_from_ref(pf_dict **out, const pf_dict_ref *ref)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (!ref)
        return PF_EINVAL;
    struct ref_hdr h;
    memcpy(&h, ref->bytes, sizeof h);
    if (h.magic != REF_MAGIC || h.version != REF_VERSION ||
        (h.backend != PF_DICT_LOCAL && h.backend != PF_DICT_SHM && h.backend != PF_DICT_REDIS))
        return PF_EINVAL;
    int rc = PF_ENOTFOUND;
    pf_dict *drop = NULL;
    lock_g();
    if (h.backend == PF_DICT_LOCAL) {
        uint64_t id;
        memcpy(&id, ref->bytes + REF_HDR, sizeof id);
        if (h.pid != (uint32_t)getpid()) {
            rc = PF_ENOTSUP; /* a local dict does not exist in another process */
        } else {
            for (size_t i = 0; i < g_nlocal; i++) {
                if (g_local[i].id == id) {
                    atomic_fetch_add(&g_local[i].d->refs, 1);
                    *out = g_local[i].d;
                    rc = 0;
                    break;
                }
            }
        }
        unlock_g();
        return rc;
    }
    for (size_t i = 0; i < g_ncache; i++) {
        if (memcmp(&g_cache[i].ref, ref, sizeof *ref) != 0)
            continue;
        pf_dict *d = g_cache[i].d;
        if (d->ops->gone(d)) {
            cache_remove_locked(i);
            if (atomic_fetch_sub(&d->refs, 1) == 1)
                drop = d;
            unlock_g();
            if (drop)
                drop->ops->destroy(drop);
            return PF_ENOTFOUND;
        }
        atomic_fetch_add(&d->refs, 1);
        *out = d;
        unlock_g();
        return 0;
    }
    unlock_g();

    /* Not cached: open it without holding g_mu (a redis connect may take a
     * while), then publish it unless another thread was quicker. */
    pf_dict *d = NULL;
    rc = open_from_ref(&d, &h, ref);
    if (rc)
        return rc;
    lock_g();
    for (size_t i = 0; i < g_ncache; i++) {
        if (memcmp(&g_cache[i].ref, ref, sizeof *ref) == 0) {
            drop = d;
            d = g_cache[i].d;
            atomic_fetch_add(&d->refs, 1);
            goto done;
        }
    }
    if (g_ncache == g_capcache) {
        size_t nc = g_capcache ? g_capcache * 2 : 8;
        struct cache_ent *n = realloc(g_cache, nc * sizeof *n);
        if (!n) {
            unlock_g();
            d->ops->destroy(d);
            return PF_ENOMEM;
        }
        g_cache = n;
        g_capcache = nc;
    }
    memcpy(&g_cache[g_ncache].ref, ref, sizeof *ref);
    g_cache[g_ncache].d = d;
    g_ncache++;
    d->cached = true;
    atomic_fetch_add(&d->refs, 1); /* the cache's own */
done:
    unlock_g();
    if (drop)
        drop->ops->destroy(drop);
    *out = d;
    return 0;
}

/* ------------------------------------------------------------------- opens -- */

int pf_dict_open_local(pf_dict **out, const pf_dict_opts *opts)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    pthread_once(&g_once, once_init);
    return pf__dict_local_open(out, opts);
}

int pf_dict_create_shm(pf_dict **out, const char *name, const pf_dict_opts *opts)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    pthread_once(&g_once, once_init);
    return pf__dict_shm_create(out, name, opts);
}

int pf_dict_open_shm(pf_dict **out, const char *name)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (!name)
        return PF_EINVAL;
    pthread_once(&g_once, once_init);
    return pf__dict_shm_open(out, name, NULL);
}

int pf_dict_remove_shm(const char *name)
{
    if (!name)
        return PF_EINVAL;
    return pf__dict_shm_remove(name);
}

int pf_dict_open_redis(pf_dict **out, const char *host, int port, const char *name,
                       const pf_dict_opts *opts)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (!pf__dict_redis_where_ok(host, port, name) ||
        (opts &&
         (!pf__dict_timeout_ok(opts->timeout) || (opts->password && strlen(opts->password) > 128))))
        return PF_EINVAL;
    pthread_once(&g_once, once_init);
    return pf__dict_redis_open(out, host, port, name, opts);
}

pf_dict_backend pf_dict_backend_of(const pf_dict *d)
{
    return d ? d->backend : (pf_dict_backend)0;
}

const char *pf_dict_name(const pf_dict *d)
{
    return d && d->backend != PF_DICT_LOCAL ? d->name : NULL;
}

/* -------------------------------------------------------------- operations -- */

/* A (pointer, length) argument: a NULL pointer is fine only with length 0, and
 * backends always get a non-NULL pointer. */
#define BYTES(p, n) ((p) ? (const void *)(p) : (const void *)"")
#define BAD(p, n)   (!(p) && (n))

static int check_key(pf_dict *d, const void *key, size_t klen)
{
    if (!d || BAD(key, klen))
        return PF_EINVAL;
    return klen > PF_DICT_MAX_KEY ? PF_ETOOBIG : 0;
}

int pf_dict_set(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen)
{
    int rc = check_key(d, key, klen);
    if (rc)
        return rc;
    if (BAD(val, vlen))
        return PF_EINVAL;
    if (vlen > PF_DICT_MAX_VALUE)
        return PF_ETOOBIG;
    return d->ops->set(d, BYTES(key, klen), klen, BYTES(val, vlen), vlen);
}

int pf_dict_get(pf_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    static char none;
    if (vlen)
        *vlen = 0;
    int rc = check_key(d, key, klen);
    if (rc)
        return rc;
    if (BAD(buf, cap))
        return PF_EINVAL;
    /* A NULL buffer of capacity 0 asks for the length (PF_ETOOBIG unless empty). */
    return d->ops->get(d, BYTES(key, klen), klen, buf ? buf : &none, cap, vlen, NULL);
}

int pf_dict_get_alloc(pf_dict *d, const void *key, size_t klen, void **val, size_t *vlen)
{
    if (val)
        *val = NULL;
    if (vlen)
        *vlen = 0;
    int rc = check_key(d, key, klen);
    if (rc)
        return rc;
    if (!val)
        return PF_EINVAL;
    return d->ops->get(d, BYTES(key, klen), klen, NULL, 0, vlen, val);
}

int pf_dict_delete(pf_dict *d, const void *key, size_t klen)
{
    int rc = check_key(d, key, klen);
    return rc ? rc : d->ops->del(d, BYTES(key, klen), klen);
}

int pf_dict_contains(pf_dict *d, const void *key, size_t klen)
{
    int rc = check_key(d, key, klen);
    return rc ? rc : d->ops->get(d, BYTES(key, klen), klen, NULL, 0, NULL, NULL);
}

int pf_dict_len(pf_dict *d, size_t *out)
{
    if (out)
        *out = 0;
    if (!d || !out)
        return PF_EINVAL;
    return d->ops->len(d, out);
}

int pf_dict_clear(pf_dict *d)
{
    return d ? d->ops->clear(d) : PF_EINVAL;
}

int pf_dict_incr(pf_dict *d, const void *key, size_t klen, int64_t delta, int64_t *out)
{
    if (out)
        *out = 0;
    int rc = check_key(d, key, klen);
    return rc ? rc : d->ops->incr(d, BYTES(key, klen), klen, delta, out);
}

int pf_dict_cas(pf_dict *d, const void *key, size_t klen, const void *expected, size_t elen,
                const void *desired, size_t dlen, bool *swapped)
{
    if (swapped)
        *swapped = false;
    int rc = check_key(d, key, klen);
    if (rc)
        return rc;
    if ((!expected && elen) || (!desired && dlen))
        return PF_EINVAL;
    if (elen > PF_DICT_MAX_VALUE || dlen > PF_DICT_MAX_VALUE)
        return PF_ETOOBIG;
    return d->ops->cas(d, BYTES(key, klen), klen, expected, elen, desired, dlen, swapped);
}

int pf_dict_get_or_insert(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen,
                          void **cur, size_t *cur_len, bool *inserted)
{
    if (cur)
        *cur = NULL;
    if (cur_len)
        *cur_len = 0;
    if (inserted)
        *inserted = false;
    int rc = check_key(d, key, klen);
    if (rc)
        return rc;
    if (BAD(val, vlen))
        return PF_EINVAL;
    if (vlen > PF_DICT_MAX_VALUE)
        return PF_ETOOBIG;
    return d->ops->get_or_insert(d, BYTES(key, klen), klen, BYTES(val, vlen), vlen, cur, cur_len,
                                 inserted);
}

int pf_dict_update_fn(pf_dict *d, const void *key, size_t klen, pf_dict_update_cb fn, void *arg)
{
    int rc = check_key(d, key, klen);
    if (rc)
        return rc;
    if (!fn)
        return PF_EINVAL;
    return d->ops->update_fn(d, BYTES(key, klen), klen, fn, arg);
}

int pf_dict_set_many(pf_dict *d, const pf_dict_item *items, size_t n)
{
    if (!d || (!items && n))
        return PF_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (BAD(items[i].key, items[i].klen) || BAD(items[i].val, items[i].vlen))
            return PF_EINVAL;
        if (items[i].klen > PF_DICT_MAX_KEY || items[i].vlen > PF_DICT_MAX_VALUE)
            return PF_ETOOBIG;
    }
    return n ? d->ops->set_many(d, items, n) : 0;
}

int pf_dict_get_many(pf_dict *d, const pf_dict_item *items, size_t n, pf_dict_got_fn fn, void *user)
{
    if (!d || !fn || (!items && n))
        return PF_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (BAD(items[i].key, items[i].klen))
            return PF_EINVAL;
        if (items[i].klen > PF_DICT_MAX_KEY)
            return PF_ETOOBIG;
    }
    return n ? d->ops->get_many(d, items, n, fn, user) : 0;
}

/* ---------------------------------------------------------------- iteration -- */

struct pf_dict_iter {
    pf_dict *d;
    void *cursor;
};

int pf_dict_iter_open(pf_dict *d, pf_dict_iter **out)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (!d)
        return PF_EINVAL;
    pf_dict_iter *it = calloc(1, sizeof *it);
    if (!it)
        return PF_ENOMEM;
    it->d = d;
    int rc = d->ops->iter_open(d, &it->cursor);
    if (rc) {
        free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int pf_dict_iter_next(pf_dict_iter *it, const void **key, size_t *klen, const void **val,
                      size_t *vlen)
{
    if (!it)
        return PF_EINVAL;
    pf__dict_entry e = {0};
    int rc = it->d->ops->iter_next(it->d, it->cursor, &e);
    if (key)
        *key = rc ? NULL : e.key;
    if (klen)
        *klen = rc ? 0 : e.klen;
    if (val)
        *val = rc ? NULL : e.val;
    if (vlen)
        *vlen = rc ? 0 : e.vlen;
    return rc;
}

void pf_dict_iter_close(pf_dict_iter *it)
{
    if (!it)
        return;
    it->d->ops->iter_close(it->d, it->cursor);
    free(it);
}

int pf_dict_foreach(pf_dict *d, pf_dict_visit_fn fn, void *user)
{
    if (!d || !fn)
        return PF_EINVAL;
    pf_dict_iter *it;
    int rc = pf_dict_iter_open(d, &it);
    if (rc)
        return rc;
    const void *k, *v;
    size_t kl, vl;
    while ((rc = pf_dict_iter_next(it, &k, &kl, &v, &vl)) == 0) {
        rc = fn(user, k, kl, v, vl);
        if (rc) {
            pf_dict_iter_close(it);
            return rc; /* fn's own value, whatever it is (PF_EEOF too) */
        }
    }
    pf_dict_iter_close(it);
    return rc == PF_EEOF ? 0 : rc;
}

/* Merge: copy src's entries into batches and set them (pipelined on redis). */
#define MERGE_ITEMS 256
#define MERGE_BYTES (1u << 20)

struct merge {
    pf_dict *dst;
    pf_dict_item items[MERGE_ITEMS];
    size_t n, used;
    char *buf;
    size_t cap;
};

static int merge_flush(struct merge *m)
{
    /* buf may have moved while it grew: the items hold offsets until now. */
    for (size_t i = 0; i < m->n; i++) {
        m->items[i].key = m->buf + (uintptr_t)m->items[i].key;
        m->items[i].val = m->buf + (uintptr_t)m->items[i].val;
    }
    int rc = m->n ? m->dst->ops->set_many(m->dst, m->items, m->n) : 0;
    m->n = m->used = 0;
    return rc;
}

static int merge_visit(void *u, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct merge *m = u;
    if (m->n == MERGE_ITEMS || (m->used + klen + vlen > MERGE_BYTES && m->n)) {
        int rc = merge_flush(m);
        if (rc)
            return rc;
    }
    if (m->used + klen + vlen > m->cap) {
        size_t nc = PF__MAX(m->cap * 2, m->used + klen + vlen);
        char *nb = realloc(m->buf, nc);
        if (!nb)
            return PF_ENOMEM;
        m->buf = nb;
        m->cap = nc;
    }
    memcpy(m->buf + m->used, key, klen);
    memcpy(m->buf + m->used + klen, val, vlen);
    m->items[m->n] = (pf_dict_item){(const void *)(uintptr_t)m->used, klen,
                                    (const void *)(uintptr_t)(m->used + klen), vlen};
    m->n++;
    m->used += klen + vlen;
    return 0;
}

int pf_dict_update(pf_dict *d, pf_dict *src)
{
    if (!d || !src)
        return PF_EINVAL;
    if (d == src)
        return 0;
    struct merge *m = calloc(1, sizeof *m);
    if (!m)
        return PF_ENOMEM;
    m->dst = d;
    int rc = pf_dict_foreach(src, merge_visit, m);
    if (rc == 0)
        rc = merge_flush(m);
    free(m->buf);
    free(m);
    return rc;
}

int pf_dict_check(pf_dict *d, char *msg, size_t msg_cap)
{
    if (msg && msg_cap)
        msg[0] = '\0';
    if (!d)
        return PF_EINVAL;
    return d->ops->check(d, msg, msg_cap);
}

/* ------------------------------------------------------------------ helpers -- */

bool pf__dict_parse_i64(const void *s, size_t n, int64_t *out)
{
    /* The same syntax Redis accepts: "0" or an optional '-' then 1-9 then digits. */
    const char *p = s;
    bool neg = false;
    if (n == 0 || n > 20)
        return false;
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return true;
    }
    if (p[0] == '-') {
        neg = true;
        p++;
        n--;
    }
    if (n == 0 || p[0] < '1' || p[0] > '9')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return false;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v;
    }
    return true;
}

size_t pf__dict_format_i64(int64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

int pf__dict_incr_value(const void *old, size_t old_len, int64_t delta, char *buf, size_t *len,
                        int64_t *out)
{
    int64_t cur = 0, sum;
    if (old && !pf__dict_parse_i64(old, old_len, &cur))
        return PF_EINVAL;
    if (__builtin_add_overflow(cur, delta, &sum))
        return PF_EINVAL;
    *len = pf__dict_format_i64(sum, buf);
    *out = sum;
    return 0;
}

int pf_dict_set_i64(pf_dict *d, const void *key, size_t klen, int64_t v)
{
    char buf[24];
    size_t n = pf__dict_format_i64(v, buf);
    return pf_dict_set(d, key, klen, buf, n);
}

int pf_dict_get_i64(pf_dict *d, const void *key, size_t klen, int64_t *v)
{
    char buf[24];
    size_t n = 0;
    if (v)
        *v = 0;
    if (!v)
        return PF_EINVAL;
    if (klen > PF_DICT_MAX_KEY)
        return PF_ETOOBIG; /* the key, as for every single-key operation */
    int rc = pf_dict_get(d, key, klen, buf, sizeof buf, &n);
    if (rc == PF_ETOOBIG)
        return PF_EINVAL; /* the value: longer than any int64 */
    if (rc)
        return rc;
    return pf__dict_parse_i64(buf, n, v) ? 0 : PF_EINVAL;
}

int pf_dict_set_str(pf_dict *d, const char *key, const char *val)
{
    if (!key || !val)
        return PF_EINVAL;
    return pf_dict_set(d, key, strlen(key), val, strlen(val));
}

int pf_dict_get_str(pf_dict *d, const char *key, char **val)
{
    if (val)
        *val = NULL;
    if (!key || !val)
        return PF_EINVAL;
    void *p;
    size_t n;
    int rc = pf_dict_get_alloc(d, key, strlen(key), &p, &n);
    if (rc)
        return rc;
    char *s = realloc(p, n + 1);
    if (!s) {
        free(p);
        return PF_ENOMEM;
    }
    s[n] = '\0';
    *val = s;
    return 0;
}
