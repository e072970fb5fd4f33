/*
 * The `pfor` command: subcommands and the helpers they share.
 *
 * The CLI uses the public API only (include/pfor/), like any other program.
 * Bad input: print one line "pfor: <what is wrong>" on stderr and exit 2
 * (pf_cli_usage_error does both).
 */
#ifndef PF_CLI_H
#define PF_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF_CLI_EXIT_USAGE 2

/* Subcommands: argv[0] is the subcommand's name.  Return the exit status. */
int pf_cli_serve(int argc, char **argv);
int pf_cli_compare(int argc, char **argv);

/* Print "pfor: <message>" and exit(2). */
__attribute__((noreturn, format(printf, 1, 2))) void pf_cli_usage_error(const char *fmt, ...);

/* "200ms", "1.5s", "250us", "2" (seconds), "0" -> seconds: digits, an
 * optional fraction (".5"), an optional unit (us, ms, s, m, min); nothing
 * else (no spaces, signs, hex or exponents); at most a day.  0 or -1. */
int pf_cli_parse_duration(const char *s, double *seconds);
/* A latency: "200ms" (lo = hi) or a range "150ms..250ms" (lo <= hi). */
int pf_cli_parse_latency(const char *s, double *lo, double *hi);
/* A non-negative integer within [min, max]. */
int pf_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "5,10,50": up to `cap` integers in [min, max]; *n gets the count. */
int pf_cli_parse_u64_list(const char *s, uint64_t min, uint64_t max, uint64_t *out, size_t cap,
                          size_t *n);
/* A fraction "0.05" or percentage "5%" in [0, 1] (digits, an optional
 * fraction, an optional %; nothing else). */
int pf_cli_parse_fraction(const char *s, double *out);

#endif /* PF_CLI_H */
