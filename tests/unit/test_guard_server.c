/* test_guard_server.c: the guard wired into the real HTTP server (libmicrohttpd, loopback,
 * port 0), in process so ASan/UBSan see the server's guard paths: a fake engine emits
 * scripted events (text split across events, with logprobs) synchronously from submit();
 * the test checks authentication, input deny, the tool allow-list, streaming and
 * non-streaming redaction of reasoning and content (event order kept), logprobs withheld
 * when a redaction happened in their span and kept otherwise, an output deny rule ending the
 * answer before the match, and the audit records (chain intact, decisions, no request
 * text). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard/guard.h"
#include "json/json.h"
#include "server/server.h"
#include "test.h"

/* ---- a synchronous fake engine ---- */

struct piece {
    enum lg_gen_event_kind kind;
    const char *text;
};

static const struct piece script_email[] = {
    {LG_GEN_EV_REASONING, "I think b@c"}, {LG_GEN_EV_REASONING, ".io ok"},
    {LG_GEN_EV_CONTENT, "Mail me at al"}, {LG_GEN_EV_CONTENT, "ice@exa"},
    {LG_GEN_EV_CONTENT, "mple.com today"}, {0, NULL}};
static const struct piece script_plain[] = {
    {LG_GEN_EV_CONTENT, "Hel"}, {LG_GEN_EV_CONTENT, "lo"}, {0, NULL}};
static const struct piece script_deny[] = {
    {LG_GEN_EV_CONTENT, "abc STOP"}, {LG_GEN_EV_CONTENT, "HERE xyz"},
    {LG_GEN_EV_CONTENT, " more"}, {0, NULL}};

static int n_submitted;

static enum lg_status fake_submit(void *self, struct lg_gen_req *req, uint64_t *id,
                                  struct lg_err *err)
{
    (void)self;
    (void)err;
    if (id)
        *id = (uint64_t)n_submitted;
    n_submitted++;
    const char *text = req->kind == LG_PROMPT_CHAT
                           ? json_string_value(json_object_get(
                                 json_array_get(req->messages, 0), "content"))
                           : req->prompt;
    const struct piece *sc = !text                       ? script_plain
                             : strstr(text, "email")     ? script_email
                             : strstr(text, "deny")      ? script_deny
                                                         : script_plain;
    int32_t n_out = 0;
    for (const struct piece *p = sc; p->text; p++) {
        struct lg_gen_top_logprob top = {p->text, strlen(p->text), -0.25f};
        struct lg_gen_logprob lp = {p->text, strlen(p->text), -0.25f, &top, 1};
        struct lg_gen_event ev = {.kind = p->kind, .text = p->text, .n_text = strlen(p->text)};
        if (req->top_logprobs >= 0 && p->kind == LG_GEN_EV_CONTENT) {
            ev.logprobs = &lp;
            ev.n_logprobs = 1;
        }
        req->emit(req->emit_ctx, &ev);
        n_out++;
    }
    struct lg_gen_event done = {.kind = LG_GEN_EV_DONE, .finish = LG_FINISH_STOP,
                                .usage = {.prompt_tokens = 7, .completion_tokens = n_out}};
    req->emit(req->emit_ctx, &done); /* req must not be touched after this */
    return LG_OK;
}

static void fake_stats(void *self, struct lg_engine_stats *out)
{
    (void)self;
    memset(out, 0, sizeof *out);
    out->n_parallel = 1;
}

static size_t fake_loaded(void *self, struct lg_loaded_model *out, size_t cap)
{
    (void)self;
    (void)out;
    (void)cap;
    return 0;
}

static const struct lg_engine_ops fake_ops = {fake_submit, fake_stats, fake_loaded};

/* ---- HTTP ---- */

static uint16_t port;
static char auth_hdr[128];

struct resp {
    long status;
    struct srv_buf body, headers;
};

static size_t on_body(char *d, size_t sz, size_t nm, void *u)
{
    srv_buf_put(&((struct resp *)u)->body, d, sz * nm);
    return sz * nm;
}

static size_t on_header(char *d, size_t sz, size_t nm, void *u)
{
    srv_buf_put(&((struct resp *)u)->headers, d, sz * nm);
    return sz * nm;
}

/* with_key: send the test key. The body is NUL-terminated in r->body.p. */
static void http(const char *method, const char *path, const char *body, bool with_key,
                 struct resp *r)
{
    memset(r, 0, sizeof *r);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (with_key)
        h = curl_slist_append(h, auth_hdr);
    h = curl_slist_append(h, "Content-Type: application/json");
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
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    srv_buf_put(&r->body, "", 1);
    srv_buf_put(&r->headers, "", 1);
}

static void resp_free(struct resp *r)
{
    srv_buf_free(&r->body);
    srv_buf_free(&r->headers);
}

