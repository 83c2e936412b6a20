/*
 * simd_ikz.h — 512-bit single-row dot products of ik_llama.cpp's types
 * (IQ2_K, IQ2_KS, IQ3_K, IQ3_KS, IQ4_K, IQ4_KS, IQ5_K, IQ5_KS, IQ6_K) with Q8_K activations, for
 * vec_dot and the run kernel (kz_band, simd_zmm.h) on AVX-512 BW + VNNI.
 * The multi-column tiles keep simd_ik.h's 256-bit steps, whose scale and
 * shift decoding (ik_scales6, ik_shift16, ...) these steps reuse.
 *
 * The 2- to 5-bit types look up their base levels plus 128 (unsigned) and
 * feed them straight to vpdpbusd with the signed activations (no sign
 * handling per row); the bytes of a block are unpacked without lane
 * shuffles, the activations arranged once per block to match (shared by the
 * rows of the run kernel), the sub-block scales applied per 128-bit lane in
 * int32, and the +128 and the shifted tables taken off through the Q8_K
 * bsums. IQ6_K (levels from a cubic) has a float step that evaluates the
 * cubic as the scalar reference does and, at the AMX level (VBMI), a step
 * that looks its levels up as three byte limbs of a 2^-16 fixed point.
 * Integer sums are exact; the float sums are reordered against the scalar
 * kernels (tests/test_ik_quants.c, tests/test_sqmatvec.c).
 */
#ifndef SQ_X86_SIMD_IKZ_H
#define SQ_X86_SIMD_IKZ_H

#include <math.h>
#include <pthread.h>

#include "simd_ik.h"
#include "simd_iqz.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* int16 shift counts: a in the low 256-bit half, b in the high one. */
SQ_INLINE __m512i ikz_shift_halves(int a, int b)
{
    return _mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1);
}

/* ---- 2- to 5-bit types: levels + 128 into vpdpbusd ----
 *
 * The base levels plus 128 (1..249, unsigned) are looked up with vpshufb
 * and fed straight to vpdpbusd with the signed activations: each int32 lane
 * gets Σ(L + 128)·y over 4 values, exact. The layouts' bytes are unpacked
 * 64 values at a time without lane shuffles, so each 128-bit lane of an
 * unpacked register is one 16-value sub-block; the activations are
 * arranged once per block to match (ikz_act4 / kz_act_nib / ikz_act2, shared
 * by every row of the run kernel), and one vpmulld per register applies the
 * 16 (or 8) sub-block scales, spread to their lanes by vpermd. What the +128
 * added and what the shifted tables add (base + delta) come off per
 * 16-value sub-block through the Q8_K bsums in one vpmaddwd:
 * Σ_k s_k·(delta·shifted_k − 128)·bsum_k. The block's integer total is
 * exact in int32 (|(L+128)·y| ≤ 249·127 per value, 8 values per lane and
 * register, times |s| ≤ 127, 4 registers; the bsums term below 2^27). */

/* Base levels + 128 as unsigned bytes (format data: ik_common.h's tables). */
#define IKZ_U(v) (uint8_t)((v) + 128)
static const _Alignas(16) uint8_t ikz_u4[16] = {
    IKZ_U(-127), IKZ_U(-104), IKZ_U(-83), IKZ_U(-65), IKZ_U(-49), IKZ_U(-35), IKZ_U(-22), IKZ_U(-10),
    IKZ_U(1),    IKZ_U(13),   IKZ_U(25),  IKZ_U(38),  IKZ_U(53),  IKZ_U(69),  IKZ_U(89),  IKZ_U(113)};
static const _Alignas(16) uint8_t ikz_u5[32] = {
    IKZ_U(-126), IKZ_U(-114), IKZ_U(-103), IKZ_U(-92), IKZ_U(-83), IKZ_U(-74), IKZ_U(-65), IKZ_U(-57),
    IKZ_U(-50),  IKZ_U(-43),  IKZ_U(-36),  IKZ_U(-30), IKZ_U(-24), IKZ_U(-18), IKZ_U(-12), IKZ_U(-6),
    IKZ_U(-1),   IKZ_U(5),    IKZ_U(11),   IKZ_U(17),  IKZ_U(23),  IKZ_U(29),  IKZ_U(36),  IKZ_U(43),
    IKZ_U(51),   IKZ_U(59),   IKZ_U(68),   IKZ_U(77),  IKZ_U(87),  IKZ_U(97),  IKZ_U(109), IKZ_U(121)};
