/*
 * forward.c — the llama forward pass over a batch of tokens, the KV cache,
 * and the context that owns both.
 *
 * Layout: activations are token-major, one row of n_embd (or q/kv/ffn width)
 * floats per token of the batch, so that every weight product is one
 * sq_weight_matmul over all tokens of the batch (n > 1 rows: matrix-matrix;
 * one token: matrix-vector). The KV cache holds, per layer, n_ctx rows of
 * n_head_kv*head_dim floats for V, and K (post-RoPE) transposed per KV head:
 * [n_head_kv][head_dim][n_ctx_pad], so that attention can score a block of
 * keys against a block of queries as an outer product (attn_block.h).
 *
 * With kv_type F16 the cache holds fp16-rounded values, and Q and the softmax
 * weights are rounded to fp16 before their products, as in llama.cpp's CPU
 * attention with its default f16 cache (K·Q and P·V are F16 products there);
 * with F32 everything stays in float. Measured on the demo model, both agree
 * with llama.cpp's per-chunk perplexities within 0.005% (docs/engine.md).
 *
 * Ownership: the context owns every buffer here and its thread pool; the
 * model (weights in the map) is borrowed and must outlive the context.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "sq/blocks.h"
#include "sq/matmul.h"

struct sq_context {
    const sq_model *m;
    int n_ctx, n_batch, n_threads;
    int n_ctx_pad; /* n_ctx rounded up to SQ_ATTN_KEYS: the row length of the transposed K cache */
    bool kv_f16;
    int n_past;
    sq_threadpool *tp;
    int64_t q_dim, kv_dim;
    float *kt;                          /* [n_layer][n_head_kv][head_dim][n_ctx_pad] */
    float *vc;                          /* [n_layer][n_ctx][kv_dim] */
    float *x, *xn, *q, *k, *v, *att;    /* [n_batch][...] */
    float *xg;                          /* [n_batch][max(n_embd)] gathered input of shared-permutation products */
    float *g, *u;                       /* [n_batch][n_ff] */
    float *rope;                        /* [n_batch][n_rot] the batch's RoPE cos/sin pairs (layer 0 fills them) */
    float *scores;                      /* [n_threads][SQ_ATTN_ROWS][n_ctx_pad] attention scores */
    void *work;
    size_t work_size;
    float *logits;
    int64_t logits_cap; /* rows */
    int n_logits;
    sq_matmul_hook hook; /* sq_context_set_matmul_hook: sees every weight product's input */
    void *hook_user;
};

/* ---- attention (scalar reference; SIMD versions when the CPU has them) ---- */

/* sq__attn_block, one row at a time in plain float arithmetic: the scores in
 * head-dimension order, the softmax as ggml takes it (max subtracted, double
 * sum, one float reciprocal), the value sum in key order. */
void sq__attn_block_ref(const sq__attn_block *b)
{
    for (int r = 0; r < b->m; r++) {
        const int n = b->nk[r];
        float *s = b->sc + (size_t)r * b->sc_stride;
        for (int j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int d = 0; d < b->hd; d++) acc += b->q[r][d] * b->kt[(size_t)d * b->kt_stride + (size_t)j];
            s[j] = acc * b->scale;
        }
        float mx = -INFINITY;
        for (int j = 0; j < n; j++)
            if (s[j] > mx) mx = s[j];
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += (double)s[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++) s[j] *= inv;
        if (b->f16) sq__round_fp16(s, n);
        float *o = b->o[r];
        memset(o, 0, sizeof(float) * (size_t)b->hd);
        for (int j = 0; j < n; j++) {
            const float *vr = b->v + (size_t)j * b->v_stride;
            for (int d = 0; d < b->hd; d++) o[d] += s[j] * vr[d];
        }
    }
}

typedef struct attn_fns {
    void (*block)(const sq__attn_block *);
    void (*round)(float *, int64_t);
    void (*swiglu)(const float *, const float *, float *, int64_t);
    void (*rmsnorm_rows)(const float *, const float *, float *, int64_t, float, size_t, int);
} attn_fns;

