/* test_chat_parse.c: the Gemma 4 tool-call scanner (lg_chat_parse_call) and the streaming
 * output parser, on well-formed output and on every malformation of spec §7.12–7.13. Each
 * streaming case is fed whole, byte by byte, in 3-byte and in pseudo-random pieces; all must give
 * the same events, and while streaming the answer emitted so far must always be a prefix of the
 * final answer (no half marker is ever emitted and then taken back). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "test.h"

static int n_call_cases, n_stream_cases;

/* ---- lg_chat_parse_call ------------------------------------------------------------------- */

struct call_case {
    const char *body;
    const char *name;  /* NULL = expect LG_ERR_FORMAT */
    const char *args;  /* expected JSON text, compared exactly */
    int repaired;
};

static const struct call_case call_cases[] = {
    {"call:get_weather{city:<|\"|>Tokyo<|\"|>}", "get_weather", "{\"city\":\"Tokyo\"}", 0},
    {"call:f{a:1,b:-2.5,c:3.0,d:1e-5,e:true,f:false,g:null}", "f",
     "{\"a\":1,\"b\":-2.5,\"c\":3.0,\"d\":1e-5,\"e\":true,\"f\":false,\"g\":null}", 0},
    {"call:f{o:{x:<|\"|>y<|\"|>,n:{m:[1,2,{k:<|\"|>v<|\"|>}]}},arr:[<|\"|>a<|\"|>,<|\"|>b<|\"|>],empty:{},ea:[]}",
     "f", "{\"o\":{\"x\":\"y\",\"n\":{\"m\":[1,2,{\"k\":\"v\"}]}},\"arr\":[\"a\",\"b\"],\"empty\":{},\"ea\":[]}", 0},
    {"call:f{code:<|\"|>print(\"hi\")\n\"\"\"doc\"\"\"\\ end<|\"|>}", "f",
     "{\"code\":\"print(\\\"hi\\\")\\n\\\"\\\"\\\"doc\\\"\\\"\\\"\\\\ end\"}", 0},
    /* missing opening delimiter */
    {"call:f{city:Tokyo<|\"|>,unit:<|\"|>c<|\"|>}", "f", "{\"city\":\"Tokyo\",\"unit\":\"c\"}", 1},
    {"call:f{location:San Francisco, CA<|\"|>}", "f", "{\"location\":\"San Francisco, CA\"}", 1},
    {"call:f{city:Tokyo}", "f", "{\"city\":\"Tokyo\"}", 1},
    {"call:f{a:foo,b:<|\"|>bar<|\"|>}", "f", "{\"a\":\"foo\",\"b\":\"bar\"}", 1},
    /* key=value */
    {"call:f{city=<|\"|>Paris<|\"|>, n=3}", "f", "{\"city\":\"Paris\",\"n\":3}", 1},
    /* JSON quotes */
    {"call:f{\"city\": \"Paris\", \"n\": 2}", "f", "{\"city\":\"Paris\",\"n\":2}", 1},
    {"call:f{q:\"a \\\"b\\\" \\u00e9\"}", "f", "{\"q\":\"a \\\"b\\\" \xc3\xa9\"}", 1},
    {"call:f{<|\"|>key<|\"|>:1}", "f", "{\"key\":1}", 1},
    /* call:name(...) */
    {"call:f(city=<|\"|>Oslo<|\"|>, days=3)", "f", "{\"city\":\"Oslo\",\"days\":3}", 1},
    /* <|"|> inside a value, interior quotes */
    {"call:f{t:<|\"|>say <|\"|>hi<|\"|> now<|\"|>}", "f", "{\"t\":\"say \\\"hi\\\" now\"}", 1},
    {"call:f{t:<|\"|>He said \"stop\", then left<|\"|>}", "f",
     "{\"t\":\"He said \\\"stop\\\", then left\"}", 0},
    {"call:f{t:<|\"|>a, b<|\"|>,u:<|\"|>c<|\"|>}", "f", "{\"t\":\"a, b\",\"u\":\"c\"}", 0},
    /* call: missing, no braces, Python literals, trailing comma, missing close */
    {"f{a:1}", "f", "{\"a\":1}", 1},
    {"call:ping", "ping", "{}", 1},
    {"call:ping{}", "ping", "{}", 0},
    {"call:f{a:True,b:None,c:False}", "f", "{\"a\":true,\"b\":null,\"c\":false}", 1},
    {"call:f{a:1,}", "f", "{\"a\":1}", 1},
    {"call:f{a:[1,2,],}", "f", "{\"a\":[1,2]}", 1},
    {"call:f{a:1", "f", "{\"a\":1}", 1},
    {"call:f{a:{b:[1,2", "f", "{\"a\":{\"b\":[1,2]}}", 1},
    {"call:f{a:1}  trailing", "f", "{\"a\":1}", 1},
    /* numbers */
    {"call:f{a:+5,b:.5,c:5.,d:007,e:1e999,f:-0,g:1E+2}", "f",
     "{\"a\":5,\"b\":0.5,\"c\":5.0,\"d\":\"007\",\"e\":\"1e999\",\"f\":-0,\"g\":1E+2}", 1},
    {"call:f{n:12abc}", "f", "{\"n\":\"12abc\"}", 1},
    {"call:f{a:1 b:2}", "f", "{\"a\":\"1 b:2\"}", 1}, /* missing comma: one bare string */
    {"call:f{big:123456789012345678901234567890}", "f", "{\"big\":123456789012345678901234567890}", 0},
    /* whitespace, unicode, empty string, control characters, invalid UTF-8 */
    {"  call:f {\n  a: 1,\n  b: <|\"|>x<|\"|>\n}\n", "f", "{\"a\":1,\"b\":\"x\"}", 0},
    {"call:f{\xe5\x90\x8d:<|\"|>\xe5\x80\xa4 \xf0\x9f\x98\x80<|\"|>}", "f",
     "{\"\xe5\x90\x8d\":\"\xe5\x80\xa4 \xf0\x9f\x98\x80\"}", 0},
    {"call:f{a:<|\"|><|\"|>}", "f", "{\"a\":\"\"}", 0},
    {"call:f{a:<|\"|>tab\there\x01<|\"|>}", "f", "{\"a\":\"tab\\there\\u0001\"}", 0},
    {"call:f{a:<|\"|>bad \xff\xfe byte<|\"|>}", "f", "{\"a\":\"bad \xef\xbf\xbd\xef\xbf\xbd byte\"}", 0},
    {"call:ns.tool-name_2{x:1}", "ns.tool-name_2", "{\"x\":1}", 0},
    /* errors */
    {"call:{a:1}", NULL, NULL, 0},
    {"\x01" "call:f{a:1}", NULL, NULL, 0},
    {"call:f\xc3\xa9{a:1}", NULL, NULL, 0},
    {"call:f{a:<|\"|>unterminated}", NULL, NULL, 0},
    {"call:f{:1}", NULL, NULL, 0},
    {"call:f{a}", NULL, NULL, 0},
    {"call:f{a:}", NULL, NULL, 0},
    {"call:f garbage", NULL, NULL, 0},
    {"", NULL, NULL, 0},
    {"call:f{a:\"unterminated}", NULL, NULL, 0},
};

