/*
 * sq/quantize.h — llama-quantize's file types and per-tensor type rules, and
 * the streaming quantizer (`sq quantize`) with SmarterQuant tensors.
 *
 * Three layers, each usable alone:
 *   1. file types (sq_ftype_*): llama.cpp's llama_ftype values, names and
 *      default ggml types, parsed as llama-quantize parses its TYPE argument;
 *   2. the rules (sq_qrules_*): which ggml type llama.cpp's llama-quant.cpp
 *      gives each tensor of a model for a file type (mixes such as Q4_K_M,
 *      use_more_bits, grouped-query and expert effects, width fallbacks, and
 *      the --pure / --output-tensor-type / --token-embedding-type /
 *      --tensor-type / --leave-output-tensor overrides);
 *   3. the pipeline (sq_quantize_*): plan a whole file (rules + SmarterQuant
 *      tensors), validate everything, then stream IN -> OUT tensor by tensor.
 * The library never prints: progress and warnings go to caller callbacks.
 */
#ifndef SQ_QUANTIZE_H
#define SQ_QUANTIZE_H

#include "sq/base.h"
#include "sq/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* 1. file types                                                        */
/* ------------------------------------------------------------------ */

/* llama.cpp's llama_ftype values (the general.file_type key). */
typedef enum sq_ftype {
    SQ_FTYPE_ALL_F32 = 0,
    SQ_FTYPE_F16 = 1,
    SQ_FTYPE_Q4_0 = 2,
    SQ_FTYPE_Q4_1 = 3,
    SQ_FTYPE_Q8_0 = 7,
    SQ_FTYPE_Q5_0 = 8,
    SQ_FTYPE_Q5_1 = 9,
    SQ_FTYPE_Q2_K = 10,
    SQ_FTYPE_Q3_K_S = 11,
    SQ_FTYPE_Q3_K_M = 12,
    SQ_FTYPE_Q3_K_L = 13,
    SQ_FTYPE_Q4_K_S = 14,
    SQ_FTYPE_Q4_K_M = 15,
    SQ_FTYPE_Q5_K_S = 16,
    SQ_FTYPE_Q5_K_M = 17,
    SQ_FTYPE_Q6_K = 18,
    SQ_FTYPE_IQ2_XXS = 19,
    SQ_FTYPE_IQ2_XS = 20,
    SQ_FTYPE_Q2_K_S = 21,
    SQ_FTYPE_IQ3_XS = 22,
    SQ_FTYPE_IQ3_XXS = 23,
    SQ_FTYPE_IQ1_S = 24,
    SQ_FTYPE_IQ4_NL = 25,
    SQ_FTYPE_IQ3_S = 26,
    SQ_FTYPE_IQ3_M = 27,
    SQ_FTYPE_IQ2_S = 28,
    SQ_FTYPE_IQ2_M = 29,
    SQ_FTYPE_IQ4_XS = 30,
    SQ_FTYPE_IQ1_M = 31,
    SQ_FTYPE_BF16 = 32,
    SQ_FTYPE_TQ1_0 = 36,
    SQ_FTYPE_TQ2_0 = 37,
    SQ_FTYPE_MXFP4_MOE = 38,
    SQ_FTYPE_Q1_0 = 40,
    SQ_FTYPE_Q2_0 = 41
} sq_ftype;

/* One entry of llama-quantize's table of TYPE arguments. */
typedef struct sq_ftype_info {
    const char *name;  /* "Q4_K_M", "COPY", aliases "Q4_K" ... */
    int ftype;         /* llama_ftype value (COPY: 0, with copy = true) */
    int default_type;  /* ggml type most tensors get */
    bool copy;         /* COPY: tensors are copied, never quantized */
    const char *desc;  /* one-line description */
} sq_ftype_info;

/* Parses a TYPE argument as llama-quantize does: a name, case-insensitive
 * ("q4_k_m", "COPY", "Q4_K" = Q4_K_M), or a number ("15"). NULL if unknown. */
const sq_ftype_info *sq_ftype_parse(const char *s);
/* The canonical entry of a llama_ftype value; NULL if unknown. */
const sq_ftype_info *sq_ftype_get(int ftype);
/* The table, for --help: entry i for i < sq_ftype_count(). */
int sq_ftype_count(void);
const sq_ftype_info *sq_ftype_at(int i);
/* Whether this build writes file type fi: COPY always; otherwise every ggml
 * type llama.cpp's rules give the tensors of a real-shaped model (dense,
 * grouped-query, 8 experts; with an importance matrix) has a quantizer here
 * (sq_blocks_can_quantize), so a mix whose default type is present but one
 * of its other types is not is not listed. `sq quantize --help` lists these
 * (src/quantize/ftype_label.c). */
bool sq_ftype_supported(const sq_ftype_info *fi);

/* llama.cpp's display name of a file type ("Q4_K - Medium", "IQ3_S mix -
 * 3.66 bpw"), as llama.cpp prints it in its model line; NULL if unknown. */
const char *sq_ftype_label(int ftype);

