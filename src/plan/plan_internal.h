/*
 * plan_internal.h — the planner's private state, shared by plan.c (analysis
 * and allocation) and plan_config.c (configuration text, file writing).
 */
#ifndef SQ_PLAN_INTERNAL_H
#define SQ_PLAN_INTERNAL_H

#include "sq/plan.h"

#define SQ__PLAN_MAX_CAND 24

/* One planned tensor while planning. Slot s (0..3) covers segment s, slot 3
 * every segment from 3 on; n_slots = min(segments, 4). Option o: 0 = columns
 * in their own order, 1 = the group's permutation. */
typedef struct sq__ptensor {
    const void *data;  /* the weights, in the model's map (not owned) */
    int in_type;
    int64_t rows, cols, n_seg;
    int n_slots;
    const float *imp;  /* cols importance values from the imatrix (not owned), or NULL */
    double *colsq;     /* cols: sum_r W[r,c]^2 (owned) */
    double energy;     /* sum_c imp[c] * colsq[c] */
    double norm;       /* what errors are divided by (normalisation) */
    int group;         /* index into the plan's groups */
    int n_cand[4];
    int cand[4][SQ__PLAN_MAX_CAND];
    uint64_t cbytes[4][SQ__PLAN_MAX_CAND];
    double cact[4][SQ__PLAN_MAX_CAND];    /* activation cost per slot, candidate (normalised units) */
    double cerr[2][4][SQ__PLAN_MAX_CAND]; /* raw weighted error per option, slot, candidate */
    int choice[4];     /* candidate index per slot */
} sq__ptensor;

/* Tensors that share one input, so one permutation. */
typedef struct sq__pgroup {
    int first;         /* first member (plan index) */
    int n_members;
    int members[8];
    int32_t *perm;     /* cols entries (owned), NULL when no permutation is possible/allowed */
    bool opt_avail[2]; /* which options may be chosen */
    int opt;           /* the option chosen */
    size_t perm_json_len;
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

#endif /* SQ_PLAN_INTERNAL_H */
