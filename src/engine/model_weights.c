/*
 * model_weights.c — looking up and substituting the weight views a model's
 * forward pass multiplies (sq_model_weight / sq_model_set_weight in
 * sq/engine.h). The planner's calibration (src/plan/plan_calib.c) uses it
 * to run the model with one tensor replaced by a quantized version of itself,
 * without writing a file. Kept apart from model.c and forward.c: it only
 * reads and rewrites the sq_weight views the loader built.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "sq/blocks.h"

/* The view slot(s) holding GGUF tensor `name`: *a, and *b for the output
 * projection when it is the tied token_embd. *shared is the layer's gathered
 * permutation the view takes its input through (q/k/v, gate/up), if any.
 * Returns false when name is not one of the model's weights. */
static bool find_slots(sq_model *m, const char *name, sq_weight **a, sq_weight **b, const int32_t **shared)
{
    *a = *b = NULL;
    *shared = NULL;
    if (strcmp(name, "token_embd.weight") == 0) {
        *a = &m->tok_embd;
        if (m->hp.tied_output) *b = &m->output;
        return true;
    }
    if (strcmp(name, "output.weight") == 0) {
        if (m->hp.tied_output) return false;
        *a = &m->output;
        return true;
    }
    long long l = -1;
    int pos = 0;
    if (sscanf(name, "blk.%lld.%n", &l, &pos) != 1 || pos == 0 || l < 0 || l >= m->hp.n_layer) return false;
    sq__layer *L = &m->layers[l];
    static const char *const names[12] = {"attn_q.weight",        "attn_k.weight",        "attn_v.weight",
                                          "attn_qkv.weight",      "attn_output.weight",   "ffn_gate.weight",
                                          "ffn_up.weight",        "ffn_down.weight",      "ffn_gate_inp.weight",
                                          "ffn_gate_exps.weight", "ffn_up_exps.weight",   "ffn_down_exps.weight"};
    sq_weight *views[12] = {&L->wq,   &L->wk,     &L->wv,     &L->wqkv,      &L->wo,      &L->gate,
                            &L->up,   &L->down,   &L->router, &L->gate_exps, &L->up_exps, &L->down_exps};
    const int32_t *perms[12] = {L->qkv_perm, L->qkv_perm, L->qkv_perm, NULL, NULL, L->gu_perm,
                                L->gu_perm,  NULL,        NULL,        NULL, NULL, NULL};
    for (int i = 0; i < 12; i++)
        if (strcmp(name + pos, names[i]) == 0 && views[i]->data) {
            *a = views[i];
            *shared = perms[i];
            return true;
        }
    return false;
}

const sq_weight *sq_model_weight(const sq_model *m, const char *name)
{
    sq_weight *a, *b;
    const int32_t *shared;
    if (!m || !name || !find_slots((sq_model *)m, name, &a, &b, &shared)) return NULL;
    return a;
}

/* Replaces the view after checking that the forward pass can use it: same
 * shape, kernels for every type it holds, and no shared gathered input (the
 * views of such a layer expect input already permuted, which a replacement
 * would silently misread). */
sq_status sq_model_set_weight(sq_model *m, const char *name, const sq_weight *w, sq_error *err)
{
    if (!m || !name || !w) return sq_error_set(err, SQ_EINVAL, "sq_model_set_weight: no model, name or view");
    sq_weight *a, *b;
    const int32_t *shared;
    if (!find_slots(m, name, &a, &b, &shared))
        return sq_error_set(err, SQ_ENOTFOUND, "'%s' is not a weight the model multiplies or looks up", name);
    if (shared)
        return sq_error_set(err, SQ_EUNSUPPORTED,
                            "tensor '%s': the model gathers its input once through a shared permutation; its view "
                            "cannot be replaced",
                            name);
    if (w->rows != a->rows || w->cols != a->cols)
        return sq_error_set(err, SQ_EINVAL, "tensor '%s': replacement is %lld x %lld, the weight %lld x %lld", name,
                            (long long)w->cols, (long long)w->rows, (long long)a->cols, (long long)a->rows);
    bool need_dot = a != &m->tok_embd || b != NULL;
    for (int s = 0; s < (w->mixed ? 4 : 1); s++) {
        int t = w->mixed ? w->types[s] : w->type;
        bool ok = need_dot ? sq_blocks_can_dot(t) : sq_blocks_can_dequantize(t);
        if (!ok)
            return sq_error_set(err, SQ_EUNSUPPORTED, "tensor '%s': replacement type %s is not supported by this build",
                                name, sq_type_name(t));
    }
    if (!w->data) return sq_error_set(err, SQ_EINVAL, "tensor '%s': replacement has no data", name);
    *a = *w;
    if (b) *b = *w;
    return SQ_OK;
}
