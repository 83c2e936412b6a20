/*
 * reader.c — opens a GGUF file (v2 or v3), validates every byte of its header
 * and builds the index the accessors use.
 *
 * Validation happens once, at open, in two passes over the header:
 *   pass 1 walks every key/value and tensor info with bounds checks only,
 *          counting how much index memory is needed (nothing is allocated
 *          from an unchecked count: every count is bounded by the bytes left);
 *   pass 2 walks again filling one index block (kv records, tensor records,
 *          hash tables, string-array offsets, NUL-terminated names), then
 *          checks duplicates, tensor sizes (SmarterQuant-aware), data offsets,
 *          alignment and overlaps.
 * After a successful open every accessor is a plain array or hash lookup.
 * Every error names the file, the byte offset and what was wrong.
 */

#include "reader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- element sizes and the shared size rule (also used by the writer) ---- */

size_t sq__gguf_fixed_size(uint32_t type)
{
    switch (type) {
    case SQ_GGUF_UINT8: case SQ_GGUF_INT8: case SQ_GGUF_BOOL: return 1;
    case SQ_GGUF_UINT16: case SQ_GGUF_INT16: return 2;
    case SQ_GGUF_UINT32: case SQ_GGUF_INT32: case SQ_GGUF_FLOAT32: return 4;
    case SQ_GGUF_UINT64: case SQ_GGUF_INT64: case SQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

size_t sq_gguf_type_size(sq_gguf_type t) { return sq__gguf_fixed_size((uint32_t)t); }

size_t sq__gguf_min_size(uint32_t type)
{
    if (type == SQ_GGUF_STRING) return 8;
    if (type == SQ_GGUF_ARRAY) return 12;
    return sq__gguf_fixed_size(type);
}

bool sq__gguf_tensor_size(int n_dims, const int64_t *ne, int type, const int *sq_types, uint64_t *out, char *why,
                          size_t why_n)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti) {
        snprintf(why, why_n, "unknown tensor type %d", type);
        return false;
    }
    int64_t rows = 1;
    for (int d = 1; d < n_dims; d++) {
        if (__builtin_mul_overflow(rows, ne[d], &rows)) {
            snprintf(why, why_n, "element count overflows 64 bits");
            return false;
        }
    }
    uint64_t row_bytes;
    if (sq_types) {
        if (sq_types[3] != type) {
            snprintf(why, why_n, "bad smarterquant block_types: block_types[3] is %d (%s) but the declared type is %d (%s)",
                     sq_types[3], sq_type_name(sq_types[3]), type, ti->name);
            return false;
        }
        sq_error e = {0};
        size_t rb = 0;
        if (sq_mixed_row_bytes(sq_types, ne[0], &rb, &e) != SQ_OK) {
            snprintf(why, why_n, "bad smarterquant block_types: %s (row of %lld columns)", e.msg, (long long)ne[0]);
            return false;
        }
        row_bytes = rb;
    } else {
        if (ne[0] % ti->block_size != 0) {
            snprintf(why, why_n, "row length %lld is not a multiple of the block size %d of type %s",
                     (long long)ne[0], ti->block_size, ti->name);
            return false;
        }
        /* ne[0] / block_size * type_size cannot overflow: ne[0] < 2^63 and type_size < block_size * 64. */
        if (__builtin_mul_overflow((uint64_t)(ne[0] / ti->block_size), (uint64_t)ti->type_size, &row_bytes)) {
            snprintf(why, why_n, "row size overflows 64 bits");
            return false;
        }
        if (ne[0] > 0) row_bytes += (uint64_t)ti->row_meta; /* ik's row scale, as sq_row_size */
    }
    if (__builtin_mul_overflow(row_bytes, (uint64_t)rows, out)) {
        snprintf(why, why_n, "data size overflows 64 bits");
        return false;
    }
    return true;
}

/* ---- the two-pass header walk ---- */

typedef struct parser {
    sq_gguf *g;
    const uint8_t *p;
    uint64_t size, pos;
    sq_error *err;
    bool fill;              /* pass 2: write the index */
    char ctx[320];          /* "key 3 'name'" / "tensor 5 'name'" for messages */
    int64_t elem;           /* element index inside the current array, or -1 */
    uint64_t infos_end;     /* offset just after the last tensor info */
    /* pass 1 totals */
    uint64_t pool_bytes, n_str;
    /* pass 2 cursors */
    char *pool;
    uint64_t *str_index;
} parser;

