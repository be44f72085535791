/* render.c: prompt rendering entry point, input normalisation, and the Gemma 3 template.
 *
 * Gemma 3 follows Google's Gemma 3 chat template (tests/golden/chat/gemma3.jinja); Gemma 4 is in
 * render_gemma4.c. Input normalisation (the same steps tools/make-chat-golden.py applies before
 * rendering with jinja2):
 *   gemma4: tool_calls[].function.arguments given as a JSON string is parsed (the template
 *           raises on strings); with opts->tool_response_json, llama.cpp's
 *           convert_tool_responses_gemma4 fold.
 *   gemma3: role "developer" becomes "system".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/chat.h"
#include "chat/render_priv.h"
#include "gguf/gguf.h"
#include "json/json.h"

/* ---- Gemma 3 ------------------------------------------------------------------------------ */

static bool render_gemma3(struct rctx *c, const json_t *messages, const struct lg_chat_opts *o)
{
    size_t n_msgs = json_array_size(messages);
    if (n_msgs == 0)
        return fail(c, "messages is empty", -1);
    put(c, "<bos>");
    const json_t *m0 = json_array_get(messages, 0);
    const char *prefix = "";
    size_t prefix_len = 0, first = 0;
    if (str_is(get(m0, "role"), "system")) {
        const json_t *content = json_object_get(m0, "content");
        const json_t *text = json_is_string(content) ? content : get(json_array_get(content, 0), "text");
        if (!json_is_string(text))
            return fail(c, "the system message needs text content", 0);
        prefix = json_string_value(text);
        prefix_len = json_string_length(text);
        first = 1;
    }
    for (size_t i = first; i < n_msgs; i++) {
        size_t li = i - first;
        const json_t *msg = json_array_get(messages, i);
        const json_t *jrole = get(msg, "role");
        if (str_is(jrole, "user") != (li % 2 == 0))
            return fail(c, "Conversation roles must alternate user/assistant/user/assistant/...",
                        (long)i);
        if (!json_is_string(jrole))
            return fail(c, "needs a string \"role\"", (long)i);
        const char *role = str_is(jrole, "assistant") ? "model" : json_string_value(jrole);
        put(c, "<start_of_turn>");
        put(c, role);
        put(c, "\n");
        if (li == 0) {
            lg_chat_buf_put(c->b, prefix, prefix_len);
            if (first)
                put(c, "\n\n");
        }
        const json_t *content = json_object_get(msg, "content");
        if (json_is_string(content)) {
            put_trimmed(c, json_string_value(content), json_string_length(content));
        } else if (json_is_array(content)) {
            for (size_t k = 0; k < json_array_size(content); k++) {
                const json_t *item = json_array_get(content, k);
                const json_t *type = get(item, "type");
                if (str_is(type, "image"))
                    put(c, "<start_of_image>");
                else if (str_is(type, "text"))
                    put_str_trimmed(c, get(item, "text"));
            }
        } else if (content && !json_is_object(content)) {
            /* Missing content is Undefined and an object iterates its keys: both render
             * nothing. null, numbers and booleans make the template raise. */
            return fail(c, "Invalid content type", (long)i);
        }
        put(c, "<end_of_turn>\n");
    }
    if (o->add_generation_prompt)
        put(c, "<start_of_turn>model\n");
    return true;
}

/* ---- normalisation --------------------------------------------------------------------------- */

static bool has_calls(const json_t *m)
{
    const json_t *tc = json_object_get(m, "tool_calls");
    return json_is_array(tc) && json_array_size(tc) > 0;
}

static bool has_content(const json_t *m)
{
    const json_t *c = json_object_get(m, "content");
    return (json_is_string(c) && json_string_length(c) > 0) ||
           (json_is_array(c) && json_array_size(c) > 0);
}

