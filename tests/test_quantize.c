/*
 * test_quantize.c — the quantize pipeline and `sq quantize`:
 *  - byte equality with llama.cpp: Q4_K_M with llama.cpp's imatrix on the demo
 *    model gives the tensor types, order and bytes of llama-quantize's file,
 *    and the same metadata except the key naming the imatrix file's path;
 *  - the 16-file-type table through the pipeline (dry runs of the real model);
 *  - every validation rule of spec section 3 through the tool, on a small
 *    synthetic model with a width of 320 (a final segment of 64 columns): the
 *    message is checked and no output file (nor temporary file) is left;
 *  - SmarterQuant output read back on the demo model with a config that mixes
 *    types and permutes: each stored segment equals the block quantizer on the
 *    permuted segment with its imatrix slice, rows dequantize + un-permute to
 *    the original within each type's error bound, and --allow-requantize to
 *    F16 un-permutes.
 */
#include <dirent.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/quantize.h"
#include "sq/sqtensor.h"

/* ---- helpers ---- */

static bool have(const int *types, int n)
{
    for (int i = 0; i < n; i++)
        if (!sq_blocks_can_quantize(types[i]) || !sq_blocks_can_dequantize(types[i])) return false;
    return true;
}

/* Runs `sq quantize ARGS` in dir; captures stdout+stderr into out. Returns the exit status. */
static int run_tool(const char *dir, const char *args, char *out, size_t cap)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "quantize %s", args);
    return tu_run_sq(dir, cmd, out, cap);
}

static void shuffle(int32_t *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = tu_rnd() % (uint64_t)(i + 1);
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

/* A tiny llama model: token_embd [320 x 64], one block with attn_q [320 x 320],
 * ffn_down [512 x 320], a norm; written with the GGUF writer. */
static bool make_small_model(const char *path)
{
    sq_gguf_writer *w = NULL;
    sq_error e = {0};
    if (sq_gguf_writer_open(path, &w, &e) != SQ_OK) return false;
    sq_status st = sq_gguf_writer_set_str(w, "general.architecture", "llama", &e);
    if (!st) st = sq_gguf_writer_set_u32(w, "llama.block_count", 1, &e);
    if (!st) st = sq_gguf_writer_set_u32(w, "llama.attention.head_count", 5, &e);
    if (!st) st = sq_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 5, &e);
    if (!st) st = sq_gguf_writer_set_u32(w, "general.file_type", 1, &e);
    static const struct {
        const char *name;
        int64_t ne0, ne1;
        int type;
    } ts[] = {{"token_embd.weight", 320, 64, SQ_TYPE_F16},
              {"blk.0.attn_norm.weight", 320, 1, SQ_TYPE_F32},
              {"blk.0.attn_q.weight", 320, 320, SQ_TYPE_F16},
              {"blk.0.ffn_down.weight", 512, 320, SQ_TYPE_F16}};
    for (int i = 0; i < 4 && !st; i++) {
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        st = sq_gguf_writer_add_tensor(w, ts[i].name, ts[i].ne1 > 1 ? 2 : 1, ne, ts[i].type,
                                       sq_row_size(ts[i].type, ts[i].ne0) * (uint64_t)ts[i].ne1, &e);
    }
    for (int i = 0; i < 4 && !st; i++) {
        const int64_t n = ts[i].ne0 * ts[i].ne1;
        if (ts[i].type == SQ_TYPE_F32) {
            float *v = malloc((size_t)n * 4);
            for (int64_t k = 0; k < n; k++) v[k] = 1.0f + 0.01f * (float)(k % 7);
            st = sq_gguf_writer_write(w, v, (size_t)n * 4, &e);
            free(v);
        } else {
            sq_fp16 *v = malloc((size_t)n * 2);
            for (int64_t k = 0; k < n; k++) v[k] = sq_f32_to_fp16(tu_rnd_gauss() * 0.05f);
            st = sq_gguf_writer_write(w, v, (size_t)n * 2, &e);
            free(v);
        }
    }
    if (st) {
        sq_gguf_writer_abort(w);
        return false;
    }
    return sq_gguf_writer_finish(w, &e) == SQ_OK;
}

/* ---- byte equality with llama-quantize ---- */

