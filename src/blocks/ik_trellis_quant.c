/*
 * ik_trellis_quant.c — quantizers of ik_llama.cpp's trellis types IQ2_KT,
 * IQ3_KT and IQ4_KT, bit-exact with ik's (../shared/golden/ik).
 *
 * A trellis group (8 values for IQ2_KT / IQ3_KT, 4 for IQ4_KT) is one of
 * 2^16 (2^15) seeds, each standing for the group of values the integer
 * recurrence of ik_trellis.c produces from it. Quantizing a group means
 * finding the seed whose values, times the sub-block scale, are nearest to
 * it under the importance weights. ik searches a codebook of all seeds'
 * values through clusters: the codebook is cut into cells (a sign pattern
 * around each dimension's midpoint for 8-value groups, a 5-level grid per
 * dimension for 4-value groups); each seed is listed in the cells of its
 * nearest cell centres, each list padded to a multiple of 8; a group is
 * compared with every seed of the cell it falls in.
 *
 * The codebooks are built once, at first use, thread-safely (pthread_once),
 * in static storage; the quantizers never allocate (scratch comes from the
 * dispatcher, sq__quantize_ws). Float operations follow ik's order,
 * including the 8-lane horizontal sums of ik's AVX2 searches, so the chosen
 * seeds and scales are ik's on any CPU.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "ik_common.h"

#define KT_MAX_VAL 65536
#define KT_MAX_CLUSTER 625

/* A codebook: every seed's values, the cells, and the seeds listed in each
 * cell (ids[start[c] .. start[c + 1]), a multiple of 8). */
typedef struct kt_codebook {
    int group, nval, ncluster, neighbours;
    bool abs_values;
    uint32_t offset;
    float mid[8];
    float *values;     /* nval * group */
    float *centroids;  /* ncluster * group */
    int *start, *ids;
} kt_codebook;

static float values_iq2[KT_MAX_VAL * 8], values_iq3[KT_MAX_VAL * 8], values_iq4[2][KT_MAX_VAL / 2 * 4];
static float cent_iq2[256 * 8], cent_iq3[256 * 8], cent_iq4[2][625 * 4];
static int start_iq2[257], start_iq3[257], start_iq4[2][626];
static int ids_iq2[KT_MAX_VAL * 8 + 256 * 8], ids_iq3[KT_MAX_VAL * 8 + 256 * 8];
static int ids_iq4[2][KT_MAX_VAL / 2 * 6 + 625 * 8];
/* Build scratch (under build_lock): the nearest cells of every seed. */
static int nearest_scratch[KT_MAX_VAL * 8];

static kt_codebook cb_iq2 = {8, 65536, 256, 8, false, 4096, {0}, values_iq2, cent_iq2, start_iq2, ids_iq2};
static kt_codebook cb_iq3 = {8, 65536, 256, 8, true, 4096, {0}, values_iq3, cent_iq3, start_iq3, ids_iq3};
static kt_codebook cb_iq4[2] = {
    {4, 32768, 625, 6, false, 4096, {0}, values_iq4[0], cent_iq4[0], start_iq4[0], ids_iq4[0]},
    {4, 32768, 625, 6, false, 4096 + 32768, {0}, values_iq4[1], cent_iq4[1], start_iq4[1], ids_iq4[1]}};

static inline int imin_kt(int a, int b) { return a < b ? a : b; }
static inline int imax_kt(int a, int b) { return a > b ? a : b; }

/* ------------------------------------------------------------------------
 * Building a codebook
 * ------------------------------------------------------------------------ */

/* Every seed's values: the recurrence of ik_trellis.c from seed + offset. */
static void kt_fill_values(kt_codebook *cb)
{
    for (int i = 0; i < cb->nval; ++i) {
        uint32_t s = (uint32_t)i + cb->offset;
        for (int k = 0; k < cb->group; ++k) {
            s *= 0xCBAC1FEDu;
            const uint32_t b = s & 0x3f3f3f3fu;
            const int sum = (int)(b & 0xFF) + (int)(b >> 8 & 0xFF) + (int)(b >> 16 & 0xFF) + (int)(b >> 24);
            const float v = (float)sum - 126.f;
            cb->values[(size_t)cb->group * i + k] = cb->abs_values ? fabsf(v) : v;
        }
    }
}

/* The cell midpoints of an 8-value codebook: the middle of each dimension's
 * range, or for magnitudes the median (the values being integers 0..126). */
