/*
 * test_grad_arch.c — the planner's calibration on every architecture the
 * engine runs (tiny random models of tiny_arch.h): the backward pass on every
 * architecture (experts included: qwen3moe, llama's with and without gate
 * experts, experts stored permuted) computes the engine's loss and its
 * gradient (finite differences, the router's and every expert tensor's); sq_plan_calibrate gives every weight a
 * sensitivity, from the backward pass where it runs the model
 * (sq_grad_supports), else measured per tensor through the forward pass,
 * saying why (sq_plan_sens_fallback); never an error.
 */
#include "harness.h"
#include "tiny_arch.h"
#include "sq/engine.h"
#include "sq/grad.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/sqtensor.h"

#define N_TOK 48

static char dir[512];
static int32_t toks[N_TOK];

typedef struct grad_case {
    const char *label;
    ta_spec s;
    const char *fd_only; /* finite differences only of the tensors whose names contain one of these (|-separated) */
} grad_case;

/* One model per architecture, with the options that change the layer. */
static const grad_case cases[] = {
    {.label = "llama", .s = {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .tied = true}},
    {.label = "llama-fused-bias",
     .s = {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 1, .F = 96, .fused_qkv = true, .qkv_bias = true, .wo_bias = true,
      .ffn_bias = true}},
    {.label = "llama-yarn",
     .s = {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .rope_type = "yarn", .rope_factor = 4.0f,
      .orig_ctx = 16, .attn_factor = 1.1f}},
    {.label = "qwen2", .s = {.arch = "qwen2", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .qkv_bias = true, .out_bias = true, .base = 1e6f}},
    {.label = "qwen3", .s = {.arch = "qwen3", .E = 64, .L = 2, .H = 4, .KV = 2, .HD = 24, .F = 96, .qk_norm = true, .tied = true}},
    {.label = "qwen3moe",
     .s = {.arch = "qwen3moe", .E = 64, .L = 2, .H = 4, .KV = 2, .HD = 24, .F = 96, .X = 6, .K = 2, .FE = 64, .qk_norm = true}},
    /* experts stored permuted (SmarterQuant F32): only theirs replaced (q/k/v share a gathered input) */
    {.label = "qwen3moe-sq",
     .s = {.arch = "qwen3moe", .E = 64, .L = 2, .H = 4, .KV = 2, .HD = 24, .F = 96, .X = 5, .K = 3, .FE = 48, .qk_norm = true,
      .sq = true},
     .fd_only = "_exps|gate_inp"},
    {.label = "llama-moe", .s = {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 64, .X = 4, .K = 2, .FE = 64}},
    {.label = "llama-moe-nogate",
     .s = {.arch = "llama", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 64, .X = 4, .K = 2, .FE = 64, .no_gate_exps = true}},
    {.label = "gemma3",
     .s = {.arch = "gemma3", .E = 64, .L = 3, .H = 4, .KV = 1, .HD = 32, .F = 96, .qk_norm = true, .post_norms = true,
      .swa = 5, .swa_pattern = 3, .base_swa = 20000.0f, .softcap = 3.0f, .tied = true}},
    {.label = "phi3",
     .s = {.arch = "phi3", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .fused_qkv = true, .fused_up = true}},
    {.label = "phi3-longrope",
     .s = {.arch = "phi3", .E = 64, .L = 2, .H = 4, .KV = 2, .F = 96, .n_rot = 8, .fused_qkv = true, .fused_up = true,
      .rope_long = true, .rope_type = "longrope", .orig_ctx = 16, .attn_factor = 1.19f}},
    {.label = "gemma3-array",
     .s = {.arch = "gemma3", .E = 64, .L = 3, .H = 2, .KV = 2, .HD = 16, .F = 64, .qk_norm = true, .post_norms = true,
      .swa = 4, .swa_arr = true}},
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
                if (getenv("SQ_GRAD_VERBOSE")) printf("  sens %s %s %g\n", cases[k].label, x->name, x->weight);
            }
            CHECK_MSG(measured >= 2 * cases[k].s.L, "%s: %d tensors measured above the floor", cases[k].label, measured);
        }
        sq_plan_sens_free(s);
        sq_model_free(m);
    }
}

