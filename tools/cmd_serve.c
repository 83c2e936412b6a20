/*
 * cmd_serve.c — sq serve: an OpenAI-compatible HTTP server for a model.
 *
 *   sq serve -m MODEL.gguf [--host 127.0.0.1] [--port 8080] [--parallel 2] [--queue 8]
 *            [--debug-token-delay-ms N]   (tests: hold requests; SIGUSR1 turns it off)
 *
 * The work is in src/serve/ (sq/serve.h); this file reads the flags, loads
 * the model and its vocabulary, checks a SmarterQuant configuration against
 * the model's metadata, prints the log, and waits for SIGINT/SIGTERM to shut
 * down cleanly (every request finished or cancelled, everything freed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmds.h"
#include "sq/engine.h"
#include "sq/serve.h"
#include "sq/sqconfig.h"
#include "sq/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq serve -m MODEL.gguf [options]\n"
            "\n"
            "Serves a model over HTTP with OpenAI's API: POST /v1/completions, POST /v1/chat/completions\n"
            "(streaming with \"stream\": true), GET /v1/models, GET /health. See docs/serve.md.\n"
            "\n"
            "  -m, --model FILE      GGUF model (required)\n"
            "      --host ADDR       numeric IPv4/IPv6 address or localhost to listen on (default 127.0.0.1;\n"
            "                        0.0.0.0 for all)\n"
            "      --port N          TCP port (default 8080; 0 picks a free one, printed at start)\n"
            "  -c, --ctx-size N      context (KV cache) per slot in tokens (default 0: the model's); unlike\n"
            "                        llama-server's -c, not divided among the slots\n"
            "  -t, --threads N       threads per slot (default 1)\n"
            "  -np, --parallel N     request slots running at once, each with its own context (default 1)\n"
            "      --queue N         requests that may wait for a slot; beyond, 503 at once (default 8)\n"
            "      --sq-config PATH  SmarterQuant configuration to check against the model's metadata\n"
            "                        (default: ./" SQ_CONFIG_DEFAULT_NAME " when present); the metadata wins,\n"
            "                        every conflict is reported at startup. The default file is skipped,\n"
            "                        with one line, when it does not load or the model has no SmarterQuant\n"
            "                        tensors; a file given by flag that does not load stops the server\n"
            "      --no-sq-config    skip ./" SQ_CONFIG_DEFAULT_NAME "\n"
            "      --api-key KEY     require 'Authorization: Bearer KEY' on /v1/* (also $SQ_API_KEY)\n"
            "      --max-body BYTES  largest request body accepted, else 413 (default 1048576)\n"
            "  -a, --alias NAME      model id shown by /v1/models and in answers (default: file name)\n"
            "      --debug-token-delay-ms N\n"
            "                        for tests: pause N ms after each generated token, so that a request is\n"
            "                        sure to be still running; a client hang-up or shutdown ends the pause at\n"
            "                        once, and SIGUSR1 sets the delay to 0 (default 0)\n"
            "  -h, --help            this text\n");
}

static void stamp(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void log_request(void *ud, const sq_serve_log_entry *e)
{
    (void)ud;
    char ts[32];
    stamp(ts, sizeof ts);
    fprintf(stderr, "%s %s %s %d prompt=%d completion=%d %.1fms%s%s\n", ts, e->method, e->path, e->status,
            e->prompt_tokens, e->completion_tokens, e->seconds * 1e3, e->note[0] ? " " : "", e->note);
}

static void log_line(void *ud, const char *msg)
{
    (void)ud;
    char ts[32];
    stamp(ts, sizeof ts);
    fprintf(stderr, "%s sq serve: %s\n", ts, msg);
}

/* Loads the configuration (--sq-config's, or the current folder's default
 * file when it exists and --no-sq-config was not given) and reports how it
 * compares with the model's metadata, which wins. A default file no flag
 * asked for never stops the server: when it does not load, or the model has
 * no SmarterQuant tensors, one line says it was skipped and why. Returns 0,
 * or 1 when --sq-config's file does not load. */
