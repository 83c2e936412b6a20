/*
 * sq/matmul.h — a small thread pool and multi-threaded matrix products over
 * rows of any block type (the engine's and the tests' workhorse).
 *
 *   Y[j][r] = dot(W row r, X row j)   for r < rows, j < n
 * W: rows × cols in `type` (row_bytes apart); X: n × cols floats; Y: n × rows floats.
 * Activations are converted once to the type's vec_dot_type, into a caller's
 * work buffer of sq_matmul_work_size() bytes: kernels never allocate.
 */
#ifndef SQ_MATMUL_H
#define SQ_MATMUL_H

#include "sq/base.h"
#include "sq/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_threadpool sq_threadpool;

/* A pool of n_threads workers (the caller's thread counts as one). NULL on failure. */
sq_threadpool *sq_threadpool_create(int n_threads);
/* Stops and frees the pool; NULL is a no-op. */
void sq_threadpool_free(sq_threadpool *tp);
int sq_threadpool_n_threads(const sq_threadpool *tp);
/* Runs fn(ctx, ith, nth) for ith = 0..nth-1 on the pool's threads and waits for all.
 * tp == NULL runs fn(ctx, 0, 1) on the caller. */
void sq_threadpool_run(sq_threadpool *tp, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/* Bytes of work buffer a product with n activation rows of cols needs. */
size_t sq_matmul_work_size(int type, int64_t cols, int64_t n);

/* Y = W X^T as above. Fails (with a message) for an unsupported type or a cols
 * not a multiple of the block size. */
sq_status sq_matmul(sq_threadpool *tp, int type, const void *W, int64_t rows, int64_t cols, size_t row_bytes,
                    const float *X, int64_t n, float *Y, void *work, size_t work_size, sq_error *err);

/* One weight of a shared-input product: Y = W X^T with W rows × cols in type
 * (row_bytes apart); Y is n × rows. */
typedef struct sq_matmul_term {
    int type;
    const void *W;
    int64_t rows;
    size_t row_bytes;
    float *Y;
} sq_matmul_term;

/* count products of the same X (n rows of cols floats), X converted once to
 * their activation type: every term's type must share one vec_dot_type (a
 * message names the first that does not). Results equal count sq_matmul
 * calls; work: the largest sq_matmul_work_size(terms[i].type, cols, n) of
 * the terms (a term with an AMX product needs more than one without). */
sq_status sq_matmul_shared(sq_threadpool *tp, const sq_matmul_term *terms, int count, int64_t cols, const float *X,
                           int64_t n, void *work, size_t work_size, sq_error *err);

/* C[m][j] += sum_k A[m][k] * B[k][j] for m < M, j < N, k < K, all f32 and
 * row-major (lda, ldb, ldc floats apart): the product with a weight's
 * transpose in the backward pass (B = dequantized weight rows). One thread;
 * callers split columns across a pool. sq_sgemm_acc_ref is the scalar
 * specification (each C entry sums its K products in k order); sq_sgemm_acc
 * uses the ISA in effect (same order, fused multiply-adds). */
void sq_sgemm_acc(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                  size_t ldc);
void sq_sgemm_acc_ref(int64_t M, int64_t N, int64_t K, const float *A, size_t lda, const float *B, size_t ldb,
                      float *C, size_t ldc);

#ifdef __cplusplus
}
#endif
#endif /* SQ_MATMUL_H */
