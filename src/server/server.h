/* server.h: the HTTP front end (libmicrohttpd) — the public part used by `localgemma serve`
 * and the module-internal parts shared by the route files.
 *
 * Threads. libmicrohttpd runs one internal epoll thread that calls every route handler,
 * body reader and content reader: route code needs no locks of its own except around
 * struct srv_gen, which the engine thread also touches (through lg_gen_req.emit). Metrics
 * are atomics. lg_server_start/lg_server_stop are called from the main thread.
 *
 * Streaming. A generation request owns a struct srv_gen holding a byte buffer. The engine
 * thread's emit() formats each event (SSE or NDJSON) into it under the mutex and resumes the
 * connection if it was suspended; the content reader drains it and suspends the connection
 * when it is empty. When the client goes away, MHD reports completion and we set the
 * request's cancel flag; the srv_gen lives until both sides have let go (refs). */
#ifndef LG_SERVER_SERVER_H
#define LG_SERVER_SERVER_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "localgemma.h"

struct lg_store;
struct lg_guard;

/* Finish reason for an answer stopped by an output deny rule of the policy. Not an engine
 * value: the server substitutes it in the DONE event; writers map it to "content_filter"
 * (an unknown value reads as "stop"). */
#define SRV_FINISH_CONTENT_FILTER ((enum lg_finish)16)

/* ---------------------------------------------------------------------------------------- */
/* Public: configuration, start, stop.                                                      */

enum {
    LG_SERVER_DEFAULT_PORT = 11434,
    LG_SERVER_MAX_MODELS = 32,
    LG_SERVER_MAX_LIST = 32 /* --cors-origin / --allow-host entries */
};

struct lg_server_config {
    const char *host;       /* bind address (numeric or name); default "127.0.0.1" */
    uint16_t port;          /* 0 = pick a free port (tests); see lg_server_port() */
    size_t max_body_bytes;  /* 413 beyond; default LG_JSON_MAX_BODY */
    unsigned max_connections;   /* default 1024; a connection over the cap gets 503 +
                                 * Retry-After and is closed at once (hardening.md G10) */
    size_t conn_memory_bytes;   /* per-connection pool: bounds request line + headers (431) */
    unsigned idle_timeout_s;    /* idle connection timeout; default 30; also the most a
                                 * keep-alive connection may take to send its next request */
    unsigned header_timeout_s;  /* a request (line, headers and body) must be in within this
                                 * of the connection (first request) or of its headers
                                 * (keep-alive), however slowly it trickles (slowloris): else
                                 * 408 and close (G9); default 10, 0 = default */
    const char *const *cors_origins; /* allowed Origin values; none → every Origin refused */
    size_t n_cors_origins;
    const char *const *allow_hosts; /* extra Host names accepted besides the defaults */
    size_t n_allow_hosts;
    const char *const *models; /* --model names/paths, for /v1/models and /api/tags */
    size_t n_models;
    int32_t default_ctx;       /* --ctx; 0 = model default */
    int64_t keep_alive_ms;     /* --keep-alive; -1 = forever */
    int32_t n_parallel;        /* --parallel */
    int32_t max_queue;         /* --max-queue */
    /* Guardrails (src/guard/guard.h), borrowed: authentication (Bearer keys from the key
     * store, scopes), admission (model allow-list, rate limits → 403/429), input policy,
     * tool allow-list, streaming output redaction/deny, end-of-request accounting and the
     * audit record. NULL = no guard: the static key list below (embedders, unit tests). */
    struct lg_guard *guard;
    bool no_auth;       /* --no-auth (loopback only): every request anonymous admin */
    bool audit_content; /* collect prompt/answer text for the audit (it keeps them only then) */
    /* Static API keys when guard is NULL: SHA-256 digests (none = no key on loopback). */
    const uint8_t (*key_digests)[32];
    size_t n_keys;
    /* TLS (HTTPS): PEM text of the certificate chain and private key, both or neither. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    /* The model store for /api/tags, /api/show, /api/delete, /v1/models; NULL = none. */
    struct lg_store *store;
    /* The engine; NULL in a build without one: generation routes answer 503. */
    const struct lg_engine_ops *engine;
    void *engine_self;
    bool log_requests; /* one stderr line per request (method, path, status, ms); no bodies */
    /* OpenAI routes: send thinking as "reasoning" (Ollama/vLLM style) instead of
     * "reasoning_content" (llama.cpp/LM Studio style, the default); api.md §2.1. */
    bool reasoning_key_reasoning;
};

