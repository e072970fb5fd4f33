/*
 * Shared dictionaries: one API, three backends.
 *
 *     pf_dict *d;
 *     pf_dict_create_shm(&d, "counters", NULL);      // or pf_dict_open_local(&d, NULL)
 *     pf_dict_incr(d, PF_DICT_STR("hits"), 1, NULL);  //  or pf_dict_open_redis(...)
 *     pf_dict_close(d);                               // the owner's close removes it
 *
 * Backends:
 *   local  - in this process, safe from any number of threads.
 *   shm    - a named POSIX shared-memory segment ("/pfor-dict-<name>"), usable from
 *            threads, forked processes and unrelated processes of the same user.  It
 *            grows as entries come in; the address range is reserved once, so the
 *            mapping never moves, and growth is reserved with posix_fallocate, so a
 *            full /dev/shm is PF_ENOSPC and never SIGBUS.  A process killed at any
 *            instant (even holding a lock) leaves no deadlock and no damage: the next
 *            user repairs the half-done change.  docs/internals/dict-shm.md.
 *   redis  - one Redis hash on a real server (hiredis), for several machines.
 *
 * Keys and values are byte strings: keys up to PF_DICT_MAX_KEY bytes, values up to
 * PF_DICT_MAX_VALUE bytes, on every backend (empty keys and values are allowed).
 * Larger ones give PF_ETOOBIG and nothing is written.  The int64 helpers store a
 * number as its decimal text ("-42"), as Redis does, so the bytes are the same on
 * every backend.
 *
 * Every read-modify-write (pf_dict_incr, pf_dict_cas, pf_dict_get_or_insert,
 * pf_dict_update_fn) is atomic: concurrent increments from any number of threads
 * and processes never lose an update.
 *
 * Handles: all functions are thread-safe on one handle.  A pf_dict * is valid in
 * the process that opened it and in children forked after (a shm handle keeps
 * working there, a redis handle opens its own connection there, a local dict
 * is the child's private copy).  To hand a dict to tasks of any executor kind,
 * created before or after the executor, copy a pf_dict_ref into the task's
 * argument bytes and call pf_dict_from_ref() in the task: it is cheap (one open
 * per process, then cached).
 */
#ifndef PFOR_DICT_H
#define PFOR_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pfor/error.h"
#include "pfor/executor.h"
#include "pfor/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size limits, the same on every backend. */
#define PF_DICT_MAX_KEY           4096u    /* bytes in a key */
#define PF_DICT_MAX_VALUE         1048576u /* bytes in a value (1 MiB) */
#define PF_DICT_MAX_NAME          200u     /* bytes in a shm or redis dict name */
#define PF_DICT_MAX_HOST          255u     /* bytes in a redis host name or socket path */
/* shm and local dicts: default and largest opts.max_bytes. */
#define PF_DICT_DEFAULT_MAX_BYTES (16ull << 30)
#define PF_DICT_LIMIT_MAX_BYTES   (64ull << 30)

/* A C string as the (pointer, length) pair of a key or value argument:
 * pf_dict_incr(d, PF_DICT_STR("hits"), 1, NULL). */
#define PF_DICT_STR(s) (s), strlen(s)

typedef struct pf_dict pf_dict;

typedef enum pf_dict_backend {
    PF_DICT_LOCAL = 1,
    PF_DICT_SHM = 2,
    PF_DICT_REDIS = 3
} pf_dict_backend;

/* Options; zero means the default for every field. */
typedef struct pf_dict_opts {
    /* local, shm: the most bytes the dict may ever occupy (header, locks, table and
     * entries).  Only address space is reserved up front; memory is taken as entries
     * come in, and growth beyond this gives PF_ENOSPC.  Default
     * PF_DICT_DEFAULT_MAX_BYTES, at most PF_DICT_LIMIT_MAX_BYTES, at least what the
     * fixed part needs plus 64 KiB. */
    uint64_t max_bytes;
    /* local, shm: lock stripes, a power of two from 1 to 4096 (default 256).  Each
     * stripe has its own lock, table and allocator; there is no global lock on the
     * path of any single-key operation. */
    unsigned stripes;
    /* redis: seconds allowed for connecting and for each command (0: the
     * default, 5; at most 86400). */
    double timeout;
    /* redis: password for AUTH, or NULL (at most 128 bytes). */
    const char *password;
} pf_dict_opts;

