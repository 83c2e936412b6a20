/*
 * cmd_bench.c — sq bench: prompt-processing (ppN: N tokens in one batched
 * evaluation) and generation (tgN: N tokens one at a time) speed, in tokens
 * per second, mean ± standard deviation over repetitions, as a markdown table
 * like llama-bench's; then the peak resident memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/engine.h"
#include "sq/types.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq bench -m MODEL [-m MODEL2 ...] [options]\n"
            "\n"
            "Measures prompt processing (ppN) and generation (tgN) in tokens/s, like llama-bench.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE       GGUF model (repeat to compare several)\n"
            "  -p, --n-prompt N       prompt tokens (default 512; 0 = skip)\n"
            "  -n, --n-gen N          generated tokens (default 128; 0 = skip)\n"
            "  -t, --threads N        threads (default: online CPUs)\n"
            "  -r, --repetitions N    repetitions of each test (default 5)\n"
            "  -b, --batch-size N     prompt tokens per forward step (default 2048, capped at -p)\n"
            "      --kv-type f16|f32  KV cache precision (default f16)\n"
            "  -h, --help             this text\n");
}

/* Mean and sample standard deviation. */
static void stats(const double *v, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0.0;
}

/* Runs one test (pp: n tokens in one sq_eval; tg: n single-token evals) and
 * returns tokens per second, or a negative value on failure (err set). */
static double run_test(sq_context *c, const int32_t *toks, int n, bool pp, sq_error *err)
{
    sq_kv_clear(c);
    const double t0 = sq_time_now();
    if (pp) {
        if (sq_eval(c, toks, n, 1, err)) return -1;
    } else {
        for (int i = 0; i < n; i++)
            if (sq_eval(c, toks + i, 1, 1, err)) return -1;
    }
    const double dt = sq_time_now() - t0;
    return dt > 0 ? n / dt : 0;
}

/* What the command line asked for. */
typedef struct bench_opts {
    const char *models[16];
    int n_models, n_prompt, n_gen, reps, n_batch, kv_type, n_threads;
    bool header_done; /* the table's header is printed before its first row, never before an error */
} bench_opts;

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    sq_args a = sq_args_start("bench", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_is(&a, "-m", "--model")) {
            if (o->n_models == 16) return sq_usage_error("bench", "at most 16 models");
            const char *v = sq_args_value(&a);
            if (v) o->models[o->n_models++] = v;
        } else if (sq_args_is(&a, "-p", "--n-prompt")) {
            sq_args_int(&a, 0, 16777216, &o->n_prompt);
        } else if (sq_args_is(&a, "-n", "--n-gen")) {
            sq_args_int(&a, 0, 16777216, &o->n_gen);
        } else if (sq_args_is(&a, "-t", "--threads")) {
            sq_args_int(&a, 1, 1024, &o->n_threads);
        } else if (sq_args_is(&a, "-r", "--repetitions")) {
            sq_args_int(&a, 1, 1000000, &o->reps);
        } else if (sq_args_is(&a, "-b", "--batch-size")) {
            sq_args_int(&a, 1, 16777216, &o->n_batch);
        } else if (sq_args_is(&a, NULL, "--kv-type")) {
            const char *v = sq_args_value(&a);
            if (v && !sq_arg_kv_type("bench", v, &o->kv_type)) return 2;
        } else {
            return sq_args_unknown(&a);
        }
    }
    if (a.failed) return 2;
    if (!o->n_models) return sq_usage_error("bench", "a model (-m) is required");
    if (o->n_prompt == 0 && o->n_gen == 0) return sq_usage_error("bench", "-p and -n are both 0: nothing to measure");
    return -1;
}

