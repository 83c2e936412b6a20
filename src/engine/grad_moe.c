/*
 * grad_moe.c — the forward and backward pass of a mixture-of-experts FFN
 * for the backward pass (grad.c), computing the engine's function (moe.c):
 * the router's softmax over the experts, the K best (sq__moe_route, the one
 * owner of that rule), their probabilities normalised to sum 1, each chosen
 * expert's gated FFN on its tokens' rows, the outputs weighted and added in
 * the order of choice.
 *
 * Layout. A (token, slot) pair p = t K + k is one row of n_ff_exp floats in
 * g->gt, g->up, g->h and their gradients (grad.c sizes them [n_ctx][F] with
 * F = K n_ff_exp), so the kept activations of a layer (grad.c, keep_parts)
 * hold each pair's gate and up like a dense layer's. The pairs are grouped
 * by expert (g->mpair, g->moff); an expert's rows are gathered into one of
 * four scratch buffers of n_ctx rows (a token picks an expert at most once),
 * multiplied through the expert's slice of the 3-D tensor (sq__expert_view)
 * and scattered back.
 *
 * The backward, per expert e and pair p of token t with weight w_p, from
 * dOut = the gradient at the sublayer's output:
 *   dH'_p = dOut_t W_down,e            (sq_weight_matmul_t, unweighted)
 *   dw_p  = <dH'_p, h_p>               (= <dOut_t, y_p>: no y is kept or recomputed)
 *   dY_p  = w_p dOut_t,  dH_p = w_p dH'_p
 * down_exps observed in expert e's rows with (h_p, dY_p); the activation's
 * backward for every pair at once; gate_exps / up_exps observed with the
 * gathered normed rows and dG, dU; dX_p = dG_p W_gate,e + dU_p W_up,e added
 * to row t; the router: dw through the normalisation and the softmax to the
 * logits (sq__moe_route_bwd), observed as ffn_gate_inp and multiplied back.
 * The choice of experts is held fixed (it is piecewise constant).
 *
 * Cost: per layer the forward's router, gate, up and down products, and in
 * the backward three products with W^T; a kept layer recomputes only the
 * router (its choice is not kept), a layer not kept recomputes the router,
 * gate and up, never down. Memory: n_ctx K rows of n_ff_exp for each of the
 * six pair buffers (grad.c), n_ctx K rows of n_embd for the pairs' outputs
 * (the forward only), four n_ctx-row scratch buffers, n_ctx n_expert router
 * floats; only the statistics and the X+1 offsets grow with the experts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grad_internal.h"
#include "sq/blocks.h"
#include "sq/matmul.h"

bool sq__grad_moe_alloc(sq_grad *g, size_t *total)
{
    if (g->X <= 0) return true;
    const size_t T = (size_t)g->n_ctx, K = (size_t)g->K, X = (size_t)g->X, E = (size_t)g->E;
    const size_t W = (size_t)(g->E > g->FE ? g->E : g->FE);
    g->mprob = sq_aligned_alloc(sizeof(float) * T * X + 64);
    g->msel = malloc(sizeof(int32_t) * T * K);
    g->mw = malloc(sizeof(float) * T * K);
    g->mdw = malloc(sizeof(float) * T * K);
    g->mpair = malloc(sizeof(int32_t) * T * K);
    g->moff = malloc(sizeof(int64_t) * (X + 1));
    g->my = sq_aligned_alloc(sizeof(float) * T * K * E + 64);
    bool ok = g->mprob && g->msel && g->mw && g->mdw && g->mpair && g->moff && g->my;
    for (int i = 0; i < 4; i++) ok = (g->ms[i] = sq_aligned_alloc(sizeof(float) * T * W + 64)) != NULL && ok;
    *total += sizeof(float) * (T * X + 3 * T * K + T * K * E + 4 * T * W) + sizeof(int64_t) * (X + 1);
    return ok;
}

void sq__grad_moe_free(sq_grad *g)
{
    sq_aligned_free(g->mprob);
    sq_aligned_free(g->my);
    for (int i = 0; i < 4; i++) sq_aligned_free(g->ms[i]);
    free(g->msel), free(g->mw), free(g->mdw), free(g->mpair), free(g->moff);
}

/* The statistics entry of layer l's weight i, or NULL. */
static gstat *moe_stat(sq_grad *g, int64_t l, int i)
{
    const int k = g->slot[l * W_PER_LAYER + i];
    return k >= 0 ? &g->st[k] : NULL;
}

