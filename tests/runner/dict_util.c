/*
 * Dict test helpers (see dict_util.h).
 */
#include "dict_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

int pf_test_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0)
        FAIL("cannot find a free port: %s", strerror(errno));
    close(s);
    return ntohs(a.sin_port);
}

static bool in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];
    if (!path)
        return false;
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
        if (access(buf, X_OK) == 0)
            return true;
        path += n + (end ? 1 : 0);
    }
    return false;
}

static bool pings(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* Start on `port` (0: a free one, retried a few times). */
static void start(pf_test_redis *r, int want_port)
{
    memset(r, 0, sizeof *r);
    if (!in_path("redis-server"))
        SKIP("redis-server is not installed (tools/setup.sh installs it)");
    for (int attempt = 0; attempt < (want_port ? 50 : 5); attempt++) {
        snprintf(r->dir, sizeof r->dir, "/tmp/pf-redis-XXXXXX");
        if (!mkdtemp(r->dir))
            FAIL("mkdtemp: %s", strerror(errno));
        snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
        r->port = want_port ? want_port : pf_test_free_port();
        char port[16], log[96];
        snprintf(port, sizeof port, "%d", r->port);
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        pid_t parent = getpid();
        fflush(NULL);
        r->pid = fork();
        if (r->pid < 0)
            FAIL("fork: %s", strerror(errno));
        if (r->pid == 0) {
            /* Never outlive the test, even if it crashes. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", r->dir, "--logfile", log, "--unixsocket",
                   r->sock, "--unixsocketperm", "700", "--daemonize", "no", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 500 * (int)pf_test_scale(); i++) {
            if (pings(r->port))
                return;
            int st;
            if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
                r->pid = 0;
                break; /* died: maybe the port was taken meanwhile; try another */
            }
            pf_test_sleep_ms(10);
        }
        pf_test_redis_stop(r);
        if (want_port)
            pf_test_sleep_ms(100); /* the port may still be in TIME_WAIT use */
    }
    FAIL("redis-server did not start");
}

void pf_test_redis_start(pf_test_redis *r)
{
    start(r, 0);
}

void pf_test_redis_start_on(pf_test_redis *r, int port)
{
    start(r, port);
}

void pf_test_redis_stop(pf_test_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        int st;
        for (int i = 0; i < 300; i++) {
            if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
                r->pid = 0;
                break;
            }
            pf_test_sleep_ms(10);
        }
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            r->pid = 0;
        }
    }
    if (r->dir[0]) {
        char path[160];
        snprintf(path, sizeof path, "%s/redis.log", r->dir);
        unlink(path);
        unlink(r->sock);
        snprintf(path, sizeof path, "%s/dump.rdb", r->dir);
        unlink(path);
        rmdir(r->dir);
        r->dir[0] = '\0';
    }
}

pf_dict *pf_test_dict_open(pf_dict_backend b, pf_test_redis *r, const pf_dict_opts *opts)
{
    static unsigned n;
    char name[64];
    snprintf(name, sizeof name, "t%d-%u", (int)getpid(), ++n);
    pf_dict *d = NULL;
    switch (b) {
    case PF_DICT_LOCAL:
        ASSERT_OK(pf_dict_open_local(&d, opts));
        break;
    case PF_DICT_SHM:
        ASSERT_OK(pf_dict_create_shm(&d, name, opts));
        break;
    case PF_DICT_REDIS:
        if (r->pid == 0)
            pf_test_redis_start(r);
        ASSERT_OK(pf_dict_open_redis(&d, "127.0.0.1", r->port, name, opts));
        break;
    }
    ASSERT(d != NULL);
    return d;
}
