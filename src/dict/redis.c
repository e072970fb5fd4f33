/*
 * The redis backend: one logical dict is one Redis hash, through hiredis.
 *
 *   set/get/delete/contains/len  HSET / HGET / HDEL / HEXISTS / HLEN
 *   clear                        DEL
 *   incr                         HINCRBY (atomic on the server)
 *   cas, get_or_insert           a Lua script (EVAL): atomic on the server
 *   update_fn                    WATCH / HGET / MULTI / HSET|HDEL / EXEC, retried
 *                                while another client changes the hash meanwhile
 *   set_many / get_many / update multi-field HSET / HMGET, pipelined
 *   iteration                    HSCAN (an entry may come out twice, as SCAN says)
 *
 * A handle owns one connection, guarded by its mutex (calls from several
 * threads take turns; open one handle per thread for parallel throughput).
 * Open connects, AUTHs and PINGs with opts.timeout, so a bad address fails at
 * open.  A command that fails on the connection returns PF_ECONNECT and drops
 * it; the next call reconnects.  A handle used in a forked child (different
 * pid) drops the parent's socket without a word on it and connects anew.
 *
 * SIGPIPE: hiredis writes with write(), which raises SIGPIPE when the server
 * has reset the connection (one that died while a command or pipeline larger
 * than the socket buffer is being written).  That must not kill the host
 * program, so a thread holding a handle's mutex has SIGPIPE blocked, and a
 * SIGPIPE our writes made pending is taken before it is unblocked.
 */
#include <hiredis/hiredis.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "platform/sync.h"

#define DEFAULT_TIMEOUT 5.0
#define UPDATE_TRIES    1000
#define BATCH_PAIRS     128 /* field/value pairs in one HSET, fields in one HMGET */
#define BATCH_WINDOW    32  /* commands in flight in one pipeline round */
#define SCAN_COUNT      "256"

struct redis_dict {
    struct pf_dict base;
    pthread_mutex_t mu;              /* guards c and pid; re-initialised in a fork child */
    redisContext *c;                 /* mu: the connection, or NULL when it must be (re)made */
    pid_t pid;                       /* mu: the process c belongs to */
    sigset_t sig_old;                /* mu: the holder's signal mask before pipe_block */
    bool pipe_was_pending;           /* mu: SIGPIPE was pending before pipe_block */
    char host[PF_DICT_MAX_HOST + 1]; /* immutable */
    int port;                        /* immutable */
    double timeout;                  /* immutable */
    char password[129];              /* immutable ("" none) */
    struct redis_dict *next;         /* pf__dict_lock: list of live handles (fork) */
};

static struct redis_dict *g_handles; /* pf__dict_lock */

static const pf__dict_ops redis_ops;

static struct redis_dict *rd(pf_dict *d)
{
    return (struct redis_dict *)d;
}

static const char CAS_LUA[] =
    "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if ARGV[2] == '1' then if cur ~= ARGV[3] then return 0 end\n"
    "elseif cur then return 0 end\n"
    "if ARGV[4] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])\n"
    "elseif cur then redis.call('HDEL', KEYS[1], ARGV[1]) end\n"
    "return 1\n";

static const char GOI_LUA[] = "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
                              "if cur then return {0, cur} end\n"
                              "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                              "return {1, ARGV[2]}\n";

/* ------------------------------------------------------------- connection -- */

/* The set holding SIGPIPE alone. */
static sigset_t pipe_set(void)
{
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    return pipe;
}

