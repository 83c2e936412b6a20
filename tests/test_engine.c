/*
 * test_engine.c — the inference engine: its elementwise math against naive
 * references (RMSNorm, RoPE, softmax, SwiGLU, -log p), the permutation
 * parser, the sampler (greedy, top-k/top-p limits, seeded determinism, the
 * distribution it draws from).
 */
#include <math.h>
#include <stdint.h>

#include "engine/engine_internal.h"
#include "harness.h"
#include "sq/engine.h"

/* A deterministic pseudo-random float in [-1, 1). */
static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void test_rmsnorm(void)
{
    uint64_t s = 1;
    float x[300], w[300], y[300];
    for (int i = 0; i < 300; i++) {
        x[i] = 3 * frand(&s);
        w[i] = frand(&s);
    }
    sq__rmsnorm(x, w, y, 300, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 300; i++) ss += (double)x[i] * x[i];
    const double sc = 1.0 / sqrt(ss / 300 + 1e-5);
    double maxd = 0;
    for (int i = 0; i < 300; i++) maxd = fmax(maxd, fabs(y[i] - x[i] * sc * w[i]));
    CHECK_MSG(maxd < 1e-5, "rmsnorm max diff %g", maxd);
}

static void test_rope(void)
{
    /* 2 heads of 8, rotating the first 6 entries; compare with the formula */
    uint64_t s = 2;
    float x[16], ref[16];
    for (int i = 0; i < 16; i++) x[i] = ref[i] = frand(&s);
    const int pos = 37;
    const float ff[3] = {1.0f, 2.0f, 4.0f};
    sq__rope(x, 2, 8, 6, pos, 10000.0f, 1.0f, ff);
    double maxd = 0;
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < 3; i++) {
            const double th = pos * pow(10000.0, -2.0 * i / 6) / ff[i];
            const double a = ref[h * 8 + 2 * i], b = ref[h * 8 + 2 * i + 1];
            maxd = fmax(maxd, fabs(x[h * 8 + 2 * i] - (a * cos(th) - b * sin(th))));
            maxd = fmax(maxd, fabs(x[h * 8 + 2 * i + 1] - (a * sin(th) + b * cos(th))));
        }
        /* entries past n_rot are kept */
        CHECK(x[h * 8 + 6] == ref[h * 8 + 6] && x[h * 8 + 7] == ref[h * 8 + 7]);
    }
    CHECK_MSG(maxd < 1e-4, "rope max diff %g", maxd);
    /* position 0 is the identity */
    float y[16];
    memcpy(y, ref, sizeof y);
    sq__rope(y, 2, 8, 8, 0, 10000.0f, 1.0f, NULL);
    CHECK(memcmp(y, ref, sizeof y) == 0);
}

static void test_softmax_swiglu_nll(void)
{
    float x[5] = {1000.0f, 1001.0f, 999.0f, -1e30f, 1000.5f};
    const float sum = sq__softmax(x, 5);
    CHECK(isfinite(sum));
    double tot = 0;
    for (int i = 0; i < 5; i++) tot += x[i];
    CHECK_NEAR(tot, 1.0, 1e-6);
    CHECK(x[1] > x[4] && x[4] > x[0] && x[0] > x[2] && x[3] == 0.0f);

    float g[4] = {-2, 0, 1, 3}, u[4] = {1, 2, 3, 4}, y[4];
    sq__swiglu(g, u, y, 4);
    for (int i = 0; i < 4; i++) CHECK_NEAR(y[i], g[i] / (1 + exp(-g[i])) * u[i], 1e-6);

    float lg[4] = {0.5f, 2.0f, -1.0f, 0.0f};
    double z = 0;
    for (int i = 0; i < 4; i++) z += exp(lg[i]);
    CHECK_NEAR(sq_nll_of(lg, 4, 1), -(2.0 - log(z)), 1e-6);
    CHECK_NEAR(sq_nll_of(lg, 4, 2), -(-1.0 - log(z)), 1e-6);

    double mean, unc;
    sq_mean_and_uncertainty(10.0, 30.0, 5, &mean, &unc);
    CHECK_NEAR(mean, 2.0, 1e-12);
    CHECK(unc == 0.0); /* llama.cpp: no uncertainty with 10 or fewer samples */
    sq_mean_and_uncertainty(20.0, 60.0, 20, &mean, &unc);
    CHECK_NEAR(unc, sqrt((3.0 - 1.0) / 19), 1e-12);

    float r[3] = {1.0f + 1.0f / 2048, 65519.0f, 1e-8f};
    sq__round_fp16(r, 3);
    CHECK(r[0] == 1.0f);
    CHECK(r[1] == 65504.0f);
    CHECK(r[2] == 0.0f);
}

