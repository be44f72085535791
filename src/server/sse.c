/* sse.c: turning engine events into OpenAI wire formats — the accumulator for non-streamed
 * answers, the SSE chunk writer, the chat.completion / text_completion bodies and the error
 * object. Pure functions of their inputs (byte-exact unit tests in test_server_stream.c).
 *
 * Chunk sequence for chat (api.md §2.1): a role-only first chunk, then reasoning_content /
 * content / tool_calls deltas (id, type and name only on a call's first fragment), a finish
 * chunk with an empty delta, a usage chunk (choices: []) when stream_options.include_usage,
 * and `data: [DONE]`. An engine error becomes `data: {"error":{...}}` and then [DONE].
 * A tool call the model got wrong is not an engine error: the engine ends the turn normally
 * (HTTP 200, finish "stop"/"length") and names the failure in the "validation" extension
 * ({"valid": false, "errors": [{"path": "/tool_calls", "message"}]}), attached here to the
 * body / a final chunk. OpenAI clients raise on an "error" key in a stream, so none is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "server/server.h"

/* Jansson's setters drop the field when its value (or the key's slot) cannot be allocated
 * and return -1; the writers below build with these, which clear *ok instead, and a chunk
 * or body that lost a field is never sent (the stream ends with an error, the body is a 500).
 * set_new takes v's reference, also on failure; set_ref does not (json_object_set). */
static void set_new(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (json_object_set_new(o, key, v) != 0)
        *ok = false;
}

static void set_ref(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (json_object_set(o, key, v) != 0)
        *ok = false;
}

/* ---- accumulator ---- */

/* Something of the answer could not be stored: the answer is an error (503), not a shorter
 * or nameless one. */
static void accum_oom(struct srv_accum *a)
{
    if (a->failed)
        return;
    a->failed = true;
    a->status = LG_ERR_NOMEM;
    snprintf(a->message, sizeof a->message, "out of memory collecting the answer");
}

void srv_accum_event(struct srv_accum *a, const struct lg_gen_event *ev)
{
    switch (ev->kind) {
    case LG_GEN_EV_REASONING:
        srv_buf_put(&a->reasoning, ev->text, ev->n_text);
        if (a->reasoning.oom)
            accum_oom(a);
        break;
    case LG_GEN_EV_CONTENT: {
        srv_buf_put(&a->content, ev->text, ev->n_text);
        if (a->content.oom)
            accum_oom(a);
        json_t *lp = srv_logprobs_json(ev);
        if (lp) {
            if (!a->logprobs)
                a->logprobs = json_array();
            if (!a->logprobs || json_array_extend(a->logprobs, lp) != 0)
                accum_oom(a);
            json_decref(lp);
        } else if (ev->logprobs && ev->n_logprobs > 0) {
            accum_oom(a);
        }
        break;
    }
    case LG_GEN_EV_TOOL_CALL: {
        int32_t i = ev->tool_index;
        if (i == a->n_calls && i < SRV_MAX_TOOL_CALLS) {
            struct srv_tool_call *tc = &a->calls[a->n_calls++];
            memset(tc, 0, sizeof *tc);
            if (ev->tool_id && ev->tool_id[0])
                snprintf(tc->id, sizeof tc->id, "%s", ev->tool_id);
            else
                snprintf(tc->id, sizeof tc->id, "call_%d", (int)i);
            tc->name = strdup(ev->tool_name ? ev->tool_name : "");
            if (!tc->name)
                accum_oom(a);
        }
        if (i >= 0 && i == a->n_calls - 1) {
            srv_buf_put(&a->calls[i].args, ev->text, ev->n_text);
            if (a->calls[i].args.oom)
                accum_oom(a);
        }
        break;
    }
    case LG_GEN_EV_DONE:
        a->done = true;
        a->finish = ev->finish;
        a->usage = ev->usage;
        a->timings = ev->timings;
        json_decref(a->validation);
        a->validation = ev->validation ? json_loads(ev->validation, 0, NULL) : NULL;
        if (ev->validation && !a->validation) /* our own JSON: only memory can fail it */
            accum_oom(a);
        break;
    case LG_GEN_EV_ERROR:
        a->done = true;
        a->failed = true;
        a->status = ev->status;
        snprintf(a->message, sizeof a->message, "%s", ev->message ? ev->message : "error");
        break;
    }
}

