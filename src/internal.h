/*
 * Library-internal helpers shared by every subsystem.
 *
 * Naming: pf_ is public API, pf__ is internal but shared between files,
 * static functions carry no prefix.  Nothing here is exported.
 */
#ifndef PF_INTERNAL_H
#define PF_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pfor/pfor.h"

#define PF__ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define PF__CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define PF__MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define PF__MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define PF__CACHELINE                       64

/* An invariant is broken: memory is corrupt, or a primitive failed in a way
 * that cannot happen.  Print where and abort.  Never used for bad input. */
#define PF__CHECK(cond)                           \
    do {                                          \
        if (__builtin_expect(!(cond), 0))         \
            pf__panic(__FILE__, __LINE__, #cond); \
    } while (0)

__attribute__((noreturn, cold)) void pf__panic(const char *file, int line, const char *what);

/* No object is bigger than PTRDIFF_MAX.  A size from user input is checked
 * against it before it reaches the allocator (some allocators, ASan's among
 * them, abort on such a request instead of failing), and two sizes each at
 * most this add up without wrapping. */
#define PF__OBJECT_MAX ((size_t)PTRDIFF_MAX)

/* malloc and realloc for a size that may come from user input: NULL (errno
 * ENOMEM) for one over PF__OBJECT_MAX, without asking the allocator. */
static inline void *pf__malloc(size_t size)
{
    if (size > PF__OBJECT_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(size);
}

static inline void *pf__realloc(void *p, size_t size)
{
    if (size > PF__OBJECT_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, size);
}

/* 1 in ThreadSanitizer builds (gcc defines __SANITIZE_THREAD__). */
#if defined(__SANITIZE_THREAD__)
#define PF__TSAN 1
#else
#define PF__TSAN 0
#endif

/* Register one of the library's own tasks under a reserved "pf." name, which
 * pf_register refuses to programs (core/registry.c). */
int pf__register_reserved(const char *name, void (*fn)(void));

/* Monotonic clock in nanoseconds. */
uint64_t pf__now_ns(void);
/* A timeout in seconds (negative: forever) turned into an absolute monotonic
 * deadline in ns; UINT64_MAX means forever. */
uint64_t pf__deadline_ns(double timeout_s);
/* A time limit in seconds (checked <= 1e9 by the caller) as nanoseconds:
 * 0, meaning none, for s <= 0; at least 1 ns for any positive s. */
static inline uint64_t pf__limit_ns(double s)
{
    return s > 0 ? PF__MAX((uint64_t)(s * 1e9), (uint64_t)1) : 0;
}

/* Number of online CPUs (at least 1). */
int pf__ncpus(void);

/* Number of threads of this process, from /proc/self/status (0 if unknown). */
int pf__thread_count(void);

/* snprintf that never fails and always terminates. */
void pf__strlcpy(char *dst, const char *src, size_t size);

#endif /* PF_INTERNAL_H */
