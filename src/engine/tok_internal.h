/*
 * tok_internal.h — what the tokenizer's files share: the vocabulary layout,
 * the string hash, the merge queue and the Unicode helpers.
 *
 * Ownership: an sq_vocab owns every array below (one malloc each). The
 * tokenizers (tok_spm.c, tok_bpe.c) only read it and keep their working
 * state in an sq__tok_out / local buffers, so a const vocabulary can be used
 * by several threads at once.
 */
#ifndef SQ_TOK_INTERNAL_H
#define SQ_TOK_INTERNAL_H

#include "sq/tokenizer.h"

/* Token attributes (llama.cpp's llama_token_attr, only the bits we use). */
enum {
    SQ__ATTR_NORMAL = 1u << 0,
    SQ__ATTR_UNKNOWN = 1u << 1,
    SQ__ATTR_CONTROL = 1u << 2,
    SQ__ATTR_USER_DEFINED = 1u << 3,
    SQ__ATTR_UNUSED = 1u << 4,
    SQ__ATTR_BYTE = 1u << 5,
    SQ__ATTR_LSTRIP = 1u << 6,
    SQ__ATTR_RSTRIP = 1u << 7
};

typedef struct sq__tokinfo {
    uint64_t text_off;  /* into vocab->text (NUL-terminated there) */
    uint32_t text_len;
    uint32_t attr;
    float score;
    uint64_t piece_off; /* into vocab->pieces: the special=true rendering */
    uint32_t piece_len;
} sq__tokinfo;

/* One BPE merge "left right": rank = its index. */
typedef struct sq__merge {
    uint64_t off;   /* into vocab->merge_text */
    uint32_t left_len, right_len;
} sq__merge;

typedef struct sq__slot {
    uint32_t tag;
    int32_t id;
} sq__slot;

struct sq_vocab {
    sq_vocab_type type;
    sq_vocab_pre pre;
    int32_t n_tokens;
    sq__tokinfo *toks;
    char *text;          /* all token texts, each followed by a NUL */
    char *pieces;        /* all pieces */
    uint32_t hash_mask;  /* token hash: open addressing, power-of-two size */
    sq__slot *hash;      /* id -1: empty; tag: high hash bits, checked before the text */
    int64_t n_merges;
    sq__merge *merges;
    char *merge_text;    /* left bytes then right bytes per merge */
    uint64_t mhash_mask;
    int32_t *mhash;      /* merge rank or -1 */
    sq_token bos, eos, unk, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix, ignore_merges, clean_spaces;
    bool spm_newline_split; /* no piece longer than one byte contains '\\n' */
    sq_token byte_token[256]; /* byte fallback: the token of each byte, or -1 */
    int32_t n_special;
    sq_token *special;   /* control/user-defined/unknown tokens, longest text first */
    int32_t n_eog;
    sq_token *eog;
};

/* ---- hashing ---- */
static inline uint64_t sq__hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}
#define SQ__HASH_SEED 0xcbf29ce484222325ull

/* Token id of text[0..len), or SQ_TOKEN_NULL. */
sq_token sq__vocab_lookup(const sq_vocab *v, const char *text, size_t len);
/* Rank of the merge (left, right), or -1. */
int64_t sq__vocab_merge_rank(const sq_vocab *v, const char *l, size_t ll, const char *r, size_t rl);

/* ---- growable token output ---- */
typedef struct sq__tok_out {
    sq_token *ids;
    size_t n, cap;
    bool oom;
} sq__tok_out;
void sq__out_push(sq__tok_out *o, sq_token t);

/* ---- the merge work queue: a binary max-heap ----
 * Best = greatest prio; ties go to the smaller left index (llama.cpp's order
 * for both SPM scores and BPE ranks, the latter stored as -rank). */
typedef struct sq__bigram {
    double prio;
    int32_t left, right;
    uint32_t size; /* byte length of the merged text when queued */
} sq__bigram;
typedef struct sq__heap {
    sq__bigram *a;
    size_t n, cap;
    bool oom;
} sq__heap;
void sq__heap_push(sq__heap *h, sq__bigram b);
sq__bigram sq__heap_pop(sq__heap *h); /* h->n > 0 */

/* A symbol of the merge loops: a byte range of the text in a linked list. */
typedef struct sq__sym {
    int32_t prev, next;
    uint32_t off, n;
} sq__sym;

/* ---- Unicode (tok_unicode.c) ---- */
/* Length of the UTF-8 sequence a lead byte announces (llama.cpp's table:
 * continuation bytes count 1, 0xF8..0xFF count 4). */
static inline size_t sq__utf8_len(unsigned char c)
{
    static const unsigned char lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}
/* Decodes one code point at s[*pos] (n bytes in all), as llama.cpp does:
 * structural checks only; an invalid sequence gives U+FFFD and advances 1. */
uint32_t sq__utf8_decode(const unsigned char *s, size_t n, size_t *pos);
/* Encodes cp (U+FFFD if > 0x10FFFF) into out; returns 1..4. */
size_t sq__utf8_encode(uint32_t cp, char *out);

enum { SQ__CPT_LETTER = 1, SQ__CPT_NUMBER = 2, SQ__CPT_SPACE = 4, SQ__CPT_DEFINED = 8, SQ__CPT_PUNCT = 16 };
/* Category flags of a code point (SQ__CPT_DEFINED for every valid one). */
unsigned sq__cpt_flags(uint32_t cp);
uint32_t sq__cpt_tolower(uint32_t cp);

/* Splits cps[0..n) into words with the pre-tokenizer: writes the word
 * lengths (in code points) to lens and returns their count. lens and
 * scratch have room for n entries each. */
size_t sq__pretok_split(sq_vocab_pre pre, const uint32_t *cps, size_t n, uint32_t *lens, uint32_t *scratch);

/* GPT-2 byte-to-unicode table: the code point standing for byte b. */
uint32_t sq__byte_to_cpt(unsigned b);
/* Inverse: the byte of code point cp, or -1. */
int sq__cpt_to_byte(uint32_t cp);

/* ---- the tokenizers ---- */
/* SPM over one already-escaped text fragment (no special tokens inside). */
void sq__spm_tokenize(const sq_vocab *v, const char *text, size_t len, sq__tok_out *out);
/* Byte-level BPE over one fragment. */
void sq__bpe_tokenize(const sq_vocab *v, const char *text, size_t len, sq__tok_out *out);

#endif
