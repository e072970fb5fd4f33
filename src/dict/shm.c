/*
 * The local and shared-memory backends: where the engine's region lives.
 *
 * shm:   a POSIX shm object "/pfor-dict-<name>", created with O_EXCL and mode
 *        0600, grown with posix_fallocate.  Every process maps the whole
 *        reservation (opts.max_bytes) once, MAP_SHARED and PROT_NONE, so the
 *        region never moves; the engine makes the backed part accessible as it
 *        learns the published size, and checks every offset against that size.
 *        Opening checks the owner, the mode and the header before trusting
 *        anything in it.
 * local: the same region in private anonymous memory: PROT_NONE reserved,
 *        made readable and writable with mprotect as it grows.
 *
 * The operations are the engine's, through the decisions below.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dict/dict_internal.h"
#include "dict/engine.h"

#define SHM_PREFIX      "/pfor-dict-"
#define DEFAULT_STRIPES 256u
#define MAX_STRIPES     4096u
#define ARENA_FIRST     (64ull << 10) /* arena bytes backed at creation */

struct eng_dict {
    struct pf_dict base;
    pf__eng eng;     /* immutable after open */
    int fd;          /* immutable: shm object, or -1 (local) */
    bool owner;      /* immutable: this handle created the shm object */
    pid_t owner_pid; /* immutable: the process whose close unlinks it */
    dev_t dev;       /* immutable: identity of the object, to unlink only our own */
    ino_t ino;
};

static const pf__dict_ops eng_ops;

/* How long an opener waits for a creator to finish the header (tests shorten it). */
uint64_t pf__dict_open_wait_ns = 2000000000ull;

static struct eng_dict *ed(pf_dict *d)
{
    return (struct eng_dict *)d;
}

pf__eng *pf__dict_engine(pf_dict *d)
{
    if (!d || (d->backend != PF_DICT_LOCAL && d->backend != PF_DICT_SHM))
        return NULL;
    return &ed(d)->eng;
}

/* ----------------------------------------------------------------- options -- */

static int resolve_opts(const pf_dict_opts *o, unsigned *stripes, uint64_t *max_bytes)
{
    *stripes = o && o->stripes ? o->stripes : DEFAULT_STRIPES;
    if (*stripes > MAX_STRIPES || (*stripes & (*stripes - 1)))
        return PF_EINVAL;
    uint64_t m = o && o->max_bytes ? o->max_bytes : PF_DICT_DEFAULT_MAX_BYTES;
    if (m > PF_DICT_LIMIT_MAX_BYTES)
        return PF_EINVAL;
    m = (m + 4095) & ~4095ull;
    if (m < pf__eng_fixed_size(*stripes) + ARENA_FIRST)
        return PF_EINVAL;
    *max_bytes = m;
    return 0;
}

static void random_words(uint64_t *a, uint64_t *b)
{
    uint64_t w[2] = {0, 0};
    if (getrandom(w, sizeof w, 0) != (ssize_t)sizeof w) {
        /* No entropy source: fall back to what differs between processes. */
        w[0] = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&w ^ 0x9e3779b97f4a7c15ull;
        w[1] = w[0] * 0xff51afd7ed558ccdull + (uint64_t)time(NULL);
    }
    *a = w[0] | 1; /* a nonce is never 0 */
    *b = w[1];
}

static struct eng_dict *new_handle(pf_dict_backend b)
{
    struct eng_dict *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->base.ops = &eng_ops;
    d->base.backend = b;
    atomic_init(&d->base.refs, 1);
    d->fd = -1;
    return d;
}

/* ------------------------------------------------------------------- local -- */

