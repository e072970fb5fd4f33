/*
 * pf_map: a task function over a stream of inputs, in chunks, with a bound on
 * the tasks in flight.
 *
 * DESIGN
 *   Items are packed into chunk tasks: one task runs the user's function on each item
 *   of its chunk (map_chunk_task, below) and packs the per-item outcomes into its
 *   result.  The caller keeps at most max_in_flight chunks submitted; it refills from
 *   the input stream as chunks come back, so memory holds max_in_flight chunks whatever
 *   the input's length.  Ordered maps take chunks back in submission order (a FIFO
 *   window); unordered maps take them as their done-callbacks queue them, and let go of
 *   each at once.  With an automatic chunk size, each chunk reports how long its items
 *   took and the next chunks are sized to about a millisecond of work (and never so big
 *   that a worker would go idle when the input's length is known).
 *
 *   The chunk task is registered ("pf.map_chunk") and names the user's
 *   function by registry id when it has one, so chunks run on any executor
 *   kind, MPI ranks included.
 *
 * Wire format of a chunk (all native-endian; chunks never leave the machine
 * except through MPI between ranks of the same build):
 *   argument: struct chunk_arg, uint64 offsets[count + 1], item bytes
 *   result:   struct chunk_res, struct item_res[count], concatenated bytes
 *             (an item's result, or for a failed item its message)
 */
#include <math.h>
#include <string.h>

#include "core/core.h"

struct chunk_arg {
    struct pf__fnref fn;
    uint64_t count;
};

struct chunk_res {
    uint64_t count;
    uint64_t elapsed_ns;
};

struct item_res {
    int32_t status;    /* PF_OK or PF_ETASK */
    int32_t task_code; /* the task's own code when it failed */
    uint64_t len;      /* bytes in the data area */
};

/* A growable byte buffer. */
struct buf {
    unsigned char *p;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more)
{
    /* No object is bigger than PF__OBJECT_MAX: such a size (an item's length
     * from the input callback) fails here, before len + more can wrap or the
     * doubling below overflow to 0. */
    if (more > PF__OBJECT_MAX - b->len)
        return PF_ENOMEM;
    if (b->len + more <= b->cap)
        return PF_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2; /* cap < len + more <= PF__OBJECT_MAX: cannot overflow */
    unsigned char *p = pf__realloc(b->p, cap); /* cap may be over PF__OBJECT_MAX */
    if (!p)
        return PF_ENOMEM;
    b->p = p;
    b->cap = cap;
    return PF_OK;
}

static int buf_append(struct buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) != PF_OK)
        return PF_ENOMEM;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return PF_OK;
}

