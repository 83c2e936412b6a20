/*
 * bench_blocks.c — block-kernel and matrix-product speed, per type, next to
 * a plain memory-read bandwidth measured in the same run.
 *
 * Per type: dequantize throughput (values/s from an L2-resident row set),
 * dot-product throughput (vec_dot on L2-resident rows), and the
 * 4096×14336 matrix-vector (n=1) and matrix-matrix (n=512) products through
 * sq_matmul on 1 and 2 threads, in GFLOPS = 2·4096·14336·n / time (the
 * conversion of X to the activation type included, as in ggml). The n=1
 * products are memory-bound: they are also given as GB/s of weights read and
 * as a fraction of the measured read bandwidth. ggml's figures for the same
 * products (../shared/golden/llama.cpp/mulmat-perf.md, 2 threads) are shown
 * with our ratio to them when that file is present; BENCH_GGML=FILE adds rows
 * in the same format (e.g. test-backend-ops figures for the types that file
 * lacks, written by bench/iq_vs_ggml.sh in the same run).
 *
 * Environment: BENCH_TYPES=q4_K,q8_0 (subset), BENCH_QUICK=1 (fewer
 * repetitions, n=512 on a quarter of the rows), BENCH_THREADS=2 (the larger
 * thread count). Timings are best of N; single-thread figures (kernel
 * throughput, 1t columns) use the thread's CPU time, multi-thread ones wall
 * clock, so on a shared, busy machine the 2t columns are the noisy ones.
 */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "sq/blocks.h"
#include "sq/matmul.h"
#include "benchutil.h"

#define ROWS 4096
#define COLS 14336

static const char *all_types[] = {"q4_K",   "q6_K",   "q8_0",   "f16",     "q4_0",    "q5_K",   "q3_K",
                                  "q2_K",   "iq4_xs", "iq4_nl", "q5_0",    "bf16",    "q4_1",   "q5_1",
                                  "iq3_s",  "iq2_s",  "iq3_xxs", "iq2_xs", "iq2_xxs", "iq1_m",  "iq1_s",
                                  "tq1_0",  "tq2_0",
                                  /* ik_llama.cpp's types */
                                  "iq2_k",  "iq2_ks", "iq2_kl", "iq3_k",   "iq3_ks",  "iq4_kss", "iq4_ks",
                                  "iq4_k",  "iq5_ks", "iq5_k",  "iq6_k"};
#define N_ALL (sizeof all_types / sizeof all_types[0])

static int quick;

/* CPU time of the calling thread: for single-thread figures it leaves out the
 * time other processes on a shared machine take from us. */
static double thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the whole process (all pool threads). */
static double process_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- memory-read bandwidth: sum a large buffer with AVX2 loads ---- */

typedef struct {
    const float *buf;
    size_t n;
    float out[16];
} bw_ctx;

