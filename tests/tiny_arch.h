/*
 * tiny_arch.h — tiny random models of every architecture the engine runs,
 * written with our GGUF writer (all weights F32, optionally as SmarterQuant
 * all-F32 tensors with random column permutations), and a naive forward pass
 * in double straight from llama.cpp's definitions of each architecture
 * (llama, qwen2, qwen3, qwen3moe, gemma3, phi3 and the options they take:
 * biases, fused q/k/v and gate/up, q/k norms, post-norms, NeoX RoPE, YaRN,
 * frequency factors, partial rotary, sliding windows, soft-capping,
 * experts). It shares no code with the engine: the tests compare the two.
 * Header-only, included after harness.h.
 */
#ifndef SQ_TINY_ARCH_H
#define SQ_TINY_ARCH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/base.h"
#include "sq/gguf.h"
#include "sq/types.h"

/* What a tiny model has. Zero fields take the defaults noted. */
typedef struct ta_spec {
    const char *arch;       /* general.architecture */
    int E, L, H, KV, HD, F; /* embedding, layers, heads, KV heads, head size (0: E/H), feed-forward */
    int n_rot;              /* rope.dimension_count written when > 0 (else the head size) */
    int X, K, FE;           /* experts, used per token, expert width (0: none) */
    bool no_gate_exps;      /* experts without ffn_gate_exps (llama/Mixtral may) */
    bool qkv_bias, fused_qkv, fused_up, qk_norm, post_norms;
    bool tied, out_bias, wo_bias, ffn_bias;
    int swa, swa_pattern;           /* sliding window and its pattern key (0: not written) */
    bool swa_arr;                   /* the pattern as a per-layer bool array (layer l % 3 != 2 slides) */
    float base, base_swa;           /* rope.freq_base (0: 10000), rope.freq_base_swa (0: not written) */
    float softcap;                  /* final_logit_softcapping (0: not written) */
    const char *rope_type;          /* rope.scaling.type or NULL */
    float rope_factor, attn_factor; /* rope.scaling.factor, rope.scaling.attn_factor (0: not written) */
    int orig_ctx;                   /* rope.scaling.original_context_length (0: not written) */
    bool rope_freqs, rope_long;     /* rope_freqs.weight; rope_factors_long/short.weight */
    bool sq;                        /* 2-D and 3-D weights as SmarterQuant F32 tensors with permutations */
    const char *extra_tensor;       /* one more (unused) tensor of this name */
    const char *drop_tensor;        /* a tensor left out */
    bool bad_heads_arr;             /* head_count as a per-layer array with differing values */
} ta_spec;

#define TA_CTX 64
#define TA_MAX_T 256

/* The synthetic SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, some pieces. */
static const char *const ta_words[] = {"\xe2\x96\x81the",
                                       "\xe2\x96\x81"
                                       "a",
                                       "\xe2\x96\x81"
                                       "cat",
                                       "\xe2\x96\x81sat",
                                       "\xe2\x96\x81on",
                                       "\xe2\x96\x81mat",
                                       "at",
                                       "th",
                                       "e",
                                       "\xe2\x96\x81",
                                       "s",
                                       "o",
                                       "n",
                                       "t",
                                       "c",
                                       "m",
                                       "."};
#define TA_NWORDS ((int)(sizeof ta_words / sizeof ta_words[0]))
#define TA_VOCAB (3 + 256 + TA_NWORDS)

/* One tensor in its logical (unpermuted) form: ne[0] columns, ne[1] rows, ne[2] matrices. */
typedef struct ta_tensor {
    char name[64];
    int nd;
    int64_t ne[3];
    float *data;
} ta_tensor;

typedef struct ta_model {
    ta_spec s;
    int hd, q_dim, kv_dim, n_rot;
    ta_tensor t[TA_MAX_T];
    int n;
} ta_model;

