/*
 * matmul.c — Y = W·Xᵀ over rows of any block type, split across a thread pool.
 *
 * Two phases: (1) the n activation rows are converted once to the type's
 * vec_dot_type into the caller's work buffer (rows 64-byte aligned; in
 * parallel when there is enough of it); (2) the output is cut into chunks of
 * weight rows × activation rows that threads take from a shared counter
 * (dynamic scheduling copes with a noisy, shared machine). Inside a chunk the
 * type's tile kernel (gemm.h) computes several activation rows per pass over
 * one or more weight rows (up to 8 columns × 2-4 rows with AVX-512), so a
 * weight block is unpacked once per tile of columns; the chunk
 * sizes keep the activation rows of a chunk in L2 while its weight rows
 * stream through.
 *
 * Ownership: W, X, Y and work belong to the caller; nothing is allocated here.
 */
#include <stdatomic.h>
#include <string.h>

#include "gemm.h"
#include "sq/matmul.h"

#define ACT_ALIGN 64

static size_t act_stride(int at, int64_t cols)
{
    const size_t rs = sq_row_size(at, cols);
    return (rs + ACT_ALIGN - 1) / ACT_ALIGN * ACT_ALIGN;
}

size_t sq_matmul_work_size(int type, int64_t cols, int64_t n)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti || n <= 0 || cols <= 0) return 0;
    if (ti->vec_dot_type == SQ_TYPE_F32) return 0; /* X is used as it is */
    if (sq_row_size(ti->vec_dot_type, cols) == 0) return 0;
    const size_t amx = sq__amx_capable(type, cols, n) ? sq__amx_act_size(n, cols) + ACT_ALIGN : 0;
    return act_stride(ti->vec_dot_type, cols) * (size_t)n + ACT_ALIGN + amx;
}

bool sq__amx_capable(int type, int64_t cols, int64_t n)
{
    return n > 1 && cols % 256 == 0 && sq__cpu_isa() >= SQ_ISA_AMX && sq__amx_get(type) != NULL;
}

sq__amx_fn sq__amx_kernel(int type) { return sq_blocks_isa() >= SQ_ISA_AMX ? sq__amx_get(type) : NULL; }

/* AMX is AVX-512 plus the tile unit: its tile and run kernels are the AVX-512 ones. */
sq__gemm_fn sq__gemm_kernel(int type)
{
    switch (sq_blocks_isa()) {
    case SQ_ISA_AMX:
    case SQ_ISA_AVX512: return sq__gemm_avx512(type);
    case SQ_ISA_AVX2: return sq__gemm_avx2(type);
    default: return NULL;
    }
}

sq__runs_fn sq__runs_kernel(void)
{
    switch (sq_blocks_isa()) {
    case SQ_ISA_AMX:
    case SQ_ISA_AVX512: return sq__runs_avx512();
    case SQ_ISA_AVX2: return sq__runs_avx2();
    default: return NULL;
    }
}

bool sq__runs_handles(int type)
{
    if (type == SQ_TYPE_IQ4_KS || type == SQ_TYPE_IQ4_K || type == SQ_TYPE_IQ4_KSS || type == SQ_TYPE_IQ5_KS ||
        type == SQ_TYPE_IQ5_K || type == SQ_TYPE_IQ6_K || type == SQ_TYPE_IQ3_K || type == SQ_TYPE_IQ3_KS || type == SQ_TYPE_IQ2_K ||
        type == SQ_TYPE_IQ2_KS || type == SQ_TYPE_IQ2_KL)
        return true; /* ik's types (IK_RUN_CASES, x86/simd_ik.h) */
    return type == SQ_TYPE_Q2_K || type == SQ_TYPE_Q3_K || type == SQ_TYPE_Q4_K || type == SQ_TYPE_Q5_K ||
           type == SQ_TYPE_Q6_K || type == SQ_TYPE_IQ4_XS || type == SQ_TYPE_Q4_0 || type == SQ_TYPE_Q4_1 ||
           type == SQ_TYPE_Q5_0 || type == SQ_TYPE_Q5_1 || type == SQ_TYPE_Q8_0 || type == SQ_TYPE_IQ4_NL ||
           type == SQ_TYPE_IQ2_XXS || type == SQ_TYPE_IQ2_XS || type == SQ_TYPE_IQ2_S || type == SQ_TYPE_IQ3_XXS ||
           type == SQ_TYPE_IQ3_S || type == SQ_TYPE_IQ1_S || type == SQ_TYPE_IQ1_M || type == SQ_TYPE_TQ1_0 ||
           type == SQ_TYPE_TQ2_0;
}

