/*
 * plan_config.c — a plan as a SmarterQuant configuration file (spec section 2):
 *   { "NAME": [[t0, t1, t2, t3], [perm...]], ... }
 * one key per planned tensor in model order, type ids as numbers, the
 * permutation as a JSON array or [] — plain JSON, readable by any parser;
 * and a whole-tensor plan as llama-quantize's --tensor-type-file, one
 * "^NAME$=type" per line (llama.cpp reads whitespace-separated REGEX=TYPE
 * entries, the first matching pattern wins, the type by its ggml name).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan/plan_internal.h"
#include "sq/sqconfig.h"

/* A JSON string literal (tensor names are plain ASCII in practice; quotes,
 * backslashes and control bytes are escaped anyway). */
static void json_string(sq_buf *b, const char *s)
{
    sq_buf_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sq_buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sq_buf_str(b, esc);
        } else {
            sq_buf_add(b, (const char *)&c, 1);
        }
    }
    sq_buf_str(b, "\"");
}

sq_status sq_plan_config_text(const sq_plan *plan, char **text, size_t *len, sq_error *err)
{
    *text = NULL;
    if (len) *len = 0;
    if (!plan) return sq_error_set(err, SQ_EINVAL, "no plan");
    sq_buf b = {0};
    sq_buf_str(&b, "{\n");
    for (int64_t t = 0; t < plan->n; t++) {
        const sq_plan_tensor *o = &plan->out[t];
        char types[64];
        sq_format_types_json(o->types, types, sizeof types);
        sq_buf_str(&b, "  ");
        json_string(&b, o->name);
        sq_buf_str(&b, ": [");
        sq_buf_str(&b, types);
        sq_buf_str(&b, ", ");
        if (o->perm) {
            const size_t need = sq_format_int_array_json(o->perm, o->cols, NULL, 0);
            char *perm = malloc(need + 1);
            if (perm) sq_format_int_array_json(o->perm, o->cols, perm, need + 1);
            if (!perm || !sq_buf_add(&b, perm, need)) b.failed = true;
            free(perm);
        } else {
            sq_buf_str(&b, "[]");
        }
        sq_buf_str(&b, t + 1 < plan->n ? "],\n" : "]\n");
    }
    sq_buf_str(&b, "}\n");
    if (b.failed) {
        sq_buf_free(&b);
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the configuration text");
    }
    *text = b.p;
    if (len) *len = b.n;
    return SQ_OK;
}

/* A tensor name as an anchored regular expression that matches only it, in
 * both POSIX extended (sq quantize) and ECMAScript (llama.cpp) syntax: every
 * character that is special in either is escaped with a backslash. */
static void name_regex(sq_buf *b, const char *name)
{
    sq_buf_str(b, "^");
    for (const char *c = name; *c; c++) {
        if (strchr(".[]{}()\\*+?^$|", *c)) sq_buf_str(b, "\\");
        sq_buf_add(b, c, 1);
    }
    sq_buf_str(b, "$");
}

/* Why a planned tensor cannot be a line of the --tensor-type-file, or NULL. */
static const char *types_line_problem(const sq_plan_tensor *o)
{
    bool one = o->types[1] == o->types[0] && o->types[2] == o->types[0] && o->types[3] == o->types[0];
    if (o->perm) return "a permutation";
    if (!one) return "several segment types";
    for (const char *c = o->name; *c; c++)
        if (*c <= ' ' || *c == '=' || (*c >= 'A' && *c <= 'Z'))
            return "a name llama-quantize's --tensor-type-file cannot carry (a space or '=' in it, or an upper-case "
                   "letter, which llama-quantize lowercases)";
    return NULL;
}

sq_status sq_plan_tensor_types_text(const sq_plan *plan, char **text, size_t *len, sq_error *err)
{
    *text = NULL;
    if (len) *len = 0;
    if (!plan) return sq_error_set(err, SQ_EINVAL, "no plan");
    sq_buf b = {0};
    for (int64_t t = 0; t < plan->n; t++) {
        const sq_plan_tensor *o = &plan->out[t];
        const char *why = types_line_problem(o);
        if (why) {
            sq_buf_free(&b);
            return sq_error_set(err, SQ_EINVAL, "tensor %s has %s: llama-quantize's --tensor-type-file holds one type "
                                "per tensor (plan with --granularity tensor)", o->name, why);
        }
        name_regex(&b, o->name);
        sq_buf_printf(&b, "=%s\n", sq_type_name(o->types[0]));
    }
    *text = b.p ? b.p : strdup("");
    if (b.failed || !*text) {
        sq_buf_free(&b);
        *text = NULL;
        return sq_error_set(err, SQ_ENOMEM, "out of memory for the tensor types");
    }
    if (len) *len = b.n;
    return SQ_OK;
}

/* Writes text to path atomically (a temporary file beside it, then rename). */
static sq_status write_atomic(const char *path, const char *text, size_t len, sq_error *err)
{
    sq_status st = SQ_OK;
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = sq_error_set(err, SQ_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    /* mkstemp creates 0600; the config gets the permissions any new file gets (as the GGUF writer's) */
    const mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask); /* failure is not fatal: the text is still right */
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
    return st;
}

sq_status sq_plan_write_config(const sq_plan *plan, const char *path, sq_error *err)
{
    char *text = NULL;
    size_t len = 0;
    sq_status st = sq_plan_config_text(plan, &text, &len, err);
    if (st == SQ_OK) st = write_atomic(path, text, len, err);
    free(text);
    return st;
}

sq_status sq_plan_write_tensor_types(const sq_plan *plan, const char *path, sq_error *err)
{
    char *text = NULL;
    size_t len = 0;
    sq_status st = sq_plan_tensor_types_text(plan, &text, &len, err);
    if (st == SQ_OK) st = write_atomic(path, text, len, err);
    free(text);
    return st;
}
