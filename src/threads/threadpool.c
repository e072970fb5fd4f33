/*
 * The thread pool.
 *
 * DESIGN
 *   One FIFO of futures guarded by `lock`; worker threads sleep on `work`
 *   when it is empty.  Threads start lazily, as Python's pool does: a submit
 *   starts one more thread when more tasks wait than threads idle, up to
 *   max_workers.  Each thread runs the initializer once when it starts and
 *   the finalizer when it leaves.
 *
 *   A task runs without any pool lock held.  The worker keeps its own
 *   reference on the future while the task runs, because a time-limit expiry
 *   may finish the future (and drop the executor's reference) meanwhile.
 *
 *   Time limits: threads cannot be killed.  A watchdog thread, started with
 *   the first task that has a limit, takes an overrunning task over at its
 *   deadline (worker.timed_out, under the lock), raises its cancel flag
 *   (pf_task_cancelled) and then finishes its future with PF_ETASKTIMEOUT.
 *   Flag first: the future's done-callbacks run on the watchdog thread, and
 *   a task that stops at the flag must not wait for them.  Once taken over
 *   the future is the watchdog's to finish; the worker throws the task's
 *   late outcome away, so exactly one thread finishes it.
 *
 *   Initializer failure: the failing worker fails what is queued, under the
 *   lock; tp_submit checks `broken` under the same lock, so a submitted task
 *   is either queued before and failed there or refused (PF_EINITFAILED).
 *
 *   Shutdown: `stopping` makes workers leave once the queue is empty (or at
 *   once with cancel_futures, after the queue is cancelled), and the
 *   watchdog once, besides, no task runs.  Joining is serialised by
 *   join_lock so that concurrent shutdown(wait) calls and destroy never join
 *   a thread twice.  Joining alone does not make shutdown(wait) exact: a
 *   pool thread's destroy detaches threads that nobody joins then, and a
 *   shutdown(cancel_futures) in another thread may still be finishing the
 *   futures it took off the queue.  So shutdown(wait) then waits, on
 *   `quiet`, until no pool thread is active (n_active) and no batch is
 *   being failed (n_batches).  A done-callback of such a batch, on the
 *   thread failing it, cannot wait for it: like a pool thread it gets
 *   PF_EBUSY.
 *
 *   Pool threads (workers and the watchdog; tls_pool) run user code: tasks,
 *   and done-callbacks, which the watchdog runs for timed-out futures.  Such
 *   code may destroy the pool, but a pool thread cannot wait for the pool:
 *   shutdown(wait) answers PF_EBUSY, and destroy (join_all) detaches what it
 *   must not join.  A worker joins the other workers (the watchdog goes on
 *   enforcing their limits meanwhile) and detaches itself and the watchdog,
 *   which waits for that worker's task.  The watchdog detaches everyone:
 *   while it waited no limit would be enforced, and a task that stops only
 *   at its flag would never end.  Every thread holds a reference on the
 *   pool, so the memory goes with the last one to leave.
 */
#include <errno.h>
#include <string.h>

#include "core/core.h"

struct worker {
    struct tpool *pool;   /* immutable */
    int index;            /* immutable */
    pthread_t tid;        /* set by the spawner under lock */
    pf_future *current;   /* lock: the task running now, or NULL */
    uint64_t deadline_ns; /* lock: its deadline, or 0 */
    /* lock: the watchdog took `current` over at its deadline; it finishes
     * the future and the worker drops the task's outcome. */
    bool timed_out;
    /* lock: the slot's thread was ended by its task and no replacement could
     * be started; tid is that (finished) thread until a submit refills the
     * slot (respawn_locked). */
    bool vacant;
};