static void kt_midpoints(kt_codebook *cb)
{
    for (int k = 0; k < 8; ++k) {
        if (!cb->abs_values) {
            float lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < cb->nval; ++i) {
                lo = fminf(lo, cb->values[8 * i + k]);
                hi = fmaxf(hi, cb->values[8 * i + k]);
            }
            cb->mid[k] = 0.5f * (lo + hi);
            continue;
        }
        int count[127] = {0};
        for (int i = 0; i < cb->nval; ++i) count[(int)cb->values[8 * i + k]]++;
        int below = 0, m_lo = -1, m_hi = -1; /* P[n/2 - 1] and P[n/2] of the sorted values */
        for (int v = 0; v < 127 && m_hi < 0; ++v) {
            if (m_lo < 0 && below + count[v] > cb->nval / 2 - 1) m_lo = v;
            if (below + count[v] > cb->nval / 2) m_hi = v;
            below += count[v];
        }
        cb->mid[k] = 0.5f * (float)(m_lo + m_hi);
    }
}

/* ik's 5-level bin of a 4-value group's value (the IQ4_KT cells). */
static inline int kt_bin5(float x) { return x < -48.f ? 0 : x < -16.f ? 1 : x < 16.f ? 2 : x < 48.f ? 3 : 4; }

/* Cell of the group v (group values) of codebook cb. */
static int kt_cell(const kt_codebook *cb, const float *v)
{
    int u = 0;
    if (cb->group == 8) {
        for (int k = 0; k < 8; ++k)
            if (v[k] > cb->mid[k]) u |= 1 << k;
    } else {
        for (int k = 0, s = 1; k < 4; ++k, s *= 5) u += s * kt_bin5(v[k]);
    }
    return u;
}

/* Cell centres: the mean of the seeds in each cell (sums in seed order). */
static void kt_centroids(kt_codebook *cb)
{
    static float sump[625 * 8];
    static int counts[625];
    const int g = cb->group;
    memset(sump, 0, sizeof sump);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < cb->nval; ++i) {
        const float *v = cb->values + (size_t)g * i;
        const int u = kt_cell(cb, v);
        counts[u]++;
        for (int k = 0; k < g; ++k) sump[g * u + k] += v[k];
    }
    for (int c = 0; c < cb->ncluster; ++c)
        for (int k = 0; k < g; ++k) cb->centroids[g * c + k] = counts[c] ? sump[g * c + k] / (float)counts[c] : 0.f;
}

/* Squared distance of group v to cell centre c (ik's unrolled loop: fused),
 * or some value >= bound once a partial sum reaches bound (the fused sums of
 * squares only grow, so the full sum would not be below bound either). */
static inline float kt_dist2(const kt_codebook *cb, const float *v, int c, float bound)
{
    const float *vc = cb->centroids + cb->group * c;
    float d2 = 0;
    for (int k = 0; k < cb->group && d2 < bound; ++k) {
        const float d = v[k] - vc[k];
        d2 = fmaf(d, d, d2);
    }
    return d2;
}

/* The cb->neighbours nearest cells of seed i, nearest first (the first on
 * ties), into near[]. */
static void kt_nearest_cells(const kt_codebook *cb, int i, int *near)
{
    float best[8];
    const int nn = cb->neighbours;
    for (int j = 0; j < nn; ++j) best[j] = INFINITY, near[j] = -1;
    const float *v = cb->values + (size_t)cb->group * i;
    for (int c = 0; c < cb->ncluster; ++c) {
        const float d2 = kt_dist2(cb, v, c, best[nn - 1]);
        for (int j = 0; j < nn; ++j) {
            if (d2 < best[j]) {
                for (int k = nn - 1; k > j; --k) best[k] = best[k - 1], near[k] = near[k - 1];
                best[j] = d2, near[j] = c;
                break;
            }
        }
    }
}

/* Whether cell c is among the nearest cells of seed i. */
static bool kt_is_near(const kt_codebook *cb, int i, int c)
{
    for (int j = 0; j < cb->neighbours; ++j)
        if (nearest_scratch[cb->neighbours * i + j] == c) return true;
    return false;
}

/* Pads cell c's list (n seeds, n % 8 != 0) to a multiple of 8 with the seeds
 * nearest to its centre among those not listed, by (distance, seed). */
static int kt_pad_cell(const kt_codebook *cb, int c, int *out, int n)
{
    const int nadd = 8 * ((n + 7) / 8) - n;
    float bd[8];
    int bi[8], have = 0;
    for (int i = 0; i < cb->nval; ++i) {
        const float d2 = kt_dist2(cb, cb->values + (size_t)cb->group * i, c, have == nadd ? bd[nadd - 1] : INFINITY);
        if ((have == nadd && !(d2 < bd[nadd - 1])) || kt_is_near(cb, i, c)) continue;
        int k = have < nadd ? have++ : nadd - 1;
        while (k > 0 && d2 < bd[k - 1]) bd[k] = bd[k - 1], bi[k] = bi[k - 1], --k;
        bd[k] = d2, bi[k] = i;
    }
    for (int k = 0; k < nadd; ++k) out[n + k] = bi[k];
    return n + nadd;
}

