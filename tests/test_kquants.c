/*
 * test_kquants.c — properties of the k-quant, IQ4, MXFP4 and TQ2_0 kernels on random data
 * (the golden test proves bit-exactness on ggml's vectors; this one checks
 * behaviour on shapes and values those vectors do not cover):
 *   - round-trip error bounds per type on gaussian rows of 256, 512, 1024 and
 *     2816 values, with and without an importance matrix, and that the
 *     imatrix path lowers the importance-weighted error;
 *   - edge rows: all zeros (exact zeros back), tiny (1e-7) and large (3e3)
 *     values (same relative error as unit-scale data), constant rows;
 *   - vec_dot against a double-precision dot of the dequantized weights and
 *     the dequantized activations, and against the float dot;
 *   - the Q8_K activation quantizer's invariants (range, bsums, error);
 *   - subnormal rows and rows with large outliers (finite, sanitizer-clean);
 *   - IQ4_NL and MXFP4 dots against ggml's dot.f32 with ggml's Q8_0 activations;
 *   - the 4-lane quantizer searches give the scalar searches' bytes;
 *   - clean refusal of row lengths that are not a multiple of the block.
 * SQ_KQ_VERBOSE=1 prints the measured errors (used to set the bounds).
 */
#include "harness.h"
#include "sq/blocks.h"
#include "blocks/quant_common.h" /* sq__kquants_reference_search */

static int verbose;

/* ---- deterministic random numbers (xorshift64*, Box-Muller) ---- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double rnd_unit(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static float rnd_gauss(void)
{
    double u = rnd_unit(), v = rnd_unit();
    if (u < 1e-300) u = 1e-300;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

typedef struct kq_type {
    const char *name;
    double max_rel_rmse;     /* bound on sqrt(sum (x-y)^2 / sum x^2), gaussian data, no imatrix */
    double max_rel_rmse_imx; /* the same with a random importance matrix */
    int uses_imatrix;        /* 0: the format ignores importance weights (as ggml) */
    double const_tol;        /* max |y - c| / |c| for a constant row c */
} kq_type;

/* Bounds: measured values (SQ_KQ_VERBOSE=1) plus ~25% margin. */
static const kq_type types[] = {
    {"q2_K", 0.38, 0.37, 1, 0.34},  /* 2-bit grid, 4-bit scales: the coarsest */
    {"q3_K", 0.19, 0.19, 1, 0.07},   {"q4_K", 0.09, 0.095, 1, 0.07},  {"q5_K", 0.047, 0.048, 1, 0.07},
    {"q6_K", 0.023, 0.024, 1, 0.07}, {"iq4_nl", 0.095, 0.10, 1, 0.07}, {"iq4_xs", 0.10, 0.105, 1, 0.07},
    {"mxfp4", 0.15, 0.15, 0, 0.21},  /* 2.5 sits half-way between codes 2 and 3 */
    {"tq2_0", 0.97, 0.97, 0, 0.07},  /* ternary: gaussian data fits it badly */
};
#define N_TYPES (sizeof types / sizeof types[0])

static const int row_lengths[] = {256, 512, 1024, 2816};

