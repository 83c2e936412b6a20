/*
 * simd_zmm.h — 512-bit single-row dot products for the K-quants (Q2_K..Q6_K)
 * on AVX-512 BW + VNNI: a whole 64-value group per instruction, half the
 * instruction count of the 256-bit template in simd_dot.h. Used for vec_dot
 * and for the run kernel of the SmarterQuant matrix-vector product (token
 * generation); the multi-column tile kernels keep the 256-bit template, whose
 * per-column work dominates.
 */
#ifndef SQ_X86_SIMD_ZMM_H
#define SQ_X86_SIMD_ZMM_H

#include "simd_dot.h"
#include "simd_iq.h"
#include "simd_ik.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* ---- K-quants x Q8_K, one 256-value block at a time ----
 *
 * Each type has a per-block step kzs_T that adds one block of one weight row
 * into that row's accumulators without reducing them: acc (16 floats) takes
 * d·dy·(integer dot), accm (8 floats) takes −dmin·dy·(mins · bsums) for the
 * types with mins. The activations of the block are loaded once (kz_act_nat
 * or kz_act_nib, in the value order the type's unpacking yields) and shared
 * by every row that uses them. vec_dot is the step over a row's blocks and
 * one reduction; the run kernel (sq__runs_fn, below) walks all runs of a
 * band of rows and reduces each row once. */

/* Constant tables (loaded, not built: a built constant is a dependency chain
 * at the start of every call, which costs more than a 2-block row's work). */
#define KZ_X8(v) v, v, v, v, v, v, v, v
#define KZ_X16(v) KZ_X8(v), KZ_X8(v)
#define KZ_X32(v) KZ_X16(v), KZ_X16(v)
/* Q4_K/Q5_K, nibble-ordered group g: int16 lanes 0..15 take scale b, 16..31 scale b+2 (b = 0, 1, 4, 5) */
static const _Alignas(64) int16_t kz_nib_idx[4][32] = {
    { KZ_X16(0), KZ_X16(2) }, { KZ_X16(1), KZ_X16(3) }, { KZ_X16(4), KZ_X16(6) }, { KZ_X16(5), KZ_X16(7) }
};
/* Q5_K: byte masks of the qh bit holding the fifth bit of group g (bits b | b+2) */
static const _Alignas(64) uint8_t kz_q5_bit[4][64] = {
    { KZ_X32(1), KZ_X32(4) }, { KZ_X32(2), KZ_X32(8) }, { KZ_X32(16), KZ_X32(64) }, { KZ_X32(32), KZ_X32(128) }
};
/* Q4_K/Q5_K in value order: lanes 0..15 take scale 2g, 16..31 scale 2g+1 */
static const _Alignas(64) int16_t kz_pair_idx[4][32] = {
    { KZ_X16(0), KZ_X16(1) }, { KZ_X16(2), KZ_X16(3) }, { KZ_X16(4), KZ_X16(5) }, { KZ_X16(6), KZ_X16(7) }
};
/* Q5_K in value order: the qh bits of group g are 2g | 2g+1 */
static const _Alignas(64) uint8_t kz_q5_nat[4][64] = {
    { KZ_X32(1), KZ_X32(2) }, { KZ_X32(4), KZ_X32(8) }, { KZ_X32(16), KZ_X32(32) }, { KZ_X32(64), KZ_X32(128) }
};
/* Q2_K/Q3_K/Q6_K, group g of 64 values: lanes 8k..8k+7 take scale 4g+k */
static const _Alignas(64) int16_t kz_s16_idx[4][32] = {
    { KZ_X8(0), KZ_X8(1), KZ_X8(2), KZ_X8(3) },
    { KZ_X8(4), KZ_X8(5), KZ_X8(6), KZ_X8(7) },
    { KZ_X8(8), KZ_X8(9), KZ_X8(10), KZ_X8(11) },
    { KZ_X8(12), KZ_X8(13), KZ_X8(14), KZ_X8(15) },
};
#undef KZ_X8
#undef KZ_X16
#undef KZ_X32
#define KZ_TAB(t, g) _mm512_load_si512((const void *)(t)[g])


/* int16 lanes: lane i takes element idx[i] of the 16 int16 scales. */
SQ_INLINE __m512i spread_scales16(__m512i sc16, __m512i idx) { return _mm512_permutexvar_epi16(idx, sc16); }

/* y[j] = activations 64j..64j+63. */
SQ_INLINE void kz_act_nat(const blk_q8_K *x, __m512i y[4])
{
    SQ_UNROLL for (int j = 0; j < 4; j++) y[j] = _mm512_loadu_si512(x->qs + 64 * j);
}

/* The order of Q4_K/Q5_K nibbles: the low nibbles of qs[64h..64h+63] are
 * values 128h+0..31 | 128h+64..95 (y[2h]), the high nibbles 128h+32..63 |
 * 128h+96..127 (y[2h+1]). Shuffling the activations once serves every row. */
SQ_INLINE void kz_act_nib(const blk_q8_K *x, __m512i y[4])
{
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i a = _mm512_loadu_si512(x->qs + 128 * h), b = _mm512_loadu_si512(x->qs + 128 * h + 64);
        y[2 * h] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0));
        y[2 * h + 1] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2));
    }
}

