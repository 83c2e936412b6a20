/*
 * sgemm_avx2.c — sq_sgemm_acc with AVX2 + FMA: tiles of 6 rows × 16 columns
 * (12 accumulators, 2 B vectors, one broadcast of the 16 registers);
 * columns past N are masked with vmaskmov (sgemm_tile.h has the tile).
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* the lane mask of a vector whose first column has n columns left */
static inline __m256i sg_mask_avx2(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int k = n >= 8 ? 8 : n <= 0 ? 0 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), idx);
}

#define SG_VEC __m256
#define SG_MASK __m256i
#define SG_W 8
#define SG_NV 2
#define SG_LOAD(mk, p) _mm256_maskload_ps((p), (mk))
#define SG_STORE(mk, p, v) _mm256_maskstore_ps((p), (mk), (v))
#define SG_SET1(x) _mm256_set1_ps(x)
#define SG_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define SG_MASK_FOR(n) sg_mask_avx2(n)

#include "sgemm_tile.h"

void sq__sgemm_acc_avx2(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                        float *C, size_t ldc);

void sq__sgemm_acc_avx2(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                        float *C, size_t ldc)
{
    sg_sgemm(M, N, K, A, lda, B, ldb, C, ldc);
}
