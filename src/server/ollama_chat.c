/* ollama_chat.c: POST /api/chat — Ollama's chat request → struct lg_gen_req; NDJSON
 * streaming by default, one object with "stream": false. An empty messages list only loads
 * the model (or unloads it with keep_alive 0). Tool-call arguments are objects here, not
 * strings as in OpenAI. Extensions: tool_choice and reasoning_budget, as on the OpenAI route. */
#include <stdlib.h>

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
    bool b;
    if ((st = srv_get_logprobs(root, r, err)) != LG_OK)
        return st;
    /* accepted, type-checked, no effect here */
    if ((st = srv_opt_bool(root, "", "truncate", &b, err)) != LG_OK ||
        (st = srv_opt_bool(root, "", "shift", &b, err)) != LG_OK)
        return st;
    return LG_OK;
}

enum lg_status srv_parse_ollama_chat(const char *body, size_t n, size_t max_bytes,
                                     struct srv_parsed *out, struct lg_err *err)
{
    json_t *root;
    enum lg_status st =
        srv_parse_begin(body, n, max_bytes, LG_API_OLLAMA_CHAT, out, &root, err);
    if (st != LG_OK)
        return st;
    struct lg_gen_req *r = &out->req;
    /* tool_choice and reasoning_budget: extensions, as on /v1/chat/completions (Ollama
     * has neither; its official client cannot send them, agent frameworks that talk HTTP
     * can) */
    if ((st = srv_get_messages(root, true, r, err)) != LG_OK ||
        (st = srv_get_tools(root, r, err)) != LG_OK ||
        (st = srv_get_tool_choice(root, true, r, err)) != LG_OK ||
        (st = srv_get_ollama_common(root, r, err)) != LG_OK)
        goto done;
    st = srv_get_reasoning_budget(root, r, err);
done:
    json_decref(root);
    return st;
}

int srv_route_ollama_chat(struct srv_conn *c)
{
    return srv_route_generation(c, srv_parse_ollama_chat);
}
