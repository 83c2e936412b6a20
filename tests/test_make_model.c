/*
 * test_make_model.c — bench/make_model, the random-weight model maker: every
 * architecture's keys and tensors, seeds, thread-count independence, direct
 * quantization equal to `sq quantize` of the float model, the values'
 * scale, the engine running a made llama model, and bad input (a message, no
 * file left).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sq/engine.h"
#include "sq/gguf.h"

static char tmpdir[512];
static char maker[1024];

/* Runs make_model with args (stdout/stderr to tmpdir/out.txt); its exit status. */
static int run_maker(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out.txt' 2>&1", maker, args, tmpdir);
    const int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *tpath(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

/* u32 hyperparameter ARCH.suffix of g, or -1. */
static int64_t hp(const sq_gguf *g, const char *arch, const char *suffix)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = -1;
    return sq_gguf_get_i64(g, key, &v, NULL) == SQ_OK ? v : -1;
}

/* Whether tensor name exists with the given dims (ne0, ne1, ne2). */
static bool has(const sq_gguf *g, const char *name, int64_t c, int64_t r, int64_t x)
{
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, name);
    return t && t->ne[0] == c && t->ne[1] == r && t->ne[2] == x;
}

/* Each architecture at the shared "arch" shape: the keys llama.cpp reads and
 * the tensors that architecture has. */
static void test_architectures(void)
{
    static const char *archs[] = {"llama", "qwen2", "qwen3", "qwen3moe", "gemma3", "phi3"};
    for (int a = 0; a < 6; a++) {
        char out[600], args[1400];
        const char *arch = archs[a];
        snprintf(args, sizeof args, "%s '%s' --shape arch --n-vocab 300 -t 2", arch,
                 tpath(out, sizeof out, "a.gguf"));
        CHECK_MSG(run_maker(args) == 0, "%s: make_model failed", arch);
        sq_gguf *g = NULL;
        sq_error err = {0};
        if (sq_gguf_open(out, &g, &err) != SQ_OK) {
            CHECK_MSG(0, "%s: %s", arch, err.msg);
            continue;
        }
        sq_gguf_str s = {0};
        CHECK(sq_gguf_get_str(g, "general.architecture", &s, NULL) == SQ_OK && s.len == strlen(arch) &&
              memcmp(s.ptr, arch, s.len) == 0);
        const bool gem = a == 4, qk = a == 2 || a == 3 || a == 4;
        const int64_t L = gem ? 7 : 4, KV = gem ? 1 : 2, D = qk ? 128 : 64;
        CHECK_INT(hp(g, arch, "embedding_length"), 256);
        CHECK_INT(hp(g, arch, "block_count"), L);
        CHECK_INT(hp(g, arch, "attention.head_count"), 4);
        CHECK_INT(hp(g, arch, "attention.head_count_kv"), KV);
        CHECK_INT(hp(g, arch, "attention.key_length"), D);
        CHECK_INT(hp(g, arch, "feed_forward_length"), 640);
        int64_t ki = sq_gguf_find_key(g, "tokenizer.ggml.tokens");
        CHECK(ki >= 0 && sq_gguf_arr_n(g, ki) == 300);
        CHECK(has(g, "token_embd.weight", 256, 300, 1));
        CHECK(has(g, "output.weight", 256, 300, 1));
        CHECK(has(g, "output_norm.weight", 256, 1, 1));
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", (int)L - 1);
        CHECK_MSG(has(g, nm, 4 * D, 256, 1), "%s: %s", arch, nm);
        if (a == 5) {
            CHECK(has(g, "blk.0.attn_qkv.weight", 256, D * (4 + 2 * KV), 1));
            CHECK(has(g, "blk.0.ffn_up.weight", 256, 1280, 1));
            CHECK(sq_gguf_find_tensor(g, "blk.0.attn_q.weight") == NULL);
            CHECK_INT(hp(g, arch, "rope.dimension_count"), D);
        } else {
            CHECK(has(g, "blk.0.attn_q.weight", 256, 4 * D, 1));
            CHECK(has(g, "blk.0.attn_k.weight", 256, KV * D, 1));
        }
        CHECK_MSG((sq_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL) == (a == 1), "%s: q bias", arch);
        CHECK_MSG((sq_gguf_find_tensor(g, "blk.0.attn_k_norm.weight") != NULL) == qk, "%s: k norm", arch);
        CHECK_MSG((sq_gguf_find_tensor(g, "blk.0.post_ffw_norm.weight") != NULL) == gem, "%s: post norm", arch);
        if (gem) CHECK_INT(hp(g, arch, "attention.sliding_window"), 64);
        if (a == 3) {
            CHECK(has(g, "blk.0.ffn_gate_inp.weight", 256, 8, 1));
            CHECK(has(g, "blk.0.ffn_gate_exps.weight", 256, 256, 8));
            CHECK(has(g, "blk.0.ffn_down_exps.weight", 256, 256, 8));
            CHECK_INT(hp(g, arch, "expert_count"), 8);
            CHECK_INT(hp(g, arch, "expert_used_count"), 2);
            CHECK_INT(sq_gguf_find_tensor(g, "blk.0.ffn_gate_inp.weight")->type, SQ_TYPE_F32);
            CHECK(sq_gguf_find_tensor(g, "blk.0.ffn_gate.weight") == NULL);
        } else if (a != 5) {
            CHECK(has(g, "blk.0.ffn_down.weight", 640, 256, 1));
        }
        CHECK_INT(sq_gguf_find_tensor(g, "blk.0.ffn_norm.weight")->type, SQ_TYPE_F32);
        sq_gguf_close(g);
    }
}

