/*
 * test_sqtensor.c — SmarterQuant tensors at the module level (spec sections
 * 4 and 6, issue 4's numerical tests) on synthetic weights of widths 512,
 * 1024, 1536, 2816, 1728 and 800, with configurations that mix types and
 * permute columns:
 *   - each stored segment is exactly the block quantizer applied to that
 *     permuted segment with its slice of the permuted importance weights;
 *   - dequantize + un-permute gives every row back within its types' bounds;
 *   - sq_weight_matmul matches a double-precision product of the ORIGINAL
 *     (unquantized, unpermuted) matrix within the bound, for n = 1 and 7, and
 *     a per-segment vec_dot reference to float rounding;
 *   - all-F32 and all-F16 tensors with a random permutation give the plain
 *     tensor's results.
 * Types whose kernels are not in this build make their cases SKIP.
 */
#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"
#include "sq/matmul.h"
#include "blocks/gemm.h"
#include "sq/sqtensor.h"
#include "sq/types.h"

/* ------------------------------------------------------------ helpers -- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) { return tu_xorshift64(&rng_state); }
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }
/* Roughly normal (sum of four uniforms), mean 0, variance 1. */
static float rng_normal(void)
{
    double s = rng_unit() + rng_unit() + rng_unit() + rng_unit() - 2.0;
    return (float)(s * 1.7320508);
}