/* sq__rmsnorm of nt rows stride floats apart, one at a time. */
static void rmsnorm_rows(const float *x, const float *w, float *y, int64_t n, float eps, size_t stride, int nt)
{
    for (int r = 0; r < nt; r++) sq__rmsnorm(x + (size_t)r * stride, w, y + (size_t)r * stride, n, eps);
}

/* The attention kernels (and SwiGLU) to use: the AVX-512 or AVX2+FMA+F16C ones when the
 * CPU has them and the block kernels are not forced to scalar (SQ_FORCE_SCALAR). */
static attn_fns pick_fns(void)
{
    attn_fns f = {sq__attn_block_ref, sq__round_fp16, sq__swiglu, rmsnorm_rows};
#if defined(__x86_64__)
    /* sq_blocks_isa() >= AVX2 already means AVX2 + FMA + F16C (dispatch.c). */
    if (sq_blocks_isa() >= SQ_ISA_AVX2) {
        f.block = sq__attn_block_avx2;
        f.round = sq__round_fp16_avx2;
    }
    if (sq_blocks_isa() >= SQ_ISA_AVX512) {
        f.block = sq__attn_block_avx512;
        f.swiglu = sq__swiglu_avx512;
        f.rmsnorm_rows = sq__rmsnorm_rows_avx512;
    }
#endif
    return f;
}

/* ---- context ---- */

sq_context_params sq_context_default_params(void)
{
    sq_context_params p = {0, 512, 1, SQ_TYPE_F16};
    return p;
}

static void *zalloc(size_t n)
{
    void *p = sq_aligned_alloc(n);
    if (p) memset(p, 0, n);
    return p;
}

/* Largest work buffer any product of the model needs for n rows. */
static size_t max_work(const sq_model *m, int64_t n)
{
    size_t w = sq_weight_matmul_work_size(&m->output, n);
    for (int64_t l = 0; l < m->hp.n_layer; l++) {
        const sq__layer *L = &m->layers[l];
        const sq_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int i = 0; i < 7; i++) {
            size_t s = sq_weight_matmul_work_size(ws[i], n);
            if (s > w) w = s;
        }
    }
    return w;
}

