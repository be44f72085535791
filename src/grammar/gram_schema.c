/* gram_schema.c: JSON Schema -> grammar, in two surface syntaxes: JSON, and the Gemma 4
 * tool-call syntax (bare keys, <|"|>strings<|"|>, no whitespace).
 *
 * Each schema location compiled as a rule is memoised by its json_t pointer, so `$ref` targets
 * are compiled once and recursion is just a call. Error messages name the keyword and the JSON
 * pointer of the schema location (for `$ref` targets, the reference). The generation policy
 * (whitespace, property order, number shapes) is documented in grammar.h. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "grammar/gram_priv.h"

enum surface { SURF_JSON = 0, SURF_GEMMA = 1 };

enum { WS_MAX_INDENT = 24, INT_DIGITS = 16, FRAC_DIGITS = 6, EXTRA_KEY_MAX = 64 };

static const double INT_CLAMP = 1e15;

struct memo {
    const json_t *sch;
    int32_t start;
};

struct comp {
    struct lg_gbuild b;
    const json_t *root;
    enum surface surf;
    struct memo *memo;
    size_t n_memo, cap_memo;
    int32_t r_ws, r_char, r_any, r_number, r_integer, r_string;
    char path[512];
    size_t path_len;
    int depth;
};

#define B (&c->b)

/* ---- pointer path for messages ---- */

static size_t path_push(struct comp *c, const char *seg)
{
    size_t mark = c->path_len;
    if (c->path_len + 2 < sizeof c->path)
        c->path[c->path_len++] = '/';
    for (const char *p = seg; *p && c->path_len + 3 < sizeof c->path; p++) {
        if (*p == '~' || *p == '/') {
            c->path[c->path_len++] = '~';
            c->path[c->path_len++] = *p == '~' ? '0' : '1';
        } else {
            c->path[c->path_len++] = *p;
        }
    }
    c->path[c->path_len] = 0;
    return mark;
}

static size_t path_push_index(struct comp *c, size_t i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", i);
    return path_push(c, buf);
}

static void path_pop(struct comp *c, size_t mark)
{
    c->path_len = mark;
    c->path[mark] = 0;
}

static const char *where(const struct comp *c)
{
    return c->path_len ? c->path : "/";
}

static int32_t fail_kw(struct comp *c, enum lg_status code, const char *kw, const char *what)
{
    return lg_gb_fail(B, code, "schema at %s%s%s: %s", where(c), kw[0] ? "/" : "", kw, what);
}

/* ---- small pieces ---- */

static int32_t alt_end(struct comp *c)
{
    return lg_gb_node(B);
}

static int32_t seq_lit(struct comp *c, int32_t from, const char *s)
{
    return lg_gb_lit(B, from, s, strlen(s));
}

/* Optional bounded whitespace (JSON surface only). */
static int32_t ws(struct comp *c, int32_t from)
{
    if (c->surf != SURF_JSON || from < 0)
        return from;
    if (c->r_ws < 0) {
        int32_t end, s = lg_gb_rule(B, &end);
        c->r_ws = s;
        lg_gb_eps(B, s, end);
        lg_gb_bytes(B, s, ' ', ' ', end);
        int32_t n = lg_gb_range(B, s, '\n', '\n');
        for (int i = 0; i < WS_MAX_INDENT && n >= 0; i++) {
            lg_gb_eps(B, n, end);
            n = lg_gb_range(B, n, ' ', ' ');
        }
        lg_gb_eps(B, n, end);
    }
    return lg_gb_step_call(B, from, c->r_ws);
}

static void hex_digit(struct comp *c, int32_t from, int32_t to)
{
    lg_gb_bytes(B, from, '0', '9', to);
    lg_gb_bytes(B, from, 'A', 'F', to);
    lg_gb_bytes(B, from, 'a', 'f', to);
}

/* Multi-byte UTF-8 sequences (well-formed only: no overlongs, surrogates or > U+10FFFF). */
static void utf8_multi(struct comp *c, int32_t from, int32_t to)
{
    int32_t t1 = lg_gb_node(B), t2 = lg_gb_node(B), t3 = lg_gb_node(B);
    int32_t a = lg_gb_node(B), bb = lg_gb_node(B), x = lg_gb_node(B), d = lg_gb_node(B);
    lg_gb_bytes(B, t1, 0x80, 0xBF, to);
    lg_gb_bytes(B, t2, 0x80, 0xBF, t1);
    lg_gb_bytes(B, t3, 0x80, 0xBF, t2);
    lg_gb_bytes(B, from, 0xC2, 0xDF, t1);
    lg_gb_bytes(B, from, 0xE0, 0xE0, a);
    lg_gb_bytes(B, a, 0xA0, 0xBF, t1);
    lg_gb_bytes(B, from, 0xE1, 0xEC, t2);
    lg_gb_bytes(B, from, 0xED, 0xED, bb);
    lg_gb_bytes(B, bb, 0x80, 0x9F, t1);
    lg_gb_bytes(B, from, 0xEE, 0xEF, t2);
    lg_gb_bytes(B, from, 0xF0, 0xF0, x);
    lg_gb_bytes(B, x, 0x90, 0xBF, t2);
    lg_gb_bytes(B, from, 0xF1, 0xF3, t3);
    lg_gb_bytes(B, from, 0xF4, 0xF4, d);
    lg_gb_bytes(B, d, 0x80, 0x8F, t2);
}

/* One string character from `from` to `to`, in the current surface. JSON: unescaped
 * printable characters or an escape (\uXXXX neither a surrogate nor \u0000). Gemma: raw UTF-8
 * without control characters other than \t \n, and without '<' (so the <|"|> delimiter, and
 * any other <|...> marker, can never appear inside a value). */
static void char_inline(struct comp *c, int32_t from, int32_t to)
{
    if (from >= 0 && c->b.st == LG_OK)
        c->b.ret[from] |= LG_GB_PLAIN_CHAR; /* masks take a shortcut here (gram_mask.c) */
    if (c->surf == SURF_JSON) {
        lg_gb_bytes(B, from, 0x20, 0x21, to);
        lg_gb_bytes(B, from, 0x23, 0x5B, to);
        lg_gb_bytes(B, from, 0x5D, 0x7F, to);
        int32_t e = lg_gb_range(B, from, '\\', '\\');
        static const char esc[] = "\"\\/bfnrt";
        for (const char *p = esc; *p; p++)
            lg_gb_bytes(B, e, (uint8_t)*p, (uint8_t)*p, to);
        int32_t u1 = lg_gb_range(B, e, 'u', 'u');
        int32_t h3 = lg_gb_node(B), h2 = lg_gb_node(B), h1 = lg_gb_node(B);
        int32_t hd = lg_gb_node(B), z2 = lg_gb_node(B), z3 = lg_gb_node(B), z4 = lg_gb_node(B);
        lg_gb_bytes(B, u1, '1', '9', h3);
        lg_gb_bytes(B, u1, 'a', 'c', h3);
        lg_gb_bytes(B, u1, 'A', 'C', h3);
        lg_gb_bytes(B, u1, 'e', 'f', h3);
        lg_gb_bytes(B, u1, 'E', 'F', h3);
        lg_gb_bytes(B, u1, 'd', 'd', hd);
        lg_gb_bytes(B, u1, 'D', 'D', hd);
        lg_gb_bytes(B, hd, '0', '7', h2);
        hex_digit(c, h3, h2);
        hex_digit(c, h2, h1);
        hex_digit(c, h1, to);
        /* \u0XXX with XXX != 000 */
        lg_gb_bytes(B, u1, '0', '0', z2);
        lg_gb_bytes(B, z2, '1', '9', h2);
        lg_gb_bytes(B, z2, 'a', 'f', h2);
        lg_gb_bytes(B, z2, 'A', 'F', h2);
        lg_gb_bytes(B, z2, '0', '0', z3);
        lg_gb_bytes(B, z3, '1', '9', h1);
        lg_gb_bytes(B, z3, 'a', 'f', h1);
        lg_gb_bytes(B, z3, 'A', 'F', h1);
        lg_gb_bytes(B, z3, '0', '0', z4);
        lg_gb_bytes(B, z4, '1', '9', to);
        lg_gb_bytes(B, z4, 'a', 'f', to);
        lg_gb_bytes(B, z4, 'A', 'F', to);
    } else {
        lg_gb_bytes(B, from, '\t', '\n', to);
        lg_gb_bytes(B, from, 0x20, 0x3B, to);
        lg_gb_bytes(B, from, 0x3D, 0x7F, to);
    }
    utf8_multi(c, from, to);
}