/* Appends v to a (taking v's reference); on failure frees a and returns NULL. */
static json_t *append_or_free(json_t *a, json_t *v)
{
    if (json_array_append_new(a, v) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *bytes_json(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n && a; i++)
        a = append_or_free(a, json_integer((unsigned char)s[i]));
    return a;
}

/* NULL without logprobs, and when one entry could not be built (callers tell the two apart
 * by ev->n_logprobs): a list missing an entry would misalign tokens and logprobs. */
json_t *srv_logprobs_json(const struct lg_gen_event *ev)
{
    if (!ev->logprobs || ev->n_logprobs <= 0)
        return NULL;
    json_t *arr = json_array();
    for (int32_t i = 0; i < ev->n_logprobs && arr; i++) {
        const struct lg_gen_logprob *lp = &ev->logprobs[i];
        json_t *top = json_array();
        for (int32_t k = 0; k < lp->n_top && top; k++)
            top = append_or_free(
                top, json_pack("{s:o, s:f, s:o}", "token",
                               lg_json_text(lp->top[k].token, lp->top[k].n_token), "logprob",
                               (double)lp->top[k].logprob, "bytes",
                               bytes_json(lp->top[k].token, lp->top[k].n_token)));
        arr = append_or_free(arr, json_pack("{s:o, s:f, s:o, s:o}", "token",
                                            lg_json_text(lp->token, lp->n_token), "logprob",
                                            (double)lp->logprob, "bytes",
                                            bytes_json(lp->token, lp->n_token),
                                            "top_logprobs", top));
    }
    return arr;
}

void srv_accum_free(struct srv_accum *a)
{
    json_decref(a->logprobs);
    a->logprobs = NULL;
    json_decref(a->validation);
    a->validation = NULL;
    srv_buf_free(&a->content);
    srv_buf_free(&a->reasoning);
    for (int32_t i = 0; i < a->n_calls; i++) {
        free(a->calls[i].name);
        srv_buf_free(&a->calls[i].args);
    }
    a->n_calls = 0;
}

/* ---- shared pieces ---- */

static const char *oai_finish(enum lg_finish f, bool had_calls)
{
    if (f == SRV_FINISH_CONTENT_FILTER) /* an output policy rule ended the answer */
        return "content_filter";
    switch (f) {
    case LG_FINISH_LENGTH: return "length";
    case LG_FINISH_TOOL_CALLS: return "tool_calls";
    default: return had_calls ? "tool_calls" : "stop";
    }
}

/* A validation report naming a failed tool call (engine.c job_done): the turn did not end
 * with usable calls, so finish_reason stays the engine's ("stop" / "length"), even if a
 * streamed call had already started. */
static bool tool_call_failed(const json_t *validation)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(validation, "errors"), i, e) {
        const char *path = json_string_value(json_object_get(e, "path"));
        if (path && !strncmp(path, "/tool_calls", 11))
            return true;
    }
    return false;
}

static json_t *usage_json(const struct lg_gen_usage *u)
{
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)u->prompt_tokens,
                     "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                     (json_int_t)u->prompt_tokens + u->completion_tokens,
                     "prompt_tokens_details", "cached_tokens", (json_int_t)u->cached_tokens);
}

static double per_second(int64_t n, int64_t ns)
{
    return ns > 0 ? (double)n * 1e9 / (double)ns : 0.0;
}

/* llama.cpp's "timings" extension. */
static json_t *timings_json(const struct lg_gen_usage *u, const struct lg_gen_timings *t)
{
    return json_pack("{s:I, s:I, s:f, s:f, s:I, s:f, s:f}", "cache_n",
                     (json_int_t)u->cached_tokens, "prompt_n", (json_int_t)t->prompt_eval_n,
                     "prompt_ms", (double)t->prompt_ns / 1e6, "prompt_per_second",
                     per_second(t->prompt_eval_n, t->prompt_ns), "predicted_n",
                     (json_int_t)u->completion_tokens, "predicted_ms", (double)t->eval_ns / 1e6,
                     "predicted_per_second", per_second(u->completion_tokens, t->eval_ns));
}

json_t *srv_openai_error(int http_status, const char *message)
{
    const char *type;
    if (http_status == 401)
        type = "authentication_error";
    else if (http_status == 403)
        type = "permission_error";
    else if (http_status == 429)
        type = "rate_limit_error";
    else if (http_status == 501)
        type = "not_implemented_error";
    else if (http_status == 503)
        type = "unavailable_error";
    else if (http_status >= 500)
        type = "server_error";
    else
        type = "invalid_request_error";
    /* "field.path: what is wrong" → param = field.path */
    json_t *param = json_null();
    const char *colon = strstr(message, ": ");
    if (colon && colon > message && (size_t)(colon - message) < LG_JSON_PATH_MAX &&
        !memchr(message, ' ', (size_t)(colon - message)))
        param = json_stringn(message, (size_t)(colon - message));
    json_t *msg = lg_json_text(message, strlen(message));
    return json_pack("{s:{s:o, s:s, s:o, s:I}}", "error", "message", msg, "type", type,
                     "param", param, "code", (json_int_t)http_status);
}

