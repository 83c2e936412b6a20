/*
 * kquants.c — scalar reference kernels of the k-quant family: Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K (weights) and Q8_K (their activation type). (The ternary
 * TQ2_0, also dotted with Q8_K, is in ternary.c.)
 *
 * Each weight type has two quantizers, matching what ggml_quantize_chunk does:
 *   - without importance weights: the "reference" search (per sub-block scale
 *     (and min) fitted with fixed heuristic weights, then the sub-block scales
 *     quantized linearly against their maximum);
 *   - with importance weights (llama-quantize --imatrix): a weighted search
 *     per sub-block, then the sub-block scales themselves quantized with a
 *     weighted search (weights = the sub-block's total importance).
 * In both, after the scales are fixed (and rounded to fp16 / 6 bits), every
 * value is re-quantized against its final scale.
 *
 * Bit-exactness with ggml rests on reproducing its float operations in the
 * same order (no FMA contraction: see the pragma below), the same
 * round-to-even helper (sq__nearest_int) and the same tie-breaking in every
 * search. The comments say where an order matters. The per-sub-block searches
 * also exist as 4-lane versions (same bytes, 2-3x faster quantization).
 * Kernels never allocate: scratch lives on the stack; the caller owns x and y.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "quant_common.h"

/* Bit-exactness needs every a*b+c rounded twice, as ggml computes it: no FMA
 * contraction even when built with -mfma / -march=native (GCC in GNU mode and
 * clang contract by default). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline float h2f(sq_fp16 h) { return sq_fp16_to_f32(h); }
static inline sq_fp16 f2h(float f) { return sq_f32_to_fp16(f); }

/* The *_x4 searches below run 4 sub-blocks at once on the 4-lane helpers of
 * quant_common.h, bit-identical to their scalar searches.
 * sq__kquants_reference_search(true) switches to the scalar searches (tests
 * compare the two byte for byte). */

/* The error measure of the asymmetric searches, per lane: |diff| when
 * use_mad, else diff^2. */
static inline sq__v4f v4_err(sq__v4f diff, int use_mad) { return use_mad ? sq__v4_abs(diff) : diff * diff; }

/* Set by sq__kquants_reference_search (tests only): run the scalar searches. */
static bool reference_search;

void sq__kquants_reference_search(bool on) { reference_search = on; }
bool sq__kquants_reference_search_on(void) { return reference_search; }

/* ------------------------------------------------------------------------
 * Scale searches
 * ------------------------------------------------------------------------ */

/* sq__fit_symmetric on 4 consecutive sub-blocks of n values at once (lane k on
 * sub-block k); w holds their weights or is NULL (then x^2). */
static void fit_symmetric_x4(int n, int nmax, const float *x, int8_t *L, const float *w, float *scales)
{
    sq__v4f X[32], W[32];
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < 4; ++k) {
            const float v = x[n * k + i];
            X[i][k] = v;
            W[i][k] = w ? w[n * k + i] : v * v;
        }
    const sq__v4f zero = {0, 0, 0, 0};
    const sq__v4i izero = {0, 0, 0, 0};
    const sq__v4i lo = izero - nmax, hi = izero + (nmax - 1);
    sq__v4f amax;
    const sq__v4f max = sq__v4_signed_absmax(X, n, &amax);
    const sq__v4i zero_lane = amax < SQ_GROUP_EPS;
    sq__v4i Lv[32];
    sq__v4f iscale = (float)-nmax / max;
    sq__v4f sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        sq__v4i l = sq__v4_nearest_int(iscale * X[i]);
        l = sq__v4_seli(l < lo, lo, sq__v4_seli(l > hi, hi, l));
        Lv[i] = l;
        const sq__v4f lf = __builtin_convertvector(l, sq__v4f);
        sumlx += W[i] * X[i] * lf;
        suml2 += W[i] * lf * lf;
    }
    sq__v4f scale = sq__v4_sel(suml2 != 0, sumlx / suml2, zero);
    sq__v4f best = scale * sumlx;
    for (int step = -9; step <= 9; ++step) {
        if (step == 0) continue;
        iscale = -(nmax + 0.1f * step) / max;
        sq__v4i Lt[32];
        sumlx = suml2 = zero;
        for (int i = 0; i < n; ++i) {
            sq__v4i l = sq__v4_nearest_int(iscale * X[i]);
            l = sq__v4_seli(l < lo, lo, sq__v4_seli(l > hi, hi, l));
            Lt[i] = l;
            const sq__v4f lf = __builtin_convertvector(l, sq__v4f);
            sumlx += W[i] * X[i] * lf;
            suml2 += W[i] * lf * lf;
        }
        const sq__v4i take = (suml2 > 0) & (sumlx * sumlx > best * suml2);
        for (int i = 0; i < n; ++i) Lv[i] = sq__v4_seli(take, Lt[i], Lv[i]);
        const sq__v4f ns = sumlx / suml2;
        scale = sq__v4_sel(take, ns, scale);
        best = sq__v4_sel(take, ns * sumlx, best);
    }
    for (int k = 0; k < 4; ++k) {
        scales[k] = zero_lane[k] ? 0.f : scale[k];
        for (int i = 0; i < n; ++i) L[n * k + i] = zero_lane[k] ? 0 : (int8_t)(Lv[i][k] + nmax);
    }
}