/* Formats "LABEL: offset N: CTX[, element E]: message" into the error. */
static sq_status __attribute__((format(printf, 4, 5))) fail_at(parser *ps, sq_status code, uint64_t off,
                                                                 const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char elem[48] = "";
    if (ps->elem >= 0) snprintf(elem, sizeof elem, ", element %lld", (long long)ps->elem);
    return sq_error_set(ps->err, code, "%s: offset %llu: %s%s%s%s", ps->g->label, (unsigned long long)off, ps->ctx,
                        elem, ps->ctx[0] ? ": " : "", msg);
}

static uint64_t left(const parser *ps) { return ps->size - ps->pos; }

/* Checks that `what` (n bytes) is inside the file before it is read. */
static sq_status need(parser *ps, uint64_t n, const char *what)
{
    if (left(ps) >= n) return SQ_OK;
    return fail_at(ps, SQ_EFORMAT, ps->pos, "truncated: %s needs %llu bytes, %llu left", what, (unsigned long long)n,
                   (unsigned long long)left(ps));
}

static sq_status rd_u32(parser *ps, uint32_t *v, const char *what)
{
    sq_status st = need(ps, 4, what);
    if (st == SQ_OK) *v = sq__le32(ps->p + ps->pos), ps->pos += 4;
    return st;
}

static sq_status rd_u64(parser *ps, uint64_t *v, const char *what)
{
    sq_status st = need(ps, 8, what);
    if (st == SQ_OK) *v = sq__le64(ps->p + ps->pos), ps->pos += 8;
    return st;
}

/* Reads a GGUF string (u64 length + bytes): *off is the first byte. */
static sq_status rd_str(parser *ps, uint64_t *len, uint64_t *off, const char *what)
{
    const uint64_t at = ps->pos;
    uint64_t n = 0;
    sq_status st = rd_u64(ps, &n, what);
    if (st) return st;
    if (n > left(ps))
        return fail_at(ps, SQ_EFORMAT, at, "%s length %llu runs past the end of the file (%llu bytes left)", what,
                       (unsigned long long)n, (unsigned long long)left(ps));
    *len = n;
    *off = ps->pos;
    ps->pos += n;
    return SQ_OK;
}

/* A key or tensor name: 1..65535 bytes without NUL. */
static sq_status check_name(parser *ps, uint64_t at, uint64_t len, uint64_t off, const char *what)
{
    if (len == 0) return fail_at(ps, SQ_EFORMAT, at, "empty %s", what);
    if (len > SQ__GGUF_MAX_KEY)
        return fail_at(ps, SQ_EFORMAT, at, "%s of %llu bytes is longer than the limit of %u", what,
                       (unsigned long long)len, SQ__GGUF_MAX_KEY);
    if (memchr(ps->p + off, 0, len))
        return fail_at(ps, SQ_EFORMAT, at, "%s contains a NUL byte", what);
    return SQ_OK;
}

/* Copies a name into the pool (pass 2) or counts its bytes (pass 1). */
static const char *pool_add(parser *ps, uint64_t off, uint64_t len)
{
    if (!ps->fill) {
        ps->pool_bytes += len + 1;
        return NULL;
    }
    char *s = ps->pool;
    memcpy(s, ps->p + off, len);
    s[len] = '\0';
    ps->pool += len + 1;
    return s;
}

/* Walks one value of the given type. kv is the top-level record being filled
 * (pass 2) or NULL inside nested arrays. */
