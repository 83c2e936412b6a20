/*
 * src/engine/engine_internal.h — what the engine's files share: the
 * architectures as data (arch.c), the model's layout (model.c), the context
 * the forward pass runs in (forward.c, moe.c), and the elementwise operations
 * of the forward pass (ops.c; exposed here so that tests can check them
 * against a naive reference).
 *
 * Weight shapes are written in GGUF's (ggml's ne) order, columns first, as
 * llama2.c comments every tensor field: a weight [in, out] has `in` columns
 * and `out` rows and maps an activation row of `in` floats to `out` floats;
 * an expert weight [in, out, n_expert] stacks n_expert such slices. Buffers
 * of the context are written [outer][inner] as C arrays.
 */
#ifndef SQ_ENGINE_INTERNAL_H
#define SQ_ENGINE_INTERNAL_H

#include "sq/engine.h"
#include "sq/sqtensor.h"

/* ---- architectures (arch.c) ---- */

/* The gated activation of the feed-forward network: act(gate) * up. */
typedef enum sq__act {
    SQ__ACT_SILU, /* SwiGLU: x / (1 + e^-x) */
    SQ__ACT_GELU  /* GeGLU: ggml's tanh GELU of the fp16-rounded input, rounded to fp16 */
} sq__act;

/* What an architecture has, may have or does, beyond the llama block
 * (attention norm, q/k/v (fused or not, optional biases), output
 * projection, FFN norm, gated FFN, final norm, output or tied embeddings). */
enum {
    SQ__ARCH_ROT_FULL = 1u << 0,    /* rope.dimension_count must equal the head size (llama, qwen2/3) */
    SQ__ARCH_ROPE_NEOX = 1u << 1,   /* RoPE rotates (i, i + n_rot/2), not adjacent pairs */
    SQ__ARCH_QK_NORM = 1u << 2,     /* attn_q_norm / attn_k_norm required: RMS norm of each head */
    SQ__ARCH_POST_NORMS = 1u << 3,  /* post_attention_norm / post_ffw_norm required (gemma3) */
    SQ__ARCH_WO_BIAS = 1u << 4,     /* optional attn_output.bias (llama) */
    SQ__ARCH_FFN_BIAS = 1u << 5,    /* optional ffn_{gate,up,down}.bias (llama) */
    SQ__ARCH_OUT_BIAS = 1u << 6,    /* optional output.bias (qwen2) */
    SQ__ARCH_FUSED_UP = 1u << 7,    /* gate and up fused in ffn_up, gate rows first (phi3) */
    SQ__ARCH_MOE = 1u << 8,         /* experts when expert_count > 0 (llama: Mixtral) */
    SQ__ARCH_MOE_ONLY = 1u << 9,    /* experts required, own expert_feed_forward_length (qwen3moe) */
    SQ__ARCH_ROPE_FREQS = 1u << 10, /* optional rope_freqs.weight (llama 3.1) or, with longrope, long/short */
    SQ__ARCH_ROPE_LONG = 1u << 11,  /* optional rope_factors_long/short.weight (phi3) */
    SQ__ARCH_EMBD_SCALE = 1u << 12, /* token embeddings scaled by sqrt(n_embd) (gemma3) */
    SQ__ARCH_Q_SCALE = 1u << 13,    /* Q scaled before attention, scores unscaled (gemma3, phi3) */
    SQ__ARCH_SWA = 1u << 14,        /* sliding-window layers, their RoPE base, final soft-cap (gemma3) */
};

typedef struct sq__arch {
    const char *name;             /* general.architecture */
    unsigned flags;               /* SQ__ARCH_* */
    sq__act act;                  /* the FFN's gate activation */
    const char *const *ignored;   /* NULL-terminated: tensors loaded by llama.cpp but unused for text, or NULL */
} sq__arch;

/* The architecture named name[0..len), or NULL. */
const sq__arch *sq__arch_find(const char *name, size_t len);

/* rope.scaling.type */
enum { SQ__ROPE_NONE, SQ__ROPE_LINEAR, SQ__ROPE_YARN, SQ__ROPE_LONGROPE, SQ__ROPE_SCALING_COUNT };

