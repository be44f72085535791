/* ollama_pull.c: POST /api/pull — download a GGUF from a URL into the model store, with
 * Ollama's progress stream.
 *
 * Request: {"model": NAME | URL, "url"?: URL, "sha256"?: HEX, "stream"?: true,
 * "insecure"?: bool (accepted, unused)}; "name" is accepted for "model" (older clients).
 * There is no registry to reach, so the file comes from an http(s) URL: "url" with "model"
 * naming it in the store, or "model" being the URL itself (the name is then derived as
 * `localgemma pull URL` does: general.basename/size_label, else the file name). A registry
 * name without a URL answers 501 (not implemented); malformed fields answer 400.
 *
 * Reply (stream, the default): NDJSON lines as Ollama sends them (api.md §2.2)
 *   {"status":"pulling manifest"}
 *   {"status":"pulling 1a2b3c4d5e6f","digest":"sha256:…","total":N,"completed":K}  (sha256
 *      given) or {"status":"downloading","total":N,"completed":K}  (digest not known yet)
 *   {"status":"verifying sha256 digest"}
 *   {"status":"writing manifest"}
 *   {"status":"success","model":NAME,"digest":"sha256:…"}
 * A failure after the stream started is one {"error":"…"} line (status stays 200, as in
 * Ollama). stream:false: one object, the success line or {"error"} with 404 (the origin
 * answered 404), 400 (bad URL/name, not a GGUF, sha256 mismatch), 409 (the same URL is
 * being pulled), 502 (network / HTTP errors) or 500.
 *
 * The transfer is lg_store_pull() (resume, sha256, atomic publish) on a worker thread
 * (stream.c), with its own store handle opened from the server store's root so it never
 * outlives a handle the server closes. Progress lines are throttled to ~10 per second.
 * The pull stops within about a second (lg_store_pull's cancel hook polling
 * srv_task_cancelled) when the client hangs up, streamed or not, and when the server stops
 * (the stream then ends with {"error":"server shutting down"}). Nothing is published then,
 * and the partial download stays resumable by the next pull of the same URL. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"
#include "store/store.h"

enum {
    PULL_MAX_ACTIVE = 4,          /* concurrent pulls per process */
    PULL_URL_MAX = 4095,
    PULL_EMIT_INTERVAL_MS = 100
};

static atomic_int pulls_active;

struct pull_job {
    char root[LG_STORE_PATH_MAX];
    char url[PULL_URL_MAX + 1];
    char sha[LG_SHA256_HEX_LEN + 1]; /* "" = not given */
    struct lg_store_name name;
    bool have_name;
    struct srv_task *t;
    int64_t last_emit_ns;
    bool sent_verifying, sent_manifest;
    long low_speed_time_s;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void emit(struct pull_job *j, json_t *line)
{
    if (!line)
        return;
    struct srv_buf b = {0};
    srv_buf_put_json(&b, line);
    srv_buf_put(&b, "\n", 1);
    json_decref(line);
    if (!b.oom)
        srv_task_write(j->t, b.p, b.n);
    srv_buf_free(&b);
}

static void emit_status(struct pull_job *j, const char *status)
{
    emit(j, json_pack("{s:s}", "status", status));
}

/* The client hung up or the server is stopping: nobody will see the result. */
static bool on_cancel(void *user)
{
    struct pull_job *j = user;
    return srv_task_cancelled(j->t);
}

static void on_progress(void *user, uint64_t done, uint64_t total)
{
    struct pull_job *j = user;
    int64_t t = now_ns();
    bool last = total > 0 && done >= total;
    if (!last && j->last_emit_ns && t - j->last_emit_ns < PULL_EMIT_INTERVAL_MS * 1000000LL)
        return;
    j->last_emit_ns = t;
    json_t *line;
    if (j->sha[0]) {
        char status[32], digest[80];
        snprintf(status, sizeof status, "pulling %.12s", j->sha);
        snprintf(digest, sizeof digest, "sha256:%s", j->sha);
        line = json_pack("{s:s, s:s, s:I, s:I}", "status", status, "digest", digest, "total",
                         (json_int_t)total, "completed", (json_int_t)done);
    } else {
        line = json_pack("{s:s, s:I, s:I}", "status", "downloading", "total",
                         (json_int_t)total, "completed", (json_int_t)done);
    }
    emit(j, line);
    if (last && !j->sent_verifying) {
        j->sent_verifying = true;
        emit_status(j, "verifying sha256 digest");
    }
}

/* The download is complete and its sha256 checked: the full GGUF reader must accept it,
 * and it gives the facts (and the default name). */
static enum lg_status on_inspect(void *user, const char *path, struct lg_store_manifest *m,
                                 struct lg_err *err)
{
    struct pull_job *j = user;
    if (!j->sent_verifying) {
        j->sent_verifying = true;
        emit_status(j, "verifying sha256 digest");
    }
    enum lg_status st = lg_store_gguf_facts(path, &m->gguf, err);
    if (st != LG_OK)
        return st;
    if (!j->have_name && !lg_store_default_name(j->url, &m->gguf, &m->name))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "cannot derive a model name from %s; give "
                          "it in \"model\" and the URL in \"url\"", j->url);
    j->sent_manifest = true;
    emit_status(j, "writing manifest");
    return LG_OK;
}

