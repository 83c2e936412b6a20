/*
 * test_attention.c — the blocked attention kernels (sq__attn_block in
 * src/engine/attn_block.h) on random shapes: 1..8 query rows with their own
 * causal prefixes, several head sizes, f16 and f32 caches. The SIMD versions
 * must equal, bit for bit, a scalar model of the summation order they
 * promise (the one-row AVX2 kernel's: eight FMA chains per score, combined in
 * a fixed tree, a different tree for a row's last nk mod 4 keys; the softmax
 * with a sequential double sum; the value sum in key order with FMAs), equal
 * each other, and stay close to the plain float reference; and the AVX-512
 * softmax's vector expf against the C library's, and its SwiGLU and
 * several-token RMSNorm against the scalar ones, bit for bit.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "harness.h"
#include "sq/blocks.h"

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float r16(float x) { return sq_fp16_to_f32(sq_f32_to_fp16(x)); }

/* The promised order, one row and one key at a time (hd a multiple of 8). */
static void model_block(const sq__attn_block *b, float *out)
{
    float *s = malloc(sizeof(float) * b->sc_stride);
    for (int r = 0; r < b->m; r++) {
        const int n = b->nk[r];
        for (int j = 0; j < n; j++) {
            float p[8];
            for (int k = 0; k < 8; k++) {
                p[k] = 0.0f;
                for (int d = k; d < b->hd; d += 8) p[k] = fmaf(b->kt[(size_t)d * b->kt_stride + (size_t)j], b->q[r][d], p[k]);
            }
            const float t = j < (n & ~3) ? ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]))
                                         : ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
            s[j] = t * b->scale;
        }
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += (double)s[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++) s[j] = b->f16 ? r16(s[j] * inv) : s[j] * inv;
        for (int d = 0; d < b->hd; d++) {
            float o = 0.0f;
            for (int j = 0; j < n; j++) o = fmaf(b->v[(size_t)j * b->v_stride + (size_t)d], s[j], o);
            out[r * b->hd + d] = o;
        }
    }
    free(s);
}

typedef void (*block_fn)(const sq__attn_block *);

/* Runs fn on the block with fresh scratch and outputs; out gets m × hd values. */
static void run(block_fn fn, sq__attn_block b, float *obuf, float *out)
{
    memset(b.sc, 0x7f, sizeof(float) * (size_t)b.m * b.sc_stride); /* stale scratch must not matter */
    for (int r = 0; r < b.m; r++) b.o[r] = obuf + (size_t)r * (size_t)(b.hd + 3);
    fn(&b);
    for (int r = 0; r < b.m; r++) memcpy(out + r * b.hd, b.o[r], sizeof(float) * (size_t)b.hd);
}

static void test_blocks_random(void)
{
    const sq_isa isa = sq_blocks_isa();
    uint64_t seed = 7;
    const int hds[] = {64, 128, 32, 8, 24, 12, 96};
    int cases = 0, exact_checked = 0;
    for (int it = 0; it < 70; it++) {
        const int hd = hds[it % 7];
        const int m = 1 + it % 8;
        const bool f16 = (it / 7) % 2 == 0;
        const int base = 1 + (int)((frand(&seed) + 1.0f) * 90);
        const int hb = 1 + it % 3; /* heads per token in the block: rows r and r+hb are consecutive tokens */
        int nk[SQ_ATTN_ROWS], nmax = 0;
        for (int r = 0; r < m; r++) {
            nk[r] = base + r / hb;
            if (nk[r] > nmax) nmax = nk[r];
        }
        const size_t kts = (size_t)(nmax + SQ_ATTN_KEYS - 1) / SQ_ATTN_KEYS * SQ_ATTN_KEYS + SQ_ATTN_KEYS;
        const size_t vs = (size_t)hd + 5;
        float *kt = malloc(sizeof(float) * kts * (size_t)hd);
        float *v = malloc(sizeof(float) * vs * (size_t)nmax);
        float *q = malloc(sizeof(float) * (size_t)m * (size_t)hd);
        for (size_t i = 0; i < kts * (size_t)hd; i++) kt[i] = f16 ? r16(2 * frand(&seed)) : 2 * frand(&seed);
        for (size_t i = 0; i < vs * (size_t)nmax; i++) v[i] = f16 ? r16(frand(&seed)) : frand(&seed);
        for (int i = 0; i < m * hd; i++) q[i] = f16 ? r16(frand(&seed)) : frand(&seed);
        sq__attn_block b;
        memset(&b, 0, sizeof b);
        b.m = m, b.hd = hd, b.kt = kt, b.kt_stride = kts, b.v = v, b.v_stride = vs;
        b.scale = 1.0f / sqrtf((float)hd), b.f16 = f16, b.sc_stride = kts;
        for (int r = 0; r < m; r++) b.q[r] = q + r * hd, b.nk[r] = nk[r];
        float *sc = malloc(sizeof(float) * (size_t)m * kts);
        float *obuf = malloc(sizeof(float) * (size_t)m * (size_t)(hd + 3));
        float *ref = malloc(sizeof(float) * (size_t)m * (size_t)hd), *got = malloc(sizeof(float) * (size_t)m * (size_t)hd);
        float *mod = malloc(sizeof(float) * (size_t)m * (size_t)hd), *o2 = malloc(sizeof(float) * (size_t)m * (size_t)hd);
        b.sc = sc;
        run(sq__attn_block_ref, b, obuf, ref);
        if (hd % 8 == 0) model_block(&b, mod);
        const block_fn fns[2] = {isa >= SQ_ISA_AVX2 ? sq__attn_block_avx2 : NULL,
                                 isa >= SQ_ISA_AVX512 ? sq__attn_block_avx512 : NULL};
        /* head sizes that are a multiple of 8 take the promised order (AVX-512 hands those that are not
         * a multiple of 32 to the AVX2 kernel) */
        const int widths[2] = {8, 8};
        for (int f = 0; f < 2; f++) {
            if (!fns[f]) continue;
            run(fns[f], b, obuf, got);
            double maxd = 0;
            for (int i = 0; i < m * hd; i++) maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
            CHECK_MSG(maxd < (f16 ? 2e-3 : 1e-5), "attn block %s hd %d m %d f16 %d: max diff %g from the reference",
                      f ? "avx512" : "avx2", hd, m, (int)f16, maxd);
            if (hd % widths[f] == 0) {
                CHECK_MSG(memcmp(got, mod, sizeof(float) * (size_t)m * (size_t)hd) == 0,
                          "attn block %s hd %d m %d f16 %d: not the promised summation order", f ? "avx512" : "avx2",
                          hd, m, (int)f16);
                exact_checked++;
            }
            if (f == 1 && fns[0] && hd % 32 == 0) {
                run(fns[0], b, obuf, o2);
                CHECK(memcmp(got, o2, sizeof(float) * (size_t)m * (size_t)hd) == 0);
            }
        }
        cases++;
        free(kt), free(v), free(q), free(sc), free(obuf), free(ref), free(got), free(mod), free(o2);
    }
    CHECK_INT(cases, 70);
    if (isa >= SQ_ISA_AVX2) CHECK(exact_checked >= 30);
}