/* Lists the seeds of every cell (in seed order), padded to multiples of 8
 * (an empty cell stays empty: its groups search the whole codebook). */
static void kt_lists(kt_codebook *cb)
{
    static int count[626];
    const int nn = cb->neighbours;
    memset(count, 0, sizeof count);
    for (int i = 0; i < cb->nval; ++i) {
        kt_nearest_cells(cb, i, nearest_scratch + nn * i);
        for (int j = 0; j < nn; ++j) count[nearest_scratch[nn * i + j]]++;
    }
    cb->start[0] = 0;
    for (int c = 0; c < cb->ncluster; ++c) cb->start[c + 1] = cb->start[c] + 8 * ((count[c] + 7) / 8);
    memset(count, 0, sizeof count);
    for (int i = 0; i < cb->nval; ++i)
        for (int j = 0; j < nn; ++j) {
            const int c = nearest_scratch[nn * i + j];
            cb->ids[cb->start[c] + count[c]++] = i;
        }
    for (int c = 0; c < cb->ncluster; ++c)
        if (count[c] % 8) kt_pad_cell(cb, c, cb->ids + cb->start[c], count[c]);
}

/* Builds codebook cb (values, cells, lists). */
static void kt_build(kt_codebook *cb)
{
    kt_fill_values(cb);
    if (cb->group == 8) kt_midpoints(cb);
    kt_centroids(cb);
    kt_lists(cb);
}

/* Each codebook is built once (pthread_once); the builds share scratch, so
 * builds of different codebooks are serialized by build_lock. */
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once_iq2 = PTHREAD_ONCE_INIT, once_iq3 = PTHREAD_ONCE_INIT, once_iq4 = PTHREAD_ONCE_INIT;

/* Builds the codebooks cb[0..n) under build_lock. */
static void kt_build_locked(kt_codebook *cb, int n)
{
    pthread_mutex_lock(&build_lock);
    for (int i = 0; i < n; ++i) kt_build(&cb[i]);
    pthread_mutex_unlock(&build_lock);
}

static void build_iq2(void) { kt_build_locked(&cb_iq2, 1); }
static void build_iq3(void) { kt_build_locked(&cb_iq3, 1); }
static void build_iq4(void) { kt_build_locked(cb_iq4, 2); }

/* ------------------------------------------------------------------------
 * Searching a codebook
 * ------------------------------------------------------------------------ */

/* ik's 8-lane horizontal sum of 8 weighted squared differences:
 * ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7)). */
static inline float kt_hsum8(const float *p)
{
    return ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
}

/* Weighted squared distance of seed id's values to the scaled group vx. */
static inline float kt_score(const kt_codebook *cb, int id, const float *vx, const float *w)
{
    const float *q = cb->values + (size_t)cb->group * id;
    float p[8];
    for (int k = 0; k < cb->group; ++k) {
        const float d = q[k] - vx[k];
        p[k] = w[k] * (d * d);
    }
    if (cb->group == 8) return kt_hsum8(p);
    return (p[0] + p[2]) + (p[1] + p[3]);
}

/* Lane of candidate slot t (0..7) in ik's search: candidates j + t fill the
 * lanes in order for 8-value groups; for 4-value groups lanes 0..3 hold
 * slots 0, 2, 4, 6 and lanes 4..7 slots 1, 3, 5, 7. */
static inline int kt_lane(int group, int t) { return group == 8 ? t : (t & 1) * 4 + t / 2; }

/* The best seed among the n (a multiple of 8) seeds list[] (NULL: all seeds
 * 0..n-1) for the scaled group vx: ik's 8-lane search, each lane keeping its
 * first minimum, then the lanes compared in order. */
static int kt_search(const kt_codebook *cb, const int *list, int n, const float *vx, const float *w)
{
    float lane_best[8];
    int lane_idx[8];
    for (int l = 0; l < 8; ++l) lane_best[l] = INFINITY, lane_idx[l] = -1;
    for (int j = 0; j < n; j += 8)
        for (int t = 0; t < 8; ++t) {
            const int id = list ? list[j + t] : j + t, l = kt_lane(cb->group, t);
            const float s = kt_score(cb, id, vx, w);
            if (s < lane_best[l]) lane_best[l] = s, lane_idx[l] = j + t;
        }
    float best = INFINITY;
    int jbest = -1;
    for (int l = 0; l < 8; ++l)
        if (lane_best[l] < best) best = lane_best[l], jbest = lane_idx[l];
    if (jbest < 0) return 0;
    return list ? list[jbest] : jbest;
}

/* ik's find_best_match: for each group of the 32-value block xb, the seed
 * nearest to xb / d in its cell (0 for every group when d is 0). */