static int32_t char_rule(struct comp *c)
{
    if (c->r_char < 0) {
        int32_t end, s = lg_gb_rule(B, &end);
        c->r_char = s;
        char_inline(c, s, end);
    }
    return c->r_char;
}

static const char *q_open(const struct comp *c)
{
    return c->surf == SURF_JSON ? "\"" : "<|\"|>";
}

/* String content of min..max characters (max < 0: unbounded). */
static int32_t str_content(struct comp *c, int32_t from, long min, long max)
{
    int32_t n = from;
    for (long i = 0; i < min && n >= 0; i++)
        n = lg_gb_step_call(B, n, char_rule(c));
    if (max < 0) {
        char_inline(c, n, n); /* inline loop: no call per character */
        if (c->surf == SURF_JSON && n >= 0 && c->b.st == LG_OK)
            c->b.ret[n] |= LG_GB_FREE_STR; /* masks take a shortcut here (gram_mask.c) */
        return n;
    }
    int32_t end = alt_end(c);
    for (long i = min; i < max && n >= 0; i++) {
        lg_gb_eps(B, n, end);
        n = lg_gb_step_call(B, n, char_rule(c));
    }
    lg_gb_eps(B, n, end);
    return end;
}

/* Exactly k digits in [lo, hi]. */
static int32_t digits(struct comp *c, int32_t from, int k, char lo, char hi)
{
    for (int i = 0; i < k && from >= 0; i++)
        from = lg_gb_range(B, from, (uint8_t)lo, (uint8_t)hi);
    return from;
}

/* Up to k digits [0-9] (0..k). */
static int32_t digits_upto(struct comp *c, int32_t from, int k)
{
    int32_t end = alt_end(c);
    for (int i = 0; i < k && from >= 0; i++) {
        lg_gb_eps(B, from, end);
        from = lg_gb_range(B, from, '0', '9');
    }
    lg_gb_eps(B, from, end);
    return end;
}

/* Decimal strings of exactly width w between lo and hi (digit strings, lo <= hi). */
static int32_t fixed_range(struct comp *c, int32_t from, const char *lo, const char *hi, int w)
{
    if (w == 0 || from < 0)
        return from;
    if (lo[0] == hi[0]) {
        int32_t n = lg_gb_range(B, from, (uint8_t)lo[0], (uint8_t)lo[0]);
        return fixed_range(c, n, lo + 1, hi + 1, w - 1);
    }
    char nines[24], zeros[24];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    bool lo_rest_zero = strncmp(lo + 1, zeros, (size_t)w - 1) == 0;
    bool hi_rest_nine = strncmp(hi + 1, nines, (size_t)w - 1) == 0;
    int32_t end = alt_end(c);
    char mid_lo = lo[0], mid_hi = hi[0];
    if (!lo_rest_zero) {
        int32_t n = lg_gb_range(B, from, (uint8_t)lo[0], (uint8_t)lo[0]);
        lg_gb_eps(B, fixed_range(c, n, lo + 1, nines, w - 1), end);
        mid_lo++;
    }
    if (!hi_rest_nine) {
        int32_t n = lg_gb_range(B, from, (uint8_t)hi[0], (uint8_t)hi[0]);
        lg_gb_eps(B, fixed_range(c, n, zeros, hi + 1, w - 1), end);
        mid_hi--;
    }
    if (mid_lo <= mid_hi) {
        int32_t n = lg_gb_range(B, from, (uint8_t)mid_lo, (uint8_t)mid_hi);
        lg_gb_eps(B, digits(c, n, w - 1, '0', '9'), end);
    }
    return end;
}

/* Decimal (no sign, no leading zeros) of integers in [lo, hi], 0 <= lo <= hi <= 1e16. */
static int32_t uint_range(struct comp *c, int32_t from, long long lo, long long hi)
{
    int32_t end = alt_end(c);
    long long p = 1;
    for (int w = 1; w <= 17 && lo <= hi; w++, p *= 10) {
        long long wlo = w == 1 ? 0 : p, whi = p * 10 - 1;
        long long a = lo > wlo ? lo : wlo, b = hi < whi ? hi : whi;
        if (a > b)
            continue;
        char sa[24], sb[24];
        snprintf(sa, sizeof sa, "%lld", a);
        snprintf(sb, sizeof sb, "%lld", b);
        lg_gb_eps(B, fixed_range(c, from, sa, sb, w), end);
    }
    return end;
}

/* Integers in [lo, hi] (signed). */
static int32_t int_range(struct comp *c, int32_t from, long long lo, long long hi)
{
    int32_t end = alt_end(c);
    if (hi >= 0 && lo <= hi)
        lg_gb_eps(B, uint_range(c, from, lo > 0 ? lo : 0, hi), end);
    if (lo < 0 && lo <= hi) {
        long long nhi = hi < -1 ? hi : -1;
        int32_t m = seq_lit(c, from, "-");
        lg_gb_eps(B, uint_range(c, m, -nhi, -lo), end);
    }
    return end;
}

static int32_t frac_nonzero(struct comp *c, int32_t from)
{
    /* "." digits ending in 1-9: the value is strictly inside (k, k+1). */
    int32_t n = seq_lit(c, from, ".");
    n = digits_upto(c, n, FRAC_DIGITS - 1);
    return lg_gb_range(B, n, '1', '9');
}

/* ---- keyword bookkeeping ---- */

static bool is_annotation(const char *k)
{
    static const char *const ann[] = {"title", "description", "default", "examples", "$comment",
                                      "$schema", "$id", "deprecated", "readOnly", "writeOnly",
                                      "$defs", "definitions", "nullable", "$anchor", NULL};
    for (int i = 0; ann[i]; i++)
        if (strcmp(k, ann[i]) == 0)
            return true;
    return strncmp(k, "x-", 2) == 0;
}

static bool is_known(const char *k)
{
    static const char *const kw[] = {
        "type", "properties", "required", "additionalProperties", "enum", "const", "items",
        "prefixItems", "minItems", "maxItems", "anyOf", "oneOf", "allOf", "$ref", "minLength",
        "maxLength", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "uniqueItems", NULL};
    for (int i = 0; kw[i]; i++)
        if (strcmp(k, kw[i]) == 0)
            return true;
    return is_annotation(k);
}

