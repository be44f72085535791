/* test_server_engine.c: the real HTTP server (libmicrohttpd, loopback, port 0) with the
 * scripted engine double plugged in: non-streamed and streamed answers byte-compared with
 * the writers, Ollama NDJSON, queue-full 503 + Retry-After, cancellation when a client
 * disconnects mid-stream, concurrent streams, shutdown with a stream in flight (cut by a
 * short drain; finished normally within a long one while new requests are refused), API keys,
 * CORS, the refusal to bind a non-loopback address without keys, and the connection guards
 * (hardening.md G9/G10): the request deadline (408 + close for a client trickling its
 * headers or stalling in its body, none for a served keep-alive connection) and the
 * connection cap (503 at once). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sha256.h"
#include "engine_double.h"
#include "json/json.h"
#include "server/server.h"
#include "test.h"

static const struct ed_step script[] = {
    {LG_GEN_EV_REASONING, "We", 0, NULL, NULL},
    {LG_GEN_EV_CONTENT, "Hel", 0, NULL, NULL},
    {LG_GEN_EV_CONTENT, "lo", 0, NULL, NULL},
    {LG_GEN_EV_TOOL_CALL, "{\"city\":", 0, "call_a", "get_weather"},
    {LG_GEN_EV_TOOL_CALL, "\"Tokyo\"}", 0, NULL, NULL},
};

static uint16_t port;

struct resp {
    long status;
    struct srv_buf body, headers;
    int abort_after; /* >0: abort the transfer after this many body callbacks */
    int n_calls;
};

static size_t on_body(char *d, size_t sz, size_t nm, void *u)
{
    struct resp *r = u;
    srv_buf_put(&r->body, d, sz * nm);
    if (r->abort_after && ++r->n_calls >= r->abort_after)
        return 0;
    return sz * nm;
}

static size_t on_header(char *d, size_t sz, size_t nm, void *u)
{
    srv_buf_put(&((struct resp *)u)->headers, d, sz * nm);
    return sz * nm;
}

static CURLcode http(const char *method, const char *path, const char *body,
                     const char *const *hdrs, struct resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (int i = 0; hdrs && hdrs[i]; i++)
        h = curl_slist_append(h, hdrs[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return cr;
}

static void resp_free(struct resp *r)
{
    srv_buf_free(&r->body);
    srv_buf_free(&r->headers);
}

#define CHAT_BODY(extra)                                                                      \
    "{\"model\":\"double\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" extra "}"

static void test_nonstream(void)
{
    struct resp r = {0};
    CHECK_EQ_INT(http("POST", "/v1/chat/completions", CHAT_BODY(""), NULL, &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 200);
    json_t *b = json_loads(r.body.p ? r.body.p : "", 0, NULL);
    CHECK(b != NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "content")), "Hello");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "reasoning_content")), "We");
    json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(tc, "function"),
                                                   "arguments")),
                 "{\"city\":\"Tokyo\"}");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(b, "usage"),
                                                    "total_tokens")),
                 15);
    const char *id = json_string_value(json_object_get(b, "id"));
    CHECK(id && !strncmp(id, "chatcmpl-", 9) && strlen(id) == 33);
    json_decref(b);
    resp_free(&r);

    memset(&r, 0, sizeof r);
    http("POST", "/api/generate", "{\"model\":\"double\",\"prompt\":\"x\",\"stream\":false}",
         NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    b = json_loads(r.body.p ? r.body.p : "", 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(b, "response")), "Hello");
    CHECK(json_is_true(json_object_get(b, "done")));
    CHECK_EQ_INT(json_integer_value(json_object_get(b, "eval_count")), 5);
    json_decref(b);
    resp_free(&r);
}

