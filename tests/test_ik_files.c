/*
 * test_ik_files.c — ik_llama.cpp's own quantized files of the demo model
 * (../shared/golden/ik/files: IQ3_K and IQ4_KS mixes, with IQ4_K / IQ5_K
 * attention values) through the tools: `sq inspect` names their types,
 * `sq run` generates, `sq bench` measures, `sq serve` answers a completion.
 * (Their perplexity against ik's is checked in test_engine.c.) Skips
 * without ../shared. And `sq quantize` writing ik's types: as --tensor-type
 * targets and as SmarterQuant segment types (by name and by id), on a tiny
 * random model that the engine then runs like its decoded twin.
 */
#include "harness.h"
#include "testutil.h"
#include "tinymodel.h"
#include "sq/engine.h"

static const char *files[] = {"golden/ik/files/sqdemo-IQ3_K.gguf", "golden/ik/files/sqdemo-IQ4_KS.gguf"};
static const char *types[] = {"iq3_k", "iq4_ks"};

/* Runs `sq ARGS` and returns its stdout (stderr into the same stream), or NULL. */
static char *sq_out(const char *args, int *status)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", harness_sq_bin(), args);
    return tu_popen_read(cmd, status);
}

static void test_inspect_run_bench(void)
{
    for (int i = 0; i < 2; i++) {
        char path[1024], args[1400];
        if (!harness_shared_file(path, sizeof path, files[i])) SKIP("%s not in ../shared", files[i]);
        int st = -1;
        snprintf(args, sizeof args, "inspect '%s'", path);
        char *out = sq_out(args, &st);
        CHECK_MSG(st == 0 && out && strstr(out, types[i]), "sq inspect %s: %s", files[i], out ? out : "(none)");
        free(out);
        snprintf(args, sizeof args, "run -m '%s' -p 'The package' -n 12 --temp 0 -t 2", path);
        out = sq_out(args, &st);
        CHECK_MSG(st == 0 && out && strstr(out, "generation: 12 tokens"), "sq run %s: %s", files[i], out ? out : "");
        free(out);
        snprintf(args, sizeof args, "bench -m '%s' -p 16 -n 4 -r 1 -t 2", path);
        out = sq_out(args, &st);
        CHECK_MSG(st == 0 && out && strstr(out, "pp16") && strstr(out, "tg4"), "sq bench %s: %s", files[i],
                  out ? out : "");
        free(out);
    }
}

/* One completion request to `sq serve` on a free port: 200 and some text. */
static void test_serve(void)
{
    char path[1024], dir[512];
    if (!harness_shared_file(path, sizeof path, files[1])) SKIP("%s not in ../shared", files[1]);
    if (system("command -v curl >/dev/null 2>&1") != 0) SKIP("curl is not installed");
    if (!harness_tmpdir(dir, sizeof dir)) return;
    char script[4096];
    snprintf(script, sizeof script,
             "cd '%s' && printf '%%s' '{\"prompt\": \"The package\", \"max_tokens\": 8, \"temperature\": 0}' > body &&"
             " ('%s' serve -m '%s' --port 0 -t 2 2>log >/dev/null & echo $! > pid) &&"
             " for i in $(seq 1200); do grep -q 'listening on http://127.0.0.1:[0-9]*' log && break; sleep 0.05; done;"
             " port=$(sed -n 's/.*listening on http:\\/\\/127.0.0.1:\\([0-9]*\\).*/\\1/p' log | head -n 1);"
             " curl -s -m 60 -w '\\n%%{http_code}' --data-binary @body \"http://127.0.0.1:$port/v1/completions\";"
             " kill $(cat pid) 2>/dev/null; wait 2>/dev/null; rm -f body log pid",
             dir, harness_sq_bin(), path);
    int st = -1;
    char *out = tu_popen_read(script, &st);
    CHECK_MSG(out && strstr(out, "\"text\"") && strstr(out, "\n200"), "serve %s: %s", files[1], out ? out : "(none)");
    free(out);
    rmdir(dir);
}

