/*
 * Shared dictionaries, inside the library: the handle every backend embeds, the
 * backend operation table, the striped-table engine behind the local and shm
 * backends, and the test-only pause points.
 *
 * The front end (dict.c) checks arguments and limits once for every backend and
 * then calls through pf_dict.ops; a backend may assume valid arguments.
 */
#ifndef PF_DICT_INTERNAL_H
#define PF_DICT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "internal.h"
#include "pfor/dict.h"

/* A write decision, computed under the key's lock from its current value
 * (old NULL: absent).  decide returns PF_DICT_KEEP / SET / DELETE or a negative
 * code; for SET it points new_val / new_len at the bytes to store. */
typedef struct pf__dict_wop pf__dict_wop;
struct pf__dict_wop {
    int (*decide)(pf__dict_wop *op, const void *old, size_t old_len);
    const void *new_val;
    size_t new_len;
};

/* One entry handed out by a backend iterator: pointers into the iterator's own
 * buffer, valid until its next call. */
typedef struct pf__dict_entry {
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
} pf__dict_entry;

typedef struct pf__dict_ops {
    void (*destroy)(pf_dict *d); /* free the handle (refs reached 0) */
    int (*set)(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen);
    /* buf/cap as pf_dict_get; alloc non-NULL: malloc a copy into *alloc instead;
     * both NULL: only test presence. */
    int (*get)(pf_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
               void **alloc);
    int (*del)(pf_dict *d, const void *key, size_t klen);
    int (*len)(pf_dict *d, size_t *out);
    int (*clear)(pf_dict *d);
    int (*incr)(pf_dict *d, const void *key, size_t klen, int64_t delta, int64_t *out);
    int (*cas)(pf_dict *d, const void *key, size_t klen, const void *expected, size_t elen,
               const void *desired, size_t dlen, bool *swapped);
    int (*get_or_insert)(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen,
                         void **cur, size_t *cur_len, bool *inserted);
    int (*update_fn)(pf_dict *d, const void *key, size_t klen, pf_dict_update_cb fn, void *arg);
    int (*set_many)(pf_dict *d, const pf_dict_item *items, size_t n);
    int (*get_many)(pf_dict *d, const pf_dict_item *items, size_t n, pf_dict_got_fn fn, void *user);
    /* Iteration: an opaque cursor; next gives PF_EEOF at the end. */
    int (*iter_open)(pf_dict *d, void **cursor);
    int (*iter_next)(pf_dict *d, void *cursor, pf__dict_entry *e);
    void (*iter_close)(pf_dict *d, void *cursor);
    int (*check)(pf_dict *d, char *msg, size_t msg_cap);
    /* Fill the backend part of a ref (after the common header). */
    int (*ref_fill)(pf_dict *d, unsigned char *bytes, size_t cap);
    /* Whether this handle's dict is gone (shm: its owner destroyed it). */
    bool (*gone)(pf_dict *d);
} pf__dict_ops;

/* The part of a handle every backend starts with. */
struct pf_dict {
    const pf__dict_ops *ops;         /* immutable */
    pf_dict_backend backend;         /* immutable */
    atomic_int refs;                 /* atomic; the handle is destroyed when it reaches 0 */
    bool cached;                     /* immutable after open: owned by the ref cache (dict.c) */
    uint64_t id;                     /* immutable: local dicts' registry id, else 0 */
    char name[PF_DICT_MAX_NAME + 1]; /* immutable: shm name / redis hash; "" for local */
};

/* A redis time-out in seconds: 0 (the default) up to a day, finite.  The
 * front end and refs (whose bytes come from anywhere) check it alike. */
static inline bool pf__dict_timeout_ok(double seconds)
{
    return seconds >= 0 && seconds <= 86400; /* false for NaN and inf too */
}

/* Where a redis dict is: a host name or unix socket path ('/...', port then
 * ignored) of 1 to PF_DICT_MAX_HOST bytes, a TCP port 1 to 65535, a hash name
 * of 1 to PF_DICT_MAX_NAME bytes.  The front end and refs check it alike. */