static void test_stream_openai(void)
{
    struct resp r = {0};
    http("POST", "/v1/chat/completions",
         CHAT_BODY(",\"stream\":true,\"stream_options\":{\"include_usage\":true}"), NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.headers.p && strstr(r.headers.p, "Content-Type: text/event-stream"));
    /* rebuild the expected bytes with the writer, using the id/created the server chose */
    json_t *first = r.body.p && !strncmp(r.body.p, "data: ", 6)
                        ? json_loadb(r.body.p + 6, strcspn(r.body.p + 6, "\n"), 0, NULL)
                        : NULL;
    CHECK(first != NULL);
    struct srv_sse w;
    srv_sse_init(&w, true, json_string_value(json_object_get(first, "id")),
                 json_integer_value(json_object_get(first, "created")), "double", true, false);
    struct srv_buf want = {0};
    srv_sse_begin(&w, &want);
    for (size_t i = 0; i < sizeof script / sizeof script[0]; i++) {
        struct lg_gen_event ev = {.kind = script[i].kind, .text = script[i].text,
                                  .n_text = strlen(script[i].text),
                                  .tool_index = script[i].tool_index,
                                  .tool_id = script[i].tool_id,
                                  .tool_name = script[i].tool_name};
        srv_sse_event(&w, &ev, &want);
    }
    struct lg_gen_event done = {.kind = LG_GEN_EV_DONE,
                                .usage = {.prompt_tokens = 10, .completion_tokens = 5}};
    srv_sse_event(&w, &done, &want);
    CHECK_EQ_STR(r.body.p, want.p);
    srv_buf_free(&want);
    json_decref(first);
    resp_free(&r);
}

static void test_stream_ollama(void)
{
    struct resp r = {0};
    http("POST", "/api/chat", CHAT_BODY(""), NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.headers.p && strstr(r.headers.p, "Content-Type: application/x-ndjson"));
    int n_lines = 0;
    char *save = NULL;
    char *text = r.body.p ? strdup(r.body.p) : strdup("");
    struct srv_buf content = {0};
    json_t *last = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        n_lines++;
        json_decref(last);
        last = json_loads(l, 0, NULL);
        CHECK_MSG(last != NULL, "line %d is not JSON: %s", n_lines, l);
        const char *c = json_string_value(json_object_get(json_object_get(last, "message"),
                                                          "content"));
        if (c)
            srv_buf_puts(&content, c);
    }
    CHECK_EQ_INT(n_lines, 5); /* thinking, Hel, lo, tool call, done */
    CHECK_EQ_STR(content.p, "Hello");
    CHECK(json_is_true(json_object_get(last, "done")));
    CHECK_EQ_STR(json_string_value(json_object_get(last, "done_reason")), "stop");
    json_decref(last);
    srv_buf_free(&content);
    free(text);
    resp_free(&r);
}

static void test_busy(struct engine_double *e)
{
    atomic_store(&e->busy_now, 1);
    struct resp r = {0};
    http("POST", "/v1/chat/completions", CHAT_BODY(""), NULL, &r);
    CHECK_EQ_INT(r.status, 503);
    CHECK(r.headers.p && strstr(r.headers.p, "Retry-After: 1"));
    CHECK(r.body.p && strstr(r.body.p, "queue full"));
    resp_free(&r);
    atomic_store(&e->busy_now, 0);
}

static void test_health(struct engine_double *e)
{
    struct resp r = {0};
    http("GET", "/health", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body.p && strstr(r.body.p, "\"status\":\"ok\""));
    resp_free(&r);
    atomic_store(&e->loading, 1);
    memset(&r, 0, sizeof r);
    http("GET", "/health", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 503);
    CHECK(r.body.p && strstr(r.body.p, "\"status\":\"loading model\""));
    resp_free(&r);
    atomic_store(&e->loading, 0);
}

static void *stream_thread(void *arg)
{
    struct resp *r = arg;
    http("POST", "/v1/chat/completions", CHAT_BODY(",\"stream\":true"), NULL, r);
    return NULL;
}

