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
 * row scale multiply it in once per row. IQ6_K (levels from a cubic) stays
 * scalar.
 */
#ifndef SQ_X86_SIMD_IK_H
#define SQ_X86_SIMD_IK_H

#include "../ik_common.h"
#include "simd_dot.h"

/* 16 levels of a table, in both lanes. */
SQ_INLINE __m256i ik_table2(const int8_t *v) { return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)v)); }

/* Levels v_lo (16) in the low lane, v_hi in the high lane. */
SQ_INLINE __m256i ik_table_lanes(const int8_t *v_lo, const int8_t *v_hi)
{
    return _mm256_set_m128i(_mm_loadu_si128((const __m128i *)v_hi), _mm_loadu_si128((const __m128i *)v_lo));
}

/* 16-bit scale s_lo in the low lane, s_hi in the high lane. */
SQ_INLINE __m256i ik_scales_lanes(int s_lo, int s_hi)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)s_hi), _mm_set1_epi16((short)s_lo));
}

/* 32 bytes at p shifted right by `shift` bits within each byte (the bits
 * that come in from the next byte are masked off by the caller). */
SQ_INLINE __m256i ik_shift_bytes(const uint8_t *p, int shift)
{
    return _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)p), _mm_cvtsi32_si128(shift));
}

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

/* acc[c] += x.d · isum[c] for super-block i. */
SQ_INLINE void ik_flush(const __m256i *isum, const void *vx, size_t xs, int64_t i, float dw, __m256 *acc,
                        const int NC)
{
    SQ_UNROLL for (int c = 0; c < NC; c++) {
        const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x->d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
    }
}

/* The NC-column kernel of a row-scale type: the row scale (fp16 or f32,
 * META bytes) first, then blocks of BLK bytes, kb_T per super-block. */
#define SQ_IK_K_ROWSCALE(T, META)                                                                            \
    SQ_INLINE void k_##T(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)    \
    {                                                                                                       \
        float dr;                                                                                           \
        if ((META) == 2) {                                                                                  \
            uint16_t h;                                                                                     \
            memcpy(&h, vw, 2);                                                                              \
            dr = h2f(h);                                                                                    \
        } else {                                                                                            \
            memcpy(&dr, vw, 4);                                                                             \
        }                                                                                                   \
        const sq__block_##T *w = (const sq__block_##T *)((const char *)vw + (META));                       \
        __m256 acc[MAXNC];                                                                                  \
        SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();                                \
        for (int64_t i = 0; i < n / 256; i++) kb_##T(w, i, vx, xs, acc, NC);                                \
        SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = dr * hsum_ps(acc[c]);                               \
    }

/* The NC-column kernel of a type without a row scale. */
#define SQ_IK_K(T)                                                                                          \
    SQ_INLINE void k_##T(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)    \
    {                                                                                                       \
        const sq__block_##T *w = vw;                                                                        \
        __m256 acc[MAXNC];                                                                                  \
        SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();                                \
        for (int64_t i = 0; i < n / 256; i++) kb_##T(w, i, vx, xs, acc, NC);                                \
        SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = hsum_ps(acc[c]);                                    \
    }

/* ---- 4-bit ---- */

/* IQ4_KS: per 32 a table (bit 0 of the scale byte) and an odd scale. */
SQ_INLINE void kb_iq4_ks(const sq__block_iq4_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i t0 = ik_table2(sq__iq4k_values), t1 = ik_table2(sq__iq4k_values + 16);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const int sc = w[i].scales[ib];
        const __m256i q = _mm256_shuffle_epi8(sc & 1 ? t1 : t0, nibbles32(w[i].qs + 16 * ib));
        ik_dot32(q, _mm256_set1_epi16((short)((sc & 254) - 127)), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, 1.0f, acc, NC);
}
SQ_IK_K_ROWSCALE(iq4_ks, 4)

/* IQ4_K: per 16 a table and a 6-bit scale; the two 16-value sub-blocks of a
 * 32-value chunk are the two lanes. */
