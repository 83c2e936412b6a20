/*
 * iq1.c — scalar reference kernels of IQ1_S (1.56 bpw) and IQ1_M (1.75
 * bpw): groups of 8 ternary values (-1, 0, 1) from a 2048-point codebook,
 * shifted by +-1/8 and scaled per 32 (IQ1_S) or 16 (IQ1_M) values. Dotted
 * with Q8_K.
 *
 * Quantizers: ggml 0.25.1's quantize_row_iq1_s_impl / quantize_row_iq1_m_impl.
 * A sub-block's values are sorted once; every split into three runs (levels
 * -1, 0, 1) is scored exactly from prefix sums, with the shift's sign (IQ1_M:
 * per group of 8), and the groups are then moved to codebook points. IQ1_S
 * needs importance weights (ggml_quantize_requires_imatrix); IQ1_M weighs by
 * x^2 without them. Kernels never allocate.
 */
#include <float.h>

#include "iq_common.h"
#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define IQ1_DELTA 0.125f

/* The three shifted levels of each shift sign. */
static const float x_p[3] = {-1 + IQ1_DELTA, IQ1_DELTA, 1 + IQ1_DELTA};
static const float x_m[3] = {-1 - IQ1_DELTA, -IQ1_DELTA, 1 - IQ1_DELTA};

/* idx[0..n) = 0..n-1 ordered by x[idx] ascending, equal values in index
 * order (a stable sort: what glibc's qsort, a merge sort for arrays this
 * small, gives ggml). */
static void sort_index(const float *x, int n, int *idx)
{
    for (int j = 0; j < n; ++j) {
        int k = j;
        while (k > 0 && x[idx[k - 1]] > x[j]) {
            idx[k] = idx[k - 1];
            --k;
        }
        idx[k] = j;
    }
}

/* The 8 values xb (weights w) of an off-grid group moved to their best
 * codebook neighbour under scale and shifted levels xx: least Σ w (scale*q -
 * x)^2, first of equals (ggml's iq1_find_best_neighbour2), from the terms
 * of each coordinate and level. Returns the grid index and writes its levels. */
static int best_neighbour(const sq__iq_search *s, int u, const float *xb, const float *w, float scale,
                          const float *xx, int8_t *L)
{
    const uint16_t *nb = sq__iq_neighbours(s, u);
    float e[8][8], err[2048];
    for (int i = 0; i < 8; ++i)
        for (int l = 0; l < 3; ++l) {
            const float diff = scale * xx[l] - xb[i];
            e[i][l] = w[i] * diff * diff;
        }
    sq__iq_list_errors(s, nb + 1, nb[0], e, err);
    float best = FLT_MAX;
    int gi = nb[1]; /* ggml asserts one d2 < FLT_MAX; without one (NaN input) keep the first */
    for (int j = 0; j < nb[0]; ++j)
        if (err[j] < best) {
            best = err[j];
            gi = nb[1 + j];
        }
    memcpy(L, s->level + 8 * gi, 8);
    return gi;
}

/* Grid indices of the n/8 groups of levels L, moving off-grid groups to a
 * neighbour (shifted levels xs[k] for group k). Returns whether all were on
 * the grid. */
static bool groups_to_grid(const sq__iq_search *s, int n, const float *xb, const float *w, float scale,
                           const float *const *xs, int8_t *L, uint16_t *index)
{
    bool all_on = true;
    for (int k = 0; k < n / 8; ++k) {
        int u = 0;
        for (int j = 0; j < 8; ++j) u |= L[8 * k + j] << 2 * j;
        int gi = s->map[u];
        if (gi < 0) {
            all_on = false;
            gi = best_neighbour(s, u, xb + 8 * k, w + 8 * k, scale, xs[k], L + 8 * k);
        }
        index[k] = (uint16_t)gi;
    }
    return all_on;
}

/* Least-squares scale of the groups' grid points (shifted levels xs[k]),
 * kept only when both sums are positive (ggml's refit after a neighbour move). */
