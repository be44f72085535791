/* request.c: the parts of request parsing shared by the OpenAI and Ollama routes: byte
 * buffer, request init/free, durations, stop strings, tools, options, messages → canonical
 * form (engine.h). Pure functions of their JSON input: no MHD, no globals (fuzzed).
 *
 * Every numeric field is range-checked and every error names the field (hardening.md G8). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server.h"

/* ---- byte buffer ---- */

void srv_buf_put(struct srv_buf *b, const void *data, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (n > SIZE_MAX - b->n - 1) {
        b->oom = true;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap = cap > SIZE_MAX / 2 ? b->n + n + 1 : cap * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void srv_buf_puts(struct srv_buf *b, const char *s)
{
    srv_buf_put(b, s, strlen(s));
}

/* JSON text allows U+2028, U+2029 and U+0085 unescaped, but line readers that split on every
 * Unicode line break (Python's str.splitlines, used by httpx.iter_lines and so by the ollama
 * client for NDJSON) cut such a line in two. They can only occur inside strings, so escaping
 * them is always valid. */
static int buf_dump_cb(const char *s, size_t n, void *data)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;
        size_t len = 0;
        if ((unsigned char)s[i] == 0xE2 && n - i >= 3 && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)) {
            esc = (unsigned char)s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
            len = 3;
        } else if ((unsigned char)s[i] == 0xC2 && n - i >= 2 && (unsigned char)s[i + 1] == 0x85) {
            esc = "\\u0085";
            len = 2;
        }
        if (!esc)
            continue;
        srv_buf_put(data, s + from, i - from);
        srv_buf_put(data, esc, 6);
        i += len - 1;
        from = i + 1;
    }
    srv_buf_put(data, s + from, n - from);
    return 0;
}

void srv_buf_put_json(struct srv_buf *b, const json_t *v)
{
    if (!v) {
        b->oom = true;
        return;
    }
    if (json_dump_callback(v, buf_dump_cb, b, JSON_COMPACT) != 0)
        b->oom = true;
}

void srv_buf_free(struct srv_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- request init / free ---- */

void srv_parsed_init(struct srv_parsed *p, enum lg_api api)
{
    memset(p, 0, sizeof *p);
    struct lg_gen_req *r = &p->req;
    r->api = api;
    r->kind = api == LG_API_OPENAI_COMPLETIONS ? LG_PROMPT_RAW
              : (api == LG_API_OLLAMA_GENERATE ? LG_PROMPT_TEXT : LG_PROMPT_CHAT);
    r->format = LG_FORMAT_TEXT;
    r->think = LG_THINK_DEFAULT;
    r->think_budget = -1;
    r->max_tokens = -1;
    r->num_ctx = 0;
    r->top_logprobs = -1;
    r->keep_alive_ms = -2;
    bool ollama = api == LG_API_OLLAMA_CHAT || api == LG_API_OLLAMA_GENERATE;
    r->stream = ollama; /* Ollama streams by default, OpenAI does not */
    struct lg_sampling *s = &r->sampling;
    /* documented API defaults (api.md §2.1 / Ollama Modelfile defaults) */
    s->temperature = ollama ? 0.8f : 1.0f;
    s->top_k = ollama ? 40 : 0;
    s->top_p = ollama ? 0.9f : 1.0f;
    s->min_p = 0.0f;
    s->typical_p = 1.0f;
    s->repeat_penalty = 1.0f;
    s->presence_penalty = 0.0f;
    s->frequency_penalty = 0.0f;
    s->repeat_last_n = 64;
    atomic_init(&r->cancel, false);
}

void srv_parsed_free(struct srv_parsed *p)
{
    if (!p)
        return;
    struct lg_gen_req *r = &p->req;
    json_decref(r->messages);
    json_decref(r->tools);
    json_decref(r->schema);
    free(r->prompt);
    free(r->system);
    free(r->suffix);
    for (int32_t i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- durations ---- */

enum lg_status lg_parse_duration_ms(const char *s, int64_t *out_ms, struct lg_err *err)
{
    if (!s || !*s)
        return lg_err_set(err, LG_ERR_FORMAT, "empty duration");
    const char *p = s;
    bool neg = false;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    /* a bare number is seconds */
    char *end;
    errno = 0;
    double whole = strtod(p, &end);
    if (end != p && *end == '\0' && isdigit((unsigned char)*p)) {
        if (errno || !isfinite(whole))
            return lg_err_set(err, LG_ERR_RANGE, "duration '%s' is out of range", s);
        if (neg) {
            *out_ms = whole == 0 ? 0 : -1;
            return LG_OK;
        }
        if (whole > 9.0e15)
            return lg_err_set(err, LG_ERR_RANGE, "duration '%s' is out of range", s);
        *out_ms = (int64_t)(whole * 1000.0);
        return LG_OK;
    }
    double total_ms = 0;
    bool any = false;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return lg_err_set(err, LG_ERR_FORMAT, "bad duration '%s' (use e.g. 30s, 5m, 1h)", s);
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v))
            return lg_err_set(err, LG_ERR_FORMAT, "bad duration '%s'", s);
        p = end;
        double unit;
        if (!strncmp(p, "ns", 2)) {
            unit = 1e-6;
            p += 2;
        } else if (!strncmp(p, "us", 2)) {
            unit = 1e-3;
            p += 2;
        } else if (!strncmp(p, "\xC2\xB5s", 3)) {
            unit = 1e-3;
            p += 3;
        } else if (!strncmp(p, "ms", 2)) {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = 1000;
            p++;
        } else if (*p == 'm') {
            unit = 60000;
            p++;
        } else if (*p == 'h') {
            unit = 3600000;
            p++;
        } else {
            return lg_err_set(err, LG_ERR_FORMAT, "bad duration '%s': missing unit "
                              "(ns, us, ms, s, m, h)", s);
        }
        total_ms += v * unit;
        any = true;
        if (total_ms > 9.0e15)
            return lg_err_set(err, LG_ERR_RANGE, "duration '%s' is out of range", s);
    }
    if (!any)
        return lg_err_set(err, LG_ERR_FORMAT, "bad duration '%s'", s);
    *out_ms = neg ? (total_ms == 0 ? 0 : -1) : (int64_t)total_ms;
    return LG_OK;
}

