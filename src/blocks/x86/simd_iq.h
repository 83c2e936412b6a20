/*
 * simd_iq.h — the dot-product kernels of the codebook and ternary types
 * (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0) with
 * Q8_K activations, written once for 256-bit vectors and compiled by
 * kernels_avx2.c and kernels_avx512.c (VNNI's vpdpwssd in dp_s16), as the
 * K-quants of simd_dot.h.
 *
 * Each type has a per-block step kb_T (one 256-value block of one weight row
 * against NC activation columns, into acc[c]), from which simd_dot.h's
 * SQ_K_FROM_KB / SQ_DEFINE_QUANT_KERNELS make vec_dot and the tile kernel,
 * and which the run kernels call with NC = 1 per row.
 *
 * Per 32 values the weight side is unpacked once for all columns:
 *   - the codebook types load their grid points by one gather (8-byte
 *     points for IQ1/IQ2, 4-byte for IQ3; gather8x4 / gather4x8 below)
 *     as unsigned magnitudes, and their signs as a ±1 byte vector;
 *     per column: y with the signs applied (vpsignb), vpmaddubsw against the
 *     magnitudes, then the sub-block scales (2l+1) per int16 pair;
 *   - IQ1 folds its ±1/8 shift into the weights: 8*grid ± 1 (values ±1, ±7,
 *     ±9), so its dot is one integer sum times d·dy/8, no activation sums;
 *   - the ternary types dot their codes 0..2 with y and take Σy (the
 *     bsums) off the block's exact integer total.
 * Integer sums are exact; the float accumulation is per 8 lanes (results
 * agree with the scalar reference to float rounding; test_simd.c bounds it).
 */
#ifndef SQ_X86_SIMD_IQ_H
#define SQ_X86_SIMD_IQ_H

#include "../iq_grids.h"
#include "simd_dot.h"

typedef struct { uint16_t d; uint16_t qs[32]; } blk_iq2_xxs;
typedef struct { uint16_t d; uint16_t qs[32]; uint8_t scales[8]; } blk_iq2_xs;
typedef struct { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t scales[8]; } blk_iq2_s;
typedef struct { uint16_t d; uint8_t qs[96]; } blk_iq3_xxs;
typedef struct { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; } blk_iq3_s;
typedef struct { uint16_t d; uint8_t qs[32]; uint16_t qh[8]; } blk_iq1_s;
typedef struct { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; } blk_iq1_m;
typedef struct { uint8_t qs[48]; uint8_t qh[4]; uint16_t d; } blk_tq1_0;
typedef struct { uint8_t qs[64]; uint16_t d; } blk_tq2_0;

_Static_assert(sizeof(blk_iq2_xxs) == 66, "iq2_xxs layout");
_Static_assert(sizeof(blk_iq2_xs) == 74, "iq2_xs layout");
_Static_assert(sizeof(blk_iq2_s) == 82, "iq2_s layout");
_Static_assert(sizeof(blk_iq3_xxs) == 98, "iq3_xxs layout");
_Static_assert(sizeof(blk_iq3_s) == 110, "iq3_s layout");
_Static_assert(sizeof(blk_iq1_s) == 50, "iq1_s layout");
_Static_assert(sizeof(blk_iq1_m) == 56, "iq1_m layout");
_Static_assert(sizeof(blk_tq1_0) == 54, "tq1_0 layout");
_Static_assert(sizeof(blk_tq2_0) == 66, "tq2_0 layout");

/* ---- shared pieces ---- */

/* The signs of 32 values (bit k set: value k negative) in the form that
 * negates the activations: with AVX-512 BW a mask register for a masked
 * subtraction, with AVX2 ±1 bytes for vpsignb. */
