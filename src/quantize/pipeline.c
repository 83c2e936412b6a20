/*
 * pipeline.c — `sq quantize`: plan every tensor of a GGUF model (llama.cpp's
 * rules, or a SmarterQuant request), validate the whole plan, then stream
 * the output tensor by tensor.
 *
 * Memory: the input stays in the reader's read-only map; per tensor we hold
 * one f32 copy of it and its output bytes (both reused across tensors), so
 * the peak is about one tensor in and out, never the model.
 * Threads: rows are split evenly across the pool's threads; each row is
 * quantized independently (ggml's quantizers work row by row), so the bytes
 * do not depend on the thread count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"
#include "sq/imatrix.h"
#include "sq/quantize.h"
#include "sq/sqconfig.h"

/* ------------------------------------------------------------------ */
/* plan                                                                 */
/* ------------------------------------------------------------------ */

typedef struct tplan {
    const sq_gguf_tensor *t;
    sq_quantize_tensor_plan pub;
    int64_t C, rows, n_mat, rows_per_mat; /* columns; all rows; ne[2]*ne[3] matrices of ne[1] rows */
    const float *imx;                     /* importance for n_mat * C columns, or NULL */
    const int32_t *perm;                  /* SmarterQuant output permutation (not owned) or NULL */
    bool in_sq;                           /* the input tensor is a SmarterQuant tensor (t->sq) */
    size_t out_row_bytes;
    char *out_name;                       /* --prune-layers renumbered it: the output name (owned), else NULL */
    int shard;                            /* output file it goes to (0 unless keep_split) */
} tplan;

/* The name a tensor gets in the output. */
static const char *out_name(const tplan *tp) { return tp->out_name ? tp->out_name : tp->t->name; }

typedef struct run {
    const sq_quantize_params *p;
    sq_gguf *in;
    sq_imatrix *im;         /* NULL when none was given or --include/--exclude-weights left nothing */
    int64_t im_entries;     /* entries that pass --include/--exclude-weights */
    tplan *tp;
    int64_t n;
    sq_threadpool *pool;
    int n_threads;
    char arch[64];          /* general.architecture ("llama" when absent) */
    int64_t n_layer;        /* ARCH.block_count of the input (0 when absent) */
    unsigned char *pruned;  /* n_layer flags: layer dropped by --prune-layers; NULL when none is */
    int64_t n_pruned;       /* layers dropped */
    int n_files;            /* output files */
    tplan **by_in;          /* plan entry of each input tensor (NULL: pruned) */
} run;

static void emit(const run *r, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    if (r->p->on_event) r->p->on_event(r->p->event_ud, kind, text, t);
}

static void emitf(const run *r, sq_quantize_event_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void emitf(const run *r, sq_quantize_event_kind kind, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    emit(r, kind, buf, NULL);
}

/* Whether the importance of weight `name` may be used (--include-weights /
 * --exclude-weights: substrings of the name, as llama-quantize filters). */
static bool imatrix_allowed(const sq_quantize_params *p, const char *name)
{
    for (int i = 0; i < p->n_imatrix_exclude; i++)
        if (strstr(name, p->imatrix_exclude[i])) return false;
    if (p->n_imatrix_include == 0) return true;
    for (int i = 0; i < p->n_imatrix_include; i++)
        if (strstr(name, p->imatrix_include[i])) return true;
    return false;
}

/* The importance values of a weight, or NULL (absent or filtered out). */
static const float *imatrix_of(const run *r, const char *name, int64_t *n)
{
    if (!r->im || !imatrix_allowed(r->p, name)) return NULL;
    return sq_imatrix_find(r->im, name, n);
}

static int cmp_tplan(const void *a, const void *b)
{
    return sq_tensor_order_cmp(((const tplan *)a)->t->name, ((const tplan *)b)->t->name);
}

/* --keep-split order (llama-quantize's): by shard, then by data offset. */
static int cmp_tplan_split(const void *a, const void *b)
{
    const tplan *x = a, *y = b;
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    if (x->t->offset != y->t->offset) return x->t->offset < y->t->offset ? -1 : 1;
    return 0;
}

/* The layer of a tensor: N of the first "blk.N." in its name, or -1. *at and
 * *len give where the digits are (for renumbering). */
static int64_t layer_of(const char *name, size_t *at, size_t *len)
{
    for (const char *p = strstr(name, "blk."); p; p = strstr(p + 1, "blk.")) {
        const char *d = p + 4, *e = d;
        int64_t v = 0;
        while (*e >= '0' && *e <= '9' && e - d < 9) v = v * 10 + (*e++ - '0');
        if (e > d && *e == '.') {
            *at = (size_t)(d - name);
            *len = (size_t)(e - d);
            return v;
        }
    }
    return -1;
}

/* Layers below `layer` that are pruned: its new number is layer minus that. */
static int64_t pruned_below(const run *r, int64_t layer)
{
    int64_t n = 0;
    for (int64_t l = 0; l < layer && l < r->n_layer; l++) n += r->pruned[l];
    return n;
}

/* Whether the input tensor t is dropped by --prune-layers; when kept and
 * renumbered, *renamed gets its new name (malloc'd), else NULL. */
static sq_status prune_tensor(const run *r, const sq_gguf_tensor *t, bool *drop, char **renamed, sq_error *err)
{
    *drop = false;
    *renamed = NULL;
    size_t at = 0, len = 0;
    const int64_t l = r->pruned ? layer_of(t->name, &at, &len) : -1;
    if (l < 0) return SQ_OK;
    if (l < r->n_layer && r->pruned[l]) {
        *drop = true;
        return SQ_OK;
    }
    const int64_t nl = l - pruned_below(r, l);
    if (nl == l) return SQ_OK;
    const size_t n = strlen(t->name) + 24;
    char *s = malloc(n);
    if (!s) return sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory", t->name);
    snprintf(s, n, "%.*s%lld%s", (int)at, t->name, (long long)nl, t->name + at + len);
    *renamed = s;
    return SQ_OK;
}

/* An integer hyperparameter ARCH.suffix, or def when absent. */
static int64_t hparam(const sq_gguf *g, const char *arch, const char *suffix, int64_t def)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = def;
    if (sq_gguf_find_key(g, key) < 0) return def;
    sq_error e = {0};
    if (sq_gguf_get_i64(g, key, &v, &e) != SQ_OK) return def;
    return v;
}

