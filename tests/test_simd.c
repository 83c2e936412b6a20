/*
 * test_simd.c — the SIMD kernels (AVX2, AVX-512) against ggml's golden vectors
 * and against the scalar reference, on random shapes and data.
 *
 * For every ISA this CPU has beyond scalar:
 *  - golden: dequantize reproduces d.f32 / dw.f32 bit for bit, the activation
 *    quantizers reproduce act/q8_*.bin byte for byte, vec_dot matches dot.f32
 *    within 1e-5 of sum |w·x| (the same contract as test_blocks_golden.c, but
 *    run on the SIMD table directly so it holds even before the scalar
 *    quantizers exist);
 *  - properties: weight rows of 32/256, 512, 1024, 2816 and 4096 values made of
 *    random blocks of ggml's golden rows (and, where the scalar quantizer
 *    exists, of freshly quantized random data), random activations of several
 *    scales; activation quantizers byte-equal to scalar, dequantize bit-equal to
 *    scalar, vec_dot and the tile kernel within 1e-5 of sum |w·x| of a
 *    double-precision reference on the dequantized values.
 */
#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"
#include "blocks/gemm.h"

#define GROWS 12
#define GCOLS 1024
#define GACT 3

static const char *types[] = {"f16",   "bf16",    "q4_0",   "q4_1",    "q5_0",  "q5_1",  "q8_0",
                              "q2_K",  "q3_K",    "q4_K",   "q5_K",    "q6_K",  "iq4_nl", "iq4_xs",
                              "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m",
                              "tq1_0", "tq2_0"};
#define N_TYPES (sizeof types / sizeof types[0])

static float *g_act;
static float gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) s += tu_rndf();
    return s;
}

/* The exact value ggml's dot computes, in double: Σ w·x on dequantized values,
 * except that Q4_1/Q5_1 use the activations' stored s = fp16(d·Σq) for the min
 * term, as the kernels do. */
static double dot_reference(int t, const void *w, const float *wd, const void *xq, const float *xd, int64_t n,
                            double *mag)
{
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wd[i] * xd[i];
        m += fabs((double)wd[i] * xd[i]);
    }
    if (t == SQ_TYPE_Q4_1 || t == SQ_TYPE_Q5_1) {
        const size_t wbs = t == SQ_TYPE_Q4_1 ? 20 : 24;
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t hm, hd, hs;
            memcpy(&hm, (const char *)w + b * wbs + 2, 2);
            memcpy(&hd, (const char *)xq + b * 36, 2);
            memcpy(&hs, (const char *)xq + b * 36 + 2, 2);
            double qsum = 0;
            for (int j = 0; j < 32; j++) qsum += (int8_t)((const char *)xq)[b * 36 + 4 + j];
            s += (double)sq_fp16_to_f32(hm) * ((double)sq_fp16_to_f32(hs) - (double)sq_fp16_to_f32(hd) * qsum);
        }
    }
    *mag = m;
    return s;
}

static long first_diff(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return (long)i;
    return -1;
}

/* ---- golden ---- */

