/*
 * sq/plan.h — the SmarterQuant planner (`sq plan`): for every chosen weight
 * tensor of a model, a column permutation and the four segment block types
 * (or, at tensor granularity, one type), chosen to minimise the predicted
 * error of the model's output under a size budget for the whole file.
 *
 * How (docs/plan.md has the long version):
 *  1. the error model. Every tensor's weight error dW is predicted to cost
 *     weight * scale * sum_r row[r] * sum_c col[c] * dW[r][c]^2 at the output,
 *     plus what quantizing its input activations costs. Three sources, best first:
 *     - Fisher factors from a backward pass (sq/grad.h, sq_grad_factors):
 *       scale 1/2, row and col as measured: the predicted rise of the mean KL
 *       divergence per token, in nats, the same unit for every tensor;
 *     - a measured sensitivity (sq_plan_measure_sensitivity, or a file): KL
 *       divergence per unit of relative error, i.e. col = the importance
 *       matrix, row = 1, scale = 1 / (the tensor's output energy);
 *     - without either, the prior: the same relative error, weighted so that
 *       llama.cpp's own mix of the nearest size is the optimum of the model
 *       among whole-tensor choices (docs/plan.md, "The prior").
 *  2. permutation: columns sorted by imp[c] * sum_r W[r,c]^2 (each member of a
 *     group of tensors that read the same input counted by its weight), most
 *     important first; one permutation per group (attn_q/k/v, ffn_gate/up) and
 *     per 3-D expert tensor (all experts share it).
 *  3. every candidate type (by default every type the build quantizes and
 *     multiplies) is REALLY quantized on every segment slot (slot 3 = all
 *     segments >= 3), with and without the permutation, on a sample of rows,
 *     exactly as sq quantize will write it.
 *  4. a Lagrange multiplier search (every group choosing its permutation option
 *     and every slot its type by min err + lambda*bytes) finds the best point
 *     of the convex hull under the budget; a greedy pass spends the rest.
 * The model's weights are streamed a few rows at a time: memory is bounded by
 * a tensor's column statistics and the rows measured, not by the model.
 * Everything is deterministic: the same inputs give the same plan, whatever
 * the number of threads.
 */
#ifndef SQ_PLAN_H
#define SQ_PLAN_H

#include "sq/base.h"
#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether planned tensors get a permutation. */
typedef enum sq_plan_perm_mode {
    SQ_PLAN_PERM_AUTO = 0, /* per group: with or without, whichever the allocation prefers */
    SQ_PLAN_PERM_ON = 1,   /* always permute */
    SQ_PLAN_PERM_OFF = 2   /* never permute ("[]") */
} sq_plan_perm_mode;

/* How errors of different tensors are made comparable. */
typedef enum sq_plan_norm {
    SQ_PLAN_NORM_REL = 0, /* error / output energy sum imp*W^2: relative output noise */
    SQ_PLAN_NORM_ABS = 1  /* the raw weighted error sum imp*(W-Q)^2 */
} sq_plan_norm;

/* How one tensor's error counts (see the top of this file). Without row and
 * col: the predicted cost of a candidate is weight * (its relative error
 * sum imp*dW^2 / sum imp*W^2), weight being e.g. the KL divergence per unit
 * of relative error. With row or col (the factors of sq_grad_factors): the
 * cost is weight * 1/2 * sum_r row[r] * sum_c col[c] * dW[r][c]^2 (weight
 * normally 1); several entries with the same name add (a tied embedding's
 * lookup and product; at most 2). */
typedef struct sq_plan_weight {
    const char *name;
    double weight; /* > 0 */
    /* What the tensor costs at the output, in the same units, when the CPU
     * quantizes its input activations for the product: to q8_K (the K-quants'
     * vec_dot_type) and to q8_0 / q8_1 (the 32-column types'). Added to a
     * candidate's error in proportion to the columns of the slot. >= 0; 0: not
     * modelled. */
    double act_q8_K, act_q8_0;
    const double *row; /* n_row = the tensor's rows (ne[1] * ne[2]) entries >= 0, or NULL: 1 */
    int64_t n_row;
    const double *col; /* n_col = ne[0] (or ne[0] * ne[2], one vector per expert) entries >= 0, or NULL:
                          the importance matrix */
    int64_t n_col;
} sq_plan_weight;

