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
            "  -m, --model FILE        GGUF model (llama, qwen2, qwen3, qwen3moe, gemma3 or phi3)\n"
            "  -f, --file FILE         calibration text\n"
            "  -o, --output FILE       output file (default imatrix.gguf)\n"
            "  -c, --ctx-size N        chunk length in tokens (default 512)\n"
            "      --chunks N          use at most N chunks (default -1: all the text holds)\n"
            "  -b, --batch-size N      tokens per forward step (default 2048, capped at CTX)\n"
            "  -t, --threads N         threads (default: online CPUs)\n"
            "      --in-file FILE      add an existing imatrix (llama.cpp GGUF or legacy .dat) first;\n"
            "                          may be given several times (continue or merge runs)\n"
            "      --process-output    also collect output.weight (llama-imatrix --process-output)\n"
            "  -ofreq, --output-frequency N\n"
            "                          write the imatrix so far to the output file every N chunks\n"
            "                          (atomically; default 10, as llama-imatrix; 0: only at the end),\n"
            "                          so that an interrupted run keeps what it computed\n"
            "      --kv-type f16|f32   KV cache precision (default f16, as llama.cpp)\n"
            "  -h, --help              this text\n");
}

/* What a run needs in its chunk callback. */
typedef struct imatrix_ui {
    sq_progress progress;
    const sq_imatrix_collector *ic;
    const char *out_path;
    int n_ctx, out_freq;
} imatrix_ui;

/* After each chunk: the running PPL ("[3]22.1234,", llama-imatrix's stdout,
 * eight to a line), the progress display, and every --output-frequency
 * chunks the imatrix so far, written atomically over OUT (an interrupted run
 * keeps the last one). */
static void on_chunk(void *ud, const sq_imatrix_progress *p)
{
    imatrix_ui *u = ud;
    if (p->chunk == 1) {
        fprintf(stderr, "imatrix: %.2f seconds per pass - ETA %.2f minutes\n", p->seconds,
                p->seconds * p->n_chunks / 60.0);
        sq_progress_start(&u->progress, "imatrix", "chunks", p->n_chunks);
    }
    sq_progress_printf(&u->progress, "[%d]%.4f,%s", p->chunk, p->ppl,
                       p->chunk % 8 == 0 || p->chunk == p->n_chunks ? "\n" : "");
    if (u->out_freq > 0 && p->chunk % u->out_freq == 0 && p->chunk < p->n_chunks) {
        sq_error err = {0};
        sq_progress_clear(&u->progress);
        if (sq_imatrix_collector_write(u->ic, u->out_path, u->n_ctx, &err) == SQ_OK)
            fprintf(stderr, "imatrix: stored the data of %d chunks in %s\n", p->chunk, u->out_path);
        else
            fprintf(stderr, "sq imatrix: warning: saving after %d chunks: %s\n", p->chunk, err.msg);
    }
    sq_progress_update(&u->progress, p->chunk, "PPL %.4f", p->ppl);
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

/* What the command line asked for. */
typedef struct imatrix_opts {
    const char *model_path, *text_path, *out_path;
    const char *in_files[64];
    int n_in;
    int n_ctx, n_chunks, n_batch, n_threads, kv_type, out_freq;
    bool process_output;
} imatrix_opts;

/* The requirements between flags, and an output that would replace an input;
 * NULL when all is well, else the message. */
static const char *check_opts(const imatrix_opts *o)
{
    static char same_msg[512];
    const bool compute = o->model_path || o->text_path;
    if (compute && !o->model_path) return "a model (-m) is required with -f";
    if (compute && !o->text_path) return "a calibration text (-f) is required with -m";
    if (!compute && o->n_in == 0) return "give -m MODEL -f TEXT, or --in-file files to merge";
    const char *inputs[66] = {o->model_path, o->text_path};
    for (int k = 0; k < o->n_in; k++) inputs[2 + k] = o->in_files[k];
    for (int k = 0; k < 2 + o->n_in; k++)
        if (inputs[k] && sq_gguf_same_file(o->out_path, inputs[k])) {
            snprintf(same_msg, sizeof same_msg, "-o %s is the input %s; it would be replaced (choose another output)",
                     o->out_path, inputs[k]);
            return same_msg;
        }
    return NULL;
}

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, imatrix_opts *o, const sq_engine_args *eng)
{
    sq_args a = sq_args_start("imatrix", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_engine(&a, eng)) continue;
        if (sq_args_is(&a, "-o", "--output")) {
            const char *v = sq_args_value(&a);
            if (v) o->out_path = v;
        } else if (sq_args_is(&a, NULL, "--chunks")) {
            const char *v = sq_args_value(&a);
            if (v && !sq_arg_chunks("imatrix", "--chunks", v, &o->n_chunks)) return 2;
        } else if (sq_args_is(&a, "-ofreq", "--output-frequency")) {
            sq_args_int(&a, 0, 1000000000, &o->out_freq);
        } else if (sq_args_is(&a, NULL, "--in-file")) {
            if (o->n_in == 64) return sq_usage_error("imatrix", "at most 64 --in-file");
            const char *v = sq_args_value(&a);
            if (v) o->in_files[o->n_in++] = v;
        } else if (sq_args_is(&a, NULL, "--process-output")) {
            o->process_output = true;
        } else {
            return sq_args_unknown(&a);
        }
    }
    if (a.failed) return 2;
    const char *why = check_opts(o);
    if (why) return sq_usage_error("imatrix", "%s", why);
    if (o->n_batch > o->n_ctx) o->n_batch = o->n_ctx;
    return sq_arg_output_ok("imatrix", o->out_path) ? -1 : 1;
}

