/*
 * fuzz_kquants.c — the k-quant / IQ4 / MXFP4 / TQ2_0 kernels on arbitrary
 * input: any bytes are a valid block (dequantize and vec_dot must read only
 * inside the row and never trip the sanitizers), and any floats, NaN and
 * infinities included, must quantize (with and without importance weights)
 * without undefined behaviour, and on moderate values (|x| <= 1e6) the
 * 4-lane searches must give the same bytes as the scalar reference searches
 * (abort otherwise).
 *
 * Input: byte 0 picks the type and the mode, the rest is the payload
 * (block bytes, little-endian floats, or int16 values / 256).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"
#include "blocks/quant_common.h" /* sq__kquants_reference_search */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int fuzz_types[] = {SQ_TYPE_Q2_K,   SQ_TYPE_Q3_K,   SQ_TYPE_Q4_K,  SQ_TYPE_Q5_K, SQ_TYPE_Q6_K,
                                 SQ_TYPE_IQ4_NL, SQ_TYPE_IQ4_XS, SQ_TYPE_MXFP4, SQ_TYPE_TQ2_0};
#define N_FUZZ_TYPES (sizeof fuzz_types / sizeof fuzz_types[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const int t = fuzz_types[data[0] % N_FUZZ_TYPES];
    /* 0: block bytes; 1: raw floats; 2: int16 / 256 (moderate values with
     * many exact ties, where the two searches are compared) */
    const int mode = (data[0] / N_FUZZ_TYPES) % 3;
    data++;
    size--;
    if (!sq_blocks_can_quantize(t)) return 0;
    const sq_type_info *ti = sq_type_info_get(t);
    const int64_t bs = ti->block_size;

    if (mode == 0) {
        /* arbitrary block bytes: 1..4 whole blocks */
        int64_t nb = (int64_t)(size / (size_t)ti->type_size);
        if (nb < 1) return 0;
        if (nb > 4) nb = 4;
        const int64_t n = nb * bs;
        void *w = malloc((size_t)(nb * ti->type_size)); /* exact size: ASan sees overreads */
        memcpy(w, data, (size_t)(nb * ti->type_size));
        float *y = malloc(sizeof(float) * (size_t)n);
        sq_dequantize_row(t, w, y, n);
        if (sq_blocks_can_dot(t)) {
            float *a = malloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) a[i] = (float)((i * 37) % 19) - 9.0f;
            void *aq = malloc(sq_row_size(ti->vec_dot_type, n));
            sq_quantize_act(ti->vec_dot_type, a, aq, n);
            volatile float s = sq_vec_dot(t, n, w, aq);
            (void)s;
            free(aq);
            free(a);
        }
        free(y);
        free(w);
        return 0;
    }

    /* arbitrary floats: one row of 1..4 blocks; importance weights from the
     * same bytes (absolute values, may be zero, huge or NaN) */
    const size_t esize = mode == 1 ? sizeof(float) : sizeof(int16_t);
    int64_t nb = (int64_t)(size / (esize * (size_t)bs));
    if (nb < 1) return 0;
    if (nb > 4) nb = 4;
    const int64_t n = nb * bs;
    float *x = malloc(sizeof(float) * (size_t)n), *imx = malloc(sizeof(float) * (size_t)n);
    if (mode == 1) {
        memcpy(x, data, sizeof(float) * (size_t)n);
    } else {
        for (int64_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, data + 2 * i, 2);
            x[i] = v / 256.0f;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float v = x[(i * 7 + 3) % n];
        imx[i] = v < 0 ? -v : v;
    }
    int moderate = 1;
    for (int64_t i = 0; i < n; i++) moderate &= x[i] >= -1e6f && x[i] <= 1e6f;
    const size_t rs = sq_row_size(t, n);
    void *q = malloc(rs), *qref = malloc(rs);
    float *y = malloc(sizeof(float) * (size_t)n);
    sq_error e = {0};
    for (int w = 0; w < 2; w++) {
        if (sq_quantize_rows(t, x, q, 1, n, w ? imx : NULL, &e) != SQ_OK) continue;
        sq_dequantize_row(t, q, y, n);
        /* NaN payloads follow operand order, which compilers may commute, so
         * the two searches are compared only where no NaN can arise: values
         * (and so weights) of magnitude <= 1e6, nothing non-finite */
        if (!moderate) continue;
        sq__kquants_reference_search(true);
        sq_quantize_rows(t, x, qref, 1, n, w ? imx : NULL, &e);
        sq__kquants_reference_search(false);
        if (memcmp(q, qref, rs) != 0) abort();
    }
    free(y);
    free(q);
    free(qref);
    free(x);
    free(imx);
    return 0;
}
