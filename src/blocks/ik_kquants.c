/*
 * ik_kquants.c — scalar reference kernels of ik_llama.cpp's super-block types
 * without a row scale: IQ2_K, IQ3_K, IQ4_K, IQ5_K, IQ6_K (256 values, 16
 * sub-blocks of 16, non-linear level tables with a "shifted" twin per
 * sub-block), and Q6_0 (32 values, 6-bit linear).
 *
 * Quantizers are bit-exact with ik's (iqk_quantize.cpp at the commit of
 * ../shared/golden/ik): the same searches in the same float operation order.
 * Dot products pair with Q8_K (Q8_0 for Q6_0) and sum integer inner
 * products per sub-block; they are this project's own kernels (ik computes
 * its products through interleaved activation layouts), checked against the
 * float dot product of the dequantized rows.
 * Kernels never allocate; the caller owns x and y.
 */
#include <math.h>

#include "ik_common.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Weights of one 16-value sub-block: with an imatrix, ik's block weights
 * times sqrtf(sigma2 + x^2); without, k2*sigma2 + x^2 (k2 = 0.25) or x^2
 * (k2 = 0, the IQ4_K rule). */
static void sub_weights(const float *qw, const float *xb, float sigma2, float k2, float *w)
{
    float buf[16];
    if (qw) {
        sq__ik_imatrix_weights(sq__ik_block_qw(qw, xb, 16, buf), xb, 16, sigma2, w);
    } else if (k2 > 0) {
        for (int j = 0; j < 16; ++j) w[j] = fmaf(k2, sigma2, xb[j] * xb[j]);
    } else {
        for (int j = 0; j < 16; ++j) w[j] = xb[j] * xb[j];
    }
}

/* ------------------------------------------------------------------------
 * Q6_0
 * ------------------------------------------------------------------------ */

/* Weighted sums of Q6_0's levels l = clamp(round(iscale * x), -32, 31) of a
 * 32-value block (L, offset by 32, written when not NULL). ik's build fuses
 * the sums of the first pass (fused) but not those of the candidate loop
 * (its reduction chains are left unfused); the rounding is always fused. */
static void q6_0_sums(const float *x, const float *w, float iscale, bool fused, int8_t *L, float *sumlx,
                      float *suml2)
{
    float a = 0, b = 0;
    for (int i = 0; i < 32; ++i) {
        const int l = imax(-32, imin(31, sq__ik_round_prod(iscale, x[i])));
        if (L) L[i] = (int8_t)(l + 32);
        if (fused) {
            a = fmaf(w[i] * x[i], (float)l, a);
            b = fmaf(w[i] * (float)l, (float)l, b);
        } else {
            a = a + w[i] * x[i] * (float)l;
            b = b + w[i] * (float)l * (float)l;
        }
    }
    *sumlx = a, *suml2 = b;
}

/* The running best of Q6_0's scale search: sums and scale of the levels in L. */
typedef struct q6_0_fit {
    float sumlx, suml2, scale, best;
} q6_0_fit;

/* Tries inverse scale iscale: when sumlx^2/suml2 beats the fit, L and the
 * fit take its levels. */
static void q6_0_try(const float *x, const float *w, float iscale, int8_t *L, q6_0_fit *f)
{
    float sumlx, suml2;
    q6_0_sums(x, w, iscale, false, NULL, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > f->best * suml2) {
        q6_0_sums(x, w, iscale, false, L, &sumlx, &suml2);
        f->sumlx = sumlx, f->suml2 = suml2;
        f->scale = sumlx / suml2;
        f->best = f->scale * sumlx;
    }
}

/* Index of the level whose one-step move along the error gradient is
 * steepest (-1 when none can move), and the gradient's sign in *up. */
static int q6_0_steepest(const float *x, const float *w, const int8_t *L, float scale, bool *up)
{
    float abs_gmax = 0, gmax = 0;
    int best_j = -1;
    for (int j = 0; j < 32; ++j) {
        const int l = L[j] - 32;
        const float g = scale * w[j] * fmaf(-scale, (float)l, x[j]);
        if (((g > 0 && l < 31) || (g < 0 && l > -32)) && fabsf(g) > abs_gmax) {
            abs_gmax = fabsf(g), gmax = g, best_j = j;
        }
    }
    *up = gmax > 0;
    return best_j;
}

/* ik's coordinate descent after the scale search: moves the steepest level
 * one step while that raises sumlx^2/suml2. */