/* sq__fit_symmetric on nsub (a multiple of 4) consecutive sub-blocks of n values;
 * w: their weights, or NULL for x^2. */
static void fit_symmetric_batch(int nsub, int n, int nmax, const float *x, int8_t *L, const float *w, float *scales)
{
    if (reference_search) {
        for (int j = 0; j < nsub; ++j) scales[j] = sq__fit_symmetric(n, nmax, x + n * j, L + n * j, w ? w + n * j : NULL);
        return;
    }
    for (int j = 0; j < nsub; j += 4) fit_symmetric_x4(n, nmax, x + n * j, L + n * j, w ? w + n * j : NULL, scales + j);
}

/*
 * Q3_K's reference search (ggml's make_q3_quants with do_rmse): start from
 * the scale mapping the largest-magnitude value to -nmax, weights x^2, then up
 * to 5 passes of coordinate descent: each value in turn moves to the level
 * the current fit suggests when that strictly improves sumlx^2/suml2.
 * Levels come back offset by nmax; returns the fitted scale.
 * Apart from sq__fit_positive on purpose: signed levels and ggml's other guards.
 */
static float fit_q3_reference(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    const float max = sq__signed_absmax(x, n, &amax);
    if (amax < SQ_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = sq__nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = sq__nearest_int(x[i] * sl2 / slx);
                nl = imax(-nmax, imin(nmax - 1, nl));
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/*
 * Asymmetric search without importance (ggml's make_qkx2_quants): fits
 * x[i] ~ scale*L[i] - m with L in [0, nmax] and m >= 0 (the min is clamped to
 * <= 0). The first guess spans [min, max]; then nstep+1 candidate inverse
 * scales (rmin + rdelta*k + nmax)/(max - min) are tried, each followed by a
 * weighted least-squares solve for scale and min; a candidate replaces the
 * best one only with a strictly smaller weighted error (absolute error when
 * use_mad, else squared). *neg_min receives m; returns the scale.
 * Kept apart from sq__fit_asym_weighted on purpose: ggml rounds a candidate
 * level here before clamping it (other bytes for huge scaled values).
 */
static float fit_asym_plain(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min,
                            uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = sq__nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *neg_min = -min;
        return scale;
    }
    for (int step = 0; step <= nstep; ++step) {
        /* (rmin + rdelta*step) + nmax, in this order */
        iscale = (rmin + rdelta * step + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = sq__nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += weights[i] * diff;
            }
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/*
 * fit_asym_plain / sq__fit_asym_weighted on 4 sub-blocks at once, lane k on
 * sub-block k (see the vector note at the top).
 *   x, w: 4 consecutive sub-blocks of n (16 or 32) values and weights;
 *   L:    receives their levels; scales / neg_mins: the fitted pairs.
 */
static void fit_asym_x4(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scales, float *neg_mins,
                        float rmin, float rdelta, int nstep, int use_mad, int weighted)
{
    sq__v4f X[32], W[32];
    sq__v4i Lv[32], Laux[32];
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < 4; ++k) {
            X[i][k] = x[n * k + i];
            W[i][k] = w[n * k + i];
        }
    const sq__v4f zero = {0, 0, 0, 0};
    const sq__v4i izero = {0, 0, 0, 0};
    const sq__v4i inmax = izero + nmax;
    const sq__v4f fnmax = zero + (float)nmax;

    sq__v4f min = X[0], max = X[0];
    sq__v4f sum_w = W[0];
    sq__v4f sum_x = sum_w * X[0];
    for (int i = 1; i < n; ++i) {
        min = sq__v4_sel(X[i] < min, X[i], min);
        max = sq__v4_sel(X[i] > max, X[i], max);
        sum_w += W[i];
        sum_x += W[i] * X[i];
    }
    min = sq__v4_sel(min > 0, zero, min);
    const sq__v4i degenerate = weighted ? (max <= min) : (max == min);

    sq__v4f iscale = fnmax / (max - min);
    sq__v4f scale = 1 / iscale;
    sq__v4f best = zero;
    for (int i = 0; i < n; ++i) {
        sq__v4i l = sq__v4_nearest_int(iscale * (X[i] - min));
        l = sq__v4_seli(l < 0, izero, sq__v4_seli(l > inmax, inmax, l));
        Lv[i] = l;
        const sq__v4f diff = scale * __builtin_convertvector(l, sq__v4f) + min - X[i];
        best += W[i] * v4_err(diff, use_mad);
    }
    for (int step = 0; step <= nstep; ++step) {
        iscale = (rmin + rdelta * step + nmax) / (max - min);
        sq__v4f sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            const sq__v4f v = iscale * (X[i] - min);
            sq__v4i l;
            if (weighted) {
                l = sq__v4_nearest_int(sq__v4_sel(v < fnmax, v, fnmax));
                l = sq__v4_seli(v > 0, l, izero);
            } else {
                l = sq__v4_nearest_int(v);
                l = sq__v4_seli(l < 0, izero, sq__v4_seli(l > inmax, inmax, l));
            }
            Laux[i] = l;
            const sq__v4f lf = __builtin_convertvector(l, sq__v4f);
            sum_l += W[i] * lf;
            sum_l2 += W[i] * lf * lf;
            sum_xl += W[i] * lf * X[i];
        }
        const sq__v4f D = sum_w * sum_l2 - sum_l * sum_l;
        sq__v4f this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        sq__v4f this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const sq__v4i pos = this_min > 0;
        this_min = sq__v4_sel(pos, zero, this_min);
        this_scale = sq__v4_sel(pos, sum_xl / sum_l2, this_scale);
        sq__v4f err = zero;
        for (int i = 0; i < n; ++i) {
            const sq__v4f diff = this_scale * __builtin_convertvector(Laux[i], sq__v4f) + this_min - X[i];
            err += W[i] * v4_err(diff, use_mad);
        }
        const sq__v4i take = (D > 0) & (err < best);
        for (int i = 0; i < n; ++i) Lv[i] = sq__v4_seli(take, Laux[i], Lv[i]);
        best = sq__v4_sel(take, err, best);
        scale = sq__v4_sel(take, this_scale, scale);
        min = sq__v4_sel(take, this_min, min);
    }
    /* degenerate lanes: the scalar code returned early with zeros */
    scale = sq__v4_sel(degenerate, zero, scale);
    for (int k = 0; k < 4; ++k) {
        scales[k] = scale[k];
        neg_mins[k] = -min[k];
        for (int i = 0; i < n; ++i) L[n * k + i] = degenerate[k] ? 0 : (uint8_t)Lv[i][k];
    }
}

/* The asymmetric fit of nsub (a multiple of 4) consecutive sub-blocks of n
 * values: sq__fit_asym_weighted when `weighted` (squared error), else
 * fit_asym_plain (use_mad chooses the error). */
static void fit_asym_batch(int nsub, int n, int nmax, const float *x, const float *w, uint8_t *L, float *scales,
                           float *neg_mins, float rmin, float rdelta, int nstep, int use_mad, int weighted)
{
    if (reference_search) {
        uint8_t Laux[32];
        for (int j = 0; j < nsub; ++j)
            scales[j] = weighted ? sq__fit_asym_weighted(n, nmax, x + n * j, w + n * j, L + n * j, &neg_mins[j], Laux,
                                                     rmin, rdelta, nstep)
                                 : fit_asym_plain(n, nmax, x + n * j, w + n * j, L + n * j, &neg_mins[j], Laux, rmin,
                                                  rdelta, nstep, use_mad);
        return;
    }
    for (int j = 0; j < nsub; j += 4)
        fit_asym_x4(n, nmax, x + n * j, w + n * j, L + n * j, scales + j, neg_mins + j, rmin, rdelta, nstep, use_mad,
                    weighted);
}

/* ------------------------------------------------------------------------
 * Packing helpers
 * ------------------------------------------------------------------------ */

/* Packs 256 2-bit levels: byte l of each 32-byte group holds values
 * l, l+32, l+64, l+96 of its 128-value half in bits 0-1, 2-3, 4-5, 6-7. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < SQ_QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Q4_K / Q5_K scale byte layout: 8 six-bit scales and 8 six-bit mins in 12
 * bytes. Sub-blocks 0-3 keep scale / min in the low 6 bits of bytes 0-3 /
 * 4-7; sub-blocks 4-7 keep their low 4 bits in the nibbles of bytes 8-11 and
 * their high 2 bits in the top bits of bytes 0-3 (scale) / 4-7 (min). */
static void put_scale_min_k4(int j, uint8_t *s, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

static void get_scale_min_k4(int j, const uint8_t *s, uint8_t *ls, uint8_t *lm)
{
    if (j < 4) {
        *ls = s[j] & 63;
        *lm = s[j + 4] & 63;
    } else {
        *ls = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *lm = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Q3_K scale byte layout: 16 six-bit scales (stored +32) in 12 bytes: low
 * nibbles of sub-blocks 0-7 / 8-15 in the low / high nibbles of bytes 0-7,
 * the high 2 bits of sub-block j in byte 8 + j%4 at bit 2*(j/4). s must be
 * zeroed first. */
static void put_scale_q3(int j, uint8_t *s, int l)
{
    if (j < 8)
        s[j] = (uint8_t)(l & 0xF);
    else
        s[j - 8] |= (uint8_t)((l & 0xF) << 4);
    l >>= 4;
    s[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
}

static int get_scale_q3(int j, const uint8_t *s)
{
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ------------------------------------------------------------------------
 * Q2_K
 * ------------------------------------------------------------------------ */

/* Final pass shared by both Q2_K quantizers: every value re-quantized against
 * its sub-block's stored (fp16 x 4-bit) scale and min; sub-blocks whose scale
 * is zero keep the levels of the search. Then the 2-bit packing. */
static void q2_K_finish(const float *x, sq__block_q2_K *y, uint8_t *L)
{
    const float dall = h2f(y->d), dmin = h2f(y->dmin);
    for (int j = 0; j < SQ_QK_K / 16; ++j) {
        const float d = dall * (y->scales[j] & 0xF);
        if (!d) continue;
        const float m = dmin * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            const int l = sq__nearest_int((x[16 * j + ii] + m) / d);
            L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
        }
    }
    pack_2bit(L, y->qs);
}

/* Q2_K without importance: per 16-value sub-block an asymmetric MAD fit with
 * weights |x|, then scales and mins quantized to 4 bits against their maxima
 * (super-scale = max/15). */
static void quantize_q2_K_plain(const float *x, sq__block_q2_K *y, int64_t nb)
{
    uint8_t L[SQ_QK_K];
    float weights[SQ_QK_K], mins[SQ_QK_K / 16], scales[SQ_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += SQ_QK_K) {
        float max_scale = 0, max_min = 0;
        for (int l = 0; l < SQ_QK_K; ++l) weights[l] = fabsf(x[l]);
        fit_asym_batch(SQ_QK_K / 16, 16, 3, x, weights, L, scales, mins, -0.5f, 0.1f, 15, 1, 0);
        for (int j = 0; j < SQ_QK_K / 16; ++j) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < SQ_QK_K / 16; ++j) y[i].scales[j] = (uint8_t)sq__nearest_int(iscale * scales[j]);
            y[i].d = f2h(max_scale / 15.f);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = f2h(0.f);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            /* shifted as unsigned: a subnormal max_min makes iscale infinite
             * and the rounding of inf*0 negative; ggml's bytes are the same */
            for (int j = 0; j < SQ_QK_K / 16; ++j)
                y[i].scales[j] |= (uint8_t)((unsigned)sq__nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f2h(max_min / 15.f);
        } else {
            y[i].dmin = f2h(0.f);
        }
        q2_K_finish(x, &y[i], L);
    }
}

/* Q2_K with importance: weights qw*sqrt(sigma2 + x^2) (sigma2 = mean x^2 of
 * the super-block), a weighted asymmetric fit per sub-block, then the 16
 * scales and the 16 mins each quantized to 4 bits by sq__fit_positive, weighted
 * by the sub-block's total weight. */
static void quantize_q2_K_imatrix(const float *x, sq__block_q2_K *y, int64_t nb, const float *qw_row)
{
    uint8_t L[SQ_QK_K], Ls[SQ_QK_K / 16], Lm[SQ_QK_K / 16];
    float mins[SQ_QK_K / 16], scales[SQ_QK_K / 16], sw[SQ_QK_K / 16], weight[SQ_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SQ_QK_K) {
        const float sigma2 = sq__sum_squares(x, SQ_QK_K) / SQ_QK_K;
        for (int j = 0; j < SQ_QK_K / 16; ++j)
            sw[j] = sq__imatrix_weights(16, x + 16 * j, qw_row + SQ_QK_K * i + 16 * j, sigma2, weight + 16 * j);
        fit_asym_batch(SQ_QK_K / 16, 16, 3, x, weight, L, scales, mins, -0.9f, 0.05f, 36, 0, 1);
        const float dm = sq__fit_positive(SQ_QK_K / 16, 15, scales, Ls, sw);
        const float mm = sq__fit_positive(SQ_QK_K / 16, 15, mins, Lm, sw);
        y[i].d = f2h(dm);
        y[i].dmin = f2h(mm);
        for (int j = 0; j < SQ_QK_K / 16; ++j) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_K_finish(x, &y[i], L);
    }
}

static void quantize_q2_K(const float *x, void *vy, int64_t n, const float *imatrix)
{
    if (imatrix)
        quantize_q2_K_imatrix(x, vy, n / SQ_QK_K, imatrix);
    else
        quantize_q2_K_plain(x, vy, n / SQ_QK_K);
}

/* value = d*(scale & 15)*q - dmin*(scale >> 4), in ggml's order. */
static void dequantize_q2_K(const void *vx, float *y, int64_t n)
{
    const sq__block_q2_K *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int half = 0; half < SQ_QK_K; half += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; ++part) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
            q += 32;
        }
    }
}

/* Integer dot per sub-block, then d8*(d*sum(scale*q.x) - dmin*sum(min*bsum)). */
static float vec_dot_q2_K(int64_t n, const void *vw, const void *vx)
{
    const sq__block_q2_K *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += a[i].bsums[j] * (w[i].scales[j] >> 4);
        const float dall = a[i].d * h2f(w[i].d);
        const float dmin = a[i].d * h2f(w[i].dmin);
        const uint8_t *q2 = w[i].qs;
        const int8_t *q8 = a[i].qs;
        int isum = 0, is = 0;
        for (int half = 0; half < 2; ++half) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; ++part) {
                    int s = 0;
                    for (int l = 0; l < 16; ++l) s += q8[l] * ((q2[16 * part + l] >> shift) & 3);
                    isum += (w[i].scales[is++] & 0xF) * s;
                    q8 += 16;
                }
            }
            q2 += 32;
        }
        sumf += dall * isum - dmin * summs;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * Q3_K
 * ------------------------------------------------------------------------ */

