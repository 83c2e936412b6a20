/*
 * test_blocks_golden.c — every block type against the vectors ggml 0.25.1
 * produced (../shared/golden/quant, see its README): quantize with and without
 * importance weights byte for byte, dequantize bit for bit, the activation
 * quantizers byte for byte, and dot products within 1e-5 of sum |w·x|.
 * Runs once per instruction set this CPU has (scalar, AVX2, AVX-512).
 * Every type folder there is checked, whatever the set (another seed, shape
 * or choice of types): a type without kernels in this build, or a folder
 * without its files, is a failure, not a skip (it cannot pass by skipping).
 */
#include <dirent.h>
#include <sys/stat.h>

#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"

/* The golden shape, from the sizes of input.f32 (ROWS x COLS), imatrix.f32
 * (COLS) and act.f32 (ACT_ROWS x COLS): 12 x 1024 and 3 activation rows in
 * ../shared today, read rather than assumed so other golden sets check too. */
static int ROWS, COLS, ACT_ROWS;

/* The types checked: every type folder golden/quant holds (list_types), so
 * a golden set of other types, or of fewer, is checked as it is. */
static char golden_types[64][32];
static size_t N_GOLDEN;

/* The types ggml quantizes only with importance weights: their golden files
 * are qw.bin, dw.f32 and dotw.f32 alone (../shared/golden/README.md). IQ1_M
 * is one although llama.cpp's type table only refuses it without an imatrix. */
static bool golden_weights_only(const char *name)
{
    static const char *only[] = {"iq2_xxs", "iq2_xs", "iq1_s", "iq1_m"};
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
        if (!strcmp(name, only[i])) return true;
    return false;
}

static float *input, *imatrix, *act;

/* Index of the first differing byte, or -1. */
static long first_diff(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return (long)i;
    return -1;
}

/* dequantize of the golden blocks reproduces ggml's floats bit for bit. */
static void check_dequantize(int t, const char *name, const unsigned char *q, const float *want_d, int with_imatrix)
{
    float *deq = malloc(sizeof(float) * COLS);
    long bad = -1;
    for (int r = 0; r < ROWS && bad < 0; r++) {
        sq_dequantize_row(t, q + r * sq_row_size(t, COLS), deq, COLS);
        long k = first_diff(deq, want_d + r * COLS, sizeof(float) * COLS);
        if (k >= 0) bad = r * COLS + k / 4;
    }
    CHECK_MSG(bad < 0, "%s dequantize %s: first differing value %ld", name, with_imatrix ? "qw" : "q", bad);
    free(deq);
}

/* vec_dot of the golden blocks with the golden activations, within 1e-5 of
 * sum |w·x| of ggml's dots in file dotname. */
static void check_dots(int t, const char *name, const unsigned char *q, const float *want_d, const char *dotname)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quant/%s/%s", name, dotname);
    float *want_dot = harness_load_shared(rel, sizeof(float) * ACT_ROWS * ROWS);
    const int at = sq_type_info_get(t)->vec_dot_type;
    void *xq = malloc(sq_row_size(at, COLS));
    int bad = 0;
    for (int j = 0; want_dot && j < ACT_ROWS; j++) {
        sq_quantize_act(at, act + j * COLS, xq, COLS);
        for (int i = 0; i < ROWS; i++) {
            const float got_dot = sq_vec_dot(t, COLS, q + i * sq_row_size(t, COLS), xq);
            double mag = 0;
            for (int c = 0; c < COLS; c++) mag += fabs((double)want_d[i * COLS + c] * act[j * COLS + c]);
            const double tol = 1e-5 * mag + 1e-30;
            if (fabs((double)got_dot - want_dot[j * ROWS + i]) > tol) {
                if (bad++ < 3)
                    fprintf(stderr, "%s dot act %d row %d: %.9g vs %.9g (tol %.3g)\n", name, j, i, got_dot,
                            want_dot[j * ROWS + i], tol);
            }
        }
    }
    CHECK_MSG(want_dot && bad == 0, "%s %s: %d outside tolerance", name, dotname, bad);
    free(xq);
    free(want_dot);
}

static void check_type(const char *name)
{
    const int t = sq_type_from_name(name);
    const sq_type_info *ti = sq_type_info_get(t);
    CHECK_MSG(ti != NULL, "type %s is in the table", name);
    if (!ti) return;
    const size_t qbytes = sq_row_size(t, COLS) * ROWS;
    char rel[256];

    /* every golden type has a quantizer, a dequantizer and a dot here */
    CHECK_MSG(sq_blocks_can_quantize(t) && sq_blocks_can_dequantize(t) && sq_blocks_can_dot(t),
              "%s: no kernels in this build", name);
    if (!sq_blocks_can_quantize(t)) return;

    if (tu_needs_weights(t)) {
        /* ggml asserts; we refuse with a message naming the type */
        sq_error e = {0};
        void *dst = malloc(qbytes);
        CHECK_INT(sq_quantize_rows(t, input, dst, ROWS, COLS, NULL, &e), SQ_EINVAL);
        CHECK_CONTAINS(e.msg, "importance matrix");
        free(dst);
    }
    int passes = 0;
    for (int with_imatrix = 0; with_imatrix < 2; with_imatrix++) {
        snprintf(rel, sizeof rel, "golden/quant/%s/%s", name, with_imatrix ? "qw.bin" : "q.bin");
        unsigned char *want = harness_load_shared(rel, qbytes);
        snprintf(rel, sizeof rel, "golden/quant/%s/%s", name, with_imatrix ? "dw.f32" : "d.f32");
        float *want_d = harness_load_shared(rel, sizeof(float) * ROWS * COLS);
        if (!want || !want_d) {
            free(want);
            free(want_d);
            continue;
        }
        passes++;
        unsigned char *got = malloc(qbytes);
        sq_error e = {0};
        sq_status st = sq_quantize_rows(t, input, got, ROWS, COLS, with_imatrix ? imatrix : NULL, &e);
        CHECK_MSG(st == SQ_OK, "%s quantize: %s", name, e.msg);
        long d = first_diff(got, want, qbytes);
        CHECK_MSG(d < 0, "%s %s: first differing byte %ld (row %ld)", name, with_imatrix ? "qw.bin" : "q.bin", d,
                  d / (long)sq_row_size(t, COLS));
        check_dequantize(t, name, want, want_d, with_imatrix);
        /* dot.f32 dots q.bin; the types quantized only with weights have
         * dotw.f32 for qw.bin instead */
        if (!with_imatrix || golden_weights_only(name))
            check_dots(t, name, want, want_d, with_imatrix ? "dotw.f32" : "dot.f32");
        free(got);
        free(want);
        free(want_d);
    }
    /* q.bin and qw.bin, or qw.bin alone for the types ggml quantizes only
     * with importance weights: a missing file is a failure, not a skip */
    CHECK_MSG(passes == (golden_weights_only(name) ? 1 : 2), "%s: %d of the golden quantization files checked", name,
              passes);
}

