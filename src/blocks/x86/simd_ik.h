/*
 * simd_ik.h — dot-product kernels of ik_llama.cpp's types (ik_common.h)
 * with Q8_K activations (Q6_0: Q8_0), written once for 256-bit vectors and
 * compiled by kernels_avx2.c and kernels_avx512.c like simd_dot.h (whose
 * helpers and NC-column template they use).
 *
 * Every type is a table lookup: the indices of 32 values (two 16-value
 * sub-blocks in the two 128-bit lanes, or one 32-value sub-block) are
 * unpacked to bytes, looked up with pshufb in the sub-block's level table
 * (the "shifted" twin where its bit is set; 32-level tables as two lookups
 * and a blend), and dotted with the activations as |level| times the
 * activations with the level's sign (maddubs; every level is at most 127 in
 * magnitude), the pairs then scaled by the sub-block scale in 16-bit lanes.
 * Integer sums are exact; the float sums are reordered against the scalar
 * kernels (equal within float rounding, which the tests bound). Types with a
 * row scale multiply it in once per row. IQ6_K's levels come from a cubic,
 * not a table: its kernel evaluates the cubic as the scalar reference does
 * and sums in float.
 */
#ifndef SQ_X86_SIMD_IK_H
#define SQ_X86_SIMD_IK_H

#include "../ik_common.h"
#include "simd_dot.h"

/* 16 levels of a table, in both lanes. */
SQ_INLINE __m256i ik_table2(const int8_t *v) { return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)v)); }

/* isum[c] += scale16 · pairs of (levels q times activation row c's 32
 * values at byte offset off of super-block i). */
SQ_INLINE void ik_dot32(__m256i q, __m256i s16, const void *vx, size_t xs, int64_t i, int off, __m256i *isum,
                        const int NC)
{
    const __m256i aq = _mm256_sign_epi8(q, q);
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        const __m256i y = _mm256_loadu_si256((const __m256i *)(x->qs + off));
        isum[c] = dp_s16(isum[c], _mm256_maddubs_epi16(aq, _mm256_sign_epi8(y, q)), s16);
    }
}

/* acc[c] += (dw · x.d) · isum[c] for super-block i (dw: the block's scale
 * times the row scale). */
SQ_INLINE void ik_flush(const __m256i *isum, const void *vx, size_t xs, int64_t i, float dw, __m256 *acc,
                        const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x->d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
    }
}

/* The row scale (fp16 or f32, meta bytes) at the head of a row. */
SQ_INLINE float ik_row_scale(const void *row, const int meta)
{
    if (meta == 2) {
        uint16_t h;
        memcpy(&h, row, 2);
        return h2f(h);
    }
    float d;
    memcpy(&d, row, 4);
    return d;
}

/* The NC-column kernel of a row-scale type: the row scale (fp16 or f32,
 * META bytes) first, then its blocks, kb_T per super-block with the row
 * scale (kb_T(..., dr) takes it as a factor of every block). */
#define SQ_IK_K_ROWSCALE(T, META)                                                                            \
    SQ_INLINE void k_##T(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)    \
    {                                                                                                       \
        const float dr = ik_row_scale(vw, (META));                                                          \
        const sq__block_##T *w = (const sq__block_##T *)((const char *)vw + (META));                       \
        __m256 acc[MAXNC];                                                                                  \
        SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();                                \
        for (int64_t i = 0; i < n / 256; i++) kb_##T(w, i, vx, xs, acc, NC, dr);                            \
        SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);                                    \
    }

/* The NC-column kernel of a type without a row scale. */
#define SQ_IK_K(T)                                                                                          \
    SQ_INLINE void k_##T(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)    \
    {                                                                                                       \
        const sq__block_##T *w = vw;                                                                        \
        __m256 acc[MAXNC];                                                                                  \
        SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();                                \
        for (int64_t i = 0; i < n / 256; i++) kb_##T(w, i, vx, xs, acc, NC, 1.0f);                          \
        SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);                                    \
    }

/* Every shifted table is its base table plus a constant (IQ2: 5, IQ3 and
 * IQ4: 4, IQ5: 2), so the kernels look up the base levels only and add
 * delta * scale * (sum of the sub-block's activations) for the shifted
 * sub-blocks, from Q8_K's sums of 16: isum += madd(ms16, bsums) with
 * ms16[k] = delta * scale * shifted for the 16-value group k. */

