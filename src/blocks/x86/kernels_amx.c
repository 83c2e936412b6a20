/*
 * kernels_amx.c — the prompt's quantized matrix products on Intel AMX tiles
 * (AMX-TILE, AMX-INT8): the K-quants (Q2_K..Q6_K), IQ4_XS and ik_llama.cpp's
 * IQ3_K..IQ6_K, IQ3_KS..IQ5_KS, IQ2_KL (their unpack steps: kernels_amx_ik.h) against
 * Q8_K activations, for several activation rows at once (n > 1).
 *
 * Why it is exact: inside a 256-value super-block a K-quant weight is
 * d·(s_j·q_k) − dmin·m_j, with integer sub-block scales s_j (and mins m_j)
 * and integer values q_k. The integer part v_k = s_j·q_k is at most 13 bits,
 * so it is fed to the tile unit as two bytes, v = 2^S·hi + lo (lo in
 * 0..2^S−1 unsigned, hi signed or unsigned), and two tile products give
 * Σ hi·a and Σ lo·a exactly in int32 (a: the Q8_K activation bytes); then
 * isum = 2^S·Σhi·a + Σlo·a is the block's integer dot, the very number the
 * vpdpwssd kernels form. Per block the floats follow as in those kernels:
 * d_w·d_a·isum − dmin_w·d_a·Σ_j m_j·bsum_j (mins against the Q8_K bsums, in
 * int32 with vpdpwssd). Only the order of the float sums over the blocks
 * differs from the scalar reference (within 1e-5 of Σ|w·x|, as every SIMD
 * kernel; tests/test_matmul.c).
 *
 * Layout. A tile product C[16 rows][16 tokens] += A[16 rows][64 bytes] ·
 * B[16][64 bytes] takes the weights as A: 16 weight rows × 64 values in value
 * order, unpacked per row group and panel of AMX_PANEL super-blocks into the
 * thread's stack (hi and lo parts), reused for every token tile. The
 * activations are B, in the tile unit's interleaved order
 * ([value/4][token][value%4]): sq__amx_prepare() regroups the Q8_K rows once
 * per product (a 16 × 16 transpose of 4-byte groups per 64 values), with
 * each token's d and bsum pairs beside them, so the weights of every row
 * group meet them ready-made. Two token tiles share each weight tile load:
 * tiles 0-3 accumulate hi and lo of two token tiles, 4-5 hold the weight
 * parts, 6-7 the two token tiles' activations.
 *
 * Q8_0 (weights and activations with an fp16 scale per 32 values) takes
 * tile products of K = 32: per 32-value block one product C = A·B (A: 16
 * rows × 32 weight bytes, B: 8 × 64 activation bytes) gives the block's
 * exact integer dots, folded at once as d_w·d_a·isum, the scalar reference's
 * per-block term. Its activations are regrouped like Q8_K's (same unit size,
 * so a SmarterQuant row mixes both), with a scale per block and token.
 *
 * Each call loads its tile configuration (no state is assumed across calls
 * or threads) and releases the tiles at the end, so a context switch has
 * no tile data to save.
 */
/* the zmm value decoders; the dot kernels the header also defines stay unused here */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "simd_zmm.h"
#pragma GCC diagnostic pop

#define AMX_PANEL 8 /* super-blocks of a row group unpacked at once (2 × 16 × 2048 bytes; 4 and 16 measured slower) */

/* One token tile's super-block, as the tiles want it (sq__amx_prepare). */
typedef struct amx_act_blk {
    int8_t b[4][16][64];  /* [64-value step][value/4 in the step][token*4 + value%4] */
    float d[16];          /* the tokens' Q8_K scale (0 for padding tokens) */
    int32_t bs[8][16];    /* (bsums[2j], bsums[2j+1]) as an int16 pair, per token */
} amx_act_blk;
_Static_assert(sizeof(amx_act_blk) == 4672, "amx_act_blk layout");

/* The same for Q8_0 activations (8 blocks of 32): block 2·ks is rows 0-7 of
 * step ks, block 2·ks + 1 rows 8-15. Same size as amx_act_blk, so one
 * prepared row may hold units of both kinds. */
typedef struct amx_act_q80 {
    int8_t b[4][16][64];
    float d[8][16];       /* block j's scale per token (0 for padding tokens) */
    int32_t pad[16];
} amx_act_q80;
_Static_assert(sizeof(amx_act_q80) == sizeof(amx_act_blk), "amx_act_q80 layout");

/* One row group's weights over a panel, unpacked. */
typedef struct amx_panel {
    _Alignas(64) int8_t hi[16][AMX_PANEL * 256]; /* row r: high parts of v, value order */
    _Alignas(64) int8_t lo[16][AMX_PANEL * 256]; /* low parts */
    _Alignas(64) float d[AMX_PANEL][16];
    _Alignas(64) float dmin[AMX_PANEL][16];
    union {
        _Alignas(64) int32_t mins[AMX_PANEL][16][8]; /* per row: int16 pair against bs[j] */
        _Alignas(64) float d8[AMX_PANEL][8][16];     /* Q8_0: block j's scale per row */
    };
} amx_panel;

typedef struct amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* How a type's integer values are split (see the top). */
typedef struct amx_kind {
    int parts;     /* 1: v fits a byte as it is (hi = v); 2: hi and lo */
    int shift;     /* S */
    bool hi_signed;
    bool mins;     /* subtract dmin·Σ m·bsum */
    bool b32;      /* Q8_0: a scale per 32 values, one K = 32 product per block */
} amx_kind;

/* ---- 16 × 16 transposes of 4-byte elements ---- */

