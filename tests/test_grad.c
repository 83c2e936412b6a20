/*
 * test_grad.c — the engine's backward pass (sq/grad.h) and its kernels:
 * the f32 product kernel against its scalar reference, the product with a
 * weight's transpose against a naive sum (plain, quantized, SmarterQuant
 * with a permutation; any thread count), each operation's backward against
 * finite differences of its forward, the blocked attention against the
 * row-by-row reference, and a whole tiny model: every weight's gradient
 * against finite differences of the loss (untied and tied, and a
 * SmarterQuant model with shared permutations against the plain one), and
 * the sampled Fisher information against the KL divergence it predicts.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/grad_internal.h"
#include "harness.h"
#include "sq/blocks.h"
#include "sq/grad.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"
#include "tinymodel.h"

static uint64_t rng = 0x1234567;
static float rnd(void) { return tm_rand(&rng); }

/* ---- kernels ---- */

static void test_sgemm(void)
{
    const int sizes[][3] = {{1, 1, 1}, {6, 64, 7}, {5, 63, 3}, {13, 150, 40}, {7, 17, 1}, {12, 129, 33}, {2, 5, 64}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
        const size_t lda = (size_t)K + 3, ldb = (size_t)N + 5, ldc = (size_t)N + 2;
        float *A = malloc(sizeof(float) * M * lda), *B = malloc(sizeof(float) * K * ldb);
        float *C0 = malloc(sizeof(float) * M * ldc), *C1 = malloc(sizeof(float) * M * ldc);
        for (size_t i = 0; i < M * lda; i++) A[i] = rnd();
        for (size_t i = 0; i < K * ldb; i++) B[i] = rnd();
        for (size_t i = 0; i < M * ldc; i++) C0[i] = C1[i] = rnd();
        sq_sgemm_acc_ref(M, N, K, A, lda, B, ldb, C0, ldc);
        sq_sgemm_acc(M, N, K, A, lda, B, ldb, C1, ldc);
        float md = 0;
        for (int m = 0; m < M; m++)
            for (size_t j = 0; j < ldc; j++) {
                const float d = fabsf(C0[m * ldc + j] - C1[m * ldc + j]);
                if (j >= (size_t)N) CHECK_MSG(d == 0.0f, "column %zu past N=%d written", j, N);
                else if (d > md) md = d;
            }
        CHECK_MSG(md < 1e-5f * (float)K, "sgemm %dx%dx%d differs from the reference by %g", M, N, K, md);
        free(A), free(B), free(C0), free(C1);
    }
}

/* dX = dY W for a weight view, naively in double from its dequantized rows. */
static void naive_t(const sq_weight *w, const float *dY, int n, double *dX)
{
    float *row = malloc(sizeof(float) * (size_t)w->cols);
    memset(dX, 0, sizeof(double) * (size_t)n * (size_t)w->cols);
    for (int64_t r = 0; r < w->rows; r++) {
        sq_weight_get_row(w, r, row);
        for (int t = 0; t < n; t++)
            for (int64_t c = 0; c < w->cols; c++) dX[(size_t)t * w->cols + c] += (double)dY[(size_t)t * w->rows + r] * row[c];
    }
    free(row);
}

/* One weight view through sq_weight_matmul_t on 1 and 3 threads. */
static void check_matmul_t(const sq_weight *w, const char *what)
{
    const int n = 9;
    float *dY = malloc(sizeof(float) * (size_t)n * (size_t)w->rows);
    float *dX1 = malloc(sizeof(float) * (size_t)n * (size_t)w->cols), *dX3 = malloc(sizeof(float) * (size_t)n * (size_t)w->cols);
    double *want = malloc(sizeof(double) * (size_t)n * (size_t)w->cols);
    for (int64_t i = 0; i < n * w->rows; i++) dY[i] = rnd();
    size_t ws = sq_weight_matmul_t_work_size(w);
    void *work = malloc(ws);
    sq_error e = {0};
    sq_threadpool *tp = sq_threadpool_create(3);
    CHECK_INT(sq_weight_matmul_t(NULL, w, dY, n, dX1, false, work, ws, &e), SQ_OK);
    for (int64_t i = 0; i < n * w->cols; i++) dX3[i] = 1.0f;
    CHECK_INT(sq_weight_matmul_t(tp, w, dY, n, dX3, false, work, ws, &e), SQ_OK);
    CHECK_MSG(memcmp(dX1, dX3, sizeof(float) * (size_t)(n * w->cols)) == 0, "%s: 1 and 3 threads differ", what);
    naive_t(w, dY, n, want);
    double md = 0, mx = 0;
    for (int64_t i = 0; i < n * w->cols; i++) {
        md = fmax(md, fabs(dX1[i] - want[i]));
        mx = fmax(mx, fabs(want[i]));
    }
    CHECK_MSG(md <= 1e-5 * mx * sqrt((double)w->rows), "%s: off by %g of %g", what, md, mx);
    /* accumulate adds */
    CHECK_INT(sq_weight_matmul_t(tp, w, dY, n, dX3, true, work, ws, &e), SQ_OK);
    CHECK_NEAR(dX3[5], 2.0 * dX1[5], 1e-5 * fabs(dX1[5]) + 1e-6);
    CHECK_INT(sq_weight_matmul_t(tp, w, dY, n, dX3, true, work, ws - 1, &e), SQ_EINVAL);
    sq_threadpool_free(tp);
    free(work), free(dY), free(dX1), free(dX3), free(want);
}

