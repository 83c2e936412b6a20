/*
 * sqmeta.c — the one owner of a tensor's SmarterQuant metadata (spec
 * section 5): the three key suffixes, the JSON text of their values (parse
 * and format), the checks of what they say (block types a JSON array of four
 * ids, the permutation one of the tensor's columns), the typed view the
 * reader hands out, and the bytes the keys take in a header.
 *
 * The reader (reader.c, at open) and the writer (writer.c, before its
 * header) both read the keys through sq__gguf_sqmeta_scan, so a file the
 * writer finishes always opens. Sizes from the block types are
 * sq__gguf_tensor_size's (reader.c), on top of sq_mixed_row_bytes.
 */
#include "reader_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The key suffixes, indexed by SQ__SQ_ENABLED / SQ__SQ_PERM / SQ__SQ_TYPES. */
static const char *const suffix[3] = {".smarterquant.enabled", ".smarterquant.permutation",
                                      ".smarterquant.block_types"};

char *sq__gguf_sq_key(const char *name, int k)
{
    const size_t n = strlen(name), s = strlen(suffix[k]);
    char *key = malloc(n + s + 1);
    if (key) {
        memcpy(key, name, n);
        memcpy(key + n, suffix[k], s + 1);
    }
    return key;
}

/* ------------------------------------------------- metadata int arrays -- */

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

sq_status sq_parse_int_array_json(const char *text, size_t len, int32_t *out, int64_t cap, int64_t *count,
                                  sq_error *err)
{
    size_t i = 0;
    int64_t n = 0;
    if (count) *count = 0;
    if (!text) return sq_error_set(err, SQ_EFORMAT, "integer array: no text");
#define SKIP_WS() while (i < len && is_ws(text[i])) i++
    SKIP_WS();
    if (i >= len || text[i] != '[')
        return sq_error_set(err, SQ_EFORMAT, "integer array: offset %zu: expected '['", i);
    i++;
    SKIP_WS();
    if (i < len && text[i] == ']') {
        i++;
    } else {
        for (;;) {
            SKIP_WS();
            if (i >= len || text[i] < '0' || text[i] > '9')
                return sq_error_set(err, SQ_EFORMAT, "integer array: offset %zu: expected a non-negative integer",
                                    i);
            const size_t start = i;
            int64_t v = 0;
            while (i < len && text[i] >= '0' && text[i] <= '9') {
                v = v * 10 + (text[i] - '0');
                if (v > INT32_MAX)
                    return sq_error_set(err, SQ_ERANGE, "integer array: offset %zu: value exceeds %d", start,
                                        INT32_MAX);
                i++;
            }
            if (text[start] == '0' && i - start > 1)
                return sq_error_set(err, SQ_EFORMAT, "integer array: offset %zu: leading zero", start);
            if (out) {
                if (n >= cap)
                    return sq_error_set(err, SQ_ERANGE, "integer array: more than %lld elements", (long long)cap);
                out[n] = (int32_t)v;
            }
            n++;
            SKIP_WS();
            if (i < len && text[i] == ',') {
                i++;
                continue;
            }
            if (i < len && text[i] == ']') {
                i++;
                break;
            }
            return sq_error_set(err, SQ_EFORMAT, "integer array: offset %zu: expected ',' or ']'", i);
        }
    }
    SKIP_WS();
#undef SKIP_WS
    if (i != len) return sq_error_set(err, SQ_EFORMAT, "integer array: offset %zu: unexpected text after ']'", i);
    if (count) *count = n;
    return SQ_OK;
}

/* snprintf-style (a fixed sq_buf): text beyond cap is counted, not written. */
size_t sq_format_int_array_json(const int32_t *v, int64_t n, char *buf, size_t cap)
{
    sq_buf b = sq_buf_fixed(buf, cap);
    sq_buf_add(&b, "[", 1);
    for (int64_t i = 0; i < n; i++) sq_buf_printf(&b, i ? ",%d" : "%d", (int)v[i]);
    sq_buf_add(&b, "]", 1);
    return b.n;
}

size_t sq_format_types_json(const int types[4], char *buf, size_t cap)
{
    int32_t t[4] = { types[0], types[1], types[2], types[3] };
    return sq_format_int_array_json(t, 4, buf, cap);
}

/* ------------------------------------------------------ reading the keys -- */

/* The text of a string value as stored (u64 length, then the bytes); the
 * reader and the writer have both checked the length fits the value. */
static const char *str_text(const sq__gguf_val *v, size_t *len)
{
    *len = (size_t)sq__le64(v->raw);
    return (const char *)v->raw + 8;
}

/* Block types: a string holding a JSON array of exactly four ids. */
static sq_status scan_types(const char *name, const sq__gguf_val *v, sq__gguf_sqscan *out, uint64_t *at, char *why,
                            size_t why_n)
{
    *at = v->at;
    if (v->type != SQ_GGUF_STRING) {
        snprintf(why, why_n, "bad smarterquant block_types: key '%s%s' must be a string, not %s", name,
                 suffix[SQ__SQ_TYPES], sq_gguf_type_name((sq_gguf_type)v->type));
        return SQ_EFORMAT;
    }
    size_t len;
    const char *s = str_text(v, &len);
    int32_t t[4];
    int64_t n = 0;
    sq_error e = {0};
    if (sq_parse_int_array_json(s, len, t, 4, &n, &e) == SQ_OK && n != 4)
        snprintf(e.msg, sizeof e.msg, "%lld type ids, need exactly 4", (long long)n);
    if (e.msg[0]) {
        snprintf(why, why_n, "bad smarterquant block_types in key '%s%s' (\"%.*s\"): %s", name, suffix[SQ__SQ_TYPES],
                 (int)(len > 80 ? 80 : len), s, e.msg);
        return SQ_EFORMAT;
    }
    for (int k = 0; k < 4; k++) out->types[k] = t[k];
    return SQ_OK;
}