sq_status sq_context_create(const sq_model *m, const sq_context_params *pp, sq_context **out, sq_error *err)
{
    *out = NULL;
    sq_context_params p = pp ? *pp : sq_context_default_params();
    const sq_hparams *hp = &m->hp;
    if (p.n_ctx <= 0) p.n_ctx = (int)hp->n_ctx_train;
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_threads <= 0) p.n_threads = 1;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.kv_type != SQ_TYPE_F32 && p.kv_type != SQ_TYPE_F16)
        return sq_error_set(err, SQ_EINVAL, "KV cache type %s is not supported (f32 or f16)", sq_type_name(p.kv_type));
    if (p.n_ctx > (1 << 24)) return sq_error_set(err, SQ_ERANGE, "context length %d is too large", p.n_ctx);
    sq_context *c = calloc(1, sizeof *c);
    if (!c) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    c->m = m;
    c->n_ctx = p.n_ctx;
    c->n_batch = p.n_batch;
    c->kv_f16 = p.kv_type == SQ_TYPE_F16;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    c->n_ctx_pad = (p.n_ctx + SQ_ATTN_KEYS - 1) / SQ_ATTN_KEYS * SQ_ATTN_KEYS;
    c->tp = p.n_threads > 1 ? sq_threadpool_create(p.n_threads) : NULL;
    if (p.n_threads > 1 && !c->tp) {
        free(c);
        return sq_error_set(err, SQ_ENOMEM, "cannot start %d threads", p.n_threads);
    }
    c->n_threads = c->tp ? sq_threadpool_n_threads(c->tp) : 1;
    const size_t B = (size_t)c->n_batch, F = sizeof(float);
    const size_t kv_bytes = (size_t)hp->n_layer * (size_t)c->n_ctx * (size_t)c->kv_dim * F;
    c->kt = zalloc((size_t)hp->n_layer * (size_t)c->n_ctx_pad * (size_t)c->kv_dim * F);
    c->vc = zalloc(kv_bytes);
    c->x = zalloc(B * (size_t)hp->n_embd * F);
    c->xn = zalloc(B * (size_t)hp->n_embd * F);
    c->xg = zalloc(B * (size_t)hp->n_embd * F);
    c->q = zalloc(B * (size_t)c->q_dim * F);
    c->k = zalloc(B * (size_t)c->kv_dim * F);
    c->v = zalloc(B * (size_t)c->kv_dim * F);
    c->att = zalloc(B * (size_t)c->q_dim * F);
    c->g = zalloc(B * (size_t)hp->n_ff * F);
    c->u = zalloc(B * (size_t)hp->n_ff * F);
    c->rope = zalloc(B * (size_t)(hp->n_rot > 0 ? hp->n_rot : 1) * F);
    c->scores = zalloc((size_t)c->n_threads * SQ_ATTN_ROWS * (size_t)c->n_ctx_pad * F);
    c->work_size = max_work(m, c->n_batch);
    c->work = zalloc(c->work_size);
    if (!c->kt || !c->vc || !c->x || !c->xn || !c->xg || !c->q || !c->k || !c->v || !c->att || !c->g || !c->u || !c->rope || !c->scores ||
        !c->work) {
        sq_context_free(c);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for a context of %d tokens (KV cache %zu bytes)",
                            p.n_ctx, 2 * kv_bytes);
    }
    *out = c;
    return SQ_OK;
}

void sq_context_free(sq_context *c)
{
    if (!c) return;
    sq_threadpool_free(c->tp);
    sq_aligned_free(c->kt);
    sq_aligned_free(c->vc);
    sq_aligned_free(c->x);
    sq_aligned_free(c->xn);
    sq_aligned_free(c->xg);
    sq_aligned_free(c->q);
    sq_aligned_free(c->k);
    sq_aligned_free(c->v);
    sq_aligned_free(c->att);
    sq_aligned_free(c->g);
    sq_aligned_free(c->u);
    sq_aligned_free(c->rope);
    sq_aligned_free(c->scores);
    sq_aligned_free(c->work);
    free(c->logits);
    free(c);
}

int sq_context_n_ctx(const sq_context *c) { return c->n_ctx; }
int sq_context_n_past(const sq_context *c) { return c->n_past; }
const sq_model *sq_context_model(const sq_context *c) { return c->m; }
void sq_kv_clear(sq_context *c) { c->n_past = 0; }
void sq_kv_truncate(sq_context *c, int n)
{
    if (n >= 0 && n < c->n_past) c->n_past = n;
}
const float *sq_get_logits(const sq_context *c) { return c->logits; }

void sq_context_set_matmul_hook(sq_context *c, sq_matmul_hook fn, void *user)
{
    c->hook = fn;
    c->hook_user = fn ? user : NULL;
}

/* Shows the input of one weight product to the hook under the weight's GGUF
 * name (llama's tensor naming: blk.L.ROLE.weight, output.weight). */
static void call_hook(sq_context *c, const sq_weight *w, const float *X, int64_t nb, const char *what, int64_t layer)
{
    char name[96];
    if (layer >= 0) snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)layer, what);
    else snprintf(name, sizeof name, "%s.weight", what);
    c->hook(c->hook_user, name, X, nb, w->cols);
}

/* ---- attention ---- */

typedef struct attn_job {
    sq_context *c;
    int64_t layer;
    int nb, pos0;
    attn_fns f;
    int qb, hb;          /* a task: qb tokens × hb heads of one KV head's group */
    int64_t n_qblk, n_hblk, n_tasks;
    atomic_llong next;   /* next task to take */
} attn_job;

