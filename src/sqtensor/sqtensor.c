/*
 * sqtensor.c — SmarterQuant tensors (spec sections 4 and 6): weight views,
 * column permutations, packing one mixed row and the token-embedding row
 * lookup. The mixed-row matrix product is in mixed_matmul.c.
 *
 * Ownership: a sq_weight only points at its data and permutation (usually in
 * the read-only GGUF map); nothing here copies or frees them. The only
 * allocation is the temporary index table of sq_perm_validate() (sq/types.h).
 */
#include "sq/sqtensor.h"

#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"

/* ---------------------------------------------------------------- views -- */

/* Fills a view of an ordinary tensor of one type: its row size is ggml's. */
sq_status sq_weight_plain(sq_weight *w, const void *data, int type, int64_t rows, int64_t cols, sq_error *err)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti) return sq_error_set(err, SQ_EINVAL, "weight: unknown or removed type id %d", type);
    if (rows <= 0 || cols <= 0)
        return sq_error_set(err, SQ_EINVAL, "weight: shape %lld x %lld is empty or negative", (long long)cols,
                            (long long)rows);
    const size_t rb = sq_row_size(type, cols);
    if (rb == 0)
        return sq_error_set(err, SQ_EINVAL, "weight: %lld columns are not a multiple of the block size %d of %s",
                            (long long)cols, ti->block_size, ti->name);
    memset(w, 0, sizeof *w);
    w->data = data;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = rb;
    w->type = type;
    w->mixed = false;
    for (int i = 0; i < 4; i++) w->types[i] = type;
    w->perm = NULL;
    return SQ_OK;
}

/* Fills a view of a SmarterQuant tensor. The types are checked against the
 * segment lengths (sq_mixed_row_bytes); the permutation is trusted here — the
 * loader checks it once with sq_perm_validate(). */
sq_status sq_weight_mixed(sq_weight *w, const void *data, const int types[4], const int32_t *perm, int64_t rows,
                          int64_t cols, sq_error *err)
{
    if (rows <= 0 || cols <= 0)
        return sq_error_set(err, SQ_EINVAL, "weight: shape %lld x %lld is empty or negative", (long long)cols,
                            (long long)rows);
    size_t rb = 0;
    sq_status st = sq_mixed_row_bytes(types, cols, &rb, err);
    if (st != SQ_OK) {
        sq_error_prefix(err, "SmarterQuant weight with %lld columns", (long long)cols);
        return st;
    }
    memset(w, 0, sizeof *w);
    w->data = data;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = rb;
    w->type = types[3];
    w->mixed = true;
    for (int i = 0; i < 4; i++) w->types[i] = types[i];
    w->perm = perm;
    return SQ_OK;
}

/* --------------------------------------------------------- permutations -- */

/* x'[j] = x[perm[j]]: the activations in the stored (permuted) column order. */
void sq_perm_gather(const int32_t *perm, int64_t C, const float *x, float *out)
{
    for (int64_t j = 0; j < C; j++) out[j] = x[perm[j]];
}

/* out[perm[j]] = x'[j]: back to the original column order. */
void sq_perm_scatter(const int32_t *perm, int64_t C, const float *xp, float *out)
{
    for (int64_t j = 0; j < C; j++) out[perm[j]] = xp[j];
}

/* ------------------------------------------------------------- packing -- */

/* Quantizes segment after segment, each as a row of its own (spec section 4):
 * importance-weighted legacy quantizers use statistics of the whole row they
 * are given, so segments must never be merged here. */
sq_status sq_pack_row(const int types[4], int64_t C, const float *row_perm, const float *imatrix_perm, void *dst,
                      sq_error *err)
{
    size_t rb = 0;
    sq_status st = sq_mixed_row_bytes(types, C, &rb, err);
    if (st != SQ_OK) return st;
    char *out = dst;
    const int64_t nseg = sq_n_segments(C);
    for (int64_t s = 0; s < nseg; s++) {
        const int t = sq_segment_type(types, s);
        const int64_t c0 = s * SQ_SEGMENT, len = sq_segment_len(C, s);
        st = sq_quantize_rows(t, row_perm + c0, out, 1, len, imatrix_perm ? imatrix_perm + c0 : NULL, err);
        if (st != SQ_OK) {
            sq_error_prefix(err, "segment %lld (columns %lld..%lld, %s)", (long long)s, (long long)c0,
                            (long long)(c0 + len - 1), sq_type_name(t));
            return st;
        }
        out += sq_row_size(t, len);
    }
    return SQ_OK;
}

/* ------------------------------------------------------------ row lookup -- */

/* Dequantizes row r in the original column order. With a permutation each
 * segment goes through a 256-float stack buffer and is scattered from there,
 * so no scratch is needed from the caller. Segments are packed back to back,
 * so an F16/BF16/F32 segment may sit at an address that is not a multiple of
 * its element size; such a segment is first copied to an aligned buffer. */
void sq_weight_get_row(const sq_weight *w, int64_t r, float *out)
{
    const char *row = (const char *)w->data + (size_t)r * w->row_bytes;
    if (!w->mixed) {
        sq_dequantize_row(w->type, row, out, w->cols);
        return;
    }
    const int64_t C = w->cols, nseg = sq_n_segments(C);
    float seg[SQ_SEGMENT];
    _Alignas(64) unsigned char raw[SQ_SEGMENT * sizeof(float)];
    for (int64_t s = 0; s < nseg; s++) {
        const int t = sq_segment_type(w->types, s);
        const int64_t c0 = s * SQ_SEGMENT, len = sq_segment_len(C, s);
        const size_t nb = sq_row_size(t, len);
        const sq_type_info *ti = sq_type_info_get(t);
        const void *src = row;
        if (!ti->is_quantized && ti->type_size > 1 && (uintptr_t)row % (uintptr_t)ti->type_size != 0) {
            memcpy(raw, row, nb);
            src = raw;
        }
        if (w->perm) {
            sq_dequantize_row(t, src, seg, len);
            for (int64_t i = 0; i < len; i++) out[w->perm[c0 + i]] = seg[i];
        } else {
            sq_dequantize_row(t, src, out + c0, len);
        }
        row += nb;
    }
}
