/*
 * tools/args.c — the subcommands' argv walk and usage-error messages
 * (tools/args.h): every tool words an unknown option, a missing value and a
 * bad number the same way.
 */
#include "args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sq/types.h"

sq_args sq_args_start(const char *cmd, int argc, char **argv)
{
    sq_args a = {cmd, argc, argv, 1, false};
    return a;
}

bool sq_args_more(const sq_args *a) { return a->i < a->argc && !a->failed; }

void sq_args_next(sq_args *a) { a->i++; }

const char *sq_args_cur(const sq_args *a) { return a->argv[a->i]; }

bool sq_args_help(const sq_args *a) { return sq_args_is(a, "-h", "--help"); }

bool sq_args_is(const sq_args *a, const char *short_name, const char *long_name)
{
    const char *s = a->argv[a->i];
    return (short_name && !strcmp(s, short_name)) || (long_name && !strcmp(s, long_name));
}

/* The hint after a usage error; see args.h. */
void sq_usage_hint(const char *cmd) { fprintf(stderr, "(sq %s --help lists every flag)\n", cmd); }

/* "sq CMD: MESSAGE" and the hint; the tool returns what this returns. */
int sq_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sq %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    sq_usage_hint(cmd);
    return 2;
}

int sq_args_unknown(sq_args *a)
{
    a->failed = true;
    return sq_usage_error(a->cmd, "unknown option '%s'", a->argv[a->i]);
}

/* The flag's value, moving the walk past it; see args.h. */
const char *sq_args_value(sq_args *a)
{
    if (a->i + 1 >= a->argc) {
        sq_usage_error(a->cmd, "%s needs a value", a->argv[a->i]);
        a->failed = true;
        return NULL;
    }
    a->i++;
    return a->argv[a->i];
}

bool sq_args_long(sq_args *a, long lo, long hi, long *out)
{
    const char *flag = a->argv[a->i], *v = sq_args_value(a);
    if (!v) return false;
    char *end = NULL;
    errno = 0;
    const long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "sq %s: %s '%s': want an integer from %ld to %ld\n", a->cmd, flag, v, lo, hi);
        a->failed = true;
        return false;
    }
    *out = x;
    return true;
}

bool sq_args_int(sq_args *a, long lo, long hi, int *out)
{
    long x = 0;
    if (!sq_args_long(a, lo, hi, &x)) return false;
    *out = (int)x;
    return true;
}

bool sq_args_float(sq_args *a, double lo, double hi, float *out)
{
    const char *flag = a->argv[a->i], *v = sq_args_value(a);
    if (!v) return false;
    if (!sq_arg_float(a->cmd, flag, v, lo, hi, out)) a->failed = true;
    return !a->failed;
}

/* Index of v among the '|'-separated words of choices, or -1. */
static int choice_index(const char *choices, const char *v)
{
    const size_t n = strlen(v);
    int k = 0;
    for (const char *p = choices; *p; k++) {
        const char *bar = strchr(p, '|');
        const size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return k;
        p += len + (bar ? 1 : 0);
    }
    return -1;
}

bool sq_args_choice(sq_args *a, const char *choices, int *out)
{
    const char *flag = a->argv[a->i], *v = sq_args_value(a);
    if (!v) return false;
    const int k = choice_index(choices, v);
    if (k < 0) {
        /* "a|b|c" read as "a, b or c" */
        char words[256];
        size_t w = 0;
        for (const char *p = choices; *p && w + 8 < sizeof words; p++) {
            if (*p != '|') {
                words[w++] = *p;
                continue;
            }
            const char *sep = strchr(p + 1, '|') ? ", " : " or ";
            memcpy(words + w, sep, strlen(sep));
            w += strlen(sep);
        }
        words[w] = 0;
        fprintf(stderr, "sq %s: %s '%s': want %s\n", a->cmd, flag, v, words);
        a->failed = true;
        return false;
    }
    *out = k;
    return true;
}

bool sq_arg_int(const char *cmd, const char *flag, const char *s, long lo, long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "sq %s: %s '%s': want an integer from %ld to %ld\n", cmd, flag, s, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

bool sq_arg_float(const char *cmd, const char *flag, const char *s, double lo, double hi, float *out)
{
    char *end = NULL;
    errno = 0;
    const double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "sq %s: %s '%s': want a number from %g to %g\n", cmd, flag, s, lo, hi);
        return false;
    }
    *out = (float)v;
    return true;
}

bool sq_arg_chunks(const char *cmd, const char *flag, const char *s, int *out)
{
    int v = 0;
    char *end = NULL;
    errno = 0;
    const long l = strtol(s, &end, 10);
    if (end != s && !*end && !errno && (l == -1 || (l >= 1 && l <= 1000000000))) v = (int)l;
    if (v == 0) {
        fprintf(stderr, "sq %s: %s '%s': want -1 (every chunk) or a count from 1 to 1000000000\n", cmd, flag, s);
        return false;
    }
    *out = v;
    return true;
}

bool sq_arg_kv_type(const char *cmd, const char *s, int *out)
{
    if (!strcmp(s, "f16")) *out = SQ_TYPE_F16;
    else if (!strcmp(s, "f32")) *out = SQ_TYPE_F32;
    else {
        fprintf(stderr, "sq %s: --kv-type must be f16 or f32, not '%s'\n", cmd, s);
        return false;
    }
    return true;
}
