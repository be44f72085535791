/* ndjson.c: engine events → Ollama's wire format: one JSON object per line with model,
 * created_at (RFC 3339, nanoseconds), message (chat) or response (generate), done; the final
 * line adds done_reason and the nanosecond metrics. Tool calls carry their arguments as an
 * object (not a string, unlike OpenAI), so each call is sent whole once its last fragment
 * has arrived. An engine error becomes {"error": "..."} and ends the stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json/json.h"
#include "server/server.h"

void srv_format_time(int64_t unix_ns, char *out, size_t n)
{
    time_t secs = (time_t)(unix_ns / 1000000000);
    long frac = (long)(unix_ns % 1000000000);
    if (frac < 0) {
        frac += 1000000000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32], fr[16] = "";
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) {
        snprintf(fr, sizeof fr, ".%09ld", frac);
        size_t len = strlen(fr);
        while (len > 1 && fr[len - 1] == '0')
            fr[--len] = '\0';
    }
    snprintf(out, n, "%s%sZ", base, fr);
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A call's arguments text → object in *out: LG_ERR_NOMEM apart from not-an-object
 * (LG_ERR_FORMAT and the like). */
static enum lg_status parse_tool_args(const struct srv_buf *args, json_t **out)
{
    *out = NULL;
    if (args->oom)
        return LG_ERR_NOMEM;
    if (args->n == 0) {
        *out = json_object();
        return *out ? LG_OK : LG_ERR_NOMEM;
    }
    return lg_json_parse(args->p, args->n, args->n, LG_JSON_MAX_DEPTH, true, out, NULL);
}

json_t *srv_parse_tool_args(const struct srv_buf *args)
{
    json_t *v;
    return parse_tool_args(args, &v) == LG_OK ? v : NULL;
}

void srv_ndjson_init(struct srv_ndjson *w, bool chat, const char *model,
                     int64_t (*clock_ns)(void))
{
    memset(w, 0, sizeof *w);
    w->chat = chat;
    snprintf(w->model, sizeof w->model, "%s", model);
    w->clock_ns = clock_ns ? clock_ns : wall_ns;
}

void srv_ndjson_free(struct srv_ndjson *w)
{
    srv_accum_free(&w->calls);
}

static json_t *line_head(const struct srv_ndjson *w)
{
    char ts[48];
    srv_format_time(w->clock_ns(), ts, sizeof ts);
    return json_pack("{s:s, s:s}", "model", w->model, "created_at", ts);
}

/* Jansson's setters drop the field when its value (or the key's slot) cannot be allocated
 * and return -1: every line is built with these, which clear *ok instead, and a line that
 * lost a field is never sent (the stream ends with an error, the body is a 500). set_new
 * takes v's reference, also on failure; set_ref does not (json_object_set). */
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

static void nd_send(struct srv_buf *out, json_t *line_steal)
{
    if (!line_steal) {
        out->oom = true;
        return;
    }
    srv_buf_put_json(out, line_steal);
    srv_buf_puts(out, "\n");
    json_decref(line_steal);
}

/* Sends line_steal when ok, else marks out as failed; takes the line's reference. */
static void nd_send_ok(struct srv_buf *out, json_t *line_steal, bool ok)
{
    if (!ok) {
        json_decref(line_steal);
        out->oom = true;
        return;
    }
    nd_send(out, line_steal);
}

static const char *ollama_done_reason(enum lg_finish f)
{
    if (f == SRV_FINISH_CONTENT_FILTER) /* an output policy rule ended the answer */
        return "content_filter";
    switch (f) {
    case LG_FINISH_LENGTH: return "length";
    case LG_FINISH_LOAD: return "load";
    case LG_FINISH_UNLOAD: return "unload";
    default: return "stop";
    }
}

/* [{"id":..., "function":{"index":i,"name":...,"arguments":{...}}}] for calls [from, to);
 * NULL when a call's arguments are not a JSON object (*bad_args set) or out of memory. */
