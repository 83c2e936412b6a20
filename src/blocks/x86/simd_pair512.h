/*
 * simd_pair512.h — AVX-512 tile kernels that run two weight rows in the two
 * 256-bit halves of each 512-bit register, for the matrix-matrix product
 * (n > 1) of Q4_K, Q5_K, Q6_K and the Q8_0-activation family (Q4_0, Q5_0, Q8_0,
 * IQ4_NL). Included by kernels_avx512.c after simd_dot.h and simd_zmm.h.
 *
 * Each half does exactly the operations of the 256-bit one-row tile kernel
 * (simd_dot.h's k_q4_K / k_q6_K, simd_zmm.h's k_q80fam) on its own row: the
 * integer dot products are the same lane by lane, the float accumulation per
 * block is the same FMA per lane, and the final horizontal sum is hsum_ps of
 * the half. So results are bit for bit those of the kernels they replace,
 * while every activation load, shuffle and VNNI instruction does two rows'
 * work. The activations (256 bits) are broadcast to both halves.
 */
#ifndef SQ_X86_SIMD_PAIR512_H
#define SQ_X86_SIMD_PAIR512_H

#include <stddef.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512DQ__)

/* Activation columns per tile (a multiple of MAXNC, the one-row kernels' limit). */
#define PAIR_NC 8

/* [a | b] */
SQ_INLINE __m512i pair_si(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }
SQ_INLINE __m512 pair_ps(float a, float b)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}
SQ_INLINE __m512i pair_load(const void *a, const void *b)
{
    return pair_si(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
}
SQ_INLINE __m512i bcast256(const void *p) { return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p)); }

/* The two halves' horizontal sums, as the 256-bit kernels take them. */
SQ_INLINE void pair_hsum(__m512 v, float *lo, float *hi)
{
    *lo = hsum_ps(_mm512_castps512_ps256(v));
    *hi = hsum_ps(_mm512_extractf32x8_ps(v, 1));
}

/* int16 lanes 0..15 = lane k of the low half, lanes 16..31 = lane k of the high half. */
SQ_INLINE __m512i lane_pick16(__m512i v, int k)
{
    const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)k),
                                         _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(16), 1));
    return _mm512_permutexvar_epi16(idx, v);
}

/* Q4_K (Q5 false) or Q5_K (Q5 true) x Q8_K, rows w and w + ws; out[c * 2 + r].
 * See k_q4_K and k_q5_K: the two layouts differ only in Q5_K's qh, so one
 * body walks both by byte offsets. */
SQ_INLINE void k2_q45_K(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NC,
                        const bool Q5)
{
    const size_t bsz = Q5 ? sizeof(blk_q5_K) : sizeof(blk_q4_K);
    const size_t qs_off = Q5 ? offsetof(blk_q5_K, qs) : offsetof(blk_q4_K, qs);
    const uint8_t *w0 = vw, *w1 = (const uint8_t *)vw + ws;
    const int64_t nb = n / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(0x10);
    __m512 acc[PAIR_NC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w0 += bsz, w1 += bsz) {
        const blk_q4_K *h0 = (const blk_q4_K *)w0, *h1 = (const blk_q4_K *)w1; /* d, dmin, scales: same places */
        uint8_t sm0[16], sm1[16];
        unpack_k4_scales(h0->scales, sm0);
        unpack_k4_scales(h1->scales, sm1);
        /* lanes 0..7 scales, 8..15 mins of row 0; 16..31 the same of row 1 */
        const __m512i sc = pair_si(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)sm0)),
                                   _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)sm1)));
        const __m128i mn0 = _mm_loadl_epi64((const __m128i *)(sm0 + 8)), mn1 = _mm_loadl_epi64((const __m128i *)(sm1 + 8));
        const __m512i m16 = pair_si(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn0, mn0)),
                                    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn1, mn1)));
        const __m512 dpair = pair_ps(h2f(h0->d), h2f(h1->d)), mpair = pair_ps(h2f(h0->dmin), h2f(h1->dmin));
        const __m512i hbits = Q5 ? pair_load(((const blk_q5_K *)w0)->qh, ((const blk_q5_K *)w1)->qh) : m4;
        __m512i isum[PAIR_NC];
        SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            const __m512i raw = pair_load(w0 + qs_off + 32 * p, w1 + qs_off + 32 * p);
            __m512i lo = _mm512_and_si512(raw, m4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            if (Q5) { /* bit 2p of qh[l] is the fifth bit of value 64p+l, bit 2p+1 of value 64p+32+l */
                lo = _mm512_or_si512(lo, _mm512_and_si512(_mm512_slli_epi16(_mm512_srli_epi16(hbits, 2 * p), 4), b16));
                hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_slli_epi16(_mm512_srli_epi16(hbits, 2 * p + 1), 4), b16));
            }
            const __m512i s_lo = lane_pick16(sc, 2 * p), s_hi = lane_pick16(sc, 2 * p + 1);
            SQ_UNROLL for (int c = 0; c < NC; c++) {
                const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
                isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(lo, bcast256(x->qs + 64 * p)), s_lo);
                isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(hi, bcast256(x->qs + 64 * p + 32)), s_hi);
            }
        }
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
            const __m512i mb = _mm512_madd_epi16(bcast256(x->bsums), m16);
            const __m512 xd = _mm512_set1_ps(x->d); /* d·dy per half: the one-row kernel's float product */
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dpair, xd), _mm512_cvtepi32_ps(isum[c]), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_mul_ps(mpair, xd), _mm512_cvtepi32_ps(mb), acc[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) pair_hsum(acc[c], &out[c * 2], &out[c * 2 + 1]);
}

