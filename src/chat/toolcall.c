/* toolcall.c: one Gemma 4 tool call body -> function name + JSON arguments.
 *
 * The well-formed syntax (spec §5.1) is `call:NAME{key:value,...}` with bare keys, strings
 * wrapped in the <|"|> token, bare numbers / true / false / null, nested {…} and […].
 * Models also produce, and this scanner repairs (setting *repaired), spec §7.13:
 *   - a string whose opening <|"|> is missing (`city:Tokyo<|"|>`) or both (`city:Tokyo`);
 *   - `key=value` instead of `key:value`;
 *   - JSON-quoted keys or values (`"city":"Tokyo"`, with JSON escapes) and <|"|>-quoted keys;
 *   - `call:name(...)` instead of braces; `call:` missing; no braces at all (`call:ping`);
 *   - <|"|> inside a value (kept as a literal quote when it cannot be the closing delimiter);
 *   - interior `"` / `"""` inside <|"|> strings (kept verbatim, never a terminator);
 *   - Python True / False / None; trailing commas; a missing closing brace at the very end.
 * Anything else is LG_ERR_FORMAT with the byte offset. Numbers are copied as written (so 3.0
 * stays 3.0), normalised only where JSON requires it (+1 -> 1, .5 -> 0.5, 5. -> 5.0).
 * Recursion is bounded (LG_TC_MAX_DEPTH) so hostile input cannot exhaust the stack.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/chat.h"
#include "json/json.h"

enum { LG_TC_MAX_DEPTH = 64 };

static const char DQ[] = "<|\"|>"; /* 5 bytes */
#define DQ_LEN 5

struct cp {
    const char *s;
    size_t n, i;
    struct lg_chat_buf out;
    bool repaired;
    const char *msg; /* first error */
    size_t err_at;
};

