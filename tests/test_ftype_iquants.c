/*
 * test_ftype_iquants.c — the low-bit file types (IQ3_M, IQ3_S, IQ3_XS,
 * IQ3_XXS, IQ2_M, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S, TQ1_0, TQ2_0) against
 * llama-quantize on the demo model with its importance matrix
 * (../shared/golden/llama.cpp/ftype-iquants-sqdemo.tsv: each tensor's type
 * and the sha256 of its data):
 *   - every tensor's type, for every file type (dry runs);
 *   - the data bytes, end to end through sq_quantize_file: for each file type
 *     and each low-bit type it uses, the smallest tensor of that type, with
 *     every other tensor pinned to Q8_0 by --tensor-type (the mix rules still
 *     run for pinned tensors, so the sampled tensors get the types llama.cpp
 *     gave them). With SQ_FULL=1 every tensor of every file is compared
 *     (no pinning; over a minute of quantizing);
 *   - the refusal without an importance matrix, naming the first tensor
 *     that needs one (llama-quantize's "this quantization requires an
 *     imatrix"), and no output file left behind.
 */
#include <unistd.h>

#include "harness.h"
#include "sha256.h"
#include "testutil.h"
#include "sq/gguf.h"
#include "sq/quantize.h"

#define MAX_ROWS 600

typedef struct row {
    char ftype[16], name[64], type[16], hash[65];
} row;

static row rows[MAX_ROWS];
static int n_rows;

/* The table, header skipped; false when absent or malformed. */
static bool load_table(const char *path)
{
    size_t n = 0;
    char *text = harness_read_file(path, &n);
    if (!text) return false;
    char *save = NULL;
    n_rows = 0;
    for (char *line = strtok_r(text, "\n", &save); line && n_rows < MAX_ROWS; line = strtok_r(NULL, "\n", &save)) {
        row *r = &rows[n_rows];
        if (sscanf(line, "%15s %63s %15s %64s", r->ftype, r->name, r->type, r->hash) != 4) continue;
        if (strcmp(r->ftype, "ftype") != 0) n_rows++;
    }
    free(text);
    return n_rows > 0;
}

typedef struct planned {
    char names[64][64];
    int types[64];
    int n;
} planned;

static void on_event(void *ud, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    (void)text;
    planned *p = ud;
    if (kind != SQ_QEVENT_TENSOR || p->n >= 64) return;
    snprintf(p->names[p->n], sizeof p->names[0], "%s", t->name);
    p->types[p->n++] = t->out_type;
}

static int planned_type(const planned *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->names[i], name)) return p->types[i];
    return -1;
}

static bool low_bit(int t)
{
    return t == SQ_TYPE_IQ1_S || t == SQ_TYPE_IQ1_M || t == SQ_TYPE_IQ2_XXS || t == SQ_TYPE_IQ2_XS ||
           t == SQ_TYPE_IQ2_S || t == SQ_TYPE_IQ3_XXS || t == SQ_TYPE_IQ3_S || t == SQ_TYPE_TQ1_0 ||
           t == SQ_TYPE_TQ2_0;
}

static int64_t n_elements(const sq_gguf *g, const char *name)
{
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, name);
    return t ? t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] : INT64_MAX;
}

/* The types of one file type, all tensors, from a dry run. */
static void check_types(const char *model, const char *imx, const char *ft)
{
    static planned pl;
    pl.n = 0;
    sq_quantize_params p = tu_quantize_params(sq_ftype_parse(ft)->ftype, 1);
    p.imatrix_path = imx;
    p.dry_run = true;
    p.on_event = on_event;
    p.event_ud = &pl;
    sq_error e = {0};
    CHECK_MSG(sq_quantize_file(model, NULL, &p, NULL, &e) == SQ_OK, "%s dry run: %s", ft, e.msg);
    int bad = 0, n = 0;
    for (int i = 0; i < n_rows; i++) {
        if (strcmp(rows[i].ftype, ft)) continue;
        n++;
        const int got = planned_type(&pl, rows[i].name);
        if (got != sq_type_from_name(rows[i].type) && bad++ < 5)
            fprintf(stderr, "%s %s: llama.cpp %s, sq %s\n", ft, rows[i].name, rows[i].type, sq_type_name(got));
    }
    CHECK_MSG(bad == 0 && n == pl.n, "%s: %d of %d tensor types differ (%d planned)", ft, bad, n, pl.n);
}

/* The sampled tensors of one file type quantized end to end; their data
 * hashed against the table. */
