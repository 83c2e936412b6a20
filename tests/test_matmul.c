/*
 * test_matmul.c — the thread pool and sq_matmul.
 *
 *  - pool: every run calls fn exactly once per thread index, runs are
 *    separated (a run sees the previous run's writes), thousands of tiny runs
 *    and repeated create/free do not hang or leak; NULL pool runs inline.
 *  - sq_matmul against a double-precision reference computed from the
 *    dequantized weights and the dequantized (activation-type) inputs, for
 *    n = 1, 3, 17, 64 on 1 and 2 threads and every ISA the CPU has, within
 *    1e-5 of Σ|w·x| per output;
 *    weight rows are random blocks of ggml's golden rows; a row stride larger
 *    than the row; and the error paths (bad columns, small work buffer);
 *  - the AVX-512 row-pair tiles equal the one-row tiles bit for bit, and
 *    sq_matmul_shared equals separate sq_matmul calls bit for bit.
 */
#include <stdatomic.h>
#include <time.h>

#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"
#include "sq/matmul.h"
#include "blocks/gemm.h"

/* ---- thread pool ---- */

typedef struct {
    atomic_int calls[8];
    atomic_int total;
    atomic_int nth_seen;
    long long data[8];
    int round;
    atomic_int order_bad;
} pool_ctx;

static void pool_fn(void *p, int ith, int nth)
{
    pool_ctx *c = p;
    atomic_fetch_add(&c->calls[ith], 1);
    atomic_fetch_add(&c->total, 1);
    atomic_store(&c->nth_seen, nth);
    /* each thread checks that the previous round's writes are all visible */
    for (int i = 0; i < nth; i++)
        if (c->data[i] != c->round - 1 && c->round > 0) atomic_store(&c->order_bad, 1);
}

static void pool_fn_write(void *p, int ith, int nth)
{
    (void)nth;
    pool_ctx *c = p;
    c->data[ith] = c->round;
}

static void test_pool(void)
{
    for (int nt = 1; nt <= 4; nt++) {
        sq_threadpool *tp = sq_threadpool_create(nt);
        CHECK(tp != NULL);
        if (!tp) return;
        CHECK_INT(sq_threadpool_n_threads(tp), nt);
        pool_ctx *c = calloc(1, sizeof *c);
        const int runs = nt <= 2 ? 3000 : 300; /* more threads than cores: keep it short */
        for (int r = 0; r < runs; r++) {
            c->round = r;
            sq_threadpool_run(tp, pool_fn, c);
            sq_threadpool_run(tp, pool_fn_write, c);
            if (r % 500 == 0) {
                /* let the workers fall asleep once in a while */
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
            }
        }
        int bad = 0;
        for (int i = 0; i < nt; i++) bad += atomic_load(&c->calls[i]) != runs;
        CHECK_MSG(bad == 0, "%d threads: some thread index was not called exactly %d times", nt, runs);
        CHECK_INT(atomic_load(&c->total), runs * nt);
        CHECK_INT(atomic_load(&c->nth_seen), nt);
        CHECK_MSG(atomic_load(&c->order_bad) == 0, "%d threads: a run saw stale data of the previous run", nt);
        free(c);
        sq_threadpool_free(tp);
    }
    /* NULL pool: inline, one thread */
    pool_ctx *c = calloc(1, sizeof *c);
    sq_threadpool_run(NULL, pool_fn, c);
    CHECK_INT(atomic_load(&c->calls[0]), 1);
    CHECK_INT(atomic_load(&c->nth_seen), 1);
    free(c);
    sq_threadpool_free(NULL);
    CHECK_INT(sq_threadpool_n_threads(NULL), 1);
    /* create/free churn */
    for (int i = 0; i < 50; i++) sq_threadpool_free(sq_threadpool_create(2));
    CHECK(1);
}

/* ---- sq_matmul ---- */

static void check_matmul_ns(const char *name, int64_t rows, int64_t cols, sq_threadpool *tp, const int64_t *ns,
                            size_t nns);

static void check_matmul(const char *name, int64_t rows, int64_t cols, sq_threadpool *tp)
{
    static const int64_t ns[] = {1, 3, 17, 64};
    check_matmul_ns(name, rows, cols, tp, ns, 4);
}

