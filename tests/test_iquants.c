/*
 * test_iquants.c — the codebook types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S) and TQ1_0 beyond ggml's golden vectors:
 *   - the vendored codebooks equal ../shared/golden/grids byte for byte, and
 *     the IQ2 sign table is what its definition says (7 bits + parity);
 *   - the search structures derived from the codebooks: every codebook point
 *     maps to itself, and the neighbour lists of off-grid points are ggml's
 *     (all points sorted by (distance, index), the nwant nearest distances
 *     kept), recomputed here by brute force;
 *   - first use from several threads at once gives the sequential bytes;
 *   - random rows of several lengths: the round-trip error is bounded, the
 *     importance-weighted error falls with an importance matrix, vec_dot
 *     equals a double-precision dot of the dequantized values, zero rows stay
 *     zero, extreme magnitudes stay finite, bad lengths are refused.
 */
#include <pthread.h>

#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"
#include "blocks/iq_grids.h"
#include "blocks/iq_search.h"

/* ---- deterministic random numbers (xorshift64*, Box-Muller) ---- */
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static double rnd_unit(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static float rnd_gauss(void)
{
    double u = rnd_unit(), v = rnd_unit();
    if (u < 1e-300) u = 1e-300;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- codebooks ---- */

static void test_grids_match_shared(void)
{
    static const struct {
        const char *file;
        const void *table;
        size_t size;
    } tabs[] = {
        {"iq2xxs_grid.bin", sq__iq2xxs_grid, sizeof sq__iq2xxs_grid},
        {"iq2xs_grid.bin", sq__iq2xs_grid, sizeof sq__iq2xs_grid},
        {"iq2s_grid.bin", sq__iq2s_grid, sizeof sq__iq2s_grid},
        {"iq3xxs_grid.bin", sq__iq3xxs_grid, sizeof sq__iq3xxs_grid},
        {"iq3s_grid.bin", sq__iq3s_grid, sizeof sq__iq3s_grid},
        {"iq1s_grid.bin", sq__iq1s_grid, sizeof sq__iq1s_grid},
        {"ksigns_iq2xs.bin", sq__ksigns_iq2xs, sizeof sq__ksigns_iq2xs},
    };
    char path[1024];
    if (!harness_shared_file(path, sizeof path, "golden/grids/README.md")) SKIP("../shared/golden/grids absent");
    for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "golden/grids/%s", tabs[i].file);
        void *want = harness_load_shared(rel, tabs[i].size);
        CHECK_MSG(want && memcmp(want, tabs[i].table, tabs[i].size) == 0, "vendored %s differs from ../shared",
                  tabs[i].file);
        free(want);
    }
}

static void test_sign_table(void)
{
    for (int i = 0; i < 128; i++) {
        const int s = sq__ksigns_iq2xs[i];
        CHECK_MSG((s & 127) == i && __builtin_popcount(s) % 2 == 0, "ksigns[%d] = %d", i, s);
    }
}

/* ---- search structures ---- */

static const struct {
    sq__iq_grid_id id;
    int nwant;
} grids[] = {{SQ__IQ_GRID_2XXS, 2}, {SQ__IQ_GRID_2XS, 2}, {SQ__IQ_GRID_2S, 1},
             {SQ__IQ_GRID_1S, 3},   {SQ__IQ_GRID_3XXS, 2}, {SQ__IQ_GRID_3S, 3}};

static int cmp_pair(const void *a, const void *b)
{
    const int *l = a, *r = b;
    return l[0] != r[0] ? (l[0] < r[0] ? -1 : 1) : (l[1] < r[1] ? -1 : l[1] > r[1]);
}

/* ggml's definition, by brute force: sort every point by (distance, index)
 * and keep those within the nwant nearest distinct distances. */
static int brute_neighbours(const sq__iq_search *s, int u, int nwant, int *pairs, int *out)
{
    for (int j = 0; j < s->ngrid; j++) {
        int d2 = 0;
        for (int k = 0; k < s->dim; k++) {
            const int diff = s->level[j * s->dim + k] - ((u >> (s->bits * k)) & ((1 << s->bits) - 1));
            d2 += diff * diff;
        }
        pairs[2 * j] = d2, pairs[2 * j + 1] = j;
    }
    qsort(pairs, (size_t)s->ngrid, 2 * sizeof(int), cmp_pair);
    int n = 0, nhave = 1, d2 = pairs[0];
    for (int j = 0; j < s->ngrid; j++) {
        if (pairs[2 * j] > d2) {
            if (nhave == nwant) break;
            d2 = pairs[2 * j];
            nhave++;
        }
        out[n++] = pairs[2 * j + 1];
    }
    return n;
}