static json_t *ollama_calls(const struct srv_accum *a, int32_t from, int32_t to,
                            bool *bad_args)
{
    *bad_args = false;
    json_t *arr = json_array();
    for (int32_t i = from; i < to && arr; i++) {
        const struct srv_tool_call *tc = &a->calls[i];
        json_t *args;
        enum lg_status st = parse_tool_args(&tc->args, &args);
        if (st != LG_OK) {
            *bad_args = st != LG_ERR_NOMEM;
            json_decref(arr);
            return NULL;
        }
        if (json_array_append_new(arr, json_pack("{s:s, s:{s:I, s:s, s:o}}", "id", tc->id,
                                                 "function", "index", (json_int_t)i, "name",
                                                 tc->name ? tc->name : "", "arguments",
                                                 args)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static void nd_error(struct srv_ndjson *w, struct srv_buf *out, const char *msg)
{
    nd_send(out, json_pack("{s:o}", "error", lg_json_text(msg, strlen(msg))));
    w->finished = true;
}

/* Sends every complete, unsent tool call (all of them when final). */
static void flush_calls(struct srv_ndjson *w, struct srv_buf *out, bool final)
{
    int32_t upto = final ? w->calls.n_calls : w->calls.n_calls - 1;
    if (w->chat && w->calls.failed) { /* a call's name or arguments could not be stored */
        out->oom = true;
        return;
    }
    if (!w->chat || upto <= w->n_calls_sent)
        return;
    bool bad_args;
    json_t *calls = ollama_calls(&w->calls, w->n_calls_sent, upto, &bad_args);
    if (!calls) {
        if (bad_args)
            nd_error(w, out, "the model produced tool-call arguments that are not a JSON object");
        else
            out->oom = true;
        return;
    }
    w->n_calls_sent = upto;
    json_t *l = line_head(w);
    bool ok = true;
    set_new(l, "message", json_pack("{s:s, s:s, s:o}", "role", "assistant", "content", "",
                                    "tool_calls", calls), &ok);
    set_new(l, "done", json_false(), &ok);
    nd_send_ok(out, l, ok);
}

static void add_metrics(json_t *l, const struct lg_gen_event *ev, bool *ok)
{
    set_new(l, "total_duration", json_integer(ev->timings.total_ns), ok);
    set_new(l, "load_duration", json_integer(ev->timings.load_ns), ok);
    set_new(l, "prompt_eval_count", json_integer(ev->timings.prompt_eval_n), ok);
    set_new(l, "prompt_eval_duration", json_integer(ev->timings.prompt_ns), ok);
    set_new(l, "eval_count", json_integer(ev->usage.completion_tokens), ok);
    set_new(l, "eval_duration", json_integer(ev->timings.eval_ns), ok);
}

void srv_ndjson_event(struct srv_ndjson *w, const struct lg_gen_event *ev, struct srv_buf *out)
{
    if (w->finished)
        return;
    switch (ev->kind) {
    case LG_GEN_EV_REASONING:
    case LG_GEN_EV_CONTENT: {
        if (ev->n_text == 0)
            return;
        bool think = ev->kind == LG_GEN_EV_REASONING;
        json_t *l = line_head(w);
        json_t *text = lg_json_text(ev->text, ev->n_text);
        if (!l || !text) {
            json_decref(l);
            json_decref(text);
            out->oom = true;
            return;
        }
        bool ok = true;
        if (w->chat) {
            json_t *m = json_pack("{s:s, s:o}", "role", "assistant", "content",
                                  think ? json_string("") : json_incref(text));
            if (think)
                set_ref(m, "thinking", text, &ok);
            set_new(l, "message", m, &ok);
        } else {
            set_new(l, "response", think ? json_string("") : json_incref(text), &ok);
            if (think)
                set_ref(l, "thinking", text, &ok);
        }
        json_decref(text);
        set_new(l, "done", json_false(), &ok);
        json_t *lp = think ? NULL : srv_logprobs_json(ev);
        if (lp)
            set_new(l, "logprobs", lp, &ok);
        else if (!think && ev->logprobs && ev->n_logprobs > 0)
            ok = false; /* requested, but could not be built */
        nd_send_ok(out, l, ok);
        return;
    }
    case LG_GEN_EV_TOOL_CALL:
        if (!w->chat)
            return;
        srv_accum_event(&w->calls, ev);
        flush_calls(w, out, false);
        return;
    case LG_GEN_EV_DONE: {
        flush_calls(w, out, true);
        if (w->finished)
            return;
        json_t *l = line_head(w);
        bool ok = true;
        if (w->chat)
            set_new(l, "message", json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
                    &ok);
        else
            set_new(l, "response", json_string(""), &ok);
        set_new(l, "done", json_true(), &ok);
        set_new(l, "done_reason", json_string(ollama_done_reason(ev->finish)), &ok);
        add_metrics(l, ev, &ok);
        if (ev->validation) /* extension: the answer checked against the requested format */
            set_new(l, "validation", json_loads(ev->validation, 0, NULL), &ok);
        nd_send_ok(out, l, ok);
        w->finished = true;
        return;
    }
    case LG_GEN_EV_ERROR:
        nd_error(w, out, ev->message ? ev->message : "generation failed");
        return;
    }
}

json_t *srv_ollama_body(const struct srv_ndjson *w, const struct srv_accum *a)
{
    json_t *l = line_head(w);
    if (!l)
        return NULL;
    json_t *content = lg_json_text(a->content.p, a->content.n);
    bool ok = true;
    if (w->chat) {
        json_t *m = json_pack("{s:s, s:o}", "role", "assistant", "content", content);
        if (a->reasoning.n)
            set_new(m, "thinking", lg_json_text(a->reasoning.p, a->reasoning.n), &ok);
        bool bad_args;
        if (a->n_calls > 0) /* NULL also for arguments that are not an object */
            set_new(m, "tool_calls", ollama_calls(a, 0, a->n_calls, &bad_args), &ok);
        set_new(l, "message", m, &ok);
    } else {
        set_new(l, "response", content, &ok);
        if (a->reasoning.n)
            set_new(l, "thinking", lg_json_text(a->reasoning.p, a->reasoning.n), &ok);
    }
    set_new(l, "done", json_true(), &ok);
    set_new(l, "done_reason", json_string(ollama_done_reason(a->finish)), &ok);
    if (a->logprobs)
        set_ref(l, "logprobs", a->logprobs, &ok);
    struct lg_gen_event ev = {.kind = LG_GEN_EV_DONE, .usage = a->usage, .timings = a->timings};
    add_metrics(l, &ev, &ok);
    if (a->validation)
        set_ref(l, "validation", a->validation, &ok);
    if (!ok) {
        json_decref(l);
        return NULL;
    }
    return l;
}