static unsigned pull_http_status(enum lg_status st)
{
    switch (st) {
    case LG_ERR_NOT_FOUND: return 404;
    case LG_ERR_INVALID_ARG:
    case LG_ERR_FORMAT:
    case LG_ERR_VERSION:
    case LG_ERR_UNSUPPORTED:
    case LG_ERR_RANGE: return 400;
    case LG_ERR_BUSY: return 409;
    case LG_ERR_IO: return 502;
    case LG_ERR_NOMEM: return 503;
    default: return 500;
    }
}

static void pull_main(struct srv_task *t, void *user)
{
    struct pull_job *j = user;
    j->t = t;
    emit_status(j, "pulling manifest");
    struct lg_err err = {0};
    struct lg_store *s = NULL;
    struct lg_store_manifest m;
    memset(&m, 0, sizeof m);
    if (j->have_name)
        m.name = j->name;
    enum lg_status st = lg_store_open(j->root, &s, &err);
    if (st == LG_OK) {
        struct lg_store_pull_opts o;
        memset(&o, 0, sizeof o);
        o.url = j->url;
        o.sha256 = j->sha[0] ? j->sha : NULL;
        o.low_speed_time_s = j->low_speed_time_s;
        o.progress = on_progress;
        o.user = j;
        o.inspect = on_inspect;
        o.inspect_user = j;
        o.cancel = on_cancel;
        o.cancel_user = j;
        st = lg_store_pull(s, &o, &m, NULL, &err);
        lg_store_close(s);
    }
    if (st != LG_OK) {
        const char *msg = err.msg[0] ? err.msg : "pull failed";
        emit(j, json_pack("{s:o}", "error", lg_json_text(msg, strlen(msg))));
        srv_task_set_result(t, pull_http_status(st),
                            json_pack("{s:o}", "error", lg_json_text(msg, strlen(msg))));
        return;
    }
    if (!j->sent_manifest)
        emit_status(j, "writing manifest");
    char name[LG_STORE_NAME_MAX + 1], digest[80];
    lg_store_format_name(&m.name, name, sizeof name);
    snprintf(digest, sizeof digest, "sha256:%s", m.hex);
    emit(j, json_pack("{s:s, s:s, s:s}", "status", "success", "model", name, "digest", digest));
    srv_task_set_result(t, 200, json_pack("{s:s, s:s, s:s}", "status", "success", "model", name,
                                          "digest", digest));
}

static void pull_job_free(void *user)
{
    free(user);
    atomic_fetch_sub(&pulls_active, 1);
}

