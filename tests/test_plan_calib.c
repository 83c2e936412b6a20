/*
 * test_plan_calib.c — the planner's calibration with the engine on the demo
 * model: the weight substitution hook (sq_model_set_weight), in-process
 * sensitivities (the relative errors agree with what sq_plan predicts, the
 * slope formula, the known order of sensitivities, determinism, the model
 * left as it was), the KL divergence of whole plans (zero for the model
 * itself, smaller for a bigger budget), bad input, and the tool's --calib.
 * Kept to a few seconds: short chunks, two chunks, a few tensors.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/engine.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/sqtensor.h"
#include "sq/tokenizer.h"
#include "sq/types.h"

static sq_model *model;
static sq_imatrix *imat;
static sq_token *toks;
static size_t n_toks;
static int32_t bos = -1;
static char model_path[512];

/* Loads the demo model, its importance matrix and tokenizes a slice of
 * data/calib.txt (or SKIPs in each test when something is missing). */
static void setup(void)
{
    char ibuf[512];
    const char *mp = harness_shared_file(model_path, sizeof model_path, "models/sqdemo-f16.gguf");
    const char *ip = harness_shared_file(ibuf, sizeof ibuf, "golden/llama.cpp/sqdemo.imatrix.gguf");
    size_t len = 0;
    char *text = harness_read_file("data/calib.txt", &len);
    sq_error err = {0};
    if (!mp || !ip || !text) {
        free(text);
        return;
    }
    sq_vocab *voc = NULL;
    if (sq_model_load(mp, &model, &err) == SQ_OK && sq_imatrix_load(ip, &imat, &err) == SQ_OK &&
        sq_vocab_load_gguf(sq_model_gguf(model), &voc, &err) == SQ_OK &&
        sq_tokenize(voc, text, len < 40000 ? len : 40000, true, false, &toks, &n_toks, &err) == SQ_OK)
        bos = sq_vocab_add_bos(voc) ? sq_vocab_bos(voc) : -1;
    else
        fprintf(stderr, "setup: %s\n", err.msg);
    sq_vocab_free(voc);
    free(text);
}

#define NEED_SETUP() \
    if (!model || !imat || !toks) SKIP("demo model, imatrix or data/calib.txt not available")

static sq_plan_calib_params small_params(void)
{
    sq_plan_calib_params p = {.tokens = toks, .n_tokens = n_toks, .bos = bos, .n_ctx = 96, .n_chunks = 2,
                              .n_threads = 2};
    return p;
}

/* The hook: lookup, refusals, substitution changes the output and restoring
 * gives back exactly the original logits. */
