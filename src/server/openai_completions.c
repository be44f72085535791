/* openai_completions.c: POST /v1/completions — a raw prompt (no chat template, as llama.cpp
 * and OpenAI's legacy endpoint do), SSE "text_completion" chunks or one object.
 * Token-array prompts, echo, best_of > 1 and n > 1 are refused with 400 naming the field. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"

enum lg_status srv_parse_openai_completions(const char *body, size_t n, size_t max_bytes,
                                            struct srv_parsed *out, struct lg_err *err)
{
    json_t *root;
    enum lg_status st =
        srv_parse_begin(body, n, max_bytes, LG_API_OPENAI_COMPLETIONS, out, &root, err);
    if (st != LG_OK)
        return st;
    struct lg_gen_req *r = &out->req;
    json_t *pv;
    if ((st = lg_json_get_any(root, "", "prompt", &pv, err)) != LG_OK)
        goto done;
    if (json_is_array(pv)) {
        if (json_array_size(pv) != 1 || !json_is_string(json_array_get(pv, 0))) {
            st = lg_err_set(err, LG_ERR_UNSUPPORTED, "prompt: only a string or an array of "
                            "one string is supported");
            goto done;
        }
        pv = json_array_get(pv, 0);
    }
    if (!json_is_string(pv)) {
        st = lg_err_set(err, LG_ERR_FORMAT, "prompt: expected string, got %s",
                        lg_json_type_name(pv));
        goto done;
    }
    r->prompt = strdup(json_string_value(pv));
    const char *suffix;
    st = lg_json_get_str(root, "", "suffix", SIZE_MAX, &suffix, NULL, err);
    if (st == LG_OK && suffix[0])
        r->suffix = strdup(suffix);
    else if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        goto done;
    if (!r->prompt || (st == LG_OK && suffix[0] && !r->suffix)) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = srv_get_openai_sampling(root, r, err)) != LG_OK)
        goto done;
    bool echo = false;
    if ((st = srv_opt_bool(root, "", "echo", &echo, err)) != LG_OK)
        goto done;
    if (echo) {
        st = lg_err_set(err, LG_ERR_UNSUPPORTED, "echo: not supported");
        goto done;
    }
    int64_t v;
    if ((st = srv_opt_int(root, "", "best_of", 1, 1, &v, NULL, err)) != LG_OK)
        goto done;
    bool have;
    if ((st = srv_opt_int(root, "", "logprobs", 0, 5, &v, &have, err)) != LG_OK)
        goto done;
    r->top_logprobs = have ? (int32_t)v : -1;
    st = srv_get_stream_options(root, out, err);
done:
    json_decref(root);
    return st;
}

int srv_route_openai_completions(struct srv_conn *c)
{
    return srv_route_generation(c, srv_parse_openai_completions);
}