typedef struct sq_gguf sq_gguf;
/* The label every tool shows for a model file, in buf (snprintf rules; the
 * length is returned): llama.cpp's name of general.file_type ("Q4_K -
 * Medium"), or "(guessed) NAME" from the most common tensor type when the key
 * is absent (as llama.cpp guesses), then " + SmarterQuant (B bpw)" when the
 * file has SmarterQuant tensors, B = all tensor bytes * 8 / all weights. */
size_t sq_file_type_label(const sq_gguf *g, char *buf, size_t n);

/* ------------------------------------------------------------------ */
/* 2. per-tensor type rules                                             */
/* ------------------------------------------------------------------ */

/* The hyperparameters the rules consult (from the GGUF metadata). */
typedef struct sq_qrules_model {
    const char *arch; /* general.architecture ("llama"); NULL = "llama" */
    int n_layer;      /* ARCH.block_count */
    int n_head;       /* ARCH.attention.head_count */
    int n_head_kv;    /* ARCH.attention.head_count_kv (0: = n_head) */
    int n_expert;     /* ARCH.expert_count (0 if absent) */
} sq_qrules_model;

/* A --tensor-type REGEX=TYPE override. */
typedef struct sq_tensor_type_override {
    const char *pattern; /* POSIX extended regex, searched in the tensor name */
    int type;            /* ggml type id */
} sq_tensor_type_override;

/* What the user asked for (the llama-quantize flags that steer the rules). */
typedef struct sq_qrules_params {
    int ftype;                 /* llama_ftype value */
    bool copy;                 /* COPY: quantize nothing */
    bool pure;                 /* --pure: no mixes, every tensor the default type */
    bool leave_output_tensor;  /* --leave-output-tensor */
    bool has_imatrix;          /* an importance matrix was given */
    int output_tensor_type;    /* --output-tensor-type, or -1 */
    int token_embedding_type;  /* --token-embedding-type, or -1 */
    const sq_tensor_type_override *overrides; /* --tensor-type, in command-line order */
    int n_overrides;
} sq_qrules_params;

/* The decision for one tensor. */
typedef struct sq_qchoice {
    int type;              /* ggml type it is stored as */
    bool quantizable;      /* llama.cpp would quantize it at all (2-D+ "...weight", not a norm, ...) */
    bool overridden;       /* a --tensor-type, --output-tensor-type or --token-embedding-type decided it */
    bool fallback;         /* width not divisible by the block size: fell back */
    int fallback_from;     /* the type it fell back from (when fallback) */
    bool requires_imatrix; /* llama-quantize refuses this without an importance matrix */
} sq_qchoice;

typedef struct sq_qrules sq_qrules; /* opaque: params, compiled regexes, layer counters */

/* Creates the rule state for one model. names: every tensor name of the model
 * (the rules count attn_v tensors and look for output.weight). Errors: a bad
 * regex or override type (message names it), an unknown ftype. */
sq_status sq_qrules_create(const sq_qrules_params *p, const sq_qrules_model *m, const char *const *names,
                           int64_t n_names, sq_qrules **out, sq_error *err);
/* Frees the state; NULL is a no-op. */
void sq_qrules_free(sq_qrules *r);

/* Chooses the type of one tensor. Must be called once per tensor, in the
 * order sq_tensor_order_cmp() gives (the layer counters advance as llama.cpp's
 * do). cur_type: the type it has in the input. ne: its 4 dims (ne[0] = row
 * length). Errors: a width no fallback can serve, a bad layer number. */
sq_status sq_qrules_choose(sq_qrules *r, const char *name, const int64_t ne[4], int cur_type, sq_qchoice *out,
                           sq_error *err);

/* llama.cpp's order of tensors in a quantized file: non-layer tensors first,
 * then by layer number (blk.N.), then by name (strcmp). qsort-style result. */
int sq_tensor_order_cmp(const char *a, const char *b);

/* ggml_n_dims: 1 + the highest dim with ne > 1 (a [512,1] tensor is 1-D). */
int sq_ggml_n_dims(const int64_t ne[4]);

/* The type llama.cpp falls back to when a row of `type` cannot be cut into
 * its blocks (Q4_K -> Q5_0, IQ4_XS -> IQ4_NL, Q2_K -> Q4_0, Q6_K -> Q8_0 ...),
 * or -1 when none is defined. (Not checked against the width.) */
int sq_qrules_fallback_type(int type);

/* ------------------------------------------------------------------ */
/* 3. the pipeline                                                      */
/* ------------------------------------------------------------------ */

/* One SmarterQuant tensor as requested (spec sections 2-3): four type ids and
 * an optional permutation of its columns. */
typedef struct sq_quantize_sqtensor {
    const char *name;
    int types[4];
    const int32_t *perm; /* perm_len entries, or NULL / perm_len 0: none */
    int64_t perm_len;
} sq_quantize_sqtensor;

/* Where a warning or progress event comes from. */
typedef enum sq_quantize_event_kind {
    SQ_QEVENT_WARNING = 0, /* text: a warning to show */
    SQ_QEVENT_INFO = 1,    /* text: an informational line (imatrix loaded, config used ...) */
    SQ_QEVENT_TENSOR = 2   /* tensor: one tensor planned (dry run) or written */
} sq_quantize_event_kind;

