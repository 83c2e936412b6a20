/*
 * cmd_blocks.c — sq blocks: the block-format workbench.
 *
 *   sq blocks types
 *   sq blocks quantize   TYPE COLS IN.f32 OUT.bin [--imatrix W.f32]
 *   sq blocks dequantize TYPE COLS IN.bin OUT.f32
 *   sq blocks dot        TYPE COLS W.bin X.f32 OUT.f32
 *
 * Files are raw little-endian arrays without headers, rows of COLS values
 * one after the other (the layout of ../shared/golden/quant). Every output is
 * written to a temporary file next to it and renamed into place, so a failed
 * run never leaves a partial output behind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/blocks.h"
#include "sq/gguf.h"

/* ------------------------------------------------------------------ help */

static void usage_main(FILE *f)
{
    fprintf(f,
            "usage: sq blocks SUBCOMMAND ...   (sq blocks SUBCOMMAND --help for details)\n"
            "\n"
            "Block-format workbench on raw little-endian files (no headers; rows of COLS values).\n"
            "\n"
            "subcommands:\n"
            "  types        list the type table: ids, names, block geometry, kernels in this build\n"
            "  quantize     TYPE COLS IN.f32 OUT.bin [--imatrix W.f32]   f32 rows -> TYPE blocks\n"
            "  dequantize   TYPE COLS IN.bin OUT.f32                     TYPE blocks -> f32 rows\n"
            "  dot          TYPE COLS W.bin X.f32 OUT.f32                dot products of W rows with X rows\n"
            "\n"
            "TYPE is a ggml type name (q4_0, q8_0, f16, ...; case-insensitive) or its numeric id.\n"
            "Environment (every sq command): SQ_ISA=scalar|avx2|avx512|amx caps the kernels at that ISA;\n"
            "SQ_FORCE_SCALAR=1 uses the scalar reference kernels only.\n");
}

static void usage_types(FILE *f)
{
    fprintf(f,
            "usage: sq blocks types [--help]\n"
            "\n"
            "Prints one line per ggml type id: id, name, elements per block, bytes per block,\n"
            "whether it may hold weights, the activation type its dot product pairs with, whether\n"
            "llama-quantize requires an importance matrix for it, and the kernels this build has:\n"
            "  q quantize from f32, d dequantize to f32, v dot product with the activation type,\n"
            "  a activation quantizer (from_float); '-' where missing.\n"
            "Also prints the instruction set the kernels use.\n"
            "\n"
            "  -h, --help   this text\n");
}

static void usage_quantize(FILE *f)
{
    fprintf(f,
            "usage: sq blocks quantize TYPE COLS IN.f32 OUT.bin [--imatrix W.f32] [--isa NAME]\n"
            "\n"
            "Quantizes every row of COLS f32 values in IN.f32 to TYPE, exactly as ggml's\n"
            "ggml_quantize_chunk does (the bytes llama-quantize writes). IN.f32 must hold a whole\n"
            "number of rows; COLS must be a multiple of TYPE's block size.\n"
            "\n"
            "  --imatrix W.f32   COLS f32 importance weights, used for every row (the imatrix path)\n"
            "  --isa NAME        scalar, avx2 or avx512 (capped at what the CPU has; default: best)\n"
            "  -h, --help        this text\n");
}

static void usage_dequantize(FILE *f)
{
    fprintf(f,
            "usage: sq blocks dequantize TYPE COLS IN.bin OUT.f32 [--isa NAME]\n"
            "\n"
            "Converts rows of TYPE blocks (COLS values per row) back to f32, as ggml's to_float.\n"
            "IN.bin must hold a whole number of rows of TYPE.\n"
            "\n"
            "  --isa NAME   scalar, avx2 or avx512 (capped at what the CPU has; default: best)\n"
            "  -h, --help   this text\n");
}

static void usage_dot(FILE *f)
{
    fprintf(f,
            "usage: sq blocks dot TYPE COLS W.bin X.f32 OUT.f32 [--isa NAME]\n"
            "\n"
            "W.bin holds R rows of TYPE (COLS values each), X.f32 holds J rows of COLS f32\n"
            "activations. Each activation row is quantized to TYPE's activation type (as ggml's CPU\n"
            "from_float does), then OUT.f32 gets J x R floats: OUT[j*R + i] = dot(W row i, X row j).\n"
            "\n"
            "  --isa NAME   scalar, avx2 or avx512 (capped at what the CPU has; default: best)\n"
            "  -h, --help   this text\n");
}

static bool is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

/* ---------------------------------------------------------------- inputs */

