/*
 * bench_ik_dot.c — ik_llama.cpp's types against ggml's of about the same
 * size, kernel for kernel: the vec_dot of one weight row with Q8_K
 * activations (what generation runs for a whole-tensor type, and per block
 * what the SmarterQuant run kernel does), timed in one process so that the
 * ratios compare like with like on a busy machine.
 *
 * Per type: ns per 256-value block on 64 rows in L2 (min of many passes,
 * one thread, the thread's CPU time), at 512 values per row (the demo
 * model's width: the per-call and per-block costs weigh most) and at 4096,
 * and bytes per ns; then per pair the ik type's bytes/ns over its peer's
 * (>= 1: the ik type streams its bytes at least as fast as ggml's type).
 *
 * Then the prompt's product (n > 1: AMX tiles where the CPU has them) per
 * pair: sq_matmul of GEMM_ROWS × GEMM_COLS weights with GEMM_N activation
 * rows on one thread, GFLOPS (2·rows·cols·n over the CPU time, best of
 * tries) and the ik type's over its peer's.
 *
 * Environment: SQ_ISA caps the kernels (docs/kernels.md); BENCH_QUICK=1
 * fewer passes; BENCH_GEMM_ONLY=1 the prompt-product table alone. Run under
 * `flock /work/wt/bench.lock`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq/base.h"
#include "sq/blocks.h"
#include "sq/matmul.h"
#include "sq/types.h"
#include "benchutil.h"

#define ROWS 64

static const char *pairs[][2] = {
    {"iq2_k", "q2_K"},  {"iq2_ks", "q2_K"},  {"iq3_k", "q3_K"}, {"iq3_ks", "q3_K"}, {"iq4_ks", "iq4_xs"},
    {"iq4_k", "q4_K"},  {"iq5_ks", "q5_K"},  {"iq5_k", "q5_K"}, {"iq6_k", "q6_K"}, {"iq2_kl", "q2_K"},
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ns per block of vec_dot over ROWS quantized random rows of n values (best of tries). */
static double ns_per_block(int type, int64_t n, int tries)
{
    uint64_t seed = 0x2545F4914F6CDD1Dull ^ (uint64_t)type;
    const size_t rb = sq_row_size(type, n), ab = sq_row_size(SQ_TYPE_Q8_K, n);
    float *x = malloc(sizeof(float) * (size_t)(n * ROWS));
    unsigned char *w = malloc(rb * ROWS), *act = malloc(ab);
    for (int64_t i = 0; i < n * ROWS; i++)
        x[i] = (float)((double)(bench_xorshift64(&seed) >> 11) / 9007199254740992.0 - 0.5) * (i % 53 ? 1.f : 6.f);
    sq_error e = {0};
    if (sq_quantize_rows(type, x, w, ROWS, n, NULL, &e) != SQ_OK) {
        fprintf(stderr, "bench_ik_dot: %s: %s\n", sq_type_name(type), e.msg);
        exit(1);
    }
    sq_quantize_act(SQ_TYPE_Q8_K, x, act, n);
    const int reps = (int)(65536 / n) + 1;
    volatile float sink = 0;
    double best = 1e30;
    for (int t = 0; t < tries; t++) {
        const double t0 = cpu_now();
        float a = 0;
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < ROWS; i++) a += sq_vec_dot(type, n, w + (size_t)i * rb, act);
        const double dt = cpu_now() - t0;
        sink += a;
        if (dt < best) best = dt;
    }
    free(x), free(w), free(act);
    return best * 1e9 / ((double)reps * ROWS * (double)(n / 256));
}

#define GEMM_ROWS 128
#define GEMM_COLS 4096
#define GEMM_N 512

