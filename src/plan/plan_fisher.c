/*
 * plan_fisher.c — the planner's calibration from the engine's backward pass
 * (sq_plan_fisher_sensitivity, sq/plan.h): one forward and one backward pass
 * per chunk of calibration text gives every weight's Fisher statistics at
 * once (sq/grad.h), so the cost does not grow with the number of tensors,
 * unlike sq_plan_measure_sensitivity (a run of the model per tensor and per
 * measuring type).
 *
 * From the statistics of a weight use (row and column factors, nats per
 * scored token for a weight error dW: 1/2 sum_r row[r] sum_c col[c] dW^2)
 * the per-tensor figures sq_plan_weight takes: the KL divergence per unit of
 * relative error, and what its q8_K / q8_0 input activations cost. Both need
 * the weights; like the planner they read a sample of rows spread evenly
 * and scale the sums up to all rows.
 *
 * Ownership: the model is borrowed; the result set owns its names.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_calib.h"
#include "sq/blocks.h"
#include "sq/grad.h"
#include "sq/sqtensor.h"

/* Runs every chunk forward and backward; g accumulates the statistics. */
static sq_status run_chunks(sq_grad *g, const int32_t *chunks, int n_ctx, int n_chunks, const sq_plan_calib_params *p,
                            double *nll, sq_error *err)
{
    double sum = 0.0;
    const int first = n_ctx / 2;
    for (int c = 0; c < n_chunks; c++) {
        if (p->progress) p->progress(p->ud, "backward pass", c, n_chunks);
        double loss = 0.0;
        sq_status st = sq_grad_chunk(g, chunks + (size_t)c * (size_t)n_ctx, n_ctx, first, true, &loss, err);
        if (st != SQ_OK) return st;
        sum += loss;
    }
    *nll = sum / ((double)n_chunks * (double)(n_ctx - 1 - first));
    return SQ_OK;
}

/* The sampled rows of one use: indices, the rows (original column order),
 * the Fisher factors, and the shares of the row weights the sample holds. */
typedef struct sample {
    int64_t S, *idx;
    float *W, *dW, *q;
    void *buf;
    double *row, *col;
    double row_scale, dy_scale; /* sum over all rows / sum over the sample, of row[] and dy_sq[] */
} sample;

static void sample_free(sample *x)
{
    free(x->idx), free(x->W), free(x->dW), free(x->q), free(x->buf), free(x->row), free(x->col);
}

/* Reads S rows spread evenly (i R / S) and the factors. */
static sq_status sample_rows_of(const sq_grad *g, const sq_grad_stats *s, const sq_weight *w, int64_t sample_rows,
                                sample *x, sq_error *err)
{
    const int64_t R = s->rows, C = s->cols;
    memset(x, 0, sizeof *x);
    x->S = sample_rows == 0 ? 256 : sample_rows < 0 ? R : sample_rows;
    if (x->S > R) x->S = R;
    x->idx = malloc(sizeof(int64_t) * (size_t)x->S);
    x->W = malloc(sizeof(float) * (size_t)(x->S * C));
    x->dW = malloc(sizeof(float) * (size_t)(x->S * C));
    x->q = malloc(sizeof(float) * (size_t)C);
    x->buf = malloc(sq_row_size(SQ_TYPE_F32, C));
    x->row = malloc(sizeof(double) * (size_t)R);
    x->col = malloc(sizeof(double) * (size_t)C);
    if (!x->idx || !x->W || !x->dW || !x->q || !x->buf || !x->row || !x->col) {
        sample_free(x);
        return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", s->name);
    }
    sq_grad_factors(g, s, x->row, x->col);
    double row_s = 0.0, row_all = 0.0, dy_s = 0.0, dy_all = 0.0;
    for (int64_t i = 0; i < x->S; i++) {
        x->idx[i] = i * R / x->S;
        sq_weight_get_row(w, x->idx[i], x->W + (size_t)(i * C));
        row_s += x->row[x->idx[i]];
        dy_s += s->dy_sq[x->idx[i]];
    }
    for (int64_t r = 0; r < R; r++) row_all += x->row[r], dy_all += s->dy_sq[r];
    x->row_scale = row_s > 0 ? row_all / row_s : 0.0;
    x->dy_scale = dy_s > 0 ? dy_all / dy_s : 0.0;
    return SQ_OK;
}

/* The importance of a use's tensor: one vector of its columns, or one per
 * expert of a 3-D tensor (ne0 × n_mat values, each serving rows / n_mat rows:
 * *per_rows, else 0); NULL when the imatrix has none that fits. */
static const float *find_imp(const sq_imatrix *im, const sq_grad_stats *s, int64_t *per_rows)
{
    int64_t n = 0;
    const float *imp = im ? sq_imatrix_find(im, s->name, &n) : NULL;
    *per_rows = 0;
    if (!imp || n <= 0 || n % s->cols != 0) return NULL;
    const int64_t n_mat = n / s->cols;
    if (n_mat == 1) return imp;
    if (s->rows % n_mat != 0) return NULL;
    *per_rows = s->rows / n_mat;
    return imp;
}

