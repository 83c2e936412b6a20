/*
 * bench_quantize.c — quantize throughput on the demo model (MB of F16 input
 * per second), plain Q4_K_M against SmarterQuant configs, on 1 and 2 threads.
 *
 * Configs (all with llama.cpp's imatrix of the demo model):
 *   plain      Q4_K_M as llama-quantize does it (the baseline)
 *   sq-same    every layer matrix a SmarterQuant tensor whose four types are
 *              the ones Q4_K_M gives it, with a random column permutation:
 *              the same quantization work, so the ratio is SmarterQuant's own
 *              cost (gather, per-segment packing, metadata) — target <= 1.10
 *   sq-mixed   every layer matrix [q6_K, q5_K, q4_K, q4_K], permuted
 *              (more bits in front; informative, different work)
 * Each case runs REPEAT times; the best time counts. Two clocks: wall time
 * (what a user waits) and process CPU time (the work done, all threads summed;
 * steadier on a shared machine). The SmarterQuant ratio is taken on CPU time.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/quantize.h"
#include "benchutil.h"

#define REPEAT 3

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) { return (uint32_t)(bench_xorshift64(&rng) >> 11); }

typedef struct plan_types {
    char names[64][64];
    int types[64];
    int n;
} plan_types;

static void on_plan(void *ud, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    plan_types *pt = ud;
    if (kind != SQ_QEVENT_TENSOR || pt->n >= 64) return;
    snprintf(pt->names[pt->n], sizeof pt->names[0], "%s", t->name);
    pt->types[pt->n++] = t->out_type;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best wall time of REPEAT runs; *cpu gets the best CPU time. */
static double run_once(const char *model, const char *out, const char *imx, int threads,
                       const sq_quantize_sqtensor *sq, int n_sq, uint64_t *in_bytes, double *cpu)
{
    double best = 1e30;
    *cpu = 1e30;
    for (int k = 0; k < REPEAT; k++) {
        sq_quantize_params p;
        memset(&p, 0, sizeof p);
        p.ftype = SQ_FTYPE_Q4_K_M;
        p.n_threads = threads;
        p.output_tensor_type = p.token_embedding_type = -1;
        p.imatrix_path = imx;
        p.sq_tensors = sq;
        p.n_sq_tensors = n_sq;
        sq_quantize_stats st;
        sq_error e = {0};
        const double t0 = sq_time_now(), c0 = cpu_now();
        if (sq_quantize_file(model, out, &p, &st, &e) != SQ_OK) {
            fprintf(stderr, "bench_quantize: %s\n", e.msg);
            exit(1);
        }
        const double dt = sq_time_now() - t0, dc = cpu_now() - c0;
        if (dt < best) best = dt;
        if (dc < *cpu) *cpu = dc;
        *in_bytes = st.in_bytes;
    }
    return best;
}

int main(void)
{
    char model[1024], imx[1024], out[1024];
    bench_shared_path(model, sizeof model, "models/sqdemo-f16.gguf");
    bench_shared_path(imx, sizeof imx, "golden/llama.cpp/sqdemo.imatrix.gguf");
    if (access(model, R_OK) || access(imx, R_OK)) {
        printf("bench_quantize: skipped (%s or %s absent)\n", model, imx);
        return 0;
    }
    if (!sq_blocks_can_quantize(SQ_TYPE_Q4_K) || !sq_blocks_can_quantize(SQ_TYPE_Q6_K)) {
        printf("bench_quantize: skipped (k-quant kernels not in this build)\n");
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(out, sizeof out, "%s/bench_quantize.%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid());

    /* what Q4_K_M gives each tensor (a dry run), to build the sq-same config */
    plan_types pt = {.n = 0};
    {
        sq_quantize_params p;
        memset(&p, 0, sizeof p);
        p.ftype = SQ_FTYPE_Q4_K_M;
        p.output_tensor_type = p.token_embedding_type = -1;
        p.imatrix_path = imx;
        p.dry_run = true;
        p.on_event = on_plan;
        p.event_ud = &pt;
        sq_error e = {0};
        if (sq_quantize_file(model, NULL, &p, NULL, &e) != SQ_OK) {
            fprintf(stderr, "bench_quantize: %s\n", e.msg);
            return 1;
        }
    }
    sq_gguf *g = NULL;
    sq_error e = {0};
    if (sq_gguf_open(model, &g, &e) != SQ_OK) {
        fprintf(stderr, "bench_quantize: %s\n", e.msg);
        return 1;
    }
    static sq_quantize_sqtensor same[64], mixed[64];
    static int32_t *perms[64];
    int n_sq = 0;
    for (int i = 0; i < pt.n; i++) {
        if (strncmp(pt.names[i], "blk.", 4) != 0 || strstr(pt.names[i], "_norm")) continue;
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, pt.names[i]);
        const int64_t C = t->ne[0];
        int32_t *perm = malloc((size_t)C * sizeof *perm);
        for (int64_t j = 0; j < C; j++) perm[j] = (int32_t)j;
        for (int64_t j = C - 1; j > 0; j--) {
            int64_t r = rnd() % (uint64_t)(j + 1);
            int32_t x = perm[j];
            perm[j] = perm[r];
            perm[r] = x;
        }
        perms[n_sq] = perm;
        same[n_sq] = (sq_quantize_sqtensor){t->name, {pt.types[i], pt.types[i], pt.types[i], pt.types[i]}, perm, C};
        mixed[n_sq] = (sq_quantize_sqtensor){t->name, {SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K}, perm, C};
        n_sq++;
    }

    printf("quantize throughput, demo model (%s), Q4_K_M with imatrix, best of %d; %d SmarterQuant tensors\n", model,
           REPEAT, n_sq);
    printf("%-9s %7s %9s %9s %12s %12s %9s %9s\n", "config", "threads", "wall s", "cpu s", "MB/s wall",
           "MB/s cpu", "ratio", "ratio");
    printf("%-9s %7s %9s %9s %12s %12s %9s %9s\n", "", "", "", "", "", "", "(cpu)", "(wall)");
    for (int threads = 1; threads <= 2; threads++) {
        uint64_t in_bytes = 0;
        double c_plain, c_same, c_mixed;
        const double t_plain = run_once(model, out, imx, threads, NULL, 0, &in_bytes, &c_plain);
        const double mb = (double)in_bytes / 1e6;
        printf("%-9s %7d %9.3f %9.3f %12.2f %12.2f %9.3f %9.3f\n", "plain", threads, t_plain, c_plain, mb / t_plain,
               mb / c_plain, 1.0, 1.0);
        const double t_same = run_once(model, out, imx, threads, same, n_sq, &in_bytes, &c_same);
        printf("%-9s %7d %9.3f %9.3f %12.2f %12.2f %9.3f %9.3f%s\n", "sq-same", threads, t_same, c_same, mb / t_same,
               mb / c_same, c_same / c_plain, t_same / t_plain,
               c_same / c_plain <= 1.10 ? "  (target <= 1.10: met)" : "  (target <= 1.10: NOT met)");
        const double t_mixed = run_once(model, out, imx, threads, mixed, n_sq, &in_bytes, &c_mixed);
        printf("%-9s %7d %9.3f %9.3f %12.2f %12.2f %9.3f %9.3f\n", "sq-mixed", threads, t_mixed, c_mixed,
               mb / t_mixed, mb / c_mixed, c_mixed / c_plain, t_mixed / t_plain);
    }
    remove(out);
    for (int i = 0; i < n_sq; i++) free(perms[i]);
    sq_gguf_close(g);
    return 0;
}
