/*
 * mixed_matmul.c — the matrix product over SmarterQuant rows (spec section 6):
 * activations gathered once through the permutation, each run of segments
 * quantized to its weight type's vec_dot_type, per-run dot products summed.
 *
 * Kernels never allocate: the gathered and quantized activations live in the
 * caller's work buffer (sq_weight_matmul_work_size). Kernels are looked up
 * once per call in the private tables of the blocks module
 * (src/blocks/kernels.h, src/blocks/gemm.h: for n > 1 the same tile kernels
 * sq_matmul uses, called once per run with accumulation; for n = 1 the run
 * kernel, which walks all runs of several rows and reduces each row once),
 * so the loop over chunks calls straight through function pointers with
 * precomputed byte offsets.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "blocks/blocks_shared.h"
#include "sq/blocks.h"
#include "sq/sqtensor.h"

/* ------------------------------------------------------------- products -- */

#define SQ__ALIGN 64


static size_t align_up(size_t n) { return (n + SQ__ALIGN - 1) & ~(size_t)(SQ__ALIGN - 1); }

/* A run: consecutive segments with the same weight type. Their blocks lie
 * back to back in the row and their activations in one act-type row, so one
 * vec_dot call covers the run. A row has at most four runs (segments 3.. all
 * share types[3]). */
typedef struct sq__run {
    int type, act;     /* weight type and its vec_dot_type */
    int64_t c0, len;   /* first column (in permuted order) and length */
    size_t w_off;      /* byte offset of the run in a weight row */
    size_t a_off;      /* byte offset of the run in an activation row */
    size_t w_seg, a_seg; /* bytes of 256 weight / activation values (panel steps) */
    sq__vec_dot_fn dot;
    sq__from_float_fn from_float;
    bool unaligned;    /* F32/F16/BF16 weights not aligned to their element in some row */
    bool per_seg;      /* a type with a row scale (ik's): every segment is a row of its own */
} sq__run;

typedef struct sq__plan {
    sq__run run[4];
    int nrun;
    size_t act_row;    /* bytes of one quantized activation row (aligned) */
    bool uniform;      /* all segments one type: the plain product applies */
} sq__plan;

/* Whether a run of a float type (F32/F16/BF16: element loads, unlike the
 * byte-packed blocks of the quantized types) can start at an address that is
 * not a multiple of its element size: the layout packs segments back to back
 * (a Q6_K segment is 210 bytes), so an F32 segment after it, or in a row
 * after an odd-sized one, is misaligned. Such runs go through
 * dot_unaligned(). */
static bool run_unaligned(const sq__run *rn, const void *data, size_t row_bytes)
{
    const sq_type_info *ti = sq_type_info_get(rn->type);
    if (ti->is_quantized || ti->type_size == 1) return false;
    const size_t es = (size_t)ti->type_size;
    return ((uintptr_t)data + rn->w_off) % es != 0 || row_bytes % es != 0;
}

/* One run's dot product for a misaligned float run: 256 values at a time are
 * copied to an aligned buffer first (the activations are always aligned). */
static float dot_unaligned(const sq__run *rn, const char *wrow, const char *arow)
{
    _Alignas(64) unsigned char buf[SQ_SEGMENT * sizeof(float)];
    const size_t we = rn->w_seg / SQ_SEGMENT, ae = rn->a_seg / SQ_SEGMENT;
    float sum = 0.0f;
    for (int64_t k0 = 0; k0 < rn->len; k0 += SQ_SEGMENT) {
        const int64_t kn = rn->len - k0 < SQ_SEGMENT ? rn->len - k0 : SQ_SEGMENT;
        memcpy(buf, wrow + rn->w_off + (size_t)k0 * we, (size_t)kn * we);
        sum += rn->dot(kn, buf, arow + rn->a_off + (size_t)k0 * ae);
    }
    return sum;
}

/* One run's dot product with one activation row: one vec_dot, or one per
 * segment for a type with a row scale (each segment a row of its own). */
static float run_dot(const sq__run *rn, const char *wrow, const char *arow)
{
    if (!rn->per_seg) return rn->dot(rn->len, wrow + rn->w_off, arow + rn->a_off);
    float sum = 0.0f;
    for (int64_t k0 = 0, s = 0; k0 < rn->len; k0 += SQ_SEGMENT, s++)
        sum += rn->dot(SQ_SEGMENT, wrow + rn->w_off + (size_t)s * rn->w_seg, arow + rn->a_off + (size_t)s * rn->a_seg);
    return sum;
}

