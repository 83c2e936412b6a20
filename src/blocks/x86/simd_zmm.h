/*
 * simd_zmm.h — 512-bit single-row dot products for the hottest K-quants
 * (Q4_K, Q6_K) on AVX-512 BW + VNNI: a whole 64-value group per instruction,
 * half the instruction count of the 256-bit template in simd_dot.h. Used for
 * vec_dot (the matrix-vector product of token generation); the multi-column
 * tile kernels keep the 256-bit template, whose per-column work dominates.
 */
#ifndef SQ_X86_SIMD_ZMM_H
#define SQ_X86_SIMD_ZMM_H

#include "simd_dot.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* int16 lanes: lane i takes element idx[i] of the 16 int16 scales. */
SQ_INLINE __m512i spread_scales16(__m512i sc16, __m512i idx) { return _mm512_permutexvar_epi16(idx, sc16); }

SQ_INLINE float kz_q4_K(int64_t n, const void *vw, const void *vx)
{
    const blk_q4_K *w = vw;
    const blk_q8_K *x = vx;
    const int64_t nb = n / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* group g of 64 values: lanes 0..15 scale 2g, lanes 16..31 scale 2g+1 */
    __m512i idx[4];
    for (int g = 0; g < 4; g++)
        idx[g] = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)(2 * g)),
                                         _mm512_set1_epi16((short)(2 * g + 1)));
    __m256 acc = _mm256_setzero_ps();
    __m512 accz = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sm[16];
        unpack_k4_scales(w[i].scales, sm);
        const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sm)));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i z = _mm512_loadu_si512(w[i].qs + 64 * h);
            const __m512i lo = _mm512_and_si512(z, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
            const __m512i qa = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0)); /* values 128h+0..63 */
            const __m512i qb = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2)); /* values 128h+64..127 */
            const __m512i ya = _mm512_loadu_si512(x[i].qs + 128 * h);
            const __m512i yb = _mm512_loadu_si512(x[i].qs + 128 * h + 64);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qa, ya), spread_scales16(sc16, idx[2 * h]));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qb, yb), spread_scales16(sc16, idx[2 * h + 1]));
        }
        const __m128i mins8 = _mm_loadl_epi64((const __m128i *)(sm + 8));
        const __m256i mb = mins_times_bsums(x[i].bsums, mins8);
        accz = _mm512_fmadd_ps(_mm512_set1_ps(h2f(w[i].d) * x[i].d), _mm512_cvtepi32_ps(isum), accz);
        acc = _mm256_fnmadd_ps(_mm256_set1_ps(h2f(w[i].dmin) * x[i].d), _mm256_cvtepi32_ps(mb), acc);
    }
    return _mm512_reduce_add_ps(accz) + hsum_ps(acc);
}

SQ_INLINE float kz_q6_K(int64_t n, const void *vw, const void *vx)
{
    const blk_q6_K *w = vw;
    const blk_q8_K *x = vx;
    const int64_t nb = n / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x30);
    /* per-256-bit-half shifts that bring the 2 high bits of each value to bits 4..5 */
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_b = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    /* 64 values = 4 scales of 16: lanes 8k..8k+7 take scale base + k */
    __m512i idx[4];
    for (int g = 0; g < 4; g++) {
        int16_t t[32];
        for (int l = 0; l < 32; l++) t[l] = (int16_t)(4 * g + l / 8);
        idx[g] = _mm512_loadu_si512(t);
    }
    __m512 accz = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i l01 = _mm512_loadu_si512(w[i].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h)));
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(l01, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl_a), m3));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l01, 4), m4),
                                               _mm512_and_si512(_mm512_srlv_epi16(qh, shr_b), m3));
            const __m512i ya = _mm512_loadu_si512(x[i].qs + 128 * h);
            const __m512i yb = _mm512_loadu_si512(x[i].qs + 128 * h + 64);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qa, ya), spread_scales16(sc16, idx[2 * h]));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qb, yb), spread_scales16(sc16, idx[2 * h + 1]));
        }
        const __m256i corr = _mm256_slli_epi32(scales16_times_bsums(x[i].bsums, _mm256_cvtepi8_epi16(sc8)), 5);
        const __m512i tot = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(corr));
        accz = _mm512_fmadd_ps(_mm512_set1_ps(h2f(w[i].d) * x[i].d), _mm512_cvtepi32_ps(tot), accz);
    }
    return _mm512_reduce_add_ps(accz);
}

