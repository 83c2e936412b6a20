/*
 * make_model.c — random-weight GGUF models of the engine's architectures at
 * real shapes, for speed and memory benchmarks (no download, no Python).
 *
 *   make_model ARCH OUT.gguf [--shape NAME] [--type T] [--seed N] [--vocab V.gguf | --n-vocab N] ...
 *
 * ARCH: llama qwen2 qwen3 qwen3moe gemma3 phi3. The metadata keys and tensor
 * names are those llama.cpp reads (the same as ../shared/tools/make_arch_model.py
 * writes), so llama.cpp and sq load the same files. --type f16 / bf16 / f32
 * stores the matrices as floats; any llama-quantize file type (Q4_K_M,
 * Q8_0, ...) quantizes every tensor as llama-quantize would from the F16
 * model (sq's ftype rules), without the float model ever existing — a
 * 30B-A3B MoE in F16 would be 61 GB.
 *
 * Streaming: tensors are made and written one batch of rows at a time (a few
 * MiB), so memory stays small whatever the model's size. Every row's values
 * come from a generator seeded by (seed, tensor, row): the file depends on the
 * seed only, not on the thread count or the batch size. Weights are Gaussian,
 * scaled by gain/sqrt(columns) as in make_arch_model.py, so activations stay
 * in range; they have learned nothing (speed only).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/matmul.h"
#include "sq/quantize.h"

#define MAX_TENSORS 8192
#define MAX_THREADS 64
#define BATCH_FLOATS (4u << 20) /* values generated per batch (16 MiB of floats) */

/* One shape: the Python tool's set (generic, any architecture) and real
 * models' own (arch names the architecture it belongs to). */
typedef struct shape {
    const char *name, *arch, *what;
    int n_embd, n_layer, n_ff, n_head, n_kv, head_dim; /* head_dim 0: n_embd / n_head */
    int n_exp, n_used, n_ff_exp;
    int n_vocab;                                       /* synthetic vocabulary size (no --vocab) */
    bool tied, rope_freqs;
} shape;

static const shape SHAPES[] = {
    {"tiny", NULL, "tiny (make_arch_model.py)", 256, 4, 640, 4, 2, 0, 8, 2, 256, 32000, false, false},
    {"odd", NULL, "odd sizes (make_arch_model.py)", 320, 3, 864, 5, 1, 0, 6, 2, 192, 32000, false, false},
    {"arch", NULL, "the shared architecture set", 256, 4, 640, 4, 2, 0, 8, 2, 256, 32000, false, false},
    {"1b", NULL, "Llama-3.2-1B sizes", 2048, 16, 8192, 32, 8, 0, 0, 0, 0, 128256, false, false},
    {"3b", NULL, "Llama-3.2-3B sizes", 3072, 28, 8192, 24, 8, 0, 0, 0, 0, 128256, false, false},
    {"8b", NULL, "Llama-3.1-8B sizes", 4096, 32, 14336, 32, 8, 0, 0, 0, 0, 128256, false, false},
    {"moe30", NULL, "Qwen3-30B-A3B sizes", 2048, 48, 6144, 32, 4, 128, 128, 8, 768, 151936, false, false},
    {"llama3.2-1b", "llama", "Llama-3.2-1B (tied output)", 2048, 16, 8192, 32, 8, 0, 0, 0, 0, 128256, true,
     true},
    {"llama3.2-3b", "llama", "Llama-3.2-3B (tied output)", 3072, 28, 8192, 24, 8, 0, 0, 0, 0, 128256, true, true},
    {"llama3.1-8b", "llama", "Llama-3.1-8B", 4096, 32, 14336, 32, 8, 0, 0, 0, 0, 128256, false, true},
    {"qwen3-0.6b", "qwen3", "Qwen3-0.6B (tied output)", 1024, 28, 3072, 16, 8, 128, 0, 0, 0, 151936, true,
     false},
    {"qwen3-1.7b", "qwen3", "Qwen3-1.7B (tied output)", 2048, 28, 6144, 16, 8, 128, 0, 0, 0, 151936, true,
     false},
    {"qwen3-8b", "qwen3", "Qwen3-8B", 4096, 36, 12288, 32, 8, 128, 0, 0, 0, 151936, false, false},
    {"qwen3-30b-a3b", "qwen3moe", "Qwen3-30B-A3B", 2048, 48, 6144, 32, 4, 128, 128, 8, 768, 151936, false,
     false},
};
#define N_SHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static const char *const ARCHS[] = {"llama", "qwen2", "qwen3", "qwen3moe", "gemma3", "phi3"};

/* How a tensor's values are made. */
typedef enum kind { K_MAT, K_VEC, K_EMB, K_ROPE } kind;