/* Causal grouped-query attention, a block of query rows at a time: a task is
 * (query tokens [i0, i0+qb), heads [h0, h0+hb) of one KV head's group), at
 * most SQ_ATTN_ROWS rows that share their keys and values. Threads take tasks
 * from a shared counter, the late tokens (the longest prefixes) first. */
static void attention_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    attn_job *J = ctx;
    sq_context *c = J->c;
    const sq_hparams *hp = &c->m->hp;
    const int hd = (int)hp->head_dim;
    const int64_t group = hp->n_head / hp->n_head_kv;
    const float *ktl = c->kt + (size_t)J->layer * (size_t)hp->n_head_kv * (size_t)hd * (size_t)c->n_ctx_pad;
    const float *vl = c->vc + (size_t)J->layer * (size_t)c->n_ctx * (size_t)c->kv_dim;
    sq__attn_block b;
    memset(&b, 0, sizeof b);
    b.hd = hd;
    b.kt_stride = (size_t)c->n_ctx_pad;
    b.v_stride = (size_t)c->kv_dim;
    b.scale = 1.0f / sqrtf((float)hd);
    b.f16 = c->kv_f16;
    b.sc = c->scores + (size_t)ith * SQ_ATTN_ROWS * (size_t)c->n_ctx_pad;
    b.sc_stride = (size_t)c->n_ctx_pad;
    for (;;) {
        const int64_t t = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (t >= J->n_tasks) break;
        const int64_t per_qblk = hp->n_head_kv * J->n_hblk;
        const int i0 = (int)(J->n_qblk - 1 - t / per_qblk) * J->qb;
        const int64_t kvh = (t % per_qblk) / J->n_hblk;
        const int64_t h0 = kvh * group + (t % J->n_hblk) * J->hb;
        const int i1 = i0 + J->qb < J->nb ? i0 + J->qb : J->nb;
        const int64_t h1 = h0 + J->hb < (kvh + 1) * group ? h0 + J->hb : (kvh + 1) * group;
        b.m = 0;
        for (int i = i0; i < i1; i++)
            for (int64_t h = h0; h < h1; h++, b.m++) {
                const size_t off = (size_t)i * (size_t)c->q_dim + (size_t)h * (size_t)hd;
                b.q[b.m] = c->q + off;
                b.o[b.m] = c->att + off;
                b.nk[b.m] = J->pos0 + i + 1;
            }
        b.kt = ktl + (size_t)kvh * (size_t)hd * (size_t)c->n_ctx_pad;
        b.v = vl + (size_t)kvh * (size_t)hd;
        J->f.block(&b);
    }
}

/* ---- the forward pass ---- */

/* Y = W X for nb rows (a thin wrapper naming the tensor role on failure);
 * X_orig is X before a shared-permutation gather (X itself otherwise). */
static sq_status mm(sq_context *c, const sq_weight *w, const float *X, const float *X_orig, int64_t nb, float *Y,
                    const char *what, int64_t layer, sq_error *err)
{
    /* the hook sees the input in the original column order, also when X was gathered for a shared permutation */
    if (c->hook) call_hook(c, w, X_orig, nb, what, layer);
    sq_status st = sq_weight_matmul(c->tp, w, X, nb, Y, c->work, c->work_size, err);
    if (st) sq_error_prefix(err, "layer %lld %s", (long long)layer, what);
    return st;
}

/* Products of one input by several weights (q, k, v; gate, up): plain
 * weights whose activation types agree take one sq_matmul_shared, which
 * converts the input once (same results); otherwise one mm each. */