static void test_byte_equality_q4_k_m(void)
{
    char model[1024], imx[1024], gold[1024];
    if (!harness_shared_file(model, sizeof model, "models/sqdemo-f16.gguf") ||
        !harness_shared_file(imx, sizeof imx, "golden/llama.cpp/sqdemo.imatrix.gguf") ||
        !harness_shared_file(gold, sizeof gold, "golden/llama.cpp/sqdemo-Q4_K_M-imatrix.gguf"))
        SKIP("../shared demo model or llama.cpp golden files absent");
    const int need[] = {SQ_TYPE_Q4_K, SQ_TYPE_Q6_K};
    if (!have(need, 2)) SKIP("q4_K / q6_K kernels not in this build");
    char dir[256], out[512];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(out, sizeof out, "%s/out.gguf", dir);

    sq_quantize_params p = tu_quantize_params(SQ_FTYPE_Q4_K_M, 2);
    p.imatrix_path = imx;
    sq_quantize_stats stats;
    sq_error e = {0};
    sq_status st = sq_quantize_file(model, out, &p, &stats, &e);
    CHECK_MSG(st == SQ_OK, "quantize: %s", e.msg);
    CHECK_INT(stats.n_tensors, 39);
    CHECK_INT(stats.n_quantized, 30);
    sq_gguf *a = NULL, *b = NULL;
    if (st != SQ_OK || sq_gguf_open(out, &a, &e) != SQ_OK || sq_gguf_open(gold, &b, &e) != SQ_OK) {
        CHECK_MSG(0, "open: %s", e.msg);
        sq_gguf_close(a);
        tu_rm_rf(dir);
        return;
    }
    /* tensors: same order, shapes, types and bytes */
    CHECK_INT(sq_gguf_n_tensors(a), sq_gguf_n_tensors(b));
    int diff = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(a) && i < sq_gguf_n_tensors(b); i++) {
        const sq_gguf_tensor *ta = sq_gguf_tensor_at(a, i), *tb = sq_gguf_tensor_at(b, i);
        const bool same = !strcmp(ta->name, tb->name) && ta->type == tb->type && ta->nbytes == tb->nbytes &&
                          !memcmp(ta->ne, tb->ne, sizeof ta->ne) && !memcmp(ta->data, tb->data, (size_t)ta->nbytes);
        if (!same) {
            diff++;
            CHECK_MSG(0, "tensor %lld: ours %s %s, llama.cpp's %s %s", (long long)i, ta->name, sq_type_name(ta->type),
                      tb->name, sq_type_name(tb->type));
        }
    }
    CHECK_INT(diff, 0);
    /* metadata: same keys, order and values, except the imatrix file's path */
    CHECK_INT(sq_gguf_n_kv(a), sq_gguf_n_kv(b));
    int kdiff = 0;
    for (int64_t i = 0; i < sq_gguf_n_kv(a) && i < sq_gguf_n_kv(b); i++) {
        uint64_t na = 0, nb = 0;
        const void *ra = sq_gguf_kv_raw(a, i, &na), *rb = sq_gguf_kv_raw(b, i, &nb);
        const char *key = sq_gguf_key(a, i);
        if (strcmp(key, sq_gguf_key(b, i)) != 0) {
            kdiff++;
            CHECK_MSG(0, "key %lld: %s vs %s", (long long)i, key, sq_gguf_key(b, i));
        } else if (strcmp(key, "quantize.imatrix.file") != 0 &&
                   (sq_gguf_kv_type(a, i) != sq_gguf_kv_type(b, i) || na != nb || memcmp(ra, rb, (size_t)na))) {
            kdiff++;
            CHECK_MSG(0, "value of %s differs", key);
        }
    }
    CHECK_INT(kdiff, 0);
    sq_gguf_close(a);
    sq_gguf_close(b);
    tu_rm_rf(dir);
}

/* ---- the file-type table through the pipeline ---- */

typedef struct collect {
    char names[64][64];
    int types[64];
    int n;
} collect;

static void collect_event(void *ud, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    collect *c = ud;
    if (kind != SQ_QEVENT_TENSOR || c->n >= 64) return;
    snprintf(c->names[c->n], sizeof c->names[0], "%s", t->name);
    c->types[c->n++] = t->out_type;
}

static void test_plan_table(void)
{
    char model[1024], imx[1024], tsv[1024];
    if (!harness_shared_file(model, sizeof model, "models/sqdemo-f16.gguf") ||
        !harness_shared_file(imx, sizeof imx, "golden/llama.cpp/sqdemo.imatrix.gguf") ||
        !harness_shared_file(tsv, sizeof tsv, "golden/llama.cpp/ftype-choices-sqdemo.tsv"))
        SKIP("../shared files absent");
    size_t n = 0;
    char *text = harness_read_file(tsv, &n);
    if (!text) SKIP("cannot read the table");
    text = realloc(text, n + 1);
    text[n] = 0;
    static collect c;
    char cur[32] = "";
    int rows = 0, bad = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char ft[32], name[64], ty[32];
        if (sscanf(line, "%31s %63s %31s", ft, name, ty) != 3 || !strcmp(ft, "ftype")) continue;
        if (strcmp(ft, cur)) {
            snprintf(cur, sizeof cur, "%s", ft);
            sq_quantize_params p = tu_quantize_params(sq_ftype_parse(ft)->ftype, 0);
            p.imatrix_path = imx;
            p.dry_run = true;
            p.on_event = collect_event;
            p.event_ud = &c;
            c.n = 0;
            sq_error e = {0};
            CHECK_MSG(sq_quantize_file(model, NULL, &p, NULL, &e) == SQ_OK, "%s dry run: %s", ft, e.msg);
            CHECK_INT(c.n, 39);
        }
        int found = -1;
        for (int i = 0; i < c.n; i++)
            if (!strcmp(c.names[i], name)) found = i;
        rows++;
        if (found < 0 || c.types[found] != sq_type_from_name(ty)) {
            bad++;
            CHECK_MSG(0, "%s %s: llama.cpp %s, plan %s", ft, name, ty, found < 0 ? "-" : sq_type_name(c.types[found]));
        }
    }
    CHECK_INT(rows, 16 * 39);
    CHECK_INT(bad, 0);
    free(text);
}

/* ---- validation (spec section 3) through the tool ---- */

typedef struct vcase {
    const char *what;
    const char *config;  /* written to cfg.json */
    const char *flags;   /* extra flags */
    const char *phrase1, *phrase2; /* must appear in the output */
} vcase;

