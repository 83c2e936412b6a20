/*
 * grad.c — the backward pass over a chunk of text and the sensitivity
 * statistics of every weight (sq/grad.h).
 *
 * A chunk: the forward pass keeps only each layer's input (the residual
 * stream, n_layer+1 rows of n_embd per token); then the loss at the scored
 * positions and its gradient at the logits; then, from the last layer to
 * the first, the layer is recomputed from its kept input (the last one is
 * still in the buffers) and its backward run (layer_bwd). Every weight
 * product is observed with its input X and output gradient dY
 * (grad_stats.c: the row and column sums of the weight gradient's squares).
 * Products with W^T are sq_weight_matmul_t (a panel of dequantized rows at a
 * time); attention is grad_attn.c; the elementwise backwards grad_ops.c.
 *
 * Memory: the kept inputs (n_layer+1) * n_ctx * n_embd floats, one layer's
 * activations and gradients, n_ctx rows of logits, a panel of one weight's
 * rows. No weight is copied.
 *
 * Ownership: sq_grad borrows the model and owns everything else.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grad_internal.h"
#include "sq/blocks.h"
#include "sq/matmul.h"

sq_grad_params sq_grad_default_params(void)
{
    sq_grad_params p = {512, 1, SQ_GRAD_SAMPLED, 0x5eed};
    return p;
}

/* ---- setup ---- */

const sq_weight *sq__grad_layer_weight(const sq__layer *L, int i)
{
    const sq_weight *w[W_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
    return w[i];
}

/* The work buffers every product of the model needs for n rows. */
static void work_sizes(const sq_model *m, int64_t n, size_t *fw, size_t *tw)
{
    *fw = sq_weight_matmul_work_size(&m->output, n);
    *tw = sq_weight_matmul_t_work_size(&m->output);
    for (int64_t l = 0; l < m->hp.n_layer; l++)
        for (int i = 0; i < W_PER_LAYER; i++) {
            const sq_weight *w = sq__grad_layer_weight(&m->layers[l], i);
            size_t s = sq_weight_matmul_work_size(w, n), t = sq_weight_matmul_t_work_size(w);
            if (s > *fw) *fw = s;
            if (t > *tw) *tw = t;
        }
}

void sq_grad_free(sq_grad *g)
{
    if (!g) return;
    sq_threadpool_free(g->tp);
    float *bufs[] = {g->xs, g->a,  g->q,  g->k,  g->v,  g->o,  g->x1, g->b,    g->gt,   g->up,  g->h,
                     g->dx, g->da, g->dq, g->dk, g->dv, g->dO, g->db, g->dtmp, g->xf,   g->dg,  g->du,
                     g->dh, g->xg, g->rope, g->logits, g->att};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) sq_aligned_free(bufs[i]);
    sq_aligned_free(g->work);
    sq_aligned_free(g->twork);
    free(g->lp);
    free(g->row_loss);
    sq__grad_stats_free(g);
    free(g);
}

/* Allocates n floats (64-byte aligned) and adds the bytes to *total; NULL on failure. */
static float *fbuf(size_t n, size_t *total)
{
    *total += n * sizeof(float);
    return sq_aligned_alloc(n * sizeof(float) + 64);
}