/* The 32-value types the run kernels take in their second band (KR32_CASES). */
static bool runs_type32(int t)
{
    return t == SQ_TYPE_Q4_0 || t == SQ_TYPE_Q4_1 || t == SQ_TYPE_Q5_0 || t == SQ_TYPE_Q5_1 || t == SQ_TYPE_Q8_0 ||
           t == SQ_TYPE_IQ4_NL;
}

bool sq__runs_prefetch(const sq__krun *run, int nrun, size_t w_stride)
{
    (void)run, (void)nrun;
    switch (sq_blocks_isa()) {
    case SQ_ISA_AMX:
    case SQ_ISA_AVX512: return true;
    case SQ_ISA_AVX2: return w_stride > SQ__RUNS_PF_MIN_ROW_AVX2;
    default: return false;
    }
}

bool sq__runs_plain(int type, int64_t cols)
{
    const bool kq = type == SQ_TYPE_Q2_K || type == SQ_TYPE_Q3_K || type == SQ_TYPE_Q4_K || type == SQ_TYPE_Q5_K ||
                    type == SQ_TYPE_Q6_K || type == SQ_TYPE_IQ4_XS;
    return (kq || runs_type32(type)) && cols % 256 == 0 && sq__runs_kernel() != NULL;
}

void sq__gemm_generic(int type, int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride,
                      int nc, float *y, size_t y_stride, bool accumulate)
{
    const sq__vec_dot_fn dot = sq__kernel_table()[type].vec_dot;
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) {
            const float v = dot(n, (const char *)w + (size_t)r * w_stride, (const char *)x + (size_t)c * x_stride);
            float *dst = &y[(size_t)c * y_stride + r];
            *dst = accumulate ? *dst + v : v;
        }
}

typedef struct amx_job {
    int type;             /* the first AMX term's weight type (its vec_dot_type is every term's) */
    const void *x;        /* activation rows of that vec_dot_type */
    size_t x_stride;
    int64_t n, cols;
    void *act;            /* the prepared activations (sq__amx_prepare) */
    sq__amx_fn fn;
    const void *W;
    int64_t rows;
    size_t row_bytes;
    float *Y;
    atomic_llong next;    /* next token tile (prepare) or row group (product) */
} amx_job;

/* Regroups the activations for the tiles, one token tile at a time. */
static void amx_prepare_task(void *p, int ith, int nth)
{
    (void)ith, (void)nth;
    amx_job *a = p;
    const int64_t ntile = (a->n + 15) / 16;
    for (;;) {
        const int64_t t = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
        if (t >= ntile) break;
        sq__amx_prepare(a->type, a->x, a->x_stride, a->n, a->cols, a->act, t, t + 1);
    }
}

/* Chunks of AMX_ROWS weight rows, each against every activation row. */
#define AMX_ROWS 64
static void amx_product_task(void *p, int ith, int nth)
{
    (void)ith, (void)nth;
    amx_job *a = p;
    const int64_t nchunks = (a->rows + AMX_ROWS - 1) / AMX_ROWS, nsb = a->cols / 256;
    for (;;) {
        const int64_t g = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
        if (g >= nchunks) break;
        const int64_t r0 = AMX_ROWS * g;
        a->fn(nsb, (const char *)a->W + (size_t)r0 * a->row_bytes, a->row_bytes,
              (int)(a->rows - r0 < AMX_ROWS ? a->rows - r0 : AMX_ROWS), a->act, 0, nsb, a->n, a->Y + r0,
              (size_t)a->rows, false);
    }
}

typedef struct mm_job {
    int type, act_type;
    const void *W;
    int64_t rows, cols;
    size_t row_bytes;
    const float *X;
    int64_t n;
    float *Y;
    void *act;          /* converted activations (or X itself for F32) */
    size_t act_stride;
    sq__from_float_fn from_float;
    sq__gemm_fn gemm;   /* NULL: generic */
    sq__vec_dot_fn vec_dot;
    sq__runs_fn runs;   /* n = 1: the run kernel for the whole rows (NULL: vec_dot per row) */
    int64_t rb, cb;     /* chunk: rb weight rows × cb activation rows */
    int64_t kp;         /* column panel (a multiple of the block size) */
    int64_t n_rb, n_chunks;
    atomic_llong next;  /* next chunk to take */
    sq__bands bands;    /* n = 1: the threads' bands of chunks */
} mm_job;

