/*
 * bench_gemm.c — one matrix product per weight type at a real shape, timed
 * by CPU time: GFLOPS of the prompt's product (n activation rows) and GB/s of
 * the matrix-vector product (n = 1), for each type of a list, in one run, so
 * that kernels compare against each other (e.g. Q8_0 against Q4_K on AMX).
 *
 * Usage: bench_gemm [TYPES [ROWS [COLS [N [THREADS]]]]]
 *   defaults: q8_0,q4_K 4096 4096 512 1. SQ_ISA=avx512 (etc.) picks the
 *   kernels' level. Weights and activations are random; best of 3.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "sq/blocks.h"
#include "sq/matmul.h"

/* CPU seconds of this process (all its threads). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The best CPU time of reps products W (rows × cols of type t) · X (n rows). */
static double time_product(sq_threadpool *tp, int t, const void *W, int64_t rows, int64_t cols, size_t rb,
                           const float *X, int64_t n, float *Y, void *work, size_t ws, int reps)
{
    double best = INFINITY;
    for (int i = 0; i < reps; i++) {
        sq_error e = {0};
        const double t0 = cpu_now();
        if (sq_matmul(tp, t, W, rows, cols, rb, X, n, Y, work, ws, &e) != SQ_OK) {
            fprintf(stderr, "bench_gemm: %s\n", e.msg);
            exit(1);
        }
        const double dt = cpu_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

/* Quantizes random weights of type `name` and prints one line of figures. */
static void bench_type(const char *name, int64_t rows, int64_t cols, int64_t n, sq_threadpool *tp, const float *X)
{
    const int t = sq_type_from_name(name);
    if (t < 0) {
        fprintf(stderr, "bench_gemm: unknown type '%s'\n", name);
        return;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++)
        wf[i] = (float)((double)(bench_xorshift64(&seed) >> 11) / 9007199254740992.0 - 0.5);
    const size_t rb = sq_row_size(t, cols);
    void *W = malloc(rb * (size_t)rows);
    sq_error e = {0};
    if (sq_quantize_rows(t, wf, W, rows, cols, NULL, &e) != SQ_OK) {
        fprintf(stderr, "bench_gemm: %s: %s\n", name, e.msg);
        free(wf), free(W);
        return;
    }
    const size_t ws = sq_matmul_work_size(t, cols, n);
    void *work = ws ? malloc(ws) : NULL;
    float *Y = malloc(sizeof(float) * (size_t)(rows * n));
    const double tn = time_product(tp, t, W, rows, cols, rb, X, n, Y, work, ws, 3);
    const double t1 = time_product(tp, t, W, rows, cols, rb, X, 1, Y, work, ws, 5);
    printf("| %s | %.1f | %.3f | %.1f | %.3f |\n", name, 2.0 * (double)(rows * cols * n) / tn / 1e9, tn,
           (double)rb * (double)rows / t1 / 1e9, t1 * 1e3);
    free(wf), free(W), free(work), free(Y);
}

int main(int argc, char **argv)
{
    const char *types = argc > 1 ? argv[1] : "q8_0,q4_K";
    const int64_t rows = argc > 2 ? atoll(argv[2]) : 4096, cols = argc > 3 ? atoll(argv[3]) : 4096;
    const int64_t n = argc > 4 ? atoll(argv[4]) : 512;
    const int nt = argc > 5 ? atoi(argv[5]) : 1;
    if (rows < 1 || cols < 256 || n < 2 || nt < 1) {
        fprintf(stderr, "usage: bench_gemm [TYPES [ROWS [COLS [N [THREADS]]]]]\n");
        return 2;
    }
    float *X = malloc(sizeof(float) * (size_t)(cols * n));
    uint64_t seed = 12345;
    for (int64_t i = 0; i < cols * n; i++)
        X[i] = (float)((double)(bench_xorshift64(&seed) >> 11) / 9007199254740992.0 - 0.5);
    sq_threadpool *tp = sq_threadpool_create(nt);
    printf("%lld x %lld weights, n = %lld, %d thread(s), level %s; CPU time, best of 3 (n) / 5 (n = 1)\n",
           (long long)rows, (long long)cols, (long long)n, nt, sq_isa_name(sq_blocks_isa()));
    printf("| type | n=%lld GFLOPS | n=%lld s | n=1 GB/s | n=1 ms |\n|---|---:|---:|---:|---:|\n", (long long)n,
           (long long)n);
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    for (char *p = strtok(list, ","); p; p = strtok(NULL, ",")) bench_type(p, rows, cols, n, tp, X);
    sq_threadpool_free(tp);
    free(X);
    return 0;
}