/* The loss the grad's forward pass gives the chunk against the engine's
 * (f32 KV cache): the same function of the weights. */
static double engine_loss(sq_model *m, int n, int first)
{
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = TA_CTX, cp.kv_type = SQ_TYPE_F32, cp.n_threads = 1;
    sq_context *c = NULL;
    sq_error e = {0};
    double loss = NAN;
    if (sq_context_create(m, &cp, &c, &e) == SQ_OK && sq_eval(c, toks, n, n, &e) == SQ_OK) {
        const int64_t V = sq_model_hparams(m)->n_vocab;
        loss = 0.0;
        for (int t = first; t < n - 1; t++) {
            const float *x = sq_get_logits(c) + (size_t)t * (size_t)V;
            double mx = x[0], z = 0.0;
            for (int64_t v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
            for (int64_t v = 0; v < V; v++) z += exp((double)x[v] - mx);
            loss += mx + log(z) - (double)x[toks[t + 1]];
        }
    }
    sq_context_free(c);
    return loss;
}

/* What the hook sums for one tensor: sum(D .* G) of its uses (a tied
 * embedding's lookup and product both), G = dY^T X (lookup: dY[t] in row tok[t]). */
typedef struct dir_grad {
    const char *name;
    const float *D; /* rows × cols, original column order */
    double dd;
} dir_grad;

static void dir_hook(void *user, const sq_grad_stats *s, const float *X, const int32_t *tk, const float *dY, int64_t n)
{
    dir_grad *d = user;
    if (strcmp(s->name, d->name) != 0) return;
    for (int64_t t = 0; t < n; t++) {
        if (s->lookup) {
            for (int64_t c = 0; c < s->cols; c++) d->dd += (double)dY[t * s->cols + c] * d->D[tk[t] * s->cols + c];
            continue;
        }
        for (int64_t r = 0; r < s->rows; r++) { /* an expert's slice: its rows from s->row0 */
            double dx = 0.0;
            const float *Dr = d->D + (s->row0 + r) * s->cols;
            for (int64_t c = 0; c < s->cols; c++) dx += (double)Dr[c] * X[t * s->cols + c];
            d->dd += dx * dY[t * s->rows + r];
        }
    }
}

/* The chunk's loss (no backward) with tensor name's weights W + eps D. */
static double loss_at(sq_model *m, sq_grad *g, const char *name, const float *W, const float *D, int64_t n, double eps,
                      int nb, int first)
{
    const sq_weight orig = *sq_model_weight(m, name);
    float *Wp = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) Wp[i] = (float)(W[i] + eps * D[i]);
    sq_weight v;
    sq_error e = {0};
    double loss = NAN;
    if (sq_weight_plain(&v, Wp, SQ_TYPE_F32, orig.rows, orig.cols, &e) == SQ_OK &&
        sq_model_set_weight(m, name, &v, &e) == SQ_OK) {
        if (sq_grad_chunk(g, toks, nb, first, false, &loss, &e) != SQ_OK) loss = NAN;
        sq_model_set_weight(m, name, &orig, &e);
    }
    free(Wp);
    return loss;
}

/* Whether name contains one of the |-separated parts of list. */
static bool name_in(const char *name, const char *list)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, "|", &save); t; t = strtok_r(NULL, "|", &save))
        if (strstr(name, t)) return true;
    return false;
}

/* Every weight use of m: sum(D .* G) from the backward pass against the
 * central difference of the loss along a random D. */
