/*
 * plan_calib.c — the planner's calibration with the engine: per-tensor
 * sensitivities (KL divergence per unit of relative error, what `sq plan
 * --sensitivity` used to read from bench/sensitivity.sh) and the KL
 * divergence of a whole plan, both measured in-process on a few chunks of
 * calibration text, without writing a file (see sq/plan.h, docs/plan.md).
 *
 * Method: the unmodified model's log-probabilities of the scored positions
 * (llama.cpp's: the second half of each chunk) are kept in memory; for a
 * measurement the weight views of the model are replaced (sq_model_set_weight)
 * by quantized copies owned here, the chunks are evaluated again and the mean
 * KL divergence against the kept log-probabilities is taken, in double, in a
 * fixed order. Then the original views are put back. The engine's products
 * give the same logits for the same inputs, so the result is deterministic.
 *
 * Ownership: the calibrator borrows the model (and changes its views only
 * while measuring); it owns the kept log-probabilities, the quantized copies
 * and the result sets.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_calib.h"
#include "plan/plan_internal.h"
#include "sq/blocks.h"
#include "sq/engine.h"
#include "sq/sqtensor.h"
#include "sq/types.h"

/* Default measuring points: the slope between them cancels what both share. */
static const int default_calib_types[2] = {SQ_TYPE_Q3_K, SQ_TYPE_Q5_K};

/* The kept reference: chunks of the calibration text and the unmodified
 * model's log-probabilities at the scored positions. */
typedef struct calib {
    sq_model *m;
    const sq_plan_calib_params *p;
    int n_ctx, n_chunks, first, n_score, n_vocab;
    int32_t *chunks;  /* n_chunks * n_ctx tokens (first of each replaced by bos) */
    float *base_lp;   /* n_chunks * n_score * n_vocab log-probabilities */
    double base_nll;
} calib;

