/*
 * fuzz_tokenizer.c — random bytes through both tokenizers.
 *
 * Built-in vocabularies (no files needed): an SPM one with byte fallback and
 * byte-level BPE ones with the Llama-3, GPT-2 and default pre-tokenizers. Checks: nothing
 * crashes, ids stay in range, and detokenize(tokenize(x)) == x for valid
 * UTF-8 (BPE: llama.cpp replaces invalid sequences by U+FFFD; its space cleaning is
 * switched off here so that the text can come back unchanged).
 * Both need valid UTF-8: with an invalid lead byte llama.cpp's SPM symbol
 * swallows the following bytes (part of an escaped space, say) and they come
 * back as raw bytes. And SPM cannot tell a literal U+2581 from a space.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_internal.h"
#include "sq/tokenizer.h"

static sq_vocab *spm, *bpe, *bpe_gpt2, *bpe_default;

static sq_vocab *make(const char *model, const char *pre)
{
    static const char *const words[] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab",
                                        "\xE2\x96\x81\xE2\x96\x81", "\xC3\xA9", "<s>", "</s>"};
    static const float wscore[] = {-4, -3, -3, -1, -2, -1.5f, -2.5f, -3, 0, 0};
    static char bytes[256][8];
    static const char *const merges[] = {"h e", "\xC4\xA0 t", "\xC4\xA0t he", "l l", "ll o", "\xC4\xA0 \xC4\xA0"};
    static const char *const bwords[] = {"he", "\xC4\xA0t", "\xC4\xA0the", "ll", "llo", "\xC4\xA0\xC4\xA0",
                                         "<|eot_id|>"};
    const char *toks[300];
    float scores[300] = {0};
    int32_t types[300];
    int n = 0;
    sq_vocab_desc d;
    sq_vocab_desc_init(&d);
    d.model = model;
    d.pre = pre;
    if (!strcmp(model, "llama")) {
        toks[n] = "<unk>", types[n++] = SQ_TOKEN_TYPE_UNKNOWN;
        for (int b = 0; b < 256; b++) {
            snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
            toks[n] = bytes[b], types[n++] = SQ_TOKEN_TYPE_BYTE;
        }
        for (int i = 0; i < 10; i++) {
            toks[n] = words[i];
            scores[n] = wscore[i];
            types[n++] = i >= 8 ? SQ_TOKEN_TYPE_CONTROL : SQ_TOKEN_TYPE_NORMAL;
        }
        d.bos = n - 2;
        d.eos = n - 1;
    } else {
        for (int b = 0; b < 256; b++) {
            size_t l = sq__utf8_encode(sq__byte_to_cpt((unsigned)b), bytes[b]);
            bytes[b][l] = 0;
            toks[n] = bytes[b], types[n++] = SQ_TOKEN_TYPE_NORMAL;
        }
        for (int i = 0; i < 7; i++) toks[n] = bwords[i], types[n++] = i == 6 ? SQ_TOKEN_TYPE_CONTROL : SQ_TOKEN_TYPE_NORMAL;
        d.n_merges = 6;
        d.merges = merges;
        d.bos = 0;
        d.eos = n - 1;
    }
    d.n_tokens = n;
    d.tokens = toks;
    d.scores = scores;
    d.token_types = types;
    sq_vocab *v = NULL;
    sq_error e = {0};
    if (sq_vocab_create(&d, &v, &e) != SQ_OK) abort();
    return v;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF). */
static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

static void check(sq_vocab *v, const uint8_t *data, size_t size, int want_roundtrip)
{
    for (int ps = 0; ps < 2; ps++) {
        sq_token *ids = NULL;
        size_t n = 0;
        sq_error e = {0};
        if (sq_tokenize(v, (const char *)data, size, ps, ps, &ids, &n, &e) != SQ_OK) abort();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= sq_vocab_n_tokens(v)) abort();
        char *back = NULL;
        size_t bl = 0;
        if (sq_detokenize(v, ids, n, ps, ps, &back, &bl, &e) != SQ_OK) abort();
        if (ps == 0 && want_roundtrip && (bl != size || memcmp(back, data, size) != 0)) abort();
        free(back);
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!spm) {
        spm = make("llama", NULL);
        bpe = make("gpt2", "llama-bpe");
        bpe_gpt2 = make("gpt2", "gpt-2");
        bpe_default = make("gpt2", NULL);
        bpe->clean_spaces = bpe_gpt2->clean_spaces = bpe_default->clean_spaces = false;
    }
    int valid = valid_utf8(data, size);
    /* SPM writes spaces as U+2581, so a literal U+2581 comes back as a space */
    check(spm, data, size, valid && !memmem(data, size, "\xE2\x96\x81", 3));
    check(bpe, data, size, valid);
    check(bpe_gpt2, data, size, valid);
    check(bpe_default, data, size, valid);
    return 0;
}
