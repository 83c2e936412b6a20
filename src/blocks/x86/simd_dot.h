/*
 * simd_dot.h — the quantized dot-product kernels, written once for 256-bit
 * vectors and compiled twice: by kernels_avx2.c (AVX2 + FMA, maddubs/madd)
 * and by kernels_avx512.c (the same code with AVX-512 VNNI's vpdpbusd /
 * vpdpwssd, 32 vector registers and mask moves).
 *
 * Every kernel is a template over NC, the number of activation rows it dots
 * one weight row with at once (1 for vec_dot, up to 4 in the tile kernels of
 * the matrix product): the weight block is loaded and unpacked once and
 * reused for each column. NC is a compile-time constant after inlining, so the
 * accumulator arrays live in registers.
 *
 * Summation order differs from ggml's (integer sums are exact, the float
 * accumulation is per 8 lanes): results agree to float rounding, which the
 * golden tests bound at 1e-5 of sum |w·x|.
 */
#ifndef SQ_X86_SIMD_DOT_H
#define SQ_X86_SIMD_DOT_H

#include "simd_common.h"

#define MAXNC 4
#define XCOL(T, x, xs, c) ((const T *)((const char *)(x) + (size_t)(c) * (xs)))

/* Q4_0 x Q8_0: d_w·d_x·Σ (q-8)·y per 32-value block. */
SQ_INLINE void k_q4_0(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_q4_0 *w = vw;
    const int64_t nb = n / 32;
    __m256 acc[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_sub_epi8(nibbles32(w[i].qs), _mm256_set1_epi8(8));
        const __m256i aq = _mm256_sign_epi8(q, q);
        const float dw = h2f(w[i].d);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_0 *x = XCOL(blk_q8_0, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i p = dp_u8s8(_mm256_setzero_si256(), aq, _mm256_sign_epi8(y, q));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(x->d)), _mm256_cvtepi32_ps(p), acc[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);
}

/* Q4_1 x Q8_1: d_w·d_x·Σ q·y + m_w·s_x (s_x = d_x·Σ y, stored with the activations). */
SQ_INLINE void k_q4_1(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_q4_1 *w = vw;
    const int64_t nb = n / 32;
    __m256 acc[MAXNC];
    float summ[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps(), summ[c] = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = nibbles32(w[i].qs);
        const float dw = h2f(w[i].d), mw = h2f(w[i].m);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_1 *x = XCOL(blk_q8_1, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i p = dp_u8s8(_mm256_setzero_si256(), q, y);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(x->d)), _mm256_cvtepi32_ps(p), acc[c]);
            summ[c] += mw * h2f(x->s);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]) + summ[c];
}

/* The 5-bit values of a Q5_0 / Q5_1 block, 0..31 (the fifth bit from qh). */
SQ_INLINE __m256i q5_values(const uint8_t *qs, const uint8_t *qh)
{
    uint32_t hb;
    memcpy(&hb, qh, 4);
    const __m256i hi = _mm256_and_si256(bits_to_bytes(hb), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(qs), hi);
}

/* Q5_0 x Q8_0. */
SQ_INLINE void k_q5_0(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_q5_0 *w = vw;
    const int64_t nb = n / 32;
    __m256 acc[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_sub_epi8(q5_values(w[i].qs, w[i].qh), _mm256_set1_epi8(16));
        const __m256i aq = _mm256_sign_epi8(q, q);
        const float dw = h2f(w[i].d);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_0 *x = XCOL(blk_q8_0, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i p = dp_u8s8(_mm256_setzero_si256(), aq, _mm256_sign_epi8(y, q));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(x->d)), _mm256_cvtepi32_ps(p), acc[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);
}

/* Q5_1 x Q8_1. */
SQ_INLINE void k_q5_1(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_q5_1 *w = vw;
    const int64_t nb = n / 32;
    __m256 acc[MAXNC];
    float summ[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps(), summ[c] = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = q5_values(w[i].qs, w[i].qh);
        const float dw = h2f(w[i].d), mw = h2f(w[i].m);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_1 *x = XCOL(blk_q8_1, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i p = dp_u8s8(_mm256_setzero_si256(), q, y);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(x->d)), _mm256_cvtepi32_ps(p), acc[c]);
            summ[c] += mw * h2f(x->s);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]) + summ[c];
}