/* Phase 1: thread ith converts activation rows ith, ith+nth, ... */
static void convert_task(void *p, int ith, int nth)
{
    mm_job *j = p;
    for (int64_t r = ith; r < j->n; r += nth)
        j->from_float(j->X + r * j->cols, (char *)j->act + (size_t)r * j->act_stride, j->cols);
}

void sq__bands_init(sq__bands *b, long long n_chunks, int nth)
{
    /* no empty band: a thread whose band is empty would take from the next one's front */
    b->n = nth < 1 ? 1 : nth > SQ__MAX_BANDS ? SQ__MAX_BANDS : nth;
    if (n_chunks < b->n) b->n = n_chunks < 1 ? 1 : (int)n_chunks;
    b->n_chunks = n_chunks;
    for (int i = 0; i < b->n; i++) {
        atomic_init(&b->band[i].next, n_chunks * i / b->n);
        b->band[i].end = n_chunks * (i + 1) / b->n;
    }
}

bool sq__bands_take(sq__bands *b, int *band, long long *chunk)
{
    for (int k = 0; k < b->n; k++) {
        const int i = (*band % b->n + k) % b->n;
        const long long c = atomic_fetch_add_explicit(&b->band[i].next, 1, memory_order_relaxed);
        if (c < b->band[i].end) {
            *band = i;
            *chunk = c;
            return true;
        }
    }
    return false;
}

/* Rows [r0, r1) times one activation row through the run kernel (one run:
 * the whole row), 4 rows per call; before each call the bytes SQ__PF_AHEAD
 * further on are requested unless the kernel prefetches by itself. */
static void matvec_band(const mm_job *j, int64_t r0, int64_t r1, const char *end)
{
    const sq__krun run = {j->type, j->cols, 0, 0};
    const bool pf = !sq__runs_prefetch(&run, 1, j->row_bytes);
    for (int64_t r = r0; r < r1; r += 4) {
        const int ng = r1 - r < 4 ? (int)(r1 - r) : 4;
        const char *w = (const char *)j->W + (size_t)r * j->row_bytes;
        if (pf) sq__prefetch_span(w + SQ__PF_AHEAD, (size_t)ng * j->row_bytes, end);
        j->runs(&run, 1, w, j->row_bytes, ng, j->act, j->Y + r, false);
    }
}

/* Phase 2 for one activation row (n = 1): thread ith walks band ith of the
 * rows (then helps the others): through the run kernel, 4 rows at a time,
 * where sq__runs_plain() says so, else one vec_dot per row, prefetching the
 * bytes SQ__PF_AHEAD ahead of the row it multiplies (gemm.h). */
static void matvec_task(void *p, int ith, int nth)
{
    (void)nth;
    mm_job *j = p;
    const char *W = j->W, *end = W + (size_t)j->rows * j->row_bytes;
    int band = ith;
    long long ch;
    while (sq__bands_take(&j->bands, &band, &ch)) {
        const int64_t r0 = ch * j->rb, r1 = r0 + j->rb < j->rows ? r0 + j->rb : j->rows;
        if (j->runs) {
            matvec_band(j, r0, r1, end);
            continue;
        }
        for (int64_t r = r0; r < r1; r++) {
            const char *w = W + (size_t)r * j->row_bytes;
            sq__prefetch_span(w + SQ__PF_AHEAD, j->row_bytes, end);
            j->Y[r] = j->vec_dot(j->cols, w, j->act);
        }
    }
}

/* Phase 2: chunks in order (activation block major, so consecutive chunks
 * share activations). Within a chunk the columns are walked in panels of kp
 * values (accumulating), so that the chunk's weight and activation panels stay
 * in L2 while the tile kernel sweeps them. */
static void product_task(void *p, int ith, int nth)
{
    (void)ith, (void)nth;
    mm_job *j = p;
    for (;;) {
        const int64_t ch = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (ch >= j->n_chunks) break;
        const int64_t r0 = (ch % j->n_rb) * j->rb, c0 = (ch / j->n_rb) * j->cb;
        const int nr = (int)(r0 + j->rb <= j->rows ? j->rb : j->rows - r0);
        const int nc = (int)(c0 + j->cb <= j->n ? j->cb : j->n - c0);
        float *y = j->Y + (size_t)c0 * (size_t)j->rows + (size_t)r0;
        for (int64_t k0 = 0; k0 < j->cols; k0 += j->kp) {
            const int64_t kn = k0 + j->kp <= j->cols ? j->kp : j->cols - k0;
            const char *w = (const char *)j->W + (size_t)r0 * j->row_bytes + sq_row_size(j->type, k0);
            const char *x = (const char *)j->act + (size_t)c0 * j->act_stride + sq_row_size(j->act_type, k0);
            if (nc == 1 && j->vec_dot) {
                /* one activation row: the type's vec_dot is its best single-column kernel */
                for (int r = 0; r < nr; r++) {
                    const float v = j->vec_dot(kn, w + (size_t)r * j->row_bytes, x);
                    y[r] = k0 > 0 ? y[r] + v : v;
                }
            } else if (j->gemm)
                j->gemm(kn, w, j->row_bytes, nr, x, j->act_stride, nc, y, (size_t)j->rows, k0 > 0);
            else
                sq__gemm_generic(j->type, kn, w, j->row_bytes, nr, x, j->act_stride, nc, y, (size_t)j->rows, k0 > 0);
        }
    }
}