static inline float ta_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* Adds a tensor of ne0 × ne1 × ne2 values offs + scale * U(-1, 1). */
static inline void ta_add(ta_model *m, uint64_t *seed, const char *name, int nd, int64_t ne0, int64_t ne1, int64_t ne2,
                          float scale, float offs)
{
    ta_tensor *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nd = nd;
    t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = ne2;
    const int64_t n = ne0 * ne1 * ne2;
    t->data = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) t->data[i] = offs + scale * ta_rand(seed);
}

#define TA_LNAME(buf, l, s) (snprintf(buf, sizeof buf, "blk.%d.%s", l, s), buf)

/* The tensors of a model of spec s (seeded). */
static inline void ta_build(ta_model *m, const ta_spec *s, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->s = *s;
    const int E = s->E, F = s->F;
    m->hd = s->HD ? s->HD : E / s->H;
    m->q_dim = s->H * m->hd;
    m->kv_dim = s->KV * m->hd;
    m->n_rot = s->n_rot ? s->n_rot : m->hd;
    const float we = 1.0f / sqrtf((float)E);
    ta_add(m, &seed, "token_embd.weight", 2, E, TA_VOCAB, 1, 1.0f, 0.0f);
    ta_add(m, &seed, "output_norm.weight", 1, E, 1, 1, 0.2f, 1.0f);
    if (!s->tied) ta_add(m, &seed, "output.weight", 2, E, TA_VOCAB, 1, 2.0f * we, 0.0f);
    if (s->out_bias) ta_add(m, &seed, "output.bias", 1, TA_VOCAB, 1, 1, 0.5f, 0.0f);
    if (s->rope_freqs) ta_add(m, &seed, "rope_freqs.weight", 1, m->n_rot / 2, 1, 1, 1.5f, 2.5f);
    if (s->rope_long) {
        ta_add(m, &seed, "rope_factors_long.weight", 1, m->n_rot / 2, 1, 1, 1.5f, 2.5f);
        ta_add(m, &seed, "rope_factors_short.weight", 1, m->n_rot / 2, 1, 1, 0.3f, 1.2f);
    }
    for (int l = 0; l < s->L; l++) {
        char nm[64];
        ta_add(m, &seed, TA_LNAME(nm, l, "attn_norm.weight"), 1, E, 1, 1, 0.2f, 1.0f);
        if (s->fused_qkv) {
            ta_add(m, &seed, TA_LNAME(nm, l, "attn_qkv.weight"), 2, E, m->q_dim + 2 * m->kv_dim, 1, 2.0f * we, 0.0f);
            if (s->qkv_bias)
                ta_add(m, &seed, TA_LNAME(nm, l, "attn_qkv.bias"), 1, m->q_dim + 2 * m->kv_dim, 1, 1, 0.5f, 0.0f);
        } else {
            ta_add(m, &seed, TA_LNAME(nm, l, "attn_q.weight"), 2, E, m->q_dim, 1, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "attn_k.weight"), 2, E, m->kv_dim, 1, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "attn_v.weight"), 2, E, m->kv_dim, 1, we, 0.0f);
            if (s->qkv_bias) {
                ta_add(m, &seed, TA_LNAME(nm, l, "attn_q.bias"), 1, m->q_dim, 1, 1, 0.5f, 0.0f);
                ta_add(m, &seed, TA_LNAME(nm, l, "attn_k.bias"), 1, m->kv_dim, 1, 1, 0.5f, 0.0f);
                ta_add(m, &seed, TA_LNAME(nm, l, "attn_v.bias"), 1, m->kv_dim, 1, 1, 0.5f, 0.0f);
            }
        }
        if (s->qk_norm) {
            ta_add(m, &seed, TA_LNAME(nm, l, "attn_q_norm.weight"), 1, m->hd, 1, 1, 0.3f, 1.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "attn_k_norm.weight"), 1, m->hd, 1, 1, 0.3f, 1.0f);
        }
        ta_add(m, &seed, TA_LNAME(nm, l, "attn_output.weight"), 2, m->q_dim, E, 1, 1.0f / sqrtf((float)m->q_dim), 0.0f);
        if (s->wo_bias) ta_add(m, &seed, TA_LNAME(nm, l, "attn_output.bias"), 1, E, 1, 1, 0.3f, 0.0f);
        if (s->post_norms) ta_add(m, &seed, TA_LNAME(nm, l, "post_attention_norm.weight"), 1, E, 1, 1, 0.2f, 1.0f);
        ta_add(m, &seed, TA_LNAME(nm, l, "ffn_norm.weight"), 1, E, 1, 1, 0.2f, 1.0f);
        if (s->X > 0) {
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_gate_inp.weight"), 2, E, s->X, 1, 3.0f * we, 0.0f);
            if (!s->no_gate_exps)
                ta_add(m, &seed, TA_LNAME(nm, l, "ffn_gate_exps.weight"), 3, E, s->FE, s->X, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_up_exps.weight"), 3, E, s->FE, s->X, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_down_exps.weight"), 3, s->FE, E, s->X, 1.0f / sqrtf((float)s->FE),
                   0.0f);
        } else if (s->fused_up) {
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_up.weight"), 2, E, 2 * F, 1, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_down.weight"), 2, F, E, 1, 1.0f / sqrtf((float)F), 0.0f);
        } else {
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_gate.weight"), 2, E, F, 1, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_up.weight"), 2, E, F, 1, 2.0f * we, 0.0f);
            ta_add(m, &seed, TA_LNAME(nm, l, "ffn_down.weight"), 2, F, E, 1, 1.0f / sqrtf((float)F), 0.0f);
            if (s->ffn_bias) {
                ta_add(m, &seed, TA_LNAME(nm, l, "ffn_gate.bias"), 1, F, 1, 1, 0.3f, 0.0f);
                ta_add(m, &seed, TA_LNAME(nm, l, "ffn_up.bias"), 1, F, 1, 1, 0.3f, 0.0f);
                ta_add(m, &seed, TA_LNAME(nm, l, "ffn_down.bias"), 1, E, 1, 1, 0.3f, 0.0f);
            }
        }
        if (s->post_norms) ta_add(m, &seed, TA_LNAME(nm, l, "post_ffw_norm.weight"), 1, E, 1, 1, 0.2f, 1.0f);
    }
    if (s->extra_tensor) ta_add(m, &seed, s->extra_tensor, 1, 8, 1, 1, 1.0f, 0.0f);
}

