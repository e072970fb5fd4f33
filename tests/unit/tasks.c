/*
 * Task functions shared by the executor tests (see tasks.h).
 */
#include "tasks.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

static int32_t arg_i32(const void *arg, size_t len)
{
    int32_t x = 0;
    if (len == sizeof x)
        memcpy(&x, arg, sizeof x);
    return x;
}

int task_square(pf_task *t, const void *arg, size_t len)
{
    int64_t x;
    if (len != sizeof x)
        return pf_task_fail(t, PF_EINVAL, "want 8 bytes, got %zu", len);
    memcpy(&x, arg, sizeof x);
    x *= x;
    return pf_task_set_result(t, &x, sizeof x);
}
PF_REGISTER(task_square)

int task_noop(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    return 0;
}
PF_REGISTER(task_noop)

int task_sleep_ms(pf_task *t, const void *arg, size_t len)
{
    int32_t ms = arg_i32(arg, len);
    pf_test_sleep_ms(ms);
    return pf_task_set_result(t, &ms, sizeof ms);
}
PF_REGISTER(task_sleep_ms)

int task_fail(pf_task *t, const void *arg, size_t len)
{
    return pf_task_fail(t, 42, "bad input %d", (int)arg_i32(arg, len));
}
PF_REGISTER(task_fail)

int task_return_code(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    return arg_i32(arg, len);
}
PF_REGISTER(task_return_code)

int task_sized_result(pf_task *t, const void *arg, size_t len)
{
    uint64_t n;
    if (len != sizeof n)
        return pf_task_fail(t, PF_EINVAL, "want 8 bytes");
    memcpy(&n, arg, sizeof n);
    unsigned char *p = pf_task_result_buffer(t, n);
    if (!p)
        return pf_task_fail(t, PF_ENOMEM, "no room for %llu bytes", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 7 + 3) & 0xff);
    return 0;
}
PF_REGISTER(task_sized_result)

int task_check_arg(pf_task *t, const void *arg, size_t len)
{
    const unsigned char *p = arg;
    for (size_t i = 0; i < len; i++)
        if (p[i] != (unsigned char)((i * 7 + 3) & 0xff))
            return pf_task_fail(t, 1, "byte %zu is wrong", i);
    uint64_t n = len;
    return pf_task_set_result(t, &n, sizeof n);
}
PF_REGISTER(task_check_arg)

int task_getpid(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int32_t pid = (int32_t)getpid();
    return pf_task_set_result(t, &pid, sizeof pid);
}
PF_REGISTER(task_getpid)

int task_crash(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    switch (arg_i32(arg, len)) {
    case CRASH_SEGV:
        raise(SIGSEGV);
        break;
    case CRASH_ABORT:
        abort();
    case CRASH_EXIT7:
        _exit(7);
    case CRASH_SIGKILL:
        raise(SIGKILL);
        break;
    }
    return 0;
}
PF_REGISTER(task_crash)

int task_worker_info(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    int32_t out[2] = {pf_task_worker_index(t), 0};
    int *state = pf_task_worker_state(t);
    if (state)
        out[1] = *state;
    return pf_task_set_result(t, out, sizeof out);
}
PF_REGISTER(task_worker_info)

int task_touch(pf_task *t, const void *arg, size_t len)
{
    (void)t;
    if (!len || ((const char *)arg)[len - 1] != '\0')
        return 1;
    int fd = open(arg, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return 2;
    close(fd);
    return 0;
}
PF_REGISTER(task_touch)

int task_wait_cancel(pf_task *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    for (int i = 0; i < 10000; i++) {
        if (pf_task_cancelled(t)) {
            int32_t one = 1;
            return pf_task_set_result(t, &one, sizeof one);
        }
        pf_test_sleep_ms(1);
    }
    return 0;
}
PF_REGISTER(task_wait_cancel)

pf_future *submit_i32(pf_executor *ex, pf_task_fn fn, int32_t x)
{
    pf_future *f = NULL;
    int rc = pf_submit(ex, fn, &x, sizeof x, &f);
    if (rc != 0)
        FAIL("pf_submit: %s", pf_strerror(rc));
    return f;
}

int32_t result_i32(pf_future *f)
{
    const void *data;
    size_t len;
    int rc = pf_future_result(f, PF_FOREVER, &data, &len);
    if (rc != 0) {
        pf_error_info info;
        pf_future_error(f, &info);
        FAIL("result: %s: %s", pf_err_name(rc), info.message);
    }
    if (len != sizeof(int32_t))
        FAIL("result has %zu bytes, want 4", len);
    int32_t x;
    memcpy(&x, data, sizeof x);
    return x;
}

int init_fails(void **state, const void *arg, size_t len, int index)
{
    (void)state;
    (void)arg;
    (void)len;
    (void)index;
    return INIT_FAIL_CODE;
}
