/*
 * cmd_tokenize.c — sq tokenize: token ids (or pieces) of text with the
 * vocabulary of a GGUF file, and llama.cpp's tokenizer test format.
 *
 *   sq tokenize -m VOCAB.gguf -p "some text"       one line of ids
 *   sq tokenize -m VOCAB.gguf -f FILE              one line of ids per line of FILE
 *   sq tokenize -m VOCAB.gguf -f FILE --whole      the whole file as one input
 *   sq tokenize -m VOCAB.gguf --test [FILE.inp]    llama.cpp's .inp/.out cases
 */
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "sq/gguf.h"
#include "sq/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq tokenize -m VOCAB.gguf (-p TEXT | -f FILE | --test [INP]) [options]\n"
            "\n"
            "Tokenizes text with the vocabulary of a GGUF file (a model or a vocab-only file),\n"
            "exactly as llama.cpp does. Prints the ids space-separated, one input per line.\n"
            "\n"
            "  -m, --model FILE     GGUF file whose tokenizer.ggml.* vocabulary is used (required)\n"
            "  -p, --prompt TEXT    tokenize TEXT (one line of output)\n"
            "  -f, --file FILE      tokenize each line of FILE (without its newline) separately;\n"
            "                       - reads standard input\n"
            "      --whole          with -f: the whole file is one input (as perplexity reads it)\n"
            "      --test [INP]     run llama.cpp's test-tokenizer-0 cases: inputs in INP (default\n"
            "                       VOCAB.gguf.inp) separated by __ggml_vocab_test__ lines, expected\n"
            "                       ids in the matching .out; tokenized without BOS, exit 1 on any\n"
            "                       difference\n"
            "      --no-bos         do not add the BOS/EOS the vocabulary asks for\n"
            "      --parse-special  control tokens written in the text (e.g. <s>) become tokens\n"
            "      --ids            print token ids (default)\n"
            "      --pieces         print each token's text, quoted and escaped, instead of ids\n"
            "  -v, --verbose        vocabulary facts and timing on stderr\n"
            "  -h, --help           this text\n");
}

/* Prints a piece in single quotes with C-style escapes. */
static void print_piece(const char *p, size_t n)
{
    putchar('\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\\' || c == '\'')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7F)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\'');
}

/* Tokenizes one input and prints one line. */
static int emit(const sq_vocab *v, const char *text, size_t len, bool add_special, bool parse_special, bool pieces)
{
    sq_token *ids = NULL;
    size_t n = 0;
    sq_error e = {0};
    if (sq_tokenize(v, text, len, add_special, parse_special, &ids, &n, &e) != SQ_OK) {
        fprintf(stderr, "sq tokenize: %s\n", e.msg);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (i) putchar(' ');
        if (pieces) {
            size_t pl;
            const char *p = sq_vocab_piece(v, ids[i], true, &pl);
            print_piece(p, pl);
        } else {
            printf("%d", ids[i]);
        }
    }
    putchar('\n');
    free(ids);
    return 0;
}

/* Prints one failed case of --test. */
static void print_failed_case(void *ud, const sq_vocab_case *c)
{
    (void)ud;
    printf("FAIL '%.*s'\n  expected:%s\n  got:     ", (int)c->input_len, c->input, c->expected);
    for (size_t i = 0; i < c->n_got; i++) printf(" %d", c->got[i]);
    putchar('\n');
}

/* llama.cpp's test-tokenizer-0 format. */
static int run_test(const sq_vocab *v, const char *inp_path, const char *out_path)
{
    size_t in_n = 0, out_n = 0;
    char *inp = sq_read_file("tokenize", inp_path, &in_n);
    char *outp = inp ? sq_read_file("tokenize", out_path, &out_n) : NULL;
    int cases = 0, failed = 0;
    sq_error e = {0};
    sq_status st = SQ_ENOMEM;
    if (inp && outp) {
        st = sq_vocab_check_cases(v, inp, in_n, outp, out_n, print_failed_case, NULL, &cases, &failed, &e);
        if (st != SQ_OK) fprintf(stderr, "sq tokenize: %s: %s\n", st == SQ_EFORMAT ? out_path : inp_path, e.msg);
        printf("%d cases, %d passed, %d failed\n", cases, cases - failed, failed);
    }
    free(inp);
    free(outp);
    return st == SQ_OK && failed == 0 ? 0 : 1;
}

