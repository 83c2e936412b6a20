/*
 * imatrix_collect.c — the importance-matrix collector behind `sq imatrix`:
 * a matmul hook that sums squared input activations per weight column, the
 * llama-imatrix chunk loop that feeds it, loading llama.cpp's files to merge
 * them, and writing the result through sq_imatrix_write_gguf.
 *
 * Ownership: the collector owns every entry (name, sums, counts) and the
 * dataset names. It keeps no pointer into a context, model or file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/imatrix_collect.h"
#include "sq/types.h"

/* llama-imatrix ignores products of fewer rows than this. */
#define MIN_ROWS 16

typedef struct ientry {
    char *name;
    float *in_sum2; /* ne0 * n_mat */
    float *counts;  /* n_mat; whole numbers (llama.cpp counts in int64 and stores float) */
    int64_t ne0, n_mat;
} ientry;

struct sq_imatrix_collector {
    bool process_output;
    ientry *e;
    int64_t n, cap;
    char **datasets;
    int64_t n_datasets;
    sq_status st; /* first hook error, sticky */
    sq_error err;
};

sq_status sq_imatrix_collector_create(bool process_output, sq_imatrix_collector **out, sq_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    (*out)->process_output = process_output;
    return SQ_OK;
}

void sq_imatrix_collector_free(sq_imatrix_collector *ic)
{
    if (!ic) return;
    for (int64_t i = 0; i < ic->n; i++) {
        free(ic->e[i].name);
        free(ic->e[i].in_sum2);
        free(ic->e[i].counts);
    }
    for (int64_t i = 0; i < ic->n_datasets; i++) free(ic->datasets[i]);
    free(ic->datasets);
    free(ic->e);
    free(ic);
}

/* Position of name among the entries (kept sorted by strcmp, llama.cpp's
 * file order): *found tells whether it is there; else where it would go. */
static int64_t locate(const sq_imatrix_collector *ic, const char *name, bool *found)
{
    int64_t lo = 0, hi = ic->n;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(ic->e[mid].name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = false;
    return lo;
}

/* Index of entry name, created zeroed with ne0 x n_mat values when absent;
 * -1 when out of memory. */
static int64_t get_entry(sq_imatrix_collector *ic, const char *name, int64_t ne0, int64_t n_mat)
{
    bool found;
    const int64_t at = locate(ic, name, &found);
    if (found) return at;
    if (ic->n == ic->cap) {
        const int64_t cap = ic->cap ? 2 * ic->cap : 64;
        ientry *ne = realloc(ic->e, (size_t)cap * sizeof *ne);
        if (!ne) return -1;
        ic->e = ne;
        ic->cap = cap;
    }
    ientry e = {strdup(name), calloc((size_t)(ne0 * n_mat), sizeof(float)), calloc((size_t)n_mat, sizeof(float)),
                ne0, n_mat};
    if (!e.name || !e.in_sum2 || !e.counts) {
        free(e.name);
        free(e.in_sum2);
        free(e.counts);
        return -1;
    }
    memmove(&ic->e[at + 1], &ic->e[at], (size_t)(ic->n - at) * sizeof e);
    ic->e[at] = e;
    ic->n++;
    return at;
}

/* Whether llama-imatrix collects this weight: blk.* always, output.weight
 * only on request (a tied output, token_embd.weight, never: as llama.cpp). */
static bool wanted(const sq_imatrix_collector *ic, const char *name)
{
    if (strncmp(name, "blk.", 4) == 0) return true;
    return ic->process_output && strcmp(name, "output.weight") == 0;
}

/* Adds n_rows rows of X (n_cols floats each) to matrix k of entry name,
 * which has n_mat matrices: each row adds x[j]^2 to in_sum2[k][j] in float,
 * rows in order, as llama.cpp's collector does; count k grows by the rows. */
static void add_rows(sq_imatrix_collector *ic, const char *name, int64_t k, int64_t n_mat, const float *X,
                     int64_t n_rows, int64_t n_cols)
{
    const int64_t i = get_entry(ic, name, n_cols, n_mat);
    if (i < 0) {
        ic->st = sq_error_set(&ic->err, SQ_ENOMEM, "imatrix: out of memory for entry %s", name);
        return;
    }
    ientry *e = &ic->e[i];
    if (e->ne0 != n_cols || e->n_mat != n_mat) {
        ic->st = sq_error_set(&ic->err, SQ_EFORMAT,
                              "imatrix: %s has %lld x %lld values (from a loaded file), but its input is %lld x %lld",
                              name, (long long)e->ne0, (long long)e->n_mat, (long long)n_cols, (long long)n_mat);
        return;
    }
    float *restrict s = e->in_sum2 + k * n_cols;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *restrict x = X + r * n_cols;
        for (int64_t j = 0; j < n_cols; j++) s[j] += x[j] * x[j];
    }
    e->counts[k] += (float)n_rows;
    for (int64_t j = 0; j < n_cols; j++)
        if (!isfinite(s[j])) {
            ic->st = sq_error_set(&ic->err, SQ_ERANGE, "imatrix: %s: the sum of squares of column %lld is %g", name,
                                  (long long)(k * n_cols + j), (double)s[j]);
            return;
        }
}

