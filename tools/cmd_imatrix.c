/*
 * cmd_imatrix.c — sq imatrix: llama-imatrix's importance matrix (sums of
 * squared input activations per weight column over calibration text),
 * written in llama.cpp's GGUF imatrix format. The work is in
 * src/engine/imatrix_collect.c; this file parses flags and prints.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/gguf.h"
#include "sq/engine.h"
#include "sq/imatrix_collect.h"
#include "sq/tokenizer.h"
#include "sq/types.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq imatrix -m MODEL -f CALIB.txt [options]\n"
            "       sq imatrix --in-file A.gguf --in-file B.gguf [-o OUT]   (merge files only)\n"
            "\n"
            "Computes an importance matrix as llama-imatrix does: the text is tokenized once and cut into\n"
            "chunks of CTX tokens (BOS first, empty KV cache per chunk); for every weight of the blocks the\n"
            "squares of its input activations are summed per column over all tokens (NAME.in_sum2) and the\n"
            "rows are counted (NAME.counts). Written in llama.cpp's GGUF imatrix format, which\n"
            "llama-quantize and sq quantize read.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE        GGUF model (llama architecture)\n"
            "  -f, --file FILE         calibration text\n"
            "  -o, --output FILE       output file (default imatrix.gguf)\n"
            "  -c, --ctx-size N        chunk length in tokens (default 512)\n"
            "      --chunks N          use at most N chunks (default -1: all the text holds)\n"
            "  -b, --batch-size N      tokens per forward step (default 2048, capped at CTX)\n"
            "  -t, --threads N         threads (default: online CPUs)\n"
            "      --in-file FILE      add an existing imatrix (llama.cpp GGUF or legacy .dat) first;\n"
            "                          may be given several times (continue or merge runs)\n"
            "      --process-output    also collect output.weight (llama-imatrix --process-output)\n"
            "      --kv-type f16|f32   KV cache precision (default f16, as llama.cpp)\n"
            "  -h, --help              this text\n");
}

static void on_chunk(void *ud, const sq_imatrix_progress *p)
{
    (void)ud;
    if (p->chunk == 1)
        fprintf(stderr, "imatrix: %.2f seconds per pass - ETA %.2f minutes\n", p->seconds,
                p->seconds * p->n_chunks / 60.0);
    printf("[%d]%.4f,", p->chunk, p->ppl);
    if (p->chunk % 8 == 0 || p->chunk == p->n_chunks) printf("\n");
    fflush(stdout);
}

/* One line: entries, rows, and the spread of the per-column importance. */
static void print_stats(const sq_imatrix_collector *ic, const char *path, int64_t chunk_size)
{
    const int64_t n = sq_imatrix_collector_n_entries(ic);
    double lo = INFINITY, hi = 0, sum = 0;
    uint64_t nv = 0;
    float max_count = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *s, *c;
        int64_t ne0, nm;
        sq_imatrix_collector_entry(ic, i, &s, &c, &ne0, &nm);
        for (int64_t k = 0; k < nm; k++) {
            if (c[k] > max_count) max_count = c[k];
            if (c[k] <= 0) continue;
            for (int64_t j = 0; j < ne0; j++) {
                const double v = (double)s[k * ne0 + j] / (double)c[k];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                sum += v;
                nv++;
            }
        }
    }
    printf("imatrix: %lld entries, %u chunks of %lld tokens (%.0f rows per weight), importance "
           "(in_sum2/counts) mean %.4g min %.4g max %.4g over %llu columns; written to %s\n",
           (long long)n, sq_imatrix_collector_chunk_count(ic, chunk_size), (long long)chunk_size, (double)max_count,
           nv ? sum / (double)nv : 0.0, nv ? lo : 0.0, hi, (unsigned long long)nv, path);
}

