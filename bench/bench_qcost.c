/*
 * bench_qcost.c — what each candidate type costs the planner to measure and
 * what it gives: per block-quantized weight type this build quantizes and
 * multiplies, the CPU time per value of quantizing 256-column segments with
 * importance weights (each segment a row of its own, as `sq plan` measures
 * every candidate and `sq quantize` writes a SmarterQuant segment), its bits
 * per weight on such a segment (per-row metadata included), and the
 * importance-weighted relative error Σ imp·(w − q)² / Σ imp·w² on the same
 * data. The data: heavy-tailed rows (a Gaussian times a per-column scale with
 * a few outlier columns) and importances spread over three decades, drawn
 * from a fixed seed; the figures are type-level properties, not a model's.
 *
 * The planner's default candidate list (sq_plan_default_types) leaves out the
 * types whose quantizer is an order of magnitude dearer than ggml's K-quants
 * (docs/plan.md); this prints the figures that choice rests on, slowest last.
 *
 * Environment: BENCH_TYPES=iq4_k,q4_K (subset), BENCH_ROWS=N (segments per
 * type, default 512), BENCH_NOIMP=1 (quantize without importance weights,
 * where the type allows it; the error is still weighted). Single-threaded; the time is the thread's CPU time, so
 * a busy machine changes it little.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq/blocks.h"
#include "sq/plan.h"
#include "sq/types.h"
#include "benchutil.h"

#define COLS 256

typedef struct cost {
    int type;
    double bpw, ns_per_value, rel;
} cost;

static double thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A uniform draw in (0, 1) from the benchmark's xorshift state. */
static double uniform(uint64_t *s) { return ((double)(bench_xorshift64(s) >> 11) + 0.5) / 9007199254740992.0; }

/* Fills rows × COLS weights and COLS importances (see the file comment). */
static void make_data(float *w, float *imp, int rows)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    float scale[COLS];
    for (int c = 0; c < COLS; c++) {
        scale[c] = (float)(0.5 + uniform(&s));
        if (c % 61 == 7) scale[c] *= 6.0f; /* outlier columns */
        imp[c] = (float)pow(10.0, 3.0 * uniform(&s) - 1.5);
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < COLS; c++) {
            double g = sqrt(-2.0 * log(uniform(&s))) * cos(6.283185307179586 * uniform(&s));
            w[(size_t)r * COLS + c] = (float)(0.02 * g * scale[c]);
        }
}

/* Quantizes the rows to type (timed), dequantizes them and sums the error. */
static int measure(int type, const float *w, const float *imp, int rows, cost *out)
{
    size_t rb = sq_row_size(type, COLS);
    unsigned char *q = malloc(rb * (size_t)rows);
    float *back = malloc(sizeof(float) * COLS);
    sq_error err = {0};
    if (!q || !back) {
        free(q), free(back);
        return -1;
    }
    double t0 = thread_cpu_now();
    const sq_type_info *ti = sq_type_info_get(type);
    const char *noimp = getenv("BENCH_NOIMP");
    bool without = noimp && *noimp && strcmp(noimp, "0") != 0 && ti->needs_imatrix != SQ_IMATRIX_REQUIRED;
    sq_status st = sq_quantize_rows(type, w, q, rows, COLS, without ? NULL : imp, &err);
    double dt = thread_cpu_now() - t0;
    double num = 0, den = 0;
    for (int r = 0; st == SQ_OK && r < rows; r++) {
        sq_dequantize_row(type, q + rb * (size_t)r, back, COLS);
        for (int c = 0; c < COLS; c++) {
            double d = (double)w[(size_t)r * COLS + c] - back[c];
            num += imp[c] * d * d;
            den += imp[c] * (double)w[(size_t)r * COLS + c] * w[(size_t)r * COLS + c];
        }
    }
    free(q), free(back);
    if (st != SQ_OK) {
        fprintf(stderr, "skip %s: %s\n", sq_type_name(type), err.msg);
        return -1;
    }
    *out = (cost){type, rb * 8.0 / COLS, dt * 1e9 / ((double)rows * COLS), den > 0 ? num / den : 0};
    return 0;
}

static int by_cost(const void *a, const void *b)
{
    const cost *x = a, *y = b;
    return (x->ns_per_value > y->ns_per_value) - (x->ns_per_value < y->ns_per_value);
}

int main(void)
{
    const char *list = getenv("BENCH_TYPES");
    const char *rows_env = getenv("BENCH_ROWS");
    int rows = rows_env ? atoi(rows_env) : 512;
    if (rows < 1) rows = 512;
    float *w = malloc(sizeof(float) * COLS * (size_t)rows), imp[COLS];
    cost *res = calloc(SQ_TYPE_COUNT, sizeof *res);
    int defaults[SQ_TYPE_COUNT], n_def = sq_plan_default_types(SQ_PLAN_GRAN_SEGMENT, defaults, SQ_TYPE_COUNT), n = 0;
    if (!w || !res) return 1;
    make_data(w, imp, rows);
    for (int t = 0; t < SQ_TYPE_COUNT; t++) {
        const sq_type_info *ti = sq_type_info_get(t);
        if (!ti || !ti->is_weight || !ti->is_quantized || !sq_blocks_can_quantize(t) || !sq_blocks_can_dot(t))
            continue;
        if (list && !bench_list_has(list, ti->name)) continue;
        if (sq_row_size(t, COLS) == 0) continue;
        if (measure(t, w, imp, rows, &res[n]) == 0) n++;
    }
    qsort(res, (size_t)n, sizeof *res, by_cost);
    printf("%d segments of %d values per type, 1 thread (CPU time)\n", rows, COLS);
    printf("| type | bpw (256 columns) | quantize ns/value | rel. error | default candidate (segment plans) |\n");
    printf("|---|---:|---:|---:|---|\n");
    for (int i = 0; i < n; i++) {
        int dflt = 0;
        for (int k = 0; k < n_def; k++) dflt |= defaults[k] == res[i].type;
        printf("| %s | %.4f | %.1f | %.3e | %s |\n", sq_type_name(res[i].type), res[i].bpw, res[i].ns_per_value,
               res[i].rel, dflt ? "yes" : "no");
    }
    free(w), free(res);
    return 0;
}