/* Q3_K: the 2-bit low parts of 64 values come from one 32-byte qs half with
 * per-256-bit shifts (0|2 then 4|6), the third bit from hmask likewise. */
SQ_INLINE float kz_q3_K(int64_t n, const void *vw, const void *vx)
{
    const blk_q3_K *w = vw;
    const blk_q8_K *x = vx;
    const int64_t nb = n / 256;
    const __m512i m3 = _mm512_set1_epi8(3), b4 = _mm512_set1_epi8(4), one = _mm512_set1_epi8(1);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i hbit_a = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(1), 1);
    const __m512i hbit_b = _mm512_inserti64x4(_mm512_set1_epi16(2), _mm256_set1_epi16(3), 1);
    __m512i idx[4];
    for (int g = 0; g < 4; g++) {
        int16_t t[32];
        for (int l = 0; l < 32; l++) t[l] = (int16_t)(4 * g + l / 8);
        idx[g] = _mm512_loadu_si512(t);
    }
    __m512 accz = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        int8_t sc[16];
        unpack_q3k_scales(w[i].scales, sc);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
        const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8));
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w[i].hmask));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * h)));
            /* hmask bit 4h+j is the third bit of values 128h+32j+l */
            const __m512i hsh_a = _mm512_add_epi16(hbit_a, _mm512_set1_epi16((short)(4 * h))); /* 4h | 4h+1 */
            const __m512i ha = _mm512_and_si512(_mm512_srlv_epi16(hm, hsh_a), one);
            const __m512i hsh_b = _mm512_add_epi16(hbit_b, _mm512_set1_epi16((short)(4 * h))); /* 4h+2 | 4h+3 */
            const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(hm, hsh_b), one);
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi16(raw, sh_a), m3),
                                               _mm512_and_si512(_mm512_slli_epi16(ha, 2), b4));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi16(raw, sh_b), m3),
                                               _mm512_and_si512(_mm512_slli_epi16(hb, 2), b4));
            const __m512i ya = _mm512_loadu_si512(x[i].qs + 128 * h);
            const __m512i yb = _mm512_loadu_si512(x[i].qs + 128 * h + 64);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qa, ya), spread_scales16(sc16, idx[2 * h]));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qb, yb), spread_scales16(sc16, idx[2 * h + 1]));
        }
        const __m256i corr = _mm256_slli_epi32(scales16_times_bsums(x[i].bsums, _mm256_cvtepi8_epi16(sc8)), 2);
        const __m512i tot = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(corr));
        accz = _mm512_fmadd_ps(_mm512_set1_ps(h2f(w[i].d) * x[i].d), _mm512_cvtepi32_ps(tot), accz);
    }
    return _mm512_reduce_add_ps(accz);
}

/* Q2_K: 2-bit values, 64 at a time from one 32-byte qs half (shifts 0|2 and
 * 4|6 per 256-bit half); a 4-bit scale and a 4-bit min per 16. */
SQ_INLINE float kz_q2_K(int64_t n, const void *vw, const void *vx)
{
    const blk_q2_K *w = vw;
    const blk_q8_K *x = vx;
    const int64_t nb = n / 256;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512i idx[4];
    for (int g = 0; g < 4; g++) {
        int16_t t[32];
        for (int l = 0; l < 32; l++) t[l] = (int16_t)(4 * g + l / 8);
        idx[g] = _mm512_loadu_si512(t);
    }
    __m512 accz = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
        const __m512i sc16 = _mm512_castsi256_si512(sc);
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * h)));
            const __m512i qa = _mm512_and_si512(_mm512_srlv_epi16(raw, sh_a), m3);
            const __m512i qb = _mm512_and_si512(_mm512_srlv_epi16(raw, sh_b), m3);
            const __m512i ya = _mm512_loadu_si512(x[i].qs + 128 * h);
            const __m512i yb = _mm512_loadu_si512(x[i].qs + 128 * h + 64);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qa, ya), spread_scales16(sc16, idx[2 * h]));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qb, yb), spread_scales16(sc16, idx[2 * h + 1]));
        }
        const __m256i mb = scales16_times_bsums(x[i].bsums, mn);
        accz = _mm512_fmadd_ps(_mm512_set1_ps(h2f(w[i].d) * x[i].d), _mm512_cvtepi32_ps(isum), accz);
        accm = _mm256_fnmadd_ps(_mm256_set1_ps(h2f(w[i].dmin) * x[i].d), _mm256_cvtepi32_ps(mb), accm);
    }
    return _mm512_reduce_add_ps(accz) + hsum_ps(accm);
}