static sq_status walk_value(parser *ps, uint32_t type, int depth, sq__gguf_kv *kv, bool top)
{
    const uint64_t at = ps->pos;
    const size_t fs = sq__gguf_fixed_size(type);
    if (fs) {
        if (left(ps) < fs)
            return fail_at(ps, SQ_EFORMAT, at, "truncated: %s value needs %zu bytes, %llu left",
                           sq_gguf_type_name((sq_gguf_type)type), fs, (unsigned long long)left(ps));
        ps->pos += fs;
        return SQ_OK;
    }
    if (type == SQ_GGUF_STRING) {
        uint64_t len, off;
        return rd_str(ps, &len, &off, "string");
    }
    if (type != SQ_GGUF_ARRAY) return fail_at(ps, SQ_EFORMAT, at, "unknown value type %u", type);

    if (depth >= SQ__GGUF_MAX_NEST)
        return fail_at(ps, SQ_EFORMAT, at, "arrays nested deeper than %d levels", SQ__GGUF_MAX_NEST);
    uint32_t et = 0;
    uint64_t n = 0;
    sq_status st = rd_u32(ps, &et, "array element type");
    if (st) return st;
    if (et >= SQ_GGUF_TYPE_COUNT) return fail_at(ps, SQ_EFORMAT, at, "unknown array element type %u", et);
    if ((st = rd_u64(ps, &n, "array count"))) return st;
    const uint64_t min = sq__gguf_min_size(et);
    if (n > left(ps) / min)
        return fail_at(ps, SQ_EFORMAT, at + 4,
                       "array count %llu is impossible: %llu bytes are left, room for at most %llu %s elements",
                       (unsigned long long)n, (unsigned long long)left(ps), (unsigned long long)(left(ps) / min),
                       sq_gguf_type_name((sq_gguf_type)et));
    if (top && kv) {
        kv->arr_type = (sq_gguf_type)et;
        kv->arr_n = n;
        kv->arr_data = ps->pos;
    }
    const size_t efs = sq__gguf_fixed_size(et);
    if (efs) {
        ps->pos += n * efs; /* n * efs <= left: checked above */
        return SQ_OK;
    }
    const int64_t saved = ps->elem;
    if (et == SQ_GGUF_STRING) {
        uint64_t *idx = NULL;
        if (top) {
            if (ps->fill) {
                idx = ps->str_index;
                ps->str_index += n;
                if (kv) kv->str_off = idx;
            } else {
                ps->n_str += n;
            }
        }
        for (uint64_t j = 0; j < n; j++) {
            uint64_t len = 0, off = 0;
            ps->elem = (int64_t)j;
            if (idx) idx[j] = ps->pos;
            if ((st = rd_str(ps, &len, &off, "string"))) return st;
        }
    } else { /* arrays of arrays */
        for (uint64_t j = 0; j < n; j++) {
            ps->elem = (int64_t)j;
            if ((st = walk_value(ps, SQ_GGUF_ARRAY, depth + 1, NULL, false))) return st;
        }
    }
    ps->elem = saved;
    return SQ_OK;
}

/* Walks the whole header once (pass 1 or 2, per ps->fill). */
/* Reads the name of key or tensor i (a length-prefixed string), checks it,
 * and makes it the context of later messages: "tensor 3 'blk.0.attn_q.weight'". */
static sq_status rd_name(parser *ps, const char *kind, const char *what, int64_t i, uint64_t *len, uint64_t *off)
{
    const uint64_t at = ps->pos;
    snprintf(ps->ctx, sizeof ps->ctx, "%s %lld", kind, (long long)i);
    sq_status st = rd_str(ps, len, off, what);
    if (!st) st = check_name(ps, at, *len, *off, what);
    if (!st)
        snprintf(ps->ctx, sizeof ps->ctx, "%s %lld '%.*s%s'", kind, (long long)i, (int)(*len > 200 ? 200 : *len),
                 (const char *)ps->p + *off, *len > 200 ? "..." : "");
    return st;
}

