/*
 * Futures: the outcome of one task, waited on by any number of threads.
 *
 * The hot paths (done?, result of a finished future, waiting) use only
 * atomics and a futex on f->state; f->lock is taken to finish the future
 * and to manage callbacks and completion-set watchers.  See core.h for the
 * state machine and the lock order.
 */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <string.h>

#include "core/core.h"

static bool valid(const pf_future *f)
{
    return f && f->magic == PF__FUTURE_MAGIC;
}

int pf__future_new(struct pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len,
                   void *owned_arg, pf_future **out)
{
    pf_future *f = calloc(1, sizeof *f);
    if (!f) {
        free(owned_arg);
        return PF_ENOMEM;
    }
    if (owned_arg) {
        f->arg = owned_arg;
    } else if (arg_len <= sizeof f->arg_inline) {
        f->arg = f->arg_inline;
    } else {
        f->arg = pf__malloc(arg_len); /* arg_len is the caller's */
        if (!f->arg) {
            free(f);
            return PF_ENOMEM;
        }
    }
    if (arg_len && !owned_arg)
        memcpy(f->arg, arg, arg_len);
    f->arg_len = arg_len;
    f->magic = PF__FUTURE_MAGIC;
    atomic_init(&f->refs, 2); /* the caller's and the executor's */
    atomic_init(&f->state, PF__PENDING);
    pf__mutex_init(&f->lock);
    f->callbacks_tail = &f->callbacks;
    f->ex = ex;
    f->fn = fn;
    f->worker_index = -1;
    pf__executor_retain(ex);
    *out = f;
    return PF_OK;
}

static void future_free(pf_future *f)
{
    PF__CHECK(f->callbacks == NULL && f->watchers == NULL);
    if (!f->taken)
        free(f->data);
    free(f->failure);
    if (f->arg != f->arg_inline)
        free(f->arg);
    pf__mutex_destroy(&f->lock);
    f->magic = 0;
    free(f);
}

void pf__future_discard(pf_future *f)
{
    struct pf_executor *ex = f->ex;
    future_free(f);
    pf__executor_release(ex);
}

