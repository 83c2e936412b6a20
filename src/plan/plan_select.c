/*
 * plan_select.c — what the planner plans: the candidate types (by default
 * every weight type of the type table this build can quantize and multiply),
 * the tensors (what llama-quantize would quantize, 2-D and 3-D expert
 * tensors), the sizes of the tensors not planned and of the header, the
 * groups of tensors that read one input, each slot's candidates, and the
 * types llama.cpp's rules give every planned tensor for a file type (the
 * prior's mix, plan_prior.c).
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_internal.h"
#include "sq/blocks.h"
#include "sq/quantize.h"
#include "sq/sqconfig.h"
#include "sq/types.h"

static uint64_t align_up(uint64_t v, uint64_t a) { return a ? (v + a - 1) / a * a : v; }

/* Whether the planner offers type by default: a block-quantized weight type
 * the build can quantize and the engine can multiply (SmarterQuant segments
 * are multiplied segment by segment). The 16- and 32-bit float types can be
 * asked for with --types; by default the steps up to them are too coarse for
 * a budget of a quantized file. */
static bool usable_type(int type)
{
    const sq_type_info *ti = sq_type_info_get(type);
    return ti && ti->is_weight && ti->is_quantized && sq_blocks_can_quantize(type) && sq_blocks_can_dot(type);
}

/* Whether llama.cpp (ggml 0.25) knows the type: its ids end at Q2_0; the
 * ids above (ik_llama.cpp's) are ours and ik's only. */
static bool ggml_type(int type) { return type <= SQ_TYPE_Q2_0; }

/* The dearest quantizer, per value, among the usable types llama.cpp knows
 * (sq_blocks_quantize_cost): what measuring ggml's candidates already costs. */
static double ggml_max_quantize_cost(void)
{
    double m = 0.0;
    for (int id = 0; id < SQ_TYPE_COUNT; id++)
        if (usable_type(id) && ggml_type(id) && sq_blocks_quantize_cost(id) > m) m = sq_blocks_quantize_cost(id);
    return m;
}

int sq_plan_default_types(sq_plan_granularity gran, int *types, int cap)
{
    double max_cost = ggml_max_quantize_cost();
    int n = 0;
    for (int id = 0; id < SQ_TYPE_COUNT; id++) {
        if (!usable_type(id)) continue;
        /* a whole-tensor plan is a standard GGUF: llama.cpp's types only.
         * Segment plans take the other types (ik_llama.cpp's) whose quantizer
         * costs per value no more than the dearest of ggml's: a plan
         * quantizes every candidate on every slot, and ik's exhaustive-search
         * and trellis quantizers cost 2-35x that (docs/plan.md) */
        if (!ggml_type(id) && (gran == SQ_PLAN_GRAN_TENSOR || sq_blocks_quantize_cost(id) > max_cost)) continue;
        if (types && n < cap) types[n] = id;
        n++;
    }
    return n;
}

/* The caller's candidate types (checked, deduplicated, in order) or the
 * default list into c->types. A whole-tensor plan (a standard GGUF) keeps
 * only the types llama.cpp knows. So do, by default, segment plans without
 * sensitivities (the prior) or without an importance matrix: without
 * importance weights ggml's K-quants quantize about 4x faster while ik's
 * types do not, and the prior measures few candidates per tensor, so ik's
 * would multiply those plans' measuring 4-9x (docs/plan.md). */
