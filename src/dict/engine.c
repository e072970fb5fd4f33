/*
 * The striped hash-table engine of the local and shm dicts (see engine.h and
 * docs/internals/dict-shm.md, which this file follows).
 *
 * Shape.  A key's 64-bit hash picks its stripe (top bits) and its home slot and 32-bit
 * tag (low bits).  Each stripe owns, under its one lock: an open-addressing table of
 * 8-byte slots (tag << 32 | block offset / 16), the entry blocks, a segregated
 * allocator (free lists per size class plus bump chunks) and commit records; the chunks
 * and records come in lanes, one per writer thread's lane.  The global lock is taken
 * only to hand a stripe a new chunk of the arena (and to grow the backing), so
 * single-key operations on different stripes never share a lock.
 *
 * Readers take no lock: a per-stripe seqlock counter is odd while a commit
 * changes what readers can see; a reader copies out, then retries if the
 * counter moved.  Every offset a reader follows is bounds-checked against the
 * published size before use, so a torn read is detected and never faults.
 * Shared words that readers may see are written with atomic stores and read
 * with atomic loads, so there is no data race in the C11 sense (and TSan agrees).
 *
 * Writers change nothing readers can reach until one commit: a new entry is
 * written out of place into a reserved block, then a small redo record (at most
 * TX_MAX word stores: the slot, the counts, the allocator heads, the free link of
 * the replaced block; or, for a small value that fits its entry's block, the new
 * value's words themselves) is written, marked active with one release store,
 * and applied.  A process killed at any instant leaves either no active record
 * (the change did not happen; a reservation note says how to undo the block
 * reservation) or an active one (the next lock holder applies it again: every
 * store is of an absolute value, so applying twice is harmless).  On EOWNERDEAD
 * the repair runs before pthread_mutex_consistent.
 *
 * A stray write may hit any of it, the locks included: what is read from the
 * segment is checked before it is followed or written through, every loop
 * over it is bounded, and damage (a lock that pthreads refuses too) marks the
 * dict corrupt: PF_ECORRUPT from then on, never an abort or an endless loop.
 */
#include "dict/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/sync.h"

#define ENG_MAGIC   0x54434944524f4650ull /* "PFORDICT" */
#define ENG_VERSION 2u

#define NCLASSES   103        /* block size classes, 32 B .. 2 GiB */
#define TX_MAX     12         /* word stores in one commit record */
#define MIN_CAP    8          /* smallest table */
#define MAX_CAP    (1u << 27) /* largest table of one stripe */
#define BLK_HDR    16         /* bytes of block header */
#define SLOT_EMPTY 0ull
#define SLOT_TOMB  1ull /* block offset 16 is inside the header: never a block */

#define CHUNK_FIRST 1024u        /* the smallest free block reused as a bump chunk */
#define CHUNK_PAGE  4096ull      /* chunks from the top come in whole pages of this size */
#define CHUNK_MAX   (1u << 20)   /* the biggest shared chunk (bigger blocks get their own) */
#define EXACT_MIN   (64u << 10)  /* blocks this big get a chunk of their own */
#define GROW_MIN    (1ull << 20) /* the backing grows by at least this */
#define GROW_ALIGN  (64ull << 10)
#define OPT_TRIES   256 /* optimistic read attempts before taking the lock */
#define LOCK_SPINS  100 /* trylock attempts before sleeping on a busy lock */
#define LANES       4   /* bump chunks per stripe (a power of two; see lane_of) */

#define KIND_ENTRY 1ull
#define KIND_TABLE 2ull

enum { TX_IDLE = 0, TX_ACTIVE = 1 };
enum { PEND_NONE = 0, PEND_POP = 1, PEND_EXACT = 3 };

/* A commit record: `n` (offset, value) word stores, applied while state is
 * TX_ACTIVE.  Guarded by the lock of its owner (stripe or global). */
struct eng_tx {
    uint64_t state; /* release-stored after the pairs */
    uint64_t n;
    struct {
        uint64_t off, val;
    } p[TX_MAX];
};

struct pf__eng_hdr {
    uint64_t magic; /* atomic: written last by the creator (release) */
    uint32_t version;
    uint32_t hdr_size;
    uint32_t stripe_size;
    uint32_t nstripes;
    uint64_t nonce;     /* immutable: tells one incarnation of a name from another */
    uint64_t seed;      /* immutable: hash seed */
    uint64_t max_bytes; /* immutable: the reservation; growth stops there */
    uint64_t stripes_off;
    uint64_t arena_off;
    uint64_t creator_pid; /* immutable, informational */
    uint64_t size;        /* atomic: bytes backed from base; grows only, under g_mu */
    uint32_t destroyed;   /* atomic: set by the owner's close */
    uint32_t corrupt;     /* atomic: a repair or check found damage it cannot mend */
    uint64_t repairs;     /* atomic: locks recovered from a dead holder (statistics) */
    uint32_t next_lane;   /* atomic: lanes handed out to writers so far (see lane_of) */
    pthread_mutex_t g_mu __attribute__((aligned(64)));
    uint64_t top;       /* g_mu: first arena byte not yet handed to a stripe */
    uint64_t grows;     /* g_mu: how many times the backing grew */
    struct eng_tx g_tx; /* g_mu */
    /* Held (trylock only) by the one thread growing the backing ahead of need;
     * guards no shared data.  Order: grow_mu, then g_mu. */
    pthread_mutex_t grow_mu __attribute__((aligned(64)));
};

/* One allocation lane of a stripe (see lane_of): a commit record and a bump
 * chunk.  A writer uses its thread's lane, so two worker processes writing into
 * one stripe build their records and bump their chunks in different cache
 * lines.  Every lane belongs to the stripe and is guarded by its lock; at most
 * one record of a stripe is ever active (only the lock holder commits, and a
 * repair leaves it idle before the lock is released). */
struct eng_lane {
    struct eng_tx tx; /* mu: first line: state, n and the first three stores */
    /* The bump chunk [chunk_cur, chunk_end).  mu; also written by the g_mu
     * holder, who always holds mu too (or repairs for a dead holder of both). */
    uint64_t chunk_cur, chunk_end;
} __attribute__((aligned(64)));

struct pf__eng_stripe {
    /* Line 0 (x86-64: a 40-byte mutex): the lock and what every write changes. */
    pthread_mutex_t mu;
    uint64_t seq;   /* atomic: seqlock counter, odd while a commit is being applied */
    uint64_t count; /* mu, atomic stores: live entries (pf_dict_len sums without locks) */
    uint64_t tombs; /* mu: deleted slots in the table */
    /* Line 1: what lock-free readers load besides seq; written by a rehash. */
    uint64_t table; /* mu, atomic stores: table block (0: none yet); read by lock-free readers */
    uint64_t cap;   /* mu, as table: slots in the table (power of two) */
    /* The block reservation of the operation in progress (mu): how to undo it if
     * the operation dies before its commit (PEND_POP, PEND_EXACT). */
    uint64_t pend_kind, pend_block, pend_next, pend_cls;
    /* Cold: written when a chunk is taken (mu and g_mu, as chunk_cur). */
    uint64_t owned;               /* bytes of arena handed to this stripe */
    uint64_t wasted;              /* chunk tails dropped when a new chunk was taken */
    struct eng_lane lane[LANES];  /* next to the hot lines above */
    uint64_t free_head[NCLASSES]; /* mu: free list per class, linked through word 0 */
} __attribute__((aligned(64)));

struct hit {
    uint64_t idx, blk, klen, vlen;
    unsigned cls;
};

enum { P_MISS = 0, P_HIT = 1, P_TORN = 2 };

/* ------------------------------------------------------------ small helpers -- */

#define OFF(e, ptr) ((uint64_t)((const char *)(ptr) - (e)->base))

static inline uint64_t *word(const pf__eng *e, uint64_t off)
{
    return (uint64_t *)(e->base + off);
}

static inline uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint32_t ld32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void st_(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Order the stores of a writer against a kill (a killed thread's executed stores
 * all land; only the compiler could reorder them). */
static inline void crash_order(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}

static inline uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~7ull;
}

static inline uint64_t entry_size(uint64_t klen, uint64_t vlen)
{
    return BLK_HDR + pad8(klen) + pad8(vlen);
}

static uint64_t class_size(unsigned c)
{
    if (c < 7)
        return 32 + 16 * (uint64_t)c;
    unsigned k = c - 7, p = 7 + k / 4, idx = k % 4 + 1;
    return (1ull << p) + idx * (1ull << (p - 2));
}

/* The smallest class whose blocks hold n bytes, or -1. */
static int class_of(uint64_t n)
{
    if (n <= 32)
        return 0;
    if (n <= 128)
        return (int)((n - 32 + 15) / 16);
    unsigned p = 63u - (unsigned)__builtin_clzll(n - 1); /* 2^p < n <= 2^(p+1) */
    uint64_t step = 1ull << (p - 2);
    unsigned idx = (unsigned)((n - (1ull << p) + step - 1) / step);
    unsigned c = 7 + (p - 7) * 4 + idx - 1;
    return c < NCLASSES ? (int)c : -1;
}

static inline uint64_t fmix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Keyed hash of a byte string, 8 bytes at a time: two multiplies a word, and a
 * full avalanche (fmix) at the end; the seed is random per dict.  Reads key with
 * plain loads: callers pass caller memory or shm bytes they hold the lock for. */
static uint64_t key_hash(uint64_t seed, const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h ^= w * 0xc2b2ae3d27d4eb4full;
        h = ((h << 31) | (h >> 33)) * 0x9e3779b97f4a7c15ull;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h ^= w * 0xc2b2ae3d27d4eb4full;
        h = ((h << 31) | (h >> 33)) * 0x9e3779b97f4a7c15ull;
    }
    return fmix(h);
}

static inline struct pf__eng_stripe *stripe_for(const pf__eng *e, uint64_t h)
{
    return &e->st[e->sbits ? h >> (64 - e->sbits) : 0];
}

/* Copy n bytes into shared words with atomic stores.  dst is 8-aligned and its
 * block is padded to 8 bytes, so the last partial word is written whole. */
static void shm_write(uint64_t *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        st_(dst++, w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        st_(dst, w);
    }
}

/* Copy n bytes out of shared words with atomic loads (see shm_write). */
static void shm_read(void *dst, const uint64_t *src, size_t n)
{
    unsigned char *d = dst;
    for (; n >= 8; n -= 8, d += 8) {
        uint64_t w = ld(src++);
        memcpy(d, &w, 8);
    }
    if (n) {
        uint64_t w = ld(src);
        memcpy(d, &w, n);
    }
}

static bool shm_equal(const uint64_t *a, const void *b, size_t n)
{
    const unsigned char *s = b;
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        if (ld(a++) != w)
            return false;
    }
    if (n) {
        uint64_t w = 0, x = ld(a);
        memcpy(&w, s, n);
        uint64_t mask = (n == 8) ? ~0ull : ((1ull << (8 * n)) - 1);
        if ((x & mask) != w)
            return false;
    }
    return true;
}

