/*
 * test_plan.c — the SmarterQuant planner: permutations on synthetic weights
 * with hot columns, shared permutations, budgets (respected, close, a bigger
 * one never worse), determinism (also across thread counts), the
 * configuration round trip through the sqconfig parser and validator, bad
 * input; and the same on the demo model with llama.cpp's importance matrix;
 * the default candidate types (ik_llama.cpp's cheap ones in calibrated
 * segment plans, never in whole-tensor ones).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "plan/plan_internal.h"
#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/sqconfig.h"
#include "sq/types.h"

static char tmpdir[256];

/* Deterministic pseudo-random numbers (xorshift), roughly normal via 4 uniforms. */
static uint64_t rng_state = 88172645463325252ull;
static float rnd(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        s += (float)(rng_state >> 40) / (float)(1u << 24) - 0.5f;
    }
    return s;
}

/* The hot columns of the synthetic model's attention input and ffn input. */
static const int hot_attn[3] = {7, 300, 411};
static const int hot_ffn[2] = {100, 509};

typedef struct syn_tensor {
    const char *name;
    int64_t cols, rows;
    int type;
} syn_tensor;

static const syn_tensor syn[] = {
    {"token_embd.weight", 512, 64, SQ_TYPE_F32},
    {"blk.0.attn_norm.weight", 512, 1, SQ_TYPE_F32},
    {"blk.0.attn_q.weight", 512, 64, SQ_TYPE_F32},
    {"blk.0.attn_k.weight", 512, 32, SQ_TYPE_F32},
    {"blk.0.attn_v.weight", 512, 32, SQ_TYPE_F32},
    {"blk.0.attn_output.weight", 512, 64, SQ_TYPE_F32},
    {"blk.0.ffn_gate.weight", 512, 48, SQ_TYPE_F32},
    {"blk.0.ffn_up.weight", 512, 48, SQ_TYPE_F32},
    {"blk.0.ffn_down.weight", 1056, 64, SQ_TYPE_F32}, /* 4 whole segments and one of 32 columns */
    {"output_norm.weight", 512, 1, SQ_TYPE_F32},
    {"output.weight", 512, 64, SQ_TYPE_F32},
};
#define N_SYN (int)(sizeof syn / sizeof syn[0])

/* Writes a small llama-like F32 model: random weights, a few hot columns in
 * the tensors reading the attention and ffn inputs, and its importance
 * matrix (uniform, but doubled on the hot columns of attn_q's input). */
static int make_synthetic(const char *model_path, const char *imatrix_path)
{
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    if (sq_gguf_writer_open(model_path, &w, &err) != SQ_OK) return -1;
    sq_gguf_writer_set_str(w, "general.architecture", "llama", &err);
    sq_gguf_writer_set_u32(w, "llama.block_count", 1, &err);
    sq_gguf_writer_set_u32(w, "llama.attention.head_count", 8, &err);
    sq_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4, &err);
    for (int i = 0; i < N_SYN; i++) {
        int64_t ne[2] = {syn[i].cols, syn[i].rows};
        int nd = syn[i].rows > 1 ? 2 : 1;
        if (sq_gguf_writer_add_tensor(w, syn[i].name, nd, ne, syn[i].type, (uint64_t)(ne[0] * ne[1]) * 4, &err) != SQ_OK) {
            sq_gguf_writer_abort(w);
            return -1;
        }
    }
    for (int i = 0; i < N_SYN; i++) {
        int64_t n = syn[i].cols * syn[i].rows;
        float *v = malloc((size_t)n * sizeof *v);
        for (int64_t r = 0; r < syn[i].rows; r++)
            for (int64_t c = 0; c < syn[i].cols; c++) {
                float x = syn[i].rows == 1 ? 1.0f : rnd() * 0.05f;
                bool attn = strstr(syn[i].name, "attn_q") || strstr(syn[i].name, "attn_k") || strstr(syn[i].name, "attn_v");
                bool ffn = strstr(syn[i].name, "ffn_gate") || strstr(syn[i].name, "ffn_up");
                for (int h = 0; h < 3 && attn; h++)
                    if (c == hot_attn[h]) x *= 8.0f + (float)h;
                for (int h = 0; h < 2 && ffn; h++)
                    if (c == hot_ffn[h]) x *= 10.0f;
                v[r * syn[i].cols + c] = x;
            }
        sq_status st = sq_gguf_writer_write(w, v, (size_t)n * sizeof *v, &err);
        free(v);
        if (st != SQ_OK) {
            sq_gguf_writer_abort(w);
            return -1;
        }
    }
    if (sq_gguf_writer_finish(w, &err) != SQ_OK) return -1;

    /* importance for every matmul weight (not token_embd: llama.cpp has none) */
    sq_imatrix_stat st[N_SYN];
    float *bufs[N_SYN];
    float one = 10.0f;
    int ns = 0;
    for (int i = 0; i < N_SYN; i++) {
        if (syn[i].rows == 1 || strcmp(syn[i].name, "token_embd.weight") == 0) continue;
        float *s2 = malloc((size_t)syn[i].cols * sizeof *s2);
        for (int64_t c = 0; c < syn[i].cols; c++) s2[c] = 10.0f * (1.0f + 0.1f * (float)(c % 5));
        bufs[ns] = s2;
        st[ns] = (sq_imatrix_stat){.name = syn[i].name, .in_sum2 = s2, .counts = &one, .ne0 = syn[i].cols, .n_mat = 1};
        ns++;
    }
    const char *ds[1] = {"synthetic"};
    sq_status s = sq_imatrix_write_gguf(imatrix_path, st, ns, ds, 1, 1, 512, &err);
    for (int i = 0; i < ns; i++) free(bufs[i]);
    return s == SQ_OK ? 0 : -1;
}

