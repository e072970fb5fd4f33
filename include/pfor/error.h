/*
 * pfor error codes.
 *
 * Every pfor function that can fail returns an int: 0 (PF_OK) on success or
 * one of the negative codes below.  The values are stable: new codes are only
 * ever appended.  pf_strerror() gives a one-line English description and
 * pf_err_name() the symbolic name ("PF_EINVAL").
 *
 * The table is an X-macro so that the enum, the two string functions and the
 * documentation table (docs/errors.md) cannot drift apart.
 */
#ifndef PFOR_ERROR_H
#define PFOR_ERROR_H

#include "pfor/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, description) */
#define PF_ERRNO_MAP(XX)                                                                      \
    XX(EINVAL, -1, "invalid argument")                                                        \
    XX(ENOMEM, -2, "out of memory")                                                           \
    XX(ESHUTDOWN, -3, "executor is shut down")                                                \
    XX(ETIMEDOUT, -4, "timed out")                                                            \
    XX(ECANCELLED, -5, "cancelled")                                                           \
    XX(ETASK, -6, "task reported an error")                                                   \
    XX(EWORKERDIED, -7, "worker process died while running the task")                         \
    XX(ETASKTIMEOUT, -8, "task overran its time limit and was killed")                        \
    XX(EINITFAILED, -9, "worker initializer failed")                                          \
    XX(EALREADY, -10, "result already taken")                                                 \
    XX(ENOTFOUND, -11, "not found")                                                           \
    XX(EEXIST, -12, "already exists")                                                         \
    XX(ETOOBIG, -13, "too large")                                                             \
    XX(ENOSPC, -14, "no space left (shared memory full)")                                     \
    XX(ESYS, -15, "system call failed")                                                       \
    XX(ENOTSUP, -16, "not supported by this executor kind or backend")                        \
    XX(EBUSY, -17, "resource busy")                                                           \
    XX(EFORKUNSAFE, -18, "process already runs threads: call pf_init() at the start of main") \
    XX(ECONNECT, -19, "cannot connect to server")                                             \
    XX(EPROTO, -20, "protocol error")                                                         \
    XX(ECORRUPT, -21, "data structure is corrupt")                                            \
    XX(EPERM, -22, "permission denied")                                                       \
    XX(EEOF, -23, "no more items")                                                            \
    XX(ENOTREG, -24, "function is not registered (see PF_REGISTER)")                          \
    XX(EHTTP, -25, "HTTP request failed")                                                     \
    XX(EADDRINUSE, -26, "address already in use")                                             \
    XX(ERANKDIED, -27, "MPI rank died while running the task")

/* clang-format off */
typedef enum pf_errno {
    PF_OK = 0,
#define PF__ERR_ENUM(name, value, desc) PF_##name = (value),
    PF_ERRNO_MAP(PF__ERR_ENUM)
#undef PF__ERR_ENUM
    PF__ERRNO_LAST = -28 /* one past the last code; not an error itself */
} pf_errno;
/* clang-format on */

/* A one-line description of `code` ("invalid argument").  Never NULL: unknown
 * codes give "unknown error".  The string is static. */
PF_EXTERN const char *pf_strerror(int code);

/* The symbolic name of `code` ("PF_EINVAL"), "PF_OK" for 0, or "PF_E?" for an
 * unknown code.  The string is static. */
PF_EXTERN const char *pf_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* PFOR_ERROR_H */
