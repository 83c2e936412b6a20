/*
 * plan.c — sq_plan_create: the planner's phases in order (sq/plan.h and
 * docs/plan.md say what each does), the budget, and the plan's public view.
 *
 *   select     which tensors, their candidates, the sizes of the others (plan_select.c)
 *   groups     tensors that read one input share a permutation
 *   budget     the bytes left for the planned tensors' data
 *   prior mix  llama.cpp's mix of the nearest size, for tensors without a sensitivity
 *   models     each tensor's error model: given sensitivities or Fisher factors
 *   measure    column statistics, every candidate without permutation (plan_measure.c)
 *   prior      weights inferred from the mix (plan_prior.c)
 *   perms      the groups' permutations, then every candidate with them
 *   allocate   the Lagrange search and the greedy fill (plan_alloc.c)
 *
 * Ownership: the plan owns copies of the tensor names, the permutations, the
 * per-tensor statistics and the warnings. The model, the importance matrix
 * and the sensitivities are only read during sq_plan_create and may be freed
 * afterwards.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_internal.h"
#include "sq/types.h"

/* Appends a printf-formatted warning to the plan's list. */
sq_status sq__plan_warn(sq_plan *plan, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(plan->warnings, (size_t)(plan->n_warnings + 1) * sizeof *w);
    if (!w) return SQ_ENOMEM;
    plan->warnings = w;
    w[plan->n_warnings] = strdup(buf);
    if (!w[plan->n_warnings]) return SQ_ENOMEM;
    plan->n_warnings++;
    return SQ_OK;
}

/* Tells the caller's progress function how far a phase is. */
void sq__plan_progress(const sq__pctx *c, const char *phase, int64_t done, int64_t total)
{
    if (c->p->progress) c->p->progress(c->p->progress_ud, phase, done, total);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return a ? (v + a - 1) / a * a : v; }

/* The parameters' own checks: one target, sensible numbers. */
static sq_status check_params(const sq_plan_params *p, sq_error *err)
{
    bool by_bpw = p->target_bpw > 0, by_size = p->target_bytes > 0;
    if (by_bpw == by_size) return sq_error_set(err, SQ_EINVAL, "give exactly one target: bits per weight or a file size");
    if (by_bpw && !(p->target_bpw < 64))
        return sq_error_set(err, SQ_ERANGE, "target %.3f bits per weight is out of range", p->target_bpw);
    for (int i = 0; i < p->n_weights; i++) {
        const sq_plan_weight *w = &p->weights[i];
        if (!(w->weight > 0) || !isfinite(w->weight) || !(w->act_q8_K >= 0) || !(w->act_q8_0 >= 0) ||
            !isfinite(w->act_q8_K) || !isfinite(w->act_q8_0))
            return sq_error_set(err, SQ_ERANGE, "sensitivity of %s is %g (activation costs %g, %g): want a positive "
                                "number (and costs >= 0)",
                                w->name ? w->name : "(null)", w->weight, w->act_q8_K, w->act_q8_0);
        for (int64_t k = 0; w->row && k < w->n_row; k++)
            if (!(w->row[k] >= 0) || !isfinite(w->row[k]))
                return sq_error_set(err, SQ_ERANGE, "sensitivity of %s: row factor %lld is %g, want a number >= 0",
                                    w->name ? w->name : "(null)", (long long)k, w->row[k]);
        for (int64_t k = 0; w->col && k < w->n_col; k++)
            if (!(w->col[k] >= 0) || !isfinite(w->col[k]))
                return sq_error_set(err, SQ_ERANGE, "sensitivity of %s: column factor %lld is %g, want a number >= 0",
                                    w->name ? w->name : "(null)", (long long)k, w->col[k]);
    }
    return SQ_OK;
}

/* Adds one entry of the caller's sensitivities to a tensor's error model:
 * factors become a term of their own, a plain weight multiplies the
 * relative error; activation costs add. */
static sq_status add_weight(sq__ptensor *pt, const char *name, const sq_plan_weight *w, sq_error *err)
{
    pt->weighted = true;
    pt->act_k += w->act_q8_K;
    pt->act_0 += w->act_q8_0;
    if (!w->row && !w->col) {
        pt->weight = w->weight;
        return SQ_OK;
    }
    if (w->row && w->n_row != pt->rows)
        return sq_error_set(err, SQ_EINVAL, "sensitivity of %s: %lld row factors, the tensor has %lld rows", name,
                            (long long)w->n_row, (long long)pt->rows);
    if (w->col && w->n_col != pt->cols && w->n_col != pt->cols * pt->n_mat)
        return sq_error_set(err, SQ_EINVAL, "sensitivity of %s: %lld column factors, the tensor has %lld columns", name,
                            (long long)w->n_col, (long long)pt->cols);
    if (pt->n_uses == SQ__PLAN_MAX_USES)
        return sq_error_set(err, SQ_EINVAL, "sensitivity of %s: more than %d sets of factors", name, SQ__PLAN_MAX_USES);
    pt->use[pt->n_uses++] = (sq__puse){.row = w->row, .col = w->col, .n_col = w->n_col, .scale = 0.5 * w->weight};
    return SQ_OK;
}

