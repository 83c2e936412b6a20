/*
 * tok_cases.c — llama.cpp's tokenizer test format (test-tokenizer-0: a .inp
 * file of inputs separated by a marker line and a .out file with one line of
 * expected ids per input), run against a vocabulary. `sq tokenize --test`
 * and the tokenizer tests use it.
 */
#include <stdlib.h>
#include <string.h>

#include "sq/tokenizer.h"

/* Whether the ids in got[0..n) are exactly the decimal numbers of line. */
static bool ids_match(const char *line, const sq_token *got, size_t n)
{
    const char *x = line;
    for (size_t i = 0; i < n; i++) {
        char *end;
        const long want = strtol(x, &end, 10);
        if (end == x || want != got[i]) return false;
        x = end;
    }
    while (*x == ' ' || *x == '\r') x++;
    return *x == 0;
}

sq_status sq_vocab_check_cases(const sq_vocab *v, const char *inp, size_t inp_len, const char *expected,
                               size_t expected_len, sq_vocab_case_fn on_fail, void *ud, int *n_cases, int *n_failed,
                               sq_error *err)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    const char *ol = expected, *oend = expected + expected_len;
    size_t pos = 0;
    sq_status st = SQ_OK;
    *n_cases = *n_failed = 0;
    while (pos < inp_len && st == SQ_OK) {
        const char *nx = memmem(inp + pos, inp_len - pos, sep, sl);
        const size_t len = nx ? (size_t)(nx - (inp + pos)) : inp_len - pos;
        const char *eol = ol < oend ? memchr(ol, '\n', (size_t)(oend - ol)) : NULL;
        if (!eol)
            return sq_error_set(err, SQ_EFORMAT, "the expected ids have %d lines, fewer than there are inputs",
                                *n_cases);
        char *line = malloc((size_t)(eol - ol) + 1);
        sq_token *ids = NULL;
        size_t n = 0;
        if (!line) return sq_error_set(err, SQ_ENOMEM, "out of memory");
        memcpy(line, ol, (size_t)(eol - ol));
        line[eol - ol] = 0;
        st = sq_tokenize(v, inp + pos, len, false, false, &ids, &n, err);
        if (st == SQ_OK) {
            ++*n_cases;
            if (!ids_match(line, ids, n)) {
                ++*n_failed;
                const sq_vocab_case c = {(size_t)*n_cases, inp + pos, len, line, ids, n};
                if (on_fail) on_fail(ud, &c);
            }
        }
        free(ids);
        free(line);
        ol = eol + 1;
        if (!nx) break;
        pos += len + sl;
    }
    return st;
}
