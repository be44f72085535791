/* parse.c: incremental splitting of a generation into reasoning, answer text and tool calls.
 *
 * Gemma 4 output (spec §5.1, llama.cpp's PEG parser as the model of behaviour):
 *   [<|turn>model\n] [<|channel>thought\n REASONING <channel|>] CONTENT
 *   (<|tool_call>call:NAME{…}<tool_call|>)* ... then an end-of-generation token.
 * Text arrives in pieces; markers are recognised textually (a special token is fed as its text),
 * and a tail that could still grow into a marker is held back, so no half marker ever reaches
 * the answer. Tolerated (spec §7.12–7.13): a stray <channel|> or <tool_call|> (dropped), a
 * <|"|> outside a call (an ordinary '"' in the text: the delimiter is never markup there), an
 * extra empty thought block (emits nothing), a channel without "thought", a tool call without
 * its opening <|tool_call> at the start of a content segment (`call:NAME{…}`, recognised by its
 * shape and ended when its braces balance), a tool call cut short by <|channel> or an
 * end-of-generation marker, and everything lg_chat_parse_call() repairs. A call that cannot be
 * parsed becomes an ERROR event holding a JSON object; its markup never leaks into the answer.
 * Whitespace at the start and end of each content / reasoning segment is dropped (the
 * templates trim both when the turn goes back into history).
 * While a canonical call streams, its arguments go out as TOOL_CALL_DELTA events as they are
 * generated (struct sconv); the TOOL_CALL event that ends the call says how much of its
 * arguments the deltas already delivered.
 *
 * Gemma 3: everything is answer text until <end_of_turn>, <eos> or <start_of_turn>.
 *
 * Invariant: `pend` holds only text not yet classified; in every state but TOOLCALL it is
 * shorter than the longest marker once process() returns.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/chat.h"

enum { LG_CHAT_MAX_CALL_BYTES = 1 << 20 };

enum pstate { PS_START, PS_CONTENT, PS_CHANNEL_HEAD, PS_REASONING, PS_TOOLCALL, PS_DONE };

enum mact {
    MA_DROP,    /* stray marker: ignore */
    MA_CHANNEL, /* open the thought channel */
    MA_CLOSE_CHANNEL,
    MA_CALL,    /* open a tool call */
    MA_END_CALL,
    MA_DONE,    /* end of generation */
    MA_QUOTE    /* the <|"|> string delimiter outside a call: an ordinary quote character */
};

struct marker {
    const char *text;
    enum mact act;
};

static const struct marker g4_content[] = {
    {"<|channel>", MA_CHANNEL},  {"<channel|>", MA_DROP},        {"<|tool_call>", MA_CALL},
    {"<tool_call|>", MA_DROP},   {"<tool_response|>", MA_DROP},  {"<|turn>", MA_DONE},
    {"<turn|>", MA_DONE},        {"<eos>", MA_DONE},             {"<|tool_response>", MA_DONE},
    {"<|\"|>", MA_QUOTE},        {NULL, MA_DROP}};
static const struct marker g4_reasoning[] = {
    {"<channel|>", MA_CLOSE_CHANNEL}, {"<|tool_call>", MA_CALL},  {"<|channel>", MA_DROP},
    {"<tool_call|>", MA_DROP},        {"<|turn>", MA_DONE},       {"<turn|>", MA_DONE},
    {"<eos>", MA_DONE},               {"<|tool_response>", MA_DONE}, {"<|\"|>", MA_QUOTE},
    {NULL, MA_DROP}};
static const struct marker g4_call[] = {
    {"<tool_call|>", MA_END_CALL}, {"<|tool_call>", MA_CALL}, {"<|channel>", MA_CHANNEL},
    {"<|turn>", MA_DONE},          {"<turn|>", MA_DONE},      {"<eos>", MA_DONE},
    {"<|tool_response>", MA_DONE}, {NULL, MA_DROP}};
static const struct marker g3_content[] = {
    {"<end_of_turn>", MA_DONE}, {"<eos>", MA_DONE}, {"<start_of_turn>", MA_DONE}, {NULL, MA_DROP}};


/* Streaming conversion of a tool call's arguments (LG_CHAT_EV_TOOL_CALL_DELTA).
 *
 * A strict, incremental reader of the canonical Gemma 4 call syntax — `call:NAME{` then bare
 * keys, <|"|>strings<|"|>, JSON numbers, true/false/null, nested {…} / […], no whitespace —
 * which is exactly what the tool-call grammar lets a model write. It appends to `out` the same
 * JSON that lg_chat_parse_call() builds for the finished call (same escaping function, numbers
 * copied as written), so what has been streamed is always a prefix of the final arguments.
 * Anything outside that syntax (whitespace, Python words, stray quotes, a string where the
 * schema wants an array or object and coercion may rewrite it, ...) kills the stream for the
 * call: the rest is delivered whole by the TOOL_CALL event, built by the tolerant parser.
 * Two decisions of the tolerant parser depend on what follows a value: a <|"|> ends a string,
 * and a scalar ends, at `,` inside an object only when a `key:` follows. Output past such a
 * comma is held back (`hold`) until the key and its ':' have arrived. */
