/*
 * test_arch.c — the architectures the engine runs, on tiny random models
 * written here (tiny_arch.h): llama (Llama 3.1 factors, YaRN, fused q/k/v,
 * biases, experts), qwen2, qwen3, qwen3moe, gemma3 (sliding windows by
 * pattern and by array, soft-capping, scaled global RoPE), phi3 (fused q/k/v
 * and gate/up, partial rotary, LongRoPE). For each: the hyperparameters read,
 * the logits against a naive double-precision forward pass, SmarterQuant
 * all-F32 tensors with permutations (expert tensors too) = the plain model,
 * batched = token by token (across window edges and expert regrouping) with
 * both KV cache types and threads; the expert hook and imatrix entries of a
 * MoE model; and one clear error per unsupported architecture, key or tensor.
 */
#include "harness.h"
#include "testutil.h"
#include "tiny_arch.h"
#include "engine/engine_internal.h"
#include "sq/engine.h"
#include "sq/grad.h"
#include "sq/imatrix_collect.h"

#define N_TOK 24

static char dir[512];
static int32_t toks[N_TOK];

/* The cases: one spec each, with what the reference comparison allows. */
typedef struct arch_case {
    const char *label;
    ta_spec s;
} arch_case;

static const arch_case cases[] = {
    {"llama-freqs-tied",
     {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .rope_freqs = true, .tied = true, .base = 500000.0f}},
    {"llama-yarn-fused-bias",
     {.arch = "llama",
      .E = 64,
      .L = 2,
      .H = 4,
      .KV = 1,
      .F = 96,
      .fused_qkv = true,
      .qkv_bias = true,
      .wo_bias = true,
      .ffn_bias = true,
      .rope_type = "yarn",
      .rope_factor = 4.0f,
      .orig_ctx = 16,
      .attn_factor = 1.1f}},
    {"llama-experts", {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 48, .X = 4, .K = 2, .FE = 48}},
    {"llama-experts-nogate",
     {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 48, .X = 4, .K = 1, .FE = 48, .no_gate_exps = true}},
    {"qwen2",
     {.arch = "qwen2", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .qkv_bias = true, .out_bias = true, .base = 1e6f}},
    {"qwen3",
     {.arch = "qwen3",
      .E = 64,
      .L = 2,
      .H = 4,
      .KV = 2,
      .HD = 24,
      .F = 96,
      .qk_norm = true,
      .tied = true,
      .base = 1e6f}},
    {"qwen3moe",
     {.arch = "qwen3moe",
      .E = 64,
      .L = 2,
      .H = 4,
      .KV = 2,
      .HD = 24,
      .F = 96,
      .X = 6,
      .K = 2,
      .FE = 40,
      .qk_norm = true,
      .base = 1e6f}},
    {"gemma3",
     {.arch = "gemma3",
      .E = 64,
      .L = 3,
      .H = 4,
      .KV = 1,
      .HD = 32,
      .F = 96,
      .qk_norm = true,
      .post_norms = true,
      .swa = 5,
      .swa_pattern = 3,
      .base = 1e6f,
      .base_swa = 20000.0f,
      .softcap = 3.0f,
      .rope_type = "linear",
      .rope_factor = 2.0f,
      .tied = true}},
    {"gemma3-array",
     {.arch = "gemma3",
      .E = 64,
      .L = 3,
      .H = 2,
      .KV = 2,
      .HD = 16,
      .F = 64,
      .qk_norm = true,
      .post_norms = true,
      .swa = 4,
      .swa_arr = true}},
    {"phi3-longrope-long",
     {.arch = "phi3",
      .E = 64,
      .L = 2,
      .H = 4,
      .KV = 2,
      .F = 96,
      .n_rot = 8,
      .fused_qkv = true,
      .fused_up = true,
      .rope_long = true,
      .rope_type = "longrope",
      .orig_ctx = 16,
      .attn_factor = 1.19f}},
    {"phi3-longrope-short",
     {.arch = "phi3",
      .E = 64,
      .L = 2,
      .H = 4,
      .KV = 2,
      .F = 96,
      .fused_qkv = true,
      .fused_up = true,
      .rope_long = true,
      .orig_ctx = 128}},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Writes case c (sq: as SmarterQuant tensors) and returns its path (static storage). */
static const char *write_case(const ta_spec *s, const char *label, ta_model *m)
{
    static char path[1024];
    ta_build(m, s, 4242);
    snprintf(path, sizeof path, "%s/%s%s.gguf", dir, label, s->sq ? "-sq" : "");
    sq_error e = {0};
    if (ta_write(m, path, &e) != SQ_OK) {
        fprintf(stderr, "cannot write %s: %s\n", path, e.msg);
        return NULL;
    }
    return path;
}

/* Logits of all N_TOK tokens (malloc'd), evaluated n_batch at a time
 * (token by token when n_batch is 1), or NULL with the error printed. */
static float *logits_of(const char *path, int kv_type, int n_batch, int threads)
{
    sq_model *m = NULL;
    sq_context *c = NULL;
    sq_error e = {0};
    float *out = NULL;
    if (sq_model_load(path, &m, &e) == SQ_OK) {
        sq_context_params p = sq_context_default_params();
        p.n_ctx = TA_CTX;
        p.n_batch = n_batch;
        p.n_threads = threads;
        p.kv_type = kv_type;
        if (sq_context_create(m, &p, &c, &e) == SQ_OK) {
            out = malloc(sizeof(float) * N_TOK * TA_VOCAB);
            for (int i = 0; i < N_TOK && out; i += n_batch) {
                const int nb = N_TOK - i < n_batch ? N_TOK - i : n_batch;
                if (sq_eval(c, toks + i, nb, nb, &e) != SQ_OK) {
                    free(out);
                    out = NULL;
                    break;
                }
                memcpy(out + (size_t)i * TA_VOCAB, sq_get_logits(c), sizeof(float) * (size_t)nb * TA_VOCAB);
            }
        }
    }
    if (!out) fprintf(stderr, "%s: %s\n", path, e.msg);
    sq_context_free(c);
    sq_model_free(m);
    return out;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

static double max_abs(const float *a, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i]));
    return d;
}

