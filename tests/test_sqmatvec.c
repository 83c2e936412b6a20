/*
 * test_sqmatvec.c — the matrix-vector case (n = 1, token generation) of the
 * SmarterQuant product, sq_weight_matmul, against a reference built here from
 * public pieces: the activation gathered through the permutation, each run of
 * same-type segments quantized with sq_quantize_act and dotted with one
 * sq_vec_dot call, the runs summed in order from 0. The n = 1 path sums the
 * quantized runs of a row (K-quants and the 32-column types) in one set of vector accumulators (the run kernels
 * of gemm.h), so it may differ from this sum by float rounding only: within
 * 1e-5 of sum |w·x| over the row (dequantized weights times activations).
 * On every ISA this CPU offers (scalar included), with 1 and 3 threads, for
 * row counts that are not multiples of the row bands, and random mixes.
 */
#include "harness.h"
#include "testutil.h"

#include <math.h>

#include "sq/blocks.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"
#include "sq/types.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rng_float(void)
{
    return (float)((double)(tu_xorshift64(&rng_state) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* The reference for row r: runs summed in order, one vec_dot per run; *mag
 * gets sum |w·x| (the rounding scale). wf holds C floats. */
static float ref_row(const int types[4], int64_t C, const uint8_t *wrow, const float *xg, uint8_t *act, float *wf,
                     double *mag)
{
    *mag = 0.0;
    const int64_t nseg = sq_n_segments(C);
    float sum = 0.0f;
    size_t w_off = 0;
    for (int64_t s = 0; s < nseg;) {
        const int t = sq_segment_type(types, s);
        int64_t e = s + 1;
        /* a row-scale type's segment is a row of its own: its runs are single segments */
        while (e < nseg && sq_segment_type(types, e) == t && sq_type_info_get(t)->row_meta == 0) e++;
        const int64_t c0 = s * SQ_SEGMENT, len = (e - s) * SQ_SEGMENT < C - c0 ? (e - s) * SQ_SEGMENT : C - c0;
        sq_quantize_act(sq_type_info_get(t)->vec_dot_type, xg + c0, act, len);
        sum += sq_vec_dot(t, len, wrow + w_off, act);
        sq_dequantize_row(t, wrow + w_off, wf, len);
        for (int64_t c = 0; c < len; c++) *mag += fabs((double)wf[c] * (double)xg[c0 + c]);
        w_off += sq_row_size(t, len);
        s = e;
    }
    return sum;
}

/* One mix: R x C random weights packed as a mixed tensor with a random
 * permutation; n = 1 products on each ISA and thread count. */
static void check_mix(const int types[4], int64_t R, int64_t C)
{
    for (int i = 0; i < 4; i++)
        if (!sq_blocks_can_dot(types[i]) || !sq_blocks_can_quantize(types[i]))
            SKIP("no kernels for %s in this build", sq_type_name(types[i]));
    sq_error e = { 0 };
    size_t rb = 0;
    CHECK_INT(sq_mixed_row_bytes(types, C, &rb, &e), SQ_OK);
    uint8_t *data = sq_aligned_alloc(rb * (size_t)R + 1);
    int32_t *perm = malloc((size_t)C * sizeof *perm);
    float *W = malloc((size_t)C * sizeof(float)), *X = malloc((size_t)C * sizeof(float));
    float *xg = malloc((size_t)C * sizeof(float)), *Y = malloc((size_t)R * sizeof(float));
    uint8_t *act = sq_aligned_alloc((size_t)C * 4 + 64);
    for (int64_t c = 0; c < C; c++) perm[c] = (int32_t)c;
    for (int64_t c = C - 1; c > 0; c--) {
        const int64_t j = (int64_t)((rng_float() * 0.5f + 0.5f) * (float)(c + 1)) % (c + 1);
        const int32_t t = perm[c];
        perm[c] = perm[j];
        perm[j] = t;
    }
    /* importance weights only for the types that need them (IQ2_XXS, IQ2_XS, IQ1_S) */
    float *imx = NULL;
    for (int i = 0; i < 4; i++)
        if (tu_needs_weights(types[i]) && !imx) {
            imx = malloc((size_t)C * sizeof(float));
            for (int64_t c = 0; c < C; c++) imx[c] = 1.5f + rng_float();
        }
    for (int64_t r = 0; r < R; r++) {
        for (int64_t c = 0; c < C; c++) W[c] = rng_float() * (1.0f + (float)(c % 7));
        CHECK_INT(sq_pack_row(types, C, W, imx, data + (size_t)r * rb, &e), SQ_OK);
    }
    free(imx);
    for (int64_t c = 0; c < C; c++) X[c] = rng_float();
    sq_perm_gather(perm, C, X, xg);
    sq_weight w;
    CHECK_INT(sq_weight_mixed(&w, data, types, perm, R, C, &e), SQ_OK);
    const size_t ws = sq_weight_matmul_work_size(&w, 1);
    void *work = sq_aligned_alloc(ws + 1);
    const sq_isa isas[4] = { SQ_ISA_AMX, SQ_ISA_AVX512, SQ_ISA_AVX2, SQ_ISA_SCALAR };
    const sq_isa keep = sq_blocks_isa();
    for (int k = 0; k < 4; k++) {
        if (sq_blocks_set_isa(isas[k]) != isas[k]) continue;
        for (int nt = 1; nt <= 3; nt += 2) {
            sq_threadpool *tp = sq_threadpool_create(nt);
            for (int64_t r = 0; r < R; r++) Y[r] = -1e30f;
            CHECK_INT(sq_weight_matmul(tp, &w, X, 1, Y, work, ws, &e), SQ_OK);
            int64_t bad = 0, first = -1;
            for (int64_t r = 0; r < R; r++) {
                double mag;
                const float ref = ref_row(types, C, data + (size_t)r * rb, xg, act, W, &mag);
                if (!(fabs((double)Y[r] - (double)ref) <= 1e-5 * mag) && bad++ == 0) first = r;
            }
            CHECK_MSG(bad == 0, "%s/%s/%s/%s C=%lld %s t=%d: %lld of %lld rows differ from the run-ordered vec_dot "
                      "sum by more than 1e-5 of sum |w*x| (first row %lld)", sq_type_name(types[0]), sq_type_name(types[1]), sq_type_name(types[2]),
                      sq_type_name(types[3]), (long long)C, sq_isa_name(isas[k]), nt, (long long)bad, (long long)R,
                      (long long)first);
            sq_threadpool_free(tp);
        }
    }
    sq_blocks_set_isa(keep);
    sq_aligned_free(work);
    sq_aligned_free(act);
    sq_aligned_free(data);
    free(perm);
    free(W);
    free(X);
    free(xg);
    free(Y);
}

/* The generation benchmark's mix (script bench_sq_gen.sh) at the demo model's widths. */
static void test_kquant_mix(void)
{
    const int t[4] = { SQ_TYPE_Q5_K, SQ_TYPE_Q4_K, SQ_TYPE_Q3_K, SQ_TYPE_Q4_K };
    check_mix(t, 77, 512);
    check_mix(t, 45, 1536);
}

/* Every type of the run kernels (K-quants, IQ4_XS), runs of several segments. */
static void test_kquant_runs(void)
{
    const int x[4] = { SQ_TYPE_IQ4_XS, SQ_TYPE_Q4_K, SQ_TYPE_IQ4_XS, SQ_TYPE_Q6_K };
    check_mix(x, 38, 1280);
    const int a[4] = { SQ_TYPE_Q6_K, SQ_TYPE_Q2_K, SQ_TYPE_Q2_K, SQ_TYPE_Q5_K };
    check_mix(a, 70, 2048);
    const int b[4] = { SQ_TYPE_Q4_K, SQ_TYPE_Q4_K, SQ_TYPE_Q6_K, SQ_TYPE_Q3_K };
    check_mix(b, 33, 1280);
}

/* The 32-column types with Q8_0 / Q8_1 activations in the run kernels, next
 * to K-quants and each other, runs of one and of several segments. */
static void test_legacy_runs(void)
{
    const int t[4] = { SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_Q4_0, SQ_TYPE_Q6_K };
    check_mix(t, 41, 1024);
    const int a[4] = { SQ_TYPE_Q5_0, SQ_TYPE_Q5_1, SQ_TYPE_Q4_1, SQ_TYPE_Q8_0 };
    check_mix(a, 39, 1536);
    const int b[4] = { SQ_TYPE_Q4_1, SQ_TYPE_IQ4_NL, SQ_TYPE_Q5_K, SQ_TYPE_Q5_0 };
    check_mix(b, 22, 1280);
}

/* The codebook and ternary types in the run kernels, next to K-quants and
 * each other, runs of one and of several segments. */
static void test_iquant_runs(void)
{
    const int a[4] = { SQ_TYPE_IQ3_S, SQ_TYPE_IQ2_S, SQ_TYPE_Q4_K, SQ_TYPE_IQ3_XXS };
    check_mix(a, 37, 1536);
    const int b[4] = { SQ_TYPE_IQ2_XXS, SQ_TYPE_IQ2_XS, SQ_TYPE_IQ1_S, SQ_TYPE_IQ1_M };
    check_mix(b, 29, 1280);
    const int c[4] = { SQ_TYPE_TQ1_0, SQ_TYPE_TQ2_0, SQ_TYPE_Q4_0, SQ_TYPE_IQ3_S };
    check_mix(c, 19, 1024);
}

/* Types outside the run kernels (floats: vec_dot per row, added after) next
 * to ones in it. */
/* ik_llama.cpp's types in runs (their 512-bit steps share one activation
 * order per block among the band's rows; IQ6_K has its own step at the AMX
 * level), next to each other and to K-quants, row counts not multiples of 4. */
static void test_ik_runs(void)
{
    const int a[4] = { SQ_TYPE_IQ4_K, SQ_TYPE_IQ5_K, SQ_TYPE_IQ3_K, SQ_TYPE_IQ4_KS };
    check_mix(a, 38, 1280);
    const int b[4] = { SQ_TYPE_IQ5_KS, SQ_TYPE_IQ6_K, SQ_TYPE_IQ2_K, SQ_TYPE_IQ2_KS };
    check_mix(b, 21, 1024);
    const int c[4] = { SQ_TYPE_IQ3_KS, SQ_TYPE_Q4_K, SQ_TYPE_IQ6_K, SQ_TYPE_IQ6_K };
    check_mix(c, 13, 1536);
    const int d[4] = { SQ_TYPE_IQ4_KS, SQ_TYPE_IQ4_KS, SQ_TYPE_IQ5_K, SQ_TYPE_IQ4_K };
    check_mix(d, 9, 512);
}

static void test_mixed_fallback(void)
{
    const int t[4] = { SQ_TYPE_F16, SQ_TYPE_Q4_K, SQ_TYPE_Q5_1, SQ_TYPE_F32 };
    check_mix(t, 41, 1024);
}

/* Random mixes of run-kernel types and others, random widths and row counts. */
static void test_random_mixes(void)
{
    const int pool[18] = { SQ_TYPE_Q2_K, SQ_TYPE_Q3_K, SQ_TYPE_Q4_K, SQ_TYPE_Q5_K, SQ_TYPE_Q6_K,
                           SQ_TYPE_Q4_K, SQ_TYPE_Q5_K, SQ_TYPE_IQ4_XS, SQ_TYPE_Q8_0, SQ_TYPE_Q4_0,
                           SQ_TYPE_Q4_1, SQ_TYPE_Q5_0, SQ_TYPE_Q5_1, SQ_TYPE_IQ4_NL, SQ_TYPE_F16,
                           SQ_TYPE_IQ3_S, SQ_TYPE_IQ2_S, SQ_TYPE_IQ1_M };
    for (int it = 0; it < 12; it++) {
        int t[4];
        for (int i = 0; i < 4; i++) t[i] = pool[(int)((rng_float() * 0.5f + 0.5f) * 17.999f)];
        const int64_t C = 256 * (1 + (int64_t)((rng_float() * 0.5f + 0.5f) * 7.0f));
        const int64_t R = 1 + (int64_t)((rng_float() * 0.5f + 0.5f) * 40.0f);
        check_mix(t, R, C);
    }
}

int main(void)
{
    RUN(test_kquant_mix);
    RUN(test_kquant_runs);
    RUN(test_legacy_runs);
    RUN(test_iquant_runs);
    RUN(test_ik_runs);
    RUN(test_mixed_fallback);
    RUN(test_random_mixes);
    return harness_finish("sqmatvec");
}
