/*
 * response.c — routing, the JSON bodies the server sends (answers, streamed
 * chunks, models, health, errors) and server-sent-event framing.
 *
 * All JSON is built with jansson and dumped compact, so a body never holds a
 * raw newline and can be framed as one SSE "data:" line. Generated text may
 * hold invalid UTF-8 (byte-fallback tokens cut anywhere): it is repaired
 * with U+FFFD before it goes into a JSON string.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/serve.h"

/* ---- routing ---- */

/* Maps a request line to a route; a known path with another method is
 * SQ_ROUTE_BAD_METHOD (405 with an Allow header). */
sq_serve_route sq_serve_route_of(const char *method, const char *path, const char **allow)
{
    static const struct {
        const char *path, *method;
        sq_serve_route route;
    } table[] = {
        {"/health", "GET", SQ_ROUTE_HEALTH},
        {"/v1/models", "GET", SQ_ROUTE_MODELS},
        {"/v1/completions", "POST", SQ_ROUTE_COMPLETIONS},
        {"/v1/chat/completions", "POST", SQ_ROUTE_CHAT},
    };
    if (!method || !path) return SQ_ROUTE_NOT_FOUND;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(path, table[i].path) != 0) continue;
        if (strcmp(method, table[i].method) == 0) return table[i].route;
        if (allow) *allow = table[i].method;
        return SQ_ROUTE_BAD_METHOD;
    }
    return SQ_ROUTE_NOT_FOUND;
}

const char *sq_serve_route_name(sq_serve_route r)
{
    switch (r) {
    case SQ_ROUTE_HEALTH: return "health";
    case SQ_ROUTE_MODELS: return "models";
    case SQ_ROUTE_COMPLETIONS: return "completions";
    case SQ_ROUTE_CHAT: return "chat";
    case SQ_ROUTE_BAD_METHOD: return "bad-method";
    case SQ_ROUTE_NOT_FOUND: break;
    }
    return "not-found";
}

/* ---- JSON helpers ---- */

/* Length of the valid UTF-8 character at s[0..n), or 0 if it is not one. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* A JSON string of s[0..n) with every invalid byte replaced by U+FFFD. */
static json_t *text_value(const char *s, size_t n)
{
    if (!s) return json_string("");
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_char_len((const unsigned char *)s + i, n - i);
        if (!l) break;
        i += l;
    }
    if (i == n) return json_stringn(s, n);
    sq_buf b = {0};
    bool ok = sq_buf_add(&b, s, i);
    while (ok && i < n) {
        size_t l = utf8_char_len((const unsigned char *)s + i, n - i);
        if (l) ok = sq_buf_add(&b, s + i, l), i += l;
        else ok = sq_buf_add(&b, "\xEF\xBF\xBD", 3), i++;
    }
    json_t *v = ok ? json_stringn(b.p, b.n) : NULL;
    free(b.p);
    return v;
}

/* Dumps and releases a JSON value (NULL in, NULL out). */
static char *dump(json_t *v)
{
    if (!v) return NULL;
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return s;
}

char *sq_serve_error_json(const sq_serve_error *e)
{
    json_t *err = json_pack("{s:s, s:s, s:o, s:s}", "message", e->message, "type", e->type ? e->type : "server_error",
                            "param", e->param[0] ? json_string(e->param) : json_null(), "code",
                            e->code ? e->code : "error");
    return dump(err ? json_pack("{s:o}", "error", err) : NULL);
}

static json_t *usage_json(sq_serve_usage u)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", u.prompt_tokens, "completion_tokens", u.completion_tokens,
                     "total_tokens", u.prompt_tokens + u.completion_tokens);
}

/* The full answer of a non-streamed completion or chat completion. */
char *sq_serve_response_json(sq_serve_kind kind, const char *id, long created, const char *model, const char *text,
                             size_t text_len, const char *finish_reason, sq_serve_usage usage)
{
    json_t *choice;
    if (kind == SQ_SERVE_CHAT)
        choice = json_pack("{s:i, s:{s:s, s:o}, s:s?}", "index", 0, "message", "role", "assistant", "content",
                           text_value(text, text_len), "finish_reason", finish_reason);
    else
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "text", text_value(text, text_len), "logprobs",
                           "finish_reason", finish_reason);
    if (!choice) return NULL;
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object",
                          kind == SQ_SERVE_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model",
                          model, "choices", choice, "usage", usage_json(usage)));
}

/* One streamed chunk (see serve.h). */
char *sq_serve_chunk_json(sq_serve_kind kind, const char *id, long created, const char *model, const char *text,
                          size_t text_len, bool role_delta, const char *finish_reason, const sq_serve_usage *usage)
{
    const char *object = kind == SQ_SERVE_CHAT ? "chat.completion.chunk" : "text_completion";
    if (usage)
        return dump(json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object", object, "created", (json_int_t)created,
                              "model", model, "choices", "usage", usage_json(*usage)));
    json_t *choice;
    if (kind == SQ_SERVE_CHAT) {
        json_t *delta = json_object();
        if (!delta) return NULL;
        if (role_delta) json_object_set_new(delta, "role", json_string("assistant"));
        if (text_len || (!finish_reason && !role_delta)) json_object_set_new(delta, "content", text_value(text, text_len));
        choice = json_pack("{s:i, s:o, s:s?}", "index", 0, "delta", delta, "finish_reason", finish_reason);
    } else {
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "text", text_value(text, text_len), "logprobs",
                           "finish_reason", finish_reason);
    }
    if (!choice) return NULL;
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object", object, "created", (json_int_t)created, "model",
                          model, "choices", choice));
}

char *sq_serve_models_json(const char *model, long created, const sq_model *m)
{
    json_t *meta = json_object();
    if (meta && m) {
        const sq_hparams *hp = sq_model_hparams(m);
        json_object_set_new(meta, "n_vocab", json_integer(hp->n_vocab));
        json_object_set_new(meta, "n_ctx_train", json_integer(hp->n_ctx_train));
        json_object_set_new(meta, "n_embd", json_integer(hp->n_embd));
        json_object_set_new(meta, "n_params", json_integer((json_int_t)sq_model_n_params(m)));
        json_object_set_new(meta, "size", json_integer((json_int_t)sq_model_weight_bytes(m)));
        json_object_set_new(meta, "type", json_string(sq_model_type_desc(m)));
        json_object_set_new(meta, "n_smarterquant_tensors", json_integer(hp->n_sq_tensors));
    }
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:o}]}", "object", "list", "data", "id", model, "object",
                          "model", "created", (json_int_t)created, "owned_by", "smarterquant", "meta",
                          meta ? meta : json_null()));
}

char *sq_serve_health_json(int slots_idle, int slots_busy, int queued)
{
    return dump(json_pack("{s:s, s:i, s:i, s:i}", "status", "ok", "slots_idle", slots_idle, "slots_busy", slots_busy,
                          "queued", queued));
}

/* "data: PAYLOAD\n\n". */
char *sq_sse_frame(const char *payload, size_t *len)
{
    size_t n = strlen(payload);
    char *s = malloc(n + 9);
    if (!s) return NULL;
    memcpy(s, "data: ", 6);
    memcpy(s + 6, payload, n);
    memcpy(s + 6 + n, "\n\n", 3);
    if (len) *len = n + 8;
    return s;
}