/* ---- shared fields ---- */

/* Jansson's setters return -1 when a value or the key's slot cannot be allocated (a NULL
 * value included: json_string() failed), and the field is then simply missing. Building the
 * canonical request, that is an error: the request fails with LG_ERR_NOMEM (the route answers
 * 503 "out of memory") instead of running with a message or a field silently lost. Both take
 * v's reference, also on failure. */
static enum lg_status set_new(json_t *o, const char *key, json_t *v, struct lg_err *err)
{
    if (json_object_set_new(o, key, v) != 0)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory (field \"%s\")", key);
    return LG_OK;
}

static enum lg_status append_new(json_t *a, json_t *v, struct lg_err *err)
{
    if (json_array_append_new(a, v) != 0)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    return LG_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

enum lg_status srv_get_model(const json_t *root, struct lg_gen_req *r, struct lg_err *err)
{
    const char *m;
    size_t n;
    enum lg_status st = lg_json_get_str(root, "", "model", LG_GEN_MODEL_NAME_MAX - 1, &m, &n,
                                        err);
    if (st != LG_OK)
        return st;
    if (n == 0)
        return lg_err_set(err, LG_ERR_FORMAT, "model: must not be empty");
    memcpy(r->model, m, n + 1);
    return LG_OK;
}

enum lg_status srv_parse_begin(const char *body, size_t n, size_t max_bytes, enum lg_api api,
                               struct srv_parsed *out, json_t **root, struct lg_err *err)
{
    srv_parsed_init(out, api);
    *root = NULL;
    json_t *o;
    enum lg_status st = lg_json_parse(body, n, max_bytes, LG_JSON_MAX_DEPTH, true, &o, err);
    if (st != LG_OK)
        return st;
    if ((st = srv_get_model(o, &out->req, err)) != LG_OK) {
        json_decref(o);
        return st;
    }
    *root = o;
    return LG_OK;
}

enum lg_status srv_get_messages(const json_t *root, bool ollama, struct lg_gen_req *r,
                                struct lg_err *err)
{
    json_t *msgs;
    enum lg_status st = lg_json_get_arr(root, "", "messages", SRV_MAX_MESSAGES, &msgs, err);
    if (st == LG_ERR_NOT_FOUND && ollama)
        msgs = NULL;
    else if (st != LG_OK)
        return st;
    else if (!ollama && json_array_size(msgs) == 0)
        return lg_err_set(err, LG_ERR_FORMAT, "messages: must not be empty");
    r->messages = json_array();
    if (!r->messages)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char p[LG_JSON_PATH_MAX];
        lg_json_path_index(p, "messages", i);
        if ((st = srv_canon_message(m, p, ollama, r->messages, err)) != LG_OK)
            return st;
    }
    return LG_OK;
}

enum lg_status srv_get_tool_choice(const json_t *root, bool ollama, struct lg_gen_req *r,
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
        } else if (ollama && strcmp(v, "auto") != 0) {
            return lg_err_set(err, LG_ERR_FORMAT, "tool_choice: expected \"auto\", \"none\", "
                              "\"required\" or an object");
        }
        return LG_OK;
    }
    if (!json_is_object(tc))
        return lg_err_set(err, LG_ERR_FORMAT, "tool_choice: expected string or object, got %s",
                          lg_json_type_name(tc));
    /* {"type": "function", "function": {"name": "f"}}: f must be declared */
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

enum lg_status srv_get_logprobs(const json_t *root, struct lg_gen_req *r, struct lg_err *err)
{
    bool logprobs = false;
    enum lg_status st = srv_opt_bool(root, "", "logprobs", &logprobs, err);
    if (st != LG_OK)
        return st;
    int64_t top = 0;
    if ((st = srv_opt_int(root, "", "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, NULL,
                          err)) != LG_OK)
        return st;
    r->top_logprobs = logprobs ? (int32_t)top : -1;
    return LG_OK;
}