int pf__dict_local_open(pf_dict **out, const pf_dict_opts *opts)
{
    unsigned stripes;
    uint64_t max_bytes;
    int rc = resolve_opts(opts, &stripes, &max_bytes);
    if (rc)
        return rc;
    struct eng_dict *d = new_handle(PF_DICT_LOCAL);
    if (!d)
        return PF_ENOMEM;
    uint64_t usable = pf__eng_fixed_size(stripes) + ARENA_FIRST;
    /* Reserved inaccessible: the engine makes it accessible (committing memory)
     * as it grows. */
    char *base =
        mmap(NULL, max_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        free(d);
        return PF_ENOMEM;
    }
    uint64_t nonce, seed;
    random_words(&nonce, &seed);
    rc = pf__eng_format(&d->eng, base, max_bytes, usable, stripes, -1, false, nonce, seed);
    if (rc) {
        munmap(base, max_bytes);
        free(d);
        return rc;
    }
    rc = pf__dict_local_register(&d->base);
    if (rc) {
        pf__eng_fini_locks(&d->eng);
        munmap(base, max_bytes);
        free(d);
        return rc;
    }
    *out = &d->base;
    return 0;
}

/* --------------------------------------------------------------------- shm -- */

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > PF_DICT_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void shm_path(char *path, size_t cap, const char *name)
{
    snprintf(path, cap, "%s%s", SHM_PREFIX, name);
}

static int map_errno(int err)
{
    switch (err) {
    case ENOENT:
        return PF_ENOTFOUND;
    case EEXIST:
        return PF_EEXIST;
    case EACCES:
    case EPERM:
        return PF_EPERM;
    case ENOSPC:
    case EFBIG:
        return PF_ENOSPC;
    case ENOMEM:
        return PF_ENOMEM;
    case EINVAL:
    case ENAMETOOLONG:
        return PF_EINVAL;
    default:
        return PF_ESYS;
    }
}

/* Open an existing name.  O_NOFOLLOW (glibc's shm_open adds it too); O_NONBLOCK makes a
 * FIFO someone put under the name (/dev/shm is world-writable) open at once
 * instead of waiting for a writer, so check_owner can refuse it.  What is not a
 * segment at all is PF_EPERM too: a symlink (ELOOP), a directory (EISDIR, which
 * glibc reports as EINVAL; the name itself was validated), a socket (ENXIO). */
static int open_existing(const char *path, int flags, int *fd)
{
    *fd = shm_open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (*fd >= 0)
        return 0;
    if (errno == ELOOP || errno == EISDIR || errno == EINVAL || errno == ENXIO)
        return PF_EPERM;
    return map_errno(errno);
}

/* Refuse what this user did not create privately: another owner, a looser mode,
 * anything but a plain file.  one_name: also a segment with a second name (a
 * hard link, which another user may make to any file where
 * fs.protected_hardlinks is 0): a dict is created under one name only, so an
 * open must not be led to another of this user's dicts. */
static int check_owner(int fd, struct stat *sb, bool one_name)
{
    if (fstat(fd, sb) != 0)
        return PF_ESYS;
    if (!S_ISREG(sb->st_mode) || sb->st_uid != geteuid() || (sb->st_mode & 07777) != 0600 ||
        (one_name && sb->st_nlink > 1))
        return PF_EPERM;
    /* No name left: removed since shm_open, as if it had not been there. */
    return one_name && sb->st_nlink == 0 ? PF_ENOTFOUND : 0;
}

static void unlink_if_ours(const char *path, dev_t dev, ino_t ino)
{
    int fd;
    if (open_existing(path, O_RDONLY, &fd) != 0)
        return;
    struct stat sb;
    bool same = fstat(fd, &sb) == 0 && sb.st_dev == dev && sb.st_ino == ino;
    close(fd);
    if (same)
        shm_unlink(path);
}