/* Perplexity of a model on a fixed token sequence (ids only). */
static double ppl_of(const char *path, const int32_t *toks, size_t n)
{
    sq_model *m = NULL;
    sq_context *c = NULL;
    sq_error e = {0};
    double ppl = -1;
    if (sq_model_load(path, &m, &e) == SQ_OK) {
        sq_context_params cp = sq_context_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 2;
        sq_ppl_params pp = {64, 2, NULL, NULL, NULL, NULL};
        sq_ppl_result r;
        if (sq_context_create(m, &cp, &c, &e) == SQ_OK && sq_perplexity(c, toks, n, 1, &pp, &r, &e) == SQ_OK) {
            ppl = r.ppl;
            sq_ppl_result_free(&r);
        }
    }
    if (ppl < 0) fprintf(stderr, "%s: %s\n", path, e.msg);
    sq_context_free(c);
    sq_model_free(m);
    return ppl;
}

/* A tiny F32 model quantized with ik's types in SmarterQuant tensors (row
 * scale and block-scale types mixed in one row; 2 and 3 segments) and as a
 * --tensor-type target: the file has the types and sizes asked for, and the
 * engine's products over it match the F32 products of the decoded weights. */
static void test_quantize_to_ik(void)
{
    char dir[512], in[600], out[600], cfg[600], twin[600], args[2600];
    if (!harness_tmpdir(dir, sizeof dir)) return;
    snprintf(in, sizeof in, "%s/f32.gguf", dir);
    snprintf(out, sizeof out, "%s/ik.gguf", dir);
    snprintf(cfg, sizeof cfg, "%s/cfg.json", dir);
    snprintf(twin, sizeof twin, "%s/twin.gguf", dir);
    const tm_shape shape = {512, 1, 4, 2, 128, 1280, 300, 64, SQ_TYPE_F32, false, false, 11};
    sq_error e = {0};
    CHECK_MSG(tm_write(in, &shape, &e) == SQ_OK, "tiny model: %s", e.msg);
    FILE *f = fopen(cfg, "w");
    if (!f) return;
    fprintf(f, "{\"blk.0.ffn_down.weight\": [[\"iq4_ks\", \"IQ5_KS\", \"iq3_k\", \"iq4_ks\"], []],\n"
               " \"blk.0.attn_q.weight\": [[157, 144, 138, 140], []]}\n");
    fclose(f);
    snprintf(args, sizeof args, "quantize --sq-config '%s' --tensor-type 'ffn_up=iq4_k' '%s' '%s' Q8_0 2", cfg, in, out);
    int st = -1;
    char *o = sq_out(args, &st);
    CHECK_MSG(st == 0, "sq %s: %s", args, o ? o : "");
    free(o);
    snprintf(args, sizeof args, "inspect '%s'", out);
    o = sq_out(args, &st);
    /* ffn_down: 1280 columns = 5 segments IQ4_KS, IQ5_KS, IQ3_K, IQ4_KS, IQ4_KS, each with its own row
     * scale: (4 + 136) + (4 + 168) + 110 + 2 * (4 + 136) = 702 bytes a row, 512 rows */
    CHECK_MSG(o && strstr(o, "\"[144,152,138,144]\"") && strstr(o, "\"[157,144,138,140]\""),
              "block types in the file: %s", o ? o : "");
    CHECK_MSG(o && strstr(o, "359424"), "ffn_down holds 512 rows of 702 bytes: %s", o ? o : "");
    CHECK_MSG(o && strstr(o, "iq4_k "), "ffn_up as iq4_k: %s", o ? o : "");
    free(o);
    /* the twin: the quantized weights decoded back to F32 (the decoder, not the product kernels) */
    snprintf(args, sizeof args, "quantize --allow-requantize '%s' '%s' F32 1", out, twin);
    o = sq_out(args, &st);
    CHECK_MSG(st == 0, "sq %s: %s", args, o ? o : "");
    free(o);
    int32_t toks[200];
    uint64_t s = 5;
    for (int i = 0; i < 200; i++) toks[i] = 2 + (int32_t)((tm_rand(&s) + 1) * 140);
    /* A random model's logits are large, so its perplexity is extreme and chaotic (quantizing it to
     * Q4_K_M changes it 3x); the products of the quantized file against the F32 products of the same
     * weights differ only by the 8-bit activations (about 1-2%); a misread segment differs by far more. */
    const double pt = ppl_of(twin, toks, 200), pq = ppl_of(out, toks, 200);
    CHECK_MSG(pt > 1 && pq > 1 && fabs(log(pq / pt)) < 0.05, "perplexity of the decoded twin %.4f, of the file %.4f",
              pt, pq);
    remove(in), remove(out), remove(cfg), remove(twin), rmdir(dir);
}

int main(void)
{
    RUN(test_inspect_run_bench);
    RUN(test_serve);
    RUN(test_quantize_to_ik);
    return harness_finish("ik_files");
}