/* log-softmax of n logits into out (double sums, max subtracted). */
static void log_softmax(const float *x, int n, double *out)
{
    double mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

/* Evaluates every chunk with the model's current views; with keep, stores the
 * log-probabilities as the reference, else returns the mean KL divergence of
 * the current model from the reference in *kld. A fresh context per call:
 * the replaced views may need a larger work buffer than the originals. */
static sq_status calib_run(calib *cb, bool keep, double *kld, sq_error *err)
{
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = cb->n_ctx;
    cp.n_batch = cb->n_ctx;
    cp.n_threads = cb->p->n_threads > 0 ? cb->p->n_threads : 1;
    sq_context *c = NULL;
    sq_status st = sq_context_create(cb->m, &cp, &c, err);
    if (st != SQ_OK) return st;
    double *lq = malloc(sizeof(double) * (size_t)cb->n_vocab);
    if (!lq) {
        sq_context_free(c);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the calibration");
    }
    double sum = 0.0, nll = 0.0;
    int n_logits = cb->n_ctx - cb->first;
    for (int ch = 0; ch < cb->n_chunks && st == SQ_OK; ch++) {
        const int32_t *toks = cb->chunks + (size_t)ch * (size_t)cb->n_ctx;
        sq_kv_clear(c);
        st = sq_eval(c, toks, cb->n_ctx, n_logits, err);
        if (st != SQ_OK) break;
        const float *logits = sq_get_logits(c);
        for (int j = 0; j < cb->n_score; j++) {
            const float *row = logits + (size_t)j * (size_t)cb->n_vocab;
            float *base = cb->base_lp + ((size_t)ch * (size_t)cb->n_score + (size_t)j) * (size_t)cb->n_vocab;
            log_softmax(row, cb->n_vocab, lq);
            if (keep) {
                for (int i = 0; i < cb->n_vocab; i++) base[i] = (float)lq[i];
                nll -= lq[toks[cb->first + j + 1]];
            } else {
                double k = 0.0;
                for (int i = 0; i < cb->n_vocab; i++) {
                    double lb = base[i];
                    k += exp(lb) * (lb - lq[i]);
                }
                sum += k;
            }
        }
    }
    free(lq);
    sq_context_free(c);
    double count = (double)cb->n_chunks * (double)cb->n_score;
    if (st == SQ_OK && keep) cb->base_nll = nll / count;
    if (st == SQ_OK && kld) *kld = keep ? 0.0 : sum / count;
    return st;
}

static void calib_free(calib *cb)
{
    free(cb->chunks);
    free(cb->base_lp);
}

sq_status sq__plan_calib_chunks(const sq_model *m, const sq_plan_calib_params *p, int32_t **chunks, int *n_ctx,
                                int *n_chunks, sq_error *err)
{
    *chunks = NULL;
    const sq_hparams *hp = sq_model_hparams(m);
    int ctx = p->n_ctx > 0 ? p->n_ctx : 512;
    if (hp->n_ctx_train > 0 && ctx > hp->n_ctx_train) ctx = (int)hp->n_ctx_train;
    if (ctx < 8) return sq_error_set(err, SQ_EINVAL, "calibration chunks of %d tokens: want at least 8", ctx);
    const int want = p->n_chunks > 0 ? p->n_chunks : SQ_PLAN_CALIB_DEFAULT_CHUNKS;
    const size_t have = p->tokens ? p->n_tokens / (size_t)ctx : 0;
    if (have == 0)
        return sq_error_set(err, SQ_EINVAL, "calibration text of %zu tokens is shorter than one chunk of %d",
                            p->tokens ? p->n_tokens : 0, ctx);
    const int nc = (size_t)want < have ? want : (int)have;
    for (size_t i = 0; i < (size_t)nc * (size_t)ctx; i++)
        if (p->tokens[i] < 0 || p->tokens[i] >= hp->n_vocab)
            return sq_error_set(err, SQ_EINVAL, "calibration token %zu is %d, outside the vocabulary of %lld", i,
                                (int)p->tokens[i], (long long)hp->n_vocab);
    *chunks = malloc(sizeof(int32_t) * (size_t)nc * (size_t)ctx);
    if (!*chunks) return sq_error_set(err, SQ_ENOMEM, "out of memory for %d calibration chunks", nc);
    memcpy(*chunks, p->tokens, sizeof(int32_t) * (size_t)nc * (size_t)ctx);
    if (p->bos >= 0)
        for (int ch = 0; ch < nc; ch++) (*chunks)[(size_t)ch * (size_t)ctx] = p->bos;
    *n_ctx = ctx;
    *n_chunks = nc;
    return SQ_OK;
}

/* Cuts the calibration tokens into chunks and keeps the reference. */
static sq_status calib_init(calib *cb, sq_model *m, const sq_plan_calib_params *p, sq_error *err)
{
    memset(cb, 0, sizeof *cb);
    cb->m = m;
    cb->p = p;
    cb->n_vocab = (int)sq_model_hparams(m)->n_vocab;
    sq_status st = sq__plan_calib_chunks(m, p, &cb->chunks, &cb->n_ctx, &cb->n_chunks, err);
    if (st != SQ_OK) return st;
    cb->first = cb->n_ctx / 2;
    cb->n_score = cb->n_ctx - 1 - cb->first;
    cb->base_lp = malloc(sizeof(float) * (size_t)cb->n_chunks * (size_t)cb->n_score * (size_t)cb->n_vocab);
    if (!cb->base_lp) {
        calib_free(cb);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for %d calibration chunks", cb->n_chunks);
    }
    st = calib_run(cb, true, NULL, err);
    if (st != SQ_OK) calib_free(cb);
    return st;
}

/* The weights of a GGUF tensor as rows * cols floats (malloc'ed). */
static sq_status read_weights(const sq_gguf_tensor *t, float **out, sq_error *err)
{
    *out = NULL;
    int64_t cols = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t rb = sq_row_size(t->type, cols);
    if (t->smarterquant || rb == 0 || !sq_blocks_can_dequantize(t->type))
        return sq_error_set(err, SQ_EUNSUPPORTED, "tensor %s: cannot read weights of type %s for calibration", t->name,
                            t->smarterquant ? "SmarterQuant" : sq_type_name(t->type));
    float *W = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!W) return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", t->name);
    for (int64_t r = 0; r < rows; r++)
        sq_dequantize_row(t->type, (const unsigned char *)t->data + (size_t)r * rb, W + r * cols, cols);
    *out = W;
    return SQ_OK;
}

/* Quantizes W (rows x cols, original order) to the four segment types with
 * the permutation (NULL: none) exactly as sq quantize writes a SmarterQuant
 * tensor, into *data (malloc'ed), fills the view, and returns the relative
 * error sum imp*(W-Q)^2 / sum imp*W^2 in *rel. */