SQ_INLINE void kb_iq4_k(const sq__block_iq4_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const unsigned extra = w[i].extra;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib32 = 0; ib32 < 8; ib32++) {
        const int sh = w[i].scales_h[ib32 / 2] >> 4 * (ib32 % 2), sl = w[i].scales_l[ib32];
        const int ls1 = ((sl & 0xF) | ((sh << 4) & 0x30)) - 32, ls2 = ((sl >> 4) | ((sh << 2) & 0x30)) - 32;
        const __m256i t = ik_table_lanes(sq__iq4k_values + 16 * (extra >> (2 * ib32) & 1),
                                         sq__iq4k_values + 16 * (extra >> (2 * ib32 + 1) & 1));
        const __m256i q = _mm256_shuffle_epi8(t, nibbles32(w[i].qs + 16 * ib32));
        ik_dot32(q, ik_scales_lanes(ls1, ls2), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq4_k)

/* IQ4_KSS: each 32 is 8 words of 4 indices and a scale bit; the indices
 * come back as c ^ (c >> 1) of the word without its scale bit. */
SQ_INLINE void kb_iq4_kss(const sq__block_iq4_kss *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i t0 = ik_table2(sq__iq4k_values), t1 = ik_table2(sq__iq4k_values + 16);
    const uint8_t *p = (const uint8_t *)w[i].qs;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++, p += 16) {
        __m128i v = _mm_and_si128(_mm_loadu_si128((const __m128i *)p), _mm_set1_epi16((short)0xFFFE));
        v = _mm_xor_si128(v, _mm_srli_epi16(v, 1));
        int ls = 0;
        for (int k = 0; k < 8; k++) ls |= (p[2 * k] & 1) << k;
        const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
        const __m256i q = _mm256_shuffle_epi8(ls & 1 ? t1 : t0, nib);
        ik_dot32(q, _mm256_set1_epi16((short)((ls & 254) - 127)), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, 1.0f, acc, NC);
}
SQ_IK_K_ROWSCALE(iq4_kss, 4)

/* ---- 5-bit: 32-level tables, two lookups and a blend on the fifth bit ---- */

/* Levels of 32 5-bit indices: the low 4 bits in lo4, the fifth bit as
 * 0 / 1 bytes in hb; low lane from table v_lo, high lane from v_hi. */
SQ_INLINE __m256i ik_lookup32(__m256i lo4, __m256i hb, const int8_t *v_lo, const int8_t *v_hi)
{
    const __m256i a = _mm256_shuffle_epi8(ik_table_lanes(v_lo, v_hi), lo4);
    const __m256i b = _mm256_shuffle_epi8(ik_table_lanes(v_lo + 16, v_hi + 16), lo4);
    return _mm256_blendv_epi8(a, b, _mm256_slli_epi16(hb, 7));
}

/* IQ5_KS: per 32 a table, an odd scale; 4 bits in qs (the nibble of the
 * sub-block's parity), the fifth in qh. */
SQ_INLINE void kb_iq5_ks(const sq__block_iq5_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const int sc = w[i].scales[ib];
        const int8_t *v = sq__iq5nl_values + 32 * (sc & 1);
        const __m256i lo4 = _mm256_and_si256(ik_shift_bytes(w[i].qs + 32 * (ib / 2), 4 * (ib % 2)), m4);
        const __m256i hb = _mm256_and_si256(ik_shift_bytes(w[i].qh, ib), m1);
        const __m256i q = ik_lookup32(lo4, hb, v, v);
        ik_dot32(q, _mm256_set1_epi16((short)((sc & 254) - 127)), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, 1.0f, acc, NC);
}
SQ_IK_K_ROWSCALE(iq5_ks, 4)

/* IQ5_K: per 16 a table and a 6-bit scale (the two lanes of a 32). */
SQ_INLINE void kb_iq5_k(const sq__block_iq5_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    const unsigned extra = w[i].extra;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib32 = 0; ib32 < 8; ib32++) {
        const int sh = w[i].scales_h[ib32 / 2] >> 4 * (ib32 % 2), sl = w[i].scales_l[ib32];
        const int ls1 = ((sl & 0xF) | ((sh << 4) & 0x30)) - 32, ls2 = ((sl >> 4) | ((sh << 2) & 0x30)) - 32;
        const __m256i lo4 = _mm256_and_si256(ik_shift_bytes(w[i].qs + 32 * (ib32 / 2), 4 * (ib32 % 2)), m4);
        const __m256i hb = _mm256_and_si256(ik_shift_bytes(w[i].qh, ib32), m1);
        const __m256i q = ik_lookup32(lo4, hb, sq__iq5nl_values + 32 * (extra >> (2 * ib32) & 1),
                                      sq__iq5nl_values + 32 * (extra >> (2 * ib32 + 1) & 1));
        ik_dot32(q, ik_scales_lanes(ls1, ls2), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq5_k)

/* ---- 3-bit: 8 levels and their shifted twin in one 16-entry table ---- */

/* IQ3_K: per 16 a signed odd scale; index = 2 bits of qs | bit of qh | 8
 * for the shifted table, per lane. */
SQ_INLINE void kb_iq3_k(const sq__block_iq3_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i table = ik_table2(sq__iq3nl_values), m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const unsigned extra = w[i].extra, sgn = w[i].scales_h;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib32 = 0; ib32 < 8; ib32++) {
        const int sl = w[i].scales_l[ib32];
        const int ls1 = (2 * (sl & 0xF) + 1) * (sgn >> (2 * ib32) & 1 ? -1 : 1);
        const int ls2 = (2 * (sl >> 4) + 1) * (sgn >> (2 * ib32 + 1) & 1 ? -1 : 1);
        const __m256i lo = _mm256_and_si256(ik_shift_bytes(w[i].qs + 32 * (ib32 / 4), 2 * (ib32 % 4)), m3);
        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(ik_shift_bytes(w[i].qh, ib32), 2), m4);
        const __m256i sh = _mm256_set_m128i(_mm_set1_epi8((char)(8 * (extra >> (2 * ib32 + 1) & 1))),
                                            _mm_set1_epi8((char)(8 * (extra >> (2 * ib32) & 1))));
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_or_si256(_mm256_or_si256(lo, hi), sh));
        ik_dot32(q, ik_scales_lanes(ls1, ls2), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq3_k)

/* IQ3_KS: per 32 a 5-bit signed scale and a table bit (extra 8 + ib). */
SQ_INLINE void kb_iq3_ks(const sq__block_iq3_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i table = ik_table2(sq__iq3nl_values), m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const unsigned extra = w[i].extra;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const int ls = ((w[i].scales[ib % 4] >> 4 * (ib / 4) & 0xF) | ((extra >> ib & 1) << 4)) - 16;
        const __m256i lo = _mm256_and_si256(ik_shift_bytes(w[i].qs + 32 * (ib / 4), 2 * (ib % 4)), m3);
        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(ik_shift_bytes(w[i].qh, ib), 2), m4);
        const __m256i sh = _mm256_set1_epi8((char)(8 * (extra >> (8 + ib) & 1)));
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_or_si256(_mm256_or_si256(lo, hi), sh));
        ik_dot32(q, _mm256_set1_epi16((short)ls), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, 1.0f, acc, NC);
}
SQ_IK_K_ROWSCALE(iq3_ks, 2)

