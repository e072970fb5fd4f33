/*
 * A process-pool worker: the loop that runs in each worker process.
 *
 * The worker claims READY slots from the submission ring, runs the task in
 * place (the argument is read from shared memory, the result written to
 * it), publishes the outcome with one release store of the slot state and
 * appends the slot to its completion ring.  Everything it needs is in the
 * pool's memfd; it shares no locks with anyone, so it can be killed at any
 * instant without leaving a lock held: the parent reads the slot states to
 * learn what the dead worker owned.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "procs/procs.h"

struct worker_ctx {
    struct pf__shm_header *hdr;
    struct pf__shm_worker *me;
    int memfd;
    int evfd;
    int index;
    struct pf__slot *slot; /* the slot of the running task */
    void *win_map;         /* mapping of the result window, or NULL */
    size_t win_map_len;
    void *win_base;      /* address of the window's offset 0 */
    size_t win_reserved; /* window bytes known to be allocated (fallocate) */
    size_t win_high;     /* the running task's largest window allocation */
    bool fds_lost;       /* the eventfd is gone (a task closed it): retire */
};

void pf__shm_punch(int fd, uint64_t off, uint64_t len)
{
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

int pf__shm_map_range(int fd, uint64_t off, size_t len, int prot, void **base, void **map,
                      size_t *map_len)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t aligned = off & ~(uint64_t)(page - 1);
    size_t span = (size_t)(off - aligned) + (len ? len : 1);
    void *m = mmap(NULL, span, prot, MAP_SHARED, fd, (off_t)aligned);
    if (m == MAP_FAILED)
        return PF_ESYS;
    *map = m;
    *map_len = span;
    *base = (char *)m + (off - aligned);
    return PF_OK;
}

/* Result storage: inline in the slot when it fits, else the worker's window. */
static void *shm_alloc_result(struct pf_task *t, size_t len)
{
    struct worker_ctx *w = t->impl;
    struct pf__slot *slot = w->slot;
    if (len <= PF__RESULT_INLINE) {
        slot->result_where = PF__RESULT_INLINE_;
        slot->result_len = len;
        t->result = slot->result_inline;
        t->result_len = len;
        return slot->result_inline;
    }
    if (len > PF__WIN_STRIDE) {
        t->alloc_error = PF_ETOOBIG;
        return NULL;
    }
    /* The window holds one result at a time: wait for the parent to copy
     * the previous one out. */
    uint32_t busy;
    while ((busy = atomic_load(&w->me->window_busy)) != 0)
        pf__futex_wait(&w->me->window_busy, busy, UINT64_MAX, true);
    uint64_t off = pf__win_off(w->index);
    /* Reserve the pages first, so a full /dev/shm is an error here rather
     * than a SIGBUS while writing.  Up to PF__LARGE_PUNCH the parent keeps
     * the pages, so each size is reserved once; bigger results are punched
     * out after the copy, and their pages are reserved every time. */
    if (len > w->win_reserved) {
        int err = posix_fallocate(w->memfd, (off_t)off, (off_t)len);
        if (err != 0) {
            t->alloc_error = PF_ENOSPC;
            return NULL;
        }
        w->win_reserved = len > PF__LARGE_PUNCH ? 0 : len;
    }
    if (len > w->win_map_len) {
        if (w->win_map)
            munmap(w->win_map, w->win_map_len);
        w->win_map = NULL;
        w->win_map_len = 0;
        void *base, *map;
        size_t map_len;
        if (pf__shm_map_range(w->memfd, off, len, PROT_READ | PROT_WRITE, &base, &map, &map_len) !=
            PF_OK) {
            t->alloc_error = PF_ENOMEM;
            return NULL;
        }
        w->win_map = map;
        w->win_map_len = map_len; /* off is page aligned, so base == map */
        w->win_base = base;
    }
    if (len > w->win_high)
        w->win_high = len;
    slot->result_where = PF__RESULT_WINDOW;
    slot->result_len = len;
    t->result = w->win_base;
    t->result_len = len;
    return w->win_base;
}

static void shm_drop_result(struct pf_task *t)
{
    struct worker_ctx *w = t->impl;
    w->slot->result_where = PF__RESULT_NONE;
    w->slot->result_len = 0;
    t->result = NULL;
    t->result_len = 0;
}

