/*
 * kv.c — key/value access on an opened GGUF: index accessors, typed getters
 * with clear type errors, array element access, and value formatting (text
 * for humans, JSON for scripts) used by `sq inspect` and any tool that logs
 * metadata.
 *
 * Everything here reads bytes that reader.c validated at open, so walks over
 * values (nested arrays included) need no further bounds checks beyond the
 * index arguments a caller passes.
 */
#include "reader_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sq_gguf_type_name(sq_gguf_type t)
{
    switch (t) {
    case SQ_GGUF_UINT8: return "u8";
    case SQ_GGUF_INT8: return "i8";
    case SQ_GGUF_UINT16: return "u16";
    case SQ_GGUF_INT16: return "i16";
    case SQ_GGUF_UINT32: return "u32";
    case SQ_GGUF_INT32: return "i32";
    case SQ_GGUF_FLOAT32: return "f32";
    case SQ_GGUF_BOOL: return "bool";
    case SQ_GGUF_STRING: return "string";
    case SQ_GGUF_ARRAY: return "array";
    case SQ_GGUF_UINT64: return "u64";
    case SQ_GGUF_INT64: return "i64";
    case SQ_GGUF_FLOAT64: return "f64";
    default: return "unknown";
    }
}

/* ---- index accessors ---- */

static const sq__gguf_kv *kv_at(const sq_gguf *g, int64_t i)
{
    if (!g || i < 0 || i >= g->n_kv) return NULL;
    return &g->kvs[i];
}

int64_t sq_gguf_n_kv(const sq_gguf *g) { return g ? g->n_kv : 0; }

int64_t sq_gguf_find_key(const sq_gguf *g, const char *key)
{
    if (!g || !key) return -1;
    return sq__gguf_find_key2(g, key, strlen(key), "", 0);
}

const char *sq_gguf_key(const sq_gguf *g, int64_t i)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

sq_gguf_type sq_gguf_kv_type(const sq_gguf *g, int64_t i)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : SQ_GGUF_TYPE_COUNT;
}

sq_gguf_type sq_gguf_arr_type(const sq_gguf *g, int64_t i)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == SQ_GGUF_ARRAY ? kv->arr_type : SQ_GGUF_TYPE_COUNT;
}

uint64_t sq_gguf_arr_n(const sq_gguf *g, int64_t i)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == SQ_GGUF_ARRAY ? kv->arr_n : 0;
}

const void *sq_gguf_arr_data(const sq_gguf *g, int64_t i)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != SQ_GGUF_ARRAY || !sq__gguf_fixed_size(kv->arr_type)) return NULL;
    return g->base + kv->arr_data;
}

sq_gguf_str sq_gguf_arr_str(const sq_gguf *g, int64_t i, uint64_t j)
{
    sq_gguf_str s = {NULL, 0};
    const sq__gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != SQ_GGUF_ARRAY || kv->arr_type != SQ_GGUF_STRING || j >= kv->arr_n) return s;
    const uint64_t at = kv->str_off[j];
    s.len = sq__le64(g->base + at);
    s.ptr = (const char *)g->base + at + 8;
    return s;
}

const void *sq_gguf_kv_raw(const sq_gguf *g, int64_t i, uint64_t *nbytes)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    if (!kv) {
        if (nbytes) *nbytes = 0;
        return NULL;
    }
    if (nbytes) *nbytes = kv->val_size;
    return g->base + kv->val_off;
}

/* ---- scalar decoding ---- */

static bool is_int_type(sq_gguf_type t)
{
    return t == SQ_GGUF_UINT8 || t == SQ_GGUF_INT8 || t == SQ_GGUF_UINT16 || t == SQ_GGUF_INT16 ||
           t == SQ_GGUF_UINT32 || t == SQ_GGUF_INT32 || t == SQ_GGUF_UINT64 || t == SQ_GGUF_INT64;
}

/* Decodes an integer element at p. Unsigned 64-bit values above INT64_MAX
 * set *big and leave *v undefined. */
static void decode_int(const uint8_t *p, sq_gguf_type t, int64_t *v, bool *big)
{
    *big = false;
    switch (t) {
    case SQ_GGUF_UINT8: *v = p[0]; break;
    case SQ_GGUF_INT8: *v = (int8_t)p[0]; break;
    case SQ_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *v = x; break; }
    case SQ_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *v = x; break; }
    case SQ_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *v = x; break; }
    case SQ_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *v = x; break; }
    case SQ_GGUF_UINT64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX) *big = true;
        else *v = (int64_t)x;
        break;
    }
    case SQ_GGUF_INT64: memcpy(v, p, 8); break;
    default: *v = 0; break;
    }
}

