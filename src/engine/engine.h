/* engine.h: the interface between the HTTP server (and CLI) and the inference engine.
 *
 * Threads. One engine thread owns models, KV caches, the scheduler and the samplers. Other
 * threads (the server's libmicrohttpd thread, the CLI) talk to it only through:
 *   - ops->submit(): pushes a request onto the engine's bounded queue (any thread);
 *   - req->cancel: an atomic flag the submitter sets when the client goes away; the engine
 *     reads it before every step and ends the request within one step;
 *   - req->emit(): the engine calls it from the engine thread to hand out events.
 * The engine never blocks on a client: emit() must return quickly (the server copies or
 * formats the event into a per-request buffer and wakes the connection; no network IO).
 *
 * Request lifetime. The submitter owns struct lg_gen_req and everything it points to. After
 * a successful submit the engine may read it (and only read it; it writes nothing but what
 * emit() carries) until it delivers exactly one terminal event (LG_GEN_EV_DONE or
 * LG_GEN_EV_ERROR). The submitter may free the request inside that terminal emit() call, so
 * the engine must not read req at all (not even req->cancel) once it has begun the call.
 * A failed submit delivers no event.
 *
 * Events. For each request the engine emits, in order: zero or more REASONING / CONTENT /
 * TOOL_CALL deltas, then one DONE or ERROR. Text is UTF-8 cut on code-point boundaries
 * (the detokenizer holds back partial sequences). Event pointers are valid only during the
 * emit() call.
 *
 * Implementations. The real engine (src/engine/, issue #6) provides a `struct lg_engine_ops`
 * table and an instance pointer; the server receives both at creation and never calls an
 * engine function directly, so a server without an engine (this build) answers 503 on the
 * generation routes, and tests plug in a scripted double (tests/unit/engine_double.h). */
#ifndef LG_ENGINE_ENGINE_H
#define LG_ENGINE_ENGINE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

enum {
    LG_GEN_MAX_STOP = 16,        /* stop strings per request */
    LG_GEN_MAX_STOP_BYTES = 256, /* bytes per stop string */
    LG_GEN_MODEL_NAME_MAX = 256  /* bytes of a model name, with NUL */
};

/* What the prompt is made of. */
enum lg_prompt_kind {
    LG_PROMPT_CHAT = 0, /* req->messages (canonical form below), rendered by chat/ */
    LG_PROMPT_TEXT = 1, /* req->prompt (+ system, suffix), wrapped in one user turn */
    LG_PROMPT_RAW = 2   /* req->prompt tokenized as is: no template (Ollama raw, /v1/completions) */
};

enum lg_think {
    LG_THINK_DEFAULT = 0, /* the model's default */
    LG_THINK_OFF = 1,
    LG_THINK_ON = 2
};

enum lg_format {
    LG_FORMAT_TEXT = 0, /* free text */
    LG_FORMAT_JSON = 1, /* any JSON object (OpenAI json_object, Ollama "json") */
    LG_FORMAT_SCHEMA = 2 /* JSON matching req->schema (grammar-constrained) */
};

/* Which API the request came from; the engine may use it for logging and defaults only. */
enum lg_api {
    LG_API_OPENAI_CHAT = 0,
    LG_API_OPENAI_COMPLETIONS = 1,
    LG_API_OLLAMA_CHAT = 2,
    LG_API_OLLAMA_GENERATE = 3
};

/* Bits of lg_sampling.set: which fields the client gave explicitly. Unset fields hold the
 * API's documented default (OpenAI or Ollama); the engine may replace unset ones with the
 * model's recommended values (GGUF / Modelfile parameters). */
enum lg_sampling_bits {
    LG_SAMP_TEMPERATURE = 1u << 0,
    LG_SAMP_TOP_K = 1u << 1,
    LG_SAMP_TOP_P = 1u << 2,
    LG_SAMP_MIN_P = 1u << 3,
    LG_SAMP_REPEAT_PENALTY = 1u << 4,
    LG_SAMP_PRESENCE_PENALTY = 1u << 5,
    LG_SAMP_FREQUENCY_PENALTY = 1u << 6,
    LG_SAMP_REPEAT_LAST_N = 1u << 7,
    LG_SAMP_SEED = 1u << 8,
    LG_SAMP_TYPICAL_P = 1u << 9
};