/* Reads a non-negative count keyword; -1 when absent. */
static long get_count(struct comp *c, const json_t *sch, const char *kw)
{
    const json_t *v = json_object_get(sch, kw);
    if (!v)
        return -1;
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d != floor(d)) {
        fail_kw(c, LG_ERR_INVALID_ARG, kw, "must be a non-negative integer");
        return -2;
    }
    if (d > LG_GRAMMAR_MAX_REPEAT) {
        lg_gb_fail(B, LG_ERR_RANGE, "schema keyword at %s/%s: %.0f exceeds the repetition limit %d",
                   where(c), kw, d, LG_GRAMMAR_MAX_REPEAT);
        return -2;
    }
    return (long)d;
}

static bool get_bound(struct comp *c, const json_t *sch, const char *kw, double *out)
{
    const json_t *v = json_object_get(sch, kw);
    if (!v)
        return false;
    if (json_is_boolean(v)) {
        fail_kw(c, LG_ERR_UNSUPPORTED, kw, "boolean form (draft 4) is not supported; use a number");
        return false;
    }
    if (!json_is_number(v)) {
        fail_kw(c, LG_ERR_INVALID_ARG, kw, "must be a number");
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static int32_t c_value(struct comp *c, const json_t *sch, int32_t from);
static int32_t rule_for(struct comp *c, const json_t *sch);

/* ---- literals (enum / const) ---- */

static void buf_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n, bool *bad)
{
    if (*bad)
        return;
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 64);
        while (nc < *len + n + 1)
            nc *= 2;
        char *p = realloc(*buf, nc);
        if (!p) {
            *bad = true;
            return;
        }
        *buf = p;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

static bool gemma_key_ok(const char *k)
{
    /* A bare key that starts like a number would be read as part of the previous value. */
    if (!k[0] || (k[0] >= '0' && k[0] <= '9') || strchr("-+.", k[0]))
        return false;
    for (const char *p = k; *p; p++)
        if (strchr(":{}[],<\"' \t\n\r=", *p))
            return false;
    return true;
}

static bool gemma_str_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '<' || (ch < 0x20 && ch != '\t' && ch != '\n'))
            return false;
    }
    return true;
}

static int cmp_key(const void *pa, const void *pb)
{
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    int r = strcasecmp(a, b);
    return r ? r : strcmp(a, b);
}

static void gemma_dump(const json_t *v, char **buf, size_t *len, size_t *cap, bool *bad)
{
    if (json_is_string(v)) {
        if (!gemma_str_ok(json_string_value(v), json_string_length(v))) {
            *bad = true;
            return;
        }
        buf_put(buf, len, cap, "<|\"|>", 5, bad);
        buf_put(buf, len, cap, json_string_value(v), json_string_length(v), bad);
        buf_put(buf, len, cap, "<|\"|>", 5, bad);
    } else if (json_is_object(v)) {
        size_t n = json_object_size(v), i = 0;
        const char **keys = malloc((n ? n : 1) * sizeof *keys);
        if (!keys) {
            *bad = true;
            return;
        }
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) keys[i++] = k;
        qsort(keys, n, sizeof *keys, cmp_key);
        buf_put(buf, len, cap, "{", 1, bad);
        for (i = 0; i < n; i++) {
            if (!gemma_key_ok(keys[i]))
                *bad = true;
            if (i)
                buf_put(buf, len, cap, ",", 1, bad);
            buf_put(buf, len, cap, keys[i], strlen(keys[i]), bad);
            buf_put(buf, len, cap, ":", 1, bad);
            gemma_dump(json_object_get(v, keys[i]), buf, len, cap, bad);
        }
        free(keys);
        buf_put(buf, len, cap, "}", 1, bad);
    } else if (json_is_array(v)) {
        buf_put(buf, len, cap, "[", 1, bad);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                buf_put(buf, len, cap, ",", 1, bad);
            gemma_dump(json_array_get(v, i), buf, len, cap, bad);
        }
        buf_put(buf, len, cap, "]", 1, bad);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s) {
            *bad = true;
            return;
        }
        buf_put(buf, len, cap, s, strlen(s), bad);
        free(s);
    }
}

static int32_t c_literals(struct comp *c, const json_t *sch, int32_t from)
{
    const json_t *en = json_object_get(sch, "enum");
    const json_t *cn = json_object_get(sch, "const");
    if (en && !json_is_array(en))
        return fail_kw(c, LG_ERR_INVALID_ARG, "enum", "must be an array");
    size_t n = en ? json_array_size(en) : 1;
    int32_t end = alt_end(c);
    size_t n_ok = 0;
    /* A value must also satisfy the rest of the schema (type, bounds, const...); checked
     * against a copy without the list itself, so a long enum costs O(n), not O(n^2). */
    json_t *rest = json_copy((json_t *)sch);
    if (!rest)
        return lg_gb_fail(B, LG_ERR_NOMEM, "out of memory");
    json_object_del(rest, en ? "enum" : "const");
    for (size_t i = 0; i < n && end >= 0 && c->b.st == LG_OK; i++) {
        const json_t *v = en ? json_array_get(en, i) : cn;
        if (!lg_gram_value_valid(c->root, rest, v))
            continue;
        char *s = NULL;
        size_t len = 0, cap = 0;
        bool bad = false;
        if (c->surf == SURF_JSON) {
            s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (s)
                len = strlen(s);
            else
                bad = true;
        } else {
            gemma_dump(v, &s, &len, &cap, &bad);
        }
        if (!bad) {
            lg_gb_eps(B, lg_gb_lit(B, from, s, len), end);
            n_ok++;
        }
        free(s);
    }
    json_decref(rest);
    if (end >= 0 && n_ok == 0)
        return fail_kw(c, LG_ERR_INVALID_ARG, en ? "enum" : "const",
                       "no value satisfies the schema (or can be written in this syntax)");
    return end;
}

/* ---- strings ---- */

static int32_t two_digits(struct comp *c, int32_t from, int lo, int hi)
{
    char a[4], b[4];
    snprintf(a, sizeof a, "%02d", lo);
    snprintf(b, sizeof b, "%02d", hi);
    return fixed_range(c, from, a, b, 2);
}

static int32_t f_date(struct comp *c, int32_t from)
{
    int32_t n = lg_gb_range(B, from, '1', '9');
    n = digits(c, n, 3, '0', '9');
    n = seq_lit(c, n, "-");
    int32_t end = alt_end(c);
    static const int m31[] = {1, 3, 5, 7, 8, 10, 12}, m30[] = {4, 6, 9, 11};
    for (size_t i = 0; i < 7; i++) {
        int32_t x = seq_lit(c, two_digits(c, n, m31[i], m31[i]), "-");
        lg_gb_eps(B, two_digits(c, x, 1, 31), end);
    }
    for (size_t i = 0; i < 4; i++) {
        int32_t x = seq_lit(c, two_digits(c, n, m30[i], m30[i]), "-");
        lg_gb_eps(B, two_digits(c, x, 1, 30), end);
    }
    int32_t x = seq_lit(c, n, "02-");
    lg_gb_eps(B, two_digits(c, x, 1, 28), end);
    return end;
}

