/*
 * The fork server.
 *
 * DESIGN
 *   Forking a process that runs threads is unsafe: the child gets every lock
 *   that another thread held at that instant, forever held.  So workers are
 *   never forked from the user's program.  One fork server process is forked
 *   from the program once, while the program is still single-threaded (at
 *   pf_init(), or when the first process pool is created), and every worker
 *   of every pool is forked from it.  The fork server is single-threaded for
 *   its whole life and runs no user code, so its forks are always clean, and
 *   workers see the program's memory as it was when the server started:
 *   function pointers into the binary stay valid, nothing is serialized.
 *
 *   The server owns (is the parent of) every worker: it reaps them and tells
 *   the pool that asked for them how each one ended (PF__FS_EXITED), so the
 *   pool never races the user's own waitpid() calls, and it kills workers on
 *   request, safely against pid reuse, because a pid it has not reaped
 *   cannot be reused.
 *
 *   No orphans, however the program dies: the server watches a "lifeline"
 *   pipe whose only write end is held by the program; when the program dies
 *   (SIGKILL included) the pipe reports EOF and the server kills every worker
 *   and exits.  Workers have PR_SET_PDEATHSIG=SIGKILL on the server, which is
 *   single-threaded and so cannot trigger it early.  Server and workers run
 *   in their own process group, so a terminal's Ctrl-C reaches only the
 *   program, which decides (pf_executor_shutdown, or dying, which the
 *   lifeline turns into a clean stop).
 *
 * Channels: the program talks to the server on a control socket (to register
 * pools, each with its own channel socket).  All are SOCK_SEQPACKET.
 * Parent-side state below is guarded by fs_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "platform/sync.h"
#include "procs/procs.h"

static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t fs_pid;         /* fs_lock: the server, 0 if none */
static int fs_ctl = -1;      /* fs_lock: control socket */
static int fs_lifeline = -1; /* fs_lock: write end of the lifeline pipe */
static int fs_users;         /* fs_lock: pools + pf_init's pin */
static bool fs_pinned;       /* fs_lock: pf_init() holds a use */

int pf__fs_fail_spawns; /* test hook, see procs.h; the server's copy counts down */
int pf__fs_chan_buffer; /* test hook, see procs.h */

/* ------------------------------------------------------------------------ */
/* Inside the fork server                                                    */
/* ------------------------------------------------------------------------ */

struct fs_pool {
    int chan, memfd, evfd;
    bool closing;  /* CLOSE received or channel gone: drop when no workers */
    int n_workers; /* live (unreaped) workers */
    /* Answers not sent yet, oldest first.  The server never blocks on a
     * channel: a pool that sends requests (hundreds of SPAWNs, or respawns
     * from its collector) while nobody reads its answers would wait for the
     * server, which would wait for it.  Flushed when the channel is writable. */
    struct pf__fs_msg *out;
    int n_out, cap_out;
};

struct fs_child {
    pid_t pid;
    int pool;  /* index into pools[] */
    int index; /* worker index within its pool */
};

static struct fs_pool *pools;
static int n_pools, cap_pools;
static struct fs_child *children;
static int n_children, cap_children;
static struct pollfd *pollfds; /* the poll set, rebuilt each round */
static int cap_pollfds;

/* Send what waits in pool's outbox, in order, until the channel is full.  A
 * pool whose end is gone gets nothing: MSG_NOSIGNAL, other errors drop the
 * message. */