/* ---- routing ---- */

void sq__moe_route_bwd(const float *p, int64_t X, const int32_t *sel, const float *w, int64_t K, const float *dw,
                       float *dl)
{
    double sum = 0.0, wdw = 0.0;
    for (int64_t k = 0; k < K; k++) sum += (double)p[sel[k]], wdw += (double)w[k] * (double)dw[k];
    /* w_k = p_k / s: dp_j = (dw_j - sum_k w_k dw_k) / s, or dw_j / s where s was clamped (a constant) */
    const bool clamped = (float)sum < 6.103515625e-5f;
    const double s = clamped ? 6.103515625e-5 : (double)(float)sum, mean = clamped ? 0.0 : wdw;
    double pdp = 0.0; /* sum_j p_j dp_j: dp is 0 off the chosen */
    for (int64_t k = 0; k < K; k++) pdp += (double)p[sel[k]] * ((double)dw[k] - mean) / s;
    /* the softmax: dl_i = p_i (dp_i - sum_j p_j dp_j), element by element (dl may be p) */
    for (int64_t i = 0; i < X; i++) {
        double dp = 0.0;
        for (int64_t k = 0; k < K; k++)
            if (sel[k] == i) dp = ((double)dw[k] - mean) / s;
        dl[i] = (float)((double)p[i] * (dp - pdp));
    }
}

sq_status sq__grad_moe_route(sq_grad *g, const sq__layer *L, int nb, sq_error *err)
{
    const int64_t X = g->X, K = g->K;
    sq_status st = sq_weight_matmul(g->tp, &L->router, g->b, nb, g->mprob, g->work, g->work_size, err);
    if (st) return st;
    for (int t = 0; t < nb; t++) sq__moe_route(g->mprob + t * X, X, K, g->msel + t * K, g->mw + t * K);
    /* each expert's pairs, in pair order */
    memset(g->moff, 0, sizeof(int64_t) * (size_t)(X + 1));
    for (int64_t p = 0; p < nb * K; p++) g->moff[g->msel[p] + 1]++;
    for (int64_t e = 0; e < X; e++) g->moff[e + 1] += g->moff[e];
    for (int64_t p = 0; p < nb * K; p++) g->mpair[g->moff[g->msel[p]]++] = (int32_t)p;
    for (int64_t e = X; e > 0; e--) g->moff[e] = g->moff[e - 1];
    g->moff[0] = 0;
    return SQ_OK;
}

/* ---- gathering an expert's rows ---- */

/* dst row r = row (pair[r] / K if by_token, else pair[r]) of src (width floats each). */
static void gather_rows(const sq_grad *g, const int32_t *pair, int64_t n, bool by_token, const float *src, int64_t width,
                        float *dst)
{
    for (int64_t r = 0; r < n; r++) {
        const int64_t i = by_token ? pair[r] / g->K : pair[r];
        memcpy(dst + r * width, src + i * width, sizeof(float) * (size_t)width);
    }
}

/* Row pair[r] of dst = row r of src (width floats each). */
static void scatter_rows(const int32_t *pair, int64_t n, const float *src, int64_t width, float *dst)
{
    for (int64_t r = 0; r < n; r++) memcpy(dst + pair[r] * width, src + r * width, sizeof(float) * (size_t)width);
}

/* Y = X W_e^T for n rows through expert e's slice of w3; the error names it. */
static sq_status expert_fwd(sq_grad *g, const sq_weight *w3, int64_t e, const float *X, int64_t n, float *Y,
                            sq_error *err)
{
    const sq_weight v = sq__expert_view(w3, g->X, e);
    sq_status st = sq_weight_matmul(g->tp, &v, X, n, Y, g->work, g->work_size, err);
    if (st) sq_error_prefix(err, "expert %lld", (long long)e);
    return st;
}

