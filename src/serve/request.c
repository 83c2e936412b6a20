/*
 * request.c — turns the body of a completion or chat request into a
 * validated sq_serve_request, and renders chat messages with a template.
 *
 * Every rejection says what was wrong and where: malformed JSON with line,
 * column and byte position (jansson's report), a missing field, a wrong type
 * or a value out of range naming the field. Fields we do not know are
 * ignored (as llama.cpp's server does); fields we know are type-checked,
 * and JSON null counts as "absent" for the optional ones.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/serve.h"
#include "base/json_kind.h"

/* Fills an error answer; returns its status so callers can `return sq_serve_error_set(...)`. */
int sq_serve_error_set(sq_serve_error *e, int status, const char *type, const char *code, const char *param,
                       const char *fmt, ...)
{
    if (!e) return status;
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

static int bad_type(sq_serve_error *e, const char *field, const char *want, const json_t *v)
{
    return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", field,
                              "field '%s' must be %s, got %s", field, want, sq__json_kind(v));
}

static int bad_value(sq_serve_error *e, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad_value(sq_serve_error *e, const char *field, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_value", field, "field '%s' %s", field, what);
}

static int no_memory(sq_serve_error *e)
{
    return sq_serve_error_set(e, 500, "server_error", "out_of_memory", NULL, "out of memory while reading the request");
}

/* A field that is present and not null, or NULL. */
static json_t *field(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return (v && !json_is_null(v)) ? v : NULL;
}

static char *dup_json_string(const json_t *v)
{
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, json_string_value(v), n);
    s[n] = 0;
    return s;
}

/* Reads an optional integer field in [lo, hi]; *out unchanged when absent. */
static int get_int(json_t *root, const char *name, long long lo, long long hi, long long *out, sq_serve_error *e)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d)) return bad_type(e, name, "an integer", v);
        if (d < (double)lo || d > (double)hi) return bad_value(e, name, "must be between %lld and %lld", lo, hi);
        *out = (long long)d;
        return 0;
    }
    if (!json_is_integer(v)) return bad_type(e, name, "an integer", v);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad_value(e, name, "must be between %lld and %lld, got %lld", lo, hi, x);
    *out = x;
    return 0;
}

/* Reads an optional number field in [lo, hi]. */
static int get_num(json_t *root, const char *name, double lo, double hi, float *out, sq_serve_error *e)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (!json_is_number(v)) return bad_type(e, name, "a number", v);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return bad_value(e, name, "must be between %g and %g, got %g", lo, hi, d);
    *out = (float)d;
    return 0;
}

static int get_bool(json_t *root, const char *name, bool *out, sq_serve_error *e)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad_type(e, name, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

/* The prompt of a completion: a string, an array holding one string, or an
 * array of token ids (checked against the vocabulary later, by the server). */
static int get_prompt(json_t *root, sq_serve_request *r, sq_serve_error *e)
{
    json_t *v = json_object_get(root, "prompt");
    if (!v || json_is_null(v))
        return sq_serve_error_set(e, 400, "invalid_request_error", "missing_field", "prompt",
                                  "missing field 'prompt' (a string or an array of token ids)");
    if (json_is_string(v)) {
        if (!(r->prompt = dup_json_string(v))) return no_memory(e);
        return 0;
    }
    if (!json_is_array(v)) return bad_type(e, "prompt", "a string or an array", v);
    size_t n = json_array_size(v);
    if (n == 0) return bad_value(e, "prompt", "must not be an empty array");
    if (json_is_string(json_array_get(v, 0))) {
        if (n != 1) return bad_value(e, "prompt", "holds %zu strings: only one prompt per request is supported", n);
        if (!(r->prompt = dup_json_string(json_array_get(v, 0)))) return no_memory(e);
        return 0;
    }
    r->prompt_tokens = malloc(n * sizeof *r->prompt_tokens);
    if (!r->prompt_tokens) return no_memory(e);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i);
        if (!json_is_integer(t))
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", "prompt",
                                      "field 'prompt' element %zu must be a token id (an integer), got %s", i,
                                      sq__json_kind(t));
        json_int_t id = json_integer_value(t);
        if (id < 0 || id > INT32_MAX)
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                                      "field 'prompt' element %zu: token id %lld is out of range", i, (long long)id);
        r->prompt_tokens[i] = (int32_t)id;
    }
    r->n_prompt_tokens = n;
    return 0;
}

/* Message content: a string, or an array of {"type":"text","text":...}
 * parts joined; null (an assistant turn with tool calls) reads as "". */