sq_status sq__plan_candidate_types(sq__pctx *c, sq_error *err)
{
    const sq_plan_params *p = c->p;
    bool whole = p->granularity == SQ_PLAN_GRAN_TENSOR;
    c->default_types = !(p->types && p->n_types > 0);
    if (c->default_types) {
        bool ik = !whole && p->n_weights > 0 && c->im;
        int n = sq_plan_default_types(ik ? SQ_PLAN_GRAN_SEGMENT : SQ_PLAN_GRAN_TENSOR, c->types, SQ__PLAN_MAX_CAND);
        c->n_types = n < SQ__PLAN_MAX_CAND ? n : SQ__PLAN_MAX_CAND;
        return SQ_OK;
    }
    c->n_types = 0;
    for (int i = 0; i < p->n_types; i++) {
        int t = p->types[i];
        const sq_type_info *ti = sq_type_info_get(t);
        if (!ti || !ti->is_weight)
            return sq_error_set(err, SQ_EINVAL, "candidate type id %d is %s", t,
                                ti ? "not usable for weights" : "unknown or removed");
        if (!sq_blocks_can_quantize(t) || !sq_blocks_can_dot(t))
            return sq_error_set(err, SQ_EUNSUPPORTED, "candidate type %s cannot be %s by this build", sq_type_name(t),
                                sq_blocks_can_quantize(t) ? "multiplied" : "quantized");
        if (whole && !ggml_type(t))
            return sq_error_set(err, SQ_EINVAL, "candidate type %s is not one llama.cpp knows (granularity tensor "
                                "makes a standard GGUF)", sq_type_name(t));
        bool dup = false;
        for (int j = 0; j < c->n_types; j++) dup |= c->types[j] == t;
        if (dup) continue;
        if (c->n_types == SQ__PLAN_MAX_CAND)
            return sq_error_set(err, SQ_EINVAL, "more than %d candidate types", SQ__PLAN_MAX_CAND);
        c->types[c->n_types++] = t;
    }
    return SQ_OK;
}

/* Bytes one slot of a tensor takes in type, or 0 when the type's blocks do
 * not divide every segment of the slot. */
static uint64_t slot_bytes(const sq__ptensor *pt, int s, int type)
{
    int64_t s_end = s < 3 ? s + 1 : pt->n_seg;
    uint64_t bytes = 0;
    for (int64_t seg = s; seg < s_end; seg++) {
        size_t rs = sq_row_size(type, sq_segment_len(pt->cols, seg));
        if (rs == 0) return 0;
        bytes += rs;
    }
    return bytes * (uint64_t)pt->rows;
}

/* Adds type to every slot it fits (once); the prior's mix type is always a
 * candidate, so the mix is a plan the allocation can reach. */
void sq__plan_add_candidate(sq__ptensor *pt, int type)
{
    for (int s = 0; s < pt->n_slots; s++) {
        uint64_t b = slot_bytes(pt, s, type);
        bool have = false;
        for (int k = 0; k < pt->n_cand[s]; k++) have |= pt->cand[s][k] == type;
        if (b == 0 || have || pt->n_cand[s] == SQ__PLAN_MAX_CAND) continue;
        pt->cand[s][pt->n_cand[s]] = type;
        pt->cbytes[s][pt->n_cand[s]] = b;
        pt->n_cand[s]++;
    }
}

/* The candidate list of each slot of a tensor: the types whose blocks divide
 * every segment of the slot and that do not need an importance matrix the
 * tensor lacks. With the default list and no activation costs known, the
 * 32-column quantized types serve only slots holding a short segment: on
 * whole 256-column segments their q8_0 activations are their advantage, which
 * only measured activation costs can weigh (docs/plan.md). */
static void set_candidates(sq__ptensor *pt, const sq__pctx *c, bool have_act)
{
    for (int s = 0; s < pt->n_slots; s++) {
        pt->n_cand[s] = 0;
        int64_t s_end = s < 3 ? s + 1 : pt->n_seg;
        bool whole = sq_segment_len(pt->cols, s_end - 1) == SQ_SEGMENT;
        for (int i = 0; i < c->n_types && pt->n_cand[s] < SQ__PLAN_MAX_CAND; i++) {
            const sq_type_info *ti = sq_type_info_get(c->types[i]);
            if (ti->needs_imatrix && !pt->qimp) continue;
            if (c->default_types && !have_act && ti->is_quantized && ti->block_size < SQ_SEGMENT && whole) continue;
            uint64_t b = slot_bytes(pt, s, c->types[i]);
            if (b == 0) continue;
            pt->cand[s][pt->n_cand[s]] = c->types[i];
            pt->cbytes[s][pt->n_cand[s]] = b;
            pt->n_cand[s]++;
        }
    }
}

