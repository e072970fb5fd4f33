/*
 * Waiting on many futures: as_completed sets and pf_wait().
 *
 * A completion set registers one watch per future.  When a future finishes
 * it moves its watches, under its own lock, onto the done queue of their
 * sets (pf__watch_fire_locked), so each finished future costs O(1) however
 * many futures the set holds, and nothing polls.  Lock order: future lock,
 * then set lock (core.h).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"

/* The first word of a live pf_as_completed, as PF__EXECUTOR_MAGIC and
 * PF__FUTURE_MAGIC are of executors and futures: the public functions refuse
 * a pointer without it (NULL, an executor or a future, memory that is not a
 * set) with PF_EINVAL, and destroy clears it before the memory is freed.  A
 * set used after its destroy is still undefined: this only catches it while
 * the memory is not reused. */
#define AS_COMPLETED_MAGIC 0x41734370u /* "AsCp" */

struct pf__completion_set {
    pf__mutex lock;
    pf__cond cond;                /* signalled on every fire */
    struct pf__watch *done_head;  /* finished, not yet returned; lock */
    struct pf__watch **done_tail; /* lock */
    /* Watches added so far, counted under `lock` before the watch can fire:
     * a consumer compares it with n_delivered under that lock alone, so a
     * future added while it waits is never missed (EEOF only once every
     * future added has come out). */
    size_t n_added;     /* lock */
    size_t n_finished;  /* lock */
    size_t n_errors;    /* finished with an error other than cancel; lock */
    size_t n_delivered; /* lock */
    int sleepers;       /* lock */

    /* Owned by the set's user thread(s); not touched by firing. */
    struct pf__watch **watches; /* every watch, in add order */
    size_t n_watches, cap_watches;
    pf_future **index; /* open-addressing set of futures: duplicates */
    size_t index_cap;
};

struct pf_as_completed {
    uint32_t magic; /* AS_COMPLETED_MAGIC while alive; first, like the others' */
    struct pf__completion_set set;
    pf__mutex api_lock; /* serialises adds (the watch array and the index) */
};

void pf__watch_fire_locked(struct pf__watch *w)
{
    struct pf__completion_set *s = w->set;
    w->linked = false;
    pf__mutex_lock(&s->lock);
    w->next_done = NULL;
    *s->done_tail = w;
    s->done_tail = &w->next_done;
    s->n_finished++;
    if (w->future->code != PF_OK && w->future->code != PF_ECANCELLED)
        s->n_errors++;
    if (s->sleepers)
        pf__cond_broadcast(&s->cond);
    pf__mutex_unlock(&s->lock);
}

static void set_init(struct pf__completion_set *s)
{
    memset(s, 0, sizeof *s);
    pf__mutex_init(&s->lock);
    pf__cond_init(&s->cond);
    s->done_tail = &s->done_head;
}