/* The matmul hook: products of at least MIN_ROWS rows of the weights
 * llama-imatrix collects. Independent columns: the inner loop vectorizes
 * without reassociation. */
void sq_imatrix_collector_hook(void *user, const char *tensor_name, const float *X, int64_t n_rows, int64_t n_cols)
{
    sq_imatrix_collector *ic = user;
    if (ic->st != SQ_OK || n_rows < MIN_ROWS || !wanted(ic, tensor_name)) return;
    add_rows(ic, tensor_name, 0, 1, X, n_rows, n_cols);
}

/* The expert hook: every expert product is collected whatever its rows (as
 * llama-imatrix does for its indirect products), into matrix `expert` of an
 * entry with one matrix per expert. */
void sq_imatrix_collector_expert_hook(void *user, const char *tensor_name, int64_t expert, int64_t n_expert,
                                      const float *X, int64_t n_rows, int64_t n_cols)
{
    sq_imatrix_collector *ic = user;
    if (ic->st != SQ_OK || expert < 0 || expert >= n_expert || !wanted(ic, tensor_name)) return;
    add_rows(ic, tensor_name, expert, n_expert, X, n_rows, n_cols);
}

sq_status sq_imatrix_collector_status(const sq_imatrix_collector *ic, sq_error *err)
{
    if (ic->st != SQ_OK && err) *err = ic->err;
    return ic->st;
}

void sq_imatrix_collector_attach(sq_imatrix_collector *ic, sq_context *c)
{
    sq_context_set_matmul_hook(c, sq_imatrix_collector_hook, ic);
    sq_context_set_expert_hook(c, sq_imatrix_collector_expert_hook, ic);
}

void sq_imatrix_collector_detach(sq_context *c)
{
    sq_context_set_matmul_hook(c, NULL, NULL);
    sq_context_set_expert_hook(c, NULL, NULL);
}

sq_status sq_imatrix_collector_add_dataset(sq_imatrix_collector *ic, const char *name, sq_error *err)
{
    char **nd = realloc(ic->datasets, (size_t)(ic->n_datasets + 1) * sizeof *nd);
    if (!nd) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    ic->datasets = nd;
    if (!(nd[ic->n_datasets] = strdup(name))) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    ic->n_datasets++;
    return SQ_OK;
}

/* Adds ne0 x n_mat sums and n_mat counts to entry name (created when new).
 * The sums are read with memcpy: file data may sit at any address. */
static sq_status merge_entry(sq_imatrix_collector *ic, const char *name, const void *sums, const void *counts,
                             int64_t ne0, int64_t n_mat, const char *label, sq_error *err)
{
    const int64_t i = get_entry(ic, name, ne0, n_mat);
    if (i < 0) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory for entry %s", label, name);
    ientry *e = &ic->e[i];
    if (e->ne0 != ne0 || e->n_mat != n_mat)
        return sq_error_set(err, SQ_EFORMAT, "%s: entry %s has %lld x %lld values, but %lld x %lld are already there",
                            label, name, (long long)ne0, (long long)n_mat, (long long)e->ne0, (long long)e->n_mat);
    for (int64_t k = 0; k < n_mat; k++) {
        float c;
        memcpy(&c, (const char *)counts + k * 4, 4);
        if (!isfinite(c) || c < 0)
            return sq_error_set(err, SQ_EFORMAT, "%s: %s.counts[%lld] = %g is not a valid count", label, name,
                                (long long)k, (double)c);
        e->counts[k] += (float)lroundf(c);
    }
    for (int64_t j = 0; j < ne0 * n_mat; j++) {
        float v;
        memcpy(&v, (const char *)sums + j * 4, 4);
        if (!isfinite(v) || v < 0)
            return sq_error_set(err, SQ_EFORMAT, "%s: %s.in_sum2[%lld] = %g is not a valid sum of squares", label,
                                name, (long long)j, (double)v);
        e->in_sum2[j] += v;
    }
    return SQ_OK;
}

