/*
 * simd_conv.h — activation quantizers (from_float), dequantizers and the
 * float dot products, compiled by both x86 kernel files.
 *
 * Bit-exactness: the activation quantizers repeat ggml's CPU arithmetic
 * operation by operation (Q8_0/Q8_1: d = amax/127, id = 127/amax, x·id
 * rounded to nearest even; Q8_K: iscale = -127/max of the signed value of
 * largest magnitude, RNE, d = 1/iscale), and the dequantizers evaluate the
 * same products in the same order as the scalar reference (no fused
 * multiply-adds), so bytes and floats are identical.
 */
#ifndef SQ_X86_SIMD_CONV_H
#define SQ_X86_SIMD_CONV_H

#include "simd_common.h"

/* ---- activation quantizers ---- */

/* Max |x| of 32 floats, reduced in ggml's order (max is exact, any order gives the same value). */
SQ_INLINE float amax32(__m256 v0, __m256 v1, __m256 v2, __m256 v3)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, v0);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v2));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v3));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm_cvtss_f32(m4);
}

/* 4 x 8 int32 (values in int8 range) -> 32 int8 in order. */
SQ_INLINE __m256i pack32_i8(__m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    const __m256i a = _mm256_packs_epi32(i0, i1);
    const __m256i b = _mm256_packs_epi32(i2, i3);
    const __m256i c = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q8_0 (with_sum = 0) or Q8_1 (with_sum = 1) from n floats. */
SQ_INLINE void q8_x_from_float(const float *x, void *vy, int64_t n, const int with_sum)
{
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        const float amax = amax32(v0, v1, v2, v3);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        const __m256 mul = _mm256_set1_ps(id);
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT));
        const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT));
        const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT));
        const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT));
        const __m256i q = pack32_i8(i0, i1, i2, i3);
        if (with_sum) {
            blk_q8_1 *y = (blk_q8_1 *)vy + i;
            y->d = f2h(d);
            const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
            y->s = f2h(d * (float)sum);
            _mm256_storeu_si256((__m256i *)y->qs, q);
        } else {
            blk_q8_0 *y = (blk_q8_0 *)vy + i;
            y->d = f2h(d);
            _mm256_storeu_si256((__m256i *)y->qs, q);
        }
    }
}

static void from_float_q8_0(const float *x, void *y, int64_t n) { q8_x_from_float(x, y, n, 0); }
static void from_float_q8_1(const float *x, void *y, int64_t n) { q8_x_from_float(x, y, n, 1); }

/* Q8_K: the scale comes from the signed value of largest magnitude (the first
 * one in order on ties, as the scalar loop finds it). Blocks of zeros get
 * d = 0 and zero quants and sums. */
static void from_float_q8_K(const float *x, void *vy, int64_t n)
{
    blk_q8_K *y = vy;
    const int64_t nb = n / 256;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < nb; i++, x += 256) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 256; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (!(amax > 0.0f)) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* first index whose magnitude equals amax */
        float max = 0;
        const __m256 va = _mm256_set1_ps(amax);
        for (int k = 0; k < 256; k += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), va,
                                                              _CMP_EQ_OQ));
            if (mask) {
                max = x[k + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int k = 0; k < 256; k += 32) {
            __m256i q[4];
            for (int t = 0; t < 4; t++) {
                const __m256 v = _mm256_mul_ps(vs, _mm256_loadu_ps(x + k + 8 * t));
                q[t] = _mm256_min_epi32(_mm256_cvtps_epi32(v), lim);
            }
            _mm256_storeu_si256((__m256i *)(y[i].qs + k), pack32_i8(q[0], q[1], q[2], q[3]));
        }
        for (int k = 0; k < 16; k += 2) {
            /* sums of 16 quants: widen to int16 and add pairwise */
            const __m256i a = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(y[i].qs + 16 * k)));
            const __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(y[i].qs + 16 * k + 16)));
            const __m256i one = _mm256_set1_epi16(1);
            const int sa = hsum_epi32(_mm256_madd_epi16(a, one));
            const int sb = hsum_epi32(_mm256_madd_epi16(b, one));
            y[i].bsums[k] = (int16_t)sa;
            y[i].bsums[k + 1] = (int16_t)sb;
        }
        y[i].d = 1 / iscale;
    }
}

/* F16 from float: F16C conversion, round to nearest even. */
static void from_float_f16(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = f2h(x[i]);
}

/* BF16 from float with ggml's rounding: RNE on the top 16 bits, NaN made quiet. */
static void from_float_bf16(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(64);
    for (; i + 8 <= n; i += 8) {
        const __m256 f = _mm256_loadu_ps(x + i);
        const __m256i u = _mm256_castps_si256(f);
        const __m256i r = _mm256_srli_epi32(
            _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one))), 16);
        const __m256i nanv = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
        const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
        const __m256i v = _mm256_blendv_epi8(r, nanv, isnan);
        const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storeu_si128((__m128i *)(y + i), packed);
    }
    for (; i < n; i++) y[i] = sq_f32_to_bf16(x[i]);
}

/* ---- float dot products ---- */