static void wake_collector(struct worker_ctx *w)
{
    int evfd = w->evfd;
    /* seq_cst: pairs with the collector's store of collector_sleeping and
     * its re-check of the rings (a Dekker handshake). */
    if (atomic_load(&w->hdr->collector_sleeping)) {
        uint64_t one = 1;
        ssize_t r;
        while ((r = write(evfd, &one, sizeof one)) < 0 && errno == EINTR) {
        }
        /* A task closed our eventfd (EBADF), or something else now has its
         * number: the collector may sleep through our results.  The worker
         * retires once its task is published; the fork server's report of
         * its exit wakes the collector, which collects what it published. */
        if (r < 0 && errno != EAGAIN)
            w->fds_lost = true;
    }
}

static bool ring_changed(void *arg)
{
    struct pf__shm_header *h = arg;
    return atomic_load_explicit(&h->sq_head, memory_order_relaxed) !=
               atomic_load_explicit(&h->sq_tail, memory_order_relaxed) ||
           atomic_load_explicit(&h->shutdown, memory_order_relaxed);
}

/* Claim the next READY slot; PF__SLOT_NONE once the pool shuts down and the
 * ring is empty. */
static uint32_t claim(struct worker_ctx *w)
{
    struct pf__shm_header *h = w->hdr;
    _Atomic uint32_t *ring = pf__shm_ring(h);
    uint64_t mask = h->ring_size - 1;
    for (;;) {
        uint64_t head = atomic_load(&h->sq_head);
        uint64_t tail = atomic_load(&h->sq_tail);
        if (head == tail) {
            if (atomic_load(&h->shutdown))
                return PF__SLOT_NONE;
            /* Poll a moment before sleeping (see pf__spin_until); a spinner
             * is not counted in sq_sleepers, so the submitter skips the
             * wake-up system call. */
            if (pf__spin_until(ring_changed, h, UINT64_MAX))
                continue;
            uint32_t seq = atomic_load(&h->sq_seq);
            atomic_fetch_add(&h->sq_sleepers, 1);
            if (atomic_load(&h->sq_head) == atomic_load(&h->sq_tail) && !atomic_load(&h->shutdown))
                pf__futex_wait(&h->sq_seq, seq, UINT64_MAX, true);
            atomic_fetch_sub(&h->sq_sleepers, 1);
            continue;
        }
        uint32_t s = atomic_load_explicit(&ring[head & mask], memory_order_relaxed);
        if (s < h->n_slots) {
            struct pf__slot *slot = pf__shm_slot(h, s);
            uint32_t st = atomic_load(&slot->state);
            if (PF__SLOT_KIND(st) == PF__SLOT_READY &&
                atomic_compare_exchange_strong(&slot->state, &st,
                                               PF__SLOT_STATE(PF__SLOT_RUNNING, w->index))) {
                atomic_compare_exchange_strong(&h->sq_head, &head, head + 1);
                return s;
            }
        }
        /* Taken or withdrawn: step over it (someone else may have already). */
        atomic_compare_exchange_strong(&h->sq_head, &head, head + 1);
    }
}

/* The argument of slot s: inline, or mapped from the slot's argument area. */
static const void *map_arg(struct worker_ctx *w, uint32_t s, void **map, size_t *map_len)
{
    struct pf__slot *slot = pf__shm_slot(w->hdr, s);
    *map = NULL;
    if (slot->arg_where == PF__ARG_IN_SLOT)
        return slot->arg_inline;
    if (slot->arg_where == PF__ARG_MEDIUM)
        return pf__shm_medium(w->hdr, s);
    void *base;
    if (pf__shm_map_range(w->memfd, PF__ARG_BASE + (uint64_t)s * PF__ARG_STRIDE, slot->arg_len,
                          PROT_READ, &base, map, map_len) != PF_OK)
        return NULL;
    return base;
}