static int order_cmp_ctx_idx(const void *a, const void *b, void *ctx)
{
    const sq_gguf *g = ctx;
    int64_t ia = *(const int64_t *)a, ib = *(const int64_t *)b;
    int cmp = sq_tensor_order_cmp(sq_gguf_tensor_at(g, ia)->name, sq_gguf_tensor_at(g, ib)->name);
    if (cmp) return cmp;
    return ia < ib ? -1 : ia > ib;
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

/* llama.cpp's rules for the model and a file type: its hyperparameters and
 * every tensor name; *order gets the tensors in llama.cpp's order (the rules'
 * counters advance in it), *names the names by index (both kept when they are
 * given already, from an earlier call). */
static sq_status rules_for(const sq__pctx *c, int ftype, bool copy, sq_qrules **rules, int64_t **order,
                           const char ***names, sq_error *err)
{
    const sq_gguf *model = c->model;
    int64_t nt = sq_gguf_n_tensors(model);
    *rules = NULL;
    if (!*order) {
        *order = malloc((size_t)(nt > 0 ? nt : 1) * sizeof **order);
        *names = malloc((size_t)(nt > 0 ? nt : 1) * sizeof **names);
        if (!*order || !*names) return sq_error_set(err, SQ_ENOMEM, "out of memory for the quantization rules");
        for (int64_t i = 0; i < nt; i++) {
            (*names)[i] = sq_gguf_tensor_at(model, i)->name;
            (*order)[i] = i;
        }
        qsort_r(*order, (size_t)nt, sizeof **order, order_cmp_ctx_idx, (void *)model);
    }
    char arch[64];
    gguf_str_copy(model, "general.architecture", arch, sizeof arch);
    sq_qrules_model qm = {.arch = arch[0] ? arch : "llama",
                          .n_layer = get_int_key(model, arch, "block_count"),
                          .n_head = get_int_key(model, arch, "attention.head_count"),
                          .n_head_kv = get_int_key(model, arch, "attention.head_count_kv"),
                          .n_expert = get_int_key(model, arch, "expert_count")};
    sq_qrules_params qp = {.ftype = ftype, .copy = copy, .has_imatrix = c->im != NULL, .output_tensor_type = -1,
                           .token_embedding_type = -1};
    return sq_qrules_create(&qp, &qm, *names, nt, rules, err);
}

/* Fills a planned tensor's shape, data, importance and candidates from its
 * GGUF entry; *ok false (and a warning added) when it cannot be planned. */
static sq_status init_tensor(sq__pctx *c, const sq_gguf_tensor *gt, sq__ptensor *pt, bool have_act, bool *ok,
                             sq_error *err)
{
    sq_plan *plan = c->plan;
    *ok = false;
    memset(pt, 0, sizeof *pt);
    pt->data = gt->data;
    pt->in_type = gt->type;
    pt->cols = gt->ne[0];
    pt->mat_rows = gt->ne[1];
    pt->n_mat = gt->ne[2];
    pt->rows = pt->mat_rows * pt->n_mat;
    pt->n_seg = sq_n_segments(pt->cols);
    pt->n_slots = pt->n_seg < 4 ? (int)pt->n_seg : 4;
    pt->n_units = pt->n_slots;
    pt->prior_type = -1;
    pt->weight = 1.0;
    if (gt->smarterquant) return sq__plan_warn(plan, "%s: already a SmarterQuant tensor, not planned", gt->name);
    const sq_type_info *in = sq_type_info_get(gt->type);
    if (in && in->is_quantized)
        return sq__plan_warn(plan, "%s: already quantized (%s), not planned (sq quantize requantizes it only with "
                             "--allow-requantize, by --base-ftype's rules)", gt->name, sq_type_name(gt->type));
    if (!sq_blocks_can_dequantize(gt->type) || sq_row_size(gt->type, pt->cols) == 0)
        return sq__plan_warn(plan, "%s: weights of type %s cannot be read, not planned", gt->name, sq_type_name(gt->type));
    if (c->im) {
        int64_t n_imp = 0;
        const float *imp = sq_imatrix_find(c->im, gt->name, &n_imp);
        if (imp && n_imp != pt->cols * pt->n_mat)
            return sq_error_set(err, SQ_EFORMAT, "importance matrix entry %s has %lld values, the tensor needs %lld",
                                gt->name, (long long)n_imp, (long long)(pt->cols * pt->n_mat));
        pt->qimp = imp;
    }
    set_candidates(pt, c, have_act);
    for (int s = 0; s < pt->n_slots; s++)
        if (pt->n_cand[s] == 0)
            return sq__plan_warn(plan, "%s: no candidate type fits its %lld columns, not planned", gt->name,
                                 (long long)pt->cols);
    *ok = true;
    return SQ_OK;
}

/* Whether the caller's sensitivities carry activation costs (then the
 * 32-column types compete on whole segments too). */
static bool have_act_costs(const sq_plan_params *p)
{
    for (int w = 0; w < p->n_weights; w++)
        if (p->weights[w].act_q8_K > 0 || p->weights[w].act_q8_0 > 0) return true;
    return false;
}

/* The planned tensors (model order) into plan->pt / names. */
static sq_status choose_planned(sq__pctx *c, sq_qrules *rules, const int64_t *order, bool *planned, sq_error *err)
{
    const sq_gguf *model = c->model;
    const sq_plan_params *p = c->p;
    sq_plan *plan = c->plan;
    int64_t nt = sq_gguf_n_tensors(model);
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
    bool have_act = have_act_costs(p);
    sq_status st = SQ_OK;
    /* llama.cpp's order: the rules' counters need it; the plan keeps model order */
    bool *quantizable = calloc((size_t)(nt > 0 ? nt : 1), sizeof *quantizable);
    if (!quantizable) st = sq_error_set(err, SQ_ENOMEM, "out of memory selecting tensors");
    for (int64_t oi = 0; st == SQ_OK && oi < nt; oi++) {
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(model, order[oi]);
        sq_qchoice ch;
        /* a tensor the rules refuse is not planned (sizing the others reports why) */
        bool q = sq_qrules_choose(rules, gt->name, gt->ne, gt->type, &ch, NULL) == SQ_OK && ch.quantizable;
        /* matrices and stacks of matrices (3-D expert tensors) */
        int nd = sq_ggml_n_dims(gt->ne);
        quantizable[order[oi]] = q && (nd == 2 || nd == 3) && gt->ne[3] == 1;
    }
    for (int64_t i = 0; st == SQ_OK && i < nt; i++) {
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(model, i);
        c->n_elements += gt->ne[0] * gt->ne[1] * gt->ne[2] * gt->ne[3];
        if (!quantizable[i] || (have_re && regexec(&re, gt->name, 0, NULL, 0) != 0)) continue;
        bool ok = false;
        st = init_tensor(c, gt, &plan->pt[plan->n], have_act, &ok, err);
        if (st != SQ_OK || !ok) continue;
        plan->names[plan->n] = strdup(gt->name);
        if (!plan->names[plan->n]) st = sq_error_set(err, SQ_ENOMEM, "out of memory selecting tensors");
        else planned[i] = true, plan->n++;
    }
    free(quantizable);
    if (st == SQ_OK && plan->n == 0)
        st = sq_error_set(err, SQ_EINVAL, "no tensor to plan%s%s%s", have_re ? " (--tensors '" : "",
                          have_re ? p->tensors : "", have_re ? "' matches no quantizable weight)" : "");
    if (have_re) regfree(&re);
    return st;
}

/* Chooses the planned tensors, sizes the others with llama.cpp's rules for
 * the base file type, and estimates the file header (c->fixed_data,
 * c->n_elements, c->header). */
sq_status sq__plan_select(sq__pctx *c, sq_error *err)
{
    const sq_gguf *model = c->model;
    const sq_plan_params *p = c->p;
    sq_plan *plan = c->plan;
    int64_t nt = sq_gguf_n_tensors(model);
    uint64_t A = sq_gguf_alignment(model);
    const sq_ftype_info *fi = sq_ftype_parse(p->base_ftype ? p->base_ftype : "Q4_K_M");
    if (!fi) return sq_error_set(err, SQ_EINVAL, "unknown base file type '%s'", p->base_ftype);
    plan->pt = calloc((size_t)(nt > 0 ? nt : 1), sizeof *plan->pt);
    plan->names = calloc((size_t)(nt > 0 ? nt : 1), sizeof *plan->names);
    bool *planned = calloc((size_t)(nt > 0 ? nt : 1), sizeof *planned);
    if (!plan->pt || !plan->names || !planned) {
        free(planned);
        return sq_error_set(err, SQ_ENOMEM, "out of memory selecting tensors");
    }
    sq_qrules *rules = NULL;
    int64_t *order = NULL;
    const char **names = NULL;
    sq_status st = rules_for(c, fi->ftype, fi->copy, &rules, &order, &names, err);
    if (st == SQ_OK) st = choose_planned(c, rules, order, planned, err);
    /* a fresh rule set: the counters start again */
    sq_qrules_free(rules);
    rules = NULL;
    /* the size of every other tensor, as sq quantize will write it */
    if (st == SQ_OK) st = rules_for(c, fi->ftype, fi->copy, &rules, &order, &names, err);
    for (int64_t oi = 0; st == SQ_OK && oi < nt; oi++) {
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(model, order[oi]);
        sq_qchoice ch;
        st = sq_qrules_choose(rules, gt->name, gt->ne, gt->type, &ch, err);
        if (st != SQ_OK || planned[order[oi]]) continue;
        uint64_t bytes = gt->nbytes;
        if (ch.quantizable && ch.type != gt->type)
            bytes = (uint64_t)sq_row_size(ch.type, gt->ne[0]) * (uint64_t)(gt->ne[1] * gt->ne[2] * gt->ne[3]);
        c->fixed_data += align_up(bytes, A);
    }
    /* header: the input's, plus the keys sq quantize adds (quantization
     * version, file type, a generous allowance for the imatrix keys) */
    c->header = sq_gguf_data_offset(model);
    if (sq_gguf_find_key(model, "general.quantization_version") < 0) c->header += 8 + 28 + 4 + 4;
    if (sq_gguf_find_key(model, "general.file_type") < 0) c->header += 8 + 17 + 4 + 4;
    if (c->im) c->header += 1024;
    sq_qrules_free(rules);
    free(order);
    free(names);
    free(planned);
    return st;
}

/* The types llama.cpp's rules give every planned tensor for file type ftype
 * (types[t], plan order) and their data bytes in all (*bytes). Errors: the
 * rules fail for the model. A type a tensor's segments cannot hold is -1
 * (and counts its original size). */
sq_status sq__plan_mix_types(const sq__pctx *c, int ftype, int *types, uint64_t *bytes, sq_error *err)
{
    const sq_plan *plan = c->plan;
    int64_t nt = sq_gguf_n_tensors(c->model);
    sq_qrules *rules = NULL;
    int64_t *order = NULL;
    const char **names = NULL;
    sq_status st = rules_for(c, ftype, false, &rules, &order, &names, err);
    *bytes = 0;
    int64_t t = 0;
    int *by_index = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *by_index);
    if (st == SQ_OK && !by_index) st = sq_error_set(err, SQ_ENOMEM, "out of memory for a mix");
    for (int64_t oi = 0; st == SQ_OK && oi < nt; oi++) {
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(c->model, order[oi]);
        sq_qchoice ch;
        st = sq_qrules_choose(rules, gt->name, gt->ne, gt->type, &ch, err);
        by_index[order[oi]] = ch.quantizable ? ch.type : gt->type;
    }
    /* the planned tensors are in model order: walk the model's indices */
    for (int64_t i = 0; st == SQ_OK && i < nt && t < plan->n; i++) {
        const sq_gguf_tensor *gt = sq_gguf_tensor_at(c->model, i);
        if (strcmp(gt->name, plan->names[t]) != 0) continue;
        const sq__ptensor *pt = &plan->pt[t];
        size_t rs = sq_row_size(by_index[i], pt->cols);
        types[t] = rs ? by_index[i] : -1;
        *bytes += rs ? (uint64_t)rs * (uint64_t)pt->rows : gt->nbytes;
        t++;
    }
    free(by_index);
    sq_qrules_free(rules);
    free(order);
    free(names);
    return st;
}

