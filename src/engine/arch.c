/*
 * arch.c — the architectures the engine runs, as data, and their
 * hyperparameters read from GGUF metadata as llama.cpp reads them.
 *
 * Each architecture is a row of flags (which tensors it has or may have, how
 * it ropes, scales and activates; engine_internal.h) rather than a forward
 * pass of its own: the loader (model.c) and the forward pass (forward.c,
 * moe.c) read the flags and the tensors that are present. The keys, their
 * defaults and their checks follow llama.cpp 0.5.0 (llama-model.cpp's common
 * hyperparameters, then each architecture's own): a key llama.cpp requires is
 * required here, a key it reads with a default has that default, and a value
 * this engine cannot run is refused with one line naming the key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

/* Tensors llama.cpp loads for some architectures without using them when
 * generating text (a reranker's head, sentence-embedding projections). */
static const char *const qwen3_ignored[] = {"cls.output.weight", NULL};
static const char *const gemma3_ignored[] = {"dense_2.weight", "dense_3.weight", NULL};

static const sq__arch arch_table[] = {
    {"llama", SQ__ARCH_ROT_FULL | SQ__ARCH_WO_BIAS | SQ__ARCH_FFN_BIAS | SQ__ARCH_MOE | SQ__ARCH_ROPE_FREQS,
     SQ__ACT_SILU, NULL},
    {"qwen2", SQ__ARCH_ROT_FULL | SQ__ARCH_ROPE_NEOX | SQ__ARCH_OUT_BIAS, SQ__ACT_SILU, NULL},
    {"qwen3", SQ__ARCH_ROT_FULL | SQ__ARCH_ROPE_NEOX | SQ__ARCH_QK_NORM, SQ__ACT_SILU, qwen3_ignored},
    {"qwen3moe", SQ__ARCH_ROT_FULL | SQ__ARCH_ROPE_NEOX | SQ__ARCH_QK_NORM | SQ__ARCH_MOE_ONLY, SQ__ACT_SILU, NULL},
    {"gemma3",
     SQ__ARCH_ROPE_NEOX | SQ__ARCH_QK_NORM | SQ__ARCH_POST_NORMS | SQ__ARCH_EMBD_SCALE | SQ__ARCH_Q_SCALE |
         SQ__ARCH_SWA,
     SQ__ACT_GELU, gemma3_ignored},
    {"phi3", SQ__ARCH_ROPE_NEOX | SQ__ARCH_FUSED_UP | SQ__ARCH_Q_SCALE | SQ__ARCH_ROPE_LONG, SQ__ACT_SILU, NULL},
};

const sq__arch *sq__arch_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strlen(arch_table[i].name) == len && memcmp(arch_table[i].name, name, len) == 0) return &arch_table[i];
    return NULL;
}

/* "llama, qwen2, ..." for the unsupported-architecture message. */
static void arch_list(char *buf, size_t n)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0] && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", arch_table[i].name);
}

/* ---- reading keys ---- */

typedef struct keys {
    const sq_gguf *g;
    const char *arch;
    char buf[160];
} keys;

/* The full name "ARCH.suffix" (in k->buf). */
static const char *kname(keys *k, const char *suffix)
{
    snprintf(k->buf, sizeof k->buf, "%s.%s", k->arch, suffix);
    return k->buf;
}

/* An integer key that may also be an array of one value per layer (llama.cpp's
 * get_key_or_arr): the array must have n_layer entries, all equal (this engine
 * keeps one value per model). Absent: *out = def, or an error when def < 0.
 * Values must lie in [lo, 2^31]. */
