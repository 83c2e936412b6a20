/*
 * ops.c — the elementwise operations of the forward pass (RMSNorm, RoPE in
 * normal and NeoX mode with YaRN, softmax, SwiGLU, GeGLU, soft-capping) in
 * the order of operations ggml uses, so that our logits stay within float
 * rounding of llama.cpp's; -log p and the mean with its uncertainty as
 * llama-perplexity computes them.
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

/* ggml's rope cache (ggml_rope_cache_init with rope_yarn): the angle starts
 * at pos and is multiplied by base^(-2/n_rot) per pair, in float; a
 * frequency factor divides it, freq_scale multiplies it, YaRN mixes the
 * scaled and unscaled angles over its ramp and raises the magnitude; cos and
 * sin are scaled by attn_factor. Without YaRN and factors this is the plain
 * angle pos * base^(-2i/n_rot) * freq_scale. */
void sq__rope_cache_cfg(float *cache, const sq__rope_cfg *r, int pos)
{
    const float theta_scale = powf(r->base, -2.0f / (float)r->n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < r->n_rot; i0 += 2) {
        const float ff = r->ff ? r->ff[i0 / 2] : 1.0f;
        const float extrap = theta / ff;
        const float interp = r->freq_scale * extrap;
        float t = interp, mscale = r->attn_factor;
        if (r->ext_factor != 0.0f) {
            const float lo = r->corr_dims[0], hi = r->corr_dims[1];
            const float y = ((float)(i0 / 2) - lo) / (hi - lo > 0.001f ? hi - lo : 0.001f);
            const float ramp = (1 - (y < 0 ? 0 : y > 1 ? 1 : y)) * r->ext_factor;
            t = interp * (1 - ramp) + extrap * ramp;
            mscale *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
        }
        cache[i0] = cosf(t) * mscale;
        cache[i0 + 1] = sinf(t) * mscale;
        theta *= theta_scale;
    }
}

/* Rotates each head: llama.cpp's normal mode pairs adjacent entries (2i,
 * 2i+1); NeoX mode pairs entry i with i + n_rot/2. Entries past n_rot are kept. */
void sq__rope_apply_cfg(float *x, int n_heads, int head_dim, const sq__rope_cfg *r, const float *cache)
{
    const int n_rot = r->n_rot, off = r->neox ? n_rot / 2 : 1, step = r->neox ? 1 : 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int i0 = 0; i0 < n_rot; i0 += 2) {
            float *p = v + (i0 / 2) * step;
            const float c = cache[i0], s = cache[i0 + 1];
            const float x0 = p[0], x1 = p[off];
            p[0] = x0 * c - x1 * s;
            p[off] = x0 * s + x1 * c;
        }
    }
}

/* The normal mode without YaRN (see sq__rope_cache_cfg). */
static sq__rope_cfg plain_rope(int n_rot, float base, float scale, const float *ff)
{
    sq__rope_cfg r = {n_rot, false, base, scale, 0.0f, 1.0f, {0, 0}, ff};
    return r;
}

void sq__rope_cache(float *cache, int n_rot, int pos, float base, float scale, const float *ff)
{
    const sq__rope_cfg r = plain_rope(n_rot, base, scale, ff);
    sq__rope_cache_cfg(cache, &r, pos);
}

void sq__rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cache)
{
    const sq__rope_cfg r = plain_rope(n_rot, 10000.0f, 1.0f, NULL);
    sq__rope_apply_cfg(x, n_heads, head_dim, &r, cache);
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

/* SiLU alone, y = x / (1 + e^-x): the activation of an FFN without a gate
 * (a MoE layer whose experts have no gate tensor); y may be x. */
void sq__silu(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* ggml's GELU, tanh approximation, in float. */
float sq__gelu(float x)
{
    const float a = 0.044715f, k = 0.79788456080286535587989211986876f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * x * (1.0f + a * x * x)));
}

/* GeGLU as ggml's CPU backend computes it: its GELU is a table over fp16
 * inputs holding fp16 results, so the input is rounded to fp16 first and
 * the GELU rounded to fp16 after (0 below -10, the input itself above 10). */
void sq__geglu(const float *g, const float *u, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float a = g[i];
        float ga;
        if (a <= -10.0f) ga = 0.0f;
        else if (a >= 10.0f) ga = a;
        else ga = sq_fp16_to_f32(sq_f32_to_fp16(sq__gelu(sq_fp16_to_f32(sq_f32_to_fp16(a)))));
        y[i] = a <= -10.0f ? 0.0f : ga * u[i];
    }
}

/* Soft-capping: c * tanh(x / c), as ggml's scale, tanh, scale. */
void sq__softcap(float *x, int64_t n, float c)
{
    const float inv = 1.0f / c;
    for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i] * inv) * c;
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

