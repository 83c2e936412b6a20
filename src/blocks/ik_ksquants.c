/*
 * ik_ksquants.c — scalar reference kernels of ik_llama.cpp's types with a
 * per-row scale: IQ2_KS, IQ3_KS, IQ2_KL (fp16 row scale) and IQ4_KS,
 * IQ4_KSS, IQ5_KS (f32 row scale); 256-value super-blocks of 8 sub-blocks of
 * 32 follow the row scale.
 *
 * A row's scale depends on every sub-block scale of the row, so these
 * quantizers make two passes: block scales first (kept in the dispatcher's
 * scratch, `work`), then the row scale, then every index. Bit-exact with
 * ik's quantizers (iqk_quantize.cpp); the dot products (with Q8_K) are this
 * project's own. Kernels never allocate.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "ik_common.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Weights of one 32-value sub-block: with an imatrix ik's block weights times
 * sqrtf(sigma2 + x^2); without, k2*sigma2 + x^2 (k2 > 0) or x^2 (k2 = 0). */
static void sub_weights(const float *qw, const float *xb, float sigma2, float k2, float *w)
{
    float buf[32];
    if (qw) {
        sq__ik_imatrix_weights(sq__ik_block_qw(qw, xb, 32, buf), xb, 32, sigma2, w);
    } else if (k2 > 0) {
        for (int j = 0; j < 32; ++j) w[j] = fmaf(xb[j], xb[j], k2 * sigma2);
    } else {
        for (int j = 0; j < 32; ++j) w[j] = xb[j] * xb[j];
    }
}

/* The row scale stored before the blocks. */
static inline float row_f32(const void *row)
{
    float d;
    memcpy(&d, row, sizeof d);
    return d;
}

static inline float row_f16(const void *row)
{
    sq_fp16 h;
    memcpy(&h, row, sizeof h);
    return sq_fp16_to_f32(h);
}

static inline void set_row_f32(void *row, float d) { memcpy(row, &d, sizeof d); }

static inline void set_row_f16(void *row, float d)
{
    const sq_fp16 h = sq_f32_to_fp16(d);
    memcpy(row, &h, sizeof h);
}

/* ------------------------------------------------------------------------
 * IQ2_KS
 * ------------------------------------------------------------------------ */

/* IQ2_KS: sub-block scales from the exhaustive 4-level search (first cut
 * below 24, last at 8 or more), all scales of the row quantized to 5 bits by
 * the weighted symmetric search (weights: sub-block weight sums), indices
 * re-picked, row scale the least-squares fit times 1.03.
 * work: 8 scales, 8 weight sums, 8 levels (as floats) per super-block. */
static void quantize_iq2_ks(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    const int64_t nblock = n / 256;
    float *all_scales = work, *all_sw = work + 8 * nblock;
    int8_t *all_Ls = (int8_t *)(work + 16 * nblock);
    sq__block_iq2_ks *y = (sq__block_iq2_ks *)((char *)vy + 2);
    set_row_f16(vy, 0.f);
    float w[32];
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        memset(&y[ibl], 0, sizeof y[ibl]);
        const float *xbl = x + 256 * ibl;
        const float sigma2 = 1.5f * sq__ik_sumx2(xbl) / 256;
        uint16_t extra = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const float *xb = xbl + 32 * ib;
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, 0.25f, w);
            float *sw = &all_sw[8 * ibl + ib];
            *sw = 0;
            for (int j = 0; j < 32; ++j) *sw += w[j];
            bool shifted;
            all_scales[8 * ibl + ib] = sq__ik_iq2_search(xb, w, 32, 24, 8, &shifted);
            if (shifted) extra |= (uint16_t)(1 << ib);
        }
        y[ibl].extra = extra;
    }
    const float d = sq__ik_make_qx((int)(8 * nblock), 16, all_scales, all_Ls, all_sw, 0x1p-149f);
    if (!d) return;
    float sumqx = 0, sumq2 = 0;
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = 1.5f * sq__ik_sumx2(xbl) / 256;
        for (int ib = 0; ib < 8; ++ib) {
            int ls = all_Ls[8 * ibl + ib];
            y[ibl].scales[ib / 2] |= (uint8_t)((ls & 0xF) << 4 * (ib % 2));
            y[ibl].extra |= (uint16_t)((ls >> 4) << (8 + ib));
            ls -= 16;
            const float dl = d * ls;
            if (!dl) continue;
            const int8_t *bv = sq__iq2nl_values + (y[ibl].extra >> ib & 1) * 4;
            const float *xb = xbl + 32 * ib;
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, 0.25f, w);
            const float idl = 1 / dl;
            uint8_t *qs = y[ibl].qs + 32 * (ib / 4);
            for (int j = 0; j < 32; ++j) {
                const int l = sq__ik_nearest4(bv, idl * xb[j]);
                qs[j] |= (uint8_t)(l << 2 * (ib % 4));
                const float q = bv[l] * ls;
                sumqx = fmaf(w[j] * q, xb[j], sumqx);
                sumq2 = fmaf(w[j] * q, q, sumq2);
            }
        }
    }
    set_row_f16(vy, 1.030f * (sumq2 > 0 ? sumqx / sumq2 : d));
}

/* Signed 5-bit scale (-16..15) of 32-value sub-block ib of an IQ2_KS block. */
static inline int iq2_ks_scale(const sq__block_iq2_ks *b, int ib)
{
    return ((b->scales[ib / 2] >> 4 * (ib % 2) & 0xF) | ((b->extra >> (8 + ib) & 1) << 4)) - 16;
}

