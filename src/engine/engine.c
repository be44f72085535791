/* engine.c: the inference engine behind `localgemma serve` (engine.h ops table).
 *
 * One engine thread owns the loaded models, their sequence slots (each an lg_model_state with
 * its KV cache and the ids it holds), the samplers and the grammar states. Other threads only
 * call submit/stats/list_loaded, which touch the queue and a stats snapshot under e->mu.
 *
 * Every step, for each model with active jobs: check its active requests' cancel flags; one
 * decode token for every decoding slot; then prefill chunks for the prefilling slots, taken
 * in turn, within a budget of n_chunk (256) tokens per step and model, so a long prompt never
 * stalls the decoders for more than one chunk while several short prompts start together.
 * Loading a model happens on the engine thread: the other models pause while it loads.
 *
 * Prefix cache: a request goes to the free slot whose cached ids share the longest prefix
 * with its prompt; the slot's cache is cut back to that prefix (lg_kv_rewind), or recomputed
 * from 0 when a sliding ring no longer holds the window before the cut. A turn that extends
 * the previous turn's ids needs no rewind and reuses everything.
 *
 * Models: several at once (at most max_models, ENG_MAX_MODELS), each with its own slots,
 * batch scratch and keep-alive; every step runs one batched forward per model that has active
 * jobs (the prefill budget is per model). A model unloads after its own keep-alive once idle
 * (keep_alive 0: as soon as it is idle).
 *
 * Memory budget. MemAvailable already excludes the pages the loaded models have touched, but
 * their heap buffers (KV caches, scratch) become resident only as they are written, so the
 * current figure alone would let models overcommit. The engine therefore takes a budget B =
 * lg_plan_mem_available() whenever no model is loaded, and admits a new model when its plan
 * total (model/plan.h: the peak RSS at a full context) fits in
 *     min(B - sum of the loaded models' plan totals, lg_plan_mem_available() now)
 * with the plan's headroom (each loaded model's total counted without the process baseline,
 * which the new plan already includes). If it does not fit, idle models are unloaded, least
 * recently used first, until it does; if it still does not fit while other models are busy,
 * the request waits in the queue until they go idle; if it cannot fit even alone (in B), it
 * fails with the plan's explanation. A request for a loaded model that needs a larger context
 * (num_ctx) reloads that model once its jobs are done.
 *
 * Queue order: the queue is scanned in order each loop; a job whose model is loaded but has
 * no free slot is skipped, the first job that must wait for memory (or for its model to
 * reload) stops the scan, so later jobs cannot keep the busy models busy forever.
 *
 * Invariants: slot->cache_ids[0..n_cache) are exactly the tokens in slot->state's cache;
 * a job is in exactly one place (queue, a slot, or finished and freed); after the terminal
 * emit() the job's req is never read again. */
#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "chat/chat.h"
#include "engine/session.h"
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "kv/kv.h"
#include "model/model.h"
#include "model/plan.h"
#include "quant/quant.h"
#include "sample/sample.h"
#include "store/store.h"
#include "tok/tok.h"

enum {
    ENG_CHUNK = 256,       /* prefill tokens per step */
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
    float *logits; /* [n_vocab] after cache_ids[n_cache-1] */
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
    struct lg_model_state *work; /* batch scratch: slots[0].state, made with a big chunk */
    float *blogits;              /* [n_slots][n_vocab] logits of one batch */
    int32_t n_active;
    int32_t rr;
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
};

static int64_t now_ns(void) { return lg_session_now_ns(); }

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lg_engine_params_default(struct lg_engine_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_parallel = 1;
    p->max_queue = 512;
    p->n_ctx = 0;
    p->type_k = LG_QTYPE_F16;
    p->type_v = LG_QTYPE_F16;
    p->keep_alive_ms = 5 * 60 * 1000;
    p->reasoning_budget = -1;
    p->n_chunk = ENG_CHUNK;
}

/* ---- events ---------------------------------------------------------------------------- */

static void emit_text(struct eng_job *j, enum lg_gen_event_kind k, const char *t, size_t n)
{
    if (n == 0)
        return;
    struct lg_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = k;
    ev.text = t;
    ev.n_text = n;
    ev.logprobs = j->n_lp ? j->lp : NULL;
    ev.n_logprobs = j->n_lp;
    j->req->emit(j->req->emit_ctx, &ev);
    j->n_lp = 0;
}

/* Records the logprobs of a sampled token for the next text event. */
static void job_logprob(struct eng_job *j, const struct lg_grammar_vocab *gv, int32_t tok,
                        const struct lg_sample_info *info)
{
    if (j->n_lp == ENG_MAX_PENDING_LP)
        return;
    struct lg_gen_logprob *lp = &j->lp[j->n_lp];
    size_t n = 0;
    const uint8_t *b = lg_grammar_vocab_bytes(gv, tok, &n);
    lp->token = b ? (const char *)b : "";
    lp->n_token = b ? n : 0;
    lp->logprob = info->logprob;
    lp->n_top = info->n_top < j->req->top_logprobs ? info->n_top : j->req->top_logprobs;
    for (int32_t k = 0; k < lp->n_top; k++) {
        struct lg_gen_top_logprob *t = &j->lp_top[j->n_lp][k];
        b = lg_grammar_vocab_bytes(gv, info->top[k].token, &n);
        t->token = b ? (const char *)b : "";
        t->n_token = b ? n : 0;
        t->logprob = info->top[k].logprob;
    }
    lp->top = j->lp_top[j->n_lp];
    j->n_lp++;
}

static void emit_call(struct eng_job *j, const char *name, const char *args, size_t n)
{
    char id[48];
    snprintf(id, sizeof id, "call_%llx_%d", (unsigned long long)j->id, (int)j->n_calls);
    struct lg_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = LG_GEN_EV_TOOL_CALL;
    ev.text = args;
    ev.n_text = n;
    ev.tool_index = j->n_calls++;
    ev.tool_id = id;
    ev.tool_name = name ? name : "";
    j->req->emit(j->req->emit_ctx, &ev);
}

/* Tool calls. For an OpenAI stream the arguments go out as the parser's deltas arrive (the
 * first fragment with id and name, via emit_call); every other API gets each call whole, and
 * only once it has parsed and validated, so a broken call never reaches a response. A call
 * that fails (parse error, unknown tool, arguments invalid for the tool's schema) is recorded
 * in j->tool_error and reported by job_done (see there). */