static void q6_0_descend(const float *x, const float *w, int8_t *L, q6_0_fit *f)
{
    for (int iter = 0; iter < 32 * 63; ++iter) {
        bool up;
        const int j = q6_0_steepest(x, w, L, f->scale, &up);
        if (j < 0) return;
        const int l = L[j] - 32;
        const float sumlx = up ? fmaf(w[j], x[j], f->sumlx) : fmaf(-w[j], x[j], f->sumlx);
        const float suml2 = up ? fmaf(w[j], (float)(2 * l + 1), f->suml2) : fmaf(-w[j], (float)(2 * l - 1), f->suml2);
        if (!(suml2 > 0 && sumlx * sumlx > f->best * suml2)) return;
        f->sumlx = sumlx, f->suml2 = suml2;
        f->scale = sumlx / suml2;
        f->best = f->scale * sumlx;
        L[j] = (int8_t)(l + (up ? 1 : -1) + 32);
    }
}

/* The block search of ik's ggml (make_qx_quants, nmax 32, which ik extended):
 * levels at -32/max, then for is = -9..9 the inverse scales -(32 + is/10)/max
 * and (31 + is/10)/max (both signs of the block), then the descent. Returns
 * the scale; L gets the levels + 32. */
static float q6_0_search(const float *x, const float *w, int8_t *L)
{
    float amax;
    const float max = sq__signed_absmax(x, 32, &amax);
    if (amax < SQ_GROUP_EPS) {
        memset(L, 0, 32);
        return 0.f;
    }
    q6_0_fit f;
    q6_0_sums(x, w, -32 / max, true, L, &f.sumlx, &f.suml2);
    f.scale = f.suml2 ? f.sumlx / f.suml2 : 0.0f;
    f.best = f.scale * f.sumlx;
    for (int is = -9; is <= 9; ++is) {
        q6_0_try(x, w, -(32 + 0.1f * is) / max, L, &f);
        q6_0_try(x, w, (31 + 0.1f * is) / max, L, &f);
    }
    q6_0_descend(x, w, L, &f);
    return f.scale;
}

/* Q6_0 (ik's quantize_q6_0): per 32-value block the search above with
 * weights x^2, or with an imatrix qw * sqrt(sigma2 + x^2), sigma2 = the
 * mean x^2 of the row (summed unfused, in index order). */
static void quantize_q6_0(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q6_0 *y = vy;
    float sigma2 = 0;
    if (imatrix) {
        for (int64_t j = 0; j < n; ++j) sigma2 = sigma2 + x[j] * x[j];
        sigma2 /= (float)n;
    }
    float w[32];
    int8_t L[32];
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        if (imatrix)
            sq__ik_imatrix_weights(imatrix + 32 * ib, xb, 32, sigma2, w);
        else
            for (int j = 0; j < 32; ++j) w[j] = xb[j] * xb[j];
        y[ib].d = sq_f32_to_fp16(q6_0_search(xb, w, L));
        memset(y[ib].qh, 0, sizeof y[ib].qh);
        for (int j = 0; j < 16; ++j) {
            const uint8_t l0 = (uint8_t)L[j], l1 = (uint8_t)L[j + 16];
            y[ib].qs[j] = (uint8_t)((l0 & 0xF) | ((l1 & 0xF) << 4));
            const uint8_t h = (uint8_t)((l0 >> 4) | ((l1 >> 4) << 2));
            y[ib].qh[j % 8] |= (uint8_t)(h << 4 * (j / 8));
        }
    }
}

/* The 6-bit levels (0..63) of values j and j+16 of a Q6_0 block. */
static inline void q6_0_levels(const sq__block_q6_0 *b, int j, int *l0, int *l1)
{
    const int h = b->qh[j % 8] >> 4 * (j / 8);
    *l0 = (b->qs[j] & 0xF) | ((h << 4) & 0x30);
    *l1 = (b->qs[j] >> 4) | ((h << 2) & 0x30);
}

static void dequantize_q6_0(const void *vx, float *y, int64_t n)
{
    const sq__block_q6_0 *x = vx;
    for (int64_t ib = 0; ib < n / 32; ++ib, y += 32) {
        const float d = sq_fp16_to_f32(x[ib].d);
        for (int j = 0; j < 16; ++j) {
            int l0, l1;
            q6_0_levels(&x[ib], j, &l0, &l1);
            y[j] = d * (l0 - 32);
            y[j + 16] = d * (l1 - 32);
        }
    }
}

static float vec_dot_q6_0(int64_t n, const void *vw, const void *vx)
{
    const sq__block_q6_0 *w = vw;
    const sq__block_q8_0 *a = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            int l0, l1;
            q6_0_levels(&w[ib], j, &l0, &l1);
            s += (l0 - 32) * a[ib].qs[j] + (l1 - 32) * a[ib].qs[j + 16];
        }
        sumf += (sq_fp16_to_f32(w[ib].d) * sq_fp16_to_f32(a[ib].d)) * s;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * IQ2_K
 * ------------------------------------------------------------------------ */

