/*
 * bench_grad.c — the Fisher estimate of the backward pass (sq/grad.h)
 * against per-tensor measurements (sq plan --calib --sensitivity-out), and
 * its time per chunk.
 *
 *   bench_grad [MODEL IMATRIX CALIB [MEASURED.txt [OUT.sens]]]
 *   environment: CHUNKS (6), CTX (512), THREADS (2), TARGET (sampled|text|gauss),
 *                SEED, FIRST (half|zero: the scored positions of a chunk)
 *
 * For every weight: the statistics of CHUNKS chunks of CALIB, then the
 * tensor alone quantized (imatrix-weighted, as sq plan --calib does) to
 * q3_K and q5_K, and the KL divergence the estimate predicts for each,
 * 1/2 sum_r row[r] sum_c col[c] dW^2 (sq_grad_predict), next to the
 * measured one; the slope between the two points (KL per unit of relative
 * error, what sq plan's --sensitivity takes) against the measured slope;
 * the costs of q8_K / q8_0 activations. Prints a table and the Spearman
 * rank correlations; OUT.sens gets the predicted sensitivities in the
 * --sensitivity format. Without MEASURED.txt only the time per chunk (without
 * arguments: the demo model, 2 chunks). IMATRIX "-": none.
 *
 * PHASES=1: the cost of sq plan --calib's phases at this model's size, wall
 * and CPU (user + system) seconds: one chunk forward only, one chunk forward
 * and backward, and sq_plan_fisher_sensitivity over one chunk (the chunk
 * again, then every tensor's 256 sampled rows quantized at q3_K and q5_K
 * and predicted: the difference is that second phase). Run it under
 * bench/peak_anon.sh for the peak private memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sq/blocks.h"
#include "sq/grad.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/sqtensor.h"
#include "sq/tokenizer.h"

#define MAX_T 1024

typedef struct row {
    char name[96];
    double meas_w, meas_k[2], meas_rel[2], meas_act[2];
    bool has_meas;
    double rel[2], pred[2], pred_w, pred_act[2], closed_w, ex_elem[2], ex_rank1[2];
} row;

/* EXACT=1: every use's sum over chunks of G^2 elementwise, G = dY^T X of
 * the chunk (the diagonal Fisher without dropping the terms between tokens). */
typedef struct exact {
    int n;
    char name[80][96];
    bool lookup[80];
    int64_t rows[80], cols[80];
    double *M[80]; /* sum of G^2 */
    float *G;      /* this chunk's gradient, reset per use */
} exact;

static void exact_hook(void *user, const sq_grad_stats *s, const float *X, const int32_t *tk, const float *dY, int64_t n)
{
    exact *x = user;
    int k = 0;
    while (k < x->n && (strcmp(x->name[k], s->name) || x->lookup[k] != s->lookup)) k++;
    if (k == x->n) {
        if (x->n == 80) return;
        snprintf(x->name[k], 96, "%s", s->name);
        x->lookup[k] = s->lookup, x->rows[k] = s->rows, x->cols[k] = s->cols;
        x->M[k] = calloc((size_t)(s->rows * s->cols), sizeof(double));
        x->n++;
    }
    const int64_t R = s->rows, C = s->cols;
    float *G = realloc(x->G, sizeof(float) * (size_t)(R * C));
    x->G = G;
    memset(G, 0, sizeof(float) * (size_t)(R * C));
    if (s->lookup) {
        for (int64_t t = 0; t < n; t++)
            for (int64_t c = 0; c < C; c++) G[tk[t] * C + c] += dY[t * C + c];
    } else {
        /* G = dY^T X: row r of G = sum_t dY[t][r] X[t] */
        float *dYt = malloc(sizeof(float) * (size_t)(R * n));
        for (int64_t t = 0; t < n; t++)
            for (int64_t r = 0; r < R; r++) dYt[r * n + t] = dY[t * R + r];
        sq_sgemm_acc(R, C, n, dYt, (size_t)n, X, (size_t)C, G, (size_t)C);
        free(dYt);
    }
    for (int64_t i = 0; i < R * C; i++) x->M[k][i] += (double)G[i] * G[i];
}