/* Relative RMS error of y against x; relative to rms(x). */
static double rel_rmse(const float *x, const float *y, int n)
{
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

/* Importance-weighted squared error. */
static double weighted_err(const float *x, const float *y, const float *w, int n)
{
    double e = 0;
    for (int i = 0; i < n; i++) e += w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

static int all_finite(const float *y, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(y[i])) return 0;
    return 1;
}

/* Quantizes one row (imatrix may be NULL) and dequantizes it into y.
 * Returns 0 on success. */
static int round_trip(int t, const float *x, float *y, int n, const float *imx, void *q)
{
    sq_error e = {0};
    if (sq_quantize_rows(t, x, q, 1, n, imx, &e) != SQ_OK) {
        CHECK_MSG(0, "%s quantize n=%d: %s", sq_type_name(t), n, e.msg);
        return -1;
    }
    sq_dequantize_row(t, q, y, n);
    return 0;
}

static void test_round_trip_gaussian(void)
{
    const int nmax = 2816;
    float *x = malloc(sizeof(float) * nmax), *y = malloc(sizeof(float) * nmax), *yw = malloc(sizeof(float) * nmax);
    float *imx = malloc(sizeof(float) * nmax);
    void *q = malloc(sq_row_size(SQ_TYPE_F32, nmax));
    for (size_t k = 0; k < N_TYPES; k++) {
        const int t = sq_type_from_name(types[k].name);
        if (!sq_blocks_can_quantize(t)) SKIP("%s has no kernels", types[k].name);
        for (size_t r = 0; r < sizeof row_lengths / sizeof row_lengths[0]; r++) {
            const int n = row_lengths[r];
            for (int i = 0; i < n; i++) x[i] = rnd_gauss();
            /* a skewed importance matrix: a few columns matter much more */
            for (int i = 0; i < n; i++) imx[i] = (float)(0.05 + rnd_unit() * rnd_unit() * rnd_unit() * 20.0);
            if (round_trip(t, x, y, n, NULL, q) || round_trip(t, x, yw, n, imx, q)) continue;
            const double e0 = rel_rmse(x, y, n), e1 = rel_rmse(x, yw, n);
            const double w0 = weighted_err(x, y, imx, n), w1 = weighted_err(x, yw, imx, n);
            if (verbose)
                fprintf(stderr, "%-7s n=%4d rel_rmse %.4f imatrix %.4f  weighted err %.3f -> %.3f\n", types[k].name,
                        n, e0, e1, w0, w1);
            CHECK_MSG(all_finite(y, n) && all_finite(yw, n), "%s n=%d: non-finite output", types[k].name, n);
            CHECK_MSG(e0 <= types[k].max_rel_rmse, "%s n=%d: rel rmse %.4f > %.4f", types[k].name, n, e0,
                      types[k].max_rel_rmse);
            CHECK_MSG(e1 <= types[k].max_rel_rmse_imx, "%s n=%d imatrix: rel rmse %.4f > %.4f", types[k].name, n, e1,
                      types[k].max_rel_rmse_imx);
            /* the whole point of the importance matrix (or, for formats that
             * ignore it, the very same bytes) */
            if (!types[k].uses_imatrix)
                CHECK_MSG(w1 == w0, "%s n=%d: importance weights changed a format that ignores them",
                          types[k].name, n);
            else
                CHECK_MSG(w1 < w0, "%s n=%d: imatrix did not lower the weighted error (%.4f vs %.4f)", types[k].name, n,
                      w1, w0);
            /* determinism: the same input gives the same bytes */
            void *q2 = malloc(sq_row_size(t, n));
            sq_error e = {0};
            sq_quantize_rows(t, x, q2, 1, n, imx, &e);
            CHECK_MSG(memcmp(q, q2, sq_row_size(t, n)) == 0, "%s n=%d: quantization not deterministic",
                      types[k].name, n);
            free(q2);
        }
    }
    free(x);
    free(y);
    free(yw);
    free(imx);
    free(q);
}

/* All-zero rows come back as exact zeros; tiny and large rows keep the
 * relative accuracy of unit-scale rows; constant rows come back close to the
 * constant. */
static void test_edge_rows(void)
{
    const int n = 1024;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *imx = malloc(sizeof(float) * n);
    void *q = malloc(sq_row_size(SQ_TYPE_F32, n));
    for (int i = 0; i < n; i++) imx[i] = (float)(0.5 + rnd_unit());
    for (size_t k = 0; k < N_TYPES; k++) {
        const int t = sq_type_from_name(types[k].name);
        if (!sq_blocks_can_quantize(t)) SKIP("%s has no kernels", types[k].name);
        for (int w = 0; w < 2; w++) {
            const float *im = w ? imx : NULL;
            const char *tag = w ? "imatrix" : "plain";
            /* zeros */
            memset(x, 0, sizeof(float) * n);
            if (round_trip(t, x, y, n, im, q)) continue;
            int nonzero = 0;
            for (int i = 0; i < n; i++) nonzero += y[i] != 0.0f;
            CHECK_MSG(nonzero == 0, "%s %s zeros: %d non-zero values back", types[k].name, tag, nonzero);

            /* scaled gaussians: 1e-2 and 3e3 keep the relative error of unit
             * data; at 1e-7 the fp16 scales underflow (as in ggml) and the row
             * may come back as zeros, but never worse than zeros */
            static const float scales[] = {1e-2f, 3e3f, 1e-7f};
            for (int s = 0; s < 3; s++) {
                for (int i = 0; i < n; i++) x[i] = scales[s] * rnd_gauss();
                if (round_trip(t, x, y, n, im, q)) continue;
                const double e = rel_rmse(x, y, n);
                const double bound = s == 2 ? 1.0 + 1e-6 : 1.2 * (w ? types[k].max_rel_rmse_imx : types[k].max_rel_rmse);
                if (verbose) fprintf(stderr, "%-7s %s scale %g: rel rmse %.4f\n", types[k].name, tag, scales[s], e);
                CHECK_MSG(all_finite(y, n) && e <= bound, "%s %s scale %g: rel rmse %.4f > %.4f", types[k].name,
                          tag, scales[s], e, bound);
            }

            /* constant rows (positive and negative) */
            static const float consts[] = {0.375f, -2.5f};
            for (int c = 0; c < 2; c++) {
                for (int i = 0; i < n; i++) x[i] = consts[c];
                if (round_trip(t, x, y, n, im, q)) continue;
                double worst = 0;
                for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)y[i] - consts[c]));
                if (verbose) fprintf(stderr, "%-7s %s const %g: max err %.3g\n", types[k].name, tag, consts[c], worst);
                const double tol = fabs(consts[c]) * types[k].const_tol;
                CHECK_MSG(worst <= tol, "%s %s const %g: max error %.3g > %.3g", types[k].name, tag, consts[c], worst,
                          tol);
            }
        }
    }
    free(x);
    free(y);
    free(imx);
    free(q);
}

