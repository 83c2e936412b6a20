/*
 * grad.c — the backward pass over a chunk of text and the sensitivity
 * statistics of every weight (sq/grad.h).
 *
 * A chunk: the forward pass keeps each layer's input (the residual stream,
 * n_layer+1 rows of n_embd per token) and, within a memory budget, the
 * outputs of its weight products; then the loss at the scored positions and
 * its gradient at the logits; then, from the last layer to the first, the
 * layer's intermediates are restored from what was kept (layer_restore) or
 * recomputed from its input (the last layer's are still in the buffers),
 * and its backward run (layer_bwd). Every weight
 * product is observed with its input X and output gradient dY
 * (grad_stats.c: the row and column sums of the weight gradient's squares).
 * Products with W^T are sq_weight_matmul_t (a panel of dequantized rows at a
 * time); attention is grad_attn.c; the elementwise backwards grad_ops.c; a
 * layer with experts takes grad_moe.c's FFN.
 *
 * Memory: the kept inputs (n_layer+1) * n_ctx * n_embd floats, the kept
 * products (keep_bytes), one layer's activations and gradients, n_ctx rows
 * of logits, a panel of one weight's rows. No weight is copied.
 *
 * Ownership: sq_grad borrows the model and owns everything else.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grad_internal.h"
#include "sq/blocks.h"
#include "sq/matmul.h"

sq_grad_params sq_grad_default_params(void)
{
    sq_grad_params p = {512, 1, SQ_GRAD_SAMPLED, 0x5eed, 0};
    return p;
}

/* ---- setup ---- */

const sq_weight *sq__grad_layer_weight(const sq__layer *L, int i)
{
    const sq_weight *w[W_PER_LAYER] = {L->wqkv.data ? &L->wqkv : &L->wq,
                                       &L->wk,
                                       &L->wv,
                                       &L->wo,
                                       &L->gate,
                                       &L->up,
                                       &L->down,
                                       &L->router,
                                       &L->gate_exps,
                                       &L->up_exps,
                                       &L->down_exps};
    return w[i]->data ? w[i] : NULL;
}

/* The work buffers every product of the model needs for n rows. */
static void work_sizes(const sq_model *m, int64_t n, size_t *fw, size_t *tw)
{
    *fw = sq_weight_matmul_work_size(&m->output, n);
    *tw = sq_weight_matmul_t_work_size(&m->output);
    for (int64_t l = 0; l < m->hp.n_layer; l++)
        for (int i = 0; i < W_PER_LAYER; i++) {
            const sq_weight *w = sq__grad_layer_weight(&m->layers[l], i);
            if (!w) continue;
            size_t s = sq_weight_matmul_work_size(w, n), t = sq_weight_matmul_t_work_size(w);
            if (s > *fw) *fw = s;
            if (t > *tw) *tw = t;
        }
}

void sq_grad_free(sq_grad *g)
{
    if (!g) return;
    sq_threadpool_free(g->tp);
    float *bufs[] = {g->xs, g->a,  g->q,  g->k,  g->v,  g->o,  g->x1, g->b,    g->gt,   g->up,  g->h,
                     g->dx, g->da, g->dq, g->dk, g->dv, g->dO, g->db, g->dtmp, g->xf,   g->dg,  g->du,
                     g->dh, g->xg, g->rope, g->logits, g->att, g->qr, g->kr, g->dqr, g->dkr, g->fused,
                     g->ar, g->fr, g->capd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) sq_aligned_free(bufs[i]);
    sq_aligned_free(g->work);
    sq_aligned_free(g->twork);
    sq_aligned_free(g->keep);
    free(g->lp);
    free(g->row_loss);
    sq__grad_stats_free(g);
    sq__grad_moe_free(g);
    free(g);
}

/* Allocates n floats (64-byte aligned) and adds the bytes to *total; NULL on failure. */
static float *fbuf(size_t n, size_t *total)
{
    *total += n * sizeof(float);
    return sq_aligned_alloc(n * sizeof(float) + 64);
}

