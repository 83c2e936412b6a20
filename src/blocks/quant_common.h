/*
 * src/blocks/quant_common.h — private to the scalar quantizer families
 * (legacy.c, kquants.c, iquants.c): the on-disk block layouts, ggml's
 * round-to-nearest trick, the group-maximum scans, the 4-lane vector helpers
 * of the k-quant / i-quant searches, and the scale searches more than one
 * family uses (implemented in quant_common.c).
 *
 * The structs mirror ggml's block layouts byte for byte (checked by the
 * static asserts below); all multi-byte fields are little-endian, as on every
 * machine we build for. fp16 fields are raw bits (sq_fp16), converted with
 * sq_fp16_to_f32 / sq_f32_to_fp16 (IEEE round-to-nearest-even, as ggml).
 * Every block size is even and every struct except the Q8_K activation block
 * has 2-byte alignment, so a row that starts on an even address (GGUF data is
 * 32-byte aligned, mixed rows add whole blocks) can be read through them.
 *
 * Every helper reproduces ggml's arithmetic operation for operation (same
 * order, same float/int conversions), because the bytes a quantizer writes
 * depend on every rounding step. Do not "simplify" an expression without
 * re-running the golden tests.
 */
#ifndef SQ_BLOCKS_QUANT_COMMON_H
#define SQ_BLOCKS_QUANT_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sq/base.h"

/* ------------------------------------------------------------------------
 * Legacy blocks (32 values each)
 * ------------------------------------------------------------------------ */

#define SQ_QK_LEGACY 32

/* Q4_0: 32 values = d * (q - 8), q in 0..15; byte j holds value j in its low
 * nibble and value j+16 in its high nibble. */
typedef struct sq__block_q4_0 {
    sq_fp16 d;
    uint8_t qs[16];
} sq__block_q4_0;

/* Q4_1: 32 values = d * q + m, q in 0..15, nibbles as Q4_0. */
typedef struct sq__block_q4_1 {
    sq_fp16 d;
    sq_fp16 m;
    uint8_t qs[16];
} sq__block_q4_1;

/* Q5_0: 32 values = d * (q - 16), q in 0..31; low 4 bits as Q4_0, bit 4 of
 * value j is bit j of the little-endian 32-bit word qh. */
typedef struct sq__block_q5_0 {
    sq_fp16 d;
    uint8_t qh[4];
    uint8_t qs[16];
} sq__block_q5_0;

/* Q5_1: 32 values = d * q + m, q in 0..31, bits as Q5_0. */
typedef struct sq__block_q5_1 {
    sq_fp16 d;
    sq_fp16 m;
    uint8_t qh[4];
    uint8_t qs[16];
} sq__block_q5_1;

/* Q8_0: 32 values = d * q, q in -127..127 (int8); also the activation type
 * of Q4_0, Q5_0, Q8_0, IQ4_NL and MXFP4. */
typedef struct sq__block_q8_0 {
    sq_fp16 d;
    int8_t qs[32];
} sq__block_q8_0;

/* Q8_1: as Q8_0 plus s = d * sum(q) in fp16 (an activation-only type). */
typedef struct sq__block_q8_1 {
    sq_fp16 d;
    sq_fp16 s;
    int8_t qs[32];
} sq__block_q8_1;

/* ------------------------------------------------------------------------
 * K-quant super-blocks (256 values each)
 * ------------------------------------------------------------------------ */

#define SQ_QK_K 256

/* Q2_K: 16 sub-blocks of 16 values, 2 bits each, with a 4-bit scale and a
 * 4-bit min per sub-block (low / high nibble of scales[]); value =
 * d*scale*q - dmin*min. */
typedef struct sq__block_q2_K {
    uint8_t scales[SQ_QK_K / 16];
    uint8_t qs[SQ_QK_K / 4];
    sq_fp16 d;
    sq_fp16 dmin;
} sq__block_q2_K;

/* Q3_K: 16 sub-blocks of 16 values, 3 bits each (2 low bits in qs, the high
 * bit in hmask), 6-bit signed scales packed in 12 bytes; value =
 * d*(scale-32)*(q-4). */