static sq_status walk_header(parser *ps)
{
    sq_gguf *g = ps->g;
    sq_status st;
    ps->pos = SQ__GGUF_HEADER_BYTES;
    ps->elem = -1;
    g->alignment = SQ_GGUF_DEFAULT_ALIGNMENT;

    for (int64_t i = 0; i < g->n_kv; i++) {
        const uint64_t at = ps->pos;
        uint64_t klen = 0, koff = 0;
        if ((st = rd_name(ps, "key", "key", i, &klen, &koff))) return st;
        uint32_t type = 0;
        if ((st = rd_u32(ps, &type, "value type"))) return st;
        if (type >= SQ_GGUF_TYPE_COUNT) return fail_at(ps, SQ_EFORMAT, ps->pos - 4, "unknown value type %u", type);
        sq__gguf_kv *kv = ps->fill ? &g->kvs[i] : NULL;
        const uint64_t val_off = ps->pos;
        if ((st = walk_value(ps, type, 0, kv, true))) return st;

        static const char align_key[] = "general.alignment";
        if (klen == sizeof align_key - 1 && memcmp(ps->p + koff, align_key, klen) == 0) {
            if (type != SQ_GGUF_UINT32)
                return fail_at(ps, SQ_EFORMAT, val_off - 4, "general.alignment must be u32, not %s",
                               sq_gguf_type_name((sq_gguf_type)type));
            const uint32_t a = sq__le32(ps->p + val_off);
            if (!sq__gguf_pow2(a))
                return fail_at(ps, SQ_EFORMAT, val_off, "general.alignment %u is not a nonzero power of two", a);
            g->alignment = a;
        }
        const char *key = pool_add(ps, koff, klen);
        if (kv) {
            kv->key = key;
            kv->key_len = klen;
            kv->at = at;
            kv->type = (sq_gguf_type)type;
            kv->val_off = val_off;
            kv->val_size = ps->pos - val_off;
        }
    }

    for (int64_t i = 0; i < g->n_tensors; i++) {
        const uint64_t at = ps->pos;
        uint64_t nlen = 0, noff = 0;
        if ((st = rd_name(ps, "tensor", "tensor name", i, &nlen, &noff))) return st;
        uint32_t n_dims = 0;
        if ((st = rd_u32(ps, &n_dims, "n_dims"))) return st;
        if (n_dims < 1 || n_dims > SQ_GGUF_MAX_DIMS)
            return fail_at(ps, SQ_EFORMAT, ps->pos - 4, "n_dims %u outside 1..%d", n_dims, SQ_GGUF_MAX_DIMS);
        int64_t ne[SQ_GGUF_MAX_DIMS] = {1, 1, 1, 1};
        int64_t nel = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t v = 0;
            if ((st = rd_u64(ps, &v, "dimension"))) return st;
            if (v > (uint64_t)INT64_MAX)
                return fail_at(ps, SQ_EFORMAT, ps->pos - 8, "dimension ne[%u] = %llu is negative as int64", d,
                               (unsigned long long)v);
            ne[d] = (int64_t)v;
            if (__builtin_mul_overflow(nel, ne[d], &nel))
                return fail_at(ps, SQ_EFORMAT, ps->pos - 8, "element count overflows int64 at ne[%u] = %lld", d,
                               (long long)ne[d]);
        }
        uint32_t type = 0;
        if ((st = rd_u32(ps, &type, "tensor type"))) return st;
        if (!sq_type_info_get((int)type))
            return fail_at(ps, SQ_EFORMAT, ps->pos - 4, "unknown tensor type %u", type);
        uint64_t off = 0;
        if ((st = rd_u64(ps, &off, "tensor data offset"))) return st;
        const char *name = pool_add(ps, noff, nlen);
        if (ps->fill) {
            sq_gguf_tensor *t = &g->tensors[i];
            t->name = name;
            t->n_dims = (int)n_dims;
            memcpy(t->ne, ne, sizeof ne);
            t->type = (int)type;
            t->offset = off;
            g->tensor_at[i] = at;
        }
    }
    ps->ctx[0] = '\0';
    ps->infos_end = ps->pos;
    return SQ_OK;
}

/* ---- hashing (FNV-1a over a name given in two parts) ---- */

uint64_t sq__gguf_hash2(const char *a, size_t alen, const char *b, size_t blen)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < alen; i++) h = (h ^ (uint8_t)a[i]) * 1099511628211ull;
    for (size_t i = 0; i < blen; i++) h = (h ^ (uint8_t)b[i]) * 1099511628211ull;
    return h;
}

int64_t sq__gguf_find_key2(const sq_gguf *g, const char *a, size_t alen, const char *b, size_t blen)
{
    if (!g || g->n_kv == 0) return -1;
    uint64_t s = sq__gguf_hash2(a, alen, b, blen) & g->kv_hash_mask;
    for (;;) {
        const int64_t v = g->kv_hash[s];
        if (v == 0) return -1;
        const sq__gguf_kv *kv = &g->kvs[v - 1];
        if (kv->key_len == alen + blen && memcmp(kv->key, a, alen) == 0 && memcmp(kv->key + alen, b, blen) == 0)
            return v - 1;
        s = (s + 1) & g->kv_hash_mask;
    }
}

