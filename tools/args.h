/*
 * tools/args.h — one walk over a subcommand's argv and one wording for every
 * usage error, shared by tools/cmd_*.c:
 *
 *     sq CMD: unknown option '--bogus'
 *     sq CMD: --model needs a value
 *     sq CMD: --port '70000': want an integer from 0 to 65535
 *
 * the first two followed by "(sq CMD --help lists every flag)"; the tool then
 * exits 2. A subcommand's parser looks like this:
 *
 *     sq_args a = sq_args_start("plan", argc, argv);
 *     for (; sq_args_more(&a); sq_args_next(&a)) {
 *         if (sq_args_help(&a)) { usage(stdout); return 0; }
 *         if (!budget_flag(&a, o) && !calib_flag(&a, o)) return sq_args_unknown(&a);
 *         if (a.failed) return 2;
 *     }
 *
 * where each *_flag function recognises its flags with sq_args_is() and reads
 * their values with sq_args_value() / sq_args_int() ..., which print the
 * message and set a.failed when the value is missing or bad.
 */
#ifndef SQ_TOOLS_ARGS_H
#define SQ_TOOLS_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sq_args {
    const char *cmd; /* the subcommand's name in messages ("plan") */
    int argc;
    char **argv;
    int i;       /* the argument being looked at */
    bool failed; /* a usage error was printed: the tool exits 2 */
} sq_args;

/* A walk over argv[1..argc-1] (argv[0] is the subcommand). */
sq_args sq_args_start(const char *cmd, int argc, char **argv);
/* Whether argv[i] is still to be looked at. */
bool sq_args_more(const sq_args *a);
/* Moves to the next argument. */
void sq_args_next(sq_args *a);
/* The argument being looked at. */
const char *sq_args_cur(const sq_args *a);
/* Whether the argument is -h or --help. */
bool sq_args_help(const sq_args *a);
/* Whether the argument is one of the flag's spellings (either may be NULL). */
bool sq_args_is(const sq_args *a, const char *short_name, const char *long_name);

/* The value after the current flag, moving past it; NULL after printing
 * "sq CMD: FLAG needs a value" (a.failed is set). */
const char *sq_args_value(sq_args *a);
/* The value as a whole decimal integer in [lo, hi], into *out; false after a
 * message (missing, or "FLAG 'V': want an integer from LO to HI"). */
bool sq_args_int(sq_args *a, long lo, long hi, int *out);
bool sq_args_long(sq_args *a, long lo, long hi, long *out);
/* The value as a number in [lo, hi] (no NaN), into *out; false after a message. */
bool sq_args_float(sq_args *a, double lo, double hi, float *out);
/* The value as one of the words of `choices` ("auto|on|off"); its index into
 * *out; false after "FLAG 'V': want auto, on or off". */
bool sq_args_choice(sq_args *a, const char *choices, int *out);

/* Prints "sq CMD: unknown option 'ARG'" and the --help hint; returns 2. */
int sq_args_unknown(sq_args *a);
/* Prints "sq CMD: " and the message and the --help hint; returns 2 (the
 * exit status of a usage error). */
int sq_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* After a usage error's one-line message: where the flags are listed (the
 * whole usage text would push the message itself off the screen). */
void sq_usage_hint(const char *cmd);

/* Strict numeric option values: the whole of s must be a decimal integer in
 * [lo, hi] (a number in [lo, hi] for the float one; no NaN); otherwise the
 * helper prints "sq CMD: FLAG 'S': want ..." and returns false, and the
 * caller returns 2 (a usage error). atoi() would take "abc" as 0 and "1e99" as 1. */
bool sq_arg_int(const char *cmd, const char *flag, const char *s, long lo, long hi, int *out);
bool sq_arg_float(const char *cmd, const char *flag, const char *s, double lo, double hi, float *out);

/* --chunks N of perplexity and imatrix: -1 (every chunk the text holds, the
 * default) or a positive count. 0 is refused: the library reads any n <= 0 as
 * "all", which is the opposite of what "--chunks 0" asks for. */
bool sq_arg_chunks(const char *cmd, const char *flag, const char *s, int *out);

/* --kv-type f16|f32 of the inference tools; prints "sq CMD: ..." and returns
 * false for anything else. */
bool sq_arg_kv_type(const char *cmd, const char *s, int *out);

#endif