static float refit_scale(const sq__iq_search *s, int n, const float *xb, const float *w, const float *const *xs,
                         const uint16_t *index, float scale)
{
    float sumqx = 0, sumq2 = 0;
    for (int k = 0; k < n / 8; ++k) {
        const int8_t *lv = s->level + 8 * index[k];
        for (int j = 0; j < 8; ++j) {
            const float q = xs[k][lv[j]];
            sumqx += w[8 * k + j] * q * xb[8 * k + j];
            sumq2 += w[8 * k + j] * q * q;
        }
    }
    return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

/* Levels of a split of the sorted order idx: the first i1 values -1 (level 0),
 * the next up to i2 0, the rest 1; a negative scale mirrors them. */
static void split_levels(const int *idx, int n, int i1, int i2, int8_t *L)
{
    for (int j = 0; j < n; ++j) L[idx[j]] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
}

/* ------------------------------------------------------------------------
 * IQ1_S
 * ------------------------------------------------------------------------ */

/* The best split of a 32-value sub-block and shift sign: scans every (i1, i2)
 * with the prefix sums of w*x and w over the sorted values, for both shifts.
 * Returns the shift (+1 / -1; 0 when no split scored) and sets the scale. */
static int iq1s_best_split(const float *xb, const float *w, const int *idx, float max, int *b1, int *b2,
                           float *scale)
{
    float sumx[33], sumw[33];
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < 32; ++j) {
        const int i = idx[j];
        sumx[j + 1] = sumx[j] + w[i] * xb[i];
        sumw[j + 1] = sumw[j] + w[i];
    }
    float best_score = -FLT_MAX;
    int shift = 0;
    *scale = max;
    for (int i1 = 0; i1 <= 32; ++i1)
        for (int i2 = i1; i2 <= 32; ++i2)
            for (int sgn = 0; sgn < 2; ++sgn) {
                const float *xv = sgn ? x_m : x_p;
                const float sumqx = (sumx[i1] - sumx[0]) * xv[0] + (sumx[i2] - sumx[i1]) * xv[1] +
                                    (sumx[32] - sumx[i2]) * xv[2];
                const float sumq2 = (sumw[i1] - sumw[0]) * xv[0] * xv[0] + (sumw[i2] - sumw[i1]) * xv[1] * xv[1] +
                                    (sumw[32] - sumw[i2]) * xv[2] * xv[2];
                if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
                    *scale = sumqx / sumq2;
                    best_score = *scale * sumqx;
                    *b1 = i1, *b2 = i2, shift = sgn ? -1 : 1;
                }
            }
    return shift;
}

/* One IQ1_S sub-block: false for a zero one; otherwise its scale, shift and
 * 4 grid indices. */
static bool iq1s_sub_block(const sq__iq_search *s, const float *xb, const float *w, float *scale, int *shift,
                           uint16_t index[4])
{
    float max = fabsf(xb[0]);
    for (int i = 1; i < 32; ++i) max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
    if (max < 1e-12f) return false;
    int idx[32], i1 = -1, i2 = -1;
    int8_t L[32];
    sort_index(xb, 32, idx);
    *shift = iq1s_best_split(xb, w, idx, max, &i1, &i2, scale);
    if (*shift == 0) return false;
    split_levels(idx, 32, i1, i2, L);
    if (*scale < 0) {
        for (int j = 0; j < 32; ++j) L[j] = (int8_t)(2 - L[j]);
        *scale = -*scale;
        *shift = -*shift;
    }
    const float *xx = *shift == 1 ? x_p : x_m;
    const float *xs[4] = {xx, xx, xx, xx};
    if (!groups_to_grid(s, 32, xb, w, *scale, xs, L, index)) *scale = refit_scale(s, 32, xb, w, xs, index, *scale);
    return true;
}