/* A block of n bytes at off lies inside the backed arena. */
static inline bool in_arena(const pf__eng *e, uint64_t size, uint64_t off, uint64_t n)
{
    return off >= e->arena_off && (off & 15) == 0 && off <= size && n <= size - off;
}

/* The table (tab, cap) of a stripe is whole: a power-of-two capacity in range,
 * its slots inside the arena.  tab == 0 with cap == 0 is "no table yet". */
static inline bool table_ok(const pf__eng *e, uint64_t size, uint64_t tab, uint64_t cap)
{
    if (tab == 0)
        return cap == 0;
    return cap >= MIN_CAP && cap <= MAX_CAP && (cap & (cap - 1)) == 0 &&
           in_arena(e, size, tab, BLK_HDR + cap * 8);
}

/* The class field of block b (its header inside the arena), or NCLASSES if it
 * names no class or the class's size does not fit. */
static inline unsigned block_class(const pf__eng *e, uint64_t size, uint64_t b)
{
    if (!in_arena(e, size, b, BLK_HDR))
        return NCLASSES;
    unsigned c = (unsigned)((ld(word(e, b + 8)) >> 32) & 0xff);
    return c < NCLASSES && in_arena(e, size, b, class_size(c)) ? c : NCLASSES;
}

/* The entry block b a slot points to is whole: inside the arena, its key and
 * value within the limits and within its class.  Fills *klen, *vlen, *cls. */
static inline bool entry_ok(const pf__eng *e, uint64_t size, uint64_t b, uint64_t *klen,
                            uint64_t *vlen, unsigned *cls)
{
    *cls = block_class(e, size, b);
    if (*cls == NCLASSES)
        return false;
    uint64_t w0 = ld(word(e, b));
    *klen = w0 & 0xffffffffull;
    *vlen = w0 >> 32;
    return *klen <= PF_DICT_MAX_KEY && *vlen <= PF_DICT_MAX_VALUE &&
           entry_size(*klen, *vlen) <= class_size(*cls);
}

/* Make this process's view of the region cover `size` bytes.  The reservation
 * is PROT_NONE past what this process has seen backed, so nothing (a debugger,
 * valgrind's leak scan, a stray pointer) can touch pages of the file that do not
 * exist yet.  Threads may race here: mprotect of overlapping ranges is harmless
 * and `mapped` only ever rises. */
static bool map_upto(pf__eng *e, uint64_t size)
{
    uint64_t m = __atomic_load_n(&e->mapped, __ATOMIC_ACQUIRE);
    if (size <= m)
        return true;
    if (mprotect(e->base + m, size - m, PROT_READ | PROT_WRITE) != 0)
        return false;
    while (m < size && !__atomic_compare_exchange_n(&e->mapped, &m, size, true, __ATOMIC_RELEASE,
                                                    __ATOMIC_ACQUIRE)) {
    }
    return true;
}

/* The published backed size, with this process's view covering it.  Every
 * offset is checked against this before it is followed. */
static int mark_corrupt(pf__eng *e);

static inline uint64_t cur_size(pf__eng *e)
{
    uint64_t s = __atomic_load_n(&e->h->size, __ATOMIC_ACQUIRE);
    if (__builtin_expect(s > __atomic_load_n(&e->mapped, __ATOMIC_ACQUIRE), 0)) {
        /* size only grows up to max_bytes, our reservation: a bigger one is a
         * scribble, and mprotect past the reservation would change whatever
         * mapping lies after it. */
        if (s > e->max_bytes)
            mark_corrupt(e);
        if (s > e->max_bytes || !map_upto(e, s))
            return __atomic_load_n(&e->mapped, __ATOMIC_ACQUIRE); /* use what we can see */
    }
    return s;
}

