/*
 * Helpers for the dict tests: a private redis-server, and opening a dict of any
 * backend by number so that one test body runs on all three.
 */
#ifndef PF_TEST_DICT_UTIL_H
#define PF_TEST_DICT_UTIL_H

#include <sys/types.h>

#include "pfor/dict.h"

/* A redis-server of our own on 127.0.0.1 (and a unix socket), no persistence. */
typedef struct pf_test_redis {
    pid_t pid;
    int port;
    char dir[64];
    char sock[96];
} pf_test_redis;

/* Start one on a free port and wait for PING.  SKIPs the test if redis-server
 * is not installed; FAILs it if the server does not come up. */
void pf_test_redis_start(pf_test_redis *r);
/* The same on a given port (to bring a server back where it was). */
void pf_test_redis_start_on(pf_test_redis *r, int port);
/* SIGTERM, wait (SIGKILL after a while), remove its files.  Idempotent. */
void pf_test_redis_stop(pf_test_redis *r);

/* Open a fresh, empty dict of backend b: local, a new shm dict with a unique
 * name, or a uniquely named hash on r (started on first use).  opts may be NULL. */
pf_dict *pf_test_dict_open(pf_dict_backend b, pf_test_redis *r, const pf_dict_opts *opts);

/* A port nothing listens on (bound then released). */
int pf_test_free_port(void);

#endif