/* The hyperparameters read for case c. */
static void check_hparams(const char *path, const ta_model *tm, const char *label)
{
    sq_model *m = NULL;
    sq_error e = {0};
    CHECK_MSG(sq_model_load(path, &m, &e) == SQ_OK, "%s: %s", label, e.msg);
    if (!m) return;
    const sq_hparams *hp = sq_model_hparams(m);
    const ta_spec *s = &tm->s;
    CHECK_STR(hp->arch, s->arch);
    CHECK_INT(hp->n_embd, s->E);
    CHECK_INT(hp->n_layer, s->L);
    CHECK_INT(hp->n_head, s->H);
    CHECK_INT(hp->n_head_kv, s->KV);
    CHECK_INT(hp->head_dim, tm->hd);
    CHECK_INT(hp->n_rot, tm->n_rot);
    CHECK_INT(hp->n_vocab, TA_VOCAB);
    CHECK_INT(hp->n_expert, s->X);
    CHECK_INT(hp->n_expert_used, s->K);
    CHECK_INT(hp->n_ff_exp, s->FE);
    CHECK_INT(hp->n_swa, s->swa);
    CHECK(hp->tied_output == s->tied);
    for (int l = 0; l < s->L; l++) CHECK_MSG(m->layers[l].swa == ta_swa_layer(tm, l), "%s layer %d swa", label, l);
    sq_model_free(m);
}

/* Every case: hyperparameters; engine (F32 cache) against the double
 * reference; the SmarterQuant twin equal to the plain model. */