/* rows × cols random weights (a few large ones) quantized to type t, rows
 * stride bytes apart in W. */
static void quantize_random_rows(int t, unsigned char *W, int64_t rows, int64_t cols, size_t stride)
{
    const size_t rb = sq_row_size(t, cols);
    float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
    unsigned char *q = malloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = tu_rndf() * (i % 11 == 0 ? 3.0f : 1.0f);
    sq_error e = {0};
    CHECK_MSG(sq_quantize_rows(t, wf, q, rows, cols, NULL, &e) == SQ_OK, "quantize %s: %s", sq_type_name(t), e.msg);
    for (int64_t r = 0; r < rows; r++) memcpy(W + r * stride, q + r * rb, rb);
    free(wf), free(q);
}

/* sq_matmul for each n of ns against the double-precision reference
 * (weights: ggml's golden blocks from ../shared, or quantized here for the
 * types that have none). */
static void check_matmul_ns(const char *name, int64_t rows, int64_t cols, sq_threadpool *tp, const int64_t *ns,
                            size_t nns)
{
    const int t = sq_type_from_name(name);
    const sq_type_info *ti = sq_type_info_get(t);
    if (!sq_blocks_can_dot(t) || !sq_blocks_can_dequantize(t)) {
        fprintf(stderr, "SKIP matmul %s: no kernels in this build\n", name);
        harness_skipped++;
        return;
    }
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "golden/quant/%s/q.bin", name);
    size_t gsize = 0;
    unsigned char *gq = NULL;
    /* types without golden blocks (ik_llama.cpp's): random rows quantized here */
    const bool own = ti->row_meta > 0 || (strncmp(name, "iq", 2) == 0 && strchr(name, 'k') != NULL);
    if (t != SQ_TYPE_F32 && !own) {
        if (!harness_shared_file(path, sizeof path, rel)) {
            fprintf(stderr, "SKIP matmul %s: %s absent\n", name, rel);
            harness_skipped++;
            return;
        }
        gq = harness_read_file(path, &gsize);
    }
    const size_t row = sq_row_size(t, cols), stride = row + 64; /* a padded row stride */
    const int per = ti->block_size == 1 ? 32 : ti->block_size;
    const size_t bb = sq_row_size(t, per), nblk = gq ? gsize / bb : 0;
    unsigned char *W = calloc((size_t)rows, stride);
    if (own) quantize_random_rows(t, W, rows, cols, stride);
    for (int64_t r = 0; r < rows && !own; r++)
        for (int64_t b = 0; b < cols / per; b++) {
            if (gq)
                memcpy(W + r * stride + b * bb, gq + (tu_rnd() % nblk) * bb, bb);
            else
                for (int k = 0; k < per; k++) ((float *)(W + r * stride))[b * per + k] = tu_rndf();
        }
    float *Wd = malloc(sizeof(float) * rows * cols);
    for (int64_t r = 0; r < rows; r++) sq_dequantize_row(t, W + r * stride, Wd + r * cols, cols);

    for (size_t ni = 0; ni < nns; ni++) {
        const int64_t n = ns[ni];
        float *X = malloc(sizeof(float) * n * cols), *Y = malloc(sizeof(float) * n * rows);
        float *Xd = malloc(sizeof(float) * n * cols);
        for (int64_t i = 0; i < n * cols; i++) X[i] = tu_rndf() * (i % 7 == 0 ? 4.0f : 1.0f);
        const int at = ti->vec_dot_type;
        const size_t xr = sq_row_size(at, cols);
        unsigned char *xq = malloc(xr * n);
        for (int64_t j = 0; j < n; j++) {
            if (at == SQ_TYPE_F32)
                memcpy(Xd + j * cols, X + j * cols, sizeof(float) * cols);
            else {
                sq_quantize_act(at, X + j * cols, xq + j * xr, cols);
                tu_act_to_float(at, xq + j * xr, Xd + j * cols, cols);
            }
        }
        const size_t ws = sq_matmul_work_size(t, cols, n);
        void *work = ws ? malloc(ws) : NULL;
        sq_error e = {0};
        for (int64_t i = 0; i < n * rows; i++) Y[i] = NAN;
        const sq_status st = sq_matmul(tp, t, W, rows, cols, stride, X, n, Y, work, ws, &e);
        CHECK_MSG(st == SQ_OK, "matmul %s: %s", name, e.msg);
        int bad = 0;
        for (int64_t j = 0; j < n && st == SQ_OK; j++)
            for (int64_t r = 0; r < rows; r++) {
                double ref = 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) {
                    const double p = (double)Wd[r * cols + c] * Xd[j * cols + c];
                    ref += p;
                    mag += fabs(p);
                }
                if (at == SQ_TYPE_Q8_1) /* ggml's min term uses the stored s = fp16(d·Σq) */
                    for (int64_t b = 0; b < cols / 32; b++) {
                        const unsigned char *blk = xq + j * xr + b * 36;
                        uint16_t hm, hd, hs;
                        memcpy(&hm, W + r * stride + b * sq_row_size(t, 32) + 2, 2);
                        memcpy(&hd, blk, 2);
                        memcpy(&hs, blk + 2, 2);
                        double qs = 0;
                        for (int k = 0; k < 32; k++) qs += (int8_t)blk[4 + k];
                        ref += (double)sq_fp16_to_f32(hm) * (sq_fp16_to_f32(hs) - (double)sq_fp16_to_f32(hd) * qs);
                    }
                const float got = Y[j * rows + r];
                if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30) && bad++ < 3)
                    fprintf(stderr, "matmul %s n=%lld threads=%d Y[%lld][%lld] = %.9g, reference %.9g\n", name,
                            (long long)n, sq_threadpool_n_threads(tp), (long long)j, (long long)r, got, ref);
            }
        CHECK_MSG(bad == 0, "matmul %s n=%lld on %d threads: %d outputs off", name, (long long)n,
                  sq_threadpool_n_threads(tp), bad);
        free(X), free(Y), free(Xd), free(xq), free(work);
    }
    free(W), free(Wd), free(gq);
}

