/*
 * `pfor`: the command-line front end.
 *
 *   pfor compare [options]   the article's experiment (the main job)
 *   pfor serve [options]     the built-in mock API
 *   pfor version | help
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compare.h"
#ifdef PF_HAVE_MPI
#include "pfor/mpi.h"
#endif
#include "pfor/pfor.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"compare", pf_cli_compare, "time a loop of requests (or a CPU kernel) on every executor"},
    {"serve", pf_cli_serve, "run the mock API (POST /api/users -> 201)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: pfor <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-9s %s\n", "version", "print the version");
    fprintf(out, "\n`pfor <command> --help` describes a command's options.\n");
}

int cmp_mpi_workers(void)
{
#ifdef PF_HAVE_MPI
    return pf_mpi_live_workers() * pf_mpi_threads_per_rank();
#else
    return 0;
#endif
}

int main(int argc, char **argv)
{
    /* Initialise libcurl (and its TLS library) once, here, so that the
     * fork server and every worker process it forks inherit it instead of
     * each paying several milliseconds for it.  It starts no thread. */
    (void)pf_http_init(); /* a failure is reported by the first request */
    /* Start the process pools' fork server while this program is still
     * single-threaded: later, libcurl and the thread pools run threads. */
    int rc = pf_init();
    if (rc != 0) {
        fprintf(stderr, "pfor: cannot start the process-pool fork server: %s\n", pf_strerror(rc));
        return 1;
    }
#ifdef PF_HAVE_MPI
    /* Under mpirun: ranks other than 0 serve PF_MPI tasks inside
     * pf_mpi_init and exit there; rank 0 goes on (after the fork server:
     * MPI starts threads of its own). */
    if (pf_mpi_launched()) {
        rc = pf_mpi_init(&argc, &argv, NULL);
        if (rc != 0) {
            fprintf(stderr, "pfor: cannot initialise MPI: %s\n", pf_strerror(rc));
            return 1;
        }
        atexit(pf_mpi_finalize);
    }
#endif
    if (argc < 2) /* bad input: one line, as everywhere; `pfor help` has the usage */
        pf_cli_usage_error("a command is needed: compare, serve or version (try 'pfor help')");
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("pfor %s\n", PF_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    pf_cli_usage_error("unknown command '%s' (try 'pfor help')", cmd);
}
