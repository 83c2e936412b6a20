/*
 * cmd_perplexity.c — sq perplexity: llama-perplexity's method and output
 * format (per-chunk running PPL "[1]23.4921,[2]...", "Final estimate: PPL =
 * X +/- Y"), and its KL-divergence mode (--kl-divergence-base FILE to store
 * the reference model's log-probabilities, plus --kl-divergence to compare a
 * model against them).
 */
#include <math.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/tokenizer.h"
#include "sq/types.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq perplexity -m MODEL -f TEXT [options]\n"
            "       sq perplexity -m BASE -f TEXT --kl-divergence-base FILE        (store base log-probs)\n"
            "       sq perplexity -m MODEL --kl-divergence-base FILE --kl-divergence (compare with them)\n"
            "\n"
            "Perplexity as llama-perplexity computes it: the text is tokenized once, cut into chunks of\n"
            "CTX tokens whose first token is replaced by BOS, and the second half of each chunk is scored.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE            GGUF model (llama, qwen2, qwen3, qwen3moe, gemma3, phi3; plain or SmarterQuant)\n"
            "  -f, --file FILE             text to evaluate\n"
            "  -c, --ctx-size N            chunk length in tokens (default 512)\n"
            "      --chunks N              evaluate at most N chunks (default -1: all)\n"
            "  -b, --batch-size N          tokens per forward step (default 2048, capped at CTX)\n"
            "  -t, --threads N             threads (default: online CPUs)\n"
            "      --kv-type f16|f32       KV cache precision (default f16, as llama.cpp)\n"
            "      --kl-divergence-base F  file of base log-probabilities (llama.cpp's format)\n"
            "      --kl-divergence         compare with the base file instead of writing it\n"
            "  -h, --help                  this text\n");
}

typedef struct {
    bool kld;
    sq_progress progress;
} ui_state;

static void print_kld_header(ui_state *u)
{
    sq_progress_printf(&u->progress, "\nchunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence  "
                                     "            \xce\x94p RMS            Same top p\n");
}

/* Covariance of the two log-PPL estimates, as llama.cpp computes it. */
static double covariance(double a, double b, double ab, uint64_t n)
{
    if (n < 10) return 0.0;
    return (ab / (double)n - (a / (double)n) * (b / (double)n)) / (double)(n - 1);
}

/* One KL table row: running PPL, log ratio, KLD, RMS of Δp, same top token. */
static void print_kld_row(ui_state *u, const sq_ppl_report *r)
{
    const sq_kld_sums *k = &r->k;
    double lp, lpu, lb, lbu, kl, klu, pm, pmu;
    sq_mean_and_uncertainty(k->sum_nll, k->sum_nll2, k->count, &lp, &lpu);
    sq_mean_and_uncertainty(k->sum_nll_base, k->sum_nll_base2, k->count, &lb, &lbu);
    const double cov = covariance(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, k->count);
    sq_mean_and_uncertainty(k->sum_kld, k->sum_kld2, k->count, &kl, &klu);
    sq_mean_and_uncertainty(k->sum_p_diff2, k->sum_p_diff4, k->count, &pm, &pmu);
    const double rms = sqrt(pm), rmsu = rms > 0 ? 0.5 / rms * pmu : 0;
    const double top = (double)k->n_same_top / (double)k->count;
    const double topu = k->count > 1 ? sqrt(top * (1 - top) / (double)(k->count - 1)) : 0;
    sq_progress_printf(&u->progress,
                       "%4d    %9.4f \xc2\xb1 %9.4f    %10.5f \xc2\xb1 %10.5f    %10.5f \xc2\xb1 %10.5f    %6.3f \xc2\xb1 "
                       "%6.3f %%    %6.3f \xc2\xb1 %6.3f %%\n",
                       r->chunk, exp(lp), exp(lp) * lpu, lp - lb, sqrt(fmax(0, lpu * lpu + lbu * lbu - 2 * cov)), kl,
                       klu, 100 * rms, 100 * rmsu, 100 * top, 100 * topu);
}