SQ_INLINE void k2_q4_K(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NC)
{
    k2_q45_K(n, vw, ws, vx, xs, out, NC, false);
}

SQ_INLINE void k2_q5_K(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NC)
{
    k2_q45_K(n, vw, ws, vx, xs, out, NC, true);
}

/* Q6_K x Q8_K, rows w and w + ws; out[c * 2 + r]. See k_q6_K. */
SQ_INLINE void k2_q6_K(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NC)
{
    const blk_q6_K *w0 = vw, *w1 = (const blk_q6_K *)((const char *)vw + ws);
    const int64_t nb = n / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x30);
    /* scale_pair16's byte pattern, in all four 128-bit lanes' places */
    __m512i shuf[4];
    for (int j = 0; j < 4; j++) shuf[j] = _mm512_broadcast_i64x4(scale_pair16_pattern(j));
    __m512 acc[PAIR_NC];
    SQ_UNROLL for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i sc80 = _mm_loadu_si128((const __m128i *)w0[i].scales);
        const __m128i sc81 = _mm_loadu_si128((const __m128i *)w1[i].scales);
        const __m512i sc16 = pair_si(_mm256_cvtepi8_epi16(sc80), _mm256_cvtepi8_epi16(sc81));
        const __m512 dpair = pair_ps(h2f(w0[i].d), h2f(w1[i].d));
        __m512i isum[PAIR_NC];
        SQ_UNROLL for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m128i s0 = _mm_cvtepi8_epi16(h ? _mm_unpackhi_epi64(sc80, sc80) : sc80);
            const __m128i s1 = _mm_cvtepi8_epi16(h ? _mm_unpackhi_epi64(sc81, sc81) : sc81);
            const __m512i s8x2 = pair_si(_mm256_broadcastsi128_si256(s0), _mm256_broadcastsi128_si256(s1));
            const __m512i l0 = pair_load(w0[i].ql + 64 * h, w1[i].ql + 64 * h);
            const __m512i l1 = pair_load(w0[i].ql + 64 * h + 32, w1[i].ql + 64 * h + 32);
            const __m512i qh = pair_load(w0[i].qh + 32 * h, w1[i].qh + 32 * h);
            __m512i q[4];
            q[0] = _mm512_or_si512(_mm512_and_si512(l0, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m3));
            q[1] = _mm512_or_si512(_mm512_and_si512(l1, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), m3));
            q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4), _mm512_and_si512(qh, m3));
            q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4),
                                   _mm512_and_si512(_mm512_srli_epi16(qh, 2), m3));
            for (int j = 0; j < 4; j++) {
                const __m512i s = _mm512_shuffle_epi8(s8x2, shuf[j]);
                SQ_UNROLL for (int c = 0; c < NC; c++) {
                    const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
                    isum[c] = _mm512_dpwssd_epi32(isum[c], _mm512_maddubs_epi16(q[j], bcast256(x->qs + 128 * h + 32 * j)),
                                                  s);
                }
            }
        }
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_K *x = XCOL(blk_q8_K, vx, xs, c) + i;
            const __m512i corr = _mm512_slli_epi32(_mm512_madd_epi16(bcast256(x->bsums), sc16), 5);
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dpair, _mm512_set1_ps(x->d)),
                                     _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[c], corr)), acc[c]);
        }
    }
    SQ_UNROLL for (int c = 0; c < NC; c++) pair_hsum(acc[c], &out[c * 2], &out[c * 2 + 1]);
}