typedef struct sq__block_q3_K {
    uint8_t hmask[SQ_QK_K / 8];
    uint8_t qs[SQ_QK_K / 4];
    uint8_t scales[12];
    sq_fp16 d;
} sq__block_q3_K;

/* Q4_K: 8 sub-blocks of 32 values, 4 bits each, 6-bit scale and min per
 * sub-block packed in 12 bytes; value = d*scale*q - dmin*min. */
typedef struct sq__block_q4_K {
    sq_fp16 d;
    sq_fp16 dmin;
    uint8_t scales[12];
    uint8_t qs[SQ_QK_K / 2];
} sq__block_q4_K;

/* Q5_K: as Q4_K, with a fifth bit per value in qh. */
typedef struct sq__block_q5_K {
    sq_fp16 d;
    sq_fp16 dmin;
    uint8_t scales[12];
    uint8_t qh[SQ_QK_K / 8];
    uint8_t qs[SQ_QK_K / 2];
} sq__block_q5_K;

/* Q6_K: 16 sub-blocks of 16 values, 6 bits each (low 4 in ql, high 2 in qh),
 * an int8 scale per sub-block; value = d*scale*(q-32). */
typedef struct sq__block_q6_K {
    uint8_t ql[SQ_QK_K / 2];
    uint8_t qh[SQ_QK_K / 4];
    int8_t scales[SQ_QK_K / 16];
    sq_fp16 d;
} sq__block_q6_K;

/* Q8_K: the activation type of the k-quants. A float scale (not fp16), 256
 * int8 values, and the sums of each group of 16 values (used by the dot
 * products of the types with mins). */
typedef struct sq__block_q8_K {
    float d;
    int8_t qs[SQ_QK_K];
    int16_t bsums[SQ_QK_K / 16];
} sq__block_q8_K;

/* ------------------------------------------------------------------------
 * I-quant, ternary and microscaling blocks
 * ------------------------------------------------------------------------ */

/* IQ4_NL: 32 values as 4-bit indices into the non-linear table of iquants.c,
 * one fp16 scale. */
typedef struct sq__block_iq4_nl {
    sq_fp16 d;
    uint8_t qs[16];
} sq__block_iq4_nl;

/* IQ4_XS: 8 sub-blocks of 32 IQ4_NL-style indices, 6-bit sub-block scales
 * (low 4 bits in scales_l, high 2 bits in scales_h), one fp16 super scale. */
typedef struct sq__block_iq4_xs {
    sq_fp16 d;
    uint16_t scales_h;
    uint8_t scales_l[SQ_QK_K / 64];
    uint8_t qs[SQ_QK_K / 2];
} sq__block_iq4_xs;

/* IQ2_XXS: 8 sub-blocks of 32; per sub-block two little-endian uint32:
 * the first holds 4 grid indices (one byte each, into the 256-point IQ2_XXS
 * codebook, 8 magnitudes per point), the second 4 x 7 sign bits (bits 7k..7k+6,
 * the eighth sign is their parity) and a 4-bit scale in bits 28-31;
 * value = d * (0.5 + scale) * 0.25 * magnitude * sign. */
typedef struct sq__block_iq2_xxs {
    sq_fp16 d;
    uint16_t qs[SQ_QK_K / 8];
} sq__block_iq2_xxs;

/* IQ2_XS: 32 groups of 8, each a uint16 of a 9-bit grid index (512-point
 * codebook) and 7 sign bits (bits 9-15); 16 4-bit scales, one per 16 values
 * (sub-block 2j in the low nibble of scales[j]). */
typedef struct sq__block_iq2_xs {
    sq_fp16 d;
    uint16_t qs[SQ_QK_K / 8];
    uint8_t scales[SQ_QK_K / 32];
} sq__block_iq2_xs;

/* IQ2_S: 10-bit grid indices (1024-point codebook): low 8 bits in qs[0..31],
 * high 2 bits of group 4j+l in bits 2l..2l+1 of qh[j]; the 8 sign bits of
 * group g in qs[32 + g] (no parity); 4-bit scales per 16 values as IQ2_XS. */
