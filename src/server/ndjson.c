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

json_t *srv_parse_tool_args(const struct srv_buf *args)
{
    if (args->n == 0)
        return json_object();
    json_t *v = NULL;
    if (lg_json_parse(args->p, args->n, args->n, LG_JSON_MAX_DEPTH, true, &v, NULL) != LG_OK)
        return NULL;
    return v;
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

/* [{"id":..., "function":{"index":i,"name":...,"arguments":{...}}}] for calls [from, to). */
static json_t *ollama_calls(const struct srv_accum *a, int32_t from, int32_t to)
{
    json_t *arr = json_array();
    for (int32_t i = from; i < to && arr; i++) {
        const struct srv_tool_call *tc = &a->calls[i];
        json_t *args = srv_parse_tool_args(&tc->args);
        if (!args) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, json_pack("{s:s, s:{s:I, s:s, s:o}}", "id", tc->id,
                                             "function", "index", (json_int_t)i, "name",
                                             tc->name ? tc->name : "", "arguments", args));
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
    if (!w->chat || upto <= w->n_calls_sent)
        return;
    json_t *calls = ollama_calls(&w->calls, w->n_calls_sent, upto);
    if (!calls) {
        nd_error(w, out, "the model produced tool-call arguments that are not a JSON object");
        return;
    }
    w->n_calls_sent = upto;
    json_t *l = line_head(w);
    json_object_set_new(l, "message", json_pack("{s:s, s:s, s:o}", "role", "assistant",
                                                "content", "", "tool_calls", calls));
    json_object_set_new(l, "done", json_false());
    nd_send(out, l);
}

static void add_metrics(json_t *l, const struct lg_gen_event *ev)
{
    json_object_set_new(l, "total_duration", json_integer(ev->timings.total_ns));
    json_object_set_new(l, "load_duration", json_integer(ev->timings.load_ns));
    json_object_set_new(l, "prompt_eval_count", json_integer(ev->timings.prompt_eval_n));
    json_object_set_new(l, "prompt_eval_duration", json_integer(ev->timings.prompt_ns));
    json_object_set_new(l, "eval_count", json_integer(ev->usage.completion_tokens));
    json_object_set_new(l, "eval_duration", json_integer(ev->timings.eval_ns));
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
        if (w->chat) {
            json_t *m = json_pack("{s:s, s:o}", "role", "assistant", "content",
                                  think ? json_string("") : json_incref(text));
            if (think)
                json_object_set(m, "thinking", text);
            json_object_set_new(l, "message", m);
        } else {
            json_object_set_new(l, "response", think ? json_string("") : json_incref(text));
            if (think)
                json_object_set(l, "thinking", text);
        }
        json_decref(text);
        json_object_set_new(l, "done", json_false());
        json_t *lp = think ? NULL : srv_logprobs_json(ev);
        if (lp)
            json_object_set_new(l, "logprobs", lp);
        nd_send(out, l);
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
        if (w->chat)
            json_object_set_new(l, "message",
                                json_pack("{s:s, s:s}", "role", "assistant", "content", ""));
        else
            json_object_set_new(l, "response", json_string(""));
        json_object_set_new(l, "done", json_true());
        json_object_set_new(l, "done_reason", json_string(ollama_done_reason(ev->finish)));
        add_metrics(l, ev);
        json_t *val = ev->validation ? json_loads(ev->validation, 0, NULL) : NULL;
        if (val) /* extension: the answer checked against the requested format */
            json_object_set_new(l, "validation", val);
        nd_send(out, l);
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
    if (w->chat) {
        json_t *m = json_pack("{s:s, s:o}", "role", "assistant", "content", content);
        if (a->reasoning.n)
            json_object_set_new(m, "thinking", lg_json_text(a->reasoning.p, a->reasoning.n));
        if (a->n_calls > 0) {
            json_t *calls = ollama_calls(a, 0, a->n_calls);
            if (!calls) {
                json_decref(m);
                json_decref(l);
                return NULL;
            }
            json_object_set_new(m, "tool_calls", calls);
        }
        json_object_set_new(l, "message", m);
    } else {
        json_object_set_new(l, "response", content);
        if (a->reasoning.n)
            json_object_set_new(l, "thinking", lg_json_text(a->reasoning.p, a->reasoning.n));
    }
    json_object_set_new(l, "done", json_true());
    json_object_set_new(l, "done_reason", json_string(ollama_done_reason(a->finish)));
    if (a->logprobs)
        json_object_set(l, "logprobs", a->logprobs);
    struct lg_gen_event ev = {.kind = LG_GEN_EV_DONE, .usage = a->usage, .timings = a->timings};
    add_metrics(l, &ev);
    if (a->validation)
        json_object_set(l, "validation", a->validation);
    return l;
}