static void test_set_weight(void)
{
    NEED_SETUP();
    sq_error err = {0};
    CHECK(sq_model_weight(model, "blk.0.attn_q.weight") != NULL);
    CHECK(sq_model_weight(model, "blk.9.attn_q.weight") == NULL);
    CHECK(sq_model_weight(model, "blk.0.attn_norm.weight") == NULL);
    CHECK(sq_model_weight(model, "nonsense") == NULL);
    const sq_weight orig = *sq_model_weight(model, "blk.1.ffn_down.weight");
    CHECK_INT(orig.type, SQ_TYPE_F16);
    sq_weight bad = orig;
    bad.rows = orig.rows / 2;
    CHECK_INT(sq_model_set_weight(model, "blk.1.ffn_down.weight", &bad, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "blk.1.ffn_down.weight");
    CHECK_INT(sq_model_set_weight(model, "blk.1.ffn_norm.weight", &orig, &err), SQ_ENOTFOUND);

    /* logits of the model, then with ffn_down zeroed (an F16 view of zeros), then restored */
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 2;
    int nv = (int)sq_model_hparams(model)->n_vocab;
    float *l0 = malloc(sizeof(float) * (size_t)nv * 3);
    uint16_t *zeros = calloc((size_t)(orig.rows * orig.cols), 2);
    CHECK(l0 && zeros);
    if (!l0 || !zeros) return;
    for (int k = 0; k < 3; k++) {
        if (k == 1) {
            sq_weight z;
            CHECK_INT(sq_weight_plain(&z, zeros, SQ_TYPE_F16, orig.rows, orig.cols, &err), SQ_OK);
            CHECK_MSG(sq_model_set_weight(model, "blk.1.ffn_down.weight", &z, &err) == SQ_OK, "%s", err.msg);
            CHECK(sq_model_weight(model, "blk.1.ffn_down.weight")->data == zeros);
        }
        if (k == 2) CHECK_INT(sq_model_set_weight(model, "blk.1.ffn_down.weight", &orig, &err), SQ_OK);
        sq_context *c = NULL;
        CHECK_MSG(sq_context_create(model, &cp, &c, &err) == SQ_OK, "%s", err.msg);
        if (c) CHECK_MSG(sq_eval(c, toks, 16, 1, &err) == SQ_OK, "%s", err.msg);
        if (c) memcpy(l0 + (size_t)k * (size_t)nv, sq_get_logits(c), sizeof(float) * (size_t)nv);
        sq_context_free(c);
    }
    CHECK(memcmp(l0, l0 + nv, sizeof(float) * (size_t)nv) != 0);
    CHECK(memcmp(l0, l0 + 2 * nv, sizeof(float) * (size_t)nv) == 0);
    free(l0);
    free(zeros);
}

/* Sensitivities of three tensors: the relative errors are what the planner
 * predicts for the same type on every segment, the weight is the slope, the
 * output projection matters far more than layer 0's attn_q (docs/quality.md:
 * a factor of about 2000), the same run gives the same numbers, and the
 * model's views are left as they were. */
static void test_sensitivity(void)
{
    NEED_SETUP();
    sq_error err = {0};
    sq_plan_calib_params p = small_params();
    p.tensors = "^(blk\\.0\\.attn_q|blk\\.3\\.ffn_down|output)\\.weight$";
    const void *data_before = sq_model_weight(model, "output.weight")->data;
    sq_plan_sens *a = NULL, *b = NULL;
    CHECK_MSG(sq_plan_measure_sensitivity(model, imat, &p, &a, &err) == SQ_OK, "%s", err.msg);
    sq_plan_calib_params p1 = p;
    p1.tensors = "^blk\\.0\\.attn_q\\.weight$";
    CHECK_MSG(sq_plan_measure_sensitivity(model, imat, &p1, &b, &err) == SQ_OK, "%s", err.msg);
    CHECK(sq_model_weight(model, "output.weight")->data == data_before);
    CHECK(sq_model_weight(model, "output.weight")->type == SQ_TYPE_F16);
    if (!a || !b) goto out;
    CHECK_INT(sq_plan_sens_count(a), 3);
    CHECK(sq_plan_sens_base_nll(a) > 1.0 && sq_plan_sens_base_nll(a) < 8.0);
    const sq_plan_sensitivity *q = sq_plan_sens_at(a, 0), *d = sq_plan_sens_at(a, 1), *o = sq_plan_sens_at(a, 2);
    CHECK(sq_plan_sens_at(a, 3) == NULL);
    CHECK_STR(q->name, "blk.0.attn_q.weight");
    CHECK_STR(o->name, "output.weight");
    /* the same measurement again: the same numbers */
    CHECK_INT(sq_plan_sens_count(b), 1);
    CHECK(q->weight == sq_plan_sens_at(b, 0)->weight && q->kld[0] == sq_plan_sens_at(b, 0)->kld[0]);
    for (int64_t i = 0; i < 3; i++) {
        const sq_plan_sensitivity *e = sq_plan_sens_at(a, i);
        CHECK_INT(e->n_points, 2);
        CHECK_INT(e->types[0], SQ_TYPE_Q3_K);
        CHECK_INT(e->types[1], SQ_TYPE_Q5_K);
        CHECK(e->rel[0] > 5 * e->rel[1] && e->rel[1] > 0);
        CHECK(e->kld[0] > e->kld[1] && e->kld[1] > 0);
        CHECK_NEAR(e->weight, (e->kld[0] - e->kld[1]) / (e->rel[0] - e->rel[1]), 1e-12 * e->weight);
        CHECK_STR(sq_plan_sens_weights(a)[i].name, e->name);
        CHECK(sq_plan_sens_weights(a)[i].weight == e->weight);
    }
    CHECK_MSG(o->weight > 100 * q->weight, "output %g, blk.0.attn_q %g", o->weight, q->weight);
    CHECK(o->weight > d->weight && d->weight > q->weight);

    /* the planner's prediction for q3_K everywhere, every row, no permutation */
    int only = SQ_TYPE_Q3_K;
    sq_plan_params pp = {.target_bpw = 16, .tensors = p.tensors, .types = &only, .n_types = 1,
                         .perm = SQ_PLAN_PERM_OFF, .sample_rows = -1, .n_threads = 2};
    sq_plan *plan = NULL;
    CHECK_MSG(sq_plan_create(sq_model_gguf(model), imat, &pp, &plan, &err) == SQ_OK, "%s", err.msg);
    for (int64_t i = 0; plan && i < sq_plan_n_tensors(plan); i++) {
        const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
        const sq_plan_sensitivity *e = sq_plan_sens_at(a, i);
        CHECK_STR(t->name, e->name);
        CHECK_NEAR(t->rel_error, e->rel[0], 1e-9 * e->rel[0]);
    }
    sq_plan_free(plan);

    /* one measuring point: the line through the origin */
    int one = SQ_TYPE_Q4_K;
    p.types = &one;
    p.n_types = 1;
    p.tensors = "^output\\.weight$";
    sq_plan_sens *c = NULL;
    CHECK_MSG(sq_plan_measure_sensitivity(model, imat, &p, &c, &err) == SQ_OK, "%s", err.msg);
    if (c) {
        const sq_plan_sensitivity *e = sq_plan_sens_at(c, 0);
        CHECK_INT(e->n_points, 1);
        CHECK_NEAR(e->weight, e->kld[0] / e->rel[0], 1e-12 * e->weight);
        /* q4_K's error lies between q3_K's and q5_K's */
        CHECK(e->rel[0] < o->rel[0] && e->rel[0] > o->rel[1]);
        CHECK(e->kld[0] < o->kld[0] && e->kld[0] > o->kld[1]);
    }
    sq_plan_sens_free(c);
out:
    sq_plan_sens_free(a);
    sq_plan_sens_free(b);
}

/* Whole plans: a bigger budget measures a smaller KL divergence; the model
 * is left unchanged. */
static void test_plan_kld(void)
{
    NEED_SETUP();
    sq_error err = {0};
    sq_plan_calib_params p = small_params();
    double kld[2] = {0, 0};
    const double bpw[2] = {4.6, 5.6}; /* layer 3 at about 3.4 and 8 bits per weight, the rest as Q4_K_M */
    for (int k = 0; k < 2; k++) {
        sq_plan_params pp = {.target_bpw = bpw[k], .tensors = "^blk\\.3\\.", .sample_rows = 32, .n_threads = 2};
        sq_plan *plan = NULL;
        CHECK_MSG(sq_plan_create(sq_model_gguf(model), imat, &pp, &plan, &err) == SQ_OK, "%s", err.msg);
        if (plan) CHECK_MSG(sq_plan_measure_kld(model, imat, plan, &p, &kld[k], &err) == SQ_OK, "%s", err.msg);
        sq_plan_free(plan);
    }
    CHECK_MSG(kld[0] > 0 && kld[1] > 0 && kld[1] < kld[0] / 2, "KLD %g at 4.6 bpw, %g at 5.6", kld[0], kld[1]);
    CHECK(sq_model_weight(model, "blk.3.attn_v.weight")->type == SQ_TYPE_F16);
    CHECK(!sq_model_weight(model, "blk.3.attn_v.weight")->mixed);
}

/* In the plan: layer 3 planned at 5 bpw; the plan's KL divergence is the
 * one sq_plan_measure_kld measures, giving a tensor its weights back lowers
 * it for most tensors, the relative errors are the planner's; one round of
 * refinement returns a plan that measures no worse than the first. */
static void test_in_plan(void)
{
    NEED_SETUP();
    sq_error err = {0};
    sq_plan_calib_params p = small_params();
    static const int few[3] = {SQ_TYPE_Q4_K, SQ_TYPE_Q5_K, SQ_TYPE_Q6_K};
    sq_plan_params pp = {.target_bpw = 5, .tensors = "^blk\\.3\\.attn_", .types = few, .n_types = 3,
                         .sample_rows = -1, .n_threads = 2};
    sq_plan *plan = NULL;
    CHECK_MSG(sq_plan_create(sq_model_gguf(model), imat, &pp, &plan, &err) == SQ_OK, "%s", err.msg);
    if (!plan) return;
    double k_plan = -1, k_in = -1;
    CHECK_MSG(sq_plan_measure_kld(model, imat, plan, &p, &k_plan, &err) == SQ_OK, "%s", err.msg);
    sq_plan_sens *s = NULL;
    CHECK_MSG(sq_plan_measure_sensitivity_in_plan(model, imat, plan, &p, &s, &k_in, &err) == SQ_OK, "%s", err.msg);
    CHECK(k_plan > 0 && k_plan == k_in);
    if (s) {
        CHECK_INT(sq_plan_sens_count(s), 4);
        int positive = 0;
        double sum = 0;
        for (int64_t i = 0; i < sq_plan_sens_count(s); i++) {
            const sq_plan_sensitivity *e = sq_plan_sens_at(s, i);
            const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
            CHECK_STR(e->name, t->name);
            CHECK_NEAR(e->rel[0], t->rel_error, 1e-6 * t->rel_error);
            CHECK(e->kld[0] < k_plan);
            positive += e->kld[0] > 0;
            sum += e->kld[0];
        }
        CHECK_MSG(positive >= 3 && sum > 0, "%d drops positive, sum %g", positive, sum);
    }
    sq_plan_sens_free(s);
    double k_ref = -1;
    CHECK_MSG(sq_plan_refine(model, imat, &pp, &p, 1, &plan, &k_ref, &err) == SQ_OK, "%s", err.msg);
    CHECK(plan != NULL && k_ref > 0 && k_ref <= k_plan);
    double k_check = -1;
    if (plan) CHECK_MSG(sq_plan_measure_kld(model, imat, plan, &p, &k_check, &err) == SQ_OK, "%s", err.msg);
    CHECK(k_check == k_ref);
    CHECK(sq_model_weight(model, "blk.3.attn_k.weight")->type == SQ_TYPE_F16);
    sq_plan_free(plan);
}

/* Activation costs: measured with a q8_0 point they are the intercepts the
 * entry's numbers give; blk.0.ffn_down (its input, the SwiGLU output, has
 * outliers) costs more with q8_K activations than with q8_0; and the planner
 * then prefers q5_0 (q8_0 activations) to q5_K of the same size, which it
 * prefers without them (q5_K's weight error is lower). */
static void test_activation_cost(void)
{
    NEED_SETUP();
    sq_error err = {0};
    sq_plan_calib_params p = small_params();
    p.tensors = "^blk\\.0\\.ffn_down\\.weight$";
    p.act_type = SQ_TYPE_Q8_0;
    p.n_ctx = 256; /* the effect shows on the longer chunks */
    sq_plan_sens *s = NULL;
    CHECK_MSG(sq_plan_measure_sensitivity(model, imat, &p, &s, &err) == SQ_OK, "%s", err.msg);
    if (!s) return;
    const sq_plan_sensitivity *e = sq_plan_sens_at(s, 0);
    CHECK(e->rel_act > 0 && e->rel_act < e->rel[1] / 5 && e->kld_act > 0);
    CHECK_NEAR(e->act_q8_K, fmax(0.0, e->kld[1] - e->weight * e->rel[1]), 1e-15);
    CHECK_NEAR(e->act_q8_0, fmax(0.0, e->kld_act - e->weight * e->rel_act), 1e-15);
    CHECK_MSG(e->act_q8_K > 2 * e->act_q8_0 && e->act_q8_K > 0, "q8_K %g, q8_0 %g", e->act_q8_K, e->act_q8_0);
    CHECK(sq_plan_sens_weights(s)[0].act_q8_K == e->act_q8_K && sq_plan_sens_weights(s)[0].act_q8_0 == e->act_q8_0);

    static const int two[2] = {SQ_TYPE_Q5_K, SQ_TYPE_Q5_0};
    sq_plan_weight w = sq_plan_sens_weights(s)[0];
    for (int with = 0; with < 2; with++) {
        if (!with) w.act_q8_K = w.act_q8_0 = 0.0;
        else w = sq_plan_sens_weights(s)[0];
        sq_plan_params pp = {.target_bpw = 6, .tensors = p.tensors, .types = two, .n_types = 2,
                             .perm = SQ_PLAN_PERM_OFF, .sample_rows = 64, .n_threads = 2, .weights = &w, .n_weights = 1};
        sq_plan *plan = NULL;
        CHECK_MSG(sq_plan_create(sq_model_gguf(model), imat, &pp, &plan, &err) == SQ_OK, "%s", err.msg);
        const sq_plan_tensor *t = plan ? sq_plan_tensor_at(plan, 0) : NULL;
        if (t) {
            for (int k = 0; k < 4; k++) CHECK_INT(t->types[k], with ? SQ_TYPE_Q5_0 : SQ_TYPE_Q5_K);
            if (with) CHECK(t->error > w.act_q8_0 * 0.99); /* the predicted error counts the activations */
        }
        sq_plan_free(plan);
    }
    sq_plan_sens_free(s);
    /* refused: a type with q8_K activations, or activation costs without two K-quant points */
    p.act_type = SQ_TYPE_Q4_K;
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    int one = SQ_TYPE_Q4_K;
    p.act_type = SQ_TYPE_Q8_0;
    p.types = &one;
    p.n_types = 1;
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "two K-quant");
}

