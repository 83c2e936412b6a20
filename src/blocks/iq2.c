/*
 * iq2.c — scalar reference kernels of IQ2_XXS (2.06 bpw), IQ2_XS (2.31 bpw)
 * and IQ2_S (2.56 bpw): 256-value super-blocks whose groups of 8 magnitudes
 * are points of a codebook (256, 512, 1024 points over the levels 8, 25, 43),
 * with separate signs and 4-bit sub-block scales. Dotted with Q8_K.
 *
 * Quantizers: ggml 0.25.1's quantize_row_iq2_{xxs,xs,s}_impl (the sub-block
 * search is sq__iq_fit, iq_fit.c). IQ2_XXS and IQ2_XS need importance
 * weights (ggml_quantize_requires_imatrix); IQ2_S weighs by x^2 + sigma2/4
 * without them. Kernels never allocate; the codebook search structures are
 * built once, by the dispatcher's prepare step (sq__iq2_prepare).
 */
#include "iq_common.h"
#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* The three type-specific search settings (ggml's constants). */
static sq__iq_fit_cfg fit_cfg(int type)
{
    switch (type) {
    case SQ_TYPE_IQ2_XXS:
        return (sq__iq_fit_cfg){sq__iq_search_get(SQ__IQ_GRID_2XXS), 32, 3, 6, 0.1f, SQ_GROUP_EPS, true, true,
                                SQ__IQ_REFIT_ALWAYS};
    case SQ_TYPE_IQ2_XS:
        return (sq__iq_fit_cfg){sq__iq_search_get(SQ__IQ_GRID_2XS), 16, 3, 9, 0.1f, SQ_GROUP_EPS, true, false,
                                SQ__IQ_REFIT_OFFGRID};
    default:
        return (sq__iq_fit_cfg){sq__iq_search_get(SQ__IQ_GRID_2S), 16, 3, 9, 0.1f, 1e-8f, true, false,
                                SQ__IQ_REFIT_OFFGRID};
    }
}

/* One sub-block of n values of a super-block: weights, signs (with parity
 * for the 7-bit sign codes), the search; a negative scale is made positive
 * by flipping every sign. Returns false for a zero sub-block (nothing to
 * store); otherwise sets *scale and the grid index of each group of 8. */
static bool fit_sub_block(const sq__iq_fit_cfg *c, const float *xb, const float *qw, float sigma2, float bias,
                          bool parity, uint8_t *signs, int *gidx, float *scale)
{
    float weight[32], waux[32], xval[32];
    int8_t L[32];
    sq__iq_weights(xb, qw, sigma2, bias, c->n, weight, waux);
    sq__iq_signs(xb, weight, c->n, parity, xval, signs);
    if (!sq__iq_fit(c, xval, weight, waux, L, scale)) return false;
    if (*scale < 0) {
        *scale = -*scale;
        for (int k = 0; k < c->n / 8; ++k) signs[k] = parity ? (uint8_t)(~signs[k] & 127) : (uint8_t)~signs[k];
    }
    for (int k = 0; k < c->n / 8; ++k) gidx[k] = sq__iq_grid_index(c->grid, L + 8 * k);
    return true;
}

/* sigma2 of a super-block: Σx²/256, doubled for IQ2_S (ggml's choices). */
static float super_sigma2(const float *xbl, int type)
{
    const float sumx2 = sq__sum_squares(xbl, SQ_QK_K);
    return type == SQ_TYPE_IQ2_S ? 2 * sumx2 / SQ_QK_K : sumx2 / SQ_QK_K;
}

/* IQ2_XXS: sub-blocks of 32; d = max scale / 31 and 4-bit codes. */
static void quantize_iq2_xxs(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq2_xxs *y = vy;
    const sq__iq_fit_cfg c = fit_cfg(SQ_TYPE_IQ2_XXS);
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl) {
        const float *xbl = x + SQ_QK_K * ibl;
        const float sigma2 = super_sigma2(xbl, SQ_TYPE_IQ2_XXS);
        uint32_t q2[16] = {0};
        float scales[8], max_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            uint8_t signs[4];
            int gidx[4];
            scales[ib] = 0;
            if (!fit_sub_block(&c, xbl + 32 * ib, imatrix + SQ_QK_K * ibl + 32 * ib, sigma2, 0, true, signs, gidx,
                               &scales[ib]))
                continue;
            for (int k = 0; k < 4; ++k) {
                q2[2 * ib] |= (uint32_t)gidx[k] << 8 * k;
                q2[2 * ib + 1] |= (uint32_t)signs[k] << 7 * k;
            }
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        y[ibl].d = sq_f32_to_fp16(0.f);
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = sq_f32_to_fp16(d);
        const float id = 1 / d;
        for (int ib = 0; ib < 8; ++ib) q2[2 * ib + 1] |= (uint32_t)sq__iq_scale_code(id, scales[ib], 15) << 28;
        memcpy(y[ibl].qs, q2, sizeof q2);
    }
}

