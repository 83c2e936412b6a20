/*
 * attn_avx512.c — the blocked attention of attn_block.h on 16-lane vectors,
 * with a vector expf equal to the C library's for its softmax (and SwiGLU),
 * and RMSNorm of up to 8 tokens at once
 * (built with the AVX-512 flags by the Makefile's *_avx512.c rule; called only
 * when the CPU has them, see pick_fns() in forward.c). 32 registers: a score
 * tile of 8 partial sums × 32 keys and a value tile of 8 rows × 32 dimensions.
 */
#include <immintrin.h>

#include <math.h>
#include <stdint.h>

#include "engine_internal.h"

/* ---- expf, 16 lanes, bit for bit the C library's ----
 * glibc's expf (the variant it picks on CPUs with FMA) computes in double:
 * x·32/ln2 = k + r with k an integer (rounded through a 1.5·2^52 shift), then
 * 2^(k/32) from a 32-entry table of 2^(i/32) (its exponent bits adjusted by
 * k) times a cubic in r, rounded once to float; each step below is the same
 * IEEE operation (fused where it fuses them), so the results are identical
 * (tests/test_attention.c compares them with expf). |x| >= 88 and NaN take
 * expf itself, lane by lane. The table holds the bits of 2^(i/32) (correctly
 * rounded) minus i << 47, so that adding k << 47 yields 2^(k/32). */
static const uint64_t exp2_tab[32] = {
    0x3ff0000000000000ULL, 0x3fefd9b0d3158574ULL, 0x3fefb5586cf9890fULL, 0x3fef9301d0125b51ULL,
    0x3fef72b83c7d517bULL, 0x3fef54873168b9aaULL, 0x3fef387a6e756238ULL, 0x3fef1e9df51fdee1ULL,
    0x3fef06fe0a31b715ULL, 0x3feef1a7373aa9cbULL, 0x3feedea64c123422ULL, 0x3feece086061892dULL,
    0x3feebfdad5362a27ULL, 0x3feeb42b569d4f82ULL, 0x3feeab07dd485429ULL, 0x3feea47eb03a5585ULL,
    0x3feea09e667f3bcdULL, 0x3fee9f75e8ec5f74ULL, 0x3feea11473eb0187ULL, 0x3feea589994cce13ULL,
    0x3feeace5422aa0dbULL, 0x3feeb737b0cdc5e5ULL, 0x3feec49182a3f090ULL, 0x3feed503b23e255dULL,
    0x3feee89f995ad3adULL, 0x3feeff76f2fb5e47ULL, 0x3fef199bdd85529cULL, 0x3fef3720dcef9069ULL,
    0x3fef5818dcfba487ULL, 0x3fef7c97337b9b5fULL, 0x3fefa4afa2a490daULL, 0x3fefd0765b6e4540ULL,
};

/* expf of 8 floats. */
static inline __m256 expf8(__m256 x)
{
    const __m512d inv_ln2_32 = _mm512_set1_pd(0x1.71547652b82fep+5), shift = _mm512_set1_pd(0x1.8p+52);
    const __m512d xd = _mm512_cvtps_pd(x);
    __m512d kd = _mm512_fmadd_pd(inv_ln2_32, xd, shift);
    const __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    const __m512d r = _mm512_fmsub_pd(inv_ln2_32, xd, kd);
    const __m512i t0 = _mm512_loadu_si512(exp2_tab), t1 = _mm512_loadu_si512(exp2_tab + 8);
    const __m512i t2 = _mm512_loadu_si512(exp2_tab + 16), t3 = _mm512_loadu_si512(exp2_tab + 24);
    const __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1), hi = _mm512_permutex2var_epi64(t2, ki, t3);
    __m512i t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
    const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.c6af84b912394p-20), _mm512_set1_pd(0x1.ebfce50fac4f3p-13));
    const __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.62e42ff0c52d6p-6), _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    y = _mm512_mul_pd(y, _mm512_castsi512_pd(t));
    return _mm512_cvtpd_ps(y);
}

/* expf of 16 floats (see above). */
static inline __m512 expf16(__m512 x)
{
    __m512 e = _mm512_insertf32x8(_mm512_castps256_ps512(expf8(_mm512_castps512_ps256(x))),
                                  expf8(_mm512_extractf32x8_ps(x, 1)), 1);
    const __m512i ax = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
    const __mmask16 big = _mm512_cmpge_epu32_mask(ax, _mm512_set1_epi32(0x42b00000)); /* |x| >= 88, inf, NaN */
    if (big) {
        float xs[16], es[16];
        _mm512_storeu_ps(xs, x);
        _mm512_storeu_ps(es, e);
        for (int i = 0; i < 16; i++)
            if ((big >> i) & 1) es[i] = expf(xs[i]);
        e = _mm512_loadu_ps(es);
    }
    return e;
}

