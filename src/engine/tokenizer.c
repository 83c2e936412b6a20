/*
 * tokenizer.c — the vocabulary (sq_vocab): construction from arrays, the
 * piece and merge hash tables, special tokens, and the public tokenize /
 * detokenize entry points. The merge loops live in tok_spm.c and tok_bpe.c,
 * the Unicode scanners in tok_unicode.c, GGUF loading in tokenizer_gguf.c.
 *
 * Behaviour follows llama.cpp's llama-vocab.cpp (defaults per vocabulary
 * kind, special-token partitioning, the SPM space prefix, the piece cache and
 * detokenize's space cleaning), so that token ids agree with llama.cpp's for
 * the same text.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/tok_internal.h"

/* ---------------------------------------------------------------- helpers */

/* Appends a token id, doubling the array; remembers an allocation failure
 * instead of reporting it at every call. */
void sq__out_push(sq__tok_out *o, sq_token t)
{
    if (o->oom) return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        sq_token *ids = realloc(o->ids, cap * sizeof *ids);
        if (!ids) {
            o->oom = true;
            return;
        }
        o->ids = ids;
        o->cap = cap;
    }
    o->ids[o->n++] = t;
}

/* a is better than b: greater priority, then smaller left index. */
static inline bool bigram_better(const sq__bigram *a, const sq__bigram *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

/* Heap insert (sift up). */
void sq__heap_push(sq__heap *h, sq__bigram b)
{
    if (h->oom) return;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        sq__bigram *a = realloc(h->a, cap * sizeof *a);
        if (!a) {
            h->oom = true;
            return;
        }
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_better(&b, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
}

/* Removes and returns the best entry (sift down). */
sq__bigram sq__heap_pop(sq__heap *h)
{
    sq__bigram top = h->a[0];
    sq__bigram last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_better(&h->a[c + 1], &h->a[c])) c++;
        if (!bigram_better(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n > 0) h->a[i] = last;
    return top;
}

sq_token sq__vocab_lookup(const sq_vocab *v, const char *text, size_t len)
{
    uint64_t h = sq__hash_bytes(SQ__HASH_SEED, text, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & v->hash_mask;; i = (i + 1) & v->hash_mask) {
        sq__slot sl = v->hash[i];
        if (sl.id < 0) return SQ_TOKEN_NULL;
        if (sl.tag != tag) continue;
        const sq__tokinfo *t = &v->toks[sl.id];
        if (t->text_len == len && memcmp(v->text + t->text_off, text, len) == 0) return sl.id;
    }
}

static uint64_t merge_hash(const char *l, size_t ll, const char *r, size_t rl)
{
    uint64_t h = sq__hash_bytes(SQ__HASH_SEED, l, ll);
    h = sq__hash_bytes(h, " ", 1);
    return sq__hash_bytes(h, r, rl);
}

int64_t sq__vocab_merge_rank(const sq_vocab *v, const char *l, size_t ll, const char *r, size_t rl)
{
    if (!v->mhash) return -1;
    uint64_t h = merge_hash(l, ll, r, rl);
    for (uint64_t i = h & v->mhash_mask;; i = (i + 1) & v->mhash_mask) {
        int32_t m = v->mhash[i];
        if (m < 0) return -1;
        const sq__merge *e = &v->merges[m];
        if (e->left_len == ll && e->right_len == rl && memcmp(v->merge_text + e->off, l, ll) == 0 &&
            memcmp(v->merge_text + e->off + ll, r, rl) == 0)
            return m;
    }
}

/* ------------------------------------------------------------ construction */

void sq_vocab_desc_init(sq_vocab_desc *d)
{
    memset(d, 0, sizeof *d);
    d->bos = d->eos = d->unk = d->pad = d->eot = SQ_TOKEN_DEFAULT;
    d->add_bos = d->add_eos = d->add_space_prefix = -1;
}

static bool name_in(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list)) return true;
    return false;
}

