/*
 * test_ftype.c — llama-quantize's file types and per-tensor type rules:
 * the demo model's 16-file-type table that llama.cpp produced
 * (../shared/golden/llama.cpp/ftype-choices-sqdemo.tsv), and synthetic
 * models for what the demo lacks (grouped-query ratios >= 4, many layers,
 * experts, 70B, tied embeddings, widths not divisible by 256), plus the
 * user overrides.
 */
#include "harness.h"
#include "sq/quantize.h"

/* A synthetic llama model: name + shape for every tensor, in llama.cpp order. */
typedef struct tensor_desc {
    char name[64];
    int64_t ne[4];
    int type;
} tensor_desc;

typedef struct model_desc {
    tensor_desc t[1024];
    int n;
} model_desc;

static void add(model_desc *m, const char *name, int64_t ne0, int64_t ne1, int64_t ne2, int type)
{
    tensor_desc *d = &m->t[m->n++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ne[0] = ne0;
    d->ne[1] = ne1;
    d->ne[2] = ne2;
    d->ne[3] = 1;
    d->type = type;
}

static int cmp_desc(const void *a, const void *b)
{
    return sq_tensor_order_cmp(((const tensor_desc *)a)->name, ((const tensor_desc *)b)->name);
}

/* A llama model of n_layer blocks: embd, ff, heads, kv heads, vocab; tied = no output.weight. */
static void make_llama(model_desc *m, int n_layer, int64_t embd, int64_t ff, int n_head, int n_head_kv, int64_t vocab,
                       bool tied)
{
    m->n = 0;
    const int64_t kv = embd / n_head * n_head_kv;
    add(m, "token_embd.weight", embd, vocab, 1, SQ_TYPE_F16);
    for (int l = 0; l < n_layer; l++) {
        char nm[64];
#define L(suffix, a, b)                                      \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);            \
    add(m, nm, a, b, 1, (b) == 1 ? SQ_TYPE_F32 : SQ_TYPE_F16)
        L("attn_norm.weight", embd, 1);
        L("attn_q.weight", embd, embd);
        L("attn_k.weight", embd, kv);
        L("attn_v.weight", embd, kv);
        L("attn_output.weight", embd, embd);
        L("ffn_norm.weight", embd, 1);
        L("ffn_gate.weight", embd, ff);
        L("ffn_up.weight", embd, ff);
        L("ffn_down.weight", ff, embd);
#undef L
    }
    add(m, "output_norm.weight", embd, 1, 1, SQ_TYPE_F32);
    if (!tied) add(m, "output.weight", embd, vocab, 1, SQ_TYPE_F16);
    qsort(m->t, (size_t)m->n, sizeof m->t[0], cmp_desc);
}

/* Runs the rules over a model; types[i] receives tensor i's type. */
static sq_status choose_all(const model_desc *m, const sq_qrules_params *p, const sq_qrules_model *hp, int *types,
                            sq_qchoice *choices, sq_error *err)
{
    const char *names[1024];
    for (int i = 0; i < m->n; i++) names[i] = m->t[i].name;
    sq_qrules *r = NULL;
    sq_status st = sq_qrules_create(p, hp, names, m->n, &r, err);
    if (st != SQ_OK) return st;
    for (int i = 0; i < m->n && st == SQ_OK; i++) {
        sq_qchoice c;
        st = sq_qrules_choose(r, m->t[i].name, m->t[i].ne, m->t[i].type, &c, err);
        types[i] = c.type;
        if (choices) choices[i] = c;
    }
    sq_qrules_free(r);
    return st;
}

static int find(const model_desc *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}

static sq_qrules_params params_for(const char *ftype_name, bool imatrix)
{
    sq_qrules_params p = {0};
    const sq_ftype_info *fi = sq_ftype_parse(ftype_name);
    p.ftype = fi ? fi->ftype : -1;
    p.copy = fi && fi->copy;
    p.has_imatrix = imatrix;
    p.output_tensor_type = -1;
    p.token_embedding_type = -1;
    return p;
}

static void test_ftype_parse(void)
{
    CHECK_INT(sq_ftype_parse("Q4_K_M")->ftype, 15);
    CHECK_INT(sq_ftype_parse("q4_k_m")->ftype, 15);
    CHECK_INT(sq_ftype_parse("Q4_K")->ftype, 15);
    CHECK_INT(sq_ftype_parse("15")->ftype, 15);
    CHECK_STR(sq_ftype_parse("15")->name, "Q4_K_M");
    CHECK_INT(sq_ftype_parse("Q8_0")->ftype, 7);
    CHECK_INT(sq_ftype_parse("Q8_0")->default_type, SQ_TYPE_Q8_0);
    CHECK_INT(sq_ftype_parse("Q5_0")->ftype, 8);
    CHECK_INT(sq_ftype_parse("Q5_1")->ftype, 9);
    CHECK_INT(sq_ftype_parse("IQ4_NL")->ftype, 25);
    CHECK_INT(sq_ftype_parse("IQ4_XS")->ftype, 30);
    CHECK_INT(sq_ftype_parse("IQ4_XS")->default_type, SQ_TYPE_IQ4_XS);
    CHECK_INT(sq_ftype_parse("BF16")->ftype, 32);
    CHECK_INT(sq_ftype_parse("F32")->ftype, 0);
    CHECK(!sq_ftype_parse("F32")->copy);
    CHECK(sq_ftype_parse("0") && !sq_ftype_parse("0")->copy);
    CHECK(sq_ftype_parse("copy") && sq_ftype_parse("copy")->copy);
    CHECK_INT(sq_ftype_parse("IQ2_S")->default_type, SQ_TYPE_IQ2_XS);
    CHECK_INT(sq_ftype_parse("IQ2_M")->default_type, SQ_TYPE_IQ2_S);
    CHECK_INT(sq_ftype_parse("IQ3_M")->default_type, SQ_TYPE_IQ3_S);
    CHECK_INT(sq_ftype_parse("12")->default_type, SQ_TYPE_Q3_K);
    CHECK(sq_ftype_parse("Q4_K_X") == NULL);
    CHECK(sq_ftype_parse("15x") == NULL);
    CHECK(sq_ftype_parse("4") == NULL); /* removed */
    CHECK(sq_ftype_parse("") == NULL);
    CHECK(sq_ftype_count() > 30);
}

static void test_order(void)
{
    CHECK(sq_tensor_order_cmp("output.weight", "blk.0.attn_k.weight") < 0);
    CHECK(sq_tensor_order_cmp("token_embd.weight", "output_norm.weight") > 0);
    CHECK(sq_tensor_order_cmp("blk.2.ffn_up.weight", "blk.10.attn_k.weight") < 0);
    CHECK(sq_tensor_order_cmp("blk.1.attn_v.weight", "blk.1.attn_k.weight") > 0);
    CHECK_INT(sq_tensor_order_cmp("blk.1.attn_v.weight", "blk.1.attn_v.weight"), 0);
    int64_t a[4] = {512, 1, 1, 1}, b[4] = {512, 4, 1, 1}, c[4] = {64, 1, 8, 1};
    CHECK_INT(sq_ggml_n_dims(a), 1);
    CHECK_INT(sq_ggml_n_dims(b), 2);
    CHECK_INT(sq_ggml_n_dims(c), 3);
}

/* The demo model against llama.cpp's own choices, for each of 16 file types. */
static void test_demo_table(void)
{
    char path[1024];
    if (!harness_shared_file(path, sizeof path, "golden/llama.cpp/ftype-choices-sqdemo.tsv"))
        SKIP("../shared/golden/llama.cpp/ftype-choices-sqdemo.tsv absent");
    size_t n = 0;
    char *text = harness_read_file(path, &n);
    CHECK(text != NULL);
    if (!text) return;
    text = realloc(text, n + 1);
    text[n] = 0;

    static model_desc m;
    make_llama(&m, 4, 512, 1536, 8, 4, 4096, false);
    const sq_qrules_model hp = {"llama", 4, 8, 4, 0};
    int types[1024];
    char cur_ftype[32] = "";
    int rows = 0, mismatches = 0, ftypes = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char ft[32], name[64], ty[32];
        if (sscanf(line, "%31s %63s %31s", ft, name, ty) != 3 || !strcmp(ft, "ftype")) continue;
        if (strcmp(ft, cur_ftype) != 0) {
            snprintf(cur_ftype, sizeof cur_ftype, "%s", ft);
            sq_qrules_params p = params_for(ft, true);
            sq_error e = {0};
            CHECK_MSG(p.ftype >= 0, "ftype %s parses", ft);
            CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
            ftypes++;
        }
        const int i = find(&m, name);
        CHECK_MSG(i >= 0, "tensor %s is in the synthetic demo model", name);
        if (i < 0) continue;
        rows++;
        if (sq_type_from_name(ty) != types[i]) {
            mismatches++;
            CHECK_MSG(0, "%s %s: llama.cpp chose %s, we chose %s", ft, name, ty, sq_type_name(types[i]));
        }
    }
    CHECK_INT(ftypes, 16);
    CHECK_INT(rows, 16 * 39);
    CHECK_INT(mismatches, 0);
    free(text);
}

