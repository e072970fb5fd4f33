/*
 * Thin wrappers over the synchronisation primitives.
 *
 * Mutex and condition variable calls abort when pthreads reports an error:
 * that only happens when memory is corrupt (libuv does the same).  Debug
 * builds use error-checking mutexes so that a relock or a foreign unlock is
 * caught at once.  Futexes are used where a waiter sleeps on a 32-bit word
 * that lives in shared memory or in a hot object (a future's state).
 */
#ifndef PF_PLATFORM_SYNC_H
#define PF_PLATFORM_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef pthread_mutex_t pf__mutex;
typedef pthread_cond_t pf__cond;

void pf__mutex_init(pf__mutex *m);
void pf__mutex_destroy(pf__mutex *m);
void pf__mutex_lock(pf__mutex *m);
void pf__mutex_unlock(pf__mutex *m);

/* Condition variables use the monotonic clock. */
void pf__cond_init(pf__cond *c);
void pf__cond_destroy(pf__cond *c);
void pf__cond_wait(pf__cond *c, pf__mutex *m);
/* Wait until the absolute monotonic deadline (ns; UINT64_MAX = forever).
 * Returns false on timeout. */
bool pf__cond_wait_until(pf__cond *c, pf__mutex *m, uint64_t deadline_ns);
void pf__cond_signal(pf__cond *c);
void pf__cond_broadcast(pf__cond *c);

/* Sleep while *word == expected, until woken or the absolute monotonic
 * deadline (UINT64_MAX = forever).  May return spuriously: callers re-check.
 * `shared` selects a futex usable across processes (the word lives in shared
 * memory); otherwise the cheaper process-private futex is used. */
void pf__futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns, bool shared);
/* Wake up to n sleepers on word (n = INT32_MAX: all). */
void pf__futex_wake(_Atomic uint32_t *word, int n, bool shared);

/* A CPU hint for spin-wait loops. */
static inline void pf__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spin, then sleep.  A thread about to sleep until another thread acts
 * first polls for up to pf__spin_budget_ns(): a wake-up across CPUs costs
 * 20-50 us on a virtual machine, a poll of a cache line well under one, so
 * a waiter that is still spinning when the event comes saves both the
 * sleeper's and the waker's system call (the waker sees nobody asleep).
 * OpenMP runtimes do the same (OMP_WAIT_POLICY, GOMP_SPINCOUNT).
 *
 * Budget: PFOR_SPIN_NS from the environment (decimal digits, capped at
 * 10 ms; 0 turns spinning off), else 50 us; always 0 on a single CPU,
 * where spinning only delays the thread that would act.  The spin yields
 * the CPU every few polls, so a spinner never keeps a runnable thread off
 * a core for long (2-core machines run more threads than cores: a
 * submitter, workers, a collector). */
uint64_t pf__spin_budget_ns(void);

/* Poll ready(ctx) until it returns true (then return true) or the budget or
 * the absolute deadline (UINT64_MAX: none) runs out (return false). */
bool pf__spin_until(bool (*ready)(void *ctx), void *ctx, uint64_t deadline_ns);

/* Wait for the monotonic clock to reach deadline_ns without sleeping in the
 * kernel (for the last 100-250 us before a deadline that a sleep would
 * overshoot by 50-100 us), yielding the CPU between reads of the clock: a
 * pure spin keeps a thread that was just woken off a 2-CPU machine's other
 * core, and on the mock server that is the client waiting for the answer
 * (the 20 ms efficiency of `pfor compare` measured 0.975-0.984 spinning,
 * 0.980-0.986 yielding, processes). */
void pf__yield_until_ns(uint64_t deadline_ns);

#endif /* PF_PLATFORM_SYNC_H */
