/* gram_validate.c: JSON Schema validation of a finished output, over the keywords the grammar
 * compiler knows (plus uniqueItems), with JSON-Schema semantics: numbers compare by value
 * (1 == 1.0), "integer" accepts integral reals, string lengths count code points, oneOf needs
 * exactly one match, formats date / date-time / time / uuid / email are checked. Errors are
 * {path, message} objects, path a JSON pointer into the value. $ref chains are followed up to
 * a fixed depth so a recursive schema cannot recurse forever on a finite value. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "grammar/gram_priv.h"

enum { MAX_ERRORS = 100, MAX_DEPTH = 256 };

struct vctx {
    const json_t *root;
    json_t *errors; /* NULL: count only */
    size_t n_errors;
    char path[512];
    size_t path_len;
    int depth;
    enum lg_status st;
    struct lg_err *err;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void add_error(struct vctx *x, const char *fmt, ...)
{
    x->n_errors++;
    if (!x->errors || json_array_size(x->errors) >= MAX_ERRORS)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s,s:s}", "path", x->path_len ? x->path : "", "message", msg);
    if (!e || json_array_append_new(x->errors, e) != 0)
        x->st = LG_ERR_NOMEM;
}

static void bad_schema(struct vctx *x, enum lg_status code, const char *kw, const char *what)
{
    if (x->st == LG_OK) {
        x->st = code;
        lg_err_set(x->err, code, "schema keyword \"%s\": %s", kw, what);
    }
}

static size_t vpath_push(struct vctx *x, const char *seg)
{
    size_t mark = x->path_len;
    if (x->path_len + 2 < sizeof x->path)
        x->path[x->path_len++] = '/';
    for (const char *p = seg; *p && x->path_len + 3 < sizeof x->path; p++) {
        if (*p == '~' || *p == '/') {
            x->path[x->path_len++] = '~';
            x->path[x->path_len++] = *p == '~' ? '0' : '1';
        } else {
            x->path[x->path_len++] = *p;
        }
    }
    x->path[x->path_len] = 0;
    return mark;
}

static void vpath_pop(struct vctx *x, size_t mark)
{
    x->path_len = mark;
    x->path[mark] = 0;
}

size_t lg_gram_utf8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            k++;
    return k;
}

const json_t *lg_gram_resolve_ref(const json_t *root, const char *ref)
{
    if (!ref || ref[0] != '#')
        return NULL;
    const json_t *cur = root;
    const char *p = ref + 1;
    if (!*p)
        return cur;
    if (*p != '/')
        return NULL;
    while (*p == '/' && cur) {
        p++;
        char seg[256];
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1'))
                ch = *p++ == '0' ? '~' : '/';
            if (n + 1 >= sizeof seg)
                return NULL;
            seg[n++] = ch;
        }
        seg[n] = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            cur = (n && !*end) ? json_array_get(cur, i) : NULL;
        } else {
            return NULL;
        }
    }
    return cur;
}

/* JSON-Schema equality: numbers by value, objects ignoring key order. */
static bool json_eq(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b) &&
               (!json_is_integer(a) || !json_is_integer(b) ||
                json_integer_value(a) == json_integer_value(b));
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_eq(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            const json_t *w = json_object_get(b, k);
            if (!w || !json_eq(v, w))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static int num2(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool date_ok(const char *s, size_t n)
{
    if (n != 10 || s[4] != '-' || s[7] != '-')
        return false;
    int y = 0;
    for (int i = 0; i < 4; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        y = y * 10 + (s[i] - '0');
    }
    int m = num2(s + 5), d = num2(s + 8);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    int md = mdays[m - 1] + (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
    return d <= md;
}

static bool time_ok(const char *s, size_t n)
{
    if (n < 9 || s[2] != ':' || s[5] != ':')
        return false;
    int h = num2(s), mi = num2(s + 3), se = num2(s + 6);
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60)
        return false;
    size_t i = 8;
    if (i < n && s[i] == '.') {
        size_t j = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return false;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == n;
    if (i < n && (s[i] == '+' || s[i] == '-') && n - i == 6 && s[i + 3] == ':') {
        int oh = num2(s + i + 1), om = num2(s + i + 4);
        return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
    }
    return false;
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool lg_gram_format_ok(const char *format, const char *s, size_t n, bool *known)
{
    *known = true;
    if (strcmp(format, "date") == 0)
        return date_ok(s, n);
    if (strcmp(format, "time") == 0)
        return time_ok(s, n);
    if (strcmp(format, "date-time") == 0)
        return n > 11 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') && date_ok(s, 10) &&
               time_ok(s + 11, n - 11);
    if (strcmp(format, "uuid") == 0) {
        if (n != 36)
            return false;
        for (size_t i = 0; i < n; i++)
            if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !is_hex(s[i]))
                return false;
        return true;
    }
    if (strcmp(format, "email") == 0) {
        const char *at = memchr(s, '@', n);
        if (!at || at == s || at == s + n - 1 || memchr(at + 1, '@', (size_t)(s + n - at - 1)))
            return false;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] <= ' ')
                return false;
        return true;
    }
    *known = false;
    return true;
}

static bool type_is(const json_t *v, const char *t)
{
    if (strcmp(t, "object") == 0)
        return json_is_object(v);
    if (strcmp(t, "array") == 0)
        return json_is_array(v);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
                isfinite(json_real_value(v)));
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(t, "null") == 0)
        return json_is_null(v);
    return false;
}

