/*
 * sq/base.h — status codes, error messages, fp16/bf16 conversion, timing,
 * aligned memory and a text buffer.
 *
 * Every library function that can fail returns an sq_status and, when given a
 * non-NULL sq_error, leaves a precise human-readable message in it (naming the
 * file, key, tensor or offset and the reason). The library never prints and
 * never exits; only tools/ print.
 */
#ifndef SQ_BASE_H
#define SQ_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sq_status {
    SQ_OK = 0,
    SQ_EIO,          /* open/read/write/mmap/rename failed */
    SQ_EFORMAT,      /* malformed input file or text */
    SQ_EINVAL,       /* bad argument or configuration */
    SQ_ENOMEM,       /* allocation failed */
    SQ_EUNSUPPORTED, /* valid, but not supported by this build */
    SQ_ENOTFOUND,    /* key / tensor / file not present */
    SQ_ETYPE,        /* value has another type than asked for */
    SQ_ERANGE        /* value out of range */
} sq_status;

#define SQ_ERROR_MSG_MAX 1024

/* An error: a status and its message. Zero-initialise before use. */
typedef struct sq_error {
    sq_status code;
    char msg[SQ_ERROR_MSG_MAX];
} sq_error;

/* Sets *err (if non-NULL) to code and a printf-formatted message; returns code. */
sq_status sq_error_set(sq_error *err, sq_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an error's message (context added by a caller). */
void sq_error_prefix(sq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears *err to SQ_OK and an empty message. */
void sq_error_clear(sq_error *err);

/* Short name of a status ("io error", "format error", ...). */
const char *sq_status_name(sq_status s);

/* ---- fp16 / bf16 (IEEE round-to-nearest-even, as ggml) ---- */
typedef uint16_t sq_fp16;
typedef uint16_t sq_bf16;

float   sq_fp16_to_f32(sq_fp16 h);
sq_fp16 sq_f32_to_fp16(float f);
float   sq_bf16_to_f32(sq_bf16 h);
sq_bf16 sq_f32_to_bf16(float f); /* ggml_compute_fp32_to_bf16: RNE, NaN kept quiet */

/* ---- time ---- */
/* Monotonic wall-clock time in seconds. */
double sq_time_now(void);

/* Peak resident set size of this process in bytes (0 if unknown). */
size_t sq_peak_rss_bytes(void);

/* ---- memory ---- */
/* Allocation aligned to 64 bytes; free with sq_aligned_free. NULL on failure. */
void *sq_aligned_alloc(size_t nbytes);
void  sq_aligned_free(void *p);

/* An array of *cap elements of elem bytes at p, grown (doubling, at least 8)
 * to hold need elements: returns the array, reallocated when it had to grow
 * (*cap updated), or NULL when allocation fails (p is then untouched and
 * still owned by the caller). For arrays that grow one element at a time. */
void *sq_grow_array(void *p, size_t *cap, size_t need, size_t elem);

/* ---- a text buffer ----
 * Text built piece by piece, in one of two kinds:
 *   growable (sq_buf b = {0}): appends reallocate as needed; a failed
 *     allocation marks the buffer failed (b.failed): later appends do
 *     nothing and the text so far stays valid. Free with sq_buf_free.
 *   fixed (b = sq_buf_fixed(mem, size)): appends store what fits in the
 *     caller's memory and count the rest, snprintf-style: b.n is the length
 *     the whole text needs. Never allocates; sq_buf_free does nothing.
 * b.p, when not NULL, is NUL-terminated (in a fixed buffer after what fit). */
typedef struct sq_buf {
    char *p;     /* the text */
    size_t n;    /* its length (fixed: including what did not fit) */
    size_t cap;  /* bytes of storage at p */
    bool fixed;  /* the caller's storage */
    bool failed; /* growable: an allocation failed, the text is incomplete */
} sq_buf;

sq_buf sq_buf_fixed(char *mem, size_t size);
/* Append n bytes / a C string / formatted text. Return false when the
 * buffer has failed (never for a fixed buffer). */
bool sq_buf_add(sq_buf *b, const void *s, size_t n);
bool sq_buf_str(sq_buf *b, const char *s);
bool sq_buf_printf(sq_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees a growable buffer's text and empties it; a fixed buffer is left alone. */
void sq_buf_free(sq_buf *b);

#ifdef __cplusplus
}
#endif
#endif /* SQ_BASE_H */