/* Final pass of both Q3_K quantizers: re-quantize against the stored scales
 * (levels -4..3 stored +4), split off the high bit into hmask (bit b of
 * hmask[m] is value 32*b + m) and pack the low 2 bits. */
static void q3_K_finish(const float *x, sq__block_q3_K *y, int8_t *L)
{
    const float dall = h2f(y->d);
    for (int j = 0; j < SQ_QK_K / 16; ++j) {
        const float d = dall * get_scale_q3(j, y->scales);
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = sq__nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
        }
    }
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t U[SQ_QK_K];
    for (int j = 0; j < SQ_QK_K; ++j) {
        int l = L[j];
        if (l > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            l -= 4;
        }
        U[j] = (uint8_t)l;
    }
    pack_2bit(U, y->qs);
}

/* Q3_K without importance: fit_q3_reference per sub-block, then the signed
 * scales quantized to 6 bits against the largest-magnitude one (-32 maps to
 * it), super-scale = max/-32. */
static void quantize_q3_K_plain(const float *x, sq__block_q3_K *y, int64_t nb)
{
    int8_t L[SQ_QK_K];
    float scales[SQ_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += SQ_QK_K) {
        for (int j = 0; j < SQ_QK_K / 16; ++j) scales[j] = fit_q3_reference(16, 4, x + 16 * j, L + 16 * j);
        float amax;
        const float max_scale = sq__signed_absmax(scales, SQ_QK_K / 16, &amax);
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < SQ_QK_K / 16; ++j) {
                /* ggml rounds into an int8_t first; the value is within range */
                int8_t l8 = (int8_t)sq__nearest_int(iscale * scales[j]);
                int l = imax(-32, imin(31, l8)) + 32;
                put_scale_q3(j, y[i].scales, l);
            }
            y[i].d = f2h(1 / iscale);
        } else {
            y[i].d = f2h(0.f);
        }
        q3_K_finish(x, &y[i], L);
    }
}

