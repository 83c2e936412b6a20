/*
 * types.c — the ggml type table (spec section 7) and SmarterQuant row geometry:
 * the size of a mixed row and the check of a column permutation.
 */
#include "sq/types.h"

#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

/* IM: imatrix need, NO (optional), LQ (llama-quantize refuses it without one)
 * or GG (ggml's quantizer needs one); see sq_imatrix_need. */
#define SQ_IMATRIX_NO SQ_IMATRIX_OPTIONAL
#define SQ_IMATRIX_LQ SQ_IMATRIX_REFUSED
#define SQ_IMATRIX_GG SQ_IMATRIX_REQUIRED
#define T(ID, NAME, BS, TS, W, Q, IM, DOT) \
    [SQ_TYPE_##ID] = { SQ_TYPE_##ID, NAME, BS, TS, W, Q, SQ_IMATRIX_##IM, SQ_TYPE_##DOT, 0 }
/* ik_llama.cpp's types (its type traits): META bytes of row scale before the
 * blocks of a row; all quantize with or without an imatrix. */
#define TK(ID, NAME, BS, TS, DOT, META) \
    [SQ_TYPE_##ID] = { SQ_TYPE_##ID, NAME, BS, TS, true, true, SQ_IMATRIX_OPTIONAL, SQ_TYPE_##DOT, META }

/* Indexed by id; entries with name == NULL are unknown or removed ids. */
static const sq_type_info type_table[SQ_TYPE_COUNT] = {
    /*  id        name       block bytes weight quant imatrix vec_dot */
    T(F32,     "f32",     1,   4,   true,  false, NO,    F32),
    T(F16,     "f16",     1,   2,   true,  false, NO,    F16),
    T(Q4_0,    "q4_0",    32,  18,  true,  true,  NO,    Q8_0),
    T(Q4_1,    "q4_1",    32,  20,  true,  true,  NO,    Q8_1),
    T(Q5_0,    "q5_0",    32,  22,  true,  true,  NO,    Q8_0),
    T(Q5_1,    "q5_1",    32,  24,  true,  true,  NO,    Q8_1),
    T(Q8_0,    "q8_0",    32,  34,  true,  true,  NO,    Q8_0),
    T(Q8_1,    "q8_1",    32,  36,  false, true,  NO,    Q8_1),
    T(Q2_K,    "q2_K",    256, 84,  true,  true,  NO,    Q8_K),
    T(Q3_K,    "q3_K",    256, 110, true,  true,  NO,    Q8_K),
    T(Q4_K,    "q4_K",    256, 144, true,  true,  NO,    Q8_K),
    T(Q5_K,    "q5_K",    256, 176, true,  true,  NO,    Q8_K),
    T(Q6_K,    "q6_K",    256, 210, true,  true,  NO,    Q8_K),
    T(Q8_K,    "q8_K",    256, 292, false, true,  NO,    Q8_K),
    T(IQ2_XXS, "iq2_xxs", 256, 66,  true,  true,  GG,    Q8_K),
    T(IQ2_XS,  "iq2_xs",  256, 74,  true,  true,  GG,    Q8_K),
    T(IQ3_XXS, "iq3_xxs", 256, 98,  true,  true,  LQ,    Q8_K),
    T(IQ1_S,   "iq1_s",   256, 50,  true,  true,  GG,    Q8_K),
    T(IQ4_NL,  "iq4_nl",  32,  18,  true,  true,  NO,    Q8_0),
    T(IQ3_S,   "iq3_s",   256, 110, true,  true,  NO,    Q8_K),
    T(IQ2_S,   "iq2_s",   256, 82,  true,  true,  LQ,    Q8_K),
    T(IQ4_XS,  "iq4_xs",  256, 136, true,  true,  NO,    Q8_K),
    T(I8,      "i8",      1,   1,   false, false, NO,    I8),
    T(I16,     "i16",     1,   2,   false, false, NO,    I16),
    T(I32,     "i32",     1,   4,   false, false, NO,    I32),
    T(I64,     "i64",     1,   8,   false, false, NO,    I64),
    T(F64,     "f64",     1,   8,   false, false, NO,    F64),
    T(IQ1_M,   "iq1_m",   256, 56,  true,  true,  LQ,    Q8_K),
    T(BF16,    "bf16",    1,   2,   true,  false, NO,    BF16),
    T(TQ1_0,   "tq1_0",   256, 54,  true,  true,  NO,    Q8_K),
    T(TQ2_0,   "tq2_0",   256, 66,  true,  true,  NO,    Q8_K),
    T(MXFP4,   "mxfp4",   32,  17,  true,  true,  NO,    Q8_0),
    T(NVFP4,   "nvfp4",   64,  36,  true,  true,  NO,    Q8_0),
    T(Q1_0,    "q1_0",    128, 18,  true,  true,  NO,    Q8_0),
    T(Q2_0,    "q2_0",    64,  18,  true,  true,  NO,    Q8_0),
    /*  id         name        block bytes vec_dot row meta */
    TK(Q6_0,    "q6_0",    32,  26,  Q8_0, 0),
    TK(IQ2_K,   "iq2_k",   256, 76,  Q8_K, 0),
    TK(IQ3_K,   "iq3_k",   256, 110, Q8_K, 0),
    TK(IQ4_K,   "iq4_k",   256, 144, Q8_K, 0),
    TK(IQ5_K,   "iq5_k",   256, 176, Q8_K, 0),
    TK(IQ6_K,   "iq6_k",   256, 212, Q8_K, 0),
    TK(IQ4_KS,  "iq4_ks",  256, 136, Q8_K, 4),
    TK(IQ2_KS,  "iq2_ks",  256, 70,  Q8_K, 2),
    TK(IQ4_KSS, "iq4_kss", 256, 128, Q8_K, 4),
    TK(IQ5_KS,  "iq5_ks",  256, 168, Q8_K, 4),
    TK(IQ2_KT,  "iq2_kt",  256, 68,  Q8_K, 4),
    TK(IQ3_KT,  "iq3_kt",  256, 100, Q8_K, 4),
    TK(IQ4_KT,  "iq4_kt",  256, 128, Q8_K, 4),
    TK(IQ3_KS,  "iq3_ks",  256, 102, Q8_K, 2),
    TK(IQ2_KL,  "iq2_kl",  256, 86,  Q8_K, 2),
};
#undef T
#undef TK
#undef SQ_IMATRIX_NO
#undef SQ_IMATRIX_LQ
#undef SQ_IMATRIX_GG

const sq_type_info *sq_type_info_get(int id)
{
    if (id < 0 || id >= SQ_TYPE_COUNT || type_table[id].name == NULL) return NULL;
    return &type_table[id];
}

const char *sq_type_name(int id)
{
    const sq_type_info *ti = sq_type_info_get(id);
    return ti ? ti->name : "unknown";
}

int sq_type_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < SQ_TYPE_COUNT; i++)
        if (type_table[i].name && strcasecmp(type_table[i].name, name) == 0) return i;
    return -1;
}

