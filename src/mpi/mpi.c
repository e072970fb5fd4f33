/*
 * The PF_MPI executor kind (see pfor/mpi.h and docs/mpi.md).
 *
 * DESIGN
 *   Rank 0 runs the program.  pf_mpi_init() starts one engine thread there,
 *   the only thread that calls MPI between MPI_Init_thread and
 *   MPI_Finalize (so MPI_THREAD_SERIALIZED is all it needs).  Every PF_MPI
 *   executor hands its futures to the engine through its pending queue; the
 *   engine sends each task to the worker rank with the fewest tasks in
 *   flight that still has room (threads + prefetch), so a slow rank simply
 *   gets fewer tasks (dynamic dispatch), and turns the answers back into
 *   finished futures.
 *
 *   Every other rank runs worker_main(): its main thread is the only one
 *   calling MPI; tasks run on a local PF_THREADS executor (one per PF_MPI
 *   executor of rank 0), whose done-callbacks queue the finished futures for
 *   the main thread to send back.
 *
 *   Messages (MPI_BYTE, a struct msg header then a payload; every rank runs
 *   the same build, so the native layout is shared; one message is at most
 *   INT_MAX bytes, MPI's count, so a payload at most PAYLOAD_MAX):
 *     rank 0 -> worker, tag TAG_DOWN: CREATE (an executor: threads, the
 *       initializer and finalizer by registered id, the initializer's
 *       argument), TASK (id, function by registered id, timeout, argument),
 *       DESTROY (an executor), STOP (the end), FIN (after BYE: code 1 leave
 *       without MPI_Finalize, 0 finalise), PING (rank 0 is alive).
 *     worker -> rank 0, tag TAG_UP: RESULT (id, code, task code, message,
 *       result bytes), DESTROYED (an executor), HEARTBEAT, BYE (the answer
 *       to STOP, its last message).
 *   Sends are never waited on one by one: Open MPI completes a send only
 *   once the receiver has taken it in, so both sides keep theirs in flight
 *   and test them as they go.  A send that MPI refuses is never dropped
 *   silently: a TASK fails its future, any other message to a rank takes
 *   that rank for dead; a worker that cannot send to rank 0 leaves.
 *   MPI keeps messages between two ranks on one tag in order, so a TASK
 *   never overtakes its executor's CREATE.
 *
 *   The end (pf_mpi_finalize): rank 0 sends STOP; each worker destroys what
 *   is left, sends BYE (its last message) and waits for FIN.  Rank 0 reads
 *   until every live rank has said BYE (so that no worker is left with a
 *   send that can never complete), takes a rank that does not for dead, and
 *   only then sends FIN with the verdict: finalise MPI, or (a rank died)
 *   leave without MPI_Finalize, whose closing fence in Open MPI 4 can wait
 *   forever for the dead rank.
 *
 *   Failures.  A task's error travels back with its code and message.  A
 *   rank that dies cannot be seen through MPI (Open MPI 4 has no fault
 *   notification; run with `mpirun --enable-recovery` so that the job goes
 *   on), so workers send a heartbeat every HEARTBEAT_NS (from their main
 *   thread, which never blocks on a task: executors are destroyed on helper
 *   threads) and rank 0 takes a rank with work in flight that it has not
 *   heard from for dead_after seconds (or whose message stops half way:
 *   see recv_msg) for dead: its tasks fail with
 *   PF_ERANKDIED (or are retried elsewhere when the submitter asked for
 *   retries) and it gets no more.  Silence is judged only right after
 *   reading every message waiting, so time rank 0's engine spent elsewhere
 *   (a long done-callback) never counts against a rank.  Workers leave when
 *   rank 0 has been silent for ROOT_SILENCE_NS, so a dead rank 0 leaves no
 *   rank behind.  A task past its time limit fails with PF_ETASKTIMEOUT at
 *   once; a remote task cannot be stopped: the rank's local pool answers
 *   PF_ETASKTIMEOUT at its own deadline (that answer frees the slot and is
 *   dropped), while the thread runs on until the task returns.
 *
 * Lock rules: engine.lock guards the engine and every field of every mpix
 * marked "engine"; futures are finished (user callbacks) only after it is
 * released.  Order: engine.lock -> future lock.
 */
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "pfor/mpi.h"

#define TAG_DOWN 1
#define TAG_UP   2

#define HEARTBEAT_NS    100000000ull   /* workers: every 100 ms */
#define PING_NS         500000000ull   /* rank 0: every 500 ms */
#define ROOT_SILENCE_NS 10000000000ull /* workers leave after 10 s without rank 0 */
#define BYE_WAIT_NS     5000000000ull  /* at the end: rank 0 waits this long for BYEs */
#define MESSAGE_MAX     256

enum msg_kind {
    M_CREATE = 1,
    M_TASK,
    M_DESTROY,
    M_STOP,
    M_PING,
    M_RESULT,
    M_DESTROYED,
    M_HEARTBEAT,
    M_BYE,
    M_FIN,
};

struct msg {
    uint32_t kind;
    uint32_t exec;    /* executor id */
    uint64_t task;    /* task id (TASK, RESULT) */
    uint64_t fn;      /* TASK: task function id; CREATE: initializer id */
    uint64_t fn2;     /* CREATE: finalizer id */
    uint64_t timeout; /* TASK: ns, 0 none */
    int32_t code;     /* RESULT: PF_OK or the future's code */
    int32_t task_code;
    int32_t threads; /* CREATE */
    int32_t pad;
    uint64_t len; /* payload bytes after the header */
    char message[MESSAGE_MAX];
};

/* The largest argument, result or initializer argument: a message's size is
 * an int in MPI. */
#define PAYLOAD_MAX ((size_t)INT_MAX - sizeof(struct msg))

/* ------------------------------------------------------------- shared -- */

static int g_rank, g_size = 1;
static bool g_initialized;
static bool g_finalized; /* pf_mpi_finalize ran: MPI cannot start again */
static pf_mpi_opts g_opts;

int pf_mpi_rank(void)
{
    return g_rank;
}

int pf_mpi_size(void)
{
    return g_size;
}

int pf_mpi_threads_per_rank(void)
{
    return g_initialized && g_rank == 0 ? g_opts.threads_per_rank : 1;
}

bool pf_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* Idle back-off of a polling loop (MPI has no wait that a pool's thread could
 * interrupt): poll 64 more times after the last event, then sleep 2 us,
 * 4 us, ... up to max_ns between polls.  The polls stay few on purpose:
 * under mpirun's default binding a rank's threads share one core, and every
 * poll is time taken from the task running there.  idle_reset() at each
 * event. */
struct idle {
    unsigned polls;
};

static void idle_reset(struct idle *i)
{
    i->polls = 0;
}

/* How long to sleep now; 0: poll again at once. */
static long idle_next_sleep(struct idle *i, long max_ns)
{
    unsigned n = i->polls++;
    if (n < 64) {
        pf__cpu_relax();
        return 0;
    }
    n -= 64;
    long ns = 2000L << (n < 12 ? n : 12);
    return ns < max_ns ? ns : max_ns;
}

static void back_off(struct idle *i, long max_ns)
{
    long ns = idle_next_sleep(i, max_ns);
    if (ns)
        sleep_ns(ns);
}