typedef struct sq__block_iq2_s {
    sq_fp16 d;
    uint8_t qs[SQ_QK_K / 4];
    uint8_t qh[SQ_QK_K / 32];
    uint8_t scales[SQ_QK_K / 32];
} sq__block_iq2_s;

/* IQ3_XXS: 64 grid indices of groups of 4 (256-point codebook) in qs[0..63],
 * then per 32-value sub-block a little-endian uint32 of 4 x 7 sign bits and a
 * 4-bit scale in bits 28-31; value = d * (0.5 + scale) * 0.5 * magnitude * sign. */
typedef struct sq__block_iq3_xxs {
    sq_fp16 d;
    uint8_t qs[3 * SQ_QK_K / 8];
} sq__block_iq3_xxs;

/* IQ3_S: 9-bit grid indices (512-point codebook): low 8 bits in qs, the ninth
 * bit of group 8j+k in bit k of qh[j]; 8 sign bits per 8 values in signs; a
 * 4-bit scale per 32 values (two per byte); value = d * (1 + 2*scale) *
 * magnitude * sign. */
typedef struct sq__block_iq3_s {
    sq_fp16 d;
    uint8_t qs[SQ_QK_K / 4];
    uint8_t qh[SQ_QK_K / 32];
    uint8_t signs[SQ_QK_K / 8];
    uint8_t scales[SQ_QK_K / 64];
} sq__block_iq3_s;

/* IQ1_S: 11-bit grid indices into the 2048-point ternary codebook: low 8 bits
 * in qs, per 32-value sub-block a uint16 qh with the high 3 bits of group l in
 * bits 3l..3l+2, a 3-bit scale in bits 12-14 and the sign of the shift
 * (+-IQ1S_DELTA) in bit 15; value = d * (2*scale + 1) * (grid + shift). */
typedef struct sq__block_iq1_s {
    sq_fp16 d;
    uint8_t qs[SQ_QK_K / 8];
    uint16_t qh[SQ_QK_K / 32];
} sq__block_iq1_s;

/* IQ1_M: as IQ1_S's indices, but qh is per 16 values: the high 3 bits of two
 * groups (bits 0-2, 4-6) and their shift signs (bits 3, 7); a 3-bit scale per
 * 16 values, four per uint16 of scales (bits 0-11), whose top nibbles hold the
 * fp16 super-block scale (bits 12-15 of the four uint16 words, low first). */
typedef struct sq__block_iq1_m {
    uint8_t qs[SQ_QK_K / 8];
    uint8_t qh[SQ_QK_K / 16];
    uint8_t scales[SQ_QK_K / 32];
} sq__block_iq1_m;

/* TQ1_0: 256 ternary values, 5 per byte in qs (240 values: bytes 0-31 hold
 * values j + 32n, bytes 32-47 values 160 + j + 16n, n = 0..4, as the base-3
 * digits of byte*3^n scaled to 0..255) and 4 per byte in qh (16 values); one
 * fp16 scale; value = (trit - 1) * d. */
typedef struct sq__block_tq1_0 {
    uint8_t qs[(SQ_QK_K - 4 * SQ_QK_K / 64) / 5];
    uint8_t qh[SQ_QK_K / 64];
    sq_fp16 d;
} sq__block_tq1_0;

/* TQ2_0: 256 ternary values (-1, 0, 1) as 2-bit codes 0..2, one fp16 scale.
 * Byte m of each 32-byte group holds values m, m+32, m+64, m+96 of its
 * 128-value half in bits 0-1, 2-3, 4-5, 6-7. */
typedef struct sq__block_tq2_0 {
    uint8_t qs[SQ_QK_K / 4];
    sq_fp16 d;
} sq__block_tq2_0;

/* MXFP4 (OCP microscaling FP4): 32 E2M1 values as 4-bit codes, one shared
 * E8M0 exponent byte. Low nibbles hold values 0-15, high nibbles 16-31. */
typedef struct sq__block_mxfp4 {
    uint8_t e;
    uint8_t qs[16];
} sq__block_mxfp4;