/*
 * Opening and closing.
 */

/* A new, empty dict private to this process.  PF_EINVAL for bad opts, PF_ENOMEM. */
PF_EXTERN int pf_dict_open_local(pf_dict **out, const pf_dict_opts *opts);

/* Create a new shared-memory dict named `name` (1 to PF_DICT_MAX_NAME characters
 * from [A-Za-z0-9._-]; the segment is "/pfor-dict-<name>").  The segment is
 * created exclusively with mode 0600: PF_EEXIST if the name is taken.  name NULL
 * picks a fresh unique name (see pf_dict_name).  This handle is the owner: its
 * pf_dict_close removes the name.  PF_ENOSPC if /dev/shm cannot hold the initial
 * size, PF_EINVAL for a bad name or opts. */
PF_EXTERN int pf_dict_create_shm(pf_dict **out, const char *name, const pf_dict_opts *opts);

/* Open an existing shared-memory dict by name, from any process of the same user.
 * PF_ENOTFOUND if there is none (or its owner has closed it), PF_EPERM if the
 * name is not a segment this user created (another user's, a mode other than
 * 0600, a second name for it, a link, FIFO or folder), PF_ECORRUPT if it is not
 * a pfor dict of this version, PF_EBUSY if its creator has not finished (or died)
 * creating it. */
PF_EXTERN int pf_dict_open_shm(pf_dict **out, const char *name);

/* Remove the name of a shared-memory dict whose owner died without closing it.
 * Processes that have it open keep using it.  PF_ENOTFOUND, PF_EPERM. */
PF_EXTERN int pf_dict_remove_shm(const char *name);

/* Open the dict stored in the Redis hash `name` (any bytes but NUL, at most
 * PF_DICT_MAX_NAME) on the server at host:port, or at the unix socket `host` when
 * it starts with '/' (port ignored; a path of at most 106 bytes, what a socket
 * address holds).  Connects and PINGs (and AUTHs) before returning: PF_ECONNECT
 * for an unknown or unreachable server (a longer socket path too) or a failed AUTH,
 * after at most opts.timeout seconds.  The hash is not created or removed by
 * opening or closing.  When a command fails on a broken connection it returns
 * PF_ECONNECT (the command may or may not have been applied), and the next call
 * reconnects.  A handle used in a forked child opens its own connection. */
PF_EXTERN int pf_dict_open_redis(pf_dict **out, const char *host, int port, const char *name,
                                 const pf_dict_opts *opts);

/* Release a handle.  The owner's close of a shm dict unlinks its name (other
 * processes that have it open keep it until they close); the last close of a
 * local dict frees it; a redis hash stays on the server.  NULL is a no-op. */
PF_EXTERN void pf_dict_close(pf_dict *d);

/* The handle's backend; 0 (none) for NULL. */
PF_EXTERN pf_dict_backend pf_dict_backend_of(const pf_dict *d);
/* The shm name (without "/pfor-dict-") or the redis hash name; NULL for local. */
PF_EXTERN const char *pf_dict_name(const pf_dict *d);

/*
 * Single-key operations.  Every function returns 0 or a negative PF_E* code;
 * PF_EINVAL for NULL pointers with a non-zero length, PF_ETOOBIG for a key or
 * value over the limits (nothing is written), PF_ENOSPC when a shm or local dict
 * cannot grow (nothing is written, the dict stays whole), PF_ECONNECT / PF_EPROTO
 * for redis failures.
 */

/* Insert or replace. */
PF_EXTERN int pf_dict_set(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen);
/* Copy the value into buf.  0 with *vlen its length; PF_ENOTFOUND; PF_ETOOBIG
 * when cap is smaller than the value, with *vlen the length needed.  buf holds the
 * value only on 0.  vlen may be NULL. */
