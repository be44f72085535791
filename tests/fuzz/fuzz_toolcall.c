/* fuzz_toolcall.c: libFuzzer target for Gemma 4 output parsing (and, for inputs that are a JSON
 * array, prompt rendering).
 *
 * Input: byte 0 picks the flavour, a tools list and the piece size; the rest is model output. Checks, beyond
 * memory safety: lg_chat_parse_call either fails with a message or returns a JSON object; the
 * streaming parser gives the same answer, reasoning, calls and error count whether the text is
 * fed whole or in pieces; every TOOL_CALL carries a JSON object and every ERROR a JSON object.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct summary {
    struct lg_chat_buf content, reasoning, calls;
    struct lg_chat_buf delta; /* arguments of the current call as DELTA events streamed them */
    int n_errors;
};

static void check_json_object(const char *s, size_t n)
{
    json_t *j = json_loadb(s, n, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    if (!json_is_object(j)) {
        fprintf(stderr, "not a JSON object: %.*s\n", (int)n, s);
        abort();
    }
    json_decref(j);
}

static void drain(struct lg_chat_parser *p, struct summary *s)
{
    struct lg_chat_event ev;
    while (lg_chat_parser_next(p, &ev)) {
        if ((int)ev.type == LG_CHAT_EV_TOOL_CALL_DELTA) {
            if (ev.name) /* the first piece of a call carries its name */
                s->delta.len = 0;
            lg_chat_buf_put(&s->delta, ev.text, ev.len);
            lg_chat_event_free(&ev);
            continue;
        }
        if (ev.type == LG_CHAT_EV_TOOL_CALL) {
            /* what was streamed is exactly the start of the final arguments */
            if (ev.streamed != s->delta.len || ev.streamed > ev.len ||
                (ev.streamed && memcmp(s->delta.ptr, ev.text, ev.streamed) != 0)) {
                fprintf(stderr, "streamed %zu bytes do not start the call's arguments\n",
                        ev.streamed);
                abort();
            }
        }
        if (ev.type == LG_CHAT_EV_TOOL_CALL || ev.type == LG_CHAT_EV_ERROR)
            s->delta.len = 0;
        switch (ev.type) {
        case LG_CHAT_EV_CONTENT: lg_chat_buf_put(&s->content, ev.text, ev.len); break;
        case LG_CHAT_EV_REASONING: lg_chat_buf_put(&s->reasoning, ev.text, ev.len); break;
        case LG_CHAT_EV_TOOL_CALL:
            check_json_object(ev.text, ev.len);
            lg_chat_buf_puts(&s->calls, ev.name);
            lg_chat_buf_put(&s->calls, "\x01", 1);
            lg_chat_buf_put(&s->calls, ev.text, ev.len);
            lg_chat_buf_put(&s->calls, "\x02", 1);
            break;
        case LG_CHAT_EV_ERROR:
            check_json_object(ev.text, ev.len);
            s->n_errors++;
            break;
        }
        lg_chat_event_free(&ev);
    }
}

static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"a\":{\"type\":\"array\"},\"o\":{\"type\":\"object\"},\"t\":{\"type\":\"string\"}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]";

static bool run(enum lg_chat_flavour f, const json_t *tools, const char *text, size_t n, size_t piece,
                bool stream_calls, struct summary *s)
{
    struct lg_chat_parser *p = lg_chat_parser_create(f, tools);
    if (!p)
        return false;
    lg_chat_parser_stream_calls(p, stream_calls);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i += piece) {
        size_t k = piece < n - i ? piece : n - i;
        ok = lg_chat_parser_feed(p, text + i, k, false) == LG_OK;
        drain(p, s);
    }
    if (ok)
        ok = lg_chat_parser_finish(p) == LG_OK;
    drain(p, s);
    lg_chat_parser_destroy(p);
    return ok;
}

static bool same(const struct lg_chat_buf *a, const struct lg_chat_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

static void free_summary(struct summary *s)
{
    lg_chat_buf_free(&s->content);
    lg_chat_buf_free(&s->reasoning);
    lg_chat_buf_free(&s->calls);
    lg_chat_buf_free(&s->delta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;

    char *name = NULL, *args = NULL;
    bool repaired = false;
    struct lg_err err = {0};
    if (lg_chat_parse_call(text, n, &name, &args, &repaired, &err) == LG_OK) {
        check_json_object(args, strlen(args));
        if (!name[0])
            abort();
    } else if (!err.msg[0]) {
        abort();
    }
    free(name);
    free(args);

    /* mode: bits 0-1 flavour (3 = gemma3), bit 2 with a tools list, bits 3-7 piece size - 1 */
    enum lg_chat_flavour f = (mode & 3) == 3 ? LG_CHAT_GEMMA3 : LG_CHAT_GEMMA4_SMALL;
    size_t piece = 1 + (mode >> 3);
    json_t *tools = (mode & 4) ? json_loads(tools_json, 0, NULL) : NULL;
    struct summary whole = {0}, pieces = {0};
    bool ok1 = run(f, tools, text, n, n ? n : 1, false, &whole);
    bool ok2 = run(f, tools, text, n, piece, true, &pieces);
    json_decref(tools);
    if (ok1 && ok2 &&
        (!same(&whole.content, &pieces.content) || !same(&whole.reasoning, &pieces.reasoning) ||
         !same(&whole.calls, &pieces.calls) || whole.n_errors != pieces.n_errors)) {
        fprintf(stderr, "chunking changed the result (piece %zu)\n", piece);
        abort();
    }
    free_summary(&whole);
    free_summary(&pieces);

    /* Inputs that are JSON arrays double as `messages` for the renderer. */
    if (n && text[0] == '[') {
        json_t *msgs = json_loadb(text, n, 0, NULL);
        if (msgs) {
            static const enum lg_chat_flavour all[] = {LG_CHAT_GEMMA4_SMALL, LG_CHAT_GEMMA4_LARGE,
                                                       LG_CHAT_GEMMA3};
            for (size_t i = 0; i < 3; i++) {
                struct lg_chat_opts o = lg_chat_opts_default();
                o.flavour = all[i];
                o.enable_thinking = mode & 4;
                o.tool_response_json = mode & 8;
                char *out = NULL;
                struct lg_err e2 = {0};
                if (lg_chat_render(msgs, NULL, &o, &out, NULL, &e2) != LG_OK && !e2.msg[0])
                    abort();
                free(out);
            }
            json_decref(msgs);
        }
    }
    return 0;
}
