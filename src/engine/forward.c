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

/* sq__swiglu or sq__geglu, the former on 16 lanes when the CPU has them. */
void sq__glu(sq__act act, const float *g, const float *u, float *y, int64_t n)
{
    if (act == SQ__ACT_GELU) sq__geglu(g, u, y, n);
    else pick_fns().swiglu(g, u, y, n);
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
    const int64_t X = m->hp.n_expert;
    size_t w = sq_weight_matmul_work_size(&m->output, n);
    for (int64_t l = 0; l < m->hp.n_layer; l++) {
        const sq__layer *L = &m->layers[l];
        const sq_weight *ws[9] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->gate, &L->up, &L->down, &L->router};
        for (int i = 0; i < 9; i++) {
            if (!ws[i]->data) continue;
            size_t s = sq_weight_matmul_work_size(ws[i], n);
            if (s > w) w = s;
        }
        const sq_weight *es[3] = {&L->gate_exps, &L->up_exps, &L->down_exps};
        for (int i = 0; i < 3 && X > 0; i++) {
            if (!es[i]->data) continue;
            const sq_weight v = sq__expert_view(es[i], X, 0);
            size_t s = sq_weight_matmul_work_size(&v, n);
            if (s > w) w = s;
        }
    }
    return w;
}

/* LongRoPE takes its long factors when the context is longer than the
 * original one (llama.cpp's rule, per context), else its short ones; Llama
 * 3.1's factors apply always. */
const float *sq__rope_factors(const sq_model *m, int64_t n_ctx)
{
    if (m->rope_freqs) return m->rope_freqs;
    return n_ctx > m->x.n_ctx_orig ? m->rope_long : m->rope_short;
}

/* The RoPE configurations of a context (global and sliding-window layers). */
static void context_rope(sq_context *c)
{
    const sq_model *m = c->m;
    c->rope[0] = m->x.rope;
    c->rope[1] = m->x.rope_swa;
    c->rope[0].ff = c->rope[1].ff = sq__rope_factors(m, c->n_ctx);
}

