/*
 * test_plan_prior.c — the planner without calibration on the demo model: the
 * prior is llama.cpp's mix of the nearest size (the very types sq quantize's
 * rules give, as a dry run of the pipeline reports them), each tensor keeps
 * about its bytes in that mix; whole-tensor plans (one type per tensor, no
 * permutation) and their llama-quantize --tensor-type-file text, which sq
 * quantize's own --tensor-type parser reads back into the same types.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/quantize.h"
#include "sq/types.h"

static char model_path[512], imatrix_path[512];

/* The types a dry run of sq quantize gives every tensor, by name. */
typedef struct mix_seen {
    int n;
    char name[64][64];
    int type[64];
} mix_seen;

static void on_event(void *ud, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    (void)text;
    mix_seen *m = ud;
    if (kind != SQ_QEVENT_TENSOR || !t || m->n == 64) return;
    snprintf(m->name[m->n], sizeof m->name[0], "%s", t->name);
    m->type[m->n++] = t->out_type;
}

static int seen_type(const mix_seen *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->name[i], name) == 0) return m->type[i];
    return -1;
}

/* A dry run of the pipeline for ftype (with overrides, if any): the types
 * and the tensor data bytes. */
static bool dry_run(const char *ftype, const sq_tensor_type_override *ov, int n_ov, mix_seen *m, uint64_t *bytes)
{
    const sq_ftype_info *fi = sq_ftype_parse(ftype);
    sq_quantize_params qp = {.ftype = fi->ftype, .dry_run = true, .imatrix_path = imatrix_path, .output_tensor_type = -1,
                             .token_embedding_type = -1, .overrides = ov, .n_overrides = n_ov, .on_event = on_event,
                             .event_ud = m, .n_threads = 1};
    sq_quantize_stats st = {0};
    sq_error err = {0};
    memset(m, 0, sizeof *m);
    bool ok = sq_quantize_file(model_path, "/nonexistent/dry.gguf", &qp, &st, &err) == SQ_OK;
    CHECK_MSG(ok, "dry run %s: %s", ftype, err.msg);
    *bytes = st.out_bytes;
    return ok;
}

static sq_plan *plan_with(const sq_plan_params *p)
{
    sq_gguf *g = NULL;
    sq_imatrix *im = NULL;
    sq_plan *plan = NULL;
    sq_error err = {0};
    if (sq_gguf_open(model_path, &g, &err) == SQ_OK && sq_imatrix_load(imatrix_path, &im, &err) == SQ_OK)
        sq_plan_create(g, im, p, &plan, &err);
    CHECK_MSG(plan != NULL, "%s", err.msg);
    sq_imatrix_free(im);
    sq_gguf_close(g);
    return plan;
}

/* At the tensor data size of a standard mix, the prior is that mix: its
 * types are the pipeline's, and every tensor spends about its bytes there. */
static void check_prior_at(const char *ftype, sq_plan_granularity gran)
{
    mix_seen m;
    uint64_t bytes = 0;
    if (!dry_run(ftype, NULL, 0, &m, &bytes)) return;
    const double n_weights = 16781824.0; /* the demo model */
    sq_plan_params p = {.target_bpw = (double)bytes * 8.0 / n_weights, .sample_rows = 32, .n_threads = 2,
                        .granularity = gran};
    sq_plan *plan = plan_with(&p);
    if (!plan) return;
    const sq_plan_totals *t = sq_plan_get_totals(plan);
    CHECK_INT(t->prior_ftype, sq_ftype_parse(ftype)->ftype);
    /* weights inferred for most tensors (not for those left one choice: the protected ones at the mix's dearest type) */
    CHECK_MSG(t->n_prior * 2 >= sq_plan_n_tensors(plan) && t->n_prior <= sq_plan_n_tensors(plan), "%s: %lld of %lld",
              ftype, (long long)t->n_prior, (long long)sq_plan_n_tensors(plan));
    uint64_t mix_planned = 0, moved = 0;
    for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++) {
        const sq_plan_tensor *pt = sq_plan_tensor_at(plan, i);
        CHECK_MSG(pt->prior_type == seen_type(&m, pt->name), "%s %s: prior %s, sq quantize %s", ftype, pt->name,
                  sq_type_name(pt->prior_type), sq_type_name(seen_type(&m, pt->name)));
        uint64_t mb = (uint64_t)sq_row_size(pt->prior_type, pt->cols) * (uint64_t)pt->rows;
        mix_planned += mb;
        moved += pt->bytes > mb ? pt->bytes - mb : mb - pt->bytes;
        CHECK_MSG(pt->weight > 0, "%s: weight %g", pt->name, pt->weight);
        if (gran == SQ_PLAN_GRAN_TENSOR) {
            CHECK(pt->perm == NULL);
            CHECK(pt->types[1] == pt->types[0] && pt->types[2] == pt->types[0] && pt->types[3] == pt->types[0]);
        }
    }
    CHECK_INT(mix_planned, t->prior_bytes);
    /* the mix's split between tensors is kept: little moves (what the SmarterQuant keys cost, the steps) */
    CHECK_MSG(moved < mix_planned / 20, "%s: %llu of %llu bytes moved between tensors", ftype, (unsigned long long)moved,
              (unsigned long long)mix_planned);
    CHECK(t->planned_bytes <= mix_planned);
    sq_plan_free(plan);
}

