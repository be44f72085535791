/* fuzz_json.c: the request-body parsers of /v1/chat/completions, /v1/completions,
 * /api/chat and /api/generate on arbitrary bytes (each input goes through all four), the
 * SSE/NDJSON writers fed the bytes as model output, the UTF-8 repair and the duration
 * parser. Any crash, leak or sanitizer report is a bug;
 * a successful parse must leave a request the engine can read (checked invariants). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "server/server.h"

typedef enum lg_status (*parse_fn)(const char *, size_t, size_t, struct srv_parsed *,
                                   struct lg_err *);

static void check_req(const struct srv_parsed *p)
{
    const struct lg_gen_req *r = &p->req;
    /* invariants the engine relies on; abort() makes the fuzzer report them */
    if (r->n_stop < 0 || r->n_stop > LG_GEN_MAX_STOP)
        abort();
    for (int32_t i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0] || strlen(r->stop[i]) > LG_GEN_MAX_STOP_BYTES)
            abort();
    if (!memchr(r->model, 0, sizeof r->model) || !r->model[0])
        abort();
    if (r->kind == LG_PROMPT_CHAT && !json_is_array(r->messages))
        abort();
    if (r->kind != LG_PROMPT_CHAT && !r->prompt)
        abort();
    if (r->format == LG_FORMAT_SCHEMA && !json_is_object(r->schema))
        abort();
    if (r->max_tokens < -1 || r->max_tokens > SRV_MAX_TOKENS || r->num_ctx < 0 ||
        r->top_logprobs < -1 || r->top_logprobs > SRV_MAX_TOP_LOGPROBS)
        abort();
    const struct lg_sampling *s = &r->sampling;
    if (!(s->temperature >= 0 && s->temperature <= 100) || !(s->top_p >= 0 && s->top_p <= 1) ||
        !(s->min_p >= 0 && s->min_p <= 1) || s->top_k < 0)
        abort();
    /* the canonical messages serialise (what the chat renderer will walk) */
    if (r->messages) {
        char *d = json_dumps(r->messages, JSON_COMPACT);
        if (!d)
            abort();
        free(d);
    }
}

/* The input as untrusted model output: every SSE data line and NDJSON line the writers
 * produce must be valid JSON whatever bytes the engine emits. */
static void check_lines(const struct srv_buf *b, const char *prefix, const char *sep)
{
    const char *p = b->p, *end = b->p + b->n;
    size_t np = strlen(prefix);
    while (p && p < end) {
        const char *nl = strstr(p, sep);
        if (!nl)
            abort(); /* every record is terminated */
        if (strncmp(p, prefix, np) != 0)
            abort();
        const char *j = prefix[0] == '{' ? p : p + np; /* NDJSON: the "{" is the JSON */
        if (strncmp(j, "[DONE]", 6) != 0) {
            json_t *v = json_loadb(j, (size_t)(nl - j), 0, NULL);
            if (!v)
                abort();
            json_decref(v);
        }
        p = nl + strlen(sep);
    }
}

static void fuzz_writers(const char *d, size_t n)
{
    size_t a = n / 3, b = 2 * n / 3;
    struct lg_gen_event evs[] = {
        {.kind = LG_GEN_EV_REASONING, .text = d, .n_text = a},
        {.kind = LG_GEN_EV_CONTENT, .text = d + a, .n_text = b - a},
        {.kind = LG_GEN_EV_TOOL_CALL, .text = d + b, .n_text = n - b, .tool_index = 0,
         .tool_id = "call_0", .tool_name = "f"},
        {.kind = LG_GEN_EV_DONE, .finish = LG_FINISH_STOP},
    };
    struct srv_sse w;
    struct srv_buf out = {0};
    srv_sse_init(&w, true, "chatcmpl-f", 1, "m", true, false);
    srv_sse_begin(&w, &out);
    for (size_t i = 0; i < 4; i++)
        srv_sse_event(&w, &evs[i], &out);
    if (!out.oom)
        check_lines(&out, "data: ", "\n\n");
    srv_buf_free(&out);
    struct srv_ndjson nd;
    srv_ndjson_init(&nd, true, "m", NULL);
    for (size_t i = 0; i < 4; i++)
        srv_ndjson_event(&nd, &evs[i], &out);
    if (!out.oom)
        check_lines(&out, "{", "\n");
    srv_buf_free(&out);
    srv_ndjson_free(&nd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const parse_fn parsers[] = {srv_parse_openai_chat, srv_parse_openai_completions,
                                       srv_parse_ollama_chat, srv_parse_ollama_generate};
    const char *body = (const char *)data;
    for (size_t i = 0; i < sizeof parsers / sizeof parsers[0]; i++) {
        struct srv_parsed p;
        struct lg_err err = {0};
        enum lg_status st = parsers[i](body, size, 1 << 20, &p, &err);
        if (st == LG_OK)
            check_req(&p);
        else if (!err.msg[0])
            abort(); /* every refusal says why */
        srv_parsed_free(&p);
    }
    size_t n;
    char *fixed = lg_json_utf8_sanitize(body, size, &n);
    if (fixed) {
        json_t *v = json_stringn(fixed, n); /* must be valid UTF-8 now */
        if (!v)
            abort();
        json_decref(v);
        free(fixed);
    }
    fuzz_writers(body, size);
    if (size < 64) {
        char s[64];
        memcpy(s, data, size);
        s[size] = '\0';
        int64_t ms;
        lg_parse_duration_ms(s, &ms, NULL);
    }
    return 0;
}