static sq_status mm_group(sq_context *c, int count, const sq_weight *const *w, float *const *Y, const float *X,
                          const float *X_orig, int64_t nb, const char *const *what, int64_t layer, sq_error *err)
{
    bool shared = nb > 1 && count <= 3;
    for (int i = 0; i < count && shared; i++)
        shared = !w[i]->mixed && !w[i]->perm && w[i]->cols == w[0]->cols &&
                 sq_type_info_get(w[i]->type)->vec_dot_type == sq_type_info_get(w[0]->type)->vec_dot_type;
    if (!shared) {
        for (int i = 0; i < count; i++) {
            sq_status st = mm(c, w[i], X, X_orig, nb, Y[i], what[i], layer, err);
            if (st) return st;
        }
        return SQ_OK;
    }
    sq_matmul_term t[3];
    for (int i = 0; i < count; i++) {
        if (c->hook) call_hook(c, w[i], X_orig, nb, what[i], layer);
        t[i] = (sq_matmul_term){w[i]->type, w[i]->data, w[i]->rows, w[i]->row_bytes, Y[i]};
    }
    sq_status st = sq_matmul_shared(c->tp, t, count, w[0]->cols, X, nb, c->work, c->work_size, err);
    if (st) sq_error_prefix(err, "layer %lld %s..%s", (long long)layer, what[0], what[count - 1]);
    return st;
}

/* The input of products sharing a permutation, gathered once per token
 * (x'[j] = x[perm[j]]); without one, x itself. */
static const float *gather_shared(sq_context *c, const int32_t *perm, const float *x, int nb)
{
    if (!perm) return x;
    const int64_t E = c->m->hp.n_embd;
    for (int i = 0; i < nb; i++) sq_perm_gather(perm, E, x + (size_t)i * (size_t)E, c->xg + (size_t)i * (size_t)E);
    return c->xg;
}

/* Appends the batch's K (transposed per KV head) and V rows of layer l to
 * the cache at positions pos0... */
static void store_kv(sq_context *c, int64_t l, int nb, int pos0)
{
    const int64_t n_kv = c->m->hp.n_head_kv, hd = c->m->hp.head_dim;
    float *ktl = c->kt + (size_t)l * (size_t)n_kv * (size_t)hd * (size_t)c->n_ctx_pad;
    for (int64_t e = 0; e < n_kv * hd; e++) {
        float *dst = ktl + (size_t)e * (size_t)c->n_ctx_pad + (size_t)pos0;
        for (int i = 0; i < nb; i++) dst[i] = c->k[(size_t)i * (size_t)c->kv_dim + (size_t)e];
    }
    float *vl = c->vc + ((size_t)l * (size_t)c->n_ctx + (size_t)pos0) * (size_t)c->kv_dim;
    memcpy(vl, c->v, sizeof(float) * (size_t)nb * (size_t)c->kv_dim);
}

/* The per-token elementwise stages of a layer, split by tokens across the
 * pool for a batch (each token's arithmetic is the same as on one thread). */
enum tok_stage { STAGE_NORM, STAGE_ADD_NORM, STAGE_ROPE, STAGE_SWIGLU };

typedef struct tok_job {
    sq_context *c;
    enum tok_stage stage;
    int nb, pos0;
    const float *norm; /* STAGE_NORM / STAGE_ADD_NORM: the norm's weights */
    attn_fns f;
    bool first_layer;  /* STAGE_ROPE: compute the batch's cos/sin pairs */
} tok_job;