/* One type per segment slot, or one per tensor (a standard GGUF, no permutation). */
typedef enum sq_plan_granularity {
    SQ_PLAN_GRAN_SEGMENT = 0,
    SQ_PLAN_GRAN_TENSOR = 1
} sq_plan_granularity;

/* How tensors without a given sensitivity (sq_plan_params.weights) are weighted. */
typedef enum sq_plan_prior {
    SQ_PLAN_PRIOR_MIX = 0, /* from llama.cpp's mix of the nearest size (prior_ftype: that mix) */
    SQ_PLAN_PRIOR_NONE = 1 /* weight 1: every tensor's normalised error counts alike */
} sq_plan_prior;

/* Called between steps of a long phase: phase names what is done ("measuring"),
 * done of total units of work (0 <= done <= total). */
typedef void (*sq_plan_progress_fn)(void *ud, const char *phase, int64_t done, int64_t total);

/* What to plan. Zero-initialise, then set one of target_bpw / target_bytes. */
typedef struct sq_plan_params {
    double target_bpw;      /* > 0: bits per weight over all tensors (data bytes * 8 / elements) */
    uint64_t target_bytes;  /* > 0: size of the whole output file in bytes */
    const char *tensors;    /* POSIX extended regex searched in tensor names; NULL: every weight
                               tensor llama-quantize would quantize (2-D *.weight) */
    const int *types;       /* candidate ggml types; NULL / n_types 0: the default list */
    int n_types;
    const char *base_ftype; /* file type sq quantize will use for tensors not planned (sizes them);
                               NULL: "Q4_K_M" */
    int n_threads;          /* <= 1: the caller's thread only */
    sq_plan_perm_mode perm;
    sq_plan_norm norm;
    bool no_share;          /* every tensor its own permutation (no q/k/v, gate/up groups) */
    const sq_plan_weight *weights; /* per-tensor sensitivities; tensors not listed get 1 */
    int n_weights;
    int64_t sample_rows;    /* rows of each tensor the candidates are measured on, spread evenly
                               (errors scaled up to all rows): 0 = SQ_PLAN_DEFAULT_SAMPLE_ROWS,
                               < 0 = every row */
    sq_plan_granularity granularity;
    sq_plan_prior prior;    /* how tensors are weighted when weights is empty */
    const char *prior_ftype; /* SQ_PLAN_PRIOR_MIX: the mix to invert (a file type name); NULL: the
                               mix whose planned tensors' size is nearest the budget */
    sq_plan_progress_fn progress; /* optional */
    void *progress_ud;
} sq_plan_params;

#define SQ_PLAN_DEFAULT_SAMPLE_ROWS 256

/* One planned tensor. Owned by its sq_plan. */
typedef struct sq_plan_tensor {
    const char *name;
    int64_t rows, cols;
    int types[4];          /* slots past the last segment repeat the last segment's type */
    const int32_t *perm;   /* cols entries (new column j = original perm[j]), or NULL: none */
    int group;             /* index (in the plan) of the first tensor sharing this permutation */
    bool has_imatrix;      /* importance weights were found for it */
    uint64_t bytes;        /* data bytes as planned */
    double bpw;            /* bytes * 8 / (rows * cols) */
    double error;          /* predicted error in the planner's normalisation (what is minimised),
                              activation costs included */
    double rel_error;      /* sum imp*(W-Q)^2 / sum imp*W^2 */
    double energy;         /* sum imp*W^2 */
    double weight;         /* the sensitivity its error was weighted with (given, or the prior's) */
    int prior_type;        /* llama.cpp's type for it in the prior's mix, or -1 */
} sq_plan_tensor;

/* Whole-model figures. */
typedef struct sq_plan_totals {
    uint64_t file_bytes;    /* predicted output file size (header + aligned tensor data) */
    uint64_t data_bytes;    /* sum of all tensors' data bytes */
    uint64_t planned_bytes; /* of which planned tensors */
    uint64_t budget_bytes;  /* the target as a file size */
    int64_t n_elements;     /* weights in all tensors */
    int64_t n_planned;      /* planned tensors */
    double bpw;             /* data_bytes * 8 / n_elements */
    double error;           /* sum of the planned tensors' errors */
    double lambda;          /* the multiplier found (error per byte) */
    double seconds;         /* time spent */
    int prior_ftype;        /* the file type whose mix gave the prior, or -1 (no tensor used it) */
    uint64_t prior_bytes;   /* that mix's bytes for the planned tensors */
    int64_t n_prior;        /* tensors weighted by the prior */
} sq_plan_totals;

