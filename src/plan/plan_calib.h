/*
 * plan_calib.h — what the planner's two calibrations share (plan_calib.c:
 * measured per tensor; plan_fisher.c: from the engine's backward pass): the
 * result set and how the calibration text is cut into chunks.
 */
#ifndef SQ_PLAN_CALIB_H
#define SQ_PLAN_CALIB_H

#include "sq/plan.h"

struct sq_plan_sens {
    sq_plan_sensitivity *e; /* n entries; names owned */
    sq_plan_weight *w;      /* the same as (name, weight) pairs for sq_plan_params */
    int64_t n;
    double base_nll;        /* mean -log p of the unmodified model on the scored tokens */
    double **owned;         /* arrays the entries point into (n_owned), freed with the set */
    int64_t n_owned;
    int method;             /* SQ_PLAN_CALIB_FISHER or SQ_PLAN_CALIB_MEASURE: how the set was found */
    char fallback[256];     /* why the Fisher method was not used ("" when it was, or not asked for) */
};

/* An empty set with room for n entries; NULL when out of memory. */
sq_plan_sens *sq__plan_sens_alloc(int64_t n);

/* The chunks of the calibration text: n_chunks of n_ctx tokens (each first
 * token replaced by p->bos when >= 0), malloc'ed into *chunks. The length and
 * count follow p (defaults 512 tokens, at most the training context;
 * SQ_PLAN_CALIB_DEFAULT_CHUNKS, fewer when the text is shorter). Errors: a
 * text shorter than one chunk, a token out of range, chunks under 8 tokens. */
sq_status sq__plan_calib_chunks(const sq_model *m, const sq_plan_calib_params *p, int32_t **chunks, int *n_ctx,
                                int *n_chunks, sq_error *err);

/* The importance values of a tensor in im, or NULL (none, or of another length). */
const float *sq__plan_find_imp(const sq_imatrix *im, const char *name, int64_t cols);

/* The measuring types of p (one or two; default q3_K and q5_K), checked:
 * quantizable and multipliable weight types. */
sq_status sq__plan_calib_types(const sq_plan_calib_params *p, const int **types, int *n, sq_error *err);

#endif