static void dequantize_iq2_ks(const void *vx, float *y, int64_t n)
{
    const float d = row_f16(vx);
    const sq__block_iq2_ks *x = (const sq__block_iq2_ks *)((const char *)vx + 2);
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const float dl = d * iq2_ks_scale(&x[i], ib);
            const int8_t *v = sq__iq2nl_values + (x[i].extra >> ib & 1) * 4;
            const uint8_t *qs = x[i].qs + 32 * (ib / 4);
            for (int j = 0; j < 32; ++j) y[j] = dl * v[(qs[j] >> 2 * (ib % 4)) & 3];
        }
}

static float vec_dot_iq2_ks(int64_t n, const void *vw, const void *vx)
{
    const float d = row_f16(vw);
    const sq__block_iq2_ks *w = (const sq__block_iq2_ks *)((const char *)vw + 2);
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int sum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int8_t *v = sq__iq2nl_values + (w[i].extra >> ib & 1) * 4, *q8 = a[i].qs + 32 * ib;
            const uint8_t *qs = w[i].qs + 32 * (ib / 4);
            int s = 0;
            for (int j = 0; j < 32; ++j) s += q8[j] * v[(qs[j] >> 2 * (ib % 4)) & 3];
            sum += iq2_ks_scale(&w[i], ib) * s;
        }
        sumf += a[i].d * sum;
    }
    return d * sumf;
}

/* ------------------------------------------------------------------------
 * IQ3_KS, IQ4_KS, IQ5_KS: the shared block search, one row scale
 * ------------------------------------------------------------------------ */

static const sq__ik_search iq3ks_search = {sq__iq3nl_values, 8, 5, 1, 1e-9f, true};
static const sq__ik_search iq4ks_search = {sq__iq4k_values, 16, 7, 1, 0x1p-149f, false};
static const sq__ik_search iq5ks_search = {sq__iq5nl_values, 32, 5, 1, 1e-15f, false};

/* First pass of a KS type: per 32-value sub-block the shared search; the
 * scale goes to scales[], the shifted flag to shifted_bits (bit ib of byte
 * ibl*8+ib's word: one bit per sub-block, packed by the caller's rule).
 * Returns the signed scale of largest magnitude (the first on ties) in
 * *max_scale and its magnitude. */
static float ks_scales(const sq__ik_search *s, const float *x, int64_t nblock, const float *imatrix, float *scales,
                       uint8_t *shifted, float *max_scale)
{
    float w[32], amax_scale = 0;
    *max_scale = 0;
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            const float *xb = xbl + 32 * ib;
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, 0, w);
            bool sh, skipped;
            const float d = sq__ik_block_search(s, xb, w, 32, &sh, &skipped);
            shifted[8 * ibl + ib] = sh && !skipped;
            scales[8 * ibl + ib] = d;
            if (skipped) continue;
            if (fabsf(d) > amax_scale) {
                amax_scale = fabsf(d);
                *max_scale = d;
            }
        }
    }
    return amax_scale;
}

/* IQ4_KS / IQ5_KS: the 7-bit odd scale code of a block scale s against the
 * row scale d (1/d = id): l in 0..127, stored as 2l (the level is 2l - 127). */
static inline int ks_scale_code(float id, float s)
{
    return imax(0, imin(127, sq__ik_round_prod(0.5f, fmaf(id, s, 127.f)))) << 1;
}

/* IQ3_KS: 5-bit signed scales against d = max_scale/-16 (fp16 row scale),
 * 3-bit indices, the row scale refit by least squares.
 * work: 8 scales and 8 shifted flags per super-block. */
static void quantize_iq3_ks(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    const int64_t nblock = n / 256;
    float *scales = work;
    uint8_t *shifted = (uint8_t *)(work + 8 * nblock);
    sq__block_iq3_ks *y = (sq__block_iq3_ks *)((char *)vy + 2);
    memset(y, 0, (size_t)nblock * sizeof *y);
    float max_scale;
    ks_scales(&iq3ks_search, x, nblock, imatrix, scales, shifted, &max_scale);
    for (int64_t k = 0; k < 8 * nblock; ++k)
        if (shifted[k]) y[k / 8].extra |= (uint16_t)(1 << (8 + k % 8));
    const float d = -max_scale / 16;
    set_row_f16(vy, d);
    if (!d) return;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0, w[32];
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            const int8_t *bv = sq__iq3nl_values + (y[ibl].extra >> (8 + ib) & 1) * 8;
            const int l = imax(-16, imin(15, sq__ik_round_prod(id, scales[8 * ibl + ib])));
            const int ul = l + 16;
            y[ibl].scales[ib % 4] |= (uint8_t)((ul & 0xF) << 4 * (ib / 4));
            y[ibl].extra |= (uint16_t)((ul >> 4) << ib);
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            const float *xb = xbl + 32 * ib;
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, 0, w);
            uint8_t *qs = y[ibl].qs + 32 * (ib / 4), *qh = y[ibl].qh;
            for (int j = 0; j < 32; ++j) {
                const int i = sq__ik_nearest(bv, 8, idl * xb[j]);
                qs[j] |= (uint8_t)((i & 3) << 2 * (ib % 4));
                qh[j] |= (uint8_t)((i >> 2) << ib);
                const float q = bv[i] * l;
                sumqx = fmaf(w[j] * q, xb[j], sumqx);
                sumq2 = fmaf(w[j] * q, q, sumq2);
            }
        }
    }
    if (sumq2 > 0) set_row_f16(vy, sumqx / sumq2);
}