/* the 512-bit steps of the codebook and ik types, which use the tables and
 * activation orders above */
#include "simd_ikz.h"

/* Q4_K and Q5_K: sub-block scales from the nibble order, mins against the bsums. */
SQ_INLINE void kz_k4_tail(__m128i sm, const __m512i q[4], const __m512i y[4], float d,
                          float dmin, const blk_q8_K *x, __m512 *acc, __m256 *accm, const int nat)
{
    const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm));
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int g = 0; g < 4; g++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q[g], y[g]), spread_scales16(sc16, nat ? KZ_TAB(kz_pair_idx, g) : KZ_TAB(kz_nib_idx, g)));
    const __m256i mb = mins_times_bsums(x->bsums, _mm_unpackhi_epi64(sm, sm));
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(d * x->d), _mm512_cvtepi32_ps(isum), *acc);
    *accm = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * x->d), _mm256_cvtepi32_ps(mb), *accm);
}

/* Q4_K and Q5_K weights of one block as 4 groups of 64 nibbles: in nibble
 * order (nat = 0: the low, then the high nibbles of 64 bytes), or shuffled
 * to value order (nat = 1: for vec_dot, where the activations are used by
 * one row only and shuffling the weights keeps the loads fewer). */
SQ_INLINE void kz_k4_nibbles(const uint8_t *qs, __m512i q[4], const int nat)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i z = _mm512_loadu_si512(qs + 64 * h);
        const __m512i lo = _mm512_and_si512(z, m4), hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
        q[2 * h] = nat ? _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0)) : lo;
        q[2 * h + 1] = nat ? _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2)) : hi;
    }
}

SQ_INLINE void kz_q4_K(const blk_q4_K *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc, __m256 *accm,
                       const int nat)
{
    const __m128i sm = k4_scales_mins(w->scales);
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, nat);
    kz_k4_tail(sm, q, y, h2f(w->d), h2f(w->dmin), x, acc, accm, nat);
}

/* Q5_K: as Q4_K; the fifth bit of values 64p+l / 64p+32+l is bit 2p / 2p+1
 * of qh[l], tested into a byte mask and added as 16. */
SQ_INLINE void kz_q5_K(const blk_q5_K *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc, __m256 *accm,
                       const int nat)
{
    const __m512i b16 = _mm512_set1_epi8(0x10);
    const __m128i sm = k4_scales_mins(w->scales);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w->qh));
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, nat);
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __m512i bit = nat ? KZ_TAB(kz_q5_nat, g) : KZ_TAB(kz_q5_bit, g);
        q[g] = _mm512_mask_add_epi8(q[g], _mm512_test_epi8_mask(qh, bit), q[g], b16);
    }
    kz_k4_tail(sm, q, y, h2f(w->d), h2f(w->dmin), x, acc, accm, nat);
}