static void drain_parser(struct eng_job *j)
{
    bool stream_args = j->req->api == LG_API_OPENAI_CHAT && j->req->stream;
    struct lg_chat_event ce;
    while (lg_chat_parser_next(j->parser, &ce)) {
        if ((int)ce.type == LG_CHAT_EV_TOOL_CALL_DELTA) {
            if (!stream_args) {
            } else if (ce.name) {
                emit_call(j, ce.name, ce.text, ce.len);
            } else {
                struct lg_gen_event ev;
                memset(&ev, 0, sizeof ev);
                ev.kind = LG_GEN_EV_TOOL_CALL;
                ev.text = ce.text;
                ev.n_text = ce.len;
                ev.tool_index = j->n_calls - 1;
                j->req->emit(j->req->emit_ctx, &ev);
            }
            lg_chat_event_free(&ce);
            continue;
        }
        switch (ce.type) {
        case LG_CHAT_EV_CONTENT:
            lg_chat_buf_put(&j->answer, ce.text, ce.len);
            emit_text(j, LG_GEN_EV_CONTENT, ce.text, ce.len);
            break;
        case LG_CHAT_EV_REASONING:
            emit_text(j, LG_GEN_EV_REASONING, ce.text, ce.len);
            break;
        case LG_CHAT_EV_TOOL_CALL: {
            const char *args = ce.text ? ce.text : "{}";
            size_t n = ce.text ? ce.len : 2;
            bool started = stream_args && ce.streamed > 0;
            int32_t index = started ? j->n_calls - 1 : j->n_calls;
            /* the arguments checked against the tool's schema before they are returned */
            const json_t *schema = NULL;
            for (size_t i = 0; i < json_array_size(j->tools); i++) {
                const json_t *fn = json_object_get(json_array_get(j->tools, i), "function");
                const char *fname = json_string_value(json_object_get(fn, "name"));
                if (ce.name && fname && !strcmp(fname, ce.name))
                    schema = json_object_get(fn, "parameters");
            }
            char why[256] = "";
            json_t *doc = json_loadb(args, n, 0, NULL);
            if (!j->tools) { /* tool_choice none, or no tools: a call is not an answer */
                snprintf(why, sizeof why, "the request offered no tools");
            } else if (!json_is_object(doc)) {
                snprintf(why, sizeof why, "the arguments are not a JSON object");
            } else if (json_is_object(schema)) {
                json_t *errs = json_array();
                struct lg_err verr = {0};
                if (lg_schema_validate(schema, doc, errs, &verr) == LG_OK &&
                    json_array_size(errs) > 0) {
                    json_t *e0 = json_array_get(errs, 0);
                    const char *path = json_string_value(json_object_get(e0, "path"));
                    const char *msg = json_string_value(json_object_get(e0, "message"));
                    snprintf(why, sizeof why, "arguments invalid for the schema of %s at '%s': %s",
                             ce.name, path ? path : "", msg ? msg : "");
                }
                json_decref(errs);
            }
            json_decref(doc);
            if (why[0] && !j->tool_error[0])
                snprintf(j->tool_error, sizeof j->tool_error, "tool call %d (%s): %s",
                         (int)index, ce.name ? ce.name : "", why);
            if (started) {
                if (n > ce.streamed) {
                    struct lg_gen_event ev;
                    memset(&ev, 0, sizeof ev);
                    ev.kind = LG_GEN_EV_TOOL_CALL;
                    ev.text = args + ce.streamed;
                    ev.n_text = n - ce.streamed;
                    ev.tool_index = index;
                    j->req->emit(j->req->emit_ctx, &ev);
                }
            } else if (!why[0]) {
                emit_call(j, ce.name, args, n);
            }
            break;
        }
        case LG_CHAT_EV_ERROR: {
            /* text is {"type", "message", ...} */
            json_t *eo = json_loadb(ce.text ? ce.text : "", ce.len, 0, NULL);
            const char *type = json_string_value(json_object_get(eo, "type"));
            const char *msg = json_string_value(json_object_get(eo, "message"));
            if (!j->tool_error[0])
                snprintf(j->tool_error, sizeof j->tool_error, "malformed tool call (%s): %s",
                         type ? type : "tool_call_error", msg ? msg : "cannot be parsed");
            json_decref(eo);
            break;
        }
        }
        lg_chat_event_free(&ce);
    }
}

/* Answer text (after stop-string matching) to the parser or straight out. */
static void put_text(struct eng_job *j, const char *t, size_t n, bool special)
{
    if (n == 0)
        return;
    if (!j->parser) {
        if (!special) {
            lg_chat_buf_put(&j->answer, t, n);
            emit_text(j, LG_GEN_EV_CONTENT, t, n);
        }
        return;
    }
    /* an OpenAI stream gets tool-call arguments piece by piece (see drain_parser) */
    lg_chat_parser_stream_calls(j->parser,
                                j->req->api == LG_API_OPENAI_CHAT && j->req->stream);
    if (lg_chat_parser_feed(j->parser, t, n, special) == LG_OK)
        drain_parser(j);
}

/* ---- jobs ------------------------------------------------------------------------------ */

static void job_free(struct eng_job *j)
{
    if (!j)
        return;
    free(j->ids);
    lg_sampler_destroy(j->smp);
    lg_stop_destroy(j->stop);
    lg_detok_destroy(j->detok);
    lg_chat_parser_destroy(j->parser);
    json_decref(j->tools);
    lg_grammar_state_destroy(j->gst);
    lg_grammar_free(j->gram);
    lg_chat_buf_free(&j->answer);
    free(j);
}

static void publish_stats(struct lg_engine *e);

/* Ends a job with a terminal event and frees it. The slot (if any) keeps its cache. */
static void job_end(struct lg_engine *e, struct eng_job *j, const struct lg_gen_event *ev)
{
    struct eng_model *m = j->m;
    e->rescan = true;
    if (m && j->slot >= 0) {
        m->slots[j->slot].job = NULL;
        m->n_active--;
        e->n_active--;
        j->slot = -1;
    }
    if (m && j->n_ids > 0) {
        int64_t ka = j->req->keep_alive_ms;
        m->keep_alive_ms = ka == -2 ? e->p.keep_alive_ms : ka;
        m->idle_since_ms = wall_ms();
        m->last_used = ++e->use_clock;
    }
    lg_gen_emit_fn emit = j->req->emit;
    void *ctx = j->req->emit_ctx;
    j->req = NULL; /* never read again */
    publish_stats(e);
    emit(ctx, ev);
    job_free(j);
}

static void job_fail(struct lg_engine *e, struct eng_job *j, enum lg_status st, const char *msg)
{
    struct lg_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = LG_GEN_EV_ERROR;
    ev.status = st;
    ev.message = msg;
    job_end(e, j, &ev);
}

/* The answer checked against the requested format, plus a failed tool call if any:
 * {"valid", "errors"} as malloc'd JSON text (NULL on allocation failure). */
static char *job_validate(const struct eng_job *j)
{
    json_t *errors = json_array();
    if (j->tool_error[0])
        json_array_append_new(errors, json_pack("{s:s, s:s}", "path", "/tool_calls", "message",
                                                j->tool_error));
    json_error_t jerr;
    json_t *doc = j->req->format == LG_FORMAT_TEXT
                      ? NULL
                      : json_loadb(j->answer.ptr ? j->answer.ptr : "", j->answer.len, 0, &jerr);
    if (j->req->format == LG_FORMAT_TEXT) {
        /* tool-call report only */
    } else if (!doc) {
        json_array_append_new(errors, json_pack("{s:s, s:s+}", "path", "", "message",
                                                "not JSON: ", jerr.text));
    } else if (j->req->format == LG_FORMAT_JSON) {
        if (!json_is_object(doc))
            json_array_append_new(errors, json_pack("{s:s, s:s}", "path", "", "message",
                                                    "not a JSON object"));
    } else {
        struct lg_err err = {0};
        if (lg_schema_validate(j->req->schema, doc, errors, &err) != LG_OK)
            json_array_append_new(errors, json_pack("{s:s, s:s}", "path", "", "message",
                                                    err.msg));
    }
    json_decref(doc);
    json_t *v = json_pack("{s:b, s:o}", "valid", json_array_size(errors) == 0, "errors",
                          errors);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return text;
}

static void job_done(struct lg_engine *e, struct eng_job *j, enum lg_finish finish)
{
    /* release what the detokenizer and the stop matcher hold back, then close the parser */
    if (j->detok && !j->stopped) {
        const char *t;
        size_t n;
        struct lg_stop_result r;
        struct lg_err ignored;
        lg_detok_flush(j->detok, &t, &n);
        if (n && lg_stop_feed(j->stop, t, n, &r, &ignored) == LG_OK && !r.stopped)
            put_text(j, r.text, r.n_text, false);
        lg_stop_flush(j->stop, &r);
        put_text(j, r.text, r.n_text, false);
    }
    if (j->parser && lg_chat_parser_finish(j->parser) == LG_OK)
        drain_parser(j);
    /* A tool call that failed (malformed, unknown tool, arguments invalid for the schema) is
     * not an error of the request: the client gets a normal answer (HTTP 200 / a normal end of
     * stream) without that call, finish "stop" (or "length"), and the reason in the
     * "validation" extension {"valid": false, "errors": [{"path": "/tool_calls", "message"}]}.
     * Never an HTTP 500, never the call's markup in the content. */
    int64_t t = now_ns();
    struct lg_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = LG_GEN_EV_DONE;
    ev.finish = j->n_calls > 0 && !j->tool_error[0] && finish == LG_FINISH_STOP
                    ? LG_FINISH_TOOL_CALLS
                    : finish;
    ev.usage.prompt_tokens = (int32_t)j->n_ids;
    ev.usage.cached_tokens = (int32_t)j->n_cached;
    ev.usage.completion_tokens = j->n_gen;
    ev.timings.queue_ns = j->t_start ? j->t_start - j->t_submit : 0;
    ev.timings.load_ns = j->load_ns;
    ev.timings.prompt_ns = j->prompt_ns;
    ev.timings.eval_ns = j->t_first ? t - j->t_first : 0;
    ev.timings.total_ns = t - j->t_submit;
    ev.timings.prompt_eval_n = (int32_t)(j->n_ids - j->n_cached);
    char *validation =
        j->req->format != LG_FORMAT_TEXT || j->tool_error[0] ? job_validate(j) : NULL;
    ev.validation = validation;
    job_end(e, j, &ev);
    free(validation);
}