/* Validates one SmarterQuant request against its tensor (spec section 3) and
 * resolves the types really used; fills the plan entry. */
static sq_status plan_sq(run *r, tplan *tp, const sq_quantize_sqtensor *q, sq_error *err)
{
    const char *name = tp->t->name;
    const int64_t C = tp->C;
    if (sq_ggml_n_dims(tp->t->ne) < 2)
        return sq_error_set(err, SQ_EINVAL, "tensor %s: a SmarterQuant tensor must be a matrix (this one is 1-D)", name);
    int used[4];
    for (int k = 0; k < 4; k++) {
        const sq_type_info *ti = sq_type_info_get(q->types[k]);
        if (!ti)
            return sq_error_set(err, SQ_EINVAL, "tensor %s: block type id %d (position %d) is unknown or removed", name,
                                q->types[k], k);
        if (!ti->is_weight)
            return sq_error_set(err, SQ_EINVAL, "tensor %s: block type %s (%d, position %d) is not usable for weights",
                                name, ti->name, q->types[k], k);
        used[k] = q->types[k];
    }
    const int64_t nseg = sq_n_segments(C);
    for (int64_t s = 0; s < nseg; s++) {
        const int slot = s < 3 ? (int)s : 3;
        const int64_t len = sq_segment_len(C, s);
        const sq_type_info *ti = sq_type_info_get(used[slot]);
        if (len % ti->block_size == 0) continue;
        if (!r->p->sq_auto_fallback)
            return sq_error_set(err, SQ_EINVAL,
                                "tensor %s: block type %s (%d) has blocks of %d columns, which do not divide segment "
                                "%lld of %lld columns (use --sq-auto-fallback to replace it)",
                                name, ti->name, used[slot], ti->block_size, (long long)s, (long long)len);
        int fb = sq_qrules_fallback_type(used[slot]);
        if (fb < 0 || len % sq_type_info_get(fb)->block_size != 0) fb = SQ_TYPE_F16;
        emitf(r, SQ_QEVENT_WARNING, "tensor %s: block type %s does not fit segment %lld of %lld columns: using %s",
              name, ti->name, (long long)s, (long long)len, sq_type_name(fb));
        used[slot] = fb;
    }
    for (int k = 0; k < 4; k++) {
        if (k < nseg && sq_type_info_get(used[k])->needs_imatrix && !tp->imx)
            return sq_error_set(err, SQ_EINVAL, "tensor %s: block type %s (%d) needs an importance matrix (--imatrix)%s",
                                name, sq_type_name(used[k]), used[k],
                                r->im ? ", and the one given has no entry for this tensor" : "");
        if (k < nseg && !sq_blocks_can_quantize(used[k]))
            return sq_error_set(err, SQ_EUNSUPPORTED, "tensor %s: quantizing to block type %s is not supported by this build",
                                name, sq_type_name(used[k]));
    }
    if (q->perm && q->perm_len > 0) {
        sq_status st = sq_perm_validate(q->perm, q->perm_len, C, err);
        if (st != SQ_OK) {
            sq_error_prefix(err, "tensor %s", name);
            return st;
        }
        tp->perm = q->perm;
    } else if (q->perm_len != 0) {
        return sq_error_set(err, SQ_EINVAL, "tensor %s: permutation of %lld entries without data", name,
                            (long long)q->perm_len);
    }
    size_t rb = 0;
    sq_status st = sq_mixed_row_bytes(used, C, &rb, err);
    if (st != SQ_OK) {
        sq_error_prefix(err, "tensor %s", name);
        return st;
    }
    tp->pub.smarterquant = true;
    memcpy(tp->pub.sq_types, used, sizeof used);
    tp->pub.sq_permuted = tp->perm != NULL;
    tp->pub.out_type = used[3];
    tp->pub.quantize = true;
    tp->out_row_bytes = rb;
    return SQ_OK;
}

static bool is_token_embd(const char *name)
{
    return strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0;
}