static int get_content(json_t *m, size_t i, char **out, sq_serve_error *e)
{
    json_t *c = json_object_get(m, "content");
    if (!c)
        return sq_serve_error_set(e, 400, "invalid_request_error", "missing_field", "messages",
                                  "messages[%zu] has no 'content'", i);
    if (json_is_null(c)) {
        *out = strdup("");
        return *out ? 0 : no_memory(e);
    }
    if (json_is_string(c)) {
        *out = dup_json_string(c);
        return *out ? 0 : no_memory(e);
    }
    if (!json_is_array(c))
        return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                                  "messages[%zu].content must be a string or an array of text parts, got %s", i,
                                  sq__json_kind(c));
    sq_buf b = {0};
    size_t np = json_array_size(c);
    for (size_t j = 0; j < np; j++) {
        json_t *part = json_array_get(c, j);
        json_t *type = json_is_object(part) ? json_object_get(part, "type") : NULL;
        json_t *text = json_is_object(part) ? json_object_get(part, "text") : NULL;
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text)) {
            free(b.p);
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_value", "messages",
                                      "messages[%zu].content[%zu] must be {\"type\":\"text\",\"text\":\"...\"} "
                                      "(only text parts are supported)",
                                      i, j);
        }
        if (!sq_buf_add(&b, json_string_value(text), json_string_length(text))) {
            free(b.p);
            return no_memory(e);
        }
    }
    if (!sq_buf_add(&b, "", 0)) {
        free(b.p);
        return no_memory(e);
    }
    *out = b.p;
    return 0;
}

static int get_messages(json_t *root, sq_serve_request *r, sq_serve_error *e)
{
    static const char *const roles[] = {"system", "user", "assistant", "developer", "tool"};
    json_t *v = json_object_get(root, "messages");
    if (!v || json_is_null(v))
        return sq_serve_error_set(e, 400, "invalid_request_error", "missing_field", "messages",
                                  "missing field 'messages' (an array of {\"role\":..,\"content\":..})");
    if (!json_is_array(v)) return bad_type(e, "messages", "an array", v);
    size_t n = json_array_size(v);
    if (n == 0) return bad_value(e, "messages", "must hold at least one message");
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return no_memory(e);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m))
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                                      "messages[%zu] must be an object, got %s", i, sq__json_kind(m));
        json_t *role = json_object_get(m, "role");
        if (!role)
            return sq_serve_error_set(e, 400, "invalid_request_error", "missing_field", "messages",
                                      "messages[%zu] has no 'role'", i);
        if (!json_is_string(role))
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                                      "messages[%zu].role must be a string, got %s", i, sq__json_kind(role));
        bool known = false;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            if (strcmp(json_string_value(role), roles[k]) == 0) known = true;
        if (!known)
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_value", "messages",
                                      "messages[%zu].role '%.64s' is not one of system, user, assistant, "
                                      "developer, tool",
                                      i, json_string_value(role));
        r->n_messages = i + 1;
        if (!(r->messages[i].role = dup_json_string(role))) return no_memory(e);
        int st = get_content(m, i, &r->messages[i].content, e);
        if (st) return st;
    }
    return 0;
}

static int get_stop(json_t *root, sq_serve_request *r, sq_serve_error *e)
{
    json_t *v = field(root, "stop");
    if (!v) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return 0;
        if (!(r->stop[0] = dup_json_string(v))) return no_memory(e);
        r->n_stop = 1;
        return 0;
    }
    if (!json_is_array(v)) return bad_type(e, "stop", "a string or an array of strings", v);
    size_t n = json_array_size(v);
    if (n > SQ_SERVE_MAX_STOP) return bad_value(e, "stop", "holds %zu strings, at most %d are allowed", n, SQ_SERVE_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", "stop",
                                      "field 'stop' element %zu must be a string, got %s", i, sq__json_kind(s));
        if (json_string_length(s) == 0) continue;
        if (!(r->stop[r->n_stop] = dup_json_string(s))) return no_memory(e);
        r->n_stop++;
    }
    return 0;
}