static inline bool pf__dict_redis_where_ok(const char *host, int port, const char *name)
{
    size_t hl = host ? strlen(host) : 0, nl = name ? strlen(name) : 0;
    return hl >= 1 && hl <= PF_DICT_MAX_HOST && nl >= 1 && nl <= PF_DICT_MAX_NAME &&
           (host[0] == '/' || (port >= 1 && port <= 65535));
}

/* Parse a whole decimal int64 ("-12"); false if it is not one. */
bool pf__dict_parse_i64(const void *s, size_t n, int64_t *out);
/* Format v as decimal into buf (>= 21 bytes); returns the length (no NUL). */
size_t pf__dict_format_i64(int64_t v, char *buf);
/* The pf_dict_incr decision: old + delta into buf (>= 21 bytes). */
int pf__dict_incr_value(const void *old, size_t old_len, int64_t delta, char *buf, size_t *len,
                        int64_t *out);

/* Local registry (dict.c): ids for refs to local dicts. */
int pf__dict_local_register(pf_dict *d);
/* The front end's lock (held across fork() by an atfork handler); the redis
 * backend keeps its list of handles under it. */
void pf__dict_lock(void);
void pf__dict_unlock(void);

/* Backends. */
int pf__dict_local_open(pf_dict **out, const pf_dict_opts *opts);
int pf__dict_shm_create(pf_dict **out, const char *name, const pf_dict_opts *opts);
int pf__dict_shm_open(pf_dict **out, const char *name, const unsigned char nonce[8]);
int pf__dict_shm_remove(const char *name);
/* Reopen from the payload of a shm ref (nonce, then name). */
int pf__dict_shm_from_ref(pf_dict **out, const unsigned char *bytes);
/* How long pf_dict_open_shm waits for a creator to finish (tests shorten it). */
extern uint64_t pf__dict_open_wait_ns;
/* The engine behind a local or shm dict (NULL for redis); for tests. */
struct pf__eng *pf__dict_engine(pf_dict *d);
int pf__dict_redis_open(pf_dict **out, const char *host, int port, const char *name,
                        const pf_dict_opts *opts);
/* Recreate a redis handle from the bytes its ref_fill wrote. */
int pf__dict_redis_from_ref(pf_dict **out, const unsigned char *bytes, size_t cap);
/* fork() child side: redis handles reconnect lazily (their socket is the parent's). */
void pf__dict_redis_atfork_child(void);

/*
 * Test-only pause points.  A test sets pf__dict_pause_at in a forked child; when
 * the child reaches that point it stops itself with SIGSTOP, so the parent can
 * SIGKILL it exactly there (after letting pf__dict_pause_skip passes through
 * it go on, when that is set).  One relaxed load per point when unused.
 */
enum pf__dict_point {
    PF__DP_NONE = 0,
    PF__DP_LOCKED,        /* stripe lock held, nothing changed yet */
    PF__DP_FILLED,        /* new block reserved and written, not yet published */
    PF__DP_TX_HALF,       /* stripe commit record active, half of it applied */
    PF__DP_COMMITTED,     /* change published, stripe still locked (seqlock odd) */
    PF__DP_GROW,          /* global lock held, backing grown, size not yet published */
    PF__DP_GTX_HALF,      /* global commit record active, half of it applied */
    PF__DP_REHASH_FILLED, /* new table filled, not yet published */
    PF__DP_REPAIR         /* in the middle of repairing a dead holder's stripe */
};
extern atomic_int pf__dict_pause_at;
extern atomic_int pf__dict_pause_skip;
void pf__dict_pause(int point);
#define PF__DICT_POINT(p)                                                                      \
    do {                                                                                       \
        int pf_p_ = (p);                                                                       \
        if (__builtin_expect(                                                                  \
                atomic_load_explicit(&pf__dict_pause_at, memory_order_relaxed) == pf_p_, 0) && \
            pf_p_ != PF__DP_NONE)                                                              \
            pf__dict_pause(pf_p_);                                                             \
    } while (0)

#endif /* PF_DICT_INTERNAL_H */