/* What the command line asked for. */
typedef struct tok_opts {
    const char *model, *prompt, *file, *test_inp;
    bool test, whole, add_special, parse_special, pieces, verbose;
} tok_opts;

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, tok_opts *o)
{
    sq_args a = sq_args_start("tokenize", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_is(&a, "-m", "--model")) o->model = sq_args_value(&a);
        else if (sq_args_is(&a, "-p", "--prompt")) o->prompt = sq_args_value(&a);
        else if (sq_args_is(&a, "-f", "--file")) o->file = sq_args_value(&a);
        else if (sq_args_is(&a, NULL, "--test")) {
            o->test = true; /* an optional value: the next argument unless it is a flag */
            if (a.i + 1 < argc && argv[a.i + 1][0] != '-') o->test_inp = sq_args_value(&a);
        } else if (sq_args_is(&a, NULL, "--whole")) o->whole = true;
        else if (sq_args_is(&a, NULL, "--no-bos")) o->add_special = false;
        else if (sq_args_is(&a, NULL, "--parse-special")) o->parse_special = true;
        else if (sq_args_is(&a, NULL, "--ids")) o->pieces = false;
        else if (sq_args_is(&a, NULL, "--pieces")) o->pieces = true;
        else if (sq_args_is(&a, "-v", "--verbose")) o->verbose = true;
        else return sq_args_unknown(&a);
    }
    if (a.failed) return 2;
    if (!o->model || ((o->prompt != NULL) + (o->file != NULL) + o->test != 1))
        return sq_usage_error("tokenize", "need -m and exactly one of -p, -f, --test");
    return -1;
}

/* --test: the cases of INP (default VOCAB.gguf.inp) against the matching .out. */
static int test_cases(const tok_opts *o, const sq_vocab *v)
{
    char inp[4096], out[4096];
    if (o->test_inp) snprintf(inp, sizeof inp, "%s", o->test_inp);
    else snprintf(inp, sizeof inp, "%s.inp", o->model);
    const size_t l = strlen(inp);
    if (l >= 4 && !strcmp(inp + l - 4, ".inp")) snprintf(out, sizeof out, "%.*s.out", (int)(l - 4), inp);
    else snprintf(out, sizeof out, "%s.out", inp);
    return run_test(v, inp, out);
}

/* -f: each line of the file (or, with --whole, the whole file) as one input. */
static int tokenize_file(const tok_opts *o, const sq_vocab *v)
{
    size_t n = 0;
    char *text = sq_read_file("tokenize", o->file, &n);
    if (!text) return 1;
    const double t0 = sq_time_now();
    int rc = 0;
    if (o->whole) {
        rc = emit(v, text, n, o->add_special, o->parse_special, o->pieces);
    } else {
        for (size_t at = 0; at < n && rc == 0;) {
            const char *nl = memchr(text + at, '\n', n - at);
            const size_t b = nl ? (size_t)(nl - text) : n;
            rc = emit(v, text + at, b - at, o->add_special, o->parse_special, o->pieces);
            at = b + 1;
        }
    }
    if (o->verbose) fprintf(stderr, "sq tokenize: %zu bytes in %.3f s\n", n, sq_time_now() - t0);
    free(text);
    return rc;
}

int sq_cmd_tokenize(int argc, char **argv)
{
    tok_opts o = {.add_special = true};
    const int prc = parse_args(argc, argv, &o);
    if (prc >= 0) return prc;
    sq_vocab *v = NULL;
    sq_error e = {0};
    const double t0 = sq_time_now();
    if (sq_vocab_load_file(o.model, &v, &e) != SQ_OK) {
        fprintf(stderr, "sq tokenize: %s\n", e.msg);
        return 1;
    }
    if (o.verbose)
        fprintf(stderr, "sq tokenize: %s: %s vocabulary, %d tokens, BOS %d, EOS %d, add_bos %d (loaded in %.3f s)\n",
                o.model, sq_vocab_get_type(v) == SQ_VOCAB_SPM ? "llama (SPM)" : "gpt2 (BPE)", sq_vocab_n_tokens(v),
                sq_vocab_bos(v), sq_vocab_eos(v), sq_vocab_add_bos(v), sq_time_now() - t0);
    int rc = o.test     ? test_cases(&o, v)
             : o.prompt ? emit(v, o.prompt, strlen(o.prompt), o.add_special, o.parse_special, o.pieces)
                        : tokenize_file(&o, v);
    sq_vocab_free(v);
    if (fflush(stdout) != 0) {
        perror("sq tokenize: stdout");
        rc = 1;
    }
    return rc;
}
