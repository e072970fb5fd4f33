/*
 * Internals shared by the executor front end, the futures and the executor
 * kinds (sequential, threads, processes, MPI).
 *
 * Object model
 *   struct pf_executor  the front end: kind, options, counters, and a table
 *                       of kind operations (struct pf__executor_ops).  It is
 *                       reference counted: the user's handle holds one
 *                       reference and every unfinished future holds one, so
 *                       the struct outlives any call that may still reach it
 *                       through a future (cancel).  pf_executor_destroy()
 *                       stops the workers at once; the memory goes with the
 *                       last reference.
 *   struct pf_future    one task and its outcome.  Reference counted: the
 *                       caller's handle, the executor while the task is in
 *                       flight, and every as_completed set holding it.
 *
 * Future states (f->state, a futex word):
 *   PENDING -> RUNNING -> FINISHED, or PENDING -> FINISHED (cancelled).
 *   RUNNING is set by the executor when a worker takes the task; FINISHED
 *   only by pf__future_finish(), exactly once, under f->lock.  After FINISHED
 *   the outcome fields are immutable (except `taken`, under f->lock).
 *
 * Lock order (outer first); user code never runs under any of them:
 *   executor kind lock (pool queue) -> future lock -> completion-set lock.
 */
#ifndef PF_CORE_H
#define PF_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "platform/sync.h"

#define PF__FUTURE_MAGIC   0x46757475u /* "Futu" */
#define PF__EXECUTOR_MAGIC 0x45786563u /* "Exec" */

enum pf__future_state {
    PF__PENDING = 0,
    PF__RUNNING = 1,
    PF__FINISHED = 2,
};

/* Failure details, allocated only when a future fails. */
struct pf__failure {
    pf_error_info info;
};

struct pf__callback {
    struct pf__callback *next;
    pf_done_fn fn;
    void *user;
};

/* A registration of a future in a completion set (as_completed, wait). */
struct pf__watch {
    struct pf__watch *next_in_future; /* guarded by the future's lock */
    struct pf__watch *next_done;      /* guarded by the set's lock */
    struct pf__completion_set *set;   /* immutable */
    pf_future *future;                /* immutable */
    bool linked;                      /* in future's watcher list; future's lock */
    bool delivered;                   /* returned by next(); set's lock */
};

struct pf_future {
    uint32_t magic;                    /* PF__FUTURE_MAGIC while alive */
    _Atomic uint32_t refs;             /* see the object model above */
    _Atomic uint32_t state;            /* enum pf__future_state; futex word */
    _Atomic uint32_t waiters;          /* threads sleeping on `state` */
    _Atomic uint32_t cancel_requested; /* pf_task_cancelled() reads it */
    pf__mutex lock;                    /* guards callbacks, watchers, taken, cb_running */

    /* The task.  Immutable after submit (arg freed at finish). */
    struct pf_executor *ex; /* holds a reference until FINISHED */
    pf_task_fn fn;
    void *arg; /* points at arg_inline or a malloc()ed copy */
    size_t arg_len;
    uint64_t timeout_ns; /* 0: no limit */
    int retries_left;
    unsigned char arg_inline[32];

    /* The outcome, written once by pf__future_finish before FINISHED. */
    int code;
    void *data;
    size_t len;
    struct pf__failure *failure; /* NULL on success */
    bool taken;                  /* pf_future_take() handed data over; lock */

    struct pf__callback *callbacks, **callbacks_tail; /* lock */
    struct pf__watch *watchers;                       /* lock */
    /* lock: a thread is running f's callbacks (FINISHED only).  While set,
     * a callback added is appended to `callbacks` and run by that thread
     * after the earlier ones, which keeps the order they were added in; the
     * runner clears it, under the lock, only once it finds the list empty. */
    bool cb_running;

    /* Executor-kind private fields. */
    struct pf_future *next, *prev; /* queue links, guarded by the kind's lock */
    bool in_queue;                 /* guarded by the kind's lock */
    uint32_t slot;                 /* process pool: shared-memory slot */
    int worker_index;              /* the worker that took it, -1 before */
};

