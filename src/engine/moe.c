/*
 * moe.c — the feed-forward sublayer of a mixture-of-experts layer (qwen3moe,
 * and llama's Mixtral), as llama.cpp's build_moe_ffn computes it with
 * softmax gating: the router's logits, their softmax over the experts, the
 * n_expert_used most probable experts (best first), their probabilities
 * normalised to sum 1 (the sum clamped below at fp16's smallest normal, as
 * there); each chosen expert's gated FFN; its output times its weight; the
 * weighted outputs added in the order of choice.
 *
 * The batch is regrouped by expert: the rows of the tokens that chose an
 * expert are gathered and go through its three products at once (a slice of
 * the 3-D expert tensors: sq__expert_view), so that every expert's weights
 * are read once per batch. A SmarterQuant expert tensor has one column
 * permutation for all its experts' rows; each slice's product applies it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"

/* The experts of one token (the one owner of the routing rule: the backward
 * pass, grad_moe.c, routes with it too). */
void sq__moe_route(float *x, int64_t X, int64_t K, int32_t *sel, float *w)
{
    unsigned char taken[512] = {0};
    sq__softmax(x, (int)X);
    for (int64_t k = 0; k < K; k++) {
        int64_t best = -1;
        for (int64_t e = 0; e < X; e++)
            if (!taken[e] && (best < 0 || x[e] > x[best])) best = e;
        taken[best] = 1;
        sel[k] = (int32_t)best;
        w[k] = x[best];
    }
    double sum = 0.0; /* ggml's sum_rows adds in double */
    for (int64_t k = 0; k < K; k++) sum += (double)w[k];
    float s = (float)sum;
    if (s < 6.103515625e-5f) s = 6.103515625e-5f;
    for (int64_t k = 0; k < K; k++) w[k] /= s;
}

/* Shows an expert product's input rows to the expert hook. */
static void expert_hook(sq_context *c, int64_t layer, const char *what, int64_t e, const float *X, int64_t n,
                        int64_t cols)
{
    if (!c->ehook) return;
    char name[96];
    snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)layer, what);
    c->ehook(c->ehook_user, name, e, c->m->hp.n_expert, X, n, cols);
}

/* An expert's product of n gathered rows, with the error naming the slice. */
static sq_status expert_mm(sq_context *c, const sq_weight *w3, int64_t e, const float *X, int64_t n, float *Y,
                           const char *what, int64_t layer, sq_error *err)
{
    const sq_weight w = sq__expert_view(w3, c->m->hp.n_expert, e);
    sq_status st = sq_weight_matmul(c->tp, &w, X, n, Y, c->work, c->work_size, err);
    if (st) sq_error_prefix(err, "layer %lld %s expert %lld", (long long)layer, what, (long long)e);
    return st;
}

/* Expert e on the n (token, slot) pairs in c->moe_rows: gather the tokens'
 * rows of xn, gate and up, the gated activation (SiLU of up alone without a
 * gate), down, and each output times its weight into its slot of moe_out. */
static sq_status run_expert(sq_context *c, const sq__layer *L, int64_t l, int64_t e, int64_t n, sq_error *err)
{
    const sq_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, FE = hp->n_ff_exp, K = hp->n_expert_used;
    for (int64_t r = 0; r < n; r++)
        memcpy(c->moe_x + r * E, c->xn + (c->moe_rows[r] / K) * E, sizeof(float) * (size_t)E);
    sq_status st;
    expert_hook(c, l, "ffn_up_exps", e, c->moe_x, n, E);
    if ((st = expert_mm(c, &L->up_exps, e, c->moe_x, n, c->u, "ffn_up_exps", l, err))) return st;
    if (L->gate_exps.data) {
        expert_hook(c, l, "ffn_gate_exps", e, c->moe_x, n, E);
        if ((st = expert_mm(c, &L->gate_exps, e, c->moe_x, n, c->g, "ffn_gate_exps", l, err))) return st;
        sq__glu(c->m->x.arch->act, c->g, c->u, c->g, n * FE);
    } else {
        sq__silu(c->u, c->g, n * FE);
    }
    expert_hook(c, l, "ffn_down_exps", e, c->g, n, FE);
    if ((st = expert_mm(c, &L->down_exps, e, c->g, n, c->moe_y, "ffn_down_exps", l, err))) return st;
    for (int64_t r = 0; r < n; r++) {
        const int64_t pair = c->moe_rows[r]; /* token * K + slot */
        const float wt = c->moe_w[pair];
        float *out = c->moe_out + pair * E;
        const float *y = c->moe_y + r * E;
        for (int64_t j = 0; j < E; j++) out[j] = y[j] * wt;
    }
    return SQ_OK;
}

sq_status sq__moe_ffn(sq_context *c, const sq__layer *L, int64_t l, int nb, sq_error *err)
{
    const sq_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, X = hp->n_expert, K = hp->n_expert_used;
    sq_status st = sq__mm(c, &L->router, c->xn, c->xn, nb, c->moe_logits, "ffn_gate_inp", l, err);
    if (st) return st;
    for (int i = 0; i < nb; i++) sq__moe_route(c->moe_logits + i * X, X, K, c->moe_sel + i * K, c->moe_w + i * K);
    for (int64_t e = 0; e < X; e++) {
        /* its (token, slot) pairs slot by slot, then token by token: llama-imatrix's order of rows */
        int64_t n = 0;
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < nb; i++)
                if (c->moe_sel[i * K + k] == e) c->moe_rows[n++] = (int32_t)(i * K + k);
        if (n > 0 && (st = run_expert(c, L, l, e, n, err))) return st;
    }
    /* the weighted outputs added in the order of choice (llama.cpp's views, added one after the other) */
    for (int i = 0; i < nb; i++) {
        float *y = c->xn + (size_t)i * (size_t)E;
        const float *o = c->moe_out + (size_t)i * (size_t)(K * E);
        memcpy(y, o, sizeof(float) * (size_t)E);
        for (int64_t k = 1; k < K; k++)
            for (int64_t j = 0; j < E; j++) y[j] += o[k * E + j];
    }
    return SQ_OK;
}