/* The same seed gives the same bytes on 1 and 3 threads; another seed does not. */
static void test_seed_and_threads(void)
{
    char p1[600], p2[600], p3[600], args[2000];
    snprintf(args, sizeof args, "qwen2 '%s' --shape odd --n-vocab 280 --seed 7 -t 1", tpath(p1, sizeof p1, "s1.gguf"));
    CHECK(run_maker(args) == 0);
    snprintf(args, sizeof args, "qwen2 '%s' --shape odd --n-vocab 280 --seed 7 -t 3", tpath(p2, sizeof p2, "s2.gguf"));
    CHECK(run_maker(args) == 0);
    snprintf(args, sizeof args, "qwen2 '%s' --shape odd --n-vocab 280 --seed 8 -t 2", tpath(p3, sizeof p3, "s3.gguf"));
    CHECK(run_maker(args) == 0);
    size_t n1 = 0, n2 = 0, n3 = 0;
    char *a = harness_read_file(p1, &n1), *b = harness_read_file(p2, &n2), *c = harness_read_file(p3, &n3);
    CHECK(a && b && c && n1 > 1000000 && n1 == n2 && n1 == n3);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
    CHECK(a && c && n1 == n3 && memcmp(a, c, n1) != 0);
    free(a);
    free(b);
    free(c);
}

/* Tensor data of two files equal, tensor by tensor (names, types, shapes, bytes). */
static void check_same_tensors(const char *pa, const char *pb, const char *what)
{
    sq_gguf *a = NULL, *b = NULL;
    if (sq_gguf_open(pa, &a, NULL) != SQ_OK || sq_gguf_open(pb, &b, NULL) != SQ_OK) {
        CHECK_MSG(0, "%s: cannot open the files", what);
        sq_gguf_close(a);
        return;
    }
    CHECK_INT(sq_gguf_n_tensors(a), sq_gguf_n_tensors(b));
    int bad = 0, quantized = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(a); i++) {
        const sq_gguf_tensor *ta = sq_gguf_tensor_at(a, i), *tb = sq_gguf_find_tensor(b, ta->name);
        if (!tb || ta->type != tb->type || memcmp(ta->ne, tb->ne, sizeof ta->ne) != 0 || ta->nbytes != tb->nbytes ||
            memcmp(ta->data, tb->data, ta->nbytes) != 0) {
            if (bad++ < 3) fprintf(stderr, "  %s: tensor %s differs\n", what, ta->name);
        }
        quantized += ta->type != SQ_TYPE_F32 && ta->type != SQ_TYPE_F16;
    }
    CHECK_MSG(bad == 0, "%s: %d tensors differ", what, bad);
    CHECK_MSG(quantized > 4, "%s: only %d quantized tensors", what, quantized);
    sq_gguf_close(a);
    sq_gguf_close(b);
}

