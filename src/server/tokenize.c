/* tokenize.c: POST /tokenize and POST /detokenize (llama-server style, api.md §2.3).
 *
 *   /tokenize   {"content": str, "model"?, "add_special"?: false, "parse_special"?: true,
 *                "with_pieces"?: false}  → {"tokens": [id, ...]} or, with with_pieces,
 *                {"tokens": [{"id": id, "piece": str | [byte, ...]}, ...]}
 *   /detokenize {"tokens": [id, ...], "model"?, "special"?: true} → {"content": str}
 *
 * Defaults follow llama-server: no BOS unless add_special, control-token text parsed as
 * tokens, control tokens rendered by /detokenize (so detokenize(tokenize(x)) == x). A piece
 * is the token's own text (U+2581 → ' ', a byte token → its byte); when those bytes are not
 * valid UTF-8 on their own it is sent as an array of byte values, as llama-server does.
 *
 * The engine interface has no tokenizer access, so the vocabulary is loaded here from the
 * resolved GGUF (metadata only: lg_vocab_load copies what it needs and the file is closed)
 * and kept in a small cache keyed by path, size and mtime. Loading runs on the MHD thread
 * once per model file (~0.1-0.3 s for a 262k vocab); later requests only encode.
 *
 * Model: "model" names a store model or a --model entry (404 otherwise); without it, the
 * one model the engine has loaded, else the only --model, else the only model listed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "json/json.h"
#include "server/server.h"
#include "store/store.h"
#include "tok/tok.h"

enum {
    TOKZ_CACHE_SLOTS = 4,
    TOKZ_MAX_IDS = 1 << 22 /* ids in one /detokenize request */
};

struct tokz_slot {
    char path[LG_STORE_PATH_MAX];
    int64_t size, mtime_ns;
    uint64_t last_use;
    struct lg_vocab *v;
};

static pthread_mutex_t tokz_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tokz_slot tokz_cache[TOKZ_CACHE_SLOTS];
static uint64_t tokz_clock;

/* Returns the cached vocab of path, loading it on a miss. Vocabs are never freed while the
 * process runs except when their slot is reused; the MHD thread is the only caller, so a
 * vocab returned here stays valid for the rest of the request. */
static enum lg_status vocab_get(const char *path, const struct lg_vocab **out,
                                struct lg_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model file %s is gone", path);
    int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    pthread_mutex_lock(&tokz_mu);
    struct tokz_slot *victim = &tokz_cache[0];
    for (int i = 0; i < TOKZ_CACHE_SLOTS; i++) {
        struct tokz_slot *s = &tokz_cache[i];
        if (s->v && !strcmp(s->path, path) && s->size == (int64_t)st.st_size &&
            s->mtime_ns == mtime_ns) {
            s->last_use = ++tokz_clock;
            *out = s->v;
            pthread_mutex_unlock(&tokz_mu);
            return LG_OK;
        }
        if (!s->v || (victim->v && s->last_use < victim->last_use))
            victim = s;
    }
    struct lg_gguf *g = NULL;
    struct lg_vocab *v = NULL;
    enum lg_status rc = lg_gguf_open(path, &g, err);
    if (rc == LG_OK)
        rc = lg_vocab_load(g, &v, err);
    lg_gguf_close(g);
    if (rc == LG_OK) {
        lg_vocab_free(victim->v);
        snprintf(victim->path, sizeof victim->path, "%s", path);
        victim->size = (int64_t)st.st_size;
        victim->mtime_ns = mtime_ns;
        victim->last_use = ++tokz_clock;
        victim->v = v;
        *out = v;
    }
    pthread_mutex_unlock(&tokz_mu);
    return rc;
}