static bool cp_fail(struct cp *c, const char *msg)
{
    if (!c->msg) {
        c->msg = msg;
        c->err_at = c->i;
    }
    return false;
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static void skip_ws(struct cp *c)
{
    while (c->i < c->n && is_ws(c->s[c->i]))
        c->i++;
}

static bool at_lit(const struct cp *c, size_t pos, const char *lit, size_t len)
{
    return pos <= c->n && c->n - pos >= len && memcmp(c->s + pos, lit, len) == 0;
}

static bool at_dq(const struct cp *c, size_t pos)
{
    return at_lit(c, pos, DQ, DQ_LEN);
}

/* Position of the next <|"|> at or after pos, or n. */
static size_t find_dq(const struct cp *c, size_t pos)
{
    for (size_t k = pos; k + DQ_LEN <= c->n; k++)
        if (c->s[k] == '<' && at_dq(c, k))
            return k;
    return c->n;
}

/* Appends s[0..len) as JSON string content (no quotes); invalid UTF-8 becomes U+FFFD. */
void lg_chat_json_escape(struct lg_chat_buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned ch = u[i];
        if (ch < 0x80) {
            char e[8];
            switch (ch) {
            case '"': lg_chat_buf_put(b, "\\\"", 2); break;
            case '\\': lg_chat_buf_put(b, "\\\\", 2); break;
            case '\n': lg_chat_buf_put(b, "\\n", 2); break;
            case '\r': lg_chat_buf_put(b, "\\r", 2); break;
            case '\t': lg_chat_buf_put(b, "\\t", 2); break;
            case '\b': lg_chat_buf_put(b, "\\b", 2); break;
            case '\f': lg_chat_buf_put(b, "\\f", 2); break;
            default:
                if (ch < 0x20) {
                    snprintf(e, sizeof e, "\\u%04x", ch);
                    lg_chat_buf_puts(b, e);
                } else {
                    lg_chat_buf_put(b, s + i, 1);
                }
            }
            i++;
            continue;
        }
        size_t l = (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 0;
        bool ok = l > 0 && l <= len - i;
        uint32_t cp = l == 2 ? (ch & 0x1f) : l == 3 ? (ch & 0x0f) : (ch & 0x07);
        for (size_t k = 1; ok && k < l; k++) {
            ok = (u[i + k] & 0xc0) == 0x80;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        /* reject overlong forms, surrogates and out-of-range values */
        if (ok)
            ok = (l == 2 && cp >= 0x80) || (l == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
                 (l == 4 && cp >= 0x10000 && cp <= 0x10ffff);
        if (ok) {
            lg_chat_buf_put(b, s + i, l);
            i += l;
        } else {
            lg_chat_buf_puts(b, "\xef\xbf\xbd");
            i++;
        }
    }
}

static void emit_str(struct cp *c, const char *s, size_t len)
{
    lg_chat_buf_put(&c->out, "\"", 1);
    lg_chat_json_escape(&c->out, s, len);
    lg_chat_buf_put(&c->out, "\"", 1);
}

/* Emits s[a..b) as a string with every interior <|"|> turned into a plain quote. */
static void emit_str_undq(struct cp *c, size_t a, size_t b)
{
    lg_chat_buf_put(&c->out, "\"", 1);
    while (a < b) {
        size_t d = find_dq(c, a);
        if (d > b)
            d = b;
        lg_chat_json_escape(&c->out, c->s + a, d - a);
        if (d >= b)
            break;
        lg_chat_buf_put(&c->out, "\\\"", 2);
        c->repaired = true;
        a = d + DQ_LEN;
    }
    lg_chat_buf_put(&c->out, "\"", 1);
}

static bool is_close(char ch)
{
    return ch == '}' || ch == ']' || ch == ')';
}

/* Does the text at pos look like the start of a `key:` entry (bare, "quoted" or <|"|>quoted)? */
static bool looks_like_key(const struct cp *c, size_t pos)
{
    while (pos < c->n && is_ws(c->s[pos]))
        pos++;
    if (at_dq(c, pos)) {
        size_t e = find_dq(c, pos + DQ_LEN);
        if (e >= c->n)
            return false;
        pos = e + DQ_LEN;
    } else if (pos < c->n && c->s[pos] == '"') {
        size_t e = pos + 1;
        while (e < c->n && c->s[e] != '"')
            e += c->s[e] == '\\' ? 2 : 1;
        if (e >= c->n)
            return false;
        pos = e + 1;
    } else {
        size_t start = pos;
        while (pos < c->n && pos - start < 128) {
            char ch = c->s[pos];
            if (ch == ':' || ch == '=')
                break;
            if (ch == ',' || ch == '{' || ch == '[' || is_close(ch) || ch == '\n' || ch == '"' ||
                at_dq(c, pos))
                return false;
            pos++;
        }
        if (pos == start)
            return false;
    }
    while (pos < c->n && is_ws(c->s[pos]))
        pos++;
    return pos < c->n && (c->s[pos] == ':' || c->s[pos] == '=');
}

/* Can a string that ends at pos (just past its closing delimiter) really end there? */
static bool can_end_at(const struct cp *c, size_t pos, bool in_dict)
{
    while (pos < c->n && is_ws(c->s[pos]))
        pos++;
    if (pos >= c->n)
        return true;
    char ch = c->s[pos];
    if (is_close(ch) || ch == ':' || ch == '=')
        return true;
    if (ch == ',') {
        if (!in_dict)
            return true;
        size_t k = pos + 1; /* a trailing comma before the closing brace also ends a value */
        while (k < c->n && is_ws(c->s[k]))
            k++;
        return k >= c->n || is_close(c->s[k]) || looks_like_key(c, pos + 1);
    }
    return false;
}

static bool parse_value(struct cp *c, bool in_dict, int depth);

/* <|"|>-delimited string at c->i. */
static bool parse_dq_string(struct cp *c, bool in_dict)
{
    size_t start = c->i + DQ_LEN, k = start;
    for (;;) {
        size_t d = find_dq(c, k);
        if (d >= c->n)
            return cp_fail(c, "unterminated <|\"|> string");
        if (can_end_at(c, d + DQ_LEN, in_dict)) {
            emit_str_undq(c, start, d);
            c->i = d + DQ_LEN;
            return true;
        }
        k = d + DQ_LEN;
    }
}

/* "JSON-quoted" string at c->i (a malformation): decodes escapes; an unescaped interior quote
 * that cannot end the string is kept. */
static bool parse_json_string(struct cp *c, bool in_dict, struct lg_chat_buf *raw)
{
    c->repaired = true;
    size_t k = c->i + 1;
    struct lg_chat_buf t = {0};
    while (k < c->n) {
        char ch = c->s[k];
        if (ch == '"' && can_end_at(c, k + 1, in_dict)) {
            if (raw)
                lg_chat_buf_put(raw, t.ptr ? t.ptr : "", t.len);
            else
                emit_str(c, t.ptr ? t.ptr : "", t.len);
            lg_chat_buf_free(&t);
            c->i = k + 1;
            return true;
        }
        if (ch == '\\' && k + 1 < c->n) {
            char e = c->s[k + 1];
            const char *rep = NULL;
            switch (e) {
            case 'n': rep = "\n"; break;
            case 't': rep = "\t"; break;
            case 'r': rep = "\r"; break;
            case 'b': rep = "\b"; break;
            case 'f': rep = "\f"; break;
            case '/': rep = "/"; break;
            case '\\': rep = "\\"; break;
            case '"': rep = "\""; break;
            default: break;
            }
            if (rep) {
                lg_chat_buf_put(&t, rep, 1);
                k += 2;
                continue;
            }
            if (e == 'u' && k + 6 <= c->n) {
                char hex[5] = {0};
                memcpy(hex, c->s + k + 2, 4);
                char *end;
                unsigned long v = strtoul(hex, &end, 16);
                if (end == hex + 4 && (v < 0xd800 || v > 0xdfff)) {
                    char u8[4];
                    size_t l;
                    if (v < 0x80) {
                        u8[0] = (char)v;
                        l = 1;
                    } else if (v < 0x800) {
                        u8[0] = (char)(0xc0 | (v >> 6));
                        u8[1] = (char)(0x80 | (v & 0x3f));
                        l = 2;
                    } else {
                        u8[0] = (char)(0xe0 | (v >> 12));
                        u8[1] = (char)(0x80 | ((v >> 6) & 0x3f));
                        u8[2] = (char)(0x80 | (v & 0x3f));
                        l = 3;
                    }
                    lg_chat_buf_put(&t, u8, l);
                    k += 6;
                    continue;
                }
            }
        }
        lg_chat_buf_put(&t, &ch, 1);
        k++;
    }
    lg_chat_buf_free(&t);
    return cp_fail(c, "unterminated \"string\"");
}

/* A number at c->i, copied as JSON. Returns false (without error) if there is none, or if it
 * is not followed by a value delimiter (then the caller reads a bare string instead). */
static bool try_number(struct cp *c, bool in_dict)
{
    size_t k = c->i;
    const char *s = c->s;
    bool neg = false;
    if (k < c->n && (s[k] == '-' || s[k] == '+')) {
        neg = s[k] == '-';
        k++;
    }
    size_t int_start = k;
    while (k < c->n && s[k] >= '0' && s[k] <= '9')
        k++;
    size_t int_len = k - int_start;
    size_t frac_start = 0, frac_len = 0;
    bool has_dot = false;
    if (k < c->n && s[k] == '.') {
        has_dot = true;
        k++;
        frac_start = k;
        while (k < c->n && s[k] >= '0' && s[k] <= '9')
            k++;
        frac_len = k - frac_start;
    }
    if (int_len == 0 && frac_len == 0)
        return false;
    size_t exp_start = k, exp_len = 0;
    if (k < c->n && (s[k] == 'e' || s[k] == 'E')) {
        size_t e = k + 1;
        if (e < c->n && (s[e] == '+' || s[e] == '-'))
            e++;
        size_t ds = e;
        while (e < c->n && s[e] >= '0' && s[e] <= '9')
            e++;
        if (e > ds) {
            exp_len = e - exp_start;
            k = e;
        }
    }
    if (!can_end_at(c, k, in_dict) && !at_dq(c, k))
        return false;
    /* JSON forbids leading zeros: "007" is read as a bare string by the caller. */
    if (int_len > 1 && s[int_start] == '0')
        return false;
    { /* A number too large for a double (1e999) stays text: JSON readers would reject it. */
        struct lg_chat_buf t = {0};
        lg_chat_buf_put(&t, s + c->i, k - c->i);
        bool inf = t.ptr && isinf(strtod(t.ptr, NULL));
        if (t.oom)
            c->out.oom = true;
        lg_chat_buf_free(&t);
        if (inf)
            return false;
    }
    if (neg)
        lg_chat_buf_put(&c->out, "-", 1);
    if (int_len)
        lg_chat_buf_put(&c->out, s + int_start, int_len);
    else
        lg_chat_buf_put(&c->out, "0", 1);
    if (has_dot) {
        lg_chat_buf_put(&c->out, ".", 1);
        if (frac_len)
            lg_chat_buf_put(&c->out, s + frac_start, frac_len);
        else
            lg_chat_buf_put(&c->out, "0", 1);
    }
    if (exp_len)
        lg_chat_buf_put(&c->out, s + exp_start, exp_len);
    if (s[c->i] == '+' || int_len == 0 || (has_dot && frac_len == 0))
        c->repaired = true;
    c->i = k;
    if (at_dq(c, c->i)) { /* `5<|"|>`: a stray closing delimiter */
        c->i += DQ_LEN;
        c->repaired = true;
    }
    return true;
}

static bool try_word(struct cp *c, bool in_dict)
{
    static const struct {
        const char *word, *json;
        bool repair;
    } words[] = {{"true", "true", false},  {"false", "false", false}, {"null", "null", false},
                 {"True", "true", true},   {"False", "false", true}, {"None", "null", true}};
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t l = strlen(words[w].word);
        if (at_lit(c, c->i, words[w].word, l) && can_end_at(c, c->i + l, in_dict)) {
            lg_chat_buf_puts(&c->out, words[w].json);
            c->i += l;
            c->repaired = c->repaired || words[w].repair;
            return true;
        }
    }
    return false;
}

/* A bare (unquoted) string value: the opening delimiter was dropped. It ends at a <|"|> (the
 * surviving closing delimiter) unless a `,key:` comes first, or at `,` / a closing bracket. */
static bool parse_bare(struct cp *c, bool in_dict)
{
    c->repaired = true;
    size_t start = c->i, k = c->i;
    size_t d = find_dq(c, k);
    size_t r = k;
    int nest = 0;
    while (r < c->n) {
        char ch = c->s[r];
        if (ch == '{' || ch == '[' || ch == '(')
            nest++;
        else if (is_close(ch)) {
            if (nest == 0)
                break;
            nest--;
        } else if (ch == ',' && nest == 0) {
            if (!in_dict || looks_like_key(c, r + 1))
                break;
        }
        if (r == d)
            break;
        r++;
    }
    size_t end = r, next = r;
    if (d < c->n && d <= r) {
        end = d;
        next = d + DQ_LEN;
    }
    size_t a = start, b = end;
    while (a < b && is_ws(c->s[a]))
        a++;
    while (b > a && is_ws(c->s[b - 1]))
        b--;
    if (a == b)
        return cp_fail(c, "missing value");
    emit_str_undq(c, a, b);
    c->i = next;
    return true;
}

static bool parse_array(struct cp *c, int depth)
{
    c->i++; /* '[' */
    lg_chat_buf_put(&c->out, "[", 1);
    bool first = true;
    for (;;) {
        skip_ws(c);
        if (c->i >= c->n) {
            c->repaired = true; /* unclosed at the very end */
            break;
        }
        if (c->s[c->i] == ']') {
            c->i++;
            break;
        }
        if (!first)
            lg_chat_buf_put(&c->out, ",", 1);
        first = false;
        if (!parse_value(c, false, depth + 1))
            return false;
        skip_ws(c);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            skip_ws(c);
            if (c->i < c->n && c->s[c->i] == ']')
                c->repaired = true; /* trailing comma */
            continue;
        }
        if (c->i < c->n && c->s[c->i] == ']') {
            c->i++;
            break;
        }
        if (c->i >= c->n) {
            c->repaired = true;
            break;
        }
        return cp_fail(c, "expected ',' or ']' in array");
    }
    lg_chat_buf_put(&c->out, "]", 1);
    return true;
}

/* A key at c->i (bare, "quoted" or <|"|>quoted), emitted as a JSON string. */
static bool parse_key(struct cp *c, char close)
{
    if (at_dq(c, c->i)) {
        size_t e = find_dq(c, c->i + DQ_LEN);
        if (e >= c->n)
            return cp_fail(c, "unterminated <|\"|> key");
        emit_str(c, c->s + c->i + DQ_LEN, e - c->i - DQ_LEN);
        c->i = e + DQ_LEN;
        c->repaired = true;
        return true;
    }
    if (c->s[c->i] == '"') {
        struct lg_chat_buf raw = {0};
        size_t save = c->i;
        /* parse as a value-position string, but a key must be followed by ':' or '=' */
        bool ok = parse_json_string(c, true, &raw);
        if (ok)
            emit_str(c, raw.ptr ? raw.ptr : "", raw.len);
        lg_chat_buf_free(&raw);
        if (!ok)
            c->i = save;
        return ok;
    }
    size_t a = c->i;
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch == ':' || ch == '=' || ch == close || ch == ',' || ch == '{' || ch == '[' ||
            at_dq(c, c->i))
            break;
        c->i++;
    }
    size_t b = c->i;
    while (b > a && is_ws(c->s[b - 1]))
        b--;
    if (b == a)
        return cp_fail(c, "empty key");
    emit_str(c, c->s + a, b - a);
    return true;
}

