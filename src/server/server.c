/* server.c: the libmicrohttpd daemon — admission (Host allow-list, CORS, API key, route,
 * method, body size), body collection, replies, and the bridge between a connection and an
 * engine request (struct srv_gen).
 *
 * One MHD thread (internal polling, epoll) runs every callback; connections that wait on
 * the engine are suspended, never parked in a thread, so a thousand slow clients cost
 * memory, not threads. The engine thread touches only struct srv_gen, under its mutex.
 *
 * srv_gen lifetime: references are held by the engine (until its terminal event), by the
 * connection (until MHD reports the request complete) and, when streaming, by the MHD
 * response (until its free callback). The last release frees it. A connection is
 * suspended only by the MHD thread and resumed only by whoever clears gen->suspended under
 * the mutex, so exactly one resume follows each suspend, and a suspended connection cannot
 * be closed under us (MHD does not time out or close suspended connections).
 *
 * Guardrails (cfg.guard): guard_glue.c does the work; this file calls it at fixed points —
 * authentication after the Host/CORS checks (401/403; /, /health open), admission with rate
 * limits for every other route once its headers are in, for generations in srv_generate()
 * once the model is known (403/429, then the tool allow-list and the input policy), the
 * output filter on every engine event (srv_gen_filter, under gen->mu), and the audit record
 * at the end: on_completed() for plain requests, the last gen_release() for generations. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "json/json.h"
#include "server/server_int.h"

enum {
    SRV_STREAM_BLOCK = 8 * 1024,
    SRV_MAX_HEADERS = 100,            /* header fields per request (hardening.md G9) */
    SRV_MAX_HEADER_BYTES = 16 * 1024, /* names + values (G9) */
    SRV_MAX_URL_BYTES = 8 * 1024,     /* request target (G9: 414) */
    SRV_IDLE_TRIM_TICKS = 10          /* watchdog ticks (100 ms) idle before malloc_trim */
};

int64_t srv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- routes ---- */

static const struct srv_route routes[] = {
    {"/", false, M_GET | M_HEAD, srv_route_root, SRV_R_ROOT},
    {"/health", false, M_GET | M_HEAD, srv_route_health, SRV_R_HEALTH},
    {"/api/version", false, M_GET | M_HEAD, srv_route_version, SRV_R_VERSION},
    {"/metrics", false, M_GET, srv_route_metrics, SRV_R_METRICS},
    {"/v1/chat/completions", false, M_POST, srv_route_openai_chat, SRV_R_OAI_CHAT},
    {"/v1/completions", false, M_POST, srv_route_openai_completions, SRV_R_OAI_COMPLETIONS},
    {"/v1/models", false, M_GET, srv_route_openai_models, SRV_R_OAI_MODELS},
    {"/v1/models/", true, M_GET, srv_route_openai_model, SRV_R_OAI_MODELS},
    {"/api/generate", false, M_POST, srv_route_ollama_generate, SRV_R_OLLAMA_GENERATE},
    {"/api/chat", false, M_POST, srv_route_ollama_chat, SRV_R_OLLAMA_CHAT},
    {"/api/tags", false, M_GET | M_HEAD, srv_route_ollama_tags, SRV_R_OLLAMA_TAGS},
    {"/api/show", false, M_POST, srv_route_ollama_show, SRV_R_OLLAMA_SHOW},
    {"/api/ps", false, M_GET, srv_route_ollama_ps, SRV_R_OLLAMA_PS},
    {"/api/delete", false, M_DELETE, srv_route_ollama_delete, SRV_R_OLLAMA_DELETE},
    {"/api/pull", false, M_POST, srv_route_ollama_pull, SRV_R_OLLAMA_PULL},
    {"/tokenize", false, M_POST, srv_route_tokenize, SRV_R_OTHER},
    {"/detokenize", false, M_POST, srv_route_detokenize, SRV_R_OTHER},
};

static unsigned method_bit(const char *m)
{
    if (!strcmp(m, "GET")) return M_GET;
    if (!strcmp(m, "HEAD")) return M_HEAD;
    if (!strcmp(m, "POST")) return M_POST;
    if (!strcmp(m, "DELETE")) return M_DELETE;
    if (!strcmp(m, "OPTIONS")) return M_OPTIONS;
    return 0;
}

static const char *const method_names[] = {"GET", "HEAD", "POST", "DELETE", "OPTIONS"};

const char *srv_method_name(unsigned m)
{
    for (unsigned i = 0; i < 5; i++)
        if (m == (1u << i))
            return method_names[i];
    return "?";
}

static void allow_header(unsigned methods, char *out, size_t n)
{
    out[0] = '\0';
    for (unsigned i = 0; i < 5; i++) {
        if (!(methods & (1u << i)))
            continue;
        if (out[0])
            strncat(out, ", ", n - strlen(out) - 1);
        strncat(out, method_names[i], n - strlen(out) - 1);
    }
}

/* ---- accessors for route files ---- */

const char *srv_conn_body(const struct srv_conn *c, size_t *n)
{
    *n = c->body.n;
    return c->body.p ? c->body.p : "";
}

const struct lg_server_config *srv_conn_config(const struct srv_conn *c)
{
    return &c->srv->cfg;
}

const char *srv_conn_url(const struct srv_conn *c)
{
    return c->url;
}

bool srv_conn_is_head(const struct srv_conn *c)
{
    return c->method == M_HEAD;
}

const struct lg_engine_ops *srv_conn_engine(const struct srv_conn *c, void **self)
{
    *self = c->srv->cfg.engine_self;
    return c->srv->cfg.engine;
}