/* Maps tokenizer.ggml.pre to our pre-tokenizer (llama.cpp's names). */
static sq_status parse_pre(sq_vocab *v, const char *pre, sq_error *err)
{
    static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                         "midm-2.0", "lfm2", "jina-v5-nano", NULL};
    static const char *const llama3_regex_only[] = {"dbrx", "smaug-bpe", NULL};
    static const char *const gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                       "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo",
                                       "jais", "trillion", "granite-docling", "exaone4", "jina-v1-en",
                                       "jina-v2-code", "roberta-bpe", NULL};
    v->clean_spaces = true;
    if (!pre || !*pre || !strcmp(pre, "default")) {
        v->pre = SQ_VOCAB_PRE_DEFAULT;
    } else if (name_in(pre, llama3)) {
        v->pre = SQ_VOCAB_PRE_LLAMA3;
        v->ignore_merges = true;
        v->add_bos = true;
    } else if (name_in(pre, llama3_regex_only)) {
        v->pre = SQ_VOCAB_PRE_LLAMA3;
    } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) {
        v->pre = SQ_VOCAB_PRE_QWEN2;
        v->clean_spaces = false;
    } else if (name_in(pre, gpt2)) {
        v->pre = SQ_VOCAB_PRE_GPT2;
        if (!strcmp(pre, "trillion") || !strcmp(pre, "granite-docling")) v->clean_spaces = false;
    } else {
        return sq_error_set(err, SQ_EUNSUPPORTED,
                            "unsupported pre-tokenizer '%s' (supported: llama3/llama-bpe family, qwen2, gpt-2 family, "
                            "default)",
                            pre);
    }
    return SQ_OK;
}

/* Token type from the file → attribute bits (llama.cpp's mapping). */
static uint32_t type_to_attr(int32_t t)
{
    switch (t) {
    case SQ_TOKEN_TYPE_NORMAL: return SQ__ATTR_NORMAL;
    case SQ_TOKEN_TYPE_UNKNOWN: return SQ__ATTR_UNKNOWN;
    case SQ_TOKEN_TYPE_CONTROL: return SQ__ATTR_CONTROL;
    case SQ_TOKEN_TYPE_USER_DEFINED: return SQ__ATTR_USER_DEFINED;
    case SQ_TOKEN_TYPE_UNUSED: return SQ__ATTR_UNUSED;
    case SQ_TOKEN_TYPE_BYTE: return SQ__ATTR_BYTE;
    default: return 0; /* undefined */
    }
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n) p *= 2;
    return p;
}

/* Byte of a "<0xXX>" piece, or -1. */
static int hex_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int b = 0;
    for (int i = 3; i < 5; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        b = b * 16 + d;
    }
    return b;
}

/* Appends the rendering of token id (special=true, no lstrip) to buf: the
 * text llama.cpp's piece cache holds. Returns false on allocation failure. */
static bool render_piece(const sq_vocab *v, sq_token id, sq_buf *b)
{
    const sq__tokinfo *t = &v->toks[id];
    const char *s = v->text + t->text_off;
    size_t n = t->text_len;
    if (t->attr & (SQ__ATTR_UNKNOWN | SQ__ATTR_CONTROL | SQ__ATTR_USER_DEFINED)) return sq_buf_add(b, s, n);
    if (t->attr & SQ__ATTR_NORMAL) {
        if (v->type == SQ_VOCAB_SPM) { /* "▁" → " " */
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                    if (!sq_buf_add(b, " ", 1)) return false;
                    i += 3;
                } else {
                    size_t j = i + 1;
                    while (j < n && !(j + 3 <= n && memcmp(s + j, "\xE2\x96\x81", 3) == 0)) j++;
                    if (!sq_buf_add(b, s + i, j - i)) return false;
                    i = j;
                }
            }
            return true;
        }
        /* byte-level BPE: every character stands for one byte */
        for (size_t i = 0; i < n;) {
            uint32_t cp = sq__utf8_decode((const unsigned char *)s, n, &i);
            int byte = sq__cpt_to_byte(cp);
            if (byte >= 0) {
                unsigned char c = (unsigned char)byte;
                if (!sq_buf_add(b, &c, 1)) return false;
            } else { /* llama.cpp's marker for a character outside the table */
                char u[4], hex[16];
                size_t ul = sq__utf8_encode(cp, u);
                if (!sq_buf_add(b, "[UNK_BYTE_0x", 12)) return false;
                for (size_t k = 0; k < ul; k++) {
                    snprintf(hex, sizeof hex, "%02x", (unsigned char)u[k]);
                    if (!sq_buf_add(b, hex, 2)) return false;
                }
                if (!sq_buf_add(b, s, n) || !sq_buf_add(b, "]", 1)) return false;
            }
        }
        return true;
    }
    if (t->attr & SQ__ATTR_BYTE) {
        int byte = hex_byte_piece(s, n);
        if (byte < 0) return sq_buf_add(b, s, n);
        unsigned char c = (unsigned char)byte;
        return sq_buf_add(b, &c, 1);
    }
    return true; /* undefined / unused: nothing */
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const sq_vocab *v = ctx;
    sq_token x = *(const sq_token *)a, y = *(const sq_token *)b;
    uint32_t lx = v->toks[x].text_len, ly = v->toks[y].text_len;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return true;
    return false;
}