enum lg_status srv_get_stream_options(const json_t *root, struct srv_parsed *out,
                                      struct lg_err *err)
{
    json_t *so;
    enum lg_status st = lg_json_get_obj(root, "", "stream_options", &so, err);
    if (st == LG_OK)
        st = srv_opt_bool(so, "stream_options", "include_usage", &out->include_usage, err);
    return st == LG_ERR_NOT_FOUND ? LG_OK : st;
}

enum lg_status srv_get_reasoning_budget(const json_t *root, struct lg_gen_req *r,
                                        struct lg_err *err)
{
    int64_t budget = -1;
    enum lg_status st = srv_opt_int(root, "", "reasoning_budget", -1, INT32_MAX, &budget, NULL,
                                    err);
    if (st == LG_OK)
        r->think_budget = (int32_t)budget;
    return st;
}

static enum lg_status add_stop(struct lg_gen_req *r, const json_t *v, const char *path,
                               struct lg_err *err)
{
    if (!json_is_string(v))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected string, got %s", path,
                          lg_json_type_name(v));
    size_t n = json_string_length(v);
    if (n == 0)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: empty stop string", path);
    if (n > LG_GEN_MAX_STOP_BYTES)
        return lg_err_set(err, LG_ERR_RANGE, "%s: stop string longer than %d bytes", path,
                          LG_GEN_MAX_STOP_BYTES);
    if (r->n_stop >= LG_GEN_MAX_STOP)
        return lg_err_set(err, LG_ERR_RANGE, "%s: at most %d stop strings", path,
                          LG_GEN_MAX_STOP);
    char *d = dup_n(json_string_value(v), n);
    if (!d)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    r->stop[r->n_stop++] = d;
    return LG_OK;
}

enum lg_status srv_get_stop(const json_t *v, const char *path, struct lg_gen_req *r,
                            struct lg_err *err)
{
    if (!v || json_is_null(v))
        return LG_OK;
    if (json_is_string(v))
        return add_stop(r, v, path, err);
    if (!json_is_array(v))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected string or array of strings, got %s",
                          path, lg_json_type_name(v));
    if (json_array_size(v) > LG_GEN_MAX_STOP)
        return lg_err_set(err, LG_ERR_RANGE, "%s: at most %d stop strings", path,
                          LG_GEN_MAX_STOP);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char p[LG_JSON_PATH_MAX];
        lg_json_path_index(p, path, i);
        enum lg_status st = add_stop(r, e, p, err);
        if (st != LG_OK)
            return st;
    }
    return LG_OK;
}

/* {"type":"function","function":{name, description, parameters}} → canonical tool. */
static enum lg_status canon_tool(const json_t *t, const char *path, json_t *out,
                                 struct lg_err *err)
{
    if (!json_is_object(t))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected object, got %s", path,
                          lg_json_type_name(t));
    const char *type;
    enum lg_status st = lg_json_get_str(t, path, "type", 64, &type, NULL, err);
    if (st == LG_OK && strcmp(type, "function") != 0)
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "%s.type: only \"function\" tools are "
                          "supported", path);
    if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        return st;
    json_t *fn;
    if ((st = lg_json_get_obj(t, path, "function", &fn, err)) != LG_OK)
        return st;
    char fpath[LG_JSON_PATH_MAX];
    lg_json_path(fpath, path, "function");
    const char *name, *desc = "";
    size_t n_name;
    if ((st = lg_json_get_str(fn, fpath, "name", 128, &name, &n_name, err)) != LG_OK)
        return st;
    if (n_name == 0)
        return lg_err_set(err, LG_ERR_FORMAT, "%s.name: must not be empty", fpath);
    st = lg_json_get_str(fn, fpath, "description", 64 * 1024, &desc, NULL, err);
    if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        return st;
    json_t *params = NULL;
    st = lg_json_get_obj(fn, fpath, "parameters", &params, err);
    if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        return st;
    json_t *c = json_pack("{s:s, s:s}", "name", name, "description", desc ? desc : "");
    if (!c)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    st = set_new(c, "parameters", params ? json_incref(params) : json_object(), err);
    if (st != LG_OK) {
        json_decref(c);
        return st;
    }
    return append_new(out, c, err);
}

enum lg_status srv_get_tools(const json_t *root, struct lg_gen_req *r, struct lg_err *err)
{
    json_t *tools;
    enum lg_status st = lg_json_get_arr(root, "", "tools", SRV_MAX_TOOLS, &tools, err);
    if (st == LG_ERR_NOT_FOUND)
        return LG_OK;
    if (st != LG_OK)
        return st;
    if (json_array_size(tools) == 0)
        return LG_OK;
    json_t *out = json_array();
    if (!out)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        char p[LG_JSON_PATH_MAX];
        lg_json_path_index(p, "tools", i);
        if ((st = canon_tool(t, p, out, err)) != LG_OK) {
            json_decref(out);
            return st;
        }
    }
    r->tools = out;
    return LG_OK;
}

