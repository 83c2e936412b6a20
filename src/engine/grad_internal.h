/*
 * src/engine/grad_internal.h — the backward of each operation of the
 * forward pass (grad_ops.c), one small function per forward operation, in
 * f32 with double sums where the forward sums in double. Exposed so that
 * tests can check each against finite differences of its forward.
 *
 * Convention: a backward function takes the forward's inputs (recomputed,
 * never stored across layers) and dy, the loss's gradient at the forward's
 * output, and ADDS the gradient at its inputs to dx (accumulate: several
 * paths meet at one input), unless it says it writes.
 */
#ifndef SQ_GRAD_INTERNAL_H
#define SQ_GRAD_INTERNAL_H

#include "engine_internal.h"

/* y = x * r * w with r = 1/sqrt(mean(x^2) + eps) (sq__rmsnorm; w may be NULL):
 * dx += r * (dy*w) - x * r^3 * sum(dy*w*x) / n. */
void sq__rmsnorm_bwd(const float *x, const float *w, const float *dy, float *dx, int64_t n, float eps);

/* The transpose of sq__rope_apply (a rotation by the opposite angles), in
 * place: turns the gradient at RoPE's output into the gradient at its input. */
void sq__rope_apply_t(float *x, int n_heads, int head_dim, int n_rot, const float *cache);
/* The same for sq__rope_apply_cfg (normal or NeoX pairs; the cache's
 * magnitude, YaRN's included, scales both ways alike). */
void sq__rope_apply_cfg_t(float *x, int n_heads, int head_dim, const sq__rope_cfg *r, const float *cache);

/* sq__geglu without its fp16 rounding (the backward pass's forward). */
void sq__geglu_smooth(const float *g, const float *u, float *y, int64_t n);
/* y = gelu(g) * u (sq__geglu_smooth): dg = dy * u *
 * gelu'(g), du = dy * gelu(g) (written). */
void sq__geglu_bwd(const float *g, const float *u, const float *dy, float *dg, float *du, int64_t n);

/* y = silu(g) * u (sq__swiglu): dg = dy * u * silu'(g), du = dy * silu(g)
 * (written, not added). */
void sq__swiglu_bwd(const float *g, const float *u, const float *dy, float *dg, float *du, int64_t n);

/* One attention head over a causal prefix, in f32: for query row q (hd
 * floats) the scores s_j = scale * q.k_j for j < nk (key j at k + j*ks), the
 * softmax p (max subtracted, double sum) into p (nk floats), and
 * o = sum_j p_j v_j (value j at v + j*vs; written). */
void sq__attn_row_fwd(const float *q, const float *k, size_t ks, const float *v, size_t vs, int nk, int hd,
                      float scale, float *p, float *o);

/* Its backward for the same row, p from sq__attn_row_fwd: with do_ the
 * gradient at o, dq is written; dk_j and dv_j (same strides as k, v) are
 * added to. dp (nk floats) is scratch. */
void sq__attn_row_bwd(const float *q, const float *k, size_t ks, const float *v, size_t vs, int nk, int hd,
                      float scale, const float *p, const float *do_, float *dq, float *dk, float *dv, float *dp);

/* y = silu(u) (the experts' activation without a gate): du = dy * silu'(u)
 * (written, not added). */
void sq__silu_bwd(const float *u, const float *dy, float *du, int64_t n);

/* The router's backward for one token (grad_moe.c): p (X floats) the
 * softmax of its logits, sel / w the K experts sq__moe_route chose and their
 * weights, dw the loss's gradient at those weights. Writes dl (X floats, may
 * alias p), the gradient at the logits, with the choice held fixed: through
 * the weights' normalisation w = p_sel / s (s = their sum, clamped below as
 * the forward does: then a constant) and the softmax. */
void sq__moe_route_bwd(const float *p, int64_t X, const int32_t *sel, const float *w, int64_t K, const float *dw,
                       float *dl);

/* lp (n doubles) = log softmax(x) in double; returns log sum exp(x). */
double sq__log_softmax(const float *x, int n, double *lp);

/* ---- a chunk's attention, blocked (grad_attn.c) ---- */

/* Query rows per block of the blocked attention. */
#define SQ__GATTN_QB 64

