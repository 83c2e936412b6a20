/*
 * plan.c — the SmarterQuant planner: column importance, permutations shared
 * by tensors with one input, measured candidate errors, and the allocation of
 * bytes to segment slots under a whole-file budget (see sq/plan.h, docs/plan.md).
 *
 * Ownership: the plan owns copies of the tensor names, the permutations, the
 * per-tensor statistics and the warnings. The model and the importance matrix
 * are only read during sq_plan_create and may be closed afterwards.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_internal.h"
#include "sq/blocks.h"
#include "sq/matmul.h"
#include "sq/quantize.h"
#include "sq/sqconfig.h"
#include "sq/types.h"

/* Candidates when the caller gives none: the K-quants from 2 to 6 bits, the
 * 4-bit non-linear IQ4_XS, Q8_0, and the 32-column types that also serve
 * segments shorter than 256 (and are sometimes simply better per byte). */
static const int default_types[] = {
    SQ_TYPE_Q2_K, SQ_TYPE_Q3_K, SQ_TYPE_IQ4_XS, SQ_TYPE_Q4_K, SQ_TYPE_Q5_K, SQ_TYPE_Q6_K,
    SQ_TYPE_Q8_0, SQ_TYPE_Q4_0, SQ_TYPE_Q5_0, SQ_TYPE_IQ4_NL, SQ_TYPE_Q5_1,
};