/* The AVX-512 softmax's expf: bit for bit the C library's over a spread of
 * bit patterns (every 331st float from -0 down to -inf and from +0 up to 100;
 * all of them were compared once, 3.26e9 floats), plus the special values. */
static void test_expf(void)
{
    if (sq_blocks_isa() < SQ_ISA_AVX512) {
        SKIP("no AVX-512 on this CPU");
        return;
    }
    enum { B = 4096 };
    static float x[B], y[B];
    long bad = 0, tot = 0;
    const uint32_t ranges[2][2] = {{0x80000000u, 0xFF800001u}, {0x00000000u, 0x42C80000u}};
    for (int q = 0; q < 2; q++)
        for (uint64_t u = ranges[q][0]; u < ranges[q][1];) {
            int n = 0;
            for (; n < B && u < ranges[q][1]; n++, u += 331) {
                const uint32_t v = (uint32_t)u;
                memcpy(&x[n], &v, 4);
            }
            if (n < B) x[n++] = -INFINITY;
            if (n < B) x[n++] = NAN;
            if (n < B) x[n++] = -88.0f;
            sq__expf_avx512(x, y, n);
            for (int i = 0; i < n; i++, tot++) {
                const float e = expf(x[i]);
                if (memcmp(&e, &y[i], 4) != 0 && !(isnan(e) && isnan(y[i])) && bad++ < 3)
                    fprintf(stderr, "expf(%a): C library %a, ours %a\n", (double)x[i], (double)e, (double)y[i]);
            }
        }
    CHECK_MSG(bad == 0, "%ld of %ld expf values differ", bad, tot);
    CHECK(tot > 9000000);
}

/* The AVX-512 SwiGLU equals the scalar one bit for bit (lengths with tails,
 * gate values out to ±120 so that the exp's big-argument lanes are taken). */
static void test_swiglu(void)
{
    if (sq_blocks_isa() < SQ_ISA_AVX512) {
        SKIP("no AVX-512 on this CPU");
        return;
    }
    uint64_t seed = 11;
    enum { N = 1000 };
    float g[N], u[N], a[N], b[N];
    for (int i = 0; i < N; i++) {
        g[i] = frand(&seed) * (i % 9 == 0 ? 120.0f : 8.0f);
        u[i] = frand(&seed) * 3.0f;
    }
    for (int n = 1; n <= N; n += 37) {
        sq__swiglu(g, u, a, n);
        sq__swiglu_avx512(g, u, b, n);
        CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)n) == 0, "swiglu avx512 differs for n = %d", n);
    }
}

/* The AVX-512 RMSNorm of up to 8 tokens equals sq__rmsnorm row by row, bit
 * for bit (with and without weights, a length that takes the fallback). */
static void test_rmsnorm_rows(void)
{
    if (sq_blocks_isa() < SQ_ISA_AVX512) {
        SKIP("no AVX-512 on this CPU");
        return;
    }
    uint64_t seed = 5;
    enum { E = 520, T = 8 };
    static float x[T * E], w[E], a[T * E], b[T * E];
    for (int i = 0; i < T * E; i++) x[i] = frand(&seed) * (i % 13 == 0 ? 40.0f : 2.0f);
    for (int i = 0; i < E; i++) w[i] = frand(&seed);
    const int64_t ns[] = {512, 64, 24, 520, 20};
    for (int k = 0; k < 5; k++)
        for (int nt = 1; nt <= T; nt++)
            for (int withw = 0; withw < 2; withw++) {
                memset(a, 0, sizeof a), memset(b, 0, sizeof b);
                for (int r = 0; r < nt; r++) sq__rmsnorm(x + r * E, withw ? w : NULL, a + r * E, ns[k], 1e-5f);
                sq__rmsnorm_rows_avx512(x, withw ? w : NULL, b, ns[k], 1e-5f, E, nt);
                CHECK_MSG(memcmp(a, b, sizeof a) == 0, "rmsnorm rows n %lld nt %d w %d differ", (long long)ns[k], nt,
                          withw);
            }
}

int main(void)
{
    RUN(test_blocks_random);
    RUN(test_expf);
    RUN(test_swiglu);
    RUN(test_rmsnorm_rows);
    return harness_finish("attention");
}
