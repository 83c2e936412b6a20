/*
 * imatrix.c — importance matrices: llama.cpp's GGUF format and its legacy
 * .dat format, read into name -> importance values; and the GGUF writer.
 *
 * The reader turns statistics into importance exactly as llama-quantize does
 * (float division of each sum by its integer count), since the quantizers'
 * bytes depend on every bit of these weights.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"
#include "sq/imatrix.h"

typedef struct entry {
    char *name;
    float *values;
    int64_t n;
} entry;

struct sq_imatrix {
    entry *e;
    int64_t n, cap;
    char **datasets;
    int64_t n_datasets;
    int64_t chunk_count, chunk_size;
    bool legacy;
};

void sq_imatrix_free(sq_imatrix *im)
{
    if (!im) return;
    for (int64_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].values);
    }
    for (int64_t i = 0; i < im->n_datasets; i++) free(im->datasets[i]);
    free(im->datasets);
    free(im->e);
    free(im);
}

int64_t sq_imatrix_n_entries(const sq_imatrix *im) { return im ? im->n : 0; }
const char *sq_imatrix_entry_name(const sq_imatrix *im, int64_t i)
{
    return im && i >= 0 && i < im->n ? im->e[i].name : NULL;
}
int64_t sq_imatrix_n_datasets(const sq_imatrix *im) { return im ? im->n_datasets : 0; }
const char *sq_imatrix_dataset(const sq_imatrix *im, int64_t i)
{
    return im && i >= 0 && i < im->n_datasets ? im->datasets[i] : NULL;
}
int64_t sq_imatrix_chunk_count(const sq_imatrix *im) { return im ? im->chunk_count : 0; }
int64_t sq_imatrix_chunk_size(const sq_imatrix *im) { return im ? im->chunk_size : 0; }
bool sq_imatrix_is_legacy(const sq_imatrix *im) { return im && im->legacy; }

const float *sq_imatrix_find(const sq_imatrix *im, const char *name, int64_t *n)
{
    if (!im || !name) return NULL;
    for (int64_t i = 0; i < im->n; i++)
        if (strcmp(im->e[i].name, name) == 0) {
            if (n) *n = im->e[i].n;
            return im->e[i].values;
        }
    return NULL;
}

/* Appends an entry (takes ownership of name and values on success). A name
 * seen twice is an error: a well-formed file has each weight once. */
static sq_status add_entry(sq_imatrix *im, char *name, float *values, int64_t n, const char *label, sq_error *err)
{
    if (sq_imatrix_find(im, name, NULL))
        return sq_error_set(err, SQ_EFORMAT, "%s: entry '%s' appears twice", label, name);
    /* importances are means of squares: a negative one (which sq imatrix
     * --in-file refuses too) would turn the quantizers' weighted least
     * squares upside down */
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(values[i]))
            return sq_error_set(err, SQ_EFORMAT, "%s: entry '%s' has a non-finite importance value at index %lld",
                                label, name, (long long)i);
        if (values[i] < 0)
            return sq_error_set(err, SQ_EFORMAT, "%s: entry '%s' has a negative importance value %g at index %lld",
                                label, name, (double)values[i], (long long)i);
    }
    if (im->n == im->cap) {
        int64_t cap = im->cap ? im->cap * 2 : 64;
        entry *e = realloc(im->e, (size_t)cap * sizeof *e);
        if (!e) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
        im->e = e;
        im->cap = cap;
    }
    im->e[im->n++] = (entry){name, values, n};
    return SQ_OK;
}

static sq_status add_dataset(sq_imatrix *im, const char *s, size_t len, const char *label, sq_error *err)
{
    char **d = realloc(im->datasets, (size_t)(im->n_datasets + 1) * sizeof *d);
    if (!d) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
    im->datasets = d;
    char *copy = malloc(len + 1);
    if (!copy) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
    memcpy(copy, s, len);
    copy[len] = 0;
    im->datasets[im->n_datasets++] = copy;
    return SQ_OK;
}

/* ---- legacy .dat ---- */

