/*
 * sq/grad.h — the engine's backward pass, and the sensitivity statistics it
 * gives every weight of a model at once (src/engine/grad.c, grad_ops.c).
 *
 * One forward and one backward pass per chunk of text: for every weight
 * product Y = X·W^T the second moments of the loss gradient at its output
 * (per output row r: sum over tokens of (dL/dY[t][r])^2) and of its input
 * (per column c: sum over tokens of X[t][c]^2, the importance matrix's
 * in_sum2); for the token embedding (a row lookup) the same with the
 * gradients of the looked-up rows. Memory is bounded by the activations:
 * each layer's input is kept per chunk, with its products' outputs within
 * keep_bytes, and the backward pass restores or recomputes the layer from
 * them; products with W^T dequantize a panel of rows at a time.
 *
 * The loss. At each scored position t (first <= t < n-1, predicting the
 * token at t+1) a target y_t is chosen, and L = sum_t -log p(y_t | ...):
 *  - SQ_GRAD_SAMPLED: y_t drawn from the model's own distribution p_t (seeded).
 *    Then E_y[g g^T] is the Fisher information, which is the Hessian of the KL
 *    divergence from the unmodified model: for a small weight error dW the
 *    expected KL divergence is 1/2 dW^T F dW (the cross terms between
 *    positions vanish in expectation because E_y[g_t] = 0).
 *  - SQ_GRAD_TEXT: y_t is the text's next token (the "empirical Fisher").
 *  - SQ_GRAD_GAUSS: no target; the logits' gradient is the probe
 *    sqrt(p) * z - p * (sqrt(p) . z) with z standard normal (seeded), whose
 *    covariance is exactly diag(p) - p p^T, the Fisher information at the
 *    logits (the same expectation as SAMPLED, spread over every token).
 *
 * THE INTERFACE TO THE PLANNER (docs/plan.md, "Sensitivities from the
 * backward pass"). sq_grad_factors turns a weight use's statistics into two
 * vectors, row (rows) and col (cols), such that a weight error dW (rows ×
 * cols, original column order) is predicted to raise the mean KL divergence
 * per scored token (nats) by
 *     dKL = 1/2 * sum_r row[r] * sum_c col[c] * dW[r][c]^2
 * (a diagonal, row × column factorisation of the Fisher information):
 *     row[r] = g_row[r] / N,   col[c] = g_col[c] / g_tot
 * (N scored tokens in all, sq_grad_n_scored), for products and lookups alike.
 * Units are the same for every tensor, so a planner compares candidates of
 * different tensors directly; the uses of one tensor (a tied embedding) add.
 * sq_grad_predict evaluates the formula. A 3-D expert tensor is one entry of
 * n_expert × rows-per-expert rows (the planner's view of it) whose columns
 * all experts share; a layer's router (ffn_gate_inp) has an entry too.
 *
 * Ownership: an sq_grad borrows the model (it must outlive it) and owns its
 * buffers, its thread pool and the statistics. One thread at a time.
 */
#ifndef SQ_GRAD_H
#define SQ_GRAD_H

#include "sq/base.h"
#include "sq/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sq_grad_target {
    SQ_GRAD_SAMPLED = 0, /* y drawn from the model's distribution: the Fisher information */
    SQ_GRAD_TEXT = 1,    /* y = the text's next token: the empirical Fisher */
    SQ_GRAD_GAUSS = 2    /* a Gaussian probe with the Fisher's covariance at the logits */
} sq_grad_target;

typedef struct sq_grad_params {
    int n_ctx;             /* most tokens per chunk; 0: 512 */
    int n_threads;         /* <= 0: 1 */
    sq_grad_target target;
    uint64_t seed;         /* SAMPLED / GAUSS: the draws (chunk k uses a stream derived from seed and k) */
    /* Memory for activations kept from the forward pass so that the backward pass need not recompute a
     * layer's products (q, k, v, the attention residual, gate and up per token): as many layers as fit,
     * in f32 when every layer fits so, else in f16 (the others are recomputed). 0: SQ_GRAD_DEFAULT_KEEP;
     * SQ_GRAD_KEEP_NONE: recompute every layer. */
    size_t keep_bytes;
} sq_grad_params;

#define SQ_GRAD_DEFAULT_KEEP ((size_t)1536 << 20)
#define SQ_GRAD_KEEP_NONE ((size_t)1)

sq_grad_params sq_grad_default_params(void);

/* The statistics of one weight use, summed over every chunk so far. G is a
 * chunk's gradient of the loss with respect to the weight: dY^T X for a
 * product (a lookup: row v of G sums the gradients of the tokens that
 * looked row v up). Its squares are summed per row and per column; a
 * planner only needs these marginals (their product over the total is the
 * row × column factorisation of E[G∘G], the diagonal Fisher information,
 * with the terms between tokens kept: they matter for attn_v, whose error
 * the attention averages over many tokens). */
