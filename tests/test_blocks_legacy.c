/*
 * test_blocks_legacy.c — properties of the float (F32, F16, BF16) and legacy
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) kernels beyond the golden vectors:
 * round-trip error bounds on random rows of several lengths, with and without
 * importance weights; the imatrix search never doing worse than the plain
 * quantizer on its own objective; edge cases (all zeros, tiny, huge,
 * constant, one spike); dot products agreeing with dequantized values; the
 * activation quantizers' rounding; and sq_quantize_rows' error messages.
 * Runs for every ISA the CPU has.
 */
#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"

static const int my_types[] = {SQ_TYPE_F32,  SQ_TYPE_F16,  SQ_TYPE_BF16, SQ_TYPE_Q4_0,
                               SQ_TYPE_Q4_1, SQ_TYPE_Q5_0, SQ_TYPE_Q5_1, SQ_TYPE_Q8_0};
#define N_TYPES (int)(sizeof my_types / sizeof my_types[0])
static const int64_t lengths[] = {32, 64, 256, 1056};
#define N_LENGTHS (int)(sizeof lengths / sizeof lengths[0])
#define MAXN 1056

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) { return (uint32_t)(tu_xorshift64(&rng) >> 32); }
static float uniform(void) { return (float)(next_u32() >> 8) / 16777216.0f; } /* [0, 1) */
static float gaussian(void)
{
    float s = 0;
    for (int i = 0; i < 12; i++) s += uniform();
    return s - 6.0f;
}

/* Largest error a value of this block may have after a round trip, from the
 * format: half a step (a whole step where the format clips the extreme
 * opposite the block's max), plus the fp16 rounding of the scale and min. */
static float block_bound(int type, const float *x, int n, int j)
{
    float amax = 0, min = x[0], max = x[0];
    for (int i = 0; i < n; i++) {
        amax = fmaxf(amax, fabsf(x[i]));
        min = fminf(min, x[i]);
        max = fmaxf(max, x[i]);
    }
    const float range = max - min;
    switch (type) {
    case SQ_TYPE_F32: return 0;
    case SQ_TYPE_F16: return fabsf(x[j]) * (1.0f / 2048) + 6e-8f;
    case SQ_TYPE_BF16: return fabsf(x[j]) * (1.0f / 256) + 1e-38f;
    case SQ_TYPE_Q4_0: return amax / 8 * 1.01f + 1e-7f;
    case SQ_TYPE_Q5_0: return amax / 16 * 1.01f + 1e-7f;
    case SQ_TYPE_Q4_1: return range / 15 * 0.5f * 1.01f + amax * 2e-3f + 1e-7f;
    case SQ_TYPE_Q5_1: return range / 31 * 0.5f * 1.01f + amax * 2e-3f + 1e-7f;
    case SQ_TYPE_Q8_0: return amax / 254 * 1.01f + amax * 6e-4f + 1e-7f;
    }
    return 0;
}

/* Round trip of one row; returns the number of values outside bound_scale
 * times the format's bound, and whether every output is finite. A negative
 * bound_scale asks only for sanity (|error| <= 3 * the block's largest
 * magnitude): the imatrix fit may clip a value of low importance by more
 * than any fixed number of steps, its guarantee is the weighted error. */
static int roundtrip(int type, const float *x, int64_t n, const float *imatrix, float *y, bool *finite,
                     double bound_scale)
{
    unsigned char q[MAXN * 4];
    sq_error e = {0};
    const sq_status st = sq_quantize_rows(type, x, q, 1, n, imatrix, &e);
    CHECK_MSG(st == SQ_OK, "%s n=%lld: %s", sq_type_name(type), (long long)n, e.msg);
    sq_dequantize_row(type, q, y, n);
    int bad = 0;
    *finite = true;
    const int bs = 32; /* every legacy block; the float bounds are per value */
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) *finite = false;
        const int64_t b0 = (i / bs) * bs;
        double bound = block_bound(type, x + b0, bs, (int)(i - b0)) * bound_scale;
        if (bound_scale < 0) {
            double amax = 0;
            for (int j = 0; j < bs; j++) amax = fmax(amax, fabs((double)x[b0 + j]));
            bound = 3 * amax + 1e-7;
        }
        if (fabs((double)y[i] - x[i]) > bound) {
            if (bad < 2)
                fprintf(stderr, "%s n=%lld i=%lld: %.9g -> %.9g (bound %.3g)\n", sq_type_name(type), (long long)n,
                        (long long)i, x[i], y[i], bound);
            bad++;
        }
    }
    return bad;
}