/* Allocates the context's buffers for its sizes; false when out of memory. */
static bool context_alloc(sq_context *c)
{
    const sq_hparams *hp = &c->m->hp;
    const size_t B = (size_t)c->n_batch, F = sizeof(float), E = (size_t)hp->n_embd;
    const size_t K = (size_t)hp->n_expert_used;
    c->kt = zalloc(((size_t)hp->n_layer * (size_t)c->n_ctx_pad * (size_t)c->kv_dim + SQ_ATTN_KEYS) * F);
    c->vc = zalloc((size_t)hp->n_layer * (size_t)c->n_ctx * (size_t)c->kv_dim * F);
    c->x = zalloc(B * E * F);
    c->xn = zalloc(B * E * F);
    c->xg = zalloc(B * E * F);
    c->q = zalloc(B * (size_t)c->q_dim * F);
    c->k = zalloc(B * (size_t)c->kv_dim * F);
    c->v = zalloc(B * (size_t)c->kv_dim * F);
    c->att = zalloc(B * (size_t)c->q_dim * F);
    c->g = zalloc(B * (size_t)c->ff_w * F);
    c->u = zalloc(B * (size_t)c->up_w * F);
    c->rope_cs = zalloc(2 * B * (size_t)(hp->n_rot > 0 ? hp->n_rot : 1) * F);
    c->scores = zalloc((size_t)c->n_threads * SQ_ATTN_ROWS * (size_t)c->n_ctx_pad * F);
    c->work_size = max_work(c->m, c->n_batch);
    c->work = zalloc(c->work_size);
    bool ok = c->kt && c->vc && c->x && c->xn && c->xg && c->q && c->k && c->v && c->att && c->g && c->u &&
              c->rope_cs && c->scores && c->work;
    bool fused = false;
    for (int64_t l = 0; l < hp->n_layer; l++) fused = fused || c->m->layers[l].wqkv.data;
    if (fused) ok = ok && (c->qkv = zalloc(B * (size_t)(c->q_dim + 2 * c->kv_dim) * F));
    if (hp->n_expert > 0) {
        c->moe_logits = zalloc(B * (size_t)hp->n_expert * F);
        c->moe_sel = zalloc(B * K * sizeof(int32_t));
        c->moe_w = zalloc(B * K * F);
        c->moe_rows = zalloc(B * K * sizeof(int32_t));
        c->moe_x = zalloc(B * E * F);
        c->moe_y = zalloc(B * E * F);
        c->moe_out = zalloc(B * K * E * F);
        ok = ok && c->moe_logits && c->moe_sel && c->moe_w && c->moe_rows && c->moe_x && c->moe_y && c->moe_out;
    }
    return ok;
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
    c->ff_w = hp->n_ff > hp->n_ff_exp ? hp->n_ff : hp->n_ff_exp;
    c->up_w = (m->x.arch->flags & SQ__ARCH_FUSED_UP) ? 2 * hp->n_ff : c->ff_w;
    c->n_ctx_pad = (p.n_ctx + SQ_ATTN_KEYS - 1) / SQ_ATTN_KEYS * SQ_ATTN_KEYS;
    context_rope(c);
    c->tp = p.n_threads > 1 ? sq_threadpool_create(p.n_threads) : NULL;
    if (p.n_threads > 1 && !c->tp) {
        free(c);
        return sq_error_set(err, SQ_ENOMEM, "cannot start %d threads", p.n_threads);
    }
    c->n_threads = c->tp ? sq_threadpool_n_threads(c->tp) : 1;
    if (!context_alloc(c)) {
        const size_t kv_bytes = (size_t)hp->n_layer * (size_t)c->n_ctx * (size_t)c->kv_dim * sizeof(float);
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
    float *bufs[] = {c->kt, c->vc, c->x, c->xn, c->xg, c->q, c->k, c->v, c->att, c->qkv, c->g, c->u,
                     c->rope_cs, c->scores, c->moe_logits, c->moe_w, c->moe_x, c->moe_y, c->moe_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) sq_aligned_free(bufs[i]);
    sq_aligned_free(c->moe_sel);
    sq_aligned_free(c->moe_rows);
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

void sq_context_set_expert_hook(sq_context *c, sq_expert_hook fn, void *user)
{
    c->ehook = fn;
    c->ehook_user = fn ? user : NULL;
}

/* Shows the input of one weight product to the hook under the weight's GGUF
 * name (blk.L.ROLE.weight, output.weight). */
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
    int64_t n_swa;       /* > 0: a sliding-window layer (every task is then one token) */
    attn_fns f;
    int qb, hb;          /* a task: qb tokens × hb heads of one KV head's group */
    int64_t n_qblk, n_hblk, n_tasks;
    atomic_llong next;   /* next task to take */
} attn_job;

/* Causal grouped-query attention, a block of query rows at a time: a task is
 * (query tokens [i0, i0+qb), heads [h0, h0+hb) of one KV head's group), at
 * most SQ_ATTN_ROWS rows that share their keys and values. Threads take tasks
 * from a shared counter, the late tokens (the longest prefixes) first. In a
 * sliding-window layer a token at position p sees keys p - n_swa + 1 .. p
 * (llama.cpp masks p - key >= n_swa): the block starts at the first of them. */
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
    b.scale = (c->m->x.arch->flags & SQ__ARCH_Q_SCALE) ? 1.0f : c->m->x.attn_scale;
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
        int k0 = 0; /* first key of the window */
        if (J->n_swa > 0 && J->pos0 + i0 + 1 > J->n_swa) k0 = J->pos0 + i0 + 1 - (int)J->n_swa;
        b.m = 0;
        for (int i = i0; i < i1; i++)
            for (int64_t h = h0; h < h1; h++, b.m++) {
                const size_t off = (size_t)i * (size_t)c->q_dim + (size_t)h * (size_t)hd;
                b.q[b.m] = c->q + off;
                b.o[b.m] = c->att + off;
                b.nk[b.m] = J->pos0 + i + 1 - k0;
            }
        b.kt = ktl + (size_t)kvh * (size_t)hd * (size_t)c->n_ctx_pad + (size_t)k0;
        b.v = vl + (size_t)kvh * (size_t)hd + (size_t)k0 * b.v_stride;
        J->f.block(&b);
    }
}

