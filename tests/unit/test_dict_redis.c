/*
 * The redis backend's own behaviour: a bad address fails at open (not at first
 * use), a lost server is PF_ECONNECT and the next call reconnects, a key of the
 * wrong type is reported, and a handle used in a forked child gets its own
 * connection.
 */
#include <math.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "dict_util.h"
#include "test.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(dict_redis_bad_address_fails_at_open)
{
    pf_dict *d = NULL;
    pf_dict_opts o = {.timeout = 0.3};
    /* Nothing listens there. */
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", pf_test_free_port(), "x", &o), PF_ECONNECT);
    ASSERT(d == NULL);
    /* A name that cannot resolve. */
    ASSERT_ERR(pf_dict_open_redis(&d, "no-such-host.invalid", 6379, "x", &o), PF_ECONNECT);
    /* No such socket file. */
    ASSERT_ERR(pf_dict_open_redis(&d, "/nonexistent/redis.sock", 0, "x", &o), PF_ECONNECT);
    /* Something that accepts the connection and never answers: PING times out. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(s, 4), 0);
    ASSERT_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
    double t0 = now_s();
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", ntohs(a.sin_port), "x", &o), PF_ECONNECT);
    ASSERT(now_s() - t0 < 5.0 * pf_test_scale());
    close(s);
    /* Bad arguments. */
    ASSERT_ERR(pf_dict_open_redis(&d, NULL, 1, "x", NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", 0, "x", NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", 70000, "x", NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", 6379, "", NULL), PF_EINVAL);
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", 6379, NULL, NULL), PF_EINVAL);
    const double bad_timeouts[] = {-1, NAN, INFINITY, 1e30};
    for (size_t i = 0; i < sizeof bad_timeouts / sizeof *bad_timeouts; i++) {
        o.timeout = bad_timeouts[i];
        ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", 6379, "x", &o), PF_EINVAL);
    }
}

TEST(dict_redis_auth_failure_fails_at_open)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    pf_dict *d = NULL;
    pf_dict_opts o = {.password = "wrong"};
    /* The server has no password: AUTH is refused, at open. */
    ASSERT_ERR(pf_dict_open_redis(&d, "127.0.0.1", r.port, "x", &o), PF_ECONNECT);
    ASSERT(d == NULL);
    pf_test_redis_stop(&r);
}

TEST(dict_redis_reconnects_after_the_server_comes_back)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    pf_dict *d;
    pf_dict_opts o = {.timeout = 1.0};
    ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", r.port, "h", &o));
    ASSERT_OK(pf_dict_set_str(d, "k", "v"));
    int port = r.port;
    pf_test_redis_stop(&r);
    /* The server is gone: a clear error, no crash, no hang. */
    ASSERT_ERR(pf_dict_set_str(d, "k", "w"), PF_ECONNECT);
    ASSERT_ERR(pf_dict_contains(d, "k", 1), PF_ECONNECT);
    /* A new server on the same port: the next call reconnects (the data did
     * not survive: that server keeps nothing). */
    pf_test_redis r2;
    pf_test_redis_start_on(&r2, port);
    ASSERT_OK(pf_dict_set_str(d, "k", "again"));
    char *s;
    ASSERT_OK(pf_dict_get_str(d, "k", &s));
    ASSERT_STREQ(s, "again");
    free(s);
    pf_dict_close(d);
    pf_test_redis_stop(&r2);
}

