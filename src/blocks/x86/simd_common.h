/*
 * simd_common.h — block layouts and small vector helpers shared by the x86
 * kernel files. Included only from *_avx2.c / *_avx512.c, which the Makefile
 * compiles with the matching -m flags; with __AVX512VNNI__ defined the integer
 * dot helpers use vpdpbusd / vpdpwssd, otherwise the AVX2 maddubs/madd pair.
 *
 * The block structs mirror ggml's on-disk layouts (little-endian, packed by
 * construction: every field is naturally aligned in these orders).
 */
#ifndef SQ_X86_SIMD_COMMON_H
#define SQ_X86_SIMD_COMMON_H

#include <immintrin.h>
#include <string.h>

#include "../gemm.h"

#define SQ_INLINE static inline __attribute__((always_inline))
/* Fully unrolls a loop over the NC activation columns (or NR rows) of a tile, so
 * its accumulator arrays become registers. */
#define SQ_UNROLL _Pragma("GCC unroll 8")

typedef struct { uint16_t d; uint8_t qs[16]; } blk_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } blk_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } blk_q8_0;
typedef struct { uint16_t d, s; int8_t qs[32]; } blk_q8_1;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } blk_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } blk_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } blk_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } blk_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } blk_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } blk_q8_K;
typedef struct { uint16_t d; uint8_t qs[16]; } blk_iq4_nl;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } blk_iq4_xs;

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(blk_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K layout");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs layout");

/* The 16 IQ4_NL / IQ4_XS code values. */
static const int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* fp16 <-> f32 through F16C (RNE, same results as the scalar conversions for finite values). */
SQ_INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }
SQ_INLINE uint16_t f2h(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

SQ_INLINE float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The sums of 4 registers in one __m128 (register r in lane r). */
SQ_INLINE __m128 hsum4_ps(__m256 a, __m256 b, __m256 c, __m256 d)
{
    const __m128 qa = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 qb = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    const __m128 qc = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
    const __m128 qd = _mm_add_ps(_mm256_castps256_ps128(d), _mm256_extractf128_ps(d, 1));
    return _mm_hadd_ps(_mm_hadd_ps(qa, qb), _mm_hadd_ps(qc, qd));
}

/* Stores (or adds to) y[0..3] the 4 sums of hsum4_ps. */
SQ_INLINE void store4_ps(float *y, __m128 s, bool accumulate)
{
    if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(y));
    _mm_storeu_ps(y, s);
}

SQ_INLINE int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* acc + sum over groups of 4 of u8(a) * s8(b), per int32 lane. */
SQ_INLINE __m256i dp_u8s8(__m256i acc, __m256i a, __m256i b)
{
#ifdef __AVX512VNNI__
    return _mm256_dpbusd_epi32(acc, a, b);
#else
    const __m256i p = _mm256_maddubs_epi16(a, b);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}