static bool parse_dict(struct cp *c, int depth)
{
    char close = c->s[c->i] == '(' ? ')' : '}';
    if (close == ')')
        c->repaired = true;
    c->i++;
    lg_chat_buf_put(&c->out, "{", 1);
    bool first = true;
    for (;;) {
        skip_ws(c);
        if (c->i >= c->n) {
            c->repaired = true; /* missing closing brace at the very end */
            break;
        }
        if (c->s[c->i] == close) {
            c->i++;
            break;
        }
        if (!first)
            lg_chat_buf_put(&c->out, ",", 1);
        first = false;
        if (!parse_key(c, close))
            return false;
        skip_ws(c);
        if (c->i < c->n && c->s[c->i] == ':') {
            c->i++;
        } else if (c->i < c->n && c->s[c->i] == '=') {
            c->i++;
            c->repaired = true;
        } else {
            return cp_fail(c, "expected ':' after key");
        }
        lg_chat_buf_put(&c->out, ":", 1);
        if (!parse_value(c, true, depth + 1))
            return false;
        skip_ws(c);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            skip_ws(c);
            if (c->i < c->n && c->s[c->i] == close)
                c->repaired = true; /* trailing comma */
            continue;
        }
        if (c->i < c->n && c->s[c->i] == close) {
            c->i++;
            break;
        }
        if (c->i >= c->n) {
            c->repaired = true;
            break;
        }
        return cp_fail(c, close == '}' ? "expected ',' or '}' after value"
                                       : "expected ',' or ')' after value");
    }
    lg_chat_buf_put(&c->out, "}", 1);
    return true;
}