/* Every buffer of a chunk of n_ctx tokens. */
static bool alloc_buffers(sq_grad *g, size_t *total)
{
    const size_t T = (size_t)g->n_ctx, E = (size_t)g->E, F = (size_t)g->F, Q = (size_t)g->qd, KV = (size_t)g->kvd;
    g->xs = fbuf((size_t)(g->m->hp.n_layer + 1) * T * E, total);
    float **tE[] = {&g->a, &g->x1, &g->b, &g->dx, &g->da, &g->db, &g->dtmp, &g->xf, &g->xg};
    for (size_t i = 0; i < sizeof tE / sizeof tE[0]; i++) *tE[i] = fbuf(T * E, total);
    float **tQ[] = {&g->q, &g->o, &g->dq, &g->dO, &g->qr, &g->dqr};
    for (size_t i = 0; i < sizeof tQ / sizeof tQ[0]; i++) *tQ[i] = fbuf(T * Q, total);
    float **tK[] = {&g->k, &g->v, &g->dk, &g->dv, &g->kr, &g->dkr};
    for (size_t i = 0; i < sizeof tK / sizeof tK[0]; i++) *tK[i] = fbuf(T * KV, total);
    float **tF[] = {&g->gt, &g->up, &g->h, &g->dg, &g->du, &g->dh};
    for (size_t i = 0; i < sizeof tF / sizeof tF[0]; i++) *tF[i] = fbuf(T * F, total);
    g->rope = fbuf(2 * T * (size_t)(g->n_rot > 0 ? g->n_rot : 1), total);
    g->logits = fbuf(T * (size_t)g->V, total);
    g->capd = fbuf((size_t)g->n_threads * (size_t)g->V, total);
    bool fused = false, post_a = false, post_f = false;
    for (int64_t l = 0; l < g->m->hp.n_layer; l++) {
        const sq__layer *L = &g->m->layers[l];
        fused = fused || L->wqkv.data || (!L->gate.data && L->up.data);
        post_a = post_a || L->attn_post_norm;
        post_f = post_f || L->ffn_post_norm;
    }
    const size_t fw = Q + 2 * KV > 2 * F ? Q + 2 * KV : 2 * F;
    if (fused && !(g->fused = fbuf(T * fw, total))) return false;
    if (post_a && !(g->ar = fbuf(T * E, total))) return false;
    if (post_f && !(g->fr = fbuf(T * E, total))) return false;
    g->att_stride = (sq__gattn_scratch_floats(g->n_ctx, (int)g->m->hp.head_dim) + 15) / 16 * 16;
    g->att = fbuf((size_t)g->n_threads * g->att_stride, total);
    g->lp = malloc(sizeof(double) * (size_t)g->n_threads * (size_t)g->V);
    g->row_loss = malloc(sizeof(double) * T);
    *total += sizeof(double) * ((size_t)g->n_threads * (size_t)g->V + T);
    work_sizes(g->m, g->n_ctx, &g->work_size, &g->twork_size);
    g->work = sq_aligned_alloc(g->work_size + 64);
    g->twork = sq_aligned_alloc(g->twork_size + 64);
    *total += g->work_size + g->twork_size;
    float *all[] = {g->xs, g->a,  g->q,  g->k,  g->v,  g->o,  g->x1, g->b,    g->gt,   g->up,  g->h,
                    g->dx, g->da, g->dq, g->dk, g->dv, g->dO, g->db, g->dtmp, g->xf,   g->dg,  g->du,
                    g->dh, g->xg, g->rope, g->logits, g->att, g->qr, g->kr, g->dqr, g->dkr, g->capd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i]) return false;
    return g->lp && g->row_loss && g->work && g->twork && sq__grad_moe_alloc(g, total);
}

/* ---- activations kept from the forward pass ---- */

/* The buffers a kept layer holds (n of them, n_ctx rows of width[i] each):
 * q and k before their norms and RoPE, v, the residual after attention x1,
 * the gate and up outputs (biases added), and the sublayers' outputs before
 * their post-norms where the model has them. */
static int keep_parts(const sq_grad *g, float **part, size_t *width)
{
    int n = 0;
    float *p[8] = {g->qr, g->kr, g->v, g->x1, g->gt, g->up, g->ar, g->fr};
    const size_t w[8] = {(size_t)g->qd, (size_t)g->kvd, (size_t)g->kvd, (size_t)g->E,
                         (size_t)g->F,  (size_t)g->F,   (size_t)g->E,   (size_t)g->E};
    for (int i = 0; i < 8; i++)
        if (p[i]) part[n] = p[i], width[n++] = w[i];
    return n;
}

/* Floats a kept token holds. */
static size_t keep_row(const sq_grad *g)
{
    float *part[8];
    size_t width[8], r = 0;
    const int n = keep_parts(g, part, width);
    for (int i = 0; i < n; i++) r += width[i];
    return r;
}

/* How many layers below the last are kept, and in which type, within the
 * budget; allocates them. */
static bool alloc_keep(sq_grad *g, size_t budget, size_t *total)
{
    const int64_t L = g->m->hp.n_layer - 1; /* the last layer's activations stay in the buffers */
    const size_t per = keep_row(g) * (size_t)g->n_ctx;
    g->keep_type = SQ_TYPE_F32;
    if ((size_t)L * per * sizeof(float) <= budget) {
        g->n_keep = L;
    } else {
        g->keep_type = SQ_TYPE_F16;
        g->n_keep = (int64_t)(budget / (per * sizeof(uint16_t)));
        if (g->n_keep > L) g->n_keep = L;
    }
    if (g->n_keep <= 0) return true;
    const size_t bytes = (size_t)g->n_keep * per * (g->keep_type == SQ_TYPE_F32 ? sizeof(float) : sizeof(uint16_t));
    *total += bytes;
    g->keep = sq_aligned_alloc(bytes);
    return g->keep != NULL;
}

/* Copies n floats into (store) or out of slot i of the kept rows (f32 or f16). */
static void keep_copy(sq_grad *g, size_t off, float *x, size_t n, bool store)
{
    if (g->keep_type == SQ_TYPE_F32) {
        float *k = (float *)g->keep + off;
        if (store) memcpy(k, x, sizeof(float) * n);
        else memcpy(x, k, sizeof(float) * n);
        return;
    }
    uint16_t *k = (uint16_t *)g->keep + off;
    if (store) sq_quantize_act(SQ_TYPE_F16, x, k, (int64_t)n);
    else sq_dequantize_row(SQ_TYPE_F16, k, x, (int64_t)n);
}

/* Stores (or restores) layer l's kept buffers (keep_parts) for nb tokens. */
static void keep_layer(sq_grad *g, int64_t l, int nb, bool store)
{
    const size_t T = (size_t)g->n_ctx, base = (size_t)l * T * keep_row(g);
    float *parts[8];
    size_t width[8], off = base;
    const int n = keep_parts(g, parts, width);
    for (int i = 0; i < n; i++) {
        keep_copy(g, off, parts[i], width[i] * (size_t)nb, store);
        off += width[i] * T;
    }
}