/* ---- replies ---- */

unsigned srv_status_http(enum lg_status st)
{
    switch (st) {
    case LG_OK: return 200;
    case LG_ERR_FORMAT:
    case LG_ERR_INVALID_ARG:
    case LG_ERR_UNSUPPORTED:
    case LG_ERR_CONTEXT: return 400;
    case LG_ERR_RANGE: return 400;
    case LG_ERR_NOT_FOUND: return 404;
    case LG_ERR_BUSY:
    case LG_ERR_NOMEM: return 503;
    case LG_ERR_CANCELLED: return 499;
    default: return 500;
    }
}

static void log_request(const struct srv_conn *c, unsigned status)
{
    if (!c->srv->cfg.log_requests)
        return;
    /* path only: never bodies, queries or headers (no prompt text in logs) */
    fprintf(stderr, "localgemma serve: %s %.200s %u %.1fms\n", srv_method_name(c->method),
            c->url, status, (double)(srv_mono_ns() - c->t0_ns) / 1e6);
}

static struct srv_sock *conn_sock(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The request on mc is in, or is being answered: its deadline (see "connection tracking"
 * below) is lifted; from here MHD's idle timeout rules until the response is out
 * (on_completed then sets the keep-alive deadline). Under socks_mu, so the watchdog either
 * wrote its 408 and shut the socket down before (the response then fails to go out) or never
 * will: a 408 is never mixed into a response. */
static void sock_request_in(struct lg_server *s, struct MHD_Connection *mc)
{
    struct srv_sock *k = conn_sock(mc);
    if (!k)
        return;
    pthread_mutex_lock(&s->socks_mu);
    k->deadline_ns = 0;
    pthread_mutex_unlock(&s->socks_mu);
}

static int queue(struct srv_conn *c, unsigned status, struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    sock_request_in(c->srv, c->mc);
    if (c->origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", c->origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
    enum MHD_Result ok = MHD_queue_response(c->mc, status, r);
    MHD_destroy_response(r);
    c->responded = true;
    c->status = status;
    srv_metrics_request(c->rid, status);
    log_request(c, status);
    return ok;
}

int srv_reply_text(struct srv_conn *c, unsigned status, const char *content_type,
                   const char *text, size_t n)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type);
    return queue(c, status, r);
}

/* A response that could not be built (a JSON body that lost a field to a failed allocation
 * comes here as NULL): 503 with a constant body in the route's error shape, which needs no
 * allocation beyond MHD's response object. */
static int reply_oom(struct srv_conn *c)
{
    static const char openai[] =
        "{\"error\":{\"message\":\"out of memory building the response\",\"type\":"
        "\"unavailable_error\",\"param\":null,\"code\":503}}";
    static const char ollama[] = "{\"error\":\"out of memory building the response\"}";
    const bool oai = c->style == SRV_ERR_OPENAI;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        oai ? sizeof openai - 1 : sizeof ollama - 1, (void *)(oai ? openai : ollama),
        MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    return queue(c, 503, r);
}

