/* session.h: one loaded model and one sequence: prompt evaluation with prefix reuse and a
 * streaming generation loop (sample -> detokenize -> stop strings -> chat parser).
 *
 * This is the synchronous single-sequence path used by `run`, `chat` and `perplexity`; the
 * batching engine (engine.h) serves many sequences. A session belongs to one thread.
 */
#ifndef LG_ENGINE_SESSION_H
#define LG_ENGINE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"
#include "localgemma.h"
#include "sample/sample.h"

struct lg_model;
struct lg_vocab;
struct lg_gguf;

struct lg_session_opts {
    int64_t n_ctx;        /* 0: min(4096, trained context) */
    int32_t n_threads;    /* 0: all cores (kernels pick up threads when they support them) */
    const char *kv_type_k; /* KV-cache storage type of K: "f32", "f16", "q8_0", "q4_0" */
    const char *kv_type_v; /* (lg_kv_type_parse); NULL: the default, f16 */
};

struct lg_session;

/* Opens the GGUF at path, loads vocab and model, and creates the sequence state.
 * Errors name the file and what is wrong. */
enum lg_status lg_session_open(const char *path, const struct lg_session_opts *opts,
                               struct lg_session **out, struct lg_err *err);
void lg_session_close(struct lg_session *s);

const struct lg_vocab *lg_session_vocab(const struct lg_session *s);
const struct lg_model *lg_session_model(const struct lg_session *s);
const struct lg_gguf *lg_session_gguf(const struct lg_session *s);
enum lg_chat_flavour lg_session_flavour(const struct lg_session *s);
int64_t lg_session_n_ctx(const struct lg_session *s);
int32_t lg_session_n_vocab(const struct lg_session *s);
/* Sampling defaults: Gemma's, overridden by the GGUF's general.sampling.* keys. */
void lg_session_sample_defaults(const struct lg_session *s, struct lg_sample_params *p);

/* Makes the cache hold exactly ids[0..n) and leaves the logits of the last one in
 * lg_session_logits(). Reuses the longest cached prefix (rewinding the cache when it can,
 * starting over when a sliding window no longer allows it). *n_eval (may be NULL) receives
 * how many tokens were actually computed. LG_ERR_CONTEXT when n > n_ctx. */
enum lg_status lg_session_eval(struct lg_session *s, const int32_t *ids, int64_t n,
                               int64_t *n_eval, struct lg_err *err);
/* Logits [n_vocab] after the last evaluated token. */
const float *lg_session_logits(const struct lg_session *s);
/* Forgets the cache. */
void lg_session_reset(struct lg_session *s);

/* Appends ids to the cache and writes every position's logits [n][n_vocab] to out. */
enum lg_status lg_session_append_all(struct lg_session *s, const int32_t *ids, int64_t n,
                                     float *out, struct lg_err *err);

/* ---- generation ---------------------------------------------------------------------------- */

enum lg_session_finish {
    LG_SESSION_FINISH_STOP = 0,   /* end-of-generation token or stop string */
    LG_SESSION_FINISH_LENGTH = 1, /* max_tokens reached */
    LG_SESSION_FINISH_CONTEXT = 2,/* the context is full */
    LG_SESSION_FINISH_ABORT = 3   /* the callback asked to stop */
};

struct lg_session_gen {
    struct lg_sample_params sample;
    int32_t max_tokens;           /* < 0: until the context is full */
    const char *const *stops;     /* extra stop strings (may be NULL) */
    size_t n_stops;
    bool parse_chat;              /* split reasoning / content / tool calls (chat mode) */
    bool prompt_in_reasoning;     /* the prompt ends inside the thought channel */
    const void *tools;            /* json_t* tools array for the parser (may be NULL) */
};

/* Called for every piece of output; returning false stops generation (FINISH_ABORT). */
typedef bool (*lg_session_emit_fn)(void *user, enum lg_chat_event_type type, const char *text,
                                   size_t len, const char *name);

struct lg_session_stats {
    int64_t n_prompt;        /* prompt tokens */
    int64_t n_prompt_eval;   /* of which computed (the rest came from the cache) */
    int64_t n_gen;           /* generated tokens (incl. the end-of-generation token) */
    int64_t t_prompt_ns;     /* prompt evaluation */
    int64_t t_first_ns;      /* start to first sampled token (TTFT) */
    int64_t t_gen_ns;        /* first sampled token to the end */
    enum lg_session_finish finish;
    int32_t *out_ids;        /* generated ids (owned by the session; valid until next call) */
};

/* Evaluates the prompt ids (with prefix reuse) and generates. LG_ERR_CONTEXT (clear message)
 * when the prompt leaves no room to generate. */
enum lg_status lg_session_generate(struct lg_session *s, const int32_t *ids, int64_t n,
                                   const struct lg_session_gen *g, lg_session_emit_fn emit,
                                   void *user, struct lg_session_stats *stats,
                                   struct lg_err *err);

/* Monotonic clock in nanoseconds. */
int64_t lg_session_now_ns(void);

#endif