/* One tensor of the model: name, shape, how to make it, and its stored type. */
typedef struct tspec {
    char name[64];
    int n_dims;
    int64_t ne[4];   /* ne[0] = columns; unused dims 1 */
    kind k;
    float a, b;      /* K_MAT/K_EMB: scale of N(0,1) (already / sqrt(cols)); K_VEC: mean, sd */
    int src_type;    /* the type it has in the float model (F16/F32/BF16) */
    int type;        /* the type written */
} tspec;

/* The model being made: options, hyperparameters, tensors. */
typedef struct model {
    const char *arch, *out, *vocab_path, *type_name;
    shape s;
    uint64_t seed;
    int n_threads, ctx;
    int wtype;                /* float type of the matrices in the float model */
    const sq_ftype_info *ft;  /* a llama-quantize file type, or NULL for a float model */
    bool pure;
    int etype;                /* --etype: token_embd's type, or -1 */
    int n_vocab;
    int head_dim;
    tspec *t;
    int n_t;
} model;

/* ---- random numbers: splitmix64 seeding xoshiro256**, Box-Muller ---- */

typedef struct rng {
    uint64_t s[4];
    float spare;
    bool has_spare;
} rng;

/* One splitmix64 step: a well-mixed 64-bit value from a counter. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* FNV-1a hash of a tensor name: a tensor's random stream depends on its
 * name, not on its place in the file (float and quantized files agree). */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

/* The generator of row `row` of the tensor whose name hashes to `key`, under `seed`. */
static void rng_init(rng *r, uint64_t seed, uint64_t key, uint64_t row)
{
    uint64_t x = seed;
    x = splitmix64(&x) ^ key;
    x = splitmix64(&x) ^ (row + 1) * 0xA0761D6478BD642Full;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = false;
}

static inline uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

/* xoshiro256**: the next 64 random bits. */
static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* A standard normal value (Box-Muller in float, two per pair of uniforms). */
static float rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    const uint64_t v = rng_next(r);
    const float u1 = ((float)(v >> 40) + 1.0f) * (1.0f / 16777216.0f); /* (0, 1] */
    const float u2 = (float)((v >> 16) & 0xFFFFFF) * (1.0f / 16777216.0f);
    const float rad = sqrtf(-2.0f * logf(u1)), th = 6.2831853f * u2;
    r->spare = rad * sinf(th);
    r->has_spare = true;
    return rad * cosf(th);
}

/* Row `row` of tensor ti as floats (cols values). */
static void make_row(const model *m, int ti, int64_t row, float *x)
{
    const tspec *t = &m->t[ti];
    const int64_t n = t->ne[0];
    rng r;
    rng_init(&r, m->seed, name_hash(t->name), (uint64_t)row);
    switch (t->k) {
    case K_MAT:
    case K_EMB:
        for (int64_t i = 0; i < n; i++) x[i] = t->a * rng_normal(&r);
        break;
    case K_VEC:
        for (int64_t i = 0; i < n; i++) x[i] = t->a + t->b * rng_normal(&r);
        break;
    case K_ROPE: /* Llama-3.1-like factors: 1 for high frequencies up to 8 for the lowest (geometric) */
        for (int64_t i = 0; i < n; i++) x[i] = n > 1 ? powf(8.0f, (float)i / (float)(n - 1)) : 1.0f;
        break;
    }
}

/* ---- the tensor list ---- */