static void quantize_iq1_s(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq1_s *y = vy;
    const sq__iq_search *s = sq__iq_search_get(SQ__IQ_GRID_1S);
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl) {
        const float *xbl = x + SQ_QK_K * ibl;
        sq__block_iq1_s *b = &y[ibl];
        memset(b, 0, sizeof *b);
        const float sigma2 = 2 * sq__sum_squares(xbl, SQ_QK_K) / SQ_QK_K;
        float scales[8], max_scale = 0;
        int shifts[8];
        for (int ib = 0; ib < 8; ++ib) {
            float w[32];
            uint16_t index[4];
            const float *xb = xbl + 32 * ib, *qw = imatrix + SQ_QK_K * ibl + 32 * ib;
            for (int i = 0; i < 32; ++i) w[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
            if (!iq1s_sub_block(s, xb, w, &scales[ib], &shifts[ib], index)) {
                scales[ib] = 0, shifts[ib] = 1;
                continue;
            }
            uint16_t h = 0;
            for (int k = 0; k < 4; ++k) {
                b->qs[4 * ib + k] = (uint8_t)(index[k] & 255);
                h |= (uint16_t)((index[k] >> 8) << 3 * k);
            }
            b->qh[ib] = h;
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        if (!max_scale) continue;
        const float d = max_scale / 15;
        b->d = sq_f32_to_fp16(d * 1.125f);
        const float id = 1 / d;
        for (int ib = 0; ib < 8; ++ib) {
            int l = sq__iq_scale_code(id, scales[ib], 7);
            if (shifts[ib] == -1) l |= 8;
            b->qh[ib] |= (uint16_t)(l << 12);
        }
    }
}

/* ------------------------------------------------------------------------
 * IQ1_M
 * ------------------------------------------------------------------------ */

/* The shifted levels of group k (0 or 1) of a 16-value sub-block under shift
 * code sk: 0 (+,+), 1 (+,-), 2 (-,+), 3 (-,-). */
static const float *iq1m_levels(int sk, int k) { return (k == 0 ? sk < 2 : sk % 2 == 0) ? x_p : x_m; }

/* The best split of a 16-value sub-block and the shift code of its two
 * groups: the prefix sums are kept per half, and since both level sets are
 * evenly spaced by 1, a split's sums follow from the totals and the prefix
 * sums at i1 and i2 (ggml 0.25.1's formulation, same roundings). Returns the
 * code (-1 when no split scored) and sets the scale. */
static int iq1m_best_split(const float *xb, const float *w, const int *idx, float max, int *b1, int *b2,
                           float *scale)
{
    float px[2][17], pw[2][17];
    px[0][0] = px[1][0] = pw[0][0] = pw[1][0] = 0;
    for (int j = 0; j < 16; ++j) {
        const int i = idx[j], h = i < 8 ? 0 : 1;
        px[h][j + 1] = px[h][j] + w[i] * xb[i];
        px[1 - h][j + 1] = px[1 - h][j];
        pw[h][j + 1] = pw[h][j] + w[i];
        pw[1 - h][j + 1] = pw[1 - h][j];
    }
    const float txs[2] = {px[0][16], px[1][16]}, tws[2] = {pw[0][16], pw[1][16]};
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1], cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1], cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    float best_score = -FLT_MAX;
    int best_k = -1;
    *scale = max;
    for (int i1 = 0; i1 <= 16; ++i1)
        for (int i2 = i1; i2 <= 16; ++i2) {
            float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
            for (int h = 0; h < 2; ++h) {
                const float sx = px[h][i1] + px[h][i2];
                qx_p[h] = txs[h] * p2 - sx;
                qx_m[h] = txs[h] * m2 - sx;
                q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
            }
            const float sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
            const float sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
            for (int k = 0; k < 4; ++k)
                if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
                    *scale = sumqx[k] / sumq2[k];
                    best_score = *scale * sumqx[k];
                    *b1 = i1, *b2 = i2, best_k = k;
                }
        }
    return best_k;
}

/* One IQ1_M sub-block of 16: false for a zero one; otherwise its scale, shift
 * code and 2 grid indices. */
static bool iq1m_sub_block(const sq__iq_search *s, const float *xb, const float *w, float *scale, int *shift,
                           uint16_t index[2])
{
    float max = fabsf(xb[0]);
    for (int i = 1; i < 16; ++i) max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
    if (max < 1e-7f) return false;
    int idx[16], i1 = -1, i2 = -1;
    int8_t L[16];
    sort_index(xb, 16, idx);
    *shift = iq1m_best_split(xb, w, idx, max, &i1, &i2, scale);
    if (*shift < 0) return false;
    split_levels(idx, 16, i1, i2, L);
    if (*scale < 0) {
        for (int j = 0; j < 16; ++j) L[j] = (int8_t)(2 - L[j]);
        *scale = -*scale;
        *shift = 3 - *shift;
    }
    const float *xs[2] = {iq1m_levels(*shift, 0), iq1m_levels(*shift, 1)};
    if (!groups_to_grid(s, 16, xb, w, *scale, xs, L, index)) *scale = refit_scale(s, 16, xb, w, xs, index, *scale);
    return true;
}

