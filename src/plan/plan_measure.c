/*
 * plan_measure.c — what the planner knows about every tensor from its
 * weights: the importance-weighted energy of every column (for the
 * permutations and the relative error), and the error of every candidate type
 * on every segment slot, with and without the group's permutation, measured
 * by really quantizing (exactly the bytes sq quantize will write: each
 * segment a row of its own with its permuted importance slice) and
 * dequantizing again.
 *
 * Streaming: a tensor is read a chunk of rows at a time (dequantized from the
 * model's map into a buffer of SQ__CHUNK_ROWS rows), so memory holds one
 * chunk per tensor and the threads' scratch, never a whole tensor. The rows
 * measured are a sample spread over the tensor (all rows on request); the
 * jobs of a chunk (segment x candidate) run on the shared thread pool, each
 * writing only its own result, and the results are added in chunk and job
 * order, so the numbers do not depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_internal.h"
#include "sq/blocks.h"
#include "sq/matmul.h"
#include "sq/sqconfig.h"
#include "sq/types.h"

#define SQ__CHUNK_ROWS 256 /* rows read and measured at a time */

/* The rows measured: their indices (ascending, a row may repeat) and what
 * each stands for in the sum over all rows. */
typedef struct sample {
    int64_t n;
    int64_t *row;
    double *w;
} sample;

/* One measurement of a chunk: candidate k of a slot on one segment. */
typedef struct mjob {
    int slot, k;
    int64_t seg;
    double raw; /* sum sw * imp * dW^2 */
    double fac; /* sum over the factor uses of scale * sum sw * row * col * dW^2 */
    sq_status st;
    sq_error e;
} mjob;

/* A thread's scratch, allocated once per measuring pass. */
typedef struct mscratch {
    float *buf;    /* chunk rows x one segment, gathered */
    void *q;       /* their quantized bytes */
    float *deq;    /* one dequantized segment row */
    float *impp;   /* the segment's (permuted) importance, one matrix */
    double *colp;  /* the segment's (permuted) factor columns, per use */
    int32_t *cols; /* the segment's source columns */
} mscratch;

typedef struct mctx {
    const sq__ptensor *pt;
    const float *W;          /* n_rows rows of the chunk, cols floats each, original order */
    const int64_t *rows;     /* their indices in the tensor */
    const double *sw;        /* their sample weights */
    int64_t n_rows;
    const int32_t *perm;     /* the option's permutation or NULL */
    mjob *jobs;
    int n_jobs;
    int next;                /* next job to take (atomic) */
    mscratch *scratch;       /* one per thread index */
} mctx;

/* Dequantizes rows (n of them, indices idx) of a tensor into W. */
static void read_rows(const sq__ptensor *pt, const int64_t *idx, int64_t n, float *W)
{
    size_t rb = sq_row_size(pt->in_type, pt->cols);
    const unsigned char *src = pt->data;
    for (int64_t i = 0; i < n; i++) sq_dequantize_row(pt->in_type, src + (size_t)idx[i] * rb, W + i * pt->cols, pt->cols);
}

/* Quantizes one segment of the chunk's rows to the job's type (a run of rows
 * per matrix, each with its matrix's importance slice), dequantizes it and
 * sums the weighted squared errors in double. */
