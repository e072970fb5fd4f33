/*
 * Combining at the end: tasks return key-value pairs, the caller merges them.
 *
 * A task's pairs travel as its result bytes, in this format (native-endian,
 * never leaves the machine except between ranks of the same build):
 *   uint32 magic "PFKV", uint32 count, then per pair uint32 klen, uint32 vlen,
 *   key bytes, value bytes.
 * Merging reads them back in order and applies the caller's rule through the
 * dict API, so it works on every backend (on redis the common PF_COMBINE_LAST
 * case goes through pf_dict_set_many, pipelined).
 */
#include <string.h>

#include "dict/dict_internal.h"

#define PAIRS_MAGIC 0x564b4650u /* "PFKV" */

struct pairs_hdr {
    uint32_t magic;
    uint32_t count;
};

struct pair_hdr {
    uint32_t klen;
    uint32_t vlen;
};

int pf_task_return_pair(pf_task *t, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (!t || (klen && !key) || (vlen && !val))
        return PF_EINVAL;
    if (klen > PF_DICT_MAX_KEY || vlen > PF_DICT_MAX_VALUE)
        return PF_ETOOBIG;
    struct pairs_hdr h = {PAIRS_MAGIC, 1};
    struct pair_hdr p = {(uint32_t)klen, (uint32_t)vlen};
    size_t total = sizeof h + sizeof p + klen + vlen;
    unsigned char *out = pf_task_result_buffer(t, total);
    if (!out)
        return PF_ENOMEM;
    memcpy(out, &h, sizeof h);
    memcpy(out + sizeof h, &p, sizeof p);
    if (klen)
        memcpy(out + sizeof h + sizeof p, key, klen);
    if (vlen)
        memcpy(out + sizeof h + sizeof p + klen, val, vlen);
    return PF_OK;
}

struct packer {
    unsigned char *buf;
    size_t len, cap;
    uint32_t count;
};

static int pack_entry(void *user, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct packer *pk = user;
    size_t need = sizeof(struct pair_hdr) + klen + vlen;
    if (pk->len + need > pk->cap) {
        size_t cap = pk->cap ? pk->cap : 4096;
        while (cap < pk->len + need)
            cap *= 2;
        unsigned char *b = realloc(pk->buf, cap);
        if (!b)
            return PF_ENOMEM;
        pk->buf = b;
        pk->cap = cap;
    }
    struct pair_hdr p = {(uint32_t)klen, (uint32_t)vlen};
    memcpy(pk->buf + pk->len, &p, sizeof p);
    memcpy(pk->buf + pk->len + sizeof p, key, klen);
    memcpy(pk->buf + pk->len + sizeof p + klen, val, vlen);
    pk->len += need;
    pk->count++;
    return 0;
}

int pf_task_return_dict(pf_task *t, pf_dict *d)
{
    if (!t || !d)
        return PF_EINVAL;
    /* the header goes first, once the count is known */
    struct packer pk = {.buf = malloc(4096), .len = sizeof(struct pairs_hdr), .cap = 4096};
    if (!pk.buf)
        return PF_ENOMEM;
    int rc = pf_dict_foreach(d, pack_entry, &pk);
    if (rc == PF_OK) {
        struct pairs_hdr h = {PAIRS_MAGIC, pk.count};
        memcpy(pk.buf, &h, sizeof h);
        rc = pf_task_set_result(t, pk.buf, pk.len);
    }
    free(pk.buf);
    return rc;
}

/* The pairs in [data, data + len) are whole: the header, then h.count pairs
 * inside len; under PF_COMBINE_SUM every value an integer.  PF_EPROTO /
 * PF_EINVAL if not. */
static int check_pairs(const unsigned char *data, size_t len, pf_combine_rule rule)
{
    struct pairs_hdr h;
    if (len < sizeof h)
        return PF_EPROTO;
    memcpy(&h, data, sizeof h);
    if (h.magic != PAIRS_MAGIC)
        return PF_EPROTO;
    size_t pos = sizeof h;
    for (uint32_t i = 0; i < h.count; i++) {
        struct pair_hdr p;
        if (len - pos < sizeof p)
            return PF_EPROTO;
        memcpy(&p, data + pos, sizeof p);
        pos += sizeof p;
        if (len - pos < (size_t)p.klen + p.vlen)
            return PF_EPROTO;
        if (p.klen > PF_DICT_MAX_KEY || p.vlen > PF_DICT_MAX_VALUE)
            return PF_ETOOBIG; /* what the dict would answer, but before any pair */
        int64_t v;
        if (rule == PF_COMBINE_SUM && !pf__dict_parse_i64(data + pos + p.klen, p.vlen, &v))
            return PF_EINVAL;
        pos += (size_t)p.klen + p.vlen;
    }
    return PF_OK;
}

