/*
 * iquants.c — scalar reference kernels of the i-quant family this build
 * supports: IQ4_NL (32-value blocks, dotted with Q8_0) and IQ4_XS (256-value
 * super-blocks, dotted with Q8_K); also MXFP4 (32 values, 4-bit codes into a
 * fixed table, dotted with Q8_0).
 *
 * Both store 4-bit indices into the same 16-entry non-linear table
 * (sq__kvalues_iq4nl, denser near zero than a uniform grid). The quantizer
 * is one search for both (ggml's quantize_row_iq4_nl_impl): per 32-value
 * block, find the scale that maximises the weighted fit sumqx^2/sumq2 over 15
 * candidate inverse scales; IQ4_XS then quantizes the 8 block scales to 6
 * bits against a common fp16 super-scale and re-picks every index.
 * ggml_quantize_chunk always runs the search with 7 steps either side (with
 * or without importance weights); without them the weights are x^2.
 *
 * The other i-quants (IQ3_S, IQ3_XXS, IQ2_S, ...) are not registered: the
 * dispatcher refuses them with a message naming the type.
 * Kernels never allocate; the caller owns x and y.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels.h"
#include "quant_common.h"

/* Bit-exactness needs every a*b+c rounded twice, as ggml computes it: no FMA
 * contraction even when built with -mfma / -march=native (GCC in GNU mode and
 * clang contract by default). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }
/* sq__kquants_reference_search state, as seen by this file. */
#define iq4_reference_search sq__kquants_reference_search_on()
static inline int imax(int a, int b) { return a > b ? a : b; }

/* The 16 levels of the IQ4_NL / IQ4_XS non-linear 4-bit code (ggml's table). */
static const int8_t sq__kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                              1,    13,   25,  38,  53,  69,  89,  113};

/* Decision thresholds of the IQ4 table, doubled: 2v >= lo + hi moves v from
 * level lo up to level hi. The sums are small integers, so the test on 2v is
 * exact in float. */
static const float iq4_thresholds2[15] = {-231, -187, -148, -114, -84, -57, -32, -9,
                                          14,   38,   63,   91,   122, 158, 202};

/* Index of the table level nearest to v; a value exactly half-way between
 * two levels takes the upper one (as ggml, however it phrases the test).
 * The thresholds are sorted, so the index is the number of them at or below
 * 2v: 15 independent compares, no branches (NaN gives 0, as ggml's search). */
static inline int nearest_level(float v)
{
    const float v2 = v + v;
    int idx = 0;
    for (int k = 0; k < 15; k++) idx += v2 >= iq4_thresholds2[k];
    return idx;
}

/* Importance weights of one 32-value block: qw*sqrt(sigma2 + x^2), or x^2
 * without an importance matrix. */
static void iq4_weights(const float *xb, const float *qw, float sigma2, float *w)
{
    if (qw) {
        sq__imatrix_weights(32, xb, qw, sigma2, w);
    } else {
        for (int j = 0; j < 32; ++j) w[j] = xb[j] * xb[j];
    }
}

/*
 * The block scale search of ggml's quantize_row_iq4_nl_impl (with its 7
 * steps): the first guess maps the largest-magnitude value onto the first
 * table level (-127) and fits d by least squares over the nearest levels;
 * then 15 inverse scales (t - 127)/max, t = -7..7, each kept only when it
 * strictly improves sumqx^2/sumq2. Returns 0 for an all-zero block. The
 * levels chosen here are not kept: both formats re-pick them afterwards.
 * Shaped like sq__fit_symmetric but not the same search (table levels, other
 * trial scales), so kept apart.
 */
