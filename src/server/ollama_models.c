/* ollama_models.c: GET /api/tags, POST /api/show, GET /api/ps, DELETE /api/delete,
 * and the model listing /v1/models shares (POST /api/pull is in ollama_pull.c).
 *
 * Models come from the store (src/store manifests) and from --model arguments that are plain
 * GGUF paths. /api/show reads the GGUF header of the resolved file (metadata only, through
 * the bounds-checked reader). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "json/json.h"
#include "server/server.h"
#include "store/store.h"

/* Appends v to a (taking v's reference); on failure frees a and returns NULL, so a listing
 * never goes out with an entry lost to a failed allocation (srv_reply_json answers NULL with
 * 503 "out of memory"). */
static json_t *append_or_free(json_t *a, json_t *v)
{
    if (json_array_append_new(a, v) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* json_object_set_new that frees o and returns NULL on failure (same purpose). */
static json_t *set_or_free(json_t *o, const char *key, json_t *v)
{
    if (json_object_set_new(o, key, v) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* "MOSTLY_Q4_K_M" → "Q4_K_M", as Ollama shows quantization levels. */
static void set_quant(struct srv_model_info *o, uint32_t file_type)
{
    const char *q = lg_gguf_file_type_name(file_type);
    if (q && !strncmp(q, "MOSTLY_", 7))
        q += 7;
    snprintf(o->quant, sizeof o->quant, "%s", q ? q : "");
}

static void from_manifest(const struct lg_store_manifest *m, struct srv_model_info *o)
{
    memset(o, 0, sizeof *o);
    lg_store_format_name(&m->name, o->name, sizeof o->name);
    snprintf(o->digest, sizeof o->digest, "%s", m->hex);
    o->size = m->size;
    o->modified = m->created;
    snprintf(o->arch, sizeof o->arch, "%s", m->gguf.architecture);
    snprintf(o->size_label, sizeof o->size_label, "%s", m->gguf.size_label);
    if (m->gguf.file_type)
        set_quant(o, m->gguf.file_type);
    o->context_length = m->gguf.context_length;
}

static bool from_path(const char *path, struct srv_model_info *o)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", path);
    o->size = (uint64_t)st.st_size;
    o->modified = (int64_t)st.st_mtime;
    /* facts from the GGUF header (metadata only; the tensor data is not touched) */
    struct lg_gguf *g;
    if (lg_gguf_open(path, &g, NULL) != LG_OK)
        return true;
    struct lg_str s;
    uint32_t ft;
    if (lg_gguf_get_str(g, "general.architecture", &s, NULL) == LG_OK)
        snprintf(o->arch, sizeof o->arch, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);
    if (lg_gguf_get_str(g, "general.size_label", &s, NULL) == LG_OK)
        snprintf(o->size_label, sizeof o->size_label, "%.*s", (int)(s.len < 31 ? s.len : 31),
                 s.ptr);
    if (lg_gguf_get_u32(g, "general.file_type", &ft, NULL) == LG_OK)
        set_quant(o, ft);
    lg_gguf_close(g);
    return true;
}

enum lg_status srv_models_list(const struct lg_server_config *cfg, struct srv_model_info **out,
                               size_t *n, struct lg_err *err)
{
    *out = NULL;
    *n = 0;
    struct lg_store_manifest *ms = NULL;
    size_t n_ms = 0;
    if (cfg->store) {
        enum lg_status st = lg_store_list(cfg->store, &ms, &n_ms, NULL, err);
        if (st != LG_OK)
            return st;
    }
    struct srv_model_info *v = calloc(n_ms + cfg->n_models + 1, sizeof *v);
    if (!v) {
        free(ms);
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n_ms; i++)
        from_manifest(&ms[i], &v[k++]);
    free(ms);
    for (size_t i = 0; i < cfg->n_models; i++) {
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = !strcmp(v[j].name, cfg->models[i]);
        if (!dup && from_path(cfg->models[i], &v[k]))
            k++;
    }
    *out = v;
    *n = k;
    return LG_OK;
}

enum lg_status srv_models_find(const struct lg_server_config *cfg, const char *name,
                               struct srv_model_info *out, struct lg_err *err)
{
    struct lg_store_name sn;
    if (cfg->store && lg_store_parse_name(name, strlen(name), &sn, NULL) == LG_OK) {
        struct lg_store_manifest m;
        if (lg_store_manifest_read(cfg->store, &sn, &m, NULL) == LG_OK) {
            from_manifest(&m, out);
            return LG_OK;
        }
    }
    for (size_t i = 0; i < cfg->n_models; i++)
        if (!strcmp(cfg->models[i], name) && from_path(name, out))
            return LG_OK;
    return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%.200s' not found", name);
}

static json_t *details_json(const struct srv_model_info *m)
{
    json_t *fam = m->arch[0] ? json_pack("[s]", m->arch) : json_null();
    return json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "parent_model", "", "format", "gguf",
                     "family", m->arch, "families", fam, "parameter_size", m->size_label,
                     "quantization_level", m->quant);
}

int srv_route_ollama_tags(struct srv_conn *c)
{
    struct srv_model_info *v;
    size_t n;
    struct lg_err err = {0};
    if (srv_models_list(srv_conn_config(c), &v, &n, &err) != LG_OK)
        return srv_reply_error(c, 500, "%s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr; i++) {
        char ts[48];
        srv_format_time(v[i].modified * 1000000000LL, ts, sizeof ts);
        arr = append_or_free(arr, json_pack("{s:s, s:s, s:s, s:I, s:s, s:o}", "name",
                                            v[i].name, "model", v[i].name, "modified_at", ts,
                                            "size", (json_int_t)v[i].size, "digest",
                                            v[i].digest, "details", details_json(&v[i])));
    }
    free(v);
    return srv_reply_json(c, 200, json_pack("{s:o}", "models", arr));
}

/* Reads a model's GGUF header keys into model_info (scalars and strings; arrays skipped);
 * NULL when it cannot be built whole. */
static json_t *model_info(const char *path, json_t **template_out)
{
    struct lg_gguf *g;
    json_t *info = json_object();
    if (!info || lg_gguf_open(path, &g, NULL) != LG_OK)
        return info;
    static const char *const keys[] = {"general.architecture", "general.name",
                                       "general.basename", "general.size_label",
                                       "general.file_type", "general.parameter_count",
                                       "general.quantization_version"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        struct lg_str s;
        int64_t iv;
        if (info && lg_gguf_get_str(g, keys[i], &s, NULL) == LG_OK)
            info = set_or_free(info, keys[i], lg_json_text(s.ptr, s.len));
        else if (info && lg_gguf_get_i64(g, keys[i], &iv, NULL) == LG_OK)
            info = set_or_free(info, keys[i], json_integer(iv));
    }
    struct lg_str arch;
    if (lg_gguf_get_str(g, "general.architecture", &arch, NULL) == LG_OK && arch.len < 48) {
        static const char *const suffixes[] = {"context_length", "embedding_length",
                                               "block_count", "attention.head_count",
                                               "attention.head_count_kv",
                                               "attention.sliding_window"};
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
            char key[128];
            snprintf(key, sizeof key, "%.*s.%s", (int)arch.len, arch.ptr, suffixes[i]);
            int64_t iv;
            if (info && lg_gguf_get_i64(g, key, &iv, NULL) == LG_OK)
                info = set_or_free(info, key, json_integer(iv));
        }
    }
    struct lg_str tmpl;
    if (info && lg_gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL) == LG_OK) {
        *template_out = lg_json_text(tmpl.ptr, tmpl.len);
        if (!*template_out) {
            json_decref(info);
            info = NULL;
        }
    }
    lg_gguf_close(g);
    return info;
}