/* Signed scale (-16..15) of 32-value sub-block ib of an IQ3_KS block. */
static inline int iq3_ks_scale(const sq__block_iq3_ks *b, int ib)
{
    return ((b->scales[ib % 4] >> 4 * (ib / 4) & 0xF) | ((b->extra >> ib & 1) << 4)) - 16;
}

/* Index (0..7) of value j of 32-value sub-block ib of an IQ3_KS block. */
static inline int iq3_ks_index(const sq__block_iq3_ks *b, int ib, int j)
{
    return ((b->qs[32 * (ib / 4) + j] >> 2 * (ib % 4)) & 3) | ((b->qh[j] >> ib & 1) << 2);
}

static void dequantize_iq3_ks(const void *vx, float *y, int64_t n)
{
    const float d = row_f16(vx);
    const sq__block_iq3_ks *x = (const sq__block_iq3_ks *)((const char *)vx + 2);
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const float dl = d * iq3_ks_scale(&x[i], ib);
            const int8_t *v = sq__iq3nl_values + (x[i].extra >> (8 + ib) & 1) * 8;
            for (int j = 0; j < 32; ++j) y[j] = dl * v[iq3_ks_index(&x[i], ib, j)];
        }
}

static float vec_dot_iq3_ks(int64_t n, const void *vw, const void *vx)
{
    const float d = row_f16(vw);
    const sq__block_iq3_ks *w = (const sq__block_iq3_ks *)((const char *)vw + 2);
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int sum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int8_t *v = sq__iq3nl_values + (w[i].extra >> (8 + ib) & 1) * 8, *q8 = a[i].qs + 32 * ib;
            int s = 0;
            for (int j = 0; j < 32; ++j) s += q8[j] * v[iq3_ks_index(&w[i], ib, j)];
            sum += iq3_ks_scale(&w[i], ib) * s;
        }
        sumf += a[i].d * sum;
    }
    return d * sumf;
}

/* IQ4_KS: odd 7-bit scales against d = max|scale|/127 (f32 row scale) with
 * the shifted-table flag in bit 0 of the scale byte; 4-bit indices; the row
 * scale refit by least squares. work: 8 scales and 8 flags per super-block. */
static void quantize_iq4_ks(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    const int64_t nblock = n / 256;
    float *scales = work;
    uint8_t *shifted = (uint8_t *)(work + 8 * nblock);
    sq__block_iq4_ks *y = (sq__block_iq4_ks *)((char *)vy + 4);
    memset(y, 0, (size_t)nblock * sizeof *y);
    float max_scale;
    const float d = ks_scales(&iq4ks_search, x, nblock, imatrix, scales, shifted, &max_scale) / 127;
    set_row_f32(vy, d);
    if (!d) return;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0, w[32];
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            const int k = (int)(8 * ibl + ib);
            const int8_t *bv = sq__iq4k_values + shifted[k] * 16;
            int l = ks_scale_code(id, scales[k]);
            y[ibl].scales[ib] = (uint8_t)(l | shifted[k]);
            l -= 127;
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            const float *xb = xbl + 32 * ib;
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, 0, w);
            uint8_t *qs = y[ibl].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                const int i1 = sq__ik_nearest(bv, 16, idl * xb[j]), i2 = sq__ik_nearest(bv, 16, idl * xb[j + 16]);
                qs[j] = (uint8_t)(i1 | (i2 << 4));
                const float q1 = bv[i1] * l, q2 = bv[i2] * l;
                sumqx += fmaf(w[j] * q1, xb[j], w[j + 16] * q2 * xb[j + 16]);
                sumq2 += fmaf(w[j] * q1, q1, w[j + 16] * q2 * q2);
            }
        }
    }
    if (sumq2 > 0) set_row_f32(vy, sumqx / sumq2);
}

static void dequantize_iq4_ks(const void *vx, float *y, int64_t n)
{
    const float d = row_f32(vx);
    const sq__block_iq4_ks *x = (const sq__block_iq4_ks *)((const char *)vx + 4);
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const float dl = d * ((int)(x[i].scales[ib] & 254) - 127);
            const int8_t *v = sq__iq4k_values + (x[i].scales[ib] & 1) * 16;
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * v[qs[j] & 0xF];
                y[j + 16] = dl * v[qs[j] >> 4];
            }
        }
}

static float vec_dot_iq4_ks(int64_t n, const void *vw, const void *vx)
{
    const float d = row_f32(vw);
    const sq__block_iq4_ks *w = (const sq__block_iq4_ks *)((const char *)vw + 4);
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int sum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int8_t *v = sq__iq4k_values + (w[i].scales[ib] & 1) * 16, *q8 = a[i].qs + 32 * ib;
            const uint8_t *qs = w[i].qs + 16 * ib;
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q8[j] * v[qs[j] & 0xF] + q8[j + 16] * v[qs[j] >> 4];
            sum += ((int)(w[i].scales[ib] & 254) - 127) * s;
        }
        sumf += a[i].d * sum;
    }
    return d * sumf;
}