size_t sq_row_size(int type, int64_t n)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti || n <= 0 || n % ti->block_size != 0) return 0;
    return (size_t)ti->row_meta + (size_t)(n / ti->block_size) * (size_t)ti->type_size;
}

/* Bytes of segment s of a row of C columns, after checking its type: known,
 * a weight type, blocks that divide the segment. */
static sq_status segment_bytes(const int types[4], int64_t C, int64_t s, uint64_t *out, sq_error *err)
{
    const int t = sq_segment_type(types, s);
    const int64_t len = sq_segment_len(C, s);
    const sq_type_info *ti = sq_type_info_get(t);
    if (!ti) return sq_error_set(err, SQ_EINVAL, "segment %lld: unknown or removed type id %d", (long long)s, t);
    if (!ti->is_weight)
        return sq_error_set(err, SQ_EINVAL, "segment %lld: type %s (%d) is not usable for weights", (long long)s,
                            ti->name, t);
    if (len % ti->block_size != 0)
        return sq_error_set(err, SQ_EINVAL,
                            "segment %lld: type %s has blocks of %d columns, which do not divide the segment length "
                            "%lld",
                            (long long)s, ti->name, ti->block_size, (long long)len);
    *out = sq_row_size(t, len);
    return SQ_OK;
}

/* Segments 0..3 and the last one hold every distinct (type, length) pair of
 * a row; the ones between are full segments of types[3], the same as segment
 * 3, so they are counted by one multiplication (a row may have 2^40 columns
 * in a hostile file header). */
sq_status sq_mixed_row_bytes(const int types[4], int64_t C, size_t *out, sq_error *err)
{
    if (C <= 0) return sq_error_set(err, SQ_EINVAL, "row length %lld is not positive", (long long)C);
    const int64_t nseg = sq_n_segments(C);
    uint64_t total = 0, b = 0, b3 = 0;
    for (int64_t s = 0; s < nseg && s < 4; s++) {
        sq_status st = segment_bytes(types, C, s, &b, err);
        if (st != SQ_OK) return st;
        total += b;
        b3 = b;
    }
    if (nseg > 4) {
        sq_status st = segment_bytes(types, C, nseg - 1, &b, err);
        if (st != SQ_OK) return st;
        uint64_t mid;
        if (__builtin_mul_overflow(b3, (uint64_t)(nseg - 5), &mid) || __builtin_add_overflow(total, mid, &total) ||
            __builtin_add_overflow(total, b, &total) || total > SIZE_MAX)
            return sq_error_set(err, SQ_ERANGE, "a row of %lld columns overflows 64 bits", (long long)C);
    }
    *out = (size_t)total;
    return SQ_OK;
}

/* Checks length, range and uniqueness. A table of first positions (C int64s)
 * lets the message name both indices of a duplicate. */
sq_status sq_perm_validate(const int32_t *perm, int64_t len, int64_t C, sq_error *err)
{
    if (len != C)
        return sq_error_set(err, SQ_EINVAL, "permutation has %lld entries, but the tensor has %lld columns",
                            (long long)len, (long long)C);
    if (C <= 0) return sq_error_set(err, SQ_EINVAL, "permutation of %lld columns", (long long)C);
    if (!perm) return sq_error_set(err, SQ_EINVAL, "permutation of %lld columns is missing", (long long)C);
    int64_t *first = malloc((size_t)C * sizeof *first);
    if (!first) return sq_error_set(err, SQ_ENOMEM, "permutation of %lld columns: out of memory", (long long)C);
    for (int64_t i = 0; i < C; i++) first[i] = -1;
    sq_status st = SQ_OK;
    for (int64_t j = 0; j < C; j++) {
        const int64_t v = perm[j];
        if (v < 0 || v >= C) {
            st = sq_error_set(err, SQ_ERANGE, "permutation index %lld: value %lld is out of range 0..%lld",
                              (long long)j, (long long)v, (long long)(C - 1));
            break;
        }
        if (first[v] >= 0) {
            st = sq_error_set(err, SQ_EINVAL,
                              "permutation index %lld: value %lld is a duplicate (already at index %lld)",
                              (long long)j, (long long)v, (long long)first[v]);
            break;
        }
        first[v] = j;
    }
    free(first);
    return st;
}
