/*
 * The process pool: the shared-memory layout that the parent and its worker
 * processes use, and the fork server interface.
 *
 * One memfd per pool holds everything the parent and the workers share.  It
 * has no name, so nothing can be left behind in /dev/shm, and it is handed
 * to workers through the fork server (SCM_RIGHTS).  File layout:
 *
 *   [0, ctl_size)                  control region, mapped by every process:
 *                                  header, submission ring, slots, workers,
 *                                  and a medium argument area per slot
 *   ARG_BASE + s * ARG_STRIDE      slot s's argument, when it is too big to
 *                                  sit inline in the slot (sparse file)
 *   WIN_BASE + w * WIN_STRIDE      worker w's result window, for results too
 *                                  big to sit inline (sparse file)
 *   INIT_BASE                      the initializer's argument
 *
 * Argument and result areas are allocated with posix_fallocate before use,
 * so running out of memory is an error code (PF_ENOSPC), never a SIGBUS, and
 * mapped only for the copy.
 *
 * Task flow (see docs/design.md): the parent fills a free slot, marks it
 * READY and appends its index to the submission ring; a worker claims it by
 * CAS READY -> RUNNING|owner, runs it, writes the outcome into the slot,
 * marks it DONE|owner and appends the index to its own completion ring; the
 * parent's collector thread copies the outcome out, frees the slot and
 * finishes the future.  The slot state word is the truth about who owns a
 * task; the rings are only notifications.  That is what makes a worker's
 * death at any instant recoverable: the collector scans the slots owned by
 * the dead worker.
 */
#ifndef PF_PROCS_H
#define PF_PROCS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"

#define PF__SHM_MAGIC   0x636f7270726f6670ULL /* "pforproc" */
#define PF__SHM_VERSION 1

#define PF__SLOT_NONE     0xffffffffu
#define PF__ARG_INLINE    192 /* argument bytes stored in the slot itself */
#define PF__RESULT_INLINE 256 /* result (or error message) bytes in the slot */

#define PF__ARG_BASE     (1ULL << 40) /* 1 TiB */
#define PF__ARG_STRIDE   (1ULL << 32) /* the largest argument: 4 GiB (more: PF_ETOOBIG) */
#define PF__WIN_BASE     (1ULL << 45) /* 32 TiB */
#define PF__WIN_STRIDE   (1ULL << 36) /* the largest result: 64 GiB */
#define PF__INIT_BASE    (1ULL << 39) /* 512 GiB */
#define PF__LARGE_PUNCH  (1ULL << 20) /* release areas above 1 MiB after use */
#define PF__WIN_PREMAP   (1ULL << 20) /* the parent keeps each window's first MiB mapped */
#define PF__MEDIUM_TOTAL (4ULL << 20) /* medium argument areas, all slots together */
#define PF__MEDIUM_MAX   (16u << 10)  /* ... at most this much per slot */

/* Where worker `index`'s result window starts in the memfd. */
static inline uint64_t pf__win_off(int index)
{
    return PF__WIN_BASE + (uint64_t)index * PF__WIN_STRIDE;
}

/* Where a slot's argument is. */
enum pf__arg_where {
    PF__ARG_IN_SLOT = 0, /* arg_inline */
    PF__ARG_MEDIUM = 1,  /* the slot's medium area in the control region */
    PF__ARG_LARGE = 2,   /* the slot's own area at PF__ARG_BASE (mapped per task) */
};

/* Slot state word: kind in the low 4 bits, owner worker index above. */
enum pf__slot_kind {
    PF__SLOT_FREE = 0,      /* owned by the parent, unused */
    PF__SLOT_READY = 1,     /* published in the ring, waiting for a worker */
    PF__SLOT_RUNNING = 2,   /* claimed by the owner worker */
    PF__SLOT_DONE = 3,      /* outcome written by the owner worker */
    PF__SLOT_CANCELLED = 4, /* the parent withdrew it before any worker took it */
};
#define PF__SLOT_KIND(st)           ((st)&0xfu)
#define PF__SLOT_OWNER(st)          ((int)((st) >> 4))
#define PF__SLOT_STATE(kind, owner) ((uint32_t)(kind) | ((uint32_t)(owner) << 4))

