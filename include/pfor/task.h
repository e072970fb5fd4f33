/*
 * Tasks: the unit of work every executor runs, and the registry that names
 * them.
 *
 * A task is a function plus argument bytes.  It runs in a worker (the calling
 * thread, a pool thread, a pool process or an MPI rank) and produces result
 * bytes of any size, or an error: a code and a message.
 *
 *     static int square(pf_task *t, const void *arg, size_t len)
 *     {
 *         int64_t x;
 *         if (len != sizeof x)
 *             return pf_task_fail(t, PF_EINVAL, "want an int64, got %zu bytes", len);
 *         memcpy(&x, arg, sizeof x);
 *         x *= x;
 *         return pf_task_set_result(t, &x, sizeof x);
 *     }
 *     PF_REGISTER(square)   // optional for threads and processes, needed for MPI
 *
 * The argument bytes are the task's own copy: valid and unchanging for the
 * whole call, in every executor kind.  Nothing is serialized: on a process
 * pool the bytes travel through shared memory and the function pointer is
 * valid in the worker because workers are forked from the same binary.
 */
#ifndef PFOR_TASK_H
#define PFOR_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pfor/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The context of one running task.  Valid only during the task function. */
typedef struct pf_task pf_task;

/* A task function.  Return 0 for success (with or without a result set).
 * Any other return fails the task: its future gives PF_ETASK, and
 * pf_error_info.task_code is the returned value (message "task returned N")
 * unless pf_task_fail() set a code and message first. */
typedef int (*pf_task_fn)(pf_task *t, const void *arg, size_t arg_len);

/* Set the task's result to a copy of `len` bytes at `data` (data may be NULL
 * when len is 0).  Replaces an earlier result of the same task.  Returns
 * PF_ENOMEM (or PF_ENOSPC on a process pool) if the bytes do not fit; the task
 * may then fail or set a smaller result. */
PF_EXTERN int pf_task_set_result(pf_task *t, const void *data, size_t len);

/* Reserve a result of `len` bytes and return a pointer to write it in place
 * (no extra copy: on a process pool it points into shared memory).  NULL if
 * the space cannot be had; the task's result is then empty.  The pointer is
 * valid until the task function returns or the next result call. */
PF_EXTERN void *pf_task_result_buffer(pf_task *t, size_t len);

/* Fail the task with a code of the task's own choosing (an errno, an HTTP
 * status, a pf code: pf_error_info.task_code gives it back) and a
 * printf-style message (truncated to 255 bytes).  Returns PF_ETASK, so
 * `return pf_task_fail(t, ...)` reads naturally.  Any result set earlier is
 * discarded. */
PF_EXTERN int pf_task_fail(pf_task *t, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The state the executor's initializer returned for this worker (NULL if
 * there is no initializer).  One state per worker thread or process. */
PF_EXTERN void *pf_task_worker_state(pf_task *t);

/* This worker's index, 0 .. max_workers-1 (0 on the sequential executor).
 * A replacement process takes the index of the worker it replaces. */
PF_EXTERN int pf_task_worker_index(pf_task *t);

/* True once the task's future was cancelled or timed out while it runs.
 * Thread-pool tasks cannot be killed: long tasks should poll this and return
 * early.  (Process-pool tasks are killed instead.) */
PF_EXTERN bool pf_task_cancelled(const pf_task *t);

/*
 * The registry.  A registered function has a name, and an id (a 64-bit hash
 * of the name) that is the same in every process that runs the same program,
 * whether it was forked from the submitter or started separately (MPI ranks).
 * Registration is optional for threads and processes and required for MPI.
 */

/* Any function pointer, as stored by the registry. */
typedef void (*pf_fn)(void);

/* Register `fn` under `name` (copied; at most 127 bytes).  Registering the
 * same pair twice is a no-op; a name taken by another function gives
 * PF_EEXIST.  Names starting with "pf." are the library's own (PF_EINVAL).
 * Thread-safe. */
PF_EXTERN int pf_register(const char *name, pf_fn fn);

/* Look `name` up.  PF_ENOTFOUND if it is not registered. */
PF_EXTERN int pf_lookup(const char *name, pf_fn *fn);

/* Look a registered id up (see pf_registered_id). */
PF_EXTERN int pf_lookup_id(uint64_t id, pf_fn *fn);

/* The name and id a function was registered under.  PF_ENOTREG if none. */
PF_EXTERN int pf_registered_name(pf_fn fn, const char **name, uint64_t *id);

/* Register a function under its own name before main() runs, in every
 * process of the program.  Put it at file scope after the definition. */
#define PF_REGISTER(fn)                                              \
    __attribute__((constructor)) static void pf__register_##fn(void) \
    {                                                                \
        (void)pf_register(#fn, (pf_fn)(fn));                         \
    }

#ifdef __cplusplus
}
#endif
#endif /* PFOR_TASK_H */