/* Indices 0..n-1 ordered by x (ties by index): std::sort of (x, index) pairs. */
static void sort_by_value(const float *x, int n, int *order)
{
    for (int i = 0; i < n; ++i) {
        int k = i;
        while (k > 0 && (x[order[k - 1]] > x[i] || (x[order[k - 1]] == x[i] && order[k - 1] > i))) {
            order[k] = order[k - 1];
            --k;
        }
        order[k] = i;
    }
}

/* One candidate of the exhaustive 4-level search: the values sorted by size
 * take the levels v[0..3] in the ranges cut at i1, i2, i3 (prefix sums sx of
 * w*x and sw of w). Keeps the fit when sumqx^2/sumq2 grows. */
static inline bool try_cut(const float *sx, const float *sw, int n, int i1, int i2, int i3, float v0, float v1,
                           float v2, float v3, float *d, float *best)
{
    const float sumqx = fmaf(sx[n] - sx[i3], v3,
                             fmaf(sx[i3] - sx[i2], v2, fmaf(sx[i1] - sx[0], v0, (sx[i2] - sx[i1]) * v1)));
    const float sumq2 = fmaf((sw[n] - sw[i3]) * v3, v3,
                             fmaf((sw[i3] - sw[i2]) * v2, v2, fmaf((sw[i1] - sw[0]) * v0, v0, (sw[i2] - sw[i1]) * v1 * v1)));
    if (sumq2 > 0 && sumqx * sumqx > *best * sumq2) {
        *d = sumqx / sumq2;
        *best = *d * sumqx;
        return true;
    }
    return false;
}

/* The exhaustive 4-level search (declared in ik_common.h). */
float sq__ik_iq2_search(const float *xb, const float *w, int n, int max_i1, int min_i3, bool *shifted)
{
    int order[32];
    float sx[33], sw[33];
    sort_by_value(xb, n, order);
    sx[0] = sw[0] = 0;
    for (int j = 0; j < n; ++j) {
        const int jj = order[j];
        sw[j + 1] = sw[j] + w[jj];
        sx[j + 1] = fmaf(w[jj], xb[jj], sx[j]);
    }
    const int8_t *v = sq__iq2nl_values, *s = sq__iq2nl_values + 4;
    float best = 0, d = 0;
    *shifted = false;
    for (int i1 = 0; i1 < max_i1; ++i1)
        for (int i2 = i1; i2 < n; ++i2)
            for (int i3 = imax(i2, min_i3); i3 < n; ++i3) {
                if (try_cut(sx, sw, n, i1, i2, i3, v[0], v[1], v[2], v[3], &d, &best)) *shifted = false;
                if (try_cut(sx, sw, n, i1, i2, i3, s[0], s[1], s[2], s[3], &d, &best)) *shifted = true;
                if (try_cut(sx, sw, n, i1, i2, i3, v[3], v[2], v[1], v[0], &d, &best)) *shifted = false;
                if (try_cut(sx, sw, n, i1, i2, i3, s[3], s[2], s[1], s[0], &d, &best)) *shifted = true;
            }
    return d;
}

/* IQ2_K: sub-block scales from the exhaustive search, quantized to 4 bits by
 * the weighted symmetric search over the 16 scales (weights: each
 * sub-block's weight sum), indices re-picked, super-scale the least-squares
 * fit times 1.03 (ik's correction). */
static void quantize_iq2_k_block(const float *xbl, const float *qwl, sq__block_iq2_k *y)
{
    float scales[16], sw[16], w[16];
    int8_t Ls[16];
    memset(y, 0, sizeof *y);
    const float sigma2 = 1.5f * sq__ik_sumx2(xbl) / 256;
    uint16_t extra = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        sw[ib] = 0;
        for (int j = 0; j < 16; ++j) sw[ib] += w[j];
        bool shifted;
        scales[ib] = sq__ik_iq2_search(xb, w, 16, 16, 0, &shifted);
        if (shifted) extra |= (uint16_t)(1 << ib);
        const float a = fabsf(scales[ib]);
        max_abs_scale = max_abs_scale < a ? a : max_abs_scale;
    }
    if (!max_abs_scale) return;
    const float d = sq__ik_make_qx(16, 8, scales, Ls, sw, 0x1p-149f);
    if (!d) return;
    y->extra = extra;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const int ls = imax(-8, imin(7, sq__ik_round_prod(id, scales[ib])));
        y->scales[ib / 2] |= (uint8_t)((ls + 8) << 4 * (ib % 2));
        const float dl = d * ls;
        if (!dl) continue;
        const int8_t *bv = sq__iq2nl_values + (extra >> ib & 1) * 4;
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        const float idl = 1 / dl;
        const int ib32 = ib / 2;
        uint8_t *qs = y->qs + 32 * (ib32 / 4) + 16 * (ib % 2);
        for (int j = 0; j < 16; ++j) {
            const int l = sq__ik_nearest4(bv, idl * xb[j]);
            qs[j] |= (uint8_t)(l << 2 * (ib32 % 4));
            const float q = bv[l] * ls;
            sumqx = fmaf(w[j] * q, xb[j], sumqx);
            sumq2 = fmaf(w[j] * q, q, sumq2);
        }
    }
    y->d = sq_f32_to_fp16(1.030f * (sumq2 > 0 ? sumqx / sumq2 : d));
}