/* Predictions from the exact sums for dW: elementwise and rank-1 (marginals). */
static void exact_predict(const exact *x, const char *name, bool lookup, const float *dW, int64_t N, double *elem,
                          double *rank1)
{
    int k = 0;
    while (k < x->n && (strcmp(x->name[k], name) || x->lookup[k] != lookup)) k++;
    if (k == x->n) return;
    const int64_t R = x->rows[k], C = x->cols[k];
    double *rs = calloc((size_t)R, sizeof(double)), *cs = calloc((size_t)C, sizeof(double)), tot = 0, e = 0, r1 = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            const double m = x->M[k][r * C + c];
            rs[r] += m, cs[c] += m, tot += m;
            e += m * (double)dW[r * C + c] * dW[r * C + c];
        }
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) r1 += rs[r] * cs[c] / tot * (double)dW[r * C + c] * dW[r * C + c];
    *elem += 0.5 * e / (double)N;
    *rank1 += 0.5 * r1 / (double)N;
    free(rs), free(cs);
}

static exact ex;
static bool use_exact;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds (user + system) of the process so far. */
static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* PHASES=1 (see the head comment): prints each phase's wall and CPU seconds. */
static int phases(sq_model *m, sq_imatrix *im, sq_grad *g, int32_t *tk, size_t n_toks, int ctx, int32_t bos, int threads)
{
    sq_error e = {0};
    if (bos >= 0) tk[0] = bos;
    double w0 = now(), c0 = cpu_now();
    if (sq_grad_chunk(g, tk, ctx, ctx / 2, false, NULL, &e)) return fprintf(stderr, "bench_grad: %s\n", e.msg), 1;
    double w1 = now(), c1 = cpu_now();
    printf("phase forward (1 chunk of %d): wall %.1f s, cpu %.1f s\n", ctx, w1 - w0, c1 - c0);
    if (sq_grad_chunk(g, tk, ctx, ctx / 2, true, NULL, &e)) return fprintf(stderr, "bench_grad: %s\n", e.msg), 1;
    double w2 = now(), c2 = cpu_now();
    printf("phase forward+backward (1 chunk of %d): wall %.1f s, cpu %.1f s\n", ctx, w2 - w1, c2 - c1);
    sq_plan_calib_params cp;
    memset(&cp, 0, sizeof cp);
    cp.tokens = tk, cp.n_tokens = n_toks, cp.bos = bos, cp.n_ctx = ctx, cp.n_chunks = 1, cp.n_threads = threads;
    sq_plan_sens *s = NULL;
    if (sq_plan_fisher_sensitivity(m, im, &cp, 0, &s, &e)) return fprintf(stderr, "bench_grad: %s\n", e.msg), 1;
    double w3 = now(), c3 = cpu_now();
    printf("phase sensitivities (sq_plan_fisher_sensitivity, 1 chunk, %lld tensors): wall %.1f s, cpu %.1f s; "
           "without its chunk: wall %.1f s, cpu %.1f s\n",
           (long long)sq_plan_sens_count(s), w3 - w2, c3 - c2, (w3 - w2) - (w2 - w1), (c3 - c2) - (c2 - c1));
    sq_plan_sens_free(s);
    return 0;
}

/* The measured file's line for name: "NAME W [AK A0] # q3_K rel kld q5_K rel kld [q8_0 rel kld]". */
static void read_measured(const char *path, row *r)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char nm[96];
        if (line[0] == '#' || sscanf(line, "%95s", nm) != 1 || strcmp(nm, r->name) != 0) continue;
        char *hash = strchr(line, '#');
        double w = 0, ak = 0, a0 = 0;
        int n = sscanf(line, "%*s %lf %lf %lf", &w, &ak, &a0);
        r->meas_w = w;
        if (n == 3) r->meas_act[0] = ak, r->meas_act[1] = a0;
        char t1[16], t2[16];
        if (hash && sscanf(hash + 1, "%15s %lf %lf %15s %lf %lf", t1, &r->meas_rel[0], &r->meas_k[0], t2, &r->meas_rel[1],
                           &r->meas_k[1]) == 6)
            r->has_meas = true;
    }
    if (f) fclose(f);
}