/* Cuts a mixed row into runs; returns false for a malformed view (types that
 * do not fit, which sq_weight_mixed already refuses). Kernel pointers are
 * filled by plan_kernels(), which can fail for types without kernels. */
static bool plan_runs(const sq_weight *w, sq__plan *p)
{
    memset(p, 0, sizeof *p);
    const int64_t C = w->cols, nseg = sq_n_segments(C);
    size_t w_off = 0, a_off = 0;
    for (int64_t s = 0; s < nseg; s++) {
        const int t = sq_segment_type(w->types, s);
        const int64_t len = sq_segment_len(C, s);
        const size_t wb = sq_row_size(t, len);
        if (wb == 0) return false;
        if (p->nrun > 0 && p->run[p->nrun - 1].type == t) {
            p->run[p->nrun - 1].len += len;
        } else {
            if (p->nrun == 4) return false;
            sq__run *rn = &p->run[p->nrun++];
            rn->type = t;
            rn->act = sq_type_info_get(t)->vec_dot_type;
            rn->c0 = s * SQ_SEGMENT;
            rn->len = len;
            rn->w_off = w_off;
        }
        w_off += wb;
    }
    if (w_off != w->row_bytes) return false;
    for (int i = 0; i < p->nrun; i++) {
        const size_t ab = sq_row_size(p->run[i].act, p->run[i].len);
        if (ab == 0) return false;
        p->run[i].a_off = a_off;
        p->run[i].w_seg = sq_row_size(p->run[i].type, SQ_SEGMENT);
        p->run[i].a_seg = sq_row_size(p->run[i].act, SQ_SEGMENT);
        p->run[i].per_seg = sq_type_info_get(p->run[i].type)->row_meta > 0 && p->run[i].len > SQ_SEGMENT;
        a_off += ab;
    }
    p->act_row = align_up(a_off);
    /* one type everywhere is laid out like a plain tensor, unless that type
     * has a row scale: then each segment carries its own */
    p->uniform = p->nrun == 1 && !p->run[0].per_seg;
    return true;
}

static sq_status plan_kernels(sq__plan *p, sq_error *err)
{
    for (int i = 0; i < p->nrun; i++) {
        sq__run *rn = &p->run[i];
        if (!sq_blocks_can_dot(rn->type))
            return sq_error_set(err, SQ_EUNSUPPORTED,
                                "SmarterQuant matmul: dot products of type %s (%d) are not supported by this build",
                                sq_type_name(rn->type), rn->type);
        rn->dot = sq__blocks_vec_dot(rn->type);
        rn->from_float = sq__blocks_from_float(rn->act);
    }
    return SQ_OK;
}

/* Bytes for the gathered activations (n x C floats), 0 without a permutation. */
static size_t gather_bytes(const sq_weight *w, int64_t n)
{
    return w->perm ? align_up((size_t)n * (size_t)w->cols * sizeof(float)) : 0;
}

/* Bytes of the AMX regrouping of the runs that can take the tile unit (0 when none). */
static size_t amx_bytes(const sq__plan *p, int64_t n)
{
    size_t b = 0;
    for (int i = 0; i < p->nrun; i++)
        if (sq__amx_capable(p->run[i].type, p->run[i].len, n)) b += sq__amx_act_size(n, p->run[i].len);
    return b ? align_up(b) : 0;
}

/* The work bytes of a mixed product with plan p. */
static size_t plan_work_size(const sq_weight *w, const sq__plan *p, int64_t n)
{
    if (p->uniform) return SQ__ALIGN + gather_bytes(w, n) + sq_matmul_work_size(p->run[0].type, w->cols, n);
    return SQ__ALIGN + gather_bytes(w, n) + (size_t)n * p->act_row + amx_bytes(p, n);
}

size_t sq_weight_matmul_work_size(const sq_weight *w, int64_t n)
{
    if (!w || n <= 0) return 0;
    if (!w->mixed) return sq_matmul_work_size(w->type, w->cols, n);
    sq__plan p;
    if (!plan_runs(w, &p)) return 0;
    return plan_work_size(w, &p, n);
}

