/*
 * sq/tokenizer.h — llama.cpp-compatible tokenizers built from a GGUF vocabulary.
 *
 * Two vocabulary kinds, as llama.cpp names them in tokenizer.ggml.model:
 *   "llama"  SentencePiece-style BPE: pieces merged by score, spaces written as
 *            U+2581 "▁", a leading space added (add_space_prefix), characters
 *            missing from the vocabulary fall back to <0xXX> byte tokens.
 *   "gpt2"   byte-level BPE: the text is first split into words by the
 *            pre-tokenizer named in tokenizer.ggml.pre (llama3, gpt2/default
 *            families), every byte is mapped to a printable code point (GPT-2's
 *            byte-to-unicode table) and merges are applied by rank.
 * Special tokens (control, user-defined, unknown) found in the text are kept
 * whole: user-defined ones always, control/unknown ones when parse_special.
 *
 * An sq_vocab is immutable after creation: every function taking a const
 * sq_vocab * is safe to call from several threads at once. The vocabulary
 * owns copies of all its strings; it does not keep the GGUF reader or the
 * caller's arrays.
 */
#ifndef SQ_TOKENIZER_H
#define SQ_TOKENIZER_H

#include "sq/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t sq_token;
#define SQ_TOKEN_NULL (-1)
/* In sq_vocab_desc: "use the default of the vocabulary kind" (llama: BOS 1,
 * EOS 2, UNK 0; gpt2: BOS = EOS = 11, no UNK), as llama.cpp does. */
#define SQ_TOKEN_DEFAULT (-2)

typedef enum sq_vocab_type {
    SQ_VOCAB_SPM = 1, /* "llama" */
    SQ_VOCAB_BPE = 2  /* "gpt2" */
} sq_vocab_type;

/* Pre-tokenizers (word splitting before byte-level BPE). */
typedef enum sq_vocab_pre {
    SQ_VOCAB_PRE_DEFAULT = 0, /* no or unknown-but-accepted name: GPT-2 splitting */
    SQ_VOCAB_PRE_LLAMA3 = 1,  /* llama3, llama-v3, llama-bpe, falcon3, pixtral, ... */
    SQ_VOCAB_PRE_GPT2 = 2,    /* gpt-2, phi-2, mpt, olmo, ... */
    SQ_VOCAB_PRE_QWEN2 = 3    /* qwen2 (Qwen2, Qwen2.5, Qwen3), deepseek-r1-qwen: Llama-3's with single digits */
} sq_vocab_pre;

/* Token types as stored in tokenizer.ggml.token_type. */
typedef enum sq_token_type {
    SQ_TOKEN_TYPE_UNDEFINED = 0,
    SQ_TOKEN_TYPE_NORMAL = 1,
    SQ_TOKEN_TYPE_UNKNOWN = 2,
    SQ_TOKEN_TYPE_CONTROL = 3,
    SQ_TOKEN_TYPE_USER_DEFINED = 4,
    SQ_TOKEN_TYPE_UNUSED = 5,
    SQ_TOKEN_TYPE_BYTE = 6
} sq_token_type;

/* Everything a vocabulary is built from. Fill with sq_vocab_desc_init()
 * first: it sets the special ids to SQ_TOKEN_DEFAULT and the flags to -1
 * ("kind's default"). Strings need not be NUL-terminated when their lengths
 * are given. */
typedef struct sq_vocab_desc {
    const char *model;          /* "llama" or "gpt2" (required) */
    const char *pre;            /* tokenizer.ggml.pre; NULL = default */
    const char *name;           /* general.name (phi-3 strip rules); may be NULL */
    int32_t n_tokens;
    const char *const *tokens;  /* n_tokens strings */
    const uint32_t *token_lens; /* their lengths, or NULL for NUL-terminated */
    const float *scores;        /* n_tokens, or NULL (all 0) */
    const int32_t *token_types; /* n_tokens sq_token_type values, or NULL (all normal) */
    int64_t n_merges;           /* gpt2: "left right" strings, rank = index */
    const char *const *merges;
    const uint32_t *merge_lens; /* or NULL for NUL-terminated */
    sq_token bos, eos, unk, pad, eot; /* SQ_TOKEN_DEFAULT, SQ_TOKEN_NULL or an id */
    int add_bos, add_eos, add_space_prefix; /* -1 default, 0 false, 1 true */
} sq_vocab_desc;

typedef struct sq_vocab sq_vocab;
typedef struct sq_gguf sq_gguf;

void sq_vocab_desc_init(sq_vocab_desc *d);

/* Builds a vocabulary. Errors (SQ_EINVAL/SQ_EFORMAT with the reason): unknown
 * model, unknown pre-tokenizer, duplicate token, special id out of range,
 * add_bos/add_eos without the token. */
sq_status sq_vocab_create(const sq_vocab_desc *d, sq_vocab **out, sq_error *err);

/* Builds the vocabulary of a GGUF file from tokenizer.ggml.* (model, tokens,
 * scores, token_type, merges, bos/eos/unknown/padding/eot token ids,
 * add_bos_token, add_eos_token, add_space_prefix, pre) and general.name.
 * Errors name the key and the reason. */