#ifdef __AVX512BW__
typedef __mmask32 sq_signs;
SQ_INLINE sq_signs make_signs(uint32_t bits) { return _cvtu32_mask32(bits); }
SQ_INLINE __m256i apply_signs(__m256i y, sq_signs s) { return _mm256_mask_sub_epi8(y, s, _mm256_setzero_si256(), y); }
#else
typedef __m256i sq_signs;
SQ_INLINE sq_signs make_signs(uint32_t bits) { return _mm256_or_si256(bits_to_bytes(bits), _mm256_set1_epi8(1)); }
SQ_INLINE __m256i apply_signs(__m256i y, sq_signs s) { return _mm256_sign_epi8(y, s); }
#endif

/* Four 7-bit sign codes (bits 7k..7k+6 of a) as four sign bytes: each code
 * in its byte, bit 7 its parity (the sign of the eighth value, which makes
 * the count of negatives even: sq__ksigns_iq2xs computed, not looked up). */
SQ_INLINE uint32_t signs_from_codes(uint32_t a)
{
    const uint32_t x = (a & 0x7f) | (a << 1 & 0x7f00) | (a << 2 & 0x7f0000) | (a << 3 & 0x7f000000);
    uint32_t p = x ^ (x >> 4); /* bit 0 of each byte: the parity of its bits */
    p ^= p >> 2;
    p ^= p >> 1;
    return x | (p & 0x01010101u) << 7;
}

/* signs_from_codes on the 8 int32 lanes of a (the sign words of a block's 8
 * sub-blocks), stored to out[8]: the same bit operations, eight at a time. */
SQ_INLINE void signs_from_codes8(__m256i a, uint32_t out[8])
{
    const __m256i x = _mm256_or_si256(
        _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7f)),
                        _mm256_and_si256(_mm256_slli_epi32(a, 1), _mm256_set1_epi32(0x7f00))),
        _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi32(a, 2), _mm256_set1_epi32(0x7f0000)),
                        _mm256_and_si256(_mm256_slli_epi32(a, 3), _mm256_set1_epi32(0x7f000000))));
    __m256i p = _mm256_xor_si256(x, _mm256_srli_epi32(x, 4));
    p = _mm256_xor_si256(p, _mm256_srli_epi32(p, 2));
    p = _mm256_xor_si256(p, _mm256_srli_epi32(p, 1));
    const __m256i sg = _mm256_or_si256(x, _mm256_slli_epi32(_mm256_and_si256(p, _mm256_set1_epi32(0x01010101)), 7));
    _mm256_storeu_si256((__m256i *)out, sg);
}

/* The 8 scale codes in bits 28-31 of the lanes of a as int16 2l+1, stored to out[8]. */
SQ_INLINE void scale_codes8(__m256i a, int16_t out[8])
{
    const __m256i l = _mm256_add_epi32(_mm256_slli_epi32(_mm256_srli_epi32(a, 28), 1), _mm256_set1_epi32(1));
    _mm_storeu_si128((__m128i *)out, _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1)));
}

/* Grid points by index: four 8-byte points (IQ1/IQ2; point k in bytes
 * 8k..8k+7) or eight 4-byte ones (IQ3). One gather: on this machine kind it
 * beat scalar loads into a vector by 2.5x for IQ3_S. */
SQ_INLINE __m256i gather8x4(const uint64_t *grid, __m128i idx)
{
    return _mm256_i32gather_epi64((const long long *)grid, idx, 8);
}
SQ_INLINE __m256i gather4x8(const uint32_t *grid, __m256i idx) { return _mm256_i32gather_epi32((const int *)grid, idx, 4); }