/* The steps by activation order: _nat with kz_act_nat, _nib with kz_act_nib. */
#define KZ_K4_STEPS(T)                                                                                      \
    SQ_INLINE void kzs_##T##_nat(const blk_##T *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc,     \
                                 __m256 *accm)                                                              \
    {                                                                                                       \
        kz_##T(w, x, y, acc, accm, 1);                                                                      \
    }                                                                                                       \
    SQ_INLINE void kzs_##T##_nib(const blk_##T *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc,     \
                                 __m256 *accm)                                                              \
    {                                                                                                       \
        kz_##T(w, x, y, acc, accm, 0);                                                                      \
    }
KZ_K4_STEPS(q4_K)
KZ_K4_STEPS(q5_K)
#undef KZ_K4_STEPS

/* Q6_K, Q3_K: signed scales per 16 in natural order; the value offset
 * (32 or 4) comes off as shift · Σ_k sc_k·bsum_k. */
SQ_INLINE void kz_s16_tail(__m128i sc8, const __m512i q[4], const __m512i y[4], float d, int shift,
                           const blk_q8_K *x, __m512 *acc)
{
    const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8));
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int g = 0; g < 4; g++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q[g], y[g]), spread_scales16(sc16, KZ_TAB(kz_s16_idx, g)));
    const __m256i corr = _mm256_slli_epi32(scales16_times_bsums(x->bsums, _mm256_cvtepi8_epi16(sc8)), shift);
    const __m512i tot = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(corr));
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(d * x->d), _mm512_cvtepi32_ps(tot), *acc);
}

/* Q6_K: the 256 values (0..63, before subtracting 32) in value order, 64 per register. */
SQ_INLINE void kz_q6_K_vals(const blk_q6_K *w, __m512i q[4])
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x30);
    /* per-256-bit-half shifts that bring the 2 high bits of each value to bits 4..5 */
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_b = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i l01 = _mm512_loadu_si512(w->ql + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qh + 32 * h)));
        q[2 * h] = _mm512_or_si512(_mm512_and_si512(l01, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl_a), m3));
        q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l01, 4), m4),
                                       _mm512_and_si512(_mm512_srlv_epi16(qh, shr_b), m3));
    }
}

SQ_INLINE void kzs_q6_K_nat(const blk_q6_K *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc,
                        __m256 *accm)
{
    (void)accm;
    __m512i q[4];
    kz_q6_K_vals(w, q);
    kz_s16_tail(_mm_loadu_si128((const __m128i *)w->scales), q, y, h2f(w->d), 5, x, acc);
}

/* The 256 3-bit values (0..7) of Q3_K's layout in value order (also IQ3_K's
 * and IQ3_KS's: hm = their qh). The 2-bit low parts of 64 values come from
 * one 32-byte qs half with per-256-bit shifts (0|2 then 4|6); the third bit
 * of values 128h+32j+l is bit 4h+j of hmask[l], tested into a byte mask (the
 * bits of a 64-value group are those of Q5_K's value order, kz_q5_nat) and
 * added as 4: two instructions where shifting, masking and merging it took six. */
SQ_INLINE void kz_q3_vals(const uint8_t *hmask, const uint8_t *qs, __m512i q[4])
{
    const __m512i m3 = _mm512_set1_epi8(3), b4 = _mm512_set1_epi8(4);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)hmask));
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * h)));
        const __m512i a = _mm512_and_si512(_mm512_srlv_epi16(raw, sh_a), m3);
        const __m512i b = _mm512_and_si512(_mm512_srlv_epi16(raw, sh_b), m3);
        q[2 * h] = _mm512_mask_add_epi8(a, _mm512_test_epi8_mask(hm, KZ_TAB(kz_q5_nat, 2 * h)), a, b4);
        q[2 * h + 1] = _mm512_mask_add_epi8(b, _mm512_test_epi8_mask(hm, KZ_TAB(kz_q5_nat, 2 * h + 1)), b, b4);
    }
}