/* IQ2_XS and IQ2_S: sub-blocks of 16 (two groups of 8), 4-bit codes per 16;
 * d = max scale / 31, stored times 0.9875 for IQ2_S. */
static void quantize_iq2_xs_s(const float *x, void *vy, int64_t n, const float *imatrix, int type)
{
    const sq__iq_fit_cfg c = fit_cfg(type);
    const bool is_s = type == SQ_TYPE_IQ2_S;
    const size_t bsz = is_s ? sizeof(sq__block_iq2_s) : sizeof(sq__block_iq2_xs);
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl) {
        const float *xbl = x + SQ_QK_K * ibl;
        const float sigma2 = super_sigma2(xbl, type);
        sq__block_iq2_xs *bx = (sq__block_iq2_xs *)((char *)vy + bsz * ibl);
        sq__block_iq2_s *bs = (sq__block_iq2_s *)((char *)vy + bsz * ibl);
        memset(bx, 0, bsz);
        float scales[16], max_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            uint8_t signs[2];
            int gidx[2];
            scales[ib] = 0;
            const float *qw = imatrix ? imatrix + SQ_QK_K * ibl + 16 * ib : NULL;
            if (!fit_sub_block(&c, xbl + 16 * ib, qw, sigma2, is_s ? 0.25f * sigma2 : 0, !is_s, signs, gidx,
                               &scales[ib]))
                continue;
            for (int k = 0; k < 2; ++k) {
                const int i8 = 2 * ib + k;
                if (is_s) {
                    bs->qs[i8] = (uint8_t)(gidx[k] & 255);
                    bs->qh[i8 / 4] |= (uint8_t)((gidx[k] >> 8) << 2 * (i8 % 4));
                    bs->qs[SQ_QK_K / 8 + i8] = signs[k];
                } else {
                    bx->qs[i8] = (uint16_t)(gidx[k] | (signs[k] << 9));
                }
            }
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        if (!max_scale) {
            if (!is_s) memset(bx->qs, 0, sizeof bx->qs);
            continue;
        }
        const float d = max_scale / 31;
        const float id = 1 / d;
        uint8_t *sc = is_s ? bs->scales : bx->scales;
        if (is_s) bs->d = sq_f32_to_fp16(d * 0.9875f);
        else bx->d = sq_f32_to_fp16(d);
        for (int ib = 0; ib < 16; ++ib) {
            const int l = sq__iq_scale_code(id, scales[ib], 15);
            sc[ib / 2] = ib % 2 == 0 ? (uint8_t)l : (uint8_t)(sc[ib / 2] | (l << 4));
        }
    }
}

static void quantize_iq2_xs(const float *x, void *vy, int64_t n, const float *imatrix)
{
    quantize_iq2_xs_s(x, vy, n, imatrix, SQ_TYPE_IQ2_XS);
}

static void quantize_iq2_s(const float *x, void *vy, int64_t n, const float *imatrix)
{
    quantize_iq2_xs_s(x, vy, n, imatrix, SQ_TYPE_IQ2_S);
}

/* ------------------------------------------------------------------------
 * Dequantize and dot: every group of 8 is a grid point (8 magnitudes), 8 sign
 * bits and a sub-block scale code l, scale (2l+1)/8 of d for all three types
 * (ggml writes d*(0.5+l)*0.25, the same product).
 * ------------------------------------------------------------------------ */

/* The grid index and 8 sign bits of group g (0..31) of a block. */
static inline void group_iq2_xxs(const sq__block_iq2_xxs *b, int g, int *gi, uint8_t *sg)
{
    uint32_t aux[2];
    memcpy(aux, b->qs + 4 * (g / 4), sizeof aux);
    *gi = (int)((aux[0] >> 8 * (g % 4)) & 255);
    *sg = sq__ksigns_iq2xs[(aux[1] >> 7 * (g % 4)) & 127];
}

static inline void group_iq2_xs(const sq__block_iq2_xs *b, int g, int *gi, uint8_t *sg)
{
    *gi = b->qs[g] & 511;
    *sg = sq__ksigns_iq2xs[b->qs[g] >> 9];
}

static inline void group_iq2_s(const sq__block_iq2_s *b, int g, int *gi, uint8_t *sg)
{
    *gi = b->qs[g] | ((b->qh[g / 4] << (8 - 2 * (g % 4))) & 0x300);
    *sg = b->qs[SQ_QK_K / 8 + g];
}

