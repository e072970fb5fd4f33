/*
 * The executor front end: argument checks, defaults, counters and the
 * dispatch to an executor kind (seq.c, threads/, procs/).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"

int (*pf__mpi_create)(const struct pf_executor *base, struct pf_executor **out);

static bool valid(const struct pf_executor *ex)
{
    return ex && ex->magic == PF__EXECUTOR_MAGIC;
}

int pf_default_workers(pf_kind kind)
{
    int n = pf__ncpus();
    switch (kind) {
    case PF_SEQUENTIAL:
        return 1;
    case PF_THREADS: /* Python's ThreadPoolExecutor: min(32, cores + 4) */
        return n + 4 < 32 ? n + 4 : 32;
    case PF_PROCESSES:
    case PF_MPI:
        return n;
    }
    return PF_EINVAL; /* not a kind */
}

const char *pf_kind_name(pf_kind kind)
{
    switch (kind) {
    case PF_SEQUENTIAL:
        return "sequential";
    case PF_THREADS:
        return "threads";
    case PF_PROCESSES:
        return "processes";
    case PF_MPI:
        return "mpi";
    }
    return "unknown";
}

int pf_kind_parse(const char *name, pf_kind *out)
{
    if (!name || !out)
        return PF_EINVAL;
    static const pf_kind kinds[] = {PF_SEQUENTIAL, PF_THREADS, PF_PROCESSES, PF_MPI};
    for (size_t i = 0; i < PF__ARRAY_SIZE(kinds); i++) {
        if (strcmp(name, pf_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return PF_OK;
        }
    }
    return PF_EINVAL;
}

static int check_opts(const pf_executor_opts *o)
{
    if (o->max_workers == 0 || o->max_workers < PF_DEFAULT_WORKERS ||
        o->max_workers > PF_MAX_WORKERS)
        return PF_EINVAL; /* 0 workers could run nothing: an error, as in Python */
    if (o->init_arg_len > 0 && !o->init_arg)
        return PF_EINVAL;
    if (o->init_arg_len > (64u << 20)) /* the initializer argument is copied to every worker */
        return PF_ETOOBIG;
    if (isnan(o->task_timeout) || o->task_timeout < 0 || o->task_timeout > 1e9)
        return PF_EINVAL;
    if (o->max_retries > 1000000)
        return PF_EINVAL;
    return PF_OK;
}

int pf_executor_create(pf_executor **out, pf_kind kind, const pf_executor_opts *opts)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    pf_executor_opts o = opts ? *opts : PF_EXECUTOR_OPTS_DEFAULT;
    int rc = check_opts(&o);
    if (rc != PF_OK)
        return rc;
    if (o.max_workers == PF_DEFAULT_WORKERS)
        o.max_workers = pf_default_workers(kind);
    if (kind == PF_SEQUENTIAL)
        o.max_workers = 1;

    struct pf_executor base;
    memset(&base, 0, sizeof base);
    base.magic = PF__EXECUTOR_MAGIC;
    base.kind = kind;
    if (o.init_arg_len > 0) {
        base.init_arg_copy = malloc(o.init_arg_len);
        if (!base.init_arg_copy)
            return PF_ENOMEM;
        memcpy(base.init_arg_copy, o.init_arg, o.init_arg_len);
        o.init_arg = base.init_arg_copy;
    } else {
        o.init_arg = NULL;
    }
    base.opts = o;

    struct pf_executor *ex = NULL;
    switch (kind) {
    case PF_SEQUENTIAL:
        rc = pf__seq_create(&base, &ex);
        break;
    case PF_THREADS:
        rc = pf__threads_create(&base, &ex);
        break;
    case PF_PROCESSES:
        rc = pf__procs_create(&base, &ex);
        break;
    case PF_MPI:
        rc = pf__mpi_create ? pf__mpi_create(&base, &ex) : PF_ENOTSUP;
        break;
    default:
        rc = PF_EINVAL;
        break;
    }
    if (rc != PF_OK) {
        free(base.init_arg_copy);
        return rc;
    }
    *out = ex;
    return PF_OK;
}