/* Ranks of x (average ranks on ties) into rk. */
static void ranks(const double *x, int n, double *rk)
{
    for (int i = 0; i < n; i++) {
        int less = 0, eq = 0;
        for (int j = 0; j < n; j++) less += x[j] < x[i], eq += x[j] == x[i];
        rk[i] = less + (eq + 1) / 2.0;
    }
}

static double spearman(const double *a, const double *b, int n)
{
    double *ra = malloc(sizeof(double) * n), *rb = malloc(sizeof(double) * n), ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    ranks(a, n, ra), ranks(b, n, rb);
    for (int i = 0; i < n; i++) ma += ra[i] / n, mb += rb[i] / n;
    for (int i = 0; i < n; i++) sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma), sbb += (rb[i] - mb) * (rb[i] - mb);
    free(ra), free(rb);
    return sab / sqrt(saa * sbb);
}

/* One use's prediction for a tensor quantized to type (imatrix imp or
 * none): adds the predicted KL divergence to *pred and, when rel, sets the
 * relative error. */
static void predict_type(const sq_grad *g, const sq_grad_stats *s, const sq_weight *w, const float *imp, int type,
                         double *pred, double *rel, double *ex_el, double *ex_r1)
{
    const int64_t R = s->rows, C = s->cols;
    float *W = malloc(sizeof(float) * C), *Q = malloc(sizeof(float) * C), *dW = malloc(sizeof(float) * R * C);
    void *buf = malloc(sq_row_size(type, C));
    double num = 0, den = 0;
    sq_error e = {0};
    for (int64_t r = 0; r < R; r++) {
        sq_weight_get_row(w, r, W);
        if (sq_quantize_rows(type, W, buf, 1, C, imp, &e) != SQ_OK) {
            fprintf(stderr, "%s: %s\n", s->name, e.msg);
            exit(1);
        }
        sq_dequantize_row(type, buf, Q, C);
        for (int64_t c = 0; c < C; c++) {
            const double d = (double)W[c] - Q[c], wi = imp ? imp[c] : 1.0;
            dW[r * C + c] = (float)d;
            num += wi * d * d, den += wi * (double)W[c] * W[c];
        }
    }
    *pred += sq_grad_predict(g, s, dW, NULL, R);
    if (use_exact) exact_predict(&ex, s->name, s->lookup, dW, sq_grad_n_scored(g), ex_el, ex_r1);
    if (rel) *rel = num / den;
    free(W), free(Q), free(dW), free(buf);
}

/* The closed-form sensitivity 1/2 sum_r row[r] sum_c col[c] W^2 and the
 * activation costs (products only) of one use, added to the row. */
