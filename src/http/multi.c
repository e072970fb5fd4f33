/*
 * The event-driven mode: n POST requests through one curl multi handle in
 * the calling thread, up to max_in_flight at once.
 *
 * DESIGN
 *   libcurl's socket interface drives the loop: curl tells us (socket
 *   callback) which descriptors to watch for what, and (timer callback)
 *   when it next wants to run; we keep those in one epoll set and call
 *   curl_multi_socket_action() only for descriptors that are ready, or for
 *   the timer.  The cost of a wake-up is the ready descriptors only, not
 *   every transfer in flight, so thousands in flight stay cheap.
 *
 *   There are min(n, max_in_flight) easy handles, made once.  When one's
 *   transfer ends, its record is written, and the same handle is given the
 *   next request number and added again: its connection goes back to the
 *   multi handle's connection cache and the next transfer takes it, so after
 *   the first round no connection is opened (the cache and the per-host
 *   limit are sized to max_in_flight).
 *
 *   With opts.threads > 1, as many such loops run, the calling thread's and
 *   threads of their own, each with its share of the transfers in flight and
 *   its own multi handle, epoll set and connections (nothing of libcurl's is
 *   shared between threads but the read-only header list); they take request
 *   numbers from one atomic counter, and the progress callback is called
 *   under a lock, one call at a time, in whichever loop finished a request.
 *   On one core a loop's libcurl work is the limit, so a loop per core is
 *   how the client keeps up with a fast server.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "http/http_internal.h"
#include "platform/sync.h"

#define MAX_IN_FLIGHT_LIMIT 100000
#define EVENTS_PER_WAIT     256

struct loop {
    CURLM *multi;
    int epfd;
    uint64_t timer_ns; /* when curl wants socket_action(TIMEOUT); UINT64_MAX: no timer */
    int sys_errno;     /* first epoll_ctl failure, 0 if none */
};

/* curl: watch socket s for `what` (or stop watching it). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct loop *L = userp;
    if (what == CURL_POLL_REMOVE) {
        /* curl may already have closed it, which removed it from the set.
         * curl forgets the socket's assignment itself. */
        (void)epoll_ctl(L->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    /* socketp is non-NULL once the socket is in the set (curl_multi_assign
     * below), so each change is one epoll_ctl. */
    if (epoll_ctl(L->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) == 0) {
        if (!socketp)
            (void)curl_multi_assign(L->multi, s, L);
        return 0;
    }
    if (!L->sys_errno)
        L->sys_errno = errno;
    return -1;
}

/* curl: call socket_action(TIMEOUT) in timeout_ms (-1: no timer). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct loop *L = userp;
    if (timeout_ms < 0)
        L->timer_ns = UINT64_MAX;
    else
        L->timer_ns = pf__now_ns() + (uint64_t)timeout_ms * 1000000u;
    return 0;
}

/* epoll_wait's timeout for the next timer: -1 (none), 0 (due) or ms. */
static int wait_ms(const struct loop *L)
{
    if (L->timer_ns == UINT64_MAX)
        return -1;
    uint64_t now = pf__now_ns();
    if (L->timer_ns <= now)
        return 0;
    uint64_t ms = (L->timer_ns - now + 999999u) / 1000000u;
    return ms > 60000 ? 60000 : (int)ms;
}

static int start(struct loop *L, struct pf__http_xfer *x, const pf_http_config *cfg, size_t index)
{
    x->index = index;
    pf__http_xfer_prepare(x, cfg, (uint64_t)index);
    CURLMcode mc = curl_multi_add_handle(L->multi, x->easy);
    return mc == CURLM_OK ? PF_OK : (mc == CURLM_OUT_OF_MEMORY ? PF_ENOMEM : PF_EHTTP);
}

/* What the loops of one run share. */
struct run {
    const pf_http_config *cfg;
    size_t n;
    pf_http_record *records;
    const pf_http_multi_opts *opts;
    struct curl_slist *headers; /* read-only while the loops run */
    const char *noproxy;        /* read-only while the loops run */
    _Atomic size_t next;        /* the next request number to start */
    _Atomic int stop;           /* a loop failed: the others end as well */
    pf__mutex lock;             /* guards done, failed, the progress calls and rc */
    size_t done, failed;        /* for the progress calls only */
    int rc;                     /* the first failure of a loop, PF_OK if none */
};