/* One tensor of the plan (also what a progress event reports). */
typedef struct sq_quantize_tensor_plan {
    const char *name;
    int index, count;        /* 1-based position and total */
    int n_dims;
    int64_t ne[4];
    int in_type;             /* type in the input (declared type for a SmarterQuant input) */
    bool in_smarterquant;    /* the input tensor is a SmarterQuant tensor */
    int out_type;            /* declared type in the output (types[3] for SmarterQuant) */
    bool quantize;           /* converted (false: bytes copied as they are) */
    bool smarterquant;       /* written as a SmarterQuant tensor */
    int sq_types[4];         /* its segment types as really used (after any fallback) */
    bool sq_permuted;
    bool fallback;           /* plain tensor: width fallback happened */
    int fallback_from;
    bool has_imatrix;        /* quantized with importance weights */
    uint64_t in_bytes, out_bytes;
    double seconds;          /* time spent on it (0 in a dry run) */
} sq_quantize_tensor_plan;

typedef void (*sq_quantize_event_fn)(void *ud, sq_quantize_event_kind kind, const char *text,
                                     const sq_quantize_tensor_plan *tensor);

/* A --override-kv KEY=TYPE:VALUE metadata override. */
typedef enum sq_kv_override_kind { SQ_KV_INT = 0, SQ_KV_FLOAT = 1, SQ_KV_BOOL = 2, SQ_KV_STR = 3 } sq_kv_override_kind;
typedef struct sq_kv_override {
    const char *key;
    sq_kv_override_kind kind;
    int64_t i;     /* SQ_KV_INT: written as u32 of |i|, as llama-quantize does */
    double f;      /* SQ_KV_FLOAT: written as f32 */
    bool b;        /* SQ_KV_BOOL */
    const char *s; /* SQ_KV_STR */
} sq_kv_override;

/* Everything `sq quantize` takes. Zero-initialise, then set. */
typedef struct sq_quantize_params {
    int ftype;                  /* llama_ftype value */
    bool copy;                  /* COPY */
    int n_threads;              /* <= 0: all cores */
    bool pure, leave_output_tensor, allow_requantize, dry_run, strict;
    bool sq_auto_fallback;      /* SmarterQuant: replace a type whose blocks do not fit a segment */
    int output_tensor_type;     /* -1 none */
    int token_embedding_type;   /* -1 none */
    const sq_tensor_type_override *overrides;
    int n_overrides;
    const char *imatrix_path;   /* NULL: none */
    const char *const *imatrix_include; /* --include-weights: use importance only for weights whose */
    int n_imatrix_include;              /*   name contains one of these (substring) */
    const char *const *imatrix_exclude; /* --exclude-weights: never for these */
    int n_imatrix_exclude;
    const sq_kv_override *kv_overrides; /* --override-kv, applied after general.file_type */
    int n_kv_overrides;
    const sq_quantize_sqtensor *sq_tensors; /* SmarterQuant requests (already parsed) */
    int n_sq_tensors;
    const char *sq_config_label; /* file they came from, for messages (may be NULL) */
    bool keep_split;            /* --keep-split: a split input gives a split output with the same
                                 * shards (out_path minus ".gguf" + -0000i-of-0000N.gguf), tensors
                                 * in input order; without it a split input gives one file */
    const int *prune_layers;    /* --prune-layers: block numbers to drop (any order, repeats allowed); */
    int n_prune_layers;         /*   the rest are renumbered blk.0.. in order, ARCH.block_count and
                                 *   ARCH.* per-layer arrays follow; imatrix entries and SmarterQuant
                                 *   requests keep naming the input's tensors */
    sq_quantize_event_fn on_event;
    void *event_ud;
} sq_quantize_params;

/* Totals of one run. */
typedef struct sq_quantize_stats {
    int n_tensors, n_quantized, n_smarterquant, n_fallback;
    uint64_t in_bytes, out_bytes; /* sums of tensor data sizes */
    int64_t n_elements;
    double seconds;
    int n_files;          /* output files written (or planned): > 1 only with keep_split */
    int n_pruned_tensors; /* input tensors dropped by prune_layers */
} sq_quantize_stats;

/* Name of output file i of n_files for out_path: out_path itself when
 * n_files is 1, else out_path without a final ".gguf", then
 * -%05d-of-%05d.gguf (llama-quantize --keep-split's names). snprintf-style. */
size_t sq_quantize_out_path(char *buf, size_t size, const char *out_path, int i, int n_files);

/* Quantizes in_path to out_path (or only plans, with dry_run). in_path may
 * be the first shard of a split model (all shards are read). Every check —
 * types, the SmarterQuant requests against the model (spec section 3), the
 * importance matrix — happens before any output exists; the output is written
 * to a temporary file renamed on success, so any error leaves no out_path
 * (with several output files, none is renamed before all are complete). */
sq_status sq_quantize_file(const char *in_path, const char *out_path, const sq_quantize_params *p,
                           sq_quantize_stats *stats, sq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SQ_QUANTIZE_H */
