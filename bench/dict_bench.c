/*
 * dict_bench: sets/s and gets/s of the pfor dicts, 16-byte keys and values,
 * with 1 and 2 workers on distinct keys:
 *
 *   shm      a shm dict, workers are forked processes, one call per operation
 *   batched  the same with pf_dict_set_many / pf_dict_get_many in batches of
 *            1000 (the engine sorts a batch by stripe and prefetches ahead)
 *   local  a local dict, workers are threads
 *   redis  the redis backend, one connection per worker process: one call per
 *          operation ("plain") and pf_dict_set_many / pf_dict_get_many in
 *          batches of 1000 ("pipelined")
 *
 * Each figure is the median of --reps repetitions (fresh dict each time; the
 * repetitions of all configurations are interleaved); min and max are given
 * too.  A repetition's rate is (all workers' operations) / (first worker's
 * start to last worker's end); workers are started and waiting before the
 * clock runs.  The workers claim the keys in blocks of 1000 from a shared
 * counter (--static: each takes an equal slice, and a run lasts as long as
 * its slower worker; this VM's two vCPUs were seen to differ by 20-40 %).
 * The *_cpu_throughput figures divide the same operations by the
 * busiest worker's CPU time instead: they leave out the time a worker waited
 * for a core that other programs held, not the time it spun on a lock.
 * The set phase inserts new keys into an empty dict (so it includes the
 * dict's growth); the get phase reads them all back and checks every value;
 * the update phase sets every key again to a new value.
 *
 * --pin binds each shm and local worker to one CPU, as OMP_PROC_BIND does:
 * worker w of a 2-worker run to the w-th CPU this process may use, the one
 * worker of repetition r to the (r mod CPUs)-th, so that the 1-worker
 * figure is taken on every core in turn.  Unbound, this VM's scheduler was
 * seen to run both workers on one vCPU for milliseconds, and its two vCPUs
 * do not run equally fast (the same single-worker run: 42 to 72 ms).
 *
 * Prints one JSON object per line, in the format of ../shared/anchors.
 * bench/dict_bench.sh runs this next to the Python anchors and prints ratios.
 *
 *   dict_bench [--n N] [--n-redis N] [--reps R] [--redis-host H --redis-port P]
 *              [--only shm,batched,local,redis] [--pin] [--static]
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pfor/pfor.h"

#define KLEN  16
#define VLEN  16
#define BATCH 1000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Bind the calling thread, worker w of a run, to the (first + w)-th (mod
 * their count) CPU it may use now; first < 0: leave it free.  A failure only
 * leaves it unbound. */
static void pin_to(int first, unsigned w)
{
    cpu_set_t allowed, one;
    if (first < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return;
    int n = CPU_COUNT(&allowed);
    if (n < 1)
        return;
    int k = (first + (int)w) % n;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &allowed) && k-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            (void)sched_setaffinity(0, sizeof one, &one);
            return;
        }
    }
}

/* Key and value of index i (of all the run's keys). */
static void make_key(unsigned char *k, uint64_t i)
{
    uint64_t a = 0x9e3779b97f4a7c15ull, b = i;
    memcpy(k, &a, 8);
    memcpy(k + 8, &b, 8);
}

static void make_val(unsigned char *v, uint64_t i)
{
    uint64_t a = i * 31, b = ~i;
    memcpy(v, &a, 8);
    memcpy(v + 8, &b, 8);
}

/* The pf_dict_get_many callback: every value must be the one set. */
static int check_got(void *user, size_t index, int status, const void *val, size_t vlen)
{
    const unsigned char(*vb)[VLEN] = user;
    if (status)
        return status;
    return vlen == VLEN && memcmp(val, vb[index], VLEN) == 0 ? 0 : PF_ECORRUPT;
}

/* One worker's timed phases. */
struct span {
    double set0, set1, get0, get1, upd0, upd1;
    double cpu[3]; /* CPU seconds of this worker in each phase */
    int err;
};

enum mode { PLAIN, PIPELINED };

/* How the n keys of a run are split among its workers.  DYNAMIC (the default):
 * each worker claims the next BATCH indices from a counter the workers share,
 * as a dynamically scheduled parallel for does, so a worker on a faster or
 * less loaded core does more and both end together.  STATIC: worker w of W
 * takes indices [w n / W, (w + 1) n / W), and a run lasts as long as its
 * slower worker.  Either way every key is set, read and updated by exactly one
 * worker. */
