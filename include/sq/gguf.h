/*
 * sq/gguf.h — GGUF v3 reader (mmap, zero-copy, fully bounds-checked) and
 * streaming writer (temporary file, renamed on success).
 *
 * Reader: sq_gguf_open() maps the file read-only and validates every count,
 * length, offset and type up front; after a successful open every accessor
 * is safe. Tensor data pointers point into the read-only map and stay valid
 * until sq_gguf_close(). Sizes of SmarterQuant tensors (a tensor NAME with
 * key NAME.smarterquant.enabled = true) come from NAME.smarterquant.block_types
 * (spec section 5), not from the declared type alone.
 *
 * SmarterQuant metadata has one owner, this module: the reader parses and
 * checks a tensor's block types and permutation once, at open, and hands out
 * the typed view sq_gguf_sqmeta (t->sq); the writer takes that view and writes
 * the three keys (sq_gguf_writer_set_sqmeta) and knows what they cost
 * (sq_gguf_sqmeta_kv_bytes). Nothing else spells the keys.
 */
#ifndef SQ_GGUF_H
#define SQ_GGUF_H

#include "sq/base.h"
#include "sq/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GGUF metadata value types, as stored in the file. */
typedef enum sq_gguf_type {
    SQ_GGUF_UINT8 = 0,
    SQ_GGUF_INT8 = 1,
    SQ_GGUF_UINT16 = 2,
    SQ_GGUF_INT16 = 3,
    SQ_GGUF_UINT32 = 4,
    SQ_GGUF_INT32 = 5,
    SQ_GGUF_FLOAT32 = 6,
    SQ_GGUF_BOOL = 7,
    SQ_GGUF_STRING = 8,
    SQ_GGUF_ARRAY = 9,
    SQ_GGUF_UINT64 = 10,
    SQ_GGUF_INT64 = 11,
    SQ_GGUF_FLOAT64 = 12,
    SQ_GGUF_TYPE_COUNT
} sq_gguf_type;

#define SQ_GGUF_DEFAULT_ALIGNMENT 32
#define SQ_GGUF_MAX_DIMS 4

/* A string inside the mapped file: not NUL-terminated. */
typedef struct sq_gguf_str {
    const char *ptr;
    uint64_t len;
} sq_gguf_str;

/* The SmarterQuant metadata of one tensor (spec section 5), typed: what its
 * keys NAME.smarterquant.enabled / .permutation / .block_types say. */
typedef struct sq_gguf_sqmeta {
    int types[4];         /* block types of segments 0, 1, 2 and 3.. (types[3] is the declared type) */
    const int32_t *perm;  /* n_cols entries, new column j = original column perm[j]; NULL: not permuted */
    int64_t n_cols;       /* the row length (ne[0]) the permutation has */
} sq_gguf_sqmeta;

/* One tensor as described by the file. */
typedef struct sq_gguf_tensor {
    const char *name;    /* NUL-terminated (owned by the reader) */
    int n_dims;          /* 1..4 */
    int64_t ne[SQ_GGUF_MAX_DIMS]; /* ne[0] = columns (row length); unused dims are 1 */
    int type;            /* declared ggml type id (types[3] for SmarterQuant) */
    uint64_t offset;     /* relative to the start of the data section */
    uint64_t nbytes;     /* size of the data (SmarterQuant-aware) */
    const void *data;    /* into the read-only map */
    bool smarterquant;   /* NAME.smarterquant.enabled is true */
    sq_gguf_sqmeta sq;   /* when smarterquant: its types and permutation, checked at open (the
                          * permutation lives until sq_gguf_close); zero otherwise */
} sq_gguf_tensor;

typedef struct sq_gguf sq_gguf; /* opaque reader */

/* Opens and validates a GGUF file. On success *out owns the mapping. */
sq_status sq_gguf_open(const char *path, sq_gguf **out, sq_error *err);

/* Same over a caller's buffer (kept, not copied; it must outlive the handle). */
sq_status sq_gguf_open_memory(const void *data, size_t size, const char *label, sq_gguf **out, sq_error *err);

/* Releases the reader; NULL is a no-op. */
void sq_gguf_close(sq_gguf *g);
/* Maps all of g's pages (every shard's) in now rather than at their first
 * touch, as llama.cpp's MAP_POPULATE does: reads whatever the page cache
 * lacks. Best effort and silent: a file larger than physical memory is left
 * to fault in page by page. NULL is a no-op. */
void sq_gguf_prefault(const sq_gguf *g);

uint32_t sq_gguf_version(const sq_gguf *g);
size_t sq_gguf_alignment(const sq_gguf *g);   /* general.alignment or 32 */
uint64_t sq_gguf_data_offset(const sq_gguf *g); /* file offset of the data section */
uint64_t sq_gguf_file_size(const sq_gguf *g);
const char *sq_gguf_path(const sq_gguf *g);

