/*
 * server.c — the HTTP side of `sq serve` on libmicrohttpd: one thread per
 * connection (MHD_USE_THREAD_PER_CONNECTION with its internal polling
 * thread), so a request may block in its own thread while it waits for a
 * slot or runs the model.
 *
 * Life of a request (struct conn, shared by the connection and, for a
 * stream, by its response: reference-counted):
 *   1st handler call   route, method, API key and Content-Length are checked;
 *                      a bad one is answered at once, before any body is read;
 *   upload calls       the body is gathered up to max_body (413 beyond);
 *   last call          the body is parsed and validated (400), tokenized, the
 *                      prompt checked against the context (400), a slot is
 *                      taken or the request waits in the bounded queue (503
 *                      when full), then either the whole answer is generated
 *                      and sent, or a callback response streams SSE chunks;
 *   completed callback one log line; the slot of a stream whose client went
 *                      away is released when MHD frees the response.
 * Shutdown: new and queued requests are refused with 503, running ones stop
 * at their next token, MHD_stop_daemon joins every connection thread, then
 * the contexts are freed.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "sq/serve.h"

struct sq_server {
    sq_server_options o;
    char *model_name, *api_key, *host; /* owned copies */
    struct MHD_Daemon *d;
    sq_slot_pool *pool;
    sq_context **ctx; /* one per slot */
    int n_slots;
    int port;
    int n_ctx;
    long created;
    atomic_bool stopping;
    atomic_ulong next_id;
    atomic_int token_delay_ms; /* debug: pause between tokens (sq_server_set_debug_token_delay) */
    atomic_bool starting;      /* in MHD_start_daemon: its messages go into start_msg, not the log */
    char start_msg[256];
};

enum stream_phase { PH_ROLE, PH_TOKENS, PH_USAGE, PH_DONE, PH_END };

typedef struct conn {
    sq_server *s;
    struct MHD_Connection *mc;
    atomic_int refs;
    char method[16], path[128];
    double t0;
    sq_serve_route route;
    sq_buf body;
    size_t body_seen; /* bytes received, kept or not */
    bool too_large;
    int status;
    int prompt_tokens, completion_tokens;
    const char *note;
    /* a running generation (stream or not) */
    sq_serve_request req;
    int slot;
    sq_gen *gen;
    char id[64];
    long created;
    /* stream state */
    enum stream_phase phase;
    sq_buf out;
    size_t out_off;
} conn;

static bool token_pause(conn *c);

static void conn_unref(conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    sq_gen_free(c->gen);
    if (c->slot >= 0) sq_slot_pool_release(c->s->pool, c->slot);
    sq_serve_request_free(&c->req);
    free(c->body.p);
    free(c->out.p);
    free(c);
}

/* Ends a generation: frees it and gives its slot back (idempotent). */
static void end_generation(conn *c)
{
    if (c->gen) c->completion_tokens = sq_gen_n_generated(c->gen);
    sq_gen_free(c->gen);
    c->gen = NULL;
    if (c->slot >= 0) sq_slot_pool_release(c->s->pool, c->slot);
    c->slot = -1;
}