/* Q3_K: the 256 values (0..7, before subtracting 4) in value order. */
SQ_INLINE void kz_q3_K_vals(const blk_q3_K *w, __m512i q[4]) { kz_q3_vals(w->hmask, w->qs, q); }

SQ_INLINE void kzs_q3_K_nat(const blk_q3_K *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc,
                        __m256 *accm)
{
    (void)accm;
    __m512i q[4];
    kz_q3_K_vals(w, q);
    kz_s16_tail(q3k_scales(w->scales), q, y, h2f(w->d), 2, x, acc);
}

/* Q2_K: the 256 values (0..3) in value order, 64 at a time from one 32-byte
 * qs half (shifts 0|2 and 4|6 per 256-bit half), each ORed with step·g for
 * its 64-value group g: (x & 3) | step·g in one ternary-logic instruction
 * (0xEA: A & B | C), so step 0 costs no more than a plain mask. */
SQ_INLINE void kz_q2_K_fields(const blk_q2_K *w, __m512i q[4], int step)
{
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qs + 32 * h)));
        q[2 * h] = _mm512_ternarylogic_epi32(_mm512_srlv_epi16(raw, sh_a), m3, _mm512_set1_epi8((char)(step * 2 * h)),
                                             0xEA);
        q[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srlv_epi16(raw, sh_b), m3,
                                                 _mm512_set1_epi8((char)(step * (2 * h + 1))), 0xEA);
    }
}

/* Q2_K: the 256 values (0..3) in value order (the AMX unpacking's). */
SQ_INLINE void kz_q2_K_vals(const blk_q2_K *w, __m512i q[4]) { kz_q2_K_fields(w, q, 0); }

/* Q2_K: the 256 values, each as the table index q + 4g of its 64-value
 * group g (kz_q2_table). */
SQ_INLINE void kz_q2_K_idx(const blk_q2_K *w, __m512i q[4]) { kz_q2_K_fields(w, q, 4); }

/* Q2_K products s·q (q = 0..3, s the 4-bit scale of its 16 values) by byte
 * lookup. 128-bit lane k of group g (kz_q2_K_idx) is sub-block 4g+k, so one
 * table register serves all four groups: lane k holds at bytes 4g..4g+3 the
 * products 0, s, 2s, 3s of s = s_{4g+k} (kz_q2_gather picks the scales, two
 * masked byte additions double and triple them), and group g looks up
 * q + 4g (kz_q2_K_idx ORs the 4g in with the mask of q). */
static const _Alignas(64) int8_t kz_q2_gather[64] = {
#define KZ_Q2_LANE(k) -128, k, k, k, -128, 4 + k, 4 + k, 4 + k, -128, 8 + k, 8 + k, 8 + k, -128, 12 + k, 12 + k, 12 + k
    KZ_Q2_LANE(0), KZ_Q2_LANE(1), KZ_Q2_LANE(2), KZ_Q2_LANE(3)
#undef KZ_Q2_LANE
};

/* The table of s·q (above) from the 16 packed scale bytes. */
SQ_INLINE __m512i kz_q2_table(const uint8_t *scales)
{
    const __m512i sc = _mm512_and_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)scales)),
                                        _mm512_set1_epi8(0x0F));
    const __m512i s1 = _mm512_shuffle_epi8(sc, _mm512_load_si512((const void *)kz_q2_gather)); /* 0 s s s */
    const __m512i s2 = _mm512_mask_add_epi8(s1, (__mmask64)0xCCCCCCCCCCCCCCCCull, s1, s1);      /* 0 s 2s 2s */
    return _mm512_mask_add_epi8(s2, (__mmask64)0x8888888888888888ull, s2, s1);                 /* 0 s 2s 3s */
}

/* One Q2_K block: Σ s·q·y in one vpdpbusd per 64 values (s·q ≤ 45 is the
 * unsigned operand), the mins against the bsums; d and dmin converted together. */