static void test_validation_through_tool(void)
{
    if (access(harness_sq_bin(), X_OK) != 0) SKIP("sq binary %s absent", harness_sq_bin());
    const int need[] = {SQ_TYPE_Q8_0, SQ_TYPE_Q4_K, SQ_TYPE_Q5_0};
    if (!have(need, 3)) SKIP("q8_0 / q4_K / q5_0 kernels not in this build");
    char dir[256], model[512];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(model, sizeof model, "%s/small.gguf", dir);
    CHECK(make_small_model(model));

    static const vcase cases[] = {
        {"unknown tensor, --strict", "{\"blk.9.attn_q.weight\": [[8,8,8,8], []]}", "--strict",
         "blk.9.attn_q.weight", "not in the model"},
        {"removed type id", "{\"blk.0.attn_q.weight\": [[8,4,8,8], []]}", "", "blk.0.attn_q.weight", "4"},
        {"unknown type id", "{\"blk.0.attn_q.weight\": [[8,99,8,8], []]}", "", "blk.0.attn_q.weight", "99"},
        {"activation-only type", "{\"blk.0.attn_q.weight\": [[9,8,8,8], []]}", "", "blk.0.attn_q.weight",
         "weight"},
        {"block size vs final segment", "{\"blk.0.attn_q.weight\": [[8,12,8,8], []]}", "", "blk.0.attn_q.weight",
         "do not divide segment 1 of 64 columns"},
        {"needs an imatrix", "{\"blk.0.ffn_down.weight\": [[16,8,8,8], []]}", "", "blk.0.ffn_down.weight",
         "needs an importance matrix"},
        {"perm wrong length", "{\"blk.0.attn_q.weight\": [[8,8,8,8], [2,1,0]]}", "", "blk.0.attn_q.weight",
         "3 entries"},
        {"perm duplicate", NULL, "", "blk.0.attn_q.weight", "permutation index 7: value 5 is a duplicate (already at index 5)"},
        {"perm out of range", NULL, "", "blk.0.attn_q.weight", "320"},
        {"syntax error", "{\"blk.0.attn_q.weight\": [[8,8,8,8] []]}", "", "cfg.json:1:", ""},
    };
    char *perm_dup = malloc(8192), *perm_range = malloc(8192), *cfg_dup = malloc(9000), *cfg_range = malloc(9000);
    size_t a = 0, b = 0;
    a += (size_t)sprintf(perm_dup + a, "[");
    b += (size_t)sprintf(perm_range + b, "[");
    for (int j = 0; j < 320; j++) {
        a += (size_t)sprintf(perm_dup + a, "%s%d", j ? "," : "", j == 7 ? 5 : j);
        b += (size_t)sprintf(perm_range + b, "%s%d", j ? "," : "", j == 7 ? 320 : j);
    }
    sprintf(perm_dup + a, "]");
    sprintf(perm_range + b, "]");
    sprintf(cfg_dup, "{\"blk.0.attn_q.weight\": [[8,8,8,8], %s]}", perm_dup);
    sprintf(cfg_range, "{\"blk.0.attn_q.weight\": [[8,8,8,8], %s]}", perm_range);

    static char out[65536];
    char args[1024];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const vcase *c = &cases[k];
        const char *cfg = c->config ? c->config : (strstr(c->what, "duplicate") ? cfg_dup : cfg_range);
        tu_write_text(dir, "cfg.json", cfg);
        snprintf(args, sizeof args, "%s --sq-config cfg.json small.gguf out.gguf Q8_0 1", c->flags);
        const int rc = run_tool(dir, args, out, sizeof out);
        CHECK_MSG(rc == 1, "%s: exit status %d (want 1)\n%s", c->what, rc, out);
        CHECK_MSG(strstr(out, c->phrase1) != NULL, "%s: output lacks '%s':\n%s", c->what, c->phrase1, out);
        CHECK_MSG(strstr(out, c->phrase2) != NULL, "%s: output lacks '%s':\n%s", c->what, c->phrase2, out);
        /* neither out.gguf nor the writer's out.gguf.tmp-* */
        CHECK_MSG(tu_count_files(dir, "out") == 0, "%s: an output or temporary file was left", c->what);
    }

    /* without --strict an unknown key is a warning, and the file is written */
    tu_write_text(dir, "cfg.json", "{\"blk.9.attn_q.weight\": [[8,8,8,8], []], // comment\n}");
    int rc = run_tool(dir, "--sq-config cfg.json small.gguf out.gguf Q8_0 1", out, sizeof out);
    CHECK_MSG(rc == 0, "unknown key without --strict: status %d\n%s", rc, out);
    CHECK_CONTAINS(out, "warning");
    CHECK_CONTAINS(out, "blk.9.attn_q.weight");
    CHECK_INT(tu_count_files(dir, "out.gguf"), 1);
    remove(strcat(strcpy(args, dir), "/out.gguf"));

    /* --sq-auto-fallback: q4_K on the final 64 columns becomes q5_0, said and recorded */
    tu_write_text(dir, "cfg.json", "{\"blk.0.attn_q.weight\": [[\"q8_0\",\"q4_K\",8,8], []]}");
    rc = run_tool(dir, "--sq-auto-fallback --sq-config cfg.json small.gguf out.gguf Q8_0 1", out, sizeof out);
    CHECK_MSG(rc == 0, "auto fallback: status %d\n%s", rc, out);
    CHECK_CONTAINS(out, "using q5_0");
    snprintf(args, sizeof args, "%s/out.gguf", dir);
    sq_gguf *g = NULL;
    sq_error e = {0};
    if (sq_gguf_open(args, &g, &e) == SQ_OK) {
        sq_gguf_str s = {0};
        CHECK_INT(sq_gguf_get_str(g, "blk.0.attn_q.weight.smarterquant.block_types", &s, &e), SQ_OK);
        CHECK(s.ptr && s.len == 9 && !memcmp(s.ptr, "[8,6,8,8]", 9));
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "blk.0.attn_q.weight");
        /* row: 256 cols q8_0 (8 x 34) + 64 cols q5_0 (2 x 22) */
        CHECK(t && t->smarterquant && t->nbytes == (uint64_t)320 * (8 * 34 + 2 * 22));
        sq_gguf_close(g);
    } else {
        CHECK_MSG(0, "open %s: %s", args, e.msg);
    }
    remove(args);

    /* the default config in the working directory is used, and named */
    tu_write_text(dir, "default.smarterquant.json", "{\"blk.0.ffn_down.weight\": [[14,13,8,8], []]}");
    rc = run_tool(dir, "--dry-run small.gguf Q8_0", out, sizeof out);
    CHECK_MSG(rc == 0, "default config: status %d\n%s", rc, out);
    CHECK_CONTAINS(out, "SmarterQuant config: ./default.smarterquant.json");
    CHECK_CONTAINS(out, "SQ[q6_K q5_K q8_0 q8_0]");
    CHECK_INT(tu_count_files(dir, "out"), 0);
    rc = run_tool(dir, "--no-sq-config --dry-run small.gguf Q8_0", out, sizeof out);
    CHECK_CONTAINS(out, "SmarterQuant config: none");

    /* requantizing a quantized input needs --allow-requantize */
    rc = run_tool(dir, "--no-sq-config small.gguf q8.gguf Q8_0 1", out, sizeof out);
    CHECK_INT(rc, 0);
    rc = run_tool(dir, "--no-sq-config q8.gguf q4.gguf Q4_0 1", out, sizeof out);
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(out, "requantizing from type q8_0 is disabled");
    CHECK_INT(tu_count_files(dir, "q4"), 0);
    /* usage errors */
    static const char *const usage_errors[][2] = {
        {"small.gguf out.gguf Q9_X", "unknown file type 'Q9_X'"},
        {"--tensor-type attn_q small.gguf out.gguf Q8_0", "REGEX=TYPE"},
        {"--override-kv general.name=text:x small.gguf out.gguf Q8_0", "KEY=TYPE:VALUE"},
        {"--include-weights attn --exclude-weights ffn small.gguf out.gguf Q8_0", "cannot be used together"},
    };
    for (size_t k = 0; k < sizeof usage_errors / sizeof usage_errors[0]; k++) {
        snprintf(args, sizeof args, "quantize %s", usage_errors[k][0]);
        tu_expect_sq(dir, args, 2, usage_errors[k][1], out, sizeof out);
    }
    CHECK_INT(tu_count_files(dir, "out"), 0);

    /* --tensor-type-file, --override-kv (set keys move to the end, as ggml's setters do) */
    tu_write_text(dir, "tt.txt", "attn_q=q5_0\n  ffn_down=Q4_0 ");
    rc = run_tool(dir, "--no-sq-config --tensor-type-file tt.txt --override-kv general.architecture=str:llama "
                       "--override-kv x.n=int:-7 --override-kv x.b=bool:true small.gguf kv.gguf Q8_0 1",
                  out, sizeof out);
    CHECK_MSG(rc == 0, "tensor-type-file/override-kv: %d\n%s", rc, out);
    snprintf(args, sizeof args, "%s/kv.gguf", dir);
    if (rc == 0 && sq_gguf_open(args, &g, &e) == SQ_OK) {
        CHECK_INT(sq_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, SQ_TYPE_Q5_0);
        CHECK_INT(sq_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, SQ_TYPE_Q4_0);
        CHECK_INT(sq_gguf_find_tensor(g, "token_embd.weight")->type, SQ_TYPE_Q8_0);
        const int64_t n = sq_gguf_n_kv(g);
        CHECK_STR(sq_gguf_key(g, n - 1), "x.b");
        CHECK_STR(sq_gguf_key(g, n - 2), "x.n");
        CHECK_STR(sq_gguf_key(g, n - 3), "general.architecture");
        CHECK_STR(sq_gguf_key(g, n - 4), "general.file_type");
        CHECK_STR(sq_gguf_key(g, n - 5), "general.quantization_version");
        uint32_t u = 0;
        CHECK(sq_gguf_get_u32(g, "x.n", &u, &e) == SQ_OK && u == 7);
        CHECK(sq_gguf_get_u32(g, "general.file_type", &u, &e) == SQ_OK && u == 7);
        sq_gguf_close(g);
    }
    remove(args);

    rc = run_tool(dir, "--help", out, sizeof out);
    CHECK_INT(rc, 0);
    static const char *const flags[] = {"--imatrix", "--pure", "--output-tensor-type", "--token-embedding-type",
                                        "--tensor-type", "--leave-output-tensor", "--allow-requantize", "--dry-run",
                                        "--sq-config", "--strict", "--sq-auto-fallback", "Q4_K_M", "COPY",
                                        "--tensor-type-file", "--include-weights", "--exclude-weights",
                                        "--override-kv", "--no-sq-config"};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) CHECK_CONTAINS(out, flags[k]);

    free(perm_dup);
    free(perm_range);
    free(cfg_dup);
    free(cfg_range);
    tu_rm_rf(dir);
}

