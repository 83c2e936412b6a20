/*
 * matmul_t.c — the product with a weight's transpose, dX = dY·W, for the
 * engine's backward pass (sq/sqtensor.h: sq_weight_matmul_t).
 *
 * The weight stays as it is stored (any block type, plain or SmarterQuant):
 * a panel of SQ_MATMUL_T_PANEL rows at a time is dequantized into the
 * caller's work buffer in the original column order (sq_weight_get_row
 * un-permutes a SmarterQuant row), and then dX += dY[:, panel]·panel with
 * the f32 kernel sq_sgemm_acc. Both phases run on the pool: the rows of the
 * panel, then blocks of 64 columns of dX, taken from a shared counter. Each
 * entry of dX sums its products panel by panel in row order, so the result
 * does not depend on the number of threads.
 *
 * Ownership: W, dY, dX and work belong to the caller; nothing is allocated.
 */
#include <stdatomic.h>
#include <string.h>

#include "sq/sqtensor.h"

#define COL_BLOCK 64

size_t sq_weight_matmul_t_work_size(const sq_weight *w)
{
    return sizeof(float) * (size_t)SQ_MATMUL_T_PANEL * (size_t)w->cols;
}

typedef struct mt_job {
    const sq_weight *w;
    const float *dY;
    float *dX, *panel;
    int64_t n, r0, r1;
    atomic_llong next;
} mt_job;

/* Phase 1: rows r0..r1 of W into the panel, one row per task. */
static void panel_worker(void *ctx, int ith, int nth)
{
    (void)ith, (void)nth;
    mt_job *J = ctx;
    for (;;) {
        const int64_t r = J->r0 + atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (r >= J->r1) break;
        sq_weight_get_row(J->w, r, J->panel + (size_t)(r - J->r0) * (size_t)J->w->cols);
    }
}

/* Phase 2: dX[:, j0..j0+64) += dY[:, r0..r1) · panel[:, j0..j0+64), one column block per task. */
static void product_worker(void *ctx, int ith, int nth)
{
    (void)ith, (void)nth;
    mt_job *J = ctx;
    const int64_t cols = J->w->cols, rows = J->w->rows;
    for (;;) {
        const int64_t j0 = COL_BLOCK * atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed);
        if (j0 >= cols) break;
        const int64_t nc = cols - j0 < COL_BLOCK ? cols - j0 : COL_BLOCK;
        sq_sgemm_acc(J->n, nc, J->r1 - J->r0, J->dY + J->r0, (size_t)rows, J->panel + j0, (size_t)cols, J->dX + j0,
                     (size_t)cols);
    }
}

sq_status sq_weight_matmul_t(sq_threadpool *tp, const sq_weight *w, const float *dY, int64_t n, float *dX,
                             bool accumulate, void *work, size_t work_size, sq_error *err)
{
    if (n <= 0) return SQ_OK;
    if (!work || work_size < sq_weight_matmul_t_work_size(w))
        return sq_error_set(err, SQ_EINVAL, "transposed product: work buffer of %zu bytes, need %zu", work_size,
                            sq_weight_matmul_t_work_size(w));
    if (!accumulate) memset(dX, 0, sizeof(float) * (size_t)n * (size_t)w->cols);
    mt_job J;
    memset(&J, 0, sizeof J);
    J.w = w, J.dY = dY, J.dX = dX, J.panel = work, J.n = n;
    for (int64_t r0 = 0; r0 < w->rows; r0 += SQ_MATMUL_T_PANEL) {
        J.r0 = r0;
        J.r1 = r0 + SQ_MATMUL_T_PANEL < w->rows ? r0 + SQ_MATMUL_T_PANEL : w->rows;
        atomic_store_explicit(&J.next, 0, memory_order_relaxed);
        sq_threadpool_run(tp, panel_worker, &J);
        atomic_store_explicit(&J.next, 0, memory_order_relaxed);
        sq_threadpool_run(tp, product_worker, &J);
    }
    return SQ_OK;
}
