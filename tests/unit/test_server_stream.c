/* test_server_stream.c: the SSE (OpenAI) and NDJSON (Ollama) writers and the non-streamed
 * bodies, fed a scripted sequence of engine events; outputs compared byte for byte with the
 * formats of api.md §2.1/§2.2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "server/server.h"
#include "test.h"

static int64_t fixed_clock(void)
{
    return 1761498924097767000LL; /* 2025-10-26T17:15:24.097767Z */
}

/* Engine output for one turn: thought, answer in two pieces, one tool call in two
 * fragments, a second tool call in one fragment, then done. */
static const struct lg_gen_event script[] = {
    {.kind = LG_GEN_EV_REASONING, .text = "We", .n_text = 2},
    {.kind = LG_GEN_EV_CONTENT, .text = "Hel", .n_text = 3},
    {.kind = LG_GEN_EV_CONTENT, .text = "lo \"x\"\n", .n_text = 7},
    {.kind = LG_GEN_EV_TOOL_CALL, .text = "{\"city\":", .n_text = 8, .tool_index = 0,
     .tool_id = "call_a", .tool_name = "get_weather"},
    {.kind = LG_GEN_EV_TOOL_CALL, .text = "\"Tokyo\"}", .n_text = 8, .tool_index = 0},
    {.kind = LG_GEN_EV_TOOL_CALL, .text = "{}", .n_text = 2, .tool_index = 1,
     .tool_id = "call_b", .tool_name = "now"},
    {.kind = LG_GEN_EV_DONE, .finish = LG_FINISH_STOP,
     .usage = {.prompt_tokens = 10, .cached_tokens = 2, .completion_tokens = 5},
     .timings = {.load_ns = 1000, .prompt_ns = 2000000, .eval_ns = 50000000,
                 .total_ns = 60000000, .prompt_eval_n = 8}},
};
enum { N_SCRIPT = sizeof script / sizeof script[0] };

#define HEAD "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":" \
             "1700000000,\"model\":\"gemma4\",\"choices\":[{\"index\":0,\"delta\":"

static void test_sse_chat(void)
{
    struct srv_sse w;
    struct srv_buf out = {0};
    srv_sse_init(&w, true, "chatcmpl-t", 1700000000, "gemma4", true, false);
    srv_sse_begin(&w, &out);
    for (int i = 0; i < N_SCRIPT; i++)
        srv_sse_event(&w, &script[i], &out);
    const char *want =
        HEAD "{\"role\":\"assistant\",\"content\":null},\"finish_reason\":null}]}\n\n"
        HEAD "{\"reasoning_content\":\"We\"},\"finish_reason\":null}]}\n\n"
        HEAD "{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n"
        HEAD "{\"content\":\"lo \\\"x\\\"\\n\"},\"finish_reason\":null}]}\n\n"
        HEAD "{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\","
             "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\"}}]},"
             "\"finish_reason\":null}]}\n\n"
        HEAD "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
             "\"\\\"Tokyo\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
        HEAD "{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\","
             "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}"
             "\n\n"
        HEAD "{},\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":"
        "1700000000,\"model\":\"gemma4\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
        "\"completion_tokens\":5,\"total_tokens\":15,\"prompt_tokens_details\":{"
        "\"cached_tokens\":2}}}\n\n"
        "data: [DONE]\n\n";
    CHECK(!out.oom);
    CHECK_EQ_STR(out.p, want);
    /* nothing after the end */
    size_t n = out.n;
    srv_sse_event(&w, &script[1], &out);
    CHECK_EQ_INT(out.n, n);
    srv_buf_free(&out);

    /* no usage chunk without include_usage; plain stop; "reasoning" key variant */
    srv_sse_init(&w, true, "chatcmpl-t", 1700000000, "gemma4", false, true);
    srv_sse_event(&w, &script[0], &out);
    struct lg_gen_event done = {.kind = LG_GEN_EV_DONE, .finish = LG_FINISH_LENGTH};
    srv_sse_event(&w, &done, &out);
    CHECK_EQ_STR(out.p, HEAD "{\"reasoning\":\"We\"},\"finish_reason\":null}]}\n\n"
                        HEAD "{},\"finish_reason\":\"length\"}]}\n\n"
                        "data: [DONE]\n\n");
    srv_buf_free(&out);

    /* an engine error mid-stream: an error chunk, then [DONE] */
    srv_sse_init(&w, true, "chatcmpl-t", 1700000000, "gemma4", true, false);
    srv_sse_event(&w, &script[1], &out);
    struct lg_gen_event e = {.kind = LG_GEN_EV_ERROR, .status = LG_ERR_CONTEXT,
                             .message = "prompt: 9000 tokens do not fit the context of 8192"};
    srv_sse_event(&w, &e, &out);
    CHECK_EQ_STR(out.p, HEAD "{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n"
                        "data: {\"error\":{\"message\":\"prompt: 9000 tokens do not fit the "
                        "context of 8192\",\"type\":\"invalid_request_error\",\"param\":"
                        "\"prompt\",\"code\":400}}\n\n"
                        "data: [DONE]\n\n");
    srv_buf_free(&out);

    /* invalid UTF-8 from the engine never breaks the JSON */
    srv_sse_init(&w, true, "chatcmpl-t", 1700000000, "gemma4", false, false);
    struct lg_gen_event bad = {.kind = LG_GEN_EV_CONTENT, .text = "a\xff", .n_text = 2};
    srv_sse_event(&w, &bad, &out);
    CHECK_EQ_STR(out.p, HEAD "{\"content\":\"a\xEF\xBF\xBD\"},\"finish_reason\":null}]}\n\n");
    srv_buf_free(&out);
}

