/*
 * ternary.c — scalar reference kernels of the ternary types TQ1_0 (1.69 bpw)
 * and TQ2_0 (2.06 bpw): 256 values in {-1, 0, 1} times one fp16 scale d =
 * max|x| (BitNet b1.58 / TriLM style), dotted with Q8_K. The importance
 * matrix is unused (as in ggml). TQ1_0 packs 5 trits per byte (a byte holds
 * ceil(t * 256 / 243) for the base-3 number t of its trits, so that
 * multiplying by 3^n and taking the top bits of byte*3 reads trit n), TQ2_0
 * one 2-bit code per value.
 *
 * Rounding is lroundf (halves away from zero), as ggml's quantize_row_tq*_ref;
 * it is done in unsigned arithmetic, so a non-finite input (outside ggml's
 * contract) gives some code instead of undefined behaviour.
 * Kernels never allocate.
 */
#include <math.h>

#include "kernels.h"
#include "quant_common.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline float h2f(sq_fp16 h) { return sq_fp16_to_f32(h); }
static inline sq_fp16 f2h(float f) { return sq_f32_to_fp16(f); }

/* round(v) + 1: the code 0, 1, 2 of a value scaled to [-1, 1]. */
static inline unsigned trit(float v) { return (unsigned)((unsigned long)lroundf(v) + 1); }

/* ------------------------------------------------------------------------
 * TQ1_0
 * ------------------------------------------------------------------------ */

/* The byte of trits t[0..count) (first trit most significant), padded to 5
 * trits by zeros at the low end, as ceil(t * 256 / 243). */
static inline uint8_t pack_trits(const unsigned *t, int count)
{
    uint8_t q = 0;
    for (int k = 0; k < count; ++k) q = (uint8_t)(q * 3 + t[k]);
    for (int k = count; k < 5; ++k) q = (uint8_t)(q * 3);
    return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
}

/* Trit n (0 = most significant) of a packed byte. */
static inline int unpack_trit(uint8_t b, int n)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(b * pow3[n]);
    return (int)(((uint16_t)q * 3) >> 8);
}

/* Values 0-159: byte m of qs[0..31] holds values m + 32n (n = 0..4); values
 * 160-239: byte 32+m holds 160 + m + 16n; values 240-255: qh[j] holds 240 + j
 * + 4n (n = 0..3). */
static void quantize_tq1_0(const float *x, void *vy, int64_t n, const float *imatrix)
{
    (void)imatrix;
    sq__block_tq1_0 *y = vy;
    for (int64_t i = 0; i < n / SQ_QK_K; i++, x += SQ_QK_K) {
        const float d = sq__absmax(x, SQ_QK_K);
        const float id = d ? 1.0f / d : 0.0f;
        unsigned t[5];
        y[i].d = f2h(d);
        for (int m = 0; m < 32; ++m) {
            for (int k = 0; k < 5; ++k) t[k] = trit(x[m + 32 * k] * id);
            y[i].qs[m] = pack_trits(t, 5);
        }
        for (int m = 0; m < 16; ++m) {
            for (int k = 0; k < 5; ++k) t[k] = trit(x[160 + m + 16 * k] * id);
            y[i].qs[32 + m] = pack_trits(t, 5);
        }
        for (int j = 0; j < 4; ++j) {
            for (int k = 0; k < 4; ++k) t[k] = trit(x[240 + j + 4 * k] * id);
            y[i].qh[j] = pack_trits(t, 4);
        }
    }
}

/* The 256 trits of a TQ1_0 block in value order. */
static void tq1_trits(const sq__block_tq1_0 *b, int8_t *t)
{
    for (int k = 0; k < 5; ++k)
        for (int m = 0; m < 32; ++m) t[32 * k + m] = (int8_t)unpack_trit(b->qs[m], k);
    for (int k = 0; k < 5; ++k)
        for (int m = 0; m < 16; ++m) t[160 + 16 * k + m] = (int8_t)unpack_trit(b->qs[32 + m], k);
    for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 4; ++j) t[240 + 4 * k + j] = (int8_t)unpack_trit(b->qh[j], k);
}

/* value = (trit - 1) * d. */
static void dequantize_tq1_0(const void *vx, float *y, int64_t n)
{
    const sq__block_tq1_0 *x = vx;
    int8_t t[SQ_QK_K];
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const float d = h2f(x[i].d);
        tq1_trits(&x[i], t);
        for (int j = 0; j < SQ_QK_K; ++j) *y++ = (float)(t[j] - 1) * d;
    }
}

static float vec_dot_tq1_0(int64_t n, const void *vw, const void *vx)
{
    const sq__block_tq1_0 *w = vw;
    const sq__block_q8_K *a = vx;
    int8_t t[SQ_QK_K];
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        tq1_trits(&w[i], t);
        int sum = 0;
        for (int j = 0; j < SQ_QK_K; ++j) sum += (t[j] - 1) * a[i].qs[j];
        sumf += (float)sum * (h2f(w[i].d) * a[i].d);
    }
    return sumf;
}

/* ------------------------------------------------------------------------
 * TQ2_0
 * ------------------------------------------------------------------------ */

/* d = max|x|; each value becomes round(x/d) in {-1, 0, 1} (lroundf: halves
 * away from zero, as ggml), stored +1. The importance matrix is unused. */
static void quantize_tq2_0(const float *x, void *vy, int64_t n, const float *imatrix)
{
    (void)imatrix;
    sq__block_tq2_0 *y = vy;
    for (int64_t i = 0; i < n / SQ_QK_K; i++) {
        const float d = sq__absmax(x, SQ_QK_K);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < (int)sizeof y[i].qs; j += 32, x += 128) {
            for (int m = 0; m < 32; ++m) {
                unsigned q = 0;
                /* unsigned arithmetic: lroundf of a non-finite product is
                 * LONG_MIN on x86, and +1 must not overflow */
                for (int k = 0; k < 4; ++k)
                    q += (unsigned)(((unsigned long)lroundf(x[m + 32 * k] * id) + 1) & 3) << (2 * k);
                y[i].qs[j + m] = (uint8_t)q;
            }
        }
    }
}

/* value = (code - 1) * d. */
static void dequantize_tq2_0(const void *vx, float *y, int64_t n)
{
    const sq__block_tq2_0 *x = vx;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < (int)sizeof x[i].qs; j += 32)
            for (int k = 0; k < 4; ++k)
                for (int m = 0; m < 32; ++m) *y++ = (float)(((x[i].qs[j + m] >> (2 * k)) & 3) - 1) * d;
    }
}

static float vec_dot_tq2_0(int64_t n, const void *vw, const void *vx)
{
    const sq__block_tq2_0 *w = vw;
    const sq__block_q8_K *a = vx;
    float sumf = 0;
    for (int64_t i = 0; i < n / SQ_QK_K; ++i) {
        int32_t sumi = 0;
        for (int j = 0; j < (int)sizeof w[i].qs; j += 32)
            for (int k = 0; k < 4; ++k)
                for (int m = 0; m < 32; ++m)
                    sumi += a[i].qs[4 * j + 32 * k + m] * (((w[i].qs[j + m] >> (2 * k)) & 3) - 1);
        sumf += (float)sumi * (a[i].d * h2f(w[i].d));
    }
    return sumf;
}

void sq__register_ternary(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_TQ1_0] = (sq__kernels){quantize_tq1_0, dequantize_tq1_0, vec_dot_tq1_0, NULL, NULL};
    table[SQ_TYPE_TQ2_0] = (sq__kernels){quantize_tq2_0, dequantize_tq2_0, vec_dot_tq2_0, NULL, NULL};
}