/* int16 lanes: the low 128-bit lane all s16[2i], the high lane all s16[2i+1]
 * (the scales of the two 16-value sub-blocks of 32-value chunk i). */
SQ_INLINE __m256i ik_pair16(__m256i s16, int i)
{
    const __m256i v = _mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(i));
    return _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2,
                                                   3, 2, 3, 2, 3, 2, 3, 2, 3));
}

/* int16 lanes all s16[2i] (one scale per 32-value sub-block, stored twice). */
SQ_INLINE __m256i ik_bcast16(__m256i s16, int i)
{
    const __m256i v = _mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(i));
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16(0x0100));
}

/* isum[c] += madd(ms16, bsums of column c's super-block i). */
SQ_INLINE void ik_shift_term(__m256i ms16, const void *vx, size_t xs, int64_t i, __m256i *isum, const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        isum[c] = dp_s16(isum[c], ms16, _mm256_loadu_si256((const __m256i *)x->bsums));
    }
}

/* ---- scale decoding, 16 int16 lanes (one per 16 values) at a time ---- */

/* The 8 bytes at p in the low half of an xmm. */
SQ_INLINE __m128i ik_load8(const uint8_t *p)
{
    uint64_t u;
    memcpy(&u, p, 8);
    return _mm_cvtsi64_si128((long long)u);
}

/* The 4 bytes at p in the low quarter of an xmm. */
SQ_INLINE __m128i ik_load4(const uint8_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return _mm_cvtsi32_si128((int)u);
}

/* Bytes of b (low 8) as their nibbles in order: low nibble of b[0], high
 * nibble of b[0], low of b[1], ... (16 bytes). */
SQ_INLINE __m128i ik_nibble_bytes(__m128i b)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    return _mm_unpacklo_epi8(_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4));
}

/* 16 int16 lanes of the 16 low bytes of b. */
SQ_INLINE __m256i ik_widen(__m128i b) { return _mm256_cvtepu8_epi16(b); }

/* 16 int16 lanes: each of the 8 low bytes of b twice (one scale per 32). */
SQ_INLINE __m256i ik_widen_pairs(__m128i b) { return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b)); }

/* int16 lanes all-ones where bit k of `bits` is set (lane k), or where bit
 * k/2 is set (pairs: one bit per 32 values). */
SQ_INLINE __m256i ik_bitmask16(unsigned bits)
{
    const __m256i sel = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                          (short)-32768);
    return _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16((short)bits), sel), sel);
}
SQ_INLINE __m256i ik_bitmask16_pairs(unsigned bits)
{
    const __m256i sel = _mm256_setr_epi16(1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128);
    return _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16((short)bits), sel), sel);
}

/* The shift term's factors: delta * ls where the mask is set, else 0. */
SQ_INLINE __m256i ik_shift16(__m256i ls, __m256i mask, int delta)
{
    return _mm256_and_si256(_mm256_mullo_epi16(ls, _mm256_set1_epi16((short)delta)), mask);
}

/* ---- 4-bit ---- */

/* IQ4_KS: per 32 an odd scale ((s & 254) - 127) and a table bit (s & 1). */
SQ_INLINE void kb_iq4_ks(const sq__block_iq4_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(sq__iq4k_values);
    const __m256i sc = ik_widen_pairs(ik_load8(w[i].scales)), one = _mm256_set1_epi16(1);
    const __m256i s16 = _mm256_sub_epi16(_mm256_andnot_si256(one, sc), _mm256_set1_epi16(127));
    const __m256i ms16 = ik_shift16(s16, _mm256_cmpeq_epi16(_mm256_and_si256(sc, one), one), 4);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ms16, vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib = 0; ib < 8; ib++) {
        const __m256i q = _mm256_shuffle_epi8(table, nibbles32(w[i].qs + 16 * ib));
        ik_dot32(q, ik_bcast16(s16, ib), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr, acc, NC);
}
SQ_IK_K_ROWSCALE(iq4_ks, 4)

/* The 16 six-bit scales of an IQ4_K / IQ5_K block (minus 32) into ls, and
 * ms[k] = delta * ls[k] for the shifted sub-blocks. */