TEST(dict_redis_wrong_key_type_and_fork)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    /* A plain string under the dict's name: operations fail cleanly and the
     * check says why. */
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r.port, tv);
    ASSERT(c && !c->err);
    redisReply *rep = redisCommand(c, "SET notahash 1");
    ASSERT(rep);
    freeReplyObject(rep);
    redisFree(c);
    pf_dict *d;
    ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", r.port, "notahash", NULL));
    ASSERT_ERR(pf_dict_set_str(d, "k", "v"), PF_EPROTO);
    char msg[200];
    ASSERT_ERR(pf_dict_check(d, msg, sizeof msg), PF_ECORRUPT);
    ASSERT(strstr(msg, "not a hash") != NULL);
    ASSERT_OK(pf_dict_clear(d)); /* DEL: the name is free again */
    ASSERT_OK(pf_dict_check(d, msg, sizeof msg));

    /* The parent's connection is open when it forks: the child must not write
     * on it (the replies would interleave); it gets a connection of its own. */
    ASSERT_OK(pf_dict_set_str(d, "k", "parent"));
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 200; i++)
            if (pf_dict_incr(d, "n", 1, 1, NULL))
                _exit(1);
        pf_dict_close(d);
        _exit(0);
    }
    for (int i = 0; i < 200; i++) {
        char *s;
        ASSERT_OK(pf_dict_get_str(d, "k", &s));
        ASSERT_STREQ(s, "parent");
        free(s);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int64_t n;
    ASSERT_OK(pf_dict_get_i64(d, "n", 1, &n));
    ASSERT_EQ(n, 200);
    pf_dict_close(d);
    pf_test_redis_stop(&r);
}

/* The server dies while the handle is idle; the next command is a pipeline
 * bigger than a socket buffer, so it takes several writes, the later ones on
 * a connection the peer has reset.  The library must answer PF_ECONNECT, not
 * kill its host with SIGPIPE (a program that never touched SIGPIPE: the
 * default disposition, which the test runner itself does not have). */
TEST(dict_redis_server_death_mid_pipeline_is_econnect_not_sigpipe)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    enum { N = 16, VLEN = 1 << 20 };
    char *val = malloc(VLEN);
    ASSERT(val != NULL);
    memset(val, 'x', VLEN);
    pf_dict_item items[N];
    char keys[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        items[i] = (pf_dict_item){keys[i], strlen(keys[i]), val, VLEN};
    }
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        /* A connection of this process (a handle from before the fork would
         * reconnect), known to work. */
        pf_dict *d;
        pf_dict_opts o = {.timeout = 2.0};
        if (pf_dict_open_redis(&d, "127.0.0.1", r.port, "pipe", &o) || pf_dict_set_str(d, "k", "v"))
            _exit(2);
        /* Kill the server and wait until its port refuses connections. */
        kill(r.pid, SIGKILL);
        for (int i = 0; i < 500; i++) {
            struct timeval tv = {0, 100000};
            redisContext *c = redisConnectWithTimeout("127.0.0.1", r.port, tv);
            bool refused = !c || c->err;
            redisFree(c);
            if (refused)
                break;
            usleep(10000);
        }
        int rc1 = pf_dict_set_many(d, items, N);
        int rc2 = pf_dict_set(d, "big", 3, val, VLEN);
        pf_dict_close(d);
        _exit(rc1 == PF_ECONNECT && rc2 == PF_ECONNECT ? 0 : 1);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        FAIL("the client was killed by signal %d", WTERMSIG(st));
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(val);
    pf_test_redis_stop(&r);
}

/* Every descriptor of this process that is not close-on-exec, as a bitmap. */
static void fds_without_cloexec(unsigned char *set, int n)
{
    memset(set, 0, (size_t)n);
    for (int fd = 0; fd < n; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            set[fd] = 1;
    }
}

/* The connection is not handed to programs this process execs (a process
 * pool's or an MPI launcher's): its socket is close-on-exec, like every
 * other descriptor the library opens, after open and after a reconnect. */
TEST(dict_redis_socket_is_close_on_exec)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    enum { NFD = 1024 };
    static unsigned char before[NFD], after[NFD];
    fds_without_cloexec(before, NFD);
    pf_dict *d;
    ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", r.port, "cloexec", NULL));
    ASSERT_OK(pf_dict_set_str(d, "k", "v"));
    fds_without_cloexec(after, NFD);
    for (int fd = 0; fd < NFD; fd++)
        if (after[fd] && !before[fd])
            FAIL("descriptor %d (the redis connection) is inherited by exec", fd);
    /* Over a unix socket too, and in a forked child that reconnects. */
    pf_dict *u;
    ASSERT_OK(pf_dict_open_redis(&u, r.sock, 0, "cloexec", NULL));
    ASSERT_OK(pf_dict_set_str(u, "k", "w"));
    pid_t pid = fork();
    if (pid == 0) {
        if (pf_dict_set_str(d, "k2", "v"))
            _exit(2);
        fds_without_cloexec(after, NFD);
        for (int fd = 0; fd < NFD; fd++)
            if (after[fd] && !before[fd])
                _exit(1);
        _exit(0);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fds_without_cloexec(after, NFD);
    for (int fd = 0; fd < NFD; fd++)
        if (after[fd] && !before[fd])
            FAIL("descriptor %d (the unix-socket connection) is inherited by exec", fd);
    pf_dict_close(u);
    pf_dict_close(d);
    pf_test_redis_stop(&r);
}