/* r[i] holds row i; afterwards r[j] holds column j. */
SQ_INLINE void tr16x16_epi32(__m512i r[16])
{
    __m512i t[16];
    SQ_UNROLL for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4a + b], 128-bit lane L: column 4L + b of rows 4a..4a+3 */
    SQ_UNROLL for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* column 4L + b = lane L of u[b], u[4+b], u[8+b], u[12+b]: a 4 × 4 transpose of lanes */
    SQ_UNROLL for (int b = 0; b < 4; b++) {
        const __m512i x0 = _mm512_shuffle_i32x4(r[b], r[4 + b], 0x44), x1 = _mm512_shuffle_i32x4(r[b], r[4 + b], 0xEE);
        const __m512i y0 = _mm512_shuffle_i32x4(r[8 + b], r[12 + b], 0x44),
                      y1 = _mm512_shuffle_i32x4(r[8 + b], r[12 + b], 0xEE);
        t[b] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        t[4 + b] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
        t[8 + b] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        t[12 + b] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
    }
    SQ_UNROLL for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* ---- activations ---- */

size_t sq__amx_act_size(int64_t n, int64_t cols)
{
    return (size_t)((n + 15) / 16) * (size_t)(cols / 256) * sizeof(amx_act_blk);
}

/* One token tile's super-block of Q8_K activations (xb[t]: token t's block,
 * NULL for padding) in the tiles' order. */
static void amx_prep_q8_K(const blk_q8_K *const xb[16], amx_act_blk *a)
{
    SQ_UNROLL for (int ks = 0; ks < 4; ks++) {
        __m512i r[16];
        SQ_UNROLL for (int t = 0; t < 16; t++)
            r[t] = xb[t] ? _mm512_loadu_si512(xb[t]->qs + 64 * ks) : _mm512_setzero_si512();
        tr16x16_epi32(r);
        SQ_UNROLL for (int q = 0; q < 16; q++) _mm512_store_si512(a->b[ks][q], r[q]);
    }
    for (int t = 0; t < 16; t++) {
        a->d[t] = xb[t] ? xb[t]->d : 0.0f;
        for (int j = 0; j < 8; j++) {
            int32_t v = 0;
            if (xb[t]) memcpy(&v, &xb[t]->bsums[2 * j], 4);
            a->bs[j][t] = v;
        }
    }
}

/* The same for 8 Q8_0 blocks (xb[t]: token t's first block, NULL for padding). */
static void amx_prep_q8_0(const blk_q8_0 *const xb[16], amx_act_q80 *a)
{
    SQ_UNROLL for (int ks = 0; ks < 4; ks++) {
        __m512i r[16];
        SQ_UNROLL for (int t = 0; t < 16; t++) {
            if (!xb[t]) {
                r[t] = _mm512_setzero_si512();
                continue;
            }
            const __m256i b0 = _mm256_loadu_si256((const __m256i *)xb[t][2 * ks].qs);
            const __m256i b1 = _mm256_loadu_si256((const __m256i *)xb[t][2 * ks + 1].qs);
            r[t] = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);
        }
        tr16x16_epi32(r);
        SQ_UNROLL for (int q = 0; q < 16; q++) _mm512_store_si512(a->b[ks][q], r[q]);
    }
    for (int j = 0; j < 8; j++)
        for (int t = 0; t < 16; t++) a->d[j][t] = xb[t] ? h2f(xb[t][j].d) : 0.0f;
    memset(a->pad, 0, sizeof a->pad);
}

void sq__amx_prepare_runs(const sq__krun *run, int nrun, const void *x, size_t x_stride, int64_t n, void *out,
                          int64_t tile0, int64_t tile1)
{
    int64_t nsb = 0;
    for (int j = 0; j < nrun; j++) nsb += run[j].n / 256;
    amx_act_blk *o = out;
    for (int64_t tt = tile0; tt < tile1; tt++) {
        const int nt = (int)(n - 16 * tt < 16 ? n - 16 * tt : 16);
        int64_t sb = 0;
        for (int j = 0; j < nrun; j++) {
            const bool q80 = sq_type_info_get(run[j].type)->vec_dot_type == SQ_TYPE_Q8_0;
            const size_t seg = q80 ? 8 * sizeof(blk_q8_0) : sizeof(blk_q8_K);
            for (int64_t s = 0; s < run[j].n / 256; s++, sb++) {
                const char *xs[16];
                for (int t = 0; t < 16; t++)
                    xs[t] = t < nt ? (const char *)x + (size_t)(16 * tt + t) * x_stride + run[j].x_off + (size_t)s * seg
                                   : NULL;
                if (q80) amx_prep_q8_0((const blk_q8_0 *const *)xs, (amx_act_q80 *)&o[tt * nsb + sb]);
                else amx_prep_q8_K((const blk_q8_K *const *)xs, &o[tt * nsb + sb]);
            }
        }
    }
}

void sq__amx_prepare(int type, const void *x, size_t x_stride, int64_t n, int64_t cols, void *out, int64_t tile0,
                     int64_t tile1)
{
    const sq__krun run = {type, cols, 0, 0};
    sq__amx_prepare_runs(&run, 1, x, x_stride, n, out, tile0, tile1);
}

/* ---- weights: one row's super-block into the panel ---- */

/* int16 lanes of values 64g..64g+31 (A) and 64g+32..64g+63 (B) take their per-16 scale */
static const _Alignas(64) int16_t amx_sc_idx[8][32] = {
#define X16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    { X16(0), X16(1) },   { X16(2), X16(3) },   { X16(4), X16(5) },   { X16(6), X16(7) },
    { X16(8), X16(9) },   { X16(10), X16(11) }, { X16(12), X16(13) }, { X16(14), X16(15) },
#undef X16
};

