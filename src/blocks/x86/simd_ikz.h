/*
 * simd_ikz.h — 512-bit single-row dot products of ik_llama.cpp's types
 * (IQ2_K, IQ2_KS, IQ3_K, IQ3_KS, IQ4_K, IQ4_KS, IQ5_K, IQ5_KS, IQ6_K) with Q8_K activations, for
 * vec_dot and the run kernel (kz_band, simd_zmm.h) on AVX-512 BW + VNNI.
 * The multi-column tiles keep simd_ik.h's 256-bit steps, whose scale and
 * shift decoding (ik_scales6, ik_shift16, ...) these steps reuse.
 *
 * Per 64 values (two 32-value chunks, which every one of these layouts keeps
 * in 32 consecutive bytes of qs) the indices are unpacked with one lane
 * shuffle or a per-half variable shift, looked up with vpshufb in the
 * sub-block's base table (32-level tables: a second, masked vpshufb on the
 * fifth bit), and dotted as |level| times the activations negated where the
 * level is negative (AVX-512 has no vpsignb: a masked subtraction), the
 * int16 pairs scaled per 16 values with vpdpwssd. The shifted tables are the
 * base plus a constant, added as delta · scale · (sum of the sub-block's
 * activations) from the Q8_K bsums, as simd_ik.h does. Integer sums are
 * exact; one float multiply-add per block. IQ6_K evaluates its cubic in
 * float as the scalar reference does, 16 values per register.
 */
#ifndef SQ_X86_SIMD_IKZ_H
#define SQ_X86_SIMD_IKZ_H

#include "simd_ik.h"
#include "simd_iqz.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* Per-256-bit-half byte selectors of qh bits 2g (low half) and 2g+1 (high half). */
SQ_INLINE __m512i ikz_bit_pair(int g)
{
    return _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * g))), _mm256_set1_epi8((char)(1 << (2 * g + 1))), 1);
}

/* int16 shift counts: a in the low 256-bit half, b in the high one. */
SQ_INLINE __m512i ikz_shift_halves(int a, int b)
{
    return _mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1);
}

/* isum + s · pairs of q·y for 64 signed levels q (|q| <= 127): |q| times y
 * negated where q is negative. */
SQ_INLINE __m512i ikz_dot64(__m512i isum, __m512i q, const int8_t *y, __m512i s)
{
    const __m512i yv = _mm512_loadu_si512(y);
    const __m512i sy = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(q), _mm512_setzero_si512(), yv);
    return _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(_mm512_abs_epi8(q), sy), s);
}

/* The same for levels from a sorted base table: |level| looked up in the
 * table's magnitudes (aq), negative exactly where the index is below the
 * table's first positive entry (neg): one compare instead of vpabsb and
 * vpmovb2m. */
SQ_INLINE __m512i ikz_dot64_sorted(__m512i isum, __m512i aq, __mmask64 neg, const int8_t *y, __m512i s)
{
    const __m512i yv = _mm512_loadu_si512(y);
    const __m512i sy = _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv);
    return _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(aq, sy), s);
}

/* The 16 scales of a block (int16 lanes, one per 16 values) spread over the
 * pairs of 64-value group g. */
SQ_INLINE __m512i ikz_scales(__m256i s16, int g)
{
    return _mm512_permutexvar_epi16(KZ_TAB(kz_s16_idx, g), _mm512_castsi256_si512(s16));
}

/* acc += dw·dy·(isum + ms16 · bsums): the block's integer total, shift term included. */
SQ_INLINE void ikz_finish(__m512i isum, __m256i ms16, const blk_q8_K *x, float dw, __m512 *acc)
{
    const __m256i sh = _mm256_madd_epi16(ms16, _mm256_loadu_si256((const __m256i *)x->bsums));
    const __m512i tot = _mm512_add_epi32(isum, _mm512_zextsi256_si512(sh));
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(dw * x->d), _mm512_cvtepi32_ps(tot), *acc);
}

/* 64 nibble indices of a 4-bit layout whose 32-value chunk c is 16 bytes
 * (low nibbles first; IQ4_K, IQ4_KS): chunks 2g, 2g+1 from qs + 32g, in
 * value order (128-bit lanes: bytes 0-15 low, high, bytes 16-31 low, high). */