static sq_status quantize_view(const char *name, const float *W, int64_t rows, int64_t cols, const float *imp,
                               const int types[4], const int32_t *perm, void **data, sq_weight *view, double *rel,
                               sq_error *err)
{
    *data = NULL;
    sq_status st = sq_weight_mixed(view, NULL, types, perm, rows, cols, err);
    if (st != SQ_OK) return st;
    unsigned char *q = malloc(view->row_bytes * (size_t)rows);
    float *rp = malloc(sizeof(float) * (size_t)cols * 3);
    if (!q || !rp) {
        free(q);
        free(rp);
        return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", name);
    }
    float *ip = rp + cols, *back = rp + 2 * cols;
    if (imp) {
        if (perm) sq_perm_gather(perm, cols, imp, ip);
        else memcpy(ip, imp, sizeof(float) * (size_t)cols);
    }
    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < rows && st == SQ_OK; r++) {
        const float *wr = W + r * cols;
        if (perm) sq_perm_gather(perm, cols, wr, rp);
        else memcpy(rp, wr, sizeof(float) * (size_t)cols);
        unsigned char *dst = q + (size_t)r * view->row_bytes;
        st = sq_pack_row(types, cols, rp, imp ? ip : NULL, dst, err);
        if (st != SQ_OK) break;
        view->data = q;
        sq_weight_get_row(view, r, back);
        for (int64_t c = 0; c < cols; c++) {
            double wi = imp ? (double)imp[c] : 1.0, d = (double)wr[c] - (double)back[c];
            num += wi * d * d;
            den += wi * (double)wr[c] * (double)wr[c];
        }
    }
    free(rp);
    if (st != SQ_OK) {
        free(q);
        sq_error_prefix(err, "tensor %s", name);
        return st;
    }
    view->data = q;
    *data = q;
    *rel = den > 0 ? num / den : 0.0;
    return SQ_OK;
}

/* The importance values of a tensor, or NULL (none, or of another length). */
const float *sq__plan_find_imp(const sq_imatrix *im, const char *name, int64_t cols)
{
    int64_t n = 0;
    const float *imp = im ? sq_imatrix_find(im, name, &n) : NULL;
    return imp && n == cols ? imp : NULL;
}

void sq_plan_sens_free(sq_plan_sens *s)
{
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) free((char *)s->e[i].name);
    for (int64_t i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    free(s->e);
    free(s->w);
    free(s);
}

sq_plan_sens *sq__plan_sens_alloc(int64_t n)
{
    sq_plan_sens *s = calloc(1, sizeof *s);
    if (s) s->e = calloc((size_t)(n > 0 ? n : 1), sizeof *s->e);
    if (s) s->w = calloc((size_t)(n > 0 ? n : 1), sizeof *s->w);
    if (s && (!s->e || !s->w)) {
        sq_plan_sens_free(s);
        s = NULL;
    }
    return s;
}

int64_t sq_plan_sens_count(const sq_plan_sens *s) { return s ? s->n : 0; }
const sq_plan_sensitivity *sq_plan_sens_at(const sq_plan_sens *s, int64_t i)
{
    return s && i >= 0 && i < s->n ? &s->e[i] : NULL;
}
const sq_plan_weight *sq_plan_sens_weights(const sq_plan_sens *s) { return s ? s->w : NULL; }
double sq_plan_sens_base_nll(const sq_plan_sens *s) { return s ? s->base_nll : 0.0; }
int sq_plan_sens_method(const sq_plan_sens *s) { return s ? s->method : SQ_PLAN_CALIB_FISHER; }
const char *sq_plan_sens_fallback(const sq_plan_sens *s) { return s && s->fallback[0] ? s->fallback : NULL; }

/* The segment types that measure a tensor of cols columns at type tk: tk on
 * every slot whose segments its blocks divide, else (a segment shorter than
 * 256 columns, e.g. an FFN width of 640) the 32-column type of the nearest
 * bits per weight (q4_0, q5_0, q8_0), as the planner's candidates for such
 * segments. false when not even those fit (columns not a multiple of 32). */