static sq_status key_int(keys *k, const char *suffix, int64_t def, int64_t lo, int64_t n_layer, int64_t *out,
                         sq_error *err)
{
    const char *name = kname(k, suffix);
    const int64_t idx = sq_gguf_find_key(k->g, name);
    int64_t v = 0;
    sq_error e = {0};
    if (idx < 0) {
        if (def < 0) return sq_error_set(err, SQ_ENOTFOUND, "metadata key '%s' is missing", name);
        *out = def;
        return SQ_OK;
    }
    if (sq_gguf_kv_type(k->g, idx) == SQ_GGUF_ARRAY) {
        const uint64_t n = sq_gguf_arr_n(k->g, idx);
        if (n_layer <= 0 || (int64_t)n != n_layer)
            return sq_error_set(err, SQ_EFORMAT,
                                "metadata key '%s' is an array of %llu values, expected %lld (one per layer)", name,
                                (unsigned long long)n, (long long)n_layer);
        for (uint64_t j = 0; j < n; j++) {
            int64_t x;
            if (sq_gguf_arr_get_int(k->g, idx, j, &x, &e)) return sq_error_set(err, SQ_ETYPE, "%s", e.msg);
            if (j == 0) v = x;
            if (x != v)
                return sq_error_set(err, SQ_EUNSUPPORTED,
                                    "metadata key '%s' differs between layers (%lld and %lld): per-layer sizes are not "
                                    "supported",
                                    name, (long long)v, (long long)x);
        }
    } else if (sq_gguf_get_i64(k->g, name, &v, &e)) {
        return sq_error_set(err, SQ_ETYPE, "%s", e.msg);
    }
    if (v < lo || v > (int64_t)1 << 31)
        return sq_error_set(err, SQ_ERANGE, "metadata key '%s' = %lld is out of range", name, (long long)v);
    *out = v;
    return SQ_OK;
}

/* A float key with a default; *found says whether it was there. */
static sq_status key_float(keys *k, const char *suffix, float def, float *out, bool *found, sq_error *err)
{
    const char *name = kname(k, suffix);
    sq_error e = {0};
    sq_status st = sq_gguf_get_f32(k->g, name, out, &e);
    if (found) *found = st == SQ_OK;
    if (st == SQ_ENOTFOUND) {
        *out = def;
        return SQ_OK;
    }
    if (st) return sq_error_set(err, st, "%s", e.msg);
    if (!isfinite(*out)) return sq_error_set(err, SQ_ERANGE, "metadata key '%s' is not a finite number", name);
    return SQ_OK;
}

/* ---- RoPE ---- */

/* YaRN's correction range (ggml_rope_yarn_corr_dims): the dimensions between
 * which the interpolation ramps, from the original context and beta. */
static float yarn_corr_dim(int n_rot, int64_t n_ctx_orig, float beta, float base)
{
    return (float)n_rot * logf((float)n_ctx_orig / (beta * 2 * (float)M_PI)) / (2 * logf(base));
}

static void yarn_corr_dims(sq__rope_cfg *r, int64_t n_ctx_orig, float beta_fast, float beta_slow)
{
    const float start = floorf(yarn_corr_dim(r->n_rot, n_ctx_orig, beta_fast, r->base));
    const float end = ceilf(yarn_corr_dim(r->n_rot, n_ctx_orig, beta_slow, r->base));
    r->corr_dims[0] = start > 0 ? start : 0;
    r->corr_dims[1] = end < (float)(r->n_rot - 1) ? end : (float)(r->n_rot - 1);
}

/* rope.scaling.*: the type (none, linear, yarn, longrope), its factor, the
 * attention factor and the original context, into both RoPE configurations
 * as llama.cpp's context turns them into ggml_rope_ext's arguments. */