/* Fills the special-id fields: the caller's id, or the kind's default when
 * SQ_TOKEN_DEFAULT (a default outside the vocabulary means none). */
static sq_status set_special(sq_vocab *v, sq_token given, sq_token dflt, sq_token *dst, const char *what,
                             sq_error *err)
{
    if (given == SQ_TOKEN_DEFAULT) {
        *dst = (dflt >= 0 && dflt < v->n_tokens) ? dflt : SQ_TOKEN_NULL;
        return SQ_OK;
    }
    if (given < SQ_TOKEN_NULL || given >= v->n_tokens)
        return sq_error_set(err, SQ_ERANGE, "%s token id %d is outside the vocabulary of %d tokens", what,
                            (int)given, (int)v->n_tokens);
    *dst = given;
    return SQ_OK;
}

/* The out-of-memory error of sq_vocab_create. */
static sq_status vocab_oom(const sq_vocab_desc *d, sq_error *err)
{
    return sq_error_set(err, SQ_ENOMEM, "vocabulary of %d tokens: out of memory", (int)d->n_tokens);
}

/* The tokenizer kind from tokenizer.ggml.model, with its defaults. */
static sq_status vocab_kind(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    if (!strcmp(d->model, "llama")) {
        v->type = SQ_VOCAB_SPM;
        v->pre = SQ_VOCAB_PRE_DEFAULT;
        v->add_space_prefix = true;
        v->add_bos = true;
        return SQ_OK;
    }
    if (!strcmp(d->model, "gpt2")) {
        v->type = SQ_VOCAB_BPE;
        return parse_pre(v, d->pre, err);
    }
    return sq_error_set(err, SQ_EUNSUPPORTED, "unsupported tokenizer model '%s' (supported: llama, gpt2)", d->model);
}

/* Token texts: one arena, empty tokens renamed as llama.cpp does, and the
 * text -> id hash (a duplicate text is an error). */
static sq_status vocab_tokens(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    uint64_t total = 0;
    for (int32_t i = 0; i < d->n_tokens; i++) {
        size_t l = d->token_lens ? d->token_lens[i] : (d->tokens[i] ? strlen(d->tokens[i]) : 0);
        total += (l ? l : 24) + 1;
    }
    v->toks = calloc((size_t)d->n_tokens, sizeof *v->toks);
    v->text = malloc(total);
    v->hash_mask = (uint32_t)(pow2_at_least((uint64_t)d->n_tokens * 2) - 1);
    v->hash = malloc(((size_t)v->hash_mask + 1) * sizeof *v->hash);
    if (!v->toks || !v->text || !v->hash) return vocab_oom(d, err);
    memset(v->hash, 0xff, ((size_t)v->hash_mask + 1) * sizeof *v->hash);
    uint64_t off = 0;
    for (int32_t i = 0; i < d->n_tokens; i++) {
        size_t l = d->token_lens ? d->token_lens[i] : (d->tokens[i] ? strlen(d->tokens[i]) : 0);
        sq__tokinfo *t = &v->toks[i];
        t->text_off = off;
        if (l == 0) {
            l = (size_t)snprintf(v->text + off, 25, "[EMPTY_%d]", (int)i);
        } else {
            memcpy(v->text + off, d->tokens[i], l);
            v->text[off + l] = 0;
        }
        if (l > UINT32_MAX) return sq_error_set(err, SQ_EFORMAT, "token %d is too long", (int)i);
        t->text_len = (uint32_t)l;
        off += l + 1;
        t->score = d->scores ? d->scores[i] : 0.0f;
        t->attr = d->token_types ? type_to_attr(d->token_types[i]) : SQ__ATTR_NORMAL;
        const char *s = v->text + t->text_off;
        uint64_t h = sq__hash_bytes(SQ__HASH_SEED, s, l);
        for (uint64_t k = h & v->hash_mask;; k = (k + 1) & v->hash_mask) {
            int32_t o = v->hash[k].id;
            if (o < 0) {
                v->hash[k].id = i;
                v->hash[k].tag = (uint32_t)(h >> 32);
                break;
            }
            if (v->toks[o].text_len == l && memcmp(v->text + v->toks[o].text_off, s, l) == 0)
                return sq_error_set(err, SQ_EFORMAT, "duplicate token in vocabulary: '%.64s' has ids %d and %d", s,
                                    (int)o, (int)i);
        }
    }
    return SQ_OK;
}