/* Appends a tensor (ne given as cols, rows, mats). */
static int add(model *m, const char *name, int64_t c, int64_t r, int64_t x, kind k, float a, float b, int src)
{
    if (m->n_t == MAX_TENSORS) return -1;
    tspec *t = &m->t[m->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne[0] = c;
    t->ne[1] = r;
    t->ne[2] = x;
    t->ne[3] = 1;
    t->n_dims = x > 1 ? 3 : (r > 1 || k == K_MAT || k == K_EMB) ? 2 : 1;
    t->k = k;
    t->a = a;
    t->b = b;
    t->src_type = src;
    t->type = src;
    return 0;
}

/* A weight matrix rows x cols, N(0, 1) * gain / sqrt(cols). */
static int mat(model *m, const char *name, int64_t rows, int64_t cols, float gain)
{
    return add(m, name, cols, rows, 1, K_MAT, gain / sqrtf((float)cols), 0, m->wtype);
}

/* A vector of n floats, mean + sd * N(0, 1). */
static int vec(model *m, const char *name, int64_t n, float mean, float sd)
{
    return add(m, name, n, 1, 1, K_VEC, mean, sd, SQ_TYPE_F32);
}

static bool is(const model *m, const char *a) { return strcmp(m->arch, a) == 0; }

/* The attention tensors of layer p (prefix "blk.N."), as llama.cpp names them. */
static int layer_attn(model *m, const char *p, int E, int H, int KV, int D)
{
    char n[64];
    int rc = 0;
#define NM(s) (snprintf(n, sizeof n, "%s%s", p, s), n)
    rc |= vec(m, NM("attn_norm.weight"), E, 1.0f, 0.1f);
    if (is(m, "phi3")) {
        rc |= mat(m, NM("attn_qkv.weight"), (int64_t)D * (H + 2 * KV), E, 1.0f);
    } else {
        rc |= mat(m, NM("attn_q.weight"), (int64_t)D * H, E, 2.0f);
        rc |= mat(m, NM("attn_k.weight"), (int64_t)D * KV, E, 2.0f);
        rc |= mat(m, NM("attn_v.weight"), (int64_t)D * KV, E, 1.0f);
    }
    if (is(m, "qwen2")) {
        rc |= vec(m, NM("attn_q.bias"), (int64_t)D * H, 0.0f, 0.5f);
        rc |= vec(m, NM("attn_k.bias"), (int64_t)D * KV, 0.0f, 0.5f);
        rc |= vec(m, NM("attn_v.bias"), (int64_t)D * KV, 0.0f, 0.5f);
    }
    if (is(m, "qwen3") || is(m, "qwen3moe") || is(m, "gemma3")) {
        rc |= vec(m, NM("attn_q_norm.weight"), D, 1.0f, 0.1f);
        rc |= vec(m, NM("attn_k_norm.weight"), D, 1.0f, 0.1f);
    }
    rc |= mat(m, NM("attn_output.weight"), E, (int64_t)D * H, 1.0f);
    if (is(m, "gemma3")) {
        rc |= vec(m, NM("post_attention_norm.weight"), E, 1.0f, 0.1f);
        rc |= vec(m, NM("post_ffw_norm.weight"), E, 1.0f, 0.1f);
    }
    return rc;
#undef NM
}

/* The feed-forward tensors of layer p. */
static int layer_ffn(model *m, const char *p, int E, int F)
{
    char n[64];
    int rc = 0;
    const shape *s = &m->s;
#define NM(x) (snprintf(n, sizeof n, "%s%s", p, x), n)
    rc |= vec(m, NM("ffn_norm.weight"), E, 1.0f, 0.1f);
    if (is(m, "qwen3moe")) {
        const int X = s->n_exp, FE = s->n_ff_exp;
        rc |= add(m, NM("ffn_gate_inp.weight"), E, X, 1, K_MAT, 3.0f / sqrtf((float)E), 0, SQ_TYPE_F32);
        rc |= add(m, NM("ffn_gate_exps.weight"), E, FE, X, K_MAT, 1.0f / sqrtf((float)E), 0, m->wtype);
        rc |= add(m, NM("ffn_up_exps.weight"), E, FE, X, K_MAT, 1.0f / sqrtf((float)E), 0, m->wtype);
        rc |= add(m, NM("ffn_down_exps.weight"), FE, E, X, K_MAT, 1.0f / sqrtf((float)FE), 0, m->wtype);
    } else if (is(m, "phi3")) {
        rc |= mat(m, NM("ffn_up.weight"), 2 * (int64_t)F, E, 1.0f);
        rc |= mat(m, NM("ffn_down.weight"), E, F, 1.0f);
    } else {
        rc |= mat(m, NM("ffn_gate.weight"), F, E, 1.0f);
        rc |= mat(m, NM("ffn_up.weight"), F, E, 1.0f);
        rc |= mat(m, NM("ffn_down.weight"), E, F, 1.0f);
    }
    return rc;
#undef NM
}

/* Every tensor of the model, in make_arch_model.py's order. */
static int build_tensors(model *m)
{
    const shape *s = &m->s;
    const int E = s->n_embd, H = s->n_head, KV = s->n_kv, D = m->head_dim;
    const bool big_emb = s->tied || is(m, "gemma3");
    const float esd = big_emb ? (is(m, "gemma3") ? 1.5f : 3.0f) / sqrtf((float)E) : 1.0f;
    const int etype = m->etype >= 0 && !m->ft ? m->etype : m->wtype;
    int rc = add(m, "token_embd.weight", E, m->n_vocab, 1, K_EMB, esd, 0, etype);
    rc |= vec(m, "output_norm.weight", E, 1.0f, 0.1f);
    if (s->rope_freqs) rc |= add(m, "rope_freqs.weight", D / 2, 1, 1, K_ROPE, 0, 0, SQ_TYPE_F32);
    if (!s->tied) rc |= mat(m, "output.weight", m->n_vocab, E, 3.0f);
    for (int i = 0; i < s->n_layer && rc == 0; i++) {
        char p[32];
        snprintf(p, sizeof p, "blk.%d.", i);
        rc |= layer_attn(m, p, E, H, KV, D);
        rc |= layer_ffn(m, p, E, s->n_ff);
    }
    return rc;
}

/* qsort comparator: llama-quantize's tensor order. */
static int cmp_tspec(const void *a, const void *b)
{
    return sq_tensor_order_cmp(((const tspec *)a)->name, ((const tspec *)b)->name);
}

/* For a quantized file type: sorts the tensors as llama-quantize writes them
 * and gives each the type llama-quantize would give it in the F16 model. */
static sq_status choose_types(model *m, sq_error *err)
{
    qsort(m->t, (size_t)m->n_t, sizeof *m->t, cmp_tspec);
    const char **names = malloc((size_t)m->n_t * sizeof *names);
    if (!names) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    for (int i = 0; i < m->n_t; i++) names[i] = m->t[i].name;
    const sq_qrules_model hp = {m->arch, m->s.n_layer, m->s.n_head, m->s.n_kv,
                                is(m, "qwen3moe") ? m->s.n_exp : 0};
    const sq_qrules_params rp = {m->ft->ftype, false, m->pure, false, false, -1, m->etype, NULL, 0};
    sq_qrules *rules = NULL;
    sq_status st = sq_qrules_create(&rp, &hp, names, m->n_t, &rules, err);
    free(names);
    for (int i = 0; i < m->n_t && st == SQ_OK; i++) {
        tspec *t = &m->t[i];
        sq_qchoice ch;
        st = sq_qrules_choose(rules, t->name, t->ne, t->src_type, &ch, err);
        if (st == SQ_OK && ch.requires_imatrix)
            st = sq_error_set(err, SQ_EINVAL, "tensor %s: type %s needs an importance matrix (random weights have none)",
                              t->name, sq_type_name(ch.type));
        if (st == SQ_OK && ch.quantizable && ch.type != t->src_type && !sq_blocks_can_quantize(ch.type))
            st = sq_error_set(err, SQ_EUNSUPPORTED, "tensor %s: quantizing to %s is not supported by this build",
                              t->name, sq_type_name(ch.type));
        if (st == SQ_OK && ch.quantizable) t->type = ch.type;
    }
    sq_qrules_free(rules);
    return st;
}

/* ---- metadata ---- */

/* Sets ARCH.suffix to a u32 / f32. */
static sq_status set_u32(sq_gguf_writer *w, const model *m, const char *suffix, uint32_t v, sq_error *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    return sq_gguf_writer_set_u32(w, key, v, err);
}

static sq_status set_f32(sq_gguf_writer *w, const model *m, const char *suffix, float v, sq_error *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    return sq_gguf_writer_set_f32(w, key, v, err);
}

/* The hyperparameter keys llama.cpp reads for the architecture. */
static sq_status write_hparams(sq_gguf_writer *w, const model *m, sq_error *err)
{
    const shape *s = &m->s;
    const bool q6 = is(m, "qwen2") || is(m, "qwen3") || is(m, "qwen3moe") || is(m, "gemma3");
    const float base = is(m, "llama") ? 500000.0f : is(m, "phi3") ? 10000.0f : 1000000.0f;
    sq_status st = set_u32(w, m, "context_length", (uint32_t)m->ctx, err);
    if (!st) st = set_u32(w, m, "embedding_length", (uint32_t)s->n_embd, err);
    if (!st) st = set_u32(w, m, "block_count", (uint32_t)s->n_layer, err);
    if (!st) st = set_u32(w, m, "attention.head_count", (uint32_t)s->n_head, err);
    if (!st) st = set_u32(w, m, "attention.head_count_kv", (uint32_t)s->n_kv, err);
    if (!st) st = set_u32(w, m, "attention.key_length", (uint32_t)m->head_dim, err);
    if (!st) st = set_u32(w, m, "attention.value_length", (uint32_t)m->head_dim, err);
    if (!st) st = set_f32(w, m, "attention.layer_norm_rms_epsilon", q6 ? 1e-6f : 1e-5f, err);
    if (!st) st = set_f32(w, m, "rope.freq_base", base, err);
    const uint32_t ftype = m->ft ? (uint32_t)m->ft->ftype : m->wtype == SQ_TYPE_F32 ? 0u
                         : m->wtype == SQ_TYPE_BF16 ? (uint32_t)SQ_FTYPE_BF16 : (uint32_t)SQ_FTYPE_F16;
    if (!st) st = sq_gguf_writer_set_u32(w, "general.file_type", ftype, err);
    if (!st && m->ft) st = sq_gguf_writer_set_u32(w, "general.quantization_version", 2, err);
    if (!st) st = set_u32(w, m, "feed_forward_length", (uint32_t)s->n_ff, err);
    if (!st && is(m, "qwen3moe")) {
        st = set_u32(w, m, "expert_count", (uint32_t)s->n_exp, err);
        if (!st) st = set_u32(w, m, "expert_used_count", (uint32_t)s->n_used, err);
        if (!st) st = set_u32(w, m, "expert_feed_forward_length", (uint32_t)s->n_ff_exp, err);
    }
    if (!st && is(m, "gemma3")) st = set_u32(w, m, "attention.sliding_window", 64, err);
    if (!st && is(m, "phi3")) st = set_u32(w, m, "rope.dimension_count", (uint32_t)m->head_dim, err);
    return st;
}

/* Copies the tokenizer.* keys of a vocabulary GGUF (llama.cpp's
 * models/ggml-vocab-*.gguf) and takes the vocabulary size from its tokens. */
static sq_status copy_vocab(sq_gguf_writer *w, model *m, sq_error *err)
{
    sq_gguf *v = NULL;
    sq_status st = sq_gguf_open(m->vocab_path, &v, err);
    if (st) return st;
    const int64_t ti = sq_gguf_find_key(v, "tokenizer.ggml.tokens");
    if (ti < 0 || sq_gguf_kv_type(v, ti) != SQ_GGUF_ARRAY || sq_gguf_arr_type(v, ti) != SQ_GGUF_STRING) {
        sq_gguf_close(v);
        return sq_error_set(err, SQ_EFORMAT, "%s: no tokenizer.ggml.tokens array of strings (not a vocabulary file)",
                            m->vocab_path);
    }
    m->n_vocab = (int)sq_gguf_arr_n(v, ti);
    for (int64_t i = 0; i < sq_gguf_n_kv(v) && st == SQ_OK; i++)
        if (strncmp(sq_gguf_key(v, i), "tokenizer.", 10) == 0) st = sq_gguf_writer_copy_kv(w, v, i, err);
    sq_gguf_close(v);
    return st;
}

/* Control tokens of the families' chat formats, after the byte tokens
 * (llama.cpp wants <|endoftext|> in a model named phi3). */
static const char *const SPECIAL[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>",      "<|end|>",
                                      "<|user|>",      "<|assistant|>", "<|system|>",     "<start_of_turn>",
                                      "<end_of_turn>"};
#define N_SPECIAL (int)(sizeof SPECIAL / sizeof SPECIAL[0])
#define MIN_VOCAB (259 + N_SPECIAL + 1)

/* A synthetic SentencePiece vocabulary of m->n_vocab tokens: <unk>, <s>,
 * </s>, the 256 byte tokens, the chat control tokens, then "▁tN" pieces
 * (llama.cpp and sq load it). */
static sq_status synth_vocab(sq_gguf_writer *w, const model *m, sq_error *err)
{
    const int n = m->n_vocab;
    char **tok = calloc((size_t)n, sizeof *tok);
    float *score = calloc((size_t)n, sizeof *score);
    int32_t *type = calloc((size_t)n, sizeof *type);
    sq_status st = tok && score && type ? SQ_OK : sq_error_set(err, SQ_ENOMEM, "out of memory (vocabulary)");
    for (int i = 0; i < n && st == SQ_OK; i++) {
        char buf[32];
        if (i < 3) snprintf(buf, sizeof buf, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else if (i < 259 + N_SPECIAL) snprintf(buf, sizeof buf, "%s", SPECIAL[i - 259]);
        else snprintf(buf, sizeof buf, "\xe2\x96\x81t%d", i);
        tok[i] = strdup(buf);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : i < 259 + N_SPECIAL ? 3 : 1;
        score[i] = i < 259 ? 0.0f : -(float)i;
        if (!tok[i]) st = sq_error_set(err, SQ_ENOMEM, "out of memory (vocabulary)");
    }
    if (!st) st = sq_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err);
    if (!st) st = sq_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default", err);
    if (!st) st = sq_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)n, err);
    if (!st) st = sq_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, score, (uint64_t)n, err);
    if (!st) st = sq_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SQ_GGUF_INT32, type, (uint64_t)n, err);
    if (!st) st = sq_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, err);
    if (!st) st = sq_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, err);
    if (!st) st = sq_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, err);
    if (!st) st = sq_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, err);
    for (int i = 0; tok && i < n; i++) free(tok[i]);
    free(tok);
    free(score);
    free(type);
    return st;
}