int srv_reply_json_hdr(struct srv_conn *c, unsigned status, json_t *body, const char *hdr,
                       const char *val)
{
    struct srv_buf b = {0};
    srv_buf_put_json(&b, body);
    json_decref(body);
    if (b.oom || !b.p) {
        srv_buf_free(&b);
        return reply_oom(c);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(b.n, b.p, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        srv_buf_free(&b);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    if (hdr)
        MHD_add_response_header(r, hdr, val);
    return queue(c, status, r);
}

int srv_reply_json(struct srv_conn *c, unsigned status, json_t *body_steal)
{
    if (!body_steal)
        return reply_oom(c);
    return srv_reply_json_hdr(c, status, body_steal, NULL, NULL);
}

json_t *srv_error_body(enum srv_err_style style, unsigned status, const char *msg)
{
    if (style == SRV_ERR_OPENAI)
        return srv_openai_error((int)status, msg);
    return json_pack("{s:o}", "error", lg_json_text(msg, strlen(msg)));
}

static int reply_error_hdr(struct srv_conn *c, unsigned status, const char *hdr,
                           const char *val, const char *msg)
{
    return srv_reply_json_hdr(c, status, srv_error_body(c->style, status, msg), hdr, val);
}

int srv_reply_error(struct srv_conn *c, unsigned status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reply_error_hdr(c, status, NULL, NULL, msg);
}

/* ---- for stream.c: replies produced on another thread ---- */

struct MHD_Connection *srv_conn_mhd(const struct srv_conn *c)
{
    return c->mc;
}

int srv_reply_response(struct srv_conn *c, unsigned status, struct MHD_Response *r)
{
    return queue(c, status, r);
}

bool srv_conn_draining(const struct srv_conn *c)
{
    return atomic_load(&c->srv->draining);
}

/* ---- generations ---- */

static void gen_release(struct srv_gen *g)
{
    pthread_mutex_lock(&g->mu);
    int left = --g->refs;
    pthread_mutex_unlock(&g->mu);
    if (left > 0)
        return;
    struct lg_server *s = g->srv;
    srv_guard_gen_end(g);
    pthread_mutex_lock(&s->gens_mu);
    if (g->prev)
        g->prev->next = g->next;
    else
        s->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    s->n_gens--;
    pthread_mutex_unlock(&s->gens_mu);
    srv_metrics_inflight(-1);
    srv_parsed_free(g->p);
    free(g->p);
    srv_buf_free(&g->out);
    srv_accum_free(&g->acc);
    srv_ndjson_free(&g->nd);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static bool is_openai(const struct srv_gen *g)
{
    return g->p->req.api == LG_API_OPENAI_CHAT || g->p->req.api == LG_API_OPENAI_COMPLETIONS;
}

void srv_gen_format(struct srv_gen *g, const struct lg_gen_event *ev)
{
    if (!g->p->req.stream)
        srv_accum_event(&g->acc, ev);
    else if (is_openai(g))
        srv_sse_event(&g->sse, ev, &g->out);
    else
        srv_ndjson_event(&g->nd, ev, &g->out);
}

/* Engine thread. Formats the event, wakes the connection, drops the engine's reference
 * after the terminal event. */
static void on_emit(void *ctx, const struct lg_gen_event *ev)
{
    struct srv_gen *g = ctx;
    bool terminal = ev->kind == LG_GEN_EV_DONE || ev->kind == LG_GEN_EV_ERROR;
    pthread_mutex_lock(&g->mu);
    if (!g->finished) {
        if (!g->first_seen && ev->kind <= LG_GEN_EV_TOOL_CALL) {
            g->first_seen = true;
            srv_metrics_ttft((double)(srv_mono_ns() - g->t_submit_ns) / 1e9);
        }
        if (ev->kind == LG_GEN_EV_DONE) {
            srv_metrics_tokens(ev->usage.prompt_tokens, ev->usage.completion_tokens);
            if (ev->timings.eval_ns > 0 && ev->usage.completion_tokens > 0)
                srv_metrics_tps((double)ev->usage.completion_tokens * 1e9 /
                                (double)ev->timings.eval_ns);
        }
        srv_gen_filter(g, ev);
        if (ev->kind == LG_GEN_EV_DONE && !g->denied) {
            g->usage = ev->usage;
            g->finish_name = srv_finish_name(ev->finish);
        } else if (terminal) {
            g->finish_name = g->denied ? "content_filter"
                             : ev->status == LG_ERR_CANCELLED ? "cancelled" : "error";
        }
        if (terminal)
            g->finished = true;
    }
    bool wake = g->suspended;
    g->suspended = false;
    struct MHD_Connection *mc = g->mc;
    pthread_mutex_unlock(&g->mu);
    if (wake)
        MHD_resume_connection(mc);
    if (terminal)
        gen_release(g);
}

/* MHD thread: hands buffered bytes to MHD, or suspends until the engine has more. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct srv_gen *g = cls;
    (void)pos;
    pthread_mutex_lock(&g->mu);
    size_t avail = g->out.n - g->out_pos;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, g->out.p + g->out_pos, n);
        g->out_pos += n;
        if (g->out_pos == g->out.n)
            g->out.n = g->out_pos = 0;
        pthread_mutex_unlock(&g->mu);
        return (ssize_t)n;
    }
    if (g->finished || g->out.oom) {
        bool bad = g->out.oom;
        pthread_mutex_unlock(&g->mu);
        return bad ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    g->suspended = true;
    MHD_suspend_connection(g->mc);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void stream_free(void *cls)
{
    gen_release(cls);
}

static void random_hex(char *out, size_t n_hex)
{
    static atomic_uint_fast64_t counter;
    uint64_t x = (uint64_t)srv_mono_ns() ^ ((uint64_t)getpid() << 32) ^
                 (atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n_hex; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out[i] = "0123456789abcdef"[(x * 0x2545F4914F6CDD1Dull) >> 60];
    }
    out[n_hex] = '\0';
}

static int reply_gen_result(struct srv_conn *c, struct srv_gen *g)
{
    struct srv_accum *a = &g->acc;
    if (a->failed)
        return srv_reply_error(c, srv_status_http(a->status), "%s", a->message);
    json_t *body = is_openai(g) ? srv_openai_body(&g->sse, a) : srv_ollama_body(&g->nd, a);
    if (!body) /* a field that could not be built never leaves as a response without it */
        return srv_reply_error(c, 500, "could not build the response (invalid tool-call "
                               "arguments from the model, or out of memory)");
    return srv_reply_json(c, 200, body);
}

int srv_generate(struct srv_conn *c, struct srv_parsed *p)
{
    struct lg_server *s = c->srv;
    const struct lg_engine_ops *eng = s->cfg.engine;
    if (s->cfg.guard && eng && !atomic_load(&s->draining)) {
        int ret = MHD_NO;
        if (!srv_guard_generation(c, p, &ret)) {
            srv_parsed_free(p);
            free(p);
            return ret;
        }
    }
    if (!eng || atomic_load(&s->draining)) {
        srv_parsed_free(p);
        free(p);
        if (!eng)
            return srv_reply_error(c, 503, "no inference engine in this build yet");
        return reply_error_hdr(c, 503, "Retry-After", "5", "server is shutting down");
    }
    struct srv_gen *g = calloc(1, sizeof *g);
    if (!g) {
        srv_parsed_free(p);
        free(p);
        return srv_reply_error(c, 503, "out of memory");
    }
    pthread_mutex_init(&g->mu, NULL);
    g->p = p;
    g->mc = c->mc;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    g->fd = ci ? (int)ci->connect_fd : -1;
    g->srv = s;
    g->refs = 2; /* connection + engine */
    if (!srv_guard_gen_init(g, c)) {
        pthread_mutex_destroy(&g->mu);
        free(g);
        srv_parsed_free(p);
        free(p);
        return srv_reply_error(c, 503, "out of memory");
    }
    bool openai = is_openai(g);
    p->reasoning_as_reasoning = s->cfg.reasoning_key_reasoning;
    char id[48] = "chatcmpl-";
    if (p->req.api == LG_API_OPENAI_COMPLETIONS)
        strcpy(id, "cmpl-");
    random_hex(id + strlen(id), 24);
    srv_sse_init(&g->sse, p->req.api == LG_API_OPENAI_CHAT, id, (int64_t)time(NULL),
                 p->req.model, p->include_usage, p->reasoning_as_reasoning);
    srv_ndjson_init(&g->nd, p->req.api == LG_API_OLLAMA_CHAT, p->req.model, NULL);
    if (p->req.stream && openai)
        srv_sse_begin(&g->sse, &g->out);
    p->req.emit = on_emit;
    p->req.emit_ctx = g;
    atomic_store(&p->req.cancel, false);
    pthread_mutex_lock(&s->gens_mu);
    g->next = s->gens;
    if (s->gens)
        s->gens->prev = g;
    s->gens = g;
    s->n_gens++;
    s->gen_since_trim = true;
    pthread_mutex_unlock(&s->gens_mu);
    srv_metrics_inflight(1);
    g->t_submit_ns = srv_mono_ns();

    struct lg_err err = {0};
    enum lg_status st = eng->submit(s->cfg.engine_self, &p->req, NULL, &err);
    if (st != LG_OK) {
        g->refs = 1; /* the engine took nothing */
        gen_release(g);
        if (st == LG_ERR_BUSY)
            return reply_error_hdr(c, 503, "Retry-After", "1",
                                   err.msg[0] ? err.msg : "server busy: the queue is full");
        return srv_reply_error(c, srv_status_http(st), "%s", err.msg[0] ? err.msg : "failed");
    }
    c->gen = g;
    srv_guard_gen_adopt(g, c); /* from here the srv_gen owns the slot and the audit record */
    if (!p->req.stream) {
        pthread_mutex_lock(&g->mu);
        bool done = g->finished;
        if (!done) {
            g->suspended = true;
            MHD_suspend_connection(c->mc);
        }
        pthread_mutex_unlock(&g->mu);
        return done ? reply_gen_result(c, g) : MHD_YES;
    }
    pthread_mutex_lock(&g->mu);
    g->refs++; /* the response's */
    pthread_mutex_unlock(&g->mu);
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, SRV_STREAM_BLOCK, stream_reader, g, stream_free);
    if (!r) {
        gen_release(g);
        atomic_store(&p->req.cancel, true);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type",
                            openai ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return queue(c, 200, r);
}

int srv_route_generation(struct srv_conn *c, srv_parse_fn parse)
{
    size_t n;
    const char *body = srv_conn_body(c, &n);
    struct srv_parsed *p = malloc(sizeof *p);
    if (!p)
        return srv_reply_error(c, 500, "out of memory");
    struct lg_err err = {0};
    enum lg_status st = parse(body, n, c->srv->cfg.max_body_bytes, p, &err);
    if (st != LG_OK) {
        srv_parsed_free(p);
        free(p);
        return srv_reply_error(c, srv_status_http(st), "%s", err.msg);
    }
    return srv_generate(c, p);
}

/* ---- connection tracking: request deadline (G9) and connection cap (G10) ----
 *
 * MHD's own timeout is an idle timeout: a client that trickles one header byte (or one body
 * byte) every few seconds would hold its connection for ever, and at MHD's connection limit
 * new clients wait in the listen backlog (a hang, not an answer). So every connection is
 * tracked here (MHD's socket context): a new one must deliver its whole first request
 * (request line, headers and body) within header_timeout_s of connecting; a keep-alive one
 * the headers of its next request within idle_timeout_s of the last response, and that
 * request's body within header_timeout_s of its headers. Past that the watchdog writes a
 * 408 (plain HTTP, and only while a request is arriving: under TLS the bytes would have to
 * be encrypted, and an idle keep-alive client could take a late 408 for the answer to its
 * next request) and shuts the socket down; MHD then closes it as a client hang-up. The
 * deadline is lifted once the request is in, or answered before its body (a 401, a 413 on
 * Content-Length): queue() lifts it. A connection over max_connections gets a 503 with
 * Retry-After at once and is closed a second later at the latest; MHD's own limit sits
 * SRV_REJECT_HEADROOM above ours so those rejects have room. */

enum { SRV_REJECT_HEADROOM = 256 };

static const char resp_408[] =
    "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    "Content-Length: 34\r\n\r\n{\"error\":\"request took too long\"}\n";
static const char resp_503_conns[] =
    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    "Content-Type: application/json\r\nContent-Length: 33\r\n\r\n"
    "{\"error\":\"too many connections\"}\n";

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct lg_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct srv_sock *k = ci ? calloc(1, sizeof *k) : NULL;
        *socket_context = k;
        if (!k)
            return; /* untracked: MHD's idle timeout still applies */
        k->fd = ci->connect_fd;
        int64_t now = srv_mono_ns();
        pthread_mutex_lock(&s->socks_mu);
        k->next = s->socks;
        if (s->socks)
            s->socks->prev = k;
        s->socks = k;
        s->n_socks++;
        srv_metrics_conn_open(1);
        if (s->n_socks > s->cfg.max_connections) {
            k->rejected = true;
            k->deadline_ns = now + 1000000000LL;
            if (!s->tls)
                (void)!send(k->fd, resp_503_conns, sizeof resp_503_conns - 1,
                            MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            k->deadline_ns = now + (int64_t)s->cfg.header_timeout_s * 1000000000LL;
        }
        pthread_mutex_unlock(&s->socks_mu);
        if (k->rejected)
            srv_metrics_rejected_conn();
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct srv_sock *k = *socket_context;
        if (!k)
            return;
        pthread_mutex_lock(&s->socks_mu);
        if (k->prev)
            k->prev->next = k->next;
        else
            s->socks = k->next;
        if (k->next)
            k->next->prev = k->prev;
        s->n_socks--;
        srv_metrics_conn_open(-1);
        pthread_mutex_unlock(&s->socks_mu);
        free(k);
        *socket_context = NULL;
    }
}

/* The watchdog's pass: shut down every connection past its deadline. */
static void socks_expire(struct lg_server *s)
{
    int64_t now = srv_mono_ns();
    unsigned n = 0;
    pthread_mutex_lock(&s->socks_mu);
    for (struct srv_sock *k = s->socks; k; k = k->next) {
        if (k->killed || !k->deadline_ns || now < k->deadline_ns)
            continue;
        if (!s->tls && !k->rejected && !k->served)
            (void)!send(k->fd, resp_408, sizeof resp_408 - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(k->fd, SHUT_RDWR);
        k->killed = true;
        n += !k->rejected && !k->served;
    }
    pthread_mutex_unlock(&s->socks_mu);
    for (unsigned i = 0; i < n; i++)
        srv_metrics_header_timeout();
}

/* While a connection is suspended MHD does not notice that the client hung up, and a
 * non-streamed request (or a stream during a long prefill) sends nothing that could fail.
 * This thread polls the sockets of suspended connections every 100 ms and sets the cancel
 * flag of any whose peer closed, so the engine stops within a step (hardening.md §6). The
 * fd stays valid while gen->suspended is true: MHD cannot close a suspended connection, and
 * the flag is cleared (under gen->mu, which we hold) before anyone resumes it.
 *
 * The same thread hands memory back after a burst: glibc keeps what a thread frees in that
 * thread's arena, resident (with parallel slots, megabytes after a burst of requests: RSS
 * stays up with nothing leaked). Once no generation has run for a second it calls
 * malloc_trim(0), once per burst: a pass over every arena's free lists, milliseconds for a
 * heap this size (60 ms for a pathological 130 MiB of small fragments), each arena locked in
 * turn, so at worst a request arriving just then waits that long for one malloc.
 *
 * Each tick it also closes the connections past their header deadline (socks_expire). */
static void *watchdog_main(void *arg)
{
    struct lg_server *s = arg;
    int idle_ticks = 0;
    while (!atomic_load(&s->watchdog_stop)) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&s->gens_mu);
        idle_ticks = s->n_gens > 0 ? 0 : idle_ticks + 1;
        bool trim = s->gen_since_trim && idle_ticks >= SRV_IDLE_TRIM_TICKS;
        if (trim)
            s->gen_since_trim = false;
        for (struct srv_gen *g = s->gens; g; g = g->next) {
            pthread_mutex_lock(&g->mu);
            if (g->suspended && !g->finished && g->fd >= 0 &&
                !atomic_load(&g->p->req.cancel)) {
                struct pollfd pfd = {.fd = g->fd, .events = POLLRDHUP};
                if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
                    atomic_store(&g->p->req.cancel, true);
            }
            pthread_mutex_unlock(&g->mu);
        }
        bool pending = s->gen_since_trim;
        pthread_mutex_unlock(&s->gens_mu);
        socks_expire(s);
        if (trim)
            malloc_trim(0);
        srv_metrics_heap_trim(pending, trim); /* after the trim: a test may measure then */
    }
    return NULL;
}

/* ---- admission ---- */

static bool host_allowed(const struct lg_server *s, const char *host_hdr)
{
    if (!host_hdr)
        return true; /* HTTP/1.0 without Host: not a browser, nothing to rebind */
    char host[256];
    size_t n = strlen(host_hdr);
    if (n >= sizeof host)
        return false;
    if (host_hdr[0] == '[') {
        const char *end = strchr(host_hdr, ']');
        if (!end)
            return false;
        n = (size_t)(end - host_hdr - 1);
        memcpy(host, host_hdr + 1, n);
        host[n] = '\0';
    } else {
        memcpy(host, host_hdr, n + 1);
        char *colon = strchr(host, ':');
        if (colon && !strchr(colon + 1, ':'))
            *colon = '\0';
    }
    n = strlen(host);
    if (n && host[n - 1] == '.')
        host[--n] = '\0';
    static const char *const local[] = {"localhost", "127.0.0.1", "::1"};
    for (size_t i = 0; i < 3; i++)
        if (!strcasecmp(host, local[i]))
            return true;
    if (!s->bind_wildcard && !strcasecmp(host, s->bind_host))
        return true;
    for (int i = 0; s->bind_wildcard && i < s->n_local_addrs; i++)
        if (!strcasecmp(host, s->local_addrs[i]))
            return true;
    for (size_t i = 0; i < s->cfg.n_allow_hosts; i++)
        if (!strcasecmp(host, s->cfg.allow_hosts[i]))
            return true;
    return false;
}

static const char *origin_allowed(const struct lg_server *s, const char *origin)
{
    for (size_t i = 0; i < s->cfg.n_cors_origins; i++) {
        const char *o = s->cfg.cors_origins[i];
        if (!strcmp(o, "*") || !strcasecmp(o, origin))
            return origin;
    }
    return NULL;
}

static bool is_generation(enum srv_route_id r)
{
    return r == SRV_R_OAI_CHAT || r == SRV_R_OAI_COMPLETIONS || r == SRV_R_OLLAMA_GENERATE ||
           r == SRV_R_OLLAMA_CHAT;
}

static const struct srv_route *find_route(const char *url, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct srv_route *r = &routes[i];
        bool hit = r->prefix ? (!strncmp(url, r->path, strlen(r->path)) &&
                                url[strlen(r->path)] != '\0')
                             : !strcmp(url, r->path);
        if (hit) {
            *path_known = true;
            return r;
        }
    }
    return NULL;
}