static void test_concurrent(void)
{
    enum { N = 8 };
    pthread_t th[N];
    struct resp r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, stream_thread, &r[i]);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        size_t n = r[i].body.n;
        if (r[i].status == 200 && n > 14 && !strcmp(r[i].body.p + n - 14, "data: [DONE]\n\n"))
            ok++;
        resp_free(&r[i]);
    }
    CHECK_EQ_INT(ok, N);
}

static int wait_for(atomic_int *v, int want, int ms)
{
    for (int t = 0; t < ms && atomic_load(v) < want; t += 5)
        ed_sleep_ms(5);
    return atomic_load(v);
}

static void test_disconnect(struct engine_double *e)
{
    int before = atomic_load(&e->n_cancelled);
    struct resp r = {.abort_after = 1};
    CURLcode cr = http("POST", "/v1/chat/completions", CHAT_BODY(",\"stream\":true"), NULL,
                       &r);
    CHECK_EQ_INT(cr, CURLE_WRITE_ERROR);
    resp_free(&r);
    /* the engine double sees the cancel flag within a step or two (20 ms each) */
    CHECK_MSG(wait_for(&e->n_cancelled, before + 1, 3000) == before + 1,
              "no cancellation after the client went away");
}

/* A non-streamed request whose client gives up: nothing is being written while the
 * connection waits (suspended), so only the watchdog can notice and cancel. */
static void test_disconnect_waiting(struct engine_double *e)
{
    int before = atomic_load(&e->n_cancelled);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/generate", (unsigned)port);
    CURL *c = curl_easy_init();
    struct resp r = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"model\":\"d\",\"prompt\":\"x\",\"stream\":false}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cr = curl_easy_perform(c);
    curl_easy_cleanup(c);
    resp_free(&r);
    CHECK_EQ_INT(cr, CURLE_OPERATION_TIMEDOUT);
    CHECK_MSG(wait_for(&e->n_cancelled, before + 1, 1000) == before + 1,
              "a waiting request was not cancelled after its client left");
}

static void test_admission(void)
{
    struct resp r = {0};
    const char *evil[] = {"Host: attacker.example", NULL};
    http("GET", "/api/version", NULL, evil, &r);
    CHECK_EQ_INT(r.status, 421);
    resp_free(&r);
    memset(&r, 0, sizeof r);
    const char *origin[] = {"Origin: http://evil.example", NULL};
    http("GET", "/api/tags", NULL, origin, &r);
    CHECK_EQ_INT(r.status, 403);
    resp_free(&r);
    memset(&r, 0, sizeof r);
    const char *v6[] = {"Host: [::1]:11434", NULL};
    http("GET", "/api/version", NULL, v6, &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    memset(&r, 0, sizeof r);
    http("GET", "/api/ps", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body.p && strstr(r.body.p, "\"name\":\"double:latest\""));
    CHECK(r.body.p && strstr(r.body.p, "\"expires_at\":\"0001-01-01T00:00:00Z\""));
    resp_free(&r);
    memset(&r, 0, sizeof r);
    http("GET", "/metrics", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body.p && strstr(r.body.p, "localgemma_requests_total{route=\"/api/version\","
                                       "status=\"421\"} 1"));
    CHECK(r.body.p && strstr(r.body.p, "localgemma_ttft_seconds_count "));
    resp_free(&r);
}

/* ---- connection guards, on raw sockets ---- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int raw_connect(uint16_t p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void raw_send(int fd, const char *s)
{
    (void)!send(fd, s, strlen(s), MSG_NOSIGNAL);
}

/* Reads what arrives within ms; *closed = the peer closed. Returns bytes read. */
static size_t raw_read(int fd, char *buf, size_t cap, int ms, bool *closed)
{
    size_t n = 0;
    *closed = false;
    int64_t end = mono_ns() + (int64_t)ms * 1000000;
    while (n + 1 < cap) {
        int left = (int)((end - mono_ns()) / 1000000);
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            break;
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0) {
            *closed = true;
            break;
        }
        n += (size_t)k;
    }
    buf[n] = '\0';
    return n;
}