typedef struct sq_plan sq_plan; /* opaque: owns names, permutations, warnings */

/* The default candidate types of a plan of granularity gran, in id order:
 * every block-quantized weight type of the type table that this build can
 * quantize and multiply (so a type added to the table is a candidate), of
 * which, for SQ_PLAN_GRAN_TENSOR (a standard GGUF), only the types llama.cpp
 * knows (ggml's ids); for SQ_PLAN_GRAN_SEGMENT also the other types
 * (ik_llama.cpp's) whose quantizer costs per value (sq_blocks_quantize_cost)
 * no more than the dearest of ggml's, so measuring them costs what measuring
 * ggml's does. sq_plan_create uses the segment list for a segment plan with
 * sensitivities (params' weights: --calib, --sensitivity) and an importance
 * matrix, the documented way; other plans (the prior, no importance matrix)
 * the whole-tensor list, whose quantizers are cheap there. Any usable type can
 * be named in the params' types (`--types`). Fills up to cap entries of
 * types; returns how many there are. */
int sq_plan_default_types(sq_plan_granularity gran, int *types, int cap);

/* Plans model (weights read from its map) with importance matrix im (may be
 * NULL: uniform importance, and types that need one are not candidates).
 * Errors: no target or both, a bad regex or type, no tensor chosen, a budget
 * below the smallest possible plan (the message gives that size), a tensor
 * no candidate type fits, an importance entry of the wrong length. */
sq_status sq_plan_create(const sq_gguf *model, const sq_imatrix *im, const sq_plan_params *p, sq_plan **out,
                         sq_error *err);
/* Frees; NULL is a no-op. */
void sq_plan_free(sq_plan *plan);

int64_t sq_plan_n_tensors(const sq_plan *plan);
const sq_plan_tensor *sq_plan_tensor_at(const sq_plan *plan, int64_t i);
const sq_plan_totals *sq_plan_get_totals(const sq_plan *plan);
/* Warnings gathered while planning (tensors skipped and why). */
int64_t sq_plan_n_warnings(const sq_plan *plan);
const char *sq_plan_warning(const sq_plan *plan, int64_t i);

/* The configuration file text (spec section 2): a JSON object, one key per
 * planned tensor in model order, [[four type ids], [perm or empty]]. *text is
 * malloc'ed (NUL-terminated, the caller frees), *len its length. */
sq_status sq_plan_config_text(const sq_plan *plan, char **text, size_t *len, sq_error *err);
/* Writes that text to path atomically (temporary file, then rename). */
sq_status sq_plan_write_config(const sq_plan *plan, const char *path, sq_error *err);

/* llama-quantize's --tensor-type-file text for a whole-tensor plan: one line
 * "^NAME$=type" per planned tensor (the name's regex characters escaped, the
 * type by its ggml name), which `llama-quantize --tensor-type-file` and `sq
 * quantize --tensor-type-file` both read. Errors: a tensor with several
 * segment types or a permutation (plan with SQ_PLAN_GRAN_TENSOR), a name the
 * format cannot carry. *text malloc'ed, NUL-terminated. */
sq_status sq_plan_tensor_types_text(const sq_plan *plan, char **text, size_t *len, sq_error *err);
/* Writes that text to path atomically. */
sq_status sq_plan_write_tensor_types(const sq_plan *plan, const char *path, sq_error *err);

/* ---- calibration with the engine (src/plan/plan_calib.c) ----
 * Measures what a quantization costs at the model's output: the model is
 * evaluated on chunks of calibration text, once as it is (the reference
 * log-probabilities, kept in memory) and once per measurement with weights
 * replaced by quantized copies (sq_model_set_weight); the figure is the mean
 * KL divergence from the reference over the scored positions (llama.cpp's:
 * the second half of each chunk). Deterministic for a given model, text and
 * thread count. The model's views are restored before returning. */

