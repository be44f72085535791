/* ollama_chat.c: POST /api/chat — Ollama's chat request → struct lg_gen_req; NDJSON
 * streaming by default, one object with "stream": false. An empty messages list only loads
 * the model (or unloads it with keep_alive 0). Tool-call arguments are objects here, not
 * strings as in OpenAI. */
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
    st = srv_get_ollama_common(root, r, err);
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
