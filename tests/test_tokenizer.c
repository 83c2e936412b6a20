/*
 * test_tokenizer.c — the tokenizers.
 *
 * Small built-in vocabularies check the mechanics whose answer can be worked
 * out by hand (merge order by score and by rank, byte fallback, the SPM space
 * prefix, special-token splitting, detokenize, the pre-tokenizer word cuts,
 * bad input). With ../shared present, every vocabulary of ../shared/vocab
 * must give exactly llama.cpp's ids for its .inp cases (llama.cpp's own
 * test-tokenizer-0 data), and the demo model's vocabulary must round-trip
 * every line of heldout.txt.
 */
#include <dirent.h>
#include <unistd.h>
#include <string.h>

#include "engine/tok_internal.h"
#include "harness.h"
#include "sq/gguf.h"
#include "sq/tokenizer.h"

/* ---------------------------------------------------------- tiny SPM vocab */

#define SPM_FIRST_WORD (3 + 256)
static const char *const spm_words[] = {"\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab",
                                        "\xE2\x96\x81" "ab", "<|user|>"};
static const float spm_word_scores[] = {-4, -3, -3, -3, -1, -2, -1.5f, 0};

#define SPM_N_TOKENS (SPM_FIRST_WORD + 8)

/* The tiny SPM vocabulary's table: <unk> <s> </s>, the 256 byte tokens,
 * then spm_words (the last one user-defined). */
static void spm_table(const char **toks, float *scores, int32_t *types)
{
    static char bytes[256][7];
    memset(scores, 0, SPM_N_TOKENS * sizeof *scores);
    toks[0] = "<unk>", types[0] = SQ_TOKEN_TYPE_UNKNOWN;
    toks[1] = "<s>", types[1] = SQ_TOKEN_TYPE_CONTROL;
    toks[2] = "</s>", types[2] = SQ_TOKEN_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = bytes[b];
        types[3 + b] = SQ_TOKEN_TYPE_BYTE;
    }
    for (int i = 0; i < 8; i++) {
        toks[SPM_FIRST_WORD + i] = spm_words[i];
        scores[SPM_FIRST_WORD + i] = spm_word_scores[i];
        types[SPM_FIRST_WORD + i] = i == 7 ? SQ_TOKEN_TYPE_USER_DEFINED : SQ_TOKEN_TYPE_NORMAL;
    }
}

static sq_vocab *make_spm(const char *dup)
{
    enum { N = SPM_N_TOKENS };
    const char *toks[N];
    float scores[N];
    int32_t types[N];
    spm_table(toks, scores, types);
    if (dup) toks[SPM_FIRST_WORD + 3] = dup;
    sq_vocab_desc d;
    sq_vocab_desc_init(&d);
    d.model = "llama";
    d.n_tokens = N;
    d.tokens = toks;
    d.scores = scores;
    d.token_types = types;
    sq_vocab *v = NULL;
    sq_error e = {0};
    if (sq_vocab_create(&d, &v, &e) != SQ_OK && !dup) fprintf(stderr, "make_spm: %s\n", e.msg);
    return v;
}

/* Tokenizes and formats the ids as "1 2 3". */
static const char *ids_of(const sq_vocab *v, const char *text, bool add_special, bool parse_special)
{
    static char buf[4096];
    sq_token *ids = NULL;
    size_t n = 0;
    sq_error e = {0};
    buf[0] = 0;
    if (sq_tokenize(v, text, strlen(text), add_special, parse_special, &ids, &n, &e) != SQ_OK) return "ERROR";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 16 < sizeof buf; i++) o += (size_t)snprintf(buf + o, 16, i ? " %d" : "%d", ids[i]);
    free(ids);
    return buf;
}

/* detokenize(tokenize(text)) == text */
static bool round_trips(const sq_vocab *v, const char *text, size_t len)
{
    sq_token *ids = NULL;
    size_t n = 0, ol = 0;
    char *back = NULL;
    sq_error e = {0};
    bool ok = sq_tokenize(v, text, len, false, false, &ids, &n, &e) == SQ_OK &&
              sq_detokenize(v, ids, n, false, false, &back, &ol, &e) == SQ_OK && ol == len &&
              memcmp(back, text, len) == 0;
    free(ids);
    free(back);
    return ok;
}

