/*
 * pf_parallel_for and pf_parallel_reduce over an index range.
 *
 * DESIGN
 *   Two engines, chosen by executor kind.
 *
 *   Shared memory (threads, sequential): one job descriptor on the caller's stack;
 *   participants claim chunks from it with atomics (static: one block each; guided: CAS
 *   of a shrinking chunk; dynamic: see below).  The caller is a participant, and
 *   max_workers - 1 helper tasks on the pool are the others, so the loop always
 *   progresses, even when the pool is busy or the loop runs inside one of its tasks.
 *   Helpers that have not started when the work runs out are cancelled, not waited for.
 *   The job lives on the caller's stack, so the caller must not return while a helper
 *   can still touch it: helpers are submitted without a time limit, so a helper's
 *   future finishes only when helper_task has returned (or it was withdrawn before it
 *   started), and the caller waits for every one of them. With an automatic grain, the
 *   caller first runs a few iterations alone, doubling, and finishes alone when the
 *   rest would take less than it costs to wake the pool: tiny loops are not slower than
 *   the plain loop.
 *
 *   Dynamic schedule: the range starts cut into one share per participant,
 *   each on its own cache lines.  A participant claims `chunk` iterations
 *   at a time from the front of its own share (a fetch_add on a line no one
 *   else writes, instead of one cursor that every claim of every core
 *   fights over); when its share is empty it takes the back half of the
 *   largest remaining share (at least one chunk) and goes on from there.
 *   So every call of the body still covers at most `chunk` iterations and
 *   the participants still finish within one chunk of each other, as with
 *   OpenMP's schedule(dynamic, chunk), without the shared cursor's cache
 *   line bouncing between cores at every chunk.  Owner and thief agree
 *   Dekker-style (see struct share); thieves of one share serialise on its
 *   lock, which the owner takes only when a thief got in its way.
 *
 *   Time limits (see pf_parallel_for in pfor/loop.h): the executor's
 *   task_timeout bounds each call of the body.  On threads a call cannot be
 *   interrupted, so it is timed: one that ran past the limit stops the loop
 *   with PF_ETASKTIMEOUT once it returns.  The sequential executor has no
 *   time limits.
 *
 *   Index arithmetic never wraps: a chunk is clamped to the range, and every
 *   chunk end is computed as cur + MIN(size, end - cur), so a huge chunk or a
 *   range that ends near SIZE_MAX gives calls inside [begin, end) only.
 *
 *   Separate memory (processes, MPI): the range is cut into chunk tasks
 *   (task registered as "pf.for_chunk"; the body by registry id or address, the
 *   context copied), at most 4 per worker in flight, combined in chunk order
 *   so a reduction gives the same answer every run.  The caller never runs
 *   the body itself here: a crashing body must not take the caller down.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define PROBE_ENOUGH_NS 10000u /* stop probing after this much work */
#define INLINE_BELOW_NS 30000u /* cheaper than waking the pool */

/* One participant's share of a dynamic loop: [lo, hi) is unclaimed.  The
 * owner claims from the front (fetch_add of lo, then a look at hi); a thief,
 * holding `lock`, lowers hi, then looks at lo, and puts hi back if the owner
 * got past it.  Both steps are sequentially consistent, so of an owner's
 * claim and a thief's theft racing for the same iterations at least one sees
 * the other: the owner then re-reads hi under the lock.  Only the owner
 * raises lo, and it gives its share a new range (after a theft) under the
 * lock, when the share was empty. */
struct share {
    alignas(128) _Atomic size_t lo;
    _Atomic size_t hi;
    pf__mutex lock;
};

struct job {
    pf_for_fn body;     /* parallel_for */
    pf_reduce_fn rbody; /* parallel_reduce */
    void *ctx;
    pf_combine_fn combine;
    size_t acc_size;
    const void *identity;
    void *result; /* reduce: combined under acc_lock */
    pf__mutex acc_lock;