/* Causal GQA attention over a chunk of nb tokens at positions 0..nb-1:
 * q, o, dO, dq rows of qs floats (n_head heads of hd), k, v, dk, dv rows of
 * kvs floats (n_kv heads); head h reads KV head h / (n_head / n_kv). The
 * same function as sq__attn_row_fwd / _bwd row by row. */
typedef struct sq__gattn {
    int nb, hd, n_head, n_kv;
    size_t qs, kvs;
    float scale;
    int window;             /* > 0: query t sees keys t - window + 1 .. t only (a sliding-window layer) */
    const float *q, *k, *v; /* q and k after RoPE */
    float *o;               /* forward: written */
    const float *dO;        /* backward: the gradient at o */
    float *dq, *dk, *dv;    /* backward: written (dk, dv of a KV head by its task) */
} sq__gattn;

/* Scratch floats one task needs. */
size_t sq__gattn_scratch_floats(int nb, int hd);
/* o of query head h. */
void sq__gattn_fwd_head(const sq__gattn *a, int h, float *scratch);
/* dk, dv of KV head g and dq of its query heads. */
void sq__gattn_bwd_kvhead(const sq__gattn *a, int g, float *scratch);

/* ---- the backward pass's state (grad.c), shared with its statistics (grad_stats.c) ---- */

#include "sq/grad.h"
#include "sq/matmul.h"

/* One weight use: the public view and its storage. */
typedef struct gstat {
    sq_grad_stats s;
    char name[96];
    int64_t slices; /* an expert tensor: its experts, each observed in its own rows; else 1 */
} gstat;

/* The products of a layer, in the order of their statistics: the dense
 * ones, or the router and the experts' 3-D tensors of a layer with experts. */
enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_ROUTER, W_GATE_EXPS, W_UP_EXPS, W_DOWN_EXPS, W_PER_LAYER };

struct sq_grad {
    const sq_model *m;
    sq_grad_params p;
    sq_threadpool *tp;
    int n_threads, n_ctx;
    int64_t E, F, qd, kvd, V, n_rot;
    float *xs;                          /* [n_layer+1][n_ctx][E]: each layer's input, then the last output */
    float *a, *q, *k, *v, *o, *x1, *b;  /* one layer, recomputed: [n_ctx][E or qd or kvd] */
    float *gt, *up, *h;                 /* [n_ctx][F]; with experts F = K n_ff_exp: one row per (token, slot) */
    float *dx, *da, *dq, *dk, *dv, *dO, *db, *dtmp, *xf; /* gradients, scratch: [n_ctx][E or qd or kvd] */
    float *dg, *du, *dh;                /* [n_ctx][F] */
    float *xg;                          /* [n_ctx][E] input gathered through a shared permutation */
    float *qr, *kr;                     /* [n_ctx][qd], [n_ctx][kvd]: q, k before their norms and RoPE */
    float *dqr, *dkr;                   /* their gradients (per-head norms) */
    float *fused;                       /* [n_ctx][qd + 2 kvd or 2 F] a fused product's output or gradient */
    float *ar, *fr;                     /* [n_ctx][E] attention / FFN output before its post-norm, or NULL */
    float *capd;                        /* [n_threads][V] the soft-cap's derivative at a row's logits */
    sq__rope_cfg rope_cfg[2];           /* global and sliding-window layers' RoPE */
    float *rope;                        /* [2][n_ctx][n_rot] cos/sin pairs of positions 0.., per RoPE */
    float *logits;                      /* [n_ctx][V], then their gradient */
    double *lp;                         /* [n_threads][V] log-probabilities */
    double *row_loss;                   /* [n_ctx] */
    float *att;                         /* [n_threads][sq__gattn_scratch_floats] */
    size_t att_stride;
    void *work, *twork;
    size_t work_size, twork_size;
    void *keep;                         /* [n_keep][n_ctx][keep_row] kept activations, f32 or f16 */
    int keep_type;                      /* SQ_TYPE_F32 or SQ_TYPE_F16 */
    int64_t n_keep;                     /* layers 0..n_keep-1 are kept (the last layer's stay in the buffers) */
    unsigned char *act_q;               /* one input row quantized to q8_K / q8_0 */
    float *act_x;                       /* and back */
    float *gram;                        /* [n_ctx][n_ctx] a Gram matrix of a product's rows (grad_stats.c) */
    float *gscr;                        /* [n_threads][gscr_stride] the statistics' per-thread scratch */
    size_t gscr_stride;
    double *colpart;                    /* [colpart_len] per row block column sums of G^2 (direct path) */
    size_t colpart_len;
    gstat *st;                          /* [0] token_embd lookup, the layers' products, [n_st-1] output */
    int n_st;
    int *slot;                          /* [n_layer][W_PER_LAYER] index in st of each product, or -1 (absent) */
    /* experts (grad_moe.c; NULL without): X experts, K used per token, FE wide */
    int64_t X, K, FE;
    float *mprob;                       /* [n_ctx][X] the router's probabilities, then the logits' gradient */
    int32_t *msel;                      /* [n_ctx][K] the chosen experts, best first */
    float *mw, *mdw;                    /* [n_ctx][K] their weights, the loss's gradient at them */
    int32_t *mpair;                     /* [n_ctx K] the (token, slot) pairs t K + k grouped by expert */
    int64_t *moff;                      /* [X+1] expert e's pairs are mpair[moff[e] .. moff[e+1]) */
    float *my;                          /* [n_ctx K][E] each pair's expert output, unweighted */
    float *ms[4];                       /* [n_ctx][max(E, FE)] one expert's gathered rows */
    int64_t n_scored;
    uint64_t n_chunks;
    sq_grad_hook hook;
    void *hook_user;
};