static bool measuring_slots(int tk, int64_t cols, int ty[4])
{
    static const int short_types[3] = {SQ_TYPE_Q4_0, SQ_TYPE_Q5_0, SQ_TYPE_Q8_0};
    const sq_type_info *ti = sq_type_info_get(tk);
    const double bpw = 8.0 * ti->type_size / ti->block_size;
    int alt = short_types[0];
    for (int i = 1; i < 3; i++) {
        const sq_type_info *a = sq_type_info_get(short_types[i]), *b = sq_type_info_get(alt);
        if (fabs(8.0 * a->type_size / a->block_size - bpw) < fabs(8.0 * b->type_size / b->block_size - bpw))
            alt = short_types[i];
    }
    const int64_t n_seg = sq_n_segments(cols);
    for (int s = 0; s < 4; s++) {
        ty[s] = tk;
        for (int64_t k = s; k < n_seg && (s == 3 || k == s); k++) {
            const int64_t len = cols - k * SQ_SEGMENT < SQ_SEGMENT ? cols - k * SQ_SEGMENT : SQ_SEGMENT;
            if (len % ti->block_size != 0) ty[s] = alt;
            if (len % sq_type_info_get(ty[s])->block_size != 0) return false;
        }
    }
    return true;
}

/* One tensor's measurement: quantized to each measuring type in turn, the
 * KL divergence with only it replaced, then the original view back. */
static sq_status measure_one(calib *cb, const sq_gguf_tensor *t, const sq_imatrix *im, const int *types, int n_types,
                             int act_type, sq_plan_sensitivity *e, sq_error *err)
{
    float *W = NULL;
    sq_status st = read_weights(t, &W, err);
    if (st != SQ_OK) return st;
    const sq_weight *orig_p = sq_model_weight(cb->m, t->name);
    sq_weight orig = *orig_p;
    int64_t cols = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const float *imp = sq__plan_find_imp(im, t->name, cols);
    e->n_points = n_types;
    int n_runs = n_types + (act_type > 0), ty[4];
    for (int k = 0; k < n_runs; k++)
        if (!measuring_slots(k < n_types ? types[k] : act_type, cols, ty)) {
            /* no type quantizes it (nor will the planner): nothing to measure */
            free(W);
            e->n_points = 0;
            e->weight = SQ_PLAN_SENS_FLOOR;
            return SQ_OK;
        }
    for (int k = 0; k < n_runs && st == SQ_OK; k++) {
        int tk = k < n_types ? types[k] : act_type;
        measuring_slots(tk, cols, ty);
        void *data = NULL;
        sq_weight view;
        if (k < n_types) e->types[k] = tk;
        double *rel = k < n_types ? &e->rel[k] : &e->rel_act, *kld = k < n_types ? &e->kld[k] : &e->kld_act;
        st = quantize_view(t->name, W, rows, cols, imp, ty, NULL, &data, &view, rel, err);
        if (st == SQ_OK) st = sq_model_set_weight(cb->m, t->name, &view, err);
        if (st == SQ_OK) {
            st = calib_run(cb, false, kld, err);
            sq_error e2 = {0};
            sq_status rs = sq_model_set_weight(cb->m, t->name, &orig, &e2);
            if (st == SQ_OK && rs != SQ_OK) {
                st = rs;
                if (err) *err = e2;
            }
        }
        free(data);
    }
    free(W);
    if (st != SQ_OK) return st;
    /* two points: the slope (what both share cancels); one: through the origin */
    double w = 0.0;
    if (n_types == 2 && e->rel[0] != e->rel[1]) w = (e->kld[0] - e->kld[1]) / (e->rel[0] - e->rel[1]);
    else if (e->rel[0] > 0) w = e->kld[0] / e->rel[0];
    e->weight = w > SQ_PLAN_SENS_FLOOR && isfinite(w) ? w : SQ_PLAN_SENS_FLOOR;
    if (act_type > 0 && n_types == 2) {
        /* what the line leaves at zero weight error: the activations' share */
        double ak = e->kld[1] - e->weight * e->rel[1], a0 = e->kld_act - e->weight * e->rel_act;
        e->act_q8_K = ak > 0 && isfinite(ak) ? ak : 0.0;
        e->act_q8_0 = a0 > 0 && isfinite(a0) ? a0 : 0.0;
    }
    return SQ_OK;
}