static void test_bad_input(void)
{
    NEED_SETUP();
    sq_error err = {0};
    sq_plan_sens *s = NULL;
    sq_plan_calib_params p = small_params();
    p.n_tokens = 50; /* shorter than one chunk of 96 */
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "shorter than one chunk");
    p = small_params();
    p.tensors = "^nothing$";
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "no weight to calibrate");
    p.tensors = "([";
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    p = small_params();
    int three[3] = {SQ_TYPE_Q3_K, SQ_TYPE_Q4_K, SQ_TYPE_Q5_K};
    p.types = three;
    p.n_types = 3;
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    int32_t bad_tok[200];
    for (int i = 0; i < 200; i++) bad_tok[i] = i == 7 ? 1 << 20 : 5;
    p = small_params();
    p.tokens = bad_tok;
    p.n_tokens = 200;
    CHECK_INT(sq_plan_measure_sensitivity(model, imat, &p, &s, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "outside the vocabulary");
    CHECK(s == NULL);
    sq_plan_sens_free(NULL);
}

/* The tool: --calib measures, --sensitivity-out writes a file --sensitivity reads. */
/* The Fisher calibration: every weight in one pass per chunk; the
 * sensitivities agree with the measured ones where those are well above
 * their noise, in the known order; activation costs only where the CPU
 * quantizes activations; deterministic; the regex and sq_plan_calibrate. */
