/*
 * tools/cmds.h — the subcommands of build/sq, one file each (tools/cmd_NAME.c).
 * Each takes the arguments after its name (argv[0] is "sq NAME") and returns
 * the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef SQ_TOOLS_CMDS_H
#define SQ_TOOLS_CMDS_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "progress.h"
#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/tokenizer.h"

int sq_cmd_inspect(int argc, char **argv);
int sq_cmd_blocks(int argc, char **argv);
int sq_cmd_quantize(int argc, char **argv);
int sq_cmd_run(int argc, char **argv);
int sq_cmd_perplexity(int argc, char **argv);
int sq_cmd_bench(int argc, char **argv);
int sq_cmd_imatrix(int argc, char **argv);
int sq_cmd_plan(int argc, char **argv);
int sq_cmd_tokenize(int argc, char **argv);
int sq_cmd_serve(int argc, char **argv);

/* Default thread count of the inference tools: the online CPUs, 1 to 16. */
static inline int sq_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

/* The flags that run, perplexity and imatrix share, written into the
 * caller's variables: -m/--model, -f/--file, -c/--ctx-size (ctx_min .. 2^24),
 * -b/--batch-size, -t/--threads (1 .. 1024), --kv-type f16|f32. */
typedef struct sq_engine_args {
    const char **model;
    const char **file;
    int *n_ctx;
    int ctx_min;
    int *n_batch;
    int *n_threads;
    int *kv_type;
} sq_engine_args;

/* If the argument a looks at is one of the shared flags, reads its value
 * (a message and a->failed when it is missing or bad) and returns true;
 * false for any other argument. -h/--help is the caller's (sq_args_help). */
static inline bool sq_args_engine(sq_args *a, const sq_engine_args *e)
{
    if (sq_args_is(a, "-m", "--model")) {
        const char *v = sq_args_value(a);
        if (v) *e->model = v;
    } else if (sq_args_is(a, "-f", "--file")) {
        const char *v = sq_args_value(a);
        if (v) *e->file = v;
    } else if (sq_args_is(a, "-c", "--ctx-size")) {
        sq_args_int(a, e->ctx_min, 16777216, e->n_ctx);
    } else if (sq_args_is(a, "-b", "--batch-size")) {
        sq_args_int(a, 1, 16777216, e->n_batch);
    } else if (sq_args_is(a, "-t", "--threads")) {
        sq_args_int(a, 1, 1024, e->n_threads);
    } else if (sq_args_is(a, NULL, "--kv-type")) {
        const char *v = sq_args_value(a);
        if (v && !sq_arg_kv_type(a->cmd, v, e->kv_type)) a->failed = true;
    } else {
        return false;
    }
    return true;
}

/* What the inference tools (run, perplexity, imatrix) load from their engine
 * flags: the model, its vocabulary and one context. Zero-initialise. */
typedef struct sq_engine_loaded {
    sq_model *model;
    sq_vocab *vocab;
    sq_context *ctx;
} sq_engine_loaded;

/* Loads the model of -m (a split model from its first shard), its
 * vocabulary, and a context of -c/-b/-t/--kv-type. An -c of 0 becomes the
 * model's training context, at most 4096, written back to *e->n_ctx. On
 * failure the message is in err; what was loaded stays in L for
 * sq_engine_free(). */
static inline sq_status sq_engine_load(const sq_engine_args *e, sq_engine_loaded *L, sq_error *err)
{
    sq_status st = sq_model_load(*e->model, &L->model, err);
    if (st == SQ_OK) st = sq_vocab_load_gguf(sq_model_gguf(L->model), &L->vocab, err);
    if (st != SQ_OK) return st;
    const sq_hparams *hp = sq_model_hparams(L->model);
    if (*e->n_ctx == 0) *e->n_ctx = hp->n_ctx_train < 4096 ? (int)hp->n_ctx_train : 4096;
    else if (hp->n_ctx_train > 0 && *e->n_ctx > hp->n_ctx_train) /* as llama.cpp warns */
        fprintf(stderr, "warning: -c %d is beyond the model's training context of %lld tokens; positions past it "
                        "may give poor results\n", *e->n_ctx, (long long)hp->n_ctx_train);
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = *e->n_ctx;
    cp.n_batch = *e->n_batch;
    cp.n_threads = *e->n_threads;
    cp.kv_type = *e->kv_type;
    return sq_context_create(L->model, &cp, &L->ctx, err);
}

