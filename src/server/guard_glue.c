/* guard_glue.c: the guardrails (src/guard/guard.h "Wiring") applied to HTTP requests —
 * authentication, admission, the tool allow-list and input policy, the output filter between
 * the engine's events and the writers, and the audit record at the end of each request.
 * server.c owns the connections and calls in here at fixed points (server_int.h); nothing
 * here touches libmicrohttpd beyond reading request headers and the client address.
 *
 * Who writes the audit record: for a plain request, srv_guard_conn_end() when MHD reports it
 * complete; for a submitted generation, the srv_gen (srv_guard_gen_adopt moves the slot and
 * the prompt text to it), at its last release, which may be on the engine thread.
 * Invariant: the admission slot taken by lg_guard_admit is released exactly once, by
 * whichever of the two holds the record. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/err.h"
#include "base/sha256.h"
#include "guard/guard.h"
#include "server/server_int.h"

/* ---- decisions, replies, audit records ---- */

static void add_decision(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_decision(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strnlen(buf, cap);
    if (n + 2 >= cap)
        return;
    if (n)
        buf[n++] = ';';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* "POST /v1/chat/completions": the method and path only (no query, no body). */
static void route_str(const struct srv_conn *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s %.70s", srv_method_name(c->method), c->url);
}

static void client_addr(struct MHD_Connection *mc, char *out, size_t cap)
{
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)cap);
}

/* A guard refusal: 401 (+ WWW-Authenticate), 403, 429 (+ Retry-After), 400 content_policy,
 * in the route's error style; OpenAI errors carry the guard's code. */
static int reply_guard(struct srv_conn *c, const struct lg_guard_reply *r)
{
    c->security = true;
    unsigned status = r->http_status >= 400 && r->http_status <= 599 ? (unsigned)r->http_status
                                                                      : 500;
    json_t *body = srv_error_body(c->style, status, r->message);
    if (!body)
        return MHD_NO;
    if (c->style == SRV_ERR_OPENAI) {
        json_t *e = json_object_get(body, "error");
        if (e && r->code[0] && json_object_set_new(e, "code", json_string(r->code)) != 0) {
            json_decref(body); /* never the refusal without its code */
            return srv_reply_json(c, status, NULL);
        }
    }
    if (status == 429) {
        char retry[24];
        snprintf(retry, sizeof retry, "%lld",
                 (long long)(r->retry_after_s > 0 ? r->retry_after_s : 1));
        return srv_reply_json_hdr(c, status, body, "Retry-After", retry);
    }
    if (status == 401)
        return srv_reply_json_hdr(c, status, body, "WWW-Authenticate", "Bearer");
    return srv_reply_json_hdr(c, status, body, NULL, NULL);
}

static void audit_write(struct lg_server *s, const struct lg_audit_rec *rec)
{
    struct lg_err e = {0};
    if (lg_guard_audit(s->cfg.guard, rec, &e) != LG_OK)
        fprintf(stderr, "localgemma serve: audit log: %s\n", e.msg);
}

/* End of a request that did not start a generation (or whose submit failed): release the
 * admission slot and write its audit record. MHD thread. */
void srv_guard_conn_end(struct srv_conn *c, bool completed_ok)
{
    struct lg_server *s = c->srv;
    lg_guard_finish(s->cfg.guard, &c->id, 0);
    char route[80], client[INET6_ADDRSTRLEN];
    route_str(c, route, sizeof route);
    client_addr(c->mc, client, sizeof client);
    unsigned st = c->responded ? c->status : 0;
    const char *fin = !completed_ok || !st ? "cancelled"
                      : st == 401 || st == 403 || st == 429 || c->security ? "rejected"
                      : st < 400 ? "ok" : "error";
    struct lg_audit_rec rec = {
        .key = c->id.key.name, .route = route, .model = c->model, .status = (int)st,
        .latency_ms = (srv_mono_ns() - c->t0_ns) / 1000000, .finish = fin,
        .decisions = c->decisions, .client = client, .security = c->security,
        .prompt_text = c->prompt_text};
    audit_write(s, &rec);
}