/* One RoPE configuration as ggml_rope_ext takes it. The angle of pair i at
 * position p is p * base^(-2i/n_rot) / ff[i], times freq_scale (YaRN mixes
 * in the unscaled angle by ext_factor over the corr_dims ramp); cos and sin
 * are multiplied by attn_factor (YaRN's magnitude scale, else 1). */
typedef struct sq__rope_cfg {
    int n_rot;            /* rotated dimensions of each head (even) */
    bool neox;            /* pairs (i, i + n_rot/2) (NeoX); else (2i, 2i+1) */
    float base;           /* rope.freq_base */
    float freq_scale;     /* 1 / rope.scaling.factor, or 1 */
    float ext_factor;     /* YaRN: 1, else 0 */
    float attn_factor;    /* magnitude of cos/sin */
    float corr_dims[2];   /* YaRN's ramp over the pair index */
    const float *ff;      /* [n_rot/2] frequency factors or NULL (chosen per context) */
} sq__rope_cfg;

/* Computation parameters read with the hyperparameters (arch.c). */
typedef struct sq__hp {
    const sq__arch *arch;
    int rope_scaling;     /* SQ__ROPE_* */
    sq__rope_cfg rope;        /* global layers */
    sq__rope_cfg rope_swa;    /* sliding-window layers (gemma3: rope.freq_base_swa, unscaled) */
    int64_t n_ctx_orig;   /* rope.scaling.original_context_length (LongRoPE: long factors beyond it) */
    float attn_scale;     /* scale of the scores, or of Q with SQ__ARCH_Q_SCALE */
    float embd_scale;     /* token embeddings' factor (1, or sqrtf(n_embd)) */
    float final_softcap;  /* logits = c * tanh(logits / c) when > 0 */
    int64_t swa_pattern;  /* layer l uses the window when l % p < p - 1 (0: every layer) */
    int64_t swa_arr;      /* index of the per-layer sliding_window_pattern array, or -1 */
} sq__hp;

/* Reads general.architecture and every hyperparameter llama.cpp reads for it
 * into m->hp and m->x (m->g set). */
sq_status sq__read_hparams(sq_model *m, sq_error *err);
/* Whether layer l attends through the sliding window. */
bool sq__layer_is_swa(const sq_model *m, int64_t l);

/* ---- the model (model.c) ---- */

/* One transformer block. Vectors are F32 (in the map, or owned copies); a
 * weight whose data is NULL is absent. Sizes: n_embd, n_ff, n_expert,
 * n_ff_exp (expert_feed_forward_length) and head_dim as in sq_hparams;
 * q_dim = n_head*head_dim, kv_dim = n_head_kv*head_dim. */
typedef struct sq__layer {
    /* attention */
    const float *attn_norm;       /* [n_embd] */
    sq_weight wq;                 /* [n_embd, n_head*head_dim] (data NULL when fused in wqkv) */
    sq_weight wk, wv;             /* [n_embd, n_head_kv*head_dim] each */
    sq_weight wqkv;               /* [n_embd, q_dim + 2*kv_dim], rows q, k, v (phi3), or absent */
    const float *bq, *bk, *bv;    /* [q_dim], [kv_dim], [kv_dim] biases, or NULL (qwen2); with wqkv, bq is
                                   * the fused [q_dim + 2*kv_dim] bias */
    const float *q_norm, *k_norm; /* [head_dim] RMS-norm weights applied to each head, or NULL */
    sq_weight wo;                 /* [n_head*head_dim, n_embd] */
    const float *bo;              /* [n_embd] or NULL */
    const float *attn_post_norm;  /* [n_embd] norm of the attention output before the residual, or NULL */
    bool swa;                     /* attends the last n_swa positions only */
    /* feed-forward */
    const float *ffn_norm;        /* [n_embd] */
    sq_weight gate;               /* [n_embd, n_ff] (absent with a fused up) */
    sq_weight up;                 /* [n_embd, n_ff], or [n_embd, 2*n_ff] with the gate's rows first (phi3) */
    sq_weight down;               /* [n_ff, n_embd] */
    const float *bgate, *bup, *bdown; /* [n_ff], [n_ff], [n_embd] or NULL */
    const float *ffn_post_norm;   /* [n_embd] or NULL */
    /* mixture of experts (instead of gate/up/down when n_expert > 0) */
    sq_weight router;             /* ffn_gate_inp: [n_embd, n_expert] */
    sq_weight gate_exps;          /* [n_embd, n_ff_exp, n_expert], expert-major rows (may be absent: Mixtral) */
    sq_weight up_exps;            /* [n_embd, n_ff_exp, n_expert] */
    sq_weight down_exps;          /* [n_ff_exp, n_embd, n_expert] */
    /* SmarterQuant products sharing their input and their permutation (q, k, v;
     * gate, up): the activations are gathered once through this permutation and
     * the views above then have perm = NULL (they take gathered input). */
    const int32_t *qkv_perm;      /* [n_embd] or NULL */
    const int32_t *gu_perm;       /* [n_embd] or NULL */
} sq__layer;