sq_status sq_grad_supports(const sq_model *m, sq_error *err)
{
    /* every layer the engine's forward pass runs has its backward: dense and expert FFNs alike */
    if (m) return SQ_OK;
    return sq_error_set(err, SQ_EINVAL, "no model");
}

/* The RoPE of the model's global and sliding-window layers for chunks of
 * n_ctx tokens, with the frequency factors a context of that length takes. */
static void grad_rope(sq_grad *g)
{
    const sq_model *m = g->m;
    g->rope_cfg[0] = m->x.rope;
    g->rope_cfg[1] = m->x.rope_swa;
    g->rope_cfg[0].ff = g->rope_cfg[1].ff = sq__rope_factors(m, g->n_ctx);
}

sq_status sq_grad_create(const sq_model *m, const sq_grad_params *pp, sq_grad **out, sq_error *err)
{
    *out = NULL;
    sq_grad_params p = pp ? *pp : sq_grad_default_params();
    if (p.n_ctx <= 0) p.n_ctx = 512;
    if (p.n_threads <= 0) p.n_threads = 1;
    if (p.n_ctx < 2 || p.n_ctx > (1 << 20)) return sq_error_set(err, SQ_EINVAL, "gradient chunks of %d tokens", p.n_ctx);
    if (p.target != SQ_GRAD_SAMPLED && p.target != SQ_GRAD_TEXT && p.target != SQ_GRAD_GAUSS)
        return sq_error_set(err, SQ_EINVAL, "unknown gradient target %d", (int)p.target);
    sq_status sup = sq_grad_supports(m, err);
    if (sup != SQ_OK) return sup;
    sq_grad *g = calloc(1, sizeof *g);
    if (!g) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    const sq_hparams *hp = &m->hp;
    g->m = m;
    g->p = p;
    g->n_ctx = p.n_ctx;
    g->E = hp->n_embd, g->F = hp->n_ff, g->V = hp->n_vocab, g->n_rot = hp->n_rot;
    g->X = hp->n_expert, g->K = hp->n_expert_used, g->FE = hp->n_ff_exp;
    if (g->X > 0) g->F = g->K * g->FE; /* gt, up, h: a row of n_ff_exp per (token, slot) */
    g->qd = hp->n_head * hp->head_dim, g->kvd = hp->n_head_kv * hp->head_dim;
    grad_rope(g);
    g->tp = p.n_threads > 1 ? sq_threadpool_create(p.n_threads) : NULL;
    g->n_threads = g->tp ? sq_threadpool_n_threads(g->tp) : 1;
    size_t total = 0;
    if ((p.n_threads > 1 && !g->tp) || !alloc_buffers(g, &total) || !sq__grad_stats_init(g, &total) ||
        !alloc_keep(g, p.keep_bytes ? p.keep_bytes : SQ_GRAD_DEFAULT_KEEP, &total)) {
        sq_grad_free(g);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the backward pass over chunks of %d tokens (%.1f MiB)",
                            p.n_ctx, (double)total / 1048576.0);
    }
    *out = g;
    return SQ_OK;
}

/* ---- products ---- */

/* Y = X W^T for nb rows (the engine's product). */
static sq_status fwd_mm(sq_grad *g, const sq_weight *w, const float *X, int nb, float *Y, sq_error *err)
{
    return sq_weight_matmul(g->tp, w, X, nb, Y, g->work, g->work_size, err);
}

/* dX = sum_i dY_i W_i over `count` weights that read the same input; perm:
 * the permutation their input is gathered through (the weights then take
 * gathered columns), or NULL. */
static sq_status bwd_mm(sq_grad *g, int count, const sq_weight *const *w, float *const *dY, int nb,
                        const int32_t *perm, float *dX, sq_error *err)
{
    float *dst = perm ? g->dtmp : dX;
    for (int i = 0; i < count; i++) {
        sq_status st = sq_weight_matmul_t(g->tp, w[i], dY[i], nb, dst, i > 0, g->twork, g->twork_size, err);
        if (st) return st;
    }
    if (perm)
        for (int t = 0; t < nb; t++)
            sq_perm_scatter(perm, w[0]->cols, g->dtmp + (size_t)t * (size_t)w[0]->cols, dX + (size_t)t * (size_t)w[0]->cols);
    return SQ_OK;
}

/* x itself, or x gathered through perm into g->xg (a shared permutation). */
static const float *gather(sq_grad *g, const int32_t *perm, const float *x, int nb)
{
    if (!perm) return x;
    for (int t = 0; t < nb; t++) sq_perm_gather(perm, g->E, x + (size_t)t * (size_t)g->E, g->xg + (size_t)t * (size_t)g->E);
    return g->xg;
}

/* ---- attention on the pool ---- */

typedef struct attn_task {
    sq_grad *g;
    sq__gattn a;
    bool backward;
    int n_tasks;
    atomic_int next;
} attn_task;

static void attn_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    attn_task *J = ctx;
    float *scratch = J->g->att + (size_t)ith * J->g->att_stride;
    for (;;) {
        const int t = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (t >= J->n_tasks) break;
        if (J->backward) sq__gattn_bwd_kvhead(&J->a, t, scratch);
        else sq__gattn_fwd_head(&J->a, t, scratch);
    }
}

/* Forward (o from q, k, v) or backward (dq, dk, dv from dO) of layer L's
 * attention: its window in a sliding-window layer; the scores scaled by the
 * model's attention scale (an architecture that scales Q instead computes the
 * same function). */