struct lg_server;

/* Fills cfg with the defaults above. */
void lg_server_config_default(struct lg_server_config *cfg);

/* True if host (numeric address or "localhost") is a loopback address. */
bool lg_server_host_is_loopback(const char *host);

/* True when libmicrohttpd was built with TLS (GnuTLS) support. */
bool lg_server_tls_supported(void);

/* Binds and starts serving. LG_ERR_INVALID_ARG when a non-loopback bind has no API keys
 * (static keys, or active keys in the guard's store) or asks for no_auth (the message says
 * why); LG_ERR_UNSUPPORTED for TLS without TLS support; LG_ERR_IO when the address cannot be
 * bound (or the certificate/key is rejected). Main thread. */
enum lg_status lg_server_start(const struct lg_server_config *cfg, struct lg_server **out,
                               struct lg_err *err);
/* The port actually bound. */
uint16_t lg_server_port(const struct lg_server *s);
/* Stops accepting connections, lets in-flight requests finish for up to drain_ms, cancels
 * the rest, stops the daemon and frees everything. NULL allowed. Main thread. */
void lg_server_stop(struct lg_server *s, int drain_ms);

/* Parses a Go-style duration ("5m", "1h30m", "250ms", "10", "-1") into milliseconds; a bare
 * number is seconds; any negative value means forever (-1). */
enum lg_status lg_parse_duration_ms(const char *s, int64_t *out_ms, struct lg_err *err);

/* ---------------------------------------------------------------------------------------- */
/* Module-internal: byte buffer.                                                            */

struct srv_buf {
    char *p;
    size_t n, cap;
    bool oom; /* an append failed; contents are incomplete */
};
void srv_buf_put(struct srv_buf *b, const void *data, size_t n);
void srv_buf_puts(struct srv_buf *b, const char *s);
/* Appends json_dumps(v, JSON_COMPACT) without allocating a temporary string. */
void srv_buf_put_json(struct srv_buf *b, const json_t *v);
void srv_buf_free(struct srv_buf *b);

/* ---------------------------------------------------------------------------------------- */
/* Requests: parsing (MHD-free, fuzzed) and the shared field helpers.                       */

enum {
    SRV_MAX_MESSAGES = 4096,
    SRV_MAX_TOOLS = 128,
    SRV_MAX_TOOL_CALLS = 64, /* per response */
    SRV_MAX_TOKENS = 1 << 20,
    SRV_MAX_CTX = 1 << 21,
    SRV_MAX_TOP_LOGPROBS = 20,
    SRV_MAX_SCHEMA_BYTES = 256 * 1024
};

/* A parsed generation request plus the API details that only the writers need. */
struct srv_parsed {
    struct lg_gen_req req;
    bool include_usage;     /* OpenAI stream_options.include_usage */
    bool reasoning_as_reasoning; /* emit "reasoning" instead of "reasoning_content" */
};

void srv_parsed_init(struct srv_parsed *p, enum lg_api api);
void srv_parsed_free(struct srv_parsed *p);

/* Body parsers, one per generation route. On error err names the field ("messages[2].role:
 * ..."); the caller answers 400 (LG_ERR_FORMAT/RANGE/NOT_FOUND/UNSUPPORTED) or 413. */
enum lg_status srv_parse_openai_chat(const char *body, size_t n, size_t max_bytes,
                                     struct srv_parsed *out, struct lg_err *err);
enum lg_status srv_parse_openai_completions(const char *body, size_t n, size_t max_bytes,
                                            struct srv_parsed *out, struct lg_err *err);
enum lg_status srv_parse_ollama_chat(const char *body, size_t n, size_t max_bytes,
                                     struct srv_parsed *out, struct lg_err *err);
enum lg_status srv_parse_ollama_generate(const char *body, size_t n, size_t max_bytes,
                                         struct srv_parsed *out, struct lg_err *err);

/* The signature of the four parsers above. */
typedef enum lg_status (*srv_parse_fn)(const char *body, size_t n, size_t max_bytes,
                                       struct srv_parsed *out, struct lg_err *err);

