/*
 * The task context: what a task function may call while it runs.
 */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"

/* A non-NULL pointer for empty results. */
static unsigned char empty_result;

int pf_task_set_result(pf_task *t, const void *data, size_t len)
{
    if (!t || (len > 0 && !data))
        return PF_EINVAL;
    void *dst = t->alloc_result(t, len);
    if (!dst)
        return t->alloc_error ? t->alloc_error : PF_ENOMEM;
    if (len)
        memmove(dst, data, len);
    return PF_OK;
}

void *pf_task_result_buffer(pf_task *t, size_t len)
{
    if (!t)
        return NULL;
    void *p = t->alloc_result(t, len);
    return p && len == 0 ? &empty_result : p;
}

int pf_task_fail(pf_task *t, int code, const char *fmt, ...)
{
    if (!t)
        return PF_EINVAL;
    t->drop_result(t);
    t->fail_code = code ? code : PF_ETASK;
    t->message[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->message, sizeof t->message, fmt, ap);
        va_end(ap);
    }
    return PF_ETASK;
}

void *pf_task_worker_state(pf_task *t)
{
    return t ? t->worker_state : NULL;
}

int pf_task_worker_index(pf_task *t)
{
    return t ? t->worker_index : PF_EINVAL;
}

bool pf_task_cancelled(const pf_task *t)
{
    return t && t->cancel_flag && atomic_load_explicit(t->cancel_flag, memory_order_relaxed);
}

int pf__task_run(struct pf_task *t, pf_task_fn fn, const void *arg, size_t arg_len)
{
    t->fail_code = 0;
    t->message[0] = '\0';
    int rc = fn(t, arg_len ? arg : NULL, arg_len);
    if (t->fail_code) /* failed, even if it returned 0 afterwards */
        return PF_ETASK;
    if (rc != 0) {
        t->drop_result(t);
        t->fail_code = rc;
        snprintf(t->message, sizeof t->message, "task returned %d", rc);
        return PF_ETASK;
    }
    return PF_OK;
}

void *pf__task_heap_alloc(struct pf_task *t, size_t len)
{
    if (len > t->result_cap || !t->result) {
        void *p = pf__realloc(t->result, len ? len : 1); /* len is the task's */
        if (!p) {
            t->alloc_error = PF_ENOMEM;
            t->result_len = 0; /* the result is then empty, as documented */
            return NULL;
        }
        t->result = p;
        t->result_cap = len ? len : 1;
    }
    t->result_len = len;
    return t->result;
}

void pf__task_heap_drop(struct pf_task *t)
{
    free(t->result);
    t->result = NULL;
    t->result_len = 0;
    t->result_cap = 0;
}