_Static_assert(sizeof(sq__block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(sq__block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(sq__block_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(sq__block_q5_1) == 24, "q5_1 block is 24 bytes");
_Static_assert(sizeof(sq__block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(sq__block_q8_1) == 36, "q8_1 block is 36 bytes");
_Static_assert(sizeof(sq__block_q2_K) == 84, "q2_K block is 84 bytes");
_Static_assert(sizeof(sq__block_q3_K) == 110, "q3_K block is 110 bytes");
_Static_assert(sizeof(sq__block_q4_K) == 144, "q4_K block is 144 bytes");
_Static_assert(sizeof(sq__block_q5_K) == 176, "q5_K block is 176 bytes");
_Static_assert(sizeof(sq__block_q6_K) == 210, "q6_K block is 210 bytes");
_Static_assert(sizeof(sq__block_q8_K) == 292, "q8_K block is 292 bytes");
_Static_assert(sizeof(sq__block_iq4_nl) == 18, "iq4_nl block is 18 bytes");
_Static_assert(sizeof(sq__block_iq4_xs) == 136, "iq4_xs block is 136 bytes");
_Static_assert(sizeof(sq__block_iq2_xxs) == 66, "iq2_xxs block is 66 bytes");
_Static_assert(sizeof(sq__block_iq2_xs) == 74, "iq2_xs block is 74 bytes");
_Static_assert(sizeof(sq__block_iq2_s) == 82, "iq2_s block is 82 bytes");
_Static_assert(sizeof(sq__block_iq3_xxs) == 98, "iq3_xxs block is 98 bytes");
_Static_assert(sizeof(sq__block_iq3_s) == 110, "iq3_s block is 110 bytes");
_Static_assert(sizeof(sq__block_iq1_s) == 50, "iq1_s block is 50 bytes");
_Static_assert(sizeof(sq__block_iq1_m) == 56, "iq1_m block is 56 bytes");
_Static_assert(sizeof(sq__block_tq1_0) == 54, "tq1_0 block is 54 bytes");
_Static_assert(sizeof(sq__block_tq2_0) == 66, "tq2_0 block is 66 bytes");
_Static_assert(sizeof(sq__block_mxfp4) == 17, "mxfp4 block is 17 bytes");

/* ------------------------------------------------------------------------
 * Rounding and group maxima
 * ------------------------------------------------------------------------ */

/* A group whose largest magnitude is below this is stored as all zero. */
#define SQ_GROUP_EPS 1e-15f

/* Round to the nearest integer, ties to even, the way ggml does it: adding
 * 1.5 * 2^23 pushes the fraction out of the mantissa, so the FPU's own
 * rounding does the work. Valid for |v| <= 2^22 - 1 (callers stay far inside:
 * their values are scaled to the quantization range). */
static inline int sq__nearest_int(float v)
{
    const float shifted = v + 12582912.f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* The value of largest magnitude among x[0..n), with its sign (the first one
 * on ties; NaNs are never picked); its magnitude goes to *amax. Both are 0
 * for an all-zero group. Only compares: no rounding involved. */
static inline float sq__signed_absmax(const float *x, int n, float *amax)
{
    float best = 0, best_abs = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > best_abs) {
            best_abs = ax;
            best = x[i];
        }
    }
    *amax = best_abs;
    return best;
}

/* Largest magnitude among x[0..n) (0 for an empty or all-NaN group). */
static inline float sq__absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    return amax;
}

/* ------------------------------------------------------------------------
 * 4-lane vectors (GCC / clang vector extensions; SSE2 on any x86-64)
 *
 * The *_x4 searches of kquants.c and iquants.c run one sub-block per lane
 * with exactly the float operations of their scalar search, in the same
 * order: IEEE arithmetic is per lane, so the results are bit-identical, and
 * per-lane branches become masked selects.
 * ------------------------------------------------------------------------ */

typedef float sq__v4f __attribute__((vector_size(16)));
typedef int32_t sq__v4i __attribute__((vector_size(16)));

/* Per lane: mask m set ? a : b (floats). */
static inline sq__v4f sq__v4_sel(sq__v4i m, sq__v4f a, sq__v4f b)
{
    return (sq__v4f)((m & (sq__v4i)a) | (~m & (sq__v4i)b));
}

/* Per lane: mask m set ? a : b (ints). */
static inline sq__v4i sq__v4_seli(sq__v4i m, sq__v4i a, sq__v4i b) { return (m & a) | (~m & b); }

/* sq__nearest_int per lane. */
static inline sq__v4i sq__v4_nearest_int(sq__v4f v)
{
    const sq__v4f shifted = v + 12582912.f;
    return ((sq__v4i)shifted & 0x007fffff) - 0x00400000;
}

/* fabsf per lane (clears the sign bit). */
static inline sq__v4f sq__v4_abs(sq__v4f v) { return (sq__v4f)((sq__v4i)v & 0x7fffffff); }

/* sq__signed_absmax per lane over n vectors: lane k of the result is the
 * value of largest magnitude among X[0..n)[k], with its sign (the first on
 * ties); its magnitude goes to lane k of *amax. */
static inline sq__v4f sq__v4_signed_absmax(const sq__v4f *X, int n, sq__v4f *amax)
{
    const sq__v4f zero = {0, 0, 0, 0};
    sq__v4f best = zero, best_abs = zero;
    for (int i = 0; i < n; i++) {
        const sq__v4f ax = sq__v4_abs(X[i]);
        const sq__v4i up = ax > best_abs;
        best_abs = sq__v4_sel(up, ax, best_abs);
        best = sq__v4_sel(up, X[i], best);
    }
    *amax = best_abs;
    return best;
}

/* ------------------------------------------------------------------------
 * Scale searches shared by the families (quant_common.c)
 * ------------------------------------------------------------------------ */

/* The symmetric scale search (ggml's make_qx_quants with rmse_type 1):
 * quantize n values to signed levels -nmax..nmax-1 under one scale, chosen
 * by trying 19 inverse scales around -nmax/max and keeping the best weighted
 * least-squares fit. Weights are qw[] or, when qw is NULL, x^2. Levels are
 * written to L offset by +nmax (0..2*nmax-1); returns the scale (0 for an
 * all-zero group). */
float sq__fit_symmetric(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* The asymmetric scale-and-minimum search with importance (ggml's
 * make_qkx3_quants, squared error): levels 0..nmax, value ~ scale * L + min
 * with min <= 0, scanning nstep+1 inverse scales
 * (rmin + rdelta*is + nmax) / (max - min) and solving the weighted least
 * squares for scale and min each time; keeps the fit with the smallest
 * weighted squared error. weights NULL means x^2. Writes L (n levels),
 * *neg_min = -min (>= 0); returns the scale. Laux is n bytes of scratch. */
float sq__fit_asym_weighted(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min,
                            uint8_t *Laux, float rmin, float rdelta, int nstep);

/* The positive-only scale search (ggml's make_qp_quants): x[i] ~ scale*L[i],
 * L in [0, nmax], for x >= 0 with weights qw; the scale mapping max to nmax
 * and 8 neighbours, then up to 5 passes of coordinate descent on the levels.
 * Writes L (as ggml, a negative level wraps in the uint8_t); returns the
 * least-squares scale of the final levels (0 for an all-zero group). Used by
 * the k-quants' scale fits and IQ2_XXS's starting scale. */
float sq__fit_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Sum of x[i]^2 over n values, accumulated in index order. */
float sq__sum_squares(const float *x, int64_t n);

/* The importance weights of n values: w[i] = qw[i] * sqrt(sigma2 + x[i]^2)
 * (sigma2: the caller's mean-square statistic). Returns the sum of the n
 * weights, accumulated in index order. */
float sq__imatrix_weights(int n, const float *x, const float *qw, float sigma2, float *w);

/* Tests only (not thread-safe): true makes the k-quant and IQ4 quantizers use
 * their plain scalar searches instead of the 4-lane ones; both must give the
 * same bytes. */
void sq__kquants_reference_search(bool on);
bool sq__kquants_reference_search_on(void);

#endif /* SQ_BLOCKS_QUANT_COMMON_H */