/* Q8_0 x Q8_0. */
SQ_INLINE void k_q8_0(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_q8_0 *w = vw;
    const int64_t nb = n / 32;
    __m256 acc[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i aq = _mm256_sign_epi8(q, q);
        const float dw = h2f(w[i].d);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_0 *x = XCOL(blk_q8_0, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i p = dp_u8s8(_mm256_setzero_si256(), aq, _mm256_sign_epi8(y, q));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(x->d)), _mm256_cvtepi32_ps(p), acc[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);
}

/* IQ4_NL x Q8_0: the nibbles index the 16 non-uniform code values. */
SQ_INLINE void k_iq4_nl(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_iq4_nl *w = vw;
    const int64_t nb = n / 32;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_values));
    __m256 acc[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_shuffle_epi8(table, nibbles32(w[i].qs));
        const __m256i aq = _mm256_sign_epi8(q, q);
        const float dw = h2f(w[i].d);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_0 *x = XCOL(blk_q8_0, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
            const __m256i p = dp_u8s8(_mm256_setzero_si256(), aq, _mm256_sign_epi8(y, q));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(x->d)), _mm256_cvtepi32_ps(p), acc[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);
}

/* k_T of a 256-value K-quant from its per-block step kb_T. */
#define SQ_K_FROM_KB(T)                                                                                     \
    SQ_INLINE void k_##T(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)    \
    {                                                                                                       \
        const blk_##T *w = vw;                                                                              \
        __m256 acc[MAXNC];                                                                                  \
        SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();                                \
        for (int64_t i = 0; i < n / 256; i++) kb_##T(w, i, vx, xs, acc, NC);                                \
        SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);                                    \
    }

/* Σ_j m_j·(bsums[2j] + bsums[2j+1]) as 8 int32 lanes, for 8 per-32 mins. */
SQ_INLINE __m256i mins_times_bsums(const int16_t *bsums, __m128i mins8)
{
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), m16);
}

/* int16 lanes = byte k of each 128-bit lane of v, zero-extended (one
 * vpshufb: index bytes k, 0x80). */
SQ_INLINE __m256i spread_u8(__m256i v, int k) { return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x8000 | k))); }

/* Bit `from` of every byte of v moved to bit `to` (other bits garbage or
 * zero; callers mask). One 16-bit shift: a byte's bit `to` comes from its
 * own bit `from` whenever both are in 0..7. */
SQ_INLINE __m256i move_bit(__m256i v, int from, int to)
{
    return from > to ? _mm256_srli_epi16(v, from - to) : from < to ? _mm256_slli_epi16(v, to - from) : v;
}

/* Q4_K x Q8_K: d·dy·Σ_j sc_j Σ q·y − dmin·dy·Σ_j m_j Σ y over 8 chunks of 32
 * (kb_k4: Q4_K without qh, Q5_K with its fifth bits).
 * kb_T: one block (w[i]) of one row against NC activation columns, into acc[c]
 * (the run kernel of kernels_avx2.c uses it with NC = 1 per row); k_T: the
 * blocks of a row, one reduction per column.
 * The scales and mins stay in a register (k4_scales_mins, both 128-bit
 * lanes) and each chunk's scale is spread over the int16 lanes by one byte
 * shuffle; d and dmin are converted together. Per 32 values: an AND (and a
 * shift) for the nibbles, a shuffle for the scale, maddubs + madd + add;
 * Q5_K's fifth bit costs a shift, an AND and an OR. */