int pf__dict_shm_create(pf_dict **out, const char *name, const pf_dict_opts *opts)
{
    static atomic_uint counter;
    char gen[64], path[PF_DICT_MAX_NAME + 32];
    unsigned stripes;
    uint64_t max_bytes, nonce, seed;
    int rc = resolve_opts(opts, &stripes, &max_bytes);
    if (rc)
        return rc;
    random_words(&nonce, &seed);
    if (!name) {
        snprintf(gen, sizeof gen, "anon-%d-%u-%08x", (int)getpid(),
                 atomic_fetch_add(&counter, 1) + 1, (unsigned)(nonce >> 32));
        name = gen;
    } else if (!name_ok(name)) {
        return PF_EINVAL;
    }
    shm_path(path, sizeof path, name);
    struct eng_dict *d = new_handle(PF_DICT_SHM);
    if (!d)
        return PF_ENOMEM;
    pf__strlcpy(d->base.name, name, sizeof d->base.name);
    char *base = MAP_FAILED;
    /* O_EXCL: a name someone else created (or pre-created to hijack it) is
     * refused, never reused. */
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = map_errno(errno);
        free(d);
        return rc;
    }
    struct stat sb;
    if (fchmod(fd, 0600) != 0 || fstat(fd, &sb) != 0) {
        rc = PF_ESYS;
        goto fail;
    }
    d->dev = sb.st_dev;
    d->ino = sb.st_ino;
    uint64_t usable = pf__eng_fixed_size(stripes) + ARENA_FIRST;
    int err;
    do
        err = posix_fallocate(fd, 0, (off_t)usable);
    while (err == EINTR);
    if (err) {
        rc = (err == ENOMEM || err == ENOSPC || err == EFBIG) ? PF_ENOSPC : PF_ESYS;
        goto fail;
    }
    /* The whole reservation, inaccessible past what is backed: it never moves. */
    base = mmap(NULL, max_bytes, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
        rc = PF_ENOMEM;
        goto fail;
    }
    rc = pf__eng_format(&d->eng, base, max_bytes, usable, stripes, fd, true, nonce, seed);
    if (rc)
        goto fail;
    d->fd = fd;
    d->owner = true;
    d->owner_pid = getpid();
    *out = &d->base;
    return 0;
fail:
    if (base != MAP_FAILED)
        munmap(base, max_bytes);
    /* Our file, unless the name was removed and taken again meanwhile: once
     * its identity is known, only the same file's name goes. */
    if (d->ino)
        unlink_if_ours(path, d->dev, d->ino);
    else
        shm_unlink(path);
    close(fd);
    free(d);
    return rc;
}

/* Wait (bounded) until the creator has written the header, then validate it. */
static int peek_header(int fd, const struct stat *sb0, uint64_t *max_bytes, uint64_t *nonce,
                       uint64_t *backed)
{
    uint64_t deadline = pf__now_ns() + pf__dict_open_wait_ns;
    size_t hsz = (pf__eng_header_size() + 4095) & ~(size_t)4095;
    struct stat sb = *sb0;
    for (;;) {
        int rc = PF_EBUSY;
        if ((uint64_t)sb.st_size >= hsz) {
            void *p = mmap(NULL, hsz, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED)
                return PF_ENOMEM;
            rc = pf__eng_peek(p, max_bytes, nonce, backed);
            munmap(p, hsz);
        }
        if (rc == 0) {
            /* The size is published after the file grew: the file, looked at
             * now, is at least that big (unless someone truncated it). */
            if (fstat(fd, &sb) != 0)
                return PF_ESYS;
            return (uint64_t)sb.st_size < *backed ? PF_ECORRUPT : 0;
        }
        if (rc != PF_EBUSY)
            return rc;
        if (pf__now_ns() > deadline)
            return PF_EBUSY;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        if (fstat(fd, &sb) != 0)
            return PF_ESYS;
    }
}