/* Sampling parameters, already range-checked by the server. */
struct lg_sampling {
    unsigned set;            /* enum lg_sampling_bits */
    float temperature;       /* [0, 100]; 0 = greedy */
    int32_t top_k;           /* [0, vocab]; 0 = off */
    float top_p;             /* (0, 1]; 1 = off */
    float min_p;             /* [0, 1]; 0 = off */
    float typical_p;         /* (0, 1]; 1 = off */
    float repeat_penalty;    /* (0, 10]; 1 = off */
    float presence_penalty;  /* [-2, 2] */
    float frequency_penalty; /* [-2, 2] */
    int32_t repeat_last_n;   /* [-1, num_ctx]; -1 = whole context, 0 = off */
    uint64_t seed;           /* valid when set & LG_SAMP_SEED; otherwise engine picks one */
};

/* OpenAI tool_choice ("none" arrives as tools = NULL). */
enum lg_tool_choice {
    LG_TOOL_CHOICE_AUTO = 0,     /* the model decides; constrained once it opens a call */
    LG_TOOL_CHOICE_REQUIRED = 1, /* a call to some declared tool, constrained from the start */
    LG_TOOL_CHOICE_NAMED = 2     /* a call to req->tool_choice_name, from the start */
};

struct lg_gen_req;

/* One event from the engine. Pointers are valid only during the emit() call. */
enum lg_gen_event_kind {
    LG_GEN_EV_REASONING = 0, /* text: a piece of the thought channel */
    LG_GEN_EV_CONTENT = 1,   /* text: a piece of the answer */
    LG_GEN_EV_TOOL_CALL = 2, /* a fragment of tool call number tool_index */
    LG_GEN_EV_DONE = 3,      /* terminal: finish, usage, timings */
    LG_GEN_EV_ERROR = 4      /* terminal: status, message */
};

enum lg_finish {
    LG_FINISH_STOP = 0,       /* end of turn or a stop string */
    LG_FINISH_LENGTH = 1,     /* max_tokens or the context ran out */
    LG_FINISH_TOOL_CALLS = 2, /* the turn ended with tool calls */
    LG_FINISH_LOAD = 3,       /* empty prompt: the model was loaded (Ollama) */
    LG_FINISH_UNLOAD = 4      /* keep_alive 0 with an empty prompt: unloaded (Ollama) */
};

struct lg_gen_usage {
    int32_t prompt_tokens;     /* whole prompt */
    int32_t cached_tokens;     /* of which reused from the prefix cache */
    int32_t completion_tokens; /* generated, reasoning included */
};

struct lg_gen_timings {       /* nanoseconds, monotonic clock */
    int64_t queue_ns;         /* submit → first scheduled */
    int64_t load_ns;          /* model load this request waited for */
    int64_t prompt_ns;        /* prefill of the uncached prompt part */
    int64_t eval_ns;          /* decoding */
    int64_t total_ns;         /* submit → done */
    int32_t prompt_eval_n;    /* prompt tokens actually evaluated (prompt - cached) */
};

/* Log-probabilities of one sampled token (only when req->top_logprobs >= 0). Token text is
 * the token's bytes, which may be part of a UTF-8 sequence (byte-fallback tokens). */
struct lg_gen_top_logprob {
    const char *token;
    size_t n_token;
    float logprob;
};
struct lg_gen_logprob {
    const char *token;
    size_t n_token;
    float logprob;
    const struct lg_gen_top_logprob *top; /* req->top_logprobs alternatives, best first */
    int32_t n_top;
};

