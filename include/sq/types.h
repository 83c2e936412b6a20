/*
 * sq/types.h — the ggml tensor type table: ids as written in GGUF files,
 * names, block geometry, and the SmarterQuant mixed-row geometry.
 *
 * Pure data: no kernels here (those are in sq/blocks.h). Both the GGUF reader
 * (for sizes and offsets) and everything above it use this one table.
 */
#ifndef SQ_TYPES_H
#define SQ_TYPES_H

#include "sq/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ggml type ids (ggml 0.25), the values stored in GGUF tensor infos. */
typedef enum sq_type {
    SQ_TYPE_F32 = 0,
    SQ_TYPE_F16 = 1,
    SQ_TYPE_Q4_0 = 2,
    SQ_TYPE_Q4_1 = 3,
    SQ_TYPE_Q5_0 = 6,
    SQ_TYPE_Q5_1 = 7,
    SQ_TYPE_Q8_0 = 8,
    SQ_TYPE_Q8_1 = 9,
    SQ_TYPE_Q2_K = 10,
    SQ_TYPE_Q3_K = 11,
    SQ_TYPE_Q4_K = 12,
    SQ_TYPE_Q5_K = 13,
    SQ_TYPE_Q6_K = 14,
    SQ_TYPE_Q8_K = 15,
    SQ_TYPE_IQ2_XXS = 16,
    SQ_TYPE_IQ2_XS = 17,
    SQ_TYPE_IQ3_XXS = 18,
    SQ_TYPE_IQ1_S = 19,
    SQ_TYPE_IQ4_NL = 20,
    SQ_TYPE_IQ3_S = 21,
    SQ_TYPE_IQ2_S = 22,
    SQ_TYPE_IQ4_XS = 23,
    SQ_TYPE_I8 = 24,
    SQ_TYPE_I16 = 25,
    SQ_TYPE_I32 = 26,
    SQ_TYPE_I64 = 27,
    SQ_TYPE_F64 = 28,
    SQ_TYPE_IQ1_M = 29,
    SQ_TYPE_BF16 = 30,
    SQ_TYPE_TQ1_0 = 34,
    SQ_TYPE_TQ2_0 = 35,
    SQ_TYPE_MXFP4 = 39,
    SQ_TYPE_NVFP4 = 40,
    SQ_TYPE_Q1_0 = 41,
    SQ_TYPE_Q2_0 = 42,
    /* ik_llama.cpp's own types (ids as ik writes them; 43..132 are unused) */
    SQ_TYPE_Q6_0 = 133,
    SQ_TYPE_IQ2_K = 137,
    SQ_TYPE_IQ3_K = 138,
    SQ_TYPE_IQ4_K = 139,
    SQ_TYPE_IQ5_K = 140,
    SQ_TYPE_IQ6_K = 141,
    SQ_TYPE_IQ4_KS = 144,
    SQ_TYPE_IQ2_KS = 145,
    SQ_TYPE_IQ4_KSS = 146,
    SQ_TYPE_IQ5_KS = 152,
    SQ_TYPE_IQ2_KT = 153,
    SQ_TYPE_IQ3_KT = 154,
    SQ_TYPE_IQ4_KT = 155,
    SQ_TYPE_IQ3_KS = 156,
    SQ_TYPE_IQ2_KL = 157,
    SQ_TYPE_COUNT = 158 /* one past the largest id */
} sq_type;

/* Whether quantizing to a type needs an importance matrix. Two rules, both
 * llama.cpp's: llama-quantize refuses some target types without one (its
 * tensor_requires_imatrix: IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M);
 * ggml's quantizer itself needs one only for IQ2_XXS, IQ2_XS and IQ1_S. A
 * value other than SQ_IMATRIX_OPTIONAL is true in a condition: "the tools
 * refuse it without an imatrix". */
typedef enum sq_imatrix_need {
    SQ_IMATRIX_OPTIONAL = 0, /* quantizes with or without one */
    SQ_IMATRIX_REFUSED = 1,  /* llama-quantize refuses it without one; the quantizer would run */
    SQ_IMATRIX_REQUIRED = 2, /* the quantizer itself needs one (ggml_quantize_requires_imatrix) */
} sq_imatrix_need;

/* Static facts about one type. */
typedef struct sq_type_info {
    sq_type id;
    const char *name;     /* ggml's name: "f32", "q4_K", "iq4_xs", ... */
    int block_size;       /* elements per block */
    int type_size;        /* bytes per block */
    bool is_weight;       /* may be stored as a weight tensor (false: Q8_1, Q8_K, I8..I64, F64) */
    bool is_quantized;    /* a block-quantized type (not F32/F16/BF16/integers/F64) */
    sq_imatrix_need needs_imatrix; /* see sq_imatrix_need (nonzero: the tools refuse it without one) */
    sq_type vec_dot_type; /* activation type it pairs with on the CPU (ggml's vec_dot_type) */
    int row_meta;         /* bytes of per-row metadata before the blocks (ik's row scales; 0 for ggml's types) */
} sq_type_info;

/* Info for a type id, or NULL for an id that is unknown or removed (4, 5, 31-33, 36-38). */
const sq_type_info *sq_type_info_get(int id);

/* Name of a type id ("q4_K"), or "unknown". */
const char *sq_type_name(int id);

/* Type id for a name, case-insensitive ("Q4_K", "q4_k"), or -1. */
int sq_type_from_name(const char *name);

/* ggml_row_size: bytes of a row of n elements of type t, its per-row
 * metadata included (row_meta + n / block_size * type_size); 0 if t is unknown
 * or n is not a multiple of the block size. Every row size in the project
 * comes from here. An empty row (n = 0) is 0 bytes, so sq_row_size(t, k0)
 * stays the byte offset of column k0 of a row of a type without row scale. */
size_t sq_row_size(int type, int64_t n);

/* ---- SmarterQuant geometry (spec sections 1 and 4) ---- */
#define SQ_SEGMENT 256

/* Number of 256-column segments in a row of C columns. */
static inline int64_t sq_n_segments(int64_t C) { return (C + SQ_SEGMENT - 1) / SQ_SEGMENT; }

/* Type of segment s: types[min(s, 3)]. */
static inline int sq_segment_type(const int types[4], int64_t s) { return types[s < 3 ? s : 3]; }

/* Length of segment s of a row of C columns. */
static inline int64_t sq_segment_len(int64_t C, int64_t s)
{
    int64_t rest = C - s * SQ_SEGMENT;
    return rest < SQ_SEGMENT ? rest : SQ_SEGMENT;
}

/* Bytes of one mixed row (spec section 4: the sum of sq_row_size over its
 * segments), in time independent of C. Returns SQ_OK and sets *out, or an
 * error naming the first segment whose type is unknown, not a weight type, or
 * whose block size does not divide the segment length, or an overflow. The
 * one answer to "how long is a SmarterQuant row" (reader, writer, quantize,
 * engine, planner). */
sq_status sq_mixed_row_bytes(const int types[4], int64_t C, size_t *out, sq_error *err);

/* Checks a column permutation of C columns (spec section 3): len == C and
 * every 0..C-1 exactly once. The message names the first out-of-range or
 * duplicate index (SQ_ERANGE / SQ_EINVAL). */
sq_status sq_perm_validate(const int32_t *perm, int64_t len, int64_t C, sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_TYPES_H */