static uint64_t hash_cap(int64_t n)
{
    uint64_t c = 8;
    while (c < (uint64_t)n * 2) c <<= 1;
    return c;
}

/* Inserts every key into the hash table; a second copy of a key is an error. */
static sq_status index_keys(parser *ps)
{
    sq_gguf *g = ps->g;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const sq__gguf_kv *kv = &g->kvs[i];
        uint64_t s = sq__gguf_hash2(kv->key, kv->key_len, "", 0) & g->kv_hash_mask;
        while (g->kv_hash[s]) {
            const sq__gguf_kv *o = &g->kvs[g->kv_hash[s] - 1];
            if (o->key_len == kv->key_len && memcmp(o->key, kv->key, kv->key_len) == 0)
                return fail_at(ps, SQ_EFORMAT, kv->at, "duplicate key '%s' (key %lld; first seen as key %lld at offset %llu)",
                               kv->key, (long long)i, (long long)(g->kv_hash[s] - 1), (unsigned long long)o->at);
            s = (s + 1) & g->kv_hash_mask;
        }
        g->kv_hash[s] = i + 1;
    }
    return SQ_OK;
}

static sq_status index_tensors(parser *ps)
{
    sq_gguf *g = ps->g;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const sq_gguf_tensor *t = &g->tensors[i];
        const size_t len = strlen(t->name);
        uint64_t s = sq__gguf_hash2(t->name, len, "", 0) & g->t_hash_mask;
        while (g->t_hash[s]) {
            const int64_t o = g->t_hash[s] - 1;
            if (strcmp(g->tensors[o].name, t->name) == 0)
                return fail_at(ps, SQ_EFORMAT, g->tensor_at[i],
                               "duplicate tensor name '%s' (tensor %lld; first seen as tensor %lld at offset %llu)",
                               t->name, (long long)i, (long long)o, (unsigned long long)g->tensor_at[o]);
            s = (s + 1) & g->t_hash_mask;
        }
        g->t_hash[s] = i + 1;
    }
    return SQ_OK;
}

/* Reads tensor i's SmarterQuant keys (sqmeta.c's rules): sets
 * t->smarterquant and t->sq, its permutation parsed, checked and kept in
 * g->sq_perms[i]. */