static void tok_worker(void *ctx, int ith, int nth)
{
    tok_job *J = ctx;
    sq_context *c = J->c;
    const sq_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd;
    const int i0 = (int)((int64_t)J->nb * ith / nth), i1 = (int)((int64_t)J->nb * (ith + 1) / nth);
    if (J->stage == STAGE_NORM || J->stage == STAGE_ADD_NORM) {
        /* up to 8 tokens per call: their norms' sums run side by side */
        for (int i = i0; i < i1; i += 8) {
            const int nt = i1 - i < 8 ? i1 - i : 8;
            float *x = c->x + (size_t)i * (size_t)E, *xn = c->xn + (size_t)i * (size_t)E;
            if (J->stage == STAGE_ADD_NORM)
                for (int64_t e = 0; e < (int64_t)nt * E; e++) x[e] += xn[e];
            J->f.rmsnorm_rows(x, J->norm, xn, E, hp->rms_eps, (size_t)E, nt);
        }
        return;
    }
    for (int i = i0; i < i1; i++) {
        switch (J->stage) {
        case STAGE_ADD_NORM:
        case STAGE_NORM: break; /* above */
        case STAGE_ROPE: {
            float *q = c->q + (size_t)i * (size_t)c->q_dim, *k = c->k + (size_t)i * (size_t)c->kv_dim;
            float *cs = c->rope + (size_t)i * (size_t)hp->n_rot;
            if (J->first_layer)
                sq__rope_cache(cs, (int)hp->n_rot, J->pos0 + i, hp->rope_base, hp->rope_scale, c->m->rope_freqs);
            sq__rope_apply(q, (int)hp->n_head, (int)hp->head_dim, (int)hp->n_rot, cs);
            sq__rope_apply(k, (int)hp->n_head_kv, (int)hp->head_dim, (int)hp->n_rot, cs);
            if (c->kv_f16) {
                J->f.round(q, c->q_dim);
                J->f.round(k, c->kv_dim);
                J->f.round(c->v + (size_t)i * (size_t)c->kv_dim, c->kv_dim);
            }
            break;
        }
        case STAGE_SWIGLU: {
            float *g = c->g + (size_t)i * (size_t)hp->n_ff;
            J->f.swiglu(g, c->u + (size_t)i * (size_t)hp->n_ff, g, hp->n_ff);
            break;
        }
        }
    }
}

/* Runs one stage over the batch: on the pool for a batch, inline for a token. */
static void tok_stage(sq_context *c, enum tok_stage stage, int nb, int pos0, const float *norm, attn_fns f,
                      bool first_layer)
{
    tok_job J = {c, stage, nb, pos0, norm, f, first_layer};
    if (nb >= 8 && c->tp)
        sq_threadpool_run(c->tp, tok_worker, &J);
    else
        tok_worker(&J, 0, 1);
}

/* Runs nb tokens at positions pos0.. through the model; writes logits of
 * tokens out_from..nb-1 to logits (row-major, n_vocab each). */
