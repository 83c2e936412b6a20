/*
 * tools/cmds.h — the subcommands of build/sq, one file each (tools/cmd_NAME.c).
 * Each takes the arguments after its name (argv[0] is "sq NAME") and returns
 * the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef SQ_TOOLS_CMDS_H
#define SQ_TOOLS_CMDS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sq_cmd_inspect(int argc, char **argv);
int sq_cmd_blocks(int argc, char **argv);
int sq_cmd_quantize(int argc, char **argv);
int sq_cmd_run(int argc, char **argv);
int sq_cmd_perplexity(int argc, char **argv);
int sq_cmd_bench(int argc, char **argv);
int sq_cmd_imatrix(int argc, char **argv);
int sq_cmd_plan(int argc, char **argv);
int sq_cmd_tokenize(int argc, char **argv);
int sq_cmd_serve(int argc, char **argv);

/* Strict numeric option values: the whole of s must be a decimal integer in
 * [lo, hi] (a number in [lo, hi] for the float one; no NaN); otherwise the
 * helper prints "sq CMD: FLAG 'S': want ..." and returns false, and the
 * caller returns 2 (a usage error). atoi() would take "abc" as 0 and "1e99" as 1. */
static inline bool sq_arg_int(const char *cmd, const char *flag, const char *s, long lo, long hi, int *out)
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

static inline bool sq_arg_float(const char *cmd, const char *flag, const char *s, double lo, double hi, float *out)
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

/* Whether an output file can be created where `path` says: its folder exists
 * and is writable. Tools that write only after a long computation (plan,
 * imatrix) check it first, so a typo costs seconds, not the whole run; prints
 * "sq CMD: PATH: cannot write in folder DIR: REASON" and returns false. */
static inline bool sq_arg_output_ok(const char *cmd, const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "sq %s: %s: cannot write in folder %s: %s\n", cmd, path, dir, strerror(errno));
        return false;
    }
    return true;
}

#endif