struct pf__executor_ops {
    /* Queue f (the front end has filled it in and counted it).  Return 0 or
     * an error; on error the front end discards the future and returns the
     * error.  An accepted task must be run or failed: once ex->broken is set
     * (an initializer failed), refuse with PF_EINITFAILED, checked under the
     * lock under which the kind fails its queued tasks for that failure (the
     * front end's own check races with it). */
    int (*submit)(struct pf_executor *ex, pf_future *f);
    /* Try to cancel f (not FINISHED when called).  Return 0 if the kind
     * finished it as cancelled, PF_EBUSY if it cannot. */
    int (*cancel)(struct pf_executor *ex, pf_future *f);
    /* Like cancel, but only a task that has not started: never stops a
     * running one.  NULL where cancel already does no more than that. */
    int (*withdraw)(struct pf_executor *ex, pf_future *f);
    /* Stop taking tasks; cancel pending ones if asked; if wait, return once
     * every task has finished and every worker is gone. */
    int (*shutdown)(struct pf_executor *ex, bool wait, bool cancel_futures);
    /* Stop and join the kind's workers for good (after shutdown with wait).
     * cancel() may still be called afterwards and must answer PF_EBUSY. */
    void (*destroy)(struct pf_executor *ex);
    /* Free what is left (locks, memory) when the last reference goes. */
    void (*free)(struct pf_executor *ex);
    /* Optional, for kinds whose workers do not tell the parent when a task
     * starts (processes): is f running now, and how many tasks run. */
    bool (*is_running)(struct pf_executor *ex, const pf_future *f);
    uint64_t (*count_running)(struct pf_executor *ex);
    /* The longest argument the kind can carry, or 0 for no limit: the front
     * end refuses a longer one (PF_ETOOBIG) before copying it. */
    uint64_t max_arg_len;
};

struct pf_executor {
    uint32_t magic;
    _Atomic uint32_t refs;
    pf_kind kind;                       /* immutable */
    const struct pf__executor_ops *ops; /* immutable */
    pf_executor_opts opts;              /* immutable; init_arg points at init_arg_copy */
    void *init_arg_copy;
    _Atomic bool shut_down; /* no more submits */
    _Atomic bool broken;    /* a worker initializer failed */
    _Atomic bool destroyed;

    /* Progress counters (relaxed atomics: they are statistics). */
    _Atomic uint64_t n_submitted, n_running, n_done, n_failed, n_cancelled;

    /* Set when a worker initializer failed; every later task fails with it. */
    pf__mutex init_lock;
    int init_failed;        /* init_lock; 0 or the code */
    char init_message[256]; /* init_lock */
};

/* --- a FIFO of futures (intrusive, doubly linked), guarded by its owner --- */

struct pf__fqueue {
    pf_future *head, *tail;
    size_t count;
};

static inline void pf__fqueue_push(struct pf__fqueue *q, pf_future *f)
{
    f->next = NULL;
    f->prev = q->tail;
    if (q->tail)
        q->tail->next = f;
    else
        q->head = f;
    q->tail = f;
    f->in_queue = true;
    q->count++;
}

static inline void pf__fqueue_push_front(struct pf__fqueue *q, pf_future *f)
{
    f->prev = NULL;
    f->next = q->head;
    if (q->head)
        q->head->prev = f;
    else
        q->tail = f;
    q->head = f;
    f->in_queue = true;
    q->count++;
}

static inline void pf__fqueue_remove(struct pf__fqueue *q, pf_future *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        q->head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        q->tail = f->prev;
    f->next = f->prev = NULL;
    f->in_queue = false;
    q->count--;
}

static inline pf_future *pf__fqueue_pop(struct pf__fqueue *q)
{
    pf_future *f = q->head;
    if (f)
        pf__fqueue_remove(q, f);
    return f;
}

/* --- batches: queued futures finished outside the queue's lock ----------
 *
 * A kind that fails or cancels what it has queued (shutdown with
 * cancel_futures, a failure) cannot finish the futures under its lock (their
 * done-callbacks run user code): it takes them off the queue under the lock,
 * as a batch, and finishes them once the lock is released.  For a kind whose
 * workers take a future off the queue and mark it RUNNING in one critical
 * section of the queue's lock (threads, MPI), this holds under that lock:
 *
 *   A future that is in_queue, or PENDING out of the queue, never runs.  Out
 *   of the queue it belongs to a finisher holding a reference on it (a batch,
 *   or a struct pf__finish_list) that finishes it after unlocking.  A cancel
 *   may finish it first, as cancelled: whoever finishes first decides its
 *   outcome (pf__future_finish acts once), and the finisher's reference keeps
 *   it alive for the other.  In a batch, its links are the batch's: nobody
 *   else reads or writes them.
 *
 * `queue_refs` says whether the queue holds a reference of its own on each
 * of its futures (MPI), or they are queued on the executor's (threads). */