    size_t begin, end, chunk; /* 1 <= chunk <= end - begin once the loop is shared out */
    pf_schedule schedule;
    int parts;             /* participants, for static blocks and guided */
    _Atomic int next_part; /* static: next block */
    _Atomic int error;     /* first non-zero body return; read per chunk, rarely written */
    uint64_t limit_ns;     /* immutable: a body call's time limit (threads' task_timeout), 0 none */

    /* The guided cursor, written by every participant for every
     * chunk: alone on its cache lines (128 bytes: the adjacent-line
     * prefetcher pairs lines), so the read-mostly fields above and the
     * caller's stack below do not bounce between cores with it. */
    alignas(128) _Atomic size_t next;
    char pad[128 - sizeof(size_t)];

    /* dynamic: a share per participant, in order of joining */
    struct share *shares;
    struct share shares_inline[4];
    _Atomic int joined;
};

/* Claim the next chunk of my own share into [*b, *e); false when it is empty. */
static bool claim_own(struct job *j, struct share *me, size_t *b, size_t *e)
{
    /* Only the owner raises lo, so it knows lo here: saturate at SIZE_MAX
     * rather than wrap (a wrapped lo would make claimed iterations look
     * unclaimed to thieves).  lo == SIZE_MAX is >= any hi: the share is
     * then empty. */
    size_t lo = atomic_load_explicit(&me->lo, memory_order_relaxed);
    size_t i = atomic_fetch_add(&me->lo, PF__MIN(j->chunk, SIZE_MAX - lo));
    size_t hi = atomic_load(&me->hi);
    if (i < hi && hi - i >= j->chunk) {
        *b = i;
        *e = i + j->chunk;
        return true;
    }
    /* the end of the share, or a thief at work: settle it under the lock */
    pf__mutex_lock(&me->lock);
    hi = atomic_load(&me->hi);
    pf__mutex_unlock(&me->lock);
    if (i >= hi)
        return false;
    *b = i;
    *e = i + PF__MIN(j->chunk, hi - i);
    return true;
}

/* Take the back half (at least a chunk) of the largest other share and make
 * it mine; false when every share is empty. */
static bool steal(struct job *j, struct share *me)
{
    for (;;) {
        struct share *victim = NULL;
        size_t most = 0;
        for (int p = 0; p < j->parts; p++) {
            struct share *v = &j->shares[p];
            size_t lo = atomic_load_explicit(&v->lo, memory_order_relaxed);
            size_t hi = atomic_load_explicit(&v->hi, memory_order_relaxed);
            if (v != me && lo < hi && hi - lo > most) {
                most = hi - lo;
                victim = v;
            }
        }
        if (!victim)
            return false; /* every iteration is claimed (owners finish their own) */
        pf__mutex_lock(&victim->lock);
        size_t hi = atomic_load(&victim->hi);
        size_t lo = atomic_load(&victim->lo);
        if (lo >= hi) {
            pf__mutex_unlock(&victim->lock);
            continue; /* emptied meanwhile: look again */
        }
        size_t take = PF__MAX(j->chunk, (hi - lo) / 2);
        size_t mid = take < hi - lo ? hi - take : lo;
        atomic_store(&victim->hi, mid);
        if (atomic_load(&victim->lo) > mid) {
            atomic_store(&victim->hi, hi); /* its owner got there first */
            pf__mutex_unlock(&victim->lock);
            continue;
        }
        pf__mutex_unlock(&victim->lock);
        /* [mid, hi) is mine now; my share is empty, so only I and thieves
         * (who hold my lock) look at it */
        pf__mutex_lock(&me->lock);
        atomic_store(&me->hi, hi);
        atomic_store(&me->lo, mid);
        pf__mutex_unlock(&me->lock);
        return true;
    }
}

/* Block p of `parts` near-equal blocks of [begin, begin + n). */
static void nth_block(size_t begin, size_t n, int parts, int p, size_t *b, size_t *e)
{
    size_t k = (size_t)parts, i = (size_t)p;
    *b = begin + n / k * i + PF__MIN(i, n % k);
    *e = *b + n / k + (i < n % k);
}