static float iq4_block_scale(const float *xb, const float *weight)
{
    const int8_t *values = sq__kvalues_iq4nl;
    float amax;
    const float max = sq__signed_absmax(xb, 32, &amax);
    if (amax < SQ_GROUP_EPS) return 0;
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const float q = values[nearest_level(id * xb[j])];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int t = -7; t <= 7; ++t) {
        id = (t + values[0]) / max; /* integer numerator, then float divide */
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const float q = values[nearest_level(id * xb[j])];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Level values by floor(2v), for 2v in [-240, 240]: the thresholds are
 * integers, so "threshold <= 2v" is "threshold <= floor(2v)". Filled once. */
static float iq4_level_by_floor2[481];
static pthread_once_t iq4_level_once = PTHREAD_ONCE_INIT;

static void iq4_level_init(void)
{
    for (int f = -240; f <= 240; f++) {
        int idx = 0;
        for (int k = 0; k < 15; k++) idx += (float)f >= iq4_thresholds2[k];
        iq4_level_by_floor2[f + 240] = sq__kvalues_iq4nl[idx];
    }
}

/* The level (as a float) nearest to each lane of v, the same as
 * sq__kvalues_iq4nl[nearest_level(v)]: 2v clamped to [-240, 240] (NaN to
 * -240, level -127 as in the scalar search), floored, looked up. */
static inline sq__v4f iq4_level_x4(sq__v4f v)
{
    const sq__v4f lo = {-240, -240, -240, -240}, hi = {240, 240, 240, 240};
    sq__v4f v2 = v + v;
    v2 = sq__v4_sel(v2 >= lo, v2, lo);
    v2 = sq__v4_sel(v2 <= hi, v2, hi);
    sq__v4i f = __builtin_convertvector(v2, sq__v4i); /* toward zero, in range */
    f += (__builtin_convertvector(f, sq__v4f) > v2);   /* -1 where it rounded up */
    const sq__v4f q = {iq4_level_by_floor2[f[0] + 240], iq4_level_by_floor2[f[1] + 240],
                       iq4_level_by_floor2[f[2] + 240], iq4_level_by_floor2[f[3] + 240]};
    return q;
}

/* iq4_block_scale on 4 consecutive 32-value blocks at once, lane k on block
 * k: the same float operations in the same order, so the same scales. */
static void iq4_block_scales_x4(const float *x, const float *weight, float *scales)
{
    sq__v4f X[32], W[32];
    for (int j = 0; j < 32; ++j)
        for (int k = 0; k < 4; ++k) {
            X[j][k] = x[32 * k + j];
            W[j][k] = weight[32 * k + j];
        }
    const sq__v4f zero = {0, 0, 0, 0};
    sq__v4f amax;
    const sq__v4f max = sq__v4_signed_absmax(X, 32, &amax);
    const sq__v4i zero_lane = amax < SQ_GROUP_EPS;
    sq__v4f d = -max / (float)sq__kvalues_iq4nl[0];
    sq__v4f id = 1 / d;
    sq__v4f sumqx = zero, sumq2 = zero;
    for (int j = 0; j < 32; ++j) {
        const sq__v4f q = iq4_level_x4(id * X[j]);
        sumqx += W[j] * q * X[j];
        sumq2 += W[j] * q * q;
    }
    d = sq__v4_sel(sumq2 > 0, sumqx / sumq2, zero);
    sq__v4f best = d * sumqx;
    for (int t = -7; t <= 7; ++t) {
        id = (float)(t + sq__kvalues_iq4nl[0]) / max;
        sumqx = sumq2 = zero;
        for (int j = 0; j < 32; ++j) {
            const sq__v4f q = iq4_level_x4(id * X[j]);
            sumqx += W[j] * q * X[j];
            sumq2 += W[j] * q * q;
        }
        const sq__v4i take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2);
        const sq__v4f nd = sumqx / sumq2;
        d = sq__v4_sel(take, nd, d);
        best = sq__v4_sel(take, nd * sumqx, best);
    }
    for (int k = 0; k < 4; ++k) scales[k] = zero_lane[k] ? 0.f : d[k];
}

/* Block scales of nblk consecutive 32-value blocks: 4 at a time on vectors,
 * the rest (and everything, under sq__kquants_reference_search) one by one. */
static void iq4_block_scales(int nblk, const float *x, const float *weight, float *scales)
{
    pthread_once(&iq4_level_once, iq4_level_init);
    int ib = 0;
    if (!iq4_reference_search)
        for (; ib + 4 <= nblk; ib += 4) iq4_block_scales_x4(x + 32 * ib, weight + 32 * ib, scales + ib);
    for (; ib < nblk; ++ib) scales[ib] = iq4_block_scale(x + 32 * ib, weight + 32 * ib);
}