/* The chunk task: run the user's function on every item. */
static int map_chunk_task(pf_task *t, const void *arg, size_t len)
{
    struct chunk_arg hdr;
    if (len < sizeof hdr)
        return pf_task_fail(t, PF_EPROTO, "map chunk: short argument");
    memcpy(&hdr, arg, sizeof hdr);
    const unsigned char *base = arg;
    size_t table = sizeof hdr + (hdr.count + 1) * sizeof(uint64_t);
    if (hdr.count > len || table > len)
        return pf_task_fail(t, PF_EPROTO, "map chunk: bad item count");
    const uint64_t *off = (const uint64_t *)(base + sizeof hdr);
    const unsigned char *items = base + table;
    size_t items_len = len - table;
    pf_task_fn fn = (pf_task_fn)pf__fnref_resolve(&hdr.fn);
    if (!fn)
        return pf_task_fail(t, PF_ENOTREG, "map chunk: function not found in this process");

    uint64_t t0 = pf__now_ns();
    struct buf recs = {0}, data = {0};
    int rc = buf_reserve(&recs, hdr.count * sizeof(struct item_res));
    struct pf_task sub = {
        .alloc_result = pf__task_heap_alloc,
        .drop_result = pf__task_heap_drop,
        .worker_state = t->worker_state,
        .worker_index = t->worker_index,
        .cancel_flag = t->cancel_flag,
    };
    for (uint64_t i = 0; i < hdr.count && rc == PF_OK; i++) {
        /* Cancelled (the map stopped early) or over its time limit: nobody
         * takes the rest, so the worker is not kept on it. */
        if (pf_task_cancelled(t)) {
            rc = PF_ECANCELLED;
            break;
        }
        if (off[i] > off[i + 1] || off[i + 1] > items_len) {
            rc = PF_EPROTO;
            break;
        }
        sub.result_len = 0;
        int st = pf__task_run(&sub, fn, items + off[i], off[i + 1] - off[i]);
        struct item_res r = {.status = st, .task_code = sub.fail_code};
        if (st == PF_OK) {
            r.len = sub.result ? sub.result_len : 0;
            rc = buf_append(&data, sub.result, r.len);
        } else {
            r.len = strlen(sub.message) + 1;
            rc = buf_append(&data, sub.message, r.len);
        }
        if (rc == PF_OK)
            rc = buf_append(&recs, &r, sizeof r);
    }
    pf__task_heap_drop(&sub);
    if (rc != PF_OK) {
        free(recs.p);
        free(data.p);
        return pf_task_fail(t, rc, "map chunk: %s", pf_strerror(rc));
    }
    struct chunk_res res = {.count = hdr.count, .elapsed_ns = pf__now_ns() - t0};
    size_t total = sizeof res + recs.len + data.len;
    unsigned char *out = pf_task_result_buffer(t, total);
    if (!out) {
        free(recs.p);
        free(data.p);
        return pf_task_fail(t, PF_ENOMEM, "map chunk: no room for a %zu-byte result", total);
    }
    memcpy(out, &res, sizeof res);
    if (recs.len)
        memcpy(out + sizeof res, recs.p, recs.len);
    if (data.len)
        memcpy(out + sizeof res + recs.len, data.p, data.len);
    free(recs.p);
    free(data.p);
    return 0;
}

/* Registered under a reserved name, not PF_REGISTER's "map_chunk_task",
 * which a program's own task may be called (one of the two registrations
 * would fail).  MPI ranks find the chunk task by this name's id. */
__attribute__((constructor)) static void register_map_chunk_task(void)
{
    (void)pf__register_reserved("pf.map_chunk", (pf_fn)map_chunk_task);
}

struct mapper;

/* One chunk in flight. */
struct inflight {
    pf_future *f;
    size_t first; /* index of its first item */
    size_t count;
    struct mapper *m; /* unordered: for the done-callback */
    size_t slot;      /* unordered: its index in the window */
};

/* Unordered maps: window slots whose chunk finished, queued by done-callbacks
 * (which run in whichever thread finishes the chunk). */
struct done_queue {
    pf__mutex lock;
    pf__cond cond;
    size_t *ring;       /* lock: slots, FIFO */
    size_t head, count; /* lock */
    size_t fired;       /* lock: callbacks that ran */
};

struct mapper {
    pf_executor *ex;
    struct pf__fnref fn;
    pf_map_next_fn next;
    pf_map_emit_fn emit;
    void *user;
    double timeout;
    bool unordered;
    size_t max_in_flight;
    size_t fixed_chunk; /* 0: automatic */
    size_t size_hint;   /* total items when known, else 0 */
    int workers;

    size_t next_index; /* items read from the input so far */
    bool eof;
    int stop;        /* why the map stops early, or 0 */
    int first_error; /* first failed item's code (emit order) */

    struct inflight *window; /* ordered: a ring; unordered: slots */
    size_t head, n_inflight;
    size_t *free_slots; /* unordered: a stack of unused slots */
    size_t n_free;
    size_t registered; /* unordered: done-callbacks registered */
    struct done_queue done;

    double ns_per_item; /* running estimate, 0 until known */
    size_t auto_chunk;
};

static size_t chunk_size(struct mapper *m)
{
    if (m->fixed_chunk)
        return m->fixed_chunk;
    size_t c = m->auto_chunk;
    if (m->size_hint) { /* keep every worker fed: at least 4 chunks each */
        size_t cap = m->size_hint / ((size_t)m->workers * 4);
        c = PF__MIN(c, PF__MAX(cap, (size_t)1));
    }
    return PF__MAX(c, (size_t)1);
}