/* ---- 2-bit: 4 levels and their shifted twin ---- */

static const int8_t ik_iq2nl_table16[16] = {-31, -13, 1, 17, -26, -8, 6, 22, 0, 0, 0, 0, 0, 0, 0, 0};

/* IQ2_K: per 16 a 4-bit scale (offset 8); index = 2 bits | 4 for the shifted table. */
SQ_INLINE void kb_iq2_k(const sq__block_iq2_k *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i table = ik_table2(ik_iq2nl_table16), m3 = _mm256_set1_epi8(3);
    const unsigned extra = w[i].extra;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib32 = 0; ib32 < 8; ib32++) {
        const int sl = w[i].scales[ib32];
        const __m256i lo = _mm256_and_si256(ik_shift_bytes(w[i].qs + 32 * (ib32 / 4), 2 * (ib32 % 4)), m3);
        const __m256i sh = _mm256_set_m128i(_mm_set1_epi8((char)(4 * (extra >> (2 * ib32 + 1) & 1))),
                                            _mm_set1_epi8((char)(4 * (extra >> (2 * ib32) & 1))));
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_or_si256(lo, sh));
        ik_dot32(q, ik_scales_lanes((sl & 0xF) - 8, (sl >> 4) - 8), vx, xs, i, 32 * ib32, isum, NC);
    }
    ik_flush(isum, vx, xs, i, h2f(w[i].d), acc, NC);
}
SQ_IK_K(iq2_k)

