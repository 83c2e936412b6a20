/*
 * simd_f16gemm.h — F16 tile kernel: up to 2 weight rows × 4 activation rows
 * per pass, so every converted vector feeds several FMAs (a plain dot product
 * is bound by loads and conversions).
 */
#ifndef SQ_X86_SIMD_F16GEMM_H
#define SQ_X86_SIMD_F16GEMM_H

#include "simd_common.h"

#ifdef __AVX512F__
#define FV __m512
#define FV_W 16
#define FV_ZERO() _mm512_setzero_ps()
#define FV_LOADH(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define FV_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FV_HSUM(v) _mm512_reduce_add_ps(v)
#else
#define FV __m256
#define FV_W 8
#define FV_ZERO() _mm256_setzero_ps()
#define FV_LOADH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define FV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FV_HSUM(v) hsum_ps(v)
#endif

/* Activation rows per F16 tile: 4 weight rows × 6 activation rows of
 * accumulators, 4 weight vectors and one activation vector fill 29 of the 32
 * AVX-512 registers. */
#define F16_MAXNC 6

/* NR weight rows (ws apart) × NC activation rows (xs apart), n values each;
 * out[c * NR + r]. Each output is its own 16- (8-) lane FMA chain over the
 * values, then one horizontal sum, whatever the tile's shape. */
SQ_INLINE void k_f16(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NR,
                     const int NC)
{
    FV acc[4][F16_MAXNC];
    SQ_UNROLL for (int r = 0; r < NR; r++)
        SQ_UNROLL for (int c = 0; c < NC; c++) acc[r][c] = FV_ZERO();
    int64_t i = 0;
    for (; i + FV_W <= n; i += FV_W) {
        FV wv[4];
        SQ_UNROLL for (int r = 0; r < NR; r++) wv[r] = FV_LOADH((const uint16_t *)((const char *)vw + (size_t)r * ws) + i);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const FV xv = FV_LOADH((const uint16_t *)((const char *)vx + (size_t)c * xs) + i);
            SQ_UNROLL for (int r = 0; r < NR; r++) acc[r][c] = FV_FMA(wv[r], xv, acc[r][c]);
        }
    }
    SQ_UNROLL for (int r = 0; r < NR; r++)
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            float s = FV_HSUM(acc[r][c]);
            const uint16_t *w = (const uint16_t *)((const char *)vw + (size_t)r * ws);
            const uint16_t *x = (const uint16_t *)((const char *)vx + (size_t)c * xs);
            for (int64_t k = i; k < n; k++) s += h2f(w[k]) * h2f(x[k]);
            out[c * NR + r] = s;
        }
}

#define F16_TILE(NR_, NC_)                                                                                   \
    do {                                                                                                     \
        k_f16(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)c * xs, xs, s, NR_, NC_);   \
        for (int cc = 0; cc < NC_; cc++)                                                                     \
            for (int rr = 0; rr < NR_; rr++) {                                                               \
                float *dst = &y[(size_t)(c + cc) * ys + r + rr];                                             \
                *dst = s[cc * NR_ + rr] + (accumulate ? *dst : 0.0f);                                        \
            }                                                                                                \
    } while (0)

static void gemm_f16(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y,
                     size_t ys, bool accumulate)
{
    float s[4 * F16_MAXNC];
    int c = 0;
#ifdef __AVX512F__
    /* 32 vector registers: 4 rows x 6 columns, 10 conversions per 24 FMAs */
    for (; c + 6 <= nc; c += 6) {
        int r = 0;
        for (; r + 4 <= nr; r += 4) F16_TILE(4, 6);
        for (; r + 2 <= nr; r += 2) F16_TILE(2, 6);
        for (; r < nr; r++) F16_TILE(1, 6);
    }
#endif
    for (; c + 4 <= nc; c += 4) {
        int r = 0;
#ifdef __AVX512F__
        for (; r + 4 <= nr; r += 4) F16_TILE(4, 4);
#endif
        for (; r + 2 <= nr; r += 2) F16_TILE(2, 4);
        for (; r < nr; r++) F16_TILE(1, 4);
    }
    for (; c < nc; c++) {
        int r = 0;
        for (; r + 2 <= nr; r += 2) F16_TILE(2, 1);
        for (; r < nr; r++) F16_TILE(1, 1);
    }
}
#undef F16_TILE

/* BF16: NR weight rows × NC activation rows; with AVX512-BF16 each vdpbf16ps
 * takes 32 value pairs, otherwise bf16 is widened to float (a shift) and FMA'd. */
SQ_INLINE void k_bf16(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NR,
                      const int NC)
{
    int64_t i = 0;
#if defined(__AVX512BF16__)
    __m512 acc[4][MAXNC];
    SQ_UNROLL for (int r = 0; r < NR; r++) SQ_UNROLL for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512i wv[4];
        SQ_UNROLL for (int r = 0; r < NR; r++)
            wv[r] = _mm512_loadu_si512((const uint16_t *)((const char *)vw + (size_t)r * ws) + i);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const __m512i xv = _mm512_loadu_si512((const uint16_t *)((const char *)vx + (size_t)c * xs) + i);
            SQ_UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
#define BF_HSUM(v) _mm512_reduce_add_ps(v)
#else
    __m256 acc[2][MAXNC];
    SQ_UNROLL for (int r = 0; r < NR; r++) SQ_UNROLL for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 wv[2];
        SQ_UNROLL for (int r = 0; r < NR; r++) wv[r] = bf16x8((const uint16_t *)((const char *)vw + (size_t)r * ws) + i);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const __m256 xv = bf16x8((const uint16_t *)((const char *)vx + (size_t)c * xs) + i);
            SQ_UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
#define BF_HSUM(v) hsum_ps(v)
#endif
    SQ_UNROLL for (int r = 0; r < NR; r++) SQ_UNROLL for (int c = 0; c < NC; c++) {
        float s = BF_HSUM(acc[r][c]);
        const uint16_t *w = (const uint16_t *)((const char *)vw + (size_t)r * ws);
        const uint16_t *x = (const uint16_t *)((const char *)vx + (size_t)c * xs);
        for (int64_t k = i; k < n; k++) s += sq_bf16_to_f32(w[k]) * sq_bf16_to_f32(x[k]);
        out[c * NR + r] = s;
    }
#undef BF_HSUM
}

#define BF16_TILE(NR_, NC_)                                                                                  \
    do {                                                                                                     \
        k_bf16(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)c * xs, xs, s, NR_, NC_);  \
        for (int cc = 0; cc < NC_; cc++)                                                                     \
            for (int rr = 0; rr < NR_; rr++) {                                                               \
                float *dst = &y[(size_t)(c + cc) * ys + r + rr];                                             \
                *dst = s[cc * NR_ + rr] + (accumulate ? *dst : 0.0f);                                        \
            }                                                                                                \
    } while (0)

static void gemm_bf16(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y,
                      size_t ys, bool accumulate)
{
    float s[4 * MAXNC];
    int c = 0;
    for (; c + 4 <= nc; c += 4) {
        int r = 0;
#if defined(__AVX512BF16__)
        for (; r + 4 <= nr; r += 4) BF16_TILE(4, 4);
#endif
        for (; r + 2 <= nr; r += 2) BF16_TILE(2, 4);
        for (; r < nr; r++) BF16_TILE(1, 4);
    }
    for (; c < nc; c++) {
        int r = 0;
        for (; r + 2 <= nr; r += 2) BF16_TILE(2, 1);
        for (; r < nr; r++) BF16_TILE(1, 1);
    }
}
#undef BF16_TILE

#endif
