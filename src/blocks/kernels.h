/*
 * src/blocks/kernels.h — the private kernel table behind sq/blocks.h.
 *
 * One sq__kernels entry per type id. Family files (float.c, legacy.c,
 * kquants.c, iquants.c, iq1.c, iq2.c, iq3.c, ternary.c) fill the scalar entries in their sq__register_*()
 * function; x86 files (x86/kernels_avx2.c, x86/kernels_avx512.c) then override the hot
 * entries with SIMD versions. dispatch.c builds the table once, at first use.
 */
#ifndef SQ_BLOCKS_KERNELS_H
#define SQ_BLOCKS_KERNELS_H

#include "blocks_shared.h" /* sq__vec_dot_fn, sq__from_float_fn */

/* Quantize one row of n values (n a multiple of the block size); imatrix may be NULL. */
typedef void (*sq__quantize_fn)(const float *x, void *y, int64_t n, const float *imatrix);
typedef void (*sq__dequantize_fn)(const void *x, float *y, int64_t n);

/* Builds what a quantizer needs before its first call (the codebook search
 * structures of the i-quants); false when memory ran out. Thread-safe. */
typedef bool (*sq__prepare_fn)(void);

/* A quantizer that needs scratch proportional to the row (ik's row-scale
 * types keep every block scale of the row until the row scale is known):
 * work holds ws_per_256 * n / 256 floats, provided by the dispatcher. */
typedef void (*sq__quantize_ws_fn)(const float *x, void *y, int64_t n, const float *imatrix, float *work);

typedef struct sq__kernels {
    sq__quantize_fn quantize;     /* f32 -> blocks; NULL if unsupported */
    sq__dequantize_fn dequantize; /* blocks -> f32 */
    sq__vec_dot_fn vec_dot;       /* with the vec_dot_type */
    sq__from_float_fn from_float; /* only for activation types */
    sq__prepare_fn prepare;       /* called before quantize, if set */
} sq__kernels;

/* The quantizers that need row scratch, in a table of their own (indexed by
 * type id; fn NULL elsewhere): work holds per_256 * (n / 256 + 1) floats. */
typedef struct sq__quantize_ws {
    sq__quantize_ws_fn fn;
    int per_256;
} sq__quantize_ws;

/* Scalar registrations, one per family file. */
void sq__register_float(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_legacy(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_kquants(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_iquants(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_iq1(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_iq2(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_iq3(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_ternary(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_ik(sq__kernels table[SQ_TYPE_COUNT], sq__quantize_ws ws[SQ_TYPE_COUNT]);
/* SIMD overrides, each called only when the CPU has the ISA. */
void sq__register_avx2(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_avx512(sq__kernels table[SQ_TYPE_COUNT]);
void sq__register_avx512_vbmi(sq__kernels table[SQ_TYPE_COUNT]); /* the AMX level: VBMI kernels */

/* The row-scratch quantizers (built with the tables). */
const sq__quantize_ws *sq__quantize_ws_table(void);

/* The table in effect (built on first call). */
const sq__kernels *sq__kernel_table(void);
/* The scalar-only table (for tests comparing SIMD with the reference). */
const sq__kernels *sq__kernel_table_scalar(void);
/* The best ISA of this CPU, whatever SQ_ISA or sq_blocks_set_isa() chose. */
sq_isa sq__cpu_isa(void);

#endif