SQ_INLINE void kb_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const uint16_t *ddmin,
                     int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), b16 = _mm256_set1_epi8(0x10);
    const __m256i sm = _mm256_broadcastsi128_si256(k4_scales_mins(scales));
    /* [m0 m0 m1 m1 .. m3 m3 | m4 m4 .. m7 m7] as int16, against the 16 bsums */
    const __m256i m16 = _mm256_shuffle_epi8(sm, _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11,
                                                                 -1, 12, -1, 12, -1, 13, -1, 13, -1, 14, -1, 14, -1,
                                                                 15, -1, 15, -1));
    uint32_t dd;
    memcpy(&dd, ddmin, 4);
    const __m128 dmf = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)); /* d, dmin */
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    SQ_UNROLL for (int p = 0; p < 4; p++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        __m256i lo = _mm256_and_si256(raw, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (qh) {
            /* bit 2p of qh[l] is the fifth bit of value 64p+l, bit 2p+1 of value 64p+32+l */
            lo = _mm256_or_si256(lo, _mm256_and_si256(move_bit(hbits, 2 * p, 4), b16));
            hi = _mm256_or_si256(hi, _mm256_and_si256(move_bit(hbits, 2 * p + 1, 4), b16));
        }
        const __m256i s_lo = spread_u8(sm, 2 * p), s_hi = spread_u8(sm, 2 * p + 1);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * p));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * p + 32));
            isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(lo, y0), s_lo);
            isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(hi, y1), s_hi);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i mb = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), m16);
        const __m128 f = _mm_mul_ps(dmf, _mm_set1_ps(x->d)); /* d·dy, dmin·dy */
        acc[c] = _mm256_fmadd_ps(_mm256_broadcastss_ps(f), _mm256_cvtepi32_ps(isum[c]), acc[c]);
        acc[c] = _mm256_fnmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(f)), _mm256_cvtepi32_ps(mb), acc[c]);
    }
}

SQ_INLINE void kb_q4_K(const blk_q4_K *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    kb_k4(w[i].scales, w[i].qs, NULL, &w[i].d, i, vx, xs, acc, NC);
}

SQ_K_FROM_KB(q4_K)

/* Q5_K x Q8_K: as Q4_K with a fifth bit per value from qh. */
SQ_INLINE void kb_q5_K(const blk_q5_K *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    kb_k4(w[i].scales, w[i].qs, w[i].qh, &w[i].d, i, vx, xs, acc, NC);
}

SQ_K_FROM_KB(q5_K)

/* Σ_k sc_k·bsums[k] for 16 signed per-16 scales, as 8 int32 lanes. */
SQ_INLINE __m256i scales16_times_bsums(const int16_t *bsums, __m256i sc16)
{
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), sc16);
}

/* isum[c] += 32 weight values q (one scale group, scales s per int16 pair)
 * times the activations at value offset off of block i of column c. */
SQ_INLINE void kb_group(__m256i *isum, __m256i q, __m256i s, const void *vx, size_t xs, int64_t i, int off,
                        const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(x->qs + off))), s);
    }
}

/* Q6_K / Q3_K: acc[c] += d·dy·(isum[c] − 2^shift·Σ_k sc_k·bsum_k), the value
 * offset (32 or 4) taken off through the bsums. */
SQ_INLINE void kb_finish_s16(__m256 *acc, const __m256i *isum, __m256i sc16, float d, int shift, const void *vx,
                             size_t xs, int64_t i, const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i corr = _mm256_slli_epi32(scales16_times_bsums(x->bsums, sc16), shift);
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[c], corr)),
                                 acc[c]);
    }
}

/* Q6_K x Q8_K: values 0..63 (offset 32) with a signed scale per 16:
 * d·dy·(Σ_k sc_k Σ q·y − 32·Σ_k sc_k·bsum_k). */
SQ_INLINE void kb_q6_K(const blk_q6_K *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)w[i].scales);
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    const float d = h2f(w[i].d);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m256i s8x2 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16((h ? _mm_unpackhi_epi64(sc8, sc8) : sc8)));
        __m256i q[4];
        q6k_half(w[i].ql + 64 * h, w[i].qh + 32 * h, q);
        SQ_UNROLL for (int j = 0; j < 4; j++) {
            const __m256i s = scale_pair16(s8x2, j);
            kb_group(isum, q[j], s, vx, xs, i, 128 * h + 32 * j, NC);
        }
    }
    kb_finish_s16(acc, isum, sc16, d, 5, vx, xs, i, NC);
}

SQ_K_FROM_KB(q6_K)

