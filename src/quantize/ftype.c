/*
 * ftype.c — llama-quantize's file types and llama.cpp's per-tensor type
 * rules (src/llama-quant.cpp), re-expressed for this project.
 *
 * The rules are a function of the file type, the tensor's name (its
 * "category": attn_v, ffn_down, output ...), its shape, the model's
 * hyperparameters (layers, grouped-query ratio, experts) and running counters
 * (how many attn_v / ffn_down tensors came before), so the caller must present
 * tensors in llama.cpp's order (sq_tensor_order_cmp).
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sq/blocks.h"
#include "sq/quantize.h"

/* ------------------------------------------------------------------ */
/* file types                                                           */
/* ------------------------------------------------------------------ */

/* In llama-quantize's order; the first entry with a given number is the one a
 * number resolves to (F32 before COPY, Q4_K_M's alias after it). */
static const sq_ftype_info ftype_table[] = {
    {"Q1_0", SQ_FTYPE_Q1_0, SQ_TYPE_Q1_0, false, " 1.125 bpw quantization"},
    {"Q2_0", SQ_FTYPE_Q2_0, SQ_TYPE_Q2_0, false, " 2.25 bpw quantization (group 64)"},
    {"Q4_0", SQ_FTYPE_Q4_0, SQ_TYPE_Q4_0, false, " 4.34G, +0.4685 ppl @ Llama-3-8B"},
    {"Q4_1", SQ_FTYPE_Q4_1, SQ_TYPE_Q4_1, false, " 4.78G, +0.4511 ppl @ Llama-3-8B"},
    {"MXFP4_MOE", SQ_FTYPE_MXFP4_MOE, SQ_TYPE_MXFP4, false, " MXFP4 MoE"},
    {"Q5_0", SQ_FTYPE_Q5_0, SQ_TYPE_Q5_0, false, " 5.21G, +0.1316 ppl @ Llama-3-8B"},
    {"Q5_1", SQ_FTYPE_Q5_1, SQ_TYPE_Q5_1, false, " 5.65G, +0.1062 ppl @ Llama-3-8B"},
    {"IQ2_XXS", SQ_FTYPE_IQ2_XXS, SQ_TYPE_IQ2_XXS, false, " 2.06 bpw quantization"},
    {"IQ2_XS", SQ_FTYPE_IQ2_XS, SQ_TYPE_IQ2_XS, false, " 2.31 bpw quantization"},
    {"IQ2_S", SQ_FTYPE_IQ2_S, SQ_TYPE_IQ2_XS, false, " 2.5  bpw quantization"},
    {"IQ2_M", SQ_FTYPE_IQ2_M, SQ_TYPE_IQ2_S, false, " 2.7  bpw quantization"},
    {"IQ1_S", SQ_FTYPE_IQ1_S, SQ_TYPE_IQ1_S, false, " 1.56 bpw quantization"},
    {"IQ1_M", SQ_FTYPE_IQ1_M, SQ_TYPE_IQ1_M, false, " 1.75 bpw quantization"},
    {"TQ1_0", SQ_FTYPE_TQ1_0, SQ_TYPE_TQ1_0, false, " 1.69 bpw ternarization"},
    {"TQ2_0", SQ_FTYPE_TQ2_0, SQ_TYPE_TQ2_0, false, " 2.06 bpw ternarization"},
    {"Q2_K", SQ_FTYPE_Q2_K, SQ_TYPE_Q2_K, false, " 2.96G, +3.5199 ppl @ Llama-3-8B"},
    {"Q2_K_S", SQ_FTYPE_Q2_K_S, SQ_TYPE_Q2_K, false, " 2.96G, +3.1836 ppl @ Llama-3-8B"},
    {"IQ3_XXS", SQ_FTYPE_IQ3_XXS, SQ_TYPE_IQ3_XXS, false, " 3.06 bpw quantization"},
    {"IQ3_S", SQ_FTYPE_IQ3_S, SQ_TYPE_IQ3_S, false, " 3.44 bpw quantization"},
    {"IQ3_M", SQ_FTYPE_IQ3_M, SQ_TYPE_IQ3_S, false, " 3.66 bpw quantization mix"},
    {"Q3_K", SQ_FTYPE_Q3_K_M, SQ_TYPE_Q3_K, false, "alias for Q3_K_M"},
    {"IQ3_XS", SQ_FTYPE_IQ3_XS, SQ_TYPE_IQ3_S, false, " 3.3 bpw quantization"},
    {"Q3_K_S", SQ_FTYPE_Q3_K_S, SQ_TYPE_Q3_K, false, " 3.41G, +1.6321 ppl @ Llama-3-8B"},
    {"Q3_K_M", SQ_FTYPE_Q3_K_M, SQ_TYPE_Q3_K, false, " 3.74G, +0.6569 ppl @ Llama-3-8B"},
    {"Q3_K_L", SQ_FTYPE_Q3_K_L, SQ_TYPE_Q3_K, false, " 4.03G, +0.5562 ppl @ Llama-3-8B"},
    {"IQ4_NL", SQ_FTYPE_IQ4_NL, SQ_TYPE_IQ4_NL, false, " 4.50 bpw non-linear quantization"},
    {"IQ4_XS", SQ_FTYPE_IQ4_XS, SQ_TYPE_IQ4_XS, false, " 4.25 bpw non-linear quantization"},
    {"Q4_K", SQ_FTYPE_Q4_K_M, SQ_TYPE_Q4_K, false, "alias for Q4_K_M"},
    {"Q4_K_S", SQ_FTYPE_Q4_K_S, SQ_TYPE_Q4_K, false, " 4.37G, +0.2689 ppl @ Llama-3-8B"},
    {"Q4_K_M", SQ_FTYPE_Q4_K_M, SQ_TYPE_Q4_K, false, " 4.58G, +0.1754 ppl @ Llama-3-8B"},
    {"Q5_K", SQ_FTYPE_Q5_K_M, SQ_TYPE_Q5_K, false, "alias for Q5_K_M"},
    {"Q5_K_S", SQ_FTYPE_Q5_K_S, SQ_TYPE_Q5_K, false, " 5.21G, +0.1049 ppl @ Llama-3-8B"},
    {"Q5_K_M", SQ_FTYPE_Q5_K_M, SQ_TYPE_Q5_K, false, " 5.33G, +0.0569 ppl @ Llama-3-8B"},
    {"Q6_K", SQ_FTYPE_Q6_K, SQ_TYPE_Q6_K, false, " 6.14G, +0.0217 ppl @ Llama-3-8B"},
    {"Q8_0", SQ_FTYPE_Q8_0, SQ_TYPE_Q8_0, false, " 7.96G, +0.0026 ppl @ Llama-3-8B"},
    {"F16", SQ_FTYPE_F16, SQ_TYPE_F16, false, "14.00G, +0.0020 ppl @ Mistral-7B"},
    {"BF16", SQ_FTYPE_BF16, SQ_TYPE_BF16, false, "14.00G, -0.0050 ppl @ Mistral-7B"},
    {"F32", SQ_FTYPE_ALL_F32, SQ_TYPE_F32, false, "26.00G              @ 7B"},
    {"COPY", SQ_FTYPE_ALL_F32, SQ_TYPE_F32, true, "only copy tensors, no quantizing"},
};
#define N_FTYPES ((int)(sizeof ftype_table / sizeof ftype_table[0]))