/* ---- models ---------------------------------------------------------------------------- */

static void model_free(struct eng_model *m)
{
    if (!m)
        return;
    for (int32_t i = 0; i < m->n_slots; i++) {
        lg_model_state_destroy(m->slots[i].state);
        free(m->slots[i].snap);
        free(m->slots[i].cache_ids);
        free(m->slots[i].logits);
    }
    free(m->slots);
    free(m->blogits);
    lg_grammar_vocab_free(m->gvocab);
    lg_model_close(m->model);
    lg_vocab_free(m->vocab);
    lg_gguf_close(m->gguf);
    free(m);
}

/* Unloads a loaded model (its slots must hold no job). */
static void model_unload(struct lg_engine *e, struct eng_model *m)
{
    for (int32_t i = 0; i < e->n_loaded; i++) {
        if (e->models_loaded[i] != m)
            continue;
        e->models_loaded[i] = e->models_loaded[--e->n_loaded];
        e->models_loaded[e->n_loaded] = NULL;
        model_free(m);
        publish_stats(e);
        return;
    }
}

static struct eng_model *model_by_path(const struct lg_engine *e, const char *path)
{
    for (int32_t i = 0; i < e->n_loaded; i++)
        if (!strcmp(e->models_loaded[i]->path, path))
            return e->models_loaded[i];
    return NULL;
}

static int32_t find_tok(const struct lg_vocab *v, const char *s)
{
    return lg_tok_find(v, s, strlen(s));
}

/* The context a job asks for: its num_ctx, else --ctx, else the default. */
static int64_t job_want_ctx(const struct lg_engine *e, const struct eng_job *j)
{
    if (j->req->num_ctx > 0)
        return j->req->num_ctx;
    return e->p.n_ctx > 0 ? e->p.n_ctx : ENG_DEFAULT_CTX;
}

/* True when the loaded model m can serve the job as it is: the same file, and slots at least
 * as long as the job's num_ctx (unless they already hold the whole trained context). Ollama
 * reloads the runner for a larger num_ctx; so do we, once the model's requests are done. */
static bool model_serves(const struct eng_model *m, const struct eng_job *j)
{
    if (!m || strcmp(m->path, j->path) != 0)
        return false;
    int64_t train = m->model->cfg.n_ctx_train;
    return j->req->num_ctx <= m->n_ctx || (train > 0 && m->n_ctx >= train);
}

/* The memory plan (model/plan.h) before anything big is allocated: refuse with its
 * explanation rather than be killed by the OOM killer. When the context was not chosen by
 * the user (no --ctx, no num_ctx), a smaller one that fits is taken instead. avail is the
 * memory the model may have alone (the engine's budget; 0: detect). *total / *base get the
 * plan's total and its process baseline. */
static enum lg_status plan_check(const struct lg_engine *e, const struct lg_gguf *g,
                                 const char *name, int64_t *n_ctx, uint64_t avail,
                                 uint64_t *total, uint64_t *base, struct lg_err *err)
{
    struct lg_plan_opts po;
    lg_plan_opts_default(&po);
    po.n_ctx = *n_ctx;
    po.n_parallel = e->p.n_parallel;
    po.type_k = e->p.type_k;
    po.type_v = e->p.type_v;
    po.n_chunk = 0; /* slots 1.. use the state's default chunk; slot 0 holds the batch */
    po.n_chunk_first = e->p.n_chunk > 0 ? e->p.n_chunk : ENG_CHUNK;
    po.mem_available = avail;
    struct lg_plan plan;
    enum lg_status st = lg_plan_compute(g, &po, &plan, err);
    if (st != LG_OK)
        return st;
    *total = plan.total_bytes;
    *base = plan.baseline_bytes;
    if (plan.fits)
        return LG_OK;
    bool chosen = e->p.n_ctx > 0 || *n_ctx != ENG_DEFAULT_CTX;
    if (!chosen && plan.n_ctx_max >= LG_PLAN_MIN_CTX) {
        fprintf(stderr, "engine: %s: %lld-token context does not fit in memory; using %lld\n",
                name, (long long)*n_ctx, (long long)plan.n_ctx_max);
        *n_ctx = plan.n_ctx_max;
        po.n_ctx = *n_ctx;
        if (lg_plan_compute(g, &po, &plan, err) == LG_OK) {
            *total = plan.total_bytes;
            *base = plan.baseline_bytes;
        }
        return LG_OK;
    }
    char why[1024];
    return lg_err_set(err, LG_ERR_NOMEM, "%s does not fit in memory: %s", name,
                      lg_plan_explain(&plan, why, sizeof why));
}

static enum lg_status model_load(struct lg_engine *e, const char *name, const char *path,
                                 int64_t n_ctx, struct lg_err *err)
{
    if (e->n_loaded >= e->max_models)
        return lg_err_set(err, LG_ERR_INTERNAL, "too many models loaded");
    if (e->n_loaded == 0) /* the budget: what is available with no model loaded */
        e->budget = lg_plan_mem_available(NULL, 0);
    struct eng_model *m = calloc(1, sizeof *m);
    if (!m)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->path, sizeof m->path, "%s", path);
    enum lg_status st = lg_gguf_open(path, &m->gguf, err);
    if (st == LG_OK)
        st = plan_check(e, m->gguf, name, &n_ctx, e->budget, &m->plan_bytes, &m->plan_base,
                        err);
    if (st == LG_OK)
        st = lg_chat_flavour_from_gguf(m->gguf, &m->flavour, err);
    if (st == LG_OK)
        st = lg_vocab_load(m->gguf, &m->vocab, err);
    if (st == LG_OK)
        st = lg_model_from_gguf(m->gguf, &m->model, err);
    if (st != LG_OK)
        goto fail;
    m->n_vocab = m->model->cfg.n_vocab;
    if ((int64_t)m->vocab->n_tokens > m->n_vocab) {
        st = lg_err_set(err, LG_ERR_FORMAT, "%s: vocab has %u tokens but the embedding %d rows",
                        name, m->vocab->n_tokens, m->n_vocab);
        goto fail;
    }
    if (m->model->cfg.n_ctx_train > 0 && n_ctx > m->model->cfg.n_ctx_train)
        n_ctx = m->model->cfg.n_ctx_train;
    m->n_ctx = n_ctx;
    lg_sample_params_default(&m->sdef);
    struct lg_err ignored;
    (void)lg_sample_params_from_gguf(&m->sdef, m->gguf, &ignored);
    m->id_chan_open = find_tok(m->vocab, "<|channel>");
    m->id_chan_close = find_tok(m->vocab, "<channel|>");
    m->id_call_open = find_tok(m->vocab, "<|tool_call>");
    m->keep_alive_ms = e->p.keep_alive_ms;
    m->idle_since_ms = wall_ms();
    m->last_used = ++e->use_clock;
    m->slots = calloc((size_t)e->p.n_parallel, sizeof *m->slots);
    if (!m->slots) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->n_slots = e->p.n_parallel;
    int64_t chunk = e->p.n_chunk > 0 ? e->p.n_chunk : ENG_CHUNK;
    m->blogits = malloc((size_t)m->n_slots * (size_t)m->n_vocab * sizeof *m->blogits);
    if (!m->blogits) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory for %d logits rows", (int)m->n_slots);
        goto fail;
    }
    for (int32_t i = 0; i < m->n_slots; i++) {
        struct eng_slot *s = &m->slots[i];
        /* slot 0's activations are the batch scratch: sized for a whole prefill budget */
        struct lg_state_opts so = {.n_ctx = n_ctx, .n_chunk = i == 0 ? chunk : 0,
                                   .type_k = e->p.type_k, .type_v = e->p.type_v};
        st = lg_model_state_create_opts(m->model, &so, &s->state, err);
        if (st != LG_OK)
            goto fail;
        s->cache_ids = malloc((size_t)n_ctx * sizeof *s->cache_ids);
        s->logits = malloc((size_t)m->n_vocab * sizeof *s->logits);
        size_t snap = lg_kv_snapshot_bytes(lg_model_state_kv(s->state));
        s->snap = snap ? malloc(snap) : NULL;
        s->snap_pos = -1;
        if (!s->cache_ids || !s->logits || (snap && !s->snap)) {
            st = lg_err_set(err, LG_ERR_NOMEM, "out of memory for %d %lld-token sequences",
                            (int)m->n_slots, (long long)n_ctx);
            goto fail;
        }
    }
    m->work = m->slots[0].state;
    e->models_loaded[e->n_loaded++] = m;
    publish_stats(e);
    return LG_OK;