static void golden_type(const sq__kernels *k, const char *name)
{
    const int t = sq_type_from_name(name);
    const sq_type_info *ti = sq_type_info_get(t);
    const int at = ti->vec_dot_type;
    const size_t rb = sq_row_size(t, GCOLS);
    char rel[256];
    for (int wi = 0; wi < 2; wi++) {
        snprintf(rel, sizeof rel, "golden/quant/%s/%s", name, wi ? "qw.bin" : "q.bin");
        unsigned char *q = harness_load_shared(rel, rb * GROWS);
        snprintf(rel, sizeof rel, "golden/quant/%s/%s", name, wi ? "dw.f32" : "d.f32");
        float *d = harness_load_shared(rel, sizeof(float) * GROWS * GCOLS);
        if (!q || !d) {
            free(q);
            free(d);
            continue;
        }
        if (k[t].dequantize) {
            float *got = malloc(sizeof(float) * GCOLS);
            long bad = -1;
            for (int r = 0; r < GROWS && bad < 0; r++) {
                k[t].dequantize(q + r * rb, got, GCOLS);
                long dd = first_diff(got, d + r * GCOLS, sizeof(float) * GCOLS);
                if (dd >= 0) bad = r * GCOLS + dd / 4;
            }
            CHECK_MSG(bad < 0, "%s %s dequantize: first differing value %ld", sq_isa_name(sq_blocks_isa()), rel, bad);
            free(got);
        }
        /* dot.f32 dots q.bin; types quantized only with weights have dotw.f32 for qw.bin */
        if ((!wi || tu_needs_weights(t)) && k[t].vec_dot && k[at].from_float) {
            snprintf(rel, sizeof rel, "golden/quant/%s/%s", name, wi ? "dotw.f32" : "dot.f32");
            float *want = harness_load_shared(rel, sizeof(float) * GACT * GROWS);
            void *xq = malloc(sq_row_size(at, GCOLS));
            float y[4];
            int bad = 0;
            for (int j = 0; want && j < GACT; j++) {
                k[at].from_float(g_act + j * GCOLS, xq, GCOLS);
                for (int i = 0; i < GROWS; i++) {
                    const float got = k[t].vec_dot(GCOLS, q + i * rb, xq);
                    double mag = 0;
                    for (int c = 0; c < GCOLS; c++) mag += fabs((double)d[i * GCOLS + c] * g_act[j * GCOLS + c]);
                    const double tol = 1e-5 * mag + 1e-30;
                    if (fabs((double)got - want[j * GROWS + i]) > tol && bad++ < 3)
                        fprintf(stderr, "%s %s dot act %d row %d: %.9g vs %.9g (tol %.3g)\n",
                                sq_isa_name(sq_blocks_isa()), name, j, i, got, want[j * GROWS + i], tol);
                    /* the tile kernel gives the same value as vec_dot for one column */
                    sq__gemm_fn g = sq__gemm_kernel(t);
                    if (g) {
                        g(GCOLS, q + i * rb, rb, 1, xq, 0, 1, y, 1, false);
                        if (fabs((double)y[0] - want[j * GROWS + i]) > tol && bad++ < 3)
                            fprintf(stderr, "%s tile dot act %d row %d: %.9g vs %.9g\n", name, j, i, y[0],
                                    want[j * GROWS + i]);
                    }
                }
            }
            CHECK_MSG(want && bad == 0, "%s %s dot products: %d outside tolerance", sq_isa_name(sq_blocks_isa()),
                      name, bad);
            free(want);
            free(xq);
        }
        free(q);
        free(d);
    }
}

static void golden_act(const sq__kernels *k, const char *name)
{
    const int t = sq_type_from_name(name);
    if (!k[t].from_float) return;
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quant/act/%s.bin", name);
    const size_t rb = sq_row_size(t, GCOLS);
    unsigned char *want = harness_load_shared(rel, rb * GACT);
    if (!want) return;
    unsigned char *got = malloc(rb * GACT);
    for (int j = 0; j < GACT; j++) k[t].from_float(g_act + j * GCOLS, got + j * rb, GCOLS);
    const long d = first_diff(got, want, rb * GACT);
    CHECK_MSG(d < 0, "%s activation quantizer %s: first differing byte %ld", sq_isa_name(sq_blocks_isa()), name, d);
    free(got);
    free(want);
}

static void test_golden(void)
{
    if (!harness_shared_file((char[1024]){0}, 1024, "golden/quant/act.f32")) SKIP("../shared/golden absent");
    g_act = harness_load_shared("golden/quant/act.f32", sizeof(float) * GACT * GCOLS);
    if (!g_act) return;
    int ran = 0;
    for (int isa = SQ_ISA_AVX2; isa <= SQ_ISA_AVX512; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        ran++;
        const sq__kernels *k = sq__kernel_table();
        for (size_t i = 0; i < N_TYPES; i++) golden_type(k, types[i]);
        golden_act(k, "q8_0");
        golden_act(k, "q8_1");
        golden_act(k, "q8_K");
    }
    sq_blocks_set_isa(SQ_ISA_AVX512);
    if (!ran) SKIP("this CPU has no AVX2");
}

