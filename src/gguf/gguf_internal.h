/*
 * gguf_internal.h — pieces shared by the GGUF reader (reader.c, kv.c) and the
 * writer (writer.c): on-disk constants, element sizes, the reading of a
 * tensor's SmarterQuant keys (sqmeta.c) and the one size rule both sides must
 * agree on.
 *
 * Private to src/gguf/: names are sq__gguf_*.
 */
#ifndef SQ_GGUF_INTERNAL_H
#define SQ_GGUF_INTERNAL_H

#include "sq/gguf.h"

#define SQ__GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define SQ__GGUF_VERSION 3u
#define SQ__GGUF_HEADER_BYTES 24u  /* magic, version, n_tensors, n_kv */
#define SQ__GGUF_MAX_KEY 65535u    /* longest key or tensor name we accept */
#define SQ__GGUF_MAX_NEST 8        /* deepest array-of-array nesting we accept */
#define SQ__GGUF_LLAMA_MAX_NAME 64 /* ggml's GGML_MAX_NAME: names must be shorter */

/* The three keys of a SmarterQuant tensor NAME (spec section 5), by index;
 * their suffixes are spelled in sqmeta.c only. */
enum { SQ__SQ_ENABLED = 0, SQ__SQ_PERM = 1, SQ__SQ_TYPES = 2 };

/* "NAME" + suffix k, malloc'd (NULL when out of memory). */
char *sq__gguf_sq_key(const char *name, int k);

/* One key's value as stored: GGUF type and raw bytes (a string: u64 length,
 * then its text); at is the key's file offset for messages (0 in the writer). */
typedef struct sq__gguf_val {
    bool found;
    uint32_t type;
    const uint8_t *raw;
    uint64_t raw_len;
    uint64_t at;
} sq__gguf_val;

/* What a tensor's SmarterQuant keys say, checked by sq__gguf_sqmeta_scan. */
typedef struct sq__gguf_sqscan {
    bool on;               /* enabled is true */
    int types[4];          /* block_types (not yet checked against the shape: sq__gguf_tensor_size does) */
    const char *perm_text; /* the permutation's text, or NULL when the key is absent */
    size_t perm_len;
    int64_t n_perm;        /* its entries: 0 ("[]" or absent) or ne[0] */
} sq__gguf_sqscan;

/* Reads the values v[SQ__SQ_ENABLED..SQ__SQ_TYPES] of tensor `name` (row
 * length ne0): enabled must be a bool; when true, block_types a string with a
 * JSON array of exactly four ids, and the permutation absent or a string
 * with "[]" or ne0 entries (syntax and count checked, not yet the values).
 * On failure returns SQ_EFORMAT with the reason (naming the key) in why and
 * the offending key's offset in *at. */
sq_status sq__gguf_sqmeta_scan(const char *name, int64_t ne0, const sq__gguf_val v[3], sq__gguf_sqscan *out,
                               uint64_t *at, char *why, size_t why_n);
/* Parses a scanned permutation (n_perm > 0) into perm[n_perm] and checks it
 * is one (sq_perm_validate); SQ_EFORMAT with the reason in why otherwise. */
sq_status sq__gguf_sqmeta_perm(const char *name, const sq__gguf_sqscan *s, int32_t *perm, char *why, size_t why_n);

/* Size in bytes of one element of a fixed-size value type; 0 for string,
 * array and unknown types. */
size_t sq__gguf_fixed_size(uint32_t type);

/* Smallest number of bytes one element of type t can occupy in a file
 * (fixed size, 8 for a string, 12 for an array); 0 for an unknown type. */
size_t sq__gguf_min_size(uint32_t type);

/* The data size of a tensor: for an ordinary tensor ggml's rule (row length a
 * multiple of the block size, row_size * rows); for a SmarterQuant tensor
 * (sq_types != NULL) sq_mixed_row_bytes * rows, after checking that
 * sq_types[3] equals the declared type. ne[] holds n_dims dimensions, each
 * already checked non-negative. On failure writes the reason into why. */
bool sq__gguf_tensor_size(int n_dims, const int64_t *ne, int type, const int *sq_types, uint64_t *out, char *why,
                          size_t why_n);

/* Nonzero power of two. */
static inline bool sq__gguf_pow2(uint64_t a) { return a != 0 && (a & (a - 1)) == 0; }

/* x rounded up to a multiple of the power of two a (no overflow for x below 2^63). */
static inline uint64_t sq__gguf_align(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

#endif /* SQ_GGUF_INTERNAL_H */