/* dX (+)= dY W_e for n rows through expert e's slice of w3. */
static sq_status expert_bwd(sq_grad *g, const sq_weight *w3, int64_t e, const float *dY, int64_t n, float *dX,
                            bool accumulate, sq_error *err)
{
    const sq_weight v = sq__expert_view(w3, g->X, e);
    sq_status st = sq_weight_matmul_t(g->tp, &v, dY, n, dX, accumulate, g->twork, g->twork_size, err);
    if (st) sq_error_prefix(err, "expert %lld", (long long)e);
    return st;
}

/* ---- forward ---- */

sq_status sq__grad_moe_gate_up(sq_grad *g, const sq__layer *L, int nb, sq_error *err)
{
    (void)nb;
    float *xe = g->ms[0], *ye = g->ms[1];
    for (int64_t e = 0; e < g->X; e++) {
        const int32_t *pair = g->mpair + g->moff[e];
        const int64_t n = g->moff[e + 1] - g->moff[e];
        if (n == 0) continue;
        gather_rows(g, pair, n, true, g->b, g->E, xe);
        sq_status st = expert_fwd(g, &L->up_exps, e, xe, n, ye, err);
        if (st) return st;
        scatter_rows(pair, n, ye, g->FE, g->up);
        if (!L->gate_exps.data) continue;
        if ((st = expert_fwd(g, &L->gate_exps, e, xe, n, ye, err))) return st;
        scatter_rows(pair, n, ye, g->FE, g->gt);
    }
    return SQ_OK;
}

void sq__grad_moe_glu(sq_grad *g, const sq__layer *L, int nb)
{
    const int64_t n = (int64_t)nb * g->F;
    if (!L->gate_exps.data) {
        sq__silu(g->up, g->h, n);
    } else if (g->m->x.arch->act == SQ__ACT_GELU) {
        sq__geglu_smooth(g->gt, g->up, g->h, n);
    } else {
        sq__swiglu(g->gt, g->up, g->h, n);
    }
}

sq_status sq__grad_moe_down(sq_grad *g, const sq__layer *L, int nb, float *y, sq_error *err)
{
    const int64_t E = g->E, K = g->K;
    float *he = g->ms[0], *ye = g->ms[1];
    for (int64_t e = 0; e < g->X; e++) {
        const int32_t *pair = g->mpair + g->moff[e];
        const int64_t n = g->moff[e + 1] - g->moff[e];
        if (n == 0) continue;
        gather_rows(g, pair, n, false, g->h, g->FE, he);
        sq_status st = expert_fwd(g, &L->down_exps, e, he, n, ye, err);
        if (st) return st;
        scatter_rows(pair, n, ye, E, g->my);
    }
    /* the weighted outputs added in the order of choice, as the engine adds them */
    for (int64_t t = 0; t < nb; t++) {
        float *o = y + t * E;
        const float *yp = g->my + t * K * E, *w = g->mw + t * K;
        for (int64_t j = 0; j < E; j++) o[j] = yp[j] * w[0];
        for (int64_t k = 1; k < K; k++)
            for (int64_t j = 0; j < E; j++) o[j] += yp[k * E + j] * w[k];
    }
    return SQ_OK;
}

/* ---- backward ---- */

