/*
 * test_imatrix_collect.c — the engine's matmul hook and `sq imatrix`.
 *
 * Small runs use the vendored demo model (models/sqdemo-f16.gguf, in the
 * repository) with short chunks, so they take well under a second:
 *  - the hook: names, shapes and order of every weight product; its input for
 *    blk.0.attn_q is RMS-norm(embedding) computed here independently; setting
 *    it changes no logit;
 *  - the collector: sums and counts against a double-precision accumulation
 *    of the same hook calls, llama.cpp's rules (blk.* only unless asked,
 *    products under 16 rows ignored), sorted entries, written and read back
 *    with the quantizer's reader, merged from files (GGUF and legacy .dat);
 *  - the tool end to end on a few short chunks.
 * Against llama.cpp: the full calibration run takes minutes on our shared
 * 2 cores, so the suite checks the vendored data/sqdemo.imatrix.gguf (made by
 * `sq imatrix -m models/sqdemo-f16.gguf -f data/calib.txt -c 512`, see
 * docs/imatrix.md) against ../shared/golden/llama.cpp/sqdemo.imatrix.gguf:
 * same entries and counts, every column's mean within 1e-3 relative. With
 * SQ_SLOW_TESTS=1 it recomputes that file live and checks it the same way.
 */
#include <stdint.h>

#include "harness.h"
#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/imatrix_collect.h"
#include "sq/tokenizer.h"
#include "sq/types.h"

#define DEMO "models/sqdemo-f16.gguf"
#define VENDORED "data/sqdemo.imatrix.gguf"

static sq_model *g_model;
static sq_vocab *g_vocab;
static sq_token *g_toks;
static size_t g_ntok;
static char g_tmp[512];

/* Loads the demo model and tokenizes the start of data/calib.txt once. */
static bool setup(void)
{
    if (g_model) return true;
    sq_error e = {0};
    if (sq_model_load(DEMO, &g_model, &e) || sq_vocab_load_gguf(sq_model_gguf(g_model), &g_vocab, &e)) {
        fprintf(stderr, "setup: %s\n", e.msg);
        return false;
    }
    size_t len = 0;
    char *text = harness_read_file("data/calib.txt", &len);
    if (!text) return false;
    if (len > 20000) len = 20000;
    const sq_status st = sq_tokenize(g_vocab, text, len, true, false, &g_toks, &g_ntok, &e);
    free(text);
    return st == SQ_OK && harness_tmpdir(g_tmp, sizeof g_tmp);
}

static sq_context *new_ctx(int n_ctx, int n_threads)
{
    sq_context_params p = sq_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_ctx;
    p.n_threads = n_threads;
    sq_context *c = NULL;
    sq_error e = {0};
    if (sq_context_create(g_model, &p, &c, &e)) fprintf(stderr, "context: %s\n", e.msg);
    return c;
}

/* ---- the hook ---- */

typedef struct rec {
    int n_calls;
    char names[64][48];
    int64_t rows[64], cols[64];
    float *q_in; /* copy of blk.0.attn_q's input */
    const float *ptr[64];
} rec;

static void rec_hook(void *user, const char *name, const float *X, int64_t n_rows, int64_t n_cols)
{
    rec *r = user;
    if (r->n_calls < 64) {
        snprintf(r->names[r->n_calls], 48, "%s", name);
        r->rows[r->n_calls] = n_rows;
        r->cols[r->n_calls] = n_cols;
        r->ptr[r->n_calls] = X;
    }
    r->n_calls++;
    if (!strcmp(name, "blk.0.attn_q.weight") && !r->q_in) {
        r->q_in = malloc((size_t)(n_rows * n_cols) * sizeof(float));
        memcpy(r->q_in, X, (size_t)(n_rows * n_cols) * sizeof(float));
    }
}