/* A bounds-checked little-endian cursor over the buffer. */
typedef struct cursor {
    const unsigned char *p;
    size_t size, off;
} cursor;

static bool take_i32(cursor *c, int32_t *v)
{
    if (c->size - c->off < 4) return false;
    uint32_t u = (uint32_t)c->p[c->off] | (uint32_t)c->p[c->off + 1] << 8 | (uint32_t)c->p[c->off + 2] << 16 |
                 (uint32_t)c->p[c->off + 3] << 24;
    memcpy(v, &u, 4);
    c->off += 4;
    return true;
}

/* Names longer than this are not weight names: a corrupt length. */
#define MAX_NAME 4096

/* The .dat reader; *not_dat is set when the error means the bytes are no
 * .dat file at all (no sane entry count, or a first entry with no sane name),
 * not a .dat file with a bad entry. */
static sq_status parse_dat(const void *data, size_t size, const char *label, sq_imatrix **out, bool *not_dat,
                           sq_error *err)
{
    *out = NULL;
    *not_dat = true;
    cursor c = {data, size, 0};
    int32_t n_entries;
    if (!take_i32(&c, &n_entries))
        return sq_error_set(err, SQ_EFORMAT, "%s: too short for an imatrix file (%zu bytes)", label, size);
    if (n_entries < 1)
        return sq_error_set(err, SQ_EFORMAT, "%s: entry count %d is not positive", label, (int)n_entries);
    /* each entry takes at least 17 bytes: a count beyond the file's size is corrupt */
    if ((uint64_t)n_entries > size)
        return sq_error_set(err, SQ_EFORMAT, "%s: entry count %d does not fit in %zu bytes", label, (int)n_entries,
                            size);
    sq_imatrix *im = calloc(1, sizeof *im);
    if (!im) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
    im->legacy = true;
    sq_status st = SQ_OK;
    for (int32_t i = 0; i < n_entries && st == SQ_OK; i++) {
        int32_t len, ncall, nval;
        if (!take_i32(&c, &len)) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: entry %d: truncated before its name length", label, (int)i + 1);
            break;
        }
        if (len < 1 || len > MAX_NAME || (size_t)len > c.size - c.off) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: entry %d: bad name length %d at offset %zu", label, (int)i + 1,
                              (int)len, c.off - 4);
            break;
        }
        char *name = malloc((size_t)len + 1);
        if (!name) {
            st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
            break;
        }
        memcpy(name, c.p + c.off, (size_t)len);
        name[len] = 0;
        c.off += (size_t)len;
        if (strlen(name) != (size_t)len) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: entry %d: name contains a NUL byte", label, (int)i + 1);
            free(name);
            break;
        }
        *not_dat = false; /* a first entry with a name: a .dat file, whatever else is wrong */
        if (!take_i32(&c, &ncall) || !take_i32(&c, &nval)) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: entry '%s': truncated before its value count", label, name);
            free(name);
            break;
        }
        if (nval < 1 || (uint64_t)nval * 4 > c.size - c.off) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: entry '%s': value count %d %s", label, name, (int)nval,
                              nval < 1 ? "is not positive" : "runs past the end of the file");
            free(name);
            break;
        }
        float *v = malloc((size_t)nval * sizeof *v);
        if (!v) {
            st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
            free(name);
            break;
        }
        memcpy(v, c.p + c.off, (size_t)nval * 4); /* little-endian host */
        c.off += (size_t)nval * 4;
        /* the file holds sums over ncall calls; importance is their mean */
        if (ncall > 0) {
            const float div = (float)ncall;
            for (int32_t k = 0; k < nval; k++) v[k] = v[k] / div;
        }
        st = add_entry(im, name, v, nval, label, err);
        if (st != SQ_OK) {
            free(name);
            free(v);
        }
    }
    /* optional trailer: chunk count, then the dataset name */
    if (st == SQ_OK && c.off < c.size) {
        int32_t chunks, len;
        if (take_i32(&c, &chunks)) im->chunk_count = chunks > 0 ? chunks : 0;
        if (take_i32(&c, &len) && len > 0) {
            if ((size_t)len > c.size - c.off)
                st = sq_error_set(err, SQ_EFORMAT, "%s: dataset name length %d runs past the end of the file", label,
                                  (int)len);
            else
                st = add_dataset(im, (const char *)c.p + c.off, (size_t)len, label, err);
        }
    }
    if (st != SQ_OK) {
        sq_imatrix_free(im);
        return st;
    }
    *out = im;
    return SQ_OK;
}