static char syn_model[300], syn_imatrix[300];
static bool syn_ok;

static sq_plan *plan_file(const char *model, const char *imatrix, const sq_plan_params *p, sq_error *err)
{
    sq_gguf *g = NULL;
    sq_imatrix *im = NULL;
    sq_plan *plan = NULL;
    if (sq_gguf_open(model, &g, err) != SQ_OK) return NULL;
    if (imatrix && sq_imatrix_load(imatrix, &im, err) != SQ_OK) {
        sq_gguf_close(g);
        return NULL;
    }
    sq_plan_create(g, im, p, &plan, err);
    sq_imatrix_free(im);
    sq_gguf_close(g); /* the plan must not keep pointers into the model */
    return plan;
}

static char *config_of(const sq_plan *plan)
{
    char *text = NULL;
    size_t len = 0;
    sq_error err = {0};
    if (sq_plan_config_text(plan, &text, &len, &err) != SQ_OK) return NULL;
    return text;
}

static const sq_plan_tensor *find_t(const sq_plan *plan, const char *name)
{
    for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++)
        if (strcmp(sq_plan_tensor_at(plan, i)->name, name) == 0) return sq_plan_tensor_at(plan, i);
    return NULL;
}

/* Parses the configuration text and validates it strictly against the model,
 * then checks every entry equals the plan. */
static void check_round_trip(const sq_plan *plan, const char *model)
{
    char *text = config_of(plan);
    CHECK(text != NULL);
    if (!text) return;
    sq_error err = {0};
    sq_warnings w = {0};
    sq_config *cfg = NULL;
    CHECK_MSG(sq_config_parse(text, strlen(text), "plan.json", &cfg, &w, &err) == SQ_OK, "%s", err.msg);
    sq_gguf *g = NULL;
    CHECK(sq_gguf_open(model, &g, &err) == SQ_OK);
    if (cfg && g) {
        int64_t nt = sq_gguf_n_tensors(g);
        sq_config_tensor *ts = calloc((size_t)nt, sizeof *ts);
        for (int64_t i = 0; i < nt; i++) {
            const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
            ts[i] = (sq_config_tensor){t->name, t->ne[0], t->ne[1] * t->ne[2] * t->ne[3], true};
        }
        sq_config_options opt = {.strict = true, .auto_fallback = false};
        CHECK_MSG(sq_config_validate(cfg, ts, nt, &opt, &w, &err) == SQ_OK, "%s", err.msg);
        CHECK_INT(sq_config_count(cfg), sq_plan_n_tensors(plan));
        for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++) {
            const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
            const sq_config_entry *e = sq_config_find(cfg, t->name);
            CHECK(e != NULL && e->enabled);
            if (!e) continue;
            for (int s = 0; s < 4; s++) CHECK_INT(e->types_used[s], t->types[s]);
            CHECK_INT(e->perm_len, t->perm ? t->cols : 0);
            if (t->perm && e->perm) CHECK(memcmp(e->perm, t->perm, (size_t)t->cols * sizeof(int32_t)) == 0);
            /* bytes as the spec's layout computes them */
            size_t rb = 0;
            CHECK(sq_mixed_row_bytes(t->types, t->cols, &rb, NULL) == SQ_OK);
            CHECK_INT((uint64_t)rb * (uint64_t)t->rows, t->bytes);
        }
        free(ts);
    }
    sq_gguf_close(g);
    sq_config_free(cfg);
    sq_warnings_free(&w);
    free(text);
}