static sq_status smarterquant_meta(parser *ps, int64_t i)
{
    sq_gguf *g = ps->g;
    sq_gguf_tensor *t = &g->tensors[i];
    sq__gguf_val v[3];
    sq__gguf_sqmeta_reader_vals(g, t->name, v);
    sq__gguf_sqscan s;
    uint64_t at = 0;
    char why[400];
    if (sq__gguf_sqmeta_scan(t->name, t->ne[0], v, &s, &at, why, sizeof why) != SQ_OK)
        return fail_at(ps, SQ_EFORMAT, at ? at : g->tensor_at[i], "%s", why);
    if (!s.on) return SQ_OK;
    t->smarterquant = true;
    memcpy(t->sq.types, s.types, sizeof s.types);
    t->sq.n_cols = t->ne[0];
    if (s.n_perm == 0) return SQ_OK;
    if (!g->sq_perms && !(g->sq_perms = calloc((size_t)g->n_tensors, sizeof *g->sq_perms)))
        return fail_at(ps, SQ_ENOMEM, at, "out of memory for the permutations");
    int32_t *perm = malloc((size_t)s.n_perm * sizeof *perm);
    if (!perm)
        return fail_at(ps, SQ_ENOMEM, at, "out of memory for the permutation of %lld columns of tensor '%s'",
                       (long long)s.n_perm, t->name);
    g->sq_perms[i] = perm;
    if (sq__gguf_sqmeta_perm(t->name, &s, perm, why, sizeof why) != SQ_OK)
        return fail_at(ps, SQ_EFORMAT, at, "%s", why);
    t->sq.perm = perm;
    return SQ_OK;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const sq_gguf_tensor *x = *(const sq_gguf_tensor *const *)a, *y = *(const sq_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Sizes, offsets, alignment and overlaps of the tensor data. */
static sq_status check_tensors(parser *ps, const sq_gguf_tensor **sorted)
{
    sq_gguf *g = ps->g;
    sq_status st;
    g->data_offset = sq__gguf_align(ps->infos_end, g->alignment);
    if (g->n_tensors > 0 && g->data_offset > g->size)
        return fail_at(ps, SQ_EFORMAT, ps->infos_end,
                       "truncated: the data section would start at offset %llu (aligned to %llu) but the file has "
                       "%llu bytes",
                       (unsigned long long)g->data_offset, (unsigned long long)g->alignment,
                       (unsigned long long)g->size);
    const uint64_t room = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        sq_gguf_tensor *t = &g->tensors[i];
        if ((st = smarterquant_meta(ps, i))) return st;
        char why[300];
        if (!sq__gguf_tensor_size(t->n_dims, t->ne, t->type, t->smarterquant ? t->sq.types : NULL, &t->nbytes, why,
                                  sizeof why))
            return fail_at(ps, SQ_EFORMAT, g->tensor_at[i], "tensor '%s': %s", t->name, why);
        if (t->offset % g->alignment != 0)
            return fail_at(ps, SQ_EFORMAT, g->tensor_at[i],
                           "tensor '%s': data offset %llu is not a multiple of the alignment %llu", t->name,
                           (unsigned long long)t->offset, (unsigned long long)g->alignment);
        if (t->offset > room || t->nbytes > room - t->offset)
            return fail_at(ps, SQ_EFORMAT, g->tensor_at[i],
                           "tensor '%s': data [%llu, %llu + %llu) runs past the end of the file (data section "
                           "at %llu holds %llu bytes)",
                           t->name, (unsigned long long)t->offset, (unsigned long long)t->offset,
                           (unsigned long long)t->nbytes, (unsigned long long)g->data_offset,
                           (unsigned long long)room);
        t->data = g->base + g->data_offset + t->offset;
        sorted[i] = t;
    }
    if (g->n_tensors > 1) qsort(sorted, (size_t)g->n_tensors, sizeof *sorted, cmp_tensor_offset);
    /* in offset order, each non-empty tensor must start at or after the furthest end seen so far */
    const sq_gguf_tensor *far = NULL;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const sq_gguf_tensor *b = sorted[i];
        if (far && b->nbytes > 0 && b->offset < far->offset + far->nbytes)
            return fail_at(ps, SQ_EFORMAT, g->tensor_at[b - g->tensors],
                           "tensor '%s': data [%llu, %llu) overlaps tensor '%s' [%llu, %llu)", b->name,
                           (unsigned long long)b->offset, (unsigned long long)(b->offset + b->nbytes), far->name,
                           (unsigned long long)far->offset, (unsigned long long)(far->offset + far->nbytes));
        if (!far || b->offset + b->nbytes > far->offset + far->nbytes) far = b;
    }
    return SQ_OK;
}

/* Adds n bytes (8-aligned) to a layout total; false on overflow. */
static bool layout_add(uint64_t *total, uint64_t n, uint64_t *at)
{
    *at = *total;
    n = (n + 7) & ~(uint64_t)7;
    return !__builtin_add_overflow(*total, n, total);
}

