/*
 * The process pool, parent side.
 *
 * DESIGN
 *   Submit: a submitting thread takes `lock`, copies the task into a free
 *   slot of the shared memory (procs.h), marks it READY and publishes it on
 *   the submission ring, waking one sleeping worker if any.  With no free
 *   slot (or no ring room) the future waits in `pending`.  An argument over
 *   PF__ARG_STRIDE never gets here (pp_ops.max_arg_len: the front end
 *   refuses it with PF_ETOOBIG before copying it); every task is refused
 *   once the pool is broken (PF_EINITFAILED, decided under `lock`: see
 *   pp_submit).
 *
 *   The collector thread does everything else: it drains the workers'
 *   completion rings (copying results out and finishing futures), refills
 *   slots from `pending`, enforces time limits, and handles messages from the
 *   fork server (worker started / worker ended).  It sleeps in poll() on an
 *   eventfd that workers write only when it announced it was going to sleep.
 *
 *   Death of a worker (signal, exit, kill for a time limit or a cancel): the
 *   fork server reports its wait status.  The collector first drains the
 *   dead worker's completion ring, then scans the slots it still owned:
 *   DONE ones are collected normally, RUNNING ones are the task it died
 *   running.  That task's future fails with PF_EWORKERDIED (pid and signal
 *   or exit status in the details), or is queued again while it has retries
 *   left; a task that merely shared a worker we killed for another task's
 *   sake is queued again for free.  A task whose worker we killed for it
 *   (cancel, time limit) is finished by whoever killed it, never by the
 *   death report, and never runs again (slot_killed).  Then a replacement
 *   worker is started with the same index.  Only that task is affected; the
 *   pool goes on.
 *
 *   Failed spawns (fork failed in the server): the index stays down and the
 *   next submit asks for it again.  When no worker runs and none is being
 *   started, the queued tasks fail with PF_ESYS: no accepted task waits for
 *   a worker that nobody will start.
 *
 *   Loss of the fork server (its channel hangs up): the pool turns broken,
 *   every result already published (DONE) is collected as usual, and only
 *   the tasks no worker finished fail (fork_server_lost).
 *
 *   Shutdown: `stopping` refuses new tasks; once `pending` is empty the
 *   collector sets hdr->shutdown and workers leave when the ring is empty.
 *   A worker that ends then is replaced only while some task waits for a
 *   worker (untaken_work_locked), never for tasks other workers still run.
 *   When every slot is free and every worker has been reported ended, the
 *   collector closes the channel and waits for the fork server to close its
 *   end, which it does only after reaping every worker of this pool: so
 *   after shutdown(wait) no process of the pool exists.
 *
 * Locking: `lock` guards the fields marked so; it is never held while a
 * future is finished (callbacks run user code).  The shared-memory slot of a
 * task is written by the parent only while the slot is FREE and under `lock`.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procs/procs.h"

/* Workers in a row that may die before taking a task before the pool gives
 * up (the executor then fails its tasks with PF_EINITFAILED). */
#define PF__MAX_STARTUP_FAILURES 5

void (*pf__pp_cancel_gap_hook)(void);  /* see procs.h */
void (*pf__pp_collect_gap_hook)(void); /* see procs.h */

struct pworker {
    pid_t pid;          /* lock: 0 while none */
    bool alive;         /* lock: started and not yet reported ended */
    bool spawn_pending; /* lock: asked the server for it, no answer yet */
    bool down;          /* lock: its spawn failed; the next submit asks again */
    bool killed;        /* lock: we asked the server to kill it */
    uint32_t kill_slot; /* lock: the slot it was killed for, or PF__SLOT_NONE */
};

struct ppool {
    struct pf_executor base;
    int memfd, evfd, chan;      /* immutable after create */
    struct pf__shm_header *hdr; /* immutable after create */
    size_t ctl_size;
    void **windows; /* [n_workers]: first PF__WIN_PREMAP of each window */
    int n_workers;  /* immutable */

    pf__mutex lock;
    pf__cond stopped;          /* broadcast when the collector ends */
    pf_future **slot_future;   /* lock: [n_slots] */
    uint32_t *free_slots;      /* lock: stack of FREE slots */
    bool *medium_reserved;     /* lock: [n_slots] slot's medium area is fallocated */
    bool *slot_killed;         /* lock: [n_slots] killed for its task: kill_worker_locked */
    uint32_t n_free;           /* lock */
    struct pf__fqueue pending; /* lock */
    struct pworker *workers;   /* lock: [n_workers] */
    bool stopping;             /* lock */
    bool collector_done;       /* lock */
    bool fs_gone;              /* lock: the fork server vanished */
    int startup_failures;      /* lock: workers in a row that died starting */
    int n_down;                /* lock: workers with pworker.down set */

    pthread_t collector; /* immutable after create */
    pf__mutex join_lock;
    bool joined; /* join_lock */
};