/* Every buffer of a chunk of n_ctx tokens. */
static bool alloc_buffers(sq_grad *g, size_t *total)
{
    const size_t T = (size_t)g->n_ctx, E = (size_t)g->E, F = (size_t)g->F, Q = (size_t)g->qd, KV = (size_t)g->kvd;
    g->xs = fbuf((size_t)(g->m->hp.n_layer + 1) * T * E, total);
    float **tE[] = {&g->a, &g->x1, &g->b, &g->dx, &g->da, &g->db, &g->dtmp, &g->xf, &g->xg};
    for (size_t i = 0; i < sizeof tE / sizeof tE[0]; i++) *tE[i] = fbuf(T * E, total);
    float **tQ[] = {&g->q, &g->o, &g->dq, &g->dO};
    for (size_t i = 0; i < sizeof tQ / sizeof tQ[0]; i++) *tQ[i] = fbuf(T * Q, total);
    float **tK[] = {&g->k, &g->v, &g->dk, &g->dv};
    for (size_t i = 0; i < sizeof tK / sizeof tK[0]; i++) *tK[i] = fbuf(T * KV, total);
    float **tF[] = {&g->gt, &g->up, &g->h, &g->dg, &g->du, &g->dh};
    for (size_t i = 0; i < sizeof tF / sizeof tF[0]; i++) *tF[i] = fbuf(T * F, total);
    g->rope = fbuf(T * (size_t)(g->n_rot > 0 ? g->n_rot : 1), total);
    g->logits = fbuf(T * (size_t)g->V, total);
    g->att_stride = (sq__gattn_scratch_floats(g->n_ctx, (int)g->m->hp.head_dim) + 15) / 16 * 16;
    g->att = fbuf((size_t)g->n_threads * g->att_stride, total);
    g->lp = malloc(sizeof(double) * (size_t)g->n_threads * (size_t)g->V);
    g->row_loss = malloc(sizeof(double) * T);
    *total += sizeof(double) * ((size_t)g->n_threads * (size_t)g->V + T);
    work_sizes(g->m, g->n_ctx, &g->work_size, &g->twork_size);
    g->work = sq_aligned_alloc(g->work_size + 64);
    g->twork = sq_aligned_alloc(g->twork_size + 64);
    *total += g->work_size + g->twork_size;
    float *all[] = {g->xs, g->a,  g->q,  g->k,  g->v,  g->o,  g->x1, g->b,    g->gt,   g->up,  g->h,
                    g->dx, g->da, g->dq, g->dk, g->dv, g->dO, g->db, g->dtmp, g->xf,   g->dg,  g->du,
                    g->dh, g->xg, g->rope, g->logits, g->att};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i]) return false;
    return g->lp && g->row_loss && g->work && g->twork;
}

sq_status sq_grad_create(const sq_model *m, const sq_grad_params *pp, sq_grad **out, sq_error *err)
{
    *out = NULL;
    sq_grad_params p = pp ? *pp : sq_grad_default_params();
    if (p.n_ctx <= 0) p.n_ctx = 512;
    if (p.n_threads <= 0) p.n_threads = 1;
    if (p.n_ctx < 2 || p.n_ctx > (1 << 20)) return sq_error_set(err, SQ_EINVAL, "gradient chunks of %d tokens", p.n_ctx);
    if (p.target != SQ_GRAD_SAMPLED && p.target != SQ_GRAD_TEXT && p.target != SQ_GRAD_GAUSS)
        return sq_error_set(err, SQ_EINVAL, "unknown gradient target %d", (int)p.target);
    if (!sq__model_is_plain_llama(m))
        return sq_error_set(err, SQ_EUNSUPPORTED,
                            "the backward pass runs the plain llama block only, not this %s model (its biases, "
                            "norms, experts, fused weights or windows)",
                            m->hp.arch);
    sq_grad *g = calloc(1, sizeof *g);
    if (!g) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    const sq_hparams *hp = &m->hp;
    g->m = m;
    g->p = p;
    g->n_ctx = p.n_ctx;
    g->E = hp->n_embd, g->F = hp->n_ff, g->V = hp->n_vocab, g->n_rot = hp->n_rot;
    g->qd = hp->n_head * hp->head_dim, g->kvd = hp->n_head_kv * hp->head_dim;
    g->tp = p.n_threads > 1 ? sq_threadpool_create(p.n_threads) : NULL;
    g->n_threads = g->tp ? sq_threadpool_n_threads(g->tp) : 1;
    size_t total = 0;
    if ((p.n_threads > 1 && !g->tp) || !alloc_buffers(g, &total) || !sq__grad_stats_init(g, &total)) {
        sq_grad_free(g);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the backward pass over chunks of %d tokens (%.1f MiB)",
                            p.n_ctx, (double)total / 1048576.0);
    }
    *out = g;
    return SQ_OK;
}