static void test_spm_merges(void)
{
    sq_vocab *v = make_spm(NULL);
    CHECK(v != NULL);
    if (!v) return;
    const int W = SPM_FIRST_WORD;
    char want[256];
    /* "▁ab▁c": ▁a (-1) merges first, then ▁a+b = ▁ab (-1.5); ▁ and c stay */
    snprintf(want, sizeof want, "%d %d %d", W + 6, W + 0, W + 3);
    CHECK_STR(ids_of(v, "ab c", false, false), want);
    /* add_special: BOS first (add_bos defaults to true for llama) */
    snprintf(want, sizeof want, "1 %d", W + 4);
    CHECK_STR(ids_of(v, "a", true, false), want);
    /* byte fallback: é is C3 A9 */
    snprintf(want, sizeof want, "%d %d %d", W + 0, 3 + 0xC3, 3 + 0xA9);
    CHECK_STR(ids_of(v, "\xC3\xA9", false, false), want);
    /* invalid UTF-8 falls back byte by byte too */
    snprintf(want, sizeof want, "%d %d %d", W + 0, 3 + 0xFF, 3 + 0x80);
    CHECK_STR(ids_of(v, "\xFF\x80", false, false), want);
    CHECK_STR(ids_of(v, "", false, false), "");
    CHECK_STR(ids_of(v, "", true, false), "1");
    /* control tokens in the text: bytes unless parse_special */
    snprintf(want, sizeof want, "%d %d %d %d", W + 0, 3 + '<', 3 + 's', 3 + '>');
    CHECK_STR(ids_of(v, "<s>", false, false), want);
    /* parsed: the text after a special token gets the space prefix again */
    snprintf(want, sizeof want, "%d 1 %d", W + 4, W + 4);
    CHECK_STR(ids_of(v, "a<s>a", false, true), want);
    /* user-defined tokens are always split out */
    snprintf(want, sizeof want, "%d %d %d", W + 4, W + 7, W + 4);
    CHECK_STR(ids_of(v, "a<|user|>a", false, false), want);

    CHECK(round_trips(v, "ab c", 4));
    CHECK(round_trips(v, " a  b\n\xC3\xA9\xE2\x82\xAC", 12));
    CHECK(round_trips(v, "\xF0\x9F\xA6\x99 x \xE2\x82", 8)); /* a cut-off character comes back as bytes */
    /* a literal U+2581 in the text is a space for SPM (as in llama.cpp) */
    CHECK(!round_trips(v, "a\xE2\x96\x81", 4));

    size_t pl;
    const char *p = sq_vocab_piece(v, W + 6, false, &pl);
    CHECK(pl == 3 && memcmp(p, " ab", 3) == 0);
    p = sq_vocab_piece(v, 3 + 'Q', false, &pl);
    CHECK(pl == 1 && p[0] == 'Q');
    sq_vocab_piece(v, 1, false, &pl);
    CHECK_INT(pl, 0);
    p = sq_vocab_piece(v, 1, true, &pl);
    CHECK(pl == 3 && memcmp(p, "<s>", 3) == 0);

    /* detokenize: BOS removed with remove_special, rendered with unparse_special */
    sq_token t[3] = {1, W + 4, 2};
    char *s = NULL;
    size_t sl = 0;
    sq_error e = {0};
    CHECK_INT(sq_detokenize(v, t, 2, true, false, &s, &sl, &e), SQ_OK);
    CHECK_STR(s, " a"); /* llama.cpp keeps the space once a BOS was removed */
    free(s);
    CHECK_INT(sq_detokenize(v, t, 3, false, true, &s, &sl, &e), SQ_OK);
    CHECK_STR(s, "<s> a</s>");
    free(s);
    sq_token bad = 99999;
    CHECK_INT(sq_detokenize(v, &bad, 1, false, false, &s, &sl, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "99999");

    CHECK_INT(sq_vocab_bos(v), 1);
    CHECK_INT(sq_vocab_eos(v), 2);
    CHECK_INT(sq_vocab_unk(v), 0);
    CHECK(sq_vocab_is_eog(v, 2));
    CHECK(!sq_vocab_is_eog(v, 1));
    CHECK_INT(sq_vocab_find(v, "ab", 2), W + 5);
    CHECK_INT(sq_vocab_find(v, "abc", 3), SQ_TOKEN_NULL);
    CHECK_INT(sq_vocab_token_type(v, 5), SQ_TOKEN_TYPE_BYTE);
    sq_vocab_free(v);
    sq_vocab_free(NULL);
}

static void test_bad_vocab(void)
{
    CHECK(make_spm("ab") == NULL); /* "ab" twice */
    sq_vocab_desc d;
    sq_vocab_desc_init(&d);
    const char *toks[] = {"a", "b"};
    d.tokens = toks;
    d.n_tokens = 2;
    sq_vocab *v = NULL;
    sq_error e = {0};
    d.model = "t5";
    CHECK_INT(sq_vocab_create(&d, &v, &e), SQ_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "'t5'");
    d.model = "gpt2";
    d.pre = "chatglm-bpe";
    CHECK_INT(sq_vocab_create(&d, &v, &e), SQ_EUNSUPPORTED);
    CHECK_CONTAINS(e.msg, "'chatglm-bpe'");
    d.pre = "gpt-2";
    CHECK_INT(sq_vocab_create(&d, &v, &e), SQ_EFORMAT); /* no merges */
    CHECK_CONTAINS(e.msg, "merges");
    d.model = "llama";
    d.bos = 7;
    CHECK_INT(sq_vocab_create(&d, &v, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "BOS");
    d.bos = SQ_TOKEN_DEFAULT; /* default 1 is in range */
    d.n_tokens = 1;           /* ... but not any more: add_bos without BOS */
    CHECK_INT(sq_vocab_create(&d, &v, &e), SQ_EFORMAT);
    CHECK_CONTAINS(e.msg, "add_bos");
    CHECK(v == NULL);
}

/* --------------------------------------------------------- tiny BPE vocab */

/* The 256 byte characters, then a few merged pieces. */
static sq_vocab *make_bpe(const char *pre, char storage[256][4])
{
    static const char *const extra[] = {"he", "\xC4\xA0t", "\xC4\xA0the", "ll", "llo", "<|eot_id|>"};
    static const char *const merges[] = {"h e", "\xC4\xA0 t", "\xC4\xA0t he", "l l", "ll o"};
    const char *toks[256 + 6];
    int32_t types[256 + 6];
    for (int b = 0; b < 256; b++) {
        size_t l = sq__utf8_encode(sq__byte_to_cpt((unsigned)b), storage[b]);
        storage[b][l] = 0;
        toks[b] = storage[b];
        types[b] = SQ_TOKEN_TYPE_NORMAL;
    }
    for (int i = 0; i < 6; i++) {
        toks[256 + i] = extra[i];
        types[256 + i] = i == 5 ? SQ_TOKEN_TYPE_CONTROL : SQ_TOKEN_TYPE_NORMAL;
    }
    sq_vocab_desc d;
    sq_vocab_desc_init(&d);
    d.model = "gpt2";
    d.pre = pre;
    d.n_tokens = 256 + 6;
    d.tokens = toks;
    d.token_types = types;
    d.n_merges = 5;
    d.merges = merges;
    d.bos = 0;
    d.eos = 256 + 5;
    sq_vocab *v = NULL;
    sq_error e = {0};
    if (sq_vocab_create(&d, &v, &e) != SQ_OK) fprintf(stderr, "make_bpe: %s\n", e.msg);
    return v;
}

static void test_bpe_merges(void)
{
    char storage[256][4];
    sq_vocab *v = make_bpe("gpt-2", storage);
    CHECK(v != NULL);
    if (!v) return;
    CHECK_INT(sq_vocab_get_pre(v), SQ_VOCAB_PRE_GPT2);
    /* " the" → Ġthe by ranks 0,1,2; " hello" → Ġ he llo (he first, then ll, llo) */
    char want[128];
    /* the byte tokens are in byte order: "Ġ" (byte 0x20) is token 32 */
    snprintf(want, sizeof want, "%d %d %d %d", 256 + 2, 32, 256 + 0, 256 + 4);
    CHECK_STR(ids_of(v, " the hello", false, false), want);
    /* no add_bos for gpt-2 pre; control token parsed only when asked */
    snprintf(want, sizeof want, "%d", 256 + 5);
    CHECK_STR(ids_of(v, "<|eot_id|>", true, true), want);
    CHECK(sq_vocab_is_eog(v, 256 + 5));
    CHECK(round_trips(v, "\x01\x7F hello  world\n\n\xC3\xA9", 19));
    size_t pl;
    const char *p = sq_vocab_piece(v, 256 + 2, false, &pl);
    CHECK(pl == 4 && memcmp(p, " the", 4) == 0);
    p = sq_vocab_piece(v, 0x0A, false, &pl);
    CHECK(pl == 1 && p[0] == '\n');
    /* detokenize cleans " ," like llama.cpp's byte-level vocabularies */
    sq_token t[3] = {' ', ',', 'x'};
    char *s = NULL;
    size_t sl;
    sq_error e = {0};
    CHECK_INT(sq_detokenize(v, t, 3, false, false, &s, &sl, &e), SQ_OK);
    CHECK_STR(s, ",x");
    free(s);
    sq_vocab_free(v);

    v = make_bpe("llama-bpe", storage);
    CHECK(v != NULL);
    if (!v) return;
    CHECK(sq_vocab_add_bos(v)); /* llama3 pre-tokenizer turns add_bos on */
    /* ignore_merges: a word that is a piece is taken whole */
    snprintf(want, sizeof want, "0 %d", 256 + 4);
    CHECK_STR(ids_of(v, "llo", true, false), want);
    sq_vocab_free(v);
}

/* Word cuts of the pre-tokenizers, written as "|"-separated words. */
static const char *words_of(sq_vocab_pre pre, const char *text)
{
    static char buf[1024];
    uint32_t cps[256], lens[256], scratch[256];
    size_t n = 0, len = strlen(text);
    for (size_t pos = 0; pos < len;) cps[n++] = sq__utf8_decode((const unsigned char *)text, len, &pos);
    size_t nw = sq__pretok_split(pre, cps, n, lens, scratch), o = 0, c = 0;
    for (size_t w = 0; w < nw; w++) {
        if (w) buf[o++] = '|';
        for (uint32_t k = 0; k < lens[w]; k++) o += sq__utf8_encode(cps[c++], buf + o);
    }
    buf[o] = 0;
    return buf;
}

static void test_utf8_tail(void)
{
    CHECK_INT(sq_utf8_incomplete_tail("abc", 3), 0);
    CHECK_INT(sq_utf8_incomplete_tail("", 0), 0);
    CHECK_INT(sq_utf8_incomplete_tail("a\xC3", 2), 1);
    CHECK_INT(sq_utf8_incomplete_tail("a\xC3\xA9", 3), 0);
    CHECK_INT(sq_utf8_incomplete_tail("\xE2\x96", 2), 2);
    CHECK_INT(sq_utf8_incomplete_tail("\xF0\x9F\xA6", 3), 3);
    CHECK_INT(sq_utf8_incomplete_tail("\xF0\x9F\xA6\x99", 4), 0);
    CHECK_INT(sq_utf8_incomplete_tail("\x80\x80", 2), 0);
    CHECK_INT(sq_utf8_incomplete_tail("x\xFF", 2), 0);
}

static void test_pretokenizers(void)
{
    const sq_vocab_pre L3 = SQ_VOCAB_PRE_LLAMA3, G2 = SQ_VOCAB_PRE_GPT2;
    CHECK_STR(words_of(L3, "Hello world"), "Hello| world");
    CHECK_STR(words_of(L3, "  Hello"), " | Hello");
    CHECK_STR(words_of(L3, "3333333"), "333|333|3");
    CHECK_STR(words_of(L3, "I've DON'T"), "I|'ve| DON|'T");
    CHECK_STR(words_of(L3, "a  \n b"), "a|  \n| b");
    CHECK_STR(words_of(L3, "hi!!\n\nx"), "hi|!!\n\n|x");
    CHECK_STR(words_of(L3, "(x) 7"), "(x|)| |7");
    CHECK_STR(words_of(L3, "\xD0\xBD\xD0\xB5 \xE4\xBD\xA0"), "\xD0\xBD\xD0\xB5| \xE4\xBD\xA0"); /* не 你 */
    CHECK_STR(words_of(L3, "x   "), "x|   ");
    CHECK_STR(words_of(G2, "Hello world's"), "Hello| world|'s");
    CHECK_STR(words_of(G2, "I'VE"), "I|'|VE"); /* gpt-2 contractions are lower case only */
    CHECK_STR(words_of(G2, "  x"), " | x");
    CHECK_STR(words_of(G2, "12345 a1"), "12345| a|1");
    CHECK_STR(words_of(G2, "x  !?"), "x| | !?");
    /* Qwen2: Llama-3's pattern, digits one at a time */
    const sq_vocab_pre Q2 = SQ_VOCAB_PRE_QWEN2;
    CHECK_STR(words_of(Q2, "3333 x"), "3|3|3|3| x");
    CHECK_STR(words_of(Q2, "I've (x)"), "I|'ve| (|x|)");
    /* llama.cpp's default chain: punctuation runs, GPT-2, number runs, digit triples */
    const sq_vocab_pre D = SQ_VOCAB_PRE_DEFAULT;
    CHECK_STR(words_of(D, "Hello, world! 12345 $x"), "Hello|,| world|!| |123|45| |$|x");
    CHECK_STR(words_of(D, "it's a`b 7a1234"), "it|'|s| a|`|b| |7|a|123|4");
    CHECK_STR(words_of(D, "\xC2\xBF\xC2\xBFx\xD9\xA3"), "\xC2\xBF\xC2\xBF|x|\xD9\xA3"); /* ¿¿x٣ */
}


/* ------------------------------------------------ GGUF loading, no shared */

static sq_vocab *load_vocab(const char *path)
{
    sq_vocab *v = NULL;
    sq_error e = {0};
    if (sq_vocab_load_file(path, &v, &e) != SQ_OK) fprintf(stderr, "%s\n", e.msg);
    return v;
}


/* Writes a vocab-only GGUF: the tiny SPM vocabulary, optionally broken. */
static bool write_vocab_gguf(const char *path, int broken)
{
    enum { N = SPM_N_TOKENS };
    const char *toks[N];
    float scores[N];
    int32_t types[N];
    spm_table(toks, scores, types);
    sq_gguf_writer *w = NULL;
    sq_error e = {0};
    if (sq_gguf_writer_open(path, &w, &e) != SQ_OK) return false;
    bool ok = sq_gguf_writer_set_str(w, "general.architecture", "llama", &e) == SQ_OK &&
              sq_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e) == SQ_OK &&
              (broken == 1 || sq_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, N, &e) == SQ_OK) &&
              (broken == 2 ? sq_gguf_writer_set_arr_str(w, "tokenizer.ggml.scores", toks, N, &e) == SQ_OK
                           : sq_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, scores, N, &e) ==
                                 SQ_OK) &&
              sq_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SQ_GGUF_INT32, types, N, &e) == SQ_OK &&
              sq_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &e) == SQ_OK &&
              sq_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, &e) == SQ_OK &&
              sq_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false, &e) == SQ_OK;
    if (!ok) {
        sq_gguf_writer_abort(w);
        return false;
    }
    return sq_gguf_writer_finish(w, &e) == SQ_OK;
}

