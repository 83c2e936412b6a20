/*
 * bench_sqtensor.c — the SmarterQuant matmul against the plain one, measured
 * in the same run (fastest of several interleaved calls): ratios of time per product (plain / SmarterQuant, higher
 * is better, 1.0 = as fast).
 *
 *   4096 x 4096, n = 1 and n = 64, 1 and 2 threads:
 *     plain Q4_K (the baseline), Q5_K, Q6_K, Q8_0
 *     SmarterQuant [Q4_K x4] + permutation  (uniform path: gather + sq_matmul)
 *     SmarterQuant [Q6_K,Q5_K,Q4_K,Q4_K] + permutation   (mixed path)
 *     SmarterQuant [Q8_0,Q6_K,Q5_K,Q4_K] + permutation   (mixed path, Q8_0 + Q8_K activations)
 *   For a SmarterQuant tensor, "expected" is the time its columns take in the
 *   plain tensors of their types; expected / actual near 1.0 means the mixed
 *   product (gather, per-run activation quantization, per-run kernels) costs
 *   nothing of its own beyond its kernels' speeds.
 * Environment: SQ_BENCH_ROWS / SQ_BENCH_COLS change the shape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"
#include "benchutil.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { return bench_xorshift64(&rng); }
static float frand(void) { return (float)((double)(next() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

typedef struct bench_w {
    const char *label;
    sq_weight w;
    void *data;
    double bpw;
} bench_w;

/* Quantizes W (rows x cols, original order) into a plain or mixed tensor. */
static bool make_weight(bench_w *b, const char *label, const float *W, int64_t rows, int64_t cols, bool mixed,
                        const int types[4], const int32_t *perm)
{
    sq_error e = { 0 };
    b->label = label;
    if (!mixed) {
        size_t rb = sq_row_size(types[0], cols);
        b->data = malloc(rb * (size_t)rows);
        if (sq_quantize_rows(types[0], W, b->data, rows, cols, NULL, &e) != SQ_OK ||
            sq_weight_plain(&b->w, b->data, types[0], rows, cols, &e) != SQ_OK) {
            fprintf(stderr, "%s: %s\n", label, e.msg);
            return false;
        }
    } else {
        size_t rb = 0;
        if (sq_mixed_row_bytes(types, cols, &rb, &e) != SQ_OK) return false;
        b->data = malloc(rb * (size_t)rows);
        float *row = malloc((size_t)cols * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            sq_perm_gather(perm, cols, W + r * cols, row);
            if (sq_pack_row(types, cols, row, NULL, (char *)b->data + (size_t)r * rb, &e) != SQ_OK) {
                fprintf(stderr, "%s: %s\n", label, e.msg);
                free(row);
                return false;
            }
        }
        free(row);
        if (sq_weight_mixed(&b->w, b->data, types, perm, rows, cols, &e) != SQ_OK) return false;
    }
    b->bpw = 8.0 * (double)b->w.row_bytes / (double)cols;
    return true;
}

/* Times `calls` products one by one into *best (the minimum seen: on a
 * shared machine the fastest call is the one least disturbed). */
static bool time_calls(sq_threadpool *tp, const bench_w *b, const float *X, int64_t n, float *Y, int calls,
                       double *best)
{
    size_t ws = sq_weight_matmul_work_size(&b->w, n);
    void *work = sq_aligned_alloc(ws ? ws : 64);
    sq_error e = { 0 };
    for (int i = 0; i < calls; i++) {
        double t = sq_time_now();
        if (sq_weight_matmul(tp, &b->w, X, n, Y, work, ws, &e) != SQ_OK) {
            fprintf(stderr, "%s: %s\n", b->label, e.msg);
            sq_aligned_free(work);
            return false;
        }
        t = sq_time_now() - t;
        if (t < *best) *best = t;
    }
    sq_aligned_free(work);
    return true;
}

