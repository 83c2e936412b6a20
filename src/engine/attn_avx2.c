/*
 * attn_avx2.c — AVX2 + FMA + F16C versions of the attention inner loops
 * (built with those flags by the Makefile's *_avx2.c rule; called only when
 * the CPU has them, see attention() in forward.c).
 */
#include <immintrin.h>

#include "engine_internal.h"

/* Round 8 floats to fp16 precision and back (round to nearest even). */
static inline __m256 round8(__m256 v)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* Scores of one query row against n key rows, four keys at a time: each key
 * has its own accumulator over the head dimensions and one horizontal add
 * reduces all four. Head sizes that are not a multiple of 8 take the scalar
 * loop. */
void sq__attn_scores_avx2(const float *q, const float *k, size_t kstride, int n, int hd, float scale, float *out)
{
    if (hd % 8 != 0) {
        sq__attn_scores(q, k, kstride, n, hd, scale, out);
        return;
    }
    const __m128 vs = _mm_set1_ps(scale);
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *k0 = k + (size_t)j * kstride, *k1 = k0 + kstride, *k2 = k1 + kstride, *k3 = k2 + kstride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(k0 + d), qv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(k1 + d), qv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(k2 + d), qv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(k3 + d), qv, a3);
        }
        /* [a0 a1 a2 a3] totals: two rounds of pairwise adds, then the two halves */
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        const __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(out + j, _mm_mul_ps(r, vs));
    }
    for (; j < n; j++) {
        const float *kr = k + (size_t)j * kstride;
        __m256 a = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(kr + d), _mm256_loadu_ps(q + d), a);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        out[j] = _mm_cvtss_f32(r) * scale;
    }
}

/* The weighted sum of n value rows, 64 dimensions at a time held in eight
 * registers across all keys (the rows are added in key order). */
void sq__attn_values_avx2(float *out, const float *v, size_t vstride, const float *p, int n, int hd)
{
    if (hd % 8 != 0) {
        sq__attn_values(out, v, vstride, p, n, hd);
        return;
    }
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(), a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) {
            const float *vr = v + (size_t)j * vstride + d0;
            const __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vr), pj, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 8), pj, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 16), pj, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 24), pj, a3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 32), pj, a4);
            a5 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 40), pj, a5);
            a6 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 48), pj, a6);
            a7 = _mm256_fmadd_ps(_mm256_loadu_ps(vr + 56), pj, a7);
        }
        _mm256_storeu_ps(out + d0, a0);
        _mm256_storeu_ps(out + d0 + 8, a1);
        _mm256_storeu_ps(out + d0 + 16, a2);
        _mm256_storeu_ps(out + d0 + 24, a3);
        _mm256_storeu_ps(out + d0 + 32, a4);
        _mm256_storeu_ps(out + d0 + 40, a5);
        _mm256_storeu_ps(out + d0 + 48, a6);
        _mm256_storeu_ps(out + d0 + 56, a7);
    }
    for (; d0 < hd; d0 += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) a = _mm256_fmadd_ps(_mm256_loadu_ps(v + (size_t)j * vstride + d0), _mm256_set1_ps(p[j]), a);
        _mm256_storeu_ps(out + d0, a);
    }
}

void sq__round_fp16_avx2(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, round8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = sq_fp16_to_f32(sq_f32_to_fp16(x[i]));
}