enum split { DYNAMIC, STATIC };

/* The shared claim counters, one per phase, in a MAP_SHARED page so that
 * forked workers see one another's claims; reset before each run. */
struct claims {
    _Atomic uint64_t next[3];
};

struct plan {
    enum split split;
    struct claims *claims;
    uint64_t n;       /* the run's keys, indices [0, n) */
    unsigned workers; /* STATIC: the slice of worker w */
};

/* Claim this worker's next block of phase p: [*lo, *hi).  *cursor is the
 * worker's own position (STATIC only).  False when the phase has no more. */
static bool claim(const struct plan *pl, unsigned w, int p, uint64_t *cursor, uint64_t *lo,
                  uint64_t *hi)
{
    uint64_t end = pl->n;
    if (pl->split == STATIC) {
        end = pl->n * (w + 1) / pl->workers;
        *lo = *cursor;
    } else {
        *lo = atomic_fetch_add_explicit(&pl->claims->next[p], BATCH, memory_order_relaxed);
    }
    if (*lo >= end)
        return false;
    *hi = end - *lo < BATCH ? end : *lo + BATCH;
    *cursor = *hi;
    return true;
}

/* The set, get and update phases of worker w, each over the blocks it claims.
 * go() waits until every worker is ready (a barrier) before each phase. */
static void work(pf_dict *d, unsigned w, const struct plan *pl, enum mode mode, void (*go)(void *),
                 void *g, struct span *sp)
{
    unsigned char k[KLEN], v[VLEN], got[VLEN];
    static __thread pf_dict_item items[BATCH];
    static __thread unsigned char kb[BATCH][KLEN], vb[BATCH][VLEN];
    double *t[3][2] = {{&sp->set0, &sp->set1}, {&sp->get0, &sp->get1}, {&sp->upd0, &sp->upd1}};
    sp->err = 0;
    /* Phase 0 inserts new keys, 1 reads them back and checks every value, 2
     * sets every key again to a new value (no growth: blocks are recycled). */
    for (int p = 0; p < 3; p++) {
        uint64_t cursor = pl->split == STATIC ? pl->n * w / pl->workers : 0, lo, hi;
        go(g);
        *t[p][0] = now();
        double c0 = cpu_now();
        while (!sp->err && claim(pl, w, p, &cursor, &lo, &hi)) {
            size_t m = (size_t)(hi - lo);
            if (mode == PLAIN) {
                for (uint64_t i = lo; i < hi && !sp->err; i++) {
                    size_t len;
                    make_key(k, i);
                    make_val(v, i + (p == 2));
                    if (p == 1) {
                        sp->err = pf_dict_get(d, k, KLEN, got, sizeof got, &len);
                        if (!sp->err && (len != VLEN || memcmp(got, v, VLEN) != 0))
                            sp->err = PF_ECORRUPT;
                    } else {
                        sp->err = pf_dict_set(d, k, KLEN, v, VLEN);
                    }
                }
                continue;
            }
            for (size_t j = 0; j < m; j++) {
                make_key(kb[j], lo + j);
                make_val(vb[j], lo + j + (p == 2));
                items[j] = (pf_dict_item){kb[j], KLEN, p == 1 ? NULL : vb[j], p == 1 ? 0 : VLEN};
            }
            sp->err = p == 1 ? pf_dict_get_many(d, items, m, check_got, vb)
                             : pf_dict_set_many(d, items, m);
        }
        *t[p][1] = now();
        sp->cpu[p] = cpu_now() - c0;
    }
}

/* ------------------------------------------------------------- barriers -- */

struct pipes {
    int go[2], ready[2], result[2];
};

static void proc_go(void *arg)
{
    struct pipes *p = arg;
    char c = 'r';
    if (write(p->ready[1], &c, 1) != 1 || read(p->go[0], &c, 1) != 1)
        _exit(3);
}

struct tbar {
    pthread_barrier_t b;
};

static void thr_go(void *arg)
{
    pthread_barrier_wait(&((struct tbar *)arg)->b);
}

/* ------------------------------------------------------------- runners -- */

struct result {
    double set_rate, get_rate, upd_rate;
    double cpu_rate[3]; /* operations / the busiest worker's CPU seconds, per phase */
};

