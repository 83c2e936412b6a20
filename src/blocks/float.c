/*
 * float.c — scalar reference kernels of the float family: F32, F16, BF16.
 *
 * Conversions are ggml's: f32 -> f16 and f32 -> bf16 round to nearest, ties
 * to even (ggml_quantize_chunk uses the rounding bf16 converter for weights,
 * and ggml's CPU from_float rounds the same way for activations). Dot
 * products widen every element to f32, multiply in f32 (exact for f16 and
 * bf16 products) and accumulate in double, as ggml's scalar vec_dot does
 * (its ggml_float sum); SIMD versions may sum in another order, which the
 * golden tests allow for.
 *
 * Ownership: kernels read the caller's input and write the caller's output;
 * they never allocate.
 */
#include <string.h>

#include "kernels.h"

/* ------------------------------------------------------------------- F32 */

static void quantize_f32(const float *x, void *y, int64_t n, const float *imatrix)
{
    (void)imatrix;
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void dequantize_f32(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

static void from_float_f32(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

static float vec_dot_f32(int64_t n, const void *vw, const void *va)
{
    const float *w = vw, *a = va;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(w[i] * a[i]);
    return (float)sum;
}

/* ------------------------------------------------------------------- F16 */

static void from_float_f16(const float *x, void *vy, int64_t n)
{
    sq_fp16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = sq_f32_to_fp16(x[i]);
}

static void quantize_f16(const float *x, void *y, int64_t n, const float *imatrix)
{
    (void)imatrix;
    from_float_f16(x, y, n);
}

static void dequantize_f16(const void *vx, float *y, int64_t n)
{
    const sq_fp16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = sq_fp16_to_f32(x[i]);
}

static float vec_dot_f16(int64_t n, const void *vw, const void *va)
{
    const sq_fp16 *w = vw, *a = va;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(sq_fp16_to_f32(w[i]) * sq_fp16_to_f32(a[i]));
    return (float)sum;
}

/* ------------------------------------------------------------------ BF16 */

static void from_float_bf16(const float *x, void *vy, int64_t n)
{
    sq_bf16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = sq_f32_to_bf16(x[i]);
}

static void quantize_bf16(const float *x, void *y, int64_t n, const float *imatrix)
{
    (void)imatrix;
    from_float_bf16(x, y, n);
}

static void dequantize_bf16(const void *vx, float *y, int64_t n)
{
    const sq_bf16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = sq_bf16_to_f32(x[i]);
}

static float vec_dot_bf16(int64_t n, const void *vw, const void *va)
{
    const sq_bf16 *w = vw, *a = va;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(sq_bf16_to_f32(w[i]) * sq_bf16_to_f32(a[i]));
    return (float)sum;
}

void sq__register_float(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_F32] = (sq__kernels){quantize_f32, dequantize_f32, vec_dot_f32, from_float_f32, NULL};
    table[SQ_TYPE_F16] = (sq__kernels){quantize_f16, dequantize_f16, vec_dot_f16, from_float_f16, NULL};
    table[SQ_TYPE_BF16] = (sq__kernels){quantize_bf16, dequantize_bf16, vec_dot_bf16, from_float_bf16, NULL};
}