/* Layers that llama.cpp's use_more_bits picks for 32 layers, worked out by
 * hand: the first and last 4, and 4 + 3k + 2. */
static bool more_bits_32(int l)
{
    static const int pick[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++)
        if (pick[i] == l) return true;
    return false;
}

static int type_of(const model_desc *m, const int *types, const char *fmt, int l)
{
    char nm[64];
    snprintf(nm, sizeof nm, fmt, l);
    int i = find(m, nm);
    return i < 0 ? -100 : types[i];
}

static void test_many_layers_gqa(void)
{
    static model_desc m;
    /* a Llama-3-8B shape: 32 layers, 4096/14336, 32 heads, 8 KV heads (GQA 4) */
    make_llama(&m, 32, 4096, 14336, 32, 8, 128256, false);
    const sq_qrules_model hp = {"llama", 32, 32, 8, 0};
    static int types[1024];
    sq_error e = {0};

    sq_qrules_params p = params_for("Q4_K_M", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    int bad = 0;
    for (int l = 0; l < 32; l++) {
        const int want = more_bits_32(l) ? SQ_TYPE_Q6_K : SQ_TYPE_Q4_K;
        if (type_of(&m, types, "blk.%d.attn_v.weight", l) != want) bad++;
        if (type_of(&m, types, "blk.%d.ffn_down.weight", l) != want) bad++;
        if (type_of(&m, types, "blk.%d.attn_q.weight", l) != SQ_TYPE_Q4_K) bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_Q6_K);
    CHECK_INT(types[find(&m, "token_embd.weight")], SQ_TYPE_Q4_K);

    /* Q3_K_M: attn_v of the first two layers Q5_K, ffn_down Q5_K below n/16 = 2 */
    p = params_for("Q3_K_M", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 1), SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 2), SQ_TYPE_Q4_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 1), SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 2), SQ_TYPE_Q4_K);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_output.weight", 7), SQ_TYPE_Q4_K);

    /* GQA >= 4: Q2_K's attn_v gets Q4_K (Q3_K below 4); IQ4_XS's gets Q5_K */
    p = params_for("Q2_K", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 5), SQ_TYPE_Q4_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 5), SQ_TYPE_Q3_K);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_k.weight", 5), SQ_TYPE_Q2_K);
    p = params_for("IQ4_XS", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 5), SQ_TYPE_Q5_K);
    /* without an imatrix the first eighth of ffn_down gets Q5_K */
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 3), SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 4), SQ_TYPE_IQ4_XS);
    /* Q4_0 with an imatrix: first eighth of ffn_down in Q4_1 */
    p = params_for("Q4_0", true);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 3), SQ_TYPE_Q4_1);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 4), SQ_TYPE_Q4_0);
    p = params_for("Q4_0", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 0), SQ_TYPE_Q4_0);
    /* Q4_K_S: attn_v of the first 4 Q5_K, ffn_down of the first eighth Q5_K */
    p = params_for("Q4_K_S", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 3), SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 4), SQ_TYPE_Q4_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 3), SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 4), SQ_TYPE_Q4_K);
    /* the IQ2 mixes need an imatrix for most tensors, not for token_embd/output */
    sq_qchoice ch[1024];
    p = params_for("IQ2_XXS", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, ch, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_q.weight", 9), SQ_TYPE_IQ2_XXS);
    CHECK(ch[find(&m, "blk.9.attn_q.weight")].requires_imatrix);
    CHECK_INT(types[find(&m, "token_embd.weight")], SQ_TYPE_Q2_K);
    CHECK(!ch[find(&m, "token_embd.weight")].requires_imatrix);
    CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 9), SQ_TYPE_Q4_K); /* gqa 4 */
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 3), SQ_TYPE_Q2_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 4), SQ_TYPE_IQ2_XXS);
    /* IQ3_XS: ffn_gate/up in the middle layers IQ3_XXS */
    p = params_for("IQ3_XS", true);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_up.weight", 3), SQ_TYPE_IQ3_S);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_up.weight", 4), SQ_TYPE_IQ3_XXS);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_gate.weight", 27), SQ_TYPE_IQ3_XXS);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_gate.weight", 28), SQ_TYPE_IQ3_S);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_q.weight", 28), SQ_TYPE_IQ3_XXS);
}

