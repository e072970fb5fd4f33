/*
 * pfor/mpi.h - the PF_MPI executor kind: the same submission code, with its
 * workers on the ranks of an MPI job (Open MPI), on one machine or many.
 *
 *     int main(int argc, char **argv)
 *     {
 *         pf_init();                        // process pools too: before MPI's threads
 *         pf_mpi_init(&argc, &argv, NULL); // worker ranks serve tasks here and exit
 *         pf_executor *ex;
 *         pf_executor_create(&ex, PF_MPI, NULL);  // rank 0 only gets this far
 *         ... pf_submit / pf_map / pf_parallel_for as on any kind ...
 *         pf_executor_destroy(ex);
 *         pf_mpi_finalize();
 *     }
 *
 *     mpirun -n 5 ./program          # rank 0 submits, ranks 1-4 run tasks
 *
 * Rank 0 runs the program; every other rank runs tasks that rank 0 sends it until rank
 * 0 calls pf_mpi_finalize(), then exits inside pf_mpi_init(). Tasks cross by registered
 * id (PF_REGISTER in task.h), never by address: ranks are separate programs.  Arguments
 * and results are copied in MPI messages, up to 2 GiB less a 320-byte header each (a
 * larger argument: pf_submit returns PF_ETOOBIG; a larger result fails its future with
 * it). Done-callbacks run on rank 0's engine thread.  Each worker rank runs its tasks
 * on a local thread pool of `threads_per_rank` threads (one rank per machine can use
 * all its cores). See docs/mpi.md for running on a cluster and the failure semantics.
 *
 * Link with pfor_mpi_static (this tree's CMake target; installed:
 * `pkg-config --libs pfor-mpi`) and MPI.
 */
#ifndef PFOR_MPI_H
#define PFOR_MPI_H

#include <stdbool.h>

#include "pfor/executor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_mpi_opts {
    /* Threads running tasks on each worker rank; 0: $PFOR_MPI_THREADS, else 1. */
    int threads_per_rank;
    /* Tasks sent to a rank ahead of its free threads, to hide the message
     * latency; 0: $PFOR_MPI_PREFETCH, else 2 per thread. */
    int prefetch;
    /* A worker rank running tasks that has not been heard from (results or
     * its heartbeat, sent every 100 ms) for this many seconds is taken for
     * dead and its tasks fail with PF_ERANKDIED; at pf_mpi_finalize, any
     * rank silent that long is; 0: $PFOR_MPI_DEAD_AFTER, else 3 s. */
    double dead_after;
} pf_mpi_opts;

/* Initialise MPI (MPI_Init_thread) and the PF_MPI executor kind.  On rank 0
 * it returns PF_OK and the program goes on.  On every other rank it serves
 * tasks until rank 0 calls pf_mpi_finalize() (or is gone), finalises MPI and
 * calls exit(0): code after it runs on rank 0 only.  Call it at the top of
 * main(), before starting threads; a program that also uses process pools
 * calls pf_init() just before it (MPI starts threads, after which the fork
 * server could not start: see the fork rule in docs/design.md).  argc and
 * argv: main()'s, or both NULL; opts may be NULL.  From pf_mpi_init to
 * pf_mpi_finalize pfor's engine thread is the only caller of MPI on rank 0
 * (MPI_THREAD_SERIALIZED, MPI_COMM_WORLD): the program makes no MPI calls of
 * its own meanwhile.
 * Errors: PF_EINVAL (bad arguments: one of argc and argv NULL, a negative
 * count, a NULL string among the first *argc; or bad options), PF_EBUSY (called
 * twice, or
 * after pf_mpi_finalize: MPI starts once per process; or the program
 * initialised MPI itself), PF_ENOTSUP (the MPI library lacks the thread
 * support this needs). */
PF_EXTERN int pf_mpi_init(int *argc, char ***argv, const pf_mpi_opts *opts);

/* Stop the worker ranks and finalise MPI (rank 0; destroy every PF_MPI
 * executor first).  When a rank died during the run, or is found dead now
 * (silent for dead_after, or no answer within 5 s: a rank killed while it
 * had no work), no rank calls MPI_Finalize (Open MPI 4's closing fence can
 * wait forever for the dead one); under mpirun --enable-recovery the job
 * still ends, with status 0.  Safe to call when pf_mpi_init was not; from
 * a done-callback (rank 0's engine thread, which it would wait for) it does
 * nothing, and so does a second call (one made at the same time from
 * another thread returns once the first has finished). */
PF_EXTERN void pf_mpi_finalize(void);

/* This process's rank and the job's size; 0 and 1 before pf_mpi_init. */
PF_EXTERN int pf_mpi_rank(void);
PF_EXTERN int pf_mpi_size(void);

/* Worker ranks still alive (rank 0 not counted), and the threads each runs
 * tasks on; 0 and 1 before pf_mpi_init or on a worker rank. */
PF_EXTERN int pf_mpi_live_workers(void);
PF_EXTERN int pf_mpi_threads_per_rank(void);

/* True when this process was started by mpirun (Open MPI's environment). */
PF_EXTERN bool pf_mpi_launched(void);

#ifdef __cplusplus
}
#endif

#endif /* PFOR_MPI_H */