/* Take the next request number for x and start it; false when none is left. */
static bool start_next(struct run *R, struct loop *L, struct pf__http_xfer *x, int *rc)
{
    size_t i = atomic_fetch_add_explicit(&R->next, 1, memory_order_relaxed);
    if (i >= R->n)
        return false;
    *rc = start(L, x, R->cfg, i);
    return *rc == PF_OK;
}

/* One event loop with up to `slots` transfers in flight, taking request
 * numbers from R until none is left or another loop failed; its own
 * failure goes to R->rc. */
static void run_loop(struct run *R, size_t slots)
{
    struct loop L = {.multi = NULL, .epfd = -1, .timer_ns = UINT64_MAX};
    struct pf__http_xfer *xs = calloc(slots, sizeof *xs);
    struct epoll_event *evs = malloc(EVENTS_PER_WAIT * sizeof *evs);
    size_t made = 0, active = 0;
    int rc = PF_OK;
    if (!xs || !evs) {
        rc = PF_ENOMEM;
        goto out;
    }
    L.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (L.epfd < 0) {
        rc = PF_ESYS;
        goto out;
    }
    L.multi = curl_multi_init();
    if (!L.multi) {
        rc = PF_EHTTP;
        goto out;
    }
    CURLMcode mc = CURLM_OK;
#define MSET(opt, val)                                     \
    do {                                                   \
        if (mc == CURLM_OK)                                \
            mc = curl_multi_setopt(L.multi, (opt), (val)); \
    } while (0)
    MSET(CURLMOPT_SOCKETFUNCTION, on_socket);
    MSET(CURLMOPT_SOCKETDATA, &L);
    MSET(CURLMOPT_TIMERFUNCTION, on_timer);
    MSET(CURLMOPT_TIMERDATA, &L);
    /* One connection per transfer in flight, all kept for reuse. */
    MSET(CURLMOPT_MAXCONNECTS, (long)slots);
    MSET(CURLMOPT_MAX_HOST_CONNECTIONS, (long)slots);
    MSET(CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
#undef MSET
    if (mc != CURLM_OK) {
        rc = PF_EHTTP;
        goto out;
    }
    for (; made < slots; made++) {
        rc = pf__http_xfer_init(&xs[made], R->cfg, R->headers, R->noproxy);
        if (rc != PF_OK)
            goto out;
    }
    for (size_t k = 0; k < slots && start_next(R, &L, &xs[k], &rc); k++)
        active++;
    if (rc != PF_OK)
        goto out;

    int running = 0;
    while (active > 0 && !atomic_load_explicit(&R->stop, memory_order_relaxed)) {
        /* curl always has a timer while transfers run (their time limits);
         * the cap is only a safety net, and a wake-up without events runs
         * curl's timeouts anyway. */
        int ms = wait_ms(&L);
        int nev = epoll_wait(L.epfd, evs, EVENTS_PER_WAIT, ms < 0 || ms > 1000 ? 1000 : ms);
        if (nev < 0) {
            if (errno == EINTR)
                continue;
            rc = PF_ESYS;
            goto out;
        }
        mc = CURLM_OK;
        for (int i = 0; i < nev && mc == CURLM_OK; i++) {
            int flags = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
            mc = curl_multi_socket_action(L.multi, evs[i].data.fd, flags, &running);
        }
        if (mc == CURLM_OK &&
            (nev == 0 || (L.timer_ns != UINT64_MAX && L.timer_ns <= pf__now_ns()))) {
            L.timer_ns = UINT64_MAX;
            mc = curl_multi_socket_action(L.multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        if (L.sys_errno) {
            rc = PF_ESYS;
            goto out;
        }
        if (mc != CURLM_OK) {
            rc = mc == CURLM_OUT_OF_MEMORY ? PF_ENOMEM : PF_EHTTP;
            goto out;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(L.multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *e = m->easy_handle;
            CURLcode cc = m->data.result;
            char *priv = NULL;
            (void)curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            struct pf__http_xfer *x = (struct pf__http_xfer *)(void *)priv;
            PF__CHECK(x != NULL && x->easy == e);
            pf_http_record *rec = &R->records[x->index];
            pf__http_record_from(x, cc, rec);
            /* m is invalid once the handle is removed. */
            (void)curl_multi_remove_handle(L.multi, e);
            active--;
            if (R->opts && R->opts->progress) { /* the counts exist for it only */
                pf__mutex_lock(&R->lock);
                R->done++;
                R->failed += rec->error != 0;
                R->opts->progress(R->done, R->failed, R->opts->progress_user);
                pf__mutex_unlock(&R->lock);
            }
            if (start_next(R, &L, x, &rc))
                active++;
            else if (rc != PF_OK)
                goto out;
        }
    }
out:
    /* Requests never started, or cut off by a failure of a loop, get no
     * record: the caller gets the error instead. */
    for (size_t i = 0; i < made; i++) {
        if (L.multi) /* a no-op for a handle that is not in it */
            (void)curl_multi_remove_handle(L.multi, xs[i].easy);
        pf__http_xfer_free(&xs[i]);
    }
    if (L.multi)
        curl_multi_cleanup(L.multi);
    if (L.epfd >= 0)
        close(L.epfd);
    free(evs);
    free(xs);
    if (rc != PF_OK) {
        pf__mutex_lock(&R->lock);
        if (R->rc == PF_OK)
            R->rc = rc;
        pf__mutex_unlock(&R->lock);
        atomic_store(&R->stop, 1);
    }
}

struct loop_thread {
    struct run *R;
    size_t slots;
    pthread_t thread;
};

static void *loop_thread_main(void *arg)
{
    struct loop_thread *lt = arg;
    run_loop(lt->R, lt->slots);
    return NULL;
}

int pf_http_run_multi(const pf_http_config *cfg, size_t n, size_t max_in_flight,
                      const pf_http_multi_opts *opts, pf_http_record *records)
{
    if (pf__http_config_check(cfg) != PF_OK || (n > 0 && !records) || max_in_flight == 0 ||
        max_in_flight > MAX_IN_FLIGHT_LIMIT ||
        (opts && (opts->threads < 0 || opts->threads > PF_HTTP_MULTI_MAX_THREADS)))
        return PF_EINVAL;
    if (n == 0)
        return PF_OK;
    int rc = pf__http_global_init();
    if (rc != PF_OK)
        return rc;

    size_t in_flight = n < max_in_flight ? n : max_in_flight;
    size_t loops = opts && opts->threads > 0 ? (size_t)opts->threads : 1;
    if (loops > in_flight)
        loops = in_flight; /* every loop has a transfer at least */
    struct run R = {.cfg = cfg, .n = n, .records = records, .opts = opts, .rc = PF_OK};
    atomic_init(&R.next, 0);
    atomic_init(&R.stop, 0);
    pf__mutex_init(&R.lock);
    R.headers = pf__http_headers();
    char *noproxy = pf__http_noproxy();
    R.noproxy = noproxy;
    struct loop_thread *lts = calloc(loops, sizeof *lts);
    if (!R.headers || !noproxy || !lts) {
        rc = PF_ENOMEM;
        goto out;
    }
    /* Loops 1.. on threads of their own, loop 0 here; the slots split
     * evenly, and those of a thread that could not start go to loop 0. */
    size_t started = 0, given = 0;
    for (size_t k = 1; k < loops; k++) {
        lts[k].R = &R;
        lts[k].slots = in_flight / loops + (k < in_flight % loops);
        if (pthread_create(&lts[k].thread, NULL, loop_thread_main, &lts[k]) != 0)
            break;
        started = k;
        given += lts[k].slots;
    }
    run_loop(&R, in_flight - given);
    for (size_t k = 1; k <= started; k++)
        pthread_join(lts[k].thread, NULL);
    rc = R.rc;
out:
    free(lts);
    free(noproxy);
    curl_slist_free_all(R.headers);
    pf__mutex_destroy(&R.lock);
    return rc;
}
