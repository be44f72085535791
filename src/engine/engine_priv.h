/* engine_priv.h: internals shared by the src/engine files of the batching engine (not a
 * public interface; engine.h is). Everything here is engine-thread only unless a field says
 * "under mu".
 *
 * The files: engine.c (the thread, the queue, the ops table), engine_job.c (a request: its
 * prompt, sampler, grammar, events and end), engine_step.c (one batched forward per model
 * and step), engine_models.c (the model table: load, memory plan, unload, LRU, keep-alive).
 *
 * Invariants: slot->cache_ids[0..n_cache) are exactly the tokens in slot->state's cache;
 * a job is in exactly one place (queue, a slot, or finished and freed); after the terminal
 * emit() the job's req is never read again. */
#ifndef LG_ENGINE_PRIV_H
#define LG_ENGINE_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "chat/chat.h"
#include "engine/engine.h"
#include "engine/session.h"
#include "grammar/grammar.h"
#include "sample/sample.h"

struct lg_gguf;
struct lg_vocab;
struct lg_model;
struct lg_model_state;
struct lg_grammar_vocab;

enum {
    ENG_DEFAULT_CTX = 4096,
    ENG_PATH_MAX = 4096,
    ENG_PENALTY_PROMPT = 64, /* prompt tokens fed to the penalty window */
    ENG_MAX_PENDING_LP = 64, /* token logprobs waiting for the text event they belong to */
    ENG_MAX_SLOTS = 256,     /* --parallel at most */
    ENG_MAX_MODELS = LG_ENGINE_MAX_MODELS /* models loaded at once */
};

enum job_phase { JOB_PREFILL = 0, JOB_DECODE = 1 };

/* When the grammar mask starts to apply. */
enum gram_trigger {
    GRAM_NONE = 0,       /* no grammar */
    GRAM_FROM_START = 1, /* from the first token */
    GRAM_AFTER_THOUGHT = 2, /* after the thought channel closes */
    GRAM_ON_TOOL_CALL = 3   /* each time the model opens <|tool_call> */
};

struct eng_model;

struct eng_job {
    struct lg_gen_req *req;
    struct eng_model *m; /* the model it runs on, once admitted */
    struct eng_job *next; /* queue link */
    uint64_t id;
    char path[ENG_PATH_MAX]; /* resolved model file */
    int64_t t_submit, t_start, t_first, prompt_ns, load_ns;

    int32_t *ids; /* prompt [n_ids] */
    int64_t n_ids;
    int64_t n_cached; /* prompt tokens reused from the slot's cache */
    int64_t n_ctx;    /* this request's context: its num_ctx when smaller than the slots' */
    int64_t pos;      /* prompt tokens in the cache so far */
    int32_t slot;
    enum job_phase phase;
    bool planned;        /* need_bytes is known */
    uint64_t need_bytes; /* the model's plan total + headroom, when it must be loaded */

    struct lg_sampler *smp;
    struct lg_stop *stop;
    struct lg_detok *detok;
    struct lg_chat_parser *parser;
    json_t *tools; /* OpenAI-shaped tools (for parser/grammar), or NULL */

    struct lg_grammar *gram;
    struct lg_grammar_state *gst;
    struct lg_grammar_hook hook;
    int32_t mask_extra;   /* first draw of GRAM_AFTER_THOUGHT: grammar or this token */
    enum gram_trigger trigger;
    bool gram_on;

    bool in_thought;
    int32_t n_thought;
    int32_t think_budget; /* -1 none */
    int32_t n_gen;
    int32_t max_tokens;
    int32_t n_calls;
    bool stopped;
    char tool_error[384];
    struct lg_chat_buf answer; /* content text, for validation */
    /* logprobs of sampled tokens whose text has not gone out yet; attached to the next
     * REASONING / CONTENT event. Token texts point into the model's grammar vocab. */
    struct lg_gen_logprob lp[ENG_MAX_PENDING_LP];
    struct lg_gen_top_logprob lp_top[ENG_MAX_PENDING_LP][LG_SAMPLE_MAX_LOGPROBS];
    int32_t n_lp;
};

struct eng_slot {
    struct lg_model_state *state;
    int32_t next_tok;   /* the decode token of this step's batch */
    uint8_t *snap;      /* sliding rings saved at the end of the last prompt (kv.h) */
    int64_t snap_pos;   /* where: valid while the cache was not cut below it; -1 none */
    int32_t *cache_ids; /* [n_ctx] */
    int64_t n_cache;
    /* [n_vocab] after cache_ids[n_cache-1]: a row of the model's blogits, written by the
     * last forward and read by the next step's draw (the row is not copied) */
    const float *logits;
    struct eng_job *job;
    uint64_t last_used;
};

struct eng_model {
    char name[LG_GEN_MODEL_NAME_MAX];
    char path[ENG_PATH_MAX];
    struct lg_gguf *gguf;
    struct lg_vocab *vocab;
    struct lg_model *model;
    struct lg_grammar_vocab *gvocab; /* built on first constrained request */
    enum lg_chat_flavour flavour;
    int64_t n_ctx;
    int32_t n_vocab;
    struct lg_sample_params sdef;
    int32_t id_chan_open, id_chan_close, id_call_open; /* -1 when absent */
    int64_t keep_alive_ms; /* of the last request: -1 forever */
    int64_t idle_since_ms; /* wall clock when the last request ended */
    uint64_t plan_bytes;   /* the plan's total (peak RSS at a full context) */
    uint64_t plan_base;    /* of which the process baseline */
    uint64_t last_used;    /* engine use_clock of the last admission or end */
    /* the sequences */
    struct eng_slot *slots;
    int32_t n_slots;
    struct lg_model_state *work; /* batch scratch: slots[0].state, the only full state
                                  * (slots 1.. are KV-only: lg_state_opts.kv_only) */
    float *blogits;              /* [n_slots][n_vocab] logits of one batch */
    int32_t n_active;
    int32_t rr;
};

