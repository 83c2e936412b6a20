/*
 * grad_stats.c — the statistics the backward pass gathers per weight use
 * (sq/grad.h: sq_grad_stats), and the predictions made from them.
 *
 * For a product Y = X W^T over a chunk of n tokens the weight's gradient is
 * G = dY^T X (rows × cols); what the Fisher estimate needs are the row and
 * column sums of G∘G. They are computed without keeping G when that is
 * cheaper: with the Gram matrix K = X X^T (n × n),
 *     sum_c G[r][c]^2 = sum_{t,t'} dY[t][r] K[t][t'] dY[t'][r]
 * and with K = dY dY^T the same for the columns; 2 n^2 (rows + cols)
 * multiply-adds against n rows cols for G itself, so G is formed (a block of
 * 64 rows at a time) only for matrices not much larger than the chunk. Both
 * run on the pool with f32 products (sq_sgemm_acc) and double sums, each
 * output written by one task in a fixed order: the same whatever the thread
 * count. Beside them, per row the squared output gradient and per column the
 * squared input (the importance matrix's sums) and the squared error of the
 * input quantized to q8_K and q8_0 (what the CPU's activation types cost).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grad_internal.h"
#include "sq/blocks.h"

#define GB 64  /* rows or columns per task */
#define GD 256 /* depth of one step of a Gram matrix */

static const char *const w_role[W_PER_LAYER] = {"attn_q",   "attn_k",       "attn_v",        "attn_output",
                                                "ffn_gate", "ffn_up",       "ffn_down",      "ffn_gate_inp",
                                                "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};

/* Whether G itself is cheaper than the Gram route for n tokens. */
static bool direct_path(int64_t n, int64_t rows, int64_t cols)
{
    return (double)rows * (double)cols <= 2.0 * (double)n * (double)(rows + cols);
}

/* One entry: name, shape and zeroed sums. */
static bool stat_init(gstat *e, const char *name, bool lookup, int64_t rows, int64_t cols)
{
    snprintf(e->name, sizeof e->name, "%s", name);
    e->s.name = e->name;
    e->s.lookup = lookup;
    e->s.rows = rows;
    e->s.cols = cols;
    e->s.g_row = calloc((size_t)rows, sizeof(double));
    e->s.g_col = calloc((size_t)cols, sizeof(double));
    e->s.dy_sq = calloc((size_t)rows, sizeof(double));
    e->slices = 1;
    bool ok = e->s.g_row && e->s.g_col && e->s.dy_sq;
    if (lookup) return ok;
    e->s.x_sq = calloc((size_t)cols, sizeof(double));
    if (cols % 256 == 0) e->s.act_q8_K = calloc((size_t)cols, sizeof(double));
    if (cols % 32 == 0) e->s.act_q8_0 = calloc((size_t)cols, sizeof(double));
    return ok && e->s.x_sq && (cols % 256 || e->s.act_q8_K) && (cols % 32 || e->s.act_q8_0);
}

/* The entries: [0] the lookup, then layer by layer its products (those it
 * has: a fused attn_qkv stands in attn_q's place, a fused ffn_up in
 * ffn_up's, g->slot maps them), [last] the output. */
static bool entries_init(sq_grad *g)
{
    const sq_model *m = g->m;
    const int64_t n_slot = m->hp.n_layer * W_PER_LAYER;
    g->slot = malloc(sizeof(int) * (size_t)(n_slot > 0 ? n_slot : 1));
    g->st = calloc((size_t)(2 + n_slot), sizeof *g->st);
    if (!g->st || !g->slot) return false;
    bool ok = stat_init(&g->st[0], "token_embd.weight", true, m->hp.n_vocab, g->E);
    g->n_st = 1;
    for (int64_t l = 0; ok && l < m->hp.n_layer; l++)
        for (int i = 0; ok && i < W_PER_LAYER; i++) {
            char nm[96];
            const sq__layer *L = &m->layers[l];
            const sq_weight *w = sq__grad_layer_weight(L, i);
            g->slot[l * W_PER_LAYER + i] = w ? g->n_st : -1;
            if (!w) continue;
            snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, w == &L->wqkv ? "attn_qkv" : w_role[i]);
            ok = stat_init(&g->st[g->n_st++], nm, false, w->rows, w->cols);
            if (ok && i >= W_GATE_EXPS) g->st[g->n_st - 1].slices = m->hp.n_expert;
        }
    g->n_st++;
    if (ok)
        ok = stat_init(&g->st[g->n_st - 1], m->hp.tied_output ? "token_embd.weight" : "output.weight", false,
                       m->output.rows, m->output.cols);
    return ok;
}