static void test_hook(void)
{
    if (!setup()) SKIP("demo model or calib text missing");
    const int N = 20;
    sq_context *c = new_ctx(64, 2);
    CHECK(c != NULL);
    if (!c) return;
    sq_error e = {0};
    const sq_hparams *hp = sq_model_hparams(g_model);
    const size_t nv = (size_t)hp->n_vocab;

    /* reference logits without a hook */
    CHECK_INT(sq_eval(c, g_toks, N, N, &e), SQ_OK);
    float *ref = malloc((size_t)N * nv * sizeof(float));
    memcpy(ref, sq_get_logits(c), (size_t)N * nv * sizeof(float));

    rec r = {0};
    sq_kv_clear(c);
    sq_context_set_matmul_hook(c, rec_hook, &r);
    CHECK_INT(sq_eval(c, g_toks, N, N, &e), SQ_OK);
    CHECK(memcmp(ref, sq_get_logits(c), (size_t)N * nv * sizeof(float)) == 0); /* observing changes nothing */

    CHECK_INT(r.n_calls, 7 * hp->n_layer + 1);
    static const char *roles[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < hp->n_layer; l++)
        for (int k = 0; k < 7; k++) {
            const int i = l * 7 + k;
            char want[64];
            snprintf(want, sizeof want, "blk.%d.%s.weight", l, roles[k]);
            CHECK_STR(r.names[i], want);
            CHECK_INT(r.rows[i], N);
            const sq_gguf_tensor *t = sq_gguf_find_tensor(sq_model_gguf(g_model), want);
            CHECK(t && r.cols[i] == t->ne[0]); /* the weight's input width */
        }
    CHECK_STR(r.names[7 * hp->n_layer], "output.weight");
    CHECK_INT(r.cols[7 * hp->n_layer], hp->n_embd);
    /* q, k, v share one input; so do gate and up */
    CHECK(r.ptr[0] == r.ptr[1] && r.ptr[1] == r.ptr[2] && r.ptr[4] == r.ptr[5]);

    /* blk.0.attn_q's input is rmsnorm(token embedding) * attn_norm: computed here */
    const sq_gguf *g = sq_model_gguf(g_model);
    const sq_gguf_tensor *emb = sq_gguf_find_tensor(g, "token_embd.weight");
    const sq_gguf_tensor *nrm = sq_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    CHECK(emb && emb->type == SQ_TYPE_F16 && nrm && nrm->type == SQ_TYPE_F32 && r.q_in);
    if (emb && nrm && r.q_in && emb->type == SQ_TYPE_F16 && nrm->type == SQ_TYPE_F32) {
        const int64_t E = hp->n_embd;
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double x[1024], ss = 0;
            for (int64_t j = 0; j < E; j++) {
                sq_fp16 h;
                memcpy(&h, (const char *)emb->data + ((size_t)g_toks[i] * (size_t)E + (size_t)j) * 2, 2);
                x[j] = sq_fp16_to_f32(h);
                ss += x[j] * x[j];
            }
            const double scale = 1.0 / sqrt(ss / (double)E + (double)hp->rms_eps);
            for (int64_t j = 0; j < E; j++) {
                float w;
                memcpy(&w, (const char *)nrm->data + (size_t)j * 4, 4);
                const double want = x[j] * scale * w, got = r.q_in[(size_t)i * (size_t)E + (size_t)j];
                const double d = fabs(got - want) / (fabs(want) + 1e-3);
                if (d > worst) worst = d;
            }
        }
        CHECK_MSG(worst < 1e-5, "attn_q input differs from rmsnorm(embedding): worst relative %g", worst);
    }

    /* logits for the last token only: the output hook sees one row */
    r.n_calls = 0;
    sq_kv_clear(c);
    CHECK_INT(sq_eval(c, g_toks, N, 1, &e), SQ_OK);
    CHECK_INT(r.rows[7 * hp->n_layer], 1);
    /* removing the hook: no more calls */
    sq_context_set_matmul_hook(c, NULL, NULL);
    r.n_calls = 0;
    sq_kv_clear(c);
    CHECK_INT(sq_eval(c, g_toks, N, N, &e), SQ_OK);
    CHECK_INT(r.n_calls, 0);
    free(r.q_in);
    free(ref);
    sq_context_free(c);
}

/* ---- the collector against a double-precision accumulation ---- */

typedef struct dref {
    char names[64][48];
    double *sum[64];
    int64_t cols[64], count[64];
    int n;
} dref;