static sq_status read_rope_scaling(keys *k, sq_model *m, sq_error *err)
{
    sq_hparams *hp = &m->hp;
    sq__hp *x = &m->x;
    sq_gguf_str s = {0};
    sq_error e = {0};
    const char *name = kname(k, "rope.scaling.type");
    sq_status st = sq_gguf_get_str(k->g, name, &s, &e);
    if (st && st != SQ_ENOTFOUND) return sq_error_set(err, st, "%s", e.msg);
    if (st == SQ_ENOTFOUND) s = (sq_gguf_str){"linear", 6};
    static const char *const types[SQ__ROPE_SCALING_COUNT] = {"none", "linear", "yarn", "longrope"};
    int type = -1;
    for (int i = 0; i < SQ__ROPE_SCALING_COUNT; i++)
        if (s.len == strlen(types[i]) && memcmp(s.ptr, types[i], s.len) == 0) type = i;
    if (type < 0)
        return sq_error_set(err, SQ_EUNSUPPORTED,
                            "metadata key '%s' = '%.*s' is not a RoPE scaling type (none, linear, "
                            "yarn, longrope)",
                            name, (int)(s.len > 32 ? 32 : s.len), s.ptr);
    x->rope_scaling = type;
    float factor = 0.0f, attn_factor = 1.0f;
    bool found = false;
    if ((st = key_float(k, "rope.scaling.factor", 0.0f, &factor, &found, err))) return st;
    if (!found && (st = key_float(k, "rope.scale_linear", 0.0f, &factor, NULL, err))) return st;
    if ((st = key_float(k, "rope.scaling.attn_factor", 1.0f, &attn_factor, NULL, err))) return st;
    if ((st = key_int(k, "rope.scaling.original_context_length", hp->n_ctx_train, 1, 0, &x->n_ctx_orig, err)))
        return st;
    float freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    if (type == SQ__ROPE_NONE) freq_scale = 1.0f;
    if (!(freq_scale > 0.0f) || !isfinite(freq_scale))
        return sq_error_set(err, SQ_ERANGE, "metadata key '%s' = %g is not a usable RoPE scaling factor",
                            kname(k, "rope.scaling.factor"), (double)factor);
    /* llama_context: YaRN mixes in extrapolation and scales the magnitude,
     * cancelling the factor ggml's rope applies again itself */
    float ext = 0.0f, mscale = 1.0f;
    if (type == SQ__ROPE_YARN) {
        ext = 1.0f;
        const float f = 1.0f / freq_scale;
        mscale = f <= 1.0f ? 1.0f : 0.1f * 1.0f * logf(f) + 1.0f;
        mscale *= 1.0f / (1.0f + 0.1f * logf(f));
    }
    mscale *= attn_factor;
    x->rope.freq_scale = freq_scale;
    x->rope.ext_factor = ext;
    x->rope.attn_factor = mscale;
    yarn_corr_dims(&x->rope, x->n_ctx_orig, 32.0f, 1.0f);
    return SQ_OK;
}

/* Sizes of attention: heads, head size, rotated dimensions (and their
 * sliding-window variants, which must match here). */
static sq_status read_attention(keys *k, sq_model *m, sq_error *err)
{
    sq_hparams *hp = &m->hp;
    sq_status st;
    if ((st = key_int(k, "attention.head_count", -1, 1, hp->n_layer, &hp->n_head, err))) return st;
    if ((st = key_int(k, "attention.head_count_kv", hp->n_head, 1, hp->n_layer, &hp->n_head_kv, err))) return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return sq_error_set(err, SQ_EFORMAT, "%s %lld is not a multiple of %s %lld", "attention.head_count",
                            (long long)hp->n_head, "attention.head_count_kv", (long long)hp->n_head_kv);
    int64_t hd_v = 0, hd_swa = 0, hdv_swa = 0, rot_swa = 0;
    if ((st = key_int(k, "attention.key_length", hp->n_embd / hp->n_head, 1, 0, &hp->head_dim, err))) return st;
    if ((st = key_int(k, "attention.value_length", hp->n_embd / hp->n_head, 1, 0, &hd_v, err))) return st;
    if (hd_v != hp->head_dim)
        return sq_error_set(err, SQ_EUNSUPPORTED, "metadata: attention.value_length %lld differs from key_length %lld",
                            (long long)hd_v, (long long)hp->head_dim);
    if ((st = key_int(k, "rope.dimension_count", hp->head_dim, 0, 0, &hp->n_rot, err))) return st;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return sq_error_set(err, SQ_EFORMAT, "metadata key '%s' = %lld does not fit head size %lld",
                            kname(k, "rope.dimension_count"), (long long)hp->n_rot, (long long)hp->head_dim);
    if ((m->x.arch->flags & SQ__ARCH_ROT_FULL) && hp->n_rot != hp->head_dim)
        return sq_error_set(err, SQ_EFORMAT,
                            "invalid rope.dimension_count %lld: architecture '%s' rotates whole heads of %lld",
                            (long long)hp->n_rot, m->x.arch->name, (long long)hp->head_dim);
    if ((st = key_int(k, "attention.key_length_swa", hp->head_dim, 1, 0, &hd_swa, err))) return st;
    if ((st = key_int(k, "attention.value_length_swa", hp->head_dim, 1, 0, &hdv_swa, err))) return st;
    if ((st = key_int(k, "rope.dimension_count_swa", hp->n_rot, 0, 0, &rot_swa, err))) return st;
    if (hd_swa != hp->head_dim || hdv_swa != hp->head_dim || rot_swa != hp->n_rot)
        return sq_error_set(err, SQ_EUNSUPPORTED,
                            "metadata: sliding-window layers with their own head size or rotated dimensions "
                            "(%s.attention.key_length_swa / rope.dimension_count_swa) are not supported",
                            k->arch);
    return SQ_OK;
}