static void run_job(mctx *c, mjob *j, const mscratch *sc)
{
    const sq__ptensor *pt = c->pt;
    int type = pt->cand[j->slot][j->k];
    int64_t len = sq_segment_len(pt->cols, j->seg), c0 = j->seg * SQ_SEGMENT, C = pt->cols;
    for (int64_t i = 0; i < len; i++) sc->cols[i] = c->perm ? c->perm[c0 + i] : (int32_t)(c0 + i);
    for (int64_t r = 0; r < c->n_rows; r++)
        for (int64_t i = 0; i < len; i++) sc->buf[r * len + i] = c->W[r * C + sc->cols[i]];
    size_t rs = sq_row_size(type, len);
    double raw = 0.0, fac = 0.0;
    int64_t r = 0;
    while (r < c->n_rows) {
        /* a run of rows of one matrix (the experts of a 3-D tensor have their own importance) */
        int64_t m = c->rows[r] / pt->mat_rows, end = r + 1;
        while (end < c->n_rows && c->rows[end] / pt->mat_rows == m) end++;
        for (int64_t i = 0; i < len; i++) sc->impp[i] = pt->qimp ? pt->qimp[m * C + sc->cols[i]] : 1.0f;
        for (int u = 0; u < pt->n_uses; u++) {
            const sq__puse *us = &pt->use[u];
            int64_t off = us->col && us->n_col > C ? m * C : 0;
            for (int64_t i = 0; i < len; i++)
                sc->colp[u * SQ_SEGMENT + i] = us->col ? us->col[off + sc->cols[i]] : (double)sc->impp[i];
        }
        j->st = sq_quantize_rows(type, sc->buf + r * len, (unsigned char *)sc->q + (size_t)r * rs, end - r, len,
                                 pt->qimp ? sc->impp : NULL, &j->e);
        if (j->st != SQ_OK) return;
        for (; r < end; r++) {
            sq_dequantize_row(type, (const unsigned char *)sc->q + (size_t)r * rs, sc->deq, len);
            const float *br = sc->buf + r * len;
            double racc = 0.0;
            for (int64_t i = 0; i < len; i++) {
                double d = (double)br[i] - (double)sc->deq[i];
                racc += (double)sc->impp[i] * d * d;
            }
            raw += c->sw[r] * racc;
            for (int u = 0; u < pt->n_uses; u++) {
                const sq__puse *us = &pt->use[u];
                double uacc = 0.0;
                for (int64_t i = 0; i < len; i++) {
                    double d = (double)br[i] - (double)sc->deq[i];
                    uacc += sc->colp[u * SQ_SEGMENT + i] * d * d;
                }
                fac += us->scale * c->sw[r] * (us->row ? us->row[c->rows[r]] : 1.0) * uacc;
            }
        }
    }
    j->raw = raw;
    j->fac = fac;
}

/* A pool task: takes jobs until none is left, with thread ith's scratch. */
static void job_worker(void *arg, int ith, int nth)
{
    (void)nth;
    mctx *c = arg;
    for (;;) {
        int i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
        if (i >= c->n_jobs) break;
        run_job(c, &c->jobs[i], &c->scratch[ith]);
    }
}

static void scratch_free(mscratch *sc, int n)
{
    for (int i = 0; sc && i < n; i++) {
        free(sc[i].buf);
        free(sc[i].q);
        free(sc[i].deq);
        free(sc[i].impp);
        free(sc[i].colp);
        free(sc[i].cols);
    }
    free(sc);
}

/* Scratch for n thread indices; NULL when out of memory. */
static mscratch *scratch_alloc(int n)
{
    mscratch *sc = calloc((size_t)n, sizeof *sc);
    size_t vals = (size_t)SQ__CHUNK_ROWS * SQ_SEGMENT;
    bool ok = sc != NULL;
    for (int i = 0; ok && i < n; i++) {
        sc[i].buf = malloc(vals * sizeof(float));
        sc[i].q = malloc(vals * sizeof(float) + 64); /* no candidate type stores more than 4 bytes per value */
        sc[i].deq = malloc(SQ_SEGMENT * sizeof(float));
        sc[i].impp = malloc(SQ_SEGMENT * sizeof(float));
        sc[i].colp = malloc(SQ__PLAN_MAX_USES * SQ_SEGMENT * sizeof(double));
        sc[i].cols = malloc(SQ_SEGMENT * sizeof(int32_t));
        ok = sc[i].buf && sc[i].q && sc[i].deq && sc[i].impp && sc[i].colp && sc[i].cols;
    }
    if (!ok) {
        scratch_free(sc, n);
        return NULL;
    }
    return sc;
}

/* The rows to measure: every row (weight 1), or max_rows of them. Spread
 * evenly (row i*R/S, weight R/S) unless the error model weights rows; then
 * systematic sampling on the cumulative row weight (row weights of all uses
 * added), each pick standing for (total weight / S) / its own weight, so that
 * rows that count more are measured more often. */