bool sq__grad_stats_init(sq_grad *g, size_t *total)
{
    if (!entries_init(g)) return false;
    const size_t T = (size_t)g->n_ctx;
    size_t max_cols = 0, part = 0;
    for (int i = 1; i < g->n_st; i++) {
        const sq_grad_stats *s = &g->st[i].s;
        const int64_t rows = s->rows / g->st[i].slices; /* an expert's rows are observed alone */
        if ((size_t)s->cols > max_cols) max_cols = (size_t)s->cols;
        if (direct_path(g->n_ctx, rows, s->cols)) {
            const size_t p = (size_t)((rows + GB - 1) / GB) * (size_t)s->cols;
            if (p > part) part = p;
        }
    }
    if ((size_t)g->E > max_cols) max_cols = (size_t)g->E;
    const size_t gram_scr = GD * GB + T * GB, direct_scr = GB * T + GB * max_cols;
    g->gscr_stride = ((gram_scr > direct_scr ? gram_scr : direct_scr) + 15) / 16 * 16;
    /* q8_K of the columns rounded up to 256 is longer than q8_0 of them */
    const size_t act_bytes = sq_row_size(SQ_TYPE_Q8_K, (int64_t)(max_cols + 255) / 256 * 256);
    g->act_q = malloc(act_bytes);
    g->act_x = malloc(sizeof(float) * max_cols);
    g->gram = sq_aligned_alloc(sizeof(float) * T * T + 64);
    g->gscr = sq_aligned_alloc(sizeof(float) * (size_t)g->n_threads * g->gscr_stride + 64);
    g->colpart_len = part;
    g->colpart = malloc(sizeof(double) * (part ? part : 1));
    *total += act_bytes + sizeof(float) * (max_cols + T * T + (size_t)g->n_threads * g->gscr_stride) + sizeof(double) * part;
    return g->act_q && g->act_x && g->gram && g->gscr && g->colpart;
}

void sq__grad_stats_free(sq_grad *g)
{
    for (int i = 0; g->st && i < g->n_st; i++) {
        const sq_grad_stats *s = &g->st[i].s;
        const double *arrays[] = {s->g_row, s->g_col, s->dy_sq, s->x_sq, s->act_q8_K, s->act_q8_0};
        for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) free((double *)arrays[k]);
    }
    free(g->st);
    free(g->slot);
    free(g->act_q);
    free(g->act_x);
    sq_aligned_free(g->gram);
    sq_aligned_free(g->gscr);
    free(g->colpart);
}

/* ---- the marginals of G∘G ---- */

typedef struct gjob {
    sq_grad *g;
    int64_t n;
    const float *A; /* gram: n × D (lda); qdiag: the n × D matrix whose quadratic forms are taken */
    size_t lda;
    int64_t D;
    const float *X; /* direct: X (n × cols) and dY (n × rows) */
    const float *dY;
    int64_t rows, cols;
    double *out;    /* qdiag / direct: sums per column of A / per row of G */
    atomic_llong next;
} gjob;

/* K[t][j] = (A A^T)[t][j] for the columns j of a block j0..j0+64 and the rows
 * t >= j0 (K is symmetric: mirror_gram fills the rest), in steps of GD of
 * the depth. */