static void fs_flush(struct fs_pool *pool)
{
    int i = 0;
    while (i < pool->n_out) {
        ssize_t r =
            send(pool->chan, &pool->out[i], sizeof pool->out[i], MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        i++;
    }
    memmove(pool->out, pool->out + i, (size_t)(pool->n_out - i) * sizeof *pool->out);
    pool->n_out -= i;
}

static void fs_send(struct fs_pool *pool, int type, int index, int pid, int status)
{
    if (pool->chan < 0)
        return;
    struct pf__fs_msg m = {.type = type, .index = index, .pid = pid, .status = status};
    if (pool->n_out == pool->cap_out) {
        int cap = pool->cap_out ? pool->cap_out * 2 : 64;
        struct pf__fs_msg *o = realloc(pool->out, (size_t)cap * sizeof *o);
        if (!o) { /* no memory for the outbox: wait for the pool instead */
            fs_flush(pool);
            while (send(pool->chan, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR) {
            }
            return;
        }
        pool->out = o;
        pool->cap_out = cap;
    }
    pool->out[pool->n_out++] = m;
    fs_flush(pool);
}

static void fs_kill_pool(int p)
{
    for (int i = 0; i < n_children; i++)
        if (children[i].pool == p)
            kill(children[i].pid, SIGKILL);
}

static void fs_drop_closed_pools(void)
{
    for (int p = 0; p < n_pools; p++) {
        struct fs_pool *pool = &pools[p];
        if (pool->chan < 0 || !pool->closing || pool->n_workers > 0)
            continue;
        /* Closing the channel tells the pool that all its workers are gone. */
        close(pool->chan);
        close(pool->memfd);
        close(pool->evfd);
        pool->chan = pool->memfd = pool->evfd = -1;
        free(pool->out); /* EXITED answers a closing pool no longer reads */
        pool->out = NULL;
        pool->n_out = pool->cap_out = 0;
    }
}

static void fs_reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < n_children; i++) {
            if (children[i].pid != pid)
                continue;
            struct fs_pool *pool = &pools[children[i].pool];
            pool->n_workers--;
            fs_send(pool, PF__FS_EXITED, children[i].index, pid, status);
            children[i] = children[--n_children];
            break;
        }
    }
    fs_drop_closed_pools();
}

static __attribute__((noreturn)) void fs_exit_killing_all(void)
{
    for (int i = 0; i < n_children; i++)
        kill(children[i].pid, SIGKILL);
    for (;;) { /* until ECHILD; errno is looked at only after a failure */
        pid_t r = waitpid(-1, NULL, 0);
        if (r < 0 && errno != EINTR)
            break;
    }
    _exit(0);
}

static void fs_spawn(int p, int index, const sigset_t *orig_mask, int ctl, int lifeline, int sigfd)
{
    if (n_children == cap_children) {
        int cap = cap_children ? cap_children * 2 : 64;
        struct fs_child *c = realloc(children, (size_t)cap * sizeof *c);
        if (!c) {
            fs_send(&pools[p], PF__FS_SPAWNED, index, 0, ENOMEM);
            return;
        }
        children = c;
        cap_children = cap;
    }
    if (pf__fs_fail_spawns > 0) { /* test hook: as if fork() had failed */
        pf__fs_fail_spawns--;
        fs_send(&pools[p], PF__FS_SPAWNED, index, 0, EAGAIN);
        return;
    }
    pid_t server = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fs_send(&pools[p], PF__FS_SPAWNED, index, 0, errno);
        return;
    }
    if (pid == 0) {
        /* The worker.  Keep only its own pool's memfd and eventfd. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != server)
            _exit(1); /* the server died between fork and prctl */
        int memfd = pools[p].memfd, evfd = pools[p].evfd;
        for (int i = 0; i < n_pools; i++) {
            if (pools[i].chan < 0)
                continue;
            close(pools[i].chan);
            if (i != p) {
                close(pools[i].memfd);
                close(pools[i].evfd);
            }
        }
        /* The server's bookkeeping means nothing to a worker, and must be
         * empty should a task start a fork server of its own. */
        for (int i = 0; i < n_pools; i++)
            free(pools[i].out);
        free(pools);
        free(children);
        free(pollfds);
        pools = NULL;
        children = NULL;
        pollfds = NULL;
        n_pools = cap_pools = n_children = cap_children = cap_pollfds = 0;
        pf__fs_fail_spawns = 0;
        close(ctl);
        close(lifeline);
        close(sigfd);
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, orig_mask, NULL);
        prctl(PR_SET_NAME, "pfor-worker");
        pf__proc_worker_main(memfd, evfd, index);
    }
    children[n_children++] = (struct fs_child){.pid = pid, .pool = p, .index = index};
    pools[p].n_workers++;
    fs_send(&pools[p], PF__FS_SPAWNED, index, pid, 0);
}