static sq_status make_sample(const sq__ptensor *pt, int64_t max_rows, sample *s, sq_error *err)
{
    int64_t R = pt->rows, S = max_rows > 0 && max_rows < R ? max_rows : R;
    s->n = S;
    s->row = malloc((size_t)S * sizeof *s->row);
    s->w = malloc((size_t)S * sizeof *s->w);
    if (!s->row || !s->w) return sq_error_set(err, SQ_ENOMEM, "out of memory for %lld sample rows", (long long)S);
    bool weighted = false;
    for (int u = 0; u < pt->n_uses; u++) weighted |= pt->use[u].row != NULL;
    double total = 0.0;
    if (weighted && S < R)
        for (int64_t r = 0; r < R; r++)
            for (int u = 0; u < pt->n_uses; u++) total += pt->use[u].row ? pt->use[u].row[r] : 0.0;
    if (!(total > 0)) {
        for (int64_t i = 0; i < S; i++) {
            s->row[i] = i * R / S;
            s->w[i] = (double)R / (double)S;
        }
        return SQ_OK;
    }
    double acc = 0.0;
    int64_t i = 0;
    for (int64_t r = 0; r < R && i < S; r++) {
        double rw = 0.0;
        for (int u = 0; u < pt->n_uses; u++) rw += pt->use[u].row ? pt->use[u].row[r] : 0.0;
        acc += rw;
        while (i < S && acc >= ((double)i + 0.5) * total / (double)S) {
            s->row[i] = r;
            s->w[i] = total / ((double)S * rw);
            i++;
        }
    }
    for (; i < S; i++) { /* rounding at the end: the last row with weight */
        s->row[i] = s->row[i > 0 ? i - 1 : 0];
        s->w[i] = s->w[i > 0 ? i - 1 : 0];
    }
    return SQ_OK;
}

/* Column statistics of one tensor, reading every row once: score[c] = sum_r
 * imp_m(r)[c] * W[r,c]^2 and the energy (their sum). */
static sq_status tensor_score(sq__ptensor *pt, const char *name, float *W, int64_t *idx, sq_error *err)
{
    pt->score = calloc((size_t)pt->cols, sizeof *pt->score);
    if (!pt->score) return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", name);
    for (int64_t r0 = 0; r0 < pt->rows; r0 += SQ__CHUNK_ROWS) {
        int64_t n = pt->rows - r0 < SQ__CHUNK_ROWS ? pt->rows - r0 : SQ__CHUNK_ROWS;
        for (int64_t i = 0; i < n; i++) idx[i] = r0 + i;
        read_rows(pt, idx, n, W);
        for (int64_t i = 0; i < n; i++) {
            const float *wr = W + i * pt->cols;
            const float *imp = pt->qimp ? pt->qimp + ((r0 + i) / pt->mat_rows) * pt->cols : NULL;
            for (int64_t c = 0; c < pt->cols; c++) pt->score[c] += (imp ? (double)imp[c] : 1.0) * (double)wr[c] * (double)wr[c];
        }
    }
    double e = 0.0;
    for (int64_t c = 0; c < pt->cols; c++) {
        if (!isfinite(pt->score[c]))
            return sq_error_set(err, SQ_EFORMAT, "tensor %s: column %lld holds a value that is not finite", name, (long long)c);
        e += pt->score[c];
    }
    pt->energy = e;
    return SQ_OK;
}

/* Measures every candidate of every slot of one tensor for option opt, chunk
 * by chunk; adds into pt->craw / pt->cfac (zeroed first). */
static sq_status measure_tensor(const sq__pctx *c, sq__ptensor *pt, const char *name, int opt, sq_threadpool *tp,
                                mscratch *scratch, float *W, double *cfac, sq_error *err)
{
    const sq__pgroup *g = &c->plan->groups[pt->group];
    int64_t max_rows = c->p->sample_rows == 0 ? SQ_PLAN_DEFAULT_SAMPLE_ROWS : c->p->sample_rows;
    sample s = {0};
    sq_status st = make_sample(pt, max_rows, &s, err);
    int n_jobs = 0;
    for (int64_t seg = 0; seg < pt->n_seg; seg++) n_jobs += pt->n_cand[seg < 3 ? seg : 3];
    mjob *jobs = st == SQ_OK ? calloc((size_t)n_jobs, sizeof *jobs) : NULL;
    if (st == SQ_OK && !jobs) st = sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", name);
    memset(pt->craw[opt], 0, sizeof pt->craw[opt]);
    for (int64_t r0 = 0; st == SQ_OK && r0 < s.n; r0 += SQ__CHUNK_ROWS) {
        int64_t n = s.n - r0 < SQ__CHUNK_ROWS ? s.n - r0 : SQ__CHUNK_ROWS;
        read_rows(pt, s.row + r0, n, W);
        int nj = 0;
        for (int64_t seg = 0; seg < pt->n_seg; seg++) {
            int slot = seg < 3 ? (int)seg : 3;
            for (int k = 0; k < pt->n_cand[slot]; k++) jobs[nj++] = (mjob){.slot = slot, .k = k, .seg = seg};
        }
        mctx mc = {.pt = pt, .W = W, .rows = s.row + r0, .sw = s.w + r0, .n_rows = n, .perm = opt ? g->perm : NULL,
                   .jobs = jobs, .n_jobs = n_jobs, .scratch = scratch};
        sq_threadpool_run(tp, job_worker, &mc);
        for (int i = 0; i < n_jobs && st == SQ_OK; i++)
            if (jobs[i].st != SQ_OK) {
                st = jobs[i].st;
                if (err) *err = jobs[i].e;
                sq_error_prefix(err, "tensor %s, segment %lld", name, (long long)jobs[i].seg);
            }
        for (int i = 0; i < n_jobs && st == SQ_OK; i++) {
            pt->craw[opt][jobs[i].slot][jobs[i].k] += jobs[i].raw;
            cfac[jobs[i].slot * SQ__PLAN_MAX_CAND + jobs[i].k] += jobs[i].fac;
        }
    }
    free(jobs);
    free(s.row);
    free(s.w);
    return st;
}

