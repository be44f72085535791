/* render_gemma4.c: Gemma 4 prompt rendering, a line-by-line port of Google's canonical template
 * (shared/spec/templates/gemma4-{small,large}.jinja, 2026-07-09; the two differ only in the
 * generation prompt). The macro and variable names below are the template's, so the two can be
 * read side by side. Values are formatted with Python semantics (pyval.c) because the reference
 * renderer is Python jinja2. Where the template would raise (raise_exception, a TypeError on
 * `str + None`, an undefined value being called), we return LG_ERR_INVALID_ARG naming the
 * message. Input normalisation (string arguments, the tool-response fold) happens before, in
 * render.c.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/chat.h"
#include "chat/render_priv.h"

#define Q "<|\"|>" /* the Gemma 4 string delimiter token */

/* str(v) | upper, written into a fresh buffer the caller frees. */
static bool upper_of(struct rctx *c, const json_t *v, struct lg_chat_buf *out)
{
    struct lg_chat_buf t = {0};
    lg_py_str(&t, v);
    if (!t.oom)
        lg_py_upper(out, t.ptr ? t.ptr : "", t.len);
    bool oom = t.oom || out->oom;
    lg_chat_buf_free(&t);
    return oom ? fail_oom(c) : true; /* callers compare the text: stop the render */
}

static bool upper_eq(struct rctx *c, const json_t *v, const char *s)
{
    struct lg_chat_buf u = {0};
    upper_of(c, v, &u);
    bool eq = u.ptr ? strcmp(u.ptr, s) == 0 : s[0] == 0;
    lg_chat_buf_free(&u);
    return eq;
}

/* Iterates a value the way a Jinja for-loop does: arrays by element, strings by character,
 * objects by key. Calls fn(c, item, user) with a temporary json_t. Numbers etc. are not
 * iterable (TypeError in Python). */
typedef bool (*iter_fn)(struct rctx *c, const json_t *item, size_t i, size_t n, void *user);

static bool iterate(struct rctx *c, const json_t *v, iter_fn fn, void *user)
{
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++)
            if (!fn(c, json_array_get(v, i), i, n, user))
                return false;
        return true;
    }
    if (json_is_string(v) || json_is_object(v)) {
        /* Collect the pieces first so fn knows the count (loop.last). */
        json_t *arr = json_array();
        if (!arr)
            return fail_oom(c);
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t n = json_string_length(v);
            for (size_t i = 0; i < n;) {
                size_t l = 1;
                unsigned char ch = (unsigned char)s[i];
                if (ch >= 0xf0)
                    l = 4;
                else if (ch >= 0xe0)
                    l = 3;
                else if (ch >= 0xc0)
                    l = 2;
                if (l > n - i)
                    l = n - i;
                json_array_append_new(arr, json_stringn(s + i, l));
                i += l;
            }
        } else {
            const char *k;
            json_t *e;
            json_object_foreach((json_t *)v, k, e) {
                json_array_append_new(arr, json_string(k));
            }
        }
        bool ok = iterate(c, arr, fn, user);
        json_decref(arr);
        return ok;
    }
    return fail(c, "tool schema: a value the template iterates is not a list", -1);
}

/* ---- Gemma 4 macros ---------------------------------------------------------------------- */

static bool format_argument(struct rctx *c, const json_t *a, bool escape_keys, int depth);