struct lg_gen_event {
    enum lg_gen_event_kind kind;
    /* REASONING, CONTENT: a text delta. TOOL_CALL: an arguments fragment (JSON text). */
    const char *text;
    size_t n_text;
    /* REASONING, CONTENT: the tokens that produced this delta, when logprobs were asked. */
    const struct lg_gen_logprob *logprobs;
    int32_t n_logprobs;
    /* TOOL_CALL: calls are numbered 0, 1, ... in order; the first fragment of each call
     * carries id (e.g. "call_x7"), and name; later fragments have both NULL. A call's
     * fragments are contiguous and, concatenated, form one JSON object. */
    int32_t tool_index;
    const char *tool_id;
    const char *tool_name;
    /* DONE */
    enum lg_finish finish;
    struct lg_gen_usage usage;
    struct lg_gen_timings timings;
    /* DONE of a request with format JSON / SCHEMA: the answer checked after generation, as
     * JSON object text {"valid": bool, "errors": [{"path", "message"}...]}; NULL otherwise.
     * Writers attach it as the "validation" extension field. */
    const char *validation;
    /* ERROR: LG_ERR_CANCELLED after req->cancel, LG_ERR_CONTEXT, LG_ERR_NOT_FOUND (model),
     * LG_ERR_NOMEM, LG_ERR_INTERNAL ...; message is one line for the client. */
    enum lg_status status;
    const char *message;
};

/* Called on the engine thread; must not block. ctx is req->emit_ctx. */
typedef void (*lg_gen_emit_fn)(void *ctx, const struct lg_gen_event *ev);

/* A generation request. Filled and owned by the submitter (see lifetime above).
 *
 * Canonical messages (LG_PROMPT_CHAT), whatever API they came from — an array of objects:
 *   {"role": "system"|"user"|"assistant"|"tool",        ("developer" arrives as "system")
 *    "content": "text",                                  (text parts already joined)
 *    "thinking": "text",                                 (assistant; optional)
 *    "tool_calls": [{"id": "call_1", "name": "f", "arguments": {...object...}}], (optional)
 *    "tool_call_id": "call_1", "name": "f"}              (role tool; optional)
 * Canonical tools: [{"name": "f", "description": "...", "parameters": {...schema...}}].
 *
 * Load/unload (Ollama): a TEXT request with prompt "" or a CHAT request with no messages
 * only loads the model (DONE with LG_FINISH_LOAD), or unloads it when keep_alive_ms == 0
 * (DONE with LG_FINISH_UNLOAD); usage is zero. */
struct lg_gen_req {
    enum lg_api api;
    char model[LG_GEN_MODEL_NAME_MAX]; /* name or path as the client gave it */

    enum lg_prompt_kind kind;
    json_t *messages; /* CHAT: canonical array (owned reference) */
    char *prompt;     /* TEXT/RAW: NUL-terminated UTF-8 */
    char *system;     /* TEXT: optional system prompt (Ollama generate "system") */
    char *suffix;     /* TEXT: optional fill-in-the-middle suffix; NULL if none */
    json_t *tools;    /* canonical array or NULL; NULL also when the client sent none */
    enum lg_tool_choice tool_choice;
    char tool_choice_name[LG_GEN_MODEL_NAME_MAX]; /* LG_TOOL_CHOICE_NAMED: a declared tool */
    bool no_parallel_tool_calls; /* OpenAI parallel_tool_calls: false */

    enum lg_format format;
    json_t *schema; /* LG_FORMAT_SCHEMA: the JSON Schema object (owned reference) */

    enum lg_think think;
    int32_t think_budget; /* max reasoning tokens; -1 = no limit */

    struct lg_sampling sampling;
    char *stop[LG_GEN_MAX_STOP]; /* stop strings, n_stop of them, none empty */
    int32_t n_stop;
    int32_t max_tokens; /* completion budget; -1 = until the context is full */
    int32_t num_ctx;    /* requested context; 0 = server default (--ctx) */
    int32_t top_logprobs; /* logprobs wanted per token: -1 = none, 0..20 */
    int64_t keep_alive_ms; /* -2 = server default, -1 = forever, 0 = unload after */

    bool stream; /* informational: the server streams; the engine emits deltas either way */

    /* Filled by the submitter for the engine: */
    lg_gen_emit_fn emit;
    void *emit_ctx;
    atomic_bool cancel; /* set by the submitter (any thread); read by the engine */
};

