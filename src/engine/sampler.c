/*
 * sampler.c — picks the next token from logits: greedy at temperature 0,
 * otherwise temperature, top-k, top-p (nucleus), then a draw from a seeded
 * PRNG (xoroshiro128+, seeded with splitmix64): the same seed and logits give
 * the same tokens on every machine.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sq/engine.h"

/* A candidate token while sampling. */
typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct sq_sampler {
    sq_sampler_params p;
    uint64_t rng[2];
    int cap;
    float *prob;
    int32_t *idx;
    cand *cands;
};

/* splitmix64: spreads a seed over the generator's state. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sq_rng_seed(uint64_t state[2], uint64_t seed)
{
    uint64_t x = seed;
    state[0] = splitmix64(&x);
    state[1] = splitmix64(&x);
    if (!state[0] && !state[1]) state[1] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoroshiro128+: 24 high bits of the next output make a float in [0, 1). */
float sq_rng_uniform(uint64_t s[2])
{
    const uint64_t s0 = s[0];
    uint64_t s1 = s[1];
    const uint64_t r = s0 + s1;
    s1 ^= s0;
    s[0] = rotl(s0, 24) ^ s1 ^ (s1 << 16);
    s[1] = rotl(s1, 37);
    return (float)(r >> 40) * (1.0f / 16777216.0f);
}

sq_sampler *sq_sampler_create(const sq_sampler_params *p)
{
    sq_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (p) s->p = *p;
    else s->p.top_p = 1.0f;
    sq_rng_seed(s->rng, s->p.seed);
    return s;
}

void sq_sampler_free(sq_sampler *s)
{
    if (!s) return;
    free(s->prob);
    free(s->idx);
    free(s->cands);
    free(s);
}

/* Index of the largest logit (the lowest index among equal maxima). */
static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Orders candidates by descending logit, ties by ascending id (the same order
 * with every libc). */
static int cmp_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Partition-free selection of the k largest: a bounded insertion into a
 * sorted list (k is small); used when top-k is set, to avoid sorting the
 * whole vocabulary. */
static int top_k_select(const float *x, int n, int k, int32_t *idx)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m == k && !(x[i] > x[idx[m - 1]])) continue;
        int j = m < k ? m++ : m - 1;
        while (j > 0 && x[i] > x[idx[j - 1]]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    return m;
}

int32_t sq_sampler_sample(sq_sampler *s, const float *logits, int n_vocab)
{
    if (n_vocab <= 0) return -1;
    if (s->p.temp <= 0.0f) return argmax(logits, n_vocab);
    if (s->cap < n_vocab) {
        float *np = realloc(s->prob, sizeof(float) * (size_t)n_vocab);
        if (np) s->prob = np;
        int32_t *ni = realloc(s->idx, sizeof(int32_t) * (size_t)n_vocab);
        if (ni) s->idx = ni;
        cand *nc = realloc(s->cands, sizeof(cand) * (size_t)n_vocab);
        if (nc) s->cands = nc;
        if (!np || !ni || !nc) return argmax(logits, n_vocab); /* out of memory: degrade to greedy */
        s->cap = n_vocab;
    }
    int n;
    if (s->p.top_k > 0 && s->p.top_k < n_vocab) {
        n = top_k_select(logits, n_vocab, s->p.top_k, s->idx);
    } else {
        for (int i = 0; i < n_vocab; i++) s->cands[i] = (cand){logits[i], i};
        qsort(s->cands, (size_t)n_vocab, sizeof(cand), cmp_desc);
        for (int i = 0; i < n_vocab; i++) s->idx[i] = s->cands[i].id;
        n = n_vocab;
    }
    /* softmax of logits / temp over the candidates (sorted descending) */
    const float inv_t = 1.0f / s->p.temp;
    const float max = logits[s->idx[0]];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - max) * inv_t);
        sum += s->prob[i];
    }
    /* top-p: the smallest prefix whose probability reaches top_p */
    if (s->p.top_p > 0.0f && s->p.top_p < 1.0f) {
        double cum = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += s->prob[i] / sum;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += s->prob[i];
    }
    const double r = (double)sq_rng_uniform(s->rng) * sum;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->prob[i];
        if (r < cum) return s->idx[i];
    }
    return s->idx[n - 1];
}