/* Q5_K: as Q4_K, with the fifth bit of values 64p+l / 64p+32+l in bit 2p / 2p+1 of qh[l]. */
SQ_INLINE float kz_q5_K(int64_t n, const void *vw, const void *vx)
{
    const blk_q5_K *w = vw;
    const blk_q8_K *x = vx;
    const int64_t nb = n / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(0x10);
    const __m512i hbit = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(1), 1);
    __m512i idx[4];
    for (int g = 0; g < 4; g++)
        idx[g] = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)(2 * g)),
                                         _mm512_set1_epi16((short)(2 * g + 1)));
    __m256 acc = _mm256_setzero_ps();
    __m512 accz = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sm[16];
        unpack_k4_scales(w[i].scales, sm);
        const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sm)));
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w[i].qh));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i z = _mm512_loadu_si512(w[i].qs + 64 * h);
            const __m512i lo = _mm512_and_si512(z, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
            const __m512i sa = _mm512_add_epi16(hbit, _mm512_set1_epi16((short)(4 * h)));
            const __m512i sb = _mm512_add_epi16(hbit, _mm512_set1_epi16((short)(4 * h + 2)));
            const __m512i ha = _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi16(qh, sa), 4), b16);
            const __m512i hb = _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi16(qh, sb), 4), b16);
            const __m512i qa = _mm512_or_si512(_mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0)), ha);
            const __m512i qb = _mm512_or_si512(_mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2)), hb);
            const __m512i ya = _mm512_loadu_si512(x[i].qs + 128 * h);
            const __m512i yb = _mm512_loadu_si512(x[i].qs + 128 * h + 64);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qa, ya), spread_scales16(sc16, idx[2 * h]));
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(qb, yb), spread_scales16(sc16, idx[2 * h + 1]));
        }
        const __m128i mins8 = _mm_loadl_epi64((const __m128i *)(sm + 8));
        const __m256i mb = mins_times_bsums(x[i].bsums, mins8);
        accz = _mm512_fmadd_ps(_mm512_set1_ps(h2f(w[i].d) * x[i].d), _mm512_cvtepi32_ps(isum), accz);
        acc = _mm256_fnmadd_ps(_mm256_set1_ps(h2f(w[i].dmin) * x[i].d), _mm256_cvtepi32_ps(mb), acc);
    }
    return _mm512_reduce_add_ps(accz) + hsum_ps(acc);
}


/* vec_dot entries and multi-row entries of the single-row bodies above. The
 * multi-row form (gemm.h, sq__rows_fn) is the matrix-vector product over a
 * band of rows for one run of segments: the bodies are inlined into the row
 * loop, so their constants are built once per call instead of once per row
 * and there is one call (one vzeroupper) per band instead of one per row. */
#define SQ_DEFINE_ZMM_ROWS(T)                                                                               \
    static float vdot_##T##_zmm(int64_t n, const void *w, const void *x) { return kz_##T(n, w, x); }        \
    static void rows_##T##_zmm(int64_t n, const void *w, size_t ws, int nr, const void *x, float *y,          \
                               bool accumulate)                                                             \
    {                                                                                                       \
        if (accumulate)                                                                                     \
            for (int r = 0; r < nr; r++) y[r] += kz_##T(n, (const char *)w + (size_t)r * ws, x);            \
        else                                                                                                \
            for (int r = 0; r < nr; r++) y[r] = kz_##T(n, (const char *)w + (size_t)r * ws, x);             \
    }
SQ_DEFINE_ZMM_ROWS(q2_K)
SQ_DEFINE_ZMM_ROWS(q3_K)
SQ_DEFINE_ZMM_ROWS(q4_K)
SQ_DEFINE_ZMM_ROWS(q5_K)
SQ_DEFINE_ZMM_ROWS(q6_K)
#undef SQ_DEFINE_ZMM_ROWS


/* IQ4_XS: |code value| times the activations with the code's sign applied
 * (AVX-512 has no vpsignb: a masked subtraction), pairs summed to int16 and
 * scaled by the 6-bit block scales with vpdpwssd. */