/* ---- tensor data ---- */

/* One batch of rows [r0, r1) of tensor ti, made and converted in parallel. */
typedef struct batch {
    const model *m;
    int ti;
    int64_t r0, r1;
    float *f;          /* (r1 - r0) x cols floats */
    uint8_t *out;      /* (r1 - r0) rows of the stored type */
    size_t row_bytes;
    sq_error err[MAX_THREADS]; /* per thread */
    sq_status st[MAX_THREADS];
} batch;

/* Thread ith's share of a batch: make its rows, then store them. */
static void batch_task(void *ctx, int ith, int nth)
{
    batch *b = ctx;
    const tspec *t = &b->m->t[b->ti];
    const int64_t n = b->r1 - b->r0, c = t->ne[0];
    const int64_t a = n * ith / nth, z = n * (ith + 1) / nth;
    float *f = b->f + a * c;
    uint8_t *o = b->out + (size_t)a * b->row_bytes;
    for (int64_t r = a; r < z; r++) make_row(b->m, b->ti, b->r0 + r, f + (r - a) * c);
    const int64_t k = (z - a) * c;
    /* a quantized tensor starts from the float model's values, rounded to its
     * type: the result is what llama-quantize makes of the F16 model */
    if (t->type != t->src_type && t->src_type == SQ_TYPE_F16)
        for (int64_t i = 0; i < k; i++) f[i] = sq_fp16_to_f32(sq_f32_to_fp16(f[i]));
    else if (t->type != t->src_type && t->src_type == SQ_TYPE_BF16)
        for (int64_t i = 0; i < k; i++) f[i] = sq_bf16_to_f32(sq_f32_to_bf16(f[i]));
    sq_status st = SQ_OK;
    sq_error e = {0};
    if (t->type == SQ_TYPE_F32) memcpy(o, f, (size_t)k * sizeof *f);
    else if (t->type == SQ_TYPE_F16)
        for (int64_t i = 0; i < k; i++) ((sq_fp16 *)(void *)o)[i] = sq_f32_to_fp16(f[i]);
    else if (t->type == SQ_TYPE_BF16)
        for (int64_t i = 0; i < k; i++) ((sq_bf16 *)(void *)o)[i] = sq_f32_to_bf16(f[i]);
    else if (z > a) st = sq_quantize_rows(t->type, f, o, z - a, c, NULL, &e);
    b->st[ith] = st;
    b->err[ith] = e;
}