/* Four / eight bytes at p zero-extended to int32 lanes. */
SQ_INLINE __m128i u8x4_epi32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)v));
}
SQ_INLINE __m256i u8x8_epi32(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

/* The 16 4-bit scale codes of IQ2_XS / IQ2_S (low nibble first) as int16
 * 2l+1, halves h: the 8 of chunks 4h..4h+3 in both 128-bit lanes, for
 * scale_pair16 (simd_common.h). */
SQ_INLINE void scales16_odd(const uint8_t *sc, __m256i s8x2[2])
{
    const __m128i raw = _mm_loadl_epi64((const __m128i *)sc);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i nib = _mm_unpacklo_epi8(_mm_and_si128(raw, m4), _mm_and_si128(_mm_srli_epi16(raw, 4), m4));
    const __m256i s = _mm256_add_epi16(_mm256_slli_epi16(_mm256_cvtepu8_epi16(nib), 1), _mm256_set1_epi16(1));
    s8x2[0] = _mm256_permute4x64_epi64(s, 0x44);
    s8x2[1] = _mm256_permute4x64_epi64(s, 0xEE);
}

/* isum[c] += (the magnitudes mag times the activations of chunk `off` with
 * the signs sg applied), pairs times the int16 scales s. */
SQ_INLINE void kb_signed_chunk(__m256i *isum, __m256i mag, sq_signs sg, __m256i s, const void *vx, size_t xs,
                               int64_t i, int off, const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i y = apply_signs(_mm256_loadu_si256((const __m256i *)(x->qs + off)), sg);
        isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(mag, y), s);
    }
}

/* The same with signed weights w (IQ1: 8·grid ± 1, never 0): |w| times y
 * with w's sign. */
SQ_INLINE void kb_weighted_chunk(__m256i *isum, __m256i w, __m256i s, const void *vx, size_t xs, int64_t i, int off,
                                 const int NC)
{
    const __m256i aw = _mm256_abs_epi8(w);
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(x->qs + off)), w);
        isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(aw, y), s);
    }
}

/* acc[c] += d·dy_c·isum[c]. */
SQ_INLINE void kb_finish(__m256 *acc, const __m256i *isum, float d, const void *vx, size_t xs, int64_t i,
                         const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
    }
}

#define KB_ZERO(isum) SQ_UNROLL for (int c = 0; c < NC; c++) (isum)[c] = _mm256_setzero_si256()

/* ---- IQ2 ---- */

/* IQ2_XXS: per 32 values 4 grid bytes, 4 sign codes and a scale code l in
 * one pair of words; d·dy/8 · Σ (2l+1)·Σ mag·sign·y. */
SQ_INLINE void kb_iq2_xxs(const blk_iq2_xxs *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq2_xxs *b = w + i;
    __m256i isum[MAXNC];
    KB_ZERO(isum);
    /* the 8 sign/scale words (the odd words of qs) at once */
    const __m256i lo = _mm256_loadu_si256((const __m256i *)b->qs), hi = _mm256_loadu_si256((const __m256i *)(b->qs + 16));
    const __m256i odd = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
    const __m256i words = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(lo, odd), _mm256_permutevar8x32_epi32(hi, odd), 0xF0);
    uint32_t sg[8];
    int16_t ls[8];
    signs_from_codes8(words, sg);
    scale_codes8(words, ls);
    for (int ib = 0; ib < 8; ib++) {
        uint32_t a0;
        memcpy(&a0, b->qs + 4 * ib, 4);
        const __m256i mag = gather8x4(sq__iq2xxs_grid, _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)a0)));
        kb_signed_chunk(isum, mag, make_signs(sg[ib]), _mm256_set1_epi16(ls[ib]), vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq2_xxs)

/* IQ2_XS: per group of 8 a uint16 of a 9-bit grid index and a 7-bit sign
 * code; a scale per 16 values. */