/* Q3_K with importance: weights qw*sqrt(2*mean(x^2) + x^2), sq__fit_symmetric
 * per sub-block (nmax 4), then the 16 scales fitted by sq__fit_symmetric again
 * (nmax 32, weights = sub-block weight totals). */
static void quantize_q3_K_imatrix(const float *x, sq__block_q3_K *y, int64_t nb, const float *qw_row)
{
    int8_t L[SQ_QK_K], Ls[SQ_QK_K / 16];
    float scales[SQ_QK_K / 16], weight[SQ_QK_K], sw[SQ_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += SQ_QK_K) {
        const float sigma2 = 2 * sq__sum_squares(x, SQ_QK_K) / SQ_QK_K;
        for (int j = 0; j < SQ_QK_K / 16; ++j)
            sw[j] = sq__imatrix_weights(16, x + 16 * j, qw_row + SQ_QK_K * i + 16 * j, sigma2, weight + 16 * j);
        fit_symmetric_batch(SQ_QK_K / 16, 16, 4, x, L, weight, scales);
        memset(y[i].scales, 0, sizeof y[i].scales);
        const float d_block = sq__fit_symmetric(SQ_QK_K / 16, 32, scales, Ls, sw);
        for (int j = 0; j < SQ_QK_K / 16; ++j) put_scale_q3(j, y[i].scales, Ls[j]);
        y[i].d = f2h(d_block);
        q3_K_finish(x, &y[i], L);
    }
}

