/* pyval.c: the Python / Jinja value semantics the chat templates depend on, over jansson.
 *
 * The official templates are rendered by Python jinja2, so what ends up in a prompt is Python's
 * str() of JSON values: floats in shortest round-trip repr ("3.0", "1e-05", "1e+16"), True /
 * False / None inside containers, repr() quoting of strings inside lists, str.strip() and
 * str.upper() with Unicode whitespace and case, and dictsort's case-insensitive stable key order.
 * Byte-identical prompts need each of these exactly; tests/golden/chat checks them.
 *
 * Known approximations (documented, not hit by realistic inputs): case mapping covers ASCII,
 * Latin-1, Greek and Cyrillic only; str.isprintable() (used by repr) knows the control, format,
 * separator, surrogate and private-use ranges but not unassigned code points.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"

/* ---- buffer ------------------------------------------------------------------------------ */

void lg_chat_buf_put(struct lg_chat_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n > (size_t)-1 - b->len - 1) {
        b->oom = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap = cap > (size_t)-1 / 2 ? b->len + n + 1 : cap * 2;
        char *p = realloc(b->ptr, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->ptr = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->ptr + b->len, s, n);
    b->len += n;
    b->ptr[b->len] = 0;
}

void lg_chat_buf_puts(struct lg_chat_buf *b, const char *s)
{
    lg_chat_buf_put(b, s, strlen(s));
}

void lg_chat_buf_free(struct lg_chat_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Decodes one code point at s[0..n) (n >= 1); returns its length. Invalid bytes decode as
 * themselves with length 1 (jansson strings are valid UTF-8, this is only for safety). */
static size_t utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) {
        *cp = c;
        return 1;
    }
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = c;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

static void utf8_put(struct lg_chat_buf *b, uint32_t cp)
{
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xc0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xe0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        t[0] = (char)(0xf0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    lg_chat_buf_put(b, t, n);
}

/* Python str.isspace() for one code point. */
static bool py_isspace(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

void lg_py_strip(const char *s, size_t n, size_t *start, size_t *end)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_dec(u + i, n - i, &cp);
        if (!py_isspace(cp))
            break;
        i += l;
    }
    size_t j = n;
    while (j > i) {
        size_t k = j - 1; /* back up to the lead byte */
        while (k > i && (u[k] & 0xc0) == 0x80 && j - k < 4)
            k--;
        uint32_t cp;
        size_t l = utf8_dec(u + k, j - k, &cp);
        if (k + l != j) { /* not a whole character: treat the last byte alone */
            k = j - 1;
            cp = u[k];
        }
        if (!py_isspace(cp))
            break;
        j = k;
    }
    *start = i;
    *end = j;
}

/* Simple case mapping (str.upper / str.lower) for ASCII, Latin-1, Greek and Cyrillic. */
static uint32_t cp_upper(uint32_t c)
{
    if (c >= 'a' && c <= 'z')
        return c - 32;
    if (c < 0x80)
        return c;
    if (c == 0xb5)
        return 0x39c;
    if ((c >= 0xe0 && c <= 0xfe && c != 0xf7))
        return c - 32;
    if (c == 0xff)
        return 0x178;
    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2)
        return c - 32;
    if (c == 0x3c2)
        return 0x3a3;
    if (c >= 0x430 && c <= 0x44f)
        return c - 32;
    if (c >= 0x450 && c <= 0x45f)
        return c - 80;
    return c;
}

static uint32_t cp_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c + 32;
    if (c < 0x80)
        return c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    if (c == 0x178)
        return 0xff;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    return c;
}

void lg_py_upper(struct lg_chat_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_dec(u + i, n - i, &cp);
        if (cp == 0xdf) /* ß -> SS */
            lg_chat_buf_put(b, "SS", 2);
        else if (l == 1 && cp >= 0x80) /* stray byte: copy as is */
            lg_chat_buf_put(b, s + i, 1);
        else
            utf8_put(b, cp_upper(cp));
        i += l;
    }
}

/* ---- truthiness, str(), repr() ----------------------------------------------------------- */

bool lg_py_truthy(const json_t *v)
{
    if (!v)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0.0;
    case JSON_TRUE: return true;
    default: return false;
    }
}