enum lg_status srv_get_keep_alive(const json_t *root, struct lg_gen_req *r, struct lg_err *err)
{
    json_t *v = json_object_get(root, "keep_alive");
    if (!v || json_is_null(v))
        return LG_OK;
    if (json_is_string(v)) {
        struct lg_err e2;
        if (lg_parse_duration_ms(json_string_value(v), &r->keep_alive_ms, &e2) != LG_OK)
            return lg_err_set(err, LG_ERR_FORMAT, "keep_alive: %s", e2.msg);
        return LG_OK;
    }
    double secs;
    enum lg_status st = lg_json_check_num(v, "keep_alive", -1e15, 9e12, false, &secs, err);
    if (st != LG_OK)
        return st;
    r->keep_alive_ms = secs < 0 ? -1 : (int64_t)(secs * 1000.0);
    return LG_OK;
}

/* Option keys Ollama accepts that we take but do not use (the engine decides threads,
 * batching and memory): ignored after a type check. */
static const char *const ollama_ignored_num[] = {"num_keep", "num_batch", "num_gpu",
                                                 "main_gpu", "num_thread",
                                                 "draft_num_predict"};
static const char *const ollama_ignored_bool[] = {"use_mmap", "numa", "low_vram",
                                                  "use_mlock", "penalize_newline"};

enum lg_status srv_get_ollama_options(const json_t *root, struct lg_gen_req *r,
                                      struct lg_err *err)
{
    json_t *o;
    enum lg_status st = lg_json_get_obj(root, "", "options", &o, err);
    if (st == LG_ERR_NOT_FOUND)
        return LG_OK;
    if (st != LG_OK)
        return st;
    struct lg_sampling *s = &r->sampling;
    double d;
    int64_t i;
#define OPT_NUM(key, lo, hi, field, bit)                                                      \
    do {                                                                                       \
        st = lg_json_get_num(o, "options", key, lo, hi, &d, err);                              \
        if (st == LG_OK) {                                                                     \
            field = (float)d;                                                                  \
            s->set |= bit;                                                                     \
        } else if (st != LG_ERR_NOT_FOUND) {                                                   \
            return st;                                                                         \
        }                                                                                      \
    } while (0)
    OPT_NUM("temperature", 0, 100, s->temperature, LG_SAMP_TEMPERATURE);
    OPT_NUM("top_p", 0, 1, s->top_p, LG_SAMP_TOP_P);
    OPT_NUM("min_p", 0, 1, s->min_p, LG_SAMP_MIN_P);
    OPT_NUM("typical_p", 0, 1, s->typical_p, LG_SAMP_TYPICAL_P);
    OPT_NUM("repeat_penalty", 0, 10, s->repeat_penalty, LG_SAMP_REPEAT_PENALTY);
    OPT_NUM("presence_penalty", -2, 2, s->presence_penalty, LG_SAMP_PRESENCE_PENALTY);
    OPT_NUM("frequency_penalty", -2, 2, s->frequency_penalty, LG_SAMP_FREQUENCY_PENALTY);
#undef OPT_NUM
    if ((st = lg_json_get_int(o, "options", "top_k", 0, 1 << 20, &i, err)) == LG_OK) {
        s->top_k = (int32_t)i;
        s->set |= LG_SAMP_TOP_K;
    } else if (st != LG_ERR_NOT_FOUND) {
        return st;
    }
    if ((st = lg_json_get_int(o, "options", "repeat_last_n", -1, SRV_MAX_CTX, &i, err)) ==
        LG_OK) {
        s->repeat_last_n = (int32_t)i;
        s->set |= LG_SAMP_REPEAT_LAST_N;
    } else if (st != LG_ERR_NOT_FOUND) {
        return st;
    }
    if ((st = lg_json_get_int(o, "options", "seed", INT64_MIN, INT64_MAX, &i, err)) == LG_OK) {
        if (i != -1) { /* -1: random, as in llama.cpp */
            s->seed = (uint64_t)i;
            s->set |= LG_SAMP_SEED;
        }
    } else if (st != LG_ERR_NOT_FOUND) {
        return st;
    }
    /* num_predict: -1 = no limit, -2 = fill the context (same for us) */
    if ((st = lg_json_get_int(o, "options", "num_predict", -2, SRV_MAX_TOKENS, &i, err)) ==
        LG_OK)
        r->max_tokens = i < 0 ? -1 : (int32_t)i;
    else if (st != LG_ERR_NOT_FOUND)
        return st;
    if ((st = lg_json_get_int(o, "options", "num_ctx", 0, SRV_MAX_CTX, &i, err)) == LG_OK)
        r->num_ctx = (int32_t)i;
    else if (st != LG_ERR_NOT_FOUND)
        return st;
    json_t *stop = json_object_get(o, "stop");
    if ((st = srv_get_stop(stop, "options.stop", r, err)) != LG_OK)
        return st;
    for (size_t k = 0; k < sizeof ollama_ignored_num / sizeof ollama_ignored_num[0]; k++) {
        st = lg_json_get_num(o, "options", ollama_ignored_num[k], -1e9, 1e9, &d, err);
        if (st != LG_OK && st != LG_ERR_NOT_FOUND)
            return st;
    }
    bool b;
    for (size_t k = 0; k < sizeof ollama_ignored_bool / sizeof ollama_ignored_bool[0]; k++) {
        st = lg_json_get_bool(o, "options", ollama_ignored_bool[k], &b, err);
        if (st != LG_OK && st != LG_ERR_NOT_FOUND)
            return st;
    }
    return LG_OK;
}