static void test_search_structures(void)
{
    int *pairs = malloc(2 * 2048 * sizeof(int)), *want = malloc(2048 * sizeof(int));
    for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
        const sq__iq_search *s = sq__iq_search_get(grids[g].id);
        CHECK_MSG(s != NULL, "grid %d built", (int)grids[g].id);
        if (!s) continue;
        int self = 0, bad = 0, checked = 0;
        for (int j = 0; j < s->ngrid; j++) {
            int u = 0;
            for (int k = 0; k < s->dim; k++) u |= s->level[j * s->dim + k] << (s->bits * k);
            self += s->map[u] == j;
        }
        CHECK_MSG(self == s->ngrid, "grid %d: %d of %d points map to themselves", (int)grids[g].id, self, s->ngrid);
        /* every fifth formed off-grid index of the 3-level grids, every
         * seventh of the 8-level ones (steps prime to the level radix) */
        for (int u = 0; u < 1 << (s->dim * s->bits); u += s->n_levels == 3 ? 5 : 7) {
            bool formed = true;
            for (int k = 0; k < s->dim; k++) formed = formed && ((u >> (s->bits * k)) & ((1 << s->bits) - 1)) < s->n_levels;
            if (!formed || s->map[u] >= 0) continue;
            const int n = brute_neighbours(s, u, grids[g].nwant, pairs, want);
            const uint16_t *nb = sq__iq_neighbours(s, u);
            bool same = nb[0] == n;
            for (int i = 0; same && i < n; i++) same = nb[1 + i] == want[i];
            bad += !same;
            checked++;
        }
        CHECK_MSG(bad == 0 && checked > 0, "grid %d: %d of %d neighbour lists differ from ggml's definition",
                  (int)grids[g].id, bad, checked);
    }
    free(pairs);
    free(want);
}

/* ---- types on random data ---- */

typedef struct iq_type {
    const char *name;
    double max_rel_rmse; /* gaussian rows, with an importance matrix (measured + margin) */
} iq_type;

static const iq_type types[] = {
    {"iq1_s", 0.62}, {"iq1_m", 0.55}, {"iq2_xxs", 0.44}, {"iq2_xs", 0.38}, {"iq2_s", 0.34},
    {"iq3_xxs", 0.22}, {"iq3_s", 0.19}, {"tq1_0", 0.97},
};
#define N_TYPES (sizeof types / sizeof types[0])

typedef struct thread_job {
    int type;
    const float *x, *imx;
    int64_t rows, cols;
    void *out;
    sq_status st;
} thread_job;

static void *quantize_thread(void *p)
{
    thread_job *j = p;
    j->st = sq_quantize_rows(j->type, j->x, j->out, j->rows, j->cols, j->imx, NULL);
    return NULL;
}

/* Runs first (before anything builds the search structures): four threads
 * quantize at once, each type's first use among them, and must agree with a
 * later sequential run. */
static void test_threaded_first_use(void)
{
    enum { ROWS = 4, COLS = 512, NT = 4 };
    static const char *names[NT] = {"iq2_xs", "iq3_s", "iq1_m", "iq2_xs"};
    float *x = malloc(sizeof(float) * ROWS * COLS), *imx = malloc(sizeof(float) * COLS);
    for (int i = 0; i < ROWS * COLS; i++) x[i] = rnd_gauss();
    for (int i = 0; i < COLS; i++) imx[i] = (float)(0.1 + rnd_unit());
    thread_job jobs[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        const int ty = sq_type_from_name(names[t]);
        jobs[t] = (thread_job){ty, x, imx, ROWS, COLS, malloc(sq_row_size(ty, COLS) * ROWS), SQ_OK};
        pthread_create(&th[t], NULL, quantize_thread, &jobs[t]);
    }
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < NT; t++) {
        const size_t bytes = sq_row_size(jobs[t].type, COLS) * ROWS;
        void *again = malloc(bytes);
        CHECK_INT(jobs[t].st, SQ_OK);
        CHECK_INT(sq_quantize_rows(jobs[t].type, x, again, ROWS, COLS, imx, NULL), SQ_OK);
        CHECK_MSG(memcmp(again, jobs[t].out, bytes) == 0, "%s: threaded first use differs", names[t]);
        free(again);
        free(jobs[t].out);
    }
    free(x);
    free(imx);
}

static double rel_rmse(const float *x, const float *y, int n)
{
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), s += (double)x[i] * x[i];
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

