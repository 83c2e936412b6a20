/*
 * plan_prior.c — sensitivities without measuring them: llama.cpp's mix of
 * the nearest size, read as an allocation.
 *
 * A mix is llama.cpp's answer to "which type for which tensor at this size";
 * its rules encode what is known without measuring (the output and attn_v
 * matter more, the first and last layers more than the middle, ...). If the
 * mix were the optimum of the planner's error model sum_t w_t * rel_t under
 * its size, each tensor's chosen type would sit on the lower convex hull of
 * that tensor's (bytes, relative error) candidates, at a multiplier lambda
 * between the error drop per byte to the next cheaper hull point and to the
 * next dearer one: w_t * s_right <= lambda <= w_t * s_left. With lambda = 1
 * (the scale is free) w_t lies in [1 / s_left, 1 / s_right]; the first weight
 * is the geometric middle. It orders the columns of a group's permutation.
 *
 * Once every candidate is also measured with the permutation, the weight is
 * set again: so that at lambda = 1 the tensor's own best allocation (a type
 * per segment slot, permuted or not) takes exactly the bytes the mix gives it.
 * The mix's split of the budget between tensors is kept — what the rules know
 * about tensors — and inside each tensor the segments, the permutation and
 * every type of the type table spend those bytes where the tensor's own
 * measured errors say. The mix itself is one of the allocations each tensor
 * can choose, so the whole-tensor choices start from llama.cpp's and can only
 * gain in the model. (Weights inferred from all mixes at once were tried: they
 * move bytes between tensors on evidence the rules do not really carry, and
 * lost at some sizes; docs/plan.md.)
 *
 * The weights say little about how a tensor compares with another, so the
 * allocation's last moves (the SmarterQuant keys make the budget a few KB
 * smaller than the mix) can take a slot from a tensor the model needs. The
 * rules say which tensors those are: the mix's dearest type (output.weight)
 * and the tensors the next smaller mix gives more bits keep their type's bits
 * in every slot. The next smaller mix also bounds the candidates from below
 * (one rung under its type for the tensor), which spares measuring the slow
 * low-bit quantizers where they would never be chosen.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_internal.h"
#include "sq/blocks.h"
#include "sq/quantize.h"
#include "sq/types.h"

/* Whether every planned tensor can hold the mix's type: a known type the
 * build quantizes and multiplies, with an importance matrix when it needs one. */
static bool mix_usable(const sq__pctx *c, const int *types)
{
    for (int64_t t = 0; t < c->plan->n; t++) {
        const sq_type_info *ti = sq_type_info_get(types[t]);
        if (types[t] < 0 || !ti || !sq_blocks_can_quantize(types[t]) || !sq_blocks_can_dot(types[t])) return false;
        if (ti->needs_imatrix && !c->plan->pt[t].qimp) return false;
    }
    return true;
}

/* Whether file type entry fi is a mix to infer from: not an alias, and built
 * on a 256-column type (the K-quant and i-quant mixes, whose rules say which
 * tensors matter). The 32-column file types (Q4_0 ... Q8_0, IQ4_NL, MXFP4)
 * are near-uniform compatibility formats whose sizes coincide with K-quant
 * mixes (Q5_0 and Q5_K_S both spend 5.5 bits per weight). Nor the ternary ones. */
static bool mix_candidate(const sq_ftype_info *fi)
{
    const sq_type_info *ti = sq_type_info_get(fi->default_type);
    /* the ternary types are for models trained ternary (BitNet): their mixes say nothing about others */
    bool ternary = fi->default_type == SQ_TYPE_TQ1_0 || fi->default_type == SQ_TYPE_TQ2_0;
    return !fi->copy && ti && ti->is_quantized && ti->block_size == SQ_SEGMENT && !ternary && sq_ftype_get(fi->ftype) == fi;
}