static void gram_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    gjob *J = ctx;
    float *bt = J->g->gscr + (size_t)ith * J->g->gscr_stride;
    const int64_t n = J->n;
    for (;;) {
        const int64_t j0 = GB * atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (j0 >= n) break;
        const int64_t jb = n - j0 < GB ? n - j0 : GB;
        float *K = J->g->gram + (size_t)j0 * (size_t)n + (size_t)j0;
        for (int64_t t = j0; t < n; t++) memset(K + (t - j0) * n, 0, sizeof(float) * (size_t)jb);
        for (int64_t d0 = 0; d0 < J->D; d0 += GD) {
            const int64_t dl = J->D - d0 < GD ? J->D - d0 : GD;
            for (int64_t j = 0; j < jb; j++)
                for (int64_t d = 0; d < dl; d++) bt[d * GB + j] = J->A[(size_t)(j0 + j) * J->lda + (size_t)(d0 + d)];
            sq_sgemm_acc(n - j0, jb, dl, J->A + (size_t)j0 * J->lda + d0, J->lda, bt, GB, K, (size_t)n);
        }
    }
}

/* The entries of K above the blocks gram_worker computed, from their mirror images. */
static void mirror_gram(sq_grad *g, int64_t n)
{
    for (int64_t j = GB; j < n; j++) {
        const int64_t j0 = j / GB * GB;
        for (int64_t t = 0; t < j0; t++) g->gram[t * n + j] = g->gram[j * n + t];
    }
}

/* out[d] += sum_{t,t'} A[t][d] K[t][t'] A[t'][d] for a block of 64 columns d per task. */
static void qdiag_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    gjob *J = ctx;
    float *Z = J->g->gscr + (size_t)ith * J->g->gscr_stride;
    const int64_t n = J->n;
    for (;;) {
        const int64_t d0 = GB * atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (d0 >= J->D) break;
        const int64_t db = J->D - d0 < GB ? J->D - d0 : GB;
        memset(Z, 0, sizeof(float) * (size_t)(n * GB));
        sq_sgemm_acc(n, db, n, J->g->gram, (size_t)n, J->A + d0, J->lda, Z, GB);
        for (int64_t d = 0; d < db; d++) {
            double s = 0.0;
            for (int64_t t = 0; t < n; t++) s += (double)J->A[(size_t)t * J->lda + (size_t)(d0 + d)] * (double)Z[t * GB + d];
            J->out[d0 + d] += s;
        }
    }
}

/* G for a block of 64 weight rows per task: row sums into out, column sums
 * into the block's own line of colpart. */
static void direct_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    gjob *J = ctx;
    float *dyt = J->g->gscr + (size_t)ith * J->g->gscr_stride, *G = dyt + GB * J->n;
    const int64_t n = J->n, C = J->cols;
    for (;;) {
        const int64_t blk = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed), r0 = GB * blk;
        if (r0 >= J->rows) break;
        const int64_t rb = J->rows - r0 < GB ? J->rows - r0 : GB;
        for (int64_t r = 0; r < rb; r++)
            for (int64_t t = 0; t < n; t++) dyt[r * n + t] = J->dY[(size_t)t * (size_t)J->rows + (size_t)(r0 + r)];
        memset(G, 0, sizeof(float) * (size_t)(rb * C));
        sq_sgemm_acc(rb, C, n, dyt, (size_t)n, J->X, (size_t)C, G, (size_t)C);
        double *cp = J->g->colpart + (size_t)blk * (size_t)C;
        memset(cp, 0, sizeof(double) * (size_t)C);
        for (int64_t r = 0; r < rb; r++) {
            double s = 0.0;
            for (int64_t c = 0; c < C; c++) {
                const double v = (double)G[r * C + c] * (double)G[r * C + c];
                s += v;
                cp[c] += v;
            }
            J->out[r0 + r] += s;
        }
    }
}

/* Runs fn over the job from a fresh counter. */
static void run(sq_grad *g, void (*fn)(void *, int, int), gjob *J)
{
    atomic_store_explicit(&J->next, 0, memory_order_relaxed);
    sq_threadpool_run(g->tp, fn, J);
}