int pf__dict_shm_open(pf_dict **out, const char *name, const unsigned char want_nonce[8])
{
    char path[PF_DICT_MAX_NAME + 32];
    if (!name_ok(name))
        return PF_EINVAL;
    shm_path(path, sizeof path, name);
    int fd;
    int rc = open_existing(path, O_RDWR, &fd);
    if (rc)
        return rc;
    struct eng_dict *d = NULL;
    struct stat sb;
    uint64_t max_bytes, nonce, backed;
    rc = check_owner(fd, &sb, true);
    if (rc)
        goto fail;
    rc = peek_header(fd, &sb, &max_bytes, &nonce, &backed);
    if (rc)
        goto fail;
    if (want_nonce) {
        uint64_t w;
        memcpy(&w, want_nonce, 8);
        if (w != nonce) {
            rc = PF_ENOTFOUND; /* the name now belongs to another dict */
            goto fail;
        }
    }
    d = new_handle(PF_DICT_SHM);
    if (!d) {
        rc = PF_ENOMEM;
        goto fail;
    }
    char *base = mmap(NULL, max_bytes, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
        rc = PF_ENOMEM;
        goto fail;
    }
    pf__strlcpy(d->base.name, name, sizeof d->base.name);
    rc = pf__eng_attach(&d->eng, base, fd, true, max_bytes, backed);
    /* Its owner closed it (and was killed before it removed the name, or is
     * removing it now): it is gone, as it is once the name is. */
    if (rc == 0 && pf__eng_destroyed(&d->eng))
        rc = PF_ENOTFOUND;
    if (rc) {
        munmap(base, max_bytes);
        goto fail;
    }
    d->fd = fd;
    d->dev = sb.st_dev;
    d->ino = sb.st_ino;
    *out = &d->base;
    return 0;
fail:
    free(d);
    close(fd);
    return rc;
}

int pf__dict_shm_remove(const char *name)
{
    char path[PF_DICT_MAX_NAME + 32];
    if (!name_ok(name))
        return PF_EINVAL;
    shm_path(path, sizeof path, name);
    int fd;
    int rc = open_existing(path, O_RDONLY, &fd);
    if (rc)
        return rc;
    struct stat sb;
    rc = check_owner(fd, &sb, false); /* an extra name of ours may be removed */
    close(fd);
    if (rc)
        return rc;
    if (shm_unlink(path) != 0)
        return map_errno(errno);
    return 0;
}

static void eng_destroy(pf_dict *bd)
{
    struct eng_dict *d = ed(bd);
    if (d->base.backend == PF_DICT_LOCAL) {
        pf__eng_fini_locks(&d->eng);
    } else if (d->owner && d->owner_pid == getpid()) {
        /* The owner's close: mark it destroyed (cached handles elsewhere notice)
         * and remove the name, if it is still ours. */
        char path[PF_DICT_MAX_NAME + 32];
        pf__eng_set_destroyed(&d->eng);
        shm_path(path, sizeof path, d->base.name);
        unlink_if_ours(path, d->dev, d->ino);
    }
    /* A lock of the region was overwritten while this process held it: a
     * thread's robust list may still lead into the region (see
     * pf__eng_keep_mapped), so its address space stays taken. */
    if (!pf__eng_keep_mapped(&d->eng))
        munmap(d->eng.base, d->eng.max_bytes);
    if (d->fd >= 0)
        close(d->fd);
    free(d);
}

/* --------------------------------------------------------------- decisions -- */

static int decide_set(pf__dict_wop *op, const void *old, size_t old_len)
{
    (void)op;
    (void)old;
    (void)old_len;
    return PF_DICT_SET;
}

static int decide_del(pf__dict_wop *op, const void *old, size_t old_len)
{
    (void)op;
    (void)old_len;
    return old ? PF_DICT_DELETE : PF_ENOTFOUND;
}

struct op_incr {
    pf__dict_wop w;
    int64_t delta, result;
    char buf[24];
};

static int decide_incr(pf__dict_wop *op, const void *old, size_t old_len)
{
    struct op_incr *o = (struct op_incr *)op;
    int rc = pf__dict_incr_value(old, old_len, o->delta, o->buf, &o->w.new_len, &o->result);
    o->w.new_val = o->buf;
    return rc ? rc : PF_DICT_SET;
}

struct op_cas {
    pf__dict_wop w;
    const void *exp;
    size_t elen;
    bool swapped;
};