static void quantize_q3_K(const float *x, void *vy, int64_t n, const float *imatrix)
{
    if (imatrix)
        quantize_q3_K_imatrix(x, vy, n / SQ_QK_K, imatrix);
    else
        quantize_q3_K_plain(x, vy, n / SQ_QK_K);
}

/* value = (d*(scale-32)) * (q - (high bit ? 0 : 4)). */
static void dequantize_q3_K(const void *vx, float *y, int64_t n)
{
    const sq__block_q3_K *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; i++) {
        const float d_all = h2f(x[i].d);
        const uint8_t *q = x[i].qs;
        int sc[SQ_QK_K / 16];
        for (int j = 0; j < SQ_QK_K / 16; ++j) sc[j] = get_scale_q3(j, x[i].scales);
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < SQ_QK_K; half += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; ++part) {
                    const float dl = d_all * sc[is++];
                    for (int l = 16 * part; l < 16 * part + 16; ++l)
                        *y++ = dl * (((q[l] >> shift) & 3) - ((x[i].hmask[l] & m) ? 0 : 4));
                }
                m <<= 1;
            }
            q += 32;
        }
    }
}

static float vec_dot_q3_K(int64_t n, const void *vw, const void *vx)
{
    const sq__block_q3_K *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const uint8_t *q3 = w[i].qs;
        const int8_t *q8 = a[i].qs;
        int32_t isum = 0;
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < 2; ++half) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; ++part) {
                    int s = 0;
                    for (int l = 16 * part; l < 16 * part + 16; ++l) {
                        const int q = ((q3[l] >> shift) & 3) - ((w[i].hmask[l] & m) ? 0 : 4);
                        s += q * q8[l - 16 * part]; /* q8 points at this 16-value group */
                    }
                    isum += get_scale_q3(is++, w[i].scales) * s;
                    q8 += 16;
                }
                m <<= 1;
            }
            q3 += 32;
        }
        sumf += h2f(w[i].d) * a[i].d * isum;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * Q4_K and Q5_K (same scale layout; Q5_K adds a high bit per value)
 * ------------------------------------------------------------------------ */