static void test_sse_completions(void)
{
    struct srv_sse w;
    struct srv_buf out = {0};
    srv_sse_init(&w, false, "cmpl-t", 1700000000, "g", false, false);
    srv_sse_begin(&w, &out); /* no role chunk for completions */
    CHECK_EQ_INT(out.n, 0);
    for (int i = 0; i < N_SCRIPT; i++)
        srv_sse_event(&w, &script[i], &out);
#define CHEAD "data: {\"id\":\"cmpl-t\",\"object\":\"text_completion\",\"created\":1700000000," \
              "\"model\":\"g\",\"choices\":[{\"index\":0,\"text\":"
    CHECK_EQ_STR(out.p, CHEAD "\"Hel\",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                        CHEAD "\"lo \\\"x\\\"\\n\",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                        CHEAD "\"\",\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
                        "data: [DONE]\n\n");
    srv_buf_free(&out);
}

static void test_openai_bodies(void)
{
    struct srv_sse w;
    struct srv_accum a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < N_SCRIPT; i++)
        srv_accum_event(&a, &script[i]);
    CHECK(a.done);
    CHECK_EQ_INT(a.n_calls, 2);
    srv_sse_init(&w, true, "chatcmpl-t", 1700000000, "gemma4", false, false);
    json_t *b = srv_openai_body(&w, &a);
    char *s = json_dumps(b, JSON_COMPACT);
    CHECK_EQ_STR(s,
                 "{\"id\":\"chatcmpl-t\",\"object\":\"chat.completion\",\"created\":1700000000,"
                 "\"model\":\"gemma4\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                 "\"assistant\",\"content\":\"Hello \\\"x\\\"\\n\",\"reasoning_content\":\"We\","
                 "\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{"
                 "\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Tokyo\\\"}\"}},"
                 "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"now\","
                 "\"arguments\":\"{}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
                 "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":2}},\"timings\":{\"cache_n\":2,"
                 "\"prompt_n\":8,\"prompt_ms\":2.0,\"prompt_per_second\":4000.0,"
                 "\"predicted_n\":5,\"predicted_ms\":50.0,\"predicted_per_second\":100.0}}");
    free(s);
    json_decref(b);
    srv_accum_free(&a);

    /* tool calls only → content null */
    memset(&a, 0, sizeof a);
    srv_accum_event(&a, &script[3]);
    srv_accum_event(&a, &script[4]);
    srv_accum_event(&a, &script[6]);
    CHECK_EQ_INT(a.n_calls, 1);
    b = srv_openai_body(&w, &a);
    json_t *msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
    CHECK(json_is_null(json_object_get(msg, "content")));
    json_decref(b);
    srv_accum_free(&a);

    json_t *e = srv_openai_error(400, "messages[3].content: expected string or array");
    s = json_dumps(e, JSON_COMPACT);
    CHECK_EQ_STR(s, "{\"error\":{\"message\":\"messages[3].content: expected string or array\","
                    "\"type\":\"invalid_request_error\",\"param\":\"messages[3].content\","
                    "\"code\":400}}");
    free(s);
    json_decref(e);
    e = srv_openai_error(503, "no inference engine in this build yet");
    s = json_dumps(e, JSON_COMPACT);
    CHECK_EQ_STR(s, "{\"error\":{\"message\":\"no inference engine in this build yet\","
                    "\"type\":\"unavailable_error\",\"param\":null,\"code\":503}}");
    free(s);
    json_decref(e);
}