static void lp_clear(struct srv_gen *g)
{
    for (int32_t i = 0; i < g->n_lp; i++) {
        struct lg_gen_logprob *l = &g->lp[i];
        for (int32_t j = 0; j < l->n_top; j++)
            free((void *)(uintptr_t)l->top[j].token);
        free((void *)(uintptr_t)l->top);
        free((void *)(uintptr_t)l->token);
    }
    g->n_lp = 0;
}

/* The audit record of a generation (any thread: the last reference may be the engine's). */
static void gen_audit(struct srv_gen *g)
{
    struct lg_server *s = g->srv;
    bool have_usage = g->usage.prompt_tokens || g->usage.completion_tokens;
    int64_t n_prompt = g->usage.prompt_tokens;
    /* no DONE (cancelled, error): each text/tool event carried at least one token */
    int64_t n_completion = have_usage ? g->usage.completion_tokens : g->n_deltas;
    lg_guard_finish(s->cfg.guard, &g->id, n_prompt + n_completion);
    if (g->red) {
        char sum[160];
        lg_redactor_summary(g->red, sum, sizeof sum);
        add_decision(g->decisions, sizeof g->decisions, "redact:%s", sum[0] ? sum : "none");
    }
    if (g->denied)
        add_decision(g->decisions, sizeof g->decisions, "output:deny:%s", g->deny_rule);
    if (g->answer.n)
        srv_buf_put(&g->answer, "", 1);
    unsigned st = g->status;
    struct lg_audit_rec rec = {
        .key = g->id.key.name, .route = g->route, .model = g->p->req.model, .status = (int)st,
        .n_prompt = n_prompt, .n_completion = n_completion,
        .latency_ms = (srv_mono_ns() - g->t0_ns) / 1000000,
        .finish = g->finish_name ? g->finish_name : "cancelled", .decisions = g->decisions,
        .client = g->client, .security = g->denied || st == 401 || st == 403 || st == 429,
        .prompt_text = g->prompt_text,
        .answer_text = g->answer.n && !g->answer.oom ? g->answer.p : NULL};
    audit_write(s, &rec);
}

/* ---- the output filter (policy redaction / deny) between the engine and the writers ----
 * Text events go through one lg_redactor, which holds back up to lg_policy_holdback() bytes;
 * when the channel changes (reasoning → content → tool call → end) the held-back text is
 * flushed first, so the event order is kept. Logprobs of held-back text wait with it and
 * are sent with the flushed text only if no redaction happened meanwhile (a redacted
 * token's logprob entry would reveal it); otherwise they are dropped. All under g->mu. */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static bool lp_push(struct srv_gen *g, const struct lg_gen_event *ev)
{
    for (int32_t i = 0; i < ev->n_logprobs; i++) {
        if (g->n_lp == g->cap_lp) {
            int32_t cap = g->cap_lp ? g->cap_lp * 2 : 16;
            struct lg_gen_logprob *np = realloc(g->lp, (size_t)cap * sizeof *np);
            if (!np)
                return false;
            g->lp = np;
            g->cap_lp = cap;
        }
        const struct lg_gen_logprob *src = &ev->logprobs[i];
        struct lg_gen_logprob *d = &g->lp[g->n_lp++];
        memset(d, 0, sizeof *d);
        d->logprob = src->logprob;
        d->n_token = src->n_token;
        d->token = dupn(src->token, src->n_token);
        struct lg_gen_top_logprob *top =
            src->n_top > 0 ? calloc((size_t)src->n_top, sizeof *top) : NULL;
        d->top = top;
        if (!d->token || (src->n_top > 0 && !top))
            return false;
        for (int32_t j = 0; j < src->n_top; j++) {
            top[j].logprob = src->top[j].logprob;
            top[j].n_token = src->top[j].n_token;
            top[j].token = dupn(src->top[j].token, src->top[j].n_token);
            d->n_top = j + 1;
            if (!top[j].token)
                return false;
        }
    }
    return true;
}

