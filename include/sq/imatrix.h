/*
 * sq/imatrix.h — importance matrices as llama.cpp stores them.
 *
 * Two on-disk formats are read:
 *  - GGUF (llama-imatrix's current format): keys general.type = "imatrix",
 *    imatrix.datasets (array of strings), imatrix.chunk_count (u32),
 *    imatrix.chunk_size (u32); for each weight NAME the F32 tensors
 *    NAME.in_sum2 (ne0 x n_mat: summed squared activations per column and
 *    expert) and NAME.counts (n_mat: how many activation rows went in).
 *    importance[j*ne0 + i] = in_sum2[j*ne0 + i] / counts[j] (1 when counts[j] = 0).
 *  - legacy .dat: int32 n_entries; per entry int32 name length, the name,
 *    int32 ncall, int32 nval, nval floats (sums); then optionally int32 chunk
 *    count, int32 dataset-name length and the name. importance = value / ncall.
 * And one is written: the GGUF format (for `sq imatrix`).
 */
#ifndef SQ_IMATRIX_H
#define SQ_IMATRIX_H

#include "sq/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_imatrix sq_imatrix; /* opaque: owns its names and values */

/* Loads a file in either format (GGUF when it starts with "GGUF"). Errors
 * name the file, the entry and the reason (truncated, bad count, non-finite
 * value, in_sum2 without counts, wrong tensor type, missing metadata ...). */
sq_status sq_imatrix_load(const char *path, sq_imatrix **out, sq_error *err);
/* The same over a buffer (not kept); label names it in messages. */
sq_status sq_imatrix_parse(const void *data, size_t size, const char *label, sq_imatrix **out, sq_error *err);
/* Only the legacy .dat format. */
sq_status sq_imatrix_parse_dat(const void *data, size_t size, const char *label, sq_imatrix **out, sq_error *err);
/* Frees; NULL is a no-op. */
void sq_imatrix_free(sq_imatrix *im);

int64_t sq_imatrix_n_entries(const sq_imatrix *im);
const char *sq_imatrix_entry_name(const sq_imatrix *im, int64_t i);
/* Importance values of a weight (n = ne0 * n_mat), or NULL when absent. The
 * pointer stays valid until sq_imatrix_free. */
const float *sq_imatrix_find(const sq_imatrix *im, const char *name, int64_t *n);
int64_t sq_imatrix_n_datasets(const sq_imatrix *im);
const char *sq_imatrix_dataset(const sq_imatrix *im, int64_t i);
int64_t sq_imatrix_chunk_count(const sq_imatrix *im); /* 0 if unknown */
int64_t sq_imatrix_chunk_size(const sq_imatrix *im);  /* 0 if unknown (legacy) */
bool sq_imatrix_is_legacy(const sq_imatrix *im);

/* One weight's statistics, for the writer. */
typedef struct sq_imatrix_stat {
    const char *name;     /* the weight ("blk.0.attn_q.weight") */
    const float *in_sum2; /* ne0 * n_mat sums of squared activations */
    const float *counts;  /* n_mat activation-row counts */
    int64_t ne0;          /* columns */
    int64_t n_mat;        /* 1, or the number of experts */
} sq_imatrix_stat;

/* Writes the GGUF imatrix format (atomically: temporary file, then rename). */
sq_status sq_imatrix_write_gguf(const char *path, const sq_imatrix_stat *stats, int64_t n_stats,
                                const char *const *datasets, int64_t n_datasets, uint32_t chunk_count,
                                uint32_t chunk_size, sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_IMATRIX_H */
