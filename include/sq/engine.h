/*
 * sq/engine.h — the CPU inference engine: models of the llama, qwen2,
 * qwen3, qwen3moe, gemma3 and phi3 architectures from GGUF (plain and
 * SmarterQuant tensors), a forward pass with a KV cache,
 * sampling, and llama.cpp-compatible perplexity / KL divergence.
 *
 * Ownership: an sq_model owns its GGUF reader (the mmap); weights are used in
 * place from the read-only map and never copied (only small norm vectors in a
 * non-F32 type are converted once). An sq_context holds everything that
 * changes while running: the KV cache, activation buffers, the thread pool,
 * and the logits of the last sq_eval(). One context is used by one thread at
 * a time; several contexts may share one model.
 */
#ifndef SQ_ENGINE_H
#define SQ_ENGINE_H

#include "sq/base.h"
#include "sq/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- model ---- */

/* Hyperparameters of a model, as read from GGUF metadata (ARCH is the
 * value of general.architecture: the keys are ARCH.context_length, ...). */
typedef struct sq_hparams {
    char arch[16];       /* general.architecture: llama, qwen2, qwen3, qwen3moe, gemma3 or phi3 */
    int64_t n_vocab;     /* rows of token_embd (also the token list's length when present) */
    int64_t n_ctx_train; /* ARCH.context_length */
    int64_t n_embd;      /* ARCH.embedding_length */
    int64_t n_layer;     /* ARCH.block_count */
    int64_t n_head;      /* ARCH.attention.head_count */
    int64_t n_head_kv;   /* ARCH.attention.head_count_kv (default n_head) */
    int64_t n_ff;        /* ARCH.feed_forward_length */
    int64_t head_dim;    /* ARCH.attention.key_length, default n_embd / n_head */
    int64_t n_rot;       /* ARCH.rope.dimension_count, default head_dim */
    int64_t n_expert;    /* ARCH.expert_count (0: no experts) */
    int64_t n_expert_used; /* ARCH.expert_used_count: experts per token */
    int64_t n_ff_exp;    /* an expert's feed-forward width (ARCH.expert_feed_forward_length) */
    int64_t n_swa;       /* ARCH.attention.sliding_window: positions a sliding-window layer sees (0: none) */
    float rms_eps;       /* ARCH.attention.layer_norm_rms_epsilon */
    float rope_base;     /* ARCH.rope.freq_base (default 10000) */
    float rope_scale;    /* 1 / ARCH.rope.scaling.factor (1 without scaling) */
    bool tied_output;    /* output.weight absent: the output projection is token_embd */
    int n_sq_tensors;    /* how many weights are SmarterQuant (mixed) tensors */
} sq_hparams;

typedef struct sq_model sq_model; /* opaque */

/* Opens a GGUF file (or the first shard of a split model,
 * NAME-00001-of-0000N.gguf: every shard is loaded, see sq_gguf_open_model)
 * and builds the model over it, its pages mapped in at once (sq_gguf_prefault:
 * a file in the page cache costs a fraction of a second per GB; one that is
 * not is read). Errors name the file and the key or tensor at
 * fault: an architecture this engine does not run, a missing key or tensor,
 * a key value it cannot run (e.g. per-layer head counts), a shape that does
 * not fit the hyperparameters, a tensor the architecture does not use, a
 * weight type this build cannot multiply, an invalid SmarterQuant
 * permutation. */
sq_status sq_model_load(const char *path, sq_model **out, sq_error *err);

/* Same over an open reader; the model takes ownership of g (also on failure). */
sq_status sq_model_from_gguf(sq_gguf *g, sq_model **out, sq_error *err);

/* Frees the model and closes its file; NULL is a no-op. */
void sq_model_free(sq_model *m);

const sq_hparams *sq_model_hparams(const sq_model *m);
/* The model's GGUF reader (for the tokenizer and for tools that inspect it). */
const sq_gguf *sq_model_gguf(const sq_model *m);
/* Total bytes of weight data (as stored) and number of parameters. */
uint64_t sq_model_weight_bytes(const sq_model *m);
uint64_t sq_model_n_params(const sq_model *m);
/* The model's file-type label (sq_file_type_label): llama.cpp's name, e.g.
 * "Q4_K - Medium", "(guessed) Q8_0", "Q4_K - Medium + SmarterQuant (4.98 bpw)". */
const char *sq_model_type_desc(const sq_model *m);

/* ---- substituting weights (src/engine/model_weights.c) ---- */