pf_future *pf_future_retain(pf_future *f)
{
    if (!valid(f))
        return NULL;
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

void pf_future_release(pf_future *f)
{
    if (!valid(f))
        return;
    /* acq_rel: the last release must see every write made under other refs. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        future_free(f);
}

void pf__future_set_running(pf_future *f, int worker_index)
{
    f->worker_index = worker_index;
    /* Count first, so that a concurrent finish never decrements below 0. */
    atomic_fetch_add_explicit(&f->ex->n_running, 1, memory_order_relaxed);
    uint32_t expected = PF__PENDING;
    if (!atomic_compare_exchange_strong(&f->state, &expected, PF__RUNNING))
        atomic_fetch_sub_explicit(&f->ex->n_running, 1, memory_order_relaxed);
}

/* Run f's callbacks in the order they were added, with f->cb_running set by
 * the caller (under f->lock, f FINISHED).  A callback added meanwhile, by
 * any thread or by a callback, is appended to the list and runs here after
 * the earlier ones.  Each batch is taken off the list under the lock and run
 * without it (user code never runs under a pfor lock); cb_running is
 * cleared under the lock only when the list is found empty, so no callback
 * is left behind and none runs elsewhere before an earlier one.  The caller
 * holds a reference on f, so a callback may release the user's. */
static void run_callbacks(pf_future *f)
{
    for (;;) {
        pf__mutex_lock(&f->lock);
        struct pf__callback *cbs = f->callbacks;
        f->callbacks = NULL;
        f->callbacks_tail = &f->callbacks;
        if (!cbs)
            f->cb_running = false;
        pf__mutex_unlock(&f->lock);
        if (!cbs)
            return;
        while (cbs) {
            struct pf__callback *next = cbs->next;
            cbs->fn(f, cbs->user);
            free(cbs);
            cbs = next;
        }
    }
}

bool pf__future_finish(pf_future *f, int code, void *data, size_t len, const pf_error_info *info)
{
    struct pf__failure *failure = NULL;
    if (code != PF_OK) {
        failure = calloc(1, sizeof *failure);
        if (failure) {
            if (info)
                failure->info = *info;
            failure->info.code = code;
            if (!info) {
                failure->info.worker_index = f->worker_index;
                failure->info.exit_status = -1;
            }
        }
    }

    pf__mutex_lock(&f->lock);
    uint32_t prev = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (prev == PF__FINISHED) {
        pf__mutex_unlock(&f->lock);
        free(data);
        free(failure);
        return false;
    }
    f->code = code;
    f->data = data;
    f->len = data ? len : 0;
    f->failure = failure;
    /* Count before FINISHED is visible, so whoever sees the future done also
     * sees it counted. */
    struct pf_executor *cex = f->ex;
    if (prev == PF__RUNNING)
        atomic_fetch_sub_explicit(&cex->n_running, 1, memory_order_relaxed);
    /* done first, then failed/cancelled, both release: pf_executor_progress
     * reads them in the opposite order with acquire loads, so a snapshot that
     * counts a failure also counts it done (failed + cancelled <= done), and
     * one that counts it done also counts it submitted. */
    atomic_fetch_add_explicit(&cex->n_done, 1, memory_order_release);
    if (code == PF_ECANCELLED)
        atomic_fetch_add_explicit(&cex->n_cancelled, 1, memory_order_release);
    else if (code != PF_OK)
        atomic_fetch_add_explicit(&cex->n_failed, 1, memory_order_release);
    /* seq_cst pairs with the waiter's increment of f->waiters (see wait). */
    atomic_store(&f->state, PF__FINISHED);
    for (struct pf__watch *w = f->watchers, *next; w; w = next) {
        next = w->next_in_future;
        pf__watch_fire_locked(w);
    }
    f->watchers = NULL;
    /* This thread runs the callbacks, those added from now on included
     * (see run_callbacks).  With none yet (the common case) it is not the
     * runner: one added later runs at once in the adding thread, which is
     * the order they were added in too, and this finish takes no second
     * lock. */
    bool have_callbacks = f->callbacks != NULL;
    f->cb_running = have_callbacks;
    pf__mutex_unlock(&f->lock);

    if (atomic_load(&f->waiters) > 0)
        pf__futex_wake(&f->state, INT32_MAX, false);

    struct pf_executor *ex = f->ex;
    if (ex->opts.progress) {
        pf_progress p;
        pf_executor_progress(ex, &p);
        ex->opts.progress(&p, ex->opts.progress_user);
    }

    if (have_callbacks)
        run_callbacks(f);
    pf__executor_release(ex);
    pf_future_release(f); /* the executor's reference */
    return true;
}

void pf__finish_later(struct pf__finish_list *l, pf_future *f, int code, void *data, size_t len,
                      const pf_error_info *info)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct pf__finish_entry *v = realloc(l->v, cap * sizeof *v);
        PF__CHECK(v != NULL); /* a handful of entries; out of memory here is fatal */
        l->v = v;
        l->cap = cap;
    }
    struct pf__finish_entry *d = &l->v[l->n++];
    d->f = f;
    d->code = code;
    d->data = data;
    d->len = len;
    if (info)
        d->info = *info;
    else
        d->info = (pf_error_info){.code = code, .worker_index = -1, .exit_status = -1};
}

void pf__finish_pending(struct pf__finish_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct pf__finish_entry *d = &l->v[i];
        pf__future_finish(d->f, d->code, d->data, d->len, d->code ? &d->info : NULL);
        pf_future_release(d->f);
    }
    l->n = 0;
}

void pf__finish_list_free(struct pf__finish_list *l)
{
    free(l->v);
    *l = (struct pf__finish_list){0};
}

struct pf__fqueue pf__fqueue_take_batch(struct pf__fqueue *q, bool queue_refs)
{
    struct pf__fqueue batch = *q;
    *q = (struct pf__fqueue){0};
    for (pf_future *f = batch.head; f; f = f->next) {
        f->in_queue = false; /* a cancel now finishes it instead of unlinking it */
        if (!queue_refs)
            pf_future_retain(f);
    }
    return batch;
}