/* Shared field parsers (request.c). ctx is the path of obj. */
/* How every generation parser starts: out initialised for api, the body parsed (within
 * max_bytes and the depth limit, an object) and "model" read. On success the caller owns
 * *root; on error *root is NULL. */
enum lg_status srv_parse_begin(const char *body, size_t n, size_t max_bytes, enum lg_api api,
                               struct srv_parsed *out, json_t **root, struct lg_err *err);
enum lg_status srv_get_model(const json_t *root, struct lg_gen_req *r, struct lg_err *err);
/* "messages" → canonical messages in r->messages. OpenAI (ollama false): required, not
 * empty; Ollama: optional (no messages only loads the model). */
enum lg_status srv_get_messages(const json_t *root, bool ollama, struct lg_gen_req *r,
                                struct lg_err *err);
/* "tool_choice" (after srv_get_tools): "auto", "none" (drops the tools), "required", or
 * {"type": "function", "function": {"name": f}} with f declared. Another string is an error
 * on Ollama routes (our extension: nothing to stay compatible with) and ignored on OpenAI
 * routes (clients written for other providers send values such as "any"). */
enum lg_status srv_get_tool_choice(const json_t *root, bool ollama, struct lg_gen_req *r,
                                   struct lg_err *err);
/* "logprobs" (bool) and "top_logprobs" (0..SRV_MAX_TOP_LOGPROBS) → r->top_logprobs, -1 off. */
enum lg_status srv_get_logprobs(const json_t *root, struct lg_gen_req *r, struct lg_err *err);
/* OpenAI "stream_options": {"include_usage": bool}. */
enum lg_status srv_get_stream_options(const json_t *root, struct srv_parsed *out,
                                      struct lg_err *err);
/* Extension on both chat routes: "reasoning_budget", max thought tokens (-1 = the server's
 * --reasoning-budget). */
enum lg_status srv_get_reasoning_budget(const json_t *root, struct lg_gen_req *r,
                                        struct lg_err *err);
enum lg_status srv_get_stop(const json_t *v, const char *path, struct lg_gen_req *r,
                            struct lg_err *err);
enum lg_status srv_get_tools(const json_t *root, struct lg_gen_req *r, struct lg_err *err);
enum lg_status srv_get_keep_alive(const json_t *root, struct lg_gen_req *r,
                                  struct lg_err *err);
enum lg_status srv_get_ollama_options(const json_t *root, struct lg_gen_req *r,
                                      struct lg_err *err);
enum lg_status srv_get_ollama_format(const json_t *root, struct lg_gen_req *r,
                                     struct lg_err *err);
enum lg_status srv_get_ollama_think(const json_t *root, struct lg_gen_req *r,
                                    struct lg_err *err);
enum lg_status srv_get_openai_format(const json_t *root, struct lg_gen_req *r,
                                     struct lg_err *err);
/* temperature, top_p, top_k, min_p, penalties, seed, max_tokens, n, stop, stream. */
enum lg_status srv_get_openai_sampling(const json_t *root, struct lg_gen_req *r,
                                       struct lg_err *err);
/* Optional scalars: absent or null → LG_OK, nothing changes. */
enum lg_status srv_opt_float(const json_t *o, const char *ctx, const char *key, double lo,
                             double hi, float *field, unsigned *set, unsigned bit,
                             struct lg_err *err);
enum lg_status srv_opt_int(const json_t *o, const char *ctx, const char *key, int64_t lo,
                           int64_t hi, int64_t *out, bool *present, struct lg_err *err);
enum lg_status srv_opt_bool(const json_t *o, const char *ctx, const char *key, bool *out,
                            struct lg_err *err);
/* Ollama: stream, options, format, keep_alive, think, logprobs (ollama_chat.c). */
enum lg_status srv_get_ollama_common(const json_t *root, struct lg_gen_req *r,
                                     struct lg_err *err);
/* Appends a canonical message for OpenAI (ollama=false) or Ollama message m at path. */
enum lg_status srv_canon_message(const json_t *m, const char *path, bool ollama, json_t *out,
                                 struct lg_err *err);