/* The raw sums and counts of a GGUF imatrix (already validated by
 * sq_imatrix_load, which keeps only their quotients). */
static sq_status load_gguf_raw(sq_imatrix_collector *ic, const char *path, sq_error *err)
{
    sq_gguf *g = NULL;
    sq_status st = sq_gguf_open(path, &g, err);
    if (st) return st;
    const int64_t nt = sq_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt && st == SQ_OK; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        const size_t len = strlen(t->name), sl = strlen(".in_sum2");
        if (len <= sl || strcmp(t->name + len - sl, ".in_sum2") != 0) continue;
        char name[512], cname[600];
        snprintf(name, sizeof name, "%.*s", (int)(len - sl), t->name);
        snprintf(cname, sizeof cname, "%s.counts", name);
        const sq_gguf_tensor *ct = sq_gguf_find_tensor(g, cname);
        int64_t nval = 1, ncnt = 1;
        for (int d = 0; d < t->n_dims; d++) nval *= t->ne[d];
        for (int d = 0; ct && d < ct->n_dims; d++) ncnt *= ct->ne[d];
        if (!ct || t->type != SQ_TYPE_F32 || ct->type != SQ_TYPE_F32 || ncnt < 1 || nval % ncnt != 0) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: %s has no valid F32 %s", path, t->name, cname);
            break;
        }
        st = merge_entry(ic, name, t->data, ct->data, nval / ncnt, ncnt, path, err);
    }
    sq_gguf_close(g);
    return st;
}

sq_status sq_imatrix_collector_load(sq_imatrix_collector *ic, const char *path, int64_t chunk_size, sq_error *err)
{
    sq_imatrix *im = NULL;
    sq_status st = sq_imatrix_load(path, &im, err); /* validates either format */
    if (st) return st;
    if (!sq_imatrix_is_legacy(im)) {
        st = load_gguf_raw(ic, path, err);
    } else {
        /* .dat keeps value/count only: count chunk_count * chunk_size rows */
        const int64_t ncall = sq_imatrix_chunk_count(im) > 0 ? sq_imatrix_chunk_count(im) : 1;
        const float cnt = (float)(ncall * (chunk_size > 0 ? chunk_size : 512));
        for (int64_t i = 0; i < sq_imatrix_n_entries(im) && st == SQ_OK; i++) {
            const char *name = sq_imatrix_entry_name(im, i);
            int64_t n = 0;
            const float *imp = sq_imatrix_find(im, name, &n);
            float *sums = malloc((size_t)n * sizeof *sums);
            if (!sums) {
                st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", path);
                break;
            }
            for (int64_t j = 0; j < n; j++) sums[j] = imp[j] * cnt;
            st = merge_entry(ic, name, sums, &cnt, n, 1, path, err);
            free(sums);
        }
    }
    for (int64_t i = 0; i < sq_imatrix_n_datasets(im) && st == SQ_OK; i++)
        st = sq_imatrix_collector_add_dataset(ic, sq_imatrix_dataset(im, i), err);
    sq_imatrix_free(im);
    return st;
}

/* -log p(next token) for each of the n-1 positions from `from`, added to *nll. */
static void score(const float *logits, int n_vocab, const int32_t *tok, int from, int n, double *nll, uint64_t *count)
{
    for (int i = from; i < n - 1; i++) {
        *nll += sq_nll_of(logits + (size_t)i * (size_t)n_vocab, n_vocab, tok[i + 1]);
        (*count)++;
    }
}