/* SIGPIPE's pending state in this thread. */
static bool pipe_pending(void)
{
    sigset_t pending;
    sigemptyset(&pending);
    return sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

/* Block SIGPIPE in this thread while it uses r's connection (mu held).  One
 * system call in the common case: a SIGPIPE can already be pending here only
 * if the thread blocked it before (else it would have been delivered). */
static void pipe_block(struct redis_dict *r)
{
    sigset_t pipe = pipe_set();
    pthread_sigmask(SIG_BLOCK, &pipe, &r->sig_old);
    r->pipe_was_pending = sigismember(&r->sig_old, SIGPIPE) == 1 && pipe_pending();
}

/* Undo pipe_block (mu still held): a SIGPIPE that our writes made pending is
 * taken, one that was pending before is left to the program.  A write raises
 * SIGPIPE only when it fails with EPIPE, which leaves the connection broken
 * (or already dropped): only then is there anything to take. */
static void pipe_unblock(struct redis_dict *r)
{
    if (!r->pipe_was_pending && (!r->c || r->c->err) && pipe_pending()) {
        sigset_t pipe = pipe_set();
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &r->sig_old, NULL);
}

static struct timeval to_tv(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
        tv.tv_usec = 1000;
    return tv;
}

static bool status_is(const redisReply *r, const char *s)
{
    return r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
           r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* Connect, AUTH, PING.  mu held. */
static int rconnect(struct redis_dict *r)
{
    struct timeval tv = to_tv(r->timeout);
    /* hiredis copies at most sizeof sun_path - 1 bytes of a socket path and ends
     * them with whatever byte follows: a longer path would reach the socket its
     * first bytes name, one of that length fails at random. */
    if (r->host[0] == '/' && strlen(r->host) >= sizeof((struct sockaddr_un *)0)->sun_path - 1)
        return PF_ECONNECT;
    redisContext *c = r->host[0] == '/' ? redisConnectUnixWithTimeout(r->host, tv)
                                        : redisConnectWithTimeout(r->host, r->port, tv);
    if (!c)
        return PF_ENOMEM;
    int rc = PF_ECONNECT;
    redisReply *rep = NULL;
    /* hiredis makes its socket without SOCK_CLOEXEC: mark it at once, so that a
     * program this process execs does not inherit the connection. */
    if (c->err || fcntl(c->fd, F_SETFD, FD_CLOEXEC) != 0 || redisSetTimeout(c, tv) != REDIS_OK)
        goto fail;
    if (r->password[0]) {
        const char *argv[2] = {"AUTH", r->password};
        size_t lens[2] = {4, strlen(r->password)};
        rep = redisCommandArgv(c, 2, argv, lens);
        if (!status_is(rep, "OK"))
            goto fail;
        freeReplyObject(rep);
    }
    rep = redisCommand(c, "PING");
    if (!status_is(rep, "PONG"))
        goto fail;
    freeReplyObject(rep);
    r->c = c;
    r->pid = getpid();
    return 0;
fail:
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return rc;
}

/* Lock the handle and make sure it has a live connection of this process. */
static int conn_lock(struct redis_dict *r)
{
    pf__mutex_lock(&r->mu);
    pipe_block(r);
    if (r->c && (r->c->err || r->pid != getpid())) {
        /* Broken, or the parent's (we are a fork child): redisFree only closes
         * our copy of the socket, it sends nothing on it. */
        redisFree(r->c);
        r->c = NULL;
    }
    int rc = r->c ? 0 : rconnect(r);
    if (rc) {
        pipe_unblock(r);
        pf__mutex_unlock(&r->mu);
    }
    return rc;
}

static void conn_unlock(struct redis_dict *r)
{
    pipe_unblock(r);
    pf__mutex_unlock(&r->mu);
}

static int error_code(const redisReply *rep)
{
    const char *s = rep->str ? rep->str : "";
    if (strstr(s, "not an integer") || strstr(s, "overflow"))
        return PF_EINVAL;
    if (!strncmp(s, "NOAUTH", 6) || !strncmp(s, "WRONGPASS", 9))
        return PF_EPERM;
    return PF_EPROTO;
}

/* Run one command.  0 with *out (caller frees) unless it is an error reply. */
static int cmd(struct redis_dict *r, int argc, const char **argv, const size_t *lens,
               redisReply **out)
{
    *out = NULL;
    redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
    if (!rep)
        return PF_ECONNECT; /* r->c->err is set: the next call reconnects */
    if (rep->type == REDIS_REPLY_ERROR) {
        int rc = error_code(rep);
        freeReplyObject(rep);
        return rc;
    }
    *out = rep;
    return 0;
}

/* cmd for a handle that is not locked yet. */
static int cmd1(struct redis_dict *r, int argc, const char **argv, const size_t *lens,
                redisReply **out)
{
    *out = NULL;
    int rc = conn_lock(r);
    if (rc)
        return rc;
    rc = cmd(r, argc, argv, lens, out);
    conn_unlock(r);
    return rc;
}

void pf__dict_redis_atfork_child(void)
{
    /* One thread now; pf__dict_lock was held through fork, so the list is whole.
     * A handle's mutex may have been held by a parent thread: start it afresh. */
    for (struct redis_dict *r = g_handles; r; r = r->next)
        pthread_mutex_init(&r->mu, NULL);
}

static void redis_destroy(pf_dict *d)
{
    struct redis_dict *r = rd(d);
    pf__dict_lock();
    for (struct redis_dict **p = &g_handles; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pf__dict_unlock();
    if (r->c)
        redisFree(r->c);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int pf__dict_redis_open(pf_dict **out, const char *host, int port, const char *name,
                        const pf_dict_opts *opts)
{
    struct redis_dict *r = calloc(1, sizeof *r);
    if (!r)
        return PF_ENOMEM;
    r->base.ops = &redis_ops;
    r->base.backend = PF_DICT_REDIS;
    atomic_init(&r->base.refs, 1);
    pf__strlcpy(r->base.name, name, sizeof r->base.name);
    pf__strlcpy(r->host, host, sizeof r->host);
    r->port = port;
    r->timeout = opts && opts->timeout > 0 ? opts->timeout : DEFAULT_TIMEOUT;
    if (opts && opts->password)
        pf__strlcpy(r->password, opts->password, sizeof r->password);
    pthread_mutex_init(&r->mu, NULL);
    pf__mutex_lock(&r->mu);
    pipe_block(r);
    int rc = rconnect(r);
    pipe_unblock(r);
    pf__mutex_unlock(&r->mu);
    if (rc) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    pf__dict_lock();
    r->next = g_handles;
    g_handles = r;
    pf__dict_unlock();
    *out = &r->base;
    return 0;
}

/* Ref payload: port, timeout, host, name, password. */
struct redis_ref {
    int32_t port;
    uint32_t pad;
    double timeout;
    char host[PF_DICT_MAX_HOST + 1];
    char name[PF_DICT_MAX_NAME + 1];
    char password[129];
};

static int redis_ref_fill(pf_dict *d, unsigned char *bytes, size_t cap)
{
    struct redis_dict *r = rd(d);
    struct redis_ref ref;
    if (cap < sizeof ref)
        return PF_EINVAL;
    memset(&ref, 0, sizeof ref);
    ref.port = r->port;
    ref.timeout = r->timeout;
    memcpy(ref.host, r->host, sizeof ref.host);
    memcpy(ref.name, d->name, sizeof ref.name);
    memcpy(ref.password, r->password, sizeof ref.password);
    memcpy(bytes, &ref, sizeof ref);
    return 0;
}

int pf__dict_redis_from_ref(pf_dict **out, const unsigned char *bytes, size_t cap)
{
    struct redis_ref ref;
    if (cap < sizeof ref)
        return PF_EINVAL;
    memcpy(&ref, bytes, sizeof ref);
    ref.host[sizeof ref.host - 1] = '\0';
    ref.name[sizeof ref.name - 1] = '\0';
    ref.password[sizeof ref.password - 1] = '\0';
    /* The bytes come from anywhere: the same checks as pf_dict_open_redis. */
    if (!pf__dict_timeout_ok(ref.timeout) || !pf__dict_redis_where_ok(ref.host, ref.port, ref.name))
        return PF_EINVAL;
    pf_dict_opts o = {.timeout = ref.timeout, .password = ref.password[0] ? ref.password : NULL};
    return pf__dict_redis_open(out, ref.host, ref.port, ref.name, &o);
}

/* ------------------------------------------------------------- operations -- */

static int redis_set(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen)
{
    const char *argv[4] = {"HSET", d->name, key, val};
    size_t lens[4] = {4, strlen(d->name), klen, vlen};
    redisReply *rep;
    int rc = cmd1(rd(d), 4, argv, lens, &rep);
    if (rc == 0 && rep->type != REDIS_REPLY_INTEGER)
        rc = PF_EPROTO;
    freeReplyObject(rep);
    return rc;
}

static int take_value(const redisReply *rep, void *buf, size_t cap, size_t *vlen, void **alloc)
{
    if (rep->type == REDIS_REPLY_NIL)
        return PF_ENOTFOUND;
    if (rep->type != REDIS_REPLY_STRING)
        return PF_EPROTO;
    if (vlen)
        *vlen = rep->len;
    if (alloc) {
        *alloc = malloc(rep->len ? rep->len : 1);
        if (!*alloc)
            return PF_ENOMEM;
        memcpy(*alloc, rep->str, rep->len);
        return 0;
    }
    if (rep->len > cap)
        return PF_ETOOBIG;
    memcpy(buf, rep->str, rep->len);
    return 0;
}

static int redis_get(pf_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
                     void **alloc)
{
    bool presence = !buf && !alloc;
    const char *argv[3] = {presence ? "HEXISTS" : "HGET", d->name, key};
    size_t lens[3] = {presence ? 7u : 4u, strlen(d->name), klen};
    redisReply *rep;
    int rc = cmd1(rd(d), 3, argv, lens, &rep);
    if (rc)
        return rc;
    if (presence)
        rc = rep->type != REDIS_REPLY_INTEGER ? PF_EPROTO : rep->integer ? 0 : PF_ENOTFOUND;
    else
        rc = take_value(rep, buf, cap, vlen, alloc);
    freeReplyObject(rep);
    return rc;
}

static int redis_del(pf_dict *d, const void *key, size_t klen)
{
    const char *argv[3] = {"HDEL", d->name, key};
    size_t lens[3] = {4, strlen(d->name), klen};
    redisReply *rep;
    int rc = cmd1(rd(d), 3, argv, lens, &rep);
    if (rc)
        return rc;
    rc = rep->type != REDIS_REPLY_INTEGER ? PF_EPROTO : rep->integer ? 0 : PF_ENOTFOUND;
    freeReplyObject(rep);
    return rc;
}

static int redis_len(pf_dict *d, size_t *out)
{
    const char *argv[2] = {"HLEN", d->name};
    size_t lens[2] = {4, strlen(d->name)};
    redisReply *rep;
    int rc = cmd1(rd(d), 2, argv, lens, &rep);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0)
        *out = (size_t)rep->integer;
    else
        rc = PF_EPROTO;
    freeReplyObject(rep);
    return rc;
}

static int redis_clear(pf_dict *d)
{
    const char *argv[2] = {"DEL", d->name};
    size_t lens[2] = {3, strlen(d->name)};
    redisReply *rep;
    int rc = cmd1(rd(d), 2, argv, lens, &rep);
    freeReplyObject(rep);
    return rc;
}

static int redis_incr(pf_dict *d, const void *key, size_t klen, int64_t delta, int64_t *out)
{
    char num[24];
    size_t n = pf__dict_format_i64(delta, num);
    const char *argv[4] = {"HINCRBY", d->name, key, num};
    size_t lens[4] = {7, strlen(d->name), klen, n};
    redisReply *rep;
    int rc = cmd1(rd(d), 4, argv, lens, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER)
        rc = PF_EPROTO;
    else if (out)
        *out = rep->integer;
    freeReplyObject(rep);
    return rc;
}

static int redis_cas(pf_dict *d, const void *key, size_t klen, const void *expected, size_t elen,
                     const void *desired, size_t dlen, bool *swapped)
{
    const char *argv[9] = {"EVAL",
                           CAS_LUA,
                           "1",
                           d->name,
                           key,
                           expected ? "1" : "0",
                           expected ? expected : "",
                           desired ? "1" : "0",
                           desired ? desired : ""};
    size_t lens[9] = {4, strlen(CAS_LUA), 1, strlen(d->name), klen, 1, elen, 1, dlen};
    redisReply *rep;
    int rc = cmd1(rd(d), 9, argv, lens, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER)
        rc = PF_EPROTO;
    else if (swapped)
        *swapped = rep->integer == 1;
    freeReplyObject(rep);
    return rc;
}

static int redis_goi(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen,
                     void **cur, size_t *cur_len, bool *inserted)
{
    const char *argv[6] = {"EVAL", GOI_LUA, "1", d->name, key, val};
    size_t lens[6] = {4, strlen(GOI_LUA), 1, strlen(d->name), klen, vlen};
    redisReply *rep;
    int rc = cmd1(rd(d), 6, argv, lens, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        rc = PF_EPROTO;
    } else {
        if (inserted)
            *inserted = rep->element[0]->integer == 1;
        if (cur_len)
            *cur_len = rep->element[1]->len;
        if (cur) {
            rc = take_value(rep->element[1], NULL, 0, NULL, cur);
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* Send the queued commands' replies into reps[0..n); 0 or the first error
 * (every reply is read even after an error, to keep the stream in step). */
static int read_replies(struct redis_dict *r, size_t n, redisReply **reps)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *p = NULL;
        if (redisGetReply(r->c, &p) != REDIS_OK) {
            for (size_t j = i; j < n; j++)
                reps[j] = NULL;
            return PF_ECONNECT;
        }
        reps[i] = p;
        if (reps[i]->type == REDIS_REPLY_ERROR && rc == 0)
            rc = error_code(reps[i]);
    }
    return rc;
}

static int redis_update_fn(pf_dict *d, const void *key, size_t klen, pf_dict_update_cb fn,
                           void *arg)
{
    struct redis_dict *r = rd(d);
    size_t nlen = strlen(d->name);
    int rc = conn_lock(r);
    if (rc)
        return rc;
    for (int tries = 0; tries < UPDATE_TRIES; tries++) {
        redisReply *rep = NULL, *old = NULL, *reps[3] = {NULL, NULL, NULL};
        const char *wv[2] = {"WATCH", d->name};
        size_t wl[2] = {5, nlen};
        if ((rc = cmd(r, 2, wv, wl, &rep)))
            goto out;
        freeReplyObject(rep);
        const char *gv[3] = {"HGET", d->name, key};
        size_t gl[3] = {4, nlen, klen};
        if ((rc = cmd(r, 3, gv, gl, &old)))
            goto out;
        if (old->type != REDIS_REPLY_NIL && old->type != REDIS_REPLY_STRING) {
            freeReplyObject(old);
            rc = PF_EPROTO;
            goto out;
        }
        bool exists = old->type == REDIS_REPLY_STRING;
        const void *nv = NULL;
        size_t nl = 0;
        int decision = fn(arg, exists ? old->str : NULL, exists ? old->len : 0, &nv, &nl);
        if (decision == PF_DICT_SET && ((!nv && nl) || nl > PF_DICT_MAX_VALUE))
            decision = nl > PF_DICT_MAX_VALUE ? PF_ETOOBIG : PF_EINVAL;
        if (decision == PF_DICT_DELETE && !exists)
            decision = PF_DICT_KEEP;
        if (decision != PF_DICT_SET && decision != PF_DICT_DELETE) {
            freeReplyObject(old);
            const char *uv[1] = {"UNWATCH"};
            size_t ul[1] = {7};
            int urc = cmd(r, 1, uv, ul, &rep);
            freeReplyObject(rep);
            rc = decision < 0 ? decision : decision == PF_DICT_KEEP ? urc : PF_EINVAL;
            goto out;
        }
        const char *mv[1] = {"MULTI"}, *ev[1] = {"EXEC"};
        size_t ml[1] = {5}, el[1] = {4};
        const char *sv[4] = {"HSET", d->name, key, nv ? nv : ""};
        size_t sl[4] = {4, nlen, klen, nl};
        const char *dv[3] = {"HDEL", d->name, key};
        redisAppendCommandArgv(r->c, 1, mv, ml);
        if (decision == PF_DICT_SET)
            redisAppendCommandArgv(r->c, 4, sv, sl);
        else
            redisAppendCommandArgv(r->c, 3, dv, sl);
        redisAppendCommandArgv(r->c, 1, ev, el);
        freeReplyObject(old); /* nv may point into it: only after the append */
        rc = read_replies(r, 3, reps);
        bool done = rc == 0 && reps[2]->type == REDIS_REPLY_ARRAY;
        if (rc == 0 && !done && reps[2]->type != REDIS_REPLY_NIL)
            rc = PF_EPROTO;
        for (int i = 0; i < 3; i++)
            if (reps[i])
                freeReplyObject(reps[i]);
        if (rc || done)
            goto out;
        /* EXEC gave nil: the hash changed after WATCH.  Try again. */
    }
    rc = PF_EBUSY;
out:
    conn_unlock(r);
    return rc;
}

static int redis_set_many(pf_dict *d, const pf_dict_item *items, size_t n)
{
    struct redis_dict *r = rd(d);
    size_t argc_max = 2 + 2 * BATCH_PAIRS;
    const char **argv = malloc(argc_max * sizeof *argv);
    size_t *lens = malloc(argc_max * sizeof *lens);
    redisReply *reps[BATCH_WINDOW];
    int rc = argv && lens ? conn_lock(r) : PF_ENOMEM;
    if (rc)
        goto out;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t sent = 0;
        for (; sent < BATCH_WINDOW && i < n; sent++) {
            int argc = 2;
            argv[0] = "HSET";
            lens[0] = 4;
            argv[1] = d->name;
            lens[1] = strlen(d->name);
            for (size_t k = 0; k < BATCH_PAIRS && i < n; k++, i++) {
                argv[argc] = items[i].key ? items[i].key : "";
                lens[argc++] = items[i].klen;
                argv[argc] = items[i].val ? items[i].val : "";
                lens[argc++] = items[i].vlen;
            }
            if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) {
                rc = PF_ENOMEM;
                break;
            }
        }
        int rr = read_replies(r, sent, reps);
        for (size_t k = 0; k < sent; k++) {
            /* HSET answers its count of new fields: anything else is not a set. */
            if (rr == 0 && reps[k]->type != REDIS_REPLY_INTEGER)
                rr = PF_EPROTO;
            if (reps[k])
                freeReplyObject(reps[k]);
        }
        if (rc == 0)
            rc = rr;
    }
    conn_unlock(r);
out:
    free(argv);
    free(lens);
    return rc;
}

static int redis_get_many(pf_dict *d, const pf_dict_item *items, size_t n, pf_dict_got_fn fn,
                          void *user)
{
    struct redis_dict *r = rd(d);
    size_t argc_max = 2 + BATCH_PAIRS;
    const char **argv = malloc(argc_max * sizeof *argv);
    size_t *lens = malloc(argc_max * sizeof *lens);
    redisReply *reps[BATCH_WINDOW];
    int rc = argv && lens ? 0 : PF_ENOMEM;
    for (size_t i = 0; i < n && rc == 0;) {
        if ((rc = conn_lock(r)))
            break;
        size_t sent = 0, first = i;
        for (; sent < BATCH_WINDOW && i < n; sent++) {
            int argc = 2;
            argv[0] = "HMGET";
            lens[0] = 5;
            argv[1] = d->name;
            lens[1] = strlen(d->name);
            for (size_t k = 0; k < BATCH_PAIRS && i < n; k++, i++) {
                argv[argc] = items[i].key ? items[i].key : "";
                lens[argc++] = items[i].klen;
            }
            if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) {
                rc = PF_ENOMEM;
                break;
            }
        }
        int rr = read_replies(r, sent, reps);
        conn_unlock(r); /* the callbacks run without the handle's lock */
        if (rc == 0)
            rc = rr;
        size_t idx = first;
        for (size_t k = 0; k < sent; k++) {
            redisReply *a = reps[k];
            /* One value per key it asked for: never an index past the batch. */
            if (rc == 0 && (a->type != REDIS_REPLY_ARRAY ||
                            a->elements != PF__MIN((size_t)BATCH_PAIRS, n - idx)))
                rc = PF_EPROTO;
            for (size_t e = 0; rc == 0 && e < a->elements; e++, idx++) {
                redisReply *v = a->element[e];
                if (v->type == REDIS_REPLY_NIL)
                    rc = fn(user, idx, PF_ENOTFOUND, NULL, 0);
                else if (v->type == REDIS_REPLY_STRING)
                    rc = fn(user, idx, 0, v->str, v->len);
                else
                    rc = PF_EPROTO;
            }
        }
        for (size_t k = 0; k < sent; k++)
            if (reps[k])
                freeReplyObject(reps[k]);
    }
    free(argv);
    free(lens);
    return rc;
}

/* Iteration: HSCAN batches. */
struct scan {
    redisReply *batch; /* the current HSCAN reply */
    size_t pos;        /* next field index in batch->element[1] */
    char cursor[32];
    bool done; /* the server returned cursor 0 */
};

static int redis_iter_open(pf_dict *d, void **cursor)
{
    (void)d;
    struct scan *s = calloc(1, sizeof *s);
    if (!s)
        return PF_ENOMEM;
    strcpy(s->cursor, "0");
    *cursor = s;
    return 0;
}

static int redis_iter_next(pf_dict *d, void *cursor, pf__dict_entry *e)
{
    struct scan *s = cursor;
    for (;;) {
        if (s->batch) {
            redisReply *kv = s->batch->element[1];
            if (s->pos + 1 < kv->elements) {
                redisReply *k = kv->element[s->pos], *v = kv->element[s->pos + 1];
                s->pos += 2;
                if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                    return PF_EPROTO;
                e->key = k->str;
                e->klen = k->len;
                e->val = v->str;
                e->vlen = v->len;
                return 0;
            }
            freeReplyObject(s->batch);
            s->batch = NULL;
        }
        if (s->done)
            return PF_EEOF;
        const char *argv[5] = {"HSCAN", d->name, s->cursor, "COUNT", SCAN_COUNT};
        size_t lens[5] = {5, strlen(d->name), strlen(s->cursor), 5, strlen(SCAN_COUNT)};
        redisReply *rep;
        int rc = cmd1(rd(d), 5, argv, lens, &rep);
        if (rc)
            return rc;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[0]->len >= sizeof s->cursor ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return PF_EPROTO;
        }
        memcpy(s->cursor, rep->element[0]->str, rep->element[0]->len);
        s->cursor[rep->element[0]->len] = '\0';
        s->done = strcmp(s->cursor, "0") == 0;
        s->batch = rep;
        s->pos = 0;
    }
}

