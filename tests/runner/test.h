/*
 * pfor's test harness.
 *
 * A test is a function declared with TEST(name).  The runner (runner.c) starts
 * every test in its own process with a time limit, so a crash, a hang or a
 * failed assertion ends that test only.  After each test the runner also
 * fails it if a process it started is still alive or a /dev/shm object whose
 * name contains "pfor" was left behind.
 *
 * Assertions print both sides and the source line, then end the test.
 */
#ifndef PF_TEST_H
#define PF_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pfor/pfor.h"

typedef void (*pf_test_fn)(void);

void pf_test_register(const char *name, pf_test_fn fn, const char *file);
__attribute__((noreturn)) void pf_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
__attribute__((noreturn)) void pf_test_skip(const char *why);

/* The runner's time scale (PF_TEST_TIMEOUT_SCALE, >= 1; sanitizer builds set
 * it higher).  Tests scale their own waits with it, never their assertions. */
double pf_test_scale(void);
/* True when the tests run under valgrind (for the few checks of CPU time
 * that its own start-up costs would fail). */
bool pf_test_valgrind(void);

#define TEST(name)                                                    \
    static void name(void);                                           \
    __attribute__((constructor)) static void pf_test_reg_##name(void) \
    {                                                                 \
        pf_test_register(#name, name, __FILE__);                      \
    }                                                                 \
    static void name(void)

#define FAIL(...) pf_test_fail(__FILE__, __LINE__, __VA_ARGS__)
#define SKIP(why) pf_test_skip(why)

#define ASSERT(cond)                             \
    do {                                         \
        if (!(cond))                             \
            FAIL("assertion failed: %s", #cond); \
    } while (0)

#define ASSERT_EQ(a, b)                                                      \
    do {                                                                     \
        int64_t pf_a_ = (int64_t)(a), pf_b_ = (int64_t)(b);                  \
        if (pf_a_ != pf_b_)                                                  \
            FAIL("%s == %s: %" PRId64 " != %" PRId64, #a, #b, pf_a_, pf_b_); \
    } while (0)

#define ASSERT_NE(a, b)                                     \
    do {                                                    \
        int64_t pf_a_ = (int64_t)(a), pf_b_ = (int64_t)(b); \
        if (pf_a_ == pf_b_)                                 \
            FAIL("%s != %s: both %" PRId64, #a, #b, pf_a_); \
    } while (0)

#define ASSERT_LE(a, b)                                                     \
    do {                                                                    \
        int64_t pf_a_ = (int64_t)(a), pf_b_ = (int64_t)(b);                 \
        if (!(pf_a_ <= pf_b_))                                              \
            FAIL("%s <= %s: %" PRId64 " > %" PRId64, #a, #b, pf_a_, pf_b_); \
    } while (0)

#define ASSERT_GE(a, b) ASSERT_LE(b, a)

#define ASSERT_STREQ(a, b)                                                       \
    do {                                                                         \
        const char *pf_a_ = (a), *pf_b_ = (b);                                   \
        if (!pf_a_ || !pf_b_ || strcmp(pf_a_, pf_b_) != 0)                       \
            FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, pf_a_ ? pf_a_ : "(null)", \
                 pf_b_ ? pf_b_ : "(null)");                                      \
    } while (0)

/* rc must be PF_OK. */
#define ASSERT_OK(rc)                                                                  \
    do {                                                                               \
        int pf_rc_ = (rc);                                                             \
        if (pf_rc_ != 0)                                                               \
            FAIL("%s failed: %s (%s)", #rc, pf_err_name(pf_rc_), pf_strerror(pf_rc_)); \
    } while (0)

/* rc must be the pf error `code`. */
#define ASSERT_ERR(rc, code)                                                              \
    do {                                                                                  \
        int pf_rc_ = (rc), pf_want_ = (code);                                             \
        if (pf_rc_ != pf_want_)                                                           \
            FAIL("%s: got %s, want %s", #rc, pf_err_name(pf_rc_), pf_err_name(pf_want_)); \
    } while (0)

/* Test helpers shared by several test files (helpers.c). */

/* Number of live processes whose parent is `pid` (0 if none). */
int pf_test_count_children(int pid);
/* Names of /dev/shm entries containing `needle`, as a count. */
int pf_test_count_shm(const char *needle);
/* Sleep for `ms` milliseconds. */
void pf_test_sleep_ms(int ms);
/* pid is running or stopped: not a zombie, not gone (reads /proc/PID/stat). */
bool pf_test_pid_running(int pid);

#endif /* PF_TEST_H */