/* IQ5_KS: IQ4_KS's scheme with 5-bit indices (4 bits in qs, 1 in qh). */
static void quantize_iq5_ks(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    const int64_t nblock = n / 256;
    float *scales = work;
    uint8_t *shifted = (uint8_t *)(work + 8 * nblock);
    sq__block_iq5_ks *y = (sq__block_iq5_ks *)((char *)vy + 4);
    set_row_f32(vy, 0.f);
    memset(y, 0, (size_t)nblock * sizeof *y);
    float max_scale;
    const float d = ks_scales(&iq5ks_search, x, nblock, imatrix, scales, shifted, &max_scale) / 127;
    set_row_f32(vy, d);
    if (!d) return;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0, w[32];
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            const int k = (int)(8 * ibl + ib);
            const int8_t *bv = sq__iq5nl_values + shifted[k] * 32;
            int l = ks_scale_code(id, scales[k]);
            y[ibl].scales[ib] = (uint8_t)(l | shifted[k]);
            l -= 127;
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            const float *xb = xbl + 32 * ib;
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, 0, w);
            for (int j = 0; j < 32; ++j) {
                const int idx = sq__ik_nearest(bv, 32, idl * xb[j]);
                y[ibl].qs[32 * (ib / 2) + j] |= (uint8_t)((idx & 0xF) << 4 * (ib % 2));
                y[ibl].qh[j] |= (uint8_t)((idx >> 4) << ib);
                const float q = bv[idx] * l;
                sumqx = fmaf(w[j] * q, xb[j], sumqx);
                sumq2 = fmaf(w[j] * q, q, sumq2);
            }
        }
    }
    if (sumq2 > 0) set_row_f32(vy, sumqx / sumq2);
}

/* Index (0..31) of value j of 32-value sub-block ib of an IQ5_KS block. */
static inline int iq5_ks_index(const sq__block_iq5_ks *b, int ib, int j)
{
    return ((b->qs[32 * (ib / 2) + j] >> 4 * (ib % 2)) & 0xF) | ((b->qh[j] >> ib & 1) << 4);
}

static void dequantize_iq5_ks(const void *vx, float *y, int64_t n)
{
    const float d = row_f32(vx);
    const sq__block_iq5_ks *x = (const sq__block_iq5_ks *)((const char *)vx + 4);
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const float dl = d * ((int)(x[i].scales[ib] & 254) - 127);
            const int8_t *v = sq__iq5nl_values + (x[i].scales[ib] & 1) * 32;
            for (int j = 0; j < 32; ++j) y[j] = dl * v[iq5_ks_index(&x[i], ib, j)];
        }
}

static float vec_dot_iq5_ks(int64_t n, const void *vw, const void *vx)
{
    const float d = row_f32(vw);
    const sq__block_iq5_ks *w = (const sq__block_iq5_ks *)((const char *)vw + 4);
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int sum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int8_t *v = sq__iq5nl_values + (w[i].scales[ib] & 1) * 32, *q8 = a[i].qs + 32 * ib;
            int s = 0;
            for (int j = 0; j < 32; ++j) s += q8[j] * v[iq5_ks_index(&w[i], ib, j)];
            sum += ((int)(w[i].scales[ib] & 254) - 127) * s;
        }
        sumf += a[i].d * sum;
    }
    return d * sumf;
}

/* ------------------------------------------------------------------------
 * IQ4_KSS
 * ------------------------------------------------------------------------ */

/* A 16-bit group of four 4-bit indices is stored in 15 bits: with an even
 * number of set bits, v is recovered from its prefix-XOR code c as
 * c ^ (c << 1). This returns c (ik builds the same map as a table). */
static inline uint16_t kss_encode(uint16_t v)
{
    unsigned c = 0, acc = 0;
    for (int b = 0; b < 16; ++b) {
        acc ^= (v >> b) & 1u;
        c |= acc << b;
    }
    return (uint16_t)c;
}

static inline int popcount16(unsigned v) { return __builtin_popcount(v & 0xFFFF); }

/* ik's prune_iq4ks: a group with an odd number of set bits has one index
 * moved by 1 or 2 levels to a neighbour whose parity differs, the move
 * costing the least weighted squared error (the baseline error of each value
 * is measured on the unshifted table, as ik does). */
static uint16_t kss_prune(uint16_t v, const int8_t *values, const float *x, const float *w, float dl)
{
    if (popcount16(v) % 2 == 0) return v;
    float best_score = FLT_MAX;
    uint8_t q4[4];
    int jbest = 0;
    uint8_t bestq = 0;
    for (int j = 0; j < 4; ++j) {
        const uint8_t q = (uint8_t)((v >> 4 * j) & 0xF);
        q4[j] = q;
        const int pc = popcount16(q);
        const float diff0 = fmaf(dl, sq__iq4k_values[q], -x[j]);
        for (int qq = imax(q - 2, 0); qq <= imin(q + 2, 15); ++qq) {
            if (qq == q || abs(popcount16((unsigned)qq) - pc) % 2 == 0) continue;
            const float diff1 = fmaf(dl, values[qq], -x[j]);
            const float score = w[j] * fmaf(diff1, diff1, -(diff0 * diff0));
            if (score < best_score) {
                best_score = score;
                jbest = j;
                bestq = (uint8_t)qq;
            }
        }
    }
    q4[jbest] = bestq;
    return (uint16_t)(q4[0] | (q4[1] << 4) | (q4[2] << 8) | (q4[3] << 12));
}

/* The 4-value group k of a 32-value block: values 2k, 2k+16, 2k+1, 2k+17. */
static inline void kss_group(const float *xb, const float *w, int k, float *xv, float *wv)
{
    xv[0] = xb[2 * k], xv[1] = xb[2 * k + 16], xv[2] = xb[2 * k + 1], xv[3] = xb[2 * k + 17];
    wv[0] = w[2 * k], wv[1] = w[2 * k + 16], wv[2] = w[2 * k + 1], wv[3] = w[2 * k + 17];
}

/* One trial of the IQ4_KSS block search on table v at inverse scale id: the
 * pruned groups of the block and its mirror; takes the better fits. */
