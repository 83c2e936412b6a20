/*
 * model.c — builds an sq_model over a mapped GGUF file: the hyperparameters
 * of its architecture (arch.c), and a view (sq_weight) of every weight
 * tensor, plain or SmarterQuant, pointing into the read-only map. Which
 * tensors a layer has follows the architecture's flags and what the file
 * holds (fused or separate q/k/v, biases, norms, experts); every tensor of the
 * file must be one the architecture uses, as llama.cpp requires. Every check
 * a forward pass relies on (shapes, types the kernels can multiply, valid
 * permutations) is made here, once, so that evaluation cannot fail on them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "sq/blocks.h"
#include "sq/quantize.h"

/* The state of one load: the model and which of the file's tensors it took. */
typedef struct loader {
    sq_model *m;
    unsigned char *claimed; /* [n_tensors] */
} loader;

/* Remembers a buffer the model owns (freed with the model). */
static sq_status own(sq_model *m, void *p, sq_error *err)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 16;
        void **n = realloc(m->owned, sizeof(void *) * (size_t)cap);
        if (!n) {
            free(p);
            return sq_error_set(err, SQ_ENOMEM, "out of memory");
        }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return SQ_OK;
}

/* The tensor called name, marked as used; NULL when absent. */
static const sq_gguf_tensor *take(loader *ld, const char *name)
{
    const sq_gguf_tensor *t = sq_gguf_find_tensor(ld->m->g, name);
    if (t) ld->claimed[sq_gguf_tensor_index(ld->m->g, t)] = 1;
    return t;
}

/* Checks that tensor t has exactly the shape [ne0, ne1, ne2]. */
static sq_status check_shape(const sq_gguf_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2, sq_error *err)
{
    if (t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == ne2 && t->ne[3] == 1) return SQ_OK;
    char want[80];
    if (ne2 > 1) snprintf(want, sizeof want, "[%lld, %lld, %lld]", (long long)ne0, (long long)ne1, (long long)ne2);
    else if (ne1 > 1) snprintf(want, sizeof want, "[%lld, %lld]", (long long)ne0, (long long)ne1);
    else snprintf(want, sizeof want, "[%lld]", (long long)ne0);
    return sq_error_set(err, SQ_EFORMAT,
                        "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected %s from the model's hyperparameters",
                        t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        want);
}

/* Can this build use type t for a weight: for a product (need_dot) or for a
 * row lookup (dequantize)? */
static bool type_usable(int t, bool need_dot)
{
    return need_dot ? sq_blocks_can_dot(t) : sq_blocks_can_dequantize(t);
}

/* Fills *w with a view of tensor `name`: cols × rows, or n_mat such
 * matrices one after the other (a 3-D expert tensor; the view then has
 * n_mat * rows rows). A SmarterQuant tensor gets its four block types and its
 * permutation (one for all rows) from the reader's typed view (checked at
 * open; the permutation lives as long as the reader). need_dot: the weight is multiplied
 * (else only its rows are looked up). Absent and optional: w->data = NULL. */
static sq_status load_weight3(loader *ld, const char *name, int64_t cols, int64_t rows, int64_t n_mat, bool need_dot,
                              bool optional, sq_weight *w, sq_error *err)
{
    sq_model *m = ld->m;
    memset(w, 0, sizeof *w);
    const sq_gguf_tensor *t = take(ld, name);
    if (!t) return optional ? SQ_OK : sq_error_set(err, SQ_ENOTFOUND, "tensor '%s' is missing", name);
    sq_status st = check_shape(t, cols, rows, n_mat, err);
    if (st) return st;
    if (!t->smarterquant) {
        if (!type_usable(t->type, need_dot))
            return sq_error_set(err, SQ_EUNSUPPORTED, "tensor '%s': type %s (%d) is not supported by this build",
                                name, sq_type_name(t->type), t->type);
        st = sq_weight_plain(w, t->data, t->type, rows * n_mat, cols, err);
    } else {
        for (int s = 0; s < 4; s++)
            if (!type_usable(t->sq.types[s], need_dot))
                return sq_error_set(err, SQ_EUNSUPPORTED,
                                    "tensor '%s': SmarterQuant block type %s (%d) is not supported by this build",
                                    name, sq_type_name(t->sq.types[s]), t->sq.types[s]);
        st = sq_weight_mixed(w, t->data, t->sq.types, t->sq.perm, rows * n_mat, cols, err);
        m->hp.n_sq_tensors++;
    }
    if (st) {
        sq_error_prefix(err, "tensor '%s'", name);
        return st;
    }
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)(rows * cols * n_mat);
    return SQ_OK;
}