/* F16 x F16 in float (each product and sum rounded to float). */
static float vdot_f16(int64_t n, const void *vw, const void *vx)
{
    const uint16_t *w = vw, *x = vx;
    int64_t i = 0;
    float tail = 0;
#ifdef __AVX512F__
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (; i + 64 <= n; i += 64) {
#define F16X16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
        a0 = _mm512_fmadd_ps(F16X16(w + i), F16X16(x + i), a0);
        a1 = _mm512_fmadd_ps(F16X16(w + i + 16), F16X16(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(F16X16(w + i + 32), F16X16(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(F16X16(w + i + 48), F16X16(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(F16X16(w + i), F16X16(x + i), a0);
#undef F16X16
    tail = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
#define F16X8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
        a0 = _mm256_fmadd_ps(F16X8(w + i), F16X8(x + i), a0);
        a1 = _mm256_fmadd_ps(F16X8(w + i + 8), F16X8(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(F16X8(w + i + 16), F16X8(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(F16X8(w + i + 24), F16X8(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(F16X8(w + i), F16X8(x + i), a0);
#undef F16X8
    tail = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
    for (; i < n; i++) tail += h2f(w[i]) * h2f(x[i]);
    return tail;
}

SQ_INLINE __m256 bf16x8(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* BF16 x BF16: with AVX512-BF16 vdpbf16ps (pairs of exact products summed in
 * float), otherwise widen to float and FMA. */
static float vdot_bf16(int64_t n, const void *vw, const void *vx)
{
    const uint16_t *w = vw, *x = vx;
    int64_t i = 0;
    float s = 0;
#if defined(__AVX512BF16__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(x + i));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + i + 32), (__m512bh)_mm512_loadu_si512(x + i + 32));
    }
    for (; i + 32 <= n; i += 32)
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(x + i));
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8(w + i), bf16x8(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), bf16x8(x + i + 8), a1);
    }
    s = hsum_ps(_mm256_add_ps(a0, a1));
#endif
    for (; i < n; i++) s += sq_bf16_to_f32(w[i]) * sq_bf16_to_f32(x[i]);
    return s;
}

/* ---- dequantizers (same products, same order as the scalar reference) ---- */

static void deq_f16(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

static void deq_bf16(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bf16x8(x + i));
    for (; i < n; i++) y[i] = sq_bf16_to_f32(x[i]);
}

/* 32 signed bytes -> 4 x 8 floats, each times d, stored at y. */
SQ_INLINE void store_scaled_i8(__m256i q, __m256 d, float *y)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
}

/* 32 bytes -> 4 x 8 floats q·d − m (q unsigned, product rounded, then the difference). */
SQ_INLINE void store_scaled_sub_u8(__m256i q, __m256 d, __m256 m, float *y)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int t = 0; t < 4; t++)
        _mm256_storeu_ps(y + 8 * t, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[t]))), m));
}

/* 32 bytes -> 4 x 8 floats q·d + m. */
SQ_INLINE void store_scaled_add_u8(__m256i q, __m256 d, __m256 m, float *y)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int t = 0; t < 4; t++)
        _mm256_storeu_ps(y + 8 * t, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[t])), d), m));
}

static void deq_q4_0(const void *vx, float *y, int64_t n)
{
    const blk_q4_0 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, y += 32)
        store_scaled_i8(_mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8)), _mm256_set1_ps(h2f(x[i].d)), y);
}

static void deq_q4_1(const void *vx, float *y, int64_t n)
{
    const blk_q4_1 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, y += 32)
        store_scaled_add_u8(nibbles32(x[i].qs), _mm256_set1_ps(h2f(x[i].d)), _mm256_set1_ps(h2f(x[i].m)), y);
}

static void deq_q5_0(const void *vx, float *y, int64_t n)
{
    const blk_q5_0 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, y += 32)
        store_scaled_i8(_mm256_sub_epi8(q5_values(x[i].qs, x[i].qh), _mm256_set1_epi8(16)),
                        _mm256_set1_ps(h2f(x[i].d)), y);
}

static void deq_q5_1(const void *vx, float *y, int64_t n)
{
    const blk_q5_1 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, y += 32)
        store_scaled_add_u8(q5_values(x[i].qs, x[i].qh), _mm256_set1_ps(h2f(x[i].d)), _mm256_set1_ps(h2f(x[i].m)),
                            y);
}

static void deq_q8_0(const void *vx, float *y, int64_t n)
{
    const blk_q8_0 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, y += 32)
        store_scaled_i8(_mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_set1_ps(h2f(x[i].d)), y);
}

static void deq_iq4_nl(const void *vx, float *y, int64_t n)
{
    const blk_iq4_nl *x = vx;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_values));
    for (int64_t i = 0; i < n / 32; i++, y += 32)
        store_scaled_i8(_mm256_shuffle_epi8(table, nibbles32(x[i].qs)), _mm256_set1_ps(h2f(x[i].d)), y);
}