static void kt_match(const kt_codebook *cb, float d, const float *xb, const float *w, int *idx)
{
    const int g = cb->group, ng = 32 / g;
    if (!d) {
        memset(idx, 0, sizeof(int) * (size_t)ng);
        return;
    }
    const float id = 1 / d;
    for (int l = 0; l < ng; ++l) {
        float vx[8];
        for (int k = 0; k < g; ++k) vx[k] = id * xb[g * l + k];
        const int c = kt_cell(cb, vx);
        const int n = cb->start[c + 1] - cb->start[c];
        idx[l] = n ? kt_search(cb, cb->ids + cb->start[c], n, vx, w + g * l) : kt_search(cb, NULL, cb->nval, vx, w + g * l);
    }
}

/* ik's find_best_scale over a 32-value block: 8 lanes of fused sums of
 * w q x and w q^2, each summed as ik's hsum_float_8. Returns the scale
 * sumqx/sumq2 and sets *score = sumqx^2/sumq2 (0 and 0 when sumq2 <= 0). */
static float kt_fit(const kt_codebook *cb, const float *xb, const float *w, const int *idx, float *score)
{
    float qx[8] = {0}, q2[8] = {0};
    const int g = cb->group;
    for (int j = 0; j < 32; ++j) {
        const float q = cb->values[(size_t)g * idx[j / g] + j % g], qw = q * w[j];
        qx[j % 8] = fmaf(qw, xb[j], qx[j % 8]);
        q2[j % 8] = fmaf(qw, q, q2[j % 8]);
    }
    const float sumqx = ((qx[0] + qx[4]) + (qx[2] + qx[6])) + ((qx[1] + qx[5]) + (qx[3] + qx[7]));
    const float sumq2 = ((q2[0] + q2[4]) + (q2[2] + q2[6])) + ((q2[1] + q2[5]) + (q2[3] + q2[7]));
    if (!(sumq2 > 0)) {
        *score = 0;
        return 0;
    }
    *score = sumqx * sumqx / sumq2;
    return sumqx / sumq2;
}

/* ------------------------------------------------------------------------
 * Weights and the row scale
 * ------------------------------------------------------------------------ */

/* ik's set_weights for one 256-value super-block (sigma2 = 2 * mean x^2):
 * with an imatrix qw * sqrt(sigma2 + x^2) per value (a 32-value block whose
 * sums degenerate gets 1e-4), without 0.25 sigma2 + x^2; a super-block of
 * (almost) zeros gets 1e-4 everywhere. ik's build fuses sigma2 + x^2 in its
 * IQ3_KT instance (fused) but not in IQ2_KT's and IQ4_KT's, as the goldens
 * show. */
static void kt_weights(const float *x, const float *qw, bool fused, float *w)
{
    float sumx2 = 0;
    for (int j = 0; j < 256; ++j) sumx2 = sumx2 + x[j] * x[j];
    if (sumx2 < 1e-14f * 256) {
        for (int j = 0; j < 256; ++j) w[j] = 1e-4f;
        return;
    }
    const float sigma2 = 2.0f * sumx2 / 256;
    if (!qw) {
        const float s4 = 0.25f * sigma2;
        for (int j = 0; j < 256; ++j) w[j] = fmaf(x[j], x[j], s4);
        return;
    }
    for (int ib = 0; ib < 8; ++ib) {
        const float *xb = x + 32 * ib, *q = qw + 32 * ib;
        float *wb = w + 32 * ib;
        float sumwx = 0, sumw2 = 0, sx2 = 0;
        for (int j = 0; j < 32; ++j) {
            wb[j] = q[j] * sqrtf(fused ? fmaf(xb[j], xb[j], sigma2) : sigma2 + xb[j] * xb[j]);
            sumwx = sumwx + wb[j] * fabsf(xb[j]);
            sumw2 = sumw2 + wb[j] * wb[j];
            sx2 = sx2 + xb[j] * xb[j];
        }
        if (sx2 < 1e-14f || sumw2 < 1e-14f || sumwx < 1e-14f)
            for (int j = 0; j < 32; ++j) wb[j] = 1e-4f;
    }
}

/* Largest |x| of n values. */
static float kt_amax(const float *x, int64_t n)
{
    float m = 0;
    for (int64_t j = 0; j < n; ++j) m = fmaxf(m, fabsf(x[j]));
    return m;
}

/* Starts a trellis row: clears its scale and blocks (block_bytes each) and,
 * unless the row is all zeros, fills the weights w. Returns the row's
 * largest |x| (0: the row stays zero). */
