/*
 * ftype_label.c — what a file type is called and whether this build can
 * write it:
 *   - llama.cpp's display names of file types ("Q4_K - Medium"), its guess
 *     of a file type from the tensors when general.file_type is absent, and
 *     the label every tool shows for a model file, SmarterQuant said plainly
 *     ("Q4_K - Medium + SmarterQuant (4.98 bpw)");
 *   - which file types this build writes: those whose per-tensor rules only
 *     ever pick ggml types the build can quantize (asked of the rules on
 *     probe models, so a type added to the block table makes its file types
 *     writable with no list to edit here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/quantize.h"

/* llama.cpp's llama_ftype_name(), by llama_ftype value. */
static const struct {
    int ftype;
    const char *name;
} ftype_names[] = {
    {SQ_FTYPE_ALL_F32, "all F32"},
    {SQ_FTYPE_F16, "F16"},
    {SQ_FTYPE_BF16, "BF16"},
    {SQ_FTYPE_Q1_0, "Q1_0"},
    {SQ_FTYPE_Q2_0, "Q2_0"},
    {SQ_FTYPE_Q4_0, "Q4_0"},
    {SQ_FTYPE_Q4_1, "Q4_1"},
    {SQ_FTYPE_Q5_0, "Q5_0"},
    {SQ_FTYPE_Q5_1, "Q5_1"},
    {SQ_FTYPE_Q8_0, "Q8_0"},
    {SQ_FTYPE_MXFP4_MOE, "MXFP4 MoE"},
    {39, "NVFP4"},
    {SQ_FTYPE_Q2_K, "Q2_K - Medium"},
    {SQ_FTYPE_Q2_K_S, "Q2_K - Small"},
    {SQ_FTYPE_Q3_K_S, "Q3_K - Small"},
    {SQ_FTYPE_Q3_K_M, "Q3_K - Medium"},
    {SQ_FTYPE_Q3_K_L, "Q3_K - Large"},
    {SQ_FTYPE_Q4_K_S, "Q4_K - Small"},
    {SQ_FTYPE_Q4_K_M, "Q4_K - Medium"},
    {SQ_FTYPE_Q5_K_S, "Q5_K - Small"},
    {SQ_FTYPE_Q5_K_M, "Q5_K - Medium"},
    {SQ_FTYPE_Q6_K, "Q6_K"},
    {SQ_FTYPE_TQ1_0, "TQ1_0 - 1.69 bpw ternary"},
    {SQ_FTYPE_TQ2_0, "TQ2_0 - 2.06 bpw ternary"},
    {SQ_FTYPE_IQ2_XXS, "IQ2_XXS - 2.0625 bpw"},
    {SQ_FTYPE_IQ2_XS, "IQ2_XS - 2.3125 bpw"},
    {SQ_FTYPE_IQ2_S, "IQ2_S - 2.5 bpw"},
    {SQ_FTYPE_IQ2_M, "IQ2_M - 2.7 bpw"},
    {SQ_FTYPE_IQ3_XS, "IQ3_XS - 3.3 bpw"},
    {SQ_FTYPE_IQ3_XXS, "IQ3_XXS - 3.0625 bpw"},
    {SQ_FTYPE_IQ1_S, "IQ1_S - 1.5625 bpw"},
    {SQ_FTYPE_IQ1_M, "IQ1_M - 1.75 bpw"},
    {SQ_FTYPE_IQ4_NL, "IQ4_NL - 4.5 bpw"},
    {SQ_FTYPE_IQ4_XS, "IQ4_XS - 4.25 bpw"},
    {SQ_FTYPE_IQ3_S, "IQ3_S - 3.4375 bpw"},
    {SQ_FTYPE_IQ3_M, "IQ3_S mix - 3.66 bpw"},
};

const char *sq_ftype_label(int ftype)
{
    for (size_t i = 0; i < sizeof ftype_names / sizeof ftype_names[0]; i++)
        if (ftype_names[i].ftype == ftype) return ftype_names[i].name;
    return NULL;
}