static enum lg_status set_schema(struct lg_gen_req *r, json_t *schema, const char *path,
                                 struct lg_err *err)
{
    /* bound the schema the grammar compiler will see (hardening LLM10) */
    struct srv_buf b = {0};
    srv_buf_put_json(&b, schema);
    bool oom = b.oom, too_big = b.n > SRV_MAX_SCHEMA_BYTES;
    srv_buf_free(&b);
    if (too_big)
        return lg_err_set(err, LG_ERR_RANGE, "%s: schema larger than %d bytes", path,
                          SRV_MAX_SCHEMA_BYTES);
    if (oom) /* json_dump_callback fails only for want of memory (depth is bounded) */
        return lg_err_set(err, LG_ERR_NOMEM, "%s: out of memory measuring the schema", path);
    r->format = LG_FORMAT_SCHEMA;
    r->schema = json_incref(schema);
    return LG_OK;
}

enum lg_status srv_get_ollama_format(const json_t *root, struct lg_gen_req *r,
                                     struct lg_err *err)
{
    json_t *f = json_object_get(root, "format");
    if (!f || json_is_null(f))
        return LG_OK;
    if (json_is_string(f)) {
        const char *s = json_string_value(f);
        if (!s[0])
            return LG_OK;
        if (!strcmp(s, "json")) {
            r->format = LG_FORMAT_JSON;
            return LG_OK;
        }
        return lg_err_set(err, LG_ERR_FORMAT, "format: expected \"json\" or a JSON schema "
                          "object");
    }
    if (json_is_object(f))
        return set_schema(r, f, "format", err);
    return lg_err_set(err, LG_ERR_FORMAT, "format: expected \"json\" or a JSON schema object, "
                      "got %s", lg_json_type_name(f));
}

enum lg_status srv_get_ollama_think(const json_t *root, struct lg_gen_req *r,
                                    struct lg_err *err)
{
    json_t *t = json_object_get(root, "think");
    if (!t || json_is_null(t))
        return LG_OK;
    if (json_is_boolean(t)) {
        r->think = json_is_true(t) ? LG_THINK_ON : LG_THINK_OFF;
        return LG_OK;
    }
    if (json_is_string(t)) {
        const char *s = json_string_value(t);
        if (!strcmp(s, "low") || !strcmp(s, "medium") || !strcmp(s, "high") ||
            !strcmp(s, "max")) {
            r->think = LG_THINK_ON;
            return LG_OK;
        }
        return lg_err_set(err, LG_ERR_FORMAT, "think: expected true, false, \"low\", "
                          "\"medium\", \"high\" or \"max\"");
    }
    return lg_err_set(err, LG_ERR_FORMAT, "think: expected boolean or string, got %s",
                      lg_json_type_name(t));
}

/* ---- messages ---- */

/* OpenAI content: string, or array of parts {type:"text",text}; images are refused. */
static enum lg_status content_text(const json_t *m, const char *path, bool ollama,
                                   json_t *cm, struct lg_err *err)
{
    char cpath[LG_JSON_PATH_MAX];
    lg_json_path(cpath, path, "content");
    json_t *c = json_object_get(m, "content");
    if (!c || json_is_null(c))
        return set_new(cm, "content", json_string(""), err);
    if (json_is_string(c))
        return set_new(cm, "content", json_incref(c), err);
    if (ollama || !json_is_array(c))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected string%s, got %s", cpath,
                          ollama ? "" : " or array", lg_json_type_name(c));
    struct srv_buf text = {0};
    size_t i;
    json_t *part;
    enum lg_status st = LG_OK;
    json_array_foreach(c, i, part) {
        char ppath[LG_JSON_PATH_MAX];
        lg_json_path_index(ppath, cpath, i);
        if (!json_is_object(part)) {
            st = lg_err_set(err, LG_ERR_FORMAT, "%s: expected object, got %s", ppath,
                            lg_json_type_name(part));
            break;
        }
        const char *type;
        if ((st = lg_json_get_str(part, ppath, "type", 64, &type, NULL, err)) != LG_OK)
            break;
        if (!strcmp(type, "text")) {
            const char *t;
            size_t n;
            if ((st = lg_json_get_str(part, ppath, "text", SIZE_MAX, &t, &n, err)) != LG_OK)
                break;
            srv_buf_put(&text, t, n);
        } else if (!strcmp(type, "image_url") || !strcmp(type, "input_audio") ||
                   !strcmp(type, "file")) {
            st = lg_err_set(err, LG_ERR_UNSUPPORTED, "%s: %s input is not supported by this "
                            "build", ppath, type);
            break;
        } else {
            st = lg_err_set(err, LG_ERR_FORMAT, "%s.type: unknown content part type", ppath);
            break;
        }
    }
    if (st == LG_OK) {
        json_t *s = json_stringn(text.p ? text.p : "", text.n);
        if (!s || text.oom) {
            json_decref(s);
            st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        } else {
            st = set_new(cm, "content", s, err);
        }
    }
    srv_buf_free(&text);
    return st;
}