static void attention(sq_grad *g, const sq__layer *L, int nb, bool backward)
{
    const sq_hparams *hp = &g->m->hp;
    attn_task J;
    memset(&J, 0, sizeof J);
    J.g = g;
    J.a = (sq__gattn){nb, (int)hp->head_dim, (int)hp->n_head, (int)hp->n_head_kv, (size_t)g->qd, (size_t)g->kvd,
                      g->m->x.attn_scale, L->swa ? (int)hp->n_swa : 0, g->q, g->k, g->v, g->o, g->dO, g->dq, g->dk,
                      g->dv};
    J.backward = backward;
    J.n_tasks = (int)(backward ? hp->n_head_kv : hp->n_head);
    atomic_init(&J.next, 0);
    sq_threadpool_run(g->tp, attn_worker, &J);
}

/* ---- one layer ---- */

/* y[t] += b for nb rows of n floats (a bias after a product; b may be NULL). */
static void add_bias(float *y, const float *b, int nb, int64_t n)
{
    if (!b) return;
    for (int t = 0; t < nb; t++)
        for (int64_t j = 0; j < n; j++) y[(size_t)t * (size_t)n + (size_t)j] += b[j];
}

/* Rows of a fused product's output split into (or, join: gathered from) two
 * or three buffers of the given widths, nb rows. */
static void split_rows(float *fused, int nb, int count, float *const *part, const int64_t *width, bool join)
{
    int64_t w = 0;
    for (int i = 0; i < count; i++) w += width[i];
    for (int t = 0; t < nb; t++) {
        float *row = fused + (size_t)t * (size_t)w;
        for (int i = 0; i < count; i++) {
            float *p = part[i] + (size_t)t * (size_t)width[i];
            if (join) memcpy(row, p, sizeof(float) * (size_t)width[i]);
            else memcpy(p, row, sizeof(float) * (size_t)width[i]);
            row += width[i];
        }
    }
}

/* qr, kr, v: the products of the normed input a (fused or three), biases added. */
static sq_status qkv_fwd(sq_grad *g, const sq__layer *L, int nb, sq_error *err)
{
    sq_status st;
    float *part[3] = {g->qr, g->kr, g->v};
    const int64_t width[3] = {g->qd, g->kvd, g->kvd};
    if (L->wqkv.data) {
        if ((st = fwd_mm(g, &L->wqkv, g->a, nb, g->fused, err))) return st;
        add_bias(g->fused, L->bq, nb, g->qd + 2 * g->kvd);
        split_rows(g->fused, nb, 3, part, width, false);
        return SQ_OK;
    }
    const float *ain = gather(g, L->qkv_perm, g->a, nb);
    if ((st = fwd_mm(g, &L->wq, ain, nb, g->qr, err)) || (st = fwd_mm(g, &L->wk, ain, nb, g->kr, err)) ||
        (st = fwd_mm(g, &L->wv, ain, nb, g->v, err)))
        return st;
    add_bias(g->qr, L->bq, nb, g->qd);
    add_bias(g->kr, L->bk, nb, g->kvd);
    add_bias(g->v, L->bv, nb, g->kvd);
    return SQ_OK;
}

/* q, k from qr, kr: each head's RMS norm (where the layer has one), then the
 * layer's RoPE. */
static void qk_finish(sq_grad *g, const sq__layer *L, int nb)
{
    const sq_hparams *hp = &g->m->hp;
    const int64_t hd = hp->head_dim;
    const int kind = L->swa ? 1 : 0;
    memcpy(g->q, g->qr, sizeof(float) * (size_t)nb * (size_t)g->qd);
    memcpy(g->k, g->kr, sizeof(float) * (size_t)nb * (size_t)g->kvd);
    for (int t = 0; t < nb; t++) {
        float *q = g->q + (size_t)t * (size_t)g->qd, *k = g->k + (size_t)t * (size_t)g->kvd;
        if (L->q_norm)
            for (int64_t h = 0; h < hp->n_head; h++) sq__rmsnorm(q + h * hd, L->q_norm, q + h * hd, hd, hp->rms_eps);
        if (L->k_norm)
            for (int64_t h = 0; h < hp->n_head_kv; h++) sq__rmsnorm(k + h * hd, L->k_norm, k + h * hd, hd, hp->rms_eps);
        const float *cs = g->rope + ((size_t)kind * (size_t)g->n_ctx + (size_t)t) * (size_t)g->n_rot;
        sq__rope_apply_cfg(q, (int)hp->n_head, (int)hd, &g->rope_cfg[kind], cs);
        sq__rope_apply_cfg(k, (int)hp->n_head_kv, (int)hd, &g->rope_cfg[kind], cs);
    }
}

/* x1 = xin + the attention's output (ar through its post-norm, or already in x1). */
static void attn_residual(sq_grad *g, const sq__layer *L, int nb, const float *xin)
{
    const sq_hparams *hp = &g->m->hp;
    const size_t E = (size_t)g->E;
    if (L->attn_post_norm)
        for (int t = 0; t < nb; t++) sq__rmsnorm(g->ar + t * E, L->attn_post_norm, g->x1 + t * E, g->E, hp->rms_eps);
    for (size_t i = 0; i < (size_t)nb * E; i++) g->x1[i] += xin[i];
}

/* gt, up: the products of the normed input b (fused or two), biases added;
 * in a layer with experts the router's choice and each pair's products. */