PF_EXTERN int pf_dict_get(pf_dict *d, const void *key, size_t klen, void *buf, size_t cap,
                          size_t *vlen);
/* Like pf_dict_get into a malloc()ed copy that the caller frees (never NULL on 0,
 * even for an empty value).  vlen may be NULL. */
PF_EXTERN int pf_dict_get_alloc(pf_dict *d, const void *key, size_t klen, void **val, size_t *vlen);
/* Remove.  PF_ENOTFOUND if absent. */
PF_EXTERN int pf_dict_delete(pf_dict *d, const void *key, size_t klen);
/* 0 if the key is present, PF_ENOTFOUND if not. */
PF_EXTERN int pf_dict_contains(pf_dict *d, const void *key, size_t klen);
/* Number of entries.  Exact when no one writes; while others write, a value the
 * dict had at some instant during the call is not guaranteed (stripes are summed
 * one by one). */
PF_EXTERN int pf_dict_len(pf_dict *d, size_t *out);
/* Remove every entry.  Not atomic as a whole: entries set during the call may
 * survive it. */
PF_EXTERN int pf_dict_clear(pf_dict *d);

/*
 * Atomic read-modify-write.
 */

/* Add delta to the int64 stored as decimal text at key (an absent key counts as
 * 0) and store the result, atomically.  *out (may be NULL) gets the new value.
 * PF_EINVAL if the value is not a decimal int64 or the sum overflows. */
PF_EXTERN int pf_dict_incr(pf_dict *d, const void *key, size_t klen, int64_t delta, int64_t *out);

/* Compare-and-swap: if the current value equals `expected` (expected NULL: if the
 * key is absent), replace it by `desired` (desired NULL: delete the key), all
 * atomically.  0 with *swapped telling whether it happened. */
PF_EXTERN int pf_dict_cas(pf_dict *d, const void *key, size_t klen, const void *expected,
                          size_t elen, const void *desired, size_t dlen, bool *swapped);

/* setdefault: if the key is absent insert val; either way give the value now
 * stored, atomically.  *cur (may be NULL) gets a malloc()ed copy of it that the
 * caller frees, *cur_len its length, *inserted whether val was inserted. */
PF_EXTERN int pf_dict_get_or_insert(pf_dict *d, const void *key, size_t klen, const void *val,
                                    size_t vlen, void **cur, size_t *cur_len, bool *inserted);

/* What a pf_dict_update_cb asks for. */
enum {
    PF_DICT_KEEP = 0,  /* leave the entry as it was */
    PF_DICT_SET = 1,   /* store *new_val / *new_len */
    PF_DICT_DELETE = 2 /* remove the key */
};
/* Called with the key's current value (old NULL: absent; the bytes are valid only
 * during the call).  Return PF_DICT_KEEP, PF_DICT_DELETE, or PF_DICT_SET after
 * pointing *new_val at *new_len bytes that stay valid until pf_dict_update_fn
 * returns; or a negative PF_E* code to change nothing and make pf_dict_update_fn
 * return that code. */
typedef int (*pf_dict_update_cb)(void *arg, const void *old, size_t old_len, const void **new_val,
                                 size_t *new_len);
/* Run fn on the key's value and apply its answer atomically.  On local and shm
 * dicts fn runs once, under the key's stripe lock: it must be short and must not
 * call any pf_dict function nor fork (either may deadlock).  On redis it runs in this process
 * inside WATCH/MULTI/EXEC and may run again when another client changed the hash
 * meanwhile (PF_EBUSY after 1000 tries): it must have no side effects, and must
 * not call pf_dict functions on the same handle (its connection is held). */
PF_EXTERN int pf_dict_update_fn(pf_dict *d, const void *key, size_t klen, pf_dict_update_cb fn,
                                void *arg);

/*
 * Batches.  Each pair is applied on its own (a batch is not atomic as a whole);
 * on redis a batch is pipelined, on shm and local dicts it is sorted by lock
 * stripe and its memory accesses are overlapped: both are much faster than one
 * call per pair.
 */