static void test_reference(void)
{
    for (int k = 0; k < N_CASES; k++) {
        const char *label = cases[k].label;
        ta_model tm;
        const char *path = write_case(&cases[k].s, label, &tm);
        CHECK(path != NULL);
        if (!path) continue;
        char plain[1024];
        snprintf(plain, sizeof plain, "%s", path);
        check_hparams(plain, &tm, label);
        double *ref = malloc(sizeof(double) * N_TOK * TA_VOCAB);
        ta_reference(&tm, toks, N_TOK, TA_CTX, ref);
        float *got = logits_of(plain, SQ_TYPE_F32, N_TOK, 1);
        CHECK_MSG(got != NULL, "%s: no logits", label);
        if (got) {
            double md = 0, mr = 0;
            for (int i = 0; i < N_TOK * TA_VOCAB; i++) {
                md = fmax(md, fabs(got[i] - ref[i]));
                mr = fmax(mr, fabs(ref[i]));
            }
            CHECK_MSG(md < 2e-4 * mr + 1e-4, "%s: engine vs double reference: max diff %g (max |logit| %g)", label, md,
                      mr);
        }
        ta_spec sqs = cases[k].s;
        sqs.sq = true;
        ta_model tq;
        const char *psq = write_case(&sqs, label, &tq);
        float *sqg = psq ? logits_of(psq, SQ_TYPE_F32, N_TOK, 2) : NULL;
        CHECK_MSG(sqg != NULL, "%s: no SmarterQuant logits", label);
        if (got && sqg) {
            const size_t n = (size_t)N_TOK * TA_VOCAB;
            CHECK_MSG(max_diff(got, sqg, n) < 1e-5 * max_abs(got, n), "%s: SmarterQuant vs plain: %g", label,
                      max_diff(got, sqg, n));
        }
        free(ref);
        free(got);
        free(sqg);
        ta_free(&tm);
        ta_free(&tq);
    }
}

/* Batched = token by token = small batches on threads, for both caches:
 * windows sliding past their edge inside a batch, experts regrouped per batch. */
static void test_batch_consistency(void)
{
    for (int k = 0; k < N_CASES; k++) {
        ta_model tm;
        const char *path = write_case(&cases[k].s, cases[k].label, &tm);
        ta_free(&tm);
        if (!path) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s", path);
        for (int kv = 0; kv < 2; kv++) {
            const int type = kv ? SQ_TYPE_F16 : SQ_TYPE_F32;
            float *full = logits_of(p, type, N_TOK, 1), *one = logits_of(p, type, 1, 1),
                  *five = logits_of(p, type, 5, 2);
            CHECK(full && one && five);
            if (full && one && five) {
                const size_t n = (size_t)N_TOK * TA_VOCAB;
                const double tol = 1e-4 * max_abs(full, n);
                CHECK_MSG(max_diff(full, one, n) < tol, "%s kv %d: batch vs token by token: %g", cases[k].label, kv,
                          max_diff(full, one, n));
                CHECK_MSG(max_diff(full, five, n) < tol, "%s kv %d: batch vs batches of 5 on 2 threads: %g",
                          cases[k].label, kv, max_diff(full, five, n));
            }
            free(full);
            free(one);
            free(five);
        }
    }
}

/* Per-expert statistics: the expert hook sees each token's row K times in
 * all, so the experts' sums of squares add up to K times the router's. */
