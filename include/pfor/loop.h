/*
 * Loops over executors: map, parallel_for, parallel_reduce.
 *
 * These are the "parallelize this for loop" calls.  They work on every
 * executor kind, block the calling thread until the loop is over, and never
 * hold more than a bounded number of tasks in memory at once.
 */
#ifndef PFOR_LOOP_H
#define PFOR_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include "pfor/executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * map: fn over a stream of inputs.
 */

typedef struct pf_map_opts {
    /* Items per task.  0: automatic, sized so one task takes about a
     * millisecond (measured as the map runs) and every worker gets work. */
    size_t chunksize;
    /* Most tasks submitted and not yet emitted (0: 4 per worker).  This is
     * the bound that keeps a huge input out of memory.  Capped at the number
     * of items when it is known, and at 65,536. */
    size_t max_in_flight;
    /* Emit in completion order instead of input order. */
    bool unordered;
    /* Per-task (so per-chunk) time limit in seconds, at most 1e9 (0: the
     * executor's task_timeout).  Negative or NaN: PF_EINVAL. */
    double timeout;
} pf_map_opts;

/* The input stream: give item `index` (0, 1, 2, ...) in *arg and *len and return
 * 0, or return PF_EEOF after the last item.  The bytes are copied before the
 * next call.  Any other return stops the map with that code. */
typedef int (*pf_map_next_fn)(void *user, size_t index, const void **arg, size_t *len);

/* The output, called in the calling thread once per item: status 0 with the
 * item's result bytes (valid only during the call), or the item's error code
 * and message.  Return 0 to go on, non-zero to stop the map early (tasks
 * still out are cancelled as pf_future_cancel does: one not started never
 * runs, a running chunk stops before its next item on threads and with its
 * worker on a process pool; pf_map returns that value once all have settled). */
typedef int (*pf_map_emit_fn)(void *user, size_t index, int status, const void *data, size_t len,
                              const char *errmsg);

/* Run fn over every input.  Returns 0 if every item succeeded, else the error
 * code of the first item (in emit order) that failed, or what stopped it. */
PF_EXTERN int pf_map(pf_executor *ex, pf_task_fn fn, pf_map_next_fn next, pf_map_emit_fn emit,
                     void *user, const pf_map_opts *opts);

/* pf_map over n items of item_size bytes each, stored contiguously. */
PF_EXTERN int pf_map_array(pf_executor *ex, pf_task_fn fn, const void *items, size_t n,
                           size_t item_size, pf_map_emit_fn emit, void *user,
                           const pf_map_opts *opts);

/*
 * parallel_for and parallel_reduce over an index range [begin, end).
 */

typedef enum pf_schedule {
    PF_SCHEDULE_AUTO = 0,    /* dynamic with an automatic chunk */
    PF_SCHEDULE_STATIC = 1,  /* one contiguous block per worker */
    PF_SCHEDULE_DYNAMIC = 2, /* workers take `chunk` iterations at a time */
    PF_SCHEDULE_GUIDED = 3   /* chunks shrink from remaining/workers down to `chunk` */
} pf_schedule;

typedef struct pf_for_opts {
    pf_schedule schedule;
    /* Iterations per chunk (dynamic, guided minimum); 0: automatic.  Any
     * value works: one at least the range's size means a single chunk. */
    size_t chunk;
    /* Ranges of at most `grain` iterations run inline in the caller, so tiny
     * loops are not slower than the plain loop.  0: automatic (threads and
     * sequential): the caller runs a few iterations alone, in doubling
     * pieces, until it can tell how long the rest takes, and finishes the
     * loop inline when that is less than waking the pool would cost (about
     * 30 us).  On processes the caller never runs the body. */
    size_t grain;
} pf_for_opts;

/* The loop body over a sub-range [begin, end).  Return 0, or an error code
 * that stops the loop (no new chunk starts; pf_parallel_for returns it). */
typedef int (*pf_for_fn)(size_t begin, size_t end, void *ctx);

/* Run body over [begin, end) split into chunks.  On threads and sequential
 * executors `ctx` is passed as is and the calling thread takes part.  On a
 * process pool, ctx_len > 0 copies ctx's bytes to each task and the body
 * gets a pointer to that copy (its writes stay in the worker: use
 * pf_parallel_reduce or a shared dict to bring results back); ctx_len 0
 * passes the pointer unchanged, for memory the workers can see.
 *
 * Time limits: the executor's task_timeout bounds each call of the body (one
 * chunk, or one static block), never the whole loop.  On processes an
 * overrunning call is killed with its worker; on threads it cannot be, so it
 * runs to its end.  Either way the loop then starts no new chunk and returns
 * PF_ETASKTIMEOUT (with pf_parallel_reduce, `acc` is then incomplete).  It
 * returns only after every call of the body has returned.  The sequential
 * executor has no time limits.  Use a smaller chunk for a long loop on an
 * executor with a tight task_timeout.
 *
 * Errors: PF_EINVAL (begin > end, no body, ctx_len without ctx, a bad
 * schedule), PF_ESHUTDOWN after pf_executor_shutdown and PF_EINITFAILED once
 * a worker initializer has failed (as for pf_submit; no call of the body
 * runs), PF_ETOOBIG for a ctx_len over the executor's argument limit
 * (processes, MPI), or the first code a call of the body returned (the calls
 * running then still run to their end; no new one starts). */
PF_EXTERN int pf_parallel_for(pf_executor *ex, size_t begin, size_t end, pf_for_fn body, void *ctx,
                              size_t ctx_len, const pf_for_opts *opts);

/* Reduction body: fold [begin, end) into `acc` (acc_size bytes, starting as a
 * copy of the identity the caller passed in). */
typedef int (*pf_reduce_fn)(size_t begin, size_t end, const void *ctx, void *acc);
/* Combine `other` into `acc`; must be associative. */
typedef void (*pf_combine_fn)(void *acc, const void *other);

/* Like pf_parallel_for, but each chunk folds into its own accumulator and the
 * accumulators are combined in the caller: `acc` holds the identity on entry
 * and the result on return.  Works the same on every kind. */
PF_EXTERN int pf_parallel_reduce(pf_executor *ex, size_t begin, size_t end, pf_reduce_fn body,
                                 const void *ctx, size_t ctx_len, void *acc, size_t acc_size,
                                 pf_combine_fn combine, const pf_for_opts *opts);

#ifdef __cplusplus
}
#endif
#endif /* PFOR_LOOP_H */