static void test_matmul_t(void)
{
    const int rows = 300, cols = 512 + 40; /* more rows than a panel; a short third segment */
    float *W = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) W[i] = rnd();
    sq_error e = {0};
    const int plain_types[] = {SQ_TYPE_F32, SQ_TYPE_F16, SQ_TYPE_Q8_0};
    for (int k = 0; k < 3; k++) {
        const int ty = plain_types[k], c = ty == SQ_TYPE_Q8_0 ? 512 : cols;
        const size_t rb = sq_row_size(ty, c);
        void *data = malloc(rb * rows);
        for (int r = 0; r < rows; r++) sq_quantize_rows(ty, W + r * cols, (char *)data + rb * r, 1, c, NULL, &e);
        sq_weight w;
        CHECK_INT(sq_weight_plain(&w, data, ty, rows, c, &e), SQ_OK);
        check_matmul_t(&w, sq_type_name(ty));
        free(data);
    }
    /* SmarterQuant: q8_0, q4_K, f16, f16 segments with a permutation */
    const int types[4] = {SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_F16, SQ_TYPE_F16};
    int32_t *perm = malloc(sizeof(int32_t) * cols);
    tm_perm(perm, cols, &rng);
    sq_weight w;
    CHECK_INT(sq_weight_mixed(&w, NULL, types, perm, rows, cols, &e), SQ_OK);
    unsigned char *data = malloc(w.row_bytes * rows);
    float *rp = malloc(sizeof(float) * cols);
    for (int r = 0; r < rows; r++) {
        sq_perm_gather(perm, cols, W + r * cols, rp);
        CHECK_INT(sq_pack_row(types, cols, rp, NULL, data + w.row_bytes * r, &e), SQ_OK);
    }
    w.data = data;
    check_matmul_t(&w, "SmarterQuant");
    free(rp), free(data), free(perm), free(W);
}

/* ---- each operation's backward against finite differences ---- */

/* sum_i c_i y_i for the probe c: the scalar whose gradient the backward gives. */
static double probe(const float *y, const float *c, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)y[i] * c[i];
    return s;
}

static void test_ops_fd(void)
{
    enum { N = 48 };
    float x[N], w[N], c[N], y[N], dx[N], xp[N], u[N], du[N];
    for (int i = 0; i < N; i++) x[i] = rnd() * 2, w[i] = 1 + 0.3f * rnd(), c[i] = rnd(), u[i] = rnd();
    const float h = 1e-2f;
    /* RMSNorm */
    memset(dx, 0, sizeof dx);
    sq__rmsnorm_bwd(x, w, c, dx, N, 1e-5f);
    for (int i = 0; i < N; i += 7) {
        memcpy(xp, x, sizeof x);
        xp[i] += h;
        sq__rmsnorm(xp, w, y, N, 1e-5f);
        double up = probe(y, c, N);
        xp[i] -= 2 * h;
        sq__rmsnorm(xp, w, y, N, 1e-5f);
        double fd = (up - probe(y, c, N)) / (2 * h);
        CHECK_NEAR(dx[i], fd, 2e-3 * (1 + fabs(fd)));
    }
    /* SwiGLU (both inputs) */
    float dg[N];
    sq__swiglu_bwd(x, u, c, dg, du, N);
    for (int i = 0; i < N; i += 5) {
        float gp = x[i] + h, gm = x[i] - h, yp, ym;
        sq__swiglu(&gp, &u[i], &yp, 1);
        sq__swiglu(&gm, &u[i], &ym, 1);
        CHECK_NEAR(dg[i], c[i] * (yp - ym) / (2 * h), 2e-3);
        float up = u[i] + h, um = u[i] - h;
        sq__swiglu(&x[i], &up, &yp, 1);
        sq__swiglu(&x[i], &um, &ym, 1);
        CHECK_NEAR(du[i], c[i] * (yp - ym) / (2 * h), 2e-3);
    }
    /* RoPE: <R x, c> = <x, R^T c> for a rotation of 3 heads of 16 (12 rotated) */
    float cache[12];
    sq__rope_cache(cache, 12, 37, 10000.0f, 1.0f, NULL);
    memcpy(y, x, sizeof x);
    sq__rope_apply(y, 3, 16, 12, cache);
    float ct[N];
    memcpy(ct, c, sizeof c);
    sq__rope_apply_t(ct, 3, 16, 12, cache);
    CHECK_NEAR(probe(y, c, N), probe(x, ct, N), 1e-4);
}

/* <w, c> of a token's routing weights for logits x (probabilities into p),
 * and whether the experts chosen are sel0's. */
static double route_probe(const float *x, int X, int K, const float *c, const int32_t *sel0, float *p, bool *same)
{
    int32_t sel[8];
    float w[8];
    memcpy(p, x, sizeof(float) * (size_t)X);
    sq__moe_route(p, X, K, sel, w);
    double s = 0;
    for (int k = 0; k < K; k++) s += (double)w[k] * c[k], *same = *same && (!sel0 || sel[k] == sel0[k]);
    return s;
}

/* The router's backward (sq__moe_route_bwd: through the normalised weights
 * and the softmax) against finite differences of sq__moe_route's weights,
 * the choice held (small steps; checked unchanged), in place as grad_moe.c
 * calls it; and SiLU's backward (experts without a gate). */