struct tpool {
    struct pf_executor base;
    pf__mutex lock;
    pf__cond work;           /* workers wait here for tasks */
    pf__cond watchdog_wake;  /* the watchdog waits here; signalled on a new deadline and, once
                              * stopping, whenever a task ends */
    struct pf__fqueue queue; /* lock */
    int n_threads;           /* lock: worker slots in use */
    int n_live;              /* lock: worker threads started and not yet gone */
    int n_vacant;            /* lock: slots marked vacant */
    /* lock: join_all has read n_threads; a thread that a task ends (see
     * task_left_thread) is no longer replaced. */
    bool joining;
    int n_idle; /* lock: threads waiting on `work` */
    /* Workers polling for a task before they sleep (see worker_main), and a
     * count of submits they poll.  Atomics: read and written without the
     * lock; a spinner re-checks the queue under the lock before it sleeps,
     * so a task is never left behind. */
    _Atomic int n_spinning;
    _Atomic uint64_t n_pushed;
    bool stopping;         /* lock */
    bool watchdog_started; /* lock */
    /* lock: a thread has joined the watchdog, is joining it or detached it */
    bool watchdog_claimed;
    /* lock: join_all ran on a pool thread, so nobody will join the threads
     * left: a watchdog started after that is detached at once. */
    bool orphaned;
    pthread_t watchdog;     /* set once under lock */
    struct worker *workers; /* [max_workers]; entries < n_threads in use */
    /* lock: pool threads (workers, the watchdog, a thread a task ended)
     * started and not yet through with the pool's work (tasks, callbacks,
     * finalizer).  A thread that destroy detached is not joined by anyone,
     * so shutdown(wait) waits for this to reach 0 (on `quiet`). */
    int n_active;
    /* lock: batches being failed by fail_all_locked_then_unlock.  Its
     * futures are out of the queue but not finished yet, so shutdown(wait)
     * waits for this to reach 0 too (on `quiet`). */
    int n_batches;
    pf__cond quiet; /* broadcast when n_active or n_batches drops */

    pf__mutex join_lock; /* serialises joining */
    int n_joined;        /* join_lock: workers joined or detached so far */
};

/* The pool whose worker or watchdog thread this is (NULL elsewhere): a pool
 * must not join the thread that asks it to, nor wait for itself. */
static _Thread_local struct tpool *tls_pool;
/* Whether this thread is tls_pool's watchdog. */
static _Thread_local bool tls_watchdog;
/* The batches this thread is failing now (fail_all_locked_then_unlock),
 * innermost first: frames on its stack, nested when a batch's done-callback
 * shuts a pool down with cancel_futures.  Such a callback cannot wait for a
 * pool whose batch it is part of. */
struct batch_frame {
    struct tpool *pool;
    struct batch_frame *outer;
};
static _Thread_local struct batch_frame *tls_batches;

static bool in_batch_of(const struct tpool *p)
{
    for (const struct batch_frame *b = tls_batches; b; b = b->outer)
        if (b->pool == p)
            return true;
    return false;
}

static void *worker_main(void *arg);
static void *watchdog_main(void *arg);

_Atomic int pf__tp_fail_respawns;

/* Start one more thread.  Called with pool->lock held. */
static int spawn_locked(struct tpool *p)
{
    struct worker *w = &p->workers[p->n_threads];
    w->pool = p;
    w->index = p->n_threads;
    w->current = NULL;
    w->timed_out = false;
    /* Each thread holds a reference, so the pool's memory outlives a
     * thread that destroys the pool from a task or a callback. */
    pf__executor_retain(&p->base);
    int rc = pthread_create(&w->tid, NULL, worker_main, w);
    if (rc != 0) {
        pf__executor_release(&p->base);
        return rc == EAGAIN ? PF_ENOMEM : PF_ESYS;
    }
    p->n_threads++;
    p->n_live++;
    p->n_active++;
    return PF_OK;
}

/* Start a new thread in slot w, whose thread a task ended: that thread
 * (finished, or unwinding in task_left_thread) is detached, nobody joins it
 * now.  Called with pool->lock held, never once join_all has read the
 * slots. */
