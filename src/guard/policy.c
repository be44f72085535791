/* policy.c: the policy file (JSON, format in POLICY.md), PCRE2 deny and redaction patterns,
 * the streaming redactor, and tool allow-lists.
 *
 * Patterns are compiled once at load with UTF + MATCH_INVALID_UTF (model output may hold
 * broken UTF-8) and matched with a shared match context that caps backtracking (match limit,
 * depth and heap), so a pathological pattern costs a bounded amount per call; hitting the cap
 * fails closed (input: deny; output: treated as a deny hit).
 *
 * Streaming redaction. Every output pattern has max_len, an upper bound on its match length
 * (exact for the built-ins, declared for user patterns; longer matches are ignored). The
 * redactor holds text back from the earliest position where some pattern could start a match
 * whose outcome still depends on text not seen yet: PCRE2_PARTIAL_HARD reports such a start
 * (an attempt that reached the end of the seen text); an attempt that never reached it gives
 * the same result whatever follows, so matches starting before that point are the matches the
 * whole text would give. In ordinary prose that point is the start of the last word, so a
 * stream lags by a word, not by H = max(max_len) + LOOK_MARGIN bytes; H stays the bound (no
 * byte is held longer than H bytes of further input; a match-limit hit falls back to len - H).
 * The output for any split equals the whole-text output (tested on random splits and fuzzed).
 * Lookbehind sees up to CTX_KEEP bytes before the scan position. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "guard/guard.h"

enum {
    LOOK_MARGIN = 16, /* lookahead/lookbehind bytes a pattern may inspect */
    CTX_KEEP = 64,    /* bytes kept before the scan position for lookbehind */
    MAX_PATTERNS = 256,
    MAX_PATTERN_BYTES = 4096,
    MAX_MATCH_LEN = 4096, /* cap on a user max_len */
    DEFAULT_MAX_LEN = 256,
    MAX_TOOL_ENTRIES = 1024,
    MATCH_LIMIT = 200000,
    DEPTH_LIMIT = 5000,
    HEAP_LIMIT_KIB = 8192
};

enum pat_kind { PAT_DENY, PAT_REDACT };
enum pat_check { CHECK_NONE, CHECK_LUHN, CHECK_IBAN, CHECK_PHONE };

struct pat {
    char id[LG_GUARD_RULE_MAX];
    pcre2_code *re;
    enum pat_kind kind;
    enum pat_check check;
    char *replacement; /* redact */
    char *reason;      /* deny */
    size_t max_len;
};

struct tool_list {
    char *name; /* model or key */
    char **tools;
    size_t n;
};

struct lg_policy {
    char *refusal;
    struct pat *in, *out; /* out: deny patterns first, then redactions */
    size_t n_in, n_out;
    struct tool_list *models, *keys;
    size_t n_models, n_keys;
    bool tools_default_allow;
    size_t holdback;
    pcre2_match_context *mctx;
};

/* ---- checksums ------------------------------------------------------------------------- */

bool lg_luhn_ok(const char *s, size_t n)
{
    int sum = 0, nd = 0;
    for (size_t i = n; i-- > 0;) {
        char c = s[i];
        if (c == ' ' || c == '-')
            continue;
        if (c < '0' || c > '9')
            return false;
        int d = c - '0';
        if (nd % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
        nd++;
    }
    return nd >= 13 && nd <= 19 && sum % 10 == 0;
}

bool lg_iban_ok(const char *s, size_t n)
{
    char c[40];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == ' ' || ch == '-')
            continue;
        if (m >= sizeof c)
            return false;
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            return false;
        c[m++] = ch;
    }
    if (m < 15 || m > 34 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < '0' ||
        c[2] > '9' || c[3] < '0' || c[3] > '9')
        return false;
    /* move the first four characters to the end, letters → 10..35, value mod 97 == 1 */
    unsigned rem = 0;
    for (size_t k = 0; k < m; k++) {
        char ch = c[(k + 4) % m];
        if (ch >= '0' && ch <= '9')
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
    }
    return rem == 1;
}

static bool phone_ok(const char *s, size_t n)
{
    int nd = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= '0' && s[i] <= '9')
            nd++;
    return nd >= 9 && nd <= 15;
}

static bool check_ok(enum pat_check c, const char *s, size_t n)
{
    switch (c) {
    case CHECK_NONE:
        return true;
    case CHECK_LUHN:
        return lg_luhn_ok(s, n);
    case CHECK_IBAN:
        return lg_iban_ok(s, n);
    case CHECK_PHONE:
        return phone_ok(s, n);
    }
    return false;
}

/* ---- built-in PII patterns ------------------------------------------------------------- */