/* --type Q4_K_M writes what `sq quantize` (= llama-quantize) makes of the F16
 * model of the same seed: same types per tensor (the mix, expert and GQA
 * rules, width fallbacks) and the same bytes. */
static void test_direct_quantization(void)
{
    static const char *cases[][3] = {{"llama", "odd", "Q4_K_M"}, {"qwen3moe", "arch", "Q4_K_M"},
                                     {"phi3", "arch", "Q3_K_S"}};
    for (int k = 0; k < 3; k++) {
        char f16[600], q[600], ref[600], args[3000];
        snprintf(args, sizeof args, "%s '%s' --shape %s --n-vocab 290 --seed 3", cases[k][0],
                 tpath(f16, sizeof f16, "f.gguf"), cases[k][1]);
        CHECK(run_maker(args) == 0);
        snprintf(args, sizeof args, "%s '%s' --shape %s --n-vocab 290 --seed 3 --type %s", cases[k][0],
                 tpath(q, sizeof q, "q.gguf"), cases[k][1], cases[k][2]);
        CHECK(run_maker(args) == 0);
        snprintf(args, sizeof args, "'%s' quantize '%s' '%s' %s 2 >/dev/null 2>&1", harness_sq_bin(), f16,
                 tpath(ref, sizeof ref, "r.gguf"), cases[k][2]);
        CHECK(system(args) == 0);
        check_same_tensors(q, ref, cases[k][0]);
        sq_gguf *g = NULL;
        int64_t ft = -1;
        if (sq_gguf_open(q, &g, NULL) == SQ_OK) sq_gguf_get_i64(g, "general.file_type", &ft, NULL);
        CHECK_MSG(ft == (k == 2 ? 11 : 15), "%s: general.file_type %lld", cases[k][0], (long long)ft);
        sq_gguf_close(g);
    }
}

/* F32 weights: mean about 0 and standard deviation gain / sqrt(cols); norms about 1. */
static void test_value_scale(void)
{
    char p[600], args[1000];
    snprintf(args, sizeof args, "llama '%s' --shape arch --n-vocab 300 --type f32", tpath(p, sizeof p, "v.gguf"));
    CHECK(run_maker(args) == 0);
    sq_gguf *g = NULL;
    if (sq_gguf_open(p, &g, NULL) != SQ_OK) {
        CHECK(0);
        return;
    }
    static const struct { const char *name; double mean, sd; } want[] = {
        {"blk.1.attn_q.weight", 0, 2.0 / 16}, {"blk.1.ffn_down.weight", 0, 1.0 / sqrt(640.0)},
        {"output.weight", 0, 3.0 / 16}, {"blk.2.ffn_norm.weight", 1.0, 0.1}};
    for (int k = 0; k < 4; k++) {
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, want[k].name);
        if (!t || t->type != SQ_TYPE_F32) {
            CHECK_MSG(0, "%s missing or not f32", want[k].name);
            continue;
        }
        const int64_t n = t->ne[0] * t->ne[1];
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, (const char *)t->data + 4 * i, 4);
            s += v;
            s2 += (double)v * v;
        }
        const double mean = s / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
        CHECK_MSG(fabs(mean - want[k].mean) < 4 * want[k].sd / sqrt((double)n) + 1e-9, "%s mean %g", want[k].name, mean);
        CHECK_MSG(fabs(sd / want[k].sd - 1) < 0.05, "%s sd %g, want %g", want[k].name, sd, want[k].sd);
    }
    sq_gguf_close(g);
}