/* Q4_K: y = (d·sc)·q − (dmin·m) per 32. */
static void deq_q4_K(const void *vx, float *y, int64_t n)
{
    const blk_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / 256; i++) {
        uint8_t sm[16];
        unpack_k4_scales(x[i].scales, sm);
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int p = 0; p < 4; p++, y += 64) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * p));
            store_scaled_sub_u8(_mm256_and_si256(raw, m4), _mm256_set1_ps(d * sm[2 * p]),
                                _mm256_set1_ps(dmin * sm[8 + 2 * p]), y);
            store_scaled_sub_u8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), _mm256_set1_ps(d * sm[2 * p + 1]),
                                _mm256_set1_ps(dmin * sm[8 + 2 * p + 1]), y + 32);
        }
    }
}

static void deq_q5_K(const void *vx, float *y, int64_t n)
{
    const blk_q5_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), b16 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < n / 256; i++) {
        uint8_t sm[16];
        unpack_k4_scales(x[i].scales, sm);
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        for (int p = 0; p < 4; p++, y += 64) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * p));
            const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * p), 4), b16);
            const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * p + 1), 4), b16);
            store_scaled_sub_u8(_mm256_or_si256(_mm256_and_si256(raw, m4), h0), _mm256_set1_ps(d * sm[2 * p]),
                                _mm256_set1_ps(dmin * sm[8 + 2 * p]), y);
            store_scaled_sub_u8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), h1),
                                _mm256_set1_ps(d * sm[2 * p + 1]), _mm256_set1_ps(dmin * sm[8 + 2 * p + 1]), y + 32);
        }
    }
}

/* 16 signed bytes -> 2 x 8 floats, times d. */
SQ_INLINE void store16_scaled_i8(__m128i q, __m256 d, float *y)
{
    _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)))));
}

/* Q6_K: y = (d·sc)·(q − 32) per 16. */
static void deq_q6_K(const void *vx, float *y, int64_t n)
{
    const blk_q6_K *x = vx;
    const __m256i o32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = h2f(x[i].d);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6k_half(x[i].ql + 64 * h, x[i].qh + 32 * h, q);
            for (int j = 0; j < 4; j++, y += 32) {
                const __m256i v = _mm256_sub_epi8(q[j], o32);
                store16_scaled_i8(_mm256_castsi256_si128(v), _mm256_set1_ps(d * x[i].scales[8 * h + 2 * j]), y);
                store16_scaled_i8(_mm256_extracti128_si256(v, 1), _mm256_set1_ps(d * x[i].scales[8 * h + 2 * j + 1]),
                                  y + 16);
            }
        }
    }
}

/* Q3_K: y = (d·(sc−32))·q per 16, q in −4..3. */
static void deq_q3_K(const void *vx, float *y, int64_t n)
{
    const blk_q3_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), b4 = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / 256; i++) {
        int8_t sc[16];
        unpack_q3k_scales(x[i].scales, sc);
        const float d = h2f(x[i].d);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int j = 0; j < 4; j++, y += 32) {
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), _mm256_set1_epi8(1));
                const __m256i q = _mm256_sub_epi8(
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), m3),
                                    _mm256_and_si256(_mm256_slli_epi16(hb, 2), b4)),
                    b4);
                store16_scaled_i8(_mm256_castsi256_si128(q), _mm256_set1_ps(d * sc[8 * h + 2 * j]), y);
                store16_scaled_i8(_mm256_extracti128_si256(q, 1), _mm256_set1_ps(d * sc[8 * h + 2 * j + 1]), y + 16);
            }
        }
    }
}

/* 16 unsigned bytes -> 2 x 8 floats d·q − m. */
SQ_INLINE void store16_scaled_sub_u8(__m128i q, __m256 d, __m256 m, float *y)
{
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q))), m));
    _mm256_storeu_ps(y + 8,
                     _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q, 8)))), m));
}

/* Q2_K: y = (d·sc)·q − (dmin·m) per 16. */
static void deq_q2_K(const void *vx, float *y, int64_t n)
{
    const blk_q2_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int h = 0; h < 2; h++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int j = 0; j < 4; j++, y += 32) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), m3);
                const uint8_t s0 = x[i].scales[8 * h + 2 * j], s1 = x[i].scales[8 * h + 2 * j + 1];
                store16_scaled_sub_u8(_mm256_castsi256_si128(q), _mm256_set1_ps(d * (s0 & 0xF)),
                                      _mm256_set1_ps(dmin * (s0 >> 4)), y);
                store16_scaled_sub_u8(_mm256_extracti128_si256(q, 1), _mm256_set1_ps(d * (s1 & 0xF)),
                                      _mm256_set1_ps(dmin * (s1 >> 4)), y + 16);
            }
        }
    }
}

/* IQ4_XS: y = (d·(ls−32))·value per 32. */
static void deq_iq4_xs(const void *vx, float *y, int64_t n)
{
    const blk_iq4_xs *x = vx;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_values));
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
            store_scaled_i8(_mm256_shuffle_epi8(table, nibbles32(x[i].qs + 16 * ib)), _mm256_set1_ps(d * (float)(ls - 32)),
                            y);
        }
    }
}

#endif