/* Validates the buffer and builds the handle (g->base/size/label are set). */
static sq_status parse(sq_gguf *g, sq_error *err)
{
    parser ps = {.g = g, .p = g->base, .size = g->size, .err = err, .elem = -1};
    if (g->size < SQ__GGUF_HEADER_BYTES)
        return fail_at(&ps, SQ_EFORMAT, 0, "file is %llu bytes, too small for a GGUF header (%u bytes)",
                       (unsigned long long)g->size, SQ__GGUF_HEADER_BYTES);
    const uint32_t magic = sq__le32(g->base);
    if (magic != SQ__GGUF_MAGIC)
        return fail_at(&ps, SQ_EFORMAT, 0, "bad magic %02x %02x %02x %02x: not a GGUF file (want \"GGUF\")",
                       g->base[0], g->base[1], g->base[2], g->base[3]);
    g->version = sq__le32(g->base + 4);
    if (g->version == 0x03000000u || g->version == 0x02000000u)
        return fail_at(&ps, SQ_EUNSUPPORTED, 4, "big-endian GGUF (version bytes %08x) is not supported",
                       g->version);
    if (g->version != 2 && g->version != 3)
        return fail_at(&ps, SQ_EUNSUPPORTED, 4, "unsupported GGUF version %u (this reader reads versions 2 and 3)",
                       g->version);
    const uint64_t nt = sq__le64(g->base + 8), nkv = sq__le64(g->base + 16);
    const uint64_t rest = g->size - SQ__GGUF_HEADER_BYTES;
    if (nkv > rest / 13)
        return fail_at(&ps, SQ_EFORMAT, 16,
                       "key/value count %llu is impossible: the %llu bytes after the header hold at most %llu",
                       (unsigned long long)nkv, (unsigned long long)rest, (unsigned long long)(rest / 13));
    if (nt > (rest - nkv * 13) / 33)
        return fail_at(&ps, SQ_EFORMAT, 8,
                       "tensor count %llu is impossible: the %llu bytes after the header hold at most %llu",
                       (unsigned long long)nt, (unsigned long long)rest,
                       (unsigned long long)((rest - nkv * 13) / 33));
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;

    /* pass 1: bounds and types only; totals for the index */
    sq_status st = walk_header(&ps);
    if (st) return st;

    /* one block for the whole index; every count below is bounded by the file size */
    uint64_t total = 0, o_kvs, o_t, o_tat, o_sorted, o_kh, o_th, o_str, o_pool;
    const uint64_t kcap = hash_cap(g->n_kv), tcap = hash_cap(g->n_tensors);
    if (!layout_add(&total, nkv * sizeof(sq__gguf_kv), &o_kvs) ||
        !layout_add(&total, nt * sizeof(sq_gguf_tensor), &o_t) || !layout_add(&total, nt * 8, &o_tat) ||
        !layout_add(&total, nt * sizeof(void *), &o_sorted) || !layout_add(&total, kcap * 8, &o_kh) ||
        !layout_add(&total, tcap * 8, &o_th) || !layout_add(&total, ps.n_str * 8, &o_str) ||
        !layout_add(&total, ps.pool_bytes, &o_pool) || total > SIZE_MAX)
        return fail_at(&ps, SQ_ENOMEM, 0, "index size overflows");
    uint8_t *blk = calloc(1, (size_t)total ? (size_t)total : 1);
    if (!blk)
        return fail_at(&ps, SQ_ENOMEM, 0, "cannot allocate %llu bytes for the header index",
                       (unsigned long long)total);
    g->block = blk;
    g->kvs = (sq__gguf_kv *)(blk + o_kvs);
    g->tensors = (sq_gguf_tensor *)(blk + o_t);
    g->tensor_at = (uint64_t *)(blk + o_tat);
    const sq_gguf_tensor **sorted = (const sq_gguf_tensor **)(blk + o_sorted);
    g->kv_hash = (int64_t *)(blk + o_kh);
    g->kv_hash_mask = kcap - 1;
    g->t_hash = (int64_t *)(blk + o_th);
    g->t_hash_mask = tcap - 1;
    ps.str_index = (uint64_t *)(blk + o_str);
    ps.pool = (char *)(blk + o_pool);

    /* pass 2: fill, then the checks that need the whole picture */
    ps.fill = true;
    if ((st = walk_header(&ps))) return st;
    if ((st = index_keys(&ps))) return st;
    if ((st = index_tensors(&ps))) return st;
    return check_tensors(&ps, sorted);
}

/* Allocates a handle with a copy of the label. */
static sq_gguf *new_handle(const char *label)
{
    const size_t n = strlen(label);
    sq_gguf *g = calloc(1, sizeof *g + n + 1);
    if (g) memcpy(g->label, label, n + 1);
    return g;
}

sq_status sq_gguf_open_memory(const void *data, size_t size, const char *label, sq_gguf **out, sq_error *err)
{
    if (!out) return sq_error_set(err, SQ_EINVAL, "sq_gguf_open_memory: out is NULL");
    *out = NULL;
    if (!data && size) return sq_error_set(err, SQ_EINVAL, "sq_gguf_open_memory: data is NULL");
    sq_gguf *g = new_handle(label ? label : "<memory>");
    if (!g) return sq_error_set(err, SQ_ENOMEM, "out of memory opening %s", label ? label : "<memory>");
    static const uint8_t empty[1];
    g->base = data ? data : empty;
    g->size = size;
    sq_status st = parse(g, err);
    if (st) {
        sq_gguf_close(g);
        return st;
    }
    *out = g;
    return SQ_OK;
}

