/* ollama_generate.c: POST /api/generate — prompt (+ system, suffix) wrapped in the model's
 * chat template, or tokenized as is with "raw": true. An empty prompt only loads the model
 * (unloads with keep_alive 0). A custom "template" and "images" are refused (400) rather
 * than silently ignored; the deprecated "context" array is ignored. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"

static enum lg_status opt_text(const json_t *root, const char *key, char **dst,
                               struct lg_err *err)
{
    const char *s;
    size_t n;
    enum lg_status st = lg_json_get_str(root, "", key, SIZE_MAX, &s, &n, err);
    if (st == LG_ERR_NOT_FOUND)
        return LG_OK;
    if (st != LG_OK)
        return st;
    *dst = malloc(n + 1);
    if (!*dst)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    memcpy(*dst, s, n + 1);
    return LG_OK;
}

enum lg_status srv_parse_ollama_generate(const char *body, size_t n, size_t max_bytes,
                                         struct srv_parsed *out, struct lg_err *err)
{
    json_t *root;
    enum lg_status st =
        srv_parse_begin(body, n, max_bytes, LG_API_OLLAMA_GENERATE, out, &root, err);
    if (st != LG_OK)
        return st;
    struct lg_gen_req *r = &out->req;
    if ((st = opt_text(root, "prompt", &r->prompt, err)) != LG_OK ||
        (st = opt_text(root, "system", &r->system, err)) != LG_OK ||
        (st = opt_text(root, "suffix", &r->suffix, err)) != LG_OK)
        goto done;
    if (!r->prompt && !(r->prompt = calloc(1, 1))) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (r->suffix && !r->suffix[0]) {
        free(r->suffix);
        r->suffix = NULL;
    }
    const char *tmpl;
    st = lg_json_get_str(root, "", "template", SIZE_MAX, &tmpl, NULL, err);
    if (st == LG_OK && tmpl[0]) {
        st = lg_err_set(err, LG_ERR_UNSUPPORTED, "template: custom templates are not "
                        "supported; use \"raw\": true with a pre-rendered prompt");
        goto done;
    } else if (st != LG_OK && st != LG_ERR_NOT_FOUND) {
        goto done;
    }
    bool raw = false;
    if ((st = srv_opt_bool(root, "", "raw", &raw, err)) != LG_OK)
        goto done;
    if (raw)
        r->kind = LG_PROMPT_RAW;
    json_t *imgs = json_object_get(root, "images");
    if (imgs && !json_is_null(imgs) && (!json_is_array(imgs) || json_array_size(imgs) > 0)) {
        st = lg_err_set(err, LG_ERR_UNSUPPORTED, "images: image input is not supported by "
                        "this build");
        goto done;
    }
    json_t *ctx = json_object_get(root, "context");
    if (ctx && !json_is_null(ctx) && !json_is_array(ctx)) {
        st = lg_err_set(err, LG_ERR_FORMAT, "context: expected array, got %s",
                        lg_json_type_name(ctx));
        goto done;
    }
    st = srv_get_ollama_common(root, r, err);
done:
    json_decref(root);
    return st;
}

int srv_route_ollama_generate(struct srv_conn *c)
{
    return srv_route_generation(c, srv_parse_ollama_generate);
}
