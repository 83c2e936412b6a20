/*
 * legacy.c — scalar reference kernels of the legacy block family: Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0 (weights) and the activation quantizers Q8_0 and Q8_1.
 *
 * Bit-exact with ggml: quantizing without importance weights reproduces
 * ggml's reference quantizers, with importance weights ggml's imatrix path
 * (llama-quantize --imatrix), and the activation quantizers reproduce ggml's
 * CPU from_float (which rounds differently from the weight quantizer: see
 * act_q8_0). Layouts are in quant_common.h.
 *
 * Ownership: kernels read the caller's input and write the caller's output;
 * nothing is allocated, scratch lives on the stack (a few dozen bytes).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "quant_common.h"

#define QK SQ_QK_LEGACY

/* ggml converts v = x/d + offset to a level by truncation (a float -> int8
 * cast) and caps it at hi. For finite inputs v lies in [0, hi + 1.5), where
 * this is the same; it also maps NaN and out-of-range v (infinite or
 * non-finite inputs, which ggml leaves undefined) to a level instead of
 * relying on an undefined conversion. */
static inline uint8_t trunc_level(float v, int hi)
{
    if (!(v > 0.0f)) return 0;
    if (v >= (float)hi) return (uint8_t)hi;
    return (uint8_t)(int)v;
}

/* A rounded level for int8 storage, clamped to lo..127 (NaN -> 0); finite
 * scaled inputs never reach the clamp. */
static inline int8_t clamp_i8(float r, int lo)
{
    if (!(r == r)) return 0;
    if (r >= 127.0f) return 127;
    if (r <= (float)lo) return (int8_t)lo;
    return (int8_t)(int)r;
}

/* Sum of squares of a whole row divided by its length: the variance-like
 * statistic ggml's imatrix path mixes into every weight of the row. */
static float row_sigma2(const float *x, int64_t n) { return sq__sum_squares(x, n) / (float)n; }

/* Smallest and largest value of a block. */
static void block_min_max(const float *xb, float *pmin, float *pmax)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (xb[j] < min) min = xb[j];
        if (xb[j] > max) max = xb[j];
    }
    *pmin = min;
    *pmax = max;
}

/* Packs 32 levels (0..15) two per byte: value j low nibble, j+16 high. */
static void pack_nibbles(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

/* Packs 32 levels (0..31): low nibbles as pack_nibbles, bit 4 into qh. */
static void pack_5bit(const uint8_t *L, uint8_t *qs, uint8_t qh_out[4])
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        qh |= ((uint32_t)(L[j] & 0x10u) >> 4) << j;
        qh |= ((uint32_t)(L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; b++) qh_out[b] = (uint8_t)(qh >> (8 * b));
}

static inline uint32_t load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* The importance weights of block ib into w (see sq__imatrix_weights), or
 * NULL when the row has no importance matrix. */
static inline const float *block_importance(const float *x, const float *imatrix, float sigma2, int64_t ib, float *w)
{
    if (!imatrix) return NULL;
    sq__imatrix_weights(QK, x + ib * QK, imatrix + ib * QK, sigma2, w);
    return w;
}

/* One block of a symmetric type (Q4_0: nmax 8, Q5_0: nmax 16): returns the
 * scale d and writes 32 levels 0..2*nmax-1 (value = d * (level - nmax)).
 * Without importance (w NULL) ggml's reference: d = max / -nmax, so the
 * largest-magnitude value lands on level 0 exactly, and levels are
 * truncations of x/d + nmax + 0.5. With importance: the weighted symmetric
 * search. */
static inline float symmetric_block(const float *xb, const float *w, int nmax, uint8_t *L)
{
    if (w) {
        int8_t levels[QK];
        const float d = sq__fit_symmetric(QK, nmax, xb, levels, w);
        for (int j = 0; j < QK; j++) L[j] = (uint8_t)levels[j];
        return d;
    }
    float amax;
    const float d = sq__signed_absmax(xb, QK, &amax) / (float)-nmax;
    const float id = d ? 1.0f / d : 0.0f;
    const float offset = (float)nmax + 0.5f; /* 8.5f / 16.5f, exact */
    for (int j = 0; j < QK; j++) L[j] = trunc_level(xb[j] * id + offset, 2 * nmax - 1);
    return d;
}

/* One block of an asymmetric type (Q4_1: nmax 15, Q5_1: nmax 31): returns
 * the scale d, writes the min m and 32 levels 0..nmax (value = d * level +
 * m). Without importance (w NULL) ggml's reference: m = the block's minimum,
 * d = (max - min) / nmax, levels truncations of (x - min)/d + 0.5. With
 * importance: the weighted scale-and-min search. */
static inline float asymmetric_block(const float *xb, const float *w, int nmax, uint8_t *L, float *m)
{
    if (w) {
        uint8_t Laux[QK];
        float neg_min;
        const float d = sq__fit_asym_weighted(QK, nmax, xb, w, L, &neg_min, Laux, -0.9f, 0.05f, 36);
        *m = -neg_min;
        return d;
    }
    float min, max;
    block_min_max(xb, &min, &max);
    const float d = (max - min) / (float)nmax;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) L[j] = trunc_level((xb[j] - min) * id + 0.5f, nmax);
    *m = min;
    return d;
}