/* A text event as the client gets it. */
static void gen_text(struct srv_gen *g, enum lg_gen_event_kind kind, const char *text, size_t n,
                     bool with_lp)
{
    struct lg_gen_event e = {.kind = kind, .text = text, .n_text = n};
    if (with_lp && g->n_lp > 0) {
        e.logprobs = g->lp;
        e.n_logprobs = g->n_lp;
    }
    if (n == 0 && e.n_logprobs == 0)
        return;
    if (kind == LG_GEN_EV_CONTENT && g->srv->cfg.audit_content)
        srv_buf_put(&g->answer, text, n);
    srv_gen_format(g, &e);
}

/* Stops the generation: an output deny rule matched (or the filter failed: fail closed). */
static void gen_deny(struct srv_gen *g)
{
    struct lg_decision d = {0};
    lg_redactor_denied(g->red, &d);
    g->denied = true;
    snprintf(g->deny_rule, sizeof g->deny_rule, "%s", d.rule[0] ? d.rule : "filter-error");
    atomic_store(&g->p->req.cancel, true);
}

static void red_flush(struct srv_gen *g)
{
    if (!g->red || g->red_kind < 0 || g->denied) {
        lp_clear(g);
        g->red_kind = -1;
        return;
    }
    const char *o = "";
    size_t n = 0;
    struct lg_err e = {0};
    bool ok = lg_redactor_flush(g->red, &o, &n, &e) == LG_OK;
    bool denied = !ok || lg_redactor_denied(g->red, NULL);
    gen_text(g, (enum lg_gen_event_kind)g->red_kind, o, n,
             !denied && lg_redactor_count(g->red) == g->red_count0);
    if (denied)
        gen_deny(g);
    lp_clear(g);
    g->red_count0 = lg_redactor_count(g->red);
    g->red_kind = -1;
}

/* One engine event through the filter to the writer. */
void srv_gen_filter(struct srv_gen *g, const struct lg_gen_event *ev)
{
    bool text = ev->kind == LG_GEN_EV_CONTENT || ev->kind == LG_GEN_EV_REASONING;
    bool terminal = ev->kind == LG_GEN_EV_DONE || ev->kind == LG_GEN_EV_ERROR;
    if (!terminal)
        g->n_deltas++;
    if (!(text && g->red) || g->red_kind != (int)ev->kind)
        red_flush(g); /* the channel changes or ends */
    if (g->denied) {
        if (terminal) { /* end the answer as filtered, whatever the engine says next */
            struct lg_gen_event d = {.kind = LG_GEN_EV_DONE,
                                     .finish = SRV_FINISH_CONTENT_FILTER};
            if (ev->kind == LG_GEN_EV_DONE) {
                d.usage = ev->usage;
                d.timings = ev->timings;
            } else {
                d.usage.completion_tokens = g->n_deltas;
            }
            g->usage = d.usage;
            srv_gen_format(g, &d);
        }
        return;
    }
    if (text && g->red) {
        g->red_kind = (int)ev->kind;
        const char *o = "";
        size_t n = 0;
        struct lg_err e = {0};
        if (!lp_push(g, ev) ||
            lg_redactor_feed(g->red, ev->text ? ev->text : "", ev->n_text, &o, &n, &e) !=
                LG_OK) {
            gen_deny(g);
            return;
        }
        gen_text(g, ev->kind, o, n, false);
        if (lg_redactor_denied(g->red, NULL)) {
            gen_deny(g);
            lp_clear(g);
        }
        return;
    }
    if (ev->kind == LG_GEN_EV_CONTENT && g->srv->cfg.audit_content)
        srv_buf_put(&g->answer, ev->text, ev->n_text);
    srv_gen_format(g, ev);
}

const char *srv_finish_name(enum lg_finish f)
{
    switch (f) {
    case LG_FINISH_STOP: return "stop";
    case LG_FINISH_LENGTH: return "length";
    case LG_FINISH_TOOL_CALLS: return "tool_calls";
    case LG_FINISH_LOAD: return "load";
    case LG_FINISH_UNLOAD: return "unload";
    default: return "content_filter";
    }
}

