/*
 * Executors and futures: concurrent.futures for C.
 *
 *     pf_executor *ex;
 *     pf_executor_create(&ex, PF_PROCESSES, NULL);      // or PF_THREADS, PF_SEQUENTIAL
 *     pf_future *f;
 *     pf_submit(ex, square, &x, sizeof x, &f);
 *     const void *res; size_t len;
 *     if (pf_future_result(f, PF_FOREVER, &res, &len) == 0) ...
 *     pf_future_release(f);
 *     pf_executor_destroy(ex);
 *
 * The same task function and the same submission code run on every kind;
 * switching is the kind argument.  See docs/design.md for how a task travels
 * to a worker and back on each kind, and the fork rule of the process pool.
 *
 * Ownership: every pf_future returned to the caller is one reference, dropped
 * with pf_future_release().  Futures stay valid after their executor is
 * destroyed.  All functions are thread-safe unless said otherwise.
 */
#ifndef PFOR_EXECUTOR_H
#define PFOR_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pfor/error.h"
#include "pfor/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Wait without a time limit (any negative timeout means the same; a NaN
 * timeout is PF_EINVAL wherever a call takes one). */
#define PF_FOREVER (-1.0)

/* The most workers an executor may have. */
#define PF_MAX_WORKERS 1024

typedef struct pf_executor pf_executor;
typedef struct pf_future pf_future;

typedef enum pf_kind {
    PF_SEQUENTIAL = 1, /* runs each task in the submitting thread, at submit */
    PF_THREADS = 2,    /* a pool of pthreads */
    PF_PROCESSES = 3,  /* a pool of worker processes forked from a fork server */
    PF_MPI = 4         /* workers on MPI ranks (see pfor/mpi.h) */
} pf_kind;

/* Runs once in each worker before its first task.  `*state` is what tasks get
 * from pf_task_worker_state().  Return 0, or any non-zero code: the executor
 * is then broken, and every pending and later task fails with
 * PF_EINITFAILED (pf_error_info.task_code holds the code). */
typedef int (*pf_worker_init_fn)(void **state, const void *arg, size_t arg_len, int worker_index);
/* Runs once in each worker after its last task (also when a process worker is
 * recycled), with the state its initializer made.  Not run in a worker that
 * dies or is killed. */
typedef void (*pf_worker_fini_fn)(void *state, int worker_index);

/* Counters of an executor's tasks, for progress bars. */
typedef struct pf_progress {
    uint64_t submitted; /* tasks submitted so far */
    uint64_t running;   /* tasks running now */
    uint64_t done;      /* tasks finished, whatever their outcome */
    uint64_t failed;    /* of `done`: tasks that ended in an error */
    uint64_t cancelled; /* of `done`: tasks cancelled */
} pf_progress;

/* Called after each task finishes, from the thread that completed it (a pool
 * thread, the thread pool's watchdog for a task that overran its time limit,
 * or the process pool's collector thread).  Keep it short and non-blocking. */
typedef void (*pf_progress_fn)(const pf_progress *p, void *user);

/* max_workers value that asks for the kind's default (Python's None). */
#define PF_DEFAULT_WORKERS (-1)

/* Executor options.  Zero means "the default" for every field but
 * max_workers, where 0 is an error as in Python: say PF_DEFAULT_WORKERS, or
 * pass NULL options.  `pf_executor_opts o = {.max_workers = 4};` is a
 * complete set; so is PF_EXECUTOR_OPTS_DEFAULT. */
typedef struct pf_executor_opts {
    /* Workers, 1 .. PF_MAX_WORKERS, or PF_DEFAULT_WORKERS: like Python,
     * threads min(32, cores + 4), processes and MPI: cores. */
    int max_workers;
    pf_worker_init_fn initializer;
    const void *init_arg; /* copied at create */
    size_t init_arg_len;
    pf_worker_fini_fn finalizer;
    /* Processes: replace a worker after it ran this many tasks (0: never). */
    unsigned max_tasks_per_child;
    /* Hard time limit in seconds for every task (0: none).  Processes kill an
     * overrunning task with its worker; threads flag it pf_task_cancelled()
     * at the deadline, then fail its future with PF_ETASKTIMEOUT from the
     * pool's watchdog thread (its done-callbacks run there) and drop the
     * task's late result. */
    double task_timeout;
    /* Processes: rerun a task whose worker died up to this many times. */
    unsigned max_retries;
    pf_progress_fn progress;
    void *progress_user;
} pf_executor_opts;

/* Every option at its default. */
#define PF_EXECUTOR_OPTS_DEFAULT ((pf_executor_opts){.max_workers = PF_DEFAULT_WORKERS})

/* Start the process pool's fork server now, while the program is still
 * single-threaded.  Call it first thing in main() in a program that starts
 * threads (libcurl, a thread pool) before it creates its first process
 * pool; otherwise the first process pool starts it.  Workers see the
 * program's memory as it was when the fork server started.  Idempotent. */