struct sq_model {
    sq_gguf *g;               /* owned: the mapped file */
    sq_hparams hp;
    sq__hp x;
    sq_weight tok_embd;       /* [n_embd, n_vocab]: row t is token t's embedding */
    sq_weight output;         /* [n_embd, n_vocab]; == tok_embd when tied */
    const float *output_b;    /* [n_vocab] or NULL */
    const float *output_norm; /* [n_embd] */
    const float *rope_freqs;  /* [n_rot/2] frequency factors or NULL */
    const float *rope_long, *rope_short; /* [n_rot/2] LongRoPE factors or NULL */
    sq__layer *layers;        /* [n_layer] */
    void **owned;             /* buffers the model allocated (norms converted to f32, permutations) */
    int n_owned, cap_owned;
    uint64_t weight_bytes, n_params;
    char type_desc[96];
};

/* Whether the model is the plain llama block: no biases, fused or extra
 * tensors, experts, windows or RoPE scaling beyond linear (what code that
 * knows only that block, such as the backward pass, can run). */
bool sq__model_is_plain_llama(const sq_model *m);

/* The RoPE frequency factors a context of n_ctx tokens uses (forward.c):
 * rope_freqs, or LongRoPE's long or short ones, or NULL. */
const float *sq__rope_factors(const sq_model *m, int64_t n_ctx);

/* The view of expert e's slice of a 3-D expert weight w. */
sq_weight sq__expert_view(const sq_weight *w, int64_t n_expert, int64_t e);

/* ---- the context (forward.c) ---- */

struct sq_context {
    const sq_model *m;
    int n_ctx, n_batch, n_threads;
    int n_ctx_pad; /* n_ctx rounded up to SQ_ATTN_KEYS: the row length of the transposed K cache */
    bool kv_f16;
    int n_past;
    sq_threadpool *tp;
    int64_t q_dim, kv_dim;
    int64_t ff_w;                       /* width of g: max(n_ff, n_ff_exp) */
    int64_t up_w;                       /* width of u: ff_w, or 2 n_ff with a fused up */
    sq__rope_cfg rope[2];                   /* global and sliding-window RoPE (factors chosen for n_ctx) */
    float *kt;                          /* [n_layer][n_head_kv][head_dim][n_ctx_pad] + SQ_ATTN_KEYS slack */
    float *vc;                          /* [n_layer][n_ctx][kv_dim] */
    float *x, *xn;                      /* [n_batch][n_embd] residual stream; normed input / sublayer output */
    float *xg;                          /* [n_batch][n_embd] gathered input of shared-permutation products */
    float *q, *k, *v, *att;             /* [n_batch][q_dim], [..][kv_dim], [..][kv_dim], [..][q_dim] */
    float *qkv;                         /* [n_batch][q_dim + 2 kv_dim] fused projection output, or NULL */
    float *g, *u;                       /* [n_batch][ff_w], [n_batch][up_w] */
    float *rope_cs;                     /* [2][n_batch][n_rot] the batch's RoPE cos/sin pairs */
    float *scores;                      /* [n_threads][SQ_ATTN_ROWS][n_ctx_pad] attention scores */
    /* experts (NULL without): router logits, choices, gathered rows, per-slot outputs */
    float *moe_logits;                  /* [n_batch][n_expert] */
    int32_t *moe_sel;                   /* [n_batch][n_expert_used] chosen experts, best first */
    float *moe_w;                       /* [n_batch][n_expert_used] their weights */
    int32_t *moe_rows;                  /* [n_batch * n_expert_used] (token, slot) pairs of one expert */
    float *moe_x, *moe_y;               /* [n_batch][n_embd] an expert's gathered input, its output */
    float *moe_out;                     /* [n_batch][n_expert_used][n_embd] weighted outputs per slot */
    void *work;
    size_t work_size;
    float *logits;
    int64_t logits_cap; /* rows */
    int n_logits;
    sq_matmul_hook hook; /* sq_context_set_matmul_hook: sees every weight product's input */
    void *hook_user;
    sq_expert_hook ehook; /* sq_context_set_expert_hook: sees every expert product's input */
    void *ehook_user;
};