static void test_synthetic_hot_columns(void)
{
    if (!syn_ok) SKIP("synthetic model not written");
    sq_plan_params p = {.target_bpw = 5.0, .perm = SQ_PLAN_PERM_ON, .n_threads = 2};
    sq_error err = {0};
    sq_plan *plan = plan_file(syn_model, syn_imatrix, &p, &err);
    CHECK_MSG(plan != NULL, "%s", err.msg);
    if (!plan) return;
    /* default: every 2-D weight, norms not */
    CHECK_INT(sq_plan_n_tensors(plan), 9);
    CHECK(find_t(plan, "blk.0.attn_norm.weight") == NULL);
    const sq_plan_tensor *q = find_t(plan, "blk.0.attn_q.weight");
    const sq_plan_tensor *k = find_t(plan, "blk.0.attn_k.weight");
    const sq_plan_tensor *v = find_t(plan, "blk.0.attn_v.weight");
    const sq_plan_tensor *o = find_t(plan, "blk.0.attn_output.weight");
    const sq_plan_tensor *gt = find_t(plan, "blk.0.ffn_gate.weight");
    const sq_plan_tensor *up = find_t(plan, "blk.0.ffn_up.weight");
    const sq_plan_tensor *dn = find_t(plan, "blk.0.ffn_down.weight");
    CHECK(q && k && v && o && gt && up && dn);
    if (q && k && v && o && gt && up && dn) {
        /* one permutation for q/k/v, one for gate/up; others their own */
        CHECK(q->perm != NULL);
        CHECK(q->perm == k->perm && k->perm == v->perm);
        CHECK_INT(k->group, q->group);
        CHECK_INT(v->group, q->group);
        CHECK(gt->perm != NULL && gt->perm == up->perm);
        CHECK(o->group != q->group && o->perm != q->perm);
        /* the hot columns come first */
        if (q->perm) {
            int found = 0;
            for (int j = 0; j < 3; j++)
                for (int h = 0; h < 3; h++) found += q->perm[j] == hot_attn[h];
            CHECK_INT(found, 3);
        }
        if (gt->perm) {
            CHECK((gt->perm[0] == hot_ffn[0] && gt->perm[1] == hot_ffn[1]) ||
                  (gt->perm[0] == hot_ffn[1] && gt->perm[1] == hot_ffn[0]));
        }
        /* ffn_down's last segment has 32 columns: only 32-block types there */
        CHECK_INT(sq_type_info_get(dn->types[3])->block_size, 32);
        /* the segment holding the hot columns gets at least the bits of the others */
        CHECK(sq_row_size(q->types[0], 256) >= sq_row_size(q->types[1], 256));
        CHECK(q->has_imatrix);
        CHECK(!find_t(plan, "token_embd.weight")->has_imatrix);
    }
    check_round_trip(plan, syn_model);
    const sq_plan_totals *tot = sq_plan_get_totals(plan);
    CHECK(tot->bpw <= 5.0);
    CHECK(tot->bpw > 4.5);
    sq_plan_free(plan);

    /* --no-share: every tensor its own permutation */
    p.no_share = true;
    plan = plan_file(syn_model, syn_imatrix, &p, &err);
    CHECK_MSG(plan != NULL, "%s", err.msg);
    if (plan) {
        q = find_t(plan, "blk.0.attn_q.weight");
        k = find_t(plan, "blk.0.attn_k.weight");
        CHECK(q->perm != k->perm && q->group != k->group);
        sq_plan_free(plan);
    }
    /* --perm off: no permutation anywhere */
    p.no_share = false;
    p.perm = SQ_PLAN_PERM_OFF;
    plan = plan_file(syn_model, syn_imatrix, &p, &err);
    CHECK_MSG(plan != NULL, "%s", err.msg);
    if (plan) {
        for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++) CHECK(sq_plan_tensor_at(plan, i)->perm == NULL);
        sq_plan_free(plan);
    }
}