/* Shared state of one mixed product. */
typedef struct sq__mm {
    const sq__plan *p;
    const sq_weight *w;
    const float *X;      /* n x C activations, original order */
    float *Xg;           /* where gathered rows are written (NULL without permutation) */
    char *act;           /* n x act_row quantized activations */
    int64_t n;
    float *Y;
    sq__gemm_fn gemm[4]; /* per run: the SIMD tile kernel, or NULL for the generic one */
    sq__runs_fn runs;    /* n = 1: the run kernel for the runs in krun (NULL: none) */
    sq__krun krun[4];    /* the runs the run kernel takes */
    int nkrun;
    bool in_krun[4];     /* per run: taken by the run kernel (else vec_dot per row) */
    bool runs_pf;        /* the run kernel prefetches by itself, and takes every run */
    int64_t kp[4];       /* per run: column panel for n > 1 (a multiple of 256) */
    int64_t rb, cb;      /* chunk: rb weight rows x cb activation rows */
    int64_t n_rb, n_chunks;
    atomic_llong next;   /* next chunk to take */
    sq__bands bands;     /* n = 1: the threads' bands of chunks */
    sq__amx_fn amx[4];   /* n > 1: per run, the AMX product (NULL: tile kernels) */
    const void *amx_act[4]; /* its regrouped activations */
    int namx;
    bool amx_all;        /* n > 1: every run on the tile unit, one call per row group (sq__amx_runs) */
    sq__krun arun[4];    /* its runs */
    const void *amx_act_all; /* the whole row's regrouped activations */
} sq__mm;

/* Gathers and quantizes activation row j: one call per run. */
static void prepare_row(const sq__mm *m, int64_t j)
{
    const int64_t C = m->w->cols;
    const float *x = m->X + j * C;
    if (m->Xg) {
        float *g = m->Xg + j * C;
        sq_perm_gather(m->w->perm, C, x, g);
        x = g;
    }
    char *a = m->act + (size_t)j * m->p->act_row;
    for (int i = 0; i < m->p->nrun; i++) {
        const sq__run *rn = &m->p->run[i];
        rn->from_float(x + rn->c0, a + rn->a_off, rn->len);
    }
}

static void prepare_task(void *ctx, int ith, int nth)
{
    const sq__mm *m = ctx;
    for (int64_t j = ith; j < m->n; j += nth) prepare_row(m, j);
}

/* Rows [r0, r0 + nr) against one activation row: the run kernel (gemm.h)
 * takes the runs it handles (all of them, usually), 4 rows at a time, and
 * stores y; every other run is one vec_dot per row, added. Before each group
 * of 4 rows the bytes SQ__PF_AHEAD further on are prefetched (gemm.h). */
static void matvec_rows(const sq__mm *m, int64_t r0, int nr, const char *end)
{
    const sq__plan *p = m->p;
    const size_t rbytes = m->w->row_bytes;
    const char *x = m->act;
    for (int g = 0; g < nr; g += 4) {
        const int ng = nr - g < 4 ? nr - g : 4;
        const char *w = (const char *)m->w->data + (size_t)(r0 + g) * rbytes;
        float *y = m->Y + r0 + g;
        if (!m->runs_pf) sq__prefetch_span(w + SQ__PF_AHEAD, (size_t)ng * rbytes, end);
        if (m->nkrun) m->runs(m->krun, m->nkrun, w, rbytes, ng, x, y, false);
        bool acc = m->nkrun > 0;
        for (int i = 0; i < p->nrun; i++) {
            const sq__run *rn = &p->run[i];
            if (m->in_krun[i]) continue;
            for (int r = 0; r < ng; r++) {
                const char *wr = w + (size_t)r * rbytes;
                const float v = rn->unaligned ? dot_unaligned(rn, wr, x) : run_dot(rn, wr, x);
                y[r] = acc ? y[r] + v : v;
            }
            acc = true;
        }
    }
}

/* n = 1: thread ith walks band ith of the rows' chunks, then helps the others. */
static void matvec_task(void *ctx, int ith, int nth)
{
    (void)nth;
    sq__mm *m = ctx;
    const int64_t R = m->w->rows;
    const char *end = (const char *)m->w->data + (size_t)R * m->w->row_bytes;
    int band = ith;
    long long ch;
    while (sq__bands_take(&m->bands, &band, &ch)) {
        const int64_t r0 = ch * m->rb;
        matvec_rows(m, r0, (int)(r0 + m->rb <= R ? m->rb : R - r0), end);
    }
}