SQ_INLINE __m512i ikz_nib16(const uint8_t *qs)
{
    const __m512i r = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)qs));
    const __m512i rr = _mm512_shuffle_i64x2(r, r, _MM_SHUFFLE(1, 1, 0, 0));
    const long long f4 = 0x0004000400040004LL; /* int16 shift counts 4 */
    const __m512i sh = _mm512_set_epi64(f4, f4, 0, 0, f4, f4, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(rr, sh), _mm512_set1_epi8(0x0F));
}

/* 64 nibble indices of a layout whose chunks 2g, 2g+1 are the low and high
 * nibbles of the same 32 bytes (IQ5_K, IQ5_KS, IQ6_K). */
SQ_INLINE __m512i ikz_nib32(const uint8_t *qs)
{
    const __m512i r = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    return _mm512_and_si512(_mm512_srlv_epi16(r, ikz_shift_halves(0, 4)), _mm512_set1_epi8(0x0F));
}

/* ---- 4-bit ---- */

/* IQ4_K and IQ4_KS: the 16-level table, scales per 16 (s16) or per 32 (s16
 * with each scale twice). */
SQ_INLINE void ikz_iq4(const uint8_t *qs, __m256i s16, __m256i ms16, const blk_q8_K *x, float dw, __m512 *acc)
{
    /* magnitudes of the sorted table: indices 0-7 are the negative levels */
    const __m512i mag = _mm512_abs_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)sq__iq4k_values)));
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __m512i nib = ikz_nib16(qs + 32 * g);
        isum = ikz_dot64_sorted(isum, _mm512_shuffle_epi8(mag, nib), _mm512_cmplt_epu8_mask(nib, _mm512_set1_epi8(8)),
                                x->qs + 64 * g, ikz_scales(s16, g));
    }
    ikz_finish(isum, ms16, x, dw, acc);
}

SQ_INLINE void kzs_iq4_k(const sq__block_iq4_k *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    __m256i ms16;
    const __m256i s16 = ik_scales6(b->scales_l, b->scales_h, b->extra, 4, &ms16);
    ikz_iq4(b->qs, s16, ms16, x, dr * h2f(b->d), acc);
}

SQ_INLINE void kzs_iq4_ks(const sq__block_iq4_ks *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    const __m256i sc = ik_widen_pairs(ik_load8(b->scales)), one = _mm256_set1_epi16(1);
    const __m256i s16 = _mm256_sub_epi16(_mm256_andnot_si256(one, sc), _mm256_set1_epi16(127));
    const __m256i ms16 = ik_shift16(s16, _mm256_cmpeq_epi16(_mm256_and_si256(sc, one), one), 4);
    ikz_iq4(b->qs, s16, ms16, x, dr, acc);
}

/* ---- 5-bit: two lookups, the second masked by the fifth bit ---- */

SQ_INLINE void ikz_iq5(const uint8_t *qs, const uint8_t *qhp, __m256i s16, __m256i ms16, const blk_q8_K *x, float dw,
                       __m512 *acc)
{
    const __m512i t_lo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)sq__iq5nl_values));
    const __m512i t_hi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(sq__iq5nl_values + 16)));
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qhp));
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __m512i nib = ikz_nib32(qs + 32 * g);
        const __mmask64 fifth = _mm512_test_epi8_mask(qh, ikz_bit_pair(g));
        const __m512i q = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(t_lo, nib), fifth, t_hi, nib);
        isum = ikz_dot64(isum, q, x->qs + 64 * g, ikz_scales(s16, g));
    }
    ikz_finish(isum, ms16, x, dw, acc);
}

SQ_INLINE void kzs_iq5_k(const sq__block_iq5_k *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    __m256i ms16;
    const __m256i s16 = ik_scales6(b->scales_l, b->scales_h, b->extra, 2, &ms16);
    ikz_iq5(b->qs, b->qh, s16, ms16, x, dr * h2f(b->d), acc);
}

SQ_INLINE void kzs_iq5_ks(const sq__block_iq5_ks *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    const __m256i sc = ik_widen_pairs(ik_load8(b->scales)), one = _mm256_set1_epi16(1);
    const __m256i s16 = _mm256_sub_epi16(_mm256_andnot_si256(one, sc), _mm256_set1_epi16(127));
    const __m256i ms16 = ik_shift16(s16, _mm256_cmpeq_epi16(_mm256_and_si256(sc, one), one), 2);
    ikz_iq5(b->qs, b->qh, s16, ms16, x, dr, acc);
}