static const _Alignas(16) uint8_t ikz_u3[16] = {IKZ_U(-63), IKZ_U(-40), IKZ_U(-23), IKZ_U(-10),
                                                IKZ_U(1),   IKZ_U(13),  IKZ_U(28),  IKZ_U(47)};
static const _Alignas(16) uint8_t ikz_u2[16] = {IKZ_U(-31), IKZ_U(-13), IKZ_U(1), IKZ_U(17)};
#undef IKZ_U

/* A 16-byte table in every 128-bit lane. */
SQ_INLINE __m512i ikz_table(const uint8_t *t) { return _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)t)); }

/* The 16-value sub-block of each 128-bit lane of unpacked register r, as
 * int32 lane indices into the block's 16 scales (each repeated 4 times):
 * [0] ikz_act4 order (IQ4_K, IQ4_KS), [1] kz_act_nib order (IQ5_K, IQ5_KS),
 * [2] ikz_act2 order (IQ2_K .. IQ3_KS). */
#define IKZ_L(a, b, c, d) a, a, a, a, b, b, b, b, c, c, c, c, d, d, d, d
static const _Alignas(64) int32_t ikz_lane_sb[3][4][16] = {
    {{IKZ_L(0, 2, 4, 6)}, {IKZ_L(8, 10, 12, 14)}, {IKZ_L(1, 3, 5, 7)}, {IKZ_L(9, 11, 13, 15)}},
    {{IKZ_L(0, 1, 4, 5)}, {IKZ_L(2, 3, 6, 7)}, {IKZ_L(8, 9, 12, 13)}, {IKZ_L(10, 11, 14, 15)}},
    {{IKZ_L(0, 1, 8, 9)}, {IKZ_L(2, 3, 10, 11)}, {IKZ_L(4, 5, 12, 13)}, {IKZ_L(6, 7, 14, 15)}},
};
#undef IKZ_L
enum { IKZ_A4, IKZ_A5, IKZ_A2 };

/* Activations for ikz_act4: y[h] lane j = values 32(4h+j)+0..15, y[2+h]
 * lane j = 32(4h+j)+16..31 (the low and high nibbles of 64 bytes of qs). */
SQ_INLINE void ikz_act4(const blk_q8_K *x, __m512i y[4])
{
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i a = _mm512_loadu_si512(x->qs + 128 * h), b = _mm512_loadu_si512(x->qs + 128 * h + 64);
        y[h] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        y[2 + h] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* Activations for the 2-bit layouts: y[k] = values 32k..32k+31 | 128+32k..128+32k+31
 * (bits 2k of the 64 bytes of qs). */
SQ_INLINE void ikz_act2(const blk_q8_K *x, __m512i y[4])
{
    SQ_UNROLL for (int k = 0; k < 4; k++)
        y[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * k))),
                                  _mm256_loadu_si256((const __m256i *)(x->qs + 128 + 32 * k)), 1);
}

/* acc += d·dy·(Σ_r s[r]·scale of its lanes + Σ_k s_k·(delta·shifted_k − 128)·bsum_k)
 * over nreg registers in layout order `order`: s8 holds the 16 sub-block
 * scales as int8 (per 32 values: each twice), bit k of shifted the shifted
 * table of sub-block k. */
SQ_INLINE void ikz_tail(const __m512i *s, int nreg, int order, __m128i s8, __mmask16 shifted, int delta,
                        const blk_q8_K *x, float d, __m512 *acc)
{
    const __m256i s16 = _mm256_cvtepi8_epi16(s8);
    const __m256i ms16 = delta == 4 ? _mm256_maskz_slli_epi16(shifted, s16, 2)
                       : delta == 2 ? _mm256_maskz_slli_epi16(shifted, s16, 1)
                                    : _mm256_maskz_mullo_epi16(shifted, s16, _mm256_set1_epi16((short)delta));
    const __m256i m16 = _mm256_sub_epi16(ms16, _mm256_slli_epi16(s16, 7));
    const __m512i s32 = _mm512_cvtepi8_epi32(s8);
    __m512i isum = _mm512_zextsi256_si512(_mm256_madd_epi16(m16, _mm256_loadu_si256((const __m256i *)x->bsums)));
    for (int r = 0; r < nreg; r++) {
        const __m512i sc = _mm512_permutexvar_epi32(_mm512_load_si512((const void *)ikz_lane_sb[order][r]), s32);
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s[r], sc));
    }
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(d * x->d), _mm512_cvtepi32_ps(isum), *acc);
}

/* ---- scale decoding to int8 (BMI2's pdep spreads packed bit fields to bytes) ---- */