SQ_INLINE __m256i ik_scales6(const uint8_t *sl, const uint8_t *sh, unsigned extra, int delta, __m256i *ms16)
{
    /* the high 2 bits: byte k/4 of sh, bits 2(k%4).., moved to bits 4-5 by
     * masking, multiplying up to bits 6-7 and shifting down by 2 */
    const __m128i hb = _mm_shuffle_epi8(ik_load4(sh), _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
    const __m256i h = _mm256_and_si256(ik_widen(hb), _mm256_setr_epi16(3, 12, 48, 192, 3, 12, 48, 192, 3, 12, 48, 192,
                                                                       3, 12, 48, 192));
    const __m256i h45 = _mm256_srli_epi16(_mm256_mullo_epi16(h, _mm256_setr_epi16(64, 16, 4, 1, 64, 16, 4, 1, 64, 16,
                                                                                  4, 1, 64, 16, 4, 1)), 2);
    const __m256i ls = _mm256_sub_epi16(_mm256_or_si256(ik_widen(ik_nibble_bytes(ik_load8(sl))), h45),
                                        _mm256_set1_epi16(32));
    *ms16 = ik_shift16(ls, ik_bitmask16(extra), delta);
    return ls;
}

/* IQ4_K: per 16 a 6-bit scale (the two lanes of a 32-value chunk). */
SQ_INLINE void kb_iq4_k(const sq__block_iq4_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(sq__iq4k_values);
    __m256i ms16;
    const __m256i s16 = ik_scales6(w[i].scales_l, w[i].scales_h, w[i].extra, 4, &ms16);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ms16, vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib32 = 0; ib32 < 8; ib32++) {
        const __m256i q = _mm256_shuffle_epi8(table, nibbles32(w[i].qs + 16 * ib32));
        ik_dot32(q, ik_pair16(s16, ib32), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr * h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq4_k)

/* IQ4_KSS: each 32 is 8 words of 4 indices and a scale bit; the indices
 * come back as c ^ (c >> 1) of the word without its scale bit. */
SQ_INLINE void kb_iq4_kss(const sq__block_iq4_kss *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(sq__iq4k_values);
    const uint8_t *p = (const uint8_t *)w[i].qs;
    const __m128i one = _mm_set1_epi16(1);
    __m128i v[8];
    uint64_t sbytes = 0;
    SQ_UNROLL for (int ib = 0; ib < 8; ib += 2) {
        const __m128i r0 = _mm_loadu_si128((const __m128i *)(p + 16 * ib));
        const __m128i r1 = _mm_loadu_si128((const __m128i *)(p + 16 * ib + 16));
        /* the scale bits (bit 0 of each word) of the two sub-blocks as two
         * bytes: words to 0 / 1 bytes, their sign bits gathered */
        const __m128i b01 = _mm_packs_epi16(_mm_and_si128(r0, one), _mm_and_si128(r1, one));
        sbytes |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_slli_epi16(b01, 7)) << (8 * ib);
        const __m128i c0 = _mm_andnot_si128(one, r0), c1 = _mm_andnot_si128(one, r1);
        v[ib] = _mm_xor_si128(c0, _mm_srli_epi16(c0, 1));
        v[ib + 1] = _mm_xor_si128(c1, _mm_srli_epi16(c1, 1));
    }
    const __m256i sc = ik_widen_pairs(_mm_cvtsi64_si128((long long)sbytes)), one16 = _mm256_set1_epi16(1);
    const __m256i s16 = _mm256_sub_epi16(_mm256_andnot_si256(one16, sc), _mm256_set1_epi16(127));
    const __m256i ms16 = ik_shift16(s16, _mm256_cmpeq_epi16(_mm256_and_si256(sc, one16), one16), 4);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ms16, vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib = 0; ib < 8; ib++) {
        const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v[ib], 4), v[ib]), _mm256_set1_epi8(0x0F));
        ik_dot32(_mm256_shuffle_epi8(table, nib), ik_bcast16(s16, ib), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr, acc, NC);
}
SQ_IK_K_ROWSCALE(iq4_kss, 4)

/* ---- 5-bit: 32-level tables, two lookups and a blend on the fifth bit ---- */

/* Base levels of 32 5-bit indices: the low 4 bits in lo4, the fifth bit as
 * 0 / 1 bytes in hb. */
