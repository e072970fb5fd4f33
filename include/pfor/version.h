/*
 * pfor version and symbol visibility.  Included by every public header.
 */
#ifndef PFOR_VERSION_H
#define PFOR_VERSION_H

#define PF_VERSION_MAJOR  0
#define PF_VERSION_MINOR  1
#define PF_VERSION_PATCH  0
#define PF_VERSION_STRING "0.1.0"

/* Public symbols are exported; everything else in the library is built with
 * -fvisibility=hidden. */
#if defined(__GNUC__)
#define PF_EXTERN __attribute__((visibility("default")))
#else
#define PF_EXTERN
#endif

#endif /* PFOR_VERSION_H */