/* GFLOPS of sq_matmul (one thread) with GEMM_N activation rows (best of tries). */
static double gemm_gflops(int type, int tries)
{
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)type;
    const int64_t R = GEMM_ROWS, C = GEMM_COLS, n = GEMM_N;
    const size_t rb = sq_row_size(type, C), ws = sq_matmul_work_size(type, C, n);
    float *x = malloc(sizeof(float) * (size_t)(C * (R > n ? R : n))), *y = malloc(sizeof(float) * (size_t)(R * n));
    unsigned char *w = malloc(rb * (size_t)R);
    void *work = sq_aligned_alloc(ws);
    for (int64_t i = 0; i < C * (R > n ? R : n); i++)
        x[i] = (float)((double)(bench_xorshift64(&seed) >> 11) / 9007199254740992.0 - 0.5) * (i % 53 ? 1.f : 6.f);
    sq_error e = {0};
    if (!work || sq_quantize_rows(type, x, w, R, C, NULL, &e) != SQ_OK) {
        fprintf(stderr, "bench_ik_dot: %s: %s\n", sq_type_name(type), work ? e.msg : "out of memory");
        exit(1);
    }
    double best = 1e30;
    for (int t = 0; t < tries; t++) {
        const double t0 = cpu_now();
        if (sq_matmul(NULL, type, w, R, C, rb, x, n, y, work, ws, &e) != SQ_OK) {
            fprintf(stderr, "bench_ik_dot: matmul %s: %s\n", sq_type_name(type), e.msg);
            exit(1);
        }
        const double dt = cpu_now() - t0;
        if (dt < best) best = dt;
    }
    free(x), free(y), free(w), sq_aligned_free(work);
    return 2.0 * (double)R * (double)C * (double)n / best * 1e-9;
}

/* The prompt-product table: every pair's GFLOPS at n = GEMM_N. */
static void gemm_table(int tries)
{
    printf("\nprompt product: sq_matmul %d x %d weights, n = %d activation rows, 1 thread (CPU time)\n"
           "| ik type | GFLOPS | ggml type | GFLOPS | ik/ggml |\n|---|---:|---|---:|---:|\n",
           GEMM_ROWS, GEMM_COLS, GEMM_N);
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const double gi = gemm_gflops(sq_type_from_name(pairs[p][0]), tries);
        const double gg = gemm_gflops(sq_type_from_name(pairs[p][1]), tries);
        printf("| %s | %.1f | %s | %.1f | %.2f |\n", pairs[p][0], gi, pairs[p][1], gg, gi / gg);
    }
}

int main(void)
{
    const int quick = getenv("BENCH_QUICK") && atoi(getenv("BENCH_QUICK"));
    const int tries = quick ? 20 : 100;
    if (getenv("BENCH_GEMM_ONLY") && atoi(getenv("BENCH_GEMM_ONLY"))) {
        printf("kernels: %s\n", sq_isa_name(sq_blocks_isa()));
        gemm_table(quick ? 2 : 5);
        return 0;
    }
    printf("kernels: %s; vec_dot with Q8_K, 64 rows in L2, 1 thread (CPU time)\n", sq_isa_name(sq_blocks_isa()));
    printf("| ik type | bytes/256 | ns/block n=512 | n=4096 | ggml type | bytes/256 | ns/block n=512 | n=4096 | "
           "ik/ggml bytes per ns n=512 | n=4096 |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const int ti = sq_type_from_name(pairs[p][0]), tg = sq_type_from_name(pairs[p][1]);
        const double bi = (double)sq_row_size(ti, 4096) / 16, bg = (double)sq_row_size(tg, 4096) / 16;
        double ni[2], ng[2];
        for (int k = 0; k < 2; k++) {
            const int64_t n = k ? 4096 : 512;
            ni[k] = ns_per_block(ti, n, tries);
            ng[k] = ns_per_block(tg, n, tries);
        }
        printf("| %s | %.1f | %.2f | %.2f | %s | %.0f | %.2f | %.2f | %.2f | %.2f |\n", pairs[p][0], bi, ni[0], ni[1],
               pairs[p][1], bg, ng[0], ng[1], (bi / ni[0]) / (bg / ng[0]), (bi / ni[1]) / (bg / ng[1]));
    }
    gemm_table(quick ? 2 : 5);
    return 0;
}