static void test_parse_call(void)
{
    for (size_t i = 0; i < sizeof call_cases / sizeof *call_cases; i++) {
        const struct call_case *tc = &call_cases[i];
        char *name = NULL, *args = NULL;
        bool repaired = false;
        struct lg_err err = {0};
        enum lg_status st = lg_chat_parse_call(tc->body, strlen(tc->body), &name, &args, &repaired, &err);
        if (!tc->name) {
            CHECK_MSG(st == LG_ERR_FORMAT && err.msg[0], "case %zu (%s): want an error, got %d %s",
                      i, tc->body, (int)st, args ? args : "");
            CHECK(name == NULL && args == NULL);
        } else {
            CHECK_MSG(st == LG_OK, "case %zu (%s): %s", i, tc->body, err.msg);
            CHECK_EQ_STR(name, tc->name);
            CHECK_MSG(args && strcmp(args, tc->args) == 0, "case %zu: args %s, want %s", i,
                      args ? args : "(null)", tc->args);
            CHECK_MSG(repaired == (tc->repaired != 0), "case %zu (%s): repaired %d", i, tc->body,
                      repaired);
            json_t *j = args ? json_loads(args, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL) : NULL;
            CHECK_MSG(json_is_object(j), "case %zu: not a JSON object", i);
            json_decref(j);
        }
        free(name);
        free(args);
        n_call_cases++;
    }
    /* Deep nesting is an error, not a stack overflow. */
    char deep[4200];
    size_t p = (size_t)snprintf(deep, sizeof deep, "call:f{a:");
    for (int i = 0; i < 2000; i++)
        deep[p++] = '[';
    deep[p] = 0;
    char *name = NULL, *args = NULL;
    bool repaired;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_chat_parse_call(deep, p, &name, &args, &repaired, &err), LG_ERR_FORMAT);
    n_call_cases++;
}