/* Makes and writes tensor ti, batch by batch. */
static sq_status write_tensor(sq_gguf_writer *w, const model *m, sq_threadpool *tp, int ti, float *f, uint8_t *out,
                              sq_error *err)
{
    const tspec *t = &m->t[ti];
    const int64_t c = t->ne[0], rows = t->ne[1] * t->ne[2];
    const int64_t per = (int64_t)BATCH_FLOATS / c > 0 ? (int64_t)BATCH_FLOATS / c : 1;
    batch b = {.m = m, .ti = ti, .f = f, .out = out, .row_bytes = sq_row_size(t->type, c)};
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        b.r0 = r0;
        b.r1 = r0 + per < rows ? r0 + per : rows;
        sq_threadpool_run(tp, batch_task, &b);
        for (int i = 0; i < sq_threadpool_n_threads(tp); i++)
            if (b.st[i]) {
                *err = b.err[i];
                sq_error_prefix(err, "tensor %s", t->name);
                return b.st[i];
            }
        sq_status st = sq_gguf_writer_write(w, out, (size_t)(b.r1 - b.r0) * b.row_bytes, err);
        if (st) return st;
    }
    return SQ_OK;
}

/* ---- the whole file ---- */

/* Writes the model: metadata, tensor infos, then every tensor streamed. */
static sq_status write_model(model *m, sq_error *err)
{
    sq_gguf_writer *w = NULL;
    sq_status st = sq_gguf_writer_open(m->out, &w, err);
    if (st) return st;
    char name[160];
    snprintf(name, sizeof name, "random %s %s seed %llu", m->arch, m->s.name, (unsigned long long)m->seed);
    st = sq_gguf_writer_set_str(w, "general.architecture", m->arch, err);
    if (!st) st = sq_gguf_writer_set_str(w, "general.name", name, err);
    if (!st) st = write_hparams(w, m, err);
    if (!st) st = m->vocab_path ? copy_vocab(w, m, err) : synth_vocab(w, m, err);
    if (!st && build_tensors(m) != 0)
        st = sq_error_set(err, SQ_EINVAL, "more than %d tensors (too many layers?)", MAX_TENSORS);
    if (!st && m->ft) st = choose_types(m, err);
    for (int i = 0; i < m->n_t && !st; i++) {
        const tspec *t = &m->t[i];
        const size_t rb = sq_row_size(t->type, t->ne[0]);
        if (!rb) st = sq_error_set(err, SQ_EINVAL, "tensor %s: %lld columns do not fit type %s", t->name,
                                   (long long)t->ne[0], sq_type_name(t->type));
        else st = sq_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, rb * (uint64_t)(t->ne[1] * t->ne[2]),
                                           err);
    }
    sq_threadpool *tp = st ? NULL : sq_threadpool_create(m->n_threads);
    size_t cap = BATCH_FLOATS; /* a batch holds at most BATCH_FLOATS values, or one row */
    for (int i = 0; i < m->n_t; i++)
        if ((size_t)m->t[i].ne[0] > cap) cap = (size_t)m->t[i].ne[0];
    float *f = st ? NULL : malloc(cap * sizeof *f);
    uint8_t *out = st ? NULL : malloc(cap * sizeof *f);
    if (!st && (!tp || !f || !out)) st = sq_error_set(err, SQ_ENOMEM, "out of memory (buffers, thread pool)");
    const double t0 = sq_time_now();
    uint64_t done = 0;
    for (int i = 0; i < m->n_t && !st; i++) {
        st = write_tensor(w, m, tp, i, f, out, err);
        done += sq_row_size(m->t[i].type, m->t[i].ne[0]) * (uint64_t)(m->t[i].ne[1] * m->t[i].ne[2]);
        if (isatty(2))
            fprintf(stderr, "\r[%4d/%4d] %-32s %-7s %8.1f MiB %6.0f s", i + 1, m->n_t, m->t[i].name,
                    sq_type_name(m->t[i].type), (double)done / 1048576.0, sq_time_now() - t0);
    }
    if (isatty(2)) fputc('\n', stderr);
    sq_threadpool_free(tp);
    free(f);
    free(out);
    if (st) {
        sq_gguf_writer_abort(w);
        return st;
    }
    st = sq_gguf_writer_finish(w, err);
    if (!st)
        printf("%s: %s %s (%s), %s, vocab %d, %d tensors, %.1f MiB of tensor data, %.0f s\n", m->out, m->arch,
               m->s.name, m->s.what, m->type_name, m->n_vocab, m->n_t, (double)done / 1048576.0,
               sq_time_now() - t0);
    return st;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: make_model ARCH OUT.gguf [options]\n"
            "\n"
            "Writes a random-weight model of ARCH (llama qwen2 qwen3 qwen3moe gemma3 phi3) at a real\n"
            "shape, streamed to disk, with the keys and tensor names llama.cpp reads.\n"
            "\n"
            "  --shape NAME      model shape (default tiny), one of:\n");
    for (int i = 0; i < N_SHAPES; i++)
        fprintf(f, "                      %-14s %s%s%s\n", SHAPES[i].name, SHAPES[i].what,
                SHAPES[i].arch ? ", only " : "", SHAPES[i].arch ? SHAPES[i].arch : "");
    fprintf(f,
            "  --type T          f16 (default), bf16, f32, or a llama-quantize file type (Q4_K_M, Q8_0,\n"
            "                    Q6_K, ...): each tensor gets llama-quantize's type for it, quantized\n"
            "                    directly (no float model is written)\n"
            "  --pure            with a file type: every tensor its default type (llama-quantize --pure)\n"
            "  --etype T         token_embd's ggml type (e.g. q8_0, q4_0)\n"
            "  --seed N          random seed (default 1); the file depends on it alone\n"
            "  --vocab V.gguf    copy the tokenizer of a vocabulary GGUF (llama.cpp's ggml-vocab-*.gguf);\n"
            "                    default: a synthetic SentencePiece vocabulary of the shape's size\n"
            "  --n-vocab N       size of the synthetic vocabulary\n"
            "  --n-layer N       layer count instead of the shape's\n"
            "  --tied            no output.weight (the head reuses token_embd)\n"
            "  --untied          output.weight even where the shape ties it\n"
            "  --rope-freqs      a rope_freqs.weight tensor (Llama-3.1 long-context factors)\n"
            "  --ctx N           context_length (default 4096)\n"
            "  -t N              threads (default: all cores)\n");
}