const int *sq_plan_default_types(int *n)
{
    if (n) *n = (int)(sizeof default_types / sizeof default_types[0]);
    return default_types;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                        */
/* ------------------------------------------------------------------ */

static sq_status add_warning(sq_plan *plan, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a printf-formatted warning to the plan's list. */
static sq_status add_warning(sq_plan *plan, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(plan->warnings, (size_t)(plan->n_warnings + 1) * sizeof *w);
    if (!w) return SQ_ENOMEM;
    plan->warnings = w;
    w[plan->n_warnings] = strdup(buf);
    if (!w[plan->n_warnings]) return SQ_ENOMEM;
    plan->n_warnings++;
    return SQ_OK;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return a ? (v + a - 1) / a * a : v; }

/* Bytes of one GGUF key/value pair with a string value of vlen bytes. */
static uint64_t kv_str_bytes(size_t keylen, size_t vlen) { return 8 + keylen + 4 + 8 + vlen; }

/* The name of the input a tensor reads, for grouping: "blk.N.attn_in" for
 * attn_q/k/v, "blk.N.ffn_in" for ffn_gate/up; otherwise the name itself. */
static void input_key(const char *name, char *buf, size_t n)
{
    static const struct { const char *suffix, *key; } shared[] = {
        {".attn_q.weight", ".attn_in"}, {".attn_k.weight", ".attn_in"}, {".attn_v.weight", ".attn_in"},
        {".ffn_gate.weight", ".ffn_in"}, {".ffn_up.weight", ".ffn_in"},
    };
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
        size_t sl = strlen(shared[i].suffix);
        if (len > sl && strcmp(name + len - sl, shared[i].suffix) == 0) {
            snprintf(buf, n, "%.*s%s", (int)(len - sl), name, shared[i].key);
            return;
        }
    }
    snprintf(buf, n, "%s", name);
}

/* Copies a GGUF string into buf (NUL-terminated, cut to n-1 bytes). */
static void gguf_str_copy(const sq_gguf *g, const char *key, char *buf, size_t n)
{
    sq_gguf_str s;
    buf[0] = 0;
    if (sq_gguf_get_str(g, key, &s, NULL) == SQ_OK) snprintf(buf, n, "%.*s", (int)(s.len < n ? s.len : n - 1), s.ptr);
}

static int get_int_key(const sq_gguf *g, const char *arch, const char *suffix)
{
    char key[160];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (sq_gguf_get_i64(g, key, &v, NULL) != SQ_OK) return 0;
    return v > 0 && v < (1 << 30) ? (int)v : 0;
}

/* Weights of a tensor as floats, rows * cols, original column order. */
static sq_status load_weights(const sq__ptensor *pt, const char *name, float *W, sq_error *err)
{
    size_t rb = sq_row_size(pt->in_type, pt->cols);
    if (rb == 0 || !sq_blocks_can_dequantize(pt->in_type))
        return sq_error_set(err, SQ_EUNSUPPORTED, "tensor %s: cannot read weights of type %s", name,
                            sq_type_name(pt->in_type));
    const unsigned char *src = pt->data;
    for (int64_t r = 0; r < pt->rows; r++) sq_dequantize_row(pt->in_type, src + (size_t)r * rb, W + r * pt->cols, pt->cols);
    return SQ_OK;
}

/* ------------------------------------------------------------------ */
/* measuring candidates (multi-threaded, deterministic)                 */
/* ------------------------------------------------------------------ */

/* One measurement: candidate k of a slot, quantized on one segment, with or
 * without the permutation. Each job writes only its own result. */
typedef struct eval_job {
    int opt, slot, k;
    int64_t seg;
    double err;
    sq_status st;
    sq_error e; /* why, when st != SQ_OK */
} eval_job;

/* A thread's scratch memory (one per thread index of the pool, allocated
 * once per plan for the largest tensor). */
typedef struct eval_scratch {
    float *buf;    /* rows measured x one segment, gathered */
    void *q;       /* their quantized bytes */
    float *deq;    /* one dequantized segment row */
    float *impp;   /* the segment's (permuted) importance */
    int32_t *cols; /* the segment's source columns */
} eval_scratch;

typedef struct eval_ctx {
    const sq__ptensor *pt;
    const float *W;         /* rows * cols, original order */
    const int32_t *perm;    /* option 1's permutation or NULL */
    const int64_t *srows;   /* the rows measured (n_srows of them, ascending) */
    int64_t n_srows;
    eval_job *jobs;
    int n_jobs;
    int next;               /* next job to take (atomic) */
    eval_scratch *scratch;  /* one per thread index */
} eval_ctx;

/* Quantizes one segment of every row to the job's type (exactly as sq
 * quantize will: each segment a row of its own with its permuted importance
 * slice), dequantizes it and sums imp[c] * (W - Q)^2 in double. */
static void eval_one(eval_ctx *c, eval_job *j, const eval_scratch *sc)
{
    const sq__ptensor *pt = c->pt;
    int type = pt->cand[j->slot][j->k];
    int64_t len = sq_segment_len(pt->cols, j->seg), c0 = j->seg * SQ_SEGMENT;
    const int32_t *perm = j->opt == 1 ? c->perm : NULL;
    for (int64_t i = 0; i < len; i++) {
        sc->cols[i] = perm ? perm[c0 + i] : (int32_t)(c0 + i);
        sc->impp[i] = pt->imp ? pt->imp[sc->cols[i]] : 1.0f;
    }
    for (int64_t r = 0; r < c->n_srows; r++) {
        const float *wr = c->W + c->srows[r] * pt->cols;
        float *br = sc->buf + r * len;
        for (int64_t i = 0; i < len; i++) br[i] = wr[sc->cols[i]];
    }
    j->st = sq_quantize_rows(type, sc->buf, sc->q, c->n_srows, len, pt->imp ? sc->impp : NULL, &j->e);
    if (j->st != SQ_OK) return;
    size_t rs = sq_row_size(type, len);
    double acc = 0.0;
    for (int64_t r = 0; r < c->n_srows; r++) {
        sq_dequantize_row(type, (const unsigned char *)sc->q + (size_t)r * rs, sc->deq, len);
        const float *br = sc->buf + r * len;
        double racc = 0.0;
        for (int64_t i = 0; i < len; i++) {
            double d = (double)br[i] - (double)sc->deq[i];
            racc += (double)sc->impp[i] * d * d;
        }
        acc += racc;
    }
    j->err = acc;
}

/* A pool task: takes jobs until none is left, with thread ith's scratch. */
static void eval_worker(void *arg, int ith, int nth)
{
    (void)nth;
    eval_ctx *c = arg;
    for (;;) {
        int i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
        if (i >= c->n_jobs) break;
        eval_one(c, &c->jobs[i], &c->scratch[ith]);
    }
}

static void scratch_free(eval_scratch *sc, int n)
{
    for (int i = 0; sc && i < n; i++) {
        free(sc[i].buf);
        free(sc[i].q);
        free(sc[i].deq);
        free(sc[i].impp);
        free(sc[i].cols);
    }
    free(sc);
}

/* Scratch for n thread indices measuring up to max_rows rows; NULL when out of memory. */
static eval_scratch *scratch_alloc(int n, int64_t max_rows)
{
    eval_scratch *sc = calloc((size_t)n, sizeof *sc);
    size_t vals = (size_t)max_rows * SQ_SEGMENT;
    bool ok = sc != NULL;
    for (int i = 0; ok && i < n; i++) {
        sc[i].buf = malloc(vals * sizeof(float));
        sc[i].q = malloc(vals * sizeof(float) + 64); /* no candidate type stores more than 4 bytes per value */
        sc[i].deq = malloc(SQ_SEGMENT * sizeof(float));
        sc[i].impp = malloc(SQ_SEGMENT * sizeof(float));
        sc[i].cols = malloc(SQ_SEGMENT * sizeof(int32_t));
        ok = sc[i].buf && sc[i].q && sc[i].deq && sc[i].impp && sc[i].cols;
    }
    if (!ok) {
        scratch_free(sc, n);
        return NULL;
    }
    return sc;
}

/* The rows of a tensor measured: all, or max_rows spread evenly. */
static int64_t n_sample_rows(const sq__ptensor *pt, int64_t max_rows)
{
    return max_rows > 0 && max_rows < pt->rows ? max_rows : pt->rows;
}

/* Measures every candidate of every slot of one tensor, for each permutation
 * option its group allows, on the pool's threads (each job writes only its
 * own result); sums the segments of slot 3 in segment order and reports the
 * first failed job in job order, so nothing depends on the thread count. */
static sq_status measure_tensor(sq__ptensor *pt, const sq__pgroup *g, const char *name, const float *W,
                                sq_threadpool *tp, eval_scratch *scratch, int64_t max_rows, sq_error *err)
{
    /* rows measured: all, or max_rows spread evenly (row i*R/S); the error
     * is then scaled by R/S, an unbiased estimate of the whole tensor's */
    int64_t S = n_sample_rows(pt, max_rows);
    int64_t *srows = malloc((size_t)S * sizeof *srows);
    if (!srows) return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", name);
    for (int64_t i = 0; i < S; i++) srows[i] = i * pt->rows / S;
    double scale = (double)pt->rows / (double)S;
    int n_jobs = 0;
    for (int o = 0; o < 2; o++)
        if (g->opt_avail[o])
            for (int64_t s = 0; s < pt->n_seg; s++) n_jobs += pt->n_cand[s < 3 ? s : 3];
    eval_job *jobs = calloc((size_t)n_jobs, sizeof *jobs);
    if (!jobs) {
        free(srows);
        return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", name);
    }
    int nj = 0;
    for (int o = 0; o < 2; o++)
        if (g->opt_avail[o])
            for (int64_t s = 0; s < pt->n_seg; s++) {
                int slot = s < 3 ? (int)s : 3;
                for (int k = 0; k < pt->n_cand[slot]; k++) jobs[nj++] = (eval_job){.opt = o, .slot = slot, .k = k, .seg = s};
            }
    eval_ctx c = {.pt = pt, .W = W, .perm = g->perm, .srows = srows, .n_srows = S, .jobs = jobs, .n_jobs = n_jobs,
                  .scratch = scratch};
    sq_threadpool_run(tp, eval_worker, &c);
    sq_status st = SQ_OK;
    for (int i = 0; i < n_jobs && st == SQ_OK; i++)
        if (jobs[i].st != SQ_OK) {
            st = jobs[i].st;
            if (err) *err = jobs[i].e;
            sq_error_prefix(err, "tensor %s, segment %lld", name, (long long)jobs[i].seg);
        }
    if (st == SQ_OK) {
        memset(pt->cerr, 0, sizeof pt->cerr);
        for (int i = 0; i < n_jobs; i++) pt->cerr[jobs[i].opt][jobs[i].slot][jobs[i].k] += jobs[i].err;
        if (S != pt->rows)
            for (int o = 0; o < 2; o++)
                for (int sl = 0; sl < 4; sl++)
                    for (int k = 0; k < SQ__PLAN_MAX_CAND; k++) pt->cerr[o][sl][k] *= scale;
    }
    free(jobs);
    free(srows);
    return st;
}

/* ------------------------------------------------------------------ */
/* permutations                                                         */
/* ------------------------------------------------------------------ */

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

/* The group's permutation: columns sorted by the sum over its members of
 * imp[c] * sum_r W[r,c]^2, each member's part divided by its normalisation
 * (so the members count as they count in the objective). NULL perm when the
 * sort leaves every column in place. */
static sq_status build_group_perm(sq_plan *plan, sq__pgroup *g, sq_error *err)
{
    const sq__ptensor *p0 = &plan->pt[g->members[0]];
    int64_t C = p0->cols;
    col_score *cs = malloc((size_t)C * sizeof *cs);
    g->perm = malloc((size_t)C * sizeof *g->perm);
    if (!cs || !g->perm) {
        free(cs);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for a permutation of %lld columns", (long long)C);
    }
    for (int64_t c = 0; c < C; c++) {
        double s = 0.0;
        for (int m = 0; m < g->n_members; m++) {
            const sq__ptensor *pt = &plan->pt[g->members[m]];
            double imp = pt->imp ? (double)pt->imp[c] : 1.0;
            s += imp * pt->colsq[c] / pt->norm;
        }
        cs[c] = (col_score){s, (int32_t)c};
    }
    qsort(cs, (size_t)C, sizeof *cs, col_score_cmp);
    bool identity = true;
    for (int64_t c = 0; c < C; c++) {
        g->perm[c] = cs[c].c;
        if (cs[c].c != c) identity = false;
    }
    free(cs);
    if (identity) {
        free(g->perm);
        g->perm = NULL;
    }
    g->perm_json_len = g->perm ? sq_format_int_array_json(g->perm, C, NULL, 0) : 2;
    return SQ_OK;
}

/* ------------------------------------------------------------------ */
/* allocation                                                           */
/* ------------------------------------------------------------------ */

static double cand_err(const sq_plan *plan, const sq__ptensor *pt, int opt, int s, int k)
{
    (void)plan;
    return pt->cerr[opt][s][k] / pt->norm + pt->cact[s][k];
}

/* For a multiplier lambda: every group takes the option, and every slot the
 * candidate, minimising err + lambda * bytes (ties: fewer bytes, then the
 * earlier candidate / the unpermuted option). Returns the planned bytes. */
static uint64_t lagrange_pick(sq_plan *plan, double lambda, bool min_bytes_only)
{
    uint64_t total = 0;
    for (int gi = 0; gi < plan->n_groups; gi++) {
        sq__pgroup *g = &plan->groups[gi];
        double best_cost = INFINITY;
        int best_opt = -1;
        for (int o = 0; o < 2; o++) {
            if (!g->opt_avail[o]) continue;
            double cost = min_bytes_only ? (double)g->opt_extra[o] : lambda * (double)g->opt_extra[o];
            for (int m = 0; m < g->n_members; m++) {
                const sq__ptensor *pt = &plan->pt[g->members[m]];
                for (int s = 0; s < pt->n_slots; s++) {
                    double bc = INFINITY;
                    uint64_t bb = UINT64_MAX;
                    for (int k = 0; k < pt->n_cand[s]; k++) {
                        double e = cand_err(plan, pt, o, s, k);
                        double b = (double)pt->cbytes[s][k];
                        double cst = min_bytes_only ? b : e + lambda * b;
                        if (cst < bc || (cst == bc && pt->cbytes[s][k] < bb)) {
                            bc = cst;
                            bb = pt->cbytes[s][k];
                        }
                    }
                    cost += bc;
                }
            }
            if (cost < best_cost) {
                best_cost = cost;
                best_opt = o;
            }
        }
        g->opt = best_opt;
        total += g->opt_extra[best_opt];
        for (int m = 0; m < g->n_members; m++) {
            sq__ptensor *pt = &plan->pt[g->members[m]];
            for (int s = 0; s < pt->n_slots; s++) {
                double bc = INFINITY, be = INFINITY;
                int bk = 0;
                for (int k = 0; k < pt->n_cand[s]; k++) {
                    double e = cand_err(plan, pt, best_opt, s, k);
                    double b = (double)pt->cbytes[s][k];
                    double cst = min_bytes_only ? b : e + lambda * b;
                    bool better = cst < bc || (cst == bc && (min_bytes_only ? e < be : pt->cbytes[s][k] < pt->cbytes[s][bk]));
                    if (better) {
                        bc = cst;
                        be = e;
                        bk = k;
                    }
                }
                pt->choice[s] = bk;
                total += pt->cbytes[s][bk];
            }
        }
    }
    return total;
}

/* Spends what the multiplier search left on single-slot upgrades, best error
 * drop per byte first (ties: the earliest tensor, slot, candidate), while any fits. */
static uint64_t greedy_fill(sq_plan *plan, uint64_t used, uint64_t budget)
{
    for (;;) {
        double best = 0.0;
        int bt = -1, bs = -1, bk = -1;
        for (int64_t t = 0; t < plan->n; t++) {
            const sq__ptensor *pt = &plan->pt[t];
            int o = plan->groups[pt->group].opt;
            for (int s = 0; s < pt->n_slots; s++) {
                int cur = pt->choice[s];
                double ce = cand_err(plan, pt, o, s, cur);
                for (int k = 0; k < pt->n_cand[s]; k++) {
                    if (pt->cbytes[s][k] <= pt->cbytes[s][cur]) continue;
                    uint64_t db = pt->cbytes[s][k] - pt->cbytes[s][cur];
                    if (used + db > budget) continue;
                    double de = ce - cand_err(plan, pt, o, s, k);
                    if (de <= 0) continue;
                    double ratio = de / (double)db;
                    if (ratio > best) {
                        best = ratio;
                        bt = (int)t;
                        bs = s;
                        bk = k;
                    }
                }
            }
        }
        if (bt < 0) return used;
        sq__ptensor *pt = &plan->pt[bt];
        used += pt->cbytes[bs][bk] - pt->cbytes[bs][pt->choice[bs]];
        pt->choice[bs] = bk;
    }
}

/* ------------------------------------------------------------------ */
/* setup                                                                */
/* ------------------------------------------------------------------ */

/* The candidate list of each slot of a tensor: the caller's types that can be
 * quantized, are weight types, whose blocks divide every segment of the slot,
 * and that do not need an importance matrix the tensor lacks. */
static void set_candidates(sq__ptensor *pt, const int *types, int n_types, bool defaults)
{
    for (int s = 0; s < pt->n_slots; s++) {
        pt->n_cand[s] = 0;
        int64_t s_end = s < 3 ? s + 1 : pt->n_seg;
        for (int i = 0; i < n_types && pt->n_cand[s] < SQ__PLAN_MAX_CAND; i++) {
            const sq_type_info *ti = sq_type_info_get(types[i]);
            if (!ti || !ti->is_weight || !sq_blocks_can_quantize(types[i])) continue;
            if (ti->needs_imatrix && !pt->imp) continue;
            /* the default list's 32-column types serve only slots with a short
             * segment: on whole 256-column segments a K-quant or IQ4_XS of the
             * same size always measured better (docs/plan.md) */
            if (defaults && ti->block_size < SQ_SEGMENT && sq_segment_len(pt->cols, s_end - 1) == SQ_SEGMENT) continue;
            bool fits = true;
            uint64_t bytes = 0;
            for (int64_t seg = s; seg < s_end; seg++) {
                size_t rs = sq_row_size(types[i], sq_segment_len(pt->cols, seg));
                if (rs == 0) fits = false;
                bytes += rs;
            }
            if (!fits) continue;
            pt->cand[s][pt->n_cand[s]] = types[i];
            pt->cbytes[s][pt->n_cand[s]] = bytes * (uint64_t)pt->rows;
            pt->n_cand[s]++;
        }
    }
}

static int order_cmp_ctx_idx(const void *a, const void *b, void *ctx)
{
    const sq_gguf *g = ctx;
    int64_t ia = *(const int64_t *)a, ib = *(const int64_t *)b;
    int c = sq_tensor_order_cmp(sq_gguf_tensor_at(g, ia)->name, sq_gguf_tensor_at(g, ib)->name);
    if (c) return c;
    return ia < ib ? -1 : ia > ib;
}

void sq_plan_free(sq_plan *plan)
{
    if (!plan) return;
    for (int64_t i = 0; i < plan->n; i++) {
        free(plan->names[i]);
        free(plan->pt[i].colsq);
    }
    for (int g = 0; g < plan->n_groups; g++) free(plan->groups[g].perm);
    for (int64_t i = 0; i < plan->n_warnings; i++) free(plan->warnings[i]);
    free(plan->warnings);
    free(plan->groups);
    free(plan->names);
    free(plan->pt);
    free(plan->out);
    free(plan);
}

int64_t sq_plan_n_tensors(const sq_plan *plan) { return plan ? plan->n : 0; }
const sq_plan_tensor *sq_plan_tensor_at(const sq_plan *plan, int64_t i)
{
    return plan && i >= 0 && i < plan->n ? &plan->out[i] : NULL;
}
const sq_plan_totals *sq_plan_get_totals(const sq_plan *plan) { return plan ? &plan->totals : NULL; }
int64_t sq_plan_n_warnings(const sq_plan *plan) { return plan ? plan->n_warnings : 0; }
const char *sq_plan_warning(const sq_plan *plan, int64_t i)
{
    return plan && i >= 0 && i < plan->n_warnings ? plan->warnings[i] : NULL;
}

/* Chooses the planned tensors, sizes the others with llama.cpp's rules for
 * the base file type, and estimates the file header. On return plan->pt /
 * names hold the planned tensors in model order; *fixed_data the aligned data
 * bytes of the others; *n_elements all weights; *header the header estimate
 * without the SmarterQuant keys. */
static sq_status select_tensors(sq_plan *plan, const sq_gguf *model, const sq_imatrix *im, const sq_plan_params *p,
                                const int *types, int n_types, uint64_t *fixed_data, int64_t *n_elements,
                                uint64_t *header, sq_error *err)
{
    int64_t nt = sq_gguf_n_tensors(model);
    uint64_t A = sq_gguf_alignment(model);
    const sq_ftype_info *fi = sq_ftype_parse(p->base_ftype ? p->base_ftype : "Q4_K_M");
    if (!fi) return sq_error_set(err, SQ_EINVAL, "unknown base file type '%s'", p->base_ftype);

    regex_t re;
    bool have_re = p->tensors && p->tensors[0];
    if (have_re) {
        int rc = regcomp(&re, p->tensors, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[256];
            regerror(rc, &re, why, sizeof why);
            return sq_error_set(err, SQ_EINVAL, "--tensors '%s': %s", p->tensors, why);
        }
    }

    char arch[64];
    gguf_str_copy(model, "general.architecture", arch, sizeof arch);
    sq_qrules_model qm = {.arch = arch[0] ? arch : "llama",
                          .n_layer = get_int_key(model, arch, "block_count"),
                          .n_head = get_int_key(model, arch, "attention.head_count"),
                          .n_head_kv = get_int_key(model, arch, "attention.head_count_kv"),
                          .n_expert = get_int_key(model, arch, "expert_count")};
    sq_qrules_params qp = {.ftype = fi->ftype, .copy = fi->copy, .has_imatrix = im != NULL, .output_tensor_type = -1,
                           .token_embedding_type = -1};
    const char **names = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *names);
    int64_t *order = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *order);
    bool *planned = calloc((size_t)(nt > 0 ? nt : 1), sizeof *planned);
    plan->pt = calloc((size_t)(nt > 0 ? nt : 1), sizeof *plan->pt);
    plan->names = calloc((size_t)(nt > 0 ? nt : 1), sizeof *plan->names);
    sq_status st = SQ_OK;
    sq_qrules *rules = NULL;
    if (!names || !order || !planned || !plan->pt || !plan->names) {
        st = sq_error_set(err, SQ_ENOMEM, "out of memory selecting tensors");
        goto done;
    }
    for (int64_t i = 0; i < nt; i++) {
        names[i] = sq_gguf_tensor_at(model, i)->name;
        order[i] = i;
    }
    qsort_r(order, (size_t)nt, sizeof *order, order_cmp_ctx_idx, (void *)model);
    st = sq_qrules_create(&qp, &qm, names, nt, &rules, err);
    if (st != SQ_OK) goto done;

    /* first: which tensors are planned (model order) */
    *fixed_data = 0;
    *n_elements = 0;
    for (int64_t i = 0; i < nt; i++) {
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(model, i);
        int64_t ne_all = gt->ne[0] * gt->ne[1] * gt->ne[2] * gt->ne[3];
        *n_elements += ne_all;
        sq_qchoice ch;
        /* quantizability does not depend on the counters: ask a scratch rule set */
        bool quantizable = sq_ggml_n_dims(gt->ne) == 2;
        if (quantizable) {
            sq_qrules *probe = NULL;
            if (sq_qrules_create(&qp, &qm, names, nt, &probe, NULL) == SQ_OK &&
                sq_qrules_choose(probe, gt->name, gt->ne, gt->type, &ch, NULL) == SQ_OK)
                quantizable = ch.quantizable;
            else
                quantizable = false;
            sq_qrules_free(probe);
        }
        if (!quantizable) continue;
        if (have_re && regexec(&re, gt->name, 0, NULL, 0) != 0) continue;
        if (gt->smarterquant) {
            if (add_warning(plan, "%s: already a SmarterQuant tensor, not planned", gt->name) != SQ_OK) goto oom;
            continue;
        }
        sq__ptensor *pt = &plan->pt[plan->n];
        memset(pt, 0, sizeof *pt);
        pt->data = gt->data;
        pt->in_type = gt->type;
        pt->cols = gt->ne[0];
        pt->rows = gt->ne[1];
        pt->n_seg = sq_n_segments(pt->cols);
        pt->n_slots = pt->n_seg < 4 ? (int)pt->n_seg : 4;
        if (!sq_blocks_can_dequantize(gt->type) || sq_row_size(gt->type, pt->cols) == 0) {
            if (add_warning(plan, "%s: weights of type %s cannot be read, not planned", gt->name, sq_type_name(gt->type)) != SQ_OK)
                goto oom;
            continue;
        }
        if (im) {
            int64_t n_imp = 0;
            const float *imp = sq_imatrix_find(im, gt->name, &n_imp);
            if (imp && n_imp != pt->cols) {
                st = sq_error_set(err, SQ_EFORMAT, "importance matrix entry %s has %lld values, the tensor %lld columns",
                                  gt->name, (long long)n_imp, (long long)pt->cols);
                goto done;
            }
            pt->imp = imp;
        }
        /* with activation costs known, the 32-column types (q8_0 / q8_1 activations)
         * compete on whole segments too */
        bool have_act = false;
        for (int w = 0; w < p->n_weights; w++) have_act |= p->weights[w].act_q8_K > 0 || p->weights[w].act_q8_0 > 0;
        set_candidates(pt, types, n_types, !(p->types && p->n_types > 0) && !have_act);
        bool ok = true;
        for (int s = 0; s < pt->n_slots; s++)
            if (pt->n_cand[s] == 0) ok = false;
        if (!ok) {
            if (add_warning(plan, "%s: no candidate type fits its %lld columns, not planned", gt->name, (long long)pt->cols) != SQ_OK)
                goto oom;
            continue;
        }
        plan->names[plan->n] = strdup(gt->name);
        if (!plan->names[plan->n]) goto oom;
        planned[i] = true;
        plan->n++;
    }
    if (plan->n == 0) {
        st = sq_error_set(err, SQ_EINVAL, "no tensor to plan%s%s%s", have_re ? " (--tensors '" : "",
                          have_re ? p->tensors : "", have_re ? "' matches no quantizable weight)" : "");
        goto done;
    }

    /* then: the size of every other tensor, as sq quantize will write it */
    for (int64_t oi = 0; oi < nt; oi++) {
        int64_t i = order[oi];
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(model, i);
        sq_qchoice ch;
        st = sq_qrules_choose(rules, gt->name, gt->ne, gt->type, &ch, err);
        if (st != SQ_OK) goto done;
        if (planned[i]) continue;
        uint64_t bytes = gt->nbytes;
        if (ch.quantizable && ch.type != gt->type) {
            size_t rs = sq_row_size(ch.type, gt->ne[0]);
            bytes = (uint64_t)rs * (uint64_t)(gt->ne[1] * gt->ne[2] * gt->ne[3]);
        }
        *fixed_data += align_up(bytes, A);
    }

    /* header: the input's, plus the keys sq quantize adds (quantization
     * version, file type, a generous allowance for the imatrix keys) */
    *header = sq_gguf_data_offset(model);
    if (sq_gguf_find_key(model, "general.quantization_version") < 0) *header += 8 + 28 + 4 + 4;
    if (sq_gguf_find_key(model, "general.file_type") < 0) *header += 8 + 17 + 4 + 4;
    if (im) *header += 1024;
    goto done;
