/*
 * ops.c — the elementwise operations of the llama forward pass (RMSNorm,
 * RoPE, softmax, SwiGLU) in the order of operations ggml uses, so that our
 * logits stay within float rounding of llama.cpp's; -log p and the mean with
 * its uncertainty as llama-perplexity computes them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

/* RMSNorm as ggml computes it: squares summed in double, one float scale
 * 1/sqrtf(mean + eps), then the elementwise product with the norm weight
 * (ggml_rms_norm followed by ggml_mul). */
void sq__rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale;
}

/* llama.cpp's "normal" RoPE: the pairs are adjacent entries (2i, 2i+1). The
 * angle starts at pos and is multiplied by base^(-2/n_rot) per pair (ggml
 * builds its sin/cos cache this way, in float); a frequency factor divides
 * the angle, and linear scaling multiplies it. Entries past n_rot are kept. */
void sq__rope_cache(float *cache, int n_rot, int pos, float base, float scale, const float *ff)
{
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
        const float f = ff ? ff[i0 / 2] : 1.0f;
        const float t = scale * (theta / f);
        cache[i0] = cosf(t);
        cache[i0 + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void sq__rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cache)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            const float c = cache[i0], s = cache[i0 + 1];
            const float x0 = v[i0], x1 = v[i0 + 1];
            v[i0] = x0 * c - x1 * s;
            v[i0 + 1] = x0 * s + x1 * c;
        }
    }
}

void sq__rope(float *x, int n_heads, int head_dim, int n_rot, int pos, float base, float scale, const float *ff)
{
    float cs[2 * 512];
    float *cache = cs;
    float *heap = NULL;
    if (n_rot > 512) {
        heap = malloc(sizeof(float) * (size_t)n_rot);
        if (!heap) return; /* cannot happen for real models; leaves x unrotated */
        cache = heap;
    }
    sq__rope_cache(cache, n_rot, pos, base, scale, ff);
    sq__rope_apply(x, n_heads, head_dim, n_rot, cache);
    free(heap);
}

/* Softmax in place: subtract the max (no overflow), exponentiate, divide by
 * the sum (accumulated in double as ggml does). Returns the sum. */
float sq__softmax(float *x, int n)
{
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float e = expf(x[i] - max);
        x[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
    return (float)sum;
}

/* SwiGLU: silu(g) * u with silu(x) = x / (1 + e^-x). */
void sq__swiglu(const float *g, const float *u, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float a = g[i];
        y[i] = (a / (1.0f + expf(-a))) * u[i];
    }
}

/* What an f16 cache would hold: each value rounded to the nearest half. */
void sq__round_fp16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = sq_fp16_to_f32(sq_f32_to_fp16(x[i]));
}

/* -log softmax(logits)[tok] as llama-perplexity computes it: float max,
 * double sum of expf(l - max), natural log in double. */
double sq_nll_of(const float *logits, int n_vocab, int32_t tok)
{
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += expf(logits[i] - max);
    return -((double)(logits[tok] - max) - log(sum));
}

/* Mean and standard error of the mean (llama.cpp: 0 with 10 or fewer samples). */
void sq_mean_and_uncertainty(double sum, double sum2, uint64_t count, double *mean, double *unc)
{
    if (count < 1) {
        *mean = 0;
        *unc = 0;
        return;
    }
    const double f = sum / (double)count;
    double df = sum2 / (double)count - f * f;
    df = df > 0 && count > 10 ? sqrt(df / (double)(count - 1)) : 0.0;
    *mean = f;
    *unc = df;
}