static void test_route_fd(void)
{
    uint64_t st = 0x5151; /* its own stream: the later tests draw from tm_rand(&st) as before */
    enum { X = 7 };
    for (int K = 1; K <= 4; K += 3) {
        float x[X], p[X], dl[X], c[8], w[8];
        int32_t sel[8];
        for (int i = 0; i < X; i++) x[i] = 2 * tm_rand(&st);
        for (int k = 0; k < K; k++) c[k] = tm_rand(&st);
        memcpy(p, x, sizeof x);
        sq__moe_route(p, X, K, sel, w);
        sq__moe_route_bwd(p, X, sel, w, K, c, dl);
        float dl2[X];
        memcpy(dl2, p, sizeof p);
        sq__moe_route_bwd(dl2, X, sel, w, K, c, dl2); /* in place */
        const float h = 1e-3f;
        for (int i = 0; i < X; i++) {
            bool same = true;
            float xp[X], scratch[X];
            memcpy(xp, x, sizeof x);
            xp[i] = x[i] + h;
            const double up = route_probe(xp, X, K, c, sel, scratch, &same);
            xp[i] = x[i] - h;
            const double fd = (up - route_probe(xp, X, K, c, sel, scratch, &same)) / (2 * h);
            CHECK_MSG(same, "K %d: a step of logit %d changed the choice", K, i);
            CHECK_MSG(fabs(dl[i] - fd) < 2e-3 * (1 + fabs(fd)), "K %d logit %d: %g vs %g", K, i, dl[i], fd);
            CHECK_NEAR(dl2[i], dl[i], 1e-7);
        }
        double sum = 0;
        for (int i = 0; i < X; i++) sum += dl[i];
        CHECK_NEAR(sum, 0.0, 1e-6); /* the softmax ignores a common shift */
    }
    enum { N = 24 };
    float u[N], c[N], du[N];
    for (int i = 0; i < N; i++) u[i] = 3 * tm_rand(&st), c[i] = tm_rand(&st);
    sq__silu_bwd(u, c, du, N);
    for (int i = 0; i < N; i++) {
        const double h = 1e-2, a = u[i] + h, b = u[i] - h;
        const double fd = c[i] * (a / (1 + exp(-a)) - b / (1 + exp(-b))) / (2 * h);
        CHECK_NEAR(du[i], fd, 2e-3 * (1 + fabs(fd)));
    }
}