static int32_t f_time(struct comp *c, int32_t from)
{
    int32_t n = two_digits(c, from, 0, 23);
    n = two_digits(c, seq_lit(c, n, ":"), 0, 59);
    n = two_digits(c, seq_lit(c, n, ":"), 0, 59);
    int32_t frac = lg_gb_node(B);
    lg_gb_eps(B, n, frac);
    int32_t f = digits(c, seq_lit(c, n, "."), 1, '0', '9');
    lg_gb_eps(B, digits_upto(c, f, FRAC_DIGITS - 1), frac);
    int32_t end = alt_end(c);
    lg_gb_eps(B, seq_lit(c, frac, "Z"), end);
    int32_t s = lg_gb_range(B, frac, '+', '+');
    lg_gb_bytes(B, frac, '-', '-', s);
    s = two_digits(c, s, 0, 23);
    lg_gb_eps(B, two_digits(c, seq_lit(c, s, ":"), 0, 59), end);
    return end;
}

static int32_t hexes(struct comp *c, int32_t from, int k)
{
    for (int i = 0; i < k && from >= 0; i++) {
        int32_t n = lg_gb_node(B);
        lg_gb_bytes(B, from, '0', '9', n);
        lg_gb_bytes(B, from, 'a', 'f', n);
        from = n;
    }
    return from;
}

static int32_t alnum_run(struct comp *c, int32_t from)
{
    int32_t n = lg_gb_node(B);
    lg_gb_bytes(B, from, 'a', 'z', n);
    lg_gb_bytes(B, from, '0', '9', n);
    lg_gb_bytes(B, n, 'a', 'z', n);
    lg_gb_bytes(B, n, '0', '9', n);
    return n;
}

static int32_t f_email(struct comp *c, int32_t from)
{
    int32_t l = alnum_run(c, from);
    int32_t sep = lg_gb_node(B);
    lg_gb_bytes(B, l, '.', '.', sep);
    lg_gb_bytes(B, l, '_', '_', sep);
    lg_gb_bytes(B, l, '+', '+', sep);
    lg_gb_bytes(B, l, '-', '-', sep);
    lg_gb_bytes(B, sep, 'a', 'z', l);
    lg_gb_bytes(B, sep, '0', '9', l);
    int32_t d = alnum_run(c, seq_lit(c, l, "@"));
    int32_t dot = seq_lit(c, d, ".");
    int32_t tld = alnum_run(c, dot);
    lg_gb_bytes(B, tld, '.', '.', dot);
    return tld;
}

static int32_t c_string(struct comp *c, const json_t *sch, int32_t from)
{
    long min = get_count(c, sch, "minLength"), max = get_count(c, sch, "maxLength");
    if (min < -1 || max < -1)
        return -1;
    const json_t *fmt = json_object_get(sch, "format");
    int32_t n = seq_lit(c, from, q_open(c));
    if (fmt) {
        if (!json_is_string(fmt))
            return fail_kw(c, LG_ERR_INVALID_ARG, "format", "must be a string");
        const char *f = json_string_value(fmt);
        if (min >= 0 || max >= 0)
            return fail_kw(c, LG_ERR_UNSUPPORTED, "format",
                           "minLength/maxLength together with format are not supported");
        if (strcmp(f, "date") == 0)
            n = f_date(c, n);
        else if (strcmp(f, "time") == 0)
            n = f_time(c, n);
        else if (strcmp(f, "date-time") == 0)
            n = f_time(c, seq_lit(c, f_date(c, n), "T"));
        else if (strcmp(f, "uuid") == 0) {
            n = seq_lit(c, hexes(c, n, 8), "-");
            n = seq_lit(c, hexes(c, n, 4), "-");
            n = seq_lit(c, hexes(c, n, 4), "-");
            n = seq_lit(c, hexes(c, n, 4), "-");
            n = hexes(c, n, 12);
        } else if (strcmp(f, "email") == 0)
            n = f_email(c, n);
        else {
            char msg[160];
            snprintf(msg, sizeof msg, "format \"%.60s\" is not supported (date, date-time, time, "
                                      "uuid, email are)", f);
            return fail_kw(c, LG_ERR_UNSUPPORTED, "format", msg);
        }
    } else {
        if (min < 0)
            min = 0;
        if (max >= 0 && min > max) {
            char msg[96];
            snprintf(msg, sizeof msg, "minLength %ld > maxLength %ld", min, max);
            return fail_kw(c, LG_ERR_RANGE, "maxLength", msg);
        }
        n = str_content(c, n, min, max);
    }
    return seq_lit(c, n, q_open(c));
}

static int32_t string_any(struct comp *c, int32_t from)
{
    if (c->r_string < 0) {
        int32_t end, s = lg_gb_rule(B, &end);
        c->r_string = s;
        int32_t n = str_content(c, seq_lit(c, s, q_open(c)), 0, -1);
        lg_gb_eps(B, seq_lit(c, n, q_open(c)), end);
    }
    return lg_gb_step_call(B, from, c->r_string);
}

/* ---- numbers ---- */

static int32_t number_any(struct comp *c, int32_t from)
{
    if (c->r_number < 0) {
        int32_t end, s = lg_gb_rule(B, &end);
        c->r_number = s;
        int32_t sign = lg_gb_node(B);
        lg_gb_eps(B, s, sign);
        lg_gb_bytes(B, s, '-', '-', sign);
        int32_t ip = lg_gb_node(B);
        lg_gb_bytes(B, sign, '0', '0', ip);
        int32_t nz = lg_gb_range(B, sign, '1', '9');
        lg_gb_eps(B, digits_upto(c, nz, INT_DIGITS - 1), ip);
        int32_t fr = lg_gb_node(B);
        lg_gb_eps(B, ip, fr);
        int32_t f1 = digits(c, seq_lit(c, ip, "."), 1, '0', '9');
        lg_gb_eps(B, digits_upto(c, f1, FRAC_DIGITS - 1), fr);
        lg_gb_eps(B, fr, end);
        int32_t e = lg_gb_range(B, fr, 'e', 'e');
        lg_gb_bytes(B, fr, 'E', 'E', e);
        int32_t es = lg_gb_node(B);
        lg_gb_eps(B, e, es);
        lg_gb_bytes(B, e, '+', '+', es);
        lg_gb_bytes(B, e, '-', '-', es);
        int32_t e1 = digits(c, es, 1, '0', '9');
        lg_gb_eps(B, digits_upto(c, e1, 1), end);
    }
    return lg_gb_step_call(B, from, c->r_number);
}

static int32_t integer_any(struct comp *c, int32_t from)
{
    if (c->r_integer < 0) {
        int32_t end, s = lg_gb_rule(B, &end);
        c->r_integer = s;
        lg_gb_bytes(B, s, '0', '0', end);
        int32_t sign = lg_gb_node(B);
        lg_gb_eps(B, s, sign);
        lg_gb_bytes(B, s, '-', '-', sign);
        int32_t nz = lg_gb_range(B, sign, '1', '9');
        lg_gb_eps(B, digits_upto(c, nz, INT_DIGITS - 1), end);
    }
    return lg_gb_step_call(B, from, c->r_integer);
}