static enum MHD_Result count_header_bytes(void *cls, enum MHD_ValueKind kind,
                                          const char *key, const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " + CRLF */
    return MHD_YES;
}

/* First call for a request: everything decided from the request line and headers. Returns
 * true when a response was queued (the body, if any, is then discarded). */
static bool admit(struct srv_conn *c, const char *method, int *ret)
{
    struct lg_server *s = c->srv;
    struct MHD_Connection *mc = c->mc;
    c->method = method_bit(method);
    bool known;
    c->route = find_route(c->url, &known);
    if (c->route)
        c->rid = c->route->id; /* for metrics, even when refused below */
    if (strlen(c->url) > SRV_MAX_URL_BYTES) {
        *ret = reply_error_hdr(c, 414, NULL, NULL, "request target longer than 8192 bytes");
        return true;
    }
    size_t header_bytes = 0;
    int n_headers = MHD_get_connection_values(mc, MHD_HEADER_KIND, count_header_bytes,
                                              &header_bytes);
    if (n_headers > SRV_MAX_HEADERS || header_bytes > SRV_MAX_HEADER_BYTES) {
        char msg[120];
        snprintf(msg, sizeof msg, "request headers too large (%d fields, %zu bytes; at most "
                 "%d fields, %d bytes)", n_headers, header_bytes, SRV_MAX_HEADERS,
                 SRV_MAX_HEADER_BYTES);
        *ret = reply_error_hdr(c, 431, NULL, NULL, msg);
        return true;
    }
    const char *host = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Host");
    if (!host_allowed(s, host)) {
        char msg[400];
        snprintf(msg, sizeof msg, "host '%.100s' is not allowed (DNS-rebinding protection); "
                 "use localhost or 127.0.0.1, or start the server with --allow-host", host);
        *ret = reply_error_hdr(c, 421, NULL, NULL, msg);
        return true;
    }
    const char *origin = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Origin");
    if (origin) {
        c->origin = origin_allowed(s, origin);
        if (!c->origin) {
            *ret = reply_error_hdr(c, 403, NULL, NULL, "cross-origin requests are refused; "
                                   "start the server with --cors-origin ORIGIN to allow one");
            return true;
        }
    }
    if (c->method == M_OPTIONS && c->route) {
        char allow[64];
        allow_header(c->route->methods | M_OPTIONS, allow, sizeof allow);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"",
                                                                 MHD_RESPMEM_PERSISTENT);
        if (r) {
            MHD_add_response_header(r, "Allow", allow);
            if (c->origin) {
                MHD_add_response_header(r, "Access-Control-Allow-Methods", allow);
                MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                        "Authorization, Content-Type");
                MHD_add_response_header(r, "Access-Control-Max-Age", "600");
            }
        }
        *ret = queue(c, 204, r);
        return true;
    }
    bool open_route = c->route && (c->rid == SRV_R_ROOT || c->rid == SRV_R_HEALTH);
    if (!open_route && srv_guard_authenticate(c, ret))
        return true;
    if (!c->route) {
        char msg[300];
        snprintf(msg, sizeof msg, "no route for %.20s %.200s", method, c->url);
        *ret = reply_error_hdr(c, 404, NULL, NULL, msg);
        return true;
    }
    if (!(c->route->methods & c->method)) {
        char allow[64], msg[400];
        allow_header(c->route->methods, allow, sizeof allow);
        snprintf(msg, sizeof msg, "method %.20s not allowed on %.200s (allowed: %s)", method,
                 c->url, allow);
        *ret = reply_error_hdr(c, 405, "Allow", allow, msg);
        return true;
    }
    const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end == cl || *end != '\0' || v > s->cfg.max_body_bytes) {
            char msg[200];
            snprintf(msg, sizeof msg, "request body too large (limit %zu bytes)",
                     s->cfg.max_body_bytes);
            *ret = reply_error_hdr(c, 413, NULL, NULL, msg);
            return true;
        }
    }
    if (atomic_load(&s->draining)) {
        *ret = reply_error_hdr(c, 503, "Retry-After", "5", "server is shutting down");
        return true;
    }
    /* rate limits for the other authenticated routes (generations: in srv_generate, once
     * the model is known); the slot is released when the request completes */
    if (!is_generation(c->rid) && srv_guard_admit_route(c, ret))
        return true;
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct lg_server *s = cls;
    struct srv_conn *c = *con_cls;
    if (!c) {
        struct srv_sock *k = conn_sock(mc);
        if (k) {
            /* headers in; the body is still due: a first request by the deadline set at
             * connect, a keep-alive one within header_timeout_s from now */
            pthread_mutex_lock(&s->socks_mu);
            bool rejected = k->rejected;
            if (k->served)
                k->deadline_ns =
                    srv_mono_ns() + (int64_t)s->cfg.header_timeout_s * 1000000000LL;
            k->served = false; /* a request is arriving: a 408 is its answer */
            pthread_mutex_unlock(&s->socks_mu);
            if (rejected)
                return MHD_NO; /* the 503 went out when it connected */
        }
        c = calloc(1, sizeof *c);
        if (!c)
            return MHD_NO;
        *con_cls = c;
        c->srv = s;
        c->mc = mc;
        c->url = url;
        c->rid = SRV_R_OTHER;
        c->t0_ns = srv_mono_ns();
        c->style = !strncmp(url, "/v1/", 4) ? SRV_ERR_OPENAI : SRV_ERR_OLLAMA;
        int ret = MHD_YES;
        if (admit(c, method, &ret))
            return (enum MHD_Result)ret; /* answered before its body (queue lifted the deadline) */
        return MHD_YES;
    }
    if (*upload_data_size) {
        c->n_received += *upload_data_size;
        /* a chunked body far past the cap: drop the connection rather than read it all */
        if (c->too_large && c->n_received / 2 > s->cfg.max_body_bytes)
            return MHD_NO;
        if (!c->responded && !c->too_large) {
            if (*upload_data_size > s->cfg.max_body_bytes - c->body.n)
                c->too_large = true;
            else
                srv_buf_put(&c->body, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    sock_request_in(s, mc); /* the whole request is in */
    if (c->gen) { /* resumed: a non-streamed generation finished */
        struct srv_gen *g = c->gen;
        pthread_mutex_lock(&g->mu);
        bool done = g->finished;
        if (!done) {
            g->suspended = true;
            MHD_suspend_connection(mc);
        }
        pthread_mutex_unlock(&g->mu);
        return done ? (enum MHD_Result)reply_gen_result(c, g) : MHD_YES;
    }
    if (c->responded)
        return MHD_YES;
    if (c->too_large)
        return (enum MHD_Result)srv_reply_error(
            c, 413, "request body too large (limit %zu bytes)", s->cfg.max_body_bytes);
    if (c->body.oom)
        return (enum MHD_Result)srv_reply_error(c, 503, "out of memory reading the body");
    return (enum MHD_Result)c->route->fn(c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct lg_server *s = cls;
    struct srv_sock *k = conn_sock(mc);
    if (k) { /* keep-alive: the next request is due within the idle timeout */
        pthread_mutex_lock(&s->socks_mu);
        k->deadline_ns = srv_mono_ns() + (int64_t)s->cfg.idle_timeout_s * 1000000000LL;
        k->served = true;
        pthread_mutex_unlock(&s->socks_mu);
    }
    struct srv_conn *c = *con_cls;
    if (!c)
        return;
    if (c->gen) {
        struct srv_gen *g = c->gen;
        pthread_mutex_lock(&g->mu);
        bool running = !g->finished;
        g->status = c->responded ? c->status : 0;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !g->denied)
            g->finish_name = running || !g->finish_name ? "cancelled" : g->finish_name;
        pthread_mutex_unlock(&g->mu);
        if (running) /* the client went away: the engine stops within one step */
            atomic_store(&g->p->req.cancel, true);
        gen_release(g);
    } else if (c->audit) {
        srv_guard_conn_end(c, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    }
    if (c->rid == SRV_R_OLLAMA_PULL)
        srv_task_conn_gone(c);
    free(c->prompt_text);
    srv_buf_free(&c->body);
    free(c);
    *con_cls = NULL;
}

/* ---- start / stop ---- */

void lg_server_config_default(struct lg_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = LG_SERVER_DEFAULT_PORT;
    cfg->max_body_bytes = LG_JSON_MAX_BODY;
    cfg->max_connections = 1024;
    cfg->conn_memory_bytes = 32 * 1024; /* request line + headers ~16 KiB (G9) */
    cfg->idle_timeout_s = 30;
    cfg->header_timeout_s = 10;
    cfg->keep_alive_ms = 5 * 60 * 1000;
    cfg->n_parallel = 1;
    cfg->max_queue = 512;
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *out,
                   socklen_t *len)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return -1;
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) { /* prefer IPv4 for "localhost" */
            pick = a;
            break;
        }
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    *len = pick->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

bool lg_server_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

bool lg_server_host_is_loopback(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(host, 0, &ss, &len) != 0)
        return false;
    return addr_is_loopback((const struct sockaddr *)&ss);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    const struct lg_server *s = cls;
    if (!s->cfg.log_requests)
        return;
    fprintf(stderr, "localgemma serve: http: ");
    vfprintf(stderr, fmt, ap);
}

enum lg_status lg_server_start(const struct lg_server_config *cfg, struct lg_server **out,
                               struct lg_err *err)
{
    *out = NULL;
    struct sockaddr_storage ss;
    socklen_t slen;
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    if (resolve(host, cfg->port, &ss, &slen) != 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "cannot resolve bind address '%s'", host);
    bool loopback = addr_is_loopback((struct sockaddr *)&ss);
    if (!loopback && cfg->no_auth)
        return lg_err_set(err, LG_ERR_INVALID_ARG,
                          "refusing to listen on %s with --no-auth: requests without an API "
                          "key are only allowed on a loopback address (127.0.0.1, ::1)", host);
    bool have_keys = cfg->guard ? lg_guard_n_keys(cfg->guard) > 0 : cfg->n_keys > 0;
    if (!loopback && !have_keys)
        return lg_err_set(err, LG_ERR_INVALID_ARG,
                          "binding to %s needs an API key: run `localgemma keys add NAME` "
                          "(it is not a loopback address and no API key is configured, so "
                          "anyone who can reach this machine could use the server), or bind "
                          "127.0.0.1", host);
    bool tls = cfg->tls_cert_pem || cfg->tls_key_pem;
    if (tls && !(cfg->tls_cert_pem && cfg->tls_key_pem))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "TLS needs both a certificate and a key");
    if (tls && !lg_server_tls_supported())
        return lg_err_set(err, LG_ERR_UNSUPPORTED, "this libmicrohttpd was built without TLS "
                          "(GnuTLS) support: HTTPS is not available; put a TLS proxy in front "
                          "or rebuild libmicrohttpd with GnuTLS");
    struct lg_server *s = calloc(1, sizeof *s);
    if (!s)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    s->loopback = loopback;
    if (!s->cfg.max_body_bytes)
        s->cfg.max_body_bytes = LG_JSON_MAX_BODY;
    if (!s->cfg.header_timeout_s)
        s->cfg.header_timeout_s = 10;
    if (!s->cfg.idle_timeout_s)
        s->cfg.idle_timeout_s = 30;
    if (!s->cfg.max_connections)
        s->cfg.max_connections = 1024;
    s->tls = tls;
    pthread_mutex_init(&s->gens_mu, NULL);
    pthread_mutex_init(&s->socks_mu, NULL);
    atomic_init(&s->draining, false);
    const void *addr = ss.ss_family == AF_INET
                           ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                           : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, addr, s->bind_host, sizeof s->bind_host);
    s->bind_wildcard = !strcmp(s->bind_host, "0.0.0.0") || !strcmp(s->bind_host, "::");
    struct ifaddrs *ifs;
    if (s->bind_wildcard && getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i && s->n_local_addrs < 16; i = i->ifa_next) {
            if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
                                 i->ifa_addr->sa_family != AF_INET6))
                continue;
            const void *a = i->ifa_addr->sa_family == AF_INET
                                ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
            if (inet_ntop(i->ifa_addr->sa_family, a, s->local_addrs[s->n_local_addrs],
                          INET6_ADDRSTRLEN))
                s->n_local_addrs++;
        }
        freeifaddrs(ifs);
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)(uintptr_t)cfg->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)(uintptr_t)cfg->tls_key_pem},
        {MHD_OPTION_END, 0, NULL}};
    if (tls)
        flags |= MHD_USE_TLS;
    else
        tls_opts[0].option = MHD_OPTION_END;
    s->d = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections + (unsigned)SRV_REJECT_HEADROOM,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->conn_memory_bytes,
        MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_timeout_s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)256,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (!s->d) {
        pthread_mutex_destroy(&s->gens_mu);
        pthread_mutex_destroy(&s->socks_mu);
        free(s);
        return lg_err_set(err, LG_ERR_IO, "cannot listen on %s port %u (address in use, or "
                          "not permitted%s)", host, (unsigned)cfg->port,
                          tls ? ", or the TLS certificate/key was rejected" : "");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    atomic_init(&s->watchdog_stop, false);
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
        MHD_stop_daemon(s->d);
        pthread_mutex_destroy(&s->gens_mu);
        pthread_mutex_destroy(&s->socks_mu);
        free(s);
        return lg_err_set(err, LG_ERR_NOMEM, "cannot start the watchdog thread");
    }
    *out = s;
    return LG_OK;
}

