/*
 * simd_zrun.h — the AVX-512 run kernel's band for rows of one run (included
 * by simd_zmm.h, before runs_zmm): a plain K-quant / IQ4_XS tensor, or a
 * SmarterQuant tensor whose segments all have one type, at n = 1 (token
 * generation). Most of a model's bytes go through here.
 *
 * kz_band takes any mix of runs: one switch over every run type, with the 4
 * rows' accumulators live across all its cases. There gcc kept them (and the
 * mins accumulators) on the stack, a store and a reload per row and block. A
 * band of one type is the same block step in a loop of its own, so the
 * accumulators stay in registers; the sums are the same operations in the
 * same order as kz_band's (bit for bit its result).
 */
#ifndef SQ_X86_SIMD_ZRUN_H
#define SQ_X86_SIMD_ZRUN_H

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)

/* The band of 4 rows (rows ws bytes apart, from w) over nb blocks of type T
 * against the Q8_K activations x, activations in order ACT; each block step
 * also asks for the same block 4 rows on (kz_band's prefetch: runs_zmm
 * prefetches on rows of any length). */
#define KZ_DEFINE_BAND1(T, ACT)                                                                              \
    static void kz_band1_##T(const char *w, size_t ws, const blk_q8_K *x, int64_t nb, float *y, bool accumulate) \
    {                                                                                                       \
        __m512 acc[4];                                                                                      \
        __m256 accm[4];                                                                                     \
        SQ_UNROLL for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps(), accm[r] = _mm256_setzero_ps(); \
        for (int64_t i = 0; i < nb; i++) {                                                                  \
            __m512i ya[4];                                                                                  \
            kz_act_##ACT(x + i, ya);                                                                        \
            SQ_UNROLL for (int r = 0; r < 4; r++) {                                                         \
                kz_prefetch(w + (size_t)(r + 4) * ws + (size_t)i * sizeof(blk_##T), sizeof(blk_##T));      \
                kzs_##T##_##ACT((const blk_##T *)(w + (size_t)r * ws) + i, x + i, ya, &acc[r], &accm[r]);     \
            }                                                                                               \
        }                                                                                                   \
        store4_ps(y, hsum4_ps(kz_fold(acc[0], accm[0]), kz_fold(acc[1], accm[1]), kz_fold(acc[2], accm[2]),  \
                              kz_fold(acc[3], accm[3])),                                                    \
                  accumulate);                                                                              \
    }

KZ_DEFINE_BAND1(q2_K, nat)
KZ_DEFINE_BAND1(q3_K, nat)
KZ_DEFINE_BAND1(q4_K, nib)
KZ_DEFINE_BAND1(q5_K, nib)
KZ_DEFINE_BAND1(q6_K, nat)
#undef KZ_DEFINE_BAND1

/* IQ4_XS's band of 4 rows, as above with its own activation order (kzi_act). */
static void kz_band1_iq4_xs(const char *w, size_t ws, const blk_q8_K *x, int64_t nb, float *y, bool accumulate)
{
    __m512 acc[4];
    SQ_UNROLL for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m512i ya[4], ca[2];
        kzi_act(x + i, ya, ca);
        SQ_UNROLL for (int r = 0; r < 4; r++) {
            kz_prefetch(w + (size_t)(r + 4) * ws + (size_t)i * sizeof(blk_iq4_xs), sizeof(blk_iq4_xs));
            kzi_iq4_xs((const blk_iq4_xs *)(w + (size_t)r * ws) + i, x + i, ya, ca, &acc[r]);
        }
    }
    const __m256 z = _mm256_setzero_ps();
    store4_ps(y, hsum4_ps(kz_fold(acc[0], z), kz_fold(acc[1], z), kz_fold(acc[2], z), kz_fold(acc[3], z)),
              accumulate);
}

typedef void (*kz_band1_fn)(const char *w, size_t ws, const blk_q8_K *x, int64_t nb, float *y, bool accumulate);

/* The one-type band of a run type (NULL: kz_band takes it). */
static kz_band1_fn kz_band1_for(int type)
{
    switch (type) {
    case SQ_TYPE_Q2_K: return kz_band1_q2_K;
    case SQ_TYPE_Q3_K: return kz_band1_q3_K;
    case SQ_TYPE_Q4_K: return kz_band1_q4_K;
    case SQ_TYPE_Q5_K: return kz_band1_q5_K;
    case SQ_TYPE_Q6_K: return kz_band1_q6_K;
    case SQ_TYPE_IQ4_XS: return kz_band1_iq4_xs;
    default: return NULL;
    }
}

#endif
#endif