/* Dot product of n floats in double. */
static double dot(const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* Expert e's down product backward: its pairs' dw, observed in its rows of
 * ffn_down_exps, and dH of its pairs into g->dh (see the file's comment). */
static sq_status down_bwd(sq_grad *g, int64_t l, int64_t e, const float *dy, sq_error *err)
{
    const sq__layer *L = &g->m->layers[l];
    const int64_t E = g->E, FE = g->FE;
    const int32_t *pair = g->mpair + g->moff[e];
    const int64_t n = g->moff[e + 1] - g->moff[e];
    float *dye = g->ms[0], *he = g->ms[1], *dhe = g->ms[2];
    gather_rows(g, pair, n, true, dy, E, dye);
    gather_rows(g, pair, n, false, g->h, FE, he);
    sq_status st = expert_bwd(g, &L->down_exps, e, dye, n, dhe, false, err);
    if (st) return st;
    for (int64_t r = 0; r < n; r++) {
        const float w = g->mw[pair[r]];
        g->mdw[pair[r]] = (float)dot(dhe + r * FE, he + r * FE, FE);
        for (int64_t j = 0; j < E; j++) dye[r * E + j] *= w;
        for (int64_t j = 0; j < FE; j++) dhe[r * FE + j] *= w;
    }
    sq__grad_observe_rows(g, moe_stat(g, l, W_DOWN_EXPS), e * E, E, he, dye, n);
    scatter_rows(pair, n, dhe, FE, g->dh);
    return SQ_OK;
}

/* Expert e's gate and up backward: observed in its rows, the gradient at
 * its pairs' input rows added to their tokens' rows of db. */
static sq_status gate_up_bwd(sq_grad *g, int64_t l, int64_t e, float *db, sq_error *err)
{
    const sq__layer *L = &g->m->layers[l];
    const int64_t E = g->E, FE = g->FE;
    const int32_t *pair = g->mpair + g->moff[e];
    const int64_t n = g->moff[e + 1] - g->moff[e];
    float *xe = g->ms[0], *dge = g->ms[1], *due = g->ms[2], *dxe = g->ms[3];
    const bool gate = L->gate_exps.data != NULL;
    gather_rows(g, pair, n, true, g->b, E, xe);
    gather_rows(g, pair, n, false, g->du, FE, due);
    sq__grad_observe_rows(g, moe_stat(g, l, W_UP_EXPS), e * FE, FE, xe, due, n);
    sq_status st = expert_bwd(g, &L->up_exps, e, due, n, dxe, false, err);
    if (!st && gate) {
        gather_rows(g, pair, n, false, g->dg, FE, dge);
        sq__grad_observe_rows(g, moe_stat(g, l, W_GATE_EXPS), e * FE, FE, xe, dge, n);
        st = expert_bwd(g, &L->gate_exps, e, dge, n, dxe, true, err);
    }
    if (st) return st;
    for (int64_t r = 0; r < n; r++) {
        float *d = db + (pair[r] / g->K) * E;
        for (int64_t j = 0; j < E; j++) d[j] += dxe[r * E + j];
    }
    return SQ_OK;
}

/* The router's backward: the logits' gradient (in g->mprob), observed as
 * ffn_gate_inp, times W_router written to db. */
static sq_status router_bwd(sq_grad *g, int64_t l, int nb, float *db, sq_error *err)
{
    const int64_t X = g->X, K = g->K;
    for (int t = 0; t < nb; t++) {
        float *p = g->mprob + t * X;
        sq__moe_route_bwd(p, X, g->msel + t * K, g->mw + t * K, K, g->mdw + t * K, p);
    }
    sq__grad_observe(g, moe_stat(g, l, W_ROUTER), g->b, g->mprob, nb);
    return sq_weight_matmul_t(g->tp, &g->m->layers[l].router, g->mprob, nb, db, false, g->twork, g->twork_size, err);
}

sq_status sq__grad_moe_bwd(sq_grad *g, int64_t l, int nb, const float *dy, float *db, sq_error *err)
{
    const sq__layer *L = &g->m->layers[l];
    sq_status st = SQ_OK;
    for (int64_t e = 0; e < g->X && !st; e++)
        if (g->moff[e + 1] > g->moff[e]) st = down_bwd(g, l, e, dy, err);
    if (st) return st;
    const int64_t n = (int64_t)nb * g->F;
    if (!L->gate_exps.data) sq__silu_bwd(g->up, g->dh, g->du, n);
    else if (g->m->x.arch->act == SQ__ACT_GELU) sq__geglu_bwd(g->gt, g->up, g->dh, g->dg, g->du, n);
    else sq__swiglu_bwd(g->gt, g->up, g->dh, g->dg, g->du, n);
    if ((st = router_bwd(g, l, nb, db, err))) return st;
    for (int64_t e = 0; e < g->X && !st; e++)
        if (g->moff[e + 1] > g->moff[e]) st = gate_up_bwd(g, l, e, db, err);
    return st;
}