/* The sample quantized to type with importance imp (as sq quantize does:
 * each expert's row with its expert's vector where per_rows > 0): the
 * predicted KL divergence (scaled to all rows) and the relative error
 * sum imp dW^2 / sum imp W^2. false when type's blocks do not fit the rows. */
static bool predict_type(const sq_grad *g, const sq_grad_stats *s, sample *x, const float *imp_all, int64_t per_rows,
                         int type, double *kld, double *rel)
{
    const int64_t C = s->cols;
    const size_t rb = sq_row_size(type, C);
    if (rb == 0) return false;
    void *buf = realloc(x->buf, rb);
    if (!buf) return false;
    x->buf = buf;
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < x->S; i++) {
        const float *wr = x->W + (size_t)(i * C);
        float *d = x->dW + (size_t)(i * C);
        const float *imp = imp_all && per_rows > 0 ? imp_all + (size_t)(x->idx[i] / per_rows * C) : imp_all;
        if (sq_quantize_rows(type, wr, buf, 1, C, imp, NULL) != SQ_OK) return false;
        sq_dequantize_row(type, buf, x->q, C);
        for (int64_t c = 0; c < C; c++) {
            d[c] = wr[c] - x->q[c];
            const double wi = imp ? (double)imp[c] : 1.0;
            num += wi * (double)d[c] * (double)d[c];
            den += wi * (double)wr[c] * (double)wr[c];
        }
    }
    const double p = sq_grad_predict(g, s, x->dW, x->idx, x->S);
    if (p < 0 || den <= 0) return false;
    *kld = p * x->row_scale;
    *rel = num / den;
    return true;
}

/* One use's figures added to e: the KL divergence predicted at the
 * measuring types (as sq_plan_measure_sensitivity measures it, with
 * kld[k] summed over the uses of a tied embedding), and the activation
 * costs. When a type does not fit the tensor, n_points stays 0 and
 * closed_form gets 1/2 sum_r row[r] sum_c col[c] W^2 instead. */
static sq_status use_figures(const sq_grad *g, const sq_grad_stats *s, const sq_weight *w, const sq_imatrix *im,
                             const int *types, int n_types, int64_t sample_rows, sq_plan_sensitivity *e,
                             double *closed_form, sq_error *err)
{
    sample x;
    sq_status st = sample_rows_of(g, s, w, sample_rows, &x, err);
    if (st != SQ_OK) return st;
    int64_t per_rows = 0;
    const float *imp = find_imp(im, s, &per_rows);
    bool fit = true;
    for (int k = 0; k < n_types && fit; k++) {
        double kld = 0.0, rel = 0.0;
        fit = predict_type(g, s, &x, imp, per_rows, types[k], &kld, &rel);
        e->types[k] = types[k];
        e->kld[k] += kld;
        e->rel[k] = rel;
    }
    e->n_points = fit ? n_types : 0;
    double cf = 0.0;
    for (int64_t i = 0; i < x.S; i++) {
        const float *wr = x.W + (size_t)(i * s->cols);
        double a = 0.0;
        for (int64_t c = 0; c < s->cols; c++) a += x.col[c] * (double)wr[c] * (double)wr[c];
        cf += 0.5 * x.row[x.idx[i]] * a;
    }
    *closed_form += cf * x.row_scale;
    e->act_q8_K += sq_grad_act_cost(g, s, SQ_TYPE_Q8_K, x.W, x.idx, x.S) * x.dy_scale;
    e->act_q8_0 += sq_grad_act_cost(g, s, SQ_TYPE_Q8_0, x.W, x.idx, x.S) * x.dy_scale;
    sample_free(&x);
    return SQ_OK;
}

/* The entry of name in s (a tied embedding's second use finds its first),
 * or a new one; NULL when out of memory. */
static sq_plan_sensitivity *entry_for(sq_plan_sens *s, const char *name)
{
    for (int64_t i = 0; i < s->n; i++)
        if (strcmp(s->e[i].name, name) == 0) return &s->e[i];
    sq_plan_sensitivity *e = &s->e[s->n];
    e->name = strdup(name);
    if (!e->name) return NULL;
    s->n++;
    return e;
}

/* The figures of every use whose tensor matches re (NULL: all), then each
 * tensor's weight: the slope between its predicted points (what
 * sq_plan_measure_sensitivity measures), or through the origin with one,
 * or the closed form. */