static sq_status gate_up_fwd(sq_grad *g, const sq__layer *L, int nb, sq_error *err)
{
    sq_status st;
    if (sq__grad_is_moe(L)) {
        st = sq__grad_moe_route(g, L, nb, err);
        return st ? st : sq__grad_moe_gate_up(g, L, nb, err);
    }
    if (!L->gate.data) {
        float *part[2] = {g->gt, g->up};
        const int64_t width[2] = {g->F, g->F};
        if ((st = fwd_mm(g, &L->up, g->b, nb, g->fused, err))) return st;
        split_rows(g->fused, nb, 2, part, width, false);
    } else {
        const float *bin = gather(g, L->gu_perm, g->b, nb);
        if ((st = fwd_mm(g, &L->gate, bin, nb, g->gt, err)) || (st = fwd_mm(g, &L->up, bin, nb, g->up, err))) return st;
    }
    add_bias(g->gt, L->bgate, nb, g->F);
    add_bias(g->up, L->bup, nb, g->F);
    return SQ_OK;
}

/* h = act(gt) * up (SwiGLU or GeGLU), or the experts' activation. */
static void glu_fwd(sq_grad *g, const sq__layer *L, int nb)
{
    const int64_t n = (int64_t)nb * g->F;
    if (sq__grad_is_moe(L)) {
        sq__grad_moe_glu(g, L, nb);
        return;
    }
    if (g->m->x.arch->act == SQ__ACT_GELU) sq__geglu_smooth(g->gt, g->up, g->h, n);
    else sq__swiglu(g->gt, g->up, g->h, n);
}

/* The FFN's down product into y (fr when the layer has a post-norm), bias
 * added; the experts' weighted sum in a layer with experts. */
static sq_status down_fwd(sq_grad *g, const sq__layer *L, int nb, float *y, sq_error *err)
{
    if (sq__grad_is_moe(L)) return sq__grad_moe_down(g, L, nb, y, err);
    sq_status st = fwd_mm(g, &L->down, g->h, nb, y, err);
    if (!st) add_bias(y, L->bdown, nb, g->E);
    return st;
}

/* Recomputes layer l from its input xin (nb tokens), keeping every
 * intermediate for the backward; with xout, also the layer's output. */
static sq_status layer_fwd(sq_grad *g, int64_t l, int nb, const float *xin, float *xout, sq_error *err)
{
    const sq_hparams *hp = &g->m->hp;
    const sq__layer *L = &g->m->layers[l];
    const size_t E = (size_t)g->E;
    sq_status st;
    for (int t = 0; t < nb; t++) sq__rmsnorm(xin + t * E, L->attn_norm, g->a + t * E, g->E, hp->rms_eps);
    if ((st = qkv_fwd(g, L, nb, err))) return st;
    qk_finish(g, L, nb);
    attention(g, L, nb, false);
    if ((st = fwd_mm(g, &L->wo, g->o, nb, L->attn_post_norm ? g->ar : g->x1, err))) return st;
    add_bias(L->attn_post_norm ? g->ar : g->x1, L->bo, nb, g->E);
    attn_residual(g, L, nb, xin);
    for (int t = 0; t < nb; t++) sq__rmsnorm(g->x1 + t * E, L->ffn_norm, g->b + t * E, g->E, hp->rms_eps);
    if ((st = gate_up_fwd(g, L, nb, err))) return st;
    glu_fwd(g, L, nb);
    /* the backward of a post-norm needs its input; the plain layer's output only the next layer */
    if (L->ffn_post_norm && (st = down_fwd(g, L, nb, g->fr, err))) return st;
    if (!xout) return SQ_OK;
    if (L->ffn_post_norm) {
        for (int t = 0; t < nb; t++) sq__rmsnorm(g->fr + t * E, L->ffn_post_norm, xout + t * E, g->E, hp->rms_eps);
    } else if ((st = down_fwd(g, L, nb, xout, err))) {
        return st;
    }
    for (size_t i = 0; i < (size_t)nb * E; i++) xout[i] += g->x1[i];
    if (l < g->n_keep) keep_layer(g, l, nb, true);
    return SQ_OK;
}

/* Layer l's intermediates for the backward from what the forward pass kept:
 * the norms, RoPE, the attention and the gate again, no weight product but
 * the router's in a layer with experts (its choice is not kept: n_expert
 * products per token, small beside the experts'; their gate and up per
 * (token, slot) are kept like a dense layer's). */
static sq_status layer_restore(sq_grad *g, int64_t l, int nb, const float *xin, sq_error *err)
{
    const sq_hparams *hp = &g->m->hp;
    const sq__layer *L = &g->m->layers[l];
    const size_t E = (size_t)g->E;
    keep_layer(g, l, nb, false);
    for (int t = 0; t < nb; t++) sq__rmsnorm(xin + t * E, L->attn_norm, g->a + t * E, g->E, hp->rms_eps);
    qk_finish(g, L, nb);
    attention(g, L, nb, false);
    for (int t = 0; t < nb; t++) sq__rmsnorm(g->x1 + t * E, L->ffn_norm, g->b + t * E, g->E, hp->rms_eps);
    sq_status st = sq__grad_is_moe(L) ? sq__grad_moe_route(g, L, nb, err) : SQ_OK;
    if (!st) glu_fwd(g, L, nb);
    return st;
}

/* The gradient at a post-norm's input (nb rows of x, norm weights w) from dy,
 * written to dx. */
