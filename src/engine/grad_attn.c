/*
 * grad_attn.c — causal grouped-query attention of a whole chunk, forward and
 * backward, for the backward pass (grad_internal.h: sq__gattn). The same
 * function as sq__attn_row_fwd / sq__attn_row_bwd (the reference, one query
 * row at a time), computed a block of SQ__GATTN_QB query rows at a time
 * with the f32 matrix kernel sq_sgemm_acc:
 *
 *   forward   S = scale Q K^T (keys up to the block's last row), P = causal
 *             softmax(S) row by row, O = P V
 *   backward  dP = dO V^T, dS = P (dP - rowsum(P dP)) scale,
 *             dQ = dS K, dK += dS^T Q, dV += P^T dO
 *
 * K and V of the head are transposed once into scratch so that every
 * product has its right operand in row order. The forward runs one head per
 * task; the backward one KV head per task (its query heads in turn), since
 * the heads of a group add into the same dK and dV.
 */
#include <math.h>
#include <string.h>

#include "grad_internal.h"
#include "sq/matmul.h"

size_t sq__gattn_scratch_floats(int nb, int hd)
{
    return 2 * (size_t)hd * (size_t)nb + 3 * (size_t)SQ__GATTN_QB * (size_t)nb;
}

/* dst (cols × rows, ld rows) = the transpose of rows × cols at src (ld ss). */
static void transpose(const float *src, size_t ss, int rows, int cols, float *dst, size_t ds)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * ds + (size_t)r] = src[(size_t)r * ss + (size_t)c];
}

/* P (m rows of ld nb) for query rows t0..t0+m of head h: the causal softmax
 * of the scaled scores against keys 0..t0+m (kt: the head's K transposed);
 * entries past a row's own position, or before its window, are 0 (the
 * backward's dS = P (dP - c) is then 0 there too). */
static void block_probs(const sq__gattn *a, int h, int t0, int m, const float *kt, float *P)
{
    const int t1 = t0 + m;
    for (int i = 0; i < m; i++) memset(P + (size_t)i * (size_t)a->nb, 0, sizeof(float) * (size_t)t1);
    sq_sgemm_acc(m, t1, a->hd, a->q + (size_t)t0 * a->qs + (size_t)h * (size_t)a->hd, a->qs, kt, (size_t)a->nb, P,
                 (size_t)a->nb);
    for (int i = 0; i < m; i++) {
        float *p = P + (size_t)i * (size_t)a->nb;
        const int nk = t0 + i + 1, lo = a->window > 0 && nk > a->window ? nk - a->window : 0;
        for (int j = lo; j < nk; j++) p[j] *= a->scale;
        sq__softmax(p + lo, nk - lo);
        for (int j = 0; j < lo; j++) p[j] = 0.0f;
        for (int j = nk; j < t1; j++) p[j] = 0.0f;
    }
}

void sq__gattn_fwd_head(const sq__gattn *a, int h, float *scratch)
{
    const int g = h / (a->n_head / a->n_kv), nb = a->nb, hd = a->hd;
    float *kt = scratch, *P = scratch + 2 * (size_t)hd * (size_t)nb;
    transpose(a->k + (size_t)g * (size_t)hd, a->kvs, nb, hd, kt, (size_t)nb);
    for (int t0 = 0; t0 < nb; t0 += SQ__GATTN_QB) {
        const int m = nb - t0 < SQ__GATTN_QB ? nb - t0 : SQ__GATTN_QB;
        block_probs(a, h, t0, m, kt, P);
        float *o = a->o + (size_t)t0 * a->qs + (size_t)h * (size_t)hd;
        for (int i = 0; i < m; i++) memset(o + (size_t)i * a->qs, 0, sizeof(float) * (size_t)hd);
        sq_sgemm_acc(m, hd, t0 + m, P, (size_t)nb, a->v + (size_t)g * (size_t)hd, a->kvs, o, a->qs);
    }
}