/* v = q·scale for the 256 values (q[g]: values 64g.., bytes, signed or not;
 * sc: the 16 per-16 scales as int16), split into the panel's hi / lo bytes. */
SQ_INLINE void amx_split(const __m512i q[4], const bool q_signed, __m256i sc, const amx_kind k, int8_t *hi,
                         int8_t *lo)
{
    const __m512i s = _mm512_castsi256_si512(sc), mask = _mm512_set1_epi16((short)((1 << k.shift) - 1));
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        SQ_UNROLL for (int h = 0; h < 2; h++) {
            const __m256i qb = h ? _mm512_extracti64x4_epi64(q[g], 1) : _mm512_castsi512_si256(q[g]);
            const __m512i q16 = q_signed ? _mm512_cvtepi8_epi16(qb) : _mm512_cvtepu8_epi16(qb);
            const __m512i v = _mm512_mullo_epi16(q16, _mm512_permutexvar_epi16(_mm512_load_si512(amx_sc_idx[2 * g + h]), s));
            if (k.parts == 1) {
                _mm256_storeu_si256((__m256i *)(hi + 64 * g + 32 * h), _mm512_cvtepi16_epi8(v));
                continue;
            }
            const __m512i vh = k.hi_signed ? _mm512_srai_epi16(v, k.shift) : _mm512_srli_epi16(v, k.shift);
            _mm256_storeu_si256((__m256i *)(hi + 64 * g + 32 * h), _mm512_cvtepi16_epi8(vh));
            _mm256_storeu_si256((__m256i *)(lo + 64 * g + 32 * h), _mm512_cvtepi16_epi8(_mm512_and_si512(v, mask)));
        }
    }
}

/* Per-32 scales s0..s7 (bytes) as 16 per-16 int16 scales s0 s0 s1 s1 ... */
SQ_INLINE __m256i amx_dup32(__m128i s8) { return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s8, s8)); }

/* The unpack step of each type: row r's super-block b into panel slot s. */
SQ_INLINE void amx_unpack_q4_K(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const blk_q4_K *w = (const blk_q4_K *)row + b;
    const __m128i sm = k4_scales_mins(w->scales);
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, 1);
    amx_split(q, false, amx_dup32(sm), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
    P->dmin[s][r] = h2f(w->dmin);
    const __m256i m = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)); /* m_j as int32 */
    _mm256_storeu_si256((__m256i *)P->mins[s][r], _mm256_or_si256(m, _mm256_slli_epi32(m, 16)));
}

SQ_INLINE void amx_unpack_q5_K(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const blk_q5_K *w = (const blk_q5_K *)row + b;
    const __m128i sm = k4_scales_mins(w->scales);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w->qh));
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, 1);
    SQ_UNROLL for (int g = 0; g < 4; g++)
        q[g] = _mm512_mask_add_epi8(q[g], _mm512_test_epi8_mask(qh, KZ_TAB(kz_q5_nat, g)), q[g], _mm512_set1_epi8(16));
    amx_split(q, false, amx_dup32(sm), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
    P->dmin[s][r] = h2f(w->dmin);
    const __m256i m = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8));
    _mm256_storeu_si256((__m256i *)P->mins[s][r], _mm256_or_si256(m, _mm256_slli_epi32(m, 16)));
}

SQ_INLINE void amx_unpack_q6_K(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const blk_q6_K *w = (const blk_q6_K *)row + b;
    __m512i q[4];
    kz_q6_K_vals(w, q);
    SQ_UNROLL for (int g = 0; g < 4; g++) q[g] = _mm512_sub_epi8(q[g], _mm512_set1_epi8(32));
    amx_split(q, true, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales)), k, P->hi[r] + 256 * s,
              P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
}

SQ_INLINE void amx_unpack_q3_K(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const blk_q3_K *w = (const blk_q3_K *)row + b;
    __m512i q[4];
    kz_q3_K_vals(w, q);
    SQ_UNROLL for (int g = 0; g < 4; g++) q[g] = _mm512_sub_epi8(q[g], _mm512_set1_epi8(4));
    amx_split(q, true, _mm256_cvtepi8_epi16(q3k_scales(w->scales)), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
}

SQ_INLINE void amx_unpack_q2_K(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const blk_q2_K *w = (const blk_q2_K *)row + b;
    const __m128i packed = _mm_loadu_si128((const __m128i *)w->scales);
    __m512i q[4];
    kz_q2_K_vals(w, q);
    amx_split(q, false, _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F))), k, P->hi[r] + 256 * s,
              NULL);
    P->d[s][r] = h2f(w->d);
    P->dmin[s][r] = h2f(w->dmin);
    /* mins per 16: (m_2j, m_2j+1) against (bsums[2j], bsums[2j+1]) */
    _mm256_storeu_si256((__m256i *)P->mins[s][r],
                        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F))));
}

SQ_INLINE void amx_unpack_iq4_xs(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const blk_iq4_xs *w = (const blk_iq4_xs *)row + b;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4nl_values));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m512i q[4];
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        /* sub-blocks 2g, 2g+1: 16 bytes each, low nibbles = their first 16 values */
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * g));
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        q[g] = _mm512_shuffle_epi8(table, _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0)));
    }
    const __m128i s8 = iq4xs_scales16(w->scales_l, w->scales_h); /* 8 int16 */
    const __m256i sc = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(s8, s8)),
                                               _mm_unpackhi_epi16(s8, s8), 1);
    amx_split(q, true, sc, k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
}

/* Q8_0: the 8 blocks' values copied as they are (one signed part), their
 * scales into d8[s][block][row]. */