oom:
    st = sq_error_set(err, SQ_ENOMEM, "out of memory selecting tensors");
done:
    sq_qrules_free(rules);
    if (have_re) regfree(&re);
    free(names);
    free(order);
    free(planned);
    return st;
}

/* Groups planned tensors by the input they read (unless no_share), and sets
 * which permutation options each group may take. */
static sq_status make_groups(sq_plan *plan, const sq_plan_params *p, sq_error *err)
{
    plan->groups = calloc(plan->n > 0 ? (size_t)plan->n : 1, sizeof *plan->groups);
    if (!plan->groups) return sq_error_set(err, SQ_ENOMEM, "out of memory for groups");
    for (int64_t t = 0; t < plan->n; t++) {
        char key[512], other[512];
        input_key(plan->names[t], key, sizeof key);
        int found = -1;
        if (!p->no_share)
            for (int g = 0; g < plan->n_groups && found < 0; g++) {
                int f = plan->groups[g].first;
                input_key(plan->names[f], other, sizeof other);
                if (strcmp(key, other) == 0 && plan->pt[f].cols == plan->pt[t].cols && plan->groups[g].n_members < 8)
                    found = g;
            }
        if (found < 0) {
            found = plan->n_groups++;
            plan->groups[found].first = (int)t;
        }
        sq__pgroup *g = &plan->groups[found];
        g->members[g->n_members++] = (int)t;
        plan->pt[t].group = found;
    }
    return SQ_OK;
}