enum sc_state {
    SC_PREFIX, SC_NAME, SC_KEY_FIRST, SC_KEY, SC_VALUE, SC_ARR_FIRST, SC_STR, SC_STR_END,
    SC_SCALAR, SC_AFTER, SC_END
};

enum { SC_MAX_DEPTH = 64, SC_MAX_KEY = 100, SC_MAX_SCALAR = 64, SC_NO_HOLD = -1 };

struct sconv {
    enum sc_state st;
    bool dead;             /* stopped streaming this call */
    size_t scan;           /* bytes of the call body read so far */
    struct lg_chat_buf out; /* arguments JSON built so far */
    size_t sent;           /* bytes of out delivered as deltas */
    long hold;             /* SC_NO_HOLD, or: deliver no more than this many bytes of out */
    char stack[SC_MAX_DEPTH]; /* '{' or '[' per open container */
    int depth;
    size_t key_start, key_len; /* current key in the body */
    char name[128];        /* the function's name once known (NUL), else "" */
    bool name_sent;
    const json_t *props;   /* the tool's parameters.properties (borrowed), or NULL */
    const char *top_key_type; /* schema "type" of the current top-level key, or NULL */
    char scal[SC_MAX_SCALAR + 1];
    size_t scal_len;
};

struct lg_chat_parser {
    enum lg_chat_flavour flavour;
    enum pstate st;
    struct lg_chat_buf pend;     /* unclassified text */
    struct lg_chat_buf call;     /* body of the tool call being read */
    bool call_bare;              /* the call had no <|tool_call> */
    size_t bare_scan;            /* bare call: bytes of call already scanned */
    int bare_depth;
    bool bare_in_str, bare_opened;
    bool seg_has_text;           /* current segment emitted non-whitespace already */
    struct lg_chat_buf held_ws;  /* trailing whitespace of the segment, not yet emitted */
    struct sconv sc;             /* streaming conversion of the current call's arguments */
    bool stream_calls;           /* emit LG_CHAT_EV_TOOL_CALL_DELTA */
    json_t *tools;               /* deep copy of the request's tools, or NULL */
    struct lg_chat_event *q;     /* event queue [q_head, q_len) */
    size_t q_head, q_len, q_cap;
    bool oom;
};

/* ---- events ---------------------------------------------------------------------------------- */