/* ---- properties vs scalar ---- */

/* A weight row of n values of type t: random blocks of the golden rows, or,
 * when the scalar quantizer exists and `fresh`, random data quantized now. */
static bool make_row(int t, int64_t n, void *row, bool fresh, const unsigned char *gq, size_t gbytes)
{
    const sq_type_info *ti = sq_type_info_get(t);
    const sq__kernels *s = sq__kernel_table_scalar();
    if (fresh) {
        if (!s[t].quantize || (s[t].prepare && !s[t].prepare())) return false;
        float *x = malloc(sizeof(float) * n), *imx = NULL;
        const float scale = (tu_rnd() % 3 == 0) ? 1e-3f : (tu_rnd() % 2 ? 1.0f : 40.0f);
        for (int64_t i = 0; i < n; i++) x[i] = gauss() * scale * (tu_rnd() % 64 == 0 ? 8.0f : 1.0f);
        if (tu_needs_weights(t)) {
            imx = malloc(sizeof(float) * n);
            for (int64_t i = 0; i < n; i++) imx[i] = 0.1f + (float)(tu_rnd() % 100);
        }
        s[t].quantize(x, row, n, imx);
        free(x);
        free(imx);
        return true;
    }
    if (!gq) return false;
    const size_t bb = (size_t)ti->type_size * (ti->block_size == 1 ? 32 : 1);
    const int64_t per = ti->block_size == 1 ? 32 : ti->block_size;
    const size_t nblk = gbytes / bb;
    for (int64_t b = 0; b < n / per; b++) memcpy((char *)row + b * bb, gq + (tu_rnd() % nblk) * bb, bb);
    return true;
}

