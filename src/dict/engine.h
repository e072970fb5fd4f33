/*
 * The striped hash-table engine behind the local and shm dicts.
 *
 * It lives in one contiguous region that starts at `base`: a header, an array of
 * stripes (each with its lock, seqlock counter, table, allocator and commit
 * record) and an arena that grows at the end.  Everything in the region is
 * addressed by offsets from base, so each process may map it anywhere; the
 * region is reserved once at its maximum size and never moves.  The layout and
 * the crash-repair protocol are in docs/internals/dict-shm.md.
 *
 * The shm backend maps a POSIX shm object (grown with posix_fallocate) and uses
 * robust process-shared locks; the local backend maps private anonymous memory
 * (grown with mprotect) and uses plain process-private locks.
 */
#ifndef PF_DICT_ENGINE_H
#define PF_DICT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dict/dict_internal.h"

struct pf__eng_hdr;
struct pf__eng_stripe;

/* A process's view of one region.  Every field but `mapped` is immutable after
 * attach. */
typedef struct pf__eng {
    char *base;         /* start of the mapping (the header) */
    uint64_t mapped;    /* atomic: bytes from base this process made accessible */
    uint64_t max_bytes; /* bytes reserved at base; the region never grows past it */
    int fd;             /* shm: the object, grown with posix_fallocate; local: -1 (mprotect) */
    bool pshared;       /* robust process-shared locks (shm) or private ones (local) */
    struct pf__eng_hdr *h;
    struct pf__eng_stripe *st;
    unsigned nstripes;
    unsigned sbits; /* log2(nstripes) */
    uint64_t seed;  /* hash seed, from the header */
    uint64_t arena_off;
    int frozen; /* atomic: a local region's operations wait while a fork is on */
    /* atomic: an unlock of one of the region's locks failed (its bytes were
     * overwritten while this process held it).  glibc then keeps that robust
     * mutex on the holding thread's robust list, which the thread's later
     * robust locks write through: the mapping must outlive the handle. */
    int lock_broken;
    unsigned fork_held; /* local: the locks pf__eng_fork_freeze took (1 grow_mu, 2 g_mu) */
} pf__eng;

/* Bytes the header and the stripes of a region with `stripes` stripes take
 * before the arena (page aligned). */
uint64_t pf__eng_fixed_size(unsigned stripes);
/* The first bytes of a region that pf__eng_peek needs. */
size_t pf__eng_header_size(void);

/* Format a new region at base: max_bytes reserved PROT_NONE, of which `usable`
 * bytes (>= fixed size) are backed; this makes them accessible.  Writes the magic
 * last (release), so a reader that sees it sees a whole header.  PF_ENOMEM. */
int pf__eng_format(pf__eng *e, char *base, uint64_t max_bytes, uint64_t usable, unsigned stripes,
                   int fd, bool pshared, uint64_t nonce, uint64_t seed);

/* Validate the header bytes of an existing region.  0 with *max_bytes, *nonce
 * and *backed (its published size now; the caller checks its file is at least
 * that big); PF_EBUSY while the magic is not written yet; PF_ECORRUPT if it is
 * not a region of this version. */
int pf__eng_peek(const void *hdr, uint64_t *max_bytes, uint64_t *nonce, uint64_t *backed);

/* Attach a zeroed view to a region validated by pf__eng_peek and reserved
 * (PROT_NONE) at base for `reserved` bytes (its max_bytes then), of which
 * `backed` bytes are known to exist.  The header is checked again and read
 * once: PF_ECORRUPT if it changed meanwhile; PF_ENOMEM. */
int pf__eng_attach(pf__eng *e, char *base, int fd, bool pshared, uint64_t reserved,
                   uint64_t backed);

/* fork() child side (dict.c's atfork handler): threads pick their allocation
 * lane again, so sibling worker processes do not share their parent's. */
void pf__eng_atfork_child(void);

/* Local regions only, around fork() (dict.c's atfork handlers): wait until no
 * operation is in progress and hold new ones back, so that a child's private
 * copy holds no half-done operation; then let them go, in parent and child. */
void pf__eng_fork_freeze(pf__eng *e);
void pf__eng_fork_thaw(pf__eng *e);       /* in the parent */
void pf__eng_fork_thaw_child(pf__eng *e); /* in the child: its locks made anew */

/* Local regions: destroy the process-private locks before unmapping. */
void pf__eng_fini_locks(pf__eng *e);