static void test_expert_hook_imatrix(void)
{
    ta_model tm;
    const char *path = write_case(&cases[6].s, "moe-imatrix", &tm);
    ta_free(&tm);
    if (!path) return;
    sq_model *m = NULL;
    sq_context *c = NULL;
    sq_imatrix_collector *ic = NULL;
    sq_error e = {0};
    CHECK_INT(sq_model_load(path, &m, &e), SQ_OK);
    sq_context_params p = sq_context_default_params();
    p.n_ctx = TA_CTX;
    if (m) CHECK_INT(sq_context_create(m, &p, &c, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_create(false, &ic, &e), SQ_OK);
    if (!c || !ic) goto out;
    sq_imatrix_collector_attach(ic, c);
    CHECK_INT(sq_eval(c, toks, N_TOK, 1, &e), SQ_OK);
    sq_imatrix_collector_detach(c);
    CHECK_INT(sq_imatrix_collector_status(ic, &e), SQ_OK);
    const float *router = NULL, *rc = NULL;
    int found = 0;
    for (int64_t i = 0; i < sq_imatrix_collector_n_entries(ic); i++) {
        const float *s2, *cnt;
        int64_t ne0, nm;
        const char *name = sq_imatrix_collector_entry(ic, i, &s2, &cnt, &ne0, &nm);
        if (!strcmp(name, "blk.1.ffn_gate_inp.weight")) {
            router = s2, rc = cnt;
            CHECK_INT(nm, 1);
        }
        if (strstr(name, "_exps.weight")) {
            found++;
            CHECK_INT(nm, 6);
            float total = 0;
            for (int64_t x = 0; x < nm; x++) total += cnt[x];
            CHECK_MSG(total == N_TOK * 2, "%s: %g rows over its experts, want %d", name, total, N_TOK * 2);
        }
    }
    CHECK_INT(found, 6); /* gate, up, down of 2 layers */
    CHECK(router && rc && rc[0] == N_TOK);
    for (int64_t i = 0; i < sq_imatrix_collector_n_entries(ic) && router; i++) {
        const float *s2, *cnt;
        int64_t ne0, nm;
        const char *name = sq_imatrix_collector_entry(ic, i, &s2, &cnt, &ne0, &nm);
        if (strcmp(name, "blk.1.ffn_up_exps.weight") != 0) continue;
        double worst = 0;
        for (int64_t j = 0; j < ne0; j++) {
            double sum = 0;
            for (int64_t x = 0; x < nm; x++) sum += s2[x * ne0 + j];
            worst = fmax(worst, fabs(sum - 2.0 * router[j]) / (2.0 * router[j]));
        }
        CHECK_MSG(worst < 1e-4, "expert sums vs 2 x router sums: relative %g", worst);
    }
out:
    sq_imatrix_collector_free(ic);
    sq_context_free(c);
    sq_model_free(m);
}

/* Loading spec s fails with status st and a message containing want. */
static void expect_error(ta_spec s, const char *label, sq_status st, const char *want)
{
    ta_model tm;
    const char *path = write_case(&s, label, &tm);
    ta_free(&tm);
    if (!path) return;
    sq_model *m = NULL;
    sq_error e = {0};
    CHECK_MSG(sq_model_load(path, &m, &e) == st, "%s: status, message '%s'", label, e.msg);
    CHECK_MSG(strstr(e.msg, want) != NULL, "%s: '%s' lacks '%s'", label, e.msg, want);
    CHECK_CONTAINS(e.msg, label); /* the file is named */
    CHECK(m == NULL);
}

static void test_errors(void)
{
    ta_spec s = cases[4].s; /* qwen2 */
    s.arch = "gpt2";
    expect_error(s, "arch-gpt2", SQ_EUNSUPPORTED,
                 "architecture 'gpt2' is not supported (only llama, qwen2, qwen3, qwen3moe, gemma3, phi3)");
    s = cases[4].s;
    s.extra_tensor = "blk.0.mystery.weight";
    expect_error(s, "extra-tensor", SQ_EUNSUPPORTED,
                 "tensor 'blk.0.mystery.weight' is not used by the qwen2 architecture");
    s = cases[4].s;
    s.qk_norm = true; /* qwen2 has no q/k norms: llama.cpp refuses such a file */
    expect_error(s, "qwen2-qknorm", SQ_EUNSUPPORTED, "tensor 'blk.0.attn_q_norm.weight' is not used");
    s = cases[5].s;
    s.drop_tensor = "blk.1.attn_k_norm.weight";
    expect_error(s, "qwen3-nonorm", SQ_ENOTFOUND, "tensor 'blk.1.attn_k_norm.weight' is missing");
    s = cases[5].s;
    s.bad_heads_arr = true;
    expect_error(s, "heads-array", SQ_EUNSUPPORTED, "metadata key 'qwen3.attention.head_count' differs between layers");
    s = cases[0].s;
    s.rope_type = "dynamic";
    expect_error(s, "rope-type", SQ_EUNSUPPORTED, "metadata key 'llama.rope.scaling.type' = 'dynamic' is not a RoPE");
    s = cases[6].s;
    s.K = 8;
    expect_error(s, "moe-k", SQ_EFORMAT, "expert_used_count 8 does not fit expert_count 6");
    s = cases[6].s;
    s.drop_tensor = "blk.0.ffn_gate_exps.weight";
    expect_error(s, "moe-nogate", SQ_ENOTFOUND, "tensor 'blk.0.ffn_gate_exps.weight' is missing");
    s = cases[0].s;
    s.n_rot = 8; /* llama rotates whole heads */
    expect_error(s, "llama-rot", SQ_EFORMAT, "invalid rope.dimension_count 8");
}

/* Every command that runs a model stops on an unsupported architecture or
 * key with exit status 1 and one line on stderr that names the file and what
 * is not supported (and no output file left behind). (tokenize reads the
 * vocabulary only, and runs on any architecture.) */
static void test_cli_one_line(void)
{
    static const char *const cmds[] = {
        "run -m '%s' -p hi -n 2",
        "perplexity -m '%s' -f '%s/text.txt' -c 16",
        "bench -m '%s' -p 8 -n 2 -r 1",
        "imatrix -m '%s' -f '%s/text.txt' -c 16 -o '%s/out.imatrix'",
        "serve -m '%s' --port 0",
    };
    struct {
        const char *label, *want;
        ta_spec s;
    } bad[2] = {{"cli-gpt2", "architecture 'gpt2' is not supported", cases[4].s},
                {"cli-rope", "metadata key 'llama.rope.scaling.type' = 'dynamic'", cases[0].s}};
    bad[0].s.arch = "gpt2";
    bad[1].s.rope_type = "dynamic";
    tu_write_text(dir, "text.txt", "one two three four five six seven eight nine ten eleven twelve");
    for (int b = 0; b < 2; b++) {
        ta_model tm;
        const char *p = write_case(&bad[b].s, bad[b].label, &tm);
        ta_free(&tm);
        if (!p) continue;
        char path[1100];
        snprintf(path, sizeof path, "%s", p);
        for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) {
            char args[4000], cmd[4600];
            snprintf(args, sizeof args, cmds[k], path, dir, dir);
            snprintf(cmd, sizeof cmd, "'%s' %s 2>&1 >/dev/null", harness_sq_bin(), args);
            int st = 0;
            char *err = tu_popen_read(cmd, &st);
            const char *nl = err ? strchr(err, '\n') : NULL;
            CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "sq %s: status %d", args, st);
            CHECK_MSG(err && strstr(err, bad[b].want) && strstr(err, path), "sq %s: '%s' lacks '%s' or the file",
                      args, err ? err : "", bad[b].want);
            CHECK_MSG(nl && nl[1] == 0, "sq %s: not one line: '%s'", args, err ? err : "");
            free(err);
        }
        CHECK(tu_count_files(dir, "out.imatrix") == 0);
    }
}

