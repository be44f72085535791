/* ollama_chat.c: POST /api/chat — Ollama's chat request → struct lg_gen_req; NDJSON
 * streaming by default, one object with "stream": false. An empty messages list only loads
 * the model (or unloads it with keep_alive 0). Tool-call arguments are objects here, not
 * strings as in OpenAI. Extensions: tool_choice and reasoning_budget, as on the OpenAI route. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"

/* Fields both Ollama routes share: stream, options, format, keep_alive, think, logprobs. */
enum lg_status srv_get_ollama_common(const json_t *root, struct lg_gen_req *r,
                                     struct lg_err *err)
{
    enum lg_status st;
    bool stream = true;
    if ((st = srv_opt_bool(root, "", "stream", &stream, err)) != LG_OK)
        return st;
    r->stream = stream;
    if ((st = srv_get_ollama_options(root, r, err)) != LG_OK ||
        (st = srv_get_ollama_format(root, r, err)) != LG_OK ||
        (st = srv_get_keep_alive(root, r, err)) != LG_OK ||
        (st = srv_get_ollama_think(root, r, err)) != LG_OK)
        return st;
    bool logprobs = false, b;
    if ((st = srv_opt_bool(root, "", "logprobs", &logprobs, err)) != LG_OK)
        return st;
    int64_t top = 0;
    if ((st = srv_opt_int(root, "", "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, NULL,
                          err)) != LG_OK)
        return st;
    r->top_logprobs = logprobs ? (int32_t)top : -1;
    /* accepted, type-checked, no effect here */
    if ((st = srv_opt_bool(root, "", "truncate", &b, err)) != LG_OK ||
        (st = srv_opt_bool(root, "", "shift", &b, err)) != LG_OK)
        return st;
    return LG_OK;
}

/* Extension (Ollama has no tool_choice): "tool_choice" as on /v1/chat/completions —
 * "auto" (default), "none", "required" or {"type": "function", "function": {"name": "f"}}
 * with f declared. The official client cannot send it; agent frameworks that talk HTTP can. */
static enum lg_status get_tool_choice(const json_t *root, struct lg_gen_req *r,
                                      struct lg_err *err)
{
    const json_t *tc = json_object_get(root, "tool_choice");
    if (!tc || json_is_null(tc))
        return LG_OK;
    if (json_is_string(tc)) {
        const char *v = json_string_value(tc);
        if (!strcmp(v, "none")) {
            json_decref(r->tools);
            r->tools = NULL;
        } else if (!strcmp(v, "required")) {
            r->tool_choice = LG_TOOL_CHOICE_REQUIRED;
        } else if (strcmp(v, "auto") != 0) {
            return lg_err_set(err, LG_ERR_FORMAT,
                              "tool_choice: expected \"auto\", \"none\", \"required\" or an object");
        }
        return LG_OK;
    }
    if (!json_is_object(tc))
        return lg_err_set(err, LG_ERR_FORMAT, "tool_choice: expected string or object, got %s",
                          lg_json_type_name(tc));
    const char *nm = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
    bool declared = false;
    size_t k;
    json_t *t;
    json_array_foreach(r->tools, k, t) {
        const char *tn = json_string_value(json_object_get(t, "name"));
        declared |= nm && tn && !strcmp(tn, nm);
    }
    if (!nm || !declared || strlen(nm) >= sizeof r->tool_choice_name)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "tool_choice.function.name: %s",
                          nm ? "not one of the declared tools" : "missing");
    r->tool_choice = LG_TOOL_CHOICE_NAMED;
    snprintf(r->tool_choice_name, sizeof r->tool_choice_name, "%s", nm);
    return LG_OK;
}

enum lg_status srv_parse_ollama_chat(const char *body, size_t n, size_t max_bytes,
                                     struct srv_parsed *out, struct lg_err *err)
{
    srv_parsed_init(out, LG_API_OLLAMA_CHAT);
    struct lg_gen_req *r = &out->req;
    json_t *root;
    enum lg_status st = lg_json_parse(body, n, max_bytes, LG_JSON_MAX_DEPTH, true, &root, err);
    if (st != LG_OK)
        return st;
    if ((st = srv_get_model(root, r, err)) != LG_OK)
        goto done;
    r->messages = json_array();
    if (!r->messages) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_t *msgs;
    st = lg_json_get_arr(root, "", "messages", SRV_MAX_MESSAGES, &msgs, err);
    if (st == LG_OK) {
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m) {
            char p[LG_JSON_PATH_MAX];
            lg_json_path_index(p, "messages", i);
            if ((st = srv_canon_message(m, p, true, r->messages, err)) != LG_OK)
                goto done;
        }
    } else if (st != LG_ERR_NOT_FOUND) {
        goto done;
    }
    if ((st = srv_get_tools(root, r, err)) != LG_OK)
        goto done;
    if ((st = get_tool_choice(root, r, err)) != LG_OK)
        goto done;
    if ((st = srv_get_ollama_common(root, r, err)) != LG_OK)
        goto done;
    /* extension, as on /v1/chat/completions: max thought tokens, -1 = server default */
    int64_t budget = -1;
    st = srv_opt_int(root, "", "reasoning_budget", -1, INT32_MAX, &budget, NULL, err);
    r->think_budget = (int32_t)budget;
done:
    json_decref(root);
    return st;
}

int srv_route_ollama_chat(struct srv_conn *c)
{
    size_t n;
    const char *body = srv_conn_body(c, &n);
    struct srv_parsed *p = malloc(sizeof *p);
    if (!p)
        return srv_reply_error(c, 500, "out of memory");
    struct lg_err err = {0};
    enum lg_status st =
        srv_parse_ollama_chat(body, n, srv_conn_config(c)->max_body_bytes, p, &err);
    if (st != LG_OK) {
        srv_parsed_free(p);
        free(p);
        return srv_reply_error(c, srv_status_http(st), "%s", err.msg);
    }
    return srv_generate(c, p);
}