uint64_t pf__eng_nonce(const pf__eng *e);
void pf__eng_set_destroyed(pf__eng *e);
bool pf__eng_destroyed(const pf__eng *e);
/* Damage was found (the header's corrupt flag): every operation fails with
 * PF_ECORRUPT from then on. */
bool pf__eng_corrupt(const pf__eng *e);
/* An unlock failed in this process (see lock_broken): unmapping the region
 * would leave a thread's robust list pointing into unmapped memory. */
bool pf__eng_keep_mapped(const pf__eng *e);

/* Operations (arguments already validated by the front end). */
int pf__eng_get(pf__eng *e, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
                void **alloc);
int pf__eng_write(pf__eng *e, const void *key, size_t klen, pf__dict_wop *op);
/* Batches.  write_many applies op to every pair (op->new_val and new_len set
 * to the pair's value first), stripe by stripe: pairs of one key in their
 * order, pairs of different keys in any.  It stops at the first error. */
int pf__eng_write_many(pf__eng *e, const pf_dict_item *items, size_t n, pf__dict_wop *op);
/* For batched reads: a key's hash, get with it, and a hint to start loading
 * what a get of it will touch: its home slot, or (entry, a few keys later,
 * once the slot is in) the entry it points at.  Batches prefetch a key's slot
 * 2 x PF__ENG_AHEAD keys before they use it and its entry PF__ENG_AHEAD keys
 * before (two processes loading the memory system make each miss longer). */
#define PF__ENG_AHEAD 32u
uint64_t pf__eng_hash(const pf__eng *e, const void *key, size_t klen);
int pf__eng_get_hashed(pf__eng *e, uint64_t h, const void *key, size_t klen, void *buf, size_t cap,
                       size_t *vlen, void **alloc);
void pf__eng_prefetch(const pf__eng *e, uint64_t h, bool entry);
size_t pf__eng_len(pf__eng *e);
int pf__eng_clear(pf__eng *e);

/* Copy every entry of stripe s, under its lock, through emit (library code
 * only: it runs with the lock held).  A non-zero return from emit stops. */
typedef int (*pf__eng_emit_fn)(void *u, const void *key, size_t klen, const void *val, size_t vlen);
int pf__eng_copy_stripe(pf__eng *e, unsigned s, pf__eng_emit_fn emit, void *u);

int pf__eng_check(pf__eng *e, char *msg, size_t msg_cap);

/* For tests and statistics: the stripe of a key, growths, backed size. */
unsigned pf__eng_stripe_of(const pf__eng *e, const void *key, size_t klen);
/* The lane (0..3) the calling thread writes through in e, drawn at its
 * first use of e: the first four writers of a dict get distinct lanes. */
unsigned pf__eng_lane(const pf__eng *e);
uint64_t pf__eng_grows(const pf__eng *e);
uint64_t pf__eng_size(const pf__eng *e);
/* Arena bytes handed to stripes so far. */
uint64_t pf__eng_used(const pf__eng *e);
/* Locks recovered from a dead holder so far (each ran a repair). */
uint64_t pf__eng_repairs(const pf__eng *e);

/* For the tests' corruption cases only: the address of one word a scribbler
 * may hit (the header's top or size; stripe s's table, capacity, live and
 * deleted counts, owned bytes, the bump chunk of lane `idx`, the head of the
 * free list of class `idx` (NULL past the last class), the commit record of
 * lane `idx` (words: state (1: active), n, then n (offset, value) pairs); the
 * second header word of stripe s's first entry: its class), or of the first
 * word of a lock (stripe s's or the global one: a pthread_mutex_t there). */
enum pf__eng_word {
    PF__EW_TOP,
    PF__EW_SIZE,
    PF__EW_TABLE,
    PF__EW_CAP,
    PF__EW_COUNT,
    PF__EW_TOMBS,
    PF__EW_OWNED,
    PF__EW_CHUNK_CUR,
    PF__EW_CHUNK_END,
    PF__EW_FREE_HEAD,
    PF__EW_TX,
    PF__EW_ENTRY_META,
    PF__EW_STRIPE_LOCK,
    PF__EW_GLOBAL_LOCK
};
uint64_t *pf__eng_word_for_tests(pf__eng *e, enum pf__eng_word w, unsigned s, unsigned idx);

#endif /* PF_DICT_ENGINE_H */
