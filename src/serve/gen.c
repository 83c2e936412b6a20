/*
 * gen.c — the generation loop of one request on one context: evaluate the
 * prompt, then one token per sq_gen_step(), with stop strings and streaming
 * in mind.
 *
 * Text handed out is final: a piece that might be the beginning of a stop
 * string, or an incomplete UTF-8 character, is held back until the next
 * token decides. A stop string found in the text cuts it there (the stop
 * string itself is never sent). The sampled token is evaluated lazily, at
 * the start of the next step, so a streamed piece leaves before the next
 * forward pass runs.
 */
#include <stdlib.h>
#include <string.h>

#include "sq/serve.h"

struct sq_gen {
    sq_context *c;          /* borrowed */
    const sq_vocab *v;      /* borrowed */
    sq_sampler *s;          /* owned */
    int max_tokens;
    const char *const *stop; /* borrowed */
    size_t n_stop, max_stop;
    int n_vocab;
    sq_buf text;   /* everything generated so far (cut at a stop string) */
    size_t sent;    /* text[0..sent) has been handed out */
    int n_gen;      /* tokens sampled (an end-of-generation token not counted) */
    sq_token pending; /* sampled, not yet evaluated; SQ_TOKEN_NULL if none */
    const char *finish;
    bool done;
};

sq_status sq_gen_start(sq_context *c, const sq_vocab *v, const sq_token *prompt, size_t n_prompt,
                       const sq_gen_params *p, sq_gen **out, sq_error *err)
{
    *out = NULL;
    int n_ctx = sq_context_n_ctx(c);
    if (n_prompt == 0) return sq_error_set(err, SQ_EINVAL, "the prompt is empty (no tokens)");
    if (n_prompt >= (size_t)n_ctx)
        return sq_error_set(err, SQ_ERANGE,
                            "the prompt has %zu tokens but the context holds %d: at most %d prompt tokens leave room "
                            "for one generated token",
                            n_prompt, n_ctx, n_ctx - 1);
    int64_t n_vocab = sq_model_hparams(sq_context_model(c))->n_vocab;
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            return sq_error_set(err, SQ_ERANGE, "prompt token %zu is id %d, outside the vocabulary (0..%lld)", i,
                                (int)prompt[i], (long long)n_vocab - 1);
    sq_gen *g = calloc(1, sizeof *g);
    if (!g) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    g->s = sq_sampler_create(&p->sampler);
    if (!g->s || !sq_buf_add(&g->text, "", 0)) {
        sq_gen_free(g);
        return sq_error_set(err, SQ_ENOMEM, "out of memory");
    }
    g->c = c;
    g->v = v;
    g->max_tokens = p->max_tokens;
    g->stop = p->stop;
    g->n_stop = p->n_stop;
    for (size_t i = 0; i < p->n_stop; i++) {
        size_t l = strlen(p->stop[i]);
        if (l > g->max_stop) g->max_stop = l;
    }
    g->n_vocab = (int)n_vocab;
    g->pending = SQ_TOKEN_NULL;
    sq_kv_clear(c);
    sq_status st = sq_eval(c, prompt, (int)n_prompt, 1, err);
    if (st != SQ_OK) {
        sq_gen_free(g);
        return st;
    }
    *out = g;
    return SQ_OK;
}

/* The length of the longest proper prefix of a stop string that the text ends with. */
static size_t stop_prefix_hold(const sq_gen *g)
{
    size_t best = 0;
    for (size_t i = 0; i < g->n_stop; i++) {
        size_t l = strlen(g->stop[i]);
        for (size_t k = l - 1; k > best; k--)
            if (k <= g->text.n && memcmp(g->text.p + g->text.n - k, g->stop[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* Where the first stop string starts in the text (searching only where a
 * new one can be), or -1. */
static long find_stop(const sq_gen *g)
{
    if (!g->n_stop) return -1;
    size_t from = g->sent > g->max_stop ? g->sent - g->max_stop : 0;
    long best = -1;
    for (size_t i = 0; i < g->n_stop; i++) {
        const char *hit = memmem(g->text.p + from, g->text.n - from, g->stop[i], strlen(g->stop[i]));
        if (hit && (best < 0 || hit - g->text.p < best)) best = hit - g->text.p;
    }
    return best;
}

/* Ends the generation: everything not yet handed out goes now. */
static bool finish(sq_gen *g, const char *reason, const char **text, size_t *len)
{
    g->finish = reason;
    g->done = true;
    *text = g->text.p + g->sent;
    *len = g->text.n - g->sent;
    g->sent = g->text.n;
    return false;
}

bool sq_gen_step(sq_gen *g, const char **text, size_t *len, sq_error *err)
{
    *text = "";
    *len = 0;
    if (g->done) return false;
    if (g->pending != SQ_TOKEN_NULL) {
        if (sq_context_n_past(g->c) >= sq_context_n_ctx(g->c)) return finish(g, "length", text, len);
        if (sq_eval(g->c, &g->pending, 1, 1, err) != SQ_OK) {
            g->done = true;
            return false;
        }
        g->pending = SQ_TOKEN_NULL;
    }
    sq_token t = sq_sampler_sample(g->s, sq_get_logits(g->c), g->n_vocab);
    if (sq_vocab_is_eog(g->v, t)) return finish(g, "stop", text, len);
    g->n_gen++;
    size_t plen = 0;
    const char *piece = sq_vocab_piece(g->v, t, false, &plen);
    if (!sq_buf_add(&g->text, piece, plen)) {
        sq_error_set(err, SQ_ENOMEM, "out of memory");
        g->done = true;
        return false;
    }
    long at = find_stop(g);
    if (at >= 0) {
        g->text.n = (size_t)at;
        g->text.p[at] = 0;
        if (g->sent > g->text.n) g->sent = g->text.n; /* cannot happen: a possible stop prefix is never sent */
        return finish(g, "stop", text, len);
    }
    if (g->max_tokens >= 0 && g->n_gen >= g->max_tokens) return finish(g, "length", text, len);
    g->pending = t;
    size_t hold = stop_prefix_hold(g);
    size_t utf = sq_utf8_incomplete_tail(g->text.p, g->text.n);
    if (utf > hold) hold = utf;
    size_t limit = g->text.n - hold;
    if (limit > g->sent) {
        *text = g->text.p + g->sent;
        *len = limit - g->sent;
        g->sent = limit;
    }
    return true;
}

const char *sq_gen_finish_reason(const sq_gen *g)
{
    return g ? g->finish : NULL;
}

int sq_gen_n_generated(const sq_gen *g)
{
    return g ? g->n_gen : 0;
}

const char *sq_gen_text(const sq_gen *g, size_t *len)
{
    if (len) *len = g ? g->sent : 0;
    return g && g->text.p ? g->text.p : "";
}

void sq_gen_free(sq_gen *g)
{
    if (!g) return;
    sq_sampler_free(g->s);
    free(g->text.p);
    free(g);
}