/* ---- generations: admission with the model, tool allow-list, input policy ---- */

/* One piece of client text through the input policy; true (reply queued) when denied. */
static bool input_denied(struct srv_conn *c, const char *t, size_t n, struct srv_buf *all,
                         int *ret)
{
    if (!t || !n)
        return false;
    if (all) {
        if (all->n)
            srv_buf_put(all, "\n", 1);
        srv_buf_put(all, t, n);
    }
    struct lg_decision d = {0};
    struct lg_guard_reply r;
    if (lg_guard_check_input(c->srv->cfg.guard, &c->id, t, n, &d, &r) == LG_OK)
        return false;
    add_decision(c->decisions, sizeof c->decisions, "input:deny:%s",
                 d.rule[0] ? d.rule : r.code);
    *ret = reply_guard(c, &r);
    return true;
}

/* guard.h steps 2 and 3 for a parsed generation request: admission with the model name,
 * the tool allow-list for every declared tool, the input policy over every piece of text
 * the client sent. false = refused (reply queued in *ret). */
bool srv_guard_generation(struct srv_conn *c, const struct srv_parsed *p, int *ret)
{
    struct lg_server *s = c->srv;
    struct lg_guard *gd = s->cfg.guard;
    const struct lg_gen_req *q = &p->req;
    struct lg_guard_reply r;
    snprintf(c->model, sizeof c->model, "%s", q->model);
    if (lg_guard_admit(gd, &c->id, q->model, &r) != LG_OK) {
        add_decision(c->decisions, sizeof c->decisions, "admit:%s", r.code);
        *ret = reply_guard(c, &r);
        return false;
    }
    size_t i;
    json_t *t;
    if (q->tools) {
        json_array_foreach(q->tools, i, t) {
            const char *name = json_string_value(json_object_get(t, "name"));
            if (name && !lg_guard_tool_allowed(gd, &c->id, q->model, name)) {
                add_decision(c->decisions, sizeof c->decisions, "tool:deny");
                memset(&r, 0, sizeof r);
                r.http_status = 403;
                snprintf(r.code, sizeof r.code, "tool_not_allowed");
                snprintf(r.message, sizeof r.message, "tool '%.64s' is not allowed for this "
                         "key or model by the server's policy", name);
                *ret = reply_guard(c, &r);
                return false;
            }
        }
        add_decision(c->decisions, sizeof c->decisions, "tools:allow");
    }
    struct srv_buf all = {0};
    struct srv_buf *keep = s->cfg.audit_content ? &all : NULL;
    bool denied = false;
    if (q->kind == LG_PROMPT_CHAT && q->messages) {
        json_array_foreach(q->messages, i, t) {
            const char *keys[] = {"content", "thinking"};
            for (size_t k = 0; k < 2 && !denied; k++) {
                json_t *v = json_object_get(t, keys[k]);
                if (json_is_string(v))
                    denied = input_denied(c, json_string_value(v), json_string_length(v), keep,
                                          ret);
            }
            if (denied)
                break;
        }
    } else {
        const char *texts[] = {q->system, q->prompt, q->suffix};
        for (size_t k = 0; k < 3 && !denied; k++)
            denied = texts[k] && input_denied(c, texts[k], strlen(texts[k]), keep, ret);
    }
    if (all.n && !all.oom) {
        srv_buf_put(&all, "", 1);
        c->prompt_text = all.p;
    } else {
        srv_buf_free(&all);
    }
    if (!denied)
        add_decision(c->decisions, sizeof c->decisions, "input:allow");
    return !denied;
}

/* ---- authentication ---- */

/* The static key list (no guard): SHA-256 of the Bearer token against each digest. */
static bool key_ok(const struct lg_server *s, const char *auth)
{
    if (s->cfg.n_keys == 0)
        return true;
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *key = auth + 7;
    while (*key == ' ')
        key++;
    uint8_t d[LG_SHA256_BYTES];
    lg_sha256(key, strlen(key), d);
    /* constant time over every key: no early exit on the first match or byte */
    unsigned match = 0;
    for (size_t i = 0; i < s->cfg.n_keys; i++) {
        unsigned diff = 0;
        for (size_t j = 0; j < LG_SHA256_BYTES; j++)
            diff |= (unsigned)(d[j] ^ s->cfg.key_digests[i][j]);
        match |= (unsigned)(diff == 0);
    }
    return match != 0;
}