/* The model error of every candidate from the measured sums: the factor uses'
 * sum, or the imp-weighted error divided by the normalisation. */
static void model_errors(const sq__pctx *c, sq__ptensor *pt, int opt, const double *cfac)
{
    double norm = 1.0;
    if (c->p->norm == SQ_PLAN_NORM_ABS)
        /* an embedding row is looked up once per token: its expected output
         * error is the per-row mean; a matmul's sums over all rows */
        norm = pt->qimp ? 1.0 : (double)pt->rows;
    else
        norm = pt->energy > 0 ? pt->energy : 1.0;
    for (int s = 0; s < pt->n_slots; s++)
        for (int k = 0; k < pt->n_cand[s]; k++)
            pt->cerr[opt][s][k] = pt->n_uses > 0 ? cfac[s * SQ__PLAN_MAX_CAND + k] : pt->craw[opt][s][k] / norm;
}

/* The column statistics of every tensor (tensor_score), one pass over each
 * tensor's rows: what the permutations and the relative errors need, before
 * any candidate is measured. */
sq_status sq__plan_score(sq__pctx *c, sq_error *err)
{
    sq_plan *plan = c->plan;
    int64_t max_cols = 1;
    for (int64_t t = 0; t < plan->n; t++)
        if (plan->pt[t].cols > max_cols) max_cols = plan->pt[t].cols;
    float *W = malloc((size_t)SQ__CHUNK_ROWS * (size_t)max_cols * sizeof *W);
    int64_t *idx = malloc(SQ__CHUNK_ROWS * sizeof *idx);
    sq_status st = W && idx ? SQ_OK : sq_error_set(err, SQ_ENOMEM, "out of memory for the column statistics");
    for (int64_t t = 0; st == SQ_OK && t < plan->n; t++) {
        sq__plan_progress(c, "column statistics", t, plan->n);
        if (!plan->pt[t].score) st = tensor_score(&plan->pt[t], plan->names[t], W, idx, err);
    }
    if (st == SQ_OK) sq__plan_progress(c, "column statistics", plan->n, plan->n);
    free(idx);
    free(W);
    return st;
}

/* Whether option opt of a tensor is measured: option 1 where the group has a
 * permutation; option 0 unless the permutations are built already and the
 * group may not take it (a permuted group under --perm on, whose unpermuted
 * candidates nothing would read). */
static bool option_wanted(const sq__pctx *c, const sq__ptensor *pt, int opt)
{
    const sq__pgroup *g = &c->plan->groups[pt->group];
    return opt == 1 ? g->opt_avail[1] : !c->options_known || g->opt_avail[0];
}

/* Option opt of every tensor (0: columns in order; 1: the group's
 * permutation, for groups that have one), after sq__plan_score. */