static void set_msg(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (!msg || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

static int mark_corrupt(pf__eng *e)
{
    __atomic_store_n(&e->h->corrupt, 1u, __ATOMIC_RELEASE);
    return PF_ECORRUPT;
}

/* ------------------------------------------------------------------- commits -- */

/* Start a record in place (its lock held, its state idle: a holder that dies
 * while building it leaves nothing to apply). */
static inline struct eng_tx *tx_begin(struct eng_tx *t)
{
    t->n = 0;
    return t;
}

/* Add the store (off, val) to t.  The record lives in the segment, so its
 * count is read once and every loop over it is bounded by TX_MAX: a count
 * overwritten meanwhile makes the record overfull (TX_MAX + 1), which its
 * commit refuses (no operation needs more than TX_MAX stores). */
static void tx_put(struct eng_tx *t, uint64_t off, uint64_t val)
{
    uint64_t n = t->n;
    if (n > TX_MAX)
        return; /* overfull already */
    for (uint64_t i = 0; i < n; i++) {
        if (t->p[i].off == off) {
            t->p[i].val = val;
            return;
        }
    }
    if (n == TX_MAX) {
        t->n = TX_MAX + 1;
        return;
    }
    t->p[n].off = off;
    t->p[n].val = val;
    t->n = n + 1;
}

/* The value a word will have once t is applied. */
static uint64_t tx_get(const pf__eng *e, const struct eng_tx *t, uint64_t off)
{
    uint64_t n = PF__MIN(t->n, (uint64_t)TX_MAX);
    for (uint64_t i = 0; i < n; i++)
        if (t->p[i].off == off)
            return t->p[i].val;
    return ld(word(e, off));
}

/* Mark the record active (the commit point), apply it, mark it idle.  The
 * caller holds the record's lock.  PF_ECORRUPT, with nothing applied, for an
 * overfull record (see tx_put). */
static int tx_commit_locked(pf__eng *e, struct eng_tx *t, int half_point)
{
    uint64_t n = t->n;
    if (__builtin_expect(n > TX_MAX, 0))
        return mark_corrupt(e);
    crash_order();
    __atomic_store_n(&t->state, (uint64_t)TX_ACTIVE, __ATOMIC_RELEASE);
    crash_order();
    for (uint64_t i = 0; i < n; i++) {
        if (i == n / 2)
            PF__DICT_POINT(half_point);
        st_(word(e, t->p[i].off), t->p[i].val);
    }
    crash_order();
    __atomic_store_n(&t->state, (uint64_t)TX_IDLE, __ATOMIC_RELEASE);
    return 0;
}

/* A word a commit record may store to: an aligned, backed arena word, the
 * header's top, or a word of a stripe outside its lock.  No record writes
 * anything else, and a scribbled record applied again must not write over a
 * lock's bytes (or the header's layout) on its way. */
static bool redo_target_ok(const pf__eng *e, uint64_t size, uint64_t off)
{
    if (off & 7)
        return false;
    if (off >= e->arena_off)
        return size >= 8 && off <= size - 8;
    if (off == OFF(e, &e->h->top))
        return true;
    uint64_t so = OFF(e, e->st), sz = sizeof(struct pf__eng_stripe);
    return off >= so && off - so < e->nstripes * sz && (off - so) % sz >= sizeof(pthread_mutex_t);
}

/* Apply an active record again (repair), from one copy of it whose every
 * target was checked (redo_target_ok). */
static int tx_redo(pf__eng *e, struct eng_tx *log)
{
    uint64_t size = cur_size(e), n = log->n, off[TX_MAX], val[TX_MAX];
    if (n > TX_MAX)
        return mark_corrupt(e);
    for (uint64_t i = 0; i < n; i++) {
        off[i] = log->p[i].off;
        val[i] = log->p[i].val;
        if (!redo_target_ok(e, size, off[i]))
            return mark_corrupt(e);
    }
    for (uint64_t i = 0; i < n; i++)
        st_(word(e, off[i]), val[i]);
    crash_order();
    __atomic_store_n(&log->state, (uint64_t)TX_IDLE, __ATOMIC_RELEASE);
    return 0;
}

/* The seqlock as in Boehm, "Can seqlocks get along with programming language
 * memory models?" (2012): the writer's store of the odd count is followed by a
 * release fence, the reader's relaxed data loads by an acquire fence before it
 * loads the count again.  ThreadSanitizer does not model fences (GCC refuses
 * them under -fsanitize=thread), so sanitizer builds use read-modify-writes
 * with the same ordering instead: slower, and equivalent. */
#if defined(__SANITIZE_THREAD__)
#define PF__NO_FENCES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PF__NO_FENCES 1
#endif
#endif

static inline void seq_begin(struct pf__eng_stripe *st)
{
#ifdef PF__NO_FENCES
    __atomic_fetch_add(&st->seq, 1, __ATOMIC_ACQ_REL);
#else
    st_(&st->seq, ld(&st->seq) + 1);
    atomic_thread_fence(memory_order_release);
#endif
}

/* The count again, after a reader's data loads. */
static inline uint64_t seq_recheck(struct pf__eng_stripe *st)
{
#ifdef PF__NO_FENCES
    return __atomic_fetch_add(&st->seq, 0, __ATOMIC_ACQ_REL);
#else
    atomic_thread_fence(memory_order_acquire);
    return ld(&st->seq);
#endif
}

static inline void seq_end(struct pf__eng_stripe *st)
{
    __atomic_store_n(&st->seq, ld(&st->seq) + 1, __ATOMIC_RELEASE);
}

/* Apply t to stripe st inside a seqlock write section (PF_ECORRUPT: see
 * tx_commit_locked). */
static int publish(pf__eng *e, struct pf__eng_stripe *st, struct eng_tx *t)
{
    seq_begin(st);
    int rc = tx_commit_locked(e, t, PF__DP_TX_HALF);
    PF__DICT_POINT(PF__DP_COMMITTED);
    seq_end(st);
    return rc;
}

/* --------------------------------------------------------------------- locks -- */

static int g_repair(pf__eng *e);
static int stripe_repair_locked(pf__eng *e, struct pf__eng_stripe *st);

/* The locks live in the segment, so a stray write can overwrite their bytes:
 * then pthreads answers what a whole lock never gives (EINVAL: no mutex kind
 * it knows; EPERM from an unlock: not held by this thread; EDEADLK, EAGAIN,
 * or a pthread_mutex_consistent that fails).  Each is damage, reported as
 * PF_ECORRUPT (and the corrupt flag), never an abort.  What cannot be told
 * from a held lock is not caught: a lock word overwritten with the id of a
 * live thread (or of none, without the owner-died bit) keeps lockers
 * waiting, unless the dict was marked before they sleep (lock_mutex). */

/* An unlock of m failed: its bytes were overwritten while this thread held
 * it.  glibc then leaves a robust mutex on the thread's robust list, which
 * the thread's next robust locks write through, so the region stays mapped
 * (pf__eng_keep_mapped); and lockers asleep on the lock word would wait for
 * the wake this unlock did not give, so wake them to look again (glibc: the
 * word is the mutex's first int). */
static __attribute__((noinline, cold)) int unlock_failed(pf__eng *e, pthread_mutex_t *m)
{
    __atomic_store_n(&e->lock_broken, 1, __ATOMIC_RELEASE);
    pf__futex_wake((_Atomic uint32_t *)(void *)m, INT32_MAX, e->pshared);
    return mark_corrupt(e);
}

static inline int unlock_mutex(pf__eng *e, pthread_mutex_t *m)
{
    int rc = pthread_mutex_unlock(m);
    return __builtin_expect(rc == 0, 1) ? 0 : unlock_failed(e, m);
}

/* lock_mutex's slow side: locking m (robust) returned rc, not 0. */
static __attribute__((noinline, cold)) int lock_failed(pf__eng *e, pthread_mutex_t *m,
                                                       struct pf__eng_stripe *st, int rc)
{
    if (rc != EOWNERDEAD)
        return mark_corrupt(e); /* ENOTRECOVERABLE, or overwritten bytes: not held */
    /* The holder died.  Repair what it left half done, then mark the lock
     * consistent; if this process dies during the repair, the next locker
     * gets EOWNERDEAD again and repeats it (the repair is idempotent). */
    int r = st ? stripe_repair_locked(e, st) : g_repair(e);
    if (pthread_mutex_consistent(m) != 0)
        r = mark_corrupt(e); /* the lock's bytes were overwritten meanwhile */
    if (r == 0 && __atomic_load_n(&e->h->corrupt, __ATOMIC_ACQUIRE))
        r = PF_ECORRUPT;
    if (r)
        unlock_mutex(e, m); /* a failure here only marks the region more */
    return r;
}

static int lock_mutex(pf__eng *e, pthread_mutex_t *m, struct pf__eng_stripe *st)
{
    /* Critical sections are short: spin a little before sleeping in the kernel
     * (glibc's robust mutexes do not spin by themselves). */
    int rc = EBUSY;
    for (int i = 0; i < LOCK_SPINS && rc == EBUSY; i++) {
        rc = pthread_mutex_trylock(m);
        if (rc == EBUSY)
            pf__cpu_relax();
    }
    if (rc == EBUSY) {
        /* Busy for a while: a dict found damaged fails before sleeping (its
         * lock may be one that looks held for good), as it would after. */
        if (__atomic_load_n(&e->h->corrupt, __ATOMIC_ACQUIRE))
            return PF_ECORRUPT;
        rc = pthread_mutex_lock(m);
    }
    if (__builtin_expect(rc != 0, 0))
        return lock_failed(e, m, st, rc);
    if (__atomic_load_n(&e->h->corrupt, __ATOMIC_ACQUIRE)) {
        unlock_mutex(e, m);
        return PF_ECORRUPT;
    }
    return 0;
}

/* A local engine is frozen around fork() (pf__eng_fork_freeze): a stripe's
 * new holder lets go and waits until it thaws.  The flag is read under the
 * stripe lock, whose acquisition orders it after the freezer's pass over that
 * stripe (see pf__eng_fork_freeze); shm engines are never frozen. */
static int stripe_lock(pf__eng *e, struct pf__eng_stripe *st)
{
    for (;;) {
        int rc = lock_mutex(e, &st->mu, st);
        if (rc || e->pshared || !__atomic_load_n(&e->frozen, __ATOMIC_RELAXED))
            return rc;
        if ((rc = unlock_mutex(e, &st->mu)) != 0)
            return rc;
        while (__atomic_load_n(&e->frozen, __ATOMIC_ACQUIRE))
            nanosleep(&(struct timespec){0, 100 * 1000}, NULL); /* a fork lasts ~ms */
    }
}

/* 0, or PF_ECORRUPT when the lock's bytes were overwritten while held (the
 * operation's work is done, or not, as for a kill at that point). */
static inline int stripe_unlock(pf__eng *e, struct pf__eng_stripe *st)
{
    return unlock_mutex(e, &st->mu);
}

static inline int g_lock(pf__eng *e)
{
    return lock_mutex(e, &e->h->g_mu, NULL);
}

static inline int g_unlock(pf__eng *e)
{
    return unlock_mutex(e, &e->h->g_mu);
}

/* ----------------------------------------------------------------- allocator -- */

/* Bumped in a forked child (pf__eng_atfork_child), so that a thread's lanes
 * are drawn again after fork: worker processes forked from one parent thread
 * do not keep its lanes.  Atomic, relaxed: it is only a hint. */
static unsigned g_fork_gen;

void pf__eng_atfork_child(void)
{
    __atomic_fetch_add(&g_fork_gen, 1, __ATOMIC_RELAXED);
}

/* A thread's lane in the dicts it wrote to lately: a few entries, placed by
 * the engine's address. */
#define LANE_CACHE 4
static __thread struct {
    const pf__eng *e;
    uint64_t nonce; /* the dict's: another dict opened at the same address draws anew */
    unsigned gen;   /* g_fork_gen + 1 when drawn */
    unsigned lane;
} t_lanes[LANE_CACHE];

/* The bump-chunk lane of the calling thread in e.  Each writer draws one from
 * the dict's own counter at its first write, so the first LANES writers of a
 * dict, threads or processes, get distinct lanes (the thread id mod LANES that
 * this replaces put two worker processes on one lane in one run of four, and
 * their gets at 2 M entries were 8-15 % slower for it).  A hint only: two
 * threads on one lane are merely back to sharing chunk lines. */
static inline unsigned lane_of(const pf__eng *e)
{
    unsigned g = __atomic_load_n(&g_fork_gen, __ATOMIC_RELAXED) + 1;
    unsigned i = (unsigned)((uintptr_t)e >> 6) & (LANE_CACHE - 1);
    uint64_t nonce = e->h->nonce; /* immutable */
    if (__builtin_expect(t_lanes[i].e != e || t_lanes[i].gen != g || t_lanes[i].nonce != nonce,
                         0)) {
        t_lanes[i].e = e;
        t_lanes[i].nonce = nonce;
        t_lanes[i].gen = g;
        t_lanes[i].lane = __atomic_fetch_add(&e->h->next_lane, 1, __ATOMIC_RELAXED) & (LANES - 1);
    }
    return t_lanes[i].lane;
}

/* The commit record of the calling thread's lane in stripe st. */
static inline struct eng_tx *stripe_tx(const pf__eng *e, struct pf__eng_stripe *st)
{
    return &st->lane[lane_of(e)].tx;
}

/* The lane of st whose commit record is t (a write draws its lane once, in
 * stripe_tx, and finds it again from its record). */
static inline unsigned tx_lane(const struct pf__eng_stripe *st, const struct eng_tx *t)
{
    uintptr_t d = (uintptr_t)t - (uintptr_t)&st->lane[0].tx;
    PF__CHECK(d % sizeof(struct eng_lane) == 0 && d / sizeof(struct eng_lane) < LANES);
    return (unsigned)(d / sizeof(struct eng_lane));
}

/* Back [from, to) and make it accessible in this process: posix_fallocate
 * (shm), which reserves the pages now so that a full /dev/shm is an error here
 * and never a SIGBUS on first touch later, and mprotect (which for a local dict
 * is what commits the memory).  Needs no lock: both are idempotent, and no one
 * uses the range before `size` says it exists. */
static int back_range(pf__eng *e, uint64_t from, uint64_t to)
{
    int err = 0;
    if (e->fd >= 0) {
        do
            err = posix_fallocate(e->fd, (off_t)from, (off_t)(to - from));
        while (err == EINTR);
    }
    if (err == 0 && !map_upto(e, to))
        err = errno == ENOMEM ? ENOMEM : EINVAL;
    if (err == 0)
        return 0;
    if (err == ENOSPC || err == EFBIG || (e->fd >= 0 && err == ENOMEM))
        return PF_ENOSPC;
    return err == ENOMEM ? PF_ENOMEM : PF_ESYS;
}

/* Publish that `want` bytes are backed (g_mu held). */
static void publish_size_locked(pf__eng *e, uint64_t want)
{
    if (want <= ld(&e->h->size))
        return;
    PF__DICT_POINT(PF__DP_GROW);
    __atomic_store_n(&e->h->size, want, __ATOMIC_RELEASE);
    __atomic_fetch_add(&e->h->grows, 1, __ATOMIC_RELAXED);
}

/* The next size when growing from `size`: a quarter more, at least GROW_MIN. */
static uint64_t next_size(const pf__eng *e, uint64_t size, uint64_t need)
{
    uint64_t want = PF__MAX(need, size + PF__MAX(size / 4, GROW_MIN));
    want = (want + GROW_ALIGN - 1) & ~(GROW_ALIGN - 1);
    return want > e->max_bytes ? e->max_bytes : want;
}

/* Back the region up to `need` bytes now (g_mu held): the slow path, when a
 * chunk is needed and growing ahead (below) did not keep up. */
static int ensure_size_locked(pf__eng *e, uint64_t need)
{
    uint64_t size = cur_size(e); /* another process may have grown it: map that too */
    if (need <= size)
        return 0;
    if (need > e->max_bytes)
        return PF_ENOSPC;
    uint64_t want = next_size(e, size, need);
    int rc = back_range(e, size, want);
    if (rc && want > ((need + 4095) & ~4095ull)) {
        want = (need + 4095) & ~4095ull; /* the big step did not fit: just what is needed */
        rc = back_range(e, size, want);
    }
    if (rc)
        return rc;
    publish_size_locked(e, want);
    return 0;
}

/* Set by grab_locked when the arena is nearly full: the write that took the
 * chunk grows the backing after it released every lock (grow_ahead), so the
 * page allocation and zeroing of a growth never happen under a lock. */
static __thread bool grow_wanted;

static void grow_ahead(pf__eng *e)
{
    grow_wanted = false;
    /* One grower at a time; the others go on with the room there is (two
     * posix_fallocate calls on one range would only queue on the file's lock,
     * spinning).  A trylock: no one waits here.  A holder that died leaves
     * nothing to repair: growing is idempotent, and size is published under
     * g_mu. */
    pthread_mutex_t *m = &e->h->grow_mu;
    int rc = pthread_mutex_trylock(m);
    if (rc == EOWNERDEAD && pthread_mutex_consistent(m) != 0) {
        mark_corrupt(e); /* its bytes overwritten (see lock_failed) */
        unlock_mutex(e, m);
        return;
    }
    if (rc != 0 && rc != EOWNERDEAD) {
        /* EBUSY: someone is growing it; ENOTRECOVERABLE: the slow path grows;
         * anything else: its bytes were overwritten.  The operations that
         * follow report what was marked. */
        if (rc != EBUSY && rc != ENOTRECOVERABLE)
            mark_corrupt(e);
        return;
    }
    uint64_t size = cur_size(e), top = ld(&e->h->top);
    if (size - top < PF__MAX(size / 8, GROW_MIN) && size < e->max_bytes) {
        uint64_t want = next_size(e, size, size);
        /* On failure the slow path reports it when it matters. */
        if (back_range(e, size, want) == 0 && g_lock(e) == 0) {
            publish_size_locked(e, want);
            g_unlock(e);
        }
    } /* else someone grew it meanwhile */
    unlock_mutex(e, m);
}

/* Add "lane l of stripe st bumps from [from, to) now" to t; what was left of
 * its old chunk counts as wasted. */
static void tx_new_chunk(pf__eng *e, struct eng_tx *t, struct pf__eng_stripe *st, unsigned l,
                         uint64_t from, uint64_t to)
{
    tx_put(t, OFF(e, &st->wasted), st->wasted + (st->lane[l].chunk_end - st->lane[l].chunk_cur));
    tx_put(t, OFF(e, &st->lane[l].chunk_cur), from);
    tx_put(t, OFF(e, &st->lane[l].chunk_end), to);
}

/* Hand stripe st (locked) a new chunk of n bytes from the top of the arena.
 * exact: the chunk is one block of class c, recorded as the reservation of the
 * operation in progress.  Otherwise it becomes the bump chunk of lane l. */
static int grab_locked(pf__eng *e, struct pf__eng_stripe *st, uint64_t n, unsigned c, bool exact,
                       unsigned l)
{
    int rc = g_lock(e);
    if (rc)
        return rc;
    struct pf__eng_hdr *h = e->h;
    uint64_t top = h->top;
    if (top < e->arena_off || (top & 15) || top > cur_size(e)) {
        rc = mark_corrupt(e); /* handing out [top, ..) would overwrite what is below */
        goto out;
    }
    /* A quarter of what the stripe owns (4 KiB .. 1 MiB): a small dict stays
     * small, and once a stripe owns 16 KiB its last chunk's unused tail stays
     * under a fifth.  Whole pages (below the cap): a fresh page then belongs
     * to one lane, so two processes never fault on it at once (the second
     * would sleep until the first has zeroed it, then wait to be woken). */
    uint64_t csize = PF__MIN(PF__MAX(st->owned / 4, (uint64_t)CHUNK_PAGE), (uint64_t)CHUNK_MAX);
    csize = exact ? n : PF__MAX(csize, n);
    csize = (csize + CHUNK_PAGE - 1) & ~(CHUNK_PAGE - 1);
    if (top + csize > e->max_bytes || ensure_size_locked(e, top + csize) != 0) {
        csize = n;
        rc = ensure_size_locked(e, top + csize);
        if (rc)
            goto out;
    }
    struct eng_tx *t = tx_begin(&h->g_tx);
    tx_put(t, OFF(e, &h->top), top + csize);
    tx_put(t, OFF(e, &st->owned), st->owned + csize);
    if (exact) {
        tx_put(t, OFF(e, &st->pend_block), top);
        tx_put(t, OFF(e, &st->pend_cls), c);
        tx_put(t, OFF(e, &st->pend_kind), PEND_EXACT);
    } else {
        tx_new_chunk(e, t, st, l, top, top + csize);
    }
    if ((rc = tx_commit_locked(e, t, PF__DP_GTX_HALF)) != 0)
        goto out;
    top += csize;
    if (ld(&h->size) - top < PF__MAX(ld(&h->size) / 8, GROW_MIN) && ld(&h->size) < e->max_bytes)
        grow_wanted = true;
out:;
    int u = g_unlock(e);
    return u ? u : rc;
}

static inline void set_pend(struct pf__eng_stripe *st, uint64_t kind, uint64_t b, uint64_t next,
                            unsigned c)
{
    st->pend_block = b;
    st->pend_next = next;
    st->pend_cls = c;
    crash_order();
    __atomic_store_n(&st->pend_kind, kind, __ATOMIC_RELEASE);
    crash_order(); /* the note is down before the block is written */
}

/* Make a free block of at least max(n, CHUNK_FIRST) bytes the bump chunk of
 * lane l (stripe locked, its record not yet in use): old tables and big values
 * come back as room for entries instead of lying idle on lists no one draws
 * from.  One commit; nothing readers see changes.  false if there is none. */
static bool recycle_chunk_locked(pf__eng *e, struct pf__eng_stripe *st, uint64_t n, unsigned l)
{
    int lo = class_of(PF__MAX(n, (uint64_t)CHUNK_FIRST));
    unsigned c = lo < 0 ? NCLASSES : (unsigned)lo;
    while (c < NCLASSES && !st->free_head[c])
        c++;
    if (c == NCLASSES)
        return false;
    uint64_t b = st->free_head[c], size = cur_size(e);
    if (!in_arena(e, size, b, class_size(c)))
        return false; /* the next lookup of this list will report it */
    struct eng_tx *t = tx_begin(&st->lane[l].tx);
    tx_put(t, OFF(e, &st->free_head[c]), ld(word(e, b)));
    tx_new_chunk(e, t, st, l, b, b + class_size(c));
    /* Refused (overfull): the region is marked, so the caller's grab_locked
     * reports it. */
    bool done = tx_commit_locked(e, t, PF__DP_NONE) == 0;
    tx_begin(t); /* the caller's record starts empty again */
    return done;
}

/* Reserve a block of class c for the operation in progress (stripe locked): its
 * allocation becomes part of t, and the stripe's pending note says how to undo
 * it if the operation dies before committing t.  Bump allocation uses the
 * calling thread's lane. */
static int reserve_locked(pf__eng *e, struct pf__eng_stripe *st, unsigned c, struct eng_tx *t,
                          uint64_t *out)
{
    unsigned l = tx_lane(st, t); /* t is the writer's lane record of st */
    if (t->n != 0)               /* the reservation opens the record: overwritten */
        return mark_corrupt(e);
    uint64_t n = class_size(c);
    uint64_t b = st->free_head[c];
    if (b) {
        uint64_t size = cur_size(e);
        if (!in_arena(e, size, b, n) || ((ld(word(e, b + 8)) >> 32) & 0xff) != c)
            return mark_corrupt(e);
        /* The new contents will overwrite the free-list link: note it first. */
        uint64_t next = ld(word(e, b));
        set_pend(st, PEND_POP, b, next, c);
        tx_put(t, OFF(e, &st->free_head[c]), next);
        tx_put(t, OFF(e, &st->pend_kind), PEND_NONE);
    } else if (n >= EXACT_MIN) {
        int rc = grab_locked(e, st, n, c, true, 0); /* notes PEND_EXACT itself */
        if (rc)
            return rc;
        b = st->pend_block;
        tx_put(t, OFF(e, &st->pend_kind), PEND_NONE);
    } else {
        /* From the bump chunk: until the commit moves chunk_cur the block is
         * unallocated space, so a death before it needs no undo and no note. */
        if (st->lane[l].chunk_cur > st->lane[l].chunk_end)
            return mark_corrupt(e);
        if (st->lane[l].chunk_end - st->lane[l].chunk_cur < n &&
            !recycle_chunk_locked(e, st, n, l)) {
            int rc = grab_locked(e, st, n, c, false, l);
            if (rc)
                return rc;
        }
        b = st->lane[l].chunk_cur;
        if (!in_arena(e, cur_size(e), b, n))
            return mark_corrupt(e); /* a scribbled chunk: never write through it */
        tx_put(t, OFF(e, &st->lane[l].chunk_cur), b + n);
    }
    *out = b;
    return 0;
}

/* Add "push block b of class c on its free list" to t (st locked: its free
 * list head is read). */
static void tx_free_locked(pf__eng *e, struct pf__eng_stripe *st, struct eng_tx *t, uint64_t b,
                           unsigned c)
{
    uint64_t head_off = OFF(e, &st->free_head[c]);
    tx_put(t, b, tx_get(e, t, head_off));
    tx_put(t, head_off, b);
}

/* -------------------------------------------------------------------- lookup -- */

/* Find key in the table (tab, cap) of a stripe.  Lock-free callers pass the size
 * they loaded and get P_TORN for anything out of bounds; *ins (may be NULL) gets
 * the slot an insert would use (first tombstone or the empty slot ending the run). */
static int probe(const pf__eng *e, uint64_t size, uint64_t tab, uint64_t cap, uint32_t tag,
                 const void *key, size_t klen, struct hit *hit, uint64_t *ins)
{
    uint64_t first_free = UINT64_MAX;
    if (ins)
        *ins = UINT64_MAX;
    if (!table_ok(e, size, tab, cap))
        return P_TORN;
    if (tab == 0)
        return P_MISS;
    const uint64_t *slots = word(e, tab + BLK_HDR);
    uint64_t mask = cap - 1, j = tag & mask;
    for (uint64_t i = 0; i < cap; i++, j = (j + 1) & mask) {
        uint64_t w = ld(&slots[j]);
        if (w == SLOT_EMPTY) {
            if (ins)
                *ins = first_free != UINT64_MAX ? first_free : j;
            return P_MISS;
        }
        if (w == SLOT_TOMB) {
            if (first_free == UINT64_MAX)
                first_free = j;
            continue;
        }
        if ((uint32_t)(w >> 32) != tag)
            continue;
        uint64_t b = (w & 0xffffffffull) << 4, bk, bv;
        unsigned cls;
        if (!entry_ok(e, size, b, &bk, &bv, &cls))
            return P_TORN;
        if (bk != klen || !shm_equal(word(e, b + BLK_HDR), key, klen))
            continue;
        hit->idx = j;
        hit->blk = b;
        hit->klen = bk;
        hit->vlen = bv;
        hit->cls = cls;
        return P_HIT;
    }
    return P_TORN; /* no empty slot: never so in a whole table */
}

/* --------------------------------------------------------------------- reads -- */

struct rd {
    void *buf;
    size_t cap;
    size_t *vlen;
    void **alloc;
};

static int rd_take(const pf__eng *e, const struct hit *hit, struct rd *rd)
{
    const uint64_t *v = word(e, hit->blk + BLK_HDR + pad8(hit->klen));
    if (rd->vlen)
        *rd->vlen = hit->vlen;
    if (rd->alloc) {
        free(*rd->alloc);
        *rd->alloc = malloc(hit->vlen ? hit->vlen : 1);
        if (!*rd->alloc)
            return PF_ENOMEM;
        shm_read(*rd->alloc, v, hit->vlen);
        return 0;
    }
    if (!rd->buf)
        return 0; /* presence only */
    if (hit->vlen > rd->cap)
        return PF_ETOOBIG;
    shm_read(rd->buf, v, hit->vlen);
    return 0;
}

uint64_t pf__eng_hash(const pf__eng *e, const void *key, size_t klen)
{
    return key_hash(e->seed, key, klen);
}

int pf__eng_get(pf__eng *e, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
                void **alloc)
{
    return pf__eng_get_hashed(e, key_hash(e->seed, key, klen), key, klen, buf, cap, vlen, alloc);
}

int pf__eng_get_hashed(pf__eng *e, uint64_t h, const void *key, size_t klen, void *buf, size_t cap,
                       size_t *vlen, void **alloc)
{
    struct pf__eng_stripe *st = stripe_for(e, h);
    uint32_t tag = (uint32_t)h;
    struct rd rd = {buf, cap, vlen, alloc};
    struct hit hit;
    int rc;
    if (alloc)
        *alloc = NULL;
    for (int attempt = 0; attempt < OPT_TRIES; attempt++) {
        uint64_t s1 = __atomic_load_n(&st->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            pf__cpu_relax();
            continue;
        }
        uint64_t size = cur_size(e);
        int p = probe(e, size, ld(&st->table), ld(&st->cap), tag, key, klen, &hit, NULL);
        rc = p == P_HIT ? rd_take(e, &hit, &rd) : PF_ENOTFOUND;
        if (rc == PF_ENOMEM)
            goto out;
        if (seq_recheck(st) != s1)
            continue;
        if (p == P_TORN)
            break; /* stable yet inconsistent: let the locked path judge */
        /* Damage found anywhere (the flag shares a line with size, just
         * loaded): PF_ECORRUPT, as from every other operation. */
        if (__builtin_expect(ld32(&e->h->corrupt) != 0, 0))
            rc = PF_ECORRUPT;
        goto out;
    }
    /* A writer kept the stripe busy, or died in it: read under the lock (which
     * repairs a dead holder's stripe first). */
    rc = stripe_lock(e, st);
    if (rc)
        goto out;
    int p = probe(e, cur_size(e), st->table, st->cap, tag, key, klen, &hit, NULL);
    rc = p == P_HIT ? rd_take(e, &hit, &rd) : p == P_MISS ? PF_ENOTFOUND : mark_corrupt(e);
    int u = stripe_unlock(e, st);
    if (u)
        rc = u;
out:
    if (rc && alloc) {
        free(*alloc);
        *alloc = NULL;
    }
    return rc;
}

/* -------------------------------------------------------------------- writes -- */

static uint64_t slot_off(uint64_t tab, uint64_t idx)
{
    return tab + BLK_HDR + idx * 8;
}

/* Replace the stripe's table by one of newcap slots holding the same entries. */
static int rehash_locked(pf__eng *e, struct pf__eng_stripe *st, uint64_t newcap)
{
    int c = class_of(BLK_HDR + newcap * 8);
    if (c < 0 || newcap > MAX_CAP)
        return PF_ENOSPC;
    /* The old table passed probe(); its class is about to pick a free list. */
    uint64_t old = st->table, oldcap = st->cap, mask = newcap - 1;
    unsigned oldcls = old ? block_class(e, cur_size(e), old) : 0;
    if (oldcls == NCLASSES)
        return mark_corrupt(e);
    struct eng_tx *t = tx_begin(stripe_tx(e, st));
    uint64_t b;
    int rc = reserve_locked(e, st, (unsigned)c, t, &b);
    if (rc)
        return rc;
    st_(word(e, b), newcap);
    st_(word(e, b + 8), (uint64_t)c << 32 | KIND_TABLE << 40);
    uint64_t *ns = word(e, b + BLK_HDR);
    for (uint64_t i = 0; i < newcap; i++)
        st_(&ns[i], SLOT_EMPTY);
    /* newcap is at least twice the count, but the count is a word of the
     * segment: each entry moved must leave an empty slot, or the search for
     * a free one below would never end.  (The block stays reserved: the
     * region is marked corrupt for good.) */
    uint64_t moved = 0;
    for (uint64_t i = 0; i < oldcap; i++) {
        uint64_t w = ld(word(e, slot_off(old, i)));
        if (w == SLOT_EMPTY || w == SLOT_TOMB)
            continue;
        if (++moved >= newcap)
            return mark_corrupt(e);
        uint64_t j = (uint32_t)(w >> 32) & mask;
        while (ld(&ns[j]) != SLOT_EMPTY)
            j = (j + 1) & mask;
        st_(&ns[j], w);
    }
    PF__DICT_POINT(PF__DP_REHASH_FILLED);
    tx_put(t, OFF(e, &st->table), b);
    tx_put(t, OFF(e, &st->cap), newcap);
    tx_put(t, OFF(e, &st->tombs), 0);
    if (old)
        tx_free_locked(e, st, t, old, oldcls);
    return publish(e, st, t);
}

static int write_locked(pf__eng *e, struct pf__eng_stripe *st, uint64_t h, const void *key,
                        size_t klen, pf__dict_wop *op)
{
    uint32_t tag = (uint32_t)h;
    struct hit hit;
    uint64_t ins;
    int p = probe(e, cur_size(e), st->table, st->cap, tag, key, klen, &hit, &ins);
    if (p == P_TORN)
        return mark_corrupt(e);
    bool found = p == P_HIT;
    const void *old = found ? e->base + hit.blk + BLK_HDR + pad8(klen) : NULL;
    int d = op->decide(op, old, found ? hit.vlen : 0);
    if (d < 0 || d == PF_DICT_KEEP)
        return d < 0 ? d : 0;
    if (d == PF_DICT_DELETE) {
        if (!found)
            return 0;
        struct eng_tx *t = tx_begin(stripe_tx(e, st));
        tx_put(t, slot_off(st->table, hit.idx), SLOT_TOMB);
        tx_put(t, OFF(e, &st->count), st->count - 1);
        tx_put(t, OFF(e, &st->tombs), st->tombs + 1);
        tx_free_locked(e, st, t, hit.blk, hit.cls);
        return publish(e, st, t);
    }
    PF__CHECK(d == PF_DICT_SET);
    size_t vlen = op->new_len;
    if (vlen > PF_DICT_MAX_VALUE)
        return PF_ETOOBIG;
    if (found && entry_size(klen, vlen) <= class_size(hit.cls) &&
        pad8(vlen) / 8 + (vlen != hit.vlen) <= TX_MAX) {
        /* A small new value that fits the entry's block: overwrite it in place.
         * The commit record carries the new words (copied from new_val before
         * any is applied, so new_val may even point at the old value), so a
         * death half way is finished by the repair like any other commit. */
        struct eng_tx *t = tx_begin(stripe_tx(e, st));
        uint64_t voff = hit.blk + BLK_HDR + pad8(klen);
        for (size_t i = 0; i < vlen; i += 8) {
            uint64_t w = 0;
            memcpy(&w, (const char *)op->new_val + i, PF__MIN((size_t)8, vlen - i));
            tx_put(t, voff + i, w);
        }
        if (vlen != hit.vlen)
            tx_put(t, hit.blk, (uint64_t)klen | (uint64_t)vlen << 32);
        return publish(e, st, t);
    }
    if (!found && (st->cap == 0 || (st->count + st->tombs + 1) * 4 > st->cap * 3)) {
        /* A table never holds MAX_CAP entries (one slot stays empty): a
         * bigger count is a scribble, and would wrap the doubling below. */
        if (st->count >= MAX_CAP)
            return mark_corrupt(e);
        uint64_t newcap = MIN_CAP;
        while (newcap < (st->count + 1) * 2)
            newcap *= 2;
        int rc = rehash_locked(e, st, newcap);
        /* Out of room for a bigger table: a table with two free slots still
         * takes one more entry (one stays empty to end every probe). */
        if (rc && !(rc == PF_ENOSPC && st->cap && st->count + st->tombs + 2 <= st->cap))
            return rc;
        p = probe(e, cur_size(e), st->table, st->cap, tag, key, klen, &hit, &ins);
        if (p != P_MISS || ins == UINT64_MAX)
            return mark_corrupt(e);
    }
    int c = class_of(entry_size(klen, vlen));
    PF__CHECK(c >= 0);
    uint64_t b;
    struct eng_tx *t = tx_begin(stripe_tx(e, st)); /* after the rehash, which has its own */
    int rc = reserve_locked(e, st, (unsigned)c, t, &b);
    if (rc)
        return rc;
    st_(word(e, b), (uint64_t)klen | (uint64_t)vlen << 32);
    st_(word(e, b + 8), tag | (uint64_t)c << 32 | KIND_ENTRY << 40);
    shm_write(word(e, b + BLK_HDR), key, klen);
    shm_write(word(e, b + BLK_HDR + pad8(klen)), op->new_val, vlen);
    PF__DICT_POINT(PF__DP_FILLED);
    uint64_t w = (uint64_t)tag << 32 | b >> 4;
    if (found) {
        tx_put(t, slot_off(st->table, hit.idx), w);
        tx_free_locked(e, st, t, hit.blk, hit.cls);
    } else {
        if (ld(word(e, slot_off(st->table, ins))) == SLOT_TOMB)
            tx_put(t, OFF(e, &st->tombs), st->tombs - 1);
        tx_put(t, slot_off(st->table, ins), w);
        tx_put(t, OFF(e, &st->count), st->count + 1);
    }
    return publish(e, st, t);
}

/* The offset of hash h's home slot in st's table, read without the lock: a
 * hint for prefetching only (table and cap may be changing; then the slot is
 * merely the wrong one).  0 when st has no table (or a scribbled one). */
static inline uint64_t home_slot_hint(const pf__eng *e, const struct pf__eng_stripe *st, uint64_t h)
{
    uint64_t tab = ld(&st->table), cap = ld(&st->cap);
    if (!tab || tab >= e->max_bytes || cap > MAX_CAP)
        return 0;
    return slot_off(tab, (uint32_t)h & (cap - 1));
}

/* Start loading the entry the home slot of hash h points at, if its tag is h's
 * (the slot itself was prefetched a while ago).  The slot is read without the
 * lock: only where this process can see it, and what it says is a hint. */
static inline void prefetch_entry(const pf__eng *e, const struct pf__eng_stripe *st, uint64_t h)
{
    uint64_t off = home_slot_hint(e, st, h);
    if (!off || off + 8 > __atomic_load_n(&e->mapped, __ATOMIC_RELAXED))
        return;
    uint64_t w = ld(word(e, off));
    uint64_t b = (w & 0xffffffffull) << 4;
    if ((uint32_t)(w >> 32) == (uint32_t)h && b < e->max_bytes)
        __builtin_prefetch(e->base + b);
}

/* Start loading hash h's home slot to write it (a prefetch never faults). */
static inline void prefetch_home_to_write(const pf__eng *e, const struct pf__eng_stripe *st,
                                          uint64_t h)
{
    uint64_t off = home_slot_hint(e, st, h);
    if (off)
        __builtin_prefetch(e->base + off, 1);
}

void pf__eng_prefetch(const pf__eng *e, uint64_t h, bool entry)
{
    const struct pf__eng_stripe *st = stripe_for(e, h);
    uint64_t off;
    if (entry)
        prefetch_entry(e, st, h);
    else if ((off = home_slot_hint(e, st, h)) != 0)
        __builtin_prefetch(e->base + off, 0);
}

int pf__eng_write(pf__eng *e, const void *key, size_t klen, pf__dict_wop *op)
{
    uint64_t h = key_hash(e->seed, key, klen);
    struct pf__eng_stripe *st = stripe_for(e, h);
    /* Start loading the key's home slot before the lock, so that its cache miss
     * overlaps the lock's. */
    prefetch_home_to_write(e, st, h);
    int rc = stripe_lock(e, st);
    if (rc)
        return rc;
    PF__DICT_POINT(PF__DP_LOCKED);
    rc = write_locked(e, st, h, key, klen, op);
    int u = stripe_unlock(e, st);
    if (u)
        rc = u;
    if (grow_wanted)
        grow_ahead(e);
    return rc;
}

/* A batch is worked through in windows of BATCH_WINDOW pairs, and each pair's
 * slot (then entry) is prefetched 2 x (then 1 x) PF__ENG_AHEAD pairs before it
 * is used. */
#define BATCH_WINDOW 1024u

/* The window's pairs in stripe order: by the top 8 bits of their hashes
 * (the stripe index when there are at most 256 stripes, its top bits when
 * more), stable, so pairs of one key keep their order.  The order starts at
 * bucket `first` and wraps around: writers on different lanes start a quarter
 * of the stripes apart, so two processes writing batches at once do not walk
 * the stripes in step, each waiting for the lock the other holds. */
static void window_order(const uint64_t *hash, size_t m, unsigned first, uint16_t *order)
{
    uint16_t next[257] = {0};
#define BUCKET(h) ((((unsigned)((h) >> 56)) - first) & 255u)
    for (size_t i = 0; i < m; i++)
        next[BUCKET(hash[i]) + 1]++;
    for (unsigned b = 1; b < 257; b++)
        next[b] = (uint16_t)(next[b] + next[b - 1]);
    for (size_t i = 0; i < m; i++)
        order[next[BUCKET(hash[i])]++] = (uint16_t)i;
#undef BUCKET
}

int pf__eng_write_many(pf__eng *e, const pf_dict_item *items, size_t n, pf__dict_wop *op)
{
    uint64_t hash[BATCH_WINDOW];
    uint16_t order[BATCH_WINDOW];
    int rc = 0;
    for (size_t from = 0; from < n && rc == 0; from += BATCH_WINDOW) {
        const pf_dict_item *it = items + from;
        size_t m = PF__MIN(n - from, (size_t)BATCH_WINDOW);
        for (size_t i = 0; i < m; i++)
            hash[i] = key_hash(e->seed, it[i].key ? it[i].key : "", it[i].klen);
        window_order(hash, m, lane_of(e) * (256u / LANES), order);
        /* The first 2 * PF__ENG_AHEAD home slots now; the loop's prefetches
         * take over from there. */
        for (size_t k = 0; k < m && k < 2 * PF__ENG_AHEAD; k++)
            prefetch_home_to_write(e, stripe_for(e, hash[order[k]]), hash[order[k]]);
        /* One stripe lock held at a time, across the run of pairs in it. */
        struct pf__eng_stripe *held = NULL;
        for (size_t k = 0; k < m; k++) {
            if (k + 2 * PF__ENG_AHEAD < m) {
                uint64_t h2 = hash[order[k + 2 * PF__ENG_AHEAD]];
                prefetch_home_to_write(e, stripe_for(e, h2), h2);
            }
            if (k + PF__ENG_AHEAD < m) {
                uint64_t h1 = hash[order[k + PF__ENG_AHEAD]];
                prefetch_entry(e, stripe_for(e, h1), h1);
            }
            const pf_dict_item *p = &it[order[k]];
            uint64_t h = hash[order[k]];
            struct pf__eng_stripe *st = stripe_for(e, h);
            if (st != held) {
                if (held) {
                    rc = stripe_unlock(e, held);
                    held = NULL;
                    if (rc)
                        break;
                    if (grow_wanted)
                        grow_ahead(e);
                }
                if ((rc = stripe_lock(e, st)) != 0)
                    break;
                held = st;
                PF__DICT_POINT(PF__DP_LOCKED);
            }
            op->new_val = p->val ? p->val : "";
            op->new_len = p->vlen;
            rc = write_locked(e, st, h, p->key ? p->key : "", p->klen, op);
            if (rc)
                break;
        }
        if (held) {
            int u = stripe_unlock(e, held);
            if (u)
                rc = u;
        }
        if (grow_wanted)
            grow_ahead(e);
    }
    return rc;
}

size_t pf__eng_len(pf__eng *e)
{
    size_t n = 0;
    for (unsigned s = 0; s < e->nstripes; s++)
        n += ld(&e->st[s].count);
    return n;
}

/* Free every entry and the table of a stripe, one commit per entry so that a
 * kill leaves a whole (partly cleared) stripe.  Everything is checked before
 * it is freed: a block that is not whole stops the clear (PF_ECORRUPT) before
 * its class picks a free list. */
static int clear_locked(pf__eng *e, struct pf__eng_stripe *st)
{
    uint64_t tab = st->table, cap = st->cap, size = cur_size(e);
    if (!table_ok(e, size, tab, cap))
        return mark_corrupt(e);
    unsigned tcls = tab ? block_class(e, size, tab) : 0;
    if (tcls == NCLASSES)
        return mark_corrupt(e);
    if (!tab)
        return 0;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t w = ld(word(e, slot_off(tab, i)));
        if (w == SLOT_EMPTY || w == SLOT_TOMB)
            continue;
        uint64_t b = (w & 0xffffffffull) << 4, klen, vlen;
        unsigned c;
        if (!entry_ok(e, size, b, &klen, &vlen, &c))
            return mark_corrupt(e);
        struct eng_tx *t = tx_begin(stripe_tx(e, st));
        tx_put(t, slot_off(tab, i), SLOT_TOMB);
        tx_put(t, OFF(e, &st->count), st->count - 1);
        tx_put(t, OFF(e, &st->tombs), st->tombs + 1);
        tx_free_locked(e, st, t, b, c);
        int rc = publish(e, st, t);
        if (rc)
            return rc;
    }
    struct eng_tx *t = tx_begin(stripe_tx(e, st));
    tx_put(t, OFF(e, &st->table), 0);
    tx_put(t, OFF(e, &st->cap), 0);
    tx_put(t, OFF(e, &st->tombs), 0);
    tx_free_locked(e, st, t, tab, tcls);
    return publish(e, st, t);
}

int pf__eng_clear(pf__eng *e)
{
    for (unsigned s = 0; s < e->nstripes; s++) {
        struct pf__eng_stripe *st = &e->st[s];
        int rc = stripe_lock(e, st);
        if (rc)
            return rc;
        rc = clear_locked(e, st);
        int u = stripe_unlock(e, st);
        if (u)
            rc = u;
        if (rc)
            return rc;
    }
    return 0;
}

int pf__eng_copy_stripe(pf__eng *e, unsigned s, pf__eng_emit_fn emit, void *u)
{
    struct pf__eng_stripe *st = &e->st[s];
    int rc = stripe_lock(e, st);
    if (rc)
        return rc;
    uint64_t tab = st->table, cap = st->cap, size = cur_size(e);
    if (!table_ok(e, size, tab, cap))
        rc = mark_corrupt(e);
    for (uint64_t i = 0; tab && i < cap && rc == 0; i++) {
        uint64_t w = ld(word(e, slot_off(tab, i)));
        if (w == SLOT_EMPTY || w == SLOT_TOMB)
            continue;
        uint64_t b = (w & 0xffffffffull) << 4, klen, vlen;
        unsigned c;
        if (!entry_ok(e, size, b, &klen, &vlen, &c)) {
            rc = mark_corrupt(e);
            break;
        }
        rc = emit(u, e->base + b + BLK_HDR, klen, e->base + b + BLK_HDR + pad8(klen), vlen);
    }
    int un = stripe_unlock(e, st);
    return un ? un : rc;
}

/* -------------------------------------------------------------------- repair -- */

/* The global lock's holder died: finish its chunk hand-out if it had committed
 * one.  A half-done growth needs nothing: size is published only after
 * posix_fallocate succeeded, and growing the same range again is harmless. */
static int g_repair(pf__eng *e)
{
    struct pf__eng_hdr *h = e->h;
    __atomic_fetch_add(&h->repairs, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&h->g_tx.state, __ATOMIC_ACQUIRE) == TX_ACTIVE)
        return tx_redo(e, &h->g_tx);
    return 0;
}