static void property_type(const char *name, const unsigned char *gq, size_t gbytes)
{
    static const int64_t lens[] = {0, 512, 1024, 2816, 4096};
    const int t = sq_type_from_name(name);
    const sq_type_info *ti = sq_type_info_get(t);
    const int at = ti->vec_dot_type;
    const sq__kernels *k = sq__kernel_table(), *s = sq__kernel_table_scalar();
    const char *isa = sq_isa_name(sq_blocks_isa());
    if (!k[t].vec_dot || !k[at].from_float || !k[t].dequantize) return;
    int bad_deq = 0, bad_dot = 0, bad_act = 0, bad_tile = 0, checked = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li] ? lens[li] : (ti->block_size == 256 ? 256 : 32);
        if (n % ti->block_size) continue;
        const size_t rb = sq_row_size(t, n), ab = sq_row_size(at, n);
        enum { NR = 3, NC = 5 };
        unsigned char *w = malloc(rb * NR), *xq = malloc(ab * NC), *xs = malloc(ab);
        float *x = malloc(sizeof(float) * n * NC), *wd = malloc(sizeof(float) * n * NR), *wd2 = malloc(sizeof(float) * n);
        float *xd = malloc(sizeof(float) * n);
        for (int fresh = 0; fresh < 2; fresh++) {
            bool ok = true;
            for (int r = 0; r < NR; r++) ok = ok && make_row(t, n, w + r * rb, fresh, gq, gbytes);
            if (!ok) continue;
            for (int c = 0; c < NC; c++) {
                const float scale = c == 1 ? 1e-4f : (c == 2 ? 100.0f : 1.0f);
                for (int64_t i = 0; i < n; i++) x[c * n + i] = gauss() * scale;
                if (c == 3)
                    for (int64_t i = 0; i < n && i < 256; i++) x[c * n + i] = 0.0f; /* an all-zero block */
                if (c == 4)
                    for (int64_t i = 0; i < n; i++) x[c * n + i] = (float)((int)(tu_rnd() % 9) - 4) * 0.5f; /* ties */
                k[at].from_float(x + c * n, xq + c * ab, n);
                if (s[at].from_float) {
                    s[at].from_float(x + c * n, xs, n);
                    if (first_diff(xs, xq + c * ab, ab) >= 0 && bad_act++ < 2)
                        fprintf(stderr, "%s act %s n=%lld col %d: differs from scalar at byte %ld\n", isa,
                                sq_type_name(at), (long long)n, c, first_diff(xs, xq + c * ab, ab));
                }
            }
            for (int r = 0; r < NR; r++) {
                k[t].dequantize(w + r * rb, wd + r * n, n);
                if (s[t].dequantize) {
                    s[t].dequantize(w + r * rb, wd2, n);
                    if (first_diff(wd2, wd + r * n, sizeof(float) * n) >= 0 && bad_deq++ < 2)
                        fprintf(stderr, "%s %s n=%lld dequantize differs from scalar\n", isa, name, (long long)n);
                }
            }
            float tile[NR * NC];
            sq__gemm_fn g = sq__gemm_kernel(t);
            if (g) g(n, w, rb, NR, xq, ab, NC, tile, NR, false);
            for (int c = 0; c < NC; c++) {
                tu_act_to_float(at, xq + c * ab, xd, n);
                for (int r = 0; r < NR; r++) {
                    double mag;
                    const double ref = dot_reference(t, w + r * rb, wd + r * n, xq + c * ab, xd, n, &mag);
                    const double tol = 1e-5 * mag + 1e-30;
                    const float got = k[t].vec_dot(n, w + r * rb, xq + c * ab);
                    checked++;
                    if (fabs(got - ref) > tol && bad_dot++ < 3)
                        fprintf(stderr, "%s %s n=%lld r%d c%d: dot %.9g vs reference %.9g (tol %.3g)\n", isa, name,
                                (long long)n, r, c, got, ref, tol);
                    if (s[t].vec_dot) {
                        const float sg = s[t].vec_dot(n, w + r * rb, xq + c * ab);
                        if (fabs((double)sg - got) > 2 * tol && bad_dot++ < 3)
                            fprintf(stderr, "%s %s n=%lld: dot %.9g vs scalar %.9g\n", isa, name, (long long)n, got, sg);
                    }
                    if (g && fabs(tile[c * NR + r] - ref) > tol && bad_tile++ < 3)
                        fprintf(stderr, "%s %s n=%lld tile r%d c%d: %.9g vs %.9g\n", isa, name, (long long)n, r, c,
                                tile[c * NR + r], ref);
                }
            }
        }
        free(w), free(xq), free(xs), free(x), free(wd), free(wd2), free(xd);
    }
    CHECK_MSG(checked > 0, "%s %s: no property case ran", isa, name);
    CHECK_MSG(bad_act == 0, "%s %s: %d activation rows differ from scalar", isa, name, bad_act);
    CHECK_MSG(bad_deq == 0, "%s %s: %d dequantized rows differ from scalar", isa, name, bad_deq);
    CHECK_MSG(bad_dot == 0, "%s %s: %d dot products off", isa, name, bad_dot);
    CHECK_MSG(bad_tile == 0, "%s %s: %d tile products off", isa, name, bad_tile);
}

static void test_properties(void)
{
    int ran = 0;
    for (int isa = SQ_ISA_AVX2; isa <= SQ_ISA_AVX512; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        ran++;
        for (size_t i = 0; i < N_TYPES; i++) {
            const int t = sq_type_from_name(types[i]);
            char rel[256];
            snprintf(rel, sizeof rel, "golden/quant/%s/%s", types[i],
                     tu_needs_weights(t) ? "qw.bin" : "q.bin");
            const size_t gbytes = sq_row_size(t, GCOLS) * GROWS;
            unsigned char *gq = harness_load_shared(rel, gbytes);
            property_type(types[i], gq, gbytes);
            free(gq);
        }
    }
    sq_blocks_set_isa(SQ_ISA_AVX512);
    if (!ran) SKIP("this CPU has no AVX2");
}

int main(void)
{
    RUN(test_golden);
    RUN(test_properties);
    free(g_act);
    return harness_finish("simd");
}