static const char *body_of(const struct resp *r)
{
    return r->body.p ? r->body.p : "";
}

#define CHAT(content, extra)                                                                   \
    "{\"model\":\"fake\",\"messages\":[{\"role\":\"user\",\"content\":\"" content "\"}]"    \
    extra "}"

/* Concatenated delta.<field> of an SSE body; *first_at = chunk number of the first one. */
static void sse_collect(const char *body, const char *field, struct srv_buf *out,
                        int *first_at, int *n_logprobs)
{
    *first_at = -1;
    int chunk = 0;
    for (const char *p = strstr(body, "data: {"); p; p = strstr(p + 1, "data: {")) {
        const char *end = strstr(p, "\n\n");
        json_t *j = json_loadb(p + 6, end ? (size_t)(end - p - 6) : strlen(p + 6), 0, NULL);
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        const char *s = json_string_value(json_object_get(json_object_get(ch, "delta"), field));
        if (s && *s) {
            srv_buf_puts(out, s);
            if (*first_at < 0)
                *first_at = chunk;
        }
        json_t *lp = json_object_get(json_object_get(ch, "logprobs"), "content");
        if (n_logprobs && json_is_array(lp))
            *n_logprobs += (int)json_array_size(lp);
        json_decref(j);
        chunk++;
    }
    srv_buf_put(out, "", 1);
}

/* ---- tests ---- */

static void test_auth_and_input(void)
{
    struct resp r;
    http("GET", "/v1/models", NULL, false, &r);
    CHECK_EQ_INT(r.status, 401);
    CHECK(strstr(r.headers.p, "WWW-Authenticate: Bearer") != NULL);
    CHECK(strstr(body_of(&r), "\"code\":\"invalid_api_key\"") != NULL);
    resp_free(&r);
    http("GET", "/v1/models", NULL, true, &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    http("DELETE", "/api/delete", "{\"model\":\"x\"}", true, &r); /* generate scope */
    CHECK_EQ_INT(r.status, 403);
    resp_free(&r);
    int before = n_submitted;
    http("POST", "/v1/chat/completions", CHAT("a BadWord b", ""), true, &r);
    CHECK_EQ_INT(r.status, 400);
    CHECK(strstr(body_of(&r), "\"code\":\"content_policy\"") != NULL);
    CHECK(strstr(body_of(&r), "Not allowed here.") != NULL);
    CHECK(strstr(body_of(&r), "BadWord") == NULL);
    resp_free(&r);
    http("POST", "/api/generate", "{\"model\":\"fake\",\"prompt\":\"x\",\"system\":\"badword\"}",
         true, &r);
    CHECK_EQ_INT(r.status, 400);
    resp_free(&r);
    http("POST", "/v1/chat/completions",
         CHAT("hi", ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"rm_rf\","
                    "\"parameters\":{\"type\":\"object\"}}}]"),
         true, &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK(strstr(body_of(&r), "tool_not_allowed") != NULL);
    resp_free(&r);
    CHECK_EQ_INT(n_submitted, before); /* none of them reached the engine */
    http("POST", "/v1/chat/completions",
         CHAT("hi", ",\"max_tokens\":3,\"tools\":[{\"type\":\"function\",\"function\":"
                    "{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}]"),
         true, &r);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
}

static void test_redact_nonstream(void)
{
    struct resp r;
    http("POST", "/v1/chat/completions",
         CHAT("email please", ",\"logprobs\":true,\"top_logprobs\":1"), true, &r);
    CHECK_EQ_INT(r.status, 200);
    json_t *b = json_loads(body_of(&r), 0, NULL);
    json_t *ch = json_array_get(json_object_get(b, "choices"), 0);
    json_t *msg = json_object_get(ch, "message");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "content")), "Mail me at [EMAIL] today");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "reasoning_content")),
                 "I think [EMAIL] ok");
    /* the redacted span's logprobs would show "ice@exa": withheld */
    json_t *lp = json_object_get(json_object_get(ch, "logprobs"), "content");
    CHECK(!json_is_array(lp) || json_array_size(lp) == 0);
    CHECK(strstr(body_of(&r), "ice@") == NULL && strstr(body_of(&r), "b@c") == NULL);
    json_decref(b);
    resp_free(&r);

    http("POST", "/v1/chat/completions",
         CHAT("plain", ",\"logprobs\":true,\"top_logprobs\":1"), true, &r);
    CHECK_EQ_INT(r.status, 200);
    b = json_loads(body_of(&r), 0, NULL);
    ch = json_array_get(json_object_get(b, "choices"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(ch, "message"), "content")),
                 "Hello");
    lp = json_object_get(json_object_get(ch, "logprobs"), "content");
    CHECK_EQ_INT(json_array_size(lp), 2); /* nothing redacted: kept, in order */
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(lp, 0), "token")), "Hel");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(lp, 1), "token")), "lo");
    json_decref(b);
    resp_free(&r);

    http("POST", "/api/generate", "{\"model\":\"fake\",\"prompt\":\"email\",\"stream\":false}",
         true, &r);
    CHECK_EQ_INT(r.status, 200);
    b = json_loads(body_of(&r), 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(b, "response")), "Mail me at [EMAIL] today");
    CHECK_EQ_STR(json_string_value(json_object_get(b, "thinking")), "I think [EMAIL] ok");
    json_decref(b);
    resp_free(&r);
}

