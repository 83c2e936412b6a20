/*
 * test_cmd_blocks.c — runs `sq blocks` (the built tool, SQ_BIN) on the golden
 * inputs in ../shared/golden/quant and compares its output files with ggml's
 * bytes; then checks its error cases: unknown types, bad COLS, files that are
 * not a whole number of rows, unsupported types, bad imatrix, usage errors,
 * and that a failed run leaves no output (or temporary) file behind.
 */
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"

#define ROWS 12
#define COLS 1024
#define ACT_ROWS 3

static char tmpdir[512];
static char out_text[8192], err_text[8192];

/* Runs `sq ARGS` through the shell with stdout and stderr captured into
 * out_text / err_text; returns the exit status (or -1). */
static int run_sq(const char *args)
{
    char cmd[4096], outp[600], errp[600];
    snprintf(outp, sizeof outp, "%s/stdout.txt", tmpdir);
    snprintf(errp, sizeof errp, "%s/stderr.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", harness_sq_bin(), args, outp, errp);
    const int st = system(cmd);
    out_text[0] = err_text[0] = 0;
    size_t n;
    char *t = harness_read_file(outp, &n);
    if (t) {
        snprintf(out_text, sizeof out_text, "%.*s", (int)n, t);
        free(t);
    }
    t = harness_read_file(errp, &n);
    if (t) {
        snprintf(err_text, sizeof err_text, "%.*s", (int)n, t);
        free(t);
    }
    return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* quantize (plain and --imatrix), dequantize and dot through the tool for
 * every golden type this build has kernels for. */
static void test_golden_roundtrip(void)
{
    char gq[600];
    if (!harness_shared_file(gq, sizeof gq, "golden/quant/input.f32")) SKIP("../shared/golden absent");
    const char *G = harness_shared();
    static const char *types[] = {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                                  "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"};
    char args[3000], want[700], got[700];
    int tested = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const char *name = types[k];
        const int t = sq_type_from_name(name);
        if (!sq_blocks_can_quantize(t)) continue;
        tested++;
        for (int w = 0; w < 2; w++) {
            snprintf(got, sizeof got, "%s/%s%s.bin", tmpdir, name, w ? "w" : "");
            snprintf(args, sizeof args, "blocks quantize %s %d '%s/golden/quant/input.f32' '%s'%s%s%s", name, COLS, G,
                     got, w ? " --imatrix '" : "", w ? G : "", w ? "/golden/quant/imatrix.f32'" : "");
            CHECK_MSG(run_sq(args) == 0, "%s: %s", args, err_text);
            snprintf(want, sizeof want, "%s/golden/quant/%s/%s", G, name, w ? "qw.bin" : "q.bin");
            CHECK_MSG(tu_files_equal(got, want), "sq blocks quantize %s%s differs from %s", name, w ? " --imatrix" : "",
                      want);
        }
        if (sq_blocks_can_dequantize(t)) {
            snprintf(got, sizeof got, "%s/%s.d.f32", tmpdir, name);
            snprintf(args, sizeof args, "blocks dequantize %s %d '%s/golden/quant/%s/q.bin' '%s'", name, COLS, G,
                     name, got);
            CHECK_MSG(run_sq(args) == 0, "%s: %s", args, err_text);
            snprintf(want, sizeof want, "%s/golden/quant/%s/d.f32", G, name);
            CHECK_MSG(tu_files_equal(got, want), "sq blocks dequantize %s differs from %s", name, want);
        }
        if (sq_blocks_can_dot(t)) {
            snprintf(got, sizeof got, "%s/%s.dot.f32", tmpdir, name);
            snprintf(args, sizeof args, "blocks dot %s %d '%s/golden/quant/%s/q.bin' '%s/golden/quant/act.f32' '%s'",
                     name, COLS, G, name, G, got);
            CHECK_MSG(run_sq(args) == 0, "%s: %s", args, err_text);
            snprintf(want, sizeof want, "%s/golden/quant/%s/dot.f32", G, name);
            char dpath[700], apath[700];
            snprintf(dpath, sizeof dpath, "%s/golden/quant/%s/d.f32", G, name);
            snprintf(apath, sizeof apath, "%s/golden/quant/act.f32", G);
            size_t ng = 0, nw = 0, nd = 0, na = 0;
            float *g = harness_read_file(got, &ng), *wd = harness_read_file(want, &nw);
            float *d = harness_read_file(dpath, &nd), *a = harness_read_file(apath, &na);
            CHECK_MSG(g && ng == sizeof(float) * ACT_ROWS * ROWS, "%s: dot output has %zu bytes", name, ng);
            int bad = 0;
            if (g && wd && d && a && ng == nw && nd == sizeof(float) * ROWS * COLS &&
                na == sizeof(float) * ACT_ROWS * COLS) {
                for (int j = 0; j < ACT_ROWS; j++)
                    for (int i = 0; i < ROWS; i++) {
                        double mag = 0;
                        for (int c = 0; c < COLS; c++) mag += fabs((double)d[i * COLS + c] * a[j * COLS + c]);
                        if (fabs((double)g[j * ROWS + i] - wd[j * ROWS + i]) > 1e-5 * mag + 1e-30) bad++;
                    }
            } else {
                bad = -1;
            }
            CHECK_MSG(bad == 0, "sq blocks dot %s: %d values outside tolerance", name, bad);
            free(g);
            free(wd);
            free(d);
            free(a);
        }
    }
    CHECK_MSG(tested >= 7, "at least the float and legacy types are testable (%d)", tested);
    CHECK(!tu_any_file_with(tmpdir, ".tmp."));
}

