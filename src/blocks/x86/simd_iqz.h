/*
 * simd_iqz.h — 512-bit single-row dot products of codebook types (IQ2_S)
 * with Q8_K activations, for vec_dot and the run kernel of simd_zmm.h on
 * AVX-512 BW + VNNI (included by simd_zmm.h after its scale tables, whose
 * kz_s16_idx spreads the per-16 scales here; the
 * multi-column tiles keep simd_iq.h's 256-bit steps).
 *
 * IQ2_S per 64 values: one 8-qword gather of grid points (unsigned
 * magnitudes), the 64 sign bits of the block taken straight as a mask
 * register (IQ2_S stores one plain sign bit per value, in value order) that
 * negates the activations with a masked subtraction, vpmaddubsw, and
 * vpdpwssd with the per-16 scales (2l+1) spread by vpermw. The 32 grid
 * indices of a block are built in two registers of 16 (low byte from qs,
 * the 2 high bits from the 64-bit qh word by a variable shift). Integer sums
 * are exact; one float multiply-add per block.
 */
#ifndef SQ_X86_SIMD_IQZ_H
#define SQ_X86_SIMD_IQZ_H

#include "simd_iq.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* Lane k of 16: the shift that brings index k's 2 high qh bits (bits 2k,
 * 2k+1 of a 32-bit qh word) to bits 0-1. */
static const _Alignas(64) int32_t iqz_qh_shift[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};


/* The 10-bit grid indices of IQ2_S groups 16h..16h+15 (8 values each):
 * qs[g] | (bits 2g, 2g+1 of the qh word h) << 8. */
SQ_INLINE __m512i iqz_iq2s_idx(const blk_iq2_s *b, int h)
{
    uint32_t qh;
    memcpy(&qh, b->qh + 4 * h, 4);
    const __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + 16 * h)));
    const __m512i hi = _mm512_srlv_epi32(_mm512_set1_epi32((int)qh), _mm512_load_si512((const void *)iqz_qh_shift));
    /* lo | (hi << 8 & 0x300) */
    return _mm512_ternarylogic_epi32(lo, _mm512_slli_epi32(hi, 8), _mm512_set1_epi32(0x300), 0xF8);
}

/* One IQ2_S block of one row against its Q8_K block x, into acc:
 * d·dy/8 · Σ_g Σ (2l+1)·mag·sign·y. */
SQ_INLINE void kzs_iq2_s(const blk_iq2_s *b, const blk_q8_K *x, __m512 *acc)
{
    const __m128i raw = _mm_loadl_epi64((const __m128i *)b->scales), m4 = _mm_set1_epi8(0x0F);
    const __m128i nib = _mm_unpacklo_epi8(_mm_and_si128(raw, m4), _mm_and_si128(_mm_srli_epi16(raw, 4), m4));
    const __m256i odd = _mm256_add_epi16(_mm256_slli_epi16(_mm256_cvtepu8_epi16(nib), 1), _mm256_set1_epi16(1));
    const __m512i sc16 = _mm512_castsi256_si512(odd);
    const __m512i idx[2] = { iqz_iq2s_idx(b, 0), iqz_iq2s_idx(b, 1) };
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __m256i ix = g % 2 ? _mm512_extracti64x4_epi64(idx[g / 2], 1) : _mm512_castsi512_si256(idx[g / 2]);
        const __m512i mag = _mm512_i32gather_epi64(ix, (const void *)sq__iq2s_grid, 8);
        uint64_t sbits;
        memcpy(&sbits, b->qs + 32 + 8 * g, 8);
        const __m512i y = _mm512_loadu_si512(x->qs + 64 * g);
        const __m512i sy = _mm512_mask_sub_epi8(y, _cvtu64_mask64(sbits), _mm512_setzero_si512(), y);
        const __m512i s = _mm512_permutexvar_epi16(KZ_TAB(kz_s16_idx, g), sc16);
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(mag, sy), s);
    }
    const float d = 0.125f * h2f(b->d);
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(d * x->d), _mm512_cvtepi32_ps(isum), *acc);
}

/* vec_dot of IQ2_S: the block step over the row, one reduction. */
static float vdot_iq2_s_zmm(int64_t n, const void *vw, const void *vx)
{
    const blk_iq2_s *w = vw;
    const blk_q8_K *x = vx;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) kzs_iq2_s(w + i, x + i, &acc);
    return _mm512_reduce_add_ps(acc);
}

/* The types this file serves in the run kernel (kz_band, simd_zmm.h). */
SQ_INLINE bool kz_iqz_type(int t) { return t == SQ_TYPE_IQ2_S; }

/* A run of these types in a band of NR rows: per block, each row's step into
 * its 512-bit accumulator ACC[r]. Expects nb, wr, xr, ws and NR in scope. */
#define KZ_IQZ_CASES(ACC)                                                                                    \
    case SQ_TYPE_IQ2_S:                                                                                     \
        for (int64_t i = 0; i < nb; i++)                                                                    \
            SQ_UNROLL for (int r = 0; r < NR; r++) kzs_iq2_s((const blk_iq2_s *)(wr + (size_t)r * ws) + i, xr + i, &(ACC)[r]); \
        break;

/* vec_dot entries over the 256-bit ones (simd_register.h). */
#define SQ_IQZ_REGISTER(table) (table)[SQ_TYPE_IQ2_S].vec_dot = vdot_iq2_s_zmm

#endif
#endif