static void test_fisher(void)
{
    NEED_SETUP();
    sq_error err = {0};
    sq_plan_calib_params p = small_params();
    sq_plan_sens *f = NULL, *f2 = NULL, *m = NULL, *one = NULL;
    CHECK_MSG(sq_plan_fisher_sensitivity(model, imat, &p, 0, &f, &err) == SQ_OK, "%s", err.msg);
    CHECK_MSG(sq_plan_calibrate(model, imat, &p, 0, &f2, &err) == SQ_OK, "%s", err.msg);
    sq_plan_calib_params pm = p;
    pm.method = SQ_PLAN_CALIB_MEASURE;
    pm.tensors = "^(blk\\.3\\.ffn_down|output)\\.weight$";
    CHECK_MSG(sq_plan_calibrate(model, imat, &pm, 0, &m, &err) == SQ_OK, "%s", err.msg);
    sq_plan_calib_params p1 = p;
    p1.tensors = "^output\\.weight$";
    CHECK_MSG(sq_plan_fisher_sensitivity(model, imat, &p1, 0, &one, &err) == SQ_OK, "%s", err.msg);
    if (!f || !f2 || !m || !one) goto out;
    CHECK_INT(sq_plan_sens_count(f), 30);
    CHECK_INT(sq_plan_sens_count(one), 1);
    CHECK(sq_plan_sens_base_nll(f) > 1.0 && sq_plan_sens_base_nll(f) < 8.0);
    CHECK_INT(sq_plan_sens_at(m, 0)->n_points, 2);
    const sq_plan_sensitivity *q = NULL, *d = NULL, *o = NULL, *e0 = sq_plan_sens_at(f, 0);
    bool same = true;
    for (int64_t i = 0; i < sq_plan_sens_count(f); i++) {
        const sq_plan_sensitivity *e = sq_plan_sens_at(f, i);
        if (!strcmp(e->name, "blk.0.attn_q.weight")) q = e;
        if (!strcmp(e->name, "blk.3.ffn_down.weight")) d = e;
        if (!strcmp(e->name, "output.weight")) o = e;
        CHECK(e->weight >= SQ_PLAN_SENS_FLOOR && e->n_points == 2 && e->types[0] == SQ_TYPE_Q3_K);
        CHECK(e->kld[0] > e->kld[1] && e->kld[1] > 0 && e->rel[0] > 5 * e->rel[1]);
        CHECK_NEAR(e->weight, (e->kld[0] - e->kld[1]) / (e->rel[0] - e->rel[1]), 1e-9 * e->weight);
        same = same && e->weight == sq_plan_sens_at(f2, i)->weight && e->act_q8_K == sq_plan_sens_at(f2, i)->act_q8_K;
        CHECK_STR(sq_plan_sens_weights(f)[i].name, e->name);
    }
    CHECK_MSG(same, "two Fisher calibrations differ");
    CHECK(q && d && o);
    if (!q || !d || !o) goto out;
    CHECK_STR(e0->name, "token_embd.weight");
    CHECK(e0->act_q8_K == 0 && e0->act_q8_0 == 0 && d->act_q8_K > 0 && d->act_q8_0 > 0);
    CHECK_MSG(o->weight > 100 * q->weight, "output %g, blk.0.attn_q %g", o->weight, q->weight);
    CHECK(sq_plan_sens_at(one, 0)->weight == o->weight);
    /* the measured slopes of the two big ones, within the noise of two short chunks */
    for (int k = 0; k < 2; k++) {
        const sq_plan_sensitivity *meas = sq_plan_sens_at(m, k), *fi = k == 0 ? d : o;
        CHECK_MSG(fi->weight > 0.6 * meas->weight && fi->weight < 1.6 * meas->weight, "%s: Fisher %g, measured %g",
                  meas->name, fi->weight, meas->weight);
    }
out:
    sq_plan_sens_free(f);
    sq_plan_sens_free(f2);
    sq_plan_sens_free(m);
    sq_plan_sens_free(one);
}