/* A message being received may take this long per byte beyond the caller's
 * patience (10 MB/s: 2 GiB in 215 s) before its sender is taken for gone. */
#define RECV_NS_PER_BYTE 100ull

/* Receive the message that MPI_Iprobe found (this thread is the only one
 * receiving, so it is the one the receive matches); malloc()ed, NULL on
 * failure.  Not MPI_Recv: should the sender die with the message half sent,
 * that would wait forever (Open MPI 4 reports no failure), so the receive is
 * polled for patience_ns plus RECV_NS_PER_BYTE a byte; past that *gone is
 * set and the receive is let go with its buffer (MPI may still write
 * there: leaked on purpose). */
static struct msg *recv_msg(int source, int tag, MPI_Status *st, size_t *total,
                            uint64_t patience_ns, bool *gone)
{
    *gone = false;
    int count = 0;
    MPI_Get_count(st, MPI_BYTE, &count);
    if (count == MPI_UNDEFINED || count < 0)
        count = 0;
    struct msg *m = malloc(count > (int)sizeof *m ? (size_t)count : sizeof *m);
    if (!m)
        return NULL;
    MPI_Request req;
    if (MPI_Irecv(m, count, MPI_BYTE, source, tag, MPI_COMM_WORLD, &req) != MPI_SUCCESS) {
        free(m);
        return NULL;
    }
    uint64_t deadline = pf__now_ns() + patience_ns + (uint64_t)count * RECV_NS_PER_BYTE;
    struct idle idle = {0};
    for (;;) {
        int done = 0;
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            *gone = true; /* the request's state is unknown: let it go */
            return NULL;
        }
        if (done)
            break;
        if (pf__now_ns() >= deadline) {
            MPI_Request_free(&req); /* m stays: MPI may still write into it */
            *gone = true;
            return NULL;
        }
        back_off(&idle, 1000000);
    }
    if (count < (int)sizeof *m) {
        free(m);
        return NULL;
    }
    *total = (size_t)count;
    return m;
}

/* A message to send: header and payload in one buffer, with its MPI request
 * once the send is started.  Both sides keep the sends they started in a
 * list and test them as they go, never waiting for one: Open MPI completes
 * a send only once the receiver has taken it in. */
struct out {
    MPI_Request req;
    int dest;
    struct out *next;
    struct msg m; /* then m.len payload bytes */
};

/* NULL without memory. */
static struct out *out_new(uint32_t kind, uint32_t exec, const void *payload, size_t len)
{
    struct out *o = calloc(1, sizeof *o + len);
    if (!o)
        return NULL;
    o->m.kind = kind;
    o->m.exec = exec;
    o->m.len = len;
    if (len)
        memcpy(&o->m + 1, payload, len);
    return o;
}

/* Start sending o to dest and keep it in *inflight.  MPI_SUCCESS, or MPI's
 * error code when it refuses the send: o is then the caller's again, to
 * fail what it carried (a message is never dropped without a word). */
static int out_send(struct out **inflight, struct out *o, int dest, int tag)
{
    o->dest = dest;
    if (o->m.len > PAYLOAD_MAX)
        return MPI_ERR_COUNT; /* callers check sizes first; the int would wrap */
    int rc = MPI_Isend(&o->m, (int)(sizeof o->m + o->m.len), MPI_BYTE, dest, tag, MPI_COMM_WORLD,
                       &o->req);
    if (rc != MPI_SUCCESS)
        return rc;
    o->next = *inflight;
    *inflight = o;
    return MPI_SUCCESS;
}

/* MPI's words for an error code, in buf. */
static const char *mpi_error_string(int rc, char *buf)
{
    int n = 0;
    if (MPI_Error_string(rc, buf, &n) != MPI_SUCCESS)
        snprintf(buf, MPI_MAX_ERROR_STRING, "MPI error %d", rc);
    return buf;
}

/* Let MPI finish o without us: its buffer stays (MPI may still read it). */
static void out_let_go(struct out *o)
{
    MPI_Request_free(&o->req);
    o->next = NULL; /* leaked on purpose: a few bytes */
}

/* Free the sends that completed; sends to a rank marked in dead (may be
 * NULL) never will, and are let go.  Whether some are still in flight. */
static bool out_pump(struct out **inflight, const bool *dead)
{
    for (struct out **p = inflight; *p;) {
        struct out *o = *p;
        int done = 0;
        if (dead && dead[o->dest]) {
            *p = o->next;
            out_let_go(o);
            continue;
        }
        MPI_Test(&o->req, &done, MPI_STATUS_IGNORE);
        if (done) {
            *p = o->next;
            free(o);
        } else {
            p = &o->next;
        }
    }
    return *inflight != NULL;
}

/* ============================================================ worker side */

/* An executor of rank 0's, run on a local PF_THREADS pool.  Worker main
 * thread only, except `gone`. */
struct wexec {
    uint32_t id;
    int threads; /* of its local pool */
    pf_executor *ex;
    bool ack;          /* DESTROY asked for it: answer DESTROYED once gone */
    pthread_t helper;  /* destroys it (see worker_destroy) */
    bool has_helper;   /* helper started: join it */
    _Atomic bool gone; /* its pool is destroyed; release: its callbacks ran before */
    struct wexec *next;
};

struct wdone {
    uint32_t exec;
    uint64_t task;
    pf_future *f;
    struct wdone *next;
};

/* Finished futures, queued by the local pools' done-callbacks (any thread),
 * drained by the worker's main thread, which sleeps on w_done_cond when it
 * has nothing to do and is woken by the next finished task. */
static pf__mutex w_done_lock;
static pf__cond w_done_cond;
static struct wdone *w_done_head, **w_done_tail = &w_done_head; /* w_done_lock */
static bool w_main_waiting;                                     /* w_done_lock */

/* Worker main thread only: tasks handed to the local pools and not yet
 * answered, and the threads of those pools. */
static size_t w_local_tasks;
static int w_local_threads;

static void on_local_done(pf_future *f, void *user)
{
    struct wdone *d = user;
    (void)f;
    pf__mutex_lock(&w_done_lock);
    *w_done_tail = d;
    w_done_tail = &d->next;
    bool wake = w_main_waiting;
    pf__mutex_unlock(&w_done_lock);
    if (wake)
        pf__cond_signal(&w_done_cond);
}

/* The worker's main thread has nothing to receive or send right now: spin a
 * little, then sleep until a local task finishes or the back-off's time is up.
 * While every local thread is busy and another task waits behind them, rank 0
 * has nothing urgent for this rank (the next task is already here), so the
 * sleeps may grow long; otherwise they stay short, for the next task to be
 * picked up soon after rank 0 sends it.  Every wake-up polls MPI on a core a
 * task may be using, so fewer of them is faster tasks. */
static void worker_idle(struct idle *idle)
{
    bool saturated = w_local_tasks > (size_t)w_local_threads;
    long ns = idle_next_sleep(idle, saturated ? 2000000 : 200000);
    if (!ns)
        return;
    uint64_t deadline = pf__now_ns() + (uint64_t)ns;
    pf__mutex_lock(&w_done_lock);
    w_main_waiting = true;
    while (!w_done_head)
        if (!pf__cond_wait_until(&w_done_cond, &w_done_lock, deadline))
            break;
    w_main_waiting = false;
    pf__mutex_unlock(&w_done_lock);
}