/* ------------------------------------------------------------------ Q4_0 */

/* Q4_0 row: symmetric blocks, nibble-packed levels. */
static void quantize_q4_0(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q4_0 *y = vy;
    const float sigma2 = imatrix ? row_sigma2(x, n) : 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        float w[QK];
        uint8_t L[QK];
        const float d = symmetric_block(x + ib * QK, block_importance(x, imatrix, sigma2, ib, w), 8, L);
        y[ib].d = sq_f32_to_fp16(d);
        pack_nibbles(L, y[ib].qs);
    }
}

static void dequantize_q4_0(const void *vx, float *y, int64_t n)
{
    const sq__block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[i * QK + j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[i * QK + j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* Per block: integer dot of the levels, scaled by both fp16 scales. */
static float vec_dot_q4_0_q8_0(int64_t n, const void *vw, const void *va)
{
    const sq__block_q4_0 *x = vw;
    const sq__block_q8_0 *a = va;
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((x[i].qs[j] & 0x0F) - 8) * a[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
        }
        sum += (float)sumi * sq_fp16_to_f32(x[i].d) * sq_fp16_to_f32(a[i].d);
    }
    return sum;
}

/* ------------------------------------------------------------------ Q4_1 */

/* Q4_1 row: asymmetric blocks, nibble-packed levels. */
static void quantize_q4_1(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q4_1 *y = vy;
    const float sigma2 = imatrix ? row_sigma2(x, n) : 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        float w[QK], m;
        uint8_t L[QK];
        const float d = asymmetric_block(x + ib * QK, block_importance(x, imatrix, sigma2, ib, w), 15, L, &m);
        y[ib].d = sq_f32_to_fp16(d);
        y[ib].m = sq_f32_to_fp16(m);
        pack_nibbles(L, y[ib].qs);
    }
}

static void dequantize_q4_1(const void *vx, float *y, int64_t n)
{
    const sq__block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = sq_fp16_to_f32(x[i].d);
        const float m = sq_fp16_to_f32(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[i * QK + j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[i * QK + j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* sum_j (d q_j + m) * (da a_j) = d da sum(q a) + m * (da sum a), the last
 * factor being the activation block's precomputed s. */
static float vec_dot_q4_1_q8_1(int64_t n, const void *vw, const void *va)
{
    const sq__block_q4_1 *x = vw;
    const sq__block_q8_1 *a = va;
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (x[i].qs[j] & 0x0F) * a[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * a[i].qs[j + 16];
        }
        sum += (sq_fp16_to_f32(x[i].d) * sq_fp16_to_f32(a[i].d)) * (float)sumi +
               sq_fp16_to_f32(x[i].m) * sq_fp16_to_f32(a[i].s);
    }
    return sum;
}

/* ------------------------------------------------------------------ Q5_0 */

/* Q5_0 row: symmetric blocks, 5-bit levels. */
static void quantize_q5_0(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q5_0 *y = vy;
    const float sigma2 = imatrix ? row_sigma2(x, n) : 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        float w[QK];
        uint8_t L[QK];
        const float d = symmetric_block(x + ib * QK, block_importance(x, imatrix, sigma2, ib, w), 16, L);
        y[ib].d = sq_f32_to_fp16(d);
        pack_5bit(L, y[ib].qs, y[ib].qh);
    }
}

/* Level j of a 5-bit block: low nibble from qs, bit 4 from qh. */
static inline int level5(const uint8_t *qs, uint32_t qh, int j)
{
    const int lo = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    return lo | (int)(((qh >> j) & 1u) << 4);
}

static void dequantize_q5_0(const void *vx, float *y, int64_t n)
{
    const sq__block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = sq_fp16_to_f32(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < QK; j++) y[i * QK + j] = (float)(level5(x[i].qs, qh, j) - 16) * d;
    }
}

static float vec_dot_q5_0_q8_0(int64_t n, const void *vw, const void *va)
{
    const sq__block_q5_0 *x = vw;
    const sq__block_q8_0 *a = va;
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += (level5(x[i].qs, qh, j) - 16) * a[i].qs[j];
        sum += (float)sumi * sq_fp16_to_f32(x[i].d) * sq_fp16_to_f32(a[i].d);
    }
    return sum;
}

/* ------------------------------------------------------------------ Q5_1 */

/* Q5_1 row: asymmetric blocks, 5-bit levels. */
static void quantize_q5_1(const float *x, void *vy, int64_t n, const float *imatrix)
{
    sq__block_q5_1 *y = vy;
    const float sigma2 = imatrix ? row_sigma2(x, n) : 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        float w[QK], m;
        uint8_t L[QK];
        const float d = asymmetric_block(x + ib * QK, block_importance(x, imatrix, sigma2, ib, w), 31, L, &m);
        y[ib].d = sq_f32_to_fp16(d);
        y[ib].m = sq_f32_to_fp16(m);
        pack_5bit(L, y[ib].qs, y[ib].qh);
    }
}