static inline void ta_free(ta_model *m)
{
    for (int i = 0; i < m->n; i++) free(m->t[i].data);
    m->n = 0;
}

/* The tensor called name, or NULL. */
static inline const float *ta_get(const ta_model *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return m->t[i].data;
    return NULL;
}

/* ---- writing ---- */

/* A random permutation of n (Fisher-Yates). */
static inline int32_t *ta_perm(int64_t n, uint64_t *seed)
{
    int32_t *p = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t j = 0; j < n; j++) p[j] = (int32_t)j;
    for (int64_t j = n - 1; j > 0; j--) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        const int64_t k = (int64_t)((*seed >> 33) % (uint64_t)(j + 1));
        const int32_t t = p[j];
        p[j] = p[k];
        p[k] = t;
    }
    return p;
}

/* The metadata: the architecture's keys and the vocabulary. */
static inline sq_status ta_write_kvs(sq_gguf_writer *w, const ta_model *m, sq_error *err)
{
    const ta_spec *s = &m->s;
    char k[128];
    sq_status st = SQ_OK;
#define KU(suffix, v)                                                                                                  \
    (snprintf(k, sizeof k, "%s.%s", s->arch, suffix), sq_gguf_writer_set_u32(w, k, (uint32_t)(v), err))
#define KF(suffix, v) (snprintf(k, sizeof k, "%s.%s", s->arch, suffix), sq_gguf_writer_set_f32(w, k, (float)(v), err))
    if ((st = sq_gguf_writer_set_str(w, "general.architecture", s->arch, err)) || (st = KU("context_length", TA_CTX)) ||
        (st = KU("embedding_length", s->E)) || (st = KU("block_count", s->L)) ||
        (st = KU("attention.head_count_kv", s->KV)) || (st = KF("attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (st = KF("rope.freq_base", s->base > 0 ? s->base : 10000.0f)))
        return st;
    if (s->bad_heads_arr) {
        int32_t heads[64];
        for (int l = 0; l < s->L; l++) heads[l] = l == 0 ? s->H : 2 * s->H;
        snprintf(k, sizeof k, "%s.attention.head_count", s->arch);
        if ((st = sq_gguf_writer_set_arr(w, k, SQ_GGUF_INT32, heads, (uint64_t)s->L, err))) return st;
    } else if ((st = KU("attention.head_count", s->H))) {
        return st;
    }
    if (s->F && (st = KU("feed_forward_length", s->F))) return st;
    if (s->HD && ((st = KU("attention.key_length", s->HD)) || (st = KU("attention.value_length", s->HD)))) return st;
    if (s->n_rot && (st = KU("rope.dimension_count", s->n_rot))) return st;
    if (s->X && ((st = KU("expert_count", s->X)) || (st = KU("expert_used_count", s->K)))) return st;
    if (s->X && !strcmp(s->arch, "qwen3moe") && (st = KU("expert_feed_forward_length", s->FE))) return st;
    if (s->swa && (st = KU("attention.sliding_window", s->swa))) return st;
    if (s->swa_pattern && (st = KU("attention.sliding_window_pattern", s->swa_pattern))) return st;
    if (s->swa_arr) {
        bool pat[64];
        for (int l = 0; l < s->L; l++) pat[l] = l % 3 != 2;
        snprintf(k, sizeof k, "%s.attention.sliding_window_pattern", s->arch);
        if ((st = sq_gguf_writer_set_arr(w, k, SQ_GGUF_BOOL, pat, (uint64_t)s->L, err))) return st;
    }
    if (s->base_swa > 0 && (st = KF("rope.freq_base_swa", s->base_swa))) return st;
    if (s->softcap > 0 && (st = KF("final_logit_softcapping", s->softcap))) return st;
    if (s->rope_type) {
        snprintf(k, sizeof k, "%s.rope.scaling.type", s->arch);
        if ((st = sq_gguf_writer_set_str(w, k, s->rope_type, err))) return st;
    }
    if (s->rope_factor > 0 && (st = KF("rope.scaling.factor", s->rope_factor))) return st;
    if (s->attn_factor > 0 && (st = KF("rope.scaling.attn_factor", s->attn_factor))) return st;
    if (s->orig_ctx > 0 && (st = KU("rope.scaling.original_context_length", s->orig_ctx))) return st;
#undef KU
#undef KF
    const char *toks[TA_VOCAB];
    float scores[TA_VOCAB];
    int32_t types[TA_VOCAB];
    static char bytes[256][8];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = types[2] = 3;
    scores[0] = scores[1] = scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = bytes[b], types[3 + b] = 6, scores[3 + b] = 0;
    }
    for (int i = 0; i < TA_NWORDS; i++) toks[259 + i] = ta_words[i], types[259 + i] = 1, scores[259 + i] = -(float)i;
    if ((st = sq_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err)) ||
        (st = sq_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, TA_VOCAB, err)) ||
        (st = sq_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, scores, TA_VOCAB, err)) ||
        (st = sq_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SQ_GGUF_INT32, types, TA_VOCAB, err)) ||
        (st = sq_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, err)) ||
        (st = sq_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, err)))
        return st;
    return SQ_OK;
}