/* llama.cpp's file type for a model whose most common tensor type is t
 * (llama-model-loader's guess); ALL_F32 for a type it has no guess for. */
static int ftype_of_type(int t)
{
    static const int map[][2] = {
        {SQ_TYPE_F16, SQ_FTYPE_F16},         {SQ_TYPE_BF16, SQ_FTYPE_BF16},       {SQ_TYPE_Q4_0, SQ_FTYPE_Q4_0},
        {SQ_TYPE_Q4_1, SQ_FTYPE_Q4_1},       {SQ_TYPE_Q5_0, SQ_FTYPE_Q5_0},       {SQ_TYPE_Q5_1, SQ_FTYPE_Q5_1},
        {SQ_TYPE_Q8_0, SQ_FTYPE_Q8_0},       {SQ_TYPE_Q2_K, SQ_FTYPE_Q2_K},       {SQ_TYPE_Q3_K, SQ_FTYPE_Q3_K_M},
        {SQ_TYPE_Q4_K, SQ_FTYPE_Q4_K_M},     {SQ_TYPE_Q5_K, SQ_FTYPE_Q5_K_M},     {SQ_TYPE_Q6_K, SQ_FTYPE_Q6_K},
        {SQ_TYPE_TQ1_0, SQ_FTYPE_TQ1_0},     {SQ_TYPE_TQ2_0, SQ_FTYPE_TQ2_0},     {SQ_TYPE_IQ2_XXS, SQ_FTYPE_IQ2_XXS},
        {SQ_TYPE_IQ2_XS, SQ_FTYPE_IQ2_XS},   {SQ_TYPE_IQ2_S, SQ_FTYPE_IQ2_S},     {SQ_TYPE_IQ3_XXS, SQ_FTYPE_IQ3_XXS},
        {SQ_TYPE_IQ1_S, SQ_FTYPE_IQ1_S},     {SQ_TYPE_IQ1_M, SQ_FTYPE_IQ1_M},     {SQ_TYPE_IQ4_NL, SQ_FTYPE_IQ4_NL},
        {SQ_TYPE_IQ4_XS, SQ_FTYPE_IQ4_XS},   {SQ_TYPE_IQ3_S, SQ_FTYPE_IQ3_S},     {SQ_TYPE_NVFP4, 39},
        {SQ_TYPE_Q1_0, SQ_FTYPE_Q1_0},       {SQ_TYPE_Q2_0, SQ_FTYPE_Q2_0},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i][0] == t) return map[i][1];
    return SQ_FTYPE_ALL_F32;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const sq_gguf_tensor *const *)a)->name, (*(const sq_gguf_tensor *const *)b)->name);
}

/* The most common declared tensor type, counted in name order with the first
 * type to reach a new maximum winning (llama.cpp walks its name-sorted map). */
static int most_common_type(const sq_gguf *g)
{
    const int64_t n = sq_gguf_n_tensors(g);
    const sq_gguf_tensor **ts = malloc((size_t)(n > 0 ? n : 1) * sizeof *ts);
    if (!ts) return SQ_TYPE_F32;
    for (int64_t i = 0; i < n; i++) ts[i] = sq_gguf_tensor_at(g, i);
    qsort(ts, (size_t)n, sizeof *ts, cmp_name);
    uint32_t count[SQ_TYPE_COUNT] = {0}, best_n = 0;
    int best = SQ_TYPE_F32;
    for (int64_t i = 0; i < n; i++) {
        const int t = ts[i]->type;
        if (t < 0 || t >= SQ_TYPE_COUNT) continue;
        if (++count[t] > best_n) {
            best_n = count[t];
            best = t;
        }
    }
    free(ts);
    return best;
}