void pf__executor_init_base(struct pf_executor *ex, const struct pf_executor *base)
{
    *ex = *base;
    atomic_init(&ex->refs, 1);
    pf__mutex_init(&ex->init_lock);
}

void pf__executor_retain(struct pf_executor *ex)
{
    atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
}

void pf__executor_release(struct pf_executor *ex)
{
    if (atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) != 1)
        return;
    const struct pf__executor_ops *ops = ex->ops;
    free(ex->init_arg_copy);
    pf__mutex_destroy(&ex->init_lock);
    ex->magic = 0;
    ops->free(ex);
}

void pf__executor_init_failed(struct pf_executor *ex, int code, const char *message)
{
    pf__mutex_lock(&ex->init_lock);
    if (!ex->init_failed) {
        ex->init_failed = code ? code : -1;
        pf__strlcpy(ex->init_message, message, sizeof ex->init_message);
        atomic_store(&ex->broken, true);
    }
    pf__mutex_unlock(&ex->init_lock);
}

int pf__executor_check_init(struct pf_executor *ex, pf_error_info *info)
{
    pf__mutex_lock(&ex->init_lock);
    int failed = ex->init_failed;
    if (failed && info) {
        memset(info, 0, sizeof *info);
        info->code = PF_EINITFAILED;
        info->task_code = failed;
        info->worker_index = -1;
        info->exit_status = -1;
        pf__strlcpy(info->message, ex->init_message, sizeof info->message);
    }
    pf__mutex_unlock(&ex->init_lock);
    return failed ? PF_EINITFAILED : PF_OK;
}

int pf__worker_init(struct pf_executor *ex, int worker_index, void **state)
{
    *state = NULL;
    if (!ex->opts.initializer)
        return PF_OK;
    int rc = ex->opts.initializer(state, ex->opts.init_arg, ex->opts.init_arg_len, worker_index);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "worker %d: initializer returned %d", worker_index, rc);
        pf__executor_init_failed(ex, rc, msg);
        return PF_EINITFAILED;
    }
    return PF_OK;
}

void pf__worker_fini(struct pf_executor *ex, int worker_index, void *state)
{
    if (ex->opts.finalizer)
        ex->opts.finalizer(state, worker_index);
}

int pf__executor_accepts(struct pf_executor *ex, size_t arg_len)
{
    if (atomic_load(&ex->shut_down))
        return PF_ESHUTDOWN;
    /* A fast path only: a worker may fail its initializer between this
     * check and ops->submit, so each kind checks `broken` again under its
     * queue lock (see struct pf__executor_ops). */
    if (atomic_load_explicit(&ex->broken, memory_order_relaxed))
        return PF_EINITFAILED;
    if (ex->ops->max_arg_len && arg_len > ex->ops->max_arg_len)
        return PF_ETOOBIG;
    return PF_OK;
}

static int submit(pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len, void *owned,
                  double timeout, int max_retries, pf_future **out)
{
    if (out)
        *out = NULL;
    if (!valid(ex) || !fn || (arg_len > 0 && !arg && !owned)) {
        free(owned);
        return PF_EINVAL;
    }
    int rc = pf__executor_accepts(ex, arg_len); /* before the copy: it may be huge */
    if (rc != PF_OK) {
        free(owned);
        return rc;
    }

    pf_future *f;
    rc = pf__future_new(ex, fn, arg, arg_len, owned, &f);
    if (rc != PF_OK)
        return rc;
    if (timeout == 0)
        timeout = ex->opts.task_timeout;
    f->timeout_ns = pf__limit_ns(timeout);
    f->retries_left = max_retries == 0 ? (int)ex->opts.max_retries : PF__MAX(max_retries, 0);

    atomic_fetch_add_explicit(&ex->n_submitted, 1, memory_order_relaxed);
    rc = ex->ops->submit(ex, f);
    if (rc != PF_OK) {
        atomic_fetch_sub_explicit(&ex->n_submitted, 1, memory_order_relaxed);
        pf__future_discard(f);
        return rc;
    }
    if (out)
        *out = f;
    else
        pf_future_release(f);
    return PF_OK;
}