/* The attention row's backward against finite differences of its forward. */
static void test_attn_row_fd(void)
{
    enum { HD = 8, NK = 6 };
    float q[HD], k[NK * HD], v[NK * HD], c[HD], p[NK], o[HD], dq[HD], dk[NK * HD] = {0}, dv[NK * HD] = {0}, dp[NK];
    for (int i = 0; i < HD; i++) q[i] = rnd(), c[i] = rnd();
    for (int i = 0; i < NK * HD; i++) k[i] = rnd(), v[i] = rnd();
    const float sc = 0.7f, h = 1e-2f;
    sq__attn_row_fwd(q, k, HD, v, HD, NK, HD, sc, p, o);
    sq__attn_row_bwd(q, k, HD, v, HD, NK, HD, sc, p, c, dq, dk, dv, dp);
    float *vars[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
    const int lens[3] = {HD, NK * HD, NK * HD};
    for (int which = 0; which < 3; which++)
        for (int i = 0; i < lens[which]; i += 3) {
            float *x = vars[which], keep = x[i];
            x[i] = keep + h;
            sq__attn_row_fwd(q, k, HD, v, HD, NK, HD, sc, p, o);
            double up = probe(o, c, HD);
            x[i] = keep - h;
            sq__attn_row_fwd(q, k, HD, v, HD, NK, HD, sc, p, o);
            double fd = (up - probe(o, c, HD)) / (2 * h);
            x[i] = keep;
            CHECK_MSG(fabs(grads[which][i] - fd) < 2e-3 * (1 + fabs(fd)), "attention input %d entry %d: %g vs %g", which, i,
                      grads[which][i], fd);
        }
}

/* The blocked chunk attention against the row reference: GQA, two blocks. */
static void test_gattn(void)
{
    const int nb = 150, hd = 16, nh = 4, nkv = 2, qs = nh * hd, kvs = nkv * hd;
    float *q = malloc(sizeof(float) * nb * qs), *k = malloc(sizeof(float) * nb * kvs), *v = malloc(sizeof(float) * nb * kvs);
    float *dO = malloc(sizeof(float) * nb * qs), *o = malloc(sizeof(float) * nb * qs), *dq = malloc(sizeof(float) * nb * qs);
    float *dk = malloc(sizeof(float) * nb * kvs), *dv = malloc(sizeof(float) * nb * kvs);
    float *ro = malloc(sizeof(float) * nb * qs), *rdq = malloc(sizeof(float) * nb * qs);
    float *rdk = calloc((size_t)nb * kvs, sizeof(float)), *rdv = calloc((size_t)nb * kvs, sizeof(float));
    for (int i = 0; i < nb * qs; i++) q[i] = 2 * rnd(), dO[i] = rnd();
    for (int i = 0; i < nb * kvs; i++) k[i] = 2 * rnd(), v[i] = rnd();
    sq__gattn a = {nb, hd, nh, nkv, (size_t)qs, (size_t)kvs, 0.25f, 0, q, k, v, o, dO, dq, dk, dv};
    float *scratch = malloc(sizeof(float) * sq__gattn_scratch_floats(nb, hd));
    for (int h = 0; h < nh; h++) sq__gattn_fwd_head(&a, h, scratch);
    for (int g = 0; g < nkv; g++) sq__gattn_bwd_kvhead(&a, g, scratch);
    float p[150], dp[150];
    for (int h = 0; h < nh; h++) {
        const int g = h / (nh / nkv);
        for (int t = 0; t < nb; t++) {
            sq__attn_row_fwd(q + t * qs + h * hd, k + g * hd, kvs, v + g * hd, kvs, t + 1, hd, 0.25f, p, ro + t * qs + h * hd);
            sq__attn_row_bwd(q + t * qs + h * hd, k + g * hd, kvs, v + g * hd, kvs, t + 1, hd, 0.25f, p, dO + t * qs + h * hd,
                             rdq + t * qs + h * hd, rdk + g * hd, rdv + g * hd, dp);
        }
    }
    float e1 = 0, e2 = 0, e3 = 0, e4 = 0;
    for (int i = 0; i < nb * qs; i++) e1 = fmaxf(e1, fabsf(o[i] - ro[i])), e2 = fmaxf(e2, fabsf(dq[i] - rdq[i]));
    for (int i = 0; i < nb * kvs; i++) e3 = fmaxf(e3, fabsf(dk[i] - rdk[i])), e4 = fmaxf(e4, fabsf(dv[i] - rdv[i]));
    CHECK_MSG(e1 < 1e-5f && e2 < 1e-4f && e3 < 1e-4f && e4 < 1e-4f, "blocked attention differs: o %g dq %g dk %g dv %g", e1,
              e2, e3, e4);
    free(q), free(k), free(v), free(dO), free(o), free(dq), free(dk), free(dv), free(ro), free(rdq), free(rdk), free(rdv);
    free(scratch);
}

/* ---- a whole tiny model ---- */

static char dir[256];
static const tm_shape base_shape = {64, 2, 4, 2, 16, 96, 200, 48, SQ_TYPE_F32, false, false, 77};
enum { NB = 40, FIRST = 8 };
static int32_t toks[NB];

/* The model of a shape written once under dir and loaded. */
static sq_model *load_shape(const tm_shape *s, const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    sq_error e = {0};
    sq_model *m = NULL;
    if (tm_write(path, s, &e) != SQ_OK || sq_model_load(path, &m, &e) != SQ_OK) {
        fprintf(stderr, "%s: %s\n", path, e.msg);
        return NULL;
    }
    return m;
}

/* What the hook keeps: each weight use's gradient dY^T X (a lookup: rows
 * added per token), summed over the chunks seen. */
#define MAX_USES 32
typedef struct grads {
    int n;
    char name[MAX_USES][64];
    bool lookup[MAX_USES];
    int64_t rows[MAX_USES], cols[MAX_USES];
    double *G[MAX_USES];
} grads;

static void grads_reset(grads *gr)
{
    for (int i = 0; i < gr->n; i++) free(gr->G[i]);
    memset(gr, 0, sizeof *gr);
}

static double *grads_find(grads *gr, const char *name, bool lookup)
{
    for (int i = 0; i < gr->n; i++)
        if (gr->lookup[i] == lookup && !strcmp(gr->name[i], name)) return gr->G[i];
    return NULL;
}

static void keep_grad(void *user, const sq_grad_stats *s, const float *X, const int32_t *tk, const float *dY, int64_t n)
{
    grads *gr = user;
    double *G = grads_find(gr, s->name, s->lookup);
    if (!G && gr->n < MAX_USES) {
        int i = gr->n++;
        snprintf(gr->name[i], sizeof gr->name[i], "%s", s->name);
        gr->lookup[i] = s->lookup, gr->rows[i] = s->rows, gr->cols[i] = s->cols;
        G = gr->G[i] = calloc((size_t)(s->rows * s->cols), sizeof(double));
    }
    if (!G) return;
    for (int64_t t = 0; t < n; t++) {
        if (s->lookup) {
            for (int64_t c = 0; c < s->cols; c++) G[tk[t] * s->cols + c] += dY[t * s->cols + c];
            continue;
        }
        for (int64_t r = 0; r < s->rows; r++)
            for (int64_t c = 0; c < s->cols; c++) G[r * s->cols + c] += (double)dY[t * s->rows + r] * X[t * s->cols + c];
    }
}

/* The loss of the chunk with tensor name's weights W + eps D (original column order). */
static double loss_with(sq_model *m, sq_grad *g, const char *name, const float *W, const float *D, double eps)
{
    const sq_weight orig = *sq_model_weight(m, name);
    float *Wp = malloc(sizeof(float) * (size_t)(orig.rows * orig.cols));
    for (int64_t i = 0; i < orig.rows * orig.cols; i++) Wp[i] = (float)(W[i] + eps * D[i]);
    sq_weight v;
    sq_error e = {0};
    double loss = NAN;
    if (sq_weight_plain(&v, Wp, SQ_TYPE_F32, orig.rows, orig.cols, &e) == SQ_OK &&
        sq_model_set_weight(m, name, &v, &e) == SQ_OK) {
        if (sq_grad_chunk(g, toks, NB, FIRST, false, &loss, &e) != SQ_OK) loss = NAN;
        sq_model_set_weight(m, name, &orig, &e);
    }
    free(Wp);
    return loss;
}

/* Every weight of m: sum(D .* G) from the backward pass against the central
 * difference of the loss along D. */
static void check_model_fd(sq_model *m, const char *what)
{
    sq_grad_params gp = sq_grad_default_params();
    gp.n_ctx = base_shape.n_ctx, gp.n_threads = 2, gp.target = SQ_GRAD_TEXT;
    sq_grad *g = NULL;
    sq_error e = {0};
    CHECK_INT(sq_grad_create(m, &gp, &g, &e), SQ_OK);
    if (!g) return;
    grads gr = {0};
    sq_grad_set_hook(g, keep_grad, &gr);
    double loss = 0;
    CHECK_INT(sq_grad_chunk(g, toks, NB, FIRST, true, &loss, &e), SQ_OK);
    CHECK(loss > 0 && isfinite(loss));
    sq_grad_set_hook(g, NULL, NULL);
    const bool tied = sq_model_hparams(m)->tied_output;
    CHECK_INT(gr.n, 2 + 7 * base_shape.n_layer);
    int checked = 0;
    for (int i = 0; i < gr.n; i++) {
        if (tied && gr.lookup[i] == false && !strcmp(gr.name[i], "token_embd.weight")) continue; /* with the lookup */
        const int64_t R = gr.rows[i], C = gr.cols[i];
        const sq_weight *w = sq_model_weight(m, gr.name[i]);
        float *W = malloc(sizeof(float) * (size_t)(R * C)), *D = malloc(sizeof(float) * (size_t)(R * C));
        for (int64_t r = 0; r < R; r++) sq_weight_get_row(w, r, W + r * C);
        double dd = 0, dn = 0, wn = 0;
        const double *G2 = tied && gr.lookup[i] ? grads_find(&gr, gr.name[i], false) : NULL;
        for (int64_t j = 0; j < R * C; j++) {
            D[j] = rnd();
            dd += D[j] * (gr.G[i][j] + (G2 ? G2[j] : 0.0));
            dn += (double)D[j] * D[j];
            wn += (double)W[j] * W[j];
        }
        const double eps = 5e-4 * sqrt(wn / dn);
        const double fd = (loss_with(m, g, gr.name[i], W, D, eps) - loss_with(m, g, gr.name[i], W, D, -eps)) / (2 * eps);
        if (getenv("SQ_GRAD_VERBOSE")) printf("  %s %s%s: %.6g %.6g\n", what, gr.name[i], gr.lookup[i] ? " (lookup)" : "", dd, fd);
        CHECK_MSG(fabs(fd - dd) <= 0.01 * fabs(fd) + 1e-2, "%s: %s%s: gradient . D = %.6g, finite difference %.6g", what,
                  gr.name[i], gr.lookup[i] ? " (lookup)" : "", dd, fd);
        checked++;
        free(W), free(D);
    }
    CHECK(checked >= 1 + 7 * base_shape.n_layer);
    grads_reset(&gr);
    sq_grad_free(g);
}

static void test_model_fd(void)
{
    sq_model *m = load_shape(&base_shape, "plain");
    CHECK(m != NULL);
    if (!m) return;
    check_model_fd(m, "untied");
    sq_model_free(m);
    tm_shape s = base_shape;
    s.tied = true;
    m = load_shape(&s, "tied");
    CHECK(m != NULL);
    if (m) check_model_fd(m, "tied");
    sq_model_free(m);
}

/* The gradients of all uses of m (one chunk, TEXT target). */
static void model_grads(sq_model *m, grads *gr, int n_threads)
{
    sq_grad_params gp = sq_grad_default_params();
    gp.n_ctx = base_shape.n_ctx, gp.n_threads = n_threads, gp.target = SQ_GRAD_TEXT;
    sq_grad *g = NULL;
    sq_error e = {0};
    CHECK_INT(sq_grad_create(m, &gp, &g, &e), SQ_OK);
    if (!g) return;
    sq_grad_set_hook(g, keep_grad, gr);
    CHECK_INT(sq_grad_chunk(g, toks, NB, FIRST, true, NULL, &e), SQ_OK);
    sq_grad_free(g);
}

/* SmarterQuant tensors with shared permutations (q/k/v, gate/up gathered
 * once) give the gradients of the same weights stored plainly. */
static void test_shared_perm(void)
{
    tm_shape s = base_shape;
    s.sq_shared = true;
    sq_model *mp = load_shape(&base_shape, "plain2"), *ms = load_shape(&s, "sq");
    CHECK(mp && ms);
    if (!mp || !ms) {
        sq_model_free(mp), sq_model_free(ms);
        return;
    }
    CHECK(sq_model_hparams(ms)->n_sq_tensors > 0);
    grads a = {0}, b = {0};
    model_grads(mp, &a, 1);
    model_grads(ms, &b, 2);
    CHECK_INT(a.n, b.n);
    for (int i = 0; i < a.n && i < b.n; i++) {
        double md = 0, mx = 0;
        for (int64_t j = 0; j < a.rows[i] * a.cols[i]; j++) {
            md = fmax(md, fabs(a.G[i][j] - b.G[i][j]));
            mx = fmax(mx, fabs(a.G[i][j]));
        }
        CHECK_MSG(!strcmp(a.name[i], b.name[i]) && md <= 1e-4 * mx, "%s: SmarterQuant gradient off by %g of %g", a.name[i], md, mx);
    }
    grads_reset(&a), grads_reset(&b);
    sq_model_free(mp), sq_model_free(ms);
}

/* The row and column sums of G∘G against G from the hook, for one chunk of
 * 40 tokens (G formed) and one of 8 (the Gram route), 1 and 3 threads. */
static void check_marginals(sq_model *m, const int32_t *tk, int nb, int first, int n_threads)
{
    sq_grad_params gp = sq_grad_default_params();
    gp.n_ctx = (int)sq_model_hparams(m)->n_ctx_train, gp.n_threads = n_threads;
    sq_grad *g = NULL;
    sq_error e = {0};
    CHECK_INT(sq_grad_create(m, &gp, &g, &e), SQ_OK);
    if (!g) return;
    grads gr = {0};
    sq_grad_set_hook(g, keep_grad, &gr);
    CHECK_INT(sq_grad_chunk(g, tk, nb, first, true, NULL, &e), SQ_OK);
    for (int i = 0; i < gr.n; i++) {
        const sq_grad_stats *s = sq_grad_find(g, gr.name[i], gr.lookup[i]);
        double worst = 0, tot = 0;
        for (int64_t r = 0; r < s->rows; r++) {
            double want = 0;
            for (int64_t c = 0; c < s->cols; c++) want += gr.G[i][r * s->cols + c] * gr.G[i][r * s->cols + c];
            worst = fmax(worst, fabs(s->g_row[r] - want));
            tot += want;
        }
        for (int64_t c = 0; c < s->cols; c++) {
            double want = 0;
            for (int64_t r = 0; r < s->rows; r++) want += gr.G[i][r * s->cols + c] * gr.G[i][r * s->cols + c];
            worst = fmax(worst, fabs(s->g_col[c] - want));
        }
        CHECK_MSG(worst <= 1e-4 * tot && fabs(s->g_tot - tot) <= 1e-6 * tot, "%s%s, %d tokens: marginals off by %g of %g",
                  gr.name[i], gr.lookup[i] ? " (lookup)" : "", nb, worst, tot);
    }
    grads_reset(&gr);
    sq_grad_free(g);
}

static void test_marginals(void)
{
    sq_model *m = load_shape(&base_shape, "marg");
    CHECK(m != NULL);
    if (!m) return;
    check_marginals(m, toks, NB, FIRST, 1);
    check_marginals(m, toks, 8, 2, 3);
    sq_model_free(m);
    /* wider matrices and more tokens than a block of 64: the Gram route with its mirrored half */
    tm_shape w = base_shape;
    w.n_embd = 512, w.n_ff = 512, w.head_dim = 128, w.n_ctx = 96, w.n_layer = 1;
    m = load_shape(&w, "wide");
    CHECK(m != NULL);
    if (!m) return;
    int32_t tk[90];
    for (int i = 0; i < 90; i++) tk[i] = (int32_t)((i * 37 + 11) % w.n_vocab);
    check_marginals(m, tk, 90, 20, 2);
    sq_model_free(m);
}

/* ---- the Fisher information predicts the KL divergence ---- */

/* The hook's sum of dW . (dY^T X) for one tensor over a chunk. */
typedef struct dirderiv {
    const char *name;
    const float *dW;
    double dd;
} dirderiv;

static void dir_hook(void *user, const sq_grad_stats *s, const float *X, const int32_t *tk, const float *dY, int64_t n)
{
    (void)tk;
    dirderiv *d = user;
    if (s->lookup || strcmp(s->name, d->name) != 0) return;
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < s->rows; r++) {
            double y = 0;
            for (int64_t c = 0; c < s->cols; c++) y += (double)d->dW[r * s->cols + c] * X[t * s->cols + c];
            d->dd += y * dY[t * s->rows + r];
        }
}

