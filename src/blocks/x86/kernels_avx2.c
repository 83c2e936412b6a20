/*
 * kernels_avx2.c — the AVX2 + FMA + F16C kernels (vec_dot, tile products,
 * activation quantizers, dequantizers), registered over the scalar table only
 * when the CPU has AVX2. The kernel bodies live in simd_dot.h / simd_conv.h,
 * shared with kernels_avx512.c, which compiles them with VNNI and AVX-512.
 */
#include "simd_dot.h"
#include "simd_iq.h"
#include "simd_conv.h"
#include "simd_f16gemm.h"

#define SQ_REGISTER_FN sq__register_avx2
#define SQ_GEMM_FN sq__gemm_avx2
#include "simd_register.h"

/* Asks for the cache lines of the `size` bytes at p (a weight block of a
 * later band): the first byte of every 64, and the last. */
SQ_INLINE void prefetch_bytes(uintptr_t p, size_t size)
{
    for (size_t o = 0; o < size; o += 64) _mm_prefetch((const char *)(p + o), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + size - 1), _MM_HINT_T0);
}

/* The run kernel (gemm.h, sq__runs_fn) with the 256-bit bodies: per block of
 * a run, kb_T of each of NR rows (1 or 4) into that row's accumulator, each
 * row reduced once after all runs, 4 rows in one hsum4_ps. Interleaving the
 * rows' blocks gives the core 4 independent chains (walking the band's rows
 * one after the other measured 10-30% slower).
 *
 * But a band walks run 0 of its 4 rows, then run 1, ...: the addresses jump
 * back and forth by a row, which the hardware prefetchers stop following
 * once a row is longer than a few cache lines. With the weights coming from
 * memory or a contended L3 (a model larger than the cache, or a busy
 * machine), bands of 1536-column mixed rows (862 bytes) ran at half the
 * speed of row-by-row products. So with PF, for rows over PF_MIN_ROW bytes,
 * each block step asks for the same block of the next band's row (4 rows
 * on), a band's time (some hundred ns) ahead. Short rows go without: their
 * bands stay within a few lines, and the extra instructions and requests
 * measured 10% slower there. */
#define PF_MIN_ROW SQ__RUNS_PF_MIN_ROW_AVX2
#define YMM_RUN(T)                                                                                          \
    for (int64_t i = 0; i < nb; i++)                                                                        \
        SQ_UNROLL for (int r = 0; r < NR; r++) {                                                            \
            const char *wrow = wr + (size_t)r * ws;                                                         \
            if (PF) prefetch_bytes((uintptr_t)wrow + 4 * ws + (size_t)i * sizeof(blk_##T), sizeof(blk_##T)); \
            kb_##T((const blk_##T *)wrow, i, xr, 0, &acc[r], 1);                                            \
        }

SQ_INLINE void ymm_band(const sq__krun *run, int nrun, const char *w, size_t ws, const char *x, float *y,
                        bool accumulate, const int NR, const bool PF, const int LEG)
{
    __m256 acc[4];
    float sm[4] = { 0 }; /* the Q4_1/Q5_1 offset terms (KR32_CASES), added after the reduction */
    SQ_UNROLL for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int j = 0; j < nrun; j++) {
        const int64_t nb = run[j].n / 256, nb32 = run[j].n / 32;
        const char *wr = w + run[j].w_off, *xr = x + run[j].x_off;
        if (LEG && kr32_type(run[j].type)) {
            switch (run[j].type) {
            KR32_CASES(acc)
            default: break;
            }
            continue;
        }
        if (kb_iq_type(run[j].type)) {
            switch (run[j].type) {
            KB_IQ_CASES(acc)
            default: break;
            }
            continue;
        }
        switch (run[j].type) {
        case SQ_TYPE_Q2_K: YMM_RUN(q2_K) break;
        case SQ_TYPE_Q3_K: YMM_RUN(q3_K) break;
        case SQ_TYPE_Q4_K: YMM_RUN(q4_K) break;
        case SQ_TYPE_Q5_K: YMM_RUN(q5_K) break;
        case SQ_TYPE_IQ4_XS: YMM_RUN(iq4_xs) break;
        IK_RUN_CASES(acc)
        default: YMM_RUN(q6_K) break;
        }
    }
    if (NR == 4) {
        __m128 s = hsum4_ps(acc[0], acc[1], acc[2], acc[3]);
        if (LEG) s = _mm_add_ps(s, _mm_loadu_ps(sm));
        store4_ps(y, s, accumulate);
    } else {
        const float v = hsum_ps(acc[0]) + (LEG ? sm[0] : 0.0f);
        y[0] = accumulate ? y[0] + v : v;
    }
}
#undef YMM_RUN

static void runs_ymm(const sq__krun *run, int nrun, const void *w, size_t ws, int nr, const void *x, float *y,
                     bool accumulate)
{
    const char *wc = w;
    int r = 0;
    if (runs_legacy(run, nrun)) { /* the band with the 32-value cases (as runs_zmm) */
        if (ws > PF_MIN_ROW)
            for (; r + 4 <= nr; r += 4) ymm_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 4, true, 1);
        for (; r + 4 <= nr; r += 4) ymm_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 4, false, 1);
        for (; r < nr; r++) ymm_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 1, false, 1);
        return;
    }
    if (ws > PF_MIN_ROW)
        for (; r + 4 <= nr; r += 4) ymm_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 4, true, 0);
    for (; r + 4 <= nr; r += 4) ymm_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 4, false, 0);
    for (; r < nr; r++) ymm_band(run, nrun, wc + (size_t)r * ws, ws, x, y + r, accumulate, 1, false, 0);
}

sq__runs_fn sq__runs_avx2(void) { return runs_ymm; }