static float kt_row_start(const float *x, void *vy, int64_t n, size_t block_bytes, const float *imatrix, bool fused,
                          float *w)
{
    memset(vy, 0, 4 + block_bytes * (size_t)(n / 256));
    const float amax_row = kt_amax(x, n);
    if (amax_row)
        for (int64_t i = 0; i < n / 256; ++i) kt_weights(x + 256 * i, imatrix ? imatrix + 256 * i : NULL, fused, w + 256 * i);
    return amax_row;
}

/* ------------------------------------------------------------------------
 * IQ2_KT
 * ------------------------------------------------------------------------ */

/* Scratch of the trellis quantizers (per 256 values): weights, block scales,
 * group seeds, and (IQ3_KT) the chosen magnitudes. */
#define KT_WS_PER_256 (256 + 8 + 32 + 256)

/* The first pass of IQ2_KT over block xb: seeds for +-amax/scale_0 and the
 * better fit's scale; idx gets its seeds. */
static float iq2_kt_block_scale(const float *xb, const float *w, float amax_row, int *idx)
{
    float amax = kt_amax(xb, 32);
    if (amax < 1e-16f) {
        memset(idx, 0, 4 * sizeof(int));
        return 0.0f;
    }
    const float scale_0 = fmaxf(90.f, 124.f * amax / amax_row);
    int ip[4], im[4];
    float score_p, score_m;
    kt_match(&cb_iq2, amax / scale_0, xb, w, ip);
    const float dp = kt_fit(&cb_iq2, xb, w, ip, &score_p);
    kt_match(&cb_iq2, -amax / scale_0, xb, w, im);
    const float dm = kt_fit(&cb_iq2, xb, w, im, &score_m);
    memcpy(idx, score_p > score_m ? ip : im, 4 * sizeof(int));
    return score_p > score_m ? dp : dm;
}

/* Adds w x q to *sqx and w q^2 to *sq2: fused (the final passes, whose
 * loops also store seeds) or plain (the row-scale tries, pure reductions). */
static inline void kt_acc(float w, float x, float q, bool fused, float *sqx, float *sq2)
{
    if (fused) {
        *sqx = fmaf(w * x, q, *sqx);
        *sq2 = fmaf(w * q, q, *sq2);
    } else {
        *sqx = *sqx + w * x * q;
        *sq2 = *sq2 + w * q * q;
    }
}

/* IQ2_KT's row scale: from max_scale / -127, 19 tries of the inverse scale
 * (t - 127) / max_scale, each block scale rounded to IQ4_K's table; the fit
 * with the largest sumqx^2/sumq2 gives d = sumqx/sumq2. */
static float iq2_kt_row_scale(const float *x, const float *w, const float *scales, const int *idx, int nb32,
                              float max_scale)
{
    float d = max_scale / sq__iq4k_values[0], best = 0;
    for (int itry = -9; itry <= 9; ++itry) {
        const float id = (float)(itry + sq__iq4k_values[0]) / max_scale;
        float sumqx = 0, sumq2 = 0;
        for (int ib = 0; ib < nb32; ++ib) {
            const float dl = sq__iq4k_values[sq__ik_nearest(sq__iq4k_values, 16, id * scales[ib])];
            for (int j = 0; j < 32; ++j) {
                const float q = dl * cb_iq2.values[8 * idx[4 * ib + j / 8] + j % 8];
                kt_acc(w[32 * ib + j], x[32 * ib + j], q, false, &sumqx, &sumq2);
            }
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
    }
    return d;
}

/* Weighted squared error of block xb as dl times the seeds idx. */
static float kt_block_mse(const kt_codebook *cb, const float *xb, const float *w, const int *idx, float dl)
{
    float mse = 0;
    for (int j = 0; j < 32; ++j) {
        const float q = cb->values[(size_t)cb->group * idx[j / cb->group] + j % cb->group];
        const float diff = fmaf(-dl, q, xb[j]);
        mse = mse + w[j] * diff * diff;
    }
    return mse;
}

/* IQ2_KT's final pass over a row: each block's seeds for its rounded scale
 * (kept from the first pass when those fit better), then the row scale
 * refitted to the seeds. */
static float iq2_kt_final(const float *x, const float *w, int *idx, int nblock, sq__block_iq2_kt *y, float d)
{
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 8 * nblock; ++ib) {
        sq__block_iq2_kt *b = &y[ib / 8];
        const int ls = sq__iq4k_values[b->scales[ib % 8 % 4] >> 4 * (ib % 8 / 4) & 0xF];
        const float dl = d * ls, *xb = x + 32 * ib, *wb = w + 32 * ib;
        int best[4], *prev = idx + 4 * ib;
        kt_match(&cb_iq2, dl, xb, wb, best);
        if (kt_block_mse(&cb_iq2, xb, wb, prev, dl) < kt_block_mse(&cb_iq2, xb, wb, best, dl))
            memcpy(best, prev, sizeof best);
        else
            memcpy(prev, best, sizeof best);
        for (int j = 0; j < 32; ++j) {
            if (j % 8 == 0) {
                b->ql[2 * (4 * (ib % 8) + j / 8)] = (uint8_t)best[j / 8];
                b->ql[2 * (4 * (ib % 8) + j / 8) + 1] = (uint8_t)(best[j / 8] >> 8);
            }
            const float q = cb_iq2.values[8 * best[j / 8] + j % 8] * (float)ls;
            kt_acc(wb[j], xb[j], q, true, &sumqx, &sumq2);
        }
    }
    return sumq2 > 0 ? sumqx / sumq2 : NAN;
}