static void quantize_iq2_k(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq2_k *y = vy;
    for (int64_t ibl = 0; ibl < n / 256; ++ibl)
        quantize_iq2_k_block(x + 256 * ibl, imatrix ? imatrix + 256 * ibl : NULL, &y[ibl]);
}

static void dequantize_iq2_k(const void *vx, float *y, int64_t n)
{
    const sq__block_iq2_k *x = vx;
    for (int64_t i = 0; i < n / 256; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        const uint8_t *qs = x[i].qs;
        unsigned extra = x[i].extra;
        for (int ib32 = 0; ib32 < 8; ++ib32, y += 32, extra >>= 2) {
            const float dl1 = d * ((x[i].scales[ib32] & 0xF) - 8);
            const float dl2 = d * ((x[i].scales[ib32] >> 4) - 8);
            const int8_t *v1 = sq__iq2nl_values + (extra & 1) * 4, *v2 = sq__iq2nl_values + (extra >> 1 & 1) * 4;
            const int shift = 2 * (ib32 % 4);
            for (int j = 0; j < 16; ++j) {
                y[j] = dl1 * v1[(qs[j] >> shift) & 3];
                y[j + 16] = dl2 * v2[(qs[j + 16] >> shift) & 3];
            }
            if (ib32 % 4 == 3) qs += 32;
        }
    }
}

static float vec_dot_iq2_k(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq2_k *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        const uint8_t *qs = w[i].qs;
        const int8_t *q8 = a[i].qs;
        int sum = 0;
        for (int ib = 0; ib < 16; ++ib, q8 += 16) {
            const int8_t *v = sq__iq2nl_values + (w[i].extra >> ib & 1) * 4;
            const int ib32 = ib / 2, shift = 2 * (ib32 % 4);
            const uint8_t *q = qs + 32 * (ib32 / 4) + 16 * (ib % 2);
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q8[j] * v[(q[j] >> shift) & 3];
            sum += ((w[i].scales[ib32] >> 4 * (ib % 2) & 0xF) - 8) * s;
        }
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * sum;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * IQ3_K
 * ------------------------------------------------------------------------ */

static const sq__ik_search iq3k_search = {sq__iq3nl_values, 8, 3, 2, 1e-9f, true};

/* IQ3_K: per sub-block the shared search (3 trials either side, step 2) and
 * a refit; odd 4-bit scale magnitudes 2l+1 with a sign bit against
 * d = max|scale|/31; super-scale the least-squares fit times 1.01. */
static void quantize_iq3_k_block(const float *xbl, const float *qwl, sq__block_iq3_k *y)
{
    float scales[16], w[16];
    memset(y, 0, sizeof *y);
    const float sigma2 = 1.5f * sq__ik_sumx2(xbl) / 256;
    uint16_t extra = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        bool shifted, skipped;
        float d = sq__ik_block_search(&iq3k_search, xb, w, 16, &shifted, &skipped);
        if (skipped || !d) {
            scales[ib] = 0;
            continue;
        }
        scales[ib] = sq__ik_refit(&iq3k_search, shifted, xb, w, 16, d);
        if (shifted) extra |= (uint16_t)(1 << ib);
        const float a = fabsf(scales[ib]);
        max_abs_scale = max_abs_scale > a ? max_abs_scale : a;
    }
    if (!max_abs_scale) return;
    const float d = max_abs_scale / 31;
    y->extra = extra;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 16; ++ib) {
        int ls = imax(0, imin(15, sq__ik_round_prod(0.5f, fmaf(id, fabsf(scales[ib]), -1.f))));
        y->scales_l[ib / 2] |= (uint8_t)(ls << 4 * (ib % 2));
        if (scales[ib] < 0) y->scales_h |= (uint16_t)(1 << ib);
        ls = (2 * ls + 1) * (scales[ib] < 0 ? -1 : 1);
        const float dl = d * ls;
        if (!dl) continue;
        const int8_t *bv = sq__iq3nl_values + (extra >> ib & 1) * 8;
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        const float idl = 1 / dl;
        const int ib32 = ib / 2, off = 16 * (ib % 2);
        uint8_t *qs = y->qs + 32 * (ib32 / 4) + off, *qh = y->qh + off;
        for (int j = 0; j < 16; ++j) {
            const int l = sq__ik_nearest(bv, 8, idl * xb[j]);
            qs[j] |= (uint8_t)((l & 3) << 2 * (ib32 % 4));
            qh[j] |= (uint8_t)((l >> 2) << ib32);
            const float q = bv[l] * ls;
            sumqx = fmaf(w[j] * q, xb[j], sumqx);
            sumq2 = fmaf(w[j] * q, q, sumq2);
        }
    }
    y->d = sq_f32_to_fp16(1.01f * (sumq2 > 0 ? sumqx / sumq2 : d));
}