/* vec_dot against the double dot of the dequantized operands: integer inner
 * sums make the kernel exact up to float accumulation, so 1e-5 of sum|w*x|. */
/* Activations for vec_dot in type at, and their dequantized values. Q8_K
 * comes from the library's quantizer; Q8_0 (owned by the legacy kernels) is
 * built here by hand, so IQ4_NL's dot is tested on its own. Returns 0 when the
 * build cannot make activations of type at. */
static int make_act(int at, const float *a, void *aq, float *ad, int n)
{
    if (sq_blocks_can_dequantize(at) && at != SQ_TYPE_Q8_0) {
        sq_quantize_act(at, a, aq, n);
        sq_dequantize_row(at, aq, ad, n);
        return 1;
    }
    if (at != SQ_TYPE_Q8_0) return 0;
    unsigned char *p = aq;
    for (int b = 0; b < n / 32; b++, p += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(a[32 * b + j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        const sq_fp16 dh = sq_f32_to_fp16(d);
        memcpy(p, &dh, 2);
        const float dq = sq_fp16_to_f32(dh);
        for (int j = 0; j < 32; j++) {
            const int8_t v = (int8_t)roundf(a[32 * b + j] * id);
            p[2 + j] = (unsigned char)v;
            ad[32 * b + j] = dq * v;
        }
    }
    return 1;
}

static void test_vec_dot(void)
{
    const int nmax = 2816;
    float *x = malloc(sizeof(float) * nmax), *a = malloc(sizeof(float) * nmax);
    float *wd = malloc(sizeof(float) * nmax), *ad = malloc(sizeof(float) * nmax);
    void *q = malloc(sq_row_size(SQ_TYPE_F32, nmax)), *aq = malloc(sq_row_size(SQ_TYPE_F32, nmax));
    for (size_t k = 0; k < N_TYPES; k++) {
        const int t = sq_type_from_name(types[k].name);
        const int at = sq_type_info_get(t)->vec_dot_type;
        if (!sq_blocks_can_quantize(t) || (at != SQ_TYPE_Q8_0 && !sq_blocks_can_dequantize(at))) {
            fprintf(stderr, "SKIP vec_dot %s: no %s activation kernels in this build\n", types[k].name,
                    sq_type_name(at));
            harness_skipped++;
            continue;
        }
        for (size_t r = 0; r < sizeof row_lengths / sizeof row_lengths[0]; r++) {
            const int n = row_lengths[r];
            for (int rep = 0; rep < 3; rep++) {
                for (int i = 0; i < n; i++) x[i] = rnd_gauss();
                for (int i = 0; i < n; i++) a[i] = rep == 2 ? fabsf(rnd_gauss()) : rnd_gauss();
                if (round_trip(t, x, wd, n, NULL, q)) continue;
                make_act(at, a, aq, ad, n);
                double exact = 0, mag = 0, fdot = 0, fmag = 0;
                for (int i = 0; i < n; i++) {
                    exact += (double)wd[i] * ad[i];
                    mag += fabs((double)wd[i] * ad[i]);
                    fdot += (double)x[i] * a[i];
                    fmag += fabs((double)x[i] * a[i]);
                }
                const float got = sq_vec_dot(t, n, q, aq);
                CHECK_MSG(fabs(got - exact) <= 1e-5 * mag, "%s n=%d: vec_dot %.9g vs %.9g (tol %.3g)", types[k].name,
                          n, got, exact, 1e-5 * mag);
                /* and it estimates the float dot as well as the round trip allows */
                const double loose = 2.5 * types[k].max_rel_rmse * fmag + 0.02 * fmag;
                CHECK_MSG(fabs(got - fdot) <= loose, "%s n=%d: vec_dot %.6g far from float dot %.6g",
                          types[k].name, n, got, fdot);
            }
        }
    }
    free(x);
    free(a);
    free(wd);
    free(ad);
    free(q);
    free(aq);
}

/* Q8_K: values within [-127, 127], the extreme maps to -+127, bsums are the
 * sums of 16 values, and d*q is within d/2 of x. */
static void test_q8_K_act(void)
{
    if (!sq_blocks_can_dequantize(SQ_TYPE_Q8_K)) SKIP("q8_K has no kernels");
    const int n = 1024;
    float *x = malloc(sizeof(float) * n);
    unsigned char *buf = malloc(sq_row_size(SQ_TYPE_Q8_K, n));
    for (int i = 0; i < n; i++) x[i] = rnd_gauss() * (i < 256 ? 1e-6f : 1.0f);
    x[700] = 0; /* keep a zero block out of the way; block 3 is all zeros below */
    for (int i = 768; i < n; i++) x[i] = 0;
    sq_quantize_act(SQ_TYPE_Q8_K, x, buf, n);
    const size_t bs = sq_row_size(SQ_TYPE_Q8_K, 256);
    int bad_range = 0, bad_sum = 0, bad_err = 0, has_127 = 0;
    for (int b = 0; b < 4; b++) {
        const unsigned char *blk = buf + b * bs;
        float d;
        memcpy(&d, blk, 4);
        const int8_t *qs = (const int8_t *)(blk + 4);
        int16_t bsums[16];
        memcpy(bsums, blk + 4 + 256, sizeof bsums);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += qs[16 * g + l];
            bad_sum += s != bsums[g];
        }
        for (int l = 0; l < 256; l++) {
            bad_range += qs[l] == -128; /* int8: only -128 is out of range */
            has_127 += qs[l] == 127 || qs[l] == -127;
            bad_err += fabs((double)d * qs[l] - x[256 * b + l]) > 0.5001 * fabs(d) + 1e-30;
        }
        if (b == 3) CHECK_MSG(d == 0.0f, "q8_K all-zero block has d = %g", d);
    }
    CHECK_INT(bad_range, 0);
    CHECK_INT(bad_sum, 0);
    CHECK_INT(bad_err, 0);
    CHECK_MSG(has_127 >= 3, "q8_K: the extreme of each non-zero block maps to +-127 (%d found)", has_127);
    free(x);
    free(buf);
}

/* Subnormal rows (scales underflow) come back finite and tiny; rows with
 * huge outliers and exact ties between levels do not crash or trip the
 * sanitizers (make asan), and stay finite where fp16 can hold the scale. */
static void test_extreme_rows(void)
{
    const int n = 512;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *imx = malloc(sizeof(float) * n);
    void *q = malloc(sq_row_size(SQ_TYPE_F32, n));
    for (int i = 0; i < n; i++) imx[i] = 1.0f;
    for (size_t k = 0; k < N_TYPES; k++) {
        const int t = sq_type_from_name(types[k].name);
        if (!sq_blocks_can_quantize(t)) continue;
        for (int w = 0; w < 2; w++) {
            for (int i = 0; i < n; i++) x[i] = 1e-40f * rnd_gauss();
            if (round_trip(t, x, y, n, w ? imx : NULL, q)) continue;
            double m = 0;
            for (int i = 0; i < n; i++) m = fmax(m, fabs(y[i]));
            CHECK_MSG(all_finite(y, n) && m <= 1e-30, "%s subnormal row: max |y| %g", types[k].name, m);

            /* one large outlier per 32 values over small noise; levels on exact halves */
            for (int i = 0; i < n; i++) x[i] = (i % 32 == 5) ? 1000.0f : (float)((i % 7) - 3) * 0.5f;
            if (round_trip(t, x, y, n, w ? imx : NULL, q)) continue;
            CHECK_MSG(all_finite(y, n), "%s outlier row: non-finite output", types[k].name);
            double worst = 0;
            for (int i = 5; i < n; i += 32) worst = fmax(worst, fabs(y[i] - 1000.0));
            /* MXFP4 clips: its largest code is 1.5 * 2^floor(log2 max) = 768 here */
            const double tol = strcmp(types[k].name, "mxfp4") == 0 ? 240.0 : 10.0;
            if (verbose) fprintf(stderr, "%-7s outlier error %g\n", types[k].name, worst);
            CHECK_MSG(worst <= tol, "%s outlier row: outlier reproduced with error %g > %g", types[k].name, worst,
                      tol);
        }
    }
    free(x);
    free(y);
    free(imx);
    free(q);
}

/* The dots of the Q8_0-paired types in this family (IQ4_NL, MXFP4) against
 * ggml's dot.f32, fed with ggml's own Q8_0 activations (act/q8_0.bin), so the
 * check does not depend on this build's Q8_0 quantizer (legacy kernels). */
static void test_golden_q8_0_dots(void)
{
    const int rows = 12, cols = 1024, acts = 3;
    if (!harness_shared_file((char[1024]){0}, 1024, "golden/quant/act/q8_0.bin")) SKIP("../shared/golden absent");
    const size_t ars = sq_row_size(SQ_TYPE_Q8_0, cols);
    float *act = harness_load_shared("golden/quant/act.f32", sizeof(float) * acts * cols);
    unsigned char *a8 = harness_load_shared("golden/quant/act/q8_0.bin", ars * acts);
    static const char *names[] = {"iq4_nl", "mxfp4"};
    for (int k = 0; act && a8 && k < 2; k++) {
        const int t = sq_type_from_name(names[k]);
        if (!sq_blocks_can_quantize(t)) continue;
        const size_t rs = sq_row_size(t, cols);
        char rel[256];
        snprintf(rel, sizeof rel, "golden/quant/%s/q.bin", names[k]);
        unsigned char *w = harness_load_shared(rel, rs * rows);
        snprintf(rel, sizeof rel, "golden/quant/%s/d.f32", names[k]);
        float *wd = harness_load_shared(rel, sizeof(float) * rows * cols);
        snprintf(rel, sizeof rel, "golden/quant/%s/dot.f32", names[k]);
        float *want = harness_load_shared(rel, sizeof(float) * acts * rows);
        int bad = 0;
        for (int j = 0; w && wd && want && j < acts; j++) {
            for (int i = 0; i < rows; i++) {
                const float got = sq_vec_dot(t, cols, w + i * rs, a8 + j * ars);
                double mag = 0;
                for (int c = 0; c < cols; c++) mag += fabs((double)wd[i * cols + c] * act[j * cols + c]);
                bad += fabs((double)got - want[j * rows + i]) > 1e-5 * mag + 1e-30;
            }
        }
        CHECK_MSG(w && wd && want && bad == 0, "%s dots with ggml's q8_0 activations: %d off", names[k], bad);
        free(w);
        free(wd);
        free(want);
    }
    free(act);
    free(a8);
}

/* The 4-lane searches against the plain scalar ones they replace: the same
 * bytes on rows of many shapes (gaussian, one-signed, heavy-tailed, sparse,
 * outliers, few distinct values, all-zero and constant sub-blocks). */
static void test_lane_search_matches_scalar(void)
{
    const int n = 1024, rows = 96;
    float *x = malloc(sizeof(float) * n), *imx = malloc(sizeof(float) * n);
    unsigned char *a = malloc(sq_row_size(SQ_TYPE_F32, n)), *b = malloc(sq_row_size(SQ_TYPE_F32, n));
    int bad = 0, compared = 0;
    for (int r = 0; r < rows; r++) {
        const int kind = r % 8;
        for (int i = 0; i < n; i++) {
            const float g = rnd_gauss();
            switch (kind) {
            case 0: x[i] = g; break;
            case 1: x[i] = fabsf(g); break;
            case 2: x[i] = g * g * g; break;
            case 3: x[i] = rnd_unit() < 0.1 ? 50 * g : 0.01f * g; break;
            case 4: x[i] = (float)(int)(3 * g) * 0.25f; break;
            case 5: x[i] = (i % 32 < 2) ? g : 0; break;
            case 6: x[i] = (i / 16) % 3 == 0 ? 0.375f : -fabsf(g) - 1; break;
            default: x[i] = (float)rnd_unit() * 1e-3f + (i % 64 == 0 ? 5.f : 0.f); break;
            }
        }
        for (int i = 0; i < n; i++) imx[i] = (float)(rnd_unit() * rnd_unit() * 10 + (kind == 7 ? 0 : 1e-3));
        for (size_t k = 0; k < N_TYPES; k++) {
            const int t = sq_type_from_name(types[k].name);
            if (!sq_blocks_can_quantize(t)) continue;
            /* 32-value types also on 7 blocks: 4 in lanes, 3 in the scalar tail */
            const int len = (sq_type_info_get(t)->block_size == 32 && r % 2) ? 224 : n;
            for (int w = 0; w < 2; w++) {
                sq_error e = {0};
                sq__kquants_reference_search(false);
                sq_quantize_rows(t, x, a, 1, len, w ? imx : NULL, &e);
                sq__kquants_reference_search(true);
                sq_quantize_rows(t, x, b, 1, len, w ? imx : NULL, &e);
                sq__kquants_reference_search(false);
                if (memcmp(a, b, sq_row_size(t, len)) != 0 && bad++ < 5)
                    fprintf(stderr, "%s row kind %d imatrix %d: lane search differs from scalar\n", types[k].name,
                            kind, w);
                compared++;
            }
        }
    }
    CHECK_MSG(bad == 0, "lane searches differ from scalar in %d of %d rows", bad, compared);
    free(x);
    free(imx);
    free(a);
    free(b);
}

/* Row lengths that are not a multiple of the block size are refused with a
 * message naming the type. */
static void test_bad_lengths(void)
{
    float x[300] = {0};
    unsigned char out[1024];
    for (size_t k = 0; k < N_TYPES; k++) {
        const int t = sq_type_from_name(types[k].name);
        if (!sq_blocks_can_quantize(t)) continue;
        sq_error e = {0};
        const int n = sq_type_info_get(t)->block_size == 32 ? 48 : 300;
        CHECK_INT(sq_quantize_rows(t, x, out, 1, n, NULL, &e), SQ_EINVAL);
        CHECK_CONTAINS(e.msg, types[k].name);
    }
}

int main(void)
{
    const char *v = getenv("SQ_KQ_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    /* run everything on the scalar reference and on each SIMD path */
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AVX512; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        if (verbose) fprintf(stderr, "isa %s\n", sq_isa_name((sq_isa)isa));
        rng_state = 0x9E3779B97F4A7C15ull;
        RUN(test_round_trip_gaussian);
        RUN(test_edge_rows);
        RUN(test_vec_dot);
        RUN(test_q8_K_act);
        RUN(test_extreme_rows);
        RUN(test_golden_q8_0_dots);
        RUN(test_lane_search_matches_scalar);
        RUN(test_bad_lengths);
    }
    return harness_finish("kquants");
}