static inline void sq_engine_free(sq_engine_loaded *L)
{
    sq_context_free(L->ctx);
    sq_vocab_free(L->vocab);
    sq_model_free(L->model);
    memset(L, 0, sizeof *L);
}

/* Tokenizes a whole calibration / evaluation text with BOS (as llama-perplexity
 * and llama-imatrix do), saying so and how long it took on stderr as
 * "WHAT: tokenizing the input .." / "WHAT: tokenization took X ms". */
static inline sq_status sq_tokenize_text(const char *what, const sq_vocab *v, const char *text, size_t len,
                                         sq_token **toks, size_t *n_tok, sq_error *err)
{
    fprintf(stderr, "%s: tokenizing the input ..\n", what);
    const double t0 = sq_time_now();
    const sq_status st = sq_tokenize(v, text, len, true, false, toks, n_tok, err);
    if (st == SQ_OK) fprintf(stderr, "%s: tokenization took %.3f ms\n", what, (sq_time_now() - t0) * 1e3);
    return st;
}

/* The whole of a file ("-": standard input) in a malloc'd buffer with a NUL
 * after its *len bytes (len may be NULL). On failure prints
 * "sq CMD: PATH: cannot open: REASON" (or "not a regular file" for a folder,
 * "cannot read: REASON") and returns NULL. */
static inline char *sq_read_file(const char *cmd, const char *path, size_t *len)
{
    const bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "sq %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "sq %s: %s: not a regular file\n", cmd, path);
        if (!is_stdin) fclose(f);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(b, 2 * cap + 1);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    const int e = errno;
    const bool bad = !b || ferror(f);
    if (!is_stdin) fclose(f);
    if (bad) {
        fprintf(stderr, "sq %s: %s: cannot read: %s\n", cmd, path, b ? strerror(e) : "out of memory");
        free(b);
        return NULL;
    }
    b[n] = 0;
    if (len) *len = n;
    return b;
}

/* Whether an output file can be created where `path` says: its folder exists
 * and is writable, and path is not something other than a regular file (the
 * temporary file renamed onto it would replace a device or a pipe — as root,
 * /dev/null — or fail on a folder). Tools that write only after a long
 * computation (plan, imatrix, perplexity's base file) check it first, so a
 * typo costs seconds, not the whole run; prints "sq CMD: PATH: cannot write
 * in folder DIR: REASON" (or "... is not a regular file") and returns false. */
static inline bool sq_arg_output_ok(const char *cmd, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "sq %s: %s: exists and is not a regular file (%s); the output must be a file\n", cmd, path,
                S_ISDIR(sb.st_mode) ? "a folder" : "a device, pipe or socket");
        return false;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "sq %s: %s: cannot write in folder %s: %s\n", cmd, path, dir, strerror(errno));
        return false;
    }
    return true;
}

/* Ctrl-C, kill, a closed terminal or a closed pipe on stdout (SIGPIPE:
 * `sq quantize ... | head`) while a tool writes a file: remove the writer's
 * temporary file (async-signal-safe), then die of the same signal as before,
 * so the shell sees the usual status and no file is left behind. With SIGPIPE
 * ignored, the failed write itself ends the tool the same way
 * (sq_stdout_flush_or_die, tools/progress.h). */
static inline void sq__on_fatal_signal(int sig)
{
    sq_gguf_writer_unlink_temps();
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void sq_install_cleanup_handlers(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = sq__on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        /* keep an ignored signal ignored (e.g. SIGHUP under nohup) */
        struct sigaction old;
        if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[k], &sa, NULL);
    }
}

#endif