static void test_parse_perm(void)
{
    sq_error e = {0};
    int32_t *a = NULL;
    int64_t n = 0;
    CHECK_INT(sq__parse_int_array(" [3, 0,1 ,2] ", 13, &a, &n, &e), SQ_OK);
    CHECK_INT(n, 4);
    CHECK(a && a[0] == 3 && a[1] == 0 && a[2] == 1 && a[3] == 2);
    free(a);
    CHECK_INT(sq__parse_int_array("[]", 2, &a, &n, &e), SQ_OK);
    CHECK(a == NULL && n == 0);
    CHECK_INT(sq__parse_int_array("[1,2,]", 6, &a, &n, &e), SQ_EFORMAT);
    CHECK_CONTAINS(e.msg, "offset 5");
    CHECK_INT(sq__parse_int_array("[1 2]", 5, &a, &n, &e), SQ_EFORMAT);
    CHECK_INT(sq__parse_int_array("1,2", 3, &a, &n, &e), SQ_EFORMAT);
    CHECK_INT(sq__parse_int_array("[99999999999]", 13, &a, &n, &e), SQ_EFORMAT);
    CHECK_INT(sq__parse_int_array("[1]x", 4, &a, &n, &e), SQ_EFORMAT);
}

static void test_sampler(void)
{
    float lg[50];
    uint64_t s = 7;
    for (int i = 0; i < 50; i++) lg[i] = 2 * frand(&s);
    lg[17] = 5.0f;
    int am = 17;

    sq_sampler_params g = {0.0f, 0, 1.0f, 1};
    sq_sampler *sg = sq_sampler_create(&g);
    CHECK_INT(sq_sampler_sample(sg, lg, 50), am);
    sq_sampler_free(sg);

    /* top-k 1 and a tiny top-p are greedy at any temperature */
    sq_sampler_params k1 = {1.5f, 1, 1.0f, 3};
    sq_sampler_params p0 = {1.5f, 0, 1e-6f, 3};
    sq_sampler *a = sq_sampler_create(&k1), *b = sq_sampler_create(&p0);
    for (int i = 0; i < 20; i++) {
        CHECK_INT(sq_sampler_sample(a, lg, 50), am);
        CHECK_INT(sq_sampler_sample(b, lg, 50), am);
    }
    sq_sampler_free(a);
    sq_sampler_free(b);

    /* same seed, same draws; another seed, other draws */
    sq_sampler_params t = {1.0f, 0, 1.0f, 42};
    sq_sampler *x = sq_sampler_create(&t), *y = sq_sampler_create(&t);
    t.seed = 43;
    sq_sampler *z = sq_sampler_create(&t);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        int32_t tx = sq_sampler_sample(x, lg, 50), ty = sq_sampler_sample(y, lg, 50), tz = sq_sampler_sample(z, lg, 50);
        same &= tx == ty;
        differ += tx != tz;
        CHECK(tx >= 0 && tx < 50);
    }
    CHECK(same);
    CHECK(differ > 0);
    sq_sampler_free(x);
    sq_sampler_free(y);
    sq_sampler_free(z);

    /* the empirical distribution follows softmax(logits / T) */
    float l4[4] = {0.0f, 1.0f, 2.0f, -1.0f};
    sq_sampler_params d = {0.7f, 0, 1.0f, 9};
    sq_sampler *sd = sq_sampler_create(&d);
    int cnt[4] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) cnt[sq_sampler_sample(sd, l4, 4)]++;
    double zz = 0;
    for (int i = 0; i < 4; i++) zz += exp(l4[i] / 0.7);
    for (int i = 0; i < 4; i++) CHECK_NEAR((double)cnt[i] / N, exp(l4[i] / 0.7) / zz, 0.015);
    sq_sampler_free(sd);

    /* top-k 2 never picks outside the two best; top-p 0.8 keeps {2, 1} here (p = .64, .24, .09, .03) */
    sq_sampler_params k2 = {1.0f, 2, 1.0f, 5};
    sq_sampler_params pp = {1.0f, 0, 0.8f, 5};
    sq_sampler *s2 = sq_sampler_create(&k2), *sp = sq_sampler_create(&pp);
    int bad = 0, seen1 = 0;
    for (int i = 0; i < 2000; i++) {
        int32_t u = sq_sampler_sample(s2, l4, 4), v = sq_sampler_sample(sp, l4, 4);
        bad += (u != 1 && u != 2) + (v != 1 && v != 2);
        seen1 += v == 1;
    }
    CHECK_INT(bad, 0);
    CHECK(seen1 > 0);
    sq_sampler_free(s2);
    sq_sampler_free(sp);
    sq_sampler_free(NULL);

    uint64_t st[2];
    sq_rng_seed(st, 0);
    float mn = 1, mx = 0;
    for (int i = 0; i < 10000; i++) {
        float f = sq_rng_uniform(st);
        mn = fminf(mn, f);
        mx = fmaxf(mx, f);
    }
    CHECK(mn >= 0.0f && mn < 0.01f && mx < 1.0f && mx > 0.99f);
}

int main(void)
{
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_softmax_swiglu_nll);
    RUN(test_parse_perm);
    RUN(test_sampler);
    return harness_finish("engine");
}
