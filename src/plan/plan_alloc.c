/*
 * plan_alloc.c — the allocation: every unit (a segment slot, or a whole
 * tensor at tensor granularity) has candidate points (bytes, predicted
 * error); every group has one or two permutation options. For a multiplier
 * lambda each group takes the option, and each unit the candidate, that
 * minimises error + lambda * bytes; a bisection finds the smallest lambda
 * whose choice fits the budget, and a greedy pass spends what is left on the
 * best single-unit upgrades per byte. Exact arithmetic on the measured
 * numbers in a fixed order: the same inputs give the same plan.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "plan/plan_internal.h"

/* A candidate's predicted error: the weighted model error plus the cost of
 * its activations. */
double sq__plan_cand_err(const sq__ptensor *pt, int opt, int unit, int k)
{
    return pt->weight * pt->cerr[opt][unit][k] + pt->cact[unit][k];
}

/* Turns a tensor's slots into one unit (granularity tensor): the candidates
 * every slot has, their bytes, errors and activation costs summed. */
void sq__plan_whole_tensor(sq__ptensor *pt)
{
    int n = 0, cand[SQ__PLAN_MAX_CAND];
    uint64_t bytes[SQ__PLAN_MAX_CAND];
    double err[2][SQ__PLAN_MAX_CAND], raw[2][SQ__PLAN_MAX_CAND], act[SQ__PLAN_MAX_CAND];
    for (int k = 0; k < pt->n_cand[0]; k++) {
        int type = pt->cand[0][k];
        uint64_t b = 0;
        double e[2] = {0, 0}, rw[2] = {0, 0}, a = 0;
        bool all = true;
        for (int s = 0; s < pt->n_slots && all; s++) {
            int j = -1;
            for (int i = 0; i < pt->n_cand[s]; i++)
                if (pt->cand[s][i] == type) j = i;
            if (j < 0) {
                all = false;
                break;
            }
            b += pt->cbytes[s][j];
            a += pt->cact[s][j];
            for (int o = 0; o < 2; o++) {
                e[o] += pt->cerr[o][s][j];
                rw[o] += pt->craw[o][s][j];
            }
        }
        if (!all) continue;
        cand[n] = type;
        bytes[n] = b;
        act[n] = a;
        for (int o = 0; o < 2; o++) {
            err[o][n] = e[o];
            raw[o][n] = rw[o];
        }
        n++;
    }
    pt->n_units = 1;
    pt->n_cand[0] = n;
    memcpy(pt->cand[0], cand, sizeof(int) * (size_t)n);
    memcpy(pt->cbytes[0], bytes, sizeof(uint64_t) * (size_t)n);
    memcpy(pt->cact[0], act, sizeof(double) * (size_t)n);
    for (int o = 0; o < 2; o++) {
        memcpy(pt->cerr[o][0], err[o], sizeof(double) * (size_t)n);
        memcpy(pt->craw[o][0], raw[o], sizeof(double) * (size_t)n);
    }
}

/* The best candidate of a unit for lambda (ties: fewer bytes, then the
 * earlier candidate); with min_bytes the smallest (ties: the lower error). */
static int best_cand(const sq__ptensor *pt, int o, int u, double lambda, bool min_bytes, double *cost)
{
    double bc = INFINITY, be = INFINITY;
    int bk = 0;
    for (int k = 0; k < pt->n_cand[u]; k++) {
        double e = sq__plan_cand_err(pt, o, u, k);
        double b = (double)pt->cbytes[u][k];
        double cst = min_bytes ? b : e + lambda * b;
        bool better = cst < bc || (cst == bc && (min_bytes ? e < be : pt->cbytes[u][k] < pt->cbytes[u][bk]));
        if (better) {
            bc = cst;
            be = e;
            bk = k;
        }
    }
    if (cost) *cost = bc;
    return bk;
}

/* For a multiplier lambda: every group takes the option, and every unit the
 * candidate, minimising err + lambda * bytes (ties: the unpermuted option).
 * Returns the planned bytes (with the options' extra bytes). */
static uint64_t lagrange_pick(sq_plan *plan, double lambda, bool min_bytes)
{
    uint64_t total = 0;
    for (int gi = 0; gi < plan->n_groups; gi++) {
        sq__pgroup *g = &plan->groups[gi];
        double best_cost = INFINITY;
        int best_opt = -1;
        for (int o = 0; o < 2; o++) {
            if (!g->opt_avail[o]) continue;
            double cost = min_bytes ? (double)g->opt_extra[o] : lambda * (double)g->opt_extra[o];
            for (int m = 0; m < g->n_members; m++) {
                const sq__ptensor *pt = &plan->pt[g->members[m]];
                for (int u = 0; u < pt->n_units; u++) {
                    double uc;
                    best_cand(pt, o, u, lambda, min_bytes, &uc);
                    cost += uc;
                }
            }
            if (isnan(cost)) cost = INFINITY; /* 0 * inf: never better than a number, yet an option */
            if (cost < best_cost || best_opt < 0) {
                best_cost = cost;
                best_opt = o;
            }
        }
        g->opt = best_opt;
        total += g->opt_extra[best_opt];
        for (int m = 0; m < g->n_members; m++) {
            sq__ptensor *pt = &plan->pt[g->members[m]];
            for (int u = 0; u < pt->n_units; u++) {
                pt->choice[u] = best_cand(pt, best_opt, u, lambda, min_bytes, NULL);
                total += pt->cbytes[u][pt->choice[u]];
            }
        }
    }
    return total;
}

