/*
 * model.c — builds an sq_model over a mapped GGUF file: the llama
 * hyperparameters from the metadata, and a view (sq_weight) of every weight
 * tensor, plain or SmarterQuant, pointing into the read-only map. Every check
 * a forward pass relies on (shapes, types the kernels can multiply, valid
 * permutations) is made here, once, so that evaluation cannot fail on them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "sq/blocks.h"
#include "sq/quantize.h"

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

/* Reads an integer hyperparameter "llama.KEY"; when absent, takes def (or
 * fails when def < 0, i.e. the key is required). Values must be positive. */
static sq_status hp_int(const sq_gguf *g, const char *key, int64_t def, int64_t *out, sq_error *err)
{
    int64_t v = 0;
    sq_error e = {0};
    sq_status st = sq_gguf_get_i64(g, key, &v, &e);
    if (st == SQ_ENOTFOUND) {
        if (def < 0) return sq_error_set(err, SQ_ENOTFOUND, "metadata key '%s' is missing", key);
        *out = def;
        return SQ_OK;
    }
    if (st != SQ_OK) return sq_error_set(err, st, "%s", e.msg);
    if (v <= 0 || v > (int64_t)1 << 31)
        return sq_error_set(err, SQ_ERANGE, "metadata key '%s' = %lld is out of range", key, (long long)v);
    *out = v;
    return SQ_OK;
}

/* A float hyperparameter with a default. */
static sq_status hp_float(const sq_gguf *g, const char *key, float def, float *out, sq_error *err)
{
    sq_error e = {0};
    sq_status st = sq_gguf_get_f32(g, key, out, &e);
    if (st == SQ_ENOTFOUND) {
        *out = def;
        return SQ_OK;
    }
    if (st != SQ_OK) return sq_error_set(err, st, "%s", e.msg);
    return SQ_OK;
}

/* Checks that tensor t is a matrix of exactly cols × rows. */
static sq_status check_shape(const sq_gguf_tensor *t, int64_t cols, int64_t rows, sq_error *err)
{
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return sq_error_set(err, SQ_EFORMAT,
                            "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld] from the "
                            "model's hyperparameters",
                            t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                            (long long)t->ne[3], (long long)cols, (long long)rows);
    return SQ_OK;
}

/* Can this build use type t for a weight: for a product (need_dot) or for a
 * row lookup (dequantize)? */
static bool type_usable(int t, bool need_dot)
{
    return need_dot ? sq_blocks_can_dot(t) : sq_blocks_can_dequantize(t);
}

/* Fills *w with a view of tensor `name` (cols × rows). A SmarterQuant tensor
 * gets its four block types and its permutation from the reader's typed view
 * (checked at open; the permutation lives as long as the reader). need_dot:
 * the weight is multiplied (else only its rows are looked up). */
static sq_status load_weight(sq_model *m, const char *name, int64_t cols, int64_t rows, bool need_dot, sq_weight *w,
                             sq_error *err)
{
    const sq_gguf_tensor *t = sq_gguf_find_tensor(m->g, name);
    if (!t) return sq_error_set(err, SQ_ENOTFOUND, "tensor '%s' is missing", name);
    sq_status st = check_shape(t, cols, rows, err);
    if (st) return st;
    if (!t->smarterquant) {
        if (!type_usable(t->type, need_dot))
            return sq_error_set(err, SQ_EUNSUPPORTED, "tensor '%s': type %s (%d) is not supported by this build",
                                name, sq_type_name(t->type), t->type);
        st = sq_weight_plain(w, t->data, t->type, rows, cols, err);
        if (st) {
            sq_error_prefix(err, "tensor '%s'", name);
            return st;
        }
    } else {
        for (int s = 0; s < 4; s++)
            if (!type_usable(t->sq.types[s], need_dot))
                return sq_error_set(err, SQ_EUNSUPPORTED,
                                    "tensor '%s': SmarterQuant block type %s (%d) is not supported by this build",
                                    name, sq_type_name(t->sq.types[s]), t->sq.types[s]);
        st = sq_weight_mixed(w, t->data, t->sq.types, t->sq.perm, rows, cols, err);
        if (st) {
            sq_error_prefix(err, "tensor '%s'", name);
            return st;
        }
        m->hp.n_sq_tensors++;
    }
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)(rows * cols);
    return SQ_OK;
}