sq_status sq_vocab_load_gguf(const sq_gguf *g, sq_vocab **out, sq_error *err);

/* Same from a GGUF file's path (a split model's first shard too), opened and
 * closed here: the vocabulary owns all it needs. Errors name the file. */
sq_status sq_vocab_load_file(const char *path, sq_vocab **out, sq_error *err);

/* Releases a vocabulary; NULL is a no-op. */
void sq_vocab_free(sq_vocab *v);

sq_vocab_type sq_vocab_get_type(const sq_vocab *v);
sq_vocab_pre sq_vocab_get_pre(const sq_vocab *v);
int32_t sq_vocab_n_tokens(const sq_vocab *v);
sq_token sq_vocab_bos(const sq_vocab *v); /* SQ_TOKEN_NULL when none */
sq_token sq_vocab_eos(const sq_vocab *v);
sq_token sq_vocab_eot(const sq_vocab *v);
sq_token sq_vocab_unk(const sq_vocab *v);
sq_token sq_vocab_pad(const sq_vocab *v);
bool sq_vocab_add_bos(const sq_vocab *v);
bool sq_vocab_add_eos(const sq_vocab *v);
/* True for tokens that end generation (EOS, EOT and the usual end markers). */
bool sq_vocab_is_eog(const sq_vocab *v, sq_token t);
/* Stored text of a token (NUL-terminated, owned by v); NULL if out of range. */
const char *sq_vocab_token_text(const sq_vocab *v, sq_token t, size_t *len);
float sq_vocab_token_score(const sq_vocab *v, sq_token t);
sq_token_type sq_vocab_token_type(const sq_vocab *v, sq_token t);
/* The id of a token whose stored text is exactly text[0..len); SQ_TOKEN_NULL if none. */
sq_token sq_vocab_find(const sq_vocab *v, const char *text, size_t len);

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is handled as llama.cpp
 * does). add_special: BOS/EOS as the vocabulary asks (add_bos/add_eos).
 * parse_special: control tokens written in the text become those tokens.
 * On success *out is a malloc'd array of *n_out ids (the caller frees it
 * with free(); NULL when *n_out is 0). Fails only with SQ_ENOMEM. */
sq_status sq_tokenize(const sq_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                      sq_token **out, size_t *n_out, sq_error *err);

/* The text a token stands for (what `sq run` prints): "▁" becomes a space,
 * byte tokens become their byte, GPT-2 byte characters are decoded. Control
 * and unknown tokens give "" unless special. The bytes are owned by v (not
 * NUL-terminated in general: use *len); "" for an id out of range. A single
 * piece may be an incomplete UTF-8 sequence (byte fallback): streaming
 * callers should hold back partial characters. */
const char *sq_vocab_piece(const sq_vocab *v, sq_token t, bool special, size_t *len);

/* Joins the pieces of tokens[0..n) as llama.cpp's llama_detokenize: the
 * leading space of an SPM vocabulary's first token is dropped; remove_special
 * drops a leading BOS / trailing EOS the vocabulary adds; unparse_special
 * renders control tokens; BPE vocabularies clean spaces before punctuation as
 * llama.cpp does. *out is malloc'd and NUL-terminated (free() it). */
sq_status sq_detokenize(const sq_vocab *v, const sq_token *tokens, size_t n, bool remove_special,
                        bool unparse_special, char **out, size_t *len, sq_error *err);

/* For streaming pieces: how many bytes at the end of s[0..n) begin a UTF-8
 * character that is not complete yet (0..3). Print s[0..n-k) now and keep
 * the k bytes for the next piece. Bytes that can never become valid UTF-8
 * are not held back. */
size_t sq_utf8_incomplete_tail(const char *s, size_t n);

/* One case of llama.cpp's tokenizer tests, as reported to a caller. */
typedef struct sq_vocab_case {
    size_t index;          /* 1-based */
    const char *input;     /* the input text (not NUL-terminated) */
    size_t input_len;
    const char *expected;  /* its line of expected ids, NUL-terminated, without the newline */
    const sq_token *got;   /* the ids the vocabulary gives */
    size_t n_got;
} sq_vocab_case;
typedef void (*sq_vocab_case_fn)(void *ud, const sq_vocab_case *c);

/* Runs llama.cpp's test-tokenizer-0 cases: inp holds the inputs separated
 * by "\n__ggml_vocab_test__\n", expected one line of ids (decimal, separated
 * by spaces) per input. Each input is tokenized without BOS and without
 * parsing special tokens and compared; on_fail (may be NULL) sees each
 * mismatch. *n_cases and *n_failed count what ran (also on an error).
 * Errors: SQ_EFORMAT when expected has fewer lines than inp has inputs, a
 * tokenizer error. Neither buffer is modified. */
sq_status sq_vocab_check_cases(const sq_vocab *v, const char *inp, size_t inp_len, const char *expected,
                               size_t expected_len, sq_vocab_case_fn on_fail, void *ud, int *n_cases, int *n_failed,
                               sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_TOKENIZER_H */