static void random_perm(int32_t *perm, int64_t C)
{
    for (int64_t i = 0; i < C; i++) perm[i] = (int32_t)i;
    for (int64_t i = C - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next() % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Whether this build has every kernel the four types need (sq_blocks_can_dot
 * includes the activation type's quantizer). */
static bool have_kernels(const int types[4], const char **missing)
{
    for (int i = 0; i < 4; i++) {
        const int t = types[i];
        if (!sq_type_info_get(t) || !sq_blocks_can_quantize(t) || !sq_blocks_can_dequantize(t) ||
            !sq_blocks_can_dot(t)) {
            *missing = sq_type_name(t);
            return false;
        }
    }
    return true;
}

/* Relative RMS error a type may reach on roughly normal data (its step is
 * about 2^-(bits-1) of the block's range, plus room for the scale's own
 * rounding). Deliberately loose: a wrong segment or a wrong permutation
 * gives errors of order 1. */
static double type_bound(int t)
{
    switch (t) {
    case SQ_TYPE_F32: return 1e-7;
    case SQ_TYPE_F16: return 1e-3;
    case SQ_TYPE_BF16: return 8e-3;
    case SQ_TYPE_Q8_0: return 0.012;
    case SQ_TYPE_Q6_K: return 0.04;
    case SQ_TYPE_Q5_0:
    case SQ_TYPE_Q5_1:
    case SQ_TYPE_Q5_K: return 0.07;
    case SQ_TYPE_Q4_0:
    case SQ_TYPE_Q4_1:
    case SQ_TYPE_Q4_K:
    case SQ_TYPE_IQ4_NL:
    case SQ_TYPE_IQ4_XS: return 0.13;
    case SQ_TYPE_Q3_K: return 0.25;
    default: return 0.5;
    }
}

/* The relative error the activation type adds (Q8_* steps of 1/127). */
static double act_bound(int t)
{
    const int a = sq_type_info_get(t)->vec_dot_type;
    switch (a) {
    case SQ_TYPE_F32: return 1e-7;
    case SQ_TYPE_F16: return 1e-3;
    case SQ_TYPE_BF16: return 8e-3;
    default: return 0.012;
    }
}

/* One synthetic SmarterQuant tensor and everything derived from it. */
typedef struct fixture {
    int64_t R, C;
    int types[4];
    float *W;       /* R x C original */
    float *Wp;      /* R x C permuted columns */
    float *im;      /* C importance weights (original order) */
    float *imp;     /* permuted */
    int32_t *perm;  /* NULL for none */
    uint8_t *data;  /* R x row_bytes packed */
    size_t row_bytes;
    sq_weight w;
} fixture;

static void fixture_free(fixture *f)
{
    free(f->W);
    free(f->Wp);
    free(f->im);
    free(f->imp);
    free(f->perm);
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* Makes and packs a tensor; returns false (after a failed check) on error. */
static bool fixture_make(fixture *f, int64_t R, int64_t C, const int types[4], bool permute, bool imatrix)
{
    memset(f, 0, sizeof *f);
    f->R = R;
    f->C = C;
    memcpy(f->types, types, sizeof f->types);
    f->W = malloc((size_t)(R * C) * sizeof(float));
    f->Wp = malloc((size_t)(R * C) * sizeof(float));
    f->im = malloc((size_t)C * sizeof(float));
    f->imp = malloc((size_t)C * sizeof(float));
    /* columns of different scale, so that the permutation matters */
    for (int64_t c = 0; c < C; c++) f->im[c] = (float)(0.1 + 4.0 * rng_unit());
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) f->W[r * C + c] = rng_normal() * (0.5f + (float)(c % 7) * 0.25f);
    if (permute) {
        f->perm = malloc((size_t)C * sizeof(int32_t));
        random_perm(f->perm, C);
    }
    for (int64_t r = 0; r < R; r++) {
        if (f->perm) sq_perm_gather(f->perm, C, f->W + r * C, f->Wp + r * C);
        else memcpy(f->Wp + r * C, f->W + r * C, (size_t)C * sizeof(float));
    }
    if (f->perm) sq_perm_gather(f->perm, C, f->im, f->imp);
    else memcpy(f->imp, f->im, (size_t)C * sizeof(float));
    sq_error e = { 0 };
    CHECK_INT(sq_mixed_row_bytes(types, C, &f->row_bytes, &e), SQ_OK);
    f->data = malloc((size_t)R * f->row_bytes);
    for (int64_t r = 0; r < R; r++) {
        sq_status st = sq_pack_row(types, C, f->Wp + r * C, imatrix ? f->imp : NULL, f->data + r * f->row_bytes, &e);
        if (st != SQ_OK) {
            CHECK_MSG(false, "pack row %lld: %s", (long long)r, e.msg);
            return false;
        }
    }
    sq_status st = sq_weight_mixed(&f->w, f->data, types, f->perm, R, C, &e);
    CHECK_MSG(st == SQ_OK, "sq_weight_mixed: %s", e.msg);
    CHECK_INT(f->w.row_bytes, f->row_bytes);
    return st == SQ_OK;
}

/* ------------------------------------------------------ the test cases -- */

typedef struct shape_case {
    int64_t C;
    int types[4];
} shape_case;

static const shape_case cases[] = {
    { 512, { SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_Q6_K, SQ_TYPE_Q4_0 } },   /* slots 3 and 4 unused */
    { 1024, { SQ_TYPE_Q6_K, SQ_TYPE_Q4_K, SQ_TYPE_Q8_0, SQ_TYPE_Q4_0 } },
    { 1536, { SQ_TYPE_F16, SQ_TYPE_Q8_0, SQ_TYPE_Q6_K, SQ_TYPE_Q4_K } },
    { 2816, { SQ_TYPE_Q8_0, SQ_TYPE_Q6_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_0 } },
    { 1728, { SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q4_K, SQ_TYPE_Q5_0 } },  /* the spec's worked example */
    { 800, { SQ_TYPE_Q4_K, SQ_TYPE_Q8_0, SQ_TYPE_F32, SQ_TYPE_Q4_0 } },    /* last segment: 32 columns */
    { 1024, { SQ_TYPE_Q4_1, SQ_TYPE_Q5_1, SQ_TYPE_IQ4_NL, SQ_TYPE_Q8_0 } }, /* Q8_1 and Q8_0 activations */
    { 1312, { SQ_TYPE_Q8_0, SQ_TYPE_F16, SQ_TYPE_Q4_0, SQ_TYPE_Q8_0 } },    /* no K-quants; last segment 32 */
    { 2816, { SQ_TYPE_Q4_0, SQ_TYPE_Q8_0, SQ_TYPE_F32, SQ_TYPE_Q4_0 } },
    /* long last runs: the n > 1 product walks them in column panels (Q8_K 5376, F16 3072 values) */
    { 6400, { SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_Q6_K, SQ_TYPE_Q4_K } },
    { 6400, { SQ_TYPE_Q4_0, SQ_TYPE_F16, SQ_TYPE_F16, SQ_TYPE_F16 } },
    /* float segments at addresses that are not multiples of their element size (after 210-byte Q6_K) */
    { 800, { SQ_TYPE_Q6_K, SQ_TYPE_F32, SQ_TYPE_BF16, SQ_TYPE_Q4_0 } },
    /* every other type of the AMX products, runs of one and several segments */
    { 2560, { SQ_TYPE_Q2_K, SQ_TYPE_Q3_K, SQ_TYPE_IQ4_XS, SQ_TYPE_Q5_K } },
    /* a 1B-shape output row: one-segment runs, then a run across AMX panels (17 segments) */
    { 4352, { SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q6_K, SQ_TYPE_Q6_K } },
    /* Q8_0 runs beside K-quant runs, all on AMX: panels holding both (two tile configurations,
     * Q8_0 and Q8_K activations in one regrouped row), a Q8_0 run across panels */
    { 4352, { SQ_TYPE_IQ4_XS, SQ_TYPE_Q8_0, SQ_TYPE_Q5_K, SQ_TYPE_Q8_0 } },
    /* ik_llama.cpp's AMX products beside K-quants' (row-scale segments: IQ4_KS, IQ5_KS, IQ3_KS), a
     * 7-segment row-scale run across panels; then beside Q8_0 (on AMX too), and beside a type
     * without AMX product (Q4_0) */
    { 2560, { SQ_TYPE_IQ4_KS, SQ_TYPE_Q4_K, SQ_TYPE_IQ5_K, SQ_TYPE_IQ3_KS } },
    { 1280, { SQ_TYPE_IQ6_K, SQ_TYPE_IQ4_K, SQ_TYPE_IQ5_KS, SQ_TYPE_IQ3_K } },
    { 2048, { SQ_TYPE_Q8_0, SQ_TYPE_IQ4_KS, SQ_TYPE_IQ5_KS, SQ_TYPE_IQ5_KS } },
    { 1536, { SQ_TYPE_Q5_K, SQ_TYPE_IQ2_KL, SQ_TYPE_Q3_K, SQ_TYPE_IQ2_KL } },
    { 2048, { SQ_TYPE_Q4_0, SQ_TYPE_IQ4_KS, SQ_TYPE_IQ5_KS, SQ_TYPE_IQ5_KS } },
};
#define N_CASES (sizeof cases / sizeof cases[0])
#define ROWS 48

/* Each stored segment equals sq_quantize_rows on that permuted segment with
 * its importance slice, at the offsets of spec section 4. */
static void check_segments(const fixture *f, bool imatrix)
{
    const int64_t C = f->C, nseg = sq_n_segments(C);
    uint8_t buf[4096];
    int64_t bad = 0;
    for (int64_t r = 0; r < f->R; r++) {
        size_t off = 0;
        for (int64_t s = 0; s < nseg; s++) {
            const int t = f->types[s < 3 ? s : 3];
            const int64_t c0 = 256 * s, len = C - c0 < 256 ? C - c0 : 256;
            const size_t nb = sq_row_size(t, len); /* with the row scale of a row-scale type */
            sq_error e = { 0 };
            if (sq_quantize_rows(t, f->Wp + r * C + c0, buf, 1, len, imatrix ? f->imp + c0 : NULL, &e) != SQ_OK ||
                memcmp(buf, f->data + r * f->row_bytes + off, nb) != 0)
                bad++;
            off += nb;
        }
        if (r == 0) CHECK_INT(off, f->row_bytes);
    }
    CHECK_MSG(bad == 0, "C=%lld: %lld segments differ from the block quantizer", (long long)C, (long long)bad);
}

/* Dequantize + un-permute: bit-equal to dequantizing each segment and putting
 * column j at perm[j]; the relative RMS error of each segment over all rows
 * within its type's bound, and of each single row-segment within twice that
 * (a lone 32-column block fluctuates more). */
static void check_rows(const fixture *f)
{
    const int64_t C = f->C, nseg = sq_n_segments(C);
    float *row = malloc((size_t)C * sizeof(float)), *seg = malloc(256 * sizeof(float));
    float *raw = malloc(256 * sizeof(float));
    double *e2s = calloc((size_t)nseg, sizeof(double)), *x2s = calloc((size_t)nseg, sizeof(double));
    int64_t not_equal = 0, over = 0;
    double worst = 0;
    for (int64_t r = 0; r < f->R; r++) {
        sq_weight_get_row(&f->w, r, row);
        size_t off = 0;
        for (int64_t s = 0; s < nseg; s++) {
            const int t = f->types[s < 3 ? s : 3];
            const int64_t c0 = 256 * s, len = C - c0 < 256 ? C - c0 : 256;
            memcpy(raw, f->data + r * f->row_bytes + off, sq_row_size(t, len));
            sq_dequantize_row(t, raw, seg, len);
            off += sq_row_size(t, len);
            double e2 = 0, x2 = 0;
            for (int64_t i = 0; i < len; i++) {
                const int64_t orig = f->perm ? f->perm[c0 + i] : c0 + i;
                if (memcmp(&row[orig], &seg[i], sizeof(float)) != 0) not_equal++;
                const double d = (double)row[orig] - f->W[r * C + orig];
                e2 += d * d;
                x2 += (double)f->W[r * C + orig] * f->W[r * C + orig];
            }
            e2s[s] += e2;
            x2s[s] += x2;
            const double rel = sqrt(e2 / x2) / (2 * type_bound(t));
            if (rel > worst) worst = rel;
            if (rel > 1) over++;
        }
    }
    CHECK_MSG(not_equal == 0, "C=%lld: %lld values not at their un-permuted place", (long long)C,
              (long long)not_equal);
    CHECK_MSG(over == 0, "C=%lld: %lld row segments over twice their error bound (worst %.2f x)", (long long)C,
              (long long)over, worst);
    for (int64_t s = 0; s < nseg; s++) {
        const int t = f->types[s < 3 ? s : 3];
        const double rel = sqrt(e2s[s] / x2s[s]);
        CHECK_MSG(rel <= type_bound(t), "C=%lld segment %lld (%s): relative RMS error %.4f over bound %.4f",
                  (long long)C, (long long)s, sq_type_name(t), rel, type_bound(t));
    }
    free(e2s);
    free(x2s);
    free(raw);
    free(row);
    free(seg);
}

/* sq_weight_matmul against (a) the double product of the original matrix,
 * within the quantization bound, and (b) a per-segment vec_dot reference
 * built here, to float rounding. */
static void check_matmul(const fixture *f, sq_threadpool *tp, int64_t n)
{
    const int64_t R = f->R, C = f->C, nseg = sq_n_segments(C);
    float *X = malloc((size_t)(n * C) * sizeof(float)), *Y = malloc((size_t)(n * R) * sizeof(float));
    for (int64_t i = 0; i < n * C; i++) X[i] = rng_normal();
    const size_t ws = sq_weight_matmul_work_size(&f->w, n);
    CHECK(ws > 0);
    void *work = sq_aligned_alloc(ws ? ws : 1);
    sq_error e = { 0 };
    sq_status st = sq_weight_matmul(tp, &f->w, X, n, Y, work, ws, &e);
    CHECK_MSG(st == SQ_OK, "matmul C=%lld n=%lld: %s", (long long)C, (long long)n, e.msg);
    /* per-segment reference: x' quantized segment by segment, vec_dot per segment */
    float *xp = malloc((size_t)C * sizeof(float));
    uint8_t *act = malloc((size_t)C * 8 + 4096);
    float *wseg = malloc(256 * sizeof(float));
    int64_t over_q = 0, over_r = 0;
    double worst_q = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *x = X + j * C;
        if (f->perm) sq_perm_gather(f->perm, C, x, xp);
        else memcpy(xp, x, (size_t)C * sizeof(float));
        for (int64_t r = 0; r < R; r++) {
            double ref = 0, scale2 = 0, seg_sum = 0, abs_sum = 0;
            size_t off = 0;
            for (int64_t s = 0; s < nseg; s++) {
                const int t = f->types[s < 3 ? s : 3];
                const int64_t c0 = 256 * s, len = C - c0 < 256 ? C - c0 : 256;
                const double bw = type_bound(t), ba = act_bound(t);
                for (int64_t i = 0; i < len; i++) {
                    const int64_t orig = f->perm ? f->perm[c0 + i] : c0 + i;
                    const double p = (double)f->W[r * C + orig] * x[orig];
                    ref += p;
                    abs_sum += fabs(p);
                    scale2 += p * p * (bw * bw + ba * ba);
                }
                sq_quantize_act(sq_type_info_get(t)->vec_dot_type, xp + c0, act, len);
                /* kernels take aligned data; a packed segment may not be (F32 after Q6_K) */
                memcpy(wseg, f->data + r * f->row_bytes + off, sq_row_size(t, len));
                seg_sum += sq_vec_dot(t, len, wseg, act);
                off += sq_row_size(t, len);
            }
            const double y = Y[j * R + r];
            /* (a) 5 standard deviations of the quantization noise, plus float rounding */
            const double tol = 5.0 * sqrt(scale2) + 1e-5 * abs_sum;
            if (fabs(y - ref) > tol) over_q++;
            if (fabs(y - ref) / tol > worst_q) worst_q = fabs(y - ref) / tol;
            /* (b) same kernels, other summation order only */
            if (fabs(y - seg_sum) > 2e-5 * abs_sum + 1e-6) over_r++;
        }
    }
    CHECK_MSG(over_q == 0, "C=%lld n=%lld: %lld outputs off the original product (worst %.2f x tol)", (long long)C,
              (long long)n, (long long)over_q, worst_q);
    CHECK_MSG(over_r == 0, "C=%lld n=%lld: %lld outputs differ from the per-segment vec_dot sum", (long long)C,
              (long long)n, (long long)over_r);
    free(xp);
    free(act);
    free(wseg);
    sq_aligned_free(work);
    free(X);
    free(Y);
}

static void run_case(const shape_case *sc, sq_threadpool *tp)
{
    const char *missing = NULL;
    if (!have_kernels(sc->types, &missing))
        SKIP("C=%lld: no kernels for %s in this build yet", (long long)sc->C, missing);
    fixture f;
    /* importance weights only for types that can use them in this build */
    if (fixture_make(&f, ROWS, sc->C, sc->types, true, true)) {
        check_segments(&f, true);
        check_rows(&f);
        check_matmul(&f, NULL, 1);
        check_matmul(&f, tp, 1);
        check_matmul(&f, tp, 7);
        check_matmul(&f, tp, 40); /* AMX runs: two token tiles and a third one */
    }
    fixture_free(&f);
    /* without permutation and importance weights as well */
    if (fixture_make(&f, ROWS / 2, sc->C, sc->types, false, false)) {
        check_segments(&f, false);
        check_rows(&f);
        check_matmul(&f, tp, 7);
    }
    fixture_free(&f);
}

static sq_threadpool *pool;

static void test_case_0(void) { run_case(&cases[0], pool); }
static void test_case_1(void) { run_case(&cases[1], pool); }
static void test_case_2(void) { run_case(&cases[2], pool); }
static void test_case_3(void) { run_case(&cases[3], pool); }
static void test_case_4(void) { run_case(&cases[4], pool); }
static void test_case_5(void) { run_case(&cases[5], pool); }
static void test_case_6(void) { run_case(&cases[6], pool); }
static void test_case_7(void) { run_case(&cases[7], pool); }
static void test_case_8(void) { run_case(&cases[8], pool); }
static void test_case_9(void) { run_case(&cases[9], pool); }
static void test_case_10(void) { run_case(&cases[10], pool); }
static void test_case_11(void) { run_case(&cases[11], pool); }
static void test_case_12(void) { run_case(&cases[12], pool); }
static void test_case_13(void) { run_case(&cases[13], pool); }
static void test_case_14(void) { run_case(&cases[14], pool); }
static void test_case_15(void) { run_case(&cases[15], pool); }
static void test_case_16(void) { run_case(&cases[16], pool); }
static void test_case_17(void) { run_case(&cases[17], pool); }

/* A tensor whose four types are all `type`, with a random permutation, gives
 * the plain tensor's products (spec section 6) to float rounding. */
static void check_uniform_equals_plain(int type)
{
    const int types[4] = { type, type, type, type };
    const char *missing = NULL;
    if (!have_kernels(types, &missing)) SKIP("no kernels for %s in this build yet", missing);
    const int64_t R = 40, C = 1728;
    fixture f;
    if (!fixture_make(&f, R, C, types, true, false)) {
        fixture_free(&f);
        return;
    }
    /* the plain tensor: the original matrix in `type` */
    const size_t rb = sq_row_size(type, C);
    uint8_t *plain = malloc((size_t)R * rb);
    sq_error e = { 0 };
    CHECK_INT(sq_quantize_rows(type, f.W, plain, R, C, NULL, &e), SQ_OK);
    sq_weight pw;
    CHECK_INT(sq_weight_plain(&pw, plain, type, R, C, &e), SQ_OK);
    CHECK_INT(pw.row_bytes, f.row_bytes);
    for (int64_t n = 1; n <= 7; n += 6) {
        float *X = malloc((size_t)(n * C) * sizeof(float));
        float *Y1 = malloc((size_t)(n * R) * sizeof(float)), *Y2 = malloc((size_t)(n * R) * sizeof(float));
        for (int64_t i = 0; i < n * C; i++) X[i] = rng_normal();
        size_t w1 = sq_weight_matmul_work_size(&f.w, n), w2 = sq_weight_matmul_work_size(&pw, n);
        void *work = sq_aligned_alloc((w1 > w2 ? w1 : w2) + 1);
        CHECK_INT(sq_weight_matmul(pool, &f.w, X, n, Y1, work, w1, &e), SQ_OK);
        CHECK_INT(sq_weight_matmul(pool, &pw, X, n, Y2, work, w2, &e), SQ_OK);
        int64_t bad = 0;
        for (int64_t j = 0; j < n; j++)
            for (int64_t r = 0; r < R; r++) {
                double abs_sum = 0;
                for (int64_t c = 0; c < C; c++) abs_sum += fabs((double)f.W[r * C + c] * X[j * C + c]);
                const double tol = (type == SQ_TYPE_F32 ? 4e-6 : 4e-5) * abs_sum;
                if (fabs((double)Y1[j * R + r] - Y2[j * R + r]) > tol) bad++;
            }
        CHECK_MSG(bad == 0, "%s, n=%lld: %lld outputs differ from the plain tensor", sq_type_name(type),
                  (long long)n, (long long)bad);
        sq_aligned_free(work);
        free(X);
        free(Y1);
        free(Y2);
    }
    free(plain);
    fixture_free(&f);
}

static void test_all_f32_equals_plain(void) { check_uniform_equals_plain(SQ_TYPE_F32); }
static void test_all_f16_equals_plain(void) { check_uniform_equals_plain(SQ_TYPE_F16); }

/* F32 and F16 segments mixed (the per-run path, not the uniform shortcut):
 * exact against a double product of the fp16-rounded operands. */
static void test_float_mix_exact(void)
{
    const int types[4] = { SQ_TYPE_F16, SQ_TYPE_F32, SQ_TYPE_F16, SQ_TYPE_F32 };
    const char *missing = NULL;
    if (!have_kernels(types, &missing)) SKIP("no kernels for %s in this build yet", missing);
    const int64_t R = 33, C = 1100, n = 5;
    fixture f;
    if (fixture_make(&f, R, C, types, true, false)) {
        float *X = malloc((size_t)(n * C) * sizeof(float)), *Y = malloc((size_t)(n * R) * sizeof(float));
        for (int64_t i = 0; i < n * C; i++) X[i] = rng_normal();
        size_t ws = sq_weight_matmul_work_size(&f.w, n);
        void *work = sq_aligned_alloc(ws);
        sq_error e = { 0 };
        CHECK_INT(sq_weight_matmul(pool, &f.w, X, n, Y, work, ws, &e), SQ_OK);
        int64_t bad = 0;
        for (int64_t j = 0; j < n; j++)
            for (int64_t r = 0; r < R; r++) {
                double ref = 0, abs_sum = 0;
                for (int64_t c = 0; c < C; c++) {
                    const int s = (int)(c / 256);
                    const bool half = types[s < 3 ? s : 3] == SQ_TYPE_F16;
                    const int64_t orig = f.perm[c];
                    float wv = f.W[r * C + orig], xv = X[j * C + orig];
                    if (half) {
                        wv = sq_fp16_to_f32(sq_f32_to_fp16(wv));
                        xv = sq_fp16_to_f32(sq_f32_to_fp16(xv));
                    }
                    ref += (double)wv * xv;
                    abs_sum += fabs((double)wv * xv);
                }
                if (fabs(Y[j * R + r] - ref) > 4e-6 * abs_sum) bad++;
            }
        CHECK_INT(bad, 0);
        sq_aligned_free(work);
        free(X);
        free(Y);
    }
    fixture_free(&f);
}

/* Geometry, views and their errors: no kernels needed. */
static void test_views(void)
{
    sq_weight w;
    sq_error e = { 0 };
    const int ex[4] = { 14, 13, 12, 6 };
    CHECK_INT(sq_weight_mixed(&w, NULL, ex, NULL, 640, 1728, &e), SQ_OK);
    CHECK_INT(w.row_bytes, 1190);
    CHECK_INT(w.row_bytes * (size_t)w.rows, 761600);
    CHECK_INT(w.type, 6);
    CHECK(w.mixed);
    const int bad[4] = { 14, 13, 6, 12 };
    CHECK_INT(sq_weight_mixed(&w, NULL, bad, NULL, 640, 1728, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "SmarterQuant weight with 1728 columns: segment 6: type q4_K has blocks of 256 columns");
    const int act[4] = { 8, 9, 8, 8 };
    CHECK_INT(sq_weight_mixed(&w, NULL, act, NULL, 4, 512, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "not usable for weights");
    CHECK_INT(sq_weight_mixed(&w, NULL, ex, NULL, 0, 1728, &e), SQ_EINVAL);
    CHECK_INT(sq_weight_plain(&w, NULL, SQ_TYPE_Q4_K, 10, 4096, &e), SQ_OK);
    CHECK_INT(w.row_bytes, 16 * 144);
    CHECK(!w.mixed);
    CHECK_INT(sq_weight_plain(&w, NULL, SQ_TYPE_Q4_K, 10, 1000, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "1000 columns are not a multiple of the block size 256 of q4_K");
    CHECK_INT(sq_weight_plain(&w, NULL, 5, 10, 1024, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "unknown or removed type id 5");
    /* work size: gathered rows + quantized activation rows */
    const int mix[4] = { SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_F16, SQ_TYPE_Q4_0 };
    int32_t perm[800];
    random_perm(perm, 800);
    CHECK_INT(sq_weight_mixed(&w, NULL, mix, perm, 16, 800, &e), SQ_OK);
    const size_t ws = sq_weight_matmul_work_size(&w, 3);
    /* at least: 3 gathered rows + 3 x (Q8_0 256 + Q8_K 256 + F16 256 + Q8_0 32); on a CPU with AMX
     * also the Q8_0 and Q4_K runs' activations regrouped for the tiles (blocks/gemm.h; not the
     * 32-column Q4_0 run: the tiles take whole 256-value segments) */
    const size_t amx = sq__amx_capable(SQ_TYPE_Q4_K, 256, 3) ? 2 * sq__amx_act_size(3, 256) + 64 : 0;
    CHECK(sq__amx_capable(SQ_TYPE_Q4_K, 256, 3) == sq__amx_capable(SQ_TYPE_Q8_0, 256, 3));
    CHECK(!sq__amx_capable(SQ_TYPE_Q8_0, 32, 3));
    CHECK(ws >= 3 * 800 * 4 + 3 * (8 * 34 + 292 + 512 + 34) + amx);
    CHECK(ws < 3 * 800 * 4 + 3 * (8 * 34 + 292 + 512 + 34) + 4 * 64 + amx);
    float X[3 * 800] = { 0 }, Y[3 * 16];
    char small[64];
    CHECK_INT(sq_weight_matmul(NULL, &w, X, 3, Y, small, sizeof small, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "work buffer of 64 bytes");
    CHECK_INT(sq_weight_matmul(NULL, &w, X, 0, Y, small, sizeof small, &e), SQ_EINVAL);
}

static void test_permutations(void)
{
    sq_error e = { 0 };
    int32_t p[6] = { 2, 0, 5, 1, 4, 3 };
    CHECK_INT(sq_perm_validate(p, 6, 6, &e), SQ_OK);
    CHECK_INT(sq_perm_validate(p, 6, 7, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "permutation has 6 entries, but the tensor has 7 columns");
    p[4] = 0;
    CHECK_INT(sq_perm_validate(p, 6, 6, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "permutation index 4: value 0 is a duplicate (already at index 1)");
    p[4] = 6;
    CHECK_INT(sq_perm_validate(p, 6, 6, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "permutation index 4: value 6 is out of range 0..5");
    p[4] = -3;
    CHECK_INT(sq_perm_validate(p, 6, 6, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "value -3 is out of range");
    p[4] = 4;
    /* gather then scatter is the identity; x'[j] = x[perm[j]] */
    const float x[6] = { 10, 11, 12, 13, 14, 15 };
    float g[6], back[6];
    sq_perm_gather(p, 6, x, g);
    CHECK(g[0] == 12 && g[1] == 10 && g[2] == 15 && g[5] == 13);
    sq_perm_scatter(p, 6, g, back);
    CHECK(memcmp(back, x, sizeof x) == 0);
    int32_t big[5000];
    random_perm(big, 5000);
    CHECK_INT(sq_perm_validate(big, 5000, 5000, &e), SQ_OK);
}

/* sq_pack_row's errors name the segment. */
static void test_pack_errors(void)
{
    sq_error e = { 0 };
    float row[300] = { 0 };
    uint8_t out[2048];
    const int bad[4] = { SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0 };
    CHECK_INT(sq_pack_row(bad, 300, row, NULL, out, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "segment 1: type q4_K has blocks of 256 columns, which do not divide the segment length 44");
    const int needs[4] = { SQ_TYPE_IQ2_XXS, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0 };
    float r2[512] = { 0 };
    CHECK(sq_pack_row(needs, 512, r2, NULL, out, &e) != SQ_OK);
    CHECK_CONTAINS(e.msg, "segment 0 (columns 0..255, iq2_xxs)");
}

int main(void)
{
    pool = sq_threadpool_create(2);
    RUN(test_views);
    RUN(test_permutations);
    RUN(test_pack_errors);
    RUN(test_case_0);
    RUN(test_case_1);
    RUN(test_case_2);
    RUN(test_case_3);
    RUN(test_case_4);
    RUN(test_case_5);
    RUN(test_case_6);
    RUN(test_case_7);
    RUN(test_case_8);
    RUN(test_case_9);
    RUN(test_case_10);
    RUN(test_case_11);
    RUN(test_case_12);
    RUN(test_case_13);
    RUN(test_case_14);
    RUN(test_case_15);
    RUN(test_case_16);
    RUN(test_case_17);
    RUN(test_all_f32_equals_plain);
    RUN(test_all_f16_equals_plain);
    RUN(test_float_mix_exact);
    sq_threadpool_free(pool);
    return harness_finish("sqtensor");
}