SQ_INLINE void kzs_q2_K_nat(const blk_q2_K *w, const blk_q8_K *x, const __m512i y[4], __m512 *acc,
                        __m256 *accm)
{
    const __m512i t = kz_q2_table(w->scales);
    __m512i q[4], isum = _mm512_setzero_si512();
    kz_q2_K_idx(w, q);
    SQ_UNROLL for (int g = 0; g < 4; g++) isum = _mm512_dpbusd_epi32(isum, _mm512_shuffle_epi8(t, q[g]), y[g]);
    const __m128i packed = _mm_loadu_si128((const __m128i *)w->scales);
    const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
    const __m256i mb = scales16_times_bsums(x->bsums, mn);
    uint32_t dd;
    memcpy(&dd, &w->d, 4);
    const __m128 ddm = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)), _mm_set1_ps(x->d)); /* d·dy, dmin·dy */
    *acc = _mm512_fmadd_ps(_mm512_broadcastss_ps(ddm), _mm512_cvtepi32_ps(isum), *acc);
    *accm = _mm256_fnmadd_ps(_mm256_permutexvar_ps(_mm256_set1_epi32(1), _mm256_castps128_ps256(ddm)),
                             _mm256_cvtepi32_ps(mb), *accm);
}

/* vec_dot: the step over the row's blocks, one reduction (accm only for the
 * types with mins). */
#define SQ_DEFINE_KZ_VDOT(T, ACT, MINS)                                                                       \
    static float vdot_##T##_zmm(int64_t n, const void *vw, const void *vx)                                  \
    {                                                                                                       \
        const blk_##T *w = vw;                                                                              \
        const blk_q8_K *x = vx;                                                                             \
        __m512 acc = _mm512_setzero_ps();                                                                   \
        __m256 accm = _mm256_setzero_ps();                                                                  \
        for (int64_t i = 0; i < n / 256; i++) {                                                             \
            __m512i y[4];                                                                                   \
            kz_act_##ACT(x + i, y);                                                                         \
            kzs_##T##_##ACT(w + i, x + i, y, &acc, &accm);                                                      \
        }                                                                                                   \
        return (MINS) ? _mm512_reduce_add_ps(acc) + hsum_ps(accm) : _mm512_reduce_add_ps(acc);             \
    }
SQ_DEFINE_KZ_VDOT(q2_K, nat, 1)
SQ_DEFINE_KZ_VDOT(q3_K, nat, 0)
SQ_DEFINE_KZ_VDOT(q4_K, nat, 1)
SQ_DEFINE_KZ_VDOT(q5_K, nat, 1)
SQ_DEFINE_KZ_VDOT(q6_K, nat, 0)
#undef SQ_DEFINE_KZ_VDOT

/* IQ4_XS: |code value| times the activations with the code's sign applied
 * (AVX-512 has no vpsignb: a masked subtraction), pairs summed to int16 and
 * scaled by the 6-bit block scales with vpdpwssd. */
SQ_INLINE void kb_iq4_xs_z(const blk_iq4_xs *w, int64_t i, const void *vx, size_t xs, __m512 *accz, const int NC)
{
    /* |code value| table; the codes of nibbles 0..7 are negative, 8..15 positive */
    const __m512i table = _mm512_broadcast_i32x4(_mm_abs_epi8(_mm_loadu_si128((const __m128i *)iq4nl_values)));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m512i ls16 = _mm512_castsi128_si512(iq4xs_scales16(w[i].scales_l, w[i].scales_h));
    __m512i isum[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
    SQ_UNROLL for (int k = 0; k < 4; k++) {
        /* sub-blocks 2k, 2k+1: 16 bytes each, low nibbles = first 16 values */
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * k));
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); /* lo0 lo1 hi0 hi1 */
        const __m512i ordered = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0)); /* lo0 hi0 lo1 hi1 */
        const __m512i aq = _mm512_shuffle_epi8(table, ordered);
        const __mmask64 neg = _mm512_cmplt_epu8_mask(ordered, _mm512_set1_epi8(8));
        /* int16 lanes 0..15 take scale 2k, lanes 16..31 scale 2k+1 (kz_pair_idx) */
        const __m512i sk = _mm512_permutexvar_epi16(KZ_TAB(kz_pair_idx, k), ls16);
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