static sq_status load_weight(loader *ld, const char *name, int64_t cols, int64_t rows, sq_weight *w, sq_error *err)
{
    return load_weight3(ld, name, cols, rows, 1, true, false, w, err);
}

/* A vector of n floats (norm weights, biases, rope factors): used in place
 * when F32, converted once into an owned buffer when F16 or BF16. */
static sq_status load_vector(loader *ld, const char *name, int64_t n, bool optional, const float **out, sq_error *err)
{
    sq_model *m = ld->m;
    *out = NULL;
    const sq_gguf_tensor *t = take(ld, name);
    if (!t) {
        if (optional) return SQ_OK;
        return sq_error_set(err, SQ_ENOTFOUND, "tensor '%s' is missing", name);
    }
    sq_status st = check_shape(t, n, 1, 1, err);
    if (st) return st;
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    if (t->type == SQ_TYPE_F32 && !t->smarterquant && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return SQ_OK;
    }
    if (t->smarterquant || (t->type != SQ_TYPE_F32 && t->type != SQ_TYPE_F16 && t->type != SQ_TYPE_BF16))
        return sq_error_set(err, SQ_EUNSUPPORTED, "tensor '%s': type %s is not supported for a vector", name,
                            sq_type_name(t->type));
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return sq_error_set(err, SQ_ENOMEM, "out of memory for tensor '%s'", name);
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        if (t->type == SQ_TYPE_F32) {
            memcpy(&v[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            v[i] = t->type == SQ_TYPE_F16 ? sq_fp16_to_f32(h) : sq_bf16_to_f32(h);
        }
    }
    if ((st = own(m, v, err))) return st;
    *out = v;
    return SQ_OK;
}

/* When the n products that take the same input all carry the same column
 * permutation (as a planner gives q, k and v, whose input statistics are the
 * same), the forward pass gathers the input once: the permutation moves to
 * *shared and the views lose theirs (they then expect gathered input). */
static void share_perm(sq_weight *const *w, int n, const int32_t **shared)
{
    *shared = NULL;
    if (!w) return;
    for (int i = 1; i < n; i++)
        if (!w[i]->perm || w[i]->cols != w[0]->cols ||
            (w[i]->perm != w[0]->perm &&
             memcmp(w[i]->perm, w[0]->perm, sizeof(int32_t) * (size_t)w[0]->cols) != 0))
            return;
    *shared = w[0]->perm;
    for (int i = 0; i < n; i++) w[i]->perm = NULL;
}

/* The model's label, as every tool shows it: llama.cpp's file-type name
 * ("Q4_K - Medium"), " + SmarterQuant (B bpw)" when it has such tensors. */
static void describe_types(sq_model *m)
{
    sq_file_type_label(m->g, m->type_desc, sizeof m->type_desc);
}

#define LNAME(buf, l, s) (snprintf(buf, sizeof buf, "blk.%lld.%s", (long long)(l), s), buf)

/* A fused q/k/v weight may come with separate q, k and v biases: llama.cpp
 * adds them (concatenated) when all three are there. L->bq gets the
 * concatenation, owned by the model. */
static sq_status fused_qkv_bias(loader *ld, int64_t l, sq__layer *L, sq_error *err)
{
    const sq_hparams *hp = &ld->m->hp;
    const int64_t q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    const float *b[3];
    char nm[96];
    sq_status st;
    if ((st = load_vector(ld, LNAME(nm, l, "attn_q.bias"), q_dim, true, &b[0], err)) ||
        (st = load_vector(ld, LNAME(nm, l, "attn_k.bias"), kv_dim, true, &b[1], err)) ||
        (st = load_vector(ld, LNAME(nm, l, "attn_v.bias"), kv_dim, true, &b[2], err)))
        return st;
    if (!b[0] || !b[1] || !b[2]) return SQ_OK;
    float *cat = malloc(sizeof(float) * (size_t)(q_dim + 2 * kv_dim));
    if (!cat) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    memcpy(cat, b[0], sizeof(float) * (size_t)q_dim);
    memcpy(cat + q_dim, b[1], sizeof(float) * (size_t)kv_dim);
    memcpy(cat + q_dim + kv_dim, b[2], sizeof(float) * (size_t)kv_dim);
    if ((st = own(ld->m, cat, err))) return st;
    L->bq = cat;
    return SQ_OK;
}

/* Layer l's attention: q/k/v (fused or separate, biases optional), q/k
 * norms, output projection and its bias, post-norm, as the architecture has them. */
static sq_status load_attention(loader *ld, int64_t l, sq__layer *L, sq_error *err)
{
    sq_model *m = ld->m;
    const sq_hparams *hp = &m->hp;
    const unsigned fl = m->x.arch->flags;
    const int64_t E = hp->n_embd, q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    char nm[96];
    sq_status st;
    if ((st = load_vector(ld, LNAME(nm, l, "attn_norm.weight"), E, false, &L->attn_norm, err))) return st;
    if ((st = load_weight3(ld, LNAME(nm, l, "attn_qkv.weight"), E, q_dim + 2 * kv_dim, 1, true, true, &L->wqkv, err)))
        return st;
    if (L->wqkv.data) {
        if ((st = load_vector(ld, LNAME(nm, l, "attn_qkv.bias"), q_dim + 2 * kv_dim, true, &L->bq, err))) return st;
        if (!L->bq && (st = fused_qkv_bias(ld, l, L, err))) return st;
    } else {
        if ((st = load_weight(ld, LNAME(nm, l, "attn_q.weight"), E, q_dim, &L->wq, err))) return st;
        if ((st = load_weight(ld, LNAME(nm, l, "attn_k.weight"), E, kv_dim, &L->wk, err))) return st;
        if ((st = load_weight(ld, LNAME(nm, l, "attn_v.weight"), E, kv_dim, &L->wv, err))) return st;
        if ((st = load_vector(ld, LNAME(nm, l, "attn_q.bias"), q_dim, true, &L->bq, err))) return st;
        if ((st = load_vector(ld, LNAME(nm, l, "attn_k.bias"), kv_dim, true, &L->bk, err))) return st;
        if ((st = load_vector(ld, LNAME(nm, l, "attn_v.bias"), kv_dim, true, &L->bv, err))) return st;
    }
    if (fl & SQ__ARCH_QK_NORM) {
        if ((st = load_vector(ld, LNAME(nm, l, "attn_q_norm.weight"), hp->head_dim, false, &L->q_norm, err))) return st;
        if ((st = load_vector(ld, LNAME(nm, l, "attn_k_norm.weight"), hp->head_dim, false, &L->k_norm, err))) return st;
    }
    if ((st = load_weight(ld, LNAME(nm, l, "attn_output.weight"), q_dim, E, &L->wo, err))) return st;
    if ((fl & SQ__ARCH_WO_BIAS) && (st = load_vector(ld, LNAME(nm, l, "attn_output.bias"), E, true, &L->bo, err)))
        return st;
    if ((fl & SQ__ARCH_POST_NORMS) &&
        (st = load_vector(ld, LNAME(nm, l, "post_attention_norm.weight"), E, false, &L->attn_post_norm, err)))
        return st;
    L->swa = sq__layer_is_swa(m, l);
    if (!L->wqkv.data)
        share_perm(L->wq.perm ? (sq_weight *[]){&L->wq, &L->wk, &L->wv} : NULL, 3, &L->qkv_perm);
    return SQ_OK;
}

/* Layer l's feed-forward network: norm, then experts (router and the 3-D
 * expert tensors), a fused gate+up, or gate, up, down with optional biases;
 * then the post-norm. */
static sq_status load_ffn(loader *ld, int64_t l, sq__layer *L, sq_error *err)
{
    sq_model *m = ld->m;
    const sq_hparams *hp = &m->hp;
    const unsigned fl = m->x.arch->flags;
    const int64_t E = hp->n_embd, F = hp->n_ff, X = hp->n_expert, FE = hp->n_ff_exp;
    char nm[96];
    sq_status st;
    if ((st = load_vector(ld, LNAME(nm, l, "ffn_norm.weight"), E, false, &L->ffn_norm, err))) return st;
    if (X > 0) {
        /* qwen3moe requires the gate experts; llama's (Mixtral) may go without */
        const bool gate_opt = !(fl & SQ__ARCH_MOE_ONLY);
        if ((st = load_weight(ld, LNAME(nm, l, "ffn_gate_inp.weight"), E, X, &L->router, err))) return st;
        if ((st = load_weight3(ld, LNAME(nm, l, "ffn_gate_exps.weight"), E, FE, X, true, gate_opt, &L->gate_exps, err)))
            return st;
        if ((st = load_weight3(ld, LNAME(nm, l, "ffn_up_exps.weight"), E, FE, X, true, false, &L->up_exps, err)))
            return st;
        if ((st = load_weight3(ld, LNAME(nm, l, "ffn_down_exps.weight"), FE, E, X, true, false, &L->down_exps, err)))
            return st;
    } else if (fl & SQ__ARCH_FUSED_UP) {
        if ((st = load_weight(ld, LNAME(nm, l, "ffn_up.weight"), E, 2 * F, &L->up, err))) return st;
        if ((st = load_weight(ld, LNAME(nm, l, "ffn_down.weight"), F, E, &L->down, err))) return st;
    } else {
        if ((st = load_weight(ld, LNAME(nm, l, "ffn_gate.weight"), E, F, &L->gate, err))) return st;
        if ((st = load_weight(ld, LNAME(nm, l, "ffn_up.weight"), E, F, &L->up, err))) return st;
        if ((st = load_weight(ld, LNAME(nm, l, "ffn_down.weight"), F, E, &L->down, err))) return st;
        if (fl & SQ__ARCH_FFN_BIAS) {
            if ((st = load_vector(ld, LNAME(nm, l, "ffn_gate.bias"), F, true, &L->bgate, err))) return st;
            if ((st = load_vector(ld, LNAME(nm, l, "ffn_up.bias"), F, true, &L->bup, err))) return st;
            if ((st = load_vector(ld, LNAME(nm, l, "ffn_down.bias"), E, true, &L->bdown, err))) return st;
        }
        share_perm(L->gate.perm ? (sq_weight *[]){&L->gate, &L->up} : NULL, 2, &L->gu_perm);
    }
    if ((fl & SQ__ARCH_POST_NORMS) &&
        (st = load_vector(ld, LNAME(nm, l, "post_ffw_norm.weight"), E, false, &L->ffn_post_norm, err)))
        return st;
    return SQ_OK;
}

/* The token embedding, the output projection (or the tied embedding), its
 * bias, the final norm and the RoPE frequency factors. */
static sq_status load_globals(loader *ld, sq_error *err)
{
    sq_model *m = ld->m;
    sq_hparams *hp = &m->hp;
    const unsigned fl = m->x.arch->flags;
    const int64_t E = hp->n_embd;
    sq_status st;
    const sq_gguf_tensor *te = sq_gguf_find_tensor(m->g, "token_embd.weight");
    if (!te) return sq_error_set(err, SQ_ENOTFOUND, "tensor 'token_embd.weight' is missing");
    hp->n_vocab = te->ne[1];
    int64_t idx;
    sq_gguf_type et;
    uint64_t n;
    if (sq_gguf_get_arr(m->g, "tokenizer.ggml.tokens", &idx, &et, &n, NULL) == SQ_OK && (int64_t)n != hp->n_vocab)
        return sq_error_set(err, SQ_EFORMAT,
                            "tensor 'token_embd.weight' has %lld rows but the vocabulary has %llu tokens",
                            (long long)hp->n_vocab, (unsigned long long)n);
    if ((st = load_weight3(ld, "token_embd.weight", E, hp->n_vocab, 1, false, false, &m->tok_embd, err))) return st;
    if ((st = load_vector(ld, "output_norm.weight", E, false, &m->output_norm, err))) return st;
    if ((st = load_weight3(ld, "output.weight", E, hp->n_vocab, 1, true, true, &m->output, err))) return st;
    if (!m->output.data) {
        hp->tied_output = true;
        bool ok = true;
        for (int s = 0; s < (te->smarterquant ? 4 : 1); s++)
            ok = ok && sq_blocks_can_dot(te->smarterquant ? te->sq.types[s] : te->type);
        if (!ok)
            return sq_error_set(err, SQ_EUNSUPPORTED,
                                "tensor 'token_embd.weight' (used as the output projection): its "
                                "type cannot be multiplied by this build");
        m->output = m->tok_embd;
    }
    if ((fl & SQ__ARCH_OUT_BIAS) && (st = load_vector(ld, "output.bias", hp->n_vocab, true, &m->output_b, err)))
        return st;
    /* Llama 3.1's frequency factors, or LongRoPE's long and short ones (phi3; llama with rope.scaling.type longrope) */
    const bool longrope =
        (fl & SQ__ARCH_ROPE_LONG) || ((fl & SQ__ARCH_ROPE_FREQS) && m->x.rope_scaling == SQ__ROPE_LONGROPE);
    if (longrope) {
        if ((st = load_vector(ld, "rope_factors_long.weight", hp->n_rot / 2, true, &m->rope_long, err))) return st;
        if ((st = load_vector(ld, "rope_factors_short.weight", hp->n_rot / 2, true, &m->rope_short, err))) return st;
    } else if ((fl & SQ__ARCH_ROPE_FREQS) &&
               (st = load_vector(ld, "rope_freqs.weight", hp->n_rot / 2, true, &m->rope_freqs, err))) {
        return st;
    }
    return SQ_OK;
}

/* Every tensor of the file must be one the architecture uses (llama.cpp
 * refuses a file with others too): the first one left over is named. */
static sq_status check_all_used(loader *ld, sq_error *err)
{
    sq_model *m = ld->m;
    const int64_t nt = sq_gguf_n_tensors(m->g);
    for (int64_t i = 0; i < nt; i++) {
        if (ld->claimed[i]) continue;
        const sq_gguf_tensor *t = sq_gguf_tensor_at(m->g, i);
        const char *const *ig = m->x.arch->ignored;
        bool known = false;
        for (int k = 0; ig && ig[k]; k++) known = known || strcmp(ig[k], t->name) == 0;
        if (!known)
            return sq_error_set(err, SQ_EUNSUPPORTED,
                                "tensor '%s' is not used by the %s architecture as this engine (and llama.cpp) runs it",
                                t->name, m->x.arch->name);
    }
    return SQ_OK;
}

/* Reads hyperparameters and tensor views; see sq_model_load. */
static sq_status build(sq_model *m, sq_error *err)
{
    sq_status st = sq__read_hparams(m, err);
    if (st) return st;
    loader ld = {m, calloc((size_t)sq_gguf_n_tensors(m->g) + 1, 1)};
    m->layers = calloc((size_t)m->hp.n_layer, sizeof(sq__layer));
    if (!ld.claimed || !m->layers) {
        free(ld.claimed);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for %lld layers", (long long)m->hp.n_layer);
    }
    st = load_globals(&ld, err);
    for (int64_t l = 0; l < m->hp.n_layer && !st; l++) {
        st = load_attention(&ld, l, &m->layers[l], err);
        if (!st) st = load_ffn(&ld, l, &m->layers[l], err);
    }
    if (!st) st = check_all_used(&ld, err);
    free(ld.claimed);
    if (!st) describe_types(m);
    return st;
}

bool sq__model_is_plain_llama(const sq_model *m)
{
    const sq__hp *x = &m->x;
    if (strcmp(x->arch->name, "llama") != 0 || m->hp.n_expert > 0 || m->output_b || x->final_softcap > 0 ||
        x->embd_scale != 1.0f || x->rope.ext_factor != 0.0f || x->rope.attn_factor != 1.0f || m->rope_long ||
        m->rope_short)
        return false;
    for (int64_t l = 0; l < m->hp.n_layer; l++) {
        const sq__layer *L = &m->layers[l];
        if (L->wqkv.data || L->bq || L->bk || L->bv || L->bo || L->bgate || L->bup || L->bdown || L->q_norm ||
            L->k_norm || L->attn_post_norm || L->ffn_post_norm || L->swa)
            return false;
    }
    return true;
}

sq_weight sq__expert_view(const sq_weight *w, int64_t n_expert, int64_t e)
{
    sq_weight v = *w;
    v.rows = w->rows / n_expert;
    v.data = (const char *)w->data + (size_t)(e * v.rows) * w->row_bytes;
    return v;
}

sq_status sq_model_from_gguf(sq_gguf *g, sq_model **out, sq_error *err)
{
    *out = NULL;
    if (!g) return sq_error_set(err, SQ_EINVAL, "no GGUF reader given");
    sq_model *m = calloc(1, sizeof *m);
    if (!m) {
        sq_gguf_close(g);
        return sq_error_set(err, SQ_ENOMEM, "out of memory");
    }
    m->g = g;
    sq_status st = build(m, err);
    if (st) {
        sq_error_prefix(err, "%s", sq_gguf_path(g) ? sq_gguf_path(g) : "model");
        sq_model_free(m);
        return st;
    }
    *out = m;
    return SQ_OK;
}

sq_status sq_model_load(const char *path, sq_model **out, sq_error *err)
{
    *out = NULL;
    sq_gguf *g = NULL;
    /* a split model (NAME-00001-of-0000N.gguf) loads whole, as in llama.cpp */
    sq_status st = sq_gguf_open_model(path, &g, err);
    if (st) return st;
    /* the weights are read at every token: map them in now, not one fault at a time */
    sq_gguf_prefault(g);
    return sq_model_from_gguf(g, out, err);
}

void sq_model_free(sq_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    sq_gguf_close(m->g);
    free(m);
}

const sq_hparams *sq_model_hparams(const sq_model *m) { return &m->hp; }
const sq_gguf *sq_model_gguf(const sq_model *m) { return m->g; }
uint64_t sq_model_weight_bytes(const sq_model *m) { return m->weight_bytes; }
uint64_t sq_model_n_params(const sq_model *m) { return m->n_params; }
const char *sq_model_type_desc(const sq_model *m) { return m->type_desc; }