/* sq__expf_avx512: y[i] = expf(x[i]) for n floats (for the tests). */
void sq__expf_avx512(const float *x, float *y, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, expf16(_mm512_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = expf(x[i]);
}

/* sq__swiglu with the vector expf: the same divide, add and multiplies, so
 * the same results. */
void sq__swiglu_avx512(const float *g, const float *u, float *y, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 a = _mm512_loadu_ps(g + i);
        const __m512 e = expf16(_mm512_sub_ps(_mm512_setzero_ps(), a));
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_div_ps(a, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
    }
    if (i < n) sq__swiglu(g + i, u + i, y + i, n - i);
}

/* 8 × 8 transpose: col[k] lane r = row[r] lane k. */
static inline void transpose8(const __m256 row[8], __m256 col[8])
{
    const __m256 a0 = _mm256_unpacklo_ps(row[0], row[1]), a1 = _mm256_unpackhi_ps(row[0], row[1]);
    const __m256 a2 = _mm256_unpacklo_ps(row[2], row[3]), a3 = _mm256_unpackhi_ps(row[2], row[3]);
    const __m256 a4 = _mm256_unpacklo_ps(row[4], row[5]), a5 = _mm256_unpackhi_ps(row[4], row[5]);
    const __m256 a6 = _mm256_unpacklo_ps(row[6], row[7]), a7 = _mm256_unpackhi_ps(row[6], row[7]);
    const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
    const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
    const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
    const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
    col[0] = _mm256_permute2f128_ps(b0, b4, 0x20), col[1] = _mm256_permute2f128_ps(b1, b5, 0x20);
    col[2] = _mm256_permute2f128_ps(b2, b6, 0x20), col[3] = _mm256_permute2f128_ps(b3, b7, 0x20);
    col[4] = _mm256_permute2f128_ps(b0, b4, 0x31), col[5] = _mm256_permute2f128_ps(b1, b5, 0x31);
    col[6] = _mm256_permute2f128_ps(b2, b6, 0x31), col[7] = _mm256_permute2f128_ps(b3, b7, 0x31);
}

/* sq__rmsnorm of nt <= 8 rows (x, y rows stride floats apart): the double
 * sums of squares run side by side, one row per lane, each in element order
 * as one row's loop adds them (8 elements of 8 rows transposed per step); the
 * scale and the products are the same float operations. */
void sq__rmsnorm_rows_avx512(const float *x, const float *w, float *y, int64_t n, float eps, size_t stride, int nt)
{
    if (n % 8 != 0 || nt < 1 || nt > 8) {
        for (int r = 0; r < nt; r++) sq__rmsnorm(x + (size_t)r * stride, w, y + (size_t)r * stride, n, eps);
        return;
    }
    __m512d sum = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        __m256 row[8], col[8];
        for (int r = 0; r < 8; r++) row[r] = r < nt ? _mm256_loadu_ps(x + (size_t)r * stride + i) : _mm256_setzero_ps();
        transpose8(row, col);
        for (int k = 0; k < 8; k++) sum = _mm512_add_pd(sum, _mm512_cvtps_pd(_mm256_mul_ps(col[k], col[k])));
    }
    double sums[8];
    _mm512_storeu_pd(sums, sum);
    for (int r = 0; r < nt; r++) {
        const float mean = (float)(sums[r] / (double)n);
        const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(mean + eps));
        const float *xr = x + (size_t)r * stride;
        float *yr = y + (size_t)r * stride;
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)0xFF;
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), scale);
            if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
            _mm512_mask_storeu_ps(yr + i, m, v);
        }
    }
}

/* The softmax of the block's M rows (see sq__attn_block): per row the max,
 * then e = expf(s - max) 16 at a time; the double sums of the rows run side
 * by side, one row per lane (8 rows × 8 keys transposed per step), each in
 * key order as a one-row loop adds them; then p = e · (float)(1/sum), rounded
 * to fp16 for an f16 cache. Keys past a row's end are zeroed first, which
 * leaves its sum unchanged. */
static void softmax_rows(const sq__attn_block *b, const int M)
{
    int nmax = 0;
    for (int r = 0; r < M; r++) nmax = b->nk[r] > nmax ? b->nk[r] : nmax;
    const int nr8 = (nmax + 7) & ~7;
    for (int r = 0; r < M; r++) {
        float *s = b->sc + (size_t)r * b->sc_stride;
        const int n = b->nk[r];
        const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1);
        __m512 vm = _mm512_set1_ps(-INFINITY);
        int j = 0;
        for (; j + 16 <= n; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + j));
        vm = _mm512_mask_max_ps(vm, tail, vm, _mm512_maskz_loadu_ps(tail, s + j));
        const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
        for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(s + j, expf16(_mm512_sub_ps(_mm512_loadu_ps(s + j), mx)));
        if (tail) _mm512_mask_storeu_ps(s + j, tail, expf16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + j), mx)));
        for (j = n; j < nr8; j++) s[j] = 0.0f;
    }
    __m512d sum = _mm512_setzero_pd();
    for (int j = 0; j < nr8; j += 8) {
        __m256 row[8];
        for (int r = 0; r < 8; r++) row[r] = r < M ? _mm256_loadu_ps(b->sc + (size_t)r * b->sc_stride + j) : _mm256_setzero_ps();
        __m256 col[8];
        transpose8(row, col); /* col[k] holds key j + k of rows 0..7 */
        for (int k = 0; k < 8; k++) sum = _mm512_add_pd(sum, _mm512_cvtps_pd(col[k]));
    }
    double sums[8];
    _mm512_storeu_pd(sums, sum);
    for (int r = 0; r < M; r++) {
        float *s = b->sc + (size_t)r * b->sc_stride;
        const int n = b->nk[r];
        const __m512 inv = _mm512_set1_ps((float)(1.0 / sums[r]));
        for (int j = 0; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
            __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), inv);
            if (b->f16) p = _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            _mm512_mask_storeu_ps(s + j, m, p);
        }
    }
}


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
#define AV_SOFTMAX_ROWS softmax_rows
#define AV_FALLBACK sq__attn_block_avx2
#define AV_FN sq__attn_block_avx512
#include "attn_block.h"
