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

int sq_cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = "", *file = NULL;
    int n_predict = 128, n_threads, n_ctx = 0, n_batch = 512, kv_type = SQ_TYPE_F16;
    float temp = 0.8f, top_p = 0.95f;
    int top_k = 40;
    unsigned long long seed = 42;
    bool echo = true;
    n_threads = sq_default_threads();
    const sq_engine_args eng = {&model_path, &file, &n_ctx, 0, &n_batch, &n_threads, &kv_type, usage};
    for (int i = 1; i < argc; i++) {
        const int shared = sq_arg_engine("run", argc, argv, &i, &eng);
        if (shared) { /* consumed (1), usage error (-1) or --help (2) */
            if (shared == 1) continue;
            return shared < 0 ? 2 : 0;
        }
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && has) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--n-predict")) && has) {
            if (!sq_arg_int("run", a, argv[++i], -1, 1000000000, &n_predict)) return 2;
        } else if (!strcmp(a, "--temp") && has) {
            if (!sq_arg_float("run", a, argv[++i], 0.0, 1e6, &temp)) return 2;
        } else if (!strcmp(a, "--top-k") && has) {
            if (!sq_arg_int("run", a, argv[++i], 0, 1000000000, &top_k)) return 2;
        } else if (!strcmp(a, "--top-p") && has) {
            if (!sq_arg_float("run", a, argv[++i], 0.0, 1.0, &top_p)) return 2;
        } else if ((!strcmp(a, "-s") || !strcmp(a, "--seed")) && has) {
            const char *v = argv[++i];
            char *end = NULL;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (end == v || *end || errno || *v == '-') {
                fprintf(stderr, "sq run: %s '%s': want a non-negative integer\n", a, v);
                return 2;
            }
        } else if (!strcmp(a, "--no-echo")) {
            echo = false;
        } else {
            fprintf(stderr, "sq run: unknown or incomplete option '%s'\n", a);
            sq_usage_hint("run");
            return 2;
        }
    }
    if (!model_path || n_threads < 1 || n_batch < 1 || n_ctx < 0) {
        fprintf(stderr, "sq run: %s\n", !model_path ? "a model (-m) is required" : "bad -t, -b or -c value");
        sq_usage_hint("run");
        return 2;
    }
    char *file_text = NULL;
    if (file) {
        file_text = sq_read_file("run", file, NULL);
        if (!file_text) return 1;
        prompt = file_text;
    }

    sq_error err = {0};
    sq_engine_loaded L = {0};
    sq_sampler *smp = NULL;
    sq_token *toks = NULL;
    size_t n_tok = 0;
    int rc = 1;
    if (sq_engine_load(&eng, &L, &err)) goto fail; /* sets n_ctx when -c was 0 */
    const sq_hparams *hp = sq_model_hparams(L.model);
    sq_vocab *voc = L.vocab;
    sq_context *c = L.ctx;
    if (sq_tokenize(voc, prompt, strlen(prompt), true, true, &toks, &n_tok, &err)) goto fail;
    if (n_tok == 0) {
        /* no BOS and no text: start from BOS or token 0 */
        toks = malloc(sizeof(sq_token));
        if (!toks) goto fail;
        toks[0] = sq_vocab_bos(voc) >= 0 ? sq_vocab_bos(voc) : 0;
        n_tok = 1;
    }
    if ((int)n_tok >= n_ctx) {
        fprintf(stderr, "sq run: the prompt has %zu tokens; the context holds %d (raise -c)\n", n_tok, n_ctx);
        goto out;
    }
    sq_sampler_params sp = {temp, top_k, top_p, seed};
    smp = sq_sampler_create(&sp);
    if (!smp) {
        sq_error_set(&err, SQ_ENOMEM, "out of memory");
        goto fail;
    }
    if (echo) {
        fputs(prompt, stdout);
        fflush(stdout);
    }

    const double t0 = sq_time_now();
    if (sq_eval(c, toks, (int)n_tok, 1, &err)) goto fail;
    const double t_prompt = sq_time_now() - t0;
    const int n_vocab = (int)hp->n_vocab;
    int n_gen = 0;
    const double t1 = sq_time_now();
    while (n_predict < 0 || n_gen < n_predict) {
        const sq_token t = sq_sampler_sample(smp, sq_get_logits(c), n_vocab);
        if (sq_vocab_is_eog(voc, t)) break;
        size_t len = 0;
        const char *piece = sq_vocab_piece(voc, t, false, &len);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        n_gen++;
        if (sq_context_n_past(c) >= n_ctx || (n_predict >= 0 && n_gen >= n_predict)) break;
        if (sq_eval(c, &t, 1, 1, &err)) goto fail;
    }
    const double t_gen = sq_time_now() - t1;
    printf("\n");
    fprintf(stderr, "\nprompt: %zu tokens in %.3f s (%.2f tokens/s); generation: %d tokens in %.3f s (%.2f tokens/s)\n",
            n_tok, t_prompt, t_prompt > 0 ? n_tok / t_prompt : 0.0, n_gen, t_gen, t_gen > 0 ? n_gen / t_gen : 0.0);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "sq run: %s\n", err.msg);
out:
    free(toks);
    free(file_text);
    sq_sampler_free(smp);
    sq_engine_free(&L);
    return rc;
}
