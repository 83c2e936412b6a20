/*
 * fp16.c — IEEE half and bfloat16 conversions, bit-exact with ggml's scalar
 * conversions (round to nearest, ties to even; NaN stays NaN).
 */
#include "sq/base.h"

#include <string.h>

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Half -> float: exact. Subnormal halves are normalised by the magic-number
 * trick (add the exponent bias as a float and subtract), which is exact. */
float sq_fp16_to_f32(sq_fp16 h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;

    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = bits_f32(0x7800000u); /* 2^-112 */
    const float normalized = bits_f32((two_w >> 4) + exp_offset) * exp_scale;

    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = bits_f32((two_w >> 17) | magic_mask) - magic_bias;

    const uint32_t denormalized_cutoff = 1u << 27;
    const uint32_t result = sign | (two_w < denormalized_cutoff ? f32_bits(denormalized) : f32_bits(normalized));
    return bits_f32(result);
}

/* Float -> half with round-to-nearest-even, done with two float multiplies
 * that let the FPU do the rounding (same arithmetic as F16C's vcvtps2ph). */
sq_fp16 sq_f32_to_fp16(float f)
{
    const float scale_to_inf = bits_f32(0x77800000u);  /* 2^112 */
    const float scale_to_zero = bits_f32(0x08800000u); /* 2^-110 */
    float base = (f < 0 ? -f : f) * scale_to_inf * scale_to_zero;

    const uint32_t w = f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;

    base = bits_f32((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (sq_fp16)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float sq_bf16_to_f32(sq_bf16 h)
{
    return bits_f32((uint32_t)h << 16);
}

sq_bf16 sq_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: force quiet */
        return (sq_bf16)((u >> 16) | 64);
    return (sq_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}
