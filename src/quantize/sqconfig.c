/*
 * sqconfig.c — the SmarterQuant configuration file: a relaxed-JSON reader
 * (comments, trailing commas), the shape and type checks of spec section 2,
 * validation against a model with automatic fallback (section 3), and the
 * strict integer-array reader / writer of the GGUF metadata strings (section 5).
 *
 * Ownership: an sq_config owns its entries, their names and permutations; the
 * caller owns the text it parses and the model table it validates against.
 */
#include "sq/sqconfig.h"
#include "sq/quantize.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/sqtensor.h"
#include "base/json_kind.h"

/* ------------------------------------------------------------- warnings -- */

void sq_warnings_free(sq_warnings *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) free(w->items[i]);
    free(w->items);
    w->items = NULL;
    w->count = w->cap = 0;
}

sq_status sq_warnings_add(sq_warnings *w, const char *fmt, ...)
{
    if (!w) return SQ_OK;
    char **items = sq_grow_array(w->items, &w->cap, w->count + 1, sizeof *items);
    if (!items) return SQ_ENOMEM;
    w->items = items;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return SQ_ENOMEM;
    w->items[w->count++] = s;
    return SQ_OK;
}

/* --------------------------------------------------------- the handle -- */

struct sq_config {
    char *filename;
    sq_config_entry *entries; /* file order */
    int64_t count;
    sq_config_entry **sorted; /* by name, for sq_config_find */
};

void sq_config_free(sq_config *cfg)
{
    if (!cfg) return;
    for (int64_t i = 0; i < cfg->count; i++) {
        free((char *)cfg->entries[i].name);
        free((int32_t *)cfg->entries[i].perm);
    }
    free(cfg->entries);
    free(cfg->sorted);
    free(cfg->filename);
    free(cfg);
}

int64_t sq_config_count(const sq_config *cfg) { return cfg ? cfg->count : 0; }

const sq_config_entry *sq_config_entry_at(const sq_config *cfg, int64_t i)
{
    if (!cfg || i < 0 || i >= cfg->count) return NULL;
    return &cfg->entries[i];
}

const char *sq_config_filename(const sq_config *cfg) { return cfg ? cfg->filename : NULL; }

static int cmp_entry_ptr(const void *a, const void *b)
{
    const sq_config_entry *x = *(sq_config_entry *const *)a, *y = *(sq_config_entry *const *)b;
    return strcmp(x->name, y->name);
}