SQ_INLINE __m256i ik_lookup32(__m256i lo4, __m256i hb, __m256i t_lo, __m256i t_hi)
{
    return _mm256_blendv_epi8(_mm256_shuffle_epi8(t_lo, lo4), _mm256_shuffle_epi8(t_hi, lo4), _mm256_slli_epi16(hb, 7));
}

/* IQ5_KS: per 32 an odd scale and a table bit (shift 2); 4 bits in qs (the
 * nibble of the sub-block's parity), the fifth in qh. */
SQ_INLINE void kb_iq5_ks(const sq__block_iq5_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i t_lo = ik_table2(sq__iq5nl_values), t_hi = ik_table2(sq__iq5nl_values + 16);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    const __m256i sc = ik_widen_pairs(ik_load8(w[i].scales)), one = _mm256_set1_epi16(1);
    const __m256i s16 = _mm256_sub_epi16(_mm256_andnot_si256(one, sc), _mm256_set1_epi16(127));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ik_shift16(s16, _mm256_cmpeq_epi16(_mm256_and_si256(sc, one), one), 2), vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib = 0; ib < 8; ib++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * (ib / 2)));
        const __m256i lo4 = _mm256_and_si256(ib % 2 ? _mm256_srli_epi16(raw, 4) : raw, m4);
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, ib), m1);
        ik_dot32(ik_lookup32(lo4, hb, t_lo, t_hi), ik_bcast16(s16, ib), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr, acc, NC);
}
SQ_IK_K_ROWSCALE(iq5_ks, 4)

/* IQ5_K: per 16 a 6-bit scale (the two lanes of a 32). */
SQ_INLINE void kb_iq5_k(const sq__block_iq5_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i t_lo = ik_table2(sq__iq5nl_values), t_hi = ik_table2(sq__iq5nl_values + 16);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    __m256i ms16;
    const __m256i s16 = ik_scales6(w[i].scales_l, w[i].scales_h, w[i].extra, 2, &ms16);
    const __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ms16, vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib32 = 0; ib32 < 8; ib32++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * (ib32 / 2)));
        const __m256i lo4 = _mm256_and_si256(ib32 % 2 ? _mm256_srli_epi16(raw, 4) : raw, m4);
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, ib32), m1);
        ik_dot32(ik_lookup32(lo4, hb, t_lo, t_hi), ik_pair16(s16, ib32), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr * h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq5_k)

/* ---- 6-bit: levels from ik's cubic, summed in float ---- */

/* The IQ6_K levels of 8 indices (the low 8 bytes of q): the cubic evaluated
 * as the scalar reference does (ik_common.h: three fused multiply-adds in
 * its order, then + shift), so every level is the reference's float. */
SQ_INLINE __m256 ik6_levels8(__m128i q, __m256 shift)
{
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
    const __m256 c2 = _mm256_fmadd_ps(f, _mm256_set1_ps(SQ__IQ6K_D), _mm256_set1_ps(-SQ__IQ6K_C));
    const __m256 c1 = _mm256_fmadd_ps(f, c2, _mm256_set1_ps(SQ__IQ6K_B));
    return _mm256_add_ps(_mm256_fmadd_ps(f, c1, _mm256_set1_ps(SQ__IQ6K_A)), shift);
}

/* The 32 six-bit indices of 32-value chunk ib32 of an IQ6_K block: the
 * nibble (ib32 % 2) of qs, the 2 bits 2(ib32 % 4).. of qh moved to bits 4-5. */
SQ_INLINE __m256i ik6_indices(const sq__block_iq6_k *b, int ib32)
{
    const __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (ib32 / 2)));
    const __m256i hraw = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * (ib32 / 4)));
    const __m256i lo = _mm256_and_si256(ib32 % 2 ? _mm256_srli_epi16(raw, 4) : raw, _mm256_set1_epi8(0x0F));
    const int k = ib32 % 4;
    const __m256i h = k == 0 ? _mm256_slli_epi16(hraw, 4) : k == 1 ? _mm256_slli_epi16(hraw, 2)
                    : k == 2 ? hraw : _mm256_srli_epi16(hraw, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
}