/* Q8_0-activation family, NP pairs of rows (rows w + r * ws, r < 2 * NP) × NC
 * columns; out[c * 2 * NP + r]. See k_q80fam. dxs, when not NULL, holds the
 * activation scales as floats, dxs[i * NC + c] for block i of column c (the
 * caller converts them once for all its row tiles). */
SQ_INLINE void k2_q80fam(int64_t n, const void *vw, size_t ws, const void *vx, size_t xs, float *out, const int NP,
                         const int NC, const int kind, const float *dxs)
{
    const int64_t nb = n / 32;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[2][PAIR_NC];
    SQ_UNROLL for (int p = 0; p < NP; p++) SQ_UNROLL for (int c = 0; c < NC; c++) acc[p][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m512i q[2], nqs[2];
        __m512 dw[2];
        SQ_UNROLL for (int p = 0; p < NP; p++) {
            float da, db;
            const char *ra = (const char *)vw + (size_t)(2 * p) * ws;
            const __m256i qa = q80_decode(ra, i, kind, &da), qb = q80_decode(ra + ws, i, kind, &db);
            q[p] = pair_si(qa, qb);
            dw[p] = pair_ps(da, db);
            nqs[p] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, q[p]));
        }
        SQ_UNROLL for (int c = 0; c < NC; c++) {
            const blk_q8_0 *x = XCOL(blk_q8_0, vx, xs, c) + i;
            const __m512i yu = _mm512_xor_si512(bcast256(x->qs), bias);
            const __m512 dx = _mm512_set1_ps(dxs ? dxs[i * NC + c] : h2f(x->d));
            SQ_UNROLL for (int p = 0; p < NP; p++) {
                const __m512i s = _mm512_dpbusd_epi32(nqs[p], yu, q[p]);
                acc[p][c] = _mm512_fmadd_ps(_mm512_mul_ps(dw[p], dx), _mm512_cvtepi32_ps(s), acc[p][c]);
            }
        }
    }
    SQ_UNROLL for (int p = 0; p < NP; p++)
        SQ_UNROLL for (int c = 0; c < NC; c++)
            pair_hsum(acc[p][c], &out[c * 2 * NP + 2 * p], &out[c * 2 * NP + 2 * p + 1]);
}

/* Stores a tile of NR_ rows × NC_ columns from s[cc * NR_ + rr]. */
#define PAIR_STORE(NR_, NC_)                                                                                   \
    do {                                                                                                       \
        for (int cc = 0; cc < (NC_); cc++)                                                                     \
            for (int rr = 0; rr < (NR_); rr++) {                                                               \
                float *dst = &y[(size_t)(c + cc) * ys + r + rr];                                               \
                *dst = s[cc * (NR_) + rr] + (accumulate ? *dst : 0.0f);                                        \
            }                                                                                                  \
    } while (0)

/* K-quant tiles: pairs of rows × PAIR_NC columns, the odd row through the
 * one-row kernel, MAXNC columns at a time (its results are a half's). */