static struct result combine(struct span *sp, unsigned workers, uint64_t n)
{
    double s0 = sp[0].set0, s1 = sp[0].set1, g0 = sp[0].get0, g1 = sp[0].get1;
    double u0 = sp[0].upd0, u1 = sp[0].upd1;
    for (unsigned w = 1; w < workers; w++) {
        s0 = sp[w].set0 < s0 ? sp[w].set0 : s0;
        s1 = sp[w].set1 > s1 ? sp[w].set1 : s1;
        g0 = sp[w].get0 < g0 ? sp[w].get0 : g0;
        g1 = sp[w].get1 > g1 ? sp[w].get1 : g1;
        u0 = sp[w].upd0 < u0 ? sp[w].upd0 : u0;
        u1 = sp[w].upd1 > u1 ? sp[w].upd1 : u1;
    }
    double total = (double)n;
    struct result r = {total / (s1 - s0), total / (g1 - g0), total / (u1 - u0), {0, 0, 0}};
    for (int p = 0; p < 3; p++) {
        double c = 0;
        for (unsigned w = 0; w < workers; w++)
            c = sp[w].cpu[p] > c ? sp[w].cpu[p] : c;
        r.cpu_rate[p] = total / c;
    }
    return r;
}

typedef int (*open_fn)(pf_dict **d, void *arg);

/* Workers are forked processes.  They use the parent's handle d (inherited), or
 * open their own with open() (redis: one connection each). */
static int run_procs(pf_dict *d, open_fn open, void *oarg, const struct plan *pl, enum mode mode,
                     int first_cpu, struct result *out)
{
    unsigned workers = pl->workers;
    struct pipes p[8];
    pid_t pids[8];
    struct span sp[8];
    int rc = 0;
    for (unsigned w = 0; w < workers; w++) {
        if (pipe(p[w].go) || pipe(p[w].ready) || pipe(p[w].result))
            return PF_ESYS;
        fflush(NULL);
        pids[w] = fork();
        if (pids[w] < 0)
            return PF_ESYS;
        if (pids[w] == 0) {
            pin_to(first_cpu, w);
            struct span s;
            memset(&s, 0, sizeof s);
            pf_dict *mine = d;
            if (open)
                s.err = open(&mine, oarg);
            if (s.err == 0)
                work(mine, w, pl, mode, proc_go, &p[w], &s);
            if (write(p[w].result[1], &s, sizeof s) != (ssize_t)sizeof s)
                _exit(2);
            _exit(0);
        }
        close(p[w].go[0]);
        close(p[w].ready[1]);
        close(p[w].result[1]);
    }
    /* Three phases: wait until every worker is ready, then release them all.  A
     * worker that failed to open closes its pipes, which ends the waits. */
    for (int phase = 0; phase < 3; phase++) {
        for (unsigned w = 0; w < workers; w++) {
            char c;
            if (read(p[w].ready[0], &c, 1) != 1)
                rc = PF_ESYS;
        }
        for (unsigned w = 0; w < workers; w++) {
            char c = 'g';
            if (write(p[w].go[1], &c, 1) != 1)
                rc = PF_ESYS;
        }
    }
    for (unsigned w = 0; w < workers; w++) {
        if (read(p[w].result[0], &sp[w], sizeof sp[w]) != (ssize_t)sizeof sp[w])
            sp[w].err = PF_ESYS;
        waitpid(pids[w], NULL, 0);
        close(p[w].go[1]);
        close(p[w].ready[0]);
        close(p[w].result[0]);
        if (sp[w].err)
            rc = sp[w].err;
    }
    if (!rc)
        *out = combine(sp, workers, pl->n);
    return rc;
}

struct targ {
    pf_dict *d;
    unsigned w;
    int first_cpu; /* pin_to's first */
    const struct plan *pl;
    struct tbar *bar;
    struct span sp;
};

static void *thr_main(void *arg)
{
    struct targ *t = arg;
    pin_to(t->first_cpu, t->w);
    work(t->d, t->w, t->pl, PLAIN, thr_go, t->bar, &t->sp);
    return NULL;
}