/* The model name to use: the request's "model", or the default described at the top. */
static enum lg_status pick_model(struct srv_conn *c, const json_t *root, char *name, size_t cap,
                                 unsigned *http, struct lg_err *err)
{
    const struct lg_server_config *cfg = srv_conn_config(c);
    const char *m;
    size_t n;
    *http = 400;
    enum lg_status st = lg_json_get_str(root, "", "model", LG_GEN_MODEL_NAME_MAX - 1, &m, &n,
                                        err);
    if (st == LG_OK) {
        if (n == 0)
            return lg_err_set(err, LG_ERR_FORMAT, "model: must not be empty");
        snprintf(name, cap, "%s", m);
        return LG_OK;
    }
    if (st != LG_ERR_NOT_FOUND)
        return st;
    void *self;
    const struct lg_engine_ops *eng = srv_conn_engine(c, &self);
    if (eng && eng->list_loaded) {
        struct lg_loaded_model lm[2];
        if (eng->list_loaded(self, lm, 2) == 1) {
            snprintf(name, cap, "%s", lm[0].name);
            return LG_OK;
        }
    }
    if (cfg->n_models == 1) {
        snprintf(name, cap, "%s", cfg->models[0]);
        return LG_OK;
    }
    struct srv_model_info *v;
    size_t n_v;
    st = srv_models_list(cfg, &v, &n_v, err);
    if (st != LG_OK) {
        *http = 500;
        return st;
    }
    if (n_v == 1)
        snprintf(name, cap, "%s", v[0].name);
    free(v);
    if (n_v != 1)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model: required (%zu models available; "
                          "see /api/tags)", n_v);
    return LG_OK;
}

/* Resolves a model name to its GGUF and returns its vocab. 404 for an unknown model. */
static enum lg_status model_vocab(struct srv_conn *c, const json_t *root,
                                  const struct lg_vocab **v, unsigned *http,
                                  struct lg_err *err)
{
    const struct lg_server_config *cfg = srv_conn_config(c);
    char name[LG_GEN_MODEL_NAME_MAX];
    enum lg_status st = pick_model(c, root, name, sizeof name, http, err);
    if (st != LG_OK)
        return st;
    *http = 404;
    struct srv_model_info info;
    if (srv_models_find(cfg, name, &info, err) != LG_OK)
        return LG_ERR_NOT_FOUND;
    /* A --model entry may be a path (the operator chose it); a request's own name must be a
     * store name (lg_store_resolve_name never accepts a path). */
    bool configured = false;
    for (size_t i = 0; i < cfg->n_models; i++)
        configured |= !strcmp(cfg->models[i], name);
    char path[LG_STORE_PATH_MAX];
    if (configured)
        st = cfg->store ? lg_store_resolve(cfg->store, name, false, path, sizeof path, err)
                        : lg_store_resolve_default(name, false, path, sizeof path, err);
    else if (cfg->store)
        st = lg_store_resolve_name(cfg->store, name, false, path, sizeof path, err);
    else
        st = lg_err_set(err, LG_ERR_NOT_FOUND, "model '%.200s' not found", name);
    if (st != LG_OK)
        return st;
    *http = 500;
    st = vocab_get(path, v, err);
    if (st == LG_ERR_NOMEM)
        *http = 503;
    return st;
}

/* The token's own bytes: U+2581 → ' ', a byte token "<0xHH>" → that byte. */
static void piece_bytes(const struct lg_vocab *v, int32_t id, struct srv_buf *out)
{
    struct lg_str p = lg_tok_piece(v, id);
    if (v->types[id] == LG_TOK_TYPE_BYTE && p.len == 6) {
        unsigned x;
        char hex[3] = {p.ptr[3], p.ptr[4], '\0'};
        if (sscanf(hex, "%2x", &x) == 1) {
            unsigned char b = (unsigned char)x;
            srv_buf_put(out, &b, 1);
            return;
        }
    }
    for (size_t i = 0; i < (size_t)p.len;) {
        if ((size_t)p.len - i >= 3 && !memcmp(p.ptr + i, "\xe2\x96\x81", 3)) {
            srv_buf_put(out, " ", 1);
            i += 3;
        } else {
            srv_buf_put(out, p.ptr + i, 1);
            i++;
        }
    }
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!need || need > n - i)
            return false;
        for (size_t k = 1; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if (need == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F)))
            return false;
        if (need == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F)))
            return false;
        i += need;
    }
    return true;
}

static json_t *piece_json(const struct lg_vocab *v, int32_t id)
{
    struct srv_buf b = {0};
    piece_bytes(v, id, &b);
    json_t *r;
    if (b.oom) {
        r = NULL;
    } else if (utf8_valid((const unsigned char *)b.p, b.n) && !memchr(b.p ? b.p : "", 0, b.n)) {
        r = json_stringn(b.p ? b.p : "", b.n);
    } else {
        r = json_array();
        for (size_t i = 0; r && i < b.n; i++)
            json_array_append_new(r, json_integer((unsigned char)b.p[i]));
    }
    srv_buf_free(&b);
    return r;
}

