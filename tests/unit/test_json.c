/* test_json.c: src/json helpers — parse limits (size, depth bomb), jansson policy (duplicate
 * keys, NaN, lone surrogates, huge numbers, NUL), typed getters naming the field, numeric
 * range checks, UTF-8 repair, and the server's request parsers on malformed fields. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "server/server.h"
#include "test.h"

static enum lg_status parse(const char *s, json_t **out, struct lg_err *err)
{
    return lg_json_parse(s, strlen(s), LG_JSON_MAX_BODY, LG_JSON_MAX_DEPTH, true, out, err);
}

static void check_rejects(const char *doc, enum lg_status want, const char *needle)
{
    json_t *v = NULL;
    struct lg_err err = {0};
    enum lg_status st = parse(doc, &v, &err);
    CHECK_MSG(st == want, "doc %.60s: status %d, want %d (%s)", doc, st, want, err.msg);
    CHECK(v == NULL);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "doc %.60s: '%s' lacks '%s'", doc, err.msg,
              needle);
    json_decref(v);
}

static void test_parse_limits(void)
{
    json_t *v = NULL;
    struct lg_err err = {0};
    CHECK_EQ_INT(parse("{\"a\":1}", &v, &err), LG_OK);
    CHECK(json_is_object(v));
    json_decref(v);

    /* depth bomb: 10^6 '[' is refused by the pre-scan, no recursion */
    size_t n = 1000000;
    char *bomb = malloc(n + 1);
    memset(bomb, '[', n);
    bomb[n] = '\0';
    CHECK_EQ_INT(lg_json_parse(bomb, n, 2 * n, 64, true, &v, &err), LG_ERR_RANGE);
    CHECK(strstr(err.msg, "deeper than 64") != NULL);
    free(bomb);
    /* exactly 64 levels is fine; 65 is not */
    char deep[200] = "";
    for (int i = 0; i < 63; i++)
        strcat(deep, "[");
    char doc[400];
    snprintf(doc, sizeof doc, "{\"a\":%s", deep);
    for (int i = 0; i < 63; i++)
        strcat(doc, "]");
    strcat(doc, "}");
    CHECK_EQ_INT(parse(doc, &v, &err), LG_OK);
    json_decref(v);
    snprintf(doc, sizeof doc, "{\"a\":[%s", deep);
    for (int i = 0; i < 64; i++)
        strcat(doc, "]");
    strcat(doc, "}");
    CHECK_EQ_INT(parse(doc, &v, &err), LG_ERR_RANGE);
    /* brackets inside strings do not count */
    CHECK_EQ_INT(lg_json_scan_depth("{\"a\":\"[[[[[[\\\"[[[\"}", 19, 64), 1);

    /* body size cap */
    CHECK_EQ_INT(lg_json_parse("{}", 2, 1, 64, true, &v, &err), LG_ERR_RANGE);
    CHECK(strstr(err.msg, "limit is 1") != NULL);
    CHECK_EQ_INT(lg_json_parse("", 0, 10, 64, true, &v, &err), LG_ERR_FORMAT);

    check_rejects("{\"model\":\"a\",\"model\":\"b\"}", LG_ERR_FORMAT, "duplicate");
    check_rejects("{\"t\":NaN}", LG_ERR_FORMAT, "invalid");
    check_rejects("{\"t\":Infinity}", LG_ERR_FORMAT, "invalid");
    check_rejects("{\"t\":1e400}", LG_ERR_FORMAT, "overflow");
    check_rejects("{\"t\":99999999999999999999}", LG_ERR_FORMAT, "too big");
    check_rejects("{\"t\":\"\\ud800\"}", LG_ERR_FORMAT, "Unicode");
    check_rejects("{\"t\":\"\\udc00x\"}", LG_ERR_FORMAT, "Unicode");
    check_rejects("{\"t\":\"\\u0000\"}", LG_ERR_FORMAT, "NUL");
    check_rejects("{\"t\":\"\xff\"}", LG_ERR_FORMAT, "decode byte");
    check_rejects("[1,2]", LG_ERR_FORMAT, "expected a JSON object, got array");
    check_rejects("{\"a\":1} x", LG_ERR_FORMAT, "end of file expected");
    check_rejects("{\"a\":1,}", LG_ERR_FORMAT, "invalid JSON");
    /* a valid surrogate pair is fine */
    CHECK_EQ_INT(parse("{\"t\":\"\\ud83d\\ude00\"}", &v, &err), LG_OK);
    CHECK_EQ_STR(json_string_value(json_object_get(v, "t")), "\xF0\x9F\x98\x80");
    json_decref(v);
}