/* Blank the first occurrence of the C string s in the ref's bytes. */
static void blank_in_ref(pf_dict_ref *ref, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= sizeof ref->bytes; i++) {
        if (memcmp(ref->bytes + i, s, n) == 0) {
            memset(ref->bytes + i, 0, n);
            return;
        }
    }
    FAIL("\"%s\" is not in the ref", s);
}

/* A ref's bytes come from anywhere: one naming no hash or no host is refused
 * as pf_dict_open_redis refuses it, and opens nothing. */
TEST(dict_redis_ref_is_checked_like_open)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    pf_dict *d, *h = NULL;
    ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", r.port, "refname-x", NULL));
    pf_dict_ref good, bad;
    ASSERT_OK(pf_dict_ref_get(d, &good));
    ASSERT_OK(pf_dict_from_ref(&h, &good));
    pf_dict_close(h);
    h = NULL;
    bad = good;
    blank_in_ref(&bad, "refname-x");
    ASSERT_ERR(pf_dict_from_ref(&h, &bad), PF_EINVAL);
    ASSERT(h == NULL);
    bad = good;
    blank_in_ref(&bad, "127.0.0.1");
    ASSERT_ERR(pf_dict_from_ref(&h, &bad), PF_EINVAL);
    ASSERT(h == NULL);
    pf_dict_close(d);
    pf_test_redis_stop(&r);
}

/* A unix socket path hiredis cannot pass whole (it copies sizeof sun_path - 1
 * bytes, not always NUL-ended) names no socket it can reach: open fails, and
 * never connects to the socket that the path's first bytes name. */
TEST(dict_redis_long_socket_path_is_not_truncated)
{
    pf_test_redis r;
    pf_test_redis_start(&r);
    struct sockaddr_un sa;
    size_t cut = sizeof sa.sun_path - 1; /* the bytes hiredis copies */
    char path[PF_DICT_MAX_HOST + 1];
    /* r.dir, slashes, "redis.sock": the server's socket spelled in len bytes. */
    size_t dl = strlen(r.dir), sl = strlen("redis.sock");
    ASSERT(dl + 1 + sl < cut);
    pf_dict *d = NULL;
    pf_dict_opts o = {.timeout = 0.5};
    for (size_t len = cut - 1; len <= cut; len++) {
        memcpy(path, r.dir, dl);
        memset(path + dl, '/', len - dl - sl);
        memcpy(path + len - sl, "redis.sock", sl);
        path[len] = '\0';
        if (len < cut) {
            ASSERT_OK(pf_dict_open_redis(&d, path, 0, "long", &o)); /* short enough: works */
            pf_dict_close(d);
            d = NULL;
            continue;
        }
        /* Too long, as spelled and with a suffix that names a file not there;
         * a few times, as the byte after the cut is whatever was there. */
        for (int i = 0; i < 5; i++) {
            ASSERT_ERR(pf_dict_open_redis(&d, path, 0, "long", &o), PF_ECONNECT);
            ASSERT(d == NULL);
        }
        snprintf(path + len, sizeof path - len, "-nothing-listens-here");
        ASSERT(access(path, F_OK) != 0);
        for (int i = 0; i < 5; i++) {
            ASSERT_ERR(pf_dict_open_redis(&d, path, 0, "long", &o), PF_ECONNECT);
            ASSERT(d == NULL);
        }
    }
    pf_test_redis_stop(&r);
}

/* A fake server on loopback, one connection at a time: HMGET gets one value
 * more than it asked for, every other command +PONG (so open's PING works and
 * HSET gets a reply of the wrong type). */
struct fake {
    int lfd, port;
    atomic_int stop;
    pthread_t t;
};