static uint64_t w_last_root; /* worker main thread: when rank 0 was last heard */
static bool w_skip_finalize; /* worker main thread: FIN said a rank died */

static void leave_if_root_silent(uint64_t now)
{
    if (now - w_last_root > ROOT_SILENCE_NS) {
        fprintf(stderr, "pfor: MPI rank %d: rank 0 silent for %.0f s, leaving\n", g_rank,
                ROOT_SILENCE_NS / 1e9);
        _exit(1); /* no MPI_Finalize: it would wait for rank 0 */
    }
}

static struct out *w_sending; /* worker main thread: sends to rank 0 in flight */

/* MPI refused a message to rank 0: nothing can reach it any more, so leave;
 * rank 0 takes this rank for dead (its tasks fail with PF_ERANKDIED). */
static void leave_unheard(int rc)
{
    char buf[MPI_MAX_ERROR_STRING];
    fprintf(stderr, "pfor: MPI rank %d cannot send to rank 0 (%s), leaving\n", g_rank,
            mpi_error_string(rc, buf));
    _exit(1);
}

/* A header-only message to rank 0. */
static void send_up(const struct msg *m)
{
    struct out *o = out_new(0, 0, NULL, 0);
    if (!o)
        abort(); /* cannot even say so: rank 0 will see a dead rank */
    o->m = *m;
    o->m.len = 0;
    int rc = out_send(&w_sending, o, 0, TAG_UP);
    if (rc != MPI_SUCCESS)
        leave_unheard(rc);
}

/* After FIN: let the last sends leave.  Rank 0 has had our BYE, so they
 * are complete and this ends at once; bounded all the same, and what is
 * still in flight then is let go: rank 0 no longer needs it, and
 * MPI_Finalize must not wait for it. */
static void flush_up(void)
{
    struct idle idle = {0};
    uint64_t until = pf__now_ns() + BYE_WAIT_NS;
    while (out_pump(&w_sending, NULL) && pf__now_ns() < until)
        back_off(&idle, 1000000);
    while (w_sending) {
        struct out *o = w_sending;
        w_sending = o->next;
        out_let_go(o);
    }
}

static void send_result(struct wdone *d)
{
    struct msg hdr = {.kind = M_RESULT, .exec = d->exec, .task = d->task};
    const void *data = NULL;
    size_t len = 0;
    int rc = pf_future_result(d->f, 0, &data, &len);
    if (rc != PF_OK) {
        pf_error_info info;
        pf_future_error(d->f, &info);
        hdr.code = info.code ? info.code : rc;
        hdr.task_code = info.task_code;
        /* the task's own message, as on every kind (it is what users match) */
        const char *why = info.message[0] ? info.message : pf_strerror(hdr.code);
        size_t n = strlen(why);
        if (n >= sizeof hdr.message)
            n = sizeof hdr.message - 1;
        memcpy(hdr.message, why, n);
        hdr.message[n] = '\0';
        data = NULL;
        len = 0;
    } else if (len > PAYLOAD_MAX) {
        hdr.code = PF_ETOOBIG;
        snprintf(hdr.message, sizeof hdr.message,
                 "rank %d: a %zu-byte result is too big for one MPI message", g_rank, len);
        len = 0;
    }
    struct out *o = out_new(0, 0, data, len);
    if (!o) {
        hdr.code = PF_ENOMEM;
        snprintf(hdr.message, sizeof hdr.message, "rank %d: no memory for the result", g_rank);
        send_up(&hdr);
    } else {
        hdr.len = len;
        o->m = hdr; /* the payload after it stays */
        int sent = out_send(&w_sending, o, 0, TAG_UP);
        if (sent != MPI_SUCCESS) { /* the task fails with MPI's reason instead */
            free(o);
            char buf[MPI_MAX_ERROR_STRING];
            hdr.code = PF_ESYS;
            hdr.task_code = 0;
            snprintf(hdr.message, sizeof hdr.message,
                     "rank %d: MPI could not send the %zu-byte result: %.150s", g_rank, len,
                     mpi_error_string(sent, buf));
            send_up(&hdr);
        }
    }
    pf_future_release(d->f);
    free(d);
}

static struct wexec *find_wexec(struct wexec *list, uint32_t id)
{
    for (; list; list = list->next)
        if (list->id == id)
            return list;
    return NULL;
}

/* A task for executor e: run it on the local pool; failures to even start it
 * are answered at once. */
static void worker_task(struct wexec *e, const struct msg *m)
{
    struct wdone *d = calloc(1, sizeof *d);
    if (!d)
        abort(); /* cannot even say so: rank 0 will see a dead rank */
    d->exec = m->exec;
    d->task = m->task;
    struct msg fail = {.kind = M_RESULT, .exec = m->exec, .task = m->task};
    pf_fn fn = NULL;
    if (!e) {
        fail.code = PF_EPROTO;
        snprintf(fail.message, sizeof fail.message, "rank %d: unknown executor %u", g_rank,
                 m->exec);
    } else if (pf_lookup_id(m->fn, &fn) != PF_OK) {
        fail.code = PF_ENOTREG;
        snprintf(fail.message, sizeof fail.message,
                 "rank %d: no task registered with id %016llx in this program", g_rank,
                 (unsigned long long)m->fn);
    } else {
        pf_submit_opts so = {.timeout = m->timeout ? m->timeout / 1e9 : -1};
        int rc = pf_submit_ex(e->ex, (pf_task_fn)fn, m + 1, m->len, &so, &d->f);
        if (rc == PF_OK) {
            w_local_tasks++;
            pf_future_add_done_callback(d->f, on_local_done, d);
            return;
        }
        fail.code = rc;
        snprintf(fail.message, sizeof fail.message, "rank %d: cannot run the task: %s", g_rank,
                 pf_strerror(rc));
    }
    send_up(&fail);
    free(d);
}

static pf_worker_init_fn lookup_init(uint64_t id)
{
    pf_fn fn = NULL;
    return id && pf_lookup_id(id, &fn) == PF_OK ? (pf_worker_init_fn)fn : NULL;
}

/* A rank bound to fewer CPUs than it runs task threads (mpirun binds each
 * rank to one core by default for 2 ranks or fewer) runs them in turn: say so
 * once, with the way out. */