/* Merges (byte-level BPE): "left right", split at the first space after
 * the first byte; the rank is the index; a repeated pair keeps its first. */
static sq_status vocab_merges(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    if (d->n_merges <= 0 || !d->merges) return sq_error_set(err, SQ_EFORMAT, "gpt2 vocabulary without merges");
    if (d->n_merges > INT32_MAX / 4)
        return sq_error_set(err, SQ_ERANGE, "too many merges (%lld)", (long long)d->n_merges);
    uint64_t mt = 0;
    for (int64_t i = 0; i < d->n_merges; i++)
        mt += d->merge_lens ? d->merge_lens[i] : (d->merges[i] ? strlen(d->merges[i]) : 0);
    v->n_merges = d->n_merges;
    v->merges = calloc((size_t)d->n_merges, sizeof *v->merges);
    v->merge_text = malloc(mt + 1);
    v->mhash_mask = pow2_at_least((uint64_t)d->n_merges * 2) - 1;
    v->mhash = malloc((v->mhash_mask + 1) * sizeof *v->mhash);
    if (!v->merges || !v->merge_text || !v->mhash) return vocab_oom(d, err);
    memset(v->mhash, 0xff, (v->mhash_mask + 1) * sizeof *v->mhash);
    uint64_t mo = 0;
    for (int64_t i = 0; i < d->n_merges; i++) {
        const char *s = d->merges[i] ? d->merges[i] : "";
        size_t l = d->merge_lens ? d->merge_lens[i] : strlen(s);
        const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
        sq__merge *e = &v->merges[i];
        if (!sp) { /* not a pair: can never match */
            e->off = mo;
            e->left_len = e->right_len = 0;
            continue;
        }
        size_t ll = (size_t)(sp - s), rl = l - ll - 1;
        memcpy(v->merge_text + mo, s, ll);
        memcpy(v->merge_text + mo + ll, sp + 1, rl);
        e->off = mo;
        e->left_len = (uint32_t)ll;
        e->right_len = (uint32_t)rl;
        mo += ll + rl;
        uint64_t h = merge_hash(s, ll, sp + 1, rl);
        for (uint64_t k = h & v->mhash_mask;; k = (k + 1) & v->mhash_mask) {
            int32_t o = v->mhash[k];
            if (o < 0) {
                v->mhash[k] = (int32_t)i;
                break;
            }
            const sq__merge *f = &v->merges[o];
            if (f->left_len == ll && f->right_len == rl &&
                memcmp(v->merge_text + f->off, v->merge_text + e->off, ll + rl) == 0)
                break; /* repeated: the first rank stays */
        }
    }
    return SQ_OK;
}

