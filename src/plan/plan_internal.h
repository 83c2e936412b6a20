/*
 * plan_internal.h — the planner's private state, shared by its files:
 *   plan.c         sq_plan_create: the phases in order, the public view
 *   plan_select.c  which tensors are planned, the sizes of the others, groups, candidates
 *   plan_measure.c column statistics and the measured error of every candidate (streaming)
 *   plan_prior.c   sensitivities without measuring: llama.cpp's mix of that size, inverted
 *   plan_alloc.c   the Lagrange allocation and the greedy fill
 *   plan_config.c  the configuration text and llama-quantize's --tensor-type-file text
 */
#ifndef SQ_PLAN_INTERNAL_H
#define SQ_PLAN_INTERNAL_H

#include "sq/plan.h"

#define SQ__PLAN_MAX_CAND 64 /* candidate types per slot */
#define SQ__PLAN_MAX_USES 2  /* error terms per tensor (a tied embedding: lookup and product) */

/* One term of a tensor's error model: a weight error dW adds
 *   scale * sum_r row[r] * sum_c col[c] * dW[r][c]^2
 * to the objective. row: rows entries or NULL (every row 1); col: cols *
 * n_mat entries (one vector per matrix of a 3-D tensor), cols entries (the
 * same for every matrix), or NULL (the importance matrix, or 1 without one).
 * row and col are borrowed from sq_plan_params for the length of the call. */
typedef struct sq__puse {
    const double *row;
    const double *col;
    int64_t n_col;
    double scale;
} sq__puse;

/* One planned tensor while planning. Rows are ne[1] * ne[2] (every matrix of
 * a 3-D expert tensor; matrix m holds rows [m * mat_rows, (m+1) * mat_rows)).
 * Slot s (0..3) covers segment s, slot 3 every segment from 3 on; n_slots =
 * min(segments, 4). Option o: 0 = columns in their own order, 1 = the group's
 * permutation. Unit: what the allocation chooses a type for — each slot, or
 * (granularity tensor) the whole tensor as unit 0. */
typedef struct sq__ptensor {
    const void *data;  /* the weights, in the model's map (not owned) */
    int in_type;
    int64_t rows, cols, n_mat, mat_rows;
    int64_t n_seg;
    int n_slots, n_units;
    const float *qimp; /* cols * n_mat importance values from the imatrix (not owned), or NULL: what
                          the quantizer is given, as sq quantize will give it */
    double *score;     /* cols: sum over rows of imp[c] * W[r,c]^2 (owned until the permutations exist) */
    double energy;     /* sum of score: the output energy */
    int n_uses;
    sq__puse use[SQ__PLAN_MAX_USES];
    double weight;     /* multiplies the measured error (a sensitivity, or the prior's) */
    bool weighted;     /* the caller gave weight (sq_plan_params.weights) */
    double act_k, act_0; /* activation costs (q8_K, q8_0/q8_1 activations), objective units */
    int prior_type;    /* llama.cpp's type for it in the prior's mix, or -1 */
    int group;         /* index into the plan's groups */
    int n_cand[4];
    int cand[4][SQ__PLAN_MAX_CAND];
    uint64_t cbytes[4][SQ__PLAN_MAX_CAND];
    double cact[4][SQ__PLAN_MAX_CAND];    /* activation cost per unit, candidate (objective units) */
    double cerr[2][4][SQ__PLAN_MAX_CAND]; /* model error per option, unit, candidate (before weight) */
    double craw[2][4][SQ__PLAN_MAX_CAND]; /* sum imp * dW^2 per option, unit, candidate (for rel_error) */
    int choice[4];     /* candidate index per unit */
} sq__ptensor;

/* Tensors that share one input, so one permutation. */
typedef struct sq__pgroup {
    int first;         /* first member (plan index) */
    int n_members;
    int members[8];
    int32_t *perm;     /* cols entries (owned), NULL when no permutation is possible/allowed */
    bool opt_avail[2]; /* which options may be chosen */
    int opt;           /* the option chosen */
    uint64_t opt_extra[2]; /* bytes an option adds outside the tensor data (the permutation keys) */
} sq__pgroup;

struct sq_plan {
    sq_plan_tensor *out;  /* n entries, the public view */
    sq__ptensor *pt;
    char **names;         /* owned copies */
    int64_t n;
    sq__pgroup *groups;
    int n_groups;
    sq_plan_totals totals;
    char **warnings;
    int64_t n_warnings;
};

/* What the phases share while one plan is made. */
typedef struct sq__pctx {
    const sq_gguf *model;
    const sq_imatrix *im;
    const sq_plan_params *p;
    sq_plan *plan;
    int types[SQ__PLAN_MAX_CAND]; /* the candidate types, deduplicated */
    int n_types;
    bool default_types;           /* types is the default list (the type table) */
    uint64_t fixed_data;          /* aligned data bytes of the tensors not planned */
    uint64_t header;              /* header estimate without the SmarterQuant keys */
    int64_t n_elements;           /* weights in all tensors */
    uint64_t budget;              /* bytes for the planned tensors' data */
    uint64_t keys_overhead;       /* header + keys + padding charged besides planned data */
    bool options_known;           /* the permutations are built: each group's opt_avail holds */
} sq__pctx;

/* plan.c */
sq_status sq__plan_warn(sq_plan *plan, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sq__plan_progress(const sq__pctx *c, const char *phase, int64_t done, int64_t total);

/* plan_select.c */
sq_status sq__plan_candidate_types(sq__pctx *c, sq_error *err);
sq_status sq__plan_select(sq__pctx *c, sq_error *err);
sq_status sq__plan_groups(sq__pctx *c, sq_error *err);
sq_status sq__plan_mix_types(const sq__pctx *c, int ftype, int *types, uint64_t *bytes, sq_error *err);
void sq__plan_add_candidate(sq__ptensor *pt, int type);
uint64_t sq__plan_sq_keys_bytes(const char *name, int64_t cols, const int32_t *perm, const int types[4]);
uint64_t sq__plan_perm_bytes(const char *name, int64_t cols, const int32_t *perm);

/* plan_measure.c */
sq_status sq__plan_score(sq__pctx *c, sq_error *err);
sq_status sq__plan_measure(sq__pctx *c, int opt, sq_error *err);
sq_status sq__plan_build_perms(sq__pctx *c, sq_error *err);

/* plan_prior.c */
sq_status sq__plan_prior_mix(sq__pctx *c, sq_error *err);
sq_status sq__plan_prior(sq__pctx *c, sq_error *err);
void sq__plan_prior_match(sq__pctx *c);

/* plan_alloc.c */
void sq__plan_whole_tensor(sq__ptensor *pt);
double sq__plan_cand_err(const sq__ptensor *pt, int opt, int unit, int k);
/* Fails before any candidate is measured when even every unit's smallest
 * candidate, unpermuted, exceeds the budget (measuring cannot make a plan
 * smaller; on a large model it takes minutes). */
sq_status sq__plan_check_budget(const sq__pctx *c, sq_error *err);
sq_status sq__plan_allocate(sq__pctx *c, double *lambda, sq_error *err);

#endif /* SQ_PLAN_INTERNAL_H */