/* ---- 2- and 3-bit: 2 bits of qs (chunks 2g, 2g+1 share 32 bytes), 3-bit: a qh bit ---- */

/* The 64 indices of 64-value group g: bits 4(g%2).. and 4(g%2)+2.. of
 * qs + 32(g/2) (the two chunks in the two 256-bit halves), plus 4 where the
 * chunk's qh bit is set (qh: the 32 qh bytes in both halves; NULL: 2-bit). */
SQ_INLINE __m512i ikz_idx23(const uint8_t *qs, const __m512i *qh, int g)
{
    const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * (g / 2))));
    const __m512i lo = _mm512_and_si512(_mm512_srlv_epi16(raw, ikz_shift_halves(4 * (g % 2), 4 * (g % 2) + 2)),
                                        _mm512_set1_epi8(3));
    if (!qh) return lo;
    return _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(*qh, ikz_bit_pair(g)), lo, _mm512_set1_epi8(4));
}

/* The 2- and 3-bit block body: 16 levels of table (sorted base levels, 4
 * or 8 used: those below index npos negative), scales s16, shift
 * factors ms16, qh bytes or NULL. */
SQ_INLINE void ikz_iq23(const int8_t *table16, int npos, const uint8_t *qs, const uint8_t *qhp, __m256i s16,
                        __m256i ms16, const blk_q8_K *x, float dw, __m512 *acc)
{
    const __m512i mag = _mm512_abs_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)table16)));
    const __m512i qh = qhp ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qhp)) : _mm512_setzero_si512();
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __m512i idx = ikz_idx23(qs, qhp ? &qh : NULL, g);
        isum = ikz_dot64_sorted(isum, _mm512_shuffle_epi8(mag, idx), _mm512_cmplt_epu8_mask(idx, _mm512_set1_epi8((char)npos)),
                                x->qs + 64 * g, ikz_scales(s16, g));
    }
    ikz_finish(isum, ms16, x, dw, acc);
}

/* IQ3_K: per 16 a signed odd scale, shifted tables + 4. */
SQ_INLINE void kzs_iq3_k(const sq__block_iq3_k *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    const __m256i odd = _mm256_add_epi16(_mm256_slli_epi16(ik_widen(ik_nibble_bytes(ik_load8(b->scales_l))), 1),
                                         _mm256_set1_epi16(1));
    const __m256i neg = ik_bitmask16(b->scales_h);
    const __m256i s16 = _mm256_sub_epi16(_mm256_xor_si256(odd, neg), neg);
    ikz_iq23(sq__iq3nl_values, 4, b->qs, b->qh, s16, ik_shift16(s16, ik_bitmask16(b->extra), 4), x, dr * h2f(b->d), acc);
}

/* IQ3_KS: per 32 a 5-bit signed scale (fifth bits in extra 0-7), table bits in extra 8-15. */
SQ_INLINE void kzs_iq3_ks(const sq__block_iq3_ks *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    const unsigned extra = b->extra;
    const __m128i sb = ik_load4(b->scales), n4 = _mm_set1_epi8(0x0F);
    const __m128i nib = _mm_unpacklo_epi32(_mm_and_si128(sb, n4), _mm_and_si128(_mm_srli_epi16(sb, 4), n4));
    const __m256i s5 = _mm256_and_si256(ik_bitmask16_pairs(extra & 0xFF), _mm256_set1_epi16(16));
    const __m256i s16 = _mm256_sub_epi16(_mm256_or_si256(ik_widen_pairs(nib), s5), _mm256_set1_epi16(16));
    ikz_iq23(sq__iq3nl_values, 4, b->qs, b->qh, s16, ik_shift16(s16, ik_bitmask16_pairs(extra >> 8), 4), x, dr, acc);
}