/* Type id from a name ("q4_K") or a numeric id; -1 if neither. */
static int parse_type(const char *s)
{
    int t = sq_type_from_name(s);
    if (t >= 0) return t;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s && !*end && !errno && sq_type_info_get((int)v) && v == (int)v) return (int)v;
    return -1;
}

/* Resolves TYPE and COLS and checks that COLS fits TYPE's blocks. */
static const sq_type_info *parse_type_cols(const char *ts, const char *cs, int64_t *cols)
{
    const int t = parse_type(ts);
    const sq_type_info *ti = sq_type_info_get(t);
    if (!ti) {
        fprintf(stderr, "sq blocks: unknown type '%s' (sq blocks types lists them)\n", ts);
        return NULL;
    }
    char *end;
    errno = 0;
    long long c = strtoll(cs, &end, 10);
    if (!*cs || *end || errno || c <= 0 || c > ((int64_t)1 << 40)) {
        fprintf(stderr, "sq blocks: COLS '%s' is not a positive integer\n", cs);
        return NULL;
    }
    if (c % ti->block_size != 0) {
        fprintf(stderr, "sq blocks: COLS %lld is not a multiple of the block size %d of type %s\n", c,
                ti->block_size, ti->name);
        return NULL;
    }
    *cols = c;
    return ti;
}

/* Reads a whole file; its size must be a positive multiple of unit bytes
 * (one row). Prints the reason and returns NULL otherwise. */
static void *read_rows(const char *path, size_t unit, const char *what, size_t *nrows)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "sq blocks: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    void *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "sq blocks: cannot determine the size of %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (n == 0 || (size_t)n % unit != 0) {
        fprintf(stderr, "sq blocks: %s has %ld bytes, not a %s multiple of %zu bytes (one row of %s)\n", path, n,
                n == 0 ? "positive" : "whole", unit, what);
        goto out;
    }
    buf = malloc((size_t)n);
    if (!buf) {
        fprintf(stderr, "sq blocks: out of memory reading %s (%ld bytes)\n", path, n);
        goto out;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "sq blocks: cannot read %s: %s\n", path, ferror(f) ? strerror(errno) : "short read");
        free(buf);
        buf = NULL;
        goto out;
    }
    *nrows = (size_t)n / unit;
out:
    fclose(f);
    return buf;
}

/* Writes data to path through a temporary file in the same directory and a
 * rename, so that path either gets all of it or is left untouched. */
static bool write_atomic(const char *path, const void *data, size_t n)
{
    const size_t len = strlen(path) + 16;
    char *tmp = malloc(len);
    if (!tmp) {
        fprintf(stderr, "sq blocks: out of memory\n");
        return false;
    }
    struct stat sb; /* the rename would replace a device or pipe (/dev/null as root) */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "sq blocks: %s: exists and is not a regular file; the output must be a file\n", path);
        free(tmp);
        return false;
    }
    snprintf(tmp, len, "%s.tmp.XXXXXX", path);
    const int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "sq blocks: cannot create a temporary file for %s: %s\n", path, strerror(errno));
        free(tmp);
        return false;
    }
    /* mkstemp creates 0600; give the output the usual permissions */
    const mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask); /* failure is not fatal: the data is still right */
    FILE *f = fdopen(fd, "wb");
    bool ok = f != NULL && fwrite(data, 1, n, f) == n;
    if (f) ok = (fclose(f) == 0) && ok;
    else close(fd);
    if (!ok) fprintf(stderr, "sq blocks: cannot write %s: %s\n", path, strerror(errno));
    if (ok && rename(tmp, path) != 0) {
        fprintf(stderr, "sq blocks: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
        ok = false;
    }
    if (!ok) unlink(tmp);
    free(tmp);
    return ok;
}

/* Parses trailing options shared by the subcommands; positional arguments
 * are collected into pos (at most maxpos). Returns 0, or 2 on a usage error,
 * or -1 when --help was given (already printed). argv[0] is the
 * subcommand's name ("quantize"). */
static int parse_args(int argc, char **argv, void (*usage)(FILE *), const char **pos, int maxpos, int *npos,
                      const char **imatrix)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "blocks %s", argv[0]);
    *npos = 0;
    sq_args a = sq_args_start(cmd, argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        const char *s = sq_args_cur(&a);
        if (sq_args_help(&a)) {
            usage(stdout);
            return -1;
        } else if (imatrix && sq_args_is(&a, NULL, "--imatrix")) {
            *imatrix = sq_args_value(&a);
        } else if (sq_args_is(&a, NULL, "--isa")) {
            static const sq_isa isas[] = {SQ_ISA_SCALAR, SQ_ISA_AVX2, SQ_ISA_AVX512};
            int k = 0;
            if (sq_args_choice(&a, "scalar|avx2|avx512", &k)) sq_blocks_set_isa(isas[k]);
        } else if (s[0] == '-' && s[1] == '-') {
            return sq_args_unknown(&a);
        } else if (*npos >= maxpos) {
            return sq_usage_error(cmd, "too many arguments ('%s')", s);
        } else {
            pos[(*npos)++] = s;
        }
    }
    if (a.failed) return 2;
    if (*npos != maxpos) return sq_usage_error(cmd, "expected %d arguments, got %d", maxpos, *npos);
    return 0;
}

