/*
 * test_grad_arch.c — the planner's calibration on every architecture the
 * engine runs (tiny random models of tiny_arch.h): sq_plan_calibrate gives
 * every weight a sensitivity, from the backward pass where it runs the
 * model (sq_grad_supports), else measured per tensor through the forward
 * pass, saying why (sq_plan_sens_fallback); never an error.
 */
#include "harness.h"
#include "tiny_arch.h"
#include "sq/engine.h"
#include "sq/grad.h"
#include "sq/plan.h"

#define N_TOK 48

static char dir[512];
static int32_t toks[N_TOK];

typedef struct grad_case {
    const char *label;
    ta_spec s;
} grad_case;

/* One model per architecture, with the options that change the layer. */
static const grad_case cases[] = {
    {"llama", {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .tied = true}},
    {"llama-fused-bias",
     {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 1, .F = 96, .fused_qkv = true, .qkv_bias = true, .wo_bias = true,
      .ffn_bias = true}},
    {"qwen2", {.arch = "qwen2", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .qkv_bias = true, .out_bias = true, .base = 1e6f}},
    {"qwen3", {.arch = "qwen3", .E = 64, .L = 2, .H = 4, .KV = 2, .HD = 24, .F = 96, .qk_norm = true, .tied = true}},
    {"qwen3moe",
     {.arch = "qwen3moe", .E = 64, .L = 2, .H = 4, .KV = 2, .HD = 24, .F = 96, .X = 6, .K = 2, .FE = 64, .qk_norm = true}},
    {"gemma3",
     {.arch = "gemma3", .E = 64, .L = 3, .H = 4, .KV = 1, .HD = 32, .F = 96, .qk_norm = true, .post_norms = true,
      .swa = 5, .swa_pattern = 3, .base_swa = 20000.0f, .softcap = 3.0f, .tied = true}},
    {"phi3",
     {.arch = "phi3", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .fused_qkv = true, .fused_up = true}},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Writes and loads case k; NULL (with a failed check) when it cannot. */
static sq_model *load_case(int k)
{
    ta_model tm;
    ta_build(&tm, &cases[k].s, 777);
    char path[700];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, cases[k].label);
    sq_error e = {0};
    sq_model *m = NULL;
    sq_status st = ta_write(&tm, path, &e);
    ta_free(&tm);
    if (st == SQ_OK) st = sq_model_load(path, &m, &e);
    CHECK_MSG(st == SQ_OK, "%s: %s", cases[k].label, e.msg);
    return m;
}

/* The calibration parameters of the tests: chunks of 24 of the tokens. */
static sq_plan_calib_params calib_params(void)
{
    sq_plan_calib_params p;
    memset(&p, 0, sizeof p);
    p.tokens = toks, p.n_tokens = N_TOK, p.bos = -1, p.n_ctx = 24, p.n_chunks = 2, p.n_threads = 2;
    return p;
}

/* Every architecture calibrates: every multiplied weight gets a finite
 * sensitivity; the backward pass is used exactly where sq_grad_supports
 * says it runs, and otherwise the set says why in one line. */
static void test_every_arch(void)
{
    for (int k = 0; k < N_CASES; k++) {
        sq_model *m = load_case(k);
        if (!m) continue;
        sq_error e = {0};
        const bool fisher = sq_grad_supports(m, &e) == SQ_OK;
        sq_plan_calib_params p = calib_params();
        sq_plan_sens *s = NULL;
        const sq_status st = sq_plan_calibrate(m, NULL, &p, 0, &s, &e);
        CHECK_MSG(st == SQ_OK, "%s: %s", cases[k].label, e.msg);
        if (st == SQ_OK) {
            CHECK_MSG(sq_plan_sens_count(s) >= 4 * cases[k].s.L, "%s: %lld sensitivities", cases[k].label,
                      (long long)sq_plan_sens_count(s));
            CHECK_INT(sq_plan_sens_method(s), fisher ? SQ_PLAN_CALIB_FISHER : SQ_PLAN_CALIB_MEASURE);
            const char *why = sq_plan_sens_fallback(s);
            CHECK_MSG(fisher == (why == NULL), "%s: fallback note %s", cases[k].label, why ? why : "(none)");
            if (why) {
                CHECK_CONTAINS(why, cases[k].s.arch);
                CHECK(strchr(why, '\n') == NULL);
            }
            int measured = 0;
            for (int64_t i = 0; i < sq_plan_sens_count(s); i++) {
                const sq_plan_sensitivity *x = sq_plan_sens_at(s, i);
                CHECK_MSG(isfinite(x->weight) && x->weight >= SQ_PLAN_SENS_FLOOR, "%s: %s weight %g", cases[k].label,
                          x->name, x->weight);
                measured += x->weight > SQ_PLAN_SENS_FLOOR;
            }
            CHECK_MSG(measured >= 2 * cases[k].s.L, "%s: %d tensors measured above the floor", cases[k].label, measured);
        }
        sq_plan_sens_free(s);
        sq_model_free(m);
    }
}

/* The plain llama block runs the backward pass (the fast way), and asking
 * for the measurement still measures. */
static void test_methods(void)
{
    sq_model *m = load_case(0);
    if (!m) return;
    sq_error e = {0};
    CHECK_INT(sq_grad_supports(m, &e), SQ_OK);
    sq_plan_calib_params p = calib_params();
    p.method = SQ_PLAN_CALIB_MEASURE;
    sq_plan_sens *s = NULL;
    CHECK_MSG(sq_plan_calibrate(m, NULL, &p, 0, &s, &e) == SQ_OK, "%s", e.msg);
    CHECK_INT(sq_plan_sens_method(s), SQ_PLAN_CALIB_MEASURE);
    CHECK(sq_plan_sens_fallback(s) == NULL);
    sq_plan_sens_free(s);
    sq_model_free(m);
}

int main(void)
{
    if (!harness_tmpdir(dir, sizeof dir)) return 1;
    uint64_t seed = 99;
    for (int i = 0; i < N_TOK; i++) toks[i] = (int32_t)(ta_rand(&seed) * 0.5f * TA_VOCAB + 0.5f * TA_VOCAB) % TA_VOCAB;
    RUN(test_every_arch);
    RUN(test_methods);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return harness_finish("grad_arch");
}
