/* json.c: request-body parsing with limits and typed, path-naming getters over jansson.
 *
 * Depth is measured on the raw bytes before jansson sees them, so a 10^6-deep "[[[[..."
 * costs one linear scan and no recursion. Every error names the full field path. */
#include "json/json.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int lg_json_scan_depth(const char *buf, size_t n, int limit)
{
    int depth = 0, max_depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                max_depth = depth;
                if (max_depth > limit)
                    return max_depth;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max_depth;
}

/* ---- allocation-failure aware parsing ---- */

static _Thread_local bool json_alloc_failed;
static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;

static void *json_malloc_hook(size_t n)
{
    void *p = malloc(n);
    if (!p)
        json_alloc_failed = true;
    return p;
}

static void json_free_hook(void *p)
{
    free(p);
}

/* Blocks from before the hooks and after are both plain malloc blocks, so installing them
 * late is safe; the constructor does it before main() (threads) so that Jansson's two
 * function pointers are never written while another thread allocates. */
static void json_hooks_install(void)
{
    json_set_alloc_funcs(json_malloc_hook, json_free_hook);
}

__attribute__((constructor)) static void json_hooks_at_start(void)
{
    pthread_once(&json_hooks_once, json_hooks_install);
}

json_t *lg_json_loadb(const char *buf, size_t n, size_t flags, json_error_t *je, bool *oom)
{
    pthread_once(&json_hooks_once, json_hooks_install);
    json_error_t local;
    if (!je)
        je = &local;
    json_alloc_failed = false;
    json_t *root = json_loadb(buf, n, flags, je);
    *oom = !root && (json_alloc_failed || json_error_code(je) == json_error_out_of_memory);
    return root;
}

enum lg_status lg_json_parse(const char *buf, size_t n, size_t max_bytes, int max_depth,
                             bool want_object, json_t **out, struct lg_err *err)
{
    *out = NULL;
    if (n > max_bytes)
        return lg_err_set(err, LG_ERR_RANGE, "request body is %zu bytes; the limit is %zu", n,
                          max_bytes);
    if (n == 0 || !buf)
        return lg_err_set(err, LG_ERR_FORMAT, "request body is empty; expected a JSON object");
    int depth = lg_json_scan_depth(buf, n, max_depth);
    if (depth > max_depth)
        return lg_err_set(err, LG_ERR_RANGE, "JSON nesting is deeper than %d levels", max_depth);
    json_error_t je;
    bool oom;
    json_t *root = lg_json_loadb(buf, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je, &oom);
    if (!root && oom)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory parsing JSON");
    if (!root)
        return lg_err_set(err, LG_ERR_FORMAT, "invalid JSON at line %d column %d: %s", je.line,
                          je.column, je.text);
    if (want_object && !json_is_object(root)) {
        enum lg_status st = lg_err_set(err, LG_ERR_FORMAT, "request body: expected a JSON "
                                       "object, got %s", lg_json_type_name(root));
        json_decref(root);
        return st;
    }
    *out = root;
    return LG_OK;
}

/* Both path builders allow out == ctx (a path extended in place). */
void lg_json_path(char *out, const char *ctx, const char *key)
{
    char tmp[LG_JSON_PATH_MAX];
    if (!ctx || !ctx[0])
        snprintf(tmp, sizeof tmp, "%s", key);
    else
        snprintf(tmp, sizeof tmp, "%s.%s", ctx, key);
    memcpy(out, tmp, sizeof tmp);
}

void lg_json_path_index(char *out, const char *ctx, size_t i)
{
    char tmp[LG_JSON_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s[%zu]", ctx ? ctx : "", i);
    memcpy(out, tmp, sizeof tmp);
}

const char *lg_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* Looks up key; absent or null → LG_ERR_NOT_FOUND with "X: required" in err. */
static enum lg_status get_value(const json_t *obj, const char *ctx, const char *key, json_t **v,
                                char path[LG_JSON_PATH_MAX], struct lg_err *err)
{
    lg_json_path(path, ctx, key);
    *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!*v || json_is_null(*v))
        return lg_err_set(err, LG_ERR_NOT_FOUND, "%s: required", path);
    return LG_OK;
}

enum lg_status lg_json_get_str(const json_t *obj, const char *ctx, const char *key,
                               size_t max_len, const char **out, size_t *out_len,
                               struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    if (!json_is_string(v))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected string, got %s", path,
                          lg_json_type_name(v));
    size_t n = json_string_length(v);
    if (n > max_len)
        return lg_err_set(err, LG_ERR_RANGE, "%s: string of %zu bytes is longer than %zu", path,
                          n, max_len);
    *out = json_string_value(v);
    if (out_len)
        *out_len = n;
    return LG_OK;
}

enum lg_status lg_json_get_bool(const json_t *obj, const char *ctx, const char *key, bool *out,
                                struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    if (!json_is_boolean(v))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected boolean, got %s", path,
                          lg_json_type_name(v));
    *out = json_is_true(v);
    return LG_OK;
}