#define SQ_DEFINE_PAIR_GEMM(T)                                                                                  \
    static void gemm2_##T(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, float *y, \
                          size_t ys, bool accumulate)                                                          \
    {                                                                                                          \
        float s[2 * PAIR_NC];                                                                                  \
        int c = 0;                                                                                             \
        for (; c + PAIR_NC <= nc; c += PAIR_NC) {                                                              \
            int r = 0;                                                                                         \
            for (; r + 2 <= nr; r += 2) {                                                                      \
                k2_##T(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)c * xs, xs, s, PAIR_NC); \
                PAIR_STORE(2, PAIR_NC);                                                                        \
            }                                                                                                  \
            for (; r < nr; r++) {                                                                              \
                for (int c4 = 0; c4 < PAIR_NC; c4 += MAXNC)                                                    \
                    k_##T(n, (const char *)w + (size_t)r * ws, (const char *)x + (size_t)(c + c4) * xs, xs, s + c4, \
                          MAXNC);                                                                              \
                PAIR_STORE(1, PAIR_NC);                                                                        \
            }                                                                                                  \
        }                                                                                                      \
        for (; c < nc; c++) {                                                                                  \
            int r = 0;                                                                                         \
            for (; r + 2 <= nr; r += 2) {                                                                      \
                k2_##T(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)c * xs, xs, s, 1);   \
                PAIR_STORE(2, 1);                                                                              \
            }                                                                                                  \
            for (; r < nr; r++) {                                                                              \
                k_##T(n, (const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, xs, s, 1);        \
                PAIR_STORE(1, 1);                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

SQ_DEFINE_PAIR_GEMM(q4_K)
SQ_DEFINE_PAIR_GEMM(q5_K)
SQ_DEFINE_PAIR_GEMM(q6_K)

#define Q80_PAIR_TILE(K, NP_, NC_, DXS)                                                                         \
    do {                                                                                                       \
        k2_q80fam(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)c * xs, xs, s, NP_, NC_, K, DXS); \
        PAIR_STORE(2 * (NP_), NC_);                                                                            \
    } while (0)
/* one row through k_q80fam, at most MAXNC columns per call */
#define Q80_ROW_TILE(K, NC_)                                                                                    \
    do {                                                                                                       \
        for (int c4 = 0; c4 < (NC_); c4 += MAXNC)                                                              \
            k_q80fam(n, (const char *)w + (size_t)r * ws, ws, (const char *)x + (size_t)(c + c4) * xs, xs, s + c4, 1, \
                     (NC_) - c4 < MAXNC ? (NC_) - c4 : MAXNC, K);                                              \
        PAIR_STORE(1, NC_);                                                                                    \
    } while (0)

/* Blocks per panel for which a tile's activation scales are converted once (on the stack). */
#define Q80_DX_BLOCKS 192

/* Q8_0-family tiles: 4 rows (two pairs) × PAIR_NC columns. */
#define SQ_DEFINE_Q80_PAIR_GEMM(NAME, K)                                                                        \
    static void gemm4_##NAME(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc,     \
                             float *y, size_t ys, bool accumulate)                                             \
    {                                                                                                          \
        float s[4 * PAIR_NC], dxs[Q80_DX_BLOCKS * PAIR_NC];                                                    \
        const int64_t nb = n / 32;                                                                             \
        int c = 0;                                                                                             \
        for (; c + PAIR_NC <= nc; c += PAIR_NC) {                                                              \
            const float *pre = NULL;                                                                           \
            if (nb <= Q80_DX_BLOCKS) {                                                                         \
                for (int cc = 0; cc < PAIR_NC; cc++)                                                           \
                    for (int64_t i = 0; i < nb; i++)                                                           \
                        dxs[i * PAIR_NC + cc] = h2f((XCOL(blk_q8_0, x, xs, c + cc) + i)->d);                    \
                pre = dxs;                                                                                     \
            }                                                                                                  \
            int r = 0;                                                                                         \
            for (; r + 4 <= nr; r += 4) Q80_PAIR_TILE(K, 2, PAIR_NC, pre);                                     \
            for (; r + 2 <= nr; r += 2) Q80_PAIR_TILE(K, 1, PAIR_NC, pre);                                     \
            for (; r < nr; r++) Q80_ROW_TILE(K, PAIR_NC);                                                      \
        }                                                                                                      \
        for (; c < nc; c++) {                                                                                  \
            int r = 0;                                                                                         \
            for (; r + 4 <= nr; r += 4) Q80_PAIR_TILE(K, 2, 1, NULL);                                          \
            for (; r + 2 <= nr; r += 2) Q80_PAIR_TILE(K, 1, 1, NULL);                                          \
            for (; r < nr; r++) Q80_ROW_TILE(K, 1);                                                            \
        }                                                                                                      \
    }

SQ_DEFINE_Q80_PAIR_GEMM(q4_0, Q80_Q4_0)
SQ_DEFINE_Q80_PAIR_GEMM(q5_0, Q80_Q5_0)
SQ_DEFINE_Q80_PAIR_GEMM(q8_0, Q80_Q8_0)
SQ_DEFINE_Q80_PAIR_GEMM(iq4_nl, Q80_IQ4_NL)
#undef Q80_PAIR_TILE
#undef Q80_ROW_TILE

/* Tile kernels that replace the others (returns from SQ_GEMM_FN). */
#define SQ_PAIR512_GEMM(type)                              \
    do {                                                   \
        if ((type) == SQ_TYPE_Q4_K) return gemm2_q4_K;     \
        if ((type) == SQ_TYPE_Q5_K) return gemm2_q5_K;     \
        if ((type) == SQ_TYPE_Q6_K) return gemm2_q6_K;     \
        if ((type) == SQ_TYPE_Q4_0) return gemm4_q4_0;     \
        if ((type) == SQ_TYPE_Q5_0) return gemm4_q5_0;     \
        if ((type) == SQ_TYPE_Q8_0) return gemm4_q8_0;     \
        if ((type) == SQ_TYPE_IQ4_NL) return gemm4_iq4_nl; \
    } while (0)

#endif
#endif