#define NDC "{\"model\":\"gemma4\",\"created_at\":\"2025-10-26T17:15:24.097767Z\","

static void test_ndjson_chat(void)
{
    struct srv_ndjson w;
    struct srv_buf out = {0};
    srv_ndjson_init(&w, true, "gemma4", fixed_clock);
    for (int i = 0; i < N_SCRIPT; i++)
        srv_ndjson_event(&w, &script[i], &out);
    const char *want =
        NDC "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"We\"},"
            "\"done\":false}\n"
        NDC "\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n"
        NDC "\"message\":{\"role\":\"assistant\",\"content\":\"lo \\\"x\\\"\\n\"},"
            "\"done\":false}\n"
        /* call 0 goes out whole once call 1 starts; call 1 at the end */
        NDC "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":"
            "\"call_a\",\"function\":{\"index\":0,\"name\":\"get_weather\",\"arguments\":{"
            "\"city\":\"Tokyo\"}}}]},\"done\":false}\n"
        NDC "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":"
            "\"call_b\",\"function\":{\"index\":1,\"name\":\"now\",\"arguments\":{}}}]},"
            "\"done\":false}\n"
        NDC "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
            "\"done_reason\":\"stop\",\"total_duration\":60000000,\"load_duration\":1000,"
            "\"prompt_eval_count\":8,\"prompt_eval_duration\":2000000,\"eval_count\":5,"
            "\"eval_duration\":50000000}\n";
    CHECK(!out.oom);
    CHECK_EQ_STR(out.p, want);
    srv_buf_free(&out);
    srv_ndjson_free(&w);

    /* a call whose arguments are not a JSON object: an error line ends the stream */
    srv_ndjson_init(&w, true, "gemma4", fixed_clock);
    struct lg_gen_event tc = {.kind = LG_GEN_EV_TOOL_CALL, .text = "{oops", .n_text = 5,
                              .tool_index = 0, .tool_id = "c", .tool_name = "f"};
    srv_ndjson_event(&w, &tc, &out);
    CHECK_EQ_INT(out.n, 0);
    srv_ndjson_event(&w, &script[6], &out);
    CHECK_EQ_STR(out.p, "{\"error\":\"the model produced tool-call arguments that are not a "
                        "JSON object\"}\n");
    srv_buf_free(&out);
    srv_ndjson_free(&w);

    /* engine error */
    srv_ndjson_init(&w, true, "gemma4", fixed_clock);
    struct lg_gen_event e = {.kind = LG_GEN_EV_ERROR, .status = LG_ERR_NOT_FOUND,
                             .message = "model 'x' not found"};
    srv_ndjson_event(&w, &e, &out);
    srv_ndjson_event(&w, &script[1], &out);
    CHECK_EQ_STR(out.p, "{\"error\":\"model 'x' not found\"}\n");
    srv_buf_free(&out);
    srv_ndjson_free(&w);
}