void lg_py_repr_float(struct lg_chat_buf *b, double d)
{
    if (isnan(d)) {
        lg_chat_buf_puts(b, "nan");
        return;
    }
    if (isinf(d)) {
        lg_chat_buf_puts(b, d < 0 ? "-inf" : "inf");
        return;
    }
    if (d == 0.0) {
        lg_chat_buf_puts(b, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    /* Shortest %.Ne that reads back exactly (glibc printf rounds correctly). */
    char t[40];
    for (int p = 0; p < 17; p++) {
        snprintf(t, sizeof t, "%.*e", p, d);
        if (strtod(t, NULL) == d)
            break;
    }
    const char *q = t;
    if (*q == '-') {
        lg_chat_buf_put(b, "-", 1);
        q++;
    }
    char digits[24];
    int nd = 0;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9' && nd < 23)
            digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int exp10 = *q == 'e' ? atoi(q + 1) : 0;
    int decpt = exp10 + 1; /* digits[0] sits just left of the decimal point when decpt == 1 */
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            lg_chat_buf_put(b, "0.", 2);
            for (int i = 0; i < -decpt; i++)
                lg_chat_buf_put(b, "0", 1);
            lg_chat_buf_put(b, digits, (size_t)nd);
        } else if (decpt >= nd) {
            lg_chat_buf_put(b, digits, (size_t)nd);
            for (int i = nd; i < decpt; i++)
                lg_chat_buf_put(b, "0", 1);
            lg_chat_buf_put(b, ".0", 2);
        } else {
            lg_chat_buf_put(b, digits, (size_t)decpt);
            lg_chat_buf_put(b, ".", 1);
            lg_chat_buf_put(b, digits + decpt, (size_t)(nd - decpt));
        }
    } else {
        lg_chat_buf_put(b, digits, 1);
        if (nd > 1) {
            lg_chat_buf_put(b, ".", 1);
            lg_chat_buf_put(b, digits + 1, (size_t)(nd - 1));
        }
        char e[16];
        snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        lg_chat_buf_puts(b, e);
    }
}

/* Python str.isprintable() for one code point (see the file comment for the approximation). */
static bool py_isprintable(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad)
        return false;
    if (c < 0x600)
        return true;
    if ((c >= 0x600 && c <= 0x605) || c == 0x61c || c == 0x6dd || c == 0x70f || c == 0x8e2 ||
        c == 0x1680 || c == 0x180e || (c >= 0x2000 && c <= 0x200f) ||
        (c >= 0x2028 && c <= 0x202f) || (c >= 0x205f && c <= 0x2064) ||
        (c >= 0x2066 && c <= 0x206f) || c == 0x3000 || (c >= 0xd800 && c <= 0xf8ff) ||
        c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb) || c == 0xfffe || c == 0xffff ||
        c == 0x110bd || c == 0x110cd || (c >= 0x1bca0 && c <= 0x1bca3) ||
        (c >= 0x1d173 && c <= 0x1d17a) || c == 0xe0001 || (c >= 0xe0020 && c <= 0xe007f) ||
        c >= 0xf0000)
        return false;
    return true;
}

static void py_repr_str(struct lg_chat_buf *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char quote = (has_sq && !has_dq) ? '"' : '\'';
    lg_chat_buf_put(b, &quote, 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_dec(u + i, n - i, &cp);
        char e[16];
        if (cp == (uint32_t)quote || cp == '\\') {
            e[0] = '\\';
            e[1] = (char)cp;
            lg_chat_buf_put(b, e, 2);
        } else if (cp == '\t') {
            lg_chat_buf_put(b, "\\t", 2);
        } else if (cp == '\n') {
            lg_chat_buf_put(b, "\\n", 2);
        } else if (cp == '\r') {
            lg_chat_buf_put(b, "\\r", 2);
        } else if (!py_isprintable(cp)) {
            if (cp < 0x100)
                snprintf(e, sizeof e, "\\x%02x", (unsigned)cp);
            else if (cp < 0x10000)
                snprintf(e, sizeof e, "\\u%04x", (unsigned)cp);
            else
                snprintf(e, sizeof e, "\\U%08x", (unsigned)cp);
            lg_chat_buf_puts(b, e);
        } else {
            lg_chat_buf_put(b, s + i, l);
        }
        i += l;
    }
    lg_chat_buf_put(b, &quote, 1);
}