enum lg_status lg_json_check_num(const json_t *v, const char *path, double lo, double hi,
                                 bool want_int, double *out, struct lg_err *err)
{
    double d;
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    } else if (json_is_real(v)) {
        d = json_real_value(v);
        if (!isfinite(d))
            return lg_err_set(err, LG_ERR_RANGE, "%s: not a finite number", path);
        if (want_int && d != floor(d))
            return lg_err_set(err, LG_ERR_RANGE, "%s: expected an integer, got %.17g", path, d);
    } else {
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected %s, got %s", path,
                          want_int ? "integer" : "number", lg_json_type_name(v));
    }
    if (!(d >= lo && d <= hi))
        return lg_err_set(err, LG_ERR_RANGE, "%s: %.17g is out of range [%.17g, %.17g]", path, d,
                          lo, hi);
    *out = d;
    return LG_OK;
}

enum lg_status lg_json_get_int(const json_t *obj, const char *ctx, const char *key, int64_t lo,
                               int64_t hi, int64_t *out, struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    if (json_is_integer(v)) {
        /* exact comparison: doubles lose precision past 2^53 */
        json_int_t i = json_integer_value(v);
        if (i < lo || i > hi)
            return lg_err_set(err, LG_ERR_RANGE, "%s: %lld is out of range [%lld, %lld]", path,
                              (long long)i, (long long)lo, (long long)hi);
        *out = (int64_t)i;
        return LG_OK;
    }
    double d;
    st = lg_json_check_num(v, path, (double)lo, (double)hi, true, &d, err);
    if (st != LG_OK)
        return st;
    /* (double)hi may round up past hi (2^63-1 → 2^63); clamp the conversion */
    if (d >= 9223372036854775807.0 || d < -9223372036854775807.0)
        return lg_err_set(err, LG_ERR_RANGE, "%s: %.17g is out of range [%lld, %lld]", path, d,
                          (long long)lo, (long long)hi);
    int64_t i = (int64_t)d;
    if (i < lo || i > hi)
        return lg_err_set(err, LG_ERR_RANGE, "%s: %.17g is out of range [%lld, %lld]", path, d,
                          (long long)lo, (long long)hi);
    *out = i;
    return LG_OK;
}

enum lg_status lg_json_get_num(const json_t *obj, const char *ctx, const char *key, double lo,
                               double hi, double *out, struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    return lg_json_check_num(v, path, lo, hi, false, out, err);
}

enum lg_status lg_json_get_obj(const json_t *obj, const char *ctx, const char *key,
                               json_t **out, struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    if (!json_is_object(v))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected object, got %s", path,
                          lg_json_type_name(v));
    *out = v;
    return LG_OK;
}

enum lg_status lg_json_get_arr(const json_t *obj, const char *ctx, const char *key,
                               size_t max_items, json_t **out, struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    if (!json_is_array(v))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: expected array, got %s", path,
                          lg_json_type_name(v));
    if (json_array_size(v) > max_items)
        return lg_err_set(err, LG_ERR_RANGE, "%s: %zu items; at most %zu allowed", path,
                          json_array_size(v), max_items);
    *out = v;
    return LG_OK;
}

enum lg_status lg_json_get_any(const json_t *obj, const char *ctx, const char *key,
                               json_t **out, struct lg_err *err)
{
    char path[LG_JSON_PATH_MAX];
    json_t *v;
    enum lg_status st = get_value(obj, ctx, key, &v, path, err);
    if (st != LG_OK)
        return st;
    *out = v;
    return LG_OK;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is invalid (overlong forms,
 * surrogates and code points past U+10FFFF are invalid, as in jansson). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    return len;
}

char *lg_json_utf8_sanitize(const char *text, size_t n, size_t *out_len)
{
    /* worst case every byte becomes the 3-byte U+FFFD */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *o = malloc(n * 3 + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(s + i, n - i);
        if (len == 0) {
            o[j++] = (char)0xEF;
            o[j++] = (char)0xBF;
            o[j++] = (char)0xBD;
            i++;
        } else if (len == 1 && s[i] == 0) {
            /* jansson strings may not hold NUL unless allowed; a NUL from a model is noise */
            o[j++] = (char)0xEF;
            o[j++] = (char)0xBF;
            o[j++] = (char)0xBD;
            i++;
        } else {
            memcpy(o + j, s + i, len);
            j += len;
            i += len;
        }
    }
    o[j] = '\0';
    if (out_len)
        *out_len = j;
    return o;
}

json_t *lg_json_text(const char *text, size_t n)
{
    if (!text)
        return json_string("");
    /* a NUL would come out as \u0000, which strict decoders (jansson's default) refuse */
    json_t *v = memchr(text, 0, n) ? NULL : json_stringn(text, n);
    if (v)
        return v;
    size_t m;
    char *fixed = lg_json_utf8_sanitize(text, n, &m);
    if (!fixed)
        return NULL;
    v = json_stringn(fixed, m);
    free(fixed);
    return v;
}

/* Growing text for json_dump_callback; the failure is sticky (see lg_json_dumps). */
struct dump_buf {
    char *p;
    size_t n, cap;
    bool oom;
};

static int dump_cb(const char *s, size_t n, void *data)
{
    struct dump_buf *b = data;
    if (b->oom)
        return -1;
    if (n >= b->cap - b->n) { /* b->n < b->cap once allocated: room for the NUL */
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n <= n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

char *lg_json_dumps(const json_t *v, size_t flags)
{
    struct dump_buf b = {0};
    if (!v || json_dump_callback(v, dump_cb, &b, flags) != 0 || b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
