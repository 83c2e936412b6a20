/*
 * fuzz_iquants.c — the codebook and ternary kernels (IQ1_S, IQ1_M, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0) on arbitrary input: any bytes are a
 * valid block (dequantize and vec_dot must read only inside the row, the
 * codebooks only inside their tables, and match the scalar reference's dot
 * within float rounding), and any floats, NaN and infinities included, must
 * quantize with and without importance weights (where the type allows it)
 * without undefined behaviour, every grid index inside its codebook.
 *
 * Input: byte 0 picks the type and the mode, the rest is the payload
 * (block bytes, little-endian floats, or int16 values / 256).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"
#include "blocks/kernels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int fuzz_types[] = {SQ_TYPE_IQ1_S, SQ_TYPE_IQ1_M,   SQ_TYPE_IQ2_XXS, SQ_TYPE_IQ2_XS, SQ_TYPE_IQ2_S,
                                 SQ_TYPE_IQ3_XXS, SQ_TYPE_IQ3_S, SQ_TYPE_TQ1_0, SQ_TYPE_TQ2_0};
#define N_FUZZ_TYPES (sizeof fuzz_types / sizeof fuzz_types[0])

/* Block bytes: dequantize, and the active vec_dot against the scalar one
 * (abort when they differ by more than float rounding allows). */
static void fuzz_blocks(int t, const uint8_t *data, size_t size)
{
    const sq_type_info *ti = sq_type_info_get(t);
    int64_t nb = (int64_t)(size / (size_t)ti->type_size);
    if (nb < 1) return;
    if (nb > 4) nb = 4;
    const int64_t n = nb * ti->block_size;
    void *w = malloc((size_t)(nb * ti->type_size)); /* exact size: ASan sees overreads */
    memcpy(w, data, (size_t)(nb * ti->type_size));
    float *y = malloc(sizeof(float) * (size_t)n), *a = malloc(sizeof(float) * (size_t)n);
    sq_dequantize_row(t, w, y, n);
    for (int64_t i = 0; i < n; i++) a[i] = (float)((i * 37) % 19) - 9.0f;
    void *aq = malloc(sq_row_size(ti->vec_dot_type, n));
    sq_quantize_act(ti->vec_dot_type, a, aq, n);
    const float s = sq_vec_dot(t, n, w, aq), ref = sq__kernel_table_scalar()[t].vec_dot(n, w, aq);
    double mag = 0;
    float *ad = malloc(sizeof(float) * (size_t)n);
    sq_dequantize_row(SQ_TYPE_Q8_K, aq, ad, n);
    for (int64_t i = 0; i < n; i++) mag += fabs((double)y[i] * ad[i]);
    if (isfinite(mag) && mag < 1e30 && fabs((double)s - ref) > 1e-5 * mag + 1e-30) abort();
    free(ad);
    free(aq);
    free(a);
    free(y);
    free(w);
}

/* Floats (mode 1: raw bits, 2: int16 / 256): quantize with and without
 * importance weights, dequantize the result. */
static void fuzz_floats(int t, int mode, const uint8_t *data, size_t size)
{
    const size_t esize = mode == 1 ? sizeof(float) : sizeof(int16_t);
    int64_t nb = (int64_t)(size / (esize * 256));
    if (nb < 1) return;
    if (nb > 2) nb = 2;
    const int64_t n = nb * 256;
    float *x = malloc(sizeof(float) * (size_t)n), *imx = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (mode == 1) {
            memcpy(&x[i], data + 4 * i, 4);
        } else {
            int16_t v;
            memcpy(&v, data + 2 * i, 2);
            x[i] = v / 256.0f;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float v = x[(i * 7 + 3) % n];
        imx[i] = v < 0 ? -v : v;
    }
    const size_t rs = sq_row_size(t, n);
    void *q = malloc(rs);
    float *y = malloc(sizeof(float) * (size_t)n);
    sq_error e = {0};
    for (int w = 0; w < 2; w++)
        if (sq_quantize_rows(t, x, q, 1, n, w ? imx : NULL, &e) == SQ_OK) sq_dequantize_row(t, q, y, n);
    free(y);
    free(q);
    free(x);
    free(imx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const int t = fuzz_types[data[0] % N_FUZZ_TYPES];
    const int mode = (data[0] / N_FUZZ_TYPES) % 3;
    if (!sq_blocks_can_quantize(t) || !sq_blocks_can_dot(t)) return 0;
    if (mode == 0) fuzz_blocks(t, data + 1, size - 1);
    else fuzz_floats(t, mode, data + 1, size - 1);
    return 0;
}