/* Q3_K x Q8_K: values 0..7 (offset 4: the high bit set means no offset),
 * a signed 6-bit scale per 16. The scales are unpacked in registers; per 32
 * values: shift + AND for the low two bits, shift + AND for the hmask bit
 * (moved straight to bit 2), an OR, the scale shuffle, maddubs + madd + add. */
SQ_INLINE void kb_q3_K(const blk_q3_K *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i m3 = _mm256_set1_epi8(3), b4 = _mm256_set1_epi8(4);
    const __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales(w[i].scales));
    const float d = h2f(w[i].d);
    const __m256i hm = _mm256_loadu_si256((const __m256i *)w[i].hmask);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        /* scales 8h..8h+7 in both 128-bit lanes */
        const __m256i s8x2 = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * h));
        SQ_UNROLL for (int j = 0; j < 4; j++) {
            const __m256i lo2 = _mm256_and_si256(j ? _mm256_srli_epi16(raw, 2 * j) : raw, m3);
            const __m256i q = _mm256_or_si256(lo2, _mm256_and_si256(move_bit(hm, 4 * h + j, 2), b4));
            const __m256i s = scale_pair16(s8x2, j);
            kb_group(isum, q, s, vx, xs, i, 128 * h + 32 * j, NC);
        }
    }
    kb_finish_s16(acc, isum, sc16, d, 2, vx, xs, i, NC);
}

SQ_K_FROM_KB(q3_K)

/* Q2_K x Q8_K: values 0..3, a 4-bit scale and a 4-bit min per 16. */
SQ_INLINE void kb_q2_K(const blk_q2_K *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i packed = _mm_loadu_si128((const __m128i *)w[i].scales);
    const __m128i sc8 = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
    const __m128i mn8 = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
    const __m256i mn16 = _mm256_cvtepu8_epi16(mn8);
    const float d = h2f(w[i].d), dmin = h2f(w[i].dmin);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m256i s8x2 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16((h ? _mm_unpackhi_epi64(sc8, sc8) : sc8)));
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * h));
        SQ_UNROLL for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), m3);
            const __m256i s = scale_pair16(s8x2, j);
            kb_group(isum, q, s, vx, xs, i, 128 * h + 32 * j, NC);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i mb = scales16_times_bsums(x->bsums, mn16);
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
        acc[c] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * x->d), _mm256_cvtepi32_ps(mb), acc[c]);
    }
}

SQ_K_FROM_KB(q2_K)

/* IQ4_XS x Q8_K: IQ4_NL code values with a 6-bit scale (offset 32) per 32. */
SQ_INLINE void kb_iq4_xs(const blk_iq4_xs *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_values));
    const float d = h2f(w[i].d);
    int16_t ls[8];
    _mm_storeu_si128((__m128i *)ls, iq4xs_scales16(w[i].scales_l, w[i].scales_h));
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const __m256i s = _mm256_set1_epi16(ls[ib]);
        const __m256i q = _mm256_shuffle_epi8(table, nibbles32(w[i].qs + 16 * ib));
        const __m256i aq = _mm256_sign_epi8(q, q);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
            const __m256i y = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * ib));
            /* |q|·±y pairs fit int16: 2·127·128 < 32768 */
            isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(aq, _mm256_sign_epi8(y, q)), s);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
    }
}

SQ_K_FROM_KB(iq4_xs)

/* ---- vec_dot and tile instances ---- */

/* Tile: column groups of 4 outside, weight rows inside, so the 4 activation
 * rows of a group stay in L1 while the weight rows stream past them. */
#define SQ_TILE_STORE(K)                                                                                     \
    do {                                                                                                     \
        for (int k = 0; k < (K); k++) {                                                                      \
            float *dst = &y[(size_t)(c + k) * ys + r];                                                       \
            *dst = s[k] + (accumulate ? *dst : 0.0f);                                                        \
        }                                                                                                    \
    } while (0)

/* A type's vec_dot and tile kernel from its k_T body (the tile alone:
 * SQ_DEFINE_QUANT_GEMM, for a type whose vec_dot has a body of its own). */