/* Special ids (the caller's, or the kind's defaults) and the add flags. */
static sq_status vocab_specials(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    sq_token dbos = v->type == SQ_VOCAB_SPM ? 1 : 11, deos = v->type == SQ_VOCAB_SPM ? 2 : 11;
    sq_token dunk = v->type == SQ_VOCAB_SPM ? 0 : SQ_TOKEN_NULL;
    sq_status st;
    if ((st = set_special(v, d->bos, dbos, &v->bos, "BOS", err)) != SQ_OK ||
        (st = set_special(v, d->eos, deos, &v->eos, "EOS", err)) != SQ_OK ||
        (st = set_special(v, d->unk, dunk, &v->unk, "UNK", err)) != SQ_OK ||
        (st = set_special(v, d->pad, SQ_TOKEN_NULL, &v->pad, "PAD", err)) != SQ_OK ||
        (st = set_special(v, d->eot, SQ_TOKEN_NULL, &v->eot, "EOT", err)) != SQ_OK)
        return st;
    v->eom = SQ_TOKEN_NULL;
    if (d->add_bos >= 0) v->add_bos = d->add_bos;
    if (d->add_eos >= 0) v->add_eos = d->add_eos;
    if (d->add_space_prefix >= 0) v->add_space_prefix = d->add_space_prefix;
    if (v->add_bos && v->bos == SQ_TOKEN_NULL)
        return sq_error_set(err, SQ_EFORMAT, "add_bos_token is true, but there is no BOS token");
    if (v->add_eos && v->eos == SQ_TOKEN_NULL)
        return sq_error_set(err, SQ_EFORMAT, "add_eos_token is true, but there is no EOS token");
    return SQ_OK;
}

/* End-of-generation markers found by their text (made control tokens, as
 * llama.cpp does); the first of them is the EOT when none was given. */
static sq_status vocab_eog(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>",     "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<|end_of_text|>", "<EOT>",   "_<EOT>",
                                            "<|eom_id|>",   NULL};
    v->eog = malloc(sizeof *v->eog * 16); /* 9 texts + EOS + EOT at most */
    if (!v->eog) return vocab_oom(d, err);
    for (int k = 0; eog_texts[k]; k++) {
        sq_token id = sq__vocab_lookup(v, eog_texts[k], strlen(eog_texts[k]));
        if (id == SQ_TOKEN_NULL) continue;
        v->toks[id].attr |= SQ__ATTR_CONTROL;
        if (!strcmp(eog_texts[k], "<|eom_id|>"))
            v->eom = id;
        else if (v->eot == SQ_TOKEN_NULL)
            v->eot = id;
        v->eog[v->n_eog++] = id;
    }
    if (v->eos != SQ_TOKEN_NULL) v->eog[v->n_eog++] = v->eos;
    if (v->eot != SQ_TOKEN_NULL) v->eog[v->n_eog++] = v->eot;
    return SQ_OK;
}

/* Whether SPM may merge line by line (see tok_spm.c), and the byte fallback
 * table: the token of each byte (<0xAB> or the byte itself; byte-level BPE:
 * the byte's code point). */
static void vocab_bytes(sq_vocab *v)
{
    v->spm_newline_split = true;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->toks[i].text_len > 1 && memchr(v->text + v->toks[i].text_off, '\n', v->toks[i].text_len))
            v->spm_newline_split = false;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        sq_token id;
        if (v->type == SQ_VOCAB_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = sq__vocab_lookup(v, buf, 6);
            if (id == SQ_TOKEN_NULL) {
                buf[0] = (char)b;
                id = sq__vocab_lookup(v, buf, 1);
            }
        } else {
            size_t l = sq__utf8_encode(sq__byte_to_cpt((unsigned)b), buf);
            id = sq__vocab_lookup(v, buf, l);
        }
        v->byte_token[b] = id;
    }
}

/* Special tokens, longest text first (ties by id), and Phi-3's strip rules
 * (llama.cpp keys them on the model name). */
static sq_status vocab_special_list(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    v->special = malloc(sizeof *v->special * (size_t)v->n_tokens);
    if (!v->special) return vocab_oom(d, err);
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->toks[i].attr & (SQ__ATTR_CONTROL | SQ__ATTR_USER_DEFINED | SQ__ATTR_UNKNOWN))
            v->special[v->n_special++] = i;
    qsort_r(v->special, (size_t)v->n_special, sizeof *v->special, cmp_special, v);
    if (d->name && (contains_ci(d->name, "phi-3") || contains_ci(d->name, "phi3"))) {
        for (int32_t k = 0; k < v->n_special; k++) v->toks[v->special[k]].attr |= SQ__ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        sq_token es = sq__vocab_lookup(v, "</s>", 4);
        if (es != SQ_TOKEN_NULL) v->toks[es].attr |= SQ__ATTR_RSTRIP;
        for (int k = 0; k < 3; k++) {
            sq_token id = sq__vocab_lookup(v, keep[k], strlen(keep[k]));
            if (id != SQ_TOKEN_NULL) v->toks[id].attr &= ~(uint32_t)SQ__ATTR_RSTRIP;
        }
    }
    return SQ_OK;
}