/* The weights ggml's imatrix path optimises: qw * sqrt(sigma2 + x^2). */
static double weighted_sse(const float *x, const float *y, const float *qw, int64_t n)
{
    double s2 = 0;
    for (int64_t i = 0; i < n; i++) s2 += (double)x[i] * x[i];
    const double sigma2 = s2 / (double)n;
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        const double w = qw[i] * sqrt(sigma2 + (double)x[i] * x[i]);
        e += w * ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    }
    return e;
}

static void test_random_roundtrip(void)
{
    static float x[MAXN], y[MAXN], yw[MAXN], qw[MAXN];
    for (int it = 0; it < 6; it++) {
        for (int li = 0; li < N_LENGTHS; li++) {
            const int64_t n = lengths[li];
            for (int64_t i = 0; i < n; i++) {
                const float g = gaussian();
                x[i] = it % 3 == 0 ? g : it % 3 == 1 ? g * (i % 37 == 0 ? 40.0f : 1.0f) : uniform() * 3 - 0.5f;
                qw[i] = 0.25f + 2 * uniform();
            }
            for (int k = 0; k < N_TYPES; k++) {
                const int t = my_types[k];
                bool fin;
                CHECK_INT(roundtrip(t, x, n, NULL, y, &fin, 1.0), 0);
                CHECK(fin);
                /* with importance: sane values, and ... */
                CHECK_INT(roundtrip(t, x, n, qw, yw, &fin, -1.0), 0);
                CHECK(fin);
                /* and the search never loses on its own objective (1% slack for the fp16 scale) */
                const double e_plain = weighted_sse(x, y, qw, n), e_imat = weighted_sse(x, yw, qw, n);
                CHECK_MSG(e_imat <= e_plain * 1.01 + 1e-12, "%s n=%lld: imatrix error %.6g > plain %.6g",
                          sq_type_name(t), (long long)n, e_imat, e_plain);
            }
        }
    }
}

/* Q8_0 ignores importance weights (as ggml): the bytes are identical. */
static void test_q8_0_ignores_imatrix(void)
{
    float x[256], qw[256];
    unsigned char a[sizeof x], b[sizeof x];
    for (int i = 0; i < 256; i++) {
        x[i] = gaussian();
        qw[i] = uniform() + 0.01f;
    }
    sq_error e = {0};
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q8_0, x, a, 2, 128, NULL, &e), SQ_OK);
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q8_0, x, b, 2, 128, qw, &e), SQ_OK);
    CHECK(memcmp(a, b, sq_row_size(SQ_TYPE_Q8_0, 128) * 2) == 0);
}

static void test_edge_cases(void)
{
    static float x[256], y[256], qw[256];
    for (int i = 0; i < 256; i++) qw[i] = 1.0f + (float)(i % 5);
    for (int kind = 0; kind < 6; kind++) {
        for (int i = 0; i < 256; i++) {
            switch (kind) {
            case 0: x[i] = 0.0f; break;                                 /* all zeros */
            case 1: x[i] = 1e-7f * gaussian(); break;                   /* tiny: fp16 scales underflow */
            case 2: x[i] = 3e4f * (uniform() * 2 - 1); break;           /* huge, scale and min fit fp16 */
            case 3: x[i] = 0.375f; break;                               /* constant */
            case 4: x[i] = i == 77 ? -5.0f : 0.0f; break;               /* one spike */
            case 5: x[i] = (i & 1) ? 1e-30f : -1e-30f; break;           /* far below every scale */
            }
        }
        for (int k = 0; k < N_TYPES; k++) {
            const int t = my_types[k];
            for (int w = 0; w < 2; w++) {
                bool fin;
                const bool tiny = kind == 1 || kind == 5;
                const int bad = roundtrip(t, x, 256, w ? qw : NULL, y, &fin, tiny ? HUGE_VAL : w ? -1.0 : 1.0);
                CHECK_MSG(fin, "%s kind %d imatrix %d: non-finite output", sq_type_name(t), kind, w);
                if (tiny) {
                    /* scales and mins below fp16's normal range round to multiples of its smallest
                     * subnormal (6e-8), which can cost up to 31 such steps */
                    double worst = 0;
                    for (int i = 0; i < 256; i++) worst = fmax(worst, fabs((double)y[i] - x[i]));
                    double amax = 0;
                    for (int i = 0; i < 256; i++) amax = fmax(amax, fabs((double)x[i]));
                    CHECK_MSG(worst <= amax * 1.01 + 31 * 6e-8, "%s kind %d: error %.3g > amax %.3g", sq_type_name(t), kind,
                              worst, amax);
                } else {
                    CHECK_MSG(bad == 0, "%s kind %d imatrix %d: %d values outside the bound", sq_type_name(t), kind,
                              w, bad);
                }
                if (kind == 0) {
                    bool zero = true;
                    for (int i = 0; i < 256; i++) zero = zero && y[i] == 0.0f;
                    CHECK_MSG(zero, "%s: zeros come back as zeros", sq_type_name(t));
                }
                if (kind == 4 && t != SQ_TYPE_F32) {
                    /* the spike is the block max: symmetric types hit it exactly up to the fp16 scale */
                    CHECK_NEAR(y[77], -5.0f, 5.0 * 2e-3);
                }
            }
        }
    }
}