static void test_ndjson_generate(void)
{
    struct srv_ndjson w;
    struct srv_buf out = {0};
    srv_ndjson_init(&w, false, "gemma4", fixed_clock);
    srv_ndjson_event(&w, &script[0], &out);
    srv_ndjson_event(&w, &script[1], &out);
    srv_ndjson_event(&w, &script[3], &out); /* ignored: /api/generate has no tool calls */
    struct lg_gen_event load = {.kind = LG_GEN_EV_DONE, .finish = LG_FINISH_LOAD};
    srv_ndjson_event(&w, &load, &out);
    CHECK_EQ_STR(out.p,
                 NDC "\"response\":\"\",\"thinking\":\"We\",\"done\":false}\n"
                 NDC "\"response\":\"Hel\",\"done\":false}\n"
                 NDC "\"response\":\"\",\"done\":true,\"done_reason\":\"load\","
                     "\"total_duration\":0,\"load_duration\":0,\"prompt_eval_count\":0,"
                     "\"prompt_eval_duration\":0,\"eval_count\":0,\"eval_duration\":0}\n");
    srv_buf_free(&out);
    srv_ndjson_free(&w);
}

static void test_ollama_bodies(void)
{
    struct srv_ndjson w;
    struct srv_accum a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < N_SCRIPT; i++)
        srv_accum_event(&a, &script[i]);
    srv_ndjson_init(&w, true, "gemma4", fixed_clock);
    json_t *b = srv_ollama_body(&w, &a);
    char *s = json_dumps(b, JSON_COMPACT);
    CHECK_EQ_STR(s, NDC "\"message\":{\"role\":\"assistant\",\"content\":\"Hello \\\"x\\\"\\n\","
                        "\"thinking\":\"We\",\"tool_calls\":[{\"id\":\"call_a\",\"function\":{"
                        "\"index\":0,\"name\":\"get_weather\",\"arguments\":{\"city\":"
                        "\"Tokyo\"}}},{\"id\":\"call_b\",\"function\":{\"index\":1,\"name\":"
                        "\"now\",\"arguments\":{}}}]},\"done\":true,\"done_reason\":\"stop\","
                        "\"total_duration\":60000000,\"load_duration\":1000,"
                        "\"prompt_eval_count\":8,\"prompt_eval_duration\":2000000,"
                        "\"eval_count\":5,\"eval_duration\":50000000}");
    free(s);
    json_decref(b);
    srv_ndjson_free(&w);
    srv_ndjson_init(&w, false, "gemma4", fixed_clock);
    b = srv_ollama_body(&w, &a);
    CHECK_EQ_STR(json_string_value(json_object_get(b, "response")), "Hello \"x\"\n");
    CHECK_EQ_STR(json_string_value(json_object_get(b, "thinking")), "We");
    CHECK(json_object_get(b, "message") == NULL);
    json_decref(b);
    srv_ndjson_free(&w);
    srv_accum_free(&a);
}

static void test_logprobs(void)
{
    static const struct lg_gen_top_logprob top[] = {{"Hi", 2, -0.5f}, {"\xE2\x82", 2, -1.25f}};
    static const struct lg_gen_logprob lp[] = {{"Hi", 2, -0.5f, top, 2}};
    struct lg_gen_event ev = {.kind = LG_GEN_EV_CONTENT, .text = "Hi", .n_text = 2,
                              .logprobs = lp, .n_logprobs = 1};
    const char *entry = "{\"token\":\"Hi\",\"logprob\":-0.5,\"bytes\":[72,105],"
                        "\"top_logprobs\":[{\"token\":\"Hi\",\"logprob\":-0.5,\"bytes\":"
                        "[72,105]},{\"token\":\"\xEF\xBF\xBD\xEF\xBF\xBD\",\"logprob\":-1.25,"
                        "\"bytes\":[226,130]}]}";
    struct srv_sse w;
    struct srv_buf out = {0};
    srv_sse_init(&w, true, "chatcmpl-t", 1700000000, "gemma4", false, false);
    srv_sse_event(&w, &ev, &out);
    struct srv_buf want = {0};
    srv_buf_puts(&want, HEAD "{\"content\":\"Hi\"},\"logprobs\":{\"content\":[");
    srv_buf_puts(&want, entry);
    srv_buf_puts(&want, "]},\"finish_reason\":null}]}\n\n");
    CHECK_EQ_STR(out.p, want.p);
    srv_buf_free(&out);
    srv_buf_free(&want);

    struct srv_ndjson nd;
    srv_ndjson_init(&nd, false, "gemma4", fixed_clock);
    srv_ndjson_event(&nd, &ev, &out);
    srv_buf_puts(&want, NDC "\"response\":\"Hi\",\"done\":false,\"logprobs\":[");
    srv_buf_puts(&want, entry);
    srv_buf_puts(&want, "]}\n");
    CHECK_EQ_STR(out.p, want.p);
    srv_buf_free(&out);
    srv_buf_free(&want);

    struct srv_accum a;
    memset(&a, 0, sizeof a);
    srv_accum_event(&a, &ev);
    srv_accum_event(&a, &ev);
    srv_accum_event(&a, &script[6]);
    json_t *b = srv_openai_body(&w, &a);
    json_t *c = json_object_get(json_object_get(json_array_get(json_object_get(b, "choices"),
                                                               0), "logprobs"), "content");
    CHECK_EQ_INT(json_array_size(c), 2);
    json_decref(b);
    b = srv_ollama_body(&nd, &a);
    CHECK_EQ_INT(json_array_size(json_object_get(b, "logprobs")), 2);
    json_decref(b);
    srv_accum_free(&a);
    srv_ndjson_free(&nd);
}