sq_status sq_imatrix_parse_dat(const void *data, size_t size, const char *label, sq_imatrix **out, sq_error *err)
{
    bool not_dat = false;
    return parse_dat(data, size, label ? label : "imatrix", out, &not_dat, err);
}

/* ---- GGUF ---- */

static bool strip_suffix(const char *name, const char *suffix, size_t *base_len)
{
    size_t n = strlen(name), m = strlen(suffix);
    if (n <= m || strcmp(name + n - m, suffix) != 0) return false;
    *base_len = n - m;
    return true;
}

static int64_t n_elements(const sq_gguf_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

static sq_status parse_gguf(const void *data, size_t size, const char *label, sq_imatrix **out, sq_error *err)
{
    sq_gguf *g = NULL;
    sq_status st = sq_gguf_open_memory(data, size, label, &g, err);
    if (st != SQ_OK) return st;
    sq_imatrix *im = calloc(1, sizeof *im);
    if (!im) {
        sq_gguf_close(g);
        return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
    }

    /* metadata: llama-quantize refuses a GGUF imatrix without all three keys */
    static const char *const keys[] = {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"};
    for (int k = 0; k < 3 && st == SQ_OK; k++)
        if (sq_gguf_find_key(g, keys[k]) < 0)
            st = sq_error_set(err, SQ_EFORMAT, "%s: missing imatrix metadata key %s", label, keys[k]);
    if (st == SQ_OK) {
        const int64_t kd = sq_gguf_find_key(g, "imatrix.datasets");
        if (sq_gguf_kv_type(g, kd) != SQ_GGUF_ARRAY || sq_gguf_arr_type(g, kd) != SQ_GGUF_STRING)
            st = sq_error_set(err, SQ_ETYPE, "%s: imatrix.datasets is not an array of strings", label);
        for (uint64_t j = 0; st == SQ_OK && j < sq_gguf_arr_n(g, kd); j++) {
            sq_gguf_str s = sq_gguf_arr_str(g, kd, j);
            st = add_dataset(im, s.ptr ? s.ptr : "", (size_t)s.len, label, err);
        }
    }
    uint32_t u = 0;
    if (st == SQ_OK && (st = sq_gguf_get_u32(g, "imatrix.chunk_count", &u, err)) == SQ_OK) im->chunk_count = u;
    if (st == SQ_OK && (st = sq_gguf_get_u32(g, "imatrix.chunk_size", &u, err)) == SQ_OK) im->chunk_size = u;

    /* pair NAME.in_sum2 with NAME.counts; NAME.in_sum (activations) is allowed and ignored */
    const int64_t nt = sq_gguf_n_tensors(g);
    int64_t n_sums = 0;
    for (int64_t i = 0; i < nt && st == SQ_OK; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        size_t bl;
        if (strip_suffix(t->name, ".counts", &bl)) {
            char base[512];
            snprintf(base, sizeof base, "%.*s.in_sum2", (int)bl, t->name);
            if (!sq_gguf_find_tensor(g, base))
                st = sq_error_set(err, SQ_EFORMAT, "%s: %s has no matching %s", label, t->name, base);
            continue;
        }
        if (!strip_suffix(t->name, ".in_sum2", &bl)) continue;
        n_sums++;
        char name[512];
        if (bl >= sizeof name) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: tensor name %s is too long", label, t->name);
            break;
        }
        memcpy(name, t->name, bl);
        name[bl] = 0;
        char cname[540];
        snprintf(cname, sizeof cname, "%s.counts", name);
        const sq_gguf_tensor *ct = sq_gguf_find_tensor(g, cname);
        if (!ct) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: %s has no matching %s", label, t->name, cname);
            break;
        }
        if (t->type != SQ_TYPE_F32 || ct->type != SQ_TYPE_F32) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: %s and %s must be F32 (are %s and %s)", label, t->name, cname,
                              sq_type_name(t->type), sq_type_name(ct->type));
            break;
        }
        const int64_t nval = n_elements(t), ncounts = n_elements(ct);
        if (ncounts < 1 || nval < 1 || nval % ncounts != 0) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: %s has %lld values, not a multiple of its %lld counts", label,
                              name, (long long)nval, (long long)ncounts);
            break;
        }
        const int64_t ne0 = nval / ncounts;
        float *v = malloc((size_t)nval * sizeof *v);
        char *nm = strdup(name);
        if (!v || !nm) {
            free(v);
            free(nm);
            st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", label);
            break;
        }
        const float *sums = t->data, *counts = ct->data;
        for (int64_t j = 0; j < ncounts; j++) {
            /* counts are whole numbers stored as floats: round like llama.cpp (lround) */
            const float cnt = counts[j];
            if (!isfinite(cnt) || cnt < 0) {
                st = sq_error_set(err, SQ_EFORMAT, "%s: %s[%lld] = %g is not a valid count", label, cname,
                                  (long long)j, (double)cnt);
                break;
            }
            const float c = (float)lroundf(cnt);
            for (int64_t i2 = 0; i2 < ne0; i2++) {
                float s;
                memcpy(&s, &sums[j * ne0 + i2], sizeof s);
                v[j * ne0 + i2] = c > 0.0f ? s / c : 1.0f;
            }
        }
        if (st == SQ_OK) st = add_entry(im, nm, v, nval, label, err);
        if (st != SQ_OK) {
            free(v);
            free(nm);
        }
    }
    if (st == SQ_OK && n_sums == 0) st = sq_error_set(err, SQ_EFORMAT, "%s: no NAME.in_sum2 tensors (no data)", label);
    sq_gguf_close(g);
    if (st != SQ_OK) {
        sq_imatrix_free(im);
        return st;
    }
    *out = im;
    return SQ_OK;
}

