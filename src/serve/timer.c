/*
 * The delay timer of the mock API: one thread, a binary min-heap of
 * deadlines, a monotonic condition variable (see serve_internal.h).
 *
 * Adding an item that becomes the earliest deadline signals the thread,
 * which recomputes its sleep; other adds do not wake it.  Due items are
 * popped under the lock in batches and fired after the lock is dropped, so
 * fire() (MHD_resume_connection, which takes MHD's own locks) never runs
 * under ours and the two lock sets are never nested.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "internal.h"
#include "platform/sync.h"
#include "serve/serve_internal.h"

/* Items fired per lock release; bounds the stack buffer only. */
#define FIRE_BATCH 128

/* Precision: a thread asleep until a deadline wakes 50-100 us after it on a
 * virtual machine, and every delayed answer waits for this one.  So while
 * the load is light (few items pending), the thread sleeps until SPIN_AHEAD_NS
 * before the earliest deadline and polls the clock from there, yielding the
 * CPU between polls; under heavy load (thousands of connections) it sleeps to
 * the deadline, as polling would take a core from the server.  Off when
 * spinning is off (PFOR_SPIN_NS=0).  Under light load items also fire
 * PF__TIMER_LEAD_NS early: the thread that fire() wakes (an MHD thread, 40-60
 * us to wake on this kind of machine) is then running at the deadline and
 * waits out the rest itself. */
#define SPIN_AHEAD_NS    150000u
#define SPIN_MAX_PENDING 64u

struct entry {
    uint64_t deadline_ns;
    void *item;
};

struct pf__timer {
    pf__mutex lock;
    pf__cond wake;          /* signalled when the earliest deadline moves up or on stop */
    struct entry *heap;     /* guarded by lock; heap[0] is the earliest deadline */
    size_t len;             /* guarded by lock; entries in heap */
    size_t cap;             /* immutable; heap's allocated length */
    bool stopping;          /* guarded by lock; set once by pf__timer_shutdown */
    pf__timer_fire_fn fire; /* immutable */
    pthread_t thread;       /* immutable after start; joined by pf__timer_shutdown */
};

static void sift_up_locked(pf__timer *t, size_t i)
{
    struct entry e = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (t->heap[parent].deadline_ns <= e.deadline_ns)
            break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = e;
}

static void sift_down_locked(pf__timer *t, size_t i)
{
    struct entry e = t->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= t->len)
            break;
        if (child + 1 < t->len && t->heap[child + 1].deadline_ns < t->heap[child].deadline_ns)
            child++;
        if (e.deadline_ns <= t->heap[child].deadline_ns)
            break;
        t->heap[i] = t->heap[child];
        i = child;
    }
    t->heap[i] = e;
}

static void *pop_locked(pf__timer *t)
{
    void *item = t->heap[0].item;
    t->len--;
    if (t->len > 0) {
        t->heap[0] = t->heap[t->len];
        sift_down_locked(t, 0);
    }
    return item;
}

/* Light load: few items pending and spinning allowed.  Then the thread
 * polls the clock before each deadline and fires PF__TIMER_LEAD_NS early. */
static bool light_load_locked(const pf__timer *t)
{
    return t->len <= SPIN_MAX_PENDING && pf__spin_budget_ns() > 0;
}