static void test_70b_experts_tied(void)
{
    static model_desc m;
    static int types[1024];
    sq_error e = {0};
    /* 70B: 80 layers with GQA: Q3_K attn_v becomes Q5_K */
    make_llama(&m, 80, 1024, 2048, 64, 8, 1024, false);
    sq_qrules_model hp = {"llama", 80, 64, 8, 0};
    sq_qrules_params p = params_for("Q3_K_S", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 40), SQ_TYPE_Q5_K);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_k.weight", 40), SQ_TYPE_Q3_K);
    /* not 70B when heads = kv heads */
    hp.n_head_kv = 64;
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 40), SQ_TYPE_Q3_K);

    /* 8 experts: attn_v and attn_k in Q8_0, ffn_down_exps by layer number */
    make_llama(&m, 8, 512, 1024, 8, 8, 1024, false);
    hp = (sq_qrules_model){"llama", 8, 8, 8, 8};
    p = params_for("Q4_K_M", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_v.weight", 3), SQ_TYPE_Q8_0);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_k.weight", 3), SQ_TYPE_Q8_0);
    CHECK_INT(type_of(&m, types, "blk.%d.attn_output.weight", 3), SQ_TYPE_Q5_K);
    /* n=8: use_more_bits picks 0, 3, 6, 7 */
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 3), SQ_TYPE_Q6_K);
    CHECK_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 4), SQ_TYPE_Q4_K);
    /* an expert tensor whose name has no layer is an error */
    {
        const char *names[] = {"weird.ffn_down.weight"};
        sq_qrules *r = NULL;
        CHECK_INT(sq_qrules_create(&p, &hp, names, 1, &r, &e), SQ_OK);
        int64_t ne[4] = {1024, 512, 8, 1};
        sq_qchoice c;
        CHECK_INT(sq_qrules_choose(r, names[0], ne, SQ_TYPE_F16, &c, &e), SQ_EINVAL);
        CHECK_CONTAINS(e.msg, "weird.ffn_down.weight");
        sq_qrules_free(r);
    }

    /* tied embeddings (no output.weight): token_embd follows the output rule */
    make_llama(&m, 4, 512, 1536, 8, 4, 4096, true);
    hp = (sq_qrules_model){"llama", 4, 8, 4, 0};
    p = params_for("Q4_K_M", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(types[find(&m, "token_embd.weight")], SQ_TYPE_Q6_K);
    p = params_for("Q8_0", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(types[find(&m, "token_embd.weight")], SQ_TYPE_Q8_0);
}

/* Widths not divisible by 256 (or 32). */
static void test_fallbacks(void)
{
    static model_desc m;
    static int types[1024];
    static sq_qchoice ch[1024];
    sq_error e = {0};
    /* embd 2880 = 11.25 * 256 (divisible by 32), ff 1000 (not divisible by 32) */
    make_llama(&m, 4, 2880, 1000, 8, 8, 1024, false);
    const sq_qrules_model hp = {"llama", 4, 8, 8, 0};
    static const struct {
        const char *ftype;
        int attn_q, ffn_down;
    } cases[] = {
        {"Q4_K_S", SQ_TYPE_Q5_0, SQ_TYPE_F16}, {"Q5_K_S", SQ_TYPE_Q5_1, SQ_TYPE_F16},
        {"Q6_K", SQ_TYPE_Q8_0, SQ_TYPE_F16},   {"Q3_K_S", SQ_TYPE_Q4_0, SQ_TYPE_F16},
        {"Q2_K", SQ_TYPE_Q4_0, SQ_TYPE_F16},   {"IQ4_XS", SQ_TYPE_IQ4_NL, SQ_TYPE_F16},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sq_qrules_params p = params_for(cases[k].ftype, true);
        CHECK_INT(choose_all(&m, &p, &hp, types, ch, &e), SQ_OK);
        const int q = find(&m, "blk.1.attn_q.weight"), d = find(&m, "blk.1.ffn_down.weight");
        CHECK_MSG(types[q] == cases[k].attn_q, "%s attn_q: %s", cases[k].ftype, sq_type_name(types[q]));
        CHECK(ch[q].fallback);
        CHECK_MSG(types[d] == cases[k].ffn_down, "%s ffn_down: %s", cases[k].ftype, sq_type_name(types[d]));
        /* output.weight of width 2880 is Q8_0 by the output rule */
        CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_Q8_0);
    }
    CHECK_INT(sq_qrules_fallback_type(SQ_TYPE_IQ2_XXS), SQ_TYPE_IQ4_NL);
    CHECK_INT(sq_qrules_fallback_type(SQ_TYPE_Q8_0), -1);
    /* a 32-block type on a width not divisible by 32 has no fallback: error naming the tensor */
    sq_qrules_params p = params_for("Q4_0", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "ffn_down");
    CHECK_CONTAINS(e.msg, "1000");
}