/* The checks every product passes before anything runs. */
static sq_status check_product(int type, int64_t rows, int64_t cols, size_t row_bytes, int64_t n, sq_error *err)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti) return sq_error_set(err, SQ_EINVAL, "matmul: unknown type id %d", type);
    if (rows <= 0 || cols <= 0 || n <= 0)
        return sq_error_set(err, SQ_EINVAL, "matmul %s: empty product (%lld rows, %lld cols, n = %lld)", ti->name,
                            (long long)rows, (long long)cols, (long long)n);
    if (cols % ti->block_size != 0)
        return sq_error_set(err, SQ_EINVAL, "matmul %s: %lld columns is not a multiple of the block size %d",
                            ti->name, (long long)cols, ti->block_size);
    if (row_bytes < sq_row_size(type, cols))
        return sq_error_set(err, SQ_EINVAL, "matmul %s: row stride %zu is below the row size %zu", ti->name, row_bytes,
                            sq_row_size(type, cols));
    const sq__kernels *k = sq__kernel_table();
    const int at = ti->vec_dot_type;
    if (!k[type].vec_dot || (at != SQ_TYPE_F32 && !k[at].from_float))
        return sq_error_set(err, SQ_EUNSUPPORTED, "matmul: type %s has no dot-product kernel in this build",
                            ti->name);
    return SQ_OK;
}

/* Phase 1 for a job whose act_type, X, n and cols are set: X itself for F32,
 * otherwise X converted into work. */
static void convert_input(sq_threadpool *tp, mm_job *j, void *work)
{
    if (j->act_type == SQ_TYPE_F32) {
        j->act = (void *)j->X;
        j->act_stride = (size_t)j->cols * sizeof(float);
        return;
    }
    j->act = (void *)(((uintptr_t)work + ACT_ALIGN - 1) & ~(uintptr_t)(ACT_ALIGN - 1));
    j->act_stride = act_stride(j->act_type, j->cols);
    j->from_float = sq__kernel_table()[j->act_type].from_float;
    if (j->n * j->cols >= 65536 && sq_threadpool_n_threads(tp) > 1)
        sq_threadpool_run(tp, convert_task, j);
    else
        convert_task(j, 0, 1);
}

/* Phase 2 for a job with converted input and its weight (type, W, rows,
 * row_bytes) and Y set: the chunk shape, the column panel, the run. */
static void run_product(sq_threadpool *tp, mm_job *j)
{
    const sq_type_info *ti = sq_type_info_get(j->type);
    const int64_t n = j->n, rows = j->rows, cols = j->cols;
    const int nth = sq_threadpool_n_threads(tp);
    j->gemm = sq__gemm_kernel(j->type);
    j->vec_dot = sq__kernel_table()[j->type].vec_dot;
    j->runs = n == 1 && sq__runs_plain(j->type, cols) ? sq__runs_kernel() : NULL;
    /* Chunk shape: one activation row for n = 1; otherwise up to 24 activation
     * rows (kept in L2; whole F16 6-column and row-pair 8-column tiles) by
     * enough weight rows that each thread gets several chunks. */
    j->cb = n == 1 ? 1 : (n < 24 ? n : 24);
    const int64_t n_cb = (n + j->cb - 1) / j->cb;
    int64_t rb = n == 1 ? 32 : 16;
    while (rb > 4 && ((rows + rb - 1) / rb) * n_cb < 8 * nth) rb /= 2;
    j->rb = rb;
    j->n_rb = (rows + rb - 1) / rb;
    j->n_chunks = j->n_rb * n_cb;
    /* Column panel: the tile kernel keeps 4 activation rows of a panel in L1
     * (about 24 KiB) while it walks the chunk's weight rows (from L2). */
    j->kp = cols;
    if (n > 1 && ti->row_meta == 0) { /* a row with a row scale is not cut: the scale heads the whole row */
        const double x_per_value = (double)sq_row_size(j->act_type, 256) / 256.0;
        const int64_t unit = ti->block_size < 256 ? 256 : ti->block_size;
        int64_t kp = (int64_t)(24.0 * 1024 / (4 * x_per_value)) / unit * unit;
        if (kp < unit) kp = unit;
        if (kp < cols) j->kp = kp;
    }
    atomic_init(&j->next, 0);
    if (n == 1) {
        /* bands of 16-row chunks (the last chunks are shared out at the end) */
        j->rb = 16;
        sq__bands_init(&j->bands, (rows + j->rb - 1) / j->rb, nth);
        if (nth > 1 && rows > j->rb) sq_threadpool_run(tp, matvec_task, j);
        else matvec_task(j, 0, 1);
        return;
    }
    if (nth > 1 && j->n_chunks > 1)
        sq_threadpool_run(tp, product_task, j);
    else
        product_task(j, 0, 1);
}