static void kss_try(const int8_t *v, const float *xb, const float *w, float id, float *d, float *best)
{
    const float this_d = 1 / id;
    float sqx_p = 0, sq2_p = 0, sqx_m = 0, sq2_m = 0, xv[4], wv[4];
    for (int k = 0; k < 8; ++k) {
        kss_group(xb, w, k, xv, wv);
        unsigned vp = 0, vm = 0;
        for (int j = 0; j < 4; ++j) {
            const float al = id * xv[j];
            vp |= (unsigned)sq__ik_nearest(v, 16, al) << 4 * j;
            vm |= (unsigned)sq__ik_nearest(v, 16, -al) << 4 * j;
        }
        vp = kss_prune((uint16_t)vp, v, xv, wv, this_d);
        vm = kss_prune((uint16_t)vm, v, xv, wv, this_d);
        for (int j = 0; j < 4; ++j) {
            float q = v[(vp >> 4 * j) & 0xF];
            sqx_p = fmaf(wv[j] * q, xv[j], sqx_p);
            sq2_p = fmaf(wv[j] * q, q, sq2_p);
            q = v[(vm >> 4 * j) & 0xF];
            sqx_m = fmaf(wv[j] * q, xv[j], sqx_m);
            sq2_m = fmaf(wv[j] * q, q, sq2_m);
        }
    }
    if (sq2_p > 0 && sqx_p * sqx_p > *best * sq2_p) {
        *d = sqx_p / sq2_p;
        *best = *d * sqx_p;
    }
    if (sq2_m > 0 && sqx_m * sqx_m > *best * sq2_m) {
        *d = sqx_m / sq2_m;
        *best = *d * sqx_m;
    }
}

/* First pass of IQ4_KSS: per block 7 trials either side on both tables. */
static float kss_block_scale(const float *xb, const float *w)
{
    float amax;
    const float max = sq__signed_absmax(xb, 32, &amax);
    if (!amax) return 0;
    float best = 0, d = -max / sq__iq4k_values[0];
    for (int t = -7; t <= 7; ++t) {
        kss_try(sq__iq4k_values, xb, w, (float)(t + sq__iq4k_values[0]) / max, &d, &best);
        kss_try(sq__iq4k_values + 16, xb, w, (float)(t + sq__iq4k_values[16]) / max, &d, &best);
    }
    return d;
}

/* Second pass of IQ4_KSS for one block with odd scale level l: the pruned
 * groups on both tables, the one with the smaller weighted error kept;
 * writes the 8 words and adds to the fit sums. */
static void kss_block_indices(const float *xb, const float *w, float d, int l, uint16_t *q16, float *sumqx,
                              float *sumq2)
{
    const int8_t *values = sq__iq4k_values, *shv = sq__iq4k_values + 16;
    const float dl = d * l, idl = 1 / dl;
    float mse_p = 0, mse_m = 0, xv[4], wv[4];
    uint16_t vps[8], vms[8];
    for (int k = 0; k < 8; ++k) {
        kss_group(xb, w, k, xv, wv);
        unsigned vp = 0, vm = 0;
        for (int j = 0; j < 4; ++j) {
            const float al = idl * xv[j];
            vp |= (unsigned)sq__ik_nearest(values, 16, al) << 4 * j;
            vm |= (unsigned)sq__ik_nearest(shv, 16, al) << 4 * j;
        }
        vps[k] = kss_prune((uint16_t)vp, values, xv, wv, dl);
        vms[k] = kss_prune((uint16_t)vm, shv, xv, wv, dl);
        for (int j = 0; j < 4; ++j) {
            float q = values[(vps[k] >> 4 * j) & 0xF];
            float e = fmaf(-dl, q, xv[j]);
            mse_p = fmaf(wv[j] * e, e, mse_p);
            q = shv[(vms[k] >> 4 * j) & 0xF];
            e = fmaf(-dl, q, xv[j]);
            mse_m = fmaf(wv[j] * e, e, mse_m);
        }
    }
    const bool use_m = mse_m < mse_p;
    const uint16_t *v = use_m ? vms : vps;
    const int8_t *bv = use_m ? shv : values;
    for (int k = 0; k < 8; ++k) {
        kss_group(xb, w, k, xv, wv);
        for (int j = 0; j < 4; ++j) {
            const float q = bv[(v[k] >> 4 * j) & 0xF] * l;
            *sumqx = fmaf(wv[j] * q, xv[j], *sumqx);
            *sumq2 = fmaf(wv[j] * q, q, *sumq2);
        }
    }
    const int code = (l + 127) | use_m;
    for (int k = 0; k < 8; ++k) q16[k] = (uint16_t)((kss_encode(v[k]) << 1) | ((code >> k) & 1));
}

/* IQ4_KSS: IQ4_KS's scales and tables, indices constrained to even-parity
 * groups (see kss_prune) so that 4 values and a scale bit fit 16 bits; the
 * row scale is the least-squares fit times 1.01. work: 8 scales per
 * super-block. */
