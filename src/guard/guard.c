/* guard.c: the per-request calls the server makes (see "Wiring" in guard.h): one choke point
 * for authentication, then admission (model allow-list, rate limits), input policy, tool
 * allow-list, end-of-request accounting and the audit record.
 *
 * Authentication never echoes the presented header; messages are fixed strings. When the
 * store holds no active key the server runs open (anonymous admin): the server must only
 * allow that on loopback (lg_guard_n_keys() == 0 → refuse a non-loopback bind). The key count
 * is re-read on each request, so `keys add` / `keys revoke` take effect without a restart. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "guard/guard.h"

struct lg_guard {
    struct lg_keys *keys;
    struct lg_limits *limits;
    struct lg_audit *audit;
    struct lg_policy *policy;
};

enum lg_scope lg_guard_route_scope(const char *path)
{
    static const char *const admin[] = LG_GUARD_ADMIN_ROUTES;
    if (!path)
        return LG_SCOPE_ADMIN;
    for (size_t i = 0; admin[i]; i++) {
        size_t n = strlen(admin[i]);
        if (!strncmp(path, admin[i], n) && (path[n] == '\0' || path[n] == '/' || path[n] == '?'))
            return LG_SCOPE_ADMIN;
    }
    return LG_SCOPE_GENERATE;
}

enum lg_status lg_guard_open(const struct lg_guard_config *cfg, struct lg_guard **out,
                             struct lg_err *err)
{
    *out = NULL;
    struct lg_guard *g = calloc(1, sizeof *g);
    if (!g)
        return lg_err_set(err, LG_ERR_NOMEM, "guard: out of memory");
    enum lg_status st = lg_keys_open(cfg->home, &g->keys, err);
    if (st == LG_OK)
        st = lg_audit_open(cfg->home, cfg->audit_content, &g->audit, err);
    if (st == LG_OK && !(g->limits = lg_limits_create(NULL, NULL)))
        st = lg_err_set(err, LG_ERR_NOMEM, "guard: out of memory");
    if (st == LG_OK) {
        if (cfg->policy_path)
            st = lg_policy_load(cfg->policy_path, &g->policy, err);
        else if (cfg->no_redact) {
            static const char none[] = "{\"output\":{\"builtin_redact\":[]}}";
            st = lg_policy_parse(none, sizeof none - 1, &g->policy, err);
        } else
            st = lg_policy_default(&g->policy, err);
    }
    if (st != LG_OK) {
        lg_guard_close(g);
        return st;
    }
    *out = g;
    return LG_OK;
}

void lg_guard_close(struct lg_guard *g)
{
    if (!g)
        return;
    lg_keys_close(g->keys);
    lg_audit_close(g->audit);
    lg_limits_destroy(g->limits);
    lg_policy_free(g->policy);
    free(g);
}

int64_t lg_guard_n_keys(struct lg_guard *g)
{
    return lg_keys_count_active(g->keys);
}
const struct lg_policy *lg_guard_policy(const struct lg_guard *g)
{
    return g->policy;
}

static enum lg_status reply(struct lg_guard_reply *r, int status, const char *code, const char *msg,
                            int64_t retry)
{
    r->http_status = status;
    r->retry_after_s = retry;
    snprintf(r->code, sizeof r->code, "%s", code);
    snprintf(r->message, sizeof r->message, "%s", msg);
    return status == 429 ? LG_ERR_BUSY : LG_ERR_INVALID_ARG;
}

enum lg_status lg_guard_authenticate(struct lg_guard *g, const char *authorization,
                                     const char *path, struct lg_identity *id,
                                     struct lg_guard_reply *r)
{
    memset(id, 0, sizeof *id);
    memset(r, 0, sizeof *r);
    int64_t n = lg_keys_count_active(g->keys);
    if (n < 0)
        return reply(r, 500, "internal_error", "key store unavailable", 0);
    if (n == 0) {
        id->anonymous = true;
        id->key.scope = LG_SCOPE_ADMIN;
        return LG_OK;
    }
    if (!authorization || !*authorization)
        return reply(r, 401, "invalid_api_key",
                     "missing API key: send 'Authorization: Bearer <key>'", 0);
    const char *s = authorization;
    while (*s == ' ')
        s++;
    if (strncasecmp(s, "Bearer ", 7) != 0)
        return reply(r, 401, "invalid_api_key", "Authorization must be 'Bearer <key>'", 0);
    s += 7;
    while (*s == ' ')
        s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    struct lg_err e = {0};
    if (len == 0 || len > 256 || lg_keys_lookup(g->keys, s, len, &id->key, &e) != LG_OK) {
        memset(id, 0, sizeof *id);
        if (e.code == LG_ERR_IO)
            return reply(r, 500, "internal_error", "key store unavailable", 0);
        return reply(r, 401, "invalid_api_key", "invalid API key", 0);
    }
    if (lg_guard_route_scope(path) == LG_SCOPE_ADMIN && id->key.scope != LG_SCOPE_ADMIN)
        return reply(r, 403, "insufficient_scope", "this route needs an admin key", 0);
    return LG_OK;
}

enum lg_status lg_guard_admit(struct lg_guard *g, struct lg_identity *id, const char *model,
                              struct lg_guard_reply *r)
{
    memset(r, 0, sizeof *r);
    if (id->anonymous) {
        id->admitted = true;
        return LG_OK;
    }
    if (model && *model && !lg_keys_model_allowed(id->key.models, model))
        return reply(r, 403, "model_not_allowed", "this key may not use that model", 0);
    int64_t retry = 0;
    enum lg_limit_verdict v = lg_limits_admit(g->limits, id->key.name, &id->key.limits, &retry);
    if (v != LG_LIMIT_OK) {
        char msg[LG_GUARD_MSG_MAX];
        snprintf(msg, sizeof msg, "rate limit reached (%s); retry after %lld s",
                 lg_limit_verdict_name(v), (long long)retry);
        return reply(r, 429, "rate_limit_exceeded", msg, retry);
    }
    id->admitted = true;
    return LG_OK;
}

enum lg_status lg_guard_check_input(struct lg_guard *g, const struct lg_identity *id,
                                    const char *text, size_t n, struct lg_decision *d,
                                    struct lg_guard_reply *r)
{
    (void)id; /* per-key input policies: not in the v1 format */
    memset(r, 0, sizeof *r);
    struct lg_err e = {0};
    if (lg_policy_check_input(g->policy, text, n, d, &e) != LG_OK)
        return reply(r, 500, "internal_error", "policy check failed", 0);
    if (d->denied)
        return reply(r, 400, "content_policy", d->message, 0);
    return LG_OK;
}

bool lg_guard_tool_allowed(struct lg_guard *g, const struct lg_identity *id, const char *model,
                           const char *tool)
{
    return lg_policy_tool_allowed(g->policy, model, id->anonymous ? NULL : id->key.name, tool);
}

void lg_guard_finish(struct lg_guard *g, struct lg_identity *id, int64_t n_tokens)
{
    if (!id->admitted)
        return;
    id->admitted = false;
    if (!id->anonymous)
        lg_limits_release(g->limits, id->key.name, &id->key.limits, n_tokens);
}

enum lg_status lg_guard_audit(struct lg_guard *g, const struct lg_audit_rec *rec,
                              struct lg_err *err)
{
    return lg_audit_append(g->audit, rec, NULL, err);
}