/* Attention of the batch's queries (c->q) over layer l's cache into c->att. */
static void attention(sq_context *c, const sq__layer *L, int64_t l, int nb, int pos0, attn_fns f)
{
    const sq_hparams *hp = &c->m->hp;
    attn_job J;
    memset(&J, 0, sizeof J);
    J.c = c, J.layer = l, J.nb = nb, J.pos0 = pos0, J.f = f;
    /* a window only matters once a token is past it; then each task is one token (its own window) */
    J.n_swa = L->swa && pos0 + nb > hp->n_swa ? hp->n_swa : 0;
    const int64_t group = hp->n_head / hp->n_head_kv;
    J.hb = group < SQ_ATTN_ROWS ? (int)group : SQ_ATTN_ROWS;
    J.qb = J.n_swa ? 1 : SQ_ATTN_ROWS / J.hb;
    J.n_qblk = (nb + J.qb - 1) / J.qb;
    J.n_hblk = (group + J.hb - 1) / J.hb;
    J.n_tasks = J.n_qblk * hp->n_head_kv * J.n_hblk;
    atomic_init(&J.next, 0);
    /* small attention (a generated token with a short context): not worth waking the pool */
    if ((double)nb * (double)hp->n_head * (double)(pos0 + nb) * (double)hp->head_dim < 1e6)
        attention_worker(&J, 0, 1);
    else
        sq_threadpool_run(c->tp, attention_worker, &J);
}

/* ---- weight products ---- */