/* ----------------------------------------------------------- subcommands */

static int cmd_types(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_types(stdout);
            return 0;
        }
        fprintf(stderr, "sq blocks types: unexpected argument '%s'\n", argv[i]);
        usage_types(stderr);
        return 2;
    }
    printf("# kernels: %s\n", sq_isa_name(sq_blocks_isa()));
    printf("%-3s %-8s %5s %5s %-6s %-8s %-7s %s\n", "id", "name", "block", "bytes", "weight", "vec_dot", "imatrix",
           "kernels");
    for (int t = 0; t < SQ_TYPE_COUNT; t++) {
        const sq_type_info *ti = sq_type_info_get(t);
        if (!ti) continue;
        const bool act = (int)ti->vec_dot_type == t || t == SQ_TYPE_Q8_0 || t == SQ_TYPE_Q8_1 || t == SQ_TYPE_Q8_K;
        char k[5] = {sq_blocks_can_quantize(t) ? 'q' : '-', sq_blocks_can_dequantize(t) ? 'd' : '-',
                     sq_blocks_can_dot(t) ? 'v' : '-', '-', 0};
        /* an activation quantizer exists when some dot product pairing with t works */
        if (act) {
            for (int w = 0; w < SQ_TYPE_COUNT; w++) {
                const sq_type_info *wi = sq_type_info_get(w);
                if (wi && (int)wi->vec_dot_type == t && sq_blocks_can_dot(w)) k[3] = 'a';
            }
        }
        printf("%-3d %-8s %5d %5d %-6s %-8s %-7s %s\n", t, ti->name, ti->block_size, ti->type_size,
               ti->is_weight ? "yes" : "no", sq_type_name(ti->vec_dot_type), ti->needs_imatrix ? "yes" : "no", k);
    }
    return 0;
}

/* Whether the output (the last of n paths) is one of the inputs before it
 * (through "./" or links too); then says so: it would be replaced. */
static bool output_is_input(const char *cmd, const char *const *paths, int n)
{
    for (int k = 0; k < n - 1; k++)
        if (paths[k] && sq_gguf_same_file(paths[n - 1], paths[k])) {
            fprintf(stderr, "sq blocks %s: the output %s is the input %s; it would be replaced\n", cmd,
                    paths[n - 1], paths[k]);
            return true;
        }
    return false;
}

static int cmd_quantize(int argc, char **argv)
{
    const char *pos[4], *imatrix_path = NULL;
    int npos;
    int rc = parse_args(argc, argv, usage_quantize, pos, 4, &npos, &imatrix_path);
    if (rc) return rc < 0 ? 0 : rc;
    const char *io[3] = {pos[2], imatrix_path, pos[3]};
    if (output_is_input("quantize", io, 3)) return 2;
    int64_t cols;
    const sq_type_info *ti = parse_type_cols(pos[0], pos[1], &cols);
    if (!ti) return 1;
    if (!sq_blocks_can_quantize(ti->id)) {
        fprintf(stderr, "sq blocks quantize: quantizing to type %s is not supported by this build%s\n", ti->name,
                ti->is_weight ? "" : " (it is not a weight type)");
        return 1;
    }
    size_t nrows = 0, nimat = 0;
    float *imatrix = NULL;
    if (imatrix_path) {
        imatrix = read_rows(imatrix_path, sizeof(float) * (size_t)cols, "importance weights", &nimat);
        if (!imatrix) return 1;
        if (nimat != 1) {
            fprintf(stderr, "sq blocks quantize: %s holds %zu rows of %lld floats; an imatrix is exactly one row\n",
                    imatrix_path, nimat, (long long)cols);
            free(imatrix);
            return 1;
        }
    }
    float *in = read_rows(pos[2], sizeof(float) * (size_t)cols, "f32 values", &nrows);
    if (!in) {
        free(imatrix);
        return 1;
    }
    const size_t row_bytes = sq_row_size(ti->id, cols);
    void *out = malloc(row_bytes * nrows);
    sq_error err = {0};
    rc = 1;
    if (!out) fprintf(stderr, "sq blocks quantize: out of memory (%zu bytes)\n", row_bytes * nrows);
    else if (sq_quantize_rows(ti->id, in, out, (int64_t)nrows, cols, imatrix, &err) != SQ_OK)
        fprintf(stderr, "sq blocks quantize: %s: %s\n", pos[2], err.msg);
    else if (write_atomic(pos[3], out, row_bytes * nrows))
        rc = 0;
    free(out);
    free(in);
    free(imatrix);
    return rc;
}