/* Writes m to path; SmarterQuant weights (spec.sq) keep one permutation per
 * tensor for all its rows (and experts), rows stored permuted. */
static inline sq_status ta_write(const ta_model *m, const char *path, sq_error *err)
{
    sq_gguf_writer *w = NULL;
    sq_status st = sq_gguf_writer_open(path, &w, err);
    if (st) return st;
    int32_t *perms[TA_MAX_T] = {0};
    uint64_t pseed = 77;
    if ((st = ta_write_kvs(w, m, err))) goto out;
    for (int i = 0; i < m->n && !st; i++) {
        const ta_tensor *t = &m->t[i];
        if (m->s.drop_tensor && !strcmp(t->name, m->s.drop_tensor)) continue;
        if (m->s.sq && t->nd >= 2) {
            perms[i] = ta_perm(t->ne[0], &pseed);
            const sq_gguf_sqmeta meta = {{SQ_TYPE_F32, SQ_TYPE_F32, SQ_TYPE_F32, SQ_TYPE_F32}, perms[i], t->ne[0]};
            st = sq_gguf_writer_set_sqmeta(w, t->name, &meta, err);
        }
        if (!st)
            st = sq_gguf_writer_add_tensor(w, t->name, t->nd, t->ne, SQ_TYPE_F32,
                                           4 * (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2]), err);
    }
    for (int i = 0; i < m->n && !st; i++) {
        const ta_tensor *t = &m->t[i];
        if (m->s.drop_tensor && !strcmp(t->name, m->s.drop_tensor)) continue;
        const int64_t C = t->ne[0], R = t->ne[1] * t->ne[2];
        float *row = malloc(sizeof(float) * (size_t)C);
        for (int64_t r = 0; r < R && !st; r++) {
            for (int64_t j = 0; j < C; j++) row[j] = t->data[r * C + (perms[i] ? perms[i][j] : j)];
            st = sq_gguf_writer_write(w, row, sizeof(float) * (size_t)C, err);
        }
        free(row);
    }
    if (!st) {
        st = sq_gguf_writer_finish(w, err);
        w = NULL;
    }
