/* json.h: thin helpers over jansson for request bodies: parse with limits, typed getters
 * that name the bad field, numeric range checks, UTF-8 repair for text we emit.
 *
 * Field paths: every getter takes the path of the object it reads (`ctx`, "" for the root)
 * and a key; errors name the full path, e.g. "messages[3].content: expected string or
 * array" or "options.temperature: 1e+308 is out of range [0, 100]".
 *
 * Policy (documented for clients and the differential tests of hardening.md G5):
 *  - body must be valid UTF-8 JSON, at most max_bytes, nesting depth at most max_depth;
 *  - duplicate object keys are rejected (JSON_REJECT_DUPLICATES);
 *  - NaN/Infinity are not JSON and are rejected; numbers that overflow int64 or double are
 *    rejected by jansson ("too big integer", "real number overflow");
 *  - lone surrogates (\ud800) and "\u0000" inside strings are rejected;
 *  - JSON null for an optional field means "absent".
 *
 * Thread-safety: all functions are reentrant; a json_t is owned by one thread at a time. */
#ifndef LG_JSON_JSON_H
#define LG_JSON_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

enum {
    LG_JSON_MAX_DEPTH = 64,                 /* hardening.md G5 */
    LG_JSON_MAX_BODY = 8 * 1024 * 1024,     /* default body cap, bytes (G5, tune) */
    LG_JSON_PATH_MAX = 160                  /* longest field path we format */
};

/* Parses buf[0..n) (need not be NUL-terminated). Rejects n > max_bytes (LG_ERR_RANGE),
 * nesting deeper than max_depth (checked on the raw bytes before jansson recurses), and
 * anything jansson rejects (LG_ERR_FORMAT with line/column). When want_object is true the
 * top level must be an object. Returns a new reference in *out. */
enum lg_status lg_json_parse(const char *buf, size_t n, size_t max_bytes, int max_depth,
                             bool want_object, json_t **out, struct lg_err *err);

/* json_loadb() that tells running out of memory apart from bad input (jansson reports some
 * allocation failures as syntax errors): on NULL, *oom is true when an allocation failed
 * while parsing. je may be NULL. Installs (once) jansson allocation hooks that forward to
 * malloc/free and note failures per thread. */
json_t *lg_json_loadb(const char *buf, size_t n, size_t flags, json_error_t *je, bool *oom);

/* Maximum nesting depth of the JSON-ish text buf[0..n), counting [ and { outside strings;
 * stops early and returns a value > limit once limit is exceeded. Never fails. */
int lg_json_scan_depth(const char *buf, size_t n, int limit);

/* Writes "ctx.key" (or "key" when ctx is empty) into out[LG_JSON_PATH_MAX]; truncates.
 * out may be ctx itself. */
void lg_json_path(char *out, const char *ctx, const char *key);
/* Writes "ctx[i]" into out[LG_JSON_PATH_MAX]. */
void lg_json_path_index(char *out, const char *ctx, size_t i);

/* Name of a JSON value's type for messages: "string", "number", "object", ... */
const char *lg_json_type_name(const json_t *v);

/* Typed getters. obj must be an object. Each returns:
 *   LG_OK             the key is present (not null) and valid; *out is set;
 *   LG_ERR_NOT_FOUND  the key is absent or null; *out is unchanged; err says "X: required"
 *                     so a caller that needs the field can return the status as is;
 *   LG_ERR_FORMAT     wrong type ("X: expected string, got number");
 *   LG_ERR_RANGE      a number outside [lo, hi], not an integer where one is needed, or a
 *                     string longer than max_len.
 * Borrowed strings point into obj and live as long as it does. */
enum lg_status lg_json_get_str(const json_t *obj, const char *ctx, const char *key,
                               size_t max_len, const char **out, size_t *out_len,
                               struct lg_err *err);
enum lg_status lg_json_get_bool(const json_t *obj, const char *ctx, const char *key, bool *out,
                                struct lg_err *err);
/* Integer: accepts JSON integers and reals with an integral value (100.0). */
enum lg_status lg_json_get_int(const json_t *obj, const char *ctx, const char *key, int64_t lo,
                               int64_t hi, int64_t *out, struct lg_err *err);
/* Number: integer or real, finite, within [lo, hi]. */
enum lg_status lg_json_get_num(const json_t *obj, const char *ctx, const char *key, double lo,
                               double hi, double *out, struct lg_err *err);
/* Object / array of the given kind (JSON_OBJECT or JSON_ARRAY); borrowed. For arrays,
 * max_items caps json_array_size (LG_ERR_RANGE beyond). */
enum lg_status lg_json_get_obj(const json_t *obj, const char *ctx, const char *key,
                               json_t **out, struct lg_err *err);
enum lg_status lg_json_get_arr(const json_t *obj, const char *ctx, const char *key,
                               size_t max_items, json_t **out, struct lg_err *err);
/* Any present, non-null value (borrowed). */
enum lg_status lg_json_get_any(const json_t *obj, const char *ctx, const char *key,
                               json_t **out, struct lg_err *err);

/* Validates that v is a number within [lo, hi] (and an integer if want_int); path names it
 * in the error. Used for array elements and values already fetched. */
enum lg_status lg_json_check_num(const json_t *v, const char *path, double lo, double hi,
                                 bool want_int, double *out, struct lg_err *err);

/* Copies text to a new NUL-terminated string, replacing every invalid UTF-8 sequence with
 * U+FFFD so jansson accepts it (model output is untrusted bytes). NULL on allocation
 * failure. *out_len (may be NULL) gets the new length. */
char *lg_json_utf8_sanitize(const char *text, size_t n, size_t *out_len);

/* json_stringn that never fails on bad UTF-8 and never holds NUL (both become U+FFFD).
 * New reference or NULL on allocation failure. */
json_t *lg_json_text(const char *text, size_t n);

/* json_dumps(v, flags) that fails clean: the text (malloc'd, NUL-terminated), or NULL when v is
 * NULL or any allocation failed. Jansson 2.14 does not check the write of an object key, so
 * under memory pressure json_dumps can return JSON with a key cut short; here the first failed
 * write makes the whole dump fail. */
char *lg_json_dumps(const json_t *v, size_t flags);

#endif