/* Pass over one tensor: its column energies and output energy; the error
 * normalisation divided by the tensor's sensitivity weight. */
static sq_status tensor_stats(sq__ptensor *pt, const char *name, const sq_plan_params *p, float *W, sq_error *err)
{
    sq_plan_norm norm = p->norm;
    double weight = 1.0, act_k = 0.0, act_0 = 0.0;
    for (int i = 0; i < p->n_weights; i++)
        if (p->weights[i].name && strcmp(p->weights[i].name, name) == 0) {
            weight = p->weights[i].weight;
            act_k = p->weights[i].act_q8_K;
            act_0 = p->weights[i].act_q8_0;
        }
    /* the cost of quantizing the activations: the slot's share of the columns
     * times the tensor's cost for the candidate's vec_dot_type */
    for (int s = 0; s < pt->n_slots; s++) {
        int64_t s_end = s < 3 ? s + 1 : pt->n_seg, ncols = 0;
        for (int64_t seg = s; seg < s_end; seg++) ncols += sq_segment_len(pt->cols, seg);
        for (int k = 0; k < pt->n_cand[s]; k++) {
            const sq_type_info *ti = sq_type_info_get(pt->cand[s][k]);
            int v = ti ? (int)ti->vec_dot_type : -1;
            double a = v == SQ_TYPE_Q8_K ? act_k : (v == SQ_TYPE_Q8_0 || v == SQ_TYPE_Q8_1) ? act_0 : 0.0;
            pt->cact[s][k] = a * (double)ncols / (double)pt->cols;
        }
    }
    sq_status st = load_weights(pt, name, W, err);
    if (st != SQ_OK) return st;
    pt->colsq = calloc((size_t)pt->cols, sizeof *pt->colsq);
    if (!pt->colsq) return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", name);
    for (int64_t r = 0; r < pt->rows; r++) {
        const float *wr = W + r * pt->cols;
        for (int64_t c = 0; c < pt->cols; c++) pt->colsq[c] += (double)wr[c] * (double)wr[c];
    }
    double e = 0.0;
    for (int64_t c = 0; c < pt->cols; c++) {
        if (!isfinite(pt->colsq[c]))
            return sq_error_set(err, SQ_EFORMAT, "tensor %s: column %lld holds a value that is not finite", name, (long long)c);
        e += (pt->imp ? (double)pt->imp[c] : 1.0) * pt->colsq[c];
    }
    pt->energy = e;
    if (norm == SQ_PLAN_NORM_ABS)
        /* an embedding row is looked up once per token: its expected output
         * error is the per-row mean; a matmul's sums over all rows */
        pt->norm = pt->imp ? 1.0 : (double)pt->rows;
    else
        pt->norm = e > 0 ? e : 1.0;
    pt->norm /= weight;
    return SQ_OK;
}