/* OpenAI: {id, type, function:{name, arguments:"<json string>"}};
 * Ollama: {id?, function:{index?, name, arguments:{object}}}. */
static enum lg_status canon_tool_call(const json_t *tc, const char *path, bool ollama,
                                      size_t idx, json_t *out, struct lg_err *err)
{
    if (!json_is_object(tc))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected object, got %s", path,
                          lg_json_type_name(tc));
    json_t *fn;
    enum lg_status st = lg_json_get_obj(tc, path, "function", &fn, err);
    if (st != LG_OK)
        return st;
    char fpath[LG_JSON_PATH_MAX];
    lg_json_path(fpath, path, "function");
    const char *name, *id = NULL;
    size_t n_name;
    if ((st = lg_json_get_str(fn, fpath, "name", 128, &name, &n_name, err)) != LG_OK)
        return st;
    st = lg_json_get_str(tc, path, "id", 64, &id, NULL, err);
    if (st != LG_OK && st != LG_ERR_NOT_FOUND)
        return st;
    char idbuf[32];
    if (!id) {
        snprintf(idbuf, sizeof idbuf, "call_%zu", idx);
        id = idbuf;
    }
    char apath[LG_JSON_PATH_MAX];
    lg_json_path(apath, fpath, "arguments");
    json_t *args = json_object_get(fn, "arguments");
    json_t *obj = NULL;
    if (!args || json_is_null(args)) {
        obj = json_object();
    } else if (json_is_object(args)) {
        obj = json_incref(args);
    } else if (json_is_string(args) && !ollama) {
        const char *s = json_string_value(args);
        size_t n = json_string_length(args);
        if (n == 0) {
            obj = json_object();
        } else {
            struct lg_err e2;
            enum lg_status pst = lg_json_parse(s, n, n, LG_JSON_MAX_DEPTH, true, &obj, &e2);
            if (pst == LG_ERR_NOMEM)
                return lg_err_set(err, LG_ERR_NOMEM, "%s: %s", apath, e2.msg);
            if (pst != LG_OK)
                return lg_err_set(err, LG_ERR_FORMAT, "%s: not a JSON object (%s)", apath,
                                  e2.msg);
        }
    } else {
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected %s, got %s", apath,
                          ollama ? "object" : "JSON string", lg_json_type_name(args));
    }
    if (!obj)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    json_t *c = json_pack("{s:s, s:s, s:o}", "id", id, "name", name, "arguments", obj);
    if (!c)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    return append_new(out, c, err);
}

enum lg_status srv_canon_message(const json_t *m, const char *path, bool ollama, json_t *out,
                                 struct lg_err *err)
{
    if (!json_is_object(m))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected object, got %s", path,
                          lg_json_type_name(m));
    const char *role;
    enum lg_status st = lg_json_get_str(m, path, "role", 32, &role, NULL, err);
    if (st != LG_OK)
        return st;
    const char *crole;
    if (!strcmp(role, "system") || !strcmp(role, "developer"))
        crole = "system";
    else if (!strcmp(role, "user") || !strcmp(role, "assistant") || !strcmp(role, "tool"))
        crole = role;
    else
        return lg_err_set(err, LG_ERR_FORMAT, "%s.role: unknown role \"%s\" (expected system, "
                          "developer, user, assistant or tool)", path, role);
    json_t *cm = json_pack("{s:s}", "role", crole);
    if (!cm)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    if ((st = content_text(m, path, ollama, cm, err)) != LG_OK)
        goto fail;
    /* thinking in history: Ollama "thinking"; OpenAI-style "reasoning_content"/"reasoning" */
    static const char *const think_keys[] = {"thinking", "reasoning_content", "reasoning"};
    for (size_t k = 0; k < 3; k++) {
        const char *t;
        size_t n;
        st = lg_json_get_str(m, path, think_keys[k], SIZE_MAX, &t, &n, err);
        if (st == LG_OK) {
            if (n && (st = set_new(cm, "thinking", json_stringn(t, n), err)) != LG_OK)
                goto fail;
        } else if (st != LG_ERR_NOT_FOUND) {
            goto fail;
        }
    }
    if (ollama) {
        json_t *imgs = json_object_get(m, "images");
        if (imgs && !json_is_null(imgs) &&
            (!json_is_array(imgs) || json_array_size(imgs) > 0)) {
            st = lg_err_set(err, LG_ERR_UNSUPPORTED, "%s.images: image input is not supported "
                            "by this build", path);
            goto fail;
        }
    }
    json_t *tcs;
    st = lg_json_get_arr(m, path, "tool_calls", SRV_MAX_TOOL_CALLS, &tcs, err);
    if (st == LG_OK && json_array_size(tcs) > 0) {
        json_t *calls = json_array();
        if ((st = set_new(cm, "tool_calls", calls, err)) != LG_OK)
            goto fail;
        size_t i;
        json_t *tc;
        char tpath[LG_JSON_PATH_MAX], epath[LG_JSON_PATH_MAX];
        lg_json_path(tpath, path, "tool_calls");
        json_array_foreach(tcs, i, tc) {
            lg_json_path_index(epath, tpath, i);
            if ((st = canon_tool_call(tc, epath, ollama, i, calls, err)) != LG_OK)
                goto fail;
        }
    } else if (st != LG_OK && st != LG_ERR_NOT_FOUND) {
        goto fail;
    }
    static const char *const id_keys[][2] = {{"tool_call_id", "tool_call_id"},
                                             {"name", "name"}, {"tool_name", "name"}};
    for (size_t k = 0; k < 3; k++) {
        const char *s;
        size_t n;
        st = lg_json_get_str(m, path, id_keys[k][0], 128, &s, &n, err);
        if (st == LG_OK)
            st = set_new(cm, id_keys[k][1], json_stringn(s, n), err);
        if (st != LG_OK && st != LG_ERR_NOT_FOUND)
            goto fail;
    }
    return append_new(out, cm, err);