/* The name of the input a tensor reads, for grouping: "blk.N.attn_in" for
 * attn_q/k/v, "blk.N.ffn_in" for ffn_gate/up, "blk.N.ffn_exps_in" for the
 * experts' gate and up; otherwise the name itself. */
static void input_key(const char *name, char *buf, size_t n)
{
    static const struct { const char *suffix, *key; } shared[] = {
        {".attn_q.weight", ".attn_in"},          {".attn_k.weight", ".attn_in"},
        {".attn_v.weight", ".attn_in"},          {".ffn_gate.weight", ".ffn_in"},
        {".ffn_up.weight", ".ffn_in"},           {".ffn_gate_exps.weight", ".ffn_exps_in"},
        {".ffn_up_exps.weight", ".ffn_exps_in"}, {".ffn_gate_shexp.weight", ".ffn_shexp_in"},
        {".ffn_up_shexp.weight", ".ffn_shexp_in"},
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

/* Groups planned tensors by the input they read (unless no_share): same
 * input, same number of columns, at most 8 members. */
sq_status sq__plan_groups(sq__pctx *c, sq_error *err)
{
    sq_plan *plan = c->plan;
    plan->groups = calloc(plan->n > 0 ? (size_t)plan->n : 1, sizeof *plan->groups);
    if (!plan->groups) return sq_error_set(err, SQ_ENOMEM, "out of memory for groups");
    for (int64_t t = 0; t < plan->n; t++) {
        char key[512], other[512];
        input_key(plan->names[t], key, sizeof key);
        int found = -1;
        if (!c->p->no_share && c->p->granularity != SQ_PLAN_GRAN_TENSOR)
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

/* What a permutation adds to a tensor's SmarterQuant keys over "[]" (its
 * JSON string), as the GGUF layer, which writes the keys, counts it. */
uint64_t sq__plan_perm_bytes(const char *name, int64_t cols, const int32_t *perm)
{
    if (!perm) return 0;
    const sq_gguf_sqmeta with = {{0, 0, 0, 0}, perm, cols}, without = {{0, 0, 0, 0}, NULL, cols};
    return sq_gguf_sqmeta_kv_bytes(name, &with) - sq_gguf_sqmeta_kv_bytes(name, &without);
}

/* The SmarterQuant keys' bytes for a tensor of `cols` columns (spec section
 * 5), asked of the GGUF layer (sq_gguf_sqmeta_kv_bytes). perm NULL: "[]";
 * types NULL: the most any four types can take. */
uint64_t sq__plan_sq_keys_bytes(const char *name, int64_t cols, const int32_t *perm, const int types[4])
{
    if (!types) return sq_gguf_sqmeta_kv_bytes(name, NULL) + sq__plan_perm_bytes(name, cols, perm);
    const sq_gguf_sqmeta m = {{types[0], types[1], types[2], types[3]}, perm, cols};
    return sq_gguf_sqmeta_kv_bytes(name, &m);
}