#define SQ_PLAN_CALIB_DEFAULT_CHUNKS 6
#define SQ_PLAN_SENS_FLOOR 1e-6 /* the smallest sensitivity reported */

typedef struct sq_plan_calib_params {
    const int32_t *tokens; /* the calibration text, tokenized (not kept) */
    size_t n_tokens;
    int32_t bos;           /* replaces each chunk's first token (< 0: none), as sq perplexity does */
    int n_ctx;             /* chunk length; 0: 512 (at most the model's training context) */
    int n_chunks;          /* 0: SQ_PLAN_CALIB_DEFAULT_CHUNKS; fewer when the text is shorter */
    int n_threads;         /* engine threads; <= 0: 1 */
    const int *types;      /* sensitivity: one or two measuring types; NULL: q3_K and q5_K */
    int n_types;
    const char *tensors;   /* sensitivity: POSIX extended regex of tensors to measure; NULL: every
                              weight the model multiplies or looks up */
    int act_type;          /* sensitivity: > 0 (with two K-quant types): also measure this type, whose
                              activations are q8_0 or q8_1 (e.g. SQ_TYPE_Q8_0), for the activation
                              costs act_q8_K / act_q8_0 of sq_plan_weight; 0: none */
    void (*progress)(void *ud, const char *tensor, int i, int n); /* optional, before each tensor
                              (the Fisher method: before each chunk, tensor "backward pass") */
    void *ud;
    int method;            /* sq_plan_calibrate: SQ_PLAN_CALIB_FISHER (0) or SQ_PLAN_CALIB_MEASURE */
    int grad_target;       /* Fisher: the loss's targets, an sq_grad_target (0: drawn from the model) */
    uint64_t seed;         /* Fisher: the draws' seed (0: a fixed default) */
} sq_plan_calib_params;

/* How sq_plan_calibrate finds the sensitivities. */
#define SQ_PLAN_CALIB_FISHER 0  /* one forward and backward pass per chunk (sq_plan_fisher_sensitivity) */
#define SQ_PLAN_CALIB_MEASURE 1 /* each tensor quantized alone, the model run again (sq_plan_measure_sensitivity) */

/* One tensor's measured sensitivity. */
typedef struct sq_plan_sensitivity {
    const char *name;
    double weight;   /* KL divergence per unit of relative error: with two points the slope
                        (kld[0]-kld[1]) / (rel[0]-rel[1]), with one kld[0] / rel[0]; at least
                        SQ_PLAN_SENS_FLOOR */
    int n_points;
    int types[2];    /* the tensor alone quantized to types[k] (all segments, no permutation) */
    double rel[2];   /* its relative error sum imp*(W-Q)^2 / sum imp*W^2 (as sq_plan_tensor) */
    double kld[2];   /* the mean KL divergence from the unmodified model */
    /* with act_type set: the tensor alone quantized to it (rel_act, kld_act), and the
     * activation costs derived (two K-quant points: act_q8_K = the line's intercept
     * kld[1] - weight*rel[1]; act_q8_0 = kld_act - weight*rel_act; both >= 0) */
    double rel_act, kld_act;
    double act_q8_K, act_q8_0;
} sq_plan_sensitivity;

typedef struct sq_plan_sens sq_plan_sens; /* opaque: owns its entries and names */

/* Measures the sensitivity of every chosen weight of m (F16/F32/BF16 or any
 * plain type the build dequantizes), in file order, each tensor quantized
 * alone with importance im (may be NULL). Errors: no or too short text, a
 * token out of range, a bad regex or type, no tensor chosen, a weight that
 * cannot be read (SmarterQuant) or replaced. */
sq_status sq_plan_measure_sensitivity(sq_model *m, const sq_imatrix *im, const sq_plan_calib_params *p,
                                      sq_plan_sens **out, sq_error *err);
