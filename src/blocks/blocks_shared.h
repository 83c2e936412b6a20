/*
 * src/blocks/blocks_shared.h — what blocks offers the library modules above
 * it (src/sqtensor/'s mixed-row product) beyond the public sq/blocks.h and
 * sq/matmul.h: the kernel pointers of a type and the tile / run product
 * kernels, each the one the run-time ISA choice made (SQ_ISA,
 * SQ_FORCE_SCALAR); the matrix-vector bands and prefetch; the AMX tiles. Internal to the library (sq__ names, not installed);
 * every other header in src/blocks/ is private to blocks.
 */
#ifndef SQ_BLOCKS_SHARED_H
#define SQ_BLOCKS_SHARED_H

#include <stdatomic.h>

#include "sq/blocks.h"

/* dot(n values of a weight row, the activation row in the type's vec_dot_type) */
typedef float (*sq__vec_dot_fn)(int64_t n, const void *w, const void *x_act);
/* ggml's CPU from_float for an activation type. */
typedef void (*sq__from_float_fn)(const float *x, void *y, int64_t n);

/* The vec_dot of weight type `type` and the from_float of activation type
 * `act_type` in effect; NULL when the type is unknown or has none. */
sq__vec_dot_fn sq__blocks_vec_dot(int type);
sq__from_float_fn sq__blocks_from_float(int act_type);

/* A tile kernel computes a small block of dot products at once, sharing the
 * unpacking of each weight block across several activation columns:
 *
 *   y[c * y_stride + r] (+)= dot(n values of W row r, activation row c)
 *   for r < nr, c < nc
 *
 * W row r starts at (const char *)w + r * w_stride (weights in the kernel's
 * type), activation row c at (const char *)x + c * x_stride, already
 * converted to the type's vec_dot_type. n is a multiple of the type's block
 * size; it may be a single 256-value SmarterQuant segment. With accumulate
 * the results are added to y instead of stored. Kernels never allocate; the
 * caller owns all buffers. Any nr >= 1 and nc >= 1 is accepted. */
typedef void (*sq__gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                            int nc, float *y, size_t y_stride, bool accumulate);

/* The tile kernel in effect for `type` (the current ISA's, or NULL: then
 * use sq__gemm_generic). */
sq__gemm_fn sq__gemm_kernel(int type);

/* Tile product through the active vec_dot of `type`, one pair at a time. */
void sq__gemm_generic(int type, int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                      int nc, float *y, size_t y_stride, bool accumulate);

/* One run of a SmarterQuant row: n values (a multiple of 256, whole
 * segments) of weight type `type` at byte w_off of every weight row, against
 * the activations at byte x_off of the quantized activation row. */
typedef struct sq__krun {
    int type;
    int64_t n;
    size_t w_off, x_off;
} sq__krun;

/* A run kernel, the matrix-vector product over mixed rows: for r < nr,
 *   y[r] (+)= sum over the runs j of dot(run j of W row r, run j of x)
 * with W row r at (const char *)w + r * w_stride. Each row's runs go into
 * one set of vector accumulators reduced once per row, several rows at a
 * time (independent dependency chains, the activation block loaded once for
 * them); the sums are reordered against per-run vec_dot calls (equal within
 * float rounding). Handles the run types sq__runs_handles() accepts. */
typedef void (*sq__runs_fn)(const sq__krun *run, int nrun, const void *w, size_t w_stride, int nr, const void *x,
                            float *y, bool accumulate);

/* Whether the run kernels handle weight type `type`: the 256-value types with
 * Q8_K activations (Q2_K..Q6_K, IQ4_XS, the codebook types IQ1_S..IQ3_S,
 * the ternary TQ1_0, TQ2_0, and ik's IQ2_K..IQ5_K, IQ2_KS, IQ3_KS, IQ4_KS,
 * IQ4_KSS, IQ5_KS, IQ2_KL: a run of a row-scale type is a sequence of
 * segments, each its row scale and one super-block) and the 32-value types
 * with Q8_0 / Q8_1 activations (Q4_0, Q5_0, Q8_0, IQ4_NL / Q4_1, Q5_1). */
bool sq__runs_handles(int type);

/* The run kernel in effect (NULL when the ISA has none). */
sq__runs_fn sq__runs_kernel(void);

/* Rows longer than this many bytes: the AVX2 run kernel prefetches, at
 * every block step of a band (every 8 blocks of a 32-value run), the same
 * bytes of the next band's row (kernels_avx2.c). The AVX-512 run kernel
 * does so on rows of any length (simd_zmm.h, runs_zmm). */
#define SQ__RUNS_PF_MIN_ROW_AVX2 512

/* Whether the run kernel in effect prefetches ahead by itself for these runs
 * on rows w_stride bytes apart (AVX-512: always; AVX2: rows over
 * SQ__RUNS_PF_MIN_ROW_AVX2 bytes): the caller then issues no prefetch span of its own. A span
 * of a whole band (4 rows) requested before the kernel starts stalls the
 * core on the line-fill buffers before it computes anything, so memory and
 * the kernel's work alternate instead of overlapping; the kernel's own
 * prefetch, one block at a time, keeps both busy. */
bool sq__runs_prefetch(const sq__krun *run, int nrun, size_t w_stride);

/* Whether a plain tensor of `type` with `cols` columns is multiplied at
 * n = 1 by the run kernel (one run per row, bands of 4 rows) rather than by
 * one vec_dot per row: the ggml K-quants, IQ4_XS and the 32-value types, on
 * whole 256-column segments, when the ISA has a run kernel. Four rows at a
 * time keep four independent accumulation chains and four memory streams
 * in flight where the vec_dot loop has one. */
bool sq__runs_plain(int type, int64_t cols);