SQ_INLINE void amx_unpack_q8_0(const void *row, int64_t b, amx_panel *P, int r, int s)
{
    const blk_q8_0 *w = (const blk_q8_0 *)row + 8 * b;
    SQ_UNROLL for (int j = 0; j < 8; j++) {
        _mm256_store_si256((__m256i *)(P->hi[r] + 256 * s + 32 * j), _mm256_loadu_si256((const __m256i *)w[j].qs));
        P->d8[s][j][r] = h2f(w[j].d);
    }
}

#include "kernels_amx_ik.h" /* ik_llama.cpp's types */

enum { AMX_Q2_K, AMX_Q3_K, AMX_Q4_K, AMX_Q5_K, AMX_Q6_K, AMX_IQ4_XS,
       AMX_IQ4_KS, AMX_IQ4_K, AMX_IQ5_K, AMX_IQ5_KS, AMX_IQ3_K, AMX_IQ3_KS, AMX_IQ6_K, AMX_IQ2_KL, AMX_Q8_0 };

static const amx_kind amx_kinds[] = {
    [AMX_Q2_K] = {1, 0, false, true, false},   /* v = s·q <= 45 */
    [AMX_Q3_K] = {2, 7, true, false, false},   /* v = s·(q−4) in −124..128 */
    [AMX_Q4_K] = {2, 6, false, true, false},   /* v = s·q <= 945 */
    [AMX_Q5_K] = {2, 6, false, true, false},   /* v = s·q <= 1953 */
    [AMX_Q6_K] = {2, 7, true, false, false},   /* v = s·(q−32) in −4064..4096 */
    [AMX_IQ4_XS] = {2, 7, true, false, false}, /* v = s·code in −3937..4064 */
    [AMX_IQ4_KS] = {2, 7, true, false, false}, /* v = s·L, |s|, |L| <= 127: |v| <= 16129 */
    [AMX_IQ4_K] = {2, 7, true, false, false},  /* |s| <= 32, |L| <= 127 */
    [AMX_IQ5_K] = {2, 7, true, false, false},  /* |s| <= 32, |L| <= 126 */
    [AMX_IQ5_KS] = {2, 7, true, false, false}, /* |s| <= 127, |L| <= 126 */
    [AMX_IQ3_K] = {2, 7, true, false, false},  /* |s| <= 31, |L| <= 63 */
    [AMX_IQ3_KS] = {2, 7, true, false, false}, /* |s| <= 16, |L| <= 63 */
    [AMX_IQ6_K] = {2, 8, true, false, false},  /* v = round(2·s·L), |v| <= 32258 */
    [AMX_IQ2_KL] = {2, 7, true, false, false}, /* |s| <= 32, |L| <= 63 */
    [AMX_Q8_0] = {1, 0, true, false, true},    /* v = q, per 32 values */
};

/* Row r's super-block b (of the row at `row`) into panel slot s. */
SQ_INLINE void amx_unpack(const int T, const void *row, int64_t b, amx_panel *P, int r, int s)
{
    /* each case with its own kind, a constant also when T is not */
    switch (T) {
    case AMX_Q2_K: amx_unpack_q2_K(row, b, P, r, s, amx_kinds[AMX_Q2_K]); break;
    case AMX_Q3_K: amx_unpack_q3_K(row, b, P, r, s, amx_kinds[AMX_Q3_K]); break;
    case AMX_Q4_K: amx_unpack_q4_K(row, b, P, r, s, amx_kinds[AMX_Q4_K]); break;
    case AMX_Q5_K: amx_unpack_q5_K(row, b, P, r, s, amx_kinds[AMX_Q5_K]); break;
    case AMX_Q6_K: amx_unpack_q6_K(row, b, P, r, s, amx_kinds[AMX_Q6_K]); break;
    case AMX_IQ4_KS: amx_unpack_iq4_ks(row, b, P, r, s, amx_kinds[AMX_IQ4_KS]); break;
    case AMX_IQ4_K: amx_unpack_iq4_k(row, b, P, r, s, amx_kinds[AMX_IQ4_K]); break;
    case AMX_IQ5_K: amx_unpack_iq5_k(row, b, P, r, s, amx_kinds[AMX_IQ5_K]); break;
    case AMX_IQ5_KS: amx_unpack_iq5_ks(row, b, P, r, s, amx_kinds[AMX_IQ5_KS]); break;
    case AMX_IQ3_K: amx_unpack_iq3_k(row, b, P, r, s, amx_kinds[AMX_IQ3_K]); break;
    case AMX_IQ3_KS: amx_unpack_iq3_ks(row, b, P, r, s, amx_kinds[AMX_IQ3_KS]); break;
    case AMX_IQ6_K: amx_unpack_iq6_k(row, b, P, r, s, amx_kinds[AMX_IQ6_K]); break;
    case AMX_IQ2_KL: amx_unpack_iq2_kl(row, b, P, r, s, amx_kinds[AMX_IQ2_KL]); break;
    case AMX_Q8_0: amx_unpack_q8_0(row, b, P, r, s); break;
    default: amx_unpack_iq4_xs(row, b, P, r, s, amx_kinds[AMX_IQ4_XS]); break;
    }
}

/* One token tile's super-block s, from the stored C tiles ch / cl ([row][token]
 * int32), folded into acc[row] (lanes: the 16 tokens). */
