/*
 * test_ik_quants.c — ik_llama.cpp's own types (Q6_0, IQ2_K..IQ6_K, IQ2_KS,
 * IQ3_KS, IQ4_KS, IQ4_KSS, IQ5_KS, IQ2_KL, the trellis types IQ2_KT,
 * IQ3_KT, IQ4_KT):
 *  - against ../shared/golden/ik (made by ik's ggml): quantize with and
 *    without importance weights byte for byte, dequantize bit for bit;
 *  - dot products against the float dot product of the dequantized row with
 *    the unquantized activations, within the activation quantizer's error
 *    (ik has no plain vec_dot golden);
 *  - on random rows of several lengths: row sizes with the per-row scale,
 *    round-trip error, degenerate rows (zeros, constants, tiny, huge),
 *    quantizing row by row equals quantizing all rows at once.
 * Every check runs on each instruction set this CPU has.
 */
#include "harness.h"
#include "sq/blocks.h"
#include "sq/sqtensor.h"
#include "blocks/gemm.h"

#define ROWS 12
#define COLS 1024
#define ACT_ROWS 3

static const char *ik_types[] = {"q6_0",   "iq2_k",  "iq3_k",  "iq4_k",   "iq5_k",  "iq6_k",  "iq2_ks", "iq3_ks",
                                 "iq4_ks", "iq4_kss", "iq5_ks", "iq2_kl", "iq2_kt", "iq3_kt", "iq4_kt"};
#define N_IK (sizeof ik_types / sizeof ik_types[0])

static float *input, *imatrix, *act;

static long first_diff(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return (long)i;
    return -1;
}

/* Bound on |dot(w, x) - dot(w, dequant(quant(x)))| for activations quantized
 * to Q8_K (blocks of 256) or Q8_0 (blocks of 32) — half a step of each
 * block's scale amax/127 per value — plus float rounding of the sums. */
static double act_error_bound(const float *w, const float *x, int64_t n, int block)
{
    double bound = 0, mag = 0;
    for (int64_t b = 0; b < n; b += block) {
        float amax = 0, sw = 0;
        for (int j = 0; j < block; j++) {
            amax = fmaxf(amax, fabsf(x[b + j]));
            sw += fabsf(w[b + j]);
            mag += fabs((double)w[b + j] * x[b + j]);
        }
        bound += (double)amax / 254.0 * sw;
    }
    return bound * 1.001 + 1e-5 * mag + 1e-30;
}

/* dot(dequantized row, x) in double. */
static double float_dot(const float *w, const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * x[i];
    return s;
}

/* Every row of q (rows of `t`) dotted with every activation row agrees with
 * the float dot of the dequantized row within the activation error. */
static void check_dots(int t, const void *q, int rows, const float *x, int nx, int64_t n)
{
    const sq_type_info *ti = sq_type_info_get(t);
    const size_t rb = sq_row_size(t, n);
    const int block = ti->vec_dot_type == SQ_TYPE_Q8_K ? 256 : 32;
    void *xq = malloc(sq_row_size(ti->vec_dot_type, n));
    float *deq = malloc(sizeof(float) * (size_t)n);
    int bad = 0;
    for (int j = 0; j < nx; j++) {
        sq_quantize_act(ti->vec_dot_type, x + j * n, xq, n);
        for (int i = 0; i < rows; i++) {
            sq_dequantize_row(t, (const char *)q + i * rb, deq, n);
            const double want = float_dot(deq, x + j * n, n), got = sq_vec_dot(t, n, (const char *)q + i * rb, xq);
            const double tol = act_error_bound(deq, x + j * n, n, block);
            if (!(fabs(got - want) <= tol) && bad++ < 3)
                fprintf(stderr, "%s dot act %d row %d: %.9g vs %.9g (tol %.3g)\n", ti->name, j, i, got, want, tol);
        }
    }
    CHECK_MSG(bad == 0, "%s dot products (%lld values): %d outside the activation error", ti->name, (long long)n, bad);
    free(xq);
    free(deq);
}

/* Quantize against the golden bytes (the quantizers do not depend on the
 * ISA: once, with quantize set), dequantize against the golden floats and
 * dot against the decoded rows (on every ISA). */
