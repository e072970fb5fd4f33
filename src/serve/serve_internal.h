/*
 * Internals of the mock API server (src/serve/): the delay timer.
 *
 * pf__timer is one thread that sleeps until the earliest of a set of
 * deadlines and then calls `fire(item)` for each item whose deadline has
 * passed.  The server uses it to resume suspended HTTP connections once
 * their latency is over, so that 10,000 delayed requests cost 10,000 heap
 * entries, not 10,000 threads.
 */
#ifndef PF_SERVE_INTERNAL_H
#define PF_SERVE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pfor/serve.h"

typedef struct pf__timer pf__timer;

/* Called on the timer thread, with no timer lock held, once per item. */
typedef void (*pf__timer_fire_fn)(void *item);

/* Start a timer that holds at most `capacity` pending items (preallocated:
 * pf__timer_add never allocates).  PF_EINVAL, PF_ENOMEM or PF_ESYS. */
int pf__timer_start(pf__timer **out, size_t capacity, pf__timer_fire_fn fire);

/* Under light load (a few dozen items pending) fire() is called up to this
 * much before an item's deadline, so that whatever fire() wakes is running
 * by then; the caller waits out the rest (the server, in its handler).
 * Under heavy load items fire at their deadline. */
#define PF__TIMER_LEAD_NS 100000u

/* Call fire(item) on the timer thread once the monotonic clock reaches
 * deadline_ns (pf__now_ns() scale), or up to PF__TIMER_LEAD_NS before it.
 * Returns PF_OK, PF_ESHUTDOWN once pf__timer_shutdown has begun, or
 * PF_ENOSPC when `capacity` items are pending; in both error cases
 * fire(item) will not be called. */
int pf__timer_add(pf__timer *t, uint64_t deadline_ns, void *item);

/* Fire every pending item now (deadline or not), make every later add fail
 * with PF_ESHUTDOWN, and join the thread.  The timer stays allocated, so
 * that other threads may still call pf__timer_add (and see PF_ESHUTDOWN)
 * until pf__timer_free.  Call it from one thread; a second call does
 * nothing.  NULL is fine. */
void pf__timer_shutdown(pf__timer *t);

/* Whether pf__timer_shutdown has begun (which fires every item early). */
bool pf__timer_stopping(pf__timer *t);

/* Shut the timer down if it is not yet, then free it.  No other thread may
 * use it any more.  NULL is fine. */
void pf__timer_free(pf__timer *t);

/* The server's delayed answers that were queued before they were due, a stop
 * aside: 0 unless the timer's lead is not waited out.  For the tests. */
uint64_t pf__server_early_answers(const pf_server *s);

#endif /* PF_SERVE_INTERNAL_H */
