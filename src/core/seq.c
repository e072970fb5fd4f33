/*
 * The sequential executor: each task runs in the submitting thread, inside
 * pf_submit(), so its future is finished when pf_submit returns.  It is the
 * baseline of every comparison and the executor to debug a task with.
 *
 * There is one "worker", index 0: the initializer runs at create and the
 * finalizer at destroy, in the calling thread.  No task time limit applies
 * (the task runs on the caller's stack and cannot be interrupted safely).
 */
#include <errno.h>
#include <string.h>

#include "core/core.h"

/*
 * The executor's life, one state that only moves forward:
 *
 *   SEQ_OPEN -------------------> SEQ_FINALIZE_ASKED      shutdown(wait = false)
 *   SEQ_OPEN or FINALIZE_ASKED -> SEQ_CLOSED              under `lock`
 *
 * SEQ_OPEN            tasks run.
 * SEQ_FINALIZE_ASKED  a shutdown without wait asked for the end but may not
 *                     have taken the lock: a task of another thread holds it,
 *                     and it does not wait for that task.  A task still runs
 *                     if it reaches the lock (the front end refuses submits
 *                     already: only one past its check can), and the end of
 *                     the outermost task closes.  A task that looked at the
 *                     state before the ask leaves it to a later
 *                     shutdown(wait) or destroy.
 * SEQ_CLOSED          no more tasks (PF_ESHUTDOWN).  The finalizer has run,
 *                     or runs when the outermost running task returns.
 *
 * Lock rule: `state` is read and written under `lock`, but for the move
 * OPEN -> FINALIZE_ASKED, made without the lock (shutdown(wait = false) must
 * not wait for it) by a compare-and-swap, so that it never undoes CLOSED:
 * hence the atomic.  CLOSED is only set under the lock, by close_locked().
 *
 * Invariant (under the lock): once the state is CLOSED and depth is 0,
 * `initialized` is false: the finalizer has run, once (never if the
 * initializer failed).  It runs in close_locked(), from the shutdown that
 * closes when no task runs, else from the end of the outermost task.
 */
enum seq_state {
    SEQ_OPEN = 0,
    SEQ_FINALIZE_ASKED,
    SEQ_CLOSED,
};

struct seq_executor {
    struct pf_executor base;
    /* Recursive: serialises tasks submitted from several threads, while a
     * task may itself submit to this executor (it then runs nested, like a
     * plain function call). */
    pthread_mutex_t lock;
    _Atomic(enum seq_state) state; /* see above */
    void *worker_state;            /* lock */
    bool initialized;              /* lock; the state exists (false once finalized) */
    int depth;                     /* lock; tasks running now, nested ones included */
};

/* Under s->lock: close the executor (idempotent), and run the finalizer
 * unless a task of the worker still runs (it runs at the end of the
 * outermost one, which calls this again). */
static void close_locked(struct seq_executor *s)
{
    atomic_store(&s->state, SEQ_CLOSED);
    if (s->depth == 0 && s->initialized) {
        s->initialized = false;
        pf__worker_fini(&s->base, 0, s->worker_state);
    }
}