static bool run_range(struct job *j, size_t b, size_t e, void *acc)
{
    if (atomic_load_explicit(&j->error, memory_order_relaxed))
        return false;
    uint64_t t0 = j->limit_ns ? pf__now_ns() : 0;
    int rc = j->body ? j->body(b, e, j->ctx) : j->rbody(b, e, j->ctx, acc);
    if (rc == 0 && j->limit_ns && pf__now_ns() - t0 > j->limit_ns)
        rc = PF_ETASKTIMEOUT; /* the call overran; a thread cannot be stopped sooner */
    if (rc) {
        int zero = 0;
        atomic_compare_exchange_strong(&j->error, &zero, rc);
        return false;
    }
    return true;
}

/* Claim and run chunks until none are left. */
static void participate(struct job *j)
{
    alignas(128) unsigned char stack_acc[128]; /* a line pair of its own: see job.next */
    void *acc = NULL;
    if (j->rbody) {
        acc = j->acc_size <= sizeof stack_acc ? stack_acc : malloc(j->acc_size);
        if (!acc) {
            int zero = 0;
            atomic_compare_exchange_strong(&j->error, &zero, PF_ENOMEM);
            return;
        }
        memcpy(acc, j->identity, j->acc_size);
    }
    bool worked = false;
    size_t n = j->end - j->begin;
    switch (j->schedule) {
    case PF_SCHEDULE_STATIC:
        for (int p; (p = atomic_fetch_add(&j->next_part, 1)) < j->parts;) {
            size_t b, e;
            nth_block(j->begin, n, j->parts, p, &b, &e);
            if (b < e && !run_range(j, b, e, acc))
                break;
            worked = true;
        }
        break;
    case PF_SCHEDULE_GUIDED:
        for (;;) {
            size_t cur = atomic_load_explicit(&j->next, memory_order_relaxed);
            if (cur >= j->end)
                break;
            size_t c = PF__MAX(j->chunk, (j->end - cur) / (2 * (size_t)j->parts));
            size_t e = cur + PF__MIN(c, j->end - cur); /* cur + c may wrap */
            if (!atomic_compare_exchange_weak(&j->next, &cur, e))
                continue;
            worked = true;
            if (!run_range(j, cur, e, acc))
                break;
        }
        break;
    default: { /* dynamic */
        int id = atomic_fetch_add(&j->joined, 1);
        if (id >= j->parts)
            break; /* cannot happen: one share per participant */
        struct share *me = &j->shares[id];
        for (;;) {
            size_t b, e;
            if (!claim_own(j, me, &b, &e)) {
                if (!steal(j, me))
                    break;
                continue; /* a stolen range is claimed like my own */
            }
            worked = true;
            if (!run_range(j, b, e, acc))
                break;
        }
        break;
    }
    }
    if (j->rbody) {
        if (worked) {
            pf__mutex_lock(&j->acc_lock);
            j->combine(j->result, acc);
            pf__mutex_unlock(&j->acc_lock);
        }
        if (acc != stack_acc)
            free(acc);
    }
}

/* A helper task on the pool: its argument is the job's address (threads
 * share the caller's memory).  It runs without a time limit, so its future
 * finishes only after this returns: the caller's wait for it is a wait for
 * the last use of the job. */
static int helper_task(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    struct job *j;
    if (len != sizeof j)
        return PF_EINVAL;
    memcpy(&j, arg, sizeof j);
    participate(j);
    return 0;
}

/* Run [b, e) alone, doubling the piece, until it is done or has taken long
 * enough to estimate the rest.  Returns true when the whole loop is done. */
static bool probe_inline(struct job *j, void *acc)
{
    uint64_t t0 = pf__now_ns();
    size_t cur = j->begin, step = 1;
    while (cur < j->end) {
        size_t e = cur + PF__MIN(step, j->end - cur); /* cur + step may wrap near SIZE_MAX */
        if (!run_range(j, cur, e, acc))
            return true;
        cur = e;
        uint64_t spent = pf__now_ns() - t0;
        if (spent >= PROBE_ENOUGH_NS) {
            double per = (double)spent / (double)(cur - j->begin);
            if (per * (double)(j->end - cur) >= INLINE_BELOW_NS)
                break;
        }
        if (step <= SIZE_MAX / 2)
            step *= 2;
    }
    j->begin = cur;
    if (cur < j->end)
        return false;
    return true;
}