/* The 16 six-bit scales − 32 of IQ4_K / IQ5_K: low 4 bits the nibbles of
 * scales_l, high 2 bits the 2-bit fields of scales_h, in order. */
SQ_INLINE __m128i ikz_scales6(const uint8_t *sl, const uint8_t *sh)
{
    uint32_t l0, l1;
    uint16_t h0, h1;
    memcpy(&l0, sl, 4), memcpy(&l1, sl + 4, 4), memcpy(&h0, sh, 2), memcpy(&h1, sh + 2, 2);
    const uint64_t n4 = 0x0F0F0F0F0F0F0F0Full, b45 = 0x3030303030303030ull;
    const uint64_t a = _pdep_u64(l0, n4) | _pdep_u64(h0, b45), b = _pdep_u64(l1, n4) | _pdep_u64(h1, b45);
    return _mm_sub_epi8(_mm_insert_epi64(_mm_cvtsi64_si128((long long)a), (long long)b, 1), _mm_set1_epi8(32));
}

/* The 16 nibbles of 8 bytes in order, as bytes. */
SQ_INLINE __m128i ikz_nibbles8(const uint8_t *p)
{
    uint64_t u;
    memcpy(&u, p, 8);
    const uint64_t n4 = 0x0F0F0F0F0F0F0F0Full;
    return _mm_insert_epi64(_mm_cvtsi64_si128((long long)_pdep_u64(u, n4)), (long long)_pdep_u64(u >> 32, n4), 1);
}

/* Each bit of an 8-bit field twice (one bit per 32 values to one per 16). */
SQ_INLINE __mmask16 ikz_pair_bits(unsigned bits8) { return (__mmask16)(_pdep_u32(bits8 & 0xFF, 0x5555) * 3); }

/* IQ4_KS / IQ5_KS: 8 scale bytes, (s & 254) − 127 each twice, shifted where s & 1. */
SQ_INLINE __m128i ikz_scales_ks(const uint8_t *p, __mmask16 *shifted)
{
    const __m128i v = ik_load8(p), d = _mm_unpacklo_epi8(v, v);
    *shifted = _mm_test_epi8_mask(d, _mm_set1_epi8(1));
    return _mm_sub_epi8(_mm_and_si128(d, _mm_set1_epi8((char)0xFE)), _mm_set1_epi8(127));
}

/* ---- 4-bit (ikz_act4 order) ---- */

/* The 4 registers of levels + 128: q[h] the low, q[2+h] the high nibbles of qs + 64h. */
SQ_INLINE void ikz4_levels(const uint8_t *qs, __m512i q[4])
{
    const __m512i t = ikz_table(ikz_u4), m4 = _mm512_set1_epi8(0x0F);
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i z = _mm512_loadu_si512(qs + 64 * h);
        q[h] = _mm512_shuffle_epi8(t, _mm512_and_si512(z, m4));
        q[2 + h] = _mm512_shuffle_epi8(t, _mm512_and_si512(_mm512_srli_epi16(z, 4), m4));
    }
}

/* IQ4_K: a 6-bit scale per 16 values, one vpmulld per register. */
SQ_INLINE void kzs_iq4_k(const sq__block_iq4_k *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    __m512i q[4], s[4];
    ikz4_levels(b->qs, q);
    SQ_UNROLL for (int r = 0; r < 4; r++) s[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[r], y[r]);
    ikz_tail(s, 4, IKZ_A4, ikz_scales6(b->scales_l, b->scales_h), (__mmask16)b->extra, 4, x, dr * h2f(b->d), acc);
}

/* IQ4_KS: a scale per 32 values, so the two halves of each 32 share a lane
 * and one vpmulld serves 128 values. */
SQ_INLINE void kzs_iq4_ks(const sq__block_iq4_ks *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    __mmask16 shifted;
    const __m128i s8 = ikz_scales_ks(b->scales, &shifted);
    __m512i q[4], s[2];
    ikz4_levels(b->qs, q);
    SQ_UNROLL for (int h = 0; h < 2; h++)
        s[h] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q[h], y[h]), q[2 + h], y[2 + h]);
    ikz_tail(s, 2, IKZ_A4, s8, shifted, 4, x, dr, acc);
}

/* ---- 5-bit (kz_act_nib order): two lookups, the second masked by the fifth bit ---- */

/* q[2h] the low, q[2h+1] the high nibbles of qs + 64h (chunks 4h, 4h+2 and
 * 4h+1, 4h+3 in the two 256-bit halves), their fifth bits from qh (chunk c:
 * bit c of qh[l]; kz_q5_bit holds these bits per register). */