/* Checks the measuring types: 1 or 2, quantizable weight types. */
sq_status sq__plan_calib_types(const sq_plan_calib_params *p, const int **types, int *n, sq_error *err)
{
    *types = default_calib_types;
    *n = 2;
    if (!p->types || p->n_types == 0) return SQ_OK;
    if (p->n_types < 0 || p->n_types > 2)
        return sq_error_set(err, SQ_EINVAL, "%d calibration types: want one or two", p->n_types);
    for (int i = 0; i < p->n_types; i++) {
        const sq_type_info *ti = sq_type_info_get(p->types[i]);
        if (!ti || !ti->is_weight || !sq_blocks_can_quantize(p->types[i]) || !sq_blocks_can_dot(p->types[i]))
            return sq_error_set(err, SQ_EINVAL, "calibration type id %d cannot be quantized and multiplied here",
                                p->types[i]);
    }
    *types = p->types;
    *n = p->n_types;
    return SQ_OK;
}

/* Checks the activation-cost type: a quantizable type whose activations are
 * q8_0 or q8_1, next to two K-quant measuring types (q8_K activations). */
static sq_status check_act_type(const int *types, int n_types, int act_type, sq_error *err)
{
    if (act_type <= 0) return SQ_OK;
    const sq_type_info *ti = sq_type_info_get(act_type);
    if (!ti || !ti->is_weight || !sq_blocks_can_quantize(act_type) || !sq_blocks_can_dot(act_type) ||
        (ti->vec_dot_type != SQ_TYPE_Q8_0 && ti->vec_dot_type != SQ_TYPE_Q8_1))
        return sq_error_set(err, SQ_EINVAL, "activation-cost type id %d: want a type multiplied with q8_0 or q8_1 "
                            "activations (q8_0, q5_0, q5_1, ...)", act_type);
    for (int i = 0; i < n_types; i++) {
        const sq_type_info *tk = sq_type_info_get(types[i]);
        if (n_types != 2 || !tk || tk->vec_dot_type != SQ_TYPE_Q8_K)
            return sq_error_set(err, SQ_EINVAL, "activation costs need two K-quant measuring types (q8_K activations)");
    }
    return SQ_OK;
}

sq_status sq_plan_measure_sensitivity(sq_model *m, const sq_imatrix *im, const sq_plan_calib_params *p,
                                      sq_plan_sens **out, sq_error *err)
{
    *out = NULL;
    if (!m || !p) return sq_error_set(err, SQ_EINVAL, "sq_plan_measure_sensitivity: no model or parameters");
    const int *types;
    int n_types;
    sq_status st = sq__plan_calib_types(p, &types, &n_types, err);
    if (st == SQ_OK) st = check_act_type(types, n_types, p->act_type, err);
    if (st != SQ_OK) return st;
    regex_t re;
    bool have_re = p->tensors != NULL;
    if (have_re) {
        int rc = regcomp(&re, p->tensors, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &re, msg, sizeof msg);
            return sq_error_set(err, SQ_EINVAL, "calibration tensor regex '%s': %s", p->tensors, msg);
        }
    }
    const sq_gguf *g = sq_model_gguf(m);
    int64_t nt = sq_gguf_n_tensors(g);
    sq_plan_sens *s = sq__plan_sens_alloc(nt);
    calib cb;
    bool have_cb = false;
    if (!s) st = sq_error_set(err, SQ_ENOMEM, "out of memory for sensitivities");
    else s->method = SQ_PLAN_CALIB_MEASURE;
    if (st == SQ_OK) st = calib_init(&cb, m, p, err);
    have_cb = st == SQ_OK;
    /* the tensors in file order: the weights the forward pass multiplies or looks up */
    int64_t n_todo = 0;
    for (int64_t i = 0; st == SQ_OK && i < nt; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        if (sq_model_weight(m, t->name) && (!have_re || regexec(&re, t->name, 0, NULL, 0) == 0)) n_todo++;
    }
    for (int64_t i = 0; st == SQ_OK && i < nt; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        if (!sq_model_weight(m, t->name) || (have_re && regexec(&re, t->name, 0, NULL, 0) != 0)) continue;
        if (p->progress) p->progress(p->ud, t->name, (int)s->n, (int)n_todo);
        sq_plan_sensitivity *e = &s->e[s->n];
        e->name = strdup(t->name);
        if (!e->name) {
            st = sq_error_set(err, SQ_ENOMEM, "out of memory");
            break;
        }
        s->n++;
        st = measure_one(&cb, t, im, types, n_types, p->act_type, e, err);
        s->w[s->n - 1] = (sq_plan_weight){.name = e->name, .weight = e->weight, .act_q8_K = e->act_q8_K, .act_q8_0 = e->act_q8_0};
    }
    if (st == SQ_OK && s->n == 0)
        st = sq_error_set(err, SQ_EINVAL, "no weight to calibrate%s%s%s", have_re ? " ('" : "",
                          have_re ? p->tensors : "", have_re ? "' matches none)" : "");
    if (have_cb) {
        if (s) s->base_nll = cb.base_nll;
        calib_free(&cb);
    }
    if (have_re) regfree(&re);
    if (st != SQ_OK) {
        sq_plan_sens_free(s);
        return st;
    }
    *out = s;
    return SQ_OK;
}