static void check_act(const char *name)
{
    const int t = sq_type_from_name(name);
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quant/act/%s.bin", name);
    const size_t n = sq_row_size(t, COLS) * ACT_ROWS;
    unsigned char *want = harness_load_shared(rel, n);
    if (!want) return;
    unsigned char *got = malloc(n);
    for (int j = 0; j < ACT_ROWS; j++) sq_quantize_act(t, act + j * COLS, got + j * sq_row_size(t, COLS), COLS);
    long d = first_diff(got, want, n);
    CHECK_MSG(d < 0, "activation quantizer %s: first differing byte %ld", name, d);
    free(got);
    free(want);
}

/* Size of a file under ../shared in bytes, 0 when absent. */
static size_t shared_size(const char *rel)
{
    char path[1024];
    struct stat st;
    return harness_shared_file(path, sizeof path, rel) && stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The golden shape from the file sizes; false (a failed check) when they do
 * not fit together: COLS a multiple of 256, whole rows in input and act. */
static bool golden_shape(void)
{
    const size_t in = shared_size("golden/quant/input.f32"), im = shared_size("golden/quant/imatrix.f32"),
                 ac = shared_size("golden/quant/act.f32");
    COLS = (int)(im / sizeof(float));
    const size_t row = (size_t)COLS * sizeof(float);
    const bool ok = COLS > 0 && COLS % 256 == 0 && in % row == 0 && ac % row == 0 && in > 0 && ac > 0;
    CHECK_MSG(ok, "golden/quant: input.f32 (%zu bytes), imatrix.f32 (%zu), act.f32 (%zu) do not fit one shape", in,
              im, ac);
    if (!ok) return false;
    ROWS = (int)(in / row);
    ACT_ROWS = (int)(ac / row);
    fprintf(stderr, "golden: %d rows of %d values, %d activation rows\n", ROWS, COLS, ACT_ROWS);
    return true;
}

/* The type folders of golden/quant, into golden_types: at least one (the
 * test cannot pass on an empty set), each checked in full by check_type
 * (a folder of a type this build has no kernels for is a failure). */
static void list_types(void)
{
    char path[1024];
    DIR *d = opendir(harness_shared_file(path, sizeof path, "golden/quant") ? path : "");
    CHECK_MSG(d != NULL, "golden/quant: cannot list it");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "act") || strchr(e->d_name, '.')) continue;
        const bool fits =
            N_GOLDEN < sizeof golden_types / sizeof golden_types[0] && strlen(e->d_name) < sizeof golden_types[0];
        CHECK_MSG(fits, "golden/quant/%s: too many types or too long a name", e->d_name);
        if (fits) snprintf(golden_types[N_GOLDEN++], sizeof golden_types[0], "%s", e->d_name);
    }
    closedir(d);
    CHECK_MSG(N_GOLDEN > 0, "golden/quant: no type folders");
}

static void test_golden(void)
{
    if (!harness_shared_file((char[1024]){0}, 1024, "golden/quant/input.f32")) SKIP("../shared/golden absent");
    list_types();
    if (!golden_shape()) return;
    input = harness_load_shared("golden/quant/input.f32", sizeof(float) * ROWS * COLS);
    imatrix = harness_load_shared("golden/quant/imatrix.f32", sizeof(float) * COLS);
    act = harness_load_shared("golden/quant/act.f32", sizeof(float) * ACT_ROWS * COLS);
    if (!input || !imatrix || !act) return;
    for (int isa = SQ_ISA_SCALAR; isa <= SQ_ISA_AVX512; isa++) {
        if ((int)sq_blocks_set_isa((sq_isa)isa) != isa) continue;
        fprintf(stderr, "golden: isa %s\n", sq_isa_name((sq_isa)isa));
        for (size_t i = 0; i < N_GOLDEN; i++) check_type(golden_types[i]);
        static const char *acts[] = {"q8_0", "q8_1", "q8_K"};
        for (int i = 0; i < 3; i++) {
            if (sq_blocks_can_dot(sq_type_from_name(acts[i]) == SQ_TYPE_Q8_K ? SQ_TYPE_Q4_K
                                  : sq_type_from_name(acts[i]) == SQ_TYPE_Q8_1 ? SQ_TYPE_Q4_1
                                                                               : SQ_TYPE_Q8_0))
                check_act(acts[i]);
        }
    }
    free(input);
    free(imatrix);
    free(act);
}

int main(void)
{
    RUN(test_golden);
    return harness_finish("blocks_golden");
}