/* ---- streaming ----------------------------------------------------------------------------- */

struct stream_case {
    enum lg_chat_flavour fl;
    const char *input;
    const char *content;
    const char *reasoning;
    const char *calls;  /* "name:{json}" entries separated by '\n' ("" = none) */
    int n_errors;
    const char *tools;  /* JSON tools array or NULL */
    int in_reasoning;
};

#define G4 LG_CHAT_GEMMA4_SMALL
#define TAGTOOL "[{\"type\":\"function\",\"function\":{\"name\":\"tag\",\"parameters\":{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\"},\"note\":{\"type\":\"string\"},\"o\":{\"type\":\"object\"}}}}}]"
#define TOOLS "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]"

static const struct stream_case stream_cases[] = {
    {G4, "Hello world", "Hello world", "", "", 0, NULL, 0},
    {G4, "<|turn>model\nHi there", "Hi there", "", "", 0, NULL, 0},
    {G4, "<|channel>thought\nLet me think.\n<channel|>The answer is 4.", "The answer is 4.",
     "Let me think.", "", 0, NULL, 0},
    {G4, "<|channel>thought\n<channel|>Answer", "Answer", "", "", 0, NULL, 0},
    {G4, "Answer<|channel>thought\n<channel|>", "Answer", "", "", 0, NULL, 0},
    {G4, "Answer.<channel|>", "Answer.", "", "", 0, NULL, 0},
    {G4, "<|channel>no header<channel|>x", "x", "no header", "", 0, NULL, 0},
    {G4, "<|tool_call>call:get_weather{city:<|\"|>Tokyo<|\"|>}<tool_call|><|tool_response>", "", "",
     "get_weather:{\"city\":\"Tokyo\"}", 0, TOOLS, 0},
    {G4, "<|tool_call>call:a{x:1}<tool_call|><|tool_call>call:b{y:[true,null]}<tool_call|>", "", "",
     "a:{\"x\":1}\nb:{\"y\":[true,null]}", 0, NULL, 0},
    {G4, "<|channel>thought\nneed weather<channel|><|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>",
     "", "need weather", "get_weather:{\"city\":\"Paris\"}", 0, TOOLS, 0},
    {G4, "Let me check.<|tool_call>call:get_weather{city:<|\"|>Rome<|\"|>}<tool_call|>", "Let me check.",
     "", "get_weather:{\"city\":\"Rome\"}", 0, TOOLS, 0},
    /* the opening <|tool_call> dropped */
    {G4, "call:get_weather{city:<|\"|>Rome<|\"|>}<tool_call|>", "", "", "get_weather:{\"city\":\"Rome\"}", 0, TOOLS, 0},
    {G4, "\ncall:f{a:<|\"|>}{<|\"|>} and more", "and more", "", "f:{\"a\":\"}{\"}", 0, NULL, 0},
    {G4, "<|channel>thought\nx<channel|>call:f(a=1)", "", "x", "f:{\"a\":1}", 0, NULL, 0},
    {G4, "call: me maybe", "call: me maybe", "", "", 0, NULL, 0},
    {G4, "calling you", "calling you", "", "", 0, NULL, 0},
    {G4, "call:", "call:", "", "", 0, NULL, 0},
    {G4, "call:f!<tool_call|>call:a{x:1}", "call:f!call:a{x:1}", "", "", 0, NULL, 0}, /* fuzz find */
    /* malformed: an error event, and no markup in the answer */
    {G4, "<|tool_call>call:f{a:<|\"|>oops<tool_call|>Done.", "Done.", "", "", 1, NULL, 0},
    {G4, "<|tool_call>call:{}<tool_call|>", "", "", "", 1, NULL, 0},
    {G4, "<|tool_call>call:launch_missiles{}<tool_call|>", "", "", "", 1, TOOLS, 0},
    /* text that only resembles markers */
    {G4, "a < b and <|notmarker> ok <", "a < b and <|notmarker> ok <", "", "", 0, NULL, 0},
    {G4, "Hello <|chan", "Hello <|chan", "", "", 0, NULL, 0},
    /* <|"|> outside a call is an ordinary quote (never markup in the answer) */
    {G4, "quote <|\"|> kept", "quote \" kept", "", "", 0, NULL, 0},
    /* end of generation */
    {G4, "Hi<turn|>ignored", "Hi", "", "", 0, NULL, 0},
    {G4, "Hi<eos><|channel>x", "Hi", "", "", 0, NULL, 0},
    {G4, "Hi<|turn>user\nmore", "Hi", "", "", 0, NULL, 0},
    {G4, "Hi<|tool_response>response:x{}", "Hi", "", "", 0, NULL, 0},
    /* calls cut short */
    {G4, "<|tool_call>call:f{a:1}<|channel>thought\nx<channel|>y", "y", "x", "f:{\"a\":1}", 0, NULL, 0},
    {G4, "<|tool_call>call:f{a:1", "", "", "f:{\"a\":1}", 0, NULL, 0},
    {G4, "<|tool_call>call:f{a:<|\"|>x", "", "", "", 1, NULL, 0},
    {G4, "<|tool_call>call:f{a:2}<turn|>", "", "", "f:{\"a\":2}", 0, NULL, 0},
    {G4, "<|channel>thought\nhmm<|tool_call>call:f{}<tool_call|>", "", "hmm", "f:{}", 0, NULL, 0},
    /* whitespace, unicode */
    {G4, "\n\n  Answer  \n", "Answer", "", "", 0, NULL, 0},
    {G4, "Para one.\n\nPara two.\n", "Para one.\n\nPara two.", "", "", 0, NULL, 0},
    {G4, "Caf\xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac", "Caf\xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac", "", "", 0, NULL, 0},
    {G4, "<tool_call|>stray close<tool_response|>", "stray close", "", "", 0, NULL, 0},
    /* generation that starts inside the thought channel */
    {G4, "still thinking\n<channel|>answer", "answer", "still thinking", "", 0, NULL, 1},
    /* an array argument written as a string of JSON, coerced by the schema (spec §7.13) */
    {G4, "<|tool_call>call:tag{tags:<|\"|>[\"a\", \"b\"]<|\"|>,note:<|\"|>[x]<|\"|>,o:<|\"|>{\"k\": 1}<|\"|>}<tool_call|>",
     "", "", "tag:{\"tags\":[\"a\",\"b\"],\"note\":\"[x]\",\"o\":{\"k\":1}}", 0, TAGTOOL, 0},
    /* Gemma 3 */
    {LG_CHAT_GEMMA3, "Hello<end_of_turn>junk", "Hello", "", "", 0, NULL, 0},
    {LG_CHAT_GEMMA3, "<|channel>x call:f{} <end_of_", "<|channel>x call:f{} <end_of_", "", "", 0, NULL, 0},
    {LG_CHAT_GEMMA3, "a<eos>", "a", "", "", 0, NULL, 0},
};

