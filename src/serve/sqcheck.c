/*
 * sqcheck.c — a SmarterQuant configuration met at inference time (spec
 * section 5): the file's metadata is the truth. This compares each entry of
 * the configuration with the metadata of its tensor and lists, as warnings,
 * every disagreement (the metadata wins), every configured tensor that has
 * no SmarterQuant metadata (its data is stored as a plain tensor, so the
 * configuration cannot describe it: it is not applied) and every key that
 * names no tensor.
 */
#include <string.h>

#include "sq/gguf.h"
#include "sq/serve.h"

int sq_serve_check_config(const sq_gguf *g, const sq_config *cfg, sq_warnings *w)
{
    int conflicts = 0;
    const char *file = sq_config_filename(cfg);
    for (int64_t i = 0; i < sq_config_count(cfg); i++) {
        const sq_config_entry *e = sq_config_entry_at(cfg, i);
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, e->name);
        if (!t) {
            sq_warnings_add(w, "%s: tensor '%s' is not in the model: entry ignored", file, e->name);
            continue;
        }
        if (!t->smarterquant) {
            if (e->enabled) {
                sq_warnings_add(w,
                                "%s: tensor '%s' has no SmarterQuant metadata; its data is stored as a plain %s "
                                "tensor, so the configuration cannot be applied to it: entry ignored",
                                file, e->name, sq_type_name(t->type));
                conflicts++;
            }
            continue;
        }
        char mt[64], ct[64];
        sq_format_types_json(t->sq.types, mt, sizeof mt);
        if (!e->enabled) {
            sq_warnings_add(w, "%s: tensor '%s' is not SmarterQuant in the configuration but its metadata says %s: "
                               "the metadata wins", file, e->name, mt);
            conflicts++;
            continue;
        }
        sq_format_types_json(e->types, ct, sizeof ct);
        if (memcmp(t->sq.types, e->types, sizeof e->types) != 0) {
            sq_warnings_add(w, "%s: tensor '%s': configuration types %s differ from the metadata's %s: the metadata wins",
                            file, e->name, ct, mt);
            conflicts++;
        }
        /* the reader checked the metadata permutation at open: ne[0] entries or none */
        const int64_t n = t->sq.perm ? t->sq.n_cols : 0;
        if (n != e->perm_len || (n && memcmp(t->sq.perm, e->perm, (size_t)n * sizeof *e->perm) != 0)) {
            sq_warnings_add(w,
                            "%s: tensor '%s': the configuration permutation (%lld entries) differs from the "
                            "metadata's (%lld entries): the metadata wins",
                            file, e->name, (long long)e->perm_len, (long long)n);
            conflicts++;
        }
    }
    return conflicts;
}
