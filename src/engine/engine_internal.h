/*
 * src/engine/engine_internal.h — what the engine's files share: the model's
 * layout and the elementwise operations of the forward pass (exposed here so
 * that tests can check them against a naive reference).
 */
#ifndef SQ_ENGINE_INTERNAL_H
#define SQ_ENGINE_INTERNAL_H

#include "sq/engine.h"
#include "sq/sqtensor.h"

/* One transformer block. Norm vectors are F32 (in the map, or owned copies). */
typedef struct sq__layer {
    const float *attn_norm; /* n_embd */
    sq_weight wq, wk, wv, wo;
    const float *ffn_norm;  /* n_embd */
    sq_weight gate, up, down;
    /* SmarterQuant products sharing their input and their permutation (q, k, v;
     * gate, up): the activations are gathered once through this permutation and
     * the views above then have perm = NULL (they take gathered input). */
    const int32_t *qkv_perm, *gu_perm;
} sq__layer;

struct sq_model {
    sq_gguf *g;               /* owned: the mapped file */
    sq_hparams hp;
    sq_weight tok_embd;       /* n_vocab rows of n_embd */
    sq_weight output;         /* == tok_embd when tied */
    const float *output_norm; /* n_embd */
    const float *rope_freqs;  /* n_rot/2 frequency factors or NULL */
    sq__layer *layers;
    void **owned;             /* buffers the model allocated (norms converted to f32, permutations) */
    int n_owned, cap_owned;
    uint64_t weight_bytes, n_params;
    char type_desc[64];
};

/* ---- elementwise operations (ggml's order of operations) ---- */

/* y = x / sqrt(mean(x^2) + eps) * w  (sum of squares in double, as ggml). */
void sq__rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);

/* Rotates adjacent pairs (x[2i], x[2i+1]) of the first n_rot entries of each of
 * n_heads heads (head_dim apart) by theta_i = pos * base^(-2i/n_rot) / ff[i]
 * (llama.cpp's normal rope mode; ff may be NULL). */
void sq__rope(float *x, int n_heads, int head_dim, int n_rot, int pos, float base, float scale, const float *ff);

/* In place softmax over n values with the max subtracted; returns the sum. */
float sq__softmax(float *x, int n);

/* y[i] = silu(g[i]) * u[i]. */
void sq__swiglu(const float *g, const float *u, float *y, int64_t n);

/* Rounds n floats through fp16 (the values an f16 KV cache holds). */
void sq__round_fp16(float *x, int64_t n);

/* ---- attention inner loops: scalar in forward.c, AVX2+FMA+F16C in attn_avx2.c ---- */
/* out[j] = scale * q·k_j for the n key rows k + j*kstride (hd floats each). */
void sq__attn_scores(const float *q, const float *k, size_t kstride, int n, int hd, float scale, float *out);
/* out = sum_j p[j] * v_j over the n value rows v + j*vstride (hd floats each), in key order. */
void sq__attn_values(float *out, const float *v, size_t vstride, const float *p, int n, int hd);

void sq__attn_scores_avx2(const float *q, const float *k, size_t kstride, int n, int hd, float scale, float *out);
void sq__attn_values_avx2(float *out, const float *v, size_t vstride, const float *p, int n, int hd);
void sq__round_fp16_avx2(float *x, int64_t n);

#endif
