/* openai_chat.c: POST /v1/chat/completions — body → struct lg_gen_req (canonical messages),
 * then srv_generate() streams SSE chunks or returns one chat.completion object.
 *
 * Accepted beyond the OpenAI fields (api.md §2.1): top_k, min_p, typical_p, repeat_penalty,
 * repeat_last_n, chat_template_kwargs.enable_thinking, reasoning_effort / reasoning.effort,
 * response_format {type:"json_object", schema}, reasoning_budget (max thought tokens for this
 * request, -1 = the server's --reasoning-budget; the thought channel is then closed cleanly and
 * the answer follows). Unknown top-level fields are ignored, as
 * OpenAI clients send many (user, metadata, store, ...). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"

static enum lg_status parse_reasoning(const json_t *root, struct lg_gen_req *r,
                                      struct lg_err *err)
{
    const char *effort = NULL;
    enum lg_status st = lg_json_get_str(root, "", "reasoning_effort", 32, &effort, NULL, err);
    if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        return st;
    const char *epath = "reasoning_effort";
    json_t *ro;
    st = lg_json_get_obj(root, "", "reasoning", &ro, err);
    if (st == LG_OK) {
        st = lg_json_get_str(ro, "reasoning", "effort", 32, &effort, NULL, err);
        if (st != LG_OK && st != LG_ERR_NOT_FOUND)
            return st;
        epath = "reasoning.effort";
    } else if (st != LG_ERR_NOT_FOUND) {
        return st;
    }
    if (effort) {
        if (!strcmp(effort, "none"))
            r->think = LG_THINK_OFF;
        else if (!strcmp(effort, "minimal") || !strcmp(effort, "low") ||
                 !strcmp(effort, "medium") || !strcmp(effort, "high") ||
                 !strcmp(effort, "max"))
            r->think = LG_THINK_ON;
        else
            return lg_err_set(err, LG_ERR_FORMAT, "%s: expected none, minimal, low, medium or "
                              "high", epath);
    }
    json_t *kw;
    st = lg_json_get_obj(root, "", "chat_template_kwargs", &kw, err);
    if (st == LG_OK) {
        bool on;
        st = lg_json_get_bool(kw, "chat_template_kwargs", "enable_thinking", &on, err);
        if (st == LG_OK)
            r->think = on ? LG_THINK_ON : LG_THINK_OFF;
        else if (st != LG_ERR_NOT_FOUND)
            return st;
    } else if (st != LG_ERR_NOT_FOUND) {
        return st;
    }
    return LG_OK;
}

enum lg_status srv_parse_openai_chat(const char *body, size_t n, size_t max_bytes,
                                     struct srv_parsed *out, struct lg_err *err)
{
    srv_parsed_init(out, LG_API_OPENAI_CHAT);
    struct lg_gen_req *r = &out->req;
    json_t *root;
    enum lg_status st = lg_json_parse(body, n, max_bytes, LG_JSON_MAX_DEPTH, true, &root, err);
    if (st != LG_OK)
        return st;
    json_t *msgs;
    if ((st = srv_get_model(root, r, err)) != LG_OK)
        goto done;
    if ((st = lg_json_get_arr(root, "", "messages", SRV_MAX_MESSAGES, &msgs, err)) != LG_OK)
        goto done;
    if (json_array_size(msgs) == 0) {
        st = lg_err_set(err, LG_ERR_FORMAT, "messages: must not be empty");
        goto done;
    }
    r->messages = json_array();
    if (!r->messages) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char p[LG_JSON_PATH_MAX];
        lg_json_path_index(p, "messages", i);
        if ((st = srv_canon_message(m, p, false, r->messages, err)) != LG_OK)
            goto done;
    }
    if ((st = srv_get_tools(root, r, err)) != LG_OK)
        goto done;
    json_t *tc = json_object_get(root, "tool_choice");
    if (tc && json_is_string(tc) && !strcmp(json_string_value(tc), "none")) {
        json_decref(r->tools);
        r->tools = NULL;
    } else if (tc && json_is_string(tc) && !strcmp(json_string_value(tc), "required")) {
        r->tool_choice = LG_TOOL_CHOICE_REQUIRED;
    } else if (tc && json_is_object(tc)) {
        /* {"type": "function", "function": {"name": "f"}}: f must be declared */
        const char *nm = json_string_value(json_object_get(json_object_get(tc, "function"),
                                                           "name"));
        bool declared = false;
        size_t k;
        json_t *t;
        json_array_foreach(r->tools, k, t) {
            const char *tn = json_string_value(json_object_get(t, "name"));
            declared |= nm && tn && !strcmp(tn, nm);
        }
        if (!nm || !declared || strlen(nm) >= sizeof r->tool_choice_name) {
            st = lg_err_set(err, LG_ERR_INVALID_ARG, "tool_choice.function.name: %s",
                            nm ? "not one of the declared tools" : "missing");
            goto done;
        }
        r->tool_choice = LG_TOOL_CHOICE_NAMED;
        snprintf(r->tool_choice_name, sizeof r->tool_choice_name, "%s", nm);
    } else if (tc && !json_is_null(tc) && !json_is_string(tc) && !json_is_object(tc)) {
        st = lg_err_set(err, LG_ERR_FORMAT, "tool_choice: expected string or object, got %s",
                        lg_json_type_name(tc));
        goto done;
    }
    bool ptc = true;
    if ((st = srv_opt_bool(root, "", "parallel_tool_calls", &ptc, err)) != LG_OK)
        goto done;
    r->no_parallel_tool_calls = !ptc;
    if ((st = srv_get_openai_format(root, r, err)) != LG_OK)
        goto done;
    if ((st = srv_get_openai_sampling(root, r, err)) != LG_OK)
        goto done;
    json_t *so;
    st = lg_json_get_obj(root, "", "stream_options", &so, err);
    if (st == LG_OK)
        st = srv_opt_bool(so, "stream_options", "include_usage", &out->include_usage, err);
    if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        goto done;
    bool logprobs = false;
    if ((st = srv_opt_bool(root, "", "logprobs", &logprobs, err)) != LG_OK)
        goto done;
    int64_t top = 0;
    if ((st = srv_opt_int(root, "", "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, NULL,
                          err)) != LG_OK)
        goto done;
    r->top_logprobs = logprobs ? (int32_t)top : -1;
    if ((st = parse_reasoning(root, r, err)) != LG_OK)
        goto done;
    int64_t budget = -1;
    if ((st = srv_opt_int(root, "", "reasoning_budget", -1, INT32_MAX, &budget, NULL, err)) !=
        LG_OK)
        goto done;
    r->think_budget = (int32_t)budget;
    st = LG_OK;
done:
    json_decref(root);
    return st;
}

int srv_route_openai_chat(struct srv_conn *c)
{
    size_t n;
    const char *body = srv_conn_body(c, &n);
    struct srv_parsed *p = malloc(sizeof *p);
    if (!p)
        return srv_reply_error(c, 500, "out of memory");
    struct lg_err err = {0};
    enum lg_status st =
        srv_parse_openai_chat(body, n, srv_conn_config(c)->max_body_bytes, p, &err);
    if (st != LG_OK) {
        srv_parsed_free(p);
        free(p);
        return srv_reply_error(c, srv_status_http(st), "%s", err.msg);
    }
    return srv_generate(c, p);
}