SQ_INLINE void ikz5_levels(const uint8_t *qs, const uint8_t *qhp, __m512i q[4])
{
    const __m512i t_lo = ikz_table(ikz_u5), t_hi = ikz_table(ikz_u5 + 16), m4 = _mm512_set1_epi8(0x0F);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qhp));
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i z = _mm512_loadu_si512(qs + 64 * h);
        const __m512i nib[2] = {_mm512_and_si512(z, m4), _mm512_and_si512(_mm512_srli_epi16(z, 4), m4)};
        SQ_UNROLL for (int p = 0; p < 2; p++) {
            const __mmask64 fifth = _mm512_test_epi8_mask(qh, KZ_TAB(kz_q5_bit, 2 * h + p));
            q[2 * h + p] = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(t_lo, nib[p]), fifth, t_hi, nib[p]);
        }
    }
}

/* The 5-bit block body, scales per 16 (s8; per 32: each twice). */
SQ_INLINE void ikz_iq5(const uint8_t *qs, const uint8_t *qh, __m128i s8, __mmask16 shifted, const blk_q8_K *x,
                       const __m512i y[4], float d, __m512 *acc)
{
    __m512i q[4], s[4];
    ikz5_levels(qs, qh, q);
    SQ_UNROLL for (int r = 0; r < 4; r++) s[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[r], y[r]);
    ikz_tail(s, 4, IKZ_A5, s8, shifted, 2, x, d, acc);
}

SQ_INLINE void kzs_iq5_k(const sq__block_iq5_k *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    ikz_iq5(b->qs, b->qh, ikz_scales6(b->scales_l, b->scales_h), (__mmask16)b->extra, x, y, dr * h2f(b->d), acc);
}

SQ_INLINE void kzs_iq5_ks(const sq__block_iq5_ks *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    __mmask16 shifted;
    const __m128i s8 = ikz_scales_ks(b->scales, &shifted);
    ikz_iq5(b->qs, b->qh, s8, shifted, x, y, dr, acc);
}

/* ---- 2- and 3-bit (ikz_act2 order) ---- */

/* IQ3: register k's third bits: chunk k in the low 256-bit half (bit k of
 * qh[l]), chunk 4+k in the high one (bit 4+k). */
#define KZ_X32(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const _Alignas(64) uint8_t ikz_q3_bit[4][64] = {
    {KZ_X32(1), KZ_X32(16)}, {KZ_X32(2), KZ_X32(32)}, {KZ_X32(4), KZ_X32(64)}, {KZ_X32(8), KZ_X32(128)}};
#undef KZ_X32

/* The 2- and 3-bit block body: register k = bits 2k of the 64 bytes of qs
 * (chunks k and 4+k), plus 4 where the chunk's qh bit is set (qhp NULL:
 * 2-bit), looked up in table (levels + 128); s8 the scales, shifted the
 * tables + delta. */
SQ_INLINE void ikz_iq23(const uint8_t *table, const uint8_t *qs, const uint8_t *qhp, __m128i s8, __mmask16 shifted,
                        int delta, const blk_q8_K *x, const __m512i y[4], float d, __m512 *acc)
{
    const __m512i t = ikz_table(table), m3 = _mm512_set1_epi8(3);
    const __m512i z = _mm512_loadu_si512(qs);
    const __m512i qh = qhp ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qhp)) : _mm512_setzero_si512();
    __m512i s[4];
    SQ_UNROLL for (int k = 0; k < 4; k++) {
        __m512i idx = _mm512_and_si512(k ? _mm512_srli_epi16(z, 2 * k) : z, m3);
        if (qhp)
            idx = _mm512_mask_add_epi8(idx, _mm512_test_epi8_mask(qh, _mm512_load_si512((const void *)ikz_q3_bit[k])), idx,
                                       _mm512_set1_epi8(4));
        s[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(t, idx), y[k]);
    }
    ikz_tail(s, 4, IKZ_A2, s8, shifted, delta, x, d, acc);
}

/* IQ3_K: per 16 an odd scale 2l+1, negative where its scales_h bit is set; shifted tables + 4. */
SQ_INLINE void kzs_iq3_k(const sq__block_iq3_k *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    const __m128i odd = _mm_add_epi8(_mm_add_epi8(ikz_nibbles8(b->scales_l), ikz_nibbles8(b->scales_l)), _mm_set1_epi8(1));
    const __m128i s8 = _mm_mask_sub_epi8(odd, (__mmask16)b->scales_h, _mm_setzero_si128(), odd);
    ikz_iq23(ikz_u3, b->qs, b->qh, s8, (__mmask16)b->extra, 4, x, y, dr * h2f(b->d), acc);
}