int srv_route_ollama_show(struct srv_conn *c)
{
    const struct lg_server_config *cfg = srv_conn_config(c);
    const char *name;
    bool verbose = false;
    const struct srv_field fields[] = {
        {"model", "name", SRV_FIELD_STR, true, LG_GEN_MODEL_NAME_MAX - 1, &name, NULL},
        {"verbose", NULL, SRV_FIELD_BOOL, false, 0, &verbose, NULL},
    };
    json_t *root;
    int reply;
    if (!srv_body_fields(c, fields, sizeof fields / sizeof fields[0], &root, &reply))
        return reply;
    struct lg_err err = {0};
    enum lg_status st;
    struct srv_model_info m;
    st = srv_models_find(cfg, name, &m, &err);
    json_t *tmpl = NULL, *info = NULL;
    if (st == LG_OK) {
        char path[4096];
        if (cfg->store ? lg_store_resolve(cfg->store, name, false, path, sizeof path, NULL) ==
                             LG_OK
                       : (snprintf(path, sizeof path, "%s", name), true))
            info = model_info(path, &tmpl);
        else
            info = json_object();
    }
    json_decref(root);
    if (st != LG_OK) {
        json_decref(tmpl);
        return srv_reply_error(c, 404, "%s", err.msg);
    }
    char ts[48];
    srv_format_time(m.modified * 1000000000LL, ts, sizeof ts);
    json_t *caps = json_pack("[s]", "completion");
    json_t *b = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:s}", "modelfile", "", "parameters",
                          "", "template", tmpl ? tmpl : json_string(""), "details",
                          details_json(&m), "model_info", info, "capabilities", caps,
                          "modified_at", ts);
    return srv_reply_json(c, 200, b);
}