/* The piece of every token, in one arena. */
static sq_status vocab_pieces(sq_vocab *v, const sq_vocab_desc *d, sq_error *err)
{
    sq_buf pieces = {0};
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t before = pieces.n;
        if (!render_piece(v, i, &pieces)) {
            sq_buf_free(&pieces);
            return vocab_oom(d, err);
        }
        v->toks[i].piece_off = before;
        v->toks[i].piece_len = (uint32_t)(pieces.n - before);
    }
    v->pieces = pieces.p ? pieces.p : calloc(1, 1);
    return v->pieces ? SQ_OK : vocab_oom(d, err);
}

sq_status sq_vocab_create(const sq_vocab_desc *d, sq_vocab **out, sq_error *err)
{
    *out = NULL;
    if (!d || !d->model) return sq_error_set(err, SQ_EINVAL, "vocabulary: no tokenizer model given");
    sq_vocab *v = calloc(1, sizeof *v);
    if (!v) return sq_error_set(err, SQ_ENOMEM, "vocabulary: out of memory");
    sq_status st = vocab_kind(v, d, err);
    if (st == SQ_OK && (d->n_tokens <= 0 || !d->tokens))
        st = sq_error_set(err, SQ_EFORMAT, "vocabulary has no tokens");
    if (st == SQ_OK) {
        v->n_tokens = d->n_tokens;
        st = vocab_tokens(v, d, err);
    }
    if (st == SQ_OK && v->type == SQ_VOCAB_BPE) st = vocab_merges(v, d, err);
    if (st == SQ_OK) st = vocab_specials(v, d, err);
    if (st == SQ_OK) st = vocab_eog(v, d, err);
    if (st == SQ_OK) {
        vocab_bytes(v);
        st = vocab_special_list(v, d, err);
    }
    if (st == SQ_OK) st = vocab_pieces(v, d, err);
    if (st != SQ_OK) {
        sq_vocab_free(v);
        return st;
    }
    *out = v;
    return SQ_OK;
}

void sq_vocab_free(sq_vocab *v)
{
    if (!v) return;
    free(v->toks);
    free(v->text);
    free(v->pieces);
    free(v->hash);
    free(v->merges);
    free(v->merge_text);
    free(v->mhash);
    free(v->special);
    free(v->eog);
    free(v);
}

/* --------------------------------------------------------------- accessors */

sq_vocab_type sq_vocab_get_type(const sq_vocab *v) { return v->type; }
sq_vocab_pre sq_vocab_get_pre(const sq_vocab *v) { return v->pre; }
int32_t sq_vocab_n_tokens(const sq_vocab *v) { return v->n_tokens; }
sq_token sq_vocab_bos(const sq_vocab *v) { return v->bos; }
sq_token sq_vocab_eos(const sq_vocab *v) { return v->eos; }
sq_token sq_vocab_eot(const sq_vocab *v) { return v->eot; }
sq_token sq_vocab_unk(const sq_vocab *v) { return v->unk; }
sq_token sq_vocab_pad(const sq_vocab *v) { return v->pad; }
bool sq_vocab_add_bos(const sq_vocab *v) { return v->add_bos; }
bool sq_vocab_add_eos(const sq_vocab *v) { return v->add_eos; }

bool sq_vocab_is_eog(const sq_vocab *v, sq_token t)
{
    if (t == SQ_TOKEN_NULL) return false;
    for (int32_t k = 0; k < v->n_eog; k++)
        if (v->eog[k] == t) return true;
    return false;
}