static void test_prior_is_the_mix(void)
{
    if (!model_path[0]) SKIP("demo model or its imatrix not in ../shared");
    check_prior_at("Q3_K_M", SQ_PLAN_GRAN_SEGMENT);
    check_prior_at("Q4_K_M", SQ_PLAN_GRAN_SEGMENT);
    check_prior_at("Q5_K_S", SQ_PLAN_GRAN_TENSOR);
}

/* Bits per weight of a type. */
static double type_bits(int type)
{
    const sq_type_info *ti = sq_type_info_get(type);
    return ti ? 8.0 * ti->type_size / ti->block_size : 0.0;
}

/* At Q5_K_S's size the tensors llama.cpp's rules protect keep their mix
 * type's bits in every segment slot: output.weight (the mix's dearest type)
 * and those that the next smaller mix (Q4_K_M, on the demo model) gives more
 * bits than Q5_K_S does. Planned just under the mix's bytes, where the
 * prior's weights once took half of output.weight's row. */
static void test_prior_protects(void)
{
    if (!model_path[0]) SKIP("demo model or its imatrix not in ../shared");
    mix_seen m5, m4;
    uint64_t b5 = 0, b4 = 0;
    if (!dry_run("Q5_K_S", NULL, 0, &m5, &b5) || !dry_run("Q4_K_M", NULL, 0, &m4, &b4)) return;
    sq_plan_params p = {.target_bpw = (double)(b5 - 16384) * 8.0 / 16781824.0, .sample_rows = 32, .n_threads = 2};
    sq_plan *plan = plan_with(&p);
    if (!plan) return;
    int protected = 0;
    for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++) {
        const sq_plan_tensor *pt = sq_plan_tensor_at(plan, i);
        double mine = type_bits(seen_type(&m5, pt->name)), lower = type_bits(seen_type(&m4, pt->name));
        bool top = strcmp(pt->name, "output.weight") == 0;
        if (!top && lower <= mine) continue;
        protected++;
        for (int s = 0; s < 4; s++)
            CHECK_MSG(type_bits(pt->types[s]) >= mine, "%s slot %d: %s below the mix's %s", pt->name, s,
                      sq_type_name(pt->types[s]), sq_type_name(seen_type(&m5, pt->name)));
    }
    CHECK_MSG(protected >= 2, "%d tensors protected", protected); /* output.weight and some attn_v / ffn_down */
    sq_plan_free(plan);
}

/* The prior's switches: none, a given mix, and sensitivities (which replace it). */
static void test_prior_switches(void)
{
    if (!model_path[0]) SKIP("demo model or its imatrix not in ../shared");
    sq_plan_params p = {.target_bpw = 5.0, .sample_rows = 16, .n_threads = 2, .tensors = "^blk\\.0\\.",
                        .prior = SQ_PLAN_PRIOR_NONE};
    sq_plan *a = plan_with(&p);
    if (a) CHECK_INT(sq_plan_get_totals(a)->prior_ftype, -1);
    sq_plan_free(a);
    p.prior = SQ_PLAN_PRIOR_MIX;
    p.prior_ftype = "Q2_K";
    sq_plan *b = plan_with(&p);
    if (b) CHECK_INT(sq_plan_get_totals(b)->prior_ftype, sq_ftype_parse("Q2_K")->ftype);
    sq_plan_free(b);
    sq_plan_weight w = {.name = "blk.0.ffn_down.weight", .weight = 0.5};
    p.weights = &w;
    p.n_weights = 1;
    sq_plan *c = plan_with(&p);
    if (c) CHECK_INT(sq_plan_get_totals(c)->prior_ftype, -1);
    sq_plan_free(c);
    /* a file type the prior cannot use, a name that is none */
    sq_gguf *g = NULL;
    sq_error err = {0};
    CHECK(sq_gguf_open(model_path, &g, &err) == SQ_OK);
    sq_plan *d = NULL;
    p.weights = NULL;
    p.n_weights = 0;
    p.prior_ftype = "Q9_K";
    CHECK(sq_plan_create(g, NULL, &p, &d, &err) != SQ_OK);
    CHECK_CONTAINS(err.msg, "Q9_K");
    sq_gguf_close(g);
}

