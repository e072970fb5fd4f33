/* A program outside the pfor tree on the PF_MPI kind: sums squares 0..9 on
 * the worker ranks (tasks go by registered id: every rank runs this binary). */
#include <pfor/mpi.h>
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
PF_REGISTER(square)

int main(int argc, char **argv)
{
    if (pf_mpi_init(&argc, &argv, NULL) != PF_OK) /* worker ranks stay in here */
        return 1;
    pf_executor *ex;
    if (pf_executor_create(&ex, PF_MPI, NULL) != PF_OK)
        return 1;
    pf_future *fs[10];
    for (int i = 0; i < 10; i++)
        if (pf_submit(ex, square, &i, sizeof i, &fs[i]) != PF_OK)
            return 1;
    int sum = 0;
    for (int i = 0; i < 10; i++) {
        const void *r;
        if (pf_future_result(fs[i], PF_FOREVER, &r, NULL) != PF_OK)
            return 1;
        sum += *(const int *)r;
        pf_future_release(fs[i]);
    }
    pf_executor_destroy(ex);
    pf_mpi_finalize();
    printf("consumer_mpi: %d ok\n", sum);
    return 0;
}
