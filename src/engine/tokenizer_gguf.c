/*
 * tokenizer_gguf.c — builds an sq_vocab from the tokenizer.ggml.* keys of a
 * GGUF file (kept apart from tokenizer.c so that users of the tokenizer who
 * build vocabularies from arrays do not need the GGUF reader).
 *
 * The reader's strings and arrays point into its read-only map and may be
 * unaligned: fixed-size arrays are copied out with memcpy, strings are passed
 * by pointer and length to sq_vocab_create, which copies them. Nothing of the
 * reader is kept after the call.
 */
#include <stdlib.h>
#include <string.h>

#include "sq/gguf.h"
#include "sq/tokenizer.h"

/* A string key as a NUL-terminated malloc'd copy; *out NULL when absent. */
static sq_status get_cstr(const sq_gguf *g, const char *key, char **out, bool required, sq_error *err)
{
    *out = NULL;
    sq_gguf_str s;
    sq_status st = sq_gguf_get_str(g, key, &s, err);
    if (st == SQ_ENOTFOUND && !required) {
        sq_error_clear(err);
        return SQ_OK;
    }
    if (st != SQ_OK) return st;
    *out = malloc(s.len + 1);
    if (!*out) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", key);
    memcpy(*out, s.ptr, s.len);
    (*out)[s.len] = 0;
    return SQ_OK;
}

/* An optional token id: SQ_TOKEN_DEFAULT when absent or out of range (llama.cpp
 * then keeps the kind's default id, with a warning). */
static sq_status get_id(const sq_gguf *g, const char *key, int32_t n_tokens, sq_token *out, sq_error *err)
{
    int64_t x;
    *out = SQ_TOKEN_DEFAULT;
    sq_status st = sq_gguf_get_i64(g, key, &x, err);
    if (st == SQ_ENOTFOUND) {
        sq_error_clear(err);
        return SQ_OK;
    }
    if (st != SQ_OK) return st;
    if (x >= 0 && x < n_tokens) *out = (sq_token)x;
    return SQ_OK;
}

static sq_status get_flag(const sq_gguf *g, const char *key, int *out, sq_error *err)
{
    bool b;
    *out = -1;
    sq_status st = sq_gguf_get_bool(g, key, &b, err);
    if (st == SQ_ENOTFOUND) {
        sq_error_clear(err);
        return SQ_OK;
    }
    if (st != SQ_OK) return st;
    *out = b ? 1 : 0;
    return SQ_OK;
}

/* An array of strings as pointer/length arrays into the map. */
static sq_status get_strings(const sq_gguf *g, const char *key, const char ***ptrs, uint32_t **lens, int64_t *n,
                             sq_error *err)
{
    int64_t idx;
    sq_gguf_type et;
    uint64_t cnt;
    sq_status st = sq_gguf_get_arr(g, key, &idx, &et, &cnt, err);
    if (st != SQ_OK) return st;
    if (et != SQ_GGUF_STRING)
        return sq_error_set(err, SQ_ETYPE, "%s: an array of %s, expected an array of strings", key,
                            sq_gguf_type_name(et));
    if (cnt > INT32_MAX) return sq_error_set(err, SQ_ERANGE, "%s: %llu entries is too many", key, (unsigned long long)cnt);
    *ptrs = malloc((cnt ? cnt : 1) * sizeof **ptrs);
    *lens = malloc((cnt ? cnt : 1) * sizeof **lens);
    if (!*ptrs || !*lens) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", key);
    for (uint64_t j = 0; j < cnt; j++) {
        sq_gguf_str s = sq_gguf_arr_str(g, idx, j);
        if (s.len > UINT32_MAX) return sq_error_set(err, SQ_ERANGE, "%s[%llu]: string too long", key, (unsigned long long)j);
        (*ptrs)[j] = s.ptr ? s.ptr : "";
        (*lens)[j] = (uint32_t)s.len;
    }
    *n = (int64_t)cnt;
    return SQ_OK;
}

/* An optional per-token numeric array (scores: f32 or i32; types: i32) with
 * at least n_tokens entries, copied out. *out NULL when absent. */