/* Take every future off q as a batch (q's lock held): each is marked out of
 * the queue, and the batch holds a reference on it, the queue's own with
 * queue_refs, else one taken here.  q is left empty. */
struct pf__fqueue pf__fqueue_take_batch(struct pf__fqueue *q, bool queue_refs);

/* Finish every future of the batch, in queue order, with code and info (see
 * pf__future_finish: one a cancel finished first is left as it is), drop the
 * batch's references and empty it.  Called without q's lock. */
void pf__batch_finish(struct pf__fqueue *batch, int code, const pf_error_info *info);

/* A kind's cancel under the rule above, for f queued on q (guarded by
 * `lock`, which this takes and releases) or taken off it: take f off q if it
 * is there, and if it is queued or PENDING, finish it as cancelled after
 * unlocking (dropping the queue's reference with queue_refs).  0 if this call
 * finished it; PF_EBUSY if its task runs or ran, or another path finished it. */
int pf__future_cancel_unsent(pf__mutex *lock, struct pf__fqueue *q, pf_future *f, bool queue_refs);

/* --- futures ------------------------------------------------------------- */

/* A new future for fn(arg) on ex, with one reference for the caller and one
 * for the executor.  Copies the argument, or takes `owned_arg` (malloc()ed,
 * freed with the future) when it is not NULL. */
int pf__future_new(struct pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len,
                   void *owned_arg, pf_future **out);

/* Mark f RUNNING on worker `worker_index` (no-op if it is FINISHED). */
void pf__future_set_running(pf_future *f, int worker_index);

/* Finish f with an outcome.  On success (code 0) `data` (malloc()ed or NULL)
 * is handed to the future.  On failure `info` (may be NULL) gives details;
 * `data` must be NULL.  Returns false if f was finished already (its data is
 * then freed here).  Runs the done callbacks in the calling thread (those
 * added meanwhile too, see cb_running), updates the executor's counters and
 * drops the executor's reference on f. */
bool pf__future_finish(pf_future *f, int code, void *data, size_t len, const pf_error_info *info);

