/*
 * fuzz_sqconfig.c — the SmarterQuant configuration reader (relaxed JSON,
 * comments, trailing commas), its validation against a small fake model with
 * every option combination, and the strict metadata integer-array reader with
 * its writer (round trip).
 *
 * Invariants checked beyond "no crash": a failed parse leaves *out NULL and a
 * message; a successful validation yields types_used that fit the tensor; a
 * parsed integer array formats back to text that parses to the same values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sq/sqconfig.h"

static const sq_config_tensor model[] = {
    { "blk.0.attn_q.weight", 512, 8, true },
    { "blk.0.ffn_down.weight", 1728, 4, false },
    { "t", 4, 2, false },
    { "w600", 600, 3, true },
    { "x", 100, 1, false },
};

static void fuzz_int_array(const uint8_t *data, size_t size)
{
    int32_t vals[64];
    int64_t n = 0;
    sq_error e = { 0 };
    if (sq_parse_int_array_json((const char *)data, size, vals, 64, &n, &e) != SQ_OK) {
        if (e.msg[0] == '\0') abort();
        return;
    }
    char buf[64 * 12 + 4];
    size_t len = sq_format_int_array_json(vals, n, buf, sizeof buf);
    if (len >= sizeof buf) abort();
    int32_t back[64];
    int64_t m = 0;
    if (sq_parse_int_array_json(buf, len, back, 64, &m, &e) != SQ_OK || m != n ||
        memcmp(vals, back, (size_t)n * sizeof *vals) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_int_array(data, size);
    sq_config *cfg = (sq_config *)&model; /* must be reset to NULL on failure */
    sq_warnings w = { 0 };
    sq_error e = { 0 };
    if (sq_config_parse((const char *)data, size, "fuzz.json", &cfg, &w, &e) != SQ_OK) {
        if (cfg != NULL || e.msg[0] == '\0') abort();
        sq_warnings_free(&w);
        return 0;
    }
    for (int opt = 0; opt < 4; opt++) {
        sq_config_options o = { (opt & 1) != 0, (opt & 2) != 0 };
        sq_status st = sq_config_validate(cfg, model, (int64_t)(sizeof model / sizeof model[0]), &o, &w, &e);
        if (st != SQ_OK) continue;
        for (int64_t i = 0; i < sq_config_count(cfg); i++) {
            const sq_config_entry *en = sq_config_entry_at(cfg, i);
            if (!en->enabled) continue;
            for (size_t k = 0; k < sizeof model / sizeof model[0]; k++) {
                if (strcmp(model[k].name, en->name) != 0) continue;
                size_t rb = 0;
                if (sq_mixed_row_bytes(en->types_used, model[k].cols, &rb, NULL) != SQ_OK) abort();
            }
        }
        if (sq_config_find(cfg, sq_config_entry_at(cfg, 0) ? sq_config_entry_at(cfg, 0)->name : "") !=
            sq_config_entry_at(cfg, 0))
            abort();
    }
    sq_config_free(cfg);
    sq_warnings_free(&w);
    return 0;
}