static double weighted_err(const float *x, const float *y, const float *w, int n)
{
    double e = 0;
    for (int i = 0; i < n; i++) e += w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

/* One type on gaussian rows of several lengths: error bound with a random
 * importance matrix; the weighted error with it below the one without (when
 * the type can go without); vec_dot against the dequantized values. */
static void check_random_rows(const iq_type *it)
{
    const int t = sq_type_from_name(it->name);
    static const int lengths[] = {256, 512, 1024, 2816};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        const int n = lengths[li];
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *y0 = malloc(sizeof(float) * n);
        float *imx = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n), *ad = malloc(sizeof(float) * n);
        void *q = malloc(sq_row_size(t, n)), *aq = malloc(sq_row_size(SQ_TYPE_Q8_K, n));
        for (int i = 0; i < n; i++) x[i] = rnd_gauss(), a[i] = rnd_gauss();
        /* importance concentrated on a few columns, as real ones are */
        for (int i = 0; i < n; i++) imx[i] = (float)(rnd_unit() < 0.1 ? 20 + 80 * rnd_unit() : 0.5 + rnd_unit());
        CHECK_INT(sq_quantize_rows(t, x, q, 1, n, imx, NULL), SQ_OK);
        sq_dequantize_row(t, q, y, n);
        const double e = rel_rmse(x, y, n);
        CHECK_MSG(e <= it->max_rel_rmse, "%s n=%d: relative error %.4f above %.4f", it->name, n, e, it->max_rel_rmse);
        if (!tu_needs_weights(t) && t != SQ_TYPE_TQ1_0) {
            CHECK_INT(sq_quantize_rows(t, x, q, 1, n, NULL, NULL), SQ_OK);
            sq_dequantize_row(t, q, y0, n);
            CHECK_MSG(weighted_err(x, y, imx, n) < weighted_err(x, y0, imx, n),
                      "%s n=%d: the importance matrix does not lower the weighted error", it->name, n);
            CHECK_INT(sq_quantize_rows(t, x, q, 1, n, imx, NULL), SQ_OK);
        }
        sq_quantize_act(SQ_TYPE_Q8_K, a, aq, n);
        sq_dequantize_row(SQ_TYPE_Q8_K, aq, ad, n);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) ref += (double)y[i] * ad[i], mag += fabs((double)y[i] * ad[i]);
        const float got = sq_vec_dot(t, n, q, aq);
        CHECK_MSG(fabs(got - ref) <= 2e-6 * mag + 1e-30, "%s n=%d: vec_dot %.9g vs %.9g", it->name, n, got, ref);
        free(x), free(y), free(y0), free(imx), free(a), free(ad), free(q), free(aq);
    }
}

static void test_random_rows(void)
{
    for (size_t i = 0; i < N_TYPES; i++) check_random_rows(&types[i]);
}

/* Zero rows come back zero; tiny, huge and single-spike rows stay finite and
 * keep their largest value's sign; row lengths off the block are refused.
 * (The spike sits in the first sub-block: IQ3_S, as ggml, writes a stored
 * sub-block's grid bytes and signs where an earlier all-zero sub-block's
 * would be, and reads them back from its own place; golden row 9 checks that.) */
static void test_edge_rows(void)
{
    enum { N = 512 };
    float x[N], y[N], imx[N];
    unsigned char q[N * 2];
    for (int i = 0; i < N; i++) imx[i] = 1.0f;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const int t = sq_type_from_name(types[ti].name);
        for (int kind = 0; kind < 4; kind++) {
            for (int i = 0; i < N; i++) {
                const float g = rnd_gauss();
                x[i] = kind == 0 ? 0.0f : kind == 1 ? 1e-7f * g : kind == 2 ? 3e3f * g : (i == 7 ? -5.0f : 0.0f);
            }
            CHECK_INT(sq_quantize_rows(t, x, q, 1, N, imx, NULL), SQ_OK);
            sq_dequantize_row(t, q, y, N);
            bool finite = true, zero = true;
            for (int i = 0; i < N; i++) finite = finite && isfinite(y[i]), zero = zero && y[i] == 0.0f;
            CHECK_MSG(finite, "%s edge kind %d: non-finite output", types[ti].name, kind);
            if (kind == 0) CHECK_MSG(zero, "%s: zero row does not come back zero", types[ti].name);
            if (kind == 3) CHECK_MSG(y[7] < 0, "%s: spike -5 comes back as %g", types[ti].name, y[7]);
        }
        sq_error e = {0};
        CHECK_INT(sq_quantize_rows(t, x, q, 1, 300, imx, &e), SQ_EINVAL);
        CHECK_CONTAINS(e.msg, types[ti].name);
    }
}

int main(void)
{
    RUN(test_threaded_first_use);
    RUN(test_grids_match_shared);
    RUN(test_sign_table);
    RUN(test_search_structures);
    RUN(test_random_rows);
    RUN(test_edge_rows);
    return harness_finish("iquants");
}