/* Experts: count, used per token, their feed-forward width, groups (refused). */
static sq_status read_experts(keys *k, sq_model *m, sq_error *err)
{
    sq_hparams *hp = &m->hp;
    const unsigned fl = m->x.arch->flags;
    int64_t groups = 0;
    sq_status st;
    if ((st = key_int(k, "expert_count", 0, 0, 0, &hp->n_expert, err))) return st;
    if ((st = key_int(k, "expert_used_count", 0, 0, hp->n_layer, &hp->n_expert_used, err))) return st;
    if ((st = key_int(k, "expert_group_count", 0, 0, 0, &groups, err))) return st;
    if (groups > 1)
        return sq_error_set(err, SQ_EUNSUPPORTED, "metadata key '%s' = %lld: grouped expert selection is not supported",
                            kname(k, "expert_group_count"), (long long)groups);
    if (hp->n_expert > 0 && !(fl & (SQ__ARCH_MOE | SQ__ARCH_MOE_ONLY)))
        hp->n_expert = hp->n_expert_used = 0; /* the architecture has no experts: llama.cpp builds none */
    if ((fl & SQ__ARCH_MOE_ONLY) && (hp->n_expert == 0 || hp->n_expert_used == 0))
        return sq_error_set(err, SQ_EFORMAT, "metadata: architecture '%s' needs %s and %s > 0", m->x.arch->name,
                            "expert_count", "expert_used_count");
    if (hp->n_expert_used > hp->n_expert || (hp->n_expert > 0 && hp->n_expert_used == 0) || hp->n_expert > 512)
        return sq_error_set(err, SQ_EFORMAT, "metadata: expert_used_count %lld does not fit expert_count %lld",
                            (long long)hp->n_expert_used, (long long)hp->n_expert);
    /* llama's experts (Mixtral) are feed_forward_length wide; qwen3moe's have their own key */
    hp->n_ff_exp = hp->n_expert > 0 ? hp->n_ff : 0;
    if (hp->n_expert > 0 && (fl & SQ__ARCH_MOE_ONLY)) {
        const int64_t def = hp->n_ff / hp->n_expert_used;
        if ((st = key_int(k, "expert_feed_forward_length", def, 0, hp->n_layer, &hp->n_ff_exp, err))) return st;
    }
    if (hp->n_expert > 0) {
        if (hp->n_ff_exp <= 0)
            return sq_error_set(err, SQ_ENOTFOUND, "metadata key '%s' is missing",
                                kname(k, "expert_feed_forward_length"));
    }
    return SQ_OK;
}

/* Gemma 3: the sliding window and which layers use it (every n_pattern-th
 * layer is global, or an explicit per-layer array), their RoPE base, the
 * final soft-cap and the query scale (1/sqrt(head) except the 27B shape,
 * 62 layers, which scales by 1/sqrt(n_embd / n_head), as llama.cpp does). */
static sq_status read_gemma3(keys *k, sq_model *m, sq_error *err)
{
    sq_hparams *hp = &m->hp;
    sq__hp *x = &m->x;
    sq_status st;
    if ((st = key_int(k, "attention.sliding_window", 0, 0, 0, &hp->n_swa, err))) return st;
    x->swa_pattern = 0;
    x->swa_arr = -1;
    if (hp->n_swa > 0) {
        const char *name = kname(k, "attention.sliding_window_pattern");
        const int64_t idx = sq_gguf_find_key(k->g, name);
        if (idx >= 0 && sq_gguf_kv_type(k->g, idx) == SQ_GGUF_ARRAY) {
            const sq_gguf_type t = sq_gguf_arr_type(k->g, idx);
            if ((int64_t)sq_gguf_arr_n(k->g, idx) != hp->n_layer ||
                (t != SQ_GGUF_BOOL && t != SQ_GGUF_INT8 && t != SQ_GGUF_UINT8))
                return sq_error_set(err, SQ_EFORMAT, "metadata key '%s' is not an array of %lld booleans", name,
                                    (long long)hp->n_layer);
            x->swa_arr = idx;
        } else if ((st = key_int(k, "attention.sliding_window_pattern", 6, 0, 0, &x->swa_pattern, err))) {
            return st;
        }
        float base_swa = 10000.0f;
        if ((st = key_float(k, "rope.freq_base_swa", 10000.0f, &base_swa, NULL, err))) return st;
        x->rope_swa = x->rope;
        x->rope_swa.base = base_swa;
        x->rope_swa.freq_scale = 1.0f;
        yarn_corr_dims(&x->rope_swa, x->n_ctx_orig, 32.0f, 1.0f);
    }
    if ((st = key_float(k, "final_logit_softcapping", 0.0f, &x->final_softcap, NULL, err))) return st;
    x->attn_scale =
        hp->n_layer == 62 ? 1.0f / sqrtf((float)(hp->n_embd / hp->n_head)) : 1.0f / sqrtf((float)hp->head_dim);
    return SQ_OK;
}