static void fs_register(int ctl)
{
    struct pf__fs_msg m;
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
    if (n == 0)
        fs_exit_killing_all(); /* the program closed the control socket */
    if (n < 0)
        return;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(3 * sizeof(int)))
        return;
    int fds[3];
    memcpy(fds, CMSG_DATA(c), sizeof fds);
    if (n_pools == cap_pools) {
        int cap = cap_pools ? cap_pools * 2 : 8;
        struct fs_pool *np = realloc(pools, (size_t)cap * sizeof *np);
        if (!np) {
            close(fds[0]); /* the pool sees EOF at once: registration failed */
            close(fds[1]);
            close(fds[2]);
            return;
        }
        pools = np;
        cap_pools = cap;
    }
    pools[n_pools++] = (struct fs_pool){.chan = fds[0], .memfd = fds[1], .evfd = fds[2]};
}

static void fs_pool_message(int p, const sigset_t *orig_mask, int ctl, int lifeline, int sigfd)
{
    struct fs_pool *pool = &pools[p];
    struct pf__fs_msg m;
    ssize_t n = recv(pool->chan, &m, sizeof m, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* the pool's end is gone: its program side died or leaked */
        pool->closing = true;
        fs_kill_pool(p);
        fs_drop_closed_pools();
        return;
    }
    if (n != sizeof m)
        return;
    switch (m.type) {
    case PF__FS_SPAWN:
        if (!pool->closing)
            fs_spawn(p, m.index, orig_mask, ctl, lifeline, sigfd);
        break;
    case PF__FS_KILL:
        for (int i = 0; i < n_children; i++)
            if (children[i].pool == p && children[i].pid == m.pid && children[i].index == m.index)
                kill(m.pid, SIGKILL);
        break;
    case PF__FS_CLOSE:
        pool->closing = true;
        fs_kill_pool(p);
        fs_drop_closed_pools();
        break;
    }
}