/* What both routes start with: the body's fields f[0..n_f) (400 naming a bad one), then the
 * vocabulary of the model (404 unknown, ...). false: the reply is queued in *reply. */
static bool tokz_begin(struct srv_conn *c, const struct srv_field *f, size_t n_f,
                       json_t **root, const struct lg_vocab **v, int *reply)
{
    if (!srv_body_fields(c, f, n_f, root, reply))
        return false;
    struct lg_err err = {0};
    unsigned http;
    if (model_vocab(c, *root, v, &http, &err) == LG_OK)
        return true;
    json_decref(*root);
    *root = NULL;
    *reply = srv_reply_error(c, http, "%s", err.msg[0] ? err.msg : "failed");
    return false;
}

int srv_route_tokenize(struct srv_conn *c)
{
    const char *text;
    size_t len;
    bool add_special = false, parse_special = true, with_pieces = false;
    const struct srv_field fields[] = {
        {"content", NULL, SRV_FIELD_STR, true, LG_TOK_MAX_TEXT_BYTES, &text, &len},
        {"add_special", NULL, SRV_FIELD_BOOL, false, 0, &add_special, NULL},
        {"parse_special", NULL, SRV_FIELD_BOOL, false, 0, &parse_special, NULL},
        {"with_pieces", NULL, SRV_FIELD_BOOL, false, 0, &with_pieces, NULL},
    };
    json_t *root;
    const struct lg_vocab *v;
    int reply;
    if (!tokz_begin(c, fields, sizeof fields / sizeof fields[0], &root, &v, &reply))
        return reply;
    struct lg_err err = {0};
    enum lg_status st;
    unsigned flags = (add_special ? LG_TOK_ADD_BOS : 0u) |
                     (parse_special ? LG_TOK_PARSE_SPECIAL : 0u);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st = lg_tok_encode_alloc(v, text, len, flags, &ids, &n_ids, &err);
    json_decref(root);
    if (st != LG_OK)
        return srv_reply_error(c, st == LG_ERR_NOMEM ? 503 : 400, "content: %s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n_ids; i++) {
        json_t *e = with_pieces ? json_pack("{s:i, s:o*}", "id", (int)ids[i], "piece",
                                            piece_json(v, ids[i]))
                                : json_integer(ids[i]);
        if (!e || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(ids);
    if (!arr)
        return srv_reply_error(c, 503, "out of memory");
    return srv_reply_json(c, 200, json_pack("{s:o}", "tokens", arr));
}

int srv_route_detokenize(struct srv_conn *c)
{
    json_t *arr;
    bool special = true;
    const struct srv_field fields[] = {
        {"tokens", NULL, SRV_FIELD_ARR, true, TOKZ_MAX_IDS, &arr, NULL},
        {"special", NULL, SRV_FIELD_BOOL, false, 0, &special, NULL},
    };
    json_t *root;
    const struct lg_vocab *v;
    int reply;
    if (!tokz_begin(c, fields, sizeof fields / sizeof fields[0], &root, &v, &reply))
        return reply;
    struct lg_err err = {0};
    enum lg_status st;
    size_t n_ids = json_array_size(arr);
    int32_t *ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    if (!ids) {
        json_decref(root);
        return srv_reply_error(c, 503, "out of memory");
    }
    for (size_t i = 0; i < n_ids; i++) {
        char path[LG_JSON_PATH_MAX];
        lg_json_path_index(path, "tokens", i);
        double d;
        st = lg_json_check_num(json_array_get(arr, i), path, 0, (double)v->n_tokens - 1, true,
                               &d, &err);
        if (st != LG_OK) {
            free(ids);
            json_decref(root);
            return srv_reply_error(c, 400, "%s%s", err.msg,
                                   st == LG_ERR_RANGE ? " (token ids of this model)" : "");
        }
        ids[i] = (int32_t)d;
    }
    json_decref(root);
    char *text = NULL;
    size_t len = 0;
    st = lg_tok_decode_alloc(v, ids, n_ids, special ? LG_DETOK_SHOW_SPECIAL : 0u, &text, &len,
                             &err);
    free(ids);
    if (st != LG_OK)
        return srv_reply_error(c, st == LG_ERR_NOMEM ? 503 : 400, "tokens: %s", err.msg);
    json_t *content = lg_json_text(text, len);
    free(text);
    if (!content)
        return srv_reply_error(c, 503, "out of memory");
    return srv_reply_json(c, 200, json_pack("{s:o}", "content", content));
}