const char *sq_vocab_token_text(const sq_vocab *v, sq_token t, size_t *len)
{
    if (t < 0 || t >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->toks[t].text_len;
    return v->text + v->toks[t].text_off;
}

float sq_vocab_token_score(const sq_vocab *v, sq_token t) { return (t < 0 || t >= v->n_tokens) ? 0.0f : v->toks[t].score; }

sq_token_type sq_vocab_token_type(const sq_vocab *v, sq_token t)
{
    if (t < 0 || t >= v->n_tokens) return SQ_TOKEN_TYPE_UNDEFINED;
    uint32_t a = v->toks[t].attr;
    if (a & SQ__ATTR_CONTROL) return SQ_TOKEN_TYPE_CONTROL;
    if (a & SQ__ATTR_UNKNOWN) return SQ_TOKEN_TYPE_UNKNOWN;
    if (a & SQ__ATTR_USER_DEFINED) return SQ_TOKEN_TYPE_USER_DEFINED;
    if (a & SQ__ATTR_BYTE) return SQ_TOKEN_TYPE_BYTE;
    if (a & SQ__ATTR_UNUSED) return SQ_TOKEN_TYPE_UNUSED;
    if (a & SQ__ATTR_NORMAL) return SQ_TOKEN_TYPE_NORMAL;
    return SQ_TOKEN_TYPE_UNDEFINED;
}

sq_token sq_vocab_find(const sq_vocab *v, const char *text, size_t len) { return sq__vocab_lookup(v, text, len); }

/* ---------------------------------------------------------------- tokenize */

/* A fragment of the input: raw text (tok < 0) or an already-found token. */
typedef struct frag {
    sq_token tok;
    size_t off, len;
} frag;

typedef struct fragv {
    frag *a;
    size_t n, cap;
} fragv;

static bool frag_push(fragv *f, sq_token tok, size_t off, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *a = realloc(f->a, cap * sizeof *a);
        if (!a) return false;
        f->a = a;
        f->cap = cap;
    }
    f->a[f->n++] = (frag){tok, off, len};
    return true;
}

/* Cuts special tokens out of the text (llama.cpp's tokenizer_st_partition):
 * for each special token, longest first, every occurrence in every
 * remaining raw fragment becomes a token fragment. Control and unknown
 * tokens count only with parse_special; user-defined ones always. lstrip /
 * rstrip tokens swallow the whitespace beside them. */
static bool partition(const sq_vocab *v, const char *text, size_t len, bool parse_special, fragv *cur)
{
    fragv next = {0};
    if (len > 0 && !frag_push(cur, -1, 0, len)) return false;
    for (int32_t k = 0; k < v->n_special; k++) {
        sq_token id = v->special[k];
        const sq__tokinfo *t = &v->toks[id];
        if (!parse_special && (t->attr & (SQ__ATTR_CONTROL | SQ__ATTR_UNKNOWN))) continue;
        const char *st = v->text + t->text_off;
        size_t sl = t->text_len;
        next.n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            frag f = cur->a[i];
            if (f.tok >= 0) {
                if (!frag_push(&next, f.tok, f.off, f.len)) goto oom;
                continue;
            }
            size_t off = f.off, rem = f.len;
            while (rem > 0) {
                const char *p = memmem(text + off, rem, st, sl);
                if (!p) break;
                size_t m = (size_t)(p - text);
                size_t ll = m - off;
                if (t->attr & SQ__ATTR_LSTRIP)
                    while (ll > 0 && isspace((unsigned char)text[off + ll - 1])) ll--;
                if (ll > 0 && !frag_push(&next, -1, off, ll)) goto oom;
                if (!frag_push(&next, id, m, sl)) goto oom;
                size_t roff = m + sl, rlen = off + rem - roff;
                if (t->attr & SQ__ATTR_RSTRIP)
                    while (rlen > 0 && isspace((unsigned char)text[roff])) roff++, rlen--;
                off = roff;
                rem = rlen;
            }
            if (rem > 0 && !frag_push(&next, -1, off, rem)) goto oom;
        }
        fragv tmp = *cur;
        *cur = next;
        next = tmp;
    }
    free(next.a);
    return true;
oom:
    free(next.a);
    return false;
}

