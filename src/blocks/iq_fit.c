/*
 * iq_fit.c — the sub-block search shared by the IQ2 and IQ3 quantizers
 * (iq_common.h), operation for operation as ggml 0.25.1's
 * quantize_row_iq2_xxs_impl, _iq2_xs_impl, _iq2_s_impl, _iq3_xxs_impl and
 * _iq3_s_impl compute it: the bytes they write depend on every rounding.
 */
#include <float.h>

#include "iq_common.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* The weighted squared error of the codebook point with levels lv under
 * scale: Σ w (scale*(2l+1) - x)^2 in coordinate order (ggml's d2). */
static inline float point_error(const int8_t *lv, int dim, const float *xval, const float *waux, float scale)
{
    float d2 = 0;
    for (int i = 0; i < dim; ++i) {
        const float diff = scale * (float)(2 * lv[i] + 1) - xval[i];
        d2 += waux[i] * diff * diff;
    }
    return d2;
}

void sq__iq_list_errors(const sq__iq_search *s, const uint16_t *cand, int count, const float e[8][8], float *err)
{
    int j = 0;
    for (; j + 4 <= count; j += 4) {
        const int8_t *l0 = s->level + cand[j] * s->dim, *l1 = s->level + cand[j + 1] * s->dim;
        const int8_t *l2 = s->level + cand[j + 2] * s->dim, *l3 = s->level + cand[j + 3] * s->dim;
        float d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (int i = 0; i < s->dim; ++i) {
            d0 += e[i][l0[i]];
            d1 += e[i][l1[i]];
            d2 += e[i][l2[i]];
            d3 += e[i][l3[i]];
        }
        err[j] = d0, err[j + 1] = d1, err[j + 2] = d2, err[j + 3] = d3;
    }
    for (; j < count; ++j) {
        const int8_t *lv = s->level + cand[j] * s->dim;
        float d = 0;
        for (int i = 0; i < s->dim; ++i) d += e[i][lv[i]];
        err[j] = d;
    }
}

/* Moves the dim values at xval to their best codebook neighbour of the
 * off-grid index u under scale: the neighbour of least point_error (the
 * first of equals, ggml's iq2/iq3_find_best_neighbour); writes its levels. */
static void best_neighbour(const sq__iq_search *s, int u, const float *xval, const float *waux, float scale,
                           int8_t *L)
{
    const uint16_t *nb = sq__iq_neighbours(s, u);
    const int count = nb[0];
    float err[2048];
    if (count > s->n_levels) {
        /* a term depends only on the coordinate and its level: each computed once */
        float e[8][8];
        for (int i = 0; i < s->dim; ++i)
            for (int l = 0; l < s->n_levels; ++l) {
                const float diff = scale * (float)(2 * l + 1) - xval[i];
                e[i][l] = waux[i] * diff * diff;
            }
        sq__iq_list_errors(s, nb + 1, count, e, err);
    } else {
        for (int j = 0; j < count; ++j) err[j] = point_error(s->level + nb[1 + j] * s->dim, s->dim, xval, waux, scale);
    }
    float best_d2 = FLT_MAX;
    int gi = nb[1]; /* ggml asserts some d2 < FLT_MAX; without one (NaN input) keep the first */
    for (int j = 0; j < count; ++j)
        if (err[j] < best_d2) {
            best_d2 = err[j];
            gi = nb[1 + j];
        }
    memcpy(L, s->level + gi * s->dim, (size_t)s->dim);
}

/* Rounds group k to the levels of inverse scale id (clamped to 0..kmaxq-1)
 * into L; if they are not a codebook point, moves them to the best neighbour
 * under scale. Returns whether they were on the grid. */
static bool round_group(const sq__iq_fit_cfg *c, int k, const float *xval, const float *waux, float id, float scale,
                        int8_t *L)
{
    const sq__iq_search *s = c->grid;
    const int d = s->dim;
    int u = 0;
    for (int i = 0; i < d; ++i) {
        int l = sq__nearest_int(0.5f * (id * xval[d * k + i] - 1));
        l = l < 0 ? 0 : l > c->kmaxq - 1 ? c->kmaxq - 1 : l;
        L[d * k + i] = (int8_t)l;
        u |= l << (s->bits * i);
    }
    if (s->map[u] >= 0) return true;
    best_neighbour(s, u, xval + d * k, waux + d * k, scale, L + d * k);
    return false;
}

/* Σ w·x·q and Σ w·q² of the levels L (q = 2l+1), in index order. */
static void fit_sums(int n, const float *xval, const float *weight, const int8_t *L, float *sumqx, float *sumq2)
{
    float sx = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
        const float w = weight[i];
        const float q = (float)(2 * L[i] + 1);
        sx += w * xval[i] * q;
        s2 += w * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

/* The starting point: the levels and scale before the trials, and the value
 * (max, or IQ2_XXS's kmaxq*scale) the trial inverse scales divide; false for a
 * zero sub-block. */
static bool start(const sq__iq_fit_cfg *c, const float *xval, const float *weight, int8_t *L, float *scale,
                  float *span)
{
    const int n = c->n;
    float max = xval[0];
    for (int i = 1; i < n; ++i) max = max > xval[i] ? max : xval[i];
    memset(L, 0, (size_t)n);
    if (c->eps > 0 ? max < c->eps : max == 0) return false;
    if (!c->from_qp) {
        *scale = max / (2 * c->kmaxq - 1);
        *span = max;
        return true;
    }
    *scale = sq__fit_positive(n, c->kmaxq + 1, xval, (uint8_t *)L, weight);
    *span = *scale * c->kmaxq;
    if (*span <= 0) {
        memset(L, 0, (size_t)n);
        return false;
    }
    return true;
}

bool sq__iq_fit(const sq__iq_fit_cfg *c, const float *xval, const float *weight, const float *waux, int8_t *L,
                float *scale_out)
{
    const int n = c->n, ng = n / c->grid->dim;
    float scale, span;
    if (!start(c, xval, weight, L, &scale, &span)) return false;
    bool on[8], on_aux[8];
    int8_t Laux[32];
    for (int k = 0; k < ng; ++k) on[k] = c->start_on_grid;
    float best = 0;
    for (int is = -c->nstep; is <= c->nstep; ++is) {
        const float id = (2 * c->kmaxq - 1 + is * c->step) / span;
        const float this_scale = 1 / id;
        for (int k = 0; k < ng; ++k) on_aux[k] = round_group(c, k, xval, waux, id, this_scale, Laux);
        float sumqx, sumq2;
        fit_sums(n, xval, weight, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, (size_t)n);
            memcpy(on, on_aux, sizeof on);
        }
    }
    int n_off = 0;
    for (int k = 0; k < ng; ++k) n_off += !on[k];
    const bool refit = c->refit == SQ__IQ_REFIT_ALWAYS ? scale > 0 : n_off > 0 && scale > 0;
    if (refit) {
        const float id = 1 / scale;
        for (int k = 0; k < ng; ++k) {
            if (c->refit == SQ__IQ_REFIT_OFFGRID && on[k]) continue;
            round_group(c, k, xval, waux, id, scale, L);
        }
        float sumqx, sumq2;
        fit_sums(n, xval, weight, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    *scale_out = scale;
    return true;
}