static void test_getters(void)
{
    json_t *o;
    struct lg_err err = {0};
    CHECK_EQ_INT(parse("{\"s\":\"hi\",\"i\":42,\"r\":1.5,\"ri\":100.0,\"b\":true,\"n\":null,"
                       "\"big\":9007199254740993,\"neg\":-1,\"arr\":[1,2,3],\"obj\":{}}",
                       &o, &err),
                 LG_OK);
    const char *s;
    size_t len;
    CHECK_EQ_INT(lg_json_get_str(o, "", "s", 10, &s, &len, &err), LG_OK);
    CHECK_EQ_STR(s, "hi");
    CHECK_EQ_INT(len, 2);
    CHECK_EQ_INT(lg_json_get_str(o, "", "s", 1, &s, &len, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_json_get_str(o, "messages[3]", "i", 10, &s, NULL, &err), LG_ERR_FORMAT);
    CHECK_EQ_STR(err.msg, "messages[3].i: expected string, got integer");
    CHECK_EQ_INT(lg_json_get_str(o, "", "missing", 10, &s, NULL, &err), LG_ERR_NOT_FOUND);
    CHECK_EQ_STR(err.msg, "missing: required");
    CHECK_EQ_INT(lg_json_get_str(o, "", "n", 10, &s, NULL, &err), LG_ERR_NOT_FOUND);

    int64_t i;
    CHECK_EQ_INT(lg_json_get_int(o, "", "i", 0, 100, &i, &err), LG_OK);
    CHECK_EQ_INT(i, 42);
    CHECK_EQ_INT(lg_json_get_int(o, "", "i", 0, 41, &i, &err), LG_ERR_RANGE);
    CHECK_EQ_STR(err.msg, "i: 42 is out of range [0, 41]");
    CHECK_EQ_INT(lg_json_get_int(o, "", "ri", 0, 1000, &i, &err), LG_OK);
    CHECK_EQ_INT(i, 100);
    CHECK_EQ_INT(lg_json_get_int(o, "options", "r", 0, 1000, &i, &err), LG_ERR_RANGE);
    CHECK(strstr(err.msg, "options.r: expected an integer") != NULL);
    CHECK_EQ_INT(lg_json_get_int(o, "", "s", 0, 1000, &i, &err), LG_ERR_FORMAT);
    CHECK_EQ_STR(err.msg, "s: expected integer, got string");
    CHECK_EQ_INT(lg_json_get_int(o, "", "neg", 0, 1000, &i, &err), LG_ERR_RANGE);
    /* exact int64 comparison beyond 2^53 */
    CHECK_EQ_INT(lg_json_get_int(o, "", "big", 0, 9007199254740992LL, &i, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_json_get_int(o, "", "big", 0, INT64_MAX, &i, &err), LG_OK);
    CHECK_EQ_INT(i, 9007199254740993LL);

    double d;
    CHECK_EQ_INT(lg_json_get_num(o, "", "r", 0, 2, &d, &err), LG_OK);
    CHECK_NEAR(d, 1.5, 0);
    CHECK_EQ_INT(lg_json_get_num(o, "", "i", 0, 2, &d, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_json_get_num(o, "", "b", 0, 2, &d, &err), LG_ERR_FORMAT);
    CHECK_EQ_STR(err.msg, "b: expected number, got boolean");

    bool b;
    CHECK_EQ_INT(lg_json_get_bool(o, "", "b", &b, &err), LG_OK);
    CHECK(b);
    CHECK_EQ_INT(lg_json_get_bool(o, "", "i", &b, &err), LG_ERR_FORMAT);

    json_t *a;
    CHECK_EQ_INT(lg_json_get_arr(o, "", "arr", 3, &a, &err), LG_OK);
    CHECK_EQ_INT(json_array_size(a), 3);
    CHECK_EQ_INT(lg_json_get_arr(o, "", "arr", 2, &a, &err), LG_ERR_RANGE);
    CHECK_EQ_STR(err.msg, "arr: 3 items; at most 2 allowed");
    CHECK_EQ_INT(lg_json_get_obj(o, "", "arr", &a, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_json_get_obj(o, "", "obj", &a, &err), LG_OK);
    json_decref(o);

    char p[LG_JSON_PATH_MAX];
    lg_json_path_index(p, "messages", 3);
    CHECK_EQ_STR(p, "messages[3]");
    lg_json_path(p, p, "content");
    CHECK_EQ_STR(p, "messages[3].content");
    lg_json_path(p, "", "model");
    CHECK_EQ_STR(p, "model");
}

static void test_utf8(void)
{
    size_t n;
    char *s = lg_json_utf8_sanitize("a\xff" "b\xe2\x82", 5, &n);
    CHECK_EQ_STR(s, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
    CHECK_EQ_INT(n, 11);
    free(s);
    s = lg_json_utf8_sanitize("\xed\xa0\x80", 3, &n); /* encoded surrogate */
    CHECK_EQ_INT(n, 9);
    free(s);
    s = lg_json_utf8_sanitize("\xc0\xaf", 2, &n); /* overlong '/' */
    CHECK_EQ_INT(n, 6);
    free(s);
    s = lg_json_utf8_sanitize("h\xC3\xA9llo \xF0\x9F\x98\x80", 11, &n);
    CHECK_EQ_STR(s, "h\xC3\xA9llo \xF0\x9F\x98\x80");
    free(s);
    json_t *nul = lg_json_text("a\0b", 3);
    CHECK_EQ_STR(json_string_value(nul), "a\xEF\xBF\xBD" "b");
    json_decref(nul);
    json_t *v = lg_json_text("ok\xff", 3);
    CHECK(v != NULL);
    CHECK_EQ_STR(json_string_value(v), "ok\xEF\xBF\xBD");
    json_decref(v);
}

/* A request parser on a body; returns status and the message. */
static enum lg_status run_parser(int which, const char *body, char *msg)
{
    struct srv_parsed p;
    struct lg_err err = {0};
    enum lg_status st;
    size_t n = strlen(body);
    switch (which) {
    case 0: st = srv_parse_openai_chat(body, n, LG_JSON_MAX_BODY, &p, &err); break;
    case 1: st = srv_parse_openai_completions(body, n, LG_JSON_MAX_BODY, &p, &err); break;
    case 2: st = srv_parse_ollama_chat(body, n, LG_JSON_MAX_BODY, &p, &err); break;
    default: st = srv_parse_ollama_generate(body, n, LG_JSON_MAX_BODY, &p, &err); break;
    }
    snprintf(msg, 512, "%s", err.msg);
    srv_parsed_free(&p);
    return st;
}

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void expect_field(int which, const char *body, const char *field_msg)
{
    char msg[512];
    enum lg_status st = run_parser(which, body, msg);
    CHECK_MSG(st != LG_OK, "parser %d accepted %s", which, body);
    CHECK_MSG(strncmp(msg, field_msg, strlen(field_msg)) == 0, "parser %d on %s: got '%s', "
              "want prefix '%s'", which, body, msg, field_msg);
}

static void test_request_fields(void)
{
    /* G8 boundary matrix on a few fields, each error names the field */
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"temperature\":-1}", "temperature: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"temperature\":\"hot\"}",
                 "temperature: expected number, got string");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"max_tokens\":0}", "max_tokens: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"max_tokens\":2147483648}", "max_tokens: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"max_tokens\":9007199254740993}",
                 "max_tokens: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1e308}", "max_tokens: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"max_tokens\":[1]}", "max_tokens: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"top_p\":1.5}", "top_p: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"top_k\":-1}", "top_k: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"n\":2}", "n: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"top_logprobs\":21}", "top_logprobs: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",1]}", "stop[1]: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"stop\":[\"\"]}", "stop[0]: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"stream\":\"yes\"}", "stream: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"response_format\":{\"type\":\"xml\"}}",
                 "response_format.type: ");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"response_format\":{\"type\":\"json_schema\"}}",
                 "response_format.json_schema: required");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"tools\":[{\"type\":\"function\"}]}",
                 "tools[0].function: required");
    expect_field(0, "{\"model\":\"m\"," MSGS ",\"reasoning_effort\":\"extreme\"}",
                 "reasoning_effort: ");
    expect_field(0, "{\"messages\":[]}", "model: required");
    expect_field(0, "{\"model\":\"\"," MSGS "}", "model: must not be empty");
    expect_field(0, "{\"model\":\"m\",\"messages\":[]}", "messages: must not be empty");
    expect_field(0, "{\"model\":\"m\",\"messages\":{}}", "messages: expected array");
    expect_field(0, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},{\"role\":\"user\","
                    "\"content\":\"a\"},{\"role\":\"x\"}]}",
                 "messages[2].role: unknown role");
    expect_field(0, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},{\"role\":\"user\"},"
                    "{\"role\":\"user\"},{\"role\":\"user\",\"content\":5}]}",
                 "messages[3].content: expected string or array, got integer");
    expect_field(0, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                    "\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                 "messages[0].content[0]: image_url input is not supported");
    expect_field(0, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{"
                    "\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                    "\"arguments\":\"{bad\"}}]}]}",
                 "messages[0].tool_calls[0].function.arguments: not a JSON object");
    expect_field(1, "{\"model\":\"m\",\"prompt\":[1,2,3]}", "prompt: only a string");
    expect_field(1, "{\"model\":\"m\"}", "prompt: required");
    expect_field(1, "{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}", "echo: ");
    expect_field(1, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}", "logprobs: ");
    expect_field(2, "{\"model\":\"m\",\"options\":{\"temperature\":\"x\"}}",
                 "options.temperature: expected number");
    expect_field(2, "{\"model\":\"m\",\"options\":{\"num_ctx\":-5}}", "options.num_ctx: ");
    expect_field(2, "{\"model\":\"m\",\"options\":{\"num_predict\":-3}}",
                 "options.num_predict: ");
    expect_field(2, "{\"model\":\"m\",\"options\":{\"stop\":\"x\",\"seed\":1.5}}",
                 "options.seed: ");
    expect_field(2, "{\"model\":\"m\",\"options\":{\"use_mmap\":1}}", "options.use_mmap: ");
    expect_field(2, "{\"model\":\"m\",\"options\":[]}", "options: expected object");
    expect_field(2, "{\"model\":\"m\",\"keep_alive\":\"5 minutes\"}", "keep_alive: ");
    expect_field(2, "{\"model\":\"m\",\"think\":\"ultra\"}", "think: ");
    expect_field(2, "{\"model\":\"m\",\"format\":\"xml\"}", "format: ");
    expect_field(2, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
                 "messages[0].content: expected string, got array");
    expect_field(2, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\","
                    "\"images\":[\"aGk=\"]}]}",
                 "messages[0].images: image input is not supported");
    expect_field(2, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{"
                    "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}",
                 "messages[0].tool_calls[0].function.arguments: expected object");
    expect_field(3, "{\"model\":\"m\",\"prompt\":5}", "prompt: expected string");
    expect_field(3, "{\"model\":\"m\",\"template\":\"{{ x }}\"}", "template: ");
    expect_field(3, "{\"model\":\"m\",\"raw\":\"yes\"}", "raw: ");
    expect_field(3, "{\"model\":\"m\",\"images\":[\"aGk=\"]}", "images: ");
}

static void test_request_values(void)
{
    struct srv_parsed p;
    struct lg_err err = {0};
    const char *b =
        "{\"model\":\"gemma4\",\"messages\":[{\"role\":\"developer\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
        "\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"r\","
        "\"tool_calls\":[{\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"x\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_9\","
        "\"content\":\"42\"}],\"temperature\":0.5,\"top_k\":7,\"seed\":123,\"stop\":\"END\","
        "\"max_completion_tokens\":99,\"stream\":true,\"stream_options\":{\"include_usage\":"
        "true},\"logprobs\":true,\"top_logprobs\":3,\"reasoning_effort\":\"none\","
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
        "\"type\":\"object\"}}}],\"response_format\":{\"type\":\"json_object\"}}";
    CHECK_EQ_INT(srv_parse_openai_chat(b, strlen(b), LG_JSON_MAX_BODY, &p, &err), LG_OK);
    const struct lg_gen_req *r = &p.req;
    CHECK_EQ_STR(r->model, "gemma4");
    CHECK_EQ_INT(r->kind, LG_PROMPT_CHAT);
    CHECK_EQ_INT(json_array_size(r->messages), 4);
    char *dump = json_dumps(r->messages, JSON_COMPACT);
    CHECK_EQ_STR(dump,
                 "[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":"
                 "\"ab\"},{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"r\","
                 "\"tool_calls\":[{\"id\":\"call_9\",\"name\":\"f\",\"arguments\":{\"x\":1}}]},"
                 "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"call_9\"}]");
    free(dump);
    dump = json_dumps(r->tools, JSON_COMPACT);
    CHECK_EQ_STR(dump, "[{\"name\":\"f\",\"description\":\"\",\"parameters\":{\"type\":"
                       "\"object\"}}]");
    free(dump);
    CHECK_NEAR(r->sampling.temperature, 0.5, 1e-7);
    CHECK_EQ_INT(r->sampling.top_k, 7);
    CHECK_EQ_INT(r->sampling.seed, 123);
    CHECK(r->sampling.set & LG_SAMP_SEED);
    CHECK(r->sampling.set & LG_SAMP_TEMPERATURE);
    CHECK(!(r->sampling.set & LG_SAMP_TOP_P));
    CHECK_NEAR(r->sampling.top_p, 1.0, 0);
    CHECK_EQ_INT(r->n_stop, 1);
    CHECK_EQ_STR(r->stop[0], "END");
    CHECK_EQ_INT(r->max_tokens, 99);
    CHECK(r->stream);
    CHECK(p.include_usage);
    CHECK_EQ_INT(r->top_logprobs, 3);
    CHECK_EQ_INT(r->think, LG_THINK_OFF);
    CHECK_EQ_INT(r->format, LG_FORMAT_JSON);
    srv_parsed_free(&p);

    const char *o = "{\"model\":\"g\",\"prompt\":\"\",\"keep_alive\":0,\"options\":{"
                    "\"num_predict\":-2,\"num_ctx\":8192,\"min_p\":0.05,\"stop\":[\"a\",\"b\"],"
                    "\"num_thread\":4},\"format\":{\"type\":\"object\"},\"think\":\"high\","
                    "\"raw\":true,\"stream\":false}";
    CHECK_EQ_INT(srv_parse_ollama_generate(o, strlen(o), LG_JSON_MAX_BODY, &p, &err), LG_OK);
    r = &p.req;
    CHECK_EQ_STR(r->prompt, "");
    CHECK_EQ_INT(r->kind, LG_PROMPT_RAW);
    CHECK_EQ_INT(r->keep_alive_ms, 0);
    CHECK_EQ_INT(r->max_tokens, -1);
    CHECK_EQ_INT(r->num_ctx, 8192);
    CHECK_NEAR(r->sampling.min_p, 0.05, 1e-7);
    CHECK_NEAR(r->sampling.temperature, 0.8, 1e-7); /* Ollama default */
    CHECK_EQ_INT(r->sampling.top_k, 40);
    CHECK_EQ_INT(r->n_stop, 2);
    CHECK_EQ_INT(r->format, LG_FORMAT_SCHEMA);
    CHECK(json_is_object(r->schema));
    CHECK_EQ_INT(r->think, LG_THINK_ON);
    CHECK(!r->stream);
    srv_parsed_free(&p);

    const char *c = "{\"model\":\"g\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\","
                    "\"thinking\":\"t\",\"tool_calls\":[{\"function\":{\"name\":\"w\","
                    "\"arguments\":{\"city\":\"Tokyo\"}}}]},{\"role\":\"tool\",\"tool_name\":"
                    "\"w\",\"content\":\"sunny\"}],\"keep_alive\":\"1h30m\"}";
    CHECK_EQ_INT(srv_parse_ollama_chat(c, strlen(c), LG_JSON_MAX_BODY, &p, &err), LG_OK);
    dump = json_dumps(p.req.messages, JSON_COMPACT);
    CHECK_EQ_STR(dump, "[{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"t\","
                       "\"tool_calls\":[{\"id\":\"call_0\",\"name\":\"w\",\"arguments\":{"
                       "\"city\":\"Tokyo\"}}]},{\"role\":\"tool\",\"content\":\"sunny\","
                       "\"name\":\"w\"}]");
    free(dump);
    CHECK_EQ_INT(p.req.keep_alive_ms, 5400000);
    CHECK(p.req.stream); /* Ollama default */
    srv_parsed_free(&p);
}

static void test_durations(void)
{
    int64_t ms;
    struct lg_err err;
    CHECK_EQ_INT(lg_parse_duration_ms("5m", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, 300000);
    CHECK_EQ_INT(lg_parse_duration_ms("1h30m10s", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, 5410000);
    CHECK_EQ_INT(lg_parse_duration_ms("250ms", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, 250);
    CHECK_EQ_INT(lg_parse_duration_ms("10", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, 10000);
    CHECK_EQ_INT(lg_parse_duration_ms("-1", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, -1);
    CHECK_EQ_INT(lg_parse_duration_ms("-5m", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, -1);
    CHECK_EQ_INT(lg_parse_duration_ms("0", &ms, &err), LG_OK);
    CHECK_EQ_INT(ms, 0);
    CHECK_EQ_INT(lg_parse_duration_ms("5 m", &ms, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_parse_duration_ms("5x", &ms, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_parse_duration_ms("", &ms, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_parse_duration_ms("1e300h", &ms, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_parse_duration_ms("nan", &ms, &err), LG_ERR_FORMAT);
}

/* lg_json_dumps: the same text as json_dumps for the same flags (also past its first 256-byte
 * buffer), NULL for NULL. (Allocation failures: tests/unit/test_alloc_fail.c's writers.) */
static void test_dumps(void)
{
    CHECK(lg_json_dumps(NULL, JSON_COMPACT) == NULL);
    json_t *v = json_pack("{s:[i,f,b,n],s:{s:s}}", "a", 1, 2.5, 1, "b", "k", "\u00e9\u2028x");
    CHECK(v != NULL);
    json_t *big = json_array();
    for (int i = 0; v && big && i < 200; i++)
        json_array_append_new(big, json_sprintf("item %d", i));
    if (v && big)
        json_object_set(v, "big", big);
    const size_t flags[] = {JSON_COMPACT, JSON_COMPACT | JSON_SORT_KEYS, JSON_INDENT(2)};
    for (size_t f = 0; v && f < sizeof flags / sizeof flags[0]; f++) {
        char *ours = lg_json_dumps(v, flags[f]), *ref = json_dumps(v, flags[f]);
        CHECK_MSG(ours && ref && strcmp(ours, ref) == 0, "flags %zu: lg_json_dumps != json_dumps",
                  flags[f]);
        CHECK(ours && strlen(ours) > 256);
        free(ours);
        free(ref);
    }
    json_decref(big);
    json_decref(v);
}

int main(void)
{
    test_parse_limits();
    test_getters();
    test_utf8();
    test_request_fields();
    test_request_values();
    test_durations();
    test_dumps();
    return lg_test_done("test_json");
}