static bool format_argument(struct rctx *c, const json_t *a, bool escape_keys, int depth)
{
    if (depth > 256)
        return fail(c, "value nested too deeply", -1);
    if (!a) /* Undefined renders as nothing */
        return true;
    if (json_is_null(a)) {
        put(c, "null");
    } else if (json_is_string(a)) {
        put(c, Q);
        lg_chat_buf_put(c->b, json_string_value(a), json_string_length(a));
        put(c, Q);
    } else if (json_is_boolean(a)) {
        put(c, json_is_true(a) ? "true" : "false");
    } else if (json_is_object(a)) {
        put(c, "{");
        size_t n;
        bool oom = false;
        const char **keys = lg_py_dictsort(a, &n, &oom);
        if (oom)
            return fail_oom(c);
        for (size_t i = 0; i < n; i++) {
            if (i)
                put(c, ",");
            if (escape_keys)
                put(c, Q);
            put(c, keys[i]);
            if (escape_keys)
                put(c, Q);
            put(c, ":");
            if (!format_argument(c, json_object_get(a, keys[i]), escape_keys, depth + 1)) {
                free(keys);
                return false;
            }
        }
        free(keys);
        put(c, "}");
    } else if (json_is_array(a)) {
        put(c, "[");
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (i)
                put(c, ",");
            if (!format_argument(c, json_array_get(a, i), escape_keys, depth + 1))
                return false;
        }
        put(c, "]");
    } else {
        lg_py_str(c->b, a);
    }
    return true;
}

/* `{%- if add_comma %},{%- else -%}{%- set add_comma = true -%}{% endif -%}` */
static void comma(struct rctx *c, bool *add_comma)
{
    if (*add_comma)
        put(c, ",");
    else
        *add_comma = true;
}

static bool put_quoted_item(struct rctx *c, const json_t *item, size_t i, size_t n, void *user)
{
    (void)user;
    put(c, Q);
    lg_py_str(c->b, item);
    put(c, Q);
    if (i + 1 < n)
        put(c, ",");
    return true;
}

static bool upper_list_item(struct rctx *c, const json_t *item, size_t i, size_t n, void *user)
{
    (void)i;
    (void)n;
    struct lg_chat_buf u = {0};
    upper_of(c, item, &u);
    json_t *s = json_stringn(u.ptr ? u.ptr : "", u.len);
    lg_chat_buf_free(&u);
    if (!s || json_array_append_new((json_t *)user, s) != 0)
        return fail_oom(c);
    return true;
}

static bool format_parameters(struct rctx *c, const json_t *props, bool filter_keys, int depth);

/* The `items:{...}` block of an ARRAY property. */
static bool format_items(struct rctx *c, const json_t *items, int depth)
{
    put(c, "items:{");
    size_t n;
    bool oom = false, ok = true, found_first = false;
    const char **keys = lg_py_dictsort(items, &n, &oom);
    if (oom)
        return fail_oom(c);
    for (size_t i = 0; ok && i < n; i++) {
        const char *ik = keys[i];
        const json_t *iv = json_object_get(items, ik);
        if (json_is_null(iv))
            continue;
        if (found_first)
            put(c, ",");
        found_first = true;
        if (strcmp(ik, "properties") == 0) {
            put(c, "properties:{");
            if (json_is_object(iv))
                ok = format_parameters(c, iv, false, depth + 1);
            put(c, "}");
        } else if (strcmp(ik, "required") == 0) {
            put(c, "required:[");
            ok = iterate(c, iv, put_quoted_item, NULL);
            put(c, "]");
        } else if (strcmp(ik, "type") == 0) {
            put(c, "type:");
            if (json_is_string(iv)) {
                struct lg_chat_buf u = {0};
                upper_of(c, iv, &u);
                json_t *s = json_stringn(u.ptr ? u.ptr : "", u.len);
                lg_chat_buf_free(&u);
                ok = s ? format_argument(c, s, true, depth + 1) : fail_oom(c);
                json_decref(s);
            } else {
                json_t *lst = json_array();
                ok = lst ? iterate(c, iv, upper_list_item, lst) : fail_oom(c);
                if (ok)
                    ok = format_argument(c, lst, true, depth + 1);
                json_decref(lst);
            }
        } else {
            put(c, ik);
            put(c, ":");
            ok = format_argument(c, iv, true, depth + 1);
        }
    }
    free(keys);
    put(c, "}");
    return ok;
}