fail:
    json_decref(cm);
    return st;
}

/* ---- optional scalar helpers: absent → LG_OK and nothing changes ---- */

enum lg_status srv_opt_float(const json_t *o, const char *ctx, const char *key, double lo,
                             double hi, float *field, unsigned *set, unsigned bit,
                             struct lg_err *err)
{
    double d;
    enum lg_status st = lg_json_get_num(o, ctx, key, lo, hi, &d, err);
    if (st == LG_ERR_NOT_FOUND)
        return LG_OK;
    if (st != LG_OK)
        return st;
    *field = (float)d;
    if (set)
        *set |= bit;
    return LG_OK;
}

enum lg_status srv_opt_int(const json_t *o, const char *ctx, const char *key, int64_t lo,
                           int64_t hi, int64_t *out, bool *present, struct lg_err *err)
{
    enum lg_status st = lg_json_get_int(o, ctx, key, lo, hi, out, err);
    if (present)
        *present = st == LG_OK;
    return st == LG_ERR_NOT_FOUND ? LG_OK : st;
}

enum lg_status srv_opt_bool(const json_t *o, const char *ctx, const char *key, bool *out,
                            struct lg_err *err)
{
    enum lg_status st = lg_json_get_bool(o, ctx, key, out, err);
    return st == LG_ERR_NOT_FOUND ? LG_OK : st;
}

enum lg_status srv_get_openai_format(const json_t *root, struct lg_gen_req *r,
                                     struct lg_err *err)
{
    json_t *rf;
    enum lg_status st = lg_json_get_obj(root, "", "response_format", &rf, err);
    if (st == LG_ERR_NOT_FOUND)
        return LG_OK;
    if (st != LG_OK)
        return st;
    const char *type;
    if ((st = lg_json_get_str(rf, "response_format", "type", 64, &type, NULL, err)) != LG_OK)
        return st;
    if (!strcmp(type, "text"))
        return LG_OK;
    if (!strcmp(type, "json_object")) {
        json_t *schema; /* llama.cpp extension: {type:"json_object", schema:{...}} */
        st = lg_json_get_obj(rf, "response_format", "schema", &schema, err);
        if (st == LG_OK)
            return set_schema(r, schema, "response_format.schema", err);
        if (st != LG_ERR_NOT_FOUND)
            return st;
        r->format = LG_FORMAT_JSON;
        return LG_OK;
    }
    if (!strcmp(type, "json_schema")) {
        json_t *js, *schema;
        if ((st = lg_json_get_obj(rf, "response_format", "json_schema", &js, err)) != LG_OK)
            return st;
        if ((st = lg_json_get_obj(js, "response_format.json_schema", "schema", &schema,
                                  err)) != LG_OK)
            return st;
        return set_schema(r, schema, "response_format.json_schema.schema", err);
    }
    return lg_err_set(err, LG_ERR_FORMAT, "response_format.type: expected \"text\", "
                      "\"json_object\" or \"json_schema\"");
}

