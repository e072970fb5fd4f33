/*
 * pthread and futex wrappers (see sync.h).
 */
#include "platform/sync.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void pf__mutex_init(pf__mutex *m)
{
    pthread_mutexattr_t a;
    PF__CHECK(pthread_mutexattr_init(&a) == 0);
#ifndef NDEBUG
    PF__CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK) == 0);
#else
    /* Our critical sections are a few dozen instructions: spin a little on
     * a held lock before sleeping in the kernel (glibc's adaptive mutex). */
    PF__CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP) == 0);
#endif
    PF__CHECK(pthread_mutex_init(m, &a) == 0);
    pthread_mutexattr_destroy(&a);
}

void pf__mutex_destroy(pf__mutex *m)
{
    PF__CHECK(pthread_mutex_destroy(m) == 0);
}

void pf__mutex_lock(pf__mutex *m)
{
    PF__CHECK(pthread_mutex_lock(m) == 0);
}

void pf__mutex_unlock(pf__mutex *m)
{
    PF__CHECK(pthread_mutex_unlock(m) == 0);
}

void pf__cond_init(pf__cond *c)
{
    pthread_condattr_t a;
    PF__CHECK(pthread_condattr_init(&a) == 0);
    PF__CHECK(pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0);
    PF__CHECK(pthread_cond_init(c, &a) == 0);
    pthread_condattr_destroy(&a);
}

void pf__cond_destroy(pf__cond *c)
{
    PF__CHECK(pthread_cond_destroy(c) == 0);
}

void pf__cond_wait(pf__cond *c, pf__mutex *m)
{
    PF__CHECK(pthread_cond_wait(c, m) == 0);
}

bool pf__cond_wait_until(pf__cond *c, pf__mutex *m, uint64_t deadline_ns)
{
    if (deadline_ns == UINT64_MAX) {
        pf__cond_wait(c, m);
        return true;
    }
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    int rc = pthread_cond_timedwait(c, m, &ts);
    PF__CHECK(rc == 0 || rc == ETIMEDOUT);
    return rc == 0;
}

void pf__cond_signal(pf__cond *c)
{
    PF__CHECK(pthread_cond_signal(c) == 0);
}

void pf__cond_broadcast(pf__cond *c)
{
    PF__CHECK(pthread_cond_broadcast(c) == 0);
}

void pf__futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns, bool shared)
{
    int op = FUTEX_WAIT_BITSET | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != UINT64_MAX) {
        ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
        ts.tv_nsec = (long)(deadline_ns % 1000000000u);
        tsp = &ts; /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time */
    }
    long rc = syscall(SYS_futex, word, op, expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
    PF__CHECK(rc == 0 || errno == EAGAIN || errno == EINTR || errno == ETIMEDOUT);
}

void pf__futex_wake(_Atomic uint32_t *word, int n, bool shared)
{
    int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    long rc = syscall(SYS_futex, word, op, n, NULL, NULL, 0);
    PF__CHECK(rc >= 0);
}

static uint64_t spin_budget;
static pthread_once_t spin_once = PTHREAD_ONCE_INIT;

static void spin_budget_init(void)
{
    uint64_t ns = 50000;
    const char *env = getenv("PFOR_SPIN_NS");
    /* Digits only: strtoull would take "-1" for ULLONG_MAX (the 10 ms cap). */
    if (env && *env >= '0' && *env <= '9') {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0')
            ns = v < 10000000ull ? (uint64_t)v : 10000000u; /* at most 10 ms */
    }
    spin_budget = pf__ncpus() > 1 ? ns : 0;
}

uint64_t pf__spin_budget_ns(void)
{
    pthread_once(&spin_once, spin_budget_init);
    return spin_budget;
}

bool pf__spin_until(bool (*ready)(void *ctx), void *ctx, uint64_t deadline_ns)
{
    uint64_t budget = pf__spin_budget_ns();
    if (budget == 0)
        return false;
    uint64_t end = pf__now_ns() + budget;
    if (end > deadline_ns)
        end = deadline_ns;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (ready(ctx))
                return true;
            pf__cpu_relax();
        }
        if (pf__now_ns() >= end)
            return ready(ctx);
        sched_yield(); /* let a runnable thread on this CPU (the one we wait for) go first */
    }
}

void pf__yield_until_ns(uint64_t deadline_ns)
{
    while (pf__now_ns() < deadline_ns)
        sched_yield();
}