/* Cut [begin, end) into `parts` shares for the dynamic schedule. */
static int share_out(struct job *j, int parts)
{
    j->parts = parts;
    j->shares = j->shares_inline;
    if ((size_t)parts > sizeof j->shares_inline / sizeof j->shares_inline[0]) {
        j->shares = aligned_alloc(alignof(struct share), (size_t)parts * sizeof *j->shares);
        if (!j->shares)
            return PF_ENOMEM;
    }
    size_t n = j->end - j->begin;
    for (int p = 0; p < parts; p++) {
        struct share *sh = &j->shares[p];
        size_t lo, hi;
        nth_block(j->begin, n, parts, p, &lo, &hi);
        atomic_init(&sh->lo, lo);
        atomic_init(&sh->hi, hi);
        pf__mutex_init(&sh->lock);
    }
    atomic_init(&j->joined, 0);
    return PF_OK;
}

static void shares_free(struct job *j)
{
    for (int p = 0; p < j->parts; p++)
        pf__mutex_destroy(&j->shares[p].lock);
    if (j->shares != j->shares_inline)
        free(j->shares);
}

static int shared_memory_loop(pf_executor *ex, struct job *j, const pf_for_opts *o)
{
    /* Refused as a submit is (a process pool fails the chunk tasks): that
     * the caller could do the work itself is no reason to run it. */
    int accepted = pf__executor_accepts(ex, 0);
    if (accepted != PF_OK)
        return accepted;
    size_t n = j->end - j->begin;
    int workers = pf_executor_kind(ex) == PF_SEQUENTIAL ? 1 : pf_executor_max_workers(ex);
    j->schedule = o->schedule == PF_SCHEDULE_AUTO ? PF_SCHEDULE_DYNAMIC : o->schedule;
    size_t grain = o->grain;
    /* See DESIGN: on threads the executor's time limit applies to each call
     * of the body (validated <= 1e9 s at create, so the product fits). */
    double limit = pf_executor_kind(ex) == PF_THREADS ? ex->opts.task_timeout : 0;
    j->limit_ns = pf__limit_ns(limit);

    /* The caller's accumulator for inline work is the result itself.  One
     * worker with a time limit still runs the loop in chunks (all of them
     * in the caller): the limit bounds each chunk, never the whole loop. */
    bool inline_all = (workers <= 1 && !j->limit_ns) || n <= PF__MAX(grain, (size_t)1);
    if (!inline_all && grain == 0) {
        if (probe_inline(j, j->result))
            return atomic_load(&j->error);
        n = j->end - j->begin;
    }
    if (inline_all) {
        run_range(j, j->begin, j->end, j->result);
        return atomic_load(&j->error);
    }

    j->parts = workers;
    /* Automatic chunk: 64 per participant.  A claim costs a few ns on the
     * claimer's own cache line, and the last chunk, which bounds how far
     * apart the participants finish, is then ~1.5 % of a share. */
    j->chunk = o->chunk ? o->chunk : PF__MAX(n / ((size_t)workers * 64), (size_t)1);
    if (j->schedule == PF_SCHEDULE_GUIDED && !o->chunk)
        j->chunk = 1;
    j->chunk = PF__MIN(j->chunk, n); /* a bigger chunk means the same: one chunk */
    atomic_store(&j->next, j->begin);
    size_t n_chunks =
        j->schedule == PF_SCHEDULE_STATIC ? (size_t)workers : n / j->chunk + (n % j->chunk != 0);
    int helpers = (int)PF__MIN((size_t)workers - 1, n_chunks - 1);
    if (j->schedule == PF_SCHEDULE_DYNAMIC) {
        int rc = share_out(j, helpers + 1);
        if (rc != PF_OK)
            return rc;
    }
    pf_future *hf[PF_MAX_WORKERS];
    int started = 0;
    /* No time limit for helpers (timeout < 0 overrides task_timeout): the
     * watchdog would finish a helper's future while the helper still runs
     * on this stack frame.  run_range applies the limit per call instead. */
    const pf_submit_opts no_limit = {.timeout = -1, .max_retries = -1};
    for (int i = 0; i < helpers; i++) {
        const struct job *jp = j;
        if (pf_submit_ex(ex, helper_task, &jp, sizeof jp, &no_limit, &hf[started]) == PF_OK)
            started++;
    }
    participate(j); /* a helper that never starts has its share taken here */
    /* Not started yet: withdrawn, never runs.  Started: its future finishes
     * only when it has left the job (see helper_task), so after this loop no
     * helper touches *j. */
    for (int i = 0; i < started; i++) {
        pf_future_cancel(hf[i]);
        pf_future_wait(hf[i], PF_FOREVER);
        pf_future_release(hf[i]);
    }
    if (j->schedule == PF_SCHEDULE_DYNAMIC)
        shares_free(j);
    return atomic_load(&j->error);
}