/* Each chunk: the running PPL ("[3]22.1234,", llama-perplexity's stdout) or
 * a KL table row, and the progress display with its ETA. */
static void on_chunk(void *ud, const sq_ppl_report *r)
{
    ui_state *u = ud;
    if (r->chunk == 1) {
        fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", r->seconds,
                r->seconds * r->n_chunks / 60.0);
        sq_progress_start(&u->progress, "perplexity", "chunks", r->n_chunks);
        if (u->kld) print_kld_header(u);
    }
    if (u->kld) print_kld_row(u, r);
    else sq_progress_printf(&u->progress, "[%d]%.4f,", r->chunk, r->ppl);
    sq_progress_update(&u->progress, r->chunk, "PPL %.4f", r->ppl);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama.cpp's interpolated percentile of sorted values. */
static float percentile(const float *v, uint64_t n, float fr)
{
    if (fr <= 0) return v[0];
    if (fr >= 1) return v[n - 1];
    float p = fr * (float)(n - 1);
    uint64_t ip = (uint64_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

/* The end-of-run statistics block of llama-perplexity's KL mode. */
static void print_kld_final(sq_ppl_result *res)
{
    const sq_kld_sums *k = &res->k;
    const uint64_t n = k->count;
    if (n < 100) return;
    qsort(res->kld_values, n, sizeof(float), cmp_float);
    qsort(res->p_diff_values, n, sizeof(float), cmp_float);
    double lp, lpu, lb, lbu;
    sq_mean_and_uncertainty(k->sum_nll, k->sum_nll2, n, &lp, &lpu);
    sq_mean_and_uncertainty(k->sum_nll_base, k->sum_nll_base2, n, &lb, &lbu);
    const double ppl = exp(lp), pplu = ppl * lpu, pb = exp(lb), pbu = pb * lbu;
    const double cov = covariance(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, n);
    printf("====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6f \xc2\xb1 %10.6f\n", ppl, pplu);
    printf("Mean PPL(base)                : %10.6f \xc2\xb1 %10.6f\n", pb, pbu);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * cov / (lpu * lbu));
    const double lr = lp - lb, lru = sqrt(fmax(0, lpu * lpu + lbu * lbu - 2 * cov));
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f \xc2\xb1 %10.6f\n", lr, lru);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f \xc2\xb1 %10.6f\n", exp(lr), exp(lr) * lru);
    const double pcov = ppl * pb * cov;
    printf("Mean PPL(Q)-PPL(base)         : %10.6f \xc2\xb1 %10.6f\n", ppl - pb,
           sqrt(fmax(0, pplu * pplu + pbu * pbu - 2 * pcov)));
    printf("\n====== KL divergence statistics ======\n");
    double kl, klu;
    sq_mean_and_uncertainty(k->sum_kld, k->sum_kld2, n, &kl, &klu);
    const float *kv = res->kld_values;
    printf("Mean    KLD: %10.6f \xc2\xb1 %10.6f\n", kl, klu);
    printf("Maximum KLD: %10.6f\n", kv[n - 1]);
    printf("99.9%%   KLD: %10.6f\n", percentile(kv, n, 0.999f));
    printf("99.0%%   KLD: %10.6f\n", percentile(kv, n, 0.990f));
    printf("95.0%%   KLD: %10.6f\n", percentile(kv, n, 0.950f));
    printf("90.0%%   KLD: %10.6f\n", percentile(kv, n, 0.900f));
    printf("Median  KLD: %10.6f\n", n % 2 == 0 ? 0.5f * (kv[n / 2] + kv[n / 2 - 1]) : kv[n / 2]);
    printf("10.0%%   KLD: %10.6f\n", percentile(kv, n, 0.100f));
    printf(" 5.0%%   KLD: %10.6f\n", percentile(kv, n, 0.050f));
    printf(" 1.0%%   KLD: %10.6f\n", percentile(kv, n, 0.010f));
    printf(" 0.1%%   KLD: %10.6f\n", percentile(kv, n, 0.001f));
    printf("Minimum KLD: %10.6f\n", kv[0]);
    printf("\n====== Token probability statistics ======\n");
    double pd, pdu, pm, pmu;
    sq_mean_and_uncertainty(k->sum_p_diff, k->sum_p_diff2, n, &pd, &pdu);
    const float *pv = res->p_diff_values;
    printf("Mean    \xce\x94p: %6.3f \xc2\xb1 %5.3f %%\n", 100 * pd, 100 * pdu);
    printf("Maximum \xce\x94p: %6.3f%%\n", 100.0 * pv[n - 1]);
    const float fr[] = {0.999f, 0.99f, 0.95f, 0.90f, 0.75f};
    const char *nm[] = {"99.9%", "99.0%", "95.0%", "90.0%", "75.0%"};
    for (int i = 0; i < 5; i++) printf("%-8s\xce\x94p: %6.3f%%\n", nm[i], 100.0 * percentile(pv, n, fr[i]));
    printf("Median  \xce\x94p: %6.3f%%\n", 100.0 * (n % 2 == 0 ? 0.5f * (pv[n / 2] + pv[n / 2 - 1]) : pv[n / 2]));
    const float fr2[] = {0.25f, 0.10f, 0.05f, 0.01f, 0.001f};
    const char *nm2[] = {"25.0%", "10.0%", " 5.0%", " 1.0%", " 0.1%"};
    for (int i = 0; i < 5; i++) printf("%-8s\xce\x94p: %6.3f%%\n", nm2[i], 100.0 * percentile(pv, n, fr2[i]));
    printf("Minimum \xce\x94p: %6.3f%%\n", 100.0 * pv[0]);
    sq_mean_and_uncertainty(k->sum_p_diff2, k->sum_p_diff4, n, &pm, &pmu);
    const double rms = sqrt(pm);
    printf("RMS \xce\x94p    : %6.3f \xc2\xb1 %5.3f %%\n", 100 * rms, rms > 0 ? 100 * 0.5 / rms * pmu : 0.0);
    const double top = (double)k->n_same_top / (double)n;
    printf("Same top p: %6.3f \xc2\xb1 %5.3f %%\n", 100 * top, 100 * sqrt(top * (1 - top) / (double)(n - 1)));
}