static int32_t c_number(struct comp *c, const json_t *sch, bool integer, int32_t from)
{
    double lo = -INFINITY, hi = INFINITY, x;
    bool lo_ex = false, hi_ex = false, any = false;
    if (get_bound(c, sch, "minimum", &x)) {
        lo = x;
        any = true;
    }
    if (get_bound(c, sch, "exclusiveMinimum", &x)) {
        if (x >= lo) {
            lo = x;
            lo_ex = true;
        }
        any = true;
    }
    if (get_bound(c, sch, "maximum", &x)) {
        hi = x;
        any = true;
    }
    if (get_bound(c, sch, "exclusiveMaximum", &x)) {
        if (x <= hi) {
            hi = x;
            hi_ex = true;
        }
        any = true;
    }
    if (c->b.st != LG_OK)
        return -1;
    if (!any)
        return integer ? integer_any(c, from) : number_any(c, from);
    if (lo > hi || (lo == hi && (lo_ex || hi_ex)))
        return fail_kw(c, LG_ERR_RANGE, "maximum", "the range is empty (minimum > maximum)");
    /* Integers written exactly: k with lo <= k <= hi (strict where exclusive), clamped. */
    double klo = lo_ex ? floor(lo) + 1 : ceil(lo), khi = hi_ex ? ceil(hi) - 1 : floor(hi);
    if (klo < -INT_CLAMP)
        klo = -INT_CLAMP;
    if (khi > INT_CLAMP)
        khi = INT_CLAMP;
    int32_t end = alt_end(c);
    bool some = false;
    if (klo <= khi) {
        lg_gb_eps(B, int_range(c, from, (long long)klo, (long long)khi), end);
        some = true;
    }
    if (!integer) {
        /* k.ddd (ending in 1-9) lies in (k, k+1): fine when k >= lo and k + 1 <= hi. */
        double plo = fmax(0, ceil(lo)), phi = fmin(floor(hi) - 1, INT_CLAMP);
        if (plo <= phi) {
            lg_gb_eps(B, frac_nonzero(c, uint_range(c, from, (long long)plo, (long long)phi)), end);
            some = true;
        }
        /* -m.ddd lies in (-(m+1), -m): fine when -m <= hi and -(m+1) >= lo. */
        double mlo = fmax(0, ceil(-hi)), mhi = fmin(floor(-lo) - 1, INT_CLAMP);
        if (mlo <= mhi) {
            int32_t m = seq_lit(c, from, "-");
            lg_gb_eps(B, frac_nonzero(c, uint_range(c, m, (long long)mlo, (long long)mhi)), end);
            some = true;
        }
    }
    if (!some && c->b.st == LG_OK)
        return fail_kw(c, LG_ERR_UNSUPPORTED, "minimum",
                       "a number range that contains no integer is not supported");
    return end;
}

/* ---- objects ---- */