/* Helper: finish with a code and a formatted message. */
bool pf__future_fail(pf_future *f, int code, int worker_index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Outcomes gathered under a lock and applied once it is released (done
 * callbacks run user code, which must never run under an engine's lock).
 * Each entry holds a reference on its future, given up when it is finished.
 * Owned by one thread; zero-initialise, pf__finish_list_free() at the end. */
struct pf__finish_entry {
    pf_future *f;
    int code;
    void *data;
    size_t len;
    pf_error_info info; /* used when code != 0 */
};
struct pf__finish_list {
    struct pf__finish_entry *v;
    size_t n, cap;
};

/* Queue f's outcome (see pf__future_finish; info NULL: a bare code).  Takes
 * over the caller's reference on f and `data`. */
void pf__finish_later(struct pf__finish_list *l, pf_future *f, int code, void *data, size_t len,
                      const pf_error_info *info);
/* Finish every queued future, in the order queued, and empty the list. */
void pf__finish_pending(struct pf__finish_list *l);
void pf__finish_list_free(struct pf__finish_list *l);

/* Free a future that was never handed to anyone (its submit failed). */
void pf__future_discard(pf_future *f);

/* Cancel f only if its task has not started (a running one goes on, and is
 * not flagged pf_task_cancelled).  0 if f is now cancelled, else PF_EBUSY. */
int pf__future_withdraw(pf_future *f);

/* Called under f->lock when f finishes: queue the watch on its set. */
void pf__watch_fire_locked(struct pf__watch *w);

/* --- executors ------------------------------------------------------------ */

void pf__executor_retain(struct pf_executor *ex);
void pf__executor_release(struct pf_executor *ex);

/* Record that a worker initializer failed (first failure wins). */
void pf__executor_init_failed(struct pf_executor *ex, int code, const char *message);
/* 0, or the init failure code with its message copied into info. */
int pf__executor_check_init(struct pf_executor *ex, pf_error_info *info);

/* The counters. */
void pf__executor_note_running(struct pf_executor *ex);

/* Whether ex takes a task with an argument of arg_len bytes now: 0, or what
 * a submit of it would return (PF_ESHUTDOWN, PF_EINITFAILED, PF_ETOOBIG). */
int pf__executor_accepts(struct pf_executor *ex, size_t arg_len);

/* Kind constructors call this first, on their embedded struct pf_executor. */
void pf__executor_init_base(struct pf_executor *ex, const struct pf_executor *base);

/* Kind constructors: allocate the kind's struct (which starts with struct
 * pf_executor), set ex->ops and start workers.  `base` is filled in by the
 * front end and copied. */
int pf__seq_create(const struct pf_executor *base, struct pf_executor **out);
int pf__threads_create(const struct pf_executor *base, struct pf_executor **out);
int pf__procs_create(const struct pf_executor *base, struct pf_executor **out);
/* The PF_MPI kind lives in its own library (pfor_mpi) so that libpfor does
 * not depend on MPI: pf_mpi_init() installs its constructor here, once,
 * before any executor exists.  NULL: PF_MPI is PF_ENOTSUP. */
extern int (*pf__mpi_create)(const struct pf_executor *base, struct pf_executor **out);

/* Tests only: the next this-many replacements of a thread pool thread that
 * its task ended (pthread_exit) fail as if pthread_create had. */
extern _Atomic int pf__tp_fail_respawns;

/* Submit with a malloc()ed argument that the future takes over (freed by the
 * library whatever the outcome).  timeout: < 0 none, 0 the executor's. */
int pf__submit_owned(pf_executor *ex, pf_task_fn fn, void *arg, size_t arg_len, double timeout,
                     pf_future **out);

/* A function as loops and remote executors pass it: by registry id when it
 * is registered (valid in any process of the program, MPI ranks included),
 * else by address (valid in this process and its forks). */
struct pf__fnref {
    uint64_t addr;
    uint64_t id;
};

static inline struct pf__fnref pf__fnref_make(pf_fn fn)
{
    struct pf__fnref r = {.addr = (uint64_t)(uintptr_t)fn, .id = 0};
    pf_registered_name(fn, NULL, &r.id);
    return r;
}

static inline pf_fn pf__fnref_resolve(const struct pf__fnref *r)
{
    pf_fn fn = NULL;
    if (r->id && pf_lookup_id(r->id, &fn) == PF_OK)
        return fn;
    return (pf_fn)(uintptr_t)r->addr;
}

/* --- tasks ---------------------------------------------------------------- */

/* The context a task function gets.  `alloc_result` is the kind's result
 * storage: heap memory for threads, shared memory for processes. */
struct pf_task {
    void *(*alloc_result)(struct pf_task *t, size_t len); /* NULL on failure */
    void (*drop_result)(struct pf_task *t);               /* forget the result */
    void *worker_state;
    int worker_index;
    const _Atomic uint32_t *cancel_flag; /* may be NULL */
    int fail_code;                       /* 0 unless pf_task_fail() */
    int alloc_error;                     /* why alloc_result last failed */
    char message[256];
    void *result; /* the current result, or NULL */
    size_t result_len;
    size_t result_cap; /* heap storage: allocated bytes */
    void *impl;        /* the kind's private pointer */
};

/* Run fn in context t and work out the outcome: returns 0 or the code to
 * fail with (t->message holds the message). */
int pf__task_run(struct pf_task *t, pf_task_fn fn, const void *arg, size_t arg_len);

/* Heap result storage for threads and the sequential executor. */
void *pf__task_heap_alloc(struct pf_task *t, size_t len);
void pf__task_heap_drop(struct pf_task *t);

/* Run the initializer for one worker; on failure record it on ex. */
int pf__worker_init(struct pf_executor *ex, int worker_index, void **state);
void pf__worker_fini(struct pf_executor *ex, int worker_index, void *state);

#endif /* PF_CORE_H */