static void redis_iter_close(pf_dict *d, void *cursor)
{
    (void)d;
    struct scan *s = cursor;
    if (s->batch)
        freeReplyObject(s->batch);
    free(s);
}

static int redis_check(pf_dict *d, char *msg, size_t msg_cap)
{
    const char *argv[2] = {"TYPE", d->name};
    size_t lens[2] = {4, strlen(d->name)};
    redisReply *rep;
    int rc = cmd1(rd(d), 2, argv, lens, &rep);
    if (rc) {
        if (msg)
            snprintf(msg, msg_cap, "the server did not answer TYPE: %s", pf_strerror(rc));
        return rc == PF_ECONNECT ? rc : PF_ECORRUPT;
    }
    if (!status_is(rep, "hash") && !status_is(rep, "none")) {
        if (msg)
            snprintf(msg, msg_cap, "key %s holds a %.*s, not a hash", d->name, (int)rep->len,
                     rep->str ? rep->str : "?");
        rc = PF_ECORRUPT;
    } else if (msg) {
        snprintf(msg, msg_cap, "ok");
    }
    freeReplyObject(rep);
    return rc;
}

static bool redis_gone(pf_dict *d)
{
    (void)d;
    return false;
}

static const pf__dict_ops redis_ops = {
    .destroy = redis_destroy,
    .set = redis_set,
    .get = redis_get,
    .del = redis_del,
    .len = redis_len,
    .clear = redis_clear,
    .incr = redis_incr,
    .cas = redis_cas,
    .get_or_insert = redis_goi,
    .update_fn = redis_update_fn,
    .set_many = redis_set_many,
    .get_many = redis_get_many,
    .iter_open = redis_iter_open,
    .iter_next = redis_iter_next,
    .iter_close = redis_iter_close,
    .check = redis_check,
    .ref_fill = redis_ref_fill,
    .gone = redis_gone,
};
