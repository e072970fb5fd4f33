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
 *   Keeping sockets in the epoll set.  When a transfer ends, curl stops
 *   watching its connection (CURL_POLL_REMOVE) and the next transfer on it
 *   asks for the same events again: two epoll_ctl calls per request for
 *   nothing.  So a connection socket stays in the set while it idles in
 *   curl's connection cache, and watching it again costs no call when the
 *   events are the same.  This is sound only while we know what the set
 *   holds for a descriptor number, so it is done only for sockets curl opens
 *   and closes through our callbacks (on_open_socket, on_close_socket); any
 *   other descriptor (a resolver's wake-up pipe) leaves the set when curl
 *   stops watching it, as before.  on_close_socket takes the socket out of
 *   the set itself (closing would not, were the descriptor duplicated in a
 *   child forked meanwhile).  One hole: curl 7.88 closes a socket whose
 *   connect failed without our callback and without CURL_POLL_REMOVE (fixed
 *   in curl 8.2); if the transfer's next attempt gets the same number, curl
 *   believes it still watches it and says nothing, so on_open_socket watches
 *   a reused number for what curl last asked at once.  An idle socket that
 *   turns ready (the server closed it) is taken out of the set when its event
 *   comes, without bothering curl, whose alive check finds the closed
 *   connection when it next looks.
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_internal.h"
#include "platform/sync.h"

/* The event bits shared with the poll-based client (pf__http_poll_events,
 * pf__http_cselect) are epoll's too. */
_Static_assert(EPOLLIN == POLLIN && EPOLLOUT == POLLOUT && EPOLLERR == POLLERR &&
                   EPOLLHUP == POLLHUP,
               "epoll and poll event bits differ");

#define MAX_IN_FLIGHT_LIMIT 100000
#define EVENTS_PER_WAIT     256

/* What the loop knows of one descriptor number (see "Keeping sockets"). */
struct fd_watch {
    uint8_t in_set; /* the events it is in the epoll set for (EPOLLIN/EPOLLOUT); 0: not in it */
    uint8_t wanted; /* what curl watches it for now; 0 after CURL_POLL_REMOVE */
    uint8_t ours;   /* opened by on_open_socket and not yet closed by on_close_socket */
};

struct loop {
    CURLM *multi;
    int epfd;
    uint64_t timer_ns;    /* when curl wants socket_action(TIMEOUT); UINT64_MAX: no timer */
    int sys_errno;        /* first epoll_ctl or allocation failure, 0 if none */
    struct fd_watch *fds; /* indexed by descriptor number; entries past nfds are all zero */
    size_t nfds;
};

/* The entry of descriptor s, growing the table as needed; NULL (and
 * sys_errno set) if out of memory. */
static struct fd_watch *watch_of(struct loop *L, curl_socket_t s)
{
    size_t i = (size_t)s;
    if (i >= L->nfds) {
        size_t n = L->nfds ? L->nfds : 64;
        while (n <= i)
            n *= 2;
        struct fd_watch *f = realloc(L->fds, n * sizeof *f);
        if (!f) {
            if (!L->sys_errno)
                L->sys_errno = ENOMEM;
            return NULL;
        }
        memset(f + L->nfds, 0, (n - L->nfds) * sizeof *f);
        L->fds = f;
        L->nfds = n;
    }
    return &L->fds[i];
}

/* Put s in the set for `events` (it is in it for w->in_set now).  A number
 * we thought was in the set but was closed and reused is not (ENOENT), and
 * one we thought was not may be (EEXIST): either way the other call does. */
static int set_watch(struct loop *L, curl_socket_t s, struct fd_watch *w, uint8_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = s};
    int op = w->in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int r = epoll_ctl(L->epfd, op, s, &ev);
    if (r != 0 && (errno == ENOENT || errno == EEXIST))
        r = epoll_ctl(L->epfd, op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev);
    if (r != 0) {
        w->in_set = 0;
        if (!L->sys_errno)
            L->sys_errno = errno;
        return -1;
    }
    w->in_set = events;
    return 0;
}

static void drop_watch(struct loop *L, curl_socket_t s, struct fd_watch *w)
{
    /* curl may already have closed it, which took it out of the set. */
    (void)epoll_ctl(L->epfd, EPOLL_CTL_DEL, s, NULL);
    w->in_set = 0;
}

