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
 *   - the codebook types load their grid points with scalar loads (8-byte
 *     points for IQ1/IQ2, 4-byte for IQ3; an AVX2 gather measured slower)
 *     as unsigned magnitudes, and their signs as a ±1 byte vector;
 *     per column: y with the signs applied (vpsignb), vpmaddubsw against the
 *     magnitudes, then the sub-block scales (2l+1) per int16 pair;
 *   - IQ1 folds its ±1/8 shift into the weights: 8*grid ± 1 (values ±1, ±7,
 *     ±9), so its dot is one integer sum times d·dy/8, no activation sums;
 *   - the ternary types turn their codes 0..2 into -1, 0, 1 and apply them
 *     as signs to y.
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

/* 32 sign bits -> 32 bytes of +1 (bit clear) / -1 (bit set), the operand of
 * vpsignb that negates the activations of negative weights. */
SQ_INLINE __m256i signs_pm1(uint32_t bits) { return _mm256_or_si256(bits_to_bytes(bits), _mm256_set1_epi8(1)); }

/* The 8 sign bits of four 7-bit codes (bits 7k..7k+6 of a), the eighth of
 * each from the sign table (its parity). */
SQ_INLINE uint32_t signs_from_codes(uint32_t a)
{
    return (uint32_t)sq__ksigns_iq2xs[a & 127] | (uint32_t)sq__ksigns_iq2xs[(a >> 7) & 127] << 8 |
           (uint32_t)sq__ksigns_iq2xs[(a >> 14) & 127] << 16 | (uint32_t)sq__ksigns_iq2xs[(a >> 21) & 127] << 24;
}

/* Four 8-byte grid points (IQ1/IQ2) as one vector, point k in bytes 8k..8k+7. */
SQ_INLINE __m256i grid8x4(const uint64_t *grid, int i0, int i1, int i2, int i3)
{
    return _mm256_set_epi64x((long long)grid[i3], (long long)grid[i2], (long long)grid[i1], (long long)grid[i0]);
}

/* Eight 4-byte grid points (IQ3) as one vector, point k in bytes 4k..4k+3. */
SQ_INLINE __m256i grid4x8(const uint32_t *grid, const int *ix)
{
    return _mm256_setr_epi32((int)grid[ix[0]], (int)grid[ix[1]], (int)grid[ix[2]], (int)grid[ix[3]], (int)grid[ix[4]],
                             (int)grid[ix[5]], (int)grid[ix[6]], (int)grid[ix[7]]);
}

/* int16 scales: lanes 0..7 (values 0..15 of a 32-value chunk after
 * vpmaddubsw) s_lo, lanes 8..15 s_hi. */
SQ_INLINE __m256i scale_halves(int s_lo, int s_hi)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)s_hi), _mm_set1_epi16((short)s_lo));
}

/* isum[c] += (the magnitudes mag times the activations of chunk `off` with
 * the signs sg applied), pairs times the int16 scales s. */
SQ_INLINE void kb_signed_chunk(__m256i *isum, __m256i mag, __m256i sg, __m256i s, const void *vx, size_t xs,
                               int64_t i, int off, const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(x->qs + off)), sg);
        isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(mag, y), s);
    }
}

/* acc[c] += d·dy_c·f·isum[c]. */
SQ_INLINE void kb_finish(__m256 *acc, const __m256i *isum, float d, const void *vx, size_t xs, int64_t i,
                         const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
    }
}

/* ---- IQ2 ---- */

/* IQ2_XXS: per 32 values 4 grid bytes, 4 sign codes and a scale code l in
 * one pair of words; d·dy/8 · Σ (2l+1)·Σ mag·sign·y. */