/* One RESP request (an array of bulk strings): its first word in cmd and its
 * number of words; -1 on EOF (the client closed: every test closes its handle
 * before fake_stop, so a connection's loop always ends). */
static int fake_read(FILE *f, char *cmd, size_t cap)
{
    char line[64];
    cmd[0] = '\0';
    if (!fgets(line, sizeof line, f) || line[0] != '*')
        return -1;
    int n = atoi(line + 1);
    for (int i = 0; i < n; i++) {
        if (!fgets(line, sizeof line, f) || line[0] != '$')
            return -1;
        size_t len = (size_t)atol(line + 1);
        for (size_t j = 0; j < len + 2; j++) {
            int ch = fgetc(f);
            if (ch == EOF)
                return -1;
            if (i == 0 && j < len && j + 1 < cap) {
                cmd[j] = (char)ch;
                cmd[j + 1] = '\0';
            }
        }
    }
    return n;
}

static void *fake_main(void *p)
{
    struct fake *fk = p;
    while (!atomic_load(&fk->stop)) {
        struct pollfd pfd = {fk->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) != 1)
            continue;
        int c = accept(fk->lfd, NULL, NULL);
        if (c < 0)
            continue;
        FILE *f = fdopen(c, "r+");
        if (!f) {
            close(c);
            continue;
        }
        char cmd[32];
        int n;
        while (!atomic_load(&fk->stop) && (n = fake_read(f, cmd, sizeof cmd)) >= 0) {
            if (strcmp(cmd, "HMGET") == 0) {
                fprintf(f, "*%d\r\n", n - 2 + 1);
                for (int i = 0; i < n - 2 + 1; i++)
                    fprintf(f, "$1\r\nv\r\n");
            } else {
                fprintf(f, "+PONG\r\n");
            }
            fflush(f);
        }
        fclose(f);
    }
    return NULL;
}

/* Start the fake server and open a dict on it. */
static pf_dict *fake_start(struct fake *fk)
{
    fk->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(fk->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(fk->lfd, 4), 0);
    ASSERT_EQ(getsockname(fk->lfd, (struct sockaddr *)&a, &len), 0);
    fk->port = ntohs(a.sin_port);
    atomic_init(&fk->stop, 0);
    ASSERT_EQ(pthread_create(&fk->t, NULL, fake_main, fk), 0);
    pf_dict *d;
    pf_dict_opts o = {.timeout = 2.0};
    ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", fk->port, "h", &o));
    return d;
}

/* Close d (which ends its connection's loop), then stop the server. */
static void fake_stop(struct fake *fk, pf_dict *d)
{
    pf_dict_close(d);
    atomic_store(&fk->stop, 1);
    pthread_join(fk->t, NULL);
    close(fk->lfd);
}

struct seen {
    size_t n, bad;
};

static int got_index(void *u, size_t index, int status, const void *val, size_t vlen)
{
    (void)status, (void)val, (void)vlen;
    struct seen *s = u;
    if (index >= s->n)
        s->bad++;
    return 0;
}

TEST(dict_redis_get_many_reply_of_the_wrong_length_is_eproto)
{
    struct fake fk;
    pf_dict *d = fake_start(&fk);
    pf_dict_item items[3] = {{"a", 1, NULL, 0}, {"b", 1, NULL, 0}, {"c", 1, NULL, 0}};
    struct seen s = {.n = 3};
    ASSERT_ERR(pf_dict_get_many(d, items, 3, got_index, &s), PF_EPROTO);
    ASSERT_EQ(s.bad, 0); /* never an index past the batch */
    fake_stop(&fk, d);
}

/* HSET answered with something that is not its count (the fake server's
 * +PONG): pf_dict_set and pf_dict_set_many both say PF_EPROTO, neither
 * reports the pairs as set. */
TEST(dict_redis_set_many_reply_of_the_wrong_type_is_eproto)
{
    struct fake fk;
    pf_dict *d = fake_start(&fk);
    pf_dict_item items[2] = {{"a", 1, "1", 1}, {"b", 1, "2", 1}};
    ASSERT_ERR(pf_dict_set(d, "a", 1, "1", 1), PF_EPROTO);
    ASSERT_ERR(pf_dict_set_many(d, items, 2), PF_EPROTO);
    fake_stop(&fk, d);
}