/* IQ2_KS: per 32 a 5-bit scale (offset 16) and a table bit. */
SQ_INLINE void kb_iq2_ks(const sq__block_iq2_ks *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const __m256i table = ik_table2(ik_iq2nl_table16), m3 = _mm256_set1_epi8(3);
    const unsigned extra = w[i].extra;
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const int ls = ((w[i].scales[ib / 2] >> 4 * (ib % 2) & 0xF) | ((extra >> (8 + ib) & 1) << 4)) - 16;
        const __m256i lo = _mm256_and_si256(ik_shift_bytes(w[i].qs + 32 * (ib / 4), 2 * (ib % 4)), m3);
        const __m256i q = _mm256_shuffle_epi8(table, _mm256_or_si256(lo, _mm256_set1_epi8((char)(4 * (extra >> ib & 1)))));
        ik_dot32(q, _mm256_set1_epi16((short)ls), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, 1.0f, acc, NC);
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
SQ_INLINE void kb_iq2_kl(const sq__block_iq2_kl *w, int64_t i, const void *vx, size_t xs, __m256 *acc, const int NC)
{
    const int8_t *g0 = ik_iq2kl_first, *g1 = ik_iq2kl_second;
    const __m128i a0 = _mm_loadu_si128((const __m128i *)g0), a1 = _mm_loadu_si128((const __m128i *)(g0 + 16));
    const __m128i b0 = _mm_loadu_si128((const __m128i *)g1), b1 = _mm_loadu_si128((const __m128i *)(g1 + 16));
    const __m128i qh = _mm_loadu_si128((const __m128i *)w[i].qh), m4 = _mm_set1_epi8(0x0F), m1 = _mm_set1_epi8(1);
    __m256i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) {
        const int ls = ((w[i].scales_l[ib % 4] >> 4 * (ib / 4) & 0xF) | ((w[i].scales_h >> 2 * ib & 3) << 4)) - 32;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(w[i].qs + 16 * (ib / 2)));
        const __m128i idx = _mm_and_si128(_mm_srl_epi16(raw, _mm_cvtsi32_si128(4 * (ib % 2))), m4);
        const __m128i hb = _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(ib)), m1), 7);
        const __m128i v0 = _mm_blendv_epi8(_mm_shuffle_epi8(a0, idx), _mm_shuffle_epi8(a1, idx), hb);
        const __m128i v1 = _mm_blendv_epi8(_mm_shuffle_epi8(b0, idx), _mm_shuffle_epi8(b1, idx), hb);
        const __m256i q = _mm256_set_m128i(_mm_unpackhi_epi8(v0, v1), _mm_unpacklo_epi8(v0, v1));
        ik_dot32(q, _mm256_set1_epi16((short)ls), vx, xs, i, 32 * ib, isum, NC);
    }
    ik_flush(isum, vx, xs, i, 1.0f, acc, NC);
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
SQ_DEFINE_QUANT_KERNELS(iq3_k)
SQ_DEFINE_QUANT_KERNELS(iq3_ks)
SQ_DEFINE_QUANT_KERNELS(iq2_k)
SQ_DEFINE_QUANT_KERNELS(iq2_ks)
SQ_DEFINE_QUANT_KERNELS(iq2_kl)
SQ_DEFINE_QUANT_KERNELS(q6_0)

/* Registers the vec_dot kernels above (simd_register.h calls this). */
static void ik_register(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ4_KS].vec_dot = vdot_iq4_ks;
    table[SQ_TYPE_IQ4_K].vec_dot = vdot_iq4_k;
    table[SQ_TYPE_IQ4_KSS].vec_dot = vdot_iq4_kss;
    table[SQ_TYPE_IQ5_KS].vec_dot = vdot_iq5_ks;
    table[SQ_TYPE_IQ5_K].vec_dot = vdot_iq5_k;
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