/* IQ6_K: per 16 values an int8 scale and a shift bit (extra); the levels are
 * not integers, so per sub-block the float sum of level times activation is
 * taken, times the scale; only the order of these float sums differs from
 * the scalar reference. */
SQ_INLINE void kb_iq6_k(const sq__block_iq6_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const sq__block_iq6_k *b = w + i;
    __m256 bsum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) bsum[c] = _mm256_setzero_ps();
    for (int ib32 = 0; ib32 < 8; ib32++) {
        const __m256i q = ik6_indices(b, ib32);
        SQ_UNROLL for (int h = 0; h < 2; h++) {
            const int ib = 2 * ib32 + h;
            const __m128i qh = h ? _mm256_extracti128_si256(q, 1) : _mm256_castsi256_si128(q);
            const __m256 shift = _mm256_set1_ps(b->extra >> ib & 1 ? 1.f : 0.f);
            const __m256 l0 = ik6_levels8(qh, shift), l1 = ik6_levels8(_mm_unpackhi_epi64(qh, qh), shift);
            const __m256 sc = _mm256_set1_ps((float)b->scales[ib]);
            SQ_UNROLL for (int c = 0; c < NC; c++) {
                const int8_t *y = (XCOL(blk_q8_K, vx, xs, c) + i)->qs + 16 * ib;
                const __m256 y0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)y)));
                const __m256 y1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(y + 8))));
                bsum[c] = _mm256_fmadd_ps(sc, _mm256_fmadd_ps(l1, y1, _mm256_mul_ps(l0, y0)), bsum[c]);
            }
        }
    }
    const float d = dr * h2f(b->d);
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x->d), bsum[c], acc[c]);
    }
}
SQ_IK_K(iq6_k)

/* ---- 3-bit: 8 levels (the shifted twin is the same plus 4) ---- */

/* IQ3_K: per 16 a signed odd scale; index = 2 bits of qs | the bit of qh. */
SQ_INLINE void kb_iq3_k(const sq__block_iq3_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(sq__iq3nl_values), m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const unsigned extra = w[i].extra, sgn = w[i].scales_h;
    const __m256i odd = _mm256_add_epi16(_mm256_slli_epi16(ik_widen(ik_nibble_bytes(ik_load8(w[i].scales_l))), 1),
                                         _mm256_set1_epi16(1));
    const __m256i neg = ik_bitmask16(sgn);
    const __m256i s16 = _mm256_sub_epi16(_mm256_xor_si256(odd, neg), neg);
    const __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ik_shift16(s16, ik_bitmask16(extra), 4), vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib32 = 0; ib32 < 8; ib32++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * (ib32 / 4)));
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * (ib32 % 4)), m3);
        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, ib32), 2), m4);
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_or_si256(lo, hi));
        ik_dot32(q, ik_pair16(s16, ib32), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr * h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq3_k)

/* IQ3_KS: per 32 a 5-bit signed scale and a table bit (extra 8 + ib). */
SQ_INLINE void kb_iq3_ks(const sq__block_iq3_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(sq__iq3nl_values), m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const unsigned extra = w[i].extra;
    const __m128i b = ik_load4(w[i].scales), n4 = _mm_set1_epi8(0x0F);
    const __m128i nib = _mm_unpacklo_epi32(_mm_and_si128(b, n4), _mm_and_si128(_mm_srli_epi16(b, 4), n4));
    const __m256i s5 = _mm256_and_si256(ik_bitmask16_pairs(extra & 0xFF), _mm256_set1_epi16(16));
    const __m256i s16 = _mm256_sub_epi16(_mm256_or_si256(ik_widen_pairs(nib), s5), _mm256_set1_epi16(16));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ik_shift16(s16, ik_bitmask16_pairs(extra >> 8), 4), vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib = 0; ib < 8; ib++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * (ib / 4)));
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * (ib % 4)), m3);
        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, ib), 2), m4);
        ik_dot32(_mm256_shuffle_epi8(table, _mm256_or_si256(lo, hi)), ik_bcast16(s16, ib), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr, acc, NC);
}
SQ_IK_K_ROWSCALE(iq3_ks, 2)

/* ---- 2-bit: 4 levels (the shifted twin is the same plus 5) ---- */

