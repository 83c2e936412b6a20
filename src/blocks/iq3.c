/*
 * iq3.c — scalar reference kernels of IQ3_XXS (3.06 bpw) and IQ3_S (3.44
 * bpw): 256-value super-blocks whose groups of 4 magnitudes are points of a
 * codebook (256 / 512 points over 8 levels), signs per 8 values and a 4-bit
 * scale per 32. Dotted with Q8_K.
 *
 * Quantizers: ggml 0.25.1's quantize_row_iq3_xxs_impl and
 * quantize_row_iq3_s_impl (sub-block search: sq__iq_fit, iq_fit.c), with or
 * without importance weights (x^2 without). Kernels never allocate.
 */
#include "iq_common.h"
#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* One 32-value sub-block: weights, signs (7-bit codes with parity for
 * IQ3_XXS, 8 bits for IQ3_S), the search, the sign flip of a negative scale.
 * false: a zero sub-block; otherwise *scale and the 8 grid indices. */
static bool fit_sub_block(const sq__iq_fit_cfg *c, const float *xb, const float *qw, float sigma2, bool parity,
                          uint8_t signs[4], int gidx[8], float *scale)
{
    float weight[32], waux[32], xval[32];
    int8_t L[32];
    sq__iq_weights(xb, qw, sigma2, 0, 32, weight, waux);
    sq__iq_signs(xb, weight, 32, parity, xval, signs);
    if (!sq__iq_fit(c, xval, weight, waux, L, scale)) return false;
    if (*scale < 0) {
        *scale = -*scale;
        for (int k = 0; k < 4; ++k) signs[k] = parity ? (uint8_t)(~signs[k] & 127) : (uint8_t)~signs[k];
    }
    for (int k = 0; k < 8; ++k) gidx[k] = sq__iq_grid_index(c->grid, L + 4 * k);
    return true;
}

/* IQ3_XXS: 4-bit codes against d = max scale / 31, stored times 1.0125. */
static void quantize_iq3_xxs(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq3_xxs *y = vy;
    const sq__iq_fit_cfg c = {sq__iq_search_get(SQ__IQ_GRID_3XXS), 32, 8, 15, 0.2f, 1e-8f, true, false,
                              SQ__IQ_REFIT_OFFGRID};
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl) {
        const float *xbl = x + SQ_QK_K * ibl;
        const float sigma2 = 2 * sq__sum_squares(xbl, SQ_QK_K) / SQ_QK_K;
        uint8_t q3[3 * SQ_QK_K / 8] = {0};
        uint32_t sas[8] = {0}; /* scales and signs, little-endian at q3 + 64 */
        float scales[8], max_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            uint8_t signs[4];
            int gidx[8];
            scales[ib] = 0;
            const float *qw = imatrix ? imatrix + SQ_QK_K * ibl + 32 * ib : NULL;
            if (!fit_sub_block(&c, xbl + 32 * ib, qw, sigma2, true, signs, gidx, &scales[ib])) continue;
            for (int k = 0; k < 8; ++k) q3[8 * ib + k] = (uint8_t)gidx[k];
            sas[ib] = signs[0] | (uint32_t)signs[1] << 7 | (uint32_t)signs[2] << 14 | (uint32_t)signs[3] << 21;
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        y[ibl].d = sq_f32_to_fp16(0.f);
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = sq_f32_to_fp16(d * 1.0125f);
        const float id = 1 / d;
        for (int ib = 0; ib < 8; ++ib) sas[ib] |= (uint32_t)sq__iq_scale_code(id, scales[ib], 15) << 28;
        memcpy(q3 + SQ_QK_K / 4, sas, sizeof sas);
        memcpy(y[ibl].qs, q3, sizeof q3);
    }
}

/* IQ3_S: the block is cleared first; a zero sub-block does not advance the
 * position of the grid bytes and signs that later sub-blocks write (ggml's
 * loop advances them only past a stored sub-block), while their ninth bits
 * stay at their own position. d = max scale / 31, stored times 1.033. */
static void quantize_iq3_s(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq3_s *y = vy;
    const sq__iq_fit_cfg c = {sq__iq_search_get(SQ__IQ_GRID_3S), 32, 8, 9, 0.2f, 0, false, false,
                              SQ__IQ_REFIT_ALL_IF_OFFGRID};
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl) {
        const float *xbl = x + SQ_QK_K * ibl;
        const float sigma2 = 2 * sq__sum_squares(xbl, SQ_QK_K) / SQ_QK_K;
        sq__block_iq3_s *b = &y[ibl];
        memset(b, 0, sizeof *b);
        uint8_t *qs = b->qs, *signs = b->signs;
        float scales[8], max_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            uint8_t sg[4];
            int gidx[8];
            scales[ib] = 0;
            const float *qw = imatrix ? imatrix + SQ_QK_K * ibl + 32 * ib : NULL;
            if (!fit_sub_block(&c, xbl + 32 * ib, qw, sigma2, false, sg, gidx, &scales[ib])) continue;
            for (int k = 0; k < 8; ++k) {
                qs[k] = (uint8_t)(gidx[k] & 255);
                b->qh[ib] |= (uint8_t)((gidx[k] >> 8) << k);
            }
            memcpy(signs, sg, 4);
            qs += 8;
            signs += 4;
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        if (!max_scale) continue;
        const float d = max_scale / 31;
        b->d = sq_f32_to_fp16(d * 1.033f);
        const float id = 1 / d;
        for (int ib = 0; ib < 8; ib += 2)
            b->scales[ib / 2] = (uint8_t)(sq__iq_scale_code(id, scales[ib], 15) |
                                          (sq__iq_scale_code(id, scales[ib + 1], 15) << 4));
    }
}

