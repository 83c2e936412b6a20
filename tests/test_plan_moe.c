/*
 * test_plan_moe.c — mixture-of-experts tensors in the planner: a synthetic
 * qwen3moe-like model whose expert tensors ffn_{gate,up,down}_exps are 3-D
 * ([columns, rows, experts]; down's columns not a multiple of 256) with one
 * importance vector per expert. They are planned like any other tensor (one
 * permutation shared by every expert, and by the experts' gate and up, which
 * read one input; the segments' types the tensor's), quantized by the
 * pipeline with the plan, and verified: every row of every expert in the file
 * equals sq_pack_row of the permuted original row with that expert's permuted
 * importance, so the bytes are ggml's quantization of the permuted rows. The
 * shared qwen3moe architecture model is planned and quantized too, and
 * `sq plan --calib` calibrates it with the backward pass (Fisher
 * information, every expert tensor's sensitivity at once), not per tensor.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/quantize.h"
#include "sq/sqconfig.h"
#include "sq/sqtensor.h"
#include "sq/types.h"
#include "testutil.h"

static char tmpdir[256];

typedef struct moe_tensor {
    const char *name;
    int64_t ne[3];
} moe_tensor;

#define N_EXP 4
static const moe_tensor moe[] = {
    {"token_embd.weight", {256, 64, 1}},
    {"blk.0.attn_norm.weight", {256, 1, 1}},
    {"blk.0.attn_q.weight", {256, 256, 1}},
    {"blk.0.attn_k.weight", {256, 64, 1}},
    {"blk.0.attn_v.weight", {256, 64, 1}},
    {"blk.0.attn_output.weight", {256, 256, 1}},
    {"blk.0.ffn_norm.weight", {256, 1, 1}},
    {"blk.0.ffn_gate_inp.weight", {256, N_EXP, 1}},
    {"blk.0.ffn_gate_exps.weight", {256, 640, N_EXP}},
    {"blk.0.ffn_up_exps.weight", {256, 640, N_EXP}},
    {"blk.0.ffn_down_exps.weight", {640, 256, N_EXP}},
    {"output_norm.weight", {256, 1, 1}},
    {"output.weight", {256, 64, 1}},
};
#define N_MOE (int)(sizeof moe / sizeof moe[0])

/* The weight at (matrix m, row r, column c) of tensor i: random, with a few
 * loud columns that differ between experts. */
