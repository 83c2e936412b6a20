/*
 * grad_ops.c — the backward of each elementwise operation and of one
 * attention row (grad_internal.h). Each function mirrors its forward in
 * ops.c / forward.c: same inputs, the gradient of the output in, the
 * gradients of the inputs out. The backward pass is for statistics, not
 * for bit-exactness with ggml, so these are plain f32 loops with double sums
 * where the forward sums in double.
 */
#include <math.h>
#include <string.h>

#include "grad_internal.h"

/* RMSNorm: y_i = x_i r w_i, r = (sum x^2 / n + eps)^-1/2, so
 * dr/dx_i = -r^3 x_i / n and dx_i = r w_i dy_i - x_i r^3 (sum_k w_k dy_k x_k) / n. */
void sq__rmsnorm_bwd(const float *x, const float *w, const float *dy, float *dx, int64_t n, float eps)
{
    double ss = 0.0, dot = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ss += (double)x[i] * (double)x[i];
        dot += (double)(w ? w[i] * dy[i] : dy[i]) * (double)x[i];
    }
    const double r = 1.0 / sqrt(ss / (double)n + (double)eps);
    const float a = (float)r, b = (float)(r * r * r * dot / (double)n);
    for (int64_t i = 0; i < n; i++) dx[i] += a * (w ? w[i] * dy[i] : dy[i]) - b * x[i];
}

/* The forward rotates (x0, x1) by +theta: (x0 c - x1 s, x0 s + x1 c); its
 * transpose rotates by -theta. */
void sq__rope_apply_t(float *x, int n_heads, int head_dim, int n_rot, const float *cache)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            const float c = cache[i0], s = cache[i0 + 1];
            const float y0 = v[i0], y1 = v[i0 + 1];
            v[i0] = y0 * c + y1 * s;
            v[i0 + 1] = -y0 * s + y1 * c;
        }
    }
}

/* sq__rope_apply_cfg pairs entry p with p + off; the forward maps (x0, x1)
 * to (x0 c - x1 s, x0 s + x1 c), its transpose (y0 c + y1 s, -y0 s + y1 c). */
void sq__rope_apply_cfg_t(float *x, int n_heads, int head_dim, const sq__rope_cfg *r, const float *cache)
{
    const int n_rot = r->n_rot, off = r->neox ? n_rot / 2 : 1, step = r->neox ? 1 : 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            float *p = v + (i0 / 2) * step;
            const float c = cache[i0], s = cache[i0 + 1];
            const float y0 = p[0], y1 = p[off];
            p[0] = y0 * c + y1 * s;
            p[off] = -y0 * s + y1 * c;
        }
    }
}

/* y = gelu(g) * u in float, smooth: sq__geglu without the fp16 rounding of
 * ggml's table (a function of the weights the backward pass differentiates
 * exactly; the rounding moves the loss by ~1e-4 of itself). */
void sq__geglu_smooth(const float *g, const float *u, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        y[i] = (x <= -10.0f ? 0.0f : x >= 10.0f ? x : sq__gelu(x)) * u[i];
    }
}

/* gelu(x) = x/2 (1 + tanh(k (x + a x^3))); gelu'(x) = (1 + t)/2 + x/2 (1 - t^2)
 * k (1 + 3 a x^2). As the forward: 0 at or below -10, the identity at or
 * above 10. */
void sq__geglu_bwd(const float *g, const float *u, const float *dy, float *dg, float *du, int64_t n)
{
    const float a = 0.044715f, k = 0.79788456080286535587989211986876f;
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i], d = dy[i];
        float ge, gd;
        if (x <= -10.0f) {
            ge = 0.0f, gd = 0.0f;
        } else if (x >= 10.0f) {
            ge = x, gd = 1.0f;
        } else {
            const float t = tanhf(k * x * (1.0f + a * x * x));
            ge = 0.5f * x * (1.0f + t);
            gd = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * a * x * x);
        }
        dg[i] = d * u[i] * gd;
        du[i] = d * ge;
    }
}

/* silu(g) = g sigma(g); silu'(g) = sigma(g) (1 + g (1 - sigma(g))). */
void sq__swiglu_bwd(const float *g, const float *u, const float *dy, float *dg, float *du, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float a = g[i], sg = 1.0f / (1.0f + expf(-a));
        const float d = dy[i];
        dg[i] = d * u[i] * sg * (1.0f + a * (1.0f - sg));
        du[i] = d * a * sg;
    }
}

void sq__silu_bwd(const float *u, const float *dy, float *du, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float a = u[i], sg = 1.0f / (1.0f + expf(-a));
        du[i] = dy[i] * sg * (1.0f + a * (1.0f - sg));
    }
}

/* Scores, softmax and the value sum of one query row (see the header). */
void sq__attn_row_fwd(const float *q, const float *k, size_t ks, const float *v, size_t vs, int nk, int hd,
                      float scale, float *p, float *o)
{
    for (int j = 0; j < nk; j++) {
        const float *kj = k + (size_t)j * ks;
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * kj[d];
        p[j] = s * scale;
    }
    sq__softmax(p, nk);
    memset(o, 0, sizeof(float) * (size_t)hd);
    for (int j = 0; j < nk; j++) {
        const float *vj = v + (size_t)j * vs;
        for (int d = 0; d < hd; d++) o[d] += p[j] * vj[d];
    }
}

/* o = sum_j p_j v_j with p = softmax(scale q.k_j):
 * dv_j += p_j do; dp_j = do.v_j; ds_j = p_j (dp_j - sum_i p_i dp_i);
 * dq = scale sum_j ds_j k_j; dk_j += scale ds_j q. */
void sq__attn_row_bwd(const float *q, const float *k, size_t ks, const float *v, size_t vs, int nk, int hd,
                      float scale, const float *p, const float *do_, float *dq, float *dk, float *dv, float *dp)
{
    double c = 0.0;
    for (int j = 0; j < nk; j++) {
        const float *vj = v + (size_t)j * vs;
        float *dvj = dv + (size_t)j * vs;
        float s = 0.0f;
        for (int d = 0; d < hd; d++) {
            s += do_[d] * vj[d];
            dvj[d] += p[j] * do_[d];
        }
        dp[j] = s;
        c += (double)p[j] * (double)s;
    }
    const float cf = (float)c;
    memset(dq, 0, sizeof(float) * (size_t)hd);
    for (int j = 0; j < nk; j++) {
        const float ds = p[j] * (dp[j] - cf) * scale;
        const float *kj = k + (size_t)j * ks;
        float *dkj = dk + (size_t)j * ks;
        for (int d = 0; d < hd; d++) {
            dq[d] += ds * kj[d];
            dkj[d] += ds * q[d];
        }
    }
}

/* log softmax in double, the max subtracted before exp; returns the log of
 * the normaliser (log sum exp x). */
double sq__log_softmax(const float *x, int n, double *lp)
{
    double mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    const double lse = mx + log(s);
    for (int i = 0; i < n; i++) lp[i] = (double)x[i] - lse;
    return lse;
}