static void test_synthetic_budgets(void)
{
    if (!syn_ok) SKIP("synthetic model not written");
    sq_error err = {0};
    double prev_err = INFINITY;
    uint64_t prev_bytes = 0;
    /* the largest plan: every slot its biggest type */
    sq_plan_params pmax = {.target_bytes = 1ull << 40, .prior = SQ_PLAN_PRIOR_NONE};
    sq_plan *big = plan_file(syn_model, syn_imatrix, &pmax, &err);
    CHECK_MSG(big != NULL, "%s", err.msg);
    uint64_t max_file = big ? sq_plan_get_totals(big)->file_bytes : 0;
    sq_plan_free(big);
    /* file sizes from tight to generous: respected, close, never worse */
    for (int i = 0; i < 8; i++) {
        uint64_t target = 200000 + (uint64_t)i * 40000;
        /* one error model for every budget (the prior's depends on the budget) */
        sq_plan_params p = {.target_bytes = target, .n_threads = 1, .prior = SQ_PLAN_PRIOR_NONE};
        sq_plan *plan = plan_file(syn_model, syn_imatrix, &p, &err);
        CHECK_MSG(plan != NULL, "target %llu: %s", (unsigned long long)target, err.msg);
        if (!plan) continue;
        const sq_plan_totals *t = sq_plan_get_totals(plan);
        CHECK_MSG(t->file_bytes <= target, "file %llu > target %llu", (unsigned long long)t->file_bytes,
                  (unsigned long long)target);
        /* close: within 2% of the target, or the largest plan */
        uint64_t reach = target < max_file ? target : max_file;
        CHECK_MSG(t->file_bytes >= reach - reach / 50, "file %llu far below target %llu",
                  (unsigned long long)t->file_bytes, (unsigned long long)target);
        CHECK_MSG(t->error <= prev_err, "target %llu: error %g > %g of a smaller budget", (unsigned long long)target,
                  t->error, prev_err);
        CHECK(t->file_bytes >= prev_bytes);
        prev_err = t->error;
        prev_bytes = t->file_bytes;
        /* totals agree with the tensors */
        double e = 0;
        uint64_t b = 0;
        for (int64_t k = 0; k < sq_plan_n_tensors(plan); k++) {
            e += sq_plan_tensor_at(plan, k)->error;
            b += sq_plan_tensor_at(plan, k)->bytes;
        }
        CHECK_NEAR(e, t->error, 1e-12 * (1 + e));
        CHECK_INT(b, t->planned_bytes);
        sq_plan_free(plan);
    }
    /* a budget below the smallest plan says how small it can be */
    sq_plan_params p = {.target_bytes = 20000};
    sq_plan *plan = plan_file(syn_model, syn_imatrix, &p, &err);
    CHECK(plan == NULL);
    CHECK_INT(err.code, SQ_ERANGE);
    CHECK_CONTAINS(err.msg, "smallest possible plan");
}

/* A sensitivity weight moves bits: a tensor weighted 1000x gets at least the
 * bytes it had, and the objective reported is the weighted one. */