fail:
    model_free(m);
    return st;
}

/* The loaded model that serves the job, loaded now if needed (job_ready made room). */
static enum lg_status ensure_model(struct lg_engine *e, struct eng_job *j, struct lg_err *err)
{
    struct eng_model *m = model_by_path(e, j->path);
    if (m && model_serves(m, j)) {
        j->m = m;
        return LG_OK;
    }
    if (m) { /* too short a context: job_ready saw it idle */
        if (m->n_active > 0)
            return lg_err_set(err, LG_ERR_INTERNAL, "model %s is busy", m->name);
        model_unload(e, m);
    }
    pthread_mutex_lock(&e->mu);
    e->st_loading++;
    pthread_mutex_unlock(&e->mu);
    int64_t t0 = now_ns();
    enum lg_status st = model_load(e, j->req->model, j->path, job_want_ctx(e, j), err);
    j->load_ns = now_ns() - t0;
    pthread_mutex_lock(&e->mu);
    e->st_loading--;
    pthread_mutex_unlock(&e->mu);
    if (st == LG_OK) {
        j->m = e->models_loaded[e->n_loaded - 1];
        fprintf(stderr, "engine: loaded %s (%d x %lld-token sequences, plan %llu bytes; %d "
                        "model%s loaded) in %.1f s\n",
                j->req->model, (int)j->m->n_slots, (long long)j->m->n_ctx,
                (unsigned long long)j->m->plan_bytes, (int)e->n_loaded,
                e->n_loaded == 1 ? "" : "s", j->load_ns / 1e9);
    }
    return st;
}

/* Memory the loaded models may still claim beside a new one (see the top of the file):
 * min(budget - their plan totals, available now). UINT64_MAX when nothing can be measured. */
static uint64_t mem_free_for_new(const struct lg_engine *e)
{
    if (e->budget == 0)
        return UINT64_MAX;
    uint64_t used = 0;
    for (int32_t i = 0; i < e->n_loaded; i++) {
        const struct eng_model *m = e->models_loaded[i];
        used += m->plan_bytes > m->plan_base ? m->plan_bytes - m->plan_base : 0;
    }
    uint64_t free_b = e->budget > used ? e->budget - used : 0;
    uint64_t now = lg_plan_mem_available(NULL, 0);
    if (now > 0 && now < free_b)
        free_b = now;
    return free_b;
}

/* The idle loaded model used least recently, or NULL. */
static struct eng_model *lru_idle(const struct lg_engine *e)
{
    struct eng_model *best = NULL;
    for (int32_t i = 0; i < e->n_loaded; i++) {
        struct eng_model *m = e->models_loaded[i];
        if (m->n_active == 0 && (!best || m->last_used < best->last_used))
            best = m;
    }
    return best;
}

static bool model_has_free_slot(const struct eng_model *m)
{
    for (int32_t i = 0; i < m->n_slots; i++)
        if (!m->slots[i].job)
            return true;
    return false;
}

static void publish_stats(struct lg_engine *e)
{
    uint64_t used = 0, total = 0;
    pthread_mutex_lock(&e->mu);
    e->st_n_models = 0;
    int64_t now = wall_ms();
    for (int32_t k = 0; k < e->n_loaded; k++) {
        const struct eng_model *m = e->models_loaded[k];
        uint64_t m_total = 0;
        for (int32_t i = 0; i < m->n_slots; i++) {
            struct lg_kv *kv = lg_model_state_kv(m->slots[i].state);
            size_t b = lg_kv_bytes(kv);
            m_total += b;
            if (m->n_ctx > 0)
                used += (uint64_t)((double)b * (double)m->slots[i].n_cache / (double)m->n_ctx);
        }
        total += m_total;
        struct lg_loaded_model *lm = &e->st_models[e->st_n_models++];
        memset(lm, 0, sizeof *lm);
        snprintf(lm->name, sizeof lm->name, "%s", m->name);
        lm->size_bytes = m->gguf->size + m_total;
        int64_t ka = m->keep_alive_ms;
        lm->expires_at_ms = ka < 0 ? -1 : (m->n_active ? now : m->idle_since_ms) + ka;
        lm->context_length = (int32_t)m->n_ctx;
    }
    e->st_active = e->n_active;
    e->st_kv_used = used;
    e->st_kv_total = total;
    pthread_mutex_unlock(&e->mu);
}

/* ---- admission ------------------------------------------------------------------------- */

/* Canonical tools [{name, description, parameters}] -> OpenAI [{type, function}]. */
static json_t *tools_openai(const json_t *tools)
{
    if (!tools || !json_is_array(tools) || json_array_size(tools) == 0)
        return NULL;
    json_t *out = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *w = json_pack("{s:s, s:O}", "type", "function", "function", t);
        if (w)
            json_array_append_new(out, w);
    }
    return out;
}

/* Canonical messages -> the OpenAI shape chat/ renders (tool_calls[].function). */
static json_t *messages_openai(const json_t *msgs)
{
    json_t *out = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *c = json_copy((json_t *)m);
        const json_t *tcs = json_object_get(m, "tool_calls");
        if (c && json_is_array(tcs)) {
            json_t *arr = json_array();
            size_t k;
            const json_t *tc;
            json_array_foreach(tcs, k, tc) {
                json_t *fn = json_object();
                json_t *name = json_object_get(tc, "name");
                json_t *args = json_object_get(tc, "arguments");
                json_object_set_new(fn, "name", name ? json_incref(name) : json_string(""));
                json_object_set_new(fn, "arguments", args ? json_incref(args) : json_object());
                json_t *id = json_object_get(tc, "id");
                json_t *w = json_pack("{s:s, s:o}", "type", "function", "function", fn);
                if (id && w)
                    json_object_set(w, "id", id);
                if (w)
                    json_array_append_new(arr, w);
            }
            json_object_set_new(c, "tool_calls", arr);
        }
        if (c) {
            json_t *th = json_object_get(c, "thinking");
            if (th) {
                json_object_set(c, "reasoning_content", th);
                json_object_del(c, "thinking");
            }
            json_array_append_new(out, c);
        }
    }
    return out;
}

/* Renders and tokenizes the prompt into j->ids. */
static enum lg_status job_prompt(struct lg_engine *e, struct eng_job *j, bool *in_reasoning,
                                 struct lg_err *err)
{
    (void)e;
    const struct lg_gen_req *r = j->req;
    struct eng_model *m = j->m;
    char *text = NULL;
    size_t n_text = 0;
    unsigned flags = LG_TOK_ADD_BOS | LG_TOK_PARSE_SPECIAL;
    enum lg_status st;
    *in_reasoning = false;
    if (r->kind == LG_PROMPT_RAW) {
        text = strdup(r->prompt ? r->prompt : "");
        n_text = text ? strlen(text) : 0;
        if (!text)
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    } else {
        json_t *msgs;
        if (r->kind == LG_PROMPT_CHAT) {
            msgs = messages_openai(r->messages);
        } else {
            msgs = json_array();
            if (r->system && r->system[0])
                json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system",
                                                      "content", r->system));
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content",
                                                  r->prompt ? r->prompt : ""));
        }
        struct lg_chat_opts co = lg_chat_opts_default();
        co.flavour = m->flavour;
        co.enable_thinking = r->think == LG_THINK_ON;
        st = lg_chat_render(msgs, j->tools, &co, &text, &n_text, err);
        json_decref(msgs);
        if (st != LG_OK)
            return st;
        static const char tail[] = "<|channel>thought\n";
        *in_reasoning = n_text >= sizeof tail - 1 &&
                        !memcmp(text + n_text - (sizeof tail - 1), tail, sizeof tail - 1);
        /* the template already starts with <bos> */
        flags = LG_TOK_PARSE_SPECIAL;
        if (n_text < 5 || memcmp(text, "<bos>", 5) != 0)
            flags |= LG_TOK_ADD_BOS;
    }
    size_t n_ids = 0;
    st = lg_tok_encode_alloc(m->vocab, text, n_text, flags, &j->ids, &n_ids, err);
    free(text);
    if (st != LG_OK)
        return st;
    j->n_ids = (int64_t)n_ids;
    if (j->n_ids == 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "the prompt is empty");
    if (j->n_ids >= j->n_ctx)
        return lg_err_set(err, LG_ERR_CONTEXT,
                          "the prompt is %lld tokens and does not fit the %lld-token context "
                          "(shorten it, or ask for a larger %s)",
                          (long long)j->n_ids, (long long)j->n_ctx,
                          j->req->num_ctx > 0 ? "num_ctx" : "context with serve --ctx");
    return LG_OK;
}