static void post_norm_bwd(sq_grad *g, const float *x, const float *w, const float *dy, float *dx, int nb)
{
    const size_t E = (size_t)g->E;
    memset(dx, 0, sizeof(float) * (size_t)nb * E);
    for (int t = 0; t < nb; t++) sq__rmsnorm_bwd(x + t * E, w, dy + t * E, dx + t * E, g->E, g->m->hp.rms_eps);
}

/* The observer and the product with W^T of layer l's weight i (nothing for an absent one). */
static gstat *layer_stat(sq_grad *g, int64_t l, int i)
{
    const int k = g->slot[l * W_PER_LAYER + i];
    return k >= 0 ? &g->st[k] : NULL;
}

/* The backward of a sublayer's output product (weight i: ffn_down or
 * attn_output; its input X) from g->dx, the gradient at the sublayer's
 * output: through its post-norm (weights post, input raw) where the layer
 * has one, observed, and multiplied by W^T into dst. */
static sq_status out_bwd(sq_grad *g, int64_t l, int i, const float *post, const float *raw, const float *X,
                         float *dst, int nb, sq_error *err)
{
    float *dy = g->dx;
    if (post) {
        post_norm_bwd(g, raw, post, g->dx, g->dtmp, nb);
        dy = g->dtmp;
    }
    sq__grad_observe(g, layer_stat(g, l, i), X, dy, nb);
    const sq_weight *w = sq__grad_layer_weight(&g->m->layers[l], i);
    return bwd_mm(g, 1, &w, &dy, nb, NULL, dst, err);
}

/* The dense FFN's backward from g->dx (the gradient at the layer's output)
 * to g->db, the gradient at its normed input. */
static sq_status dense_ffn_bwd(sq_grad *g, int64_t l, int nb, sq_error *err)
{
    const sq__layer *L = &g->m->layers[l];
    sq_status st;
    if ((st = out_bwd(g, l, W_DOWN, L->ffn_post_norm, g->fr, g->h, g->dh, nb, err))) return st;
    if (g->m->x.arch->act == SQ__ACT_GELU) sq__geglu_bwd(g->gt, g->up, g->dh, g->dg, g->du, (int64_t)nb * g->F);
    else sq__swiglu_bwd(g->gt, g->up, g->dh, g->dg, g->du, (int64_t)nb * g->F);
    if (!L->gate.data) {
        float *part[2] = {g->dg, g->du};
        const int64_t width[2] = {g->F, g->F};
        split_rows(g->fused, nb, 2, part, width, true);
        sq__grad_observe(g, layer_stat(g, l, W_UP), g->b, g->fused, nb);
        const sq_weight *wu = &L->up;
        if ((st = bwd_mm(g, 1, &wu, &g->fused, nb, NULL, g->db, err))) return st;
    } else {
        sq__grad_observe(g, layer_stat(g, l, W_GATE), g->b, g->dg, nb);
        sq__grad_observe(g, layer_stat(g, l, W_UP), g->b, g->du, nb);
        const sq_weight *gu[2] = {&L->gate, &L->up};
        float *dgu[2] = {g->dg, g->du};
        if ((st = bwd_mm(g, 2, gu, dgu, nb, L->gu_perm, g->db, err))) return st;
    }
    return SQ_OK;
}

/* The FFN's backward: g->dx holds the gradient at the layer's output (also
 * the residual's, x1's) and gets the FFN's share through its norm added. */
static sq_status ffn_bwd(sq_grad *g, int64_t l, int nb, sq_error *err)
{
    const sq__layer *L = &g->m->layers[l];
    const size_t E = (size_t)g->E;
    sq_status st;
    if (sq__grad_is_moe(L)) {
        const float *dy = g->dx;
        if (L->ffn_post_norm) {
            post_norm_bwd(g, g->fr, L->ffn_post_norm, g->dx, g->dtmp, nb);
            dy = g->dtmp;
        }
        if ((st = sq__grad_moe_bwd(g, l, nb, dy, g->db, err))) return st;
    } else if ((st = dense_ffn_bwd(g, l, nb, err))) {
        return st;
    }
    for (int t = 0; t < nb; t++)
        sq__rmsnorm_bwd(g->x1 + t * E, L->ffn_norm, g->db + t * E, g->dx + t * E, g->E, g->m->hp.rms_eps);
    return SQ_OK;
}


/* dq, dk (at q, k after RoPE) to the gradients at qr, kr: RoPE transposed,
 * then each head's norm (the results in dq, dk). */
static void qk_bwd(sq_grad *g, const sq__layer *L, int nb)
{
    const sq_hparams *hp = &g->m->hp;
    const int64_t hd = hp->head_dim;
    const int kind = L->swa ? 1 : 0;
    for (int t = 0; t < nb; t++) {
        const float *cs = g->rope + ((size_t)kind * (size_t)g->n_ctx + (size_t)t) * (size_t)g->n_rot;
        sq__rope_apply_cfg_t(g->dq + (size_t)t * (size_t)g->qd, (int)hp->n_head, (int)hd, &g->rope_cfg[kind], cs);
        sq__rope_apply_cfg_t(g->dk + (size_t)t * (size_t)g->kvd, (int)hp->n_head_kv, (int)hd, &g->rope_cfg[kind], cs);
    }
    const float *nw[2] = {L->q_norm, L->k_norm};
    float *d[2] = {g->dq, g->dk}, *dr[2] = {g->dqr, g->dkr};
    const float *xr[2] = {g->qr, g->kr};
    const int64_t heads[2] = {hp->n_head, hp->n_head_kv}, width[2] = {g->qd, g->kvd};
    for (int i = 0; i < 2; i++) {
        if (!nw[i]) continue;
        memset(dr[i], 0, sizeof(float) * (size_t)nb * (size_t)width[i]);
        for (int64_t j = 0; j < (int64_t)nb * heads[i]; j++)
            sq__rmsnorm_bwd(xr[i] + j * hd, nw[i], d[i] + j * hd, dr[i] + j * hd, hd, hp->rms_eps);
        memcpy(d[i], dr[i], sizeof(float) * (size_t)nb * (size_t)width[i]);
    }
}