void pf__batch_finish(struct pf__fqueue *batch, int code, const pf_error_info *info)
{
    for (pf_future *f = batch->head, *next; f; f = next) {
        next = f->next; /* the batch's reference may be the last one */
        pf__future_finish(f, code, NULL, 0, info);
        pf_future_release(f); /* the batch's reference */
    }
    *batch = (struct pf__fqueue){0};
}

int pf__future_cancel_unsent(pf__mutex *lock, struct pf__fqueue *q, pf_future *f, bool queue_refs)
{
    pf__mutex_lock(lock);
    /* Queued, or PENDING out of the queue (in a batch, or with another
     * finisher): never sent to a worker, see core.h. */
    bool queued = f->in_queue;
    bool unsent = queued || atomic_load(&f->state) == PF__PENDING;
    if (queued)
        pf__fqueue_remove(q, f);
    pf__mutex_unlock(lock);
    if (!unsent)
        return PF_EBUSY; /* running, or done */
    bool mine = pf__future_finish(f, PF_ECANCELLED, NULL, 0, NULL);
    if (queued && queue_refs)
        pf_future_release(f); /* the queue's reference */
    return mine ? PF_OK : PF_EBUSY;
}

bool pf__future_fail(pf_future *f, int code, int worker_index, const char *fmt, ...)
{
    pf_error_info info = {.code = code, .worker_index = worker_index, .exit_status = -1};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info.message, sizeof info.message, fmt, ap);
    va_end(ap);
    return pf__future_finish(f, code, NULL, 0, &info);
}

static bool is_finished(void *f)
{
    return atomic_load_explicit(&((pf_future *)f)->state, memory_order_acquire) == PF__FINISHED;
}

/* Wait until f is FINISHED or the deadline passes: spin a little (see
 * pf__spin_until), then sleep on the state word. */
static bool wait_finished(pf_future *f, uint64_t deadline_ns)
{
    if (is_finished(f) || pf__spin_until(is_finished, f, deadline_ns))
        return true;
    for (;;) {
        uint32_t st = atomic_load_explicit(&f->state, memory_order_acquire);
        if (st == PF__FINISHED)
            return true;
        if (deadline_ns != UINT64_MAX && pf__now_ns() >= deadline_ns)
            return false;
        /* seq_cst increment, then re-read: either the finisher sees a
         * waiter and wakes us, or we see FINISHED here. */
        atomic_fetch_add(&f->waiters, 1);
        if (atomic_load(&f->state) == st)
            pf__futex_wait(&f->state, st, deadline_ns, false);
        atomic_fetch_sub(&f->waiters, 1);
    }
}

int pf_future_wait(pf_future *f, double timeout)
{
    if (!valid(f) || isnan(timeout))
        return PF_EINVAL;
    return wait_finished(f, pf__deadline_ns(timeout)) ? PF_OK : PF_ETIMEDOUT;
}

int pf_future_result(pf_future *f, double timeout, const void **data, size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!valid(f) || isnan(timeout))
        return PF_EINVAL;
    if (!wait_finished(f, pf__deadline_ns(timeout)))
        return PF_ETIMEDOUT;
    if (f->code != PF_OK)
        return f->code;
    pf__mutex_lock(&f->lock);
    bool taken = f->taken;
    pf__mutex_unlock(&f->lock);
    if (taken)
        return PF_EALREADY;
    if (data)
        *data = f->data;
    if (len)
        *len = f->len;
    return PF_OK;
}

int pf_future_take(pf_future *f, double timeout, void **data, size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!valid(f) || !data || isnan(timeout))
        return PF_EINVAL;
    if (!wait_finished(f, pf__deadline_ns(timeout)))
        return PF_ETIMEDOUT;
    if (f->code != PF_OK)
        return f->code;
    pf__mutex_lock(&f->lock);
    int rc = PF_OK;
    if (f->taken) {
        rc = PF_EALREADY;
    } else {
        f->taken = true;
        *data = f->data;
        if (len)
            *len = f->len;
    }
    pf__mutex_unlock(&f->lock);
    return rc;
}

bool pf_future_done(const pf_future *f)
{
    return valid(f) && atomic_load_explicit(&f->state, memory_order_acquire) == PF__FINISHED;
}