static int refill_slot_locked(struct tpool *p, struct worker *w)
{
    PF__CHECK(!p->joining);
    pthread_t tid;
    pf__executor_retain(&p->base); /* the new thread's reference */
    int rc = pthread_create(&tid, NULL, worker_main, w);
    if (rc != 0) {
        pf__executor_release(&p->base);
        return rc == EAGAIN ? PF_ENOMEM : PF_ESYS;
    }
    PF__CHECK(pthread_detach(w->tid) == 0);
    w->tid = tid;
    p->n_live++;
    p->n_active++;
    return PF_OK;
}

/* Start a thread in a vacant slot (pool->lock held; the pool is not
 * stopping, so join_all has not read the slots). */
static int respawn_locked(struct tpool *p)
{
    int i = 0;
    while (i < p->n_threads && !p->workers[i].vacant)
        i++;
    PF__CHECK(i < p->n_threads);
    int rc = refill_slot_locked(p, &p->workers[i]);
    if (rc == PF_OK) {
        p->workers[i].vacant = false;
        p->n_vacant--;
    }
    return rc;
}

static void start_watchdog_locked(struct tpool *p)
{
    if (p->watchdog_started)
        return;
    /* Like a worker it holds a reference: it may outlive destroy (see DESIGN). */
    pf__executor_retain(&p->base);
    if (pthread_create(&p->watchdog, NULL, watchdog_main, p) != 0) {
        /* Without a watchdog, limits are not enforced; nothing else breaks.
         * The caller's own reference keeps this one from being the last. */
        pf__executor_release(&p->base);
        return;
    }
    p->watchdog_started = true;
    p->n_active++;
    if (p->orphaned) { /* join_all has run: nobody would join it */
        p->watchdog_claimed = true;
        PF__CHECK(pthread_detach(p->watchdog) == 0);
    }
}

/* The last thing a pool thread does: it is through with the pool's work
 * (n_active, see shutdown), then drops its reference, which may free the
 * pool (a waiting shutdown holds a reference of its own). */
static void thread_done(struct tpool *p)
{
    pf__mutex_lock(&p->lock);
    p->n_active--;
    pf__cond_broadcast(&p->quiet);
    pf__mutex_unlock(&p->lock);
    pf__executor_release(&p->base);
}

/* What a task came to, finished once the worker knows the watchdog has not
 * taken the task over. */
struct outcome {
    int code;
    void *data; /* malloc()ed result on success, or NULL */
    size_t len;
    pf_error_info info; /* when code != 0 */
};

static void run_task(struct worker *w, pf_future *f, void *state, struct outcome *o)
{
    struct tpool *p = w->pool;
    o->data = NULL;
    o->len = 0;
    if (atomic_load_explicit(&p->base.broken, memory_order_relaxed)) {
        pf__executor_check_init(&p->base, &o->info);
        o->code = PF_EINITFAILED;
        return;
    }
    struct pf_task t = {
        .alloc_result = pf__task_heap_alloc,
        .drop_result = pf__task_heap_drop,
        .worker_state = state,
        .worker_index = w->index,
        .cancel_flag = &f->cancel_requested,
    };
    int rc = pf__task_run(&t, f->fn, f->arg, f->arg_len);
    o->code = rc;
    if (rc == PF_OK) {
        o->data = t.result;
        o->len = t.result_len;
    } else {
        o->info = (pf_error_info){
            .code = rc, .task_code = t.fail_code, .worker_index = w->index, .exit_status = -1};
        pf__strlcpy(o->info.message, t.message, sizeof o->info.message);
        pf__task_heap_drop(&t);
    }
}

static void fail_all_locked_then_unlock(struct tpool *p, int code);

/* A task ended its worker thread (pthread_exit, or a cancellation it
 * enabled): the thread unwinds through here.  Its future fails
 * PF_EWORKERDIED (unless the watchdog took it over), the finalizer runs,
 * and a new thread takes the slot so that queued tasks are not stranded.
 * Once join_all has read the slots the dead thread stays there to be
 * joined.  If no new thread can be started the slot is left vacant (the
 * next submit starts one there, respawn_locked); should no worker be left,
 * what is queued fails. */
struct running_task {
    struct worker *w;
    pf_future *f;
    void *state;
};