static void test_overrides(void)
{
    static model_desc m;
    static int types[1024];
    static sq_qchoice ch[1024];
    sq_error e = {0};
    make_llama(&m, 4, 512, 1536, 8, 4, 4096, false);
    const sq_qrules_model hp = {"llama", 4, 8, 4, 0};

    /* --pure: every quantizable tensor the default type, norms F32 */
    sq_qrules_params p = params_for("Q4_K_M", false);
    p.pure = true;
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_Q4_K);
    CHECK_INT(types[find(&m, "blk.3.ffn_down.weight")], SQ_TYPE_Q4_K);
    CHECK_INT(types[find(&m, "blk.3.ffn_norm.weight")], SQ_TYPE_F32);

    /* --output-tensor-type, --token-embedding-type, --leave-output-tensor */
    p = params_for("Q4_K_M", false);
    p.output_tensor_type = SQ_TYPE_Q8_0;
    p.token_embedding_type = SQ_TYPE_Q5_0;
    CHECK_INT(choose_all(&m, &p, &hp, types, ch, &e), SQ_OK);
    CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_Q8_0);
    CHECK_INT(types[find(&m, "token_embd.weight")], SQ_TYPE_Q5_0);
    CHECK(ch[find(&m, "output.weight")].overridden);
    p = params_for("Q4_K_M", false);
    p.leave_output_tensor = true;
    CHECK_INT(choose_all(&m, &p, &hp, types, ch, &e), SQ_OK);
    CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_F16);
    CHECK(!ch[find(&m, "output.weight")].quantizable);

    /* --tensor-type: every pattern is tried, the last match wins; layer counters unaffected */
    sq_tensor_type_override ov[] = {
        {"ffn_(up|gate)", SQ_TYPE_Q8_0},
        {"blk\\.1\\.ffn_up", SQ_TYPE_Q5_K},
        {"attn_v", SQ_TYPE_Q5_0},
    };
    p = params_for("Q4_K_M", false);
    p.overrides = ov;
    p.n_overrides = 3;
    CHECK_INT(choose_all(&m, &p, &hp, types, ch, &e), SQ_OK);
    CHECK_INT(types[find(&m, "blk.0.ffn_up.weight")], SQ_TYPE_Q8_0);
    CHECK_INT(types[find(&m, "blk.0.ffn_gate.weight")], SQ_TYPE_Q8_0);
    CHECK_INT(types[find(&m, "blk.1.ffn_up.weight")], SQ_TYPE_Q5_K);
    CHECK_INT(types[find(&m, "blk.2.attn_v.weight")], SQ_TYPE_Q5_0);
    CHECK(ch[find(&m, "blk.2.attn_v.weight")].overridden);
    CHECK_INT(types[find(&m, "blk.2.ffn_down.weight")], SQ_TYPE_Q6_K);
    CHECK_INT(types[find(&m, "blk.2.attn_q.weight")], SQ_TYPE_Q4_K);
    /* overrides also apply with --pure; norms are never touched */
    sq_tensor_type_override all[] = {{".*", SQ_TYPE_Q8_0}};
    p = params_for("Q4_K_M", false);
    p.pure = true;
    p.overrides = all;
    p.n_overrides = 1;
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(types[find(&m, "blk.0.attn_q.weight")], SQ_TYPE_Q8_0);
    CHECK_INT(types[find(&m, "blk.0.attn_norm.weight")], SQ_TYPE_F32);

    /* bad pattern, bad types: errors naming them */
    sq_tensor_type_override badre[] = {{"ffn_(up", SQ_TYPE_Q8_0}};
    p.overrides = badre;
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "ffn_(up");
    sq_tensor_type_override badty[] = {{"ffn", SQ_TYPE_Q8_1}};
    p.overrides = badty;
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "not usable for weights");
    p = params_for("Q4_K_M", false);
    p.output_tensor_type = 4;
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "--output-tensor-type");

    /* F16 / COPY files: no mixes */
    p = params_for("F16", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(types[find(&m, "output.weight")], SQ_TYPE_F16);
    CHECK_INT(types[find(&m, "blk.0.attn_norm.weight")], SQ_TYPE_F32);
    p = params_for("BF16", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, NULL, &e), SQ_OK);
    CHECK_INT(types[find(&m, "blk.0.ffn_down.weight")], SQ_TYPE_BF16);
    p = params_for("COPY", false);
    CHECK_INT(choose_all(&m, &p, &hp, types, ch, &e), SQ_OK);
    CHECK_INT(types[find(&m, "blk.0.ffn_down.weight")], SQ_TYPE_F16);
    CHECK(!ch[find(&m, "blk.0.ffn_down.weight")].quantizable);
}