/* Weight i (W_Q..W_DOWN) of a layer: W_Q is the fused attn_qkv where the
 * layer has one (W_K, W_V then NULL), W_UP the fused gate and up (W_GATE
 * then NULL). */
const sq_weight *sq__grad_layer_weight(const sq__layer *L, int i);

/* Statistics (grad_stats.c): the entries of every weight use of the model;
 * the scratch they need for chunks of n_ctx tokens (bytes added to *total);
 * freeing them. false when out of memory. */
bool sq__grad_stats_init(sq_grad *g, size_t *total);
void sq__grad_stats_free(sq_grad *g);
/* A product's input X (n rows, original column order) and output gradient
 * dY added to entry e (and shown to the hook); e NULL: nothing. */
void sq__grad_observe(sq_grad *g, gstat *e, const float *X, const float *dY, int64_t n);
/* The same for the rows row0 .. row0+rows-1 of entry e (one expert's slice
 * of a 3-D tensor: dY has rows columns); the column sums are the entry's. */
void sq__grad_observe_rows(sq_grad *g, gstat *e, int64_t row0, int64_t rows, const float *X, const float *dY,
                           int64_t n);
/* The embedding lookup: token tok[t] got the gradient dx0[t] (n_embd floats). */
void sq__grad_observe_lookup(sq_grad *g, const int32_t *tok, const float *dx0, int n);

/* ---- layers with experts (grad_moe.c) ---- */

/* Whether layer L has experts. */
static inline bool sq__grad_is_moe(const sq__layer *L) { return L->up_exps.data != NULL; }
/* Buffers of the experts' path for chunks of n_ctx tokens (bytes added to
 * *total); false when out of memory. Nothing without experts. */
bool sq__grad_moe_alloc(sq_grad *g, size_t *total);
void sq__grad_moe_free(sq_grad *g);
/* The router on the normed input g->b (nb rows): probabilities, choices,
 * weights and each expert's pairs. */
sq_status sq__grad_moe_route(sq_grad *g, const sq__layer *L, int nb, sq_error *err);
/* Each expert's gate and up products of its pairs' rows of g->b into their
 * rows of g->gt, g->up (after sq__grad_moe_route). */
sq_status sq__grad_moe_gate_up(sq_grad *g, const sq__layer *L, int nb, sq_error *err);
/* h = the experts' activation of g->gt, g->up for nb tokens' pairs. */
void sq__grad_moe_glu(sq_grad *g, const sq__layer *L, int nb);
/* The experts' down products of g->h, weighted and added into y (nb rows of E). */
sq_status sq__grad_moe_down(sq_grad *g, const sq__layer *L, int nb, float *y, sq_error *err);
/* The backward of layer l's experts: dy (nb rows of E) the gradient at the
 * sublayer's output; writes db, the gradient at its normed input g->b. */
sq_status sq__grad_moe_bwd(sq_grad *g, int64_t l, int nb, const float *dy, float *db, sq_error *err);

#endif