/* ---- matrix-vector products (n = 1): bands and prefetching ----
 * Generating a token multiplies every weight of a model by one vector: on a
 * real model the weights come from memory, and the product is as fast as
 * memory can stream them. Two things keep the stream full:
 * - bands: each thread walks one contiguous band of rows (a stream the
 *   hardware prefetchers follow), in chunks taken from the band's counter;
 *   a thread done with its band helps with the next one, so a thread the
 *   machine deschedules holds nothing up;
 * - software prefetch: before a row is multiplied, the bytes SQ__PF_AHEAD
 *   further on are requested, so that many cache-line fills are in flight
 *   while the kernel computes (the kernels' own loads alone left half of the
 *   read bandwidth unused on a 1B model: docs/kernels.md). */
#define SQ__PF_AHEAD 8192
#define SQ__MAX_BANDS 16

/* Requests the bytes [p, p + n) (clipped at end) into the cache. */
static inline void sq__prefetch_span(const char *p, size_t n, const char *end)
{
    if (p >= end) return;
    if (n > (size_t)(end - p)) n = (size_t)(end - p);
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch(p + o, 0, 3);
}

typedef struct sq__band_counter {
    _Alignas(64) _Atomic long long next; /* next chunk of the band (one counter per cache line) */
    long long end;                       /* one past its last chunk */
} sq__band_counter;

typedef struct sq__bands {
    int n;          /* bands */
    long long n_chunks;
    sq__band_counter band[SQ__MAX_BANDS];
} sq__bands;

/* Cuts n_chunks chunks into one band per thread (at most SQ__MAX_BANDS, at
 * most n_chunks; thread i starts in band i modulo their count). */
void sq__bands_init(sq__bands *b, long long n_chunks, int nth);
/* The next chunk for a thread that works in band *band (start with its
 * thread index): false when every band is done. */
bool sq__bands_take(sq__bands *b, int *band, long long *chunk);

/* ---- AMX tiles (n > 1, the prompt): src/blocks/x86/kernels_amx.c ----
 * For the K-quants and IQ4_XS (Q8_K activations) and Q8_0 (Q8_0
 * activations). The activations, converted to the type's vec_dot_type rows
 * as usual, are regrouped once per product for the tile unit
 * (sq__amx_prepare, into the work buffer); then each call of the kernel takes
 * a group of weight rows against all n activation rows:
 *   y[c * y_stride + r] (+)= dot(super-blocks [0, nsb) of W row r,
 *                                super-blocks [sb0, sb0 + nsb) of activation row c)
 * for r < nr, c < n; W row r at (const char *)w + r * w_stride; act_nsb is the
 * prepared activations' super-blocks per row (a SmarterQuant run starts at
 * sb0 > 0). A "super-block" is 256 values for every type (Q8_0: 8 blocks),
 * so rows are whole multiples of 256 (sq__amx_capable). Integer sums are
 * exact, so results equal the other kernels' within float rounding. Kernels
 * never allocate (about 80 KiB of stack). */
size_t sq__amx_act_size(int64_t n, int64_t cols);
/* Regroups token tiles [tile0, tile1) (16 rows each; the last one padded
 * with zero rows) of n activation rows of cols values (x_stride apart; the
 * vec_dot_type of weight type `type`) into out (sq__amx_act_size(n, cols)
 * bytes, 64-byte aligned). */
void sq__amx_prepare(int type, const void *x, size_t x_stride, int64_t n, int64_t cols, void *out, int64_t tile0,
                     int64_t tile1);
/* The same for a SmarterQuant row's runs (whole segments; run j's
 * activations, of its type's vec_dot_type, at byte run[j].x_off of each
 * row): one prepared row of every run's super-blocks in order, as
 * sq__amx_runs takes it. */
void sq__amx_prepare_runs(const sq__krun *run, int nrun, const void *x, size_t x_stride, int64_t n, void *out,
                          int64_t tile0, int64_t tile1);
typedef void (*sq__amx_fn)(int64_t nsb, const void *w, size_t w_stride, int nr, const void *act, int64_t sb0,
                           int64_t act_nsb, int64_t n, float *y, size_t y_stride, bool accumulate);
/* The AMX product of a weight type, whatever the ISA in effect (NULL: none). */
sq__amx_fn sq__amx_get(int type);
/* The AMX product to use for `type` now: sq__amx_get when the ISA in effect
 * is SQ_ISA_AMX, else NULL. */
sq__amx_fn sq__amx_kernel(int type);
/* Every run of a SmarterQuant row group in one AMX call (n > 1): for r < nr,
 *   y[c * y_stride + r] (+)= sum over the runs j of dot(run j of W row r, run j of activation row c)
 * for c < n. The runs are the row's consecutive segments (run j's weights
 * at byte run[j].w_off of a row): act is the whole row's activations
 * prepared by sq__amx_prepare_runs (act_nsb super-blocks, one per segment;
 * Q8_0 runs' in their own format). Only for run sets sq__amx_runs_handle() accepts (every type
 * with an AMX product, whole segments), and only on a CPU with AMX
 * (sq__amx_capable). Compared with one sq__amx_fn call per run, y is stored
 * once per row group and one-segment runs share a panel with their
 * neighbours. */
bool sq__amx_runs_handle(const sq__krun *run, int nrun);
void sq__amx_runs(const sq__krun *run, int nrun, const void *w, size_t w_stride, int nr, const void *act,
                  int64_t act_nsb, int64_t n, float *y, size_t y_stride, bool accumulate);
/* Whether products of `type` with rows of cols values and n activation rows
 * can take the AMX path on this CPU (whatever SQ_ISA caps): work sizes
 * include its buffer then. */
bool sq__amx_capable(int type, int64_t cols, int64_t n);

#endif