/* dS = P (dP - rowsum(P dP)) * scale in place of dP, for m rows of t1 keys. */
static void softmax_bwd_rows(const float *P, float *dP, int m, int t1, int nb, float scale)
{
    for (int i = 0; i < m; i++) {
        const float *p = P + (size_t)i * (size_t)nb;
        float *d = dP + (size_t)i * (size_t)nb;
        double c = 0.0;
        for (int j = 0; j < t1; j++) c += (double)p[j] * (double)d[j];
        const float cf = (float)c;
        for (int j = 0; j < t1; j++) d[j] = p[j] * (d[j] - cf) * scale;
    }
}

/* One query head's share of the backward: dq of head h written, its terms
 * of dk and dv (KV head g) added. */
static void bwd_head(const sq__gattn *a, int h, int g, const float *kt, const float *vt, float *P, float *dP,
                     float *T1)
{
    const int nb = a->nb, hd = a->hd;
    const size_t hoff = (size_t)h * (size_t)hd, goff = (size_t)g * (size_t)hd;
    for (int t0 = 0; t0 < nb; t0 += SQ__GATTN_QB) {
        const int m = nb - t0 < SQ__GATTN_QB ? nb - t0 : SQ__GATTN_QB, t1 = t0 + m;
        const float *dOb = a->dO + (size_t)t0 * a->qs + hoff;
        const float *qb = a->q + (size_t)t0 * a->qs + hoff;
        block_probs(a, h, t0, m, kt, P);
        for (int i = 0; i < m; i++) memset(dP + (size_t)i * (size_t)nb, 0, sizeof(float) * (size_t)t1);
        sq_sgemm_acc(m, t1, hd, dOb, a->qs, vt, (size_t)nb, dP, (size_t)nb);
        /* dV[0..t1) += P^T dO (before P is reused) */
        transpose(P, (size_t)nb, m, t1, T1, (size_t)m);
        sq_sgemm_acc(t1, hd, m, T1, (size_t)m, dOb, a->qs, a->dv + goff, a->kvs);
        softmax_bwd_rows(P, dP, m, t1, nb, a->scale);
        float *dq = a->dq + (size_t)t0 * a->qs + hoff;
        for (int i = 0; i < m; i++) memset(dq + (size_t)i * a->qs, 0, sizeof(float) * (size_t)hd);
        sq_sgemm_acc(m, hd, t1, dP, (size_t)nb, a->k + goff, a->kvs, dq, a->qs);
        transpose(dP, (size_t)nb, m, t1, T1, (size_t)m);
        sq_sgemm_acc(t1, hd, m, T1, (size_t)m, qb, a->qs, a->dk + goff, a->kvs);
    }
}

void sq__gattn_bwd_kvhead(const sq__gattn *a, int g, float *scratch)
{
    const int nb = a->nb, hd = a->hd, group = a->n_head / a->n_kv;
    float *kt = scratch, *vt = kt + (size_t)hd * (size_t)nb, *P = vt + (size_t)hd * (size_t)nb;
    float *dP = P + (size_t)SQ__GATTN_QB * (size_t)nb, *T1 = dP + (size_t)SQ__GATTN_QB * (size_t)nb;
    const size_t goff = (size_t)g * (size_t)hd;
    transpose(a->k + goff, a->kvs, nb, hd, kt, (size_t)nb);
    transpose(a->v + goff, a->kvs, nb, hd, vt, (size_t)nb);
    for (int t = 0; t < nb; t++) {
        memset(a->dk + (size_t)t * a->kvs + goff, 0, sizeof(float) * (size_t)hd);
        memset(a->dv + (size_t)t * a->kvs + goff, 0, sizeof(float) * (size_t)hd);
    }
    for (int h = g * group; h < (g + 1) * group; h++) bwd_head(a, h, g, kt, vt, P, dP, T1);
}