/* acc + pairwise s16(a) * s16(b). */
SQ_INLINE __m256i dp_s16(__m256i acc, __m256i a, __m256i b)
{
#ifdef __AVX512VNNI__
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* acc + signed bytes a times signed bytes b, in groups of 4 (a != -128). */
SQ_INLINE __m256i dp_s8s8(__m256i acc, __m256i a, __m256i b)
{
    return dp_u8s8(acc, _mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

/* 16 packed nibbles -> 32 bytes: low nibbles in bytes 0..15, high in 16..31. */
SQ_INLINE __m256i nibbles32(const uint8_t *p)
{
    const __m128i raw = _mm_loadu_si128((const __m128i *)p);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, byte i = 0xFF where bit i is set. */
SQ_INLINE __m256i bits_to_bytes(uint32_t bits)
{
#ifdef __AVX512BW__
    return _mm256_movm_epi8((__mmask32)bits);
#else
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                                                  0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
#endif
}

/* The byte shuffle of scale_pair16 for chunk j (also used by 512-bit kernels,
 * which repeat it in both halves). */
SQ_INLINE __m256i scale_pair16_pattern(int j)
{
    return _mm256_setr_epi8(
        (char)(4 * j), (char)(4 * j + 1), (char)(4 * j), (char)(4 * j + 1), (char)(4 * j), (char)(4 * j + 1),
        (char)(4 * j), (char)(4 * j + 1), (char)(4 * j), (char)(4 * j + 1), (char)(4 * j), (char)(4 * j + 1),
        (char)(4 * j), (char)(4 * j + 1), (char)(4 * j), (char)(4 * j + 1), (char)(4 * j + 2), (char)(4 * j + 3),
        (char)(4 * j + 2), (char)(4 * j + 3), (char)(4 * j + 2), (char)(4 * j + 3), (char)(4 * j + 2),
        (char)(4 * j + 3), (char)(4 * j + 2), (char)(4 * j + 3), (char)(4 * j + 2), (char)(4 * j + 3),
        (char)(4 * j + 2), (char)(4 * j + 3), (char)(4 * j + 2), (char)(4 * j + 3));
}

/* Q6_K: the 6-bit values (0..63) of one 128-value half from its 64 ql and
 * 32 qh bytes, as 4 groups of 32 in value order. */
SQ_INLINE void q6k_half(const uint8_t *ql, const uint8_t *qhp, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x30);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
}

/* 8 int16 scales (in a 128-bit register) -> for 32-value chunk j of 4 (each
 * with two 16-value groups): int16 lanes 0..7 = scale 2j, lanes 8..15 = scale 2j+1. */
SQ_INLINE __m256i scale_pair16(__m256i s16x2, int j) { return _mm256_shuffle_epi8(s16x2, scale_pair16_pattern(j)); }

/* Q4_K / Q5_K: the 8 six-bit scales (out[0..7]) and mins (out[8..15]) of the 12 packed bytes. */
SQ_INLINE void unpack_k4_scales(const uint8_t *packed, uint8_t out[16])
{
    uint32_t a[3];
    memcpy(a, packed, 12);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    uint32_t r[4];
    r[0] = a[0] & lo6;                                 /* scales 0..3 */
    r[1] = (a[2] & lo4) | (((a[0] >> 6) & lo2) << 4);  /* scales 4..7 */
    r[2] = a[1] & lo6;                                 /* mins 0..3 */
    r[3] = ((a[2] >> 4) & lo4) | (((a[1] >> 6) & lo2) << 4); /* mins 4..7 */
    /* one 16-byte store: later byte and 8-byte loads forward from it */
    _mm_storeu_si128((__m128i *)out, _mm_setr_epi32((int)r[0], (int)r[1], (int)r[2], (int)r[3]));
}

/* Q3_K: the 16 six-bit scales minus 32 of the 12 packed bytes. */
SQ_INLINE void unpack_q3k_scales(const uint8_t *packed, int8_t out[16])
{
    uint32_t a[3];
    memcpy(a, packed, 12);
    const uint32_t lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    uint32_t r[4];
    r[0] = (a[0] & lo4) | (((a[2] >> 0) & lo2) << 4);
    r[1] = (a[1] & lo4) | (((a[2] >> 2) & lo2) << 4);
    r[2] = ((a[0] >> 4) & lo4) | (((a[2] >> 4) & lo2) << 4);
    r[3] = ((a[1] >> 4) & lo4) | (((a[2] >> 6) & lo2) << 4);
    const __m128i v = _mm_sub_epi8(_mm_setr_epi32((int)r[0], (int)r[1], (int)r[2], (int)r[3]), _mm_set1_epi8(32));
    _mm_storeu_si128((__m128i *)out, v);
}

/* IQ4_XS: the 8 six-bit scales minus 32 (low 4 bits from scales_l, high 2
 * from scales_h), as 8 int16. */
SQ_INLINE __m128i iq4xs_scales16(const uint8_t *scales_l, uint16_t scales_h)
{
    uint32_t sl;
    memcpy(&sl, scales_l, 4);
    const __m128i v = _mm_cvtsi32_si128((int)sl);
    const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
    const __m128i nib = _mm_cvtepu8_epi16(_mm_unpacklo_epi8(lo, hi)); /* ib 0..7 */
    const __m256i sh = _mm256_srlv_epi32(_mm256_set1_epi32(scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    const __m256i h2 = _mm256_and_si256(sh, _mm256_set1_epi32(3));
    const __m128i h16 = _mm_packus_epi32(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1));
    return _mm_sub_epi16(_mm_or_si128(nib, _mm_slli_epi16(h16, 4)), _mm_set1_epi16(32));
}

#endif