static int decide_cas(pf__dict_wop *op, const void *old, size_t old_len)
{
    struct op_cas *o = (struct op_cas *)op;
    bool match = o->exp ? old && old_len == o->elen && memcmp(old, o->exp, o->elen) == 0 : !old;
    o->swapped = match;
    if (!match)
        return PF_DICT_KEEP;
    if (!o->w.new_val)
        return old ? PF_DICT_DELETE : PF_DICT_KEEP;
    return PF_DICT_SET;
}

struct op_goi {
    pf__dict_wop w;
    void **cur;
    size_t *cur_len;
    bool inserted;
};

static int copy_out(void **cur, size_t *cur_len, const void *p, size_t n)
{
    if (cur) {
        *cur = malloc(n ? n : 1);
        if (!*cur)
            return PF_ENOMEM;
        memcpy(*cur, p, n);
    }
    if (cur_len)
        *cur_len = n;
    return 0;
}

static int decide_goi(pf__dict_wop *op, const void *old, size_t old_len)
{
    struct op_goi *o = (struct op_goi *)op;
    o->inserted = !old;
    int rc = old ? copy_out(o->cur, o->cur_len, old, old_len)
                 : copy_out(o->cur, o->cur_len, o->w.new_val, o->w.new_len);
    if (rc)
        return rc;
    return old ? PF_DICT_KEEP : PF_DICT_SET;
}

struct op_fn {
    pf__dict_wop w;
    pf_dict_update_cb fn;
    void *arg;
};

static int decide_fn(pf__dict_wop *op, const void *old, size_t old_len)
{
    struct op_fn *o = (struct op_fn *)op;
    const void *nv = NULL;
    size_t nl = 0;
    int r = o->fn(o->arg, old, old_len, &nv, &nl);
    if (r < 0)
        return r;
    switch (r) {
    case PF_DICT_KEEP:
        return PF_DICT_KEEP;
    case PF_DICT_DELETE:
        return old ? PF_DICT_DELETE : PF_DICT_KEEP;
    case PF_DICT_SET:
        if (!nv && nl)
            return PF_EINVAL;
        if (nl > PF_DICT_MAX_VALUE)
            return PF_ETOOBIG;
        o->w.new_val = nv ? nv : "";
        o->w.new_len = nl;
        return PF_DICT_SET;
    default:
        return PF_EINVAL;
    }
}

/* -------------------------------------------------------------- operations -- */

static int eng_set(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen)
{
    pf__dict_wop op = {decide_set, val, vlen};
    return pf__eng_write(&ed(d)->eng, key, klen, &op);
}

static int eng_get(pf_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
                   void **alloc)
{
    return pf__eng_get(&ed(d)->eng, key, klen, buf, cap, vlen, alloc);
}

static int eng_del(pf_dict *d, const void *key, size_t klen)
{
    pf__dict_wop op = {decide_del, NULL, 0};
    return pf__eng_write(&ed(d)->eng, key, klen, &op);
}

static int eng_len(pf_dict *d, size_t *out)
{
    if (pf__eng_corrupt(&ed(d)->eng))
        return PF_ECORRUPT; /* *out stays 0 */
    *out = pf__eng_len(&ed(d)->eng);
    return 0;
}

static int eng_clear(pf_dict *d)
{
    return pf__eng_clear(&ed(d)->eng);
}

static int eng_incr(pf_dict *d, const void *key, size_t klen, int64_t delta, int64_t *out)
{
    struct op_incr op = {.w = {decide_incr, NULL, 0}, .delta = delta};
    int rc = pf__eng_write(&ed(d)->eng, key, klen, &op.w);
    if (rc == 0 && out)
        *out = op.result;
    return rc;
}

static int eng_cas(pf_dict *d, const void *key, size_t klen, const void *expected, size_t elen,
                   const void *desired, size_t dlen, bool *swapped)
{
    struct op_cas op = {.w = {decide_cas, desired, dlen}, .exp = expected, .elen = elen};
    int rc = pf__eng_write(&ed(d)->eng, key, klen, &op.w);
    if (rc == 0 && swapped)
        *swapped = op.swapped;
    return rc;
}