/* Everything after the JSON itself has been read. */
static int validate(json_t *root, sq_serve_kind kind, sq_serve_request *r, sq_serve_error *e)
{
    int st;
    if (!json_is_object(root))
        return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_type", NULL,
                                  "the request body must be a JSON object, got %s", sq__json_kind(root));
    json_t *model = field(root, "model");
    if (model) {
        if (!json_is_string(model)) return bad_type(e, "model", "a string", model);
        if (!(r->model = dup_json_string(model))) return no_memory(e);
    }
    if (kind == SQ_SERVE_COMPLETION) {
        if ((st = get_prompt(root, r, e))) return st;
    } else {
        if ((st = get_messages(root, r, e))) return st;
    }
    long long x = r->max_tokens;
    if ((st = get_int(root, "max_tokens", 1, 1 << 24, &x, e))) return st;
    if (kind == SQ_SERVE_CHAT && (st = get_int(root, "max_completion_tokens", 1, 1 << 24, &x, e))) return st;
    r->max_tokens = (int)x;
    if ((st = get_num(root, "temperature", 0.0, 100.0, &r->temperature, e))) return st;
    if ((st = get_num(root, "top_p", 0.0, 1.0, &r->top_p, e))) return st;
    x = r->top_k;
    if ((st = get_int(root, "top_k", 0, INT32_MAX, &x, e))) return st;
    r->top_k = (int)x;
    json_t *seed = field(root, "seed");
    if (seed) {
        if (!json_is_integer(seed)) return bad_type(e, "seed", "an integer", seed);
        r->has_seed = true;
        r->seed = (uint64_t)json_integer_value(seed);
    }
    x = 1;
    if ((st = get_int(root, "n", 1, 1 << 20, &x, e))) return st;
    if (x != 1) return bad_value(e, "n", "must be 1: one choice per request is supported, got %lld", x);
    if ((st = get_stop(root, r, e))) return st;
    if ((st = get_bool(root, "stream", &r->stream, e))) return st;
    json_t *so = field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) return bad_type(e, "stream_options", "an object", so);
        json_t *iu = field(so, "include_usage");
        if (iu && !json_is_boolean(iu)) return bad_type(e, "stream_options.include_usage", "a boolean", iu);
        r->include_usage = iu && json_is_true(iu);
    }
    return 0;
}

/* Parses and validates a body (see serve.h). */
int sq_serve_request_parse(const char *body, size_t len, sq_serve_kind kind, sq_serve_request *out,
                           sq_serve_error *e)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->max_tokens = kind == SQ_SERVE_COMPLETION ? 16 : -1; /* OpenAI's defaults */
    out->temperature = 1.0f;
    out->top_p = 1.0f;
    if (len == 0)
        return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                  "the request body is empty: a JSON object is expected");
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return sq_serve_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                                  "malformed JSON at line %d, column %d (byte %d): %s", je.line, je.column,
                                  je.position, je.text);
    int st = validate(root, kind, out, e);
    json_decref(root);
    if (st) {
        sq_serve_request_free(out);
        memset(out, 0, sizeof *out);
    }
    return st;
}