static int check_config(const char *path, bool no_default, const sq_model *m)
{
    struct stat st;
    const bool implicit = !path;
    if (!path) {
        if (no_default || stat(SQ_CONFIG_DEFAULT_NAME, &st) != 0) return 0;
        path = "./" SQ_CONFIG_DEFAULT_NAME;
    }
    sq_config *cfg = NULL;
    sq_warnings w = {0};
    sq_error err = {0};
    if (sq_config_load(path, &cfg, &w, &err) != SQ_OK) {
        sq_warnings_free(&w);
        if (!implicit) {
            fprintf(stderr, "sq serve: %s\n", err.msg);
            return 1;
        }
        fprintf(stderr, "sq serve: %s skipped (found in the current folder, not asked for by a flag): %s; "
                        "--no-sq-config skips it quietly\n", path, err.msg);
        return 0;
    }
    const sq_gguf *g = sq_model_gguf(m);
    bool any_sq = false;
    for (int64_t i = 0; i < sq_gguf_n_tensors(g) && !any_sq; i++) any_sq = sq_gguf_tensor_at(g, i)->smarterquant;
    if (implicit && !any_sq) {
        /* the default file of the working folder, beside a model quantized without it: say so once */
        fprintf(stderr, "sq serve: %s ignored: the model has no SmarterQuant tensors (the file applies when "
                        "quantizing)\n", path);
        sq_warnings_free(&w);
        sq_config_free(cfg);
        return 0;
    }
    int conflicts = sq_serve_check_config(g, cfg, &w);
    /* a whole model's worth of the same warning helps no one: the first few, then a count */
    const size_t shown = w.count > 8 ? 5 : w.count;
    for (size_t i = 0; i < shown; i++) fprintf(stderr, "sq serve: warning: %s\n", w.items[i]);
    if (shown < w.count) fprintf(stderr, "sq serve: warning: ... and %zu more like these\n", w.count - shown);
    fprintf(stderr, "sq serve: SmarterQuant configuration %s: %lld entries, %d conflict(s) with the model's metadata%s\n",
            path, (long long)sq_config_count(cfg), conflicts, conflicts ? " (the metadata wins)" : "");
    sq_warnings_free(&w);
    sq_config_free(cfg);
    return 0;
}

/* What the command line asked for. */
typedef struct serve_opts {
    const char *model_path, *host, *config_path, *alias, *api_key;
    bool no_sq_config;
    long port, n_ctx, n_threads, n_parallel, queue, max_body, token_delay;
} serve_opts;

/* Reads the command line into o; returns -1 to go on, else the exit status.
 * The host is checked here, before the model is loaded ("localhost" as
 * llama-server takes it). */
static int parse_args(int argc, char **argv, serve_opts *o)
{
    sq_args a = sq_args_start("serve", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_is(&a, "-m", "--model")) o->model_path = sq_args_value(&a);
        else if (sq_args_is(&a, NULL, "--host")) o->host = sq_args_value(&a);
        else if (sq_args_is(&a, NULL, "--port")) sq_args_long(&a, 0, 65535, &o->port);
        else if (sq_args_is(&a, "-c", "--ctx-size")) sq_args_long(&a, 0, 1 << 24, &o->n_ctx);
        else if (sq_args_is(&a, "-t", "--threads")) sq_args_long(&a, 1, 1024, &o->n_threads);
        else if (sq_args_is(&a, "-np", "--parallel")) sq_args_long(&a, 1, 256, &o->n_parallel);
        else if (sq_args_is(&a, NULL, "--queue")) sq_args_long(&a, 0, 4096, &o->queue);
        else if (sq_args_is(&a, NULL, "--sq-config")) o->config_path = sq_args_value(&a);
        else if (sq_args_is(&a, NULL, "--no-sq-config")) o->no_sq_config = true;
        else if (sq_args_is(&a, NULL, "--api-key")) o->api_key = sq_args_value(&a);
        else if (sq_args_is(&a, NULL, "--max-body")) sq_args_long(&a, 64, LONG_MAX, &o->max_body);
        else if (sq_args_is(&a, "-a", "--alias")) o->alias = sq_args_value(&a);
        else if (sq_args_is(&a, NULL, "--debug-token-delay-ms")) sq_args_long(&a, 0, INT_MAX, &o->token_delay);
        else return sq_args_unknown(&a);
    }
    if (a.failed) return 2;
    if (!o->model_path) return sq_usage_error("serve", "-m MODEL is required");
    if (!strcmp(o->host, "localhost")) o->host = "127.0.0.1";
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, o->host, addr) != 1 && inet_pton(AF_INET6, o->host, addr) != 1) {
        fprintf(stderr, "sq serve: --host '%s': want a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::1) "
                        "or localhost\n", o->host);
        return 2;
    }
    return -1;
}