static void quantize_iq3_k(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq3_k *y = vy;
    for (int64_t ibl = 0; ibl < n / 256; ++ibl)
        quantize_iq3_k_block(x + 256 * ibl, imatrix ? imatrix + 256 * ibl : NULL, &y[ibl]);
}

/* Signed scale of 16-value sub-block ib of an IQ3_K block: +-(2l+1). */
static inline int iq3_k_scale(const sq__block_iq3_k *b, int ib)
{
    const int l = 2 * (b->scales_l[ib / 2] >> 4 * (ib % 2) & 0xF) + 1;
    return (b->scales_h >> ib & 1) ? -l : l;
}

/* Index (0..7) of value j of 16-value sub-block ib. */
static inline int iq3_k_index(const sq__block_iq3_k *b, int ib, int j)
{
    const int ib32 = ib / 2, off = 16 * (ib % 2);
    return ((b->qs[32 * (ib32 / 4) + off + j] >> 2 * (ib32 % 4)) & 3) | ((b->qh[off + j] >> ib32 & 1) << 2);
}

static void dequantize_iq3_k(const void *vx, float *y, int64_t n)
{
    const sq__block_iq3_k *x = vx;
    for (int64_t i = 0; i < n / 256; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int ib = 0; ib < 16; ++ib, y += 16) {
            const float dl = d * iq3_k_scale(&x[i], ib);
            const int8_t *v = sq__iq3nl_values + (x[i].extra >> ib & 1) * 8;
            for (int j = 0; j < 16; ++j) y[j] = dl * v[iq3_k_index(&x[i], ib, j)];
        }
    }
}

static float vec_dot_iq3_k(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq3_k *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        const int8_t *q8 = a[i].qs;
        int sum = 0;
        for (int ib = 0; ib < 16; ++ib, q8 += 16) {
            const int8_t *v = sq__iq3nl_values + (w[i].extra >> ib & 1) * 8;
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q8[j] * v[iq3_k_index(&w[i], ib, j)];
            sum += iq3_k_scale(&w[i], ib) * s;
        }
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * sum;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * IQ4_K
 * ------------------------------------------------------------------------ */

static const sq__ik_search iq4k_search = {sq__iq4k_values, 16, 7, 1, 0x1p-149f, false};

/* IQ4_K: per sub-block the shared search (7 trials either side), 6-bit scales
 * against d = max_scale/-32 (the signed largest), indices re-picked, the
 * super-scale refit by least squares. Without an imatrix the weights are x^2. */
static void quantize_iq4_k_block(const float *x, const float *qw, sq__block_iq4_k *y)
{
    float scales[16], w[16];
    uint8_t L[256];
    memset(y, 0, sizeof *y);
    const float sigma2 = sq__ik_sumx2(x) * (2.f / 256);
    uint16_t extra = 0;
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float *xb = x + 16 * ib;
        sub_weights(qw ? qw + 16 * ib : NULL, xb, sigma2, 0, w);
        bool shifted, skipped;
        const float d = sq__ik_block_search(&iq4k_search, xb, w, 16, &shifted, &skipped);
        if (skipped) {
            scales[ib] = 0;
            continue;
        }
        if (shifted) extra |= (uint16_t)(1 << ib);
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }
    const float d = -max_scale / 32;
    y->d = sq_f32_to_fp16(d);
    y->extra = extra;
    const float id = d ? 1 / d : 0.f;
    float sumqx = 0, sumq2 = 0;
    uint16_t sh[2] = {0, 0};
    for (int ib = 0; ib < 16; ++ib) {
        const int8_t *bv = sq__iq4k_values + (extra >> ib & 1) * 16;
        int l = imax(-32, imin(31, sq__ik_round_prod(id, scales[ib])));
        const float dl = d * l;
        const float idl = dl ? 1 / dl : 0.f;
        const float *xb = x + 16 * ib;
        sub_weights(qw ? qw + 16 * ib : NULL, xb, sigma2, 0, w);
        for (int j = 0; j < 16; ++j) {
            L[16 * ib + j] = (uint8_t)sq__ik_nearest(bv, 16, idl * xb[j]);
            const float q = bv[L[16 * ib + j]] * l;
            sumqx = fmaf(w[j] * q, xb[j], sumqx);
            sumq2 = fmaf(w[j] * q, q, sumq2);
        }
        l += 32;
        y->scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4 * (ib % 2));
        sh[ib / 8] |= (uint16_t)((l >> 4) << 2 * (ib % 8));
    }
    for (int k = 0; k < 4; ++k) y->scales_h[k] = (uint8_t)(sh[k / 2] >> 8 * (k % 2));
    if (sumq2 > 0) y->d = sq_f32_to_fp16(sumqx / sumq2);
    for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 16; ++j) y->qs[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

static void quantize_iq4_k(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq4_k *y = vy;
    for (int64_t ibl = 0; ibl < n / 256; ++ibl)
        quantize_iq4_k_block(x + 256 * ibl, imatrix ? imatrix + 256 * ibl : NULL, &y[ibl]);
}

/* 6-bit scale (-32..31) of 16-value sub-block ib of an IQ4_K / IQ5_K block
 * (both store scales_h and scales_l the same way). */
static inline int iq45_k_scale(const uint8_t *scales_h, const uint8_t *scales_l, int ib)
{
    return ((scales_l[ib / 2] >> 4 * (ib % 2) & 0xF) | ((scales_h[ib / 4] >> 2 * (ib % 4) & 3) << 4)) - 32;
}

static void dequantize_iq4_k(const void *vx, float *y, int64_t n)
{
    const sq__block_iq4_k *x = vx;
    for (int64_t i = 0; i < n / 256; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int ib32 = 0; ib32 < 8; ++ib32, y += 32) {
            const uint8_t *qs = x[i].qs + 16 * ib32;
            const float dl1 = d * iq45_k_scale(x[i].scales_h, x[i].scales_l, 2 * ib32);
            const float dl2 = d * iq45_k_scale(x[i].scales_h, x[i].scales_l, 2 * ib32 + 1);
            const int8_t *v1 = sq__iq4k_values + (x[i].extra >> (2 * ib32) & 1) * 16;
            const int8_t *v2 = sq__iq4k_values + (x[i].extra >> (2 * ib32 + 1) & 1) * 16;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl1 * v1[qs[j] & 0xF];
                y[j + 16] = dl2 * v2[qs[j] >> 4];
            }
        }
    }
}

