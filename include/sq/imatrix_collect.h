/*
 * sq/imatrix_collect.h — computing an importance matrix the way llama-imatrix
 * does: run calibration text through the model and, for every weight tensor,
 * sum the squares of its input activations per column (in_sum2) and count the
 * activation rows that went in (counts).
 *
 * Method (llama.cpp's tools/imatrix): the whole text is tokenized once (BOS at
 * its start when the vocabulary adds one) and cut into chunks of n_ctx
 * tokens; each chunk starts with an empty KV cache and its first token
 * replaced by BOS; every token of the chunk goes through the model and every
 * one of its activation rows is counted. Products of fewer than 16 rows are
 * ignored (llama.cpp's rule, so a single-token step never skews the sums);
 * only "blk.*" weights are collected unless output collection is asked for.
 * Sums are float, added row after row as llama.cpp does.
 *
 * The result is written in llama.cpp's GGUF imatrix format by
 * sq_imatrix_write_gguf (sq/imatrix.h). llama.cpp's files (GGUF or legacy
 * .dat) can be loaded into a collector first, to continue or merge them.
 *
 * Ownership: a collector owns its names and sums; it borrows nothing after a
 * call returns, except that a context it is attached to must not outlive it
 * with the hook still set (sq_imatrix_collector_detach, or free the context first).
 */
#ifndef SQ_IMATRIX_COLLECT_H
#define SQ_IMATRIX_COLLECT_H

#include "sq/base.h"
#include "sq/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_imatrix_collector sq_imatrix_collector; /* opaque */

/* A new, empty collector. process_output: also collect output.weight, as
 * llama-imatrix --process-output (a tied output, token_embd.weight, is never
 * collected, as there). */
sq_status sq_imatrix_collector_create(bool process_output, sq_imatrix_collector **out, sq_error *err);
/* Frees; NULL is a no-op. */
void sq_imatrix_collector_free(sq_imatrix_collector *ic);

/* Sets the collector as c's matmul and expert hooks (sq_context_set_matmul_hook,
 * sq_context_set_expert_hook), or removes them. */
void sq_imatrix_collector_attach(sq_imatrix_collector *ic, sq_context *c);
void sq_imatrix_collector_detach(sq_context *c);

/* The hook itself (user = the collector): adds X's rows to tensor_name's sums.
 * An error (non-finite sum, a width that differs from the entry's) is kept
 * and returned by sq_imatrix_collector_status; later rows are then ignored. */
void sq_imatrix_collector_hook(void *user, const char *tensor_name, const float *X, int64_t n_rows, int64_t n_cols);
/* The expert hook (sq_expert_hook): adds the rows routed to one expert to
 * that expert's sums and count (an entry of n_expert matrices, as
 * llama-imatrix keeps for 3-D expert tensors; every such product counts,
 * whatever its rows). */
void sq_imatrix_collector_expert_hook(void *user, const char *tensor_name, int64_t expert, int64_t n_expert,
                                      const float *X, int64_t n_rows, int64_t n_cols);
/* SQ_OK, or the first error the hook met (its message copied into err). */
sq_status sq_imatrix_collector_status(const sq_imatrix_collector *ic, sq_error *err);

/* Adds the statistics of an imatrix file (llama.cpp's GGUF or legacy .dat)
 * and its dataset names, as llama-imatrix --in-file does. A legacy file holds
 * only means: its entries count chunk_count * chunk_size rows (chunk_size:
 * the caller's n_ctx), and its sums are mean * count. Errors name the file
 * and the entry (also a width that disagrees with what is already there). */
sq_status sq_imatrix_collector_load(sq_imatrix_collector *ic, const char *path, int64_t chunk_size, sq_error *err);

/* Progress after each chunk. */
typedef struct sq_imatrix_progress {
    int chunk, n_chunks;  /* 1-based chunk just finished, chunks in this run */
    double ppl;           /* running perplexity over the chunks' second halves (llama-imatrix's figure) */
    double seconds;       /* wall time of this chunk */
} sq_imatrix_progress;

typedef struct sq_imatrix_run_params {
    int n_ctx;    /* chunk length in tokens (the context's n_ctx must hold it) */
    int n_chunks; /* <= 0: as many as the text holds */
    void (*on_chunk)(void *ud, const sq_imatrix_progress *p);
    void *ud;
} sq_imatrix_run_params;

/* Runs the chunks of tokens through c with the collector attached (and
 * detached again before returning). bos < 0: the first token of a chunk is
 * kept. Fails on fewer than 2 * n_ctx tokens (llama-imatrix's rule), an
 * evaluation error, or a hook error. *ppl (may be NULL) receives the final
 * perplexity estimate. */
sq_status sq_imatrix_collect(sq_imatrix_collector *ic, sq_context *c, const int32_t *tokens, size_t n_tokens,
                             int32_t bos, const sq_imatrix_run_params *p, double *ppl, sq_error *err);

/* Entries, sorted by name (llama.cpp's order in its files). */
int64_t sq_imatrix_collector_n_entries(const sq_imatrix_collector *ic);
/* Entry i's name, in_sum2 (ne0 * n_mat floats), counts (n_mat floats), ne0, n_mat; NULL when out of range. */
const char *sq_imatrix_collector_entry(const sq_imatrix_collector *ic, int64_t i, const float **in_sum2,
                                       const float **counts, int64_t *ne0, int64_t *n_mat);
/* llama-imatrix's chunk count: the largest count divided by chunk_size. */
uint32_t sq_imatrix_collector_chunk_count(const sq_imatrix_collector *ic, int64_t chunk_size);

/* Adds a dataset name (the calibration file) to the list written out. */
sq_status sq_imatrix_collector_add_dataset(sq_imatrix_collector *ic, const char *name, sq_error *err);

/* Writes the GGUF imatrix file (atomically) with the datasets loaded and
 * added, chunk_count from the counts and chunk_size. Fails when empty. */
sq_status sq_imatrix_collector_write(const sq_imatrix_collector *ic, const char *path, int64_t chunk_size,
                                     sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_IMATRIX_COLLECT_H */