static void check_fd(sq_model *m, sq_grad *g, const char *label, const char *only, int nb, int first)
{
    uint64_t seed = 5;
    int checked = 0;
    for (int64_t i = 0; i < sq_grad_n_stats(g); i++) {
        const sq_grad_stats *s = sq_grad_stats_at(g, i);
        if (!s->lookup && sq_grad_find(g, s->name, true)) continue; /* a tied embedding: with its lookup */
        if (only && !name_in(s->name, only)) continue;
        const int64_t n = s->rows * s->cols;
        const sq_weight *w = sq_model_weight(m, s->name);
        float *W = malloc(sizeof(float) * (size_t)n), *D = malloc(sizeof(float) * (size_t)n);
        double dn = 0, wn = 0;
        for (int64_t r = 0; r < s->rows; r++) sq_weight_get_row(w, r, W + r * s->cols);
        for (int64_t j = 0; j < n; j++) {
            D[j] = ta_rand(&seed);
            dn += (double)D[j] * D[j];
            wn += (double)W[j] * W[j];
        }
        dir_grad d = {s->name, D, 0.0};
        sq_error e = {0};
        sq_grad_set_hook(g, dir_hook, &d);
        CHECK_INT(sq_grad_chunk(g, toks, nb, first, true, NULL, &e), SQ_OK);
        sq_grad_set_hook(g, NULL, NULL);
        const double eps = 5e-4 * sqrt(wn / dn);
        const double fd =
            (loss_at(m, g, s->name, W, D, n, eps, nb, first) - loss_at(m, g, s->name, W, D, n, -eps, nb, first)) /
            (2 * eps);
        if (getenv("SQ_GRAD_VERBOSE")) printf("  %s %s: %.6g %.6g\n", label, s->name, d.dd, fd);
        CHECK_MSG(fabs(fd - d.dd) <= 0.02 * fabs(fd) + 0.08, "%s: %s: gradient . D = %.6g, finite difference %.6g",
                  label, s->name, d.dd, fd);
        checked++;
        free(W), free(D);
    }
    CHECK_MSG(checked >= 4, "%s: %d weights checked", label, checked);
}

/* Every architecture the backward pass runs: its forward is the engine's
 * (the same loss), and its gradient that loss's (finite differences). */
static void test_backward_arch(void)
{
    const int nb = 24, first = 4;
    for (int k = 0; k < N_CASES; k++) {
        sq_model *m = load_case(k);
        if (!m) continue;
        sq_error e = {0};
        if (sq_grad_supports(m, &e) != SQ_OK) {
            CHECK_MSG(sq_model_hparams(m)->n_expert > 0, "%s: %s", cases[k].label, e.msg);
            sq_model_free(m);
            continue;
        }
        sq_grad_params gp = sq_grad_default_params();
        gp.n_ctx = nb, gp.n_threads = 2, gp.target = SQ_GRAD_TEXT;
        sq_grad *g = NULL;
        CHECK_MSG(sq_grad_create(m, &gp, &g, &e) == SQ_OK, "%s: %s", cases[k].label, e.msg);
        double loss = NAN;
        if (g) CHECK_INT(sq_grad_chunk(g, toks, nb, first, false, &loss, &e), SQ_OK);
        const double ref = engine_loss(m, nb, first);
        CHECK_MSG(fabs(loss - ref) <= 1e-4 * fabs(ref), "%s: loss %.8g, the engine's %.8g", cases[k].label, loss, ref);
        if (g) check_fd(m, g, cases[k].label, cases[k].fd_only, nb, first);
        sq_grad_free(g);
        sq_model_free(m);
    }
}

/* Layers with experts: the statistics with every layer's activations kept
 * (f32) are those of recomputing every layer, bit for bit; every expert
 * tensor's entry spans all its experts' rows, and the chunk's tokens reach
 * more than one expert of each layer. */
static void test_moe_keep(void)
{
    for (int k = 0; k < N_CASES; k++) {
        if (!cases[k].s.X) continue;
        sq_model *m = load_case(k);
        if (!m) continue;
        sq_grad *g[2] = {NULL, NULL};
        sq_error e = {0};
        for (int i = 0; i < 2; i++) {
            sq_grad_params gp = sq_grad_default_params();
            gp.n_ctx = 24, gp.n_threads = 2, gp.keep_bytes = i ? SQ_GRAD_KEEP_NONE : 0;
            CHECK_MSG(sq_grad_create(m, &gp, &g[i], &e) == SQ_OK, "%s: %s", cases[k].label, e.msg);
            if (g[i]) CHECK_INT(sq_grad_chunk(g[i], toks, 24, 4, true, NULL, &e), SQ_OK);
        }
        for (int64_t i = 0; g[0] && g[1] && i < sq_grad_n_stats(g[0]); i++) {
            const sq_grad_stats *a = sq_grad_stats_at(g[0], i), *b = sq_grad_stats_at(g[1], i);
            CHECK_MSG(memcmp(a->g_row, b->g_row, sizeof(double) * (size_t)a->rows) == 0 && a->g_tot == b->g_tot &&
                          memcmp(a->g_col, b->g_col, sizeof(double) * (size_t)a->cols) == 0,
                      "%s: %s kept and recomputed differ", cases[k].label, a->name);
            if (!strstr(a->name, "_exps.")) continue;
            const int64_t X = cases[k].s.X, R = a->rows / X;
            CHECK_INT(a->rows % X, 0);
            CHECK_INT(a->n_in, 24 * cases[k].s.K);
            int used = 0;
            for (int64_t x = 0; x < X; x++) {
                double sx = 0;
                for (int64_t r = 0; r < R; r++) sx += a->g_row[x * R + r];
                used += sx > 0;
            }
            CHECK_MSG(used >= 2, "%s: %s: %d experts with a gradient", cases[k].label, a->name, used);
        }
        sq_grad_free(g[0]), sq_grad_free(g[1]);
        sq_model_free(m);
    }
}