static bool format_parameters(struct rctx *c, const json_t *props, bool filter_keys, int depth)
{
    static const char *const standard_keys[] = {"description", "type", "properties", "required",
                                                 "nullable"};
    if (depth > 64)
        return fail(c, "tool schema nested too deeply", -1);
    if (!json_is_object(props))
        return fail(c, "tool schema: properties is not an object", -1);
    size_t n;
    bool oom = false, found_first = false, ok = true;
    const char **keys = lg_py_dictsort(props, &n, &oom);
    if (oom)
        return fail_oom(c);
    for (size_t i = 0; ok && i < n; i++) {
        const char *key = keys[i];
        const json_t *value = json_object_get(props, key);
        bool add_comma = false;
        if (filter_keys) {
            bool std = false;
            for (size_t s = 0; s < sizeof standard_keys / sizeof *standard_keys; s++)
                std = std || strcmp(key, standard_keys[s]) == 0;
            if (std)
                continue;
        }
        if (found_first)
            put(c, ",");
        found_first = true;
        put(c, key);
        put(c, ":{");
        const json_t *desc = get(value, "description");
        if (lg_py_truthy(desc)) {
            put(c, "description:" Q);
            lg_py_str(c->b, desc);
            put(c, Q);
            add_comma = true;
        }
        struct lg_chat_buf type = {0};
        upper_of(c, get(value, "type"), &type);
        const char *t = type.ptr ? type.ptr : "";
        if (strcmp(t, "STRING") == 0) {
            const json_t *en = get(value, "enum");
            if (lg_py_truthy(en)) {
                comma(c, &add_comma);
                put(c, "enum:");
                ok = format_argument(c, en, true, depth + 1);
            }
        } else if (strcmp(t, "ARRAY") == 0) {
            const json_t *items = get(value, "items");
            if (json_is_object(items) && lg_py_truthy(items)) {
                comma(c, &add_comma);
                ok = format_items(c, items, depth);
            }
        }
        if (ok && lg_py_truthy(get(value, "nullable"))) {
            comma(c, &add_comma);
            put(c, "nullable:true");
        }
        if (ok && strcmp(t, "OBJECT") == 0) {
            const json_t *p = get(value, "properties");
            if (json_is_object(p)) {
                comma(c, &add_comma);
                put(c, "properties:{");
                ok = format_parameters(c, p, false, depth + 1);
                put(c, "}");
            } else if (json_is_object(value)) {
                comma(c, &add_comma);
                put(c, "properties:{");
                ok = format_parameters(c, value, true, depth + 1);
                put(c, "}");
            }
            const json_t *req = get(value, "required");
            if (ok && lg_py_truthy(req)) {
                comma(c, &add_comma);
                put(c, "required:[");
                ok = iterate(c, req, put_quoted_item, NULL);
                put(c, "]");
            }
        }
        comma(c, &add_comma);
        put(c, "type:" Q);
        put(c, t);
        put(c, Q "}");
        lg_chat_buf_free(&type);
    }
    free(keys);
    return ok;
}

static bool format_function_declaration(struct rctx *c, const json_t *tool)
{
    const json_t *fn = get(tool, "function");
    if (!json_is_object(fn))
        return fail(c, "tools[]: each tool needs a \"function\" object", -1);
    put(c, "declaration:");
    lg_py_str(c->b, get(fn, "name"));
    put(c, "{description:" Q);
    lg_py_str(c->b, get(fn, "description"));
    put(c, Q);
    const json_t *params = get(fn, "parameters");
    if (lg_py_truthy(params)) {
        put(c, ",parameters:{");
        const json_t *props = get(params, "properties");
        if (lg_py_truthy(props)) {
            put(c, "properties:{");
            if (!format_parameters(c, props, false, 0))
                return false;
            put(c, "},");
        }
        const json_t *req = get(params, "required");
        if (lg_py_truthy(req)) {
            put(c, "required:[");
            if (!iterate(c, req, put_quoted_item, NULL))
                return false;
            put(c, "],");
        }
        const json_t *type = get(params, "type");
        if (lg_py_truthy(type)) {
            put(c, "type:" Q);
            upper_of(c, type, c->b);
            put(c, Q "}");
        }
    }
    if (json_object_get(fn, "response")) {
        const json_t *rd = get(fn, "response");
        put(c, ",response:{");
        const json_t *d = get(rd, "description");
        if (lg_py_truthy(d)) {
            put(c, "description:" Q);
            lg_py_str(c->b, d);
            put(c, Q ",");
        }
        if (upper_eq(c, get(rd, "type"), "OBJECT"))
            put(c, "type:" Q "OBJECT" Q "}");
    }
    put(c, "}");
    return true;
}