void sq_serve_request_free(sq_serve_request *r)
{
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free(r->prompt_tokens);
    for (size_t i = 0; i < r->n_messages; i++) {
        free(r->messages[i].role);
        free(r->messages[i].content);
    }
    free(r->messages);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- chat templates ---- */

static bool has(const char *s, size_t n, const char *needle)
{
    return s && memmem(s, n, needle, strlen(needle)) != NULL;
}

/* Recognises the usual templates by the markers their Jinja text writes. */
sq_chat_template sq_chat_template_detect(const char *jinja, size_t len)
{
    if (!jinja) return SQ_CHAT_DEFAULT;
    if (has(jinja, len, "<|im_start|>")) return SQ_CHAT_CHATML;
    if (has(jinja, len, "<|start_header_id|>")) return SQ_CHAT_LLAMA3;
    if (has(jinja, len, "<start_of_turn>")) return SQ_CHAT_GEMMA;
    if (has(jinja, len, "<|assistant|>") && has(jinja, len, "<|end|>")) return SQ_CHAT_PHI3;
    if (has(jinja, len, "[INST]")) return SQ_CHAT_LLAMA2;
    return SQ_CHAT_DEFAULT;
}

/* The template of a model: its own (tokenizer.chat_template) when recognised;
 * else its family's turns by architecture (Qwen: ChatML, which is also what
 * llama.cpp falls back to; Gemma 3: Gemma's; Phi-3: Phi-3's); else the plain
 * default. */
sq_chat_template sq_chat_template_choose(const char *jinja, size_t len, const char *arch)
{
    const sq_chat_template t = sq_chat_template_detect(jinja, len);
    if (t != SQ_CHAT_DEFAULT || !arch) return t;
    if (!strncmp(arch, "qwen", 4)) return SQ_CHAT_CHATML;
    if (!strncmp(arch, "gemma", 5)) return SQ_CHAT_GEMMA;
    if (!strncmp(arch, "phi3", 4)) return SQ_CHAT_PHI3;
    return SQ_CHAT_DEFAULT;
}

const char *sq_chat_template_name(sq_chat_template t)
{
    switch (t) {
    case SQ_CHAT_CHATML: return "chatml";
    case SQ_CHAT_LLAMA2: return "llama2";
    case SQ_CHAT_LLAMA3: return "llama3";
    case SQ_CHAT_PHI3: return "phi3";
    case SQ_CHAT_GEMMA: return "gemma";
    case SQ_CHAT_DEFAULT: break;
    }
    return "default";
}

static bool adds(sq_buf *b, const char *s)
{
    return sq_buf_add(b, s, strlen(s));
}

/* Content without leading/trailing whitespace (Llama-3's template trims). */
static bool add_trimmed(sq_buf *b, const char *s)
{
    size_t n = strlen(s);
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    return sq_buf_add(b, s, n);
}

/* Renders the conversation for the assistant's next turn, without BOS. */
char *sq_chat_render(sq_chat_template t, const sq_chat_message *msgs, size_t n)
{
    sq_buf b = {0};
    bool ok = true;
    switch (t) {
    case SQ_CHAT_CHATML:
        for (size_t i = 0; i < n && ok; i++)
            ok = adds(&b, "<|im_start|>") && adds(&b, msgs[i].role) && adds(&b, "\n") && adds(&b, msgs[i].content) &&
                 adds(&b, "<|im_end|>\n");
        ok = ok && adds(&b, "<|im_start|>assistant\n");
        break;
    case SQ_CHAT_LLAMA3:
        for (size_t i = 0; i < n && ok; i++)
            ok = adds(&b, "<|start_header_id|>") && adds(&b, msgs[i].role) && adds(&b, "<|end_header_id|>\n\n") &&
                 add_trimmed(&b, msgs[i].content) && adds(&b, "<|eot_id|>");
        ok = ok && adds(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case SQ_CHAT_PHI3:
        for (size_t i = 0; i < n && ok; i++)
            ok = adds(&b, "<|") && adds(&b, msgs[i].role) && adds(&b, "|>\n") && adds(&b, msgs[i].content) &&
                 adds(&b, "<|end|>\n");
        ok = ok && adds(&b, "<|assistant|>\n");
        break;
    case SQ_CHAT_GEMMA: {
        /* Gemma has no system role: the system text opens the first user turn. */
        bool pending_system = false;
        for (size_t i = 0; i < n && ok; i++) {
            const char *role = msgs[i].role;
            if (!strcmp(role, "system") || !strcmp(role, "developer")) {
                ok = adds(&b, "<start_of_turn>user\n") && add_trimmed(&b, msgs[i].content) && adds(&b, "\n\n");
                pending_system = true;
                continue;
            }
            if (!pending_system) ok = adds(&b, "<start_of_turn>") && adds(&b, strcmp(role, "assistant") ? "user" : "model") && adds(&b, "\n");
            pending_system = false;
            ok = ok && add_trimmed(&b, msgs[i].content) && adds(&b, "<end_of_turn>\n");
        }
        if (pending_system) ok = ok && adds(&b, "<end_of_turn>\n");
        ok = ok && adds(&b, "<start_of_turn>model\n");
        break;
    }
    case SQ_CHAT_LLAMA2: {
        /* [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer</s><s>[INST] user [/INST] */
        ok = adds(&b, "[INST] ");
        bool open = true; /* inside an [INST] block */
        for (size_t i = 0; i < n && ok; i++) {
            const char *role = msgs[i].role;
            if (!strcmp(role, "system") || !strcmp(role, "developer")) {
                if (!open) ok = adds(&b, "<s>[INST] ");
                open = true;
                ok = ok && adds(&b, "<<SYS>>\n") && add_trimmed(&b, msgs[i].content) && adds(&b, "\n<</SYS>>\n\n");
            } else if (!strcmp(role, "assistant")) {
                ok = adds(&b, " ") && add_trimmed(&b, msgs[i].content) && adds(&b, " </s>");
                open = false;
            } else {
                if (!open) ok = adds(&b, "<s>[INST] ");
                ok = ok && add_trimmed(&b, msgs[i].content) && adds(&b, " [/INST]");
                open = false;
            }
        }
        break;
    }
    case SQ_CHAT_DEFAULT:
        for (size_t i = 0; i < n && ok; i++)
            ok = adds(&b, msgs[i].role) && adds(&b, ": ") && adds(&b, msgs[i].content) && adds(&b, "\n");
        ok = ok && adds(&b, "assistant:");
        break;
    }
    if (!ok || !sq_buf_add(&b, "", 0)) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