/* IQ1_M weights of a 16-value sub-block: qw*sqrt(sigma2 + x^2), or x^2. */
static void iq1m_weights(const float *xb, const float *qw, float sigma2, float *w)
{
    for (int i = 0; i < 16; ++i) w[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
}

/* The super-block scale of IQ1_M: with the 3-bit codes l fixed, the weighted
 * least-squares d over all 256 values (the stored grid points, shifts and
 * (2l+1)); d = max scale / 15 when that is undefined. */
static float iq1m_super_scale(const sq__iq_search *s, const sq__block_iq1_m *b, const float *xbl, const float *qw,
                              float sigma2, const int *codes, const int *shifts, float d)
{
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 16; ++ib) {
        float w[16];
        const float *xb = xbl + 16 * ib;
        iq1m_weights(xb, qw ? qw + 16 * ib : NULL, sigma2, w);
        for (int k = 0; k < 2; ++k) {
            const float *xx = iq1m_levels(shifts[ib], k);
            const int gi = b->qs[2 * ib + k] + ((b->qh[ib] << (8 - 4 * k)) & 0x700);
            const int8_t *lv = s->level + 8 * gi;
            for (int j = 0; j < 8; ++j) {
                const float q = xx[lv[j]] * (2 * codes[ib] + 1);
                sumqx += w[8 * k + j] * q * xb[8 * k + j];
                sumq2 += w[8 * k + j] * q * q;
            }
        }
    }
    return sumq2 > 0 ? sumqx / sumq2 : d;
}

/* Stores the 3-bit codes (bits 0-11 of the four scale words), the shift bits
 * (qh) and the fp16 super scale (bits 12-15 of the words, low nibble first). */
static void iq1m_pack_scales(sq__block_iq1_m *b, const int *codes, const int *shifts, float d)
{
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    uint16_t sc[4] = {0};
    for (int ib = 0; ib < 16; ++ib) {
        sc[ib / 4] |= (uint16_t)(codes[ib] << 3 * (ib % 4));
        b->qh[ib] |= masks[shifts[ib]];
    }
    const uint16_t h = sq_f32_to_fp16(d * 1.1125f);
    sc[0] |= (uint16_t)((h & 0x000f) << 12);
    sc[1] |= (uint16_t)((h & 0x00f0) << 8);
    sc[2] |= (uint16_t)((h & 0x0f00) << 4);
    sc[3] |= (uint16_t)(h & 0xf000);
    memcpy(b->scales, sc, sizeof sc);
}

static void quantize_iq1_m(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq1_m *y = vy;
    const sq__iq_search *s = sq__iq_search_get(SQ__IQ_GRID_1S);
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl) {
        const float *xbl = x + SQ_QK_K * ibl;
        const float *qwl = imatrix ? imatrix + SQ_QK_K * ibl : NULL;
        sq__block_iq1_m *b = &y[ibl];
        memset(b, 0, sizeof *b);
        const float sigma2 = 2 * sq__sum_squares(xbl, SQ_QK_K) / SQ_QK_K;
        float scales[16], max_scale = 0;
        int shifts[16];
        for (int ib = 0; ib < 16; ++ib) {
            float w[16];
            uint16_t index[2];
            iq1m_weights(xbl + 16 * ib, qwl ? qwl + 16 * ib : NULL, sigma2, w);
            if (!iq1m_sub_block(s, xbl + 16 * ib, w, &scales[ib], &shifts[ib], index)) {
                scales[ib] = 0, shifts[ib] = 0;
                continue;
            }
            b->qs[2 * ib] = (uint8_t)(index[0] & 255);
            b->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
            b->qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        if (!max_scale) continue;
        const float d = max_scale / 15;
        const float id = 1 / d;
        int codes[16];
        for (int ib = 0; ib < 16; ++ib) codes[ib] = sq__iq_scale_code(id, scales[ib], 7);
        /* (ggml adds the shift bits to qh first; the pass masks them off) */
        const float dls = iq1m_super_scale(s, b, xbl, qwl, sigma2, codes, shifts, d);
        iq1m_pack_scales(b, codes, shifts, dls);
    }
}

/* ------------------------------------------------------------------------
 * Dequantize and dot: value = dl * (grid + shift), shift = +-1/8; the dot
 * takes the shift through the Q8_K group sums (bsums) of 16 values.
 * ------------------------------------------------------------------------ */

/* IQ1_S group g (0..31): grid index; its sub-block's scale code and shift sign. */
static inline int iq1s_index(const sq__block_iq1_s *b, int g)
{
    return b->qs[g] | (((b->qh[g / 4] >> 3 * (g % 4)) & 7) << 8);
}

