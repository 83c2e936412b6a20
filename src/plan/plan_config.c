/*
 * plan_config.c — a plan as a SmarterQuant configuration file (spec section 2):
 *   { "NAME": [[t0, t1, t2, t3], [perm...]], ... }
 * one key per planned tensor in model order, type ids as numbers, the
 * permutation as a JSON array or [] — plain JSON, readable by any parser.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plan/plan_internal.h"
#include "sq/sqconfig.h"

/* A growing text buffer; on failure it stays failed (ok = false). */
typedef struct tbuf {
    char *p;
    size_t len, cap;
    bool ok;
} tbuf;

static void tb_reserve(tbuf *b, size_t extra)
{
    if (!b->ok || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->ok = false;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void tb_add(tbuf *b, const char *s, size_t n)
{
    tb_reserve(b, n);
    if (!b->ok) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void tb_str(tbuf *b, const char *s) { tb_add(b, s, strlen(s)); }

/* A JSON string literal (tensor names are plain ASCII in practice; quotes,
 * backslashes and control bytes are escaped anyway). */
static void tb_json_string(tbuf *b, const char *s)
{
    tb_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            tb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            tb_str(b, esc);
        } else {
            tb_add(b, (const char *)&c, 1);
        }
    }
    tb_str(b, "\"");
}

sq_status sq_plan_config_text(const sq_plan *plan, char **text, size_t *len, sq_error *err)
{
    *text = NULL;
    if (len) *len = 0;
    if (!plan) return sq_error_set(err, SQ_EINVAL, "no plan");
    tbuf b = {.ok = true};
    tb_str(&b, "{\n");
    for (int64_t t = 0; t < plan->n; t++) {
        const sq_plan_tensor *o = &plan->out[t];
        char types[64];
        sq_format_types_json(o->types, types, sizeof types);
        tb_str(&b, "  ");
        tb_json_string(&b, o->name);
        tb_str(&b, ": [");
        tb_str(&b, types);
        tb_str(&b, ", ");
        if (o->perm) {
            size_t need = sq_format_int_array_json(o->perm, o->cols, NULL, 0);
            tb_reserve(&b, need + 1);
            if (b.ok) {
                sq_format_int_array_json(o->perm, o->cols, b.p + b.len, need + 1);
                b.len += need;
            }
        } else {
            tb_str(&b, "[]");
        }
        tb_str(&b, t + 1 < plan->n ? "],\n" : "]\n");
    }
    tb_str(&b, "}\n");
    if (!b.ok) {
        free(b.p);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the configuration text");
    }
    *text = b.p;
    if (len) *len = b.len;
    return SQ_OK;
}

sq_status sq_plan_write_config(const sq_plan *plan, const char *path, sq_error *err)
{
    char *text = NULL;
    size_t len = 0;
    sq_status st = sq_plan_config_text(plan, &text, &len, err);
    if (st != SQ_OK) return st;
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) {
        free(text);
        return sq_error_set(err, SQ_ENOMEM, "out of memory");
    }
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = sq_error_set(err, SQ_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        free(text);
        return st;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        off += (size_t)w;
    }
    int saved = errno;
    if (close(fd) != 0 && off == len) {
        saved = errno;
        off = 0;
    }
    if (off != len) {
        st = sq_error_set(err, SQ_EIO, "%s: write failed: %s", tmp, strerror(saved));
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        st = sq_error_set(err, SQ_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    free(text);
    return st;
}