enum pf__result_where { PF__RESULT_NONE = 0, PF__RESULT_INLINE_ = 1, PF__RESULT_WINDOW = 2 };

/* One task's place in shared memory.  Fields other than `state` are written
 * by the slot's owner of the moment (the parent while FREE, the worker while
 * RUNNING) and published by the release store of `state`. */
struct pf__slot {
    _Atomic uint32_t state;
    uint32_t arg_where;          /* parent: enum pf__arg_where */
    uint64_t fn;                 /* parent: the task function (same image) */
    uint64_t arg_len;            /* parent */
    uint64_t timeout_ns;         /* parent: 0 or the task's limit */
    _Atomic uint64_t started_ns; /* worker: when it started the task (0 before) */
    int32_t code;                /* worker: PF_OK or PF_ETASK */
    int32_t task_code;           /* worker: the task's own failure code */
    uint32_t result_where;       /* worker: enum pf__result_where */
    uint32_t pad;
    uint64_t result_len; /* worker */
    unsigned char arg_inline[PF__ARG_INLINE];
    unsigned char result_inline[PF__RESULT_INLINE]; /* or the error message */
};

enum pf__worker_state {
    PF__W_STARTING = 0,
    PF__W_READY = 1,
    PF__W_INIT_FAILED = 2, /* init_code/init_message say why; it exits */
    PF__W_RETIRING = 3,    /* max_tasks_per_child reached; it exits 0 */
};

/* One worker index's shared state.  A replacement process reuses the index
 * (and resets the fields it owns). */
struct pf__shm_worker {
    _Atomic uint32_t pid;
    _Atomic uint32_t state;       /* enum pf__worker_state */
    _Atomic uint32_t current;     /* slot it runs now, or PF__SLOT_NONE */
    _Atomic uint32_t window_busy; /* futex: 1 while its large result awaits copy-out */
    _Atomic uint64_t cq_tail;     /* completion ring: the worker appends */
    _Atomic uint64_t cq_head;     /* completion ring: the collector consumes */
    int32_t init_code;
    char init_message[256];
    /* followed by uint32_t cq[cq_size] */
};

struct pf__shm_header {
    uint64_t magic;
    uint32_t version;
    uint32_t n_slots;
    uint32_t n_workers;
    uint32_t ring_size; /* submission ring entries, a power of two */
    uint32_t cq_size;   /* completion ring entries per worker, a power of two */
    uint32_t pad0;
    uint64_t ring_off, slots_off, workers_off, worker_stride, ctl_size;
    uint64_t medium_off; /* medium argument areas, medium_size bytes per slot */
    uint32_t medium_size;
    uint32_t pad1;
    uint64_t fn_init, fn_fini; /* the executor's initializer/finalizer */
    uint64_t init_arg_len;     /* at PF__INIT_BASE */
    uint32_t max_tasks_per_child;
    uint32_t pad;

    /* The submission ring.  Any process may advance sq_head past an entry
     * whose slot is no longer READY; only the parent (under its pool lock)
     * writes entries and advances sq_tail. */
    _Alignas(64) _Atomic uint64_t sq_head;
    _Alignas(64) _Atomic uint64_t sq_tail;
    _Alignas(64) _Atomic uint32_t sq_seq;             /* futex: bumped after each publish */
    _Atomic uint32_t sq_sleepers;                     /* workers asleep on sq_seq */
    _Atomic uint32_t shutdown;                        /* 1: leave once the ring is empty */
    _Alignas(64) _Atomic uint32_t collector_sleeping; /* write the eventfd if set */
    /* Bumped by a worker once it has published (current, started_ns) for a
     * task with a time limit: the collector looks at it before checking the
     * deadlines and again after it says it sleeps, so a start it missed
     * never lets it sleep past that task's deadline (Dekker, seq_cst). */
    _Atomic uint32_t timed_starts;
};

static inline _Atomic uint32_t *pf__shm_ring(struct pf__shm_header *h)
{
    return (_Atomic uint32_t *)((char *)h + h->ring_off);
}