/* Mean KL divergence per scored position of the model with dW added to
 * tensor name, from the unmodified model (the engine, f32 cache). */
static double measured_kld(sq_model *m, const char *name, const float *dW)
{
    const sq_hparams *hp = sq_model_hparams(m);
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = base_shape.n_ctx, cp.kv_type = SQ_TYPE_F32;
    sq_context *c = NULL;
    sq_error e = {0};
    const int V = (int)hp->n_vocab, ns = NB - 1 - FIRST;
    double *lp = malloc(sizeof(double) * (size_t)V * ns), *lq = malloc(sizeof(double) * V), kl = NAN;
    const sq_weight orig = *sq_model_weight(m, name);
    float *Wp = malloc(sizeof(float) * (size_t)(orig.rows * orig.cols));
    for (int64_t r = 0; r < orig.rows; r++) sq_weight_get_row(&orig, r, Wp + r * orig.cols);
    for (int64_t i = 0; i < orig.rows * orig.cols; i++) Wp[i] += dW[i];
    sq_weight v;
    if (sq_context_create(m, &cp, &c, &e) == SQ_OK && sq_eval(c, toks, NB, NB, &e) == SQ_OK) {
        for (int i = 0; i < ns; i++) sq__log_softmax(sq_get_logits(c) + (size_t)(FIRST + i) * V, V, lp + (size_t)i * V);
        sq_weight_plain(&v, Wp, SQ_TYPE_F32, orig.rows, orig.cols, &e);
        sq_model_set_weight(m, name, &v, &e);
        sq_kv_clear(c);
        if (sq_eval(c, toks, NB, NB, &e) == SQ_OK) {
            kl = 0;
            for (int i = 0; i < ns; i++) {
                sq__log_softmax(sq_get_logits(c) + (size_t)(FIRST + i) * V, V, lq);
                for (int u = 0; u < V; u++) kl += exp(lp[(size_t)i * V + u]) * (lp[(size_t)i * V + u] - lq[u]);
            }
            kl /= ns;
        }
        sq_model_set_weight(m, name, &orig, &e);
    }
    sq_context_free(c);
    free(lp), free(lq), free(Wp);
    return kl;
}