struct sq_weight; /* sq/sqtensor.h */

/* The view the forward pass uses for GGUF tensor `name` ("blk.0.attn_q.weight",
 * "token_embd.weight", "output.weight"), or NULL when name is not one of the
 * model's weights (also "output.weight" of a tied model). Copy it to restore
 * it later with sq_model_set_weight. */
const struct sq_weight *sq_model_weight(const sq_model *m, const char *name);

/* Makes the forward pass use *w (copied; w->data is borrowed: keep it alive
 * until the original view is set back or the model is freed) for tensor
 * `name`; for a tied model, token_embd.weight is also the output projection.
 * For calibration: evaluating the model with one weight quantized, without a
 * file. Not while a context of this model is evaluating. Create contexts
 * after the substitution when w needs a larger matmul work buffer than the
 * weight it replaces (sq_eval otherwise fails with a work-buffer error).
 * Errors: unknown name, another shape, a type this build cannot multiply, a
 * weight whose layer gathers its input through a shared permutation. */
sq_status sq_model_set_weight(sq_model *m, const char *name, const struct sq_weight *w, sq_error *err);

/* ---- context: KV cache + evaluation ---- */

typedef struct sq_context_params {
    int n_ctx;     /* KV cache length in tokens; 0: the model's training context */
    int n_batch;   /* most tokens per internal forward step; 0: 512 */
    int n_threads; /* 0: 1 */
    int kv_type;   /* SQ_TYPE_F32 or SQ_TYPE_F16 (values rounded to fp16 as llama.cpp's default cache); */
} sq_context_params;

/* Defaults: n_ctx 0, n_batch 512, n_threads 1, kv_type F16 (llama.cpp's default). */
sq_context_params sq_context_default_params(void);

typedef struct sq_context sq_context; /* opaque */

sq_status sq_context_create(const sq_model *m, const sq_context_params *p, sq_context **out, sq_error *err);
void sq_context_free(sq_context *c); /* NULL is a no-op */

int sq_context_n_ctx(const sq_context *c);
/* Tokens in the KV cache (the position of the next token evaluated). */
int sq_context_n_past(const sq_context *c);
const sq_model *sq_context_model(const sq_context *c);

/* An observer of every weight product: called with the weight's GGUF tensor
 * name ("blk.0.attn_q.weight", "output.weight", or "token_embd.weight" for a
 * tied output), and the product's INPUT activations X: n_rows rows (tokens)
 * of n_cols floats (the weight's columns, in the original column order even
 * for a permuted SmarterQuant tensor), row-major. X is borrowed for the call
 * only. The hook runs on the thread that called sq_eval, before the product.
 * Used by sq imatrix to sum squared activations per column. */
typedef void (*sq_matmul_hook)(void *user, const char *tensor_name, const float *X, int64_t n_rows, int64_t n_cols);

/* Sets (fn non-NULL) or removes (NULL) the context's hook; costs nothing when
 * none is set. Products of an expert's slice of a 3-D expert tensor go to the
 * expert hook instead. */
void sq_context_set_matmul_hook(sq_context *c, sq_matmul_hook fn, void *user);

/* An observer of the products of mixture-of-experts tensors
 * (blk.L.ffn_{gate,up,down}_exps.weight): called once per expert that
 * received rows, with the expert's index (0 .. n_expert-1) and the rows routed
 * to it (n_rows rows of n_cols floats; for ffn_down_exps, the expert's own
 * activations). Same rules as sq_matmul_hook. */
typedef void (*sq_expert_hook)(void *user, const char *tensor_name, int64_t expert, int64_t n_expert,
                               const float *X, int64_t n_rows, int64_t n_cols);
void sq_context_set_expert_hook(sq_context *c, sq_expert_hook fn, void *user);

/* Empties the KV cache. */
void sq_kv_clear(sq_context *c);
/* Keeps only the first n tokens of the KV cache (n <= n_past). */
void sq_kv_truncate(sq_context *c, int n);

/* Evaluates n tokens at positions n_past .. n_past+n-1 (batched: every token
 * of a batch goes through each matrix product at once) and appends them to
 * the KV cache. Logits are computed for the last n_logits tokens (0..n) and
 * returned by sq_get_logits(). Fails (context unchanged beyond the cache
 * positions it already wrote) on a token id out of range or a full cache. */
sq_status sq_eval(sq_context *c, const int32_t *tokens, int n, int n_logits, sq_error *err);

/* Logits of the last sq_eval(): n_logits rows of n_vocab floats, valid until the next call. */
const float *sq_get_logits(const sq_context *c);