static void test_redact_stream(void)
{
    struct resp r;
    http("POST", "/v1/chat/completions", CHAT("email", ",\"stream\":true"), true, &r);
    CHECK_EQ_INT(r.status, 200);
    struct srv_buf content = {0}, reasoning = {0};
    int c_at, r_at;
    sse_collect(body_of(&r), "content", &content, &c_at, NULL);
    sse_collect(body_of(&r), "reasoning_content", &reasoning, &r_at, NULL);
    CHECK_EQ_STR(content.p, "Mail me at [EMAIL] today");
    CHECK_EQ_STR(reasoning.p, "I think [EMAIL] ok");
    CHECK_MSG(r_at >= 0 && c_at > r_at, "reasoning chunk %d, content chunk %d", r_at, c_at);
    CHECK(strstr(body_of(&r), "ice@") == NULL && strstr(body_of(&r), "b@c") == NULL);
    CHECK(strstr(body_of(&r), "data: [DONE]") != NULL);
    srv_buf_free(&content);
    srv_buf_free(&reasoning);
    resp_free(&r);

    http("POST", "/v1/chat/completions",
         CHAT("plain", ",\"stream\":true,\"logprobs\":true,\"top_logprobs\":1"), true, &r);
    struct srv_buf c2 = {0};
    int n_lp = 0;
    sse_collect(body_of(&r), "content", &c2, &c_at, &n_lp);
    CHECK_EQ_STR(c2.p, "Hello");
    CHECK_EQ_INT(n_lp, 2);
    srv_buf_free(&c2);
    resp_free(&r);

    http("POST", "/api/generate", "{\"model\":\"fake\",\"prompt\":\"email\"}", true, &r);
    CHECK_EQ_INT(r.status, 200);
    struct srv_buf all = {0};
    int n_lines = 0;
    for (const char *p = body_of(&r); *p; n_lines++) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_t *j = json_loadb(p, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "response"));
        if (t)
            srv_buf_puts(&all, t);
        json_decref(j);
        p += len + (nl ? 1 : 0);
    }
    srv_buf_put(&all, "", 1);
    CHECK_EQ_STR(all.p, "Mail me at [EMAIL] today");
    CHECK(n_lines >= 3); /* streamed in pieces: the hold-back is the last word, not 361 B */
    CHECK(strstr(body_of(&r), "ice@") == NULL);
    srv_buf_free(&all);
    resp_free(&r);
}

static void test_output_deny(void)
{
    struct resp r;
    http("POST", "/v1/chat/completions", CHAT("deny", ""), true, &r);
    CHECK_EQ_INT(r.status, 200);
    json_t *b = json_loads(body_of(&r), 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
    CHECK_EQ_STR(json_string_value(json_object_get(msg, "content")), "abc ");
    CHECK(strstr(body_of(&r), "xyz") == NULL && strstr(body_of(&r), "more") == NULL);
    json_decref(b);
    resp_free(&r);
    http("POST", "/v1/chat/completions", CHAT("deny", ",\"stream\":true"), true, &r);
    struct srv_buf c = {0};
    int at;
    sse_collect(body_of(&r), "content", &c, &at, NULL);
    CHECK_EQ_STR(c.p, "abc ");
    CHECK(strstr(body_of(&r), "HERE") == NULL && strstr(body_of(&r), "data: [DONE]") != NULL);
    srv_buf_free(&c);
    resp_free(&r);
}

/* lg_redactor_flush: held-back text out now, redactor still usable, counts kept. */
static void test_flush(void)
{
    struct lg_policy *p;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_policy_default(&p, &err), LG_OK);
    struct lg_redactor *r = lg_redactor_create(p);
    const char *o;
    size_t n;
    CHECK_EQ_INT(lg_redactor_feed(r, "x a@b.co", 8, &o, &n, &err), LG_OK);
    CHECK(n == 2 && !memcmp(o, "x ", 2)); /* the e-mail may go on: held back */
    CHECK_EQ_INT(lg_redactor_flush(r, &o, &n, &err), LG_OK);
    CHECK(n == 7 && !memcmp(o, "[EMAIL]", 7));
    CHECK_EQ_INT(lg_redactor_count(r), 1);
    CHECK_EQ_INT(lg_redactor_feed(r, " and c@d.org", 12, &o, &n, &err), LG_OK);
    CHECK(n == 5 && !memcmp(o, " and ", 5));
    CHECK_EQ_INT(lg_redactor_finish(r, &o, &n, &err), LG_OK);
    CHECK(n == 7 && !memcmp(o, "[EMAIL]", 7));
    CHECK_EQ_INT(lg_redactor_count(r), 2);
    lg_redactor_destroy(r);
    lg_policy_free(p);
}

