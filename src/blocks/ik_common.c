/*
 * ik_common.c — the searches ik_llama.cpp's quantizers share (see
 * ik_common.h) and the registration of the ik families.
 *
 * Bit-exact with ik: every float expression keeps ik's operand order and its
 * int -> float conversion points; built without FMA contraction.
 */
#include <pthread.h>

#include "ik_common.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Weighted fits of the levels nearest to id*x ("p") and to -id*x ("m", the
 * mirrored block) on table v, accumulated in index order (fused as ik). */
static void fit_pm(const sq__ik_search *s, const int8_t *v, const float *xb, const float *w, int n, float id,
                   float *sqx_p, float *sq2_p, float *sqx_m, float *sq2_m)
{
    float ap = 0, bp = 0, am = 0, bm = 0;
    for (int j = 0; j < n; ++j) {
        const float al = id * xb[j];
        float q = v[sq__ik_nearest(v, s->nlev, al)];
        ap = fmaf(w[j] * q, xb[j], ap);
        bp = fmaf(w[j] * q, q, bp);
        q = v[sq__ik_nearest(v, s->nlev, -al)];
        am = fmaf(w[j] * q, xb[j], am);
        bm = fmaf(w[j] * q, q, bm);
    }
    *sqx_p = ap, *sq2_p = bp, *sqx_m = am, *sq2_m = bm;
}

/* One trial of the search on table v at inverse scale id: takes the p and
 * then the m fit when they beat *best (sumqx^2 > best*sumq2). Returns true
 * when either was taken. */
static bool try_scale(const sq__ik_search *s, const int8_t *v, const float *xb, const float *w, int n, float id,
                      float *d, float *best)
{
    float sqx_p, sq2_p, sqx_m, sq2_m;
    fit_pm(s, v, xb, w, n, id, &sqx_p, &sq2_p, &sqx_m, &sq2_m);
    bool taken = false;
    if (sq2_p > 0 && sqx_p * sqx_p > *best * sq2_p) {
        *d = sqx_p / sq2_p;
        *best = *d * sqx_p;
        taken = true;
    }
    if (sq2_m > 0 && sqx_m * sqx_m > *best * sq2_m) {
        *d = sqx_m / sq2_m;
        *best = *d * sqx_m;
        taken = true;
    }
    return taken;
}

float sq__ik_block_search(const sq__ik_search *s, const float *xb, const float *w, int n, bool *shifted,
                          bool *skipped)
{
    const int8_t *v = s->values, *sv = s->values + s->nlev;
    *shifted = false;
    float amax;
    const float max = sq__signed_absmax(xb, n, &amax);
    *skipped = amax < s->eps;
    if (*skipped) return 0;
    float d = -max / v[0];
    float sqx_p, sq2_p, sqx_m, sq2_m;
    fit_pm(s, v, xb, w, n, 1 / d, &sqx_p, &sq2_p, &sqx_m, &sq2_m);
    float best = 0;
    if (!s->guard_first || sq2_p > 0) {
        d = sqx_p / sq2_p;
        best = d * sqx_p;
    }
    if (sq2_m > 0 && sqx_m * sqx_m > best * sq2_m) {
        d = sqx_m / sq2_m;
        best = d * sqx_m;
    }
    for (int t = -s->ntry; t <= s->ntry; ++t) {
        if (try_scale(s, v, xb, w, n, (float)(t * s->step + v[0]) / max, &d, &best)) *shifted = false;
        if (try_scale(s, sv, xb, w, n, (float)(t * s->step + sv[0]) / max, &d, &best)) *shifted = true;
    }
    return d;
}

float sq__ik_refit(const sq__ik_search *s, bool shifted, const float *xb, const float *w, int n, float d)
{
    const int8_t *v = s->values + s->nlev * shifted;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < n; ++j) {
        const float q = v[sq__ik_nearest(v, s->nlev, id * xb[j])];
        sumqx = fmaf(w[j] * q, xb[j], sumqx);
        sumq2 = fmaf(w[j] * q, q, sumq2);
    }
    return sumq2 > 0 ? sumqx / sumq2 : d;
}

/* l limited to -nmax..nmax-1 */
static inline int clamp_level(int l, int nmax) { return l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l; }

/* Weighted sums of the levels of x at inverse scale iscale (L written when
 * not NULL, offset by nmax). */
static void qx_sums(int n, int nmax, const float *x, const float *qw, float iscale, int8_t *L, float *sumlx,
                    float *suml2)
{
    float a = 0, b = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_level(sq__ik_round_prod(iscale, x[i]), nmax);
        if (L) L[i] = (int8_t)(l + nmax);
        a = fmaf(qw[i] * x[i], (float)l, a);
        b = fmaf(qw[i] * (float)l, (float)l, b);
    }
    *sumlx = a, *suml2 = b;
}

float sq__ik_make_qx(int n, int nmax, const float *x, int8_t *L, const float *qw, float eps)
{
    float amax;
    const float max = sq__signed_absmax(x, n, &amax);
    if (amax < eps) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    qx_sums(n, nmax, x, qw, -nmax / max, L, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float iscale = -(nmax + 0.1f * is) / max;
        qx_sums(n, nmax, x, qw, iscale, NULL, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_sums(n, nmax, x, qw, iscale, L, &sumlx, &suml2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

uint8_t sq__ik_lo[8][256];
static pthread_once_t ik_once = PTHREAD_ONCE_INIT;

/* Fills sq__ik_lo for the 8 level tables (in the order sq__ik_lo_of reads them). */
static void ik_build_luts(void)
{
    const int8_t *tables[8] = {sq__iq3nl_values, sq__iq3nl_values + 8, sq__iq4k_values, sq__iq4k_values + 16,
                               sq__iq5nl_values, sq__iq5nl_values + 32, sq__iq6nl_values, sq__iq6nl_values + 64};
    const int sizes[8] = {8, 8, 16, 16, 32, 32, 64, 64};
    for (int t = 0; t < 8; t++) {
        const int8_t *v = tables[t];
        const int n = sizes[t];
        for (int k = 0; k < 256; k++) {
            int lo = 0;
            while (lo + 1 < n - 1 && v[lo + 1] <= v[0] + k) lo++;
            sq__ik_lo[t][k] = (uint8_t)lo;
        }
    }
}

void sq__ik_init(void) { pthread_once(&ik_once, ik_build_luts); }

void sq__register_ik(sq__kernels table[SQ_TYPE_COUNT], sq__quantize_ws ws[SQ_TYPE_COUNT])
{
    sq__ik_init(); /* the tables the quantizers' level lookups read */
    sq__register_ik_kquants(table);
    sq__register_ik_ksquants(table, ws);
    sq__register_ik_trellis(table);
    sq__register_ik_trellis_quant(ws);
}