SQ_INLINE void kb_iq2_xs(const blk_iq2_xs *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq2_xs *b = w + i;
    __m256i isum[MAXNC], s8x2[2];
    KB_ZERO(isum);
    scales16_odd(b->scales, s8x2);
    /* the 32 sign bytes: code (bits 9-15 of each uint16) and its parity */
    const __m256i q0 = _mm256_loadu_si256((const __m256i *)b->qs), q1 = _mm256_loadu_si256((const __m256i *)(b->qs + 16));
    const __m256i codes = _mm256_permute4x64_epi64(_mm256_packus_epi16(_mm256_srli_epi16(q0, 9), _mm256_srli_epi16(q1, 9)), 0xD8);
    __m256i p = _mm256_xor_si256(codes, _mm256_srli_epi16(codes, 4));
    p = _mm256_xor_si256(p, _mm256_srli_epi16(p, 2));
    p = _mm256_xor_si256(p, _mm256_srli_epi16(p, 1));
    uint32_t sg[8];
    _mm256_storeu_si256((__m256i *)sg,
                        _mm256_or_si256(codes, _mm256_slli_epi16(_mm256_and_si256(p, _mm256_set1_epi8(1)), 7)));
    for (int h = 0; h < 2; h++)
        SQ_UNROLL for (int j = 0; j < 4; j++) {
            const int ib = 4 * h + j;
            const __m128i idx = _mm_and_si128(_mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + 4 * ib))),
                                              _mm_set1_epi32(511));
            kb_signed_chunk(isum, gather8x4(sq__iq2xs_grid, idx), make_signs(sg[ib]), scale_pair16(s8x2[h], j), vx, xs,
                            i, 32 * ib, NC);
        }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq2_xs)

/* IQ2_S: 10-bit grid indices (high bits in qh), 8 plain sign bits per 8, a
 * scale per 16 values. */
SQ_INLINE void kb_iq2_s(const blk_iq2_s *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq2_s *b = w + i;
    __m256i isum[MAXNC], s8x2[2];
    KB_ZERO(isum);
    scales16_odd(b->scales, s8x2);
    const __m128i hshift = _mm_setr_epi32(8, 6, 4, 2), hmask = _mm_set1_epi32(0x300);
    for (int h = 0; h < 2; h++)
        SQ_UNROLL for (int j = 0; j < 4; j++) {
            const int ib = 4 * h + j;
            const __m128i hi = _mm_and_si128(_mm_sllv_epi32(_mm_set1_epi32(b->qh[ib]), hshift), hmask);
            const __m128i idx = _mm_or_si128(u8x4_epi32(b->qs + 4 * ib), hi);
            uint32_t sbits;
            memcpy(&sbits, b->qs + 32 + 4 * ib, 4);
            kb_signed_chunk(isum, gather8x4(sq__iq2s_grid, idx), make_signs(sbits), scale_pair16(s8x2[h], j), vx, xs,
                            i, 32 * ib, NC);
        }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq2_s)

/* ---- IQ3 ---- */

/* IQ3_XXS: 8 grid bytes per 32 values, then per 32 a word of 4 sign codes
 * and the scale code; d·dy/4 · Σ (2l+1)·Σ mag·sign·y. */
SQ_INLINE void kb_iq3_xxs(const blk_iq3_xxs *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq3_xxs *b = w + i;
    __m256i isum[MAXNC];
    KB_ZERO(isum);
    const __m256i words = _mm256_loadu_si256((const __m256i *)(b->qs + 64));
    uint32_t sg[8];
    int16_t ls[8];
    signs_from_codes8(words, sg);
    scale_codes8(words, ls);
    for (int ib = 0; ib < 8; ib++)
        kb_signed_chunk(isum, gather4x8(sq__iq3xxs_grid, u8x8_epi32(b->qs + 8 * ib)), make_signs(sg[ib]),
                        _mm256_set1_epi16(ls[ib]), vx, xs, i, 32 * ib, NC);
    kb_finish(acc, isum, 0.25f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq3_xxs)

/* IQ3_S: 9-bit grid indices (the ninth bit of point k is bit k of qh), 8 sign
 * bits per 8, a scale per 32; d·dy · Σ (2l+1)·Σ mag·sign·y. */
SQ_INLINE void kb_iq3_s(const blk_iq3_s *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq3_s *b = w + i;
    __m256i isum[MAXNC];
    KB_ZERO(isum);
    const __m256i hshift = _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1), bit8 = _mm256_set1_epi32(256);
    for (int ib = 0; ib < 8; ib++) {
        const __m256i hi = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(b->qh[ib]), hshift), bit8);
        const __m256i idx = _mm256_or_si256(u8x8_epi32(b->qs + 8 * ib), hi);
        uint32_t sbits;
        memcpy(&sbits, b->signs + 4 * ib, 4);
        const __m256i s = _mm256_set1_epi16((short)(2 * ((b->scales[ib / 2] >> 4 * (ib % 2)) & 15) + 1));
        kb_signed_chunk(isum, gather4x8(sq__iq3s_grid, idx), make_signs(sbits), s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq3_s)