sq_status sq__mm(sq_context *c, const sq_weight *w, const float *X, const float *X_orig, int64_t nb, float *Y,
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
 * converts the input once (same results); otherwise one product each. */
static sq_status mm_group(sq_context *c, int count, const sq_weight *const *w, float *const *Y, const float *X,
                          const float *X_orig, int64_t nb, const char *const *what, int64_t layer, sq_error *err)
{
    bool shared = nb > 1 && count <= 3;
    for (int i = 0; i < count && shared; i++)
        shared = !w[i]->mixed && !w[i]->perm && w[i]->cols == w[0]->cols &&
                 sq_type_info_get(w[i]->type)->vec_dot_type == sq_type_info_get(w[0]->type)->vec_dot_type;
    if (!shared) {
        for (int i = 0; i < count; i++) {
            sq_status st = sq__mm(c, w[i], X, X_orig, nb, Y[i], what[i], layer, err);
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

/* y[i] += b for nb rows of n floats (a bias after a product). */
static void add_bias(float *y, const float *b, int nb, int64_t n)
{
    if (!b) return;
    for (int i = 0; i < nb; i++)
        for (int64_t j = 0; j < n; j++) y[(size_t)i * (size_t)n + (size_t)j] += b[j];
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

/* ---- per-token stages ---- */

/* The per-token elementwise stages of a layer, split by tokens across the
 * pool for a batch (each token's arithmetic is the same as on one thread). */
enum tok_stage {
    STAGE_ROPE_CACHE, /* the batch's cos/sin pairs of both RoPE configurations */
    STAGE_NORM,       /* xn = norm(x) */
    STAGE_ADD_NORM,   /* x += xn; xn = norm(x) (the previous sublayer's residual, then the next norm) */
    STAGE_POST_NORM,  /* xn = norm(xn) (gemma3's norms of the sublayer outputs) */
    STAGE_QKV,        /* q, k, v: split, biases, q/k norms, RoPE, Q scale, fp16 rounding */
    STAGE_GLU         /* g = act(gate) * up */
};

typedef struct tok_job {
    sq_context *c;
    enum tok_stage stage;
    int nb, pos0;
    const float *norm;    /* the norm stages: the norm's weights */
    const sq__layer *L;   /* STAGE_QKV, STAGE_GLU */
    attn_fns f;
} tok_job;

/* STAGE_QKV for token i: the fused projection split into q, k, v; biases;
 * the per-head norms of q and k; RoPE; Q's scale; and with an f16 cache q, k
 * and v rounded to fp16 (as llama.cpp's F16 products take them). */
static void qkv_token(const tok_job *J, int i)
{
    sq_context *c = J->c;
    const sq_model *m = c->m;
    const sq_hparams *hp = &m->hp;
    const sq__layer *L = J->L;
    const int64_t q_dim = c->q_dim, kv_dim = c->kv_dim, hd = hp->head_dim;
    float *q = c->q + (size_t)i * (size_t)q_dim, *k = c->k + (size_t)i * (size_t)kv_dim;
    float *v = c->v + (size_t)i * (size_t)kv_dim;
    if (L->wqkv.data) {
        float *row = c->qkv + (size_t)i * (size_t)(q_dim + 2 * kv_dim);
        if (L->bq)
            for (int64_t j = 0; j < q_dim + 2 * kv_dim; j++) row[j] += L->bq[j];
        memcpy(q, row, sizeof(float) * (size_t)q_dim);
        memcpy(k, row + q_dim, sizeof(float) * (size_t)kv_dim);
        memcpy(v, row + q_dim + kv_dim, sizeof(float) * (size_t)kv_dim);
    } else {
        if (L->bq) for (int64_t j = 0; j < q_dim; j++) q[j] += L->bq[j];
        if (L->bk) for (int64_t j = 0; j < kv_dim; j++) k[j] += L->bk[j];
        if (L->bv) for (int64_t j = 0; j < kv_dim; j++) v[j] += L->bv[j];
    }
    if (L->q_norm)
        for (int64_t h = 0; h < hp->n_head; h++) sq__rmsnorm(q + h * hd, L->q_norm, q + h * hd, hd, hp->rms_eps);
    if (L->k_norm)
        for (int64_t h = 0; h < hp->n_head_kv; h++) sq__rmsnorm(k + h * hd, L->k_norm, k + h * hd, hd, hp->rms_eps);
    const int kind = L->swa ? 1 : 0;
    const float *cs = c->rope_cs + ((size_t)kind * (size_t)c->n_batch + (size_t)i) * (size_t)hp->n_rot;
    sq__rope_apply_cfg(q, (int)hp->n_head, (int)hd, &c->rope[kind], cs);
    sq__rope_apply_cfg(k, (int)hp->n_head_kv, (int)hd, &c->rope[kind], cs);
    if (m->x.arch->flags & SQ__ARCH_Q_SCALE)
        for (int64_t j = 0; j < q_dim; j++) q[j] *= m->x.attn_scale;
    if (c->kv_f16) {
        J->f.round(q, q_dim);
        J->f.round(k, kv_dim);
        J->f.round(v, kv_dim);
    }
}

/* STAGE_GLU for token i: act(gate) * up into g (with a fused up, the gate is
 * the first half of u's row); gate and up biases first. */
static void glu_token(const tok_job *J, int i)
{
    sq_context *c = J->c;
    const sq__layer *L = J->L;
    const int64_t F = c->m->hp.n_ff;
    float *out = c->g + (size_t)i * (size_t)c->ff_w, *u = c->u + (size_t)i * (size_t)c->up_w;
    float *g = out;
    if (!L->gate.data) { /* fused: [gate | up] */
        g = u;
        u += F;
    }
    if (L->bgate) for (int64_t j = 0; j < F; j++) g[j] += L->bgate[j];
    if (L->bup) for (int64_t j = 0; j < F; j++) u[j] += L->bup[j];
    if (c->m->x.arch->act == SQ__ACT_GELU) sq__geglu(g, u, out, F);
    else J->f.swiglu(g, u, out, F);
}

static void tok_worker(void *ctx, int ith, int nth)
{
    tok_job *J = ctx;
    sq_context *c = J->c;
    const sq_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd;
    const int i0 = (int)((int64_t)J->nb * ith / nth), i1 = (int)((int64_t)J->nb * (ith + 1) / nth);
    if (J->stage == STAGE_NORM || J->stage == STAGE_ADD_NORM || J->stage == STAGE_POST_NORM) {
        /* up to 8 tokens per call: their norms' sums run side by side */
        for (int i = i0; i < i1; i += 8) {
            const int nt = i1 - i < 8 ? i1 - i : 8;
            float *x = c->x + (size_t)i * (size_t)E, *xn = c->xn + (size_t)i * (size_t)E;
            if (J->stage == STAGE_ADD_NORM)
                for (int64_t e = 0; e < (int64_t)nt * E; e++) x[e] += xn[e];
            J->f.rmsnorm_rows(J->stage == STAGE_POST_NORM ? xn : x, J->norm, xn, E, hp->rms_eps, (size_t)E, nt);
        }
        return;
    }
    for (int i = i0; i < i1; i++) {
        if (J->stage == STAGE_ROPE_CACHE) {
            for (int kind = 0; kind < 2; kind++)
                sq__rope_cache_cfg(c->rope_cs + ((size_t)kind * (size_t)c->n_batch + (size_t)i) * (size_t)hp->n_rot,
                                   &c->rope[kind], J->pos0 + i);
        } else if (J->stage == STAGE_QKV) {
            qkv_token(J, i);
        } else {
            glu_token(J, i);
        }
    }
}

/* Runs one stage over the batch: on the pool for a batch, inline for a token. */
static void tok_stage(sq_context *c, enum tok_stage stage, int nb, int pos0, const float *norm, const sq__layer *L,
                      attn_fns f)
{
    tok_job J = {c, stage, nb, pos0, norm, L, f};
    if (nb >= 8 && c->tp)
        sq_threadpool_run(c->tp, tok_worker, &J);
    else
        tok_worker(&J, 0, 1);
}

/* ---- the forward pass ---- */

/* x = the batch's token embeddings (times sqrt(n_embd) for gemma3). */
static void embed(sq_context *c, const int32_t *tok, int nb)
{
    const sq_model *m = c->m;
    const int64_t E = m->hp.n_embd;
    for (int i = 0; i < nb; i++) {
        float *x = c->x + (size_t)i * (size_t)E;
        sq_weight_get_row(&m->tok_embd, tok[i], x);
        if (m->x.embd_scale != 1.0f)
            for (int64_t e = 0; e < E; e++) x[e] *= m->x.embd_scale;
    }
}

/* The attention sublayer of layer l on xn (normed): q, k, v, attention over
 * the cache, the output projection (and its bias and post-norm) into xn. */
static sq_status attention_block(sq_context *c, const sq__layer *L, int64_t l, int nb, int pos0, attn_fns f,
                                 sq_error *err)
{
    sq_status st;
    if (L->wqkv.data) {
        if ((st = sq__mm(c, &L->wqkv, c->xn, c->xn, nb, c->qkv, "attn_qkv", l, err))) return st;
    } else {
        const float *qin = gather_shared(c, L->qkv_perm, c->xn, nb);
        const sq_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {c->q, c->k, c->v};
        static const char *const qkv_names[3] = {"attn_q", "attn_k", "attn_v"};
        if ((st = mm_group(c, 3, qkv, qkv_out, qin, c->xn, nb, qkv_names, l, err))) return st;
    }
    tok_stage(c, STAGE_QKV, nb, pos0, NULL, L, f);
    store_kv(c, l, nb, pos0);
    attention(c, L, l, nb, pos0, f);
    if ((st = sq__mm(c, &L->wo, c->att, c->att, nb, c->xn, "attn_output", l, err))) return st;
    add_bias(c->xn, L->bo, nb, c->m->hp.n_embd);
    if (L->attn_post_norm) tok_stage(c, STAGE_POST_NORM, nb, pos0, L->attn_post_norm, L, f);
    return SQ_OK;
}

/* The dense feed-forward sublayer on xn: gate and up (or the fused up), the
 * gated activation, down (and its bias) into xn. */
static sq_status dense_ffn(sq_context *c, const sq__layer *L, int64_t l, int nb, attn_fns f, sq_error *err)
{
    sq_status st;
    if (!L->gate.data) {
        if ((st = sq__mm(c, &L->up, c->xn, c->xn, nb, c->u, "ffn_up", l, err))) return st;
    } else {
        const float *fin = gather_shared(c, L->gu_perm, c->xn, nb);
        const sq_weight *gu[2] = {&L->gate, &L->up};
        float *gu_out[2] = {c->g, c->u};
        static const char *const gu_names[2] = {"ffn_gate", "ffn_up"};
        if ((st = mm_group(c, 2, gu, gu_out, fin, c->xn, nb, gu_names, l, err))) return st;
    }
    tok_stage(c, STAGE_GLU, nb, 0, NULL, L, f);
    if ((st = sq__mm(c, &L->down, c->g, c->g, nb, c->xn, "ffn_down", l, err))) return st;
    add_bias(c->xn, L->bdown, nb, c->m->hp.n_embd);
    return SQ_OK;
}

/* Layer l: the residual of the previous sublayer and the attention norm,
 * attention, the residual and the FFN norm, the FFN (dense or experts) and
 * its post-norm; the FFN's residual is added by the next layer (or the head). */
static sq_status layer_forward(sq_context *c, int64_t l, int nb, int pos0, attn_fns f, sq_error *err)
{
    const sq__layer *L = &c->m->layers[l];
    sq_status st;
    tok_stage(c, l == 0 ? STAGE_NORM : STAGE_ADD_NORM, nb, pos0, L->attn_norm, L, f);
    if ((st = attention_block(c, L, l, nb, pos0, f, err))) return st;
    tok_stage(c, STAGE_ADD_NORM, nb, pos0, L->ffn_norm, L, f);
    st = c->m->hp.n_expert > 0 ? sq__moe_ffn(c, L, l, nb, err) : dense_ffn(c, L, l, nb, f, err);
    if (st) return st;
    if (L->ffn_post_norm) tok_stage(c, STAGE_POST_NORM, nb, pos0, L->ffn_post_norm, L, f);
    return SQ_OK;
}

/* The last residual, the final norm of tokens out_from..nb-1, the output
 * projection (and bias, and soft-cap) into logits. */
static sq_status head(sq_context *c, int nb, int out_from, float *logits, sq_error *err)
{
    const sq_model *m = c->m;
    const sq_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    for (int64_t i = 0; i < (int64_t)nb * E; i++) c->x[i] += c->xn[i];
    if (out_from >= nb) return SQ_OK;
    for (int i = out_from; i < nb; i++)
        sq__rmsnorm(c->x + (size_t)i * (size_t)E, m->output_norm, c->xn + (size_t)i * (size_t)E, E, hp->rms_eps);
    const float *xo = c->xn + (size_t)out_from * (size_t)E;
    if (c->hook) call_hook(c, &m->output, xo, nb - out_from, hp->tied_output ? "token_embd" : "output", -1);
    sq_status st = sq_weight_matmul(c->tp, &m->output, xo, nb - out_from, logits, c->work, c->work_size, err);
    if (st) {
        sq_error_prefix(err, "output");
        return st;
    }
    add_bias(logits, m->output_b, nb - out_from, hp->n_vocab);
    if (m->x.final_softcap > 0.0f) sq__softcap(logits, (int64_t)(nb - out_from) * hp->n_vocab, m->x.final_softcap);
    return SQ_OK;
}

/* Runs nb tokens at positions pos0.. through the model; writes logits of
 * tokens out_from..nb-1 to logits (row-major, n_vocab each). */
static sq_status forward_batch(sq_context *c, const int32_t *tok, int nb, int pos0, int out_from, float *logits,
                               sq_error *err)
{
    const attn_fns f = pick_fns();
    embed(c, tok, nb);
    tok_stage(c, STAGE_ROPE_CACHE, nb, pos0, NULL, NULL, f);
    for (int64_t l = 0; l < c->m->hp.n_layer; l++) {
        sq_status st = layer_forward(c, l, nb, pos0, f, err);
        if (st) return st;
    }
    return head(c, nb, out_from, logits, err);
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