static struct lg_chat_event *push_event(struct lg_chat_parser *p, enum lg_chat_event_type t)
{
    if (p->q_len == p->q_cap) {
        if (p->q_head > 0) { /* compact */
            memmove(p->q, p->q + p->q_head, (p->q_len - p->q_head) * sizeof *p->q);
            p->q_len -= p->q_head;
            p->q_head = 0;
        }
        if (p->q_len == p->q_cap) {
            size_t cap = p->q_cap ? p->q_cap * 2 : 16;
            struct lg_chat_event *q = realloc(p->q, cap * sizeof *q);
            if (!q) {
                p->oom = true;
                return NULL;
            }
            p->q = q;
            p->q_cap = cap;
        }
    }
    struct lg_chat_event *e = &p->q[p->q_len++];
    memset(e, 0, sizeof *e);
    e->type = t;
    return e;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Appends a text delta, merging with a queued delta of the same type. */
static void emit_raw(struct lg_chat_parser *p, enum lg_chat_event_type t, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (p->q_len > p->q_head && p->q[p->q_len - 1].type == t) {
        struct lg_chat_event *e = &p->q[p->q_len - 1];
        char *grown = realloc(e->text, e->len + n + 1);
        if (!grown) {
            p->oom = true;
            return;
        }
        memcpy(grown + e->len, s, n);
        e->len += n;
        grown[e->len] = 0;
        e->text = grown;
        return;
    }
    struct lg_chat_event *e = push_event(p, t);
    if (!e)
        return;
    e->text = dup_n(s, n);
    e->len = n;
    if (!e->text) {
        p->q_len--;
        p->oom = true;
    }
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Segment text with leading and trailing whitespace held back (see the file comment). */
static void emit_text(struct lg_chat_parser *p, enum lg_chat_event_type t, const char *s, size_t n)
{
    size_t a = 0;
    if (!p->seg_has_text)
        while (a < n && is_ws(s[a]))
            a++;
    size_t last = n;
    while (last > a && is_ws(s[last - 1]))
        last--;
    if (last == a) { /* only whitespace */
        if (p->seg_has_text)
            lg_chat_buf_put(&p->held_ws, s + a, n - a);
        return;
    }
    if (p->held_ws.len) {
        emit_raw(p, t, p->held_ws.ptr, p->held_ws.len);
        p->held_ws.len = 0;
    }
    emit_raw(p, t, s + a, last - a);
    p->seg_has_text = true;
    lg_chat_buf_put(&p->held_ws, s + last, n - last);
}

static void end_segment(struct lg_chat_parser *p)
{
    p->held_ws.len = 0;
    p->seg_has_text = false;
}

/* JSON string literal of s[0..n) into b (invalid UTF-8 replaced). */
static void put_json_str(struct lg_chat_buf *b, const char *s, size_t n)
{
    lg_chat_buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            lg_chat_buf_put(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            lg_chat_buf_puts(b, e);
        } else if (c >= 0x80) {
            /* copy a whole valid sequence, else U+FFFD */
            size_t l = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
            bool ok = l && l <= n - i;
            for (size_t k = 1; ok && k < l; k++)
                ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
            if (ok && l == 2)
                ok = c >= 0xc2;
            if (ok && l == 3) {
                unsigned c1 = (unsigned char)s[i + 1];
                ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
            }
            if (ok && l == 4) {
                unsigned c1 = (unsigned char)s[i + 1];
                ok = c <= 0xf4 && !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
            }
            if (ok) {
                lg_chat_buf_put(b, s + i, l);
                i += l - 1;
            } else {
                lg_chat_buf_puts(b, "\xef\xbf\xbd");
            }
        } else {
            lg_chat_buf_put(b, s + i, 1);
        }
    }
    lg_chat_buf_put(b, "\"", 1);
}

static void emit_error(struct lg_chat_parser *p, const char *kind, const char *msg,
                       const char *name, const char *raw, size_t raw_len)
{
    struct lg_chat_buf b = {0};
    lg_chat_buf_puts(&b, "{\"type\":");
    put_json_str(&b, kind, strlen(kind));
    lg_chat_buf_puts(&b, ",\"message\":");
    put_json_str(&b, msg, strlen(msg));
    if (name) {
        lg_chat_buf_puts(&b, ",\"name\":");
        put_json_str(&b, name, strlen(name));
    }
    lg_chat_buf_puts(&b, ",\"raw\":");
    put_json_str(&b, raw, raw_len);
    lg_chat_buf_puts(&b, "}");
    if (b.oom) {
        lg_chat_buf_free(&b);
        p->oom = true;
        return;
    }
    struct lg_chat_event *e = push_event(p, LG_CHAT_EV_ERROR);
    if (!e) {
        lg_chat_buf_free(&b);
        return;
    }
    e->text = b.ptr;
    e->len = b.len;
}

/* Spec §7.13 (llama.cpp #21384): an array or object argument written as a string holding
 * JSON. When the tool's schema says the parameter is an array / object and the string parses as
 * one, replace it. Returns true when *args was rewritten (re-encoded by jansson). */
static bool coerce_stringified(const json_t *fn, char **args)
{
    const json_t *props = json_object_get(json_object_get(fn, "parameters"), "properties");
    if (!json_is_object(props))
        return false;
    json_t *obj = json_loads(*args, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return false;
    }
    bool changed = false;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        if (!json_is_string(val))
            continue;
        const char *type = json_string_value(json_object_get(json_object_get(props, key), "type"));
        bool want_arr = type && strcmp(type, "array") == 0, want_obj = type && strcmp(type, "object") == 0;
        if (!want_arr && !want_obj)
            continue;
        json_t *parsed = json_loadb(json_string_value(val), json_string_length(val),
                                    JSON_DECODE_ANY, NULL);
        if ((want_arr && json_is_array(parsed)) || (want_obj && json_is_object(parsed))) {
            json_object_set_new(obj, key, parsed);
            changed = true;
        } else {
            json_decref(parsed);
        }
    }
    char *txt = changed ? json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(obj);
    if (!txt)
        return false;
    free(*args);
    *args = txt;
    return true;
}

static void sc_reset(struct sconv *c);