static float vec_dot_iq4_k(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq4_k *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        const int8_t *q8 = a[i].qs;
        int sum = 0;
        for (int ib32 = 0; ib32 < 8; ++ib32, q8 += 32) {
            const uint8_t *qs = w[i].qs + 16 * ib32;
            const int8_t *v1 = sq__iq4k_values + (w[i].extra >> (2 * ib32) & 1) * 16;
            const int8_t *v2 = sq__iq4k_values + (w[i].extra >> (2 * ib32 + 1) & 1) * 16;
            int s1 = 0, s2 = 0;
            for (int j = 0; j < 16; ++j) {
                s1 += q8[j] * v1[qs[j] & 0xF];
                s2 += q8[j + 16] * v2[qs[j] >> 4];
            }
            sum += iq45_k_scale(w[i].scales_h, w[i].scales_l, 2 * ib32) * s1 +
                   iq45_k_scale(w[i].scales_h, w[i].scales_l, 2 * ib32 + 1) * s2;
        }
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * sum;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * IQ5_K and IQ6_K (the same quantizer on 5- and 6-bit tables)
 * ------------------------------------------------------------------------ */

static const sq__ik_search iq5k_search = {sq__iq5nl_values, 32, 5, 1, 0x1p-149f, false};
static const sq__ik_search iq6k_search = {sq__iq6nl_values, 64, 5, 1, 0x1p-149f, false};

/* The first pass of IQ5_K / IQ6_K: per sub-block the shared search (5 trials
 * either side) and, for a non-zero scale, a refit on the chosen table.
 * Returns the signed largest scale; sets scales, *extra. */
static float iq56_k_scales(const sq__ik_search *s, const float *xbl, const float *qwl, float sigma2, float *scales,
                           uint16_t *extra)
{
    float w[16], max_scale = 0, max_abs = 0;
    *extra = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        bool shifted, skipped;
        float d = sq__ik_block_search(s, xb, w, 16, &shifted, &skipped);
        if (skipped) {
            scales[ib] = 0;
            continue;
        }
        if (d) d = sq__ik_refit(s, shifted, xb, w, 16, d);
        scales[ib] = d;
        if (shifted) *extra |= (uint16_t)(1 << ib);
        if (fabsf(d) > max_abs) {
            max_abs = fabsf(d);
            max_scale = d;
        }
    }
    return max_scale;
}

/* Second pass of IQ5_K / IQ6_K for sub-block ib with integer scale ls: the
 * indices nearest to x/(d*ls), into idx[16], and the fit sums. */