static void check_golden(const char *name, bool quantize)
{
    const int t = sq_type_from_name(name);
    CHECK_MSG(t >= 0, "type %s is in the table", name);
    if (t < 0) return;
    if (!sq_blocks_can_dequantize(t)) {
        fprintf(stderr, "SKIP %s: no kernels in this build\n", name);
        harness_skipped++;
        return;
    }
    const bool can_q = quantize && sq_blocks_can_quantize(t);
    if (quantize && !can_q) {
        fprintf(stderr, "SKIP %s quantize: no quantizer in this build (decode and dot checked)\n", name);
        harness_skipped++;
    }
    const size_t rb = sq_row_size(t, COLS), qbytes = rb * ROWS;
    char rel[256];
    for (int wi = 0; wi < 2; wi++) {
        snprintf(rel, sizeof rel, "golden/ik/%s/%s", name, wi ? "qw.bin" : "q.bin");
        unsigned char *want = harness_load_shared(rel, qbytes);
        snprintf(rel, sizeof rel, "golden/ik/%s/%s", name, wi ? "dw.f32" : "d.f32");
        float *want_d = harness_load_shared(rel, sizeof(float) * ROWS * COLS);
        unsigned char *got = malloc(qbytes);
        sq_error e = {0};
        if (want && want_d) {
            if (can_q) {
                CHECK_MSG(sq_quantize_rows(t, input, got, ROWS, COLS, wi ? imatrix : NULL, &e) == SQ_OK, "%s: %s",
                          name, e.msg);
                const long d = first_diff(got, want, qbytes);
                CHECK_MSG(d < 0, "%s %s: first differing byte %ld (row %ld)", name, wi ? "qw" : "q", d, d / (long)rb);
            }
            float *deq = malloc(sizeof(float) * COLS);
            long bad = -1;
            for (int r = 0; r < ROWS && bad < 0; r++) {
                sq_dequantize_row(t, want + r * rb, deq, COLS);
                const long k = first_diff(deq, want_d + r * COLS, sizeof(float) * COLS);
                if (k >= 0) bad = r * COLS + k / 4;
            }
            CHECK_MSG(bad < 0, "%s dequantize %s: first differing value %ld", name, wi ? "qw" : "q", bad);
            free(deq);
            check_dots(t, want, ROWS, act, ACT_ROWS, COLS);
        }
        free(got);
        free(want);
        free(want_d);
    }
}

static void test_golden(void)
{
    if (!harness_shared_file((char[1024]){0}, 1024, "golden/ik/README.md")) SKIP("../shared/golden/ik absent");
    input = harness_load_shared("golden/quant/input.f32", sizeof(float) * ROWS * COLS);
    imatrix = harness_load_shared("golden/quant/imatrix.f32", sizeof(float) * COLS);
    act = harness_load_shared("golden/quant/act.f32", sizeof(float) * ACT_ROWS * COLS);
    if (input && imatrix && act)
        for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AMX; isa++) {
            if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
            fprintf(stderr, "golden ik: isa %s\n", sq_isa_name((sq_isa)isa));
            for (size_t i = 0; i < N_IK; i++) check_golden(ik_types[i], isa == SQ_ISA_SCALAR);
        }
    free(input);
    free(imatrix);
    free(act);
}

/* xorshift uniform in [-1, 1) */
static float frand(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((*s >> 40) / (double)(1 << 23) - 1.0);
}

/* Relative RMS error each type must stay under on Gaussian-like rows
 * (generous: a broken quantizer is off by far more). */
static double max_rel_rmse(const char *name)
{
    if (strstr(name, "iq2")) return 0.45;
    if (strstr(name, "iq3")) return 0.28;
    if (strstr(name, "iq4")) return 0.15;
    if (strstr(name, "iq5") || !strcmp(name, "q6_0")) return 0.08;
    return 0.05;
}

/* Random rows of n values: the row size includes the row scale, quantizing
 * rows one by one equals quantizing them together, the round trip is within
 * the type's error, and dot products agree with the dequantized rows. */