/* The attention's backward: g->dx holds the gradient at x1 and gets the
 * gradient at the layer's input. */
static sq_status attn_bwd(sq_grad *g, int64_t l, int nb, const float *xin, sq_error *err)
{
    const sq__layer *L = &g->m->layers[l];
    const size_t E = (size_t)g->E;
    sq_status st;
    if ((st = out_bwd(g, l, W_O, L->attn_post_norm, g->ar, g->o, g->dO, nb, err))) return st;
    attention(g, L, nb, true);
    qk_bwd(g, L, nb);
    if (L->wqkv.data) {
        float *part[3] = {g->dq, g->dk, g->dv};
        const int64_t width[3] = {g->qd, g->kvd, g->kvd};
        split_rows(g->fused, nb, 3, part, width, true);
        sq__grad_observe(g, layer_stat(g, l, W_Q), g->a, g->fused, nb);
        const sq_weight *w = &L->wqkv;
        if ((st = bwd_mm(g, 1, &w, &g->fused, nb, NULL, g->da, err))) return st;
    } else {
        sq__grad_observe(g, layer_stat(g, l, W_Q), g->a, g->dq, nb);
        sq__grad_observe(g, layer_stat(g, l, W_K), g->a, g->dk, nb);
        sq__grad_observe(g, layer_stat(g, l, W_V), g->a, g->dv, nb);
        const sq_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *dqkv[3] = {g->dq, g->dk, g->dv};
        if ((st = bwd_mm(g, 3, qkv, dqkv, nb, L->qkv_perm, g->da, err))) return st;
    }
    for (int t = 0; t < nb; t++)
        sq__rmsnorm_bwd(xin + t * E, L->attn_norm, g->da + t * E, g->dx + t * E, g->E, g->m->hp.rms_eps);
    return SQ_OK;
}

/* The backward of layer l (its forward recomputed or restored just before):
 * g->dx holds the gradient at the layer's output and gets the gradient at
 * its input. */
static sq_status layer_bwd(sq_grad *g, int64_t l, int nb, const float *xin, sq_error *err)
{
    sq_status st = ffn_bwd(g, l, nb, err);
    return st ? st : attn_bwd(g, l, nb, xin, err);
}

/* ---- the loss at the logits ---- */

/* A generator for chunk k, row i: independent of the thread that runs it. */
static void row_rng(const sq_grad *g, int i, uint64_t st[2])
{
    sq_rng_seed(st, g->p.seed ^ (0x9E3779B97F4A7C15ull * (g->n_chunks * 1000003ull + (uint64_t)i + 1)));
}

/* A standard normal draw (Box-Muller). */
static double gauss(uint64_t st[2])
{
    double u1 = (double)sq_rng_uniform(st), u2 = (double)sq_rng_uniform(st);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Draws a token from lp (log-probabilities, n entries). */
static int sample(const double *lp, int n, uint64_t st[2])
{
    const double u = (double)sq_rng_uniform(st);
    double c = 0.0;
    int last = 0;
    for (int v = 0; v < n; v++) {
        const double p = exp(lp[v]);
        if (p > 0) last = v;
        c += p;
        if (c > u) return v;
    }
    return last;
}

/* The loss of row i (logits x, soft-capped already) and, with grad, its
 * gradient in place (see loss_row). */
static double loss_row_plain(sq_grad *g, double *lp, float *x, int i, int32_t next, bool grad)
{
    const int V = (int)g->V;
    sq__log_softmax(x, V, lp);

    uint64_t st[2];
    row_rng(g, i, st);
    const int y = g->p.target == SQ_GRAD_SAMPLED ? sample(lp, V, st) : next;
    const double loss = -lp[next];
    if (!grad) return loss;
    if (g->p.target == SQ_GRAD_GAUSS) {
        double s = 0.0;
        for (int v = 0; v < V; v++) {
            const double z = gauss(st);
            x[v] = (float)z;
            s += sqrt(exp(lp[v])) * z;
        }
        for (int v = 0; v < V; v++) {
            const double p = exp(lp[v]);
            x[v] = (float)(sqrt(p) * (double)x[v] - p * s);
        }
        return loss;
    }
    for (int v = 0; v < V; v++) x[v] = (float)exp(lp[v]);
    x[y] -= 1.0f;
    return loss;
}

/* Row i of the logits (scored position first+i): the text's -log p(next),
 * and with grad the gradient of -log p(y) in place: p - onehot(y) (y drawn
 * or the text's), or the Gaussian probe; through the soft-cap where the
 * model has one (capd: its derivative, V floats of scratch). */
static double loss_row(sq_grad *g, double *lp, float *capd, float *x, int i, int32_t next, bool grad)
{
    const int V = (int)g->V;
    const float cap = g->m->x.final_softcap;
    if (cap > 0.0f) {
        sq__softcap(x, V, cap);
        for (int v = 0; v < V; v++) capd[v] = 1.0f - (x[v] / cap) * (x[v] / cap);
    }
    const double loss = loss_row_plain(g, lp, x, i, next, grad);
    if (grad && cap > 0.0f)
        for (int v = 0; v < V; v++) x[v] *= capd[v];
    return loss;
}

typedef struct loss_task {
    sq_grad *g;
    const int32_t *tok;
    int first, ns;
    bool grad;
    atomic_int next;
} loss_task;

static void loss_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    loss_task *J = ctx;
    sq_grad *g = J->g;
    double *lp = g->lp + (size_t)ith * (size_t)g->V;
    float *capd = g->capd + (size_t)ith * (size_t)g->V;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (i >= J->ns) break;
        g->row_loss[i] =
            loss_row(g, lp, capd, g->logits + (size_t)i * (size_t)g->V, i, J->tok[J->first + i + 1], J->grad);
    }
}