/* strip_thinking(text): drop every `<|channel>…<channel|>` span (and an unclosed one up to the
 * next `<channel|>`), then trim. */
static void strip_thinking(struct rctx *c, const char *s, size_t n)
{
    static const char close[] = "<channel|>", open[] = "<|channel>";
    struct lg_chat_buf r = {0};
    size_t i = 0;
    for (;;) {
        const char *end = s + n;
        const char *cl = NULL;
        for (const char *p = s + i; p + 10 <= end; p++)
            if (memcmp(p, close, 10) == 0) {
                cl = p;
                break;
            }
        size_t part_end = cl ? (size_t)(cl - s) : n;
        const char *op = NULL;
        for (const char *p = s + i; p + 10 <= s + part_end; p++)
            if (memcmp(p, open, 10) == 0) {
                op = p;
                break;
            }
        lg_chat_buf_put(&r, s + i, op ? (size_t)(op - (s + i)) : part_end - i);
        if (!cl)
            break;
        i = part_end + 10;
    }
    if (r.oom)
        c->b->oom = true;
    put_trimmed(c, r.ptr ? r.ptr : "", r.len);
    lg_chat_buf_free(&r);
}

static bool format_tool_response_block(struct rctx *c, const char *tool_name,
                                       const json_t *response)
{
    put(c, "<|tool_response>");
    if (json_is_object(response)) {
        put(c, "response:");
        put(c, tool_name);
        put(c, "{");
        size_t n;
        bool oom = false;
        const char **keys = lg_py_dictsort(response, &n, &oom);
        if (oom)
            return fail_oom(c);
        for (size_t i = 0; i < n; i++) {
            put(c, keys[i]);
            put(c, ":");
            if (!format_argument(c, json_object_get(response, keys[i]), false, 1)) {
                free(keys);
                return false;
            }
            if (i + 1 < n)
                put(c, ",");
        }
        free(keys);
        put(c, "}");
    } else {
        put(c, "response:");
        put(c, tool_name);
        put(c, "{value:");
        if (!format_argument(c, response, false, 1))
            return false;
        put(c, "}");
    }
    put(c, "<tool_response|>");
    return true;
}

/* Python `a == b` for two optional JSON values (missing and null are both None). */
static bool py_eq(const json_t *a, const json_t *b)
{
    bool an = !a || json_is_null(a), bn = !b || json_is_null(b);
    if (an || bn)
        return an && bn;
    bool anum = json_is_number(a) || json_is_boolean(a), bnum = json_is_number(b) || json_is_boolean(b);
    if (anum && bnum) {
        double x = json_is_boolean(a) ? json_is_true(a) : json_number_value(a);
        double y = json_is_boolean(b) ? json_is_true(b) : json_number_value(b);
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return x == y;
    }
    return json_equal((json_t *)a, (json_t *)b) != 0;
}

/* Renders one content value (string or parts) of a non-tool message into c->b. */
static bool render_content(struct rctx *c, const json_t *content, bool is_model, long idx)
{
    if (json_is_string(content)) {
        if (is_model)
            strip_thinking(c, json_string_value(content), json_string_length(content));
        else
            put_trimmed(c, json_string_value(content), json_string_length(content));
        return true;
    }
    if (json_is_object(content))
        return fail(c, "content must be a string or an array of parts", idx);
    if (!json_is_array(content))
        return true; /* null, numbers, booleans render nothing */
    for (size_t i = 0; i < json_array_size(content); i++) {
        const json_t *item = json_array_get(content, i);
        if (!json_is_object(item))
            return fail(c, "content parts must be objects", idx);
        const json_t *type = json_object_get(item, "type");
        if (str_is(type, "text")) {
            const json_t *text = json_object_get(item, "text");
            if (is_model) {
                if (!json_is_string(text))
                    return fail(c, "a text part needs a string \"text\"", idx);
                strip_thinking(c, json_string_value(text), json_string_length(text));
            } else {
                put_str_trimmed(c, text);
            }
        } else if (str_is(type, "image") || str_is(type, "image_url")) {
            put(c, "<|image|>");
        } else if (str_is(type, "audio") || str_is(type, "input_audio")) {
            put(c, "<|audio|>");
        } else if (str_is(type, "video")) {
            put(c, "<|video|>");
        }
    }
    return true;
}