/* ---- SSE writer ---- */

void srv_sse_init(struct srv_sse *w, bool chat, const char *id, int64_t created,
                  const char *model, bool include_usage, bool reasoning_as_reasoning)
{
    memset(w, 0, sizeof *w);
    w->chat = chat;
    snprintf(w->id, sizeof w->id, "%s", id);
    w->created = created;
    snprintf(w->model, sizeof w->model, "%s", model);
    w->include_usage = include_usage;
    w->reasoning_as_reasoning = reasoning_as_reasoning;
}

static json_t *chunk_head(const struct srv_sse *w)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", w->id, "object",
                     w->chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)w->created, "model", w->model);
}

static void sse_send(struct srv_buf *out, json_t *chunk_steal)
{
    if (!chunk_steal) {
        out->oom = true;
        return;
    }
    srv_buf_puts(out, "data: ");
    srv_buf_put_json(out, chunk_steal);
    srv_buf_puts(out, "\n\n");
    json_decref(chunk_steal);
}

/* Sends chunk_steal when ok (nothing lost building it), else marks out as failed. */
static void sse_send_ok(struct srv_buf *out, json_t *chunk_steal, bool ok)
{
    if (!ok) {
        json_decref(chunk_steal);
        out->oom = true;
        return;
    }
    sse_send(out, chunk_steal);
}

/* A chunk with one choice: chat {"index":0,"delta":delta,"finish_reason":fr} or completion
 * {"index":0,"text":text,"logprobs":null,"finish_reason":fr}. */
static void sse_choice_lp(struct srv_sse *w, struct srv_buf *out, json_t *delta_steal,
                          json_t *text_steal, const char *finish, json_t *logprobs_steal)
{
    json_t *c = chunk_head(w);
    json_t *choice;
    json_t *fr = finish ? json_string(finish) : json_null();
    if (w->chat && logprobs_steal)
        choice = json_pack("{s:i, s:o, s:{s:o}, s:o}", "index", 0, "delta", delta_steal,
                           "logprobs", "content", logprobs_steal, "finish_reason", fr);
    else if (w->chat)
        choice = json_pack("{s:i, s:o, s:o}", "index", 0, "delta", delta_steal,
                           "finish_reason", fr);
    else
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "text", text_steal, "logprobs",
                           "finish_reason", fr);
    bool ok = c && choice;
    if (!ok) {
        json_decref(c);
        json_decref(choice);
        out->oom = true;
        return;
    }
    set_new(c, "choices", json_pack("[o]", choice), &ok);
    sse_send_ok(out, c, ok);
}

static void sse_choice(struct srv_sse *w, struct srv_buf *out, json_t *delta_steal,
                       json_t *text_steal, const char *finish)
{
    sse_choice_lp(w, out, delta_steal, text_steal, finish, NULL);
}

void srv_sse_begin(struct srv_sse *w, struct srv_buf *out)
{
    if (w->chat)
        sse_choice(w, out, json_pack("{s:s, s:n}", "role", "assistant", "content"), NULL, NULL);
}

