/*
 * sq/serve.h — the pieces of `sq serve`, an OpenAI-compatible HTTP server:
 * request parsing and validation, chat templates, routing, response and
 * server-sent-event JSON, a pool of request slots with a bounded queue, the
 * generation loop of one request (stop strings, streaming pieces), the check
 * of a SmarterQuant configuration against a model's metadata, and the HTTP
 * server itself (libmicrohttpd, one thread per connection).
 *
 * Ownership: an sq_server borrows nothing after creation except the
 * sq_model and sq_vocab given in its options (the caller frees them after
 * sq_server_free). Everything else is owned by the object that created it
 * and released by its _free function (NULL is a no-op everywhere).
 * The library never prints: the server reports through a log callback.
 */
#ifndef SQ_SERVE_H
#define SQ_SERVE_H

#include "sq/base.h"
#include "sq/engine.h"
#include "sq/sqconfig.h"
#include "sq/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors sent to clients ---- */

/* An error answer: HTTP status and the OpenAI-style error object
 * {"error":{"message":..,"type":..,"param":..,"code":..}}. */
typedef struct sq_serve_error {
    int status;        /* HTTP status (4xx/5xx) */
    const char *type;  /* "invalid_request_error", "authentication_error", ... (static string) */
    const char *code;  /* "invalid_json", "missing_field", ... (static string) */
    char param[64];    /* the request field at fault, "" if none */
    char message[512];
} sq_serve_error;

