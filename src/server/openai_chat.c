/* openai_chat.c: POST /v1/chat/completions — body → struct lg_gen_req (canonical messages),
 * then srv_generate() streams SSE chunks or returns one chat.completion object.
 *
 * Accepted beyond the OpenAI fields (api.md §2.1): top_k, min_p, typical_p, repeat_penalty,
 * repeat_last_n, chat_template_kwargs.enable_thinking, reasoning_effort / reasoning.effort,
 * response_format {type:"json_object", schema}, reasoning_budget (max thought tokens for this
 * request, -1 = the server's --reasoning-budget; the thought channel is then closed cleanly and
 * the answer follows). Unknown top-level fields are ignored, as
 * OpenAI clients send many (user, metadata, store, ...). */
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
    json_t *root;
    enum lg_status st =
        srv_parse_begin(body, n, max_bytes, LG_API_OPENAI_CHAT, out, &root, err);
    if (st != LG_OK)
        return st;
    struct lg_gen_req *r = &out->req;
    if ((st = srv_get_messages(root, false, r, err)) != LG_OK ||
        (st = srv_get_tools(root, r, err)) != LG_OK ||
        (st = srv_get_tool_choice(root, false, r, err)) != LG_OK)
        goto done;
    bool ptc = true;
    if ((st = srv_opt_bool(root, "", "parallel_tool_calls", &ptc, err)) != LG_OK)
        goto done;
    r->no_parallel_tool_calls = !ptc;
    if ((st = srv_get_openai_format(root, r, err)) != LG_OK)
        goto done;
    if ((st = srv_get_openai_sampling(root, r, err)) != LG_OK)
        goto done;
    if ((st = srv_get_stream_options(root, out, err)) != LG_OK ||
        (st = srv_get_logprobs(root, r, err)) != LG_OK ||
        (st = parse_reasoning(root, r, err)) != LG_OK)
        goto done;
    st = srv_get_reasoning_budget(root, r, err);
done:
    json_decref(root);
    return st;
}

int srv_route_openai_chat(struct srv_conn *c)
{
    return srv_route_generation(c, srv_parse_openai_chat);
}
