/*
 * sq/blocks.h — ggml block formats: quantize, dequantize, activation
 * quantizers and dot products, bit-exact with ggml.
 *
 * Each type has a scalar reference (its specification) and, where it pays,
 * AVX2 / AVX-512 variants chosen once at run time from the CPU.
 * SQ_FORCE_SCALAR=1 in the environment forces the scalar path. Kernels never
 * allocate and never fail: callers validate sizes first (sq_row_size() != 0).
 */
#ifndef SQ_BLOCKS_H
#define SQ_BLOCKS_H

#include "sq/base.h"
#include "sq/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Each level includes the ones below it: SQ_ISA_AMX is AVX-512 plus Intel AMX
 * tiles (AMX-TILE, AMX-INT8) for the prompt's matrix products. */
typedef enum sq_isa { SQ_ISA_SCALAR = 0, SQ_ISA_AVX2 = 1, SQ_ISA_AVX512 = 2, SQ_ISA_AMX = 3 } sq_isa;

/* The instruction set the kernels use (detected once; SQ_FORCE_SCALAR=1 forces scalar). */
sq_isa sq_blocks_isa(void);
/* Selects an ISA for this process (for tests and benchmarks); it is capped at
 * what the CPU supports. Returns the one in effect. Not thread-safe: call
 * before starting work. */
sq_isa sq_blocks_set_isa(sq_isa isa);
const char *sq_isa_name(sq_isa isa);
/* The ISA named name ("scalar", "avx2", "avx512", "amx", as sq_isa_name gives and
 * SQ_ISA takes) into *isa; false for any other name. */
bool sq_isa_from_name(const char *name, sq_isa *isa);

/* Whether this build can quantize (from f32) to type t, dequantize it, and
 * dot it with its vec_dot_type. */
bool sq_blocks_can_quantize(int type);
bool sq_blocks_can_dequantize(int type);
bool sq_blocks_can_dot(int type);

/* What quantizing to type costs this build: CPU nanoseconds per value of
 * sq_quantize_rows with importance weights on 256-value rows, one thread, as
 * bench/bench_qcost measured it (a property of the type's quantizer, fixed at
 * build time: the same figure on every machine, so that choices made by it
 * are deterministic); 0 for a type without a quantizer. */
double sq_blocks_quantize_cost(int type);

/* ggml_quantize_chunk for nrows rows of n_per_row values: exactly ggml's bytes.
 * imatrix holds n_per_row importance weights or is NULL. Errors (message names
 * the type and the reason): unsupported type, n_per_row not a multiple of the
 * block size, a type that needs an importance matrix and got none
 * (sq_type_info's needs_imatrix == SQ_IMATRIX_REQUIRED), no memory for a codebook type's search tables
 * (built once, at the first quantization to the type). */
sq_status sq_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix, sq_error *err);

/* ggml's to_float for one row of n values (n a multiple of the block size). */
void sq_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* ggml's CPU from_float for an activation type (Q8_0, Q8_1, Q8_K, F16, BF16, F32):
 * n floats to sq_row_size(act_type, n) bytes at dst. */
void sq_quantize_act(int act_type, const float *x, void *dst, int64_t n);

/* Dot product of one weight row of `type` (n values) with activations in
 * sq_type_info_get(type)->vec_dot_type. */
float sq_vec_dot(int type, int64_t n, const void *w, const void *x_act);

#ifdef __cplusplus
}
#endif
#endif /* SQ_BLOCKS_H */