static void test_audit(const char *home)
{
    struct lg_audit *a;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_audit_open(home, false, &a, &err), LG_OK);
    int64_t n = 0, bad = -1;
    char why[200];
    CHECK_EQ_INT(lg_audit_verify(a, &n, &bad, why, sizeof why, &err), LG_OK);
    CHECK_EQ_INT(bad, 0);
    CHECK_MSG(n == 15, "audit rows %lld (one per request)", (long long)n);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_EQ_INT(lg_audit_export(a, 0, f, &err), LG_OK);
    fclose(f);
    CHECK(strstr(buf, "\"decisions\":\"auth:key;input:allow;redact:email=2\"") != NULL);
    CHECK(strstr(buf, "input:deny:bad") != NULL);
    CHECK(strstr(buf, "tool:deny") != NULL);
    CHECK(strstr(buf, "\"finish_reason\":\"content_filter\"") != NULL);
    CHECK(strstr(buf, "output:deny:stop") != NULL);
    CHECK(strstr(buf, "\"status\":401") != NULL);
    CHECK(strstr(buf, "\"key\":\"u\"") != NULL);
    CHECK(strstr(buf, "\"prompt_tokens\":7") != NULL);
    CHECK(strstr(buf, "BadWord") == NULL && strstr(buf, "email please") == NULL);
    free(buf);
    lg_audit_close(a);
}

int main(void)
{
    char home[] = "/tmp/lg-test-guard-server-XXXXXX";
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char pol_path[300];
    snprintf(pol_path, sizeof pol_path, "%s/policy.json", home);
    FILE *pf = fopen(pol_path, "w");
    fputs("{\"refusal_message\":\"Not allowed here.\","
          "\"input\":{\"deny\":[{\"id\":\"bad\",\"pattern\":\"badword\",\"caseless\":true}]},"
          "\"output\":{\"deny\":[{\"id\":\"stop\",\"pattern\":\"STOPHERE\",\"max_len\":8}]},"
          "\"tools\":{\"default\":\"deny\",\"models\":{\"fake\":[\"get_weather\"]},"
          "\"keys\":{\"u\":[\"*\"]}}}",
          pf);
    fclose(pf);
    struct lg_err err = {0};
    struct lg_keys *k;
    CHECK_EQ_INT(lg_keys_open(home, &k, &err), LG_OK);
    struct lg_key_info info = {.name = "u", .scope = LG_SCOPE_GENERATE};
    char secret[LG_KEY_SECRET_LEN + 1];
    CHECK_EQ_INT(lg_keys_add(k, &info, secret, &err), LG_OK);
    lg_keys_close(k);
    snprintf(auth_hdr, sizeof auth_hdr, "Authorization: Bearer %s", secret);

    struct lg_guard *g;
    struct lg_guard_config gc = {.home = home, .policy_path = pol_path};
    CHECK_EQ_INT(lg_guard_open(&gc, &g, &err), LG_OK);
    struct lg_server_config cfg;
    lg_server_config_default(&cfg);
    cfg.port = 0;
    cfg.engine = &fake_ops;
    cfg.guard = g;
    struct lg_server *s;
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_OK);
    port = lg_server_port(s);

    test_flush();
    test_auth_and_input();
    test_redact_nonstream();
    test_redact_stream();
    test_output_deny();
    lg_server_stop(s, 1000);
    test_audit(home);

    /* a non-loopback bind needs a key in the store; --no-auth only on loopback */
    cfg.host = "0.0.0.0";
    cfg.no_auth = true;
    CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "--no-auth") != NULL);
    lg_guard_close(g);

    char empty[] = "/tmp/lg-test-guard-empty-XXXXXX";
    if (mkdtemp(empty)) {
        struct lg_guard_config gc2 = {.home = empty};
        CHECK_EQ_INT(lg_guard_open(&gc2, &g, &err), LG_OK);
        cfg.guard = g;
        cfg.no_auth = false;
        CHECK_EQ_INT(lg_server_start(&cfg, &s, &err), LG_ERR_INVALID_ARG);
        CHECK(strstr(err.msg, "binding to 0.0.0.0 needs an API key") != NULL);
        lg_guard_close(g);
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", empty);
        CHECK_EQ_INT(system(cmd), 0);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    CHECK_EQ_INT(system(cmd), 0);
    curl_global_cleanup();
    return lg_test_done("test_guard_server");
}