static void iq56_k_indices(const sq__ik_search *s, const float *xb, const float *w, float dl, int ls, bool shifted,
                           int *idx, float *sumqx, float *sumq2)
{
    const int8_t *bv = s->values + s->nlev * shifted;
    const float idl = 1 / dl;
    for (int j = 0; j < 16; ++j) {
        idx[j] = sq__ik_nearest(bv, s->nlev, idl * xb[j]);
        const float q = bv[idx[j]] * ls;
        *sumqx = fmaf(w[j] * q, xb[j], *sumqx);
        *sumq2 = fmaf(w[j] * q, q, *sumq2);
    }
}

/* IQ5_K: as IQ4_K's shape with 5-bit indices; 6-bit scales against
 * d = max_scale/-32, the super-scale refit by least squares. */
static void quantize_iq5_k_block(const float *xbl, const float *qwl, sq__block_iq5_k *y)
{
    float scales[16], w[16];
    int idx[16];
    memset(y, 0, sizeof *y);
    const float sigma2 = 2 * sq__ik_sumx2(xbl) / 256;
    uint16_t extra;
    const float max_scale = iq56_k_scales(&iq5k_search, xbl, qwl, sigma2, scales, &extra);
    if (!max_scale) return;
    const float d = -max_scale / 32;
    y->d = sq_f32_to_fp16(d);
    y->extra = extra;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const int ls = imax(-32, imin(31, sq__ik_round_prod(id, scales[ib])));
        const int uls = ls + 32;
        y->scales_l[ib / 2] |= (uint8_t)((uls & 0xF) << 4 * (ib % 2));
        y->scales_h[ib / 4] |= (uint8_t)((uls >> 4) << 2 * (ib % 4));
        const float dl = d * ls;
        if (!dl) continue;
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        iq56_k_indices(&iq5k_search, xb, w, dl, ls, extra >> ib & 1, idx, &sumqx, &sumq2);
        const int ib32 = ib / 2, off = 16 * (ib % 2);
        uint8_t *qs = y->qs + 32 * (ib32 / 2) + off, *qh = y->qh + off;
        for (int j = 0; j < 16; ++j) {
            qs[j] |= (uint8_t)((idx[j] & 0xF) << 4 * (ib32 % 2));
            qh[j] |= (uint8_t)((idx[j] >> 4) << ib32);
        }
    }
    if (sumq2 > 0) y->d = sq_f32_to_fp16(sumqx / sumq2);
}

static void quantize_iq5_k(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq5_k *y = vy;
    for (int64_t ibl = 0; ibl < n / 256; ++ibl)
        quantize_iq5_k_block(x + 256 * ibl, imatrix ? imatrix + 256 * ibl : NULL, &y[ibl]);
}

/* Index (0..31) of value j of 16-value sub-block ib of an IQ5_K block. */
static inline int iq5_k_index(const sq__block_iq5_k *b, int ib, int j)
{
    const int ib32 = ib / 2, off = 16 * (ib % 2);
    return ((b->qs[32 * (ib32 / 2) + off + j] >> 4 * (ib32 % 2)) & 0xF) | ((b->qh[off + j] >> ib32 & 1) << 4);
}

static void dequantize_iq5_k(const void *vx, float *y, int64_t n)
{
    const sq__block_iq5_k *x = vx;
    for (int64_t i = 0; i < n / 256; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int ib = 0; ib < 16; ++ib, y += 16) {
            const float dl = d * iq45_k_scale(x[i].scales_h, x[i].scales_l, ib);
            const int8_t *v = sq__iq5nl_values + (x[i].extra >> ib & 1) * 32;
            for (int j = 0; j < 16; ++j) y[j] = dl * v[iq5_k_index(&x[i], ib, j)];
        }
    }
}

static float vec_dot_iq5_k(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq5_k *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        const int8_t *q8 = a[i].qs;
        int sum = 0;
        for (int ib = 0; ib < 16; ++ib, q8 += 16) {
            const int8_t *v = sq__iq5nl_values + (w[i].extra >> ib & 1) * 32;
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q8[j] * v[iq5_k_index(&w[i], ib, j)];
            sum += iq45_k_scale(w[i].scales_h, w[i].scales_l, ib) * s;
        }
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * sum;
    }
    return sumf;
}

/* IQ6_K: the IQ5_K quantizer on the 6-bit table with int8 scales against
 * d = max_scale/-127. */