static void warn_if_bound_tight(int threads)
{
    static bool warned;
    cpu_set_t set;
    if (warned || sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    int cpus = CPU_COUNT(&set);
    if (cpus < threads) {
        fprintf(stderr,
                "pfor: MPI rank %d runs %d task threads on the %d CPU%s it is bound to; "
                "start mpirun with --bind-to none or --map-by ppr:1:node:PE=%d\n",
                g_rank, threads, cpus, cpus == 1 ? "" : "s", threads);
        warned = true;
    }
}

static void worker_create(struct wexec **list, const struct msg *m)
{
    struct wexec *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    pf_executor_opts o = PF_EXECUTOR_OPTS_DEFAULT;
    o.max_workers = m->threads;
    o.initializer = lookup_init(m->fn);
    pf_fn fini = NULL;
    if (m->fn2 && pf_lookup_id(m->fn2, &fini) == PF_OK)
        o.finalizer = (pf_worker_fini_fn)fini;
    o.init_arg = m->len ? (const void *)(m + 1) : NULL;
    o.init_arg_len = m->len;
    e->id = m->exec;
    e->threads = m->threads;
    warn_if_bound_tight(m->threads);
    if (pf_executor_create(&e->ex, PF_THREADS, &o) != PF_OK) {
        free(e); /* its tasks are answered "unknown executor" */
        return;
    }
    w_local_threads += e->threads;
    e->next = *list;
    *list = e;
}

static void *destroy_main(void *arg)
{
    struct wexec *e = arg;
    pf_executor_destroy(e->ex); /* waits for its tasks; callbacks queue them */
    atomic_store_explicit(&e->gone, true, memory_order_release);
    return NULL;
}

/* Take executor e out of service and destroy its pool on a helper thread:
 * that waits for its tasks, a timed-out one included (it runs on until it
 * returns), and the main thread must go on sending heartbeats meanwhile or
 * rank 0 would take this healthy rank for dead.  reap_dying() finishes. */
static void worker_destroy(struct wexec *e, struct wexec **dying, bool ack)
{
    w_local_threads -= e->threads;
    e->ack = ack;
    e->has_helper = pthread_create(&e->helper, NULL, destroy_main, e) == 0;
    if (!e->has_helper)
        destroy_main(e); /* no thread: here, heartbeats paused */
    e->next = *dying;
    *dying = e;
}

static bool drain_done(void);

/* Executors whose pools are gone: send their last answers, then DESTROYED
 * (after them: MPI keeps our messages in order, and rank 0 retires the
 * executor on the last DESTROYED). */
static void reap_dying(struct wexec **dying)
{
    for (struct wexec **p = dying; *p;) {
        struct wexec *e = *p;
        if (!atomic_load_explicit(&e->gone, memory_order_acquire)) {
            p = &e->next;
            continue;
        }
        *p = e->next;
        if (e->has_helper)
            PF__CHECK(pthread_join(e->helper, NULL) == 0);
        drain_done();
        if (e->ack) {
            struct msg ack = {.kind = M_DESTROYED, .exec = e->id};
            send_up(&ack);
        }
        free(e);
    }
}

/* Send the answers of the finished local tasks; whether there were any. */
static bool drain_done(void)
{
    pf__mutex_lock(&w_done_lock);
    struct wdone *d = w_done_head;
    w_done_head = NULL;
    w_done_tail = &w_done_head;
    pf__mutex_unlock(&w_done_lock);
    bool any = d != NULL;
    while (d) {
        struct wdone *next = d->next;
        send_result(d);
        w_local_tasks--;
        d = next;
    }
    return any;
}

/* The next message from rank 0, or NULL if none waits.  Hearing from rank 0
 * resets its silence clock and the caller's back-off. */
static struct msg *next_from_root(struct idle *idle)
{
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(0, TAG_DOWN, MPI_COMM_WORLD, &flag, &st);
    if (!flag)
        return NULL;
    size_t total;
    bool gone;
    struct msg *m = recv_msg(0, TAG_DOWN, &st, &total, ROOT_SILENCE_NS, &gone);
    if (gone) {
        fprintf(stderr, "pfor: MPI rank %d: a message from rank 0 never arrived whole, leaving\n",
                g_rank);
        _exit(1); /* rank 0 is gone: no MPI_Finalize, it would wait for it */
    }
    if (!m)
        abort();
    w_last_root = pf__now_ns();
    idle_reset(idle);
    return m;
}

/* After BYE: wait for rank 0's FIN (it comes once every rank has answered
 * STOP or been given up on); whether it says to skip MPI_Finalize. */
static bool await_fin(void)
{
    struct idle idle = {0};
    for (;;) {
        struct msg *m = next_from_root(&idle);
        if (m) {
            bool fin = m->kind == M_FIN, skip = m->code == 1;
            free(m); /* anything else (pings) is moot now */
            if (fin)
                return skip;
            continue;
        }
        out_pump(&w_sending, NULL);
        leave_if_root_silent(pf__now_ns());
        back_off(&idle, 1000000);
    }
}

static void worker_main(void)
{
    pf__mutex_init(&w_done_lock);
    pf__cond_init(&w_done_cond);
    struct wexec *execs = NULL, *dying = NULL;
    uint64_t last_beat = 0;
    w_last_root = pf__now_ns();
    /* Started by mpirun (or its daemon) on this machine: leave with it. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct idle idle = {0};
    bool stop = false;
    /* After STOP, on until the executors left are destroyed (heartbeats go
     * on meanwhile: rank 0 judges silence until our BYE). */
    while (!stop || execs || dying) {
        struct msg *m = next_from_root(&idle);
        bool heard = m != NULL;
        if (m) {
            switch (m->kind) {
            case M_CREATE:
                worker_create(&execs, m);
                break;
            case M_TASK:
                worker_task(find_wexec(execs, m->exec), m);
                break;
            case M_DESTROY:
                for (struct wexec **p = &execs; *p; p = &(*p)->next) {
                    if ((*p)->id == m->exec) {
                        struct wexec *e = *p;
                        *p = e->next;
                        worker_destroy(e, &dying, true);
                        break;
                    }
                }
                if (!find_wexec(dying, m->exec)) { /* never created here: answer at once */
                    struct msg ack = {.kind = M_DESTROYED, .exec = m->exec};
                    send_up(&ack);
                }
                break;
            case M_STOP:
                stop = true;
                while (execs) { /* left open on rank 0 (normally none) */
                    struct wexec *e = execs;
                    execs = e->next;
                    worker_destroy(e, &dying, false);
                }
                break;
            default: /* M_PING */
                break;
            }
            free(m);
        }
        if (drain_done())
            idle_reset(&idle); /* the answer frees a slot: the next task is coming */
        if (dying)
            reap_dying(&dying);
        uint64_t now = pf__now_ns();
        if (now - last_beat >= HEARTBEAT_NS) {
            struct msg beat = {.kind = M_HEARTBEAT};
            send_up(&beat);
            last_beat = now;
        }
        leave_if_root_silent(now);
        out_pump(&w_sending, NULL);
        if (!heard)
            worker_idle(&idle);
    }
    drain_done();
    struct msg bye = {.kind = M_BYE};
    send_up(&bye);
    w_skip_finalize = await_fin();
    flush_up();
}

/* ============================================================ rank 0 side */

struct record {
    pf_future *f; /* the engine's reference */
    uint64_t task;
    int rank;
    uint64_t deadline; /* ns, 0: none */
    bool abandoned;    /* its future was finished (time limit): drop the answer */
    struct record *next;
};

struct mpix {
    struct pf_executor base;
    uint32_t id;                 /* immutable */
    int threads;                 /* immutable */
    struct pf__fqueue pending;   /* engine */
    struct record *inflight;     /* engine */
    size_t n_inflight;           /* engine */
    bool stopping;               /* engine: no more tasks come */
    bool destroy_sent;           /* engine */
    int acks_missing;            /* engine: DESTROYED answers still expected */
    bool *acked;                 /* engine: [size] */
    bool finished;               /* engine: workers released; `done` signalled */
    pf__cond done;               /* waited on under engine.lock */
    struct mpix *next_in_engine; /* engine; also links retired ones (engine thread) */
};

/* Invariant: every mpix in E.execs holds a reference of its own on its base
 * (taken in mpi_create, given up by the engine thread once retire_locked has
 * unlinked it), so that pf_executor_destroy from a done-callback (on the
 * engine thread, where shutdown cannot wait) never frees one the engine
 * still walks. */
static struct {
    pf__mutex lock;
    pf__cond wake;        /* submits and shutdowns wake the idle engine */
    pthread_t thread;     /* immutable once started */
    bool stop;            /* lock: pf_mpi_finalize asked */
    struct mpix *execs;   /* lock */
    uint32_t next_exec;   /* lock */
    uint64_t next_task;   /* lock */
    int *rank_load;       /* lock: [size] tasks (and DESTROYs) in flight per rank */
    bool *rank_dead;      /* lock: [size] */
    bool *rank_bye;       /* lock: [size] said BYE (the end) */
    uint64_t *rank_heard; /* lock: [size] last message (ns) */
    int live;             /* lock: worker ranks alive */
    struct out *queue;    /* lock: to send, in order (dest set) */
    struct out **queue_tail;
    struct pf__finish_list finish; /* engine thread only */
} E;

int pf_mpi_live_workers(void)
{
    if (!g_initialized || g_rank != 0)
        return 0;
    pf__mutex_lock(&E.lock);
    int n = E.live;
    pf__mutex_unlock(&E.lock);
    return n;
}

/* Whether a rank died during the run (or did not answer STOP).  Then no rank
 * calls MPI_Finalize (FIN says so to the workers): its closing fence in
 * Open MPI 4 can wait forever for the dead rank, and with --enable-recovery
 * the job ends with 0 all the same. */
static bool some_rank_died_locked(void)
{
    return E.live < g_size - 1;
}

static int capacity_per_rank(int threads)
{
    int prefetch = g_opts.prefetch > 0 ? g_opts.prefetch : 2 * threads;
    return threads + prefetch;
}

/* Queue a message for the engine to send (engine lock held). */
static void queue_locked(struct out *o, int dest)
{
    if (!o)
        return; /* out of memory: the rank will look silent and be dropped */
    o->dest = dest;
    o->next = NULL;
    *E.queue_tail = o;
    E.queue_tail = &o->next;
}

static void defer_fail(pf_future *f, int code, int rank, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void defer_fail(pf_future *f, int code, int rank, const char *fmt, ...)
{
    pf_error_info info = {.code = code, .worker_index = rank - 1, .exit_status = -1};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info.message, sizeof info.message, fmt, ap);
    va_end(ap);
    pf__finish_later(&E.finish, f, code, NULL, 0, &info);
}

/* The live rank with the fewest tasks in flight and room for one more. */
static int pick_rank_locked(int threads)
{
    int best = -1, cap = capacity_per_rank(threads);
    for (int r = 1; r < g_size; r++)
        if (!E.rank_dead[r] && E.rank_load[r] < cap &&
            (best < 0 || E.rank_load[r] < E.rank_load[best]))
            best = r;
    return best;
}

static void dispatch_locked(struct mpix *x)
{
    while (x->pending.head) {
        if (E.live == 0) {
            pf_future *f = pf__fqueue_pop(&x->pending);
            defer_fail(f, PF_ERANKDIED, 0, "no MPI worker rank is left to run the task");
            continue;
        }
        int r = pick_rank_locked(x->threads);
        if (r < 0)
            return;
        pf_future *f = pf__fqueue_pop(&x->pending);
        uint64_t id;
        if (pf_registered_name((pf_fn)f->fn, NULL, &id) != PF_OK) {
            defer_fail(f, PF_ENOTREG, 0, "the task function is not registered (PF_REGISTER)");
            continue;
        }
        struct record *rec = calloc(1, sizeof *rec);
        struct out *o = out_new(M_TASK, x->id, f->arg, f->arg_len);
        if (!rec || !o) {
            free(rec);
            free(o);
            defer_fail(f, PF_ENOMEM, 0, "no memory to send the task");
            continue;
        }
        o->m.task = rec->task = ++E.next_task;
        o->m.fn = id;
        o->m.timeout = f->timeout_ns;
        rec->f = f;
        rec->rank = r;
        rec->deadline = f->timeout_ns ? pf__now_ns() + f->timeout_ns : 0;
        rec->next = x->inflight;
        x->inflight = rec;
        x->n_inflight++;
        if (E.rank_load[r]++ == 0)
            E.rank_heard[r] = pf__now_ns(); /* its silence counts from now */
        pf__future_set_running(f, r - 1);
        queue_locked(o, r);
    }
}

/* Take rec out of x's list. */
static void unlink_record_locked(struct mpix *x, struct record *rec)
{
    for (struct record **p = &x->inflight; *p; p = &(*p)->next) {
        if (*p == rec) {
            *p = rec->next;
            x->n_inflight--;
            E.rank_load[rec->rank]--;
            return;
        }
    }
}

static struct mpix *find_mpix_locked(uint32_t id)
{
    struct mpix *x = E.execs;
    while (x && x->id != id)
        x = x->next_in_engine;
    return x;
}

/* Rank r is taken for dead; `why` ends "MPI rank <r> ..." in its tasks'
 * messages. */
static void rank_died_locked(int r, const char *why)
{
    E.rank_dead[r] = true;
    E.live--;
    for (struct mpix *x = E.execs; x; x = x->next_in_engine) {
        if (x->acks_missing > 0 && !x->acked[r]) {
            x->acked[r] = true;
            x->acks_missing--;
        }
        for (struct record *rec = x->inflight, *next; rec; rec = next) {
            next = rec->next;
            if (rec->rank != r)
                continue;
            unlink_record_locked(x, rec);
            pf_future *f = rec->f;
            if (!rec->abandoned && f->retries_left > 0 && !atomic_load(&f->cancel_requested)) {
                f->retries_left--;
                pf__fqueue_push_front(&x->pending, f); /* another rank runs it */
            } else if (!rec->abandoned) {
                defer_fail(f, PF_ERANKDIED, r,
                           "MPI rank %d %s while running the task; taken for dead", r, why);
            } else {
                pf_future_release(f);
            }
            free(rec);
        }
    }
}

/* Ranks silent for dead_after are dead.  Judged only right after a drain
 * that emptied MPI's queue (drain_up), so a rank's silence is its own, never
 * time the engine spent elsewhere (a long done-callback).  During the run a
 * rank is judged only while it has work; at the end (finale) every rank that
 * has not said BYE is, idle ones included. */
static void check_silence_locked(uint64_t now, bool at_end)
{
    double dead_after = g_opts.dead_after;
    for (int r = 1; r < g_size; r++) {
        if (E.rank_dead[r] || (at_end ? E.rank_bye[r] : E.rank_load[r] == 0) ||
            now <= E.rank_heard[r] || now - E.rank_heard[r] <= dead_after * 1e9)
            continue;
        char why[64];
        snprintf(why, sizeof why, "stopped answering (silent for %.1f s)",
                 (now - E.rank_heard[r]) / 1e9);
        rank_died_locked(r, why);
    }
}

static void check_deadlines_locked(uint64_t now)
{
    for (struct mpix *x = E.execs; x; x = x->next_in_engine) {
        for (struct record *rec = x->inflight; rec; rec = rec->next) {
            if (rec->abandoned || !rec->deadline || now < rec->deadline)
                continue;
            /* The rank's pool answers PF_ETASKTIMEOUT at its own deadline;
             * that answer frees the slot and is dropped. */
            rec->abandoned = true;
            pf_future_retain(rec->f);
            defer_fail(rec->f, PF_ETASKTIMEOUT, rec->rank,
                       "task overran its time limit of %.3f s on MPI rank %d (it runs on; its "
                       "answer will be dropped)",
                       rec->f->timeout_ns / 1e9, rec->rank);
        }
    }
}

static void handle_up(const struct msg *m, int source, size_t total)
{
    pf__mutex_lock(&E.lock);
    E.rank_heard[source] = pf__now_ns();
    if (m->kind == M_BYE)
        E.rank_bye[source] = true;
    struct mpix *x = NULL;
    if (m->kind == M_RESULT || m->kind == M_DESTROYED)
        x = find_mpix_locked(m->exec);
    if (x && m->kind == M_DESTROYED && x->acks_missing > 0 && !x->acked[source]) {
        x->acked[source] = true;
        x->acks_missing--;
    } else if (x && m->kind == M_RESULT) {
        struct record *rec = x->inflight;
        while (rec && rec->task != m->task)
            rec = rec->next;
        if (rec) {
            unlink_record_locked(x, rec);
            if (rec->abandoned) {
                pf_future_release(rec->f);
            } else if (m->code == PF_OK) {
                size_t len = total - sizeof *m;
                void *data = len ? malloc(len) : NULL;
                if (len && !data)
                    defer_fail(rec->f, PF_ENOMEM, source, "no memory for a %zu-byte result", len);
                else {
                    if (len)
                        memcpy(data, m + 1, len);
                    pf__finish_later(&E.finish, rec->f, PF_OK, data, len, NULL);
                }
            } else {
                pf_error_info info = {.code = m->code,
                                      .task_code = m->task_code,
                                      .worker_index = source - 1,
                                      .exit_status = -1};
                memcpy(info.message, m->message, sizeof info.message);
                info.message[sizeof info.message - 1] = '\0';
                pf__finish_later(&E.finish, rec->f, m->code, NULL, 0, &info);
            }
            free(rec);
        }
    }
    pf__mutex_unlock(&E.lock);
}

/* Executors whose workers have all answered DESTROY leave the engine; they
 * are linked into *retired for the engine thread to give up its reference
 * once the lock is released. */
static void retire_locked(struct mpix **retired)
{
    for (struct mpix **p = &E.execs; *p;) {
        struct mpix *x = *p;
        if (x->stopping && !x->pending.head && x->n_inflight == 0 && !x->destroy_sent) {
            x->destroy_sent = true;
            x->acks_missing = 0;
            for (int r = 1; r < g_size; r++) {
                if (E.rank_dead[r]) {
                    x->acked[r] = true;
                    continue;
                }
                x->acks_missing++;
                queue_locked(out_new(M_DESTROY, x->id, NULL, 0), r);
                if (E.rank_load[r] == 0)
                    E.rank_heard[r] = pf__now_ns();
                E.rank_load[r]++; /* the DESTROY counts as work: silence kills */
            }
        }
        if (x->destroy_sent && x->acks_missing == 0) {
            for (int r = 1; r < g_size; r++)
                if (!E.rank_dead[r])
                    E.rank_load[r]--; /* its DESTROY */
            *p = x->next_in_engine;
            x->finished = true;
            pf__cond_broadcast(&x->done);
            x->next_in_engine = *retired;
            *retired = x;
            continue;
        }
        p = &x->next_in_engine;
    }
}

/* Send what is queued; forget sends that completed.  Engine thread only. */
static struct out *sending; /* engine thread only: started, not complete */

/* MPI refused to send o (never silently dropped): a TASK fails its future;
 * any other message leaves its rank without something it needs (an
 * executor, a DESTROY, STOP), so the rank is taken for dead. */
static void send_failed_locked(struct out *o, int rc)
{
    char buf[MPI_MAX_ERROR_STRING];
    mpi_error_string(rc, buf);
    int r = o->dest;
    if (o->m.kind == M_TASK) {
        struct mpix *x = find_mpix_locked(o->m.exec);
        struct record *rec = x ? x->inflight : NULL;
        while (rec && rec->task != o->m.task)
            rec = rec->next;
        if (rec) {
            unlink_record_locked(x, rec);
            if (rec->abandoned)
                pf_future_release(rec->f);
            else
                defer_fail(rec->f, PF_ESYS, r, "MPI could not send the task to rank %d: %s", r,
                           buf);
            free(rec);
        }
    } else if (!E.rank_dead[r]) {
        char why[MPI_MAX_ERROR_STRING + 64];
        snprintf(why, sizeof why, "could not be sent to (%s)", buf);
        rank_died_locked(r, why);
    }
    free(o);
}

static void pump_sends(void)
{
    /* One look at the queue and at which ranks are dead per round, not one
     * lock per message in flight. */
    bool dead[g_size];
    pf__mutex_lock(&E.lock);
    struct out *q = E.queue;
    E.queue = NULL;
    E.queue_tail = &E.queue;
    memcpy(dead, E.rank_dead, (size_t)g_size * sizeof *dead);
    pf__mutex_unlock(&E.lock);
    while (q) {
        struct out *next = q->next;
        int rc = out_send(&sending, q, q->dest, TAG_DOWN);
        if (rc != MPI_SUCCESS) {
            pf__mutex_lock(&E.lock);
            send_failed_locked(q, rc);
            memcpy(dead, E.rank_dead, (size_t)g_size * sizeof *dead);
            pf__mutex_unlock(&E.lock);
        }
        q = next;
    }
    out_pump(&sending, dead);
}

/* Receive the messages waiting from the workers, at most DRAIN_MAX (so that
 * dispatching goes on under a flood of results).  Whether any came; *all:
 * MPI had none left, so every message sent before the call was read and
 * silence may be judged.  Engine thread only. */
#define DRAIN_MAX 256
static bool drain_up(bool *all)
{
    *all = false;
    for (int i = 0; i < DRAIN_MAX; i++) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_UP, MPI_COMM_WORLD, &flag, &st);
        if (!flag) {
            *all = true;
            return i > 0;
        }
        size_t total;
        bool gone;
        struct msg *m = recv_msg(st.MPI_SOURCE, TAG_UP, &st, &total,
                                 (uint64_t)(g_opts.dead_after * 1e9), &gone);
        if (m)
            handle_up(m, st.MPI_SOURCE, total);
        free(m);
        if (gone) { /* it died while sending: nothing more comes from it */
            pf__mutex_lock(&E.lock);
            if (!E.rank_dead[st.MPI_SOURCE])
                rank_died_locked(st.MPI_SOURCE, "died while sending a message");
            pf__mutex_unlock(&E.lock);
        }
    }
    return true;
}