static sq_status forward_batch(sq_context *c, const int32_t *tok, int nb, int pos0, int out_from, float *logits,
                               sq_error *err)
{
    const sq_model *m = c->m;
    const sq_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    const attn_fns f = pick_fns();
    sq_status st;

    for (int i = 0; i < nb; i++) sq_weight_get_row(&m->tok_embd, tok[i], c->x + (size_t)i * (size_t)E);

    for (int64_t l = 0; l < hp->n_layer; l++) {
        const sq__layer *L = &m->layers[l];
        /* the residual of the previous layer's FFN is added here, before the norm */
        tok_stage(c, l == 0 ? STAGE_NORM : STAGE_ADD_NORM, nb, pos0, L->attn_norm, f, l == 0);
        const float *qin = gather_shared(c, L->qkv_perm, c->xn, nb);
        const sq_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {c->q, c->k, c->v};
        static const char *const qkv_names[3] = {"attn_q", "attn_k", "attn_v"};
        if ((st = mm_group(c, 3, qkv, qkv_out, qin, c->xn, nb, qkv_names, l, err))) return st;
        tok_stage(c, STAGE_ROPE, nb, pos0, NULL, f, l == 0);
        store_kv(c, l, nb, pos0);

        attn_job J;
        memset(&J, 0, sizeof J);
        J.c = c, J.layer = l, J.nb = nb, J.pos0 = pos0, J.f = f;
        const int64_t group = hp->n_head / hp->n_head_kv;
        J.hb = group < SQ_ATTN_ROWS ? (int)group : SQ_ATTN_ROWS;
        J.qb = SQ_ATTN_ROWS / J.hb;
        J.n_qblk = (nb + J.qb - 1) / J.qb;
        J.n_hblk = (group + J.hb - 1) / J.hb;
        J.n_tasks = J.n_qblk * hp->n_head_kv * J.n_hblk;
        atomic_init(&J.next, 0);
        /* small attention (a generated token with a short context): not worth waking the pool */
        if ((double)nb * (double)hp->n_head * (double)(pos0 + nb) * (double)hp->head_dim < 1e6)
            attention_worker(&J, 0, 1);
        else
            sq_threadpool_run(c->tp, attention_worker, &J);

        if ((st = mm(c, &L->wo, c->att, c->att, nb, c->xn, "attn_output", l, err))) return st;
        tok_stage(c, STAGE_ADD_NORM, nb, pos0, L->ffn_norm, f, l == 0);
        const float *fin = gather_shared(c, L->gu_perm, c->xn, nb);
        const sq_weight *gu[2] = {&L->gate, &L->up};
        float *gu_out[2] = {c->g, c->u};
        static const char *const gu_names[2] = {"ffn_gate", "ffn_up"};
        if ((st = mm_group(c, 2, gu, gu_out, fin, c->xn, nb, gu_names, l, err))) return st;
        tok_stage(c, STAGE_SWIGLU, nb, pos0, NULL, f, l == 0);
        if ((st = mm(c, &L->down, c->g, c->g, nb, c->xn, "ffn_down", l, err))) return st;
    }
    /* the last FFN's residual */
    for (int64_t i = 0; i < (int64_t)nb * E; i++) c->x[i] += c->xn[i];

    if (out_from < nb) {
        for (int i = out_from; i < nb; i++)
            sq__rmsnorm(c->x + (size_t)i * (size_t)E, m->output_norm, c->xn + (size_t)i * (size_t)E, E, hp->rms_eps);
        if (c->hook)
            call_hook(c, &m->output, c->xn + (size_t)out_from * (size_t)E, nb - out_from,
                      hp->tied_output ? "token_embd" : "output", -1);
        st = sq_weight_matmul(c->tp, &m->output, c->xn + (size_t)out_from * (size_t)E, nb - out_from, logits,
                              c->work, c->work_size, err);
        if (st) {
            sq_error_prefix(err, "output");
            return st;
        }
    }
    return SQ_OK;
}

sq_status sq_eval(sq_context *c, const int32_t *tokens, int n, int n_logits, sq_error *err)
{
    const sq_hparams *hp = &c->m->hp;
    if (n <= 0) return sq_error_set(err, SQ_EINVAL, "no tokens to evaluate");
    if (n_logits < 0 || n_logits > n) n_logits = n;
    if (c->n_past + n > c->n_ctx)
        return sq_error_set(err, SQ_ERANGE, "context full: %d tokens in the cache + %d new exceed the context of %d",
                            c->n_past, n, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return sq_error_set(err, SQ_ERANGE, "token id %d at batch index %d is outside the vocabulary (%lld)",
                                (int)tokens[i], i, (long long)hp->n_vocab);
    if (n_logits > c->logits_cap) {
        float *nl = realloc(c->logits, sizeof(float) * (size_t)n_logits * (size_t)hp->n_vocab);
        if (!nl) return sq_error_set(err, SQ_ENOMEM, "out of memory for %d rows of logits", n_logits);
        c->logits = nl;
        c->logits_cap = n_logits;
    }
    const int first_out = n - n_logits; /* index of the first token with logits */
    for (int b0 = 0; b0 < n; b0 += c->n_batch) {
        const int nb = n - b0 < c->n_batch ? n - b0 : c->n_batch;
        int out_from = first_out - b0;
        if (out_from < 0) out_from = 0;
        if (out_from > nb) out_from = nb;
        float *dst = c->logits ? c->logits + (size_t)(b0 + out_from - first_out) * (size_t)hp->n_vocab : NULL;
        sq_status st = forward_batch(c, tokens + b0, nb, c->n_past, out_from, dst, err);
        if (st) return st;
        c->n_past += nb;
    }
    c->n_logits = n_logits;
    return SQ_OK;
}