/* The 8 per-32 scales of IQ2_KS / IQ3_KS, each twice: 4-bit nibbles (chunk c
 * < 4: low nibble of byte c, else the high nibble of byte c − 4), a fifth
 * bit worth 16 from bits5, minus 16. */
SQ_INLINE __m128i ikz_scales_5bit(const uint8_t *p, unsigned bits5, int chunk_order)
{
    const __m128i b = ik_load4(p), n4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, n4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), n4);
    const __m128i nib = chunk_order ? _mm_unpacklo_epi32(lo, hi) : _mm_unpacklo_epi8(lo, hi);
    const __m128i s = _mm_mask_add_epi8(nib, (__mmask16)(bits5 & 0xFF), nib, _mm_set1_epi8(16));
    const __m128i s16 = _mm_sub_epi8(s, _mm_set1_epi8(16));
    return _mm_unpacklo_epi8(s16, s16);
}

/* IQ3_KS: per 32 a 5-bit signed scale (fifth bits in extra 0-7, nibbles by
 * chunk order), table bits in extra 8-15. */
SQ_INLINE void kzs_iq3_ks(const sq__block_iq3_ks *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    const unsigned extra = b->extra;
    ikz_iq23(ikz_u3, b->qs, b->qh, ikz_scales_5bit(b->scales, extra, 1), ikz_pair_bits(extra >> 8), 4, x, y, dr, acc);
}

/* IQ2_K: per 16 a 4-bit scale (offset 8), shifted tables + 5. */
SQ_INLINE void kzs_iq2_k(const sq__block_iq2_k *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    const __m128i s8 = _mm_sub_epi8(ikz_nibbles8(b->scales), _mm_set1_epi8(8));
    ikz_iq23(ikz_u2, b->qs, NULL, s8, (__mmask16)b->extra, 5, x, y, dr * h2f(b->d), acc);
}

/* IQ2_KS: per 32 a 5-bit scale (offset 16; nibbles in byte order, fifth bits
 * in extra 8-15), table bits in extra 0-7. */
SQ_INLINE void kzs_iq2_ks(const sq__block_iq2_ks *b, const blk_q8_K *x, const __m512i y[4], __m512 *acc, float dr)
{
    const unsigned extra = b->extra;
    ikz_iq23(ikz_u2, b->qs, NULL, ikz_scales_5bit(b->scales, extra >> 8, 0), ikz_pair_bits(extra), 5, x, y, dr, acc);
}

/* ---- IQ6_K: float levels (the cubic), 16 values per register ---- */

/* 64 nibble indices of a layout whose chunks 2g, 2g+1 are the low and high
 * nibbles of the same 32 bytes. */
SQ_INLINE __m512i ikz_nib32(const uint8_t *qs)
{
    const __m512i r = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    return _mm512_and_si512(_mm512_srlv_epi16(r, ikz_shift_halves(0, 4)), _mm512_set1_epi8(0x0F));
}

/* The IQ6_K levels of the 16 indices in q (bytes), as ik6_levels8. */
SQ_INLINE __m512 ikz6_levels16(__m128i q, __m512 shift)
{
    const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
    const __m512 c2 = _mm512_fmadd_ps(f, _mm512_set1_ps(SQ__IQ6K_D), _mm512_set1_ps(-SQ__IQ6K_C));
    const __m512 c1 = _mm512_fmadd_ps(f, c2, _mm512_set1_ps(SQ__IQ6K_B));
    return _mm512_add_ps(_mm512_fmadd_ps(f, c1, _mm512_set1_ps(SQ__IQ6K_A)), shift);
}

SQ_INLINE void kzf_iq6_k(const sq__block_iq6_k *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    __m512 bsum = _mm512_setzero_ps();
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        /* chunks 2g, 2g+1: nibbles of qs + 32g, qh + 32(g/2) bits 4(g%2).. and 4(g%2)+2.. */
        const __m512i hr = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * (g / 2))));
        const __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(hr, ikz_shift_halves(4 * (g % 2), 4 * (g % 2) + 2)),
                                            _mm512_set1_epi8(3));
        const __m512i q = _mm512_or_si512(ikz_nib32(b->qs + 32 * g), _mm512_slli_epi16(hi, 4));
        /* the 4 sub-blocks' indices (immediate lane numbers: the loop below need not be unrolled) */
        const __m128i qk[4] = { _mm512_castsi512_si128(q), _mm512_extracti32x4_epi32(q, 1),
                                _mm512_extracti32x4_epi32(q, 2), _mm512_extracti32x4_epi32(q, 3) };
        SQ_UNROLL for (int k = 0; k < 4; k++) {
            const int ib = 4 * g + k;
            const __m512 shift = _mm512_set1_ps(b->extra >> ib & 1 ? 1.f : 0.f);
            const __m512 l = ikz6_levels16(qk[k], shift);
            const __m512 y = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x->qs + 16 * ib))));
            bsum = _mm512_fmadd_ps(_mm512_set1_ps((float)b->scales[ib]), _mm512_mul_ps(l, y), bsum);
        }
    }
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(dr * h2f(b->d) * x->d), bsum, *acc);
}


