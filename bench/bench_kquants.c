/*
 * bench_kquants.c — speed of the k-quant / IQ4 / MXFP4 / TQ2_0 quantizers
 * (the scalar searches the GGUF quantizer runs on every weight), with and
 * without an importance matrix, and of the scalar reference dequantize and
 * dot kernels. Each figure is printed next to a plain memory copy of the
 * same f32 data measured in the same run ("x memcpy" = how many times slower
 * than copying the input), so runs on different machines compare. Times are
 * process CPU time (single-threaded), best of a few repetitions.
 *
 *   build/bench/bench_kquants [ROWS] [COLS]     (default 64 x 4096)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq/blocks.h"
#include "benchutil.h"

/* CPU time of this process: on a shared machine it does not count the time
 * other processes hold the core, so figures are steadier than wall time. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double best_of(int reps, void (*fn)(void *), void *arg)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = cpu_now();
        fn(arg);
        const double t = cpu_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

typedef struct job {
    int type;
    int64_t rows, cols;
    const float *x, *imatrix;
    void *q;
    float *y;
    void *act;
    float sink;
} job;

static void run_memcpy(void *p)
{
    job *j = p;
    memcpy(j->y, j->x, sizeof(float) * (size_t)(j->rows * j->cols));
}

static void run_quantize(void *p)
{
    job *j = p;
    sq_error e = {0};
    if (sq_quantize_rows(j->type, j->x, j->q, j->rows, j->cols, j->imatrix, &e) != SQ_OK) {
        fprintf(stderr, "bench_kquants: %s\n", e.msg);
        exit(1);
    }
}

static void run_dequantize(void *p)
{
    job *j = p;
    const size_t rs = sq_row_size(j->type, j->cols);
    for (int64_t r = 0; r < j->rows; r++)
        sq_dequantize_row(j->type, (const char *)j->q + r * rs, j->y + r * j->cols, j->cols);
}

static void run_dot(void *p)
{
    job *j = p;
    const size_t rs = sq_row_size(j->type, j->cols);
    float s = 0;
    for (int64_t r = 0; r < j->rows; r++) s += sq_vec_dot(j->type, j->cols, (const char *)j->q + r * rs, j->act);
    j->sink += s;
}

int main(int argc, char **argv)
{
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 64, cols = argc > 2 ? atoll(argv[2]) : 4096;
    if (rows <= 0 || cols <= 0 || cols % 256 != 0) {
        fprintf(stderr, "usage: bench_kquants [ROWS] [COLS]  (COLS a multiple of 256)\n");
        return 2;
    }
    const size_t nval = (size_t)(rows * cols);
    float *x = malloc(sizeof(float) * nval), *y = malloc(sizeof(float) * nval);
    float *imx = malloc(sizeof(float) * (size_t)cols);
    void *q = malloc(sizeof(float) * nval), *act = malloc(sizeof(float) * (size_t)cols * 2);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < nval; i++) {
        x[i] = (float)((double)(bench_xorshift64(&s) >> 11) / 9007199254740992.0 - 0.5) * (i % 97 == 0 ? 8.f : 1.f);
    }
    for (int64_t i = 0; i < cols; i++) imx[i] = 0.1f + (float)(i % 13);

    job j = {.rows = rows, .cols = cols, .x = x, .q = q, .y = y, .act = act};
    const double t_copy = best_of(5, run_memcpy, &j);
    const double mb = (double)nval * sizeof(float) / 1e6;
    printf("rows %lld x cols %lld (%.1f MB of f32); memcpy %.0f MB/s\n", (long long)rows, (long long)cols, mb,
           mb / t_copy);
    printf("%-7s %14s %14s %14s %14s   (MB of f32 per second, x memcpy time)\n", "type", "quantize",
           "quant+imatrix", "dequant(ref)", "dot(ref)");

    static const char *names[] = {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs", "mxfp4", "tq2_0"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        j.type = sq_type_from_name(names[k]);
        if (!sq_blocks_can_quantize(j.type)) continue;
        j.imatrix = NULL;
        const double tq = best_of(2, run_quantize, &j);
        j.imatrix = imx;
        const double tw = best_of(2, run_quantize, &j);
        j.imatrix = NULL;
        run_quantize(&j);
        /* the scalar reference kernels (the SIMD ones have their own bench) */
        const sq_isa prev = sq_blocks_isa();
        sq_blocks_set_isa(SQ_ISA_SCALAR);
        const double td = best_of(3, run_dequantize, &j);
        double tdot = 0;
        const int at = sq_type_info_get(j.type)->vec_dot_type;
        if (sq_blocks_can_dot(j.type)) {
            sq_quantize_act(at, x, act, cols);
            tdot = best_of(3, run_dot, &j);
        }
        sq_blocks_set_isa(prev);
        printf("%-7s %7.0f %5.0fx %7.0f %5.0fx %7.0f %5.1fx", names[k], mb / tq, tq / t_copy, mb / tw, tw / t_copy,
               mb / td, td / t_copy);
        if (tdot > 0)
            printf(" %7.0f %5.1fx\n", mb / tdot, tdot / t_copy);
        else
            printf(" %14s\n", "(no act.)");
    }
    if (j.sink == 12345.0f) printf(" "); /* keep the dots alive */
    free(x);
    free(y);
    free(imx);
    free(q);
    free(act);
    return 0;
}
