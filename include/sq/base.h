/*
 * sq/base.h — status codes, error messages, fp16/bf16 conversion, timing.
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

#ifdef __cplusplus
}
#endif
#endif /* SQ_BASE_H */
