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
    char type_desc[96];
};

/* ---- elementwise operations (ggml's order of operations) ---- */

/* y = x / sqrt(mean(x^2) + eps) * w  (sum of squares in double, as ggml). */
void sq__rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);

/* Rotates adjacent pairs (x[2i], x[2i+1]) of the first n_rot entries of each of
 * n_heads heads (head_dim apart) by theta_i = pos * base^(-2i/n_rot) / ff[i]
 * (llama.cpp's normal rope mode; ff may be NULL). */
void sq__rope(float *x, int n_heads, int head_dim, int n_rot, int pos, float base, float scale, const float *ff);
/* sq__rope in two steps: the cos/sin pairs of a position (n_rot floats), then
 * the rotation of n_heads heads with them (a batch computes a position's
 * pairs once for all layers). */
void sq__rope_cache(float *cache, int n_rot, int pos, float base, float scale, const float *ff);
void sq__rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cache);

/* In place softmax over n values with the max subtracted; returns the sum. */
float sq__softmax(float *x, int n);

/* y[i] = silu(g[i]) * u[i]. */
void sq__swiglu(const float *g, const float *u, float *y, int64_t n);

/* Rounds n floats through fp16 (the values an f16 KV cache holds). */
void sq__round_fp16(float *x, int64_t n);

/* ---- blocked attention: scalar reference in forward.c, SIMD in attn_avx2.c / attn_avx512.c ---- */

/* Query rows per attention block: the score tile keeps this many rows of
 * accumulators in registers while a block of keys streams past. */
#define SQ_ATTN_ROWS 8
/* Keys are scored in blocks of this many (the transposed K cache is padded to it). */
#define SQ_ATTN_KEYS 32

/* Up to SQ_ATTN_ROWS query rows that share one KV head (several tokens and/or
 * the heads of a GQA group), each attending its own causal prefix of keys.
 * For row r: s_j = scale * q_r·k_j for j < nk[r]; p = softmax(s) (max
 * subtracted, sum in double, one float reciprocal, as ggml); with f16 the
 * weights p are rounded to fp16 before the value sum; o_r = Σ_j p_j v_j, the
 * keys added in order. K is the transposed cache of this head (value d of key
 * j at kt[d * kt_stride + j], readable up to nk rounded up to SQ_ATTN_KEYS);
 * value row j at v + j * v_stride. sc is the caller's scratch (m rows of
 * sc_stride >= max nk rounded up to SQ_ATTN_KEYS floats). All buffers belong
 * to the caller. */
typedef struct sq__attn_block {
    int m, hd;
    const float *q[SQ_ATTN_ROWS];
    float *o[SQ_ATTN_ROWS];
    int nk[SQ_ATTN_ROWS];
    const float *kt;
    size_t kt_stride;
    const float *v;
    size_t v_stride;
    float scale;
    bool f16;
    float *sc;
    size_t sc_stride;
} sq__attn_block;

void sq__attn_block_ref(const sq__attn_block *b);
void sq__attn_block_avx2(const sq__attn_block *b);
void sq__attn_block_avx512(const sq__attn_block *b);
/* y[i] = expf(x[i]), 16 lanes at a time with the C library's results (the AVX-512 softmax's exp). */
void sq__expf_avx512(const float *x, float *y, int n);
/* sq__swiglu on 16 lanes (equal results). */
void sq__swiglu_avx512(const float *g, const float *u, float *y, int64_t n);
/* sq__rmsnorm of nt <= 8 rows of x (stride floats apart) into y (same stride), equal results. */
void sq__rmsnorm_rows_avx512(const float *x, const float *w, float *y, int64_t n, float eps, size_t stride, int nt);

void sq__round_fp16_avx2(float *x, int64_t n);

#endif