/* A plan installed in the model: the quantized copies (owned) and the views
 * they replaced. */
typedef struct installed {
    int64_t n;
    sq_weight *orig, *view;
    void **data;
    bool *set;
    double *rel;
} installed;

/* Puts the original views back and frees the copies. */
static void uninstall(sq_model *m, const sq_plan *plan, installed *in)
{
    for (int64_t i = 0; i < in->n && in->set; i++)
        if (in->set[i]) sq_model_set_weight(m, sq_plan_tensor_at(plan, i)->name, &in->orig[i], NULL);
    for (int64_t i = 0; i < in->n && in->data; i++) free(in->data[i]);
    free(in->orig);
    free(in->view);
    free(in->data);
    free(in->set);
    free(in->rel);
    memset(in, 0, sizeof *in);
}

/* Quantizes every planned tensor as the plan says (permutation included)
 * and makes the model use the copies. On failure nothing stays installed. */
static sq_status install(sq_model *m, const sq_imatrix *im, const sq_plan *plan, installed *in, sq_error *err)
{
    const sq_gguf *g = sq_model_gguf(m);
    int64_t n = sq_plan_n_tensors(plan);
    size_t cnt = (size_t)(n > 0 ? n : 1);
    memset(in, 0, sizeof *in);
    in->n = n;
    in->orig = calloc(cnt, sizeof *in->orig);
    in->view = calloc(cnt, sizeof *in->view);
    in->data = calloc(cnt, sizeof *in->data);
    in->set = calloc(cnt, sizeof *in->set);
    in->rel = calloc(cnt, sizeof *in->rel);
    sq_status st = SQ_OK;
    if (!in->orig || !in->view || !in->data || !in->set || !in->rel) st = sq_error_set(err, SQ_ENOMEM, "out of memory");
    for (int64_t i = 0; st == SQ_OK && i < n; i++) {
        const sq_plan_tensor *pt = sq_plan_tensor_at(plan, i);
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, pt->name);
        const sq_weight *w = sq_model_weight(m, pt->name);
        if (!t || !w) {
            st = sq_error_set(err, SQ_ENOTFOUND, "planned tensor %s is not a weight of the model", pt->name);
            break;
        }
        in->orig[i] = *w;
        float *W = NULL;
        st = read_weights(t, &W, err);
        if (st == SQ_OK)
            st = quantize_view(pt->name, W, pt->rows, pt->cols, sq__plan_find_imp(im, pt->name, pt->cols), pt->types, pt->perm,
                               &in->data[i], &in->view[i], &in->rel[i], err);
        free(W);
        if (st == SQ_OK) st = sq_model_set_weight(m, pt->name, &in->view[i], err);
        if (st == SQ_OK) in->set[i] = true;
    }
    if (st != SQ_OK) uninstall(m, plan, in);
    return st;
}

sq_status sq_plan_measure_kld(sq_model *m, const sq_imatrix *im, const sq_plan *plan, const sq_plan_calib_params *p,
                              double *kld, sq_error *err)
{
    *kld = 0.0;
    if (!m || !plan || !p) return sq_error_set(err, SQ_EINVAL, "sq_plan_measure_kld: no model, plan or parameters");
    calib cb;
    sq_status st = calib_init(&cb, m, p, err);
    if (st != SQ_OK) return st;
    installed in;
    st = install(m, im, plan, &in, err);
    if (st == SQ_OK) {
        st = calib_run(&cb, false, kld, err);
        uninstall(m, plan, &in);
    }
    calib_free(&cb);
    return st;
}

/* In context: with the whole model quantized as planned, each planned tensor
 * in turn is given back its original weights; what the KL divergence drops
 * is that tensor's share of the plan's error, divided by its relative error
 * in the plan. */
