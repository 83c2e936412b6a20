/*
 * bench_imatrix.c — what importance-matrix collection costs: one chunk of the
 * demo model (models/sqdemo-f16.gguf) evaluated with all logits, (a) with no
 * hook (the baseline), (b) with an empty hook (the cost of the hook call
 * itself) and (c) with the imatrix collector attached, each as the ratio to
 * (a) measured in the same run. Single thread, process CPU time, best of N,
 * so other work on a shared machine does not count.
 *
 * Environment: BENCH_CTX (chunk length, default 512), BENCH_REPS (default 5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq/engine.h"
#include "sq/imatrix_collect.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void empty_hook(void *user, const char *name, const float *X, int64_t n_rows, int64_t n_cols)
{
    (void)name;
    (void)n_cols;
    *(int64_t *)user += n_rows + (X != NULL);
}

/* Best CPU time of reps evaluations of the chunk. */
static double time_chunk(sq_context *c, const int32_t *toks, int n, int reps)
{
    double best = 1e30;
    sq_error e = {0};
    for (int r = 0; r < reps; r++) {
        sq_kv_clear(c);
        const double t0 = cpu_now();
        if (sq_eval(c, toks, n, n, &e)) {
            fprintf(stderr, "eval: %s\n", e.msg);
            exit(1);
        }
        const double t = cpu_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(void)
{
    const char *env = getenv("BENCH_CTX");
    const int n = env ? atoi(env) : 512;
    env = getenv("BENCH_REPS");
    const int reps = env ? atoi(env) : 5;
    sq_model *m = NULL;
    sq_context *c = NULL;
    sq_error e = {0};
    if (sq_model_load("models/sqdemo-f16.gguf", &m, &e)) {
        fprintf(stderr, "bench_imatrix: %s\n", e.msg);
        return 1;
    }
    sq_context_params p = sq_context_default_params();
    p.n_ctx = n;
    p.n_batch = n;
    p.n_threads = 1;
    if (sq_context_create(m, &p, &c, &e)) {
        fprintf(stderr, "bench_imatrix: %s\n", e.msg);
        sq_model_free(m);
        return 1;
    }
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    const int64_t nv = sq_model_hparams(m)->n_vocab;
    for (int i = 0; i < n; i++) toks[i] = (int32_t)((i * 7919 + 13) % nv);

    const double base = time_chunk(c, toks, n, reps);
    int64_t seen = 0;
    sq_context_set_matmul_hook(c, empty_hook, &seen);
    const double hooked = time_chunk(c, toks, n, reps);
    sq_imatrix_collector *ic = NULL;
    sq_imatrix_collector_create(false, &ic, &e);
    sq_imatrix_collector_attach(ic, c);
    const double coll = time_chunk(c, toks, n, reps);
    sq_imatrix_collector_detach(c);

    printf("one chunk of %d tokens, demo model, 1 thread, CPU time (best of %d)\n", n, reps);
    printf("  no hook (baseline)   %8.1f ms   1.000\n", 1e3 * base);
    printf("  empty hook           %8.1f ms   %.3f\n", 1e3 * hooked, hooked / base);
    printf("  imatrix collector    %8.1f ms   %.3f\n", 1e3 * coll, coll / base);
    sq_imatrix_collector_free(ic);
    free(toks);
    sq_context_free(c);
    sq_model_free(m);
    return seen > 0 ? 0 : 1;
}