/* ---- IQ4_XS x Q8_K for one activation column (vec_dot, run kernel) ----
 * The code values plus 128 (1..241, unsigned) go through a pshufb table and
 * straight into vpdpbusd with the signed activations: Σ(v+128)·y = Σv·y +
 * 128·Σy, so each int32 lane starts from −128·Σy of its own 8 activations
 * (kzi_act, once per block for every row). A 64-byte load of qs holds
 * sub-blocks 4h..4h+3 (16 bytes each: low nibbles = values 0..15, high =
 * 16..31), one per 128-bit lane; the activations are arranged to match
 * (y[h]: the first halves of those sub-blocks, y[2+h]: the second halves),
 * so every int32 lane of 128-bit lane j sums values of sub-block 4h+j and
 * takes its 6-bit scale with one vpmulld. The block's sum is exact in int32
 * (a lane's Σv·y is below 2^17, times its scale 2^22), as in the scalar
 * reference. */
static const _Alignas(64) int32_t kzi_sc_idx[2][16] = {
    { 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3 }, { 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7 }
};

/* The activations of one block in kzi order, and −128·Σy per int32 lane. */
SQ_INLINE void kzi_act(const blk_q8_K *x, __m512i y[4], __m512i c[2])
{
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i a = _mm512_loadu_si512(x->qs + 128 * h), b = _mm512_loadu_si512(x->qs + 128 * h + 64);
        y[h] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        y[2 + h] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, y[h]), k128, y[2 + h]);
        c[h] = _mm512_sub_epi32(_mm512_setzero_si512(), s);
    }
}

/* One IQ4_XS block of one row against activations in kzi order. */
SQ_INLINE void kzi_iq4_xs(const blk_iq4_xs *w, const blk_q8_K *x, const __m512i y[4], const __m512i c[2],
                          __m512 *acc)
{
    const __m512i table = _mm512_broadcast_i32x4(_mm_add_epi8(_mm_loadu_si128((const __m128i *)iq4nl_values),
                                                              _mm_set1_epi8((char)0x80)));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i ls32 = _mm512_castsi256_si512(_mm256_cvtepi16_epi32(iq4xs_scales16(w->scales_l, w->scales_h)));
    __m512i isum = _mm512_setzero_si512();
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        const __m512i z = _mm512_loadu_si512(w->qs + 64 * h);
        const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(z, m4));
        const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(z, 4), m4));
        const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c[h], lo, y[h]), hi, y[2 + h]);
        const __m512i sc = _mm512_permutexvar_epi32(_mm512_load_si512((const void *)kzi_sc_idx[h]), ls32);
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s, sc));
    }
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(w->d) * x->d), _mm512_cvtepi32_ps(isum), *acc);
}

/* vec_dot for IQ4_XS: the row's blocks, one reduction. */
static float vdot_iq4_xs_zmm(int64_t n, const void *vw, const void *vx)
{
    const blk_iq4_xs *w = vw;
    const blk_q8_K *x = vx;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        __m512i y[4], c[2];
        kzi_act(x + i, y, c);
        kzi_iq4_xs(w + i, x + i, y, c, &acc);
    }
    return _mm512_reduce_add_ps(acc);
}

SQ_INLINE void k_iq4_xs_zmm(int64_t n, const void *vw, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_iq4_xs *w = vw;
    __m512 accz[MAXNC];
    SQ_UNROLL for (int c = 0; c < NC; c++) accz[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) kb_iq4_xs_z(w, i, vx, xs, accz, NC);
    SQ_UNROLL for (int c = 0; c < NC; c++) out[c] = _mm512_reduce_add_ps(accz[c]);
}
/* A row's 512-bit acc folded to 256 bits, plus its accm. */
SQ_INLINE __m256 kz_fold(__m512 acc, __m256 accm)
{
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    return _mm256_add_ps(_mm256_add_ps(_mm512_castps512_ps256(acc), hi), accm);
}