static enum lg_status job_sampler(struct lg_engine *e, struct eng_job *j, struct lg_err *err)
{
    const struct lg_sampling *s = &j->req->sampling;
    const struct eng_model *m = j->m;
    struct lg_sample_params p = m->sdef;
    if (s->set & LG_SAMP_TEMPERATURE)
        p.temperature = s->temperature;
    if (s->set & LG_SAMP_TOP_K)
        p.top_k = s->top_k;
    if (s->set & LG_SAMP_TOP_P)
        p.top_p = s->top_p;
    if (s->set & LG_SAMP_MIN_P)
        p.min_p = s->min_p;
    if (s->set & LG_SAMP_REPEAT_PENALTY)
        p.repeat_penalty = s->repeat_penalty;
    if (s->set & LG_SAMP_PRESENCE_PENALTY)
        p.presence_penalty = s->presence_penalty;
    if (s->set & LG_SAMP_FREQUENCY_PENALTY)
        p.frequency_penalty = s->frequency_penalty;
    if (s->set & LG_SAMP_REPEAT_LAST_N)
        p.penalty_last_n = s->repeat_last_n < 0 ? (int32_t)(m->n_ctx < LG_SAMPLE_MAX_PENALTY_N
                                                          ? m->n_ctx : LG_SAMPLE_MAX_PENALTY_N)
                                                : s->repeat_last_n;
    p.seed = (s->set & LG_SAMP_SEED) ? s->seed : LG_SAMPLE_SEED_RANDOM;
    if (p.seed == LG_SAMPLE_SEED_RANDOM && (s->set & LG_SAMP_SEED))
        p.seed = 0;
    p.n_logprobs = j->req->top_logprobs > 0 ? j->req->top_logprobs : 0;
    (void)e;
    return lg_sampler_create(&p, m->n_vocab, &j->smp, err);
}

static enum lg_status job_grammar(struct lg_engine *e, struct eng_job *j, struct lg_err *err)
{
    (void)e;
    const struct lg_gen_req *r = j->req;
    struct eng_model *m = j->m;
    enum lg_status st = LG_OK;
    /* token texts for logprobs come from the grammar vocab */
    if (r->top_logprobs >= 0 && !m->gvocab &&
        (st = lg_grammar_vocab_build(m->vocab, &m->gvocab, err)) != LG_OK)
        return st;
    if (r->format == LG_FORMAT_JSON) {
        st = lg_grammar_json_object(&j->gram, err);
        j->trigger = GRAM_FROM_START;
    } else if (r->format == LG_FORMAT_SCHEMA) {
        st = lg_grammar_from_schema(r->schema, &j->gram, err);
        j->trigger = GRAM_FROM_START;
    } else if (j->tools && m->id_call_open >= 0 && m->flavour != LG_CHAT_GEMMA3 &&
               r->tool_choice != LG_TOOL_CHOICE_AUTO) {
        /* required / named: a call from the first answer token on */
        st = lg_grammar_from_tools(j->tools,
                                   r->tool_choice == LG_TOOL_CHOICE_NAMED ? r->tool_choice_name
                                                                          : NULL,
                                   LG_GRAMMAR_TOOL_OPEN |
                                       (r->no_parallel_tool_calls ? 0 : LG_GRAMMAR_TOOL_MULTI),
                                   &j->gram, err);
        j->trigger = GRAM_FROM_START;
    } else if (j->tools && m->id_call_open >= 0 && m->flavour != LG_CHAT_GEMMA3) {
        st = lg_grammar_from_tools(j->tools, NULL, 0, &j->gram, err);
        j->trigger = GRAM_ON_TOOL_CALL;
    }
    if (st != LG_OK || !j->gram) {
        j->trigger = GRAM_NONE;
        return st;
    }
    /* With thinking on the grammar waits for the thought to close; a model that answers
     * without opening the thought channel is held to the grammar anyway: see step_decode. */
    if (j->trigger == GRAM_FROM_START && r->think == LG_THINK_ON && m->id_chan_close >= 0 &&
        m->flavour != LG_CHAT_GEMMA3)
        j->trigger = GRAM_AFTER_THOUGHT;
    if (!m->gvocab && (st = lg_grammar_vocab_build(m->vocab, &m->gvocab, err)) != LG_OK)
        return st;
    if ((st = lg_grammar_state_create(j->gram, &j->gst, err)) != LG_OK)
        return st;
    j->hook.state = j->gst;
    j->hook.vocab = m->gvocab;
    j->gram_on = j->trigger == GRAM_FROM_START;
    /* the mask goes on only when the grammar applies from the first token: a grammar that
     * starts after the thought or at <|tool_call> must not constrain the first draw */
    if (j->gram_on)
        lg_sampler_set_mask(j->smp, lg_grammar_sample_mask, &j->hook);
    return LG_OK;
}

/* The free slot whose cache shares the longest prefix with ids (ties: least recently used). */
static int32_t pick_slot(struct eng_model *m, const int32_t *ids, int64_t n, int64_t *lcp_out)
{
    int32_t best = -1;
    int64_t best_lcp = -1;
    for (int32_t i = 0; i < m->n_slots; i++) {
        struct eng_slot *s = &m->slots[i];
        if (s->job)
            continue;
        int64_t l = 0;
        while (l < s->n_cache && l < n && s->cache_ids[l] == ids[l])
            l++;
        if (l > best_lcp || (l == best_lcp && s->last_used < m->slots[best].last_used)) {
            best = i;
            best_lcp = l;
        }
    }
    *lcp_out = best_lcp;
    return best;
}

static void slot_reset(struct eng_slot *s)
{
    struct lg_err ignored;
    (void)lg_kv_rewind(lg_model_state_kv(s->state), 0, &ignored);
    s->n_cache = 0;
    s->snap_pos = -1;
}

/* Sets up a dequeued job on a free slot, or ends it with an error event. */
/* Cuts the slot's cache back to at most lcp positions and returns how many it keeps: a plain
 * rewind when the sliding rings still hold the window, else the snapshot taken at the end of
 * the previous prompt (then rewound if lcp is below it), else nothing. */
static int64_t slot_cut(struct eng_slot *s, int64_t lcp)
{
    struct lg_kv *kv = lg_model_state_kv(s->state);
    struct lg_err rw;
    if (lg_kv_rewind(kv, lcp, &rw) == LG_OK) {
        s->n_cache = lcp;
    } else if (s->snap && s->snap_pos > 0 && s->snap_pos <= s->n_cache) {
        int64_t to = lcp < s->snap_pos ? lcp : s->snap_pos;
        if (lg_kv_snapshot_restore(kv, s->snap, s->snap_pos, &rw) == LG_OK &&
            lg_kv_rewind(kv, to, &rw) == LG_OK) {
            s->n_cache = to;
            lcp = to;
        } else {
            slot_reset(s);
            return 0;
        }
    } else {
        slot_reset(s);
        return 0;
    }
    if (s->snap_pos > s->n_cache)
        s->snap_pos = -1; /* what follows will overwrite positions below it */
    return lcp;
}