/* n > 1: threads take chunks (rb weight rows x cb activation rows,
 * activation-block major so consecutive chunks share activations) from a
 * shared counter. Every run is walked in column panels of kp[i] values
 * (multiples of 256, so offsets are whole segments), one tile-kernel call
 * each: the first call of the chunk stores into Y, the others accumulate.
 * Offsets and kernels come from the plan. */
static void dot_task(void *ctx, int ith, int nth)
{
    (void)ith, (void)nth;
    sq__mm *m = ctx;
    const sq__plan *p = m->p;
    const int64_t R = m->w->rows, n = m->n;
    const size_t rbytes = m->w->row_bytes, ab = p->act_row;
    const int nrun = p->nrun;
    for (;;) {
        const int64_t ch = atomic_fetch_add_explicit(&m->next, 1, memory_order_relaxed);
        if (ch >= m->n_chunks) break;
        const int64_t r0 = (ch % m->n_rb) * m->rb, c0 = (ch / m->n_rb) * m->cb;
        const int nr = (int)(r0 + m->rb <= R ? m->rb : R - r0);
        const int nc = (int)(c0 + m->cb <= n ? m->cb : n - c0);
        const char *w = (const char *)m->w->data + (size_t)r0 * rbytes;
        const char *x = m->act + (size_t)c0 * ab;
        float *y = m->Y + (size_t)c0 * (size_t)R + (size_t)r0;
        if (m->amx_all) { /* every run in one call (the chunk has every activation row: cb = n) */
            sq__amx_runs(m->arun, nrun, w, rbytes, nr, m->amx_act_all, m->w->cols / SQ_SEGMENT, n, y, (size_t)R, false);
            continue;
        }
        bool first = true;
        for (int i = 0; i < nrun; i++) {
            const sq__run *rn = &p->run[i];
            if (m->amx[i]) {
                /* every activation row at once (the chunk has them all: cb = n) */
                m->amx[i](rn->len / SQ_SEGMENT, w + rn->w_off, rbytes, nr, m->amx_act[i], 0, rn->len / SQ_SEGMENT, n,
                          y, (size_t)R, !first);
                first = false;
                continue;
            }
            if (rn->unaligned) {
                for (int c = 0; c < nc; c++)
                    for (int r = 0; r < nr; r++) {
                        const float v = dot_unaligned(rn, w + (size_t)r * rbytes, x + (size_t)c * ab);
                        float *d = &y[(size_t)c * (size_t)R + (size_t)r];
                        *d = first ? v : *d + v;
                    }
                first = false;
                continue;
            }
            for (int64_t k0 = 0; k0 < rn->len; k0 += m->kp[i]) {
                const int64_t kn = k0 + m->kp[i] <= rn->len ? m->kp[i] : rn->len - k0;
                const size_t seg = (size_t)(k0 / SQ_SEGMENT);
                const char *wp = w + rn->w_off + seg * rn->w_seg;
                const char *xp = x + rn->a_off + seg * rn->a_seg;
                if (m->gemm[i]) m->gemm[i](kn, wp, rbytes, nr, xp, ab, nc, y, (size_t)R, !first);
                else sq__gemm_generic(rn->type, kn, wp, rbytes, nr, xp, ab, nc, y, (size_t)R, !first);
                first = false;
            }
        }
    }
}

/* Regroups one AMX run's activations, a token tile at a time. */
typedef struct sq__amx_prep {
    const sq__mm *m;
    atomic_llong next; /* next (run, token tile) */
    int64_t ntile;
} sq__amx_prep;

static void amx_prep_task(void *ctx, int ith, int nth)
{
    (void)ith, (void)nth;
    sq__amx_prep *ap = ctx;
    const sq__mm *m = ap->m;
    for (;;) {
        const int64_t k = atomic_fetch_add_explicit(&ap->next, 1, memory_order_relaxed);
        if (k >= (int64_t)m->p->nrun * ap->ntile) break;
        const int i = (int)(k / ap->ntile);
        const int64_t t = k % ap->ntile;
        if (m->amx_all) { /* the whole row at once, each run in its activation format */
            if (i == 0) sq__amx_prepare_runs(m->arun, m->p->nrun, m->act, m->p->act_row, m->n, (void *)m->amx_act_all, t, t + 1);
            continue;
        }
        if (!m->amx[i]) continue;
        const sq__run *rn = &m->p->run[i];
        sq__amx_prepare(rn->type, m->act + rn->a_off, m->p->act_row, m->n, rn->len, (void *)m->amx_act[i], t, t + 1);
    }
}

