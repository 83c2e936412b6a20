/*
 * kernels_avx2.c — the AVX2 + FMA + F16C kernels (vec_dot, tile products,
 * activation quantizers, dequantizers), registered over the scalar table only
 * when the CPU has AVX2. The kernel bodies live in simd_dot.h / simd_conv.h,
 * shared with kernels_avx512.c, which compiles them with VNNI and AVX-512.
 */
#include "simd_dot.h"
#include "simd_conv.h"
#include "simd_f16gemm.h"

#define SQ_REGISTER_FN sq__register_avx2
#define SQ_GEMM_FN sq__gemm_avx2
#include "simd_register.h"

sq__runs_fn sq__runs_avx2(void) { return NULL; }