uint16_t lg_server_port(const struct lg_server *s)
{
    return s->port;
}

static int n_gens(struct lg_server *s)
{
    pthread_mutex_lock(&s->gens_mu);
    int n = s->n_gens;
    pthread_mutex_unlock(&s->gens_mu);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void lg_server_stop(struct lg_server *s, int drain_ms)
{
    if (!s)
        return;
    atomic_store(&s->draining, true);
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    srv_streams_stop(&s->cfg); /* background replies (pull) end now, not after the drain */
    for (int waited = 0; n_gens(s) > 0 && waited < drain_ms; waited += 10)
        sleep_ms(10);
    /* cancel what is left and give the engine a moment to deliver terminal events */
    pthread_mutex_lock(&s->gens_mu);
    for (struct srv_gen *g = s->gens; g; g = g->next)
        atomic_store(&g->p->req.cancel, true);
    pthread_mutex_unlock(&s->gens_mu);
    for (int waited = 0; n_gens(s) > 0 && waited < 2000; waited += 10)
        sleep_ms(10);
    /* An engine that never answered: end the responses ourselves so no connection stays
     * suspended (MHD_stop_daemon must not see one). The engine still holds its reference;
     * its late terminal event only frees the srv_gen. */
    pthread_mutex_lock(&s->gens_mu);
    for (struct srv_gen *g = s->gens; g; g = g->next) {
        pthread_mutex_lock(&g->mu);
        if (!g->finished) {
            struct lg_gen_event ev = {.kind = LG_GEN_EV_ERROR, .status = LG_ERR_BUSY,
                                      .message = "server shutting down"};
            srv_gen_format(g, &ev);
            g->finished = true;
        }
        bool wake = g->suspended;
        g->suspended = false;
        pthread_mutex_unlock(&g->mu);
        if (wake)
            MHD_resume_connection(g->mc);
    }
    pthread_mutex_unlock(&s->gens_mu);
    for (int waited = 0; waited < 200; waited += 10)
        sleep_ms(10);
    atomic_store(&s->watchdog_stop, true);
    pthread_join(s->watchdog, NULL);
    MHD_stop_daemon(s->d);
    /* srv_gens still referenced by a stuck engine (and the server they point to) are leaked
     * on purpose: freeing them would hand the engine a dangling emit_ctx. */
    if (n_gens(s) > 0)
        return;
    pthread_mutex_destroy(&s->gens_mu);
    pthread_mutex_destroy(&s->socks_mu);
    free(s);
}