/* IQ2's 8 levels (base, shifted) padded to a 16-byte pshufb table. */
static const int8_t ik_iq2_levels16[16] = {-31, -13, 1, 17, -26, -8, 6, 22};

/* IQ2_K: per 16 a 4-bit scale (offset 8). */
SQ_INLINE void kb_iq2_k(const sq__block_iq2_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(ik_iq2_levels16), m3 = _mm256_set1_epi8(3);
    const unsigned extra = w[i].extra;
    const __m256i s16 = _mm256_sub_epi16(ik_widen(ik_nibble_bytes(ik_load8(w[i].scales))), _mm256_set1_epi16(8));
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ik_shift16(s16, ik_bitmask16(extra), 5), vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib32 = 0; ib32 < 8; ib32++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * (ib32 / 4)));
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 2 * (ib32 % 4)), m3));
        ik_dot32(q, ik_pair16(s16, ib32), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr * h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq2_k)

/* IQ2_KS: per 32 a 5-bit scale (offset 16) and a table bit. */
SQ_INLINE void kb_iq2_ks(const sq__block_iq2_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const __m256i table = ik_table2(ik_iq2_levels16), m3 = _mm256_set1_epi8(3);
    const unsigned extra = w[i].extra;
    const __m256i hi = _mm256_and_si256(ik_bitmask16_pairs(extra >> 8), _mm256_set1_epi16(16));
    const __m256i s16 = _mm256_sub_epi16(_mm256_or_si256(ik_widen_pairs(ik_nibble_bytes(ik_load4(w[i].scales))), hi),
                                         _mm256_set1_epi16(16));
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    ik_shift_term(ik_shift16(s16, ik_bitmask16_pairs(extra & 0xFF), 5), vx, xs, i, isum, NC);
    SQ_UNROLL for (int ib = 0; ib < 8; ib++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * (ib / 4)));
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 2 * (ib % 4)), m3));
        ik_dot32(q, ik_bcast16(s16, ib), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr, acc, NC);
}
SQ_IK_K_ROWSCALE(iq2_ks, 2)

/* The IQ2_KL grid (sq__iq2kl_values) split into first and second values. */
static const int8_t ik_iq2kl_first[32] = {-63, -63, -40, -40, -40, -40, -23, -23, -23, -23, -23, -10, -10, -10, -10, 1,
    1, 1, 1, 1, 13, 13, 13, 13, 13, 28, 28, 28, 28, 28, 47, 47};
static const int8_t ik_iq2kl_second[32] = {-23, 13, -63, -10, 13, 47, -40, -23, 1, 13, 28, -63, 1, 13, 47, -23,
    -10, 1, 13, 28, -40, -23, -10, 1, 13, -63, -23, 1, 28, 47, -23, 13};

/* IQ2_KL: 16 pairs per 32, each a 5-bit index into the 32-point grid of
 * level pairs: first and second values looked up separately (two lookups
 * and a blend each), then interleaved. */