static void test_sensitivity(void)
{
    if (!syn_ok) SKIP("synthetic model not written");
    sq_error err = {0};
    sq_plan_params p = {.target_bpw = 4.0};
    sq_plan *a = plan_file(syn_model, syn_imatrix, &p, &err);
    sq_plan_weight w[1] = {{.name = "blk.0.attn_output.weight", .weight = 1000.0}};
    p.weights = w;
    p.n_weights = 1;
    sq_plan *b = plan_file(syn_model, syn_imatrix, &p, &err);
    CHECK(a && b);
    if (a && b) {
        const sq_plan_tensor *ta = find_t(a, "blk.0.attn_output.weight"), *tb = find_t(b, "blk.0.attn_output.weight");
        CHECK(tb->bytes > ta->bytes);
        CHECK(tb->rel_error < ta->rel_error);
        CHECK_NEAR(tb->error, 1000.0 * tb->rel_error, 1e-9 * tb->error);
        CHECK(sq_plan_get_totals(b)->bpw <= 4.0);
    }
    sq_plan_free(a);
    sq_plan_free(b);
    w[0].weight = -1;
    CHECK(plan_file(syn_model, syn_imatrix, &p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "sensitivity");
}

static void test_bad_input(void)
{
    if (!syn_ok) SKIP("synthetic model not written");
    sq_error err = {0};
    sq_plan_params p = {0};
    CHECK(plan_file(syn_model, syn_imatrix, &p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "exactly one target");
    p = (sq_plan_params){.target_bpw = 4, .target_bytes = 100000};
    CHECK(plan_file(syn_model, syn_imatrix, &p, &err) == NULL);
    p = (sq_plan_params){.target_bpw = 4, .tensors = "attn_(q"};
    CHECK(plan_file(syn_model, syn_imatrix, &p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "--tensors");
    p = (sq_plan_params){.target_bpw = 4, .tensors = "nothing_matches"};
    CHECK(plan_file(syn_model, syn_imatrix, &p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "no tensor to plan");
    int bad[1] = {SQ_TYPE_Q8_K};
    p = (sq_plan_params){.target_bpw = 4, .types = bad, .n_types = 1};
    CHECK(plan_file(syn_model, syn_imatrix, &p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "not usable for weights");
    /* only K-quants: ffn_down's 32-column segment fits none, so it is skipped with a warning */
    int konly[2] = {SQ_TYPE_Q4_K, SQ_TYPE_Q6_K};
    p = (sq_plan_params){.target_bpw = 6, .types = konly, .n_types = 2};
    sq_plan *plan = plan_file(syn_model, syn_imatrix, &p, &err);
    CHECK_MSG(plan != NULL, "%s", err.msg);
    if (plan) {
        CHECK(find_t(plan, "blk.0.ffn_down.weight") == NULL);
        CHECK(sq_plan_n_warnings(plan) >= 1);
        if (sq_plan_n_warnings(plan) >= 1) CHECK_CONTAINS(sq_plan_warning(plan, 0), "blk.0.ffn_down.weight");
        check_round_trip(plan, syn_model);
        sq_plan_free(plan);
    }
    /* without an importance matrix: uniform importance still plans */
    p = (sq_plan_params){.target_bpw = 4.5};
    plan = plan_file(syn_model, NULL, &p, &err);
    CHECK_MSG(plan != NULL, "%s", err.msg);
    if (plan) {
        CHECK(!sq_plan_tensor_at(plan, 0)->has_imatrix);
        sq_plan_free(plan);
    }
    sq_plan_free(NULL);
}

/* The demo model with llama.cpp's importance matrix: layers 0-1 planned,
 * measured on 64 rows per tensor to keep the test quick. */
static void test_demo(void)
{
    char mbuf[512], ibuf[512];
    const char *model = harness_shared_file(mbuf, sizeof mbuf, "models/sqdemo-f16.gguf");
    const char *imat = harness_shared_file(ibuf, sizeof ibuf, "golden/llama.cpp/sqdemo.imatrix.gguf");
    if (!model || !imat) SKIP("demo model or its imatrix not in ../shared");
    sq_error err = {0};
    sq_plan_params p = {.target_bytes = 10u << 20, .tensors = "^blk\\.[01]\\.", .sample_rows = 64, .n_threads = 1,
                        .prior = SQ_PLAN_PRIOR_NONE};
    sq_plan *a = plan_file(model, imat, &p, &err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    p.n_threads = 3;
    sq_plan *b = plan_file(model, imat, &p, &err);
    CHECK_MSG(b != NULL, "%s", err.msg);
    if (a && b) {
        char *ta = config_of(a), *tb = config_of(b);
        CHECK(ta && tb && strcmp(ta, tb) == 0); /* byte for byte, whatever the threads */
        free(ta);
        free(tb);
        CHECK_INT(sq_plan_n_tensors(a), 14);
        const sq_plan_totals *t = sq_plan_get_totals(a);
        CHECK(t->file_bytes <= p.target_bytes);
        CHECK(t->file_bytes >= p.target_bytes - p.target_bytes / 100);
        CHECK(t->error > 0);
        const sq_plan_tensor *q = find_t(a, "blk.1.attn_q.weight"), *v = find_t(a, "blk.1.attn_v.weight");
        CHECK(q && v && q->group == v->group && q->perm == v->perm);
        CHECK(q && q->has_imatrix);
        check_round_trip(a, model);
        /* a smaller budget: a larger error */
        sq_plan_params p2 = p;
        p2.target_bytes = 19u << 19;
        sq_plan *c = plan_file(model, imat, &p2, &err);
        CHECK_MSG(c != NULL, "%s", err.msg);
        if (c) {
            CHECK(sq_plan_get_totals(c)->error > t->error);
            CHECK(sq_plan_get_totals(c)->file_bytes <= p2.target_bytes);
            sq_plan_free(c);
        }
    }
    sq_plan_free(a);
    sq_plan_free(b);
}

/* The tool: writes a configuration the parser accepts, refuses bad flags. */
static void test_tool(void)
{
    if (!syn_ok) SKIP("synthetic model not written");
    const char *sq = harness_sq_bin();
    if (access(sq, X_OK) != 0) SKIP("no %s", sq);
    char cmd[2048], out[400], dat[400];
    snprintf(out, sizeof out, "%s/plan.json", tmpdir);
    /* the importance matrix in llama.cpp's legacy .dat format this time */
    snprintf(dat, sizeof dat, "%s/syn.imatrix.dat", tmpdir);
    FILE *f = fopen(dat, "wb");
    CHECK(f != NULL);
    if (!f) return;
    int32_t n_entries = 0;
    for (int i = 0; i < N_SYN; i++) n_entries += syn[i].rows > 1 && strcmp(syn[i].name, "token_embd.weight") != 0;
    fwrite(&n_entries, 4, 1, f);
    for (int i = 0; i < N_SYN; i++) {
        if (syn[i].rows == 1 || strcmp(syn[i].name, "token_embd.weight") == 0) continue;
        int32_t len = (int32_t)strlen(syn[i].name), ncall = 1, nval = (int32_t)syn[i].cols;
        fwrite(&len, 4, 1, f);
        fwrite(syn[i].name, 1, (size_t)len, f);
        fwrite(&ncall, 4, 1, f);
        fwrite(&nval, 4, 1, f);
        for (int64_t c = 0; c < syn[i].cols; c++) {
            float v = 1.0f + (float)(c % 3);
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-size 220K -o %s -q -t 2 >/dev/null", sq, syn_model,
             dat, out);
    CHECK_INT(system(cmd), 0);
    size_t n = 0;
    char *text = harness_read_file(out, &n);
    CHECK(text != NULL);
    if (text) {
        sq_config *cfg = NULL;
        sq_error err = {0};
        CHECK_MSG(sq_config_parse(text, n, out, &cfg, NULL, &err) == SQ_OK, "%s", err.msg);
        CHECK_INT(sq_config_count(cfg), 9);
        sq_config_free(cfg);
        free(text);
    }
    /* sq quantize takes the configuration strictly, and the file it writes fits the target */
    char qout[400];
    snprintf(qout, sizeof qout, "%s/syn-sq.gguf", tmpdir);
    snprintf(cmd, sizeof cmd, "%s quantize -q --strict --sq-config %s --imatrix %s %s %s Q4_K_M 1 >/dev/null 2>&1", sq,
             out, dat, syn_model, qout);
    int qrc = system(cmd);
    if (qrc == 0) {
        struct stat stq;
        CHECK(stat(qout, &stq) == 0);
        CHECK_MSG((uint64_t)stq.st_size <= 220 * 1024, "quantized file %lld bytes > target", (long long)stq.st_size);
        CHECK_MSG((uint64_t)stq.st_size >= 220 * 1024 * 95 / 100, "quantized file %lld bytes far below target",
                  (long long)stq.st_size);
        sq_gguf *g = NULL;
        sq_error err = {0};
        CHECK_MSG(sq_gguf_open(qout, &g, &err) == SQ_OK, "%s", err.msg);
        const sq_gguf_tensor *t = g ? sq_gguf_find_tensor(g, "blk.0.attn_q.weight") : NULL;
        CHECK(t && t->smarterquant);
        sq_gguf_close(g);
        unlink(qout);
    } else {
        /* a build without the quantizer says so; anything else is a failure */
        snprintf(cmd, sizeof cmd, "%s quantize --help >/dev/null 2>&1", sq);
        CHECK_MSG(system(cmd) != 0, "sq quantize refused the plan's configuration");
    }
    snprintf(cmd, sizeof cmd, "%s plan --help | grep -c -- '--target-size' >/dev/null", sq);
    CHECK_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-bpw 4 --target-size 1M 2>/dev/null", sq, syn_model,
             syn_imatrix);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s plan -m %s --imatrix %s --target-size 12Q 2>/dev/null", sq, syn_model, syn_imatrix);
    CHECK(system(cmd) != 0);
    unlink(out);
    unlink(dat);
}

/* Where a header's data section starts when it holds `name`'s SmarterQuant
 * keys with metadata m (or none: m NULL) and one tensor, alignment 1. */
static uint64_t header_end_with(const char *path, const char *name, const sq_gguf_sqmeta *m)
{
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    uint64_t at = 0;
    const int type = m ? m->types[3] : SQ_TYPE_Q8_0;
    size_t nbytes = sq_row_size(SQ_TYPE_Q8_0, 512);
    if (m) CHECK_INT(sq_mixed_row_bytes(m->types, 512, &nbytes, &err), SQ_OK);
    const int64_t ne[2] = {512, 1};
    uint8_t *z = calloc(1, nbytes);
    CHECK(z != NULL);
    if (z && sq_gguf_writer_open(path, &w, &err) == SQ_OK && sq_gguf_writer_set_u32(w, "general.alignment", 1, &err) == SQ_OK &&
        (!m || sq_gguf_writer_set_sqmeta(w, name, m, &err) == SQ_OK) &&
        sq_gguf_writer_add_tensor(w, name, 2, ne, type, nbytes, &err) == SQ_OK &&
        sq_gguf_writer_write(w, z, nbytes, &err) == SQ_OK && sq_gguf_writer_finish(w, &err) == SQ_OK) {
        sq_gguf *g = NULL;
        CHECK_MSG(sq_gguf_open(path, &g, &err) == SQ_OK, "%s", err.msg);
        if (g) at = sq_gguf_data_offset(g);
        sq_gguf_close(g);
    } else {
        CHECK_MSG(false, "writing %s: %s", path, err.msg);
    }
    free(z);
    unlink(path);
    return at;
}

/* The planner's count of a tensor's SmarterQuant keys (asked of the GGUF
 * layer) is what the writer really writes: with and without a permutation,
 * and the bound for types not chosen yet holds for the types it covers. */
static void test_sq_keys_bytes(void)
{
    if (!tmpdir[0]) SKIP("no temporary folder");
    char path[600];
    snprintf(path, sizeof path, "%s/keys.gguf", tmpdir);
    int32_t perm[512];
    for (int j = 0; j < 512; j++) perm[j] = (j * 37 + 5) % 512;
    const char *name = "blk.11.ffn_gate.weight";
    const int types[4] = {SQ_TYPE_Q6_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K};
    const sq_gguf_sqmeta with = {{types[0], types[1], types[2], types[3]}, perm, 512};
    const sq_gguf_sqmeta without = {{types[0], types[1], types[2], types[3]}, NULL, 512};
    const uint64_t none = header_end_with(path, name, NULL);
    const uint64_t w_perm = header_end_with(path, name, &with), wo_perm = header_end_with(path, name, &without);
    CHECK(none > 0 && w_perm > wo_perm && wo_perm > none);
    CHECK_INT((long long)sq__plan_sq_keys_bytes(name, 512, perm, types), (long long)(w_perm - none));
    CHECK_INT((long long)sq__plan_sq_keys_bytes(name, 512, NULL, types), (long long)(wo_perm - none));
    CHECK_INT((long long)sq__plan_perm_bytes(name, 512, perm), (long long)(w_perm - wo_perm));
    CHECK_INT((long long)sq__plan_perm_bytes(name, 512, NULL), 0);
    CHECK(sq__plan_sq_keys_bytes(name, 512, NULL, NULL) >= wo_perm - none);
    CHECK(sq__plan_sq_keys_bytes(name, 512, perm, NULL) >= w_perm - none);
}

/* The default candidates: a segment plan's include ik_llama.cpp's types whose
 * quantizers cost no more per value than ggml's dearest (IQ3_K ... IQ6_K, the
 * KS types but IQ2_KS, IQ2_KL, Q6_0) and leave out the exhaustive-search and
 * trellis ones; a whole-tensor plan's (a standard GGUF) are exactly the
 * segment list's ggml types. Every type the planner can be given has a
 * quantize cost (the rule cannot silently take a type it knows nothing of). */
static void test_default_types(void)
{
    int seg[SQ_TYPE_COUNT], ten[SQ_TYPE_COUNT];
    int ns = sq_plan_default_types(SQ_PLAN_GRAN_SEGMENT, seg, SQ_TYPE_COUNT);
    int nt = sq_plan_default_types(SQ_PLAN_GRAN_TENSOR, ten, SQ_TYPE_COUNT);
    CHECK_INT(sq_plan_default_types(SQ_PLAN_GRAN_SEGMENT, NULL, 0), ns);
    bool in_seg[SQ_TYPE_COUNT] = {0}, in_ten[SQ_TYPE_COUNT] = {0};
    for (int i = 0; i < ns; i++) in_seg[seg[i]] = true;
    for (int i = 0; i < nt; i++) in_ten[ten[i]] = true;
    const int chosen[] = {SQ_TYPE_IQ3_K,  SQ_TYPE_IQ4_K,  SQ_TYPE_IQ5_K,  SQ_TYPE_IQ6_K, SQ_TYPE_IQ3_KS,
                          SQ_TYPE_IQ4_KS, SQ_TYPE_IQ5_KS, SQ_TYPE_IQ2_KL, SQ_TYPE_Q6_0};
    const int dear[] = {SQ_TYPE_IQ2_K, SQ_TYPE_IQ2_KS, SQ_TYPE_IQ4_KSS, SQ_TYPE_IQ2_KT, SQ_TYPE_IQ3_KT, SQ_TYPE_IQ4_KT};
    for (size_t i = 0; i < sizeof chosen / sizeof chosen[0]; i++) {
        CHECK_MSG(in_seg[chosen[i]], "%s is a default segment candidate", sq_type_name(chosen[i]));
        CHECK_MSG(!in_ten[chosen[i]], "%s is not a whole-tensor candidate", sq_type_name(chosen[i]));
    }
    for (size_t i = 0; i < sizeof dear / sizeof dear[0]; i++)
        CHECK_MSG(!in_seg[dear[i]] && !in_ten[dear[i]], "%s (quantize %.0f ns/value) is no default candidate",
                  sq_type_name(dear[i]), sq_blocks_quantize_cost(dear[i]));
    double ggml_max = 0.0;
    for (int i = 0; i < nt; i++) {
        CHECK_MSG(ten[i] <= SQ_TYPE_Q2_0 && in_seg[ten[i]], "whole-tensor candidate %s", sq_type_name(ten[i]));
        if (sq_blocks_quantize_cost(ten[i]) > ggml_max) ggml_max = sq_blocks_quantize_cost(ten[i]);
    }
    for (int i = 0; i < ns; i++) {
        CHECK_MSG(seg[i] <= SQ_TYPE_Q2_0 ? in_ten[seg[i]] : sq_blocks_quantize_cost(seg[i]) <= ggml_max,
                  "segment candidate %s", sq_type_name(seg[i]));
        CHECK_MSG(i == 0 || seg[i] > seg[i - 1], "candidates in id order");
    }
    CHECK(in_ten[SQ_TYPE_Q4_K] && in_ten[SQ_TYPE_IQ4_XS] && nt >= 20 && ns >= nt + 9);
    for (int t = 0; t < SQ_TYPE_COUNT; t++) {
        const sq_type_info *ti = sq_type_info_get(t);
        if (ti && ti->is_weight && ti->is_quantized && sq_blocks_can_quantize(t))
            CHECK_MSG(sq_blocks_quantize_cost(t) > 0, "%s has a quantize cost (bench/bench_qcost)", sq_type_name(t));
    }
    /* which list a plan takes: the segment list only with sensitivities and an
     * importance matrix (the documented way); the prior, --no-imatrix and
     * whole-tensor plans take the whole-tensor list */
    sq_plan_weight w = {.name = "x", .weight = 1.0};
    const sq_imatrix *some_im = (const sq_imatrix *)&w; /* only tested for NULL */
    struct {
        sq_plan_granularity gran;
        int n_weights;
        bool im;
        int want;
    } cases[] = {{SQ_PLAN_GRAN_SEGMENT, 1, true, ns}, {SQ_PLAN_GRAN_SEGMENT, 0, true, nt},
                 {SQ_PLAN_GRAN_SEGMENT, 1, false, nt}, {SQ_PLAN_GRAN_TENSOR, 1, true, nt}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sq_plan_params p = {.granularity = cases[i].gran, .weights = &w, .n_weights = cases[i].n_weights};
        sq__pctx c = {.p = &p, .im = cases[i].im ? some_im : NULL};
        sq_error err = {0};
        CHECK_INT(sq__plan_candidate_types(&c, &err), SQ_OK);
        CHECK_MSG(c.default_types && c.n_types == cases[i].want, "case %zu: %d candidates, want %d", i, c.n_types,
                  cases[i].want);
        bool has_iq4k = false;
        for (int k = 0; k < c.n_types; k++) has_iq4k |= c.types[k] == SQ_TYPE_IQ4_K;
        CHECK_MSG(has_iq4k == (cases[i].want == ns), "case %zu: iq4_k a candidate: %d", i, has_iq4k);
    }
}

int main(void)
{
    if (harness_tmpdir(tmpdir, sizeof tmpdir)) {
        snprintf(syn_model, sizeof syn_model, "%s/syn.gguf", tmpdir);
        snprintf(syn_imatrix, sizeof syn_imatrix, "%s/syn.imatrix.gguf", tmpdir);
        syn_ok = make_synthetic(syn_model, syn_imatrix) == 0;
    }
    RUN(test_synthetic_hot_columns);
    RUN(test_synthetic_budgets);
    RUN(test_sensitivity);
    RUN(test_bad_input);
    RUN(test_demo);
    RUN(test_tool);
    RUN(test_sq_keys_bytes);
    RUN(test_default_types);
    unlink(syn_model);
    unlink(syn_imatrix);
    rmdir(tmpdir);
    return harness_finish("plan");
}