typedef struct pf_dict_item {
    const void *key;
    size_t klen;
    const void *val; /* pf_dict_set_many only */
    size_t vlen;
} pf_dict_item;

/* Set every pair.  Pairs with the same key are applied in their order (the
 * last one wins); pairs of different keys may be applied, and seen by other
 * readers, in another order.  Limits are checked for the whole batch first: on
 * PF_ETOOBIG or PF_EINVAL nothing is written; on another error (PF_ENOSPC...)
 * the batch stops there, with some of its pairs set. */
PF_EXTERN int pf_dict_set_many(pf_dict *d, const pf_dict_item *items, size_t n);

/* For every key in items (val ignored), in order: fn(user, index, status, val,
 * vlen), status 0 or PF_ENOTFOUND; val is valid during the call only.  A non-zero
 * return from fn stops the batch and is returned.  No lock is held during fn. */
typedef int (*pf_dict_got_fn)(void *user, size_t index, int status, const void *val, size_t vlen);
PF_EXTERN int pf_dict_get_many(pf_dict *d, const pf_dict_item *items, size_t n, pf_dict_got_fn fn,
                               void *user);

/* Merge: set every entry of src into d (Python's d.update(src)); src may be of
 * another backend.  Not atomic; src is read as by pf_dict_foreach. */
PF_EXTERN int pf_dict_update(pf_dict *d, pf_dict *src);

/*
 * Iteration.  Every entry is seen whole (never a torn key or value).  local and
 * shm: an entry present during the whole iteration is seen exactly once, one
 * changed or added meanwhile may or may not be; redis (HSCAN): at least once.
 * No lock is held while the caller sees an entry, so it may use the dict.
 */

/* fn(user, key, klen, val, vlen) for every entry; a non-zero return stops the
 * iteration and is returned. */
typedef int (*pf_dict_visit_fn)(void *user, const void *key, size_t klen, const void *val,
                                size_t vlen);
PF_EXTERN int pf_dict_foreach(pf_dict *d, pf_dict_visit_fn fn, void *user);

typedef struct pf_dict_iter pf_dict_iter;
/* Start an iteration (the same guarantees as pf_dict_foreach); PF_EINVAL for
 * NULL arguments. */
PF_EXTERN int pf_dict_iter_open(pf_dict *d, pf_dict_iter **out);
/* The next entry: 0 with the pointers valid until the next call, or PF_EEOF. */
PF_EXTERN int pf_dict_iter_next(pf_dict_iter *it, const void **key, size_t *klen, const void **val,
                                size_t *vlen);
/* End an iteration; NULL is a no-op. */
PF_EXTERN void pf_dict_iter_close(pf_dict_iter *it);

/*
 * Consistency check.  local and shm: takes every lock in order (repairing what a
 * killed process left half done) and verifies the whole structure: every offset in
 * bounds, every entry hashed where it belongs and found by lookup, counts, the
 * free lists, and that every byte of the arena is owned exactly once (no leaked
 * or doubly used block).  redis: the server answers and the key is a hash.
 * 0 or PF_ECORRUPT with a one-line reason in msg (msg may be NULL).
 */
PF_EXTERN int pf_dict_check(pf_dict *d, char *msg, size_t msg_cap);

/*
 * Helpers for the common cases.
 */

/* The value as an int64 stored as decimal text (see pf_dict_incr). */
PF_EXTERN int pf_dict_set_i64(pf_dict *d, const void *key, size_t klen, int64_t v);
/* PF_EINVAL if the value is not a decimal int64. */
PF_EXTERN int pf_dict_get_i64(pf_dict *d, const void *key, size_t klen, int64_t *v);
/* C-string key and value (the terminating NUL is not stored). */
PF_EXTERN int pf_dict_set_str(pf_dict *d, const char *key, const char *val);
/* A malloc()ed NUL-terminated copy of the value at the C-string key. */
PF_EXTERN int pf_dict_get_str(pf_dict *d, const char *key, char **val);