/* --- separate memory: chunk tasks ---------------------------------------- */

struct chunk_arg {
    struct pf__fnref body;
    uint64_t begin, end;
    uint64_t ctx_addr; /* ctx as is, when ctx_len is 0 */
    uint64_t ctx_len;  /* bytes of ctx copied after the identity */
    uint64_t acc_size; /* 0: parallel_for; else reduce with identity following */
};

static int chunk_task(pf_task *t, const void *arg, size_t len)
{
    struct chunk_arg h;
    if (len < sizeof h)
        return pf_task_fail(t, PF_EPROTO, "loop chunk: short argument");
    memcpy(&h, arg, sizeof h);
    if (h.acc_size > len || h.ctx_len > len || sizeof h + h.acc_size + h.ctx_len != len)
        return pf_task_fail(t, PF_EPROTO, "loop chunk: bad sizes");
    pf_fn fn = pf__fnref_resolve(&h.body);
    if (!fn)
        return pf_task_fail(t, PF_ENOTREG, "loop chunk: body not found in this process");
    const unsigned char *p = (const unsigned char *)arg + sizeof h;
    /* The argument bytes are read-only shared memory: give the body its own
     * writable copy of the context. */
    void *ctx = (void *)(uintptr_t)h.ctx_addr;
    void *ctx_copy = NULL;
    if (h.ctx_len) {
        ctx_copy = malloc(h.ctx_len);
        if (!ctx_copy)
            return pf_task_fail(t, PF_ENOMEM, "loop chunk: no memory for the context");
        memcpy(ctx_copy, p + h.acc_size, h.ctx_len);
        ctx = ctx_copy;
    }
    int rc;
    if (h.acc_size == 0) {
        rc = ((pf_for_fn)fn)((size_t)h.begin, (size_t)h.end, ctx);
    } else {
        void *acc = pf_task_result_buffer(t, h.acc_size);
        if (!acc) {
            free(ctx_copy);
            return pf_task_fail(t, PF_ENOMEM, "loop chunk: no room for the accumulator");
        }
        memcpy(acc, p, h.acc_size);
        rc = ((pf_reduce_fn)fn)((size_t)h.begin, (size_t)h.end, ctx, acc);
    }
    free(ctx_copy);
    if (rc)
        return pf_task_fail(t, rc, "loop body returned %d on [%llu, %llu)", rc,
                            (unsigned long long)h.begin, (unsigned long long)h.end);
    return 0;
}

/* Registered under a reserved name, not PF_REGISTER's "chunk_task", which a
 * program's own task may well be called (one of the two registrations would
 * fail).  MPI ranks find the chunk task by this name's id. */
__attribute__((constructor)) static void register_chunk_task(void)
{
    (void)pf__register_reserved("pf.for_chunk", (pf_fn)chunk_task);
}