/* The backward pass takes every architecture and option, experts included
 * (test_grad_arch checks its gradients), and runs a chunk of each. */
static void test_grad_scope(void)
{
    for (int k = 0; k < N_CASES; k++) {
        ta_model tm;
        const char *path = write_case(&cases[k].s, cases[k].label, &tm);
        ta_free(&tm);
        sq_model *m = NULL;
        sq_grad *g = NULL;
        sq_error e = {0};
        if (!path || sq_model_load(path, &m, &e) != SQ_OK) continue;
        sq_grad_params p = sq_grad_default_params();
        p.n_ctx = 16;
        CHECK_MSG(sq_grad_supports(m, &e) == SQ_OK, "%s: %s", cases[k].label, e.msg);
        CHECK_MSG(sq_grad_create(m, &p, &g, &e) == SQ_OK, "%s: %s", cases[k].label, e.msg);
        double loss = NAN;
        if (g) CHECK_MSG(sq_grad_chunk(g, toks, 16, 8, true, &loss, &e) == SQ_OK, "%s: %s", cases[k].label, e.msg);
        if (g) CHECK_MSG(isfinite(loss) && sq_grad_n_scored(g) == 7, "%s: loss %g", cases[k].label, loss);
        sq_grad_free(g);
        sq_model_free(m);
    }
}

int main(void)
{
    if (!harness_tmpdir(dir, sizeof dir)) return 1;
    for (int i = 0; i < N_TOK; i++) toks[i] = (int32_t)((i * 37 + 5) % TA_VOCAB);
    RUN(test_reference);
    RUN(test_batch_consistency);
    RUN(test_expert_hook_imatrix);
    RUN(test_errors);
    RUN(test_cli_one_line);
    RUN(test_grad_scope);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return harness_finish("arch");
}