static int eng_goi(pf_dict *d, const void *key, size_t klen, const void *val, size_t vlen,
                   void **cur, size_t *cur_len, bool *inserted)
{
    struct op_goi op = {.w = {decide_goi, val, vlen}, .cur = cur, .cur_len = cur_len};
    int rc = pf__eng_write(&ed(d)->eng, key, klen, &op.w);
    if (rc == 0) {
        if (inserted)
            *inserted = op.inserted;
    } else if (cur && *cur) {
        free(*cur); /* copied before a write that then failed */
        *cur = NULL;
    }
    return rc;
}

static int eng_update_fn(pf_dict *d, const void *key, size_t klen, pf_dict_update_cb fn, void *arg)
{
    struct op_fn op = {.w = {decide_fn, NULL, 0}, .fn = fn, .arg = arg};
    return pf__eng_write(&ed(d)->eng, key, klen, &op.w);
}

static int eng_set_many(pf_dict *d, const pf_dict_item *items, size_t n)
{
    pf__dict_wop op = {decide_set, NULL, 0};
    return pf__eng_write_many(&ed(d)->eng, items, n, &op);
}

/* get_many reads the keys in order, starting to load each key's home slot
 * 2 * PF__ENG_AHEAD keys ahead and its entry PF__ENG_AHEAD keys ahead, so that
 * the cache misses of several keys overlap. */
static int eng_get_many(pf_dict *d, const pf_dict_item *items, size_t n, pf_dict_got_fn fn,
                        void *user)
{
    pf__eng *e = &ed(d)->eng;
    uint64_t hash[2 * PF__ENG_AHEAD]; /* of items [i, hashed), at index % (2 * PF__ENG_AHEAD) */
    size_t hashed = 0;
    size_t cap = 256;
    char *buf = malloc(cap);
    int rc = buf ? 0 : PF_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        for (; hashed < n && hashed < i + 2 * PF__ENG_AHEAD; hashed++) {
            const void *k = items[hashed].key ? items[hashed].key : "";
            hash[hashed % (2 * PF__ENG_AHEAD)] = pf__eng_hash(e, k, items[hashed].klen);
            pf__eng_prefetch(e, hash[hashed % (2 * PF__ENG_AHEAD)], false);
        }
        if (i + PF__ENG_AHEAD < n)
            pf__eng_prefetch(e, hash[(i + PF__ENG_AHEAD) % (2 * PF__ENG_AHEAD)], true);
        size_t vlen = 0;
        const void *key = items[i].key ? items[i].key : "";
        int st = pf__eng_get_hashed(e, hash[i % (2 * PF__ENG_AHEAD)], key, items[i].klen, buf, cap,
                                    &vlen, NULL);
        if (st == PF_ETOOBIG) {
            char *nb = realloc(buf, vlen);
            if (!nb) {
                rc = PF_ENOMEM;
                break;
            }
            buf = nb;
            cap = vlen;
            i--; /* read it again: it may have changed meanwhile */
            continue;
        }
        if (st != 0 && st != PF_ENOTFOUND) {
            rc = st;
            break;
        }
        rc = fn(user, i, st, st ? NULL : buf, st ? 0 : vlen);
    }
    free(buf);
    return rc;
}

/* Iteration: copy one stripe at a time into a buffer of records
 * [klen][vlen][key, padded][value, padded]. */
struct eng_cursor {
    unsigned stripe;
    char *buf;
    size_t len, cap, pos;
};