/* Scans the mixes the build can make for this model (want: only that one)
 * for the one whose planned tensors' bytes are nearest the budget, or, with
 * below > 0, the largest under `below` bytes (ties: the earlier in
 * llama-quantize's list). Its types go to found, its file type and bytes to
 * *ftype and *bytes; *ftype is -1 when none qualifies. */
static sq_status find_mix(const sq__pctx *c, const sq_ftype_info *want, uint64_t below, int *types, int *found,
                          int *ftype, uint64_t *bytes, sq_error *err)
{
    uint64_t best = UINT64_MAX;
    *ftype = -1;
    for (int i = 0; i < sq_ftype_count(); i++) {
        const sq_ftype_info *fi = sq_ftype_at(i);
        if (want ? fi != want : !mix_candidate(fi)) continue;
        uint64_t b = 0;
        sq_status st = sq__plan_mix_types(c, fi->ftype, types, &b, err);
        if (st != SQ_OK) return st;
        if (!mix_usable(c, types) || (below > 0 && b >= below)) continue;
        uint64_t dist = below > 0 ? below - b : b > c->budget ? b - c->budget : c->budget - b;
        if (dist >= best) continue;
        best = dist;
        *ftype = fi->ftype;
        *bytes = b;
        memcpy(found, types, (size_t)c->plan->n * sizeof *found);
    }
    return SQ_OK;
}

/* Bits per weight of a type's blocks. */
static double type_bpw(int type)
{
    const sq_type_info *ti = sq_type_info_get(type);
    return ti && ti->block_size > 0 ? 8.0 * ti->type_size / ti->block_size : 0.0;
}

/* Drops from a tensor's slots the candidates of fewer bits per weight than
 * `floor` or, with step, than the rung of the tensor's candidate ladder just
 * below it. The prior's type stays, and a slot keeps its candidates where
 * none would be left. */
static void drop_below(sq__ptensor *pt, double floor, bool step)
{
    double rung = step ? 0.0 : floor;
    for (int s = 0; s < pt->n_slots && step; s++)
        for (int k = 0; k < pt->n_cand[s]; k++) {
            double b = type_bpw(pt->cand[s][k]);
            if (b < floor && b > rung) rung = b;
        }
    for (int s = 0; s < pt->n_slots; s++) {
        int n = 0;
        for (int k = 0; k < pt->n_cand[s]; k++)
            n += pt->cand[s][k] == pt->prior_type || type_bpw(pt->cand[s][k]) >= rung;
        for (int k = 0, j = 0; n > 0 && k < pt->n_cand[s]; k++) {
            if (pt->cand[s][k] != pt->prior_type && type_bpw(pt->cand[s][k]) < rung) continue;
            pt->cand[s][j] = pt->cand[s][k];
            pt->cbytes[s][j] = pt->cbytes[s][k];
            j++;
        }
        if (n > 0) pt->n_cand[s] = n;
    }
}

/* A tensor's candidates under the prior, given its type in the mix (type),
 * in the next smaller mix (lower, -1 for none) and the mix's dearest type's
 * bits (top):
 * - the mix's type is a candidate (with the default list), so the mix is a
 *   plan the allocation can reach;
 * - with the default list, no type below the rung under the bits llama.cpp
 *   gives the tensor one mix down (or in this mix, when fewer): the prior
 *   keeps a tensor near its bytes, so far fewer bits are never chosen, and
 *   not measuring the slow low-bit quantizers is most of such a plan's time;
 * - a tensor llama.cpp's rules protect — its type is the mix's dearest, or
 *   the smaller mix gives it more bits than this one — keeps at least its
 *   type's bits in every slot. The prior's weights cannot tell whether bytes
 *   taken from it cost more than they buy elsewhere (on the demo model,
 *   output.weight's half at q5_K cost 10 %); the rules say they do. */