/* The output norm and product for the scored rows, the loss (summed in row
 * order) and, with grad, the gradient at the last layer's output in g->dx. */
static sq_status output_loss(sq_grad *g, const int32_t *tok, int nb, int first, bool grad, double *loss, sq_error *err)
{
    const sq_model *m = g->m;
    const size_t E = (size_t)g->E;
    const float *xl = g->xs + (size_t)m->hp.n_layer * (size_t)g->n_ctx * E;
    const int ns = nb - 1 - first;
    for (int i = 0; i < ns; i++) sq__rmsnorm(xl + (size_t)(first + i) * E, m->output_norm, g->xf + i * E, g->E, m->hp.rms_eps);
    sq_status st = fwd_mm(g, &m->output, g->xf, ns, g->logits, err);
    if (st) return st;
    add_bias(g->logits, m->output_b, ns, g->V);
    loss_task J = {g, tok, first, ns, grad, 0};
    atomic_init(&J.next, 0);
    sq_threadpool_run(g->tp, loss_worker, &J);
    double sum = 0.0;
    for (int i = 0; i < ns; i++) sum += g->row_loss[i];
    if (loss) *loss = sum;
    if (!grad) return SQ_OK;
    sq__grad_observe(g, &g->st[g->n_st - 1], g->xf, g->logits, ns);
    const sq_weight *wout = &m->output;
    float *dl = g->logits;
    if ((st = bwd_mm(g, 1, &wout, &dl, ns, NULL, g->dtmp, err))) return st;
    memset(g->dx, 0, sizeof(float) * (size_t)nb * E);
    for (int i = 0; i < ns; i++)
        sq__rmsnorm_bwd(xl + (size_t)(first + i) * E, m->output_norm, g->dtmp + i * E, g->dx + (size_t)(first + i) * E,
                        g->E, m->hp.rms_eps);
    return SQ_OK;
}

/* ---- a chunk ---- */

sq_status sq_grad_chunk(sq_grad *g, const int32_t *tok, int nb, int first, bool backward, double *loss, sq_error *err)
{
    const sq_model *m = g->m;
    const sq_hparams *hp = &m->hp;
    const size_t E = (size_t)g->E, T = (size_t)g->n_ctx;
    if (nb < 2 || nb > g->n_ctx)
        return sq_error_set(err, SQ_EINVAL, "a gradient chunk of %d tokens (want 2..%d)", nb, g->n_ctx);
    if (first < 0 || first >= nb - 1)
        return sq_error_set(err, SQ_EINVAL, "first scored position %d of a chunk of %d tokens", first, nb);
    for (int i = 0; i < nb; i++)
        if (tok[i] < 0 || tok[i] >= hp->n_vocab)
            return sq_error_set(err, SQ_ERANGE, "token id %d at chunk index %d is outside the vocabulary (%lld)",
                                (int)tok[i], i, (long long)hp->n_vocab);
    for (int kind = 0; kind < 2; kind++)
        for (int t = 0; t < nb; t++)
            sq__rope_cache_cfg(g->rope + ((size_t)kind * T + (size_t)t) * (size_t)g->n_rot, &g->rope_cfg[kind], t);
    const float es = m->x.embd_scale;
    for (int t = 0; t < nb; t++) {
        float *x = g->xs + (size_t)t * E;
        sq_weight_get_row(&m->tok_embd, tok[t], x);
        if (es != 1.0f)
            for (size_t e = 0; e < E; e++) x[e] *= es;
    }
    sq_status st = SQ_OK;
    for (int64_t l = 0; l < hp->n_layer && !st; l++)
        st = layer_fwd(g, l, nb, g->xs + (size_t)l * T * E, g->xs + (size_t)(l + 1) * T * E, err);
    if (!st) st = output_loss(g, tok, nb, first, backward, loss, err);
    /* the last layer's intermediates are still in the buffers; the others are recomputed */
    for (int64_t l = hp->n_layer - 1; l >= 0 && backward && !st; l--) {
        const float *xin = g->xs + (size_t)l * T * E;
        if (l < g->n_keep) st = layer_restore(g, l, nb, xin, err);
        else if (l < hp->n_layer - 1) st = layer_fwd(g, l, nb, xin, NULL, err);
        if (!st) st = layer_bwd(g, l, nb, xin, err);
        if (st) sq_error_prefix(err, "backward, layer %lld", (long long)l);
    }
    if (st || !backward) return st;
    if (es != 1.0f) /* the looked-up row's gradient: through the embedding's scale */
        for (size_t i = 0; i < (size_t)nb * E; i++) g->dx[i] *= es;
    sq__grad_observe_lookup(g, tok, g->dx, nb);
    g->n_scored += nb - 1 - first;
    g->n_chunks++;
    return SQ_OK;
}