struct collected {
    struct lg_chat_buf content, reasoning, calls;
    int n_errors;
};

static void drain(struct lg_chat_parser *p, struct collected *c)
{
    struct lg_chat_event ev;
    while (lg_chat_parser_next(p, &ev)) {
        switch (ev.type) {
        case LG_CHAT_EV_CONTENT: lg_chat_buf_put(&c->content, ev.text, ev.len); break;
        case LG_CHAT_EV_REASONING: lg_chat_buf_put(&c->reasoning, ev.text, ev.len); break;
        case LG_CHAT_EV_TOOL_CALL:
            if (c->calls.len)
                lg_chat_buf_puts(&c->calls, "\n");
            lg_chat_buf_puts(&c->calls, ev.name);
            lg_chat_buf_puts(&c->calls, ":");
            lg_chat_buf_put(&c->calls, ev.text, ev.len);
            break;
        case LG_CHAT_EV_ERROR: {
            c->n_errors++;
            json_t *j = json_loadb(ev.text, ev.len, 0, NULL);
            CHECK_MSG(json_is_object(j) && json_is_string(json_object_get(j, "message")),
                      "error event is not a JSON object: %s", ev.text);
            json_decref(j);
            break;
        }
        }
        lg_chat_event_free(&ev);
    }
}

