/*
 * src/blocks/gemm.h — the private side of the multi-row / multi-column
 * dot-product kernels behind sq_matmul: each ISA's tile and run kernels. The
 * kernel types and the ones in effect (sq__gemm_kernel, sq__gemm_generic,
 * sq__runs_kernel, sq__runs_handles) are in blocks_shared.h, which the
 * SmarterQuant mixed-row product in src/sqtensor/ uses too.
 */
#ifndef SQ_BLOCKS_GEMM_H
#define SQ_BLOCKS_GEMM_H

#include "blocks_shared.h"
#include "kernels.h"

/* The SIMD tile kernel of a type for an ISA (NULL when there is none: the
 * caller then falls back to sq__gemm_generic). */
sq__gemm_fn sq__gemm_avx2(int type);
sq__gemm_fn sq__gemm_avx512(int type);

/* The run kernel of an ISA (NULL when there is none). */
sq__runs_fn sq__runs_avx2(void);
sq__runs_fn sq__runs_avx512(void);

#endif