static size_t hash_ptr(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

/* Insert f into the duplicate index; false if it is there already. */
static int index_insert(struct pf__completion_set *s, pf_future *f)
{
    if ((s->n_watches + 1) * 2 > s->index_cap) {
        size_t cap = s->index_cap ? s->index_cap * 2 : 64;
        pf_future **idx = calloc(cap, sizeof *idx);
        if (!idx)
            return PF_ENOMEM;
        for (size_t i = 0; i < s->index_cap; i++) {
            if (!s->index[i])
                continue;
            size_t h = hash_ptr(s->index[i], cap);
            while (idx[h])
                h = (h + 1) & (cap - 1);
            idx[h] = s->index[i];
        }
        free(s->index);
        s->index = idx;
        s->index_cap = cap;
    }
    size_t h = hash_ptr(f, s->index_cap);
    while (s->index[h]) {
        if (s->index[h] == f)
            return PF_EEXIST;
        h = (h + 1) & (s->index_cap - 1);
    }
    s->index[h] = f;
    return PF_OK;
}

static int set_add(struct pf__completion_set *s, pf_future *f)
{
    if (!f || f->magic != PF__FUTURE_MAGIC)
        return PF_EINVAL;
    if (s->n_watches == s->cap_watches) {
        size_t cap = s->cap_watches ? s->cap_watches * 2 : 16;
        struct pf__watch **w = realloc(s->watches, cap * sizeof *w);
        if (!w)
            return PF_ENOMEM;
        s->watches = w;
        s->cap_watches = cap;
    }
    /* The watch first: once f is in the index it must get its watch (the
     * index holds no reference, and an entry without a watch would refuse a
     * retry as a duplicate). */
    struct pf__watch *w = calloc(1, sizeof *w);
    if (!w)
        return PF_ENOMEM;
    int rc = index_insert(s, f);
    if (rc != PF_OK) {
        free(w);
        return rc;
    }
    w->set = s;
    w->future = pf_future_retain(f);
    s->watches[s->n_watches++] = w;
    pf__mutex_lock(&s->lock);
    s->n_added++;
    pf__mutex_unlock(&s->lock);

    pf__mutex_lock(&f->lock);
    if (atomic_load(&f->state) == PF__FINISHED) {
        pf__watch_fire_locked(w);
    } else {
        w->linked = true;
        w->next_in_future = f->watchers;
        f->watchers = w;
    }
    pf__mutex_unlock(&f->lock);
    return PF_OK;
}

static void set_clear(struct pf__completion_set *s)
{
    for (size_t i = 0; i < s->n_watches; i++) {
        struct pf__watch *w = s->watches[i];
        pf_future *f = w->future;
        pf__mutex_lock(&f->lock);
        if (w->linked) { /* unlink from the future's watcher list */
            struct pf__watch **pp = &f->watchers;
            while (*pp != w)
                pp = &(*pp)->next_in_future;
            *pp = w->next_in_future;
            w->linked = false;
        }
        pf__mutex_unlock(&f->lock);
        pf_future_release(f);
        free(w);
    }
    free(s->watches);
    free(s->index);
    pf__cond_destroy(&s->cond);
    pf__mutex_destroy(&s->lock);
}

static bool valid_set(const pf_as_completed *ac)
{
    return ac && ac->magic == AS_COMPLETED_MAGIC;
}

static bool wait_condition_met_locked(const struct pf__completion_set *s, pf_return_when when)
{
    switch (when) {
    case PF_FIRST_COMPLETED:
        return s->n_finished >= 1;
    case PF_FIRST_EXCEPTION:
        return s->n_errors >= 1 || s->n_finished == s->n_added;
    default:
        return s->n_finished == s->n_added;
    }
}

int pf_as_completed_create(pf_as_completed **out, pf_future *const *fs, size_t n)
{
    if (!out)
        return PF_EINVAL;
    *out = NULL;
    if (n > 0 && !fs)
        return PF_EINVAL;
    pf_as_completed *ac = malloc(sizeof *ac);
    if (!ac)
        return PF_ENOMEM;
    ac->magic = AS_COMPLETED_MAGIC;
    set_init(&ac->set);
    pf__mutex_init(&ac->api_lock);
    for (size_t i = 0; i < n; i++) {
        int rc = set_add(&ac->set, fs[i]);
        if (rc != PF_OK) {
            pf_as_completed_destroy(ac);
            return rc == PF_EEXIST ? PF_EINVAL : rc;
        }
    }
    *out = ac;
    return PF_OK;
}

int pf_as_completed_add(pf_as_completed *ac, pf_future *f)
{
    if (!valid_set(ac))
        return PF_EINVAL;
    pf__mutex_lock(&ac->api_lock);
    int rc = set_add(&ac->set, f);
    pf__mutex_unlock(&ac->api_lock);
    return rc == PF_EEXIST ? PF_EINVAL : rc;
}

int pf_as_completed_next(pf_as_completed *ac, double timeout, pf_future **f)
{
    if (f)
        *f = NULL;
    if (!valid_set(ac) || !f || isnan(timeout))
        return PF_EINVAL;
    struct pf__completion_set *s = &ac->set;
    uint64_t deadline = pf__deadline_ns(timeout);
    pf__mutex_lock(&s->lock);
    int rc = PF_OK;
    while (!s->done_head) {
        /* Re-read at every wake-up: an add may have come meanwhile. */
        if (s->n_delivered == s->n_added) {
            rc = PF_EEOF;
            break;
        }
        s->sleepers++;
        bool woke = pf__cond_wait_until(&s->cond, &s->lock, deadline);
        s->sleepers--;
        if (!woke && !s->done_head) {
            rc = PF_ETIMEDOUT;
            break;
        }
    }
    if (rc == PF_OK) {
        struct pf__watch *w = s->done_head;
        s->done_head = w->next_done;
        if (!s->done_head)
            s->done_tail = &s->done_head;
        w->delivered = true;
        s->n_delivered++;
        *f = w->future;
    }
    pf__mutex_unlock(&s->lock);
    return rc;
}

void pf_as_completed_destroy(pf_as_completed *ac)
{
    if (!valid_set(ac))
        return;
    ac->magic = 0;
    set_clear(&ac->set);
    pf__mutex_destroy(&ac->api_lock);
    free(ac);
}

int pf_wait(pf_future *const *fs, size_t n, pf_return_when when, double timeout, size_t *n_done)
{
    if (n_done)
        *n_done = 0;
    if ((n > 0 && !fs) || isnan(timeout) ||
        (when != PF_ALL_COMPLETED && when != PF_FIRST_COMPLETED && when != PF_FIRST_EXCEPTION))
        return PF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i] || fs[i]->magic != PF__FUTURE_MAGIC)
            return PF_EINVAL;
    if (n == 0)
        return PF_OK;
    uint64_t deadline = pf__deadline_ns(timeout);
    struct pf__completion_set s;
    set_init(&s);
    int rc = PF_OK;
    for (size_t i = 0; i < n && rc == PF_OK; i++) {
        rc = set_add(&s, fs[i]);
        if (rc == PF_EEXIST) /* the same future twice counts once, like a set */
            rc = PF_OK;
    }
    if (rc == PF_OK) {
        pf__mutex_lock(&s.lock);
        while (!wait_condition_met_locked(&s, when)) {
            s.sleepers++;
            bool woke = pf__cond_wait_until(&s.cond, &s.lock, deadline);
            s.sleepers--;
            if (!woke && !wait_condition_met_locked(&s, when)) {
                rc = PF_ETIMEDOUT;
                break;
            }
        }
        if (n_done)
            *n_done = s.n_finished;
        pf__mutex_unlock(&s.lock);
    }
    set_clear(&s);
    return rc;
}
