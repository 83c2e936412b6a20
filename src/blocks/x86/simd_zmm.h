/*
 * simd_zmm.h — 512-bit single-row dot products for the hottest K-quants
 * (Q4_K, Q6_K) on AVX-512 BW + VNNI: a whole 64-value group per instruction,
 * half the instruction count of the 256-bit template in simd_dot.h. Used for
 * vec_dot (the matrix-vector product of token generation); the multi-column
 * tile kernels keep the 256-bit template, whose per-column work dominates.
 */
#ifndef SQ_X86_SIMD_ZMM_H
#define SQ_X86_SIMD_ZMM_H

#include "simd_common.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* int16 lanes: lane i takes element idx[i] of the 16 int16 scales. */
SQ_INLINE __m512i spread_scales16(__m512i sc16, __m512i idx) { return _mm512_permutexvar_epi16(idx, sc16); }

static float vdot_q4_K_zmm(int64_t n, const void *vw, const void *vx)
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

static float vdot_q6_K_zmm(int64_t n, const void *vw, const void *vx)
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

#define SQ_ZMM_REGISTER(table)                            \
    do {                                                  \
        table[SQ_TYPE_Q4_K].vec_dot = vdot_q4_K_zmm;      \
        table[SQ_TYPE_Q6_K].vec_dot = vdot_q6_K_zmm;      \
    } while (0)

#endif
#endif