/* ---- products ---- */

/* Y = X W^T for nb rows (the engine's product). */
static sq_status fwd_mm(sq_grad *g, const sq_weight *w, const float *X, int nb, float *Y, sq_error *err)
{
    return sq_weight_matmul(g->tp, w, X, nb, Y, g->work, g->work_size, err);
}

/* dX = sum_i dY_i W_i over `count` weights that read the same input; perm:
 * the permutation their input is gathered through (the weights then take
 * gathered columns), or NULL. */
static sq_status bwd_mm(sq_grad *g, int count, const sq_weight *const *w, float *const *dY, int nb,
                        const int32_t *perm, float *dX, sq_error *err)
{
    float *dst = perm ? g->dtmp : dX;
    for (int i = 0; i < count; i++) {
        sq_status st = sq_weight_matmul_t(g->tp, w[i], dY[i], nb, dst, i > 0, g->twork, g->twork_size, err);
        if (st) return st;
    }
    if (perm)
        for (int t = 0; t < nb; t++)
            sq_perm_scatter(perm, w[0]->cols, g->dtmp + (size_t)t * (size_t)w[0]->cols, dX + (size_t)t * (size_t)w[0]->cols);
    return SQ_OK;
}

/* x itself, or x gathered through perm into g->xg (a shared permutation). */
static const float *gather(sq_grad *g, const int32_t *perm, const float *x, int nb)
{
    if (!perm) return x;
    for (int t = 0; t < nb; t++) sq_perm_gather(perm, g->E, x + (size_t)t * (size_t)g->E, g->xg + (size_t)t * (size_t)g->E);
    return g->xg;
}

/* ---- attention on the pool ---- */

typedef struct attn_task {
    sq_grad *g;
    sq__gattn a;
    bool backward;
    int n_tasks;
    atomic_int next;
} attn_task;

static void attn_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    attn_task *J = ctx;
    float *scratch = J->g->att + (size_t)ith * J->g->att_stride;
    for (;;) {
        const int t = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (t >= J->n_tasks) break;
        if (J->backward) sq__gattn_bwd_kvhead(&J->a, t, scratch);
        else sq__gattn_fwd_head(&J->a, t, scratch);
    }
}

/* Forward (o from q, k, v) or backward (dq, dk, dv from dO) of the layer's attention. */
static void attention(sq_grad *g, int nb, bool backward)
{
    const sq_hparams *hp = &g->m->hp;
    attn_task J;
    memset(&J, 0, sizeof J);
    J.g = g;
    J.a = (sq__gattn){nb, (int)hp->head_dim, (int)hp->n_head, (int)hp->n_head_kv, (size_t)g->qd, (size_t)g->kvd,
                      1.0f / sqrtf((float)hp->head_dim), g->q, g->k, g->v, g->o, g->dO, g->dq, g->dk, g->dv};
    J.backward = backward;
    J.n_tasks = (int)(backward ? hp->n_head_kv : hp->n_head);
    atomic_init(&J.next, 0);
    sq_threadpool_run(g->tp, attn_worker, &J);
}

/* ---- one layer ---- */

/* Recomputes layer l from its input xin (nb tokens), keeping every
 * intermediate for the backward; with xout, also the layer's output. */