static void *timer_main(void *arg)
{
    pf__timer *t = arg;
    void *batch[FIRE_BATCH];
    /* Wake at the deadline, not up to 50 us after it (the default timer
     * slack): every delayed answer waits for this thread.  Failure only
     * costs precision. */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    pf__mutex_lock(&t->lock);
    for (;;) {
        /* Collect what is due (everything once stopping), fire it unlocked. */
        size_t n = 0;
        uint64_t now = pf__now_ns();
        bool light = light_load_locked(t); /* for this pass: len changes only by popping */
        uint64_t lead = light ? PF__TIMER_LEAD_NS : 0;
        while (t->len > 0 && n < FIRE_BATCH &&
               (t->stopping || t->heap[0].deadline_ns <= now + lead))
            batch[n++] = pop_locked(t);
        if (n > 0) {
            pf__mutex_unlock(&t->lock);
            for (size_t i = 0; i < n; i++)
                t->fire(batch[i]);
            pf__mutex_lock(&t->lock);
            continue;
        }
        /* Nothing due: the heap is empty or its top lies in the future. */
        if (t->stopping)
            break;
        if (t->len == 0) {
            pf__cond_wait(&t->wake, &t->lock);
            continue;
        }
        uint64_t next = t->heap[0].deadline_ns - lead;
        if (!light) {
            pf__cond_wait_until(&t->wake, &t->lock, next);
        } else if (next - now > SPIN_AHEAD_NS) {
            pf__cond_wait_until(&t->wake, &t->lock, next - SPIN_AHEAD_NS);
        } else {
            /* At most SPIN_AHEAD_NS: an earlier item added meanwhile (or
             * a stop) waits no longer than it would for a late wake-up. */
            pf__mutex_unlock(&t->lock);
            pf__yield_until_ns(next);
            pf__mutex_lock(&t->lock);
        }
    }
    pf__mutex_unlock(&t->lock);
    return NULL;
}

int pf__timer_start(pf__timer **out, size_t capacity, pf__timer_fire_fn fire)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (capacity == 0 || !fire || capacity > SIZE_MAX / sizeof(struct entry))
        return PF_EINVAL;
    pf__timer *t = calloc(1, sizeof *t);
    if (!t)
        return PF_ENOMEM;
    t->heap = malloc(capacity * sizeof *t->heap);
    if (!t->heap) {
        free(t);
        return PF_ENOMEM;
    }
    t->cap = capacity;
    t->fire = fire;
    pf__mutex_init(&t->lock);
    pf__cond_init(&t->wake);
    if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
        pf__cond_destroy(&t->wake);
        pf__mutex_destroy(&t->lock);
        free(t->heap);
        free(t);
        return PF_ESYS;
    }
    *out = t;
    return PF_OK;
}

int pf__timer_add(pf__timer *t, uint64_t deadline_ns, void *item)
{
    int rc = PF_OK;
    pf__mutex_lock(&t->lock);
    if (t->stopping) {
        rc = PF_ESHUTDOWN;
        goto out;
    }
    if (t->len == t->cap) {
        rc = PF_ENOSPC;
        goto out;
    }
    /* Only a new earliest deadline shortens the thread's sleep. */
    bool earliest = t->len == 0 || deadline_ns < t->heap[0].deadline_ns;
    t->heap[t->len] = (struct entry){deadline_ns, item};
    t->len++;
    sift_up_locked(t, t->len - 1);
    if (earliest)
        pf__cond_signal(&t->wake);
out:
    pf__mutex_unlock(&t->lock);
    return rc;
}

bool pf__timer_stopping(pf__timer *t)
{
    pf__mutex_lock(&t->lock);
    bool stopping = t->stopping;
    pf__mutex_unlock(&t->lock);
    return stopping;
}

void pf__timer_shutdown(pf__timer *t)
{
    if (!t)
        return;
    pf__mutex_lock(&t->lock);
    bool first = !t->stopping;
    t->stopping = true;
    pf__cond_signal(&t->wake);
    pf__mutex_unlock(&t->lock);
    if (!first)
        return;
    /* The thread fires whatever is left before it returns; once `stopping`
     * is set nothing more is added, so the heap stays empty after this. */
    PF__CHECK(pthread_join(t->thread, NULL) == 0);
}

void pf__timer_free(pf__timer *t)
{
    if (!t)
        return;
    pf__timer_shutdown(t);
    PF__CHECK(t->len == 0);
    pf__cond_destroy(&t->wake);
    pf__mutex_destroy(&t->lock);
    free(t->heap);
    free(t);
}