static void test_matmul_types(void)
{
    static const char *names[] = {"q4_0", "q8_0", "q4_K", "q6_K", "q5_K", "q3_K", "q2_K", "iq4_xs", "iq4_nl",
                                  "q5_0", "q4_1", "q5_1", "f16", "bf16", "f32"};
    /* every ISA this CPU has: scalar (generic tiles), AVX2 and AVX-512 tile kernels, AMX tiles */
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AMX; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        for (int nt = 1; nt <= 2; nt++) {
            sq_threadpool *tp = sq_threadpool_create(nt);
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_matmul(names[i], 37, 512, tp);
            check_matmul("q4_K", 130, 1024, tp);
            /* rows over 512 bytes: the run kernel's one-type bands prefetch the next band (PF) */
            static const char *runs[] = {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_xs", "q8_0"};
            for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) check_matmul(runs[i], 37, 2048, tp);
            sq_threadpool_free(tp);
        }
    }
    sq_blocks_set_isa(SQ_ISA_AMX);
}

/* Every SIMD level this CPU has runs the SIMD tile and run kernels: AMX is
 * AVX-512 plus the tile unit, so it keeps AVX-512's kernels for what the
 * tiles do not take (n = 1, types without AMX products); only scalar falls
 * back to the generic tiles and per-row vec_dot. */
static void test_kernels_per_isa(void)
{
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AMX; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        const bool simd = isa >= SQ_ISA_AVX2;
        CHECK_MSG((sq__runs_kernel() != NULL) == simd, "%s: run kernel %s", sq_isa_name((sq_isa)isa),
                  simd ? "missing" : "present");
        CHECK_MSG((sq__gemm_kernel(SQ_TYPE_Q4_K) != NULL) == simd, "%s: Q4_K tile kernel %s",
                  sq_isa_name((sq_isa)isa), simd ? "missing" : "present");
        CHECK_MSG((sq__gemm_kernel(SQ_TYPE_Q8_0) != NULL) == simd, "%s: Q8_0 tile kernel %s",
                  sq_isa_name((sq_isa)isa), simd ? "missing" : "present");
    }
    sq_blocks_set_isa(SQ_ISA_AMX);
}