static bool parse_value(struct cp *c, bool in_dict, int depth)
{
    if (depth > LG_TC_MAX_DEPTH)
        return cp_fail(c, "arguments nested too deeply");
    skip_ws(c);
    if (c->i >= c->n)
        return cp_fail(c, "missing value");
    char ch = c->s[c->i];
    if (at_dq(c, c->i))
        return parse_dq_string(c, in_dict);
    if (ch == '"')
        return parse_json_string(c, in_dict, NULL);
    if (ch == '{')
        return parse_dict(c, depth);
    if (ch == '[')
        return parse_array(c, depth);
    if (ch == ',' || is_close(ch))
        return cp_fail(c, "missing value");
    if (try_number(c, in_dict) || try_word(c, in_dict))
        return true;
    return parse_bare(c, in_dict);
}

enum lg_status lg_chat_parse_call(const char *body, size_t len, char **name, char **args_json,
                                  bool *repaired, struct lg_err *err)
{
    *name = NULL;
    *args_json = NULL;
    *repaired = false;
    struct cp c = {.s = body, .n = len};
    skip_ws(&c);
    if (at_lit(&c, c.i, "call:", 5))
        c.i += 5;
    else
        c.repaired = true;
    skip_ws(&c);
    size_t a = c.i;
    while (c.i < c.n) { /* OpenAI names are [A-Za-z0-9_-]; MCP-style names add . : / */
        char ch = c.s[c.i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.' || ch == ':' || ch == '/'))
            break;
        c.i++;
    }
    size_t b = c.i;
    if (b == a)
        return lg_err_set(err, LG_ERR_FORMAT, "tool call: missing function name at byte %zu", a);
    skip_ws(&c);
    bool ok;
    if (c.i < c.n && (c.s[c.i] == '{' || c.s[c.i] == '(')) {
        ok = parse_dict(&c, 0);
    } else if (c.i >= c.n) {
        lg_chat_buf_puts(&c.out, "{}"); /* `call:ping` */
        c.repaired = true;
        ok = true;
    } else {
        ok = cp_fail(&c, "expected '{' after the function name");
    }
    if (ok) {
        skip_ws(&c);
        if (c.i < c.n)
            c.repaired = true; /* trailing text after the arguments is dropped */
    }
    if (!ok || c.out.oom) {
        enum lg_status st = c.out.oom && ok
                                ? lg_err_set(err, LG_ERR_NOMEM, "out of memory")
                                : lg_err_set(err, LG_ERR_FORMAT, "tool call %.*s: %s at byte %zu",
                                             (int)(b - a > 64 ? 64 : b - a), body + a, c.msg,
                                             c.err_at);
        lg_chat_buf_free(&c.out);
        return st;
    }
    /* Sanity: what we built must be a JSON object. */
    json_error_t je;
    bool oom;
    json_t *check = lg_json_loadb(c.out.ptr, c.out.len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                                  &je, &oom);
    if (!check && oom) {
        lg_chat_buf_free(&c.out);
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    }
    if (!json_is_object(check)) {
        json_decref(check);
        lg_chat_buf_free(&c.out);
        return lg_err_set(err, LG_ERR_INTERNAL, "tool call: built invalid JSON (%s)", je.text);
    }
    json_decref(check);
    char *nm = malloc(b - a + 1);
    if (!nm) {
        lg_chat_buf_free(&c.out);
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    }
    memcpy(nm, body + a, b - a);
    nm[b - a] = 0;
    *name = nm;
    *args_json = c.out.ptr;
    *repaired = c.repaired;
    return LG_OK;
}