/* ---- IQ6_K with AVX-512 VBMI (the AMX level): its levels in three byte limbs ----
 *
 * The 64 base levels L(q) (the scalar reference's cubic, evaluated once
 * with its fused multiply-adds) are held as V = round(65536·L) + 128·65536
 * = 65536·H + 256·M + Lo, three unsigned bytes per level (H 1..250), each a
 * 64-entry vpermb table. Per 64 values three lookups and three vpdpbusd give
 * Σ(H − 128)·y (the 128·Σy per lane comes off with nc, shared by the rows),
 * Σ M·y and Σ Lo·y, exact in int32; 256·(256·ΣH·y + ΣM·y) + ΣLo·y is formed
 * in float and scaled per 16 values. The shifted table (L + 1) adds
 * scale·Σy per shifted sub-block through the bsums. Each level is rounded
 * to 2^-17 at most (the float cubic itself carries about 2^-18 at |L| > 64),
 * so the result matches the reference within float rounding; tested against
 * it like every other kernel. */
static _Alignas(64) uint8_t ikz6_limb[3][64];
static pthread_once_t ikz6_once = PTHREAD_ONCE_INIT;
static bool ikz6_vbmi; /* the run kernel's IQ6_K step: set at the AMX level with VBMI */

/* Fills the limb tables (once). */
static void ikz6_init(void)
{
    for (int q = 0; q < 64; q++) {
        const float f = (float)q;
        const float l = fmaf(f, fmaf(f, fmaf(f, SQ__IQ6K_D, -SQ__IQ6K_C), SQ__IQ6K_B), SQ__IQ6K_A);
        const long v = lrintf(l * 65536.f) + 128L * 65536L;
        ikz6_limb[0][q] = (uint8_t)(v >> 16);
        ikz6_limb[1][q] = (uint8_t)(v >> 8);
        ikz6_limb[2][q] = (uint8_t)v;
    }
}

/* Activations in kz_act_nib order (y[0..3]) and −128·Σy per int32 lane of each (y[4..7]). */
SQ_INLINE void ikz_act6(const blk_q8_K *x, __m512i y[8])
{
    kz_act_nib(x, y);
    SQ_UNROLL for (int r = 0; r < 4; r++)
        y[4 + r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), y[r]));
}

/* One IQ6_K block against activations in ikz_act6 order. */
__attribute__((target("avx512vbmi"))) static inline void kzv_iq6_k(const sq__block_iq6_k *b, const blk_q8_K *x,
                                                                     const __m512i y[8], __m512 *acc, float dr)
{
    const __m512i tH = _mm512_load_si512((const void *)ikz6_limb[0]), tM = _mm512_load_si512((const void *)ikz6_limb[1]);
    const __m512i tL = _mm512_load_si512((const void *)ikz6_limb[2]);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)b->scales);
    const __m512 fs = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc8));
    __m512 blk = _mm512_setzero_ps();
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        /* chunks 4h, 4h+2 (low nibbles) and 4h+1, 4h+3 (high); chunk c's high bits: qh + 32(c/4), bits 2(c%4).. */
        const __m512i z = _mm512_loadu_si512(b->qs + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
        /* the high bits to bits 4-5: low nibbles' << 4 | << 0, high nibbles' << 2 | >> 2 (a rotation: no bit lost) */
        const __m512i rot_hi = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(30), 1);
        const __m512i idx[2] = {
            _mm512_or_si512(_mm512_and_si512(z, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, ikz_shift_halves(4, 0)), m30)),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(z, 4), m4),
                            _mm512_and_si512(_mm512_rolv_epi32(qh, rot_hi), m30))};
        SQ_UNROLL for (int p = 0; p < 2; p++) {
            const int r = 2 * h + p;
            const __m512i a = _mm512_dpbusd_epi32(y[4 + r], _mm512_permutexvar_epi8(idx[p], tH), y[r]);
            const __m512i m = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_permutexvar_epi8(idx[p], tM), y[r]);
            const __m512i l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_permutexvar_epi8(idx[p], tL), y[r]);
            const __m512 hm = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(a, 8), m));
            const __m512 v = _mm512_fmadd_ps(hm, _mm512_set1_ps(256.f), _mm512_cvtepi32_ps(l));
            const __m512 sc = _mm512_permutexvar_ps(_mm512_load_si512((const void *)ikz_lane_sb[IKZ_A5][r]), fs);
            blk = _mm512_fmadd_ps(v, sc, blk);
        }
    }
    /* the shifted sub-blocks: + scale·Σy, in units of 2^-16 */
    const __m256i ms16 = _mm256_maskz_mov_epi16((__mmask16)b->extra, _mm256_cvtepi8_epi16(sc8));
    const __m256i sh = _mm256_madd_epi16(ms16, _mm256_loadu_si256((const __m256i *)x->bsums));
    blk = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(sh)), _mm512_set1_ps(65536.f), blk);
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(dr * h2f(b->d) * x->d * (1.f / 65536.f)), blk, *acc);
}