/* ---- key/value metadata ---- */
int64_t sq_gguf_n_kv(const sq_gguf *g);
int64_t sq_gguf_find_key(const sq_gguf *g, const char *key); /* index or -1 */
const char *sq_gguf_key(const sq_gguf *g, int64_t i);        /* NUL-terminated */
sq_gguf_type sq_gguf_kv_type(const sq_gguf *g, int64_t i);
/* For an array: element type and count (nested arrays report SQ_GGUF_ARRAY). */
sq_gguf_type sq_gguf_arr_type(const sq_gguf *g, int64_t i);
uint64_t sq_gguf_arr_n(const sq_gguf *g, int64_t i);
/* Raw little-endian elements of a fixed-size array (not string/array); NULL otherwise. */
const void *sq_gguf_arr_data(const sq_gguf *g, int64_t i);
/* j-th string of an array of strings (O(1)); {NULL,0} when out of range. */
sq_gguf_str sq_gguf_arr_str(const sq_gguf *g, int64_t i, uint64_t j);
/* Raw bytes of the value of kv i as stored (for byte-exact copies). */
const void *sq_gguf_kv_raw(const sq_gguf *g, int64_t i, uint64_t *nbytes);
/* Note: file bytes (sq_gguf_arr_data, sq_gguf_kv_raw) may sit at any address:
 * read elements with memcpy or the element getters below, never by casting. */

/* j-th element of an array of integers (any width), as int64; SQ_ETYPE for
 * other arrays, SQ_ERANGE for j out of range or a u64 above INT64_MAX. */
sq_status sq_gguf_arr_get_int(const sq_gguf *g, int64_t i, uint64_t j, int64_t *out, sq_error *err);
/* j-th element of an array of f32 or f64. */
sq_status sq_gguf_arr_get_float(const sq_gguf *g, int64_t i, uint64_t j, double *out, sq_error *err);

/* Formats the value of kv i for display, snprintf-style: writes at most n
 * bytes (NUL-terminated when n > 0) and returns the full length. Arrays show
 * their first max_elems elements then ", ..." (0 = all); in text mode strings
 * are quoted with C escapes and, when max_elems > 0, cut after 160 bytes.
 * With SQ_GGUF_FMT_JSON the result is valid JSON (abbreviated arrays are
 * simply shorter; non-finite floats become null; invalid UTF-8 becomes U+FFFD). */
#define SQ_GGUF_FMT_JSON 1u
size_t sq_gguf_kv_format(const sq_gguf *g, int64_t i, uint64_t max_elems, unsigned flags, char *buf, size_t n);
/* Same quoting for any byte string (limit: cut after that many bytes in text mode, 0 = never). */
size_t sq_gguf_format_string(const char *s, size_t len, uint64_t limit, unsigned flags, char *buf, size_t n);

/* Typed getters by key. SQ_ENOTFOUND when absent; SQ_ETYPE (message names the
 * key, its type and the wanted one) on a mismatch; integers convert between
 * widths only when the value fits (else SQ_ERANGE). */
sq_status sq_gguf_get_i64(const sq_gguf *g, const char *key, int64_t *out, sq_error *err);
sq_status sq_gguf_get_u32(const sq_gguf *g, const char *key, uint32_t *out, sq_error *err);
sq_status sq_gguf_get_f32(const sq_gguf *g, const char *key, float *out, sq_error *err); /* f32 or f64 */
sq_status sq_gguf_get_bool(const sq_gguf *g, const char *key, bool *out, sq_error *err);
sq_status sq_gguf_get_str(const sq_gguf *g, const char *key, sq_gguf_str *out, sq_error *err);
/* An array: its index, element type and count. */
sq_status sq_gguf_get_arr(const sq_gguf *g, const char *key, int64_t *index, sq_gguf_type *elem_type, uint64_t *n,
                          sq_error *err);

const char *sq_gguf_type_name(sq_gguf_type t); /* "u32", "string", "array", ... */
/* Bytes of one element of a fixed-size value type (u8 .. f64, bool); 0 for string, array, unknown. */
size_t sq_gguf_type_size(sq_gguf_type t);

/* ---- tensors ---- */
int64_t sq_gguf_n_tensors(const sq_gguf *g);
const sq_gguf_tensor *sq_gguf_tensor_at(const sq_gguf *g, int64_t i);
const sq_gguf_tensor *sq_gguf_find_tensor(const sq_gguf *g, const char *name); /* NULL if absent */
/* Position of t in the file's tensor list, or -1 when t is not one of g's tensors. */
int64_t sq_gguf_tensor_index(const sq_gguf *g, const sq_gguf_tensor *t);