SQ_INLINE void k_iq4_xs_zmm(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_iq4_xs *w = vw;
    const int64_t nb = n / 256;
    /* |code value| table; the codes of nibbles 0..7 are negative, 8..15 positive */
    const __m128i t8 = _mm_abs_epi8(_mm_loadu_si128((const __m128i *)iq4nl_values));
    const __m512i table = _mm512_broadcast_i32x4(t8);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* int16 lanes 0..15 take scale 2k, lanes 16..31 scale 2k+1 */
    __m512i idx[4];
    for (int k = 0; k < 4; k++)
        idx[k] = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)(2 * k)),
                                         _mm512_set1_epi16((short)(2 * k + 1)));
    __m512 accz[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) accz[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m512i ls16 = _mm512_castsi128_si512(iq4xs_scales16(w[i].scales_l, w[i].scales_h));
        __m512i isum[MAXNC];
        SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            /* sub-blocks 2k, 2k+1: 16 bytes each, low nibbles = first 16 values */
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * k));
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); /* lo0 lo1 hi0 hi1 */
            const __m512i ordered = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0)); /* lo0 hi0 lo1 hi1 */
            const __m512i aq = _mm512_shuffle_epi8(table, ordered);
            const __mmask64 neg = _mm512_cmplt_epu8_mask(ordered, _mm512_set1_epi8(8));
            const __m512i sk = _mm512_permutexvar_epi16(idx[k], ls16);
            SQ_UNROLL for (int c = 0; c < NC; c++) {
                const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
                const __m512i y = _mm512_loadu_si512(x->qs + 64 * k);
                /* ±y with the sign of the code value: |q|·±y pairs fit int16 (2·127·127) */
                const __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
                isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(aq, sy), sk);
            }
        }
        const float d = h2f(w[i].d);
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
            accz[c] = _mm512_fmadd_ps(_mm512_set1_ps(d * x->d), _mm512_cvtepi32_ps(isum[c]), accz[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = _mm512_reduce_add_ps(accz[c]);
}
#define k_iq4_xs_z k_iq4_xs_zmm
SQ_DEFINE_QUANT_KERNELS(iq4_xs_z)

/* ---- 32-value block types with Q8_0 activations: 2 rows × 4 columns ----
 * With VNNI, the activations are made unsigned (y + 128, shared by the rows)
 * and the bias is removed per weight block with 128·Σq (shared by the
 * columns): Σ q·y = vpdpbusd(−128·Σq, y+128, q). Each (row, column, block)
 * then costs one vpdpbusd, one conversion and two float operations. */
enum { Q80_Q4_0, Q80_Q5_0, Q80_Q8_0, Q80_IQ4_NL };

SQ_INLINE __m256i q80_decode(const void *row, int64_t i, const int kind, float *d)
{
    switch (kind) {
    case Q80_Q4_0: {
        const blk_q4_0 *b = (const blk_q4_0 *)row + i;
        *d = h2f(b->d);
        return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
    }
    case Q80_Q5_0: {
        const blk_q5_0 *b = (const blk_q5_0 *)row + i;
        *d = h2f(b->d);
        return _mm256_sub_epi8(q5_values(b->qs, b->qh), _mm256_set1_epi8(16));
    }
    case Q80_Q8_0: {
        const blk_q8_0 *b = (const blk_q8_0 *)row + i;
        *d = h2f(b->d);
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    default: {
        const blk_iq4_nl *b = (const blk_iq4_nl *)row + i;
        *d = h2f(b->d);
        const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_values));
        return _mm256_shuffle_epi8(table, nibbles32(b->qs));
    }
    }
}

SQ_INLINE void k_q80fam(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NR,
                        const int NC, const int kind)
{
    const int64_t nb = n / 32;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256 acc[2][MAXNC];
    SQ_UNROLL for (int r = 0; r < NR; r++) SQ_UNROLL for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i q[2], nqs[2];
        __m256 dw[2];
        SQ_UNROLL for (int r = 0; r < NR; r++) {
            float d;
            q[r] = q80_decode((const char *)vw + (size_t)r * ws, i, kind, &d);
            dw[r] = _mm256_set1_ps(d);
            nqs[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, q[r]));
        }
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_0 *x = XCOL(blk_q8_0, vx, xs, c) + i;
            const __m256i yu = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x->qs), bias);
            const __m256 dx = _mm256_set1_ps(h2f(x->d));
            SQ_UNROLL for (int r = 0; r < NR; r++) {
                const __m256i p = _mm256_dpbusd_epi32(nqs[r], yu, q[r]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(p), acc[r][c]);
            }
        }
    }
    SQ_UNROLL for (int r = 0; r < NR; r++) SQ_UNROLL for (int c = 0; c < NC; c++) out[c * NR + r] = hsum_ps(acc[r][c]);
}