SQ_INLINE void kb_iq2_kl(const sq__block_iq2_kl *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC, float dr)
{
    const int8_t *g0 = ik_iq2kl_first, *g1 = ik_iq2kl_second;
    const __m128i a0 = _mm_loadu_si128((const __m128i *)g0), a1 = _mm_loadu_si128((const __m128i *)(g0 + 16));
    const __m128i b0 = _mm_loadu_si128((const __m128i *)g1), b1 = _mm_loadu_si128((const __m128i *)(g1 + 16));
    const __m128i qh = _mm_loadu_si128((const __m128i *)w[i].qh), m4 = _mm_set1_epi8(0x0F), m1 = _mm_set1_epi8(1);
    /* scales: the nibble of scales_l[ib % 4] (low for ib < 4) and bits
     * 2ib.. of scales_h, multiplied up to bits 14-15 and shifted to 4-5 */
    const __m128i b = ik_load4(w[i].scales_l), n4 = _mm_set1_epi8(0x0F);
    const __m128i nib = _mm_unpacklo_epi32(_mm_and_si128(b, n4), _mm_and_si128(_mm_srli_epi16(b, 4), n4));
    const __m256i h = _mm256_and_si256(_mm256_set1_epi16((short)w[i].scales_h),
                                       _mm256_setr_epi16(3, 3, 12, 12, 48, 48, 192, 192, 768, 768, 3072, 3072, 12288,
                                                         12288, (short)49152, (short)49152));
    const __m256i h45 = _mm256_srli_epi16(
        _mm256_mullo_epi16(h, _mm256_setr_epi16(16384, 16384, 4096, 4096, 1024, 1024, 256, 256, 64, 64, 16, 16, 4, 4,
                                                1, 1)),
        10);
    const __m256i s16 = _mm256_sub_epi16(_mm256_or_si256(ik_widen_pairs(nib), h45), _mm256_set1_epi16(32));
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    SQ_UNROLL for (int ib = 0; ib < 8; ib++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)(w[i].qs + 16 * (ib / 2)));
        const __m128i idx = _mm_and_si128(_mm_srl_epi16(raw, _mm_cvtsi32_si128(4 * (ib % 2))), m4);
        const __m128i hb = _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(ib)), m1), 7);
        const __m128i v0 = _mm_blendv_epi8(_mm_shuffle_epi8(a0, idx), _mm_shuffle_epi8(a1, idx), hb);
        const __m128i v1 = _mm_blendv_epi8(_mm_shuffle_epi8(b0, idx), _mm_shuffle_epi8(b1, idx), hb);
        const __m256i q = _mm256_set_m128i(_mm_unpackhi_epi8(v0, v1), _mm_unpacklo_epi8(v0, v1));
        ik_dot32(q, ik_bcast16(s16, ib), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, dr, acc, NC);
}
SQ_IK_K_ROWSCALE(iq2_kl, 2)

/* ---- Q6_0 x Q8_0 ---- */

/* The 6-bit levels minus 32 of a Q6_0 block: nibbles from qs, the 2 high bits
 * of values j and j+16 from qh[j % 8] (bits 0-3 for j < 8, 4-7 after). */
SQ_INLINE __m256i ik_q6_0_values(const sq__block_q6_0 *b)
{
    uint64_t h8;
    memcpy(&h8, b->qh, 8);
    const __m128i h = _mm_cvtsi64_si128((long long)h8), m4 = _mm_set1_epi8(0x0F);
    const __m128i hq = _mm_unpacklo_epi64(_mm_and_si128(h, m4), _mm_and_si128(_mm_srli_epi16(h, 4), m4));
    const __m128i hlo = _mm_slli_epi16(_mm_and_si128(hq, _mm_set1_epi8(3)), 4);
    const __m128i hhi = _mm_slli_epi16(_mm_and_si128(hq, _mm_set1_epi8(12)), 2);
    const __m256i v = _mm256_or_si256(nibbles32(b->qs), _mm256_set_m128i(hhi, hlo));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(32));
}

