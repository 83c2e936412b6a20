/*
 * ik_trellis.c — scalar reference kernels of ik_llama.cpp's trellis types
 * IQ2_KT, IQ3_KT and IQ4_KT (256-value super-blocks after an f32 row scale).
 *
 * A trellis type stores no levels: each group of 8 (IQ2_KT, IQ3_KT) or 4
 * (IQ4_KT) values is a seed, and the values are the successive outputs of a
 * pseudo-random integer recurrence started from that seed (ik's integer
 * trellis): state <- state * 0xCBAC1FED (mod 2^32), value = the sum of the
 * four bytes of state & 0x3f3f3f3f, minus 126 (so -126..126, roughly
 * Gaussian). The quantizer's job is to pick seeds whose sequences follow the
 * weights; the decoder only replays the recurrence and scales.
 *  - IQ2_KT: 8 sub-blocks of 32 with a 4-bit scale index into ik's IQ4_K
 *    level table; 32 16-bit seeds (plus 4096), one per 8 values.
 *  - IQ3_KT: 4-bit unsigned sub-block scales; the magnitude of the trellis
 *    value with a sign bit per value (qh).
 *  - IQ4_KT: per 32-value sub-block a 32-bit word (7-bit scale - 64, an
 *    offset bit, and 3 high bits of 8 seeds); seeds of 15 bits split over the
 *    word, ql (8 bits) and qh (4 bits), one per 4 values.
 * Decoding is bit-exact with ik's to_float (../shared/golden/ik): the value
 * is dl * v with dl = row scale * sub-block scale, in that order.
 * Dot products pair with Q8_K and sum integer products per sub-block.
 * Kernels never allocate; the caller owns x and y.
 */
#include <stdlib.h>

#include "ik_common.h"

/* The next value of ik's integer trellis from state *s (advanced). */
static inline int trellis_next(uint32_t *s)
{
    *s *= 0xCBAC1FEDu;
    const uint32_t b = *s & 0x3f3f3f3fu;
    return (int)(b & 0xFF) + (int)(b >> 8 & 0xFF) + (int)(b >> 16 & 0xFF) + (int)(b >> 24) - 126;
}

/* The f32 row scale in front of a trellis row. */
static inline float row_scale(const void *row)
{
    float d;
    memcpy(&d, row, sizeof d);
    return d;
}

/* Seed of group ib (0..31, 8 values each) of an IQ2_KT / IQ3_KT block. */
static inline uint32_t kt_seed(const uint8_t *ql, int ib)
{
    return (uint32_t)(ql[2 * ib] | ql[2 * ib + 1] << 8) + 4096u;
}

/* 4-bit scale of 32-value sub-block ib32 (0..7) of IQ2_KT / IQ3_KT. */
static inline int kt_scale4(const uint8_t *scales, int ib32)
{
    return scales[ib32 % 4] >> 4 * (ib32 / 4) & 0xF;
}

/* ------------------------------------------------------------------------
 * The shared loops: a sub-block decoder per type, one dequantize and one dot
 * ------------------------------------------------------------------------ */

/* Decodes sub-block ib32 (0..7) of one block: its 32 values (signs applied)
 * into v, and returns its integer sub-block scale. */
typedef int (*kt_decode_fn)(const void *block, int ib32, int v[32]);

/* Dequantizes n values of a trellis row whose blocks are block_bytes long:
 * y = (row scale * sub-block scale) * value, in that order (ik's). */
static void kt_dequantize(const void *vx, float *y, int64_t n, size_t block_bytes, kt_decode_fn decode)
{
    const float d = row_scale(vx);
    const char *x = (const char *)vx + 4;
    int v[32];
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib32 = 0; ib32 < 8; ++ib32, y += 32) {
            const float dl = d * (float)decode(x + i * block_bytes, ib32, v);
            for (int j = 0; j < 32; ++j) y[j] = dl * v[j];
        }
}

/* Dot of n values of a trellis row with Q8_K activations: integer sums per
 * sub-block times its scale, per block times the activation scale. */
static float kt_vec_dot(int64_t n, const void *vw, const void *vx, size_t block_bytes, kt_decode_fn decode)
{
    const float d = row_scale(vw);
    const char *w = (const char *)vw + 4;
    const sq__block_q8_K *a = vx;
    int v[32];
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; ++i) {
        int64_t sum = 0;
        for (int ib32 = 0; ib32 < 8; ++ib32) {
            const int8_t *q8 = a[i].qs + 32 * ib32;
            const int scale = decode(w + i * block_bytes, ib32, v);
            int s = 0;
            for (int j = 0; j < 32; ++j) s += q8[j] * v[j];
            sum += (int64_t)scale * s;
        }
        sumf += a[i].d * (float)sum;
    }
    return d * sumf;
}

/* ------------------------------------------------------------------------
 * IQ2_KT
 * ------------------------------------------------------------------------ */

/* Sub-block ib32 of an IQ2_KT block: the trellis values of its 4 seeds; the
 * scale is ik's IQ4_K level of the 4-bit index. */
static int iq2_kt_decode(const void *vb, int ib32, int v[32])
{
    const sq__block_iq2_kt *b = vb;
    for (int g = 0; g < 4; ++g) {
        uint32_t s = kt_seed(b->ql, 4 * ib32 + g);
        for (int j = 0; j < 8; ++j) v[8 * g + j] = trellis_next(&s);
    }
    return sq__iq4k_values[kt_scale4(b->scales, ib32)];
}