/* Applies --shape and the per-architecture head sizes make_arch_model.py uses. */
static int apply_shape(model *m, const char *name)
{
    const shape *s = NULL;
    for (int i = 0; i < N_SHAPES; i++)
        if (strcmp(SHAPES[i].name, name) == 0) s = &SHAPES[i];
    if (!s) {
        fprintf(stderr, "make_model: unknown shape '%s' (see --help)\n", name);
        return -1;
    }
    if (s->arch && strcmp(s->arch, m->arch) != 0) {
        fprintf(stderr, "make_model: shape '%s' is a %s shape, not %s\n", name, s->arch, m->arch);
        return -1;
    }
    m->s = *s;
    const bool small = strcmp(name, "arch") == 0 || strcmp(name, "odd") == 0;
    if (small && (is(m, "qwen3") || is(m, "qwen3moe"))) m->s.head_dim = 128;
    if (small && is(m, "gemma3")) {
        m->s.head_dim = 128;
        m->s.n_layer = 7;
        m->s.n_kv = 1;
    }
    m->head_dim = m->s.head_dim ? m->s.head_dim : m->s.n_embd / m->s.n_head;
    if (is(m, "gemma3") && !m->s.head_dim) m->head_dim = m->s.n_embd >= 2048 ? 256 : (m->head_dim > 64 ? m->head_dim : 64);
    if (!is(m, "qwen3moe")) m->s.n_exp = m->s.n_used = m->s.n_ff_exp = 0;
    m->n_vocab = m->s.n_vocab;
    return 0;
}