/* llama.cpp convert_tool_responses_gemma4, restated (see tools/make-chat-golden.py). */
static json_t *fold_tool_responses(const json_t *msgs)
{
    json_t *out = json_array();
    size_t i = 0, n = json_array_size(msgs);
    while (out && i < n) {
        json_t *m = json_array_get(msgs, i);
        if (!str_is(json_object_get(m, "role"), "assistant") || !has_calls(m)) {
            json_array_append(out, m);
            i++;
            continue;
        }
        json_t *calls = json_object_get(m, "tool_calls");
        json_t *rc = json_object_get(m, "reasoning_content");
        json_t *responses = json_array(), *content = NULL;
        i++;
        while (i < n && str_is(json_object_get(json_array_get(msgs, i), "role"), "tool")) {
            json_t *t = json_array_get(msgs, i);
            json_t *resp = json_object_get(t, "content");
            json_t *parsed = NULL;
            if (json_is_string(resp))
                parsed = json_loadb(json_string_value(resp), json_string_length(resp),
                                    JSON_DECODE_ANY, NULL);
            if (!parsed)
                parsed = resp ? json_incref(resp) : json_null();
            const char *name = "";
            size_t k = json_array_size(responses);
            const json_t *nm = get(get(json_array_get(calls, k), "function"), "name");
            if (k < json_array_size(calls) && json_is_string(nm))
                name = json_string_value(nm);
            json_t *jname;
            if (name[0]) {
                jname = json_string(name);
            } else {
                const json_t *id = json_object_get(t, "tool_call_id");
                jname = json_is_string(id) ? json_incref((json_t *)id) : json_string("");
            }
            json_t *entry = json_object();
            if (entry) {
                json_object_set_new(entry, "name", jname);
                json_object_set_new(entry, "response", parsed);
                json_array_append_new(responses, entry);
            } else {
                json_decref(jname);
                json_decref(parsed);
            }
            i++;
        }
        if (i < n) {
            json_t *next = json_array_get(msgs, i);
            if (str_is(json_object_get(next, "role"), "assistant") && !has_calls(next) &&
                has_content(next)) {
                content = json_object_get(next, "content");
                i++;
            }
        }
        json_t *msg = json_object();
        if (msg) {
            json_object_set_new(msg, "role", json_string("assistant"));
            json_object_set(msg, "tool_calls", calls);
            if (json_array_size(responses))
                json_object_set(msg, "tool_responses", responses);
            if (content)
                json_object_set(msg, "content", content);
            if (json_is_string(rc))
                json_object_set(msg, "reasoning_content", rc);
        }
        json_decref(responses);
        if (!msg || json_array_append_new(out, msg) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static enum lg_status normalise(const json_t *messages, const struct lg_chat_opts *o,
                                json_t **out, struct lg_err *err)
{
    json_t *msgs = json_deep_copy(messages);
    if (!msgs)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory copying messages");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            json_decref(msgs);
            return lg_err_set(err, LG_ERR_INVALID_ARG, "messages[%zu]: not an object", i);
        }
        if (o->flavour == LG_CHAT_GEMMA3) {
            if (str_is(json_object_get(m, "role"), "developer"))
                json_object_set_new(m, "role", json_string("system"));
            continue;
        }
        json_t *tcs = json_object_get(m, "tool_calls");
        for (size_t t = 0; json_is_array(tcs) && t < json_array_size(tcs); t++) {
            json_t *fn = json_object_get(json_array_get(tcs, t), "function");
            json_t *args = json_object_get(fn, "arguments");
            if (!json_is_string(args))
                continue;
            json_error_t je;
            bool oom;
            json_t *parsed = lg_json_loadb(json_string_value(args), json_string_length(args),
                                           JSON_DECODE_ANY, &je, &oom);
            if (!parsed && oom) {
                json_decref(msgs);
                return lg_err_set(err, LG_ERR_NOMEM, "out of memory parsing "
                                  "messages[%zu].tool_calls[%zu].function.arguments", i, t);
            }
            if (!parsed) {
                json_decref(msgs);
                return lg_err_set(err, LG_ERR_INVALID_ARG,
                                  "messages[%zu].tool_calls[%zu].function.arguments: not JSON (%s)",
                                  i, t, je.text);
            }
            json_object_set_new(fn, "arguments", parsed);
        }
    }
    if (o->flavour != LG_CHAT_GEMMA3 && o->tool_response_json) {
        json_t *folded = fold_tool_responses(msgs);
        json_decref(msgs);
        if (!folded)
            return lg_err_set(err, LG_ERR_NOMEM, "out of memory folding tool responses");
        msgs = folded;
    }
    *out = msgs;
    return LG_OK;
}

/* ---- public --------------------------------------------------------------------------------- */

struct lg_chat_opts lg_chat_opts_default(void)
{
    struct lg_chat_opts o = {0};
    o.flavour = LG_CHAT_GEMMA4_SMALL;
    o.add_generation_prompt = true;
    return o;
}

enum lg_status lg_chat_render(const json_t *messages, const json_t *tools,
                              const struct lg_chat_opts *opts, char **out, size_t *out_len,
                              struct lg_err *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!json_is_array(messages))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "messages must be a JSON array");
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "tools must be a JSON array");
    json_t *msgs = NULL;
    enum lg_status st = normalise(messages, opts, &msgs, err);
    if (st != LG_OK)
        return st;
    struct lg_chat_buf b = {0};
    struct rctx c = {&b, err, LG_OK};
    bool ok;
    if (opts->flavour == LG_CHAT_GEMMA3)
        ok = render_gemma3(&c, msgs, opts);
    else
        ok = lg_chat_render_gemma4(&b, msgs, tools, opts, err, &c.st);
    json_decref(msgs);
    if (!ok || c.st != LG_OK || b.oom) {
        lg_chat_buf_free(&b);
        if (c.st != LG_OK)
            return c.st;
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory rendering the prompt");
    }
    lg_chat_buf_put(&b, "", 0);
    if (b.oom) {
        lg_chat_buf_free(&b);
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory rendering the prompt");
    }
    *out = b.ptr;
    if (out_len)
        *out_len = b.len;
    return LG_OK;
}