static int run_threads(pf_dict *d, const struct plan *pl, int first_cpu, struct result *out)
{
    unsigned workers = pl->workers;
    struct tbar bar;
    pthread_barrier_init(&bar.b, NULL, workers);
    struct targ t[8];
    pthread_t th[8];
    for (unsigned w = 0; w < workers; w++) {
        t[w] = (struct targ){.d = d, .w = w, .first_cpu = first_cpu, .pl = pl, .bar = &bar};
        pthread_create(&th[w], NULL, thr_main, &t[w]);
    }
    int rc = 0;
    struct span sp[8];
    for (unsigned w = 0; w < workers; w++) {
        pthread_join(th[w], NULL);
        sp[w] = t[w].sp;
        if (sp[w].err && !rc)
            rc = sp[w].err;
    }
    pthread_barrier_destroy(&bar.b);
    if (!rc)
        *out = combine(sp, workers, pl->n);
    return rc;
}

/* ------------------------------------------------------------- reports -- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void emit(const char *anchor, const char *metric, const double *s, int n, const char *extra)
{
    double sorted[16];
    memcpy(sorted, s, (size_t)n * sizeof *s);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_d);
    double med = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    printf("{\"anchor\": \"%s\", \"metric\": \"%s\", \"value\": %.6g, \"unit\": \"ops/s\", "
           "\"min\": %.6g, \"max\": %.6g, \"reps\": %d, \"samples\": [",
           anchor, metric, med, sorted[0], sorted[n - 1], n);
    for (int i = 0; i < n; i++)
        printf("%s%.6g", i ? ", " : "", s[i]);
    printf("]%s}\n", extra);
    fflush(stdout);
}

struct redis_arg {
    const char *host;
    int port;
    char name[64];
};

static int open_redis(pf_dict **d, void *arg)
{
    struct redis_arg *r = arg;
    return pf_dict_open_redis(d, r->host, r->port, r->name, NULL);
}

/* One configuration: a backend, a worker count, a size, and its samples. */
struct config {
    const char *what; /* shm, local, redis, redis_pipelined */
    unsigned workers;
    uint64_t n;
    double sets[16], gets[16], upds[16];
    double cpu[3][16];
};

/* One repetition of one configuration, on a fresh dict. */
static int run_config(struct config *c, int rep, struct redis_arg *ra, bool pin, enum split split,
                      struct claims *claims)
{
    struct result r = {0};
    struct plan pl = {.split = split, .claims = claims, .n = c->n, .workers = c->workers};
    for (int p = 0; p < 3; p++)
        atomic_store(&claims->next[p], 0);
    pf_dict *d = NULL;
    /* One worker: a different core each repetition; two: one core each. */
    int first = !pin ? -1 : c->workers == 1 ? rep : 0;
    int rc;
    if (!strncmp(c->what, "shm", 3)) {
        rc = pf_dict_create_shm(&d, NULL, NULL);
        if (!rc)
            rc = run_procs(d, NULL, NULL, &pl, !strcmp(c->what, "shm") ? PLAIN : PIPELINED, first,
                           &r);
    } else if (!strcmp(c->what, "local")) {
        rc = pf_dict_open_local(&d, NULL);
        if (!rc)
            rc = run_threads(d, &pl, first, &r);
    } else {
        snprintf(ra->name, sizeof ra->name, "dict-bench-%d-%d", (int)getpid(), rep);
        rc = pf_dict_open_redis(&d, ra->host, ra->port, ra->name, NULL);
        if (!rc)
            rc = run_procs(NULL, open_redis, ra, &pl,
                           !strcmp(c->what, "redis_pipelined") ? PIPELINED : PLAIN, -1, &r);
        if (d)
            pf_dict_clear(d);
    }
    pf_dict_close(d);
    if (rc) {
        fprintf(stderr, "dict_bench: %s with %u workers failed: %s\n", c->what, c->workers,
                pf_strerror(rc));
        return rc;
    }
    c->sets[rep] = r.set_rate;
    c->gets[rep] = r.get_rate;
    c->upds[rep] = r.upd_rate;
    for (int p = 0; p < 3; p++)
        c->cpu[p][rep] = r.cpu_rate[p];
    return 0;
}

