/*
 * The redis backend's own behaviour: a bad address fails at open (not at first
 * use), a lost server is PF_ECONNECT and the next call reconnects, a key of the
 * wrong type is reported, and a handle used in a forked child gets its own
 * connection.
 */
#include <math.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
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