/* Whether layer l attends through the sliding window (gemma3's pattern). */
bool sq__layer_is_swa(const sq_model *m, int64_t l)
{
    if (m->hp.n_swa <= 0) return false;
    if (m->x.swa_arr >= 0) {
        const unsigned char *p = sq_gguf_arr_data(m->g, m->x.swa_arr);
        return p && p[l] != 0;
    }
    const int64_t n = m->x.swa_pattern;
    return n == 0 || l % n < n - 1;
}

/* Reads every hyperparameter of the model's architecture into m->hp and m->x. */
sq_status sq__read_hparams(sq_model *m, sq_error *err)
{
    sq_hparams *hp = &m->hp;
    sq__hp *x = &m->x;
    sq_gguf_str arch = {0};
    sq_error e = {0};
    sq_status st = sq_gguf_get_str(m->g, "general.architecture", &arch, &e);
    if (st == SQ_ENOTFOUND) return sq_error_set(err, st, "metadata key 'general.architecture' is missing");
    if (st) return sq_error_set(err, st, "%s", e.msg);
    x->arch = sq__arch_find(arch.ptr, (size_t)arch.len);
    if (!x->arch) {
        char list[128];
        arch_list(list, sizeof list);
        return sq_error_set(err, SQ_EUNSUPPORTED, "architecture '%.*s' is not supported (only %s)",
                            (int)(arch.len > 64 ? 64 : arch.len), arch.ptr, list);
    }
    snprintf(hp->arch, sizeof hp->arch, "%s", x->arch->name);
    keys k = {m->g, x->arch->name, {0}};
    const unsigned fl = x->arch->flags;
    if ((st = key_int(&k, "context_length", -1, 1, 0, &hp->n_ctx_train, err))) return st;
    if ((st = key_int(&k, "embedding_length", -1, 1, 0, &hp->n_embd, err))) return st;
    if ((st = key_int(&k, "block_count", -1, 1, 0, &hp->n_layer, err))) return st;
    if ((st = key_int(&k, "feed_forward_length", (fl & SQ__ARCH_MOE_ONLY) ? 0 : -1, 0, hp->n_layer, &hp->n_ff, err)))
        return st;
    if ((st = read_attention(&k, m, err))) return st;
    if ((st = read_experts(&k, m, err))) return st;
    bool found = false;
    if ((st = key_float(&k, "attention.layer_norm_rms_epsilon", 0.0f, &hp->rms_eps, &found, err))) return st;
    if (!found) return sq_error_set(err, SQ_ENOTFOUND, "metadata key '%s' is missing", k.buf);
    if ((st = key_float(&k, "rope.freq_base", 10000.0f, &hp->rope_base, NULL, err))) return st;
    x->rope =
        (sq__rope_cfg){(int)hp->n_rot, (fl & SQ__ARCH_ROPE_NEOX) != 0, hp->rope_base, 1.0f, 0.0f, 1.0f, {0, 0}, NULL};
    if ((st = read_rope_scaling(&k, m, err))) return st;
    hp->rope_scale = x->rope.freq_scale;
    x->rope_swa = x->rope;
    x->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    x->embd_scale = (fl & SQ__ARCH_EMBD_SCALE) ? sqrtf((float)hp->n_embd) : 1.0f;
    x->final_softcap = 0.0f;
    /* phi3 has a sliding_window key too, which llama.cpp reads and turns off */
    if ((fl & SQ__ARCH_SWA) && (st = read_gemma3(&k, m, err))) return st;
    return SQ_OK;
}
