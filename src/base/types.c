/*
 * types.c — the ggml type table (spec section 7) and SmarterQuant row geometry.
 */
#include "sq/types.h"

#include <strings.h>

#define T(ID, NAME, BS, TS, W, Q, IM, DOT) \
    [SQ_TYPE_##ID] = { SQ_TYPE_##ID, NAME, BS, TS, W, Q, IM, SQ_TYPE_##DOT, 0 }
/* ik_llama.cpp's types: META bytes of row scale before the blocks of a row. */
#define TK(ID, NAME, BS, TS, DOT, META) \
    [SQ_TYPE_##ID] = { SQ_TYPE_##ID, NAME, BS, TS, true, true, false, SQ_TYPE_##DOT, META }

/* Indexed by id; entries with name == NULL are unknown or removed ids. */
static const sq_type_info type_table[SQ_TYPE_COUNT] = {
    /*  id        name       block bytes weight quant imatrix vec_dot */
    T(F32,     "f32",     1,   4,   true,  false, false, F32),
    T(F16,     "f16",     1,   2,   true,  false, false, F16),
    T(Q4_0,    "q4_0",    32,  18,  true,  true,  false, Q8_0),
    T(Q4_1,    "q4_1",    32,  20,  true,  true,  false, Q8_1),
    T(Q5_0,    "q5_0",    32,  22,  true,  true,  false, Q8_0),
    T(Q5_1,    "q5_1",    32,  24,  true,  true,  false, Q8_1),
    T(Q8_0,    "q8_0",    32,  34,  true,  true,  false, Q8_0),
    T(Q8_1,    "q8_1",    32,  36,  false, true,  false, Q8_1),
    T(Q2_K,    "q2_K",    256, 84,  true,  true,  false, Q8_K),
    T(Q3_K,    "q3_K",    256, 110, true,  true,  false, Q8_K),
    T(Q4_K,    "q4_K",    256, 144, true,  true,  false, Q8_K),
    T(Q5_K,    "q5_K",    256, 176, true,  true,  false, Q8_K),
    T(Q6_K,    "q6_K",    256, 210, true,  true,  false, Q8_K),
    T(Q8_K,    "q8_K",    256, 292, false, true,  false, Q8_K),
    T(IQ2_XXS, "iq2_xxs", 256, 66,  true,  true,  true,  Q8_K),
    T(IQ2_XS,  "iq2_xs",  256, 74,  true,  true,  true,  Q8_K),
    T(IQ3_XXS, "iq3_xxs", 256, 98,  true,  true,  false, Q8_K),
    T(IQ1_S,   "iq1_s",   256, 50,  true,  true,  true,  Q8_K),
    T(IQ4_NL,  "iq4_nl",  32,  18,  true,  true,  false, Q8_0),
    T(IQ3_S,   "iq3_s",   256, 110, true,  true,  false, Q8_K),
    T(IQ2_S,   "iq2_s",   256, 82,  true,  true,  true,  Q8_K),
    T(IQ4_XS,  "iq4_xs",  256, 136, true,  true,  false, Q8_K),
    T(I8,      "i8",      1,   1,   false, false, false, I8),
    T(I16,     "i16",     1,   2,   false, false, false, I16),
    T(I32,     "i32",     1,   4,   false, false, false, I32),
    T(I64,     "i64",     1,   8,   false, false, false, I64),
    T(F64,     "f64",     1,   8,   false, false, false, F64),
    T(IQ1_M,   "iq1_m",   256, 56,  true,  true,  true,  Q8_K),
    T(BF16,    "bf16",    1,   2,   true,  false, false, BF16),
    T(TQ1_0,   "tq1_0",   256, 54,  true,  true,  false, Q8_K),
    T(TQ2_0,   "tq2_0",   256, 66,  true,  true,  false, Q8_K),
    T(MXFP4,   "mxfp4",   32,  17,  true,  true,  false, Q8_0),
    T(NVFP4,   "nvfp4",   64,  36,  true,  true,  false, Q8_0),
    T(Q1_0,    "q1_0",    128, 18,  true,  true,  false, Q8_0),
    T(Q2_0,    "q2_0",    64,  18,  true,  true,  false, Q8_0),
    /*  id         name        block bytes vec_dot row meta  (ik_llama.cpp's type traits) */
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

sq_status sq_mixed_row_bytes(const int types[4], int64_t C, size_t *out, sq_error *err)
{
    if (C <= 0) return sq_error_set(err, SQ_EINVAL, "row length %lld is not positive", (long long)C);
    size_t total = 0;
    const int64_t nseg = sq_n_segments(C);
    for (int64_t s = 0; s < nseg; s++) {
        const int t = sq_segment_type(types, s);
        const int64_t len = sq_segment_len(C, s);
        const sq_type_info *ti = sq_type_info_get(t);
        if (!ti)
            return sq_error_set(err, SQ_EINVAL, "segment %lld: unknown or removed type id %d", (long long)s, t);
        if (!ti->is_weight)
            return sq_error_set(err, SQ_EINVAL, "segment %lld: type %s (%d) is not usable for weights",
                                (long long)s, ti->name, t);
        if (len % ti->block_size != 0)
            return sq_error_set(err, SQ_EINVAL,
                                "segment %lld: type %s has blocks of %d columns, which do not divide the "
                                "segment length %lld",
                                (long long)s, ti->name, ti->block_size, (long long)len);
        total += sq_row_size(t, len);
    }
    *out = total;
    return SQ_OK;
}
