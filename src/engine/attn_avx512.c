/*
 * attn_avx512.c — the blocked attention of attn_block.h on 16-lane vectors
 * (built with the AVX-512 flags by the Makefile's *_avx512.c rule; called only
 * when the CPU has them, see pick_fns() in forward.c). 32 registers: a score
 * tile of 8 partial sums × 32 keys and a value tile of 8 rows × 32 dimensions.
 */
#include <immintrin.h>

#include "engine_internal.h"

#define AV __m512
#define AV_W 16
#define AV_KB 2
#define AV_DV 2
#define AV_ZERO() _mm512_setzero_ps()
#define AV_LOAD(p) _mm512_loadu_ps(p)
#define AV_STORE(p, v) _mm512_storeu_ps(p, v)
#define AV_SET1(x) _mm512_set1_ps(x)
#define AV_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define AV_ADD(a, b) _mm512_add_ps(a, b)
#define AV_MUL(a, b) _mm512_mul_ps(a, b)
#define AV_MAX(a, b) _mm512_max_ps(a, b)
#define AV_HMAX(v) _mm512_reduce_max_ps(v)
#define AV_ROUND16(v) _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
#define AV_FN sq__attn_block_avx512
#include "attn_block.h"
