/*
 * src/blocks/gemm.h — the private multi-row / multi-column dot-product
 * interface behind sq_matmul (and reusable by the SmarterQuant mixed-row
 * product in src/sqtensor/).
 *
 * A tile kernel computes a small block of dot products at once, sharing the
 * unpacking of each weight block across several activation columns:
 *
 *   y[c * y_stride + r] (+)= dot(n values of W row r, activation row c)
 *   for r < nr, c < nc
 *
 * W row r starts at (const char *)w + r * w_stride (weights in `type`),
 * activation row c at (const char *)x + c * x_stride, already converted to
 * the type's vec_dot_type. n is a multiple of the type's block size; it may be
 * a single 256-value SmarterQuant segment. With accumulate the results are
 * added to y instead of stored. Kernels never allocate; the caller owns all
 * buffers. Any nr >= 1 and nc >= 1 is accepted (the kernel loops internally).
 */
#ifndef SQ_BLOCKS_GEMM_H
#define SQ_BLOCKS_GEMM_H

#include "kernels.h"

typedef void (*sq__gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                            int nc, float *y, size_t y_stride, bool accumulate);

/* The SIMD tile kernel of a type for an ISA (NULL when there is none: the
 * caller then falls back to sq__gemm_generic). */
sq__gemm_fn sq__gemm_avx2(int type);
sq__gemm_fn sq__gemm_avx512(int type);

/* The tile kernel in effect for `type` (the current ISA's, or NULL). */
sq__gemm_fn sq__gemm_kernel(int type);

/* A multi-row matrix-vector kernel: for r < nr,
 *   y[r] (+)= dot(n values of W row r, x)
 * with W row r at (const char *)w + r * w_stride and x already in the type's
 * vec_dot_type; each dot is computed exactly as the type's vec_dot computes it
 * (the same body, inlined), so results equal nr vec_dot calls, then stored or
 * (with accumulate) added to y[r]. For the matrix-vector product over short
 * runs of segments, where one vec_dot call per row and run would be mostly
 * call and setup overhead. */
typedef void (*sq__rows_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *y,
                            bool accumulate);

/* The AVX-512 multi-row kernel of a type, or NULL (callers then loop over vec_dot). */
sq__rows_fn sq__rows_avx512(int type);

/* Tile product through the active vec_dot of `type`, one pair at a time. */
void sq__gemm_generic(int type, int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                      int nc, float *y, size_t y_stride, bool accumulate);

#endif