/* Y = W X for nb rows (nb rows of W's columns in X; nb rows of W's rows out).
 * X_orig is X before a shared-permutation gather (X itself otherwise): the
 * hook sees it under the name blk.LAYER.WHAT.weight (WHAT.weight for layer < 0). */
sq_status sq__mm(sq_context *c, const sq_weight *w, const float *X, const float *X_orig, int64_t nb, float *Y,
                 const char *what, int64_t layer, sq_error *err);

/* The experts of one token from its router logits (x, X <= 512 floats,
 * turned into probabilities in place): sel[0..K) best first (the lower index
 * on a tie), w[0..K) their probabilities divided by their sum (the sum
 * clamped below at 6.103515625e-5, fp16's smallest normal, as llama.cpp). */
void sq__moe_route(float *x, int64_t X, int64_t K, int32_t *sel, float *w);
/* The feed-forward block of a layer with experts: c->xn (nb normed rows) in,
 * the experts' weighted sum out in c->xn (moe.c). */
sq_status sq__moe_ffn(sq_context *c, const sq__layer *L, int64_t layer, int nb, sq_error *err);

/* ---- elementwise operations (ggml's order of operations; ops.c) ---- */

/* y = x / sqrt(mean(x^2) + eps) * w  (sum of squares in double, as ggml). y may be x. */
void sq__rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);

/* The cos/sin pairs of one position for configuration r (n_rot floats:
 * cache[2i], cache[2i+1] for pair i), as ggml's rope cache. */
void sq__rope_cache_cfg(float *cache, const sq__rope_cfg *r, int pos);
/* Rotates the first n_rot entries of each of n_heads heads (head_dim apart)
 * with a cache of sq__rope_cache_cfg: adjacent pairs, or NeoX's halves. */
void sq__rope_apply_cfg(float *x, int n_heads, int head_dim, const sq__rope_cfg *r, const float *cache);

/* The normal-mode RoPE without YaRN in one call (theta_i = pos *
 * base^(-2i/n_rot) / ff[i] * scale; ff may be NULL) and its two steps. */
void sq__rope(float *x, int n_heads, int head_dim, int n_rot, int pos, float base, float scale, const float *ff);
void sq__rope_cache(float *cache, int n_rot, int pos, float base, float scale, const float *ff);
void sq__rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cache);

/* In place softmax over n values with the max subtracted; returns the sum. */
float sq__softmax(float *x, int n);

/* y[i] = silu(g[i]) * u[i]. */
void sq__swiglu(const float *g, const float *u, float *y, int64_t n);
/* y = silu(x) = x / (1 + e^-x), n floats (y may be x). */
void sq__silu(const float *x, float *y, int64_t n);
/* y[i] = gelu(g[i]) * u[i] as ggml's GeGLU on the CPU: the tanh GELU of g
 * rounded to fp16, its result rounded to fp16 (ggml's table), 0 below -10
 * and g itself above 10. */
void sq__geglu(const float *g, const float *u, float *y, int64_t n);
/* act(g) * u: sq__swiglu (16 lanes when the CPU has them) or sq__geglu. */
void sq__glu(sq__act act, const float *g, const float *u, float *y, int64_t n);
/* ggml's tanh-approximation GELU in float. */
float sq__gelu(float x);

/* x[i] = c * tanh(x[i] * (1/c)) (final logit soft-capping). */
void sq__softcap(float *x, int64_t n, float c);

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
 * to the caller. A sliding window is a block whose kt and v start at its
 * first key. */
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