/* 1/2 E[(dW . G)^2] over many draws of the targets equals the KL divergence
 * (to second order), for the sampled targets and the Gaussian probe; the
 * factorised estimate of sq_grad_predict is reported beside it. */
static void test_fisher(void)
{
    tm_shape s16 = base_shape;
    s16.type = SQ_TYPE_F16; /* the fast products */
    sq_model *m = load_shape(&s16, "fisher");
    CHECK(m != NULL);
    if (!m) return;
    const char *names[] = {"output.weight", "blk.0.attn_k.weight"};
    for (int k = 0; k < 2; k++) {
        const sq_weight *w = sq_model_weight(m, names[k]);
        float *dW = malloc(sizeof(float) * (size_t)(w->rows * w->cols));
        for (int64_t i = 0; i < w->rows * w->cols; i++) dW[i] = 0.01f * rnd();
        const double kl = measured_kld(m, names[k], dW);
        for (int target = SQ_GRAD_SAMPLED; target <= SQ_GRAD_GAUSS; target += 2) {
            sq_grad_params gp = sq_grad_default_params();
            gp.n_ctx = base_shape.n_ctx, gp.n_threads = 1, gp.target = (sq_grad_target)target;
            sq_grad *g = NULL;
            sq_error e = {0};
            CHECK_INT(sq_grad_create(m, &gp, &g, &e), SQ_OK);
            if (!g) break;
            dirderiv d = {names[k], dW, 0};
            sq_grad_set_hook(g, dir_hook, &d);
            double sum = 0;
            const int K = 60;
            for (int r = 0; r < K; r++) {
                d.dd = 0;
                sq_grad_chunk(g, toks, NB, FIRST, true, NULL, &e);
                sum += d.dd * d.dd;
            }
            const double fisher = 0.5 * sum / K / (NB - 1 - FIRST);
            const double fact = sq_grad_predict(g, sq_grad_find(g, names[k], false), dW, NULL, w->rows);
            printf("  %s, %s: KL %.4g, Fisher %.4g (%.2f), factorised %.4g (%.2f)\n", names[k],
                   target == SQ_GRAD_SAMPLED ? "sampled" : "gauss", kl, fisher, fisher / kl, fact, fact / kl);
            CHECK_MSG(fisher > 0.6 * kl && fisher < 1.6 * kl, "%s: Fisher %g vs KL %g", names[k], fisher, kl);
            CHECK_MSG(fact > 0.25 * kl && fact < 4 * kl, "%s: factorised %g vs KL %g", names[k], fact, kl);
            sq_grad_free(g);
        }
        free(dW);
    }
    sq_model_free(m);
}