static void prior_candidates(const sq__pctx *c, sq__ptensor *pt, int type, int lower, double top)
{
    pt->prior_type = type;
    if (c->default_types) sq__plan_add_candidate(pt, type);
    if (c->default_types && lower >= 0) drop_below(pt, fmin(type_bpw(lower), type_bpw(type)), true);
    if (type_bpw(type) == top || (lower >= 0 && type_bpw(lower) > type_bpw(type)))
        drop_below(pt, type_bpw(type), false);
}

/* Chooses the prior's mix: the caller's, or among the K-quant and i-quant
 * mixes the build can make for this model the one whose planned tensors'
 * bytes are nearest the budget; records every tensor's type in it and sets
 * its candidates (prior_candidates) from that mix and the next smaller one. */
sq_status sq__plan_prior_mix(sq__pctx *c, sq_error *err)
{
    sq_plan *plan = c->plan;
    plan->totals.prior_ftype = -1;
    if (c->p->prior != SQ_PLAN_PRIOR_MIX || c->p->n_weights > 0) return SQ_OK;
    const sq_ftype_info *want = c->p->prior_ftype ? sq_ftype_parse(c->p->prior_ftype) : NULL;
    if (c->p->prior_ftype && !want) return sq_error_set(err, SQ_EINVAL, "prior: unknown file type '%s'", c->p->prior_ftype);
    size_t n = plan->n > 0 ? (size_t)plan->n : 1;
    int *types = malloc(n * sizeof *types), *best = malloc(n * sizeof *best), *lower = malloc(n * sizeof *lower);
    int lower_ftype = -1;
    uint64_t lower_bytes = 0;
    sq_status st = SQ_OK;
    if (!types || !best || !lower) st = sq_error_set(err, SQ_ENOMEM, "out of memory for the prior");
    if (st == SQ_OK)
        st = find_mix(c, want, 0, types, best, &plan->totals.prior_ftype, &plan->totals.prior_bytes, err);
    if (st == SQ_OK && want && plan->totals.prior_ftype < 0)
        st = sq_error_set(err, SQ_EINVAL, "prior: the mix %s cannot be used for this model (a type this build cannot "
                          "quantize, or one that needs an importance matrix)", want->name);
    if (st == SQ_OK && plan->totals.prior_ftype >= 0)
        st = find_mix(c, NULL, plan->totals.prior_bytes, types, lower, &lower_ftype, &lower_bytes, err);
    double top = 0.0;
    for (int64_t t = 0; st == SQ_OK && plan->totals.prior_ftype >= 0 && t < plan->n; t++) top = fmax(top, type_bpw(best[t]));
    for (int64_t t = 0; st == SQ_OK && plan->totals.prior_ftype >= 0 && t < plan->n; t++)
        prior_candidates(c, &plan->pt[t], best[t], lower_ftype >= 0 ? lower[t] : -1, top);
    free(types);
    free(best);
    free(lower);
    return st;
}

/* One whole-tensor candidate: bytes and error (option 0, weight 1). */
typedef struct point {
    double b, e;
    int type;
} point;

static int point_cmp(const void *x, const void *y)
{
    const point *a = x, *b = y;
    if (a->b != b->b) return a->b < b->b ? -1 : 1;
    if (a->e != b->e) return a->e < b->e ? -1 : 1;
    return a->type - b->type;
}

/* The tensor's whole-tensor candidates (types every slot has), sorted by
 * bytes; returns how many. */
static int whole_points(const sq__ptensor *pt, point *pts)
{
    int n = 0;
    for (int k = 0; k < pt->n_cand[0]; k++) {
        point p = {0, 0, pt->cand[0][k]};
        bool all = true;
        for (int s = 0; s < pt->n_slots && all; s++) {
            int j = -1;
            for (int i = 0; i < pt->n_cand[s]; i++)
                if (pt->cand[s][i] == p.type) j = i;
            if (j < 0) all = false;
            else p.b += (double)pt->cbytes[s][j], p.e += pt->cerr[0][s][j];
        }
        if (all) pts[n++] = p;
    }
    qsort(pts, (size_t)n, sizeof *pts, point_cmp);
    return n;
}