static bool known_kw(const char *k)
{
    static const char *const kw[] = {
        "type", "properties", "required", "additionalProperties", "enum", "const", "items",
        "prefixItems", "minItems", "maxItems", "anyOf", "oneOf", "allOf", "$ref", "minLength",
        "maxLength", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "uniqueItems", "title", "description", "default", "examples", "$comment", "$schema",
        "$id", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "nullable",
        "$anchor", NULL};
    for (int i = 0; kw[i]; i++)
        if (strcmp(k, kw[i]) == 0)
            return true;
    return strncmp(k, "x-", 2) == 0;
}

static size_t validate(struct vctx *x, const json_t *sch, const json_t *v);

/* Errors sch would report on v, without recording them. */
static size_t count_errors(struct vctx *x, const json_t *sch, const json_t *v)
{
    json_t *saved = x->errors;
    size_t before = x->n_errors;
    x->errors = NULL;
    validate(x, sch, v);
    size_t n = x->n_errors - before;
    x->n_errors = before;
    x->errors = saved;
    return n;
}

static void v_number(struct vctx *x, const json_t *sch, const json_t *v)
{
    double d = json_number_value(v);
    static const char *const kws[] = {"minimum", "maximum", "exclusiveMinimum",
                                      "exclusiveMaximum"};
    for (int i = 0; i < 4; i++) {
        const json_t *b = json_object_get(sch, kws[i]);
        if (!b)
            continue;
        if (!json_is_number(b)) {
            bad_schema(x, json_is_boolean(b) ? LG_ERR_UNSUPPORTED : LG_ERR_INVALID_ARG, kws[i],
                       "must be a number");
            return;
        }
        double lim = json_number_value(b);
        bool ok = i == 0 ? d >= lim : i == 1 ? d <= lim : i == 2 ? d > lim : d < lim;
        if (!ok)
            add_error(x, "%.17g violates %s %.17g", d, kws[i], lim);
    }
}

static void v_string(struct vctx *x, const json_t *sch, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), len = lg_gram_utf8_len(s, n);
    const json_t *mn = json_object_get(sch, "minLength"), *mx = json_object_get(sch, "maxLength");
    if (mn && json_is_number(mn) && (double)len < json_number_value(mn))
        add_error(x, "string of %zu characters is shorter than minLength %.0f", len,
                  json_number_value(mn));
    if (mx && json_is_number(mx) && (double)len > json_number_value(mx))
        add_error(x, "string of %zu characters is longer than maxLength %.0f", len,
                  json_number_value(mx));
    const json_t *f = json_object_get(sch, "format");
    if (json_is_string(f)) {
        bool known;
        if (!lg_gram_format_ok(json_string_value(f), s, n, &known))
            add_error(x, "not a valid %s", json_string_value(f));
        if (!known)
            bad_schema(x, LG_ERR_UNSUPPORTED, "format", "unsupported format");
    }
}

static void v_object(struct vctx *x, const json_t *sch, const json_t *v)
{
    const json_t *props = json_object_get(sch, "properties");
    const json_t *req = json_object_get(sch, "required");
    const json_t *addl = json_object_get(sch, "additionalProperties");
    for (size_t i = 0; json_is_array(req) && i < json_array_size(req); i++) {
        const char *k = json_string_value(json_array_get(req, i));
        if (k && !json_object_get(v, k))
            add_error(x, "missing required property \"%s\"", k);
    }
    const char *k;
    const json_t *pv;
    json_object_foreach((json_t *)v, k, pv) {
        const json_t *ps = json_is_object(props) ? json_object_get(props, k) : NULL;
        size_t mark = vpath_push(x, k);
        if (ps) {
            validate(x, ps, pv);
        } else if (addl && json_is_false(addl)) {
            vpath_pop(x, mark);
            add_error(x, "additional property \"%s\" is not allowed", k);
            continue;
        } else if (json_is_object(addl)) {
            validate(x, addl, pv);
        }
        vpath_pop(x, mark);
    }
}