/* Re-quantizes all 256 values against the stored 6-bit scales / mins
 * (levels 0..nmax); sub-blocks with a zero scale keep the search's levels. */
static void q45_K_requantize(const float *x, sq_fp16 dh, sq_fp16 dminh, const uint8_t *scales, uint8_t *L,
                             int nmax)
{
    const float dall = h2f(dh), dmin = h2f(dminh);
    for (int j = 0; j < SQ_QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        const float d = dall * sc;
        if (!d) continue;
        const float dm = dmin * m;
        for (int ii = 0; ii < 32; ++ii) {
            const int l = sq__nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

/* Per-sub-block search without importance shared by Q4_K and Q5_K: weights
 * rms(x) + |x| per 32 values, asymmetric squared-error fit; then scales and
 * mins quantized to 6 bits against their maxima. */
static void q45_K_plain_scales(const float *x, uint8_t *L, int nmax, float rmin, float rdelta, int nstep,
                               uint8_t *scale_bytes, sq_fp16 *dh, sq_fp16 *dminh)
{
    float weights[SQ_QK_K], mins[SQ_QK_K / 32], scales[SQ_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < SQ_QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + fabsf(x[32 * j + l]);
    }
    fit_asym_batch(SQ_QK_K / 32, 32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, 0, 0);
    for (int j = 0; j < SQ_QK_K / 32; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < SQ_QK_K / 32; ++j) {
        /* ggml stores the rounded value in a uint8_t before clamping */
        uint8_t ls = (uint8_t)sq__nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)sq__nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        put_scale_min_k4(j, scale_bytes, ls, lm);
    }
    *dh = f2h(max_scale / 63.f);
    *dminh = f2h(max_min / 63.f);
}

/* Per-sub-block search with importance shared by Q4_K and Q5_K: weights
 * qw*sqrt(sigma2 + x^2), sigma2 = 2*mean(x^2) of the super-block; weighted
 * asymmetric fit; scales and mins fitted to 6 bits by sq__fit_positive. */
static void q45_K_imatrix_scales(const float *x, const float *qw_block, uint8_t *L, int nmax, int clamp63,
                                 uint8_t *scale_bytes, sq_fp16 *dh, sq_fp16 *dminh)
{
    uint8_t Ls[SQ_QK_K / 32], Lm[SQ_QK_K / 32];
    float weights[SQ_QK_K], sw[SQ_QK_K / 32], mins[SQ_QK_K / 32], scales[SQ_QK_K / 32];
    const float sigma2 = 2 * sq__sum_squares(x, SQ_QK_K) / SQ_QK_K;
    for (int j = 0; j < SQ_QK_K / 32; ++j)
        sw[j] = sq__imatrix_weights(32, x + 32 * j, qw_block + 32 * j, sigma2, weights + 32 * j);
    fit_asym_batch(SQ_QK_K / 32, 32, nmax, x, weights, L, scales, mins, -0.9f, 0.05f, 36, 0, 1);
    const float d_block = sq__fit_positive(SQ_QK_K / 32, 63, scales, Ls, sw);
    const float m_block = sq__fit_positive(SQ_QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < SQ_QK_K / 32; ++j) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) {
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
        }
        put_scale_min_k4(j, scale_bytes, ls, lm);
    }
    *dh = f2h(d_block);
    *dminh = f2h(m_block);
}

