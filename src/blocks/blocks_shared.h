/*
 * src/blocks/blocks_shared.h — what blocks offers the library modules above
 * it (src/sqtensor/'s mixed-row product) beyond the public sq/blocks.h and
 * sq/matmul.h: the kernel pointers of a type and the tile / run product
 * kernels, each the one the run-time ISA choice made (SQ_ISA,
 * SQ_FORCE_SCALAR). Internal to the library (sq__ names, not installed);
 * every other header in src/blocks/ is private to blocks.
 */
#ifndef SQ_BLOCKS_SHARED_H
#define SQ_BLOCKS_SHARED_H

#include "sq/blocks.h"

/* dot(n values of a weight row, the activation row in the type's vec_dot_type) */
typedef float (*sq__vec_dot_fn)(int64_t n, const void *w, const void *x_act);
/* ggml's CPU from_float for an activation type. */
typedef void (*sq__from_float_fn)(const float *x, void *y, int64_t n);

/* The vec_dot of weight type `type` and the from_float of activation type
 * `act_type` in effect; NULL when the type is unknown or has none. */
sq__vec_dot_fn sq__blocks_vec_dot(int type);
sq__from_float_fn sq__blocks_from_float(int act_type);

/* A tile kernel computes a small block of dot products at once, sharing the
 * unpacking of each weight block across several activation columns:
 *
 *   y[c * y_stride + r] (+)= dot(n values of W row r, activation row c)
 *   for r < nr, c < nc
 *
 * W row r starts at (const char *)w + r * w_stride (weights in the kernel's
 * type), activation row c at (const char *)x + c * x_stride, already
 * converted to the type's vec_dot_type. n is a multiple of the type's block
 * size; it may be a single 256-value SmarterQuant segment. With accumulate
 * the results are added to y instead of stored. Kernels never allocate; the
 * caller owns all buffers. Any nr >= 1 and nc >= 1 is accepted. */
typedef void (*sq__gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                            int nc, float *y, size_t y_stride, bool accumulate);

/* The tile kernel in effect for `type` (the current ISA's, or NULL: then
 * use sq__gemm_generic). */
sq__gemm_fn sq__gemm_kernel(int type);

/* Tile product through the active vec_dot of `type`, one pair at a time. */
void sq__gemm_generic(int type, int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                      int nc, float *y, size_t y_stride, bool accumulate);

/* One run of a SmarterQuant row: n values (a multiple of 256, whole
 * segments) of weight type `type` at byte w_off of every weight row, against
 * the activations at byte x_off of the quantized activation row. */
typedef struct sq__krun {
    int type;
    int64_t n;
    size_t w_off, x_off;
} sq__krun;

/* A run kernel, the matrix-vector product over mixed rows: for r < nr,
 *   y[r] (+)= sum over the runs j of dot(run j of W row r, run j of x)
 * with W row r at (const char *)w + r * w_stride. Each row's runs go into
 * one set of vector accumulators reduced once per row, several rows at a
 * time (independent dependency chains, the activation block loaded once for
 * them); the sums are reordered against per-run vec_dot calls (equal within
 * float rounding). Handles the run types sq__runs_handles() accepts. */
typedef void (*sq__runs_fn)(const sq__krun *run, int nrun, const void *w, size_t w_stride, int nr, const void *x,
                            float *y, bool accumulate);

/* Whether the run kernels handle weight type `type`: the 256-value types with
 * Q8_K activations (Q2_K..Q6_K, IQ4_XS, the codebook types IQ1_S..IQ3_S,
 * the ternary TQ1_0, TQ2_0, and ik's IQ2_K..IQ5_K, IQ2_KS, IQ3_KS, IQ4_KS,
 * IQ4_KSS, IQ5_KS, IQ2_KL: a run of a row-scale type is a sequence of
 * segments, each its row scale and one super-block) and the 32-value types
 * with Q8_0 / Q8_1 activations (Q4_0, Q5_0, Q8_0, IQ4_NL / Q4_1, Q5_1). */
bool sq__runs_handles(int type);

/* The run kernel in effect (NULL when the ISA has none). */
sq__runs_fn sq__runs_kernel(void);

#endif
