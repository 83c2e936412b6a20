/*
 * sq/sqconfig.h — the SmarterQuant configuration file (spec sections 2 and 3)
 * and the small JSON integer arrays of the GGUF metadata (section 5).
 *
 * A configuration is a JSON object: tensor name -> [types, perm], with //
 * and block comments and trailing commas allowed. Parsing checks the shape
 * of the file and the type ids; sq_config_validate() then checks it against
 * a model (tensor names, column counts, block sizes, importance matrices)
 * and resolves the types really used (automatic fallback).
 *
 * The library never prints: warnings are returned in an sq_warnings list,
 * errors in an sq_error whose message names the file, the tensor and the reason.
 */
#ifndef SQ_SQCONFIG_H
#define SQ_SQCONFIG_H

#include "sq/base.h"
#include "sq/gguf.h"
#include "sq/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SQ_CONFIG_DEFAULT_NAME "default.smarterquant.json"

/* A growable list of warning messages (owned strings). Zero-initialise;
 * sq_warnings_free() releases the strings and leaves an empty list. */
typedef struct sq_warnings {
    char **items;
    size_t count, cap;
} sq_warnings;

void sq_warnings_free(sq_warnings *w);
/* Appends a printf-formatted message; a NULL list is a no-op. */
sq_status sq_warnings_add(sq_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One tensor of the configuration. Owned by its sq_config. */
typedef struct sq_config_entry {
    const char *name;   /* tensor name, exactly as in the file */
    int line, column;   /* position of the key in the file (1-based), 0 if unknown */
    bool enabled;       /* false: types empty or not four entries (the tensor stays ordinary) */
    int n_types;        /* entries of types in the file (4 when enabled; 1-3 or 5+ are an error when strict) */
    int types[4];       /* the type ids as written (valid when enabled) */
    int types_used[4];  /* after sq_config_validate(): the types really used (fallbacks applied) */
    const int32_t *perm; /* NULL for [] */
    int64_t perm_len;   /* 0 for [] */
} sq_config_entry;

typedef struct sq_config sq_config; /* opaque */

/* Parses configuration text (len bytes, need not be NUL-terminated). filename
 * is used in messages only (NULL: "<config>"). Syntax errors read
 * "FILE:LINE:COLUMN: reason"; content errors name the tensor. Tensors whose
 * types are empty or not four entries produce a warning and an entry with
 * enabled == false. Types may be ids or names ("q4_K", case-insensitive); ids
 * that are unknown, removed (4, 5, 31-33, 36-38) or not weight types (q8_1,
 * q8_K, i8..i64, f64) are errors. *out is NULL on failure. */
sq_status sq_config_parse(const char *text, size_t len, const char *filename, sq_config **out,
                          sq_warnings *warnings, sq_error *err);
/* Reads and parses a file. A missing file is SQ_ENOTFOUND. */
sq_status sq_config_load(const char *path, sq_config **out, sq_warnings *warnings, sq_error *err);
/* Frees the configuration; NULL is a no-op. */
void sq_config_free(sq_config *cfg);

/* Entries in file order. */
int64_t sq_config_count(const sq_config *cfg);
const sq_config_entry *sq_config_entry_at(const sq_config *cfg, int64_t i);
/* The entry for a tensor name, or NULL. */
const sq_config_entry *sq_config_find(const sq_config *cfg, const char *name);
/* The file name given at parse time. */
const char *sq_config_filename(const sq_config *cfg);

/* One tensor of the model to validate against. */
typedef struct sq_config_tensor {
    const char *name;
    int64_t cols;       /* ne[0] */
    int64_t rows;       /* ne[1]*ne[2]*ne[3] */
    bool has_imatrix;   /* importance weights are available for it */
} sq_config_tensor;

typedef struct sq_config_options {
    bool strict;        /* a key naming no tensor, and types of 1-3 or 5+ entries, are errors, not warnings */
    bool auto_fallback; /* a type whose blocks do not fit the final segment is replaced (with a warning) */
} sq_config_options;

/* Checks every entry against the model (spec section 3), in file order; stops
 * at the first error, whose message names the tensor and the reason:
 * unknown tensor (warning unless strict), types of 1-3 or 5+ entries (an
 * error when strict; the parser warned already otherwise), block size not dividing a segment
 * (unless auto_fallback: then types_used gets llama.cpp's fallback for that
 * type — Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K/IQ*->IQ4_NL,
 * TQ*->Q4_0, others->Q4_0 if it fits, F16 when nothing else fits — and a
 * warning says so), a type that needs an importance matrix without one, and a
 * permutation of the wrong length, with a duplicate or an index out of range.
 * On success every enabled entry's types_used is set. opt may be NULL. */
sq_status sq_config_validate(sq_config *cfg, const sq_config_tensor *tensors, int64_t n_tensors,
                             const sq_config_options *opt, sq_warnings *warnings, sq_error *err);

/* What --strict refuses without a model: an entry whose types has 1-3 or
 * 5+ entries (sq_config_validate does the same check when strict). Returns
 * the first one's error naming the file, position and tensor. */
sq_status sq_config_check_strict(const sq_config *cfg, sq_error *err);

/* The type llama.cpp falls back to when `type`'s blocks do not divide a
 * segment of len columns: the table above, then F16 if that still does not
 * fit. Returns `type` itself when it fits. */
int sq_config_fallback_type(int type, int64_t len);

/* The JSON text of the metadata values (sq_parse_int_array_json,
 * sq_format_int_array_json, sq_format_types_json) is in sq/gguf.h, with the
 * rest of the SmarterQuant metadata. */

#ifdef __cplusplus
}
#endif
#endif /* SQ_SQCONFIG_H */