/* ------------------------------------------------------------------------
 * Dequantize and dot. Group g (0..63) of 4 values: a grid point, sign bits
 * 4(g%2)..4(g%2)+3 of the byte of its 8 values, the scale of its 32.
 * ------------------------------------------------------------------------ */

/* IQ3_XXS: grid index, sign byte and scale code of group g. */
static inline void group_iq3_xxs(const sq__block_iq3_xxs *b, int g, int *gi, uint8_t *sg, int *code)
{
    uint32_t a;
    memcpy(&a, b->qs + SQ_QK_K / 4 + 4 * (g / 8), sizeof a);
    *gi = b->qs[g];
    *sg = sq__ksigns_iq2xs[(a >> 7 * ((g / 2) % 4)) & 127];
    *code = (int)(a >> 28);
}

/* IQ3_S: the same fields. */
static inline void group_iq3_s(const sq__block_iq3_s *b, int g, int *gi, uint8_t *sg, int *code)
{
    *gi = b->qs[g] | (((b->qh[g / 8] >> (g % 8)) & 1) << 8);
    *sg = b->signs[g / 2];
    *code = (b->scales[g / 16] >> 4 * ((g / 8) % 2)) & 15;
}

/* The sub-block factor: (0.5 + l) * 0.5 of d (IQ3_XXS), 1 + 2l times d (IQ3_S),
 * in ggml's operation order. */
static inline float db_iq3_xxs(float d, int code) { return d * (0.5f + code) * 0.5f; }
static inline float db_iq3_s(float d, int code) { return d * (1 + 2 * code); }

#define SQ_IQ3_KERNELS(T, GRID, FACTOR)                                                                     \
    static void dequantize_##T(const void *vx, float *y, int64_t n)                                         \
    {                                                                                                       \
        const sq__block_##T *x = vx;                                                                        \
        for (int64_t i = 0; i < n / SQ_QK_K; ++i) {                                                         \
            const float d = sq_fp16_to_f32(x[i].d);                                                         \
            for (int g = 0; g < 64; ++g, y += 4) {                                                          \
                int gi, code;                                                                               \
                uint8_t sg;                                                                                 \
                group_##T(&x[i], g, &gi, &sg, &code);                                                       \
                const float db = db_##T(d, code);                                                           \
                const uint8_t *mag = (const uint8_t *)(GRID + gi);                                          \
                const int sh = 4 * (g % 2);                                                                 \
                for (int j = 0; j < 4; ++j) y[j] = db * mag[j] * (sg & (1 << (sh + j)) ? -1.f : 1.f);      \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    /* FACTOR * Σ_blocks d_w*d_x * Σ_groups (2l+1) * Σ mag*q8*sign (integer inner sums) */                  \
    static float vec_dot_##T(int64_t n, const void *vw, const void *vx)                                     \
    {                                                                                                       \
        const sq__block_##T *w = vw;                                                                        \
        const sq__block_q8_K *a = vx;                                                                       \
        float sumf = 0;                                                                                     \
        for (int64_t i = 0; i < n / SQ_QK_K; ++i) {                                                         \
            int32_t bsum = 0;                                                                               \
            for (int g = 0; g < 64; ++g) {                                                                  \
                int gi, code;                                                                               \
                uint8_t sg;                                                                                 \
                group_##T(&w[i], g, &gi, &sg, &code);                                                       \
                const uint8_t *mag = (const uint8_t *)(GRID + gi);                                          \
                const int8_t *q8 = a[i].qs + 4 * g;                                                         \
                const int sh = 4 * (g % 2);                                                                 \
                int s = 0;                                                                                  \
                for (int j = 0; j < 4; ++j) s += mag[j] * q8[j] * (sg & (1 << (sh + j)) ? -1 : 1);          \
                bsum += (2 * code + 1) * s;                                                                 \
            }                                                                                               \
            sumf += sq_fp16_to_f32(w[i].d) * a[i].d * bsum;                                                 \
        }                                                                                                   \
        return FACTOR * sumf;                                                                               \
    }

SQ_IQ3_KERNELS(iq3_xxs, sq__iq3xxs_grid, 0.25f)
SQ_IQ3_KERNELS(iq3_s, sq__iq3s_grid, 1.0f)
#undef SQ_IQ3_KERNELS

static bool prepare_iq3_xxs(void) { return sq__iq_search_get(SQ__IQ_GRID_3XXS) != NULL; }
static bool prepare_iq3_s(void) { return sq__iq_search_get(SQ__IQ_GRID_3S) != NULL; }

void sq__register_iq3(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ3_XXS] =
        (sq__kernels){quantize_iq3_xxs, dequantize_iq3_xxs, vec_dot_iq3_xxs, NULL, prepare_iq3_xxs};
    table[SQ_TYPE_IQ3_S] = (sq__kernels){quantize_iq3_s, dequantize_iq3_s, vec_dot_iq3_s, NULL, prepare_iq3_s};
}
