/*
 * sq/sqtensor.h — SmarterQuant tensors: segment geometry, packing one mixed
 * row, gather / scatter through a column permutation, mixed-row dequantize,
 * and the mixed-row matrix product (spec sections 4 and 6).
 *
 * The quantizer (writer of the layout) and the engine (reader) both use this
 * one module, so they cannot disagree.
 */
#ifndef SQ_SQTENSOR_H
#define SQ_SQTENSOR_H

#include "sq/base.h"
#include "sq/matmul.h"
#include "sq/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A weight matrix as the engine sees it: plain (one type) or SmarterQuant. */
typedef struct sq_weight {
    const void *data;     /* rows × row_bytes, usually in the read-only map */
    int64_t rows;         /* output dimension */
    int64_t cols;         /* input dimension C */
    size_t row_bytes;
    int type;             /* plain type, or types[3] for a mixed tensor */
    bool mixed;           /* SmarterQuant: per-segment types */
    int types[4];         /* valid when mixed */
    const int32_t *perm;  /* cols entries or NULL (new column j = original perm[j]); not owned */
} sq_weight;

/* Fills a plain weight view. Fails if the type is unknown or cols does not fit its blocks. */
sq_status sq_weight_plain(sq_weight *w, const void *data, int type, int64_t rows, int64_t cols, sq_error *err);
/* Fills a SmarterQuant view (validates types against cols; perm may be NULL). */
sq_status sq_weight_mixed(sq_weight *w, const void *data, const int types[4], const int32_t *perm, int64_t rows,
                          int64_t cols, sq_error *err);

/* (sq_perm_validate, the check of a permutation, is in sq/types.h with the
 * rest of the SmarterQuant geometry: the GGUF reader uses it too.) */

/* x'[j] = x[perm[j]] (gather) and out[perm[j]] = x'[j] (scatter). */
void sq_perm_gather(const int32_t *perm, int64_t C, const float *x, float *out);
void sq_perm_scatter(const int32_t *perm, int64_t C, const float *xp, float *out);

/* Quantizes one already-permuted row of C floats into a mixed row (segment by
 * segment with ggml's quantizer; imatrix_perm is the permuted importance or NULL). */
sq_status sq_pack_row(const int types[4], int64_t C, const float *row_perm, const float *imatrix_perm, void *dst,
                      sq_error *err);

/* Dequantizes row r of w into out (C floats), in the ORIGINAL column order
 * (un-permuted) — the token-embedding path. */
void sq_weight_get_row(const sq_weight *w, int64_t r, float *out);

/* Work buffer bytes for sq_weight_matmul with n activation rows. */
size_t sq_weight_matmul_work_size(const sq_weight *w, int64_t n);

/* Y[j][r] = sum_c W[r][c] X[j][c] for a plain or mixed weight: for a mixed one
 * the activations are gathered once through perm, each segment quantized to
 * its type's vec_dot_type, and the segments' dot products summed. */
sq_status sq_weight_matmul(sq_threadpool *tp, const sq_weight *w, const float *X, int64_t n, float *Y, void *work,
                           size_t work_size, sq_error *err);

/* Weight rows per panel of sq_weight_matmul_t. */
#define SQ_MATMUL_T_PANEL 256

/* Work buffer bytes for sq_weight_matmul_t (one panel of rows as f32). */
size_t sq_weight_matmul_t_work_size(const sq_weight *w);

/* The product with the transpose, for the backward pass:
 *   dX[j][c] (+)= sum_r dY[j][r] W[r][c]   for j < n, c < cols,
 * dY n × rows, dX n × cols (original column order, also for a permuted
 * weight), f32, row-major; with accumulate the sums are added to dX. W is
 * dequantized a panel of rows at a time into work (kernels never allocate).
 * Deterministic whatever the pool's size. Fails only on a small work buffer. */
sq_status sq_weight_matmul_t(sq_threadpool *tp, const sq_weight *w, const float *dY, int64_t n, float *dX,
                             bool accumulate, void *work, size_t work_size, sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_SQTENSOR_H */