/* ---- sampling ---- */

typedef struct sq_sampler_params {
    float temp;    /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;     /* <= 0: no top-k */
    float top_p;   /* >= 1: no top-p */
    uint64_t seed; /* PRNG seed: the same seed gives the same choices */
} sq_sampler_params;

typedef struct sq_sampler sq_sampler; /* opaque */

/* NULL when out of memory. */
sq_sampler *sq_sampler_create(const sq_sampler_params *p);
void sq_sampler_free(sq_sampler *s);
/* Picks a token from n_vocab logits (not modified). */
int32_t sq_sampler_sample(sq_sampler *s, const float *logits, int n_vocab);

/* The sampler's PRNG on its own (xoshiro-style 64-bit generator, seeded by
 * splitmix64): a uniform float in [0, 1). */
float sq_rng_uniform(uint64_t state[2]);
void sq_rng_seed(uint64_t state[2], uint64_t seed);

/* ---- perplexity and KL divergence (llama.cpp's method) ---- */

/* Running sums over scored tokens. */
typedef struct sq_kld_sums {
    double sum_nll, sum_nll2;           /* this model */
    double sum_nll_base, sum_nll_base2; /* base model (from the stored log-probs) */
    double sum_nll_nll_base;
    double sum_kld, sum_kld2;
    double sum_p_diff, sum_p_diff2, sum_p_diff4;
    float max_p_diff;
    uint64_t n_same_top;
    uint64_t count;
} sq_kld_sums;

/* What a perplexity run reports after every chunk (and at the end). */
typedef struct sq_ppl_report {
    int chunk;        /* 1-based index of the chunk just finished */
    int n_chunks;     /* chunks in this run */
    uint64_t count;   /* tokens scored so far */
    double nll, nll2; /* sums of -log p and its square */
    double ppl;       /* exp(nll / count) */
    double seconds;   /* wall time of this chunk */
    bool kld;         /* the KL fields are valid */
    sq_kld_sums k;
} sq_ppl_report;

typedef struct sq_ppl_params {
    int n_ctx;    /* chunk length (tokens); default 512 */
    int n_chunks; /* <= 0: as many as the text holds */
    /* Write the base log-probabilities (llama.cpp's --kl-divergence-base file
     * format, see docs/engine.md) to this path: temp file + rename. */
    const char *kld_base_out;
    /* Compare against this base file instead (tokens come from the file). */
    const char *kld_base_in;
    void (*on_chunk)(void *ud, const sq_ppl_report *r);
    void *ud;
} sq_ppl_params;

typedef struct sq_ppl_result {
    int n_chunks;
    uint64_t count;
    double ppl, ppl_err; /* final estimate and llama.cpp's error */
    bool kld;
    sq_kld_sums k;
    float *kld_values;    /* count per-token KL values (owned; sq_ppl_result_free) */
    float *p_diff_values; /* count per-token p - p_base */
} sq_ppl_result;

/* (The batch size is the context's n_batch: a chunk is one sq_eval call.)
 * Runs perplexity over tokens (the whole text tokenized once, BOS at the start
 * when the vocabulary adds one): chunk i is tokens[i*n_ctx .. (i+1)*n_ctx) with
 * its first token replaced by bos (bos < 0: not replaced), the KV cache is
 * cleared per chunk, the second half of each chunk is scored. With
 * kld_base_in, tokens/n_tokens are ignored (NULL allowed). */
sq_status sq_perplexity(sq_context *c, const int32_t *tokens, size_t n_tokens, int32_t bos,
                        const sq_ppl_params *p, sq_ppl_result *out, sq_error *err);
void sq_ppl_result_free(sq_ppl_result *r);
/* How many chunks sq_perplexity scores for a text of n_tokens (without a base
 * file to compare with): n_tokens / n_ctx, at most n_chunks when > 0; -1 with
 * the message in err when the text is shorter than two chunks (llama.cpp's rule). */
int sq_perplexity_n_chunks(size_t n_tokens, int n_ctx, int n_chunks, sq_error *err);

/* Mean and its standard error as llama.cpp's KL report computes them. */
void sq_mean_and_uncertainty(double sum, double sum2, uint64_t count, double *mean, double *unc);

/* -log softmax(logits)[tok], llama.cpp's way (max subtracted, double sum of expf). */
double sq_nll_of(const float *logits, int n_vocab, int32_t tok);

#ifdef __cplusplus
}
#endif
#endif /* SQ_ENGINE_H */