sq_status sq_plan_measure_sensitivity_in_plan(sq_model *m, const sq_imatrix *im, const sq_plan *plan,
                                              const sq_plan_calib_params *p, sq_plan_sens **out, double *kld,
                                              sq_error *err)
{
    *out = NULL;
    *kld = 0.0;
    if (!m || !plan || !p) return sq_error_set(err, SQ_EINVAL, "sq_plan_measure_sensitivity_in_plan: no model, plan or parameters");
    int64_t n = sq_plan_n_tensors(plan);
    sq_plan_sens *s = sq__plan_sens_alloc(n);
    if (!s) {
        return sq_error_set(err, SQ_ENOMEM, "out of memory for sensitivities");
    }
    calib cb;
    sq_status st = calib_init(&cb, m, p, err);
    if (st != SQ_OK) {
        sq_plan_sens_free(s);
        return st;
    }
    s->base_nll = cb.base_nll;
    installed in;
    st = install(m, im, plan, &in, err);
    if (st == SQ_OK) st = calib_run(&cb, false, kld, err);
    for (int64_t i = 0; st == SQ_OK && i < n; i++) {
        const sq_plan_tensor *pt = sq_plan_tensor_at(plan, i);
        if (p->progress) p->progress(p->ud, pt->name, (int)i, (int)n);
        sq_plan_sensitivity *e = &s->e[i];
        e->name = strdup(pt->name);
        if (!e->name) {
            st = sq_error_set(err, SQ_ENOMEM, "out of memory");
            break;
        }
        s->n++;
        double without = 0.0;
        st = sq_model_set_weight(m, pt->name, &in.orig[i], err);
        if (st == SQ_OK) st = calib_run(&cb, false, &without, err);
        if (st == SQ_OK) st = sq_model_set_weight(m, pt->name, &in.view[i], err);
        e->n_points = 1;
        e->types[0] = pt->types[3];
        e->rel[0] = in.rel[i];
        e->kld[0] = *kld - without;
        double w = in.rel[i] > 0 ? e->kld[0] / in.rel[i] : 0.0;
        e->weight = w > SQ_PLAN_SENS_FLOOR && isfinite(w) ? w : SQ_PLAN_SENS_FLOOR;
        s->w[i] = (sq_plan_weight){.name = e->name, .weight = e->weight};
    }
    if (in.n) uninstall(m, plan, &in);
    calib_free(&cb);
    if (st != SQ_OK) {
        sq_plan_sens_free(s);
        return st;
    }
    *out = s;
    return SQ_OK;
}

/* Replaces *cur by the better of it and *best (lower measured KL divergence;
 * ties keep the earlier), freeing the other. */
static void keep_better(sq_plan **best, double *best_kld, sq_plan *cur, double kld)
{
    if (!*best || kld < *best_kld) {
        sq_plan_free(*best);
        *best = cur;
        *best_kld = kld;
    } else {
        sq_plan_free(cur);
    }
}

sq_status sq_plan_refine(sq_model *m, const sq_imatrix *im, const sq_plan_params *p, const sq_plan_calib_params *cp,
                         int rounds, sq_plan **plan, double *kld, sq_error *err)
{
    *kld = 0.0;
    if (!m || !p || !cp || !plan || !*plan) return sq_error_set(err, SQ_EINVAL, "sq_plan_refine: missing argument");
    sq_plan *best = NULL, *cur = *plan;
    *plan = NULL;
    double best_kld = INFINITY, k = 0.0;
    sq_status st = SQ_OK;
    for (int r = 0; r < rounds && st == SQ_OK; r++) {
        sq_plan_sens *s = NULL;
        st = sq_plan_measure_sensitivity_in_plan(m, im, cur, cp, &s, &k, err);
        if (st != SQ_OK) break;
        keep_better(&best, &best_kld, cur, k);
        cur = NULL;
        sq_plan_params pp = *p;
        pp.weights = sq_plan_sens_weights(s);
        pp.n_weights = (int)sq_plan_sens_count(s);
        st = sq_plan_create(sq_model_gguf(m), im, &pp, &cur, err);
        sq_plan_sens_free(s);
    }
    if (st == SQ_OK) st = sq_plan_measure_kld(m, im, cur, cp, &k, err);
    if (st == SQ_OK) keep_better(&best, &best_kld, cur, k);
    else sq_plan_free(cur);
    if (st != SQ_OK) {
        sq_plan_free(best);
        return st;
    }
    *plan = best;
    *kld = best_kld;
    return SQ_OK;
}