/* ---- SmarterQuant output read back ---- */

typedef struct sqcase {
    const char *name;
    int types[4];
    bool permute;
} sqcase;

static void test_smarterquant_readback(void)
{
    char model[1024], imx[1024];
    if (!harness_shared_file(model, sizeof model, "models/sqdemo-f16.gguf") ||
        !harness_shared_file(imx, sizeof imx, "golden/llama.cpp/sqdemo.imatrix.gguf"))
        SKIP("../shared demo model absent");
    static const sqcase cases[] = {
        {"blk.0.ffn_down.weight", {SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q4_K, SQ_TYPE_Q5_0}, true}, /* 6 segments */
        {"blk.1.attn_q.weight", {SQ_TYPE_Q8_0, SQ_TYPE_Q4_0, SQ_TYPE_Q4_0, SQ_TYPE_Q4_0}, true},
        {"blk.2.attn_v.weight", {SQ_TYPE_IQ4_NL, SQ_TYPE_Q4_1, SQ_TYPE_Q5_1, SQ_TYPE_Q5_1}, false},
        {"token_embd.weight", {SQ_TYPE_Q5_K, SQ_TYPE_Q3_K, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0}, true},
    };
    enum { NC = 4 };
    for (int k = 0; k < NC; k++)
        if (!have(cases[k].types, 4)) SKIP("a block type of the test config is not in this build");
    if (!have((const int[]){SQ_TYPE_Q8_0}, 1)) SKIP("q8_0 not in this build");
    char dir[256], out[512], out16[512];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(out, sizeof out, "%s/sq.gguf", dir);
    snprintf(out16, sizeof out16, "%s/f16.gguf", dir);

    sq_gguf *in = NULL;
    sq_imatrix *im = NULL;
    sq_error e = {0};
    if (sq_gguf_open(model, &in, &e) != SQ_OK || sq_imatrix_load(imx, &im, &e) != SQ_OK) {
        CHECK_MSG(0, "open: %s", e.msg);
        sq_gguf_close(in);
        tu_rm_rf(dir);
        return;
    }
    int32_t *perms[NC] = {0};
    sq_quantize_sqtensor req[NC];
    for (int k = 0; k < NC; k++) {
        const sq_gguf_tensor *t = sq_gguf_find_tensor(in, cases[k].name);
        req[k].name = cases[k].name;
        memcpy(req[k].types, cases[k].types, sizeof req[k].types);
        req[k].perm = NULL;
        req[k].perm_len = 0;
        if (cases[k].permute) {
            perms[k] = malloc((size_t)t->ne[0] * sizeof(int32_t));
            shuffle(perms[k], t->ne[0]);
            req[k].perm = perms[k];
            req[k].perm_len = t->ne[0];
        }
    }
    sq_quantize_params p = tu_quantize_params(SQ_FTYPE_Q8_0, 2);
    p.imatrix_path = imx;
    p.sq_tensors = req;
    p.n_sq_tensors = NC;
    sq_quantize_stats stats;
    sq_status st = sq_quantize_file(model, out, &p, &stats, &e);
    CHECK_MSG(st == SQ_OK, "quantize: %s", e.msg);
    CHECK_INT(stats.n_smarterquant, NC);
    sq_gguf *g = NULL;
    if (st != SQ_OK || sq_gguf_open(out, &g, &e) != SQ_OK) {
        CHECK_MSG(0, "open output: %s", e.msg);
        goto cleanup;
    }
    for (int k = 0; k < NC; k++) {
        const sq_gguf_tensor *ti = sq_gguf_find_tensor(in, cases[k].name), *to = sq_gguf_find_tensor(g, cases[k].name);
        CHECK(to && to->smarterquant);
        if (!to) continue;
        const int64_t C = ti->ne[0], R = ti->ne[1];
        CHECK_INT(to->type, cases[k].types[3]);
        CHECK(!memcmp(to->sq.types, cases[k].types, sizeof to->sq.types));
        char key[256];
        snprintf(key, sizeof key, "%s.smarterquant.permutation", cases[k].name);
        sq_gguf_str s = {0};
        CHECK_INT(sq_gguf_get_str(g, key, &s, &e), SQ_OK);
        if (!cases[k].permute) CHECK(s.len == 2 && !memcmp(s.ptr, "[]", 2));
        else CHECK(s.len > 2 && s.ptr[0] == '[');
        bool en = false;
        snprintf(key, sizeof key, "%s.smarterquant.enabled", cases[k].name);
        CHECK(sq_gguf_get_bool(g, key, &en, &e) == SQ_OK && en);

        /* importance of this tensor, permuted with its columns */
        int64_t ni = 0;
        const float *imp = sq_imatrix_find(im, cases[k].name, &ni);
        float *imp_p = imp ? malloc((size_t)C * sizeof(float)) : NULL;
        for (int64_t j = 0; imp && j < C; j++) imp_p[j] = imp[req[k].perm ? req[k].perm[j] : j];

        size_t rb = 0;
        CHECK_INT(sq_mixed_row_bytes(cases[k].types, C, &rb, &e), SQ_OK);
        CHECK_INT(to->nbytes, (uint64_t)rb * (uint64_t)R);
        float *orig = malloc((size_t)C * sizeof(float)), *row = malloc((size_t)C * sizeof(float));
        float *back = malloc((size_t)C * sizeof(float));
        unsigned char *seg = malloc(4096);
        int seg_bad = 0, err_bad = 0;
        sq_weight w;
        CHECK_INT(sq_weight_mixed(&w, to->data, to->sq.types, req[k].perm, R, C, &e), SQ_OK);
        for (int64_t r = 0; r < R; r++) {
            const sq_fp16 *h = (const sq_fp16 *)ti->data + r * C;
            for (int64_t j = 0; j < C; j++) orig[j] = sq_fp16_to_f32(h[j]);
            for (int64_t j = 0; j < C; j++) row[j] = orig[req[k].perm ? req[k].perm[j] : j];
            /* each segment: the block quantizer on the permuted segment with its imatrix slice */
            const unsigned char *stored = (const unsigned char *)to->data + (size_t)r * rb;
            size_t off = 0;
            for (int64_t sgi = 0; sgi < sq_n_segments(C); sgi++) {
                const int t = sq_segment_type(cases[k].types, sgi);
                const int64_t len = sq_segment_len(C, sgi);
                const size_t n = sq_row_size(t, len);
                sq_quantize_rows(t, row + sgi * 256, seg, 1, len, imp_p ? imp_p + sgi * 256 : NULL, &e);
                if (memcmp(seg, stored + off, n) != 0) seg_bad++;
                off += n;
            }
            /* dequantize + un-permute: the original within the coarsest type's bound */
            sq_weight_get_row(&w, r, back);
            float amax = 0, emax = 0;
            for (int64_t j = 0; j < C; j++) {
                amax = fabsf(orig[j]) > amax ? fabsf(orig[j]) : amax;
                const float d = fabsf(back[j] - orig[j]);
                emax = d > emax ? d : emax;
            }
            /* 3-bit blocks: |error| <= max|x| / 4 is a loose bound; a wrong permutation breaks it */
            if (emax > amax * 0.25f + 1e-6f) err_bad++;
        }
        CHECK_MSG(seg_bad == 0, "%s: %d segments differ from the block quantizer", cases[k].name, seg_bad);
        CHECK_MSG(err_bad == 0, "%s: %d rows beyond the error bound", cases[k].name, err_bad);
        free(orig);
        free(row);
        free(back);
        free(seg);
        free(imp_p);
    }
    /* a tensor not in the config is plain Q8_0 */
    const sq_gguf_tensor *pq = sq_gguf_find_tensor(g, "blk.0.attn_q.weight");
    CHECK(pq && !pq->smarterquant && pq->type == SQ_TYPE_Q8_0);

    /* --allow-requantize to F16: SmarterQuant tensors come back un-permuted, their keys removed */
    p = tu_quantize_params(SQ_FTYPE_F16, 1);
    p.allow_requantize = true;
    st = sq_quantize_file(out, out16, &p, NULL, &e);
    CHECK_MSG(st == SQ_OK, "requantize to F16: %s", e.msg);
    sq_gguf *h = NULL;
    if (st == SQ_OK && sq_gguf_open(out16, &h, &e) == SQ_OK) {
        for (int k = 0; k < NC; k++) {
            const sq_gguf_tensor *tq = sq_gguf_find_tensor(g, cases[k].name), *tf = sq_gguf_find_tensor(h, cases[k].name);
            CHECK(tf && !tf->smarterquant && tf->type == SQ_TYPE_F16);
            char key[256];
            snprintf(key, sizeof key, "%s.smarterquant.enabled", cases[k].name);
            CHECK(sq_gguf_find_key(h, key) < 0);
            if (!tf || !tq) continue;
            sq_weight w;
            sq_weight_mixed(&w, tq->data, tq->sq.types, req[k].perm, tq->ne[1], tq->ne[0], &e);
            float *back = malloc((size_t)tq->ne[0] * sizeof(float));
            int bad = 0;
            for (int64_t r = 0; r < tq->ne[1]; r++) {
                sq_weight_get_row(&w, r, back);
                const sq_fp16 *hr = (const sq_fp16 *)tf->data + r * tq->ne[0];
                for (int64_t j = 0; j < tq->ne[0]; j++) bad += hr[j] != sq_f32_to_fp16(back[j]);
            }
            CHECK_MSG(bad == 0, "%s: %d F16 values differ from the un-permuted dequantized rows", cases[k].name, bad);
            free(back);
        }
        sq_gguf_close(h);
    } else if (st == SQ_OK) {
        CHECK_MSG(0, "open %s: %s", out16, e.msg);
    }
    /* COPY keeps SmarterQuant tensors as they are, even with --allow-requantize */
    p.ftype = SQ_FTYPE_ALL_F32;
    p.copy = true;
    st = sq_quantize_file(out, out16, &p, NULL, &e);
    CHECK_MSG(st == SQ_OK, "COPY: %s", e.msg);
    if (st == SQ_OK && sq_gguf_open(out16, &h, &e) == SQ_OK) {
        for (int k = 0; k < NC; k++) {
            const sq_gguf_tensor *tq = sq_gguf_find_tensor(g, cases[k].name), *tc = sq_gguf_find_tensor(h, cases[k].name);
            CHECK(tq && tc && tc->smarterquant && tc->nbytes == tq->nbytes && !memcmp(tc->data, tq->data, tq->nbytes));
        }
        sq_gguf_str s = {0};
        CHECK_INT(sq_gguf_get_str(h, "blk.0.ffn_down.weight.smarterquant.block_types", &s, &e), SQ_OK);
        sq_gguf_close(h);
    }
    sq_gguf_close(g);
cleanup:
    for (int k = 0; k < NC; k++) free(perms[k]);
    sq_imatrix_free(im);
    sq_gguf_close(in);
    tu_rm_rf(dir);
}