static void learn(struct mapper *m, const struct chunk_res *res)
{
    if (m->fixed_chunk || res->count == 0)
        return;
    double per = (double)res->elapsed_ns / (double)res->count;
    m->ns_per_item = m->ns_per_item == 0 ? per : 0.7 * m->ns_per_item + 0.3 * per;
    double want = 1e6 / (m->ns_per_item > 1 ? m->ns_per_item : 1); /* ~1 ms a chunk */
    size_t c = want > 65536 ? 65536 : want < 1 ? 1 : (size_t)want;
    /* grow gradually: an early estimate may be off */
    m->auto_chunk = PF__MIN(c, m->auto_chunk * 4);
}

/* Read up to `want` items and submit them as one chunk.  0, PF_EEOF when the
 * input had nothing more, or an error. */
static int submit_chunk(struct mapper *m, struct inflight *slot)
{
    size_t want = chunk_size(m);
    struct buf offs = {0}, items = {0};
    uint64_t zero = 0;
    int rc = buf_append(&offs, &zero, sizeof zero);
    size_t count = 0;
    while (rc == PF_OK && count < want) {
        const void *arg = NULL;
        size_t len = 0;
        int r = m->next(m->user, m->next_index, &arg, &len);
        if (r == PF_EEOF) {
            m->eof = true;
            break;
        }
        if (r != PF_OK || (len && !arg)) {
            rc = r != PF_OK ? r : PF_EINVAL;
            break;
        }
        rc = buf_append(&items, arg, len);
        uint64_t end = items.len;
        if (rc == PF_OK)
            rc = buf_append(&offs, &end, sizeof end);
        if (rc == PF_OK) {
            count++;
            m->next_index++;
        }
    }
    if (rc == PF_OK && count == 0)
        rc = PF_EEOF;
    unsigned char *arg = NULL;
    size_t arg_len = sizeof(struct chunk_arg) + offs.len + items.len;
    if (rc == PF_OK && !(arg = malloc(arg_len)))
        rc = PF_ENOMEM;
    if (rc != PF_OK) {
        free(offs.p);
        free(items.p);
        return rc;
    }
    struct chunk_arg hdr = {.fn = m->fn, .count = count};
    memcpy(arg, &hdr, sizeof hdr);
    memcpy(arg + sizeof hdr, offs.p, offs.len);
    if (items.len)
        memcpy(arg + sizeof hdr + offs.len, items.p, items.len);
    free(offs.p);
    free(items.p);
    slot->first = m->next_index - count;
    slot->count = count;
    return pf__submit_owned(m->ex, map_chunk_task, arg, arg_len, m->timeout, &slot->f);
}

/* Emit every item of a finished chunk. */
static void deliver(struct mapper *m, struct inflight *c)
{
    const unsigned char *res;
    size_t len;
    int rc = pf_future_result(c->f, PF_FOREVER, (const void **)&res, &len);
    struct chunk_res hdr = {0};
    if (rc == PF_OK) {
        if (len >= sizeof hdr)
            memcpy(&hdr, res, sizeof hdr);
        if (len < sizeof hdr || hdr.count != c->count ||
            len - sizeof hdr < hdr.count * sizeof(struct item_res))
            rc = PF_EPROTO; /* cannot happen unless memory is corrupt */
    }
    if (rc != PF_OK) {
        /* The whole chunk failed (worker died, time limit, cancel...): every
         * item of it reports that. */
        pf_error_info info;
        pf_future_error(c->f, &info);
        const char *msg = info.message[0] ? info.message : pf_strerror(rc);
        for (size_t i = 0; i < c->count && !m->stop; i++) {
            if (!m->first_error)
                m->first_error = rc;
            int r = m->emit(m->user, c->first + i, rc, NULL, 0, msg);
            if (r)
                m->stop = r;
        }
        return;
    }
    learn(m, &hdr);
    const struct item_res *recs = (const struct item_res *)(res + sizeof hdr);
    const unsigned char *data = res + sizeof hdr + hdr.count * sizeof(struct item_res);
    size_t data_len = len - sizeof hdr - hdr.count * sizeof(struct item_res), pos = 0;
    for (size_t i = 0; i < c->count && !m->stop; i++) {
        struct item_res r;
        memcpy(&r, &recs[i], sizeof r);
        if (r.len > data_len - pos) {
            m->stop = PF_EPROTO;
            break;
        }
        int e;
        if (r.status == PF_OK) {
            e = m->emit(m->user, c->first + i, PF_OK, r.len ? data + pos : NULL, r.len, NULL);
        } else {
            if (!m->first_error)
                m->first_error = r.status;
            char msg[256];
            size_t n = PF__MIN(r.len, sizeof msg - 1);
            memcpy(msg, data + pos, n);
            msg[n] = '\0';
            e = m->emit(m->user, c->first + i, r.status, NULL, 0, msg);
        }
        pos += r.len;
        if (e)
            m->stop = e;
    }
}