/* curl: open a connection's socket (close-on-exec: the program may start
 * other programs while the loop runs). */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct loop *L = userp;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s == CURL_SOCKET_BAD)
        return s;
    struct fd_watch *w = watch_of(L, s);
    if (!w) {
        close(s);
        return CURL_SOCKET_BAD;
    }
    /* Still ours and watched: curl closed the previous socket of this number
     * behind our back (see "Keeping sockets") and may go on as if it watched
     * this one for the same events. */
    uint8_t still_wanted = w->ours ? w->wanted : 0;
    *w = (struct fd_watch){.ours = 1};
    if (still_wanted && set_watch(L, s, w, still_wanted) == 0)
        w->wanted = still_wanted;
    return s;
}

/* curl: close a socket on_open_socket opened. */
static int on_close_socket(void *userp, curl_socket_t s)
{
    struct loop *L = userp;
    if ((size_t)s < L->nfds) {
        if (L->fds[s].in_set)
            drop_watch(L, s, &L->fds[s]);
        L->fds[s] = (struct fd_watch){0};
    }
    return close(s);
}

/* Have curl open and close e's connection sockets through L's callbacks. */
static int own_sockets(CURL *e, struct loop *L)
{
    CURLcode cc = curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, L);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, L);
    return pf__http_easy_rc(cc);
}

/* curl: watch socket s for `what` (or stop watching it). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    struct loop *L = userp;
    if (what == CURL_POLL_REMOVE && (size_t)s >= L->nfds)
        return 0; /* never watched */
    struct fd_watch *w = watch_of(L, s);
    if (!w)
        return -1;
    if (what == CURL_POLL_REMOVE) {
        w->wanted = 0;
        /* A connection socket stays in for reading while it idles; anything
         * else leaves now (an idle socket is always writable). */
        if (w->in_set && (!w->ours || (w->in_set & EPOLLOUT)))
            drop_watch(L, s, w);
        return 0;
    }
    uint8_t events = (uint8_t)pf__http_poll_events(what);
    w->wanted = events;
    if (w->ours && w->in_set == events)
        return 0; /* already in the set for just that */
    return set_watch(L, s, w, events);
}

/* curl: call socket_action(TIMEOUT) in timeout_ms (-1: no timer). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    pf__http_timer_set(&((struct loop *)userp)->timer_ns, timeout_ms);
    return 0;
}

static int start(struct loop *L, struct pf__http_xfer *x, const pf_http_config *cfg, size_t index)
{
    x->index = index;
    pf__http_xfer_prepare(x, cfg, (uint64_t)index);
    CURLMcode mc = curl_multi_add_handle(L->multi, x->easy);
    return pf__http_multi_rc(mc);
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
    rc = pf__http_multi_rc(mc);
    if (rc != PF_OK)
        goto out;
    while (made < slots) {
        rc = pf__http_xfer_init(&xs[made], R->cfg, R->headers, R->noproxy);
        if (rc != PF_OK)
            goto out;
        rc = own_sockets(xs[made++].easy, &L);
        if (rc != PF_OK)
            goto out;
    }
    for (size_t k = 0; k < slots && start_next(R, &L, &xs[k], &rc); k++)
        active++;
    if (rc != PF_OK)
        goto out;

    int running = 0;
    while (active > 0 && !atomic_load_explicit(&R->stop, memory_order_relaxed)) {
        int nev = epoll_wait(L.epfd, evs, EVENTS_PER_WAIT, pf__http_wait_ms(L.timer_ns));
        if (nev < 0) {
            if (errno == EINTR)
                continue;
            rc = PF_ESYS;
            goto out;
        }
        mc = CURLM_OK;
        for (int i = 0; i < nev && mc == CURLM_OK; i++) {
            int fd = evs[i].data.fd;
            if ((size_t)fd < L.nfds && L.fds[fd].wanted == 0) {
                drop_watch(&L, fd, &L.fds[fd]); /* idle: see "Keeping sockets" */
                continue;
            }
            mc = curl_multi_socket_action(L.multi, fd, pf__http_cselect(evs[i].events), &running);
        }
        if (mc == CURLM_OK && (nev == 0 || L.timer_ns <= pf__now_ns())) {
            L.timer_ns = UINT64_MAX;
            mc = curl_multi_socket_action(L.multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        if (L.sys_errno) {
            rc = L.sys_errno == ENOMEM ? PF_ENOMEM : PF_ESYS;
            goto out;
        }
        if (mc != CURLM_OK) {
            rc = pf__http_multi_rc(mc);
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
    if (L.multi) /* closes the cached connections through on_close_socket */
        curl_multi_cleanup(L.multi);
    free(L.fds);
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