/* Builds and validates the plan of every tensor. Nothing is written. */
static sq_status make_plan(run *r, sq_quantize_stats *stats, sq_error *err)
{
    const sq_quantize_params *p = r->p;
    sq_status st = SQ_OK;
    const int64_t n_in = sq_gguf_n_tensors(r->in);
    r->tp = calloc((size_t)(n_in ? n_in : 1), sizeof *r->tp);
    r->by_in = calloc((size_t)(n_in ? n_in : 1), sizeof *r->by_in);
    if (!r->tp || !r->by_in)
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the plan of %lld tensors", (long long)n_in);
    r->n = 0;
    for (int64_t i = 0; i < n_in; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(r->in, i);
        bool drop = false;
        char *renamed = NULL;
        if ((st = prune_tensor(r, t, &drop, &renamed, err)) != SQ_OK) return st;
        if (drop) {
            stats->n_pruned_tensors++;
            continue;
        }
        tplan *tp = &r->tp[r->n++];
        tp->t = t;
        tp->out_name = renamed;
        tp->shard = r->n_files > 1 ? sq_gguf_tensor_shard(r->in, t) : 0;
        tp->C = tp->t->ne[0];
        tp->rows_per_mat = tp->t->ne[1];
        tp->n_mat = tp->t->ne[2] * tp->t->ne[3];
        tp->rows = tp->rows_per_mat * tp->n_mat;
    }
    qsort(r->tp, (size_t)r->n, sizeof *r->tp, r->n_files > 1 ? cmp_tplan_split : cmp_tplan);
    for (int64_t i = 0; i < r->n; i++) r->by_in[sq_gguf_tensor_index(r->in, r->tp[i].t)] = &r->tp[i];

    /* hyperparameters the rules consult (the input's, as llama-quantize: a
     * pruned model keeps its original layer count here) */
    const char *arch = r->arch;
    sq_qrules_model hp = {arch, (int)r->n_layer,
                          (int)hparam(r->in, arch, "attention.head_count", 0),
                          (int)hparam(r->in, arch, "attention.head_count_kv", 0),
                          (int)hparam(r->in, arch, "expert_count", 0)};
    sq_qrules_params rp = {p->ftype, p->copy, p->pure, p->leave_output_tensor, r->im != NULL,
                           p->output_tensor_type, p->token_embedding_type, p->overrides, p->n_overrides};
    const char **names = malloc((size_t)(r->n ? r->n : 1) * sizeof *names);
    if (!names) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    for (int64_t i = 0; i < r->n; i++) names[i] = out_name(&r->tp[i]);
    sq_qrules *rules = NULL;
    st = sq_qrules_create(&rp, &hp, names, r->n, &rules, err);
    free(names);
    if (st != SQ_OK) return st;

    /* SmarterQuant requests must name tensors of the model */
    for (int k = 0; k < p->n_sq_tensors && st == SQ_OK; k++) {
        const char *nm = p->sq_tensors[k].name;
        for (int k2 = 0; k2 < k; k2++)
            if (strcmp(p->sq_tensors[k2].name, nm) == 0)
                st = sq_error_set(err, SQ_EINVAL, "%s: tensor %s is configured twice",
                                  p->sq_config_label ? p->sq_config_label : "SmarterQuant config", nm);
        const sq_gguf_tensor *found = st == SQ_OK ? sq_gguf_find_tensor(r->in, nm) : NULL;
        if (found && !r->by_in[sq_gguf_tensor_index(r->in, found)])
            emitf(r, SQ_QEVENT_WARNING, "%s: tensor %s is in a pruned layer; ignored",
                  p->sq_config_label ? p->sq_config_label : "SmarterQuant config", nm);
        if (st == SQ_OK && !found) {
            if (p->strict)
                st = sq_error_set(err, SQ_ENOTFOUND, "%s: tensor %s is not in the model %s (--strict)",
                                  p->sq_config_label ? p->sq_config_label : "SmarterQuant config", nm,
                                  sq_gguf_path(r->in));
            else
                emitf(r, SQ_QEVENT_WARNING, "%s: tensor %s is not in the model; ignored",
                      p->sq_config_label ? p->sq_config_label : "SmarterQuant config", nm);
        }
    }

    for (int64_t i = 0; i < r->n && st == SQ_OK; i++) {
        tplan *tp = &r->tp[i];
        const sq_gguf_tensor *t = tp->t;
        sq_quantize_tensor_plan *pub = &tp->pub;
        pub->name = out_name(tp);
        pub->index = (int)i + 1;
        pub->count = (int)r->n;
        pub->n_dims = t->n_dims;
        memcpy(pub->ne, t->ne, sizeof pub->ne);
        pub->in_type = t->type;
        pub->in_bytes = t->nbytes;
        pub->fallback_from = -1;
        tp->in_sq = t->smarterquant;
        pub->in_smarterquant = t->smarterquant;

        sq_qchoice ch;
        st = sq_qrules_choose(rules, out_name(tp), t->ne, t->type, &ch, err);
        if (st != SQ_OK) break;

        /* importance weights of this tensor, if the file has them */
        if (r->im) {
            int64_t n = 0;
            const float *v = imatrix_of(r, t->name, &n);
            if (v && n == tp->C * tp->n_mat) tp->imx = v;
            else if (v && !is_token_embd(t->name))
                st = sq_error_set(err, SQ_EINVAL, "imatrix %s: entry %s has %lld values, but the tensor needs %lld",
                                  p->imatrix_path, t->name, (long long)n, (long long)(tp->C * tp->n_mat));
            if (st != SQ_OK) break;
        }

        const sq_quantize_sqtensor *q = NULL;
        for (int k = 0; k < p->n_sq_tensors; k++)
            if (strcmp(p->sq_tensors[k].name, t->name) == 0) q = &p->sq_tensors[k];

        if (q) {
            st = plan_sq(r, tp, q, err);
            if (st != SQ_OK) {
                /* the request came from the config file: say which */
                sq_error_prefix(err, "%s", p->sq_config_label ? p->sq_config_label : "SmarterQuant config");
                break;
            }
        } else if (tp->in_sq && (!p->allow_requantize || !ch.quantizable)) {
            /* a SmarterQuant input tensor is kept as it is (with its metadata) unless
             * requantizing is allowed and the rules would quantize it (not COPY,
             * not --leave-output-tensor's output.weight) */
            pub->out_type = t->type;
            pub->smarterquant = true;
            memcpy(pub->sq_types, t->sq.types, sizeof pub->sq_types);
            pub->sq_permuted = t->sq.perm != NULL;
            pub->quantize = false;
        } else {
            pub->out_type = ch.type;
            pub->fallback = ch.fallback;
            pub->fallback_from = ch.fallback_from;
            pub->quantize = tp->in_sq || ch.type != t->type;
            if (pub->quantize) {
                const sq_type_info *oti = sq_type_info_get(ch.type);
                if (!oti || tp->C % oti->block_size != 0) {
                    st = sq_error_set(err, SQ_EINVAL, "tensor %s: %lld columns do not fit type %s", t->name,
                                      (long long)tp->C, sq_type_name(ch.type));
                    break;
                }
                tp->out_row_bytes = sq_row_size(ch.type, tp->C);
                if (ch.requires_imatrix && !tp->imx) {
                    st = sq_error_set(err, SQ_EINVAL,
                                      "tensor %s: type %s needs an importance matrix%s (llama-quantize refuses it too)",
                                      t->name, sq_type_name(ch.type),
                                      r->im ? ", and the one given has no entry for it" : "; give one with --imatrix");
                    break;
                }
                if (!sq_blocks_can_quantize(ch.type)) {
                    st = sq_error_set(err, SQ_EUNSUPPORTED,
                                      "tensor %s: quantizing to type %s is not supported by this build", t->name,
                                      sq_type_name(ch.type));
                    break;
                }
            }
        }
        if (pub->quantize) {
            const sq_type_info *iti = sq_type_info_get(t->type);
            if (!iti) {
                st = sq_error_set(err, SQ_EUNSUPPORTED, "tensor %s: input type %d is unknown", t->name, t->type);
                break;
            }
            if (iti->is_quantized && !p->allow_requantize) {
                st = sq_error_set(err, SQ_EINVAL,
                                  "tensor %s: requantizing from type %s is disabled (use --allow-requantize)", t->name,
                                  iti->name);
                break;
            }
            if (iti->is_quantized && !sq_blocks_can_dequantize(t->type)) {
                st = sq_error_set(err, SQ_EUNSUPPORTED,
                                  "tensor %s: dequantizing type %s is not supported by this build", t->name, iti->name);
                break;
            }
            if (t->type != SQ_TYPE_F32 && t->type != SQ_TYPE_F16 && t->type != SQ_TYPE_BF16 && !iti->is_quantized) {
                st = sq_error_set(err, SQ_EUNSUPPORTED, "tensor %s: cannot convert from type %s", t->name, iti->name);
                break;
            }
            pub->out_bytes = (uint64_t)tp->out_row_bytes * (uint64_t)tp->rows;
            pub->has_imatrix = tp->imx != NULL;
            stats->n_quantized++;
        } else {
            pub->out_bytes = t->nbytes;
        }
        if (pub->fallback) stats->n_fallback++;
        if (pub->smarterquant) stats->n_smarterquant++;
        stats->n_tensors++;
        stats->in_bytes += pub->in_bytes;
        stats->out_bytes += pub->out_bytes;
        stats->n_elements += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    sq_qrules_free(rules);
    return st;
}

/* ------------------------------------------------------------------ */
/* per-tensor work                                                      */
/* ------------------------------------------------------------------ */

typedef struct job {
    const tplan *tp;
    const void *in;    /* input bytes */
    float *f32;        /* rows x C floats, original column order */
    void *out;         /* output bytes */
    float *imx_perm;   /* permuted importance (n_mat x C) for SmarterQuant, or NULL */
    float *scratch;    /* n_threads x C */
    sq_weight in_w;    /* view of a SmarterQuant input */
    sq_status *st;     /* per thread */
    sq_error *errs;    /* per thread */
} job;

static void run_parallel(run *r, void (*fn)(void *, int, int), void *ctx)
{
    if (r->pool) sq_threadpool_run(r->pool, fn, ctx);
    else fn(ctx, 0, 1);
}

/* Input rows [r0, r1) to f32, in the original column order. */
static void convert_rows(void *ctx, int ith, int nth)
{
    job *j = ctx;
    const tplan *tp = j->tp;
    const int64_t C = tp->C, r0 = tp->rows * ith / nth, r1 = tp->rows * (ith + 1) / nth;
    const int type = tp->t->type;
    if (tp->in_sq) {
        for (int64_t r = r0; r < r1; r++) sq_weight_get_row(&j->in_w, r, j->f32 + r * C);
        return;
    }
    if (type == SQ_TYPE_F32) {
        memcpy(j->f32 + r0 * C, (const float *)j->in + r0 * C, (size_t)((r1 - r0) * C) * sizeof(float));
        return;
    }
    /* F16, BF16 and block types: the blocks module's to_float (SIMD where it has it) */
    const size_t rb = sq_row_size(type, C);
    sq_dequantize_row(type, (const char *)j->in + (size_t)r0 * rb, j->f32 + r0 * C, (r1 - r0) * C);
}

/* Output rows [r0, r1): plain rows through ggml's quantizer with their
 * matrix's importance; SmarterQuant rows gathered through the permutation and
 * packed segment by segment. */
static void quantize_rows(void *ctx, int ith, int nth)
{
    job *j = ctx;
    const tplan *tp = j->tp;
    const int64_t C = tp->C, r0 = tp->rows * ith / nth, r1 = tp->rows * (ith + 1) / nth;
    const size_t rb = tp->out_row_bytes;
    sq_status st = SQ_OK;
    if (tp->pub.smarterquant) {
        float *row = j->scratch + (size_t)ith * (size_t)C;
        for (int64_t r = r0; r < r1 && st == SQ_OK; r++) {
            const float *src = j->f32 + r * C;
            if (tp->perm) sq_perm_gather(tp->perm, C, src, row);
            else memcpy(row, src, (size_t)C * sizeof(float));
            const float *imp = j->imx_perm ? j->imx_perm + (r / tp->rows_per_mat) * C : NULL;
            st = sq_pack_row(tp->pub.sq_types, C, row, imp, (char *)j->out + r * rb, &j->errs[ith]);
        }
    } else {
        int64_t r = r0;
        while (r < r1 && st == SQ_OK) {
            /* a run of rows inside one matrix (experts have their own importance) */
            const int64_t mat = r / tp->rows_per_mat;
            const int64_t end = (mat + 1) * tp->rows_per_mat < r1 ? (mat + 1) * tp->rows_per_mat : r1;
            const float *imp = tp->imx ? tp->imx + mat * C : NULL;
            st = sq_quantize_rows(tp->pub.out_type, j->f32 + r * C, (char *)j->out + r * rb, end - r, C, imp,
                                  &j->errs[ith]);
            r = end;
        }
    }
    j->st[ith] = st;
}

/* Tells the kernel a written tensor's input pages are not needed any more
 * (the reader's map is read-only and file-backed: a later access would read
 * them again), so the resident set stays near one tensor, not the model, as
 * llama-quantize's unmapping does. Only whole pages inside the tensor. */
static void release_input(const void *data, uint64_t nbytes)
{
    const long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || nbytes < (uint64_t)pg) return;
    const uintptr_t a = ((uintptr_t)data + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    const uintptr_t b = ((uintptr_t)data + (uintptr_t)nbytes) & ~((uintptr_t)pg - 1);
    if (b > a) (void)madvise((void *)a, (size_t)(b - a), MADV_DONTNEED);
}

/* Grows a reusable buffer to at least n bytes. */
static void *grow(void **buf, size_t *cap, size_t n)
{
    if (n <= *cap) return *buf;
    sq_aligned_free(*buf);
    *buf = sq_aligned_alloc(n);
    *cap = *buf ? n : 0;
    return *buf;
}

/* ------------------------------------------------------------------ */
/* output                                                               */
/* ------------------------------------------------------------------ */

/* Removes a key from the output if it is there. */
static sq_status unset(sq_gguf_writer *w, const char *key, sq_error *err)
{
    sq_error e2 = {0};
    sq_status st = sq_gguf_writer_remove_key(w, key, &e2);
    if (st == SQ_ENOTFOUND) return SQ_OK;
    if (st != SQ_OK && err) *err = e2;
    return st;
}

static sq_status remove_if_present(run *r, sq_gguf_writer *w, const char *key, sq_error *err)
{
    if (sq_gguf_find_key(r->in, key) < 0) return SQ_OK;
    return sq_gguf_writer_remove_key(w, key, err);
}

/* The SmarterQuant metadata of an output tensor, under its output name: its
 * permutation (the new one, or the input's when the tensor is copied) and
 * the segment types really used. */
static sq_status put_sq_keys(sq_gguf_writer *w, const tplan *tp, sq_error *err)
{
    sq_gguf_sqmeta m = {.perm = tp->pub.quantize ? tp->perm : tp->t->sq.perm, .n_cols = tp->C};
    memcpy(m.types, tp->pub.sq_types, sizeof m.types);
    return sq_gguf_writer_set_sqmeta(w, out_name(tp), &m, err);
}

/* split.no / split.count / split.tensors.count of output file k (types as
 * llama.cpp writes them: u16, u16, i32), moved to the end. */
static sq_status put_split_keys(const run *r, sq_gguf_writer *w, int k, sq_error *err)
{
    sq_status st = unset(w, SQ_GGUF_KEY_SPLIT_NO, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u16(w, SQ_GGUF_KEY_SPLIT_NO, (uint16_t)k, err);
    if (st == SQ_OK) st = unset(w, SQ_GGUF_KEY_SPLIT_COUNT, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u16(w, SQ_GGUF_KEY_SPLIT_COUNT, (uint16_t)r->n_files, err);
    if (st == SQ_OK) st = unset(w, SQ_GGUF_KEY_SPLIT_TENSORS, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_i32(w, SQ_GGUF_KEY_SPLIT_TENSORS, (int32_t)r->n, err);
    return st;
}

/* After --prune-layers: ARCH.block_count becomes the layers left (set as
 * llama-quantize does: u32, moved to the end), and every ARCH.* array of
 * numbers with one entry per layer (per-layer head counts, feed-forward
 * sizes ...) loses the entries of the pruned layers, in place. */
static sq_status write_pruned_counts(run *r, sq_gguf_writer *w, sq_error *err)
{
    char key[160];
    snprintf(key, sizeof key, "%s.block_count", r->arch);
    sq_status st = unset(w, key, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u32(w, key, (uint32_t)(r->n_layer - r->n_pruned), err);
    const size_t alen = strlen(r->arch);
    for (int64_t i = 0; i < sq_gguf_n_kv(r->in) && st == SQ_OK; i++) {
        const char *k = sq_gguf_key(r->in, i);
        const size_t es = sq_gguf_type_size(sq_gguf_arr_type(r->in, i));
        if (sq_gguf_kv_type(r->in, i) != SQ_GGUF_ARRAY || strncmp(k, r->arch, alen) != 0 || k[alen] != '.' || !es ||
            sq_gguf_arr_n(r->in, i) != (uint64_t)r->n_layer)
            continue;
        const unsigned char *src = sq_gguf_arr_data(r->in, i);
        unsigned char *dst = malloc((size_t)r->n_layer * es);
        if (!dst) return sq_error_set(err, SQ_ENOMEM, "out of memory");
        int64_t n = 0;
        for (int64_t l = 0; l < r->n_layer; l++)
            if (!r->pruned[l]) memcpy(dst + (size_t)(n++) * es, src + (size_t)l * es, es);
        st = sq_gguf_writer_set_arr(w, k, sq_gguf_arr_type(r->in, i), dst, (uint64_t)n, err);
        free(dst);
    }
    return st;
}

/* Metadata as llama-quantize writes it: the input's keys, the split keys
 * dropped, quantization_version and file_type set (in that order, at the
 * end), the imatrix provenance keys; plus SmarterQuant's three keys per
 * tensor (and the keys of SmarterQuant inputs that become plain removed);
 * after --prune-layers the new layer count; with several output files the
 * split keys. This is the first (or only) output file's metadata. */
static sq_status write_metadata(run *r, sq_gguf_writer *w, sq_error *err)
{
    const sq_quantize_params *p = r->p;
    sq_status st = sq_gguf_writer_copy_kvs(w, r->in, err);
    static const char *const drop[] = {"split.no", "split.count", "split.tensors.count"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0] && st == SQ_OK; i++) st = remove_if_present(r, w, drop[i], err);
    uint32_t ftype = (uint32_t)p->ftype;
    if (p->copy) {
        int64_t v = 0;
        sq_error e2 = {0};
        ftype = 0;
        if (sq_gguf_find_key(r->in, "general.file_type") >= 0 &&
            sq_gguf_get_i64(r->in, "general.file_type", &v, &e2) == SQ_OK && v >= 0)
            ftype = (uint32_t)v;
    }
    /* ggml's gguf setters move a key to the end: remove, then set */
    if (st == SQ_OK) st = unset(w, "general.quantization_version", err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u32(w, "general.quantization_version", 2, err);
    if (st == SQ_OK) st = unset(w, "general.file_type", err);
    if (st == SQ_OK) st = sq_gguf_writer_set_u32(w, "general.file_type", ftype, err);
    /* the user's overrides, then the imatrix provenance (llama-quantize's order) */
    for (int i = 0; i < p->n_kv_overrides && st == SQ_OK; i++) {
        const sq_kv_override *o = &p->kv_overrides[i];
        st = unset(w, o->key, err);
        if (st != SQ_OK) break;
        switch (o->kind) {
        case SQ_KV_INT: st = sq_gguf_writer_set_u32(w, o->key, (uint32_t)(o->i < 0 ? -o->i : o->i), err); break;
        case SQ_KV_FLOAT: st = sq_gguf_writer_set_f32(w, o->key, (float)o->f, err); break;
        case SQ_KV_BOOL: st = sq_gguf_writer_set_bool(w, o->key, o->b, err); break;
        case SQ_KV_STR: st = sq_gguf_writer_set_str(w, o->key, o->s ? o->s : "", err); break;
        }
    }
    if (st == SQ_OK && r->im) {
        char v[128];
        snprintf(v, sizeof v, "%s", p->imatrix_path);
        if ((st = unset(w, "quantize.imatrix.file", err)) == SQ_OK)
            st = sq_gguf_writer_set_str(w, "quantize.imatrix.file", v, err);
        if (st == SQ_OK && sq_imatrix_n_datasets(r->im) > 0) {
            snprintf(v, sizeof v, "%s", sq_imatrix_dataset(r->im, 0));
            if ((st = unset(w, "quantize.imatrix.dataset", err)) == SQ_OK)
                st = sq_gguf_writer_set_str(w, "quantize.imatrix.dataset", v, err);
        }
        if (st == SQ_OK && (st = unset(w, "quantize.imatrix.entries_count", err)) == SQ_OK)
            st = sq_gguf_writer_set_u32(w, "quantize.imatrix.entries_count", (uint32_t)r->im_entries, err);
        if (st == SQ_OK && sq_imatrix_chunk_count(r->im) > 0 &&
            (st = unset(w, "quantize.imatrix.chunks_count", err)) == SQ_OK)
            st = sq_gguf_writer_set_u32(w, "quantize.imatrix.chunks_count", (uint32_t)sq_imatrix_chunk_count(r->im),
                                        err);
    }
    if (st == SQ_OK && r->pruned) st = write_pruned_counts(r, w, err);
    /* SmarterQuant keys: first drop those of input tensors that are gone,
     * renamed or no longer SmarterQuant, then write those of every output
     * SmarterQuant tensor that the copied keys do not already describe (a
     * tensor copied as it is keeps its keys' bytes) */
    for (int64_t i = 0; i < sq_gguf_n_tensors(r->in) && st == SQ_OK; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(r->in, i);
        const tplan *tp = r->by_in[i];
        if (!t->smarterquant || (tp && tp->pub.smarterquant && !tp->out_name)) continue;
        st = sq_gguf_writer_remove_sqmeta(w, t->name, err);
    }
    for (int64_t i = 0; i < r->n && st == SQ_OK; i++) {
        const tplan *tp = &r->tp[i];
        if (tp->pub.smarterquant &&
            (tp->pub.quantize || tp->out_name || !sq_gguf_writer_has_sqmeta(w, out_name(tp))))
            st = put_sq_keys(w, tp, err);
    }
    if (st == SQ_OK && r->n_files > 1) st = put_split_keys(r, w, 0, err);
    return st;
}

/* Converts and writes every tensor in plan order. */
static sq_status write_tensors(run *r, sq_gguf_writer **ws, sq_error *err)
{
    sq_status st = SQ_OK;
    void *f32 = NULL, *out = NULL, *imxp = NULL, *scratch = NULL;
    size_t f32_cap = 0, out_cap = 0, imxp_cap = 0, scratch_cap = 0;
    const int nth = r->n_threads;
    sq_status *tst = calloc((size_t)nth, sizeof *tst);
    sq_error *terr = calloc((size_t)nth, sizeof *terr);
    if (!tst || !terr) st = sq_error_set(err, SQ_ENOMEM, "out of memory");

    for (int64_t i = 0; i < r->n && st == SQ_OK; i++) {
        tplan *tp = &r->tp[i];
        sq_gguf_writer *w = ws[tp->shard];
        const double t0 = sq_time_now();
        if (!tp->pub.quantize) {
            st = sq_gguf_writer_write(w, tp->t->data, (size_t)tp->t->nbytes, err);
        } else {
            job j = {.tp = tp, .in = tp->t->data, .st = tst, .errs = terr};
            const size_t nel = (size_t)(tp->rows * tp->C);
            if (tp->t->type == SQ_TYPE_F32 && !tp->in_sq) {
                j.f32 = (float *)tp->t->data; /* already floats, in the map */
            } else if (!(j.f32 = grow(&f32, &f32_cap, nel * sizeof(float)))) {
                st = sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory for %zu floats", tp->t->name, nel);
                break;
            }
            if (!(j.out = grow(&out, &out_cap, (size_t)tp->pub.out_bytes ? (size_t)tp->pub.out_bytes : 1))) {
                st = sq_error_set(err, SQ_ENOMEM, "tensor %s: out of memory for %llu bytes", tp->t->name,
                                  (unsigned long long)tp->pub.out_bytes);
                break;
            }
            if (tp->in_sq) {
                st = sq_weight_mixed(&j.in_w, tp->t->data, tp->t->sq.types, tp->t->sq.perm, tp->rows, tp->C, err);
                if (st != SQ_OK) break;
            }
            if (j.f32 != tp->t->data) run_parallel(r, convert_rows, &j);
            if (tp->pub.smarterquant) {
                if (!(j.scratch = grow(&scratch, &scratch_cap, (size_t)nth * (size_t)tp->C * sizeof(float)))) {
                    st = sq_error_set(err, SQ_ENOMEM, "out of memory");
                    break;
                }
                if (tp->imx) {
                    if (!(j.imx_perm = grow(&imxp, &imxp_cap, (size_t)(tp->n_mat * tp->C) * sizeof(float)))) {
                        st = sq_error_set(err, SQ_ENOMEM, "out of memory");
                        break;
                    }
                    /* importance follows its columns: entry j of the permuted row is perm[j]'s */
                    for (int64_t m = 0; m < tp->n_mat; m++) {
                        if (tp->perm) sq_perm_gather(tp->perm, tp->C, tp->imx + m * tp->C, j.imx_perm + m * tp->C);
                        else memcpy(j.imx_perm + m * tp->C, tp->imx + m * tp->C, (size_t)tp->C * sizeof(float));
                    }
                }
            }
            for (int k = 0; k < nth; k++) tst[k] = SQ_OK;
            run_parallel(r, quantize_rows, &j);
            for (int k = 0; k < nth && st == SQ_OK; k++)
                if (tst[k] != SQ_OK) {
                    st = sq_error_set(err, tst[k], "tensor %s: %s", tp->t->name, terr[k].msg);
                }
            if (st == SQ_OK) st = sq_gguf_writer_write(w, j.out, (size_t)tp->pub.out_bytes, err);
        }
        tp->pub.seconds = sq_time_now() - t0;
        if (st == SQ_OK) release_input(tp->t->data, tp->t->nbytes);
        if (st == SQ_OK) emit(r, SQ_QEVENT_TENSOR, NULL, &tp->pub);
    }
    sq_aligned_free(f32);
    sq_aligned_free(out);
    sq_aligned_free(imxp);
    sq_aligned_free(scratch);
    free(tst);
    free(terr);
    return st;
}

/* Output file k > 0 of a --keep-split run: the split keys (the model's
 * metadata is in the first file only, as llama.cpp's shards have it), plus
 * the SmarterQuant keys of its own SmarterQuant tensors, so that every shard
 * is a valid file on its own. */
static sq_status write_shard_metadata(run *r, sq_gguf_writer *w, int k, sq_error *err)
{
    sq_status st = put_split_keys(r, w, k, err);
    for (int64_t i = 0; i < r->n && st == SQ_OK; i++)
        if (r->tp[i].shard == k && r->tp[i].pub.smarterquant) st = put_sq_keys(w, &r->tp[i], err);
    return st;
}

size_t sq_quantize_out_path(char *buf, size_t size, const char *out_path, int i, int n_files)
{
    if (n_files <= 1) return (size_t)snprintf(buf, size, "%s", out_path);
    size_t n = strlen(out_path);
    if (n > 5 && strcmp(out_path + n - 5, ".gguf") == 0) n -= 5;
    return (size_t)snprintf(buf, size, "%.*s-%05d-of-%05d.gguf", (int)n, out_path, i + 1, n_files);
}

/* The names of the output files; none may be a file of the input (a shard)
 * or the importance matrix. */
static sq_status make_out_paths(run *r, const char *out_path, char ***out, sq_error *err)
{
    char **paths = calloc((size_t)r->n_files, sizeof *paths);
    if (!paths) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    *out = paths;
    for (int k = 0; k < r->n_files; k++) {
        const size_t n = sq_quantize_out_path(NULL, 0, out_path, k, r->n_files) + 1;
        if (!(paths[k] = malloc(n))) return sq_error_set(err, SQ_ENOMEM, "out of memory");
        sq_quantize_out_path(paths[k], n, out_path, k, r->n_files);
        for (int j = 0; j < sq_gguf_n_shards(r->in); j++) {
            const char *in = sq_gguf_path(sq_gguf_shard(r->in, j));
            if (strcmp(in, paths[k]) == 0 || sq_gguf_same_file(in, paths[k]))
                return sq_error_set(err, SQ_EINVAL, "%s: the output file must differ from the input %s (it would replace it)",
                                    paths[k], in);
        }
        if (r->p->imatrix_path && sq_gguf_same_file(r->p->imatrix_path, paths[k]))
            return sq_error_set(err, SQ_EINVAL, "%s: the output file must differ from the imatrix %s (it would replace it)",
                                paths[k], r->p->imatrix_path);
    }
    return SQ_OK;
}

/* The architecture and layer count, and the --prune-layers set checked
 * against the model: every layer must exist, and one must be left. */
static sq_status read_model_facts(run *r, sq_error *err)
{
    const sq_quantize_params *p = r->p;
    snprintf(r->arch, sizeof r->arch, "llama");
    sq_gguf_str s;
    sq_error e2 = {0};
    if (sq_gguf_find_key(r->in, "general.architecture") >= 0 &&
        sq_gguf_get_str(r->in, "general.architecture", &s, &e2) == SQ_OK)
        snprintf(r->arch, sizeof r->arch, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);
    r->n_layer = hparam(r->in, r->arch, "block_count", 0);
    if (p->n_prune_layers <= 0) return SQ_OK;
    const char *path = sq_gguf_path(r->in);
    if (r->n_layer <= 0)
        return sq_error_set(err, SQ_EINVAL, "%s: --prune-layers needs the layer count, but key %s.block_count is missing",
                            path, r->arch);
    if (r->n_layer > 1000000)
        return sq_error_set(err, SQ_EFORMAT, "%s: key %s.block_count is %lld, not a layer count", path, r->arch,
                            (long long)r->n_layer);
    if (!(r->pruned = calloc((size_t)r->n_layer, 1))) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    for (int i = 0; i < p->n_prune_layers; i++) {
        const int l = p->prune_layers[i];
        if (l < 0 || l >= r->n_layer)
            return sq_error_set(err, SQ_EINVAL, "%s: --prune-layers: layer %d does not exist (the model has layers 0 to %lld)",
                                path, l, (long long)r->n_layer - 1);
        r->n_pruned += !r->pruned[l];
        r->pruned[l] = 1;
    }
    if (r->n_pruned >= r->n_layer)
        return sq_error_set(err, SQ_EINVAL, "%s: --prune-layers would remove all %lld layers", path,
                            (long long)r->n_layer);
    return SQ_OK;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

sq_status sq_quantize_file(const char *in_path, const char *out_path, const sq_quantize_params *p,
                           sq_quantize_stats *stats, sq_error *err)
{
    sq_quantize_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    const double t_start = sq_time_now();
    if (!p->dry_run && (!out_path || !*out_path)) return sq_error_set(err, SQ_EINVAL, "no output file given");
    if (!p->copy && !sq_ftype_get(p->ftype)) return sq_error_set(err, SQ_EINVAL, "unknown file type %d", p->ftype);
    if (!p->dry_run && (strcmp(in_path, out_path) == 0 || sq_gguf_same_file(in_path, out_path)))
        return sq_error_set(err, SQ_EINVAL, "%s: the output file must differ from the input %s (it would replace it)",
                            out_path, in_path);

    run r = {.p = p};
    char **out_paths = NULL;
    sq_status st = sq_gguf_open_model(in_path, &r.in, err);
    if (st != SQ_OK) return st;
    r.n_files = p->keep_split ? sq_gguf_n_shards(r.in) : 1;
    stats->n_files = r.n_files;
    if ((st = read_model_facts(&r, err)) == SQ_OK && !p->dry_run) st = make_out_paths(&r, out_path, &out_paths, err);
    if (st == SQ_OK && p->imatrix_path) {
        st = sq_imatrix_load(p->imatrix_path, &r.im, err);
        for (int64_t i = 0; st == SQ_OK && i < sq_imatrix_n_entries(r.im); i++)
            r.im_entries += imatrix_allowed(p, sq_imatrix_entry_name(r.im, i));
        if (st == SQ_OK && r.im_entries == 0) {
            emitf(&r, SQ_QEVENT_WARNING, "imatrix %s: no entries left after --include/--exclude-weights; not used",
                  p->imatrix_path);
            sq_imatrix_free(r.im);
            r.im = NULL;
        } else if (st == SQ_OK) {
            char ds[256] = "";
            for (int64_t i = 0; i < sq_imatrix_n_datasets(r.im) && strlen(ds) < 200; i++)
                snprintf(ds + strlen(ds), sizeof ds - strlen(ds), "%s'%s'", i ? ", " : "", sq_imatrix_dataset(r.im, i));
            emitf(&r, SQ_QEVENT_INFO, "imatrix: %lld entries from %s (datasets [%s], %lld chunks)",
                  (long long)r.im_entries, p->imatrix_path, ds, (long long)sq_imatrix_chunk_count(r.im));
        }
    }
    if (st == SQ_OK) st = make_plan(&r, stats, err);

    if (st == SQ_OK && p->dry_run) {
        for (int64_t i = 0; i < r.n; i++) emit(&r, SQ_QEVENT_TENSOR, NULL, &r.tp[i].pub);
    } else if (st == SQ_OK) {
        r.n_threads = p->n_threads > 0 ? p->n_threads : default_threads();
        if (r.n_threads > 1) r.pool = sq_threadpool_create(r.n_threads);
        if (!r.pool) r.n_threads = 1;
        sq_gguf_writer **w = calloc((size_t)r.n_files, sizeof *w);
        if (st == SQ_OK && !w) st = sq_error_set(err, SQ_ENOMEM, "out of memory");
        for (int k = 0; k < r.n_files && st == SQ_OK; k++) {
            st = sq_gguf_writer_open(out_paths[k], &w[k], err);
            if (st == SQ_OK) st = k == 0 ? write_metadata(&r, w[0], err) : write_shard_metadata(&r, w[k], k, err);
        }
        for (int64_t i = 0; i < r.n && st == SQ_OK; i++) {
            const tplan *tp = &r.tp[i];
            st = sq_gguf_writer_add_tensor(w[tp->shard], out_name(tp), tp->t->n_dims, tp->t->ne, tp->pub.out_type,
                                           tp->pub.out_bytes, err);
        }
        if (st == SQ_OK) st = write_tensors(&r, w, err);
        if (st == SQ_OK) {
            st = sq_gguf_writer_finish_all(w, r.n_files, err);
        } else {
            for (int k = 0; w && k < r.n_files; k++) sq_gguf_writer_abort(w[k]);
        }
        free(w);
        if (r.pool) sq_threadpool_free(r.pool);
    }
    stats->seconds = sq_time_now() - t_start;
    for (int64_t i = 0; r.tp && i < r.n; i++) free(r.tp[i].out_name);
    for (int k = 0; out_paths && k < r.n_files; k++) free(out_paths[k]);
    free(out_paths);
    free(r.by_in);
    free(r.pruned);
    free(r.tp);
    sq_imatrix_free(r.im);
    sq_gguf_close(r.in);
    return st;
}