/* ---- small models of several shapes ---- */

/* Loose per-element error bound of a block type, relative to the row's max |x|
 * (half a quantization step of a block whose max is the row's, with room for
 * the scale's own rounding and importance weighting). */
static float type_bound(int t)
{
    switch (t) {
    case SQ_TYPE_F32: return 0.0f;
    case SQ_TYPE_F16:
    case SQ_TYPE_BF16: return 1.0f / 128;
    case SQ_TYPE_Q8_0: return 1.0f / 100;
    case SQ_TYPE_Q6_K: return 1.0f / 24;
    case SQ_TYPE_Q5_0:
    case SQ_TYPE_Q5_1:
    case SQ_TYPE_Q5_K: return 1.0f / 12;
    case SQ_TYPE_Q4_0:
    case SQ_TYPE_Q4_1:
    case SQ_TYPE_Q4_K:
    case SQ_TYPE_IQ4_NL:
    case SQ_TYPE_IQ4_XS: return 1.0f / 6;
    case SQ_TYPE_Q3_K: return 1.0f / 3;
    default: return 1.0f;
    }
}

typedef struct shape_case {
    const char *name;
    int64_t C, R;
    int types[4];
} shape_case;

/* Synthetic F32 models with widths 512, 1024, 1536, 2816 and 320 (not a
 * multiple of 256), each tensor a SmarterQuant tensor with mixed types and a
 * random permutation, quantized with an importance matrix: every stored
 * segment equals the block quantizer on the permuted segment with its
 * permuted imatrix slice; rows dequantize + un-permute to the original within
 * the row's coarsest type's bound; all-F32 types reproduce the input exactly. */