struct builtin {
    const char *id, *pattern, *replacement;
    enum pat_check check;
    size_t max_len;
};

static const struct builtin BUILTINS[] = {
    /* local part ≤ 64, 1-4 domain labels ≤ 63 + dot, TLD 2-24 letters: ≤ 64+1+4*64+24 */
    {"email",
     "(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\\.){1,4}[A-Za-z]{2,24}"
     "(?![A-Za-z0-9-])",
     "[EMAIL]", CHECK_NONE, 345},
    /* international or grouped numbers with 9-15 digits, not part of a longer digit run
     * (so a card number's tail is never taken for a phone number) */
    {"phone",
     "(?<![\\w+])(?<![0-9][ .-])(?:\\+[0-9]{1,3}[ .-]?)?(?:\\([0-9]{1,4}\\)[ .-]?)?"
     "[0-9]{2,4}(?:[ .-][0-9]{2,4}){1,5}(?![\\w])(?![ .-][0-9])"
     "|(?<![\\w+])\\+[0-9]{8,15}(?!\\w)",
     "[PHONE]", CHECK_PHONE, 40},
    /* 13-19 digits, single spaces or dashes between, Luhn-valid */
    {"card", "(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])", "[CARD]", CHECK_LUHN, 37},
    /* country, check digits, 4-char groups (space optional), tail; mod-97 valid */
    {"iban",
     "(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?"
     "(?![A-Za-z0-9])",
     "[IBAN]", CHECK_IBAN, 42},
};
enum { N_BUILTINS = sizeof BUILTINS / sizeof BUILTINS[0] };

/* ---- load ------------------------------------------------------------------------------ */

static void pat_clear(struct pat *p)
{
    pcre2_code_free(p->re);
    free(p->replacement);
    free(p->reason);
}

static void tools_free(struct tool_list *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        for (size_t j = 0; j < v[i].n; j++)
            free(v[i].tools[j]);
        free(v[i].tools);
    }
    free(v);
}

void lg_policy_free(struct lg_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_in; i++)
        pat_clear(&p->in[i]);
    for (size_t i = 0; i < p->n_out; i++)
        pat_clear(&p->out[i]);
    free(p->in);
    free(p->out);
    tools_free(p->models, p->n_models);
    tools_free(p->keys, p->n_keys);
    free(p->refusal);
    pcre2_match_context_free(p->mctx);
    free(p);
}