/* A made llama model (tied, with rope_freqs, quantized) runs in the engine. */
static void test_engine_runs_it(void)
{
    char p[600], args[1000];
    snprintf(args, sizeof args, "llama '%s' --shape arch --n-vocab 300 --tied --rope-freqs --type Q4_K_M",
             tpath(p, sizeof p, "e.gguf"));
    CHECK(run_maker(args) == 0);
    sq_model *m = NULL;
    sq_context *c = NULL;
    sq_error err = {0};
    if (sq_model_load(p, &m, &err) != SQ_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK(sq_model_hparams(m)->tied_output);
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = 64;
    const int32_t toks[5] = {1, 100, 200, 299, 5};
    CHECK(sq_context_create(m, &cp, &c, &err) == SQ_OK && sq_eval(c, toks, 5, 1, &err) == SQ_OK);
    const float *lg = c ? sq_get_logits(c) : NULL;
    bool finite = lg != NULL;
    float lo = 0, hi = 0;
    for (int i = 0; lg && i < 300; i++) {
        finite &= isfinite(lg[i]);
        lo = i == 0 || lg[i] < lo ? lg[i] : lo;
        hi = i == 0 || lg[i] > hi ? lg[i] : hi;
    }
    CHECK_MSG(finite && hi - lo > 1.0f, "logits finite and spread (%g..%g)", lo, hi);
    sq_context_free(c);
    sq_model_free(m);
}

/* Bad arguments: exit status 2 and a message naming the problem; a failure
 * while writing leaves no file. */
static void test_bad_input(void)
{
    char p[600], args[1000], *out;
    tpath(p, sizeof p, "bad.gguf");
    static const struct { const char *args, *msg; } cases[] = {
        {"mamba '%s'", "unknown architecture 'mamba'"},
        {"llama '%s' --shape 9b", "unknown shape '9b'"},
        {"llama '%s' --shape qwen3-8b", "is a qwen3 shape"},
        {"llama '%s' --type Q9_K", "--type 'Q9_K'"},
        {"llama '%s' --seed x", "--seed takes a number"},
        {"llama '%s' --n-layer 0", "--n-layer takes a positive integer"},
        {"llama '%s' --n-vocab 100", "--n-vocab 100 is below"},
        {"llama '%s' --frobnicate", "unknown option '--frobnicate'"},
        {"llama '%s' --vocab /nonexistent/v.gguf", "/nonexistent/v.gguf"},
        {"llama '%s' --type IQ2_XS", "needs an importance matrix"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(args, sizeof args, cases[k].args, p);
        const int rc = run_maker(args);
        CHECK_MSG(rc == 2 || rc == 1, "%s: exit %d", cases[k].args, rc);
        char op[600];
        out = harness_read_file(tpath(op, sizeof op, "out.txt"), NULL);
        CHECK_CONTAINS(out, cases[k].msg);
        free(out);
        CHECK_MSG(access(p, F_OK) != 0, "%s left %s", cases[k].args, p);
    }
    snprintf(args, sizeof args, "llama /nonexistent-dir/x.gguf --shape arch --n-vocab 300");
    CHECK(run_maker(args) == 1);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q tmp", tmpdir);
    CHECK_MSG(system(cmd) != 0, "a temporary file was left in %s", tmpdir);
}

int main(void)
{
    const char *b = getenv("SQ_BUILD");
    snprintf(maker, sizeof maker, "%s/bench/make_model", (b && *b) ? b : "build");
    if (access(maker, X_OK) != 0) {
        harness_current = "make_model";
        harness_skipped++;
        fprintf(stderr, "SKIP: %s not built\n", maker);
        return harness_finish("make_model");
    }
    if (!harness_tmpdir(tmpdir, sizeof tmpdir)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    RUN(test_architectures);
    RUN(test_seed_and_threads);
    RUN(test_direct_quantization);
    RUN(test_value_scale);
    RUN(test_engine_runs_it);
    RUN(test_bad_input);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_finish("make_model");
}