/* IQ2_K: per 16 a 4-bit scale (offset 8), shifted tables + 5. */
SQ_INLINE void kzs_iq2_k(const sq__block_iq2_k *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    const __m256i s16 = _mm256_sub_epi16(ik_widen(ik_nibble_bytes(ik_load8(b->scales))), _mm256_set1_epi16(8));
    ikz_iq23(ik_iq2_levels16, 2, b->qs, NULL, s16, ik_shift16(s16, ik_bitmask16(b->extra), 5), x, dr * h2f(b->d), acc);
}

/* IQ2_KS: per 32 a 5-bit scale (offset 16; fifth bits in extra 8-15), table bits in extra 0-7. */
SQ_INLINE void kzs_iq2_ks(const sq__block_iq2_ks *b, const blk_q8_K *x, __m512 *acc, float dr)
{
    const unsigned extra = b->extra;
    const __m256i hi = _mm256_and_si256(ik_bitmask16_pairs(extra >> 8), _mm256_set1_epi16(16));
    const __m256i s16 = _mm256_sub_epi16(_mm256_or_si256(ik_widen_pairs(ik_nibble_bytes(ik_load4(b->scales))), hi),
                                         _mm256_set1_epi16(16));
    ikz_iq23(ik_iq2_levels16, 2, b->qs, NULL, s16, ik_shift16(s16, ik_bitmask16_pairs(extra & 0xFF), 5), x, dr, acc);
}

/* ---- IQ6_K: float levels (the cubic), 16 values per register ---- */

/* The IQ6_K levels of the 16 indices in q (bytes), as ik6_levels8. */
SQ_INLINE __m512 ikz6_levels16(__m128i q, __m512 shift)
{
    const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
    const __m512 c2 = _mm512_fmadd_ps(f, _mm512_set1_ps(SQ__IQ6K_D), _mm512_set1_ps(-SQ__IQ6K_C));
    const __m512 c1 = _mm512_fmadd_ps(f, c2, _mm512_set1_ps(SQ__IQ6K_B));
    return _mm512_add_ps(_mm512_fmadd_ps(f, c1, _mm512_set1_ps(SQ__IQ6K_A)), shift);
}

SQ_INLINE void kzs_iq6_k(const sq__block_iq6_k *b, const blk_q8_K *x, __m512 *acc, float dr)
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

/* vec_dot of a type without a row scale (META = 0) or with one of META
 * bytes at the head of the row: the block step over the row, one reduction. */
#define IKZ_VDOT(T, META)                                                                                    \
    static float vdot_##T##_zmm(int64_t n, const void *vw, const void *vx)                                  \
    {                                                                                                       \
        const float dr = (META) ? ik_row_scale(vw, (META)) : 1.0f;                                          \
        const sq__block_##T *w = (const sq__block_##T *)((const char *)vw + (META));                       \
        const blk_q8_K *x = vx;                                                                             \
        __m512 acc = _mm512_setzero_ps();                                                                   \
        for (int64_t i = 0; i < n / 256; i++) kzs_##T(w + i, x + i, &acc, dr);                              \
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
IKZ_VDOT(iq6_k, 0)
#undef IKZ_VDOT

/* The types this file serves in the run kernel. */
SQ_INLINE bool kz_ikz_type(int t)
{
    return t == SQ_TYPE_IQ2_K || t == SQ_TYPE_IQ2_KS || t == SQ_TYPE_IQ3_K || t == SQ_TYPE_IQ3_KS || t == SQ_TYPE_IQ4_K || t == SQ_TYPE_IQ4_KS || t == SQ_TYPE_IQ5_K ||
           t == SQ_TYPE_IQ5_KS || t == SQ_TYPE_IQ6_K;
}

/* One run of ik type T in a band of NR rows (as IK_RUN, simd_ik.h: a
 * row-scale type's run is a sequence of segments, each its scale then one
 * block), per block each row's step into ACC[r]. */
#define IKZ_RUN(T, META, ACC)                                                                               \
    for (int64_t i = 0; i < nb; i++)                                                                        \
        SQ_UNROLL for (int r = 0; r < NR; r++) {                                                            \
            const char *seg_ = wr + (size_t)r * ws + (size_t)i * ((META) + sizeof(sq__block_##T));           \
            kzs_##T((const sq__block_##T *)(seg_ + (META)), xr + i, &(ACC)[r],                              \
                    (META) ? ik_row_scale(seg_, (META)) : 1.0f);                                            \
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
    } while (0)

#endif
#endif