static void test_not_quantized(void)
{
    const char *names[] = {"position_embd.weight", "blk.0.ffn_gate_inp.weight", "blk.0.attn_q.bias",
                           "blk.0.attn_q_norm.weight", "blk.0.ssm_conv1d.weight"};
    sq_qrules_params p = params_for("Q8_0", false);
    const sq_qrules_model hp = {"llama", 1, 8, 8, 0};
    sq_qrules *r = NULL;
    sq_error e = {0};
    CHECK_INT(sq_qrules_create(&p, &hp, names, 5, &r, &e), SQ_OK);
    int64_t ne[4] = {512, 512, 1, 1};
    for (int i = 0; i < 5; i++) {
        sq_qchoice c;
        CHECK_INT(sq_qrules_choose(r, names[i], ne, SQ_TYPE_F16, &c, &e), SQ_OK);
        CHECK_MSG(!c.quantizable && c.type == SQ_TYPE_F16, "%s stays F16", names[i]);
    }
    sq_qrules_free(r);
    sq_qrules_free(NULL);
}

int main(void)
{
    RUN(test_ftype_parse);
    RUN(test_order);
    RUN(test_demo_table);
    RUN(test_many_layers_gqa);
    RUN(test_70b_experts_tied);
    RUN(test_fallbacks);
    RUN(test_overrides);
    RUN(test_not_quantized);
    return harness_finish("ftype");
}