static void task_left_thread(void *arg)
{
    struct running_task *rt = arg;
    struct worker *w = rt->w;
    struct tpool *p = w->pool;
    pf__mutex_lock(&p->lock);
    bool timed_out = w->timed_out;
    w->current = NULL;
    w->deadline_ns = 0;
    w->timed_out = false;
    p->n_live--;
    pf__cond_signal(&p->watchdog_wake); /* it no longer waits for this task */
    if (!p->joining) {
        bool refused =
            atomic_load_explicit(&pf__tp_fail_respawns, memory_order_relaxed) > 0 &&
            atomic_fetch_sub_explicit(&pf__tp_fail_respawns, 1, memory_order_relaxed) > 0;
        if (refused || refill_slot_locked(p, w) != PF_OK) {
            /* The slot stays this thread's (joined by join_all) until a
             * submit starts a thread in it. */
            w->vacant = true;
            p->n_vacant++;
        }
    }
    if (p->n_live == 0 && p->queue.head)
        fail_all_locked_then_unlock(p, PF_EWORKERDIED);
    else
        pf__mutex_unlock(&p->lock);
    if (!timed_out)
        pf__future_fail(rt->f, PF_EWORKERDIED, w->index,
                        "the task ended its worker thread (pthread_exit or cancellation)");
    pf_future_release(rt->f);
    pf__worker_fini(&p->base, w->index, rt->state);
    thread_done(p); /* drops the thread's own reference */
}

/* run_task, with task_left_thread as the cleanup should the task end the
 * thread (a function of its own: the cleanup handler's setjmp must not
 * clobber worker_main's locals). */
static void run_task_guarded(struct worker *w, pf_future *f, void *state, struct outcome *o)
{
    struct running_task rt = {.w = w, .f = f, .state = state};
    pthread_cleanup_push(task_left_thread, &rt);
    run_task(w, f, state, o);
    pthread_cleanup_pop(0);
}

/* Take the whole queue and fail it, after unlocking (done-callbacks run):
 * a batch (core.h), finished here on references of its own, which tp_cancel
 * may finish first. */
static void fail_all_locked_then_unlock(struct tpool *p, int code)
{
    struct pf__fqueue batch = pf__fqueue_take_batch(&p->queue, false);
    if (!batch.head) {
        pf__mutex_unlock(&p->lock);
        return;
    }
    /* Counted until every future of the batch is finished: shutdown(wait)
     * returns only then.  The caller keeps the pool alive meanwhile (a
     * thread's or shutdown's reference). */
    p->n_batches++;
    pf__mutex_unlock(&p->lock);
    struct batch_frame frame = {.pool = p, .outer = tls_batches};
    tls_batches = &frame;
    pf_error_info info;
    const pf_error_info *why = NULL;
    if (code == PF_EINITFAILED) {
        pf__executor_check_init(&p->base, &info); /* recorded for good, once */
        why = &info;
    }
    pf__batch_finish(&batch, code, why);
    tls_batches = frame.outer;
    pf__mutex_lock(&p->lock);
    p->n_batches--;
    pf__cond_broadcast(&p->quiet);
    pf__mutex_unlock(&p->lock);
}

struct spin_ctx {
    struct tpool *p;
    uint64_t pushed;
};

static bool work_arrived(void *arg)
{
    struct spin_ctx *c = arg;
    return atomic_load_explicit(&c->p->n_pushed, memory_order_relaxed) != c->pushed;
}

/* The queue is empty: poll for a submit for a moment, without the lock,
 * before sleeping on `work` (a wake-up costs more than the poll). */