/* IQ2_KT: per 32-value block a first fit of seeds and scale, the row scale
 * over all blocks, 4-bit scale indices, then the final pass. */
static void quantize_iq2_kt(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    pthread_once(&once_iq2, build_iq2);
    const int nblock = (int)(n / 256);
    float *w = work, *scales = work + n;
    int *idx = (int *)(scales + n / 32);
    sq__block_iq2_kt *y = (sq__block_iq2_kt *)((char *)vy + 4);
    const float amax_row = kt_row_start(x, vy, n, sizeof *y, imatrix, false, w);
    if (!amax_row) return;
    float amax_scale = 0, max_scale = 0;
    for (int ib = 0; ib < 8 * nblock; ++ib) {
        scales[ib] = iq2_kt_block_scale(x + 32 * ib, w + 32 * ib, amax_row, idx + 4 * ib);
        if (fabsf(scales[ib]) > amax_scale) amax_scale = fabsf(scales[ib]), max_scale = scales[ib];
    }
    float d = 0;
    if (max_scale) d = iq2_kt_row_scale(x, w, scales, idx, 8 * nblock, max_scale);
    memcpy(vy, &d, sizeof d);
    if (!max_scale || !d) return;
    const float id = 1 / d;
    for (int i = 0; i < nblock; ++i)
        for (int ib = 0; ib < 4; ++ib) {
            const int l1 = sq__ik_nearest(sq__iq4k_values, 16, id * scales[8 * i + ib]);
            const int l2 = sq__ik_nearest(sq__iq4k_values, 16, id * scales[8 * i + ib + 4]);
            y[i].scales[ib] = (uint8_t)(l1 | l2 << 4);
        }
    const float d2 = iq2_kt_final(x, w, idx, nblock, y, d);
    if (!isnan(d2)) memcpy(vy, &d2, sizeof d2);
}

/* ------------------------------------------------------------------------
 * IQ3_KT
 * ------------------------------------------------------------------------ */

/* The first pass of IQ3_KT over the magnitudes xa of a block: 7 tries of
 * amax / (scale_0 + 8 t); the best fit's scale, its seeds' values into qv
 * (32 floats). Returns 0 for a block of (almost) zeros, qv untouched. */
static float iq3_kt_block_scale(const float *xa, const float *w, float amax_row, float *qv)
{
    const float amax = kt_amax(xa, 32);
    if (amax < 1e-16f) return 0.0f;
    const float scale_0 = fmaxf(84.f, 123.f * amax / amax_row);
    float best = 0, scale = 0;
    int idx[4], keep[4] = {0};
    for (int itry = -3; itry <= 3; ++itry) {
        float score;
        kt_match(&cb_iq3, amax / fmaf(8.0f, (float)itry, scale_0), xa, w, idx);
        const float d = kt_fit(&cb_iq3, xa, w, idx, &score);
        if (score > best) best = score, scale = d, memcpy(keep, idx, sizeof keep);
    }
    for (int j = 0; j < 32; ++j) qv[j] = cb_iq3.values[8 * keep[j / 8] + j % 8];
    return scale;
}

/* IQ3_KT's row scale: 19 tries of the inverse scale (15 + 0.2 t)/max_scale
 * with block scales rounded to 0..15 against the first pass's values qv. */