/* ---- IQ1 ---- */

/* The weights 8·grid ± 1 of four 8-value groups: the grid values (-1, 0, 1)
 * times 8 (vpsignb of 8), plus the shift ±1 (one byte per value). */
SQ_INLINE __m256i iq1_weights8(__m256i g, __m256i shift)
{
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), shift);
}

/* IQ1_S: 11-bit grid indices (low 8 bits in qs, group k's high 3 bits at
 * bits 3k of the sub-block's qh), a scale and a shift sign per 32 values;
 * d·dy/8 · Σ (2l+1)·Σ (8g ± 1)·y. */
SQ_INLINE void kb_iq1_s(const blk_iq1_s *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq1_s *b = w + i;
    __m256i isum[MAXNC];
    KB_ZERO(isum);
    const __m128i hshift = _mm_setr_epi32(0, 3, 6, 9), hmask = _mm_set1_epi32(0x700);
    for (int ib = 0; ib < 8; ib++) {
        const int h = b->qh[ib];
        const __m128i idx = _mm_or_si128(u8x4_epi32(b->qs + 4 * ib), _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(h << 8), hshift), hmask));
        const __m256i shift = _mm256_set1_epi8(h & 0x8000 ? -1 : 1);
        const __m256i s = _mm256_set1_epi16((short)(2 * ((h >> 12) & 7) + 1));
        kb_weighted_chunk(isum, iq1_weights8(gather8x4(sq__iq1s_grid, idx), shift), s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq1_s)

/* IQ1_M: per 16 values a 3-bit scale, per 8 a shift sign (bit 3 of its qh
 * nibble); the fp16 d is spread over the top nibbles of the scale words. */
SQ_INLINE void kb_iq1_m(const blk_iq1_m *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq1_m *b = w + i;
    uint16_t sc[4];
    memcpy(sc, b->scales, sizeof sc);
    const uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    __m256i isum[MAXNC];
    KB_ZERO(isum);
    const __m128i hshift = _mm_setr_epi32(0, 4, 8, 12), hmask = _mm_set1_epi32(0x700);
    const __m256i negbit = _mm256_setr_epi64x(1 << 3, 1 << 7, 1 << 11, 1 << 15);
    for (int ib = 0; ib < 8; ib++) {
        uint16_t hw;
        memcpy(&hw, b->qh + 2 * ib, 2);
        const __m128i idx = _mm_or_si128(u8x4_epi32(b->qs + 4 * ib), _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(hw << 8), hshift), hmask));
        /* +1 where the group's sign bit is clear, -1 where set */
        const __m256i pos = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(hw), negbit), _mm256_setzero_si256());
        const __m256i shift = _mm256_sub_epi8(_mm256_and_si256(pos, _mm256_set1_epi8(2)), _mm256_set1_epi8(1));
        const int s16 = sc[ib / 2] >> (6 * (ib % 2));
        const __m256i s = _mm256_set_m128i(_mm_set1_epi16((short)(2 * ((s16 >> 3) & 7) + 1)), _mm_set1_epi16((short)(2 * (s16 & 7) + 1)));
        kb_weighted_chunk(isum, iq1_weights8(gather8x4(sq__iq1s_grid, idx), shift), s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(dh), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq1_m)