/* Packs 32-value blocks of indices: low nibble value j, high nibble j+16. */
static void iq4_pack(int nblk, const uint8_t *L, uint8_t *q4)
{
    for (int i = 0; i < nblk; ++i)
        for (int j = 0; j < 16; ++j) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

/* ------------------------------------------------------------------------
 * IQ4_NL
 * ------------------------------------------------------------------------ */

/* IQ4_NL: each 32-value block is its own super-block (sigma2 = 2*mean x^2 of
 * the block); the scale is stored as fp16 and the indices re-picked with the
 * float scale. */
static void quantize_iq4_nl(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq4_nl *y = vy;
    float weight[4 * 32], scales[4];
    uint8_t L[32];
    for (int64_t ib0 = 0; ib0 < n / 32; ib0 += 4) {
        const int nblk = n / 32 - ib0 < 4 ? (int)(n / 32 - ib0) : 4;
        const float *xb0 = x + 32 * ib0;
        for (int b = 0; b < nblk; ++b) {
            const float *xb = xb0 + 32 * b;
            const float sigma2 = sq__sum_squares(xb, 32) * (2.f / 32);
            iq4_weights(xb, imatrix ? imatrix + 32 * (ib0 + b) : NULL, sigma2, weight + 32 * b);
        }
        iq4_block_scales(nblk, xb0, weight, scales);
        for (int b = 0; b < nblk; ++b) {
            const float *xb = xb0 + 32 * b;
            sq__block_iq4_nl *blk = &y[ib0 + b];
            blk->d = sq_f32_to_fp16(scales[b]);
            const float id = scales[b] ? 1 / scales[b] : 0;
            for (int j = 0; j < 32; ++j) L[j] = (uint8_t)nearest_level(id * xb[j]);
            iq4_pack(1, L, blk->qs);
        }
    }
}

/* Decodes one 32-value block of 4-bit codes (low nibbles values 0-15, high
 * nibbles 16-31): y = d * table[code] (a product, so the operand order of
 * ggml's table[code] * d for MXFP4 gives the same bits). */
static inline void table_nibble_dequant(const uint8_t *qs, const int8_t *table, float d, float *y)
{
    for (int j = 0; j < 16; ++j) {
        y[j] = d * table[qs[j] & 0xF];
        y[j + 16] = d * table[qs[j] >> 4];
    }
}

/* Integer dot of one 32-value block of 4-bit codes (low nibbles values
 * 0-15, high nibbles 16-31) looked up in table, with 32 int8 activations:
 * the inner sum of the IQ4_NL, IQ4_XS and MXFP4 dots. */
static inline int table_nibble_dot(const uint8_t *qs, const int8_t *table, const int8_t *q8)
{
    int s = 0;
    for (int j = 0; j < 16; ++j) {
        s += q8[j] * table[qs[j] & 0xF];
        s += q8[j + 16] * table[qs[j] >> 4];
    }
    return s;
}

/* value = d * level. */
static void dequantize_iq4_nl(const void *vx, float *y, int64_t n)
{
    const sq__block_iq4_nl *x = vx;
    for (int64_t ib = 0; ib < n / 32; ++ib, y += 32) {
        table_nibble_dequant(x[ib].qs, sq__kvalues_iq4nl, sq_fp16_to_f32(x[ib].d), y);
    }
}

/* sum over blocks of (d_w*d_x) * sum(level*q8), integer inner sums. */
static float vec_dot_iq4_nl(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq4_nl *w = vw;
    const sq__block_q8_0 *a = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const int s = table_nibble_dot(w[ib].qs, sq__kvalues_iq4nl, a[ib].qs);
        sumf += (sq_fp16_to_f32(w[ib].d) * sq_fp16_to_f32(a[ib].d)) * s;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * IQ4_XS
 * ------------------------------------------------------------------------ */

/* IQ4_XS: block scales as for IQ4_NL (sigma2 from the whole super-block),
 * then 6-bit block scales against D = max_scale/-32 (the signed
 * largest-magnitude scale; D stays an unrounded float here, as in ggml, and
 * an all-zero super-block stores -0.0), and every index re-picked with D*l. */
static void quantize_iq4_xs(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq4_xs *y = vy;
    float weight[SQ_QK_K], scales[SQ_QK_K / 32];
    uint8_t L[SQ_QK_K];
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl, x += SQ_QK_K) {
        const float sigma2 = sq__sum_squares(x, SQ_QK_K) * (2.f / SQ_QK_K);
        for (int ib = 0; ib < SQ_QK_K / 32; ++ib)
            iq4_weights(x + 32 * ib, imatrix ? imatrix + SQ_QK_K * ibl + 32 * ib : NULL, sigma2, weight + 32 * ib);
        iq4_block_scales(SQ_QK_K / 32, x, weight, scales);
        float amax_scale;
        const float max_scale = sq__signed_absmax(scales, SQ_QK_K / 32, &amax_scale);
        sq__block_iq4_xs *blk = &y[ibl];
        blk->scales_h = 0;
        const float d = -max_scale / 32;
        blk->d = sq_f32_to_fp16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < SQ_QK_K / 32; ++ib) {
            int l = sq__nearest_int(id * scales[ib]);
            l = imax(-32, imin(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; ++j) L[32 * ib + j] = (uint8_t)nearest_level(idl * x[32 * ib + j]);
            l += 32;
            if (ib % 2 == 0)
                blk->scales_l[ib / 2] = (uint8_t)(l & 0xF);
            else
                blk->scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
            blk->scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
        iq4_pack(SQ_QK_K / 32, L, blk->qs);
    }
}

/* The 6-bit scale (stored +32) of 32-value block ib. */
static inline int iq4_xs_scale(const sq__block_iq4_xs *b, int ib)
{
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/* value = (d*(scale-32)) * level. */
static void dequantize_iq4_xs(const void *vx, float *y, int64_t n)
{
    const sq__block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const float d = sq_fp16_to_f32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < SQ_QK_K / 32; ++ib, y += 32, qs += 16) {
            const float dl = d * iq4_xs_scale(&x[i], ib);
            table_nibble_dequant(qs, sq__kvalues_iq4nl, dl, y);
        }
    }
}

static float vec_dot_iq4_xs(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq4_xs *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const uint8_t *qs = w[i].qs;
        const int8_t *q8 = a[i].qs;
        int32_t isum = 0;
        for (int ib = 0; ib < SQ_QK_K / 32; ++ib, qs += 16, q8 += 32)
            isum += iq4_xs_scale(&w[i], ib) * table_nibble_dot(qs, sq__kvalues_iq4nl, q8);
        sumf += sq_fp16_to_f32(w[i].d) * a[i].d * isum;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * MXFP4 (grouped here: a 4-bit code into a fixed value table, like IQ4_NL)
 * ------------------------------------------------------------------------ */

/* E2M1 values doubled (so they are integers); the block exponent is halved
 * back by e8m0_half. */
static const int8_t kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 2^(e-128) as a float, i.e. half of the E8M0 value 2^(e-127), built from its
 * bits (e = 0 and 1 give subnormals). */
static inline float e8m0_half(uint8_t e)
{
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Code whose (doubled) value times d is nearest to v; the first of equals. */
static inline int mxfp4_code(float v, float d)
{
    int best = 0;
    float best_err = fabsf(kvalues_mxfp4[0] * d - v);
    for (int i = 1; i < 16; i++) {
        const float err = fabsf(kvalues_mxfp4[i] * d - v);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

/* Shared exponent e = floor(log2(max|x|)) - 2 + 127 (so the largest value
 * lands near the top code 6 = 12/2), then each value to its nearest code.
 * The importance matrix is unused (as in ggml). */
static void quantize_mxfp4(const float *x, void *vy, int64_t n, const float *imatrix)
{
    (void)imatrix;
    sq__block_mxfp4 *y = vy;
    for (int64_t ib = 0; ib < n / 32; ++ib, x += 32) {
        const float amax = sq__absmax(x, 32);
        /* through int, then wrapped to 8 bits: what ggml's conversion does on
         * x86 for finite values, without the undefined float->uint8 cast when
         * amax is below 2^-125 (negative exponent byte) */
        uint8_t e = 0;
        if (amax > 0.0f) {
            const float fe = floorf(log2f(amax)) - 2 + 127;
            e = (uint8_t)(fe >= -1e9f && fe <= 1e9f ? (int)fe : 0);
        }
        const float d = e8m0_half(e);
        y[ib].e = e;
        for (int j = 0; j < 16; ++j)
            y[ib].qs[j] = (uint8_t)(mxfp4_code(x[j], d) | (mxfp4_code(x[j + 16], d) << 4));
    }
}

static void dequantize_mxfp4(const void *vx, float *y, int64_t n)
{
    const sq__block_mxfp4 *x = vx;
    for (int64_t ib = 0; ib < n / 32; ++ib, y += 32) {
        table_nibble_dequant(x[ib].qs, kvalues_mxfp4, e8m0_half(x[ib].e), y);
    }
}

static float vec_dot_mxfp4(int64_t n, const void *vw, const void *vx)
{
    const sq__block_mxfp4 *w = vw;
    const sq__block_q8_0 *a = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const int s = table_nibble_dot(w[ib].qs, kvalues_mxfp4, a[ib].qs);
        sumf += (sq_fp16_to_f32(a[ib].d) * e8m0_half(w[ib].e)) * s;
    }
    return sumf;
}

void sq__register_iquants(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ4_NL] = (sq__kernels){quantize_iq4_nl, dequantize_iq4_nl, vec_dot_iq4_nl, NULL, NULL};
    table[SQ_TYPE_IQ4_XS] = (sq__kernels){quantize_iq4_xs, dequantize_iq4_xs, vec_dot_iq4_xs, NULL, NULL};
    table[SQ_TYPE_MXFP4] = (sq__kernels){quantize_mxfp4, dequantize_mxfp4, vec_dot_mxfp4, NULL, NULL};
}