static sq_status layer_fwd(sq_grad *g, int64_t l, int nb, const float *xin, float *xout, sq_error *err)
{
    const sq_model *m = g->m;
    const sq_hparams *hp = &m->hp;
    const sq__layer *L = &m->layers[l];
    const size_t E = (size_t)g->E, F = (size_t)g->F;
    sq_status st;
    for (int t = 0; t < nb; t++) sq__rmsnorm(xin + t * E, L->attn_norm, g->a + t * E, g->E, hp->rms_eps);
    const float *ain = gather(g, L->qkv_perm, g->a, nb);
    if ((st = fwd_mm(g, &L->wq, ain, nb, g->q, err)) || (st = fwd_mm(g, &L->wk, ain, nb, g->k, err)) ||
        (st = fwd_mm(g, &L->wv, ain, nb, g->v, err)))
        return st;
    for (int t = 0; t < nb; t++) {
        const float *cs = g->rope + (size_t)t * (size_t)g->n_rot;
        sq__rope_apply(g->q + (size_t)t * (size_t)g->qd, (int)hp->n_head, (int)hp->head_dim, (int)hp->n_rot, cs);
        sq__rope_apply(g->k + (size_t)t * (size_t)g->kvd, (int)hp->n_head_kv, (int)hp->head_dim, (int)hp->n_rot, cs);
    }
    attention(g, nb, false);
    if ((st = fwd_mm(g, &L->wo, g->o, nb, g->x1, err))) return st;
    for (size_t i = 0; i < (size_t)nb * E; i++) g->x1[i] += xin[i];
    for (int t = 0; t < nb; t++) sq__rmsnorm(g->x1 + t * E, L->ffn_norm, g->b + t * E, g->E, hp->rms_eps);
    const float *bin = gather(g, L->gu_perm, g->b, nb);
    if ((st = fwd_mm(g, &L->gate, bin, nb, g->gt, err)) || (st = fwd_mm(g, &L->up, bin, nb, g->up, err))) return st;
    sq__swiglu(g->gt, g->up, g->h, (int64_t)nb * (int64_t)F);
    if (!xout) return SQ_OK;
    if ((st = fwd_mm(g, &L->down, g->h, nb, xout, err))) return st;
    for (size_t i = 0; i < (size_t)nb * E; i++) xout[i] += g->x1[i];
    return SQ_OK;
}

/* The backward of layer l (its forward recomputed just before): g->dx holds
 * the gradient at the layer's output and gets the gradient at its input. */
static sq_status layer_bwd(sq_grad *g, int64_t l, int nb, const float *xin, sq_error *err)
{
    const sq_model *m = g->m;
    const sq_hparams *hp = &m->hp;
    const sq__layer *L = &m->layers[l];
    gstat *e = &g->st[1 + l * W_PER_LAYER];
    const size_t E = (size_t)g->E;
    sq_status st;
    /* FFN: x_out = x1 + down(swiglu(gate(b), up(b))), b = norm(x1) */
    sq__grad_observe(g, &e[W_DOWN], g->h, g->dx, nb);
    const sq_weight *wd = &L->down;
    float *dxo = g->dx;
    if ((st = bwd_mm(g, 1, &wd, &dxo, nb, NULL, g->dh, err))) return st;
    sq__swiglu_bwd(g->gt, g->up, g->dh, g->dg, g->du, (int64_t)nb * g->F);
    sq__grad_observe(g, &e[W_GATE], g->b, g->dg, nb);
    sq__grad_observe(g, &e[W_UP], g->b, g->du, nb);
    const sq_weight *gu[2] = {&L->gate, &L->up};
    float *dgu[2] = {g->dg, g->du};
    if ((st = bwd_mm(g, 2, gu, dgu, nb, L->gu_perm, g->db, err))) return st;
    for (int t = 0; t < nb; t++) sq__rmsnorm_bwd(g->x1 + t * E, L->ffn_norm, g->db + t * E, g->dx + t * E, g->E, hp->rms_eps);
    /* attention: x1 = x_in + wo(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(x_in) */
    sq__grad_observe(g, &e[W_O], g->o, g->dx, nb);
    const sq_weight *wo = &L->wo;
    if ((st = bwd_mm(g, 1, &wo, &dxo, nb, NULL, g->dO, err))) return st;
    attention(g, nb, true);
    for (int t = 0; t < nb; t++) {
        const float *cs = g->rope + (size_t)t * (size_t)g->n_rot;
        sq__rope_apply_t(g->dq + (size_t)t * (size_t)g->qd, (int)hp->n_head, (int)hp->head_dim, (int)hp->n_rot, cs);
        sq__rope_apply_t(g->dk + (size_t)t * (size_t)g->kvd, (int)hp->n_head_kv, (int)hp->head_dim, (int)hp->n_rot, cs);
    }
    sq__grad_observe(g, &e[W_Q], g->a, g->dq, nb);
    sq__grad_observe(g, &e[W_K], g->a, g->dk, nb);
    sq__grad_observe(g, &e[W_V], g->a, g->dv, nb);
    const sq_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *dqkv[3] = {g->dq, g->dk, g->dv};
    if ((st = bwd_mm(g, 3, qkv, dqkv, nb, L->qkv_perm, g->da, err))) return st;
    for (int t = 0; t < nb; t++) sq__rmsnorm_bwd(xin + t * E, L->attn_norm, g->da + t * E, g->dx + t * E, g->E, hp->rms_eps);
    return SQ_OK;
}