bool pf_future_running(const pf_future *f)
{
    if (!valid(f))
        return false;
    uint32_t st = atomic_load_explicit(&f->state, memory_order_acquire);
    if (st != PF__PENDING)
        return st == PF__RUNNING;
    /* Ask the kind, holding a reference so the executor outlives the call
     * (an unfinished future holds one; take ours under the lock).  Not even
     * f->ex->ops may be read before: f may finish meanwhile and the last
     * reference free the executor. */
    pf_future *mf = (pf_future *)f;
    pf__mutex_lock(&mf->lock);
    struct pf_executor *ex = NULL;
    if (atomic_load(&mf->state) == PF__PENDING) {
        ex = mf->ex;
        pf__executor_retain(ex);
    }
    pf__mutex_unlock(&mf->lock);
    if (!ex)
        return atomic_load(&mf->state) == PF__RUNNING;
    bool running = ex->ops->is_running && ex->ops->is_running(ex, f);
    pf__executor_release(ex);
    return running;
}

bool pf_future_cancelled(const pf_future *f)
{
    return pf_future_done(f) && f->code == PF_ECANCELLED;
}

int pf_future_error(const pf_future *f, pf_error_info *info)
{
    if (!valid(f) || !info)
        return PF_EINVAL;
    memset(info, 0, sizeof *info);
    info->worker_index = -1;
    info->exit_status = -1;
    if (!pf_future_done(f))
        return PF_EBUSY;
    if (f->failure)
        *info = f->failure->info;
    info->code = f->code;
    if (f->code == PF_OK)
        info->worker_index = f->worker_index;
    else if (!f->failure) /* the details could not be allocated */
        pf__strlcpy(info->message, pf_strerror(f->code), sizeof info->message);
    return PF_OK;
}

/* pf_future_cancel (running_too) and pf__future_withdraw. */
static int cancel(pf_future *f, bool running_too)
{
    pf__mutex_lock(&f->lock);
    if (atomic_load(&f->state) == PF__FINISHED) {
        int rc = f->code == PF_ECANCELLED ? PF_OK : PF_EBUSY;
        pf__mutex_unlock(&f->lock);
        return rc;
    }
    /* While f is unfinished it holds a reference on its executor; take our
     * own so the executor outlives the call even if f finishes meanwhile. */
    struct pf_executor *ex = f->ex;
    pf__executor_retain(ex);
    if (running_too)
        atomic_store(&f->cancel_requested, 1);
    pf__mutex_unlock(&f->lock);
    int rc = running_too || !ex->ops->withdraw ? ex->ops->cancel(ex, f) : ex->ops->withdraw(ex, f);
    pf__executor_release(ex);
    if (rc != PF_OK && pf_future_cancelled(f))
        rc = PF_OK; /* finished as cancelled by a concurrent path */
    return rc;
}

int pf_future_cancel(pf_future *f)
{
    return valid(f) ? cancel(f, true) : PF_EINVAL;
}

int pf__future_withdraw(pf_future *f)
{
    return cancel(f, false);
}

int pf_future_add_done_callback(pf_future *f, pf_done_fn cb, void *user)
{
    if (!valid(f) || !cb)
        return PF_EINVAL;
    struct pf__callback *node = malloc(sizeof *node);
    if (!node)
        return PF_ENOMEM;
    node->next = NULL;
    node->fn = cb;
    node->user = user;
    pf__mutex_lock(&f->lock);
    /* Unfinished, or finished with a callback run in progress: queue it; the
     * finishing (or running) thread runs it after the earlier ones. */
    *f->callbacks_tail = node;
    f->callbacks_tail = &node->next;
    if (atomic_load(&f->state) != PF__FINISHED || f->cb_running) {
        pf__mutex_unlock(&f->lock);
        return PF_OK;
    }
    /* Finished and every callback has run: this thread runs it now, and
     * becomes the runner, so that a callback added by another thread
     * meanwhile runs after this one (and a reference keeps f alive should
     * the callback release the caller's). */
    f->cb_running = true;
    pf_future_retain(f);
    pf__mutex_unlock(&f->lock);
    run_callbacks(f);
    pf_future_release(f);
    return PF_OK;
}