/* What the command line asked for. */
typedef struct ppl_opts {
    const char *model_path, *text_path, *kld_file;
    int n_ctx, n_chunks, n_batch, n_threads, kv_type;
    bool kld;
} ppl_opts;

/* Reads the command line into o and checks it; returns -1 to go on, else the
 * exit status. Writing a base file: its folder is checked now (a typo fails
 * before the model is loaded) and an interrupted run leaves no temporary file. */
static int parse_args(int argc, char **argv, ppl_opts *o, const sq_engine_args *eng)
{
    sq_args a = sq_args_start("perplexity", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_engine(&a, eng)) continue;
        if (sq_args_is(&a, NULL, "--chunks")) {
            const char *v = sq_args_value(&a);
            if (v && !sq_arg_chunks("perplexity", "--chunks", v, &o->n_chunks)) return 2;
        } else if (sq_args_is(&a, NULL, "--kl-divergence-base")) {
            o->kld_file = sq_args_value(&a);
        } else if (sq_args_is(&a, NULL, "--kl-divergence")) {
            o->kld = true;
        } else {
            return sq_args_unknown(&a);
        }
    }
    if (a.failed) return 2;
    if (!o->model_path) return sq_usage_error("perplexity", "a model (-m) is required");
    if (o->kld && !o->kld_file) return sq_usage_error("perplexity", "--kl-divergence needs --kl-divergence-base FILE");
    if (!o->text_path && !o->kld) return sq_usage_error("perplexity", "a text file (-f) is required");
    if (o->n_batch > o->n_ctx) o->n_batch = o->n_ctx;
    if (!o->kld_file || o->kld) return -1;
    if (sq_gguf_same_file(o->kld_file, o->model_path) || sq_gguf_same_file(o->kld_file, o->text_path)) {
        fprintf(stderr, "sq perplexity: --kl-divergence-base %s is the input %s; it would be replaced\n", o->kld_file,
                sq_gguf_same_file(o->kld_file, o->model_path) ? o->model_path : o->text_path);
        return 2;
    }
    if (!sq_arg_output_ok("perplexity", o->kld_file)) return 1;
    sq_install_cleanup_handlers();
    return -1;
}

