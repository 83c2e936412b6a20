/*
 * sgemm_tile.h — the register tile of sq_sgemm_acc (C += A·B, B in row
 * order), compiled twice: with AVX-512 (16-lane vectors, tiles of 6 rows of
 * C × 64 columns) in sgemm_avx512.c and with AVX2 (8 lanes, 6 × 16) in
 * sgemm_avx2.c. The file including it defines SG_* for its vector width.
 *
 * A tile keeps MR × SG_NV accumulators in registers for the whole K loop:
 * per k it loads SG_NV vectors of B row k, broadcasts A[m][k] for each of
 * the MR rows and adds the products (one fused multiply-add each, in k
 * order, as the scalar reference adds them). Columns past N are masked.
 */
#ifndef SQ_X86_SGEMM_TILE_H
#define SQ_X86_SGEMM_TILE_H

#include <immintrin.h>
#include <stdint.h>

#define SG_INLINE static inline __attribute__((always_inline))
#define SG_UNROLL _Pragma("GCC unroll 8")
#define SG_MR 6

/* One tile: MR rows of C from row 0, SG_NV vectors of columns from column 0,
 * masked by mk[v]. */
SG_INLINE void sg_tile(int64_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C, size_t ldc,
                       const SG_MASK *mk, const int MR)
{
    SG_VEC acc[SG_MR][SG_NV];
    SG_UNROLL for (int m = 0; m < MR; m++)
        SG_UNROLL for (int v = 0; v < SG_NV; v++) acc[m][v] = SG_LOAD(mk[v], C + (size_t)m * ldc + v * SG_W);
    for (int64_t k = 0; k < K; k++) {
        SG_VEC b[SG_NV];
        const float *bk = B + (size_t)k * ldb;
        SG_UNROLL for (int v = 0; v < SG_NV; v++) b[v] = SG_LOAD(mk[v], bk + v * SG_W);
        SG_UNROLL for (int m = 0; m < MR; m++) {
            const SG_VEC a = SG_SET1(A[(size_t)m * lda + (size_t)k]);
            SG_UNROLL for (int v = 0; v < SG_NV; v++) acc[m][v] = SG_FMA(a, b[v], acc[m][v]);
        }
    }
    SG_UNROLL for (int m = 0; m < MR; m++)
        SG_UNROLL for (int v = 0; v < SG_NV; v++) SG_STORE(mk[v], C + (size_t)m * ldc + v * SG_W, acc[m][v]);
}

/* Rows of B copied into a contiguous block per step: a power-of-two row
 * stride (a weight's columns) would map B's rows onto few cache sets. */
#define SG_KC 64

/* Every tile of C: column blocks of SG_NV vectors; for each, B's block is
 * copied SG_KC rows at a time into bp (contiguous, SG_NV * SG_W floats a
 * row, zeros past N) and every row block of SG_MR (the last one shorter)
 * adds its products. Each C entry still sums its K products in k order. */
SG_INLINE void sg_sgemm(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                        float *C, size_t ldc)
{
    _Alignas(64) float bp[SG_KC * SG_NV * SG_W];
    for (int64_t j0 = 0; j0 < N; j0 += SG_NV * SG_W) {
        SG_MASK mk[SG_NV];
        for (int v = 0; v < SG_NV; v++) mk[v] = SG_MASK_FOR(N - j0 - (int64_t)v * SG_W);
        const int64_t nw = N - j0 < SG_NV * SG_W ? N - j0 : SG_NV * SG_W;
        for (int64_t k0 = 0; k0 < K; k0 += SG_KC) {
            const int64_t kc = K - k0 < SG_KC ? K - k0 : SG_KC;
            for (int64_t k = 0; k < kc; k++) {
                const float *src = B + (size_t)(k0 + k) * ldb + (size_t)j0;
                float *dst = bp + k * SG_NV * SG_W;
                for (int64_t j = 0; j < nw; j++) dst[j] = src[j];
            }
            const float *a0 = A + k0;
            int64_t m = 0;
            for (; m + SG_MR <= M; m += SG_MR)
                sg_tile(kc, a0 + (size_t)m * lda, lda, bp, SG_NV * SG_W, C + (size_t)m * ldc + j0, ldc, mk, SG_MR);
            const float *a = a0 + (size_t)m * lda;
            float *c = C + (size_t)m * ldc + j0;
            switch (M - m) {
            case 5: sg_tile(kc, a, lda, bp, SG_NV * SG_W, c, ldc, mk, 5); break;
            case 4: sg_tile(kc, a, lda, bp, SG_NV * SG_W, c, ldc, mk, 4); break;
            case 3: sg_tile(kc, a, lda, bp, SG_NV * SG_W, c, ldc, mk, 3); break;
            case 2: sg_tile(kc, a, lda, bp, SG_NV * SG_W, c, ldc, mk, 2); break;
            case 1: sg_tile(kc, a, lda, bp, SG_NV * SG_W, c, ldc, mk, 1); break;
            default: break;
            }
        }
    }
}

#endif
