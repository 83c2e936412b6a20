/*
 * src/blocks/ik_common.h — private to ik_kquants.c, ik_ksquants.c,
 * ik_trellis.c and ik_trellis_quant.c (and their SIMD twins): the block
 * layouts of ik_llama.cpp's own types, their level tables, and the helpers
 * all their quantizers share.
 *
 * ik_llama.cpp (MIT, Iwan Kawrakow) extends ggml with non-linear 2..6-bit
 * grids ("IQn_K"), variants with a per-row scale in front of the blocks
 * ("IQn_KS", "IQ2_KL", "IQn_KT"), and Q6_0. The level tables below are format
 * data: a decoder needs exactly these numbers, so they are reproduced as ik
 * defines them (ggml-common.h of ik_llama.cpp). Everything else here is our
 * own code written against ik's quantizers' arithmetic, operation for
 * operation, because their bytes depend on every rounding step.
 *
 * Row layout: a row of a type with row_meta > 0 (sq_type_info) is the row
 * scale (fp16 for IQ2_KS, IQ3_KS, IQ2_KL; f32 for IQ4_KS, IQ4_KSS, IQ5_KS and
 * the trellis types) followed by the row's blocks. A SmarterQuant segment of
 * such a type is a row of its own, with its own scale.
 */
#ifndef SQ_BLOCKS_IK_COMMON_H
#define SQ_BLOCKS_IK_COMMON_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "quant_common.h"

/* ------------------------------------------------------------------------
 * Block layouts (one 256-value super-block unless noted; little-endian)
 * ------------------------------------------------------------------------ */

/* Q6_0: 32 values = d * (q - 32), q in 0..63: low 4 bits as Q5_0's nibbles,
 * the 2 high bits of values j and j+16 in bits 0-3 (j < 8) or 4-7 (j >= 8)
 * of qh[j % 8]. */
typedef struct sq__block_q6_0 {
    sq_fp16 d;
    uint8_t qh[8];
    uint8_t qs[16];
} sq__block_q6_0;

/* IQ2_K: 16 sub-blocks of 16, 2-bit indices into iq2nl (shifted table when
 * bit ib of extra is set), 4-bit scales stored +8. */
typedef struct sq__block_iq2_k {
    sq_fp16 d;
    uint16_t extra;
    uint8_t scales[8];
    uint8_t qs[64];
} sq__block_iq2_k;

/* IQ3_K: 16 sub-blocks of 16, 3-bit indices (2 bits in qs, 1 in qh), odd
 * 4-bit scales (2l+1) with their signs in scales_h. */
typedef struct sq__block_iq3_k {
    sq_fp16 d;
    uint16_t extra;
    uint16_t scales_h;
    uint8_t scales_l[8];
    uint8_t qs[64];
    uint8_t qh[32];
} sq__block_iq3_k;

/* IQ4_K: 16 sub-blocks of 16, 4-bit indices into iq4k, 6-bit scales stored +32. */
typedef struct sq__block_iq4_k {
    sq_fp16 d;
    uint16_t extra;
    uint8_t scales_h[4];
    uint8_t scales_l[8];
    uint8_t qs[128];
} sq__block_iq4_k;

/* IQ5_K: as IQ4_K with a fifth index bit in qh. */
typedef struct sq__block_iq5_k {
    sq_fp16 d;
    uint16_t extra;
    uint8_t scales_h[4];
    uint8_t scales_l[8];
    uint8_t qs[128];
    uint8_t qh[32];
} sq__block_iq5_k;

/* IQ6_K: 16 sub-blocks of 16, 6-bit indices (4 in qs, 2 in qh), int8 scales. */
typedef struct sq__block_iq6_k {
    sq_fp16 d;
    uint16_t extra;
    int8_t scales[16];
    uint8_t qs[128];
    uint8_t qh[64];
} sq__block_iq6_k;