/* The end (E.stop, no executor left): STOP every live rank, then read on
 * until each has said BYE, its last message (MPI keeps a rank's messages in
 * order, so all it sent before has been taken in by then and its sends can
 * complete).  A rank that falls silent for dead_after meanwhile (or does not
 * answer within BYE_WAIT_NS) is taken for dead, idle or not: MPI_Finalize
 * would wait for it forever.  Then FIN tells every rank STOPped whether to
 * call MPI_Finalize.  Engine thread only. */
static void finale(void)
{
    bool stopped[g_size];
    pf__mutex_lock(&E.lock);
    for (int r = 0; r < g_size; r++) {
        stopped[r] = r > 0 && !E.rank_dead[r];
        if (stopped[r])
            queue_locked(out_new(M_STOP, 0, NULL, 0), r);
    }
    pf__mutex_unlock(&E.lock);
    uint64_t deadline = pf__now_ns() + BYE_WAIT_NS;
    struct idle idle = {0};
    for (;;) {
        pump_sends();
        bool all, got = drain_up(&all);
        uint64_t now = pf__now_ns();
        int missing = 0;
        pf__mutex_lock(&E.lock);
        if (all)
            check_silence_locked(now, true);
        for (int r = 1; r < g_size; r++) {
            if (E.rank_dead[r] || E.rank_bye[r])
                continue;
            if (now >= deadline)
                rank_died_locked(r, "did not answer STOP");
            else
                missing++;
        }
        pf__mutex_unlock(&E.lock);
        if (!missing)
            break;
        if (got)
            idle_reset(&idle);
        else
            back_off(&idle, 100000);
    }
    pf__mutex_lock(&E.lock);
    int skip = some_rank_died_locked(); /* 1: leave without MPI_Finalize */
    for (int r = 1; r < g_size; r++) {
        if (!stopped[r])
            continue;
        struct out *o = out_new(M_FIN, 0, NULL, 0);
        if (o)
            o->m.code = skip;
        queue_locked(o, r);
    }
    pf__mutex_unlock(&E.lock);
    /* Until the FINs are out: each rank that said BYE waits for its own. */
    deadline = pf__now_ns() + BYE_WAIT_NS;
    idle_reset(&idle);
    pump_sends();
    while (sending && pf__now_ns() < deadline) {
        back_off(&idle, 100000);
        pump_sends();
        bool all;
        drain_up(&all); /* nothing is expected; keep MPI's queue short */
    }
    while (sending) {
        struct out *o = sending;
        sending = o->next;
        out_let_go(o);
    }
}