static float weight_at(int i, int64_t m, int64_t r, int64_t c)
{
    uint64_t s = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(m * 131071 + r * 8191 + c + 1);
    float x = (float)((double)(tu_xorshift64(&s) >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
    if (moe[i].ne[1] > 1 && (c % 97 == (m * 13) % 97)) x *= 6.0f;
    return x;
}

/* Writes the model (F32) and an importance matrix with one vector per expert. */
static int make_moe(const char *path, const char *imatrix_path)
{
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    if (sq_gguf_writer_open(path, &w, &err) != SQ_OK) return -1;
    sq_gguf_writer_set_str(w, "general.architecture", "qwen3moe", &err);
    sq_gguf_writer_set_u32(w, "qwen3moe.block_count", 1, &err);
    sq_gguf_writer_set_u32(w, "qwen3moe.attention.head_count", 4, &err);
    sq_gguf_writer_set_u32(w, "qwen3moe.attention.head_count_kv", 1, &err);
    sq_gguf_writer_set_u32(w, "qwen3moe.expert_count", N_EXP, &err);
    for (int i = 0; i < N_MOE; i++) {
        const int64_t *ne = moe[i].ne;
        int nd = ne[2] > 1 ? 3 : ne[1] > 1 ? 2 : 1;
        if (sq_gguf_writer_add_tensor(w, moe[i].name, nd, ne, SQ_TYPE_F32, (uint64_t)(ne[0] * ne[1] * ne[2]) * 4, &err) !=
            SQ_OK) {
            sq_gguf_writer_abort(w);
            return -1;
        }
    }
    for (int i = 0; i < N_MOE; i++) {
        const int64_t *ne = moe[i].ne;
        int64_t n = ne[0] * ne[1] * ne[2];
        float *v = malloc((size_t)n * sizeof *v);
        for (int64_t m = 0; m < ne[2]; m++)
            for (int64_t r = 0; r < ne[1]; r++)
                for (int64_t c = 0; c < ne[0]; c++)
                    v[(m * ne[1] + r) * ne[0] + c] = ne[1] == 1 ? 1.0f : weight_at(i, m, r, c);
        sq_status st = sq_gguf_writer_write(w, v, (size_t)n * sizeof *v, &err);
        free(v);
        if (st != SQ_OK) {
            sq_gguf_writer_abort(w);
            return -1;
        }
    }
    if (sq_gguf_writer_finish(w, &err) != SQ_OK) return -1;
    sq_imatrix_stat st[N_MOE];
    float *bufs[N_MOE], counts[N_EXP];
    int ns = 0;
    for (int m = 0; m < N_EXP; m++) counts[m] = 10.0f + (float)m;
    for (int i = 0; i < N_MOE; i++) {
        const int64_t *ne = moe[i].ne;
        if (ne[1] == 1 || !strcmp(moe[i].name, "token_embd.weight") || !strcmp(moe[i].name, "output.weight")) continue;
        float *s2 = malloc((size_t)(ne[0] * ne[2]) * sizeof *s2);
        for (int64_t m = 0; m < ne[2]; m++)
            for (int64_t c = 0; c < ne[0]; c++)
                s2[m * ne[0] + c] = counts[ne[2] > 1 ? m : 0] * (1.0f + (float)((c * 7 + m * 3) % 11)) *
                                    ((c % 50) == m ? 20.0f : 1.0f);
        bufs[ns] = s2;
        st[ns] = (sq_imatrix_stat){.name = moe[i].name, .in_sum2 = s2, .counts = counts,
                                   .ne0 = ne[0], .n_mat = ne[2]};
        ns++;
    }
    const char *ds[1] = {"synthetic"};
    sq_status s = sq_imatrix_write_gguf(imatrix_path, st, ns, ds, 1, 1, 512, &err);
    for (int i = 0; i < ns; i++) free(bufs[i]);
    return s == SQ_OK ? 0 : -1;
}

/* Every row of a 3-D tensor in the written file equals the pack of the
 * permuted original row with its expert's permuted importance. */
static void verify_expert_rows(const sq_gguf *in, const sq_gguf *out, const sq_imatrix *im, const sq_plan_tensor *pt)
{
    const sq_gguf_tensor *ti = sq_gguf_find_tensor(in, pt->name), *to = sq_gguf_find_tensor(out, pt->name);
    CHECK(ti && to && to->smarterquant);
    if (!ti || !to) return;
    int64_t C = ti->ne[0], R1 = ti->ne[1], E = ti->ne[2];
    CHECK_INT(to->ne[2], E);
    size_t rb = 0;
    CHECK(sq_mixed_row_bytes(pt->types, C, &rb, NULL) == SQ_OK);
    CHECK_INT(to->nbytes, (uint64_t)rb * (uint64_t)(R1 * E));
    int64_t n_imp = 0;
    const float *imp = sq_imatrix_find(im, pt->name, &n_imp);
    CHECK_INT(n_imp, C * E);
    float *row = malloc((size_t)C * sizeof *row), *ip = malloc((size_t)C * sizeof *ip);
    unsigned char *packed = malloc(rb);
    int bad = 0;
    for (int64_t m = 0; m < E; m++)
        for (int64_t r = 0; r < R1; r++) {
            const float *src = (const float *)ti->data + (m * R1 + r) * C;
            for (int64_t j = 0; j < C; j++) {
                int64_t c = pt->perm ? pt->perm[j] : j;
                row[j] = src[c];
                ip[j] = imp[m * C + c];
            }
            sq_error err = {0};
            CHECK(sq_pack_row(pt->types, C, row, ip, packed, &err) == SQ_OK);
            if (memcmp(packed, (const unsigned char *)to->data + (size_t)(m * R1 + r) * rb, rb) != 0) bad++;
        }
    CHECK_MSG(bad == 0, "%s: %d rows differ from the pack of the permuted row", pt->name, bad);
    free(row);
    free(ip);
    free(packed);
}

static void test_moe_plan_quantize_verify(void)
{
    char model[400], imat[400], out[400];
    snprintf(model, sizeof model, "%s/moe.gguf", tmpdir);
    snprintf(imat, sizeof imat, "%s/moe.imatrix.gguf", tmpdir);
    snprintf(out, sizeof out, "%s/moe-sq.gguf", tmpdir);
    if (make_moe(model, imat) != 0) SKIP("cannot write the synthetic model");
    sq_gguf *g = NULL, *go = NULL;
    sq_imatrix *im = NULL;
    sq_plan *plan = NULL;
    sq_error err = {0};
    CHECK(sq_gguf_open(model, &g, &err) == SQ_OK);
    CHECK(sq_imatrix_load(imat, &im, &err) == SQ_OK);
    if (!g || !im) goto done;
    /* without calibration (the prior) and with --perm on, at about 5 bits per weight */
    sq_plan_params p = {.target_bpw = 5.0, .perm = SQ_PLAN_PERM_ON, .n_threads = 2, .sample_rows = 64};
    CHECK_MSG(sq_plan_create(g, im, &p, &plan, &err) == SQ_OK, "%s", err.msg);
    if (!plan) goto done;
    const sq_plan_tensor *gate = NULL, *up = NULL, *down = NULL;
    for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++) {
        const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
        if (strstr(t->name, "ffn_gate_exps")) gate = t;
        if (strstr(t->name, "ffn_up_exps")) up = t;
        if (strstr(t->name, "ffn_down_exps")) down = t;
    }
    CHECK(gate && up && down);
    if (!gate || !up || !down) goto done;
    CHECK_INT(gate->rows, 640 * N_EXP);
    CHECK_INT(down->cols, 640);
    CHECK(gate->perm && gate->perm == up->perm && gate->group == up->group); /* one input, one permutation */
    CHECK(down->perm != NULL);
    CHECK(sq_plan_get_totals(plan)->prior_ftype >= 0);
    /* the pipeline writes the plan; every expert row is the pack of its permuted row */
    sq_quantize_sqtensor req[16];
    int nreq = 0;
    for (int64_t i = 0; i < sq_plan_n_tensors(plan) && nreq < 16; i++) {
        const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
        req[nreq] = (sq_quantize_sqtensor){.name = t->name, .perm = t->perm, .perm_len = t->perm ? t->cols : 0};
        memcpy(req[nreq].types, t->types, sizeof t->types);
        nreq++;
    }
    sq_quantize_params qp = tu_quantize_params(sq_ftype_parse("Q4_K_M")->ftype, 2);
    qp.imatrix_path = imat;
    qp.sq_tensors = req;
    qp.n_sq_tensors = nreq;
    qp.strict = true;
    sq_quantize_stats stats = {0};
    CHECK_MSG(sq_quantize_file(model, out, &qp, &stats, &err) == SQ_OK, "%s", err.msg);
    CHECK_MSG(sq_gguf_open(out, &go, &err) == SQ_OK, "%s", err.msg);
    if (go) {
        verify_expert_rows(g, go, im, gate);
        verify_expert_rows(g, go, im, up);
        verify_expert_rows(g, go, im, down);
        /* the tensor data is within the target */
        int64_t n_w = 0;
        uint64_t data = 0;
        for (int i = 0; i < N_MOE; i++) n_w += moe[i].ne[0] * moe[i].ne[1] * moe[i].ne[2];
        for (int64_t i = 0; i < sq_gguf_n_tensors(go); i++) data += sq_gguf_tensor_at(go, i)->nbytes;
        CHECK_MSG((double)data * 8.0 / (double)n_w <= 5.0, "%.4f bits per weight", (double)data * 8.0 / (double)n_w);
    }
done:
    sq_gguf_close(go);
    sq_plan_free(plan);
    sq_imatrix_free(im);
    sq_gguf_close(g);
    unlink(out);
    unlink(model);
    unlink(imat);
}

/* The shared qwen3moe architecture model (no imatrix): its expert tensors are
 * planned as 3-D tensors, and the plan validates strictly against the model. */
static void test_moe_arch_model(void)
{
    char mbuf[512];
    const char *model = harness_shared_file(mbuf, sizeof mbuf, "models/arch/qwen3moe-arch.gguf");
    if (!model) SKIP("qwen3moe-arch.gguf not in ../shared");
    sq_gguf *g = NULL;
    sq_plan *plan = NULL;
    sq_error err = {0};
    CHECK(sq_gguf_open(model, &g, &err) == SQ_OK);
    if (!g) return;
    sq_plan_params p = {.target_bpw = 6.5, .n_threads = 2, .sample_rows = 32, .tensors = "^blk\\.[01]\\."};
    CHECK_MSG(sq_plan_create(g, NULL, &p, &plan, &err) == SQ_OK, "%s", err.msg);
    int n_exps = 0;
    for (int64_t i = 0; plan && i < sq_plan_n_tensors(plan); i++) {
        const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
        if (strstr(t->name, "_exps.")) {
            n_exps++;
            CHECK_INT(t->rows, 256 * 8);
        }
    }
    CHECK_INT(n_exps, 6);
    char *text = NULL;
    size_t len = 0;
    sq_config *cfg = NULL;
    if (plan && sq_plan_config_text(plan, &text, &len, &err) == SQ_OK)
        CHECK_MSG(sq_config_parse(text, len, "plan.json", &cfg, NULL, &err) == SQ_OK, "%s", err.msg);
    if (cfg) {
        int64_t nt = sq_gguf_n_tensors(g);
        sq_config_tensor *ts = calloc((size_t)nt, sizeof *ts);
        for (int64_t i = 0; i < nt; i++) {
            const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
            ts[i] = (sq_config_tensor){t->name, t->ne[0], t->ne[1] * t->ne[2] * t->ne[3], false};
        }
        sq_config_options opt = {.strict = true};
        CHECK_MSG(sq_config_validate(cfg, ts, nt, &opt, NULL, &err) == SQ_OK, "%s", err.msg);
        free(ts);
    }
    sq_config_free(cfg);
    free(text);
    sq_plan_free(plan);
    sq_gguf_close(g);
}

/* `sq plan --calib` on the qwen3moe architecture model: the Fisher method
 * (the backward pass runs the experts), no fallback note, and every expert
 * tensor and router of the layers asked for gets a sensitivity above the
 * floor, with activation costs. */
static void test_moe_calib_tool(void)
{
    char mbuf[512], cmd[2048], outp[400], errp[400], sens[400];
    const char *model = harness_shared_file(mbuf, sizeof mbuf, "models/arch/qwen3moe-arch.gguf");
    if (!model) SKIP("qwen3moe-arch.gguf not in ../shared");
    const char *sq = harness_sq_bin();
    if (access(sq, X_OK) != 0) SKIP("no %s", sq);
    snprintf(outp, sizeof outp, "%s/calib.out", tmpdir);
    snprintf(errp, sizeof errp, "%s/calib.err", tmpdir);
    snprintf(sens, sizeof sens, "%s/calib.sens", tmpdir);
    snprintf(cmd, sizeof cmd,
             "%s plan -m %s --no-imatrix --target-bpw 6.5 --tensors '^blk\\.[01]\\.' --calib data/calib.txt "
             "--calib-chunks 1 --calib-ctx 48 --sensitivity-out %s --sample-rows 16 --dry-run -t 2 >%s 2>%s",
             sq, model, sens, outp, errp);
    CHECK_INT(system(cmd), 0);
    size_t n = 0;
    char *out = harness_read_file(outp, &n), *err = harness_read_file(errp, &n), *txt = harness_read_file(sens, &n);
    CHECK(out && err && txt);
    if (out) CHECK_CONTAINS(out, "(Fisher information");
    if (err) CHECK_MSG(strstr(err, "measured each tensor") == NULL && strstr(err, "note:") == NULL, "%s", err);
    static const char *const roles[4] = {"ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    for (int l = 0; txt && l < 2; l++)
        for (int r = 0; r < 4; r++) {
            char key[96];
            snprintf(key, sizeof key, "\nblk.%d.%s.weight ", l, roles[r]);
            const char *line = strstr(txt, key);
            double w = 0, ak = 0, a0 = 0;
            const int got = line ? sscanf(line + strlen(key), "%lf %lf %lf", &w, &ak, &a0) : 0;
            CHECK_MSG(got == 3 && w > SQ_PLAN_SENS_FLOOR && ak > 0 && a0 > 0, "%s: %d fields, weight %g, costs %g %g",
                      key + 1, got, w, ak, a0);
        }
    free(out), free(err), free(txt);
    unlink(outp), unlink(errp), unlink(sens);
}

int main(void)
{
    if (!harness_tmpdir(tmpdir, sizeof tmpdir)) return harness_finish("plan_moe");
    RUN(test_moe_plan_quantize_verify);
    RUN(test_moe_arch_model);
    RUN(test_moe_calib_tool);
    rmdir(tmpdir);
    return harness_finish("plan_moe");
}