static void check_random(int t, int64_t n, uint64_t seed)
{
    const sq_type_info *ti = sq_type_info_get(t);
    const int nrows = 3;
    const size_t rb = sq_row_size(t, n);
    CHECK_INT(rb, (size_t)ti->row_meta + (size_t)(n / ti->block_size) * (size_t)ti->type_size);
    float *x = malloc(sizeof(float) * (size_t)(n * nrows)), *w = malloc(sizeof(float) * (size_t)n);
    float *deq = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n * nrows; i++) x[i] = frand(&seed) + frand(&seed) + frand(&seed);
    for (int64_t i = 0; i < n; i++) w[i] = 0.1f + fabsf(frand(&seed)) * 10;
    unsigned char *all = malloc(rb * nrows), *one = malloc(rb);
    sq_error e = {0};
    for (int wi = 0; wi < 2; wi++) {
        CHECK_MSG(sq_quantize_rows(t, x, all, nrows, n, wi ? w : NULL, &e) == SQ_OK, "%s: %s", ti->name, e.msg);
        for (int r = 0; r < nrows; r++) {
            sq_quantize_rows(t, x + r * n, one, 1, n, wi ? w : NULL, &e);
            CHECK_MSG(memcmp(one, all + r * rb, rb) == 0, "%s n=%lld row %d: alone differs from together", ti->name,
                      (long long)n, r);
            sq_dequantize_row(t, all + r * rb, deq, n);
            double err = 0, sig = 0;
            for (int64_t i = 0; i < n; i++) {
                err += (double)(deq[i] - x[r * n + i]) * (deq[i] - x[r * n + i]);
                sig += (double)x[r * n + i] * x[r * n + i];
            }
            CHECK_MSG(sqrt(err / sig) < max_rel_rmse(ti->name), "%s n=%lld: relative rmse %.4f", ti->name,
                      (long long)n, sqrt(err / sig));
        }
        check_dots(t, all, nrows, x, nrows, n);
    }
    free(x), free(w), free(deq), free(all), free(one);
}

/* Degenerate rows quantize without NaN or infinity in the dequantized
 * values, and an all-zero row dequantizes to zeros. */
static void check_degenerate(int t)
{
    const sq_type_info *ti = sq_type_info_get(t);
    const int64_t n = 512;
    const float fills[] = {0.f, 0.375f, -2.f, 1e-30f, 3e4f};
    float *x = malloc(sizeof(float) * n), *deq = malloc(sizeof(float) * n);
    unsigned char *q = malloc(sq_row_size(t, n));
    sq_error e = {0};
    for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
        for (int64_t i = 0; i < n; i++) x[i] = fills[f];
        if (f == 2) x[7] = 5.f; /* one spike */
        CHECK_MSG(sq_quantize_rows(t, x, q, 1, n, NULL, &e) == SQ_OK, "%s: %s", ti->name, e.msg);
        sq_dequantize_row(t, q, deq, n);
        bool finite = true, zero = true;
        for (int64_t i = 0; i < n; i++) {
            finite &= isfinite(deq[i]) != 0;
            zero &= deq[i] == 0.f;
        }
        CHECK_MSG(finite, "%s: fill %g gives non-finite values", ti->name, fills[f]);
        if (f == 0) CHECK_MSG(zero, "%s: a zero row dequantizes to zeros", ti->name);
    }
    free(x), free(deq), free(q);
}

/* The SIMD vec_dot and tile kernels equal the scalar reference up to the
 * order of the float sums (1e-5 of sum |w x| on the dequantized row). */