/* ---- SmarterQuant metadata (spec section 5) ----
 * At open the reader checks, for every tensor with NAME.smarterquant.enabled
 * = true: block_types is a string holding a JSON array of four type ids that
 * fit the tensor's shape and declared type (which is types[3]), and
 * permutation, when present, is a string holding "[]" or a permutation of the
 * ne[0] columns. Any fault fails the open with a message naming the key. */

/* The inverse of m's permutation into inv[0..n_cols): inv[perm[j]] = j (the
 * identity when m has none), i.e. where each original column is stored. */
void sq_gguf_sqmeta_inverse(const sq_gguf_sqmeta *m, int32_t *inv);

/* Bytes the three key/values of tensor `name` with metadata m add to a GGUF
 * header, as sq_gguf_writer_set_sqmeta writes them. m == NULL: the most they
 * can take without a permutation, whatever the types (for a budget made
 * before the types are chosen). */
uint64_t sq_gguf_sqmeta_kv_bytes(const char *name, const sq_gguf_sqmeta *m);

/* The JSON text of the values: a strict parser for an array of non-negative
 * integers (each <= INT32_MAX), whitespace allowed, nothing else ("[3,0,1,2]",
 * "[]"); it writes up to cap values to out (out may be NULL to only count) and
 * the number of elements to *count; more than cap elements with a non-NULL out
 * is an error. Errors name the byte offset and the reason. */
sq_status sq_parse_int_array_json(const char *text, size_t len, int32_t *out, int64_t cap, int64_t *count,
                                  sq_error *err);
/* Writes v[0..n) as compact JSON ("[3,0,1,2]", "[]" for n == 0) into buf
 * (cap bytes, always NUL-terminated when cap > 0), snprintf-style: returns the
 * length the full text needs, without the NUL. */
size_t sq_format_int_array_json(const int32_t *v, int64_t n, char *buf, size_t cap);
/* The same for four type ids ("[8,14,13,12]"). */
size_t sq_format_types_json(const int types[4], char *buf, size_t cap);

/* ---- split models (llama.cpp's gguf-split shards) ----
 * A model may be stored as N files PREFIX-00001-of-0000N.gguf ...
 * PREFIX-0000N-of-0000N.gguf, each with the keys split.no (u16, 0-based),
 * split.count (u16, N) and split.tensors.count (i32, tensors of all shards).
 * The first shard holds the model's metadata; every shard holds some of the
 * tensors. */
#define SQ_GGUF_KEY_SPLIT_NO "split.no"
#define SQ_GGUF_KEY_SPLIT_COUNT "split.count"
#define SQ_GGUF_KEY_SPLIT_TENSORS "split.tensors.count"

/* Opens a model, split or not. A file without split.count (or with 1) opens
 * as sq_gguf_open does. The first shard of a split model opens every shard
 * (found by name), validated, as ONE handle: the key/values are the first
 * shard's, the tensors are those of all shards (shard by shard, each in file
 * order), each data pointer into its own shard's map, t->offset relative to
 * its shard's data section. sq_gguf_data_offset/file_size/version/alignment
 * describe the first shard. Errors name the file and the reason: a missing
 * or unreadable shard, a shard whose split.no / split.count disagree, a file
 * name without the -00001-of-0000N.gguf ending, a later shard given instead
 * of the first, a tensor in two shards, a tensor count other than
 * split.tensors.count. */
sq_status sq_gguf_open_model(const char *path, sq_gguf **out, sq_error *err);
/* Number of files of the handle: N for a split model, 1 otherwise. */
int sq_gguf_n_shards(const sq_gguf *g);
/* File i of the handle (i = 0 is the handle itself for an ordinary file);
 * NULL when out of range. Owned by g. */
const sq_gguf *sq_gguf_shard(const sq_gguf *g, int i);
/* Which file of g holds tensor t (0 for an ordinary file); -1 when t is not one of g's tensors. */
int sq_gguf_tensor_shard(const sq_gguf *g, const sq_gguf_tensor *t);
/* Writes PREFIX-%05d-of-%05d.gguf for shard i (0-based) of n, snprintf-style. */
size_t sq_gguf_split_path(char *buf, size_t size, const char *prefix, int i, int n);
/* When path ends in -(i+1)-of-n.gguf (5 digits each), writes the part before
 * it into buf and returns true; false otherwise (or when buf is too small). */
bool sq_gguf_split_prefix(char *buf, size_t size, const char *path, int i, int n);

/* ---- writer ----
 * Usage: open; set/copy key/values; add tensor infos (name, shape, type, nbytes)
 * in file order; then write each tensor's data in the same order (streamed,
 * padded to the alignment); finish renames the temporary file onto the path.
 * Any failure, or sq_gguf_writer_abort(), removes the temporary file: no
 * partial output is ever left under the final name. */
typedef struct sq_gguf_writer sq_gguf_writer;