static void v_array(struct vctx *x, const json_t *sch, const json_t *v)
{
    const json_t *prefix = json_object_get(sch, "prefixItems");
    const json_t *items = json_object_get(sch, "items");
    const json_t *mn = json_object_get(sch, "minItems"), *mx = json_object_get(sch, "maxItems");
    size_t n = json_array_size(v);
    if (mn && json_is_number(mn) && (double)n < json_number_value(mn))
        add_error(x, "array of %zu items is shorter than minItems %.0f", n, json_number_value(mn));
    if (mx && json_is_number(mx) && (double)n > json_number_value(mx))
        add_error(x, "array of %zu items is longer than maxItems %.0f", n, json_number_value(mx));
    if (json_is_array(items)) {
        bad_schema(x, LG_ERR_UNSUPPORTED, "items", "array form is not supported");
        return;
    }
    size_t k = json_is_array(prefix) ? json_array_size(prefix) : 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = i < k ? json_array_get(prefix, i) : items;
        if (!s)
            continue;
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        size_t mark = vpath_push(x, idx);
        if (json_is_false(s)) {
            vpath_pop(x, mark);
            add_error(x, "item %zu is not allowed (items false)", i);
            continue;
        }
        validate(x, s, json_array_get(v, i));
        vpath_pop(x, mark);
    }
    if (json_is_true(json_object_get(sch, "uniqueItems")))
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (json_eq(json_array_get(v, i), json_array_get(v, j)))
                    add_error(x, "items %zu and %zu are equal (uniqueItems)", i, j);
}

static size_t validate(struct vctx *x, const json_t *sch, const json_t *v)
{
    size_t before = x->n_errors;
    if (x->st != LG_OK || !sch || json_is_true(sch))
        return 0;
    if (json_is_false(sch)) {
        add_error(x, "no value is allowed here (schema false)");
        return x->n_errors - before;
    }
    if (!json_is_object(sch)) {
        bad_schema(x, LG_ERR_INVALID_ARG, "", "a schema must be an object or a boolean");
        return 0;
    }
    if (++x->depth > MAX_DEPTH) {
        x->depth--;
        bad_schema(x, LG_ERR_RANGE, "$ref", "schema recursion deeper than the value allows");
        return 0;
    }
    const char *k;
    const json_t *kv;
    json_object_foreach((json_t *)sch, k, kv) if (!known_kw(k))
    {
        bad_schema(x, LG_ERR_UNSUPPORTED, k, "unsupported keyword");
        goto out;
    }
    const json_t *ref = json_object_get(sch, "$ref");
    if (ref) {
        const json_t *t = lg_gram_resolve_ref(x->root, json_string_value(ref));
        if (!t) {
            bad_schema(x, LG_ERR_UNSUPPORTED, "$ref", "cannot resolve the reference");
            goto out;
        }
        validate(x, t, v);
    }
    const json_t *all = json_object_get(sch, "allOf");
    for (size_t i = 0; json_is_array(all) && i < json_array_size(all); i++)
        validate(x, json_array_get(all, i), v);
    const json_t *any = json_object_get(sch, "anyOf");
    if (json_is_array(any)) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(any) && !ok; i++)
            ok = count_errors(x, json_array_get(any, i), v) == 0;
        if (!ok)
            add_error(x, "matches none of the anyOf schemas");
    }
    const json_t *one = json_object_get(sch, "oneOf");
    if (json_is_array(one)) {
        size_t n_ok = 0;
        for (size_t i = 0; i < json_array_size(one); i++)
            n_ok += count_errors(x, json_array_get(one, i), v) == 0;
        if (n_ok != 1)
            add_error(x, "matches %zu of the oneOf schemas (exactly one required)", n_ok);
    }
    const json_t *en = json_object_get(sch, "enum");
    if (json_is_array(en)) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(en) && !ok; i++)
            ok = json_eq(json_array_get(en, i), v);
        if (!ok)
            add_error(x, "not one of the enum values");
    }
    const json_t *cn = json_object_get(sch, "const");
    if (cn && !json_eq(cn, v))
        add_error(x, "not equal to const");
    const json_t *type = json_object_get(sch, "type");
    if (type) {
        bool ok = false;
        if (json_is_string(type))
            ok = type_is(v, json_string_value(type));
        for (size_t i = 0; json_is_array(type) && i < json_array_size(type); i++)
            ok = ok || type_is(v, json_string_value(json_array_get(type, i)) ?
                                      json_string_value(json_array_get(type, i)) : "");
        if (!ok) {
            add_error(x, "wrong type (%s)", json_is_object(v)    ? "object"
                                            : json_is_array(v)   ? "array"
                                            : json_is_string(v)  ? "string"
                                            : json_is_number(v)  ? "number"
                                            : json_is_boolean(v) ? "boolean"
                                                                 : "null");
            goto out;
        }
    }
    if (json_is_number(v))
        v_number(x, sch, v);
    else if (json_is_string(v))
        v_string(x, sch, v);
    else if (json_is_object(v))
        v_object(x, sch, v);
    else if (json_is_array(v))
        v_array(x, sch, v);
out:
    x->depth--;
    return x->n_errors - before;
}

enum lg_status lg_schema_validate(const json_t *schema, const json_t *value, json_t *errors,
                                  struct lg_err *err)
{
    if (!schema || !value || !json_is_array(errors))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "schema validate: bad arguments");
    struct vctx x = {0};
    x.root = schema;
    x.errors = errors;
    x.err = err;
    validate(&x, schema, value);
    return x.st;
}

bool lg_gram_value_valid(const json_t *root, const json_t *sch, const json_t *v)
{
    struct vctx x = {0};
    x.root = root ? root : sch;
    validate(&x, sch, v);
    return x.st == LG_OK && x.n_errors == 0;
}