static enum lg_status compile(const char *field, const char *id, const char *src, bool caseless,
                              pcre2_code **out, struct lg_err *err)
{
    size_t n = strlen(src);
    if (n == 0)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: pattern '%s' is empty", field, id);
    if (n > MAX_PATTERN_BYTES)
        return lg_err_set(err, LG_ERR_FORMAT, "%s: pattern '%s' longer than %d bytes", field, id,
                          MAX_PATTERN_BYTES);
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc)
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    pcre2_set_parens_nest_limit(cc, 64);
    int ec = 0;
    PCRE2_SIZE off = 0;
    /* USE_OFFSET_LIMIT: the redactor bounds where a match may start, so a search never
     * walks the held-back tail looking for starts it would not commit */
    uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C |
                   PCRE2_USE_OFFSET_LIMIT | (caseless ? PCRE2_CASELESS : 0);
    *out = pcre2_compile((PCRE2_SPTR)src, n, opt, &ec, &off, cc);
    pcre2_compile_context_free(cc);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(ec, msg, sizeof msg) < 0)
            strcpy((char *)msg, "unknown error");
        return lg_err_set(err, LG_ERR_FORMAT, "%s: pattern '%s': %s at offset %zu", field, id,
                          (const char *)msg, (size_t)off);
    }
    return LG_OK;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '"' || s[i] == '\\' ||
            (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static enum lg_status check_keys(const json_t *o, const char *field, const char *const *allowed,
                                 struct lg_err *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            if (!strcmp(k, allowed[i]))
                ok = true;
        if (!ok)
            return lg_err_set(err, LG_ERR_FORMAT, "%s: unknown field '%.64s'", field, k);
    }
    return LG_OK;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* one rule object: {"id","pattern","reason"|"replacement","caseless","max_len"} */
static enum lg_status parse_rule(const json_t *r, const char *field, enum pat_kind kind,
                                 bool output, struct pat *p, struct lg_err *err)
{
    static const char *const deny_keys[] = {"id", "pattern", "reason", "caseless", "max_len", NULL};
    static const char *const red_keys[] = {"id",       "pattern", "replacement",
                                           "caseless", "max_len", NULL};
    memset(p, 0, sizeof *p);
    if (!json_is_object(r))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: must be an object", field);
    enum lg_status st = check_keys(r, field, kind == PAT_DENY ? deny_keys : red_keys, err);
    if (st != LG_OK)
        return st;
    json_t *id = json_object_get(r, "id"), *pat = json_object_get(r, "pattern");
    if (!json_is_string(id) || !id_ok(json_string_value(id)))
        return lg_err_set(err, LG_ERR_FORMAT,
                          "%s.id: must be a non-empty string (printable ASCII, at most 40 bytes)",
                          field);
    if (!json_is_string(pat))
        return lg_err_set(err, LG_ERR_FORMAT, "%s.pattern: must be a string", field);
    snprintf(p->id, sizeof p->id, "%s", json_string_value(id));
    p->kind = kind;
    json_t *cl = json_object_get(r, "caseless");
    if (cl && !json_is_boolean(cl))
        return lg_err_set(err, LG_ERR_FORMAT, "%s.caseless: must be true or false", field);
    json_t *ml = json_object_get(r, "max_len");
    p->max_len = DEFAULT_MAX_LEN;
    if (ml) {
        if (!json_is_integer(ml) || json_integer_value(ml) < 1 ||
            json_integer_value(ml) > MAX_MATCH_LEN)
            return lg_err_set(err, LG_ERR_FORMAT, "%s.max_len: must be an integer 1..%d", field,
                              MAX_MATCH_LEN);
        if (!output)
            return lg_err_set(err, LG_ERR_FORMAT, "%s.max_len: only for output rules", field);
        p->max_len = (size_t)json_integer_value(ml);
    }
    const char *extra_name = kind == PAT_DENY ? "reason" : "replacement";
    json_t *ex = json_object_get(r, extra_name);
    if (ex && !json_is_string(ex))
        return lg_err_set(err, LG_ERR_FORMAT, "%s.%s: must be a string", field, extra_name);
    const char *exv = ex ? json_string_value(ex) : (kind == PAT_DENY ? "" : "[REDACTED]");
    if (strlen(exv) > 200)
        return lg_err_set(err, LG_ERR_FORMAT, "%s.%s: longer than 200 bytes", field, extra_name);
    char *dup = xstrdup(exv);
    if (!dup)
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    if (kind == PAT_DENY)
        p->reason = dup;
    else
        p->replacement = dup;
    return compile(field, p->id, json_string_value(pat), cl && json_is_true(cl), &p->re, err);
}

static enum lg_status add_rules(const json_t *arr, const char *field, enum pat_kind kind,
                                bool output, struct pat **v, size_t *n, struct lg_err *err)
{
    if (!json_is_array(arr))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: must be an array", field);
    size_t m = json_array_size(arr);
    if (*n + m > MAX_PATTERNS)
        return lg_err_set(err, LG_ERR_RANGE, "%s: more than %d patterns", field, MAX_PATTERNS);
    struct pat *nv = realloc(*v, (*n + m + N_BUILTINS) * sizeof *nv);
    if (!nv)
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    *v = nv;
    for (size_t i = 0; i < m; i++) {
        char f[128];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        enum lg_status st = parse_rule(json_array_get(arr, i), f, kind, output, &nv[*n], err);
        if (st != LG_OK) {
            pat_clear(&nv[*n]);
            return st;
        }
        (*n)++;
    }
    return LG_OK;
}

static enum lg_status add_builtin(struct lg_policy *p, const char *name, const char *field,
                                  struct lg_err *err)
{
    for (size_t i = 0; i < N_BUILTINS; i++) {
        if (strcmp(BUILTINS[i].id, name))
            continue;
        for (size_t j = 0; j < p->n_out; j++)
            if (!strcmp(p->out[j].id, name))
                return LG_OK; /* listed twice */
        struct pat *nv = realloc(p->out, (p->n_out + 1) * sizeof *nv);
        if (!nv)
            return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
        p->out = nv;
        struct pat *q = &nv[p->n_out];
        memset(q, 0, sizeof *q);
        snprintf(q->id, sizeof q->id, "%s", name);
        q->kind = PAT_REDACT;
        q->check = BUILTINS[i].check;
        q->max_len = BUILTINS[i].max_len;
        q->replacement = xstrdup(BUILTINS[i].replacement);
        enum lg_status st = q->replacement
                                ? compile(field, name, BUILTINS[i].pattern, false, &q->re, err)
                                : lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
        if (st != LG_OK) {
            pat_clear(q);
            return st;
        }
        p->n_out++;
        return LG_OK;
    }
    return lg_err_set(err, LG_ERR_FORMAT, "%s: unknown built-in '%.64s' (email, phone, card, iban)",
                      field, name);
}

static enum lg_status parse_tool_map(const json_t *o, const char *field, struct tool_list **out,
                                     size_t *n_out, struct lg_err *err)
{
    if (!json_is_object(o))
        return lg_err_set(err, LG_ERR_FORMAT, "%s: must be an object of name → [tools]", field);
    size_t m = json_object_size(o);
    if (m > MAX_TOOL_ENTRIES)
        return lg_err_set(err, LG_ERR_RANGE, "%s: more than %d entries", field, MAX_TOOL_ENTRIES);
    struct tool_list *v = calloc(m ? m : 1, sizeof *v);
    if (!v)
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    *out = v;
    *n_out = 0;
    const char *k;
    json_t *arr;
    json_object_foreach((json_t *)o, k, arr)
    {
        if (!json_is_array(arr))
            return lg_err_set(err, LG_ERR_FORMAT, "%s.%.64s: must be an array of tool names", field,
                              k);
        size_t nt = json_array_size(arr);
        if (nt > MAX_TOOL_ENTRIES)
            return lg_err_set(err, LG_ERR_RANGE, "%s.%.64s: too many tools", field, k);
        struct tool_list *t = &v[(*n_out)++];
        t->name = xstrdup(k);
        t->tools = calloc(nt ? nt : 1, sizeof *t->tools);
        if (!t->name || !t->tools)
            return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
        for (size_t i = 0; i < nt; i++) {
            json_t *s = json_array_get(arr, i);
            if (!json_is_string(s) || !json_string_length(s))
                return lg_err_set(err, LG_ERR_FORMAT, "%s.%.64s[%zu]: must be a tool name", field,
                                  k, i);
            if (!(t->tools[t->n] = xstrdup(json_string_value(s))))
                return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
            t->n++;
        }
    }
    return LG_OK;
}

static enum lg_status finish_policy(struct lg_policy *p, struct lg_err *err)
{
    p->mctx = pcre2_match_context_create(NULL);
    if (!p->mctx)
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    pcre2_set_match_limit(p->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(p->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(p->mctx, HEAP_LIMIT_KIB);
    size_t h = 0;
    for (size_t i = 0; i < p->n_out; i++)
        if (p->out[i].max_len > h)
            h = p->out[i].max_len;
    p->holdback = h ? h + LOOK_MARGIN : 0;
    if (!p->refusal && !(p->refusal = xstrdup("This request was refused by the server's policy.")))
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    return LG_OK;
}

static enum lg_status parse_doc(const json_t *root, struct lg_policy *p, struct lg_err *err)
{
    static const char *const top[] = {"version", "refusal_message", "input",
                                      "output",  "tools",           NULL};
    static const char *const in_keys[] = {"deny", NULL};
    static const char *const out_keys[] = {"deny", "redact", "builtin_redact", NULL};
    static const char *const tool_keys[] = {"default", "models", "keys", NULL};
    if (!json_is_object(root))
        return lg_err_set(err, LG_ERR_FORMAT, "policy: top level must be an object");
    enum lg_status st = check_keys(root, "policy", top, err);
    if (st != LG_OK)
        return st;
    json_t *v = json_object_get(root, "version");
    if (v && (!json_is_integer(v) || json_integer_value(v) != 1))
        return lg_err_set(err, LG_ERR_VERSION, "version: only 1 is supported");
    json_t *rm = json_object_get(root, "refusal_message");
    if (rm) {
        if (!json_is_string(rm) || json_string_length(rm) == 0 ||
            json_string_length(rm) >= LG_GUARD_MSG_MAX)
            return lg_err_set(err, LG_ERR_FORMAT, "refusal_message: must be a string of 1-%d bytes",
                              LG_GUARD_MSG_MAX - 1);
        if (!(p->refusal = xstrdup(json_string_value(rm))))
            return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    }
    json_t *in = json_object_get(root, "input");
    if (in) {
        if (!json_is_object(in))
            return lg_err_set(err, LG_ERR_FORMAT, "input: must be an object");
        if ((st = check_keys(in, "input", in_keys, err)) != LG_OK)
            return st;
        json_t *d = json_object_get(in, "deny");
        if (d && (st = add_rules(d, "input.deny", PAT_DENY, false, &p->in, &p->n_in, err)) != LG_OK)
            return st;
    }
    json_t *out = json_object_get(root, "output");
    json_t *builtins = NULL;
    if (out) {
        if (!json_is_object(out))
            return lg_err_set(err, LG_ERR_FORMAT, "output: must be an object");
        if ((st = check_keys(out, "output", out_keys, err)) != LG_OK)
            return st;
        json_t *d = json_object_get(out, "deny");
        if (d &&
            (st = add_rules(d, "output.deny", PAT_DENY, true, &p->out, &p->n_out, err)) != LG_OK)
            return st;
        builtins = json_object_get(out, "builtin_redact");
        if (builtins) {
            if (!json_is_array(builtins))
                return lg_err_set(err, LG_ERR_FORMAT, "output.builtin_redact: must be an array");
            for (size_t i = 0; i < json_array_size(builtins); i++) {
                json_t *s = json_array_get(builtins, i);
                char f[64];
                snprintf(f, sizeof f, "output.builtin_redact[%zu]", i);
                if (!json_is_string(s))
                    return lg_err_set(err, LG_ERR_FORMAT, "%s: must be a string", f);
                if ((st = add_builtin(p, json_string_value(s), f, err)) != LG_OK)
                    return st;
            }
        }
        if (!builtins) /* default: all four built-ins, before the user's rules */
            for (size_t i = 0; i < N_BUILTINS; i++)
                if ((st = add_builtin(p, BUILTINS[i].id, "output.builtin_redact", err)) != LG_OK)
                    return st;
        json_t *r = json_object_get(out, "redact");
        if (r && (st = add_rules(r, "output.redact", PAT_REDACT, true, &p->out, &p->n_out, err)) !=
                     LG_OK)
            return st;
    }
    if (!out) /* default: all four built-ins */
        for (size_t i = 0; i < N_BUILTINS; i++)
            if ((st = add_builtin(p, BUILTINS[i].id, "output.builtin_redact", err)) != LG_OK)
                return st;
    p->tools_default_allow = true;
    json_t *t = json_object_get(root, "tools");
    if (t) {
        if (!json_is_object(t))
            return lg_err_set(err, LG_ERR_FORMAT, "tools: must be an object");
        if ((st = check_keys(t, "tools", tool_keys, err)) != LG_OK)
            return st;
        json_t *d = json_object_get(t, "default");
        if (d) {
            const char *s = json_is_string(d) ? json_string_value(d) : "";
            if (strcmp(s, "allow") && strcmp(s, "deny"))
                return lg_err_set(err, LG_ERR_FORMAT,
                                  "tools.default: must be \"allow\" or \"deny\"");
            p->tools_default_allow = !strcmp(s, "allow");
        }
        json_t *m = json_object_get(t, "models");
        if (m && (st = parse_tool_map(m, "tools.models", &p->models, &p->n_models, err)) != LG_OK)
            return st;
        json_t *k = json_object_get(t, "keys");
        if (k && (st = parse_tool_map(k, "tools.keys", &p->keys, &p->n_keys, err)) != LG_OK)
            return st;
    }
    return finish_policy(p, err);
}

enum lg_status lg_policy_parse(const char *buf, size_t n, struct lg_policy **out,
                               struct lg_err *err)
{
    *out = NULL;
    if (n > (1u << 20))
        return lg_err_set(err, LG_ERR_RANGE, "policy: file larger than 1 MiB");
    json_error_t je;
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return lg_err_set(err, LG_ERR_FORMAT, "policy: JSON error at line %d column %d: %s",
                          je.line, je.column, je.text);
    struct lg_policy *p = calloc(1, sizeof *p);
    if (!p) {
        json_decref(root);
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    }
    enum lg_status st = parse_doc(root, p, err);
    json_decref(root);
    if (st != LG_OK) {
        lg_policy_free(p);
        return st;
    }
    *out = p;
    return LG_OK;
}

enum lg_status lg_policy_load(const char *path, struct lg_policy **out, struct lg_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lg_err_set(err, LG_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = malloc((1u << 20) + 1);
    if (!buf) {
        fclose(f);
        return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
    }
    size_t n = fread(buf, 1, (1u << 20) + 1, f);
    bool bad = ferror(f);
    fclose(f);
    enum lg_status st;
    if (bad)
        st = lg_err_set(err, LG_ERR_IO, "%s: read error", path);
    else if (n > (1u << 20))
        st = lg_err_set(err, LG_ERR_RANGE, "%s: larger than 1 MiB", path);
    else {
        st = lg_policy_parse(buf, n, out, err);
        if (st != LG_OK) { /* prefix the file name */
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%s", err->msg);
            lg_err_set(err, st, "%s: %s", path, m);
        }
    }
    free(buf);
    return st;
}

enum lg_status lg_policy_default(struct lg_policy **out, struct lg_err *err)
{
    return lg_policy_parse("{}", 2, out, err);
}

const char *lg_policy_refusal(const struct lg_policy *p)
{
    return p->refusal;
}
size_t lg_policy_holdback(const struct lg_policy *p)
{
    return p->holdback;
}

/* ---- input ----------------------------------------------------------------------------- */

static void deny(struct lg_decision *d, const struct lg_policy *p, const char *rule,
                 const char *suffix)
{
    d->denied = true;
    snprintf(d->rule, sizeof d->rule, "%.40s%.12s", rule, suffix);
    snprintf(d->message, sizeof d->message, "%s", p->refusal);
}

enum lg_status lg_policy_check_input(const struct lg_policy *p, const char *text, size_t n,
                                     struct lg_decision *d, struct lg_err *err)
{
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < p->n_in; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->in[i].re, NULL);
        if (!md)
            return lg_err_set(err, LG_ERR_NOMEM, "policy: out of memory");
        int rc = pcre2_match(p->in[i].re, (PCRE2_SPTR)text, n, 0, 0, md, p->mctx);
        pcre2_match_data_free(md);
        if (rc >= 0) {
            deny(d, p, p->in[i].id, "");
            return LG_OK;
        }
        if (rc != PCRE2_ERROR_NOMATCH) { /* match/depth/heap limit: fail closed */
            deny(d, p, p->in[i].id, ":match-limit");
            return LG_OK;
        }
    }
    return LG_OK;
}

/* ---- tools ----------------------------------------------------------------------------- */

static const struct tool_list *find_list(const struct tool_list *v, size_t n, const char *name)
{
    if (!name)
        return NULL;
    const char *colon = strchr(name, ':');
    size_t base = colon ? (size_t)(colon - name) : strlen(name);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i].name) == base && !memcmp(v[i].name, name, base))
            return &v[i];
    return NULL;
}

