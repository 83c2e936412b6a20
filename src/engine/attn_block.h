/*
 * attn_block.h — the SIMD body of sq__attn_block (engine_internal.h), written
 * once over a float vector of AV_W lanes and included by attn_avx2.c (8 lanes)
 * and attn_avx512.c (16 lanes), which define the AV_* macros first.
 *
 * A block is up to SQ_ATTN_ROWS query rows sharing one KV head. The scores
 * are an outer product over the head dimensions: per dimension d one vector
 * of AV_KB*AV_W consecutive keys from the transposed K cache is multiplied by
 * the row's q[d] (broadcast), so no horizontal sum is needed. The value sum keeps AV_DV vectors of each row's
 * output in registers while the value rows stream past, keys in order (the
 * same per-dimension FMA chain as a one-row loop). The softmax between them
 * takes expf per score, as the reference does.
 *
 * Needs: AV (vector type), AV_W, AV_KB (key vectors per score tile), AV_DV
 * (output vectors per value tile), AV_ZERO, AV_LOAD, AV_STORE, AV_SET1,
 * AV_FMA, AV_ADD, AV_MUL, AV_MAX, AV_HMAX, AV_ROUND16 (through fp16 and back), and
 * AV_FN (the function's name), AV_FALLBACK (the kernel for shapes this one
 * does not take: head sizes that are not a multiple of AV_DV*AV_W, or of 8);
 * optionally AV_SOFTMAX_ROWS(b, M), a softmax
 * of all the block's rows at once with the results of av_softmax's.
 */
#include <math.h>

#define AV_INLINE static inline __attribute__((always_inline))

/* Scores of M rows against keys [0, nk) (nk rounded up to whole tiles), in
 * the summation order of the one-row AVX2 kernel this replaced, so that
 * results stay bit for bit what they were: eight partial sums, partial k
 * over dimensions k, k+8, k+16, ... (one FMA chain), combined as
 * ((p0+p1)+(p2+p3))+((p4+p5)+(p6+p7)); that kernel took four keys per
 * horizontal add, and the last nk mod 4 keys of a row one at a time, combined
 * as ((p0+p4)+(p2+p6))+((p1+p5)+(p3+p7)): those few are redone in scalar. One
 * row at a time: the K tile (hd × AV_KB*AV_W keys) stays in L1 across rows. */
AV_INLINE void av_scores(const sq__attn_block *b, int nk, const int M)
{
    const AV vs = AV_SET1(b->scale);
    const int hd = b->hd;
    for (int j = 0; j < nk; j += AV_KB * AV_W) {
        const float *kt0 = b->kt + j;
        for (int r = 0; r < M; r++) {
            const float *q = b->q[r];
            AV acc[8][AV_KB];
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)
                _Pragma("GCC unroll 4") for (int t = 0; t < AV_KB; t++) acc[k][t] = AV_ZERO();
            const float *kt = kt0;
            for (int d = 0; d < hd; d += 8)
                _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++, kt += b->kt_stride) {
                    const AV qd = AV_SET1(q[d + k]);
                    _Pragma("GCC unroll 4") for (int t = 0; t < AV_KB; t++)
                        acc[k][t] = AV_FMA(AV_LOAD(kt + t * AV_W), qd, acc[k][t]);
                }
            float *s = b->sc + (size_t)r * b->sc_stride + j;
            _Pragma("GCC unroll 4") for (int t = 0; t < AV_KB; t++) {
                const AV lo = AV_ADD(AV_ADD(acc[0][t], acc[1][t]), AV_ADD(acc[2][t], acc[3][t]));
                const AV hi = AV_ADD(AV_ADD(acc[4][t], acc[5][t]), AV_ADD(acc[6][t], acc[7][t]));
                AV_STORE(s + t * AV_W, AV_MUL(AV_ADD(lo, hi), vs));
            }
        }
    }
    for (int r = 0; r < M; r++) {
        const float *q = b->q[r];
        for (int j = b->nk[r] & ~3; j < b->nk[r]; j++) {
            float p[8];
            for (int k = 0; k < 8; k++) {
                p[k] = 0.0f;
                for (int d = k; d < hd; d += 8) p[k] = fmaf(b->kt[(size_t)d * b->kt_stride + (size_t)j], q[d], p[k]);
            }
            b->sc[(size_t)r * b->sc_stride + (size_t)j] = (((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]))) * b->scale;
        }
    }
}