int sq_ftype_count(void) { return N_FTYPES; }

const sq_ftype_info *sq_ftype_at(int i) { return i >= 0 && i < N_FTYPES ? &ftype_table[i] : NULL; }

/* The entry for a llama_ftype number: the first one in table order that is
 * not an alias ("alias for ..."), as llama-quantize's number lookup would pick
 * the first, except that we prefer the canonical name for messages. */
const sq_ftype_info *sq_ftype_get(int ftype)
{
    const sq_ftype_info *first = NULL;
    for (int i = 0; i < N_FTYPES; i++) {
        const sq_ftype_info *f = &ftype_table[i];
        if (f->ftype != ftype || f->copy) continue;
        if (strncmp(f->desc, "alias", 5) != 0) return f;
        if (!first) first = f;
    }
    return first;
}

/* A name (case-insensitive) or a plain decimal number. llama-quantize
 * resolves a number to the first table entry with it; that only differs from
 * sq_ftype_get() for aliases, whose default type is the same anyway. */
const sq_ftype_info *sq_ftype_parse(const char *s)
{
    if (!s || !*s) return NULL;
    for (int i = 0; i < N_FTYPES; i++)
        if (strcasecmp(ftype_table[i].name, s) == 0) return &ftype_table[i];
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0 || v > 1000) return NULL;
    return sq_ftype_get((int)v);
}

