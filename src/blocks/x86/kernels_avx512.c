/*
 * kernels_avx512.c — the AVX-512 kernels (F/BW/VL/DQ, VNNI, BF16): the shared
 * bodies of simd_dot.h / simd_conv.h compiled with vpdpbusd / vpdpwssd for the
 * integer dot products and 512-bit float paths, registered over the AVX2
 * entries only when the CPU has all of these.
 */
#include "simd_dot.h"
#include "simd_iq.h"
#include "simd_conv.h"
#include "simd_f16gemm.h"
#include "simd_zmm.h"
#include "simd_pair512.h"

#define SQ_REGISTER_FN sq__register_avx512
#define SQ_GEMM_FN sq__gemm_avx512
#include "simd_register.h"

/* The run kernel (gemm.h). */
sq__runs_fn sq__runs_avx512(void) { return runs_zmm; }

/* The kernels of the AMX level beyond the AVX-512 ones (CPUs with AMX have
 * VBMI: simd_ikz.h's IQ6_K limb kernel). */
void sq__register_avx512_vbmi(sq__kernels table[SQ_TYPE_COUNT]) { ikz_register_vbmi(table); }
