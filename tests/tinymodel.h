/*
 * tests/tinymodel.h — a random llama model of any small shape, written with
 * the GGUF writer (no vocabulary: token ids only), for tests that check
 * numerics on a whole model (the backward pass against finite differences).
 * Weights are F32 or F16; optionally stored as SmarterQuant tensors of that
 * type with random permutations, q/k/v and gate/up sharing theirs.
 */
#ifndef SQ_TEST_TINYMODEL_H
#define SQ_TEST_TINYMODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/gguf.h"
#include "sq/types.h"

typedef struct tm_shape {
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    int type;         /* SQ_TYPE_F32 or SQ_TYPE_F16 for the 2-D weights */
    bool tied;        /* no output.weight */
    bool sq_shared;   /* SmarterQuant tensors, q/k/v and gate/up sharing one permutation each */
    uint64_t seed;
} tm_shape;

static inline float tm_rand(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((*s >> 11) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

/* A random permutation of n from seed s. */
static inline void tm_perm(int32_t *p, int n, uint64_t *s)
{
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        const int k = (int)(((uint32_t)(tm_rand(s) * 8388608.0f + 8388608.0f)) % (uint32_t)(i + 1));
        int32_t t = p[i];
        p[i] = p[k];
        p[k] = t;
    }
}

/* The SmarterQuant keys of tensor name with permutation perm (cols entries). */
static inline sq_status tm_sq_keys(sq_gguf_writer *w, const char *name, const int32_t *perm, int cols, int type,
                                   sq_error *err)
{
    char key[128], bt[64], *val = malloc((size_t)cols * 8 + 8);
    if (!val) return SQ_ENOMEM;
    size_t off = (size_t)sprintf(val, "[");
    for (int j = 0; j < cols; j++) off += (size_t)sprintf(val + off, j ? ",%d" : "%d", perm[j]);
    sprintf(val + off, "]");
    snprintf(bt, sizeof bt, "[%d,%d,%d,%d]", type, type, type, type);
    snprintf(key, sizeof key, "%s.smarterquant.enabled", name);
    sq_status st = sq_gguf_writer_set_bool(w, key, true, err);
    snprintf(key, sizeof key, "%s.smarterquant.permutation", name);
    if (!st) st = sq_gguf_writer_set_str(w, key, val, err);
    snprintf(key, sizeof key, "%s.smarterquant.block_types", name);
    if (!st) st = sq_gguf_writer_set_str(w, key, bt, err);
    free(val);
    return st;
}

typedef struct tm_tensor {
    char name[64];
    int cols, rows; /* rows 1: a norm vector (F32, around 1) */
    float scale;
    int perm_group; /* SmarterQuant: 0 none, 1 q/k/v, 2 gate/up, 3 its own */
} tm_tensor;

/* The model's tensors in file order; returns how many. */
static inline int tm_tensors(const tm_shape *s, tm_tensor *t)
{
    int n = 0;
#define TM_ADD(c, r, sc, pg, ...)                                          \
    do {                                                                   \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);                \
        t[n].cols = (c), t[n].rows = (r), t[n].scale = (sc), t[n].perm_group = (pg); \
        n++;                                                               \
    } while (0)
    const int E = s->n_embd, Q = s->n_head * s->head_dim, KV = s->n_head_kv * s->head_dim;
    TM_ADD(E, s->n_vocab, 1.0f, 0, "token_embd.weight");
    TM_ADD(E, 1, 0.2f, 0, "output_norm.weight");
    if (!s->tied) TM_ADD(E, s->n_vocab, 0.5f, 3, "output.weight");
    for (int l = 0; l < s->n_layer; l++) {
        TM_ADD(E, 1, 0.2f, 0, "blk.%d.attn_norm.weight", l);
        TM_ADD(E, Q, 0.6f, 1, "blk.%d.attn_q.weight", l);
        TM_ADD(E, KV, 0.6f, 1, "blk.%d.attn_k.weight", l);
        TM_ADD(E, KV, 0.5f, 1, "blk.%d.attn_v.weight", l);
        TM_ADD(Q, E, 0.3f, 3, "blk.%d.attn_output.weight", l);
        TM_ADD(E, 1, 0.2f, 0, "blk.%d.ffn_norm.weight", l);
        TM_ADD(E, s->n_ff, 0.5f, 2, "blk.%d.ffn_gate.weight", l);
        TM_ADD(E, s->n_ff, 0.5f, 2, "blk.%d.ffn_up.weight", l);
        TM_ADD(s->n_ff, E, 0.3f, 3, "blk.%d.ffn_down.weight", l);
    }
#undef TM_ADD
    return n;
}

