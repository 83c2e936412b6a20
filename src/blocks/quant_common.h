/*
 * src/blocks/quant_common.h — private helpers shared by the quantizer
 * families (legacy.c, kquants.c, iquants.c): the legacy block layouts,
 * ggml's round-to-nearest trick, and the scale searches that more than one
 * family uses.
 *
 * Every helper here reproduces ggml's arithmetic operation for operation
 * (same order, same float/int conversions), because the bytes a quantizer
 * writes depend on every rounding step. Do not "simplify" an expression
 * without re-running the golden tests.
 */
#ifndef SQ_BLOCKS_QUANT_COMMON_H
#define SQ_BLOCKS_QUANT_COMMON_H

#include <stdint.h>
#include <string.h>

#include "sq/base.h"

/* ---- legacy block layouts (ggml-common.h), little-endian, packed by
 * construction (every member is 1 or 2 bytes wide). ---- */
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

/* Q8_0: 32 values = d * q, q in -127..127 (int8). */
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

_Static_assert(sizeof(sq__block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(sq__block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(sq__block_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(sq__block_q5_1) == 24, "q5_1 block is 24 bytes");
_Static_assert(sizeof(sq__block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(sq__block_q8_1) == 36, "q8_1 block is 36 bytes");

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

/* The symmetric scale search (ggml's make_qx_quants): quantize n values to
 * signed levels -nmax..nmax-1 under one scale, chosen by trying 19 scales
 * around -nmax/max and keeping the one with the best weighted least-squares
 * fit. Levels are written to L offset by +nmax (0..2*nmax-1); returns the
 * scale. rmse_type selects the weights when qw is NULL: 0 plain rounding (no
 * search), 1 x^2, 2 ones, 3 |x|, other sqrt|x|; a negative rmse_type returns
 * after the first fit. qw (n weights) overrides rmse_type's weights. */
float sq__make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);

/* The asymmetric scale-and-minimum search (ggml's make_qkx3_quants): levels
 * 0..nmax, value ~ scale * L + min with min <= 0, scanning nstep+1 scales
 * (rmin + rdelta*is + nmax) / (max - min) and solving the weighted least
 * squares for scale and min each time; keeps the fit with the smallest
 * weighted error (absolute if use_mad, squared otherwise). weights NULL means
 * x^2. Writes L (n levels), *the_min = -min (>= 0); returns the scale. Laux is
 * n bytes of scratch. */
float sq__make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad);

#endif