static sq_status get_numbers(const sq_gguf *g, const char *key, int32_t n_tokens, bool as_float, void **out,
                             sq_error *err)
{
    int64_t idx;
    sq_gguf_type et;
    uint64_t cnt;
    *out = NULL;
    sq_status st = sq_gguf_get_arr(g, key, &idx, &et, &cnt, err);
    if (st == SQ_ENOTFOUND) {
        sq_error_clear(err);
        return SQ_OK;
    }
    if (st != SQ_OK) return st;
    bool ok = et == SQ_GGUF_INT32 || (as_float && et == SQ_GGUF_FLOAT32);
    if (!ok)
        return sq_error_set(err, SQ_ETYPE, "%s: an array of %s, expected %s", key, sq_gguf_type_name(et),
                            as_float ? "f32 or i32" : "i32");
    if (cnt < (uint64_t)n_tokens)
        return sq_error_set(err, SQ_EFORMAT, "%s: %llu entries for %d tokens", key, (unsigned long long)cnt,
                            (int)n_tokens);
    const void *raw = sq_gguf_arr_data(g, idx);
    if (!raw && n_tokens > 0) return sq_error_set(err, SQ_EFORMAT, "%s: no data", key);
    void *buf = malloc((size_t)n_tokens * 4 + 4);
    if (!buf) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", key);
    if (n_tokens > 0) memcpy(buf, raw, (size_t)n_tokens * 4);
    if (as_float && et == SQ_GGUF_INT32) { /* integer scores, as llama.cpp accepts */
        int32_t *iv = buf;
        float *fv = buf;
        for (int32_t i = 0; i < n_tokens; i++) fv[i] = (float)iv[i];
    }
    *out = buf;
    return SQ_OK;
}

sq_status sq_vocab_load_gguf(const sq_gguf *g, sq_vocab **out, sq_error *err)
{
    *out = NULL;
    char *model = NULL, *pre = NULL, *name = NULL;
    const char **toks = NULL, **merges = NULL;
    uint32_t *tok_lens = NULL, *merge_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int64_t n_tokens = 0, n_merges = 0;
    sq_vocab_desc d;
    sq_vocab_desc_init(&d);
    sq_status st;

    if ((st = get_cstr(g, "tokenizer.ggml.model", &model, true, err)) != SQ_OK) goto done;
    if ((st = get_cstr(g, "tokenizer.ggml.pre", &pre, false, err)) != SQ_OK) goto done;
    if ((st = get_cstr(g, "general.name", &name, false, err)) != SQ_OK) goto done;
    if ((st = get_strings(g, "tokenizer.ggml.tokens", &toks, &tok_lens, &n_tokens, err)) != SQ_OK) goto done;
    if (n_tokens == 0) {
        st = sq_error_set(err, SQ_EFORMAT, "tokenizer.ggml.tokens is empty");
        goto done;
    }
    if ((st = get_numbers(g, "tokenizer.ggml.scores", (int32_t)n_tokens, true, (void **)&scores, err)) != SQ_OK)
        goto done;
    if ((st = get_numbers(g, "tokenizer.ggml.token_type", (int32_t)n_tokens, false, (void **)&types, err)) != SQ_OK)
        goto done;
    if (!strcmp(model, "gpt2")) {
        if ((st = get_strings(g, "tokenizer.ggml.merges", &merges, &merge_lens, &n_merges, err)) != SQ_OK) goto done;
    }
    d.model = model;
    d.pre = pre;
    d.name = name;
    d.n_tokens = (int32_t)n_tokens;
    d.tokens = toks;
    d.token_lens = tok_lens;
    d.scores = scores;
    d.token_types = types;
    d.n_merges = n_merges;
    d.merges = merges;
    d.merge_lens = merge_lens;
    if ((st = get_id(g, "tokenizer.ggml.bos_token_id", d.n_tokens, &d.bos, err)) != SQ_OK ||
        (st = get_id(g, "tokenizer.ggml.eos_token_id", d.n_tokens, &d.eos, err)) != SQ_OK ||
        (st = get_id(g, "tokenizer.ggml.unknown_token_id", d.n_tokens, &d.unk, err)) != SQ_OK ||
        (st = get_id(g, "tokenizer.ggml.padding_token_id", d.n_tokens, &d.pad, err)) != SQ_OK ||
        (st = get_id(g, "tokenizer.ggml.eot_token_id", d.n_tokens, &d.eot, err)) != SQ_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_bos_token", &d.add_bos, err)) != SQ_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_eos_token", &d.add_eos, err)) != SQ_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix, err)) != SQ_OK)
        goto done;
    st = sq_vocab_create(&d, out, err);
done:
    if (st != SQ_OK) {
        const char *path = sq_gguf_path(g);
        sq_error_prefix(err, "%s: vocabulary", path ? path : "(gguf)");
    }
    free(model);
    free(pre);
    free(name);
    free(toks);
    free(tok_lens);
    free(merges);
    free(merge_lens);
    free(scores);
    free(types);
    return st;
}

sq_status sq_vocab_load_file(const char *path, sq_vocab **out, sq_error *err)
{
    *out = NULL;
    sq_gguf *g = NULL;
    sq_status st = sq_gguf_open_model(path, &g, err);
    if (st == SQ_OK && (st = sq_vocab_load_gguf(g, out, err)) != SQ_OK) sq_error_prefix(err, "%s", path);
    sq_gguf_close(g);
    return st;
}