typedef struct sq_grad_stats {
    const char *name;     /* GGUF tensor name ("blk.0.attn_q.weight", "output.weight", "token_embd.weight") */
    bool lookup;          /* the token embedding's row lookup (a tied token_embd also has a product entry) */
    int64_t rows, cols;   /* the weight's shape: rows outputs of cols inputs */
    const double *g_row;  /* rows: sum over chunks of sum_c G[r][c]^2 */
    const double *g_col;  /* cols: sum over chunks of sum_r G[r][c]^2 */
    double g_tot;         /* sum over chunks of sum G^2 */
    const double *dy_sq;  /* rows: sum over tokens of dY[t][r]^2 (a lookup: |dL/dx_t|^2 of the tokens of row r) */
    const double *x_sq;   /* cols: sum over tokens of X[t][c]^2 (the importance matrix's in_sum2); NULL: lookup */
    int64_t n_in;         /* tokens in the sums */
    /* products: sum over tokens of (X[t][c] - X'[t][c])^2 where X' is X quantized to the activation
     * type the CPU multiplies K-quants with (q8_K, blocks of 256) or the 32-column types with (q8_0)
     * and back, in the original column order; NULL for a lookup or when cols is not a multiple of the
     * block. The rounding is independent between tokens, so what an activation type costs is
     * 1/2 sum_r (dy_sq[r] / N) sum_c W[r][c]^2 act[c] / n_in (sq_grad_act_cost). */
    const double *act_q8_K, *act_q8_0;
    /* 0, except in what the hook is shown for a 3-D expert tensor: there the entry is one expert's
     * slice of the whole entry (rows of that expert, the tensor's columns), starting at this row of
     * the tensor (expert e of R rows each: e R). The entries themselves span every expert's rows. */
    int64_t row0;
} sq_grad_stats;

typedef struct sq_grad sq_grad; /* opaque */

/* Whether the backward pass runs model m: SQ_OK, or SQ_EUNSUPPORTED with a
 * message naming what of the model it does not know yet (sq_grad_create
 * refuses such a model with the same message). */
sq_status sq_grad_supports(const sq_model *m, sq_error *err);

/* Creates the buffers for chunks of up to p->n_ctx tokens (at most the
 * model's training context is not required). Errors: out of memory (the
 * message gives the size), a bad parameter. */
sq_status sq_grad_create(const sq_model *m, const sq_grad_params *p, sq_grad **out, sq_error *err);
void sq_grad_free(sq_grad *g); /* NULL is a no-op */

/* Runs one chunk: tokens[0..n) at positions 0..n-1 (n <= n_ctx, n >= 2),
 * scored positions first..n-2 (0 <= first < n-1). *loss (may be NULL) gets
 * the text's sum_t -log p(tokens[t+1]) over the scored positions (the
 * gradient is that of the target's loss). With backward, the statistics of every weight are accumulated
 * (and the hook called); without, only the forward pass and the loss. The
 * forward pass is the engine's products with f32 attention (no f16 cache
 * rounding). Errors: a token out of range, a bad n or first. */
sq_status sq_grad_chunk(sq_grad *g, const int32_t *tokens, int n, int first, bool backward, double *loss,
                        sq_error *err);

/* Scored tokens summed over the chunks run with backward. */
int64_t sq_grad_n_scored(const sq_grad *g);
int64_t sq_grad_n_stats(const sq_grad *g);
const sq_grad_stats *sq_grad_stats_at(const sq_grad *g, int64_t i);
/* The entry of tensor name (lookup: its row-lookup entry), or NULL. */
const sq_grad_stats *sq_grad_find(const sq_grad *g, const char *name, bool lookup);

/* The factors of the prediction above into row (s->rows doubles) and col
 * (s->cols doubles), the caller's arrays. All zero before any backward pass. */
void sq_grad_factors(const sq_grad *g, const sq_grad_stats *s, double *row, double *col);

/* The predicted rise of the mean KL divergence (formula above) for a weight
 * error given for n_rows of the rows: dW row i (cols floats, original column
 * order) is weight row row_idx[i] (row_idx NULL: rows 0..n_rows-1). Returns
 * a negative value when out of memory. */
double sq_grad_predict(const sq_grad *g, const sq_grad_stats *s, const float *dW, const int64_t *row_idx,
                       int64_t n_rows);

/* What quantizing the product's input to act_type (SQ_TYPE_Q8_K or
 * SQ_TYPE_Q8_0) is predicted to add to the mean KL divergence, summed over
 * the weight rows given: W holds n_rows rows (cols floats, original column
 * order), row i being weight row row_idx[i] (NULL: 0..n_rows-1). 0 when the
 * statistics have no such column sums (a lookup, cols not a multiple of the
 * activation block). */
double sq_grad_act_cost(const sq_grad *g, const sq_grad_stats *s, int act_type, const float *W, const int64_t *row_idx,
                        int64_t n_rows);

/* An observer of every weight use in the backward pass (an expert of a 3-D
 * tensor is shown alone: s is its slice, rows s->row0 .. s->row0 + s->rows
 * of the tensor, X its tokens' gathered rows): X (n rows of cols
 * floats, the product's input in the original column order; NULL for a
 * lookup, whose rows are tokens[0..n)), and dY (n rows of s->rows floats, the
 * loss's gradient at the product's output; for a lookup n rows of cols, the
 * gradient of each looked-up row). The weight's gradient is dY^T X (a lookup:
 * row tokens[t] gets dY[t]). Borrowed for the call. For tests (finite
 * differences) and experiments. */
typedef void (*sq_grad_hook)(void *user, const sq_grad_stats *s, const float *X, const int32_t *tokens,
                             const float *dY, int64_t n);
void sq_grad_set_hook(sq_grad *g, sq_grad_hook fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* SQ_GRAD_H */