static void chunk_done(pf_future *f, void *user)
{
    (void)f;
    struct inflight *c = user;
    struct done_queue *q = &c->m->done;
    pf__mutex_lock(&q->lock);
    q->ring[(q->head + q->count) % c->m->max_in_flight] = c->slot;
    q->count++;
    q->fired++;
    pf__cond_signal(&q->cond);
    pf__mutex_unlock(&q->lock);
}

/* Submit chunks until the window is full or the input ends. */
static void fill(struct mapper *m)
{
    while (!m->eof && !m->stop && m->n_inflight < m->max_in_flight) {
        size_t at = m->unordered ? m->free_slots[m->n_free - 1]
                                 : (m->head + m->n_inflight) % m->max_in_flight;
        struct inflight *c = &m->window[at];
        int r = submit_chunk(m, c);
        if (r == PF_EEOF)
            break;
        if (r != PF_OK) {
            m->stop = r;
            break;
        }
        m->n_inflight++;
        if (m->unordered) {
            m->n_free--;
            c->m = m;
            c->slot = at;
            m->registered++;
            if ((r = pf_future_add_done_callback(c->f, chunk_done, c)) != PF_OK) {
                m->registered--;
                m->stop = r; /* out of memory: the chunk is drained below */
                pf_future_wait(c->f, PF_FOREVER);
                chunk_done(c->f, c);
                m->registered++;
            }
        }
    }
}

/* The next finished chunk (unordered) or the oldest one (ordered). */
static struct inflight take(struct mapper *m)
{
    struct inflight c;
    if (!m->unordered) {
        c = m->window[m->head];
        m->head = (m->head + 1) % m->max_in_flight;
    } else {
        struct done_queue *q = &m->done;
        pf__mutex_lock(&q->lock);
        while (q->count == 0)
            pf__cond_wait(&q->cond, &q->lock);
        size_t slot = q->ring[q->head];
        q->head = (q->head + 1) % m->max_in_flight;
        q->count--;
        pf__mutex_unlock(&q->lock);
        c = m->window[slot];
        m->window[slot].f = NULL;
        m->free_slots[m->n_free++] = slot;
    }
    m->n_inflight--;
    return c;
}

static int run_map(struct mapper *m)
{
    m->window = calloc(m->max_in_flight, sizeof *m->window);
    if (!m->window)
        return PF_ENOMEM;
    if (m->unordered) {
        m->free_slots = malloc(m->max_in_flight * sizeof *m->free_slots);
        m->done.ring = malloc(m->max_in_flight * sizeof *m->done.ring);
        if (!m->free_slots || !m->done.ring) {
            free(m->free_slots);
            free(m->done.ring);
            free(m->window);
            return PF_ENOMEM;
        }
        for (size_t i = 0; i < m->max_in_flight; i++)
            m->free_slots[i] = m->max_in_flight - 1 - i;
        m->n_free = m->max_in_flight;
        pf__mutex_init(&m->done.lock);
        pf__cond_init(&m->done.cond);
    }
    for (;;) {
        fill(m);
        if (m->n_inflight == 0 || m->stop)
            break;
        struct inflight done = take(m);
        deliver(m, &done);
        pf_future_release(done.f);
    }
    /* Stopped early: withdraw what is still out, then let it settle. */
    for (size_t k = 0; k < m->max_in_flight; k++) {
        struct inflight *c = &m->window[k];
        bool out = m->unordered
                       ? c->f != NULL
                       : (k + m->max_in_flight - m->head) % m->max_in_flight < m->n_inflight;
        if (out && c->f)
            pf_future_cancel(c->f);
    }
    if (m->unordered) {
        /* Every callback must have run before the window goes away. */
        pf__mutex_lock(&m->done.lock);
        while (m->done.fired < m->registered)
            pf__cond_wait(&m->done.cond, &m->done.lock);
        pf__mutex_unlock(&m->done.lock);
    }
    for (size_t k = 0; k < m->max_in_flight; k++) {
        struct inflight *c = &m->window[k];
        bool out = m->unordered
                       ? c->f != NULL
                       : (k + m->max_in_flight - m->head) % m->max_in_flight < m->n_inflight;
        if (out && c->f) {
            pf_future_wait(c->f, PF_FOREVER);
            pf_future_release(c->f);
        }
    }
    if (m->unordered) {
        pf__cond_destroy(&m->done.cond);
        pf__mutex_destroy(&m->done.lock);
        free(m->free_slots);
        free(m->done.ring);
    }
    free(m->window);
    return m->stop ? m->stop : m->first_error;
}

