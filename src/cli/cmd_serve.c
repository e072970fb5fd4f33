/*
 * `pfor serve`: run the built-in mock API (include/pfor/serve.h) until
 * SIGINT or SIGTERM.
 *
 * Once the server listens, stdout gets exactly one line,
 * "listening on http://ADDR:PORT" (flushed), so that a script can start it
 * with --port 0 and read the port.  On SIGINT/SIGTERM the server stops, a
 * one-line summary of its counters goes to stderr and the exit status is 0.
 * Bad options, and an address or port that cannot be had, exit 2 with one
 * line on stderr.
 *
 * The soft RLIMIT_NOFILE is raised to the hard limit first: each client
 * connection is a descriptor, and 10,000 concurrent clients are the point.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "pfor/pfor.h"

static void usage(FILE *out)
{
    fputs("usage: pfor serve [options]\n"
          "\n"
          "Run a mock JSON API on HTTP/1.1 until SIGINT or SIGTERM:\n"
          "  POST /api/users  201 {...the JSON object sent, \"id\":\"1\",\"createdAt\":\"...Z\"}\n"
          "                   400 if the body is not a JSON object, 413 past --max-body\n"
          "  GET  /health     200 {\"status\":\"ok\"}\n"
          "Prints \"listening on http://ADDR:PORT\" once ready; a summary on exit.\n"
          "\n"
          "options:\n"
          "  --port N            TCP port; 0 picks a free one (default 8080)\n"
          "  --bind ADDR         numeric IPv4/IPv6 address (default 127.0.0.1)\n"
          "  --latency D|D..D    delay before each answer to POST /api/users, fixed\n"
          "                      (200ms) or uniform in a range (150ms..250ms); default 0\n"
          "  --error-rate F|P%   fraction of POST /api/users answered 500 (0.05 or 5%)\n"
          "  --max-body BYTES    largest request body accepted (default 1048576)\n"
          "  --max-connections N concurrent connections (default 16384)\n"
          "  --threads N         server threads (default: one per CPU)\n"
          "  --idle-timeout D    close connections idle (or stalled mid-request) this\n"
          "                      long, in whole seconds (default 60s)\n"
          "  --help              this text\n",
          out);
}

/* Raise the soft descriptor limit to the hard one; failure is not fatal
 * (the server then meets EMFILE sooner and refuses connections). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > (1u << 20))
        want = 1u << 20; /* the kernel's usual nr_open */
    if (want > rl.rlim_cur) {
        rl.rlim_cur = want;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int pf_cli_serve(int argc, char **argv)
{
    pf_serve_opts opts = {0};
    const char *bind_addr = "127.0.0.1";
    uint64_t port = 8080;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0)
            pf_cli_usage_error("serve: unexpected argument '%s' (try 'pfor serve --help')", arg);
        /* "--name value" or "--name=value" */
        char name[32];
        const char *val;
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        if (n >= sizeof name)
            pf_cli_usage_error("serve: unknown option '%s' (try 'pfor serve --help')", arg);
        memcpy(name, arg, n);
        name[n] = '\0';
        static const char *const known[] = {"--port",       "--bind",        "--latency",
                                            "--error-rate", "--max-body",    "--max-connections",
                                            "--threads",    "--idle-timeout"};
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            ok = ok || strcmp(name, known[k]) == 0;
        if (!ok)
            pf_cli_usage_error("serve: unknown option '%s' (try 'pfor serve --help')", name);
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                pf_cli_usage_error("serve: option %s needs a value", name);
            val = argv[++i];
        }

        uint64_t u;
        if (strcmp(name, "--port") == 0) {
            if (pf_cli_parse_u64(val, 0, 65535, &port) != 0)
                pf_cli_usage_error("serve: --port wants 0..65535, not '%s'", val);
        } else if (strcmp(name, "--bind") == 0) {
            if (!*val)
                pf_cli_usage_error("serve: --bind wants an address");
            bind_addr = val;
        } else if (strcmp(name, "--latency") == 0) {
            if (pf_cli_parse_latency(val, &opts.latency_min, &opts.latency_max) != 0)
                pf_cli_usage_error("serve: --latency wants a duration like 200ms or a range like "
                                   "150ms..250ms, not '%s'",
                                   val);
        } else if (strcmp(name, "--error-rate") == 0) {
            if (pf_cli_parse_fraction(val, &opts.error_rate) != 0)
                pf_cli_usage_error("serve: --error-rate wants a fraction 0..1 or a percentage "
                                   "like 5%%, not '%s'",
                                   val);
        } else if (strcmp(name, "--max-body") == 0) {
            if (pf_cli_parse_u64(val, 1, (uint64_t)1 << 30, &u) != 0)
                pf_cli_usage_error("serve: --max-body wants 1..1073741824 bytes, not '%s'", val);
            opts.max_body = (size_t)u;
        } else if (strcmp(name, "--max-connections") == 0) {
            if (pf_cli_parse_u64(val, 1, 1u << 20, &u) != 0)
                pf_cli_usage_error("serve: --max-connections wants 1..1048576, not '%s'", val);
            opts.max_connections = (unsigned)u;
        } else if (strcmp(name, "--idle-timeout") == 0) {
            double secs;
            if (pf_cli_parse_duration(val, &secs) != 0 || secs <= 0)
                pf_cli_usage_error("serve: --idle-timeout wants a duration like 30s, not '%s'",
                                   val);
            opts.idle_timeout_s = (unsigned)ceil(secs); /* <= 86400 by the parser */
        } else {                                        /* --threads */
            if (pf_cli_parse_u64(val, 1, 256, &u) != 0)
                pf_cli_usage_error("serve: --threads wants 1..256, not '%s'", val);
            opts.threads = (unsigned)u;
        }
    }
    opts.bind_addr = bind_addr;
    opts.port = (uint16_t)port;

    raise_fd_limit();
    /* Block the stop signals before the server's threads exist, so that
     * they inherit the mask and sigwait() below is the only taker. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    pf_server *srv;
    int rc = pf_server_start(&srv, &opts);
    if (rc == PF_EADDRINUSE)
        pf_cli_usage_error("serve: port %u on %s is already in use", opts.port, bind_addr);
    if (rc == PF_EINVAL)
        pf_cli_usage_error("serve: cannot listen on '%s' (not a numeric address of this machine)",
                           bind_addr);
    if (rc == PF_EPERM)
        pf_cli_usage_error("serve: not allowed to listen on port %u", opts.port);
    if (rc != PF_OK) {
        fprintf(stderr, "pfor: serve: cannot start the server: %s\n", pf_strerror(rc));
        return 1;
    }
    bool v6 = strchr(bind_addr, ':') != NULL;
    printf("listening on http://%s%s%s:%u\n", v6 ? "[" : "", bind_addr, v6 ? "]" : "",
           pf_server_port(srv));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_set, &sig) != 0) {
    }
    pf_server_stats st;
    pf_server_stats_get(srv, &st);
    pf_server_stop(srv);
    fprintf(stderr,
            "pfor serve: stopped by %s after %" PRIu64 " requests: %" PRIu64 " created, %" PRIu64
            " client errors, %" PRIu64 " server errors\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", st.requests, st.created, st.client_errors,
            st.server_errors);
    return 0;
}