/* One row of the table (the header first, once). */
static void print_row(bench_opts *o, const char *name, const sq_model *m, const char *test, double mean, double sd)
{
    if (!o->header_done) {
        printf("| %-46s |       size |     params | backend    | threads |            test |                  t/s |\n"
               "| %.46s | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: |\n",
               "model", "----------------------------------------------");
        o->header_done = true;
    }
    char tsv[48];
    snprintf(tsv, sizeof tsv, "%.2f \xc2\xb1 %.2f", mean, sd);
    sq_progress_printf(NULL, "| %-46s | %6.2f MiB | %8.2f M | %-10s | %7d | %15s | %21s |\n", name,
                       sq_model_weight_bytes(m) / 1048576.0, sq_model_n_params(m) / 1e6, "CPU", o->n_threads, test,
                       tsv);
}

/* "ARCH LABEL" as llama-bench names a model ("llama Q4_K - Medium"). */
static void model_name(const sq_model *m, char *buf, size_t n)
{
    sq_gguf_str arch = {"?", 1};
    sq_gguf_get_str(sq_model_gguf(m), "general.architecture", &arch, NULL);
    snprintf(buf, n, "%.*s %s", (int)(arch.len < 32 ? arch.len : 32), arch.ptr, sq_model_type_desc(m));
}

/* Loads one model and prints its pp and tg rows; 0, or 1 after a message. */
static int bench_model(bench_opts *o, const char *path)
{
    sq_error err = {0};
    sq_model *m = NULL;
    sq_context *c = NULL;
    int32_t *toks = NULL;
    double *ts = NULL;
    int rc = 1;
    if (sq_model_load(path, &m, &err)) goto fail;
    const int n_tok = o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen;
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = n_tok + 1;
    cp.n_batch = o->n_batch < n_tok ? o->n_batch : n_tok;
    cp.n_threads = o->n_threads;
    cp.kv_type = o->kv_type;
    if (sq_context_create(m, &cp, &c, &err)) goto fail;
    toks = malloc(sizeof(int32_t) * (size_t)n_tok);
    ts = malloc(sizeof(double) * (size_t)o->reps);
    if (!toks || !ts) {
        sq_error_set(&err, SQ_ENOMEM, "out of memory");
        goto fail;
    }
    uint64_t rng[2];
    sq_rng_seed(rng, 1234);
    for (int i = 0; i < n_tok; i++) toks[i] = (int32_t)(sq_rng_uniform(rng) * (float)sq_model_hparams(m)->n_vocab);
    char name[160];
    model_name(m, name, sizeof name);
    for (int test = 0; test < 2; test++) {
        const bool pp = test == 0;
        const int n = pp ? o->n_prompt : o->n_gen;
        if (n == 0) continue;
        /* warm-up (pages the weights in, starts the threads) */
        if (run_test(c, toks, pp ? n : (n < 4 ? n : 4), pp, &err) < 0) goto fail;
        for (int r = 0; r < o->reps; r++)
            if ((ts[r] = run_test(c, toks, n, pp, &err)) < 0) goto fail;
        double mean, sd;
        stats(ts, o->reps, &mean, &sd);
        char test_name[32];
        snprintf(test_name, sizeof test_name, "%s%d", pp ? "pp" : "tg", n);
        print_row(o, name, m, test_name, mean, sd);
    }
    rc = 0;
    goto out;
fail: {
    /* the library's message usually names the file already */
    const bool named = !strncmp(err.msg, path, strlen(path));
    fprintf(stderr, "sq bench: %s%s%s\n", named ? "" : path, named ? "" : ": ", err.msg);
}
out:
    free(toks);
    free(ts);
    sq_context_free(c);
    sq_model_free(m);
    return rc;
}

int sq_cmd_bench(int argc, char **argv)
{
    bench_opts o = {.n_prompt = 512, .n_gen = 128, .reps = 5, .n_batch = 2048, .kv_type = SQ_TYPE_F16,
                    .n_threads = sq_default_threads()};
    const int prc = parse_args(argc, argv, &o);
    if (prc >= 0) return prc;
    int rc = 0;
    for (int mi = 0; mi < o.n_models; mi++) rc |= bench_model(&o, o.models[mi]);
    if (o.header_done) printf("\npeak RSS: %.1f MiB\n", sq_peak_rss_bytes() / 1048576.0);
    return rc;
}
