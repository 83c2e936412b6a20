/*
 * sgemm.c — the f32 accumulate product C += A·B with B in row order
 * ("NN"), the kernel of the backward pass's products with a weight's
 * transpose (dX = dY·W: A the output gradients, B a panel of dequantized
 * weight rows). Scalar reference here; AVX2 / AVX-512 tiles in
 * x86/sgemm_avx2.c and x86/sgemm_avx512.c, chosen at run time from the
 * ISA in effect (SQ_FORCE_SCALAR / SQ_ISA apply).
 *
 * Ownership: A, B and C belong to the caller; nothing is allocated.
 */
#include "sq/blocks.h"
#include "sq/matmul.h"

void sq__sgemm_acc_avx2(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                        float *C, size_t ldc);
void sq__sgemm_acc_avx512(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                          float *C, size_t ldc);

/* The specification: for every (m, j), the K products added to C[m][j] one
 * at a time in k order, in float. */
void sq_sgemm_acc_ref(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                      float *C, size_t ldc)
{
    for (int64_t m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        const float *a = A + (size_t)m * lda;
        for (int64_t k = 0; k < K; k++) {
            const float ak = a[k];
            const float *b = B + (size_t)k * ldb;
            for (int64_t j = 0; j < N; j++) c[j] += ak * b[j];
        }
    }
}

/* The ISA's version (same sums in the same k order, with fused multiply-adds). */
void sq_sgemm_acc(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                  size_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
#if defined(__x86_64__)
    const sq_isa isa = sq_blocks_isa();
    if (isa >= SQ_ISA_AVX512) {
        sq__sgemm_acc_avx512(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
    if (isa >= SQ_ISA_AVX2) {
        sq__sgemm_acc_avx2(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    sq_sgemm_acc_ref(M, N, K, A, lda, B, ldb, C, ldc);
}