/* ---------------------------------------------------------------------------------------- */
/* Accumulating and writing generation output (accum.c, sse.c, ndjson.c).                  */

struct srv_tool_call {
    char id[64];
    char *name;
    struct srv_buf args;
};

/* Everything a non-streamed answer needs, collected from events. */
struct srv_accum {
    struct srv_buf content, reasoning;
    json_t *logprobs; /* array of OpenAI-style token entries (content only), or NULL */
    struct srv_tool_call calls[SRV_MAX_TOOL_CALLS];
    int32_t n_calls;
    bool done, failed;
    enum lg_finish finish;
    struct lg_gen_usage usage;
    struct lg_gen_timings timings;
    json_t *validation; /* DONE's validation report (object) or NULL */
    enum lg_status status;
    char message[256];
};
void srv_accum_event(struct srv_accum *a, const struct lg_gen_event *ev);
void srv_accum_free(struct srv_accum *a);

/* OpenAI SSE writer: chat.completion.chunk (chat) or text_completion (completions). */
struct srv_sse {
    char id[48];
    int64_t created; /* Unix seconds */
    char model[LG_GEN_MODEL_NAME_MAX];
    bool chat;
    bool include_usage;
    bool reasoning_as_reasoning;
    int32_t n_calls_started; /* tool calls whose first fragment went out */
    bool finished;
};
void srv_sse_init(struct srv_sse *w, bool chat, const char *id, int64_t created,
                  const char *model, bool include_usage, bool reasoning_as_reasoning);
/* The role-only first chunk (chat only; nothing for completions). */
void srv_sse_begin(struct srv_sse *w, struct srv_buf *out);
void srv_sse_event(struct srv_sse *w, const struct lg_gen_event *ev, struct srv_buf *out);
/* Non-streamed OpenAI body from an accumulator (new reference or NULL on OOM). */
json_t *srv_openai_body(const struct srv_sse *w, const struct srv_accum *a);
/* OpenAI error object {"error":{"message","type","param","code"}} (new reference). */
json_t *srv_openai_error(int http_status, const char *message);

/* Ollama NDJSON writer: /api/chat (chat = true) or /api/generate. */
struct srv_ndjson {
    char model[LG_GEN_MODEL_NAME_MAX];
    bool chat;
    int64_t (*clock_ns)(void); /* wall clock for created_at; NULL = CLOCK_REALTIME */
    struct srv_accum calls;    /* tool calls are sent whole, when complete */
    int32_t n_calls_sent;
    bool finished;
};
void srv_ndjson_init(struct srv_ndjson *w, bool chat, const char *model,
                     int64_t (*clock_ns)(void));
void srv_ndjson_event(struct srv_ndjson *w, const struct lg_gen_event *ev, struct srv_buf *out);
void srv_ndjson_free(struct srv_ndjson *w);
/* Non-streamed Ollama body (new reference, or NULL on OOM / invalid tool arguments). */
json_t *srv_ollama_body(const struct srv_ndjson *w, const struct srv_accum *a);
/* RFC 3339 with nanoseconds, trailing zeros trimmed (Go's RFC3339Nano). out >= 40 bytes. */
void srv_format_time(int64_t unix_ns, char *out, size_t n);

/* [{"token","logprob","bytes":[...],"top_logprobs":[{"token","logprob","bytes"}]}] for an
 * event's tokens (OpenAI chat and Ollama share this shape); NULL when it carries none. */
json_t *srv_logprobs_json(const struct lg_gen_event *ev);

/* Tool-call arguments text → object; NULL if it is not a JSON object. */
json_t *srv_parse_tool_args(const struct srv_buf *args);

/* ---------------------------------------------------------------------------------------- */
/* Connection-level helpers for route files (server.c).                                     */

struct srv_conn;
struct lg_server;

enum srv_err_style { SRV_ERR_OPENAI, SRV_ERR_OLLAMA };

/* Handlers return an MHD_Result (MHD_YES / MHD_NO) as int. */
typedef int (*srv_handler_fn)(struct srv_conn *c);

const char *srv_conn_body(const struct srv_conn *c, size_t *n);
/* The body parsed as JSON within the server's size and depth limits. On failure the error
 * reply is queued, *reply holds what the route returns, and false comes back. */