size_t sq_file_type_label(const sq_gguf *g, char *buf, size_t n)
{
    int64_t ft = -1;
    bool guessed = false;
    if (sq_gguf_get_i64(g, "general.file_type", &ft, NULL) != SQ_OK) {
        ft = ftype_of_type(most_common_type(g));
        guessed = true;
    }
    const char *name = ft >= 0 && ft < 1000 ? sq_ftype_label((int)ft) : NULL;
    int k = snprintf(buf, n, "%s%s", guessed ? "(guessed) " : "", name ? name : "unknown, may not work");
    uint64_t bytes = 0, elements = 0;
    int64_t n_sq = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        uint64_t e = 1;
        for (int d = 0; d < t->n_dims; d++) e *= (uint64_t)t->ne[d];
        elements += e;
        bytes += t->nbytes;
        n_sq += t->smarterquant;
    }
    if (n_sq > 0 && k >= 0 && (size_t)k < n)
        k += snprintf(buf + k, n - (size_t)k, " + SmarterQuant (%.2f bpw)",
                      elements ? (double)bytes * 8.0 / (double)elements : 0.0);
    return k < 0 ? 0 : (size_t)k;
}

/* ---- which file types this build writes ---- */

/* A probe model: a llama-style model at a real shape (32 layers, 4096 wide,
 * every width a multiple of 256 so that no fallback enters), dense with or
 * without grouped-query attention, or with 8 experts per layer. */
typedef struct probe {
    int n_head, n_head_kv, n_expert;
} probe;

#define PROBE_LAYERS 32
#define PROBE_PER_LAYER 7

/* The tensor names of a probe model in llama.cpp's order. */
static int probe_names(const probe *pr, char (*names)[48], const char **ptrs)
{
    static const char *dense[PROBE_PER_LAYER] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                                 "ffn_down"};
    static const char *moe[PROBE_PER_LAYER] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_exps",
                                               "ffn_up_exps", "ffn_down_exps"};
    int n = 0;
    snprintf(names[n++], 48, "token_embd.weight");
    snprintf(names[n++], 48, "output.weight");
    for (int l = 0; l < PROBE_LAYERS; l++)
        for (int k = 0; k < PROBE_PER_LAYER; k++)
            snprintf(names[n++], 48, "blk.%d.%s.weight", l, pr->n_expert ? moe[k] : dense[k]);
    for (int i = 0; i < n; i++) ptrs[i] = names[i];
    return n;
}

static int cmp_order(const void *a, const void *b)
{
    return sq_tensor_order_cmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether every type the rules choose for the probe model can be quantized. */
static bool probe_writable(const sq_ftype_info *fi, const probe *pr)
{
    enum { N = 2 + PROBE_LAYERS * PROBE_PER_LAYER };
    char(*names)[48] = malloc(N * sizeof *names);
    const char *ptrs[N];
    if (!names) return false;
    const int n = probe_names(pr, names, ptrs);
    qsort(ptrs, (size_t)n, sizeof *ptrs, cmp_order);
    const sq_qrules_params rp = {.ftype = fi->ftype, .has_imatrix = true, .output_tensor_type = -1,
                                 .token_embedding_type = -1};
    const sq_qrules_model m = {"llama", PROBE_LAYERS, pr->n_head, pr->n_head_kv, pr->n_expert};
    sq_qrules *r = NULL;
    if (sq_qrules_create(&rp, &m, ptrs, n, &r, NULL) != SQ_OK) {
        free(names);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        const int64_t ne[4] = {4096, strstr(ptrs[i], "token_embd") || strstr(ptrs[i], "output.") ? 32000 : 4096,
                               pr->n_expert && strstr(ptrs[i], "_exps") ? pr->n_expert : 1, 1};
        sq_qchoice ch;
        ok = sq_qrules_choose(r, ptrs[i], ne, SQ_TYPE_F16, &ch, NULL) == SQ_OK &&
             (!ch.quantizable || sq_blocks_can_quantize(ch.type));
    }
    sq_qrules_free(r);
    free(names);
    return ok;
}

bool sq_ftype_supported(const sq_ftype_info *fi)
{
    if (!fi) return false;
    if (fi->copy) return true;
    if (!sq_blocks_can_quantize(fi->default_type)) return false;
    static const probe probes[] = {{32, 8, 0}, {32, 32, 0}, {32, 8, 8}};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        if (!probe_writable(fi, &probes[i])) return false;
    return true;
}