struct cut {
    size_t cur, end, chunk, min_chunk;
    pf_schedule schedule;
    int workers;
    int next_part;
    size_t n;
    size_t begin;
};

/* The next chunk [*b, *e); false when the range is used up. */
static bool next_cut(struct cut *c, size_t *b, size_t *e)
{
    if (c->schedule == PF_SCHEDULE_STATIC) {
        if (c->next_part >= c->workers)
            return false;
        size_t p = (size_t)c->next_part++, w = (size_t)c->workers;
        *b = c->begin + c->n / w * p + PF__MIN(p, c->n % w);
        *e = *b + c->n / w + (p < c->n % w);
        return *b < *e || next_cut(c, b, e);
    }
    if (c->cur >= c->end)
        return false;
    size_t size = c->chunk;
    if (c->schedule == PF_SCHEDULE_GUIDED)
        size = PF__MAX(c->min_chunk, (c->end - c->cur) / (2 * (size_t)c->workers));
    *b = c->cur;
    *e = c->cur + PF__MIN(size, c->end - c->cur); /* cur + size may wrap */
    c->cur = *e;
    return true;
}

static int chunked_loop(pf_executor *ex, pf_fn body, bool reduce, const void *ctx, size_t ctx_len,
                        void *acc, size_t acc_size, pf_combine_fn combine, size_t begin, size_t end,
                        const pf_for_opts *o)
{
    /* Every chunk's argument carries ctx: refused as pf_submit would refuse
     * it (one over the kind's limit: PF_ETOOBIG) before a byte of ctx is
     * read, and the argument's size below cannot wrap. */
    size_t fixed_len = sizeof(struct chunk_arg) + (reduce ? acc_size : 0); /* acc_size <= 1 MiB */
    if (ctx_len > SIZE_MAX - fixed_len)
        return PF_ETOOBIG;
    int accepted = pf__executor_accepts(ex, fixed_len + ctx_len);
    if (accepted != PF_OK)
        return accepted;
    int workers = pf_executor_max_workers(ex);
    size_t n = end - begin;
    struct cut c = {.cur = begin,
                    .end = end,
                    .begin = begin,
                    .n = n,
                    .workers = workers,
                    .schedule =
                        o->schedule == PF_SCHEDULE_AUTO ? PF_SCHEDULE_DYNAMIC : o->schedule};
    c.chunk = o->chunk ? o->chunk : PF__MAX(n / ((size_t)workers * 8), (size_t)1);
    c.min_chunk = o->chunk ? o->chunk : 1;
    struct pf__fnref ref = pf__fnref_make(body);

    size_t window = 4 * (size_t)workers;
    pf_future **fs = calloc(window, sizeof *fs);
    void *identity = reduce ? malloc(acc_size) : NULL;
    if (!fs || (reduce && !identity)) {
        free(fs);
        free(identity);
        return PF_ENOMEM;
    }
    if (reduce)
        memcpy(identity, acc, acc_size); /* every chunk starts from it */
    size_t head = 0, inflight = 0;
    int error = 0;
    bool more = true;
    for (;;) {
        while (more && !error && inflight < window) {
            size_t b, e;
            if (!(more = next_cut(&c, &b, &e)))
                break;
            size_t alen = fixed_len + ctx_len;
            unsigned char *arg = malloc(alen);
            if (!arg) {
                error = PF_ENOMEM;
                break;
            }
            struct chunk_arg h = {.body = ref,
                                  .begin = b,
                                  .end = e,
                                  .ctx_addr = (uint64_t)(uintptr_t)ctx,
                                  .ctx_len = ctx_len,
                                  .acc_size = reduce ? acc_size : 0};
            memcpy(arg, &h, sizeof h);
            if (reduce)
                memcpy(arg + sizeof h, identity, acc_size);
            if (ctx_len)
                memcpy(arg + sizeof h + (reduce ? acc_size : 0), ctx, ctx_len);
            int rc =
                pf__submit_owned(ex, chunk_task, arg, alen, 0, &fs[(head + inflight) % window]);
            if (rc != PF_OK) {
                error = rc;
                break;
            }
            inflight++;
        }
        if (!inflight)
            break;
        pf_future *f = fs[head];
        head = (head + 1) % window;
        inflight--;
        const void *res;
        size_t len;
        int rc = pf_future_result(f, PF_FOREVER, &res, &len);
        if (rc == PF_ETASK) {
            pf_error_info info;
            pf_future_error(f, &info);
            rc = info.task_code ? info.task_code : PF_ETASK; /* the body's own code */
        }
        if (rc == PF_OK && reduce) {
            if (len != acc_size)
                rc = PF_EPROTO;
            else
                combine(acc, res); /* in chunk order: the same answer every run */
        }
        if (rc && !error)
            error = rc;
        pf_future_release(f);
        /* Stop: withdraw what has not started; running calls end on their
         * own (cancelling one on processes would kill its worker mid-body). */
        if (error)
            for (size_t k = 0; k < inflight; k++)
                pf__future_withdraw(fs[(head + k) % window]);
    }
    free(fs);
    free(identity);
    return error;
}