static void spin_for_work_locked(struct tpool *p)
{
    struct spin_ctx c = {.p = p, .pushed = atomic_load(&p->n_pushed)};
    atomic_fetch_add(&p->n_spinning, 1);
    pf__mutex_unlock(&p->lock);
    pf__spin_until(work_arrived, &c, UINT64_MAX);
    pf__mutex_lock(&p->lock);
    atomic_fetch_sub(&p->n_spinning, 1);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct tpool *p = w->pool;
    tls_pool = p;
    /* A pool thread is not the tasks' to cancel: acted on in the pool's own
     * waits, a cancellation would end the thread holding the lock. */
    PF__CHECK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL) == 0);
    void *state = NULL;
    bool init_ok = pf__worker_init(&p->base, w->index, &state) == PF_OK;

    pf__mutex_lock(&p->lock);
    if (!init_ok) {
        /* The executor is broken (`broken` was set before this lock was
         * taken): fail what waits; tp_submit refuses later tasks under this
         * lock, and other workers fail what they had taken already. */
        p->n_live--;
        fail_all_locked_then_unlock(p, PF_EINITFAILED);
        thread_done(p); /* drops the thread's own reference */
        return NULL;
    }
    for (;;) {
        if (!p->queue.head && !p->stopping)
            spin_for_work_locked(p);
        while (!p->queue.head && !p->stopping) {
            p->n_idle++;
            pf__cond_wait(&p->work, &p->lock);
            p->n_idle--;
        }
        pf_future *f = pf__fqueue_pop(&p->queue);
        if (!f)
            break;           /* stopping, and nothing left */
        pf_future_retain(f); /* see DESIGN: the future must outlive a timeout */
        w->current = f;
        w->timed_out = false;
        w->deadline_ns = f->timeout_ns ? pf__now_ns() + f->timeout_ns : 0;
        if (w->deadline_ns) {
            start_watchdog_locked(p);
            pf__cond_signal(&p->watchdog_wake);
        }
        pf__future_set_running(f, w->index);
        pf__mutex_unlock(&p->lock);

        struct outcome o;
        run_task_guarded(w, f, state, &o);
        /* The task may have enabled cancellation; the pool's code runs without. */
        PF__CHECK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL) == 0);

        pf__mutex_lock(&p->lock);
        /* After this the watchdog no longer sees the task; before it, it may
         * have taken it over, and then it alone finishes the future. */
        bool timed_out = w->timed_out;
        w->current = NULL;
        w->deadline_ns = 0;
        w->timed_out = false;
        if (p->stopping)
            pf__cond_signal(&p->watchdog_wake); /* it leaves once no task runs */
        pf__mutex_unlock(&p->lock);
        if (timed_out)
            free(o.data); /* the late result is thrown away */
        else
            pf__future_finish(f, o.code, o.data, o.len, o.code ? &o.info : NULL);
        pf_future_release(f);
        pf__mutex_lock(&p->lock);
    }
    p->n_live--;
    pf__mutex_unlock(&p->lock);
    pf__worker_fini(&p->base, w->index, state);
    thread_done(p); /* drops the thread's own reference */
    return NULL;
}

static void *watchdog_main(void *arg)
{
    struct tpool *p = arg;
    tls_pool = p; /* it runs done-callbacks of timed-out futures */
    tls_watchdog = true;
    PF__CHECK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL) == 0); /* see worker_main */
    pf__mutex_lock(&p->lock);
    for (;;) {
        uint64_t now = pf__now_ns(), next = UINT64_MAX;
        pf_future *expired = NULL;
        int expired_worker = -1;
        bool busy = false;
        for (int i = 0; i < p->n_threads; i++) {
            struct worker *w = &p->workers[i];
            if (!w->current)
                continue;
            busy = true;
            if (!w->deadline_ns)
                continue;
            if (w->deadline_ns <= now && !expired) {
                expired = pf_future_retain(w->current);
                expired_worker = i;
                w->deadline_ns = 0;  /* expire once */
                w->timed_out = true; /* the worker will not finish it now */
            } else if (w->deadline_ns > now && w->deadline_ns < next) {
                next = w->deadline_ns;
            }
        }
        if (expired) {
            pf__mutex_unlock(&p->lock);
            /* Flag, then finish: the done-callbacks run here and may wait
             * for the task (destroy), which must see its flag first.  The
             * task cannot finish its own future: timed_out is set. */
            atomic_store(&expired->cancel_requested, 1);
            pf__future_fail(expired, PF_ETASKTIMEOUT, expired_worker,
                            "task overran its time limit of %.3f s (the thread runs on: "
                            "threads cannot be killed; its result will be discarded)",
                            expired->timeout_ns / 1e9);
            pf_future_release(expired);
            pf__mutex_lock(&p->lock);
            continue;
        }
        /* No task runs and none can start: workers only leave from here
         * (no submit is taken once stopping), so none needs a limit. */
        if (p->stopping && !busy && !p->queue.head)
            break;
        pf__cond_wait_until(&p->watchdog_wake, &p->lock, next);
    }
    p->n_active--; /* see thread_done */
    pf__cond_broadcast(&p->quiet);
    pf__mutex_unlock(&p->lock);
    pf__executor_release(&p->base); /* its own reference; may free the pool */
    return NULL;
}