static __attribute__((noreturn)) void fs_main(int ctl, int lifeline, bool pdeathsig)
{
    /* We are a fork of a thread that held fs_lock (start_locked), and so is
     * every worker: reset the program-side state to "no fork server", so
     * that a task can use pf_init/pf_fini or a process pool of its own (it
     * starts its own fork server) instead of blocking on a lock that no
     * thread will ever release.  We are single-threaded: nothing else can
     * touch these. */
    pthread_mutex_init(&fs_lock, NULL);
    fs_pid = 0;
    fs_ctl = fs_lifeline = -1;
    fs_users = 0;
    fs_pinned = false;

    setpgid(0, 0);
    if (pdeathsig)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "pfor-forksrv");
    /* Move our two descriptors to 3 and 4, close everything else.  The copies
     * go above 4 first (the lowest free numbers there: a limit on descriptors
     * as low as 8 still works), so that neither dup3 closes the other one. */
    int c = fcntl(ctl, F_DUPFD_CLOEXEC, 5), l = fcntl(lifeline, F_DUPFD_CLOEXEC, 5);
    if (c < 0 || l < 0)
        _exit(1);
    if (dup3(c, 3, O_CLOEXEC) < 0 || dup3(l, 4, O_CLOEXEC) < 0)
        _exit(1);
    /* An original below 3 (the program had closed its standard descriptors)
     * is neither replaced above nor closed below: it would stay open in
     * every worker as its stdin/stdout/stderr (a task's printf would write
     * into our control socket). */
    if (ctl < 3)
        close(ctl);
    if (lifeline < 3)
        close(lifeline);
    /* And a standard descriptor left closed is opened on /dev/null (open
     * takes the lowest free number): otherwise a descriptor opened later
     * (the signalfd, a pool's memfd) could take it, and a task writing to
     * stdout would write into the pool's shared memory. */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0)
            (void)open("/dev/null", O_RDWR);
    ctl = 3;
    lifeline = 4;
    /* Workers must not hold the program's descriptors: a pipe or socket kept
     * open by a worker would hide EOF from the program. */
    if (syscall(SYS_close_range, 5, ~0U, 0) != 0) {
        long fd_max = sysconf(_SC_OPEN_MAX);
        for (int fd = 5; fd < (fd_max > 0 && fd_max < (1 << 20) ? fd_max : (1 << 20)); fd++)
            close(fd);
    }

    /* Default dispositions: the program's handlers mean nothing here. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t orig_mask, chld;
    sigemptyset(&orig_mask);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_SETMASK, &chld, NULL);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0)
        _exit(1);

    for (;;) {
        int n = 3 + n_pools;
        if (n > cap_pollfds) {
            struct pollfd *np = realloc(pollfds, (size_t)n * 2 * sizeof *np);
            if (!np)
                fs_exit_killing_all();
            pollfds = np;
            cap_pollfds = n * 2;
        }
        struct pollfd *pfd = pollfds;
        pfd[0] = (struct pollfd){.fd = ctl, .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = lifeline, .events = POLLIN};
        pfd[2] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        for (int p = 0; p < n_pools; p++)
            pfd[3 + p] = (struct pollfd){.fd = pools[p].chan,
                                         .events = POLLIN | (pools[p].n_out ? POLLOUT : 0)};
        int r = poll(pfd, (nfds_t)n, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fs_exit_killing_all();
        }
        if (pfd[1].revents) /* the program is gone */
            fs_exit_killing_all();
        if (pfd[2].revents) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) > 0) {
            }
            fs_reap();
        }
        for (int p = 0; p < n_pools && 3 + p < n; p++) {
            if ((pfd[3 + p].revents & POLLOUT) && pools[p].chan >= 0)
                fs_flush(&pools[p]);
            if ((pfd[3 + p].revents & ~POLLOUT) && pools[p].chan >= 0)
                fs_pool_message(p, &orig_mask, ctl, lifeline, sigfd);
        }
        if (pfd[0].revents)
            fs_register(ctl);
        /* Forget pools that are fully closed, keeping indexes stable for
         * live children: only trailing entries are removed. */
        while (n_pools > 0 && pools[n_pools - 1].chan < 0)
            n_pools--;
    }
}

/* ------------------------------------------------------------------------ */
/* In the program                                                            */
/* ------------------------------------------------------------------------ */

static int start_locked(bool explicit_init)
{
    (void)explicit_init;
    /* The one rule: fork only while single-threaded.  A thread that was just
     * joined can take a moment to leave the thread group: look again for a
     * little while before refusing.  ThreadSanitizer's runtime keeps threads
     * of its own (which hold none of the program's locks), so its builds
     * cannot count and skip the check. */
    for (int tries = 0; !PF__TSAN && pf__thread_count() > 1; tries++) {
        if (tries == 20)
            return PF_EFORKUNSAFE;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    int sv[2], lp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return PF_ESYS;
    if (pipe2(lp, O_CLOEXEC) != 0) {
        close(sv[0]);
        close(sv[1]);
        return PF_ESYS;
    }
    bool main_thread = getpid() == (pid_t)syscall(SYS_gettid);
    fflush(NULL); /* buffered output must not be written twice */
    /* The child gets fs_lock held by us, forever: fs_main resets it. */
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        close(lp[0]);
        close(lp[1]);
        return PF_ESYS;
    }
    if (pid == 0) {
        close(sv[0]);
        close(lp[1]);
        fs_main(sv[1], lp[0], main_thread);
    }
    close(sv[1]);
    close(lp[0]);
    setpgid(pid, pid); /* also done by the child: whichever runs first */
    fs_pid = pid;
    fs_ctl = sv[0];
    fs_lifeline = lp[1];
    return PF_OK;
}