#define SQ_DEFINE_QUANT_KERNELS(T)                                                                           \
    static float vdot_##T(int64_t n, const void *w, const void *x)                                          \
    {                                                                                                       \
        float s;                                                                                            \
        k_##T(n, w, x, 0, &s, 1);                                                                           \
        return s;                                                                                           \
    }                                                                                                       \
    SQ_DEFINE_QUANT_GEMM(T)
#define SQ_DEFINE_QUANT_GEMM(T)                                                                              \
    static void gemm_##T(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc,       \
                         float *y, size_t ys, bool accumulate)                                              \
    {                                                                                                       \
        float s[MAXNC];                                                                                     \
        int c = 0;                                                                                          \
        for (; c + 4 <= nc; c += 4)                                                                         \
            for (int r = 0; r < nr; r++) {                                                                  \
                k_##T(n, (const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, xs, s, 4);     \
                SQ_TILE_STORE(4);                                                                           \
            }                                                                                               \
        if (nc - c >= 2) {                                                                                  \
            for (int r = 0; r < nr; r++) {                                                                  \
                k_##T(n, (const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, xs, s, 2);     \
                SQ_TILE_STORE(2);                                                                           \
            }                                                                                               \
            c += 2;                                                                                         \
        }                                                                                                   \
        if (nc - c == 1)                                                                                    \
            for (int r = 0; r < nr; r++) {                                                                  \
                k_##T(n, (const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, xs, s, 1);     \
                SQ_TILE_STORE(1);                                                                           \
            }                                                                                               \
    }

SQ_DEFINE_QUANT_KERNELS(q4_0)
SQ_DEFINE_QUANT_KERNELS(q4_1)
SQ_DEFINE_QUANT_KERNELS(q5_0)
SQ_DEFINE_QUANT_KERNELS(q5_1)
SQ_DEFINE_QUANT_KERNELS(q8_0)
SQ_DEFINE_QUANT_KERNELS(iq4_nl)
SQ_DEFINE_QUANT_KERNELS(q2_K)
SQ_DEFINE_QUANT_KERNELS(q3_K)
SQ_DEFINE_QUANT_KERNELS(q4_K)
SQ_DEFINE_QUANT_KERNELS(q5_K)
SQ_DEFINE_QUANT_KERNELS(q6_K)
SQ_DEFINE_QUANT_KERNELS(iq4_xs)

/* ---- 32-value block steps for the run kernels (gemm.h, sq__runs_fn) ----
 *
 * One block of one weight row into that row's 256-bit accumulator, against
 * activations loaded once per block for the whole band: y (32 int8), dx
 * (their scale) and, for the Q8_1 activations of Q4_1/Q5_1, sx = d_x·Σy.
 * The signed types (Q8_0 activations) take |q| · (y with q's sign) through
 * dp_u8s8 (vpdpbusd with VNNI); the offset types add m_w·s_x into the row's
 * scalar sum *sm, added once after the reduction. */
SQ_INLINE void kr_signed(__m256i q, float dw, __m256i y, float dx, __m256 *acc)
{
    const __m256i p = dp_u8s8(_mm256_setzero_si256(), _mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(p), *acc);
}

SQ_INLINE void kr_q4_0(const blk_q4_0 *w, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    (void)sx, (void)sm;
    kr_signed(_mm256_sub_epi8(nibbles32(w->qs), _mm256_set1_epi8(8)), h2f(w->d), y, dx, acc);
}

SQ_INLINE void kr_q5_0(const blk_q5_0 *w, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    (void)sx, (void)sm;
    kr_signed(_mm256_sub_epi8(q5_values(w->qs, w->qh), _mm256_set1_epi8(16)), h2f(w->d), y, dx, acc);
}

SQ_INLINE void kr_q8_0(const blk_q8_0 *w, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    (void)sx, (void)sm;
    kr_signed(_mm256_loadu_si256((const __m256i *)w->qs), h2f(w->d), y, dx, acc);
}

SQ_INLINE void kr_iq4_nl(const blk_iq4_nl *w, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    (void)sx, (void)sm;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_values));
    kr_signed(_mm256_shuffle_epi8(table, nibbles32(w->qs)), h2f(w->d), y, dx, acc);
}