/* ---- ternary ---- */

/* isum16[c] += the codes (0..2, value code - 1) times the activations of
 * chunk `off`, pairs summed (int16; at most 8 chunks of 2·3·127 per lane). */
SQ_INLINE void kb_code_chunk(__m256i *isum16, __m256i codes, const void *vx, size_t xs, int64_t i, int off, const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        isum16[c] = _mm256_add_epi16(isum16[c],
                                     _mm256_maddubs_epi16(codes, _mm256_loadu_si256((const __m256i *)(x->qs + off))));
    }
}

/* acc[c] += d·dy_c·(Σ codes·y − Σ y), the block's exact integer total
 * converted once. (Lane by lane, Σ codes·y and the bsums' Σ y cover
 * different values: their per-lane differences can be as large as Σ|y|, and
 * rounding them separately measured errors beyond 1e-5 of Σ|w·x| on sparse
 * rows; the total is exact.) */
SQ_INLINE void kb_ternary_finish(__m256 *acc, const __m256i *isum16, float d, const void *vx, size_t xs, int64_t i,
                                 const int NC)
{
    const __m256i ones = _mm256_set1_epi16(1);
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i ysum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), ones);
        const int tot = hsum_epi32(_mm256_sub_epi32(_mm256_madd_epi16(isum16[c], ones), ysum));
        acc[c] = _mm256_add_ps(acc[c], _mm256_blend_ps(_mm256_setzero_ps(), _mm256_set1_ps(d * x->d * (float)tot), 1));
    }
}