/* OpenAI sampling fields shared by chat and completions. */
enum lg_status srv_get_openai_sampling(const json_t *root, struct lg_gen_req *r,
                                       struct lg_err *err)
{
    struct lg_sampling *s = &r->sampling;
    enum lg_status st;
    if ((st = srv_opt_float(root, "", "temperature", 0, 2, &s->temperature, &s->set,
                            LG_SAMP_TEMPERATURE, err)) ||
        (st = srv_opt_float(root, "", "top_p", 0, 1, &s->top_p, &s->set, LG_SAMP_TOP_P,
                            err)) ||
        (st = srv_opt_float(root, "", "min_p", 0, 1, &s->min_p, &s->set, LG_SAMP_MIN_P,
                            err)) ||
        (st = srv_opt_float(root, "", "typical_p", 0, 1, &s->typical_p, &s->set,
                            LG_SAMP_TYPICAL_P, err)) ||
        (st = srv_opt_float(root, "", "repeat_penalty", 0, 10, &s->repeat_penalty, &s->set,
                            LG_SAMP_REPEAT_PENALTY, err)) ||
        (st = srv_opt_float(root, "", "presence_penalty", -2, 2, &s->presence_penalty,
                            &s->set, LG_SAMP_PRESENCE_PENALTY, err)) ||
        (st = srv_opt_float(root, "", "frequency_penalty", -2, 2, &s->frequency_penalty,
                            &s->set, LG_SAMP_FREQUENCY_PENALTY, err)))
        return st;
    int64_t i;
    bool have;
    if ((st = srv_opt_int(root, "", "top_k", 0, 1 << 20, &i, &have, err)) != LG_OK)
        return st;
    if (have) {
        s->top_k = (int32_t)i;
        s->set |= LG_SAMP_TOP_K;
    }
    if ((st = srv_opt_int(root, "", "repeat_last_n", -1, SRV_MAX_CTX, &i, &have, err)) != LG_OK)
        return st;
    if (have) {
        s->repeat_last_n = (int32_t)i;
        s->set |= LG_SAMP_REPEAT_LAST_N;
    }
    if ((st = srv_opt_int(root, "", "seed", INT64_MIN, INT64_MAX, &i, &have, err)) != LG_OK)
        return st;
    if (have && i != -1) {
        s->seed = (uint64_t)i;
        s->set |= LG_SAMP_SEED;
    }
    /* max_completion_tokens supersedes max_tokens; both 1..SRV_MAX_TOKENS */
    if ((st = srv_opt_int(root, "", "max_tokens", 1, SRV_MAX_TOKENS, &i, &have, err)) != LG_OK)
        return st;
    if (have)
        r->max_tokens = (int32_t)i;
    if ((st = srv_opt_int(root, "", "max_completion_tokens", 1, SRV_MAX_TOKENS, &i, &have,
                          err)) != LG_OK)
        return st;
    if (have)
        r->max_tokens = (int32_t)i;
    if ((st = srv_opt_int(root, "", "n", 1, 1, &i, &have, err)) != LG_OK)
        return st;
    if ((st = srv_get_stop(json_object_get(root, "stop"), "stop", r, err)) != LG_OK)
        return st;
    bool stream = false;
    if ((st = srv_opt_bool(root, "", "stream", &stream, err)) != LG_OK)
        return st;
    r->stream = stream;
    return LG_OK;
}

bool srv_body_json(struct srv_conn *c, json_t **root, int *reply)
{
    size_t n;
    const char *body = srv_conn_body(c, &n);
    struct lg_err err = {0};
    enum lg_status st = lg_json_parse(body, n, srv_conn_config(c)->max_body_bytes,
                                      LG_JSON_MAX_DEPTH, true, root, &err);
    if (st == LG_OK)
        return true;
    *reply = srv_reply_error(c, srv_status_http(st), "%s", err.msg);
    return false;
}

bool srv_body_fields(struct srv_conn *c, const struct srv_field *f, size_t n_f, json_t **root,
                     int *reply)
{
    if (!srv_body_json(c, root, reply))
        return false;
    struct lg_err err = {0};
    enum lg_status st = LG_OK;
    for (size_t i = 0; i < n_f && st == LG_OK; i++) {
        const char *key = f[i].key;
        for (int pass = 0; pass < 2; pass++) {
            switch (f[i].type) {
            case SRV_FIELD_STR:
                st = lg_json_get_str(*root, "", key, f[i].max, f[i].out, f[i].n_out, &err);
                break;
            case SRV_FIELD_BOOL:
                st = lg_json_get_bool(*root, "", key, f[i].out, &err);
                break;
            case SRV_FIELD_ARR:
                st = lg_json_get_arr(*root, "", key, f[i].max, f[i].out, &err);
                break;
            }
            if (st != LG_ERR_NOT_FOUND || !f[i].alt || pass == 1)
                break;
            key = f[i].alt; /* absent: try the older name */
        }
        if (st == LG_ERR_NOT_FOUND && !f[i].required)
            st = LG_OK;
        else if (st == LG_ERR_NOT_FOUND)
            lg_err_set(&err, LG_ERR_NOT_FOUND, "%s: required", f[i].key);
    }
    if (st == LG_OK)
        return true;
    json_decref(*root);
    *root = NULL;
    /* a missing or malformed field is the client's error: 400, never 404 */
    *reply = srv_reply_error(c, st == LG_ERR_NOT_FOUND ? 400 : srv_status_http(st), "%s",
                             err.msg);
    return false;
}