/* IQ2_KS (after an fp16 row scale): 8 sub-blocks of 32, 2-bit indices; extra
 * bits 0-7 pick the shifted table, bits 8-15 are the 5th scale bits. */
typedef struct sq__block_iq2_ks {
    uint16_t extra;
    uint8_t scales[4];
    uint8_t qs[64];
} sq__block_iq2_ks;

/* IQ3_KS (after an fp16 row scale): 8 sub-blocks of 32, 3-bit indices; extra
 * bits 0-7 are the 5th scale bits, bits 8-15 pick the shifted table. */
typedef struct sq__block_iq3_ks {
    uint16_t extra;
    uint8_t scales[4];
    uint8_t qs[64];
    uint8_t qh[32];
} sq__block_iq3_ks;

/* IQ4_KS (after an f32 row scale): 8 sub-blocks of 32; scale byte = 7-bit
 * odd scale (stored so that (s & 254) - 127 is it) | shifted-table bit 0. */
typedef struct sq__block_iq4_ks {
    uint8_t scales[8];
    uint8_t qs[128];
} sq__block_iq4_ks;

/* IQ4_KSS (after an f32 row scale): IQ4_KS squeezed to 4 bits per value:
 * 16-bit words holding 4 indices (15 bits, even parity) and one scale bit. */
typedef struct sq__block_iq4_kss {
    uint32_t qs[32];
} sq__block_iq4_kss;

/* IQ5_KS (after an f32 row scale): as IQ4_KS with a 5th index bit in qh. */
typedef struct sq__block_iq5_ks {
    uint8_t scales[8];
    uint8_t qs[128];
    uint8_t qh[32];
} sq__block_iq5_ks;

/* IQ2_KL (after an fp16 row scale): 8 sub-blocks of 32 as 16 pairs, each a
 * 5-bit index into a 32-entry grid of iq3nl pairs; 6-bit scales stored +32. */
typedef struct sq__block_iq2_kl {
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[64];
    uint8_t qh[16];
} sq__block_iq2_kl;

/* Trellis types (after an f32 row scale). */
typedef struct sq__block_iq2_kt {
    uint8_t scales[4];
    uint8_t ql[64];
} sq__block_iq2_kt;

typedef struct sq__block_iq3_kt {
    uint8_t scales[4];
    uint8_t ql[64];
    uint8_t qh[32];
} sq__block_iq3_kt;

typedef struct sq__block_iq4_kt {
    uint32_t qs[32];
} sq__block_iq4_kt;

_Static_assert(sizeof(sq__block_q6_0) == 26, "q6_0 block is 26 bytes");
_Static_assert(sizeof(sq__block_iq2_k) == 76, "iq2_k block is 76 bytes");
_Static_assert(sizeof(sq__block_iq3_k) == 110, "iq3_k block is 110 bytes");
_Static_assert(sizeof(sq__block_iq4_k) == 144, "iq4_k block is 144 bytes");
_Static_assert(sizeof(sq__block_iq5_k) == 176, "iq5_k block is 176 bytes");
_Static_assert(sizeof(sq__block_iq6_k) == 212, "iq6_k block is 212 bytes");
_Static_assert(sizeof(sq__block_iq2_ks) == 70, "iq2_ks block is 70 bytes");
_Static_assert(sizeof(sq__block_iq3_ks) == 102, "iq3_ks block is 102 bytes");
_Static_assert(sizeof(sq__block_iq4_ks) == 136, "iq4_ks block is 136 bytes");
_Static_assert(sizeof(sq__block_iq4_kss) == 128, "iq4_kss block is 128 bytes");
_Static_assert(sizeof(sq__block_iq5_ks) == 168, "iq5_ks block is 168 bytes");
_Static_assert(sizeof(sq__block_iq2_kl) == 86, "iq2_kl block is 86 bytes");
_Static_assert(sizeof(sq__block_iq2_kt) == 68, "iq2_kt block is 68 bytes");
_Static_assert(sizeof(sq__block_iq3_kt) == 100, "iq3_kt block is 100 bytes");
_Static_assert(sizeof(sq__block_iq4_kt) == 128, "iq4_kt block is 128 bytes");