SQ_INLINE void amx_fold(const int T, const int32_t *ch, const int32_t *cl, const amx_panel *P, int s,
                        const amx_act_blk *a, int nr, __m512 *acc)
{
    const amx_kind k = amx_kinds[T];
    const __m512 da = _mm512_load_ps(a->d);
    __m512i bs[8];
    if (k.mins) SQ_UNROLL for (int j = 0; j < 8; j++) bs[j] = _mm512_load_si512(a->bs[j]);
    for (int r = 0; r < nr; r++) {
        __m512i ci = _mm512_load_si512(ch + 16 * r);
        if (k.parts == 2) ci = _mm512_add_epi32(_mm512_slli_epi32(ci, k.shift), _mm512_load_si512(cl + 16 * r));
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(ci), _mm512_set1_ps(P->d[s][r]));
        if (k.mins) {
            __m512i m = _mm512_setzero_si512();
            SQ_UNROLL for (int j = 0; j < 8; j++) m = _mm512_dpwssd_epi32(m, bs[j], _mm512_set1_epi32(P->mins[s][r][j]));
            f = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_set1_ps(P->dmin[s][r]), f);
        }
        acc[r] = _mm512_fmadd_ps(f, da, acc[r]);
    }
}

/* acc[row][token] of one token tile into y[token][row] (y_stride apart):
 * tokens < nt, rows < nr; stored or added. */
SQ_INLINE void amx_store(float acc[16][16], int nr, int nt, float *y, size_t ys, bool add)
{
    __m512i v[16];
    SQ_UNROLL for (int r = 0; r < 16; r++) v[r] = _mm512_load_si512(acc[r]);
    tr16x16_epi32(v);
    const __mmask16 m = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) {
        float *yt = y + (size_t)t * ys;
        __m512 x = _mm512_castsi512_ps(v[t]);
        if (add) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, yt));
        _mm512_mask_storeu_ps(yt, m, x);
    }
}

/* The tile products of one super-block s of a panel: C tiles 0-1 (and 2-3
 * for a second token tile) from the weight parts (4, 5) and the activation
 * tiles (6, 7). */
SQ_INLINE void amx_block(const int T, const amx_panel *P, int s, const amx_act_blk *a0, const amx_act_blk *a1,
                         const bool two)
{
    const amx_kind k = amx_kinds[T];
    const size_t ws = sizeof P->hi[0];
    _tile_zero(0);
    _tile_zero(1);
    if (two) {
        _tile_zero(2);
        _tile_zero(3);
    }
    SQ_UNROLL for (int ks = 0; ks < 4; ks++) {
        _tile_loadd(4, P->hi[0] + 256 * s + 64 * ks, ws);
        _tile_loadd(6, a0->b[ks], 64);
        if (two) _tile_loadd(7, a1->b[ks], 64);
        if (k.hi_signed) {
            _tile_dpbssd(0, 4, 6);
            if (two) _tile_dpbssd(2, 4, 7);
        } else {
            _tile_dpbusd(0, 4, 6);
            if (two) _tile_dpbusd(2, 4, 7);
        }
        if (k.parts == 2) {
            _tile_loadd(5, P->lo[0] + 256 * s + 64 * ks, ws);
            _tile_dpbusd(1, 5, 6);
            if (two) _tile_dpbusd(3, 5, 7);
        }
    }
}

/* The tile configuration for nr weight rows, loaded when it differs from the
 * current one. K-quants (b32 false): C tiles 0-3 and weight tiles 4-5 of nr
 * rows × 64 bytes, activation tiles 6-7 of 16 × 64. Q8_0 (b32): the weight
 * tiles 4-5 are nr × 32 bytes and the activation tiles 8 × 64 (K = 32). */
SQ_INLINE void amx_config(amx_cfg *cfg, int nr, bool b32)
{
    const int wcol = b32 ? 32 : 64;
    if (cfg->palette == 1 && cfg->rows[0] == nr && cfg->colsb[4] == wcol) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg->rows[i] = (uint8_t)(i < 6 ? nr : b32 ? 8 : 16);
        cfg->colsb[i] = (uint16_t)(i == 4 || i == 5 ? wcol : 64);
    }
    _tile_loadconfig(cfg);
}

/* Q8_0 fold of one block: acc[r] += C[r]·(d_w[r]·d_a) for the 16 rows (c:
 * the stored C tile, [row][token] int32; rows past the group's have zero
 * scales) and the 16 tokens. */
SQ_INLINE void amx_fold_q80(const int32_t *c, const float *dw, const float *da, __m512 acc[16])
{
    const __m512 a = _mm512_load_ps(da);
    _Pragma("GCC unroll 16") for (int r = 0; r < 16; r++) {
        const __m512 f = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r));
        acc[r] = _mm512_fmadd_ps(f, _mm512_mul_ps(a, _mm512_set1_ps(dw[r])), acc[r]);
    }
}

/* One step of the Q8_0 pipeline: blocks 2·ks and 2·ks + 1 of a slot (weights
 * at wp, activations ab) into C tiles C0 and C1. */
#define AMX_Q80_STEP(C0, C1, wp, ab, ks)             \
    do {                                             \
        _tile_zero(C0);                              \
        _tile_zero(C1);                              \
        _tile_loadd(4, (wp), sizeof P->hi[0]);       \
        _tile_loadd(5, (wp) + 32, sizeof P->hi[0]);  \
        _tile_loadd(6, (ab)->b[ks][0], 64);          \
        _tile_loadd(7, (ab)->b[ks][8], 64);          \
        _tile_dpbssd(C0, 4, 6);                      \
        _tile_dpbssd(C1, 5, 7);                      \
    } while (0)

/* C tiles c and c + 1 (c = 0 or 2) into cb[c], cb[c + 1]. */
SQ_INLINE void amx_store_pair(int c, int32_t cb[4][256])
{
    if (c == 0) {
        _tile_stored(0, cb[0], 64);
        _tile_stored(1, cb[1], 64);
    } else {
        _tile_stored(2, cb[2], 64);
        _tile_stored(3, cb[3], 64);
    }
}

