/*
 * serve_internal.h — small helpers shared by the files of src/serve/.
 */
#ifndef SQ_SERVE_INTERNAL_H
#define SQ_SERVE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* A growable byte buffer, always NUL-terminated after p[n] once allocated.
 * Zero-initialise; the owner frees p. */
typedef struct sq__buf {
    char *p;
    size_t n, cap;
} sq__buf;

/* Appends s[0..len) (len may be 0: only makes sure p is allocated).
 * Returns false when out of memory (the buffer is unchanged). */
bool sq__buf_add(sq__buf *b, const char *s, size_t len);

#endif