int srv_route_ollama_ps(struct srv_conn *c)
{
    void *self;
    const struct lg_engine_ops *eng = srv_conn_engine(c, &self);
    json_t *arr = json_array();
    if (eng) {
        struct lg_loaded_model lm[LG_SERVER_MAX_MODELS];
        size_t n = eng->list_loaded(self, lm, LG_SERVER_MAX_MODELS);
        if (n > LG_SERVER_MAX_MODELS)
            n = LG_SERVER_MAX_MODELS;
        for (size_t i = 0; i < n; i++) {
            char ts[48] = "0001-01-01T00:00:00Z"; /* Go's zero time: never expires */
            if (lm[i].expires_at_ms >= 0)
                srv_format_time(lm[i].expires_at_ms * 1000000LL, ts, sizeof ts);
            struct srv_model_info mi;
            memset(&mi, 0, sizeof mi);
            srv_models_find(srv_conn_config(c), lm[i].name, &mi, NULL);
            if (arr)
                arr = append_or_free(
                    arr, json_pack("{s:s, s:s, s:I, s:s, s:o, s:s, s:I, s:i}", "name",
                                   lm[i].name, "model", lm[i].name, "size",
                                   (json_int_t)lm[i].size_bytes, "digest", lm[i].digest,
                                   "details", details_json(&mi), "expires_at", ts, "size_vram",
                                   (json_int_t)0, "context_length", (int)lm[i].context_length));
        }
    }
    return srv_reply_json(c, 200, json_pack("{s:o}", "models", arr));
}

int srv_route_ollama_delete(struct srv_conn *c)
{
    const struct lg_server_config *cfg = srv_conn_config(c);
    const char *name;
    size_t len;
    const struct srv_field fields[] = {
        {"model", "name", SRV_FIELD_STR, true, LG_GEN_MODEL_NAME_MAX - 1, &name, &len},
    };
    json_t *root;
    int reply;
    if (!srv_body_fields(c, fields, sizeof fields / sizeof fields[0], &root, &reply))
        return reply;
    struct lg_err err = {0};
    enum lg_status st;
    if (!cfg->store) {
        json_decref(root);
        return srv_reply_error(c, 501, "this server has no model store; use `localgemma rm`");
    }
    struct lg_store_name sn;
    st = lg_store_parse_name(name, len, &sn, &err);
    if (st == LG_OK)
        st = lg_store_remove(cfg->store, &sn, NULL, &err);
    json_decref(root);
    if (st != LG_OK)
        return srv_reply_error(c, st == LG_ERR_INVALID_ARG ? 400 : srv_status_http(st), "%s",
                               err.msg);
    return srv_reply_text(c, 200, "application/json; charset=utf-8", "", 0);
}