/* Where a step's two blocks take their scales from. */
typedef struct amx_q80_step {
    const float *dw[2], *da[2];
} amx_q80_step;

/* The Q8_0 slots of an unpacked panel (bit s of mask) against one token
 * tile (its prepared units at a, one per slot): acc[r] for the 16 rows.
 * Steps alternate between C tiles 0-1 and 2-3, and each step's tile products
 * are issued before the previous step is stored and folded, so the tile unit
 * multiplies while the vector units fold. */
static void amx_tile_q80(const amx_panel *P, unsigned mask, int np, const amx_act_blk *a, int32_t cb[4][256],
                         __m512 acc[16])
{
    amx_q80_step prev = {{NULL, NULL}, {NULL, NULL}};
    int k = 0; /* steps issued */
    for (int s = 0; s < np; s++) {
        if (!(mask >> s & 1)) continue;
        const amx_act_q80 *as = (const amx_act_q80 *)(const void *)(a + s);
        for (int ks = 0; ks < 4; ks++, k++) {
            const int8_t *wp = P->hi[0] + 256 * s + 64 * ks;
            if (k & 1) AMX_Q80_STEP(2, 3, wp, as, ks);
            else AMX_Q80_STEP(0, 1, wp, as, ks);
            if (k > 0) { /* the previous step, in the other pair */
                const int c = k & 1 ? 0 : 2;
                amx_store_pair(c, cb);
                amx_fold_q80(cb[c], prev.dw[0], prev.da[0], acc);
                amx_fold_q80(cb[c + 1], prev.dw[1], prev.da[1], acc);
            }
            prev = (amx_q80_step){{P->d8[s][2 * ks], P->d8[s][2 * ks + 1]}, {as->d[2 * ks], as->d[2 * ks + 1]}};
        }
    }
    if (k == 0) return;
    const int c = k & 1 ? 0 : 2; /* the last step's pair */
    amx_store_pair(c, cb);
    amx_fold_q80(cb[c], prev.dw[0], prev.da[0], acc);
    amx_fold_q80(cb[c + 1], prev.dw[1], prev.da[1], acc);
}

/* Rows [0, nr) of an unpacked panel's Q8_0 slots (mask) × all n tokens, one
 * token tile at a time (activations: act + tt·act_nsb + sb, sb the panel's
 * first super-block); y stored or added to. The tile configuration is
 * Q8_0's. Scales of rows nr..15 are zeroed so that the 16-row folds add 0. */
static void amx_rows_q80(amx_panel *P, unsigned mask, int np, int nr, const amx_act_blk *act, int64_t sb,
                         int64_t act_nsb, int64_t n, float *y, size_t ys, bool add)
{
    _Alignas(64) int32_t cb[4][16 * 16];
    _Alignas(64) float out[16][16];
    memset(cb, 0, sizeof cb);
    for (int s = 0; s < np; s++)
        if (mask >> s & 1)
            for (int j = 0; j < 8; j++)
                for (int r = nr; r < 16; r++) P->d8[s][j][r] = 0.0f;
    for (int64_t tt = 0; tt < (n + 15) / 16; tt++) {
        __m512 acc[16];
        for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
        amx_tile_q80(P, mask, np, act + tt * act_nsb + sb, cb, acc);
        for (int r = 0; r < 16; r++) _mm512_store_ps(out[r], acc[r]);
        amx_store(out, nr, (int)(n - 16 * tt < 16 ? n - 16 * tt : 16), y + (size_t)(16 * tt) * ys, ys, add);
    }
}

/* Panel slot s of kind T against one or two token tiles (a0, a1): the tile
 * products, their stores and the folds into acc[0] (and acc[1]). */
SQ_INLINE void amx_slot_tiles(const int T, const amx_panel *P, int s, const amx_act_blk *a0, const amx_act_blk *a1,
                        const bool two, int nr, int32_t cb[4][256], float acc[2][16][16])
{
    __m512 *acc0 = (__m512 *)(void *)acc[0], *acc1 = (__m512 *)(void *)acc[1];
    const bool parts2 = amx_kinds[T].parts == 2;
    amx_block(T, P, s, a0, a1, two);
    _tile_stored(0, cb[0], 64);
    if (parts2) _tile_stored(1, cb[1], 64);
    amx_fold(T, cb[0], cb[1], P, s, a0, nr, acc0);
    if (two) {
        _tile_stored(2, cb[2], 64);
        if (parts2) _tile_stored(3, cb[3], 64);
        amx_fold(T, cb[2], cb[3], P, s, a1, nr, acc1);
    }
}

/* Rows [0, nr) (nr <= 16, W rows ws apart) × all n tokens over one panel:
 * W's super-blocks [p0, p0 + np) against super-blocks [sb0 + p0, ...) of the
 * prepared activations (act_nsb of them per token tile); y stored (first
 * panel, no accumulate) or added to. */