/* n > 1 on a CPU with AMX: the runs whose types have AMX products get them
 * (all in one sq__amx_runs call when every run has one), with their
 * activations regrouped into the work buffer at `area`. Returns whether any
 * run did. */
static bool amx_setup(sq__mm *m, sq_threadpool *tp, char *area)
{
    if (m->n <= 1) return false;
    area = (char *)(((uintptr_t)area + SQ__ALIGN - 1) & ~(uintptr_t)(SQ__ALIGN - 1));
    for (int i = 0; i < m->p->nrun; i++) {
        const sq__run *rn = &m->p->run[i];
        m->amx[i] = rn->unaligned || !sq__amx_capable(rn->type, rn->len, m->n) ? NULL : sq__amx_kernel(rn->type);
        if (!m->amx[i]) continue;
        m->amx_act[i] = area;
        area += sq__amx_act_size(m->n, rn->len);
        m->namx++;
    }
    if (!m->namx) return false;
    /* every run on the tile unit: one call per row group for all of them */
    if (m->namx == m->p->nrun) {
        for (int i = 0; i < m->p->nrun; i++)
            m->arun[i] = (sq__krun){m->p->run[i].type, m->p->run[i].len, m->p->run[i].w_off, m->p->run[i].a_off};
        m->amx_all = sq__amx_runs_handle(m->arun, m->p->nrun);
        m->amx_act_all = m->amx_act[0];
    }
    /* a run of segments that each carry a row scale (ik's _KS types) has no
     * plain-row layout: only sq__amx_runs takes it; alone it goes to the tile kernels */
    for (int i = 0; i < m->p->nrun && !m->amx_all; i++)
        if (m->amx[i] && m->p->run[i].per_seg) {
            m->amx[i] = NULL;
            m->namx--;
        }
    if (!m->namx) return false;
    sq__amx_prep ap = {.m = m, .ntile = (m->n + 15) / 16};
    atomic_init(&ap.next, 0);
    if (sq_threadpool_n_threads(tp) > 1 && m->n > 16) sq_threadpool_run(tp, amx_prep_task, &ap);
    else amx_prep_task(&ap, 0, 1);
    return true;
}

/* Gathers every activation row into the work buffer (uniform mixed tensors). */
typedef struct sq__gather {
    const int32_t *perm;
    int64_t C, n;
    const float *X;
    float *out;
} sq__gather;

static void gather_task(void *ctx, int ith, int nth)
{
    const sq__gather *g = ctx;
    for (int64_t j = ith; j < g->n; j += nth) sq_perm_gather(g->perm, g->C, g->X + j * g->C, g->out + j * g->C);
}

/* The product. Plain weights go to sq_matmul. A mixed weight whose segments
 * all have one type is laid out exactly like a plain tensor of that type, so
 * it goes there too, after the gather. Otherwise: gather + quantize every
 * activation row once (in parallel when there are several), then every thread
 * takes a contiguous band of output rows and sums the runs' dot products. */