/* Q4_1 / Q5_1: unsigned values 0..15 / 0..31 straight into dp_u8s8. */
SQ_INLINE void kr_unsigned(__m256i q, float dw, float mw, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    const __m256i p = dp_u8s8(_mm256_setzero_si256(), q, y);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(p), *acc);
    *sm += mw * sx;
}

SQ_INLINE void kr_q4_1(const blk_q4_1 *w, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    kr_unsigned(nibbles32(w->qs), h2f(w->d), h2f(w->m), y, dx, sx, acc, sm);
}

SQ_INLINE void kr_q5_1(const blk_q5_1 *w, __m256i y, float dx, float sx, __m256 *acc, float *sm)
{
    kr_unsigned(q5_values(w->qs, w->qh), h2f(w->d), h2f(w->m), y, dx, sx, acc, sm);
}

/* Activations of block i of a run for the band: Q8_0 (S = 0) or Q8_1 (S = 1). */
SQ_INLINE __m256i kr_act(const void *xr, int64_t i, float *dx, float *sx, const int S)
{
    if (S) {
        const blk_q8_1 *b = (const blk_q8_1 *)xr + i;
        *dx = h2f(b->d), *sx = h2f(b->s);
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    const blk_q8_0 *b = (const blk_q8_0 *)xr + i;
    *dx = h2f(b->d), *sx = 0.0f;
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

/* One 32-value run of NR rows (run kernels): per block, the activations once,
 * then each row's step into acc[r] (a __m256) and sm[r]. Expects nb32 (the
 * run's 32-value blocks), wr, xr, ws, NR and float sm[NR] in scope. */
#define KR32_RUN(T, S, ACC)                                                                                 \
    for (int64_t i = 0; i < nb32; i++) {                                                                    \
        float dx, sx;                                                                                       \
        const __m256i ya = kr_act(xr, i, &dx, &sx, S);                                                      \
        SQ_UNROLL for (int r = 0; r < NR; r++) {                                                            \
            if (PF && (i & 7) == 0) kr_prefetch(wr + (size_t)r * ws + 4 * ws + (size_t)i * sizeof(blk_##T), 8 * sizeof(blk_##T)); \
            kr_##T((const blk_##T *)(wr + (size_t)r * ws) + i, ya, dx, sx, &(ACC)[r], &sm[r]);             \
        }                                                                                                   \
    }

/* Requests the n bytes at p into the cache (KR32_RUN with PF: every 8 blocks,
 * the next 8 blocks of the next band's row, as the 256-value steps do per block). */
SQ_INLINE void kr_prefetch(const char *p, size_t n)
{
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

/* Whether any run is of a 32-value type (the run kernels then take the band
 * with KR32_CASES; without, they keep the K-quant-only band). */
SQ_INLINE bool kr32_type(int t)
{
    return t == SQ_TYPE_Q4_0 || t == SQ_TYPE_Q4_1 || t == SQ_TYPE_Q5_0 || t == SQ_TYPE_Q5_1 || t == SQ_TYPE_Q8_0 ||
           t == SQ_TYPE_IQ4_NL;
}

SQ_INLINE bool runs_legacy(const sq__krun *run, int nrun)
{
    for (int j = 0; j < nrun; j++)
        if (kr32_type(run[j].type)) return true;
    return false;
}

/* The cases of the 32-value types in a run kernel's switch on the run type. */
#define KR32_CASES(ACC)                                                                                     \
    case SQ_TYPE_Q4_0: KR32_RUN(q4_0, 0, ACC) break;                                                        \
    case SQ_TYPE_Q5_0: KR32_RUN(q5_0, 0, ACC) break;                                                        \
    case SQ_TYPE_Q8_0: KR32_RUN(q8_0, 0, ACC) break;                                                        \
    case SQ_TYPE_IQ4_NL: KR32_RUN(iq4_nl, 0, ACC) break;                                                    \
    case SQ_TYPE_Q4_1: KR32_RUN(q4_1, 1, ACC) break;                                                        \
    case SQ_TYPE_Q5_1: KR32_RUN(q5_1, 1, ACC) break;

#endif