static void dequantize_iq1_s(const void *vx, float *y, int64_t n)
{
    const sq__block_iq1_s *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int g = 0; g < 32; ++g, y += 8) {
            const uint16_t qh = x[i].qh[g / 4];
            const float dl = d * (2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -IQ1_DELTA : IQ1_DELTA;
            const int8_t *grid = (const int8_t *)(sq__iq1s_grid + iq1s_index(&x[i], g));
            for (int j = 0; j < 8; ++j) y[j] = dl * (grid[j] + delta);
        }
    }
}

/* d_w*d_x * (Σ ls * Σ grid*q8 + 1/8 * Σ ls * sign * Σ q8), integer sums. */
static float vec_dot_iq1_s(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq1_s *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        int sumi = 0, sumi1 = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const uint16_t qh = w[i].qh[ib];
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            const int delta = qh & 0x8000 ? -1 : 1;
            int lsum = 0;
            for (int g = 4 * ib; g < 4 * ib + 4; ++g) {
                const int8_t *grid = (const int8_t *)(sq__iq1s_grid + iq1s_index(&w[i], g));
                for (int j = 0; j < 8; ++j) lsum += a[i].qs[8 * g + j] * grid[j];
            }
            sumi += ls * lsum;
            sumi1 += ls * delta * (a[i].bsums[2 * ib] + a[i].bsums[2 * ib + 1]);
        }
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * (sumi + IQ1_DELTA * sumi1);
    }
    return sumf;
}

/* IQ1_M: the fp16 super scale from the top nibbles of the four scale words. */
static inline float iq1m_d(const sq__block_iq1_m *b)
{
    uint16_t sc[4];
    memcpy(sc, b->scales, sizeof sc);
    return sq_fp16_to_f32((sq_fp16)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                    (sc[3] & 0xf000)));
}

/* IQ1_M 16-value sub-block h (0..15): its 3-bit scale code. */
static inline int iq1m_code(const sq__block_iq1_m *b, int h)
{
    uint16_t w;
    memcpy(&w, b->scales + 2 * (h / 4), sizeof w);
    return (w >> 3 * (h % 4)) & 7;
}

/* IQ1_M group g (0..31): grid index and whether its shift is negative. */
static inline int iq1m_index(const sq__block_iq1_m *b, int g, bool *neg)
{
    const int qh = b->qh[g / 2] >> 4 * (g % 2);
    *neg = qh & 8;
    return b->qs[g] | ((qh & 7) << 8);
}

static void dequantize_iq1_m(const void *vx, float *y, int64_t n)
{
    const sq__block_iq1_m *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const float d = iq1m_d(&x[i]);
        for (int g = 0; g < 32; ++g, y += 8) {
            bool neg;
            const int8_t *grid = (const int8_t *)(sq__iq1s_grid + iq1m_index(&x[i], g, &neg));
            const float dl = d * (2 * iq1m_code(&x[i], g / 2) + 1);
            const float delta = neg ? -IQ1_DELTA : IQ1_DELTA;
            for (int j = 0; j < 8; ++j) y[j] = dl * (grid[j] + delta);
        }
    }
}

/* d * d_x * (Σ ls * Σ grid*q8 + 1/8 * Σ ls * sign * Σ q8), integer sums. */
static float vec_dot_iq1_m(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq1_m *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        int sumi1 = 0, sumi2 = 0;
        for (int g = 0; g < 32; ++g) {
            bool neg;
            const int8_t *grid = (const int8_t *)(sq__iq1s_grid + iq1m_index(&w[i], g, &neg));
            const int ls = 2 * iq1m_code(&w[i], g / 2) + 1;
            int lsum1 = 0, lsum2 = 0;
            for (int j = 0; j < 8; ++j) {
                lsum1 += a[i].qs[8 * g + j] * grid[j];
                lsum2 += a[i].qs[8 * g + j];
            }
            sumi1 += ls * lsum1;
            sumi2 += ls * (neg ? -lsum2 : lsum2);
        }
        sumf += iq1m_d(&w[i]) * a[i].d * (sumi1 + IQ1_DELTA * sumi2);
    }
    return sumf;
}

static bool prepare_iq1(void) { return sq__iq_search_get(SQ__IQ_GRID_1S) != NULL; }

void sq__register_iq1(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ1_S] = (sq__kernels){quantize_iq1_s, dequantize_iq1_s, vec_dot_iq1_s, NULL, prepare_iq1};
    table[SQ_TYPE_IQ1_M] = (sq__kernels){quantize_iq1_m, dequantize_iq1_m, vec_dot_iq1_m, NULL, prepare_iq1};
}