/* ------------------------------------------------------------------ */
/* tensor categories                                                    */
/* ------------------------------------------------------------------ */

typedef enum category {
    CAT_TOKEN_EMBD,
    CAT_ATTN_Q,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
    CAT_OUTPUT,
    CAT_OTHER
} category;

static bool contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool is_token_embd(const char *name)
{
    return strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0;
}

/* The broad role of a tensor, from its name; the order of the tests matters
 * ("attn_qkv" before "attn_q", exact names before substrings). */
static category category_of(const char *name)
{
    if (strcmp(name, "output.weight") == 0) return CAT_OUTPUT;
    if (is_token_embd(name)) return CAT_TOKEN_EMBD;
    if (contains(name, "attn_qkv.weight")) return CAT_ATTN_QKV;
    if (contains(name, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
    if (contains(name, "attn_v.weight")) return CAT_ATTN_V;
    if (contains(name, "attn_k.weight")) return CAT_ATTN_K;
    if (contains(name, "attn_q.weight")) return CAT_ATTN_Q;
    if (contains(name, "attn_output.weight")) return CAT_ATTN_OUTPUT;
    if (contains(name, "ffn_up")) return CAT_FFN_UP;
    if (contains(name, "ffn_gate")) return CAT_FFN_GATE;
    if (contains(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

/* attn_v and the tensors that play its role (fused qkv, MLA's kv_b). */
static bool is_attn_v_like(category c) { return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B; }

int sq_ggml_n_dims(const int64_t ne[4])
{
    for (int i = 3; i >= 1; i--)
        if (ne[i] > 1) return i + 1;
    return 1;
}

/* Name substrings llama.cpp never quantizes (small or special tensors of
 * various architectures); kept whole so a non-llama model behaves the same. */
static const char *const never_quantized[] = {
    "_norm.weight",           "ffn_gate_inp.weight",   "ffn_gate_tid2eid.weight", "altup",
    "laurel",                 "per_layer_model_proj",  "ssm_conv1d",              "shortconv.conv.weight",
    "indexer.k_proj.weight",  "indexer.q_proj.weight", "time_mix_first.weight",   "time_mix_w0.weight",
    "time_mix_w1.weight",     "time_mix_w2.weight",    "time_mix_v0.weight",      "time_mix_v1.weight",
    "time_mix_v2.weight",     "time_mix_a0.weight",    "time_mix_a1.weight",      "time_mix_a2.weight",
    "time_mix_g1.weight",     "time_mix_g2.weight",    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",          "sam.pos_embd",
    "sam.neck.",              "sam.net_",              ".rel_pos",                ".patch_embd",
    ".patch_merger",          "a.rvq.codebook",        "mm.a.code_embd",
};

/* Whether llama.cpp quantizes this tensor at all: weights of 2+ dimensions
 * only, not norms, not position / token-type embeddings, not output.weight
 * with --leave-output-tensor, nothing with COPY. */
static bool allows_quantization(const sq_qrules_params *p, const char *name, const int64_t ne[4])
{
    if (p->copy) return false;
    if (sq_ggml_n_dims(ne) < 2) return false;
    if (!ends_with(name, "weight")) return false;
    if (p->leave_output_tensor && strcmp(name, "output.weight") == 0) return false;
    for (size_t i = 0; i < sizeof never_quantized / sizeof never_quantized[0]; i++)
        if (contains(name, never_quantized[i])) return false;
    if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0) return false;
    return true;
}

/* ------------------------------------------------------------------ */
/* rule state                                                           */
/* ------------------------------------------------------------------ */

struct sq_qrules {
    sq_qrules_params p;
    char arch[64];
    int n_layer, n_head, n_head_kv, n_expert;
    bool is_falcon, is_70b;
    int default_type;
    regex_t *re;    /* n_overrides compiled patterns */
    int *re_type;
    int n_re;
    /* counters, as llama.cpp's quantize state */
    int n_attention_wv, i_attention_wv;
    int n_ffn_down, i_ffn_down, n_ffn_gate, i_ffn_gate, n_ffn_up, i_ffn_up;
    bool tied_embeddings;
};

static int n_gqa(const sq_qrules *r)
{
    if (r->n_head_kv <= 0) return r->n_head > 0 ? 1 : 0;
    return r->n_head / r->n_head_kv;
}

sq_status sq_qrules_create(const sq_qrules_params *p, const sq_qrules_model *m, const char *const *names,
                           int64_t n_names, sq_qrules **out, sq_error *err)
{
    *out = NULL;
    const sq_ftype_info *fi = sq_ftype_get(p->ftype);
    if (!fi && !p->copy) return sq_error_set(err, SQ_EINVAL, "unknown file type %d", p->ftype);
    for (int k = 0; k < 2; k++) {
        int t = k == 0 ? p->output_tensor_type : p->token_embedding_type;
        const sq_type_info *ti = sq_type_info_get(t);
        if (t >= 0 && (!ti || !ti->is_weight))
            return sq_error_set(err, SQ_EINVAL, "%s: type id %d is %s", k == 0 ? "--output-tensor-type" : "--token-embedding-type",
                                t, ti ? "not usable for weights" : "unknown or removed");
    }
    sq_qrules *r = calloc(1, sizeof *r);
    if (!r) return sq_error_set(err, SQ_ENOMEM, "out of memory for the quantization rules");
    r->p = *p;
    snprintf(r->arch, sizeof r->arch, "%s", (m && m->arch) ? m->arch : "llama");
    r->n_layer = m ? m->n_layer : 0;
    r->n_head = m ? m->n_head : 0;
    r->n_head_kv = m ? (m->n_head_kv > 0 ? m->n_head_kv : m->n_head) : 0;
    r->n_expert = m ? m->n_expert : 0;
    r->is_falcon = strcmp(r->arch, "falcon") == 0;
    /* llama.cpp types a llama model of 80 layers with grouped-query attention as 70B */
    r->is_70b = strcmp(r->arch, "llama") == 0 && r->n_layer == 80 && r->n_head != r->n_head_kv;
    r->default_type = fi ? fi->default_type : SQ_TYPE_F32;

    if (p->n_overrides > 0) {
        r->re = calloc((size_t)p->n_overrides, sizeof *r->re);
        r->re_type = calloc((size_t)p->n_overrides, sizeof *r->re_type);
        if (!r->re || !r->re_type) {
            sq_qrules_free(r);
            return sq_error_set(err, SQ_ENOMEM, "out of memory for --tensor-type patterns");
        }
        for (int i = 0; i < p->n_overrides; i++) {
            const sq_tensor_type_override *o = &p->overrides[i];
            const sq_type_info *ti = sq_type_info_get(o->type);
            if (!ti || !ti->is_weight) {
                sq_qrules_free(r);
                return sq_error_set(err, SQ_EINVAL, "--tensor-type %s: type id %d is %s", o->pattern ? o->pattern : "",
                                    o->type, ti ? "not usable for weights" : "unknown or removed");
            }
            int rc = regcomp(&r->re[i], o->pattern ? o->pattern : "", REG_EXTENDED | REG_NOSUB);
            if (rc != 0) {
                char why[256];
                regerror(rc, &r->re[i], why, sizeof why);
                sq_qrules_free(r);
                return sq_error_set(err, SQ_EINVAL, "--tensor-type: bad regular expression '%s': %s", o->pattern, why);
            }
            r->re_type[i] = o->type;
            r->n_re = i + 1;
        }
    }

    r->tied_embeddings = true;
    for (int64_t i = 0; i < n_names; i++) {
        const category c = category_of(names[i]);
        if (is_attn_v_like(c)) r->n_attention_wv++;
        if (c == CAT_OUTPUT) r->tied_embeddings = false;
    }
    r->n_ffn_down = r->n_ffn_gate = r->n_ffn_up = r->n_layer;
    *out = r;
    return SQ_OK;
}

void sq_qrules_free(sq_qrules *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_re; i++) regfree(&r->re[i]);
    free(r->re);
    free(r->re_type);
    free(r);
}

/* llama.cpp's choice of layers that get more bits in the _M mixes: the first
 * and last eighth, and every third layer in between. */
static bool use_more_bits(int i_layer, int n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

/* The layer a per-layer tensor belongs to: its running index for dense
 * models, its blk.N. number for mixtures of experts (whose ffn tensors are not
 * in layer order). */
static sq_status layer_of(const sq_qrules *r, int counter, const char *name, int *i_layer, sq_error *err)
{
    *i_layer = counter;
    if (r->n_expert > 1) {
        int l = -1;
        if (sscanf(name, "blk.%d.", &l) != 1)
            return sq_error_set(err, SQ_EINVAL, "tensor %s: cannot determine its layer (expected blk.N.)", name);
        if (l < 0 || l >= r->n_layer)
            return sq_error_set(err, SQ_ERANGE, "tensor %s: layer %d is outside [0, %d)", name, l, r->n_layer);
        *i_layer = l;
    }
    return SQ_OK;
}

static bool ftype_in(int f, const int *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i] == f) return true;
    return false;
}
#define FTYPE_IN(f, ...) ftype_in((f), (const int[]){__VA_ARGS__}, (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)))

/* The mix rules proper (llama_tensor_get_type_impl): starting from the file
 * type's default type t, the type a tensor of category c gets. Advances the
 * layer counters. */
static sq_status mix_rules(sq_qrules *r, const char *name, const int64_t ne[4], category c, int t, int *out,
                           sq_error *err)
{
    const int ft = r->p.ftype;
    const int gqa = n_gqa(r);
    const bool imx = r->p.has_imatrix;
    sq_status st;

    if (c == CAT_OUTPUT || (r->tied_embeddings && c == CAT_TOKEN_EMBD)) {
        if (r->p.output_tensor_type >= 0) {
            t = r->p.output_tensor_type;
        } else {
            const sq_type_info *ti = sq_type_info_get(t);
            const int64_t bs = ti ? ti->block_size : 1;
            if (ft == SQ_FTYPE_MXFP4_MOE) t = SQ_TYPE_Q8_0;
            else if (r->is_falcon || ne[0] % bs != 0) t = SQ_TYPE_Q8_0;
            else if (FTYPE_IN(ft, SQ_FTYPE_IQ2_XXS, SQ_FTYPE_IQ2_XS, SQ_FTYPE_IQ3_XXS, SQ_FTYPE_IQ1_S, SQ_FTYPE_IQ2_S,
                              SQ_FTYPE_IQ2_M, SQ_FTYPE_IQ1_M))
                t = SQ_TYPE_Q5_K;
            else if (t != SQ_TYPE_Q8_0) t = SQ_TYPE_Q6_K;
        }
    } else if (ft == SQ_FTYPE_MXFP4_MOE) {
        /* expert tensors (3-D) in MXFP4, the rest in Q8_0 */
        t = ne[2] > 1 ? SQ_TYPE_MXFP4 : SQ_TYPE_Q8_0;
    } else if (c == CAT_TOKEN_EMBD) {
        if (r->p.token_embedding_type >= 0) t = r->p.token_embedding_type;
        else if (FTYPE_IN(ft, SQ_FTYPE_IQ2_XXS, SQ_FTYPE_IQ2_XS, SQ_FTYPE_IQ1_S, SQ_FTYPE_IQ1_M)) t = SQ_TYPE_Q2_K;
        else if (FTYPE_IN(ft, SQ_FTYPE_IQ2_S, SQ_FTYPE_IQ2_M, SQ_FTYPE_IQ3_XXS)) t = SQ_TYPE_IQ3_S;
        else if (FTYPE_IN(ft, SQ_FTYPE_TQ1_0, SQ_FTYPE_TQ2_0, SQ_FTYPE_Q2_0)) t = SQ_TYPE_Q4_K;
    } else if (FTYPE_IN(ft, SQ_FTYPE_IQ2_XXS, SQ_FTYPE_IQ2_XS, SQ_FTYPE_IQ1_S, SQ_FTYPE_IQ2_S, SQ_FTYPE_IQ2_M,
                        SQ_FTYPE_IQ1_M)) {
        /* the 1-2 bit mixes */
        const bool iq2s_or_m = ft == SQ_FTYPE_IQ2_S || ft == SQ_FTYPE_IQ2_M;
        if (is_attn_v_like(c)) {
            if (gqa >= 4 || r->n_expert >= 4) t = SQ_TYPE_Q4_K;
            else t = iq2s_or_m ? SQ_TYPE_IQ3_S : SQ_TYPE_Q2_K;
            r->i_attention_wv++;
        } else if (r->n_expert == 8 && c == CAT_ATTN_K) {
            t = SQ_TYPE_Q4_K;
        } else if (c == CAT_FFN_DOWN) {
            if (r->i_ffn_down < r->n_ffn_down / 8) t = iq2s_or_m ? SQ_TYPE_IQ3_S : SQ_TYPE_Q2_K;
            r->i_ffn_down++;
        } else if (c == CAT_ATTN_OUTPUT) {
            if (r->n_expert == 8) t = SQ_TYPE_Q5_K;
            else if (ft == SQ_FTYPE_IQ1_S || ft == SQ_FTYPE_IQ1_M) t = SQ_TYPE_IQ2_XXS;
            else if (iq2s_or_m) t = SQ_TYPE_IQ3_S;
        }
    } else if (is_attn_v_like(c)) {
        if (ft == SQ_FTYPE_Q2_K) t = gqa >= 4 ? SQ_TYPE_Q4_K : SQ_TYPE_Q3_K;
        else if (ft == SQ_FTYPE_Q2_K_S && gqa >= 4) t = SQ_TYPE_Q4_K;
        else if (ft == SQ_FTYPE_IQ3_XXS) t = gqa >= 4 ? SQ_TYPE_Q4_K : !imx ? SQ_TYPE_IQ3_S : SQ_TYPE_IQ3_XXS;
        else if ((ft == SQ_FTYPE_IQ3_XS || ft == SQ_FTYPE_IQ3_S) && gqa >= 4) t = SQ_TYPE_Q4_K;
        else if (ft == SQ_FTYPE_IQ3_M) t = SQ_TYPE_Q4_K;
        else if (ft == SQ_FTYPE_Q3_K_M) t = r->i_attention_wv < 2 ? SQ_TYPE_Q5_K : SQ_TYPE_Q4_K;
        else if (ft == SQ_FTYPE_Q3_K_L) t = SQ_TYPE_Q5_K;
        else if ((ft == SQ_FTYPE_IQ4_NL || ft == SQ_FTYPE_IQ4_XS) && gqa >= 4) t = SQ_TYPE_Q5_K;
        else if ((ft == SQ_FTYPE_Q4_K_M || ft == SQ_FTYPE_Q5_K_M) && use_more_bits(r->i_attention_wv, r->n_attention_wv))
            t = SQ_TYPE_Q6_K;
        else if (ft == SQ_FTYPE_Q4_K_S && r->i_attention_wv < 4) t = SQ_TYPE_Q5_K;
        /* a 70B's attn_v is shared by 8 heads: more bits cost little there */
        if (r->is_70b && (t == SQ_TYPE_Q3_K || t == SQ_TYPE_Q4_K)) t = SQ_TYPE_Q5_K;
        if (r->n_expert == 8) t = SQ_TYPE_Q8_0;
        r->i_attention_wv++;
    } else if (c == CAT_ATTN_K) {
        if (r->n_expert == 8) t = SQ_TYPE_Q8_0;
        else if (ft == SQ_FTYPE_IQ3_XS) t = SQ_TYPE_IQ3_XXS;
        else if (ft == SQ_FTYPE_IQ3_XXS) t = SQ_TYPE_IQ2_S;
    } else if (c == CAT_ATTN_Q) {
        if (ft == SQ_FTYPE_IQ3_XS) t = SQ_TYPE_IQ3_XXS;
        else if (ft == SQ_FTYPE_IQ3_XXS) t = SQ_TYPE_IQ2_S;
    } else if (c == CAT_FFN_DOWN) {
        int il;
        if ((st = layer_of(r, r->i_ffn_down, name, &il, err)) != SQ_OK) return st;
        const int nl = r->n_ffn_down;
        if (ft == SQ_FTYPE_Q2_K) t = SQ_TYPE_Q3_K;
        else if (ft == SQ_FTYPE_Q2_K_S) {
            if (il < nl / 8) t = SQ_TYPE_Q4_K;
        } else if (ft == SQ_FTYPE_IQ3_XXS && !imx) t = il < nl / 8 ? SQ_TYPE_Q4_K : SQ_TYPE_Q3_K;
        else if (ft == SQ_FTYPE_Q3_K_M)
            t = il < nl / 16 ? SQ_TYPE_Q5_K : (!r->is_falcon || use_more_bits(il, nl)) ? SQ_TYPE_Q4_K : SQ_TYPE_Q3_K;
        else if (ft == SQ_FTYPE_IQ3_M && (il < nl / 8 || (r->n_expert == 8 && use_more_bits(il, nl))))
            t = SQ_TYPE_Q4_K;
        else if (ft == SQ_FTYPE_Q3_K_L) t = r->is_falcon ? SQ_TYPE_Q4_K : SQ_TYPE_Q5_K;
        else if (ft == SQ_FTYPE_Q4_K_M) {
            if (r->is_falcon)
                t = il < nl / 16 ? SQ_TYPE_Q6_K : use_more_bits(il, nl) ? SQ_TYPE_Q5_K : SQ_TYPE_Q4_K;
            else if (use_more_bits(il, nl))
                t = SQ_TYPE_Q6_K;
        } else if (il < nl / 8 && (ft == SQ_FTYPE_IQ4_NL || ft == SQ_FTYPE_IQ4_XS) && !imx)
            t = SQ_TYPE_Q5_K;
        else if (ft == SQ_FTYPE_Q5_K_M && use_more_bits(il, nl)) t = SQ_TYPE_Q6_K;
        else if (ft == SQ_FTYPE_Q4_K_S && !r->is_falcon && il < nl / 8) t = SQ_TYPE_Q5_K;
        else if ((ft == SQ_FTYPE_Q4_0 || ft == SQ_FTYPE_Q5_0) && imx && il < nl / 8)
            /* the first ffn_down layers misbehave in Q4_0/Q5_0 even with an imatrix */
            t = ft == SQ_FTYPE_Q4_0 ? SQ_TYPE_Q4_1 : SQ_TYPE_Q5_1;
        r->i_ffn_down++;
    } else if (c == CAT_ATTN_OUTPUT) {
        if (!r->is_falcon) {
            if (r->n_expert == 8) {
                if (FTYPE_IN(ft, SQ_FTYPE_Q2_K, SQ_FTYPE_IQ3_XS, SQ_FTYPE_IQ3_XXS, SQ_FTYPE_Q3_K_S, SQ_FTYPE_Q3_K_M,
                             SQ_FTYPE_IQ4_NL, SQ_FTYPE_Q4_K_S, SQ_FTYPE_Q4_K_M, SQ_FTYPE_IQ3_S, SQ_FTYPE_IQ3_M,
                             SQ_FTYPE_IQ4_XS))
                    t = SQ_TYPE_Q5_K;
            } else {
                if (ft == SQ_FTYPE_Q2_K) t = SQ_TYPE_Q3_K;
                else if (ft == SQ_FTYPE_IQ3_XXS) t = SQ_TYPE_IQ3_S;
                else if (ft == SQ_FTYPE_Q3_K_M) t = SQ_TYPE_Q4_K;
                else if (ft == SQ_FTYPE_Q3_K_L) t = SQ_TYPE_Q5_K;
                else if (ft == SQ_FTYPE_IQ3_M) t = SQ_TYPE_Q4_K;
            }
        } else if (ft == SQ_FTYPE_Q3_K_L) {
            t = SQ_TYPE_Q4_K;
        }
    } else if (c == CAT_ATTN_QKV) {
        /* unreachable: fused qkv is attn_v-like above; kept as llama.cpp has it */
    } else if (c == CAT_FFN_GATE || c == CAT_FFN_UP) {
        int *counter = c == CAT_FFN_GATE ? &r->i_ffn_gate : &r->i_ffn_up;
        const int nl = c == CAT_FFN_GATE ? r->n_ffn_gate : r->n_ffn_up;
        int il;
        if ((st = layer_of(r, *counter, name, &il, err)) != SQ_OK) return st;
        if (ft == SQ_FTYPE_IQ3_XS && il >= nl / 8 && il < 7 * nl / 8) t = SQ_TYPE_IQ3_XXS;
        (*counter)++;
    }
    *out = t;
    return SQ_OK;
}

int sq_qrules_fallback_type(int type)
{
    switch (type) {
    case SQ_TYPE_IQ1_S:
    case SQ_TYPE_IQ1_M:
    case SQ_TYPE_IQ2_XXS:
    case SQ_TYPE_IQ2_XS:
    case SQ_TYPE_IQ2_S:
    case SQ_TYPE_IQ3_XXS:
    case SQ_TYPE_IQ3_S:
    case SQ_TYPE_IQ4_XS: return SQ_TYPE_IQ4_NL;
    case SQ_TYPE_Q2_0:
    case SQ_TYPE_Q2_K:
    case SQ_TYPE_Q3_K:
    case SQ_TYPE_TQ1_0:
    case SQ_TYPE_TQ2_0: return SQ_TYPE_Q4_0;
    case SQ_TYPE_Q4_K: return SQ_TYPE_Q5_0;
    case SQ_TYPE_Q5_K: return SQ_TYPE_Q5_1;
    case SQ_TYPE_Q6_K: return SQ_TYPE_Q8_0;
    default: return -1;
    }
}

/* A row of ne0 values must be cut into whole blocks: otherwise take the
 * fallback type, and F16 when even that does not fit (rows not a multiple of
 * 32 are rare). Types without a fallback are an error, as in llama.cpp. */
static sq_status width_fallback(const char *name, int64_t ne0, int t, sq_qchoice *c, sq_error *err)
{
    const sq_type_info *ti = sq_type_info_get(t);
    if (!ti || ne0 % ti->block_size == 0) {
        c->type = t;
        return SQ_OK;
    }
    int fb = sq_qrules_fallback_type(t);
    if (fb < 0)
        return sq_error_set(err, SQ_EINVAL,
                            "tensor %s: %lld columns are not a multiple of the %d of type %s, and no fallback type "
                            "is defined for %s",
                            name, (long long)ne0, ti->block_size, ti->name, ti->name);
    if (ne0 % sq_type_info_get(fb)->block_size != 0) fb = SQ_TYPE_F16;
    c->fallback = true;
    c->fallback_from = t;
    c->type = fb;
    return SQ_OK;
}

/* llama-quantize refuses a target type without an importance matrix when
 * the type table says so (needs_imatrix), token_embd and output excepted; and
 * Q2_K tensors in a Q2_K_S file (its tensor_requires_imatrix). */
static bool requires_imatrix(const char *name, int t, int ftype)
{
    if (is_token_embd(name) || strcmp(name, "output.weight") == 0) return false;
    if (t == SQ_TYPE_Q2_K) return ftype == SQ_FTYPE_Q2_K_S;
    const sq_type_info *ti = sq_type_info_get(t);
    return ti && ti->needs_imatrix;
}

/*
 * One tensor's type:
 *   not quantizable                         -> its own type
 *   --token-embedding-type / --output-tensor-type on those tensors -> that type
 *   default type not quantized (F16/BF16/F32 files) -> the default type
 *   otherwise: the mix rules (unless --pure), then the --tensor-type patterns
 *   (every pattern is tried; the last that matches wins), then the width
 *   fallback.
 * The mix rules run even for tensors a pattern overrides, so the layer
 * counters of later tensors do not shift (llama.cpp skips them; see docs).
 */
sq_status sq_qrules_choose(sq_qrules *r, const char *name, const int64_t ne[4], int cur_type, sq_qchoice *out,
                           sq_error *err)
{
    memset(out, 0, sizeof *out);
    out->type = cur_type;
    out->fallback_from = -1;
    if (!allows_quantization(&r->p, name, ne)) return SQ_OK;
    out->quantizable = true;
    const category c = category_of(name);
    int t;

    if (r->p.token_embedding_type >= 0 && c == CAT_TOKEN_EMBD) {
        t = r->p.token_embedding_type;
        out->overridden = true;
    } else if (r->p.output_tensor_type >= 0 && c == CAT_OUTPUT) {
        t = r->p.output_tensor_type;
        out->overridden = true;
    } else {
        t = r->default_type;
        const sq_type_info *dti = sq_type_info_get(t);
        if (dti && dti->is_quantized) {
            if (!r->p.pure) {
                sq_status st = mix_rules(r, name, ne, c, t, &t, err);
                if (st != SQ_OK) return st;
            }
            for (int i = 0; i < r->n_re; i++) {
                if (regexec(&r->re[i], name, 0, NULL, 0) == 0) {
                    t = r->re_type[i];
                    out->overridden = true;
                }
            }
            sq_status st = width_fallback(name, ne[0], t, out, err);
            if (st != SQ_OK) return st;
            t = out->type;
        }
    }
    const sq_type_info *ti = sq_type_info_get(t);
    if (ti && ne[0] % ti->block_size != 0)
        return sq_error_set(err, SQ_EINVAL, "tensor %s: %lld columns are not a multiple of the %d of type %s", name,
                            (long long)ne[0], ti->block_size, ti->name);
    out->type = t;
    out->requires_imatrix = requires_imatrix(name, t, r->p.ftype);
    return SQ_OK;
}

/* blk.N. layer number, or -1 for tensors outside the layers. */
static long layer_number(const char *name)
{
    long l = -1;
    if (strncmp(name, "blk.", 4) == 0) {
        char *end = NULL;
        long v = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.') l = v;
    }
    return l;
}

int sq_tensor_order_cmp(const char *a, const char *b)
{
    const long la = layer_number(a), lb = layer_number(b);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}