static void finish_call(struct lg_chat_parser *p)
{
    char *name = NULL, *args = NULL;
    bool repaired = false;
    struct lg_err err = {0};
    const char *body = p->call.ptr ? p->call.ptr : "";
    enum lg_status st = lg_chat_parse_call(body, p->call.len, &name, &args, &repaired, &err);
    if (st == LG_ERR_NOMEM) {
        p->oom = true;
    } else if (st != LG_OK) {
        emit_error(p, "tool_call_parse_error", err.msg, NULL, body, p->call.len);
    } else {
        const json_t *fn = NULL;
        for (size_t i = 0; !fn && i < json_array_size(p->tools); i++) {
            const json_t *f = json_object_get(json_array_get(p->tools, i), "function");
            const char *fname = json_string_value(json_object_get(f, "name"));
            if (fname && strcmp(fname, name) == 0)
                fn = f;
        }
        bool known = !p->tools || fn;
        if (fn && coerce_stringified(fn, &args))
            repaired = true;
        size_t sent = p->sc.sent;
        if (!known) {
            emit_error(p, "unknown_tool", "the model called a tool that was not offered", name,
                       body, p->call.len);
        } else if (sent > 0 && (strlen(args) < sent || memcmp(args, p->sc.out.ptr, sent) != 0)) {
            /* cannot happen for canonical calls (see struct sconv); never send a call whose
             * pieces disagree */
            emit_error(p, "tool_call_stream_mismatch",
                       "the tool call's arguments changed after they were streamed", name, body,
                       p->call.len);
        } else {
            struct lg_chat_event *e = push_event(p, LG_CHAT_EV_TOOL_CALL);
            if (e) {
                e->name = name;
                e->text = args;
                e->len = strlen(args);
                e->repaired = repaired || p->call_bare;
                e->streamed = sent;
                name = args = NULL;
            }
        }
    }
    free(name);
    free(args);
    p->call.len = 0;
    p->call_bare = false;
    sc_reset(&p->sc);
    p->sc.dead = true; /* nothing streams until the next call starts */
}

/* ---- scanning ---------------------------------------------------------------------------------- */

static const struct marker *markers_for(const struct lg_chat_parser *p)
{
    if (p->flavour == LG_CHAT_GEMMA3)
        return g3_content;
    switch (p->st) {
    case PS_REASONING: return g4_reasoning;
    case PS_TOOLCALL: return g4_call;
    default: return g4_content;
    }
}

/* Earliest marker in s[0..n): returns its position (n if none) and sets *m. */
static size_t find_marker(const struct marker *ms, const char *s, size_t n, const struct marker **m)
{
    *m = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '<')
            continue;
        for (const struct marker *k = ms; k->text; k++) {
            size_t l = strlen(k->text);
            if (l <= n - i && memcmp(s + i, k->text, l) == 0) {
                *m = k;
                return i;
            }
        }
    }
    return n;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of some marker. */
static size_t holdback(const struct marker *ms, const char *s, size_t n)
{
    size_t maxl = 0;
    for (const struct marker *k = ms; k->text; k++)
        if (strlen(k->text) > maxl)
            maxl = strlen(k->text);
    size_t from = n > maxl ? n - maxl + 1 : 0;
    for (size_t i = from; i < n; i++) {
        if (s[i] != '<')
            continue;
        for (const struct marker *k = ms; k->text; k++) {
            size_t l = strlen(k->text);
            if (n - i < l && memcmp(s + i, k->text, n - i) == 0)
                return n - i;
        }
    }
    return 0;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static void consume(struct lg_chat_buf *b, size_t n)
{
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
    b->ptr[b->len] = 0;
}

/* ---- streaming tool-call arguments (struct sconv) ------------------------------------------- */

static const char SC_DQ[] = "<|\"|>";

static void sc_reset(struct sconv *c)
{
    struct lg_chat_buf out = c->out;
    memset(c, 0, sizeof *c);
    out.len = 0;
    c->out = out;
    c->hold = SC_NO_HOLD;
}

static bool sc_kill(struct sconv *c)
{
    c->dead = true;
    return false;
}

/* The tool's parameters.properties for name, or NULL; false when tools are given and the name
 * is not one of them (the final parse reports that). */
static bool sc_find_tool(const json_t *tools, const char *name, const json_t **props)
{
    *props = NULL;
    if (!tools)
        return true;
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *f = json_object_get(json_array_get(tools, i), "function");
        const char *fname = json_string_value(json_object_get(f, "name"));
        if (fname && strcmp(fname, name) == 0) {
            *props = json_object_get(json_object_get(f, "parameters"), "properties");
            return true;
        }
    }
    return false;
}