static void check_bytes(const char *model, const char *imx, const char *ft, const sq_gguf *in, const char *dir)
{
    const bool full = getenv("SQ_FULL") && strcmp(getenv("SQ_FULL"), "0") != 0;
    int pick[64], n_pick = 0;
    for (int i = 0; i < n_rows; i++) {
        const int t = sq_type_from_name(rows[i].type);
        if (strcmp(rows[i].ftype, ft)) continue;
        if (full && n_pick < 64) {
            pick[n_pick++] = i;
            continue;
        }
        if (!low_bit(t)) continue;
        int k = 0;
        while (k < n_pick && strcmp(rows[pick[k]].type, rows[i].type)) k++;
        if (k == n_pick && n_pick < 16) pick[n_pick++] = i;
        else if (k < n_pick && n_elements(in, rows[i].name) < n_elements(in, rows[pick[k]].name)) pick[k] = i;
    }
    static sq_tensor_type_override ov[64];
    static char pats[64][96];
    int n_ov = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(in) && n_ov < 64; i++) {
        const char *name = sq_gguf_tensor_at(in, i)->name;
        bool keep = false;
        for (int k = 0; k < n_pick; k++) keep = keep || !strcmp(rows[pick[k]].name, name);
        if (keep) continue;
        char *o = pats[n_ov];
        *o++ = '^';
        for (const char *c = name; *c && o < pats[n_ov] + 90; c++) {
            if (*c == '.') *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '$', *o = 0;
        ov[n_ov] = (sq_tensor_type_override){pats[n_ov], SQ_TYPE_Q8_0};
        n_ov++;
    }
    char out[512];
    snprintf(out, sizeof out, "%s/%s.gguf", dir, ft);
    sq_quantize_params p = tu_quantize_params(sq_ftype_parse(ft)->ftype, 2);
    p.imatrix_path = imx;
    p.overrides = ov;
    p.n_overrides = n_ov;
    sq_error e = {0};
    CHECK_MSG(sq_quantize_file(model, out, &p, NULL, &e) == SQ_OK, "%s: %s", ft, e.msg);
    sq_gguf *g = NULL;
    if (sq_gguf_open(out, &g, &e) != SQ_OK) {
        CHECK_MSG(0, "%s: cannot open the output: %s", ft, e.msg);
        return;
    }
    for (int k = 0; k < n_pick; k++) {
        const row *r = &rows[pick[k]];
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, r->name);
        char hex[65] = "";
        if (t) sha256_hex(t->data, t->nbytes, hex);
        CHECK_MSG(t && t->type == sq_type_from_name(r->type) && !strcmp(hex, r->hash), "%s %s (%s): data differs",
                  ft, r->name, r->type);
    }
    sq_gguf_close(g);
    unlink(out);
}

static void test_iquant_ftypes(void)
{
    char model[1024], imx[1024], tsv[1024], dir[256];
    if (!harness_shared_file(model, sizeof model, "models/sqdemo-f16.gguf") ||
        !harness_shared_file(imx, sizeof imx, "golden/llama.cpp/sqdemo.imatrix.gguf") ||
        !harness_shared_file(tsv, sizeof tsv, "golden/llama.cpp/ftype-iquants-sqdemo.tsv"))
        SKIP("../shared files absent");
    CHECK(load_table(tsv));
    sq_gguf *in = NULL;
    sq_error e = {0};
    if (sq_gguf_open(model, &in, &e) != SQ_OK || !harness_tmpdir(dir, sizeof dir)) {
        CHECK_MSG(0, "%s: %s", model, e.msg);
        sq_gguf_close(in);
        return;
    }
    int n_ft = 0;
    for (int i = 0; i < n_rows; i++) {
        if (i > 0 && !strcmp(rows[i].ftype, rows[i - 1].ftype)) continue;
        n_ft++;
        check_types(model, imx, rows[i].ftype);
        check_bytes(model, imx, rows[i].ftype, in, dir);
    }
    CHECK_INT(n_ft, 12);
    sq_gguf_close(in);
    rmdir(dir);
}

/* Without an importance matrix llama-quantize refuses these file types,
 * naming a tensor; nothing is written. */
static void test_refusal_without_imatrix(void)
{
    char model[1024], dir[256], out[512];
    if (!harness_shared_file(model, sizeof model, "models/sqdemo-f16.gguf") || !harness_tmpdir(dir, sizeof dir))
        SKIP("../shared/models/sqdemo-f16.gguf absent");
    static const char *need[] = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        snprintf(out, sizeof out, "%s/%s.gguf", dir, need[i]);
        sq_quantize_params p = tu_quantize_params(sq_ftype_parse(need[i])->ftype, 1);
        sq_error e = {0};
        CHECK_MSG(sq_quantize_file(model, out, &p, NULL, &e) != SQ_OK, "%s without an imatrix succeeded", need[i]);
        CHECK_CONTAINS(e.msg, "importance matrix");
        CHECK_CONTAINS(e.msg, "blk.0.");
        CHECK_MSG(access(out, F_OK) != 0, "%s: an output file was left behind", need[i]);
    }
    /* these go without one (as llama-quantize) */
    static const char *free_[] = {"IQ3_S", "IQ3_M", "TQ1_0", "TQ2_0"};
    for (size_t i = 0; i < sizeof free_ / sizeof free_[0]; i++) {
        sq_quantize_params p = tu_quantize_params(sq_ftype_parse(free_[i])->ftype, 1);
        p.dry_run = true;
        sq_error e = {0};
        CHECK_MSG(sq_quantize_file(model, NULL, &p, NULL, &e) == SQ_OK, "%s dry run without an imatrix: %s",
                  free_[i], e.msg);
    }
    rmdir(dir);
}

int main(void)
{
    RUN(test_iquant_ftypes);
    RUN(test_refusal_without_imatrix);
    return harness_finish("ftype_iquants");
}