sq_status sq__plan_measure(sq__pctx *c, int opt, sq_error *err)
{
    sq_plan *plan = c->plan;
    int nth = c->p->n_threads > 1 ? c->p->n_threads : 1;
    sq_threadpool *tp = NULL;
    sq_status st = SQ_OK;
    if (nth > 1 && !(tp = sq_threadpool_create(nth))) return sq_error_set(err, SQ_ENOMEM, "cannot start %d threads", nth);
    int64_t max_cols = 1;
    for (int64_t t = 0; t < plan->n; t++)
        if (plan->pt[t].cols > max_cols) max_cols = plan->pt[t].cols;
    mscratch *scratch = scratch_alloc(nth);
    float *W = malloc((size_t)SQ__CHUNK_ROWS * (size_t)max_cols * sizeof *W);
    double *cfac = malloc(4 * SQ__PLAN_MAX_CAND * sizeof *cfac);
    if (!scratch || !W || !cfac) st = sq_error_set(err, SQ_ENOMEM, "out of memory for %d threads' scratch", nth);
    for (int64_t t = 0; st == SQ_OK && t < plan->n; t++) {
        sq__ptensor *pt = &plan->pt[t];
        if (!option_wanted(c, pt, opt)) continue;
        sq__plan_progress(c, opt ? "measuring permuted" : "measuring", t, plan->n);
        memset(cfac, 0, 4 * SQ__PLAN_MAX_CAND * sizeof *cfac);
        st = measure_tensor(c, pt, plan->names[t], opt, tp, scratch, W, cfac, err);
        if (st == SQ_OK) model_errors(c, pt, opt, cfac);
    }
    if (st == SQ_OK) sq__plan_progress(c, opt ? "measuring permuted" : "measuring", plan->n, plan->n);
    free(cfac);
    free(W);
    scratch_free(scratch, nth);
    sq_threadpool_free(tp);
    return st;
}

typedef struct col_score {
    double s;
    int32_t c;
} col_score;

/* Most important first; equal scores keep their column order (deterministic). */
static int col_score_cmp(const void *a, const void *b)
{
    const col_score *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return x->c < y->c ? -1 : x->c > y->c;
}

/* What column c of a tensor adds to its group's score: its energy as the
 * error model counts it (relative to the tensor's, times its weight). */
static double member_score(const sq__ptensor *pt, int64_t col)
{
    return pt->energy > 0 ? pt->weight * pt->score[col] / pt->energy : 0.0;
}

/* One group's permutation: columns sorted by the sum of the members' scores.
 * NULL perm when the sort leaves every column in place. */
static sq_status group_perm(sq_plan *plan, sq__pgroup *g, sq_error *err)
{
    int64_t C = plan->pt[g->members[0]].cols;
    col_score *cs = malloc((size_t)C * sizeof *cs);
    g->perm = malloc((size_t)C * sizeof *g->perm);
    if (!cs || !g->perm) {
        free(cs);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for a permutation of %lld columns", (long long)C);
    }
    for (int64_t col = 0; col < C; col++) {
        double s = 0.0;
        for (int m = 0; m < g->n_members; m++) s += member_score(&plan->pt[g->members[m]], col);
        cs[col] = (col_score){s, (int32_t)col};
    }
    qsort(cs, (size_t)C, sizeof *cs, col_score_cmp);
    bool identity = true;
    for (int64_t col = 0; col < C; col++) {
        g->perm[col] = cs[col].c;
        if (cs[col].c != col) identity = false;
    }
    free(cs);
    if (identity) {
        free(g->perm);
        g->perm = NULL;
    }
    return SQ_OK;
}

/* Every group's permutation (unless permutations are off or the plan is
 * whole-tensor) and the options it may take; frees the column scores. */
sq_status sq__plan_build_perms(sq__pctx *c, sq_error *err)
{
    sq_plan *plan = c->plan;
    const sq_plan_params *p = c->p;
    bool allowed = p->perm != SQ_PLAN_PERM_OFF && p->granularity != SQ_PLAN_GRAN_TENSOR;
    sq_status st = SQ_OK;
    for (int gi = 0; st == SQ_OK && gi < plan->n_groups; gi++) {
        sq__pgroup *g = &plan->groups[gi];
        if (allowed) st = group_perm(plan, g, err);
        if (st != SQ_OK) break;
        g->opt_avail[0] = p->perm != SQ_PLAN_PERM_ON || !g->perm;
        g->opt_avail[1] = g->perm != NULL;
        /* a permutation costs its metadata strings in the file (not tensor data) */
        g->opt_extra[1] = 0;
        for (int m = 0; p->target_bytes > 0 && g->perm && m < g->n_members; m++) {
            const int t = g->members[m];
            g->opt_extra[1] += sq__plan_perm_bytes(plan->names[t], plan->pt[t].cols, g->perm);
        }
    }
    for (int64_t t = 0; t < plan->n; t++) {
        free(plan->pt[t].score);
        plan->pt[t].score = NULL;
    }
    c->options_known = st == SQ_OK;
    return st;
}