static void job_admit(struct lg_engine *e, struct eng_job *j)
{
    struct lg_err err = {0};
    const struct lg_gen_req *r = j->req;
    j->t_start = now_ns();
    bool empty = (r->kind == LG_PROMPT_CHAT && (!r->messages || json_array_size(r->messages) == 0)) ||
                 (r->kind != LG_PROMPT_CHAT && (!r->prompt || !r->prompt[0]));
    if (empty && r->keep_alive_ms == 0) {
        struct eng_model *um = model_by_path(e, j->path);
        if (um && um->n_active == 0) {
            model_unload(e, um);
            fprintf(stderr, "engine: unloaded %s (keep_alive 0)\n", j->req->model);
        } else if (um) {
            um->keep_alive_ms = 0;
        }
        struct lg_gen_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = LG_GEN_EV_DONE;
        ev.finish = LG_FINISH_UNLOAD;
        ev.timings.total_ns = now_ns() - j->t_submit;
        job_end(e, j, &ev);
        return;
    }
    enum lg_status st = ensure_model(e, j, &err);
    if (st != LG_OK) {
        char msg[sizeof err.msg + LG_GEN_MODEL_NAME_MAX + 32];
        snprintf(msg, sizeof msg, "cannot load model '%s': %s", j->req->model, err.msg);
        job_fail(e, j, st == LG_ERR_IO ? LG_ERR_NOT_FOUND : st == LG_ERR_NOMEM ? st
                                                                         : LG_ERR_FORMAT, msg);
        return;
    }
    if (empty) {
        struct lg_gen_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = LG_GEN_EV_DONE;
        ev.finish = LG_FINISH_LOAD;
        ev.timings.load_ns = j->load_ns;
        ev.timings.total_ns = now_ns() - j->t_submit;
        int64_t ka = r->keep_alive_ms;
        j->m->keep_alive_ms = ka == -2 ? e->p.keep_alive_ms : ka;
        j->m->idle_since_ms = wall_ms();
        j->m->last_used = ++e->use_clock;
        publish_stats(e);
        job_end(e, j, &ev);
        return;
    }
    struct eng_model *m = j->m;
    j->n_ctx = r->num_ctx > 0 && r->num_ctx < m->n_ctx ? r->num_ctx : m->n_ctx;
    j->tools = r->kind == LG_PROMPT_RAW ? NULL : tools_openai(r->tools);
    bool in_reasoning = false;
    if ((st = job_prompt(e, j, &in_reasoning, &err)) != LG_OK ||
        (st = job_sampler(e, j, &err)) != LG_OK ||
        (st = lg_stop_create((const char *const *)r->stop, (size_t)r->n_stop, &j->stop, &err)) !=
            LG_OK ||
        (st = job_grammar(e, j, &err)) != LG_OK) {
        job_fail(e, j, st == LG_ERR_NOMEM ? st : (st == LG_ERR_CONTEXT ? st : LG_ERR_INVALID_ARG),
                 err.msg);
        return;
    }
    j->detok = lg_detok_create(m->vocab, 0);
    if (r->kind != LG_PROMPT_RAW) {
        j->parser = lg_chat_parser_create(m->flavour, j->tools);
        if (j->parser && in_reasoning)
            lg_chat_parser_begin_in_reasoning(j->parser);
    }
    if (!j->detok || (r->kind != LG_PROMPT_RAW && !j->parser)) {
        job_fail(e, j, LG_ERR_NOMEM, "out of memory");
        return;
    }
    j->in_thought = in_reasoning;
    j->think_budget = r->think_budget >= 0 ? r->think_budget : e->p.reasoning_budget;
    int64_t room = j->n_ctx - j->n_ids;
    j->max_tokens = r->max_tokens >= 0 && r->max_tokens < room ? r->max_tokens : (int32_t)room;
    for (int64_t i = j->n_ids > ENG_PENALTY_PROMPT ? j->n_ids - ENG_PENALTY_PROMPT : 0;
         i < j->n_ids; i++)
        lg_sampler_accept(j->smp, j->ids[i]);

    int64_t lcp;
    int32_t si = pick_slot(m, j->ids, j->n_ids, &lcp);
    if (si < 0) { /* job_ready saw a free slot: cannot happen */
        job_fail(e, j, LG_ERR_INTERNAL, "no free sequence slot");
        return;
    }
    struct eng_slot *s = &m->slots[si];
    if (lcp == j->n_ids) /* all cached: recompute the last token for its logits */
        lcp = j->n_ids - 1;
    if (lcp < s->n_cache)
        lcp = slot_cut(s, lcp);
    j->n_cached = lcp;
    j->pos = lcp;
    j->slot = si;
    j->phase = JOB_PREFILL;
    s->job = j;
    s->last_used = ++e->use_clock;
    m->last_used = e->use_clock;
    m->n_active++;
    e->n_active++;
    publish_stats(e);
}

/* ---- one step -------------------------------------------------------------------------- */

/* One engine step is one batched forward (lg_model_forward_batch): every decoding slot
 * contributes its sampled token, every prefilling slot a part of its prompt (within the
 * prefill budget), and each weight matrix is read once for all of them. */
struct eng_batch {
    struct lg_batch_seg seg[ENG_MAX_SLOTS];
    struct eng_slot *slot[ENG_MAX_SLOTS];
    bool prefill[ENG_MAX_SLOTS];
    int n;
};

static void batch_add(struct eng_batch *b, struct eng_slot *s, const int32_t *ids, int64_t n,
                      bool logits, bool prefill)
{
    int i = b->n++;
    b->seg[i] = (struct lg_batch_seg){s->state, ids, n, logits ? LG_LOGITS_LAST : LG_LOGITS_NONE,
                                      NULL};
    b->slot[i] = s;
    b->prefill[i] = prefill;
}

static void batch_drop(struct eng_batch *b, int i)
{
    for (int k = i + 1; k < b->n; k++) {
        b->seg[k - 1] = b->seg[k];
        b->slot[k - 1] = b->slot[k];
        b->prefill[k - 1] = b->prefill[k];
    }
    b->n--;
}

/* Runs the batch; a segment the model refuses (checked before anything runs) fails its job
 * alone and the rest run without it. */
static void batch_run(struct lg_engine *e, struct eng_model *m, struct eng_batch *b)
{
    struct lg_err err = {0};
    int64_t t0 = now_ns();
    while (b->n > 0) {
        int64_t k = 0;
        for (int i = 0; i < b->n; i++)
            if (b->seg[i].mode != LG_LOGITS_NONE)
                b->seg[i].logits = m->blogits + (k++) * m->n_vocab; /* adjacent: one product */
        int bad = -1;
        enum lg_status st = lg_model_forward_batch(m->model, m->work, b->seg, b->n, &bad, &err);
        if (st == LG_OK)
            break;
        if (bad < 0) { /* not one segment's fault: fail them all */
            for (int i = 0; i < b->n; i++) {
                slot_reset(b->slot[i]);
                job_fail(e, b->slot[i]->job, LG_ERR_INTERNAL, err.msg);
            }
            return;
        }
        slot_reset(b->slot[bad]);
        job_fail(e, b->slot[bad]->job,
                 st == LG_ERR_CONTEXT && b->prefill[bad] ? st : LG_ERR_INTERNAL, err.msg);
        batch_drop(b, bad);
    }
    int64_t dt = now_ns() - t0;
    for (int i = 0; i < b->n; i++) {
        struct eng_slot *s = b->slot[i];
        const struct lg_batch_seg *g = &b->seg[i];
        memcpy(s->cache_ids + s->n_cache, g->tokens, (size_t)g->n_tok * sizeof *g->tokens);
        s->n_cache += g->n_tok;
        if (g->mode != LG_LOGITS_NONE)
            memcpy(s->logits, g->logits, (size_t)m->n_vocab * sizeof *s->logits);
        if (b->prefill[i]) {
            struct eng_job *j = s->job;
            j->pos += g->n_tok;
            j->prompt_ns += dt;
            if (j->pos == j->n_ids) {
                j->phase = JOB_DECODE;
                if (s->snap) /* the next turn of this chat can come back here */
                    s->snap_pos = lg_kv_snapshot_save(lg_model_state_kv(s->state), s->snap);
            }
        }
    }
}

/* Adds at most max_n prompt tokens of the slot's job to the batch; returns how many. */
static int64_t step_prefill(struct eng_batch *b, struct eng_slot *s, int64_t max_n)
{
    struct eng_job *j = s->job;
    int64_t n = j->n_ids - j->pos;
    if (n > max_n)
        n = max_n;
    batch_add(b, s, j->ids + j->pos, n, j->pos + n == j->n_ids, true);
    return n;
}