static void quantize_iq4_kss(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    const int64_t nblock = n / 256;
    float *scales = work, w[32], amax_scale = 0;
    sq__block_iq4_kss *y = (sq__block_iq4_kss *)((char *)vy + 4);
    set_row_f32(vy, 0.f);
    memset(y, 0, (size_t)nblock * sizeof *y);
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xbl + 32 * ib, sigma2, 0, w);
            scales[8 * ibl + ib] = kss_block_scale(xbl + 32 * ib, w);
            const float a = fabsf(scales[8 * ibl + ib]);
            amax_scale = amax_scale < a ? a : amax_scale;
        }
    }
    const float d = amax_scale / 127;
    set_row_f32(vy, d);
    if (!d) return;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.f / 256);
        uint16_t *q16 = (uint16_t *)y[ibl].qs;
        for (int ib = 0; ib < 8; ++ib) {
            sub_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xbl + 32 * ib, sigma2, 0, w);
            const int l = ks_scale_code(id, scales[8 * ibl + ib]) - 127;
            kss_block_indices(xbl + 32 * ib, w, d, l, q16 + 8 * ib, &sumqx, &sumq2);
        }
    }
    if (sumq2 > 0) set_row_f32(vy, sumqx / sumq2 * 1.01f);
}

/* The 16 index bytes and the scale byte of 32-value block ib of an IQ4_KSS
 * super-block. */
static inline int iq4_kss_unpack(const sq__block_iq4_kss *b, int ib, uint8_t *idx)
{
    const uint8_t *p = (const uint8_t *)b->qs + 16 * ib;
    int ls = 0;
    for (int k = 0; k < 8; ++k) {
        uint16_t q = (uint16_t)(p[2 * k] | (p[2 * k + 1] << 8));
        ls |= (q & 1) << k;
        q &= 0xFFFE;
        q ^= (uint16_t)(q >> 1);
        idx[2 * k] = (uint8_t)q, idx[2 * k + 1] = (uint8_t)(q >> 8);
    }
    return ls;
}

static void dequantize_iq4_kss(const void *vx, float *y, int64_t n)
{
    const float d = row_f32(vx);
    const sq__block_iq4_kss *x = (const sq__block_iq4_kss *)((const char *)vx + 4);
    uint8_t idx[16];
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const int ls = iq4_kss_unpack(&x[i], ib, idx);
            const int8_t *v = sq__iq4k_values + (ls & 1) * 16;
            const float dl = d * ((ls & 254) - 127);
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * v[idx[j] & 0xF];
                y[j + 16] = dl * v[idx[j] >> 4];
            }
        }
}

static float vec_dot_iq4_kss(int64_t n, const void *vw, const void *vx)
{
    const float d = row_f32(vw);
    const sq__block_iq4_kss *w = (const sq__block_iq4_kss *)((const char *)vw + 4);
    const sq__block_q8_K *a = vx;
    uint8_t idx[16];
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int sum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = iq4_kss_unpack(&w[i], ib, idx);
            const int8_t *v = sq__iq4k_values + (ls & 1) * 16, *q8 = a[i].qs + 32 * ib;
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q8[j] * v[idx[j] & 0xF] + q8[j + 16] * v[idx[j] >> 4];
            sum += ((ls & 254) - 127) * s;
        }
        sumf += a[i].d * sum;
    }
    return d * sumf;
}

/* ------------------------------------------------------------------------
 * IQ2_KL
 * ------------------------------------------------------------------------ */

/* The IQ2_KL search tables, derived once from the grid: for each pair
 * (l1, l2) of iq3nl levels its grid index, or -(k+1) when it is not on the
 * grid (k counting such pairs in order); for those, the 8 grid points
 * nearest to it (squared distance of the levels, ties by grid index) — the
 * k_index / k_neighbours tables of ik's quantizer. */
static int8_t kl_index[64];
static uint8_t kl_neighbours[32][8];
static int8_t kl_grid[32][2];
static pthread_once_t kl_once = PTHREAD_ONCE_INIT;

static void kl_init(void)
{
    const int8_t *v = sq__iq3nl_values;
    for (int i = 0; i < 32; ++i) {
        kl_grid[i][0] = (int8_t)(sq__iq2kl_values[i] & 0xFF);
        kl_grid[i][1] = (int8_t)(sq__iq2kl_values[i] >> 8);
    }
    int missing = 0;
    for (int p = 0; p < 64; ++p) {
        const int a = v[p / 8], b = v[p % 8];
        int on = -1;
        for (int i = 0; i < 32; ++i)
            if (kl_grid[i][0] == a && kl_grid[i][1] == b) on = i;
        if (on >= 0) {
            kl_index[p] = (int8_t)on;
            continue;
        }
        kl_index[p] = (int8_t)(-(missing + 1));
        int dist[32];
        for (int i = 0; i < 32; ++i)
            dist[i] = (kl_grid[i][0] - a) * (kl_grid[i][0] - a) + (kl_grid[i][1] - b) * (kl_grid[i][1] - b);
        for (int k = 0; k < 8; ++k) { /* k-th nearest: smallest distance, then smallest index, not yet taken */
            int best = -1;
            for (int i = 0; i < 32; ++i) {
                bool taken = false;
                for (int t = 0; t < k; ++t) taken |= kl_neighbours[missing][t] == i;
                if (!taken && (best < 0 || dist[i] < dist[best])) best = i;
            }
            kl_neighbours[missing][k] = (uint8_t)best;
        }
        missing++;
    }
}

/* The grid index for the pair (x1, x2) at inverse scale id: the grid point
 * of the nearest levels if it is on the grid, else the neighbour with the
 * smallest weighted squared error. */