/* The matrix-vector product's bands (gemm.h): every chunk is taken exactly
 * once, a thread starts at the front of its own band and moves on to the
 * others when it is done, for any count of chunks and threads (more threads
 * than bands included); and products with many threads are right. */
static void test_matvec_bands(void)
{
    static const long long chunks[] = {0, 1, 5, 16, 17, 100};
    static const int threads[] = {1, 2, 3, 16, 17, 40};
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 6; b++) {
            sq__bands bs;
            sq__bands_init(&bs, chunks[a], threads[b]);
            const int nth = threads[b];
            int *band = malloc(sizeof(int) * (size_t)nth), *seen = calloc((size_t)chunks[a] + 1, sizeof(int));
            bool *done = calloc((size_t)nth, 1);
            int live = nth, bad = 0, first_bad = 0;
            for (int t = 0; t < nth; t++) band[t] = t;
            for (int step = 0; live > 0; step++) {
                /* first every thread once in order, then an uneven interleaving */
                const int t = step < nth ? step : (int)((step * 7u) % (unsigned)nth);
                if (done[t]) continue;
                long long c;
                if (!sq__bands_take(&bs, &band[t], &c)) {
                    done[t] = true;
                    live--;
                    continue;
                }
                if (c < 0 || c >= chunks[a]) bad++;
                else seen[c]++;
                /* a thread with a band of its own starts at its front */
                if (step < nth && t < bs.n && chunks[a] * (t + 1) / bs.n > chunks[a] * t / bs.n &&
                    c != chunks[a] * t / bs.n)
                    first_bad++;
            }
            CHECK_MSG(first_bad == 0, "bands: %lld chunks, %d threads: %d threads did not start at their band",
                      chunks[a], nth, first_bad);
            for (long long c = 0; c < chunks[a]; c++) bad += seen[c] != 1;
            CHECK_MSG(bad == 0, "bands: %lld chunks, %d threads: %d chunks not taken exactly once", chunks[a], nth, bad);
            CHECK(bs.n >= 1 && bs.n <= SQ__MAX_BANDS);
            free(band), free(seen), free(done);
        }
    for (int nt = 3; nt <= 17; nt += 14) {
        sq_threadpool *tp = sq_threadpool_create(nt);
        check_matmul("q6_K", 300, 256, tp);
        check_matmul("q8_0", 5, 512, tp);
        sq_threadpool_free(tp);
    }
}

/* The AMX products (kernels_amx.c) on shapes that reach every path: row
 * groups of 16 and a partial one (37 rows), three panels of 8 super-blocks
 * (4608 columns), one token tile, a pair with a partial second one and a pair
 * plus a single (n = 2, 33, 40), on 1 and 2 threads. Q8_0 (K = 32 tiles, a
 * fold per 32-value block) as well, also at 9 rows and n = 17, and with rows
 * that are not whole 256-value super-blocks (4128 columns: the AVX-512
 * tiles take those). */
static void test_matmul_amx(void)
{
    if (sq_blocks_set_isa(SQ_ISA_AMX) != SQ_ISA_AMX) SKIP("no AMX on this CPU");
    static const char *names[] = {"q4_K", "q6_K", "q5_K", "q3_K", "q2_K", "iq4_xs",
                                  "iq4_ks", "iq4_k", "iq5_k", "iq5_ks", "iq3_k", "iq3_ks", "iq6_k", "iq2_kl",
                                  "q8_0"};
    static const int64_t ns[] = {2, 33, 40}, ns8[] = {17, 3};
    for (int nt = 1; nt <= 2; nt++) {
        sq_threadpool *tp = sq_threadpool_create(nt);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            CHECK_MSG(sq__amx_kernel(sq_type_from_name(names[i])) != NULL, "%s has no AMX product", names[i]);
            check_matmul_ns(names[i], 37, 4608, tp, ns, 3);
        }
        check_matmul_ns("q8_0", 9, 2048, tp, ns8, 2);
        check_matmul_ns("q8_0", 20, 4128, tp, ns8, 2);
        CHECK(sq__amx_capable(SQ_TYPE_Q8_0, 4096, 2) && !sq__amx_capable(SQ_TYPE_Q8_0, 4128, 2));
        sq_threadpool_free(tp);
    }
}