static void *engine_main(void *arg)
{
    (void)arg;
    uint64_t last_ping = 0;
    struct idle idle = {0};
    for (;;) {
        /* Read first, judge after: see check_silence_locked. */
        bool all, got = drain_up(&all);
        uint64_t now = pf__now_ns();
        struct mpix *retired = NULL;
        pf__mutex_lock(&E.lock);
        bool busy = false;
        for (struct mpix *x = E.execs; x; x = x->next_in_engine) {
            dispatch_locked(x);
            busy = busy || x->n_inflight > 0 || x->pending.head || x->destroy_sent;
        }
        if (all)
            check_silence_locked(now, false);
        check_deadlines_locked(now);
        retire_locked(&retired);
        if (now - last_ping >= PING_NS) {
            for (int r = 1; r < g_size; r++)
                if (!E.rank_dead[r])
                    queue_locked(out_new(M_PING, 0, NULL, 0), r);
            last_ping = now;
        }
        bool stop = E.stop && !E.execs;
        bool quiet = !busy && !E.queue && !sending && !stop && !retired;
        if (quiet && E.finish.n == 0) {
            /* Nothing in flight: sleep until a submit (bounded for pings
             * and heartbeats to be read). */
            pf__cond_wait_until(&E.wake, &E.lock, pf__now_ns() + 50000000u);
        }
        pf__mutex_unlock(&E.lock);
        while (retired) { /* the engine's reference (see E); may free it */
            struct mpix *x = retired;
            retired = x->next_in_engine;
            pf__executor_release(&x->base);
        }
        /* Done-callbacks: they may take long, and may destroy executors. */
        pf__finish_pending(&E.finish);
        pump_sends();
        if (stop) {
            finale(); /* every executor is gone: nothing else can come */
            pf__finish_pending(&E.finish);
            pf__finish_list_free(&E.finish);
            break;
        }
        if (got)
            idle_reset(&idle);
        else if (busy)
            back_off(&idle, 100000);
    }
    return NULL;
}

