/*
 * test_sqconfig.c — the SmarterQuant configuration file (spec sections 2 and
 * 3): relaxed JSON, positions in syntax errors, every validation rule with its
 * message, automatic fallback, and the metadata integer arrays (section 5).
 */
#include <ctype.h>
#include <unistd.h>

#include "harness.h"
#include "sq/sqconfig.h"
#include "sq/types.h"

/* Parses a NUL-terminated text; returns the status, leaves cfg and warnings. */
static sq_status parse(const char *text, sq_config **cfg, sq_warnings *w, sq_error *e)
{
    return sq_config_parse(text, strlen(text), "cfg.json", cfg, w, e);
}

/* Parses text and expects an error whose message contains needle. */
static void expect_parse_error(const char *text, const char *needle)
{
    sq_config *cfg = (sq_config *)1;
    sq_warnings w = { 0 };
    sq_error e = { 0 };
    sq_status st = parse(text, &cfg, &w, &e);
    CHECK_MSG(st != SQ_OK, "parse of <%s> should fail", text);
    CHECK(cfg == NULL);
    CHECK_CONTAINS(e.msg, needle);
    sq_warnings_free(&w);
}

static void test_relaxed_json(void)
{
    const char *text =
        "// SmarterQuant configuration\n"
        "{\n"
        "  /* first tensor: ids */\n"
        "  \"blk.0.attn_q.weight\": [[14, 13, 12, 6], [],],  // trailing comma in the pair\n"
        "  \"blk.0.ffn_up.weight\": [[\"q8_0\", \"Q4_K\", \"q6_k\", \"F16\"], [3, 0, 1, 2, /* c */ ]],\n"
        "  \"url\": [[0, 0, 0, 0], []], // a // inside \"a string\" below\n"
        "  \"a//b/*c*/\": [[1,1,1,1],[]],\n"
        "}\n";
    sq_config *cfg = NULL;
    sq_warnings w = { 0 };
    sq_error e = { 0 };
    CHECK_INT(parse(text, &cfg, &w, &e), SQ_OK);
    if (!cfg) {
        fprintf(stderr, "  %s\n", e.msg);
        return;
    }
    CHECK_INT(w.count, 0);
    CHECK_INT(sq_config_count(cfg), 4);
    const sq_config_entry *a = sq_config_entry_at(cfg, 0);
    CHECK_STR(a->name, "blk.0.attn_q.weight");
    CHECK(a->enabled);
    CHECK_INT(a->types[0], 14);
    CHECK_INT(a->types[3], 6);
    CHECK_INT(a->perm_len, 0);
    CHECK(a->perm == NULL);
    CHECK_INT(a->line, 4);
    CHECK_INT(a->column, 3);
    const sq_config_entry *b = sq_config_find(cfg, "blk.0.ffn_up.weight");
    CHECK(b != NULL && b == sq_config_entry_at(cfg, 1));
    if (b) {
        CHECK_INT(b->types[0], SQ_TYPE_Q8_0);
        CHECK_INT(b->types[1], SQ_TYPE_Q4_K);
        CHECK_INT(b->types[2], SQ_TYPE_Q6_K);
        CHECK_INT(b->types[3], SQ_TYPE_F16);
        CHECK_INT(b->perm_len, 4);
        CHECK_INT(b->perm[0], 3);
        CHECK_INT(b->perm[3], 2);
    }
    /* comment markers inside a key are part of the key */
    CHECK(sq_config_find(cfg, "a//b/*c*/") != NULL);
    CHECK(sq_config_find(cfg, "nope") == NULL);
    CHECK(sq_config_entry_at(cfg, 4) == NULL);
    CHECK_STR(sq_config_filename(cfg), "cfg.json");
    sq_config_free(cfg);
    sq_config_free(NULL);
    sq_warnings_free(&w);

    /* an empty object is a valid, empty configuration */
    CHECK_INT(parse("  {  } // nothing\n", &cfg, &w, &e), SQ_OK);
    CHECK_INT(sq_config_count(cfg), 0);
    sq_config_free(cfg);
}