static bool list_allows(const struct tool_list *t, bool dflt, const char *tool)
{
    if (!t)
        return dflt;
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->tools[i], "*") || !strcmp(t->tools[i], tool))
            return true;
    return false;
}

bool lg_policy_tool_allowed(const struct lg_policy *p, const char *model, const char *key,
                            const char *tool)
{
    if (!p)
        return true;
    if (!tool || !*tool)
        return false;
    return list_allows(find_list(p->models, p->n_models, model), p->tools_default_allow, tool) &&
           list_allows(find_list(p->keys, p->n_keys, key), p->tools_default_allow, tool);
}

/* ---- streaming redactor ---------------------------------------------------------------- */

struct lg_redactor {
    const struct lg_policy *p;
    char *buf; /* seen text; [0, pos) is emitted (kept only as lookbehind context) */
    size_t n, cap, pos;
    char *out;
    size_t out_n, out_cap;
    pcre2_match_data **md;     /* one per output pattern */
    int64_t *counts;           /* redactions per output pattern */
    size_t *clean;             /* per pattern: no acceptable match starts in [pos, clean) */
    pcre2_match_context *mctx; /* copy of the policy's limits + our offset limit */
    bool denied, finished;
    struct lg_decision d;
};

struct lg_redactor *lg_redactor_create(const struct lg_policy *p)
{
    struct lg_redactor *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->p = p;
    r->md = calloc(p->n_out ? p->n_out : 1, sizeof *r->md);
    r->counts = calloc(p->n_out ? p->n_out : 1, sizeof *r->counts);
    r->clean = calloc(p->n_out ? p->n_out : 1, sizeof *r->clean);
    r->mctx = pcre2_match_context_copy(p->mctx);
    if (!r->md || !r->counts || !r->clean || !r->mctx) {
        lg_redactor_destroy(r);
        return NULL;
    }
    for (size_t i = 0; i < p->n_out; i++)
        if (!(r->md[i] = pcre2_match_data_create_from_pattern(p->out[i].re, NULL))) {
            lg_redactor_destroy(r);
            return NULL;
        }
    return r;
}