/* The dot kernel must agree with dequantized weights times dequantized
 * activations (same layout understanding on both sides). */
static float act_value(int at, const unsigned char *xq, int64_t i)
{
    switch (at) {
    case SQ_TYPE_F32: return ((const float *)xq)[i];
    case SQ_TYPE_F16: return sq_fp16_to_f32(((const uint16_t *)xq)[i]);
    case SQ_TYPE_BF16: return sq_bf16_to_f32(((const uint16_t *)xq)[i]);
    case SQ_TYPE_Q8_0: {
        const unsigned char *b = xq + (i / 32) * 34;
        return sq_fp16_to_f32((uint16_t)(b[0] | b[1] << 8)) * (float)(int8_t)b[2 + i % 32];
    }
    case SQ_TYPE_Q8_1: {
        const unsigned char *b = xq + (i / 32) * 36;
        return sq_fp16_to_f32((uint16_t)(b[0] | b[1] << 8)) * (float)(int8_t)b[4 + i % 32];
    }
    }
    return NAN;
}

static void test_dot_consistency(void)
{
    static float x[MAXN], a[MAXN], wd[MAXN];
    static unsigned char wq[MAXN * 4], aq[MAXN * 4];
    for (int li = 0; li < N_LENGTHS; li++) {
        const int64_t n = lengths[li];
        for (int64_t i = 0; i < n; i++) {
            x[i] = gaussian();
            a[i] = gaussian() * (i % 11 == 0 ? 10.0f : 1.0f);
        }
        for (int k = 0; k < N_TYPES; k++) {
            const int t = my_types[k];
            const int at = sq_type_info_get(t)->vec_dot_type;
            CHECK(sq_blocks_can_dot(t));
            sq_error e = {0};
            CHECK_INT(sq_quantize_rows(t, x, wq, 1, n, NULL, &e), SQ_OK);
            sq_dequantize_row(t, wq, wd, n);
            sq_quantize_act(at, a, aq, n);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                want += (double)wd[i] * act_value(at, aq, i);
                mag += fabs((double)wd[i] * act_value(at, aq, i));
            }
            const float got = sq_vec_dot(t, n, wq, aq);
            /* Q4_1/Q5_1 take the min term from the activation block's s = d * sum(levels), rounded
             * to fp16 with the unrounded d: allow 2^-10 of sum |m * a| for it */
            double mterm = 0;
            if (at == SQ_TYPE_Q8_1) {
                const size_t bb = (size_t)sq_type_info_get(t)->type_size;
                for (int64_t i = 0; i < n; i++) {
                    const unsigned char *blk = wq + (size_t)(i / 32) * bb;
                    mterm += fabs((double)sq_fp16_to_f32((uint16_t)(blk[2] | blk[3] << 8)) * a[i]);
                }
            }
            CHECK_MSG(fabs(got - want) <= 2e-6 * mag + mterm / 1024 + 1e-6,
                      "%s n=%lld: dot %.9g vs %.9g (mag %.3g)", sq_type_name(t), (long long)n, got, want, mag);
        }
    }
}

/* The activation quantizer rounds x*127/amax half to even (ggml's CPU
 * path); the Q8_0 weight quantizer rounds half away from zero (ggml's
 * reference). With amax = 127 both scales are exactly 1, so ties show. */