int pf_submit_ex(pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len,
                 const pf_submit_opts *opts, pf_future **out)
{
    /* The bounds of pf_executor_opts (check_opts), for one task. */
    if (opts && (isnan(opts->timeout) || opts->timeout > 1e9 || opts->max_retries > 1000000)) {
        if (out)
            *out = NULL;
        return PF_EINVAL;
    }
    return submit(ex, fn, arg, arg_len, NULL, opts ? opts->timeout : 0,
                  opts ? opts->max_retries : 0, out);
}

int pf__submit_owned(pf_executor *ex, pf_task_fn fn, void *arg, size_t arg_len, double timeout,
                     pf_future **out)
{
    return submit(ex, fn, NULL, arg_len, arg, timeout, 0, out);
}

int pf_submit(pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len, pf_future **out)
{
    return pf_submit_ex(ex, fn, arg, arg_len, NULL, out);
}

int pf_submit_named(pf_executor *ex, const char *name, const void *arg, size_t arg_len,
                    pf_future **out)
{
    if (out)
        *out = NULL;
    /* The arguments before the name, as pf_submit checks them before it
     * uses fn: a bad one is PF_EINVAL whether the name is registered or not. */
    if (!valid(ex) || !name || (arg_len > 0 && !arg))
        return PF_EINVAL;
    pf_fn fn;
    if (pf_lookup(name, &fn) != PF_OK)
        return PF_ENOTREG;
    return pf_submit_ex(ex, (pf_task_fn)fn, arg, arg_len, NULL, out);
}

int pf_executor_shutdown(pf_executor *ex, bool wait, bool cancel_futures)
{
    if (!valid(ex) || atomic_load(&ex->destroyed))
        return PF_EINVAL;
    atomic_store(&ex->shut_down, true);
    /* Our own reference while we wait: a task or callback may destroy the
     * executor meanwhile, and its last thread would free it under us. */
    pf__executor_retain(ex);
    int rc = ex->ops->shutdown(ex, wait, cancel_futures);
    pf__executor_release(ex);
    return rc;
}

void pf_executor_destroy(pf_executor *ex)
{
    if (!valid(ex) || atomic_exchange(&ex->destroyed, true))
        return;
    atomic_store(&ex->shut_down, true);
    ex->ops->shutdown(ex, true, false);
    ex->ops->destroy(ex);
    pf__executor_release(ex);
}

pf_kind pf_executor_kind(const pf_executor *ex)
{
    return valid(ex) ? ex->kind : (pf_kind)0;
}

int pf_executor_max_workers(const pf_executor *ex)
{
    return valid(ex) ? ex->opts.max_workers : PF_EINVAL;
}

int pf_executor_progress(const pf_executor *ex, pf_progress *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!valid(ex) || !out)
        return PF_EINVAL;
    /* Read the later counters first: a task is counted submitted before it
     * can run, done after, and failed or cancelled after that (see
     * pf__future_finish), so reading them in the opposite order keeps
     * failed + cancelled <= done <= submitted in the snapshot even while
     * tasks come and go. */
    out->failed = atomic_load(&ex->n_failed);
    out->cancelled = atomic_load(&ex->n_cancelled);
    out->done = atomic_load(&ex->n_done);
    out->running = ex->ops->count_running ? ex->ops->count_running((struct pf_executor *)ex)
                                          : atomic_load(&ex->n_running);
    out->submitted = atomic_load(&ex->n_submitted);
    return PF_OK;
}