/* The body after the blank line is exactly Content-Length bytes. */
static bool length_matches(const char *resp)
{
    const char *cl = strstr(resp, "Content-Length: ");
    const char *body = strstr(resp, "\r\n\r\n");
    return cl && body && (size_t)atol(cl + 16) == strlen(body + 4);
}

static void test_conn_guards(struct engine_double *e)
{
    struct lg_server_config cfg;
    lg_server_config_default(&cfg);
    cfg.port = 0;
    cfg.engine = &ed_ops;
    cfg.engine_self = e;
    cfg.header_timeout_s = 1;
    cfg.idle_timeout_s = 4;
    cfg.max_connections = 3;
    struct lg_server *s;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_OK);
    uint16_t p = lg_server_port(s);
    char buf[4096];
    bool closed;

    /* a client trickling a header byte every 200 ms: cut at about 1 s with a 408 */
    int t = raw_connect(p);
    CHECK(t >= 0);
    int64_t t0 = mono_ns();
    const char *line = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaa";
    size_t n = 0;
    closed = false;
    for (size_t i = 0; i < strlen(line) && !closed && n == 0; i++) {
        (void)!send(t, line + i, 1, MSG_NOSIGNAL);
        n = raw_read(t, buf, sizeof buf, 200, &closed);
    }
    if (n && !closed)
        raw_read(t, buf + n, sizeof buf - n, 1000, &closed);
    double secs = (double)(mono_ns() - t0) / 1e9;
    CHECK_MSG(closed && secs > 0.9 && secs < 2.5, "trickler closed %d after %.2f s", closed,
              secs);
    CHECK_MSG(!strncmp(buf, "HTTP/1.1 408 ", 13) && length_matches(buf), "408: %s", buf);
    close(t);

    /* headers in, then the body stalls: the whole request is due by the same deadline */
    int b = raw_connect(p);
    CHECK(b >= 0);
    t0 = mono_ns();
    raw_send(b, "POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                "\r\nContent-Length: 64\r\n\r\n{\"model\":");
    raw_read(b, buf, sizeof buf, 2500, &closed);
    secs = (double)(mono_ns() - t0) / 1e9;
    CHECK_MSG(closed && secs > 0.9 && secs < 2.5, "stalled body closed %d after %.2f s", closed,
              secs);
    CHECK_MSG(!strncmp(buf, "HTTP/1.1 408 ", 13) && length_matches(buf) &&
                  strstr(buf, "took too long"),
              "408 for a stalled body: %s", buf);
    close(b);

    /* a served keep-alive connection is not cut at the header deadline */
    int k = raw_connect(p);
    raw_send(k, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    raw_read(k, buf, sizeof buf, 1800, &closed);
    CHECK_MSG(!strncmp(buf, "HTTP/1.1 200 ", 13) && !closed, "keep-alive 1: %s", buf);
    raw_send(k, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_read(k, buf, sizeof buf, 1000, &closed);
    CHECK_MSG(!strncmp(buf, "HTTP/1.1 200 ", 13), "keep-alive 2 after 1.8 s: %s", buf);
    close(k);
    ed_sleep_ms(100);

    /* three connections held open (the cap): a fourth is answered 503 at once */
    int held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = raw_connect(p);
        raw_send(held[i], "GET /he");
    }
    ed_sleep_ms(100);
    int x = raw_connect(p);
    t0 = mono_ns();
    raw_send(x, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    raw_read(x, buf, sizeof buf, 1500, &closed);
    secs = (double)(mono_ns() - t0) / 1e9;
    CHECK_MSG(!strncmp(buf, "HTTP/1.1 503 ", 13) && strstr(buf, "Retry-After: 1\r\n") &&
                  strstr(buf, "too many connections") && length_matches(buf) && closed,
              "over the cap: %s", buf);
    CHECK_MSG(secs < 1.5, "over-cap close after %.2f s", secs);
    close(x);
    for (int i = 0; i < 3; i++)
        close(held[i]);
    ed_sleep_ms(200);
    int y = raw_connect(p);
    raw_send(y, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_read(y, buf, sizeof buf, 1000, &closed);
    CHECK_MSG(!strncmp(buf, "HTTP/1.1 200 ", 13), "after the cap cleared: %s", buf);
    close(y);
    lg_server_stop(s, 0);
}

static void test_keys_cors(struct engine_double *e)
{
    struct lg_server_config cfg;
    lg_server_config_default(&cfg);
    cfg.port = 0;
    uint8_t dig[1][32];
    lg_sha256("sk-test-0123456789abcdef", 24, dig[0]);
    cfg.key_digests = (const uint8_t(*)[32])dig;
    cfg.n_keys = 1;
    const char *origins[] = {"http://app.example"};
    cfg.cors_origins = origins;
    cfg.n_cors_origins = 1;
    cfg.engine = &ed_ops;
    cfg.engine_self = e;
    cfg.reasoning_key_reasoning = true;
    struct lg_server *s;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_OK);
    uint16_t saved = port;
    port = lg_server_port(s);
    struct resp r = {0};
    http("GET", "/api/version", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 401);
    CHECK(r.headers.p && strstr(r.headers.p, "WWW-Authenticate: Bearer"));
    resp_free(&r);
    memset(&r, 0, sizeof r);
    const char *wrong[] = {"Authorization: Bearer sk-test-0123456789abcdeX", NULL};
    http("GET", "/api/version", NULL, wrong, &r);
    CHECK_EQ_INT(r.status, 401);
    resp_free(&r);
    memset(&r, 0, sizeof r);
    const char *good[] = {"Authorization: Bearer sk-test-0123456789abcdef",
                          "Origin: http://app.example", NULL};
    http("GET", "/api/version", NULL, good, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.headers.p && strstr(r.headers.p, "Access-Control-Allow-Origin: http://app.example"));
    resp_free(&r);
    memset(&r, 0, sizeof r);
    http("POST", "/v1/chat/completions", CHAT_BODY(""), good, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body.p && strstr(r.body.p, "\"reasoning\":\"We\"") &&
          !strstr(r.body.p, "reasoning_content"));
    resp_free(&r);
    memset(&r, 0, sizeof r);
    http("GET", "/health", NULL, NULL, &r); /* health needs no key */
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    memset(&r, 0, sizeof r);
    const char *pre[] = {"Origin: http://app.example", NULL};
    http("OPTIONS", "/v1/chat/completions", NULL, pre, &r);
    CHECK_EQ_INT(r.status, 204);
    CHECK(r.headers.p && strstr(r.headers.p, "Access-Control-Allow-Methods: POST, OPTIONS"));
    resp_free(&r);
    lg_server_stop(s, 0);
    port = saved;

    /* non-loopback without keys: refused with the reason */
    cfg.host = "0.0.0.0";
    cfg.n_keys = 0;
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "not a loopback address and no API key") != NULL);
    CHECK(lg_server_host_is_loopback("127.0.0.2"));
    CHECK(lg_server_host_is_loopback("::1"));
    CHECK(lg_server_host_is_loopback("localhost"));
    CHECK(!lg_server_host_is_loopback("0.0.0.0"));
    CHECK(!lg_server_host_is_loopback("10.1.2.3"));
}