/* A stripe's holder died (we hold its lock, not yet consistent).  Finish its
 * commit if it had one active, else undo its block reservation; make the
 * seqlock even.  Idempotent: a repairer killed half way is repaired again. */
static int stripe_repair_locked(pf__eng *e, struct pf__eng_stripe *st)
{
    __atomic_fetch_add(&e->h->repairs, 1, __ATOMIC_RELAXED);
    if (!(ld(&st->seq) & 1))
        seq_begin(st);
    /* The global lock first: the dead holder may have died inside a chunk
     * hand-out, whose record writes this stripe's chunk and pending fields. */
    int rc = g_lock(e);
    if (rc || (rc = g_unlock(e)) != 0)
        return rc;
    PF__DICT_POINT(PF__DP_REPAIR);
    for (unsigned l = 0; l < LANES; l++) { /* at most one is active */
        struct eng_tx *t = &st->lane[l].tx;
        if (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == TX_ACTIVE && (rc = tx_redo(e, t)))
            return rc;
    }
    uint64_t size = cur_size(e);
    uint64_t kind = st->pend_kind, b = st->pend_block, c = st->pend_cls;
    if (kind != PEND_NONE && (c >= NCLASSES || !in_arena(e, size, b, class_size((unsigned)c))))
        return mark_corrupt(e);
    if (kind == PEND_POP) {
        /* The block is still first on its free list (the pop was not
         * committed); put back the link the new contents overwrote. */
        if (st->free_head[c] != b)
            return mark_corrupt(e);
        st_(word(e, b), st->pend_next);
    } else if (kind == PEND_EXACT) {
        /* A chunk of its own, already counted as owned: free it. */
        struct eng_tx *t = tx_begin(stripe_tx(e, st));
        tx_put(t, b + 8, c << 32);
        tx_free_locked(e, st, t, b, (unsigned)c);
        tx_put(t, OFF(e, &st->pend_kind), PEND_NONE);
        if ((rc = tx_commit_locked(e, t, PF__DP_NONE)) != 0)
            return rc;
    }
    crash_order();
    __atomic_store_n(&st->pend_kind, (uint64_t)PEND_NONE, __ATOMIC_RELEASE);
    seq_end(st);
    return 0;
}

