/*
 * cmd_run.c — sq run: generate text from a prompt, streamed token by token;
 * greedy at --temp 0; prompt and generation speed at the end (stderr).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/engine.h"
#include "sq/tokenizer.h"
#include "sq/types.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq run -m MODEL [-p PROMPT | -f FILE] [options]\n"
            "\n"
            "Generates text after the prompt and streams it to stdout; speed goes to stderr.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE       GGUF model (llama, qwen2, qwen3, qwen3moe, gemma3, phi3; plain or SmarterQuant)\n"
            "  -p, --prompt TEXT      prompt (default: empty, i.e. only BOS)\n"
            "  -f, --file FILE        read the prompt from a file\n"
            "  -n, --n-predict N      tokens to generate (default 128; -1: until end of text or context)\n"
            "      --temp T           temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K          keep the K most likely tokens (default 40; 0 = off)\n"
            "      --top-p P          nucleus sampling threshold (default 0.95; 1 = off)\n"
            "  -s, --seed S           random seed (default 42)\n"
            "  -t, --threads N        threads (default: online CPUs)\n"
            "  -c, --ctx-size N       context length (default: the model's, at most 4096)\n"
            "  -b, --batch-size N     prompt tokens per forward step (default 512)\n"
            "      --kv-type f16|f32  KV cache precision (default f16)\n"
            "      --no-echo          do not print the prompt before the generated text\n"
            "  -h, --help             this text\n");
}

/* What the command line asked for. */
typedef struct run_opts {
    const char *model_path, *prompt, *file;
    int n_predict, n_threads, n_ctx, n_batch, kv_type;
    sq_sampler_params sp;
    bool echo;
} run_opts;

/* --temp, --top-k, --top-p, -s/--seed. Returns whether the argument is one
 * of them (a->failed after a bad value). */
static bool sampling_flag(sq_args *a, sq_sampler_params *sp)
{
    if (sq_args_is(a, NULL, "--temp")) {
        sq_args_float(a, 0.0, 1e6, &sp->temp);
    } else if (sq_args_is(a, NULL, "--top-k")) {
        sq_args_int(a, 0, 1000000000, &sp->top_k);
    } else if (sq_args_is(a, NULL, "--top-p")) {
        sq_args_float(a, 0.0, 1.0, &sp->top_p);
    } else if (sq_args_is(a, "-s", "--seed")) {
        const char *flag = sq_args_cur(a), *v = sq_args_value(a);
        if (!v) return true;
        char *end = NULL;
        errno = 0;
        sp->seed = strtoull(v, &end, 10);
        if (end == v || *end || errno || *v == '-') {
            fprintf(stderr, "sq run: %s '%s': want a non-negative integer\n", flag, v);
            a->failed = true;
        }
    } else {
        return false;
    }
    return true;
}

/* -p/--prompt, -n/--n-predict, --no-echo. */
static bool run_flag(sq_args *a, run_opts *o)
{
    if (sq_args_is(a, "-p", "--prompt")) {
        const char *v = sq_args_value(a);
        if (v) o->prompt = v;
    } else if (sq_args_is(a, "-n", "--n-predict")) {
        sq_args_int(a, -1, 1000000000, &o->n_predict);
    } else if (sq_args_is(a, NULL, "--no-echo")) {
        o->echo = false;
    } else {
        return false;
    }
    return true;
}

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, run_opts *o, const sq_engine_args *eng)
{
    sq_args a = sq_args_start("run", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (!sq_args_engine(&a, eng) && !sampling_flag(&a, &o->sp) && !run_flag(&a, o)) return sq_args_unknown(&a);
    }
    if (a.failed) return 2;
    if (!o->model_path) return sq_usage_error("run", "a model (-m) is required");
    return -1;
}

/* The prompt's tokens (BOS and the text; BOS or token 0 alone for an empty
 * prompt without BOS). Returns 0, or 1 after a message. */