/* A model the engine has in memory (for /api/ps). */
struct lg_loaded_model {
    char name[LG_GEN_MODEL_NAME_MAX];
    char digest[72];       /* "sha256:<hex>" or "" */
    uint64_t size_bytes;   /* resident weights + caches */
    int64_t expires_at_ms; /* wall clock, Unix ms; -1 = never */
    int32_t context_length;
};

struct lg_engine_stats {
    int32_t queue_depth;   /* requests waiting */
    int32_t queue_cap;     /* --max-queue */
    int32_t n_active;      /* sequences being decoded or prefilled */
    int32_t n_parallel;    /* --parallel */
    int32_t n_loading;     /* models being loaded right now (GET /health answers 503) */
    uint64_t kv_used_bytes;
    uint64_t kv_total_bytes;
};

/* The engine as the server sees it. self is the engine instance. All three are callable
 * from any thread. */
struct lg_engine_ops {
    /* Queues req. LG_OK: the engine now reads req and will emit exactly one terminal event.
     * LG_ERR_BUSY: the queue is full (server answers 503 + Retry-After); LG_ERR_NOT_FOUND:
     * no such model; LG_ERR_INVALID_ARG / LG_ERR_RANGE / LG_ERR_CONTEXT: the request cannot
     * run (400). On any error nothing is emitted and err says why. *id (may be NULL) gets
     * a number unique for the engine's lifetime, for logs. */
    enum lg_status (*submit)(void *self, struct lg_gen_req *req, uint64_t *id,
                             struct lg_err *err);
    void (*stats)(void *self, struct lg_engine_stats *out);
    /* Copies at most cap loaded models into out; returns how many there are. */
    size_t (*list_loaded)(void *self, struct lg_loaded_model *out, size_t cap);
};

/* ---- The real engine (engine.c) ---------------------------------------------------------
 * One engine thread, a bounded queue, chunked prefill interleaved with decode, prefix reuse
 * across requests. Several models can be loaded at once (at most max_models), each with
 * --parallel sequence slots and its own KV caches and keep-alive, within a memory budget (the
 * model planner's, model/plan.h): a request for a model that does not fit beside the loaded
 * ones unloads idle models (least recently used first), or waits until busy ones go idle;
 * one that cannot fit even alone fails with the plan's explanation. */
struct lg_store;

enum { LG_ENGINE_MAX_MODELS = 8 }; /* models loaded at once, at most */

struct lg_engine_params {
    int32_t n_parallel;       /* sequence slots (default 1) */
    int32_t max_queue;        /* waiting requests before submit answers LG_ERR_BUSY (512) */
    int32_t n_ctx;            /* context per slot; 0 = min(4096, trained context) */
    int64_t keep_alive_ms;    /* idle time before unloading; -1 forever (default 5 min) */
    int32_t reasoning_budget; /* default thinking budget in tokens; -1 none */
    int32_t n_chunk;          /* prefill tokens per step; 0 (default): the model state's
                               * default, 256 */
    uint32_t type_k, type_v;  /* KV-cache storage (enum lg_qtype; default F16, lg_kv_type_parse) */
    struct lg_store *store;   /* resolves request names; may be NULL; borrowed */
    const char *const *models; /* --model entries: the only names that may be paths (copied) */
    size_t n_models;
    int32_t max_models;       /* models loaded at once, 1..LG_ENGINE_MAX_MODELS; 0 = the most */
};

struct lg_engine;

void lg_engine_params_default(struct lg_engine_params *p);
/* Starts the engine thread. LG_ERR_RANGE / LG_ERR_NOMEM / LG_ERR_INTERNAL. Main thread. */
enum lg_status lg_engine_create(const struct lg_engine_params *p, struct lg_engine **out,
                                struct lg_err *err);
/* Ends every queued and active request with an ERROR event, joins the thread, unloads.
 * NULL allowed. Call after the server stopped submitting. */
void lg_engine_destroy(struct lg_engine *e);
/* The ops table for struct lg_server_config.engine (self = the struct lg_engine *). */
extern const struct lg_engine_ops lg_engine_ops_real;

#endif
