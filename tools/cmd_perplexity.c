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
            "  -m, --model FILE            GGUF model (llama architecture, plain or SmarterQuant tensors)\n"
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
} ui_state;

static void print_kld_header(void)
{
    printf("\nchunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
           "\xce\x94p RMS            Same top p\n");
}

/* Covariance of the two log-PPL estimates, as llama.cpp computes it. */
static double covariance(double a, double b, double ab, uint64_t n)
{
    if (n < 10) return 0.0;
    return (ab / (double)n - (a / (double)n) * (b / (double)n)) / (double)(n - 1);
}

/* Prints one chunk: the running PPL, or a KL table row. */
static void on_chunk(void *ud, const sq_ppl_report *r)
{
    ui_state *u = ud;
    if (r->chunk == 1)
        fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", r->seconds,
                r->seconds * r->n_chunks / 60.0);
    if (!u->kld) {
        printf("[%d]%.4f,", r->chunk, r->ppl);
        fflush(stdout);
        return;
    }
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
    if (r->chunk == 1) print_kld_header();
    printf("%4d    %9.4f \xc2\xb1 %9.4f    %10.5f \xc2\xb1 %10.5f    %10.5f \xc2\xb1 %10.5f    %6.3f \xc2\xb1 %6.3f %%"
           "    %6.3f \xc2\xb1 %6.3f %%\n",
           r->chunk, exp(lp), exp(lp) * lpu, lp - lb, sqrt(fmax(0, lpu * lpu + lbu * lbu - 2 * cov)), kl, klu,
           100 * rms, 100 * rmsu, 100 * top, 100 * topu);
    fflush(stdout);
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

int sq_cmd_perplexity(int argc, char **argv)
{
    const char *model_path = NULL, *text_path = NULL, *kld_file = NULL;
    int n_ctx = 512, n_chunks = -1, n_batch = 2048, n_threads = sq_default_threads(), kv_type = SQ_TYPE_F16;
    bool kld = false;
    const sq_engine_args eng = {&model_path, &text_path, &n_ctx, 8, &n_batch, &n_threads, &kv_type};
    sq_args a = sq_args_start("perplexity", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_engine(&a, &eng)) continue;
        if (sq_args_is(&a, NULL, "--chunks")) {
            const char *v = sq_args_value(&a);
            if (v && !sq_arg_chunks("perplexity", "--chunks", v, &n_chunks)) return 2;
        } else if (sq_args_is(&a, NULL, "--kl-divergence-base")) {
            kld_file = sq_args_value(&a);
        } else if (sq_args_is(&a, NULL, "--kl-divergence")) {
            kld = true;
        } else {
            return sq_args_unknown(&a);
        }
    }
    if (a.failed) return 2;
    if (!model_path || (!text_path && !kld) || n_ctx < 8 || n_batch < 1 || n_threads < 1 || (kld && !kld_file)) {
        fprintf(stderr, "sq perplexity: %s\n",
                !model_path                ? "a model (-m) is required"
                : kld && !kld_file         ? "--kl-divergence needs --kl-divergence-base FILE"
                : !text_path && !kld       ? "a text file (-f) is required"
                                           : "-c must be >= 8, -b and -t >= 1");
        sq_usage_hint("perplexity");
        return 2;
    }
    if (kld_file && !kld && (sq_gguf_same_file(kld_file, model_path) || sq_gguf_same_file(kld_file, text_path))) {
        /* writing the base file must not replace the model or the text */
        fprintf(stderr, "sq perplexity: --kl-divergence-base %s is the input %s; it would be replaced\n", kld_file,
                sq_gguf_same_file(kld_file, model_path) ? model_path : text_path);
        return 2;
    }
    if (n_batch > n_ctx) n_batch = n_ctx;
    if (kld_file && !kld) {
        /* a typo in the folder fails now, not after the model is loaded; an
         * interrupted run leaves no temporary base file (it grows all run long) */
        if (!sq_arg_output_ok("perplexity", kld_file)) return 1;
        sq_install_cleanup_handlers();
    }

    sq_error err = {0};
    sq_engine_loaded L = {0};
    char *text = NULL;
    sq_token *toks = NULL;
    int rc = 1;
    if (sq_engine_load(&eng, &L, &err)) goto fail;
    const sq_model *m = L.model;
    const sq_hparams *hp = sq_model_hparams(m);
    fprintf(stderr, "model: %s (%s, %.2f MiB, %.2f M params, %lld layers, %d SmarterQuant tensors)\n", model_path,
            sq_model_type_desc(m), sq_model_weight_bytes(m) / 1048576.0, sq_model_n_params(m) / 1e6,
            (long long)hp->n_layer, hp->n_sq_tensors);

    size_t n_tok = 0;
    if (!kld) {
        size_t len = 0;
        text = sq_read_file("perplexity", text_path, &len);
        if (!text) goto out;
        if (sq_tokenize_text("perplexity", L.vocab, text, len, &toks, &n_tok, &err)) goto fail;
        const size_t n_chunk_max = n_tok / (size_t)n_ctx;
        const size_t nc = n_chunks > 0 && (size_t)n_chunks < n_chunk_max ? (size_t)n_chunks : n_chunk_max;
        fprintf(stderr, "perplexity: calculating perplexity over %zu chunks, n_ctx=%d, batch_size=%d, n_seq=1\n", nc,
                n_ctx, n_batch);
    }
    const sq_token bos = sq_vocab_add_bos(L.vocab) ? sq_vocab_bos(L.vocab) : -1;
    ui_state ui = {kld};
    sq_ppl_params pp = {n_ctx, n_chunks, kld ? NULL : kld_file, kld ? kld_file : NULL, on_chunk, &ui};
    sq_ppl_result res;
    if (sq_perplexity(L.ctx, toks, n_tok, bos, &pp, &res, &err)) {
        printf("\n");
        goto fail;
    }
    printf("\n");
    if (kld) {
        print_kld_final(&res);
    } else {
        printf("Final estimate: PPL = %.4f +/- %.5f\n", res.ppl, res.ppl_err);
        if (kld_file) fprintf(stderr, "perplexity: base log-probabilities written to %s\n", kld_file);
    }
    sq_ppl_result_free(&res);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "sq perplexity: %s\n", err.msg);
out:
    free(toks);
    free(text);
    sq_engine_free(&L);
    return rc;
}