SQ_INLINE void amx_rows(const int T, int64_t p0, int np, const char *w, size_t ws, int nr, const amx_act_blk *act,
                        int64_t sb0, int64_t act_nsb, int64_t n, float *y, size_t ys, bool add, amx_panel *P)
{
    _Alignas(64) int32_t cb[4][16 * 16];
    _Alignas(64) float acc[2][16][16];
    const int64_t ntile = (n + 15) / 16;
    for (int r = 0; r < nr; r++)
        for (int s = 0; s < np; s++) amx_unpack(T, w + (size_t)r * ws, p0 + s, P, r, s);
    if (amx_kinds[T].b32) {
        amx_rows_q80(P, (1u << np) - 1, np, nr, act, sb0 + p0, act_nsb, n, y, ys, add);
        return;
    }
    for (int64_t tt = 0; tt < ntile; tt += 2) {
        const bool two = tt + 1 < ntile;
        memset(acc, 0, sizeof acc);
        for (int s = 0; s < np; s++) {
            const amx_act_blk *a0 = act + tt * act_nsb + sb0 + p0 + s, *a1 = a0 + act_nsb;
            if (two) amx_slot_tiles(T, P, s, a0, a1, true, nr, cb, acc);
            else amx_slot_tiles(T, P, s, a0, NULL, false, nr, cb, acc);
        }
        for (int i = 0; i < (two ? 2 : 1); i++) {
            const int64_t t0 = 16 * (tt + i);
            amx_store(acc[i], nr, (int)(n - t0 < 16 ? n - t0 : 16), y + (size_t)t0 * ys, ys, add);
        }
    }
}

/* The product for any nr: panel by panel (the activations of a panel, n ×
 * AMX_PANEL·256 bytes, stay in L2 while every row group of 16 meets them). */
SQ_INLINE void amx_gemm(const int T, int64_t nsb, const void *w, size_t ws, int nr, const void *act, int64_t sb0,
                        int64_t act_nsb, int64_t n, float *y, size_t ys, bool accumulate)
{
    amx_panel P;
    amx_cfg cfg = {0};
    for (int64_t p0 = 0; p0 < nsb; p0 += AMX_PANEL) {
        const int np = (int)(nsb - p0 < AMX_PANEL ? nsb - p0 : AMX_PANEL);
        for (int r0 = 0; r0 < nr; r0 += 16) {
            const int m = nr - r0 < 16 ? nr - r0 : 16;
            amx_config(&cfg, m, amx_kinds[T].b32);
            amx_rows(T, p0, np, (const char *)w + (size_t)r0 * ws, ws, m, act, sb0, act_nsb, n, y + r0, ys,
                     p0 > 0 || accumulate, &P);
        }
    }
    _tile_release();
}

/* ---- SmarterQuant rows: runs of several types in one call ----
 * A mixed row's segments are super-blocks of their runs' types; once
 * unpacked, a panel slot holds int8 hi / lo parts and per-row scales whatever
 * the type, so a panel may mix types: each slot keeps its kind, and the tile
 * products and the fold take it slot by slot. One call covers every run of
 * a row group (the y tile is stored once, not once per run, and a
 * one-segment run shares its panel with its neighbours). */

/* Where panel slot s comes from: the kind, the run's byte offset in a row and
 * the super-block within the run. */
typedef struct amx_slot {
    int T;
    size_t w_off;
    int64_t b;
} amx_slot;

static int amx_kind_of(int type)
{
    switch (type) {
    case SQ_TYPE_Q2_K: return AMX_Q2_K;
    case SQ_TYPE_Q3_K: return AMX_Q3_K;
    case SQ_TYPE_Q4_K: return AMX_Q4_K;
    case SQ_TYPE_Q5_K: return AMX_Q5_K;
    case SQ_TYPE_Q6_K: return AMX_Q6_K;
    case SQ_TYPE_IQ4_XS: return AMX_IQ4_XS;
    case SQ_TYPE_IQ4_KS: return AMX_IQ4_KS;
    case SQ_TYPE_IQ4_K: return AMX_IQ4_K;
    case SQ_TYPE_IQ5_K: return AMX_IQ5_K;
    case SQ_TYPE_IQ5_KS: return AMX_IQ5_KS;
    case SQ_TYPE_IQ3_K: return AMX_IQ3_K;
    case SQ_TYPE_IQ3_KS: return AMX_IQ3_KS;
    case SQ_TYPE_IQ6_K: return AMX_IQ6_K;
    case SQ_TYPE_IQ2_KL: return AMX_IQ2_KL;
    case SQ_TYPE_Q8_0: return AMX_Q8_0;
    default: return -1;
    }
}

/* As amx_rows over the panel's slots of one family (Q8_0 or not: b32; the
 * tile configuration is that family's), with the kind of each slot from
 * sl[]; the panel is unpacked already. */
static void amx_rows_mixed(const amx_slot *sl, int np, bool b32, int nr, const amx_act_blk *act, int64_t p0,
                           int64_t act_nsb, int64_t n, float *y, size_t ys, bool add, amx_panel *P)
{
    _Alignas(64) int32_t cb[4][16 * 16];
    _Alignas(64) float acc[2][16][16];
    const int64_t ntile = (n + 15) / 16;
    if (b32) {
        unsigned mask = 0;
        for (int s = 0; s < np; s++) mask |= amx_kinds[sl[s].T].b32 ? 1u << s : 0u;
        amx_rows_q80(P, mask, np, nr, act, p0, act_nsb, n, y, ys, add);
        return;
    }
    for (int64_t tt = 0; tt < ntile; tt += 2) {
        const bool two = tt + 1 < ntile;
        memset(acc, 0, sizeof acc);
        for (int s = 0; s < np; s++) {
            if (amx_kinds[sl[s].T].b32) continue;
            const amx_act_blk *a0 = act + tt * act_nsb + p0 + s;
            amx_slot_tiles(sl[s].T, P, s, a0, two ? a0 + act_nsb : NULL, two, nr, cb, acc);
        }
        for (int i = 0; i < (two ? 2 : 1); i++) {
            const int64_t t0 = 16 * (tt + i);
            amx_store(acc[i], nr, (int)(n - t0 < 16 ? n - t0 : 16), y + (size_t)t0 * ys, ys, add);
        }
    }
}