#define Q80_TILE(K, NR_, NC_)                                                                                  \
    do {                                                                                                       \
        k_q80fam(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)c * xs, xs, s, NR_, NC_, K); \
        for (int cc = 0; cc < NC_; cc++)                                                                       \
            for (int rr = 0; rr < NR_; rr++) {                                                                 \
                float *dst = &y[(size_t)(c + cc) * ys + r + rr];                                               \
                *dst = s[cc * NR_ + rr] + (accumulate ? *dst : 0.0f);                                          \
            }                                                                                                  \
    } while (0)

#define SQ_DEFINE_Q80_GEMM(NAME, K)                                                                            \
    static void gemm_##NAME##_2x4(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, \
                                  float *y, size_t ys, bool accumulate)                                        \
    {                                                                                                          \
        float s[2 * MAXNC];                                                                                    \
        int c = 0;                                                                                             \
        for (; c + 4 <= nc; c += 4) {                                                                          \
            int r = 0;                                                                                         \
            for (; r + 2 <= nr; r += 2) Q80_TILE(K, 2, 4);                                                     \
            for (; r < nr; r++) Q80_TILE(K, 1, 4);                                                             \
        }                                                                                                      \
        for (; c < nc; c++) {                                                                                  \
            int r = 0;                                                                                         \
            for (; r + 2 <= nr; r += 2) Q80_TILE(K, 2, 1);                                                     \
            for (; r < nr; r++) Q80_TILE(K, 1, 1);                                                             \
        }                                                                                                      \
    }

SQ_DEFINE_Q80_GEMM(q4_0, Q80_Q4_0)
SQ_DEFINE_Q80_GEMM(q5_0, Q80_Q5_0)
SQ_DEFINE_Q80_GEMM(q8_0, Q80_Q8_0)
SQ_DEFINE_Q80_GEMM(iq4_nl, Q80_IQ4_NL)
#undef Q80_TILE

/* Tile kernels that replace the 256-bit ones (returns from SQ_GEMM_FN). */
#define SQ_ZMM_GEMM(type)                                  \
    do {                                                   \
        if ((type) == SQ_TYPE_IQ4_XS) return gemm_iq4_xs_z; \
        if ((type) == SQ_TYPE_Q4_0) return gemm_q4_0_2x4;   \
        if ((type) == SQ_TYPE_Q5_0) return gemm_q5_0_2x4;   \
        if ((type) == SQ_TYPE_Q8_0) return gemm_q8_0_2x4;   \
        if ((type) == SQ_TYPE_IQ4_NL) return gemm_iq4_nl_2x4; \
    } while (0)

/* Multi-row matrix-vector kernels (returns from sq__rows_avx512). */
#define SQ_ZMM_ROWS(type)                              \
    do {                                               \
        if ((type) == SQ_TYPE_Q2_K) return rows_q2_K_zmm; \
        if ((type) == SQ_TYPE_Q3_K) return rows_q3_K_zmm; \
        if ((type) == SQ_TYPE_Q4_K) return rows_q4_K_zmm; \
        if ((type) == SQ_TYPE_Q5_K) return rows_q5_K_zmm; \
        if ((type) == SQ_TYPE_Q6_K) return rows_q6_K_zmm; \
    } while (0)

#define SQ_ZMM_REGISTER(table)                            \
    do {                                                  \
        table[SQ_TYPE_Q4_K].vec_dot = vdot_q4_K_zmm;      \
        table[SQ_TYPE_Q6_K].vec_dot = vdot_q6_K_zmm;      \
        table[SQ_TYPE_Q3_K].vec_dot = vdot_q3_K_zmm;      \
        table[SQ_TYPE_Q5_K].vec_dot = vdot_q5_K_zmm;      \
        table[SQ_TYPE_Q2_K].vec_dot = vdot_q2_K_zmm;      \
        table[SQ_TYPE_IQ4_XS].vec_dot = vdot_iq4_xs_z;    \
    } while (0)

#endif
#endif
