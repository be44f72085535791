/* engine_job.c: one request of the batching engine, from admission to its terminal event:
 * the prompt (canonical messages and tools -> the chat template -> token ids), the sampler
 * and the grammar it runs under, the choice of a slot (the longest cached prefix), and the
 * events it emits (text through the detokenizer, stop strings and the chat parser; tool
 * calls; DONE with usage, timings and validation). Engine thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/engine_priv.h"
#include "json/json.h"
#include "kv/kv.h"
#include "model/model.h"
#include "tok/tok.h"

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

void lg_eng_job_logprob(struct eng_job *j, const struct lg_grammar_vocab *gv, int32_t tok,
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
 * in j->tool_error and reported by lg_eng_job_done (see there). */
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


void lg_eng_job_end(struct lg_engine *e, struct eng_job *j, const struct lg_gen_event *ev)
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
        m->idle_since_ms = lg_eng_wall_ms();
        m->last_used = ++e->use_clock;
    }
    lg_gen_emit_fn emit = j->req->emit;
    void *ctx = j->req->emit_ctx;
    j->req = NULL; /* never read again */
    lg_eng_publish_stats(e);
    emit(ctx, ev);
    job_free(j);
}

void lg_eng_job_fail(struct lg_engine *e, struct eng_job *j, enum lg_status st, const char *msg)
{
    struct lg_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = LG_GEN_EV_ERROR;
    ev.status = st;
    ev.message = msg;
    lg_eng_job_end(e, j, &ev);
}

/* Appends e to a (taking e's reference); false when either is NULL or the append fails. */
static bool append_ok(json_t *a, json_t *e)
{
    return json_array_append_new(a, e) == 0;
}

/* The answer checked against the requested format, plus a failed tool call if any:
 * {"valid", "errors"} as malloc'd JSON text. NULL on allocation failure, also when only one
 * error entry could not be stored: a report missing an error could read "valid": true. */
static char *job_validate(const struct eng_job *j)
{
    json_t *errors = json_array();
    if (!errors)
        return NULL;
    bool ok = true;
    if (j->tool_error[0])
        ok &= append_ok(errors, json_pack("{s:s, s:s}", "path", "/tool_calls", "message",
                                          j->tool_error));
    json_error_t jerr;
    json_t *doc = j->req->format == LG_FORMAT_TEXT
                      ? NULL
                      : json_loadb(j->answer.ptr ? j->answer.ptr : "", j->answer.len, 0, &jerr);
    if (j->req->format == LG_FORMAT_TEXT) {
        /* tool-call report only */
    } else if (!doc) {
        ok &= append_ok(errors, json_pack("{s:s, s:s+}", "path", "", "message", "not JSON: ",
                                          jerr.text));
    } else if (j->req->format == LG_FORMAT_JSON) {
        if (!json_is_object(doc))
            ok &= append_ok(errors, json_pack("{s:s, s:s}", "path", "", "message",
                                              "not a JSON object"));
    } else {
        struct lg_err err = {0};
        if (lg_schema_validate(j->req->schema, doc, errors, &err) != LG_OK)
            ok &= append_ok(errors, json_pack("{s:s, s:s}", "path", "", "message", err.msg));
    }
    json_decref(doc);
    if (!ok) {
        json_decref(errors);
        return NULL;
    }
    json_t *v = json_pack("{s:b, s:o}", "valid", json_array_size(errors) == 0, "errors",
                          errors);
    char *text = lg_json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return text;
}

void lg_eng_job_done(struct lg_engine *e, struct eng_job *j, enum lg_finish finish)
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
    int64_t t = lg_eng_now_ns();
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
    char *validation = NULL;
    if (j->req->format != LG_FORMAT_TEXT || j->tool_error[0]) {
        validation = job_validate(j);
        if (!validation) { /* an answer without its report would look unchecked */
            lg_eng_job_fail(e, j, LG_ERR_NOMEM, "out of memory building the validation report");
            return;
        }
    }
    ev.validation = validation;
    lg_eng_job_end(e, j, &ev);
    free(validation);
}
/* ---- admission ------------------------------------------------------------------------- */

/* Both conversions below build the template's input; a tool, a message or a field lost to a
 * failed allocation would render a different prompt, so any failure makes them return NULL
 * (the job then fails with LG_ERR_NOMEM). */

/* Canonical tools [{name, description, parameters}] -> OpenAI [{type, function}] in *out
 * (NULL: no tools). LG_ERR_NOMEM when it cannot be built. */
static enum lg_status tools_openai(const json_t *tools, json_t **out, struct lg_err *err)
{
    *out = NULL;
    if (!tools || !json_is_array(tools) || json_array_size(tools) == 0)
        return LG_OK;
    json_t *arr = json_array();
    if (!arr)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory converting the tools");
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        if (!append_ok(arr, json_pack("{s:s, s:O}", "type", "function", "function", t))) {
            json_decref(arr);
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory converting the tools");
        }
    }
    *out = arr;
    return LG_OK;
}

/* One canonical tool call {id?, name, arguments} -> {type, function:{name, arguments}, id?};
 * NULL on allocation failure. */
static json_t *tool_call_openai(const json_t *tc)
{
    json_t *name = json_object_get(tc, "name");
    json_t *args = json_object_get(tc, "arguments");
    /* "o" takes the reference, also when json_pack fails (Jansson >= 2.11); a NULL value
     * makes it fail */
    json_t *fn = json_pack("{s:o, s:o}", "name", name ? json_incref(name) : json_string(""),
                           "arguments", args ? json_incref(args) : json_object());
    json_t *w = json_pack("{s:s, s:o}", "type", "function", "function", fn);
    json_t *id = json_object_get(tc, "id");
    if (w && id && json_object_set(w, "id", id) != 0) {
        json_decref(w);
        return NULL;
    }
    return w;
}