bool sq__amx_runs_handle(const sq__krun *run, int nrun)
{
    for (int j = 0; j < nrun; j++)
        if (amx_kind_of(run[j].type) < 0 || run[j].n % 256 != 0) return false;
    return nrun > 0;
}

/* The slots of the panel at super-block p0 (np of them): *j / *j0 walk the
 * runs (run *j starts at super-block *j0). Returns which families the panel
 * holds: bit 0 K-quant kinds, bit 1 Q8_0. */
static int amx_panel_slots(const sq__krun *run, int64_t p0, int np, int *j, int64_t *j0, amx_slot *sl)
{
    int fam = 0;
    for (int s = 0; s < np; s++) {
        while (p0 + s >= *j0 + run[*j].n / 256) *j0 += run[(*j)++].n / 256;
        sl[s] = (amx_slot){amx_kind_of(run[*j].type), run[*j].w_off, p0 + s - *j0};
        if (sq_type_info_get(run[*j].type)->row_meta > 0) { /* each segment: its row scale, one block */
            sl[s].w_off += (size_t)sl[s].b * sq_row_size(run[*j].type, 256);
            sl[s].b = 0;
        }
        fam |= amx_kinds[sl[s].T].b32 ? 2 : 1;
    }
    return fam;
}

void sq__amx_runs(const sq__krun *run, int nrun, const void *w, size_t ws, int nr, const void *act, int64_t act_nsb,
                  int64_t n, float *y, size_t ys, bool accumulate)
{
    amx_panel P;
    amx_cfg cfg = {0};
    int64_t nsb = 0;
    for (int j = 0; j < nrun; j++) nsb += run[j].n / 256;
    int j = 0;
    int64_t j0 = 0; /* first super-block of run j */
    for (int64_t p0 = 0; p0 < nsb; p0 += AMX_PANEL) {
        const int np = (int)(nsb - p0 < AMX_PANEL ? nsb - p0 : AMX_PANEL);
        amx_slot sl[AMX_PANEL];
        const int fam = amx_panel_slots(run, p0, np, &j, &j0, sl);
        for (int r0 = 0; r0 < nr; r0 += 16) {
            const int m = nr - r0 < 16 ? nr - r0 : 16;
            const char *wr = (const char *)w + (size_t)r0 * ws;
            for (int r = 0; r < m; r++)
                for (int s = 0; s < np; s++) amx_unpack(sl[s].T, wr + (size_t)r * ws + sl[s].w_off, sl[s].b, &P, r, s);
            /* each family with its tile configuration; the second adds to the first's y */
            bool add = p0 > 0 || accumulate;
            for (int f = 0; f < 2; f++) {
                if (!(fam & (1 << f))) continue;
                amx_config(&cfg, m, f == 1);
                amx_rows_mixed(sl, np, f == 1, m, act, p0, act_nsb, n, y + r0, ys, add, &P);
                add = true;
            }
        }
    }
    _tile_release();
}

#define AMX_GEMM(name, T)                                                                                       \
    static void amx_gemm_##name(int64_t nsb, const void *w, size_t ws, int nr, const void *act, int64_t sb0,    \
                                int64_t act_nsb, int64_t n, float *y, size_t ys, bool accumulate)                \
    {                                                                                                           \
        amx_gemm(T, nsb, w, ws, nr, act, sb0, act_nsb, n, y, ys, accumulate);                                  \
    }
AMX_GEMM(q2_K, AMX_Q2_K)
AMX_GEMM(q3_K, AMX_Q3_K)
AMX_GEMM(q4_K, AMX_Q4_K)
AMX_GEMM(q5_K, AMX_Q5_K)
AMX_GEMM(q6_K, AMX_Q6_K)
AMX_GEMM(iq4_xs, AMX_IQ4_XS)
AMX_GEMM(iq4_ks, AMX_IQ4_KS)
AMX_GEMM(iq4_k, AMX_IQ4_K)
AMX_GEMM(iq5_k, AMX_IQ5_K)
AMX_GEMM(iq5_ks, AMX_IQ5_KS)
AMX_GEMM(iq3_k, AMX_IQ3_K)
AMX_GEMM(iq3_ks, AMX_IQ3_KS)
AMX_GEMM(iq6_k, AMX_IQ6_K)
AMX_GEMM(iq2_kl, AMX_IQ2_KL)
AMX_GEMM(q8_0, AMX_Q8_0)
#undef AMX_GEMM

sq__amx_fn sq__amx_get(int type)
{
    switch (type) {
    case SQ_TYPE_Q2_K: return amx_gemm_q2_K;
    case SQ_TYPE_Q3_K: return amx_gemm_q3_K;
    case SQ_TYPE_Q4_K: return amx_gemm_q4_K;
    case SQ_TYPE_Q5_K: return amx_gemm_q5_K;
    case SQ_TYPE_Q6_K: return amx_gemm_q6_K;
    case SQ_TYPE_IQ4_XS: return amx_gemm_iq4_xs;
    case SQ_TYPE_IQ4_KS: return amx_gemm_iq4_ks;
    case SQ_TYPE_IQ4_K: return amx_gemm_iq4_k;
    case SQ_TYPE_IQ5_K: return amx_gemm_iq5_k;
    case SQ_TYPE_IQ5_KS: return amx_gemm_iq5_ks;
    case SQ_TYPE_IQ3_K: return amx_gemm_iq3_k;
    case SQ_TYPE_IQ3_KS: return amx_gemm_iq3_ks;
    case SQ_TYPE_IQ6_K: return amx_gemm_iq6_k;
    case SQ_TYPE_IQ2_KL: return amx_gemm_iq2_kl;
    case SQ_TYPE_Q8_0: return amx_gemm_q8_0;
    default: return NULL;
    }
}