PF_EXTERN int pf_init(void);
/* Stop the fork server started by pf_init() once no process pool uses it. */
PF_EXTERN void pf_fini(void);

/* Create an executor.  `opts` may be NULL (all defaults).  PF_EINVAL for an
 * unknown kind, max_workers 0, below -1 or above PF_MAX_WORKERS; PF_EFORKUNSAFE for a process pool
 * when the program already runs threads and pf_init() was not called. */
PF_EXTERN int pf_executor_create(pf_executor **out, pf_kind kind, const pf_executor_opts *opts);

/* Stop accepting tasks.  With cancel_futures, pending tasks are cancelled
 * (their futures end PF_ECANCELLED).  With wait, return after every running
 * and pending task has finished and the workers have exited (also when
 * another thread's shutdown is still cancelling futures, or a task destroyed
 * the pool meanwhile).  Calling it again is harmless.  A task or
 * done-callback running on one of the pool's own threads (a worker or the
 * thread pool's watchdog, the process pool's collector), or a thread pool's
 * done-callback that a shutdown(cancel_futures) runs for a future it
 * cancels, cannot wait for the pool: the pool stops as asked and the call
 * returns PF_EBUSY. */
PF_EXTERN int pf_executor_shutdown(pf_executor *ex, bool wait, bool cancel_futures);

/* Shut down (wait, do not cancel) and free everything: threads, processes,
 * shared memory.  NULL is a no-op.  It may be called from a task or
 * done-callback of the same executor, but never waits for the thread it runs
 * on: from a thread pool's worker it waits for the other workers, from its
 * watchdog (callbacks of timed-out tasks) for none; the threads left finish
 * the queued tasks and leave on their own, and the memory goes with the
 * last of them. */
PF_EXTERN void pf_executor_destroy(pf_executor *ex);

/* The executor's kind; 0 (no kind) for NULL. */
PF_EXTERN pf_kind pf_executor_kind(const pf_executor *ex);
/* Its worker count (PF_DEFAULT_WORKERS resolved); PF_EINVAL for NULL. */
PF_EXTERN int pf_executor_max_workers(const pf_executor *ex);
/* A snapshot of its task counters (done <= submitted always holds in it);
 * PF_EINVAL for NULL arguments, with *out zeroed when out is not NULL. */
PF_EXTERN int pf_executor_progress(const pf_executor *ex, pf_progress *out);

/* The default worker count of a kind on this machine; PF_EINVAL for a value
 * that is not a kind. */
PF_EXTERN int pf_default_workers(pf_kind kind);
/* "sequential", "threads", "processes", "mpi" <-> pf_kind. */
PF_EXTERN const char *pf_kind_name(pf_kind kind);
PF_EXTERN int pf_kind_parse(const char *name, pf_kind *out);

/* Per-submission options; zero means the executor's default. */
typedef struct pf_submit_opts {
    double timeout;  /* seconds; < 0: no limit for this task */
    int max_retries; /* < 0: none for this task */
} pf_submit_opts;

/* Submit fn(arg).  The `arg_len` bytes are copied before return.  `out` may
 * be NULL when the caller does not want the future.  PF_ESHUTDOWN after
 * shutdown, PF_EINITFAILED once a worker initializer has failed (a task
 * accepted is always run or failed), PF_EINVAL for a NULL fn or a NULL arg
 * with arg_len > 0, PF_ETOOBIG for an argument over the kind's limit
 * (processes: 4 GiB; MPI: 2 GiB), refused before any byte of it is read. */
PF_EXTERN int pf_submit(pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len,
                        pf_future **out);
/* pf_submit with per-task options (NULL: the executor's defaults).  A
 * timeout or max_retries out of range (NaN, over 1e9 s, more than 1,000,000
 * retries) is PF_EINVAL. */
PF_EXTERN int pf_submit_ex(pf_executor *ex, pf_task_fn fn, const void *arg, size_t arg_len,
                           const pf_submit_opts *opts, pf_future **out);
/* Submit a registered task by name.  PF_EINVAL for the arguments pf_submit
 * refuses and for a NULL name, checked before the name is looked up; then
 * PF_ENOTREG if it is not registered. */
PF_EXTERN int pf_submit_named(pf_executor *ex, const char *name, const void *arg, size_t arg_len,
                              pf_future **out);

/*
 * Futures.
 */

/* Why a future failed. */
typedef struct pf_error_info {
    int code;          /* PF_OK, or the future's error code */
    int task_code;     /* PF_ETASK: the code the task gave pf_task_fail() or returned */
    int worker_index;  /* the worker that ran (or was running) the task, or -1 */
    int pid;           /* that worker's pid for process pools, else 0 */
    int signal;        /* PF_EWORKERDIED/PF_ETASKTIMEOUT: the signal that ended it, or 0 */
    int exit_status;   /* PF_EWORKERDIED: exit status when it exited, else -1 */
    char message[256]; /* the task's or the executor's message ("" if none) */
} pf_error_info;