/* The value after flag argv[*i], or NULL (with a message) when missing. */
static const char *arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "make_model: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* A positive integer argument, or -1 (with a message). */
static long posint(const char *flag, const char *v)
{
    char *end = NULL;
    const long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x <= 0 || x > 100000000) {
        if (v) fprintf(stderr, "make_model: %s takes a positive integer, not '%s'\n", flag, v);
        return -1;
    }
    return x;
}

/* --type: a float type for the matrices, or a llama-quantize file type. */
static int parse_type(model *m, const char *v)
{
    m->type_name = v;
    if (strcmp(v, "f16") == 0 || strcmp(v, "F16") == 0) m->wtype = SQ_TYPE_F16;
    else if (strcmp(v, "bf16") == 0 || strcmp(v, "BF16") == 0) m->wtype = SQ_TYPE_BF16;
    else if (strcmp(v, "f32") == 0 || strcmp(v, "F32") == 0) m->wtype = SQ_TYPE_F32;
    else if ((m->ft = sq_ftype_parse(v)) == NULL || m->ft->copy) {
        fprintf(stderr, "make_model: --type '%s' is neither f16/bf16/f32 nor a llama-quantize file type\n", v);
        return -1;
    }
    return 0;
}

static void on_signal(int sig)
{
    sq_gguf_writer_unlink_temps();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Parses the options after ARCH OUT; 0 on success, 1 for --help, -1 on error. */
static int parse_args(model *m, int argc, char **argv)
{
    const char *shape_name = "tiny";
    long n_vocab = 0, n_layer = 0;
    int tied = -1, rope = -1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return 1;
        else if (strcmp(a, "--tied") == 0) tied = 1;
        else if (strcmp(a, "--untied") == 0) tied = 0;
        else if (strcmp(a, "--rope-freqs") == 0) rope = 1;
        else if (strcmp(a, "--pure") == 0) m->pure = true;
        else if (strcmp(a, "--shape") == 0) { if (!(shape_name = arg(argc, argv, &i))) return -1; }
        else if (strcmp(a, "--vocab") == 0) { if (!(m->vocab_path = arg(argc, argv, &i))) return -1; }
        else if (strcmp(a, "--type") == 0) { if (!(v = arg(argc, argv, &i)) || parse_type(m, v)) return -1; }
        else if (strcmp(a, "--etype") == 0) {
            if (!(v = arg(argc, argv, &i))) return -1;
            m->etype = sq_type_from_name(v);
            if (m->etype < 0 || !sq_blocks_can_quantize(m->etype)) {
                fprintf(stderr, "make_model: --etype '%s' is not a type this build can write\n", v);
                return -1;
            }
        } else if (strcmp(a, "--seed") == 0) {
            if (!(v = arg(argc, argv, &i))) return -1;
            char *end = NULL;
            m->seed = strtoull(v, &end, 10);
            if (*end || !*v) { fprintf(stderr, "make_model: --seed takes a number, not '%s'\n", v); return -1; }
        } else if (strcmp(a, "--n-vocab") == 0) { if ((n_vocab = posint(a, arg(argc, argv, &i))) < 0) return -1; }
        else if (strcmp(a, "--n-layer") == 0) { if ((n_layer = posint(a, arg(argc, argv, &i))) < 0) return -1; }
        else if (strcmp(a, "--ctx") == 0) { if ((m->ctx = (int)posint(a, arg(argc, argv, &i))) < 0) return -1; }
        else if (strcmp(a, "-t") == 0) {
            long t = posint(a, arg(argc, argv, &i));
            if (t < 0 || t > MAX_THREADS) { if (t > 0) fprintf(stderr, "make_model: -t at most %d\n", MAX_THREADS); return -1; }
            m->n_threads = (int)t;
        } else {
            fprintf(stderr, "make_model: unknown option '%s' (see --help)\n", a);
            return -1;
        }
    }
    if (apply_shape(m, shape_name)) return -1;
    if (n_vocab) m->n_vocab = (int)n_vocab;
    if (n_layer) m->s.n_layer = (int)n_layer;
    if (tied >= 0) m->s.tied = tied;
    if (rope >= 0) m->s.rope_freqs = rope;
    if (n_vocab && n_vocab < MIN_VOCAB) {
        fprintf(stderr, "make_model: --n-vocab %ld is below %d (special and byte tokens)\n", n_vocab, MIN_VOCAB);
        return -1;
    }
    if (n_vocab && m->vocab_path) {
        fprintf(stderr, "make_model: --n-vocab and --vocab exclude each other\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    model m = {.arch = argv[1], .out = argv[2], .type_name = "f16", .seed = 1, .ctx = 4096,
               .wtype = SQ_TYPE_F16, .etype = -1};
    bool known = false;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) known |= strcmp(ARCHS[i], m.arch) == 0;
    if (!known) {
        fprintf(stderr, "make_model: unknown architecture '%s' (llama qwen2 qwen3 qwen3moe gemma3 phi3)\n", m.arch);
        return 2;
    }
    const long nc = sysconf(_SC_NPROCESSORS_ONLN);
    m.n_threads = nc > 0 ? (nc < MAX_THREADS ? (int)nc : MAX_THREADS) : 1;
    const int pr = parse_args(&m, argc, argv);
    if (pr) {
        if (pr > 0) usage(stdout);
        return pr > 0 ? 0 : 2;
    }
    m.t = calloc(MAX_TENSORS, sizeof *m.t);
    if (!m.t) {
        fprintf(stderr, "make_model: out of memory\n");
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    sq_error err = {0};
    const sq_status st = write_model(&m, &err);
    free(m.t);
    if (st) {
        fprintf(stderr, "make_model: %s\n", err.msg);
        return 1;
    }
    return 0;
}