static void py_repr(struct lg_chat_buf *b, const json_t *v, int depth);

static void py_str_depth(struct lg_chat_buf *b, const json_t *v, int depth)
{
    if (!v)
        return;
    char t[32];
    switch (json_typeof(v)) {
    case JSON_STRING: lg_chat_buf_put(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(t, sizeof t, "%lld", (long long)json_integer_value(v));
        lg_chat_buf_puts(b, t);
        break;
    case JSON_REAL: lg_py_repr_float(b, json_real_value(v)); break;
    case JSON_TRUE: lg_chat_buf_puts(b, "True"); break;
    case JSON_FALSE: lg_chat_buf_puts(b, "False"); break;
    case JSON_NULL: lg_chat_buf_puts(b, "None"); break;
    case JSON_ARRAY: {
        if (depth > 200) { /* deeper than Python's own repr recursion would go: stop */
            lg_chat_buf_puts(b, "[...]");
            break;
        }
        lg_chat_buf_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                lg_chat_buf_put(b, ", ", 2);
            py_repr(b, json_array_get(v, i), depth + 1);
        }
        lg_chat_buf_put(b, "]", 1);
        break;
    }
    case JSON_OBJECT: {
        if (depth > 200) {
            lg_chat_buf_puts(b, "{...}");
            break;
        }
        lg_chat_buf_put(b, "{", 1);
        const char *k;
        json_t *e;
        bool first = true;
        json_object_foreach((json_t *)v, k, e) {
            if (!first)
                lg_chat_buf_put(b, ", ", 2);
            first = false;
            py_repr_str(b, k, strlen(k));
            lg_chat_buf_put(b, ": ", 2);
            py_repr(b, e, depth + 1);
        }
        lg_chat_buf_put(b, "}", 1);
        break;
    }
    }
}

static void py_repr(struct lg_chat_buf *b, const json_t *v, int depth)
{
    if (v && json_is_string(v))
        py_repr_str(b, json_string_value(v), json_string_length(v));
    else
        py_str_depth(b, v, depth);
}

void lg_py_str(struct lg_chat_buf *b, const json_t *v)
{
    py_str_depth(b, v, 0);
}

/* ---- dictsort ------------------------------------------------------------------------------ */

struct sort_key {
    const char *key;
    char *lower; /* NUL-terminated lower-cased key (malloc'd) */
    size_t idx;
};

static int sort_key_cmp(const void *a, const void *b)
{
    const struct sort_key *x = a, *y = b;
    int c = strcmp(x->lower, y->lower); /* UTF-8 byte order == code point order */
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

const char **lg_py_dictsort(const json_t *obj, size_t *n, bool *oom)
{
    *n = 0;
    size_t cnt = json_object_size(obj);
    if (cnt == 0)
        return NULL;
    struct sort_key *keys = calloc(cnt, sizeof *keys);
    const char **out = malloc(cnt * sizeof *out);
    bool fail = !keys || !out;
    size_t i = 0;
    const char *k;
    json_t *v;
    if (!fail) {
        json_object_foreach((json_t *)obj, k, v) {
            if (i >= cnt)
                break;
            struct lg_chat_buf lb = {0};
            size_t kl = strlen(k);
            const unsigned char *u = (const unsigned char *)k;
            for (size_t j = 0; j < kl;) {
                uint32_t cp;
                size_t l = utf8_dec(u + j, kl - j, &cp);
                if (l == 1 && cp >= 0x80)
                    lg_chat_buf_put(&lb, k + j, 1);
                else
                    utf8_put(&lb, cp_lower(cp));
                j += l;
            }
            lg_chat_buf_put(&lb, "", 0);
            if (lb.oom) {
                lg_chat_buf_free(&lb);
                fail = true;
                break;
            }
            keys[i].key = k;
            keys[i].lower = lb.ptr;
            keys[i].idx = i;
            i++;
        }
    }
    if (!fail) {
        qsort(keys, i, sizeof *keys, sort_key_cmp);
        for (size_t j = 0; j < i; j++)
            out[j] = keys[j].key;
        *n = i;
    }
    for (size_t j = 0; keys && j < i; j++)
        free(keys[j].lower);
    free(keys);
    if (fail) {
        free(out);
        *oom = true;
        return NULL;
    }
    return out;
}
