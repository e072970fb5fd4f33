/* A program outside the pfor tree: sums squares 0..9 on a process pool. */
#include <pfor/pfor.h>
#include <stdio.h>
#include <string.h>

static int square(pf_task *t, const void *arg, size_t len)
{
    int x;
    if (len != sizeof x)
        return pf_task_fail(t, 1, "bad argument");
    memcpy(&x, arg, sizeof x);
    x *= x;
    return pf_task_set_result(t, &x, sizeof x);
}

int main(void)
{
    pf_executor *ex;
    if (pf_executor_create(&ex, PF_PROCESSES, NULL) != 0)
        return 1;
    pf_future *fs[10];
    for (int i = 0; i < 10; i++)
        if (pf_submit(ex, square, &i, sizeof i, &fs[i]) != 0)
            return 1;
    int sum = 0;
    for (int i = 0; i < 10; i++) {
        const void *r;
        if (pf_future_result(fs[i], PF_FOREVER, &r, NULL) != 0)
            return 1;
        sum += *(const int *)r;
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
    printf("consumer: %d %s\n", sum, pf_strerror(PF_OK) ? "ok" : "?");
    return 0;
}