/* Permutation: absent or a string holding "[]" or exactly ne0 entries. */
static sq_status scan_perm(const char *name, const sq__gguf_val *v, int64_t ne0, sq__gguf_sqscan *out, uint64_t *at,
                           char *why, size_t why_n)
{
    out->perm_text = NULL;
    out->perm_len = 0;
    out->n_perm = 0;
    if (!v->found) return SQ_OK;
    *at = v->at;
    if (v->type != SQ_GGUF_STRING) {
        snprintf(why, why_n, "bad smarterquant permutation: key '%s%s' must be a string, not %s", name,
                 suffix[SQ__SQ_PERM], sq_gguf_type_name((sq_gguf_type)v->type));
        return SQ_EFORMAT;
    }
    size_t len;
    const char *s = str_text(v, &len);
    int64_t n = 0;
    sq_error e = {0};
    /* count first: the entries are bounded by the text, never by a header's ne[0] */
    if (sq_parse_int_array_json(s, len, NULL, 0, &n, &e) == SQ_OK && n != 0 && n != ne0)
        sq_perm_validate(NULL, n, ne0, &e);
    if (e.msg[0]) {
        snprintf(why, why_n, "bad smarterquant permutation in key '%s%s': %s", name, suffix[SQ__SQ_PERM], e.msg);
        return SQ_EFORMAT;
    }
    out->perm_text = s;
    out->perm_len = len;
    out->n_perm = n;
    return SQ_OK;
}

sq_status sq__gguf_sqmeta_scan(const char *name, int64_t ne0, const sq__gguf_val v[3], sq__gguf_sqscan *out,
                               uint64_t *at, char *why, size_t why_n)
{
    memset(out, 0, sizeof *out);
    *at = 0;
    const sq__gguf_val *en = &v[SQ__SQ_ENABLED];
    if (!en->found) return SQ_OK;
    *at = en->at;
    if (en->type != SQ_GGUF_BOOL) {
        snprintf(why, why_n, "key '%s%s' must be bool, not %s", name, suffix[SQ__SQ_ENABLED],
                 sq_gguf_type_name((sq_gguf_type)en->type));
        return SQ_EFORMAT;
    }
    if (en->raw[0] == 0) return SQ_OK;
    if (!v[SQ__SQ_TYPES].found) {
        snprintf(why, why_n, "tensor '%s' is smarterquant-enabled but key '%s%s' is missing", name, name,
                 suffix[SQ__SQ_TYPES]);
        return SQ_EFORMAT;
    }
    sq_status st = scan_types(name, &v[SQ__SQ_TYPES], out, at, why, why_n);
    if (st == SQ_OK) st = scan_perm(name, &v[SQ__SQ_PERM], ne0, out, at, why, why_n);
    out->on = st == SQ_OK;
    return st;
}

sq_status sq__gguf_sqmeta_perm(const char *name, const sq__gguf_sqscan *s, int32_t *perm, char *why, size_t why_n)
{
    sq_error e = {0};
    int64_t n = 0;
    sq_status st = sq_parse_int_array_json(s->perm_text, s->perm_len, perm, s->n_perm, &n, &e);
    if (st == SQ_OK) st = sq_perm_validate(perm, n, s->n_perm, &e);
    if (st != SQ_OK)
        snprintf(why, why_n, "bad smarterquant permutation in key '%s%s': %s", name, suffix[SQ__SQ_PERM], e.msg);
    return st == SQ_OK ? SQ_OK : SQ_EFORMAT;
}

void sq__gguf_sqmeta_reader_vals(const sq_gguf *g, const char *name, sq__gguf_val v[3])
{
    const size_t nlen = strlen(name);
    for (int k = 0; k < 3; k++) {
        const int64_t i = sq__gguf_find_key2(g, name, nlen, suffix[k], strlen(suffix[k]));
        if (i < 0) {
            v[k] = (sq__gguf_val){0};
            continue;
        }
        const sq__gguf_kv *kv = &g->kvs[i];
        v[k] = (sq__gguf_val){true, (uint32_t)kv->type, g->base + kv->val_off, kv->val_size, kv->at};
    }
}

/* ------------------------------------------------------- the typed view -- */

void sq_gguf_sqmeta_inverse(const sq_gguf_sqmeta *m, int32_t *inv)
{
    for (int64_t j = 0; j < m->n_cols; j++) inv[m->perm ? m->perm[j] : j] = (int32_t)j;
}

/* One key/value in a header: key length, key, value type, value. */
static uint64_t kv_bytes(size_t name_len, int k, uint64_t value_bytes)
{
    return 8 + name_len + strlen(suffix[k]) + 4 + value_bytes;
}

uint64_t sq_gguf_sqmeta_kv_bytes(const char *name, const sq_gguf_sqmeta *m)
{
    const size_t nl = strlen(name);
    size_t types_len;
    if (m) {
        types_len = sq_format_types_json(m->types, NULL, 0);
    } else {
        /* four of the widest ids the type table has */
        const int widest[4] = {SQ_TYPE_COUNT - 1, SQ_TYPE_COUNT - 1, SQ_TYPE_COUNT - 1, SQ_TYPE_COUNT - 1};
        types_len = sq_format_types_json(widest, NULL, 0);
    }
    const size_t perm_len = m && m->perm ? sq_format_int_array_json(m->perm, m->n_cols, NULL, 0) : 2;
    return kv_bytes(nl, SQ__SQ_ENABLED, 1) + kv_bytes(nl, SQ__SQ_PERM, 8 + perm_len) +
           kv_bytes(nl, SQ__SQ_TYPES, 8 + types_len);
}