static int seq_submit(struct pf_executor *ex, pf_future *f)
{
    struct seq_executor *s = (struct seq_executor *)ex;
    PF__CHECK(pthread_mutex_lock(&s->lock) == 0);
    if (atomic_load(&s->state) == SEQ_CLOSED) {
        PF__CHECK(pthread_mutex_unlock(&s->lock) == 0);
        return PF_ESHUTDOWN;
    }
    pf__future_set_running(f, 0);
    struct pf_task t = {
        .alloc_result = pf__task_heap_alloc,
        .drop_result = pf__task_heap_drop,
        .worker_state = s->worker_state,
        .worker_index = 0,
        .cancel_flag = &f->cancel_requested,
    };
    /* The task runs under s->lock, the one place where user code runs under
     * a pfor lock: that is what makes this executor run one task at a time.
     * The lock is recursive, so a task may submit to its own executor. */
    s->depth++;
    int rc = pf__task_run(&t, f->fn, f->arg, f->arg_len);
    /* A task (or one it nested) shut the executor down (CLOSED), or a
     * shutdown without wait came from another thread meanwhile (ASKED): the
     * finalizer was left for the end of the outermost task. */
    if (--s->depth == 0 && atomic_load(&s->state) != SEQ_OPEN)
        close_locked(s);
    PF__CHECK(pthread_mutex_unlock(&s->lock) == 0);
    if (rc == PF_OK) {
        pf__future_finish(f, PF_OK, t.result, t.result_len, NULL);
    } else {
        pf_error_info info = {.code = rc, .task_code = t.fail_code, .exit_status = -1};
        pf__strlcpy(info.message, t.message, sizeof info.message);
        pf__task_heap_drop(&t);
        pf__future_finish(f, rc, NULL, 0, &info);
    }
    return PF_OK;
}

static int seq_cancel(struct pf_executor *ex, pf_future *f)
{
    (void)ex;
    (void)f;
    return PF_EBUSY; /* never pending: it ran inside pf_submit */
}

static int seq_shutdown(struct pf_executor *ex, bool wait, bool cancel_futures)
{
    (void)cancel_futures; /* nothing is ever pending */
    struct seq_executor *s = (struct seq_executor *)ex;
    if (!wait) {
        /* Ask first, then try: a task that holds the lock either sees the
         * request at its end or has looked already, and then a later
         * shutdown(wait)/destroy finalizes.  The front end refuses new
         * submits already (shut_down).  The owner of the (recursive) lock,
         * a task shutting its own executor down, gets it here. */
        enum seq_state open = SEQ_OPEN;
        atomic_compare_exchange_strong(&s->state, &open, SEQ_FINALIZE_ASKED);
        int rc = pthread_mutex_trylock(&s->lock);
        if (rc == EBUSY)
            return PF_OK;
        PF__CHECK(rc == 0);
    } else {
        PF__CHECK(pthread_mutex_lock(&s->lock) == 0);
    }
    /* Called from a running task (the lock is recursive), depth > 0: it and
     * any task it nests in still use the state, and seq_submit finalizes
     * when the outermost one returns. */
    close_locked(s);
    PF__CHECK(pthread_mutex_unlock(&s->lock) == 0);
    return PF_OK;
}

static void seq_destroy(struct pf_executor *ex)
{
    (void)ex;
}

static void seq_free(struct pf_executor *ex)
{
    struct seq_executor *s = (struct seq_executor *)ex;
    PF__CHECK(pthread_mutex_destroy(&s->lock) == 0);
    free(s);
}

static const struct pf__executor_ops seq_ops = {
    .submit = seq_submit,
    .cancel = seq_cancel,
    .shutdown = seq_shutdown,
    .destroy = seq_destroy,
    .free = seq_free,
};

int pf__seq_create(const struct pf_executor *base, struct pf_executor **out)
{
    struct seq_executor *s = calloc(1, sizeof *s);
    if (!s)
        return PF_ENOMEM;
    pf__executor_init_base(&s->base, base);
    s->base.ops = &seq_ops;
    atomic_init(&s->state, SEQ_OPEN);
    pthread_mutexattr_t attr;
    PF__CHECK(pthread_mutexattr_init(&attr) == 0);
    PF__CHECK(pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE) == 0);
    PF__CHECK(pthread_mutex_init(&s->lock, &attr) == 0);
    pthread_mutexattr_destroy(&attr);
    if (pf__worker_init(&s->base, 0, &s->worker_state) == PF_OK)
        s->initialized = true;
    /* An initializer failure is recorded on the executor: submits report
     * PF_EINITFAILED, as on the pools. */
    *out = &s->base;
    return PF_OK;
}