static void test_types(void)
{
    CHECK_INT(run_sq("blocks types"), 0);
    CHECK_CONTAINS(out_text, "q4_0");
    CHECK_CONTAINS(out_text, "iq4_xs");
    /* the q8_0 line: id 8, blocks of 32 values in 34 bytes, a weight type pairing with itself */
    const char *line = strstr(out_text, "\n8 ");
    CHECK_MSG(line != NULL, "types lists id 8:\n%s", out_text);
    if (line) {
        char name[32], weight[8], vdot[16], im[8], kern[8];
        int id, bs, ts;
        CHECK_INT(sscanf(line + 1, "%d %31s %d %d %7s %15s %7s %7s", &id, name, &bs, &ts, weight, vdot, im, kern), 8);
        CHECK_STR(name, "q8_0");
        CHECK_INT(bs, 32);
        CHECK_INT(ts, 34);
        CHECK_STR(weight, "yes");
        CHECK_STR(vdot, "q8_0");
        CHECK_STR(im, "no");
        CHECK_STR(kern, "qdva");
    }
    CHECK_INT(run_sq("blocks types extra"), 2);
}

static void test_help(void)
{
    static const char *subs[] = {"types", "quantize", "dequantize", "dot"};
    char args[128], want[128];
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "blocks %s --help", subs[i]);
        CHECK_INT(run_sq(args), 0);
        snprintf(want, sizeof want, "usage: sq blocks %s", subs[i]);
        CHECK_CONTAINS(out_text, want);
    }
    CHECK_INT(run_sq("blocks --help"), 0);
    CHECK_CONTAINS(out_text, "dequantize");
    CHECK_INT(run_sq("blocks quantize --help"), 0);
    CHECK_CONTAINS(out_text, "--imatrix");
    CHECK_CONTAINS(out_text, "--isa");
    CHECK_INT(run_sq("blocks"), 2);
    CHECK_INT(run_sq("blocks frobnicate"), 2);
    CHECK_CONTAINS(err_text, "unknown subcommand 'frobnicate'");
}