/* Fills e; returns e->status. */
int sq_serve_error_set(sq_serve_error *e, int status, const char *type, const char *code, const char *param,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The error as a JSON text (malloc'd, NUL-terminated; NULL when out of memory). */
char *sq_serve_error_json(const sq_serve_error *e);

/* ---- routing ---- */

typedef enum sq_serve_route {
    SQ_ROUTE_NOT_FOUND = 0,
    SQ_ROUTE_BAD_METHOD,  /* the path exists, the method is not allowed */
    SQ_ROUTE_HEALTH,      /* GET /health */
    SQ_ROUTE_MODELS,      /* GET /v1/models */
    SQ_ROUTE_COMPLETIONS, /* POST /v1/completions */
    SQ_ROUTE_CHAT         /* POST /v1/chat/completions */
} sq_serve_route;

/* Maps a method and a path (no query string) to a route. On
 * SQ_ROUTE_BAD_METHOD, *allow (if non-NULL) is the Allow header's value. */
sq_serve_route sq_serve_route_of(const char *method, const char *path, const char **allow);
/* "completions", "chat", ... for logs. */
const char *sq_serve_route_name(sq_serve_route r);

/* ---- requests ---- */

typedef enum sq_serve_kind { SQ_SERVE_COMPLETION = 1, SQ_SERVE_CHAT = 2 } sq_serve_kind;

typedef struct sq_chat_message {
    char *role;    /* "system", "user", "assistant", "developer" or "tool" */
    char *content; /* text parts joined */
} sq_chat_message;

#define SQ_SERVE_MAX_STOP 16

/* A validated request. Numeric fields hold the defaults when absent. */
typedef struct sq_serve_request {
    sq_serve_kind kind;
    char *model;              /* as sent, or NULL */
    char *prompt;             /* completion: the prompt text (NULL when given as token ids) */
    int32_t *prompt_tokens;   /* completion: prompt given as an array of token ids */
    size_t n_prompt_tokens;
    sq_chat_message *messages; /* chat */
    size_t n_messages;
    int max_tokens;           /* -1: up to the end of the context */
    float temperature;        /* default 1 */
    float top_p;              /* default 1 */
    int top_k;                /* default 0 (off) */
    bool has_seed;
    uint64_t seed;
    char *stop[SQ_SERVE_MAX_STOP];
    size_t n_stop;
    bool stream;
    bool include_usage;       /* stream_options.include_usage */
} sq_serve_request;

/* Parses and validates a request body (len bytes, need not be NUL-terminated)
 * for a completion or chat endpoint. On failure returns a non-zero HTTP
 * status (400) with e saying what was wrong: malformed JSON (line, column and
 * byte position), not an object, a missing field, a wrong type or a value out
 * of range (naming the field). On success returns 0 and *out owns its
 * strings (sq_serve_request_free). *out is zeroed on failure. */
int sq_serve_request_parse(const char *body, size_t len, sq_serve_kind kind, sq_serve_request *out,
                           sq_serve_error *e);
void sq_serve_request_free(sq_serve_request *r);

/* ---- chat templates ---- */

typedef enum sq_chat_template {
    SQ_CHAT_DEFAULT = 0, /* "role: content" lines, then "assistant:" */
    SQ_CHAT_CHATML,      /* <|im_start|>role\ncontent<|im_end|>\n */
    SQ_CHAT_LLAMA2,      /* [INST] <<SYS>>..<</SYS>> .. [/INST] */
    SQ_CHAT_LLAMA3,      /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    SQ_CHAT_PHI3,        /* <|user|>\ncontent<|end|>\n */
    SQ_CHAT_GEMMA        /* <start_of_turn>user\ncontent<end_of_turn>\n */
} sq_chat_template;

/* Recognises a tokenizer.chat_template (Jinja text) by its markers; NULL or
 * an unknown template gives SQ_CHAT_DEFAULT. */
sq_chat_template sq_chat_template_detect(const char *jinja, size_t len);
/* The template for a model: its tokenizer.chat_template when recognised, else
 * its architecture's family (qwen2/qwen3/qwen3moe: ChatML, gemma3: Gemma,
 * phi3: Phi-3), else SQ_CHAT_DEFAULT. jinja may be NULL. */
sq_chat_template sq_chat_template_choose(const char *jinja, size_t len, const char *arch);
const char *sq_chat_template_name(sq_chat_template t);

/* Renders messages as the prompt text for the assistant's next turn (no BOS:
 * the tokenizer adds it). Returns a malloc'd NUL-terminated string, NULL
 * when out of memory. */
char *sq_chat_render(sq_chat_template t, const sq_chat_message *msgs, size_t n);

/* ---- responses ---- */

typedef struct sq_serve_usage {
    int prompt_tokens, completion_tokens;
} sq_serve_usage;

/* The whole answer of a non-streamed request (malloc'd JSON text). */
char *sq_serve_response_json(sq_serve_kind kind, const char *id, long created, const char *model, const char *text,
                             size_t text_len, const char *finish_reason, sq_serve_usage usage);
/* One streamed chunk: text (may be empty) and finish_reason (NULL while
 * running). For chat, role_delta adds "role":"assistant" to the delta.
 * usage non-NULL: a usage-only chunk with an empty choices array. */
char *sq_serve_chunk_json(sq_serve_kind kind, const char *id, long created, const char *model, const char *text,
                          size_t text_len, bool role_delta, const char *finish_reason, const sq_serve_usage *usage);
/* GET /v1/models and GET /health bodies. */
char *sq_serve_models_json(const char *model, long created, const sq_model *m);
char *sq_serve_health_json(int slots_idle, int slots_busy, int queued);

/* Server-sent-event framing: "data: " payload "\n\n" (payload must hold no
 * newline; compact JSON never does). Returns a malloc'd string and its length. */
char *sq_sse_frame(const char *payload, size_t *len);

/* ---- slots and the bounded queue ---- */

typedef struct sq_slot_pool sq_slot_pool;

typedef enum sq_slot_result {
    SQ_SLOT_OK = 0,   /* *slot is yours until sq_slot_pool_release */
    SQ_SLOT_FULL,     /* every slot busy and the queue at its bound: answer 503 */
    SQ_SLOT_SHUTDOWN, /* the pool is shutting down */
    SQ_SLOT_GONE      /* the caller's gone() said the client went away while waiting */
} sq_slot_result;

/* n_slots >= 1 slots; at most queue_max requests wait (0: none wait). NULL on ENOMEM. */
sq_slot_pool *sq_slot_pool_create(int n_slots, int queue_max);
void sq_slot_pool_free(sq_slot_pool *p);
/* Takes a free slot, or waits in FIFO order when the queue has room, or
 * fails at once with SQ_SLOT_FULL. Thread-safe. */
sq_slot_result sq_slot_pool_acquire(sq_slot_pool *p, int *slot);
/* The same; while waiting, gone(ud) is asked every 50 ms whether the client
 * is still there (true: leave the queue, SQ_SLOT_GONE). gone may be NULL. */
sq_slot_result sq_slot_pool_acquire_until(sq_slot_pool *p, int *slot, bool (*gone)(void *ud), void *ud);
void sq_slot_pool_release(sq_slot_pool *p, int slot);
/* Wakes every waiter with SQ_SLOT_SHUTDOWN; later acquires fail the same way. */
void sq_slot_pool_shutdown(sq_slot_pool *p);
/* A consistent snapshot of the counters. */
void sq_slot_pool_stats(sq_slot_pool *p, int *idle, int *busy, int *queued);

/* ---- generation of one request ---- */

/* The sampling and stopping settings of a generation. */
typedef struct sq_gen_params {
    int max_tokens;            /* -1: until the context is full */
    sq_sampler_params sampler;
    const char *const *stop;   /* stop strings (not owned) */
    size_t n_stop;
} sq_gen_params;

typedef struct sq_gen sq_gen;

/* Starts a generation on context c (cleared first): evaluates the prompt.
 * Errors: a prompt that does not leave room for one token (SQ_ERANGE), an
 * evaluation failure. The context stays borrowed until sq_gen_free. */
sq_status sq_gen_start(sq_context *c, const sq_vocab *v, const sq_token *prompt, size_t n_prompt,
                       const sq_gen_params *p, sq_gen **out, sq_error *err);
/* Produces the next token. *text and *len receive the text that is now safe to
 * send (bytes owned by g, valid until the next call; possibly empty: partial
 * UTF-8 and possible beginnings of a stop string are held back). Returns
 * true while generation goes on; false when finished (then *text holds the
 * last text to send and sq_gen_finish_reason() says why) or on error
 * (sq_gen_finish_reason() is NULL and err says why). */
bool sq_gen_step(sq_gen *g, const char **text, size_t *len, sq_error *err);
/* "stop" (end-of-generation token or stop string), "length" (max_tokens or
 * the context), NULL while running or after an error. */
const char *sq_gen_finish_reason(const sq_gen *g);
int sq_gen_n_generated(const sq_gen *g);
/* All text sent so far (the completion), owned by g. */
const char *sq_gen_text(const sq_gen *g, size_t *len);
void sq_gen_free(sq_gen *g);

/* ---- SmarterQuant configuration at inference time (spec section 5) ---- */

/* Checks a configuration against the model file's metadata: the metadata is
 * the truth; every configured tensor whose metadata disagrees (types or
 * permutation) gets a warning saying the metadata wins; a configured tensor
 * without SmarterQuant metadata gets a warning that the configuration cannot
 * be applied to it (its stored data is that of a plain tensor); a key naming
 * no tensor gets a warning. Returns the number of conflicts. */
int sq_serve_check_config(const sq_gguf *g, const sq_config *cfg, sq_warnings *w);

/* ---- the HTTP server ---- */

/* One finished request, for the log. */
typedef struct sq_serve_log_entry {
    const char *method;
    const char *path;
    int status;
    int prompt_tokens, completion_tokens;
    double seconds;
    const char *note; /* "", "client disconnected", "cancelled", ... */
} sq_serve_log_entry;

typedef struct sq_server_options {
    const sq_model *model;   /* borrowed */
    const sq_vocab *vocab;   /* borrowed */
    const char *model_name;  /* id shown by /v1/models */
    const char *host;        /* numeric IPv4 or IPv6 address; NULL: 127.0.0.1 */
    int port;                /* 0: any free port (see sq_server_port) */
    int n_ctx;               /* per slot; 0: the model's training context */
    int n_threads;           /* per slot */
    int n_parallel;          /* slots */
    int queue_max;           /* waiting requests beyond the slots */
    const char *api_key;     /* NULL: no authentication */
    size_t max_body;         /* bytes; 0: 1 MiB */
    int max_connections;     /* 0: n_parallel + queue_max + 64 */
    void (*log)(void *ud, const sq_serve_log_entry *e); /* one call per request (any thread) */
    void (*log_msg)(void *ud, const char *msg);          /* server-level messages (any thread) */
    void *log_ud;
    int debug_token_delay_ms; /* for tests: pause after each generated token (0: none); a client hang-up, a
                               * shutdown or sq_server_set_debug_token_delay() ends a pause at once */
} sq_server_options;

typedef struct sq_server sq_server;

/* Creates the slots' contexts and starts listening. Errors name the reason
 * (address, bind, context creation). */
sq_status sq_server_start(const sq_server_options *o, sq_server **out, sq_error *err);
/* The port really bound (useful with port 0). */
int sq_server_port(const sq_server *s);
/* Sets the debug pause after each generated token (0: none) while the server
 * runs; thread-safe; requests in a pause see the new value within 10 ms. */
void sq_server_set_debug_token_delay(sq_server *s, int ms);
/* Stops accepting, cancels queued and running requests (streams end, waiting
 * requests get 503), waits for every connection thread and frees everything. */
void sq_server_stop(sq_server *s);

#ifdef __cplusplus
}
#endif
#endif /* SQ_SERVE_H */