/* Softmax of one row of n scores in place, rounded to fp16 when asked. */
AV_INLINE void av_softmax(float *s, int n, bool f16)
{
    int j = 0;
    AV vm = AV_SET1(-INFINITY);
    for (; j + AV_W <= n; j += AV_W) vm = AV_MAX(vm, AV_LOAD(s + j));
    float mx = AV_HMAX(vm);
    for (; j < n; j++)
        if (s[j] > mx) mx = s[j];
    double sum = 0.0;
    for (j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += (double)s[j];
    }
    const float invs = (float)(1.0 / sum);
    const AV inv = AV_SET1(invs);
    for (j = 0; j + AV_W <= n; j += AV_W) {
        const AV p = AV_MUL(AV_LOAD(s + j), inv);
        AV_STORE(s + j, f16 ? AV_ROUND16(p) : p);
    }
    for (; j < n; j++) {
        s[j] *= invs;
        if (f16) s[j] = sq_fp16_to_f32(sq_f32_to_fp16(s[j]));
    }
}

/* o_r = Σ_j p_rj v_j for M rows: keys every row attends are shared, each row's
 * remaining keys (causal tails) follow in order. */
AV_INLINE void av_values(const sq__attn_block *b, int nmin, const int M)
{
    const float *p[SQ_ATTN_ROWS];
    for (int r = 0; r < M; r++) p[r] = b->sc + (size_t)r * b->sc_stride;
    for (int d0 = 0; d0 < b->hd; d0 += AV_DV * AV_W) {
        AV acc[SQ_ATTN_ROWS][AV_DV];
        _Pragma("GCC unroll 8") for (int r = 0; r < M; r++)
            _Pragma("GCC unroll 4") for (int t = 0; t < AV_DV; t++) acc[r][t] = AV_ZERO();
        const float *v = b->v + d0;
        for (int j = 0; j < nmin; j++, v += b->v_stride) {
            AV vv[AV_DV];
            _Pragma("GCC unroll 4") for (int t = 0; t < AV_DV; t++) vv[t] = AV_LOAD(v + t * AV_W);
            _Pragma("GCC unroll 8") for (int r = 0; r < M; r++) {
                const AV pj = AV_SET1(p[r][j]);
                _Pragma("GCC unroll 4") for (int t = 0; t < AV_DV; t++) acc[r][t] = AV_FMA(vv[t], pj, acc[r][t]);
            }
        }
        _Pragma("GCC unroll 8") for (int r = 0; r < M; r++) {
            for (int j = nmin; j < b->nk[r]; j++) {
                const float *vj = b->v + (size_t)j * b->v_stride + d0;
                const AV pj = AV_SET1(p[r][j]);
                _Pragma("GCC unroll 4") for (int t = 0; t < AV_DV; t++)
                    acc[r][t] = AV_FMA(AV_LOAD(vj + t * AV_W), pj, acc[r][t]);
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < AV_DV; t++) AV_STORE(b->o[r] + d0 + t * AV_W, acc[r][t]);
        }
    }
}

AV_INLINE void av_block(const sq__attn_block *b, const int M)
{
    int nmax = 0, nmin = b->nk[0];
    for (int r = 0; r < M; r++) {
        if (b->nk[r] > nmax) nmax = b->nk[r];
        if (b->nk[r] < nmin) nmin = b->nk[r];
    }
    av_scores(b, nmax, M);
#ifdef AV_SOFTMAX_ROWS
    AV_SOFTMAX_ROWS(b, M);
#else
    for (int r = 0; r < M; r++) av_softmax(b->sc + (size_t)r * b->sc_stride, b->nk[r], b->f16);
#endif
    av_values(b, nmin, M);
}

void AV_FN(const sq__attn_block *b)
{
    if (b->hd % 8 != 0 || b->hd % (AV_DV * AV_W) != 0 || b->m < 1 || b->m > SQ_ATTN_ROWS) {
        AV_FALLBACK(b);
        return;
    }
    switch (b->m) {
    case 1: av_block(b, 1); break;
    case 2: av_block(b, 2); break;
    case 3: av_block(b, 3); break;
    case 4: av_block(b, 4); break;
    case 5: av_block(b, 5); break;
    case 6: av_block(b, 6); break;
    case 7: av_block(b, 7); break;
    default: av_block(b, 8); break;
    }
}

#undef AV_INLINE
