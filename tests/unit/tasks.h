/*
 * Task functions shared by the executor tests.  Each is registered, so the
 * same tests can run them by name.
 */
#ifndef PF_TEST_TASKS_H
#define PF_TEST_TASKS_H

#include <stdint.h>

#include "test.h"

/* int64 -> int64 square. */
int task_square(pf_task *t, const void *arg, size_t len);
/* Returns nothing. */
int task_noop(pf_task *t, const void *arg, size_t len);
/* Sleeps the int32 number of milliseconds in arg, returns it. */
int task_sleep_ms(pf_task *t, const void *arg, size_t len);
/* Fails with pf_task_fail(t, 42, "bad input %d", x). */
int task_fail(pf_task *t, const void *arg, size_t len);
/* Returns its argument's value as a plain non-zero code. */
int task_return_code(pf_task *t, const void *arg, size_t len);
/* Result of uint64 size n, byte i = (i * 7 + 3) & 0xff; writes in place. */
int task_sized_result(pf_task *t, const void *arg, size_t len);
/* Checks the argument's bytes follow the same pattern, returns its length. */
int task_check_arg(pf_task *t, const void *arg, size_t len);
/* Returns getpid() as int32. */
int task_getpid(pf_task *t, const void *arg, size_t len);
/* Crashes as its int32 argument says (see crash_kind). */
int task_crash(pf_task *t, const void *arg, size_t len);
/* Returns pf_task_worker_index and the worker state's int as two int32. */
int task_worker_info(pf_task *t, const void *arg, size_t len);
/* Creates the file named by its argument (a C string), then returns 0. */
int task_touch(pf_task *t, const void *arg, size_t len);
/* Sleeps up to 10 s in 1 ms steps, returning early with 1 once cancelled. */
int task_wait_cancel(pf_task *t, const void *arg, size_t len);

enum crash_kind { CRASH_SEGV = 1, CRASH_ABORT, CRASH_EXIT7, CRASH_SIGKILL };

/* Submit one int32 argument. */
pf_future *submit_i32(pf_executor *ex, pf_task_fn fn, int32_t x);
/* The int32 result of f (asserts success). */
int32_t result_i32(pf_future *f);

/* A worker initializer that fails, returning INIT_FAIL_CODE. */
#define INIT_FAIL_CODE 5
int init_fails(void **state, const void *arg, size_t len, int index);

/* The three executor kinds every generic test runs on. */
#define FOR_EACH_KIND(name)  \
    TEST(name##_sequential)  \
    {                        \
        name(PF_SEQUENTIAL); \
    }                        \
    TEST(name##_threads)     \
    {                        \
        name(PF_THREADS);    \
    }                        \
    TEST(name##_processes)   \
    {                        \
        name(PF_PROCESSES);  \
    }

#define FOR_POOLS(name)     \
    TEST(name##_threads)    \
    {                       \
        name(PF_THREADS);   \
    }                       \
    TEST(name##_processes)  \
    {                       \
        name(PF_PROCESSES); \
    }

#endif
