/*
 * fuzz_serve_request.c — the server's request parser and validator
 * (sq_serve_request_parse) for both endpoints, then everything a valid
 * request flows into without a model: chat rendering with every template,
 * the answer and chunk JSON with the request's text, SSE framing, routing.
 *
 * The first input byte picks the endpoint; the rest is the body. Invariants
 * beyond "no crash": a rejected body gives a 4xx status with a non-empty
 * message, code and type and a zeroed request; an accepted one has values in
 * their documented ranges; every JSON built parses back.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sq/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_parse(char *json)
{
    if (!json) return; /* out of memory only */
    json_error_t je;
    json_t *j = json_loads(json, 0, &je);
    if (!j || strchr(json, '\n')) abort();
    json_decref(j);
    size_t n = 0;
    char *f = sq_sse_frame(json, &n);
    if (f && n != strlen(f)) abort();
    free(f);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    sq_serve_kind kind = (data[0] & 1) ? SQ_SERVE_CHAT : SQ_SERVE_COMPLETION;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    sq_serve_request r;
    sq_serve_error e;
    memset(&e, 0, sizeof e);
    int st = sq_serve_request_parse(body, len, kind, &r, &e);
    if (st) {
        if (st < 400 || st > 599 || !e.message[0] || !e.code || !e.type) abort();
        if (r.prompt || r.messages || r.prompt_tokens || r.n_stop || r.model) abort();
        must_parse(sq_serve_error_json(&e));
        return 0;
    }
    if (r.kind != kind) abort();
    if (kind == SQ_SERVE_COMPLETION && !r.prompt && !r.n_prompt_tokens) abort();
    if (kind == SQ_SERVE_CHAT && !r.n_messages) abort();
    if (!(r.temperature >= 0 && r.top_p >= 0 && r.top_p <= 1 && r.top_k >= 0)) abort();
    if (r.max_tokens == 0 || r.max_tokens < -1 || r.n_stop > SQ_SERVE_MAX_STOP) abort();
    for (size_t i = 0; i < r.n_stop; i++)
        if (!r.stop[i] || !r.stop[i][0]) abort();
    if (kind == SQ_SERVE_CHAT) {
        for (int t = SQ_CHAT_DEFAULT; t <= SQ_CHAT_GEMMA; t++) {
            char *s = sq_chat_render((sq_chat_template)t, r.messages, r.n_messages);
            if (s) must_parse(sq_serve_response_json(kind, "id", 1, "m", s, strlen(s), "stop", (sq_serve_usage){1, 2}));
            free(s);
        }
    } else if (r.prompt) {
        size_t n = strlen(r.prompt);
        must_parse(sq_serve_response_json(kind, "id", 1, "m", r.prompt, n, "length", (sq_serve_usage){1, 2}));
        must_parse(sq_serve_chunk_json(kind, "id", 1, "m", r.prompt, n, false, NULL, NULL));
        sq_chat_template_detect(r.prompt, n);
        sq_serve_route_of("POST", r.prompt, NULL);
    }
    for (size_t i = 0; i < r.n_stop; i++)
        must_parse(sq_serve_chunk_json(SQ_SERVE_CHAT, "id", 1, "m", r.stop[i], strlen(r.stop[i]), i == 0, NULL, NULL));
    sq_serve_request_free(&r);
    return 0;
}