/* Writes one tensor's data (rows of cols, permuted through perm when given). */
static inline sq_status tm_write_data(sq_gguf_writer *w, const tm_tensor *t, int type, const int32_t *perm,
                                      uint64_t *seed, sq_error *err)
{
    float *row = malloc(sizeof(float) * (size_t)t->cols), *pr = malloc(sizeof(float) * (size_t)t->cols);
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)t->cols);
    sq_status st = row && pr && h ? SQ_OK : SQ_ENOMEM;
    for (int r = 0; r < t->rows && !st; r++) {
        for (int c = 0; c < t->cols; c++) row[c] = (t->rows == 1 ? 1.0f : 0.0f) + t->scale * tm_rand(seed);
        for (int c = 0; c < t->cols; c++) pr[c] = perm ? row[perm[c]] : row[c];
        if (type == SQ_TYPE_F16) {
            for (int c = 0; c < t->cols; c++) h[c] = sq_f32_to_fp16(pr[c]);
            st = sq_gguf_writer_write(w, h, sizeof(uint16_t) * (size_t)t->cols, err);
        } else {
            st = sq_gguf_writer_write(w, pr, sizeof(float) * (size_t)t->cols, err);
        }
    }
    free(row);
    free(pr);
    free(h);
    return st;
}

/* The hyperparameter keys of the shape. */
static inline sq_status tm_keys(sq_gguf_writer *w, const tm_shape *s, sq_error *err)
{
    sq_status st;
    if ((st = sq_gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->n_ctx, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_head_kv, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)s->head_dim, err)) ||
        (st = sq_gguf_writer_set_u32(w, "llama.attention.value_length", (uint32_t)s->head_dim, err)) ||
        (st = sq_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err)) ||
        (st = sq_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f, err)))
        return st;
    return sq_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)s->head_dim, err);
}

/* Writes the model to path. */
static inline sq_status tm_write(const char *path, const tm_shape *s, sq_error *err)
{
    tm_tensor t[8 + 9 * 16];
    if (s->n_layer > 16) return SQ_EINVAL;
    const int n = tm_tensors(s, t);
    sq_gguf_writer *w = NULL;
    sq_status st = sq_gguf_writer_open(path, &w, err);
    if (!st) st = tm_keys(w, s, err);
    int32_t *perms[8 + 9 * 16] = {0};
    uint64_t ps = s->seed * 7 + 3;
    for (int i = 0; i < n && !st && s->sq_shared; i++) {
        if (!t[i].perm_group) continue;
        perms[i] = malloc(sizeof(int32_t) * (size_t)t[i].cols);
        if (!perms[i]) st = SQ_ENOMEM;
        /* k, v share q's permutation; up shares gate's */
        else if (t[i].perm_group == 1 && !strstr(t[i].name, "attn_q")) memcpy(perms[i], perms[strstr(t[i].name, "attn_k") ? i - 1 : i - 2], sizeof(int32_t) * (size_t)t[i].cols);
        else if (t[i].perm_group == 2 && strstr(t[i].name, "ffn_up")) memcpy(perms[i], perms[i - 1], sizeof(int32_t) * (size_t)t[i].cols);
        else tm_perm(perms[i], t[i].cols, &ps);
        if (!st) st = tm_sq_keys(w, t[i].name, perms[i], t[i].cols, s->type, err);
    }
    for (int i = 0; i < n && !st; i++) {
        const int ty = t[i].rows == 1 ? SQ_TYPE_F32 : s->type;
        const int64_t ne[2] = {t[i].cols, t[i].rows};
        st = sq_gguf_writer_add_tensor(w, t[i].name, t[i].rows == 1 ? 1 : 2, ne, ty,
                                       sq_row_size(ty, t[i].cols) * (uint64_t)t[i].rows, err);
    }
    uint64_t seed = s->seed ? s->seed : 1;
    for (int i = 0; i < n && !st; i++)
        st = tm_write_data(w, &t[i], t[i].rows == 1 ? SQ_TYPE_F32 : s->type, perms[i], &seed, err);
    if (!st) {
        st = sq_gguf_writer_finish(w, err);
        w = NULL;
    }
    sq_gguf_writer_abort(w);
    for (int i = 0; i < n; i++) free(perms[i]);
    return st;
}

#endif