/*
 * References: a dict handed to tasks of any executor kind.
 *
 * A pf_dict_ref is plain bytes, to copy into a task's argument.  In the task,
 * pf_dict_from_ref gives a handle; match it with pf_dict_close.  Handles are
 * cached per process, so only the first call in a process opens the dict (a
 * process-pool worker forked before the dict existed opens it by name).
 * A local dict's ref works only in the process that made it (PF_ENOTSUP
 * elsewhere); PF_ENOTFOUND once the dict was closed by its owner (a shm ref
 * also carries a nonce, so it never opens a newer dict of the same name).
 * A redis ref carries the host, port, name, timeout and password in clear.
 */
#define PF_DICT_REF_SIZE 1024
typedef struct pf_dict_ref {
    unsigned char bytes[PF_DICT_REF_SIZE];
} pf_dict_ref;

PF_EXTERN int pf_dict_ref_get(pf_dict *d, pf_dict_ref *out);
PF_EXTERN int pf_dict_from_ref(pf_dict **out, const pf_dict_ref *ref);

/*
 * Combining at the end (the article's section 5): tasks return key-value
 * pairs instead of writing a shared dict, and the caller merges them into
 * one dict.  No shared state while the tasks run, any executor kind.
 *
 *     static int post_req(pf_task *t, const void *arg, size_t len)
 *     {
 *         ... status = ...;
 *         return pf_task_return_pair(t, arg, len, &status, sizeof status);
 *     }
 *     pf_dict *d;  pf_dict_open_local(&d, NULL);
 *     pf_dict_combine(d, ex, post_req, numbers, n, sizeof *numbers, PF_COMBINE_LAST, NULL);
 *
 * The rule for a key that more than one task returns, or that `into`
 * already holds, is chosen by the caller; pairs are applied in input order
 * (and, within a task, in the order the task added them), so the outcome
 * does not depend on which worker finished first.
 */
typedef enum pf_combine_rule {
    PF_COMBINE_LAST = 0,  /* the later value replaces the earlier: Python's dict.update */
    PF_COMBINE_FIRST = 1, /* the first value stays */
    PF_COMBINE_ERROR = 2, /* a duplicate key is an error: PF_EEXIST, merging stops there */
    PF_COMBINE_SUM = 3    /* values are int64 as decimal text (pf_dict_set_i64) and add up */
} pf_combine_rule;

/* Make the running task's result one key-value pair.  PF_ETOOBIG past the
 * dict limits. */
PF_EXTERN int pf_task_return_pair(pf_task *t, const void *key, size_t klen, const void *val,
                                  size_t vlen);
/* Make the running task's result every entry of d (typically a local dict the
 * task filled: a worker-local dict returned at the end).  d is read as by
 * pf_dict_foreach: a redis hash that other clients change meanwhile may give
 * an entry twice, which PF_COMBINE_SUM would count twice. */
PF_EXTERN int pf_task_return_dict(pf_task *t, pf_dict *d);

/* Merge the pairs a finished task returned (waits for f) into `into` with
 * `rule`.  The future's own error if the task failed; PF_EPROTO if its result
 * is not pairs, PF_ETOOBIG if a key or value is over the dict limits,
 * PF_EINVAL under PF_COMBINE_SUM if a value is not an integer: such a result
 * is checked whole first and changes nothing. */
PF_EXTERN int pf_dict_merge_result(pf_dict *into, pf_future *f, pf_combine_rule rule);

/* Run fn over n items (pf_map_array, in input order) and merge every task's
 * pairs into `into` with `rule`.  Returns 0, or the first error: a failed task
 * (its pairs are missing, the others are merged), a duplicate under
 * PF_COMBINE_ERROR, or a dict error. */
PF_EXTERN int pf_dict_combine(pf_dict *into, pf_executor *ex, pf_task_fn fn, const void *items,
                              size_t n, size_t item_size, pf_combine_rule rule,
                              const pf_map_opts *opts);

#ifdef __cplusplus
}
#endif
#endif /* PFOR_DICT_H */