int sq_cmd_imatrix(int argc, char **argv)
{
    const char *model_path = NULL, *text_path = NULL, *out_path = "imatrix.gguf";
    const char *in_files[64];
    int n_in = 0;
    int n_ctx = 512, n_chunks = -1, n_batch = 2048, n_threads = sq_default_threads();
    int kv_type = SQ_TYPE_F16;
    bool process_output = false;
    const sq_engine_args eng = {&model_path, &text_path, &n_ctx, 16, &n_batch, &n_threads, &kv_type};
    sq_args a = sq_args_start("imatrix", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_engine(&a, &eng)) continue;
        if (sq_args_is(&a, "-o", "--output")) {
            out_path = sq_args_value(&a);
        } else if (sq_args_is(&a, NULL, "--chunks")) {
            const char *v = sq_args_value(&a);
            if (v && !sq_arg_chunks("imatrix", "--chunks", v, &n_chunks)) return 2;
        } else if (sq_args_is(&a, NULL, "--in-file")) {
            if (n_in == 64) return sq_usage_error("imatrix", "at most 64 --in-file");
            const char *v = sq_args_value(&a);
            if (v) in_files[n_in++] = v;
        } else if (sq_args_is(&a, NULL, "--process-output")) {
            process_output = true;
        } else {
            return sq_args_unknown(&a);
        }
    }
    if (a.failed) return 2;
    const bool compute = model_path || text_path;
    const char *why = NULL;
    if (compute && !model_path) why = "a model (-m) is required with -f";
    else if (compute && !text_path) why = "a calibration text (-f) is required with -m";
    else if (!compute && n_in == 0) why = "give -m MODEL -f TEXT, or --in-file files to merge";
    else if (n_ctx < 16) why = "-c must be at least 16 (llama.cpp ignores products of fewer rows)";
    else if (n_batch < 1 || n_threads < 1) why = "-b and -t must be >= 1";
    /* the output must not replace an input (the model, the text, an --in-file) */
    static char same_msg[512];
    const char *inputs[66] = {model_path, text_path};
    for (int k = 0; k < n_in; k++) inputs[2 + k] = in_files[k];
    for (int k = 0; !why && k < 2 + n_in; k++)
        if (inputs[k] && sq_gguf_same_file(out_path, inputs[k])) {
            snprintf(same_msg, sizeof same_msg, "-o %s is the input %s; it would be replaced (choose another output)",
                     out_path, inputs[k]);
            why = same_msg;
        }
    if (why) {
        fprintf(stderr, "sq imatrix: %s\n", why);
        sq_usage_hint("imatrix");
        return 2;
    }
    if (n_batch > n_ctx) n_batch = n_ctx;
    if (!sq_arg_output_ok("imatrix", out_path)) return 1;

    sq_error err = {0};
    sq_imatrix_collector *ic = NULL;
    sq_engine_loaded L = {0};
    char *text = NULL;
    sq_token *toks = NULL;
    int rc = 1;
    if (sq_imatrix_collector_create(process_output, &ic, &err)) goto fail;
    for (int i = 0; i < n_in; i++) {
        fprintf(stderr, "imatrix: loading imatrix from '%s'\n", in_files[i]);
        if (sq_imatrix_collector_load(ic, in_files[i], n_ctx, &err)) goto fail;
    }
    if (compute) {
        if (sq_engine_load(&eng, &L, &err)) goto fail;
        const sq_model *m = L.model;
        fprintf(stderr, "model: %s (%s, %.2f MiB, %.2f M params, %lld layers)\n", model_path, sq_model_type_desc(m),
                sq_model_weight_bytes(m) / 1048576.0, sq_model_n_params(m) / 1e6,
                (long long)sq_model_hparams(m)->n_layer);
        size_t len = 0, n_tok = 0;
        if (!(text = sq_read_file("imatrix", text_path, &len))) goto out;
        if (sq_tokenize_text("imatrix", L.vocab, text, len, &toks, &n_tok, &err)) goto fail;
        const size_t max_chunks = n_tok / (size_t)n_ctx;
        fprintf(stderr, "imatrix: computing over %zu chunks, n_ctx=%d, batch_size=%d, %d threads\n",
                n_chunks > 0 && (size_t)n_chunks < max_chunks ? (size_t)n_chunks : max_chunks, n_ctx, n_batch,
                n_threads);
        const sq_token bos = sq_vocab_add_bos(L.vocab) ? sq_vocab_bos(L.vocab) : -1;
        sq_imatrix_run_params rp = {n_ctx, n_chunks, on_chunk, NULL};
        double ppl = 0;
        const double t0 = sq_time_now();
        if (sq_imatrix_collect(ic, L.ctx, toks, n_tok, bos, &rp, &ppl, &err)) {
            printf("\n");
            goto fail;
        }
        printf("Final estimate: PPL = %.4f\n", ppl);
        fprintf(stderr, "imatrix: %.2f s\n", sq_time_now() - t0);
        if (sq_imatrix_collector_add_dataset(ic, text_path, &err)) goto fail;
    }
    sq_install_cleanup_handlers(); /* an interrupted write leaves no temporary file */
    if (sq_imatrix_collector_write(ic, out_path, n_ctx, &err)) goto fail;
    print_stats(ic, out_path, n_ctx);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "sq imatrix: %s\n", err.msg);
out:
    free(toks);
    free(text);
    sq_engine_free(&L);
    sq_imatrix_collector_free(ic);
    return rc;
}
