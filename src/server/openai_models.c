/* openai_models.c: GET /v1/models and GET /v1/models/{id} in OpenAI's list format, plus a
 * "digest" field (sha256 of the blob, for store models) so clients can tell which exact
 * weights answer (hardening.md LLM04). */
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "server/server.h"

/* NULL when it cannot be built whole (srv_reply_json answers NULL with 503 "out of
 * memory": a listing never goes out with an entry or a digest silently missing). */
static json_t *model_obj(const struct srv_model_info *m)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "id", m->name, "object", "model", "created",
                          (json_int_t)m->modified, "owned_by", "localgemma");
    if (o && m->digest[0] &&
        json_object_set_new(o, "digest", json_sprintf("sha256:%s", m->digest)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int srv_route_openai_models(struct srv_conn *c)
{
    struct srv_model_info *v;
    size_t n;
    struct lg_err err = {0};
    if (srv_models_list(srv_conn_config(c), &v, &n, &err) != LG_OK)
        return srv_reply_error(c, 500, "%s", err.msg);
    json_t *data = json_array();
    for (size_t i = 0; i < n && data; i++)
        if (json_array_append_new(data, model_obj(&v[i])) != 0) {
            json_decref(data);
            data = NULL;
        }
    free(v);
    return srv_reply_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

int srv_route_openai_model(struct srv_conn *c)
{
    const char *id = srv_conn_url(c) + strlen("/v1/models/");
    struct srv_model_info m;
    struct lg_err err = {0};
    if (srv_models_find(srv_conn_config(c), id, &m, &err) != LG_OK)
        return srv_reply_error(c, 404, "model: '%.200s' not found", id);
    return srv_reply_json(c, 200, model_obj(&m));
}