/* Strict JSON literal: true, false, null, or a JSON number a double can hold. */
static bool sc_scalar_ok(const char *t, size_t n)
{
    if ((n == 4 && !memcmp(t, "true", 4)) || (n == 5 && !memcmp(t, "false", 5)) ||
        (n == 4 && !memcmp(t, "null", 4)))
        return true;
    size_t i = 0;
    if (i < n && t[i] == '-')
        i++;
    if (i >= n || t[i] < '0' || t[i] > '9')
        return false;
    if (t[i] == '0')
        i++;
    else
        while (i < n && t[i] >= '0' && t[i] <= '9')
            i++;
    if (i < n && t[i] == '.') {
        size_t d = ++i;
        while (i < n && t[i] >= '0' && t[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && t[i] >= '0' && t[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n && !isinf(strtod(t, NULL));
}

/* A closing '}' or ']' for the innermost container. */
static bool sc_close(struct sconv *c, char ch)
{
    if (c->depth == 0 || (ch == '}') != (c->stack[c->depth - 1] == '{'))
        return sc_kill(c);
    lg_chat_buf_put(&c->out, &ch, 1);
    c->depth--;
    c->st = c->depth == 0 ? SC_END : SC_AFTER;
    return true;
}

/* What follows a complete value: ',' / '}' / ']'. hold_at is where output must stop until
 * the next key is confirmed when a ',' inside an object follows (SC_NO_HOLD: no need). */
static bool sc_after_value(struct sconv *c, char ch, long hold_at)
{
    if (ch == '}' || ch == ']')
        return sc_close(c, ch);
    if (ch != ',' || c->depth == 0)
        return sc_kill(c);
    lg_chat_buf_put(&c->out, ",", 1);
    if (c->stack[c->depth - 1] == '{') {
        if (hold_at != SC_NO_HOLD && c->hold == SC_NO_HOLD)
            c->hold = hold_at;
        c->st = SC_KEY;
        c->key_len = 0;
    } else {
        c->st = SC_VALUE;
    }
    return true;
}

static bool sc_open(struct sconv *c, char ch)
{
    if (c->depth == SC_MAX_DEPTH)
        return sc_kill(c);
    c->stack[c->depth++] = ch;
    lg_chat_buf_put(&c->out, &ch, 1);
    c->st = ch == '{' ? SC_KEY_FIRST : SC_ARR_FIRST;
    return true;
}

/* Reads what is new in the call body b[0..n). Stops (leaving scan) where it must wait for
 * more bytes. */
static void sc_run(struct sconv *c, const json_t *tools, const char *b, size_t n)
{
    while (!c->dead && c->scan < n) {
        size_t i = c->scan, avail = n - i;
        unsigned char ch = (unsigned char)b[i];
        switch (c->st) {
        case SC_PREFIX:
            if (avail < 5) {
                if (memcmp(b + i, "call:", avail) != 0)
                    sc_kill(c);
                return;
            }
            if (memcmp(b + i, "call:", 5) != 0) {
                sc_kill(c);
                return;
            }
            c->scan += 5;
            c->st = SC_NAME;
            c->key_start = c->scan; /* reused: start of the name */
            break;
        case SC_NAME:
            if (ch == '{') {
                size_t len = i - c->key_start;
                if (len == 0 || len >= sizeof c->name) {
                    sc_kill(c);
                    return;
                }
                memcpy(c->name, b + c->key_start, len);
                c->name[len] = 0;
                if (!sc_find_tool(tools, c->name, &c->props)) {
                    sc_kill(c);
                    return;
                }
                c->scan++;
                sc_open(c, '{');
            } else if (is_name_char((char)ch) || ch == ':' || ch == '/') {
                c->scan++;
            } else {
                sc_kill(c);
            }
            break;
        case SC_KEY_FIRST:
            if (ch == '}') {
                c->scan++;
                sc_close(c, '}');
                break;
            }
            c->st = SC_KEY;
            c->key_len = 0;
            break;
        case SC_KEY:
            if (ch == ':') {
                if (c->key_len == 0) {
                    sc_kill(c);
                    return;
                }
                lg_chat_buf_put(&c->out, "\"", 1);
                lg_chat_json_escape(&c->out, b + c->key_start, c->key_len);
                lg_chat_buf_put(&c->out, "\":", 2);
                c->top_key_type = NULL;
                if (c->depth == 1 && c->props) {
                    struct lg_chat_buf k = {0};
                    lg_chat_buf_put(&k, b + c->key_start, c->key_len);
                    if (k.ptr)
                        c->top_key_type = json_string_value(
                            json_object_get(json_object_get(c->props, k.ptr), "type"));
                    lg_chat_buf_free(&k);
                }
                c->hold = SC_NO_HOLD; /* the value before the ',' really ended */
                c->scan++;
                c->st = SC_VALUE;
            } else if (ch <= ' ' || ch == '"' || ch == ',' || ch == '{' || ch == '[' ||
                       ch == '}' || ch == ']' || ch == '(' || ch == ')' || ch == '=' ||
                       ch == '<' || c->key_len >= SC_MAX_KEY) {
                sc_kill(c);
            } else {
                if (c->key_len == 0)
                    c->key_start = i;
                c->key_len++;
                c->scan++;
            }
            break;
        case SC_ARR_FIRST:
            if (ch == ']') {
                c->scan++;
                sc_close(c, ']');
                break;
            }
            c->st = SC_VALUE;
            break;
        case SC_VALUE:
            if (ch == '<') {
                if (avail < 5) {
                    if (memcmp(b + i, SC_DQ, avail) != 0)
                        sc_kill(c);
                    return;
                }
                if (memcmp(b + i, SC_DQ, 5) != 0) {
                    sc_kill(c);
                    return;
                }
                /* a string where the schema wants an array / object may be coerced */
                if (c->depth == 1 && c->top_key_type &&
                    (!strcmp(c->top_key_type, "array") || !strcmp(c->top_key_type, "object"))) {
                    sc_kill(c);
                    return;
                }
                lg_chat_buf_put(&c->out, "\"", 1);
                c->scan += 5;
                c->st = SC_STR;
            } else if (ch == '{' || ch == '[') {
                c->scan++;
                sc_open(c, (char)ch);
            } else if (ch == '-' || (ch >= '0' && ch <= '9') || ch == 't' || ch == 'f' ||
                       ch == 'n') {
                c->scal_len = 0;
                c->st = SC_SCALAR;
            } else {
                sc_kill(c);
            }
            break;
        case SC_STR:
            if (ch == '<') {
                if (avail < 5 && memcmp(b + i, SC_DQ, avail) == 0)
                    return; /* may be the closing delimiter */
                if (avail >= 5 && memcmp(b + i, SC_DQ, 5) == 0) {
                    c->scan += 5;
                    c->st = SC_STR_END;
                    break;
                }
                lg_chat_json_escape(&c->out, "<", 1);
                c->scan++;
            } else if (ch < 0x80) {
                lg_chat_json_escape(&c->out, b + i, 1);
                c->scan++;
            } else {
                size_t l = (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 1;
                if (avail < l)
                    return; /* the rest of the sequence has not arrived */
                /* a valid sequence is copied as is; otherwise one U+FFFD per byte, as the
                 * whole-string escape does */
                size_t before = c->out.len;
                lg_chat_json_escape(&c->out, b + i, l);
                if (l > 1 && (c->out.len - before != l ||
                              memcmp(c->out.ptr + before, b + i, l) != 0)) {
                    c->out.len = before;
                    lg_chat_json_escape(&c->out, b + i, 1);
                    l = 1;
                }
                c->scan += l;
            }
            break;
        case SC_STR_END: {
            long at = (long)c->out.len; /* before the closing quote */
            if (ch != ',' && ch != '}' && ch != ']') {
                sc_kill(c);
                return;
            }
            lg_chat_buf_put(&c->out, "\"", 1);
            c->scan++;
            sc_after_value(c, (char)ch, at);
            break;
        }
        case SC_SCALAR:
            if (ch == ',' || ch == '}' || ch == ']') {
                c->scal[c->scal_len] = 0;
                if (!sc_scalar_ok(c->scal, c->scal_len)) {
                    sc_kill(c);
                    return;
                }
                long at = (long)c->out.len;
                lg_chat_buf_put(&c->out, c->scal, c->scal_len);
                c->scan++;
                sc_after_value(c, (char)ch, at);
            } else if (c->scal_len < SC_MAX_SCALAR &&
                       ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                        (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '+' || ch == '-')) {
                c->scal[c->scal_len++] = (char)ch;
                c->scan++;
            } else {
                sc_kill(c);
            }
            break;
        case SC_AFTER:
            c->scan++;
            sc_after_value(c, (char)ch, SC_NO_HOLD);
            break;
        case SC_END:
            sc_kill(c);
            break;
        }
        if (c->out.oom)
            sc_kill(c);
    }
}

/* Runs the converter over the body so far and queues a delta for what became certain. */
static void sc_feed(struct lg_chat_parser *p)
{
    struct sconv *c = &p->sc;
    if (c->dead || p->call_bare || !p->stream_calls)
        return;
    sc_run(c, p->tools, p->call.ptr ? p->call.ptr : "", p->call.len);
    if (c->dead || !c->name[0])
        return;
    size_t limit = c->hold == SC_NO_HOLD ? c->out.len : (size_t)c->hold;
    if (limit <= c->sent)
        return;
    struct lg_chat_event *e = push_event(p, (enum lg_chat_event_type)LG_CHAT_EV_TOOL_CALL_DELTA);
    if (!e)
        return;
    e->text = dup_n(c->out.ptr + c->sent, limit - c->sent);
    e->len = limit - c->sent;
    if (!c->name_sent)
        e->name = dup_n(c->name, strlen(c->name));
    if (!e->text || (!c->name_sent && !e->name)) {
        lg_chat_event_free(e);
        p->q_len--;
        p->oom = true;
        return;
    }
    c->name_sent = true;
    c->sent = limit;
}

/* Bare call (no <|tool_call>): appends text to the body until its braces balance. Returns how
 * many bytes of s were taken; may switch the state back to content. */
static size_t bare_call_text(struct lg_chat_parser *p, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (p->bare_in_str) {
            if (c == '<' && n - i >= 5 && memcmp(s + i, "<|\"|>", 5) == 0) {
                lg_chat_buf_put(&p->call, s + i, 5);
                p->bare_in_str = false;
                i += 5;
                continue;
            }
        } else if (c == '<' && n - i >= 5 && memcmp(s + i, "<|\"|>", 5) == 0) {
            lg_chat_buf_put(&p->call, s + i, 5);
            p->bare_in_str = true;
            i += 5;
            continue;
        } else if (c == '{' || c == '(' || c == '[') {
            p->bare_depth++;
            p->bare_opened = true;
        } else if (c == '}' || c == ')' || c == ']') {
            p->bare_depth--;
            if (p->bare_depth <= 0 && p->bare_opened) {
                lg_chat_buf_put(&p->call, s + i, 1);
                finish_call(p);
                p->st = PS_CONTENT;
                end_segment(p);
                return i + 1;
            }
        } else if (!p->bare_opened && !is_name_char(c)) {
            /* `call:` followed by something that is not a function: it was just text */
            lg_chat_buf_put(&p->call, s + i, 1);
            p->st = PS_CONTENT;
            emit_text(p, LG_CHAT_EV_CONTENT, p->call.ptr, p->call.len);
            p->call.len = 0;
            p->call_bare = false;
            return i + 1;
        }
        lg_chat_buf_put(&p->call, s + i, 1);
        i++;
    }
    return n;
}

/* Classified text of the current state. Returns bytes taken (all, except a bare call that
 * ended inside s). */
static size_t state_text(struct lg_chat_parser *p, const char *s, size_t n)
{
    switch (p->st) {
    case PS_CONTENT: emit_text(p, LG_CHAT_EV_CONTENT, s, n); return n;
    case PS_REASONING: emit_text(p, LG_CHAT_EV_REASONING, s, n); return n;
    case PS_TOOLCALL:
        if (p->call_bare)
            return bare_call_text(p, s, n);
        lg_chat_buf_put(&p->call, s, n);
        if (p->call.oom)
            p->oom = true;
        sc_feed(p);
        return n;
    default: return n;
    }
}

static void start_call(struct lg_chat_parser *p, bool bare)
{
    p->st = PS_TOOLCALL;
    p->call.len = 0;
    p->call_bare = bare;
    p->bare_depth = 0;
    p->bare_in_str = p->bare_opened = false;
    sc_reset(&p->sc);
}

static void apply_marker(struct lg_chat_parser *p, enum mact act)
{
    bool in_call = p->st == PS_TOOLCALL;
    if (act == MA_DROP)
        return;
    if (act == MA_QUOTE) {
        emit_text(p, p->st == PS_REASONING ? LG_CHAT_EV_REASONING : LG_CHAT_EV_CONTENT, "\"", 1);
        return;
    }
    if (in_call && act != MA_DROP)
        finish_call(p); /* a call ends at its close marker, or is cut short by another marker */
    end_segment(p);
    switch (act) {
    case MA_CHANNEL: p->st = PS_CHANNEL_HEAD; break;
    case MA_CLOSE_CHANNEL:
    case MA_END_CALL: p->st = PS_CONTENT; break;
    case MA_CALL: start_call(p, false); break;
    case MA_DONE: p->st = PS_DONE; break;
    case MA_DROP:
    case MA_QUOTE: break;
    }
}

static bool is_proper_prefix(const char *s, size_t n, const char *full)
{
    size_t l = strlen(full);
    return n < l && memcmp(s, full, n) == 0;
}

static enum lg_status process(struct lg_chat_parser *p, bool final)
{
    while (!p->oom) {
        struct lg_chat_buf *b = &p->pend;
        const char *s = b->ptr ? b->ptr : "";
        size_t n = b->len;
        if (p->st == PS_DONE) {
            b->len = 0;
            return LG_OK;
        }
        if (p->st == PS_START) {
            static const char head[] = "<|turn>model\n";
            if (!final && is_proper_prefix(s, n, head))
                return LG_OK;
            if (n >= sizeof head - 1 && memcmp(s, head, sizeof head - 1) == 0)
                consume(b, sizeof head - 1);
            p->st = PS_CONTENT;
            continue;
        }
        if (p->st == PS_CHANNEL_HEAD) {
            if (!final && is_proper_prefix(s, n, "thought\n"))
                return LG_OK;
            if (n >= 8 && memcmp(s, "thought\n", 8) == 0)
                consume(b, 8);
            else if (n >= 7 && memcmp(s, "thought", 7) == 0)
                consume(b, 7);
            p->st = PS_REASONING;
            continue;
        }
        if (n == 0)
            return LG_OK;
        /* A tool call whose <|tool_call> was dropped, at the start of a content segment. */
        if (p->st == PS_CONTENT && p->flavour != LG_CHAT_GEMMA3 && !p->seg_has_text) {
            size_t a = 0;
            while (a < n && is_ws(s[a]))
                a++;
            if (a == n) {
                consume(b, n); /* leading whitespace of a segment is dropped anyway */
                return LG_OK;
            }
            if (!final && n - a < 6 && is_proper_prefix(s + a, n - a, "call:") )
                return LG_OK;
            if (!final && n - a == 5 && memcmp(s + a, "call:", 5) == 0)
                return LG_OK;
            if (n - a >= 6 && memcmp(s + a, "call:", 5) == 0 && is_name_char(s[a + 5])) {
                start_call(p, true);
                lg_chat_buf_puts(&p->call, "call:");
                consume(b, a + 5);
                continue;
            }
        }
        const struct marker *ms = markers_for(p), *m;
        size_t pos = find_marker(ms, s, n, &m);
        if (m) {
            enum pstate before = p->st;
            size_t took = state_text(p, s, pos);
            if (took < pos || p->st != before) {
                /* a bare call ended or was abandoned: the marker belongs to the new state */
                consume(b, took);
                continue;
            }
            enum mact act = m->act;
            size_t ml = strlen(m->text);
            consume(b, pos + ml);
            apply_marker(p, act);
        } else {
            size_t keep = final ? 0 : holdback(ms, s, n);
            if (!final && p->st == PS_TOOLCALL && p->call_bare) {
                /* a bare call tracks <|"|> itself: never split one across pieces */
                for (size_t t = n > 4 ? n - 4 : 0; t < n; t++)
                    if (s[t] == '<' && memcmp(s + t, "<|\"|>", n - t) == 0) {
                        if (n - t > keep)
                            keep = n - t;
                        break;
                    }
            }
            size_t took = state_text(p, s, n - keep);
            consume(b, took);
            if (took < n - keep)
                continue;
            if (p->st == PS_TOOLCALL && p->call.len > LG_CHAT_MAX_CALL_BYTES)
                return LG_ERR_RANGE;
            return LG_OK;
        }
        if (p->st == PS_TOOLCALL && p->call.len > LG_CHAT_MAX_CALL_BYTES)
            return LG_ERR_RANGE;
    }
    return LG_ERR_NOMEM;
}

/* ---- public ---------------------------------------------------------------------------------- */

struct lg_chat_parser *lg_chat_parser_create(enum lg_chat_flavour f, const json_t *tools)
{
    struct lg_chat_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->flavour = f;
    p->st = PS_START;
    if (json_is_array(tools) && json_array_size(tools) > 0) {
        p->tools = json_deep_copy(tools);
        if (!p->tools) {
            free(p);
            return NULL;
        }
    }
    return p;
}

void lg_chat_parser_stream_calls(struct lg_chat_parser *p, bool on)
{
    if (p)
        p->stream_calls = on;
}

void lg_chat_parser_begin_in_reasoning(struct lg_chat_parser *p)
{
    if (p && p->flavour != LG_CHAT_GEMMA3)
        p->st = PS_REASONING;
}

void lg_chat_parser_destroy(struct lg_chat_parser *p)
{
    if (!p)
        return;
    json_decref(p->tools);
    for (size_t i = p->q_head; i < p->q_len; i++)
        lg_chat_event_free(&p->q[i]);
    free(p->q);
    lg_chat_buf_free(&p->pend);
    lg_chat_buf_free(&p->call);
    lg_chat_buf_free(&p->sc.out);
    lg_chat_buf_free(&p->held_ws);
    free(p);
}

enum lg_status lg_chat_parser_feed(struct lg_chat_parser *p, const char *text, size_t len,
                                   bool special)
{
    (void)special; /* markers are recognised by their text either way */
    if (p->oom)
        return LG_ERR_NOMEM;
    if (p->st == PS_DONE)
        return LG_OK;
    lg_chat_buf_put(&p->pend, text, len);
    if (p->pend.oom)
        p->oom = true;
    if (p->oom)
        return LG_ERR_NOMEM;
    enum lg_status st = process(p, false);
    return p->oom ? LG_ERR_NOMEM : st;
}

enum lg_status lg_chat_parser_finish(struct lg_chat_parser *p)
{
    if (p->oom)
        return LG_ERR_NOMEM;
    enum lg_status st = process(p, true);
    if (st != LG_OK)
        return st;
    if (p->st == PS_TOOLCALL) { /* generation ended inside a call */
        finish_call(p);
        p->st = PS_DONE;
    }
    end_segment(p);
    return p->oom ? LG_ERR_NOMEM : LG_OK;
}

bool lg_chat_parser_next(struct lg_chat_parser *p, struct lg_chat_event *ev)
{
    if (p->q_head >= p->q_len) {
        p->q_head = p->q_len = 0;
        return false;
    }
    *ev = p->q[p->q_head++];
    return true;
}

void lg_chat_event_free(struct lg_chat_event *ev)
{
    if (!ev)
        return;
    free(ev->text);
    free(ev->name);
    ev->text = ev->name = NULL;
    ev->len = 0;
}