enum lg_status lg_chat_flavour_select(const char *arch, uint64_t n_embd_per_layer_input,
                                      enum lg_chat_flavour *out, struct lg_err *err)
{
    if (arch && strcmp(arch, "gemma4") == 0) {
        *out = n_embd_per_layer_input > 0 ? LG_CHAT_GEMMA4_SMALL : LG_CHAT_GEMMA4_LARGE;
        return LG_OK;
    }
    if (arch && strcmp(arch, "gemma3") == 0) {
        *out = LG_CHAT_GEMMA3;
        return LG_OK;
    }
    return lg_err_set(err, LG_ERR_UNSUPPORTED, "no chat template for architecture '%s'",
                      arch ? arch : "(none)");
}

enum lg_status lg_chat_flavour_from_gguf(const struct lg_gguf *g, enum lg_chat_flavour *out,
                                         struct lg_err *err)
{
    struct lg_str arch;
    enum lg_status st = lg_gguf_get_str(g, "general.architecture", &arch, err);
    if (st != LG_OK)
        return st;
    char a[64], key[128];
    snprintf(a, sizeof a, "%.*s", (int)(arch.len < sizeof a - 1 ? arch.len : sizeof a - 1),
             arch.ptr);
    uint32_t ple = 0;
    snprintf(key, sizeof key, "%s.embedding_length_per_layer_input", a);
    if (lg_gguf_find_kv(g, key) && (st = lg_gguf_get_u32(g, key, &ple, err)) != LG_OK)
        return st;
    return lg_chat_flavour_select(a, ple, out, err);
}

const char *lg_chat_flavour_name(enum lg_chat_flavour f)
{
    switch (f) {
    case LG_CHAT_GEMMA4_SMALL: return "gemma4-small";
    case LG_CHAT_GEMMA4_LARGE: return "gemma4-large";
    case LG_CHAT_GEMMA3: return "gemma3";
    }
    return "?";
}

bool lg_chat_flavour_parse(const char *name, enum lg_chat_flavour *out)
{
    static const enum lg_chat_flavour all[] = {LG_CHAT_GEMMA4_SMALL, LG_CHAT_GEMMA4_LARGE,
                                               LG_CHAT_GEMMA3};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (name && strcmp(name, lg_chat_flavour_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    return false;
}

const char *const *lg_chat_eog_strings(enum lg_chat_flavour f)
{
    static const char *const g4[] = {"<eos>", "<turn|>", "<|tool_response>", NULL};
    static const char *const g3[] = {"<eos>", "<end_of_turn>", NULL};
    return f == LG_CHAT_GEMMA3 ? g3 : g4;
}