static void test_errors(void)
{
    char in[600], out[600], odd[600], args[3000], imat[600];
    snprintf(in, sizeof in, "%s/in.f32", tmpdir);
    snprintf(out, sizeof out, "%s/out.bin", tmpdir);
    snprintf(odd, sizeof odd, "%s/odd.bin", tmpdir);
    snprintf(imat, sizeof imat, "%s/imat.f32", tmpdir);
    float data[2 * 64];
    for (int i = 0; i < 2 * 64; i++) data[i] = (float)(i % 17) - 8.0f;
    write_file(in, data, sizeof data);
    write_file(odd, data, 100);
    write_file(imat, data, 32 * sizeof(float));

    /* sanity: the good case works, then remove its output */
    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s' '%s'", in, out);
    CHECK_INT(run_sq(args), 0);
    size_t n = 0;
    free(harness_read_file(out, &n));
    CHECK_INT(n, 2 * 2 * 18);
    unlink(out);

    snprintf(args, sizeof args, "blocks quantize q9_9 64 '%s' '%s'", in, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, "unknown type 'q9_9'");
    CHECK(!exists(out));

    snprintf(args, sizeof args, "blocks quantize 4 64 '%s' '%s'", in, out); /* removed id */
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, "unknown type '4'");

    snprintf(args, sizeof args, "blocks quantize q4_0 48 '%s' '%s'", in, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, "not a multiple of the block size 32 of type q4_0");
    CHECK(!exists(out));

    snprintf(args, sizeof args, "blocks quantize q4_0 -64 '%s' '%s'", in, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, "not a positive integer");

    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s' '%s'", odd, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, odd);
    CHECK_CONTAINS(err_text, "100 bytes");
    CHECK(!exists(out));

    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s/missing.f32' '%s'", tmpdir, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, "missing.f32");
    CHECK(!exists(out));

    /* q8_1 is an activation type: never a quantization target */
    snprintf(args, sizeof args, "blocks quantize q8_1 64 '%s' '%s'", in, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, "q8_1");
    CHECK_CONTAINS(err_text, "not supported");
    CHECK(!exists(out));

    /* imatrix of 32 floats for rows of 64 */
    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s' '%s' --imatrix '%s'", in, out, imat);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, imat);
    CHECK(!exists(out));
    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s' '%s' --imatrix", in, out);
    CHECK_INT(run_sq(args), 2);

    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s'", in);
    CHECK_INT(run_sq(args), 2);
    CHECK_CONTAINS(err_text, "expected 4 arguments");
    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s' '%s' --frob", in, out);
    CHECK_INT(run_sq(args), 2);
    CHECK_CONTAINS(err_text, "unknown option '--frob'");
    snprintf(args, sizeof args, "blocks quantize q4_0 64 '%s' '%s' --isa mmx", in, out);
    CHECK_INT(run_sq(args), 2);

    /* dequantize: 100 bytes is not a whole number of 36-byte q4_0 rows of 64 */
    snprintf(args, sizeof args, "blocks dequantize q4_0 64 '%s' '%s'", odd, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, odd);
    CHECK_CONTAINS(err_text, "q4_0 blocks");
    CHECK(!exists(out));

    /* dot: weight file of the wrong size, then activations of the wrong size */
    snprintf(args, sizeof args, "blocks dot q4_0 64 '%s' '%s' '%s'", odd, in, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, odd);
    CHECK(!exists(out));
    char wq[600];
    snprintf(wq, sizeof wq, "%s/w.bin", tmpdir);
    snprintf(args, sizeof args, "blocks quantize q8_0 64 '%s' '%s' --isa scalar", in, wq);
    CHECK_INT(run_sq(args), 0);
    snprintf(args, sizeof args, "blocks dot q8_0 64 '%s' '%s' '%s'", wq, odd, out);
    CHECK_INT(run_sq(args), 1);
    CHECK_CONTAINS(err_text, odd);
    CHECK(!exists(out));
    /* and the good dot: 2 weight rows x 2 activation rows */
    snprintf(args, sizeof args, "blocks dot q8_0 64 '%s' '%s' '%s'", wq, in, out);
    CHECK_INT(run_sq(args), 0);
    n = 0;
    float *dots = harness_read_file(out, &n);
    CHECK_INT(n, 4 * sizeof(float));
    if (dots && n == 4 * sizeof(float)) {
        /* Q8_0 on both sides keeps each value within 0.4%: compare with the exact dot within 1% of
         * sum |w*x| */
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < 2; i++) {
                double exact = 0, mag = 0;
                for (int c = 0; c < 64; c++) {
                    exact += (double)data[i * 64 + c] * data[j * 64 + c];
                    mag += fabs((double)data[i * 64 + c] * data[j * 64 + c]);
                }
                CHECK_NEAR(dots[j * 2 + i], exact, 1e-2 * mag);
            }
    }
    free(dots);
    unlink(out);

    /* a type without kernels in this build (if any is left) is refused by name */
    for (int t = 0; t < SQ_TYPE_COUNT; t++) {
        const sq_type_info *ti = sq_type_info_get(t);
        if (!ti || !ti->is_weight || sq_blocks_can_quantize(t) || 64 % ti->block_size) continue;
        snprintf(args, sizeof args, "blocks quantize %s 64 '%s' '%s'", ti->name, in, out);
        CHECK_INT(run_sq(args), 1);
        CHECK_CONTAINS(err_text, ti->name);
        CHECK(!exists(out));
        break;
    }
    CHECK(!tu_any_file_with(tmpdir, ".tmp."));
}

int main(void)
{
    if (!harness_tmpdir(tmpdir, sizeof tmpdir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    if (access(harness_sq_bin(), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", harness_sq_bin());
        harness_skipped++;
        return harness_finish("cmd_blocks");
    }
    RUN(test_help);
    RUN(test_types);
    RUN(test_errors);
    RUN(test_golden_roundtrip);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_finish("cmd_blocks");
}