/* Reads and tokenizes the text (not when comparing: the base file holds the
 * tokens) and says how many chunks will be scored. Returns 0, or 1 after a
 * message. */
static int read_text(const ppl_opts *o, const sq_vocab *voc, char **text, sq_token **toks, size_t *n_tok)
{
    if (o->kld) return 0;
    sq_error err = {0};
    size_t len = 0;
    if (!(*text = sq_read_file("perplexity", o->text_path, &len))) return 1;
    int nc = -1;
    if (sq_tokenize_text("perplexity", voc, *text, len, toks, n_tok, &err) == SQ_OK)
        nc = sq_perplexity_n_chunks(*n_tok, o->n_ctx, o->n_chunks, &err);
    if (nc < 0) {
        fprintf(stderr, "sq perplexity: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "perplexity: calculating perplexity over %d chunks, n_ctx=%d, batch_size=%d, n_seq=1\n", nc,
            o->n_ctx, o->n_batch);
    return 0;
}

/* Scores the chunks and prints llama-perplexity's final lines. 0 or 1. */
static int evaluate(const ppl_opts *o, sq_engine_loaded *L, const sq_token *toks, size_t n_tok)
{
    sq_error err = {0};
    ui_state ui = {.kld = o->kld};
    const sq_token bos = sq_vocab_add_bos(L->vocab) ? sq_vocab_bos(L->vocab) : -1;
    sq_ppl_params pp = {o->n_ctx, o->n_chunks, o->kld ? NULL : o->kld_file, o->kld ? o->kld_file : NULL, on_chunk, &ui};
    sq_ppl_result res;
    const sq_status st = sq_perplexity(L->ctx, toks, n_tok, bos, &pp, &res, &err);
    sq_progress_end(&ui.progress);
    sq_progress_printf(NULL, "\n");
    if (st != SQ_OK) {
        fprintf(stderr, "sq perplexity: %s\n", err.msg);
        return 1;
    }
    if (o->kld) {
        print_kld_final(&res);
    } else {
        printf("Final estimate: PPL = %.4f +/- %.5f\n", res.ppl, res.ppl_err);
        if (o->kld_file) fprintf(stderr, "perplexity: base log-probabilities written to %s\n", o->kld_file);
    }
    sq_ppl_result_free(&res);
    sq_stdout_flush_or_die();
    return 0;
}

int sq_cmd_perplexity(int argc, char **argv)
{
    ppl_opts o = {.n_ctx = 512, .n_chunks = -1, .n_batch = 2048, .n_threads = sq_default_threads(),
                  .kv_type = SQ_TYPE_F16};
    const sq_engine_args eng = {&o.model_path, &o.text_path, &o.n_ctx, 8, &o.n_batch, &o.n_threads, &o.kv_type};
    const int prc = parse_args(argc, argv, &o, &eng);
    if (prc >= 0) return prc;
    sq_error err = {0};
    sq_engine_loaded L = {0};
    char *text = NULL;
    sq_token *toks = NULL;
    size_t n_tok = 0;
    int rc = 1;
    if (sq_engine_load(&eng, &L, &err)) {
        fprintf(stderr, "sq perplexity: %s\n", err.msg);
    } else {
        const sq_model *m = L.model;
        fprintf(stderr, "model: %s (%s, %.2f MiB, %.2f M params, %lld layers, %d SmarterQuant tensors)\n",
                o.model_path, sq_model_type_desc(m), sq_model_weight_bytes(m) / 1048576.0,
                sq_model_n_params(m) / 1e6, (long long)sq_model_hparams(m)->n_layer, sq_model_hparams(m)->n_sq_tensors);
        if (read_text(&o, L.vocab, &text, &toks, &n_tok) == 0) rc = evaluate(&o, &L, toks, n_tok);
    }
    free(toks);
    free(text);
    sq_engine_free(&L);
    return rc;
}
