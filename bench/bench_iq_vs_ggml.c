/*
 * bench_iq_vs_ggml.c — our dot kernels of the low-bit types against ggml's
 * own, kernel for kernel, in one process: ggml's CPU library (llama.cpp's
 * libggml-cpu.so, loaded at run time; GGML_CPU_LIB=path, default
 * /work/peer/llama.cpp/build/bin/libggml-cpu.so) gives its vec_dot through
 * ggml_get_type_traits_cpu, and both kernels run on the same quantized rows
 * and the same Q8_K activations (our quantizers write ggml's bytes).
 *
 * Two figures per type, one thread, timed by the thread's CPU time (robust
 * on a shared, busy machine, where ggml's multi-threaded products suffer
 * from their spinning barrier): ns per 256-value block on 16 L2-resident
 * rows, and GFLOPS of a 4096 x 14336 matrix-vector product (n = 1) walked
 * row by row, weights streamed from memory. The ratio ggml/ours > 1 means
 * ours is faster. Without the library it prints a note and exits 0.
 *
 * Environment: BENCH_TYPES=iq3_s,iq2_s (subset), BENCH_QUICK=1.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq/blocks.h"
#include "benchutil.h"

#define ROWS 4096
#define COLS 14336

/* ggml-cpu.h's types (ggml 0.25.1 ABI), declared here: the library is
 * optional and its headers are not ours. */
typedef void (*ggml_vec_dot_fn)(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by, int nrc);
typedef struct ggml_traits_cpu {
    void (*from_float)(const float *x, void *y, int64_t k);
    ggml_vec_dot_fn vec_dot;
    int vec_dot_type;
    int64_t nrows;
} ggml_traits_cpu;
typedef const ggml_traits_cpu *(*get_traits_fn)(int type);

static const char *all_types[] = {"iq3_s", "iq2_s", "iq3_xxs", "iq2_xs", "iq2_xxs",
                                  "iq1_m", "iq1_s", "tq1_0",   "tq2_0",  "q4_K"};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct dot_case {
    int type;
    const unsigned char *w;
    size_t rb;
    const void *xq;
    ggml_vec_dot_fn ggml; /* NULL: ours */
} dot_case;

/* Seconds of CPU for `reps` passes over `rows` rows of n values. */
static double time_rows(const dot_case *c, int64_t n, int rows, int reps, volatile float *sink)
{
    const double t0 = cpu_now();
    float acc = 0;
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < rows; i++) {
            const void *row = c->w + (size_t)i * c->rb;
            float s;
            if (c->ggml) c->ggml((int)n, &s, 0, row, 0, c->xq, 0, 1);
            else s = sq_vec_dot(c->type, n, row, c->xq);
            acc += s;
        }
    *sink = acc;
    return cpu_now() - t0;
}

/* Best of `tries` timings. */
static double best_of(const dot_case *c, int64_t n, int rows, int reps, int tries, volatile float *sink)
{
    double best = 1e30;
    for (int t = 0; t < tries; t++) {
        const double s = time_rows(c, n, rows, reps, sink);
        if (s < best) best = s;
    }
    return best;
}

/* One type: the quantized matrix, the activations, both kernels. */
static void bench_type(const char *name, get_traits_fn traits, int quick)
{
    const int t = sq_type_from_name(name);
    const sq_type_info *ti = sq_type_info_get(t);
    const ggml_traits_cpu *g = traits(t);
    if (!ti || !sq_blocks_can_dot(t) || !g || !g->vec_dot) {
        printf("| %s | (no kernel) | | | | | |\n", name);
        return;
    }
    const size_t rb = sq_row_size(t, COLS);
    enum { DISTINCT = 16 };
    float *src = malloc(sizeof(float) * COLS * DISTINCT), *imx = malloc(sizeof(float) * COLS);
    unsigned long long s = 777;
    for (size_t i = 0; i < (size_t)COLS * DISTINCT; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        src[i] = (float)((int)((s >> 40) & 0xFFFF) - 32768) / 32768.0f;
    }
    for (int i = 0; i < COLS; i++) imx[i] = 1.0f + (float)(i % 7);
    unsigned char *W = sq_aligned_alloc(rb * ROWS);
    void *xq = sq_aligned_alloc(sq_row_size(SQ_TYPE_Q8_K, COLS));
    if (!W || !xq || sq_quantize_rows(t, src, W, DISTINCT, COLS, imx, NULL) != SQ_OK) {
        printf("| %s | (quantize failed) | | | | | |\n", name);
        goto out;
    }
    for (int r = DISTINCT; r < ROWS; r++) memcpy(W + (size_t)r * rb, W + (size_t)(r % DISTINCT) * rb, rb);
    sq_quantize_act(SQ_TYPE_Q8_K, src, xq, COLS);
    volatile float sink;
    const dot_case ours = {t, W, rb, xq, NULL}, theirs = {t, W, rb, xq, g->vec_dot};
    /* L2-resident: 16 rows of 4096 values */
    const int reps = quick ? 20 : 100;
    const double n_blk = 16.0 * 4096 / 256 * reps;
    const double l2_ours = best_of(&ours, 4096, 16, reps, 5, &sink) / n_blk * 1e9;
    const double l2_ggml = best_of(&theirs, 4096, 16, reps, 5, &sink) / n_blk * 1e9;
    /* matrix-vector: every row once, from memory */
    const double flop = 2.0 * ROWS * COLS;
    const int tries = quick ? 2 : 5;
    const double mv_ours = flop / best_of(&ours, COLS, ROWS, 1, tries, &sink) / 1e9;
    const double mv_ggml = flop / best_of(&theirs, COLS, ROWS, 1, tries, &sink) / 1e9;
    printf("| %s | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f |\n", name, l2_ours, l2_ggml, l2_ggml / l2_ours, mv_ours,
           mv_ggml, mv_ours / mv_ggml);
out:
    free(src);
    free(imx);
    sq_aligned_free(W);
    sq_aligned_free(xq);
}

int main(void)
{
    const char *lib = getenv("GGML_CPU_LIB");
    if (!lib || !*lib) lib = "/work/peer/llama.cpp/build/bin/libggml-cpu.so";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    get_traits_fn traits = h ? (get_traits_fn)(size_t)dlsym(h, "ggml_get_type_traits_cpu") : NULL;
    void (*cpu_init)(void) = h ? (void (*)(void))(size_t)dlsym(h, "ggml_cpu_init") : NULL;
    if (!traits || !cpu_init) {
        printf("bench_iq_vs_ggml: %s not loadable (%s): nothing to compare\n", lib, dlerror());
        return 0;
    }
    cpu_init();
    const int quick = getenv("BENCH_QUICK") && atoi(getenv("BENCH_QUICK"));
    printf("ISA %s; ggml from %s; one thread, CPU time, best of several\n", sq_isa_name(sq_blocks_isa()), lib);
    printf("| type | ns/block ours (L2) | ns/block ggml (L2) | ggml/ours | n=1 GFLOPS ours | n=1 GFLOPS ggml | "
           "ours/ggml |\n|---|---:|---:|---:|---:|---:|---:|\n");
    const char *want = getenv("BENCH_TYPES");
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
        if (want && *want && !bench_list_has(want, all_types[i])) continue;
        bench_type(all_types[i], traits, quick);
        fflush(stdout);
    }
    return 0;
}
