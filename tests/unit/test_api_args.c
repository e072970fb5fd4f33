/*
 * Argument checks of the whole public API: every PF_EXTERN function of the
 * headers in include/pfor/ (but mpi.h, whose functions live in pfor_mpi_static
 * and need mpirun) is called with each kind of bad argument its header
 * documents or implies: NULL handles and out-pointers, NULL buffers with a
 * non-zero length, zero/negative/NaN/inf/huge counts and timeouts, unknown
 * enum values, names/keys/values over their limits, and a handle of the wrong
 * kind (an executor passed as a future and back: both start with a magic
 * word).  Each call must return the documented code (pf_strerror describes
 * it), leave documented out-pointers NULL/0, and neither crash nor hang.
 *
 * No Redis, HTTP or mock server is started: their functions are checked only
 * on arguments refused before any connection.
 *
 * The five TESTs after a function's name (default_workers_of_a_bad_kind,
 * nan_timeouts_are_refused, failed_result_buffer_empties_the_result,
 * map_huge_max_in_flight_is_capped, dict_get_i64_long_key_is_etoobig) failed
 * when this file was written and were fixed in the library.
 */
#include <math.h>
#include <stdint.h>

#include "tasks.h"

/* The code has a name and a description. */
static void described(int code)
{
    const char *s = pf_strerror(code);
    ASSERT(s != NULL && s[0] != '\0');
    ASSERT(strcmp(s, "unknown error") != 0);
    ASSERT(strcmp(pf_err_name(code), "PF_E?") != 0);
}

/* `call` must return `code`, a described error. */
#define ASSERT_BAD(call, code)    \
    do {                          \
        ASSERT_ERR((call), code); \
        described(code);          \
    } while (0)

#define POISON ((void *)(uintptr_t)0x5a5a5a5a)

static pf_executor *make(pf_kind kind, int workers)
{
    pf_executor *ex = NULL;
    pf_executor_opts o = {.max_workers = workers};
    ASSERT_OK(pf_executor_create(&ex, kind, &o));
    return ex;
}

static pf_future *sleeper(pf_executor *ex, int32_t ms)
{
    pf_future *f = NULL;
    ASSERT_OK(pf_submit(ex, task_sleep_ms, &ms, sizeof ms, &f));
    return f;
}

static void noop_cb(pf_future *f, void *user)
{
    (void)f;
    (void)user;
}

/* A string of n copies of c (malloc()ed). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    ASSERT(s != NULL);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------------ error.h -- */

TEST(api_args_error)
{
    const int odd[] = {1, 12345, INT32_MAX, INT32_MIN, PF__ERRNO_LAST, -1000};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        ASSERT_STREQ(pf_strerror(odd[i]), "unknown error");
        ASSERT_STREQ(pf_err_name(odd[i]), "PF_E?");
    }
    for (int code = 0; code > PF__ERRNO_LAST; code--) {
        ASSERT(pf_strerror(code)[0] != '\0');
        ASSERT(pf_err_name(code)[0] != '\0');
    }
}

/* --------------------------------------------------------- executor.h -- */