/* ------------------------------------------------------ executor kind -- */

static int mx_submit(struct pf_executor *ex, pf_future *f)
{
    struct mpix *x = (struct mpix *)ex;
    uint64_t id;
    if (pf_registered_name((pf_fn)f->fn, NULL, &id) != PF_OK)
        return PF_ENOTREG; /* ranks are other programs: only ids cross */
    /* arg_len <= PAYLOAD_MAX: mx_ops.max_arg_len, checked by the front end */
    pf__mutex_lock(&E.lock);
    if (x->stopping) {
        pf__mutex_unlock(&E.lock);
        return PF_ESHUTDOWN;
    }
    pf__fqueue_push(&x->pending, pf_future_retain(f));
    pf__cond_signal(&E.wake);
    pf__mutex_unlock(&E.lock);
    return PF_OK;
}

static int mx_cancel(struct pf_executor *ex, pf_future *f)
{
    struct mpix *x = (struct mpix *)ex;
    /* dispatch marks a future RUNNING under the engine lock in the critical
     * section that pops it, so one still PENDING out of x->pending was never
     * sent: it is in a batch that mx_shutdown is cancelling, or failed by the
     * engine (E.finish) and not finished yet (see core.h).  x->pending holds
     * a reference on each future.  A task on a rank cannot be stopped:
     * PF_EBUSY. */
    return pf__future_cancel_unsent(&E.lock, &x->pending, f, true);
}

static int mx_shutdown(struct pf_executor *ex, bool wait, bool cancel_futures)
{
    struct mpix *x = (struct mpix *)ex;
    pf__mutex_lock(&E.lock);
    x->stopping = true;
    /* The batch to cancel (core.h), on the queue's references: a concurrent
     * mx_cancel never unlinks one of them, it may finish it first. */
    struct pf__fqueue cancelled = {0};
    if (cancel_futures)
        cancelled = pf__fqueue_take_batch(&x->pending, true);
    pf__cond_signal(&E.wake);
    pf__mutex_unlock(&E.lock);
    pf__batch_finish(&cancelled, PF_ECANCELLED, NULL);
    if (wait) {
        /* A done-callback cannot wait for the engine that runs it; the
         * engine's own reference keeps x until it is retired. */
        if (pthread_equal(pthread_self(), E.thread))
            return PF_EBUSY;
        pf__mutex_lock(&E.lock);
        while (!x->finished)
            pf__cond_wait(&x->done, &E.lock);
        pf__mutex_unlock(&E.lock);
    }
    return PF_OK;
}

static void mx_destroy(struct pf_executor *ex)
{
    (void)ex; /* shutdown(wait) already waited for the workers */
}

static void mx_free(struct pf_executor *ex)
{
    struct mpix *x = (struct mpix *)ex;
    pf__cond_destroy(&x->done);
    free(x->acked);
    free(x);
}

static const struct pf__executor_ops mx_ops = {
    .submit = mx_submit,
    .cancel = mx_cancel,
    .shutdown = mx_shutdown,
    .destroy = mx_destroy,
    .free = mx_free,
    .max_arg_len = PAYLOAD_MAX, /* one MPI message: an int count of bytes */
};

