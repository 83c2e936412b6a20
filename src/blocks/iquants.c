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
#include <string.h>

#include "kernels.h"
#include "kquant_common.h"

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Index of the table level nearest to v (table sorted ascending, 16 entries).
 * A value exactly half-way between two levels takes the upper one; the test
 * 2v >= lo + hi is exact in float (the levels are small integers), so the
 * choice matches ggml's however it phrases the comparison. */
static inline int nearest_level(const int8_t *levels, float v)
{
    const float v2 = v + v;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int j = idx + step;
        if (v2 >= (float)(levels[j - 1] + levels[j])) idx = j;
    }
    return idx;
}

/*
 * The shared IQ4 search over one super-block of sb values (32 for IQ4_NL,
 * 256 for IQ4_XS) split into 32-value blocks.
 *   qw:      importance weights for these sb values, or NULL (weights x^2);
 *   dh:      receives the fp16 (super-)scale;
 *   q4:      receives sb/2 bytes of packed indices (low nibble value j, high
 *            nibble value j+16 of each 32-value block);
 *   scales_h, scales_l: IQ4_XS's 6-bit block scales (NULL for IQ4_NL).
 * Float operations follow ggml's order exactly (see the comments).
 */
static void iq4_search(int sb, const float *x, const float *qw, uint16_t *dh, uint8_t *q4, uint16_t *scales_h,
                       uint8_t *scales_l)
{
    const int8_t *values = sq__kvalues_iq4nl;
    const int ntry = 7;
    const int nblocks = sb / 32;
    uint8_t L[SQ_QK_K];
    float scales[SQ_QK_K / 32], weight[32];

    float sigma2 = 0;
    for (int j = 0; j < sb; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sb;

    memset(q4, 0, (size_t)sb / 2);
    *dh = sq_f32_to_fp16(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < nblocks; ++ib) {
        const float *xb = x + 32 * ib;
        uint8_t *Lb = L + 32 * ib;
        if (qw) {
            for (int j = 0; j < 32; ++j) weight[j] = qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < 32; ++j) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < SQ_KQ_GROUP_EPS) {
            scales[ib] = 0;
            memset(Lb, 0, 32);
            continue;
        }
        /* first guess: the largest-magnitude value on the extreme level -127 */
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const int l = nearest_level(values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int t = -ntry; t <= ntry; ++t) {
            id = (t + values[0]) / max; /* integer numerator, then float divide */
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; ++j) {
                const int l = nearest_level(values, id * xb[j]);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = fabsf(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (nblocks > 1) {
        /* IQ4_XS: 6-bit signed block scales against d = max/-32 (unrounded
         * float d, as ggml), then every index re-picked for its block scale */
        *scales_h = 0;
        const float d = -max_scale / 32;
        *dh = sq_f32_to_fp16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < nblocks; ++ib) {
            int l = sq__kq_round(id * scales[ib]);
            l = imax(-32, imin(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            const float *xb = x + 32 * ib;
            for (int j = 0; j < 32; ++j) L[32 * ib + j] = (uint8_t)nearest_level(values, idl * xb[j]);
            l += 32;
            if (ib % 2 == 0)
                scales_l[ib / 2] = (uint8_t)(l & 0xF);
            else
                scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
            *scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
    } else {
        /* IQ4_NL: the block scale as fp16, indices re-picked with the float scale */
        *dh = sq_f32_to_fp16(scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sb; ++j) L[j] = (uint8_t)nearest_level(values, id * x[j]);
    }

    for (int i = 0; i < sb / 32; ++i)
        for (int j = 0; j < 16; ++j) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

/* ------------------------------------------------------------------------
 * IQ4_NL
 * ------------------------------------------------------------------------ */

static void quantize_iq4_nl(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq4_nl *y = vy;
    for (int64_t ib = 0; ib < n / 32; ++ib)
        iq4_search(32, x + 32 * ib, imatrix ? imatrix + 32 * ib : NULL, &y[ib].d, y[ib].qs, NULL, NULL);
}

/* value = d * level. */
static void dequantize_iq4_nl(const void *vx, float *y, int64_t n)
{
    const sq__block_iq4_nl *x = vx;
    for (int64_t ib = 0; ib < n / 32; ++ib, y += 32) {
        const float d = sq_fp16_to_f32(x[ib].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * sq__kvalues_iq4nl[x[ib].qs[j] & 0xF];
            y[j + 16] = d * sq__kvalues_iq4nl[x[ib].qs[j] >> 4];
        }
    }
}

/* sum over blocks of (d_w*d_x) * sum(level*q8), integer inner sums. */
static float vec_dot_iq4_nl(int64_t n, const void *vw, const void *vx)
{
    const sq__block_iq4_nl *w = vw;
    const sq__kq_block_q8_0 *a = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            s += a[ib].qs[j] * sq__kvalues_iq4nl[w[ib].qs[j] & 0xF];
            s += a[ib].qs[j + 16] * sq__kvalues_iq4nl[w[ib].qs[j] >> 4];
        }
        sumf += (sq_fp16_to_f32(w[ib].d) * sq_fp16_to_f32(a[ib].d)) * s;
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * IQ4_XS
 * ------------------------------------------------------------------------ */

static void quantize_iq4_xs(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_iq4_xs *y = vy;
    for (int64_t ibl = 0; ibl < n / SQ_QK_K; ++ibl)
        iq4_search(SQ_QK_K, x + SQ_QK_K * ibl, imatrix ? imatrix + SQ_QK_K * ibl : NULL, &y[ibl].d, y[ibl].qs,
                   &y[ibl].scales_h, y[ibl].scales_l);
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
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * sq__kvalues_iq4nl[qs[j] & 0xF];
                y[j + 16] = dl * sq__kvalues_iq4nl[qs[j] >> 4];
            }
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
        for (int ib = 0; ib < SQ_QK_K / 32; ++ib, qs += 16, q8 += 32) {
            int s = 0;
            for (int j = 0; j < 16; ++j) {
                s += q8[j] * sq__kvalues_iq4nl[qs[j] & 0xF];
                s += q8[j + 16] * sq__kvalues_iq4nl[qs[j] >> 4];
            }
            isum += iq4_xs_scale(&w[i], ib) * s;
        }
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
        float amax = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
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
        const float d = e8m0_half(x[ib].e);
        for (int j = 0; j < 16; ++j) {
            y[j] = kvalues_mxfp4[x[ib].qs[j] & 0xF] * d;
            y[j + 16] = kvalues_mxfp4[x[ib].qs[j] >> 4] * d;
        }
    }
}

static float vec_dot_mxfp4(int64_t n, const void *vw, const void *vx)
{
    const sq__block_mxfp4 *w = vw;
    const sq__kq_block_q8_0 *a = vx;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            s += a[ib].qs[j] * kvalues_mxfp4[w[ib].qs[j] & 0xF];
            s += a[ib].qs[j + 16] * kvalues_mxfp4[w[ib].qs[j] >> 4];
        }
        sumf += (sq_fp16_to_f32(a[ib].d) * e8m0_half(w[ib].e)) * s;
    }
    return sumf;
}

void sq__register_iquants(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ4_NL] = (sq__kernels){quantize_iq4_nl, dequantize_iq4_nl, vec_dot_iq4_nl, NULL};
    table[SQ_TYPE_IQ4_XS] = (sq__kernels){quantize_iq4_xs, dequantize_iq4_xs, vec_dot_iq4_xs, NULL};
    table[SQ_TYPE_MXFP4] = (sq__kernels){quantize_mxfp4, dequantize_mxfp4, vec_dot_mxfp4, NULL};
}