/* Loads the model and the text and runs the chunks through it, adding to
 * the collector (saving as it goes). Returns 0, or 1 after a message. */
static int compute(const imatrix_opts *o, const sq_engine_args *eng, sq_imatrix_collector *ic)
{
    sq_error err = {0};
    sq_engine_loaded L = {0};
    char *text = NULL;
    sq_token *toks = NULL;
    int rc = 1;
    if (sq_engine_load(eng, &L, &err)) goto fail;
    const sq_model *m = L.model;
    fprintf(stderr, "model: %s (%s, %.2f MiB, %.2f M params, %lld layers)\n", o->model_path, sq_model_type_desc(m),
            sq_model_weight_bytes(m) / 1048576.0, sq_model_n_params(m) / 1e6, (long long)sq_model_hparams(m)->n_layer);
    size_t len = 0, n_tok = 0;
    if (!(text = sq_read_file("imatrix", o->text_path, &len))) goto out;
    if (sq_tokenize_text("imatrix", L.vocab, text, len, &toks, &n_tok, &err)) goto fail;
    const size_t max_chunks = n_tok / (size_t)o->n_ctx;
    fprintf(stderr, "imatrix: computing over %zu chunks, n_ctx=%d, batch_size=%d, %d threads\n",
            o->n_chunks > 0 && (size_t)o->n_chunks < max_chunks ? (size_t)o->n_chunks : max_chunks, o->n_ctx,
            o->n_batch, o->n_threads);
    if (sq_imatrix_collector_add_dataset(ic, o->text_path, &err)) goto fail; /* in the files saved as it goes */
    const sq_token bos = sq_vocab_add_bos(L.vocab) ? sq_vocab_bos(L.vocab) : -1;
    imatrix_ui ui = {.ic = ic, .out_path = o->out_path, .n_ctx = o->n_ctx, .out_freq = o->out_freq};
    sq_imatrix_run_params rp = {o->n_ctx, o->n_chunks, on_chunk, &ui};
    double ppl = 0;
    const double t0 = sq_time_now();
    const sq_status st = sq_imatrix_collect(ic, L.ctx, toks, n_tok, bos, &rp, &ppl, &err);
    sq_progress_end(&ui.progress);
    if (st != SQ_OK) {
        sq_progress_printf(NULL, "\n");
        goto fail;
    }
    sq_progress_printf(NULL, "Final estimate: PPL = %.4f\n", ppl);
    fprintf(stderr, "imatrix: %.2f s\n", sq_time_now() - t0);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "sq imatrix: %s\n", err.msg);
out:
    free(toks);
    free(text);
    sq_engine_free(&L);
    return rc;
}

int sq_cmd_imatrix(int argc, char **argv)
{
    imatrix_opts o = {.out_path = "imatrix.gguf", .n_ctx = 512, .n_chunks = -1, .n_batch = 2048,
                      .n_threads = sq_default_threads(), .kv_type = SQ_TYPE_F16, .out_freq = 10};
    const sq_engine_args eng = {&o.model_path, &o.text_path, &o.n_ctx, 16, &o.n_batch, &o.n_threads, &o.kv_type};
    const int prc = parse_args(argc, argv, &o, &eng);
    if (prc >= 0) return prc;
    sq_install_cleanup_handlers(); /* an interrupted write leaves no temporary file */
    sq_error err = {0};
    sq_imatrix_collector *ic = NULL;
    int rc = 1;
    if (sq_imatrix_collector_create(o.process_output, &ic, &err)) goto fail;
    for (int i = 0; i < o.n_in; i++) {
        fprintf(stderr, "imatrix: loading imatrix from '%s'\n", o.in_files[i]);
        if (sq_imatrix_collector_load(ic, o.in_files[i], o.n_ctx, &err)) goto fail;
    }
    if ((o.model_path || o.text_path) && compute(&o, &eng, ic) != 0) goto out;
    if (sq_imatrix_collector_write(ic, o.out_path, o.n_ctx, &err)) goto fail;
    print_stats(ic, o.out_path, o.n_ctx);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "sq imatrix: %s\n", err.msg);
out:
    sq_imatrix_collector_free(ic);
    return rc;
}