bool srv_guard_authenticate(struct srv_conn *c, int *ret)
{
    struct lg_server *s = c->srv;
    const char *auth = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Authorization");
    if (!s->cfg.guard) {
        if (key_ok(s, auth))
            return false;
        const char *msg = "missing or invalid API key (Authorization: Bearer KEY)";
        *ret = srv_reply_json_hdr(c, 401, srv_error_body(c->style, 401, msg),
                                  "WWW-Authenticate", "Bearer");
        return true;
    }
    c->audit = true;
    if (s->cfg.no_auth) { /* loopback only (checked at start) */
        memset(&c->id, 0, sizeof c->id);
        c->id.anonymous = true;
        c->id.key.scope = LG_SCOPE_ADMIN;
        add_decision(c->decisions, sizeof c->decisions, "auth:none");
        return false;
    }
    struct lg_guard_reply r;
    if (lg_guard_authenticate(s->cfg.guard, auth, c->url, &c->id, &r) != LG_OK) {
        add_decision(c->decisions, sizeof c->decisions, "auth:%s", r.code);
        *ret = reply_guard(c, &r);
        return true;
    }
    if (c->id.anonymous && !s->loopback) {
        /* every key was revoked while serving a non-loopback address: closed, not open */
        memset(&r, 0, sizeof r);
        r.http_status = 401;
        snprintf(r.code, sizeof r.code, "invalid_api_key");
        snprintf(r.message, sizeof r.message, "no active API key: this server listens on a "
                 "non-loopback address and refuses anonymous requests");
        add_decision(c->decisions, sizeof c->decisions, "auth:no_active_key");
        *ret = reply_guard(c, &r);
        return true;
    }
    add_decision(c->decisions, sizeof c->decisions, "auth:%s", c->id.anonymous ? "open" : "key");
    return false;
}

/* ---- admission of the other routes ---- */

bool srv_guard_admit_route(struct srv_conn *c, int *ret)
{
    struct lg_guard *gd = c->srv->cfg.guard;
    if (!gd || !c->audit)
        return false;
    struct lg_guard_reply r;
    if (lg_guard_admit(gd, &c->id, NULL, &r) == LG_OK)
        return false;
    add_decision(c->decisions, sizeof c->decisions, "admit:%s", r.code);
    *ret = reply_guard(c, &r);
    return true;
}

/* ---- a generation's share: filter state in, audit record out ---- */

bool srv_guard_gen_init(struct srv_gen *g, const struct srv_conn *c)
{
    struct lg_guard *gd = c->srv->cfg.guard;
    g->red_kind = -1;
    if (!gd)
        return true;
    const struct lg_policy *pol = lg_guard_policy(gd);
    if (lg_policy_holdback(pol) > 0 && !(g->red = lg_redactor_create(pol)))
        return false;
    g->id = c->id;
    g->t0_ns = c->t0_ns;
    route_str(c, g->route, sizeof g->route);
    client_addr(c->mc, g->client, sizeof g->client);
    snprintf(g->decisions, sizeof g->decisions, "%s", c->decisions);
    return true;
}

void srv_guard_gen_adopt(struct srv_gen *g, struct srv_conn *c)
{
    if (!c->srv->cfg.guard)
        return;
    pthread_mutex_lock(&g->mu);
    g->audit = true;
    g->prompt_text = c->prompt_text;
    c->prompt_text = NULL;
    pthread_mutex_unlock(&g->mu);
    c->id.admitted = false;
}

void srv_guard_gen_end(struct srv_gen *g)
{
    if (g->audit)
        gen_audit(g);
    lg_redactor_destroy(g->red);
    lp_clear(g);
    free(g->lp);
    free(g->prompt_text);
    srv_buf_free(&g->answer);
}