/* ------------------------------------------------------------ create / attach -- */

static uint64_t round_up(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

static uint64_t stripes_off(void)
{
    return round_up(sizeof(struct pf__eng_hdr), 64);
}

uint64_t pf__eng_fixed_size(unsigned stripes)
{
    return round_up(stripes_off() + (uint64_t)stripes * sizeof(struct pf__eng_stripe), 4096);
}

size_t pf__eng_header_size(void)
{
    return sizeof(struct pf__eng_hdr);
}

/* false if this system has no robust process-shared mutexes. */
static bool init_mutex(pthread_mutex_t *m, bool pshared)
{
    pthread_mutexattr_t a;
    bool ok = pthread_mutexattr_init(&a) == 0;
    if (ok && pshared)
        ok = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0 &&
             pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0;
    ok = ok && pthread_mutex_init(m, &a) == 0;
    pthread_mutexattr_destroy(&a);
    return ok;
}

int pf__eng_format(pf__eng *e, char *base, uint64_t max_bytes, uint64_t usable, unsigned stripes,
                   int fd, bool pshared, uint64_t nonce, uint64_t seed)
{
    struct pf__eng_hdr *h = (struct pf__eng_hdr *)base;
    e->base = base;
    e->mapped = 0;
    if (!map_upto(e, usable))
        return PF_ENOMEM;
    h->version = ENG_VERSION;
    h->hdr_size = sizeof *h;
    h->stripe_size = sizeof(struct pf__eng_stripe);
    h->nstripes = stripes;
    h->nonce = nonce;
    h->seed = seed;
    h->max_bytes = max_bytes;
    h->stripes_off = stripes_off();
    h->arena_off = pf__eng_fixed_size(stripes);
    h->creator_pid = (uint64_t)getpid();
    h->size = usable;
    h->top = h->arena_off;
    if (!init_mutex(&h->g_mu, pshared) || !init_mutex(&h->grow_mu, pshared))
        return PF_ENOTSUP;
    struct pf__eng_stripe *st = (struct pf__eng_stripe *)(base + h->stripes_off);
    for (unsigned s = 0; s < stripes; s++) {
        if (!init_mutex(&st[s].mu, pshared))
            return PF_ENOTSUP; /* the magic is not written: nobody will use it */
    }
    __atomic_store_n(&h->magic, ENG_MAGIC, __ATOMIC_RELEASE);
    return pf__eng_attach(e, base, fd, pshared, max_bytes, usable);
}

/* The header's layout fields, each loaded once: a copy that cannot change
 * between its check and its use (the segment itself can, under a stray
 * writer: the fields are immutable only by convention). */
struct hdr_snap {
    uint64_t max_bytes, nonce, seed, stripes_off, arena_off, size;
    unsigned nstripes;
};

static int hdr_snapshot(const struct pf__eng_hdr *h, struct hdr_snap *s)
{
    uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    if (magic == 0)
        return PF_EBUSY;
    uint32_t version = ld32(&h->version), hdr_size = ld32(&h->hdr_size);
    uint32_t stripe_size = ld32(&h->stripe_size);
    s->nstripes = ld32(&h->nstripes);
    s->max_bytes = ld(&h->max_bytes);
    s->nonce = ld(&h->nonce);
    s->seed = ld(&h->seed);
    s->stripes_off = ld(&h->stripes_off);
    s->arena_off = ld(&h->arena_off);
    s->size = __atomic_load_n(&h->size, __ATOMIC_ACQUIRE);
    unsigned n = s->nstripes;
    if (magic != ENG_MAGIC || version != ENG_VERSION || hdr_size != sizeof *h ||
        stripe_size != sizeof(struct pf__eng_stripe) || n == 0 || n > 4096 || (n & (n - 1)) ||
        s->stripes_off != stripes_off() || s->arena_off != pf__eng_fixed_size(n) ||
        s->max_bytes % 4096 || s->max_bytes > PF_DICT_LIMIT_MAX_BYTES ||
        s->max_bytes < s->arena_off || s->size < s->arena_off || s->size > s->max_bytes)
        return PF_ECORRUPT;
    return 0;
}

int pf__eng_peek(const void *hdr, uint64_t *max_bytes, uint64_t *nonce, uint64_t *backed)
{
    struct hdr_snap s;
    int rc = hdr_snapshot(hdr, &s);
    if (rc)
        return rc;
    *max_bytes = s.max_bytes;
    *nonce = s.nonce;
    *backed = s.size;
    return 0;
}

int pf__eng_attach(pf__eng *e, char *base, int fd, bool pshared, uint64_t reserved, uint64_t backed)
{
    /* Checked again and used from one copy: the header may have changed
     * since pf__eng_peek, and a max_bytes bigger than the reservation would
     * let this view mprotect past it. */
    if (backed > reserved)
        return PF_ECORRUPT;
    e->base = base; /* e->mapped: 0 in a fresh view, or what format made */
    if (!map_upto(e, backed))
        return PF_ENOMEM;
    struct hdr_snap s;
    if (hdr_snapshot((const struct pf__eng_hdr *)base, &s) != 0 || s.max_bytes != reserved)
        return PF_ECORRUPT;
    e->h = (struct pf__eng_hdr *)base;
    e->max_bytes = s.max_bytes;
    e->fd = fd;
    e->pshared = pshared;
    e->st = (struct pf__eng_stripe *)(base + s.stripes_off);
    e->nstripes = s.nstripes;
    e->sbits = (unsigned)__builtin_ctz(s.nstripes);
    e->seed = s.seed;
    e->arena_off = s.arena_off;
    return 0;
}

/* Local regions are private: a child forked while another thread is inside
 * an operation would get a copy with that operation half done and its lock
 * held by a thread that does not exist there.  So the forking thread freezes
 * every local region before fork() (pthread_atfork, dict.c): `frozen` first,
 * then each stripe lock taken and released in turn, which waits for the
 * operation holding it; any later holder sees `frozen` and backs off
 * (stripe_lock).  One stripe lock at a time (the order rule; ThreadSanitizer
 * also tracks at most 64 held locks).  Then grow_mu and g_mu, held across
 * fork() (order: grow_mu, g_mu; no stripe holder is left to want g_mu).  The
 * copy is taken between operations.  A thread forking from inside
 * pf_dict_update_fn's function would wait for its own stripe: that function
 * must not call the dict, nor fork.  A lock whose bytes a stray write of this
 * process overwrote cannot be taken: the region is marked corrupt (its
 * operations fail from then on) and the fork goes on; fork_held says which
 * of grow_mu and g_mu the thaw lets go. */
void pf__eng_fork_freeze(pf__eng *e)
{
    __atomic_store_n(&e->frozen, 1, __ATOMIC_SEQ_CST);
    for (unsigned s = 0; s < e->nstripes; s++) {
        if (pthread_mutex_lock(&e->st[s].mu) == 0)
            unlock_mutex(e, &e->st[s].mu);
        else
            mark_corrupt(e);
    }
    e->fork_held = 0;
    if (pthread_mutex_lock(&e->h->grow_mu) == 0)
        e->fork_held |= 1;
    if (pthread_mutex_lock(&e->h->g_mu) == 0)
        e->fork_held |= 2;
    if (e->fork_held != 3)
        mark_corrupt(e);
}

static void fork_release(pf__eng *e)
{
    if (e->fork_held & 2)
        unlock_mutex(e, &e->h->g_mu);
    if (e->fork_held & 1)
        unlock_mutex(e, &e->h->grow_mu);
    e->fork_held = 0;
}

/* After fork(), in the parent. */
void pf__eng_fork_thaw(pf__eng *e)
{
    fork_release(e);
    __atomic_store_n(&e->frozen, 0, __ATOMIC_RELEASE);
}

/* After fork(), in the child.  The forking thread, the child's only one,
 * holds grow_mu and g_mu: it lets them go.  The stripe locks are made anew:
 * no operation was in progress, but a thread of the parent may have been
 * inside stripe_lock's back-off, holding a stripe's mutex for the moment it
 * takes to see `frozen` and let go, and the child would keep it held by a
 * thread it does not have. */
void pf__eng_fork_thaw_child(pf__eng *e)
{
    fork_release(e);
    for (unsigned s = 0; s < e->nstripes; s++)
        PF__CHECK(init_mutex(&e->st[s].mu, false));
    __atomic_store_n(&e->frozen, 0, __ATOMIC_RELEASE);
}

void pf__eng_fini_locks(pf__eng *e)
{
    for (unsigned s = 0; s < e->nstripes; s++)
        pthread_mutex_destroy(&e->st[s].mu);
    pthread_mutex_destroy(&e->h->g_mu);
    pthread_mutex_destroy(&e->h->grow_mu);
}

uint64_t pf__eng_nonce(const pf__eng *e)
{
    return e->h->nonce;
}

void pf__eng_set_destroyed(pf__eng *e)
{
    __atomic_store_n(&e->h->destroyed, 1u, __ATOMIC_RELEASE);
}

bool pf__eng_destroyed(const pf__eng *e)
{
    return __atomic_load_n(&e->h->destroyed, __ATOMIC_ACQUIRE) != 0;
}

bool pf__eng_corrupt(const pf__eng *e)
{
    return __atomic_load_n(&e->h->corrupt, __ATOMIC_ACQUIRE) != 0;
}

bool pf__eng_keep_mapped(const pf__eng *e)
{
    return e->pshared && __atomic_load_n(&e->lock_broken, __ATOMIC_ACQUIRE) != 0;
}

unsigned pf__eng_stripe_of(const pf__eng *e, const void *key, size_t klen)
{
    return (unsigned)(stripe_for(e, key_hash(e->seed, key, klen)) - e->st);
}

unsigned pf__eng_lane(const pf__eng *e)
{
    return lane_of(e);
}

uint64_t pf__eng_grows(const pf__eng *e)
{
    return __atomic_load_n(&e->h->grows, __ATOMIC_RELAXED);
}

uint64_t pf__eng_repairs(const pf__eng *e)
{
    return __atomic_load_n(&e->h->repairs, __ATOMIC_RELAXED);
}

uint64_t *pf__eng_word_for_tests(pf__eng *e, enum pf__eng_word w, unsigned s, unsigned idx)
{
    struct pf__eng_stripe *st = &e->st[s % e->nstripes];
    switch (w) {
    case PF__EW_TOP:
        return &e->h->top;
    case PF__EW_SIZE:
        return &e->h->size;
    case PF__EW_TABLE:
        return &st->table;
    case PF__EW_CAP:
        return &st->cap;
    case PF__EW_COUNT:
        return &st->count;
    case PF__EW_TOMBS:
        return &st->tombs;
    case PF__EW_OWNED:
        return &st->owned;
    case PF__EW_CHUNK_CUR:
        return &st->lane[idx % LANES].chunk_cur;
    case PF__EW_CHUNK_END:
        return &st->lane[idx % LANES].chunk_end;
    case PF__EW_FREE_HEAD:
        return idx < NCLASSES ? &st->free_head[idx] : NULL;
    case PF__EW_TX:
        return &st->lane[idx % LANES].tx.state;
    case PF__EW_STRIPE_LOCK:
        return (uint64_t *)(void *)&st->mu;
    case PF__EW_GLOBAL_LOCK:
        return (uint64_t *)(void *)&e->h->g_mu;
    case PF__EW_ENTRY_META:
        for (uint64_t i = 0; st->table && i < st->cap; i++) {
            uint64_t sl = ld(word(e, slot_off(st->table, i)));
            if (sl != SLOT_EMPTY && sl != SLOT_TOMB)
                return word(e, ((sl & 0xffffffffull) << 4) + 8);
        }
        return NULL;
    }
    return NULL;
}

uint64_t pf__eng_used(const pf__eng *e)
{
    return __atomic_load_n(&e->h->top, __ATOMIC_RELAXED) - e->arena_off;
}

uint64_t pf__eng_size(const pf__eng *e)
{
    return __atomic_load_n(&e->h->size, __ATOMIC_ACQUIRE);
}

/* --------------------------------------------------------------------- check -- */

struct region {
    uint64_t off, len;
};

struct chk {
    pf__eng *e;
    char *msg;
    size_t cap;
    struct region *r;
    size_t nr, rcap;
    uint64_t top;
};

static int chk_fail(struct chk *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int chk_fail(struct chk *k, const char *fmt, ...)
{
    if (k->msg && k->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(k->msg, k->cap, fmt, ap);
        va_end(ap);
    }
    return PF_ECORRUPT;
}

static int chk_region(struct chk *k, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    if (k->nr == k->rcap) {
        size_t nc = k->rcap ? k->rcap * 2 : 1024;
        struct region *r = realloc(k->r, nc * sizeof *r);
        if (!r)
            return PF_ENOMEM;
        k->r = r;
        k->rcap = nc;
    }
    k->r[k->nr].off = off;
    k->r[k->nr].len = len;
    k->nr++;
    return 0;
}

static int cmp_region(const void *a, const void *b)
{
    const struct region *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Check block b of class field c lies in the arena; add it to the regions. */
static int chk_block(struct chk *k, unsigned s, uint64_t b, const char *what, unsigned *cls)
{
    pf__eng *e = k->e;
    if (!in_arena(e, k->top, b, BLK_HDR))
        return chk_fail(k, "stripe %u: %s block %#llx outside the arena", s, what,
                        (unsigned long long)b);
    unsigned c = (unsigned)((ld(word(e, b + 8)) >> 32) & 0xff);
    if (c >= NCLASSES || !in_arena(e, k->top, b, class_size(c)))
        return chk_fail(k, "stripe %u: %s block %#llx has a bad class %u", s, what,
                        (unsigned long long)b, c);
    *cls = c;
    return chk_region(k, b, class_size(c));
}

static int chk_stripe(struct chk *k, unsigned s)
{
    pf__eng *e = k->e;
    struct pf__eng_stripe *st = &e->st[s];
    uint64_t bytes = 0; /* bytes of blocks this stripe owns */
    unsigned c;
    int rc;
    if (st->seq & 1)
        return chk_fail(k, "stripe %u: seqlock odd while unlocked", s);
    bool active = false;
    for (unsigned l = 0; l < LANES; l++)
        active = active || st->lane[l].tx.state != TX_IDLE;
    if (active || st->pend_kind != PEND_NONE)
        return chk_fail(k, "stripe %u: unfinished commit or reservation", s);
    uint64_t chunks = 0; /* bytes left in the lanes' bump chunks */
    for (unsigned l = 0; l < LANES; l++) {
        uint64_t cur = st->lane[l].chunk_cur, end = st->lane[l].chunk_end;
        if (cur > end || (end && (cur < e->arena_off || end > k->top)))
            return chk_fail(k, "stripe %u: bad chunk [%#llx, %#llx) in lane %u", s,
                            (unsigned long long)cur, (unsigned long long)end, l);
        if ((rc = chk_region(k, cur, end - cur)))
            return rc;
        chunks += end - cur;
    }
    uint64_t tab = st->table, cap = st->cap, used = 0, tombs = 0;
    if (tab) {
        if (cap < MIN_CAP || cap > MAX_CAP || (cap & (cap - 1)))
            return chk_fail(k, "stripe %u: bad table size %llu", s, (unsigned long long)cap);
        if ((rc = chk_block(k, s, tab, "table", &c)))
            return rc;
        if (class_size(c) < BLK_HDR + cap * 8 || ld(word(e, tab)) != cap)
            return chk_fail(k, "stripe %u: table block too small for %llu slots", s,
                            (unsigned long long)cap);
        bytes += class_size(c);
        bool empty_seen = false;
        for (uint64_t i = 0; i < cap; i++) {
            uint64_t w = ld(word(e, slot_off(tab, i)));
            if (w == SLOT_EMPTY) {
                empty_seen = true;
                continue;
            }
            if (w == SLOT_TOMB) {
                tombs++;
                continue;
            }
            used++;
            uint64_t b = (w & 0xffffffffull) << 4;
            if ((rc = chk_block(k, s, b, "entry", &c)))
                return rc;
            bytes += class_size(c);
            uint64_t w0 = ld(word(e, b)), klen = w0 & 0xffffffffull, vlen = w0 >> 32;
            if (klen > PF_DICT_MAX_KEY || vlen > PF_DICT_MAX_VALUE ||
                entry_size(klen, vlen) > class_size(c))
                return chk_fail(k, "stripe %u slot %llu: bad lengths %llu/%llu", s,
                                (unsigned long long)i, (unsigned long long)klen,
                                (unsigned long long)vlen);
            const void *key = e->base + b + BLK_HDR;
            uint64_t h = key_hash(e->seed, key, klen);
            if ((uint32_t)h != (uint32_t)(w >> 32) || (uint32_t)ld(word(e, b + 8)) != (uint32_t)h)
                return chk_fail(k, "stripe %u slot %llu: tag does not match the key's hash", s,
                                (unsigned long long)i);
            if (stripe_for(e, h) != st)
                return chk_fail(k, "stripe %u slot %llu: key belongs to another stripe", s,
                                (unsigned long long)i);
            struct hit hit;
            if (probe(e, k->top, tab, cap, (uint32_t)h, key, klen, &hit, NULL) != P_HIT ||
                hit.idx != i)
                return chk_fail(k, "stripe %u slot %llu: lookup does not find this entry", s,
                                (unsigned long long)i);
        }
        if (!empty_seen)
            return chk_fail(k, "stripe %u: table has no empty slot", s);
    } else if (cap != 0) {
        return chk_fail(k, "stripe %u: no table but size %llu", s, (unsigned long long)cap);
    }
    if (used != st->count || tombs != st->tombs)
        return chk_fail(k, "stripe %u: counts %llu/%llu, table holds %llu/%llu", s,
                        (unsigned long long)st->count, (unsigned long long)st->tombs,
                        (unsigned long long)used, (unsigned long long)tombs);
    /* The free lists: each walk is bounded by what no scribble can raise,
     * the blocks of its class that fit below top (owned is a word of the
     * segment too), and finds a cycle within twice its length (Brent: the
     * walk compares each block with one it saved, saving anew at each power
     * of two), before a long walk through it fills the region list. */
    uint64_t room = PF__MIN(st->owned, k->top - e->arena_off);
    for (unsigned fc = 0; fc < NCLASSES; fc++) {
        uint64_t limit = room / class_size(fc), n = 0, saved = 0, span = 1;
        for (uint64_t b = st->free_head[fc]; b; b = ld(word(e, b))) {
            if (b == saved || ++n > limit)
                return chk_fail(k, "stripe %u: free list %u loops", s, fc);
            if (n == span) {
                saved = b;
                span *= 2;
            }
            if ((rc = chk_block(k, s, b, "free", &c)))
                return rc;
            if (c != fc)
                return chk_fail(k, "stripe %u: block of class %u on free list %u", s, c, fc);
            bytes += class_size(c);
        }
    }
    if (bytes + st->wasted + chunks != st->owned)
        return chk_fail(k,
                        "stripe %u: owns %llu bytes but accounts for %llu (blocks) + %llu "
                        "(chunk tails) + %llu (chunks)",
                        s, (unsigned long long)st->owned, (unsigned long long)bytes,
                        (unsigned long long)st->wasted, (unsigned long long)chunks);
    return 0;
}

/* The check needs no moment where every lock is held.  Each stripe is checked
 * whole under its own lock.  Chunks are handed to one stripe for good and never
 * reused, so blocks of different stripes may not overlap whenever each was
 * seen; and `owned` changes only under the global lock, which is enough to
 * compare the stripes' sum with the arena's top. */
int pf__eng_check(pf__eng *e, char *msg, size_t msg_cap)
{
    struct chk k = {.e = e, .msg = msg, .cap = msg_cap};
    struct pf__eng_hdr *h = e->h;
    int rc = 0;
    set_msg(msg, msg_cap, "ok");
    for (unsigned s = 0; s < e->nstripes; s++) {
        if ((rc = stripe_lock(e, &e->st[s]))) {
            chk_fail(&k, "stripe %u: cannot be locked or repaired", s);
            goto out;
        }
        /* top first: it only grows, and never past size, which only grows
         * too; loaded the other way round, writers of other stripes could
         * move top past the size loaded first. */
        k.top = ld(&h->top);         /* no chunk of this stripe can be above it */
        uint64_t size = cur_size(e); /* the view covers top */
        if (k.top < e->arena_off || k.top > size) {
            rc = chk_fail(&k, "header: top %#llx outside the arena [%#llx, %#llx]",
                          (unsigned long long)k.top, (unsigned long long)e->arena_off,
                          (unsigned long long)size);
            stripe_unlock(e, &e->st[s]); /* reports nothing more */
            goto out;
        }
        rc = chk_stripe(&k, s);
        int u = stripe_unlock(e, &e->st[s]);
        if (u && !rc)
            rc = chk_fail(&k, "stripe %u: its lock was overwritten while held", s);
        if (rc)
            goto out;
    }
    if ((rc = g_lock(e))) {
        chk_fail(&k, "global lock cannot be locked or repaired");
        goto out;
    }
    k.top = h->top;
    uint64_t size = ld(&h->size), owned = 0;
    for (unsigned s = 0; s < e->nstripes; s++)
        owned += e->st[s].owned;
    if (h->g_tx.state != TX_IDLE || k.top < e->arena_off || k.top > size || size > e->max_bytes)
        rc = chk_fail(&k, "header: top %#llx, size %#llx, max %#llx", (unsigned long long)k.top,
                      (unsigned long long)size, (unsigned long long)e->max_bytes);
    else if (owned != k.top - e->arena_off)
        rc = chk_fail(&k, "stripes own %llu bytes, the arena handed out %llu",
                      (unsigned long long)owned, (unsigned long long)(k.top - e->arena_off));
    if (g_unlock(e) && !rc)
        rc = chk_fail(&k, "global lock overwritten while held");
    if (rc)
        goto out;
    struct stat sb;
    if (e->fd >= 0 && (fstat(e->fd, &sb) != 0 || (uint64_t)sb.st_size < size)) {
        rc = chk_fail(&k, "the segment is smaller than its published size %llu",
                      (unsigned long long)size);
        goto out;
    }
    if (k.nr)
        qsort(k.r, k.nr, sizeof *k.r, cmp_region);
    for (size_t i = 1; i < k.nr; i++) {
        if (k.r[i - 1].off + k.r[i - 1].len > k.r[i].off) {
            rc = chk_fail(&k, "blocks overlap at %#llx", (unsigned long long)k.r[i].off);
            goto out;
        }
    }
out:
    if (rc == PF_ENOMEM)
        set_msg(msg, msg_cap, "out of memory while checking");
    free(k.r);
    return rc;
}