void lg_redactor_destroy(struct lg_redactor *r)
{
    if (!r)
        return;
    if (r->md)
        for (size_t i = 0; i < r->p->n_out; i++)
            pcre2_match_data_free(r->md[i]);
    free(r->md);
    free(r->counts);
    free(r->clean);
    pcre2_match_context_free(r->mctx);
    free(r->buf);
    free(r->out);
    free(r);
}

static bool grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *np = realloc(*p, c);
    if (!np)
        return false;
    *p = np;
    *cap = c;
    return true;
}

static bool emit(struct lg_redactor *r, const char *s, size_t n)
{
    if (!grow(&r->out, &r->out_cap, r->out_n + n + 1))
        return false;
    memcpy(r->out + r->out_n, s, n);
    r->out_n += n;
    return true;
}

static size_t utf8_len(unsigned char c)
{
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Earliest acceptable match of pattern i starting in [from, limit), searching a subject that
 * ends at subj_end. Returns 1 found, 0 none, -1 match limit hit. Records in clean[i] that no
 * acceptable match starts before the returned start (or before limit when none). */
static int find(struct lg_redactor *r, size_t i, size_t from, size_t limit, size_t subj_end,
                size_t *ms, size_t *me)
{
    const struct pat *pt = &r->p->out[i];
    size_t at = from > r->clean[i] ? from : r->clean[i];
    while (at < limit) {
        pcre2_set_offset_limit(r->mctx, limit);
        int rc = pcre2_match(pt->re, (PCRE2_SPTR)r->buf, subj_end, at, 0, r->md[i], r->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md[i]);
        size_t s = ov[0], e = ov[1];
        if (s >= limit)
            break;
        if (e > s && e - s <= pt->max_len && check_ok(pt->check, r->buf + s, e - s)) {
            *ms = s;
            *me = e;
            r->clean[i] = s;
            return 1;
        }
        /* rejected candidate: retry one character later */
        at = s + utf8_len((unsigned char)r->buf[s]);
    }
    if (limit > r->clean[i])
        r->clean[i] = limit;
    return 0;
}

/* Where pattern i forces the hold-back to start: the earliest s >= pos at which a match of
 * acceptable length could start and still depend on text not seen yet — found with
 * PCRE2_PARTIAL_HARD, which reports a partial match as soon as an attempt reaches the end of
 * the seen text (an attempt that never reaches it gives the same result whatever follows).
 * A partial match starting more than max_len + LOOK_MARGIN before the end can only become
 * too long a match and is skipped. n when nothing can start; the plain bound n - H when the
 * match limit is hit (the scan then fails closed itself). Holding back more is always safe,
 * so the result is never below n - H, and usually it is just the trailing word. */
static size_t hold_from(struct lg_redactor *r, size_t i)
{
    const struct pat *pt = &r->p->out[i];
    size_t h = r->p->holdback, n = r->n;
    size_t plain = n > h && n - h > r->pos ? n - h : r->pos;
    size_t at = r->pos;
    pcre2_set_offset_limit(r->mctx, PCRE2_UNSET);
    while (at < n) {
        int rc = pcre2_match(pt->re, (PCRE2_SPTR)r->buf, n, at, PCRE2_PARTIAL_HARD, r->md[i],
                             r->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            return n;
        if (rc < 0 && rc != PCRE2_ERROR_PARTIAL)
            return plain;
        size_t s0 = pcre2_get_ovector_pointer(r->md[i])[0];
        if (s0 >= n) /* an empty partial match at the end (a lookbehind looked back) */
            return n;
        if (s0 < at)
            return plain;
        if (rc == PCRE2_ERROR_PARTIAL && n - s0 <= pt->max_len + LOOK_MARGIN)
            return s0 > plain ? s0 : plain;
        /* a complete match (the scan decides it) or a partial one that can only grow too
         * long: look for a partial match starting later */
        at = s0 + utf8_len((unsigned char)r->buf[s0]);
    }
    return n;
}

static enum lg_status scan(struct lg_redactor *r, bool final, struct lg_err *err)
{
    size_t limit = r->n;
    for (size_t i = 0; !final && i < r->p->n_out; i++) {
        size_t hf = hold_from(r, i);
        if (hf < limit)
            limit = hf;
    }
    /* never cut inside a UTF-8 sequence */
    while (!final && limit > r->pos && limit < r->n &&
           ((unsigned char)r->buf[limit] & 0xC0) == 0x80)
        limit--;
    while (r->pos < limit && !r->denied) {
        size_t best_s = SIZE_MAX, best_e = 0, best_i = 0;
        for (size_t i = 0; i < r->p->n_out; i++) {
            size_t s, e;
            /* a match starting before limit, with its lookaround, ends before
             * limit + max_len + LOOK_MARGIN ≤ n: searching only that far is exact */
            size_t subj = r->n;
            if (!final && limit + r->p->out[i].max_len + LOOK_MARGIN < subj)
                subj = limit + r->p->out[i].max_len + LOOK_MARGIN;
            int f = find(r, i, r->pos, best_s < limit ? best_s : limit, subj, &s, &e);
            if (f < 0) { /* backtracking cap on output: fail closed */
                r->denied = true;
                deny(&r->d, r->p, r->p->out[i].id, ":match-limit");
                return LG_OK;
            }
            if (f == 1 && s < best_s) {
                best_s = s;
                best_e = e;
                best_i = i;
            }
        }
        if (best_s == SIZE_MAX) {
            if (!emit(r, r->buf + r->pos, limit - r->pos))
                return lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
            r->pos = limit;
            break;
        }
        if (!emit(r, r->buf + r->pos, best_s - r->pos))
            return lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
        const struct pat *pt = &r->p->out[best_i];
        if (pt->kind == PAT_DENY) {
            r->denied = true;
            deny(&r->d, r->p, pt->id, "");
            return LG_OK;
        }
        if (!emit(r, pt->replacement, strlen(pt->replacement)))
            return lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
        r->counts[best_i]++;
        r->pos = best_e;
    }
    /* drop emitted text but keep lookbehind context */
    if (r->pos > 4 * CTX_KEEP + 4096) {
        size_t cut = r->pos - CTX_KEEP;
        while (cut > 0 && ((unsigned char)r->buf[cut] & 0xC0) == 0x80)
            cut--;
        memmove(r->buf, r->buf + cut, r->n - cut);
        r->n -= cut;
        r->pos -= cut;
        for (size_t i = 0; i < r->p->n_out; i++)
            r->clean[i] = r->clean[i] > cut ? r->clean[i] - cut : 0;
    }
    return LG_OK;
}

enum lg_status lg_redactor_feed(struct lg_redactor *r, const char *piece, size_t n,
                                const char **out, size_t *out_n, struct lg_err *err)
{
    r->out_n = 0;
    *out = "";
    *out_n = 0;
    if (r->denied || r->finished)
        return LG_OK;
    if (!grow(&r->buf, &r->cap, r->n + n + 1))
        return lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
    if (n)
        memcpy(r->buf + r->n, piece, n);
    r->n += n;
    enum lg_status st = scan(r, false, err);
    if (r->out)
        r->out[r->out_n] = '\0';
    *out = r->out ? r->out : "";
    *out_n = r->out_n;
    return st;
}

enum lg_status lg_redactor_finish(struct lg_redactor *r, const char **out, size_t *out_n,
                                  struct lg_err *err)
{
    r->out_n = 0;
    *out = "";
    *out_n = 0;
    if (r->denied || r->finished)
        return LG_OK;
    enum lg_status st = scan(r, true, err);
    r->finished = true;
    if (r->out)
        r->out[r->out_n] = '\0';
    *out = r->out ? r->out : "";
    *out_n = r->out_n;
    return st;
}

enum lg_status lg_redactor_flush(struct lg_redactor *r, const char **out, size_t *out_n,
                                 struct lg_err *err)
{
    r->out_n = 0;
    *out = "";
    *out_n = 0;
    if (r->denied || r->finished)
        return LG_OK;
    enum lg_status st = scan(r, true, err);
    /* the next piece starts a new segment: no pattern looks for a match before pos */
    for (size_t i = 0; i < r->p->n_out; i++)
        if (r->clean[i] < r->pos)
            r->clean[i] = r->pos;
    if (r->out)
        r->out[r->out_n] = '\0';
    *out = r->out ? r->out : "";
    *out_n = r->out_n;
    return st;
}

int64_t lg_redactor_count(const struct lg_redactor *r)
{
    int64_t n = 0;
    for (size_t i = 0; i < r->p->n_out; i++)
        n += r->counts[i];
    return n;
}

bool lg_redactor_denied(const struct lg_redactor *r, struct lg_decision *d)
{
    if (d)
        *d = r->d;
    return r->denied;
}

void lg_redactor_summary(const struct lg_redactor *r, char *out, size_t cap)
{
    size_t w = 0;
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < r->p->n_out && w < cap; i++) {
        if (!r->counts[i])
            continue;
        int k = snprintf(out + w, cap - w, "%s%s=%lld", w ? "," : "", r->p->out[i].id,
                         (long long)r->counts[i]);
        if (k < 0)
            break;
        w += (size_t)k;
    }
}

enum lg_status lg_policy_redact(const struct lg_policy *p, const char *text, size_t n, char **out,
                                size_t *out_n, struct lg_decision *d, struct lg_err *err)
{
    *out = NULL;
    *out_n = 0;
    if (d)
        memset(d, 0, sizeof *d);
    struct lg_redactor *r = lg_redactor_create(p);
    if (!r)
        return lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
    char *acc = NULL;
    size_t acc_n = 0, acc_cap = 0;
    const char *o;
    size_t on;
    enum lg_status st = lg_redactor_feed(r, text, n, &o, &on, err);
    if (st == LG_OK && !grow(&acc, &acc_cap, on + 1))
        st = lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
    if (st == LG_OK) {
        memcpy(acc, o, on);
        acc_n = on;
        st = lg_redactor_finish(r, &o, &on, err);
    }
    if (st == LG_OK && !grow(&acc, &acc_cap, acc_n + on + 1))
        st = lg_err_set(err, LG_ERR_NOMEM, "redact: out of memory");
    if (st == LG_OK) {
        memcpy(acc + acc_n, o, on);
        acc_n += on;
        acc[acc_n] = '\0';
        if (d)
            lg_redactor_denied(r, d);
        *out = acc;
        *out_n = acc_n;
    } else {
        free(acc);
    }
    lg_redactor_destroy(r);
    return st;
}