static int tp_submit(struct pf_executor *ex, pf_future *f)
{
    struct tpool *p = (struct tpool *)ex;
    pf__mutex_lock(&p->lock);
    if (p->stopping) {
        pf__mutex_unlock(&p->lock);
        return PF_ESHUTDOWN;
    }
    /* The front end's check of `broken` is not atomic with this queue: a
     * worker whose initializer failed may have emptied it since, and none
     * may be left to take the task.  Checked under the lock that worker
     * held, it is exact (relaxed is enough: `broken` was stored before the
     * failing worker took the lock). */
    if (atomic_load_explicit(&p->base.broken, memory_order_relaxed)) {
        pf__mutex_unlock(&p->lock);
        return PF_EINITFAILED;
    }
    pf__fqueue_push(&p->queue, f);
    atomic_fetch_add_explicit(&p->n_pushed, 1, memory_order_relaxed);
    /* A spinning worker takes the task without a wake-up; start a thread
     * only when more tasks wait than idle and spinning workers can take. */
    size_t takers = (size_t)p->n_idle + (size_t)atomic_load(&p->n_spinning);
    if (p->queue.count > takers && (p->n_threads < p->base.opts.max_workers || p->n_vacant > 0)) {
        /* A vacant slot first (its task ended the thread and no replacement
         * could start then), so the pool gets back to its size. */
        int rc = p->n_vacant > 0 ? respawn_locked(p) : spawn_locked(p);
        if (rc != PF_OK && p->n_live == 0) {
            /* No thread at all would ever take it. */
            pf__fqueue_remove(&p->queue, f);
            pf__mutex_unlock(&p->lock);
            return rc;
        }
    }
    if (p->n_idle > 0)
        pf__cond_signal(&p->work);
    pf__mutex_unlock(&p->lock);
    return PF_OK;
}

static int tp_cancel(struct pf_executor *ex, pf_future *f)
{
    struct tpool *p = (struct tpool *)ex;
    /* A worker marks a future RUNNING in the critical section that pops it,
     * so one that is PENDING under the lock is queued, or in a batch of
     * fail_all_locked_then_unlock: its task never runs (see core.h).  A
     * running one goes on, its cancel flag raised: PF_EBUSY. */
    return pf__future_cancel_unsent(&p->lock, &p->queue, f, false);
}

/* Join the pool's threads, or detach those that the caller must not wait
 * for when it is a pool thread itself (see DESIGN).  Called once `stopping`
 * is set, so no worker starts any more. */