static void test_syntax_errors(void)
{
    /* missing comma between entries: reported at the bad token's first character (line 3, column 3,
     * where "b" starts; jansson points at its last), saying where the comma is missing */
    static const char missing_comma[] = "{\n  \"a\": [[1,1,1,1], []]\n  \"b\": [[1,1,1,1], []]\n}\n";
    expect_parse_error(missing_comma, "cfg.json:3:3: syntax error");
    expect_parse_error(missing_comma, "a ',' missing at the end of line 2?");
    expect_parse_error("{\n  \"blk.0.attn_k.weight\": [[14, 13, 12, 12], []]\n  \"blk.0.attn_v.weight\": [[14, 13, 12, "
                       "12], []]\n}\n",
                       "cfg.json:3:3: syntax error");
    /* ... after a comment ending line 2, and within one line (before a number, before an array) */
    expect_parse_error("{\n  \"a\": [[1,1,1,1], []] // first\n  \"b\": [[1,1,1,1], []]\n}\n",
                       "cfg.json:3:3: syntax error");
    expect_parse_error("{\n  \"a\": [[1,1,1,1], []] // first\n  \"b\": [[1,1,1,1], []]\n}\n",
                       "a ',' missing at the end of line 2?");
    expect_parse_error("{\"a\": [[1,1,1 12], []]}", "cfg.json:1:15: syntax error");
    expect_parse_error("{\"a\": [[1,1,1 12], []]}", "a ',' missing before it?");
    expect_parse_error("{\n \"a\": [[1,1,1,1] []]}", "cfg.json:2:18: syntax error");
    /* position of a bad token after a block comment holding multi-byte characters:
     * the column counts characters of the original line */
    expect_parse_error("{\n  /* é è */ \"a\": [[1,1,1,1], []], x\n}", "cfg.json:2:");
    {
        sq_config *cfg = NULL;
        sq_error e = { 0 };
        parse("{\n  /* éè */ \"a\": [[1,1,1,1], []], x\n}", &cfg, NULL, &e);
        /* 'x' is the 34th character of line 2 */
        CHECK_CONTAINS(e.msg, "cfg.json:2:34: syntax error");
        sq_config_free(cfg);
    }
    expect_parse_error("{ \"a\": [[1,1,1,1], []] /* never closed\n", "cfg.json:1:24: syntax error: unterminated /*");
    expect_parse_error("{\"a\": [[1,1,1,1], []], \"a\": [[1,1,1,1], []]}", "duplicate object key");
    expect_parse_error("", "cfg.json:1:1: syntax error");
    expect_parse_error("{\"a\": [[1,1,1,1], []]", "cfg.json:1:");
    expect_parse_error("{\"a\": [[1,1,1,1], [],,]}", "syntax error");
    expect_parse_error("[1, 2]", "must be a JSON object");
    expect_parse_error("{\"a\": 5}", "tensor a: value must be [types, perm], got an integer");
    expect_parse_error("{\"a\": [[1,1,1,1]]}", "tensor a: value must be [types, perm], an array of 2, got 1");
    expect_parse_error("{\"a\": [5, []]}", "tensor a: types must be an array");
    expect_parse_error("{\"a\": [[1,1,1,1], {}]}", "tensor a: perm must be an array");
    expect_parse_error("{\"a\": [[1,1,1.5,1], []]}", "tensor a: types[2]: expected a type id or name, got a real");
    expect_parse_error("{\"a\": [[1,1,1,1], [0, \"1\"]]}", "tensor a: perm[1]: expected a column index");
    expect_parse_error("{\"a\": [[1,1,1,1], [0, -1]]}", "tensor a: perm[1]: column index -1 is out of range");
    /* the message carries the key's position */
    expect_parse_error("{\n\n    \"blk.3.x\": [[1,1,1,1], {}]}", "cfg.json:3:5: tensor blk.3.x");
}