/* The lower convex hull of sorted points, in place: error strictly falling,
 * the drop per byte falling from one edge to the next. Returns its size. */
static int lower_hull(point *p, int n)
{
    int h = 0;
    for (int i = 0; i < n; i++) {
        if (h > 0 && p[i].e >= p[h - 1].e) continue; /* dearer and not better */
        if (h > 0 && p[i].b == p[h - 1].b) continue;
        while (h >= 2) {
            /* drop h-1 when the edge h-2 -> i runs below it */
            double s1 = (p[h - 2].e - p[h - 1].e) / (p[h - 1].b - p[h - 2].b);
            double s2 = (p[h - 1].e - p[i].e) / (p[i].b - p[h - 1].b);
            if (s2 >= s1) h--;
            else break;
        }
        p[h++] = p[i];
    }
    return h;
}

/* The range of log(w / lambda) under which the whole-tensor type `type`
 * (bytes tb) is the choice (see the top of this file): [*lo, *hi], either
 * end infinite when the type is the cheapest or dearest point of the hull.
 * False when there is nothing to infer from (fewer than two hull points). */
static bool weight_range(const point *hull, int h, int type, double tb, double *lo, double *hi)
{
    if (h < 2) return false;
    for (int i = 0; i < h; i++) {
        if (hull[i].type != type) continue;
        double sl = i > 0 ? (hull[i - 1].e - hull[i].e) / (hull[i].b - hull[i - 1].b) : 0.0;
        double sr = i + 1 < h ? (hull[i].e - hull[i + 1].e) / (hull[i + 1].b - hull[i].b) : 0.0;
        *lo = sl > 0 ? -log(sl) : -INFINITY;
        *hi = sr > 0 ? -log(sr) : INFINITY;
        return true;
    }
    /* not on the hull (a candidate of about its size is better): the hull
     * points on either side of its size would be the choice, so either's range */
    int i = 0;
    while (i + 2 < h && hull[i + 1].b < tb) i++;
    double sl = i > 0 ? (hull[i - 1].e - hull[i].e) / (hull[i].b - hull[i - 1].b) : 0.0;
    double sr = i + 2 < h ? (hull[i + 1].e - hull[i + 2].e) / (hull[i + 2].b - hull[i + 1].b) : 0.0;
    *lo = sl > 0 ? -log(sl) : -INFINITY;
    *hi = sr > 0 ? -log(sr) : INFINITY;
    return true;
}

/* The prior's first weights (the geometric middle of each tensor's range,
 * for the permutations), for a plan whose caller gave no sensitivities. A
 * tensor with nothing to infer from keeps weight 1. */
sq_status sq__plan_prior(sq__pctx *c, sq_error *err)
{
    sq_plan *plan = c->plan;
    if (plan->totals.prior_ftype < 0) return SQ_OK;
    point *pts = malloc(2 * SQ__PLAN_MAX_CAND * sizeof *pts), *hull = pts ? pts + SQ__PLAN_MAX_CAND : NULL;
    if (!pts) return sq_error_set(err, SQ_ENOMEM, "out of memory for the prior");
    for (int64_t t = 0; t < plan->n; t++) {
        sq__ptensor *pt = &plan->pt[t];
        int np = whole_points(pt, pts);
        double tb = 0.0, lo, hi;
        for (int i = 0; i < np; i++)
            if (pts[i].type == pt->prior_type) tb = pts[i].b;
        memcpy(hull, pts, (size_t)np * sizeof *pts);
        if (!weight_range(hull, lower_hull(hull, np), pt->prior_type, tb, &lo, &hi)) continue;
        if (!isfinite(lo) && !isfinite(hi)) continue; /* any weight gives the mix's type: nothing to infer */
        double x = isfinite(lo) && isfinite(hi) ? (lo + hi) / 2 : isfinite(lo) ? lo : hi;
        pt->weight = exp(fmin(fmax(x, -700.0), 700.0)); /* a finite weight: exp overflows a double beyond 709 */
        plan->totals.n_prior++;
    }
    free(pts);
    return SQ_OK;
}