/* TQ2_0: 2-bit codes, byte m of each 32-byte group holding values m + 32k. */
SQ_INLINE void kb_tq2_0(const blk_tq2_0 *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_tq2_0 *b = w + i;
    __m256i isum16[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum16[c] = _mm256_setzero_si256();
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * h));
        SQ_UNROLL for (int k = 0; k < 4; k++) {
            const __m256i codes = _mm256_and_si256(k ? _mm256_srli_epi16(raw, 2 * k) : raw, _mm256_set1_epi8(3));
            kb_code_chunk(isum16, codes, vx, xs, i, 128 * h + 32 * k, NC);
        }
    }
    kb_ternary_finish(acc, isum16, h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(tq2_0)

/* Trit n of every byte of v, as ggml reads it: ((v·3^n mod 256)·3) >> 8,
 * with the multiplier 3^n of each byte given per int16 lane for the even
 * (m_even) and odd (m_odd) bytes. A byte in the high half of its lane times
 * the multiplier is exact mod 256; vpmulhuw by 3 takes the top bits. */
SQ_INLINE __m256i trits(__m256i v, __m256i m_even, __m256i m_odd)
{
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i e = _mm256_mulhi_epu16(_mm256_mullo_epi16(_mm256_slli_epi16(v, 8), m_even), three);
    const __m256i o = _mm256_mulhi_epu16(_mm256_mullo_epi16(_mm256_and_si256(v, _mm256_set1_epi16((short)0xFF00)), m_odd),
                                         three);
    return _mm256_or_si256(e, _mm256_slli_epi16(o, 8));
}

/* TQ1_0: 5 trits per byte of qs (values m + 32n in the first 32 bytes,
 * 160 + m + 16n in the next 16), 4 per byte of qh (240 + j + 4n). */
SQ_INLINE void kb_tq1_0(const blk_tq1_0 *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    static const short pow3[5] = {1, 3, 9, 27, 81};
    const blk_tq1_0 *b = w + i;
    __m256i isum16[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum16[c] = _mm256_setzero_si256();
    const __m256i q32 = _mm256_loadu_si256((const __m256i *)b->qs);
    SQ_UNROLL for (int n = 0; n < 5; n++) {
        const __m256i m = _mm256_set1_epi16(pow3[n]);
        kb_code_chunk(isum16, trits(q32, m, m), vx, xs, i, 32 * n, NC);
    }
    const __m256i q16 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b->qs + 32)));
    SQ_UNROLL for (int n = 0; n < 4; n += 2) {
        const __m256i m = _mm256_set_m128i(_mm_set1_epi16(pow3[n + 1]), _mm_set1_epi16(pow3[n]));
        kb_code_chunk(isum16, trits(q16, m, m), vx, xs, i, 160 + 16 * n, NC);
    }
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    /* low half: the last trits of the 16 bytes; high half: qh four times, trit n of copy n */
    const __m256i last = _mm256_set_m128i(_mm_set1_epi32((int)qh), _mm_loadu_si128((const __m128i *)(b->qs + 32)));
    const __m256i m = _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);
    kb_code_chunk(isum16, trits(last, m, m), vx, xs, i, 224, NC);
    kb_ternary_finish(acc, isum16, h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(tq1_0)

SQ_DEFINE_QUANT_KERNELS(iq2_xxs)
SQ_DEFINE_QUANT_KERNELS(iq2_xs)
SQ_DEFINE_QUANT_KERNELS(iq2_s)
SQ_DEFINE_QUANT_KERNELS(iq3_xxs)
SQ_DEFINE_QUANT_KERNELS(iq3_s)
SQ_DEFINE_QUANT_KERNELS(iq1_s)
SQ_DEFINE_QUANT_KERNELS(iq1_m)
SQ_DEFINE_QUANT_KERNELS(tq1_0)
SQ_DEFINE_QUANT_KERNELS(tq2_0)

/* Whether the run kernels take type t through this file's kb_T steps. */
SQ_INLINE bool kb_iq_type(int t)
{
    return t == SQ_TYPE_IQ2_XXS || t == SQ_TYPE_IQ2_XS || t == SQ_TYPE_IQ2_S || t == SQ_TYPE_IQ3_XXS ||
           t == SQ_TYPE_IQ3_S || t == SQ_TYPE_IQ1_S || t == SQ_TYPE_IQ1_M || t == SQ_TYPE_TQ1_0 || t == SQ_TYPE_TQ2_0;
}

/* The cases of these types in a run kernel's switch on the run type: one
 * block of each of NR rows into ACC[r] (a __m256), per block. Expects nb,
 * wr, xr, ws and NR in scope. */
#define KB_IQ_RUN(T, ACC)                                                                                   \
    for (int64_t i = 0; i < nb; i++)                                                                        \
        SQ_UNROLL for (int r = 0; r < NR; r++) kb_##T((const blk_##T *)(wr + (size_t)r * ws), i, xr, 0, &(ACC)[r], 1);
#define KB_IQ_CASES(ACC)                                                                                    \
    case SQ_TYPE_IQ2_XXS: KB_IQ_RUN(iq2_xxs, ACC) break;                                                    \
    case SQ_TYPE_IQ2_XS: KB_IQ_RUN(iq2_xs, ACC) break;                                                      \
    case SQ_TYPE_IQ2_S: KB_IQ_RUN(iq2_s, ACC) break;                                                        \
    case SQ_TYPE_IQ3_XXS: KB_IQ_RUN(iq3_xxs, ACC) break;                                                    \
    case SQ_TYPE_IQ3_S: KB_IQ_RUN(iq3_s, ACC) break;                                                        \
    case SQ_TYPE_IQ1_S: KB_IQ_RUN(iq1_s, ACC) break;                                                        \
    case SQ_TYPE_IQ1_M: KB_IQ_RUN(iq1_m, ACC) break;                                                        \
    case SQ_TYPE_TQ1_0: KB_IQ_RUN(tq1_0, ACC) break;                                                        \
    case SQ_TYPE_TQ2_0: KB_IQ_RUN(tq2_0, ACC) break;

#endif