static bool key_char(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

/* Extra keys start with a letter or '_' (a bare Gemma key starting like a number is ambiguous). */
static bool key_char_at(int ch, size_t depth)
{
    return key_char(ch) && (depth > 0 || !((ch >= '0' && ch <= '9') || ch == '-'));
}

/* Key text (no quotes) over [A-Za-z_][A-Za-z0-9_-]{0,63} that differs from every key in keys[lo, hi)
 * (sorted, byte order); keys[i] share their first `depth` bytes. */
static void key_complement(struct comp *c, int32_t node, const char **keys, size_t lo,
                           size_t hi, size_t depth, const int32_t *free_chain, int32_t end)
{
    if (node < 0 || c->b.st != LG_OK || depth >= EXTRA_KEY_MAX)
        return;
    int32_t free_node = free_chain[depth + 1];
    bool exact = false;
    bool child[256] = {false};
    for (size_t i = lo; i < hi; i++) {
        size_t len = strlen(keys[i]);
        if (len == depth)
            exact = true;
        else
            child[(uint8_t)keys[i][depth]] = true;
    }
    if (depth > 0 && !exact)
        lg_gb_eps(B, node, end);
    for (int b = 0; b < 256;) {
        if (!key_char_at(b, depth) || child[b]) {
            b++;
            continue;
        }
        int e = b;
        while (e + 1 < 256 && key_char_at(e + 1, depth) && !child[e + 1])
            e++;
        lg_gb_bytes(B, node, (uint8_t)b, (uint8_t)e, free_node);
        b = e + 1;
    }
    size_t i = lo;
    while (i < hi) {
        if (strlen(keys[i]) == depth) {
            i++;
            continue;
        }
        uint8_t ch = (uint8_t)keys[i][depth];
        size_t j = i;
        while (j < hi && strlen(keys[j]) > depth && (uint8_t)keys[j][depth] == ch)
            j++;
        int32_t n = lg_gb_range(B, node, ch, ch);
        key_complement(c, n, keys, i, j, depth + 1, free_chain, end);
        i = j;
    }
}

static int cmp_bytes(const void *pa, const void *pb)
{
    return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

struct entry {
    const char *key;
    const json_t *sch; /* NULL: any value */
    bool required;
};

static int cmp_entry_gemma(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    return cmp_key(&a->key, &b->key);
}

static int32_t value_call(struct comp *c, int32_t from, const json_t *sch)
{
    if (!sch)
        return lg_gb_step_call(B, from, c->r_any >= 0 ? c->r_any : rule_for(c, NULL));
    return lg_gb_step_call(B, from, rule_for(c, sch));
}

/* key (quoted per surface) then the separator. */
static int32_t pair_prefix(struct comp *c, int32_t from, const char *key)
{
    int32_t n;
    if (c->surf == SURF_JSON) {
        json_t *k = json_string(key);
        char *s = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
        json_decref(k);
        if (!s)
            return lg_gb_fail(B, LG_ERR_NOMEM, "out of memory");
        n = seq_lit(c, from, s);
        free(s);
        n = ws(c, seq_lit(c, n, ":"));
        return n;
    }
    n = seq_lit(c, from, key);
    return seq_lit(c, n, ":");
}

static int32_t extra_pair(struct comp *c, int32_t from, const char **keys, size_t n_keys,
                          const json_t *vsch)
{
    int32_t n = c->surf == SURF_JSON ? seq_lit(c, from, "\"") : from;
    int32_t kend = lg_gb_node(B);
    /* free_chain[d]: d key characters written, no longer a prefix of a declared key. */
    int32_t free_chain[EXTRA_KEY_MAX + 1];
    for (int d = 0; d <= EXTRA_KEY_MAX; d++)
        free_chain[d] = lg_gb_node(B);
    /* Only declared keys spelled with key characters can collide with an extra key. */
    const char **kk = malloc((n_keys ? n_keys : 1) * sizeof *kk);
    if (!kk)
        return lg_gb_fail(B, LG_ERR_NOMEM, "out of memory");
    size_t n_kk = 0;
    for (size_t i = 0; i < n_keys; i++) {
        bool ok = true;
        for (const char *p = keys[i]; *p; p++)
            ok = ok && key_char((unsigned char)*p);
        if (ok && keys[i][0] && key_char_at((unsigned char)keys[i][0], 0))
            kk[n_kk++] = keys[i];
    }
    for (int d = 1; d <= EXTRA_KEY_MAX; d++) {
        lg_gb_eps(B, free_chain[d], kend);
        for (int b = 0; d < EXTRA_KEY_MAX && b < 256; b++)
            if (key_char(b)) {
                int e = b;
                while (e + 1 < 256 && key_char(e + 1))
                    e++;
                lg_gb_bytes(B, free_chain[d], (uint8_t)b, (uint8_t)e, free_chain[d + 1]);
                b = e;
            }
    }
    key_complement(c, n, kk, 0, n_kk, 0, free_chain, kend);
    free(kk);
    n = kend;
    if (c->surf == SURF_JSON)
        n = ws(c, seq_lit(c, seq_lit(c, n, "\""), ":"));
    else
        n = seq_lit(c, n, ":");
    return value_call(c, n, vsch);
}

static int32_t comma(struct comp *c, int32_t from)
{
    return ws(c, seq_lit(c, from, ","));
}

static int32_t c_object(struct comp *c, const json_t *sch, int32_t from)
{
    const json_t *props = json_object_get(sch, "properties");
    const json_t *req = json_object_get(sch, "required");
    const json_t *addl = json_object_get(sch, "additionalProperties");
    if (props && !json_is_object(props))
        return fail_kw(c, LG_ERR_INVALID_ARG, "properties", "must be an object");
    if (req && !json_is_array(req))
        return fail_kw(c, LG_ERR_INVALID_ARG, "required", "must be an array of strings");
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return fail_kw(c, LG_ERR_INVALID_ARG, "additionalProperties",
                       "must be a boolean or a schema");
    for (size_t i = 0; req && i < json_array_size(req); i++)
        if (!json_is_string(json_array_get(req, i)))
            return fail_kw(c, LG_ERR_INVALID_ARG, "required", "must be an array of strings");
    bool extras;
    const json_t *extra_sch = NULL;
    if (!addl)
        extras = !props || json_object_size(props) == 0;
    else if (json_is_boolean(addl))
        extras = json_is_true(addl);
    else {
        extras = true;
        extra_sch = addl;
    }
    size_t n_props = props ? json_object_size(props) : 0, n_req = req ? json_array_size(req) : 0;
    struct entry *ent = calloc(n_props + n_req + 1, sizeof *ent);
    const char **keys = calloc(n_props + n_req + 1, sizeof *keys);
    if (!ent || !keys) {
        free(ent);
        free(keys);
        return lg_gb_fail(B, LG_ERR_NOMEM, "out of memory");
    }
    size_t n_ent = 0;
    const char *k;
    const json_t *v;
    if (props)
        json_object_foreach((json_t *)props, k, v) {
            bool r = false;
            for (size_t i = 0; i < n_req; i++)
                if (strcmp(json_string_value(json_array_get(req, i)), k) == 0)
                    r = true;
            ent[n_ent++] = (struct entry){k, v, r};
        }
    for (size_t i = 0; i < n_req; i++) {
        const char *rk = json_string_value(json_array_get(req, i));
        bool dup = false;
        for (size_t j = 0; j < n_ent; j++)
            if (strcmp(ent[j].key, rk) == 0)
                dup = true;
        if (dup)
            continue;
        if (addl && json_is_false(addl)) {
            free(ent);
            free(keys);
            char msg[160];
            snprintf(msg, sizeof msg, "required property \"%.60s\" is not allowed by "
                                      "additionalProperties false", rk);
            return fail_kw(c, LG_ERR_INVALID_ARG, "required", msg);
        }
        ent[n_ent++] = (struct entry){rk, extra_sch, true};
    }
    if (c->surf == SURF_GEMMA)
        qsort(ent, n_ent, sizeof *ent, cmp_entry_gemma);
    for (size_t i = 0; i < n_ent; i++)
        keys[i] = ent[i].key;
    qsort(keys, n_ent, sizeof *keys, cmp_bytes);

    int32_t none = ws(c, seq_lit(c, from, "{")), some = -1;
    for (size_t i = 0; i < n_ent && c->b.st == LG_OK; i++) {
        if (c->surf == SURF_GEMMA && !gemma_key_ok(ent[i].key)) {
            if (ent[i].required) {
                free(ent);
                free(keys);
                return fail_kw(c, LG_ERR_UNSUPPORTED, "properties",
                               "a required key cannot be written as a bare Gemma key");
            }
            continue;
        }
        size_t mark = path_push(c, "properties");
        path_push(c, ent[i].key);
        int32_t nn = ent[i].required ? -1 : lg_gb_node(B), ns = lg_gb_node(B);
        int32_t x = value_call(c, pair_prefix(c, none, ent[i].key), ent[i].sch);
        lg_gb_eps(B, x, ns);
        if (some >= 0) {
            x = value_call(c, pair_prefix(c, comma(c, some), ent[i].key), ent[i].sch);
            lg_gb_eps(B, x, ns);
        }
        if (!ent[i].required) {
            lg_gb_eps(B, none, nn);
            lg_gb_eps(B, some, ns);
        }
        path_pop(c, mark);
        none = nn;
        some = ns;
    }
    if (extras && c->b.st == LG_OK) {
        size_t mark = path_push(c, "additionalProperties");
        int32_t s2 = lg_gb_node(B);
        lg_gb_eps(B, extra_pair(c, none, keys, n_ent, extra_sch), s2);
        if (some >= 0)
            lg_gb_eps(B, extra_pair(c, comma(c, some), keys, n_ent, extra_sch), s2);
        lg_gb_eps(B, extra_pair(c, comma(c, s2), keys, n_ent, extra_sch), s2);
        lg_gb_eps(B, some, s2);
        some = s2;
        path_pop(c, mark);
    }
    free(ent);
    free(keys);
    int32_t close = lg_gb_node(B);
    lg_gb_eps(B, none, close);
    lg_gb_eps(B, some, close);
    return seq_lit(c, ws(c, close), "}");
}

/* ---- arrays ---- */

static int32_t c_array(struct comp *c, const json_t *sch, int32_t from)
{
    const json_t *prefix = json_object_get(sch, "prefixItems");
    const json_t *items = json_object_get(sch, "items");
    const json_t *uniq = json_object_get(sch, "uniqueItems");
    if (uniq && json_is_true(uniq))
        return fail_kw(c, LG_ERR_UNSUPPORTED, "uniqueItems", "uniqueItems true is not supported");
    if (prefix && !json_is_array(prefix))
        return fail_kw(c, LG_ERR_INVALID_ARG, "prefixItems", "must be an array");
    if (items && json_is_array(items))
        return fail_kw(c, LG_ERR_UNSUPPORTED, "items",
                       "items as an array (draft 4-7 tuples) is not supported; use prefixItems");
    if (items && !json_is_object(items) && !json_is_boolean(items))
        return fail_kw(c, LG_ERR_INVALID_ARG, "items", "must be a schema");
    long min = get_count(c, sch, "minItems"), max = get_count(c, sch, "maxItems");
    if (min < -1 || max < -1)
        return -1;
    if (min < 0)
        min = 0;
    long k = prefix ? (long)json_array_size(prefix) : 0;
    bool more = !(items && json_is_false(items));
    if (k > LG_GRAMMAR_MAX_REPEAT)
        return fail_kw(c, LG_ERR_RANGE, "prefixItems", "too many entries");
    if (!more && (max < 0 || max > k))
        max = k;
    if (max >= 0 && min > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "minItems %ld > maxItems %ld (or more than prefixItems allow)",
                 min, max);
        return fail_kw(c, LG_ERR_RANGE, "maxItems", msg);
    }
    const json_t *item_sch = (items && json_is_object(items)) ? items : NULL;
    int32_t close = lg_gb_node(B);
    int32_t p = ws(c, seq_lit(c, from, "["));
    long limit = max >= 0 ? max : (min > k ? min : k);
    if (max < 0 && limit == 0)
        limit = 1;
    for (long i = 0; i < limit && p >= 0; i++) {
        if (i >= min)
            lg_gb_eps(B, p, close);
        int32_t x = i == 0 ? p : comma(c, p);
        size_t mark = i < k ? path_push(c, "prefixItems") : path_push(c, "items");
        if (i < k)
            path_push_index(c, (size_t)i);
        p = value_call(c, x, i < k ? json_array_get(prefix, (size_t)i) : item_sch);
        path_pop(c, mark);
    }
    if (max < 0 && p >= 0) {
        size_t mark = path_push(c, "items");
        int32_t x = value_call(c, comma(c, p), item_sch);
        lg_gb_eps(B, x, p);
        path_pop(c, mark);
    }
    lg_gb_eps(B, p, close);
    return seq_lit(c, ws(c, close), "]");
}

/* ---- any value ---- */

static int32_t build_any(struct comp *c)
{
    int32_t end, s = lg_gb_rule(B, &end);
    c->r_any = s;
    lg_gb_eps(B, string_any(c, s), end);
    lg_gb_eps(B, number_any(c, s), end);
    lg_gb_eps(B, seq_lit(c, s, "true"), end);
    lg_gb_eps(B, seq_lit(c, s, "false"), end);
    lg_gb_eps(B, seq_lit(c, s, "null"), end);
    /* object with arbitrary keys */
    int32_t o = ws(c, seq_lit(c, s, "{"));
    int32_t os = lg_gb_node(B);
    lg_gb_eps(B, extra_pair(c, o, NULL, 0, NULL), os);
    lg_gb_eps(B, extra_pair(c, comma(c, os), NULL, 0, NULL), os);
    int32_t oc = lg_gb_node(B);
    lg_gb_eps(B, o, oc);
    lg_gb_eps(B, os, oc);
    lg_gb_eps(B, seq_lit(c, ws(c, oc), "}"), end);
    /* array of anything */
    int32_t a = ws(c, seq_lit(c, s, "["));
    int32_t as = lg_gb_step_call(B, a, s);
    lg_gb_eps(B, lg_gb_step_call(B, comma(c, as), s), as);
    int32_t ac = lg_gb_node(B);
    lg_gb_eps(B, a, ac);
    lg_gb_eps(B, as, ac);
    lg_gb_eps(B, seq_lit(c, ws(c, ac), "]"), end);
    return s;
}

/* ---- dispatch ---- */

static bool has_any(const json_t *sch, const char *const *kws)
{
    for (int i = 0; kws[i]; i++)
        if (json_object_get(sch, kws[i]))
            return true;
    return false;
}

static int32_t c_type(struct comp *c, const json_t *sch, const char *t, int32_t from)
{
    if (strcmp(t, "object") == 0)
        return c_object(c, sch, from);
    if (strcmp(t, "array") == 0)
        return c_array(c, sch, from);
    if (strcmp(t, "string") == 0)
        return c_string(c, sch, from);
    if (strcmp(t, "number") == 0)
        return c_number(c, sch, false, from);
    if (strcmp(t, "integer") == 0)
        return c_number(c, sch, true, from);
    if (strcmp(t, "boolean") == 0) {
        int32_t end = alt_end(c);
        lg_gb_eps(B, seq_lit(c, from, "true"), end);
        lg_gb_eps(B, seq_lit(c, from, "false"), end);
        return end;
    }
    if (strcmp(t, "null") == 0)
        return seq_lit(c, from, "null");
    char msg[96];
    snprintf(msg, sizeof msg, "unknown type \"%.40s\"", t);
    return fail_kw(c, LG_ERR_INVALID_ARG, "type", msg);
}

static int32_t c_value(struct comp *c, const json_t *sch, int32_t from)
{
    if (from < 0 || c->b.st != LG_OK)
        return -1;
    if (!sch || json_is_true(sch))
        return value_call(c, from, NULL);
    if (json_is_false(sch))
        return fail_kw(c, LG_ERR_INVALID_ARG, "", "schema false admits no value");
    if (!json_is_object(sch))
        return fail_kw(c, LG_ERR_INVALID_ARG, "", "a schema must be an object or a boolean");
    if (++c->depth > LG_GRAMMAR_MAX_SCHEMA_DEPTH) {
        c->depth--;
        return fail_kw(c, LG_ERR_RANGE, "", "schema nested too deeply");
    }
    int32_t r = -1;
    const char *k;
    const json_t *v;
    size_t n_struct = 0;
    json_object_foreach((json_t *)sch, k, v) {
        if (!is_known(k)) {
            char msg[160];
            snprintf(msg, sizeof msg, "unsupported keyword \"%.80s\"", k);
            r = fail_kw(c, LG_ERR_UNSUPPORTED, k, msg);
            goto out;
        }
        if (!is_annotation(k))
            n_struct++;
    }
    const json_t *ref = json_object_get(sch, "$ref");
    const json_t *all = json_object_get(sch, "allOf");
    const json_t *any = json_object_get(sch, "anyOf");
    const json_t *one = json_object_get(sch, "oneOf");
    if (ref || all || any || one) {
        const char *kw = ref ? "$ref" : all ? "allOf" : any ? "anyOf" : "oneOf";
        if (n_struct > 1) {
            r = fail_kw(c, LG_ERR_UNSUPPORTED, kw,
                        "combining it with other validation keywords is not supported");
            goto out;
        }
        if (ref) {
            if (!json_is_string(ref)) {
                r = fail_kw(c, LG_ERR_INVALID_ARG, "$ref", "must be a string");
                goto out;
            }
            const json_t *t = lg_gram_resolve_ref(c->root, json_string_value(ref));
            if (!t) {
                char msg[160];
                snprintf(msg, sizeof msg, "cannot resolve \"%.100s\" (only local #/... refs)",
                         json_string_value(ref));
                r = fail_kw(c, LG_ERR_UNSUPPORTED, "$ref", msg);
                goto out;
            }
            r = lg_gb_step_call(B, from, rule_for(c, t));
            goto out;
        }
        const json_t *arr = all ? all : any ? any : one;
        if (!json_is_array(arr) || json_array_size(arr) == 0) {
            r = fail_kw(c, LG_ERR_INVALID_ARG, kw, "must be a non-empty array");
            goto out;
        }
        if (all && json_array_size(all) != 1) {
            r = fail_kw(c, LG_ERR_UNSUPPORTED, "allOf", "allOf with more than one schema");
            goto out;
        }
        r = alt_end(c);
        for (size_t i = 0; i < json_array_size(arr) && c->b.st == LG_OK; i++) {
            size_t mark = path_push(c, kw);
            path_push_index(c, i);
            lg_gb_eps(B, c_value(c, json_array_get(arr, i), from), r);
            path_pop(c, mark);
        }
        goto out;
    }
    if (json_object_get(sch, "enum") || json_object_get(sch, "const")) {
        r = c_literals(c, sch, from);
        goto out;
    }
    const json_t *type = json_object_get(sch, "type");
    if (type) {
        if (json_is_string(type)) {
            r = c_type(c, sch, json_string_value(type), from);
        } else if (json_is_array(type) && json_array_size(type) > 0) {
            r = alt_end(c);
            for (size_t i = 0; i < json_array_size(type) && c->b.st == LG_OK; i++) {
                const json_t *t = json_array_get(type, i);
                if (!json_is_string(t)) {
                    r = fail_kw(c, LG_ERR_INVALID_ARG, "type", "must be a string or strings");
                    goto out;
                }
                lg_gb_eps(B, c_type(c, sch, json_string_value(t), from), r);
            }
        } else {
            r = fail_kw(c, LG_ERR_INVALID_ARG, "type", "must be a string or a non-empty array");
        }
        goto out;
    }
    static const char *const obj_kw[] = {"properties", "required", "additionalProperties", NULL};
    static const char *const arr_kw[] = {"items", "prefixItems", "minItems", "maxItems", NULL};
    static const char *const str_kw[] = {"minLength", "maxLength", "format", NULL};
    static const char *const num_kw[] = {"minimum", "maximum", "exclusiveMinimum",
                                         "exclusiveMaximum", NULL};
    const char *types[4];
    int n_types = 0;
    if (has_any(sch, obj_kw))
        types[n_types++] = "object";
    if (has_any(sch, arr_kw))
        types[n_types++] = "array";
    if (has_any(sch, str_kw))
        types[n_types++] = "string";
    if (has_any(sch, num_kw))
        types[n_types++] = "number";
    if (n_types == 0) {
        r = value_call(c, from, NULL);
        goto out;
    }
    r = alt_end(c);
    for (int i = 0; i < n_types; i++)
        lg_gb_eps(B, c_type(c, sch, types[i], from), r);
out:
    c->depth--;
    return c->b.st == LG_OK ? r : -1;
}

static int32_t rule_for(struct comp *c, const json_t *sch)
{
    if (!sch || json_is_true(sch)) {
        if (c->r_any < 0)
            build_any(c);
        return c->r_any;
    }
    for (size_t i = 0; i < c->n_memo; i++)
        if (c->memo[i].sch == sch)
            return c->memo[i].start;
    if (c->n_memo == c->cap_memo) {
        size_t cap = c->cap_memo ? c->cap_memo * 2 : 32;
        struct memo *m = realloc(c->memo, cap * sizeof *m);
        if (!m)
            return lg_gb_fail(B, LG_ERR_NOMEM, "out of memory");
        c->memo = m;
        c->cap_memo = cap;
    }
    int32_t end, s = lg_gb_rule(B, &end);
    if (s < 0)
        return -1;
    c->memo[c->n_memo++] = (struct memo){sch, s};
    lg_gb_eps(B, c_value(c, sch, s), end);
    return s;
}

static void comp_init(struct comp *c, const json_t *root, enum surface surf, struct lg_err *err)
{
    memset(c, 0, sizeof *c);
    c->root = root;
    c->surf = surf;
    c->b.err = err;
    c->r_ws = c->r_char = c->r_any = c->r_number = c->r_integer = c->r_string = -1;
}

static enum lg_status comp_finish(struct comp *c, int32_t start, struct lg_grammar **out)
{
    free(c->memo);
    c->memo = NULL;
    return lg_gb_finish(&c->b, start, out);
}

enum lg_status lg_grammar_from_schema(const json_t *schema, struct lg_grammar **out,
                                      struct lg_err *err)
{
    *out = NULL;
    if (!schema)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "schema: missing");
    struct comp cc, *c = &cc;
    comp_init(c, schema, SURF_JSON, err);
    int32_t start = rule_for(c, schema);
    return comp_finish(c, start, out);
}