static double decode_float(const uint8_t *p, sq_gguf_type t)
{
    if (t == SQ_GGUF_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    double d;
    memcpy(&d, p, 8);
    return d;
}

/* Finds key or explains its absence; checks the type with ok(type). */
static sq_status lookup(const sq_gguf *g, const char *key, const sq__gguf_kv **out, bool (*ok)(sq_gguf_type),
                        const char *wanted, sq_error *err)
{
    if (!g || !key) return sq_error_set(err, SQ_EINVAL, "gguf getter: NULL handle or key");
    const int64_t i = sq_gguf_find_key(g, key);
    if (i < 0) return sq_error_set(err, SQ_ENOTFOUND, "%s: key '%s' not found", g->label, key);
    const sq__gguf_kv *kv = &g->kvs[i];
    if (!ok(kv->type)) {
        if (kv->type == SQ_GGUF_ARRAY)
            return sq_error_set(err, SQ_ETYPE, "%s: key '%s' has type array of %s, wanted %s", g->label, key,
                                sq_gguf_type_name(kv->arr_type), wanted);
        return sq_error_set(err, SQ_ETYPE, "%s: key '%s' has type %s, wanted %s", g->label, key,
                            sq_gguf_type_name(kv->type), wanted);
    }
    *out = kv;
    return SQ_OK;
}

static bool ok_int(sq_gguf_type t) { return is_int_type(t); }
static bool ok_float(sq_gguf_type t) { return t == SQ_GGUF_FLOAT32 || t == SQ_GGUF_FLOAT64; }
static bool ok_bool(sq_gguf_type t) { return t == SQ_GGUF_BOOL; }
static bool ok_str(sq_gguf_type t) { return t == SQ_GGUF_STRING; }
static bool ok_arr(sq_gguf_type t) { return t == SQ_GGUF_ARRAY; }

sq_status sq_gguf_get_i64(const sq_gguf *g, const char *key, int64_t *out, sq_error *err)
{
    const sq__gguf_kv *kv;
    sq_status st = lookup(g, key, &kv, ok_int, "an integer", err);
    if (st) return st;
    bool big;
    int64_t v;
    decode_int(g->base + kv->val_off, kv->type, &v, &big);
    if (big) {
        uint64_t u;
        memcpy(&u, g->base + kv->val_off, 8);
        return sq_error_set(err, SQ_ERANGE, "%s: key '%s' = %llu does not fit in i64", g->label, key,
                            (unsigned long long)u);
    }
    if (out) *out = v;
    return SQ_OK;
}

sq_status sq_gguf_get_u32(const sq_gguf *g, const char *key, uint32_t *out, sq_error *err)
{
    const sq__gguf_kv *kv;
    sq_status st = lookup(g, key, &kv, ok_int, "an integer (u32)", err);
    if (st) return st;
    bool big;
    int64_t v;
    decode_int(g->base + kv->val_off, kv->type, &v, &big);
    if (big || v < 0 || v > (int64_t)UINT32_MAX) {
        char val[32];
        if (big) {
            uint64_t u;
            memcpy(&u, g->base + kv->val_off, 8);
            snprintf(val, sizeof val, "%llu", (unsigned long long)u);
        } else {
            snprintf(val, sizeof val, "%lld", (long long)v);
        }
        return sq_error_set(err, SQ_ERANGE, "%s: key '%s' = %s (%s) does not fit in u32", g->label, key, val,
                            sq_gguf_type_name(kv->type));
    }
    if (out) *out = (uint32_t)v;
    return SQ_OK;
}

sq_status sq_gguf_get_f32(const sq_gguf *g, const char *key, float *out, sq_error *err)
{
    const sq__gguf_kv *kv;
    sq_status st = lookup(g, key, &kv, ok_float, "f32", err);
    if (st) return st;
    if (out) *out = (float)decode_float(g->base + kv->val_off, kv->type);
    return SQ_OK;
}

sq_status sq_gguf_get_bool(const sq_gguf *g, const char *key, bool *out, sq_error *err)
{
    const sq__gguf_kv *kv;
    sq_status st = lookup(g, key, &kv, ok_bool, "bool", err);
    if (st) return st;
    if (out) *out = g->base[kv->val_off] != 0;
    return SQ_OK;
}

sq_status sq_gguf_get_str(const sq_gguf *g, const char *key, sq_gguf_str *out, sq_error *err)
{
    const sq__gguf_kv *kv;
    sq_status st = lookup(g, key, &kv, ok_str, "string", err);
    if (st) return st;
    if (out) {
        out->len = sq__le64(g->base + kv->val_off);
        out->ptr = (const char *)g->base + kv->val_off + 8;
    }
    return SQ_OK;
}

sq_status sq_gguf_get_arr(const sq_gguf *g, const char *key, int64_t *index, sq_gguf_type *elem_type, uint64_t *n,
                          sq_error *err)
{
    const sq__gguf_kv *kv;
    sq_status st = lookup(g, key, &kv, ok_arr, "array", err);
    if (st) return st;
    if (index) *index = kv - g->kvs;
    if (elem_type) *elem_type = kv->arr_type;
    if (n) *n = kv->arr_n;
    return SQ_OK;
}

/* Checks that kv i is an array of a fixed-size type accepted by ok() and
 * that j is in range; returns the element's bytes. */
static sq_status arr_elem(const sq_gguf *g, int64_t i, uint64_t j, bool (*ok)(sq_gguf_type), const char *wanted,
                          const uint8_t **p, sq_gguf_type *t, sq_error *err)
{
    const sq__gguf_kv *kv = kv_at(g, i);
    if (!kv) return sq_error_set(err, SQ_EINVAL, "gguf: key index %lld out of range", (long long)i);
    if (kv->type != SQ_GGUF_ARRAY || !ok(kv->arr_type))
        return sq_error_set(err, SQ_ETYPE, "%s: key '%s' is %s%s, wanted an array of %s", g->label, kv->key,
                            kv->type == SQ_GGUF_ARRAY ? "an array of " : "", sq_gguf_type_name(
                                kv->type == SQ_GGUF_ARRAY ? kv->arr_type : kv->type), wanted);
    if (j >= kv->arr_n)
        return sq_error_set(err, SQ_ERANGE, "%s: key '%s': element %llu out of range (%llu elements)", g->label,
                            kv->key, (unsigned long long)j, (unsigned long long)kv->arr_n);
    *t = kv->arr_type;
    *p = g->base + kv->arr_data + j * sq__gguf_fixed_size(kv->arr_type);
    return SQ_OK;
}

sq_status sq_gguf_arr_get_int(const sq_gguf *g, int64_t i, uint64_t j, int64_t *out, sq_error *err)
{
    const uint8_t *p;
    sq_gguf_type t;
    sq_status st = arr_elem(g, i, j, ok_int, "integers", &p, &t, err);
    if (st) return st;
    bool big;
    int64_t v;
    decode_int(p, t, &v, &big);
    if (big)
        return sq_error_set(err, SQ_ERANGE, "%s: key '%s': element %llu does not fit in i64", g->label,
                            g->kvs[i].key, (unsigned long long)j);
    if (out) *out = v;
    return SQ_OK;
}

sq_status sq_gguf_arr_get_float(const sq_gguf *g, int64_t i, uint64_t j, double *out, sq_error *err)
{
    const uint8_t *p;
    sq_gguf_type t;
    sq_status st = arr_elem(g, i, j, ok_float, "f32 or f64", &p, &t, err);
    if (st) return st;
    if (out) *out = decode_float(p, t);
    return SQ_OK;
}

/* ---- formatting ---- */

/* Values are formatted into the caller's buffer through a fixed sq_buf
 * (snprintf-style: everything is counted, what fits is stored). */

/* Shortest %.*g that reads back to the same value (f32: 6..9 digits, f64: 15..17). */
static void put_float(sq_buf *a, double v, bool is_f32, bool json)
{
    char tmp[48];
    if (!isfinite(v)) {
        sq_buf_str(a, json ? "null" : (isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf")));
        return;
    }
    for (int prec = is_f32 ? 6 : 15; prec <= (is_f32 ? 9 : 17); prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (is_f32 ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    sq_buf_str(a, tmp);
}

/* Length of a valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    const uint8_t c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A quoted string. Text: C-style escapes, cut after `limit` bytes (0 = all)
 * at a character boundary. JSON: JSON escapes, invalid UTF-8 as U+FFFD. */
static void put_string(sq_buf *a, const uint8_t *s, uint64_t n, uint64_t limit, bool json)
{
    char tmp[16];
    bool cut = false;
    if (!json && limit && n > limit) {
        n = limit;
        while (n > 0 && (s[n] & 0xc0) == 0x80) n--; /* do not split a character */
        cut = true;
    }
    sq_buf_add(a, "\"", 1);
    for (uint64_t i = 0; i < n;) {
        const uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            sq_buf_add(a, tmp, 2);
            i++;
        } else if (c == '\n') { sq_buf_str(a, "\\n"); i++; }
        else if (c == '\t') { sq_buf_str(a, "\\t"); i++; }
        else if (c == '\r') { sq_buf_str(a, "\\r"); i++; }
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, json ? "\\u%04x" : "\\x%02x", c);
            sq_buf_str(a, tmp);
            i++;
        } else if (c < 0x80) {
            sq_buf_add(a, (const char *)&s[i], 1);
            i++;
        } else {
            const size_t l = utf8_len(s + i, (size_t)(n - i));
            if (l) {
                sq_buf_add(a, (const char *)&s[i], l);
                i += l;
            } else {
                if (json) sq_buf_str(a, "\\ufffd");
                else {
                    snprintf(tmp, sizeof tmp, "\\x%02x", c);
                    sq_buf_str(a, tmp);
                }
                i++;
            }
        }
    }
    sq_buf_add(a, "\"", 1);
    if (cut) sq_buf_str(a, "...");
}

#define SQ__TEXT_STRING_LIMIT 160

/* Offset just after the (validated) value of type t at off. */
static uint64_t skip_value(const sq_gguf *g, uint64_t off, sq_gguf_type t)
{
    const size_t fs = sq__gguf_fixed_size(t);
    if (fs) return off + fs;
    if (t == SQ_GGUF_STRING) return off + 8 + sq__le64(g->base + off);
    if (t != SQ_GGUF_ARRAY) return off;
    const sq_gguf_type et = (sq_gguf_type)sq__le32(g->base + off);
    const uint64_t n = sq__le64(g->base + off + 4);
    const size_t efs = sq__gguf_fixed_size(et);
    if (efs) return off + 12 + n * efs;
    uint64_t at = off + 12;
    for (uint64_t j = 0; j < n; j++) at = skip_value(g, at, et);
    return at;
}

/* Formats the value of type t at offset off; returns the offset after it. */
static uint64_t put_value(sq_buf *a, const sq_gguf *g, uint64_t off, sq_gguf_type t, uint64_t max, bool json)
{
    const uint8_t *p = g->base + off;
    char tmp[48];
    if (is_int_type(t)) {
        bool big;
        int64_t v;
        decode_int(p, t, &v, &big);
        if (big) {
            uint64_t u;
            memcpy(&u, p, 8);
            snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)u);
        } else {
            snprintf(tmp, sizeof tmp, "%lld", (long long)v);
        }
        sq_buf_str(a, tmp);
        return off + sq__gguf_fixed_size(t);
    }
    switch (t) {
    case SQ_GGUF_FLOAT32:
    case SQ_GGUF_FLOAT64:
        put_float(a, decode_float(p, t), t == SQ_GGUF_FLOAT32, json);
        return off + sq__gguf_fixed_size(t);
    case SQ_GGUF_BOOL:
        sq_buf_str(a, p[0] ? "true" : "false");
        return off + 1;
    case SQ_GGUF_STRING: {
        const uint64_t n = sq__le64(p);
        put_string(a, p + 8, n, max ? SQ__TEXT_STRING_LIMIT : 0, json);
        return off + 8 + n;
    }
    case SQ_GGUF_ARRAY: {
        const sq_gguf_type et = (sq_gguf_type)sq__le32(p);
        const uint64_t n = sq__le64(p + 4);
        uint64_t at = off + 12;
        sq_buf_add(a, "[", 1);
        const size_t fs = sq__gguf_fixed_size(et);
        for (uint64_t j = 0; j < n; j++) {
            if (max && j >= max) {
                if (j == max && !json) sq_buf_str(a, ", ...");
                if (fs) break;
                at = skip_value(g, at, et); /* still walk to the end of the array */
                continue;
            }
            if (j) sq_buf_str(a, ", ");
            at = put_value(a, g, at, et, max, json);
        }
        sq_buf_add(a, "]", 1);
        return fs ? off + 12 + n * fs : at;
    }
    default:
        sq_buf_str(a, "?");
        return off;
    }
}

size_t sq_gguf_kv_format(const sq_gguf *g, int64_t i, uint64_t max_elems, unsigned flags, char *buf, size_t n)
{
    sq_buf a = sq_buf_fixed(buf, n);
    const sq__gguf_kv *kv = kv_at(g, i);
    if (kv) put_value(&a, g, kv->val_off, kv->type, max_elems, (flags & SQ_GGUF_FMT_JSON) != 0);
    return a.n;
}

size_t sq_gguf_format_string(const char *s, size_t len, uint64_t limit, unsigned flags, char *buf, size_t n)
{
    sq_buf a = sq_buf_fixed(buf, n);
    put_string(&a, (const uint8_t *)s, len, limit, (flags & SQ_GGUF_FMT_JSON) != 0);
    return a.n;
}