static void test_time_format(void)
{
    char ts[48];
    srv_format_time(1761498924097767000LL, ts, sizeof ts);
    CHECK_EQ_STR(ts, "2025-10-26T17:15:24.097767Z");
    srv_format_time(1761498924000000000LL, ts, sizeof ts);
    CHECK_EQ_STR(ts, "2025-10-26T17:15:24Z");
    srv_format_time(1761498924000000001LL, ts, sizeof ts);
    CHECK_EQ_STR(ts, "2025-10-26T17:15:24.000000001Z");
    srv_format_time(0, ts, sizeof ts);
    CHECK_EQ_STR(ts, "1970-01-01T00:00:00Z");
}

static void test_metrics_format(void)
{
    srv_metrics_reset();
    srv_metrics_request(SRV_R_OAI_CHAT, 503);
    srv_metrics_request(SRV_R_OAI_CHAT, 503);
    srv_metrics_request(SRV_R_HEALTH, 200);
    srv_metrics_request(SRV_R_OTHER, 418);
    srv_metrics_ttft(0.07);
    srv_metrics_ttft(3.0);
    srv_metrics_tps(42);
    srv_metrics_tokens(10, 5);
    struct srv_buf b = {0};
    struct lg_engine_stats es = {.queue_depth = 3};
    srv_metrics_render(&b, &es);
    CHECK(strstr(b.p, "localgemma_requests_total{route=\"/v1/chat/completions\",status=\"503\"}"
                      " 2\n") != NULL);
    CHECK(strstr(b.p, "localgemma_requests_total{route=\"/health\",status=\"200\"} 1\n"));
    CHECK(strstr(b.p, "localgemma_requests_total{route=\"other\",status=\"other\"} 1\n"));
    CHECK(strstr(b.p, "localgemma_queue_depth 3\n"));
    CHECK(strstr(b.p, "localgemma_prompt_tokens_total 10\n"));
    CHECK(strstr(b.p, "localgemma_completion_tokens_total 5\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_bucket{le=\"0.05\"} 0\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_bucket{le=\"0.1\"} 1\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_bucket{le=\"2.5\"} 1\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_bucket{le=\"5\"} 2\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_bucket{le=\"+Inf\"} 2\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_sum 3.070000\n"));
    CHECK(strstr(b.p, "localgemma_ttft_seconds_count 2\n"));
    CHECK(strstr(b.p, "localgemma_decode_tokens_per_second_bucket{le=\"50\"} 1\n"));
    CHECK(strstr(b.p, "# TYPE localgemma_ttft_seconds histogram\n"));
    srv_buf_free(&b);
    srv_metrics_reset();
}

int main(void)
{
    test_sse_chat();
    test_sse_completions();
    test_openai_bodies();
    test_ndjson_chat();
    test_ndjson_generate();
    test_ollama_bodies();
    test_logprobs();
    test_time_format();
    test_metrics_format();
    return lg_test_done("test_server_stream");
}