TEST(api_args_executor_create)
{
    pf_executor *ex = POISON;
    ASSERT_BAD(pf_executor_create(NULL, PF_THREADS, NULL), PF_EINVAL);
    const int kinds[] = {0, 5, -1, 99, INT32_MAX};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        ex = POISON;
        ASSERT_BAD(pf_executor_create(&ex, (pf_kind)kinds[i], NULL), PF_EINVAL);
        ASSERT(ex == NULL);
        pf_executor_opts o = {.max_workers = 2};
        ex = POISON;
        ASSERT_BAD(pf_executor_create(&ex, (pf_kind)kinds[i], &o), PF_EINVAL);
        ASSERT(ex == NULL);
    }
    const int workers[] = {0, -2, PF_MAX_WORKERS + 1, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof workers / sizeof workers[0]; i++) {
        pf_executor_opts o = {.max_workers = workers[i]};
        ex = POISON;
        ASSERT_BAD(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
        ASSERT(ex == NULL);
        ASSERT_BAD(pf_executor_create(&ex, PF_SEQUENTIAL, &o), PF_EINVAL);
    }
    const double timeouts[] = {-1.0, -INFINITY, NAN, INFINITY, 1e10};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        pf_executor_opts o = {.max_workers = 1, .task_timeout = timeouts[i]};
        ex = POISON;
        ASSERT_BAD(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
        ASSERT(ex == NULL);
    }
    pf_executor_opts o = {.max_workers = 1, .init_arg = NULL, .init_arg_len = 8};
    ASSERT_BAD(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    ASSERT(ex == NULL);
    static char big_init[1];
    o = (pf_executor_opts){.max_workers = 1, .init_arg = big_init, .init_arg_len = (64u << 20) + 1};
    ASSERT_BAD(pf_executor_create(&ex, PF_THREADS, &o), PF_ETOOBIG); /* refused before the copy */
    o = (pf_executor_opts){.max_workers = 1, .max_retries = 1000001};
    ASSERT_BAD(pf_executor_create(&ex, PF_THREADS, &o), PF_EINVAL);
    /* PF_MPI is not linked into this binary */
    ex = POISON;
    ASSERT_BAD(pf_executor_create(&ex, PF_MPI, NULL), PF_ENOTSUP);
    ASSERT(ex == NULL);

    /* the other executor functions on NULL */
    pf_progress p;
    ASSERT_BAD(pf_executor_shutdown(NULL, true, false), PF_EINVAL);
    pf_executor_destroy(NULL);
    ASSERT_EQ(pf_executor_kind(NULL), 0);
    ASSERT_BAD(pf_executor_max_workers(NULL), PF_EINVAL);
    ASSERT_BAD(pf_executor_progress(NULL, &p), PF_EINVAL);

    /* names of kinds */
    ASSERT_STREQ(pf_kind_name((pf_kind)0), "unknown");
    ASSERT_STREQ(pf_kind_name((pf_kind)-7), "unknown");
    pf_kind k;
    ASSERT_BAD(pf_kind_parse(NULL, &k), PF_EINVAL);
    ASSERT_BAD(pf_kind_parse("threads", NULL), PF_EINVAL);
    ASSERT_BAD(pf_kind_parse("", &k), PF_EINVAL);
    ASSERT_BAD(pf_kind_parse("bogus", &k), PF_EINVAL);
    ASSERT_BAD(pf_kind_parse("threads ", &k), PF_EINVAL);
    ASSERT_GE(pf_default_workers(PF_THREADS), 1);
}

TEST(api_args_default_workers_of_a_bad_kind)
{
    /* header: "The default worker count of a kind"; the API promise: bad input
     * is an error code.  An unknown kind gives 0 (== PF_OK), not PF_EINVAL. */
    ASSERT_BAD(pf_default_workers((pf_kind)0), PF_EINVAL);
    ASSERT_BAD(pf_default_workers((pf_kind)99), PF_EINVAL);
}

TEST(api_args_executor_submit_and_futures)
{
    pf_executor *ex = make(PF_THREADS, 2);
    pf_future *f = POISON;
    int64_t x = 3;
    static char byte;

    /* a future passed as an executor, NULL executor, NULL fn, NULL arg */
    pf_executor *wrong = NULL;
    pf_future *done = NULL;
    ASSERT_OK(pf_submit(ex, task_square, &x, sizeof x, &done));
    ASSERT_OK(pf_future_wait(done, PF_FOREVER));
    wrong = (pf_executor *)done;
    ASSERT_BAD(pf_submit(NULL, task_noop, NULL, 0, &f), PF_EINVAL);
    ASSERT(f == NULL);
    f = POISON;
    ASSERT_BAD(pf_submit(wrong, task_noop, NULL, 0, &f), PF_EINVAL);
    ASSERT(f == NULL);
    f = POISON;
    ASSERT_BAD(pf_submit(ex, NULL, NULL, 0, &f), PF_EINVAL);
    ASSERT(f == NULL);
    f = POISON;
    ASSERT_BAD(pf_submit(ex, task_noop, NULL, 8, &f), PF_EINVAL);
    ASSERT(f == NULL);
    ASSERT_BAD(pf_submit(ex, task_noop, NULL, SIZE_MAX, NULL), PF_EINVAL);
    ASSERT_BAD(pf_executor_shutdown(wrong, true, false), PF_EINVAL);
    pf_executor_destroy(wrong); /* not an executor: a no-op */
    ASSERT_EQ(pf_executor_kind(wrong), 0);
    ASSERT_BAD(pf_executor_max_workers(wrong), PF_EINVAL);
    pf_progress p;
    ASSERT_BAD(pf_executor_progress(wrong, &p), PF_EINVAL);
    ASSERT_BAD(pf_executor_progress(ex, NULL), PF_EINVAL);

    /* submit_ex: timeouts out of range */
    const double bad_t[] = {NAN, INFINITY, 1e10, -NAN};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) {
        pf_submit_opts so = {.timeout = bad_t[i]};
        f = POISON;
        ASSERT_BAD(pf_submit_ex(ex, task_noop, NULL, 0, &so, &f), PF_EINVAL);
        ASSERT(f == NULL);
    }
    /* submit_ex: more retries than pf_executor_opts allows */
    pf_submit_opts many = {.max_retries = 1000001};
    f = POISON;
    ASSERT_BAD(pf_submit_ex(ex, task_noop, NULL, 0, &many, &f), PF_EINVAL);
    ASSERT(f == NULL);
    ASSERT_BAD(pf_submit_ex(NULL, task_noop, NULL, 0, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_submit_ex(ex, NULL, NULL, 0, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_submit_ex(ex, task_noop, NULL, 1, NULL, NULL), PF_EINVAL);

    /* submit_named */
    f = POISON;
    ASSERT_BAD(pf_submit_named(ex, NULL, NULL, 0, &f), PF_EINVAL);
    ASSERT(f == NULL);
    f = POISON;
    ASSERT_BAD(pf_submit_named(ex, "no such task, surely", NULL, 0, &f), PF_ENOTREG);
    ASSERT(f == NULL);
    ASSERT_BAD(pf_submit_named(ex, "", NULL, 0, NULL), PF_ENOTREG);
    ASSERT_BAD(pf_submit_named(NULL, "task_noop", NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_submit_named(ex, "task_noop", NULL, 4, NULL), PF_EINVAL);

    /* futures: NULL and an executor passed as a future */
    pf_future *nf = (pf_future *)ex;
    pf_future *handles[] = {NULL, nf};
    for (size_t i = 0; i < 2; i++) {
        pf_future *h = handles[i];
        const void *data = POISON;
        size_t len = 77;
        ASSERT_BAD(pf_future_result(h, 0, &data, &len), PF_EINVAL);
        ASSERT(data == NULL);
        ASSERT_EQ(len, 0);
        void *taken = POISON;
        len = 77;
        ASSERT_BAD(pf_future_take(h, 0, &taken, &len), PF_EINVAL);
        ASSERT(taken == NULL);
        ASSERT_EQ(len, 0);
        ASSERT_BAD(pf_future_wait(h, 0), PF_EINVAL);
        ASSERT(!pf_future_done(h));
        ASSERT(!pf_future_running(h));
        ASSERT(!pf_future_cancelled(h));
        pf_error_info info;
        ASSERT_BAD(pf_future_error(h, &info), PF_EINVAL);
        ASSERT_BAD(pf_future_cancel(h), PF_EINVAL);
        ASSERT_BAD(pf_future_add_done_callback(h, noop_cb, NULL), PF_EINVAL);
        ASSERT(pf_future_retain(h) == NULL);
        pf_future_release(h); /* a no-op */
    }
    /* a real future with bad other arguments */
    void *taken = POISON;
    size_t len = 5;
    ASSERT_BAD(pf_future_take(done, 0, NULL, &len), PF_EINVAL);
    ASSERT_EQ(len, 0);
    ASSERT_BAD(pf_future_error(done, NULL), PF_EINVAL);
    ASSERT_BAD(pf_future_add_done_callback(done, NULL, NULL), PF_EINVAL);
    /* the bad calls took nothing: the result is still there, once */
    ASSERT_OK(pf_future_take(done, 0, &taken, &len));
    ASSERT_EQ(len, 8);
    free(taken);
    taken = POISON;
    ASSERT_BAD(pf_future_take(done, 0, &taken, NULL), PF_EALREADY);
    ASSERT(taken == NULL);

    /* a pending future: timeouts 0, negative-zero, tiny; error() is EBUSY */
    pf_future *slow = sleeper(ex, 400);
    ASSERT_BAD(pf_future_wait(slow, 0), PF_ETIMEDOUT);
    ASSERT_BAD(pf_future_wait(slow, -0.0), PF_ETIMEDOUT);
    ASSERT_BAD(pf_future_wait(slow, 1e-300), PF_ETIMEDOUT);
    const void *data = POISON;
    ASSERT_BAD(pf_future_result(slow, 0, &data, NULL), PF_ETIMEDOUT);
    ASSERT(data == NULL);
    pf_error_info info;
    ASSERT_BAD(pf_future_error(slow, &info), PF_EBUSY);

    /* pf_wait */
    size_t n_done = 77;
    ASSERT_BAD(pf_wait(NULL, 1, PF_ALL_COMPLETED, 0, &n_done), PF_EINVAL);
    ASSERT_EQ(n_done, 0);
    pf_future *with_null[] = {done, NULL};
    n_done = 77;
    ASSERT_BAD(pf_wait(with_null, 2, PF_ALL_COMPLETED, 0, &n_done), PF_EINVAL);
    ASSERT_EQ(n_done, 0);
    pf_future *with_wrong[] = {done, nf};
    ASSERT_BAD(pf_wait(with_wrong, 2, PF_FIRST_COMPLETED, 0, NULL), PF_EINVAL);
    pf_future *one[] = {done};
    ASSERT_BAD(pf_wait(one, 1, (pf_return_when)3, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_wait(one, 1, (pf_return_when)-1, 0, NULL), PF_EINVAL);
    ASSERT_OK(pf_wait(NULL, 0, PF_ALL_COMPLETED, 0, NULL));
    pf_future *pend[] = {slow};
    ASSERT_BAD(pf_wait(pend, 1, PF_ALL_COMPLETED, 0, NULL), PF_ETIMEDOUT);

    /* as_completed */
    pf_as_completed *ac = POISON;
    ASSERT_BAD(pf_as_completed_create(NULL, one, 1), PF_EINVAL);
    ASSERT_BAD(pf_as_completed_create(&ac, NULL, 2), PF_EINVAL);
    ASSERT(ac == NULL);
    ac = POISON;
    ASSERT_BAD(pf_as_completed_create(&ac, with_null, 2), PF_EINVAL);
    ASSERT(ac == NULL);
    ac = POISON;
    ASSERT_BAD(pf_as_completed_create(&ac, with_wrong, 2), PF_EINVAL);
    ASSERT(ac == NULL);
    pf_future *twice[] = {done, done};
    ASSERT_BAD(pf_as_completed_create(&ac, twice, 2), PF_EINVAL);
    ASSERT(ac == NULL);
    ASSERT_OK(pf_as_completed_create(&ac, NULL, 0));
    ASSERT_BAD(pf_as_completed_add(NULL, done), PF_EINVAL);
    ASSERT_BAD(pf_as_completed_add(ac, NULL), PF_EINVAL);
    ASSERT_BAD(pf_as_completed_add(ac, nf), PF_EINVAL);
    pf_future *got = POISON;
    ASSERT_BAD(pf_as_completed_next(NULL, 0, &got), PF_EINVAL);
    ASSERT(got == NULL);
    ASSERT_BAD(pf_as_completed_next(ac, 0, NULL), PF_EINVAL);
    got = POISON;
    ASSERT_BAD(pf_as_completed_next(ac, 0, &got), PF_EEOF);
    ASSERT(got == NULL);
    ASSERT_OK(pf_as_completed_add(ac, slow));
    ASSERT_BAD(pf_as_completed_add(ac, slow), PF_EINVAL);
    ASSERT_BAD(pf_as_completed_next(ac, 0, &got), PF_ETIMEDOUT);
    ASSERT(got == NULL);
    pf_as_completed_destroy(ac);
    pf_as_completed_destroy(NULL);

    /* cancel: a done future cannot be */
    ASSERT_BAD(pf_future_cancel(done), PF_EBUSY);

    /* shutdown, then submit */
    ASSERT_OK(pf_executor_shutdown(ex, true, false));
    ASSERT_OK(pf_executor_shutdown(ex, true, true)); /* again: harmless */
    f = POISON;
    ASSERT_BAD(pf_submit(ex, task_noop, &byte, 1, &f), PF_ESHUTDOWN);
    ASSERT(f == NULL);
    ASSERT_BAD(pf_submit_named(ex, "task_noop", NULL, 0, NULL), PF_ESHUTDOWN);
    pf_future_release(slow);
    pf_future_release(done);
    pf_executor_destroy(ex);
}

/* pf_submit_named checks its arguments before it looks the name up, as
 * pf_submit does before it uses fn: a NULL or foreign executor, or a NULL
 * argument with a length, is PF_EINVAL whatever the name.  With a name not
 * registered these gave PF_ENOTREG. */
TEST(api_args_submit_named_checks_its_arguments_before_the_name)
{
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    pf_future *done = NULL;
    ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, &done));
    pf_executor *wrong = (pf_executor *)done;
    const char *names[] = {"api_args.not_registered", "", "task_noop"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        pf_future *f = POISON;
        ASSERT_BAD(pf_submit_named(NULL, names[i], NULL, 0, &f), PF_EINVAL);
        ASSERT(f == NULL);
        f = POISON;
        ASSERT_BAD(pf_submit_named(wrong, names[i], NULL, 0, &f), PF_EINVAL);
        ASSERT(f == NULL);
        f = POISON;
        ASSERT_BAD(pf_submit_named(ex, names[i], NULL, 4, &f), PF_EINVAL);
        ASSERT(f == NULL);
    }
    ASSERT_BAD(pf_submit_named(NULL, NULL, NULL, 0, NULL), PF_EINVAL);
    /* good arguments: the name decides */
    ASSERT_BAD(pf_submit_named(ex, names[0], NULL, 0, NULL), PF_ENOTREG);
    ASSERT_OK(pf_submit_named(ex, "task_noop", NULL, 0, NULL));
    pf_future_release(done);
    pf_executor_destroy(ex);
}

/* A pointer that is not an as_completed set is refused with PF_EINVAL, as
 * executors and futures refuse one (see their magic word): NULL, a zeroed or
 * garbage buffer bigger than a set, an executor or a future.  Destroying one
 * is a no-op that writes nothing.  The set had no magic word: a zeroed
 * buffer passed as a set read as an empty set (PF_EEOF), an add linked a
 * watch into it, and a destroy freed it. */
TEST(api_args_as_completed_refuses_what_is_not_a_set)
{
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    pf_future *done = NULL;
    ASSERT_OK(pf_submit(ex, task_noop, NULL, 0, &done));
    static _Alignas(64) unsigned char buf[4096], copy[sizeof buf];
    const unsigned char fills[] = {0x00, 0xa5, 0xff};
    for (size_t i = 0; i < sizeof fills; i++) {
        memset(buf, fills[i], sizeof buf);
        memcpy(copy, buf, sizeof buf);
        pf_as_completed *fake = (pf_as_completed *)(void *)buf;
        pf_future *got = POISON;
        ASSERT_BAD(pf_as_completed_next(fake, 0, &got), PF_EINVAL);
        ASSERT(got == NULL);
        ASSERT_BAD(pf_as_completed_add(fake, done), PF_EINVAL);
        pf_as_completed_destroy(fake); /* not a set: a no-op */
        ASSERT(memcmp(buf, copy, sizeof buf) == 0);
    }
    pf_as_completed *handles[] = {NULL, (pf_as_completed *)ex, (pf_as_completed *)done};
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++) {
        pf_future *got = POISON;
        ASSERT_BAD(pf_as_completed_next(handles[i], 0, &got), PF_EINVAL);
        ASSERT(got == NULL);
        ASSERT_BAD(pf_as_completed_add(handles[i], done), PF_EINVAL);
        pf_as_completed_destroy(handles[i]); /* a no-op */
    }
    /* the executor and the future are intact */
    ASSERT_OK(pf_future_result(done, 0, NULL, NULL));
    ASSERT_EQ(pf_executor_max_workers(ex), 1);

    /* and a set passed as an executor or a future is refused by them */
    pf_as_completed *ac = NULL;
    ASSERT_OK(pf_as_completed_create(&ac, &done, 1));
    ASSERT_BAD(pf_submit((pf_executor *)ac, task_noop, NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_future_wait((pf_future *)ac, 0), PF_EINVAL);
    pf_future *got = NULL;
    ASSERT_OK(pf_as_completed_next(ac, 0, &got)); /* the set still works */
    ASSERT(got == done);
    ASSERT_BAD(pf_as_completed_next(ac, 0, &got), PF_EEOF);
    pf_as_completed_destroy(ac);

    pf_future_release(done);
    pf_executor_destroy(ex);
}

/* NaN is not a timeout: the waiting functions refuse it with PF_EINVAL like
 * every other timeout of the API (they took it as "forever": a NaN computed
 * by mistake hung the caller).  Bounded here: the future ends after 300 ms,
 * so a wrong answer is PF_OK, not a hang. */
TEST(api_args_nan_timeouts_are_refused)
{
    pf_executor *ex = make(PF_THREADS, 1);
    pf_future *f = sleeper(ex, 300);
    int rc_wait = pf_future_wait(f, NAN);
    pf_future *fs[] = {f};
    int rc_all = pf_wait(fs, 1, PF_ALL_COMPLETED, NAN, NULL);
    pf_future_release(f);
    f = sleeper(ex, 300);
    const void *data;
    int rc_result = pf_future_result(f, NAN, &data, NULL);
    pf_future_release(f);
    f = sleeper(ex, 300);
    pf_as_completed *ac;
    ASSERT_OK(pf_as_completed_create(&ac, &f, 1));
    pf_future *got;
    int rc_next = pf_as_completed_next(ac, NAN, &got);
    pf_as_completed_destroy(ac);
    pf_future_release(f);
    pf_executor_destroy(ex);
    fprintf(stderr, "    NaN timeout: wait %s, pf_wait %s, result %s, as_completed_next %s\n",
            pf_err_name(rc_wait), pf_err_name(rc_all), pf_err_name(rc_result),
            pf_err_name(rc_next));
    ASSERT_BAD(rc_wait, PF_EINVAL);
    ASSERT_BAD(rc_all, PF_EINVAL);
    ASSERT_BAD(rc_result, PF_EINVAL);
    ASSERT_BAD(rc_next, PF_EINVAL);
}

TEST(api_args_executor_processes)
{
    ASSERT_OK(pf_init());
    ASSERT_OK(pf_init()); /* idempotent */
    pf_executor *ex = make(PF_PROCESSES, 1);
    /* over the 4 GiB limit: refused before any byte is read (the buffer is 1 byte) */
    static char tiny[1];
    pf_future *f = POISON;
    ASSERT_BAD(pf_submit(ex, task_noop, tiny, (4ull << 30) + 1, &f), PF_ETOOBIG);
    ASSERT(f == NULL);
    ASSERT_BAD(pf_submit(ex, task_noop, tiny, SIZE_MAX, &f), PF_ETOOBIG);
    ASSERT_BAD(pf_submit_named(ex, "task_noop", tiny, SIZE_MAX, NULL), PF_ETOOBIG);
    pf_executor_destroy(ex);
    pf_fini();
    pf_fini(); /* harmless again */
}

/* A length no object can have (over PTRDIFF_MAX), on the kinds without a
 * limit of their own: PF_ENOMEM, as on the plain build, without asking the
 * allocator (ASan's and some others abort on such a request). */
TEST(api_args_submit_impossible_length_is_an_error_on_every_kind)
{
    static char tiny[1];
    const pf_kind kinds[] = {PF_SEQUENTIAL, PF_THREADS};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        pf_executor *ex = make(kinds[k], 1);
        pf_future *f = POISON;
        ASSERT_BAD(pf_submit(ex, task_noop, tiny, SIZE_MAX, &f), PF_ENOMEM);
        ASSERT(f == NULL);
        ASSERT_BAD(pf_submit(ex, task_noop, tiny, (size_t)PTRDIFF_MAX + 1, NULL), PF_ENOMEM);
        pf_progress p;
        ASSERT_OK(pf_executor_progress(ex, &p));
        ASSERT_EQ(p.submitted, 0);
        pf_executor_destroy(ex);
    }
}

/* ------------------------------------------------------------- task.h -- */

static void reg_fn_a(void)
{
}
static void reg_fn_b(void)
{
}

TEST(api_args_registry)
{
    pf_fn fn = (pf_fn)POISON;
    ASSERT_BAD(pf_register(NULL, reg_fn_a), PF_EINVAL);
    ASSERT_BAD(pf_register("api_args.a", NULL), PF_EINVAL);
    ASSERT_BAD(pf_register("", reg_fn_a), PF_EINVAL);
    ASSERT_BAD(pf_register("pf.mine", reg_fn_a), PF_EINVAL);
    char *long_name = repeat('n', 128); /* at most 127 bytes */
    ASSERT_BAD(pf_register(long_name, reg_fn_a), PF_EINVAL);
    long_name[127] = '\0';
    ASSERT_OK(pf_register(long_name, reg_fn_a));
    ASSERT_OK(pf_register(long_name, reg_fn_a)); /* the same pair: a no-op */
    ASSERT_BAD(pf_register(long_name, reg_fn_b), PF_EEXIST);
    ASSERT_BAD(pf_register("api_args.other", reg_fn_a), PF_EEXIST); /* one name per function */
    ASSERT_OK(pf_lookup(long_name, &fn));
    ASSERT(fn == reg_fn_a);
    free(long_name);

    ASSERT_BAD(pf_lookup(NULL, &fn), PF_EINVAL);
    ASSERT_BAD(pf_lookup("task_noop", NULL), PF_EINVAL);
    fn = (pf_fn)POISON;
    ASSERT_BAD(pf_lookup("api_args.none", &fn), PF_ENOTFOUND);
    ASSERT(fn == NULL);
    fn = (pf_fn)POISON;
    ASSERT_BAD(pf_lookup("", &fn), PF_ENOTFOUND);
    ASSERT(fn == NULL);
    ASSERT_BAD(pf_lookup_id(0, NULL), PF_EINVAL);
    fn = (pf_fn)POISON;
    ASSERT_BAD(pf_lookup_id(0x1234567, &fn), PF_ENOTFOUND);
    ASSERT(fn == NULL);
    const char *name = POISON;
    uint64_t id = 77;
    ASSERT_BAD(pf_registered_name(NULL, &name, &id), PF_EINVAL);
    ASSERT(name == NULL);
    ASSERT_EQ(id, 0);
    name = POISON;
    ASSERT_BAD(pf_registered_name(reg_fn_b, &name, &id), PF_ENOTREG);
    ASSERT(name == NULL);
    ASSERT_OK(pf_registered_name((pf_fn)task_noop, NULL, NULL));
}

/* Runs in a task: checks of the functions that need a pf_task. */
#define TCHECK(cond)                                               \
    do {                                                           \
        if (!(cond))                                               \
            return pf_task_fail(t, __LINE__, "failed: %s", #cond); \
    } while (0)
#define TBAD(call, code) TCHECK((call) == (code) && pf_strerror(code)[0])

static int task_checks(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    static char big[PF_DICT_MAX_VALUE + 1];
    const char *nofmt = NULL;
    /* through a pointer: a NULL format is a run-time argument here, not a typo */
    int (*fail)(pf_task *, int, const char *, ...) = pf_task_fail;
    TBAD(pf_task_set_result(NULL, "x", 1), PF_EINVAL);
    TBAD(pf_task_set_result(t, NULL, 5), PF_EINVAL);
    TCHECK(pf_task_result_buffer(NULL, 4) == NULL);
    TBAD(pf_task_fail(NULL, 1, "x"), PF_EINVAL);
    TBAD(fail(NULL, 1, nofmt), PF_EINVAL);
    TCHECK(pf_task_worker_state(NULL) == NULL);
    TBAD(pf_task_worker_index(NULL), PF_EINVAL);
    TCHECK(!pf_task_cancelled(NULL));
    TBAD(pf_task_return_pair(NULL, "k", 1, "v", 1), PF_EINVAL);
    TBAD(pf_task_return_pair(t, NULL, 1, "v", 1), PF_EINVAL);
    TBAD(pf_task_return_pair(t, "k", 1, NULL, 1), PF_EINVAL);
    TBAD(pf_task_return_pair(t, big, PF_DICT_MAX_KEY + 1, "v", 1), PF_ETOOBIG);
    TBAD(pf_task_return_pair(t, "k", 1, big, PF_DICT_MAX_VALUE + 1), PF_ETOOBIG);
    TBAD(pf_task_return_dict(t, NULL), PF_EINVAL);
    pf_dict *d;
    TCHECK(pf_dict_open_local(&d, NULL) == 0);
    TBAD(pf_task_return_dict(NULL, d), PF_EINVAL);
    pf_dict_close(d);
    /* pf_task_fail with a NULL format: allowed, no message */
    if (len == 1)
        return fail(t, 9, nofmt);
    return pf_task_set_result(t, "ok", 2);
}

TEST(api_args_task)
{
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_checks, NULL, 0, &f));
    pf_error_info info;
    ASSERT_OK(pf_future_wait(f, PF_FOREVER));
    ASSERT_OK(pf_future_error(f, &info));
    if (info.code)
        FAIL("in the task: %s (line %d)", info.message, info.task_code);
    pf_future_release(f);
    ASSERT_OK(pf_submit(ex, task_checks, "1", 1, &f));
    ASSERT_BAD(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASK);
    ASSERT_OK(pf_future_error(f, &info));
    ASSERT_EQ(info.task_code, 9);
    pf_future_release(f);
    pf_executor_destroy(ex);
}