sq_status sq_imatrix_parse(const void *data, size_t size, const char *label, sq_imatrix **out, sq_error *err)
{
    *out = NULL;
    if (!label) label = "imatrix";
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) return parse_gguf(data, size, label, out, err);
    bool not_dat = false;
    const sq_status st = parse_dat(data, size, label, out, &not_dat, err);
    if (st != SQ_OK && not_dat && err) {
        /* say which format was tried and why: a text file given by mistake
         * reads as a .dat whose first four bytes are a huge entry count */
        char reason[sizeof err->msg];
        const size_t ll = strlen(label);
        snprintf(reason, sizeof reason, "%s",
                 !strncmp(err->msg, label, ll) && !strncmp(err->msg + ll, ": ", 2) ? err->msg + ll + 2 : err->msg);
        sq_error_set(err, st,
                     "%s: not a GGUF file (it does not start with \"GGUF\"), so it was read as a legacy llama.cpp .dat "
                     "imatrix, which it is not either: %s",
                     label, reason);
    }
    return st;
}

sq_status sq_imatrix_load(const char *path, sq_imatrix **out, sq_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sq_error_set(err, SQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    void *buf = NULL;
    size_t size = 0;
    sq_status st = SQ_OK;
    if (fseek(f, 0, SEEK_END) != 0) st = sq_error_set(err, SQ_EIO, "%s: cannot seek", path);
    long n = st == SQ_OK ? ftell(f) : -1;
    if (st == SQ_OK && n < 0) st = sq_error_set(err, SQ_EIO, "%s: cannot tell its size", path);
    if (st == SQ_OK) {
        size = (size_t)n;
        buf = malloc(size ? size : 1);
        if (!buf) st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    if (st == SQ_OK && (fseek(f, 0, SEEK_SET) != 0 || fread(buf, 1, size, f) != size))
        st = sq_error_set(err, SQ_EIO, "%s: read failed", path);
    fclose(f);
    if (st == SQ_OK) st = sq_imatrix_parse(buf, size, path, out, err);
    free(buf);
    return st;
}

/* ---- writer ---- */

static int cmp_stat_index(const void *a, const void *b, void *stats)
{
    const sq_imatrix_stat *s = stats;
    return strcmp(s[*(const int64_t *)a].name, s[*(const int64_t *)b].name);
}

sq_status sq_imatrix_write_gguf(const char *path, const sq_imatrix_stat *stats, int64_t n_stats,
                                const char *const *datasets, int64_t n_datasets, uint32_t chunk_count,
                                uint32_t chunk_size, sq_error *err)
{
    if (n_stats < 1) return sq_error_set(err, SQ_EINVAL, "%s: no statistics to write", path);
    for (int64_t i = 0; i < n_stats; i++)
        if (!stats[i].name || stats[i].ne0 < 1 || stats[i].n_mat < 1 || !stats[i].in_sum2 || !stats[i].counts)
            return sq_error_set(err, SQ_EINVAL, "%s: statistics %lld (%s) are incomplete", path, (long long)i,
                                stats[i].name ? stats[i].name : "unnamed");
    /* llama-imatrix stores the weights sorted by name */
    int64_t *order = malloc((size_t)n_stats * sizeof *order);
    if (!order) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < n_stats; i++) order[i] = i;
    qsort_r(order, (size_t)n_stats, sizeof *order, cmp_stat_index, (void *)stats);
    for (int64_t i = 1; i < n_stats; i++)
        if (strcmp(stats[order[i]].name, stats[order[i - 1]].name) == 0) {
            sq_status dup = sq_error_set(err, SQ_EINVAL, "%s: statistics for %s given twice", path, stats[order[i]].name);
            free(order);
            return dup;
        }
    sq_gguf_writer *w = NULL;
    sq_status st = sq_gguf_writer_open(path, &w, err);
    if (st != SQ_OK) {
        free(order);
        return st;
    }
    if (st == SQ_OK) st = sq_gguf_writer_set_str(w, "general.type", "imatrix", err);
    if (st == SQ_OK) st = sq_gguf_writer_set_arr_str(w, "imatrix.datasets", datasets, (uint64_t)n_datasets, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u32(w, "imatrix.chunk_count", chunk_count, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u32(w, "imatrix.chunk_size", chunk_size, err);
    char name[600];
    for (int64_t i = 0; i < n_stats && st == SQ_OK; i++) {
        const sq_imatrix_stat *s = &stats[order[i]];
        /* as llama-imatrix: in_sum2 [ne0, n_mat], counts [1, n_mat] (one dimension when n_mat is 1) */
        const int64_t ne_sum[2] = {s->ne0, s->n_mat}, ne_cnt[2] = {1, s->n_mat};
        snprintf(name, sizeof name, "%s.in_sum2", s->name);
        st = sq_gguf_writer_add_tensor(w, name, s->n_mat > 1 ? 2 : 1, ne_sum, SQ_TYPE_F32,
                                       (uint64_t)(s->ne0 * s->n_mat) * 4, err);
        snprintf(name, sizeof name, "%s.counts", s->name);
        if (st == SQ_OK)
            st = sq_gguf_writer_add_tensor(w, name, s->n_mat > 1 ? 2 : 1, ne_cnt, SQ_TYPE_F32, (uint64_t)s->n_mat * 4,
                                           err);
    }
    for (int64_t i = 0; i < n_stats && st == SQ_OK; i++) {
        const sq_imatrix_stat *s = &stats[order[i]];
        st = sq_gguf_writer_write(w, s->in_sum2, (size_t)(s->ne0 * s->n_mat) * 4, err);
        if (st == SQ_OK) st = sq_gguf_writer_write(w, s->counts, (size_t)s->n_mat * 4, err);
    }
    free(order);
    if (st != SQ_OK) {
        sq_gguf_writer_abort(w);
        return st;
    }
    return sq_gguf_writer_finish(w, err);
}