static sq_status collect(const sq_model *m, const sq_grad *g, const sq_imatrix *im, const int *types, int n_types,
                         const regex_t *re, int64_t sample_rows, sq_plan_sens *s, sq_error *err)
{
    double *closed = calloc((size_t)(sq_grad_n_stats(g) > 0 ? sq_grad_n_stats(g) : 1), sizeof(double));
    if (!closed) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    sq_status st = SQ_OK;
    for (int64_t i = 0; i < sq_grad_n_stats(g) && st == SQ_OK; i++) {
        const sq_grad_stats *gs = sq_grad_stats_at(g, i);
        if (re && regexec(re, gs->name, 0, NULL, 0) != 0) continue;
        const sq_weight *w = sq_model_weight(m, gs->name);
        sq_plan_sensitivity *e = entry_for(s, gs->name);
        if (!e) st = sq_error_set(err, SQ_ENOMEM, "out of memory");
        else if (!w) st = sq_error_set(err, SQ_ENOTFOUND, "tensor %s is not a weight of the model", gs->name);
        else st = use_figures(g, gs, w, im, types, n_types, sample_rows, e, &closed[e - s->e], err);
    }
    for (int64_t i = 0; i < s->n && st == SQ_OK; i++) {
        sq_plan_sensitivity *e = &s->e[i];
        double wt = closed[i];
        if (e->n_points == 2 && e->rel[0] != e->rel[1]) wt = (e->kld[0] - e->kld[1]) / (e->rel[0] - e->rel[1]);
        else if (e->n_points == 1 && e->rel[0] > 0) wt = e->kld[0] / e->rel[0];
        e->weight = wt > SQ_PLAN_SENS_FLOOR && isfinite(wt) ? wt : SQ_PLAN_SENS_FLOOR;
        s->w[i] = (sq_plan_weight){.name = e->name, .weight = e->weight, .act_q8_K = e->act_q8_K, .act_q8_0 = e->act_q8_0};
    }
    free(closed);
    return st;
}

sq_status sq_plan_fisher_sensitivity(sq_model *m, const sq_imatrix *im, const sq_plan_calib_params *p,
                                     int64_t sample_rows, sq_plan_sens **out, sq_error *err)
{
    *out = NULL;
    if (!m || !p) return sq_error_set(err, SQ_EINVAL, "sq_plan_fisher_sensitivity: no model or parameters");
    const int *types;
    int n_types;
    sq_status tst = sq__plan_calib_types(p, &types, &n_types, err);
    if (tst != SQ_OK) return tst;
    regex_t re;
    const bool have_re = p->tensors != NULL;
    if (have_re) {
        int rc = regcomp(&re, p->tensors, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &re, msg, sizeof msg);
            return sq_error_set(err, SQ_EINVAL, "calibration tensor regex '%s': %s", p->tensors, msg);
        }
    }
    int32_t *chunks = NULL;
    int n_ctx = 0, n_chunks = 0;
    sq_grad *g = NULL;
    sq_plan_sens *s = NULL;
    sq_status st = sq__plan_calib_chunks(m, p, &chunks, &n_ctx, &n_chunks, err);
    sq_grad_params gp = sq_grad_default_params();
    gp.n_ctx = n_ctx, gp.n_threads = p->n_threads, gp.target = (sq_grad_target)p->grad_target;
    if (p->seed) gp.seed = p->seed;
    if (st == SQ_OK) st = sq_grad_create(m, &gp, &g, err);
    double nll = 0.0;
    if (st == SQ_OK) st = run_chunks(g, chunks, n_ctx, n_chunks, p, &nll, err);
    if (st == SQ_OK && !(s = sq__plan_sens_alloc(sq_grad_n_stats(g)))) st = sq_error_set(err, SQ_ENOMEM, "out of memory");
    if (s) s->base_nll = nll;
    if (st == SQ_OK) st = collect(m, g, im, types, n_types, have_re ? &re : NULL, sample_rows, s, err);
    if (st == SQ_OK && s->n == 0)
        st = sq_error_set(err, SQ_EINVAL, "no weight to calibrate%s%s%s", have_re ? " ('" : "", have_re ? p->tensors : "",
                          have_re ? "' matches none)" : "");
    sq_grad_free(g);
    free(chunks);
    if (have_re) regfree(&re);
    if (st != SQ_OK) {
        sq_plan_sens_free(s);
        return st;
    }
    *out = s;
    return SQ_OK;
}

sq_status sq_plan_calibrate(sq_model *m, const sq_imatrix *im, const sq_plan_calib_params *p, int64_t sample_rows,
                            sq_plan_sens **out, sq_error *err)
{
    *out = NULL;
    if (p && p->method == SQ_PLAN_CALIB_MEASURE) return sq_plan_measure_sensitivity(m, im, p, out, err);
    sq_error why = {0};
    if (!m || sq_grad_supports(m, &why) == SQ_OK) return sq_plan_fisher_sensitivity(m, im, p, sample_rows, out, err);
    /* the backward pass does not run this model: the measurement needs the forward pass only */
    sq_status st = sq_plan_measure_sensitivity(m, im, p, out, err);
    if (st == SQ_OK)
        snprintf((*out)->fallback, sizeof (*out)->fallback,
                 "%s; measured each tensor through the forward pass instead (slower: one run of the chunks per "
                 "tensor and measuring type)",
                 why.msg);
    return st;
}