/* Adds this chunk's row and column sums of G∘G (G = dY^T X) to e. */
static void add_marginals(sq_grad *g, gstat *e, const float *X, const float *dY, int64_t n)
{
    double *gr = (double *)e->s.g_row, *gc = (double *)e->s.g_col;
    const int64_t R = e->s.rows, C = e->s.cols;
    double before = 0.0, after = 0.0;
    for (int64_t r = 0; r < R; r++) before += gr[r];
    gjob J;
    memset(&J, 0, sizeof J);
    J.g = g, J.n = n;
    if (direct_path(n, R, C) && (size_t)((R + GB - 1) / GB) * (size_t)C <= g->colpart_len) {
        J.X = X, J.dY = dY, J.rows = R, J.cols = C, J.out = gr;
        run(g, direct_worker, &J);
        for (int64_t b = 0; b * GB < R; b++)
            for (int64_t c = 0; c < C; c++) gc[c] += g->colpart[(size_t)b * (size_t)C + (size_t)c];
    } else {
        J.A = X, J.lda = (size_t)C, J.D = C;
        run(g, gram_worker, &J);
        mirror_gram(g, n);
        J.A = dY, J.lda = (size_t)R, J.D = R, J.out = gr;
        run(g, qdiag_worker, &J);
        run(g, gram_worker, &J);
        mirror_gram(g, n);
        J.A = X, J.lda = (size_t)C, J.D = C, J.out = gc;
        run(g, qdiag_worker, &J);
    }
    for (int64_t r = 0; r < R; r++) after += gr[r];
    e->s.g_tot += after - before;
}

/* ---- observing a product and the lookup ---- */

/* Adds to acc the squared error of x (n values) quantized to the activation
 * type at and back. */
static void act_error(sq_grad *g, int at, const float *x, int64_t n, double *acc)
{
    sq_quantize_act(at, x, g->act_q, n);
    sq_dequantize_row(at, g->act_q, g->act_x, n);
    for (int64_t c = 0; c < n; c++) {
        const double d = (double)x[c] - (double)g->act_x[c];
        acc[c] += d * d;
    }
}

void sq__grad_observe(sq_grad *g, gstat *e, const float *X, const float *dY, int64_t n)
{
    if (!e) return;
    double *dy = (double *)e->s.dy_sq, *xs = (double *)e->s.x_sq;
    for (int64_t t = 0; t < n; t++) {
        const float *d = dY + (size_t)t * (size_t)e->s.rows, *x = X + (size_t)t * (size_t)e->s.cols;
        for (int64_t r = 0; r < e->s.rows; r++) dy[r] += (double)d[r] * (double)d[r];
        for (int64_t c = 0; c < e->s.cols; c++) xs[c] += (double)x[c] * (double)x[c];
        if (e->s.act_q8_K) act_error(g, SQ_TYPE_Q8_K, x, e->s.cols, (double *)e->s.act_q8_K);
        if (e->s.act_q8_0) act_error(g, SQ_TYPE_Q8_0, x, e->s.cols, (double *)e->s.act_q8_0);
    }
    add_marginals(g, e, X, dY, n);
    e->s.n_in += n;
    if (g->hook) g->hook(g->hook_user, &e->s, X, NULL, dY, n);
}

void sq__grad_observe_rows(sq_grad *g, gstat *e, int64_t row0, int64_t rows, const float *X, const float *dY,
                           int64_t n)
{
    if (!e) return;
    gstat v = *e; /* a view of the rows; the column sums are shared */
    v.s.rows = rows;
    v.s.row0 = e->s.row0 + row0;
    v.s.g_row = e->s.g_row + row0;
    v.s.dy_sq = e->s.dy_sq + row0;
    v.s.g_tot = 0.0;
    v.s.n_in = 0;
    sq__grad_observe(g, &v, X, dY, n);
    e->s.g_tot += v.s.g_tot;
    e->s.n_in += v.s.n_in;
}