bool srv_body_json(struct srv_conn *c, json_t **root, int *reply);
/* One top-level body field for srv_body_fields(). */
enum srv_field_type { SRV_FIELD_STR, SRV_FIELD_BOOL, SRV_FIELD_ARR };
struct srv_field {
    const char *key;
    const char *alt;   /* older name tried when key is absent (Ollama's "name"), or NULL */
    enum srv_field_type type;
    bool required;     /* absent or null: 400 "key: required" */
    size_t max;        /* STR: bytes; ARR: elements (LG_ERR_RANGE beyond) */
    void *out;         /* const char ** | bool * | json_t ** (borrowed); unchanged if absent */
    size_t *n_out;     /* STR: length, or NULL */
};
/* srv_body_json() and then the fields f[0..n_f), in order. On failure a 400 naming the
 * field is queued, *reply holds what the route returns, and false comes back. On success
 * the caller owns *root; strings and arrays point into it. */
bool srv_body_fields(struct srv_conn *c, const struct srv_field *f, size_t n_f, json_t **root,
                     int *reply);
const struct lg_server_config *srv_conn_config(const struct srv_conn *c);
const char *srv_conn_url(const struct srv_conn *c);
bool srv_conn_is_head(const struct srv_conn *c);

/* Queues body_steal (taken over) as the JSON answer; a NULL body (out of memory while building
 * it) answers 503 "out of memory" instead. */
int srv_reply_json(struct srv_conn *c, unsigned status, json_t *body_steal);
int srv_reply_text(struct srv_conn *c, unsigned status, const char *content_type,
                   const char *text, size_t n);