/* Chunks in flight: the option or 4 per worker, at most one per item when the
 * length is known and MAP_MAX_IN_FLIGHT in all (its window is allocated up
 * front: SIZE_MAX must not be a request for that much memory). */
#define MAP_MAX_IN_FLIGHT ((size_t)1 << 16)
static size_t in_flight_bound(size_t asked, int workers, size_t size_hint)
{
    size_t n = asked ? asked : 4 * (size_t)workers;
    if (size_hint && n > size_hint)
        n = size_hint;
    return n < MAP_MAX_IN_FLIGHT ? n : MAP_MAX_IN_FLIGHT;
}

static int map_common(pf_executor *ex, pf_task_fn fn, pf_map_next_fn next, pf_map_emit_fn emit,
                      void *user, const pf_map_opts *opts, size_t size_hint)
{
    int workers = pf_executor_max_workers(ex);
    if (workers <= 0 || !fn || !next || !emit)
        return PF_EINVAL;
    pf_map_opts o = opts ? *opts : (pf_map_opts){0};
    /* The bounds pf_submit_ex accepts (<= 1e9 s, so timeout * 1e9 fits a
     * uint64_t); negative stays an error here: 0 already means "the
     * executor's", and pf_map_opts has no "no limit". */
    if (isnan(o.timeout) || o.timeout < 0 || o.timeout > 1e9)
        return PF_EINVAL;
    struct mapper m = {
        .ex = ex,
        .fn = pf__fnref_make((pf_fn)fn),
        .next = next,
        .emit = emit,
        .user = user,
        .timeout = o.timeout,
        .unordered = o.unordered,
        .max_in_flight = in_flight_bound(o.max_in_flight, workers, size_hint),
        .fixed_chunk = o.chunksize,
        .size_hint = size_hint,
        .workers = workers,
        .auto_chunk = 1,
    };
    return run_map(&m);
}

int pf_map(pf_executor *ex, pf_task_fn fn, pf_map_next_fn next, pf_map_emit_fn emit, void *user,
           const pf_map_opts *opts)
{
    return map_common(ex, fn, next, emit, user, opts, 0);
}

struct array_input {
    const unsigned char *items;
    size_t n, item_size;
};

static int array_next(void *user, size_t index, const void **arg, size_t *len)
{
    struct array_input *a = user;
    if (index >= a->n)
        return PF_EEOF;
    *arg = a->items + index * a->item_size;
    *len = a->item_size;
    return PF_OK;
}

struct array_ctx {
    struct array_input in;
    pf_map_emit_fn emit;
    void *user;
};

static int array_next_adapter(void *user, size_t index, const void **arg, size_t *len)
{
    return array_next(&((struct array_ctx *)user)->in, index, arg, len);
}

static int array_emit_adapter(void *user, size_t index, int status, const void *data, size_t len,
                              const char *errmsg)
{
    struct array_ctx *c = user;
    return c->emit(c->user, index, status, data, len, errmsg);
}

int pf_map_array(pf_executor *ex, pf_task_fn fn, const void *items, size_t n, size_t item_size,
                 pf_map_emit_fn emit, void *user, const pf_map_opts *opts)
{
    if ((n > 0 && item_size > 0 && !items) || !emit)
        return PF_EINVAL;
    struct array_ctx c = {.in = {items, n, item_size}, .emit = emit, .user = user};
    return map_common(ex, fn, array_next_adapter, array_emit_adapter, &c, opts, n);
}