static int kl_pair_index(float id, float x1, float x2, float w1, float w2)
{
    const float sx1 = id * x1, sx2 = id * x2;
    const int l1 = sq__ik_nearest(sq__iq3nl_values, 8, sx1), l2 = sq__ik_nearest(sq__iq3nl_values, 8, sx2);
    const int i = kl_index[8 * l1 + l2];
    if (i >= 0) return i;
    const uint8_t *neigh = kl_neighbours[-i - 1];
    float best = FLT_MAX;
    int ibest = neigh[0];
    for (int k = 0; k < 8; ++k) {
        const float diff1 = kl_grid[neigh[k]][0] - sx1, diff2 = kl_grid[neigh[k]][1] - sx2;
        const float score = fmaf(w1 * diff1, diff1, w2 * diff2 * diff2);
        if (score < best) {
            best = score;
            ibest = neigh[k];
        }
    }
    return ibest;
}

/* Fit sums of the grid pairs chosen at inverse scale id over a 32-value block. */
static void kl_fit(const float *xb, const float *w, float id, float *sumqx, float *sumq2)
{
    float a = 0, b = 0;
    for (int j = 0; j < 32; j += 2) {
        const int idx = kl_pair_index(id, xb[j], xb[j + 1], w[j], w[j + 1]);
        const float q1 = kl_grid[idx][0], q2 = kl_grid[idx][1];
        a += fmaf(w[j] * q1, xb[j], w[j + 1] * q2 * xb[j + 1]);
        b += fmaf(w[j] * q1, q1, w[j + 1] * q2 * q2);
    }
    *sumqx = a, *sumq2 = b;
}

/* One trial of the IQ2_KL block search at inverse scale id, with its mirror. */
static void kl_try(const float *xb, const float *w, float id, float *d, float *best)
{
    float sqx, sq2;
    kl_fit(xb, w, id, &sqx, &sq2);
    if (sq2 > 0 && sqx * sqx > *best * sq2) {
        *d = sqx / sq2;
        *best = *d * sqx;
    }
    kl_fit(xb, w, -id, &sqx, &sq2);
    if (sq2 > 0 && sqx * sqx > *best * sq2) {
        *d = sqx / sq2;
        *best = *d * sqx;
    }
}

/* Weights of a 32-value IQ2_KL block: imatrix * sqrtf(sigma2 + x^2), or |x|. */
static void kl_weights(const float *qw, const float *xb, float sigma2, float *w)
{
    float buf[32];
    if (qw) sq__ik_imatrix_weights(sq__ik_block_qw(qw, xb, 32, buf), xb, 32, sigma2, w);
    else
        for (int j = 0; j < 32; ++j) w[j] = fabsf(xb[j]);
}

/* First pass of IQ2_KL: the scale of one block (5 trials either side). */
static float kl_block_scale(const float *xb, const float *w)
{
    float amax;
    const float max = sq__signed_absmax(xb, 32, &amax);
    if (!amax) return 0;
    const float d0 = -max / sq__iq3nl_values[0];
    float sqx_p, sq2_p, sqx_m, sq2_m;
    kl_fit(xb, w, 1 / d0, &sqx_p, &sq2_p);
    kl_fit(xb, w, -(1 / d0), &sqx_m, &sq2_m);
    float d = sqx_p / sq2_p, best = d * sqx_p;
    if (sq2_m > 0 && sqx_m * sqx_m > best * sq2_m) {
        d = sqx_m / sq2_m;
        best = d * sqx_m;
    }
    for (int t = -5; t <= 5; ++t) kl_try(xb, w, (float)(t + sq__iq3nl_values[0]) / max, &d, &best);
    return d;
}

/* The weighted squared error of a block at scale level ls (d*ls). */
static float kl_score(const float *xb, const float *w, float dl)
{
    const float idl = dl ? 1 / dl : 0.f;
    float score = 0;
    for (int j = 0; j < 16; ++j) {
        const int idx = kl_pair_index(idl, xb[2 * j], xb[2 * j + 1], w[2 * j], w[2 * j + 1]);
        const float diff1 = fmaf(dl, kl_grid[idx][0], -xb[2 * j]), diff2 = fmaf(dl, kl_grid[idx][1], -xb[2 * j + 1]);
        score += fmaf(w[2 * j] * diff1, diff1, w[2 * j + 1] * diff2 * diff2);
    }
    return score;
}

/* IQ2_KL: pairs of values as 5-bit indices into a 32-point grid of iq3nl
 * pairs; 6-bit scales against d = max_scale/-32 (each refined among its two
 * neighbour levels by the weighted error), the fp16 row scale the
 * least-squares fit times 1.025. work: 8 scales per super-block. */