/* vec_dot for IQ6_K with VBMI. */
__attribute__((target("avx512vbmi"))) static float vdot_iq6_k_vbmi(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq6_k *w = vw;
    const blk_q8_K *x = vx;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        __m512i y[8];
        ikz_act6(x + i, y);
        kzv_iq6_k(w + i, x + i, y, &acc, 1.0f);
    }
    return _mm512_reduce_add_ps(acc);
}

/* One IQ6_K block in the run kernel: with VBMI a call to the limb step (a
 * function of its own ISA), else the float step. */
__attribute__((target("avx512vbmi"), noinline)) static void kzv_iq6_k_call(const sq__block_iq6_k *b, const blk_q8_K *x,
                                                                           const __m512i y[8], __m512 *acc, float dr)
{
    kzv_iq6_k(b, x, y, acc, dr);
}
SQ_INLINE void kzs_iq6_k(const sq__block_iq6_k *b, const blk_q8_K *x, const __m512i y[8], __m512 *acc, float dr)
{
    if (ikz6_vbmi) kzv_iq6_k_call(b, x, y, acc, dr);
    else kzf_iq6_k(b, x, acc, dr);
}

/* Registers the VBMI kernels over the AVX-512 ones (the AMX level, whose
 * CPUs all have VBMI; checked all the same). */
static void ikz_register_vbmi(sq__kernels table[SQ_TYPE_COUNT])
{
    if (!__builtin_cpu_supports("avx512vbmi")) return;
    pthread_once(&ikz6_once, ikz6_init);
    table[SQ_TYPE_IQ6_K].vec_dot = vdot_iq6_k_vbmi;
    ikz6_vbmi = true;
}

/* The activation order of each type's step. */
#define IKZ_ACT_iq2_k ikz_act2
#define IKZ_ACT_iq2_ks ikz_act2
#define IKZ_ACT_iq3_k ikz_act2
#define IKZ_ACT_iq3_ks ikz_act2
#define IKZ_ACT_iq4_k ikz_act4
#define IKZ_ACT_iq4_ks ikz_act4
#define IKZ_ACT_iq5_k kz_act_nib
#define IKZ_ACT_iq5_ks kz_act_nib
#define IKZ_ACT_iq6_k ikz_act6

/* vec_dot of a type without a row scale (META = 0) or with one of META
 * bytes at the head of the row: per block the activations in the step's
 * order, the step, one reduction at the end. */
#define IKZ_VDOT(T, META)                                                                                    \
    static float vdot_##T##_zmm(int64_t n, const void *vw, const void *vx)                                  \
    {                                                                                                       \
        const float dr = (META) ? ik_row_scale(vw, (META)) : 1.0f;                                          \
        const sq__block_##T *w = (const sq__block_##T *)((const char *)vw + (META));                       \
        const blk_q8_K *x = vx;                                                                             \
        __m512 acc = _mm512_setzero_ps();                                                                   \
        for (int64_t i = 0; i < n / 256; i++) {                                                             \
            __m512i y[8];                                                                                   \
            IKZ_ACT_##T(x + i, y);                                                                          \
            kzs_##T(w + i, x + i, y, &acc, dr);                                                             \
        }                                                                                                   \
        return _mm512_reduce_add_ps(acc);                                                                   \
    }