/* The --tensor-type-file text of a whole-tensor plan: one anchored pattern
 * per tensor that matches it alone, read back by the pipeline's own
 * --tensor-type overrides into the plan's types. A segment plan is refused. */
static void test_tensor_types_text(void)
{
    if (!model_path[0]) SKIP("demo model or its imatrix not in ../shared");
    sq_plan_params p = {.target_bpw = 4.9, .sample_rows = 32, .n_threads = 2, .granularity = SQ_PLAN_GRAN_TENSOR};
    sq_plan *plan = plan_with(&p);
    if (!plan) return;
    char *text = NULL;
    size_t len = 0;
    sq_error err = {0};
    CHECK_MSG(sq_plan_tensor_types_text(plan, &text, &len, &err) == SQ_OK, "%s", err.msg);
    int64_t n = sq_plan_n_tensors(plan);
    sq_tensor_type_override ov[64];
    char *pat[64];
    int n_ov = 0;
    for (char *line = text, *nl; line && *line && n_ov < 64; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *eq = strrchr(line, '=');
        CHECK(eq != NULL && line[0] == '^' && eq[-1] == '$');
        if (!eq) break;
        *eq = 0;
        pat[n_ov] = line;
        ov[n_ov] = (sq_tensor_type_override){.pattern = line, .type = sq_type_from_name(eq + 1)};
        CHECK_MSG(ov[n_ov].type >= 0, "type %s", eq + 1);
        n_ov++;
    }
    CHECK_INT(n_ov, n);
    /* each pattern matches its own tensor and no other planned one */
    for (int i = 0; i < n_ov && i < n; i++) {
        regex_t re;
        CHECK(regcomp(&re, pat[i], REG_EXTENDED | REG_NOSUB) == 0);
        for (int64_t k = 0; k < n; k++)
            CHECK((regexec(&re, sq_plan_tensor_at(plan, k)->name, 0, NULL, 0) == 0) == (k == i));
        regfree(&re);
        CHECK_INT(ov[i].type, sq_plan_tensor_at(plan, i)->types[0]);
    }
    mix_seen m;
    uint64_t bytes = 0;
    if (dry_run("Q4_K_M", ov, n_ov, &m, &bytes))
        for (int64_t k = 0; k < n; k++) {
            const sq_plan_tensor *pt = sq_plan_tensor_at(plan, k);
            CHECK_MSG(seen_type(&m, pt->name) == pt->types[0], "%s: file %s, plan %s", pt->name,
                      sq_type_name(seen_type(&m, pt->name)), sq_type_name(pt->types[0]));
        }
    free(text);
    sq_plan_free(plan);
    /* a segment plan with several types in a tensor has no such text */
    sq_plan_params ps = {.target_bpw = 4.9, .sample_rows = 32, .n_threads = 2, .perm = SQ_PLAN_PERM_ON};
    sq_plan *seg = plan_with(&ps);
    if (seg) {
        CHECK(sq_plan_tensor_types_text(seg, &text, &len, &err) != SQ_OK);
        CHECK_CONTAINS(err.msg, "granularity tensor");
        free(text);
    }
    sq_plan_free(seg);
}

int main(void)
{
    if (!harness_shared_file(model_path, sizeof model_path, "models/sqdemo-f16.gguf") ||
        !harness_shared_file(imatrix_path, sizeof imatrix_path, "golden/llama.cpp/sqdemo.imatrix.gguf"))
        model_path[0] = 0;
    RUN(test_prior_is_the_mix);
    RUN(test_prior_protects);
    RUN(test_prior_switches);
    RUN(test_tensor_types_text);
    return harness_finish("plan_prior");
}