out:
    sq_gguf_writer_abort(w);
    for (int i = 0; i < m->n; i++) free(perms[i]);
    return st;
}

/* ---- the reference forward pass (double) ---- */

static inline void ta_rms(const double *x, const float *w, double *y, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double s = 1 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) y[i] = x[i] * s * (w ? w[i] : 1.0);
}

/* y[rows] = W[rows][cols] x (+ b) */
static inline void ta_mv(const float *W, const float *b, int rows, int cols, const double *x, double *y)
{
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0;
        for (int c = 0; c < cols; c++) s += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static inline double ta_fp16(double x) { return sq_fp16_to_f32(sq_f32_to_fp16((float)x)); }

/* act(g) * u: SiLU, or ggml's GELU (tanh form) on fp16 inputs with fp16 results. */
static inline double ta_act(bool gelu, double g, double u)
{
    if (!gelu) return g / (1 + exp(-g)) * u;
    if (g <= -10) return 0;
    if (g >= 10) return g * u;
    const double x = ta_fp16(g);
    return ta_fp16(0.5 * x * (1 + tanh(0.79788456080286535587989211986876 * x * (1 + 0.044715 * x * x)))) * u;
}

/* Whether the architecture rotates NeoX halves, scales Q before attention, is Gemma. */
static inline bool ta_is(const ta_model *m, const char *a) { return !strcmp(m->s.arch, a); }

/* RoPE of one head at position pos (the definition: angle p * base^(-2i/n_rot),
 * divided by a frequency factor, scaled, YaRN's ramp and magnitude). */
static inline void ta_rope(const ta_model *m, double *v, int pos, bool swa_layer, int n_ctx)
{
    const ta_spec *s = &m->s;
    const int n_rot = m->n_rot;
    const bool neox = !ta_is(m, "llama");
    double base = s->base > 0 ? s->base : 10000.0, fs = s->rope_factor > 0 ? 1.0 / s->rope_factor : 1.0;
    const bool yarn = s->rope_type && !strcmp(s->rope_type, "yarn");
    if (s->rope_type && !strcmp(s->rope_type, "none")) fs = 1;
    double mscale = s->attn_factor > 0 ? s->attn_factor : 1.0;
    if (yarn) mscale *= 1 + 0.1 * log(1 / fs);
    /* a sliding-window layer has its own base and no scaling; the magnitude stays */
    if (swa_layer)
        base = s->base_swa > 0 ? s->base_swa : 10000.0, fs = 1, mscale = s->attn_factor > 0 ? s->attn_factor : 1.0;
    const float *ff = ta_get(m, "rope_freqs.weight");
    if (!ff && s->rope_long)
        ff = ta_get(m, n_ctx > (s->orig_ctx ? s->orig_ctx : TA_CTX) ? "rope_factors_long.weight"
                                                                    : "rope_factors_short.weight");
    const int orig = s->orig_ctx ? s->orig_ctx : TA_CTX;
    const double lo = fmax(0, floor(n_rot * log(orig / (32 * 2 * M_PI)) / (2 * log(base))));
    const double hi = fmin(n_rot - 1, ceil(n_rot * log(orig / (1 * 2 * M_PI)) / (2 * log(base))));
    for (int i = 0; i < n_rot / 2; i++) {
        const double extrap = pos * pow(base, -2.0 * i / n_rot) / (ff ? ff[i] : 1.0);
        double th = fs * extrap;
        if (yarn && !swa_layer) {
            const double y = (i - lo) / fmax(0.001, hi - lo), ramp = 1 - fmin(1, fmax(0, y));
            th = th * (1 - ramp) + extrap * ramp;
        }
        double *a = neox ? v + i : v + 2 * i, *b = neox ? v + i + n_rot / 2 : v + 2 * i + 1;
        const double x0 = *a, x1 = *b, c = cos(th) * mscale, sn = sin(th) * mscale;
        *a = x0 * c - x1 * sn;
        *b = x0 * sn + x1 * c;
    }
}

/* Whether layer l of a gemma3 model slides. */
static inline bool ta_swa_layer(const ta_model *m, int l)
{
    if (!ta_is(m, "gemma3") || m->s.swa <= 0) return false;
    if (m->s.swa_arr) return l % 3 != 2;
    const int p = m->s.swa_pattern ? m->s.swa_pattern : 6;
    return l % p < p - 1;
}

/* One layer's attention for all n tokens: x (n × E) in, the sublayer output o (n × E). */
static inline void ta_attention(const ta_model *m, int l, int n, const double *xn, double *o, int n_ctx)
{
    const ta_spec *s = &m->s;
    const int E = s->E, hd = m->hd, qd = m->q_dim, kd = m->kv_dim;
    char nm[64];
    double *Q = calloc((size_t)n * qd, sizeof(double)), *K = calloc((size_t)n * kd, sizeof(double));
    double *V = calloc((size_t)n * kd, sizeof(double)), *A = calloc((size_t)n * qd, sizeof(double));
    double *qkv = calloc((size_t)(qd + 2 * kd), sizeof(double)), *sc = calloc((size_t)n, sizeof(double));
    const bool swa = ta_swa_layer(m, l), gemma = ta_is(m, "gemma3"), qscale = gemma || ta_is(m, "phi3");
    for (int i = 0; i < n; i++) {
        if (s->fused_qkv) {
            ta_mv(ta_get(m, TA_LNAME(nm, l, "attn_qkv.weight")), ta_get(m, TA_LNAME(nm, l, "attn_qkv.bias")),
                  qd + 2 * kd, E, xn + i * E, qkv);
            memcpy(Q + i * qd, qkv, sizeof(double) * qd);
            memcpy(K + i * kd, qkv + qd, sizeof(double) * kd);
            memcpy(V + i * kd, qkv + qd + kd, sizeof(double) * kd);
        } else {
            ta_mv(ta_get(m, TA_LNAME(nm, l, "attn_q.weight")), ta_get(m, TA_LNAME(nm, l, "attn_q.bias")), qd, E,
                  xn + i * E, Q + i * qd);
            ta_mv(ta_get(m, TA_LNAME(nm, l, "attn_k.weight")), ta_get(m, TA_LNAME(nm, l, "attn_k.bias")), kd, E,
                  xn + i * E, K + i * kd);
            ta_mv(ta_get(m, TA_LNAME(nm, l, "attn_v.weight")), ta_get(m, TA_LNAME(nm, l, "attn_v.bias")), kd, E,
                  xn + i * E, V + i * kd);
        }
        for (int h = 0; h < s->H; h++) {
            double *q = Q + i * qd + h * hd;
            if (s->qk_norm) ta_rms(q, ta_get(m, TA_LNAME(nm, l, "attn_q_norm.weight")), q, hd);
            ta_rope(m, q, i, swa, n_ctx);
            if (qscale)
                for (int d = 0; d < hd; d++) q[d] *= 1 / sqrt((double)(gemma && s->L == 62 ? E / s->H : hd));
        }
        for (int h = 0; h < s->KV; h++) {
            double *k = K + i * kd + h * hd;
            if (s->qk_norm) ta_rms(k, ta_get(m, TA_LNAME(nm, l, "attn_k_norm.weight")), k, hd);
            ta_rope(m, k, i, swa, n_ctx);
        }
    }
    for (int i = 0; i < n; i++)
        for (int h = 0; h < s->H; h++) {
            const int kv = h / (s->H / s->KV), j0 = swa && i + 1 > s->swa ? i + 1 - s->swa : 0;
            double mx = -1e300, sum = 0;
            for (int j = j0; j <= i; j++) {
                double d = 0;
                for (int c = 0; c < hd; c++) d += Q[i * qd + h * hd + c] * K[j * kd + kv * hd + c];
                sc[j] = qscale ? d : d / sqrt((double)hd);
                mx = fmax(mx, sc[j]);
            }
            for (int j = j0; j <= i; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int c = 0; c < hd; c++) {
                double a = 0;
                for (int j = j0; j <= i; j++) a += sc[j] / sum * V[j * kd + kv * hd + c];
                A[i * qd + h * hd + c] = a;
            }
        }
    for (int i = 0; i < n; i++) {
        ta_mv(ta_get(m, TA_LNAME(nm, l, "attn_output.weight")), ta_get(m, TA_LNAME(nm, l, "attn_output.bias")), E, qd,
              A + i * qd, o + i * E);
        if (s->post_norms) ta_rms(o + i * E, ta_get(m, TA_LNAME(nm, l, "post_attention_norm.weight")), o + i * E, E);
    }
    free(Q), free(K), free(V), free(A), free(qkv), free(sc);
}

/* The experts of one token: softmax of the router, the K best, weights normalised, weighted sum. */
static inline void ta_moe(const ta_model *m, int l, const double *xn, double *o)
{
    const ta_spec *s = &m->s;
    const int E = s->E, X = s->X, FE = s->FE;
    char nm[64];
    double p[64], g[512], u[512], y[512], mx = -1e300, sum = 0;
    ta_mv(ta_get(m, TA_LNAME(nm, l, "ffn_gate_inp.weight")), NULL, X, E, xn, p);
    for (int e = 0; e < X; e++) mx = fmax(mx, p[e]);
    for (int e = 0; e < X; e++) sum += (p[e] = exp(p[e] - mx));
    for (int e = 0; e < X; e++) p[e] /= sum;
    int sel[16];
    bool taken[64] = {0};
    double wsum = 0;
    for (int k = 0; k < s->K; k++) {
        int b = -1;
        for (int e = 0; e < X; e++)
            if (!taken[e] && (b < 0 || p[e] > p[b])) b = e;
        taken[b] = true, sel[k] = b, wsum += p[b];
    }
    memset(o, 0, sizeof(double) * E);
    const float *ge = ta_get(m, TA_LNAME(nm, l, "ffn_gate_exps.weight"));
    const float *ue = ta_get(m, TA_LNAME(nm, l, "ffn_up_exps.weight"));
    const float *de = ta_get(m, TA_LNAME(nm, l, "ffn_down_exps.weight"));
    for (int k = 0; k < s->K; k++) {
        const int e = sel[k];
        ta_mv(ue + (size_t)e * FE * E, NULL, FE, E, xn, u);
        if (ge) {
            ta_mv(ge + (size_t)e * FE * E, NULL, FE, E, xn, g);
            for (int f = 0; f < FE; f++) g[f] = ta_act(ta_is(m, "gemma3"), g[f], u[f]);
        } else {
            for (int f = 0; f < FE; f++) g[f] = u[f] / (1 + exp(-u[f]));
        }
        ta_mv(de + (size_t)e * E * FE, NULL, E, FE, g, y);
        for (int d = 0; d < E; d++) o[d] += y[d] * (p[e] / wsum);
    }
}

/* One token's dense FFN: o = down(act(gate xn) * up xn) with biases, post-norm. */
static inline void ta_ffn(const ta_model *m, int l, const double *xn, double *o)
{
    const ta_spec *s = &m->s;
    const int E = s->E, F = s->F;
    char nm[64];
    double *g = calloc((size_t)2 * F, sizeof(double)), *u = calloc((size_t)F, sizeof(double));
    if (s->fused_up) {
        ta_mv(ta_get(m, TA_LNAME(nm, l, "ffn_up.weight")), NULL, 2 * F, E, xn, g);
        memcpy(u, g + F, sizeof(double) * F);
    } else {
        ta_mv(ta_get(m, TA_LNAME(nm, l, "ffn_gate.weight")), ta_get(m, TA_LNAME(nm, l, "ffn_gate.bias")), F, E, xn, g);
        ta_mv(ta_get(m, TA_LNAME(nm, l, "ffn_up.weight")), ta_get(m, TA_LNAME(nm, l, "ffn_up.bias")), F, E, xn, u);
    }
    for (int f = 0; f < F; f++) g[f] = ta_act(ta_is(m, "gemma3"), g[f], u[f]);
    ta_mv(ta_get(m, TA_LNAME(nm, l, "ffn_down.weight")), ta_get(m, TA_LNAME(nm, l, "ffn_down.bias")), E, F, g, o);
    free(g), free(u);
}

/* Logits (n × TA_VOCAB) of tokens at positions 0..n-1 in a context of n_ctx. */
static inline void ta_reference(const ta_model *m, const int32_t *tok, int n, int n_ctx, double *logits)
{
    const ta_spec *s = &m->s;
    const int E = s->E;
    char nm[64];
    double *x = calloc((size_t)n * E, sizeof(double)), *xn = calloc((size_t)n * E, sizeof(double));
    double *o = calloc((size_t)n * E, sizeof(double));
    const double escale = ta_is(m, "gemma3") ? sqrt((double)E) : 1.0;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < E; d++) x[i * E + d] = ta_get(m, "token_embd.weight")[tok[i] * E + d] * escale;
    for (int l = 0; l < s->L; l++) {
        for (int i = 0; i < n; i++) ta_rms(x + i * E, ta_get(m, TA_LNAME(nm, l, "attn_norm.weight")), xn + i * E, E);
        ta_attention(m, l, n, xn, o, n_ctx);
        for (int i = 0; i < n * E; i++) x[i] += o[i];
        for (int i = 0; i < n; i++) {
            ta_rms(x + i * E, ta_get(m, TA_LNAME(nm, l, "ffn_norm.weight")), xn + i * E, E);
            if (s->X > 0)
                ta_moe(m, l, xn + i * E, o + i * E);
            else
                ta_ffn(m, l, xn + i * E, o + i * E);
            if (s->post_norms) ta_rms(o + i * E, ta_get(m, TA_LNAME(nm, l, "post_ffw_norm.weight")), o + i * E, E);
            for (int d = 0; d < E; d++) x[i * E + d] += o[i * E + d];
        }
    }
    for (int i = 0; i < n; i++) {
        ta_rms(x + i * E, ta_get(m, "output_norm.weight"), xn + i * E, E);
        ta_mv(ta_get(m, s->tied ? "token_embd.weight" : "output.weight"), ta_get(m, "output.bias"), TA_VOCAB, E,
              xn + i * E, logits + (size_t)i * TA_VOCAB);
        if (s->softcap > 0)
            for (int v = 0; v < TA_VOCAB; v++)
                logits[(size_t)i * TA_VOCAB + v] = s->softcap * tanh(logits[(size_t)i * TA_VOCAB + v] / s->softcap);
    }
    free(x), free(xn), free(o);
}

#endif /* SQ_TINY_ARCH_H */