/* Wait up to `timeout` seconds and give the result: 0 with *data and *len set (the
 * bytes belong to the future and stay valid until it is released; data may
 * be NULL with len 0), or the future's error (PF_ETASK, PF_EWORKERDIED,
 * PF_ETASKTIMEOUT, PF_ECANCELLED, ...), or PF_ETIMEDOUT if it is not done in
 * time.  A task that failed gives PF_ETASK (pf_future_error() has its own
 * code and message).  May be called any number of times.  data/len may be
 * NULL. */
PF_EXTERN int pf_future_result(pf_future *f, double timeout, const void **data, size_t *len);

/* Like pf_future_result(), but hands the bytes over: *data is malloc()ed and
 * the caller frees it.  A second take gives PF_EALREADY. */
PF_EXTERN int pf_future_take(pf_future *f, double timeout, void **data, size_t *len);

/* Wait up to `timeout` seconds: 0 once done, else PF_ETIMEDOUT. */
PF_EXTERN int pf_future_wait(pf_future *f, double timeout);

/* State queries, never blocking; false for NULL.  done: finished, whatever
 * the outcome (cancelled included); running: its task runs now; cancelled:
 * done by cancellation. */
PF_EXTERN bool pf_future_done(const pf_future *f);
PF_EXTERN bool pf_future_running(const pf_future *f);
PF_EXTERN bool pf_future_cancelled(const pf_future *f);

/* The error details of a done future (code PF_OK if it succeeded).
 * PF_EBUSY if the future is not done yet. */
PF_EXTERN int pf_future_error(const pf_future *f, pf_error_info *info);

/* Cancel.  A pending task never runs; a running process-pool task is stopped
 * by killing and replacing its worker.  0 if the future is now cancelled,
 * PF_EBUSY if it cannot be: done already, or running on threads (the task
 * is flagged pf_task_cancelled() and may stop early). */
PF_EXTERN int pf_future_cancel(pf_future *f);

/* Call cb(f, user) once f is done: in the thread that completes it (on a
 * thread pool: the worker, or the pool's watchdog for a task that overran its
 * time limit), or at once in this thread if f is done and its callbacks have
 * all run.  Callbacks run one at a time, in the order they were added: one
 * added while another thread still runs f's earlier callbacks (or by one of
 * them) is run by that thread after them, so a callback must not wait for one
 * added after it.  A callback must return: it runs on a thread of pfor's (a
 * pool's worker or watchdog), which it must not end (pthread_exit) or leave
 * by longjmp. */
typedef void (*pf_done_fn)(pf_future *f, void *user);
PF_EXTERN int pf_future_add_done_callback(pf_future *f, pf_done_fn cb, void *user);

/* Take one more reference / drop one.  release(NULL) is a no-op. */
PF_EXTERN pf_future *pf_future_retain(pf_future *f);
PF_EXTERN void pf_future_release(pf_future *f);

/*
 * Waiting on many futures.
 */

typedef enum pf_return_when {
    PF_ALL_COMPLETED = 0,
    PF_FIRST_COMPLETED = 1,
    PF_FIRST_EXCEPTION = 2 /* first to end in an error (not cancelled); else all */
} pf_return_when;

/* Wait until the condition holds for fs[0..n) or `timeout` passes.  0 if it
 * holds, PF_ETIMEDOUT if not.  *n_done (may be NULL) is how many are done. */
PF_EXTERN int pf_wait(pf_future *const *fs, size_t n, pf_return_when when, double timeout,
                      size_t *n_done);

/* An as_completed set: futures come out in the order they finish, each once.
 * Backed by a completion queue: each finished future costs O(1), whatever the
 * size of the set.  The set holds its own reference on every future. */
typedef struct pf_as_completed pf_as_completed;

/* A set of fs[0..n) (n may be 0: add later).  PF_EINVAL for a NULL out, a
 * NULL fs with n > 0, or a future listed twice. */
PF_EXTERN int pf_as_completed_create(pf_as_completed **out, pf_future *const *fs, size_t n);
/* Add one more future (PF_EINVAL if it is in the set already). */
PF_EXTERN int pf_as_completed_add(pf_as_completed *ac, pf_future *f);
/* The next finished future (borrowed: valid while the set lives), PF_EEOF
 * once every future has come out, PF_ETIMEDOUT if none finished in time. */
PF_EXTERN int pf_as_completed_next(pf_as_completed *ac, double timeout, pf_future **f);
/* Drop the set and its references (futures that did not come out are left
 * running).  NULL is a no-op. */
PF_EXTERN void pf_as_completed_destroy(pf_as_completed *ac);

#ifdef __cplusplus
}
#endif
#endif /* PFOR_EXECUTOR_H */