/* Kept activations: kept in f32 (the default here) the statistics are
 * those of recomputing every layer, bit for bit; in f16 within rounding. */
static void test_keep(void)
{
    sq_model *m = load_shape(&base_shape, "keep");
    CHECK(m != NULL);
    if (!m) return;
    const size_t keep[3] = {0, SQ_GRAD_KEEP_NONE, 1}; /* f32, none, f16 (budget set below) */
    sq_grad *g[3] = {NULL, NULL, NULL};
    sq_error e = {0};
    /* f16 for the one layer below the last: its kept rows in f16 fit, in f32 not */
    const size_t row = (size_t)(4 * 16 + 2 * 2 * 16 + 64 + 2 * 96);
    for (int k = 0; k < 3; k++) {
        sq_grad_params gp = sq_grad_default_params();
        gp.n_ctx = base_shape.n_ctx, gp.n_threads = 2;
        gp.keep_bytes = k == 2 ? row * (size_t)base_shape.n_ctx * 3 : keep[k];
        CHECK_INT(sq_grad_create(m, &gp, &g[k], &e), SQ_OK);
        if (g[k]) CHECK_INT(sq_grad_chunk(g[k], toks, NB, FIRST, true, NULL, &e), SQ_OK);
    }
    if (g[0] && g[1] && g[2]) {
        bool same = true;
        double worst = 0;
        for (int64_t i = 0; i < sq_grad_n_stats(g[0]); i++) {
            const sq_grad_stats *a = sq_grad_stats_at(g[0], i), *b = sq_grad_stats_at(g[1], i), *c = sq_grad_stats_at(g[2], i);
            same = same && memcmp(a->g_row, b->g_row, sizeof(double) * (size_t)a->rows) == 0 && a->g_tot == b->g_tot;
            worst = fmax(worst, fabs(c->g_tot - a->g_tot) / a->g_tot);
        }
        CHECK_MSG(same, "kept (f32) and recomputed layers give different statistics");
        CHECK_MSG(worst > 0 && worst < 0.02, "kept in f16: statistics off by %g", worst);
    }
    for (int k = 0; k < 3; k++) sq_grad_free(g[k]);
    sq_model_free(m);
}

/* ---- statistics, determinism, bad input ---- */

