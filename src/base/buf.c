/*
 * buf.c — the one growable array helper and the one text buffer (sq/base.h)
 * that the tokenizer, the GGUF value formatter, serve's responses, the
 * planner's config writer and the metadata formatter build their text with.
 */
#include "sq/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *sq_grow_array(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 8;
    while (c < need) {
        if (c > SIZE_MAX / 2) return NULL;
        c *= 2;
    }
    if (elem && c > SIZE_MAX / elem) return NULL;
    void *q = realloc(p, c * elem);
    if (!q) return NULL;
    *cap = c;
    return q;
}

sq_buf sq_buf_fixed(char *mem, size_t size)
{
    sq_buf b = {.p = mem, .cap = mem ? size : 0, .fixed = true};
    if (b.cap) mem[0] = '\0';
    return b;
}

/* Room for n more bytes and the NUL in a growable buffer; false when it fails. */
static bool reserve(sq_buf *b, size_t n)
{
    if (b->failed) return false;
    if (b->n + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

bool sq_buf_add(sq_buf *b, const void *s, size_t n)
{
    if (b->fixed) {
        if (b->n + 1 < b->cap) {
            const size_t room = b->cap - 1 - b->n, k = n < room ? n : room;
            if (k) memcpy(b->p + b->n, s, k);
            b->p[b->n + k] = '\0';
        }
        b->n += n;
        return true;
    }
    if (!reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

bool sq_buf_str(sq_buf *b, const char *s) { return sq_buf_add(b, s, strlen(s)); }

bool sq_buf_printf(sq_buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->fixed) {
        const size_t room = b->n < b->cap ? b->cap - b->n : 0;
        va_start(ap, fmt);
        const int k = vsnprintf(room ? b->p + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k > 0) b->n += (size_t)k;
        return true;
    }
    va_start(ap, fmt);
    const int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || !reserve(b, (size_t)k)) return !b->failed && k >= 0;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return true;
}

void sq_buf_free(sq_buf *b)
{
    if (!b || b->fixed) return;
    free(b->p);
    *b = (sq_buf){0};
}
