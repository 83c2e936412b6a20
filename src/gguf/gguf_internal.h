/*
 * gguf_internal.h — pieces shared by the GGUF reader (reader.c, kv.c) and the
 * writer (writer.c): on-disk constants, element sizes, the SmarterQuant
 * block_types parser and the one size rule both sides must agree on.
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

/* Key suffixes of a SmarterQuant tensor NAME (spec section 5). */
#define SQ__SQ_ENABLED ".smarterquant.enabled"
#define SQ__SQ_PERM ".smarterquant.permutation"
#define SQ__SQ_TYPES ".smarterquant.block_types"

/* Size in bytes of one element of a fixed-size value type; 0 for string,
 * array and unknown types. */
size_t sq__gguf_fixed_size(uint32_t type);

/* Smallest number of bytes one element of type t can occupy in a file
 * (fixed size, 8 for a string, 12 for an array); 0 for an unknown type. */
size_t sq__gguf_min_size(uint32_t type);

/* Parses a block_types string: a strict JSON array of exactly four
 * non-negative integers ("[8,14,13,12]", whitespace allowed). On failure
 * writes the reason (without context) into why[why_n] and returns false. */
bool sq__gguf_parse_block_types(const char *s, size_t n, int out[4], char *why, size_t why_n);

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