/* Apply the pairs in [data, data + len) to `into`.  They are checked whole
 * first: a malformed result changes nothing, whatever the rule. */
static int merge_pairs(pf_dict *into, const unsigned char *data, size_t len, pf_combine_rule rule)
{
    int rc = check_pairs(data, len, rule);
    if (rc != PF_OK)
        return rc;
    struct pairs_hdr h;
    memcpy(&h, data, sizeof h);
    size_t pos = sizeof h;
    pf_dict_item one[64];
    size_t batched = 0;
    for (uint32_t i = 0; i < h.count && rc == PF_OK; i++) {
        struct pair_hdr p;
        memcpy(&p, data + pos, sizeof p);
        pos += sizeof p;
        const unsigned char *key = data + pos, *val = data + pos + p.klen;
        pos += (size_t)p.klen + p.vlen;
        switch (rule) {
        case PF_COMBINE_LAST: /* batched: pipelined on redis */
            one[batched++] = (pf_dict_item){key, p.klen, val, p.vlen};
            if (batched == PF__ARRAY_SIZE(one)) {
                rc = pf_dict_set_many(into, one, batched);
                batched = 0;
            }
            break;
        case PF_COMBINE_FIRST:
        case PF_COMBINE_ERROR: {
            bool inserted = false;
            rc = pf_dict_get_or_insert(into, key, p.klen, val, p.vlen, NULL, NULL, &inserted);
            if (rc == PF_OK && !inserted && rule == PF_COMBINE_ERROR)
                rc = PF_EEXIST;
            break;
        }
        case PF_COMBINE_SUM: {
            int64_t v;
            PF__CHECK(pf__dict_parse_i64(val, p.vlen, &v)); /* check_pairs */
            rc = pf_dict_incr(into, key, p.klen, v, NULL);
            break;
        }
        default:
            return PF_EINVAL;
        }
    }
    if (rc == PF_OK && batched)
        rc = pf_dict_set_many(into, one, batched);
    return rc;
}

static bool valid_rule(pf_combine_rule rule)
{
    return rule >= PF_COMBINE_LAST && rule <= PF_COMBINE_SUM;
}

int pf_dict_merge_result(pf_dict *into, pf_future *f, pf_combine_rule rule)
{
    if (!into || !f || !valid_rule(rule))
        return PF_EINVAL;
    const void *data;
    size_t len;
    int rc = pf_future_result(f, PF_FOREVER, &data, &len);
    if (rc != PF_OK)
        return rc;
    return merge_pairs(into, data, len, rule);
}

struct combiner {
    pf_dict *into;
    pf_combine_rule rule;
    int first_error;
};

static int combine_emit(void *user, size_t index, int status, const void *data, size_t len,
                        const char *errmsg)
{
    (void)index;
    (void)errmsg;
    struct combiner *c = user;
    if (status != PF_OK) { /* a failed task: its pairs are missing, go on */
        if (!c->first_error)
            c->first_error = status;
        return 0;
    }
    int rc = merge_pairs(c->into, data, len, c->rule);
    if (rc == PF_OK)
        return 0;
    if (!c->first_error)
        c->first_error = rc;
    return rc == PF_EEXIST || rc == PF_EPROTO || rc == PF_EINVAL ? rc : 0;
}

int pf_dict_combine(pf_dict *into, pf_executor *ex, pf_task_fn fn, const void *items, size_t n,
                    size_t item_size, pf_combine_rule rule, const pf_map_opts *opts)
{
    if (!into || !valid_rule(rule))
        return PF_EINVAL;
    struct combiner c = {.into = into, .rule = rule};
    int rc = pf_map_array(ex, fn, items, n, item_size, combine_emit, &c, opts);
    if (c.first_error)
        return c.first_error;
    return rc;
}