sq_status sq_plan_create(const sq_gguf *model, const sq_imatrix *im, const sq_plan_params *p, sq_plan **out,
                         sq_error *err)
{
    *out = NULL;
    double t0 = sq_time_now();
    if (!model || !p) return sq_error_set(err, SQ_EINVAL, "sq_plan_create: no model or parameters");
    bool by_bpw = p->target_bpw > 0, by_size = p->target_bytes > 0;
    if (by_bpw == by_size)
        return sq_error_set(err, SQ_EINVAL, "give exactly one target: bits per weight or a file size");
    if (by_bpw && !(p->target_bpw < 64))
        return sq_error_set(err, SQ_ERANGE, "target %.3f bits per weight is out of range", p->target_bpw);
    for (int i = 0; i < p->n_weights; i++)
        if (!(p->weights[i].weight > 0) || !isfinite(p->weights[i].weight) || !(p->weights[i].act_q8_K >= 0) ||
            !(p->weights[i].act_q8_0 >= 0) || !isfinite(p->weights[i].act_q8_K) || !isfinite(p->weights[i].act_q8_0))
            return sq_error_set(err, SQ_ERANGE, "sensitivity of %s is %g (activation costs %g, %g): want a positive "
                                "number (and costs >= 0)",
                                p->weights[i].name ? p->weights[i].name : "(null)", p->weights[i].weight,
                                p->weights[i].act_q8_K, p->weights[i].act_q8_0);

    /* candidate types: the caller's, deduplicated, in order */
    int n_def;
    const int *def = sq_plan_default_types(&n_def);
    const int *src_types = p->types && p->n_types > 0 ? p->types : def;
    int n_src = p->types && p->n_types > 0 ? p->n_types : n_def;
    int types[SQ__PLAN_MAX_CAND], n_types = 0;
    for (int i = 0; i < n_src; i++) {
        const sq_type_info *ti = sq_type_info_get(src_types[i]);
        if (!ti || !ti->is_weight)
            return sq_error_set(err, SQ_EINVAL, "candidate type id %d is %s", src_types[i],
                                ti ? "not usable for weights" : "unknown or removed");
        if (!sq_blocks_can_quantize(src_types[i]) && src_types == def) continue;
        if (!sq_blocks_can_quantize(src_types[i]))
            return sq_error_set(err, SQ_EUNSUPPORTED, "candidate type %s cannot be quantized by this build",
                                sq_type_name(src_types[i]));
        bool dup = false;
        for (int j = 0; j < n_types; j++) dup |= types[j] == src_types[i];
        if (dup) continue;
        if (n_types == SQ__PLAN_MAX_CAND)
            return sq_error_set(err, SQ_EINVAL, "more than %d candidate types", SQ__PLAN_MAX_CAND);
        types[n_types++] = src_types[i];
    }

    sq_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return sq_error_set(err, SQ_ENOMEM, "out of memory for the plan");
    uint64_t fixed_data = 0, header = 0;
    int64_t n_elements = 0;
    float *W = NULL;
    sq_status st = select_tensors(plan, model, im, p, types, n_types, &fixed_data, &n_elements, &header, err);
    if (st == SQ_OK) st = make_groups(plan, p, err);
    uint64_t A = sq_gguf_alignment(model);

    /* pass 1: statistics of every tensor */
    size_t max_elems = 0;
    for (int64_t t = 0; st == SQ_OK && t < plan->n; t++) {
        size_t ne = (size_t)(plan->pt[t].rows * plan->pt[t].cols);
        if (ne > max_elems) max_elems = ne;
    }
    if (st == SQ_OK) {
        W = malloc(max_elems * sizeof *W);
        if (!W) st = sq_error_set(err, SQ_ENOMEM, "out of memory for %zu weights", max_elems);
    }
    for (int64_t t = 0; st == SQ_OK && t < plan->n; t++) st = tensor_stats(&plan->pt[t], plan->names[t], p, W, err);

    /* permutations and the options each group may take */
    for (int g = 0; st == SQ_OK && g < plan->n_groups; g++) {
        sq__pgroup *grp = &plan->groups[g];
        if (p->perm != SQ_PLAN_PERM_OFF) st = build_group_perm(plan, grp, err);
        else grp->perm_json_len = 2;
        if (st != SQ_OK) break;
        grp->opt_avail[0] = p->perm != SQ_PLAN_PERM_ON || !grp->perm;
        grp->opt_avail[1] = grp->perm != NULL;
        /* a permutation costs its metadata strings in the file (not tensor data) */
        grp->opt_extra[1] = by_size && grp->perm ? (uint64_t)grp->n_members * (grp->perm_json_len - 2) : 0;
    }

    /* pass 2: measure every candidate, on the shared thread pool */
    int64_t max_rows = p->sample_rows == 0 ? SQ_PLAN_DEFAULT_SAMPLE_ROWS : p->sample_rows, most_rows = 1;
    for (int64_t t = 0; st == SQ_OK && t < plan->n; t++)
        if (n_sample_rows(&plan->pt[t], max_rows) > most_rows) most_rows = n_sample_rows(&plan->pt[t], max_rows);
    int nth = p->n_threads > 1 ? p->n_threads : 1;
    sq_threadpool *tp = NULL;
    eval_scratch *scratch = NULL;
    if (st == SQ_OK && nth > 1 && !(tp = sq_threadpool_create(nth)))
        st = sq_error_set(err, SQ_ENOMEM, "cannot start %d threads", nth);
    if (st == SQ_OK && !(scratch = scratch_alloc(nth, most_rows)))
        st = sq_error_set(err, SQ_ENOMEM, "out of memory for %d threads' scratch", nth);
    for (int64_t t = 0; st == SQ_OK && t < plan->n; t++) {
        sq__ptensor *pt = &plan->pt[t];
        st = load_weights(pt, plan->names[t], W, err);
        if (st == SQ_OK) st = measure_tensor(pt, &plan->groups[pt->group], plan->names[t], W, tp, scratch, max_rows, err);
    }
    scratch_free(scratch, nth);
    sq_threadpool_free(tp);
    free(W);
    if (st != SQ_OK) {
        sq_plan_free(plan);
        return st;
    }

    /* the budget for planned data bytes */
    uint64_t sq_keys = 0, pad = 0;
    for (int64_t t = 0; t < plan->n; t++) {
        size_t nl = strlen(plan->names[t]);
        sq_keys += 8 + nl + 21 + 4 + 1;                                                  /* .smarterquant.enabled */
        sq_keys += kv_str_bytes(nl + 25, 2); /* .permutation "[]"; a real one is counted with its option */
        sq_keys += kv_str_bytes(nl + 25, 24);                                            /* .block_types */
        pad += A - 1;
    }
    uint64_t budget;
    if (by_size) {
        uint64_t hdr = align_up(header + sq_keys, A);
        uint64_t need = hdr + fixed_data + pad;
        budget = p->target_bytes > need ? p->target_bytes - need : 0;
        plan->totals.budget_bytes = p->target_bytes;
    } else {
        double b = floor(p->target_bpw * (double)n_elements / 8.0);
        uint64_t need = fixed_data + pad;
        budget = b > (double)need ? (uint64_t)b - need : 0;
        plan->totals.budget_bytes = (uint64_t)b;
    }

    uint64_t min_bytes = lagrange_pick(plan, 0.0, true);
    if (min_bytes > budget) {
        uint64_t overhead = (by_size ? align_up(header + sq_keys, A) : 0) + fixed_data + pad;
        uint64_t smallest = min_bytes + overhead;
        if (by_size)
            st = sq_error_set(err, SQ_ERANGE, "target size %llu bytes is below the smallest possible plan (%llu bytes)",
                              (unsigned long long)p->target_bytes, (unsigned long long)smallest);
        else
            st = sq_error_set(err, SQ_ERANGE, "target %.4f bits per weight is below the smallest possible plan (%.4f)",
                              p->target_bpw, (double)(min_bytes + fixed_data + pad) * 8.0 / (double)n_elements);
        sq_plan_free(plan);
        return st;
    }
    /* the smallest lambda whose choice fits: bytes(lambda) does not increase with lambda */
    double lambda = 0.0;
    uint64_t used = lagrange_pick(plan, 0.0, false);
    if (used > budget) {
        double lo = 0.0, hi = 1e-24;
        while (lagrange_pick(plan, hi, false) > budget && hi < 1e300) {
            lo = hi;
            hi *= 4.0;
        }
        for (int it = 0; it < 200 && hi - lo > hi * 1e-15; it++) {
            double mid = lo + (hi - lo) / 2;
            if (lagrange_pick(plan, mid, false) > budget) lo = mid;
            else hi = mid;
        }
        lambda = hi;
        used = lagrange_pick(plan, hi, false);
        if (used > budget) used = lagrange_pick(plan, 0.0, true); /* only the smallest choice fits */
    }
    used = greedy_fill(plan, used, budget);

    /* the public view */
    plan->out = calloc(plan->n > 0 ? (size_t)plan->n : 1, sizeof *plan->out);
    if (!plan->out) {
        sq_plan_free(plan);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the plan");
    }
    sq_plan_totals *tot = &plan->totals;
    uint64_t sq_keys_exact = 0, planned_aligned = 0;
    for (int64_t t = 0; t < plan->n; t++) {
        const sq__ptensor *pt = &plan->pt[t];
        const sq__pgroup *g = &plan->groups[pt->group];
        sq_plan_tensor *o = &plan->out[t];
        o->name = plan->names[t];
        o->rows = pt->rows;
        o->cols = pt->cols;
        o->perm = g->opt == 1 ? g->perm : NULL;
        o->group = g->first;
        o->has_imatrix = pt->imp != NULL;
        double raw = 0.0, act = 0.0;
        for (int s = 0; s < 4; s++) {
            int ss = s < pt->n_slots ? s : pt->n_slots - 1;
            o->types[s] = pt->cand[ss][pt->choice[ss]];
            if (s < pt->n_slots) {
                o->bytes += pt->cbytes[s][pt->choice[s]];
                raw += pt->cerr[g->opt][s][pt->choice[s]];
                act += pt->cact[s][pt->choice[s]];
            }
        }
        o->bpw = (double)o->bytes * 8.0 / (double)(pt->rows * pt->cols);
        o->error = raw / pt->norm + act;
        o->energy = pt->energy;
        o->rel_error = pt->energy > 0 ? raw / pt->energy : 0.0;
        tot->error += o->error;
        tot->planned_bytes += o->bytes;
        planned_aligned += align_up(o->bytes, A);
        size_t nl = strlen(o->name);
        sq_keys_exact += 8 + nl + 21 + 4 + 1;
        sq_keys_exact += kv_str_bytes(nl + 25, o->perm ? g->perm_json_len : 2);
        sq_keys_exact += kv_str_bytes(nl + 25, sq_format_types_json(o->types, NULL, 0));
    }
    tot->n_planned = plan->n;
    tot->n_elements = n_elements;
    tot->data_bytes = fixed_data + planned_aligned;
    tot->file_bytes = align_up(header + sq_keys_exact, A) + tot->data_bytes;
    tot->bpw = (double)tot->data_bytes * 8.0 / (double)n_elements;
    tot->lambda = lambda;
    tot->seconds = sq_time_now() - t0;
    (void)used;
    *out = plan;
    return SQ_OK;
}
