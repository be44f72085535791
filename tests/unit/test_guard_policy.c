/* test_guard_policy.c: policy files (good and bad, errors naming the field/pattern), input
 * deny rules, the match-limit fail-closed path, built-in PII patterns (positives/negatives,
 * Luhn and IBAN mod-97 checks), streaming redaction == whole-text redaction on random splits,
 * output deny rules, and tool allow-lists. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "test.h"

static struct lg_policy *parse(const char *json, struct lg_err *err)
{
    struct lg_policy *p = NULL;
    memset(err, 0, sizeof *err);
    if (lg_policy_parse(json, strlen(json), &p, err) != LG_OK)
        return NULL;
    return p;
}

/* whole-text redaction as a string (caller frees) */
static char *redact(const struct lg_policy *p, const char *text)
{
    char *out = NULL;
    size_t n = 0;
    struct lg_err err = {0};
    if (lg_policy_redact(p, text, strlen(text), &out, &n, NULL, &err) != LG_OK)
        return NULL;
    return out;
}

static void check_redact(const struct lg_policy *p, const char *text, const char *want)
{
    char *got = redact(p, text);
    CHECK_EQ_STR(got, want);
    free(got);
}

static void test_checksums(void)
{
    CHECK(lg_luhn_ok("4111111111111111", 16));
    CHECK(lg_luhn_ok("4111 1111 1111 1111", 19));
    CHECK(lg_luhn_ok("5500-0000-0000-0004", 19));
    CHECK(lg_luhn_ok("378282246310005", 15)); /* Amex */
    CHECK(!lg_luhn_ok("4111111111111112", 16));
    CHECK(!lg_luhn_ok("0000000000", 10)); /* Luhn-valid but too short */
    CHECK(!lg_luhn_ok("41111111111111x1", 16));
    CHECK(lg_iban_ok("DE89370400440532013000", 22));
    CHECK(lg_iban_ok("GB82 WEST 1234 5698 7654 32", 27));
    CHECK(lg_iban_ok("FR1420041010050500013M02606", 27));
    CHECK(!lg_iban_ok("DE89370400440532013001", 22));
    CHECK(!lg_iban_ok("GB82 WEST 1234 5698 7654 33", 27));
    CHECK(!lg_iban_ok("DE8937", 6));
    CHECK(!lg_iban_ok("1289370400440532013000", 22));
}

static void test_builtins(void)
{
    struct lg_err err;
    struct lg_policy *p = NULL;
    CHECK(lg_policy_default(&p, &err) == LG_OK);
    if (!p)
        return;
    check_redact(p, "write to john.doe+x@mail.example.co.uk today", "write to [EMAIL] today");
    check_redact(p, "no email here: user@ or @host.com or a@b",
                 "no email here: user@ or @host.com or a@b");
    check_redact(p, "call +44 20 7946 0958 now", "call [PHONE] now");
    check_redact(p, "US (555) 123-4567.", "US [PHONE].");
    check_redact(p, "tel 555-123-4567", "tel [PHONE]");
    check_redact(p, "dates 2024-10-15 and 12:30 stay", "dates 2024-10-15 and 12:30 stay");
    check_redact(p, "version 1.2.3 stays", "version 1.2.3 stays");
    check_redact(p, "card 4111 1111 1111 1111 ok", "card [CARD] ok");
    check_redact(p, "card 4111-1111-1111-1111", "card [CARD]");
    check_redact(p, "amex 378282246310005.", "amex [CARD].");
    check_redact(p, "bad 4111 1111 1111 1112 kept", "bad 4111 1111 1111 1112 kept");
    check_redact(p, "iban DE89 3704 0044 0532 0130 00 AND more", "iban [IBAN] AND more");
    check_redact(p, "iban GB82WEST12345698765432", "iban [IBAN]");
    check_redact(p, "bad iban DE89 3704 0044 0532 0130 02", "bad iban DE89 3704 0044 0532 0130 02");
    check_redact(p, "", "");
    check_redact(p, "héllo wörld ✓ plain", "héllo wörld ✓ plain");
    /* invalid UTF-8 passes through without a crash */
    char *g = redact(p, "a\xff\xfe b@c.de \xc3");
    CHECK_EQ_STR(g, "a\xff\xfe [EMAIL] \xc3");
    free(g);
    lg_policy_free(p);
}