__attribute__((target("avx2"))) static void bw_task(void *p, int ith, int nth)
{
    bw_ctx *c = p;
    const size_t per = c->n / (size_t)nth / 64 * 64;
    const float *b = c->buf + per * (size_t)ith;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < per; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(b + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(b + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(b + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(b + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float t[8];
    _mm256_storeu_ps(t, s);
    c->out[ith] = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

/* Read bandwidth in GB/s by CPU time per thread (see best_of). */
static double read_bandwidth(sq_threadpool *tp, float *buf, size_t n, int reps)
{
    bw_ctx c = {buf, n, {0}};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = process_cpu_now();
        sq_threadpool_run(tp, bw_task, &c);
        const double t = (process_cpu_now() - t0) / sq_threadpool_n_threads(tp);
        if (t < best) best = t;
    }
    return (double)n * sizeof(float) / best / 1e9;
}

/* ---- pool overhead: an empty run, best and median of many ---- */

static void empty_task(void *p, int ith, int nth) { (void)p, (void)ith, (void)nth; }

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void pool_overhead(sq_threadpool *tp, double *best_us, double *median_us)
{
    enum { RUNS = 2000 };
    static double t[RUNS];
    for (int i = 0; i < RUNS; i++) {
        const double t0 = sq_time_now();
        sq_threadpool_run(tp, empty_task, NULL);
        t[i] = (sq_time_now() - t0) * 1e6;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    *best_us = t[0];
    *median_us = t[RUNS / 2];
}

/* ---- ggml's figures ---- */

typedef struct {
    char name[16];
    double n1, n512;
} ggml_row;
static ggml_row ggml_rows[32];
static int n_ggml;

/* The rows of one figures file (| type | n=1 GFLOPS | n=1 us | n=512 GFLOPS |). */
static void load_ggml_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f) && n_ggml < 32) {
        ggml_row r;
        double us;
        if (sscanf(line, "| %15[^ |] | %lf | %lf | %lf |", r.name, &r.n1, &us, &r.n512) == 4) ggml_rows[n_ggml++] = r;
    }
    fclose(f);
}

/* ggml's figures: BENCH_GGML's rows, then the shared file's (ggml_for takes
 * the first row of a type, so the same-run figures win). */
static void load_ggml(void)
{
    char path[1024];
    const char *extra = getenv("BENCH_GGML");
    if (extra && *extra) load_ggml_file(extra);
    bench_shared_path(path, sizeof path, "golden/llama.cpp/mulmat-perf.md");
    load_ggml_file(path);
}

static const ggml_row *ggml_for(const char *name)
{
    for (int i = 0; i < n_ggml; i++)
        if (strcmp(ggml_rows[i].name, name) == 0) return &ggml_rows[i];
    return NULL;
}

/* ---- per type ---- */

typedef struct {
    const char *name;
    double deq_gvs, dot_gvs;      /* Gvalues/s */
    double mv[2], mm[2];          /* GFLOPS by CPU time, 1 and nt threads */
    double mv_wall, mm_wall;      /* GFLOPS by wall clock, nt threads */
    double mv_gbs;                /* weight GB/s on 1 thread, n=1, by CPU time */
} result;

/* Best of reps: *wall gets the shortest wall time, *cpu the shortest process
 * CPU time divided by the thread count (the wall time the run would take if
 * every thread had its core to itself the whole time). */
static void best_of(int reps, sq_threadpool *tp, int type, const void *W, size_t rb, int64_t rows, const float *X,
                    int64_t n, float *Y, void *work, size_t ws, double *wall, double *cpu)
{
    sq_error e = {0};
    const int nth = sq_threadpool_n_threads(tp);
    *wall = *cpu = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = sq_time_now(), c0 = process_cpu_now();
        if (sq_matmul(tp, type, W, rows, COLS, rb, X, n, Y, work, ws, &e) != SQ_OK) {
            fprintf(stderr, "matmul failed: %s\n", e.msg);
            exit(1);
        }
        const double t = sq_time_now() - t0, c = (process_cpu_now() - c0) / nth;
        if (t < *wall) *wall = t;
        if (c < *cpu) *cpu = c;
    }
}

static bool bench_type(const char *name, sq_threadpool *tp1, sq_threadpool *tpn, result *res)
{
    const int t = sq_type_from_name(name);
    memset(res, 0, sizeof *res);
    res->name = name;
    if (t < 0 || !sq_blocks_can_dot(t) || !sq_blocks_can_quantize(t) || !sq_blocks_can_dequantize(t)) {
        fprintf(stderr, "skip %s: no kernels\n", name);
        return false;
    }
    const sq_type_info *ti = sq_type_info_get(t);
    const size_t rb = sq_row_size(t, COLS);
    /* 16 distinct quantized rows, repeated: contents do not change the speed */
    enum { DISTINCT = 16 };
    float *src = malloc(sizeof(float) * COLS * DISTINCT);
    unsigned long long s = 12345;
    for (size_t i = 0; i < (size_t)COLS * DISTINCT; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        src[i] = (float)((int)((s >> 40) & 0xFFFF) - 32768) / 32768.0f;
    }
    unsigned char *W = sq_aligned_alloc(rb * ROWS);
    float *imx = NULL; /* for the types quantized only with importance weights: all equal */
    if (ti->needs_imatrix == SQ_IMATRIX_REQUIRED) {
        imx = malloc(sizeof(float) * COLS);
        for (int i = 0; imx && i < COLS; i++) imx[i] = 1.0f;
    }
    sq_error e = {0};
    const sq_status qst = W ? sq_quantize_rows(t, src, W, DISTINCT, COLS, imx, &e) : SQ_ENOMEM;
    free(imx);
    if (qst != SQ_OK) {
        fprintf(stderr, "skip %s: %s\n", name, e.msg);
        free(src);
        sq_aligned_free(W);
        return false;
    }
    for (int r = DISTINCT; r < ROWS; r++) memcpy(W + (size_t)r * rb, W + (size_t)(r % DISTINCT) * rb, rb);

    /* dequantize and dot on rows that fit in L2 (4 rows of 4096 values) */
    {
        const int64_t n = 4096;
        const size_t rbs = sq_row_size(t, n);
        float *out = malloc(sizeof(float) * n);
        const int at = ti->vec_dot_type;
        void *xq = malloc(sq_row_size(at, n) + 64);
        sq_quantize_act(at, src, xq, n);
        const int reps = quick ? 200 : 1000;
        double best = 1e30;
        for (int k = 0; k < 5; k++) {
            const double t0 = thread_cpu_now();
            for (int r = 0; r < reps; r++) sq_dequantize_row(t, W + (size_t)(r % 4) * rbs, out, n);
            const double dt = thread_cpu_now() - t0;
            if (dt < best) best = dt;
        }
        res->deq_gvs = (double)n * reps / best / 1e9;
        volatile float sink = 0;
        best = 1e30;
        for (int k = 0; k < 5; k++) {
            const double t0 = thread_cpu_now();
            for (int r = 0; r < reps; r++) sink += sq_vec_dot(t, n, W + (size_t)(r % 4) * rbs, xq);
            const double dt = thread_cpu_now() - t0;
            if (dt < best) best = dt;
        }
        (void)sink;
        res->dot_gvs = (double)n * reps / best / 1e9;
        free(out);
        free(xq);
    }

    /* matrix-vector and matrix-matrix */
    const int64_t nmm = 512;
    float *X = malloc(sizeof(float) * COLS * nmm);
    for (int64_t i = 0; i < (int64_t)COLS * nmm; i++) X[i] = src[i % ((size_t)COLS * DISTINCT)];
    const size_t ws = sq_matmul_work_size(t, COLS, nmm);
    void *work = ws ? sq_aligned_alloc(ws) : NULL;
    float *Y = malloc(sizeof(float) * ROWS * nmm);
    sq_threadpool *pools[2] = {tp1, tpn};
    const int64_t mm_rows = quick ? ROWS / 4 : ROWS;
    for (int p = 0; p < 2; p++) {
        double wall, cpu;
        best_of(quick ? 8 : 30, pools[p], t, W, rb, ROWS, X, 1, Y, work, ws, &wall, &cpu);
        res->mv[p] = 2.0 * ROWS * COLS / cpu / 1e9;
        if (p == 0) res->mv_gbs = (double)rb * ROWS / cpu / 1e9;
        if (p == 1) res->mv_wall = 2.0 * ROWS * COLS / wall / 1e9;
        best_of(quick ? 1 : 2, pools[p], t, W, rb, mm_rows, X, nmm, Y, work, ws, &wall, &cpu);
        res->mm[p] = 2.0 * mm_rows * COLS * nmm / cpu / 1e9;
        if (p == 1) res->mm_wall = 2.0 * mm_rows * COLS * nmm / wall / 1e9;
    }
    free(src);
    free(X);
    free(Y);
    sq_aligned_free(work);
    sq_aligned_free(W);
    return true;
}

int main(void)
{
    quick = getenv("BENCH_QUICK") && atoi(getenv("BENCH_QUICK"));
    int nt = getenv("BENCH_THREADS") ? atoi(getenv("BENCH_THREADS")) : 2;
    if (nt < 1) nt = 1;
    const char *sel = getenv("BENCH_TYPES");
    load_ggml();
    sq_threadpool *tp1 = sq_threadpool_create(1), *tpn = sq_threadpool_create(nt);
    if (!tp1 || !tpn) {
        fprintf(stderr, "cannot create thread pools\n");
        return 1;
    }

    /* read bandwidth over 256 MiB (beyond any cache), best of several */
    const size_t bw_n = (size_t)64 << 20;
    float *bw = sq_aligned_alloc(bw_n * sizeof(float));
    if (!bw) return 1;
    for (size_t i = 0; i < bw_n; i++) bw[i] = (float)(i & 7);
    const double bw1 = read_bandwidth(tp1, bw, bw_n, quick ? 5 : 12);
    const double bwn = read_bandwidth(tpn, bw, bw_n, quick ? 5 : 12);

    printf("# sq block kernels — isa %s, 1 and %d threads\n\n", sq_isa_name(sq_blocks_isa()), nt);
    printf("Memory read bandwidth (same run, by CPU time per thread): %.1f GB/s on 1 thread, %.1f GB/s on %d threads.\n",
           bw1, bwn, nt);
    double pb, pm;
    pool_overhead(tpn, &pb, &pm);
    printf("Thread pool, empty run on %d threads (wake + join): best %.1f µs, median %.1f µs.\n", nt, pb, pm);
    printf("GFLOPS = 2·%d·%d·n / time. '1t' is one thread timed by its CPU time (robust on a shared machine);\n"
           "'%dt wall' is wall clock with %d threads (noisy when other processes use the cores). 'per core' compares\n"
           "our 1t with ggml's %d-thread figure divided by %d; in brackets our %dt wall over ggml's.\n\n",
           ROWS, COLS, nt, nt, nt, nt, nt);
    printf("| type | deq Gval/s | dot Gval/s | n=1 1t | n=1 GB/s 1t (%% of BW) | n=1 %dt wall | n=512 1t | n=512 %dt wall "
           "| ggml n=1 | ours/ggml n=1 per core (wall) | ggml n=512 | ours/ggml n=512 per core (wall) |\n",
           nt, nt);
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (size_t i = 0; i < N_ALL; i++) {
        if (sel && *sel && !bench_list_has(sel, all_types[i])) continue;
        result r;
        if (!bench_type(all_types[i], tp1, tpn, &r)) continue;
        const ggml_row *g = ggml_for(r.name);
        char g1[64] = "–", r1[64] = "–", g512[64] = "–", r512[64] = "–";
        if (g) {
            snprintf(g1, sizeof g1, "%.1f", g->n1);
            snprintf(r1, sizeof r1, "%.2f (%.2f)", r.mv[0] / (g->n1 / nt), r.mv_wall / g->n1);
            snprintf(g512, sizeof g512, "%.1f", g->n512);
            snprintf(r512, sizeof r512, "%.2f (%.2f)", r.mm[0] / (g->n512 / nt), r.mm_wall / g->n512);
        }
        printf("| %s | %.2f | %.2f | %.1f | %.1f (%.0f%%) | %.1f | %.1f | %.1f | %s | %s | %s | %s |\n", r.name,
               r.deq_gvs, r.dot_gvs, r.mv[0], r.mv_gbs, 100.0 * r.mv_gbs / bw1, r.mv_wall, r.mm[0], r.mm_wall, g1, r1,
               g512, r512);
        fflush(stdout);
    }
    sq_aligned_free(bw);
    sq_threadpool_free(tp1);
    sq_threadpool_free(tpn);
    return 0;
}