static void dequantize_iq2_kt(const void *vx, float *y, int64_t n)
{
    kt_dequantize(vx, y, n, sizeof(sq__block_iq2_kt), iq2_kt_decode);
}

static float vec_dot_iq2_kt(int64_t n, const void *vw, const void *vx)
{
    return kt_vec_dot(n, vw, vx, sizeof(sq__block_iq2_kt), iq2_kt_decode);
}

/* ------------------------------------------------------------------------
 * IQ3_KT
 * ------------------------------------------------------------------------ */

/* The 32 trellis magnitudes of sub-block ib32 of an IQ3_KT block. */
static void iq3_kt_magnitudes(const sq__block_iq3_kt *b, int ib32, int m[32])
{
    for (int g = 0; g < 4; ++g) {
        uint32_t s = kt_seed(b->ql, 4 * ib32 + g);
        for (int j = 0; j < 8; ++j) m[8 * g + j] = abs(trellis_next(&s));
    }
}

/* Whether value j (0..31) of sub-block ib32 is negative: bit ib32 of
 * qh[(32 * ib32 + j) % 32], i.e. of qh[j]. */
static inline bool iq3_kt_negative(const sq__block_iq3_kt *b, int ib32, int j) { return b->qh[j] >> ib32 & 1; }

/* Values are (dl * magnitude) * (+-1.f), as ik multiplies: a zero magnitude
 * with its sign bit set decodes to -0.0, so IQ3_KT keeps its own loop here
 * (the shared one would give +0.0). */
static void dequantize_iq3_kt(const void *vx, float *y, int64_t n)
{
    const float d = row_scale(vx);
    const sq__block_iq3_kt *x = (const sq__block_iq3_kt *)((const char *)vx + 4);
    int m[32];
    for (int64_t i = 0; i < n / 256; ++i)
        for (int ib32 = 0; ib32 < 8; ++ib32, y += 32) {
            const float dl = d * kt_scale4(x[i].scales, ib32);
            iq3_kt_magnitudes(&x[i], ib32, m);
            for (int j = 0; j < 32; ++j) y[j] = dl * m[j] * (iq3_kt_negative(&x[i], ib32, j) ? -1.f : 1.f);
        }
}

/* Sub-block ib32 of an IQ3_KT block as signed integers (for the dot, where
 * -0 and +0 are the same) and its unsigned 4-bit scale. */
static int iq3_kt_decode(const void *vb, int ib32, int v[32])
{
    const sq__block_iq3_kt *b = vb;
    iq3_kt_magnitudes(b, ib32, v);
    for (int j = 0; j < 32; ++j)
        if (iq3_kt_negative(b, ib32, j)) v[j] = -v[j];
    return kt_scale4(b->scales, ib32);
}

static float vec_dot_iq3_kt(int64_t n, const void *vw, const void *vx)
{
    return kt_vec_dot(n, vw, vx, sizeof(sq__block_iq3_kt), iq3_kt_decode);
}

/* ------------------------------------------------------------------------
 * IQ4_KT
 * ------------------------------------------------------------------------ */

/* Seed of group jj (0..63, 4 values each) of an IQ4_KT block: 8 bits from
 * ql, 4 from qh (low nibble for groups 0..31, high for 32..63), 3 from the
 * sub-block word, plus 4096 and 32768 when the word's offset bit is set. */
static inline uint32_t iq4_kt_seed(const sq__block_iq4_kt *b, int jj)
{
    const uint8_t *ql = (const uint8_t *)(b->qs + 8), *qh = ql + 64;
    const uint32_t word = b->qs[jj / 8];
    const uint32_t hi = (uint32_t)(qh[jj % 32] << (8 - 4 * (jj / 32))) & 0xF00;
    const uint32_t top = (word >> (8 + 3 * (jj % 8)) & 7) << 12;
    return ql[jj] + hi + top + ((word & 1) ? 4096u + 32768u : 4096u);
}

/* Sub-block ib32 of an IQ4_KT block: the trellis values of its 8 seeds; the
 * scale is the word's 7 bits minus 64. */
static int iq4_kt_decode(const void *vb, int ib32, int v[32])
{
    const sq__block_iq4_kt *b = vb;
    for (int g = 0; g < 8; ++g) {
        uint32_t s = iq4_kt_seed(b, 8 * ib32 + g);
        for (int j = 0; j < 4; ++j) v[4 * g + j] = trellis_next(&s);
    }
    return (int)((b->qs[ib32] & 0xFF) >> 1) - 64;
}

static void dequantize_iq4_kt(const void *vx, float *y, int64_t n)
{
    kt_dequantize(vx, y, n, sizeof(sq__block_iq4_kt), iq4_kt_decode);
}

static float vec_dot_iq4_kt(int64_t n, const void *vw, const void *vx)
{
    return kt_vec_dot(n, vw, vx, sizeof(sq__block_iq4_kt), iq4_kt_decode);
}

void sq__register_ik_trellis(sq__kernels table[SQ_TYPE_COUNT])
{
    table[SQ_TYPE_IQ2_KT] = (sq__kernels){.dequantize = dequantize_iq2_kt, .vec_dot = vec_dot_iq2_kt};
    table[SQ_TYPE_IQ3_KT] = (sq__kernels){.dequantize = dequantize_iq3_kt, .vec_dot = vec_dot_iq3_kt};
    table[SQ_TYPE_IQ4_KT] = (sq__kernels){.dequantize = dequantize_iq4_kt, .vec_dot = vec_dot_iq4_kt};
}