SQ_INLINE void kb_iq2_xxs(const blk_iq2_xxs *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq2_xxs *b = w + i;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        uint32_t a[2];
        memcpy(a, b->qs + 4 * ib, sizeof a);
        const __m256i mag = grid8x4(sq__iq2xxs_grid, a[0] & 255, (a[0] >> 8) & 255, (a[0] >> 16) & 255, a[0] >> 24);
        const __m256i s = _mm256_set1_epi16((short)(2 * (a[1] >> 28) + 1));
        kb_signed_chunk(isum, mag, signs_pm1(signs_from_codes(a[1])), s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq2_xxs)

/* IQ2_XS: per group of 8 a 9-bit grid index and a 7-bit sign code; a scale
 * per 16 values. */
SQ_INLINE void kb_iq2_xs(const blk_iq2_xs *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq2_xs *b = w + i;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const uint16_t *q = b->qs + 4 * ib;
        const __m256i mag = grid8x4(sq__iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
        const uint32_t codes = (uint32_t)(q[0] >> 9) | (uint32_t)(q[1] >> 9) << 7 | (uint32_t)(q[2] >> 9) << 14 |
                               (uint32_t)(q[3] >> 9) << 21;
        const int sc = b->scales[ib];
        kb_signed_chunk(isum, mag, signs_pm1(signs_from_codes(codes)), scale_halves(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1),
                        vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq2_xs)

/* IQ2_S: 10-bit grid indices (high bits in qh), 8 plain sign bits per 8. */
SQ_INLINE void kb_iq2_s(const blk_iq2_s *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq2_s *b = w + i;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b->qs + 4 * ib;
        const int h = b->qh[ib];
        const __m256i mag = grid8x4(sq__iq2s_grid, q[0] | (h << 8 & 0x300), q[1] | (h << 6 & 0x300),
                                    q[2] | (h << 4 & 0x300), q[3] | (h << 2 & 0x300));
        uint32_t sbits;
        memcpy(&sbits, b->qs + 32 + 4 * ib, 4);
        const int sc = b->scales[ib];
        kb_signed_chunk(isum, mag, signs_pm1(sbits), scale_halves(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1), vx, xs, i,
                        32 * ib, NC);
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
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b->qs + 8 * ib;
        const int ix[8] = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]};
        uint32_t a;
        memcpy(&a, b->qs + 64 + 4 * ib, 4);
        const __m256i s = _mm256_set1_epi16((short)(2 * (a >> 28) + 1));
        kb_signed_chunk(isum, grid4x8(sq__iq3xxs_grid, ix), signs_pm1(signs_from_codes(a)), s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.25f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq3_xxs)

/* IQ3_S: 9-bit grid indices (ninth bits in qh), 8 sign bits per 8, a scale
 * per 32; d·dy · Σ (2l+1)·Σ mag·sign·y. */
SQ_INLINE void kb_iq3_s(const blk_iq3_s *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq3_s *b = w + i;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b->qs + 8 * ib;
        const int h = b->qh[ib];
        int ix[8];
        for (int k = 0; k < 8; k++) ix[k] = q[k] | ((h << (8 - k)) & 256);
        uint32_t sbits;
        memcpy(&sbits, b->signs + 4 * ib, 4);
        const __m256i s = _mm256_set1_epi16((short)(2 * ((b->scales[ib / 2] >> 4 * (ib % 2)) & 15) + 1));
        kb_signed_chunk(isum, grid4x8(sq__iq3s_grid, ix), signs_pm1(sbits), s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq3_s)

/* ---- IQ1 ---- */

/* The weights 8*grid ± 1 of four 8-value groups: the grid values (-1, 0, 1)
 * of g times 8 (vpsignb of 8), minus 1 in the groups whose shift is
 * negative (neg: one bit per group), plus 1 in the others. */
SQ_INLINE __m256i iq1_weights8(__m256i g, int neg)
{
    const __m256i sh = _mm256_setr_epi64x(neg & 1 ? -1LL : 0x0101010101010101LL, neg & 2 ? -1LL : 0x0101010101010101LL,
                                          neg & 4 ? -1LL : 0x0101010101010101LL, neg & 8 ? -1LL : 0x0101010101010101LL);
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), sh);
}

/* IQ1_S: 11-bit grid indices, a scale and a shift sign per 32 values;
 * d·dy/8 · Σ (2l+1)·Σ (8g ± 1)·y. */
SQ_INLINE void kb_iq1_s(const blk_iq1_s *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq1_s *b = w + i;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b->qs + 4 * ib;
        const int h = b->qh[ib];
        const __m256i g = grid8x4(sq__iq1s_grid, q[0] | (h << 8 & 0x700), q[1] | (h << 5 & 0x700),
                                  q[2] | (h << 2 & 0x700), q[3] | (h >> 1 & 0x700));
        const __m256i w8 = iq1_weights8(g, h & 0x8000 ? 15 : 0);
        const __m256i s = _mm256_set1_epi16((short)(2 * ((h >> 12) & 7) + 1));
        kb_signed_chunk(isum, _mm256_abs_epi8(w8), w8, s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(b->d), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq1_s)

/* IQ1_M: per 16 values a 3-bit scale, per 8 a shift sign; the fp16 d is
 * spread over the top nibbles of the scale words. */
SQ_INLINE void kb_iq1_m(const blk_iq1_m *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const blk_iq1_m *b = w + i;
    uint16_t sc[4];
    memcpy(sc, b->scales, sizeof sc);
    const uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b->qs + 4 * ib;
        const int h0 = b->qh[2 * ib], h1 = b->qh[2 * ib + 1];
        const __m256i g = grid8x4(sq__iq1s_grid, q[0] | (h0 << 8 & 0x700), q[1] | (h0 << 4 & 0x700),
                                  q[2] | (h1 << 8 & 0x700), q[3] | (h1 << 4 & 0x700));
        const int neg = (h0 >> 3 & 1) | (h0 >> 6 & 2) | (h1 >> 1 & 4) | (h1 >> 4 & 8);
        const __m256i w8 = iq1_weights8(g, neg);
        const int s16 = sc[ib / 2] >> (6 * (ib % 2));
        const __m256i s = scale_halves(2 * (s16 & 7) + 1, 2 * ((s16 >> 3) & 7) + 1);
        kb_signed_chunk(isum, _mm256_abs_epi8(w8), w8, s, vx, xs, i, 32 * ib, NC);
    }
    kb_finish(acc, isum, 0.125f * h2f(dh), vx, xs, i, NC);
}
SQ_K_FROM_KB(iq1_m)

/* ---- ternary ---- */

/* isum16[c] += the ternary values v (-1, 0, 1) times the activations of
 * chunk `off`: |v| times y with v's sign (zero where v is), pairs summed
 * (int16; at most 8 chunks of 2·2·127 per lane). Taking the values, not the codes 0..2
 * less Σy, keeps each lane's partial sum within Σ|v·y|, so the float
 * rounding stays relative to the dot's own magnitude. */
SQ_INLINE void kb_ternary_chunk(__m256i *isum16, __m256i v, const void *vx, size_t xs, int64_t i, int off, const int NC)
{
    const __m256i av = _mm256_abs_epi8(v); /* 1, or 2 for TQ2_0's unused code 3, as the scalar code reads it */
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(x->qs + off)), v);
        isum16[c] = _mm256_add_epi16(isum16[c], _mm256_maddubs_epi16(av, y));
    }
}