const sq_config_entry *sq_config_find(const sq_config *cfg, const char *name)
{
    if (!cfg || !name || cfg->count == 0) return NULL;
    size_t lo = 0, hi = (size_t)cfg->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(cfg->sorted[mid]->name, name);
        if (c == 0) return cfg->sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------------ relaxed JSON -- */

/* 1-based line and column (in UTF-8 characters) of byte offset off of text. */
static void line_col(const char *text, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    if (off > len) off = len;
    for (size_t i = 0; i < off; i++) {
        const unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Byte offset of (line, column) as jansson counts them (column: the 1-based
 * UTF-8 character of the token's last byte) in the preprocessed text, so that
 * it can be re-expressed in the original text's characters. */
static size_t offset_of(const char *text, size_t len, int line, int col)
{
    size_t i = 0;
    for (int l = 1; l < line && i < len; i++)
        if (text[i] == '\n') l++;
    int c = 0;
    size_t last = i;
    for (; i < len && text[i] != '\n'; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;
            last = i;
            if (c == col) return i;
        }
    }
    return c < col ? i : last;
}

/* Where the bad token that ends at byte `last` of the preprocessed text
 * starts: jansson reports a token's last character (and quotes it only when
 * it is short), editors want its first. A string goes back to its opening
 * quote, a number or word over its characters; a punctuation mark is itself. */
static size_t token_start(const char *buf, size_t len, size_t last)
{
    if (last >= len) return last;
    const char c = buf[last];
    size_t i = last;
    if (c == '"' && i > 0) {
        for (i--; i > 0; i--) {
            size_t bs = 0; /* a quote after an odd number of backslashes is escaped */
            while (bs < i && buf[i - 1 - bs] == '\\') bs++;
            if (buf[i] == '"' && bs % 2 == 0) break;
        }
        return i;
    }
    if (isalnum((unsigned char)c) || c == '.' || c == '-' || c == '+' || c == '_')
        while (i > 0 && (isalnum((unsigned char)buf[i - 1]) || strchr(".-+_", buf[i - 1]))) i--;
    return i;
}

/* A syntax error at the token starting at byte `at` of the preprocessed text
 * (comments blanked): when a value ends just before it, with nothing but
 * spaces between, the likely fault is a missing comma; says where. */
static void comma_hint(const char *buf, size_t len, size_t at, char *hint, size_t n)
{
    hint[0] = 0;
    if (at >= len || !strchr("\"[{-0123456789tfn", buf[at])) return;
    size_t j = at;
    while (j > 0 && (buf[j - 1] == ' ' || buf[j - 1] == '\t' || buf[j - 1] == '\n' || buf[j - 1] == '\r')) j--;
    if (j == 0) return;
    const char prev = buf[j - 1];
    if (!(prev == ']' || prev == '}' || prev == '"' || isalnum((unsigned char)prev))) return;
    int pl, pc, tl, tc;
    line_col(buf, len, j - 1, &pl, &pc);
    line_col(buf, len, at, &tl, &tc);
    if (pl < tl) snprintf(hint, n, " (a ',' missing at the end of line %d?)", pl);
    else snprintf(hint, n, " (a ',' missing before it?)");
}

/* The error for text jansson could not parse: FILE:LINE:COLUMN of the bad
 * token's first character in the original text, jansson's reason, and a hint
 * when a comma seems to be missing. */
static sq_status syntax_error(const char *text, size_t len, const char *buf, const char *fname,
                              const json_error_t *jerr, sq_error *err)
{
    const int l = jerr->line > 0 ? jerr->line : 1, c = jerr->column > 0 ? jerr->column : 1;
    const size_t at = token_start(buf, len, offset_of(buf, len, l, c));
    char hint[64];
    comma_hint(buf, len, at, hint, sizeof hint);
    int ol, oc;
    line_col(text, len, at, &ol, &oc);
    return sq_error_set(err, SQ_EFORMAT, "%s:%d:%d: syntax error: %s%s", fname, ol, oc, jerr->text, hint);
}

/* A top-level key found by the scanner: where it is and its raw bytes. */
typedef struct key_pos {
    size_t start;    /* offset of the opening quote */
    size_t raw_off;  /* first byte inside the quotes */
    size_t raw_len;
} key_pos;

typedef struct prep {
    char *buf;       /* preprocessed text: comments and trailing commas blanked */
    key_pos *keys;
    size_t nkeys, capkeys;
} prep;

static bool add_key(prep *p, size_t start, size_t raw_off, size_t raw_len)
{
    if (p->nkeys == p->capkeys) {
        size_t cap = p->capkeys ? p->capkeys * 2 : 64;
        key_pos *k = realloc(p->keys, cap * sizeof *k);
        if (!k) return false;
        p->keys = k;
        p->capkeys = cap;
    }
    p->keys[p->nkeys++] = (key_pos){ start, raw_off, raw_len };
    return true;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Turns relaxed JSON into strict JSON of the same length with the same line
 * structure: comment bytes become spaces (newlines kept), a comma followed only
 * by whitespace and a closing bracket becomes a space. Strings are left alone
 * (escapes honoured). Also records every key of the top-level object. */
static sq_status preprocess(const char *text, size_t len, const char *fname, prep *p, sq_error *err)
{
    p->buf = malloc(len + 1);
    if (!p->buf) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", fname);
    memcpy(p->buf, text, len);
    p->buf[len] = '\0';
    char *b = p->buf;
    /* pass 1: comments */
    for (size_t i = 0; i < len; i++) {
        if (b[i] == '"') {
            for (i++; i < len && b[i] != '"'; i++)
                if (b[i] == '\\' && i + 1 < len) i++;
            continue;
        }
        if (b[i] != '/' || i + 1 >= len) continue;
        if (b[i + 1] == '/') {
            for (; i < len && b[i] != '\n'; i++) b[i] = ' ';
        } else if (b[i + 1] == '*') {
            const size_t start = i;
            b[i] = b[i + 1] = ' ';
            for (i += 2; i + 1 < len && !(b[i] == '*' && b[i + 1] == '/'); i++)
                if (b[i] != '\n') b[i] = ' ';
            if (i + 1 >= len) {
                int l, c;
                line_col(text, len, start, &l, &c);
                return sq_error_set(err, SQ_EFORMAT, "%s:%d:%d: syntax error: unterminated /* comment", fname, l, c);
            }
            b[i] = b[i + 1] = ' ';
            i++;
        }
    }
    /* pass 2: trailing commas, top-level keys */
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        const char c = b[i];
        if (c == '"') {
            const size_t start = i;
            for (i++; i < len && b[i] != '"'; i++)
                if (b[i] == '\\' && i + 1 < len) i++;
            if (depth == 1 && i < len) {
                size_t k = i + 1;
                while (k < len && is_ws(b[k])) k++;
                if (k < len && b[k] == ':' && !add_key(p, start, start + 1, i - start - 1))
                    return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", fname);
            }
            continue;
        }
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') depth--;
        else if (c == ',') {
            size_t k = i + 1;
            while (k < len && is_ws(b[k])) k++;
            if (k < len && (b[k] == '}' || b[k] == ']')) b[i] = ' ';
        }
    }
    return SQ_OK;
}

/* Position of the key `name` (as decoded by jansson) among the scanned keys:
 * keys without escapes compare byte for byte; others get no position. */
static void key_position(const prep *p, const char *text, size_t len, const char *name, int *line, int *col)
{
    const size_t nl = strlen(name);
    for (size_t i = 0; i < p->nkeys; i++) {
        const key_pos *k = &p->keys[i];
        if (k->raw_len == nl && memcmp(text + k->raw_off, name, nl) == 0) {
            line_col(text, len, k->start, line, col);
            return;
        }
    }
    *line = *col = 0;
}

/* ---------------------------------------------------------- entries -- */

/* Prefix for messages about one tensor: "FILE:LINE:COL: tensor NAME". */
static void where(char *buf, size_t n, const char *fname, const sq_config_entry *e)
{
    if (e->line > 0) snprintf(buf, n, "%s:%d:%d: tensor %s", fname, e->line, e->column, e->name);
    else snprintf(buf, n, "%s: tensor %s", fname, e->name);
}

/* Checks that a type id can be stored in a SmarterQuant segment. */
static sq_status check_type_id(const char *at, int slot, long long id, sq_error *err)
{
    const sq_type_info *ti = (id >= 0 && id < SQ_TYPE_COUNT) ? sq_type_info_get((int)id) : NULL;
    if (!ti)
        return sq_error_set(err, SQ_EINVAL, "%s: types[%d]: type id %lld is unknown or removed", at, slot, id);
    if (!ti->is_weight)
        return sq_error_set(err, SQ_EINVAL,
                            "%s: types[%d]: type %s (%lld) is not usable for weights (activation or integer type)",
                            at, slot, ti->name, id);
    return SQ_OK;
}

/* Reads one "name": [types, perm] pair into e (name and position already set). */
static sq_status read_entry(const char *fname, sq_config_entry *e, json_t *v, sq_warnings *warn, sq_error *err)
{
    char at[600];
    where(at, sizeof at, fname, e);
    if (!json_is_array(v) || json_array_size(v) != 2) {
        if (json_is_array(v))
            return sq_error_set(err, SQ_EFORMAT, "%s: value must be [types, perm], an array of 2, got %zu elements",
                                at, json_array_size(v));
        return sq_error_set(err, SQ_EFORMAT, "%s: value must be [types, perm], got %s", at, sq__json_kind(v));
    }
    json_t *jt = json_array_get(v, 0), *jp = json_array_get(v, 1);
    if (!json_is_array(jt))
        return sq_error_set(err, SQ_EFORMAT, "%s: types must be an array of four type ids, got %s", at,
                            sq__json_kind(jt));
    if (!json_is_array(jp))
        return sq_error_set(err, SQ_EFORMAT, "%s: perm must be an array of column indices or [], got %s", at,
                            sq__json_kind(jp));
    /* types */
    const size_t nt = json_array_size(jt);
    e->enabled = nt == 4;
    e->n_types = nt > 1000000 ? 1000000 : (int)nt;
    for (size_t i = 0; i < nt; i++) {
        json_t *x = json_array_get(jt, i);
        long long id;
        if (json_is_integer(x)) {
            id = json_integer_value(x);
        } else if (json_is_string(x)) {
            id = sq_type_from_name(json_string_value(x));
            if (id < 0)
                return sq_error_set(err, SQ_EINVAL, "%s: types[%zu]: unknown type name \"%s\"", at, i,
                                    json_string_value(x));
        } else {
            return sq_error_set(err, SQ_EFORMAT, "%s: types[%zu]: expected a type id or name, got %s", at, i,
                                sq__json_kind(x));
        }
        sq_status st = check_type_id(at, (int)i, id, err);
        if (st != SQ_OK) return st;
        if (i < 4) e->types[i] = e->types_used[i] = (int)id;
    }
    if (!e->enabled) {
        sq_status st = nt == 0 ? sq_warnings_add(warn, "%s: not SmarterQuant-processed: types is empty", at)
                               : sq_warnings_add(warn, "%s: not SmarterQuant-processed: types has %zu entries, not 4",
                                                 at, nt);
        if (st != SQ_OK) return sq_error_set(err, st, "%s: out of memory", at);
        for (int i = 0; i < 4; i++) e->types[i] = e->types_used[i] = -1;
    }
    /* perm */
    const size_t np = json_array_size(jp);
    if (np > 0) {
        int32_t *perm = malloc(np * sizeof *perm);
        if (!perm) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory for a permutation of %zu", at, np);
        e->perm = perm;
        e->perm_len = (int64_t)np;
        for (size_t i = 0; i < np; i++) {
            json_t *x = json_array_get(jp, i);
            if (!json_is_integer(x))
                return sq_error_set(err, SQ_EFORMAT, "%s: perm[%zu]: expected a column index, got %s", at, i,
                                    sq__json_kind(x));
            const long long val = json_integer_value(x);
            if (val < 0 || val > INT32_MAX)
                return sq_error_set(err, SQ_ERANGE, "%s: perm[%zu]: column index %lld is out of range", at, i, val);
            perm[i] = (int32_t)val;
        }
    }
    return SQ_OK;
}

sq_status sq_config_parse(const char *text, size_t len, const char *filename, sq_config **out,
                          sq_warnings *warnings, sq_error *err)
{
    if (out) *out = NULL;
    const char *fname = filename ? filename : "<config>";
    if (!text || !out) return sq_error_set(err, SQ_EINVAL, "%s: no text or no output", fname);
    prep p = { 0 };
    sq_status st = preprocess(text, len, fname, &p, err);
    if (st != SQ_OK) {
        free(p.buf);
        free(p.keys);
        return st;
    }
    json_error_t jerr;
    json_t *root = json_loadb(p.buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        st = syntax_error(text, len, p.buf, fname, &jerr, err);
        free(p.buf);
        free(p.keys);
        return st;
    }
    sq_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->filename = strdup(fname))) {
        free(cfg);
        st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", fname);
        goto done;
    }
    if (!json_is_object(root)) {
        st = sq_error_set(err, SQ_EFORMAT,
                          "%s: the configuration must be a JSON object (tensor name -> [types, perm]), got %s", fname,
                          sq__json_kind(root));
        goto done;
    }
    const size_t n = json_object_size(root);
    cfg->entries = calloc(n ? n : 1, sizeof *cfg->entries);
    cfg->sorted = calloc(n ? n : 1, sizeof *cfg->sorted);
    if (!cfg->entries || !cfg->sorted) {
        st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory for %zu entries", fname, n);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        sq_config_entry *e = &cfg->entries[cfg->count++];
        if (!(e->name = strdup(key))) {
            st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", fname);
            goto done;
        }
        key_position(&p, text, len, key, &e->line, &e->column);
        st = read_entry(fname, e, val, warnings, err);
        if (st != SQ_OK) goto done;
        cfg->sorted[cfg->count - 1] = e;
    }
    qsort(cfg->sorted, (size_t)cfg->count, sizeof *cfg->sorted, cmp_entry_ptr);
done:
    json_decref(root);
    free(p.buf);
    free(p.keys);
    if (st != SQ_OK) {
        sq_config_free(cfg);
        return st;
    }
    *out = cfg;
    return SQ_OK;
}

sq_status sq_config_load(const char *path, sq_config **out, sq_warnings *warnings, sq_error *err)
{
    if (out) *out = NULL;
    if (!path) return sq_error_set(err, SQ_EINVAL, "configuration: no path");
    FILE *f = fopen(path, "rb");
    if (!f)
        return sq_error_set(err, errno == ENOENT ? SQ_ENOTFOUND : SQ_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    sq_status st = SQ_OK;
    while (buf) {
        if (len == cap) {
            char *nb = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                st = sq_error_set(err, SQ_ENOMEM, "%s: file too large to read", path);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) st = sq_error_set(err, SQ_EIO, "%s: read error: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!buf) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", path);
    if (st == SQ_OK) st = sq_config_parse(buf, len, path, out, warnings, err);
    free(buf);
    return st;
}

/* ---------------------------------------------------------- validation -- */

int sq_config_fallback_type(int type, int64_t len)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti || len <= 0) return SQ_TYPE_F16;
    if (len % ti->block_size == 0) return type;
    /* llama.cpp's width-fallback table, shared with the ftype rules */
    int fb = sq_qrules_fallback_type(type);
    /* not in llama.cpp's table: the 4-bit 32-block type is the nearest at or above their size */
    if (fb < 0 && (type == SQ_TYPE_Q1_0 || type == SQ_TYPE_NVFP4 || type == SQ_TYPE_MXFP4)) fb = SQ_TYPE_Q4_0;
    if (fb < 0 || len % sq_type_info_get(fb)->block_size != 0) fb = SQ_TYPE_F16;
    return fb;
}

static int cmp_tensor_ptr(const void *a, const void *b)
{
    const sq_config_tensor *x = *(const sq_config_tensor *const *)a, *y = *(const sq_config_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static const sq_config_tensor *find_tensor(const sq_config_tensor **sorted, int64_t n, const char *name)
{
    size_t lo = 0, hi = (size_t)n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(sorted[mid]->name, name);
        if (c == 0) return sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Checks one enabled entry against its tensor; fills types_used. */
static sq_status validate_entry(const char *fname, sq_config_entry *e, const sq_config_tensor *t,
                                const sq_config_options *opt, sq_warnings *warn, sq_error *err)
{
    char at[600];
    where(at, sizeof at, fname, e);
    const int64_t C = t->cols;
    if (C <= 0) return sq_error_set(err, SQ_EINVAL, "%s: the tensor has %lld columns", at, (long long)C);
    for (int i = 0; i < 4; i++) e->types_used[i] = e->types[i];
    const int64_t nseg = sq_n_segments(C);
    /* block sizes: only the final segment can be shorter than 256, and every
     * block size divides 256, so at most the final segment's slot changes */
    for (int64_t s = 0; s < nseg; s++) {
        const int slot = s < 3 ? (int)s : 3;
        const int ty = e->types_used[slot];
        const int64_t len = sq_segment_len(C, s), c0 = s * SQ_SEGMENT;
        const sq_type_info *ti = sq_type_info_get(ty);
        if (len % ti->block_size == 0) continue;
        if (!opt->auto_fallback)
            return sq_error_set(err, SQ_EINVAL,
                                "%s: type %s (%d) in slot %d has blocks of %d columns, which do not divide segment "
                                "%lld (columns %lld..%lld, %lld columns); choose a type with smaller blocks or "
                                "allow automatic fallback",
                                at, ti->name, ty, slot + 1, ti->block_size, (long long)s, (long long)c0,
                                (long long)(c0 + len - 1), (long long)len);
        const int fb = sq_config_fallback_type(ty, len);
        e->types_used[slot] = fb;
        if (sq_warnings_add(warn,
                            "%s: type %s in slot %d does not fit segment %lld of %lld columns; using fallback %s "
                            "(%d) for slot %d",
                            at, ti->name, slot + 1, (long long)s, (long long)len, sq_type_name(fb), fb,
                            slot + 1) != SQ_OK)
            return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", at);
    }
    /* importance matrix, for the slots some segment uses */
    for (int slot = 0; slot < 4 && slot < nseg; slot++) {
        const sq_type_info *ti = sq_type_info_get(e->types_used[slot]);
        if (ti->needs_imatrix && !t->has_imatrix)
            return sq_error_set(err, SQ_EINVAL,
                                "%s: type %s (%d) in slot %d needs an importance matrix, and none was given for "
                                "this tensor",
                                at, ti->name, (int)ti->id, slot + 1);
    }
    if (e->perm_len > 0) {
        sq_status st = sq_perm_validate(e->perm, e->perm_len, C, err);
        if (st != SQ_OK) {
            sq_error_prefix(err, "%s", at);
            return st;
        }
    }
    size_t rb;
    sq_status st = sq_mixed_row_bytes(e->types_used, C, &rb, err);
    if (st != SQ_OK) sq_error_prefix(err, "%s", at);
    return st;
}

/* Types of 1-3 or 5+ entries: the parser warned and left the tensor
 * ordinary; under --strict it is an error (a typo more likely than a choice;
 * an empty types stays the way to say "ordinary"). */
static sq_status check_types_count(const sq_config *cfg, const sq_config_entry *e, sq_error *err)
{
    if (e->enabled || e->n_types == 0) return SQ_OK;
    char at[600];
    where(at, sizeof at, cfg->filename, e);
    return sq_error_set(err, SQ_EINVAL, "%s: types has %d entries, not 4 (an error with --strict)", at, e->n_types);
}

sq_status sq_config_check_strict(const sq_config *cfg, sq_error *err)
{
    for (int64_t i = 0; cfg && i < cfg->count; i++) {
        const sq_status st = check_types_count(cfg, &cfg->entries[i], err);
        if (st != SQ_OK) return st;
    }
    return SQ_OK;
}

sq_status sq_config_validate(sq_config *cfg, const sq_config_tensor *tensors, int64_t n_tensors,
                             const sq_config_options *opt, sq_warnings *warnings, sq_error *err)
{
    static const sq_config_options defaults = { false, false };
    if (!opt) opt = &defaults;
    if (!cfg) return sq_error_set(err, SQ_EINVAL, "configuration: none given");
    if (n_tensors < 0 || (n_tensors > 0 && !tensors))
        return sq_error_set(err, SQ_EINVAL, "%s: no model tensors to validate against", cfg->filename);
    const sq_config_tensor **sorted = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof *sorted);
    if (!sorted) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", cfg->filename);
    for (int64_t i = 0; i < n_tensors; i++) sorted[i] = &tensors[i];
    qsort(sorted, (size_t)n_tensors, sizeof *sorted, cmp_tensor_ptr);
    sq_status st = SQ_OK;
    for (int64_t i = 0; i < cfg->count && st == SQ_OK; i++) {
        sq_config_entry *e = &cfg->entries[i];
        if (opt->strict && (st = check_types_count(cfg, e, err)) != SQ_OK) continue;
        const sq_config_tensor *t = find_tensor(sorted, n_tensors, e->name);
        if (!t) {
            char at[600];
            where(at, sizeof at, cfg->filename, e);
            if (opt->strict) st = sq_error_set(err, SQ_ENOTFOUND, "%s: the model has no tensor of this name", at);
            else if (sq_warnings_add(warnings, "%s: the model has no tensor of this name; entry ignored", at) != SQ_OK)
                st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", at);
            continue;
        }
        if (!e->enabled) continue;
        st = validate_entry(cfg->filename, e, t, opt, warnings, err);
    }
    free(sorted);
    return st;
}