/* The bytes of a tensor's own best allocation at error-per-byte mu (weight
 * 1): every unit its cheapest err + mu * bytes, the better permutation option. */
static uint64_t tensor_bytes_at(const sq_plan *plan, const sq__ptensor *pt, double mu)
{
    const sq__pgroup *g = &plan->groups[pt->group];
    double best = INFINITY;
    uint64_t best_b = 0;
    for (int o = 0; o < 2; o++) {
        if (!g->opt_avail[o]) continue;
        double cost = 0.0;
        uint64_t bytes = 0;
        for (int u = 0; u < pt->n_units; u++) {
            double bc = INFINITY;
            uint64_t bb = 0;
            for (int k = 0; k < pt->n_cand[u]; k++) {
                double cst = pt->cerr[o][u][k] + mu * (double)pt->cbytes[u][k];
                if (cst < bc || (cst == bc && pt->cbytes[u][k] < bb)) {
                    bc = cst;
                    bb = pt->cbytes[u][k];
                }
            }
            cost += bc;
            bytes += bb;
        }
        if (cost < best) {
            best = cost;
            best_b = bytes;
        }
    }
    return best_b;
}

/* The error-per-byte at which the tensor's own best allocation takes `bytes`:
 * the geometric middle of the range of mu where it takes exactly that many,
 * or the step where it jumps across them. 0 when no mu gives a change. */
static double matching_mu(const sq_plan *plan, const sq__ptensor *pt, uint64_t bytes)
{
    /* bytes(mu) does not grow with mu; bisect in log mu for the two ends */
    double lo_a = -80.0, hi_a = 80.0, lo_b = -80.0, hi_b = 80.0; /* log10 mu */
    if (tensor_bytes_at(plan, pt, pow(10.0, lo_a)) < bytes || tensor_bytes_at(plan, pt, pow(10.0, hi_a)) > bytes)
        return 0.0;
    for (int it = 0; it < 100; it++) {
        double m = (lo_a + hi_a) / 2; /* a: the smallest mu with bytes(mu) <= bytes */
        if (tensor_bytes_at(plan, pt, pow(10.0, m)) <= bytes) hi_a = m;
        else lo_a = m;
        m = (lo_b + hi_b) / 2; /* b: the largest mu with bytes(mu) >= bytes */
        if (tensor_bytes_at(plan, pt, pow(10.0, m)) >= bytes) lo_b = m;
        else hi_b = m;
    }
    /* the dearest (cheapest) choice holds down to mu -> 0 (up to infinity): the finite end */
    bool dearest = tensor_bytes_at(plan, pt, 1e-80) == bytes, cheapest = tensor_bytes_at(plan, pt, 1e80) == bytes;
    if (dearest && !cheapest) return pow(10.0, lo_b);
    if (cheapest && !dearest) return pow(10.0, hi_a);
    return pow(10.0, (hi_a + lo_b) / 2);
}

/* The prior's weights again, now from every measured option: each tensor
 * weighted so that its own best allocation at lambda = 1 spends what the mix
 * gives it (see the top of this file). */
void sq__plan_prior_match(sq__pctx *c)
{
    sq_plan *plan = c->plan;
    if (plan->totals.prior_ftype < 0) return;
    for (int64_t t = 0; t < plan->n; t++) {
        sq__ptensor *pt = &plan->pt[t];
        if (pt->weighted || pt->prior_type < 0) continue;
        uint64_t mix_bytes = (uint64_t)sq_row_size(pt->prior_type, pt->cols) * (uint64_t)pt->rows;
        double mu = matching_mu(plan, pt, mix_bytes);
        if (mu > 0 && isfinite(mu)) pt->weight = 1.0 / mu;
    }
}