/* --- entry points -------------------------------------------------------- */

static bool separate_memory(pf_executor *ex)
{
    pf_kind k = pf_executor_kind(ex);
    return k == PF_PROCESSES || k == PF_MPI;
}

static int check(pf_executor *ex, size_t begin, size_t end, const pf_for_opts *o)
{
    if (pf_executor_max_workers(ex) <= 0 || begin > end)
        return PF_EINVAL;
    if (o && (o->schedule < PF_SCHEDULE_AUTO || o->schedule > PF_SCHEDULE_GUIDED))
        return PF_EINVAL;
    return PF_OK;
}

int pf_parallel_for(pf_executor *ex, size_t begin, size_t end, pf_for_fn body, void *ctx,
                    size_t ctx_len, const pf_for_opts *opts)
{
    pf_for_opts o = opts ? *opts : (pf_for_opts){0};
    int rc = check(ex, begin, end, opts);
    if (rc != PF_OK || !body || (ctx_len && !ctx))
        return rc != PF_OK ? rc : PF_EINVAL;
    if (begin == end)
        return PF_OK;
    if (separate_memory(ex))
        return chunked_loop(ex, (pf_fn)body, false, ctx, ctx_len, NULL, 0, NULL, begin, end, &o);
    struct job j = {.body = body, .ctx = ctx, .begin = begin, .end = end};
    return shared_memory_loop(ex, &j, &o);
}

int pf_parallel_reduce(pf_executor *ex, size_t begin, size_t end, pf_reduce_fn body,
                       const void *ctx, size_t ctx_len, void *acc, size_t acc_size,
                       pf_combine_fn combine, const pf_for_opts *opts)
{
    pf_for_opts o = opts ? *opts : (pf_for_opts){0};
    int rc = check(ex, begin, end, opts);
    if (rc != PF_OK || !body || !acc || !acc_size || !combine || (ctx_len && !ctx))
        return rc != PF_OK ? rc : PF_EINVAL;
    if (acc_size > (1u << 20))
        return PF_ETOOBIG; /* an accumulator travels with every chunk */
    if (begin == end)
        return PF_OK;
    if (separate_memory(ex))
        return chunked_loop(ex, (pf_fn)body, true, ctx, ctx_len, acc, acc_size, combine, begin, end,
                            &o);
    void *identity = malloc(acc_size);
    if (!identity)
        return PF_ENOMEM;
    memcpy(identity, acc, acc_size);
    struct job j = {.rbody = body,
                    .ctx = (void *)ctx,
                    .begin = begin,
                    .end = end,
                    .combine = combine,
                    .acc_size = acc_size,
                    .identity = identity,
                    .result = acc};
    pf__mutex_init(&j.acc_lock);
    rc = shared_memory_loop(ex, &j, &o);
    pf__mutex_destroy(&j.acc_lock);
    free(identity);
    return rc;
}