/* Feeds a sampled token's text through stop matching and the chat parser. */
static void job_token_text(struct eng_job *j, int32_t tok)
{
    struct eng_model *m = j->m;
    bool marker = tok == m->id_chan_open || tok == m->id_chan_close || tok == m->id_call_open;
    if (marker || lg_tok_is_control(m->vocab, tok)) {
        if (tok == m->id_chan_open)
            j->in_thought = true;
        if (tok == m->id_chan_close)
            j->in_thought = false;
        struct lg_str piece = lg_tok_piece(m->vocab, tok);
        put_text(j, piece.ptr, (size_t)piece.len, true);
        return;
    }
    if (j->in_thought)
        j->n_thought++;
    const char *t;
    size_t n;
    struct lg_err err;
    if (lg_detok_feed(j->detok, tok, &t, &n, &err) != LG_OK)
        return;
    struct lg_stop_result r;
    if (lg_stop_feed(j->stop, t, n, &r, &err) != LG_OK)
        return;
    put_text(j, r.text, r.n_text, false);
    if (r.stopped)
        j->stopped = true;
}

/* The first draw of a GRAM_AFTER_THOUGHT job: the grammar's tokens, or <|channel> to think
 * first. */
static enum lg_status mask_grammar_or_thought(void *ctx, uint32_t *allowed, int32_t n_vocab,
                                              struct lg_err *err)
{
    struct eng_job *j = ctx;
    enum lg_status st = lg_grammar_sample_mask(&j->hook, allowed, n_vocab, err);
    if (st == LG_OK && j->mask_extra >= 0 && j->mask_extra < n_vocab)
        allowed[j->mask_extra >> 5] |= 1u << (j->mask_extra & 31);
    return st;
}

/* Samples the slot's next token and, unless the job ends, adds it to the batch. */
static void step_decode(struct lg_engine *e, struct eng_batch *b, struct eng_slot *s)
{
    struct eng_job *j = s->job;
    struct eng_model *m = j->m;
    struct lg_err err = {0};
    if (j->n_gen >= j->max_tokens) {
        job_done(e, j, LG_FINISH_LENGTH);
        return;
    }
    int32_t tok;
    enum lg_status st;
    bool forced = false;
    if (j->in_thought && j->think_budget >= 0 && j->n_thought >= j->think_budget &&
        m->id_chan_close >= 0) {
        tok = m->id_chan_close; /* close the thought channel cleanly */
        forced = true;
        st = LG_OK;
    } else {
        bool first_or = j->n_gen == 0 && j->trigger == GRAM_AFTER_THOUGHT && !j->gram_on &&
                        !j->in_thought && m->id_chan_open >= 0;
        if (first_or) {
            j->mask_extra = m->id_chan_open;
            lg_sampler_set_mask(j->smp, mask_grammar_or_thought, j);
        }
        struct lg_sample_info info;
        bool want = j->req->top_logprobs >= 0 && m->gvocab;
        st = lg_sampler_sample(j->smp, s->logits, &tok, want ? &info : NULL, &err);
        if (st == LG_OK && want && !lg_tok_is_eog(m->vocab, tok))
            job_logprob(j, m->gvocab, tok, &info);
    }
    if (st != LG_OK) {
        job_fail(e, j, LG_ERR_INTERNAL, err.msg);
        return;
    }
    if (j->n_gen == 0) {
        j->t_first = now_ns();
        /* no thought opened: the answer starts now, under the grammar */
        if (j->trigger == GRAM_AFTER_THOUGHT && !j->gram_on && !j->in_thought &&
            tok != m->id_chan_open && !forced)
            j->gram_on = true;
    }
    j->n_gen++;
    lg_sampler_accept(j->smp, tok);
    if (j->gram_on && !forced) {
        if (lg_grammar_accept_token(j->gst, m->gvocab, tok, &err) != LG_OK)
            j->gram_on = false; /* cannot happen for a masked draw; never wedge the stream */
    }
    if (lg_tok_is_eog(m->vocab, tok)) {
        job_done(e, j, LG_FINISH_STOP);
        return;
    }
    job_token_text(j, tok);
    if (j->stopped) {
        job_done(e, j, LG_FINISH_STOP);
        return;
    }
    /* switch the grammar on or off after this token */
    if (j->trigger == GRAM_AFTER_THOUGHT && !j->gram_on && tok == m->id_chan_close) {
        j->gram_on = true;
    } else if (j->trigger == GRAM_ON_TOOL_CALL) {
        if (!j->gram_on && tok == m->id_call_open) {
            lg_grammar_state_reset(j->gst);
            j->gram_on = true;
        } else if (j->gram_on && lg_grammar_is_finished(j->gst)) {
            j->gram_on = false;
        }
    }
    lg_sampler_set_mask(j->smp, j->gram_on ? lg_grammar_sample_mask : NULL,
                        j->gram_on ? &j->hook : NULL);
    if (s->n_cache >= j->n_ctx) {
        job_done(e, j, LG_FINISH_LENGTH);
        return;
    }
    s->next_tok = tok;
    batch_add(b, s, &s->next_tok, 1, true, false);
}

/* One step of one model: one batched forward for its decoding and prefilling slots. */
static void model_step(struct lg_engine *e, struct eng_model *m)
{
    for (int32_t i = 0; i < m->n_slots; i++) {
        struct eng_job *j = m->slots[i].job;
        if (j && atomic_load(&j->req->cancel))
            job_fail(e, j, LG_ERR_CANCELLED, "cancelled: the client went away");
    }
    struct eng_batch b;
    b.n = 0;
    for (int32_t i = 0; i < m->n_slots; i++)
        if (m->slots[i].job && m->slots[i].job->phase == JOB_DECODE)
            step_decode(e, &b, &m->slots[i]);
    /* prefill: a budget of n_chunk tokens per step and model, shared by the prefilling slots
     * in turn (several short prompts start in one step; a long one takes a chunk per step) */
    int64_t budget = e->p.n_chunk > 0 ? e->p.n_chunk : ENG_CHUNK;
    int32_t start = m->rr;
    for (int32_t k = 0; k < m->n_slots && budget > 0; k++) {
        int32_t i = (start + k) % m->n_slots;
        if (m->slots[i].job && m->slots[i].job->phase == JOB_PREFILL) {
            budget -= step_prefill(&b, &m->slots[i], budget);
            m->rr = (i + 1) % m->n_slots;
        }
    }
    batch_run(e, m, &b);
}

/* One engine step: one batched forward per model that has active jobs. */
static void engine_step(struct lg_engine *e)
{
    for (int32_t k = 0; k < e->n_loaded; k++)
        if (e->models_loaded[k]->n_active > 0)
            model_step(e, e->models_loaded[k]);
    publish_stats(e);
}

/* ---- the engine thread ----------------------------------------------------------------- */

/* Unloads every idle model past its keep-alive; *wait_ms gets the time until the next one
 * expires (at most 1 s). */
static void expire_models(struct lg_engine *e, int64_t *wait_ms)
{
    *wait_ms = 1000;
    for (int32_t k = 0; k < e->n_loaded; k++) {
        struct eng_model *m = e->models_loaded[k];
        if (m->n_active > 0 || m->keep_alive_ms < 0)
            continue;
        int64_t left = m->idle_since_ms + m->keep_alive_ms - wall_ms();
        if (left <= 0) {
            fprintf(stderr, "engine: unloaded %s (keep-alive expired)\n", m->name);
            model_unload(e, m);
            k = -1; /* the array changed: look again */
            *wait_ms = 1000;
            continue;
        }
        if (left < *wait_ms)
            *wait_ms = left;
    }
}

/* Whether a queued job can be admitted now. */
enum job_readiness {
    READY_GO = 0,   /* dequeue and admit (or it is cancelled: dequeue and fail) */
    READY_FAIL = 1, /* dequeue and fail with err */
    READY_SKIP = 2, /* its model is loaded but has no free slot: look at the next job */
    READY_WAIT = 3  /* it waits for memory or for its model to go idle: stop looking */
};