static void dequantize_q5_1(const void *vx, float *y, int64_t n)
{
    const sq__block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = sq_fp16_to_f32(x[i].d);
        const float m = sq_fp16_to_f32(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < QK; j++) y[i * QK + j] = (float)level5(x[i].qs, qh, j) * d + m;
    }
}

static float vec_dot_q5_1_q8_1(int64_t n, const void *vw, const void *va)
{
    const sq__block_q5_1 *x = vw;
    const sq__block_q8_1 *a = va;
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += level5(x[i].qs, qh, j) * a[i].qs[j];
        sum += (sq_fp16_to_f32(x[i].d) * sq_fp16_to_f32(a[i].d)) * (float)sumi +
               sq_fp16_to_f32(x[i].m) * sq_fp16_to_f32(a[i].s);
    }
    return sum;
}

/* ------------------------------------------------------------------ Q8_0 */

/* The weight quantizer: d = amax/127, levels roundf(x / d) (ties away from
 * zero). ggml ignores importance weights for Q8_0, and so do we. */
static void quantize_q8_0(const float *x, void *vy, int64_t n, const float *imatrix)
{
    (void)imatrix;
    sq__block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK; i++) {
        const float *xb = x + i * QK;
        const float amax = sq__absmax(xb, QK);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = sq_f32_to_fp16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = clamp_i8(roundf(xb[j] * id), -127);
    }
}

static void dequantize_q8_0(const void *vx, float *y, int64_t n)
{
    const sq__block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = sq_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[i * QK + j] = (float)x[i].qs[j] * d;
    }
}

static float vec_dot_q8_0_q8_0(int64_t n, const void *vw, const void *va)
{
    const sq__block_q8_0 *x = vw;
    const sq__block_q8_0 *a = va;
    float sum = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += x[i].qs[j] * a[i].qs[j];
        sum += (float)sumi * (sq_fp16_to_f32(x[i].d) * sq_fp16_to_f32(a[i].d));
    }
    return sum;
}

/* ------------------------------------------------------ activation quantizers */

/* One activation block the way ggml's CPU from_float does it (its AVX path,
 * which is what ggml runs on x86 and what the golden files hold): scale
 * d = amax/127 but multiply by 127/amax (not 1/d), and round half to even
 * (not half away from zero as the weight quantizer). Returns d; writes the
 * 32 levels and their sum. */
static float act_block(const float *xb, int8_t *qs, int *sum)
{
    const float amax = sq__absmax(xb, QK);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int s = 0;
    for (int j = 0; j < QK; j++) {
        qs[j] = clamp_i8(nearbyintf(xb[j] * id), -128); /* default rounding mode: ties to even */
        s += qs[j];
    }
    *sum = s;
    return d;
}

static void act_q8_0(const float *x, void *vy, int64_t n)
{
    sq__block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK; i++) {
        int sum;
        y[i].d = sq_f32_to_fp16(act_block(x + i * QK, y[i].qs, &sum));
    }
}

/* Q8_1 adds s = d * sum(levels), with the unrounded d, for the *_1 dots. */
static void act_q8_1(const float *x, void *vy, int64_t n)
{
    sq__block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK; i++) {
        int sum;
        const float d = act_block(x + i * QK, y[i].qs, &sum);
        y[i].d = sq_f32_to_fp16(d);
        y[i].s = sq_f32_to_fp16(d * (float)sum);
    }
}

void sq__register_legacy(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_Q4_0] = (sq__kernels){quantize_q4_0, dequantize_q4_0, vec_dot_q4_0_q8_0, NULL, NULL};
    table[SQ_TYPE_Q4_1] = (sq__kernels){quantize_q4_1, dequantize_q4_1, vec_dot_q4_1_q8_1, NULL, NULL};
    table[SQ_TYPE_Q5_0] = (sq__kernels){quantize_q5_0, dequantize_q5_0, vec_dot_q5_0_q8_0, NULL, NULL};
    table[SQ_TYPE_Q5_1] = (sq__kernels){quantize_q5_1, dequantize_q5_1, vec_dot_q5_1_q8_1, NULL, NULL};
    table[SQ_TYPE_Q8_0] = (sq__kernels){quantize_q8_0, dequantize_q8_0, vec_dot_q8_0_q8_0, act_q8_0, NULL};
    table[SQ_TYPE_Q8_1].from_float = act_q8_1;
}
