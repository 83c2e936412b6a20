/*
 * quant_common.c — the scale searches shared by the quantizer families (see
 * quant_common.h): legacy.c uses them for Q4_0 / Q5_0 (symmetric) and Q4_1 /
 * Q5_1 (asymmetric) with importance weights, kquants.c for Q3_K, Q6_K, Q2_K,
 * Q4_K and Q5_K (as the reference of its 4-lane searches).
 *
 * Bit-exact with ggml: each float expression keeps ggml's operand order and
 * its int -> float conversion points.
 */
#include "quant_common.h"

/* Bit-exactness needs every a*b+c rounded twice, as ggml computes it: no FMA
 * contraction even when built with -mfma / -march=native (GCC in GNU mode and
 * clang contract by default). kquants.c and iquants.c carry the same pragma. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* v limited to lo..hi. */
static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The smaller of a and b. */
static inline int imin_int(int a, int b) { return a < b ? a : b; }

/* Symmetric search: the first fit uses iscale = -nmax/max (max is the value
 * of largest magnitude, with its sign, so it maps to level -nmax); then 18
 * nearby inverse scales -(nmax + 0.1*step)/max, step = -9..9, are tried and a
 * fit replaces the best when it explains more weighted energy, i.e. when
 * sumlx^2/suml2 grows (compared without dividing: sumlx^2 > best*suml2). */
float sq__fit_symmetric(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
    float amax;
    const float max = sq__signed_absmax(x, n, &amax);
    if (amax < SQ_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clamp_int(sq__nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * (float)l; /* (w*x)*l, as ggml */
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)step) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clamp_int(sq__nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = clamp_int(sq__nearest_int(iscale * x[i]), -nmax, nmax - 1);
                L[i] = (int8_t)(nmax + l);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Asymmetric search. The starting point maps [min(0, xmin), xmax] onto
 * 0..nmax; each trial inverse scale re-rounds the values and solves the 2x2
 * weighted least-squares system for (scale, min) in closed form; a positive
 * min is not allowed (it is clamped to 0 and the scale refit alone). A trial
 * level is round(min(v, nmax)) for v > 0 and 0 otherwise: the same as
 * clamping after rounding for finite inputs, and safe for the huge or
 * non-finite v a collapsed range can produce. */
float sq__fit_asym_weighted(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min,
                            uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0];
    float sum_w = weights ? weights[0] : x[0] * x[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights ? weights[i] : x[i] * x[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = sq__nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)clamp_int(l, 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = diff * diff;
        const float w = weights ? weights[i] : x[i] * x[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *neg_min = -min;
        return scale;
    }
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * (float)step + (float)nmax) / (max - min); /* (rmin + rdelta*step) + nmax */
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const float v = iscale * (x[i] - min);
            const int l = v > 0 ? sq__nearest_int(v < (float)nmax ? v : (float)nmax) : 0;
            Laux[i] = (uint8_t)l;
            const float w = weights ? weights[i] : x[i] * x[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = diff * diff;
                const float w = weights ? weights[i] : x[i] * x[i];
                error += w * diff;
            }
            if (error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Sum of squares in index order: the numerator of the sigma2 ggml mixes into
 * importance weights (each caller scales it its own way, in ggml's order). */
float sq__sum_squares(const float *x, int64_t n)
{
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] * x[i];
    return sum;
}

/* ggml's importance weights: the imatrix weight times the typical magnitude
 * of the value, sqrt(sigma2 + x^2); the total is summed in index order, as
 * ggml sums a sub-block's weights after computing them. */
float sq__imatrix_weights(int n, const float *x, const float *qw, float sigma2, float *w)
{
    float total = 0;
    for (int i = 0; i < n; i++) {
        w[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
        total += w[i];
    }
    return total;
}

/*
 * Positive-only search for the sub-block scales / mins of the imatrix path
 * (ggml's make_qp_quants): fits x[i] ~ scale*L[i], L in [0, nmax], x >= 0,
 * with weights qw. Tries the scale mapping max to nmax and 8 neighbours
 * (nmax +- 0.1..0.4), keeps the strictly best weighted squared error, then
 * runs up to 5 passes of coordinate descent on the levels. Returns the
 * least-squares scale of the final levels. (Its descent tests both partial
 * sums up front and clamps levels only above, unlike fit_q3_reference's.)
 */
float sq__fit_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0;
    for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];
    if (max < SQ_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i) L[i] = (uint8_t)sq__nearest_int(iscale * x[i]);
    const float scale0 = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale0 * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int step = -4; step <= 4; ++step) {
        if (step == 0) continue;
        const float iscale_s = (0.1f * step + nmax) / max;
        const float scale_s = 1 / iscale_s;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            const int l = imin_int(nmax, sq__nearest_int(iscale_s * x[i]));
            const float diff = x[i] - scale_s * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_s;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = imin_int(nmax, sq__nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        const float w = qw[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                const int nl = imin_int(nmax, sq__nearest_int(x[i] * sl2 / slx));
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}