void sq_plan_sens_free(sq_plan_sens *s); /* NULL is a no-op */
int64_t sq_plan_sens_count(const sq_plan_sens *s);
const sq_plan_sensitivity *sq_plan_sens_at(const sq_plan_sens *s, int64_t i);
/* The same as (name, weight) pairs for sq_plan_params.weights (count entries, owned by s). */
const sq_plan_weight *sq_plan_sens_weights(const sq_plan_sens *s);
/* Mean -log p of the unmodified model on the scored calibration tokens. */
double sq_plan_sens_base_nll(const sq_plan_sens *s);
/* How the set was found: SQ_PLAN_CALIB_FISHER or SQ_PLAN_CALIB_MEASURE. */
int sq_plan_sens_method(const sq_plan_sens *s);
/* Why sq_plan_calibrate measured per tensor although the Fisher method was
 * asked for (the backward pass does not run this model yet), as one line
 * for the user; NULL when it ran the method asked for. */
const char *sq_plan_sens_fallback(const sq_plan_sens *s);

/* Sensitivities from the engine's backward pass (sq/grad.h): the Fisher
 * statistics of every weight over the calibration chunks (scored positions
 * as above), in one forward and one backward pass per chunk, whatever the
 * number of tensors. Per tensor (file order; a tied embedding's two uses
 * added), as sq_plan_measure_sensitivity reports it but predicted: the
 * tensor quantized to each measuring type (p->types, default q3_K and q5_K;
 * importance im) has the predicted KL divergence kld[k] = 1/2 sum_r row[r]
 * sum_c col[c] dW[r][c]^2 (sq_grad_predict) at relative error rel[k]; weight
 * is the slope between the points; act_q8_K / act_q8_0 the predicted costs
 * of quantizing its input activations (sq_grad_act_cost); nats per scored
 * token. A tensor whose columns the types do not fit gets n_points 0 and the
 * weight 1/2 sum_r row[r] sum_c col[c] W[r][c]^2 (every row with the same
 * relative error). Rows are sampled as the planner samples them (sample_rows
 * spread evenly, 0: 256, < 0: all), sums scaled to all rows by the share of
 * the row factors the sample holds. Errors: as sq_plan_measure_sensitivity,
 * and out of memory for the backward pass. */
sq_status sq_plan_fisher_sensitivity(sq_model *m, const sq_imatrix *im, const sq_plan_calib_params *p,
                                     int64_t sample_rows, sq_plan_sens **out, sq_error *err);

/* The sensitivities by p->method (the Fisher estimate by default). A model
 * the backward pass does not run (sq_grad_supports: an architecture whose
 * layers it does not know yet) is measured per tensor instead, through the
 * forward pass only; sq_plan_sens_fallback then says so. */
sq_status sq_plan_calibrate(sq_model *m, const sq_imatrix *im, const sq_plan_calib_params *p, int64_t sample_rows,
                            sq_plan_sens **out, sq_error *err);

/* The mean KL divergence of the model quantized as plan says (every planned
 * tensor packed exactly as sq quantize writes it, permutation included) from
 * the unmodified model on the calibration text. plan must come from m's own
 * GGUF (sq_model_gguf). Only n_ctx, n_chunks, n_threads, tokens, bos are used. */
sq_status sq_plan_measure_kld(sq_model *m, const sq_imatrix *im, const sq_plan *plan, const sq_plan_calib_params *p,
                              double *kld, sq_error *err);

/* Sensitivities at the plan's operating point: the model quantized as plan
 * says; for each planned tensor (plan order) the KL divergence drop when that
 * tensor alone gets its original weights back, divided by its relative error
 * in the plan (n_points 1, types[0] its last segment type, kld[0] the drop).
 * It sees how the tensors' errors compound, which the sensitivities of
 * tensors quantized alone do not. *kld: the plan's own KL divergence. */
sq_status sq_plan_measure_sensitivity_in_plan(sq_model *m, const sq_imatrix *im, const sq_plan *plan,
                                              const sq_plan_calib_params *p, sq_plan_sens **out, double *kld,
                                              sq_error *err);

/* Closed loop: `rounds` times, the sensitivities of *plan are measured in the
 * plan (above) and the model planned again with them (p otherwise as given;
 * p->weights are not used after the first plan). Every plan met is measured;
 * *plan becomes the one with the lowest KL divergence on the calibration text
 * (the earliest on ties; the others are freed), *kld its KL divergence. On
 * failure *plan is freed and NULL. */
sq_status sq_plan_refine(sq_model *m, const sq_imatrix *im, const sq_plan_params *p, const sq_plan_calib_params *cp,
                         int rounds, sq_plan **plan, double *kld, sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_PLAN_H */