static void test_shutdown_inflight(struct engine_double *e, struct lg_server *s)
{
    /* a long stream in flight; stop with a short drain: the stream must end cleanly */
    pthread_t th;
    struct resp r = {0};
    pthread_create(&th, NULL, stream_thread, &r);
    wait_for(&e->n_submitted, atomic_load(&e->n_submitted) + 1, 2000);
    ed_sleep_ms(50);
    lg_server_stop(s, 100);
    pthread_join(th, NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_MSG(r.body.p && strstr(r.body.p, "\"error\"") &&
                  r.body.n >= 14 && !strcmp(r.body.p + r.body.n - 14, "data: [DONE]\n\n"),
              "stream did not end with an error chunk and [DONE]: %s",
              r.body.p ? r.body.p : "(empty)");
    resp_free(&r);
}

struct stop_arg {
    struct lg_server *s;
    int drain_ms;
};

static void *stop_thread(void *arg)
{
    struct stop_arg *a = arg;
    lg_server_stop(a->s, a->drain_ms);
    return NULL;
}

/* SIGTERM's path (hardening.md G14): lg_server_stop with a drain window longer than the
 * stream in flight. A new request during the drain is refused (connection refused, or 503
 * "shutting down") within 100 ms; the stream in flight finishes normally, with no error
 * event. */
static void test_drain(struct engine_double *e, struct lg_server *s)
{
    pthread_t th, st;
    struct resp r = {0};
    int before = atomic_load(&e->n_submitted);
    pthread_create(&th, NULL, stream_thread, &r);
    wait_for(&e->n_submitted, before + 1, 2000);
    ed_sleep_ms(50);
    struct stop_arg a = {s, 5000};
    pthread_create(&st, NULL, stop_thread, &a);
    ed_sleep_ms(50);
    struct resp n = {0};
    int64_t t0 = mono_ns();
    CURLcode cr = http("POST", "/v1/chat/completions", CHAT_BODY(""), NULL, &n);
    double ms = (double)(mono_ns() - t0) / 1e6;
    CHECK_MSG(cr == CURLE_COULDNT_CONNECT || (cr == CURLE_OK && n.status == 503),
              "new request while draining: curl %d, HTTP %ld", (int)cr, n.status);
    CHECK_MSG(ms < 100, "new request while draining answered after %.1f ms", ms);
    resp_free(&n);
    pthread_join(th, NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_MSG(r.body.p && !strstr(r.body.p, "\"error\"") && r.body.n >= 14 &&
                  !strcmp(r.body.p + r.body.n - 14, "data: [DONE]\n\n") &&
                  strstr(r.body.p, "\"finish_reason\":\"stop\""),
              "stream in flight did not finish normally within the drain: %s",
              r.body.p ? r.body.p + (r.body.n > 300 ? r.body.n - 300 : 0) : "(empty)");
    resp_free(&r);
    pthread_join(st, NULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct engine_double e;
    ed_start(&e, script, sizeof script / sizeof script[0], 2, 64);
    e.usage = (struct lg_gen_usage){.prompt_tokens = 10, .completion_tokens = 5};
    e.timings = (struct lg_gen_timings){.eval_ns = 1000000, .total_ns = 2000000};
    struct lg_server_config cfg;
    lg_server_config_default(&cfg);
    cfg.port = 0;
    cfg.engine = &ed_ops;
    cfg.engine_self = &e;
    struct lg_server *s;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_OK);
    port = lg_server_port(s);
    CHECK(port != 0);

    test_nonstream();
    test_stream_openai();
    test_stream_ollama();
    test_busy(&e);
    test_health(&e);
    test_concurrent();
    test_admission();
    test_keys_cors(&e);
    test_conn_guards(&e);

    /* slow engine from here: 20 ms per event, 200 events */
    static struct ed_step long_script[200];
    for (int i = 0; i < 200; i++)
        long_script[i] = (struct ed_step){LG_GEN_EV_CONTENT, "tok ", 0, NULL, NULL};
    ed_stop(&e);
    ed_start(&e, long_script, 200, 20, 64);
    cfg.engine_self = &e;
    lg_server_stop(s, 0);
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_OK);
    port = lg_server_port(s);
    test_disconnect(&e);
    test_disconnect_waiting(&e);
    test_shutdown_inflight(&e, s);
    ed_stop(&e);
    /* a stream of 40 events x 20 ms (0.8 s), drained within 5 s */
    ed_start(&e, long_script, 40, 20, 64);
    cfg.engine_self = &e;
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_OK);
    port = lg_server_port(s);
    test_drain(&e, s);
    ed_stop(&e);
    curl_global_cleanup();
    return lg_test_done("test_server_engine");
}