sq_status sq_gguf_open(const char *path, sq_gguf **out, sq_error *err)
{
    if (!out || !path) return sq_error_set(err, SQ_EINVAL, "sq_gguf_open: path or out is NULL");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sq_error_set(err, SQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        close(fd);
        return sq_error_set(err, SQ_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sq_error_set(err, SQ_EIO, "%s: not a regular file", path);
    }
    sq_gguf *g = new_handle(path);
    if (!g) {
        close(fd);
        return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", path);
    }
    g->size = (uint64_t)st.st_size;
    if (g->size == 0) {
        static const uint8_t empty[1];
        g->base = empty;
    } else {
        void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            close(fd);
            free(g);
            return sq_error_set(err, SQ_EIO, "%s: cannot mmap %llu bytes: %s", path, (unsigned long long)st.st_size,
                                strerror(e));
        }
        g->base = m;
        g->mapped = true;
    }
    close(fd); /* the mapping keeps the file */
    sq_status s = parse(g, err);
    if (s) {
        sq_gguf_close(g);
        return s;
    }
    *out = g;
    return SQ_OK;
}

/* Maps every page of the file(s) in now, from the page cache, reading what
 * is not cached yet. Without it a page is mapped at its first touch, one
 * minor fault each: a mixture-of-experts model touches new experts' pages for
 * its first hundreds of tokens, a fault storm in the middle of generation.
 * llama.cpp maps with MAP_POPULATE for the same reason. A file larger than
 * the machine's memory is left alone (its pages could not all stay), and a
 * kernel without MADV_POPULATE_READ (before Linux 5.14, which refuses it)
 * gets the readahead hint instead. The mapping is read-only file pages: no
 * private memory. */
void sq_gguf_prefault(const sq_gguf *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_shards; i++) sq_gguf_prefault(g->shards[i]);
    if (!g->mapped) return;
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && g->size > (uint64_t)pages * (uint64_t)page) return;
#ifdef MADV_POPULATE_READ
    if (madvise((void *)g->base, (size_t)g->size, MADV_POPULATE_READ) == 0) return;
#endif
    (void)madvise((void *)g->base, (size_t)g->size, MADV_WILLNEED);
}

void sq_gguf_close(sq_gguf *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_shards; i++) sq_gguf_close(g->shards[i]);
    free(g->shards);
    for (int64_t i = 0; g->sq_perms && i < g->n_tensors; i++) free(g->sq_perms[i]);
    free(g->sq_perms);
    if (g->mapped) munmap((void *)g->base, (size_t)g->size);
    free(g->block);
    free(g);
}

/* ---- plain accessors ---- */

uint32_t sq_gguf_version(const sq_gguf *g) { return g ? g->version : 0; }
size_t sq_gguf_alignment(const sq_gguf *g) { return g ? (size_t)g->alignment : SQ_GGUF_DEFAULT_ALIGNMENT; }
uint64_t sq_gguf_data_offset(const sq_gguf *g) { return g ? g->data_offset : 0; }
uint64_t sq_gguf_file_size(const sq_gguf *g) { return g ? g->size : 0; }
const char *sq_gguf_path(const sq_gguf *g) { return g ? g->label : NULL; }

int64_t sq_gguf_n_tensors(const sq_gguf *g) { return g ? g->n_tensors : 0; }

const sq_gguf_tensor *sq_gguf_tensor_at(const sq_gguf *g, int64_t i)
{
    if (!g || i < 0 || i >= g->n_tensors) return NULL;
    return &g->tensors[i];
}

const sq_gguf_tensor *sq_gguf_find_tensor(const sq_gguf *g, const char *name)
{
    if (!g || !name || g->n_tensors == 0) return NULL;
    const size_t len = strlen(name);
    uint64_t s = sq__gguf_hash2(name, len, "", 0) & g->t_hash_mask;
    for (;;) {
        const int64_t v = g->t_hash[s];
        if (v == 0) return NULL;
        if (strcmp(g->tensors[v - 1].name, name) == 0) return &g->tensors[v - 1];
        s = (s + 1) & g->t_hash_mask;
    }
}

int64_t sq_gguf_tensor_index(const sq_gguf *g, const sq_gguf_tensor *t)
{
    if (!g || !t || t < g->tensors || t >= g->tensors + g->n_tensors) return -1;
    return t - g->tensors;
}
