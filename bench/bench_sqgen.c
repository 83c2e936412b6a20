/*
 * bench_sqgen.c — token-generation speed of two models in one process,
 * robust against a busy machine: a SmarterQuant model against its plain
 * baseline (scripts/bench_sq_gen.sh builds the pair and runs this).
 *
 * The two models are evaluated alternately, ROUNDS times N = 64 single
 * tokens each from an empty cache; every token is timed on its own. On a
 * shared 2-core machine a whole run is often slowed by other processes,
 * but most single tokens (well under a millisecond) run undisturbed, so the
 * fast end of the per-token distribution (95th and 75th percentile of
 * tokens/s) is a stable measure; the median is printed too. Ratio = SQ / plain.
 *
 *   usage: bench_sqgen PLAIN.gguf SQ.gguf [THREADS] [ROUNDS]
 * Without the two files (as under `make bench`) it prints why and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sq/engine.h"

#define N_TOK 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argv[1][0] == '-') {
        printf("bench_sqgen: skipped (usage: bench_sqgen PLAIN.gguf SQ.gguf [THREADS] [ROUNDS]; "
               "scripts/bench_sq_gen.sh builds the pair and runs it)\n");
        return 0;
    }
    const int nt = argc > 3 ? atoi(argv[3]) : 1, rounds = argc > 4 ? atoi(argv[4]) : 30;
    if (nt < 1 || rounds < 1) {
        fprintf(stderr, "bench_sqgen: THREADS and ROUNDS must be positive\n");
        return 1;
    }
    sq_model *m[2] = { NULL, NULL };
    sq_context *c[2] = { NULL, NULL };
    double *tps[2] = { NULL, NULL };
    sq_error e = { 0 };
    int rc = 1;
    for (int k = 0; k < 2; k++) {
        sq_context_params p = sq_context_default_params();
        p.n_threads = nt;
        p.n_ctx = 2 * N_TOK;
        if (sq_model_load(argv[1 + k], &m[k], &e) != SQ_OK || sq_context_create(m[k], &p, &c[k], &e) != SQ_OK) {
            fprintf(stderr, "bench_sqgen: %s: %s\n", argv[1 + k], e.msg);
            goto done;
        }
        tps[k] = malloc((size_t)rounds * N_TOK * sizeof(double));
        if (!tps[k]) goto done;
    }
    const int32_t n_vocab = (int32_t)sq_model_hparams(m[0])->n_vocab;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) {
            sq_kv_clear(c[k]);
            int32_t tok = 1;
            for (int i = 0; i < N_TOK; i++) {
                const double t0 = now();
                if (sq_eval(c[k], &tok, 1, 1, &e) != SQ_OK) {
                    fprintf(stderr, "bench_sqgen: %s: %s\n", argv[1 + k], e.msg);
                    goto done;
                }
                tps[k][r * N_TOK + i] = 1.0 / (now() - t0);
                tok = (int32_t)((tok * 7 + 13) % (n_vocab - 3) + 3);
            }
        }
    const int n = rounds * N_TOK, pct[3] = { 95, 75, 50 };
    for (int k = 0; k < 2; k++) qsort(tps[k], (size_t)n, sizeof(double), cmp_double);
    printf("per-token tokens/s, %d threads, %d x %d tokens each, alternating:\n", nt, rounds, N_TOK);
    for (int q = 0; q < 3; q++) {
        const int i = n * pct[q] / 100;
        printf("  p%d: plain %8.1f  SmarterQuant %8.1f  ratio %.3f\n", pct[q], tps[0][i], tps[1][i],
               tps[1][i] / tps[0][i]);
    }
    rc = 0;
done:
    for (int k = 0; k < 2; k++) {
        sq_context_free(c[k]);
        sq_model_free(m[k]);
        free(tps[k]);
    }
    return rc;
}