static void test_tool(void)
{
    NEED_SETUP();
    const char *sq = harness_sq_bin();
    if (access(sq, X_OK) != 0) SKIP("no %s", sq);
    char dir[256], cmd[3000], sens[400], ibuf[512];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    const char *ip = harness_shared_file(ibuf, sizeof ibuf, "golden/llama.cpp/sqdemo.imatrix.gguf");
    snprintf(sens, sizeof sens, "%s/sens.txt", dir);
    snprintf(cmd, sizeof cmd,
             "%s plan -m %s --imatrix %s --target-bpw 5 --tensors '^blk\\.3\\.(attn_v|ffn_down)' --calib data/calib.txt --calib-chunks 1 "
             "--calib-ctx 64 --calib-method measure --calib-types q4_K --sensitivity-out %s --measure-kld --sample-rows 16 -q --dry-run -t 2 "
             ">%s/out.txt 2>/dev/null",
             sq, model_path, ip, sens, dir);
    CHECK_INT(system(cmd), 0);
    size_t n = 0;
    char *text = harness_read_file(sens, &n);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "\noutput.weight") == NULL); /* only the planned tensors */
        CHECK_CONTAINS(text, "blk.3.ffn_down.weight ");
        CHECK_CONTAINS(text, " q4_K ");
        free(text);
    }
    char outp[400];
    snprintf(outp, sizeof outp, "%s/out.txt", dir);
    text = harness_read_file(outp, &n);
    CHECK(text != NULL);
    if (text) {
        CHECK_CONTAINS(text, "calibrated 2 tensors");
        CHECK_CONTAINS(text, "measured: mean KL divergence");
        free(text);
    }
    /* the file written is a valid --sensitivity file */
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-bpw 5 --sensitivity %s --tensors '^blk\\.3\\.' --sample-rows 8 -q --dry-run >/dev/null 2>&1",
             sq, model_path, ip, sens);
    CHECK_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "%s plan -m %s --imatrix %s --target-bpw 5 --sensitivity %s --calib data/calib.txt --sensitivity-out %s/x "
             "2>/dev/null",
             sq, model_path, ip, sens, dir);
    CHECK(system(cmd) != 0);
    /* sensitivity lines with activation costs: two numbers more, not one */
    const char *lines[2] = {"blk.3.ffn_down.weight 0.08 6.5e-5 1.5e-5\n", "blk.3.ffn_down.weight 0.08 6.5e-5\n"};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(sens, "w");
        CHECK(f != NULL);
        if (!f) break;
        fputs(lines[k], f);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "%s plan -m %s --imatrix %s --target-bpw 5 --sensitivity %s --tensors '^blk\\.3\\.ffn_down' "
                 "--sample-rows 8 -q --dry-run >/dev/null 2>&1",
                 sq, model_path, ip, sens);
        int rc = system(cmd);
        CHECK_MSG(k == 0 ? rc == 0 : rc != 0, "line %d: exit %d", k, rc);
    }
    /* the default method: Fisher statistics, every line with its activation costs */
    snprintf(cmd, sizeof cmd,
             "%s plan -m %s --imatrix %s --target-bpw 5 --tensors '^blk\\.3\\.' --calib data/calib.txt --calib-chunks 1 "
             "--calib-ctx 64 --sensitivity-out %s --sample-rows 16 -q --dry-run -t 2 >%s 2>/dev/null",
             sq, model_path, ip, sens, outp);
    CHECK_INT(system(cmd), 0);
    text = harness_read_file(outp, &n);
    if (text) CHECK_CONTAINS(text, "calibrated 7 tensors");
    if (text) CHECK_CONTAINS(text, "Fisher information");
    free(text);
    text = harness_read_file(sens, &n);
    double w = 0, ak = 0, a0 = 0;
    const char *line = text ? strstr(text, "\nblk.3.ffn_down.weight ") : NULL;
    CHECK(line && sscanf(line, " blk.3.ffn_down.weight %lf %lf %lf", &w, &ak, &a0) == 3 && w > 0 && ak > 0 && a0 > 0);
    free(text);
    /* flags of the measuring method need it */
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-bpw 5 --calib data/calib.txt --calib-act q8_0 --dry-run 2>&1",
             sq, model_path, ip);
    int rc = 0;
    char *msg = tu_popen_read(cmd, &rc);
    CHECK(rc != 0);
    if (msg) CHECK_CONTAINS(msg, "--calib-act needs --calib-method measure");
    free(msg);
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-bpw 5 --calib data/calib.txt --calib-method guess --dry-run 2>&1",
             sq, model_path, ip);
    msg = tu_popen_read(cmd, &rc);
    CHECK(rc != 0);
    if (msg) CHECK_CONTAINS(msg, "want fisher or measure");
    free(msg);
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-bpw 5 --measure-kld 2>/dev/null", sq, model_path, ip);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-bpw 5 --calib %s/none.txt 2>/dev/null", sq,
             model_path, ip, dir);
    CHECK(system(cmd) != 0);
    unlink(sens);
    unlink(outp);
    rmdir(dir);
}

int main(void)
{
    setup();
    RUN(test_set_weight);
    RUN(test_sensitivity);
    RUN(test_plan_kld);
    RUN(test_in_plan);
    RUN(test_activation_cost);
    RUN(test_bad_input);
    RUN(test_fisher);
    RUN(test_tool);
    free(toks);
    sq_imatrix_free(imat);
    sq_model_free(model);
    return harness_finish("plan_calib");
}