/* May unload idle models to make room (engine thread, mutex not held). */
static enum job_readiness job_ready(struct lg_engine *e, struct eng_job *j, struct lg_err *err)
{
    const struct lg_gen_req *r = j->req;
    if (atomic_load(&r->cancel))
        return READY_GO;
    bool empty = (r->kind == LG_PROMPT_CHAT && (!r->messages || json_array_size(r->messages) == 0)) ||
                 (r->kind != LG_PROMPT_CHAT && (!r->prompt || !r->prompt[0]));
    if (empty && r->keep_alive_ms == 0)
        return READY_GO;
    struct eng_model *m = model_by_path(e, j->path);
    if (m && model_serves(m, j))
        return empty || model_has_free_slot(m) ? READY_GO : READY_SKIP;
    if (m) { /* a larger context: reload once its jobs are done */
        if (m->n_active > 0)
            return READY_WAIT;
        fprintf(stderr, "engine: unloading %s to reload it with a larger context\n", m->name);
        model_unload(e, m);
    }
    if (e->n_loaded == 0)
        return READY_GO; /* alone: model_load's plan decides */
    if (!j->planned) {
        /* what the model needs alone, in the budget taken when nothing was loaded */
        struct lg_gguf *g = NULL;
        int64_t n_ctx = job_want_ctx(e, j);
        uint64_t base = 0;
        enum lg_status st = lg_gguf_open(j->path, &g, err);
        if (st == LG_OK)
            st = plan_check(e, g, r->model, &n_ctx, e->budget, &j->need_bytes, &base, err);
        lg_gguf_close(g);
        if (st != LG_OK)
            return READY_GO; /* job_admit loads it and reports the same error */
        j->need_bytes += LG_PLAN_HEADROOM_BYTES;
        j->planned = true;
    }
    for (;;) {
        if (e->n_loaded == 0)
            return READY_GO;
        if (e->n_loaded < e->max_models && j->need_bytes <= mem_free_for_new(e))
            return READY_GO;
        struct eng_model *victim = lru_idle(e);
        if (!victim)
            return READY_WAIT;
        fprintf(stderr, "engine: unloading %s (idle) to make room for %s\n", victim->name,
                r->model);
        model_unload(e, victim);
    }
}

/* Admits what can run from the queue, in order (see the top of the file). Called and returns
 * with e->mu held. */
static void admit_queued(struct lg_engine *e)
{
    struct eng_job *prev = NULL;
    struct eng_job *j = e->q_head;
    while (j && !e->stopping) {
        pthread_mutex_unlock(&e->mu);
        struct lg_err err = {0};
        enum job_readiness rd = job_ready(e, j, &err);
        pthread_mutex_lock(&e->mu);
        struct eng_job *next = j->next;
        if (rd == READY_WAIT)
            break;
        if (rd == READY_SKIP) {
            prev = j;
            j = next;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            e->q_head = next;
        if (e->q_tail == j)
            e->q_tail = prev;
        e->q_len--;
        j->next = NULL;
        pthread_mutex_unlock(&e->mu);
        if (atomic_load(&j->req->cancel))
            job_fail(e, j, LG_ERR_CANCELLED, "cancelled: the client went away");
        else if (rd == READY_FAIL)
            job_fail(e, j, err.code ? err.code : LG_ERR_INTERNAL, err.msg);
        else
            job_admit(e, j);
        pthread_mutex_lock(&e->mu);
        j = next;
    }
}

static void *engine_main(void *arg)
{
    struct lg_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        int64_t wait_ms;
        pthread_mutex_unlock(&e->mu);
        expire_models(e, &wait_ms);
        pthread_mutex_lock(&e->mu);
        if (e->stopping)
            break;
        /* nothing to run, and nothing queued or ended since the last scan */
        if (e->n_active == 0 && (!e->q_head || (e->q_seen == e->next_id && !e->rescan))) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            continue;
        }
        e->q_seen = e->next_id;
        e->rescan = false;
        admit_queued(e);
        pthread_mutex_unlock(&e->mu);
        if (e->n_active > 0)
            engine_step(e);
        pthread_mutex_lock(&e->mu);
    }
    /* stopping: end everything */
    struct eng_job *q = e->q_head;
    e->q_head = e->q_tail = NULL;
    e->q_len = 0;
    pthread_mutex_unlock(&e->mu);
    while (q) {
        struct eng_job *next = q->next;
        job_fail(e, q, LG_ERR_CANCELLED, "the server is shutting down");
        q = next;
    }
    for (int32_t k = 0; k < e->n_loaded; k++) {
        struct eng_model *m = e->models_loaded[k];
        for (int32_t i = 0; i < m->n_slots; i++)
            if (m->slots[i].job)
                job_fail(e, m->slots[i].job, LG_ERR_CANCELLED, "the server is shutting down");
    }
    while (e->n_loaded > 0)
        model_unload(e, e->models_loaded[e->n_loaded - 1]);
    return NULL;
}

/* ---- ops ------------------------------------------------------------------------------- */

static enum lg_status resolve_model(struct lg_engine *e, const char *name, char *out,
                                    size_t cap, struct lg_err *err)
{
    if (!name[0])
        return lg_err_set(err, LG_ERR_NOT_FOUND, "no model given");
    for (size_t i = 0; i < e->p.n_models; i++) {
        if (strcmp(e->models[i], name) != 0)
            continue;
        return e->p.store ? lg_store_resolve(e->p.store, name, false, out, cap, err)
                          : lg_store_resolve_default(name, false, out, cap, err);
    }
    if (!e->p.store)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%s' not found", name);
    enum lg_status st = lg_store_resolve_name(e->p.store, name, false, out, cap, err);
    if (st != LG_OK && st != LG_ERR_NOMEM)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%s' not found (try 'localgemma pull')",
                          name);
    return st;
}

static enum lg_status eng_submit(void *self, struct lg_gen_req *req, uint64_t *id,
                                 struct lg_err *err)
{
    struct lg_engine *e = self;
    if (!req || !req->emit)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "no request");
    struct eng_job *j = calloc(1, sizeof *j);
    if (!j)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status st = resolve_model(e, req->model, j->path, sizeof j->path, err);
    if (st != LG_OK) {
        free(j);
        return st;
    }
    j->req = req;
    j->slot = -1;
    j->t_submit = now_ns();
    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->q_len >= e->p.max_queue) {
        bool stopping = e->stopping;
        pthread_mutex_unlock(&e->mu);
        free(j);
        return lg_err_set(err, LG_ERR_BUSY, stopping ? "the server is shutting down"
                                                    : "server busy: the queue is full");
    }
    j->id = ++e->next_id;
    if (id)
        *id = j->id;
    if (e->q_tail)
        e->q_tail->next = j;
    else
        e->q_head = j;
    e->q_tail = j;
    e->q_len++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return LG_OK;
}

static void eng_stats(void *self, struct lg_engine_stats *out)
{
    struct lg_engine *e = self;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->mu);
    out->queue_depth = e->q_len;
    out->queue_cap = e->p.max_queue;
    out->n_active = e->st_active;
    out->n_parallel = e->p.n_parallel;
    out->n_loading = e->st_loading;
    out->kv_used_bytes = e->st_kv_used;
    out->kv_total_bytes = e->st_kv_total;
    pthread_mutex_unlock(&e->mu);
}

static size_t eng_list_loaded(void *self, struct lg_loaded_model *out, size_t cap)
{
    struct lg_engine *e = self;
    pthread_mutex_lock(&e->mu);
    size_t n = (size_t)e->st_n_models;
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = e->st_models[i];
    pthread_mutex_unlock(&e->mu);
    return n;
}

const struct lg_engine_ops lg_engine_ops_real = {eng_submit, eng_stats, eng_list_loaded};

enum lg_status lg_engine_create(const struct lg_engine_params *p, struct lg_engine **out,
                                struct lg_err *err)
{
    *out = NULL;
    if (p->n_parallel < 1 || p->n_parallel > 256 || p->max_queue < 1 || p->max_models < 0 ||
        p->max_models > ENG_MAX_MODELS)
        return lg_err_set(err, LG_ERR_RANGE,
                          "engine: parallel 1..256, max-queue >= 1, max-models 1..%d",
                          ENG_MAX_MODELS);
    struct lg_engine *e = calloc(1, sizeof *e);
    if (!e)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    e->p = *p;
    e->max_models = p->max_models > 0 ? p->max_models : ENG_MAX_MODELS;
    if (p->n_models) {
        e->models = calloc(p->n_models, sizeof *e->models);
        if (!e->models) {
            free(e);
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < p->n_models; i++)
            if (!(e->models[i] = strdup(p->models[i]))) {
                e->p.n_models = i;
                lg_engine_destroy(e);
                return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
            }
    }
    e->p.models = NULL;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        lg_engine_destroy(e);
        return lg_err_set(err, LG_ERR_INTERNAL, "cannot start the engine thread");
    }
    e->started = true;
    *out = e;
    return LG_OK;
}

void lg_engine_destroy(struct lg_engine *e)
{
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    for (size_t i = 0; i < e->p.n_models; i++)
        free(e->models[i]);
    free(e->models);
    free(e);
}