static void check_simd(int t)
{
    const sq_type_info *ti = sq_type_info_get(t);
    const int64_t n = 1024;
    const int R = 5, NX = 6;
    uint64_t seed = 4242 + (uint64_t)t;
    float *x = malloc(sizeof(float) * n * R), *a = malloc(sizeof(float) * n * NX), *d = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n * R; i++) x[i] = frand(&seed) * (1 + (i % 97 == 0) * 8);
    for (int64_t i = 0; i < n * NX; i++) a[i] = frand(&seed);
    const size_t rb = sq_row_size(t, n), ab = sq_row_size(ti->vec_dot_type, n);
    char *q = malloc(rb * R), *xq = malloc(ab * NX);
    sq_error e = {0};
    if (sq_blocks_can_quantize(t)) sq_quantize_rows(t, x, q, R, n, NULL, &e);
    else /* random bytes with a finite fp16 scale (0.01) at the head of every block */
        for (size_t i = 0; i < rb * R; i++)
            q[i] = i % (size_t)ti->type_size < 2 ? (char)(i % 2 ? 0x21 : 0x1F) : (char)(frand(&seed) * 127);
    const sq__kernels *k = sq__kernel_table(), *sc = sq__kernel_table_scalar();
    for (int j = 0; j < NX; j++) k[ti->vec_dot_type].from_float(a + j * n, xq + j * ab, n);
    float y[5 * 6];
    sq__gemm_fn g = sq__gemm_kernel(t);
    if (g) g(n, q, rb, R, xq, ab, NX, y, R, false);
    int bad = 0;
    for (int r = 0; r < R; r++) {
        sc[t].dequantize(q + r * rb, d, n);
        for (int j = 0; j < NX; j++) {
            double mag = 0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)d[i] * a[j * n + i]);
            const float ref = sc[t].vec_dot(n, q + r * rb, xq + j * ab), v = k[t].vec_dot(n, q + r * rb, xq + j * ab);
            const double tol = 1e-5 * mag + 1e-30;
            if (!(fabs(v - ref) <= tol) || (g && !(fabs(y[j * R + r] - ref) <= tol))) {
                if (bad++ < 3)
                    fprintf(stderr, "%s %s row %d act %d: simd %.9g tile %.9g scalar %.9g\n", ti->name,
                            sq_isa_name(sq_blocks_isa()), r, j, v, g ? y[j * R + r] : 0.f, ref);
            }
        }
    }
    CHECK_MSG(bad == 0, "%s %s: SIMD kernels differ from the scalar reference", ti->name, sq_isa_name(sq_blocks_isa()));
    free(x), free(a), free(d), free(q), free(xq);
}

static void test_random(void)
{
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AMX; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        for (size_t i = 0; i < N_IK; i++) {
            const int t = sq_type_from_name(ik_types[i]);
            if (!sq_blocks_can_dot(t)) continue;
            if (isa > SQ_ISA_SCALAR) check_simd(t);
            if (!sq_blocks_can_quantize(t) || isa > SQ_ISA_SCALAR) continue; /* quantizers: one ISA */
            check_random(t, 256, 1234 + i);
            check_random(t, 768, 99 + i);
            check_degenerate(t);
        }
    }
}

/* The type table knows ik's ids, names, sizes and row scales (ik's type
 * traits), and refuses a row that is not whole blocks. */
static void test_table(void)
{
    static const struct { int id; const char *name; int bs, ts, meta; } want[] = {
        {133, "q6_0", 32, 26, 0},    {137, "iq2_k", 256, 76, 0},  {138, "iq3_k", 256, 110, 0},
        {139, "iq4_k", 256, 144, 0}, {140, "iq5_k", 256, 176, 0}, {141, "iq6_k", 256, 212, 0},
        {144, "iq4_ks", 256, 136, 4}, {145, "iq2_ks", 256, 70, 2}, {146, "iq4_kss", 256, 128, 4},
        {152, "iq5_ks", 256, 168, 4}, {153, "iq2_kt", 256, 68, 4}, {154, "iq3_kt", 256, 100, 4},
        {155, "iq4_kt", 256, 128, 4}, {156, "iq3_ks", 256, 102, 2}, {157, "iq2_kl", 256, 86, 2}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const sq_type_info *ti = sq_type_info_get(want[i].id);
        CHECK_MSG(ti && !strcmp(ti->name, want[i].name) && ti->block_size == want[i].bs &&
                      ti->type_size == want[i].ts && ti->row_meta == want[i].meta && ti->is_weight,
                  "type %d %s", want[i].id, want[i].name);
        CHECK_INT(sq_type_from_name(want[i].name), want[i].id);
        CHECK_INT(sq_row_size(want[i].id, 512), want[i].meta + 512 / want[i].bs * want[i].ts);
        CHECK_INT(sq_row_size(want[i].id, 100), 0);
    }
    CHECK(sq_type_info_get(134) == NULL);
    CHECK(sq_type_info_get(158) == NULL);
}

/* SmarterQuant rows whose segments are ik types: each segment is a row of
 * its own (with its own row scale), so a row of ik-type segments is
 * sum(sq_row_size(type, 256)); packed rows dequantize segment by segment,
 * and the mixed product (n = 1 and n = 5, with a permutation) agrees with
 * the float product of the dequantized rows. */
