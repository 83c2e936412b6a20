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

/* The run kernel (gemm.h, sq__runs_fn) with the 256-bit bodies: per block of
 * a run, kb_T of each of NR rows (1 or 4) into that row's accumulator, each
 * row reduced once after all runs, 4 rows in one hsum4_ps. */
#define YMM_RUN(T)                                                                                          \
    for (int64_t i = 0; i < nb; i++)                                                                        \
        SQ_UNROLL for (int r = 0; r < NR; r++) kb_##T((const blk_##T *)(wr + (size_t)r * ws), i, xr, 0, &acc[r], 1);

SQ_INLINE void ymm_band(const sq__krun *run, int nrun, const char *w, size_t ws, const char *x, float *y,
                        bool accumulate, const int NR)
{
    __m256 acc[4];
    SQ_UNROLL for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int j = 0; j < nrun; j++) {
        const int64_t nb = run[j].n / 256;
        const char *wr = w + run[j].w_off, *xr = x + run[j].x_off;
        switch (run[j].type) {
        case SQ_TYPE_Q2_K: YMM_RUN(q2_K) break;
        case SQ_TYPE_Q3_K: YMM_RUN(q3_K) break;
        case SQ_TYPE_Q4_K: YMM_RUN(q4_K) break;
        case SQ_TYPE_Q5_K: YMM_RUN(q5_K) break;
        case SQ_TYPE_IQ4_XS: YMM_RUN(iq4_xs) break;
        default: YMM_RUN(q6_K) break;
        }
    }
    if (NR == 4) {
        store4_ps(y, hsum4_ps(acc[0], acc[1], acc[2], acc[3]), accumulate);
    } else {
        const float v = hsum_ps(acc[0]);
        y[0] = accumulate ? y[0] + v : v;
    }
}
#undef YMM_RUN

static void runs_ymm(const sq__krun *run, int nrun, const void *w, size_t ws, int nr, const void *x, float *y,
                     bool accumulate)
{
    int r = 0;
    for (; r + 4 <= nr; r += 4) ymm_band(run, nrun, (const char *)w + (size_t)r * ws, ws, x, y + r, accumulate, 4);
    for (; r < nr; r++) ymm_band(run, nrun, (const char *)w + (size_t)r * ws, ws, x, y + r, accumulate, 1);
}

sq__runs_fn sq__runs_avx2(void) { return runs_ymm; }