static void test_type_ids(void)
{
    char text[200];
    /* unknown and removed ids */
    const int bad[] = { 4, 5, 31, 32, 33, 36, 37, 38, 43, 99, -1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "{\"t\": [[8, 8, %d, 8], []]}", bad[i]);
        char want[100];
        snprintf(want, sizeof want, "tensor t: types[2]: type id %d is unknown or removed", bad[i]);
        expect_parse_error(text, want);
    }
    /* activation-only and non-float types */
    const int notw[] = { 9, 15, 24, 25, 26, 27, 28 };
    for (size_t i = 0; i < sizeof notw / sizeof notw[0]; i++) {
        snprintf(text, sizeof text, "{\"t\": [[%d, 8, 8, 8], []]}", notw[i]);
        char want[120];
        snprintf(want, sizeof want, "tensor t: types[0]: type %s (%d) is not usable for weights",
                 sq_type_name(notw[i]), notw[i]);
        expect_parse_error(text, want);
    }
    expect_parse_error("{\"t\": [[\"q8_1\", 8, 8, 8], []]}", "type q8_1 (9) is not usable for weights");
    expect_parse_error("{\"t\": [[8, \"q4_k_m\", 8, 8], []]}", "tensor t: types[1]: unknown type name \"q4_k_m\"");
    /* every weight type of the table is accepted, by id and by upper-case name */
    int accepted = 0, weights = 0;
    for (int id = 0; id < SQ_TYPE_COUNT; id++) {
        const sq_type_info *ti = sq_type_info_get(id);
        if (!ti || !ti->is_weight) continue;
        weights++;
        char up[32];
        size_t k = 0;
        for (; ti->name[k] && k + 1 < sizeof up; k++) up[k] = (char)toupper((unsigned char)ti->name[k]);
        up[k] = '\0';
        snprintf(text, sizeof text, "{\"t\": [[%d, \"%s\", 0, 1], []]}", id, up);
        sq_config *cfg = NULL;
        sq_error e = { 0 };
        if (parse(text, &cfg, NULL, &e) == SQ_OK && sq_config_entry_at(cfg, 0)->types[0] == id &&
            sq_config_entry_at(cfg, 0)->types[1] == id)
            accepted++;
        else
            fprintf(stderr, "  type %d: %s\n", id, e.msg);
        sq_config_free(cfg);
    }
    CHECK_INT(accepted, weights);
    CHECK_INT(weights, 28 + 15); /* ggml's weight types and ik_llama.cpp's */
}

