/* fuzz_policy.c: the policy-file parser (lg_policy_parse) on arbitrary bytes. A policy that
 * parses is then exercised: input check, whole-text redaction and streaming redaction (split
 * at a data-dependent point, which must give the same output) of the input bytes themselves,
 * and a tool allow-list query. Crashes, leaks, sanitizer reports and a streaming/whole
 * mismatch are bugs. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct acc {
    char *p;
    size_t n, cap;
};

static bool put(struct acc *a, const char *s, size_t n)
{
    if (n == 0)
        return true;
    if (a->n + n > a->cap) {
        size_t cap = (a->n + n) * 2 + 64;
        char *np = realloc(a->p, cap);
        if (!np)
            return false;
        a->p = np;
        a->cap = cap;
    }
    memcpy(a->p + a->n, s, n);
    a->n += n;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lg_err err = {0};
    struct lg_policy *p = NULL;
    if (lg_policy_parse((const char *)data, size, &p, &err) != LG_OK) {
        if (!err.msg[0] || !memchr(err.msg, 0, sizeof err.msg))
            abort(); /* every refusal says why */
        return 0;
    }
    const char *text = (const char *)data;
    struct lg_decision d;
    if (lg_policy_check_input(p, text, size, &d, &err) != LG_OK) {
        lg_policy_free(p);
        return 0;
    }
    char *whole = NULL;
    size_t wn = 0;
    struct lg_decision dw;
    if (lg_policy_redact(p, text, size, &whole, &wn, &dw, &err) == LG_OK) {
        struct lg_redactor *r = lg_redactor_create(p);
        if (r) {
            size_t cut = size ? data[0] % (size + 1) : 0;
            struct acc a = {0};
            const char *o;
            size_t on;
            bool ok = lg_redactor_feed(r, text, cut, &o, &on, &err) == LG_OK && put(&a, o, on) &&
                      lg_redactor_feed(r, text + cut, size - cut, &o, &on, &err) == LG_OK &&
                      put(&a, o, on) && lg_redactor_finish(r, &o, &on, &err) == LG_OK &&
                      put(&a, o, on);
            if (ok) {
                struct lg_decision ds;
                lg_redactor_denied(r, &ds);
                /* user patterns may declare a max_len smaller than their real matches and a
                 * match limit may trip at a different place; LG_FUZZ_STRICT=1 compares anyway */
                if (!dw.denied && !ds.denied && (a.n != wn || memcmp(a.p, whole, wn)) &&
                    getenv("LG_FUZZ_STRICT"))
                    abort();
            }
            free(a.p);
            lg_redactor_destroy(r);
        }
        free(whole);
    }
    lg_policy_tool_allowed(p, "gemma3", "alice", "get_weather");
    lg_policy_free(p);
    return 0;
}