static float iq3_kt_row_scale(const float *x, const float *w, const float *scales, const float *qv, int nb32,
                              float max_scale)
{
    float d = max_scale / 15, best = 0;
    for (int itry = -9; itry <= 9; ++itry) {
        const float id = fmaf((float)itry, 0.2f, 15.f) / max_scale;
        float sumqx = 0, sumq2 = 0;
        for (int ib = 0; ib < nb32; ++ib) {
            const float dl = (float)imax_kt(0, imin_kt(15, sq__ik_round_prod(id, scales[ib])));
            for (int j = 0; j < 32; ++j) kt_acc(w[32 * ib + j], fabsf(x[32 * ib + j]), dl * qv[32 * ib + j], false, &sumqx, &sumq2);
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
    }
    return d;
}

/* IQ3_KT's final pass: signs into qh, seeds of the magnitudes for each
 * block's rounded scale, the row scale refitted. */
static float iq3_kt_final(const float *x, const float *w, int nblock, sq__block_iq3_kt *y, float d)
{
    float sumqx = 0, sumq2 = 0, xa[32];
    for (int ib = 0; ib < 8 * nblock; ++ib) {
        sq__block_iq3_kt *b = &y[ib / 8];
        const float *xb = x + 32 * ib, *wb = w + 32 * ib;
        if (ib % 8 == 0) memset(b->qh, 0, sizeof b->qh);
        for (int j = 0; j < 32; ++j) {
            xa[j] = fabsf(xb[j]);
            if (xb[j] < 0) b->qh[j] |= (uint8_t)(1 << ib % 8);
        }
        const int ls = b->scales[ib % 8 % 4] >> 4 * (ib % 8 / 4) & 0xF;
        int idx[4];
        kt_match(&cb_iq3, d * ls, xa, wb, idx);
        for (int j = 0; j < 32; ++j) {
            if (j % 8 == 0) {
                b->ql[2 * (4 * (ib % 8) + j / 8)] = (uint8_t)idx[j / 8];
                b->ql[2 * (4 * (ib % 8) + j / 8) + 1] = (uint8_t)(idx[j / 8] >> 8);
            }
            kt_acc(wb[j], xa[j], cb_iq3.values[8 * idx[j / 8] + j % 8] * (float)ls, true, &sumqx, &sumq2);
        }
    }
    return sumq2 > 0 ? sumqx / sumq2 : NAN;
}

/* IQ3_KT: magnitudes with sign bits; per block a first fit, the row scale
 * over all blocks, 4-bit unsigned scales, then the final pass. */
static void quantize_iq3_kt(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    pthread_once(&once_iq3, build_iq3);
    const int nblock = (int)(n / 256);
    float *w = work, *scales = work + n, *qv = scales + n / 32, xa[32];
    sq__block_iq3_kt *y = (sq__block_iq3_kt *)((char *)vy + 4);
    const float amax_row = kt_row_start(x, vy, n, sizeof *y, imatrix, true, w);
    if (!amax_row) return;
    float amax_scale = 0, max_scale = 0;
    for (int ib = 0; ib < 8 * nblock; ++ib) {
        for (int j = 0; j < 32; ++j) xa[j] = fabsf(x[32 * ib + j]);
        scales[ib] = iq3_kt_block_scale(xa, w + 32 * ib, amax_row, qv + 32 * ib);
        if (scales[ib] == 0.0f) memset(qv + 32 * ib, 0, 32 * sizeof(float));
        if (fabsf(scales[ib]) > amax_scale) amax_scale = fabsf(scales[ib]), max_scale = scales[ib];
    }
    float d = iq3_kt_row_scale(x, w, scales, qv, 8 * nblock, max_scale);
    const float id = d ? 1 / d : 0.f;
    for (int i = 0; i < nblock; ++i)
        for (int ib = 0; ib < 4; ++ib) {
            const int l1 = imax_kt(0, imin_kt(15, sq__ik_round_prod(id, scales[8 * i + ib])));
            const int l2 = imax_kt(0, imin_kt(15, sq__ik_round_prod(id, scales[8 * i + ib + 4])));
            y[i].scales[ib] = (uint8_t)(l1 | l2 << 4);
        }
    memcpy(vy, &d, sizeof d);
    const float d2 = iq3_kt_final(x, w, nblock, y, d);
    if (!isnan(d2)) memcpy(vy, &d2, sizeof d2);
}

/* ------------------------------------------------------------------------
 * IQ4_KT
 * ------------------------------------------------------------------------ */

/* Tries inverse scale 1/dt on block xb with codebook cb: when the fit beats
 * *best, *best and *scale take it and true is returned. */
static bool iq4_kt_try(const kt_codebook *cb, float dt, const float *xb, const float *w, float *best, float *scale)
{
    int idx[8];
    float score;
    kt_match(cb, dt, xb, w, idx);
    const float d = kt_fit(cb, xb, w, idx, &score);
    if (!(score > *best)) return false;
    *best = score, *scale = d;
    return true;
}

/* The first pass of IQ4_KT over a block: 5 x 2 tries without the seed
 * offset, the best scale once with it, 5 x 2 tries with it; *offset tells
 * whether the offset codebook won. Returns the block scale. */
static float iq4_kt_block_scale(const float *xb, const float *w, float amax_row, bool *offset)
{
    *offset = false;
    const float amax = kt_amax(xb, 32);
    if (amax < 1e-16f) return 0;
    const float scale_0 = fmaxf(90.f, 124.f * amax / amax_row);
    float best = 0, scale = 0, s0;
    for (int itry = -2; itry <= 2; ++itry) {
        const float div = fmaf(8.f, (float)itry, scale_0);
        iq4_kt_try(&cb_iq4[0], amax / div, xb, w, &best, &scale);
        iq4_kt_try(&cb_iq4[0], -amax / div, xb, w, &best, &scale);
    }
    float b2 = best; /* the offset codebook at the best scale: taken when better, best unchanged */
    if (iq4_kt_try(&cb_iq4[1], scale, xb, w, &b2, &s0)) scale = s0, *offset = true;
    for (int itry = -2; itry <= 2; ++itry) {
        const float div = fmaf(8.f, (float)itry, scale_0);
        if (iq4_kt_try(&cb_iq4[1], amax / div, xb, w, &best, &scale)) *offset = true;
        if (iq4_kt_try(&cb_iq4[1], -amax / div, xb, w, &best, &scale)) *offset = true;
    }
    return scale;
}

/* Stores the 8 seeds of block ib (0..7) into an IQ4_KT block: 3 high bits
 * into the block's word, 8 low bits into ql, 4 middle bits into qh. */
static void iq4_kt_store(sq__block_iq4_kt *b, int ib, const int *idx)
{
    uint8_t *ql = (uint8_t *)(b->qs + 8), *qh = ql + 64;
    for (int j = 0; j < 8; ++j) {
        const int g = 8 * ib + j;
        b->qs[ib] |= (uint32_t)(idx[j] >> 12) << (8 + 3 * j);
        ql[g] = (uint8_t)(idx[j] & 255);
        qh[g % 32] |= (uint8_t)(((idx[j] >> 8) & 0xF) << 4 * (g / 32));
    }
}

/* IQ4_KT's final pass: per block the 7-bit scale and the seeds for it, the
 * row scale refitted. */
static float iq4_kt_final(const float *x, const float *w, const float *scales, int nblock, sq__block_iq4_kt *y,
                          float d)
{
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < 8 * nblock; ++ib) {
        sq__block_iq4_kt *b = &y[ib / 8];
        if (ib % 8 == 0) memset((uint8_t *)(b->qs + 8) + 64, 0, 32);
        const kt_codebook *cb = &cb_iq4[b->qs[ib % 8] & 1];
        const float *xb = x + 32 * ib, *wb = w + 32 * ib;
        const int ls = imin_kt(sq__ik_round_prod(id, scales[ib]), 63);
        b->qs[ib % 8] = (b->qs[ib % 8] & ~0xFFu) | (uint8_t)(((ls + 64) << 1) | (b->qs[ib % 8] & 1));
        int idx[8];
        kt_match(cb, d * ls, xb, wb, idx);
        iq4_kt_store(b, ib % 8, idx);
        for (int j = 0; j < 32; ++j) kt_acc(wb[j], xb[j], cb->values[4 * idx[j / 4] + j % 4] * (float)ls, true, &sumqx, &sumq2);
    }
    return sumq2 > 0 ? sumqx / sumq2 : NAN;
}