static void join_all(struct tpool *p)
{
    const bool on_watchdog = tls_pool == p && tls_watchdog;
    if (tls_pool == p) {
        /* A pool thread never waits for join_lock: its holder (a
         * shutdown(wait) from outside, or another pool thread's destroy) is
         * joining or detaching every thread, this one included, and would
         * wait for it.  This thread returns to its task or callback and
         * leaves when the pool is done. */
        int rc = pthread_mutex_trylock(&p->join_lock);
        if (rc == EBUSY)
            return;
        PF__CHECK(rc == 0);
    } else {
        pf__mutex_lock(&p->join_lock);
    }
    pf__mutex_lock(&p->lock);
    int n = p->n_threads;
    p->joining = true; /* the slots' threads are fixed from here */
    bool detach_watchdog = false;
    if (tls_pool == p) {
        p->orphaned = true; /* a watchdog started from now on detaches itself */
        detach_watchdog = p->watchdog_started && !p->watchdog_claimed;
        p->watchdog_claimed = p->watchdog_claimed || detach_watchdog;
    }
    pf__mutex_unlock(&p->lock);
    for (; p->n_joined < n; p->n_joined++) {
        pthread_t tid = p->workers[p->n_joined].tid;
        if (on_watchdog || pthread_equal(tid, pthread_self()))
            PF__CHECK(pthread_detach(tid) == 0); /* it leaves on its own */
        else
            PF__CHECK(pthread_join(tid, NULL) == 0);
    }
    if (detach_watchdog)
        PF__CHECK(pthread_detach(p->watchdog) == 0); /* it leaves once no task runs */
    if (tls_pool != p) {
        /* Every worker is gone, so the watchdog cannot start any more: read
         * its state only now. */
        pf__mutex_lock(&p->lock);
        bool join_watchdog = p->watchdog_started && !p->watchdog_claimed;
        p->watchdog_claimed = p->watchdog_claimed || join_watchdog;
        pf__cond_signal(&p->watchdog_wake);
        pf__mutex_unlock(&p->lock);
        if (join_watchdog)
            PF__CHECK(pthread_join(p->watchdog, NULL) == 0);
    }
    pf__mutex_unlock(&p->join_lock);
}

static int tp_shutdown(struct pf_executor *ex, bool wait, bool cancel_futures)
{
    struct tpool *p = (struct tpool *)ex;
    pf__mutex_lock(&p->lock);
    p->stopping = true;
    pf__cond_broadcast(&p->work);
    pf__cond_signal(&p->watchdog_wake);
    if (cancel_futures)
        fail_all_locked_then_unlock(p, PF_ECANCELLED);
    else
        pf__mutex_unlock(&p->lock);
    if (!wait)
        return PF_OK;
    if (tls_pool == p)
        return PF_EBUSY; /* a task or callback of this pool cannot wait for it */
    join_all(p);
    if (in_batch_of(p))
        return PF_EBUSY; /* a callback of a batch this thread fails: the batch waits for it */
    /* Joining is not enough: a thread that a pool thread's destroy detached
     * (or a thread a task ended) may still run a task, and another thread
     * may still be failing a batch of futures taken off the queue.  Neither
     * waits for this call (pool code never does), and the front end's
     * reference keeps the pool alive meanwhile. */
    pf__mutex_lock(&p->lock);
    while (p->n_active > 0 || p->n_batches > 0)
        pf__cond_wait(&p->quiet, &p->lock);
    pf__mutex_unlock(&p->lock);
    return PF_OK;
}

static void tp_destroy(struct pf_executor *ex)
{
    join_all((struct tpool *)ex);
}

static void tp_free(struct pf_executor *ex)
{
    struct tpool *p = (struct tpool *)ex;
    pf__cond_destroy(&p->work);
    pf__cond_destroy(&p->watchdog_wake);
    pf__cond_destroy(&p->quiet);
    pf__mutex_destroy(&p->lock);
    pf__mutex_destroy(&p->join_lock);
    free(p->workers);
    free(p);
}

static const struct pf__executor_ops tp_ops = {
    .submit = tp_submit,
    .cancel = tp_cancel,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .free = tp_free,
};

int pf__threads_create(const struct pf_executor *base, struct pf_executor **out)
{
    struct tpool *p = calloc(1, sizeof *p);
    if (!p)
        return PF_ENOMEM;
    p->workers = calloc((size_t)base->opts.max_workers, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return PF_ENOMEM;
    }
    pf__executor_init_base(&p->base, base);
    p->base.ops = &tp_ops;
    pf__mutex_init(&p->lock);
    pf__mutex_init(&p->join_lock);
    pf__cond_init(&p->work);
    pf__cond_init(&p->watchdog_wake);
    pf__cond_init(&p->quiet);
    *out = &p->base;
    return PF_OK;
}