static void test_not_processed(void)
{
    sq_config *cfg = NULL;
    sq_warnings w = { 0 };
    sq_error e = { 0 };
    CHECK_INT(parse("{\"x\": [[], []], \"y\": [[8, 8, 8], []], \"z\": [[8,8,8,8,8], []]}", &cfg, &w, &e), SQ_OK);
    CHECK_INT(w.count, 3);
    if (w.count == 3) {
        CHECK_CONTAINS(w.items[0], "tensor x: not SmarterQuant-processed: types is empty");
        CHECK_CONTAINS(w.items[1], "tensor y: not SmarterQuant-processed: types has 3 entries, not 4");
        CHECK_CONTAINS(w.items[2], "tensor z: not SmarterQuant-processed: types has 5 entries, not 4");
    }
    CHECK(cfg && !sq_config_entry_at(cfg, 0)->enabled);
    CHECK(cfg && !sq_config_entry_at(cfg, 1)->enabled);
    /* disabled entries are skipped by validation (they stay ordinary tensors) */
    sq_config_tensor model[] = { { "x", 100, 4, false }, { "y", 100, 4, false }, { "z", 100, 4, false } };
    CHECK_INT(sq_config_validate(cfg, model, 3, NULL, &w, &e), SQ_OK);
    /* with strict, types of 1-3 or 5+ entries are an error (a typo, not a choice); an empty one stays a
     * way to leave a tensor ordinary */
    sq_config_options strict = { .strict = true };
    CHECK_INT(sq_config_validate(cfg, model, 3, &strict, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "cfg.json:1:17: tensor y: types has 3 entries, not 4 (an error with --strict)");
    sq_config_free(cfg);
    sq_warnings_free(&w);
    CHECK_INT(w.count, 0);
    CHECK_INT(parse("{\"x\": [[], []]}", &cfg, &w, &e), SQ_OK);
    CHECK_INT(sq_config_validate(cfg, model, 3, &strict, &w, &e), SQ_OK);
    sq_config_free(cfg);
    sq_warnings_free(&w);
}

/* Parses text, validates against model with opt; returns the status. */
static sq_status validate(const char *text, const sq_config_tensor *model, int64_t n, const sq_config_options *opt,
                          sq_config **cfg_out, sq_warnings *w, sq_error *e)
{
    sq_config *cfg = NULL;
    sq_status st = parse(text, &cfg, w, e);
    if (st == SQ_OK) st = sq_config_validate(cfg, model, n, opt, w, e);
    if (cfg_out) *cfg_out = cfg;
    else sq_config_free(cfg);
    return st;
}

static void test_worked_example(void)
{
    /* spec section 4: C = 1728, types [14, 13, 12, 6] -> row_bytes 1190, 640 rows -> 761,600 bytes */
    sq_config_tensor model[] = { { "blk.0.ffn_down.weight", 1728, 640, false } };
    sq_config *cfg = NULL;
    sq_warnings w = { 0 };
    sq_error e = { 0 };
    CHECK_INT(validate("{\"blk.0.ffn_down.weight\": [[14, 13, 12, 6], []]}", model, 1, NULL, &cfg, &w, &e), SQ_OK);
    CHECK_INT(w.count, 0);
    if (cfg) {
        const sq_config_entry *en = sq_config_entry_at(cfg, 0);
        size_t rb = 0;
        CHECK_INT(sq_mixed_row_bytes(en->types_used, 1728, &rb, &e), SQ_OK);
        CHECK_INT(rb, 1190);
        CHECK_INT(rb * 640, 761600);
    }
    sq_config_free(cfg);

    /* a Q4_K in the fourth slot is refused: its blocks cannot cover the final 192 columns */
    CHECK_INT(validate("{\"blk.0.ffn_down.weight\": [[14, 13, 6, 12], []]}", model, 1, NULL, NULL, &w, &e),
              SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "cfg.json:1:2: tensor blk.0.ffn_down.weight: type q4_K (12) in slot 4 has blocks of 256 "
                          "columns, which do not divide segment 6 (columns 1536..1727, 192 columns)");

    /* with automatic fallback: llama.cpp's Q4_K -> Q5_0, said in a warning, recorded in types_used */
    sq_config_options fb = { .auto_fallback = true };
    CHECK_INT(validate("{\"blk.0.ffn_down.weight\": [[14, 13, 6, 12], []]}", model, 1, &fb, &cfg, &w, &e), SQ_OK);
    CHECK_INT(w.count, 1);
    if (w.count) CHECK_CONTAINS(w.items[0], "tensor blk.0.ffn_down.weight: type q4_K in slot 4 does not fit "
                                            "segment 6 of 192 columns; using fallback q5_0 (6) for slot 4");
    if (cfg) {
        const sq_config_entry *en = sq_config_entry_at(cfg, 0);
        CHECK_INT(en->types[3], SQ_TYPE_Q4_K);
        CHECK_INT(en->types_used[3], SQ_TYPE_Q5_0);
        CHECK_INT(en->types_used[0], SQ_TYPE_Q6_K);
        size_t rb = 0;
        CHECK_INT(sq_mixed_row_bytes(en->types_used, 1728, &rb, &e), SQ_OK);
        CHECK_INT(rb, 210 + 176 + 22 * 8 + 3 * 176 + 132);
    }
    sq_config_free(cfg);
    sq_warnings_free(&w);
}

static void test_fallback_table(void)
{
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q4_K, 192), SQ_TYPE_Q5_0);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q5_K, 192), SQ_TYPE_Q5_1);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q6_K, 128), SQ_TYPE_Q8_0);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q2_K, 64), SQ_TYPE_Q4_0);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q3_K, 64), SQ_TYPE_Q4_0);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_IQ4_XS, 32), SQ_TYPE_IQ4_NL);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_IQ2_XXS, 96), SQ_TYPE_IQ4_NL);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_TQ1_0, 96), SQ_TYPE_Q4_0);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q1_0, 96), SQ_TYPE_Q4_0);
    /* nothing with 32-blocks fits: F16, as llama.cpp */
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q4_K, 200), SQ_TYPE_F16);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q8_0, 40), SQ_TYPE_F16);
    /* a type that fits stays */
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q4_K, 256), SQ_TYPE_Q4_K);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_Q4_0, 64), SQ_TYPE_Q4_0);
    CHECK_INT(sq_config_fallback_type(SQ_TYPE_F32, 7), SQ_TYPE_F32);
    /* every weight type and every short length: the fallback fits */
    int bad = 0;
    for (int id = 0; id < SQ_TYPE_COUNT; id++) {
        const sq_type_info *ti = sq_type_info_get(id);
        if (!ti || !ti->is_weight) continue;
        for (int len = 1; len <= 256; len++) {
            int f = sq_config_fallback_type(id, len);
            const sq_type_info *fi = sq_type_info_get(f);
            if (!fi || !fi->is_weight || len % fi->block_size != 0 || (f != id && fi->needs_imatrix)) bad++;
        }
    }
    CHECK_INT(bad, 0);
}

