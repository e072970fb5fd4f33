/*
 * What the per-worker client (http.c) and the event-driven runner (multi.c)
 * share: one transfer's buffers, the curl options every request gets, and
 * how a finished transfer becomes a pf_http_record.
 */
#ifndef PF_HTTP_INTERNAL_H
#define PF_HTTP_INTERNAL_H

#include <curl/curl.h>

#include "internal.h"
#include "pfor/http.h"

/* Bytes of an answer's body kept for error messages. */
#define PF__HTTP_SNIPPET 120

/* One curl easy handle and what it points at.  curl keeps pointers to
 * body, errbuf and the struct itself (write callback), so it never moves
 * while the handle lives. */
struct pf__http_xfer {
    CURL *easy;
    char *body; /* the formatted body of the current request */
    size_t body_len;
    size_t body_cap;
    char errbuf[CURL_ERROR_SIZE];
    char snippet[PF__HTTP_SNIPPET + 1]; /* start of the answer's body */
    size_t snippet_len;
    size_t index;      /* pf_http_run_multi: the request it carries */
    uint64_t start_ns; /* when the request was handed to curl (prepare) */
};

/* curl_global_init once per process (pthread_once).  0 or PF_EHTTP. */
int pf__http_global_init(void);

/* What the two loops driving curl's socket interface (the per-worker
 * client in http.c, the event loops in multi.c) share. */

/* curl's timer callback, for a loop that keeps the deadline in *timer_ns:
 * timeout_ms from now, or UINT64_MAX for none (timeout_ms < 0). */
void pf__http_timer_set(uint64_t *timer_ns, long timeout_ms);
/* The wait until that deadline for poll/epoll_wait, in ms, rounded up: 0
 * when due, at most 1000 (curl always has a timer while transfers run, the
 * cap is a safety net, and a wake-up without events runs curl's timers). */
int pf__http_wait_ms(uint64_t timer_ns);
/* curl's CURL_POLL_IN/OUT as poll events (POLLIN/POLLOUT, which epoll's
 * EPOLLIN/EPOLLOUT equal). */
unsigned pf__http_poll_events(int what);
/* Ready events from poll or epoll (same bit values) as the CURL_CSELECT_*
 * flags of curl_multi_socket_action. */
int pf__http_cselect(unsigned revents);
/* A curl easy or multi code as PF_OK, PF_ENOMEM or PF_EHTTP. */
int pf__http_easy_rc(CURLcode cc);
int pf__http_multi_rc(CURLMcode mc);

/* Check a config: PF_EINVAL unless the URL and body are terminated, the URL
 * is http(s):// and the timeouts are finite and in range. */
int pf__http_config_check(const pf_http_config *cfg);

/* Headers shared by every transfer of a client or a run (caller frees with
 * curl_slist_free_all); NULL if out of memory. */
struct curl_slist *pf__http_headers(void);

/* The NOPROXY list: loopback plus the environment's no_proxy, or "" when
 * the environment names no proxy at all or no_proxy is "*" (then proxies
 * are switched off, which spares curl a look at the environment per
 * request).  malloc()ed; NULL if out of memory. */
char *pf__http_noproxy(void);

/* Make x's easy handle with every option of cfg set (URL, headers, time
 * limits, keep-alive, TCP_NODELAY, write callback) and its body buffer.
 * headers and noproxy must outlive the handle.  0, PF_ENOMEM or PF_EHTTP. */
int pf__http_xfer_init(struct pf__http_xfer *x, const pf_http_config *cfg,
                       struct curl_slist *headers, const char *noproxy);
void pf__http_xfer_free(struct pf__http_xfer *x);

/* Format request n's body from cfg's template into x and point the easy
 * handle at it; clears the error buffer and the snippet. */
void pf__http_xfer_prepare(struct pf__http_xfer *x, const pf_http_config *cfg, uint64_t n);

/* Fill *rec from a finished transfer (cc: its result code); worker = -1.
 * The latency runs from prepare to this call: what the caller waited,
 * queueing in an event loop included. */
void pf__http_record_from(struct pf__http_xfer *x, CURLcode cc, pf_http_record *rec);

/* The one-line message for a failed record: describes rec, adding curl's
 * error buffer and the answer's first bytes when there are some. */
void pf__http_message(const struct pf__http_xfer *x, const pf_http_record *rec,
                      const pf_http_config *cfg, char *buf, size_t size);

#endif /* PF_HTTP_INTERNAL_H */