static void test_gguf_vocab(void)
{
    char dir[512], path[600];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(path, sizeof path, "%s/vocab.gguf", dir);
    CHECK(write_vocab_gguf(path, 0));
    sq_vocab *v = load_vocab(path);
    CHECK(v != NULL);
    if (v) {
        char want[64];
        snprintf(want, sizeof want, "%d %d %d", SPM_FIRST_WORD + 6, SPM_FIRST_WORD + 0, SPM_FIRST_WORD + 3);
        CHECK_STR(ids_of(v, "ab c", true, false), want); /* add_bos_token false in the file */
        CHECK(!sq_vocab_add_bos(v));
        CHECK_INT(sq_vocab_eos(v), 2);
        CHECK(sq_vocab_token_score(v, SPM_FIRST_WORD + 4) == -1.0f);
        sq_vocab_free(v);
    }
    /* the sq tokenize tool on the same file */
    char cmd[1024], line[256] = "";
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' -p 'ab c' 2>&1", harness_sq_bin(), path);
    FILE *p = popen(cmd, "r");
    if (p) {
        if (!fgets(line, sizeof line, p)) line[0] = 0;
        CHECK_INT(pclose(p), 0);
        char want[64];
        snprintf(want, sizeof want, "%d %d %d\n", SPM_FIRST_WORD + 6, SPM_FIRST_WORD + 0, SPM_FIRST_WORD + 3);
        CHECK_STR(line, want);
    }
    /* broken files: the error names the file and the key */
    for (int broken = 1; broken <= 2; broken++) {
        snprintf(path, sizeof path, "%s/broken%d.gguf", dir, broken);
        CHECK(write_vocab_gguf(path, broken));
        sq_gguf *g = NULL;
        sq_vocab *bv = NULL;
        sq_error e = {0};
        CHECK_INT(sq_gguf_open(path, &g, &e), SQ_OK);
        CHECK(sq_vocab_load_gguf(g, &bv, &e) != SQ_OK);
        CHECK(bv == NULL);
        CHECK_CONTAINS(e.msg, path);
        CHECK_CONTAINS(e.msg, broken == 1 ? "tokenizer.ggml.tokens" : "tokenizer.ggml.scores");
        sq_gguf_close(g);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/vocab.gguf", dir);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------ ../shared vocabs */


/* Reports a case that differs from llama.cpp. */
static void print_case(void *ud, const sq_vocab_case *c)
{
    fprintf(stderr, "%s case %zu: '%.*s' expected '%s', got %zu ids:", (const char *)ud, c->index, (int)c->input_len,
            c->input, c->expected, c->n_got);
    for (size_t i = 0; i < c->n_got; i++) fprintf(stderr, " %d", c->got[i]);
    fputc('\n', stderr);
}

/* llama.cpp's test-tokenizer-0: inputs separated by a marker line, one line
 * of expected ids per input, tokenized without BOS and without parsing
 * special tokens. */
static void run_vocab_cases(const char *vocab_path)
{
    char inp_path[1024], out_path[1024];
    snprintf(inp_path, sizeof inp_path, "%s.inp", vocab_path);
    snprintf(out_path, sizeof out_path, "%s.out", vocab_path);
    size_t in_n = 0, out_n = 0;
    char *inp = harness_read_file(inp_path, &in_n);
    char *outp = harness_read_file(out_path, &out_n);
    sq_vocab *v = load_vocab(vocab_path);
    CHECK_MSG(inp && outp && v, "%s: cannot read the vocabulary or its cases", vocab_path);
    if (inp && outp && v) {
        int cases = 0, failed = 0;
        sq_error e = {0};
        const sq_status st = sq_vocab_check_cases(v, inp, in_n, outp, out_n, print_case, (void *)vocab_path, &cases,
                                                  &failed, &e);
        CHECK_MSG(st == SQ_OK, "%s: %s", vocab_path, e.msg);
        CHECK_MSG(failed == 0 && cases > 0, "%s: %d of %d cases differ from llama.cpp", vocab_path, failed, cases);
    }
    sq_vocab_free(v);
    free(inp);
    free(outp);
}

static void test_shared_vocabs(void)
{
    char dir[1024];
    if (!harness_shared_file(dir, sizeof dir, "vocab")) SKIP("../shared/vocab is absent");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".gguf") != 0) continue;
        char path[2048], inp[2100];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        snprintf(inp, sizeof inp, "%s.inp", path);
        FILE *f = fopen(inp, "rb");
        if (!f) continue;
        fclose(f);
        run_vocab_cases(path);
        n++;
    }
    closedir(d);
    CHECK_MSG(n >= 3, "only %d vocabularies with cases found in %s", n, dir);
    /* the same cases through sq tokenize --test */
    char cmd[2300], line[256] = "";
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s/ggml-vocab-llama-bpe.gguf' --test 2>&1", harness_sq_bin(), dir);
    FILE *p = popen(cmd, "r");
    if (p) {
        while (fgets(line, sizeof line, p)) {
        }
        CHECK_INT(pclose(p), 0);
        CHECK_STR(line, "46 cases, 46 passed, 0 failed\n");
    }
}