static void test_activation_rounding(void)
{
    float x[32] = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.49f};
    unsigned char act[36], w[34];
    sq_quantize_act(SQ_TYPE_Q8_0, x, act, 32);
    int8_t qa[32];
    memcpy(qa, act + 2, 32);
    CHECK_INT(sq_fp16_to_f32((uint16_t)(act[0] | act[1] << 8)) == 1.0f, 1);
    CHECK_INT(qa[0], 127);
    CHECK_INT(qa[1], 2);
    CHECK_INT(qa[2], 4);
    CHECK_INT(qa[3], -2);
    CHECK_INT(qa[4], -4);
    CHECK_INT(qa[5], 0);
    CHECK_INT(qa[6], 0);
    CHECK_INT(qa[7], 1);
    sq_error e = {0};
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q8_0, x, w, 1, 32, NULL, &e), SQ_OK);
    const int8_t *qw = (const int8_t *)w + 2;
    CHECK_INT(qw[1], 3);
    CHECK_INT(qw[2], 4);
    CHECK_INT(qw[3], -3);
    CHECK_INT(qw[5], 1);
    CHECK_INT(qw[6], -1);
    /* Q8_1: same levels, s = d * sum(levels) */
    sq_quantize_act(SQ_TYPE_Q8_1, x, act, 32);
    const int8_t *q1 = (const int8_t *)act + 4;
    int sum = 0;
    for (int i = 0; i < 32; i++) {
        CHECK_INT(q1[i], qa[i]);
        sum += q1[i];
    }
    CHECK_INT(sum, 127 + 2 + 4 - 2 - 4 + 1);
    CHECK(sq_fp16_to_f32((uint16_t)(act[2] | act[3] << 8)) == (float)sum);
    /* an all-zero block: scale 0, levels 0 */
    float z[32] = {0};
    sq_quantize_act(SQ_TYPE_Q8_1, z, act, 32);
    bool allzero = true;
    for (int i = 0; i < 36; i++) allzero = allzero && act[i] == 0;
    CHECK(allzero);
}

/* Non-finite inputs are outside ggml's contract, but must not crash or
 * spill: each block is quantized on its own, so a finite block next to a
 * broken one gets exactly its normal bytes. */
static void test_nonfinite_inputs(void)
{
    float x[64], qw[64];
    for (int i = 0; i < 64; i++) {
        x[i] = gaussian();
        qw[i] = 1.0f;
    }
    x[3] = NAN;
    x[9] = INFINITY;
    x[17] = -INFINITY;
    for (int k = 0; k < N_TYPES; k++) {
        const int t = my_types[k];
        unsigned char row[64 * 4], alone[32 * 4];
        float y[64];
        sq_error e = {0};
        CHECK_INT(sq_quantize_rows(t, x, row, 1, 64, NULL, &e), SQ_OK);
        CHECK_INT(sq_quantize_rows(t, x + 32, alone, 1, 32, NULL, &e), SQ_OK);
        const size_t half = sq_row_size(t, 32);
        CHECK_MSG(memcmp(row + half, alone, half) == 0, "%s: finite block unaffected by its neighbour",
                  sq_type_name(t));
        sq_dequantize_row(t, row, y, 64);
        CHECK_INT(sq_quantize_rows(t, x, row, 1, 64, qw, &e), SQ_OK); /* garbage in, but no crash */
        sq_dequantize_row(t, row, y, 64);
    }
}

static void test_quantize_rows_errors(void)
{
    float x[64] = {0};
    unsigned char q[256];
    sq_error e = {0};
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q4_0, x, q, 1, 33, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "q4_0");
    CHECK_CONTAINS(e.msg, "33");
    CHECK_CONTAINS(e.msg, "32");
    sq_error_clear(&e);
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q5_1, x, q, 1, 0, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "q5_1");
    sq_error_clear(&e);
    CHECK_INT(sq_quantize_rows(4, x, q, 1, 32, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "type id 4");
    sq_error_clear(&e);
    CHECK_INT(sq_quantize_rows(99, x, q, 1, 32, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "99");
    sq_error_clear(&e);
    CHECK_INT(sq_quantize_rows(-1, x, q, 1, 32, NULL, &e), SQ_EINVAL);
    sq_error_clear(&e);
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q8_1, x, q, 1, 32, NULL, &e), SQ_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "q8_1");
    /* NULL error pointer is allowed */
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q4_0, x, q, 1, 31, NULL, NULL), SQ_EINVAL);
    /* the good case writes exactly row_size bytes per row and nothing past them */
    memset(q, 0xAB, sizeof q);
    CHECK_INT(sq_quantize_rows(SQ_TYPE_Q4_0, x, q, 2, 32, NULL, &e), SQ_OK);
    CHECK_INT(q[36], 0xAB);
    CHECK_INT(q[35], 0x88); /* zeros sit on level 8 of both nibbles */
}

int main(void)
{
    const char *seed = getenv("SQ_TEST_SEED"); /* to explore other random data */
    if (seed && *seed) rng = strtoull(seed, NULL, 0) | 1;
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AVX512; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        fprintf(stderr, "blocks_legacy: isa %s\n", sq_isa_name((sq_isa)isa));
        RUN(test_random_roundtrip);
        RUN(test_q8_0_ignores_imatrix);
        RUN(test_edge_cases);
        RUN(test_dot_consistency);
        RUN(test_activation_rounding);
        RUN(test_quantize_rows_errors);
        RUN(test_nonfinite_inputs);
    }
    return harness_finish("blocks_legacy");
}