static void quantize_q4_K(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q4_K *y = vy;
    uint8_t L[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; i++, x += SQ_QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (imatrix)
            q45_K_imatrix_scales(x, imatrix + SQ_QK_K * i, L, 15, 0, y[i].scales, &y[i].d, &y[i].dmin);
        else
            q45_K_plain_scales(x, L, 15, -1.f, 0.1f, 20, y[i].scales, &y[i].d, &y[i].dmin);
        q45_K_requantize(x, y[i].d, y[i].dmin, y[i].scales, L, 15);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < SQ_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* value = (d*scale)*q - dmin*min per 32-value sub-block. */
static void dequantize_q4_K(const void *vx, float *y, int64_t n)
{
    const sq__block_q4_K *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < SQ_QK_K / 64; ++j, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* Shared tail of the Q4_K / Q5_K dots: given the 256 unsigned levels of a
 * block, d8*(d*sum_j scale_j*dot_j - dmin*sum_j min_j*bsum_j). */
static float q45_K_block_dot(const uint8_t *lv, const uint8_t *scales, sq_fp16 dh, sq_fp16 dminh,
                             const sq__block_q8_K *a)
{
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < SQ_QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        int s = 0;
        for (int l = 0; l < 32; ++l) s += lv[32 * j + l] * a->qs[32 * j + l];
        isum += sc * s;
        msum += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    }
    return h2f(dh) * a->d * isum - h2f(dminh) * a->d * msum;
}

static float vec_dot_q4_K(int64_t n, const void *vw, const void *vx)
{
    const sq__block_q4_K *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    uint8_t lv[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const uint8_t *q = w[i].qs;
        for (int j = 0; j < SQ_QK_K / 64; ++j, q += 32) {
            for (int l = 0; l < 32; ++l) lv[64 * j + l] = q[l] & 0xF;
            for (int l = 0; l < 32; ++l) lv[64 * j + 32 + l] = q[l] >> 4;
        }
        sumf += q45_K_block_dot(lv, w[i].scales, w[i].d, w[i].dmin, &a[i]);
    }
    return sumf;
}

static void quantize_q5_K(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q5_K *y = vy;
    uint8_t L[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; i++, x += SQ_QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (imatrix)
            q45_K_imatrix_scales(x, imatrix + SQ_QK_K * i, L, 31, 1, y[i].scales, &y[i].d, &y[i].dmin);
        else
            q45_K_plain_scales(x, L, 31, -0.5f, 0.1f, 15, y[i].scales, &y[i].d, &y[i].dmin);
        q45_K_requantize(x, y[i].d, y[i].dmin, y[i].scales, L, 31);
        /* low nibbles as in Q4_K; bit 2k / 2k+1 of qh[j] is the fifth bit of
         * value 64k + j / 64k + 32 + j */
        memset(y[i].qh, 0, sizeof y[i].qh);
        uint8_t *ql = y[i].qs;
        uint8_t m1 = 1, m2 = 2;
        for (int base = 0; base < SQ_QK_K; base += 64, ql += 32) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[base + j], l2 = L[base + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    y[i].qh[j] |= m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[i].qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
        }
    }
}

static void dequantize_q5_K(const void *vx, float *y, int64_t n)
{
    const sq__block_q5_K *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < SQ_QK_K / 64; ++j, ql += 32) {
            uint8_t sc, m;
            get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static float vec_dot_q5_K(int64_t n, const void *vw, const void *vx)
{
    const sq__block_q5_K *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    uint8_t lv[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const uint8_t *ql = w[i].qs, *qh = w[i].qh;
        for (int j = 0; j < SQ_QK_K / 64; ++j, ql += 32) {
            for (int l = 0; l < 32; ++l) lv[64 * j + l] = (uint8_t)((ql[l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4));
            for (int l = 0; l < 32; ++l)
                lv[64 * j + 32 + l] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4));
        }
        sumf += q45_K_block_dot(lv, w[i].scales, w[i].d, w[i].dmin, &a[i]);
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * Q6_K
 * ------------------------------------------------------------------------ */

/* Both Q6_K quantizers: sq__fit_symmetric per 16-value sub-block (nmax 32;
 * weights x^2, or the importance weights as they are), then int8 sub-block
 * scales against the largest-magnitude one (-128 maps to it), re-quantize,
 * pack (low nibbles in ql, high 2 bits in qh). */
static void quantize_q6_K(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q6_K *y = vy;
    int8_t L[SQ_QK_K];
    float scales[SQ_QK_K / 16];
    for (int64_t i = 0; i < n / SQ_QK_K; i++, x += SQ_QK_K) {
        fit_symmetric_batch(SQ_QK_K / 16, 16, 32, x, L, imatrix ? imatrix + SQ_QK_K * i : NULL, scales);
        float max_abs_scale;
        const float max_scale = sq__signed_absmax(scales, SQ_QK_K / 16, &max_abs_scale);
        if (max_abs_scale < SQ_GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = f2h(0.f);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = f2h(1 / iscale);
        for (int ib = 0; ib < SQ_QK_K / 16; ++ib) y[i].scales[ib] = (int8_t)imin(127, sq__nearest_int(iscale * scales[ib]));
        const float dall = h2f(y[i].d);
        for (int j = 0; j < SQ_QK_K / 16; ++j) {
            const float d = dall * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = sq__nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < SQ_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int a0 = L[j + l], a1 = L[j + l + 32], a2 = L[j + l + 64], a3 = L[j + l + 96];
                ql[l] = (uint8_t)((a0 & 0xF) | ((a2 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((a1 & 0xF) | ((a3 & 0xF) << 4));
                qh[l] = (uint8_t)((a0 >> 4) | ((a1 >> 4) << 2) | ((a2 >> 4) << 4) | ((a3 >> 4) << 6));
            }
        }
    }
}

/* Unpacks the 256 six-bit levels (-32..31) of a Q6_K block: for each
 * 128-value half and l < 32, ql[l] / ql[l+32] hold the low nibbles of values
 * l, l+64 / l+32, l+96 and qh[l] their high 2 bits at bits 0, 2, 4, 6. */
static void q6_unpack(const sq__block_q6_K *b, int8_t *lv)
{
    for (int half = 0; half < 2; ++half) {
        const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
        int8_t *o = lv + 128 * half;
        for (int l = 0; l < 32; ++l) {
            o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* value = (d*scale)*q, in ggml's order. */
static void dequantize_q6_K(const void *vx, float *y, int64_t n)
{
    const sq__block_q6_K *x = vx;
    int8_t lv[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; i++, y += SQ_QK_K) {
        const float d = h2f(x[i].d);
        q6_unpack(&x[i], lv);
        for (int k = 0; k < SQ_QK_K; ++k) y[k] = d * x[i].scales[k / 16] * lv[k];
    }
}

static float vec_dot_q6_K(int64_t n, const void *vw, const void *vx)
{
    const sq__block_q6_K *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    int8_t lv[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        q6_unpack(&w[i], lv);
        int32_t isum = 0;
        for (int g = 0; g < SQ_QK_K / 16; ++g) {
            int s = 0;
            for (int k = 16 * g; k < 16 * g + 16; ++k) s += lv[k] * a[i].qs[k];
            isum += w[i].scales[g] * s;
        }
        sumf += h2f(w[i].d) * a[i].d * isum;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * Q8_K (activations)
 * ------------------------------------------------------------------------ */

/* ggml's CPU Q8_K quantizer: scale from the largest-magnitude value v,
 * iscale = -127/v (so v maps to -127; the opposite extreme may round to 128
 * and is clipped to 127), values rounded with sq__nearest_int, d = 1/iscale as a
 * float, and bsums = sums of each 16 values. An all-zero block is all zero. */
static void from_float_q8_K(const float *x, void *vy, int64_t n)
{
    sq__block_q8_K *y = vy;
    for (int64_t i = 0; i < n / SQ_QK_K; i++, x += SQ_QK_K) {
        float amax;
        const float max = sq__signed_absmax(x, SQ_QK_K, &amax);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < SQ_QK_K; ++j) y[i].qs[j] = (int8_t)imin(127, sq__nearest_int(iscale * x[j]));
        for (int j = 0; j < SQ_QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

static void dequantize_q8_K(const void *vx, float *y, int64_t n)
{
    const sq__block_q8_K *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; i++)
        for (int j = 0; j < SQ_QK_K; ++j) *y++ = x[i].d * x[i].qs[j];
}

void sq__register_kquants(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_Q2_K] = (sq__kernels){quantize_q2_K, dequantize_q2_K, vec_dot_q2_K, NULL, NULL};
    table[SQ_TYPE_Q3_K] = (sq__kernels){quantize_q3_K, dequantize_q3_K, vec_dot_q3_K, NULL, NULL};
    table[SQ_TYPE_Q4_K] = (sq__kernels){quantize_q4_K, dequantize_q4_K, vec_dot_q4_K, NULL, NULL};
    table[SQ_TYPE_Q5_K] = (sq__kernels){quantize_q5_K, dequantize_q5_K, vec_dot_q5_K, NULL, NULL};
    table[SQ_TYPE_Q6_K] = (sq__kernels){quantize_q6_K, dequantize_q6_K, vec_dot_q6_K, NULL, NULL};
    table[SQ_TYPE_Q8_K].dequantize = dequantize_q8_K;
    table[SQ_TYPE_Q8_K].from_float = from_float_q8_K;
}