/* ---- the loss at the logits ---- */

/* A generator for chunk k, row i: independent of the thread that runs it. */
static void row_rng(const sq_grad *g, int i, uint64_t st[2])
{
    sq_rng_seed(st, g->p.seed ^ (0x9E3779B97F4A7C15ull * (g->n_chunks * 1000003ull + (uint64_t)i + 1)));
}

/* A standard normal draw (Box-Muller). */
static double gauss(uint64_t st[2])
{
    double u1 = (double)sq_rng_uniform(st), u2 = (double)sq_rng_uniform(st);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Draws a token from lp (log-probabilities, n entries). */
static int sample(const double *lp, int n, uint64_t st[2])
{
    const double u = (double)sq_rng_uniform(st);
    double c = 0.0;
    int last = 0;
    for (int v = 0; v < n; v++) {
        const double p = exp(lp[v]);
        if (p > 0) last = v;
        c += p;
        if (c > u) return v;
    }
    return last;
}

/* Row i of the logits (scored position first+i): the text's -log p(next),
 * and with grad the gradient of -log p(y) in place: p - onehot(y) (y drawn
 * or the text's), or the Gaussian probe. */
static double loss_row(sq_grad *g, double *lp, float *x, int i, int32_t next, bool grad)
{
    const int V = (int)g->V;
    sq__log_softmax(x, V, lp);
    uint64_t st[2];
    row_rng(g, i, st);
    const int y = g->p.target == SQ_GRAD_SAMPLED ? sample(lp, V, st) : next;
    const double loss = -lp[next];
    if (!grad) return loss;
    if (g->p.target == SQ_GRAD_GAUSS) {
        double s = 0.0;
        for (int v = 0; v < V; v++) {
            const double z = gauss(st);
            x[v] = (float)z;
            s += sqrt(exp(lp[v])) * z;
        }
        for (int v = 0; v < V; v++) {
            const double p = exp(lp[v]);
            x[v] = (float)(sqrt(p) * (double)x[v] - p * s);
        }
        return loss;
    }
    for (int v = 0; v < V; v++) x[v] = (float)exp(lp[v]);
    x[y] -= 1.0f;
    return loss;
}

typedef struct loss_task {
    sq_grad *g;
    const int32_t *tok;
    int first, ns;
    bool grad;
    atomic_int next;
} loss_task;

static void loss_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    loss_task *J = ctx;
    sq_grad *g = J->g;
    double *lp = g->lp + (size_t)ith * (size_t)g->V;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (i >= J->ns) break;
        g->row_loss[i] = loss_row(g, lp, g->logits + (size_t)i * (size_t)g->V, i, J->tok[J->first + i + 1], J->grad);
    }
}

/* The output norm and product for the scored rows, the loss (summed in row
 * order) and, with grad, the gradient at the last layer's output in g->dx. */