static void send_fs(struct ppool *p, int type, int index, int pid)
{
    struct pf__fs_msg m = {.type = type, .index = index, .pid = pid};
    while (send(p->chan, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void wake_collector(struct ppool *p)
{
    uint64_t one = 1;
    while (write(p->evfd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

static void wake_workers(struct ppool *p, int n)
{
    atomic_fetch_add(&p->hdr->sq_seq, 1);
    if (atomic_load(&p->hdr->sq_sleepers) > 0)
        pf__futex_wake(&p->hdr->sq_seq, n, true);
}

/* ------------------------------------------------------------ placement -- */

/* Step sq_head over entries no longer READY; returns free ring room. */
static uint64_t ring_room_locked(struct ppool *p)
{
    struct pf__shm_header *h = p->hdr;
    _Atomic uint32_t *ring = pf__shm_ring(h);
    uint64_t tail = atomic_load(&h->sq_tail);
    uint64_t head = atomic_load(&h->sq_head);
    while (head != tail) {
        uint32_t s = atomic_load(&ring[head & (h->ring_size - 1)]);
        if (s < h->n_slots &&
            PF__SLOT_KIND(atomic_load(&pf__shm_slot(h, s)->state)) == PF__SLOT_READY)
            break;
        if (atomic_compare_exchange_strong(&h->sq_head, &head, head + 1))
            head++;
    }
    return h->ring_size - (tail - head);
}

/* Put f in a free slot and publish it.  PF_EBUSY: no slot or no ring room
 * (f stays with the caller); PF_ENOSPC/PF_ESYS: it cannot be placed in shared
 * memory. */
static int place_locked(struct ppool *p, pf_future *f)
{
    struct pf__shm_header *h = p->hdr;
    if (p->n_free == 0 || ring_room_locked(p) == 0)
        return PF_EBUSY;
    uint32_t s = p->free_slots[p->n_free - 1];
    struct pf__slot *slot = pf__shm_slot(h, s);
    slot->fn = (uint64_t)(uintptr_t)f->fn;
    slot->arg_len = f->arg_len;
    slot->timeout_ns = f->timeout_ns;
    atomic_store_explicit(&slot->started_ns, 0, memory_order_relaxed);
    if (f->arg_len <= PF__ARG_INLINE) {
        slot->arg_where = PF__ARG_IN_SLOT;
        if (f->arg_len)
            memcpy(slot->arg_inline, f->arg, f->arg_len);
    } else if (f->arg_len <= h->medium_size) {
        /* Medium areas are reserved on first use: reserving all of them up
         * front (4 MiB) was most of the pool's creation time. */
        if (!p->medium_reserved[s]) {
            if (posix_fallocate(p->memfd, (off_t)(h->medium_off + (uint64_t)s * h->medium_size),
                                (off_t)h->medium_size) != 0)
                return PF_ENOSPC;
            p->medium_reserved[s] = true;
        }
        slot->arg_where = PF__ARG_MEDIUM;
        memcpy(pf__shm_medium(h, s), f->arg, f->arg_len);
    } else {
        /* A slot's area is PF__ARG_STRIDE bytes: a longer argument would
         * spill into the next slot's (the front end refuses it: max_arg_len). */
        PF__CHECK(f->arg_len <= PF__ARG_STRIDE);
        slot->arg_where = PF__ARG_LARGE;
        uint64_t off = PF__ARG_BASE + (uint64_t)s * PF__ARG_STRIDE;
        if (posix_fallocate(p->memfd, (off_t)off, (off_t)f->arg_len) != 0)
            return PF_ENOSPC;
        void *base, *map;
        size_t map_len;
        if (pf__shm_map_range(p->memfd, off, f->arg_len, PROT_READ | PROT_WRITE, &base, &map,
                              &map_len) != PF_OK)
            return PF_ESYS;
        memcpy(base, f->arg, f->arg_len);
        munmap(map, map_len);
    }
    p->n_free--;
    p->slot_future[s] = pf_future_retain(f); /* the slot's own reference */
    f->slot = s;
    atomic_store_explicit(&slot->state, PF__SLOT_STATE(PF__SLOT_READY, 0), memory_order_release);
    _Atomic uint32_t *ring = pf__shm_ring(h);
    uint64_t tail = atomic_load(&h->sq_tail);
    atomic_store_explicit(&ring[tail & (h->ring_size - 1)], s, memory_order_relaxed);
    atomic_store(&h->sq_tail, tail + 1); /* publishes the entry and the slot */
    wake_workers(p, 1);
    return PF_OK;
}

/* Free slot s.  Returns the future it held with the slot's reference, which
 * the caller now owns and must finish or release; NULL if the slot held none,
 * or if its worker was killed for that future (slot_killed): the killer
 * finishes it, and the slot's reference is dropped here.  That reference is
 * never the last one while the future is unfinished (the killer holds the
 * executor's), so no user code runs here. */
static pf_future *free_slot_locked(struct ppool *p, uint32_t s)
{
    struct pf__slot *slot = pf__shm_slot(p->hdr, s);
    if (slot->arg_where == PF__ARG_LARGE && slot->arg_len > PF__LARGE_PUNCH)
        pf__shm_punch(p->memfd, PF__ARG_BASE + (uint64_t)s * PF__ARG_STRIDE, slot->arg_len);
    pf_future *f = p->slot_future[s];
    p->slot_future[s] = NULL;
    slot->timeout_ns = 0;
    atomic_store(&slot->state, PF__SLOT_STATE(PF__SLOT_FREE, 0));
    p->free_slots[p->n_free++] = s;
    if (p->slot_killed[s]) {
        p->slot_killed[s] = false;
        pf_future_release(f);
        return NULL;
    }
    return f;
}

/* Move pending futures into free slots. */
static void refill_locked(struct ppool *p, struct pf__finish_list *dl)
{
    while (p->pending.head) {
        pf_future *f = p->pending.head;
        int rc = place_locked(p, f);
        if (rc == PF_EBUSY)
            break;
        pf__fqueue_remove(&p->pending, f);
        if (rc != PF_OK) {
            pf_error_info info = {.code = rc, .worker_index = -1, .exit_status = -1};
            snprintf(info.message, sizeof info.message,
                     "the task's %zu-byte argument does not fit in shared memory", f->arg_len);
            pf__finish_later(dl, pf_future_retain(f), rc, NULL, 0, &info);
        }
    }
}

/* ----------------------------------------------------------- collecting -- */

/* Copy slot s's outcome out, free the slot, and defer finishing its future.
 * w: the worker whose completion names s, or -1 for any.  The state word is
 * in memory a task can scribble on: a slot that is not DONE by a worker of
 * ours (w if given), or that holds no task, is not collected here (a
 * damaged one is failed by its worker's death: worker_ended). */
static void collect_slot(struct ppool *p, uint32_t s, int w, struct pf__finish_list *dl)
{
    struct pf__shm_header *h = p->hdr;
    struct pf__slot *slot = pf__shm_slot(h, s);
    uint32_t st = atomic_load_explicit(&slot->state, memory_order_acquire);
    int owner = PF__SLOT_OWNER(st);
    if (PF__SLOT_KIND(st) != PF__SLOT_DONE || owner >= p->n_workers || (w >= 0 && owner != w))
        return;
    int code = slot->code;
    void *data = NULL;
    size_t len = 0;
    pf_error_info info = {.code = code, .worker_index = owner, .exit_status = -1};
    if (code == PF_OK) {
        len = slot->result_len;
        /* The slot is in memory the task could scribble on: a length its
         * place cannot hold fails the future instead of reading past it. */
        bool damaged = len > (slot->result_where == PF__RESULT_WINDOW    ? PF__WIN_STRIDE
                              : slot->result_where == PF__RESULT_INLINE_ ? PF__RESULT_INLINE
                                                                         : 0);
        if (damaged && slot->result_where != PF__RESULT_WINDOW) {
            len = 0;
        } else if (slot->result_where == PF__RESULT_INLINE_ && len) {
            data = malloc(len);
            if (data)
                memcpy(data, slot->result_inline, len);
        } else if (slot->result_where == PF__RESULT_WINDOW) {
            struct pf__shm_worker *ow = pf__shm_worker(h, owner);
            uint64_t off = pf__win_off(owner);
            void *base, *map;
            size_t map_len;
            data = damaged ? NULL : malloc(len);
            if (data && len <= PF__WIN_PREMAP && p->windows[owner]) {
                /* the common case: no mmap/munmap (and no TLB shootdown) */
                memcpy(data, p->windows[owner], len);
            } else if (data && pf__shm_map_range(p->memfd, off, len, PROT_READ, &base, &map,
                                                 &map_len) == PF_OK) {
                memcpy(data, base, len);
                munmap(map, map_len);
            } else {
                free(data);
                data = NULL;
            }
            if (len > PF__LARGE_PUNCH && !damaged)
                pf__shm_punch(p->memfd, off, len);
            atomic_store(&ow->window_busy, 0);
            pf__futex_wake(&ow->window_busy, 1, true);
        }
        if (damaged) {
            code = PF_ECORRUPT;
            info.code = code;
            snprintf(info.message, sizeof info.message,
                     "worker %d's result slot is damaged (length %llu)", owner,
                     (unsigned long long)slot->result_len);
            len = 0;
        } else if (len && !data) {
            code = PF_ENOMEM;
            info.code = code;
            snprintf(info.message, sizeof info.message,
                     "the task's %zu-byte result does not fit in memory", len);
            len = 0;
        }
    } else {
        info.task_code = slot->task_code;
        memcpy(info.message, slot->result_inline, sizeof info.message);
        info.message[sizeof info.message - 1] = '\0';
    }
    if (code != PF_OK)
        info.pid = (int)atomic_load(&pf__shm_worker(h, owner)->pid);

    pf__mutex_lock(&p->lock);
    if (!p->slot_future[s]) {
        /* FREE, made to look DONE by a scribbler: freeing it again would
         * push it twice on free_slots. */
        pf__mutex_unlock(&p->lock);
        free(data);
        return;
    }
    /* Its reference goes to the finish list; NULL if its worker was killed
     * for it: the killer's outcome (cancelled, time limit) stands. */
    pf_future *f = free_slot_locked(p, s);
    refill_locked(p, dl);
    pf__mutex_unlock(&p->lock);
    if (f) {
        f->worker_index = owner; /* unfinished: only this thread writes it now */
        pf__finish_later(dl, f, code, data, len, &info);
    } else
        free(data);
}

static bool drain_worker(struct ppool *p, int w, struct pf__finish_list *dl)
{
    struct pf__shm_worker *sw = pf__shm_worker(p->hdr, w);
    _Atomic uint32_t *cq = pf__shm_worker_cq(p->hdr, w);
    uint64_t head = atomic_load_explicit(&sw->cq_head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&sw->cq_tail, memory_order_acquire);
    if (head == tail)
        return false;
    if (tail - head > p->hdr->cq_size) {
        /* A task moved the ring's indices (the ring never holds more than
         * cq_size entries): drop its entries and collect what the worker
         * has finished by scanning its slots, as for a dead worker.  Its
         * next entry goes at the tail we read. */
        atomic_store_explicit(&sw->cq_head, tail, memory_order_release);
        for (uint32_t s = 0; s < p->hdr->n_slots; s++)
            collect_slot(p, s, w, dl);
        return true;
    }
    for (; head != tail; head++) {
        uint32_t s = atomic_load_explicit(&cq[head & (p->hdr->cq_size - 1)], memory_order_relaxed);
        if (s < p->hdr->n_slots) /* else a scribbled entry: skipped */
            collect_slot(p, s, w, dl);
    }
    atomic_store_explicit(&sw->cq_head, head, memory_order_release);
    return true;
}

static bool any_completion(struct ppool *p)
{
    for (int w = 0; w < p->n_workers; w++) {
        struct pf__shm_worker *sw = pf__shm_worker(p->hdr, w);
        if (atomic_load(&sw->cq_head) != atomic_load(&sw->cq_tail))
            return true;
    }
    return false;
}

/* ---------------------------------------------------------- worker life -- */

static void describe_death(char *buf, size_t size, int index, pid_t pid, int status,
                           const char *doing)
{
    if (WIFSIGNALED(status))
        snprintf(buf, size, "worker %d (pid %d) was killed by signal %d (%s) %s", index, (int)pid,
                 WTERMSIG(status), strsignal(WTERMSIG(status)), doing);
    else
        snprintf(buf, size, "worker %d (pid %d) exited with status %d %s", index, (int)pid,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, doing);
}

static void fail_everything_locked(struct ppool *p, int code, const pf_error_info *why,
                                   struct pf__finish_list *dl)
{
    for (pf_future *f; (f = pf__fqueue_pop(&p->pending));)
        pf__finish_later(dl, pf_future_retain(f), code, NULL, 0, why);
    for (uint32_t s = 0; s < p->hdr->n_slots; s++) {
        struct pf__slot *slot = pf__shm_slot(p->hdr, s);
        uint32_t st = atomic_load(&slot->state);
        if (PF__SLOT_KIND(st) == PF__SLOT_READY &&
            atomic_compare_exchange_strong(&slot->state, &st,
                                           PF__SLOT_STATE(PF__SLOT_CANCELLED, 0))) {
            pf_future *f = free_slot_locked(p, s);
            if (f)
                pf__finish_later(dl, f, code, NULL, 0, why);
        }
    }
}

/* Ask the server again for the workers whose spawn failed.  pp_submit calls
 * it, so a task is accepted only while some worker runs or is being started:
 * either one takes it, or the last failed start fails it (worker_started).
 * Retrying on the failure itself instead could spin while fork keeps failing. */
static void respawn_down_locked(struct ppool *p)
{
    for (int i = 0; i < p->n_workers && p->n_down > 0; i++) {
        struct pworker *pw = &p->workers[i];
        if (!pw->down)
            continue;
        pw->down = false;
        p->n_down--;
        pw->spawn_pending = true;
        send_fs(p, PF__FS_SPAWN, i, 0);
    }
}

static void worker_started(struct ppool *p, const struct pf__fs_msg *m, struct pf__finish_list *dl)
{
    pf__mutex_lock(&p->lock);
    struct pworker *pw = &p->workers[m->index];
    pw->spawn_pending = false;
    if (m->pid > 0) {
        pw->pid = m->pid;
        pw->alive = true;
    } else {
        /* fork failed in the server: the index stays down until the next
         * submit asks again (respawn_down_locked). */
        pw->down = true;
        p->n_down++;
        /* Without workers nothing would run what is queued now: fail it. */
        bool none = !atomic_load(&p->base.broken);
        for (int i = 0; i < p->n_workers; i++)
            none = none && !p->workers[i].alive && !p->workers[i].spawn_pending;
        if (none) {
            pf_error_info why = {.code = PF_ESYS, .worker_index = m->index, .exit_status = -1};
            snprintf(why.message, sizeof why.message, "could not start a worker process: %s",
                     strerror(m->status));
            fail_everything_locked(p, PF_ESYS, &why, dl);
        }
    }
    pf__mutex_unlock(&p->lock);
}

static bool work_left_locked(struct ppool *p)
{
    return p->pending.head || p->n_free < p->hdr->n_slots;
}

/* Work that no worker has taken yet: queued here, or READY in a slot.  While
 * the pool stops, only this needs a replacement worker: a task RUNNING on
 * another worker does not, and an idle worker leaves at once once
 * hdr->shutdown is set, so restarting one for it would loop (fork, run the
 * initializer, leave, restart) until that task ends. */
static bool untaken_work_locked(struct ppool *p)
{
    if (p->pending.head)
        return true;
    for (uint32_t s = 0; s < p->hdr->n_slots; s++)
        if (PF__SLOT_KIND(atomic_load(&pf__shm_slot(p->hdr, s)->state)) == PF__SLOT_READY)
            return true;
    return false;
}

static void worker_ended(struct ppool *p, const struct pf__fs_msg *m, struct pf__finish_list *dl)
{
    int index = m->index;
    pf__mutex_lock(&p->lock);
    struct pworker *pw = &p->workers[index];
    if (index < 0 || index >= p->n_workers || pw->pid != m->pid) {
        pf__mutex_unlock(&p->lock);
        return;
    }
    pw->alive = false;
    pf__mutex_unlock(&p->lock);

    /* What it published before it died is good. */
    drain_worker(p, index, dl);

    struct pf__shm_header *h = p->hdr;
    struct pf__shm_worker *sw = pf__shm_worker(h, index);
    uint32_t current = atomic_load(&sw->current);
    pf__mutex_lock(&p->lock);
    for (uint32_t s = 0; s < h->n_slots; s++) {
        struct pf__slot *slot = pf__shm_slot(h, s);
        uint32_t st = atomic_load_explicit(&slot->state, memory_order_acquire);
        /* A state whose owner is no worker of ours was scribbled on by the
         * task it ran, if that slot is what the worker ran or was killed
         * for: it died running it. */
        bool damaged = PF__SLOT_OWNER(st) >= p->n_workers && p->slot_future[s] &&
                       (s == current || s == pw->kill_slot);
        if (PF__SLOT_OWNER(st) != index && !damaged)
            continue;
        if (PF__SLOT_KIND(st) == PF__SLOT_DONE && !damaged) {
            /* Finished, but died before announcing it. */
            pf__mutex_unlock(&p->lock);
            collect_slot(p, s, index, dl);
            pf__mutex_lock(&p->lock);
            continue;
        }
        if (PF__SLOT_KIND(st) != PF__SLOT_RUNNING && !damaged)
            continue;
        /* NULL if we killed the worker for this very task: whoever did
         * (pp_cancel, check_deadlines_locked) finishes its future, at once
         * or soon after; it must never run again. */
        pf_future *f = free_slot_locked(p, s);
        if (!f)
            continue;
        if (atomic_load(&f->state) == PF__FINISHED) {
            pf_future_release(f); /* not expected: finished by another path */
            continue;
        }
        /* Killed for another task's sake (the worker finished that task and
         * claimed this one before the SIGKILL landed), or retries left: run
         * it again, the former for free. */
        if (pw->killed || (f->retries_left > 0 && !atomic_load(&f->cancel_requested))) {
            if (!pw->killed)
                f->retries_left--;
            pf__fqueue_push_front(&p->pending, f); /* its argument is still in f */
            pf_future_release(f); /* the pending list runs on the executor's reference */
            continue;
        }
        pf_error_info info = {
            .code = PF_EWORKERDIED, .worker_index = index, .pid = m->pid, .exit_status = -1};
        if (WIFSIGNALED(m->status))
            info.signal = WTERMSIG(m->status);
        else if (WIFEXITED(m->status))
            info.exit_status = WEXITSTATUS(m->status);
        describe_death(info.message, sizeof info.message, index, m->pid, m->status,
                       "while running the task");
        pf__finish_later(dl, f, PF_EWORKERDIED, NULL, 0, &info);
    }

    uint32_t wstate = atomic_load(&sw->state);
    if (wstate == PF__W_STARTING && !pw->killed) {
        /* Died before it could take a task: a crashing initializer, or a
         * broken environment.  Restarting forever would spin. */
        if (++p->startup_failures >= PF__MAX_STARTUP_FAILURES) {
            char msg[256];
            describe_death(msg, sizeof msg, index, m->pid, m->status, "while starting");
            pf__executor_init_failed(&p->base, PF_EWORKERDIED, msg);
            pf_error_info why;
            pf__executor_check_init(&p->base, &why);
            fail_everything_locked(p, PF_EINITFAILED, &why, dl);
        }
    } else if (wstate != PF__W_STARTING) {
        p->startup_failures = 0;
    }
    if (wstate == PF__W_INIT_FAILED) {
        char msg[256];
        memcpy(msg, sw->init_message, sizeof msg);
        msg[sizeof msg - 1] = '\0';
        pf__executor_init_failed(&p->base, sw->init_code, msg);
        pf_error_info why;
        pf__executor_check_init(&p->base, &why);
        fail_everything_locked(p, PF_EINITFAILED, &why, dl);
    }

    /* A result it was writing, never delivered, may hold pages of its
     * window (up to PF__WIN_STRIDE): release them, for the replacement
     * punches only what it uses.  What it delivered was collected above. */
    pf__shm_punch(p->memfd, pf__win_off(index), PF__WIN_STRIDE);

    /* Reset the index for a replacement and start one if there is work. */
    pw->pid = 0;
    pw->killed = false;
    pw->kill_slot = PF__SLOT_NONE;
    atomic_store(&sw->state, PF__W_STARTING);
    atomic_store(&sw->current, PF__SLOT_NONE);
    atomic_store(&sw->window_busy, 0);
    atomic_store(&sw->cq_head, 0);
    atomic_store(&sw->cq_tail, 0);
    atomic_store(&sw->pid, 0);
    if (!atomic_load(&p->base.broken) && !p->fs_gone && (!p->stopping || untaken_work_locked(p))) {
        pw->spawn_pending = true;
        send_fs(p, PF__FS_SPAWN, index, 0);
    }
    refill_locked(p, dl);
    pf__mutex_unlock(&p->lock);
}

/* The fork server is gone (killed from outside): its workers die with it
 * (PR_SET_PDEATHSIG), maybe a moment after we see the hang-up, and no death
 * report will ever come.  What a worker published before we got here (DONE,
 * announced on its completion ring or not) is delivered like any result:
 * DONE means the parent owns the slot, whatever became of the worker.  Only
 * the tasks no worker finished fail, with PF_EWORKERDIED.  Runs once (the
 * caller checks fs_gone), and the collector ends in the same round. */
static void fork_server_lost(struct ppool *p, struct pf__finish_list *dl)
{
    pf_error_info why = {.code = PF_EWORKERDIED, .worker_index = -1, .exit_status = -1};
    snprintf(why.message, sizeof why.message,
             "the pool's fork server died, and its workers with it");

    /* First refuse new work and fail what no worker took: after this no
     * slot becomes READY (pp_submit refuses, `pending` is empty, so the
     * refills of collect_slot below place nothing). */
    pf__mutex_lock(&p->lock);
    p->fs_gone = true;
    pf__executor_init_failed(&p->base, PF_EWORKERDIED, why.message);
    fail_everything_locked(p, PF_EWORKERDIED, &why, dl);
    pf__mutex_unlock(&p->lock);

    /* Then collect every published result: those announced on the rings
     * (this round's drain may have missed them: they came after it) ... */
    for (int w = 0; w < p->n_workers; w++)
        drain_worker(p, w, dl);
    /* ... and those whose worker died between its DONE store and its ring
     * entry.  Ring entries left behind name freed slots; nothing drains
     * them any more (the collector ends this round). */
    pf__mutex_lock(&p->lock);
    for (uint32_t s = 0; s < p->hdr->n_slots; s++) {
        /* acquire: pairs with the worker's release store of DONE, which
         * publishes the outcome that collect_slot reads */
        uint32_t st = atomic_load_explicit(&pf__shm_slot(p->hdr, s)->state, memory_order_acquire);
        if (p->slot_future[s] && PF__SLOT_KIND(st) == PF__SLOT_DONE) {
            pf__mutex_unlock(&p->lock);
            collect_slot(p, s, -1, dl);
            pf__mutex_lock(&p->lock);
        }
    }
    /* What is left was RUNNING: its worker is dead or about to be.  A
     * worker that still publishes after this writes into a slot we freed;
     * no one reads or reuses it (the pool is broken and its collector
     * ends), so that result is simply not delivered. */
    for (uint32_t s = 0; s < p->hdr->n_slots; s++) {
        if (!p->slot_future[s])
            continue;
        pf_future *f = free_slot_locked(p, s); /* NULL: its killer finishes it */
        if (f)
            pf__finish_later(dl, f, PF_EWORKERDIED, NULL, 0, &why);
    }
    for (int i = 0; i < p->n_workers; i++) {
        p->workers[i].alive = false;
        p->workers[i].spawn_pending = false;
    }
    pf__mutex_unlock(&p->lock);
}

/* Read every pending message from the fork server. */
static bool read_messages(struct ppool *p, struct pf__finish_list *dl)
{
    bool any = false;
    for (;;) {
        struct pf__fs_msg m;
        ssize_t n = recv(p->chan, &m, sizeof m, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return any;
        if (n == 0) {
            pf__mutex_lock(&p->lock);
            bool gone = p->fs_gone;
            pf__mutex_unlock(&p->lock);
            if (!gone)
                fork_server_lost(p, dl);
            return true;
        }
        any = true;
        if (n != sizeof m || m.index < 0 || m.index >= p->n_workers)
            continue;
        if (m.type == PF__FS_SPAWNED)
            worker_started(p, &m, dl);
        else if (m.type == PF__FS_EXITED)
            worker_ended(p, &m, dl);
    }
}

/* ------------------------------------------------------------ deadlines -- */

/* Kill worker i, which runs slot s, for `code`; fill *info for the task's
 * future, which the caller must finish with `code` (after unlocking).  From
 * here on the caller alone finishes that future: slot_killed[s] makes
 * whoever frees slot s (the worker's death report, a late completion) drop
 * the slot's reference instead of finishing the future or queueing it again.
 * The caller holds the executor's reference on the future until it finishes
 * it, so the future outlives the slot. */
static void kill_worker_locked(struct ppool *p, int i, uint32_t s, int code, const char *why,
                               pf_error_info *info)
{
    struct pworker *pw = &p->workers[i];
    p->slot_killed[s] = true;
    /* A worker can claim a task before the server's "started" message gives
     * us its pid (we learn it late under load or valgrind); it wrote its pid
     * to shared memory before claiming anything, and the server knew the
     * child before the child ran, so a kill by that pid always matches. */
    if (!pw->alive)
        pw->pid = (pid_t)atomic_load(&pf__shm_worker(p->hdr, i)->pid);
    pw->killed = true;
    pw->kill_slot = s;
    send_fs(p, PF__FS_KILL, i, pw->pid);
    *info = (pf_error_info){
        .code = code, .worker_index = i, .pid = pw->pid, .signal = SIGKILL, .exit_status = -1};
    snprintf(info->message, sizeof info->message, "%s; worker %d (pid %d) was killed", why, i,
             (int)pw->pid);
}

/* Kill workers whose task overran; return the next deadline. */
static uint64_t check_deadlines_locked(struct ppool *p, struct pf__finish_list *dl)
{
    uint64_t now = pf__now_ns(), next = UINT64_MAX;
    for (int i = 0; i < p->n_workers; i++) {
        struct pworker *pw = &p->workers[i];
        if (pw->killed || (!pw->alive && !pw->spawn_pending))
            continue;
        uint32_t s = atomic_load(&pf__shm_worker(p->hdr, i)->current);
        if (s >= p->hdr->n_slots)
            continue;
        struct pf__slot *slot = pf__shm_slot(p->hdr, s);
        pf_future *f = p->slot_future[s];
        if (!f || !slot->timeout_ns ||
            atomic_load(&slot->state) != PF__SLOT_STATE(PF__SLOT_RUNNING, i))
            continue;
        uint64_t started = atomic_load(&slot->started_ns);
        if (!started)
            continue; /* not published yet: its worker bumps timed_starts after */
        uint64_t deadline = started + slot->timeout_ns;
        if (deadline > now) {
            next = PF__MIN(next, deadline);
            continue;
        }
        if (!pw->alive)
            continue; /* overran, but its "started" message (which wakes us) is not in yet */
        char why[96];
        snprintf(why, sizeof why, "task overran its time limit of %.3f s", slot->timeout_ns / 1e9);
        pf_error_info info;
        kill_worker_locked(p, i, s, PF_ETASKTIMEOUT, why, &info);
        pf__finish_later(dl, pf_future_retain(f), PF_ETASKTIMEOUT, NULL, 0, &info);
    }
    return next;
}

/* ------------------------------------------------------------ collector -- */

static bool collector_finished_locked(struct ppool *p)
{
    if (!p->stopping && !p->fs_gone)
        return false;
    if (work_left_locked(p))
        return p->fs_gone;
    for (int i = 0; i < p->n_workers; i++)
        if (p->workers[i].alive || p->workers[i].spawn_pending)
            return false;
    return true;
}

static bool completion_waiting(void *arg)
{
    return any_completion(arg);
}

static void *collector_main(void *arg)
{
    struct ppool *p = arg;
    struct pf__shm_header *h = p->hdr;
    struct pf__finish_list dl = {0};
    for (;;) {
        bool busy = false;
        for (int w = 0; w < p->n_workers; w++)
            busy |= drain_worker(p, w, &dl);
        if (pf__pp_collect_gap_hook)
            pf__pp_collect_gap_hook();
        busy |= read_messages(p, &dl);

        uint32_t timed_starts = atomic_load(&h->timed_starts); /* before the check */
        pf__mutex_lock(&p->lock);
        refill_locked(p, &dl);
        uint64_t next = check_deadlines_locked(p, &dl);
        if (p->stopping && !p->pending.head && !atomic_load(&h->shutdown)) {
            atomic_store(&h->shutdown, 1);
            wake_workers(p, INT32_MAX);
        }
        if (p->pending.head) /* slots may free up without an event: poll */
            next = PF__MIN(next, pf__now_ns() + 10000000u);
        bool finished = collector_finished_locked(p);
        pf__mutex_unlock(&p->lock);

        pf__finish_pending(&dl);
        if (finished)
            break;
        if (busy)
            continue;

        /* Poll the completion rings a moment (see pf__spin_until), then
         * sleep, after telling workers to wake us (Dekker with their
         * seq_cst load of collector_sleeping after publishing). */
        if (pf__spin_until(completion_waiting, p, next))
            continue;
        atomic_store(&h->collector_sleeping, 1);
        if (any_completion(p) || atomic_load(&h->timed_starts) != timed_starts) {
            atomic_store(&h->collector_sleeping, 0);
            continue;
        }
        struct pollfd pfd[2] = {{.fd = p->evfd, .events = POLLIN},
                                {.fd = p->chan, .events = POLLIN}};
        int timeout_ms = -1;
        if (next != UINT64_MAX) {
            uint64_t now = pf__now_ns();
            timeout_ms = next <= now ? 0 : (int)PF__MIN((next - now + 999999) / 1000000, 60000);
        }
        poll(pfd, 2, timeout_ms);
        atomic_store(&h->collector_sleeping, 0);
        uint64_t v;
        while (read(p->evfd, &v, sizeof v) > 0) {
        }
    }
    pf__finish_list_free(&dl);

    /* Every worker is gone; let the server forget the pool, and wait for it
     * to close its end (it does once it has reaped every worker). */
    send_fs(p, PF__FS_CLOSE, 0, 0);
    for (;;) {
        struct pf__fs_msg m;
        ssize_t n = recv(p->chan, &m, sizeof m, 0);
        /* errno means something only after a failure: recv returns 0 at
         * EOF and leaves it as it was (maybe a stale EINTR). */
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        break; /* EOF, or the channel is broken: nothing more will come */
    }
    pf__mutex_lock(&p->lock);
    p->collector_done = true;
    pf__cond_broadcast(&p->stopped);
    pf__mutex_unlock(&p->lock);
    pf__executor_release(&p->base); /* the collector's own reference */
    return NULL;
}

/* ------------------------------------------------------------ operations -- */

static int pp_submit(struct pf_executor *ex, pf_future *f)
{
    struct ppool *p = (struct ppool *)ex;
    pf__mutex_lock(&p->lock);
    int rc = PF_OK;
    if (p->stopping) {
        rc = PF_ESHUTDOWN;
    } else if (atomic_load(&p->base.broken)) {
        /* The front end checked `broken` without our lock.  This pool sets it
         * only under `lock`, in the same critical section that fails every
         * queued task (worker_ended, fork_server_lost): so a task is either
         * refused here or queued before that, and failed with the rest. */
        rc = PF_EINITFAILED;
    } else {
        if (p->n_down > 0)
            respawn_down_locked(p);
        rc = p->pending.head ? PF_EBUSY : place_locked(p, f);
        if (rc == PF_EBUSY) {
            pf__fqueue_push(&p->pending, f);
            rc = PF_OK;
        }
    }
    pf__mutex_unlock(&p->lock);
    return rc;
}

/* Cancel f: queued or in a slot no worker has claimed, it never runs;
 * running (running_too only), its worker is killed. */
static int cancel_task(struct pf_executor *ex, pf_future *f, bool running_too)
{
    struct ppool *p = (struct ppool *)ex;
    pf__mutex_lock(&p->lock);
    if (f->in_queue) {
        pf__fqueue_remove(&p->pending, f);
        pf__mutex_unlock(&p->lock);
        pf__future_finish(f, PF_ECANCELLED, NULL, 0, NULL);
        return PF_OK;
    }
    uint32_t s = f->slot;
    if (s >= p->hdr->n_slots || p->slot_future[s] != f) {
        pf__mutex_unlock(&p->lock);
        return PF_EBUSY;
    }
    struct pf__slot *slot = pf__shm_slot(p->hdr, s);
    uint32_t st = atomic_load(&slot->state);
    if (PF__SLOT_KIND(st) == PF__SLOT_READY &&
        atomic_compare_exchange_strong(&slot->state, &st, PF__SLOT_STATE(PF__SLOT_CANCELLED, 0))) {
        pf_future *held = free_slot_locked(p, s);
        pf__mutex_unlock(&p->lock);
        pf__future_finish(f, PF_ECANCELLED, NULL, 0, NULL);
        pf_future_release(held);
        wake_collector(p); /* a slot is free: pending tasks may move up */
        return PF_OK;
    }
    /* An owner that is no worker of ours was scribbled on by the task. */
    if (running_too && PF__SLOT_KIND(st) == PF__SLOT_RUNNING && PF__SLOT_OWNER(st) < p->n_workers) {
        int i = PF__SLOT_OWNER(st);
        struct pworker *pw = &p->workers[i];
        /* Running, so the worker is alive even if its "started" message is
         * still on the way (spawn_pending). */
        if ((pw->alive || pw->spawn_pending) && !pw->killed) {
            /* Stop it the only safe way: kill its worker, start another.
             * From here on only we finish f (see kill_worker_locked), even
             * if the worker's death is handled before we get to it. */
            pf_error_info info;
            kill_worker_locked(p, i, s, PF_ECANCELLED, "cancelled while running", &info);
            pf__mutex_unlock(&p->lock);
            if (pf__pp_cancel_gap_hook)
                pf__pp_cancel_gap_hook();
            pf__future_finish(f, PF_ECANCELLED, NULL, 0, &info);
            return PF_OK;
        }
    }
    pf__mutex_unlock(&p->lock);
    return PF_EBUSY;
}

static int pp_cancel(struct pf_executor *ex, pf_future *f)
{
    return cancel_task(ex, f, true);
}

/* The slot's READY -> CANCELLED exchange races with the worker's claim
 * (READY -> RUNNING): exactly one wins, so a task never starts once this has
 * cancelled it, and one that started is left alone. */
static int pp_withdraw(struct pf_executor *ex, pf_future *f)
{
    return cancel_task(ex, f, false);
}

static void join_collector(struct ppool *p)
{
    pf__mutex_lock(&p->join_lock);
    if (!p->joined) {
        PF__CHECK(pthread_join(p->collector, NULL) == 0);
        p->joined = true;
    }
    pf__mutex_unlock(&p->join_lock);
}

static int pp_shutdown(struct pf_executor *ex, bool wait, bool cancel_futures)
{
    struct ppool *p = (struct ppool *)ex;
    struct pf__finish_list dl = {0};
    pf__mutex_lock(&p->lock);
    p->stopping = true;
    if (cancel_futures)
        fail_everything_locked(p, PF_ECANCELLED, NULL, &dl);
    pf__mutex_unlock(&p->lock);
    pf__finish_pending(&dl);
    pf__finish_list_free(&dl);
    wake_collector(p);
    if (wait) {
        if (pthread_equal(pthread_self(), p->collector))
            return PF_EBUSY; /* called from a done-callback: cannot wait for itself */
        join_collector(p);
    }
    return PF_OK;
}

static void pp_destroy(struct pf_executor *ex)
{
    struct ppool *p = (struct ppool *)ex;
    if (pthread_equal(pthread_self(), p->collector)) {
        /* Destroyed from a done-callback: the collector cannot join itself.
         * Detach it; it finishes on its own and nothing else is freed until
         * the last reference goes. */
        pf__mutex_lock(&p->join_lock);
        if (!p->joined) {
            pthread_detach(p->collector);
            p->joined = true;
        }
        pf__mutex_unlock(&p->join_lock);
        return;
    }
    join_collector(p);
}

static void pp_free(struct pf_executor *ex)
{
    struct ppool *p = (struct ppool *)ex;
    if (p->chan >= 0)
        close(p->chan);
    if (p->evfd >= 0)
        close(p->evfd);
    if (p->memfd >= 0)
        close(p->memfd);
    if (p->hdr)
        munmap(p->hdr, p->ctl_size);
    for (int w = 0; p->windows && w < p->n_workers; w++)
        if (p->windows[w])
            munmap(p->windows[w], PF__WIN_PREMAP);
    free(p->windows);
    pf__forkserver_release();
    pf__cond_destroy(&p->stopped);
    pf__mutex_destroy(&p->lock);
    pf__mutex_destroy(&p->join_lock);
    free(p->slot_future);
    free(p->free_slots);
    free(p->medium_reserved);
    free(p->slot_killed);
    free(p->workers);
    free(p);
}

static bool pp_is_running(struct pf_executor *ex, const pf_future *f)
{
    struct ppool *p = (struct ppool *)ex;
    pf__mutex_lock(&p->lock);
    uint32_t s = f->slot;
    bool running = !f->in_queue && s < p->hdr->n_slots && p->slot_future[s] == f &&
                   PF__SLOT_KIND(atomic_load(&pf__shm_slot(p->hdr, s)->state)) == PF__SLOT_RUNNING;
    pf__mutex_unlock(&p->lock);
    return running;
}

static uint64_t pp_count_running(struct pf_executor *ex)
{
    struct ppool *p = (struct ppool *)ex;
    uint64_t n = 0;
    for (int w = 0; w < p->n_workers; w++)
        n += atomic_load(&pf__shm_worker(p->hdr, w)->current) != PF__SLOT_NONE;
    return n;
}

static const struct pf__executor_ops pp_ops = {
    .submit = pp_submit,
    .cancel = pp_cancel,
    .withdraw = pp_withdraw,
    .shutdown = pp_shutdown,
    .destroy = pp_destroy,
    .free = pp_free,
    .is_running = pp_is_running,
    .count_running = pp_count_running,
    .max_arg_len = PF__ARG_STRIDE, /* a slot's argument area */
};

/* ---------------------------------------------------------------- create -- */

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t v = 1;
    while (v < n)
        v <<= 1;
    return v;
}

static int setup_shm(struct ppool *p)
{
    int nw = p->n_workers;
    uint32_t n_slots = (uint32_t)PF__MIN(4096, PF__MAX(256, 64 * nw));
    uint32_t ring_size = pow2_at_least(4ull * n_slots);
    uint32_t cq_size = pow2_at_least(n_slots);
    uint64_t off = (sizeof(struct pf__shm_header) + 63) & ~63ull;
    uint64_t ring_off = off;
    off += (uint64_t)ring_size * sizeof(uint32_t);
    off = (off + 63) & ~63ull;
    uint64_t slots_off = off;
    off += (uint64_t)n_slots * sizeof(struct pf__slot);
    off = (off + 63) & ~63ull;
    uint64_t workers_off = off;
    uint64_t stride = (sizeof(struct pf__shm_worker) + cq_size * sizeof(uint32_t) + 63) & ~63ull;
    off += stride * (uint64_t)nw;
    off = (off + 4095) & ~4095ull;
    uint64_t medium_off = off;
    uint32_t medium_size = (uint32_t)PF__MIN(PF__MEDIUM_MAX, PF__MEDIUM_TOTAL / n_slots) & ~1023u;
    off += (uint64_t)medium_size * n_slots;
    long page = sysconf(_SC_PAGESIZE);
    size_t ctl_size = (size_t)((off + (uint64_t)page - 1) & ~((uint64_t)page - 1));

    p->memfd = memfd_create("pfor-pool", MFD_CLOEXEC);
    if (p->memfd < 0)
        return PF_ESYS;
    /* The whole control region is mapped, so the file spans it; only the
     * part before the medium areas is reserved now (place_locked reserves
     * a slot's medium area when it first holds an argument). */
    if (ftruncate(p->memfd, (off_t)ctl_size) != 0)
        return PF_ESYS;
    int err = posix_fallocate(p->memfd, 0, (off_t)medium_off);
    if (err)
        return err == ENOSPC || err == ENOMEM ? PF_ENOSPC : PF_ESYS;
    void *m = mmap(NULL, ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
    if (m == MAP_FAILED)
        return PF_ENOMEM;
    p->hdr = m;
    p->ctl_size = ctl_size;
    struct pf__shm_header *h = m; /* the file is zero-filled: every state starts FREE/0 */
    h->version = PF__SHM_VERSION;
    h->n_slots = n_slots;
    h->n_workers = (uint32_t)nw;
    h->ring_size = ring_size;
    h->cq_size = cq_size;
    h->ring_off = ring_off;
    h->slots_off = slots_off;
    h->workers_off = workers_off;
    h->worker_stride = stride;
    h->medium_off = medium_off;
    h->medium_size = medium_size;
    h->ctl_size = ctl_size;
    h->fn_init = (uint64_t)(uintptr_t)p->base.opts.initializer;
    h->fn_fini = (uint64_t)(uintptr_t)p->base.opts.finalizer;
    h->max_tasks_per_child = p->base.opts.max_tasks_per_child;
    h->init_arg_len = p->base.opts.init_arg_len;
    for (int w = 0; w < nw; w++)
        atomic_store(&pf__shm_worker(h, w)->current, PF__SLOT_NONE);
    if (h->init_arg_len) {
        if (posix_fallocate(p->memfd, (off_t)PF__INIT_BASE, (off_t)h->init_arg_len) != 0)
            return PF_ENOSPC;
        void *base, *map;
        size_t map_len;
        if (pf__shm_map_range(p->memfd, PF__INIT_BASE, h->init_arg_len, PROT_READ | PROT_WRITE,
                              &base, &map, &map_len) != PF_OK)
            return PF_ENOMEM;
        memcpy(base, p->base.opts.init_arg, h->init_arg_len);
        munmap(map, map_len);
    }
    atomic_store(&h->magic, PF__SHM_MAGIC);

    /* Keep the first MiB of every result window mapped: results of chunked
     * tasks are copied out without a mapping per task.  Reading stays below
     * what the worker allocated, so the file's end is never crossed. */
    p->windows = calloc((size_t)nw, sizeof *p->windows);
    if (!p->windows)
        return PF_ENOMEM;
    for (int w = 0; w < nw; w++) {
        void *win =
            mmap(NULL, PF__WIN_PREMAP, PROT_READ, MAP_SHARED, p->memfd, (off_t)pf__win_off(w));
        p->windows[w] = win == MAP_FAILED ? NULL : win;
    }
    p->slot_future = calloc(n_slots, sizeof *p->slot_future);
    p->free_slots = malloc(n_slots * sizeof *p->free_slots);
    p->medium_reserved = calloc(n_slots, sizeof *p->medium_reserved);
    p->slot_killed = calloc(n_slots, sizeof *p->slot_killed);
    p->workers = calloc((size_t)nw, sizeof *p->workers);
    if (!p->slot_future || !p->free_slots || !p->medium_reserved || !p->slot_killed || !p->workers)
        return PF_ENOMEM;
    for (uint32_t s = 0; s < n_slots; s++) /* low slot numbers first */
        p->free_slots[s] = n_slots - 1 - s;
    p->n_free = n_slots;
    for (int w = 0; w < nw; w++)
        p->workers[w].kill_slot = PF__SLOT_NONE;
    return PF_OK;
}

int pf__procs_create(const struct pf_executor *base, struct pf_executor **out)
{
    int rc = pf__forkserver_acquire(false);
    if (rc != PF_OK)
        return rc;
    struct ppool *p = calloc(1, sizeof *p);
    if (!p) {
        pf__forkserver_release();
        return PF_ENOMEM;
    }
    pf__executor_init_base(&p->base, base);
    p->base.ops = &pp_ops;
    p->memfd = p->evfd = p->chan = -1;
    p->n_workers = base->opts.max_workers;
    pf__mutex_init(&p->lock);
    pf__mutex_init(&p->join_lock);
    pf__cond_init(&p->stopped);

    rc = setup_shm(p);
    if (rc == PF_OK) {
        p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        rc = p->evfd < 0 ? PF_ESYS : PF_OK;
    }
    if (rc == PF_OK)
        rc = pf__forkserver_register(p->memfd, p->evfd, &p->chan);
    if (rc == PF_OK) {
        /* Every worker is asked for before the collector starts, but the
         * requests go out after: the server answers each one on the same
         * channel, and with no one reading the answers both directions fill
         * up (a few hundred workers) and each side waits for the other. */
        for (int w = 0; w < p->n_workers; w++)
            p->workers[w].spawn_pending = true;
        /* The collector holds a reference: the pool's memory lives until it
         * ends, even when the pool is destroyed from one of its callbacks. */
        pf__executor_retain(&p->base);
        if (pthread_create(&p->collector, NULL, collector_main, p) != 0) {
            pf__executor_release(&p->base);
            send_fs(p, PF__FS_CLOSE, 0, 0);
            p->joined = true;
            rc = PF_ESYS;
        } else {
            for (int w = 0; w < p->n_workers; w++)
                send_fs(p, PF__FS_SPAWN, w, 0);
        }
    }
    if (rc != PF_OK) {
        /* The base's init_arg_copy belongs to the front end on failure. */
        p->base.init_arg_copy = NULL;
        pf__executor_release(&p->base); /* runs pp_free: closes and releases */
        return rc;
    }
    *out = &p->base;
    return PF_OK;
}