static int cmd_dequantize(int argc, char **argv)
{
    const char *pos[4];
    int npos;
    int rc = parse_args(argc, argv, usage_dequantize, pos, 4, &npos, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (output_is_input("dequantize", pos + 2, 2)) return 2;
    int64_t cols;
    const sq_type_info *ti = parse_type_cols(pos[0], pos[1], &cols);
    if (!ti) return 1;
    if (!sq_blocks_can_dequantize(ti->id)) {
        fprintf(stderr, "sq blocks dequantize: dequantizing type %s is not supported by this build\n", ti->name);
        return 1;
    }
    const size_t row_bytes = sq_row_size(ti->id, cols);
    char what[64];
    snprintf(what, sizeof what, "%s blocks", ti->name);
    size_t nrows = 0;
    unsigned char *in = read_rows(pos[2], row_bytes, what, &nrows);
    if (!in) return 1;
    float *out = malloc(sizeof(float) * (size_t)cols * nrows);
    rc = 1;
    if (!out) {
        fprintf(stderr, "sq blocks dequantize: out of memory\n");
    } else {
        for (size_t r = 0; r < nrows; r++) sq_dequantize_row(ti->id, in + r * row_bytes, out + r * (size_t)cols, cols);
        if (write_atomic(pos[3], out, sizeof(float) * (size_t)cols * nrows)) rc = 0;
    }
    free(out);
    free(in);
    return rc;
}

static int cmd_dot(int argc, char **argv)
{
    const char *pos[5];
    int npos;
    int rc = parse_args(argc, argv, usage_dot, pos, 5, &npos, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (output_is_input("dot", pos + 2, 3)) return 2;
    int64_t cols;
    const sq_type_info *ti = parse_type_cols(pos[0], pos[1], &cols);
    if (!ti) return 1;
    if (!sq_blocks_can_dot(ti->id)) {
        fprintf(stderr, "sq blocks dot: dot products of type %s are not supported by this build\n", ti->name);
        return 1;
    }
    const int at = ti->vec_dot_type;
    const size_t act_bytes = sq_row_size(at, cols);
    if (act_bytes == 0) {
        fprintf(stderr, "sq blocks dot: COLS %lld is not a multiple of the block size %d of activation type %s\n",
                (long long)cols, sq_type_info_get(at)->block_size, sq_type_name(at));
        return 1;
    }
    const size_t row_bytes = sq_row_size(ti->id, cols);
    char what[64];
    snprintf(what, sizeof what, "%s blocks", ti->name);
    size_t nw = 0, nx = 0;
    unsigned char *w = read_rows(pos[2], row_bytes, what, &nw);
    if (!w) return 1;
    float *x = read_rows(pos[3], sizeof(float) * (size_t)cols, "f32 activations", &nx);
    if (!x) {
        free(w);
        return 1;
    }
    void *xq = malloc(act_bytes);
    float *out = malloc(sizeof(float) * nw * nx);
    rc = 1;
    if (!xq || !out) {
        fprintf(stderr, "sq blocks dot: out of memory\n");
    } else {
        for (size_t j = 0; j < nx; j++) {
            sq_quantize_act(at, x + j * (size_t)cols, xq, cols);
            for (size_t i = 0; i < nw; i++) out[j * nw + i] = sq_vec_dot(ti->id, cols, w + i * row_bytes, xq);
        }
        if (write_atomic(pos[4], out, sizeof(float) * nw * nx)) rc = 0;
    }
    free(out);
    free(xq);
    free(x);
    free(w);
    return rc;
}

int sq_cmd_blocks(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (is_help(sub) || !strcmp(sub, "help")) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(sub, "types")) return cmd_types(argc - 1, argv + 1);
    if (!strcmp(sub, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(sub, "dequantize")) return cmd_dequantize(argc - 1, argv + 1);
    if (!strcmp(sub, "dot")) return cmd_dot(argc - 1, argv + 1);
    fprintf(stderr, "sq blocks: unknown subcommand '%s'\n\n", sub);
    usage_main(stderr);
    return 2;
}