/* Each tensor's error model from the caller's sensitivities (tensors not
 * listed keep weight 1 until the prior), and every candidate's activation
 * cost: the slot's share of the columns times the tensor's cost for the
 * candidate's vec_dot_type. */
static sq_status error_models(sq__pctx *c, bool costs_only, sq_error *err)
{
    const sq_plan_params *p = c->p;
    sq_plan *plan = c->plan;
    for (int64_t t = 0; t < plan->n; t++) {
        sq__ptensor *pt = &plan->pt[t];
        for (int i = 0; !costs_only && i < p->n_weights; i++)
            if (p->weights[i].name && strcmp(p->weights[i].name, plan->names[t]) == 0) {
                sq_status st = add_weight(pt, plan->names[t], &p->weights[i], err);
                if (st != SQ_OK) return st;
            }
        for (int s = 0; costs_only && s < pt->n_slots; s++) {
            int64_t s_end = s < 3 ? s + 1 : pt->n_seg, ncols = 0;
            for (int64_t seg = s; seg < s_end; seg++) ncols += sq_segment_len(pt->cols, seg);
            for (int k = 0; k < pt->n_cand[s]; k++) {
                const sq_type_info *ti = sq_type_info_get(pt->cand[s][k]);
                int v = ti ? (int)ti->vec_dot_type : -1;
                double a = v == SQ_TYPE_Q8_K ? pt->act_k : (v == SQ_TYPE_Q8_0 || v == SQ_TYPE_Q8_1) ? pt->act_0 : 0.0;
                pt->cact[s][k] = a * (double)ncols / (double)pt->cols;
            }
        }
    }
    return SQ_OK;
}

/* The bytes left for the planned tensors' data: the target less the header
 * (with the SmarterQuant keys of an unpermuted plan; a permutation's string
 * is charged to the option that uses it), the other tensors and the padding. */
static void compute_budget(sq__pctx *c)
{
    sq_plan *plan = c->plan;
    uint64_t A = sq_gguf_alignment(c->model);
    uint64_t sq_keys = 0, pad = 0;
    for (int64_t t = 0; t < plan->n; t++) {
        sq_keys += sq__plan_sq_keys_bytes(plan->names[t], plan->pt[t].cols, NULL, NULL);
        pad += A - 1;
    }
    if (c->p->target_bytes > 0) {
        uint64_t need = align_up(c->header + sq_keys, A) + c->fixed_data + pad;
        c->budget = c->p->target_bytes > need ? c->p->target_bytes - need : 0;
        c->keys_overhead = need;
        plan->totals.budget_bytes = c->p->target_bytes;
    } else {
        double b = floor(c->p->target_bpw * (double)c->n_elements / 8.0);
        uint64_t need = c->fixed_data + pad;
        c->budget = b > (double)need ? (uint64_t)b - need : 0;
        c->keys_overhead = need;
        plan->totals.budget_bytes = (uint64_t)b;
    }
}

/* The public view of the allocation, and the totals. */
static sq_status public_view(sq__pctx *c, double lambda, sq_error *err)
{
    sq_plan *plan = c->plan;
    uint64_t A = sq_gguf_alignment(c->model);
    plan->out = calloc(plan->n > 0 ? (size_t)plan->n : 1, sizeof *plan->out);
    if (!plan->out) return sq_error_set(err, SQ_ENOMEM, "out of memory for the plan");
    sq_plan_totals *tot = &plan->totals;
    uint64_t sq_keys = 0, planned_aligned = 0;
    for (int64_t t = 0; t < plan->n; t++) {
        const sq__ptensor *pt = &plan->pt[t];
        const sq__pgroup *g = &plan->groups[pt->group];
        sq_plan_tensor *o = &plan->out[t];
        *o = (sq_plan_tensor){.name = plan->names[t], .rows = pt->rows, .cols = pt->cols, .group = g->first,
                              .perm = g->opt == 1 ? g->perm : NULL, .has_imatrix = pt->qimp != NULL,
                              .energy = pt->energy, .weight = pt->weight, .prior_type = pt->prior_type};
        double raw = 0.0;
        for (int u = 0; u < pt->n_units; u++) {
            int k = pt->choice[u];
            o->bytes += pt->cbytes[u][k];
            raw += pt->craw[g->opt][u][k];
            o->error += sq__plan_cand_err(pt, g->opt, u, k);
        }
        for (int s = 0; s < 4; s++) {
            int u = pt->n_units == 1 ? 0 : (s < pt->n_slots ? s : pt->n_slots - 1);
            o->types[s] = pt->cand[u][pt->choice[u]];
        }
        o->bpw = (double)o->bytes * 8.0 / (double)(pt->rows * pt->cols);
        o->rel_error = pt->energy > 0 ? raw / pt->energy : 0.0;
        tot->error += o->error;
        tot->planned_bytes += o->bytes;
        planned_aligned += align_up(o->bytes, A);
        sq_keys += sq__plan_sq_keys_bytes(o->name, o->cols, o->perm, o->types);
    }
    tot->n_planned = plan->n;
    tot->n_elements = c->n_elements;
    tot->data_bytes = c->fixed_data + planned_aligned;
    tot->file_bytes = align_up(c->header + sq_keys, A) + tot->data_bytes;
    tot->bpw = (double)tot->data_bytes * 8.0 / (double)c->n_elements;
    tot->lambda = lambda;
    return SQ_OK;
}