/* Spends what the multiplier search left on single-unit upgrades, best error
 * drop per byte first (ties: the earliest tensor, unit, candidate), while any fits. */
static uint64_t greedy_fill(sq_plan *plan, uint64_t used, uint64_t budget)
{
    for (;;) {
        double best = 0.0;
        int bt = -1, bu = -1, bk = -1;
        for (int64_t t = 0; t < plan->n; t++) {
            const sq__ptensor *pt = &plan->pt[t];
            int o = plan->groups[pt->group].opt;
            for (int u = 0; u < pt->n_units; u++) {
                int cur = pt->choice[u];
                double ce = sq__plan_cand_err(pt, o, u, cur);
                for (int k = 0; k < pt->n_cand[u]; k++) {
                    if (pt->cbytes[u][k] <= pt->cbytes[u][cur]) continue;
                    uint64_t db = pt->cbytes[u][k] - pt->cbytes[u][cur];
                    if (used + db > budget) continue;
                    double de = ce - sq__plan_cand_err(pt, o, u, k);
                    if (de <= 0) continue;
                    double ratio = de / (double)db;
                    if (ratio > best) {
                        best = ratio;
                        bt = (int)t;
                        bu = u;
                        bk = k;
                    }
                }
            }
        }
        if (bt < 0) return used;
        sq__ptensor *pt = &plan->pt[bt];
        used += pt->cbytes[bu][bk] - pt->cbytes[bu][pt->choice[bu]];
        pt->choice[bu] = bk;
    }
}

/* The error of a budget below the smallest possible plan: min_bytes planned
 * bytes plus what the plan cannot choose (the message gives the total). */
static sq_status below_smallest(const sq__pctx *c, uint64_t min_bytes, sq_error *err)
{
    uint64_t smallest = min_bytes + c->keys_overhead;
    if (c->p->target_bytes > 0)
        return sq_error_set(err, SQ_ERANGE, "target size %llu bytes is below the smallest possible plan (%llu bytes)",
                            (unsigned long long)c->p->target_bytes, (unsigned long long)smallest);
    return sq_error_set(err, SQ_ERANGE, "target %.4f bits per weight is below the smallest possible plan (%.4f)",
                        c->p->target_bpw, (double)smallest * 8.0 / (double)c->n_elements);
}

sq_status sq__plan_check_budget(const sq__pctx *c, sq_error *err)
{
    const sq_plan *plan = c->plan;
    uint64_t min_bytes = 0;
    for (int64_t t = 0; t < plan->n; t++) {
        const sq__ptensor *pt = &plan->pt[t];
        for (int u = 0; u < pt->n_units; u++) {
            uint64_t b = UINT64_MAX;
            for (int k = 0; k < pt->n_cand[u]; k++)
                if (pt->cbytes[u][k] < b) b = pt->cbytes[u][k];
            if (b != UINT64_MAX) min_bytes += b;
        }
    }
    return min_bytes > c->budget ? below_smallest(c, min_bytes, err) : SQ_OK;
}

/* The allocation under c->budget: *lambda gets the multiplier found. Error:
 * a budget below the smallest possible plan (the message gives its size). */
sq_status sq__plan_allocate(sq__pctx *c, double *lambda, sq_error *err)
{
    sq_plan *plan = c->plan;
    uint64_t budget = c->budget;
    uint64_t min_bytes = lagrange_pick(plan, 0.0, true);
    *lambda = 0.0;
    if (min_bytes > budget) return below_smallest(c, min_bytes, err);
    /* the smallest lambda whose choice fits: bytes(lambda) does not increase with lambda */
    uint64_t used = lagrange_pick(plan, 0.0, false);
    if (used > budget) {
        double lo = 0.0, hi = 1e-24;
        while (lagrange_pick(plan, hi, false) > budget && hi < 1e300) {
            lo = hi;
            hi *= 4.0;
        }
        for (int it = 0; it < 200 && hi - lo > hi * 1e-15; it++) {
            double mid = lo + (hi - lo) / 2;
            if (lagrange_pick(plan, mid, false) > budget) lo = mid;
            else hi = mid;
        }
        *lambda = hi;
        used = lagrange_pick(plan, hi, false);
        if (used > budget) used = lagrange_pick(plan, 0.0, true); /* only the smallest choice fits */
    }
    greedy_fill(plan, used, budget);
    return SQ_OK;
}