/* One run of NR rows: per block, the activations once, then each row's step. */
#define KZ_RUN(T, ACT)                                                                                      \
    for (int64_t i = 0; i < nb; i++) {                                                                      \
        __m512i ya[4];                                                                                      \
        kz_act_##ACT(xr + i, ya);                                                                           \
        SQ_UNROLL for (int r = 0; r < NR; r++) {                                                            \
            if (PF) kz_prefetch(wr + (size_t)r * ws + 4 * ws + (size_t)i * sizeof(blk_##T), sizeof(blk_##T)); \
            kzs_##T##_##ACT((const blk_##T *)(wr + (size_t)r * ws) + i, xr + i, ya, &acc[r], &accm[r]);         \
        }                                                                                                   \
    }

/* Requests the n bytes at p into the cache. */
SQ_INLINE void kz_prefetch(const char *p, size_t n)
{
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
    _mm_prefetch(p + n - 1, _MM_HINT_T0);
}

/* NR rows (1 or 4) over all runs, each row reduced once at the end. The run
 * types are those of sq__runs_handles() (Q6_K is the default case); with
 * LEG, the 32-value types (KR32_CASES, simd_dot.h) go into the 256-bit accm, their
 * Q4_1/Q5_1 offset terms into the scalar sm, added after the reduction. With
 * PF, each K-quant / IQ4_XS block step also asks for the same block of the
 * next band's row (4 rows on), as the AVX2 run kernel does for long rows
 * (kernels_avx2.c: a band's rows jump back and forth by a row, which the
 * hardware prefetchers stop following). */
SQ_INLINE void kz_band(const sq__krun *run, int nrun, const char *w, size_t ws, const char *x,
                       float *y, bool accumulate, const int NR, const int LEG, const int PF)
{
    __m512 acc[4];
    __m256 accm[4];
    float sm[4] = { 0 };
    SQ_UNROLL for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps(), accm[r] = _mm256_setzero_ps();
    for (int j = 0; j < nrun; j++) {
        const int64_t nb = run[j].n / 256, nb32 = run[j].n / 32;
        const char *wr = w + run[j].w_off;
        const blk_q8_K *xr = (const blk_q8_K *)(x + run[j].x_off);
        if (LEG && kr32_type(run[j].type)) {
            switch (run[j].type) {
            KR32_CASES(accm)
            default: break;
            }
            continue;
        }
        if (kz_iqz_type(run[j].type) || kz_ikz_type(run[j].type)) { /* the 512-bit steps of simd_iqz.h, simd_ikz.h */
            switch (run[j].type) {
            KZ_IQZ_CASES(acc)
            KZ_IKZ_CASES(acc)
            default: break;
            }
            continue;
        }
        if (kb_iq_type(run[j].type)) { /* the 256-bit steps of simd_iq.h, into accm */
            switch (run[j].type) {
            KB_IQ_CASES(accm)
            default: break;
            }
            continue;
        }
        switch (run[j].type) {
        case SQ_TYPE_Q2_K: KZ_RUN(q2_K, nat) break;
        case SQ_TYPE_Q3_K: KZ_RUN(q3_K, nat) break;
        case SQ_TYPE_Q4_K: KZ_RUN(q4_K, nib) break;
        case SQ_TYPE_Q5_K: KZ_RUN(q5_K, nib) break;
        case SQ_TYPE_IQ4_XS:
            for (int64_t i = 0; i < nb; i++) {
                __m512i ya[4], ca[2];
                kzi_act(xr + i, ya, ca);
                SQ_UNROLL for (int r = 0; r < NR; r++) {
                    if (PF) kz_prefetch(wr + (size_t)r * ws + 4 * ws + (size_t)i * sizeof(blk_iq4_xs), sizeof(blk_iq4_xs));
                    kzi_iq4_xs((const blk_iq4_xs *)(wr + (size_t)r * ws) + i, xr + i, ya, ca, &acc[r]);
                }
            }
            break;
        IK_RUN_CASES(accm)
        default: KZ_RUN(q6_K, nat) break;
        }
    }
    if (NR == 4) {
        __m128 s = hsum4_ps(kz_fold(acc[0], accm[0]), kz_fold(acc[1], accm[1]), kz_fold(acc[2], accm[2]),
                            kz_fold(acc[3], accm[3]));
        if (LEG) s = _mm_add_ps(s, _mm_loadu_ps(sm));
        store4_ps(y, s, accumulate);
    } else {
        const float v = hsum_ps(kz_fold(acc[0], accm[0])) + (LEG ? sm[0] : 0.0f);
        y[0] = accumulate ? y[0] + v : v;
    }
}
#undef KZ_RUN

#include "simd_zrun.h"

/* The run kernel (gemm.h, sq__runs_fn): bands of 4 rows, then single rows.
 * Rows without 32-value runs take the band compiled without their cases
 * (LEG = 0): with them, the K-quant-only mix measured 6% slower. Every band
 * prefetches the next band's blocks (PF), on rows of any length. The AVX2
 * kernel leaves rows of up to 512 bytes to the hardware prefetchers (there
 * the extra requests measured slower); here, with the caller's span prefetch
 * instead, such rows ran at half the speed of longer ones: the 768-column
 * expert down products of a Qwen3-30B-A3B-shaped model (432-byte Q4_K rows)
 * at 9.3-10.3 GB/s against 16.9-17.4 with PF, all of that model's products
 * 16.5-17.4 against 18.9-19.9 GB/s, and the demo model (rows of 256-768
 * columns) generated 1748-1780 against 2059-2395 tokens/s (docs/engine.md,
 * session 6). Longer rows: on the 1B-shape plans, whose tied output matrix
 * is a mixed Q6_K/Q5_K tensor of 2048 columns, PF measured about 5% faster
 * by CPU time on a loaded machine. */
static void runs_zmm(const sq__krun *run, int nrun, const void *w, size_t ws, int nr, const void *x, float *y,
                     bool accumulate)
{
    const char *wc = w;
    int r = 0;
    const kz_band1_fn one = nrun == 1 ? kz_band1_for(run[0].type) : NULL;
    if (one) { /* rows of one run: the one-type band (simd_zrun.h), the remainder below */
        const blk_q8_K *xr = (const blk_q8_K *)((const char *)x + run[0].x_off);
        for (; r + 4 <= nr; r += 4) one(wc + run[0].w_off + (size_t)r * ws, ws, xr, run[0].n / 256, y + r, accumulate);
    }
    if (runs_legacy(run, nrun)) {
        for (; r + 4 <= nr; r += 4) kz_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 4, 1, 1);
        for (; r < nr; r++) kz_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 1, 1, 0);
        return;
    }
    for (; r + 4 <= nr; r += 4) kz_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 4, 0, 1);
    for (; r < nr; r++) kz_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 1, 0, 0);
}


#define k_iq4_xs_z k_iq4_xs_zmm
SQ_DEFINE_QUANT_GEMM(iq4_xs_z)

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

#define SQ_ZMM_REGISTER(table)                            \
    do {                                                  \
        table[SQ_TYPE_Q4_K].vec_dot = vdot_q4_K_zmm;      \
        table[SQ_TYPE_Q6_K].vec_dot = vdot_q6_K_zmm;      \
        table[SQ_TYPE_Q3_K].vec_dot = vdot_q3_K_zmm;      \
        table[SQ_TYPE_Q5_K].vec_dot = vdot_q5_K_zmm;      \
        table[SQ_TYPE_Q2_K].vec_dot = vdot_q2_K_zmm;      \
        table[SQ_TYPE_IQ4_XS].vec_dot = vdot_iq4_xs_zmm;  \
    } while (0)

#endif
#endif