/* The phases after selection, in order (see the top of this file). */
static sq_status run_phases(sq__pctx *c, sq_error *err)
{
    sq_plan *plan = c->plan;
    sq_status st = sq__plan_groups(c, err);
    if (st == SQ_OK) st = error_models(c, false, err);
    if (st == SQ_OK) {
        compute_budget(c);
        st = sq__plan_prior_mix(c, err);
    }
    if (st == SQ_OK) st = sq__plan_check_budget(c, err);
    if (st == SQ_OK) st = error_models(c, true, err);
    if (st == SQ_OK) st = sq__plan_score(c, err);
    /* the prior infers the weights the permutations are sorted by from the
     * unpermuted candidates; otherwise the permutations come first, so that
     * groups that must take theirs (--perm on) skip the unpermuted ones */
    bool prior = plan->totals.prior_ftype >= 0;
    if (st == SQ_OK && prior) st = sq__plan_measure(c, 0, err);
    if (st == SQ_OK) st = sq__plan_prior(c, err);
    if (st == SQ_OK) st = sq__plan_build_perms(c, err);
    if (st == SQ_OK && !prior) st = sq__plan_measure(c, 0, err);
    if (st == SQ_OK) st = sq__plan_measure(c, 1, err);
    for (int64_t t = 0; st == SQ_OK && t < plan->n && c->p->granularity == SQ_PLAN_GRAN_TENSOR; t++) {
        sq__plan_whole_tensor(&plan->pt[t]);
        if (plan->pt[t].n_cand[0] == 0)
            st = sq_error_set(err, SQ_EINVAL, "tensor %s: no candidate type fits all of its %lld columns (granularity "
                              "tensor)", plan->names[t], (long long)plan->pt[t].cols);
    }
    if (st == SQ_OK) sq__plan_prior_match(c);
    double lambda = 0.0;
    if (st == SQ_OK) st = sq__plan_allocate(c, &lambda, err);
    if (st == SQ_OK) st = public_view(c, lambda, err);
    return st;
}

sq_status sq_plan_create(const sq_gguf *model, const sq_imatrix *im, const sq_plan_params *p, sq_plan **out,
                         sq_error *err)
{
    *out = NULL;
    double t0 = sq_time_now();
    if (!model || !p) return sq_error_set(err, SQ_EINVAL, "sq_plan_create: no model or parameters");
    sq_status st = check_params(p, err);
    if (st != SQ_OK) return st;
    sq_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return sq_error_set(err, SQ_ENOMEM, "out of memory for the plan");
    plan->totals.prior_ftype = -1;
    sq__pctx c = {.model = model, .im = im, .p = p, .plan = plan};
    st = sq__plan_candidate_types(&c, err);
    if (st == SQ_OK) st = sq__plan_select(&c, err);
    if (st == SQ_OK) st = run_phases(&c, err);
    if (st != SQ_OK) {
        sq_plan_free(plan);
        return st;
    }
    plan->totals.seconds = sq_time_now() - t0;
    *out = plan;
    return SQ_OK;
}

void sq_plan_free(sq_plan *plan)
{
    if (!plan) return;
    for (int64_t i = 0; i < plan->n; i++) {
        free(plan->names[i]);
        free(plan->pt[i].score);
    }
    for (int g = 0; g < plan->n_groups; g++) free(plan->groups[g].perm);
    for (int64_t i = 0; i < plan->n_warnings; i++) free(plan->warnings[i]);
    free(plan->warnings);
    free(plan->groups);
    free(plan->names);
    free(plan->pt);
    free(plan->out);
    free(plan);
}

int64_t sq_plan_n_tensors(const sq_plan *plan) { return plan ? plan->n : 0; }
const sq_plan_tensor *sq_plan_tensor_at(const sq_plan *plan, int64_t i)
{
    return plan && i >= 0 && i < plan->n ? &plan->out[i] : NULL;
}
const sq_plan_totals *sq_plan_get_totals(const sq_plan *plan) { return plan ? &plan->totals : NULL; }
int64_t sq_plan_n_warnings(const sq_plan *plan) { return plan ? plan->n_warnings : 0; }
const char *sq_plan_warning(const sq_plan *plan, int64_t i)
{
    return plan && i >= 0 && i < plan->n_warnings ? plan->warnings[i] : NULL;
}