/* The header: "NULL if the space cannot be had; the task's result is then
 * empty".  A result set before an impossible pf_task_result_buffer must not
 * survive it. */
static int task_huge_buffer(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    if (pf_task_set_result(t, "abc", 3) != 0)
        return 1;
    if (pf_task_result_buffer(t, SIZE_MAX) != NULL)
        return pf_task_fail(t, 2, "pf_task_result_buffer(t, SIZE_MAX) gave a buffer");
    char *s = NULL;
    if (pf_task_set_result(t, s, SIZE_MAX) != PF_EINVAL)
        return pf_task_fail(t, 3, "pf_task_set_result(t, NULL, SIZE_MAX) not PF_EINVAL");
    return 0;
}

TEST(api_args_failed_result_buffer_empties_the_result)
{
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_huge_buffer, NULL, 0, &f));
    size_t len = 99;
    int rc = pf_future_result(f, PF_FOREVER, NULL, &len);
    pf_error_info info;
    ASSERT_OK(pf_future_error(f, &info));
    pf_future_release(f);
    pf_executor_destroy(ex);
    if (rc != PF_OK)
        FAIL("task: %s %s", pf_err_name(rc), info.message);
    ASSERT_EQ(len, 0); /* not the "abc" set before the failed reservation */
}

/* ------------------------------------------------------------- loop.h -- */

