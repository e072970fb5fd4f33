/*
 * The task registry: names <-> function pointers.
 *
 * A name's id is the 64-bit FNV-1a hash of the name, so every process of the
 * same program computes the same id without talking to the others (MPI ranks
 * are started separately).  Two names with the same id are refused.
 * Two open-addressing tables (by id, by pointer) share the entries; both are
 * guarded by `lock`.  Entries are never removed.
 */
#include <string.h>

#include "core/core.h"
#include "platform/sync.h"

#define NAME_MAX_LEN 127

struct entry {
    uint64_t id;
    pf_fn fn;
    char name[NAME_MAX_LEN + 1];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry **by_id, **by_fn; /* lock; capacity `cap`, power of two */
static size_t cap, count;             /* lock */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static size_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    return (size_t)x;
}

static size_t slot_of_id(struct entry **t, size_t c, uint64_t id)
{
    size_t i = mix(id) & (c - 1);
    while (t[i] && t[i]->id != id)
        i = (i + 1) & (c - 1);
    return i;
}

static size_t slot_of_fn(struct entry **t, size_t c, pf_fn fn)
{
    size_t i = mix((uint64_t)(uintptr_t)fn) & (c - 1);
    while (t[i] && t[i]->fn != fn)
        i = (i + 1) & (c - 1);
    return i;
}

static int grow_locked(void)
{
    size_t nc = cap ? cap * 2 : 64;
    struct entry **ni = calloc(nc, sizeof *ni), **nf = calloc(nc, sizeof *nf);
    if (!ni || !nf) {
        free(ni);
        free(nf);
        return PF_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++) {
        if (by_id[i])
            ni[slot_of_id(ni, nc, by_id[i]->id)] = by_id[i];
        if (by_fn[i])
            nf[slot_of_fn(nf, nc, by_fn[i]->fn)] = by_fn[i];
    }
    free(by_id);
    free(by_fn);
    by_id = ni;
    by_fn = nf;
    cap = nc;
    return PF_OK;
}

/* Names starting with this belong to the library's own tasks (the loops'
 * chunk tasks): a program cannot take one first and hijack them. */
#define RESERVED_PREFIX "pf."

static int register_entry(const char *name, pf_fn fn);

int pf_register(const char *name, pf_fn fn)
{
    if (!name || !fn || !*name || strlen(name) > NAME_MAX_LEN ||
        strncmp(name, RESERVED_PREFIX, strlen(RESERVED_PREFIX)) == 0)
        return PF_EINVAL;
    return register_entry(name, fn);
}

int pf__register_reserved(const char *name, pf_fn fn)
{
    PF__CHECK(name && fn && strncmp(name, RESERVED_PREFIX, strlen(RESERVED_PREFIX)) == 0 &&
              strlen(name) <= NAME_MAX_LEN);
    return register_entry(name, fn);
}

static int register_entry(const char *name, pf_fn fn)
{
    uint64_t id = fnv1a(name);
    int rc = PF_OK;
    pf__mutex_lock(&lock);
    if ((count + 1) * 2 > cap && (rc = grow_locked()) != PF_OK)
        goto out;
    size_t i = slot_of_id(by_id, cap, id);
    if (by_id[i]) {
        rc = (by_id[i]->fn == fn && strcmp(by_id[i]->name, name) == 0) ? PF_OK : PF_EEXIST;
        goto out;
    }
    size_t j = slot_of_fn(by_fn, cap, fn);
    if (by_fn[j]) { /* one function, one name: its id must be unambiguous */
        rc = PF_EEXIST;
        goto out;
    }
    struct entry *e = malloc(sizeof *e);
    if (!e) {
        rc = PF_ENOMEM;
        goto out;
    }
    e->id = id;
    e->fn = fn;
    memcpy(e->name, name, strlen(name) + 1);
    by_id[i] = e;
    by_fn[j] = e;
    count++;
out:
    pf__mutex_unlock(&lock);
    return rc;
}

int pf_lookup_id(uint64_t id, pf_fn *fn)
{
    if (!fn)
        return PF_EINVAL;
    *fn = NULL;
    int rc = PF_ENOTFOUND;
    pf__mutex_lock(&lock);
    if (cap) {
        struct entry *e = by_id[slot_of_id(by_id, cap, id)];
        if (e) {
            *fn = e->fn;
            rc = PF_OK;
        }
    }
    pf__mutex_unlock(&lock);
    return rc;
}

int pf_lookup(const char *name, pf_fn *fn)
{
    if (fn)
        *fn = NULL;
    if (!name || !fn)
        return PF_EINVAL;
    int rc = PF_ENOTFOUND;
    uint64_t id = fnv1a(name);
    pf__mutex_lock(&lock);
    if (cap) {
        struct entry *e = by_id[slot_of_id(by_id, cap, id)];
        if (e && strcmp(e->name, name) == 0) {
            *fn = e->fn;
            rc = PF_OK;
        }
    }
    pf__mutex_unlock(&lock);
    return rc;
}

int pf_registered_name(pf_fn fn, const char **name, uint64_t *id)
{
    if (name)
        *name = NULL;
    if (id)
        *id = 0;
    if (!fn)
        return PF_EINVAL;
    int rc = PF_ENOTREG;
    pf__mutex_lock(&lock);
    if (cap) {
        struct entry *e = by_fn[slot_of_fn(by_fn, cap, fn)];
        if (e) {
            if (name)
                *name = e->name; /* entries are never freed */
            if (id)
                *id = e->id;
            rc = PF_OK;
        }
    }
    pf__mutex_unlock(&lock);
    return rc;
}