/* An importance matrix for the qwen3moe case's ffn_up_exps of layer 0 with
 * one vector per expert: expert x weighs the columns c % X == x 1000 times
 * (every expert alike when same); NULL when it cannot be written or read. */
static sq_imatrix *expert_imatrix(int k, bool same)
{
    const int64_t E = cases[k].s.E, X = cases[k].s.X;
    float *s2 = malloc(sizeof(float) * (size_t)(E * X)), counts[64];
    for (int64_t x = 0; x < X; x++) {
        counts[x] = 1.0f;
        for (int64_t c = 0; c < E; c++) s2[x * E + c] = c % X == (same ? 0 : x) ? 1000.0f : 1.0f;
    }
    sq_imatrix_stat st = {.name = "blk.0.ffn_up_exps.weight", .in_sum2 = s2, .counts = counts, .ne0 = E, .n_mat = X};
    char path[700];
    snprintf(path, sizeof path, "%s/experts%d.imatrix.gguf", dir, same);
    const char *ds[1] = {"test"};
    sq_error e = {0};
    sq_imatrix *im = NULL;
    if (sq_imatrix_write_gguf(path, &st, 1, ds, 1, 1, 24, &e) != SQ_OK || sq_imatrix_load(path, &im, &e) != SQ_OK)
        CHECK_MSG(false, "%s", e.msg);
    free(s2);
    return im;
}

/* The Fisher calibration quantizes an expert tensor's sampled rows with
 * their own expert's importance vector (as sq quantize does): an imatrix
 * whose experts differ gives other relative errors than one whose experts
 * are all the first's. */
static void test_expert_importance(void)
{
    int k = 0;
    while (k < N_CASES && strcmp(cases[k].label, "qwen3moe") != 0) k++;
    sq_model *m = k < N_CASES ? load_case(k) : NULL;
    if (!m) return;
    double rel[2][2] = {{0}};
    for (int same = 0; same < 2; same++) {
        sq_imatrix *im = expert_imatrix(k, same);
        sq_plan_calib_params p = calib_params();
        p.tensors = "^blk\\.0\\.ffn_up_exps";
        static const int types[2] = {SQ_TYPE_Q4_0, SQ_TYPE_Q8_0}; /* 32-column blocks: the experts are 64 wide */
        p.types = types, p.n_types = 2;
        sq_plan_sens *s = NULL;
        sq_error e = {0};
        CHECK_MSG(im && sq_plan_fisher_sensitivity(m, im, &p, -1, &s, &e) == SQ_OK, "%s", e.msg);
        const sq_plan_sensitivity *x = s && sq_plan_sens_count(s) == 1 ? sq_plan_sens_at(s, 0) : NULL;
        CHECK(x && x->n_points == 2);
        if (x) rel[same][0] = x->rel[0], rel[same][1] = x->rel[1];
        sq_plan_sens_free(s);
        sq_imatrix_free(im);
    }
    CHECK_MSG(rel[0][0] > 0 && rel[1][0] > 0 && fabs(rel[0][0] / rel[1][0] - 1) > 1e-3,
              "relative errors %g (each expert its vector), %g (all the first's)", rel[0][0], rel[1][0]);
    sq_model_free(m);
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
    RUN(test_backward_arch);
    RUN(test_moe_keep);
    RUN(test_expert_importance);
    RUN(test_methods);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return harness_finish("grad_arch");
}