/* The OpenAI forward scan: role:tool messages right after an assistant message with calls. */
static bool render_following_tool_messages(struct rctx *c, const json_t *msgs, size_t idx,
                                           const json_t *tool_calls, bool *flag,
                                           bool *prev_is_tool_response)
{
    for (size_t k = idx + 1; k < json_array_size(msgs); k++) {
        const json_t *follow = json_array_get(msgs, k);
        if (!str_is(get(follow, "role"), "tool"))
            break;
        const json_t *nm = json_object_get(follow, "name");
        const json_t *name = lg_py_truthy(nm) ? nm : NULL;
        for (size_t t = 0; t < json_array_size(tool_calls); t++) {
            const json_t *tc = json_array_get(tool_calls, t);
            if (py_eq(get(tc, "id"), json_object_get(follow, "tool_call_id")))
                name = get(get(tc, "function"), "name");
        }
        if (name && !json_is_string(name))
            return fail(c, "tool name is not a string", (long)k);
        const char *tool_name = name ? json_string_value(name) : "unknown";
        const json_t *body = json_object_get(follow, "content");
        if (json_is_array(body)) {
            struct lg_chat_buf s = {0};
            for (size_t i = 0; i < json_array_size(body); i++) {
                const json_t *part = json_array_get(body, i);
                if (!json_is_object(part)) {
                    lg_chat_buf_free(&s);
                    return fail(c, "content parts must be objects", (long)k);
                }
                if (str_is(json_object_get(part, "type"), "text")) {
                    const json_t *text = json_object_get(part, "text");
                    if (!json_is_string(text)) {
                        lg_chat_buf_free(&s);
                        return fail(c, "a text part needs a string \"text\"", (long)k);
                    }
                    lg_chat_buf_put(&s, json_string_value(text), json_string_length(text));
                }
            }
            json_t *joined = json_stringn(s.ptr ? s.ptr : "", s.len);
            lg_chat_buf_free(&s);
            if (!joined)
                return fail_oom(c);
            bool ok = format_tool_response_block(c, tool_name, joined);
            json_decref(joined);
            if (!ok)
                return false;
            for (size_t i = 0; i < json_array_size(body); i++) {
                const json_t *type = json_object_get(json_array_get(body, i), "type");
                if (str_is(type, "image") || str_is(type, "image_url"))
                    put(c, "<|image|>");
                else if (str_is(type, "audio") || str_is(type, "input_audio"))
                    put(c, "<|audio|>");
                else if (str_is(type, "video"))
                    put(c, "<|video|>");
            }
        } else if (json_is_object(body)) {
            return fail(c, "tool content must be a string or an array of parts", (long)k);
        } else if (!format_tool_response_block(c, tool_name, body ? body : json_null())) {
            return false;
        }
        *flag = true;
        *prev_is_tool_response = true;
    }
    return true;
}

enum prev_type { PREV_NONE, PREV_THINK, PREV_TOOL, PREV_TOOL_CALL, PREV_TOOL_RESPONSE };