enum lg_status lg_grammar_json_object(struct lg_grammar **out, struct lg_err *err)
{
    json_t *sch = json_pack("{s:s}", "type", "object");
    if (!sch)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status st = lg_grammar_from_schema(sch, out, err);
    json_decref(sch);
    return st;
}

static bool tool_name_ok(const char *s)
{
    if (!s[0] || strlen(s) > 128)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.", *p))
            return false;
    return true;
}

enum lg_status lg_grammar_from_tools(const json_t *tools, const char *only_name, unsigned flags,
                                     struct lg_grammar **out, struct lg_err *err)
{
    *out = NULL;
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "tools: expected a non-empty array");
    struct comp cc, *c = &cc;
    comp_init(c, NULL, SURF_GEMMA, err);
    int32_t end, start = lg_gb_rule(B, &end);
    int32_t n = start;
    if (flags & LG_GRAMMAR_TOOL_OPEN)
        n = seq_lit(c, n, "<|tool_call>");
    int32_t mid = lg_gb_node(B), done = lg_gb_node(B);
    lg_gb_eps(B, seq_lit(c, n, "call:"), mid);
    size_t n_used = 0;
    for (size_t i = 0; i < json_array_size(tools) && c->b.st == LG_OK; i++) {
        const json_t *t = json_array_get(tools, i);
        const json_t *fn = json_is_object(t) ? json_object_get(t, "function") : NULL;
        const json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
        if (!json_is_string(name)) {
            lg_gb_fail(B, LG_ERR_INVALID_ARG, "tools[%zu].function.name: expected a string", i);
            break;
        }
        const char *nm = json_string_value(name);
        if (!tool_name_ok(nm)) {
            lg_gb_fail(B, LG_ERR_INVALID_ARG, "tools[%zu].function.name: \"%.60s\" must be "
                       "1-128 characters of [A-Za-z0-9_.-]", i, nm);
            break;
        }
        if (only_name && strcmp(only_name, nm) != 0)
            continue;
        const json_t *params = json_object_get(fn, "parameters");
        c->root = params;
        snprintf(c->path, sizeof c->path, "tools[%zu].function.parameters", i);
        c->path_len = strlen(c->path);
        int32_t x = lg_gb_lit(B, mid, nm, strlen(nm));
        if (!params || json_is_null(params) ||
            (json_is_object(params) && !json_object_get(params, "type") &&
             !json_object_get(params, "properties"))) {
            json_t *empty = json_object(); /* any object */
            x = empty ? c_object(c, empty, x) : lg_gb_fail(B, LG_ERR_NOMEM, "out of memory");
            json_decref(empty);
        } else {
            const json_t *ty = json_object_get(params, "type");
            if (!json_is_object(params) || (ty && !(json_is_string(ty) &&
                                                    strcmp(json_string_value(ty), "object") == 0))) {
                lg_gb_fail(B, LG_ERR_INVALID_ARG, "tools[%zu].function.parameters: must be an "
                           "object schema", i);
                break;
            }
            x = lg_gb_step_call(B, x, rule_for(c, params));
        }
        lg_gb_eps(B, seq_lit(c, x, "<tool_call|>"), done);
        n_used++;
    }
    if (c->b.st == LG_OK && n_used == 0)
        lg_gb_fail(B, LG_ERR_INVALID_ARG, "tool_choice: no tool named \"%.60s\"",
                   only_name ? only_name : "");
    lg_gb_eps(B, done, end);
    if (flags & LG_GRAMMAR_TOOL_MULTI)
        lg_gb_eps(B, seq_lit(c, done, "<|tool_call>call:"), mid);
    return comp_finish(c, start, out);
}