static void quantize_iq6_k_block(const float *xbl, const float *qwl, sq__block_iq6_k *y)
{
    float scales[16], w[16];
    int idx[16];
    memset(y, 0, sizeof *y);
    const float sigma2 = 2 * sq__ik_sumx2(xbl) / 256;
    uint16_t extra;
    const float max_scale = iq56_k_scales(&iq6k_search, xbl, qwl, sigma2, scales, &extra);
    if (!max_scale) return;
    const float d = -max_scale / 127;
    y->d = sq_f32_to_fp16(d);
    y->extra = extra;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const int ls = imax(-127, imin(127, sq__ik_round_prod(id, scales[ib])));
        y->scales[ib] = (int8_t)ls;
        const float dl = d * ls;
        if (!dl) continue;
        const float *xb = xbl + 16 * ib;
        sub_weights(qwl ? qwl + 16 * ib : NULL, xb, sigma2, 0.25f, w);
        iq56_k_indices(&iq6k_search, xb, w, dl, ls, extra >> ib & 1, idx, &sumqx, &sumq2);
        const int ib32 = ib / 2, off = 16 * (ib % 2);
        uint8_t *qs = y->qs + 32 * (ib32 / 2) + off, *qh = y->qh + 32 * (ib32 / 4) + off;
        for (int j = 0; j < 16; ++j) {
            qs[j] |= (uint8_t)((idx[j] & 0xF) << 4 * (ib32 % 2));
            qh[j] |= (uint8_t)((idx[j] >> 4) << 2 * (ib32 % 4));
        }
    }
    if (sumq2 > 0) y->d = sq_f32_to_fp16(sumqx / sumq2);
}

static void quantize_iq6_k(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq6_k *y = vy;
    for (int64_t ibl = 0; ibl < n / 256; ++ibl)
        quantize_iq6_k_block(x + 256 * ibl, imatrix ? imatrix + 256 * ibl : NULL, &y[ibl]);
}

/* Index (0..63) of value j of 16-value sub-block ib of an IQ6_K block. */
static inline int iq6_k_index(const sq__block_iq6_k *b, int ib, int j)
{
    const int ib32 = ib / 2, off = 16 * (ib % 2);
    return ((b->qs[32 * (ib32 / 2) + off + j] >> 4 * (ib32 % 2)) & 0xF) |
           (((b->qh[32 * (ib32 / 4) + off + j] >> 2 * (ib32 % 4)) & 3) << 4);
}

/* The decoded IQ6_K level of index q (shifted: + 1), ik's cubic. */
static inline float iq6_k_level(int q, bool shifted)
{
    const float f = (float)q;
    return fmaf(f, fmaf(f, fmaf(f, SQ__IQ6K_D, -SQ__IQ6K_C), SQ__IQ6K_B), SQ__IQ6K_A) + (shifted ? 1.f : 0.f);
}

static void dequantize_iq6_k(const void *vx, float *y, int64_t n)
{
    const sq__block_iq6_k *x = vx;
    for (int64_t i = 0; i < n / 256; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int ib = 0; ib < 16; ++ib, y += 16) {
            const float dl = d * x[i].scales[ib];
            const bool shifted = x[i].extra >> ib & 1;
            for (int j = 0; j < 16; ++j) y[j] = dl * iq6_k_level(iq6_k_index(&x[i], ib, j), shifted);
        }
    }
}

/* IQ6_K's levels are not integers, so its dot product sums in float: per
 * sub-block sum(level * q8), times the sub-block scale. */
static float vec_dot_iq6_k(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq6_k *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        const int8_t *q8 = a[i].qs;
        float sum = 0;
        for (int ib = 0; ib < 16; ++ib, q8 += 16) {
            const bool shifted = w[i].extra >> ib & 1;
            float s = 0;
            for (int j = 0; j < 16; ++j) s += q8[j] * iq6_k_level(iq6_k_index(&w[i], ib, j), shifted);
            sum += w[i].scales[ib] * s;
        }
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * sum;
    }
    return sumf;
}

void sq__register_ik_kquants(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_Q6_0] = (sq__kernels){.quantize = quantize_q6_0, .dequantize = dequantize_q6_0, .vec_dot = vec_dot_q6_0};
    table[SQ_TYPE_IQ2_K] = (sq__kernels){.quantize = quantize_iq2_k, .dequantize = dequantize_iq2_k, .vec_dot = vec_dot_iq2_k};
    table[SQ_TYPE_IQ3_K] = (sq__kernels){.quantize = quantize_iq3_k, .dequantize = dequantize_iq3_k, .vec_dot = vec_dot_iq3_k};
    table[SQ_TYPE_IQ4_K] = (sq__kernels){.quantize = quantize_iq4_k, .dequantize = dequantize_iq4_k, .vec_dot = vec_dot_iq4_k};
    table[SQ_TYPE_IQ5_K] = (sq__kernels){.quantize = quantize_iq5_k, .dequantize = dequantize_iq5_k, .vec_dot = vec_dot_iq5_k};
    table[SQ_TYPE_IQ6_K] = (sq__kernels){.quantize = quantize_iq6_k, .dequantize = dequantize_iq6_k, .vec_dot = vec_dot_iq6_k};
}