SQ_INLINE void k_q6_0(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const sq__block_q6_0 *w = vw;
    __m256 acc[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256i q = ik_q6_0_values(&w[i]);
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

SQ_DEFINE_QUANT_KERNELS(iq4_ks)
SQ_DEFINE_QUANT_KERNELS(iq4_k)
SQ_DEFINE_QUANT_KERNELS(iq4_kss)
SQ_DEFINE_QUANT_KERNELS(iq5_ks)
SQ_DEFINE_QUANT_KERNELS(iq5_k)
SQ_DEFINE_QUANT_KERNELS(iq6_k)
SQ_DEFINE_QUANT_KERNELS(iq3_k)
SQ_DEFINE_QUANT_KERNELS(iq3_ks)
SQ_DEFINE_QUANT_KERNELS(iq2_k)
SQ_DEFINE_QUANT_KERNELS(iq2_ks)
SQ_DEFINE_QUANT_KERNELS(iq2_kl)
SQ_DEFINE_QUANT_KERNELS(q6_0)

/* ---- the run kernels' steps (kernels_avx2.c and simd_zmm.h, gemm.h) ----
 *
 * One run of ik type T (META bytes of row scale) in a band of NR rows of a
 * SmarterQuant matrix: per 256 values and per row, kb_T into that row's
 * 256-bit accumulator ACC[r]. A row-scale type's run is a sequence of
 * segments, each a row of its own: its scale, then one super-block. The
 * band's variables (nb, wr, ws, xr, NR) are the run kernels'. */
#define IK_RUN(T, META, ACC)                                                                                \
    for (int64_t i = 0; i < nb; i++)                                                                        \
        SQ_UNROLL for (int r = 0; r < NR; r++) {                                                            \
            const char *seg_ = wr + (size_t)r * ws + (size_t)i * ((META) + sizeof(sq__block_##T));           \
            const void *x_ = (const char *)(xr) + (size_t)i * sizeof(blk_q8_K);                             \
            kb_##T((const sq__block_##T *)(seg_ + (META)), 0, x_, 0, &ACC[r], 1,                            \
                   (META) ? ik_row_scale(seg_, (META)) : 1.0f);                                             \
        }

/* The case labels of the ik types for a run kernel's type switch. */
#define IK_RUN_CASES(ACC)                                                                                   \
    case SQ_TYPE_IQ4_KS: IK_RUN(iq4_ks, 4, ACC) break;                                                      \
    case SQ_TYPE_IQ4_K: IK_RUN(iq4_k, 0, ACC) break;                                                        \
    case SQ_TYPE_IQ4_KSS: IK_RUN(iq4_kss, 4, ACC) break;                                                    \
    case SQ_TYPE_IQ5_KS: IK_RUN(iq5_ks, 4, ACC) break;                                                      \
    case SQ_TYPE_IQ5_K: IK_RUN(iq5_k, 0, ACC) break;                                                        \
    case SQ_TYPE_IQ6_K: IK_RUN(iq6_k, 0, ACC) break;                                                        \
    case SQ_TYPE_IQ3_K: IK_RUN(iq3_k, 0, ACC) break;                                                        \
    case SQ_TYPE_IQ3_KS: IK_RUN(iq3_ks, 2, ACC) break;                                                      \
    case SQ_TYPE_IQ2_K: IK_RUN(iq2_k, 0, ACC) break;                                                        \
    case SQ_TYPE_IQ2_KS: IK_RUN(iq2_ks, 2, ACC) break;                                                      \
    case SQ_TYPE_IQ2_KL: IK_RUN(iq2_kl, 2, ACC) break;

/* Registers the vec_dot kernels above (simd_register.h calls this). */
static void ik_register(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ4_KS].vec_dot = vdot_iq4_ks;
    table[SQ_TYPE_IQ4_K].vec_dot = vdot_iq4_k;
    table[SQ_TYPE_IQ4_KSS].vec_dot = vdot_iq4_kss;
    table[SQ_TYPE_IQ5_KS].vec_dot = vdot_iq5_ks;
    table[SQ_TYPE_IQ5_K].vec_dot = vdot_iq5_k;
    table[SQ_TYPE_IQ6_K].vec_dot = vdot_iq6_k;
    table[SQ_TYPE_IQ3_K].vec_dot = vdot_iq3_k;
    table[SQ_TYPE_IQ3_KS].vec_dot = vdot_iq3_ks;
    table[SQ_TYPE_IQ2_K].vec_dot = vdot_iq2_k;
    table[SQ_TYPE_IQ2_KS].vec_dot = vdot_iq2_ks;
    table[SQ_TYPE_IQ2_KL].vec_dot = vdot_iq2_kl;
    table[SQ_TYPE_Q6_0].vec_dot = vdot_q6_0;
}

/* The tile kernel of an ik type, or NULL (simd_register.h asks this first). */
static sq__gemm_fn ik_gemm(int type)
{
    switch (type) {
    case SQ_TYPE_IQ4_KS: return gemm_iq4_ks;
    case SQ_TYPE_IQ4_K: return gemm_iq4_k;
    case SQ_TYPE_IQ4_KSS: return gemm_iq4_kss;
    case SQ_TYPE_IQ5_KS: return gemm_iq5_ks;
    case SQ_TYPE_IQ5_K: return gemm_iq5_k;
    case SQ_TYPE_IQ6_K: return gemm_iq6_k;
    case SQ_TYPE_IQ3_K: return gemm_iq3_k;
    case SQ_TYPE_IQ3_KS: return gemm_iq3_ks;
    case SQ_TYPE_IQ2_K: return gemm_iq2_k;
    case SQ_TYPE_IQ2_KS: return gemm_iq2_ks;
    case SQ_TYPE_IQ2_KL: return gemm_iq2_kl;
    case SQ_TYPE_Q6_0: return gemm_q6_0;
    default: return NULL;
    }
}

#endif