static void test_shapes(void)
{
    static const shape_case cases[] = {
        {"blk.0.w512.weight", 512, 48, {SQ_TYPE_Q6_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K, SQ_TYPE_Q4_K}},
        {"blk.0.w1024.weight", 1024, 40, {SQ_TYPE_Q8_0, SQ_TYPE_Q5_K, SQ_TYPE_Q4_0, SQ_TYPE_IQ4_XS}},
        {"blk.0.w1536.weight", 1536, 32, {SQ_TYPE_Q5_1, SQ_TYPE_Q6_K, SQ_TYPE_Q3_K, SQ_TYPE_Q4_1}},
        {"blk.0.w2816.weight", 2816, 24, {SQ_TYPE_Q6_K, SQ_TYPE_Q5_K, SQ_TYPE_Q4_K, SQ_TYPE_IQ4_NL}},
        {"blk.0.w320.weight", 320, 40, {SQ_TYPE_Q4_K, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0}},
        {"blk.0.f32all.weight", 1536, 16, {SQ_TYPE_F32, SQ_TYPE_F32, SQ_TYPE_F32, SQ_TYPE_F32}},
        {"blk.0.f16all.weight", 320, 16, {SQ_TYPE_F16, SQ_TYPE_F16, SQ_TYPE_F16, SQ_TYPE_F16}},
    };
    enum { NS = sizeof cases / sizeof cases[0] };
    for (int k = 0; k < NS; k++)
        if (!have(cases[k].types, 4)) SKIP("a block type of the shapes test is not in this build");
    char dir[256], model[512], imx[512], out[512];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(model, sizeof model, "%s/shapes.gguf", dir);
    snprintf(imx, sizeof imx, "%s/shapes.imatrix.gguf", dir);
    snprintf(out, sizeof out, "%s/shapes-sq.gguf", dir);

    /* the model (F32 weights of varied scale per column) and an imatrix for it */
    float *data[NS];
    float *sums[NS], counts[NS];
    sq_imatrix_stat stats[NS];
    sq_gguf_writer *w = NULL;
    sq_error e = {0};
    sq_status st = sq_gguf_writer_open(model, &w, &e);
    if (!st) st = sq_gguf_writer_set_str(w, "general.architecture", "llama", &e);
    if (!st) st = sq_gguf_writer_set_u32(w, "llama.block_count", 1, &e);
    for (int k = 0; k < NS; k++) {
        const int64_t C = cases[k].C, R = cases[k].R;
        data[k] = malloc((size_t)(C * R) * sizeof(float));
        for (int64_t j = 0; j < C * R; j++) data[k][j] = tu_rnd_gauss() * (1.0f + (float)((j % C) % 7));
        sums[k] = malloc((size_t)C * sizeof(float));
        for (int64_t j = 0; j < C; j++) sums[k][j] = 10.0f * (0.01f + (float)(tu_rnd() % 1000) / 100.0f);
        counts[k] = 10.0f;
        stats[k] = (sq_imatrix_stat){cases[k].name, sums[k], &counts[k], C, 1};
        int64_t ne[2] = {C, R};
        if (!st) st = sq_gguf_writer_add_tensor(w, cases[k].name, 2, ne, SQ_TYPE_F32, (uint64_t)(C * R) * 4, &e);
    }
    for (int k = 0; k < NS && !st; k++)
        st = sq_gguf_writer_write(w, data[k], (size_t)(cases[k].C * cases[k].R) * 4, &e);
    if (!st) st = sq_gguf_writer_finish(w, &e);
    else sq_gguf_writer_abort(w);
    const char *ds[] = {"synthetic"};
    if (!st) st = sq_imatrix_write_gguf(imx, stats, NS, ds, 1, 1, 512, &e);
    CHECK_MSG(st == SQ_OK, "building the model: %s", e.msg);

    int32_t *perms[NS];
    sq_quantize_sqtensor req[NS];
    for (int k = 0; k < NS; k++) {
        perms[k] = malloc((size_t)cases[k].C * sizeof(int32_t));
        shuffle(perms[k], cases[k].C);
        req[k] = (sq_quantize_sqtensor){cases[k].name, {0, 0, 0, 0}, perms[k], cases[k].C};
        memcpy(req[k].types, cases[k].types, sizeof req[k].types);
    }
    sq_quantize_params p = tu_quantize_params(SQ_FTYPE_Q8_0, 2);
    p.imatrix_path = imx;
    p.sq_tensors = req;
    p.n_sq_tensors = NS;
    if (!st) {
        st = sq_quantize_file(model, out, &p, NULL, &e);
        CHECK_MSG(st == SQ_OK, "quantize: %s", e.msg);
    }
    sq_gguf *g = NULL;
    if (!st && sq_gguf_open(out, &g, &e) != SQ_OK) {
        CHECK_MSG(0, "open: %s", e.msg);
        st = SQ_EIO;
    }
    for (int k = 0; k < NS && !st; k++) {
        const shape_case *c = &cases[k];
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, c->name);
        CHECK(t && t->smarterquant && !memcmp(t->sq.types, c->types, sizeof c->types));
        if (!t) continue;
        size_t rb = 0;
        sq_mixed_row_bytes(c->types, c->C, &rb, &e);
        CHECK_INT(t->nbytes, (uint64_t)rb * (uint64_t)c->R);
        float *row = malloc((size_t)c->C * sizeof(float)), *imp = malloc((size_t)c->C * sizeof(float));
        float *back = malloc((size_t)c->C * sizeof(float));
        unsigned char *seg = malloc(4096);
        for (int64_t j = 0; j < c->C; j++) imp[j] = sums[k][perms[k][j]] / counts[k];
        sq_weight wv;
        CHECK_INT(sq_weight_mixed(&wv, t->data, t->sq.types, perms[k], c->R, c->C, &e), SQ_OK);
        int seg_bad = 0, bound_bad = 0, exact_bad = 0;
        float bound = 0;
        for (int s = 0; s < 4; s++) bound = type_bound(c->types[s]) > bound ? type_bound(c->types[s]) : bound;
        for (int64_t r = 0; r < c->R; r++) {
            const float *orig = data[k] + r * c->C;
            sq_perm_gather(perms[k], c->C, orig, row);
            const unsigned char *stored = (const unsigned char *)t->data + (size_t)r * rb;
            size_t off = 0;
            for (int64_t s = 0; s < sq_n_segments(c->C); s++) {
                const int ty = sq_segment_type(c->types, s);
                const int64_t len = sq_segment_len(c->C, s);
                sq_quantize_rows(ty, row + s * 256, seg, 1, len, imp + s * 256, &e);
                if (memcmp(seg, stored + off, sq_row_size(ty, len))) seg_bad++;
                off += sq_row_size(ty, len);
            }
            sq_weight_get_row(&wv, r, back);
            float amax = 0, emax = 0;
            for (int64_t j = 0; j < c->C; j++) {
                amax = fabsf(orig[j]) > amax ? fabsf(orig[j]) : amax;
                emax = fabsf(back[j] - orig[j]) > emax ? fabsf(back[j] - orig[j]) : emax;
                if (c->types[0] == SQ_TYPE_F32 && back[j] != orig[j]) exact_bad++;
            }
            if (emax > bound * amax) bound_bad++;
        }
        CHECK_MSG(seg_bad == 0, "%s: %d segments differ from the block quantizer", c->name, seg_bad);
        CHECK_MSG(bound_bad == 0, "%s: %d rows beyond the error bound %.4f", c->name, bound_bad, (double)bound);

        /* y = W x through the SmarterQuant path (x gathered once, segments
         * quantized to their activation types) against the unquantized,
         * unpermuted tensor; all-F32 against the plain F32 product */
        float *x = malloc((size_t)c->C * sizeof(float)), *y = malloc((size_t)c->R * sizeof(float));
        float *y_plain = malloc((size_t)c->R * sizeof(float));
        for (int64_t j = 0; j < c->C; j++) x[j] = tu_rnd_gauss();
        const size_t ws = sq_weight_matmul_work_size(&wv, 1);
        void *work = sq_aligned_alloc(ws ? ws : 64);
        CHECK_INT(sq_weight_matmul(NULL, &wv, x, 1, y, work, ws, &e), SQ_OK);
        sq_weight plain;
        CHECK_INT(sq_weight_plain(&plain, data[k], SQ_TYPE_F32, c->R, c->C, &e), SQ_OK);
        const size_t ws2 = sq_weight_matmul_work_size(&plain, 1);
        void *work2 = sq_aligned_alloc(ws2 ? ws2 : 64);
        CHECK_INT(sq_weight_matmul(NULL, &plain, x, 1, y_plain, work2, ws2, &e), SQ_OK);
        int mv_bad = 0, mv_deq_bad = 0;
        float xmax = 0;
        for (int64_t j = 0; j < c->C; j++) xmax = fabsf(x[j]) > xmax ? fabsf(x[j]) : xmax;
        for (int64_t r = 0; r < c->R; r++) {
            const float *orig = data[k] + r * c->C;
            double ref = 0, mag = 0, xs = 0, ref_deq = 0, wabs = 0;
            float amax = 0;
            sq_weight_get_row(&wv, r, back);
            for (int64_t j = 0; j < c->C; j++) {
                ref += (double)orig[j] * x[j];
                mag += fabs((double)orig[j] * x[j]);
                xs += fabs((double)x[j]);
                amax = fabsf(orig[j]) > amax ? fabsf(orig[j]) : amax;
                ref_deq += (double)back[j] * x[j];
                wabs += fabs((double)back[j]);
            }
            /* tight: against the dequantized, un-permuted row; only the 8-bit
             * activations differ (|error| <= max|x| / 254 per element) */
            if (c->types[0] != SQ_TYPE_F32 && c->types[0] != SQ_TYPE_F16 &&
                fabs((double)y[r] - ref_deq) > 1.5 * wabs * xmax / 254.0 + 1e-5)
                mv_deq_bad++;
            if (c->types[0] == SQ_TYPE_F32) {
                if (fabs((double)y[r] - (double)y_plain[r]) > 1e-5 * mag + 1e-6) mv_bad++;
            } else {
                /* weight error per element <= bound * max|w|; activations in 8 bits: 1/64 of sum |w x| */
                const double tol = (double)bound * amax * xs + mag / 64.0 + 1e-4;
                if (fabs((double)y[r] - ref) > tol) mv_bad++;
            }
        }
        CHECK_MSG(mv_bad == 0, "%s: %d outputs of the matrix-vector product beyond the bound", c->name, mv_bad);
        CHECK_MSG(mv_deq_bad == 0, "%s: %d outputs differ from the dequantized rows' product", c->name, mv_deq_bad);
        sq_aligned_free(work);
        sq_aligned_free(work2);
        free(x);
        free(y);
        free(y_plain);
        CHECK_MSG(exact_bad == 0, "%s: all-F32 tensor: %d values differ from the input", c->name, exact_bad);
        free(row);
        free(imp);
        free(back);
        free(seg);
    }
    sq_gguf_close(g);
    for (int k = 0; k < NS; k++) {
        free(data[k]);
        free(sums[k]);
        free(perms[k]);
    }
    tu_rm_rf(dir);
}

int main(void)
{
    RUN(test_shapes);
    RUN(test_byte_equality_q4_k_m);
    RUN(test_plan_table);
    RUN(test_validation_through_tool);
    RUN(test_smarterquant_readback);
    return harness_finish("quantize");
}