static void quantize_iq2_kl(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    pthread_once(&kl_once, kl_init);
    const int64_t nblock = n / 256;
    sq__block_iq2_kl *y = (sq__block_iq2_kl *)((char *)vy + 2);
    float *scales = work, w[32], max_scale = 0, max_abs_scale = 0;
    memset(y, 0, (size_t)nblock * sizeof *y);
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.25f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            kl_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xbl + 32 * ib, sigma2, w);
            const float d = kl_block_scale(xbl + 32 * ib, w);
            scales[8 * ibl + ib] = d;
            if (fabsf(d) > max_abs_scale) {
                max_abs_scale = fabsf(d);
                max_scale = d;
            }
        }
    }
    if (!max_abs_scale) {
        set_row_f16(vy, 0.f);
        return;
    }
    float d = -max_scale / 32;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int64_t ibl = 0; ibl < nblock; ++ibl) {
        const float *xbl = x + 256 * ibl;
        const float sigma2 = sq__ik_sumx2(xbl) * (2.25f / 256);
        for (int ib = 0; ib < 8; ++ib) {
            const float *xb = xbl + 32 * ib;
            kl_weights(imatrix ? imatrix + 256 * ibl + 32 * ib : NULL, xb, sigma2, w);
            const int ls0 = imax(-32, imin(31, sq__ik_round_prod(id, scales[8 * ibl + ib])));
            float best_score = FLT_MAX;
            int ls = ls0;
            for (int l = imax(-32, ls0 - 1); l <= imin(31, ls0 + 1); ++l) {
                const float score = kl_score(xb, w, d * l);
                if (score < best_score) {
                    best_score = score;
                    ls = l;
                }
            }
            const int uls = ls + 32;
            y[ibl].scales_l[ib % 4] |= (uint8_t)((uls & 0xF) << 4 * (ib / 4));
            y[ibl].scales_h |= (uint16_t)((uls >> 4) << 2 * ib);
            if (ls == 0) continue;
            const float idl = 1 / (d * ls);
            for (int j = 0; j < 16; ++j) {
                const int idx = kl_pair_index(idl, xb[2 * j], xb[2 * j + 1], w[2 * j], w[2 * j + 1]);
                y[ibl].qs[16 * (ib / 2) + j] |= (uint8_t)((idx & 0xF) << 4 * (ib % 2));
                y[ibl].qh[j] |= (uint8_t)((idx >> 4) << ib);
                const float q1 = ls * kl_grid[idx][0], q2 = ls * kl_grid[idx][1];
                sumqx += fmaf(w[2 * j] * q1, xb[2 * j], w[2 * j + 1] * q2 * xb[2 * j + 1]);
                sumq2 += fmaf(w[2 * j] * q1, q1, w[2 * j + 1] * q2 * q2);
            }
        }
    }
    if (sumq2 > 0) d = sumqx / sumq2;
    set_row_f16(vy, 1.025f * d);
}

/* Signed scale (-32..31) of 32-value sub-block ib of an IQ2_KL block. */
static inline int iq2_kl_scale(const sq__block_iq2_kl *b, int ib)
{
    return ((b->scales_l[ib % 4] >> 4 * (ib / 4) & 0xF) | ((b->scales_h >> 2 * ib & 3) << 4)) - 32;
}

/* Grid index of pair j (0..15) of 32-value sub-block ib of an IQ2_KL block. */
static inline int iq2_kl_index(const sq__block_iq2_kl *b, int ib, int j)
{
    return ((b->qs[16 * (ib / 2) + j] >> 4 * (ib % 2)) & 0xF) | ((b->qh[j] >> ib & 1) << 4);
}

static void dequantize_iq2_kl(const void *vx, float *y, int64_t n)
{
    const float d = row_f16(vx);
    const sq__block_iq2_kl *x = (const sq__block_iq2_kl *)((const char *)vx + 2);
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const float dl = d * iq2_kl_scale(&x[i], ib);
            for (int j = 0; j < 16; ++j) {
                const uint16_t g = sq__iq2kl_values[iq2_kl_index(&x[i], ib, j)];
                y[2 * j] = dl * (int8_t)(g & 0xFF);
                y[2 * j + 1] = dl * (int8_t)(g >> 8);
            }
        }
}

static float vec_dot_iq2_kl(int64_t n, const void *vw, const void *vx)
{
    const float d = row_f16(vw);
    const sq__block_iq2_kl *w = (const sq__block_iq2_kl *)((const char *)vw + 2);
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int sum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int8_t *q8 = a[i].qs + 32 * ib;
            int s = 0;
            for (int j = 0; j < 16; ++j) {
                const uint16_t g = sq__iq2kl_values[iq2_kl_index(&w[i], ib, j)];
                s += q8[2 * j] * (int8_t)(g & 0xFF) + q8[2 * j + 1] * (int8_t)(g >> 8);
            }
            sum += iq2_kl_scale(&w[i], ib) * s;
        }
        sumf += a[i].d * sum;
    }
    return d * sumf;
}

void sq__register_ik_ksquants(sq__kernels table[SQ_TYPE_COUNT], sq__quantize_ws ws[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ2_KS] = (sq__kernels){.dequantize = dequantize_iq2_ks, .vec_dot = vec_dot_iq2_ks};
    table[SQ_TYPE_IQ3_KS] = (sq__kernels){.dequantize = dequantize_iq3_ks, .vec_dot = vec_dot_iq3_ks};
    table[SQ_TYPE_IQ4_KS] = (sq__kernels){.dequantize = dequantize_iq4_ks, .vec_dot = vec_dot_iq4_ks};
    table[SQ_TYPE_IQ4_KSS] = (sq__kernels){.dequantize = dequantize_iq4_kss, .vec_dot = vec_dot_iq4_kss};
    table[SQ_TYPE_IQ5_KS] = (sq__kernels){.dequantize = dequantize_iq5_ks, .vec_dot = vec_dot_iq5_ks};
    table[SQ_TYPE_IQ2_KL] = (sq__kernels){.dequantize = dequantize_iq2_kl, .vec_dot = vec_dot_iq2_kl};
    ws[SQ_TYPE_IQ2_KS] = (sq__quantize_ws){quantize_iq2_ks, 18};
    ws[SQ_TYPE_IQ3_KS] = (sq__quantize_ws){quantize_iq3_ks, 10};
    ws[SQ_TYPE_IQ4_KS] = (sq__quantize_ws){quantize_iq4_ks, 10};
    ws[SQ_TYPE_IQ4_KSS] = (sq__quantize_ws){quantize_iq4_kss, 8};
    ws[SQ_TYPE_IQ5_KS] = (sq__quantize_ws){quantize_iq5_ks, 10};
    ws[SQ_TYPE_IQ2_KL] = (sq__quantize_ws){quantize_iq2_kl, 8};
}