static const char *POL =
    "{\"version\":1,\"refusal_message\":\"No.\","
    "\"input\":{\"deny\":[{\"id\":\"bomb\",\"pattern\":\"build\\\\s+a\\\\s+bomb\","
    "\"caseless\":true,\"reason\":\"weapons\"}]},"
    "\"output\":{\"deny\":[{\"id\":\"secret\",\"pattern\":\"TOP-SECRET-[0-9]{4}\",\"max_len\":20}],"
    "\"builtin_redact\":[\"email\",\"card\"],"
    "\"redact\":[{\"id\":\"empid\",\"pattern\":\"EMP[0-9]{6}\",\"replacement\":\"[EMP]\","
    "\"max_len\":9}]},"
    "\"tools\":{\"default\":\"deny\",\"models\":{\"gemma3\":[\"get_weather\",\"search\"],"
    "\"gemma4\":[\"*\"]},\"keys\":{\"alice\":[\"get_weather\"],\"root\":[\"*\"]}}}";

static void test_policy_file(void)
{
    struct lg_err err;
    struct lg_policy *p = parse(POL, &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    if (!p)
        return;
    struct lg_decision d;
    const char *t1 = "please Build   A BOMB now";
    CHECK(lg_policy_check_input(p, t1, strlen(t1), &d, &err) == LG_OK);
    CHECK(d.denied);
    CHECK_EQ_STR(d.rule, "bomb");
    CHECK_EQ_STR(d.message, "No.");
    const char *t2 = "build a birdhouse";
    CHECK(lg_policy_check_input(p, t2, strlen(t2), &d, &err) == LG_OK);
    CHECK(!d.denied);
    CHECK_EQ_STR(d.rule, "");
    /* phone and iban not listed → kept; emp id redacted */
    check_redact(p, "x@y.org +44 20 7946 0958 EMP123456 DE89370400440532013000",
                 "[EMAIL] +44 20 7946 0958 [EMP] DE89370400440532013000");
    /* output deny stops the stream: text before it is emitted, nothing after */
    char *out = NULL;
    size_t n = 0;
    const char *t3 = "ok so far TOP-SECRET-1234 and then more";
    CHECK(lg_policy_redact(p, t3, strlen(t3), &out, &n, &d, &err) == LG_OK);
    CHECK(d.denied);
    CHECK_EQ_STR(d.rule, "secret");
    CHECK_EQ_STR(out, "ok so far ");
    free(out);
    /* tools: both the model's and the key's list must allow */
    CHECK(lg_policy_tool_allowed(p, "gemma3", "alice", "get_weather"));
    CHECK(!lg_policy_tool_allowed(p, "gemma3", "alice", "search"));
    CHECK(lg_policy_tool_allowed(p, "gemma3:1b", "root", "search"));
    CHECK(!lg_policy_tool_allowed(p, "gemma3", "root", "delete_file"));
    CHECK(lg_policy_tool_allowed(p, "gemma4", "root", "delete_file"));
    CHECK(!lg_policy_tool_allowed(p, "other", "root", "search")); /* default deny */
    CHECK(!lg_policy_tool_allowed(p, "gemma4", "bob", "search"));
    CHECK(!lg_policy_tool_allowed(p, "gemma4", "root", ""));
    CHECK(lg_policy_holdback(p) == 345 + 16); /* email max_len + margin */
    lg_policy_free(p);

    /* tie at one position: built-ins (defaulted) come before user redactions */
    p = parse("{\"output\":{\"redact\":[{\"id\":\"at\",\"pattern\":\"x@y\","
              "\"replacement\":\"[AT]\",\"max_len\":3}]}}",
              &err);
    CHECK(p != NULL);
    if (p) {
        check_redact(p, "to x@y.de or x@y", "to [EMAIL] or [AT]");
        lg_policy_free(p);
    }

    /* no tools section: allowed by default */
    p = parse("{}", &err);
    CHECK(p && lg_policy_tool_allowed(p, "m", "k", "t"));
    lg_policy_free(p);
}

static void bad(const char *json, const char *want_sub)
{
    struct lg_err err;
    struct lg_policy *p = parse(json, &err);
    CHECK_MSG(p == NULL, "accepted: %s", json);
    CHECK_MSG(strstr(err.msg, want_sub) != NULL, "error '%s' lacks '%s'", err.msg, want_sub);
    lg_policy_free(p);
}

static void test_bad_files(void)
{
    bad("", "JSON error");
    bad("[1]", "top level");
    bad("{\"input\":{\"deny\":[{\"id\":\"x\",\"pattern\":\"a(b\"}]}}",
        "input.deny[0]: pattern 'x': missing closing parenthesis at offset 3");
    bad("{\"output\":{\"redact\":[{\"id\":\"ok\",\"pattern\":\"a\"},{\"id\":\"bad\","
        "\"pattern\":\"[z-a]\"}]}}",
        "output.redact[1]: pattern 'bad'");
    bad("{\"inptu\":{}}", "unknown field 'inptu'");
    bad("{\"input\":{\"deny\":[{\"id\":\"x\",\"pattern\":\"a\",\"resaon\":\"r\"}]}}",
        "input.deny[0]: unknown field 'resaon'");
    bad("{\"input\":{\"deny\":[{\"pattern\":\"a\"}]}}", "input.deny[0].id");
    bad("{\"input\":{\"deny\":[{\"id\":\"x\",\"pattern\":5}]}}", "input.deny[0].pattern");
    bad("{\"input\":{\"deny\":[{\"id\":\"x\",\"pattern\":\"\"}]}}", "is empty");
    bad("{\"input\":{\"deny\":{}}}", "input.deny: must be an array");
    bad("{\"output\":{\"builtin_redact\":[\"ssn\"]}}", "unknown built-in 'ssn'");
    bad("{\"output\":{\"redact\":[{\"id\":\"x\",\"pattern\":\"a\",\"max_len\":0}]}}",
        "output.redact[0].max_len");
    bad("{\"output\":{\"redact\":[{\"id\":\"x\",\"pattern\":\"a\",\"max_len\":1e9}]}}",
        "output.redact[0].max_len");
    bad("{\"input\":{\"deny\":[{\"id\":\"x\",\"pattern\":\"a\",\"max_len\":5}]}}",
        "only for output");
    bad("{\"tools\":{\"default\":\"maybe\"}}", "tools.default");
    bad("{\"tools\":{\"models\":{\"m\":\"t\"}}}", "tools.models.m");
    bad("{\"tools\":{\"keys\":{\"k\":[1]}}}", "tools.keys.k[0]");
    bad("{\"version\":2}", "version");
    bad("{\"refusal_message\":\"\"}", "refusal_message");
    bad("{\"input\":{},\"input\":{}}", "duplicate");
}

static void test_match_limit(void)
{
    struct lg_err err;
    /* nested quantifier with a failing tail: exponential without the match limit */
    struct lg_policy *p =
        parse("{\"input\":{\"deny\":[{\"id\":\"evil\",\"pattern\":\"^(\\\\w+\\\\s?)*$\"}]}}", &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    if (!p)
        return;
    char text[200];
    memset(text, 'a', sizeof text);
    memcpy(text + sizeof text - 2, "!!", 2);
    struct lg_decision d;
    CHECK(lg_policy_check_input(p, text, sizeof text, &d, &err) == LG_OK);
    CHECK(d.denied);
    CHECK_EQ_STR(d.rule, "evil:match-limit");
    lg_policy_free(p);
}

static void test_streaming(void)
{
    static const char *frags[] = {
        "hello ",
        "world. ",
        "john.doe@example.com",
        " ",
        "4111 1111 1111 1111",
        ", ",
        "+44 20 7946 0958",
        "DE89 3704 0044 0532 0130 00",
        "EMP123456",
        "é",
        "✓",
        "\n",
        "4111 1111 1111 1112",
        "a@b.c",
        "12 34 56 78 90",
        "x",
        "TOP",
        "-",
        "SECRET",
        "@",
        "555-123-4567",
        "GB82WEST12345698765432",
        "  ",
        "99",
        ".com",
        "zz@zz.zz",
    };
    enum { N_FRAGS = sizeof frags / sizeof frags[0] };
    struct lg_err err;
    struct lg_policy *pols[2] = {NULL, NULL};
    lg_policy_default(&pols[0], &err);
    pols[1] = parse(POL, &err);
    CHECK(pols[0] && pols[1]);
    if (!pols[0] || !pols[1])
        return;
    int n_same = 0, n_total = 0, n_redacted = 0;
    for (int iter = 0; iter < 400; iter++) {
        const struct lg_policy *p = pols[iter % 2];
        char text[4096];
        size_t tn = 0;
        int nf = 1 + (int)lg_test_rand_below(60);
        for (int i = 0; i < nf; i++) {
            const char *f = frags[lg_test_rand_below(N_FRAGS)];
            size_t fl = strlen(f);
            if (tn + fl >= sizeof text)
                break;
            memcpy(text + tn, f, fl);
            tn += fl;
        }
        text[tn] = '\0';
        char *whole = NULL;
        size_t wn = 0;
        struct lg_decision dw, ds;
        if (lg_policy_redact(p, text, tn, &whole, &wn, &dw, &err) != LG_OK)
            continue;
        if (strstr(whole, "[EMAIL]") || strstr(whole, "[CARD]"))
            n_redacted++;
        /* random split into pieces of 0..40 bytes (may cut UTF-8 sequences) */
        struct lg_redactor *r = lg_redactor_create(p);
        char *acc = malloc(tn * 4 + 64);
        size_t an = 0;
        size_t at = 0;
        const char *o;
        size_t on;
        while (at < tn) {
            size_t k = lg_test_rand_below(41);
            if (k > tn - at)
                k = tn - at;
            lg_redactor_feed(r, text + at, k, &o, &on, &err);
            memcpy(acc + an, o, on);
            an += on;
            at += k;
        }
        lg_redactor_finish(r, &o, &on, &err);
        memcpy(acc + an, o, on);
        an += on;
        lg_redactor_denied(r, &ds);
        n_total++;
        bool same = an == wn && !memcmp(acc, whole, an) && ds.denied == dw.denied;
        if (same)
            n_same++;
        else if (n_total - n_same <= 3)
            fprintf(stderr, "split differs:\n text  [%s]\n whole [%s]\n split [%.*s]\n", text,
                    whole, (int)an, acc);
        lg_redactor_destroy(r);
        free(acc);
        free(whole);
    }
    CHECK_EQ_INT(n_same, n_total);
    CHECK(n_total == 400);
    CHECK(n_redacted > 100); /* the random texts do exercise redaction */

    /* the hold-back bound: after feeding holdback bytes of plain text past a point, that
     * point has been emitted */
    struct lg_redactor *r = lg_redactor_create(pols[0]);
    size_t h = lg_policy_holdback(pols[0]);
    const char *o;
    size_t on, emitted = 0;
    for (size_t i = 0; i < h + 100; i++) {
        lg_redactor_feed(r, "a", 1, &o, &on, &err);
        emitted += on;
        CHECK(i + 1 - emitted <= h);
    }
    CHECK(emitted >= 100); /* at least the plain bound (partial matching may emit more) */
    lg_redactor_destroy(r);

    /* partial matching: text is held back only from where a pattern could still start a
     * match that depends on what comes next (usually the last word), not the whole bound */
    r = lg_redactor_create(pols[0]);
    struct {
        const char *piece, *out;
    } steps[] = {{"Hello there, my friend", "Hello there, my "},
                 {" Tom", "friend "},
                 {". Call 555", "Tom. Call "},
                 {"-0199 or mail t", "555-0199 or mail "}, /* 7 digits: no phone */
                 {"om@example.org now.", "[EMAIL] "},
                 {" Bye", "now. "}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        lg_redactor_feed(r, steps[i].piece, strlen(steps[i].piece), &o, &on, &err);
        CHECK_MSG(on == strlen(steps[i].out) && !memcmp(o, steps[i].out, on),
                  "step %zu: emitted [%.*s], want [%s]", i, (int)on, o, steps[i].out);
    }
    lg_redactor_finish(r, &o, &on, &err);
    CHECK(on == 3 && !memcmp(o, "Bye", 3));
    lg_redactor_destroy(r);
    lg_policy_free(pols[0]);
    lg_policy_free(pols[1]);
}

int main(void)
{
    lg_test_rand_seed(2);
    test_checksums();
    test_builtins();
    test_policy_file();
    test_bad_files();
    test_match_limit();
    test_streaming();
    return lg_test_done("test_guard_policy");
}