IKZ_VDOT(iq2_k, 0)
IKZ_VDOT(iq2_ks, 2)
IKZ_VDOT(iq3_k, 0)
IKZ_VDOT(iq3_ks, 2)
IKZ_VDOT(iq4_k, 0)
IKZ_VDOT(iq4_ks, 4)
IKZ_VDOT(iq5_k, 0)
IKZ_VDOT(iq5_ks, 4)

/* vec_dot for IQ6_K without VBMI: the float step. */
static float vdot_iq6_k_zmm(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq6_k *w = vw;
    const blk_q8_K *x = vx;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) kzf_iq6_k(w + i, x + i, &acc, 1.0f);
    return _mm512_reduce_add_ps(acc);
}
#undef IKZ_VDOT

/* The types this file serves in the run kernel. */
SQ_INLINE bool kz_ikz_type(int t)
{
    return t == SQ_TYPE_IQ2_K || t == SQ_TYPE_IQ2_KS || t == SQ_TYPE_IQ3_K || t == SQ_TYPE_IQ3_KS || t == SQ_TYPE_IQ4_K || t == SQ_TYPE_IQ4_KS || t == SQ_TYPE_IQ5_K ||
           t == SQ_TYPE_IQ5_KS || t == SQ_TYPE_IQ6_K;
}

/* One run of ik type T in a band of NR rows (as IK_RUN, simd_ik.h: a
 * row-scale type's run is a sequence of segments, each its scale then one
 * block): per block the activations once in the step's order, then each
 * row's step into ACC[r]. */
#define IKZ_RUN(T, META, ACC)                                                                               \
    for (int64_t i = 0; i < nb; i++) {                                                                      \
        __m512i ya_[8];                                                                                     \
        IKZ_ACT_##T(xr + i, ya_);                                                                           \
        SQ_UNROLL for (int r = 0; r < NR; r++) {                                                            \
            const char *seg_ = wr + (size_t)r * ws + (size_t)i * ((META) + sizeof(sq__block_##T));           \
            kzs_##T((const sq__block_##T *)(seg_ + (META)), xr + i, ya_, &(ACC)[r],                         \
                    (META) ? ik_row_scale(seg_, (META)) : 1.0f);                                            \
        }                                                                                                   \
    }

#define KZ_IKZ_CASES(ACC)                                                                                    \
    case SQ_TYPE_IQ2_K: IKZ_RUN(iq2_k, 0, ACC) break;                                                       \
    case SQ_TYPE_IQ2_KS: IKZ_RUN(iq2_ks, 2, ACC) break;                                                     \
    case SQ_TYPE_IQ3_K: IKZ_RUN(iq3_k, 0, ACC) break;                                                       \
    case SQ_TYPE_IQ3_KS: IKZ_RUN(iq3_ks, 2, ACC) break;                                                     \
    case SQ_TYPE_IQ4_K: IKZ_RUN(iq4_k, 0, ACC) break;                                                       \
    case SQ_TYPE_IQ4_KS: IKZ_RUN(iq4_ks, 4, ACC) break;                                                     \
    case SQ_TYPE_IQ5_K: IKZ_RUN(iq5_k, 0, ACC) break;                                                       \
    case SQ_TYPE_IQ5_KS: IKZ_RUN(iq5_ks, 4, ACC) break;                                                     \
    case SQ_TYPE_IQ6_K: IKZ_RUN(iq6_k, 0, ACC) break;

/* vec_dot entries over the 256-bit ones (simd_register.h). */
#define SQ_IKZ_REGISTER(table)                                                                              \
    do {                                                                                                    \
        (table)[SQ_TYPE_IQ2_K].vec_dot = vdot_iq2_k_zmm;                                                    \
        (table)[SQ_TYPE_IQ2_KS].vec_dot = vdot_iq2_ks_zmm;                                                  \
        (table)[SQ_TYPE_IQ3_K].vec_dot = vdot_iq3_k_zmm;                                                    \
        (table)[SQ_TYPE_IQ3_KS].vec_dot = vdot_iq3_ks_zmm;                                                  \
        (table)[SQ_TYPE_IQ4_K].vec_dot = vdot_iq4_k_zmm;                                                    \
        (table)[SQ_TYPE_IQ4_KS].vec_dot = vdot_iq4_ks_zmm;                                                  \
        (table)[SQ_TYPE_IQ5_K].vec_dot = vdot_iq5_k_zmm;                                                    \
        (table)[SQ_TYPE_IQ5_KS].vec_dot = vdot_iq5_ks_zmm;                                                  \
        (table)[SQ_TYPE_IQ6_K].vec_dot = vdot_iq6_k_zmm;                                                    \
        ikz6_vbmi = false;                                                                                  \
    } while (0)

#endif
#endif