sq_status sq_matmul(sq_threadpool *tp, int type, const void *W, int64_t rows, int64_t cols, size_t row_bytes,
                    const float *X, int64_t n, float *Y, void *work, size_t work_size, sq_error *err)
{
    const sq_matmul_term t = {type, W, rows, row_bytes, Y};
    return sq_matmul_shared(tp, &t, 1, cols, X, n, work, work_size, err);
}

sq_status sq_matmul_shared(sq_threadpool *tp, const sq_matmul_term *terms, int count, int64_t cols, const float *X,
                           int64_t n, void *work, size_t work_size, sq_error *err)
{
    if (count < 1) return sq_error_set(err, SQ_EINVAL, "matmul: no products (count %d)", count);
    sq_status st;
    for (int i = 0; i < count; i++)
        if ((st = check_product(terms[i].type, terms[i].rows, cols, terms[i].row_bytes, n, err))) return st;
    const int at = sq_type_info_get(terms[0].type)->vec_dot_type;
    for (int i = 1; i < count; i++)
        if ((int)sq_type_info_get(terms[i].type)->vec_dot_type != at)
            return sq_error_set(err, SQ_EINVAL, "matmul: %s and %s do not share an activation type",
                                sq_type_info_get(terms[0].type)->name, sq_type_info_get(terms[i].type)->name);
    size_t need = 0; /* the largest term's: one with an AMX product needs room for the regrouped activations */
    for (int i = 0; i < count; i++) {
        const size_t ni = sq_matmul_work_size(terms[i].type, cols, n);
        if (ni > need) need = ni;
    }
    if (work_size < need || (need && !work))
        return sq_error_set(err, SQ_EINVAL, "matmul %s: work buffer of %zu bytes, %zu needed",
                            sq_type_info_get(terms[0].type)->name, work_size, need);

    mm_job j;
    memset(&j, 0, sizeof j);
    j.act_type = at, j.cols = cols, j.X = X, j.n = n;
    convert_input(tp, &j, work);
    /* AMX: the activations regrouped once for every term with a tile kernel */
    amx_job a;
    memset(&a, 0, sizeof a);
    bool amx_ready = false;
    for (int i = 0; i < count; i++) {
        a.fn = n > 1 && cols % 256 == 0 ? sq__amx_kernel(terms[i].type) : NULL;
        if (a.fn && !amx_ready) {
            a.type = terms[i].type, a.x = j.act, a.x_stride = j.act_stride, a.n = n, a.cols = cols;
            a.act = (void *)(((uintptr_t)j.act + j.act_stride * (size_t)n + ACT_ALIGN - 1) & ~(uintptr_t)(ACT_ALIGN - 1));
            atomic_init(&a.next, 0);
            if (sq_threadpool_n_threads(tp) > 1 && n > 16) sq_threadpool_run(tp, amx_prepare_task, &a);
            else amx_prepare_task(&a, 0, 1);
            amx_ready = true;
        }
        if (a.fn) {
            a.W = terms[i].W, a.rows = terms[i].rows, a.row_bytes = terms[i].row_bytes, a.Y = terms[i].Y;
            atomic_init(&a.next, 0);
            if (sq_threadpool_n_threads(tp) > 1 && a.rows > AMX_ROWS) sq_threadpool_run(tp, amx_product_task, &a);
            else amx_product_task(&a, 0, 1);
            continue;
        }
        j.type = terms[i].type, j.W = terms[i].W, j.rows = terms[i].rows, j.row_bytes = terms[i].row_bytes;
        j.Y = terms[i].Y;
        run_product(tp, &j);
    }
    return SQ_OK;
}