/* IQ4_KT: per block a first fit (with or without the seed offset), the row
 * scale -max_scale/64, then the final pass. */
static void quantize_iq4_kt(const float *x, void *vy, int64_t n, const float *imatrix, float *work)
{
    pthread_once(&once_iq4, build_iq4);
    const int nblock = (int)(n / 256);
    float *w = work, *scales = work + n;
    sq__block_iq4_kt *y = (sq__block_iq4_kt *)((char *)vy + 4);
    const float amax_row = kt_row_start(x, vy, n, sizeof *y, imatrix, false, w);
    if (!amax_row) return;
    float amax_scale = 0, max_scale = 0;
    for (int ib = 0; ib < 8 * nblock; ++ib) {
        bool offset;
        scales[ib] = iq4_kt_block_scale(x + 32 * ib, w + 32 * ib, amax_row, &offset);
        if (offset) y[ib / 8].qs[ib % 8] = 1;
        if (fabsf(scales[ib]) > amax_scale) amax_scale = fabsf(scales[ib]), max_scale = scales[ib];
    }
    const float d = -max_scale / 64;
    memcpy(vy, &d, sizeof d);
    if (!d) return;
    const float d2 = iq4_kt_final(x, w, scales, nblock, y, d);
    if (!isnan(d2)) memcpy(vy, &d2, sizeof d2);
}

void sq__register_ik_trellis_quant(sq__quantize_ws ws[SQ_TYPE_COUNT])
{
    ws[SQ_TYPE_IQ2_KT] = (sq__quantize_ws){quantize_iq2_kt, KT_WS_PER_256};
    ws[SQ_TYPE_IQ3_KT] = (sq__quantize_ws){quantize_iq3_kt, KT_WS_PER_256};
    ws[SQ_TYPE_IQ4_KT] = (sq__quantize_ws){quantize_iq4_kt, KT_WS_PER_256};
}