static void check_mixed(const int types[4], int64_t C)
{
    const int64_t R = 7, N = 5;
    size_t rb = 0;
    sq_error e = {0};
    CHECK_MSG(sq_mixed_row_bytes(types, C, &rb, &e) == SQ_OK, "%s", e.msg);
    size_t want = 0;
    for (int64_t s = 0; s < sq_n_segments(C); s++) want += sq_row_size(sq_segment_type(types, s), sq_segment_len(C, s));
    CHECK_INT(rb, want);
    uint64_t seed = 7;
    float *x = malloc(sizeof(float) * (size_t)(R * C)), *X = malloc(sizeof(float) * (size_t)(N * C));
    float *deq = malloc(sizeof(float) * (size_t)(R * C)), *Y = malloc(sizeof(float) * (size_t)(N * R));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)C);
    for (int64_t i = 0; i < R * C; i++) x[i] = frand(&seed) + frand(&seed);
    for (int64_t i = 0; i < N * C; i++) X[i] = frand(&seed);
    for (int64_t i = 0; i < C; i++) perm[i] = (int32_t)((i * 37 + 11) % C); /* C odd multiple of 256: a bijection */
    char *W = malloc(rb * (size_t)R);
    for (int64_t r = 0; r < R; r++)
        CHECK_MSG(sq_pack_row(types, C, x + r * C, NULL, W + (size_t)r * rb, &e) == SQ_OK, "pack: %s", e.msg);
    sq_weight w;
    CHECK_MSG(sq_weight_mixed(&w, W, types, perm, R, C, &e) == SQ_OK, "view: %s", e.msg);
    for (int64_t r = 0; r < R; r++) sq_weight_get_row(&w, r, deq + r * C); /* original column order */
    for (int64_t n = 1; n <= N; n += N - 1) {
        const size_t ws = sq_weight_matmul_work_size(&w, n);
        void *work = malloc(ws);
        CHECK_MSG(sq_weight_matmul(NULL, &w, X, n, Y, work, ws, &e) == SQ_OK, "matmul: %s", e.msg);
        int bad = 0;
        for (int64_t j = 0; j < n; j++)
            for (int64_t r = 0; r < R; r++) {
                /* the permuted activations are quantized in Q8_K blocks of permuted order */
                float xg[4096], dg[4096];
                sq_perm_gather(perm, C, X + j * C, xg);
                sq_perm_gather(perm, C, deq + r * C, dg);
                const double ref = float_dot(dg, xg, C), tol = act_error_bound(dg, xg, C, 256);
                if (!(fabs(Y[j * R + r] - ref) <= tol) && bad++ < 3)
                    fprintf(stderr, "mixed %s/%s n=%lld: %g vs %g\n", sq_type_name(types[0]), sq_type_name(types[3]),
                            (long long)n, Y[j * R + r], ref);
            }
        CHECK_MSG(bad == 0, "mixed product %s,%s,%s,%s n=%lld", sq_type_name(types[0]), sq_type_name(types[1]),
                  sq_type_name(types[2]), sq_type_name(types[3]), (long long)n);
        free(work);
    }
    free(x), free(X), free(deq), free(Y), free(perm), free(W);
}

static void test_mixed(void)
{
    const int64_t C = 5 * 256;
    const int sets[][4] = {
        {SQ_TYPE_IQ4_KS, SQ_TYPE_IQ3_K, SQ_TYPE_Q4_K, SQ_TYPE_IQ4_KS},  /* row-scale run of 2 segments at the end */
        {SQ_TYPE_IQ5_KS, SQ_TYPE_IQ5_KS, SQ_TYPE_IQ2_KL, SQ_TYPE_IQ2_KS}, /* a run of 2, then a run of 3 */
        {SQ_TYPE_IQ4_KS, SQ_TYPE_IQ4_KS, SQ_TYPE_IQ4_KS, SQ_TYPE_IQ4_KS}, /* uniform with row scales */
        {SQ_TYPE_IQ6_K, SQ_TYPE_IQ4_K, SQ_TYPE_IQ3_KS, SQ_TYPE_IQ4_KSS},
    };
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AMX; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) check_mixed(sets[i], C);
    }
}

int main(void)
{
    RUN(test_table);
    RUN(test_golden);
    RUN(test_random);
    RUN(test_mixed);
    return harness_finish("ik_quants");
}