sq_status sq_gguf_writer_open(const char *path, sq_gguf_writer **out, sq_error *err);
/* Copies every key/value of src, in order (byte-exact). */
sq_status sq_gguf_writer_copy_kvs(sq_gguf_writer *w, const sq_gguf *src, sq_error *err);
/* Copies key/value i of src (byte-exact; replaces the key if it is already set). */
sq_status sq_gguf_writer_copy_kv(sq_gguf_writer *w, const sq_gguf *src, int64_t i, sq_error *err);
/* Setters replace an existing key in place (keeping its position) or append. */
sq_status sq_gguf_writer_set_u32(sq_gguf_writer *w, const char *key, uint32_t v, sq_error *err);
sq_status sq_gguf_writer_set_u16(sq_gguf_writer *w, const char *key, uint16_t v, sq_error *err);
sq_status sq_gguf_writer_set_i32(sq_gguf_writer *w, const char *key, int32_t v, sq_error *err);
sq_status sq_gguf_writer_set_f32(sq_gguf_writer *w, const char *key, float v, sq_error *err);
sq_status sq_gguf_writer_set_bool(sq_gguf_writer *w, const char *key, bool v, sq_error *err);
sq_status sq_gguf_writer_set_str(sq_gguf_writer *w, const char *key, const char *v, sq_error *err);
/* Array of fixed-size elements (n elements of elem_type) or of strings. */
sq_status sq_gguf_writer_set_arr(sq_gguf_writer *w, const char *key, sq_gguf_type elem_type, const void *data,
                                 uint64_t n, sq_error *err);
sq_status sq_gguf_writer_set_arr_str(sq_gguf_writer *w, const char *key, const char *const *v, uint64_t n,
                                     sq_error *err);
sq_status sq_gguf_writer_remove_key(sq_gguf_writer *w, const char *key, sq_error *err);
/* Sets the three SmarterQuant keys of tensor `name` from m (in the order
 * enabled, permutation, block_types; each replaced in place when present).
 * The permutation, if any, is checked here (n_cols entries, each column once);
 * the types are checked against the tensor's shape when the header is written.
 * A reader's t->sq may be passed as it is. */
sq_status sq_gguf_writer_set_sqmeta(sq_gguf_writer *w, const char *name, const sq_gguf_sqmeta *m, sq_error *err);
/* Removes whichever of tensor `name`'s SmarterQuant keys the writer holds. */
sq_status sq_gguf_writer_remove_sqmeta(sq_gguf_writer *w, const char *name, sq_error *err);
/* Whether the writer holds tensor `name`'s block_types key (set, or copied
 * from a reader by sq_gguf_writer_copy_kvs). */
bool sq_gguf_writer_has_sqmeta(const sq_gguf_writer *w, const char *name);
sq_status sq_gguf_writer_add_tensor(sq_gguf_writer *w, const char *name, int n_dims, const int64_t *ne, int type,
                                    uint64_t nbytes, sq_error *err);
/* Appends nbytes of the current tensor's data (may be called several times per
 * tensor; moves to the next tensor when the declared size is reached). */
sq_status sq_gguf_writer_write(sq_gguf_writer *w, const void *data, size_t nbytes, sq_error *err);
/* Checks all data was written, flushes, renames. Frees w in every case. */
sq_status sq_gguf_writer_finish(sq_gguf_writer *w, sq_error *err);
/* Finishes n writers as one output (the shards of a split model): every
 * one is checked complete, flushed and closed first; only when all succeeded
 * are they renamed, so an error leaves none of the final files (a rename that
 * fails removes the ones already renamed). Frees every writer in every case
 * (NULL entries are skipped). */
sq_status sq_gguf_writer_finish_all(sq_gguf_writer **ws, int n, sq_error *err);
/* Removes the temporary file and frees w; NULL is a no-op. */
void sq_gguf_writer_abort(sq_gguf_writer *w);
/* Removes the temporary file of every writer still open (nothing else: no
 * free, no message). Async-signal-safe: for a tool's SIGINT/SIGTERM handler,
 * which then re-raises the signal, so an interrupted run leaves no file. */
void sq_gguf_writer_unlink_temps(void);
/* Lists (unlists) a temporary file written by other code than a GGUF writer,
 * e.g. perplexity's base log-probability file, so that
 * sq_gguf_writer_unlink_temps() removes it too. The string must stay valid
 * and unchanged until it is unlisted; list it before creating the file and
 * unlist it after renaming or removing it. NULL is a no-op. */
void sq_gguf_temp_list(char *path);
void sq_gguf_temp_unlist(char *path);
/* Whether paths a and b name the same existing file (same device and inode,
 * through links and "./"); false when either does not exist. Writers of a
 * file derived from an input check this so an output never replaces its input. */
bool sq_gguf_same_file(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif /* SQ_GGUF_H */