/* sq tokenize -f: one line of ids per input line, equal to the library's. */
static void test_tool_lines(void)
{
    char mp[1024], dir[512], path[600], cmd[2048];
    if (!harness_shared_file(mp, sizeof mp, "models/sqdemo-f16.gguf")) SKIP("../shared demo model absent");
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(path, sizeof path, "%s/in.txt", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    const char *lines[] = {"Hello world", "", "  two  spaces", "caf\xC3\xA9 \xF0\x9F\xA6\x99"};
    for (int i = 0; i < 4; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
    sq_vocab *v = load_vocab(mp);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' -f '%s' --no-bos", harness_sq_bin(), mp, path);
    FILE *p = popen(cmd, "r");
    CHECK(v && p);
    if (v && p) {
        char got[4096];
        int i = 0;
        while (fgets(got, sizeof got, p)) {
            char want[4096];
            if (i < 4) {
                snprintf(want, sizeof want, "%s\n", ids_of(v, lines[i], false, false));
                CHECK_STR(got, want);
            }
            i++;
        }
        CHECK_INT(i, 4);
    }
    if (p) CHECK_INT(pclose(p), 0);
    sq_vocab_free(v);
    unlink(path);
    rmdir(dir);
}

/* The demo model's vocabulary: every line of heldout.txt round-trips, and
 * the whole file tokenizes (with BOS) into the same ids as line by line when
 * the lines are joined. */
static void test_demo_roundtrip(void)
{
    char mp[1024], tp[1024];
    if (!harness_shared_file(mp, sizeof mp, "models/sqdemo-f16.gguf") ||
        !harness_shared_file(tp, sizeof tp, "data/heldout.txt"))
        SKIP("../shared demo model or heldout.txt absent");
    sq_vocab *v = load_vocab(mp);
    size_t n = 0;
    char *text = harness_read_file(tp, &n);
    CHECK(v && text);
    if (!v || !text) goto done;
    CHECK_INT(sq_vocab_n_tokens(v), 4096);
    CHECK_INT(sq_vocab_get_type(v), SQ_VOCAB_SPM);
    CHECK(sq_vocab_add_bos(v));
    int lines = 0, bad = 0;
    for (size_t a = 0; a < n;) {
        char *nl = memchr(text + a, '\n', n - a);
        size_t b = nl ? (size_t)(nl - text) : n;
        if (!round_trips(v, text + a, b - a)) {
            if (bad++ < 3) fprintf(stderr, "round trip differs: '%.*s'\n", (int)(b - a), text + a);
        }
        lines++;
        a = b + 1;
    }
    CHECK_MSG(bad == 0, "%d of %d heldout lines do not round-trip", bad, lines);
    /* whole file at once, as perplexity does it */
    sq_token *ids = NULL;
    size_t nid = 0;
    sq_error e = {0};
    double t0 = sq_time_now();
    CHECK_INT(sq_tokenize(v, text, n, true, false, &ids, &nid, &e), SQ_OK);
    double dt = sq_time_now() - t0;
    fprintf(stderr, "heldout.txt: %zu bytes -> %zu tokens in %.3f s\n", n, nid, dt);
    CHECK(nid > 1 && ids[0] == 1);
    char *back = NULL;
    size_t bl = 0;
    CHECK_INT(sq_detokenize(v, ids + 1, nid - 1, false, false, &back, &bl, &e), SQ_OK);
    CHECK(back && bl == n && memcmp(back, text, n) == 0);
    free(back);
    /* merging line by line (the fast path) gives the ids of one queue over
     * the whole text */
    CHECK(v->spm_newline_split);
    sq_token *ids2 = NULL;
    size_t nid2 = 0;
    v->spm_newline_split = false;
    CHECK_INT(sq_tokenize(v, text, n, true, false, &ids2, &nid2, &e), SQ_OK);
    CHECK(nid2 == nid && ids2 && memcmp(ids, ids2, nid * sizeof *ids) == 0);
    free(ids2);
    free(ids);
done:
    free(text);
    sq_vocab_free(v);
}

int main(void)
{
    RUN(test_spm_merges);
    RUN(test_bad_vocab);
    RUN(test_bpe_merges);
    RUN(test_pretokenizers);
    RUN(test_utf8_tail);
    RUN(test_gguf_vocab);
    RUN(test_shared_vocabs);
    RUN(test_tool_lines);
    RUN(test_demo_roundtrip);
    return harness_finish("tokenizer");
}