/* Where the engine thread's time goes (LG_ENGINE_PROFILE=1 in the environment: one line on
 * stderr every ENG_PROF_STEPS steps and when the engine goes idle, see engine_step.c; the
 * timers run either way, a few clock reads per step). Nanoseconds since the last line. */
enum { ENG_PROF_STEPS = 32 };
struct eng_prof {
    bool on;
    int64_t t_last;     /* end of the previous step; 0 before the first */
    int64_t between_ns; /* between steps: queue scan, admission, keep-alive, locks */
    int64_t forward_ns; /* lg_model_forward_batch */
    int64_t sample_ns;  /* lg_sampler_sample: penalties, mask, top-k/top-p, logprobs */
    int64_t token_ns;   /* the rest of a decode: grammar, detokenizer, stop, parser, emit() */
    int64_t after_ns;   /* after the forward: cache ids, logits rows, snapshots */
    int64_t stats_ns;   /* publishing the stats snapshot */
    int64_t step_ns;    /* whole steps */
    int64_t n_steps, n_decode, n_prefill; /* steps; decode and prompt tokens run */
};

struct lg_engine {
    struct lg_engine_params p;
    char **models; /* copies of p.models */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct eng_job *q_head, *q_tail;
    int32_t q_len;
    bool stopping;
    uint64_t next_id;
    int32_t st_active, st_loading;
    uint64_t st_kv_used, st_kv_total;
    uint64_t q_seen; /* next_id at the last queue scan */
    int32_t st_n_models;
    struct lg_loaded_model st_models[ENG_MAX_MODELS];
    /* engine thread only */
    struct eng_model *models_loaded[ENG_MAX_MODELS];
    int32_t n_loaded;
    int32_t max_models;
    uint64_t budget; /* memory budget taken when no model was loaded (see top) */
    int32_t n_active; /* over all models */
    uint64_t use_clock;
    bool rescan; /* a job ended since the last queue scan (a slot or a model may be free) */
    struct eng_prof prof;
};

/* Whether a queued job can be admitted now. */
enum job_readiness {
    READY_GO = 0,   /* dequeue and admit (or it is cancelled: dequeue and fail) */
    READY_FAIL = 1, /* dequeue and fail with err */
    READY_SKIP = 2, /* its model is loaded but has no free slot: look at the next job */
    READY_WAIT = 3  /* it waits for memory or for its model to go idle: stop looking */
};

/* A request that only loads or unloads its model (engine.h): no prompt, no messages. */
static inline bool lg_eng_req_empty(const struct lg_gen_req *r)
{
    if (r->kind == LG_PROMPT_CHAT)
        return !r->messages || json_array_size(r->messages) == 0;
    return !r->prompt || !r->prompt[0];
}

static inline int64_t lg_eng_now_ns(void) { return lg_session_now_ns(); }

static inline int64_t lg_eng_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- jobs (engine_job.c) ---- */
/* Ends a job with a terminal event and frees it. The slot (if any) keeps its cache. */
void lg_eng_job_end(struct lg_engine *e, struct eng_job *j, const struct lg_gen_event *ev);
void lg_eng_job_fail(struct lg_engine *e, struct eng_job *j, enum lg_status st, const char *msg);
/* Flushes the held-back text, emits DONE (usage, timings, validation) and ends the job. */
void lg_eng_job_done(struct lg_engine *e, struct eng_job *j, enum lg_finish finish);
/* Sets up a dequeued job on a free slot, or ends it with an error event. */
void lg_eng_job_admit(struct lg_engine *e, struct eng_job *j);
/* Records the logprobs of a sampled token for the next text event. */
void lg_eng_job_logprob(struct eng_job *j, const struct lg_grammar_vocab *gv, int32_t tok,
                        const struct lg_sample_info *info);
/* Feeds a sampled token's text through stop matching and the chat parser. */
void lg_eng_job_token_text(struct eng_job *j, int32_t tok);
/* Empties the slot's cache. */
void lg_eng_slot_reset(struct eng_slot *s);

/* ---- the model table (engine_models.c) ---- */
struct eng_model *lg_eng_model_by_path(const struct lg_engine *e, const char *path);
/* Unloads a loaded model (its slots must hold no job). */
void lg_eng_model_unload(struct lg_engine *e, struct eng_model *m);
/* The loaded model that serves the job, loaded now if needed (lg_eng_job_ready made room). */
enum lg_status lg_eng_ensure_model(struct lg_engine *e, struct eng_job *j, struct lg_err *err);
/* Unloads every idle model past its keep-alive; *wait_ms gets the time until the next one
 * expires (at most 1 s). */
void lg_eng_expire_models(struct lg_engine *e, int64_t *wait_ms);
/* May unload idle models to make room (mutex not held). */
enum job_readiness lg_eng_job_ready(struct lg_engine *e, struct eng_job *j, struct lg_err *err);
/* Copies the figures stats/list_loaded report into the snapshot under mu. */
void lg_eng_publish_stats(struct lg_engine *e);

/* ---- steps (engine_step.c) ---- */
/* One engine step: one batched forward per model that has active jobs. */
void lg_eng_step(struct lg_engine *e);

#endif