/* Starts the server on the loaded model and waits for SIGINT/SIGTERM
 * (SIGUSR1 turns the debug token delay off); stops it cleanly. Returns 0 or 1. */
static int serve(const serve_opts *o, sq_model *m, sq_vocab *vocab)
{
    /* SIGINT/SIGTERM/SIGUSR1 are taken by sigwait() below: block them before
     * any thread starts so that every server thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sq_server_options so = {
        .model = m,
        .vocab = vocab,
        .model_name = o->alias,
        .host = o->host,
        .port = (int)o->port,
        .n_ctx = (int)o->n_ctx,
        .n_threads = (int)o->n_threads,
        .n_parallel = (int)o->n_parallel,
        .queue_max = (int)o->queue,
        .api_key = o->api_key,
        .max_body = (size_t)o->max_body,
        .log = log_request,
        .log_msg = log_line,
        .debug_token_delay_ms = (int)o->token_delay,
    };
    sq_error err = {0};
    sq_server *srv = NULL;
    if (sq_server_start(&so, &srv, &err) != SQ_OK) {
        fprintf(stderr, "sq serve: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "sq serve: model %s (%s, %.1fM parameters), %s\n", o->alias, sq_model_type_desc(m),
            (double)sq_model_n_params(m) / 1e6, o->api_key && *o->api_key ? "API key required" : "no API key");
    const bool v6 = strchr(o->host, ':') != NULL;
    fprintf(stderr, "sq serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", o->host, v6 ? "]" : "",
            sq_server_port(srv));
    if (o->token_delay)
        fprintf(stderr, "sq serve: debug: %ld ms pause after each generated token (SIGUSR1 turns it off)\n",
                o->token_delay);
    int sig = 0;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGUSR1) {
        sq_server_set_debug_token_delay(srv, 0);
        fprintf(stderr, "sq serve: debug: SIGUSR1 received, token delay off\n");
    }
    fprintf(stderr, "sq serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sq_server_stop(srv);
    fprintf(stderr, "sq serve: stopped\n");
    return 0;
}

int sq_cmd_serve(int argc, char **argv)
{
    serve_opts o = {.host = "127.0.0.1", .api_key = getenv("SQ_API_KEY"), .port = 8080, .n_threads = 1,
                    .n_parallel = 1, .queue = 8, .max_body = 1 << 20};
    const int prc = parse_args(argc, argv, &o);
    if (prc >= 0) return prc;
    sq_error err = {0};
    sq_model *m = NULL;
    sq_vocab *vocab = NULL;
    int rc = 1;
    if (sq_model_load(o.model_path, &m, &err) != SQ_OK || sq_vocab_load_gguf(sq_model_gguf(m), &vocab, &err) != SQ_OK) {
        fprintf(stderr, "sq serve: %s\n", err.msg);
    } else if (check_config(o.config_path, o.no_sq_config, m) == 0) {
        if (!o.alias) {
            o.alias = strrchr(o.model_path, '/');
            o.alias = o.alias ? o.alias + 1 : o.model_path;
        }
        rc = serve(&o, m, vocab);
    }
    sq_vocab_free(vocab);
    sq_model_free(m);
    return rc;
}