void sq__grad_observe_lookup(sq_grad *g, const int32_t *tok, const float *dx0, int n)
{
    gstat *e = &g->st[0];
    double *gr = (double *)e->s.g_row, *gc = (double *)e->s.g_col, *dy = (double *)e->s.dy_sq;
    const int64_t E = g->E;
    float *sum = g->act_x;
    bool *done = (bool *)g->gram; /* n flags: the token of position t is summed already */
    memset(done, 0, (size_t)n);
    for (int t = 0; t < n; t++) {
        if (done[t]) continue;
        /* row tok[t] of G: the gradients of every position holding that token, in order */
        memset(sum, 0, sizeof(float) * (size_t)E);
        for (int u = t; u < n; u++) {
            if (tok[u] != tok[t]) continue;
            done[u] = true;
            const float *d = dx0 + (size_t)u * (size_t)E;
            double s = 0.0;
            for (int64_t c = 0; c < E; c++) sum[c] += d[c], s += (double)d[c] * (double)d[c];
            dy[tok[t]] += s;
        }
        double s = 0.0;
        for (int64_t c = 0; c < E; c++) {
            const double v = (double)sum[c] * (double)sum[c];
            gc[c] += v;
            s += v;
        }
        gr[tok[t]] += s;
        e->s.g_tot += s;
    }
    e->s.n_in += n;
    if (g->hook) g->hook(g->hook_user, &e->s, NULL, tok, dx0, n);
}

/* ---- results ---- */

int64_t sq_grad_n_scored(const sq_grad *g) { return g->n_scored; }
int64_t sq_grad_n_stats(const sq_grad *g) { return g->n_st; }
const sq_grad_stats *sq_grad_stats_at(const sq_grad *g, int64_t i) { return i >= 0 && i < g->n_st ? &g->st[i].s : NULL; }

const sq_grad_stats *sq_grad_find(const sq_grad *g, const char *name, bool lookup)
{
    for (int i = 0; i < g->n_st; i++)
        if (g->st[i].s.lookup == lookup && strcmp(g->st[i].s.name, name) == 0) return &g->st[i].s;
    return NULL;
}

void sq_grad_set_hook(sq_grad *g, sq_grad_hook fn, void *user)
{
    g->hook = fn;
    g->hook_user = fn ? user : NULL;
}

void sq_grad_factors(const sq_grad *g, const sq_grad_stats *s, double *row, double *col)
{
    const bool any = g->n_scored > 0 && s->g_tot > 0;
    for (int64_t r = 0; r < s->rows; r++) row[r] = any ? s->g_row[r] / (double)g->n_scored : 0.0;
    for (int64_t c = 0; c < s->cols; c++) col[c] = any ? s->g_col[c] / s->g_tot : 0.0;
}

double sq_grad_predict(const sq_grad *g, const sq_grad_stats *s, const float *dW, const int64_t *row_idx, int64_t n_rows)
{
    double *row = malloc(sizeof(double) * (size_t)s->rows), *col = malloc(sizeof(double) * (size_t)s->cols);
    if (!row || !col) {
        free(row);
        free(col);
        return -1.0;
    }
    sq_grad_factors(g, s, row, col);
    double sum = 0.0;
    for (int64_t i = 0; i < n_rows; i++) {
        const float *d = dW + (size_t)i * (size_t)s->cols;
        double rs = 0.0;
        for (int64_t c = 0; c < s->cols; c++) rs += col[c] * (double)d[c] * (double)d[c];
        sum += row[row_idx ? row_idx[i] : i] * rs;
    }
    free(row);
    free(col);
    return 0.5 * sum;
}

double sq_grad_act_cost(const sq_grad *g, const sq_grad_stats *s, int act_type, const float *W, const int64_t *row_idx,
                        int64_t n_rows)
{
    const double *act = act_type == SQ_TYPE_Q8_K ? s->act_q8_K : act_type == SQ_TYPE_Q8_0 ? s->act_q8_0 : NULL;
    if (!act || g->n_scored <= 0 || s->n_in <= 0) return 0.0;
    double sum = 0.0;
    for (int64_t i = 0; i < n_rows; i++) {
        const float *w = W + (size_t)i * (size_t)s->cols;
        double a = 0.0;
        for (int64_t c = 0; c < s->cols; c++) a += (double)w[c] * (double)w[c] * act[c];
        sum += s->dy_sq[row_idx ? row_idx[i] : i] * a;
    }
    return 0.5 * sum / ((double)g->n_scored * (double)s->n_in);
}