static bool render_gemma4(struct rctx *c, const json_t *messages, const json_t *tools,
                          const struct lg_chat_opts *o)
{
    enum prev_type prev = PREV_NONE;
    const char *prev_non_tool_role = NULL;
    size_t n_msgs = json_array_size(messages), first = 0;
    const json_t *m0 = n_msgs ? json_array_get(messages, 0) : NULL;
    bool first_is_system = m0 && (str_is(get(m0, "role"), "system") ||
                                  str_is(get(m0, "role"), "developer"));

    put(c, "<bos>");
    if (o->enable_thinking || lg_py_truthy(tools) || first_is_system) {
        put(c, "<|turn>system\n");
        if (o->enable_thinking) {
            put(c, "<|think|>\n");
            prev = PREV_THINK;
        }
        if (first_is_system) {
            const json_t *content = json_object_get(m0, "content");
            if (json_is_string(content)) {
                put_trimmed(c, json_string_value(content), json_string_length(content));
            } else if (json_is_array(content)) {
                for (size_t i = 0; i < json_array_size(content); i++) {
                    put_str_trimmed(c, get(json_array_get(content, i), "text"));
                    put(c, " ");
                }
            } else if (json_is_object(content)) {
                return fail(c, "content must be a string or an array of parts", 0);
            }
            first = 1;
        }
        if (lg_py_truthy(tools)) {
            if (!json_is_array(tools))
                return fail(c, "tools must be an array", -1);
            for (size_t i = 0; i < json_array_size(tools); i++) {
                struct lg_chat_buf decl = {0};
                struct rctx dc = {&decl, c->err, LG_OK};
                bool ok = format_function_declaration(&dc, json_array_get(tools, i));
                if (!ok || decl.oom) {
                    lg_chat_buf_free(&decl);
                    c->st = dc.st != LG_OK ? dc.st : lg_err_set(c->err, LG_ERR_NOMEM, "out of memory");
                    return false;
                }
                put(c, "<|tool>");
                put_trimmed(c, decl.ptr ? decl.ptr : "", decl.len);
                put(c, "<tool|>");
                lg_chat_buf_free(&decl);
            }
            prev = PREV_TOOL;
        }
        put(c, "<turn|>\n");
    }

    /* loop_messages = messages[first:]; indices below are loop indices. */
    size_t n = n_msgs - first;
    long last_user_idx = -1;
    for (size_t i = 0; i < n; i++)
        if (str_is(get(json_array_get(messages, first + i), "role"), "user"))
            last_user_idx = (long)i;

    for (size_t i = 0; i < n; i++) {
        long mi = (long)(first + i);
        const json_t *msg = json_array_get(messages, first + i);
        const json_t *jrole = get(msg, "role");
        if (!json_is_string(jrole))
            return fail(c, "needs a string \"role\"", mi);
        const char *mrole = json_string_value(jrole);
        if (strcmp(mrole, "tool") == 0)
            continue;
        prev = PREV_NONE;
        const char *role = strcmp(mrole, "assistant") == 0 ? "model" : mrole;
        bool is_model = strcmp(role, "model") == 0;
        bool continue_same_model_turn =
            is_model && prev_non_tool_role && strcmp(prev_non_tool_role, "assistant") == 0;
        if (!continue_same_model_turn) {
            put(c, "<|turn>");
            put(c, role);
            put(c, "\n");
        }

        const json_t *reasoning = json_object_get(msg, "reasoning");
        const json_t *thinking_text = lg_py_truthy(reasoning) ? reasoning
                                                              : json_object_get(msg, "reasoning_content");
        const json_t *tool_calls = json_object_get(msg, "tool_calls");
        bool has_calls = lg_py_truthy(tool_calls);
        bool thinking_gate = (long)i > last_user_idx || (o->preserve_thinking && has_calls);
        if (lg_py_truthy(thinking_text) && thinking_gate) {
            if (!json_is_string(thinking_text))
                return fail(c, "reasoning_content must be a string", mi);
            put(c, "<|channel>thought\n");
            lg_chat_buf_put(c->b, json_string_value(thinking_text), json_string_length(thinking_text));
            put(c, "\n<channel|>");
        }

        if (has_calls) {
            if (!json_is_array(tool_calls))
                return fail(c, "tool_calls must be an array", mi);
            for (size_t t = 0; t < json_array_size(tool_calls); t++) {
                const json_t *fn = get(json_array_get(tool_calls, t), "function");
                const json_t *name = get(fn, "name");
                if (!json_is_string(name))
                    return fail(c, "tool_calls[].function.name must be a string", mi);
                put(c, "<|tool_call>call:");
                put(c, json_string_value(name));
                put(c, "{");
                const json_t *args = json_object_get(fn, "arguments");
                if (json_is_object(args)) {
                    size_t na;
                    bool oom = false;
                    const char **keys = lg_py_dictsort(args, &na, &oom);
                    if (oom)
                        return fail_oom(c);
                    for (size_t k = 0; k < na; k++) {
                        if (k)
                            put(c, ",");
                        put(c, keys[k]);
                        put(c, ":");
                        if (!format_argument(c, json_object_get(args, keys[k]), false, 1)) {
                            free(keys);
                            return false;
                        }
                    }
                    free(keys);
                } else if (!json_is_null(args)) {
                    return fail(c, "tool_calls[].function.arguments must be a JSON object", mi);
                }
                put(c, "}<tool_call|>");
            }
            prev = PREV_TOOL_CALL;
        }

        bool tr_flag = false, prev_tr = false;
        const json_t *trs = json_object_get(msg, "tool_responses");
        if (lg_py_truthy(trs)) {
            if (!json_is_array(trs))
                return fail(c, "tool_responses must be an array", mi);
            for (size_t t = 0; t < json_array_size(trs); t++) {
                const json_t *tr = json_array_get(trs, t);
                const json_t *nm = get(tr, "name");
                if (lg_py_truthy(nm) && !json_is_string(nm))
                    return fail(c, "tool_responses[].name must be a string", mi);
                const char *tool_name = lg_py_truthy(nm) ? json_string_value(nm) : "unknown";
                if (!format_tool_response_block(c, tool_name, get(tr, "response")))
                    return false;
                tr_flag = true;
                prev_tr = true;
            }
        } else if (has_calls) {
            if (!render_following_tool_messages(c, messages, first + i, tool_calls, &tr_flag, &prev_tr))
                return false;
        }
        if (prev_tr)
            prev = PREV_TOOL_RESPONSE;

        size_t content_start = c->b->len;
        if (!render_content(c, json_object_get(msg, "content"), is_model, mi))
            return false;
        size_t a = 0, e = 0;
        if (c->b->ptr && !c->b->oom)
            lg_py_strip(c->b->ptr + content_start, c->b->len - content_start, &a, &e);
        bool has_content = e > a;

        const char *next_role = NULL;
        bool next_found = false;
        for (size_t j = first + i + 1; j < n_msgs; j++) {
            const json_t *r = get(json_array_get(messages, j), "role");
            if (!str_is(r, "tool")) {
                next_role = json_is_string(r) ? json_string_value(r) : NULL;
                next_found = true;
                break;
            }
        }
        bool continues_into_next = is_model && next_role && strcmp(next_role, "assistant") == 0 &&
                                   (!has_calls || tr_flag);
        if (prev == PREV_TOOL_CALL && !tr_flag)
            put(c, "<|tool_response>");
        else if (continues_into_next)
            ;
        else if (!(tr_flag && !has_content && !next_found))
            put(c, "<turn|>\n");
        prev_non_tool_role = mrole;
    }

    if (o->add_generation_prompt) {
        if (prev != PREV_TOOL_RESPONSE && prev != PREV_TOOL_CALL) {
            put(c, "<|turn>model\n");
            if (o->flavour == LG_CHAT_GEMMA4_LARGE && !o->enable_thinking)
                put(c, "<|channel>thought\n<channel|>");
        } else if (prev == PREV_TOOL_RESPONSE && o->enable_thinking) {
            put(c, "<|channel>thought\n");
        }
    }
    return c->st == LG_OK;
}

bool lg_chat_render_gemma4(struct lg_chat_buf *b, const json_t *messages, const json_t *tools,
                           const struct lg_chat_opts *opts, struct lg_err *err,
                           enum lg_status *status)
{
    struct rctx c = {b, err, LG_OK};
    bool ok = render_gemma4(&c, messages, tools, opts);
    *status = c.st;
    return ok && c.st == LG_OK;
}