/* ------------------------------------------------------------------------
 * Level tables (format data of ik_llama.cpp). Each table is followed by its
 * "shifted" twin, which a sub-block selects with a bit of extra / scales.
 * ------------------------------------------------------------------------ */

static const int8_t sq__iq2nl_values[8] = {-31, -13, 1, 17, -26, -8, 6, 22};

static const int8_t sq__iq3nl_values[16] = {-63, -40, -23, -10, 1, 13, 28, 47,
                                            -59, -36, -19, -6, 5, 17, 32, 51};

static const int8_t sq__iq4k_values[32] = {-127, -104, -83, -65, -49, -35, -22, -10, 1,  13, 25,
                                           38,   53,   69,  89,  113, -123, -100, -79, -61, -45, -31,
                                           -18,  -6,   5,   17,  29,  42,   57,   73,  93,  117};

static const int8_t sq__iq5nl_values[64] = {
    -126, -114, -103, -92, -83, -74, -65, -57, -50, -43, -36, -30, -24, -18, -12, -6,
    -1,   5,    11,   17,  23,  29,  36,  43,  51,  59,  68,  77,  87,  97,  109, 121,
    -124, -112, -101, -90, -81, -72, -63, -55, -48, -41, -34, -28, -22, -16, -10, -4,
    1,    7,    13,   19,  25,  31,  38,  45,  53,  61,  70,  79,  89,  99,  111, 123};

static const int8_t sq__iq6nl_values[128] = {
    -127, -121, -115, -109, -104, -98, -93, -88, -84, -79, -74, -70, -66, -62, -58, -54,
    -51,  -47,  -44,  -40,  -37,  -34, -31, -28, -25, -22, -19, -16, -13, -11, -8,  -5,
    -2,   0,    3,    6,    9,    12,  14,  17,  20,  23,  27,  30,  33,  36,  40,  44,
    47,   51,   55,   59,   63,   68,  72,  77,  82,  87,  92,  98,  103, 109, 115, 121,
    -126, -120, -114, -108, -103, -97, -92, -87, -83, -78, -73, -69, -65, -61, -57, -53,
    -50,  -46,  -43,  -39,  -36,  -33, -30, -27, -24, -21, -18, -15, -12, -10, -7,  -4,
    -1,   1,    4,    7,    10,   13,  15,  18,  21,  24,  28,  31,  34,  37,  41,  45,
    48,   52,   56,   60,   64,   69,  73,  78,  83,  88,  93,  99,  104, 110, 116, 122};

/* The 32 pairs of the IQ2_KL grid: low byte the first value, high byte the
 * second (both iq3nl levels). */
static const uint16_t sq__iq2kl_values[32] = {
    0xe9c1, 0x0dc1, 0xc1d8, 0xf6d8, 0x0dd8, 0x2fd8, 0xd8e9, 0xe9e9, 0x01e9, 0x0de9, 0x1ce9,
    0xc1f6, 0x01f6, 0x0df6, 0x2ff6, 0xe901, 0xf601, 0x0101, 0x0d01, 0x1c01, 0xd80d, 0xe90d,
    0xf60d, 0x010d, 0x0d0d, 0xc11c, 0xe91c, 0x011c, 0x1c1c, 0x2f1c, 0xe92f, 0x0d2f};

/* IQ6_K decodes an index q through a cubic, not through the table:
 * value = A + q*(B + q*(-C + q*D)) (+1 for the shifted set). */
#define SQ__IQ6K_A (-127.f)
#define SQ__IQ6K_B 6.2568f
#define SQ__IQ6K_C 0.11218f
#define SQ__IQ6K_D 0.0011972f