static void run_slot(struct worker_ctx *w, uint32_t s, void *state)
{
    struct pf__slot *slot = pf__shm_slot(w->hdr, s);
    w->slot = slot;
    atomic_store(&w->me->current, s);
    atomic_store(&slot->started_ns, pf__now_ns());
    if (slot->timeout_ns) {
        /* The collector may have checked the deadlines before these stores:
         * make it look again (see timed_starts), or wake it. */
        atomic_fetch_add(&w->hdr->timed_starts, 1);
        wake_collector(w);
    }

    struct pf_task t = {
        .alloc_result = shm_alloc_result,
        .drop_result = shm_drop_result,
        .worker_state = state,
        .worker_index = w->index,
        .impl = w,
    };
    slot->result_where = PF__RESULT_NONE;
    slot->result_len = 0;
    w->win_high = 0;
    void *map;
    size_t map_len = 0;
    const void *arg = map_arg(w, s, &map, &map_len);
    int rc;
    if (!arg) {
        rc = PF_ETASK;
        t.fail_code = PF_ENOMEM;
        snprintf(t.message, sizeof t.message, "worker %d could not map the task's argument",
                 w->index);
    } else {
        rc = pf__task_run(&t, (pf_task_fn)(uintptr_t)slot->fn, arg, slot->arg_len);
    }
    if (map)
        munmap(map, map_len);
    slot->code = rc;
    slot->task_code = t.fail_code;
    if (rc != PF_OK) {
        /* The message travels in the result area. */
        slot->result_where = PF__RESULT_NONE;
        size_t n = strnlen(t.message, sizeof t.message - 1);
        memcpy(slot->result_inline, t.message, n);
        slot->result_inline[n] = '\0';
        slot->result_len = 0;
    } else if (slot->result_where == PF__RESULT_WINDOW) {
        atomic_store(&w->me->window_busy, 1);
    }
    /* Window pages the task allocated and will not deliver (it failed,
     * dropped its result, or shrank it): the parent punches only a
     * delivered result, so release the rest here. */
    size_t kept = slot->result_where == PF__RESULT_WINDOW ? slot->result_len : 0;
    if (w->win_high > PF__LARGE_PUNCH && w->win_high > kept) {
        pf__shm_punch(w->memfd, pf__win_off(w->index) + kept, w->win_high - kept);
        if (w->win_reserved > kept)
            w->win_reserved = kept;
    }
    /* Publish: the outcome above becomes visible with this release store. */
    atomic_store_explicit(&slot->state, PF__SLOT_STATE(PF__SLOT_DONE, w->index),
                          memory_order_release);
    _Atomic uint32_t *cq = pf__shm_worker_cq(w->hdr, w->index);
    uint64_t tail = atomic_load_explicit(&w->me->cq_tail, memory_order_relaxed);
    atomic_store_explicit(&cq[tail & (w->hdr->cq_size - 1)], s, memory_order_relaxed);
    atomic_store(&w->me->cq_tail, tail + 1);
    atomic_store(&w->me->current, PF__SLOT_NONE);
}

void pf__proc_worker_main(int memfd, int evfd, int index)
{
    struct pf__shm_header probe;
    if (pread(memfd, &probe, sizeof probe, 0) != (ssize_t)sizeof probe ||
        probe.magic != PF__SHM_MAGIC)
        _exit(2);
    void *ctl = mmap(NULL, probe.ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (ctl == MAP_FAILED)
        _exit(2);
    struct worker_ctx w = {.hdr = ctl, .memfd = memfd, .evfd = evfd, .index = index};
    struct pf__shm_header *h = w.hdr;
    w.me = pf__shm_worker(h, index);
    atomic_store(&w.me->current, PF__SLOT_NONE);
    atomic_store(&w.me->pid, (uint32_t)getpid());

    /* The initializer, with its argument from shared memory. */
    void *state = NULL;
    if (h->fn_init) {
        void *arg = NULL, *map = NULL;
        size_t map_len = 0;
        if (h->init_arg_len && pf__shm_map_range(memfd, PF__INIT_BASE, h->init_arg_len, PROT_READ,
                                                 &arg, &map, &map_len) != PF_OK)
            _exit(2);
        pf_worker_init_fn init = (pf_worker_init_fn)(uintptr_t)h->fn_init;
        int rc = init(&state, arg, h->init_arg_len, index);
        if (map)
            munmap(map, map_len);
        if (rc != 0) {
            w.me->init_code = rc;
            snprintf(w.me->init_message, sizeof w.me->init_message,
                     "worker %d: initializer returned %d", index, rc);
            atomic_store(&w.me->state, PF__W_INIT_FAILED);
            _exit(3);
        }
    }
    atomic_store(&w.me->state, PF__W_READY);

    uint64_t done = 0;
    for (;;) {
        uint32_t s = claim(&w);
        if (s == PF__SLOT_NONE)
            break;
        run_slot(&w, s, state);
        wake_collector(&w);
        if (w.fds_lost)
            _exit(4);
        if (h->max_tasks_per_child && ++done >= h->max_tasks_per_child) {
            atomic_store(&w.me->state, PF__W_RETIRING);
            break;
        }
    }
    if (h->fn_fini)
        ((pf_worker_fini_fn)(uintptr_t)h->fn_fini)(state, index);
    _exit(0);
}