sq_status sq_tokenize(const sq_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                      sq_token **out, size_t *n_out, sq_error *err)
{
    *out = NULL;
    *n_out = 0;
    fragv fr = {0};
    sq__tok_out o = {0};
    char *buf = NULL;
    if (!partition(v, text, len, parse_special, &fr)) goto oom;
    if (add_special && v->add_bos) sq__out_push(&o, v->bos);
    if (v->type == SQ_VOCAB_SPM) {
        /* SPM: a space before text that starts the input or follows a special
         * token, spaces written as U+2581 */
        bool prev_special = true;
        size_t maxf = 0;
        for (size_t i = 0; i < fr.n; i++)
            if (fr.a[i].tok < 0 && fr.a[i].len > maxf) maxf = fr.a[i].len;
        if (maxf > (SIZE_MAX - 4) / 3) goto oom;
        buf = malloc(3 * maxf + 4);
        if (!buf) goto oom;
        for (size_t i = 0; i < fr.n; i++) {
            if (fr.a[i].tok >= 0) {
                sq__out_push(&o, fr.a[i].tok);
                prev_special = true;
                continue;
            }
            size_t bl = 0;
            const char *s = text + fr.a[i].off;
            if (v->add_space_prefix && prev_special) {
                memcpy(buf, "\xE2\x96\x81", 3);
                bl = 3;
            }
            for (size_t j = 0; j < fr.a[i].len; j++) {
                if (s[j] == ' ') {
                    memcpy(buf + bl, "\xE2\x96\x81", 3);
                    bl += 3;
                } else {
                    buf[bl++] = s[j];
                }
            }
            sq__spm_tokenize(v, buf, bl, &o);
            prev_special = false;
        }
    } else {
        for (size_t i = 0; i < fr.n; i++) {
            if (fr.a[i].tok >= 0)
                sq__out_push(&o, fr.a[i].tok);
            else
                sq__bpe_tokenize(v, text + fr.a[i].off, fr.a[i].len, &o);
        }
    }
    if (add_special && v->add_eos) sq__out_push(&o, v->eos);
    if (o.oom) goto oom;
    free(buf);
    free(fr.a);
    *out = o.ids;
    *n_out = o.n;
    return SQ_OK;
oom:
    free(buf);
    free(fr.a);
    free(o.ids);
    return sq_error_set(err, SQ_ENOMEM, "tokenize: out of memory (text of %zu bytes)", len);
}

/* -------------------------------------------------------------- detokenize */

const char *sq_vocab_piece(const sq_vocab *v, sq_token t, bool special, size_t *len)
{
    if (t < 0 || t >= v->n_tokens || (!special && (v->toks[t].attr & (SQ__ATTR_UNKNOWN | SQ__ATTR_CONTROL)))) {
        if (len) *len = 0;
        return "";
    }
    if (len) *len = v->toks[t].piece_len;
    return v->pieces + v->toks[t].piece_off;
}

/* llama.cpp's clean-up of byte-level BPE output: no space before ?!., ,
 * " ' " becomes "'", and no space before 's 'm 're 've. */
static size_t clean_spaces(char *s, size_t n)
{
    if (n == 0) return 0;
    size_t t = 1;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            t--;
        s[t++] = x;
    }
    n = t;
    t = 1;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
            t--;
            s[++i] = 0;
        }
        s[t++] = x;
    }
    n = t;
    t = 1;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = s[i + 1];
            if (x1 == 's' || x1 == 'm')
                t--;
            else if (i + 2 < n && ((x1 == 'r' && s[i + 2] == 'e') || (x1 == 'v' && s[i + 2] == 'e')))
                t--;
        }
        s[t++] = x;
    }
    return t;
}

sq_status sq_detokenize(const sq_vocab *v, const sq_token *tokens, size_t n, bool remove_special,
                        bool unparse_special, char **out, size_t *len, sq_error *err)
{
    *out = NULL;
    if (len) *len = 0;
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && tokens[0] == v->bos) {
        remove_space = false;
        tokens++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && tokens[n - 1] == v->eos) n--;
    sq_buf b = {0};
    if (!sq_buf_add(&b, "", 0)) goto oom;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= v->n_tokens) {
            free(b.p);
            return sq_error_set(err, SQ_ERANGE, "detokenize: token %zu has id %d, outside the vocabulary of %d",
                                i, (int)tokens[i], (int)v->n_tokens);
        }
        size_t pl;
        const char *p = sq_vocab_piece(v, tokens[i], unparse_special, &pl);
        if (remove_space && pl > 0 && p[0] == ' ') p++, pl--;
        remove_space = false;
        if (!sq_buf_add(&b, p, pl)) goto oom;
    }
    if (v->clean_spaces && v->type == SQ_VOCAB_BPE) {
        b.n = clean_spaces(b.p, b.n);
        b.p[b.n] = 0;
    }
    *out = b.p;
    if (len) *len = b.n;
    return SQ_OK;
oom:
    free(b.p);
    return sq_error_set(err, SQ_ENOMEM, "detokenize: out of memory");
}
