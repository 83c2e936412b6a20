/*
 * sqcheck.c — a SmarterQuant configuration met at inference time (spec
 * section 5): the file's metadata is the truth. This compares each entry of
 * the configuration with the metadata of its tensor and lists, as warnings,
 * every disagreement (the metadata wins), every configured tensor that has
 * no SmarterQuant metadata (its data is stored as a plain tensor, so the
 * configuration cannot describe it: it is not applied) and every key that
 * names no tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/gguf.h"
#include "sq/serve.h"

/* The tensor's metadata permutation as a malloc'd array (*n elements, NULL
 * for none or when unreadable: *bad says so). */
static int32_t *meta_perm(const sq_gguf *g, const char *name, int64_t *n, bool *bad)
{
    char key[512];
    snprintf(key, sizeof key, "%s.smarterquant.permutation", name);
    *n = 0;
    *bad = false;
    sq_gguf_str s;
    if (sq_gguf_get_str(g, key, &s, NULL) != SQ_OK) return NULL;
    int64_t count = 0;
    if (sq_parse_int_array_json(s.ptr, s.len, NULL, 0, &count, NULL) != SQ_OK) {
        *bad = true;
        return NULL;
    }
    if (count == 0) return NULL;
    int32_t *p = malloc((size_t)count * sizeof *p);
    if (!p || sq_parse_int_array_json(s.ptr, s.len, p, count, &count, NULL) != SQ_OK) {
        free(p);
        *bad = true;
        return NULL;
    }
    *n = count;
    return p;
}

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
        sq_format_types_json(t->sq_types, mt, sizeof mt);
        if (!e->enabled) {
            sq_warnings_add(w, "%s: tensor '%s' is not SmarterQuant in the configuration but its metadata says %s: "
                               "the metadata wins", file, e->name, mt);
            conflicts++;
            continue;
        }
        sq_format_types_json(e->types, ct, sizeof ct);
        if (memcmp(t->sq_types, e->types, sizeof e->types) != 0) {
            sq_warnings_add(w, "%s: tensor '%s': configuration types %s differ from the metadata's %s: the metadata wins",
                            file, e->name, ct, mt);
            conflicts++;
        }
        int64_t n = 0;
        bool bad = false;
        int32_t *perm = meta_perm(g, e->name, &n, &bad);
        if (bad) {
            sq_warnings_add(w, "%s: tensor '%s': the metadata permutation cannot be read: not compared", file, e->name);
        } else if (n != e->perm_len || (n && memcmp(perm, e->perm, (size_t)n * sizeof *perm) != 0)) {
            sq_warnings_add(w,
                            "%s: tensor '%s': the configuration permutation (%lld entries) differs from the "
                            "metadata's (%lld entries): the metadata wins",
                            file, e->name, (long long)e->perm_len, (long long)n);
            conflicts++;
        }
        free(perm);
    }
    return conflicts;
}