static inline struct pf__slot *pf__shm_slot(struct pf__shm_header *h, uint32_t s)
{
    return (struct pf__slot *)((char *)h + h->slots_off) + s;
}

static inline unsigned char *pf__shm_medium(struct pf__shm_header *h, uint32_t s)
{
    return (unsigned char *)h + h->medium_off + (uint64_t)s * h->medium_size;
}

static inline struct pf__shm_worker *pf__shm_worker(struct pf__shm_header *h, int w)
{
    return (struct pf__shm_worker *)((char *)h + h->workers_off + (uint64_t)w * h->worker_stride);
}

static inline _Atomic uint32_t *pf__shm_worker_cq(struct pf__shm_header *h, int w)
{
    return (_Atomic uint32_t *)(pf__shm_worker(h, w) + 1);
}

/* Map/unmap [off, off+len) of the pool's memfd; the mapping may start below
 * `off` for page alignment, *base gets the address of `off`. */
int pf__shm_map_range(int fd, uint64_t off, size_t len, int prot, void **base, void **map,
                      size_t *map_len);

/* Give the pages of [off, off+len) of the pool's memfd back (they read as
 * zeros after).  A failure only leaves the memory held. */
void pf__shm_punch(int fd, uint64_t off, uint64_t len);

/* The worker process's main loop; never returns. */
__attribute__((noreturn)) void pf__proc_worker_main(int memfd, int evfd, int index);

/*
 * The fork server (forkserver.c): one per program, started by pf_init() or by
 * the first process pool, used by every process pool.
 */

/* Take a use of the fork server, starting it if needed (also when the one
 * running was killed: it is reaped and replaced).  `explicit_init`:
 * called from pf_init.  PF_EFORKUNSAFE if it must start and this process
 * already runs threads. */
int pf__forkserver_acquire(bool explicit_init);
void pf__forkserver_release(void);

/* Open a channel for one pool: the fork server gets the pool's memfd and
 * eventfd and will fork its workers; *chan is the pool's end. */
int pf__forkserver_register(int memfd, int evfd, int *chan);

/* Test hooks (tests/fault/test_procpool_faults.c); left alone in normal use.
 * pf__fs_fail_spawns: the fork server answers this many spawn requests with
 * a failure (EAGAIN) before it forks again; set it before the fork server
 * starts (the server counts down its own copy; workers start with 0).
 * pf__pp_cancel_gap_hook: called by the cancel of a running process-pool task
 * between killing its worker (and unlocking) and finishing its future. */
extern int pf__fs_fail_spawns;
/* Test hook: when > 0, the socket buffers (SO_SNDBUF, SO_RCVBUF) of each pool
 * channel registered from then on, in bytes: a few messages fill them, as
 * hundreds of workers' requests and answers fill the default ones. */
extern int pf__fs_chan_buffer;
extern void (*pf__pp_cancel_gap_hook)(void);
/* Test hook: when set, the collector calls it in every round after it has
 * drained the workers' completion rings and before it reads the fork
 * server's messages (without a lock held): a test blocks it there to hold
 * results published meanwhile back while the fork server dies.  Set it
 * before the pool is created and clear it after it is destroyed (a plain
 * pointer: thread creation and join order the accesses). */
extern void (*pf__pp_collect_gap_hook)(void);

/* Messages on a pool channel. */
enum pf__fs_msg_type {
    PF__FS_SPAWN = 1,   /* pool -> server: fork worker `index` */
    PF__FS_KILL = 2,    /* pool -> server: SIGKILL worker `index` if it is `pid` */
    PF__FS_CLOSE = 3,   /* pool -> server: kill what is left, then close */
    PF__FS_SPAWNED = 4, /* server -> pool: worker `index` is `pid` (status: errno if pid 0) */
    PF__FS_EXITED = 5,  /* server -> pool: worker `index`/`pid` ended, wait status */
};

struct pf__fs_msg {
    int32_t type;
    int32_t index;
    int32_t pid;
    int32_t status;
};

#endif /* PF_PROCS_H */