static void log_msg(sq_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_msg(sq_server *s, const char *fmt, ...)
{
    if (!s->o.log_msg) return;
    char m[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    s->o.log_msg(s->o.log_ud, m);
}

/* ---- answers ---- */

/* Queues a JSON body (taken over, malloc'd; NULL means out of memory). */
static enum MHD_Result send_json(conn *c, struct MHD_Connection *mc, int status, char *json, const char *hname,
                                 const char *hvalue)
{
    if (!json) {
        status = 500;
        json = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                      "\"code\":\"out_of_memory\"}}");
        if (!json) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (hname) MHD_add_response_header(r, hname, hvalue);
    c->status = status;
    enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(conn *c, struct MHD_Connection *mc, const sq_serve_error *e, const char *hname,
                                  const char *hvalue)
{
    return send_json(c, mc, e->status, sq_serve_error_json(e), hname, hvalue);
}

/* ---- streaming ---- */

static bool out_frame(conn *c, char *json)
{
    if (!json) return false;
    size_t n = 0;
    char *f = sq_sse_frame(json, &n);
    free(json);
    bool ok = f && sq_buf_add(&c->out, f, n);
    free(f);
    return ok;
}

/* Fills c->out with the next SSE frames; false when nothing more will come. */
static bool stream_produce(conn *c)
{
    sq_server *s = c->s;
    const char *model = s->model_name;
    switch (c->phase) {
    case PH_ROLE:
        c->phase = PH_TOKENS;
        return out_frame(c, sq_serve_chunk_json(SQ_SERVE_CHAT, c->id, c->created, model, "", 0, true, NULL, NULL));
    case PH_TOKENS: {
        if (atomic_load(&s->stopping)) {
            c->note = "cancelled (shutdown)";
            end_generation(c);
            c->phase = PH_END;
            return false;
        }
        if (token_pause(c)) { /* nobody reads the stream any more: stop before the next token */
            c->note = "client disconnected";
            end_generation(c);
            c->phase = PH_END;
            return false;
        }
        const char *text;
        size_t len;
        sq_error err = {0};
        bool more = sq_gen_step(c->gen, &text, &len, &err);
        bool ok = true;
        if (len)
            ok = out_frame(c, sq_serve_chunk_json(c->req.kind, c->id, c->created, model, text, len, false, NULL, NULL));
        if (more) return ok;
        const char *reason = sq_gen_finish_reason(c->gen);
        end_generation(c);
        if (!reason) {
            sq_serve_error e;
            sq_serve_error_set(&e, 500, "server_error", "generation_failed", NULL, "generation failed: %s", err.msg);
            c->note = "generation failed";
            ok = ok && out_frame(c, sq_serve_error_json(&e));
        } else {
            ok = ok && out_frame(c, sq_serve_chunk_json(c->req.kind, c->id, c->created, model, "", 0, false, reason,
                                                        NULL));
        }
        c->phase = c->req.include_usage ? PH_USAGE : PH_DONE;
        return ok;
    }
    case PH_USAGE: {
        sq_serve_usage u = {c->prompt_tokens, c->completion_tokens};
        c->phase = PH_DONE;
        return out_frame(c, sq_serve_chunk_json(c->req.kind, c->id, c->created, model, NULL, 0, false, NULL, &u));
    }
    case PH_DONE:
        c->phase = PH_END;
        return sq_buf_add(&c->out, "data: [DONE]\n\n", 14);
    case PH_END: break;
    }
    return false;
}

/* MHD's content reader: hands out the frames, producing more on demand
 * (one token per call while generating). Runs in the connection's thread. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    conn *c = cls;
    (void)pos;
    while (c->out_off == c->out.n) {
        c->out.n = c->out_off = 0;
        if (c->phase == PH_END) {
            if (c->note && (strncmp(c->note, "cancelled", 9) == 0 || strcmp(c->note, "client disconnected") == 0))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (!stream_produce(c) && c->out.n == 0) {
            if (c->phase != PH_END) {
                c->note = "out of memory";
                end_generation(c);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
    }
    size_t n = c->out.n - c->out_off;
    if (n > max) n = max;
    memcpy(buf, c->out.p + c->out_off, n);
    c->out_off += n;
    return (ssize_t)n;
}

/* MHD frees the stream's response: when it was sent, or when the client went
 * away mid-stream — then the generation still holds its slot: free it. */
static void stream_free(void *cls)
{
    conn *c = cls;
    if (c->gen) {
        if (!c->note) c->note = "client disconnected";
        end_generation(c);
    }
    conn_unref(c);
}

/* ---- completions ---- */

/* Tokenizes the prompt of a validated request into *toks. */
static int prompt_tokens(conn *c, sq_token **toks, size_t *n, sq_serve_error *e)
{
    const sq_vocab *v = c->s->o.vocab;
    sq_error err = {0};
    if (c->req.prompt_tokens) {
        *toks = malloc(c->req.n_prompt_tokens * sizeof **toks);
        if (!*toks) return sq_serve_error_set(e, 500, "server_error", "out_of_memory", NULL, "out of memory");
        memcpy(*toks, c->req.prompt_tokens, c->req.n_prompt_tokens * sizeof **toks);
        *n = c->req.n_prompt_tokens;
        int32_t nv = sq_vocab_n_tokens(v);
        for (size_t i = 0; i < *n; i++)
            if ((*toks)[i] >= nv)
                return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                                          "field 'prompt' element %zu: token id %d is outside the vocabulary (0..%d)",
                                          i, (int)(*toks)[i], nv - 1);
        return 0;
    }
    char *text = c->req.prompt;
    char *rendered = NULL;
    if (c->req.kind == SQ_SERVE_CHAT) {
        sq_gguf_str tmpl = {0};
        sq_gguf_get_str(sq_model_gguf(c->s->o.model), "tokenizer.chat_template", &tmpl, NULL);
        const sq_chat_template t =
            sq_chat_template_choose(tmpl.ptr, tmpl.len, sq_model_hparams(c->s->o.model)->arch);
        rendered = sq_chat_render(t, c->req.messages, c->req.n_messages);
        if (!rendered) return sq_serve_error_set(e, 500, "server_error", "out_of_memory", NULL, "out of memory");
        text = rendered;
    }
    sq_status st = sq_tokenize(v, text, strlen(text), true, true, toks, n, &err);
    free(rendered);
    if (st != SQ_OK)
        return sq_serve_error_set(e, 500, "server_error", "tokenizer_failed", NULL, "tokenizing failed: %s", err.msg);
    return 0;
}

/* Whether the client closed its side of the connection (checked while a
 * request waits in the queue and between the tokens of a non-streamed
 * answer, so that the work stops when nobody will read it). A client that
 * half-closes after its request is taken as gone too. */
static bool client_gone(void *ud)
{
    conn *c = ud;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd pf = {ci->connect_fd, POLLRDHUP, 0};
    if (poll(&pf, 1, 0) != 1) return false;
    return (pf.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The pause between two tokens of a request, then whether its client is
 * gone. Without a debug token delay this is just client_gone(). With one
 * (tests use it so that a request is certain to be still running while they
 * hang up, fill the queue or shut down), the pause is cut into 10 ms slices
 * that each watch the client's socket, the shutdown flag and the delay
 * itself (which may be turned off meanwhile): a hang-up, a shutdown or a
 * lowered delay ends it at once. */
static bool token_pause(conn *c)
{
    sq_server *s = c->s;
    double t0 = sq_time_now();
    for (;;) {
        int delay = atomic_load(&s->token_delay_ms);
        int left = delay - (int)((sq_time_now() - t0) * 1e3);
        if (left <= 0 || atomic_load(&s->stopping)) return client_gone(c);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) return false;
        struct pollfd pf = {ci->connect_fd, POLLRDHUP, 0};
        if (poll(&pf, 1, left < 10 ? left : 10) == 1 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) return true;
    }
}

/* The last handler call of a completion or chat request. */
static enum MHD_Result handle_completion(conn *c, struct MHD_Connection *mc)
{
    sq_server *s = c->s;
    sq_serve_error e;
    sq_serve_kind kind = c->route == SQ_ROUTE_CHAT ? SQ_SERVE_CHAT : SQ_SERVE_COMPLETION;
    if (sq_serve_request_parse(c->body.p, c->body.n, kind, &c->req, &e)) return send_error(c, mc, &e, NULL, NULL);
    sq_token *toks = NULL;
    size_t n_toks = 0;
    if (prompt_tokens(c, &toks, &n_toks, &e)) {
        free(toks);
        return send_error(c, mc, &e, NULL, NULL);
    }
    c->prompt_tokens = (int)n_toks;
    if (n_toks == 0) {
        free(toks);
        sq_serve_error_set(&e, 400, "invalid_request_error", "invalid_value", kind == SQ_SERVE_CHAT ? "messages" : "prompt",
                           "the prompt is empty: it gives no tokens");
        return send_error(c, mc, &e, NULL, NULL);
    }
    if (n_toks >= (size_t)s->n_ctx) {
        free(toks);
        sq_serve_error_set(&e, 400, "invalid_request_error", "context_length_exceeded",
                           kind == SQ_SERVE_CHAT ? "messages" : "prompt",
                           "the prompt is %zu tokens long but the context holds %d tokens (at most %d prompt tokens, "
                           "to leave room for one generated token)",
                           n_toks, s->n_ctx, s->n_ctx - 1);
        return send_error(c, mc, &e, NULL, NULL);
    }
    sq_slot_result sr = sq_slot_pool_acquire_until(s->pool, &c->slot, client_gone, c);
    if (sr != SQ_SLOT_OK) {
        c->slot = -1;
        free(toks);
        if (sr == SQ_SLOT_FULL)
            sq_serve_error_set(&e, 503, "server_busy", "queue_full", NULL,
                               "the server is busy: all %d slots are in use and the queue (%d) is full; retry later",
                               s->n_slots, s->o.queue_max);
        else
            sq_serve_error_set(&e, 503, "server_busy", "shutting_down", NULL, "the server is shutting down");
        if (sr == SQ_SLOT_GONE) {
            c->note = "client disconnected while queued";
            c->status = 499; /* logged only: nobody to answer */
            return MHD_NO;
        }
        c->note = sr == SQ_SLOT_FULL ? "queue full" : "shutting down";
        return send_error(c, mc, &e, "Retry-After", "1");
    }
    if (atomic_load(&s->stopping)) {
        free(toks);
        end_generation(c);
        sq_serve_error_set(&e, 503, "server_busy", "shutting_down", NULL, "the server is shutting down");
        return send_error(c, mc, &e, NULL, NULL);
    }
    sq_gen_params gp = {
        .max_tokens = c->req.max_tokens,
        .sampler = {.temp = c->req.temperature, .top_k = c->req.top_k, .top_p = c->req.top_p},
        .stop = (const char *const *)c->req.stop,
        .n_stop = c->req.n_stop,
    };
    unsigned long id = atomic_fetch_add(&s->next_id, 1);
    gp.sampler.seed = c->req.has_seed ? c->req.seed : ((uint64_t)time(NULL) << 20) ^ id ^ (uint64_t)(sq_time_now() * 1e9);
    snprintf(c->id, sizeof c->id, "%s-%lx-%lu", kind == SQ_SERVE_CHAT ? "chatcmpl" : "cmpl", (unsigned long)s->created, id);
    c->created = (long)time(NULL);
    sq_error err = {0};
    sq_status st = sq_gen_start(s->ctx[c->slot], s->o.vocab, toks, n_toks, &gp, &c->gen, &err);
    free(toks);
    if (st != SQ_OK) {
        end_generation(c);
        sq_serve_error_set(&e, st == SQ_ERANGE ? 400 : 500, st == SQ_ERANGE ? "invalid_request_error" : "server_error",
                           st == SQ_ERANGE ? "invalid_value" : "generation_failed", NULL, "%s", err.msg);
        return send_error(c, mc, &e, NULL, NULL);
    }
    if (c->req.stream) {
        c->phase = kind == SQ_SERVE_CHAT ? PH_ROLE : PH_TOKENS;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, c, stream_free);
        if (!r) {
            end_generation(c);
            return MHD_NO;
        }
        atomic_fetch_add(&c->refs, 1); /* the response's reference, dropped by stream_free */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        c->status = 200;
        enum MHD_Result ok = MHD_queue_response(mc, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    const char *text;
    size_t len;
    bool cancelled = false;
    while (sq_gen_step(c->gen, &text, &len, &err)) {
        if (atomic_load(&s->stopping)) {
            cancelled = true;
            break;
        }
        if (token_pause(c)) {
            c->note = "client disconnected";
            c->status = 499; /* logged only */
            end_generation(c);
            return MHD_NO;
        }
    }
    const char *reason = sq_gen_finish_reason(c->gen);
    if (cancelled || !reason) {
        end_generation(c);
        if (cancelled) {
            c->note = "cancelled (shutdown)";
            sq_serve_error_set(&e, 503, "server_busy", "shutting_down", NULL, "the server is shutting down");
        } else {
            sq_serve_error_set(&e, 500, "server_error", "generation_failed", NULL, "generation failed: %s", err.msg);
        }
        return send_error(c, mc, &e, NULL, NULL);
    }
    text = sq_gen_text(c->gen, &len);
    sq_serve_usage u = {c->prompt_tokens, sq_gen_n_generated(c->gen)};
    char *json = sq_serve_response_json(kind, c->id, c->created, s->model_name, text, len, reason, u);
    end_generation(c);
    return send_json(c, mc, 200, json, NULL, NULL);
}

/* ---- the MHD callbacks ---- */

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static bool authorized(sq_server *s, struct MHD_Connection *mc)
{
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)(i < a ? h[i] : 0) ^ (unsigned char)s->api_key[i];
    return diff == 0;
}

/* The first handler call: everything that can be decided from the request line and headers. */
static enum MHD_Result first_call(conn *c, struct MHD_Connection *mc, bool *answered)
{
    sq_server *s = c->s;
    sq_serve_error e;
    const char *allow = NULL;
    *answered = true;
    if (atomic_load(&s->stopping)) {
        sq_serve_error_set(&e, 503, "server_busy", "shutting_down", NULL, "the server is shutting down");
        return send_error(c, mc, &e, NULL, NULL);
    }
    c->route = sq_serve_route_of(c->method, c->path, &allow);
    if (c->route == SQ_ROUTE_NOT_FOUND) {
        sq_serve_error_set(&e, 404, "invalid_request_error", "not_found", NULL,
                           "no route %s %.100s: the server offers GET /health, GET /v1/models, POST /v1/completions, "
                           "POST /v1/chat/completions",
                           c->method, c->path);
        return send_error(c, mc, &e, NULL, NULL);
    }
    if (c->route == SQ_ROUTE_BAD_METHOD) {
        sq_serve_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                           "method %s is not allowed on %s (use %s)", c->method, c->path, allow);
        return send_error(c, mc, &e, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (c->route != SQ_ROUTE_HEALTH && !authorized(s, mc)) {
        sq_serve_error_set(&e, 401, "authentication_error", "invalid_api_key", NULL,
                           "missing or wrong API key: send the header 'Authorization: Bearer KEY'");
        return send_error(c, mc, &e, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }
    const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->o.max_body) {
        sq_serve_error_set(&e, 413, "invalid_request_error", "body_too_large", NULL,
                           "the request body is %s bytes, over the limit of %zu bytes (--max-body)", cl, s->o.max_body);
        return send_error(c, mc, &e, NULL, NULL);
    }
    *answered = false;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    sq_server *s = cls;
    (void)version;
    conn *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->s = s;
        atomic_init(&c->refs, 1);
        c->slot = -1;
        c->mc = mc;
        c->t0 = sq_time_now();
        snprintf(c->method, sizeof c->method, "%s", method);
        snprintf(c->path, sizeof c->path, "%s", url);
        *con_cls = c;
        bool answered;
        enum MHD_Result r = first_call(c, mc, &answered);
        if (answered || r != MHD_YES) return r;
        return MHD_YES;
    }
    if (c->status) { /* already answered: drop whatever body still comes */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        c->body_seen += *upload_data_size;
        if (!c->too_large && c->body.n + *upload_data_size <= s->o.max_body) {
            if (!sq_buf_add(&c->body, upload_data, *upload_data_size)) return MHD_NO;
        } else {
            c->too_large = true;
            /* a chunked body far over the limit: stop reading it at all */
            if (c->body_seen > 16 * s->o.max_body) return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    sq_serve_error e;
    if (c->too_large) {
        sq_serve_error_set(&e, 413, "invalid_request_error", "body_too_large", NULL,
                           "the request body is over the limit of %zu bytes (--max-body)", s->o.max_body);
        return send_error(c, mc, &e, NULL, NULL);
    }
    switch (c->route) {
    case SQ_ROUTE_HEALTH: {
        int idle, busy, queued;
        sq_slot_pool_stats(s->pool, &idle, &busy, &queued);
        return send_json(c, mc, 200, sq_serve_health_json(idle, busy, queued), NULL, NULL);
    }
    case SQ_ROUTE_MODELS:
        return send_json(c, mc, 200, sq_serve_models_json(s->model_name, s->created, s->o.model), NULL, NULL);
    case SQ_ROUTE_COMPLETIONS:
    case SQ_ROUTE_CHAT:
        return handle_completion(c, mc);
    default: break;
    }
    return MHD_NO;
}

/* One log line per request, then the connection's reference goes. */
static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    sq_server *s = cls;
    conn *c = *con_cls;
    (void)mc;
    if (!c) return;
    *con_cls = NULL;
    if (c->gen) {
        /* a stream still generating: the client went away (or the send failed) */
        c->completion_tokens = sq_gen_n_generated(c->gen);
        if (!c->note) c->note = "client disconnected";
    }
    if (!c->note && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        c->note = toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT || toe == MHD_REQUEST_TERMINATED_READ_ERROR
                      ? "client disconnected"
                  : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "cancelled (shutdown)"
                  : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "timeout"
                                                                  : "connection error";
    if (s->o.log) {
        sq_serve_log_entry le = {c->method, c->path, c->status, c->prompt_tokens, c->completion_tokens,
                                 sq_time_now() - c->t0, c->note ? c->note : ""};
        s->o.log(s->o.log_ud, &le);
    }
    conn_unref(c);
}

/* libmicrohttpd's own messages. Those about a connection our request log
 * line already explains (client gone, request abandoned on purpose, stream
 * cut at shutdown) are dropped, so a request keeps its one line. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    static const char *const known[] = {"Failed to send the chunked response body",
                                        "Application reported internal error",
                                        "Closing connection (application error generating response)"};
    sq_server *s = cls;
    char m[1024];
    vsnprintf(m, sizeof m, fmt, ap);
    size_t n = strlen(m);
    while (n && m[n - 1] == '\n') m[--n] = 0;
    if (atomic_load(&s->starting)) { /* a failed start is reported once, by sq_server_start's error */
        snprintf(s->start_msg, sizeof s->start_msg, "%s", m);
        return;
    }
    if (!s->o.log_msg) return;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(m, known[i])) return;
    s->o.log_msg(s->o.log_ud, m);
}

/* ---- start / stop ---- */

static void server_free(sq_server *s)
{
    if (!s) return;
    for (int i = 0; s->ctx && i < s->n_slots; i++) sq_context_free(s->ctx[i]);
    free(s->ctx);
    sq_slot_pool_free(s->pool);
    free(s->model_name);
    free(s->api_key);
    free(s->host);
    free(s);
}

sq_status sq_server_start(const sq_server_options *o, sq_server **out, sq_error *err)
{
    *out = NULL;
    if (!o->model || !o->vocab) return sq_error_set(err, SQ_EINVAL, "sq serve: no model or vocabulary");
    if (o->n_parallel < 1) return sq_error_set(err, SQ_EINVAL, "--parallel must be at least 1, got %d", o->n_parallel);
    if (o->queue_max < 0) return sq_error_set(err, SQ_EINVAL, "--queue must be 0 or more, got %d", o->queue_max);
    if (o->port < 0 || o->port > 65535) return sq_error_set(err, SQ_EINVAL, "--port must be 0..65535, got %d", o->port);
    sq_server *s = calloc(1, sizeof *s);
    if (!s) return sq_error_set(err, SQ_ENOMEM, "out of memory");
    s->o = *o;
    s->model_name = strdup(o->model_name ? o->model_name : "model");
    s->host = strdup(o->host ? o->host : "127.0.0.1");
    s->api_key = o->api_key && *o->api_key ? strdup(o->api_key) : NULL;
    s->o.max_body = o->max_body ? o->max_body : (size_t)1 << 20;
    s->n_slots = o->n_parallel;
    s->created = (long)time(NULL);
    atomic_init(&s->stopping, false);
    atomic_init(&s->next_id, 1);
    atomic_init(&s->token_delay_ms, o->debug_token_delay_ms > 0 ? o->debug_token_delay_ms : 0);
    atomic_init(&s->starting, false);
    s->pool = sq_slot_pool_create(o->n_parallel, o->queue_max);
    s->ctx = calloc((size_t)o->n_parallel, sizeof *s->ctx);
    if (!s->model_name || !s->host || (o->api_key && *o->api_key && !s->api_key) || !s->pool || !s->ctx) {
        server_free(s);
        return sq_error_set(err, SQ_ENOMEM, "out of memory");
    }
    sq_context_params cp = sq_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads > 0 ? o->n_threads : 1;
    for (int i = 0; i < o->n_parallel; i++) {
        sq_status st = sq_context_create(o->model, &cp, &s->ctx[i], err);
        if (st != SQ_OK) {
            sq_error_prefix(err, "slot %d", i);
            server_free(s);
            return st;
        }
    }
    s->n_ctx = sq_context_n_ctx(s->ctx[0]);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (strchr(s->host, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, s->host, &a6->sin6_addr) != 1) {
            sq_error_set(err, SQ_EINVAL, "--host '%s' is not a numeric IPv6 address", s->host);
            server_free(s);
            return SQ_EINVAL;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, s->host, &a4->sin_addr) != 1) {
            sq_error_set(err, SQ_EINVAL, "--host '%s' is not a numeric IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)",
                         s->host);
            server_free(s);
            return SQ_EINVAL;
        }
    }
    unsigned max_conn = (unsigned)(o->max_connections > 0 ? o->max_connections : o->n_parallel + o->queue_max + 64);
    atomic_store(&s->starting, true);
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                            MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_LIMIT, max_conn, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    atomic_store(&s->starting, false);
    if (!s->d) {
        const char *why = strrchr(s->start_msg, ':'); /* "Failed to bind to port 8080: Address already in use" */
        if (s->start_msg[0])
            sq_error_set(err, SQ_EIO, "cannot listen on %s port %d: %s", s->host, o->port,
                         why && why[1] == ' ' && why[2] ? why + 2 : s->start_msg);
        else
            sq_error_set(err, SQ_EIO, "cannot listen on %s port %d (address in use, or not a local address?)",
                         s->host, o->port);
        server_free(s);
        return SQ_EIO;
    }
    if (s->start_msg[0]) log_msg(s, "%s", s->start_msg); /* a warning of a start that succeeded */
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    log_msg(s, "%d slot(s) of %d tokens, queue %d, up to %u connections", s->n_slots, s->n_ctx, o->queue_max, max_conn);
    *out = s;
    return SQ_OK;
}

int sq_server_port(const sq_server *s)
{
    return s ? s->port : 0;
}

/* Changes the debug pause between tokens; requests pausing now see the new
 * value within 10 ms. */
void sq_server_set_debug_token_delay(sq_server *s, int ms)
{
    if (s) atomic_store(&s->token_delay_ms, ms > 0 ? ms : 0);
}

void sq_server_stop(sq_server *s)
{
    if (!s) return;
    atomic_store(&s->stopping, true);
    sq_slot_pool_shutdown(s->pool);
    if (s->d) MHD_stop_daemon(s->d); /* joins every connection thread */
    s->d = NULL;
    server_free(s);
}