static int cursor_emit(void *u, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct eng_cursor *c = u;
    size_t need = 2 * sizeof(size_t) + ((klen + 7) & ~(size_t)7) + ((vlen + 7) & ~(size_t)7);
    if (c->len + need > c->cap) {
        size_t nc = c->cap ? c->cap : 4096;
        while (nc < c->len + need)
            nc *= 2;
        char *nb = realloc(c->buf, nc);
        if (!nb)
            return PF_ENOMEM;
        c->buf = nb;
        c->cap = nc;
    }
    char *p = c->buf + c->len;
    memcpy(p, &klen, sizeof klen);
    memcpy(p + sizeof klen, &vlen, sizeof vlen);
    p += 2 * sizeof(size_t);
    memcpy(p, key, klen);
    memcpy(p + ((klen + 7) & ~(size_t)7), val, vlen);
    c->len += need;
    return 0;
}

static int eng_iter_open(pf_dict *d, void **cursor)
{
    (void)d;
    struct eng_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return PF_ENOMEM;
    *cursor = c;
    return 0;
}

static int eng_iter_next(pf_dict *d, void *cursor, pf__dict_entry *e)
{
    struct eng_cursor *c = cursor;
    pf__eng *eng = &ed(d)->eng;
    while (c->pos >= c->len) {
        if (c->stripe >= eng->nstripes)
            return PF_EEOF;
        c->len = c->pos = 0;
        int rc = pf__eng_copy_stripe(eng, c->stripe, cursor_emit, c);
        if (rc) {
            /* Drop the part copied: a later call copies this stripe again
             * (seeing the same error, or each entry once), never hands it out. */
            c->len = 0;
            return rc;
        }
        c->stripe++;
    }
    char *p = c->buf + c->pos;
    size_t klen, vlen;
    memcpy(&klen, p, sizeof klen);
    memcpy(&vlen, p + sizeof klen, sizeof vlen);
    p += 2 * sizeof(size_t);
    e->key = p;
    e->klen = klen;
    e->val = p + ((klen + 7) & ~(size_t)7);
    e->vlen = vlen;
    c->pos += 2 * sizeof(size_t) + ((klen + 7) & ~(size_t)7) + ((vlen + 7) & ~(size_t)7);
    return 0;
}

static void eng_iter_close(pf_dict *d, void *cursor)
{
    (void)d;
    struct eng_cursor *c = cursor;
    free(c->buf);
    free(c);
}

static int eng_check(pf_dict *d, char *msg, size_t msg_cap)
{
    return pf__eng_check(&ed(d)->eng, msg, msg_cap);
}

static int eng_ref_fill(pf_dict *d, unsigned char *bytes, size_t cap)
{
    /* shm: nonce (8 bytes) then the name; local refs are made by the front end. */
    uint64_t nonce = pf__eng_nonce(&ed(d)->eng);
    if (cap < 8 + PF_DICT_MAX_NAME + 1)
        return PF_EINVAL;
    memcpy(bytes, &nonce, 8);
    pf__strlcpy((char *)bytes + 8, d->name, PF_DICT_MAX_NAME + 1);
    return 0;
}

static bool eng_gone(pf_dict *d)
{
    return d->backend == PF_DICT_SHM && pf__eng_destroyed(&ed(d)->eng);
}

static const pf__dict_ops eng_ops = {
    .destroy = eng_destroy,
    .set = eng_set,
    .get = eng_get,
    .del = eng_del,
    .len = eng_len,
    .clear = eng_clear,
    .incr = eng_incr,
    .cas = eng_cas,
    .get_or_insert = eng_goi,
    .update_fn = eng_update_fn,
    .set_many = eng_set_many,
    .get_many = eng_get_many,
    .iter_open = eng_iter_open,
    .iter_next = eng_iter_next,
    .iter_close = eng_iter_close,
    .check = eng_check,
    .ref_fill = eng_ref_fill,
    .gone = eng_gone,
};

/* Open from the payload eng_ref_fill wrote. */
int pf__dict_shm_from_ref(pf_dict **out, const unsigned char *bytes)
{
    char name[PF_DICT_MAX_NAME + 1];
    memcpy(name, bytes + 8, sizeof name);
    name[PF_DICT_MAX_NAME] = '\0';
    return pf__dict_shm_open(out, name, bytes);
}