static int mpi_create(const struct pf_executor *base, struct pf_executor **out)
{
    if (g_rank != 0)
        return PF_EINVAL;
    if (base->opts.init_arg_len > PAYLOAD_MAX)
        return PF_ETOOBIG; /* it travels in one CREATE message */
    uint64_t init_id = 0, fini_id = 0;
    if (base->opts.initializer &&
        pf_registered_name((pf_fn)base->opts.initializer, NULL, &init_id) != PF_OK)
        return PF_ENOTREG;
    if (base->opts.finalizer &&
        pf_registered_name((pf_fn)base->opts.finalizer, NULL, &fini_id) != PF_OK)
        return PF_ENOTREG;
    struct mpix *x = calloc(1, sizeof *x);
    bool *acked = calloc((size_t)g_size, sizeof *acked);
    if (!x || !acked) {
        free(x);
        free(acked);
        return PF_ENOMEM;
    }
    pf__executor_init_base(&x->base, base);
    x->base.ops = &mx_ops;
    x->acked = acked;
    x->threads = g_opts.threads_per_rank;
    pf__cond_init(&x->done);

    pf__mutex_lock(&E.lock);
    if (E.live == 0 || E.stop) {
        pf__mutex_unlock(&E.lock);
        pf__mutex_destroy(&x->base.init_lock);
        mx_free(&x->base);
        /* a job of one rank, every worker rank died, or finalising */
        return PF_ENOTSUP;
    }
    /* Loops size their chunks by max_workers: every thread of every rank. */
    x->base.opts.max_workers = E.live * x->threads;
    x->id = ++E.next_exec;
    for (int r = 1; r < g_size; r++) {
        if (E.rank_dead[r])
            continue;
        struct out *o = out_new(M_CREATE, x->id, base->opts.init_arg, base->opts.init_arg_len);
        if (o) {
            o->m.fn = init_id;
            o->m.fn2 = fini_id;
            o->m.threads = x->threads;
        }
        queue_locked(o, r);
    }
    pf__executor_retain(&x->base); /* the engine's (see E) */
    x->next_in_engine = E.execs;
    E.execs = x;
    pf__cond_signal(&E.wake);
    pf__mutex_unlock(&E.lock);
    *out = &x->base;
    return PF_OK;
}

/* ------------------------------------------------------------ lifetime -- */

static double env_double(const char *name, double fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    double d = strtod(v, &end);
    return *end == '\0' && d > 0 ? d : fallback;
}

int pf_mpi_init(int *argc, char ***argv, const pf_mpi_opts *opts)
{
    if (g_initialized || g_finalized)
        return PF_EBUSY; /* MPI starts once per process: not again after finalize */
    /* Both or neither (MPI takes NULL for both); a count of n needs n
     * strings: MPI reads them (Open MPI crashes on a NULL *argv). */
    if (!argc != !argv || (argc && (*argc < 0 || (*argc > 0 && !*argv))))
        return PF_EINVAL;
    for (int i = 0; argc && i < *argc; i++)
        if (!(*argv)[i])
            return PF_EINVAL;
    int mpi_up = 0, mpi_down = 0;
    if (MPI_Initialized(&mpi_up) != MPI_SUCCESS || MPI_Finalized(&mpi_down) != MPI_SUCCESS ||
        mpi_up || mpi_down)
        return PF_EBUSY; /* started (or ended) by the program itself */
    pf_mpi_opts o = opts ? *opts : (pf_mpi_opts){0};
    if (o.threads_per_rank < 0 || o.threads_per_rank > PF_MAX_WORKERS || o.prefetch < 0 ||
        o.prefetch > 1000000 || !(o.dead_after >= 0) || o.dead_after > 1e6)
        return PF_EINVAL;
    if (o.threads_per_rank == 0) {
        double t = env_double("PFOR_MPI_THREADS", 1);
        o.threads_per_rank = t >= 1 && t <= PF_MAX_WORKERS ? (int)t : 1;
    }
    if (o.prefetch == 0) {
        double p = env_double("PFOR_MPI_PREFETCH", -1);
        o.prefetch = p >= 1 && p <= 1000000 ? (int)p : 0;
    }
    if (o.dead_after == 0) {
        /* The option's own bound (inf would never notice a dead rank) */
        double d = env_double("PFOR_MPI_DEAD_AFTER", 3.0);
        o.dead_after = d <= 1e6 ? d : 3.0;
    }
    g_opts = o;

    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return PF_ESYS;
    if (provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        g_finalized = true;
        return PF_ENOTSUP;
    }
    /* Errors come back as codes; a dead peer must not abort rank 0. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_initialized = true;

    if (g_rank != 0) {
        worker_main();
        if (w_skip_finalize) { /* a rank died: see some_rank_died_locked */
            fflush(NULL);
            _exit(0);
        }
        /* MPI_Finalize meets rank 0's; should rank 0 be gone by now, that
         * would never end: the default action of SIGALRM ends this rank. */
        signal(SIGALRM, SIG_DFL);
        alarm((unsigned)(ROOT_SILENCE_NS / 1000000000ull));
        MPI_Finalize();
        exit(0);
    }

    pf__mutex_init(&E.lock);
    pf__cond_init(&E.wake);
    E.queue_tail = &E.queue;
    E.rank_load = calloc((size_t)g_size, sizeof *E.rank_load);
    E.rank_dead = calloc((size_t)g_size, sizeof *E.rank_dead);
    E.rank_bye = calloc((size_t)g_size, sizeof *E.rank_bye);
    E.rank_heard = calloc((size_t)g_size, sizeof *E.rank_heard);
    if (!E.rank_load || !E.rank_dead || !E.rank_bye || !E.rank_heard) {
        MPI_Abort(MPI_COMM_WORLD, 1);
        return PF_ENOMEM;
    }
    for (int r = 0; r < g_size; r++)
        E.rank_heard[r] = pf__now_ns(); /* silence counts from the start */
    E.live = g_size - 1;
    pf__mpi_create = mpi_create;
    if (pthread_create(&E.thread, NULL, engine_main, NULL) != 0) {
        MPI_Abort(MPI_COMM_WORLD, 1);
        return PF_ESYS;
    }
    return PF_OK;
}

void pf_mpi_finalize(void)
{
    /* From a done-callback, on the engine thread: it cannot wait for the
     * thread that runs it (pthread_join would fail and abort).  Nothing
     * happens; the program calls it again from another thread.  (E.thread
     * is set once by pf_mpi_init, before any callback can run; never the
     * caller's before that.) */
    if (g_rank == 0 && pthread_equal(pthread_self(), E.thread))
        return;
    /* One finalization at a time: a call made meanwhile from another thread
     * waits for it, then finds nothing left to do (never joins the engine a
     * second time).  Order: fin_mu, then E.lock. */
    static pthread_mutex_t fin_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&fin_mu);
    if (!g_initialized || g_rank != 0) {
        pthread_mutex_unlock(&fin_mu);
        return;
    }
    pf__mutex_lock(&E.lock);
    E.stop = true;
    /* Executors still open take no more tasks; what they run finishes. */
    for (struct mpix *x = E.execs; x; x = x->next_in_engine)
        x->stopping = true;
    pf__cond_signal(&E.wake);
    pf__mutex_unlock(&E.lock);
    PF__CHECK(pthread_join(E.thread, NULL) == 0);
    pf__mpi_create = NULL;
    if (!some_rank_died_locked()) /* the engine is gone: no lock needed */
        MPI_Finalize();
    free(E.rank_load);
    free(E.rank_dead);
    free(E.rank_bye);
    free(E.rank_heard);
    g_initialized = false;
    g_finalized = true;
    pthread_mutex_unlock(&fin_mu);
}