/* Scale code of group g: per 32 values (IQ2_XXS) or per 16 (the others). */
static inline int code_iq2_xxs(const sq__block_iq2_xxs *b, int g)
{
    uint32_t a;
    memcpy(&a, b->qs + 4 * (g / 4) + 2, sizeof a);
    return (int)(a >> 28);
}

static inline int code_iq2_xs(const sq__block_iq2_xs *b, int g) { return (b->scales[g / 4] >> 4 * ((g / 2) % 2)) & 15; }
static inline int code_iq2_s(const sq__block_iq2_s *b, int g) { return (b->scales[g / 4] >> 4 * ((g / 2) % 2)) & 15; }

/* y[j] = db * grid[j] * (sign j ? -1 : 1): ggml's expression and order. */
static inline void deq_group(const uint64_t *grid, int gi, uint8_t sg, float db, float *y)
{
    const uint8_t *mag = (const uint8_t *)(grid + gi);
    for (int j = 0; j < 8; ++j) y[j] = db * mag[j] * (sg & (1 << j) ? -1.f : 1.f);
}

/* Σ mag * q8 * sign over one group of 8 (exact in int). */
static inline int dot_group(const uint64_t *grid, int gi, uint8_t sg, const int8_t *q8)
{
    const uint8_t *mag = (const uint8_t *)(grid + gi);
    int s = 0;
    for (int j = 0; j < 8; ++j) s += mag[j] * q8[j] * (sg & (1 << j) ? -1 : 1);
    return s;
}

#define SQ_IQ2_KERNELS(T, GRID)                                                                              \
    static void dequantize_##T(const void *vx, float *y, int64_t n)                                         \
    {                                                                                                       \
        const sq__block_##T *x = vx;                                                                        \
        for (int64_t i = 0; i < n / SQ_QK_K; ++i) {                                                         \
            const float d = sq_fp16_to_f32(x[i].d);                                                         \
            for (int g = 0; g < 32; ++g, y += 8) {                                                          \
                int gi;                                                                                     \
                uint8_t sg;                                                                                 \
                group_##T(&x[i], g, &gi, &sg);                                                              \
                deq_group(GRID, gi, sg, d * (0.5f + code_##T(&x[i], g)) * 0.25f, y);                       \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    /* 0.125 * Σ_blocks d_w*d_x * Σ_groups (2l+1) * Σ mag*q8*sign */                                        \
    static float vec_dot_##T(int64_t n, const void *vw, const void *vx)                                     \
    {                                                                                                       \
        const sq__block_##T *w = vw;                                                                        \
        const sq__block_q8_K *a = vx;                                                                       \
        float sumf = 0;                                                                                     \
        for (int64_t i = 0; i < n / SQ_QK_K; ++i) {                                                         \
            int32_t bsum = 0;                                                                               \
            for (int g = 0; g < 32; ++g) {                                                                  \
                int gi;                                                                                     \
                uint8_t sg;                                                                                 \
                group_##T(&w[i], g, &gi, &sg);                                                              \
                bsum += (2 * code_##T(&w[i], g) + 1) * dot_group(GRID, gi, sg, a[i].qs + 8 * g);            \
            }                                                                                               \
            sumf += sq_fp16_to_f32(w[i].d) * a[i].d * bsum;                                                 \
        }                                                                                                   \
        return 0.125f * sumf;                                                                               \
    }

SQ_IQ2_KERNELS(iq2_xxs, sq__iq2xxs_grid)
SQ_IQ2_KERNELS(iq2_xs, sq__iq2xs_grid)
SQ_IQ2_KERNELS(iq2_s, sq__iq2s_grid)
#undef SQ_IQ2_KERNELS

/* The codebook search structures, before the first quantization. */
static bool prepare_iq2_xxs(void) { return sq__iq_search_get(SQ__IQ_GRID_2XXS) != NULL; }
static bool prepare_iq2_xs(void) { return sq__iq_search_get(SQ__IQ_GRID_2XS) != NULL; }
static bool prepare_iq2_s(void) { return sq__iq_search_get(SQ__IQ_GRID_2S) != NULL; }

void sq__register_iq2(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ2_XXS] =
        (sq__kernels){quantize_iq2_xxs, dequantize_iq2_xxs, vec_dot_iq2_xxs, NULL, prepare_iq2_xxs};
    table[SQ_TYPE_IQ2_XS] =
        (sq__kernels){quantize_iq2_xs, dequantize_iq2_xs, vec_dot_iq2_xs, NULL, prepare_iq2_xs};
    table[SQ_TYPE_IQ2_S] = (sq__kernels){quantize_iq2_s, dequantize_iq2_s, vec_dot_iq2_s, NULL, prepare_iq2_s};
}