/* The AVX-512 tile kernels that put two weight rows in the halves of a
 * register promise, per row, exactly the one-row kernel's results: the whole
 * product must equal, bit for bit, the same product taken one weight row at
 * a time (which runs the one-row kernel), with full and partial column tiles. */
static void test_matmul_row_pairs(void)
{
    if (sq_blocks_set_isa(SQ_ISA_AVX512) != SQ_ISA_AVX512) {
        SKIP("no AVX-512 on this CPU");
        return;
    }
    static const char *names[] = {"q4_K", "q5_K", "q6_K", "q4_0", "q5_0", "q8_0", "iq4_nl"};
    const int64_t rows = 11, cols = 512, n = 9;
    for (size_t ti = 0; ti < sizeof names / sizeof names[0]; ti++) {
        const int t = sq_type_from_name(names[ti]);
        const size_t rb = sq_row_size(t, cols);
        float *wf = malloc(sizeof(float) * rows * cols), *X = malloc(sizeof(float) * n * cols);
        float *Y = malloc(sizeof(float) * n * rows), *Y1 = malloc(sizeof(float) * n), *Yr = malloc(sizeof(float) * n * rows);
        for (int64_t i = 0; i < rows * cols; i++) wf[i] = tu_rndf() * (i % 5 == 0 ? 3.0f : 1.0f);
        for (int64_t i = 0; i < n * cols; i++) X[i] = tu_rndf();
        unsigned char *W = malloc(rb * rows);
        sq_error e = {0};
        CHECK(sq_quantize_rows(t, wf, W, rows, cols, NULL, &e) == SQ_OK);
        const size_t ws = sq_matmul_work_size(t, cols, n);
        void *work = malloc(ws);
        CHECK(sq_matmul(NULL, t, W, rows, cols, rb, X, n, Y, work, ws, &e) == SQ_OK);
        for (int64_t r = 0; r < rows; r++) {
            CHECK(sq_matmul(NULL, t, W + r * rb, 1, cols, rb, X, n, Y1, work, ws, &e) == SQ_OK);
            for (int64_t j = 0; j < n; j++) Yr[j * rows + r] = Y1[j];
        }
        CHECK_MSG(memcmp(Y, Yr, sizeof(float) * n * rows) == 0, "matmul %s: row-pair tiles differ from one-row tiles",
                  names[ti]);
        free(wf), free(X), free(Y), free(Y1), free(Yr), free(W), free(work);
    }
}

/* sq_matmul_shared: three weights of one input (two types of one activation
 * type, F16, F32) equal three sq_matmul calls bit for bit, on 1 and 2
 * threads; mixed activation types are refused with a message naming them. */