static void report(const struct config *c, int reps, bool pin, enum split split)
{
    char anchor[64], metric[64], extra[128];
    const char *unit = !strcmp(c->what, "local") ? "thread" : "proc";
    snprintf(anchor, sizeof anchor, "dict_bench.%s", c->what);
    snprintf(extra, sizeof extra,
             ", \"n\": %llu, \"workers\": %u, \"key_bytes\": %d, \"value_bytes\": %d, "
             "\"pinned\": %s, \"split\": \"%s\"",
             (unsigned long long)c->n, c->workers, KLEN, VLEN,
             pin && strncmp(c->what, "redis", 5) ? "true" : "false",
             split == STATIC ? "static" : "dynamic");
    snprintf(metric, sizeof metric, "set_throughput_%u%s", c->workers, unit);
    emit(anchor, metric, c->sets, reps, extra);
    snprintf(metric, sizeof metric, "get_throughput_%u%s", c->workers, unit);
    emit(anchor, metric, c->gets, reps, extra);
    snprintf(metric, sizeof metric, "update_throughput_%u%s", c->workers, unit);
    emit(anchor, metric, c->upds, reps, extra);
    /* The same per CPU second of the busiest worker: what the workers do while
     * they run, whatever else this machine runs meanwhile. */
    static const char *ph[3] = {"set", "get", "update"};
    for (int p = 0; p < 3; p++) {
        snprintf(metric, sizeof metric, "%s_cpu_throughput_%u%s", ph[p], c->workers, unit);
        emit(anchor, metric, c->cpu[p], reps, extra);
    }
}

int main(int argc, char **argv)
{
    uint64_t n = 2000000, n_redis = 200000, n_pipe = 2000000;
    int reps = 3;
    const char *only = "shm,batched,local,redis";
    bool pin = false;
    enum split split = DYNAMIC;
    struct redis_arg ra = {.host = "127.0.0.1", .port = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--pin")) {
            pin = true;
            continue;
        }
        if (!strcmp(a, "--static")) {
            split = STATIC;
            continue;
        }
        if (!v)
            goto usage;
        if (!strcmp(a, "--n"))
            n = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--n-redis"))
            n_redis = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--n-pipelined"))
            n_pipe = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else if (!strcmp(a, "--redis-host"))
            ra.host = v;
        else if (!strcmp(a, "--redis-port"))
            ra.port = atoi(v);
        else if (!strcmp(a, "--only"))
            only = v;
        else
            goto usage;
        i++;
    }
    if (reps < 1 || reps > 16 || n < 2 || n_redis < 2 || n_pipe < 2)
        goto usage;
    struct claims *claims =
        mmap(NULL, sizeof *claims, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (claims == MAP_FAILED) {
        perror("dict_bench: mmap");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* a worker that failed early closed its pipes */
    printf("{\"anchor\": \"dict_bench\", \"metric\": \"info\", \"cpus\": %ld, \"reps\": %d}\n",
           sysconf(_SC_NPROCESSORS_ONLN), reps);
    struct config cs[8];
    int nc = 0;
    /* A backend's 1- and 2-worker runs back to back, so that their ratio
     * within a repetition sees the same machine. */
    for (unsigned w = 1; w <= 2; w++)
        if (strstr(only, "shm"))
            cs[nc++] = (struct config){.what = "shm", .workers = w, .n = n};
    for (unsigned w = 1; w <= 2; w++)
        if (strstr(only, "batched"))
            cs[nc++] = (struct config){.what = "shm_batched", .workers = w, .n = n};
    for (unsigned w = 1; w <= 2; w++)
        if (strstr(only, "local"))
            cs[nc++] = (struct config){.what = "local", .workers = w, .n = n};
    for (unsigned w = 1; w <= 2 && strstr(only, "redis") && ra.port > 0; w++)
        cs[nc++] = (struct config){.what = "redis", .workers = w, .n = n_redis};
    for (unsigned w = 1; w <= 2 && strstr(only, "redis") && ra.port > 0; w++)
        cs[nc++] = (struct config){.what = "redis_pipelined", .workers = w, .n = n_pipe};
    if (strstr(only, "redis") && ra.port <= 0)
        fprintf(stderr, "dict_bench: redis skipped (no --redis-port)\n");
    /* Repetitions are interleaved (every configuration once, then again), so a
     * burst of load on this shared machine hits them all alike. */
    for (int rep = 0; rep < reps; rep++)
        for (int i = 0; i < nc; i++)
            if (run_config(&cs[i], rep, &ra, pin, split, claims))
                return 1;
    for (int i = 0; i < nc; i++)
        report(&cs[i], reps, pin, split);
    return 0;
usage:
    fprintf(stderr, "usage: dict_bench [--n N] [--n-redis N] [--n-pipelined N] [--reps R] "
                    "[--redis-host H] [--redis-port P] [--only shm,batched,local,redis] [--pin] "
                    "[--static]\n");
    return 2;
}
