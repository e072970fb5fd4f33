/*
 * Error strings, generated from the single table in include/pfor/error.h.
 */
#include "internal.h"

const char *pf_strerror(int code)
{
    switch (code) {
    case PF_OK:
        return "success";
#define PF__ERR_DESC(name, value, desc) \
    case PF_##name:                     \
        return desc;
        PF_ERRNO_MAP(PF__ERR_DESC)
#undef PF__ERR_DESC
    default:
        return "unknown error";
    }
}

const char *pf_err_name(int code)
{
    switch (code) {
    case PF_OK:
        return "PF_OK";
#define PF__ERR_NAME(name, value, desc) \
    case PF_##name:                     \
        return "PF_" #name;
        PF_ERRNO_MAP(PF__ERR_NAME)
#undef PF__ERR_NAME
    default:
        return "PF_E?";
    }
}