sq_status sq_imatrix_collect(sq_imatrix_collector *ic, sq_context *c, const int32_t *tokens, size_t n_tokens,
                             int32_t bos, const sq_imatrix_run_params *p, double *ppl, sq_error *err)
{
    const int n_ctx = p->n_ctx;
    if (n_ctx < MIN_ROWS) return sq_error_set(err, SQ_EINVAL, "imatrix: a chunk of %d tokens is too short (at least %d)", n_ctx, MIN_ROWS);
    if (n_ctx > sq_context_n_ctx(c))
        return sq_error_set(err, SQ_EINVAL, "chunks of %d tokens do not fit the context of %d", n_ctx,
                            sq_context_n_ctx(c));
    if (n_tokens < 2 * (size_t)n_ctx)
        return sq_error_set(err, SQ_EINVAL,
                            "the calibration text has %zu tokens; at least %d (2 x context %d) are needed: give a "
                            "longer text or a smaller -c",
                            n_tokens, 2 * n_ctx, n_ctx);
    const int n_vocab = (int)sq_model_hparams(sq_context_model(c))->n_vocab;
    const size_t max_chunks = n_tokens / (size_t)n_ctx;
    const int n_chunks = p->n_chunks > 0 && (size_t)p->n_chunks < max_chunks ? p->n_chunks : (int)max_chunks;
    int32_t *buf = malloc((size_t)n_ctx * sizeof *buf);
    if (!buf) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    double nll = 0;
    uint64_t count = 0;
    sq_status st = SQ_OK;
    sq_imatrix_collector_attach(ic, c);
    for (int k = 0; k < n_chunks && st == SQ_OK; k++) {
        const double t0 = sq_time_now();
        memcpy(buf, tokens + (size_t)k * (size_t)n_ctx, (size_t)n_ctx * sizeof *buf);
        if (bos >= 0) buf[0] = bos;
        sq_kv_clear(c);
        /* logits for every token, as llama-imatrix asks (the output projection sees all rows) */
        st = sq_eval(c, buf, n_ctx, n_ctx, err);
        if (st) {
            sq_error_prefix(err, "imatrix: chunk %d", k + 1);
            break;
        }
        if ((st = sq_imatrix_collector_status(ic, err))) break;
        /* llama-imatrix's perplexity: the second half scored against the chunk's real tokens */
        score(sq_get_logits(c), n_vocab, tokens + (size_t)k * (size_t)n_ctx, n_ctx / 2, n_ctx, &nll, &count);
        if (p->on_chunk) {
            sq_imatrix_progress pr = {k + 1, n_chunks, exp(nll / (double)count), sq_time_now() - t0};
            p->on_chunk(p->ud, &pr);
        }
    }
    sq_imatrix_collector_detach(c);
    free(buf);
    if (st == SQ_OK && ppl) *ppl = count ? exp(nll / (double)count) : 0.0;
    return st;
}

int64_t sq_imatrix_collector_n_entries(const sq_imatrix_collector *ic) { return ic ? ic->n : 0; }

const char *sq_imatrix_collector_entry(const sq_imatrix_collector *ic, int64_t i, const float **in_sum2,
                                       const float **counts, int64_t *ne0, int64_t *n_mat)
{
    if (!ic || i < 0 || i >= ic->n) return NULL;
    const ientry *e = &ic->e[i];
    if (in_sum2) *in_sum2 = e->in_sum2;
    if (counts) *counts = e->counts;
    if (ne0) *ne0 = e->ne0;
    if (n_mat) *n_mat = e->n_mat;
    return e->name;
}

uint32_t sq_imatrix_collector_chunk_count(const sq_imatrix_collector *ic, int64_t chunk_size)
{
    double mx = 0;
    for (int64_t i = 0; i < ic->n; i++)
        for (int64_t k = 0; k < ic->e[i].n_mat; k++)
            if (ic->e[i].counts[k] > mx) mx = ic->e[i].counts[k];
    return chunk_size > 0 ? (uint32_t)(mx / (double)chunk_size) : 0;
}

sq_status sq_imatrix_collector_write(const sq_imatrix_collector *ic, const char *path, int64_t chunk_size,
                                     sq_error *err)
{
    if (ic->n == 0) return sq_error_set(err, SQ_EINVAL, "%s: no imatrix entries to write (no activations collected)", path);
    sq_imatrix_stat *st = malloc((size_t)ic->n * sizeof *st);
    if (!st) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    for (int64_t i = 0; i < ic->n; i++) {
        const char *name = sq_imatrix_collector_entry(ic, i, &st[i].in_sum2, &st[i].counts, &st[i].ne0, &st[i].n_mat);
        st[i].name = name;
    }
    sq_status s = sq_imatrix_write_gguf(path, st, ic->n, (const char *const *)ic->datasets, ic->n_datasets,
                                        sq_imatrix_collector_chunk_count(ic, chunk_size), (uint32_t)chunk_size, err);
    free(st);
    return s;
}