static void closed_form(const sq_grad *g, const sq_grad_stats *s, const sq_weight *w, row *o)
{
    double *rw = malloc(sizeof(double) * s->rows), *cl = malloc(sizeof(double) * s->cols);
    float *W = malloc(sizeof(float) * s->rows * s->cols);
    sq_grad_factors(g, s, rw, cl);
    for (int64_t r = 0; r < s->rows; r++) {
        sq_weight_get_row(w, r, W + r * s->cols);
        double a = 0;
        for (int64_t c = 0; c < s->cols; c++) a += cl[c] * (double)W[r * s->cols + c] * W[r * s->cols + c];
        o->closed_w += 0.5 * rw[r] * a;
    }
    o->pred_act[0] += sq_grad_act_cost(g, s, SQ_TYPE_Q8_K, W, NULL, s->rows);
    o->pred_act[1] += sq_grad_act_cost(g, s, SQ_TYPE_Q8_0, W, NULL, s->rows);
    free(rw), free(cl), free(W);
}

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : "models/sqdemo-f16.gguf";
    const char *imf = argc > 2 ? argv[2] : "data/sqdemo.imatrix.gguf", *calib = argc > 3 ? argv[3] : "data/calib.txt";
    const char *meas = argc > 4 ? argv[4] : NULL, *out = argc > 5 ? argv[5] : NULL;
    const int chunks = getenv("CHUNKS") ? atoi(getenv("CHUNKS")) : (argc > 1 ? 6 : 2);
    const int ctx = getenv("CTX") ? atoi(getenv("CTX")) : 512;
    const char *tg = getenv("TARGET") ? getenv("TARGET") : "sampled";
    sq_grad_params gp = sq_grad_default_params();
    gp.n_ctx = ctx;
    gp.n_threads = getenv("THREADS") ? atoi(getenv("THREADS")) : 2;
    gp.target = !strcmp(tg, "text") ? SQ_GRAD_TEXT : !strcmp(tg, "gauss") ? SQ_GRAD_GAUSS : SQ_GRAD_SAMPLED;
    if (getenv("SEED")) gp.seed = strtoull(getenv("SEED"), NULL, 0);
    const bool first_zero = getenv("FIRST") && !strcmp(getenv("FIRST"), "zero");
    sq_error e = {0};
    sq_model *m = NULL;
    sq_imatrix *im = NULL;
    sq_vocab *voc = NULL;
    if (sq_model_load(model, &m, &e) || (strcmp(imf, "-") && sq_imatrix_load(imf, &im, &e)) ||
        sq_vocab_load_gguf(sq_model_gguf(m), &voc, &e)) {
        fprintf(stderr, "bench_grad: %s\n", e.msg);
        return 1;
    }
    FILE *f = fopen(calib, "rb");
    if (!f) {
        fprintf(stderr, "bench_grad: cannot open %s\n", calib);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)sz + 1);
    if (fread(text, 1, (size_t)sz, f) != (size_t)sz) return 1;
    fclose(f);
    sq_token *toks = NULL;
    size_t n_toks = 0;
    if (sq_tokenize(voc, text, (size_t)sz, true, false, &toks, &n_toks, &e)) {
        fprintf(stderr, "bench_grad: %s\n", e.msg);
        return 1;
    }
    const int32_t bos = sq_vocab_add_bos(voc) ? sq_vocab_bos(voc) : -1;
    sq_grad *g = NULL;
    if (sq_grad_create(m, &gp, &g, &e)) {
        fprintf(stderr, "bench_grad: %s\n", e.msg);
        return 1;
    }
    if (getenv("PHASES") && atoi(getenv("PHASES"))) {
        if ((size_t)ctx > n_toks) return fprintf(stderr, "bench_grad: %s is shorter than %d tokens\n", calib, ctx), 1;
        const int rc = phases(m, im, g, (int32_t *)toks, n_toks, ctx, bos, gp.n_threads);
        sq_grad_free(g);
        sq_model_free(m);
        return rc;
    }
    use_exact = getenv("EXACT") && atoi(getenv("EXACT"));
    if (use_exact) sq_grad_set_hook(g, exact_hook, &ex);
    double t0 = now();
    int done = 0;
    for (int c = 0; c < chunks && (size_t)(c + 1) * (size_t)ctx <= n_toks; c++, done++) {
        int32_t *tk = (int32_t *)toks + (size_t)c * (size_t)ctx;
        const int32_t keep = tk[0];
        if (bos >= 0) tk[0] = bos;
        if (sq_grad_chunk(g, tk, ctx, first_zero ? 0 : ctx / 2, true, NULL, &e)) {
            fprintf(stderr, "bench_grad: %s\n", e.msg);
            return 1;
        }
        tk[0] = keep;
    }
    const double secs = now() - t0;
    printf("# %s: %d chunks of %d tokens, target %s, %d threads: %.2f s per chunk (forward + backward)\n", model, done, ctx,
           tg, gp.n_threads, secs / (done ? done : 1));
    if (argc <= 4) return 0; /* no measurements to compare with */

    /* one row per tensor; a tied embedding's two uses add */
    const int64_t ns = sq_grad_n_stats(g);
    row *rows = calloc((size_t)ns, sizeof(row));
    int n = 0;
    for (int64_t i = 0; i < ns; i++) {
        const sq_grad_stats *s = sq_grad_stats_at(g, i);
        int k = 0;
        while (k < n && strcmp(rows[k].name, s->name)) k++;
        if (k == n) snprintf(rows[n++].name, sizeof rows[0].name, "%s", s->name);
        const sq_weight *w = sq_model_weight(m, s->name);
        int64_t ni = 0;
        const float *imp = s->lookup || !im ? NULL : sq_imatrix_find(im, s->name, &ni);
        if (imp && ni != s->cols) imp = NULL;
        predict_type(g, s, w, imp, SQ_TYPE_Q3_K, &rows[k].pred[0], &rows[k].rel[0], &rows[k].ex_elem[0], &rows[k].ex_rank1[0]);
        predict_type(g, s, w, imp, SQ_TYPE_Q5_K, &rows[k].pred[1], &rows[k].rel[1], &rows[k].ex_elem[1], &rows[k].ex_rank1[1]);
        closed_form(g, s, w, &rows[k]);
    }
    double *a = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n), *c3 = malloc(sizeof(double) * n);
    double *d3 = malloc(sizeof(double) * n), *cw = malloc(sizeof(double) * n);
    int nm = 0;
    double sum_meas = 0, sum_pred = 0;
    printf("| tensor | measured KLD q3_K | predicted | measured KLD q5_K | predicted | measured slope | predicted slope | "
           "closed form | act q8_K meas / pred | act q8_0 meas / pred |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        row *r = &rows[i];
        r->pred_w = (r->pred[0] - r->pred[1]) / (r->rel[0] - r->rel[1]);
        read_measured(meas, r);
        printf("| %s | %.3g | %.3g | %.3g | %.3g | %.4g | %.4g | %.4g | %.2g / %.2g | %.2g / %.2g |\n", r->name, r->meas_k[0],
               r->pred[0], r->meas_k[1], r->pred[1], r->meas_w, r->pred_w, r->closed_w, r->meas_act[0], r->pred_act[0],
               r->meas_act[1], r->pred_act[1]);
        if (use_exact)
            printf("|   exact: elementwise %.3g / %.3g, rank-1 %.3g / %.3g; slopes %.4g / %.4g | | | | | | | | | |\n", r->ex_elem[0],
                   r->ex_elem[1], r->ex_rank1[0], r->ex_rank1[1], (r->ex_elem[0] - r->ex_elem[1]) / (r->rel[0] - r->rel[1]),
                   (r->ex_rank1[0] - r->ex_rank1[1]) / (r->rel[0] - r->rel[1]));
        if (!r->has_meas) continue;
        a[nm] = r->meas_w, b[nm] = r->pred_w, c3[nm] = r->meas_k[0], d3[nm] = r->pred[0], cw[nm] = r->closed_w;
        sum_meas += r->meas_k[0], sum_pred += r->pred[0];
        nm++;
    }
    if (nm > 2)
        printf("\nSpearman (%d tensors): slope %.3f, closed form vs measured slope %.3f, KLD at q3_K %.3f; "
               "sum of KLD at q3_K measured %.4g, predicted %.4g\n",
               nm, spearman(a, b, nm), spearman(a, cw, nm), spearman(c3, d3, nm), sum_meas, sum_pred);
    FILE *o = out ? fopen(out, "w") : NULL;
    if (o) {
        fprintf(o, "# sensitivity predicted by the Fisher estimate (bench_grad, %d chunks of %s, target %s)\n", done, calib, tg);
        for (int i = 0; i < n; i++)
            fprintf(o, "%s %.6g %.6g %.6g\n", rows[i].name, rows[i].pred_w > 1e-6 ? rows[i].pred_w : 1e-6, rows[i].pred_act[0],
                    rows[i].pred_act[1]);
        fclose(o);
    }
    sq_grad_free(g);
    sq_model_free(m);
    return 0;
}