static void test_validation_rules(void)
{
    sq_config_tensor model[] = {
        { "w600", 600, 8, false },  /* segments 256, 256, 88: slot 4 unused */
        { "w512", 512, 8, false },  /* two full segments */
        { "w1024", 1024, 8, true }, /* has importance weights */
        { "w4", 4, 3, false },
    };
    sq_warnings w = { 0 };
    sq_error e = { 0 };
    sq_config_options strict = { .strict = true };

    /* unknown tensor: a warning by default, an error with strict */
    CHECK_INT(validate("{\"nope.weight\": [[8,8,8,8], []]}", model, 4, NULL, NULL, &w, &e), SQ_OK);
    CHECK_INT(w.count, 1);
    if (w.count) CHECK_CONTAINS(w.items[0], "tensor nope.weight: the model has no tensor of this name; entry ignored");
    sq_warnings_free(&w);
    CHECK_INT(validate("{\"nope.weight\": [[8,8,8,8], []]}", model, 4, &strict, NULL, &w, &e), SQ_ENOTFOUND);
    CHECK_CONTAINS(e.msg, "tensor nope.weight: the model has no tensor of this name");

    /* block size of a middle slot: segment 2 of w600 has 88 columns */
    CHECK_INT(validate("{\"w600\": [[8, 8, 2, 12], []]}", model, 4, NULL, NULL, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "tensor w600: type q4_0 (2) in slot 3 has blocks of 32 columns, which do not divide "
                          "segment 2 (columns 512..599, 88 columns)");
    /* ... and the unused fourth slot (a Q4_K that could not fit) is not checked */
    CHECK_INT(validate("{\"w600\": [[8, 8, 0, 12], []]}", model, 4, NULL, NULL, &w, &e), SQ_OK);
    /* fallback for 88 columns: nothing with 32-blocks fits, so F16 */
    sq_config *cfg = NULL;
    sq_config_options fb = { .auto_fallback = true };
    CHECK_INT(validate("{\"w600\": [[8, 8, 2, 12], []]}", model, 4, &fb, &cfg, &w, &e), SQ_OK);
    CHECK(cfg && sq_config_entry_at(cfg, 0)->types_used[2] == SQ_TYPE_F16);
    CHECK(cfg && sq_config_entry_at(cfg, 0)->types_used[3] == SQ_TYPE_Q4_K);
    CHECK_INT(w.count, 1);
    if (w.count) CHECK_CONTAINS(w.items[0], "using fallback f16 (1) for slot 3");
    sq_config_free(cfg);
    sq_warnings_free(&w);
    /* a tiny tensor: one segment of 4 columns */
    CHECK_INT(validate("{\"w4\": [[8, 8, 8, 8], []]}", model, 4, NULL, NULL, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "segment 0 (columns 0..3, 4 columns)");
    CHECK_INT(validate("{\"w4\": [[\"f32\", 8, 8, 8], [3,2,1,0]]}", model, 4, NULL, NULL, &w, &e), SQ_OK);

    /* importance matrix required */
    CHECK_INT(validate("{\"w512\": [[8, \"iq2_xxs\", 8, 8], []]}", model, 4, NULL, NULL, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "tensor w512: type iq2_xxs (16) in slot 2 needs an importance matrix, and none was given");
    CHECK_INT(validate("{\"w512\": [[8, 8, 8, \"iq1_s\"], []]}", model, 4, NULL, NULL, &w, &e), SQ_OK); /* unused */
    CHECK_INT(validate("{\"w512\": [[\"iq2_xs\", 8, 8, 8], []]}", model, 4, NULL, NULL, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "iq2_xs (17) in slot 1 needs an importance matrix");
    CHECK_INT(validate("{\"w1024\": [[8, 8, 8, \"iq2_xxs\"], []]}", model, 4, NULL, NULL, &w, &e), SQ_OK);

    /* permutations */
    CHECK_INT(validate("{\"w4\": [[0,0,0,0], [0,1,2]]}", model, 4, NULL, NULL, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "tensor w4: permutation has 3 entries, but the tensor has 4 columns");
    CHECK_INT(validate("{\"w4\": [[0,0,0,0], [0,1,2,1]]}", model, 4, NULL, NULL, &w, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "tensor w4: permutation index 3: value 1 is a duplicate (already at index 1)");
    CHECK_INT(validate("{\"w4\": [[0,0,0,0], [0,4,2,1]]}", model, 4, NULL, NULL, &w, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "tensor w4: permutation index 1: value 4 is out of range 0..3");
    CHECK_INT(validate("{\"w4\": [[0,0,0,0], [2,3,0,1]]}", model, 4, NULL, NULL, &w, &e), SQ_OK);

    /* the first error in file order is the one reported */
    CHECK_INT(validate("{\"w4\": [[0,0,0,0], [2,3,0,1]], \"w512\": [[16,8,8,8],[]], \"w4x\": [[0,0,0,0],[]]}",
                       model, 4, &strict, NULL, &w, &e),
              SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "tensor w512");
    CHECK_INT(w.count, 0);
    sq_warnings_free(&w);
}

static void test_load_file(void)
{
    char dir[256], path[300];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(path, sizeof path, "%s/%s", dir, SQ_CONFIG_DEFAULT_NAME);
    sq_config *cfg = NULL;
    sq_error e = { 0 };
    CHECK_INT(sq_config_load(path, &cfg, NULL, &e), SQ_ENOTFOUND);
    CHECK_CONTAINS(e.msg, path);
    FILE *f = fopen(path, "w");
    if (!f) SKIP("cannot write %s", path);
    fputs("{\n  // a comment\n  \"t\": [[1, 1, 1, 1], [1, 0]],\n}\n", f);
    fclose(f);
    CHECK_INT(sq_config_load(path, &cfg, NULL, &e), SQ_OK);
    CHECK_INT(sq_config_count(cfg), 1);
    CHECK_STR(sq_config_filename(cfg), path);
    sq_config_tensor model[] = { { "t", 3, 1, false } };
    CHECK_INT(sq_config_validate(cfg, model, 1, NULL, NULL, &e), SQ_EINVAL);
    char want[400];
    snprintf(want, sizeof want, "%s:3:3: tensor t: permutation has 2 entries, but the tensor has 3 columns", path);
    CHECK_CONTAINS(e.msg, want);
    sq_config_free(cfg);
    f = fopen(path, "w");
    fputs("{\n  \"t\": [[1, 1, 1, 1], [1, 0]]\n  oops\n}\n", f);
    fclose(f);
    CHECK_INT(sq_config_load(path, &cfg, NULL, &e), SQ_EFORMAT);
    snprintf(want, sizeof want, "%s:3:3: syntax error", path);
    CHECK_CONTAINS(e.msg, want);
    unlink(path);
    rmdir(dir);
}

static void test_int_arrays(void)
{
    int32_t v[8];
    int64_t n = -1;
    sq_error e = { 0 };
    const char *ok = " [3, 0,1 ,2]\n";
    CHECK_INT(sq_parse_int_array_json(ok, strlen(ok), v, 8, &n, &e), SQ_OK);
    CHECK_INT(n, 4);
    CHECK(v[0] == 3 && v[1] == 0 && v[2] == 1 && v[3] == 2);
    CHECK_INT(sq_parse_int_array_json("[]", 2, v, 8, &n, &e), SQ_OK);
    CHECK_INT(n, 0);
    CHECK_INT(sq_parse_int_array_json("[ ]", 3, NULL, 0, &n, &e), SQ_OK);
    CHECK_INT(n, 0);
    /* counting only */
    CHECK_INT(sq_parse_int_array_json("[8,14,13,12]", 12, NULL, 0, &n, &e), SQ_OK);
    CHECK_INT(n, 4);
    CHECK_INT(sq_parse_int_array_json("[2147483647]", 12, v, 1, &n, &e), SQ_OK);
    CHECK_INT(v[0], 2147483647);
    /* not NUL-terminated: only len bytes count */
    CHECK_INT(sq_parse_int_array_json("[1,2]999", 5, v, 8, &n, &e), SQ_OK);
    CHECK_INT(n, 2);

    struct {
        const char *text, *msg;
    } bad[] = {
        { "", "offset 0: expected '['" },
        { "3", "offset 0: expected '['" },
        { "[", "offset 1: expected a non-negative integer" },
        { "[1", "offset 2: expected ',' or ']'" },
        { "[1,]", "offset 3: expected a non-negative integer" },
        { "[-1]", "offset 1: expected a non-negative integer" },
        { "[1.5]", "offset 2: expected ',' or ']'" },
        { "[01]", "offset 1: leading zero" },
        { "[2147483648]", "offset 1: value exceeds 2147483647" },
        { "[99999999999999999999999]", "value exceeds" },
        { "[1] x", "offset 4: unexpected text after ']'" },
        { "[1,2,3]", "more than 2 elements" },
        { "[\"1\"]", "offset 1: expected a non-negative integer" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sq_error_clear(&e);
        CHECK_MSG(sq_parse_int_array_json(bad[i].text, strlen(bad[i].text), v, 2, &n, &e) != SQ_OK, "<%s>",
                  bad[i].text);
        CHECK_CONTAINS(e.msg, bad[i].msg);
        CHECK_CONTAINS(e.msg, "integer array");
    }

    char buf[64];
    const int32_t p[] = { 3, 0, 1, 2 };
    CHECK_INT(sq_format_int_array_json(p, 4, buf, sizeof buf), 9);
    CHECK_STR(buf, "[3,0,1,2]");
    CHECK_INT(sq_format_int_array_json(p, 0, buf, sizeof buf), 2);
    CHECK_STR(buf, "[]");
    const int types[4] = { 8, 14, 13, 12 };
    CHECK_INT(sq_format_types_json(types, buf, sizeof buf), 12);
    CHECK_STR(buf, "[8,14,13,12]");
    /* truncation: snprintf-style */
    CHECK_INT(sq_format_types_json(types, buf, 5), 12);
    CHECK_STR(buf, "[8,1");
    CHECK_INT(sq_format_types_json(types, NULL, 0), 12);
    /* round trip of a long permutation */
    enum { N = 3000 };
    static int32_t big[N], back[N];
    for (int i = 0; i < N; i++) big[i] = (int32_t)((i * 1237) % N);
    size_t need = sq_format_int_array_json(big, N, NULL, 0);
    char *txt = malloc(need + 1);
    CHECK_INT(sq_format_int_array_json(big, N, txt, need + 1), need);
    CHECK_INT(sq_parse_int_array_json(txt, need, back, N, &n, &e), SQ_OK);
    CHECK_INT(n, N);
    CHECK(memcmp(big, back, sizeof big) == 0);
    free(txt);
}

int main(void)
{
    RUN(test_relaxed_json);
    RUN(test_syntax_errors);
    RUN(test_type_ids);
    RUN(test_not_processed);
    RUN(test_worked_example);
    RUN(test_fallback_table);
    RUN(test_validation_rules);
    RUN(test_load_file);
    RUN(test_int_arrays);
    return harness_finish("sqconfig");
}