/* Error in the route's style; for OpenAI, param is derived from a "field: ..." message. */
int srv_reply_error(struct srv_conn *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a parse/submit status to an HTTP status (400, 404, 413, 503, 500). */
unsigned srv_status_http(enum lg_status st);

/* Starts a generation: submits to the engine (503 without one, 503 + Retry-After when busy)
 * and streams or waits. Takes ownership of p (heap-allocated) in every case. */
int srv_generate(struct srv_conn *c, struct srv_parsed *p);
/* A generation route: the body through parse (400/413 naming the field), then
 * srv_generate(). */
int srv_route_generation(struct srv_conn *c, srv_parse_fn parse);

/* Route handlers (one file per family). */
int srv_route_openai_chat(struct srv_conn *c);
int srv_route_openai_completions(struct srv_conn *c);
int srv_route_openai_models(struct srv_conn *c);
int srv_route_openai_model(struct srv_conn *c);
int srv_route_ollama_generate(struct srv_conn *c);
int srv_route_ollama_chat(struct srv_conn *c);
int srv_route_ollama_tags(struct srv_conn *c);
int srv_route_ollama_show(struct srv_conn *c);
int srv_route_ollama_ps(struct srv_conn *c);
int srv_route_ollama_delete(struct srv_conn *c);
int srv_route_ollama_pull(struct srv_conn *c);
int srv_route_root(struct srv_conn *c);
int srv_route_health(struct srv_conn *c);
int srv_route_version(struct srv_conn *c);
int srv_route_metrics(struct srv_conn *c);

int srv_route_tokenize(struct srv_conn *c);   /* tokenize.c */
int srv_route_detokenize(struct srv_conn *c); /* tokenize.c */

/* ---------------------------------------------------------------------------------------- */
/* Work on its own thread with a streamed or deferred reply (stream.c; POST /api/pull).     */

struct srv_task;
typedef void (*srv_task_fn)(struct srv_task *t, void *user);

/* Starts fn(t, user) on a detached thread. stream: answers 200 now with content_type and a
 * body made of what fn passes to srv_task_write(); when the server stops first, stop_line is
 * appended and the body ends. !stream: the connection waits and the route is called again
 * when fn returns; it must then call srv_task_resume() first, which replies with what fn
 * gave srv_task_set_result() (503 when the server stopped first). user_free(user) runs when
 * the task is freed, also on every error path. MHD thread. */
int srv_task_start(struct srv_conn *c, bool stream, const char *content_type,
                   const char *stop_line, srv_task_fn fn, void *user,
                   void (*user_free)(void *));
/* For a route that started a deferred task on c: replies (or waits again) and sets
 * *had_task; otherwise does nothing (*had_task = false). MHD thread. */
int srv_task_resume(struct srv_conn *c, bool *had_task);
/* MHD thread, when c completes: a deferred task still waiting to reply on c lets go of it
 * (MHD may end a request without calling the route again, e.g. when the client is gone). */
void srv_task_conn_gone(const struct srv_conn *c);
/* Worker thread: appends body bytes (dropped once the body ended or the client left). */
void srv_task_write(struct srv_task *t, const void *data, size_t n);
/* Worker thread: the deferred reply (ignored in stream mode). Steals result_steal. */
void srv_task_set_result(struct srv_task *t, unsigned status, json_t *result_steal);
/* Worker thread: true once the work is no longer wanted — the server is stopping or the
 * client hung up (see stream.c). Cheap enough to poll several times a second. */
bool srv_task_cancelled(struct srv_task *t);
/* Called by lg_server_stop() after it stops accepting: ends every task's reply and resumes
 * its connection, so MHD_stop_daemon never meets a suspended one. Main thread. */
void srv_streams_stop(const struct lg_server_config *cfg);

/* server.c helpers for stream.c. */
struct MHD_Connection;
struct MHD_Response;
struct MHD_Connection *srv_conn_mhd(const struct srv_conn *c);
/* Queues r (CORS headers, metrics, log line as for every reply) and destroys the handle. */
int srv_reply_response(struct srv_conn *c, unsigned status, struct MHD_Response *r);
bool srv_conn_draining(const struct srv_conn *c);

/* Models the server can name: store manifests, then --model entries not in the store. */
struct srv_model_info {
    char name[LG_GEN_MODEL_NAME_MAX];
    char digest[72];      /* 64 hex digits, "" when unknown (a plain file path) */
    uint64_t size;
    int64_t modified;     /* Unix seconds */
    char arch[64];
    char size_label[32];
    char quant[32];
    uint64_t context_length;
};
/* *out is malloc'ed (free()); LG_OK with *n = 0 when there is nothing. */
enum lg_status srv_models_list(const struct lg_server_config *cfg, struct srv_model_info **out,
                               size_t *n, struct lg_err *err);
/* LG_ERR_NOT_FOUND when name is neither listed nor resolvable. */
enum lg_status srv_models_find(const struct lg_server_config *cfg, const char *name,
                               struct srv_model_info *out, struct lg_err *err);

/* The engine, or NULL. */
const struct lg_engine_ops *srv_conn_engine(const struct srv_conn *c, void **self);

/* ---------------------------------------------------------------------------------------- */
/* Metrics (metrics.c): atomics, any thread.                                               */

enum srv_route_id {
    SRV_R_ROOT, SRV_R_HEALTH, SRV_R_VERSION, SRV_R_METRICS,
    SRV_R_OAI_CHAT, SRV_R_OAI_COMPLETIONS, SRV_R_OAI_MODELS,
    SRV_R_OLLAMA_GENERATE, SRV_R_OLLAMA_CHAT, SRV_R_OLLAMA_TAGS, SRV_R_OLLAMA_SHOW,
    SRV_R_OLLAMA_PS, SRV_R_OLLAMA_DELETE, SRV_R_OLLAMA_PULL,
    SRV_R_OTHER, /* unknown paths, refused hosts/origins before routing */
    SRV_R_COUNT
};
const char *srv_route_name(enum srv_route_id r);

void srv_metrics_request(enum srv_route_id r, unsigned http_status);
void srv_metrics_tokens(int64_t prompt, int64_t completion);
void srv_metrics_ttft(double seconds);
void srv_metrics_tps(double tokens_per_second);
void srv_metrics_inflight(int delta);
/* The watchdog's idle trim (server.c): pending = generations ran since the last trim;
 * trimmed = one was done now. */
void srv_metrics_heap_trim(bool pending, bool trimmed);
/* connections: open (delta), refused over the cap (503), closed at the header deadline */
void srv_metrics_conn_open(int delta);
void srv_metrics_rejected_conn(void);
void srv_metrics_header_timeout(void);
/* Prometheus text exposition (format 0.0.4) into out. */
void srv_metrics_render(struct srv_buf *out, const struct lg_engine_stats *es);
void srv_metrics_reset(void); /* tests */

#endif