static const char *s_or_empty(const struct lg_chat_buf *b)
{
    return b->ptr ? b->ptr : "";
}

/* mode 0: whole; 1: bytes; 2: 3-byte pieces; 3: pseudo-random pieces */
static void run_stream(const struct stream_case *tc, size_t idx, int mode)
{
    json_t *tools = tc->tools ? json_loads(tc->tools, 0, NULL) : NULL;
    struct lg_chat_parser *p = lg_chat_parser_create(tc->fl, tools);
    json_decref(tools);
    CHECK(p != NULL);
    if (!p)
        return;
    if (tc->in_reasoning)
        lg_chat_parser_begin_in_reasoning(p);
    struct collected c = {0};
    size_t n = strlen(tc->input), i = 0;
    unsigned seed = 12345u + (unsigned)idx;
    bool prefix_ok = true;
    while (i < n) {
        size_t step = mode == 0 ? n : mode == 1 ? 1 : mode == 2 ? 3 : 1 + (seed = seed * 1103515245u + 12345u) % 7;
        if (step > n - i)
            step = n - i;
        CHECK_EQ_INT(lg_chat_parser_feed(p, tc->input + i, step, false), LG_OK);
        i += step;
        drain(p, &c);
        if (c.content.len > strlen(tc->content) || memcmp(s_or_empty(&c.content), tc->content, c.content.len) != 0)
            prefix_ok = false;
    }
    CHECK_EQ_INT(lg_chat_parser_finish(p), LG_OK);
    drain(p, &c);
    CHECK_MSG(prefix_ok, "case %zu mode %d: streamed answer was not a prefix of the final one", idx, mode);
    CHECK_MSG(strcmp(s_or_empty(&c.content), tc->content) == 0, "case %zu mode %d: content [%s] want [%s]",
              idx, mode, s_or_empty(&c.content), tc->content);
    CHECK_MSG(strcmp(s_or_empty(&c.reasoning), tc->reasoning) == 0,
              "case %zu mode %d: reasoning [%s] want [%s]", idx, mode, s_or_empty(&c.reasoning), tc->reasoning);
    CHECK_MSG(strcmp(s_or_empty(&c.calls), tc->calls) == 0, "case %zu mode %d: calls [%s] want [%s]", idx,
              mode, s_or_empty(&c.calls), tc->calls);
    CHECK_MSG(c.n_errors == tc->n_errors, "case %zu mode %d: %d errors, want %d", idx, mode, c.n_errors,
              tc->n_errors);
    lg_chat_buf_free(&c.content);
    lg_chat_buf_free(&c.reasoning);
    lg_chat_buf_free(&c.calls);
    lg_chat_parser_destroy(p);
}

static void test_stream(void)
{
    for (size_t i = 0; i < sizeof stream_cases / sizeof *stream_cases; i++) {
        for (int mode = 0; mode < 4; mode++)
            run_stream(&stream_cases[i], i, mode);
        n_stream_cases++;
    }
}