/* A vector of n floats (norm weights, rope factors): used in place when F32,
 * converted once into an owned buffer when F16 or BF16. */
static sq_status load_vector(sq_model *m, const char *name, int64_t n, bool optional, const float **out,
                             sq_error *err)
{
    *out = NULL;
    const sq_gguf_tensor *t = sq_gguf_find_tensor(m->g, name);
    if (!t) {
        if (optional) return SQ_OK;
        return sq_error_set(err, SQ_ENOTFOUND, "tensor '%s' is missing", name);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return sq_error_set(err, SQ_EFORMAT, "tensor '%s' has shape [%lld, %lld], expected [%lld]", name,
                            (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    if (t->type == SQ_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return SQ_OK;
    }
    if (t->type != SQ_TYPE_F32 && t->type != SQ_TYPE_F16 && t->type != SQ_TYPE_BF16)
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
    sq_status st = own(m, v, err);
    if (st) return st;
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

/* Reads hyperparameters and tensor views; see sq_model_load. */
static sq_status build(sq_model *m, sq_error *err)
{
    const sq_gguf *g = m->g;
    sq_hparams *hp = &m->hp;
    sq_gguf_str arch = {0};
    sq_error e = {0};
    sq_status st = sq_gguf_get_str(g, "general.architecture", &arch, &e);
    if (st == SQ_ENOTFOUND) return sq_error_set(err, st, "metadata key 'general.architecture' is missing");
    if (st) return sq_error_set(err, st, "%s", e.msg);
    if (arch.len != 5 || memcmp(arch.ptr, "llama", 5) != 0)
        return sq_error_set(err, SQ_EUNSUPPORTED, "architecture '%.*s' is not supported (only 'llama')",
                            (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);

    if ((st = hp_int(g, "llama.embedding_length", -1, &hp->n_embd, err))) return st;
    if ((st = hp_int(g, "llama.block_count", -1, &hp->n_layer, err))) return st;
    if ((st = hp_int(g, "llama.attention.head_count", -1, &hp->n_head, err))) return st;
    if ((st = hp_int(g, "llama.attention.head_count_kv", hp->n_head, &hp->n_head_kv, err))) return st;
    if ((st = hp_int(g, "llama.feed_forward_length", -1, &hp->n_ff, err))) return st;
    if ((st = hp_int(g, "llama.context_length", 2048, &hp->n_ctx_train, err))) return st;
    if (hp->n_embd % hp->n_head != 0)
        return sq_error_set(err, SQ_EFORMAT, "llama.embedding_length %lld is not a multiple of head_count %lld",
                            (long long)hp->n_embd, (long long)hp->n_head);
    if ((st = hp_int(g, "llama.attention.key_length", hp->n_embd / hp->n_head, &hp->head_dim, err))) return st;
    if ((st = hp_int(g, "llama.rope.dimension_count", hp->head_dim, &hp->n_rot, err))) return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return sq_error_set(err, SQ_EFORMAT, "head_count %lld is not a multiple of head_count_kv %lld",
                            (long long)hp->n_head, (long long)hp->n_head_kv);
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return sq_error_set(err, SQ_EFORMAT, "llama.rope.dimension_count %lld does not fit head size %lld",
                            (long long)hp->n_rot, (long long)hp->head_dim);
    if ((st = hp_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps, err))) return st;
    if ((st = hp_float(g, "llama.rope.freq_base", 10000.0f, &hp->rope_base, err))) return st;
    hp->rope_scale = 1.0f;
    {
        sq_gguf_str stype = {0};
        if (sq_gguf_get_str(g, "llama.rope.scaling.type", &stype, NULL) == SQ_OK && stype.len == 6 &&
            memcmp(stype.ptr, "linear", 6) == 0) {
            float f = 1.0f;
            if ((st = hp_float(g, "llama.rope.scaling.factor", 1.0f, &f, err))) return st;
            if (f > 0) hp->rope_scale = 1.0f / f;
        }
    }

    const sq_gguf_tensor *te = sq_gguf_find_tensor(g, "token_embd.weight");
    if (!te) return sq_error_set(err, SQ_ENOTFOUND, "tensor 'token_embd.weight' is missing");
    hp->n_vocab = te->ne[1];
    {
        int64_t idx;
        sq_gguf_type et;
        uint64_t n;
        if (sq_gguf_get_arr(g, "tokenizer.ggml.tokens", &idx, &et, &n, NULL) == SQ_OK && (int64_t)n != hp->n_vocab)
            return sq_error_set(err, SQ_EFORMAT,
                                "tensor 'token_embd.weight' has %lld rows but the vocabulary has %llu tokens",
                                (long long)hp->n_vocab, (unsigned long long)n);
    }
    const int64_t E = hp->n_embd, q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    if ((st = load_weight(m, "token_embd.weight", E, hp->n_vocab, false, &m->tok_embd, err))) return st;
    if ((st = load_vector(m, "output_norm.weight", E, false, &m->output_norm, err))) return st;
    if (sq_gguf_find_tensor(g, "output.weight")) {
        if ((st = load_weight(m, "output.weight", E, hp->n_vocab, true, &m->output, err))) return st;
    } else {
        hp->tied_output = true;
        const sq_gguf_tensor *t = te;
        bool ok = true;
        if (t->smarterquant) {
            for (int s = 0; s < 4; s++) ok = ok && sq_blocks_can_dot(t->sq.types[s]);
        } else {
            ok = sq_blocks_can_dot(t->type);
        }
        if (!ok)
            return sq_error_set(err, SQ_EUNSUPPORTED,
                                "tensor 'token_embd.weight' (used as the output projection): its type cannot be "
                                "multiplied by this build");
        m->output = m->tok_embd;
    }
    if ((st = load_vector(m, "rope_freqs.weight", hp->n_rot / 2, true, &m->rope_freqs, err))) return st;

    m->layers = calloc((size_t)hp->n_layer, sizeof(sq__layer));
    if (!m->layers) return sq_error_set(err, SQ_ENOMEM, "out of memory for %lld layers", (long long)hp->n_layer);
    for (int64_t l = 0; l < hp->n_layer; l++) {
        sq__layer *L = &m->layers[l];
        char nm[96];
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%lld." s, (long long)l), nm)
        if ((st = load_vector(m, NAME("attn_norm.weight"), E, false, &L->attn_norm, err))) return st;
        if ((st = load_weight(m, NAME("attn_q.weight"), E, q_dim, true, &L->wq, err))) return st;
        if ((st = load_weight(m, NAME("attn_k.weight"), E, kv_dim, true, &L->wk, err))) return st;
        if ((st = load_weight(m, NAME("attn_v.weight"), E, kv_dim, true, &L->wv, err))) return st;
        if ((st = load_weight(m, NAME("attn_output.weight"), q_dim, E, true, &L->wo, err))) return st;
        if ((st = load_vector(m, NAME("ffn_norm.weight"), E, false, &L->ffn_norm, err))) return st;
        if ((st = load_weight(m, NAME("ffn_gate.weight"), E, hp->n_ff, true, &L->gate, err))) return st;
        if ((st = load_weight(m, NAME("ffn_up.weight"), E, hp->n_ff, true, &L->up, err))) return st;
        if ((st = load_weight(m, NAME("ffn_down.weight"), hp->n_ff, E, true, &L->down, err))) return st;
#undef NAME
        share_perm(L->wq.perm ? (sq_weight *[]){&L->wq, &L->wk, &L->wv} : NULL, 3, &L->qkv_perm);
        share_perm(L->gate.perm ? (sq_weight *[]){&L->gate, &L->up} : NULL, 2, &L->gu_perm);
    }
    describe_types(m);
    return SQ_OK;
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