static void stop_locked(void)
{
    /* EOF on the control socket: the server exits.  shutdown(), not only
     * close(): a child this program forked (without exec) holds a copy of
     * the descriptor, and closing ours alone would leave the server running
     * and this waitpid waiting until that child ends. */
    shutdown(fs_ctl, SHUT_RDWR);
    close(fs_ctl);
    close(fs_lifeline);
    fs_ctl = fs_lifeline = -1;
    while (waitpid(fs_pid, NULL, 0) < 0 && errno == EINTR) {
    }
    fs_pid = 0;
}

/* A server killed from outside is forgotten (and reaped) here, so the next
 * use starts a fresh one; otherwise every later pool would fail on its dead
 * control socket (PF_ESYS) for as long as a use is held (pf_init's pin, a
 * pool that lost it), and it would stay a zombie meanwhile.  Only a hang-up
 * counts: bytes to read would not say the server is gone.  Uses still held
 * for the dead server stay counted and release the new one. */
static void forget_dead_locked(void)
{
    if (fs_pid == 0)
        return;
    struct pollfd pfd = {.fd = fs_ctl, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
        stop_locked();
}

int pf__forkserver_acquire(bool explicit_init)
{
    int rc = PF_OK;
    pf__mutex_lock(&fs_lock);
    forget_dead_locked();
    if (fs_pid == 0)
        rc = start_locked(explicit_init);
    if (rc == PF_OK)
        fs_users++;
    pf__mutex_unlock(&fs_lock);
    return rc;
}

void pf__forkserver_release(void)
{
    pf__mutex_lock(&fs_lock);
    if (fs_users > 0 && --fs_users == 0 && fs_pid)
        stop_locked();
    pf__mutex_unlock(&fs_lock);
}

int pf__forkserver_register(int memfd, int evfd, int *chan)
{
    *chan = -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return PF_ESYS;
    for (int i = 0; i < 2 && pf__fs_chan_buffer > 0; i++) { /* test hook */
        (void)setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &pf__fs_chan_buffer, sizeof(int));
        (void)setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &pf__fs_chan_buffer, sizeof(int));
    }
    struct pf__fs_msg m = {.type = 0};
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(3 * sizeof(int));
    int fds[3] = {sv[1], memfd, evfd};
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    int rc = PF_OK;
    pf__mutex_lock(&fs_lock);
    if (fs_pid == 0) {
        rc = PF_ESYS;
    } else {
        ssize_t n;
        while ((n = sendmsg(fs_ctl, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
        }
        if (n != (ssize_t)sizeof m)
            rc = PF_ESYS;
    }
    pf__mutex_unlock(&fs_lock);
    close(sv[1]); /* the server has its own copy now */
    if (rc != PF_OK) {
        close(sv[0]);
        return rc;
    }
    *chan = sv[0];
    return PF_OK;
}

int pf_init(void)
{
    int rc = PF_OK;
    pf__mutex_lock(&fs_lock);
    forget_dead_locked();
    if (!fs_pinned) {
        if (fs_pid == 0)
            rc = start_locked(true);
        if (rc == PF_OK) {
            fs_users++;
            fs_pinned = true;
        }
    }
    pf__mutex_unlock(&fs_lock);
    return rc;
}

void pf_fini(void)
{
    pf__mutex_lock(&fs_lock);
    bool pinned = fs_pinned;
    fs_pinned = false;
    pf__mutex_unlock(&fs_lock);
    if (pinned)
        pf__forkserver_release();
}