void srv_sse_event(struct srv_sse *w, const struct lg_gen_event *ev, struct srv_buf *out)
{
    if (w->finished)
        return;
    switch (ev->kind) {
    case LG_GEN_EV_REASONING:
        if (!w->chat || ev->n_text == 0)
            return; /* a raw completion has no thought channel to report */
        sse_choice(w, out,
                   json_pack("{s:o}", w->reasoning_as_reasoning ? "reasoning"
                                                                : "reasoning_content",
                             lg_json_text(ev->text, ev->n_text)),
                   NULL, NULL);
        return;
    case LG_GEN_EV_CONTENT:
        if (ev->n_text == 0)
            return;
        if (w->chat) {
            json_t *lp = srv_logprobs_json(ev);
            if (!lp && ev->logprobs && ev->n_logprobs > 0) {
                out->oom = true;
                return;
            }
            sse_choice_lp(w, out,
                          json_pack("{s:o}", "content", lg_json_text(ev->text, ev->n_text)),
                          NULL, NULL, lp);
        } else
            sse_choice(w, out, NULL, lg_json_text(ev->text, ev->n_text), NULL);
        return;
    case LG_GEN_EV_TOOL_CALL: {
        if (!w->chat || ev->tool_index < 0 || ev->tool_index > w->n_calls_started)
            return;
        json_t *tc;
        json_t *args = lg_json_text(ev->text, ev->n_text);
        if (ev->tool_index == w->n_calls_started) {
            char idbuf[64];
            const char *id = ev->tool_id;
            if (!id || !id[0]) {
                snprintf(idbuf, sizeof idbuf, "call_%d", (int)ev->tool_index);
                id = idbuf;
            }
            tc = json_pack("{s:I, s:s, s:s, s:{s:s, s:o}}", "index", (json_int_t)ev->tool_index,
                           "id", id, "type", "function", "function", "name",
                           ev->tool_name ? ev->tool_name : "", "arguments", args);
            w->n_calls_started++;
        } else {
            tc = json_pack("{s:I, s:{s:o}}", "index", (json_int_t)ev->tool_index, "function",
                           "arguments", args);
        }
        sse_choice(w, out, json_pack("{s:[o]}", "tool_calls", tc), NULL, NULL);
        return;
    }
    case LG_GEN_EV_DONE: {
        json_t *val = ev->validation ? json_loads(ev->validation, 0, NULL) : NULL;
        if (ev->validation && !val) { /* our own JSON: only memory can fail it */
            out->oom = true;
            w->finished = true;
            return;
        }
        const char *fr = oai_finish(ev->finish, w->n_calls_started > 0 && !tool_call_failed(val));
        if (w->chat)
            sse_choice(w, out, json_object(), NULL, fr);
        else
            sse_choice(w, out, NULL, json_string(""), fr);
        if (val) { /* extension: the answer checked against the requested format */
            json_t *c = chunk_head(w);
            bool ok = c != NULL;
            set_new(c, "choices", json_array(), &ok);
            set_ref(c, "validation", val, &ok);
            sse_send_ok(out, c, ok);
            json_decref(val);
        }
        if (w->include_usage) {
            json_t *c = chunk_head(w);
            bool ok = c != NULL;
            set_new(c, "choices", json_array(), &ok);
            set_new(c, "usage", usage_json(&ev->usage), &ok);
            sse_send_ok(out, c, ok);
        }
        srv_buf_puts(out, "data: [DONE]\n\n");
        w->finished = true;
        return;
    }
    case LG_GEN_EV_ERROR: {
        int http = (int)srv_status_http(ev->status);
        sse_send(out, srv_openai_error(http, ev->message ? ev->message : "generation failed"));
        srv_buf_puts(out, "data: [DONE]\n\n");
        w->finished = true;
        return;
    }
    }
}

/* ---- non-streamed bodies ---- */

json_t *srv_openai_body(const struct srv_sse *w, const struct srv_accum *a)
{
    json_t *body = json_pack("{s:s, s:s, s:I, s:s}", "id", w->id, "object",
                             w->chat ? "chat.completion" : "text_completion", "created",
                             (json_int_t)w->created, "model", w->model);
    if (!body)
        return NULL;
    const char *fr = oai_finish(a->finish, a->n_calls > 0 && !tool_call_failed(a->validation));
    json_t *choice;
    bool ok = true;
    if (w->chat) {
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        if (a->content.n == 0 && a->n_calls > 0)
            set_new(msg, "content", json_null(), &ok);
        else
            set_new(msg, "content", lg_json_text(a->content.p, a->content.n), &ok);
        if (a->reasoning.n)
            set_new(msg, w->reasoning_as_reasoning ? "reasoning" : "reasoning_content",
                    lg_json_text(a->reasoning.p, a->reasoning.n), &ok);
        if (a->n_calls > 0) {
            json_t *calls = json_array();
            for (int32_t i = 0; i < a->n_calls && calls; i++) {
                const struct srv_tool_call *tc = &a->calls[i];
                calls = append_or_free(
                    calls, json_pack("{s:s, s:s, s:{s:s, s:o}}", "id", tc->id, "type",
                                     "function", "function", "name", tc->name ? tc->name : "",
                                     "arguments", lg_json_text(tc->args.p, tc->args.n)));
            }
            set_new(msg, "tool_calls", calls, &ok);
        }
        choice = a->logprobs
                     ? json_pack("{s:i, s:o, s:{s:O}, s:s}", "index", 0, "message", msg,
                                 "logprobs", "content", a->logprobs, "finish_reason", fr)
                     : json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "message", msg,
                                 "logprobs", "finish_reason", fr);
    } else {
        choice = json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "text",
                           lg_json_text(a->content.p, a->content.n), "logprobs",
                           "finish_reason", fr);
    }
    set_new(body, "choices", json_pack("[o]", choice), &ok);
    set_new(body, "usage", usage_json(&a->usage), &ok);
    set_new(body, "timings", timings_json(&a->usage, &a->timings), &ok);
    if (a->validation)
        set_ref(body, "validation", a->validation, &ok);
    if (!ok) {
        json_decref(body);
        return NULL;
    }
    return body;
}