static void test_stats(void)
{
    sq_model *m = load_shape(&base_shape, "stats");
    CHECK(m != NULL);
    if (!m) return;
    sq_grad_params gp = sq_grad_default_params();
    gp.n_ctx = base_shape.n_ctx, gp.n_threads = 2;
    sq_grad *g1 = NULL, *g2 = NULL;
    sq_error e = {0};
    CHECK_INT(sq_grad_create(m, &gp, &g1, &e), SQ_OK);
    CHECK_INT(sq_grad_create(m, &gp, &g2, &e), SQ_OK);
    if (!g1 || !g2) {
        sq_grad_free(g1), sq_grad_free(g2), sq_model_free(m);
        return;
    }
    for (int r = 0; r < 2; r++) {
        CHECK_INT(sq_grad_chunk(g1, toks, NB, FIRST, true, NULL, &e), SQ_OK);
        CHECK_INT(sq_grad_chunk(g2, toks, NB, FIRST, true, NULL, &e), SQ_OK);
    }
    CHECK_INT(sq_grad_n_scored(g1), 2 * (NB - 1 - FIRST));
    CHECK_INT(sq_grad_n_stats(g1), 2 + 7 * base_shape.n_layer);
    bool same = true, positive = true;
    for (int64_t i = 0; i < sq_grad_n_stats(g1); i++) {
        const sq_grad_stats *a = sq_grad_stats_at(g1, i), *b = sq_grad_stats_at(g2, i);
        same = same && memcmp(a->g_row, b->g_row, sizeof(double) * (size_t)a->rows) == 0 &&
               memcmp(a->g_col, b->g_col, sizeof(double) * (size_t)a->cols) == 0 &&
               memcmp(a->dy_sq, b->dy_sq, sizeof(double) * (size_t)a->rows) == 0 && a->g_tot == b->g_tot;
        double s = 0;
        for (int64_t r = 0; r < a->rows; r++) s += a->g_row[r];
        positive = positive && s > 0;
    }
    CHECK_MSG(same, "two runs with the same seed differ");
    CHECK_MSG(positive, "a weight has no gradient");
    const sq_grad_stats *emb = sq_grad_find(g1, "token_embd.weight", true);
    CHECK(emb && emb->lookup && emb->n_in == 2 * NB);
    CHECK(emb && emb->g_row[toks[3]] > 0 && emb->dy_sq[toks[3]] > 0 && emb->x_sq == NULL);
    CHECK(sq_grad_find(g1, "output.weight", false) != NULL && sq_grad_find(g1, "nope", false) == NULL);
    /* the factors: col of a product is the mean square of its input (the first norm's output) */
    const sq_grad_stats *q = sq_grad_find(g1, "blk.0.attn_q.weight", false);
    double *row = malloc(sizeof(double) * q->rows), *col = malloc(sizeof(double) * q->cols);
    sq_grad_factors(g1, q, row, col);
    CHECK_NEAR(col[3], q->g_col[3] / q->g_tot, 1e-15);
    CHECK_NEAR(row[5], q->g_row[5] / (2.0 * (NB - 1 - FIRST)), 1e-15);
    free(row), free(col);
    /* activation errors: q8_0 blocks fit 64 columns, q8_K ones do not; q8_0 is a small relative error */
    CHECK(q->act_q8_K == NULL && q->act_q8_0 != NULL && emb->act_q8_0 == NULL);
    double sa = 0, si = 0;
    for (int64_t c = 0; c < q->cols; c++) sa += q->act_q8_0[c], si += q->x_sq[c];
    CHECK_MSG(sa > 0 && sa < 1e-3 * si, "q8_0 activation error %g of %g", sa, si);
    /* bad input */
    int32_t bad[NB];
    memcpy(bad, toks, sizeof bad);
    bad[7] = 100000;
    CHECK_INT(sq_grad_chunk(g1, bad, NB, FIRST, true, NULL, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "index 7");
    CHECK_INT(sq_grad_chunk(g1, toks, 1, 0, true, NULL, &e), SQ_EINVAL);
    CHECK_INT(sq_grad_chunk(g1, toks, base_shape.n_ctx + 1, 0, true, NULL, &e), SQ_EINVAL);
    CHECK_INT(sq_grad_chunk(g1, toks, NB, NB - 1, true, NULL, &e), SQ_EINVAL);
    CHECK_INT(sq_grad_n_scored(g1), 2 * (NB - 1 - FIRST));
    gp.target = (sq_grad_target)7;
    sq_grad *g3 = NULL;
    CHECK_INT(sq_grad_create(m, &gp, &g3, &e), SQ_EINVAL);
    CHECK(g3 == NULL);
    sq_grad_free(NULL);
    sq_grad_free(g1), sq_grad_free(g2);
    sq_model_free(m);
}

/* Runs one test and says how long it took (SQ_GRAD_VERBOSE). */
#define TIMED(fn)                                                                          \
    do {                                                                                   \
        struct timespec t0_, t1_;                                                          \
        clock_gettime(CLOCK_MONOTONIC, &t0_);                                              \
        RUN(fn);                                                                           \
        clock_gettime(CLOCK_MONOTONIC, &t1_);                                              \
        if (getenv("SQ_GRAD_VERBOSE"))                                                     \
            printf("%s: %.2f s\n", #fn, (double)(t1_.tv_sec - t0_.tv_sec) + 1e-9 * (double)(t1_.tv_nsec - t0_.tv_nsec)); \
    } while (0)

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sq_test_grad_%d", (int)getpid());
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "cannot create %s\n", dir);
        return 1;
    }
    for (int i = 0; i < NB; i++) toks[i] = (int32_t)(((uint32_t)(rnd() * 1e6f + 1e6f)) % (uint32_t)base_shape.n_vocab);
    TIMED(test_sgemm);
    TIMED(test_matmul_t);
    TIMED(test_ops_fd);
    TIMED(test_attn_row_fd);
    TIMED(test_route_fd);
    TIMED(test_gattn);
    TIMED(test_model_fd);
    TIMED(test_shared_perm);
    TIMED(test_marginals);
    TIMED(test_stats);
    TIMED(test_keep);
    TIMED(test_fisher);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return harness_finish("grad");
}