static bool is_url(const char *s)
{
    return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

/* The body's fields, borrowed from its JSON (srv_body_fields). */
struct pull_fields {
    const char *model, *url, *sha;
    size_t model_len, url_len;
    bool stream, insecure;
};

/* Fills j from the fields: which is the URL, the store name, the digest. On error err names
 * the field. */
static enum lg_status parse_pull(const struct pull_fields *f, struct pull_job *j,
                                 struct lg_err *err)
{
    const char *model = f->model, *url = f->url, *sha = f->sha;
    size_t model_len = f->model_len, url_len = f->url_len;
    if (!model && !url)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "model: required");
    if (model && !url && is_url(model)) {
        url = model;
        url_len = model_len;
        model = NULL;
    }
    if (!url) /* a registry pull: not bad input, just not something this server can do */
        return lg_err_set(err, LG_ERR_UNSUPPORTED,
                          "url: required: this server cannot reach a model registry; give the "
                          "GGUF's http(s) URL in \"url\" (or as \"model\")");
    const char *field = url == model ? "model" : "url";
    if (!is_url(url))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "%s: must start with http:// or https://",
                          field);
    for (size_t i = 0; i < url_len; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "%s: spaces and control characters "
                              "must be percent-encoded", field);
    memcpy(j->url, url, url_len + 1);
    if (model) {
        if (model_len == 0)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "model: must not be empty");
        struct lg_err e2 = {0};
        if (lg_store_parse_name(model, model_len, &j->name, &e2) != LG_OK)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "model: %s", e2.msg);
        j->have_name = true;
    }
    if (sha) {
        char tmp[LG_STORE_DIGEST_LEN + 1];
        const char *hex = !strncmp(sha, "sha256:", 7) ? sha + 7 : sha;
        char lower[LG_SHA256_HEX_LEN + 1] = {0};
        size_t n = strlen(hex);
        for (size_t i = 0; i < n && i < LG_SHA256_HEX_LEN; i++)
            lower[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] + 32 : hex[i]);
        snprintf(tmp, sizeof tmp, "sha256:%s", lower);
        if (n != LG_SHA256_HEX_LEN || lg_store_parse_digest(tmp, j->sha, NULL) != LG_OK)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "sha256: expected 64 hex digits");
    }
    return LG_OK;
}

int srv_route_ollama_pull(struct srv_conn *c)
{
    bool had;
    int ret = srv_task_resume(c, &had); /* called again after a deferred pull ended */
    if (had)
        return ret;
    const struct lg_server_config *cfg = srv_conn_config(c);
    struct pull_fields f = {.stream = true};
    const struct srv_field fields[] = {
        {"model", "name", SRV_FIELD_STR, false, PULL_URL_MAX, &f.model, &f.model_len},
        {"url", NULL, SRV_FIELD_STR, false, PULL_URL_MAX, &f.url, &f.url_len},
        {"sha256", NULL, SRV_FIELD_STR, false, 80, &f.sha, NULL},
        {"stream", NULL, SRV_FIELD_BOOL, false, 0, &f.stream, NULL},
        {"insecure", NULL, SRV_FIELD_BOOL, false, 0, &f.insecure, NULL}, /* accepted, unused */
    };
    json_t *root;
    int reply;
    if (!srv_body_fields(c, fields, sizeof fields / sizeof fields[0], &root, &reply))
        return reply;
    struct lg_err err = {0};
    enum lg_status st;
    struct pull_job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(root);
        return srv_reply_error(c, 503, "out of memory");
    }
    st = parse_pull(&f, j, &err);
    bool stream = f.stream;
    json_decref(root);
    if (st != LG_OK) {
        free(j);
        return srv_reply_error(c, st == LG_ERR_UNSUPPORTED ? 501 : srv_status_http(st), "%s",
                               err.msg);
    }
    if (!cfg->store) {
        free(j);
        return srv_reply_error(c, 501, "this server has no model store; use `localgemma pull`");
    }
    snprintf(j->root, sizeof j->root, "%s", lg_store_root(cfg->store));
    const char *lst = getenv("LG_PULL_LOW_SPEED_TIME"); /* tests shorten the stall timeout */
    if (lst)
        j->low_speed_time_s = atol(lst);
    if (atomic_fetch_add(&pulls_active, 1) >= PULL_MAX_ACTIVE) {
        atomic_fetch_sub(&pulls_active, 1);
        free(j);
        return srv_reply_error(c, 503, "too many pulls in progress (at most %d)",
                               PULL_MAX_ACTIVE);
    }
    return srv_task_start(c, stream, "application/x-ndjson",
                          "{\"error\":\"server shutting down\"}\n", pull_main, j,
                          pull_job_free);
}