sq_status sq_weight_matmul(sq_threadpool *tp, const sq_weight *w, const float *X, int64_t n, float *Y, void *work,
                           size_t work_size, sq_error *err)
{
    if (!w || !X || !Y || n <= 0)
        return sq_error_set(err, SQ_EINVAL, "SmarterQuant matmul: missing weight or activations, or n = %lld",
                            (long long)n);
    if (!w->mixed)
        return sq_matmul(tp, w->type, w->data, w->rows, w->cols, w->row_bytes, X, n, Y, work, work_size, err);

    sq__plan p;
    if (!plan_runs(w, &p))
        return sq_error_set(err, SQ_EINVAL, "SmarterQuant matmul: the view's types do not fit %lld columns",
                            (long long)w->cols);
    const size_t need = plan_work_size(w, &p, n);
    if (work_size < need || (need && !work))
        return sq_error_set(err, SQ_EINVAL, "SmarterQuant matmul: work buffer of %zu bytes, %zu needed", work_size,
                            need);
    /* all parts of the work buffer start 64-byte aligned (the size has room for it) */
    work = (void *)(((uintptr_t)work + SQ__ALIGN - 1) & ~(uintptr_t)(SQ__ALIGN - 1));
    work_size -= SQ__ALIGN;
    const size_t gb = gather_bytes(w, n);
    float *Xg = w->perm ? (float *)work : NULL;

    if (p.uniform) {
        const float *Xin = X;
        if (Xg) {
            sq__gather g = { w->perm, w->cols, n, X, Xg };
            if (n > 1) sq_threadpool_run(tp, gather_task, &g);
            else gather_task(&g, 0, 1);
            Xin = Xg;
        }
        return sq_matmul(tp, p.run[0].type, w->data, w->rows, w->cols, w->row_bytes, Xin, n, Y,
                         (char *)work + gb, work_size - gb, err);
    }

    sq_status st = plan_kernels(&p, err);
    if (st != SQ_OK) return st;
    for (int i = 0; i < p.nrun; i++) p.run[i].unaligned = run_unaligned(&p.run[i], w->data, w->row_bytes);
    sq__mm m;
    memset(&m, 0, sizeof m);
    m.p = &p, m.w = w, m.X = X, m.Xg = Xg, m.act = (char *)work + gb, m.n = n, m.Y = Y;
    m.runs = sq__runs_kernel();
    for (int i = 0; i < p.nrun; i++) {
        m.gemm[i] = sq__gemm_kernel(p.run[i].type);
        if (n == 1 && m.runs && sq__runs_handles(p.run[i].type) && p.run[i].len % SQ_SEGMENT == 0) {
            m.in_krun[i] = true;
            m.krun[m.nkrun++] = (sq__krun){ p.run[i].type, p.run[i].len, p.run[i].w_off, p.run[i].a_off };
        }
        /* as sq_matmul: 4 activation rows of a panel (about 24 KiB) stay in L1;
         * a type with a row scale is taken one segment (one row of it) at a time */
        int64_t kp = (int64_t)(24.0 * 1024 / (4.0 * (double)p.run[i].a_seg / SQ_SEGMENT)) / SQ_SEGMENT * SQ_SEGMENT;
        m.kp[i] = kp < SQ_SEGMENT || p.run[i].per_seg ? SQ_SEGMENT : kp;
    }
    const int nth = sq_threadpool_n_threads(tp);
    if (n > 1 && nth > 1) sq_threadpool_run(tp, prepare_task, &m);
    else prepare_task(&m, 0, 1);

    if (n == 1) {
        /* bands of 16-row chunks, as sq_matmul's matrix-vector product */
        m.runs_pf = m.nkrun == p.nrun && sq__runs_prefetch(m.krun, m.nkrun, w->row_bytes);
        m.rb = 16;
        sq__bands_init(&m.bands, (w->rows + m.rb - 1) / m.rb, nth);
        if (nth > 1 && w->rows > m.rb) sq_threadpool_run(tp, matvec_task, &m);
        else matvec_task(&m, 0, 1);
        return SQ_OK;
    }
    if (amx_setup(&m, tp, (char *)m.act + (size_t)n * p.act_row)) {
        /* AMX runs: chunks of 64 weight rows against every activation row */
        m.cb = n;
        m.rb = 64;
        m.n_rb = (w->rows + m.rb - 1) / m.rb;
        m.n_chunks = m.n_rb;
        atomic_init(&m.next, 0);
        if (nth > 1 && m.n_chunks > 1) sq_threadpool_run(tp, dot_task, &m);
        else dot_task(&m, 0, 1);
        return SQ_OK;
    }
    /* chunk shape as sq_matmul's: up to 16 activation rows (kept in L2), by
     * enough weight rows that each thread gets several chunks */
    m.cb = n < 16 ? n : 16;
    const int64_t n_cb = (n + m.cb - 1) / m.cb;
    int64_t rb = n == 1 ? 32 : 16;
    while (rb > 4 && ((w->rows + rb - 1) / rb) * n_cb < 8 * nth) rb /= 2;
    m.rb = rb;
    m.n_rb = (w->rows + rb - 1) / rb;
    m.n_chunks = m.n_rb * n_cb;
    atomic_init(&m.next, 0);
    if (nth > 1 && m.n_chunks > 1) sq_threadpool_run(tp, dot_task, &m);
    else dot_task(&m, 0, 1);
    return SQ_OK;
}