static void dref_hook(void *user, const char *name, const float *X, int64_t n_rows, int64_t n_cols)
{
    dref *d = user;
    int i = 0;
    while (i < d->n && strcmp(d->names[i], name)) i++;
    if (i == d->n) {
        if (d->n == 64) return;
        snprintf(d->names[i], 48, "%s", name);
        d->sum[i] = calloc((size_t)n_cols, sizeof(double));
        d->cols[i] = n_cols;
        d->n++;
    }
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t j = 0; j < n_cols; j++) d->sum[i][j] += (double)X[r * n_cols + j] * X[r * n_cols + j];
    d->count[i] += n_rows;
}

static void test_collect(void)
{
    if (!setup()) SKIP("demo model or calib text missing");
    const int n_ctx = 32, n_chunks = 3;
    sq_context *c = new_ctx(n_ctx, 2);
    if (!c) {
        CHECK(c != NULL);
        return;
    }
    sq_error e = {0};
    const int32_t bos = sq_vocab_bos(g_vocab);

    /* the reference: same chunks, BOS first, every token, doubles */
    dref d = {0};
    sq_context_set_matmul_hook(c, dref_hook, &d);
    int32_t buf[32];
    for (int k = 0; k < n_chunks; k++) {
        memcpy(buf, g_toks + k * n_ctx, sizeof buf);
        buf[0] = bos;
        sq_kv_clear(c);
        CHECK_INT(sq_eval(c, buf, n_ctx, n_ctx, &e), SQ_OK);
    }
    sq_context_set_matmul_hook(c, NULL, NULL);

    sq_imatrix_collector *ic = NULL;
    CHECK_INT(sq_imatrix_collector_create(false, &ic, &e), SQ_OK);
    sq_imatrix_run_params rp = {n_ctx, n_chunks, NULL, NULL};
    double ppl = 0;
    CHECK_INT(sq_imatrix_collect(ic, c, g_toks, g_ntok, bos, &rp, &ppl, &e), SQ_OK);
    CHECK(ppl > 1 && ppl < 1000);
    const int64_t n_layer = sq_model_hparams(g_model)->n_layer;
    CHECK_INT(sq_imatrix_collector_n_entries(ic), 7 * n_layer); /* no output.weight by default */
    double worst = 0;
    const char *prev = "";
    for (int64_t i = 0; i < sq_imatrix_collector_n_entries(ic); i++) {
        const float *s, *cnt;
        int64_t ne0, nm;
        const char *name = sq_imatrix_collector_entry(ic, i, &s, &cnt, &ne0, &nm);
        CHECK(strcmp(prev, name) < 0); /* sorted, unique */
        prev = name;
        int k = 0;
        while (k < d.n && strcmp(d.names[k], name)) k++;
        CHECK_MSG(k < d.n, "%s was not seen by the reference hook", name);
        if (k == d.n) continue;
        CHECK_INT(nm, 1);
        CHECK_INT(ne0, d.cols[k]);
        CHECK(cnt[0] == (float)(n_chunks * n_ctx) && d.count[k] == n_chunks * n_ctx);
        for (int64_t j = 0; j < ne0; j++) {
            const double r = fabs(s[j] - d.sum[k][j]) / (d.sum[k][j] + 1e-30);
            if (r > worst) worst = r;
        }
    }
    CHECK_MSG(worst < 1e-5, "float sums vs double sums: worst relative difference %g", worst);
    CHECK_INT(sq_imatrix_collector_chunk_count(ic, n_ctx), n_chunks);

    /* fewer than 16 rows are ignored (llama.cpp's rule) */
    const float *s0, *c0;
    sq_imatrix_collector_entry(ic, 0, &s0, &c0, NULL, NULL);
    const float before = c0[0];
    sq_imatrix_collector_attach(ic, c);
    sq_kv_clear(c);
    CHECK_INT(sq_eval(c, g_toks, 15, 15, &e), SQ_OK);
    CHECK(c0[0] == before);
    CHECK_INT(sq_eval(c, g_toks + 15, 16, 16, &e), SQ_OK);
    CHECK(c0[0] == before + 16.0f);
    sq_imatrix_collector_detach(c);

    /* --process-output: the output projection too */
    sq_imatrix_collector *io = NULL;
    CHECK_INT(sq_imatrix_collector_create(true, &io, &e), SQ_OK);
    rp.n_chunks = 1;
    CHECK_INT(sq_imatrix_collect(io, c, g_toks, g_ntok, bos, &rp, NULL, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_n_entries(io), 7 * n_layer + 1);
    bool has_out = false;
    for (int64_t i = 0; i < sq_imatrix_collector_n_entries(io); i++) {
        const float *cnt;
        const char *nm = sq_imatrix_collector_entry(io, i, NULL, &cnt, NULL, NULL);
        if (!strcmp(nm, "output.weight")) has_out = cnt[0] == (float)n_ctx;
    }
    CHECK(has_out);
    sq_imatrix_collector_free(io);

    /* too little text, chunk longer than the context */
    CHECK_INT(sq_imatrix_collect(ic, c, g_toks, 2 * n_ctx - 1, bos, &rp, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "at least 64");
    rp.n_ctx = 64;
    CHECK_INT(sq_imatrix_collect(ic, c, g_toks, g_ntok, bos, &rp, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "do not fit the context of 32");

    /* write, read back with the quantizer's reader, merge twice */
    char path[600];
    snprintf(path, sizeof path, "%s/c.imatrix.gguf", g_tmp);
    CHECK_INT(sq_imatrix_collector_add_dataset(ic, "calib-part.txt", &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_write(ic, path, n_ctx, &e), SQ_OK);
    sq_imatrix *im = NULL;
    CHECK_INT(sq_imatrix_load(path, &im, &e), SQ_OK);
    if (im) {
        CHECK_INT(sq_imatrix_n_entries(im), 7 * n_layer);
        CHECK_INT(sq_imatrix_chunk_size(im), n_ctx);
        CHECK_INT(sq_imatrix_chunk_count(im), n_chunks); /* 3*32 + 16 rows: floor(112/32) */
        CHECK_INT(sq_imatrix_n_datasets(im), 1);
        CHECK_STR(sq_imatrix_dataset(im, 0), "calib-part.txt");
        const float *s, *cnt;
        int64_t ne0;
        const char *name = sq_imatrix_collector_entry(ic, 5, &s, &cnt, &ne0, NULL);
        int64_t n = 0;
        const float *v = sq_imatrix_find(im, name, &n);
        CHECK(v && n == ne0);
        bool same = v != NULL;
        for (int64_t j = 0; v && j < ne0; j++) same = same && v[j] == s[j] / cnt[0];
        CHECK(same);
    }
    sq_imatrix_free(im);
    sq_imatrix_collector *mg = NULL;
    CHECK_INT(sq_imatrix_collector_create(false, &mg, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_load(mg, path, n_ctx, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_load(mg, path, n_ctx, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_n_entries(mg), 7 * n_layer);
    bool doubled = true;
    for (int64_t i = 0; i < 7 * n_layer; i++) {
        const float *a, *ca, *b, *cb;
        int64_t na, nb;
        sq_imatrix_collector_entry(ic, i, &a, &ca, &na, NULL);
        sq_imatrix_collector_entry(mg, i, &b, &cb, &nb, NULL);
        doubled = doubled && na == nb && cb[0] == 2 * ca[0];
        for (int64_t j = 0; j < na && doubled; j++) doubled = b[j] == 2 * a[j];
    }
    CHECK(doubled);
    CHECK_INT(sq_imatrix_collector_chunk_count(mg, n_ctx), 2 * (n_chunks * n_ctx + 16) / n_ctx); /* 224 rows: 7 */
    /* merging a file whose widths disagree is refused with the entry's name */
    sq_imatrix_collector *bad = NULL;
    sq_imatrix_collector_create(false, &bad, &e);
    const float one[3] = {1, 2, 3}, cnt1 = 4;
    sq_imatrix_stat st = {"blk.0.attn_q.weight", one, &cnt1, 3, 1};
    const char *ds = "x";
    char bpath[600];
    snprintf(bpath, sizeof bpath, "%s/bad.imatrix.gguf", g_tmp);
    CHECK_INT(sq_imatrix_write_gguf(bpath, &st, 1, &ds, 1, 1, 32, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_load(bad, bpath, n_ctx, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_load(mg, bpath, n_ctx, &e), SQ_EFORMAT);
    CHECK_CONTAINS(e.msg, "blk.0.attn_q.weight");
    /* and the hook refuses a width that differs from a loaded entry */
    rp.n_ctx = n_ctx;
    CHECK(sq_imatrix_collect(bad, c, g_toks, g_ntok, bos, &rp, NULL, &e) != SQ_OK);
    CHECK_CONTAINS(e.msg, "blk.0.attn_q.weight has 3 x 1 values");
    CHECK(sq_imatrix_collector_load(mg, "/nonexistent/x.gguf", n_ctx, &e) != SQ_OK);
    CHECK_CONTAINS(e.msg, "/nonexistent/x.gguf");
    sq_imatrix_collector_free(bad);
    sq_imatrix_collector_free(mg);

    /* an empty collector writes nothing */
    sq_imatrix_collector *em = NULL;
    sq_imatrix_collector_create(false, &em, &e);
    CHECK_INT(sq_imatrix_collector_write(em, path, n_ctx, &e), SQ_EINVAL);
    sq_imatrix_collector_free(em);
    sq_imatrix_collector_free(NULL);

    for (int i = 0; i < d.n; i++) free(d.sum[i]);
    sq_imatrix_collector_free(ic);
    sq_context_free(c);
}

/* A legacy .dat file merges as mean * (chunks * chunk size) rows. */
static void test_load_legacy(void)
{
    if (!setup()) SKIP("no temporary directory");
    char path[600];
    snprintf(path, sizeof path, "%s/l.dat", g_tmp);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    const char *name = "blk.0.ffn_down.weight";
    const int32_t n_entries = 1, len = (int32_t)strlen(name), ncall = 2, nval = 2, chunks = 5;
    const float vals[2] = {6.0f, 3.0f}; /* importance = value / ncall = 3, 1.5 */
    const int32_t dlen = 5;
    fwrite(&n_entries, 4, 1, f);
    fwrite(&len, 4, 1, f);
    fwrite(name, 1, (size_t)len, f);
    fwrite(&ncall, 4, 1, f);
    fwrite(&nval, 4, 1, f);
    fwrite(vals, 4, 2, f);
    fwrite(&chunks, 4, 1, f);
    fwrite(&dlen, 4, 1, f);
    fwrite("a.txt", 1, 5, f);
    fclose(f);
    sq_imatrix_collector *ic = NULL;
    sq_error e = {0};
    CHECK_INT(sq_imatrix_collector_create(false, &ic, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_load(ic, path, 100, &e), SQ_OK);
    const float *s, *c;
    int64_t ne0;
    const char *nm = sq_imatrix_collector_entry(ic, 0, &s, &c, &ne0, NULL);
    CHECK_STR(nm, name);
    CHECK(ne0 == 2 && c[0] == 500.0f && s[0] == 1500.0f && s[1] == 750.0f);
    sq_imatrix_collector_free(ic);
}

/* ---- the tool ---- */

static void test_tool(void)
{
    if (!setup()) SKIP("demo model missing");
    char cmd[2048], out[600], log[600];
    snprintf(out, sizeof out, "%s/tool.imatrix.gguf", g_tmp);
    snprintf(log, sizeof log, "%s/tool.log", g_tmp);
    snprintf(cmd, sizeof cmd, "%s imatrix --help > %s 2>&1", harness_sq_bin(), log);
    CHECK_INT(system(cmd), 0);
    char *help = harness_read_file(log, NULL);
    static const char *flags[] = {"-m,", "-f,", "-o,", "-c,", "--chunks", "-b,", "-t,", "--in-file", "--process-output",
                                  "--kv-type"};
    for (size_t i = 0; help && i < sizeof flags / sizeof *flags; i++) CHECK_CONTAINS(help, flags[i]);
    free(help);

    snprintf(cmd, sizeof cmd, "%s imatrix -m %s -f data/calib.txt -c 32 --chunks 2 -t 2 -o %s > %s 2>&1",
             harness_sq_bin(), DEMO, out, log);
    CHECK_INT(system(cmd), 0);
    char *txt = harness_read_file(log, NULL);
    CHECK_CONTAINS(txt, "[2]");
    CHECK_CONTAINS(txt, "imatrix: 28 entries, 2 chunks of 32 tokens");
    free(txt);
    sq_imatrix *im = NULL;
    sq_error e = {0};
    CHECK_INT(sq_imatrix_load(out, &im, &e), SQ_OK);
    CHECK_INT(sq_imatrix_chunk_count(im), 2);
    CHECK_INT(sq_imatrix_chunk_size(im), 32);
    CHECK_STR(sq_imatrix_dataset(im, 0), "data/calib.txt");
    sq_imatrix_free(im);

    /* merge-only mode: two copies give chunk count 4 and two datasets */
    char out2[600];
    snprintf(out2, sizeof out2, "%s/merged.imatrix.gguf", g_tmp);
    snprintf(cmd, sizeof cmd, "%s imatrix --in-file %s --in-file %s -c 32 -o %s > %s 2>&1", harness_sq_bin(), out, out,
             out2, log);
    CHECK_INT(system(cmd), 0);
    CHECK_INT(sq_imatrix_load(out2, &im, &e), SQ_OK);
    CHECK_INT(sq_imatrix_chunk_count(im), 4);
    CHECK_INT(sq_imatrix_n_datasets(im), 2);
    sq_imatrix_free(im);

    /* usage errors and a missing file */
    snprintf(cmd, sizeof cmd, "%s imatrix -m %s > %s 2>&1", harness_sq_bin(), DEMO, log);
    CHECK_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s imatrix -m %s -f /nonexistent.txt -o %s/x.gguf > %s 2>&1", harness_sq_bin(), DEMO,
             g_tmp, log);
    CHECK_INT(WEXITSTATUS(system(cmd)), 1);
    txt = harness_read_file(log, NULL);
    CHECK_CONTAINS(txt, "/nonexistent.txt");
    free(txt);
}

/* ---- against llama.cpp ---- */

/* Compares two imatrix files entry by entry: same names and counts, each
 * column's mean (in_sum2 / counts) within rel. Returns the worst difference. */
static double compare_files(const char *ours, const char *theirs, double rel)
{
    sq_gguf *a = NULL, *b = NULL;
    sq_error e = {0};
    CHECK_INT(sq_gguf_open(ours, &a, &e), SQ_OK);
    CHECK_INT(sq_gguf_open(theirs, &b, &e), SQ_OK);
    double worst = -1;
    if (!a || !b) goto out;
    uint32_t ca = 0, cb = 0;
    CHECK_INT(sq_gguf_get_u32(a, "imatrix.chunk_count", &ca, &e), SQ_OK);
    CHECK_INT(sq_gguf_get_u32(b, "imatrix.chunk_count", &cb, &e), SQ_OK);
    CHECK_INT(ca, cb);
    CHECK_INT(sq_gguf_get_u32(a, "imatrix.chunk_size", &ca, &e), SQ_OK);
    CHECK_INT(sq_gguf_get_u32(b, "imatrix.chunk_size", &cb, &e), SQ_OK);
    CHECK_INT(ca, cb);
    sq_gguf_str ty;
    CHECK(sq_gguf_get_str(a, "general.type", &ty, &e) == SQ_OK && ty.len == 7 && !memcmp(ty.ptr, "imatrix", 7));
    CHECK_INT(sq_gguf_n_tensors(a), sq_gguf_n_tensors(b));
    worst = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(b); i++) {
        const sq_gguf_tensor *tb = sq_gguf_tensor_at(b, i);
        const sq_gguf_tensor *ta = sq_gguf_tensor_at(a, i);
        CHECK_STR(ta->name, tb->name); /* same order: sorted names, in_sum2 before counts */
        const size_t len = strlen(tb->name);
        if (len < 8 || strcmp(tb->name + len - 8, ".in_sum2")) continue;
        char cn[600];
        snprintf(cn, sizeof cn, "%.*s.counts", (int)(len - 8), tb->name);
        const sq_gguf_tensor *ka = sq_gguf_find_tensor(a, cn), *kb = sq_gguf_find_tensor(b, cn);
        const sq_gguf_tensor *sa = sq_gguf_find_tensor(a, tb->name);
        CHECK(ka && kb && sa && sa->ne[0] == tb->ne[0]);
        if (!ka || !kb || !sa || sa->ne[0] != tb->ne[0]) continue;
        float na, nb;
        memcpy(&na, ka->data, 4);
        memcpy(&nb, kb->data, 4);
        CHECK_MSG(na == nb, "%s: %g rows vs llama.cpp's %g", cn, (double)na, (double)nb);
        for (int64_t j = 0; j < tb->ne[0]; j++) {
            float va, vb;
            memcpy(&va, (const char *)sa->data + j * 4, 4);
            memcpy(&vb, (const char *)tb->data + j * 4, 4);
            const double ma = va / na, mb = vb / nb;
            const double r = fabs(ma - mb) / fabs(mb);
            if (r > worst) worst = r;
        }
    }
    CHECK_MSG(worst < rel, "worst relative difference of a column mean: %g (limit %g)", worst, rel);
out:
    sq_gguf_close(a);
    sq_gguf_close(b);
    return worst;
}

static void test_vendored_vs_llamacpp(void)
{
    char golden[512];
    if (!harness_shared_file(golden, sizeof golden, "golden/llama.cpp/sqdemo.imatrix.gguf"))
        SKIP("no ../shared golden imatrix");
    const double w = compare_files(VENDORED, golden, 1e-3);
    fprintf(stderr, "vendored %s vs llama.cpp: worst column-mean difference %.3g\n", VENDORED, w);

    /* llama.cpp's file read back (--in-file) and written again: the same numbers exactly */
    if (!setup()) SKIP("no temporary directory");
    sq_imatrix_collector *ic = NULL;
    sq_error e = {0};
    char out[600];
    snprintf(out, sizeof out, "%s/golden-copy.imatrix.gguf", g_tmp);
    CHECK_INT(sq_imatrix_collector_create(false, &ic, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_load(ic, golden, 512, &e), SQ_OK);
    CHECK_INT(sq_imatrix_collector_n_entries(ic), 28);
    CHECK_INT(sq_imatrix_collector_chunk_count(ic, 512), 214);
    CHECK_INT(sq_imatrix_collector_write(ic, out, 512, &e), SQ_OK);
    CHECK(compare_files(out, golden, 1e-300) == 0.0);
    sq_imatrix *im = NULL;
    CHECK_INT(sq_imatrix_load(out, &im, &e), SQ_OK);
    CHECK_STR(sq_imatrix_dataset(im, 0), "calib.txt"); /* llama.cpp's dataset name kept */
    sq_imatrix_free(im);
    sq_imatrix_collector_free(ic);
}

static void test_live_full_vs_llamacpp(void)
{
    char golden[512], cmd[2048], out[700];
    if (!harness_shared_file(golden, sizeof golden, "golden/llama.cpp/sqdemo.imatrix.gguf"))
        SKIP("no ../shared golden imatrix");
    const char *slow = getenv("SQ_SLOW_TESTS");
    if (!slow || strcmp(slow, "1")) SKIP("the full calibration run takes minutes: set SQ_SLOW_TESTS=1");
    if (!setup()) SKIP("no temporary directory");
    snprintf(out, sizeof out, "%s/full.imatrix.gguf", g_tmp);
    snprintf(cmd, sizeof cmd, "%s imatrix -m %s -f data/calib.txt -c 512 -o %s > /dev/null 2>&1", harness_sq_bin(),
             DEMO, out);
    CHECK_INT(system(cmd), 0);
    const double w = compare_files(out, golden, 1e-3);
    fprintf(stderr, "live run vs llama.cpp: worst column-mean difference %.3g\n", w);
}

int main(void)
{
    RUN(test_hook);
    RUN(test_collect);
    RUN(test_load_legacy);
    RUN(test_tool);
    RUN(test_vendored_vs_llamacpp);
    RUN(test_live_full_vs_llamacpp);
    char cmd[600];
    if (g_tmp[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    }
    free(g_toks);
    sq_vocab_free(g_vocab);
    sq_model_free(g_model);
    return harness_finish("imatrix_collect");
}