int main(void)
{
    const char *er = getenv("SQ_BENCH_ROWS"), *ec = getenv("SQ_BENCH_COLS");
    const int64_t rows = er ? atoll(er) : 4096, cols = ec ? atoll(ec) : 4096;
    printf("bench_sqtensor: %lld x %lld, ISA %s\n", (long long)rows, (long long)cols, sq_isa_name(sq_blocks_isa()));
    const int q4k[4] = { SQ_TYPE_Q4_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K };
    const int mix1[4] = { SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K };
    const int mix2[4] = { SQ_TYPE_Q8_0, SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q4_K };
    for (int i = 0; i < 4; i++)
        if (!sq_blocks_can_dot(mix2[i]) || !sq_blocks_can_quantize(mix2[i])) {
            printf("bench_sqtensor: skipped, no kernels for %s in this build\n", sq_type_name(mix2[i]));
            return 0;
        }
    float *W = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) W[i] = frand();
    int32_t *perm = malloc((size_t)cols * sizeof(int32_t));
    for (int64_t i = 0; i < cols; i++) perm[i] = (int32_t)i;
    for (int64_t i = cols - 1; i > 0; i--) {
        int64_t j = (int64_t)(next() % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* plain tensors of every type used, then the SmarterQuant ones */
    const int plain_types[4] = { SQ_TYPE_Q4_K, SQ_TYPE_Q5_K, SQ_TYPE_Q6_K, SQ_TYPE_Q8_0 };
    const char *plain_labels[4] = { "plain q4_K", "plain q5_K", "plain q6_K", "plain q8_0" };
    const int *sq_types[3] = { q4k, mix1, mix2 };
    const char *sq_labels[3] = { "SQ [q4_K x4] + perm", "SQ [q6_K,q5_K,q4_K,q4_K] + perm",
                                 "SQ [q8_0,q6_K,q5_K,q4_K] + perm" };
    enum { NB = 7 };
    bench_w b[NB];
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++) {
        const int t[4] = { plain_types[i], plain_types[i], plain_types[i], plain_types[i] };
        ok = make_weight(&b[i], plain_labels[i], W, rows, cols, false, t, NULL);
    }
    for (int i = 0; i < 3 && ok; i++) ok = make_weight(&b[4 + i], sq_labels[i], W, rows, cols, true, sq_types[i], perm);
    free(W);
    if (!ok) return 1;
    const int64_t ns[2] = { 1, 64 };
    float *X = malloc((size_t)(64 * cols) * sizeof(float)), *Y = malloc((size_t)(64 * rows) * sizeof(float));
    for (int64_t i = 0; i < 64 * cols; i++) X[i] = frand();
    printf("expected = time the same columns take in the plain tensors of their types (sum over segments);\n"
           "expected / this = 1.0 means the SmarterQuant product adds no cost of its own\n\n");
    printf("| weight | bpw | threads | n | us/product | GFLOPS | plain q4_K / this | expected / this |\n"
           "|---|---|---|---|---|---|---|---|\n");
    for (int th = 1; th <= 2; th++) {
        sq_threadpool *tp = sq_threadpool_create(th);
        for (int k = 0; k < 2; k++) {
            const int64_t n = ns[k];
            /* rounds interleave the weights, so a busy moment of the machine hits all of them */
            double t[NB];
            for (int i = 0; i < NB; i++) t[i] = 1e30;
            for (int round = 0; round < 7; round++)
                for (int i = 0; i < NB; i++)
                    if (!time_calls(tp, &b[i], X, n, Y, n == 1 ? 8 : 2, &t[i])) return 1;
            for (int i = 0; i < NB; i++) {
                double expect = t[i];
                if (i >= 4) {
                    expect = 0;
                    for (int64_t s = 0; s < sq_n_segments(cols); s++) {
                        const int ty = sq_segment_type(sq_types[i - 4], s);
                        for (int q = 0; q < 4; q++)
                            if (plain_types[q] == ty) expect += t[q] * (double)sq_segment_len(cols, s) / (double)cols;
                    }
                }
                printf("| %s | %.2f | %d | %lld | %.1f | %.1f | %.3f | %.3f |\n", b[i].label, b[i].bpw, th,
                       (long long)n, t[i] * 1e6, 2.0 * (double)rows * (double)cols * (double)n / t[i] * 1e-9,
                       t[0] / t[i], expect / t[i]);
            }
        }
        sq_threadpool_free(tp);
    }
    for (int i = 0; i < NB; i++) free(b[i].data);
    free(perm);
    free(X);
    free(Y);
    return 0;
}
