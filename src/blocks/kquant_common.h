/*
 * src/blocks/kquant_common.h — block layouts and small helpers shared by the
 * k-quant (kquants.c) and i-quant (iquants.c) scalar kernels.
 *
 * The structs mirror ggml's on-disk block layouts byte for byte (checked by
 * the static asserts below); all multi-byte fields are little-endian, as on
 * every machine we build for. fp16 fields are kept as raw uint16_t bits and
 * converted with sq_fp16_to_f32 / sq_f32_to_fp16 (IEEE round-to-nearest-even,
 * exactly what ggml does). Every block size is even and every struct except
 * the Q8_K activation block has 2-byte alignment, so a row that starts on an
 * even address (GGUF data is 32-byte aligned, mixed rows add whole blocks)
 * can be read through these structs.
 */
#ifndef SQ_BLOCKS_KQUANT_COMMON_H
#define SQ_BLOCKS_KQUANT_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sq/base.h"

/* Elements per k-quant super-block. */
#define SQ_QK_K 256

/* Q2_K: 16 sub-blocks of 16 values, 2 bits each, with a 4-bit scale and a
 * 4-bit min per sub-block (low / high nibble of scales[]); value =
 * d*scale*q - dmin*min. */
typedef struct sq__block_q2_K {
    uint8_t scales[SQ_QK_K / 16];
    uint8_t qs[SQ_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} sq__block_q2_K;

/* Q3_K: 16 sub-blocks of 16 values, 3 bits each (2 low bits in qs, the high
 * bit in hmask), 6-bit signed scales packed in 12 bytes; value =
 * d*(scale-32)*(q-4). */
typedef struct sq__block_q3_K {
    uint8_t hmask[SQ_QK_K / 8];
    uint8_t qs[SQ_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} sq__block_q3_K;

/* Q4_K: 8 sub-blocks of 32 values, 4 bits each, 6-bit scale and min per
 * sub-block packed in 12 bytes; value = d*scale*q - dmin*min. */
typedef struct sq__block_q4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[SQ_QK_K / 2];
} sq__block_q4_K;

/* Q5_K: as Q4_K, with a fifth bit per value in qh. */
typedef struct sq__block_q5_K {
    uint16_t d;
    uint16_t dmin;
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
    uint16_t d;
} sq__block_q6_K;

/* Q8_K: the activation type of the k-quants. A float scale (not fp16), 256
 * int8 values, and the sums of each group of 16 values (used by the dot
 * products of the types with mins). */
typedef struct sq__block_q8_K {
    float d;
    int8_t qs[SQ_QK_K];
    int16_t bsums[SQ_QK_K / 16];
} sq__block_q8_K;

/* Q8_0 as read by the IQ4_NL dot product (the Q8_0 kernels live in legacy.c). */
typedef struct sq__kq_block_q8_0 {
    uint16_t d;
    int8_t qs[32];
} sq__kq_block_q8_0;

/* IQ4_NL: 32 values as 4-bit indices into the non-linear table
 * sq__kvalues_iq4nl, one fp16 scale. */
typedef struct sq__block_iq4_nl {
    uint16_t d;
    uint8_t qs[16];
} sq__block_iq4_nl;

/* IQ4_XS: 8 sub-blocks of 32 IQ4_NL-style indices, 6-bit sub-block scales
 * (low 4 bits in scales_l, high 2 bits in scales_h), one fp16 super scale. */
typedef struct sq__block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[SQ_QK_K / 64];
    uint8_t qs[SQ_QK_K / 2];
} sq__block_iq4_xs;

/* TQ2_0: 256 ternary values (-1, 0, 1) as 2-bit codes 0..2, one fp16 scale.
 * Byte m of each 32-byte group holds values m, m+32, m+64, m+96 of its
 * 128-value half in bits 0-1, 2-3, 4-5, 6-7. */
typedef struct sq__block_tq2_0 {
    uint8_t qs[SQ_QK_K / 4];
    uint16_t d;
} sq__block_tq2_0;

/* MXFP4 (OCP microscaling FP4): 32 E2M1 values as 4-bit codes, one shared
 * E8M0 exponent byte. Low nibbles hold values 0-15, high nibbles 16-31. */
typedef struct sq__block_mxfp4 {
    uint8_t e;
    uint8_t qs[16];
} sq__block_mxfp4;

_Static_assert(sizeof(sq__block_q2_K) == 84, "q2_K block is 84 bytes");
_Static_assert(sizeof(sq__block_q3_K) == 110, "q3_K block is 110 bytes");
_Static_assert(sizeof(sq__block_q4_K) == 144, "q4_K block is 144 bytes");
_Static_assert(sizeof(sq__block_q5_K) == 176, "q5_K block is 176 bytes");
_Static_assert(sizeof(sq__block_q6_K) == 210, "q6_K block is 210 bytes");
_Static_assert(sizeof(sq__block_q8_K) == 292, "q8_K block is 292 bytes");
_Static_assert(sizeof(sq__kq_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(sq__block_iq4_nl) == 18, "iq4_nl block is 18 bytes");
_Static_assert(sizeof(sq__block_iq4_xs) == 136, "iq4_xs block is 136 bytes");
_Static_assert(sizeof(sq__block_tq2_0) == 66, "tq2_0 block is 66 bytes");
_Static_assert(sizeof(sq__block_mxfp4) == 17, "mxfp4 block is 17 bytes");

/* Below this absolute maximum a group of values counts as all zero. */
#define SQ_KQ_GROUP_EPS 1e-15f

/* Round to the nearest integer, ties to even, by adding 1.5*2^23 and reading
 * the mantissa bits: the rounding ggml's k-quant searches use everywhere
 * (valid for |v| < 2^22, which the callers guarantee). */
static inline int sq__kq_round(float v)
{
    float biased = v + 12582912.f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* The 16 levels of the IQ4_NL / IQ4_XS non-linear 4-bit code (ggml's table). */
static const int8_t sq__kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                              1,    13,   25,  38,  53,  69,  89,  113};

/* Tests only (not thread-safe): true makes the k-quant and IQ4 quantizers use
 * their plain scalar searches instead of the 4-lane ones; both must give the
 * same bytes. */
void sq__kquants_reference_search(bool on);
bool sq__kquants_reference_search_on(void);

#endif /* SQ_BLOCKS_KQUANT_COMMON_H */