static int next_none(void *user, size_t index, const void **arg, size_t *len)
{
    (void)user;
    (void)index;
    (void)arg;
    (void)len;
    return PF_EEOF;
}

static int emit_count(void *user, size_t index, int status, const void *data, size_t len,
                      const char *errmsg)
{
    (void)index;
    (void)data;
    (void)len;
    (void)errmsg;
    if (status)
        return status;
    ++*(int *)user;
    return 0;
}

static int body_ok(size_t b, size_t e, void *ctx)
{
    (void)b;
    (void)e;
    (void)ctx;
    return 0;
}

static int rbody_ok(size_t b, size_t e, const void *ctx, void *acc)
{
    (void)ctx;
    *(size_t *)acc += e - b;
    return 0;
}

static void combine_sum(void *acc, const void *other)
{
    *(size_t *)acc += *(const size_t *)other;
}

TEST(api_args_loop)
{
    pf_executor *ex = make(PF_THREADS, 2);
    pf_executor *wrong = (pf_executor *)sleeper(ex, 0);
    int count = 0;
    int64_t items[3] = {1, 2, 3};

    ASSERT_BAD(pf_map(NULL, task_noop, next_none, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map(wrong, task_noop, next_none, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map(ex, NULL, next_none, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map(ex, task_noop, NULL, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map(ex, task_noop, next_none, NULL, &count, NULL), PF_EINVAL);
    const double bad_t[] = {-1.0, NAN, INFINITY, -INFINITY, 1e10};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) {
        pf_map_opts o = {.timeout = bad_t[i]};
        ASSERT_BAD(pf_map(ex, task_noop, next_none, emit_count, &count, &o), PF_EINVAL);
        ASSERT_BAD(pf_map_array(ex, task_square, items, 3, sizeof items[0], emit_count, &count, &o),
                   PF_EINVAL);
    }
    ASSERT_BAD(pf_map_array(NULL, task_square, items, 3, 8, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map_array(ex, NULL, items, 3, 8, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map_array(ex, task_square, NULL, 3, 8, emit_count, &count, NULL), PF_EINVAL);
    ASSERT_BAD(pf_map_array(ex, task_square, items, 3, 8, NULL, &count, NULL), PF_EINVAL);
    ASSERT_EQ(count, 0); /* nothing ran */
    ASSERT_OK(pf_map_array(ex, task_square, NULL, 0, 8, emit_count, &count, NULL));
    ASSERT_OK(pf_map(ex, task_noop, next_none, emit_count, &count, NULL));
    ASSERT_EQ(count, 0);

    /* parallel_for */
    char ctx[8] = {0};
    ASSERT_BAD(pf_parallel_for(NULL, 0, 10, body_ok, NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_parallel_for(wrong, 0, 10, body_ok, NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_parallel_for(ex, 10, 0, body_ok, NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_parallel_for(ex, SIZE_MAX, 0, body_ok, NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_parallel_for(ex, 0, 10, NULL, NULL, 0, NULL), PF_EINVAL);
    ASSERT_BAD(pf_parallel_for(ex, 0, 10, body_ok, NULL, 8, NULL), PF_EINVAL);
    const int scheds[] = {4, -1, 100, INT32_MIN};
    for (size_t i = 0; i < sizeof scheds / sizeof scheds[0]; i++) {
        pf_for_opts o = {.schedule = (pf_schedule)scheds[i]};
        ASSERT_BAD(pf_parallel_for(ex, 0, 10, body_ok, ctx, 0, &o), PF_EINVAL);
        size_t acc = 0;
        ASSERT_BAD(
            pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 0, &acc, sizeof acc, combine_sum, &o),
            PF_EINVAL);
    }
    ASSERT_OK(pf_parallel_for(ex, 5, 5, body_ok, NULL, 0, NULL));
    pf_for_opts huge = {.schedule = PF_SCHEDULE_DYNAMIC, .chunk = SIZE_MAX, .grain = SIZE_MAX};
    ASSERT_OK(pf_parallel_for(ex, 0, 10, body_ok, NULL, 0, &huge)); /* "any value works" */

    /* parallel_reduce */
    size_t acc = 0;
    static char big_acc[(1u << 20) + 1];
    ASSERT_BAD(
        pf_parallel_reduce(NULL, 0, 10, rbody_ok, NULL, 0, &acc, sizeof acc, combine_sum, NULL),
        PF_EINVAL);
    ASSERT_BAD(
        pf_parallel_reduce(ex, 10, 0, rbody_ok, NULL, 0, &acc, sizeof acc, combine_sum, NULL),
        PF_EINVAL);
    ASSERT_BAD(pf_parallel_reduce(ex, 0, 10, NULL, NULL, 0, &acc, sizeof acc, combine_sum, NULL),
               PF_EINVAL);
    ASSERT_BAD(
        pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 8, &acc, sizeof acc, combine_sum, NULL),
        PF_EINVAL);
    ASSERT_BAD(
        pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 0, NULL, sizeof acc, combine_sum, NULL),
        PF_EINVAL);
    ASSERT_BAD(pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 0, &acc, 0, combine_sum, NULL),
               PF_EINVAL);
    ASSERT_BAD(pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 0, &acc, sizeof acc, NULL, NULL),
               PF_EINVAL);
    ASSERT_BAD(pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 0, big_acc, sizeof big_acc,
                                  combine_sum, NULL),
               PF_ETOOBIG);
    ASSERT_EQ(acc, 0);
    ASSERT_OK(
        pf_parallel_reduce(ex, 0, 10, rbody_ok, NULL, 0, &acc, sizeof acc, combine_sum, &huge));
    ASSERT_EQ(acc, 10);

    pf_future_release((pf_future *)wrong);
    pf_executor_destroy(ex);
}

/* pf_map_opts.max_in_flight is a bound, capped at the number of items and at
 * 65,536 (it sizes an allocation: SIZE_MAX made a 3-item map fail with
 * PF_ENOMEM, and an ASan build abort on the calloc). */
TEST(api_args_map_huge_max_in_flight_is_capped)
{
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    int64_t items[3] = {1, 2, 3};
    int count = 0;
    pf_map_opts o = {.max_in_flight = SIZE_MAX};
    int rc = pf_map_array(ex, task_square, items, 3, sizeof items[0], emit_count, &count, &o);
    pf_executor_destroy(ex);
    if (rc != PF_OK && rc != PF_EINVAL)
        FAIL("pf_map_array(max_in_flight = SIZE_MAX) of 3 items: %s", pf_err_name(rc));
}

/* ------------------------------------------------------------- dict.h -- */

static int visit_none(void *user, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)user;
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    return 0;
}

static int got_none(void *user, size_t index, int status, const void *val, size_t vlen)
{
    (void)user;
    (void)index;
    (void)status;
    (void)val;
    (void)vlen;
    return 0;
}

static int update_keep(void *arg, const void *old, size_t old_len, const void **new_val,
                       size_t *new_len)
{
    (void)arg;
    (void)old;
    (void)old_len;
    (void)new_val;
    (void)new_len;
    return PF_DICT_KEEP;
}

TEST(api_args_dict_open)
{
    pf_dict *d = POISON;
    ASSERT_BAD(pf_dict_open_local(NULL, NULL), PF_EINVAL);
    const pf_dict_opts bad_opts[] = {
        {.stripes = 3},
        {.stripes = 8192},
        {.stripes = UINT32_MAX},
        {.max_bytes = PF_DICT_LIMIT_MAX_BYTES + 4096},
        {.max_bytes = UINT64_MAX},
        {.max_bytes = 1000},
    };
    for (size_t i = 0; i < sizeof bad_opts / sizeof bad_opts[0]; i++) {
        d = POISON;
        ASSERT_BAD(pf_dict_open_local(&d, &bad_opts[i]), PF_EINVAL);
        ASSERT(d == NULL);
        d = POISON;
        ASSERT_BAD(pf_dict_create_shm(&d, "api-args-x", &bad_opts[i]), PF_EINVAL);
        ASSERT(d == NULL);
    }
    /* shm names */
    char *long_name = repeat('a', PF_DICT_MAX_NAME + 1);
    const char *bad_names[] = {"", "a/b", "a b", "../x", "x\n", "\xc3\xa9", long_name};
    ASSERT_BAD(pf_dict_create_shm(NULL, "api-args-x", NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_open_shm(NULL, "api-args-x"), PF_EINVAL);
    d = POISON;
    ASSERT_BAD(pf_dict_open_shm(&d, NULL), PF_EINVAL);
    ASSERT(d == NULL);
    ASSERT_BAD(pf_dict_remove_shm(NULL), PF_EINVAL);
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        d = POISON;
        ASSERT_BAD(pf_dict_create_shm(&d, bad_names[i], NULL), PF_EINVAL);
        ASSERT(d == NULL);
        d = POISON;
        ASSERT_BAD(pf_dict_open_shm(&d, bad_names[i]), PF_EINVAL);
        ASSERT(d == NULL);
        ASSERT_BAD(pf_dict_remove_shm(bad_names[i]), PF_EINVAL);
    }
    ASSERT_BAD(pf_dict_open_shm(&d, "api-args-absent"), PF_ENOTFOUND);
    ASSERT_BAD(pf_dict_remove_shm("api-args-absent"), PF_ENOTFOUND);

    /* redis: every check before a connection */
    char *long_host = repeat('h', PF_DICT_MAX_HOST + 1);
    char *long_pw = repeat('p', 129);
    ASSERT_BAD(pf_dict_open_redis(NULL, "127.0.0.1", 6379, "h", NULL), PF_EINVAL);
    struct {
        const char *host;
        int port;
        const char *name;
    } bad_redis[] = {
        {NULL, 6379, "h"},         {"", 6379, "h"},
        {long_host, 6379, "h"},    {"127.0.0.1", 6379, NULL},
        {"127.0.0.1", 6379, ""},   {"127.0.0.1", 6379, long_name},
        {"127.0.0.1", 0, "h"},     {"127.0.0.1", -1, "h"},
        {"127.0.0.1", 65536, "h"}, {"127.0.0.1", INT32_MIN, "h"},
    };
    for (size_t i = 0; i < sizeof bad_redis / sizeof bad_redis[0]; i++) {
        d = POISON;
        ASSERT_BAD(
            pf_dict_open_redis(&d, bad_redis[i].host, bad_redis[i].port, bad_redis[i].name, NULL),
            PF_EINVAL);
        ASSERT(d == NULL);
    }
    const double bad_t[] = {-1.0, NAN, INFINITY, 86401.0};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) {
        pf_dict_opts o = {.timeout = bad_t[i]};
        d = POISON;
        ASSERT_BAD(pf_dict_open_redis(&d, "127.0.0.1", 6379, "h", &o), PF_EINVAL);
        ASSERT(d == NULL);
    }
    pf_dict_opts pw = {.password = long_pw};
    ASSERT_BAD(pf_dict_open_redis(&d, "127.0.0.1", 6379, "h", &pw), PF_EINVAL);
    ASSERT(d == NULL);
    free(long_name);
    free(long_host);
    free(long_pw);

    /* handle-level functions on NULL */
    pf_dict_close(NULL);
    ASSERT_EQ(pf_dict_backend_of(NULL), 0);
    ASSERT(pf_dict_name(NULL) == NULL);
}

TEST(api_args_dict_ops)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_open_local(&d, NULL));
    ASSERT(pf_dict_name(d) == NULL);
    char *big = malloc(PF_DICT_MAX_VALUE + 1);
    ASSERT(big != NULL);
    memset(big, '7', PF_DICT_MAX_VALUE + 1);
    const size_t KB = PF_DICT_MAX_KEY + 1, VB = PF_DICT_MAX_VALUE + 1;
    char buf[16];
    size_t vlen;
    void *val;
    int64_t i64;
    bool flag;
    char *str;

    /* NULL dict */
    ASSERT_BAD(pf_dict_set(NULL, "k", 1, "v", 1), PF_EINVAL);
    vlen = 9;
    ASSERT_BAD(pf_dict_get(NULL, "k", 1, buf, sizeof buf, &vlen), PF_EINVAL);
    ASSERT_EQ(vlen, 0);
    val = POISON;
    ASSERT_BAD(pf_dict_get_alloc(NULL, "k", 1, &val, NULL), PF_EINVAL);
    ASSERT(val == NULL);
    ASSERT_BAD(pf_dict_delete(NULL, "k", 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_contains(NULL, "k", 1), PF_EINVAL);
    vlen = 9;
    ASSERT_BAD(pf_dict_len(NULL, &vlen), PF_EINVAL);
    ASSERT_EQ(vlen, 0);
    ASSERT_BAD(pf_dict_len(d, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_clear(NULL), PF_EINVAL);
    i64 = 9;
    ASSERT_BAD(pf_dict_incr(NULL, "k", 1, 1, &i64), PF_EINVAL);
    ASSERT_EQ(i64, 0);
    flag = true;
    ASSERT_BAD(pf_dict_cas(NULL, "k", 1, NULL, 0, "v", 1, &flag), PF_EINVAL);
    ASSERT(!flag);
    ASSERT_BAD(pf_dict_get_or_insert(NULL, "k", 1, "v", 1, NULL, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_update_fn(NULL, "k", 1, update_keep, NULL), PF_EINVAL);
    pf_dict_item item = {"k", 1, "v", 1};
    ASSERT_BAD(pf_dict_set_many(NULL, &item, 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_many(NULL, &item, 1, got_none, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_update(NULL, d), PF_EINVAL);
    ASSERT_BAD(pf_dict_update(d, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_foreach(NULL, visit_none, NULL), PF_EINVAL);
    pf_dict_iter *it = POISON;
    ASSERT_BAD(pf_dict_iter_open(NULL, &it), PF_EINVAL);
    ASSERT(it == NULL);
    char msg[32] = "junk";
    ASSERT_BAD(pf_dict_check(NULL, msg, sizeof msg), PF_EINVAL);
    ASSERT_STREQ(msg, "");
    ASSERT_BAD(pf_dict_set_i64(NULL, "k", 1, 5), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_i64(NULL, "k", 1, &i64), PF_EINVAL);
    ASSERT_BAD(pf_dict_set_str(NULL, "k", "v"), PF_EINVAL);
    str = POISON;
    ASSERT_BAD(pf_dict_get_str(NULL, "k", &str), PF_EINVAL);
    ASSERT(str == NULL);

    /* NULL pointers with a non-zero length */
    ASSERT_BAD(pf_dict_set(d, NULL, 1, "v", 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_set(d, "k", 1, NULL, 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_set(d, NULL, SIZE_MAX, "v", 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_get(d, NULL, 1, buf, sizeof buf, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get(d, "k", 1, NULL, 4, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_alloc(d, NULL, 1, &val, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_alloc(d, "k", 1, NULL, &vlen), PF_EINVAL);
    ASSERT_BAD(pf_dict_delete(d, NULL, 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_contains(d, NULL, 1), PF_EINVAL);
    ASSERT_BAD(pf_dict_incr(d, NULL, 1, 1, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_cas(d, NULL, 1, NULL, 0, "v", 1, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_cas(d, "k", 1, NULL, 3, "v", 1, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_cas(d, "k", 1, NULL, 0, NULL, 3, NULL), PF_EINVAL);
    void *cur = POISON;
    size_t cur_len = 9;
    flag = true;
    ASSERT_BAD(pf_dict_get_or_insert(d, NULL, 1, "v", 1, &cur, &cur_len, &flag), PF_EINVAL);
    ASSERT(cur == NULL);
    ASSERT_EQ(cur_len, 0);
    ASSERT(!flag);
    ASSERT_BAD(pf_dict_get_or_insert(d, "k", 1, NULL, 1, NULL, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_update_fn(d, NULL, 1, update_keep, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_update_fn(d, "k", 1, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_set_many(d, NULL, 1), PF_EINVAL);
    pf_dict_item two[2] = {{"a", 1, "1", 1}, {NULL, 1, "2", 1}};
    ASSERT_BAD(pf_dict_set_many(d, two, 2), PF_EINVAL);
    two[1] = (pf_dict_item){"b", 1, NULL, 1};
    ASSERT_BAD(pf_dict_set_many(d, two, 2), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_many(d, NULL, 1, got_none, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_many(d, &item, 1, NULL, NULL), PF_EINVAL);
    two[1] = (pf_dict_item){NULL, 1, NULL, 0};
    ASSERT_BAD(pf_dict_get_many(d, two, 2, got_none, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_foreach(d, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_iter_open(d, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_iter_next(NULL, NULL, NULL, NULL, NULL), PF_EINVAL);
    pf_dict_iter_close(NULL);
    ASSERT_BAD(pf_dict_set_i64(d, NULL, 1, 5), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_i64(d, "k", 1, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_i64(d, NULL, 1, &i64), PF_EINVAL);
    ASSERT_BAD(pf_dict_set_str(d, NULL, "v"), PF_EINVAL);
    ASSERT_BAD(pf_dict_set_str(d, "k", NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_str(d, NULL, &str), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_str(d, "k", NULL), PF_EINVAL);

    /* keys and values over the limits: PF_ETOOBIG */
    ASSERT_BAD(pf_dict_set(d, big, KB, "v", 1), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_set(d, "k", 1, big, VB), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_get(d, big, KB, buf, sizeof buf, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_get_alloc(d, big, KB, &val, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_delete(d, big, KB), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_contains(d, big, KB), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_incr(d, big, KB, 1, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_cas(d, big, KB, NULL, 0, "v", 1, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_cas(d, "k", 1, big, VB, "v", 1, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_cas(d, "k", 1, NULL, 0, big, VB, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_get_or_insert(d, big, KB, "v", 1, NULL, NULL, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_get_or_insert(d, "k", 1, big, VB, NULL, NULL, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_update_fn(d, big, KB, update_keep, NULL), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_set_i64(d, big, KB, 5), PF_ETOOBIG);
    big[KB] = '\0';
    ASSERT_BAD(pf_dict_set_str(d, big, "v"), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_get_str(d, big, &str), PF_ETOOBIG);
    big[KB] = '7';
    pf_dict_item over[2] = {{"a", 1, "1", 1}, {"b", 1, big, VB}};
    ASSERT_BAD(pf_dict_set_many(d, over, 2), PF_ETOOBIG);
    over[1] = (pf_dict_item){big, KB, "2", 1};
    ASSERT_BAD(pf_dict_set_many(d, over, 2), PF_ETOOBIG);
    ASSERT_BAD(pf_dict_get_many(d, over, 2, got_none, NULL), PF_ETOOBIG);
    /* nothing was written by any of the refused calls */
    ASSERT_OK(pf_dict_len(d, &vlen));
    ASSERT_EQ(vlen, 0);

    /* values the int64 helpers refuse */
    ASSERT_OK(pf_dict_set_str(d, "text", "12x"));
    ASSERT_BAD(pf_dict_incr(d, PF_DICT_STR("text"), 1, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_get_i64(d, PF_DICT_STR("text"), &i64), PF_EINVAL);
    ASSERT_OK(pf_dict_set_i64(d, PF_DICT_STR("max"), INT64_MAX));
    ASSERT_BAD(pf_dict_incr(d, PF_DICT_STR("max"), 1, NULL), PF_EINVAL);
    ASSERT_OK(pf_dict_set_i64(d, PF_DICT_STR("min"), INT64_MIN));
    ASSERT_BAD(pf_dict_incr(d, PF_DICT_STR("min"), -1, NULL), PF_EINVAL);
    ASSERT_OK(pf_dict_get_i64(d, PF_DICT_STR("min"), &i64));
    ASSERT_EQ(i64, INT64_MIN);
    ASSERT_OK(pf_dict_set(d, PF_DICT_STR("long"), big, 100));
    ASSERT_BAD(pf_dict_get_i64(d, PF_DICT_STR("long"), &i64), PF_EINVAL);
    /* a buffer too small, and NULL/0 to ask the length */
    vlen = 0;
    ASSERT_BAD(pf_dict_get(d, PF_DICT_STR("long"), buf, sizeof buf, &vlen), PF_ETOOBIG);
    ASSERT_EQ(vlen, 100);
    ASSERT_BAD(pf_dict_get(d, PF_DICT_STR("long"), NULL, 0, &vlen), PF_ETOOBIG);
    ASSERT_EQ(vlen, 100);
    ASSERT_BAD(pf_dict_get(d, PF_DICT_STR("absent"), buf, sizeof buf, &vlen), PF_ENOTFOUND);
    ASSERT_BAD(pf_dict_delete(d, PF_DICT_STR("absent")), PF_ENOTFOUND);
    ASSERT_BAD(pf_dict_contains(d, PF_DICT_STR("absent")), PF_ENOTFOUND);
    ASSERT_OK(pf_dict_check(d, NULL, 0));
    ASSERT_OK(pf_dict_check(d, msg, 0));
    ASSERT_OK(pf_dict_update(d, d));

    /* iterator on a real dict: NULL out-pointers are fine */
    ASSERT_OK(pf_dict_iter_open(d, &it));
    ASSERT_OK(pf_dict_iter_next(it, NULL, NULL, NULL, NULL));
    pf_dict_iter_close(it);

    /* refs */
    pf_dict_ref ref;
    memset(&ref, 0xa5, sizeof ref);
    ASSERT_BAD(pf_dict_ref_get(NULL, &ref), PF_EINVAL);
    ASSERT_BAD(pf_dict_ref_get(d, NULL), PF_EINVAL);
    pf_dict *back = POISON;
    ASSERT_BAD(pf_dict_from_ref(NULL, &ref), PF_EINVAL);
    ASSERT_BAD(pf_dict_from_ref(&back, NULL), PF_EINVAL);
    ASSERT(back == NULL);
    memset(&ref, 0, sizeof ref);
    back = POISON;
    ASSERT_BAD(pf_dict_from_ref(&back, &ref), PF_EINVAL);
    ASSERT(back == NULL);
    memset(&ref, 0xa5, sizeof ref);
    back = POISON;
    ASSERT_BAD(pf_dict_from_ref(&back, &ref), PF_EINVAL);
    ASSERT(back == NULL);

    free(big);
    pf_dict_close(d);
}

/* The header: single-key operations give "PF_ETOOBIG for a key or value over
 * the limits"; pf_dict_get_i64 too (it answered PF_EINVAL, its own code for
 * "a value longer than any int64"). */
TEST(api_args_dict_get_i64_long_key_is_etoobig)
{
    pf_dict *d;
    ASSERT_OK(pf_dict_open_local(&d, NULL));
    char *big = repeat('k', PF_DICT_MAX_KEY + 1);
    int64_t v = 5;
    int rc = pf_dict_get_i64(d, big, PF_DICT_MAX_KEY + 1, &v);
    free(big);
    pf_dict_close(d);
    ASSERT_EQ(v, 0);
    ASSERT_BAD(rc, PF_ETOOBIG);
}

static int task_pair(pf_task *t, const void *arg, size_t len)
{
    return pf_task_return_pair(t, arg, len, "1", 1);
}

TEST(api_args_dict_combine)
{
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    pf_dict *d;
    ASSERT_OK(pf_dict_open_local(&d, NULL));
    pf_future *f;
    ASSERT_OK(pf_submit(ex, task_pair, "key", 3, &f));
    const int rules[] = {4, -1, 100};
    ASSERT_BAD(pf_dict_merge_result(NULL, f, PF_COMBINE_LAST), PF_EINVAL);
    ASSERT_BAD(pf_dict_merge_result(d, NULL, PF_COMBINE_LAST), PF_EINVAL);
    ASSERT_BAD(pf_dict_merge_result(d, (pf_future *)ex, PF_COMBINE_LAST), PF_EINVAL);
    char items[2][4] = {"abc", "def"};
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        ASSERT_BAD(pf_dict_merge_result(d, f, (pf_combine_rule)rules[i]), PF_EINVAL);
        ASSERT_BAD(pf_dict_combine(d, ex, task_pair, items, 2, 4, (pf_combine_rule)rules[i], NULL),
                   PF_EINVAL);
    }
    ASSERT_BAD(pf_dict_combine(NULL, ex, task_pair, items, 2, 4, PF_COMBINE_LAST, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_combine(d, NULL, task_pair, items, 2, 4, PF_COMBINE_LAST, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_combine(d, (pf_executor *)f, task_pair, items, 2, 4, PF_COMBINE_LAST, NULL),
               PF_EINVAL);
    ASSERT_BAD(pf_dict_combine(d, ex, NULL, items, 2, 4, PF_COMBINE_LAST, NULL), PF_EINVAL);
    ASSERT_BAD(pf_dict_combine(d, ex, task_pair, NULL, 2, 4, PF_COMBINE_LAST, NULL), PF_EINVAL);
    pf_map_opts o = {.timeout = NAN};
    ASSERT_BAD(pf_dict_combine(d, ex, task_pair, items, 2, 4, PF_COMBINE_LAST, &o), PF_EINVAL);
    size_t n;
    ASSERT_OK(pf_dict_len(d, &n));
    ASSERT_EQ(n, 0);
    /* a result that is not pairs */
    pf_future *g;
    int64_t x = 2;
    ASSERT_OK(pf_submit(ex, task_square, &x, sizeof x, &g));
    ASSERT_BAD(pf_dict_merge_result(d, g, PF_COMBINE_LAST), PF_EPROTO);
    ASSERT_OK(pf_dict_merge_result(d, f, PF_COMBINE_LAST));
    pf_future_release(g);
    pf_future_release(f);
    pf_dict_close(d);
    pf_executor_destroy(ex);
}

/* ------------------------------------------------------------- http.h -- */

TEST(api_args_http)
{
    pf_http_config cfg;
    ASSERT_BAD(pf_http_config_init(NULL, "http://127.0.0.1:1/"), PF_EINVAL);
    char *long_url = repeat('u', PF_HTTP_URL_MAX);
    memcpy(long_url, "http://", 7);
    const char *bad_urls[] = {NULL, "", "ftp://x", "127.0.0.1:80/", "http:/x", long_url};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++)
        ASSERT_BAD(pf_http_config_init(&cfg, bad_urls[i]), PF_EINVAL);
    long_url[PF_HTTP_URL_MAX - 1] = '\0'; /* 2047 bytes + NUL: fits */
    ASSERT_OK(pf_http_config_init(&cfg, long_url));
    free(long_url);
    ASSERT_OK(pf_http_config_init(&cfg, "http://127.0.0.1:1/api/users"));
    char *long_body = repeat('b', PF_HTTP_BODY_MAX);
    ASSERT_BAD(pf_http_config_set_body(NULL, "{}"), PF_EINVAL);
    ASSERT_BAD(pf_http_config_set_body(&cfg, NULL), PF_EINVAL);
    ASSERT_BAD(pf_http_config_set_body(&cfg, long_body), PF_EINVAL);
    long_body[PF_HTTP_BODY_MAX - 1] = '\0';
    ASSERT_OK(pf_http_config_set_body(&cfg, long_body));
    free(long_body);

    /* describe */
    char buf[64];
    pf_http_record rec = {0};
    ASSERT_STREQ(pf_http_describe(NULL, buf, sizeof buf), "(no record)");
    ASSERT(pf_http_describe(&rec, NULL, 64) == NULL);
    buf[0] = 'z';
    ASSERT(pf_http_describe(&rec, buf, 0) == buf);
    ASSERT_EQ(buf[0], 'z');
    rec.curl_code = 99999; /* not a CURLcode */
    ASSERT(pf_http_describe(&rec, buf, sizeof buf)[0] != '\0');
    ASSERT_OK(pf_http_init());
    ASSERT(pf_http_version() && pf_http_version()[0]);

    /* clients: bad configs, all refused before any connection */
    pf_http_client *c = POISON;
    ASSERT_BAD(pf_http_client_create(NULL, &cfg), PF_EINVAL);
    ASSERT_BAD(pf_http_client_create(&c, NULL), PF_EINVAL);
    ASSERT(c == NULL);
    const double bad_t[] = {-1.0, NAN, INFINITY, 86401.0};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) {
        pf_http_config b = cfg;
        b.timeout = bad_t[i];
        c = POISON;
        ASSERT_BAD(pf_http_client_create(&c, &b), PF_EINVAL);
        ASSERT(c == NULL);
        b = cfg;
        b.connect_timeout = bad_t[i];
        ASSERT_BAD(pf_http_client_create(&c, &b), PF_EINVAL);
        ASSERT_BAD(pf_http_run_multi(&b, 1, 1, NULL, &rec), PF_EINVAL);
    }
    pf_http_config unterminated = cfg;
    memset(unterminated.url, 'h', sizeof unterminated.url);
    ASSERT_BAD(pf_http_client_create(&c, &unterminated), PF_EINVAL);
    ASSERT_BAD(pf_http_run_multi(&unterminated, 1, 1, NULL, &rec), PF_EINVAL);
    unterminated = cfg;
    memset(unterminated.body, 'b', sizeof unterminated.body);
    ASSERT_BAD(pf_http_client_create(&c, &unterminated), PF_EINVAL);
    pf_http_config ftp = cfg;
    memcpy(ftp.url, "ftp://x", 8);
    ASSERT_BAD(pf_http_client_create(&c, &ftp), PF_EINVAL);
    ASSERT(c == NULL);
    pf_http_client_destroy(NULL);

    /* post: NULL client or record (a real client connects only when it posts) */
    char msg[32] = "junk";
    ASSERT_BAD(pf_http_client_post(NULL, 0, &rec, msg, sizeof msg), PF_EINVAL);
    ASSERT_STREQ(msg, "");
    ASSERT_OK(pf_http_client_create(&c, &cfg));
    ASSERT_BAD(pf_http_client_post(c, 0, NULL, msg, sizeof msg), PF_EINVAL);
    pf_http_client_destroy(c);

    /* worker init/fini */
    void *state = POISON;
    ASSERT_BAD(pf_http_worker_init(NULL, &cfg, sizeof cfg, 0), PF_EINVAL);
    ASSERT_BAD(pf_http_worker_init(&state, NULL, sizeof cfg, 0), PF_EINVAL);
    ASSERT(state == NULL);
    ASSERT_BAD(pf_http_worker_init(&state, &cfg, sizeof cfg - 1, 0), PF_EINVAL);
    ASSERT_BAD(pf_http_worker_init(&state, &cfg, 0, 0), PF_EINVAL);
    ASSERT_BAD(pf_http_worker_init(&state, &ftp, sizeof ftp, 0), PF_EINVAL);
    ASSERT(state == NULL);
    pf_http_worker_fini(NULL, 0);

    /* the task without a worker client, or with a bad argument */
    ASSERT_BAD(pf_http_post_task(NULL, NULL, 0), PF_EINVAL);
    pf_executor *ex = make(PF_SEQUENTIAL, 1);
    pf_future *f;
    uint64_t n = 1;
    ASSERT_OK(pf_submit(ex, pf_http_post_task, &n, sizeof n, &f));
    ASSERT_BAD(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASK);
    pf_error_info info;
    ASSERT_OK(pf_future_error(f, &info));
    ASSERT_EQ(info.task_code, PF_EINVAL);
    pf_future_release(f);
    pf_executor_destroy(ex);
    pf_executor_opts o = {.max_workers = 1,
                          .initializer = pf_http_worker_init,
                          .finalizer = pf_http_worker_fini,
                          .init_arg = &cfg,
                          .init_arg_len = sizeof cfg};
    ASSERT_OK(pf_executor_create(&ex, PF_SEQUENTIAL, &o));
    ASSERT_OK(pf_submit(ex, pf_http_post_task, &n, 3, &f)); /* not a uint64_t */
    ASSERT_BAD(pf_future_result(f, PF_FOREVER, NULL, NULL), PF_ETASK);
    ASSERT_OK(pf_future_error(f, &info));
    ASSERT_EQ(info.task_code, PF_EINVAL);
    pf_future_release(f);
    pf_executor_destroy(ex);

    /* run_multi: argument checks (n = 0 runs nothing) */
    ASSERT_BAD(pf_http_run_multi(NULL, 1, 1, NULL, &rec), PF_EINVAL);
    ASSERT_BAD(pf_http_run_multi(&cfg, 1, 1, NULL, NULL), PF_EINVAL);
    ASSERT_BAD(pf_http_run_multi(&cfg, 1, 0, NULL, &rec), PF_EINVAL);
    ASSERT_BAD(pf_http_run_multi(&cfg, 1, 100001, NULL, &rec), PF_EINVAL);
    ASSERT_BAD(pf_http_run_multi(&cfg, 1, SIZE_MAX, NULL, &rec), PF_EINVAL);
    pf_http_multi_opts mo = {.threads = -1};
    ASSERT_BAD(pf_http_run_multi(&cfg, 1, 1, &mo, &rec), PF_EINVAL);
    mo.threads = PF_HTTP_MULTI_MAX_THREADS + 1;
    ASSERT_BAD(pf_http_run_multi(&cfg, 1, 1, &mo, &rec), PF_EINVAL);
    ASSERT_OK(pf_http_run_multi(&cfg, 0, 1, NULL, NULL));
}

/* ------------------------------------------------------------ serve.h -- */

TEST(api_args_serve)
{
    pf_server *s = POISON;
    ASSERT_BAD(pf_server_start(NULL, NULL), PF_EINVAL);
    const pf_serve_opts bad[] = {
        {.latency_min = -1},
        {.latency_min = NAN},
        {.latency_max = NAN},
        {.latency_min = INFINITY, .latency_max = INFINITY},
        {.latency_min = 2, .latency_max = 1},
        {.latency_max = 86401},
        {.error_rate = -0.1},
        {.error_rate = 1.1},
        {.error_rate = NAN},
        {.max_body = (1ull << 30) + 1},
        {.max_body = SIZE_MAX},
        {.max_connections = 1048577},
        {.threads = 257},
        {.idle_timeout_s = 86401},
        {.bind_addr = "localhost"},
        {.bind_addr = ""},
        {.bind_addr = "127.0.0.1:80"},
        {.bind_addr = "999.1.1.1"},
        {.bind_addr = "192.0.2.1"}, /* TEST-NET-1: not an address of this machine */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = POISON;
        int rc = pf_server_start(&s, &bad[i]);
        if (rc != PF_EINVAL)
            FAIL("pf_server_start with bad option #%zu: got %s, want PF_EINVAL", i,
                 pf_err_name(rc));
        ASSERT(s == NULL);
    }
    ASSERT_EQ(pf_server_port(NULL), 0);
    pf_server_stats st;
    ASSERT_BAD(pf_server_stats_get(NULL, &st), PF_EINVAL);
    pf_server_stop(NULL);
}