/* Canonical messages -> the OpenAI shape chat/ renders (tool_calls[].function). */
static json_t *messages_openai(const json_t *msgs)
{
    json_t *out = json_array();
    if (!out)
        return NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *c = json_copy((json_t *)m);
        if (!c)
            goto fail;
        const json_t *tcs = json_object_get(m, "tool_calls");
        if (json_is_array(tcs)) {
            json_t *arr = json_array();
            bool ok = json_object_set_new(c, "tool_calls", arr) == 0;
            size_t k;
            const json_t *tc;
            json_array_foreach(tcs, k, tc) {
                if (ok)
                    ok = append_ok(arr, tool_call_openai(tc));
            }
            if (!ok) {
                json_decref(c);
                goto fail;
            }
        }
        json_t *th = json_object_get(c, "thinking");
        if (th && json_object_set(c, "reasoning_content", th) != 0) {
            json_decref(c);
            goto fail;
        }
        json_object_del(c, "thinking");
        if (!append_ok(out, c))
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
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
            bool ok = msgs != NULL;
            if (ok && r->system && r->system[0])
                ok = append_ok(msgs, json_pack("{s:s, s:s}", "role", "system", "content",
                                               r->system));
            if (ok)
                ok = append_ok(msgs, json_pack("{s:s, s:s}", "role", "user", "content",
                                               r->prompt ? r->prompt : ""));
            if (!ok) {
                json_decref(msgs);
                msgs = NULL;
            }
        }
        if (!msgs)
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory converting the messages");
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

void lg_eng_slot_reset(struct eng_slot *s)
{
    struct lg_err ignored;
    (void)lg_kv_rewind(lg_model_state_kv(s->state), 0, &ignored);
    s->n_cache = 0;
    s->snap_pos = -1;
}

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
            lg_eng_slot_reset(s);
            return 0;
        }
    } else {
        lg_eng_slot_reset(s);
        return 0;
    }
    if (s->snap_pos > s->n_cache)
        s->snap_pos = -1; /* what follows will overwrite positions below it */
    return lcp;
}

/* Sets up a dequeued job on a free slot, or ends it with an error event. */
void lg_eng_job_admit(struct lg_engine *e, struct eng_job *j)
{
    struct lg_err err = {0};
    const struct lg_gen_req *r = j->req;
    j->t_start = lg_eng_now_ns();
    bool empty = lg_eng_req_empty(r);
    if (empty && r->keep_alive_ms == 0) {
        struct eng_model *um = lg_eng_model_by_path(e, j->path);
        if (um && um->n_active == 0) {
            lg_eng_model_unload(e, um);
            fprintf(stderr, "engine: unloaded %s (keep_alive 0)\n", j->req->model);
        } else if (um) {
            um->keep_alive_ms = 0;
        }
        struct lg_gen_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = LG_GEN_EV_DONE;
        ev.finish = LG_FINISH_UNLOAD;
        ev.timings.total_ns = lg_eng_now_ns() - j->t_submit;
        lg_eng_job_end(e, j, &ev);
        return;
    }
    enum lg_status st = lg_eng_ensure_model(e, j, &err);
    if (st != LG_OK) {
        char msg[sizeof err.msg + LG_GEN_MODEL_NAME_MAX + 32];
        snprintf(msg, sizeof msg, "cannot load model '%s': %s", j->req->model, err.msg);
        lg_eng_job_fail(e, j, st == LG_ERR_IO      ? LG_ERR_NOT_FOUND
                              : st == LG_ERR_NOMEM ? st
                                                   : LG_ERR_FORMAT,
                        msg);
        return;
    }
    if (empty) {
        struct lg_gen_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = LG_GEN_EV_DONE;
        ev.finish = LG_FINISH_LOAD;
        ev.timings.load_ns = j->load_ns;
        ev.timings.total_ns = lg_eng_now_ns() - j->t_submit;
        int64_t ka = r->keep_alive_ms;
        j->m->keep_alive_ms = ka == -2 ? e->p.keep_alive_ms : ka;
        j->m->idle_since_ms = lg_eng_wall_ms();
        j->m->last_used = ++e->use_clock;
        lg_eng_publish_stats(e);
        lg_eng_job_end(e, j, &ev);
        return;
    }
    struct eng_model *m = j->m;
    j->n_ctx = r->num_ctx > 0 && r->num_ctx < m->n_ctx ? r->num_ctx : m->n_ctx;
    j->tools = NULL;
    bool in_reasoning = false;
    if ((r->kind != LG_PROMPT_RAW && (st = tools_openai(r->tools, &j->tools, &err)) != LG_OK) ||
        (st = job_prompt(e, j, &in_reasoning, &err)) != LG_OK ||
        (st = job_sampler(e, j, &err)) != LG_OK ||
        (st = lg_stop_create((const char *const *)r->stop, (size_t)r->n_stop, &j->stop, &err)) !=
            LG_OK ||
        (st = job_grammar(e, j, &err)) != LG_OK) {
        lg_eng_job_fail(e, j, st == LG_ERR_NOMEM || st == LG_ERR_CONTEXT ? st : LG_ERR_INVALID_ARG,
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
        lg_eng_job_fail(e, j, LG_ERR_NOMEM, "out of memory");
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
    if (si < 0) { /* lg_eng_job_ready saw a free slot: cannot happen */
        lg_eng_job_fail(e, j, LG_ERR_INTERNAL, "no free sequence slot");
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
    lg_eng_publish_stats(e);
}
void lg_eng_job_token_text(struct eng_job *j, int32_t tok)
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