/* Special tokens fed as separate pieces with special = true, as the engine does. */
static void test_special_pieces(void)
{
    struct lg_chat_parser *p = lg_chat_parser_create(LG_CHAT_GEMMA4_LARGE, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    static const struct {
        const char *t;
        bool special;
    } pieces[] = {{"<|channel>", true}, {"thought", false}, {"\n", false}, {"ok", false},
                  {"<channel|>", true}, {"Sure", false},   {"<", false},  {"b>", false},
                  {"<|tool_call>", true}, {"call", false}, {":f{", false}, {"x:", false},
                  {"<|\"|>", true},     {"y", false},      {"<|\"|>", true}, {"}", false},
                  {"<tool_call|>", true}, {"<|tool_response>", true}};
    struct collected c = {0};
    for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
        CHECK_EQ_INT(lg_chat_parser_feed(p, pieces[i].t, strlen(pieces[i].t), pieces[i].special), LG_OK);
        drain(p, &c);
    }
    CHECK_EQ_INT(lg_chat_parser_finish(p), LG_OK);
    drain(p, &c);
    CHECK_EQ_STR(s_or_empty(&c.reasoning), "ok");
    CHECK_EQ_STR(s_or_empty(&c.content), "Sure<b>");
    CHECK_EQ_STR(s_or_empty(&c.calls), "f:{\"x\":\"y\"}");
    CHECK_EQ_INT(c.n_errors, 0);
    lg_chat_buf_free(&c.content);
    lg_chat_buf_free(&c.reasoning);
    lg_chat_buf_free(&c.calls);
    lg_chat_parser_destroy(p);

    /* An over-long call body is refused with LG_ERR_RANGE, not buffered forever. */
    p = lg_chat_parser_create(LG_CHAT_GEMMA4_SMALL, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_EQ_INT(lg_chat_parser_feed(p, "<|tool_call>call:f{a:<|\"|>", 26, true), LG_OK);
    char *big = malloc(1 << 16);
    memset(big, 'x', 1 << 16);
    enum lg_status st = LG_OK;
    for (int i = 0; i < 40 && st == LG_OK; i++)
        st = lg_chat_parser_feed(p, big, 1 << 16, false);
    CHECK_EQ_INT(st, LG_ERR_RANGE);
    free(big);
    lg_chat_parser_destroy(p);
}


/* ---- streamed tool-call arguments (lg_chat_parser_stream_calls) ---- */

struct deltas {
    struct collected c;
    struct lg_chat_buf acc; /* deltas of the current call */
    int n_deltas, n_named, n_full, n_calls;
    bool consistent;
};

static void drain_deltas(struct lg_chat_parser *p, struct deltas *d)
{
    struct lg_chat_event ev;
    while (lg_chat_parser_next(p, &ev)) {
        if ((int)ev.type == LG_CHAT_EV_TOOL_CALL_DELTA) {
            if (ev.name) { /* a new call starts: only the first delta is named */
                d->n_named++;
                d->acc.len = 0;
            }
            d->n_deltas++;
            lg_chat_buf_put(&d->acc, ev.text, ev.len);
            lg_chat_event_free(&ev);
            continue;
        }
        if (ev.type == LG_CHAT_EV_TOOL_CALL) {
            d->n_calls++;
            if (ev.streamed != d->acc.len || (ev.streamed && memcmp(ev.text, d->acc.ptr, ev.streamed)))
                d->consistent = false;
            if (ev.streamed == ev.len)
                d->n_full++;
            d->acc.len = 0;
            if (d->c.calls.len)
                lg_chat_buf_puts(&d->c.calls, "\n");
            lg_chat_buf_puts(&d->c.calls, ev.name);
            lg_chat_buf_puts(&d->c.calls, ":");
            lg_chat_buf_put(&d->c.calls, ev.text, ev.len);
        } else if (ev.type == LG_CHAT_EV_ERROR) {
            d->c.n_errors++;
            d->acc.len = 0;
        } else if (ev.type == LG_CHAT_EV_CONTENT) {
            lg_chat_buf_put(&d->c.content, ev.text, ev.len);
        } else {
            lg_chat_buf_put(&d->c.reasoning, ev.text, ev.len);
        }
        lg_chat_event_free(&ev);
    }
}

static void deltas_free(struct deltas *d)
{
    lg_chat_buf_free(&d->c.content);
    lg_chat_buf_free(&d->c.reasoning);
    lg_chat_buf_free(&d->c.calls);
    lg_chat_buf_free(&d->acc);
}

/* Feeds input in pieces of `step` bytes (0 = whole) with deltas on. */
static void feed_deltas(enum lg_chat_flavour fl, const char *tools_json, const char *input,
                        size_t step, struct deltas *d)
{
    memset(d, 0, sizeof *d);
    d->consistent = true;
    json_t *tools = tools_json ? json_loads(tools_json, 0, NULL) : NULL;
    struct lg_chat_parser *p = lg_chat_parser_create(fl, tools);
    json_decref(tools);
    CHECK(p != NULL);
    if (!p)
        return;
    lg_chat_parser_stream_calls(p, true);
    size_t n = strlen(input);
    for (size_t i = 0; i < n;) {
        size_t k = step == 0 || step > n - i ? n - i : step;
        CHECK_EQ_INT(lg_chat_parser_feed(p, input + i, k, false), LG_OK);
        i += k;
        drain_deltas(p, d);
    }
    CHECK_EQ_INT(lg_chat_parser_finish(p), LG_OK);
    drain_deltas(p, d);
    lg_chat_parser_destroy(p);
}

/* Every streaming case again with deltas on: the same content, reasoning, calls and errors,
 * and for every call the deltas are exactly the first `streamed` bytes of its arguments. */
static void test_stream_deltas_all(void)
{
    static const size_t steps[] = {0, 1, 3, 7};
    for (size_t i = 0; i < sizeof stream_cases / sizeof *stream_cases; i++) {
        const struct stream_case *tc = &stream_cases[i];
        if (tc->in_reasoning)
            continue;
        for (size_t m = 0; m < sizeof steps / sizeof *steps; m++) {
            struct deltas d;
            feed_deltas(tc->fl, tc->tools, tc->input, steps[m], &d);
            CHECK_MSG(strcmp(s_or_empty(&d.c.content), tc->content) == 0 &&
                          strcmp(s_or_empty(&d.c.reasoning), tc->reasoning) == 0 &&
                          strcmp(s_or_empty(&d.c.calls), tc->calls) == 0 &&
                          d.c.n_errors == tc->n_errors,
                      "deltas on, case %zu step %zu: calls [%s] want [%s]", i, steps[m],
                      s_or_empty(&d.c.calls), tc->calls);
            CHECK_MSG(d.consistent, "case %zu step %zu: deltas disagree with the final call", i,
                      steps[m]);
            deltas_free(&d);
        }
    }
}

static void test_stream_deltas(void)
{
    static const char *tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{"
        "\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
        "\"tags\":{\"type\":\"array\"}}}}}]";
    struct deltas d;
    /* canonical call, byte by byte: fully streamed, many deltas, one named */
    const char *canon = "<|tool_call>call:get_weather{city:<|\"|>Pa\xc3\xa9ris \"q\"\n<|\"|>,"
                        "n:-1.5e3,o:{a:[1,true,null,<|\"|>x<|\"|>],b:{}},z:[]}<tool_call|>";
    feed_deltas(G4, tools, canon, 1, &d);
    CHECK_EQ_STR(s_or_empty(&d.c.calls),
                 "get_weather:{\"city\":\"Pa\xc3\xa9ris \\\"q\\\"\\n\",\"n\":-1.5e3,"
                 "\"o\":{\"a\":[1,true,null,\"x\"],\"b\":{}},\"z\":[]}");
    CHECK_EQ_INT(d.n_calls, 1);
    CHECK_EQ_INT(d.n_full, 1);
    CHECK_EQ_INT(d.n_named, 1);
    CHECK_MSG(d.n_deltas >= 20, "byte-by-byte canonical call: %d deltas", d.n_deltas);
    CHECK(d.consistent);
    deltas_free(&d);

    /* a string held back until it really ended: after `city:<|"|>x<|"|>,` only `{"city":"x`
     * has gone out (the delimiter might still turn out to be an interior quote) */
    json_t *t = json_loads(tools, 0, NULL);
    struct lg_chat_parser *p = lg_chat_parser_create(G4, t);
    json_decref(t);
    CHECK(p != NULL);
    if (p) {
        lg_chat_parser_stream_calls(p, true);
        memset(&d, 0, sizeof d);
        d.consistent = true;
        const char *a = "<|tool_call>call:get_weather{city:<|\"|>x<|\"|>,";
        CHECK_EQ_INT(lg_chat_parser_feed(p, a, strlen(a), false), LG_OK);
        drain_deltas(p, &d);
        CHECK_EQ_STR(s_or_empty(&d.acc), "{\"city\":\"x");
        CHECK_EQ_INT(lg_chat_parser_feed(p, "n:", 2, false), LG_OK);
        drain_deltas(p, &d);
        CHECK_EQ_STR(s_or_empty(&d.acc), "{\"city\":\"x\",\"n\":");
        CHECK_EQ_INT(lg_chat_parser_feed(p, "12", 2, false), LG_OK);
        drain_deltas(p, &d);
        CHECK_EQ_STR(s_or_empty(&d.acc), "{\"city\":\"x\",\"n\":"); /* 12 may grow */
        CHECK_EQ_INT(lg_chat_parser_feed(p, "}<tool_call|>", 13, false), LG_OK);
        drain_deltas(p, &d);
        CHECK_EQ_INT(d.n_full, 1);
        CHECK_EQ_STR(s_or_empty(&d.c.calls), "get_weather:{\"city\":\"x\",\"n\":12}");
        deltas_free(&d);
        lg_chat_parser_destroy(p);
    }

    /* non-canonical: whitespace, Python words, a string where the schema wants an array
     * (coerced at the end), an unknown tool: the deltas stop, the final call is complete */
    static const struct {
        const char *in, *want;
        int n_errors;
    } off[] = {
        {"<|tool_call>call:get_weather{city: <|\"|>x<|\"|>}<tool_call|>",
         "get_weather:{\"city\":\"x\"}", 0},
        {"<|tool_call>call:get_weather{city:<|\"|>x<|\"|>,ok:True}<tool_call|>",
         "get_weather:{\"city\":\"x\",\"ok\":true}", 0},
        {"<|tool_call>call:get_weather{city:<|\"|>x<|\"|>,tags:<|\"|>[\"a\"]<|\"|>}<tool_call|>",
         "get_weather:{\"city\":\"x\",\"tags\":[\"a\"]}", 0},
        {"<|tool_call>call:nope{a:1}<tool_call|>", "", 1},
        {"<|tool_call>call:get_weather{city:<|\"|>x, y<|\"|>z<|\"|>}<tool_call|>",
         "get_weather:{\"city\":\"x, y\\\"z\"}", 0},
        {"<|tool_call>call:get_weather{city:<|\"|>cut", "", 1},
    };
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        for (size_t step = 0; step < 4; step += 3) {
            feed_deltas(G4, tools, off[i].in, step, &d);
            CHECK_MSG(strcmp(s_or_empty(&d.c.calls), off[i].want) == 0 &&
                          d.c.n_errors == off[i].n_errors && d.consistent,
                      "non-canonical %zu step %zu: [%s] want [%s], %d errors", i, step,
                      s_or_empty(&d.c.calls), off[i].want, d.c.n_errors);
            deltas_free(&d);
        }
    }

    /* <|"|> outside a call is an ordinary quote, never markup */
    feed_deltas(G4, NULL, "say <|\"|>hi<|\"|><|channel>thought\nq<|\"|><channel|>", 1, &d);
    CHECK_EQ_STR(s_or_empty(&d.c.content), "say \"hi\"");
    CHECK_EQ_STR(s_or_empty(&d.c.reasoning), "q\"");
    deltas_free(&d);
}

int main(void)
{
    test_parse_call();
    test_stream();
    test_special_pieces();
    test_stream_deltas_all();
    test_stream_deltas();
    printf("test_chat_parse: %d tool-call bodies, %d streaming cases (x4 chunkings)\n", n_call_cases,
           n_stream_cases);
    return lg_test_done("test_chat_parse");
}