static sq_status output_loss(sq_grad *g, const int32_t *tok, int nb, int first, bool grad, double *loss, sq_error *err)
{
    const sq_model *m = g->m;
    const size_t E = (size_t)g->E;
    const float *xl = g->xs + (size_t)m->hp.n_layer * (size_t)g->n_ctx * E;
    const int ns = nb - 1 - first;
    for (int i = 0; i < ns; i++) sq__rmsnorm(xl + (size_t)(first + i) * E, m->output_norm, g->xf + i * E, g->E, m->hp.rms_eps);
    sq_status st = fwd_mm(g, &m->output, g->xf, ns, g->logits, err);
    if (st) return st;
    loss_task J = {g, tok, first, ns, grad, 0};
    atomic_init(&J.next, 0);
    sq_threadpool_run(g->tp, loss_worker, &J);
    double sum = 0.0;
    for (int i = 0; i < ns; i++) sum += g->row_loss[i];
    if (loss) *loss = sum;
    if (!grad) return SQ_OK;
    sq__grad_observe(g, &g->st[g->n_st - 1], g->xf, g->logits, ns);
    const sq_weight *wout = &m->output;
    float *dl = g->logits;
    if ((st = bwd_mm(g, 1, &wout, &dl, ns, NULL, g->dtmp, err))) return st;
    memset(g->dx, 0, sizeof(float) * (size_t)nb * E);
    for (int i = 0; i < ns; i++)
        sq__rmsnorm_bwd(xl + (size_t)(first + i) * E, m->output_norm, g->dtmp + i * E, g->dx + (size_t)(first + i) * E,
                        g->E, m->hp.rms_eps);
    return SQ_OK;
}

/* ---- a chunk ---- */

sq_status sq_grad_chunk(sq_grad *g, const int32_t *tok, int nb, int first, bool backward, double *loss, sq_error *err)
{
    const sq_model *m = g->m;
    const sq_hparams *hp = &m->hp;
    const size_t E = (size_t)g->E, T = (size_t)g->n_ctx;
    if (nb < 2 || nb > g->n_ctx)
        return sq_error_set(err, SQ_EINVAL, "a gradient chunk of %d tokens (want 2..%d)", nb, g->n_ctx);
    if (first < 0 || first >= nb - 1)
        return sq_error_set(err, SQ_EINVAL, "first scored position %d of a chunk of %d tokens", first, nb);
    for (int i = 0; i < nb; i++)
        if (tok[i] < 0 || tok[i] >= hp->n_vocab)
            return sq_error_set(err, SQ_ERANGE, "token id %d at chunk index %d is outside the vocabulary (%lld)",
                                (int)tok[i], i, (long long)hp->n_vocab);
    for (int t = 0; t < nb; t++)
        sq__rope_cache(g->rope + (size_t)t * (size_t)g->n_rot, (int)hp->n_rot, t, hp->rope_base, hp->rope_scale,
                       m->rope_freqs);
    for (int t = 0; t < nb; t++) sq_weight_get_row(&m->tok_embd, tok[t], g->xs + (size_t)t * E);
    sq_status st = SQ_OK;
    for (int64_t l = 0; l < hp->n_layer && !st; l++)
        st = layer_fwd(g, l, nb, g->xs + (size_t)l * T * E, g->xs + (size_t)(l + 1) * T * E, err);
    if (!st) st = output_loss(g, tok, nb, first, backward, loss, err);
    /* the last layer's intermediates are still in the buffers; the others are recomputed */
    for (int64_t l = hp->n_layer - 1; l >= 0 && backward && !st; l--) {
        const float *xin = g->xs + (size_t)l * T * E;
        if (l < hp->n_layer - 1) st = layer_fwd(g, l, nb, xin, NULL, err);
        if (!st) st = layer_bwd(g, l, nb, xin, err);
        if (st) sq_error_prefix(err, "backward, layer %lld", (long long)l);
    }
    if (st || !backward) return st;
    sq__grad_observe_lookup(g, tok, g->dx, nb);
    g->n_scored += nb - 1 - first;
    g->n_chunks++;
    return SQ_OK;
}