static int prompt_tokens(const run_opts *o, const sq_vocab *voc, sq_token **toks, size_t *n_tok)
{
    sq_error err = {0};
    if (sq_tokenize(voc, o->prompt, strlen(o->prompt), true, true, toks, n_tok, &err)) {
        fprintf(stderr, "sq run: %s\n", err.msg);
        return 1;
    }
    if (*n_tok == 0) {
        *toks = malloc(sizeof(sq_token));
        if (!*toks) {
            fprintf(stderr, "sq run: out of memory\n");
            return 1;
        }
        (*toks)[0] = sq_vocab_bos(voc) >= 0 ? sq_vocab_bos(voc) : 0;
        *n_tok = 1;
    }
    if ((int)*n_tok >= o->n_ctx) {
        fprintf(stderr, "sq run: the prompt has %zu tokens; the context holds %d (raise -c)\n", *n_tok, o->n_ctx);
        return 1;
    }
    return 0;
}

/* Evaluates the prompt, then samples and streams tokens until -n, the end
 * of text or a full context; the speeds go to stderr. Returns 0 or 1. */
static int generate(const run_opts *o, sq_engine_loaded *L, sq_sampler *smp, const sq_token *toks, size_t n_tok)
{
    sq_error err = {0};
    sq_context *c = L->ctx;
    if (o->echo) sq_progress_printf(NULL, "%s", o->prompt);
    const double t0 = sq_time_now();
    if (sq_eval(c, toks, (int)n_tok, 1, &err)) goto fail;
    const double t_prompt = sq_time_now() - t0;
    const int n_vocab = (int)sq_model_hparams(L->model)->n_vocab;
    int n_gen = 0;
    bool full = false;
    const double t1 = sq_time_now();
    while (o->n_predict < 0 || n_gen < o->n_predict) {
        const sq_token t = sq_sampler_sample(smp, sq_get_logits(c), n_vocab);
        if (sq_vocab_is_eog(L->vocab, t)) break;
        size_t len = 0;
        const char *piece = sq_vocab_piece(L->vocab, t, false, &len);
        fwrite(piece, 1, len, stdout);
        sq_stdout_flush_or_die();
        n_gen++;
        if (o->n_predict >= 0 && n_gen >= o->n_predict) break;
        if ((full = sq_context_n_past(c) >= o->n_ctx)) break;
        if (sq_eval(c, &t, 1, 1, &err)) goto fail;
    }
    const double t_gen = sq_time_now() - t1;
    sq_progress_printf(NULL, "\n");
    if (full) /* not what -n asked for: say why */
        fprintf(stderr, "sq run: stopped after %d tokens: the context of %d tokens is full; raise -c for more\n", n_gen,
                o->n_ctx);
    fprintf(stderr, "\nprompt: %zu tokens in %.3f s (%.2f tokens/s); generation: %d tokens in %.3f s (%.2f tokens/s)\n",
            n_tok, t_prompt, t_prompt > 0 ? n_tok / t_prompt : 0.0, n_gen, t_gen, t_gen > 0 ? n_gen / t_gen : 0.0);
    return 0;
fail:
    fprintf(stderr, "sq run: %s\n", err.msg);
    return 1;
}

int sq_cmd_run(int argc, char **argv)
{
    run_opts o = {.prompt = "", .n_predict = 128, .n_threads = sq_default_threads(), .n_batch = 512,
                  .kv_type = SQ_TYPE_F16, .sp = {0.8f, 40, 0.95f, 42}, .echo = true};
    const sq_engine_args eng = {&o.model_path, &o.file, &o.n_ctx, 0, &o.n_batch, &o.n_threads, &o.kv_type};
    const int prc = parse_args(argc, argv, &o, &eng);
    if (prc >= 0) return prc;
    char *file_text = NULL;
    if (o.file) {
        if (!(file_text = sq_read_file("run", o.file, NULL))) return 1;
        o.prompt = file_text;
    }
    sq_error err = {0};
    sq_engine_loaded L = {0};
    sq_sampler *smp = NULL;
    sq_token *toks = NULL;
    size_t n_tok = 0;
    int rc = 1;
    if (sq_engine_load(&eng, &L, &err)) /* sets n_ctx when -c was 0 */
        fprintf(stderr, "sq run: %s\n", err.msg);
    else if (prompt_tokens(&o, L.vocab, &toks, &n_tok) == 0) {
        if (!(smp = sq_sampler_create(&o.sp))) fprintf(stderr, "sq run: out of memory\n");
        else rc = generate(&o, &L, smp, toks, n_tok);
    }
    free(toks);
    free(file_text);
    sq_sampler_free(smp);
    sq_engine_free(&L);
    return rc;
}