/* ------------------------------------------------------------------------
 * Shared helpers
 *
 * ik's quantizers are compiled with FMA contraction (GCC, -march=native):
 * wherever a product's only uses are additions it is fused into them (one
 * rounding instead of two). The goldens carry those bits, so our code makes
 * each fusion explicit with fmaf (exact by definition, on any CPU) and is
 * otherwise built without contraction. The rule, applied to ik's source:
 * s += a*b*c is fmaf(a*b, c, s); a*b + c*d is fmaf(a, b, c*d) (the first
 * product in evaluation order is fused); nearest_int(a*b), whose product
 * only feeds the rounding addition of 1.5*2^23, rounds fmaf(a, b, 1.5*2^23).
 * Two exceptions the goldens confirm, both GCC's: a loop whose body is one
 * basic block and carries a single reduction (the super-block sum of x^2)
 * is not fused (GCC avoids such FMA chains on the tuning ik's build used),
 * and in the fully unrolled 16-value weight loops 0.25*sigma2 is the fused
 * product (0.25*sigma2 + x^2 is fmaf(0.25, sigma2, x*x)).
 * ------------------------------------------------------------------------ */

/* ggml's nearest_int(a*b) as ik's build evaluates it (see above). */
static inline int sq__ik_round_prod(float a, float b)
{
    const float shifted = fmaf(a, b, 12582912.f);
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* For each level table (and its shifted twin), lo[k] is the index of the
 * highest level at or below v[0] + k (at most n - 2): the lower of the two
 * levels around any x in [v[0] + k, v[0] + k + 1), the levels being integers.
 * Built once by sq__ik_init(), which every quantizer calls first. */
extern uint8_t sq__ik_lo[8][256];
void sq__ik_init(void);

/* Row of sq__ik_lo for the table v of n levels (the tables are told apart by
 * their size and first level). */
static inline const uint8_t *sq__ik_lo_of(const int8_t *v, int n)
{
    switch (n) {
    case 8: return sq__ik_lo[v[0] == -63 ? 0 : 1];
    case 16: return sq__ik_lo[v[0] == -127 ? 2 : 3];
    case 32: return sq__ik_lo[v[0] == -126 ? 4 : 5];
    default: return sq__ik_lo[v[0] == -127 ? 6 : 7];
    }
}

/* Index of the level nearest to x in the sorted table v[0..n): between the two
 * levels around x, the lower one when x - v[i] < v[i+1] - x (computed in
 * float), else the upper one; x at or beyond an end gives that end, NaN gives
 * 0. This is what ik's per-table lookup accelerators (iq3nl_index,
 * iq4nl_index, ...) compute: they return the same index directly wherever
 * the answer cannot depend on that comparison. */
static inline int sq__ik_nearest(const int8_t *v, int n, float x)
{
    if (!(x > v[0])) return 0;
    if (!(x < v[n - 1])) return n - 1;
    int k = (int)x; /* floor(x), x being in range */
    k -= (float)k > x;
    const int lo = sq__ik_lo_of(v, n)[k - v[0]];
    return x - v[lo] < v[lo + 1] - x ? lo : lo + 1;
}

/* The 2-level nearest of IQ2_K / IQ2_KS (ik's best_index_iq2nl): the same
 * rule on a 4-level table. */
static inline int sq__ik_nearest4(const int8_t *v, float x)
{
    const int idx = x < v[1] ? 0 : x > v[2] ? 2 : 1;
    return x - v[idx] < v[idx + 1] - x ? idx : idx + 1;
}

/* The importance weights ik's quantizers read for one block of n values
 * (ik's QHelper): the imatrix slice itself, unless the block is degenerate
 * (sum qw^2, sum x^2 or sum qw|x| at most n * 1e-18), then 1e-9 for all.
 * Returns qw or buf (n floats). */
static inline const float *sq__ik_block_qw(const float *qw, const float *x, int n, float *buf)
{
    const float eps = 1e-9f, eps2 = eps * eps;
    float sumw2 = 0, sumx2 = 0, sumwx = 0;
    for (int j = 0; j < n; ++j) {
        sumw2 = fmaf(qw[j], qw[j], sumw2);
        sumx2 = fmaf(x[j], x[j], sumx2);
        sumwx = fmaf(qw[j], fabsf(x[j]), sumwx);
    }
    if (sumw2 > n * eps2 && sumx2 > n * eps2 && sumwx > n * eps2) return qw;
    for (int j = 0; j < n; ++j) buf[j] = eps;
    return buf;
}

/* Sum of x[j]^2 over a 256-value super-block, in index order. */
static inline float sq__ik_sumx2(const float *x)
{
    float s = 0;
    for (int j = 0; j < 256; ++j) s += x[j] * x[j];
    return s;
}

/* Weights of one block with an imatrix: w = qw * sqrtf(sigma2 + x^2). */
static inline void sq__ik_imatrix_weights(const float *qw, const float *x, int n, float sigma2, float *w)
{
    for (int j = 0; j < n; ++j) w[j] = qw[j] * sqrtf(fmaf(x[j], x[j], sigma2));
}

/*
 * The block scale search most ik types share (iq3_k .. iq6_k, iq3_ks,
 * iq4_ks, iq5_ks): start from d = -max/values[0] and try both signs of the
 * inverse scale (the "m" fit mirrors the block); then, for t = -ntry..ntry,
 * the inverse scales (t*step + values[0])/max on the table and
 * (t*step + shifted[0])/max on the shifted table, again with both signs; a
 * fit replaces the best when sumqx^2/sumq2 grows. Levels are nearest under
 * sq__ik_nearest.
 */
typedef struct sq__ik_search {
    const int8_t *values;  /* nlev levels, the shifted twin right after them */
    int nlev;
    int ntry, step;
    float eps;             /* a block whose largest magnitude is below eps gets 0 */
    bool guard_first;      /* the first fit is taken only when its sumq2 > 0 (iq3 types) */
} sq__ik_search;

/* Runs the search on n values with weights w; returns the scale (0 for a
 * block below eps, *skipped then true) and sets *shifted. */
float sq__ik_block_search(const sq__ik_search *s, const float *xb, const float *w, int n, bool *shifted,
                          bool *skipped);

/* The refit of iq3_k, iq5_k and iq6_k: the levels nearest to xb/d on the
 * chosen table, then d = sumqx/sumq2 when sumq2 > 0. */
float sq__ik_refit(const sq__ik_search *s, bool shifted, const float *xb, const float *w, int n, float d);

/* The IQ2_K / IQ2_KS sub-block search (ik's exhaustive one over the 4-level
 * tables): sorts the n values and tries every three cut points
 * i1 <= i2 <= i3 (i1 < max_i1, i3 >= min_i3) with the table and its shifted
 * twin, forward and reversed. Returns the scale and sets *shifted. */
float sq__ik_iq2_search(const float *xb, const float *w, int n, int max_i1, int min_i3, bool *shifted);

/* make_qx_quants as ik's build runs it (the scale quantizer of IQ2_K and
 * IQ2_KS, and Q6_0's block search): the symmetric weighted search of ggml
 * with weights qw, fused as ik computes it; a group whose largest magnitude
 * is below eps is empty (ik's copy: exactly zero; ggml's: 1e-15). L gets
 * levels + nmax. */
float sq__ik_make_qx(int n, int nmax, const float *x, int8_t *L, const float *qw, float eps);

/* Registration of the ik families (their scalar kernels). */
void sq__register_ik_kquants(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_ik_ksquants(sq__kernels table[SQ_TYPE_COUNT], sq__quantize_ws ws[SQ_TYPE_COUNT]);
void sq__register_ik_trellis(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_ik_trellis_quant(sq__quantize_ws ws[SQ_TYPE_COUNT]);

#endif /* SQ_BLOCKS_IK_COMMON_H */
