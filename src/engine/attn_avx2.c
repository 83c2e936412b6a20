/*
 * attn_avx2.c — AVX2 + FMA + F16C versions of the attention inner loops
 * (built with those flags by the Makefile's *_avx2.c rule; called only when
 * the CPU has them, see pick_fns() in forward.c): the blocked attention of
 * attn_block.h on 8-lane vectors, and the fp16 rounding of whole arrays.
 */
#include <immintrin.h>

#include "engine_internal.h"

/* Round 8 floats to fp16 precision and back (round to nearest even). */
static inline __m256 round8(__m256 v)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 16 registers: a score tile of 8 partial sums × 8 keys, a value tile of 8 rows × 8 dimensions. */
#define AV __m256
#define AV_W 8
#define AV_KB 1
#define AV_DV 1
#define AV_ZERO() _mm256_setzero_ps()
#define AV_LOAD(p) _mm256_loadu_ps(p)
#define AV_STORE(p, v) _mm256_storeu_ps(p, v)
#define AV_SET1(x) _mm256_set1_ps(x)
#define AV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define AV_ADD(a, b) _mm256_add_ps(a, b)
#define AV_MUL(a, b) _mm256_mul_ps(a, b)
#define AV_MAX(a, b) _mm256_max_ps(a, b)
#define AV_HMAX(v) hmax8(v)
#define AV_ROUND16(v) round8(v)
#define AV_FALLBACK sq__attn_block_ref
#define AV_FN sq__attn_block_avx2
#include "attn_block.h"

void sq__round_fp16_avx2(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, round8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = sq_fp16_to_f32(sq_f32_to_fp16(x[i]));
}