/* The values code - 1 of codes 0..2. */
SQ_INLINE __m256i ternary_values(__m256i codes) { return _mm256_sub_epi8(codes, _mm256_set1_epi8(1)); }

/* acc[c] += d·dy_c·Σ isum16[c]. */
SQ_INLINE void kb_ternary_finish(__m256 *acc, const __m256i *isum16, float d, const void *vx, size_t xs, int64_t i,
                                 const int NC)
{
    const __m256i ones = _mm256_set1_epi16(1);
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i s = _mm256_madd_epi16(isum16[c], ones);
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), _mm256_cvtepi32_ps(s), acc[c]);
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
            kb_ternary_chunk(isum16, ternary_values(codes), vx, xs, i, 128 * h + 32 * k, NC);
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
        kb_ternary_chunk(isum16, ternary_values(trits(q32, m, m)), vx, xs, i, 32 * n, NC);
    }
    const __m256i q16 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b->qs + 32)));
    SQ_UNROLL for (int n = 0; n < 4; n += 2) {
        const __m256i m = _mm256_set_m128i(_mm_set1_epi16(pow3[n + 1]), _mm_set1_epi16(pow3[n]));
        kb_ternary_chunk(isum16, ternary_values(trits(q16, m, m)), vx, xs, i, 160 + 16 * n, NC);
    }
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    /* low half: the last trits of the 16 bytes; high half: qh four times, trit n of copy n */
    const __m256i last = _mm256_set_m128i(_mm_set1_epi32((int)qh), _mm_loadu_si128((const __m128i *)(b->qs + 32)));
    const __m256i m = _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);
    kb_ternary_chunk(isum16, ternary_values(trits(last, m, m)), vx, xs, i, 224, NC);
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