static void test_matmul_shared(void)
{
    /* {q4_0, q8_0, ...}: a first term without an AMX product before one with it (the work is the largest term's) */
    static const char *sets[][3] = {{"q4_K", "q6_K", "q4_K"}, {"q8_0", "q4_0", "iq4_nl"}, {"q4_0", "q8_0", "iq4_nl"},
                                    {"f16", "f16", "f16"}, {"f32", "f32", "f32"}};
    const int64_t cols = 512, n = 19, rows[3] = {37, 16, 64};
    float *X = malloc(sizeof(float) * n * cols);
    for (int64_t i = 0; i < n * cols; i++) X[i] = tu_rndf();
    for (int nt = 1; nt <= 2; nt++) {
        sq_threadpool *tp = sq_threadpool_create(nt);
        for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
            sq_matmul_term t[3];
            float *Yref[3];
            unsigned char *W[3];
            size_t ws = 0;
            for (int k = 0; k < 3; k++) {
                const int type = sq_type_from_name(sets[si][k]);
                const size_t rb = sq_row_size(type, cols);
                float *wf = malloc(sizeof(float) * rows[k] * cols);
                for (int64_t i = 0; i < rows[k] * cols; i++) wf[i] = tu_rndf();
                W[k] = malloc(rb * rows[k]);
                sq_error e = {0};
                if (type == SQ_TYPE_F32)
                    memcpy(W[k], wf, rb * rows[k]);
                else
                    CHECK(sq_quantize_rows(type, wf, W[k], rows[k], cols, NULL, &e) == SQ_OK);
                free(wf);
                t[k] = (sq_matmul_term){type, W[k], rows[k], rb, malloc(sizeof(float) * n * rows[k])};
                Yref[k] = malloc(sizeof(float) * n * rows[k]);
                if (sq_matmul_work_size(type, cols, n) > ws) ws = sq_matmul_work_size(type, cols, n);
            }
            void *work = malloc(ws + 1);
            sq_error e = {0};
            for (int k = 0; k < 3; k++)
                CHECK(sq_matmul(tp, t[k].type, W[k], rows[k], cols, t[k].row_bytes, X, n, Yref[k], work, ws, &e) ==
                      SQ_OK);
            CHECK_MSG(sq_matmul_shared(tp, t, 3, cols, X, n, work, ws, &e) == SQ_OK, "shared %s: %s", sets[si][0], e.msg);
            for (int k = 0; k < 3; k++) {
                CHECK_MSG(memcmp(t[k].Y, Yref[k], sizeof(float) * n * rows[k]) == 0, "shared %s term %d differs",
                          sets[si][k], k);
                free(t[k].Y), free(Yref[k]), free(W[k]);
            }
            free(work);
        }
        sq_threadpool_free(tp);
    }
    /* Q4_K (Q8_K activations) with Q8_0 (Q8_0 activations) */
    const size_t r4 = sq_row_size(SQ_TYPE_Q4_K, cols), r8 = sq_row_size(SQ_TYPE_Q8_0, cols);
    unsigned char *w4 = calloc(4, r4), *w8 = calloc(4, r8);
    float Y[2][4 * 19];
    const sq_matmul_term bad[2] = {{SQ_TYPE_Q4_K, w4, 4, r4, Y[0]}, {SQ_TYPE_Q8_0, w8, 4, r8, Y[1]}};
    const size_t ws = sq_matmul_work_size(SQ_TYPE_Q8_0, cols, n) + sq_matmul_work_size(SQ_TYPE_Q4_K, cols, n);
    void *work = malloc(ws);
    sq_error e = {0};
    CHECK(sq_matmul_shared(NULL, bad, 2, cols, X, n, work, ws, &e) == SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "q8_0");
    CHECK(sq_matmul_shared(NULL, bad, 0, cols, X, n, work, ws, &e) == SQ_EINVAL);
    free(w4), free(w8), free(work), free(X);
}

static void test_matmul_errors(void)
{
    float x[64] = {0}, y[4];
    unsigned char w[256] = {0}, work[4096];
    sq_error e = {0};
    CHECK_INT(sq_matmul(NULL, SQ_TYPE_Q4_0, w, 1, 48, 18, x, 1, y, work, sizeof work, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "q4_0");
    CHECK_CONTAINS(e.msg, "48");
    CHECK_INT(sq_matmul(NULL, 4, w, 1, 32, 18, x, 1, y, work, sizeof work, &e), SQ_EINVAL);
    if (sq_blocks_can_dot(SQ_TYPE_Q4_0)) {
        CHECK_INT(sq_matmul(NULL, SQ_TYPE_Q4_0, w, 1, 64, 36, x, 1, y, work, 8, &e), SQ_EINVAL);
        CHECK_CONTAINS(e.msg, "work buffer");
        CHECK_INT(sq_matmul(NULL, SQ_TYPE_Q4_0, w, 2, 64, 20, x, 1, y, work, sizeof work, &e), SQ_EINVAL);
        CHECK_CONTAINS(e.msg, "row stride");
    }
    CHECK(sq_matmul_work_size(SQ_TYPE_Q4_K, 1024, 3) >= 3 * sq_row_size(SQ_TYPE_Q8_K, 1024));
}

int main(void)
{
    tu_rng_state = 88172645463325252ULL; /* this file's data, as before testutil.h */
    RUN(test_pool);
    RUN(test_matmul_types);
    RUN(test_kernels_per_isa);
    RUN(test_matvec_bands);
    RUN(test_matmul_amx);
    RUN(test_matmul_row_pairs);
    RUN(test_matmul_shared);
    RUN(test_matmul_errors);
    return harness_finish("matmul");
}
