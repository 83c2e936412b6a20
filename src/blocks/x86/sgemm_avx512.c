/*
 * sgemm_avx512.c — sq_sgemm_acc with AVX-512: tiles of 6 rows × 64 columns
 * (24 accumulators, 4 B vectors, one broadcast of the 32 registers);
 * columns past N are masked off (sgemm_tile.h has the tile).
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define SG_VEC __m512
#define SG_MASK __mmask16
#define SG_W 16
#define SG_NV 4
#define SG_LOAD(mk, p) _mm512_maskz_loadu_ps((mk), (p))
#define SG_STORE(mk, p, v) _mm512_mask_storeu_ps((p), (mk), (v))
#define SG_SET1(x) _mm512_set1_ps(x)
#define SG_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
/* lanes of a vector whose first column has n columns left (n may be <= 0 or > 16) */
#define SG_MASK_FOR(n) ((n) >= 16 ? (__mmask16)0xFFFF : (n) <= 0 ? (__mmask16)0 : (__mmask16)((1u << (n)) - 1u))

#include "sgemm_tile.h"

void sq__sgemm_acc_avx512(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                          float *C, size_t ldc);

void sq__sgemm_acc_avx512(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                          float *C, size_t ldc)
{
    sg_sgemm(M, N, K, A, lda, B, ldb, C, ldc);
}
